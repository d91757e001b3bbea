"""Decide the federated identity credential that links a ServiceAccount to a user-assigned managed identity."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from porter_identity.providers.azure import Credential

AUDIENCE = "api://AzureADTokenExchange"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id"
NAME_MAX = 120  # Azure: 3-120 characters, letter or digit first, then letters, digits, '-' and '_'
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def subject(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def credential_name(namespace: str, service_account: str) -> str:
    """Deterministic, always valid, unique per namespace/service account (the hash disambiguates truncation)."""
    digest = hashlib.sha256(f"{namespace}/{service_account}".encode()).hexdigest()[:10]
    readable = _UNSAFE.sub("-", f"{namespace}-{service_account}")
    room = NAME_MAX - len("porter--") - len(digest)
    return f"porter-{readable[:room]}-{digest}"


def desired(issuer: str, namespace: str, service_account: str) -> Credential:
    return Credential(
        name=credential_name(namespace, service_account),
        issuer=issuer,
        subject=subject(namespace, service_account),
        audiences=(AUDIENCE,),
    )


class Action(StrEnum):
    CREATE = "Create"
    UPDATE = "Update"
    KEEP = "Keep"


def plan_apply(wanted: Credential, observed: Credential | None) -> Action:
    """The credential's name is ours by construction, so a drifted one is repaired, never a conflict."""
    if observed is None:
        return Action.CREATE
    if (observed.issuer, observed.subject, sorted(observed.audiences)) != (
        wanted.issuer,
        wanted.subject,
        sorted(wanted.audiences),
    ):
        return Action.UPDATE
    return Action.KEEP
