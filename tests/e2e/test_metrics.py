"""The operator's Prometheus endpoint, scraped during a real run: reconciles and cloud calls, and no secrets."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from porter_dev.processes import AwsEmulator, Operator
from tests.e2e.helpers import Connections, scrape, value

pytestmark = pytest.mark.e2e


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def test_reconciles_and_cloud_calls_are_counted(conns: Connections, operator: Operator, make_role: Any) -> None:
    before = scrape(operator)
    conns.create("counted", "counted", aws={"role": make_role()})
    conns.wait_ready("counted")
    after = scrape(operator)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    kind = {"kind": "serviceidentityconnection", "provider": "aws"}
    assert grew("porter_identity_reconcile_total", result="Bound", **kind) >= 1
    assert grew("porter_identity_reconcile_duration_seconds_count", **kind) >= 1
    assert grew("porter_identity_cloud_api_calls_total", provider="aws", operation="GetRole", outcome="success") >= 1
    created = {"provider": "aws", "operation": "CreatePodIdentityAssociation", "outcome": "success"}
    assert grew("porter_identity_cloud_api_calls_total", **created) == 1
    assert ("porter_identity_queue_depth", ()) in after, "the operator wires kopf's executor queue to the gauge"
    # AWS is paced adaptively by botocore (no published quota): no client-side bucket, so no bucket wait
    waits = "porter_identity_cloud_rate_limit_wait_seconds_count"
    assert grew(waits, provider="aws", access="read") == 0
    assert grew(waits, provider="aws", access="write") == 0
    assert value(after, "porter_identity_reconciles_in_flight", kind="serviceidentityconnection") == 0


def test_throttled_calls_are_counted_as_throttled(
    conns: Connections, operator: Operator, aws: AwsEmulator, make_role: Any
) -> None:
    labels = {"provider": "aws", "operation": "CreatePodIdentityAssociation", "outcome": "throttled"}
    before = value(scrape(operator), "porter_identity_cloud_api_calls_total", **labels)
    aws.faults(rules=[{"fault": "throttle", "service": "eks", "operation": "CreatePodIdentityAssociation", "count": 3}])
    try:
        conns.create("busy", "busy", aws={"role": make_role()})
        conns.wait_ready("busy", timeout=60)
    finally:
        aws.faults(rules=[])
    # botocore's 3 attempts all throttled: one throttled answer reaches the operator, which backs off.
    assert value(scrape(operator), "porter_identity_cloud_api_calls_total", **labels) - before == 1


def test_the_webhooks_own_time_is_counted_by_kind_and_result(conns: Connections, operator: Operator) -> None:
    """Measured inside the handler, apart from the API server's round trip."""
    own = "porter_identity_admission_seconds_count"
    labels = {"kind": "serviceidentityconnection"}
    before = scrape(operator)
    conns.create("admitted", "admitted", aws={"role": "whatever"})
    with pytest.raises(client.ApiException) as refused:
        conns.create("foreign", "foreign", aws={"role": "arn:aws:iam::999999999999:role/x"})
    assert refused.value.status == 403  # the webhook's refusal, counted as denied
    after = scrape(operator)
    assert value(after, own, result="allowed", **labels) - value(before, own, result="allowed", **labels) >= 1
    assert value(after, own, result="denied", **labels) - value(before, own, result="denied", **labels) == 1
    spent = value(after, "porter_identity_admission_seconds_sum", result="denied", **labels) - value(
        before, "porter_identity_admission_seconds_sum", result="denied", **labels
    )
    assert 0 < spent < 5


def test_labels_name_no_object_and_no_secret(operator: Operator) -> None:
    for name, labels in scrape(operator):
        if not name.startswith("porter_identity_"):
            continue
        keys = {k for k, _ in labels}
        assert keys <= {"kind", "provider", "result", "operation", "outcome", "access", "le", "version"}, (name, labels)


def test_build_info_and_process_metrics_and_no_created_series(operator: Operator) -> None:
    from importlib import metadata

    samples = scrape(operator)
    assert value(samples, "porter_identity_build_info", version=metadata.version("porter-identity")) == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_cpu_seconds_total") > 0
    assert [name for name, _ in samples if name.endswith("_created")] == []
