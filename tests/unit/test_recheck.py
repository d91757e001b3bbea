"""The stalled recheck schedule (reconcile/recheck.py): per-connection intervals without a kopf timer."""

from __future__ import annotations

from porter_identity.reconcile.recheck import Schedule


def test_a_stalled_connection_waits_one_interval_then_every_interval() -> None:
    schedule = Schedule(300)
    assert schedule.due(["a"], now=0) == []  # just stalled: its own run has just looked
    assert schedule.due(["a"], now=299) == []
    assert schedule.due(["a"], now=300) == ["a"]
    assert schedule.due(["a"], now=450) == []
    assert schedule.due(["a"], now=601) == ["a"]


def test_connections_keep_their_own_phase() -> None:
    schedule = Schedule(10)
    schedule.due(["a"], now=0)
    schedule.due(["a", "b"], now=4)
    assert schedule.due(["a", "b"], now=10) == ["a"]
    assert schedule.due(["a", "b"], now=14) == ["b"]
    assert schedule.due(["b", "a"], now=30) == ["b", "a"]  # both late: in the order given


def test_one_that_stops_being_stalled_leaves_and_starts_over_when_stalled_again() -> None:
    schedule = Schedule(10)
    schedule.due(["a"], now=0)
    assert schedule.due([], now=5) == []  # Ready, or deleted
    assert schedule.due(["a"], now=12) == []  # stalled again: a whole interval from now
    assert schedule.due(["a"], now=21) == []
    assert schedule.due(["a"], now=22) == ["a"]


def test_a_uid_listed_twice_is_rechecked_once() -> None:
    schedule = Schedule(1)
    schedule.due(["a"], now=0)
    assert schedule.due(["a", "a"], now=1) == ["a"]


def test_the_loop_looks_at_least_every_quarter_interval_and_at_most_every_30_s() -> None:
    assert Schedule(2).tick() == 0.5
    assert Schedule(300).tick() == 30.0
    assert Schedule(3600).tick() == 30.0
    assert Schedule(0.1).tick() == 0.1
