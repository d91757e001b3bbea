"""When a connection runs again: soon while what it needs may be appearing, backoff on retries, long recheck."""

from __future__ import annotations

import pytest

from porter_identity.engine import wait
from porter_identity.reconcile.outcome import STATE, Outcome, Reason, State, ready, stalled

RECHECK = 300.0


def test_a_missing_identity_is_looked_for_every_second_then_every_two_then_less_often() -> None:
    looks = [wait.next_look(t, RECHECK) for t in (0, 10, 29.9, 30, 59.9, 60, 90, 120, 600, 10_000)]
    assert looks == [1.0, 1.0, 1.0, 2.0, 2.0, 4.0, 8.0, 16.0, RECHECK, RECHECK]


def test_looks_are_never_further_apart_than_the_long_recheck() -> None:
    assert all(wait.next_look(t, 0.5) == 0.5 for t in (0, 45, 1_000))


@pytest.mark.parametrize("reason", sorted(wait.APPEARING))
def test_what_may_be_appearing_is_looked_for_soon(reason: Reason) -> None:
    outcome = Outcome(STATE[reason], reason, "m")
    assert wait.after(outcome, 0, 0.0, 1.0, 120.0, RECHECK) == 1.0
    assert wait.after(outcome, 0, 1_000.0, 1.0, 120.0, RECHECK) == RECHECK


def test_ready_needs_no_next_run_and_a_spec_refusal_only_the_recheck() -> None:
    assert wait.after(ready("bound"), 0, None, 1.0, 120.0, RECHECK) is None
    assert wait.after(stalled(Reason.INVALID_SPEC, "bad"), 0, None, 1.0, 120.0, RECHECK) is None
    assert wait.after(stalled(Reason.CONFLICT, "taken"), 0, None, 1.0, 120.0, RECHECK) == RECHECK


def test_retries_back_off_but_waiting_for_our_own_write_stays_quick() -> None:
    throttled = Outcome(State.RECONCILING, Reason.THROTTLED, "slow down")
    progressing = Outcome(State.RECONCILING, Reason.PROGRESSING, "busy")
    late = wait.after(throttled, 6, None, 1.0, 120.0, RECHECK)
    assert late is not None and 32.0 <= late <= 64.0
    quick = wait.after(progressing, 6, None, 1.0, 120.0, RECHECK)
    assert quick is not None and quick <= 4.0
