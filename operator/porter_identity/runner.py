"""Configure kopf and run the operator in-process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import kopf
import uvloop

from porter_identity import GROUP, VERSION, health, metrics, webhook
from porter_identity.api import policy
from porter_identity.api.common import KOPF_STATUS
from porter_identity.api.connection import PLURAL
from porter_identity.clouds import registry
from porter_identity.config import Settings
from porter_identity.engine import allow
from porter_identity.engine.index import Connections
from porter_identity.engine.lifecycle import Lifecycle
from porter_identity.engine.namespaces import Namespaces
from porter_identity.engine.runner import Runner
from porter_identity.handlers import connection, drift, roleset  # noqa: F401 - registers the handlers
from porter_identity.handlers import namespaces as _namespaces
from porter_identity.handlers import shard as shard_filters
from porter_identity.health import Health
from porter_identity.iam.sync import RoleSetService
from porter_identity.kube import rest, secrets
from porter_identity.kube.diffbase import SpecDiffBase
from porter_identity.kube.events import Events
from porter_identity.kube.lease import Leases
from porter_identity.kube.rest import Kube
from porter_identity.kube.serviceaccounts import ServiceAccounts
from porter_identity.kube.watch import Watch
from porter_identity.leader import Elector
from porter_identity.providers import clients
from porter_identity.providers.fence import FENCE
from porter_identity.providers.iam import AssumedRoles
from porter_identity.reconcile import guard, shard


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf logs in as the operator's own client does (also in a pod without cluster DNS); again after a 401."""
    return rest.login()


def services(memo: kopf.Memo, config: Settings) -> None:
    """What admission and reconcile share, built before kopf starts: a standby serves admission from it too."""
    # No file: deny unless a namespace annotation allows (docs/security.md). A broken file stops the operator.
    memo.policy = policy.load(config.policy_file) if config.policy_file else None
    memo.settings = config
    memo.shard = shard.parse(config.shard_selector)
    memo.finalizer = shard_filters.finalizer(GROUP, config.shard_selector)  # admission adds it at create
    memo.clouds = clients.build(config)
    # Never a target, whatever its name (docs/security.md): as configured and as the pod runs.
    memo.own_identities = guard.OwnIdentities.of(config, os.environ)
    # One pooled connection per worker thread, plus one held by each watch (namespaces, and ServiceAccounts and
    # connections in each namespace served) and a few for admission's reads and the probes; a full pool drops
    # connections under load, and each new one is a TLS handshake.
    watches = 1 + 2 * max(1, len(memo.namespaces))
    kube = Kube.from_environment(config.max_workers + watches + 4)
    memo.kube = kube
    memo.service_accounts = ServiceAccounts(kube)
    memo.connections = Connections()
    memo.lifecycle = Lifecycle(
        registry.build(config, memo.clouds, memo.service_accounts, memo.own_identities),
        config.block_broad_permissions,
    )
    memo.events = Events(kube)
    memo.live_annotations = allow.LiveAnnotations(kube)
    memo.roleset_service = RoleSetService(
        AssumedRoles(config.aws_max_attempts), partial(secrets.read_key, secrets.reader(kube)), config.aws_account_id
    )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf's own settings (it runs PorterRoleSets); then the operator's own watches, in order: every namespace
    known (the policy reads their annotations); every connection listed and indexed, its asks kept; the
    ServiceAccounts (their events find every claim); then the runner runs."""
    config: Settings = memo.settings
    settings.persistence.finalizer = memo.finalizer
    memo.kopf_settings = settings  # the runner logs through kopf's per-object logger
    # The CRDs exist before the operator starts (the Helm chart installs them first): no need to watch
    # CustomResourceDefinitions, so the operator's RBAC does not grant it (charts/.../rbac.yaml).
    settings.scanning.disabled = True
    # kopf's bookkeeping lives in status.kopf, so it travels in the same status patch as our conditions:
    # annotations would cost a second write (metadata and the status subresource are patched separately).
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name=KOPF_STATUS)
    settings.persistence.diffbase_storage = SpecDiffBase(name=KOPF_STATUS)
    # Handlers post an Event for every state change themselves; kopf's own "Handler succeeded" log lines
    # would add one API write per object. Only errors still become Events.
    settings.posting.level = logging.ERROR
    settings.execution.max_workers = config.max_workers
    if isinstance(settings.execution.executor, ThreadPoolExecutor):
        metrics.watch_queue(settings.execution.executor)
    # A watch that stays silent longer than this is re-established, so a dead connection cannot hang us.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # A PorterRoleSet deleted while its drift timer runs waits for that run (a thread cannot be cancelled);
    # look again every second instead of kopf's default minute.
    settings.background.cancellation_polling = 1
    settings.background.instant_exit_timeout = 5

    loop = asyncio.get_running_loop()
    memo.watching = stop = threading.Event()
    memo.namespaces_known = Namespaces()
    if not await _listed([_namespaces.watch_namespaces(memo, loop, stop)], stop):
        return
    memo.allowed_identities = memo.namespaces_known.allowed_identities
    # The one runner of connections, on kopf's worker threads: at most max_workers connections run at once.
    memo.runner = runner = Runner(memo, settings.execution.executor, config.max_workers)
    runner.door.bind()
    connections: Connections = memo.connections
    if not await _listed(connection.watch_connections(memo, loop, stop), stop):
        return
    connections.listed = True
    logging.getLogger(__name__).info(f"indexed {len(connections.owners.uids())} connections")
    if not await _listed(connection.watch_service_accounts(memo, loop, stop), stop):
        return
    runner.door.start()


async def _listed(watches: list[Watch], stop: threading.Event) -> bool:
    """Whether each watch has delivered its first list (False: the operator stops first)."""
    for watch in watches:
        while not await asyncio.to_thread(watch.listed.wait, 1.0):
            if stop.is_set():
                return False
    return True


@kopf.on.cleanup()
async def stop_runner(memo: kopf.Memo, **_: Any) -> None:
    """The watches stop; runs in flight finish on their threads; nothing waiting is started."""
    watching: threading.Event | None = memo.get("watching")
    if watching is not None:
        watching.set()
    runner: Runner | None = memo.get("runner")
    if runner is not None:
        await runner.door.stop()


# Metadata only: at 10,000 connections the full objects are tens of MB to send and parse, the uids a fraction.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def _listed_uids(kube: Kube, namespaces: list[str]) -> list[str]:
    """The uid of every connection, from the API server's watch cache (resourceVersion=0)."""
    paths = [rest.path(GROUP, VERSION, PLURAL, ns) for ns in namespaces] or [rest.path(GROUP, VERSION, PLURAL)]
    uids: list[str] = []
    for path in paths:
        listed = kube.get(path, query={"resourceVersion": "0"}, accept=METADATA_ONLY)
        # An empty PartialObjectMetadataList has "items": null.
        uids += [str(item["metadata"]["uid"]) for item in listed["items"] or []]
    return uids


