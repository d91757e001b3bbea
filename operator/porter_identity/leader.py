"""Leader election on a Lease: acquire, renew (moving the fence), release; only the leader runs kopf."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from porter_identity import metrics
from porter_identity.config import LeaderElection
from porter_identity.kube.lease import Leases, Lost
from porter_identity.providers.fence import Fence
from porter_identity.reconcile.lease import Record, Step, decide, fence_deadline

log = logging.getLogger("porter_identity.leader")
T = TypeVar("T")


@dataclass
class _Seen:
    record: Record | None = None
    at: float = 0.0


class Elector:
    """client-go's leaderelection loop, one Lease per release: try every retry period; a holder that cannot renew
    within the renew deadline closes the fence and gives up, before the lease duration lets a standby in."""

    def __init__(self, leases: Leases, identity: str, timing: LeaderElection, fence: Fence) -> None:
        self.leases, self.identity, self.timing, self.fence = leases, identity, timing, fence
        self._seen = _Seen()
        self._released = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")

    async def acquire(self) -> None:
        """Returns once this replica holds the Lease (and the fence is open)."""
        while not await self._try():
            await asyncio.sleep(self.timing.retry_period_seconds * random.uniform(1.0, 1.2))
        metrics.LEADER.set(1)
        log.info("leader election won", extra={"lease": self.leases.name, "identity": self.identity})

    async def hold(self) -> None:
        """Renews until it cannot; returns (fence closed) when leadership is lost."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.timing.retry_period_seconds)
            if await self._try():
                last_renewed = time.monotonic()
                continue
            if self._seen.record is not None and self._seen.record.holder not in (None, self.identity):
                break  # someone else holds it: no point waiting for the deadline
            if time.monotonic() - last_renewed >= self.timing.renew_deadline_seconds:
                break
        self.fence.close()
        metrics.LEADER.set(0)
        log.error(
            "leader election lost: cloud writes stopped, exiting",
            extra={"lease": self.leases.name, "identity": self.identity},
        )

    async def release(self) -> None:
        """On a clean stop: the fence is already closed; a standby may take over at its next try."""
        self.fence.close()
        metrics.LEADER.set(0)
        if self._released:
            return
        self._released = True
        try:
            record = await self._io(self.leases.read)
            if record is None or record.holder != self.identity:
                return
            await self._io(self.leases.write, None, 1, record.transitions, record)
        except Exception as err:  # the Lease expires on its own: releasing only makes the handover faster
            log.warning("could not release the Lease", extra={"lease": self.leases.name, "error": str(err)})

    async def _io(self, call: Callable[..., T], *args: Any) -> T:
        """On a thread of its own: kopf makes its worker pool the loop's default executor, and a renewal queued
        behind busy reconciles would miss its deadline."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, partial(call, *args))

    async def _try(self) -> bool:
        started = time.monotonic()
        try:
            record = await self._io(self.leases.read)
            if record != self._seen.record:
                self._seen = _Seen(record, started)
            step = decide(self.identity, record, self._seen.at, started)
            if step is Step.WAIT:
                return False
            transitions = (record.transitions if record else 0) + (0 if step is Step.RENEW else 1)
            duration = round(self.timing.lease_duration_seconds)
            await self._io(self.leases.write, self.identity, duration, transitions, record)
        except Lost:
            return False
        except Exception as err:  # an API server hiccup: the renew deadline decides whether it matters
            log.warning("Lease not renewed", extra={"lease": self.leases.name, "error": type(err).__name__})
            return False
        if time.monotonic() - started >= self.timing.renew_deadline_seconds:
            return False  # written, but too late to count on it
        self._seen = _Seen(None, started)  # our own write: read again next time
        self.fence.extend(fence_deadline(started, self.timing.renew_deadline_seconds))
        return True
