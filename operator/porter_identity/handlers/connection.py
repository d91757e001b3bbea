"""The watches behind connections: their own events, their ServiceAccounts' and the delete all only ask the runner
(engine/runner.py) for runs; nothing here decides or writes.

Connections are not kopf's: a watch of our own (kube/watch.py) hands each event to `connection_seen` on the event
loop, a few dict lookups for an event that needs no run. kopf's per-object worker, memory, change detection and
handler invocation cost more CPU per event than the whole decision (docs/performance.md). The runner adds this
shard's finalizer before it links anything and takes it off after the delete run (engine/runner.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import kopf

from porter_identity import GROUP, VERSION
from porter_identity.api.connection import PLURAL
from porter_identity.engine import revoke
from porter_identity.engine.door import Ask
from porter_identity.engine.index import Connections
from porter_identity.engine.runner import Runner
from porter_identity.handlers.shard import serves
from porter_identity.kube import rest
from porter_identity.kube.rest import Kube
from porter_identity.kube.watch import Watch
from porter_identity.reconcile import claims
from porter_identity.reconcile.outcome import Reason


def _paths(memo: kopf.Memo, group: str, version: str, plural: str) -> list[str]:
    return [rest.path(group, version, plural, ns) for ns in memo.namespaces] or [rest.path(group, version, plural)]


def _on_loop(loop: asyncio.AbstractEventLoop, stop: threading.Event, handle: Any, *args: Any) -> None:
    if stop.is_set() or loop.is_closed():
        return  # the operator is stopping: nothing is run any more
    loop.call_soon_threadsafe(handle, *args)


def watch_connections(memo: kopf.Memo, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> list[Watch]:
    """Start the watch of whole connections: each event reaches `connection_seen` on the loop. Its first list fills
    the index a page at a time: a page is handled before the next is read, so a restart over 10,000 connections
    never holds more than a page of bodies waiting for the loop."""
    kube: Kube = memo.kube

    def paced() -> None:
        if stop.is_set() or loop.is_closed():
            return
        # call_soon_threadsafe runs callbacks in order: this one ends after the page's own.
        with suppress(RuntimeError, TimeoutError):  # the loop closed meanwhile: nothing waits for the page
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=60)

    def deliver(type: str | None, body: Mapping[str, Any]) -> None:
        # Half a connection's JSON is metadata.managedFields, which nothing reads: an Ask keeps a body while it
        # waits, so the body kept is the smaller one.
        meta = body.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        _on_loop(loop, stop, connection_seen, memo, type, body)

    watches = [
        Watch(kube, path, deliver, stop, whole=True, paced=paced) for path in _paths(memo, GROUP, VERSION, PLURAL)
    ]
    for watch in watches:
        watch.start(f"watch {watch.path}")
    return watches


def connection_seen(memo: kopf.Memo, type: str | None, body: Mapping[str, Any]) -> None:
    """Created, resumed, its spec or pause changed, or deleted: ask for a run. Its own status writes ask for
    nothing. Every connection is indexed, in this shard or not (ownership spans shards); only this shard's run."""
    runner: Runner = memo.runner
    connections: Connections = memo.connections
    meta = body.get("metadata") or {}
    uid = str(meta.get("uid"))
    if type == "DELETED":
        connections.forget(uid)
        runner.forget(uid)
        return
    connections.update(body)
    if not serves(memo, str(meta.get("namespace") or "")):
        return
    finalized = memo.finalizer in (meta.get("finalizers") or [])
    if meta.get("deletionTimestamp"):
        if finalized:  # the finalizer comes off only when the delete run says the link is gone (or kept)
            runner.ask(
                uid,
                Ask(
                    str(meta.get("namespace") or ""), str(meta.get("name") or ""), "deleting", deleting=True, body=body
                ),
            )
        return
    runner.notice(body, finalized)


def watch_service_accounts(memo: kopf.Memo, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> list[Watch]:
    """Start the metadata-only watch of ServiceAccounts."""
    kube: Kube = memo.kube

    def deliver(type: str | None, meta: Mapping[str, Any]) -> None:
        _on_loop(loop, stop, service_account_seen, memo, type, meta)

    watches = [Watch(kube, path, deliver, stop) for path in _paths(memo, "", "v1", "serviceaccounts")]
    for watch in watches:
        watch.start(f"watch {watch.path}")
    return watches


def service_account_seen(memo: kopf.Memo, type: str | None, meta: Mapping[str, Any]) -> None:
    """The ServiceAccount is part of the link: a connection waiting for it runs when it appears, and one whose
    ServiceAccount was deleted, recreated or stripped of the annotations its link needs runs at once."""
    runner: Runner = memo.runner
    connections: Connections = memo.connections
    name, annotations = str(meta.get("name") or ""), meta.get("annotations") or {}
    owners = connections.owners
    ns = str(meta.get("namespace") or "")
    marked = revoke.marks_of(annotations) if type != "DELETED" else {}
    if marked:
        runner.retained_marks[(ns, name)] = marked
    else:
        runner.retained_marks.pop((ns, name), None)
    for provider in ("aws", "azure", "gcp"):
        for claim in list(owners.get((ns, name, provider), [])):
            waiting = claim.reason == Reason.SERVICE_ACCOUNT_NOT_FOUND and type != "DELETED"
            if type == "DELETED":
                why = f"ServiceAccount {ns}/{name} was deleted"
                wanted = bool(claim.needs)
            else:
                why = f"ServiceAccount {ns}/{name} lacks what its link needs"
                wanted = claims.unmet(claim.needs, annotations)
            if waiting:
                why = f"ServiceAccount {ns}/{name} appeared"
            if waiting or wanted:
                runner.ask(claim.uid, Ask(ns, claim.name, why))
