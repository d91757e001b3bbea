"""The chart's PrometheusRule, ServiceMonitor and dashboard ConfigMap against the real API server, with the Prometheus
Operator's own CRDs (hack/fetch-prometheus-operator-crds.sh): a server-side dry run validates them by its schemas."""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from porter_dev import REPO_ROOT
from porter_dev.chart import template

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
ON = {
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboard": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True}},
}
KINDS = {"PrometheusRule", "ServiceMonitor", "ConfigMap"}


@pytest.fixture(scope="module")
def monitoring_crds(kubectl: Kubectl) -> Iterator[None]:
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "fetch-prometheus-operator-crds.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    directory = Path(out.stdout.strip().splitlines()[-1])
    kubectl("apply", "--server-side", "-f", str(directory))
    names = ["crd/prometheusrules.monitoring.coreos.com", "crd/servicemonitors.monitoring.coreos.com"]
    kubectl("wait", "--for=condition=Established", *names, "--timeout=30s")
    yield
    kubectl("delete", *names, "--wait=false")  # the session's API server is shared: leave it as it was


@pytest.fixture
def monitoring_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"mon-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def dry_run(kubectl: Kubectl, objects: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(objects), check=False)


def test_the_api_server_accepts_them(kubectl: Kubectl, monitoring_crds: None, monitoring_namespace: str) -> None:
    objects = [o for o in template("rel", monitoring_namespace, ON) if o["kind"] in KINDS]
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "ConfigMap", "PrometheusRule", "ServiceMonitor"]
    out = dry_run(kubectl, objects)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(server dry run)") == 4


def test_the_schema_is_really_checked(kubectl: Kubectl, monitoring_crds: None, monitoring_namespace: str) -> None:
    [rule] = [o for o in template("rel", monitoring_namespace, ON) if o["kind"] == "PrometheusRule"]
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["for"] = "half an hour"
    out = dry_run(kubectl, [broken])
    assert out.returncode != 0 and "for" in out.stderr, out.stderr
