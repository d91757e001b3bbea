"""Decide which connection owns a ServiceAccount when several name it: the bound one, else the oldest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Claim(NamedTuple):
    """One connection naming a ServiceAccount; ordering by (rank, created, uid) is total and stable.

    A connection that already holds the link ranks first: creation times have one-second resolution,
    so a newer object with a smaller uid must not displace one that is bound."""

    rank: int  # 0 when the connection is Ready (holds the link), 1 otherwise
    created: str  # RFC 3339, so string order is time order
    uid: str
    name: str


def owner(claims: Iterable[Claim]) -> Claim | None:
    return min(claims, default=None)


def conflict_message(namespace: str, service_account: str, winner: Claim) -> str:
    return (
        f"service account {namespace}/{service_account} is already linked by connection {winner.name}; "
        "one ServiceAccount gets one cloud identity: delete one of the two connections"
    )
