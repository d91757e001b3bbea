"""kopf handlers for ServiceIdentityConnection: parse, run the link lifecycle, write status and Events."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import kopf
from pydantic import ValidationError

from porter_identity import GROUP, VERSION, metrics
from porter_identity.api.common import DeletionPolicy
from porter_identity.api.connection import PLURAL, SINGULAR, ServiceIdentityConnection
from porter_identity.api.policy import Policy
from porter_identity.config import Settings
from porter_identity.handlers import namespaces
from porter_identity.handlers.shard import in_shard
from porter_identity.kube import rest
from porter_identity.kube import status as kstatus
from porter_identity.kube.events import Events
from porter_identity.kube.rest import Kube
from porter_identity.links.base import Change, Result
from porter_identity.links.lifecycle import Lifecycle, Step, recorded
from porter_identity.providers.locks import KeyedLocks
from porter_identity.reconcile import backoff, claims, conditions, guard, reconcile_policy
from porter_identity.reconcile.drift import DRIFT_CORRECTED
from porter_identity.reconcile.outcome import (
    NOT_CLAIMING,
    Action,
    Outcome,
    Reason,
    State,
    stalled,
)
from porter_identity.reconcile.reconcile_policy import ReconcilePolicy

KIND = SINGULAR
# One reconcile of a connection at a time, by uid: kopf's handlers, a recheck and a sweep's rerun never overlap.
LOCKS = KeyedLocks()
ClaimKey = tuple[str, str, str]  # namespace, ServiceAccount, provider
log = logging.getLogger(__name__)


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


def _parse(body: Mapping[str, Any]) -> ServiceIdentityConnection | Outcome:
    try:
        return ServiceIdentityConnection.from_body(body)
    except (ValidationError, ValueError) as err:
        if isinstance(err, ValidationError):
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return stalled(Reason.INVALID_SPEC, f"{where}: {first['msg']}")
        return stalled(Reason.INVALID_SPEC, str(err))


def _provider_of(spec: Mapping[str, Any]) -> str:
    return next((p for p in ("aws", "azure", "gcp") if isinstance(spec.get(p), Mapping)), "")


def _identity_of(spec: Mapping[str, Any]) -> str:
    aws, azure, gcp = spec.get("aws") or {}, spec.get("azure") or {}, spec.get("gcp") or {}
    if azure:
        return f"{azure.get('resourceGroup', '')}/{azure.get('identityName', '')}"
    return str(aws.get("role") or gcp.get("serviceAccountEmail") or "")


@kopf.index(GROUP, VERSION, PLURAL)
async def by_service_account(
    namespace: str | None, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, name: str, **_: Any
) -> dict[ClaimKey, claims.Claim]:
    """In-memory index of connections by the ServiceAccount and cloud they link, for ownership without API reads.

    Async on purpose: kopf runs sync callbacks in its thread pool, and this one runs on every watch event."""
    created = str(meta.get("creationTimestamp") or "")
    ready: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    rank = claims.rank(ready.get("status") == "True", str(ready.get("reason", "")), NOT_CLAIMING)
    if meta.get("deletionTimestamp"):
        rank = claims.NONE  # going away: the next claimant may take over as soon as its link is gone
    claim = claims.Claim(rank, created, str(meta.uid), name, _identity_of(spec), str(ready.get("reason", "")))
    return {(namespace or "", str(spec.get("serviceAccountName", "")), _provider_of(spec)): claim}


def _key(conn: ServiceIdentityConnection) -> ClaimKey:
    return (conn.metadata.namespace or "", conn.spec.service_account_name, conn.spec.provider.value)


def _owner(
    index: kopf.Index[ClaimKey, claims.Claim] | None, conn: ServiceIdentityConnection, ignoring: Iterable[str] = ()
) -> claims.Claim | None:
    """Another connection that owns this one's ServiceAccount for its cloud, else None."""
    assert index is not None, "kopf passes every index to every handler"
    skip = set(ignoring)
    winner = claims.owner(c for c in index.get(_key(conn), []) if c.uid not in skip)
    return None if winner is None or winner.uid == conn.metadata.uid else winner


