"""Read one key of a Secret (the PorterRoleSet ExternalId); the value is returned, never logged."""

from __future__ import annotations

import base64
from typing import Any

from kubernetes import client


class SecretForbidden(Exception):
    """The operator's RBAC does not allow reading this Secret (the chart grants named Secrets in named namespaces)."""


def read_key(api: client.ApiClient, namespace: str, name: str, key: str) -> str | None:
    """The decoded value, or None when the Secret or the key does not exist."""
    try:
        found: Any = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except client.ApiException as err:
        if err.status == 404:
            return None
        if err.status == 403:
            raise SecretForbidden(
                "the operator may not read it: the Helm chart grants reading only the Secret names of "
                "rbac.externalIdSecretNames (default porter-external-id) in the namespaces of "
                "rbac.externalIdSecretNamespaces; name it there, or use a Secret named there"
            ) from None
        raise
    raw = (found.data or {}).get(key)
    if raw is None:
        return None
    return base64.b64decode(raw).decode().strip()
