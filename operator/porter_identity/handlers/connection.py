"""kopf handlers for ServiceIdentityConnection."""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from porter_identity import GROUP, VERSION
from porter_identity.api.connection import PLURAL, Provider, ServiceIdentityConnection
from porter_identity.config import Settings
from porter_identity.handlers import aws
from porter_identity.kube import status as kstatus
from porter_identity.reconcile import backoff, conditions
from porter_identity.reconcile.outcome import Outcome, Reason, State, stalled


def _settings(memo: Any) -> Settings:
    settings: Settings = memo.settings
    return settings


def _is_current(conn: ServiceIdentityConnection) -> bool:
    """Status already describes this generation as Ready: nothing to do (no cloud call, no write)."""
    ready = conditions.ready_condition(conn.status.conditions)
    return (
        ready is not None
        and ready.status == "True"
        and conn.status.observed_generation == conn.metadata.generation
        and (conn.spec.aws is None or (conn.status.aws is not None and conn.status.aws.association_id is not None))
    )


def _invalid(body: kopf.Body, err: ValidationError) -> ServiceIdentityConnection | Outcome:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return stalled(Reason.INVALID_SPEC, f"{where}: {first['msg']}")


def _parse(body: kopf.Body) -> ServiceIdentityConnection | Outcome:
    try:
        return ServiceIdentityConnection.from_body(body)
    except ValidationError as err:
        return _invalid(body, err)


def _retry_after(result: Outcome, retry: int, settings: Settings) -> None:
    if result.retryable:
        delay = backoff.delay(retry, settings.retry_base_seconds, settings.retry_max_seconds)
        raise kopf.TemporaryError(result.message, delay=delay)
    if result.recheck:
        raise kopf.TemporaryError(result.message, delay=settings.stalled_recheck_seconds)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(body: kopf.Body, patch: kopf.Patch, retry: int, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    settings = _settings(memo)
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        logger.warning("invalid spec", extra={"reason": parsed.reason.value})
        return
    conn = parsed
    if _is_current(conn):
        return
    provider_status: dict[str, Any] = {}
    if conn.spec.provider is Provider.AWS:
        if memo.aws is None:
            result = stalled(
                Reason.NOT_CONFIGURED, "the operator has no EKS cluster configured (PORTER_EKS_CLUSTER_NAME)"
            )
        else:
            applied = aws.apply(memo.aws, conn)
            result = applied.outcome
            provider_status["aws"] = applied.status
            if applied.change is not None:
                kopf.event(body, type="Normal", reason=applied.change.reason, message=applied.change.message)
    else:
        result = stalled(
            Reason.NOT_CONFIGURED, f"{conn.spec.provider.value} connections are not enabled in this operator"
        )
    new = kstatus.next_status(conn, result, **provider_status)
    kstatus.write(patch, conn.status, new)
    kstatus.announce(body, conn.status, result)
    log = logger.info if result.state is State.READY else logger.warning
    log(result.message, extra={"reason": result.reason.value, "provider": conn.spec.provider.value})
    _retry_after(result, retry, settings)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(body: kopf.Body, retry: int, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """Remove the cloud link; the finalizer comes off only when this returns."""
    settings = _settings(memo)
    parsed = _parse(body)
    if isinstance(parsed, Outcome):
        return  # never admitted, so nothing was ever created for it
    conn = parsed
    if conn.spec.deletion_policy.value == "Retain":
        kopf.event(body, type="Normal", reason="Retained", message="deletionPolicy is Retain: cloud link left in place")
        return
    if conn.spec.aws is not None and memo.aws is not None:
        result = aws.delete(memo.aws, conn)
        if result.outcome.state is not State.READY:
            kopf.event(body, type="Warning", reason=result.outcome.reason.value, message=result.outcome.message)
            delay = backoff.delay(retry, settings.retry_base_seconds, settings.retry_max_seconds)
            raise kopf.TemporaryError(result.outcome.message, delay=delay)
        if result.change is not None:
            kopf.event(body, type="Normal", reason=result.change.reason, message=result.change.message)
            logger.info(result.change.message, extra={"reason": result.change.reason})
