"""Leader election rules (reconcile/lease.py), the fence, and the per-object reconcile-policy."""

from __future__ import annotations

import math
import time

import pytest

from porter_identity.config import LeaderElection
from porter_identity.providers.fence import Fence, Fenced
from porter_identity.reconcile import reconcile_policy
from porter_identity.reconcile.lease import Record, Step, decide, fence_deadline
from porter_identity.reconcile.reconcile_policy import ReconcilePolicy

HELD = Record(holder="other", duration_seconds=15, transitions=3, version="7")


def test_no_lease_is_created() -> None:
    assert decide("me", None, observed_at=0, now=0) is Step.CREATE


def test_our_lease_is_renewed_even_when_it_looks_expired() -> None:
    mine = Record(holder="me", duration_seconds=15, transitions=1, version="9")
    assert decide("me", mine, observed_at=0, now=1000) is Step.RENEW


def test_another_holders_lease_is_waited_for_until_a_duration_after_we_saw_it_change() -> None:
    assert decide("me", HELD, observed_at=100, now=114.9) is Step.WAIT
    assert decide("me", HELD, observed_at=100, now=115) is Step.TAKE


def test_a_released_lease_is_taken_at_once() -> None:
    released = Record(holder=None, duration_seconds=1, transitions=3, version="8")
    assert decide("me", released, observed_at=100, now=100) is Step.TAKE


def test_the_fence_closes_before_a_standby_may_take_over() -> None:
    timing = LeaderElection(enabled=True)
    sent = 500.0
    closes = fence_deadline(sent, timing.renew_deadline_seconds)
    # the standby saw the renewal no earlier than it was sent
    earliest_takeover = sent + timing.lease_duration_seconds
    assert earliest_takeover - closes == timing.lease_duration_seconds - timing.renew_deadline_seconds > 0


def test_timings_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElection(lease_duration_seconds=10, renew_deadline_seconds=10)
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElection(retry_period_seconds=10)


def test_fence_refuses_after_its_deadline_and_when_closed() -> None:
    fence = Fence()
    assert fence.open  # no leader election: always open
    fence.extend(time.monotonic() + 60)
    fence.check("aws", "CreatePodIdentityAssociation")
    fence.extend(time.monotonic() - 0.001)
    with pytest.raises(Fenced, match="not the leader") as refused:
        fence.check("aws", "CreatePodIdentityAssociation")
    assert refused.value.retryable
    fence.extend(math.inf)
    fence.close()
    assert not fence.open


@pytest.mark.parametrize(
    ("annotations", "policy", "warns"),
    [
        (None, ReconcilePolicy.MANAGE, False),
        ({}, ReconcilePolicy.MANAGE, False),
        ({reconcile_policy.ANNOTATION: "skip"}, ReconcilePolicy.SKIP, False),
        ({reconcile_policy.ANNOTATION: " Skip "}, ReconcilePolicy.SKIP, False),
        ({reconcile_policy.ANNOTATION: "detach-on-delete"}, ReconcilePolicy.DETACH_ON_DELETE, False),
        ({reconcile_policy.ANNOTATION: "manage"}, ReconcilePolicy.MANAGE, False),
        ({reconcile_policy.ANNOTATION: "pause"}, ReconcilePolicy.SKIP, True),
    ],
)
def test_reconcile_policy(annotations: dict[str, str] | None, policy: ReconcilePolicy, warns: bool) -> None:
    found, warning = reconcile_policy.of(annotations)
    assert found is policy
    assert (warning is not None) == warns
    if warning:
        assert "'pause'" in warning and "treated as skip" in warning
