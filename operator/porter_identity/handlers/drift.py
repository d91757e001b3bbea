"""The drift sweep: a background task that reads cloud links in bulk and repairs what was changed outside.

kopf has no cluster-wide timer, so the sweep is an asyncio task started at start-up and cancelled at cleanup.
It reads the connections from the operator's index (engine/index.py, no API list), the cloud with one paged list
per EKS cluster or Azure identity and one policy per GCP service account, and runs a connection's own reconcile only
where reconcile/drift.py found something wrong: an idle sweep writes nothing, to the cloud or to Kubernetes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import threading
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import kopf

from porter_identity import GROUP, VERSION, metrics
from porter_identity.api.connection import PLURAL, Provider
from porter_identity.clouds.base import Link
from porter_identity.config import Settings
from porter_identity.engine import allow, revoke
from porter_identity.engine.door import Ask
from porter_identity.engine.index import ClaimKey, Connections
from porter_identity.engine.lifecycle import Lifecycle
from porter_identity.engine.runner import Runner
from porter_identity.errors import CloudError
from porter_identity.handlers import shard
from porter_identity.kube import rest
from porter_identity.kube.events import post_on_service_account
from porter_identity.kube.rest import Kube
from porter_identity.reconcile import claims, drift
from porter_identity.reconcile.claims import Claim
from porter_identity.reconcile.drift import Drift, Findings, Group, Linked, Orphan
from porter_identity.reconcile.outcome import Action

ORPHANED_LINK = Action.ORPHANED_LINK
ORPHAN_DELETED = Action.ORPHAN_DELETED
log = logging.getLogger(__name__)


@dataclass
class Sweeper:
    """State kept between sweeps: orphans already reported (each cloud's Link keeps its own read state)."""

    memo: kopf.Memo
    stop: threading.Event
    reported: set[str] = field(default_factory=set)

    @property
    def settings(self) -> Settings:
        settings: Settings = self.memo.settings
        return settings

    def sweep(self, view: dict[Group, list[Linked]], owners: dict[ClaimKey, list[Claim]] | None = None) -> None:
        began = time.monotonic()
        for key, claim in claims.double_bound(owners or {}):
            # two connections applied together both linked before either saw the other: the newer yields
            self.runner.ask(claim.uid, Ask(key[0], claim.name, f"{key[0]}/{key[1]} is linked twice"))
        found: list[tuple[Group, Findings, float]] = []
        for group, linked in sorted(view.items()):
            if self.stop.is_set():
                return
            read_began = time.monotonic()
            try:
                findings = self._read(group, linked)
            except CloudError as err:
                log.warning(
                    f"drift sweep could not read {'/'.join(group)}: {err.message}", extra={"provider": group[0]}
                )
                continue
            if findings is not None:
                found.append((group, findings, read_began))
        for group, item in self._revoked(view):
            self._repair(group, item)
        revoke.revoke_retained(self.memo, self.runner.retained_marks)
        orphans: Counter[str] = Counter()
        namespaces: dict[str, list[tuple[Group, Linked]]] = {}
        for group, findings, read_began in found:
            for item in findings.drifts:
                if self.stop.is_set():
                    return
                self._repair(group, item, read_began)
            for orphan in findings.orphans:
                try:
                    if self._confirmed(group, orphan, namespaces):
                        orphans[orphan.provider] += 1
                        self._orphan(orphan)
                except (rest.ApiError, CloudError) as err:
                    log.warning(
                        f"drift sweep could not handle orphan {orphan.link}: {err}", extra={"provider": orphan.provider}
                    )
        for provider in ("aws", "azure"):
            metrics.ORPHANS.labels(provider).set(orphans[provider])
        checked = sum(len(linked) for linked in view.values())
        drifted = sum(len(f.drifts) for _, f, _ in found)
        log.info(
            f"drift sweep: {checked} connections, {len(view)} bulk reads, {drifted} to repair, "
            f"{sum(orphans.values())} orphans, {time.monotonic() - began:.1f} s"
        )

    def _read(self, group: Group, linked: list[Linked]) -> Findings | None:
        """One bulk read of the cloud for `group`, and what it shows; None when the provider is not configured."""
        link = self._link(group[0])
        return None if link is None else link.survey(group, linked)

    def _link(self, provider: str) -> Link | None:
        lifecycle: Lifecycle = self.memo.lifecycle
        return lifecycle.registry.get(Provider(provider))

    @property
    def runner(self) -> Runner:
        runner: Runner = self.memo.runner
        return runner

    def _repair(self, group: Group, item: Drift, observed: float | None = None) -> None:
        """Ask for a run of the connection (a repair that changes something is a DriftCorrected Warning). `observed`:
        when the read that found it began; a connection whose run wrote status since is not run again for it (under
        a flaky cloud that rerun could fail and turn a Ready connection Reconciling for nothing)."""
        c = item.connection
        self.runner.ask(c.uid, Ask(c.namespace, c.name, item.message, drifted=item.corrects, observed=observed))

    def _revoked(self, view: dict[Group, list[Linked]]) -> list[tuple[Group, Drift]]:
        """Connections whose identity the policy no longer allows (a withdrawn rule or annotation), whether linked
        or not as status says (a paused one is run too: the policy decides last): their run removes the link."""
        out = []
        for group, linked in view.items():
            for c in linked:
                spec = c.parsed_spec() if c.ready or c.paused else None
                if spec is not None:
                    decision = allow.check(self.memo, self.memo.allowed_identities, spec, c.namespace)
                    if not decision.allowed:
                        out.append((group, Drift(c, "the policy no longer allows this link", corrects=False)))
        return out

    def _confirmed(self, group: Group, orphan: Orphan, cache: dict[str, list[tuple[Group, Linked]]]) -> bool:
        """An orphan in a served namespace that no connection on the API server claims (the index may lag,
        e.g. just after start-up): one list of the namespace's connections per sweep, only when there is one."""
        served: list[str] = self.memo.get("namespaces") or []
        if not shard.serves(self.memo, orphan.namespace):
            return False
        if served and not any(fnmatch.fnmatchcase(orphan.namespace, pattern) for pattern in served):
            return False
        if orphan.namespace not in cache:
            kube: Kube = self.memo.kube
            listed: Any = kube.get(rest.path(GROUP, VERSION, PLURAL, orphan.namespace))
            cache[orphan.namespace] = [e for e in map(drift.entry, listed["items"]) if e is not None]
        return not drift.still_claimed(orphan, group, cache[orphan.namespace])

    def _orphan(self, orphan: Orphan) -> None:
        what = "EKS Pod Identity association" if orphan.provider == "aws" else "federated identity credential"
        subject = f"{what} {orphan.link} on {orphan.where} for {orphan.namespace}/{orphan.service_account}"
        key = f"{orphan.provider}/{orphan.where}/{orphan.link}"
        extra = {"provider": orphan.provider}
        if self._retained(orphan):
            return  # a Retain delete left it: never ours to delete, nor an orphan to report
        link = self._link(orphan.provider)
        if self.settings.delete_orphans and link is not None:
            link.delete_orphan(orphan)
            metrics.ORPHANS_DELETED.labels(orphan.provider).inc()
            message = f"deleted {subject}: no connection claims it (PORTER_DELETE_ORPHANS=true)"
            log.info(message, extra={**extra, "reason": ORPHAN_DELETED})
            post_on_service_account(
                self.memo.kube,
                self.memo.events,
                orphan.namespace,
                orphan.service_account,
                "Normal",
                ORPHAN_DELETED,
                message,
            )
            return
        if key in self.reported:
            return  # the gauge keeps counting it; one log line and one Event per orphan and operator run
        self.reported.add(key)
        message = f"{subject} is tagged as porter-identity's but no connection claims it; left in place"
        log.warning(message, extra={**extra, "reason": ORPHANED_LINK})
        post_on_service_account(
            self.memo.kube,
            self.memo.events,
            orphan.namespace,
            orphan.service_account,
            "Warning",
            ORPHANED_LINK,
            message,
        )

    def _retained(self, orphan: Orphan) -> bool:
        link = self._link(orphan.provider)
        return link is not None and link.retained_orphan(orphan)


async def _loop(memo: kopf.Memo, connections: Connections, interval: float, stop: threading.Event) -> None:
    sweeper = Sweeper(memo, stop)
    while True:
        await asyncio.sleep(interval)
        if not connections.listed:
            continue  # a sweep over half an index would take the rest's links for orphans
        # Only this shard's connections: another shard repairs its own. Copied on the event loop, the index's writer.
        view = {
            g: [c for c in cs if shard.serves(memo, c.namespace)] for g, cs in connections.groups.snapshot().items()
        }
        owners = connections.owners.snapshot()
        lifecycle: Lifecycle = memo.lifecycle
        if lifecycle.registry.get(Provider.AWS) is not None:
            view.setdefault(("aws",), [])  # orphans are found even when no AWS connection is left
        try:
            await asyncio.to_thread(sweeper.sweep, view, owners)
        except Exception:  # the next sweep tries again; the operator itself must keep running
            log.exception("drift sweep failed")
            metrics.DRIFT_SWEEPS.labels("failed").inc()
        else:
            metrics.DRIFT_SWEEPS.labels("completed").inc()


async def after_takeover(memo: kopf.Memo, delay: float) -> None:
    """Once a lease duration after winning the Lease, every connection not settled is run once more.

    The old leader may have written to an object in its last moments (a frozen one wakes up and patches before it
    sees it lost), and a run here that saw the object before that write may have ended on it. controller-runtime's
    resync covers such lost events; our watches have none, so this does, once, when the old leader can no longer
    write."""
    await asyncio.sleep(delay)
    connections: Connections = memo.connections
    waiting = [
        c
        for cs in connections.groups.snapshot().values()
        for c in cs
        if not c.settled and shard.serves(memo, c.namespace)
    ]
    runner: Runner = memo.runner
    for c in waiting:
        runner.ask(c.uid, Ask(c.namespace, c.name, "not settled after a takeover"))
    if waiting:
        log.info(f"after takeover: {len(waiting)} connections not settled were run again")


@kopf.on.startup()
async def start_sweep(memo: kopf.Memo, **kwargs: Any) -> None:
    """The sweep reads the connections' index, kept by the operator's watch of connections."""
    memo.drift_stop = threading.Event()
    memo.drift_task = asyncio.create_task(
        _loop(memo, memo.connections, Settings().drift_sweep_seconds, memo.drift_stop), name="drift sweep"
    )


@kopf.on.cleanup()
async def stop_sweep(memo: kopf.Memo, **_: Any) -> None:
    """A sweep's thread cannot be cancelled: the flag makes it stop between two cloud calls."""
    memo.drift_stop.set()
    task: asyncio.Task[None] = memo.drift_task
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
