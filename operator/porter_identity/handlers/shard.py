"""kopf filters for sharding: serve only connections in namespaces this instance's selector matches."""

from __future__ import annotations

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


def serves_rolesets(memo: kopf.Memo, **_: Any) -> bool:
    return bool(memo["settings"].rolesets)
