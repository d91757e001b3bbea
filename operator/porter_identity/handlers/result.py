"""What a provider workflow hands back to the kopf handler."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from porter_identity.reconcile.outcome import Outcome
from porter_identity.reconcile.privilege import Check


@dataclass(frozen=True)
class Change:
    """Something done in the cloud or cluster, reported as a Normal Event."""

    reason: str
    message: str


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status: BaseModel | None
    change: Change | None = None
    privilege: Check | None = None  # set when this run read the identity's permissions (LeastPrivilege)
