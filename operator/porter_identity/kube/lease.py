"""Read and write the leader election Lease (coordination.k8s.io/v1); every write is a compare-and-swap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from porter_identity.reconcile.lease import Record

CONFLICT, NOT_FOUND = 409, 404


class Lost(Exception):
    """Someone else wrote the Lease between our read and our write."""


class Leases:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, timeout: float) -> None:
        self.api = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self._timeout = timeout  # a renewal that cannot finish before the renew deadline is worth nothing

    def read(self) -> Record | None:
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
        except client.ApiException as err:
            if err.status == NOT_FOUND:
                return None
            raise
        spec = lease.spec
        return Record(
            holder=spec.holder_identity or None,
            duration_seconds=float(spec.lease_duration_seconds or 0),
            transitions=int(spec.lease_transitions or 0),
            version=str(lease.metadata.resource_version),
            acquired=spec.acquire_time,
        )

    def write(self, holder: str | None, duration_seconds: int, transitions: int, before: Record | None) -> None:
        """Create (before is None) or replace at `before.version`; raises Lost when that version is gone."""
        now = datetime.now(UTC)
        spec = client.V1LeaseSpec(
            holder_identity=holder or "",
            lease_duration_seconds=duration_seconds,
            lease_transitions=transitions,
            renew_time=now,
            acquire_time=before.acquired if before is not None and before.holder == holder else now,
        )
        meta = client.V1ObjectMeta(name=self.name, namespace=self.namespace)
        try:
            if before is None:
                self.api.create_namespaced_lease(
                    self.namespace, client.V1Lease(metadata=meta, spec=spec), _request_timeout=self._timeout
                )
                return
            meta.resource_version = before.version
            self.api.replace_namespaced_lease(
                self.name, self.namespace, client.V1Lease(metadata=meta, spec=spec), _request_timeout=self._timeout
            )
        except client.ApiException as err:
            if err.status == CONFLICT:
                raise Lost(f"Lease {self.namespace}/{self.name} changed under us") from None
            raise
