"""Decide which connection owns a ServiceAccount for one cloud when several name it: the bound one, else the oldest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple, TypeVar

K = TypeVar("K")


class Claim(NamedTuple):
    """One connection naming a ServiceAccount; ordering by (rank, created, uid) is total and stable.

    A connection that already holds the link ranks first: creation times have one-second resolution,
    so a newer object with a smaller uid must not displace one that is bound."""

    rank: int  # HOLDS, CAN_LINK or NONE
    created: str  # RFC 3339, so string order is time order
    uid: str
    name: str
    identity: str = ""  # the identity the spec names, in its spec form
    reason: str = ""  # of its Ready condition
    needs: tuple[tuple[str, str], ...] = ()  # the ServiceAccount annotations its link needs (Azure, GCP)


HOLDS = 0  # Ready: the connection holds the link
CAN_LINK = 1  # not (yet) Ready, and nothing in its spec or status says it cannot link
NONE = 2  # refused, invalid or unconfigured: it links nothing, so it owns nothing


def rank(ready: bool, reason: str, not_claiming: Iterable[str]) -> int:
    if ready:
        return HOLDS
    return NONE if reason in not_claiming else CAN_LINK


def owner(claims: Iterable[Claim]) -> Claim | None:
    """The owner among connections naming one ServiceAccount for one cloud: the bound one, else the oldest
    that can link; connections that link nothing own nothing."""
    return min((c for c in claims if c.rank != NONE), default=None)


def waiting(claims: Iterable[Claim], gone: str) -> list[Claim]:
    """Claimants other than `gone` (a connection deleted or no longer linking): the next owner among them
    must be woken at once instead of at its next recheck."""
    return sorted(c for c in claims if c.uid != gone and c.rank == CAN_LINK)


def double_bound(by_key: Mapping[K, Iterable[Claim]]) -> list[tuple[K, Claim]]:
    """Connections holding a link that another connection owns (both linked before either saw the other)."""
    out: list[tuple[K, Claim]] = []
    for key, found in by_key.items():
        holding = [c for c in found if c.rank == HOLDS]
        winner = owner(found)
        out += [(key, c) for c in holding if winner is not None and c.uid != winner.uid]
    return out


def unmet(needs: Iterable[tuple[str, str]], annotations: Mapping[str, str]) -> bool:
    """Whether a ServiceAccount's annotations lack what a link needs (recreated, or edited by hand)."""
    return any(annotations.get(key) != value for key, value in needs)
