"""Every render of the chart against the API schemas of the oldest Kubernetes it claims (Chart.yaml kubeVersion).

The real API server the other tiers start (tests/e2e/test_helm.py: a server-side dry run and an install) is the
newest release; this checks the other end, offline, from the k8s.io/kubernetes module's OpenAPI v3 documents."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from porter_dev.chart import CHART, helm, template
from tests.chart.openapi import release

FULL_VALUES = CHART / "ci" / "full-values.yaml"
# Kinds of CRDs a cluster may have (Prometheus Operator, cert-manager): not part of the Kubernetes API.
FROM_CRDS = {"ServiceMonitor", "Certificate", "Issuer"}


def minimum_version() -> str:
    kube_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    [version] = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)-0", kube_version).groups()  # type: ignore[union-attr]
    return version


def test_the_chart_needs_kubernetes_1_30() -> None:
    """preStop `sleep` is on by default from 1.30 and webhook matchConditions are GA in 1.30."""
    assert minimum_version() == "1.30.0"
    refused = helm("template", "rel", str(CHART), "--kube-version", "1.29.15", check=False)
    assert refused.returncode != 0
    assert "chart requires kubeVersion: >=1.30.0-0 which is incompatible with Kubernetes v1.29.15" in refused.stderr
    assert helm("template", "rel", str(CHART), "--kube-version", "1.30.0", check=False).returncode == 0


@pytest.mark.parametrize(
    ("values", "files", "from_crds"),
    [
        ({}, [], set()),
        ({}, [FULL_VALUES], {"ServiceMonitor"}),
        ({"webhook": {"certManager": {"enabled": True}}}, [], {"Certificate", "Issuer"}),
        ({"webhook": {"enabled": False}, "metrics": {"enabled": False}, "replicas": 1}, [], set()),
    ],
    ids=["defaults", "full-values", "cert-manager", "minimal"],
)
def test_renders_are_valid_objects_of_the_oldest_supported_kubernetes(
    values: dict[str, Any], files: list[Path], from_crds: set[str]
) -> None:
    version = minimum_version()
    extra = ["--kube-version", version, *[a for f in files for a in ("--values", str(f))]]
    objects = template("rel", "porter-system", values, extra=extra)
    assert {o["kind"] for o in objects} & FROM_CRDS == from_crds
    schemas = release(version)
    checked = [o for o in objects if o["kind"] not in FROM_CRDS]
    assert len(checked) >= 8
    problems = {f"{o['kind']}/{o['metadata']['name']}": schemas.errors(o) for o in checked}
    assert {name: errors for name, errors in problems.items() if errors} == {}
    deployment = next(o for o in checked if o["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "sleep" in container["lifecycle"]["preStop"], "the field that sets the minimum version was checked"


def test_the_crds_the_chart_installs_are_valid_for_the_oldest_supported_kubernetes() -> None:
    """A CRD field newer than the minimum (a CEL rule option, selectableFields) would be dropped or refused there."""
    crds = list(yaml.safe_load_all(helm("show", "crds", str(CHART)).stdout))
    assert len(crds) == 2
    schemas = release(minimum_version())
    assert {c["metadata"]["name"]: schemas.errors(c) for c in crds} == {c["metadata"]["name"]: [] for c in crds}


def test_the_schema_check_refuses_unknown_fields_and_kinds() -> None:
    """The check is strict: a misspelt field or a kind the release does not serve is an error."""
    schemas = release(minimum_version())
    deployment = next(o for o in template("rel", "porter-system") if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"] = {"secs": 5}
    assert schemas.errors(deployment) == [
        "spec/template/spec/containers/0/lifecycle/preStop/sleep: 'seconds' is a required property",
        "spec/template/spec/containers/0/lifecycle/preStop/sleep: "
        "Additional properties are not allowed ('secs' was unexpected)",
    ]
    beta = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"}}
    assert schemas.errors(beta) == ["policy/v1beta1 PodDisruptionBudget is not served"]