def _indexed(kube: Kube, namespaces: list[str], connections: Connections) -> str | None:
    """Readiness: every connection the API server lists is in the in-memory index."""
    return health.readiness(True, _listed_uids(kube, namespaces), connections.owners.uids())


class _QuietSuccess(logging.Filter):
    """Drop kopf's per-object success lines: handlers log their own outcome, once, with the reason."""

    _PREFIXES = ("Handler '", "Creation is processed", "Updating is processed", "Resuming is processed", "Timer '")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not str(record.msg).startswith(self._PREFIXES)


class _ExpectedRetries(logging.Filter):
    """Drop kopf's ERROR line for a TemporaryError: every one we raise is an expected outcome (Reconciling, or a
    delete that waits) that the handler has already logged once, with its reason and provider."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.ERROR and "failed temporarily: " in str(record.msg))


class _ObjectKeys(logging.Filter):
    """Stable top-level keys for JSON logs: `severity` with Python's level names (`warning`, not kopf's `warn`),
    `resource` (kind/name) and `namespace` of the object logged about."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.severity = record.levelname.lower()
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            record.resource = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            record.namespace = ref.get("namespace") or ""
        return True


def _configure_logging(log_format: str) -> None:
    if log_format == "json":
        # kopf's JSON formatter writes every `extra` (reason, provider) as a key of its own.
        kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="object")
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ObjectKeys())
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").addFilter(_QuietSuccess())
    # A logger's filters run before its handlers, kopf's Event poster included: no kopf Event for these either.
    logging.getLogger("kopf.objects").addFilter(_ExpectedRetries())
    # azure-core logs every request and response with headers at INFO; botocore logs endpoint discovery.
    for noisy in ("azure", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(namespaces: list[str], log_format: str = "text") -> int:
    _configure_logging(log_format)
    config = Settings()
    # uvloop: kopf's reactor (watch streams, patches, Events) is most of the operator's CPU under load.
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_main(config, namespaces))
    finally:
        loop.close()


