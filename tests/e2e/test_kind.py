"""The kind path for machines with a Docker engine: CRDs and the operator against a kind cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from porter_dev import CACHE, REPO_ROOT, rbac
from porter_dev.admission import write_policy
from porter_dev.controlplane import k8s_bin_dir
from porter_dev.processes import AWS_REGION, AwsEmulator, Operator
from tests.conftest import wait_for

KIND_VERSION = "v0.30.0"
KIND_POLICY = [{"name": "kind", "namespaces": ["default"], "aws": {"roles": ["*"]}}]


def _docker_runs() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not _docker_runs(), reason="no Docker engine runs here, so kind cannot start a cluster"),
]


@pytest.fixture(scope="module")
def kind_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    bindir = CACHE / "bin"
    kind = bindir / "kind"
    if not kind.exists():
        subprocess.run(
            ["go", "install", f"sigs.k8s.io/kind@{KIND_VERSION}"], check=True, env={**os.environ, "GOBIN": str(bindir)}
        )
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    subprocess.run(
        [str(kind), "create", "cluster", "--name", "porter-e2e", "--kubeconfig", str(kubeconfig)], check=True
    )
    yield kubeconfig
    subprocess.run([str(kind), "delete", "cluster", "--name", "porter-e2e"], check=False)


def test_operator_binds_on_kind(kind_kubeconfig: Path, aws: AwsEmulator, eks_cluster: str, make_role: Any) -> None:
    kubectl = [str(k8s_bin_dir() / "kubectl"), "--kubeconfig", str(kind_kubeconfig)]
    subprocess.run([*kubectl, "apply", "-f", str(REPO_ROOT / "crds")], check=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "crd", "--all"], check=True)
    op = Operator(
        kubeconfig=rbac.chart_kubeconfig(kind_kubeconfig, kind_kubeconfig.parent / "operator.kubeconfig"),
        logfile=kind_kubeconfig.parent / "operator.log",
        env={
            **aws.env,
            "PORTER_EKS_CLUSTER_NAME": eks_cluster,
            "PORTER_AWS_REGION": AWS_REGION,
            "PORTER_POLICY_FILE": str(write_policy(kind_kubeconfig.parent / "policy.yaml", KIND_POLICY)),
            "PORTER_WEBHOOK_PORT": "0",  # kind's API server runs in a container and cannot reach 127.0.0.1
        },
    ).start()
    try:
        manifest = {
            "apiVersion": "identity.porter.run/v1alpha1",
            "kind": "ServiceIdentityConnection",
            "metadata": {"name": "kind", "namespace": "default"},
            "spec": {"serviceAccountName": "kind", "aws": {"role": make_role()}},
        }
        subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(manifest), text=True, check=True)

        def ready() -> bool:
            out = subprocess.run(
                [*kubectl, "get", "sic", "kind", "-o", "jsonpath={.status.conditions[0].status}"],
                capture_output=True,
                text=True,
            )
            return out.stdout == "True"

        wait_for(ready, 60, what="kind connection Ready")
    finally:
        op.stop()
