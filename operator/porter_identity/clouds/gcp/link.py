"""The GCP link: a Workload Identity member on the service account's policy, and the ServiceAccount annotation."""

from __future__ import annotations

from collections.abc import Mapping

from porter_identity.api.connection import GcpStatus, Provider, ServiceIdentityConnection, TakeOver
from porter_identity.clouds.base import (
    Change,
    Result,
    RetainedLink,
    kept_for_another,
    mark_retained,
    retained_annotation,
)
from porter_identity.clouds.gcp import drift as sweep
from porter_identity.clouds.gcp import plan as decide
from porter_identity.clouds.gcp.client import GcpProvider
from porter_identity.errors import AccessDenied, CloudError, NotFound
from porter_identity.kube.serviceaccounts import ServiceAccountMissing, ServiceAccounts
from porter_identity.model import WORKLOAD_IDENTITY_USER, project_of
from porter_identity.reconcile import outcome
from porter_identity.reconcile import privilege as least
from porter_identity.reconcile.drift import Findings, Group, Linked, Orphan
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
    made: set[tuple[str, str, str]] | None = None,
) -> Result:
    """`made`: members this process wrote whose status may not record them yet (namespace, ServiceAccount, email)."""
    made = made if made is not None else set()
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
    first = conn.status.gcp is None
    key = (ns, sa, email.lower())
    try:
        privilege = _privilege(provider, project, email)
        refusal = least.blocked(privilege, block_broad)
        if refusal is not None:
            return Result(refusal, None, privilege=privilege)
        _, wrote = provider.update(email, lambda policy: decide.with_member(policy, who))
    except NotFound:
        if provider.exists(email):
            message = (
                f"IAM shows service account {email}, and its IAM policy is not found yet: "
                "a service account made a moment ago takes time to be usable"
            )
            return Result(outcome.propagating(message), conn.status.gcp)
        return Result(
            outcome.stalled(
                Reason.IDENTITY_NOT_FOUND,
                f"IAM service account {email} does not exist (or the operator may not read its policy); "
                "create it or fix spec.gcp.serviceAccountEmail",
            ),
            None,
        )
    except CloudError as err:
        return Result(
            _failed(err, f"updating the IAM policy of {email}"),
            conn.status.gcp,
        )
    adopted = conn.status.gcp.adopted if conn.status.gcp is not None else None
    if wrote:
        made.add(key)  # until status records it: a status write refused under load must not lose who made it
        change = Change(outcome.Action.CREATED, f"added {who} to {WORKLOAD_IDENTITY_USER} on {email}")
    elif first:
        # A member this connection has no record of: one we made (its status lost: this process remembers, and the
        # ServiceAccount's mark once annotated), one a Retain delete of ours left, one this connection adopted, or
        # one bound outside porter-identity, taken only when the spec asks.
        found = accounts.annotations(ns, sa) or {}
        ours = key in made or any(
            _marked(found, mark, email) for mark in (MADE_ANNOTATION, retained_annotation(Provider.GCP))
        )
        adopted = _marked(found, ADOPTED_ANNOTATION, email) or None
        if not ours and not adopted and conn.spec.take_over is TakeOver.NEVER:
            return Result(
                outcome.stalled(
                    Reason.CONFLICT,
                    f"{who} is already in {WORKLOAD_IDENTITY_USER} on {email}, bound outside porter-identity; "
                    "set spec.takeOver: Adopt to take it over (deleting the connection then leaves it in place)",
                ),
                None,
            )
        if not ours:
            adopted = True
        change = Change(outcome.Action.ADOPTED, f"adopted {who} in {WORKLOAD_IDENTITY_USER} on {email}")
    status = GcpStatus(member=who, adopted=adopted)
    marks: dict[str, str | None] = {
        decide.SERVICE_ACCOUNT_ANNOTATION: email,
        retained_annotation(Provider.GCP): None,
        MADE_ANNOTATION: email,  # in the same patch: who made it survives a status lost later
    }
    if not first:
        made.discard(key)  # status records it now
    if adopted:
        marks[ADOPTED_ANNOTATION] = email  # remembered where status can be lost: released, never deleted
        marks[MADE_ANNOTATION] = None
    try:
        # A retained link taken over by this connection is no longer marked retained.
        accounts.annotate(ns, sa, marks)
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


# On the ServiceAccount: the IAM service account whose member a connection adopted (spec.takeOver: Adopt), and the
# one whose member this cluster's operator made (so a status lost later cannot make it look hand-made).
ADOPTED_ANNOTATION = "identity.porter.run/adopted-gcp"
MADE_ANNOTATION = "identity.porter.run/made-gcp"


def _marked(annotations: dict[str, str], key: str, email: str) -> bool:
    return annotations.get(key, "").lower() == email.lower()


def release(accounts: ServiceAccounts, conn: ServiceIdentityConnection, email: str, who: str) -> Result:
    """An adopted member is left as it was found, and so is the annotation naming it; only our mark goes."""
    ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
    accounts.annotate_if_present(ns, sa, {ADOPTED_ANNOTATION: None, MADE_ANNOTATION: None})
    message = (
        f"released {who} in {WORKLOAD_IDENTITY_USER} on {email}: adopted, not made by porter-identity; left in place"
    )
    return Result(outcome.ready(message), None, Change(outcome.Action.RELEASED, message))


