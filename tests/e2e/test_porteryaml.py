"""`porter-identity import` and `export` end to end: the real CLI process, API server, operator and emulators."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AwsEmulator, Operator
from porter_identity.porteryaml.convert import MANAGER
from tests.conftest import AZURE_SUBSCRIPTION, EKS_CLUSTER, GCP_PROJECT
from tests.e2e.helpers import Connections

pytestmark = pytest.mark.e2e
RG = "porteryaml-rg"
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
NAMES = ["shop-api-aws", "shop-report-gcp", "shop-worker-azure"]

Cli = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class App:
    """A porter.yaml whose identities exist in the emulated clouds."""

    path: Path
    role: str
    identity: str
    email: str

    def write(self, with_worker: bool = True) -> Path:
        services: list[dict[str, Any]] = [
            {
                "name": "api",
                "type": "web",
                "run": "node server.js",
                "port": 8080,
                "cpuCores": 0.5,
                "ramMegabytes": 512,
                "connections": [
                    {"type": "awsRole", "role": self.role},
                    {"type": "disk", "config": {"diskName": "uploads"}},
                ],
            },
            {
                "name": "report",
                "type": "job",
                "run": "python report.py",
                "cron": "0 6 * * *",
                "connections": [{"type": "gcpServiceAccount", "serviceAccountEmail": self.email}],
            },
        ]
        if with_worker:
            services.insert(
                1,
                {
                    "name": "worker",
                    "type": "worker",
                    "run": "python worker.py",
                    "connections": [
                        {"type": "azureManagedIdentity", "identityName": self.identity, "resourceGroup": RG}
                    ],
                },
            )
        self.path.write_text(yaml.safe_dump({"version": "v2", "name": "shop", "services": services}, sort_keys=False))
        return self.path


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator, service_account: Any) -> Connections:
    for name in ("api", "worker", "report"):
        service_account(namespace, name)
    return Connections(api, namespace)


@pytest.fixture
def app(tmp_path: Path, make_role: Callable[..., str], azure: AzureEmulator, gcp: GcpEmulator) -> App:
    suffix = uuid.uuid4().hex[:8]
    role = make_role(f"shop-api-{suffix}").rsplit("/", 1)[1]
    identity = f"shop-worker-{suffix}"
    azure.seed_identity(AZURE_SUBSCRIPTION, RG, identity)
    email = gcp.seed_service_account(GCP_PROJECT, f"report-{suffix}")
    return App(tmp_path / "porter.yaml", role, identity, email)


@pytest.fixture
def cli(control_plane: ControlPlane) -> Cli:
    """The real command, as a user runs it, against the test cluster."""
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "porter_identity.cli", *args], env=env, capture_output=True, text=True, timeout=60
        )

    return run


def associations(aws: AwsEmulator, namespace: str) -> list[str]:
    eks = aws.client("eks")
    pages = eks.get_paginator("list_pod_identity_associations").paginate(clusterName=EKS_CLUSTER, namespace=namespace)
    return [a["serviceAccount"] for page in pages for a in page["associations"]]


def credentials(azure: AzureEmulator, identity: str) -> list[str]:
    found = azure.client(AZURE_SUBSCRIPTION).federated_identity_credentials.list(RG, identity)
    return [c.subject for c in found]


def members(gcp: GcpEmulator, email: str) -> list[str]:
    policy = gcp.client().get_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}"})
    return [m for b in policy.bindings if b.role == WORKLOAD_IDENTITY_USER for m in b.members]


def applied_by_import(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in obj["metadata"]["managedFields"] if m["manager"] == MANAGER]


def test_import_apply_makes_every_connection_ready_and_a_reimport_changes_nothing(
    cli: Cli, conns: Connections, app: App, aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator
) -> None:
    ns = conns.namespace
    done = cli("import", str(app.write()), "-n", ns, "--apply")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"serviceidentityconnection/{n} created" for n in NAMES]
    assert "service api: connection type disk skipped" in done.stderr

    ready = {name: conns.wait_ready(name) for name in NAMES}
    assert associations(aws, ns) == ["api"]
    assert credentials(azure, app.identity) == [f"system:serviceaccount:{ns}:worker"]
    assert members(gcp, app.email) == [f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{ns}/report]"]
    for obj in ready.values():
        [entry] = applied_by_import(obj)
        assert entry["operation"] == "Apply"

    again = cli("import", str(app.path), "-n", ns, "--apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"serviceidentityconnection/{n} unchanged" for n in NAMES]
    for name, before in ready.items():
        after = conns.get(name)
        assert after is not None
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert applied_by_import(after) == applied_by_import(before)  # not even a new timestamp: no write at all


def test_prune_removes_only_this_apps_connection_that_left_the_file(
    cli: Cli,
    conns: Connections,
    app: App,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    tmp_path: Path,
    make_role: Callable[..., str],
    service_account: Any,
) -> None:
    ns = conns.namespace
    service_account(ns, "other")
    service_account(ns, "handmade")
    assert cli("import", str(app.write()), "-n", ns, "--apply").returncode == 0
    # Another app and a hand-written connection in the same namespace: prune must not touch them.
    other = tmp_path / "other.yaml"
    other_role = make_role().rsplit("/", 1)[1]
    other_services = [{"name": "api", "connections": [{"type": "awsRole", "role": other_role}]}]
    other.write_text(yaml.safe_dump({"version": "v2", "name": "other", "services": other_services}))
    assert cli("import", str(other), "-n", ns, "--apply", "--service-account", "api=other").returncode == 0
    conns.create("handmade", "handmade", aws={"role": other_role})
    for name in [*NAMES, "other-api-aws", "handmade"]:
        conns.wait_ready(name)

    app.write(with_worker=False)
    dry = cli("import", str(app.path), "-n", ns, "--apply", "--prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "serviceidentityconnection/shop-api-aws unchanged (server dry run)",
        "serviceidentityconnection/shop-report-gcp unchanged (server dry run)",
        "serviceidentityconnection/shop-worker-azure pruned (server dry run)",
    ]
    assert conns.get("shop-worker-azure") is not None
    assert credentials(azure, app.identity) == [f"system:serviceaccount:{ns}:worker"]

    pruned = cli("import", str(app.path), "-n", ns, "--apply", "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines()[-1] == "serviceidentityconnection/shop-worker-azure pruned"
    conns.wait_gone("shop-worker-azure")
    assert credentials(azure, app.identity) == []  # the cloud link went with it (deletionPolicy Delete)
    assert sorted(associations(aws, ns)) == ["api", "handmade", "other"]
    assert members(gcp, app.email) == [f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{ns}/report]"]
    assert conns.get("other-api-aws") is not None and conns.get("handmade") is not None


def test_export_after_import_is_a_round_trip(cli: Cli, conns: Connections, app: App, tmp_path: Path) -> None:
    ns = conns.namespace
    assert cli("import", str(app.write()), "-n", ns, "--apply").returncode == 0

    exported = cli("export", "-n", ns, "--app", "shop")
    assert exported.returncode == 0, exported.stderr
    [document] = yaml.safe_load_all(exported.stdout)
    ours = {"awsRole", "azureManagedIdentity", "gcpServiceAccount"}
    written = yaml.safe_load(app.path.read_text())
    expected = [
        {"name": s["name"], "connections": [c for c in s["connections"] if c["type"] in ours]}
        for s in written["services"]
    ]
    assert document == {"version": "v2", "name": "shop", "services": sorted(expected, key=lambda s: s["name"])}

    back = tmp_path / "exported.yaml"
    back.write_text(exported.stdout)
    reimported = cli("import", str(back), "-n", ns, "--apply", "--prune", "--source", str(app.path))
    assert reimported.returncode == 0, reimported.stderr
    assert reimported.stdout.splitlines() == [f"serviceidentityconnection/{n} unchanged" for n in NAMES]


def test_apply_refuses_to_take_over_or_to_change_what_the_api_server_keeps(
    cli: Cli, conns: Connections, app: App
) -> None:
    ns = conns.namespace
    conns.create("shop-api-aws", "api", aws={"role": app.role})  # written by hand, under the name import would use
    refused = cli("import", str(app.write()), "-n", ns, "--apply")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert "serviceidentityconnection/shop-api-aws exists and is not app shop's service api" in refused.stderr
    assert conns.get("shop-report-gcp") is None  # refused before anything was applied
    conns.delete("shop-api-aws")
    conns.wait_gone("shop-api-aws")

    assert cli("import", str(app.path), "-n", ns, "--apply").returncode == 0
    moved = cli("import", str(app.path), "-n", ns, "--apply", "--dry-run", "--service-account", "api=api-v2")
    assert (moved.returncode, moved.stdout) == (1, "")
    assert "serviceidentityconnection/shop-api-aws:" in moved.stderr and "immutable" in moved.stderr
