"""Prometheus metrics: reconciles (total by result, duration, in flight) and cloud API calls by outcome.

Labels carry kinds, providers, operations and reasons only: never a name, an ARN or a secret.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

# `_created` series double every counter's and histogram's series count for a value nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
# process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ... as every Prometheus exporter has
ProcessCollector(registry=REGISTRY)
BUILD = Info("porter_identity_build", "The running operator's version.", registry=REGISTRY)
RECONCILE_TOTAL = Counter(
    "porter_identity_reconcile_total",
    "Reconciles by kind, provider and result (the Ready reason, or UpToDate when nothing was to do).",
    ["kind", "provider", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "porter_identity_reconcile_duration_seconds",
    "Time spent in one reconcile, cloud calls included.",
    ["kind", "provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "porter_identity_reconciles_in_flight",
    "Reconciles running now: the depth of the work being done.",
    ["kind"],
    registry=REGISTRY,
)
CLOUD_CALLS = Counter(
    "porter_identity_cloud_api_calls_total",
    "Cloud API calls by provider, operation and outcome (success, throttled, client_error, server_error).",
    ["provider", "operation", "outcome"],
    registry=REGISTRY,
)

ADMISSION_SECONDS = Histogram(
    "porter_identity_admission_seconds",
    "The webhook's own time per AdmissionReview, from its body parsed to its answer built; the API server's "
    "round trip (apiserver_admission_webhook_admission_duration_seconds) adds TLS, the network and its own work.",
    ["kind", "result"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
    registry=REGISTRY,
)
RATE_LIMIT_WAIT = Histogram(
    "porter_identity_cloud_rate_limit_wait_seconds",
    "Time a cloud call waited for the operator's own token bucket (settings: PORTER_RATE_LIMITS__*).",
    ["provider", "access"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30),
    registry=REGISTRY,
)

LEADER = Gauge(
    "porter_identity_leader",
    "1 while this replica holds the leader election Lease (and may write to clouds), else 0.",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "porter_identity_queue_depth",
    "Handler calls waiting for a free worker thread (PORTER_MAX_WORKERS): work queued, not yet started.",
    registry=REGISTRY,
)
DRIFT_SWEEPS = Counter(
    "porter_identity_drift_sweeps_total",
    "Drift sweeps finished, by outcome (completed, failed).",
    ["outcome"],
    registry=REGISTRY,
)
DRIFT_CORRECTED = Counter(
    "porter_identity_drift_corrected_total",
    "Connections whose cloud link a drift sweep found changed or deleted outside the operator and restored.",
    ["provider"],
    registry=REGISTRY,
)
ORPHANS = Gauge(
    "porter_identity_orphaned_links",
    "Cloud links tagged or named as the operator's whose connection no longer exists, at the last sweep.",
    ["provider"],
    registry=REGISTRY,
)
ORPHANS_DELETED = Counter(
    "porter_identity_orphaned_links_deleted_total",
    "Orphaned cloud links deleted by a drift sweep (PORTER_DELETE_ORPHANS=true).",
    ["provider"],
    registry=REGISTRY,
)

_THROTTLING_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}


def serve(port: int) -> None:
    BUILD.info({"version": metadata.version("porter-identity")})
    start_http_server(port, registry=REGISTRY)


def watch_queue(executor: ThreadPoolExecutor) -> None:
    # The executor's own queue is the one place where waiting work is visible; read at scrape time.
    QUEUE_DEPTH.set_function(lambda: executor._work_queue.qsize())


def outcome_of(status: int, code: str = "") -> str:
    if status == 429 or code in _THROTTLING_CODES:
        return "throttled"
    if status >= 500 or status == 0:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "success"


@contextmanager
def reconciling(kind: str, provider: str) -> Iterator[None]:
    IN_FLIGHT.labels(kind).inc()
    started = time.perf_counter()
    try:
        yield
    finally:
        RECONCILE_SECONDS.labels(kind, provider).observe(time.perf_counter() - started)
        IN_FLIGHT.labels(kind).dec()


def reconciled(kind: str, provider: str, result: str) -> None:
    RECONCILE_TOTAL.labels(kind, provider, result).inc()


def rate_limited(provider: str, access: str, waited: float) -> None:
    RATE_LIMIT_WAIT.labels(provider, access).observe(waited)


def _boto_after_call(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
    code = str((parsed or {}).get("Error", {}).get("Code", ""))
    CLOUD_CALLS.labels("aws", model.name, outcome_of(int(http_response.status_code), code)).inc()


def _boto_after_call_error(event_name: str, exception: Exception | None = None, **_: Any) -> None:
    """No answer at all (connection error, or a write the fence refused before it was sent): no model here."""
    from porter_identity.providers.fence import refusal

    if refusal(exception) is not None:
        return  # never sent: not a cloud call
    CLOUD_CALLS.labels("aws", event_name.rsplit(".", 1)[-1], "server_error").inc()


def instrument_boto3(client: Any) -> Any:
    """Count every call of a boto3 client (its final answer, after botocore's own retries)."""
    client.meta.events.register("after-call", _boto_after_call)
    client.meta.events.register("after-call-error", _boto_after_call_error)
    return client
