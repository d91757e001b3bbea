"""Run the check: read the connection, request a ServiceAccount token, exchange it as the in-pod SDKs do, call once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from kubernetes import client

from porter_identity import GROUP, VERSION
from porter_identity.api.connection import Provider, ServiceIdentityConnection
from porter_identity.check.verdict import (
    TOKEN_SECONDS,
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
from porter_identity.config import Settings

PLURAL = "serviceidentityconnections"
AZURE_CLIENT_ID = "azure.workload.identity/client-id"
AZURE_TENANT_ID = "azure.workload.identity/tenant-id"
GKE_SERVICE_ACCOUNT = "iam.gke.io/gcp-service-account"
ARM_SCOPE = "https://management.azure.com/.default"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SUBSCRIPTIONS_API_VERSION = "2022-12-01"


@dataclass(frozen=True)
class Options:
    """What the caller chose: `audience` overrides the cloud's (to diagnose), `aws_endpoint_url` the SDK default."""

    audience: str | None = None
    aws_endpoint_url: str | None = None


@dataclass(frozen=True)
class ServiceAccountToken:
    token: str  # never printed
    claims: dict[str, Any]  # read without verification: what the cloud will see


def check(api: client.ApiClient, namespace: str, name: str, settings: Settings, options: Options) -> Verdict:
    verdict = Verdict(connection=f"{namespace}/{name}")
    try:
        conn = _connection(api, namespace, name, verdict)
        annotations = _service_account(api, namespace, conn.spec.service_account_name, verdict)
        audience = options.audience or default_audience(conn.spec.provider, settings.workload_pool)
        if audience is None:
            raise StepFailed(Step.TOKEN, CheckReason.NOT_CONFIGURED, "no audience: set PORTER_GCP_PROJECT_ID")
        sat = _request_token(api, namespace, conn.spec.service_account_name, audience)
        verdict.passed(
            Step.TOKEN,
            f"{TOKEN_SECONDS // 60}-minute token for {sat.claims.get('sub')}, audience {audience}, "
            f"issuer {sat.claims.get('iss')}",
        )
        exchange = EXCHANGES[conn.spec.provider]
        verdict.obtained(exchange(conn, annotations, sat, settings, options, verdict))
    except StepFailed as failure:
        verdict.failed(failure)
    return verdict


def _connection(api: client.ApiClient, namespace: str, name: str, verdict: Verdict) -> ServiceIdentityConnection:
    try:
        body: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except client.ApiException as err:
        if err.status == 404:
            raise StepFailed(Step.CONNECTION, CheckReason.CONNECTION_NOT_FOUND, "not found") from None
        raise StepFailed(
            Step.CONNECTION, CheckReason.CLOUD_UNAVAILABLE, f"API server: {err.status} {err.reason}"
        ) from None
    conn = ServiceIdentityConnection.from_body(body)
    verdict.provider = conn.spec.provider
    ready, summary = readiness((body.get("status") or {}).get("conditions") or [])
    if not ready:
        raise StepFailed(Step.CONNECTION, CheckReason.CONNECTION_NOT_READY, summary)
    verdict.passed(Step.CONNECTION, f"Ready ({summary}), {conn.spec.provider.value} {conn.spec.identity}")
    return conn


def _service_account(api: client.ApiClient, namespace: str, name: str, verdict: Verdict) -> dict[str, str]:
    try:
        found = client.CoreV1Api(api).read_namespaced_service_account(name, namespace)
    except client.ApiException as err:
        reason = CheckReason.SERVICE_ACCOUNT_NOT_FOUND if err.status == 404 else CheckReason.CLOUD_UNAVAILABLE
        raise StepFailed(Step.SERVICE_ACCOUNT, reason, f"{namespace}/{name}: {err.status} {err.reason}") from None
    verdict.passed(Step.SERVICE_ACCOUNT, f"{namespace}/{name}")
    return dict((found.metadata.annotations if found.metadata else None) or {})


def _request_token(api: client.ApiClient, namespace: str, name: str, audience: str) -> ServiceAccountToken:
    """A short-lived token through the TokenRequest API: what the kubelet projects into a pod."""
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=TOKEN_SECONDS)
    )
    try:
        made = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, body)
    except client.ApiException as err:
        raise StepFailed(Step.TOKEN, CheckReason.TOKEN_REQUEST_FAILED, f"{err.status} {err.reason}") from None
    token = made.status.token if made.status else None
    if not token:
        raise StepFailed(Step.TOKEN, CheckReason.TOKEN_REQUEST_FAILED, "the API server returned no token")
    return ServiceAccountToken(token, jwt.decode(token, options={"verify_signature": False}))