def _backoff(result: Outcome, retry: int, settings: Settings) -> float:
    # Waiting for our own write on the same identity ends soon: retry quickly, not with growing backoff.
    steps = min(retry, 2) if result.reason is Reason.PROGRESSING else retry
    return backoff.delay(steps, settings.retry_base_seconds, settings.retry_max_seconds)


def run(
    memo: kopf.Memo,
    conn: ServiceIdentityConnection,
    owners: kopf.Index[ClaimKey, claims.Claim] | None,
    allowed: kopf.Index[str, str] | None,
    ignoring: Iterable[str] = (),
) -> Step:
    """One lifecycle run under the connection's lock: policy, ownership, then the link."""
    with LOCKS.hold(conn.metadata.uid):
        return _run(memo, conn, owners, allowed, ignoring)


def _run(
    memo: kopf.Memo,
    conn: ServiceIdentityConnection,
    owners: kopf.Index[ClaimKey, claims.Claim] | None,
    allowed: kopf.Index[str, str] | None,
    ignoring: Iterable[str],
) -> Step:
    """`run`, with the connection's lock already held."""
    lifecycle: Lifecycle = memo.lifecycle
    decision = namespaces.check(memo, allowed, conn.spec, conn.metadata.namespace or "")
    refusal = None if decision.allowed else decision.message
    if refusal is None and recorded(conn) is None:
        refusal = _over_budget(memo, owners, conn)
    with metrics.reconciling(KIND, conn.spec.provider.value):
        step = lifecycle.apply(conn, refusal, _owner(owners, conn, ignoring))
        if step.result.outcome.state is State.READY:
            # Check after acting: a connection applied at the same moment may have reached the index meanwhile.
            late = _owner(owners, conn, ignoring)
            if late is not None:
                linked = conn.model_copy(
                    update={
                        "status": kstatus.next_status(conn, step.result.outcome, None, step.linked, step.result.status)
                    }
                )
                return lifecycle.apply(linked, refusal, late)
        return step


def _nowhere(body: Any, type: str, reason: str, message: str) -> None:
    """Where Events of connections in a protected namespace go."""


def _over_budget(
    memo: kopf.Memo, owners: kopf.Index[ClaimKey, claims.Claim] | None, conn: ServiceIdentityConnection
) -> str | None:
    """The policy's per-namespace budget on one identity, for a connection that links nothing yet: counted over the
    connections of its namespace that hold a link (so when the webhook was bypassed, the first to link keep theirs)."""
    policy: Policy | None = memo.policy
    limit = policy.max_links_per_namespace_per_identity if policy is not None else None
    if limit is None or owners is None:
        return None
    ns, provider = conn.metadata.namespace or "", conn.spec.provider.value
    holding = [
        guard.target_named(provider, c.identity)
        for key in list(owners)
        if key[0] == ns and key[2] == provider
        for c in owners.get(key, [])
        if c.rank == claims.HOLDS and c.uid != conn.metadata.uid
    ]
    refused = guard.over_budget(conn.spec, ns, limit, [t for t in holding if t is not None])
    return None if refused is None else refused.message


def _report(
    body: Any,
    conn: ServiceIdentityConnection,
    step: Step,
    settings: Settings,
    post: Any,
    logger: Any,
    drift: str | None = None,
) -> bool:
    """Events and the log line for one run; True when the Ready condition changed. `drift`: what the sweep saw,
    when this run repaired something changed outside (a DriftCorrected Warning instead of the Normal Event)."""
    result = step.result
    provider = conn.spec.provider.value
    metrics.reconciled(KIND, provider, result.outcome.reason.value)
    if guard.protected_namespace(conn.metadata.namespace or "", settings) is not None:
        post = _nowhere  # the operator posts nothing in a protected namespace (docs/security.md)
    kstatus.warn_broad(body, conn.status, result.privilege, result.outcome, post)
    before = conditions.ready_condition(conn.status.conditions)
    changed = before is None or (before.reason, before.message) != (result.outcome.reason.value, result.outcome.message)
    ready = result.outcome.state is State.READY
    if result.change is not None and ready and drift is not None:
        metrics.DRIFT_CORRECTED.labels(provider).inc()
        message = f"{drift}; {result.change.message}; {result.outcome.message}"
        post(body, "Warning", DRIFT_CORRECTED, message)
        logger.warning(
            f"{conn.metadata.namespace}/{conn.metadata.name}: {message}",
            extra={"reason": DRIFT_CORRECTED, "provider": provider},
        )
        return changed
    if result.change is not None and ready:
        # One Event for one state change: what was done, and what is true now.
        post(body, "Normal", result.change.reason, f"{result.change.message}; {result.outcome.message}")
    else:
        if result.change is not None:
            post(body, "Normal", result.change.reason, result.change.message)
        if changed:
            post(body, "Normal" if ready else "Warning", result.outcome.reason.value, result.outcome.message)
    if changed or result.change is not None:
        # Rechecks that find nothing new stay quiet: no Event, no status write, no log line above DEBUG.
        (logger.info if ready else logger.warning)(
            f"{conn.metadata.namespace}/{conn.metadata.name}: {result.outcome.message}",
            extra={"reason": result.outcome.reason.value, "provider": provider},
        )
    return changed


