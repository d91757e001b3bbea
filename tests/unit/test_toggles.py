"""Our ToggleSet: kopf's semantics, with waiters woken only when the set's state changes."""

from __future__ import annotations

import asyncio

import pytest
from kopf._cogs.aiokits import aiotoggles

from porter_identity.runtime import kopf_internals as toggles


class Counting(asyncio.Condition):
    """A condition that counts how many waiters each notify_all woke."""

    woken = 0

    def notify_all(self) -> None:
        Counting.woken += len(self._waiters)
        super().notify_all()


async def _startup(cls: type[aiotoggles.ToggleSet], n: int) -> int:
    """kopf's index pre-population: per object a toggle is made, then dropped, then the set is waited for."""
    toggle_set = cls(all)
    toggle_set._condition = Counting()
    Counting.woken = 0
    kind = await toggle_set.make_toggle(name="the resource kind's listing")

    async def worker(toggle: aiotoggles.Toggle) -> None:
        await asyncio.sleep(0)
        await toggle_set.drop_toggle(toggle)
        await toggle_set.wait_for(True)

    workers = []
    for i in range(n):
        workers.append(asyncio.create_task(worker(await toggle_set.make_toggle(name=str(i)))))
        await asyncio.sleep(0)
    await toggle_set.drop_toggle(kind)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
    assert toggle_set.is_on()
    return Counting.woken


def test_kopfs_set_wakes_waiters_quadratically_ours_once_each() -> None:
    # The figure behind the module's claim: kopf's wakes grow with n², ours at most n.
    theirs = asyncio.run(_startup(toggles.KopfToggleSet, 200))  # kopf's, even after `install` ran here
    ours = asyncio.run(_startup(toggles.ToggleSet, 200))
    assert theirs > 200 * 200 / 4
    assert ours <= 200  # once per waiter, when the set turns on (the last to drop does not wait)


@pytest.mark.parametrize("fn", [all, any])
def test_states_and_waiters_match_kopfs(fn: type[all]) -> None:
    async def scenario(cls: type[aiotoggles.ToggleSet]) -> list[bool]:
        toggle_set = cls(fn)
        waiters = [asyncio.create_task(toggle_set.wait_for(state)) for state in (True, False)]
        seen = [toggle_set.is_on()]
        a = await toggle_set.make_toggle(False)
        b = await toggle_set.make_toggle(True)
        steps = (
            a.turn_to(True),
            b.turn_to(False),
            toggle_set.drop_toggle(b),
            a.turn_to(False),
            toggle_set.drop_toggles([a]),
        )
        for step in steps:
            await step
            seen.append(toggle_set.is_on())
            await asyncio.sleep(0.01)  # a waiter sees each state, not only the last
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)  # each state was reached and woke its waiter
        return seen

    assert asyncio.run(scenario(toggles.ToggleSet)) == asyncio.run(scenario(aiotoggles.ToggleSet))


def test_install_makes_kopf_build_ours() -> None:
    original = aiotoggles.ToggleSet
    try:
        toggles.install()
        assert isinstance(aiotoggles.ToggleSet(all), toggles.ToggleSet)
    finally:
        aiotoggles.ToggleSet = original  # type: ignore[misc]


def test_kopf_outside_the_tested_range_is_refused_before_anything_is_patched() -> None:
    import pytest

    from porter_identity.runtime import kopf_internals

    assert kopf_internals.check("1.45.2") == (1, 45)
    for untested in ("1.44.9", "1.46.0", "2.0.0"):
        with pytest.raises(kopf_internals.UntestedKopf, match="install a kopf in that range"):
            kopf_internals.check(untested)
    assert kopf_internals.check() == (1, 45)  # the kopf installed here is one the patches were tested with
