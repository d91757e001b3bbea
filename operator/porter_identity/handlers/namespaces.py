"""Namespaces, from a metadata-only watch of our own (kube/watch.py): their allow annotations and labels
(engine/namespaces.py), and a change to an allow annotation asks for a run of every connection in the namespace at
once (an admin's withdrawal acts now, not at the next sweep)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import kopf

from porter_identity.engine import revoke
from porter_identity.engine.namespaces import Namespaces
from porter_identity.engine.runner import Runner
from porter_identity.kube import rest
from porter_identity.kube.rest import Kube
from porter_identity.kube.watch import Watch
from porter_identity.reconcile.policy import ANNOTATION

log = logging.getLogger(__name__)


def watch_namespaces(memo: kopf.Memo, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> Watch:
    """Start the watch; its `listed` is set once every namespace is known (runs wait for it: a policy decision
    before it would refuse what an annotation allows)."""
    kube: Kube = memo.kube
    known: Namespaces = memo.namespaces_known

    def deliver(type: str | None, meta: Mapping[str, Any]) -> None:
        seen, before, after = known.update(type, meta)
        if stop.is_set() or loop.is_closed() or type == "DELETED":
            return
        if type is None and not watch.listed.is_set():
            # Start-up's listing only records the annotations: resuming connections are checked against the policy.
            # A list again after the watch expired (410) is what changed meanwhile: it asks as the events would have.
            return
        name = str(meta.get("name") or "")
        if not seen:
            # Created with its connections in one apply: one that ran before this event was decided without the
            # namespace's annotation (refused as not allowed), and runs again now.
            loop.call_soon_threadsafe(namespace_appeared, memo, name)
        elif before != after:
            loop.call_soon_threadsafe(allow_annotation_changed, memo, name)

    watch = Watch(kube, rest.path("", "v1", "namespaces"), deliver, stop)
    watch.start("watch namespaces")
    return watch


def namespace_appeared(memo: kopf.Memo, name: str) -> None:
    runner: Runner | None = memo.get("runner")
    if runner is not None:
        # Only what is not Ready yet: a connection already linked has nothing to gain from a run.
        runner.ask_namespace(name, f"namespace {name} appeared", look=False)


def allow_annotation_changed(memo: kopf.Memo, name: str) -> None:
    runner: Runner | None = memo.get("runner")
    if runner is None:
        return
    runner.ask_namespace(name, f"namespace {name}'s {ANNOTATION} changed")
    done = asyncio.get_running_loop().run_in_executor(
        runner.executor, revoke.revoke_retained, memo, runner.retained_marks, name
    )
    done.add_done_callback(lambda f: _revoked(f, name))


def _revoked(done: Future[Any] | asyncio.Future[Any], name: str) -> None:
    err = None if done.cancelled() else done.exception()
    if isinstance(err, rest.ApiError | OSError):  # the sweep looks again
        log.warning(f"could not check the retained links of namespace {name}: {err}")
    elif err is not None:
        log.error(f"checking the retained links of namespace {name} failed", exc_info=err)
