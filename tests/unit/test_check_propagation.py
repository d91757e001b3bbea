"""`check` tells a change not yet propagated from a refusal: pure rules, from what the cloud's own API showed."""

from __future__ import annotations

import pytest

from porter_identity.api.connection import Provider
from porter_identity.check.verdict import (
    HINTS,
    LAG_EXPLAINS,
    CheckReason,
    Seen,
    Step,
    StepFailed,
    Verdict,
    missing_identity,
    settle,
)

ROLE = "arn:aws:iam::123456789012:role/shop"
LINKED = Seen(True, f"IAM GetRole returns {ROLE}, with a trust policy EKS Pod Identity can use")


def ready(status: str, reason: str) -> list[dict[str, str]]:
    return [{"type": "Ready", "status": status, "reason": reason, "message": "..."}]


def test_a_role_iam_returns_and_eks_refuses_as_absent_is_not_yet_propagated() -> None:
    refused = StepFailed(
        Step.CONNECTION,
        CheckReason.CONNECTION_NOT_READY,
        "RoleNotFound: EKS does not see IAM role shop yet (Role provided in the request does not exist)",
    )
    settled = settle(refused, LINKED)
    assert (settled.step, settled.reason) == (Step.CONNECTION, CheckReason.NOT_YET_PROPAGATED)
    assert refused.detail in settled.detail and LINKED.detail in settled.detail


def test_a_role_iam_does_not_have_stays_refused() -> None:
    refused = StepFailed(Step.CONNECTION, CheckReason.CONNECTION_NOT_READY, "RoleNotFound: no such role")
    assert settle(refused, Seen(False, "IAM has no role shop")) is refused


def test_nothing_read_leaves_the_refusal_as_it_was() -> None:
    refused = StepFailed(Step.EXCHANGE, CheckReason.BINDING_MISSING, "EKS Auth ResourceNotFoundException")
    assert settle(refused, None) is refused


@pytest.mark.parametrize("reason", sorted(LAG_EXPLAINS))
def test_refusals_of_something_absent_or_as_it_was_are_propagation_when_the_cloud_has_it(
    reason: CheckReason,
) -> None:
    assert settle(StepFailed(Step.EXCHANGE, reason, "x"), LINKED).reason is CheckReason.NOT_YET_PROPAGATED


@pytest.mark.parametrize(
    "reason",
    [
        CheckReason.ISSUER_MISMATCH,  # the cloud trusts another issuer: configuration, not lag
        CheckReason.TOKEN_REJECTED,
        CheckReason.CALLER_NOT_AUTHORIZED,
        CheckReason.CLUSTER_NOT_FOUND,
        CheckReason.NOT_CONFIGURED,
        CheckReason.CLOUD_UNAVAILABLE,
    ],
)
def test_other_refusals_are_never_called_propagation(reason: CheckReason) -> None:
    refused = StepFailed(Step.EXCHANGE, reason, "x")
    assert settle(refused, LINKED) is refused


def test_only_a_missing_identity_is_asked_about() -> None:
    assert missing_identity(ready("False", "RoleNotFound"))
    assert missing_identity(ready("False", "IdentityNotFound"))
    assert not missing_identity(ready("False", "TrustPolicyInvalid"))
    assert not missing_identity(ready("False", "Conflict"))
    assert not missing_identity(ready("True", "Bound"))
    assert not missing_identity([])


def test_the_verdict_says_to_retry_soon_and_why() -> None:
    verdict = Verdict("shop/api", Provider.AWS)
    verdict.failed(settle(StepFailed(Step.CONNECTION, CheckReason.CONNECTION_NOT_READY, "RoleNotFound: ..."), LINKED))
    out = verdict.to_json()
    assert (out["ok"], out["reason"], out["failedStep"], out["retrySoon"]) == (
        False,
        "NotYetPropagated",
        "connection",
        True,
    )
    assert out["hint"] == HINTS[CheckReason.NOT_YET_PROPAGATED] and "nothing needs fixing" in out["hint"]
    assert "failed at connection: NotYetPropagated" in verdict.render()

    refused = Verdict("shop/api", Provider.AWS)
    refused.failed(StepFailed(Step.EXCHANGE, CheckReason.TRUST_POLICY_INVALID, "EKS Auth AccessDeniedException"))
    assert refused.to_json()["retrySoon"] is False
