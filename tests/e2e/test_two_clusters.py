"""Two clusters, one identity: each cluster's operator owns its own link and never touches the other's.

A second API server (its own issuer) and a second operator share the session's emulators. Both clusters bind
the same namespace/ServiceAccount to one Azure identity and to one IAM role (each in its own EKS cluster). Both
operators sweep every 3 s with PORTER_DELETE_ORPHANS=true, so a sweep that took the other cluster's link for its
own orphan would delete it. GCP cannot keep the clusters apart (one workload pool per project: the member is the
same string for both), which docs/lifecycle.md says.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from porter_dev import rbac
from porter_dev.admission import write_policy
from porter_dev.azure import AzureEmulator
from porter_dev.bench import wait_for_crd
from porter_dev.controlplane import ControlPlane, free_port, k8s_bin_dir
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AWS_ACCOUNT_ID, AwsEmulator, Operator, emulator_settings
from tests.conftest import AZURE_SUBSCRIPTION, E2E_POLICY, EKS_CLUSTER, GCP_PROJECT, wait_for
from tests.e2e.helpers import Connections, instead_of_the_session_operator, wait_sweeps

pytestmark = pytest.mark.e2e
RG = "two-clusters-rg"
OTHER_EKS = "e2e-other"
SWEEP = {"PORTER_DRIFT_SWEEP_SECONDS": "3", "PORTER_DELETE_ORPHANS": "true"}


@dataclass
class Cluster:
    api: client.ApiClient
    issuer: str
    eks: str
    operator: Operator


@pytest.fixture(scope="module")
def clusters(
    operator: Operator,
    control_plane: ControlPlane,
    api: client.ApiClient,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    workdir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, Cluster]]:
    here = tmp_path_factory.mktemp("other-cluster")
    other = ControlPlane(workdir=here / "cluster")
    other.start()
    second: Operator | None = None
    try:
        kubectl = str(k8s_bin_dir() / "kubectl")
        subprocess.run([kubectl, "--kubeconfig", str(other.kubeconfig), "apply", "-f", "crds/"], check=True)
        aws.client("eks").create_cluster(
            name=OTHER_EKS, roleArn=f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/eks", resourcesVpcConfig={"subnetIds": []}
        )
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(other.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
        other_api = client.ApiClient(cfg)
        wait_for_crd(client.CustomObjectsApi(other_api))
        env = emulator_settings(
            other.server,
            aws,
            azure,
            gcp,
            cluster=OTHER_EKS,
            subscription=AZURE_SUBSCRIPTION,
            project=GCP_PROJECT,
            account=AWS_ACCOUNT_ID,
        ) | {"PORTER_POLICY_FILE": str(write_policy(here / "policy.yaml", E2E_POLICY)), "PORTER_WEBHOOK_PORT": "0"}
        token = rbac.chart_kubeconfig(other.kubeconfig, here / "operator.kubeconfig")  # the chart's RBAC only
        metrics = {"PORTER_METRICS_PORT": str(free_port())}
        second = Operator(token, here / "operator.log", env | SWEEP | metrics, ["--log-format", "json"]).start()
        second.wait_ready()
        with instead_of_the_session_operator(operator, control_plane, workdir, first=SWEEP) as started:
            yield (
                Cluster(api, control_plane.server, EKS_CLUSTER, started["first"]),
                Cluster(other_api, other.server, OTHER_EKS, second),
            )
    finally:
        if second is not None:
            second.stop()
        other.stop()


def _both(clusters: tuple[Cluster, Cluster], ns: str) -> tuple[Connections, Connections]:
    for c in clusters:
        core = client.CoreV1Api(c.api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app")))
    return Connections(clusters[0].api, ns), Connections(clusters[1].api, ns)


def test_azure_two_clusters_keep_their_own_credentials(clusters: tuple[Cluster, Cluster], azure: AzureEmulator) -> None:
    identity = f"uami-{uuid.uuid4().hex[:8]}"
    azure.seed_identity(AZURE_SUBSCRIPTION, RG, identity)
    fics = azure.client(AZURE_SUBSCRIPTION).federated_identity_credentials
    ns = f"t-{uuid.uuid4().hex[:8]}"
    one, two = _both(clusters, ns)
    spec: dict[str, Any] = {"azure": {"identityName": identity, "resourceGroup": RG}}
    one.create("app", "app", **spec)
    two.create("app", "app", **spec)
    one.wait_ready("app")
    two.wait_ready("app")

    def issuers() -> list[str]:
        return sorted(c.issuer for c in fics.list(RG, identity))

    assert issuers() == sorted(c.issuer for c in clusters)
    wait_sweeps(*(c.operator for c in clusters), count=3)  # three sweeps each, with orphan deletion on
    assert issuers() == sorted(c.issuer for c in clusters)  # neither sweep took the other's for an orphan
    assert not [e for e in one.events("app") + two.events("app") if e.reason == "DriftCorrected"]
    one.delete("app")
    one.wait_gone("app")
    assert issuers() == [clusters[1].issuer]  # the other cluster's credential survives
    two.wait_ready("app")


def test_aws_two_clusters_keep_their_own_associations(
    clusters: tuple[Cluster, Cluster], aws: AwsEmulator, make_role: Callable[..., str]
) -> None:
    role = make_role()
    eks = aws.client("eks")
    ns = f"t-{uuid.uuid4().hex[:8]}"
    one, two = _both(clusters, ns)
    one.create("app", "app", aws={"role": role})
    two.create("app", "app", aws={"role": role})
    one.wait_ready("app")
    two.wait_ready("app")

    def held() -> dict[str, int]:
        return {
            c.eks: len(eks.list_pod_identity_associations(clusterName=c.eks, namespace=ns)["associations"])
            for c in clusters
        }

    assert held() == {EKS_CLUSTER: 1, OTHER_EKS: 1}
    one.delete("app")
    one.wait_gone("app")
    wait_for(lambda: held() == {EKS_CLUSTER: 0, OTHER_EKS: 1}, 10, what="only this cluster's association gone")
