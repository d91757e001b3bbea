"""kopf handlers for ServiceIdentityConnection: they only ask the runner (engine/runner.py) for runs.

The watch events of connections, of their ServiceAccounts (a metadata-only watch of our own: kube/watch.py) and
the delete all reach the one door; nothing here decides or writes. kopf keeps the finalizer and waits for a
delete's run; it stores no progress or diffbase for connections (kube/diffbase.py), so the runner's status patch is
the only write a run makes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from porter_identity import GROUP, VERSION
from porter_identity.api.connection import PLURAL
from porter_identity.engine import revoke
from porter_identity.engine.door import Ask
from porter_identity.engine.index import Connections
from porter_identity.engine.runner import Runner
from porter_identity.handlers.shard import in_shard
from porter_identity.kube import rest
from porter_identity.kube.rest import Kube
from porter_identity.kube.watch import MetadataWatch
from porter_identity.reconcile import claims
from porter_identity.reconcile.outcome import Reason


@kopf.on.event(GROUP, VERSION, PLURAL)
async def connection_seen(type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Created, resumed, its spec or pause changed: ask for a run. Its own status writes ask for nothing.

    Every connection is indexed, in this shard or not (ownership spans shards); only this shard's are run."""
    runner: Runner | None = memo.get("runner")
    connections: Connections | None = memo.get("connections")
    if runner is None or connections is None:
        return
    if type == "DELETED":
        connections.forget(str(body.metadata.uid))
        runner.forget(str(body.metadata.uid))
        return
    connections.update(body)
    if not in_shard(memo=memo, **kwargs):
        return
    if body.metadata.get("deletionTimestamp"):
        return  # the delete handler asks for the delete run
    if memo.finalizer not in (body.metadata.get("finalizers") or []):
        return  # kopf adds the finalizer first (nothing is linked without it); that write's event comes back here
    runner.notice(body)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=in_shard)
async def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The finalizer comes off only when the runner's delete run says the link is gone (or kept by Retain)."""
    runner: Runner = memo.runner
    done = await runner.delete(body)
    if done.delay is not None:
        raise kopf.TemporaryError(done.message, delay=done.delay)


def watch_service_accounts(memo: kopf.Memo, loop: asyncio.AbstractEventLoop) -> threading.Event:
    """Start the metadata-only watch of ServiceAccounts (kube/watch.py); setting the returned event stops it."""
    stop = threading.Event()
    kube: Kube = memo.kube

    def deliver(type: str | None, meta: Mapping[str, Any]) -> None:
        if stop.is_set() or loop.is_closed():
            return  # the operator is stopping: nothing is run any more
        loop.call_soon_threadsafe(service_account_seen, memo, type, meta)

    paths = [rest.path("", "v1", "serviceaccounts", ns) for ns in memo.namespaces] or [
        rest.path("", "v1", "serviceaccounts")
    ]
    for path in paths:
        MetadataWatch(kube, path, deliver, stop).start(f"watch {path}")
    return stop


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
