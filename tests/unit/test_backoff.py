"""Jittered exponential backoff bounds."""

from __future__ import annotations

import random

import pytest

from porter_identity.reconcile.backoff import delay

ALMOST_ONE = 1 - 1e-12


@pytest.mark.parametrize(("retry", "step"), [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0)])
def test_rand_zero_is_half_the_step(retry: int, step: float) -> None:
    assert delay(retry, 1.0, 1000.0, rand=0.0) == pytest.approx(step / 2)


@pytest.mark.parametrize(("retry", "step"), [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0)])
def test_rand_near_one_is_the_full_step(retry: int, step: float) -> None:
    value = delay(retry, 1.0, 1000.0, rand=ALMOST_ONE)
    assert value == pytest.approx(step)
    assert value < step


def test_rand_half_is_three_quarters() -> None:
    assert delay(2, 1.0, 1000.0, rand=0.5) == pytest.approx(3.0)


def test_base_scales_the_step() -> None:
    assert delay(0, 0.5, 100.0, rand=0.0) == pytest.approx(0.25)
    assert delay(3, 0.5, 100.0, rand=ALMOST_ONE) == pytest.approx(4.0)


@pytest.mark.parametrize("retry", range(0, 12))
def test_step_doubles_per_retry_until_the_cap(retry: int) -> None:
    low, high = delay(retry, 1.0, 120.0, rand=0.0), delay(retry, 1.0, 120.0, rand=ALMOST_ONE)
    step = min(120.0, 2.0**retry)
    assert low == pytest.approx(step / 2)
    assert high == pytest.approx(step)
    if step * 2 <= 120.0:
        assert delay(retry + 1, 1.0, 120.0, rand=0.0) == pytest.approx(2 * low)


@pytest.mark.parametrize("retry", [7, 8, 20, 100, 1000])
def test_capped(retry: int) -> None:
    assert delay(retry, 1.0, 120.0, rand=0.0) == pytest.approx(60.0)
    assert delay(retry, 1.0, 120.0, rand=ALMOST_ONE) == pytest.approx(120.0)
    assert delay(retry, 1.0, 120.0, rand=ALMOST_ONE) <= 120.0


def test_cap_below_base_wins() -> None:
    assert delay(0, 10.0, 4.0, rand=0.0) == pytest.approx(2.0)
    assert delay(0, 10.0, 4.0, rand=ALMOST_ONE) == pytest.approx(4.0)


@pytest.mark.parametrize("retry", [-1, -5, -1000])
def test_negative_retry_counts_as_zero(retry: int) -> None:
    assert delay(retry, 2.0, 100.0, rand=0.0) == delay(0, 2.0, 100.0, rand=0.0) == pytest.approx(1.0)
    assert delay(retry, 2.0, 100.0, rand=ALMOST_ONE) == pytest.approx(2.0)


@pytest.mark.parametrize("seed_retry", [0, 3, 10])
def test_random_jitter_stays_in_bounds(seed_retry: int) -> None:
    step = min(120.0, 2.0**seed_retry)
    for _ in range(200):
        value = delay(seed_retry, 1.0, 120.0)
        assert step / 2 <= value <= step


def test_uses_random_when_rand_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.25)
    assert delay(2, 1.0, 100.0) == pytest.approx(2.5)


@pytest.mark.parametrize("retry", [1024, 5000])
def test_capped_for_very_long_outages(retry: int) -> None:
    # kopf's retry counter is unbounded (handlers set no `retries=`), so a ~34 h outage at a 120 s cap gets here
    assert delay(retry, 1.0, 120.0, rand=0.0) == pytest.approx(60.0)
