"""Its part of `porter-identity check`: exchange the ServiceAccount token as the pod's SDK does, then call once."""

from __future__ import annotations

from typing import Any

from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.check.exchange import Options, ServiceAccountToken
from porter_identity.check.verdict import (
    CheckReason,
    Seen,
    Step,
    StepFailed,
    Verdict,
    classify_gcp,
    google_detail,
)
from porter_identity.clouds.gcp.plan import SERVICE_ACCOUNT_ANNOTATION, member
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


def control_plane(conn: ServiceIdentityConnection, settings: Settings, options: Options) -> Seen | None:
    """What the IAM API shows of the service account (GetServiceAccount) and, once the operator linked it, of its
    policy: linked when the account exists and, if linked, its workloadIdentityUser binding holds the member."""
    from google.api_core import exceptions as gexc

    from porter_identity.clouds.gcp.client import GcpProvider, resource
    from porter_identity.model import WORKLOAD_IDENTITY_USER

    spec = conn.spec.gcp
    if spec is None or not settings.workload_pool:
        return None
    email = spec.service_account_email
    provider = GcpProvider.connect(settings.gcp_iam_endpoint)
    try:
        found = provider.client.get_service_account(request={"name": resource(email)})
    except (gexc.NotFound, gexc.PermissionDenied):
        return Seen(False, f"IAM has no service account {email} (or it may not be read)")
    except gexc.GoogleAPICallError:
        return None
    seen = f"IAM GetServiceAccount returns {found.email}"
    if conn.status.gcp is None:
        return Seen(True, seen)
    who = member(settings.workload_pool, conn.metadata.namespace or "", conn.spec.service_account_name)
    try:
        policy = provider.client.get_iam_policy(request={"resource": resource(email)})
    except gexc.GoogleAPICallError:
        return None
    bound = any(b.role == WORKLOAD_IDENTITY_USER and who in b.members for b in policy.bindings)
    if not bound:
        return Seen(False, f"{seen}, whose policy lacks {who} in {WORKLOAD_IDENTITY_USER}")
    return Seen(True, f"{seen}, whose policy has {who} in {WORKLOAD_IDENTITY_USER}")
