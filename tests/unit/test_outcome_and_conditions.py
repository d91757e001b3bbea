"""Outcomes from typed cloud errors, and the kstatus conditions built from them."""

from __future__ import annotations

import re

import pytest

from porter_identity.api.common import Condition, ConditionStatus
from porter_identity.errors import (
    AccessDenied,
    CloudError,
    Conflict,
    Invalid,
    NotFound,
    Throttled,
    Transient,
)
from porter_identity.reconcile.conditions import build, now_rfc3339, ready_condition
from porter_identity.reconcile.outcome import Outcome, Reason, State, from_error, ready, stalled

WHAT = "creating the association"

# --- from_error ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "state", "reason"),
    [
        (Throttled, State.RECONCILING, Reason.THROTTLED),
        (Transient, State.RECONCILING, Reason.CLOUD_UNAVAILABLE),
        (AccessDenied, State.STALLED, Reason.ACCESS_DENIED),
        (NotFound, State.STALLED, Reason.CLUSTER_NOT_FOUND),
        (Conflict, State.STALLED, Reason.CONFLICT),
        (Invalid, State.STALLED, Reason.CLOUD_REJECTED),
        (CloudError, State.STALLED, Reason.CLOUD_REJECTED),
    ],
)
def test_from_error_classifies(error_type: type[CloudError], state: State, reason: Reason) -> None:
    result = from_error(error_type("the cloud said no", code="SomeCode"), what=WHAT)
    assert result.state is state
    assert result.reason is reason
    assert f"{WHAT}: SomeCode: the cloud said no" in result.message


@pytest.mark.parametrize(
    ("err", "message"),
    [
        (Throttled("Rate exceeded", code="ThrottlingException"), f"throttled while {WHAT}: ThrottlingException: "),
        (Transient("boom", code="ServerException"), f"cloud error while {WHAT}: ServerException: boom; retrying"),
        (AccessDenied("nope", code="AccessDenied"), f"the operator's credentials were refused while {WHAT}: "),
        (NotFound("no cluster", code="ResourceNotFoundException"), f"not found while {WHAT}: "),
        (Conflict("in use", code="ResourceInUseException"), f"conflict while {WHAT}: ResourceInUseException: in use"),
        (Invalid("bad", code="InvalidParameterException"), f"the cloud rejected the request while {WHAT}: "),
        (CloudError("odd", code="X"), f"unexpected cloud error while {WHAT}: X: odd"),
    ],
)
def test_from_error_message_prefixes(err: CloudError, message: str) -> None:
    assert from_error(err, what=WHAT).message.startswith(message)


def test_throttled_message_mentions_backoff() -> None:
    result = from_error(Throttled("Rate exceeded", code="Throttling"), what=WHAT)
    assert result.message == f"throttled while {WHAT}: Throttling: Rate exceeded; retrying with backoff"


def test_from_error_without_code_omits_it() -> None:
    result = from_error(Transient("AWS unreachable"), what=WHAT)
    assert result.message == f"cloud error while {WHAT}: AWS unreachable; retrying"
    assert "::" not in result.message
    assert ": :" not in result.message


class _RetryableInvalid(Invalid):
    retryable = True


def test_retryable_flag_wins_over_type_for_non_throttled_errors() -> None:
    result = from_error(_RetryableInvalid("try later", code="C"), what=WHAT)
    assert result.state is State.RECONCILING
    assert result.reason is Reason.CLOUD_UNAVAILABLE


def test_error_types_retryable_flags() -> None:
    assert Throttled("x").retryable
    assert Transient("x").retryable
    for cls in (CloudError, NotFound, Conflict, Invalid, AccessDenied):
        assert not cls("x").retryable
    err = Conflict("msg", code="C")
    assert (err.message, err.code, str(err)) == ("msg", "C", "msg")


# --- retryable / recheck ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "retryable", "recheck"),
    [
        (ready("ok"), False, False),
        (Outcome(State.RECONCILING, Reason.THROTTLED, ""), True, False),
        (Outcome(State.RECONCILING, Reason.CLOUD_UNAVAILABLE, ""), True, False),
        (Outcome(State.RECONCILING, Reason.PROGRESSING, ""), True, False),
        (stalled(Reason.ROLE_NOT_FOUND, ""), False, True),
        (stalled(Reason.CLUSTER_NOT_FOUND, ""), False, True),
        (stalled(Reason.CONFLICT, ""), False, True),
        (stalled(Reason.ACCESS_DENIED, ""), False, True),
        (stalled(Reason.CLOUD_REJECTED, ""), False, True),  # an unknown refusal may end on the cloud's side
        (stalled(Reason.INVALID_SPEC, ""), False, False),
        (stalled(Reason.NOT_CONFIGURED, ""), False, False),
    ],
)
def test_retryable_and_recheck(outcome: Outcome, retryable: bool, recheck: bool) -> None:
    assert outcome.retryable is retryable
    assert outcome.recheck is recheck


@pytest.mark.parametrize(("state", "reason"), [(State.RECONCILING, Reason.CONFLICT), (State.READY, Reason.CONFLICT)])
def test_a_reason_has_exactly_one_state(state: State, reason: Reason) -> None:
    # the state table docs/connections.md shows is the one the code enforces
    with pytest.raises(ValueError, match="Conflict is Stalled"):
        Outcome(state, reason, "")