def delete(
    provider: GcpProvider,
    accounts: ServiceAccounts,
    pool: str,
    conn: ServiceIdentityConnection,
    email: str,
    annotations: dict[str, str] | None,
) -> Result:
    """Remove the member from `email`'s policy (the spec's or one linked before), and the annotation naming it
    (`annotations`: the ServiceAccount's, as just read; None when it is gone)."""
    ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
    who = decide.member(pool, ns, sa)
    try:
        _, wrote = provider.update(email, lambda policy: decide.without_member(policy, who))
    except NotFound:
        wrote = False  # the service account is gone, and its policy with it
    except CloudError as err:
        return Result(
            _failed(err, f"updating the IAM policy of {email}"),
            conn.status.gcp,
        )
    if annotations is not None:
        accounts.unannotate(ns, sa, {decide.SERVICE_ACCOUNT_ANNOTATION: email, MADE_ANNOTATION: email}, annotations)
    if not wrote:
        return Result(outcome.ready(f"{who} was already absent from {email}"), None)
    message = f"removed {who} from {email}"
    return Result(outcome.ready(message), None, Change(outcome.Action.DELETED, message))


class GcpLink:
    provider = Provider.GCP
    moves_in_place = False  # each service account has its own policy

    def __init__(self, cloud: GcpProvider, accounts: ServiceAccounts, project: str, pool: str) -> None:
        self.cloud = cloud
        self.accounts = accounts
        self.project = project
        self.pool = pool
        self.made: set[tuple[str, str, str]] = set()

    def same_identity(self, a: str, b: str) -> bool:
        return a.lower() == b.lower()

    def apply(self, conn: ServiceIdentityConnection, block_broad: bool) -> Result:
        return apply(self.cloud, self.accounts, self.project, self.pool, conn, block_broad, self.made)

    def remove(self, conn: ServiceIdentityConnection, identity: str) -> Result:
        found = self.accounts.annotations(conn.metadata.namespace or "", conn.spec.service_account_name)
        self.made.discard((conn.metadata.namespace or "", conn.spec.service_account_name, identity.lower()))
        if kept_for_another(found or {}, conn, self.provider, identity, self.same_identity):
            return Result(outcome.ready(f"the link to {identity} is retained: left in place"), None)
        recorded = conn.status.gcp is not None and bool(conn.status.gcp.adopted)
        same = conn.status.identity is not None and self.same_identity(conn.status.identity, identity)
        if (recorded and same) or _marked(found or {}, ADOPTED_ANNOTATION, identity):
            ns = conn.metadata.namespace or ""
            return release(self.accounts, conn, identity, decide.member(self.pool, ns, conn.spec.service_account_name))
        return delete(self.cloud, self.accounts, self.pool, conn, identity, found)

    def retain(self, conn: ServiceIdentityConnection) -> Result:
        return mark_retained(self.accounts, conn, "Workload Identity member")

    def survey(self, group: Group, linked: list[Linked]) -> Findings:
        try:
            members: set[str] | None = sweep.bound_members(self.cloud.policy(group[1]))
        except NotFound:
            members = None  # the service account is gone, and its policy with it
        return sweep.findings(group[1], self.pool, linked, members)

    def retained_orphan(self, orphan: Orphan) -> bool:
        return False  # GCP members are never reported as orphans (reconcile/drift.py)

    def retained_links(self, namespace: str | None, marks: Mapping[tuple[str, str], str]) -> list[RetainedLink]:
        return [RetainedLink(self.provider, ns, sa, email) for (ns, sa), email in marks.items()]

    def remove_retained(self, retained: RetainedLink) -> str:
        ns, sa, email = retained.namespace, retained.service_account, retained.identity
        who = decide.member(self.pool, ns, sa)
        try:
            _, wrote = self.cloud.update(email, lambda policy: decide.without_member(policy, who))
        except NotFound:
            wrote = False  # the service account is gone, and its policy with it
        found = self.accounts.annotations(ns, sa) or {}
        marks: dict[str, str | None] = {retained_annotation(self.provider): None, MADE_ANNOTATION: None}
        if _marked(found, decide.SERVICE_ACCOUNT_ANNOTATION, email):
            marks[decide.SERVICE_ACCOUNT_ANNOTATION] = None
        self.accounts.annotate_if_present(ns, sa, marks)
        return (
            f"removed the retained {who} from {email}"
            if wrote
            else f"the retained {who} was already absent from {email}"
        )

    def delete_orphan(self, orphan: Orphan) -> None:
        raise NotImplementedError("GCP members are never orphans")


def _failed(err: CloudError, step: str) -> Outcome:
    """Every call here addresses the identity: a NotFound means it is gone."""
    return outcome.from_error(err, what=step, missing=Reason.IDENTITY_NOT_FOUND)
