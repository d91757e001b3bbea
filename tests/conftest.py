"""Shared fixtures: a real control plane, the AWS emulator and the operator process, started once per session.

`node_cluster` is another, separate control plane with a real node (porter_dev.node): only the tests that ask for
it start it, so the node-less tiers stay fast."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from kubernetes import client, config

from porter_dev import REPO_ROOT, admission, rbac
from porter_dev.admission import webhook_configuration, write_policy, write_webhook_certificate
from porter_dev.azure import AzureEmulator
from porter_dev.azure_workload_identity import WorkloadIdentityWebhook
from porter_dev.controlplane import ControlPlane, free_port, k8s_bin_dir
from porter_dev.gcp import GcpEmulator
from porter_dev.images import base_image, operator_image
from porter_dev.node import GATEWAY, Node
from porter_dev.pod_identity_agent import PodIdentityAgent
from porter_dev.processes import AwsEmulator, Operator, emulator_settings, pod_identity_trust_policy
from porter_identity.kube import rest
from porter_identity.kube.rest import Kube

GROUP, VERSION, PLURAL = "identity.porter.run", "v1alpha1", "serviceidentityconnections"
EKS_CLUSTER = "e2e"
AZURE_SUBSCRIPTION = "00000000-0000-0000-0000-00000000e2e0"
GCP_PROJECT = "porter-e2e"
GCP_POOL = f"{GCP_PROJECT}.svc.id.goog"  # its workload pool (GKE's default name for it)
# The public cloud's Entra host: node pods reach the Azure emulator under this name (hostAliases), on port 443.
ENTRA_HOST = "login.microsoftonline.com"
# The e2e operator's ServiceAccount and RBAC come from the Helm chart, rendered as this release in this namespace.
OPERATOR_NAMESPACE = rbac.OPERATOR_NAMESPACE
OPERATOR_RELEASE = rbac.OPERATOR_RELEASE
# The ExternalId Secrets e2e PorterRoleSets name (rbac.externalIdSecretNames of the operator under test).
E2E_EXTERNAL_ID_SECRETS = [
    "porter-external-id",
    "absent-external-id",
    "sec-external-id",
    "wrong-id",
    "owned",
    "diff",
    "removal",
    "adoption",
    "dead-end",
    "leak",
    "invalid-id",
    "foreign",
    "live",
    "kubectl-external-id",
]
# Allow rules of the session operator: the namespaces the suites create may use any identity (porter-* and
# foreign accounts stay refused whatever the rules say); h-* namespaces (test_hostile_input) only ok-*.
E2E_POLICY: list[dict[str, Any]] = [
    {
        "name": "e2e",
        "namespaces": ["t-*", "doomed-*", "default"],
        "aws": {"roles": ["*"]},
        "azure": {"identities": ["*"]},
        "gcp": {"serviceAccounts": ["*"]},
        # the tests pause, detach and retain connections here; the default grants Retain only
        "keep": ["Retain", "DetachOnDelete", "Skip"],
    },
    {
        "name": "strict",  # grants no keeping at all, not even Retain
        "namespaces": ["strict-*"],
        "aws": {"roles": ["*"]},
        "keep": [],
    },
    {
        "name": "hostile",
        "namespaces": ["h-*"],
        "aws": {"roles": ["ok-*"]},
        "azure": {"identities": ["ok-rg/ok-*"]},
        "gcp": {"serviceAccounts": [f"ok-*@{GCP_PROJECT}.iam.gserviceaccount.com"]},
    },
]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("porter")


@pytest.fixture(scope="session")
def control_plane(workdir: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(workdir=workdir / "cluster")
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    """The operator's own client (kube/rest.py), logged in from the control plane's kubeconfig as kopf reads one."""
    with mock.patch.dict(os.environ, {"KUBECONFIG": str(control_plane.kubeconfig)}):
        return Kube(rest.login())


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = k8s_bin_dir() / "kubectl"

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), "--kubeconfig", str(control_plane.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
        )

    return run


@pytest.fixture(scope="session")
def crds(kubectl: Callable[..., Any]) -> None:
    kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")


@pytest.fixture(scope="session")
def aws(workdir: Path) -> Iterator[AwsEmulator]:
    emulator = AwsEmulator(logdir=workdir / "logs").start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def azure(workdir: Path) -> Iterator[AzureEmulator]:
    emulator = AzureEmulator(logdir=workdir / "logs").start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def gcp(workdir: Path) -> Iterator[GcpEmulator]:
    emulator = GcpEmulator(logdir=workdir / "logs").start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def eks_cluster(aws: AwsEmulator) -> str:
    aws.client("eks").create_cluster(
        name=EKS_CLUSTER, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": []}
    )
    return EKS_CLUSTER


@pytest.fixture(scope="session")
def make_role(aws: AwsEmulator) -> Callable[..., str]:
    iam = aws.client("iam")

    def make(name: str | None = None, path: str = "/") -> str:
        name = name or f"role-{uuid.uuid4().hex[:10]}"
        arn: str = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=pod_identity_trust_policy())[
            "Role"
        ]["Arn"]
        return arn

    return make


@pytest.fixture(scope="session")
def operator_kubeconfig(control_plane: ControlPlane, workdir: Path) -> Path:
    """A kubeconfig with exactly the Helm chart's RBAC: its ServiceAccount's token, from a TokenRequest.

    Every operator the tests start runs with it (Operator.start refuses anything else), so every API call the
    operator makes must be granted by the chart's ClusterRole and Roles."""
    return rbac.chart_kubeconfig(
        control_plane.kubeconfig,
        workdir / "operator.kubeconfig",
        namespace=OPERATOR_NAMESPACE,
        release=OPERATOR_RELEASE,
        # The e2e PorterRoleSets keep their ExternalId in porter-system; one health test names a Secret in default.
        # The chart grants named Secrets only: each test's Secret is listed, any other is refused.
        values={
            "rbac": {
                "externalIdSecretNamespaces": [OPERATOR_NAMESPACE, "default"],
                "externalIdSecretNames": E2E_EXTERNAL_ID_SECRETS,
            }
        },
    )


