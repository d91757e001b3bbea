"""What `check` concludes: the steps taken, which one failed and why, from the clouds' own error codes (no I/O)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from porter_identity.api.connection import Provider

AWS_AUDIENCE = "pods.eks.amazonaws.com"
AZURE_AUDIENCE = "api://AzureADTokenExchange"
TOKEN_SECONDS = 600
AADSTS = re.compile(r"AADSTS(\d+)")


class Step(StrEnum):
    """The path a pod's credentials take, in order."""

    CONNECTION = "connection"
    SERVICE_ACCOUNT = "serviceaccount"
    TOKEN = "token"
    EXCHANGE = "exchange"
    IDENTITY = "identity"


class CheckReason(StrEnum):
    """Why a step failed; names shared with the operator's condition reasons mean the same thing there."""

    IDENTITY_OBTAINED = "IdentityObtained"
    CONNECTION_NOT_FOUND = "ConnectionNotFound"
    CONNECTION_NOT_READY = "ConnectionNotReady"
    SERVICE_ACCOUNT_NOT_FOUND = "ServiceAccountNotFound"
    TOKEN_REQUEST_FAILED = "TokenRequestFailed"
    NOT_CONFIGURED = "NotConfigured"
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    ISSUER_MISMATCH = "IssuerMismatch"
    AUDIENCE_MISMATCH = "AudienceMismatch"
    SUBJECT_MISMATCH = "SubjectMismatch"
    TOKEN_REJECTED = "TokenRejected"
    BINDING_MISSING = "BindingMissing"
    TRUST_POLICY_INVALID = "TrustPolicyInvalid"
    CALLER_NOT_AUTHORIZED = "CallerNotAuthorized"
    IDENTITY_NOT_FOUND = "IdentityNotFound"
    IDENTITY_CALL_FAILED = "IdentityCallFailed"
    CLOUD_UNAVAILABLE = "CloudUnavailable"
    NOT_YET_PROPAGATED = "NotYetPropagated"


HINTS: dict[CheckReason, str] = {
    CheckReason.CONNECTION_NOT_FOUND: "no such ServiceIdentityConnection: check the namespace and name",
    CheckReason.CONNECTION_NOT_READY: "the operator has not linked it yet: see `kubectl describe sic` for why",
    CheckReason.SERVICE_ACCOUNT_NOT_FOUND: "create the ServiceAccount named in spec.serviceAccountName",
    CheckReason.TOKEN_REQUEST_FAILED: "you need `create` on serviceaccounts/token in the namespace",
    CheckReason.NOT_CONFIGURED: "set the cluster facts (PORTER_* settings) check needs for this provider",
    CheckReason.CLUSTER_NOT_FOUND: "PORTER_EKS_CLUSTER_NAME / PORTER_AWS_REGION do not name an EKS cluster",
    CheckReason.ISSUER_MISMATCH: "the cloud trusts another issuer than the cluster's: check PORTER_OIDC_ISSUER "
    "(or the GCP identity provider) against the API server's --service-account-issuer",
    CheckReason.AUDIENCE_MISMATCH: "the token's audience is not the one the cloud expects",
    CheckReason.SUBJECT_MISMATCH: "the cloud link names another ServiceAccount: it was edited outside the "
    "operator; the operator repairs it, or recreate the connection",
    CheckReason.TOKEN_REJECTED: "the cloud refused the token itself (signature, expiry): check that it can read "
    "the issuer's /.well-known/openid-configuration and keys",
    CheckReason.BINDING_MISSING: "the cloud link (association, federated credential or IAM member) is gone: it was "
    "removed outside the operator; the operator repairs it, or recreate the connection",
    CheckReason.TRUST_POLICY_INVALID: "the role's trust policy must allow pods.eks.amazonaws.com the actions "
    "sts:AssumeRole and sts:TagSession",
    CheckReason.CALLER_NOT_AUTHORIZED: "your own credentials may not call the exchange (AWS: "
    "eks-auth:AssumeRoleForPodIdentity)",
    CheckReason.IDENTITY_NOT_FOUND: "the cloud identity does not exist (or its ids changed)",
    CheckReason.IDENTITY_CALL_FAILED: "credentials were issued but the identity call refused them",
    CheckReason.CLOUD_UNAVAILABLE: "the cloud endpoint failed or could not be reached: retry, check endpoints",
    CheckReason.NOT_YET_PROPAGATED: "the cloud's own API shows the identity and its link, the service that uses "
    "them does not see them yet: cloud IAM is eventually consistent (seconds, at times minutes); run check again "
    "in a minute, nothing needs fixing",
}

