"""Its part of `porter-identity check`: exchange the ServiceAccount token as the pod's SDK does, then call once."""

from __future__ import annotations

import jwt

from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.check.exchange import Options, ServiceAccountToken
from porter_identity.check.verdict import (
    CheckReason,
    Step,
    StepFailed,
    Verdict,
    classify_entra,
)
from porter_identity.clouds.azure.plan import CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION
from porter_identity.config import Settings

ARM_SCOPE = "https://management.azure.com/.default"  # as clouds/azure/client.py; not imported: that loads the SDK
SUBSCRIPTIONS_API_VERSION = "2022-12-01"


def exchange(
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

    client_id = annotations.get(CLIENT_ID_ANNOTATION)
    tenant_id = annotations.get(TENANT_ID_ANNOTATION) or (conn.status.azure.tenant_id if conn.status.azure else None)
    if not client_id or not tenant_id:
        raise StepFailed(
            Step.EXCHANGE,
            CheckReason.BINDING_MISSING,
            f"the ServiceAccount lacks the annotations {CLIENT_ID_ANNOTATION} / {TENANT_ID_ANNOTATION} "
            "the pod webhook reads",
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
