"""Carry out the Azure plan: a federated identity credential on the identity, client id on the ServiceAccount."""

from __future__ import annotations

from porter_identity.api.connection import AzureStatus, ServiceIdentityConnection
from porter_identity.handlers.result import Change, Result
from porter_identity.kube.serviceaccounts import ServiceAccountMissing, ServiceAccounts
from porter_identity.providers.azure import AzureProvider, Identity
from porter_identity.providers.errors import AccessDenied, CloudError, Conflict, LimitExceeded, NotFound
from porter_identity.reconcile import azure as decide
from porter_identity.reconcile import outcome
from porter_identity.reconcile import privilege as least
from porter_identity.reconcile.outcome import Outcome, Reason, State
from porter_identity.reconcile.privilege import Check


def _annotations(status: AzureStatus) -> dict[str, str]:
    return {
        decide.CLIENT_ID_ANNOTATION: status.client_id or "",
        decide.TENANT_ID_ANNOTATION: status.tenant_id or "",
    }


def _privilege(provider: AzureProvider, where: str, identity: Identity) -> Check:
    try:
        assignments = provider.role_assignments(identity.principal_id)
    except AccessDenied as err:
        return Check(where, unknown=err.message)
    return Check(where, tuple(least.azure_findings(assignments, provider.subscription_id)))


def apply(
    provider: AzureProvider,
    accounts: ServiceAccounts,
    issuer: str,
    conn: ServiceIdentityConnection,
    block_broad: bool = False,
) -> Result:
    spec = conn.spec.azure
    assert spec is not None
    ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
    where = f"managed identity {spec.identity_name} (resource group {spec.resource_group})"
    wanted = decide.desired(issuer, ns, sa)
    step = f"reading {where}"
    change: Change | None = None
    try:
        try:
            identity = provider.get_identity(spec.resource_group, spec.identity_name)
        except NotFound:
            return Result(
                outcome.stalled(
                    Reason.IDENTITY_NOT_FOUND,
                    f"{where} does not exist in the operator's subscription; create it or fix spec.azure",
                ),
                None,
            )
        step = f"reading the role assignments of {where}"
        privilege = _privilege(provider, where, identity)
        refusal = least.blocked(privilege, block_broad)
        if refusal is not None:
            return Result(refusal, conn.status.azure, privilege=privilege)
        step = f"reading federated identity credential {wanted.name} on {where}"
        observed = provider.get_credential(spec.resource_group, spec.identity_name, wanted.name)
        action = decide.plan_apply(wanted, observed)
        if action is not decide.Action.KEEP:
            step = f"writing federated identity credential {wanted.name} on {where}"
            provider.put_credential(spec.resource_group, spec.identity_name, wanted)
            verb = "Created" if action is decide.Action.CREATE else "Updated"
            change = Change(verb, f"{verb.lower()} federated identity credential {wanted.name} on {where}")
    except LimitExceeded as err:
        return Result(
            outcome.stalled(
                Reason.LIMIT_EXCEEDED,
                f"{where} already has the 20 federated identity credentials Azure allows ({err.message}); "
                "delete unused credentials on it or give this workload its own identity",
            ),
            conn.status.azure,
            privilege=privilege,
        )
    except Conflict as err:
        return Result(
            outcome.stalled(
                Reason.CONFLICT,
                f"another federated identity credential on {where} already trusts {wanted.subject} "
                f"({err.message}); delete it or let this connection own the link",
            ),
            conn.status.azure,
        )
    except CloudError as err:
        return Result(outcome.from_error(err, what=step), conn.status.azure)
    status = AzureStatus(
        credential_name=wanted.name,
        client_id=identity.client_id,
        principal_id=identity.principal_id,
        tenant_id=identity.tenant_id,
    )
    try:
        accounts.annotate(ns, sa, _annotations(status))
    except ServiceAccountMissing as err:
        return Result(
            Outcome(
                State.RECONCILING,
                Reason.SERVICE_ACCOUNT_NOT_FOUND,
                f"{err}: the federated credential exists; waiting to annotate it with the client id",
            ),
            status,
            change,
            privilege,
        )
    return Result(
        outcome.ready(f"service account {ns}/{sa} is federated with {where} (client id {identity.client_id})"),
        status,
        change,
        privilege,
    )


def delete(provider: AzureProvider, accounts: ServiceAccounts, conn: ServiceIdentityConnection) -> Result:
    spec = conn.spec.azure
    assert spec is not None
    ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
    name = decide.credential_name(ns, sa)
    try:
        existed = provider.delete_credential(spec.resource_group, spec.identity_name, name)
    except NotFound:
        existed = False  # the identity itself is gone, and its credentials with it
    except CloudError as err:
        return Result(outcome.from_error(err, what=f"deleting federated identity credential {name}"), None)
    if conn.status.azure is not None:
        accounts.unannotate(ns, sa, _annotations(conn.status.azure))
    message = f"deleted federated identity credential {name}" if existed else f"credential {name} already gone"
    return Result(outcome.ready(message), None, Change("Deleted", message))
