"""kopf handlers for ServiceIdentityConnection: parse, hand over to the provider workflow, write status."""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from porter_identity import GROUP, VERSION, metrics
from porter_identity.api.connection import PLURAL, SINGULAR, Provider, ServiceIdentityConnection
from porter_identity.config import Settings
from porter_identity.handlers import aws, azure, gcp, namespaces
from porter_identity.handlers.result import Result
from porter_identity.handlers.shard import in_shard
from porter_identity.kube import status as kstatus
from porter_identity.kube.serviceaccounts import ServiceAccounts
from porter_identity.providers.clients import Clouds
from porter_identity.providers.locks import KeyedLocks
from porter_identity.reconcile import backoff, claims, conditions
from porter_identity.reconcile.outcome import Outcome, Reason, State, stalled

KIND = SINGULAR
# One reconcile of a connection at a time, by uid: kopf's handler and a drift sweep's repair never overlap.
LOCKS = KeyedLocks()


def _is_current(conn: ServiceIdentityConnection) -> bool:
    """Status already describes this generation as Ready: nothing to do (no cloud call, no write)."""
    ready = conditions.ready_condition(conn.status.conditions)
    recorded = getattr(conn.status, conn.spec.provider.value)
    return (
        ready is not None
        and ready.status == "True"
        and conn.status.observed_generation == conn.metadata.generation
        and recorded is not None
    )


def _parse(body: kopf.Body) -> ServiceIdentityConnection | Outcome:
    try:
        return ServiceIdentityConnection.from_body(body)
    except (ValidationError, ValueError) as err:
        if isinstance(err, ValidationError):
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return stalled(Reason.INVALID_SPEC, f"{where}: {first['msg']}")
        return stalled(Reason.INVALID_SPEC, str(err))


def _not_configured(provider: Provider, what: str) -> Result:
    return Result(stalled(Reason.NOT_CONFIGURED, f"{provider.value} connections need operator settings: {what}"), None)


def apply_link(memo: kopf.Memo, conn: ServiceIdentityConnection) -> Result:
    clouds: Clouds = memo.clouds
    settings: Settings = memo.settings
    accounts: ServiceAccounts = memo.service_accounts
    provider = conn.spec.provider
    if provider is Provider.AWS:
        if clouds.aws is None:
            return _not_configured(provider, "PORTER_EKS_CLUSTER_NAME")
        return aws.apply(clouds.aws, conn, settings.aws_account_id, settings.block_broad_permissions)
    if provider is Provider.AZURE:
        if clouds.azure is None or settings.oidc_issuer is None:
            return _not_configured(provider, "PORTER_AZURE_SUBSCRIPTION_ID and PORTER_OIDC_ISSUER")
        return azure.apply(clouds.azure, accounts, settings.oidc_issuer, conn, settings.block_broad_permissions)
    if clouds.gcp is None or settings.workload_pool is None or settings.gcp_project_id is None:
        return _not_configured(provider, "PORTER_GCP_PROJECT_ID")
    return gcp.apply(
        clouds.gcp, accounts, settings.gcp_project_id, settings.workload_pool, conn, settings.block_broad_permissions
    )


def _delete(memo: kopf.Memo, conn: ServiceIdentityConnection) -> Result | None:
    """None when this operator has no client for the provider, so it cannot have created anything."""
    clouds: Clouds = memo.clouds
    settings: Settings = memo.settings
    accounts: ServiceAccounts = memo.service_accounts
    if conn.spec.aws is not None and clouds.aws is not None:
        return aws.delete(clouds.aws, conn)
    if conn.spec.azure is not None and clouds.azure is not None:
        return azure.delete(clouds.azure, accounts, conn)
    if conn.spec.gcp is not None and clouds.gcp is not None and settings.workload_pool is not None:
        return gcp.delete(clouds.gcp, accounts, settings.workload_pool, conn)
    return None


@kopf.index(GROUP, VERSION, PLURAL)
async def by_service_account(
    namespace: str | None, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, name: str, **_: Any
) -> dict[tuple[str, str], claims.Claim]:
    """In-memory index of connections by the ServiceAccount they link, for conflicts without API reads.

    Async on purpose: kopf runs sync callbacks in its thread pool, and this one runs on every watch event."""
    created = str(meta.get("creationTimestamp") or "")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    claim = claims.Claim(0 if ready else 1, created, str(meta.uid), name)
    return {(namespace or "", str(spec.get("serviceAccountName", ""))): claim}


def _claimed_by_other(
    index: kopf.Index[tuple[str, str], claims.Claim] | None, conn: ServiceIdentityConnection
) -> str | None:
    """The conflict message when an older connection links the same ServiceAccount, else None."""
    assert index is not None, "kopf passes every index to every handler"
    key = (conn.metadata.namespace or "", conn.spec.service_account_name)
    winner = claims.owner(index.get(key, []))
    if winner is None or winner.uid == conn.metadata.uid:
        return None
    return claims.conflict_message(key[0], key[1], winner)


def _backoff(result: Outcome, retry: int, settings: Settings) -> float:
    # Waiting for our own write on the same identity ends soon: retry quickly, not with growing backoff.
    steps = min(retry, 2) if result.reason is Reason.PROGRESSING else retry
    return backoff.delay(steps, settings.retry_base_seconds, settings.retry_max_seconds)