def _wake(memo: kopf.Memo, owners: kopf.Index[ClaimKey, claims.Claim] | None, key: ClaimKey, gone: str) -> None:
    """The owner of a ServiceAccount went away or stopped linking: the next claimant is run at once."""
    assert owners is not None
    # The first claimant that can link becomes the owner; the others stay Conflict.
    first = next(iter(claims.waiting(owners.get(key, []), gone)), None)
    if first is not None:
        rerun(memo, key[0], first.name, first.uid, f"connection {gone} no longer links {key[0]}/{key[1]}", (gone,))


def _settle(
    body: Any,
    patch: kopf.Patch,
    retry: int,
    memo: kopf.Memo,
    logger: Any,
    owners: kopf.Index[ClaimKey, claims.Claim] | None,
    allowed: kopf.Index[str, str] | None,
    conn: ServiceIdentityConnection,
) -> None:
    step = run(memo, conn, owners, allowed)
    new = kstatus.next_status(conn, step.result.outcome, step.result.privilege, step.linked, step.result.status)
    kstatus.write(patch, conn.status, new)
    events: Events = memo.events
    _report(body, conn, step, memo.settings, events.post, logger)
    _pass_on(memo, owners, conn, step)
    if step.result.outcome.retryable:
        raise kopf.TemporaryError(
            step.result.outcome.message, delay=_backoff(step.result.outcome, retry, memo.settings)
        )


def _pass_on(
    memo: kopf.Memo, owners: kopf.Index[ClaimKey, claims.Claim] | None, conn: ServiceIdentityConnection, step: Step
) -> None:
    """Wake the next claimant when this connection stopped claiming, or yielded and removed the link it had made
    (two made at the same moment: the owner may have failed against this one's link meanwhile)."""
    reason = step.result.outcome.reason
    gave_up = reason in NOT_CLAIMING and _claimed(conn)
    yielded = reason is Reason.CONFLICT and step.result.change is not None
    if gave_up or yielded:
        _wake(memo, owners, _key(conn), conn.metadata.uid)


def _claimed(conn: ServiceIdentityConnection) -> bool:
    """Whether this connection held or could make its link before this run."""
    ready = conditions.ready_condition(conn.status.conditions)
    return ready is None or ready.status == "True" or ready.reason not in NOT_CLAIMING


def _paused(memo: kopf.Memo, body: Mapping[str, Any], logger: Any, why: str) -> bool:
    """Whether the object's reconcile-policy says skip; then the Event says what was not done, and why."""
    annotations = (body.get("metadata") or {}).get("annotations")
    pause, warning = reconcile_policy.of(annotations)
    if warning is not None:
        memo.events.post(body, "Warning", Action.PAUSED.value, warning)
    if pause is not ReconcilePolicy.SKIP:
        return False
    message = reconcile_policy.paused_message(why)
    memo.events.post(body, "Normal", Action.PAUSED.value, message)
    logger.info(message, extra={"reason": Action.PAUSED.value})
    return True


