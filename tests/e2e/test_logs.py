"""Structured logs: with --log-format json every line is one JSON object with stable keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from porter_dev.processes import Operator
from tests.conftest import wait_for
from tests.e2e.helpers import Connections

pytestmark = pytest.mark.e2e


def _lines(operator: Operator) -> list[dict[str, Any]]:
    return [json.loads(line) for line in operator.log().splitlines() if line.startswith("{")]


def test_outcome_lines_carry_resource_namespace_provider_reason(
    api: client.ApiClient, namespace: str, operator: Operator, make_role: Any
) -> None:
    conns = Connections(api, namespace)
    conns.create("logged", "logged", aws={"role": make_role()})
    conns.wait_ready("logged")

    def ours() -> list[dict[str, Any]]:
        return [r for r in _lines(operator) if r.get("namespace") == namespace and r.get("reason") == "Bound"]

    record = wait_for(ours, 10, what="a JSON log line for the connection")[0]
    assert record["resource"] == "ServiceIdentityConnection/logged"
    assert record["provider"] == "aws"
    assert record["severity"] == "info"
    assert "is bound to" in record["message"]


def test_every_line_is_json(operator: Operator) -> None:
    lines = [line for line in operator.log().splitlines() if line.strip()]
    assert lines, "the operator wrote nothing"
    not_json = [line for line in lines if not line.startswith("{")]
    # Python tracebacks of a crash would show here; a healthy run writes only JSON objects.
    assert not_json == []


def test_a_retried_delete_logs_our_warning_with_its_keys_and_no_kopf_error(
    api: client.ApiClient, namespace: str, operator: Operator, make_role: Any, aws: Any
) -> None:
    conns = Connections(api, namespace)
    role = make_role()
    conns.create("stuck", "stuck", aws={"role": role})
    conns.wait_ready("stuck")
    # A throttled delete is retried (finalizer kept): the expected outcome is our warning, never kopf's ERROR line.
    aws.faults(
        rules=[{"fault": "throttle", "service": "eks", "operation": "DeletePodIdentityAssociation", "rate": 1.0}]
    )
    try:
        conns.delete("stuck")

        def refused() -> list[dict[str, Any]]:
            return [r for r in _lines(operator) if r.get("namespace") == namespace and r.get("reason") == "Throttled"]

        record = wait_for(refused, 30, what="the throttled delete's warning")[0]
    finally:
        aws.faults(rules=[])
    assert record["severity"] == "warning"
    assert record["provider"] == "aws"
    assert record["resource"] == "ServiceIdentityConnection/stuck"
    ours = [r for r in _lines(operator) if r.get("namespace") == namespace]
    assert [r for r in ours if r.get("severity") == "error"] == []
    assert {r["severity"] for r in _lines(operator)} <= {"debug", "info", "warning", "error", "critical"}
    conns.wait_gone("stuck", timeout=60)
