"""Read and annotate ServiceAccounts (Azure client id, GCP service account), writing only on change."""

from __future__ import annotations

from typing import Any

from porter_identity.kube.rest import ApiError, Kube, path
from porter_identity.reconcile import annotation_patch


class ServiceAccountMissing(Exception):
    """The connection's ServiceAccount does not exist (yet)."""


class ServiceAccounts:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def _annotations(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            found: Any = self.kube.get(path("", "v1", "serviceaccounts", namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise
        return dict((found.get("metadata") or {}).get("annotations") or {})

    def annotate(self, namespace: str, name: str, wanted: dict[str, str | None]) -> None:
        """Ensure `wanted` annotations (None: absent) with one merge patch: the API server stores nothing when
        they are already so (no new resourceVersion), so a read first would only add a round trip."""
        try:
            self.kube.patch(path("", "v1", "serviceaccounts", namespace, name), {"metadata": {"annotations": wanted}})
        except ApiError as err:
            if err.status == 404:
                raise ServiceAccountMissing(f"ServiceAccount {namespace}/{name} does not exist") from None
            raise

    def annotate_if_present(self, namespace: str, name: str, wanted: dict[str, str | None]) -> bool:
        """`annotate`, where a missing ServiceAccount is not an error: False then."""
        try:
            self.annotate(namespace, name, wanted)
        except ServiceAccountMissing:
            return False
        return True

    def annotations(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ServiceAccount's annotations, None when it does not exist."""
        return self._annotations(namespace, name)

    def unannotate(
        self, namespace: str, name: str, ours: dict[str, str], current: dict[str, str] | None = None
    ) -> bool:
        """Remove our values; a ServiceAccount deleted meanwhile (the namespace going away) is not an error.
        `current`: its annotations when the caller has just read them (saves a second read)."""
        current = current if current is not None else self._annotations(namespace, name)
        if current is None:
            return False
        change = annotation_patch.removal(current, ours)
        if change is None:
            return False
        try:
            self.kube.patch(path("", "v1", "serviceaccounts", namespace, name), {"metadata": {"annotations": change}})
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True
