"""The connections in memory: owners by ServiceAccount and cloud, and the drift sweep's groups, filled by a paged
list at start and kept by the watch.

kopf's own indexes hold every object's handlers until all objects of every indexed kind are listed: at 10,000
connections a restarted operator held 10,000 bodies (and their loggers and patches) at once. This index is filled
before the watch of connections starts (handlers/connection.py), one page at a time, and keeps only claims."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from porter_identity import GROUP, VERSION
from porter_identity.api.connection import PLURAL
from porter_identity.clouds.azure import plan as azure
from porter_identity.clouds.gcp import plan as gcp
from porter_identity.kube import rest
from porter_identity.kube.rest import Kube
from porter_identity.reconcile import claims, drift
from porter_identity.reconcile.drift import Group, Linked
from porter_identity.reconcile.outcome import NOT_CLAIMING

K = TypeVar("K")
V = TypeVar("V")
ClaimKey = tuple[str, str, str]  # namespace, ServiceAccount, provider
# Items per page of the start-up list: what is parsed at once.
PAGE = 500
# A connection listed at start that no watch event has shown within this long is run once (it may be gone).
CONFIRM_SECONDS = 120.0


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
        self.listed = False  # the start-up list is complete: ownership may be decided
        self._unconfirmed: dict[str, tuple[float, str, str]] = {}  # uid -> (listed at, namespace, name)

    def update(self, body: Mapping[str, Any]) -> None:
        """A watch event's body (on the event loop)."""
        uid = str((body.get("metadata") or {}).get("uid"))
        self._unconfirmed.pop(uid, None)
        self._put(uid, body)

    def forget(self, uid: str) -> None:
        self._unconfirmed.pop(uid, None)
        self.owners.remove(uid)
        self.groups.remove(uid)

    def fill(self, kube: Kube, namespaces: list[str]) -> int:
        """The start-up list, a page at a time; returns how many connections it found."""
        paths = [rest.path(GROUP, VERSION, PLURAL, ns) for ns in namespaces] or [rest.path(GROUP, VERSION, PLURAL)]
        now = time.monotonic()
        count = 0
        for path in paths:
            token = ""
            while True:
                query = {"limit": str(PAGE)} | ({"continue": token} if token else {})
                page = kube.get(path, query=query)
                for item in page.get("items") or []:
                    meta = item.get("metadata") or {}
                    uid = str(meta.get("uid"))
                    self._put(uid, item)
                    self._unconfirmed[uid] = (now, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
                    count += 1
                token = str((page.get("metadata") or {}).get("continue") or "")
                if not token:
                    break
        self.listed = True
        return count

    def unconfirmed(self, older_than: float = CONFIRM_SECONDS) -> list[tuple[str, str, str]]:
        """(uid, namespace, name) of connections the start-up list found and no watch event has shown since: one
        deleted between that list and the watch's is in no event, and a run that finds it gone forgets it."""
        cutoff = time.monotonic() - older_than
        due = [(uid, ns, name) for uid, (at, ns, name) in list(self._unconfirmed.items()) if at <= cutoff]
        for uid, *_ in due:
            self._unconfirmed.pop(uid, None)
        return due

    def _put(self, uid: str, body: Mapping[str, Any]) -> None:
        key, claim = claim_of(body)
        self.owners.put(uid, key, claim)
        found = drift.entry(body)
        if found is None:
            self.groups.remove(uid)
        else:
            self.groups.put(uid, found[0], found[1])