@kopf.on.update(GROUP, VERSION, PLURAL, field=("metadata", "annotations", reconcile_policy.ANNOTATION), when=in_shard)
def reconcile_policy_changed(
    body: kopf.Body, old: Any, new: Any, memo: kopf.Memo, namespace: str | None, name: str | None, **_: Any
) -> None:
    """Leaving skip resumes at once: the link is brought back to the spec (drift included)."""
    if reconcile_policy.of({reconcile_policy.ANNOTATION: new} if new else None)[0] is ReconcilePolicy.SKIP:
        return
    rerun(
        memo,
        namespace or "",
        name or "",
        str(body.metadata.uid),
        f"{reconcile_policy.ANNOTATION} is now {new or 'unset'}",
        drifted=True,
    )


@kopf.on.resume(GROUP, VERSION, PLURAL, when=in_shard)
@kopf.on.create(GROUP, VERSION, PLURAL, when=in_shard)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", when=in_shard)
def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    retry: int,
    memo: kopf.Memo,
    logger: Any,
    by_service_account: kopf.Index[ClaimKey, claims.Claim] | None = None,
    allowed_identities: kopf.Index[str, str] | None = None,
    **_: Any,
) -> None:
    """Stalled ends the handler (the stalled recheck looks again, handlers/drift.py); only Reconciling is kopf's."""
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        memo.events.post(body, "Warning", parsed.reason.value, parsed.message)
        logger.warning(parsed.message, extra={"reason": parsed.reason.value})
        return
    conn = parsed
    if _paused(memo, body, logger, "reconcile"):
        return
    # With PORTER_BLOCK_BROAD_PERMISSIONS the identity's permissions are read on resume too (cached per identity):
    # a role made admin while the operator was down must lose its link. The policy is checked before the shortcut:
    # a rule withdrawn while the operator was down is enforced on resume.
    settings: Settings = memo.settings
    current = _is_current(conn) and not settings.block_broad_permissions
    if current and namespaces.check(memo, allowed_identities, conn.spec, conn.metadata.namespace or "").allowed:
        metrics.reconciled(KIND, conn.spec.provider.value, "UpToDate")
        return
    _settle(body, patch, retry, memo, logger, by_service_account, allowed_identities, conn)


def rerun(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    uid: str,
    why: str,
    ignoring: Iterable[str] = (),
    drifted: bool = False,
) -> Outcome | None:
    """Run a connection's lifecycle outside its kopf handler (the drift sweep, a woken claimant, a revocation):
    read it fresh, run, patch status only on change (resourceVersion-checked), post Events. None when it went away
    or is not to be run."""
    for _ in range(RERUN_ATTEMPTS):
        try:
            with LOCKS.hold(uid):
                ran = _rerun_locked(memo, namespace, name, uid, why, ignoring)
        except _WrittenMeanwhile:
            continue
        if ran is None:
            return None
        body, conn, step = ran
        log.debug(f"{namespace}/{name}: run again: {why}")
        _pass_on(memo, memo.by_service_account, conn, step)
        events: Events = memo.events
        _report(body, conn, step, memo.settings, events.post, log, why if drifted else None)
        return step.result.outcome
    log.warning(f"{namespace}/{name}: status changed under {RERUN_ATTEMPTS} runs in a row ({why}); left to the next")
    return None


# Read, run and write under the connection's lock, and again when the write finds the object changed: its handler
# may have returned just before (the lock is free) while kopf's patch of the older result is still on its way. That
# patch is no newer than this run, and no handler runs again for a status change, so dropping this run's result
# would leave the status saying what the cloud no longer shows (two connections created together for one
# ServiceAccount: the woken one linked, its status still said Conflict).
RERUN_ATTEMPTS = 3


class _WrittenMeanwhile(Exception):
    """The status write found another resourceVersion: read and run again."""


def _rerun_locked(
    memo: kopf.Memo, namespace: str, name: str, uid: str, why: str, ignoring: Iterable[str]
) -> tuple[Any, ServiceIdentityConnection, Step] | None:
    kube: Kube = memo.kube
    where = rest.path(GROUP, VERSION, PLURAL, namespace, name)
    try:
        body: Any = kube.get(where)
    except rest.ApiError as err:
        if err.status == 404:
            return None
        raise
    meta = body.get("metadata") or {}
    if meta.get("uid") != uid or meta.get("deletionTimestamp"):
        return None
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        return None
    conn = parsed
    if _paused(memo, body, log, f"running it again ({why})"):
        return None
    step = _run(memo, conn, memo.by_service_account, memo.allowed_identities, ignoring)
    new = kstatus.next_status(conn, step.result.outcome, step.result.privilege, step.linked, step.result.status)
    doc = new.model_dump(mode="json", by_alias=True)
    if doc != conn.status.model_dump(mode="json", by_alias=True):
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": doc}
        try:
            kube.patch(f"{where}/status", patch)
        except rest.ApiError as err:
            if err.status == 409:
                raise _WrittenMeanwhile from None
            raise
    return body, conn, step


