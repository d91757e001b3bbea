"""GitOps health on live objects, judged by the tools' own code: kstatus (sigs.k8s.io/cli-utils, as Flux and kpt
use it) and Argo CD's way of running the generated health.lua (gopher-lua, argocd-cm libraries), both in hack/gitops.

PORTER_GITOPS_TESTDATA=1 rewrites docs/argocd/*/*/testdata from the objects seen here (then `git diff` them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml
from kubernetes import client

from porter_dev import REPO_ROOT
from porter_dev.processes import AwsEmulator, Operator
from tests.conftest import GROUP, VERSION, wait_for
from tests.e2e.helpers import Connections, roleset, webhook_bypassed

pytestmark = pytest.mark.e2e

ARGO = REPO_ROOT / "docs" / "argocd" / GROUP


@pytest.fixture(scope="module")
def gitops() -> str:
    built = subprocess.run(["bash", str(REPO_ROOT / "hack" / "build-gitops.sh")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return built.stdout.strip()


def _judge(gitops: str, obj: dict[str, Any], *how: str) -> dict[str, str]:
    done = subprocess.run([gitops, *how], input=json.dumps(obj), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    verdict: dict[str, str] = json.loads(done.stdout)
    return verdict


def kstatus(gitops: str, obj: dict[str, Any]) -> dict[str, str]:
    return _judge(gitops, obj, "kstatus")


def argo(gitops: str, obj: dict[str, Any], case: str) -> dict[str, str]:
    """Argo CD's health of a live object; it must be what health_test.yaml expects of the committed case."""
    kind = obj["kind"]
    verdict = _judge(gitops, obj, "argo", str(ARGO / kind / "health.lua"))
    if os.environ.get("PORTER_GITOPS_TESTDATA"):
        kept = json.loads(json.dumps(obj))
        kept["metadata"].pop("managedFields", None)
        (ARGO / kind / "testdata").mkdir(exist_ok=True)
        (ARGO / kind / "testdata" / f"{case}.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))
    expected = yaml.safe_load((ARGO / kind / "health_test.yaml").read_text())["tests"]
    wanted = next(t["healthStatus"] for t in expected if t["inputPath"] == f"testdata/{case}.yaml")
    assert verdict["status"] == wanted["status"], (case, verdict)
    return verdict


@contextmanager
def unseen(operator: Operator, kubectl: Any) -> Iterator[None]:
    """The operator paused (SIGSTOP) and the webhook it serves out of the way: what the API server serves before the
    operator has seen an object."""
    assert operator.proc is not None
    with webhook_bypassed(kubectl):
        operator.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            operator.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def test_new_connection_is_in_progress_until_the_operator_observed_it_then_current(
    gitops: str, conns: Connections, operator: Operator, kubectl: Any, make_role: Any
) -> None:
    role = make_role()
    with unseen(operator, kubectl):
        conns.create("fresh", "fresh", aws={"role": role})
        fresh = conns.get("fresh") or {}
        assert fresh["status"] == {"observedGeneration": 0}, "the CRD's status default, served before any write"
        assert kstatus(gitops, fresh) == {
            "status": "InProgress",
            "message": "ServiceIdentityConnection generation is 1, but latest observed generation is 0",
        }
        assert argo(gitops, fresh, "new")["message"] == "Waiting for the porter-identity operator"
    ready = conns.wait_ready("fresh")
    assert kstatus(gitops, ready)["status"] == "Current"
    assert argo(gitops, ready, "bound")["message"].startswith("Bound: service account")


def test_stalled_connection_is_failed_and_degraded(gitops: str, conns: Connections) -> None:
    conns.create("missing", "missing", aws={"role": "no-such-role"})
    conns.wait_reason("missing", "RoleNotFound")
    obj = conns.get("missing") or {}
    assert kstatus(gitops, obj) == {"status": "Failed", "message": "IAM role no-such-role does not exist" + _rest(obj)}
    assert argo(gitops, obj, "stalled")["message"].startswith("RoleNotFound: IAM role no-such-role does not exist")


def _rest(obj: dict[str, Any]) -> str:
    stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
    return str(stalled["message"]).removeprefix("IAM role no-such-role does not exist")


def test_reconciling_connection_is_in_progress(
    gitops: str, conns: Connections, aws: AwsEmulator, make_role: Any
) -> None:
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
    assert kstatus(gitops, obj)["status"] == "InProgress"
    assert argo(gitops, obj, "reconciling")["message"].startswith("Throttled: throttled while creating")
    conns.wait_ready("slow", timeout=60)


def test_spec_change_not_yet_observed_is_in_progress(gitops: str, conns: Connections, make_role: Any) -> None:
    conns.create("moving", "moving", aws={"role": make_role()})
    obj = conns.wait_ready("moving")
    obj["metadata"]["generation"] += 1  # as the API server reports it between the edit and the operator's status
    assert kstatus(gitops, obj)["status"] == "InProgress"
    verdict = argo(gitops, obj, "generation-ahead")
    assert verdict["message"] == f"Waiting for the operator to observe generation {obj['metadata']['generation']}"


def test_role_set_without_its_secret_is_failed_and_degraded(
    gitops: str, api: client.ApiClient, operator: Operator
) -> None:
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

        obj = wait_for(stalled, 30, what="PorterRoleSet Stalled")
        assert kstatus(gitops, obj)["status"] == "Failed"
        assert argo(gitops, obj, "secret-not-found")["message"].startswith("SecretNotFound: Secret default/absent-")
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "porterrolesets", "health-no-secret")


def test_argocd_cm_patch_applies_as_is_and_keeps_other_keys(kubectl: Any) -> None:
    kubectl("create", "namespace", "argocd", check=False)
    kubectl("-n", "argocd", "create", "configmap", "argocd-cm", "--from-literal=url=https://argo.example")
    try:
        patch = str(REPO_ROOT / "docs" / "argocd" / "argocd-cm.yaml")
        kubectl("-n", "argocd", "patch", "configmap", "argocd-cm", "--patch-file", patch)
        data = json.loads(kubectl("-n", "argocd", "get", "configmap", "argocd-cm", "-o", "json").stdout)["data"]
        script = (ARGO / "ServiceIdentityConnection" / "health.lua").read_text()
        assert data["url"] == "https://argo.example"
        assert data[f"resource.customizations.health.{GROUP}_ServiceIdentityConnection"] == script
        assert data[f"resource.customizations.health.{GROUP}_PorterRoleSet"] == script
    finally:
        kubectl("delete", "namespace", "argocd", "--wait=false")


def test_health_tests_in_argo_layout_pass(gitops: str) -> None:
    done = subprocess.run([gitops, "argo-tests", str(REPO_ROOT / "docs" / "argocd")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") >= 6
