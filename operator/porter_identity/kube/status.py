"""Turn an outcome into a status patch and Events, writing nothing when nothing changed."""

from __future__ import annotations

from typing import Any

import kopf

from porter_identity.api.connection import ConnectionStatus, ServiceIdentityConnection
from porter_identity.reconcile import conditions
from porter_identity.reconcile.outcome import Outcome, State


def next_status(conn: ServiceIdentityConnection, result: Outcome, **provider_status: Any) -> ConnectionStatus:
    """The status this outcome implies; transition times survive when a condition keeps its value."""
    spec = conn.spec
    try:
        provider, identity = spec.provider, spec.identity
    except ValueError:
        provider, identity = None, None
    return ConnectionStatus(
        observed_generation=conn.metadata.generation,
        conditions=conditions.build(result, conn.metadata.generation, conn.status.conditions, conditions.now_rfc3339()),
        provider=provider,
        identity=identity,
        **provider_status,
    )


def write(patch: kopf.Patch, old: ConnectionStatus, new: ConnectionStatus) -> bool:
    """Patch status only if it differs; keys set to None are removed by the merge patch."""
    new_doc = new.model_dump(mode="json", by_alias=True)
    if new_doc == old.model_dump(mode="json", by_alias=True):
        return False
    for key, value in new_doc.items():
        patch.status[key] = value
    return True


def announce(body: kopf.Body, old: ConnectionStatus, result: Outcome) -> None:
    """One Event per change of the Ready condition (status or reason)."""
    before = conditions.ready_condition(old.conditions)
    if before is not None and before.reason == result.reason.value and before.message == result.message:
        return
    kind = "Normal" if result.state is State.READY else "Warning"
    kopf.event(body, type=kind, reason=result.reason.value, message=result.message)