@pytest.fixture(scope="session")
def operator(
    operator_kubeconfig: Path,
    control_plane: ControlPlane,
    crds: None,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    eks_cluster: str,
    workdir: Path,
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
) -> Iterator[Operator]:
    certs = workdir / "webhook"
    ca = write_webhook_certificate(certs)
    webhook_port = free_port()
    op = Operator(
        kubeconfig=operator_kubeconfig,
        logfile=workdir / "logs" / "operator.log",
        env={
            **emulator_settings(
                control_plane.server,
                aws,
                azure,
                gcp,
                cluster=eks_cluster,
                subscription=AZURE_SUBSCRIPTION,
                project=GCP_PROJECT,
                account="123456789012",
            ),
            "PORTER_RETRY_BASE_SECONDS": "0.5",
            "PORTER_RETRY_MAX_SECONDS": "4",
            "PORTER_ROLESET_SYNC_SECONDS": "2",
            "PORTER_METRICS_PORT": str(free_port()),
            "PORTER_POLICY_FILE": str(write_policy(workdir / "policy.yaml", E2E_POLICY)),
            "PORTER_WEBHOOK_PORT": str(webhook_port),
            "PORTER_WEBHOOK_CERT_DIR": str(certs),
        },
        # JSON as a log pipeline would read it (tests/e2e/test_logs.py checks the keys).
        args=["--log-format", "json"],
    ).start()
    # As the Helm chart does: the configuration is the cluster's, the operator only serves it.
    kubectl("apply", "-f", "-", stdin=json.dumps(webhook_configuration(webhook_port, ca)))
    yield op.wait_ready()
    kubectl("delete", admission.KINDS, admission.NAME, check=False)
    op.stop()