# Worth running again soon: nothing is wrong that the caller must fix.
RETRY_SOON = frozenset({CheckReason.NOT_YET_PROPAGATED, CheckReason.CLOUD_UNAVAILABLE})
# Refusals a lagging service gives for what its cloud's own API already has: a role, trust policy, association,
# federated credential or member it does not see yet, or the previous subject it still sees. (An audience mismatch
# is left alone: `--audience` makes one on purpose.)
LAG_EXPLAINS = frozenset(
    {
        CheckReason.BINDING_MISSING,
        CheckReason.IDENTITY_NOT_FOUND,
        CheckReason.TRUST_POLICY_INVALID,
        CheckReason.SUBJECT_MISMATCH,
    }
)
# The operator's condition reasons for an identity the linking service said it does not have.
MISSING_IDENTITY = frozenset({"RoleNotFound", "IdentityNotFound", "NotYetPropagated"})


@dataclass(frozen=True)
class Seen:
    """What the cloud's own API (IAM GetRole, ARM, IAM getIamPolicy) shows of the identity and its link: `linked`
    when it holds exactly what the connection asks for; `detail` says what was read."""

    linked: bool
    detail: str


@dataclass(frozen=True)
class StepResult:
    step: Step
    ok: bool
    detail: str


class StepFailed(Exception):
    """A step failed; the check stops there."""

    def __init__(self, step: Step, reason: CheckReason, detail: str) -> None:
        super().__init__(detail)
        self.step, self.reason, self.detail = step, reason, detail


@dataclass
class Verdict:
    connection: str  # namespace/name
    provider: Provider | None = None
    steps: list[StepResult] = field(default_factory=list)
    reason: CheckReason | None = None
    identity: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is CheckReason.IDENTITY_OBTAINED

    def passed(self, step: Step, detail: str) -> None:
        self.steps.append(StepResult(step, True, detail))

    def failed(self, failure: StepFailed) -> None:
        self.steps.append(StepResult(failure.step, False, f"{failure.reason.value}: {failure.detail}"))
        self.reason = failure.reason

    def obtained(self, identity: str) -> None:
        self.identity, self.reason = identity, CheckReason.IDENTITY_OBTAINED

    @property
    def retry_soon(self) -> bool:
        return self.reason in RETRY_SOON

    def to_json(self) -> dict[str, Any]:
        failed = next((s.step.value for s in self.steps if not s.ok), None)
        return {
            "connection": self.connection,
            "provider": self.provider.value if self.provider else None,
            "ok": self.ok,
            "reason": self.reason.value if self.reason else None,
            "retrySoon": self.retry_soon,
            "failedStep": failed,
            "identity": self.identity,
            "hint": HINTS.get(self.reason) if self.reason else None,
            "steps": [{"step": s.step.value, "ok": s.ok, "detail": s.detail} for s in self.steps],
        }

    def render(self) -> str:
        lines = [f"check {self.connection}" + (f" ({self.provider.value})" if self.provider else "")]
        lines += [f"  {'[ok]' if s.ok else '[FAIL]':<6} {s.step.value:<14} {s.detail}" for s in self.steps]
        if self.ok:
            lines.append(f"identity obtained: {self.identity}")
        else:
            failed = next((s.step.value for s in self.steps if not s.ok), "?")
            reason = self.reason.value if self.reason else "?"
            lines.append(f"failed at {failed}: {reason}")
            if self.reason in HINTS:
                lines.append(f"  hint: {HINTS[self.reason]}")
        return "\n".join(lines)


def readiness(conditions: list[dict[str, Any]]) -> tuple[bool, str]:
    """(Ready, why): the reason when Ready, else "reason: message" from the connection's status conditions."""
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return False, "no Ready condition yet (is the operator running?)"
    if ready.get("status") == "True":
        return True, str(ready.get("reason", ""))
    return False, f"{ready.get('reason', '')}: {ready.get('message', '')}".rstrip(": ")


def missing_identity(conditions: list[dict[str, Any]]) -> bool:
    """Whether the connection waits for an identity its cloud's linking service said does not exist."""
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    return ready is not None and ready.get("status") != "True" and ready.get("reason") in MISSING_IDENTITY


def settle(refused: StepFailed, seen: Seen | None) -> StepFailed:
    """Not yet propagated, or refused: a refusal of something absent (or as it was) is propagation when the cloud's
    own API already shows exactly what was asked for; anything else, or nothing read (`seen` None), stays as
    refused."""
    waiting = refused.reason in LAG_EXPLAINS or (
        refused.step is Step.CONNECTION and refused.reason is CheckReason.CONNECTION_NOT_READY
    )
    if seen is None or not seen.linked or not waiting:
        return refused
    return StepFailed(
        refused.step,
        CheckReason.NOT_YET_PROPAGATED,
        f"{refused.detail}; yet {seen.detail}: not propagated to the service that refused it yet",
    )


