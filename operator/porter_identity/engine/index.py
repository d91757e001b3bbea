"""The connections in memory: owners by ServiceAccount and cloud, and the drift sweep's groups, kept by the
operator's watch of connections (handlers/connection.py) from its first list on.

kopf's own indexes hold every object's handlers until all objects of every indexed kind are listed: at 10,000
connections a restarted operator held 10,000 bodies (and their loggers and patches) at once. This index keeps only
claims; no connection runs before the watch's first list has filled it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from porter_identity.clouds.azure import plan as azure
from porter_identity.clouds.gcp import plan as gcp
from porter_identity.reconcile import claims, drift
from porter_identity.reconcile.drift import Group, Linked
from porter_identity.reconcile.outcome import NOT_CLAIMING

K = TypeVar("K")
V = TypeVar("V")
ClaimKey = tuple[str, str, str]  # namespace, ServiceAccount, provider


class Index(Generic[K, V]):
    """One value per connection under one key; read like kopf.Index (`get(key, [])`, iteration over keys).

    Written on the event loop only; readers on other threads take copies (each copy is one C-level call)."""

    def __init__(self) -> None:
        self._by_key: dict[K, dict[str, V]] = {}
        self._key_of: dict[str, K] = {}

    def put(self, uid: str, key: K, value: V) -> None:
        old = self._key_of.get(uid)
        if old is not None and old != key:
            self.remove(uid)
        self._by_key.setdefault(key, {})[uid] = value
        self._key_of[uid] = key

    def remove(self, uid: str) -> None:
        key = self._key_of.pop(uid, None)
        if key is None:
            return
        found = self._by_key.get(key)
        if found is not None:
            found.pop(uid, None)
            if not found:
                self._by_key.pop(key, None)

    def get(self, key: K, default: list[V] | None = None) -> list[V]:
        found = self._by_key.get(key)
        return list(found.values()) if found else list(default or [])

    def __getitem__(self, key: K) -> list[V]:
        return list(self._by_key[key].values())

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._by_key))

    def __len__(self) -> int:
        return len(self._by_key)

    def uids(self) -> list[str]:
        return list(self._key_of)

    def snapshot(self) -> dict[K, list[V]]:
        return {key: list(found.values()) for key, found in list(self._by_key.items())}


def _identity_of(spec: Mapping[str, Any]) -> str:
    aws, azure_, gcp_ = spec.get("aws") or {}, spec.get("azure") or {}, spec.get("gcp") or {}
    if azure_:
        return f"{azure_.get('resourceGroup', '')}/{azure_.get('identityName', '')}"
    return str(aws.get("role") or gcp_.get("serviceAccountEmail") or "")


def needs(status: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The ServiceAccount annotations the recorded link needs: a pod started now gets its identity only with them."""
    if isinstance(status.get("azure"), Mapping):
        linked = status["azure"]
        return (
            (azure.CLIENT_ID_ANNOTATION, str(linked.get("clientId") or "")),
            (azure.TENANT_ID_ANNOTATION, str(linked.get("tenantId") or "")),
        )
    if isinstance(status.get("gcp"), Mapping) and status.get("identity"):
        return ((gcp.SERVICE_ACCOUNT_ANNOTATION, str(status["identity"])),)
    return ()


def claim_of(body: Mapping[str, Any]) -> tuple[ClaimKey, claims.Claim]:
    """A connection body's entry in the owners index."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    ready: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    rank = claims.rank(ready.get("status") == "True", str(ready.get("reason", "")), NOT_CLAIMING)
    if meta.get("deletionTimestamp"):
        rank = claims.NONE  # going away: the next claimant may take over as soon as its link is gone
    claim = claims.Claim(
        rank,
        str(meta.get("creationTimestamp") or ""),
        str(meta.get("uid")),
        str(meta.get("name") or ""),
        _identity_of(spec),
        str(ready.get("reason", "")),
        needs(status) if rank == claims.HOLDS else (),
    )
    provider = (drift.group_of(spec) or ("",))[0]
    return (str(meta.get("namespace") or ""), str(spec.get("serviceAccountName", "")), provider), claim


class Connections:
    """Both views of every connection this operator watches (all shards: ownership spans them)."""

    def __init__(self) -> None:
        self.owners: Index[ClaimKey, claims.Claim] = Index()
        self.groups: Index[Group, Linked] = Index()
        self.listed = False  # the watch's first list is complete: ownership may be decided

    def update(self, body: Mapping[str, Any]) -> None:
        """A watch event's body (on the event loop)."""
        self._put(str((body.get("metadata") or {}).get("uid")), body)

    def forget(self, uid: str) -> None:
        self.owners.remove(uid)
        self.groups.remove(uid)

    def _put(self, uid: str, body: Mapping[str, Any]) -> None:
        key, claim = claim_of(body)
        self.owners.put(uid, key, claim)
        found = drift.entry(body)
        if found is None:
            self.groups.remove(uid)
        else:
            self.groups.put(uid, found[0], found[1])
