"""Namespaces: the index of their allow annotations (policy checks make no API reads), and a change to one asks
for a run of every connection in the namespace at once (an admin's withdrawal acts now, not at the next sweep)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from porter_identity.engine import revoke
from porter_identity.engine.runner import Runner
from porter_identity.kube import rest
from porter_identity.reconcile.policy import ANNOTATION

_UNSEEN = object()
log = logging.getLogger(__name__)


@kopf.index("v1", "namespaces")
async def allowed_identities(name: str, annotations: kopf.Annotations, **_: Any) -> dict[str, str]:
    """Async on purpose, like the connection index: it runs on every namespace watch event."""
    value = annotations.get(ANNOTATION)
    return {name: value} if value is not None else {}


@kopf.on.event("v1", "namespaces")
async def allow_annotation_changed(
    type: str | None, name: str, annotations: kopf.Annotations, memo: kopf.Memo, **_: Any
) -> None:
    """The first sight of a namespace (start-up's listing) only records its annotation: resuming connections
    are checked against the policy anyway."""
    if type == "DELETED":
        return
    seen: dict[str, str | None] = memo.setdefault("allow_annotations", {})
    value = annotations.get(ANNOTATION)
    before = seen.get(name, _UNSEEN)
    seen[name] = value
    runner: Runner | None = memo.get("runner")
    if before is _UNSEEN or before == value or runner is None:
        return
    runner.ask_namespace(name, f"namespace {name}'s {ANNOTATION} changed")
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(runner.executor, revoke.revoke_retained, memo, runner.retained_marks, name)
    except (rest.ApiError, OSError) as err:  # the sweep looks again
        log.warning(f"could not check the retained links of namespace {name}: {err}")
