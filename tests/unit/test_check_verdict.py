"""`check`'s pure part: which step failed and why, from the clouds' own error codes, and how it is reported."""

from __future__ import annotations

import pytest

from porter_identity.api.connection import Provider
from porter_identity.check.verdict import (
    HINTS,
    CheckReason,
    Step,
    StepFailed,
    Verdict,
    classify_aws,
    classify_entra,
    classify_gcp,
    default_audience,
    google_detail,
    readiness,
)

ISSUER = "https://oidc.example/cluster"


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("InvalidTokenException", "The token's audience ['sts.amazonaws.com'] is not pods.eks.amazonaws.com.",
         CheckReason.AUDIENCE_MISMATCH),
        ("InvalidTokenException", "The token's issuer https://a is not https://b.", CheckReason.ISSUER_MISMATCH),
        ("InvalidTokenException", "The token's signature does not verify.", CheckReason.TOKEN_REJECTED),
        ("ExpiredTokenException", "The token has expired.", CheckReason.TOKEN_REJECTED),
        ("ResourceNotFoundException", "No cluster found for name: prod.", CheckReason.CLUSTER_NOT_FOUND),
        ("ResourceNotFoundException", "No Pod Identity Association found for service account api",
         CheckReason.BINDING_MISSING),
        ("AccessDeniedException", "pods.eks.amazonaws.com is not authorized to perform: sts:TagSession",
         CheckReason.TRUST_POLICY_INVALID),
        ("AccessDeniedException", "User: arn:aws:iam::1:user/me is not authorized to perform: "
         "eks-auth:AssumeRoleForPodIdentity", CheckReason.CALLER_NOT_AUTHORIZED),
        ("InvalidParameterException", "token is required.", CheckReason.NOT_CONFIGURED),
        ("ThrottlingException", "Rate exceeded", CheckReason.CLOUD_UNAVAILABLE),
        ("InternalServerException", "", CheckReason.CLOUD_UNAVAILABLE),
    ],
)  # fmt: skip
def test_eks_auth_errors(code: str, message: str, reason: CheckReason) -> None:
    assert classify_aws(code, message) is reason


@pytest.mark.parametrize(
    ("message", "token_issuer", "reason"),
    [
        ("AADSTS700211: No matching federated identity record found for presented assertion issuer", ISSUER,
         CheckReason.BINDING_MISSING),
        ("AADSTS700211: No matching federated identity record found for presented assertion issuer",
         "https://other", CheckReason.ISSUER_MISMATCH),
        ("AADSTS700212: ... audience 'api://x'", ISSUER, CheckReason.AUDIENCE_MISMATCH),
        ("AADSTS700213: ... subject 'system:serviceaccount:a:b'", ISSUER, CheckReason.SUBJECT_MISMATCH),
        ("AADSTS70021: No matching federated identity record found for presented assertion.", ISSUER,
         CheckReason.BINDING_MISSING),
        ("AADSTS700024: Client assertion is not within its valid time range.", ISSUER, CheckReason.TOKEN_REJECTED),
        ("AADSTS700027: Client assertion failed signature validation.", ISSUER, CheckReason.TOKEN_REJECTED),
        ("AADSTS700016: Application with identifier 'x' was not found", ISSUER, CheckReason.IDENTITY_NOT_FOUND),
        ("AADSTS90002: Tenant 'x' not found.", ISSUER, CheckReason.NOT_CONFIGURED),
        ("Connection refused", ISSUER, CheckReason.CLOUD_UNAVAILABLE),
    ],
)  # fmt: skip
def test_entra_errors(message: str, token_issuer: str, reason: CheckReason) -> None:
    assert classify_entra(message, token_issuer, ISSUER) is reason


@pytest.mark.parametrize(
    ("message", "step", "reason"),
    [
        ("Error code invalid_grant: The audience in ID Token does not match the expected audience.", Step.EXCHANGE,
         CheckReason.AUDIENCE_MISMATCH),
        ("Error code invalid_grant: The issuer in ID Token does not match the expected issuer.", Step.EXCHANGE,
         CheckReason.ISSUER_MISMATCH),
        ("Error code invalid_grant: The ID Token has expired.", Step.EXCHANGE, CheckReason.TOKEN_REJECTED),
        ('Error code invalid_request: Invalid value for "audience".', Step.EXCHANGE, CheckReason.NOT_CONFIGURED),
        ("('Unable to acquire impersonated credentials', '{\"error\": {\"code\": 403, \"message\": \"Permission "
         "'iam.serviceAccounts.getAccessToken' denied\", \"status\": \"PERMISSION_DENIED\"}}')", Step.IDENTITY,
         CheckReason.BINDING_MISSING),
        ("('Unable to acquire impersonated credentials', '{\"status\": \"NOT_FOUND\"}')", Step.IDENTITY,
         CheckReason.IDENTITY_NOT_FOUND),
        ("('Unable to acquire impersonated credentials', '{\"status\": \"INTERNAL\"}')", Step.IDENTITY,
         CheckReason.IDENTITY_CALL_FAILED),
        ("HTTPSConnectionPool: Max retries exceeded", Step.EXCHANGE, CheckReason.CLOUD_UNAVAILABLE),
    ],
)  # fmt: skip
def test_google_errors(message: str, step: Step, reason: CheckReason) -> None:
    assert classify_gcp(message) == (step, reason)


