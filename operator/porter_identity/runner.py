"""Configure kopf and run the operator in-process."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import kopf
import uvloop

from porter_identity import GROUP, VERSION, health, metrics
from porter_identity.api import policy
from porter_identity.api.common import KOPF_STATUS
from porter_identity.api.connection import PLURAL
from porter_identity.config import Settings
from porter_identity.handlers import admission, connection, drift, roleset  # noqa: F401 - registers the handlers
from porter_identity.handlers import namespaces as _namespaces
from porter_identity.handlers import shard as shard_filters
from porter_identity.health import Health
from porter_identity.iam.sync import RoleSetService
from porter_identity.kube import secrets
from porter_identity.kube.events import Events
from porter_identity.kube.serviceaccounts import ServiceAccounts
from porter_identity.links import registry
from porter_identity.links.lifecycle import Lifecycle
from porter_identity.providers import clients
from porter_identity.providers.iam import AssumedRoles
from porter_identity.reconcile import claims, guard, shard


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: Any,
    by_service_account: kopf.Index[connection.ClaimKey, claims.Claim] | None = None,
    allowed_identities: kopf.Index[str, str] | None = None,
    **_: Any,
) -> None:
    assert by_service_account is not None, "kopf passes every index to startup handlers too"
    config = Settings()
    # No file: deny unless a namespace annotation allows (docs/security.md). A broken file stops the operator.
    memo.policy = policy.load(config.policy_file) if config.policy_file else None
    _serve_webhook(settings, config, logger)
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    memo.settings = config
    memo.shard = shard.parse(config.shard_selector)
    memo.clouds = clients.build(config)
    # Never a target, whatever its name (docs/security.md): as configured and as the pod runs.
    memo.own_identities = guard.OwnIdentities.of(config, os.environ)
    kube = _kube_client(config.max_workers)
    memo.kube = kube
    memo.service_accounts = ServiceAccounts(kube)
    memo.lifecycle = Lifecycle(
        registry.build(config, memo.clouds, memo.service_accounts, memo.own_identities),
        config.block_broad_permissions,
    )
    # Runs outside a connection's handler (sweep, woken claimants) read ownership and policy from the same indexes.
    memo.by_service_account = by_service_account
    memo.allowed_identities = allowed_identities
    memo.events = Events(kube)
    memo.live_annotations = _namespaces.LiveAnnotations(kube)
    memo.roleset_service = RoleSetService(
        AssumedRoles(config.aws_max_attempts), partial(secrets.read_key, kube), config.aws_account_id
    )
    if config.health_port:
        memo.health = Health(config.health_stall_seconds, partial(_indexed, kube, memo.namespaces, by_service_account))
        memo.health.start_heartbeat()
        memo.health.serve(config.health_port)
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # The CRDs exist before the operator starts (the Helm chart installs them first): no need to watch
    # CustomResourceDefinitions, so the operator's RBAC does not grant it (charts/.../rbac.yaml).
    settings.scanning.disabled = True
    # kopf's bookkeeping lives in status.kopf, so it travels in the same status patch as our conditions:
    # annotations would cost a second write (metadata and the status subresource are patched separately).
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name=KOPF_STATUS)
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name=KOPF_STATUS)
    # Handlers post an Event for every state change themselves; kopf's own "Handler succeeded" log lines
    # would add one API write per connection. Only errors still become Events.
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


def _indexed(kube: Any, namespaces: list[str], index: kopf.Index[connection.ClaimKey, claims.Claim]) -> str | None:
    """Readiness: every connection the API server lists (from its watch cache) is in the in-memory index."""
    from kubernetes import client

    api = client.CustomObjectsApi(kube)
    pages: list[Any] = (
        [api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, resource_version="0") for ns in namespaces]
        if namespaces
        else [api.list_cluster_custom_object(GROUP, VERSION, PLURAL, resource_version="0")]
    )
    listed = [item for page in pages for item in page["items"]]
    indexed = [claim.uid for key in list(index) for claim in index.get(key, [])]
    return health.readiness(True, (str(item["metadata"]["uid"]) for item in listed), indexed)


def _serve_webhook(settings: kopf.OperatorSettings, config: Settings, logger: Any) -> None:
    if not config.webhook_port or not config.webhook_cert_dir:
        logger.warning("validating webhook off (PORTER_WEBHOOK_PORT=0 or no PORTER_WEBHOOK_CERT_DIR): CRD rules only")
        return
    certs = Path(config.webhook_cert_dir)
    settings.admission.server = kopf.WebhookServer(
        port=config.webhook_port, certfile=str(certs / "tls.crt"), pkeyfile=str(certs / "tls.key")
    )
    # The chart (or the test fixture) owns the ValidatingWebhookConfiguration: the operator may not write it.
    settings.admission.managed = None
    admission.register()


def _kube_client(pool_size: int) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    # One pooled connection per worker thread, or connections are dropped and re-handshaken under load.
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


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
    if Settings().shard_selector:
        shard_filters.register_index()
    # uvloop: kopf's reactor (watch streams, patches, Events) is most of the operator's CPU under load.
    kopf.run(
        loop=uvloop.new_event_loop(),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        # the drift sweep reports orphans only in the namespaces this operator serves
        memo=kopf.Memo(namespaces=namespaces),
    )
    return 0
