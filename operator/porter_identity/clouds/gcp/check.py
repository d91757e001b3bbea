"""Its part of `porter-identity check`: exchange the ServiceAccount token as the pod's SDK does, then call once."""

from __future__ import annotations

from typing import Any

from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.check.exchange import Options, ServiceAccountToken
from porter_identity.check.verdict import (
    CheckReason,
    Step,
    StepFailed,
    Verdict,
    classify_gcp,
    google_detail,
)
from porter_identity.clouds.gcp.plan import SERVICE_ACCOUNT_ANNOTATION
from porter_identity.config import Settings

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def exchange(
    conn: ServiceIdentityConnection,
    annotations: dict[str, str],
    sat: ServiceAccountToken,
    settings: Settings,
    options: Options,
    verdict: Verdict,
) -> str:
    """google-auth's external-account flow of GKE / fleet Workload Identity: STS, then generateAccessToken."""
    from google.auth import exceptions, identity_pool
    from google.auth.transport.requests import Request

    email = annotations.get(SERVICE_ACCOUNT_ANNOTATION)
    provider = settings.gcp_identity_provider or settings.oidc_issuer
    if not email:
        raise StepFailed(
            Step.EXCHANGE, CheckReason.BINDING_MISSING, f"the ServiceAccount lacks {SERVICE_ACCOUNT_ANNOTATION}"
        )
    if not settings.workload_pool or not provider:
        raise StepFailed(
            Step.EXCHANGE, CheckReason.NOT_CONFIGURED, "set PORTER_GCP_PROJECT_ID and PORTER_GCP_IDENTITY_PROVIDER"
        )

    class Supplier(identity_pool.SubjectTokenSupplier):
        def get_subject_token(self, context: Any, request: Any) -> str:
            return sat.token

    credentials = identity_pool.Credentials(  # type: ignore[no-untyped-call]
        audience=f"identitynamespace:{settings.workload_pool}:{provider}",
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        token_url=f"{settings.gcp_sts_endpoint.rstrip('/')}/v1/token",
        subject_token_supplier=Supplier(),
        service_account_impersonation_url=f"{settings.gcp_iam_credentials_endpoint.rstrip('/')}"
        f"/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
        scopes=[CLOUD_PLATFORM],
    )
    try:
        credentials.refresh(Request())  # type: ignore[no-untyped-call]
    except exceptions.TransportError as err:
        raise StepFailed(Step.EXCHANGE, CheckReason.CLOUD_UNAVAILABLE, str(err)[:500]) from None
    except exceptions.GoogleAuthError as err:  # RefreshError, and OAuthError for STS's OAuth error bodies
        step, reason = classify_gcp(str(err))
        if step is Step.IDENTITY:
            verdict.passed(Step.EXCHANGE, f"Google STS federated token for workload pool {settings.workload_pool}")
        raise StepFailed(step, reason, google_detail(err.args)[:500]) from None
    member = f"serviceAccount:{settings.workload_pool}[{conn.metadata.namespace}/{conn.spec.service_account_name}]"
    verdict.passed(Step.EXCHANGE, f"Google STS federated token for {member}")
    verdict.passed(Step.IDENTITY, f"IAM Credentials generateAccessToken for {email}")
    return email