@pytest.mark.parametrize(
    ("err", "retryable", "recheck"),
    [
        (Throttled("x"), True, False),
        (Transient("x"), True, False),
        (AccessDenied("x"), False, True),
        (NotFound("x"), False, True),
        (Conflict("x"), False, True),
        (Invalid("x"), False, True),
    ],
)
def test_from_error_retry_semantics(err: CloudError, retryable: bool, recheck: bool) -> None:
    result = from_error(err, what=WHAT)
    assert result.retryable is retryable
    assert result.recheck is recheck


def test_constructors() -> None:
    assert ready("bound") == Outcome(State.READY, Reason.BOUND, "bound")
    assert stalled(Reason.INVALID_SPEC, "bad") == Outcome(State.STALLED, Reason.INVALID_SPEC, "bad")


# --- conditions.build ------------------------------------------------------------------------------------------------

T0 = "2024-01-01T00:00:00Z"
T1 = "2024-01-01T00:05:00Z"
RECONCILING = Outcome(State.RECONCILING, Reason.THROTTLED, "slow down")
STALLED = stalled(Reason.CONFLICT, "someone else's")
READY = ready("bound")


def by_type(conds: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conds}


def test_ready_outcome_gives_only_ready_true() -> None:
    out = build(READY, 4, [], T1)
    assert [c.type for c in out] == ["Ready"]
    [cond] = out
    assert cond.status is ConditionStatus.TRUE
    assert cond.reason == "Bound"
    assert cond.message == "bound"
    assert cond.observed_generation == 4
    assert cond.last_transition_time == T1


def test_reconciling_outcome_gives_ready_false_and_reconciling_true() -> None:
    out = build(RECONCILING, 2, [], T1)
    assert [c.type for c in out] == ["Ready", "Reconciling"]
    conds = by_type(out)
    assert conds["Ready"].status is ConditionStatus.FALSE
    assert conds["Reconciling"].status is ConditionStatus.TRUE
    for c in out:
        assert c.reason == "Throttled"
        assert c.message == "slow down"
        assert c.observed_generation == 2
        assert c.last_transition_time == T1


def test_stalled_outcome_gives_ready_false_and_stalled_true() -> None:
    out = build(STALLED, 7, [], T1)
    assert [c.type for c in out] == ["Ready", "Stalled"]
    conds = by_type(out)
    assert conds["Ready"].status is ConditionStatus.FALSE
    assert conds["Stalled"].status is ConditionStatus.TRUE
    assert all(c.reason == "Conflict" and c.observed_generation == 7 for c in out)


def test_conditions_that_are_no_longer_true_are_dropped() -> None:
    stalled_before = build(STALLED, 1, [], T0)
    out = build(RECONCILING, 2, stalled_before, T1)
    assert "Stalled" not in by_type(out)
    assert set(by_type(out)) == {"Ready", "Reconciling"}
    out = build(READY, 3, out, T1)
    assert set(by_type(out)) == {"Ready"}


def test_transition_time_kept_when_status_unchanged_even_if_reason_changes() -> None:
    before = build(RECONCILING, 1, [], T0)
    after = build(STALLED, 2, before, T1)
    ready_cond = by_type(after)["Ready"]
    assert ready_cond.status is ConditionStatus.FALSE
    assert ready_cond.reason == "Conflict"  # reason and message follow the outcome ...
    assert ready_cond.message == "someone else's"
    assert ready_cond.observed_generation == 2
    assert ready_cond.last_transition_time == T0  # ... the transition time does not
    assert by_type(after)["Stalled"].last_transition_time == T1  # new condition


def test_transition_time_kept_for_repeated_same_outcome() -> None:
    before = build(READY, 1, [], T0)
    after = build(READY, 2, before, T1)
    assert by_type(after)["Ready"].last_transition_time == T0
    assert by_type(after)["Ready"].observed_generation == 2


def test_transition_time_kept_for_stalled_that_stays_stalled() -> None:
    before = build(STALLED, 1, [], T0)
    after = build(stalled(Reason.ACCESS_DENIED, "denied"), 1, before, T1)
    conds = by_type(after)
    assert conds["Stalled"].last_transition_time == T0
    assert conds["Stalled"].reason == "AccessDenied"


@pytest.mark.parametrize(("first", "second"), [(READY, STALLED), (STALLED, READY), (RECONCILING, READY)])
def test_transition_time_is_now_when_ready_flips(first: Outcome, second: Outcome) -> None:
    before = build(first, 1, [], T0)
    after = build(second, 2, before, T1)
    assert by_type(before)["Ready"].status != by_type(after)["Ready"].status
    assert by_type(after)["Ready"].last_transition_time == T1


def test_transition_time_is_now_when_previous_status_was_unknown() -> None:
    previous = [
        Condition(type="Ready", status=ConditionStatus.UNKNOWN, last_transition_time=T0, reason="Progressing"),
        Condition(type="Other", status=ConditionStatus.TRUE, last_transition_time=T0, reason="X"),
    ]
    out = build(READY, 1, previous, T1)
    assert [c.type for c in out] == ["Ready"]  # foreign conditions are not carried
    assert out[0].last_transition_time == T1


def test_build_does_not_mutate_previous() -> None:
    before = build(READY, 1, [], T0)
    snapshot = [c.model_copy() for c in before]
    build(STALLED, 2, before, T1)
    assert before == snapshot


def test_ready_condition() -> None:
    assert ready_condition([]) is None
    out = build(STALLED, 1, [], T0)
    found = ready_condition(list(reversed(out)))
    assert found is not None
    assert found.type == "Ready"


def test_now_rfc3339_format() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", now_rfc3339())
