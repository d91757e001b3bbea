"""Decide the federated identity credential that links a ServiceAccount to a user-assigned managed identity."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from porter_identity.model import Credential

AUDIENCE = "api://AzureADTokenExchange"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id"
NAME_MAX = 120  # Azure: 3-120 characters, letter or digit first, then letters, digits, '-' and '_'
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def subject(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def _named(namespace: str, service_account: str, hashed: str) -> str:
    digest = hashlib.sha256(hashed.encode()).hexdigest()[:10]
    readable = _UNSAFE.sub("-", f"{namespace}-{service_account}")
    room = NAME_MAX - len("porter--") - len(digest)
    return f"porter-{readable[:room]}-{digest}"


def credential_name(issuer: str, namespace: str, service_account: str) -> str:
    """Deterministic, always valid, unique per cluster (its issuer) and namespace/service account: two clusters
    federating one identity for the same namespace/ServiceAccount get two credentials (the hash also
    disambiguates truncation)."""
    return _named(namespace, service_account, f"{issuer}|{namespace}/{service_account}")


def legacy_credential_name(namespace: str, service_account: str) -> str:
    """The name releases before the cluster-scoped one gave; such credentials are adopted as they are."""
    return _named(namespace, service_account, f"{namespace}/{service_account}")


def ours(credential: Credential, issuer: str) -> tuple[str, str] | None:
    """The namespace/ServiceAccount of a credential this cluster's operator made, else None.

    Ours only if it trusts this cluster's issuer and is named by our scheme for its own subject; ARM resource
    names compare case-insensitively."""
    owner = service_account_of(credential.subject)
    if owner is None or credential.issuer != issuer:
        return None
    names = {credential_name(issuer, *owner).lower(), legacy_credential_name(*owner).lower()}
    return owner if credential.name.lower() in names else None


def service_account_of(subject: str) -> tuple[str, str] | None:
    parts = subject.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return parts[2], parts[3]
    return None


def desired(issuer: str, namespace: str, service_account: str, name: str | None = None) -> Credential:
    return Credential(
        name=name or credential_name(issuer, namespace, service_account),
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
