"""GitOps health: docs/argocd/health.lua, run by a real Lua runtime on objects the operator wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from lupa import LuaRuntime

from porter_dev.processes import AwsEmulator, Operator
from tests.conftest import GROUP, VERSION, wait_for
from tests.e2e.helpers import Connections, roleset

pytestmark = pytest.mark.e2e

SCRIPT = (Path(__file__).resolve().parents[2] / "docs" / "argocd" / "health.lua").read_text()


def argo_health(obj: dict[str, Any]) -> tuple[str, str]:
    """What Argo CD would show: the script runs with the object as the global `obj`, as Argo CD runs it."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval(f"function(obj)\n{SCRIPT}\nend")
    result = check(lua.table_from(obj, recursive=True))
    return str(result["status"]), str(result["message"])


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def test_a_new_object_without_status_is_progressing() -> None:
    assert argo_health({"metadata": {"generation": 1}, "spec": {}})[0] == "Progressing"


def test_ready_connection_is_healthy(conns: Connections, make_role: Any) -> None:
    conns.create("ok", "ok", aws={"role": make_role()})
    status, message = argo_health(conns.wait_ready("ok"))
    assert status == "Healthy" and message.startswith("Bound: service account")


def test_stalled_connection_is_degraded_with_reason(conns: Connections) -> None:
    conns.create("missing", "missing", aws={"role": "no-such-role"})
    conns.wait_reason("missing", "RoleNotFound")
    status, message = argo_health(conns.get("missing") or {})
    assert status == "Degraded" and message.startswith("RoleNotFound: IAM role no-such-role does not exist")


def test_reconciling_connection_is_progressing(conns: Connections, aws: AwsEmulator, make_role: Any) -> None:
    aws.faults(
        rules=[{"fault": "throttle", "service": "eks", "operation": "CreatePodIdentityAssociation", "rate": 1.0}]
    )
    try:
        conns.create("slow", "slow", aws={"role": make_role()})
        conns.wait_reason("slow", "Throttled")
        obj = conns.get("slow") or {}
    finally:
        aws.faults(rules=[])
    assert {c["type"] for c in obj["status"]["conditions"]} == {"Ready", "Reconciling"}
    status, message = argo_health(obj)
    assert status == "Progressing" and message.startswith("Throttled: throttled while creating")
    conns.wait_ready("slow", timeout=60)


def test_spec_change_not_yet_observed_is_progressing(conns: Connections, make_role: Any) -> None:
    conns.create("moving", "moving", aws={"role": make_role()})
    obj = conns.wait_ready("moving")
    obj["metadata"]["generation"] += 1  # as the API server reports it between the edit and the operator's status
    assert argo_health(obj) == (
        "Progressing",
        f"Waiting for the operator to observe generation {obj['metadata']['generation']}",
    )


def test_role_set_without_its_secret_is_degraded(api: client.ApiClient, operator: Operator) -> None:
    custom = client.CustomObjectsApi(api)
    body = roleset(
        "health-no-secret", ("default", "absent-external-id"), roles=[{"preset": "porter-telemetry-manager"}]
    )
    custom.create_cluster_custom_object(GROUP, VERSION, "porterrolesets", body)
    try:

        def stalled() -> dict[str, Any] | None:
            obj: dict[str, Any] = custom.get_cluster_custom_object(GROUP, VERSION, "porterrolesets", "health-no-secret")
            conditions = (obj.get("status") or {}).get("conditions", [])
            return obj if any(c["type"] == "Stalled" for c in conditions) else None

        status, message = argo_health(wait_for(stalled, 30, what="PorterRoleSet Stalled"))
        assert status == "Degraded" and message.startswith("SecretNotFound: Secret default/absent-")
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "porterrolesets", "health-no-secret")
