"""kopf's last-handled state: none for connections (the runner decides what changed), the spec for role sets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

from porter_identity.api.connection import KIND as CONNECTION
from porter_identity.reconcile.reconcile_policy import ANNOTATION

_NOTHING = cast(kopf.BodyEssence, {})


class SpecDiffBase(kopf.StatusDiffBaseStorage):
    """status.kopf.last-handled-configuration holds the spec and the reconcile-policy annotation only, and nothing
    for connections.

    Connections have no create or update handler: their watch events ask the runner for runs (engine/runner.py),
    so a stored diffbase would be one more write per connection that nothing reads. kopf is shown the same empty
    essence before and after every event: with no difference its cause is a no-op, and it does none of the
    per-event work (and none of the debug formatting of the whole body) it does for a creation or an update.

    For the other kinds kopf keeps
    every label and annotation there by default (GitOps tools add several, e.g. Argo CD's tracking id), and
    `kubectl describe` prints it all a second time; no handler reacts to anything but the spec and that
    annotation, so dropping the rest changes no decision."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        if body.get("kind") == CONNECTION:
            return _NOTHING  # kopf sees no change (a NOOP cause): no per-event work, the finalizer still kept
        essence = cast(dict[str, Any], super().build(body=body, extra_fields=extra_fields))
        annotations = (essence.get("metadata") or {}).get("annotations") or {}
        kept: dict[str, Any] = {"spec": essence.get("spec") or {}}
        if ANNOTATION in annotations:
            kept["metadata"] = {"annotations": {ANNOTATION: annotations[ANNOTATION]}}
        return cast(kopf.BodyEssence, kept)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        if body.get("kind") == CONNECTION:
            return _NOTHING
        return super().fetch(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        if body.get("kind") == CONNECTION:
            return
        super().store(body=body, patch=patch, essence=essence)
