"""Build kstatus conditions (Ready, Reconciling, Stalled) from an outcome, keeping transition times stable."""

from __future__ import annotations

from datetime import UTC, datetime

from porter_identity.api.common import Condition, ConditionStatus
from porter_identity.reconcile.outcome import Outcome, State


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(outcome: Outcome, generation: int, previous: list[Condition], now: str) -> list[Condition]:
    """Ready always present; Reconciling / Stalled present only while True, as kstatus recommends."""
    wanted: list[tuple[str, ConditionStatus]] = [
        ("Ready", ConditionStatus.TRUE if outcome.state is State.READY else ConditionStatus.FALSE)
    ]
    if outcome.state is State.RECONCILING:
        wanted.append(("Reconciling", ConditionStatus.TRUE))
    if outcome.state is State.STALLED:
        wanted.append(("Stalled", ConditionStatus.TRUE))
    before = {c.type: c for c in previous}
    out = []
    for kind, status in wanted:
        old = before.get(kind)
        changed = old is None or old.status != status
        out.append(
            Condition(
                type=kind,
                status=status,
                observed_generation=generation,
                last_transition_time=now if changed or old is None else old.last_transition_time,
                reason=outcome.reason.value,
                message=outcome.message,
            )
        )
    return out


def ready_condition(conditions: list[Condition]) -> Condition | None:
    return next((c for c in conditions if c.type == "Ready"), None)
