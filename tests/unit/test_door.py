"""The one door: asks merge while they wait, one key never runs twice at once, no ask is lost, workers are bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from porter_identity.engine.door import Ask, Door
from porter_identity.engine.runner import Runner


def ask(why: str = "x", **kw: Any) -> Ask:
    return Ask("ns", "name", why, **kw)


async def settle(door: Door, runs: int, timeout: float = 5.0) -> None:
    async def done() -> None:
        while door.runs < runs or door.waiting or door.running:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(done(), timeout)


def test_asks_for_one_waiting_key_merge_into_one_run() -> None:
    async def main() -> list[Ask]:
        seen: list[Ask] = []

        async def run(key: str, a: Ask) -> None:
            seen.append(a)

        door = Door(run, workers=1)
        door.start()
        door.ask("a", ask("first", look=False))
        door.ask("a", ask("second", drifted=True, ignoring=frozenset({"u1"})))
        await settle(door, 1)
        await door.stop()
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 1
    assert seen[0].why == "first; second" and seen[0].look and seen[0].drifted and seen[0].ignoring == {"u1"}


def test_an_ask_during_a_run_runs_once_more_after_it_and_never_beside_it() -> None:
    async def main() -> tuple[int, int]:
        running = 0
        most = 0
        count = 0
        gate = asyncio.Event()

        async def run(key: str, a: Ask) -> None:
            nonlocal running, most, count
            running += 1
            most = max(most, running)
            count += 1
            if count == 1:
                await gate.wait()
            running -= 1

        door = Door(run, workers=4)
        door.start()
        door.ask("a", ask())
        await asyncio.sleep(0.01)
        door.ask("a", ask("while running"))
        door.ask("a", ask("and again"))
        gate.set()
        await settle(door, 2)
        await door.stop()
        return most, count

    most, count = asyncio.run(main())
    assert (most, count) == (1, 2)


def test_no_more_keys_run_at_once_than_workers() -> None:
    async def main() -> int:
        running = 0
        most = 0

        async def run(key: str, a: Ask) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.005)
            running -= 1

        door = Door(run, workers=3)
        door.start()
        for i in range(20):
            door.ask(f"k{i}", ask())
        await settle(door, 20)
        await door.stop()
        return most

    assert asyncio.run(main()) == 3


def test_a_backlog_keeps_no_bodies() -> None:
    async def main() -> list[bool]:
        bodies: list[bool] = []
        gate = asyncio.Event()

        async def run(key: str, a: Ask) -> None:
            await gate.wait()
            bodies.append(a.body is not None)

        door = Door(run, workers=1, keep_bodies=2)
        door.start()
        for i in range(5):
            door.ask(f"k{i}", ask(body={"i": i}))
        gate.set()
        await settle(door, 5)
        await door.stop()
        return bodies

    assert asyncio.run(main()) == [True, True, False, False, False]


def test_of_two_timers_for_a_key_the_earlier_wins_and_cancel_drops_it() -> None:
    async def main() -> tuple[list[str], float | None]:
        seen: list[str] = []

        async def run(key: str, a: Ask) -> None:
            seen.append(a.why)

        door = Door(run, workers=1)
        door.start()
        door.later("a", 0.2, ask("late"))
        door.later("a", 0.01, ask("soon"))
        door.later("a", 0.5, ask("later still"))
        door.later("b", 0.01, ask("cancelled"))
        door.cancel_later("b")
        await settle(door, 1)
        await asyncio.sleep(0.3)
        left = door.scheduled("a")
        await door.stop()
        return seen, left

    seen, left = asyncio.run(main())
    assert seen == ["soon"] and left is None


def test_asks_from_another_thread_reach_the_loop() -> None:
    async def main() -> list[str]:
        seen: list[str] = []

        async def run(key: str, a: Ask) -> None:
            seen.append(key)

        door = Door(run, workers=2)
        door.start()
        await asyncio.to_thread(door.ask, "from-thread", ask())
        await settle(door, 1)
        await door.stop()
        return seen

    assert asyncio.run(main()) == ["from-thread"]


def test_a_failed_run_does_not_stop_its_worker() -> None:
    async def main() -> tuple[list[str], int]:
        ran: list[str] = []

        async def run(key: str, a: Ask) -> None:
            ran.append(key)
            if key == "bad":
                raise RuntimeError("boom")

        door = Door(run, workers=1)
        door.start()
        door.ask("bad", ask())
        door.ask("good", ask())
        while door.runs < 2:
            await asyncio.sleep(0.01)
        await door.stop()
        return ran, door.runs

    assert asyncio.run(main()) == (["bad", "good"], 2)


def test_asking_before_start_is_an_error() -> None:
    async def run(key: str, a: Ask) -> None:
        return None

    with pytest.raises(RuntimeError, match="not started"):
        Door(run, workers=1).ask("a", ask())


def test_a_sweeps_observation_survives_a_merge_only_with_another_sweeps() -> None:
    """A sweep's ask carries when its read began; merged with any other ask it loses it, so that ask always runs."""
    first, later = ask("sweep", observed=10.0), ask("sweep again", observed=12.0)
    assert first.merge(later).observed == 12.0 and later.merge(first).observed == 12.0
    assert first.merge(ask("its spec")).observed is None
    assert ask("its spec").merge(first).observed is None


def test_a_sweep_ask_older_than_the_last_status_written_does_not_run() -> None:
    """The sweep read the cloud at 10; the connection's run wrote status at 11, after its own look: nothing to repair.
    The runner returns before it reads anything (this runner has no API client: a read would fail)."""
    runner = Runner(kopf.Memo(), None, 1)
    runner.written["u1"] = (11.0, 1)
    assert runner.run("u1", ask("drift", observed=10.0)) is None
    with pytest.raises(AttributeError):  # a newer observation runs: it reaches for the API client
        runner.run("u1", ask("drift", observed=12.0))
