"""The YAML a user copies from the docs works: Helm values examples render with the real helm, every custom resource
example of the README, docs/ and examples/ passes the CRDs' schema and CEL rules on a real API server (server-side
dry run), and the Flux example's health expressions judge Ready and not-Ready connections as Flux would (cel-go in
hack/gitops, evaluated the way kustomize-controller does)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from porter_dev import REPO_ROOT
from porter_dev.chart import CHART, helm
from porter_dev.controlplane import ControlPlane, k8s_bin_dir
from porter_identity.api import connection
from tests.conftest import GROUP, VERSION

pytestmark = pytest.mark.e2e

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FLUX = REPO_ROOT / "examples" / "flux"
BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.S | re.M)
VALUES_KEYS = set(json.loads((CHART / "values.schema.json").read_text())["properties"])


def _blocks() -> Iterator[tuple[str, Any]]:
    """(where, document) for every YAML document in a ```yaml block of the README and docs/."""
    for page in PAGES:
        for n, found in enumerate(BLOCK.finditer(page.read_text()), 1):
            for doc in yaml.safe_load_all(found.group(1)):
                if isinstance(doc, dict):
                    yield f"{page.relative_to(REPO_ROOT)} block {n}", doc


def _values_examples() -> list[tuple[str, dict[str, Any]]]:
    """Helm values blocks (top-level keys all chart values), the allow policy blocks as the `policy` value, and the
    Flux HelmRelease's values."""
    found = []
    for where, doc in _blocks():
        if "apiVersion" in doc:
            continue
        if set(doc) <= VALUES_KEYS and {"config", "serviceAccount"} & set(doc):
            found.append((where, doc))
        elif "rules" in doc and set(doc) <= {"rules", "maxLinksPerNamespacePerIdentity"}:
            found.append((f"{where} (as the policy value)", {"policy": doc}))
    for doc in yaml.safe_load_all((FLUX / "porter-identity.yaml").read_text()):
        if doc and doc["kind"] == "HelmRelease":
            found.append(("examples/flux/porter-identity.yaml HelmRelease", doc["spec"]["values"]))
    return found


def _resource_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every identity.porter.run object of the README, docs/ and examples/ (the Flux one included)."""
    found = [(where, doc) for where, doc in _blocks() if str(doc.get("apiVersion", "")).startswith(GROUP)]
    for path in sorted((REPO_ROOT / "examples").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and str(doc.get("apiVersion", "")).startswith(GROUP):
                found.append((f"{path.relative_to(REPO_ROOT)} {doc['metadata']['name']}", doc))
    return found


def test_the_examples_are_found() -> None:
    values = {where.split(" ")[0] for where, _ in _values_examples()}
    assert {"README.md", "docs/configuration.md", "docs/security.md", "examples/flux/porter-identity.yaml"} <= values
    assert len(_values_examples()) >= 9
    kinds = {(where.split(" ")[0], doc["kind"]) for where, doc in _resource_examples()}
    assert ("docs/rolesets.md", "PorterRoleSet") in kinds
    assert ("README.md", "ServiceIdentityConnection") in kinds
    assert ("examples/flux/shop/connections.yaml", "ServiceIdentityConnection") in kinds


@pytest.mark.parametrize(("where", "values"), _values_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_helm_values_example_renders(where: str, values: dict[str, Any], tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    done = helm("template", "porter-identity", str(CHART), "-n", "porter-system", "--values", str(file), check=False)
    assert done.returncode == 0, f"{where}: helm template refuses it:\n{done.stderr}"
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert any(d["kind"] == "Deployment" for d in rendered), where


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """An API server of its own with the CRDs and nothing else: no admission webhook decides here, only the CRDs'
    schema and CEL rules (the allow policy is the webhook's, tested elsewhere)."""
    cp = ControlPlane(workdir=tmp_path_factory.mktemp("doc-examples") / "cluster")
    cp.start()
    try:
        _kubectl(cp, "apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        _kubectl(cp, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        yield cp
    finally:
        cp.stop()


def _kubectl(cp: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = str(k8s_bin_dir() / "kubectl")
    return subprocess.run(
        [binary, "--kubeconfig", str(cp.kubeconfig), *args], input=stdin, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(("where", "obj"), _resource_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_resource_example_passes_the_crds(where: str, obj: dict[str, Any], cluster: ControlPlane) -> None:
    namespace = obj["metadata"].get("namespace")
    if namespace:
        _kubectl(cluster, "create", "namespace", namespace)  # AlreadyExists after the first: fine
    done = _kubectl(cluster, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=json.dumps(obj))
    assert done.returncode == 0, f"{where}: the API server refuses it:\n{done.stderr}"


def test_the_dry_run_refuses_a_placeholder(cluster: ControlPlane) -> None:
    """The check above can fail: a placeholder where an ARN belongs is refused by the CRD's rules."""
    [roleset] = [doc for where, doc in _resource_examples() if doc["kind"] == "PorterRoleSet" and "docs/" in where]
    bad = json.loads(json.dumps(roleset))
    bad["spec"]["managementPrincipalArn"] = "arn:aws:iam::<porter-account>:role/CAPIManagement"
    done = _kubectl(cluster, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=json.dumps(bad))
    assert done.returncode != 0 and "managementPrincipalArn" in done.stderr, done.stderr


@pytest.fixture(scope="module")
def gitops() -> str:
    built = subprocess.run(["bash", str(REPO_ROOT / "hack" / "build-gitops.sh")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return built.stdout.strip()


def _connection(generation: int, observed: int, **conditions: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": connection.KIND,
        "metadata": {"name": "checkout-api", "namespace": "shop", "generation": generation},
        "spec": {"serviceAccountName": "checkout-api", "aws": {"role": "shop-checkout"}},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": kind, "status": value, "reason": "Bound" if kind == "Ready" else "RoleNotFound"}
                for kind, value in conditions.items()
            ],
        },
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_connection(1, 1, Ready="True"), "Current"),
        (_connection(1, 1, Ready="False", Stalled="True"), "Failed"),
        (_connection(1, 1, Ready="False", Reconciling="True"), "InProgress"),
        (_connection(2, 1, Ready="True"), "InProgress"),  # a spec change not yet observed
        ({**_connection(1, 0), "status": {"observedGeneration": 0}}, "InProgress"),  # the CRD's default status
    ],
    ids=["ready", "stalled", "reconciling", "generation-ahead", "not-yet-seen"],
)
def test_the_flux_health_expressions_judge_a_connection(gitops: str, obj: dict[str, Any], expected: str) -> None:
    done = subprocess.run(
        [gitops, "flux", str(FLUX / "porter-identity.yaml")],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["status"] == expected, verdict
    assert not verdict["message"].startswith("kstatus"), "the Kustomization's own expressions judged it"


def test_the_flux_kustomization_checks_every_connection_it_applies() -> None:
    [kustomization] = [
        d for d in yaml.safe_load_all((FLUX / "porter-identity.yaml").read_text()) if d["kind"] == "Kustomization"
    ]
    path = REPO_ROOT / kustomization["spec"]["path"]
    applied = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for f in sorted(path.rglob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d and d["kind"] == connection.KIND
    }
    checked = {
        (c["namespace"], c["name"]) for c in kustomization["spec"]["healthChecks"] if c["kind"] == connection.KIND
    }
    assert applied and applied == checked
    [exprs] = kustomization["spec"]["healthCheckExprs"]
    assert (exprs["apiVersion"], exprs["kind"]) == (f"{GROUP}/{VERSION}", connection.KIND)
