"""kopf filters for sharding: serve only connections in namespaces this instance's selector matches."""

from __future__ import annotations

import hashlib
from typing import Any

import kopf

from porter_identity.reconcile import shard

INDEX = "namespace_labels"


async def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    """Index of namespace labels, registered only when a shard selector is set (it needs to watch namespaces)."""
    return {name: dict(labels)}


def register_index() -> None:
    kopf.index("", "v1", "namespaces", id=INDEX)(namespace_labels)


def in_shard(namespace: str | None, memo: kopf.Memo, **kwargs: Any) -> bool:
    requirements: tuple[shard.Requirement, ...] = memo.get("shard", ())
    if not requirements:
        return True
    index: kopf.Index[str, dict[str, str]] | None = kwargs.get(INDEX)
    found = list(index.get(namespace or "", [])) if index is not None else []
    return bool(found) and shard.matches(requirements, found[0])


def finalizer(group: str, selector: str) -> str:
    """One finalizer per shard: kopf adds and removes a finalizer by `when`, so with a shared name shard B would
    take shard A's off A's objects (and a delete meanwhile would skip A's cloud delete)."""
    if not selector:
        return f"{group}/finalizer"
    return f"{group}/finalizer-{hashlib.sha256(selector.encode()).hexdigest()[:12]}"


def serves(memo: kopf.Memo, namespace: str) -> bool:
    """`in_shard` outside a handler (the drift sweep), with the namespace label index the startup kept."""
    return in_shard(namespace, memo, **{INDEX: memo.get("namespace_labels")})


def serves_rolesets(memo: kopf.Memo, **_: Any) -> bool:
    return bool(memo["settings"].rolesets)
