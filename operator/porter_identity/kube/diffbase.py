"""kopf's last-handled state of a PorterRoleSet: its spec and its reconcile-policy annotation, nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

from porter_identity.reconcile.reconcile_policy import ANNOTATION


class SpecDiffBase(kopf.StatusDiffBaseStorage):
    """status.kopf.last-handled-configuration holds the spec and the reconcile-policy annotation only (kopf runs
    PorterRoleSets; connections are the operator's own watch's, handlers/connection.py).

    By default kopf keeps every label and annotation there (GitOps tools add several, e.g. Argo CD's tracking
    id), and `kubectl describe` prints it all a second time; no handler reacts to anything but the spec and that
    annotation, so dropping the rest changes no decision."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        essence = cast(dict[str, Any], super().build(body=body, extra_fields=extra_fields))
        annotations = (essence.get("metadata") or {}).get("annotations") or {}
        kept: dict[str, Any] = {"spec": essence.get("spec") or {}}
        if ANNOTATION in annotations:
            kept["metadata"] = {"annotations": {ANNOTATION: annotations[ANNOTATION]}}
        return cast(kopf.BodyEssence, kept)
