"""Prometheus metrics: reconciles (total by result, duration, in flight) and cloud API calls by outcome.

Labels carry kinds, providers, operations and reasons only: never a name, an ARN or a secret.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from google.api_core import exceptions as gexc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
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

_THROTTLING_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)


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


def _boto_after_call(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
    code = str((parsed or {}).get("Error", {}).get("Code", ""))
    CLOUD_CALLS.labels("aws", model.name, outcome_of(int(http_response.status_code), code)).inc()


def _boto_after_call_error(model: Any, **_: Any) -> None:
    CLOUD_CALLS.labels("aws", model.name, "server_error").inc()


def instrument_boto3(client: Any) -> Any:
    """Count every call of a boto3 client (its final answer, after botocore's own retries)."""
    client.meta.events.register("after-call", _boto_after_call)
    client.meta.events.register("after-call-error", _boto_after_call_error)
    return client


_ARM_TYPE = re.compile(r"/(userAssignedIdentities|federatedIdentityCredentials|roleAssignments)(/[^/?]+)?(?:\?|$)")


class ArmCallMetrics(SansIOHTTPPolicy[Any, Any]):
    """Counts every ARM attempt as `METHOD resourceType`, e.g. `PUT federatedIdentityCredentials`."""

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        found = _ARM_TYPE.search(request.http_request.url)
        kind = found.group(1) if found else "other"
        operation = f"{request.http_request.method} {kind}"
        CLOUD_CALLS.labels("azure", operation, outcome_of(response.http_response.status_code)).inc()


@contextmanager
def gcp_call(operation: str) -> Iterator[None]:
    """Counts one gRPC call; the outcome follows the error the client raised, if any."""
    try:
        yield
    except gexc.GoogleAPICallError as err:
        status = int(err.code or 0) if isinstance(err.code, int) else 0
        outcome = "throttled" if isinstance(err, gexc.TooManyRequests | gexc.ResourceExhausted) else outcome_of(status)
        CLOUD_CALLS.labels("gcp", operation, outcome if outcome != "success" else "client_error").inc()
        raise
    CLOUD_CALLS.labels("gcp", operation, "success").inc()
