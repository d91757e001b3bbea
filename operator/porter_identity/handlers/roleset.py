"""kopf handlers for PorterRoleSet: sync on change, on resume and on a timer (drift); delete per deletionPolicy."""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from porter_identity import GROUP, VERSION, metrics
from porter_identity.api.roleset import PLURAL, SINGULAR, PorterRoleSet, RoleSetStatus
from porter_identity.config import Settings
from porter_identity.handlers.shard import serves_rolesets
from porter_identity.iam.sync import RoleSetService, SyncResult
from porter_identity.kube.events import Events
from porter_identity.providers.locks import KeyedLocks
from porter_identity.reconcile import backoff, conditions
from porter_identity.reconcile.outcome import Outcome, Reason, State, stalled

# The timer's interval is a decorator argument, so it is read when the module loads (same PORTER_* variable).
SYNC_SECONDS = Settings().roleset_sync_seconds
_LOCKS = KeyedLocks()
BLOCKED_DELETE_RECHECK_SECONDS = 10.0


def _event(memo: kopf.Memo, body: kopf.Body, type: str, reason: str, message: str) -> None:
    events: Events = memo.events
    events.post(body, type, reason, message)


def _parse(body: kopf.Body) -> PorterRoleSet | Outcome:
    try:
        return PorterRoleSet.from_body(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return stalled(Reason.INVALID_SPEC, f"{where}: {first['msg']}")


def _write(patch: kopf.Patch, rs: PorterRoleSet, result: SyncResult) -> None:
    """Patch status only when it changed, so an idle sync makes no Kubernetes write."""
    declared = rs.spec.role_names
    roles = result.roles or rs.status.roles
    ready = sum(1 for r in roles if r.name in declared and r.ready is not None and r.ready.status == "True")
    new = RoleSetStatus(
        observed_generation=rs.metadata.generation,
        conditions=conditions.build(
            result.outcome, rs.metadata.generation, rs.status.conditions, conditions.now_rfc3339()
        ),
        # Counted against the spec, so a set that never reached its account reads 0/N, not blank.
        roles_ready=f"{ready}/{len(declared)}",
        roles=roles,
    )
    doc = new.model_dump(mode="json", by_alias=True)
    if doc == rs.status.model_dump(mode="json", by_alias=True):
        return
    for key, value in doc.items():
        patch.status[key] = value


def _announce(memo: kopf.Memo, body: kopf.Body, rs: PorterRoleSet, result: SyncResult) -> None:
    for change in result.changes:
        _event(memo, body, type="Normal", reason=change.reason, message=change.message)
    for warning in result.warnings:
        _event(memo, body, type="Warning", reason=warning.reason, message=warning.message)
    before = conditions.ready_condition(rs.status.conditions)
    if before is None or before.reason != result.outcome.reason.value or before.message != result.outcome.message:
        kind = "Normal" if result.outcome.state is State.READY else "Warning"
        _event(memo, body, type=kind, reason=result.outcome.reason.value, message=result.outcome.message)


def _sync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any) -> Outcome:
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        _event(memo, body, type="Warning", reason=parsed.reason.value, message=parsed.message)
        return parsed
    service: RoleSetService = memo.roleset_service
    with _LOCKS.hold(parsed.metadata.name), metrics.reconciling(SINGULAR, "aws"):
        result = service.sync(parsed)
    metrics.reconciled(SINGULAR, "aws", result.outcome.reason.value)
    _write(patch, parsed, result)
    _announce(memo, body, parsed, result)
    log = logger.info if result.outcome.state is State.READY else logger.warning
    log(result.outcome.message, extra={"reason": result.outcome.reason.value, "provider": "aws"})
    return result.outcome


@kopf.on.resume(GROUP, VERSION, PLURAL, when=serves_rolesets)
@kopf.on.create(GROUP, VERSION, PLURAL, when=serves_rolesets)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", when=serves_rolesets)
def reconcile(body: kopf.Body, patch: kopf.Patch, retry: int, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    result = _sync(body, patch, memo, logger)
    settings: Settings = memo.settings
    if result.retryable:
        delay = backoff.delay(retry, settings.retry_base_seconds, settings.retry_max_seconds)
        raise kopf.TemporaryError(result.message, delay=delay)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SYNC_SECONDS, initial_delay=SYNC_SECONDS, when=serves_rolesets)
def drift(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """Re-read the account (and the Secret, so a rotated ExternalId is picked up) and repair what changed."""
    _sync(body, patch, memo, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=serves_rolesets)
def delete(body: kopf.Body, patch: kopf.Patch, retry: int, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        return  # never valid, so nothing was ever created for it
    service: RoleSetService = memo.roleset_service
    with _LOCKS.hold(parsed.metadata.name):
        result = service.delete(parsed)
    for change in result.changes:
        _event(memo, body, type="Normal", reason=change.reason, message=change.message)
    if result.outcome.state is not State.READY:
        _write(patch, parsed, result)
        _announce(memo, body, parsed, SyncResult(result.outcome))
        settings: Settings = memo.settings
        delay = backoff.delay(retry, settings.retry_base_seconds, settings.retry_max_seconds)
        # kopf wakes a delayed handler only when its delay is over, not on a spec change: short enough that
        # switching to Retain (the documented way out) finishes the delete within seconds.
        raise kopf.TemporaryError(result.outcome.message, delay=min(delay, BLOCKED_DELETE_RECHECK_SECONDS))
    logger.info(result.outcome.message, extra={"reason": result.outcome.reason.value})
