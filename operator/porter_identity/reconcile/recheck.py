"""When a Stalled connection is looked at again: one interval after it was first seen stalled, then every interval."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Schedule:
    """Per-connection timers without a kopf timer (kopf keeps every object's last body for a kind with one).

    A connection that stops being stalled leaves the schedule; stalled again, it waits a whole interval again."""

    interval: float
    _next: dict[str, float] = field(default_factory=dict)

    def due(self, stalled: Iterable[str], now: float) -> list[str]:
        """The uids to recheck now, in the order given; `stalled` is every uid that is stalled at `now`."""
        current = list(dict.fromkeys(stalled))
        for uid in set(self._next).difference(current):
            del self._next[uid]
        out = []
        for uid in current:
            at = self._next.get(uid)
            if at is not None and now < at:
                continue
            self._next[uid] = now + self.interval
            if at is not None:
                out.append(uid)
        return out

    def tick(self) -> float:
        """How long the loop sleeps between looks: a recheck is at most a quarter interval late (30 s at most)."""
        return min(max(self.interval / 4, 0.1), 30.0)
