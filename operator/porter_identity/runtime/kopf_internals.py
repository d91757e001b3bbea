"""The one door to kopf's private modules: checked against the kopf versions the tests ran, then installed.

Two adaptations, each written up for upstream in docs/architecture.md: toggle sets that wake their waiters only when
their state changes, and watch streams without metadata.managedFields (both below). Both replace a module
attribute kopf reads when the operator starts; neither changes kopf's behaviour otherwise. To drop one: delete its
section and its line in `install`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from importlib.metadata import version
from typing import Any

# The kopf releases whose private modules these patches were tested against: hack/constraints.txt pins the one CI
# runs (1.45.2), and pyproject.toml allows this range only.
TESTED = ((1, 45), (1, 45))


class UntestedKopf(RuntimeError):
    """kopf outside the tested range: its private modules may differ, so nothing is patched."""


try:
    from kopf._cogs.aiokits import aiotoggles
    from kopf._cogs.clients import watching
except ImportError as missing:  # a kopf whose private modules moved: say so, not an import trace
    raise UntestedKopf(f"kopf {version('kopf')} lacks the modules porter-identity adapts: {missing}") from missing


def parse(text: str) -> tuple[int, int]:
    major, minor, *_ = (int("".join(ch for ch in part if ch.isdigit()) or 0) for part in text.split("."))
    return major, minor


def check(installed: str | None = None) -> tuple[int, int]:
    found = parse(installed or version("kopf"))
    low, high = TESTED
    if not low <= found <= high:
        raise UntestedKopf(
            f"kopf {'.'.join(map(str, found))} is not one porter-identity was tested with "
            f"({'.'.join(map(str, low))} to {'.'.join(map(str, high))}.x): install a kopf in that range"
        )
    return found


def install() -> None:
    check()
    _install_toggles()
    _install_watch()


# --- toggle sets -------------------------------------------------------------------------------------------------
# kopf's toggle sets, waking their waiters only when the set's state changes (startup at 10,000 objects).
#
# At startup kopf holds every handler back until all objects are indexed: each object's worker adds a toggle to
# one ToggleSet(all), drops it once indexed, then waits for the set to turn on. kopf's ToggleSet wakes every waiter
# on every add and every drop, though the set stays off until the last drop: n objects cost about n²/2 wake-ups,
# each a task switch and a lock hand-off that the watcher's next add queues behind. Measured with kopf 1.45.2
# (tests/unit/test_toggles.py counts the wake-ups): 10,000 objects took 11-13 s of CPU in the toggles alone, 0.4 s
# with this class, and a restarted operator with 10,000 connections went from not ready after 500 s to ready in
# about 40 s. A waiter waits for the set's state and nothing else, so a change that leaves the state as
# it was may wake nobody: that is what this subclass does, with the same semantics otherwise.


KopfToggleSet = aiotoggles.ToggleSet  # kopf's own, kept: `install` replaces the module attribute


class ToggleSet(KopfToggleSet):
    """kopf's ToggleSet; adding or dropping toggles notifies the waiters only if `is_on()` changed."""

    async def make_toggle(self, __val: bool = False, *, name: str | None = None) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            was = self.is_on()
            self._toggles.add(toggle)
            self._notify_if_changed(was)
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.discard(toggle)
            self._notify_if_changed(was)

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.difference_update(toggles)
            self._notify_if_changed(was)

    def _notify_if_changed(self, was: bool) -> None:
        if self.is_on() != was:
            self._condition.notify_all()


def _install_toggles() -> None:
    """kopf builds its toggle sets as `aiotoggles.ToggleSet(...)` when the operator starts: build ours instead."""
    aiotoggles.ToggleSet = ToggleSet  # type: ignore[misc]


# --- watch streams -----------------------------------------------------------------------------------------------
# kopf's watch streams without metadata.managedFields: most of every body's memory, and nothing here reads it.
#
# A reconciled connection is about 2.8 KB of JSON and 15 KB once parsed, 8.6 KB of which is managedFields (one
# entry per field manager, naming every field it set). kopf keeps each object's body while it is processed, holds
# every object at startup until all are indexed, and keeps the last body of every connection for its timer.
# Measured (docs/performance.md): peak RSS 525 -> 491 MB, a restart's 888 -> 812 MB at 10,000 connections. kopf
# patches with merge patches and never reads managedFields; neither do our handlers, indexes or filters. The API
# server keeps them: kubectl still shows them.


_infinite_watch = watching.infinite_watch


def lean(event: Any) -> Any:
    """The event with its object's managedFields dropped (bookmarks and errors pass as they are)."""
    if isinstance(event, dict):
        body = event.get("object")
        if isinstance(body, dict):
            metadata = body.get("metadata")
            if isinstance(metadata, dict):
                metadata.pop("managedFields", None)
    return event


async def infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
    async for event in _infinite_watch(**kwargs):
        yield lean(event)


def _install_watch() -> None:
    """kopf's multiplexer reads `watching.infinite_watch` when each resource's watcher starts: read ours."""
    watching.infinite_watch = infinite_watch