@kopf.on.delete(GROUP, VERSION, PLURAL, when=in_shard)
def delete(
    body: kopf.Body,
    retry: int,
    memo: kopf.Memo,
    logger: Any,
    by_service_account: kopf.Index[ClaimKey, claims.Claim] | None = None,
    **_: Any,
) -> None:
    """Remove the cloud link; the finalizer comes off only when this returns."""
    settings: Settings = memo.settings
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        if any((body.get("status") or {}).get(p) for p in ("aws", "azure", "gcp")):
            # Something was linked, but the spec no longer says what: keep the finalizer, say how to get out.
            message = f"cannot tell which link to remove ({parsed.message}); fix the spec, or remove the finalizer"
            memo.events.post(body, "Warning", parsed.reason.value, message)
            raise kopf.TemporaryError(message, delay=settings.stalled_recheck_seconds)
        return  # never linked: an unparseable spec is never applied
    conn = parsed
    pause = reconcile_policy.of(body.metadata.annotations)[0]
    if pause is ReconcilePolicy.SKIP:
        message = reconcile_policy.paused_message("deleting the cloud link") + " (the link is left as it is)"
        memo.events.post(body, "Normal", Action.PAUSED.value, message)
        logger.info(message, extra={"reason": Action.PAUSED.value, "provider": conn.spec.provider.value})
        return
    if pause is ReconcilePolicy.DETACH_ON_DELETE:
        # Kept exactly as deletionPolicy: Retain keeps it, so the drift sweep never takes it for an orphan.
        conn = conn.model_copy(update={"spec": conn.spec.model_copy(update={"deletion_policy": DeletionPolicy.RETAIN})})
    lifecycle: Lifecycle = memo.lifecycle
    with LOCKS.hold(conn.metadata.uid):  # a sweep's rerun of this connection finishes first
        result: Result = lifecycle.delete(conn, _owner(by_service_account, conn))
    if result.outcome.state is not State.READY:
        if result.outcome.reason is not Reason.PROGRESSING:
            memo.events.post(body, "Warning", result.outcome.reason.value, result.outcome.message)
            logger.warning(
                result.outcome.message,
                extra={"reason": result.outcome.reason.value, "provider": conn.spec.provider.value},
            )
        # The finalizer stays until the link is gone, whatever the failure.
        delay = (
            settings.stalled_recheck_seconds
            if result.outcome.state is State.STALLED
            else _backoff(result.outcome, retry, settings)
        )
        raise kopf.TemporaryError(result.outcome.message, delay=delay)
    if pause is ReconcilePolicy.DETACH_ON_DELETE and result.change is not None:
        message = f"{reconcile_policy.ANNOTATION} is detach-on-delete: {result.change.message}"
        result = replace(result, change=Change(Action.DETACHED, message))
    if result.change is not None:
        memo.events.post(body, "Normal", result.change.reason, result.change.message)
        logger.info(result.change.message, extra={"reason": result.change.reason, "provider": conn.spec.provider.value})
    _wake(memo, by_service_account, _key(conn), conn.metadata.uid)


@kopf.on.event("", "v1", "serviceaccounts")
def service_account_seen(type: str | None, name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A connection waiting for its ServiceAccount runs as soon as the watch shows it, not at its next backoff."""
    if type not in (None, "ADDED"):
        return
    owners: kopf.Index[ClaimKey, claims.Claim] | None = memo.get("by_service_account")
    if owners is None:
        return  # not started yet: the connections' own handlers run after start-up anyway
    for provider in ("aws", "azure", "gcp"):
        for claim in list(owners.get((namespace or "", name, provider), [])):
            if claim.reason == Reason.SERVICE_ACCOUNT_NOT_FOUND:
                rerun(memo, namespace or "", claim.name, claim.uid, f"ServiceAccount {namespace}/{name} appeared")