def test_readiness_reads_the_ready_condition() -> None:
    assert readiness([]) == (False, "no Ready condition yet (is the operator running?)")
    ready = {"type": "Ready", "status": "True", "reason": "Bound", "message": "bound to arn:aws:iam::1:role/r"}
    assert readiness([{"type": "Reconciling", "status": "False"}, ready]) == (True, "Bound")
    stalled = {"type": "Ready", "status": "False", "reason": "RoleNotFound", "message": "role x does not exist"}
    assert readiness([stalled]) == (False, "RoleNotFound: role x does not exist")


def test_default_audiences_are_the_clouds() -> None:
    assert default_audience(Provider.AWS, "p.svc.id.goog") == "pods.eks.amazonaws.com"
    assert default_audience(Provider.AZURE, None) == "api://AzureADTokenExchange"
    assert default_audience(Provider.GCP, "p.svc.id.goog") == "p.svc.id.goog"
    assert default_audience(Provider.GCP, None) is None


def test_every_failure_reason_has_a_hint() -> None:
    assert set(HINTS) == set(CheckReason) - {CheckReason.IDENTITY_OBTAINED}


def test_success_verdict() -> None:
    verdict = Verdict("shop/api", Provider.AWS)
    verdict.passed(Step.CONNECTION, "Ready (Bound)")
    verdict.passed(Step.IDENTITY, "STS GetCallerIdentity: arn:aws:sts::1:assumed-role/r/s")
    verdict.obtained("arn:aws:sts::1:assumed-role/r/s")
    assert verdict.ok
    out = verdict.to_json()
    assert out["ok"] is True and out["reason"] == "IdentityObtained" and out["failedStep"] is None
    assert out["hint"] is None
    assert verdict.render().splitlines() == [
        "check shop/api (aws)",
        "  [ok]   connection     Ready (Bound)",
        "  [ok]   identity       STS GetCallerIdentity: arn:aws:sts::1:assumed-role/r/s",
        "identity obtained: arn:aws:sts::1:assumed-role/r/s",
    ]


def test_failed_verdict_names_step_reason_and_hint() -> None:
    verdict = Verdict("shop/api", Provider.AZURE)
    verdict.passed(Step.CONNECTION, "Ready (Bound)")
    verdict.failed(StepFailed(Step.EXCHANGE, CheckReason.SUBJECT_MISMATCH, "Microsoft Entra: AADSTS700213: ..."))
    assert not verdict.ok
    out = verdict.to_json()
    assert (out["ok"], out["reason"], out["failedStep"], out["identity"]) == (
        False,
        "SubjectMismatch",
        "exchange",
        None,
    )
    assert out["steps"][-1] == {
        "step": "exchange",
        "ok": False,
        "detail": "SubjectMismatch: Microsoft Entra: AADSTS700213: ...",
    }
    text = verdict.render()
    assert "  [FAIL] exchange       SubjectMismatch: Microsoft Entra: AADSTS700213: ..." in text
    assert "failed at exchange: SubjectMismatch" in text
    assert f"hint: {HINTS[CheckReason.SUBJECT_MISMATCH]}" in text


def test_google_detail_keeps_the_services_own_message() -> None:
    impersonation = (
        "Unable to acquire impersonated credentials",
        '{"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}}',
    )
    assert (
        google_detail(impersonation)
        == "Unable to acquire impersonated credentials: PERMISSION_DENIED: Permission denied"
    )
    sts = (
        "Error code invalid_grant: The ID Token has expired.",
        '{"error": "invalid_grant", "error_description": "The ID Token has expired."}',
    )
    assert google_detail(sts) == "Error code invalid_grant: The ID Token has expired."
    assert google_detail(("plain",)) == "plain"