def google_detail(args: tuple[Any, ...]) -> str:
    """google-auth errors carry (message, response body): the message, then the body's own message if it adds one."""
    parts = [str(a) for a in args[:1]]
    for extra in args[1:]:
        try:
            body = json.loads(extra) if isinstance(extra, str) else extra
        except ValueError:
            body = extra
        if isinstance(body, dict):
            inner = body.get("error")
            found = inner.get("message") if isinstance(inner, dict) else body.get("error_description")
            body = f"{inner.get('status')}: {found}" if isinstance(inner, dict) else found
        if body and str(body) not in parts[0]:
            parts.append(str(body))
    return ": ".join(parts)


def default_audience(provider: Provider, workload_pool: str | None) -> str | None:
    """The audience the cloud's token service expects in the ServiceAccount token."""
    if provider is Provider.AWS:
        return AWS_AUDIENCE
    if provider is Provider.AZURE:
        return AZURE_AUDIENCE
    return workload_pool


def classify_aws(code: str, message: str) -> CheckReason:
    """EKS Auth AssumeRoleForPodIdentity errors (the service model's exception names)."""
    lowered = message.lower()
    if code == "InvalidTokenException":
        if "audience" in lowered:
            return CheckReason.AUDIENCE_MISMATCH
        if "issuer" in lowered:
            return CheckReason.ISSUER_MISMATCH
        return CheckReason.TOKEN_REJECTED
    if code == "ExpiredTokenException":
        return CheckReason.TOKEN_REJECTED
    if code == "ResourceNotFoundException":
        return CheckReason.CLUSTER_NOT_FOUND if "no cluster" in lowered else CheckReason.BINDING_MISSING
    if code == "AccessDeniedException":
        trust = AWS_AUDIENCE in message or "trust" in lowered
        return CheckReason.TRUST_POLICY_INVALID if trust else CheckReason.CALLER_NOT_AUTHORIZED
    if code in ("InvalidParameterException", "InvalidRequestException"):
        return CheckReason.NOT_CONFIGURED
    return CheckReason.CLOUD_UNAVAILABLE


def classify_entra(message: str, token_issuer: str | None, configured_issuer: str | None) -> CheckReason:
    """Microsoft Entra AADSTS codes of a refused client-assertion exchange.

    AADSTS700211 says no federated credential trusts the token's issuer: when that issuer is the one the operator
    writes into credentials, the credential itself is gone; otherwise the issuers differ.
    """
    found = AADSTS.search(message)
    code = int(found.group(1)) if found else None
    if code == 700211:
        same = token_issuer is not None and token_issuer == configured_issuer
        return CheckReason.BINDING_MISSING if same else CheckReason.ISSUER_MISMATCH
    by_code = {
        70021: CheckReason.BINDING_MISSING,
        700212: CheckReason.AUDIENCE_MISMATCH,
        700213: CheckReason.SUBJECT_MISMATCH,
        700024: CheckReason.TOKEN_REJECTED,
        700027: CheckReason.TOKEN_REJECTED,
        50027: CheckReason.TOKEN_REJECTED,
        700016: CheckReason.IDENTITY_NOT_FOUND,
        90002: CheckReason.NOT_CONFIGURED,
    }
    if code is None:
        return CheckReason.CLOUD_UNAVAILABLE
    return by_code.get(code, CheckReason.TOKEN_REJECTED)


def classify_gcp(message: str) -> tuple[Step, CheckReason]:
    """google-auth's RefreshError text: STS OAuth errors, or IAM Credentials errors after "impersonated"."""
    lowered = message.lower()
    if "impersonated credentials" in lowered:
        if "permission_denied" in lowered or "getaccesstoken" in lowered:
            return Step.IDENTITY, CheckReason.BINDING_MISSING
        if "not_found" in lowered:
            return Step.IDENTITY, CheckReason.IDENTITY_NOT_FOUND
        return Step.IDENTITY, CheckReason.IDENTITY_CALL_FAILED
    if "invalid_grant" in lowered:
        if "audience" in lowered:
            return Step.EXCHANGE, CheckReason.AUDIENCE_MISMATCH
        if "issuer" in lowered:
            return Step.EXCHANGE, CheckReason.ISSUER_MISMATCH
        return Step.EXCHANGE, CheckReason.TOKEN_REJECTED
    if "invalid_request" in lowered or "invalid_target" in lowered:
        return Step.EXCHANGE, CheckReason.NOT_CONFIGURED
    return Step.EXCHANGE, CheckReason.CLOUD_UNAVAILABLE