def _aws(
    conn: ServiceIdentityConnection,
    annotations: dict[str, str],
    sat: ServiceAccountToken,
    settings: Settings,
    options: Options,
    verdict: Verdict,
) -> str:
    """What the EKS Pod Identity Agent does for the pod's SDK: AssumeRoleForPodIdentity, then one STS call."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if not settings.eks_cluster_name:
        raise StepFailed(Step.EXCHANGE, CheckReason.NOT_CONFIGURED, "PORTER_EKS_CLUSTER_NAME is not set")
    session = boto3.session.Session(region_name=settings.aws_region)
    try:
        answer = session.client("eks-auth", endpoint_url=options.aws_endpoint_url).assume_role_for_pod_identity(
            clusterName=settings.eks_cluster_name, token=sat.token
        )
    except ClientError as err:
        code, message = err.response["Error"].get("Code", ""), err.response["Error"].get("Message", "")
        raise StepFailed(Step.EXCHANGE, classify_aws(code, message), f"EKS Auth {code}: {message}") from None
    except BotoCoreError as err:
        raise StepFailed(Step.EXCHANGE, CheckReason.CLOUD_UNAVAILABLE, f"EKS Auth: {err}") from None
    association = answer["podIdentityAssociation"]["associationId"]
    verdict.passed(
        Step.EXCHANGE,
        f"EKS Auth AssumeRoleForPodIdentity in cluster {settings.eks_cluster_name}: association {association}, "
        f"role session {answer['assumedRoleUser']['arn']}",
    )
    creds = answer["credentials"]
    assumed = boto3.session.Session(
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
        region_name=settings.aws_region,
    )
    try:
        arn: str = assumed.client("sts", endpoint_url=options.aws_endpoint_url).get_caller_identity()["Arn"]
    except (ClientError, BotoCoreError) as err:
        raise StepFailed(Step.IDENTITY, CheckReason.IDENTITY_CALL_FAILED, f"STS GetCallerIdentity: {err}") from None
    verdict.passed(Step.IDENTITY, f"STS GetCallerIdentity: {arn}")
    return arn


def _azure(
    conn: ServiceIdentityConnection,
    annotations: dict[str, str],
    sat: ServiceAccountToken,
    settings: Settings,
    options: Options,
    verdict: Verdict,
) -> str:
    """What azure-identity's WorkloadIdentityCredential does in the pod, then one ARM read that needs no role."""
    import requests
    from azure.core.exceptions import AzureError, ClientAuthenticationError
    from azure.identity import ClientAssertionCredential

    client_id = annotations.get(AZURE_CLIENT_ID)
    tenant_id = annotations.get(AZURE_TENANT_ID) or (conn.status.azure.tenant_id if conn.status.azure else None)
    if not client_id or not tenant_id:
        raise StepFailed(
            Step.EXCHANGE,
            CheckReason.BINDING_MISSING,
            f"the ServiceAccount lacks the annotations {AZURE_CLIENT_ID} / {AZURE_TENANT_ID} the pod webhook reads",
        )
    verify: str | bool = settings.azure_ca_file or True
    credential = ClientAssertionCredential(
        tenant_id,
        client_id,
        lambda: sat.token,
        authority=settings.azure_authority,
        disable_instance_discovery=True,
        connection_verify=verify,
    )
    try:
        access = credential.get_token(ARM_SCOPE).token
    except ClientAuthenticationError as err:
        message = str(err.message).splitlines()[0] if err.message else str(err)
        reason = classify_entra(message, sat.claims.get("iss"), settings.oidc_issuer)
        raise StepFailed(Step.EXCHANGE, reason, f"Microsoft Entra: {message}") from None
    except AzureError as err:
        raise StepFailed(Step.EXCHANGE, CheckReason.CLOUD_UNAVAILABLE, f"Microsoft Entra: {err}") from None
    claims = jwt.decode(access, options={"verify_signature": False})
    who = f"client {claims.get('appid', client_id)} (principal {claims.get('oid')}) in tenant {tenant_id}"
    verdict.passed(Step.EXCHANGE, f"Microsoft Entra client assertion for {who}")
    url = f"{settings.azure_arm_endpoint.rstrip('/')}/subscriptions?api-version={SUBSCRIPTIONS_API_VERSION}"
    try:
        resp = requests.get(url, headers={"Authorization": f"Bearer {access}"}, verify=verify, timeout=30)
    except requests.RequestException as err:
        raise StepFailed(Step.IDENTITY, CheckReason.CLOUD_UNAVAILABLE, f"ARM: {err}") from None
    if resp.status_code != 200:
        raise StepFailed(Step.IDENTITY, CheckReason.IDENTITY_CALL_FAILED, f"ARM GET /subscriptions: {resp.text[:300]}")
    verdict.passed(Step.IDENTITY, "ARM GET /subscriptions accepted the token")
    return who


def _gcp(
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

    email = annotations.get(GKE_SERVICE_ACCOUNT)
    provider = settings.gcp_identity_provider or settings.oidc_issuer
    if not email:
        raise StepFailed(Step.EXCHANGE, CheckReason.BINDING_MISSING, f"the ServiceAccount lacks {GKE_SERVICE_ACCOUNT}")
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


Exchange = Callable[[ServiceIdentityConnection, dict[str, str], ServiceAccountToken, Settings, Options, Verdict], str]
EXCHANGES: dict[Provider, Exchange] = {Provider.AWS: _aws, Provider.AZURE: _azure, Provider.GCP: _gcp}
