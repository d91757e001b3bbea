"""Run the check: read the connection, get a ServiceAccount token, exchange it as a pod's SDK does, call once."""

from __future__ import annotations

from typing import Any

import jwt
from kubernetes import client

from porter_identity import GROUP, VERSION
from porter_identity.api.connection import Provider, ServiceIdentityConnection
from porter_identity.check.exchange import Exchange, Options, Probe, ServiceAccountToken
from porter_identity.check.verdict import (
    LAG_EXPLAINS,
    TOKEN_SECONDS,
    CheckReason,
    Step,
    StepFailed,
    Verdict,
    default_audience,
    missing_identity,
    readiness,
    settle,
)
from porter_identity.clouds.aws import check as aws
from porter_identity.clouds.azure import check as azure
from porter_identity.clouds.gcp import check as gcp
from porter_identity.config import Settings

PLURAL = "serviceidentityconnections"


def check(api: client.ApiClient, namespace: str, name: str, settings: Settings, options: Options) -> Verdict:
    verdict = Verdict(connection=f"{namespace}/{name}")
    try:
        conn = _connection(api, namespace, name, settings, options, verdict)
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
        try:
            verdict.obtained(exchange(conn, annotations, sat, settings, options, verdict))
        except StepFailed as refused:
            if refused.reason not in LAG_EXPLAINS:
                raise
            raise settle(refused, PROBES[conn.spec.provider](conn, settings, options)) from None
    except StepFailed as failure:
        verdict.failed(failure)
    return verdict


def _connection(
    api: client.ApiClient, namespace: str, name: str, settings: Settings, options: Options, verdict: Verdict
) -> ServiceIdentityConnection:
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
    conditions = (body.get("status") or {}).get("conditions") or []
    ready, summary = readiness(conditions)
    if not ready:
        refused = StepFailed(Step.CONNECTION, CheckReason.CONNECTION_NOT_READY, summary)
        if not missing_identity(conditions):
            raise refused
        # The linking service said the identity does not exist: does the cloud's own API have it?
        raise settle(refused, PROBES[conn.spec.provider](conn, settings, options))
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


EXCHANGES: dict[Provider, Exchange] = {
    Provider.AWS: aws.exchange,
    Provider.AZURE: azure.exchange,
    Provider.GCP: gcp.exchange,
}
# What each cloud's own API shows of the identity and link, to tell a refusal from a change not propagated yet.
PROBES: dict[Provider, Probe] = {
    Provider.AWS: aws.control_plane,
    Provider.AZURE: azure.control_plane,
    Provider.GCP: gcp.control_plane,
}
