"""kopf's last-handled state, cut down to what a handler reacts to, so `kubectl describe` stays short."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

from porter_identity.reconcile.reconcile_policy import ANNOTATION


class SpecDiffBase(kopf.StatusDiffBaseStorage):
    """status.kopf.last-handled-configuration holds the spec and the reconcile-policy annotation only.

    kopf keeps every label and annotation there by default (GitOps tools add several, e.g. Argo CD's tracking id),
    and `kubectl describe` prints it all a second time. No handler reacts to anything else: updates are
    `field="spec"` or that annotation (handlers/connection.py), so dropping the rest changes no decision."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        essence = cast(dict[str, Any], super().build(body=body, extra_fields=extra_fields))
        annotations = (essence.get("metadata") or {}).get("annotations") or {}
        kept: dict[str, Any] = {"spec": essence.get("spec") or {}}
        if ANNOTATION in annotations:
            kept["metadata"] = {"annotations": {ANNOTATION: annotations[ANNOTATION]}}
        return cast(kopf.BodyEssence, kept)
