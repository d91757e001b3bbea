"""Its part of `porter-identity check`: exchange the ServiceAccount token as the pod's SDK does, then call once."""

from __future__ import annotations

import jwt

from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.check.exchange import Options, ServiceAccountToken
from porter_identity.check.verdict import (
    CheckReason,
    Seen,
    Step,
    StepFailed,
    Verdict,
    classify_entra,
)
from porter_identity.clouds.azure.plan import AUDIENCE, CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION, subject
from porter_identity.config import Settings

ARM_SCOPE = "https://management.azure.com/.default"  # as clouds/azure/client.py; not imported: that loads the SDK
SUBSCRIPTIONS_API_VERSION = "2022-12-01"
MSI_API_VERSION = "2024-11-30"


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


def control_plane(conn: ServiceIdentityConnection, settings: Settings, options: Options) -> Seen | None:
    """What ARM (at once after a write) shows of the federated credential Entra refused: linked when the one the
    operator recorded trusts this cluster's issuer for the ServiceAccount with the exchange's audience."""
    import requests
    from azure.core.exceptions import AzureError

    spec, recorded = conn.spec.azure, conn.status.azure.credential_name if conn.status.azure else None
    if spec is None or not recorded or not settings.azure_subscription_id:
        return None
    if settings.azure_credential == "emulator":
        token = "emulator"  # the local ARM emulator's development credential, as the operator's
    else:
        from azure.identity import DefaultAzureCredential

        try:
            token = DefaultAzureCredential().get_token(ARM_SCOPE).token
        except AzureError:
            return None
    url = (
        f"{settings.azure_arm_endpoint.rstrip('/')}/subscriptions/{settings.azure_subscription_id}/resourceGroups/"
        f"{spec.resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{spec.identity_name}/"
        f"federatedIdentityCredentials/{recorded}?api-version={MSI_API_VERSION}"
    )
    try:
        resp = requests.get(
            url, headers={"Authorization": f"Bearer {token}"}, verify=settings.azure_ca_file or True, timeout=30
        )
    except requests.RequestException:
        return None
    if resp.status_code == 404:
        return Seen(False, f"ARM has no federated credential {recorded} on {spec.identity_name}")
    if resp.status_code != 200:
        return None
    found = resp.json().get("properties") or {}
    wanted = subject(conn.metadata.namespace or "", conn.spec.service_account_name)
    what = f"ARM has federated credential {recorded} on {spec.identity_name}"
    if found.get("issuer") != settings.oidc_issuer or found.get("subject") != wanted:
        return Seen(False, f"{what} for {found.get('issuer')} / {found.get('subject')}")
    if AUDIENCE not in (found.get("audiences") or []):
        return Seen(False, f"{what} without the audience {AUDIENCE}")
    return Seen(True, f"{what}, trusting {wanted} of this cluster's issuer")
