"""Read and write the leader election Lease (coordination.k8s.io/v1); every write is a compare-and-swap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from porter_identity.kube.rest import ApiError, Kube, path
from porter_identity.reconcile.lease import Record

CONFLICT, NOT_FOUND = 409, 404
GROUP, VERSION = "coordination.k8s.io", "v1"


class Lost(Exception):
    """Someone else wrote the Lease between our read and our write."""


class Leases:
    def __init__(self, kube: Kube, namespace: str, name: str, timeout: float) -> None:
        self.kube = kube
        self.namespace, self.name = namespace, name
        self._timeout = timeout  # a renewal that cannot finish before the renew deadline is worth nothing

    def read(self) -> Record | None:
        try:
            lease: Any = self.kube.get(path(GROUP, VERSION, "leases", self.namespace, self.name), timeout=self._timeout)
        except ApiError as err:
            if err.status == NOT_FOUND:
                return None
            raise
        spec = lease.get("spec") or {}
        acquired = spec.get("acquireTime")
        return Record(
            holder=spec.get("holderIdentity") or None,
            duration_seconds=float(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            version=str(lease["metadata"]["resourceVersion"]),
            acquired=datetime.fromisoformat(acquired) if acquired else None,
        )

    def write(self, holder: str | None, duration_seconds: int, transitions: int, before: Record | None) -> None:
        """Create (before is None) or replace at `before.version`; raises Lost when that version is gone."""
        now = datetime.now(UTC)
        acquired = before.acquired if before is not None and before.holder == holder and before.acquired else now
        lease: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": holder or "",
                "leaseDurationSeconds": duration_seconds,
                "leaseTransitions": transitions,
                "renewTime": _micro_time(now),
                "acquireTime": _micro_time(acquired),
            },
        }
        try:
            if before is None:
                self.kube.post(path(GROUP, VERSION, "leases", self.namespace), lease, timeout=self._timeout)
                return
            lease["metadata"]["resourceVersion"] = before.version
            self.kube.put(path(GROUP, VERSION, "leases", self.namespace, self.name), lease, timeout=self._timeout)
        except ApiError as err:
            if err.status == CONFLICT:
                raise Lost(f"Lease {self.namespace}/{self.name} changed under us") from None
            raise


def _micro_time(at: datetime) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
