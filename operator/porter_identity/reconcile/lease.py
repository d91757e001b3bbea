"""Leader election decisions on a coordination.k8s.io Lease, the rules of client-go's leaderelection, without I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Step(enum.Enum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # we hold it
    TAKE = "take"  # free, released, or expired as we observed it
    WAIT = "wait"  # another holder, not expired yet


@dataclass(frozen=True)
class Record:
    """What the Lease says; `version` is its resourceVersion, so every write is a compare-and-swap."""

    holder: str | None
    duration_seconds: float
    transitions: int
    version: str
    acquired: datetime | None = None


def decide(me: str, record: Record | None, observed_at: float, now: float) -> Step:
    """Expiry is judged from when *we* last saw the record change (`observed_at`, our monotonic clock), never from
    the holder's renewTime: clocks of two machines need not agree, only their rates must be close."""
    if record is None:
        return Step.CREATE
    if record.holder == me:
        return Step.RENEW
    if not record.holder or now >= observed_at + record.duration_seconds:
        return Step.TAKE
    return Step.WAIT


def fence_deadline(renew_started: float, renew_deadline_seconds: float) -> float:
    """Until when a leader may write to a cloud after a renewal that was *sent* at `renew_started` (monotonic).

    A standby takes over no sooner than lease_duration after it last saw the record change, and it cannot have seen
    this renewal before it was sent, so writes stop lease_duration - renew_deadline before anyone else may start."""
    return renew_started + renew_deadline_seconds