def _refuse(memo: kopf.Memo, conn: ServiceIdentityConnection, message: str, claimed: bool) -> Result:
    """NotAllowed; a link made before the rule changed is removed, since the admin has revoked it."""
    refusal = stalled(Reason.NOT_ALLOWED, message)
    recorded = getattr(conn.status, conn.spec.provider.value)
    if recorded is None or claimed:
        return Result(refusal, None)
    removed = _delete(memo, conn)
    if removed is None:
        return Result(refusal, None)
    if removed.outcome.state is not State.READY:
        return Result(removed.outcome, recorded)  # retried with backoff until the link is gone
    return Result(refusal, None, removed.change)


def _retry_after(result: Outcome, retry: int, settings: Settings) -> None:
    if result.retryable:
        raise kopf.TemporaryError(result.message, delay=_backoff(result, retry, settings))
    if result.recheck:
        raise kopf.TemporaryError(result.message, delay=settings.stalled_recheck_seconds)


@kopf.on.resume(GROUP, VERSION, PLURAL, when=in_shard)
@kopf.on.create(GROUP, VERSION, PLURAL, when=in_shard)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", when=in_shard)
def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    retry: int,
    memo: kopf.Memo,
    logger: Any,
    by_service_account: kopf.Index[tuple[str, str], claims.Claim] | None = None,
    allowed_identities: kopf.Index[str, str] | None = None,
    **_: Any,
) -> None:
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        kopf.event(body, type="Warning", reason=parsed.reason.value, message=parsed.message)
        logger.warning(parsed.message, extra={"reason": parsed.reason.value})
        return
    conn = parsed
    provider = conn.spec.provider.value
    # Before the up-to-date shortcut: a rule withdrawn while the operator was down is enforced on resume.
    decision = namespaces.check(memo, allowed_identities, conn.spec, conn.metadata.namespace or "")
    if decision.allowed and _is_current(conn):
        metrics.reconciled(KIND, provider, "UpToDate")
        return
    with LOCKS.hold(conn.metadata.uid), metrics.reconciling(KIND, provider):
        taken = _claimed_by_other(by_service_account, conn)
        if not decision.allowed:
            result = _refuse(memo, conn, decision.message, taken is not None)
        elif taken:
            result = Result(stalled(Reason.CONFLICT, taken), None)
        else:
            result = apply_link(memo, conn)
    metrics.reconciled(KIND, provider, result.outcome.reason.value)
    new = kstatus.next_status(conn, result.outcome, result.privilege, **{conn.spec.provider.value: result.status})
    kstatus.write(patch, conn.status, new)
    kstatus.warn_broad(body, conn.status, result.privilege, result.outcome)
    if result.change is not None and result.outcome.state is State.READY:
        # One Event for one state change: what was done, and what is true now.
        message = f"{result.change.message}; {result.outcome.message}"
        kopf.event(body, type="Normal", reason=result.change.reason, message=message)
    else:
        if result.change is not None:
            kopf.event(body, type="Normal", reason=result.change.reason, message=result.change.message)
        kstatus.announce(body, conn.status, result.outcome)
    log = logger.info if result.outcome.state is State.READY else logger.warning
    log(result.outcome.message, extra={"reason": result.outcome.reason.value, "provider": conn.spec.provider.value})
    _retry_after(result.outcome, retry, memo.settings)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=in_shard)
def delete(
    body: kopf.Body,
    retry: int,
    memo: kopf.Memo,
    logger: Any,
    by_service_account: kopf.Index[tuple[str, str], claims.Claim] | None = None,
    allowed_identities: kopf.Index[str, str] | None = None,
    **_: Any,
) -> None:
    """Remove the cloud link; the finalizer comes off only when this returns."""
    settings: Settings = memo.settings
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        return  # never admitted, so nothing was ever created for it
    conn = parsed
    if conn.spec.deletion_policy.value == "Retain":
        kopf.event(body, type="Normal", reason="Retained", message="deletionPolicy is Retain: cloud link left in place")
        return
    if _claimed_by_other(by_service_account, conn):
        return  # the link belongs to the older connection: deleting this one must not remove it
    recorded = getattr(conn.status, conn.spec.provider.value)
    if (
        recorded is None
        and not namespaces.check(memo, allowed_identities, conn.spec, conn.metadata.namespace or "").allowed
    ):
        return  # refused before it could link anything: the same names may belong to an allowed connection
    with LOCKS.hold(conn.metadata.uid):  # a sweep's repair of this connection finishes first
        result = _delete(memo, conn)
    if result is None:
        return
    if result.outcome.state is not State.READY:
        if result.outcome.reason is not Reason.PROGRESSING:
            kopf.event(body, type="Warning", reason=result.outcome.reason.value, message=result.outcome.message)
        # The finalizer stays until the link is gone, whatever the failure.
        raise kopf.TemporaryError(result.outcome.message, delay=_backoff(result.outcome, retry, settings))
    if result.change is not None:
        kopf.event(body, type="Normal", reason=result.change.reason, message=result.change.message)
        logger.info(result.change.message, extra={"reason": result.change.reason})
