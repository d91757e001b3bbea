"""Carry out the GCP plan: a Workload Identity member on the service account's policy, and the SA annotation."""

from __future__ import annotations

from porter_identity.api.connection import GcpStatus, ServiceIdentityConnection
from porter_identity.handlers.result import Change, Result
from porter_identity.kube.serviceaccounts import ServiceAccountMissing, ServiceAccounts
from porter_identity.providers.errors import AccessDenied, CloudError, NotFound
from porter_identity.providers.gcp import WORKLOAD_IDENTITY_USER, GcpProvider, project_of
from porter_identity.reconcile import gcp as decide
from porter_identity.reconcile import outcome
from porter_identity.reconcile import privilege as least
from porter_identity.reconcile.outcome import Outcome, Reason, State
from porter_identity.reconcile.privilege import Check


def _privilege(provider: GcpProvider, project: str, email: str) -> Check:
    try:
        bindings = provider.project_bindings(project, email)
    except AccessDenied as err:
        return Check(f"IAM service account {email}", unknown=err.message)
    return Check(f"IAM service account {email}", tuple(least.gcp_findings(bindings, email, project)))


def apply(
    provider: GcpProvider,
    accounts: ServiceAccounts,
    project: str,
    pool: str,
    conn: ServiceIdentityConnection,
    block_broad: bool = False,
) -> Result:
    spec = conn.spec.gcp
    assert spec is not None
    ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
    email = spec.service_account_email
    who = decide.member(pool, ns, sa)
    change: Change | None = None
    owner = project_of(email)
    if owner is not None and owner != project:
        return Result(
            outcome.stalled(
                Reason.IDENTITY_OUTSIDE_PROJECT,
                f"IAM service account {email} belongs to project {owner}, not the configured project {project}",
            ),
            None,
        )
    try:
        privilege = _privilege(provider, project, email)
        refusal = least.blocked(privilege, block_broad)
        if refusal is not None:
            return Result(refusal, conn.status.gcp, privilege=privilege)
        _, wrote = provider.update(email, lambda policy: decide.with_member(policy, who))
    except NotFound:
        return Result(
            outcome.stalled(
                Reason.IDENTITY_NOT_FOUND,
                f"IAM service account {email} does not exist (or the operator may not read its policy); "
                "create it or fix spec.gcp.serviceAccountEmail",
            ),
            None,
        )
    except CloudError as err:
        return Result(outcome.from_error(err, what=f"updating the IAM policy of {email}"), conn.status.gcp)
    if wrote:
        change = Change("Created", f"added {who} to {WORKLOAD_IDENTITY_USER} on {email}")
    status = GcpStatus(member=who)
    try:
        accounts.annotate(ns, sa, {decide.SERVICE_ACCOUNT_ANNOTATION: email})
    except ServiceAccountMissing as err:
        return Result(
            Outcome(
                State.RECONCILING,
                Reason.SERVICE_ACCOUNT_NOT_FOUND,
                f"{err}: the IAM binding exists; waiting to annotate it with {email}",
            ),
            status,
            change,
            privilege,
        )
    return Result(outcome.ready(f"service account {ns}/{sa} may act as {email} ({who})"), status, change, privilege)


def delete(provider: GcpProvider, accounts: ServiceAccounts, pool: str, conn: ServiceIdentityConnection) -> Result:
    spec = conn.spec.gcp
    assert spec is not None
    ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
    email = spec.service_account_email
    who = decide.member(pool, ns, sa)
    try:
        _, wrote = provider.update(email, lambda policy: decide.without_member(policy, who))
    except NotFound:
        wrote = False  # the service account is gone, and its policy with it
    except CloudError as err:
        return Result(outcome.from_error(err, what=f"updating the IAM policy of {email}"), None)
    accounts.unannotate(ns, sa, {decide.SERVICE_ACCOUNT_ANNOTATION: email})
    message = f"removed {who} from {email}" if wrote else f"{who} was already absent from {email}"
    return Result(outcome.ready(message), None, Change("Deleted", message))
