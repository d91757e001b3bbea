"""Sharding: serve only connections in namespaces this instance's selector matches, each shard with its finalizer."""

from __future__ import annotations

import hashlib
from typing import Any

import kopf

from porter_identity.engine.namespaces import Namespaces
from porter_identity.reconcile import shard


def finalizer(group: str, selector: str) -> str:
    """One finalizer per shard: a shard adds and removes only its own, so shard B never takes shard A's off A's
    objects (a delete meanwhile would skip A's cloud delete)."""
    if not selector:
        return f"{group}/finalizer"
    return f"{group}/finalizer-{hashlib.sha256(selector.encode()).hexdigest()[:12]}"


def serves(memo: kopf.Memo, namespace: str) -> bool:
    """Whether this instance serves the namespace, from the namespaces' labels the watch keeps."""
    requirements: tuple[shard.Requirement, ...] = memo.get("shard", ())
    if not requirements:
        return True
    known: Namespaces | None = memo.get("namespaces_known")
    found = known.labels.get(namespace, []) if known is not None else []
    return bool(found) and shard.matches(requirements, found[0])


def serves_rolesets(memo: kopf.Memo, **_: Any) -> bool:
    return bool(memo["settings"].rolesets)
