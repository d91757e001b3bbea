"""The one door: a keyed, coalescing work queue with a bounded number of workers and per-key timers.

Every reason to look at a connection (its own watch events, a ServiceAccount or Namespace event, a retry or recheck
due, the drift sweep, a woken claimant, a takeover, a delete) only asks for a run here. Asks for one key merge while
it waits; an ask that arrives while the key runs is kept and runs once more after (no lost wake); one key never runs
in two workers at once; at most `workers` keys run at a time, and a waiting key holds a small Ask, not a body
beyond `keep_bodies` waiting keys (a restart over 10,000 connections holds 10,000 Asks, not 10,000 bodies)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ask:
    """Why a connection should run, and how: merged with any ask already waiting for the same key."""

    namespace: str
    name: str
    why: str
    look: bool = True  # False: only when status does not already describe the spec as Ready (its own events)
    drifted: bool = False  # the sweep saw something changed outside: a repair is a DriftCorrected Warning
    deleting: bool = False  # the connection is being deleted: its run is the delete run
    ignoring: frozenset[str] = frozenset()  # uids of connections to leave out of ownership (one being deleted)
    body: Mapping[str, Any] | None = None  # the freshest body seen, saving a read; may be stale (rv-checked write)
    # The sweep's: when its read of the cloud began (time.monotonic). A run that wrote status since saw the cloud
    # after the sweep did, so this ask has nothing to add. None for every other ask, which always runs.
    observed: float | None = None

    def merge(self, later: Ask) -> Ask:
        why = self.why if later.why == self.why else f"{self.why}; {later.why}"
        return replace(
            later,
            why=why if len(why) < 500 else later.why,
            look=self.look or later.look,
            drifted=self.drifted or later.drifted,
            deleting=self.deleting or later.deleting,
            ignoring=self.ignoring | later.ignoring,
            body=later.body if later.body is not None else self.body,
            observed=None if self.observed is None or later.observed is None else max(self.observed, later.observed),
        )


Run = Callable[[str, Ask], Awaitable[Any]]


class Door:
    """The queue. `ask` and `later` are safe from any thread; workers run on the event loop they were started on."""

    def __init__(self, run: Run, workers: int, keep_bodies: int = 1000) -> None:
        self._run = run
        self._workers = workers
        self._keep_bodies = keep_bodies
        self._pending: dict[str, Ask] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._running: set[str] = set()
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.runs = 0  # runs finished since start: tests wait on it instead of sleeping

    def bind(self) -> None:
        """Take asks from now on; they wait until `start` (while the start-up list fills the index)."""
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._worker(), name=f"runner {i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return len(self._running)

    def ask(self, key: str, ask: Ask) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the runner has not started")
        if _on_loop(loop):
            self._ask(key, ask)
        else:
            loop.call_soon_threadsafe(self._ask, key, ask)

    def later(self, key: str, delay: float, ask: Ask) -> None:
        """Ask after `delay` seconds; of several timers for one key, the earliest is kept."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the runner has not started")
        if _on_loop(loop):
            self._later(key, delay, ask)
        else:
            loop.call_soon_threadsafe(self._later, key, delay, ask)

    def cancel_later(self, key: str) -> None:
        loop = self._loop
        if loop is not None and not _on_loop(loop):
            loop.call_soon_threadsafe(self.cancel_later, key)
            return
        found = self._timers.pop(key, None)
        if found is not None:
            found[1].cancel()

    def scheduled(self, key: str) -> float | None:
        """When the key's timer fires (loop time), None without one."""
        found = self._timers.get(key)
        return None if found is None else found[0]

    def _ask(self, key: str, ask: Ask) -> None:
        if len(self._pending) >= self._keep_bodies and ask.body is not None:
            ask = replace(ask, body=None)  # read again when it runs: a backlog holds no bodies
        waiting = self._pending.get(key)
        self._pending[key] = ask if waiting is None else waiting.merge(ask)
        if waiting is None and key not in self._running:
            self._ready.put_nowait(key)

    def _later(self, key: str, delay: float, ask: Ask) -> None:
        assert self._loop is not None
        at = self._loop.time() + delay
        found = self._timers.get(key)
        if found is not None:
            if found[0] <= at:
                return
            found[1].cancel()
        self._timers[key] = (at, self._loop.call_at(at, self._fire, key, ask))

    def _fire(self, key: str, ask: Ask) -> None:
        self._timers.pop(key, None)
        self._ask(key, ask)

    async def _worker(self) -> None:
        while True:
            key = await self._ready.get()
            ask = self._pending.pop(key)
            self._running.add(key)
            try:
                await self._run(key, ask)
            except asyncio.CancelledError:
                raise
            except BaseException:  # one connection's failure never stops a worker
                log.exception(f"running {ask.namespace}/{ask.name} failed")
            finally:
                self._running.discard(key)
                self.runs += 1
                if key in self._pending:
                    self._ready.put_nowait(key)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