async def _main(config: Settings, namespaces: list[str]) -> int:
    # the drift sweep reports orphans only in the namespaces this operator serves
    memo = kopf.Memo(namespaces=namespaces)
    services(memo, config)
    election = config.leader_election
    memo.leading = not election.enabled
    if election.enabled:
        FENCE.close()  # a standby writes nothing, whatever a stray thread tries
    await _serve(memo, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        if memo.get("webhook") is not None:
            webhook.drain(memo.webhook.app)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    operator = partial(
        kopf.operator, standalone=True, clusterwide=not namespaces, namespaces=namespaces, memo=memo, stop_flag=stop
    )
    if not election.enabled:
        await operator()
        return 0
    elector = Elector(_leases(memo, config), _identity(), election, FENCE)
    if not await _first(elector.acquire(), stop.wait()):
        return 0
    memo.leading = True
    started = asyncio.Event()
    reconciling = asyncio.create_task(operator(ready_flag=started))
    await _first(started.wait(), _finished(reconciling))

    holding = asyncio.create_task(elector.hold())
    memo.after_takeover = asyncio.create_task(drift.after_takeover(memo, election.lease_duration_seconds))

    def handover() -> None:
        """SIGTERM (a rolling update, a drain): writes stop and the Lease is released at once, so a standby takes
        over at its next try; kopf then winds down with every cloud write refused."""
        FENCE.close()
        holding.cancel()
        memo.releasing = asyncio.ensure_future(elector.release())
        stopping()

    for signum in (signal.SIGTERM, signal.SIGINT):  # after kopf's own, which it installs as it starts
        loop.add_signal_handler(signum, handover)
    await asyncio.wait({reconciling, holding}, return_when=asyncio.FIRST_COMPLETED)
    if (
        holding.done() and not holding.cancelled()
    ):  # lost: the fence is closed; let kopf stop, then exit for a fresh start as a standby
        stop.set()
        await asyncio.wait({reconciling}, timeout=election.renew_deadline_seconds)
        return 1
    holding.cancel()
    await elector.release()
    await asyncio.wait({reconciling})
    return 0 if reconciling.exception() is None else 1


async def _first(wanted: Coroutine[Any, Any, Any], stopped: Coroutine[Any, Any, Any]) -> bool:
    """Whether `wanted` finished before `stopped`; the other is cancelled."""
    tasks = [asyncio.create_task(wanted), asyncio.create_task(stopped)]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    return tasks[0].done() and not tasks[0].cancelled()


async def _finished(task: asyncio.Task[Any]) -> bool:
    await asyncio.wait({task})
    return True


async def _serve(memo: kopf.Memo, config: Settings) -> None:
    """Admission, health and metrics on every replica, leader or standby."""
    if config.webhook_port and config.webhook_cert_dir:
        memo.webhook = await webhook.serve(memo, config.webhook_port, Path(config.webhook_cert_dir))
    else:
        logging.getLogger(__name__).warning(
            "validating webhook off (PORTER_WEBHOOK_PORT=0 or no PORTER_WEBHOOK_CERT_DIR): CRD rules only"
        )
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    if config.health_port:
        memo.health = Health(config.health_stall_seconds, partial(_ready, memo))
        memo.health.start_heartbeat()
        memo.health.serve(config.health_port)


def _ready(memo: kopf.Memo) -> str | None:
    """A standby is ready once its webhook serves (before this is asked); the leader once every connection is
    indexed. Readiness latches (health.Health), so a standby that becomes leader stays in the webhook's Service."""
    if not memo.leading:
        return None
    connections: Connections = memo.connections
    if not connections.listed:
        return "starting: the connections are not indexed yet"
    return _indexed(memo.kube, memo.namespaces, connections)


def _leases(memo: kopf.Memo, config: Settings) -> Leases:
    election = config.leader_election
    namespace = election.lease_namespace or config.operator_namespace
    if not namespace:
        raise SystemExit("leader election needs PORTER_LEADER_ELECTION__LEASE_NAMESPACE or PORTER_OPERATOR_NAMESPACE")
    return Leases(memo.kube, namespace, election.lease_name, timeout=election.renew_deadline_seconds / 2)


def _identity() -> str:
    """Unique per process, readable in `kubectl get lease`: the pod's name (its hostname) and a random suffix."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