@dataclass
class NodeCluster:
    """A control plane with one real node, the emulators on the bridge gateway (pods reach them there) and the
    operator image built from the Dockerfile and imported into the node's containerd."""

    control_plane: ControlPlane
    node: Node
    aws: AwsEmulator
    azure: AzureEmulator
    gcp: GcpEmulator
    agent: PodIdentityAgent  # what EKS runs on every node: pods get AWS credentials from it
    azure_webhook: WorkloadIdentityWebhook  # what AKS runs: labelled pods get a token for Entra and its settings
    image: str  # the operator image, imagePullPolicy Never

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(k8s_bin_dir() / "kubectl"), "--kubeconfig", str(self.control_plane.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
        )


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    """Started once, only for the tests that ask for it; everything it started stops by pid, the bridge and the
    iptables rules it added go. A part that cannot start fails the tests that need it (never a skip)."""
    root = tmp_path_factory.mktemp("node")
    image, image_archive = operator_image()  # cached in .cache/images by the hash of its inputs
    sandbox, sandbox_archive = base_image()  # its command sleeps forever: every pod's sandbox
    # The API server and the emulators bind the bridge gateway, so the bridge comes first.
    Node.create_bridge()
    cp = ControlPlane(workdir=root / "cluster", address=GATEWAY, serves_node=True)
    node = Node(workdir=root / "node", control_plane=cp)
    logs = root / "logs"
    aws = AwsEmulator(logdir=logs, host=GATEWAY)
    # ARM and Entra on one port; 443, so pods that resolve the public Entra host to the gateway reach Entra.
    azure = AzureEmulator(logdir=logs, host=GATEWAY, port=443, names=(ENTRA_HOST,))
    gcp = GcpEmulator(logdir=logs, host=GATEWAY)
    agent = PodIdentityAgent(logdir=logs, eks_auth_endpoint="", cluster=EKS_CLUSTER)
    azure_webhook = WorkloadIdentityWebhook(logs, cp.kubeconfig, GATEWAY, free_port(), azure.tenant_id)
    cluster = NodeCluster(cp, node, aws, azure, gcp, agent, azure_webhook, image)
    kubectl = [str(k8s_bin_dir() / "kubectl"), "--kubeconfig", str(cp.kubeconfig)]
    try:
        cp.start()
        aws.start()
        azure.start()
        gcp.start()
        aws.client("eks").create_cluster(
            name=EKS_CLUSTER, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": []}
        )
        # EKS Auth checks pod tokens against this cluster's issuer (the API server's).
        aws.set_cluster_issuer(EKS_CLUSTER, cp.server, cp.ca_file)
        # So does Google STS, for the workload pool this cluster's issuer is a provider of (fleet registration).
        gcp.add_workload_pool_provider(GCP_POOL, cp.server, cp.ca_file)
        # And Entra, for the federated credentials of managed identities.
        azure.trust_issuer(cp.server, cp.ca_file)
        azure_webhook.start()
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(azure_webhook.configuration()))
        agent.eks_auth_endpoint = aws.endpoint  # its port is known once it listens
        agent.start()
        node.start(sandbox, [sandbox_archive, image_archive]).wait_ready(kubectl)
        cluster.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
        yield cluster
    finally:
        node.stop(kubectl)
        azure_webhook.stop()
        agent.stop()
        for emulator in (gcp, azure, aws):
            emulator.stop()
        cp.stop()


@pytest.fixture
def service_account(api: client.ApiClient) -> Callable[[str, str], None]:
    core = client.CoreV1Api(api)

    def make(namespace: str, name: str) -> None:
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )

    return make


def sa_annotations(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    found = client.CoreV1Api(api).read_namespaced_service_account(name, namespace)
    return dict(found.metadata.annotations or {})


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    """Poll until `predicate` returns something truthy; fail with `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}; last value: {last!r}")
