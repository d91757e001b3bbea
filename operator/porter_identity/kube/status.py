"""Turn an outcome into a status patch and Events, writing nothing when nothing changed."""

from __future__ import annotations

from typing import Any

import kopf

from porter_identity.api.connection import ConnectionStatus, ServiceIdentityConnection
from porter_identity.reconcile import conditions
from porter_identity.reconcile import privilege as least
from porter_identity.reconcile.outcome import Outcome, Reason, State
from porter_identity.reconcile.privilege import Check


def next_status(
    conn: ServiceIdentityConnection, result: Outcome, privilege: Check | None = None, **provider_status: Any
) -> ConnectionStatus:
    """The status this outcome implies; transition times survive when a condition keeps its value.

    LeastPrivilege is rewritten when this run read the permissions, kept while it describes this generation."""
    spec = conn.spec
    try:
        provider, identity = spec.provider, spec.identity
    except ValueError:
        provider, identity = None, None
    generation, now = conn.metadata.generation, conditions.now_rfc3339()
    built = conditions.build(result, generation, conn.status.conditions, now)
    before = next((c for c in conn.status.conditions if c.type == least.CONDITION), None)
    if privilege is not None:
        built.append(least.condition(privilege, generation, before, now))
    elif before is not None and before.observed_generation == generation:
        built.append(before)
    return ConnectionStatus(
        observed_generation=generation,
        conditions=built,
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


def warn_broad(body: kopf.Body, old: ConnectionStatus, check: Check | None, result: Outcome) -> None:
    """A Warning when an identity is newly found broad; when that blocks, the Stalled Event already says it."""
    if check is None or not check.broad or result.reason is Reason.BROAD_PERMISSIONS:
        return
    before = next((c for c in old.conditions if c.type == least.CONDITION), None)
    if before is not None and before.status == "False" and before.message == check.message:
        return
    kopf.event(body, type="Warning", reason=Reason.BROAD_PERMISSIONS.value, message=check.message)
