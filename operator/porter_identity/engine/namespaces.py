"""What the operator knows of each namespace: its labels (which shard serves it) and its allow annotation (the
policy), kept from a metadata-only watch, read without an API call by admission, runs and the sweep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from porter_identity.reconcile.policy import ANNOTATION


class Namespaces:
    """Two maps shaped like kopf's indexes (`get(name, [])` gives a list of at most one value).

    Written by the watch's thread only; a reader's `get` is one dict lookup (atomic under the GIL)."""

    def __init__(self) -> None:
        self.allowed_identities: dict[str, list[str]] = {}
        self.labels: dict[str, list[dict[str, str]]] = {}

    def update(self, type: str | None, meta: Mapping[str, Any]) -> tuple[bool, str | None, str | None]:
        """One watch event; returns (seen before, the allow annotation before, after)."""
        name = str(meta.get("name") or "")
        seen = name in self.labels
        before = next(iter(self.allowed_identities.get(name, [])), None)
        if type == "DELETED":
            self.labels.pop(name, None)
            self.allowed_identities.pop(name, None)
            return seen, before, None
        self.labels[name] = [dict(meta.get("labels") or {})]
        value = (meta.get("annotations") or {}).get(ANNOTATION)
        if value is None:
            self.allowed_identities.pop(name, None)
        else:
            self.allowed_identities[name] = [str(value)]
        return seen, before, value
