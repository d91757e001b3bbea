"""Read one key of a Secret (the PorterRoleSet ExternalId); the value is returned, never logged."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from porter_identity.kube.rest import ApiError, Kube, path


class SecretForbidden(Exception):
    """The operator's RBAC does not allow reading this Secret (the chart grants named Secrets in named namespaces)."""


# A Secret's `data` by namespace and name (None when it does not exist); raises SecretForbidden on 403.
SecretReader = Callable[[str, str], dict[str, str] | None]


def reader(kube: Kube) -> SecretReader:
    """The operator's reader, over its own client."""

    def read(namespace: str, name: str) -> dict[str, str] | None:
        try:
            found: Any = kube.get(path("", "v1", "secrets", namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            if err.status == 403:
                raise SecretForbidden(FORBIDDEN) from None
            raise
        return dict(found.get("data") or {})

    return read


FORBIDDEN = (
    "the operator may not read it: the Helm chart grants reading only the Secret names of "
    "rbac.externalIdSecretNames (default porter-external-id) in the namespaces of "
    "rbac.externalIdSecretNamespaces; name it there, or use a Secret named there"
)


def read_key(read: SecretReader, namespace: str, name: str, key: str) -> str | None:
    """The decoded value, or None when the Secret or the key does not exist."""
    raw = (read(namespace, name) or {}).get(key)
    if raw is None:
        return None
    return base64.b64decode(raw).decode().strip()
