"""The operator the way users run it: its image built from the Dockerfile, installed by the Helm chart on a real node.

The tests of this module run in order on one release (install, admission, a connection, a workload that uses
it, upgrade, uninstall): each step starts from what the one before left. The node, the control plane that
serves it and the emulators (on the bridge gateway, where pods reach them) are the session's `node_cluster`.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.msi.models import FederatedIdentityCredential

from porter_dev.azure import CERT_NAME
from porter_dev.azure_workload_identity import AUDIENCE, CLIENT_ID, USE_LABEL
from porter_dev.chart import CHART, helm, value_args
from porter_dev.node import GATEWAY
from porter_dev.pod_identity_agent import POD_IDENTITY_AGENT_ADDRESS
from porter_dev.processes import AWS_ACCOUNT_ID, AWS_REGION, pod_identity_trust_policy
from porter_dev.smoke_clouds import AWS_PROBE, AZURE_PROBE, GCP_PROBE
from tests.conftest import (
    AZURE_SUBSCRIPTION,
    EKS_CLUSTER,
    ENTRA_HOST,
    GCP_POOL,
    GCP_PROJECT,
    GROUP,
    VERSION,
    NodeCluster,
    wait_for,
)
from tests.e2e import helpers

pytestmark = pytest.mark.e2e

RELEASE = "porter-identity"
NAMESPACE = "porter-system"
FULLNAME = RELEASE  # the chart's full name when the release is named after it
WEBHOOK = "validate-connection.identity.porter.run"


# What EKS's Pod Identity webhook adds to a pod whose ServiceAccount has an association (docs: "Understand how
# EKS Pod Identity works"); EKS injects it, this test writes it into the pod spec itself.
@dataclass(frozen=True)
class Token:
    """A projected ServiceAccount token: what each cloud's injection mounts into the pod."""

    audience: str
    directory: str
    file: str

    @property
    def path(self) -> str:
        return f"{self.directory}/{self.file}"


EKS_TOKEN = Token(
    "pods.eks.amazonaws.com", "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount", "eks-pod-identity-token"
)


# Fleet Workload Identity Federation, the form a cluster outside GKE uses (docs: "Authenticate to Google Cloud APIs
# from fleet workloads"): a token whose audience is the workload pool, beside a credential configuration in a
# ConfigMap, in one projected volume; GOOGLE_APPLICATION_CREDENTIALS names the configuration.
GCP_TOKEN = Token(GCP_POOL, "/var/run/secrets/tokens/gcp-ksa", "token")
GCP_CONFIG_FILE = "google-application-credentials.json"

# Azure Workload Identity: the test-only webhook (porter_dev.azure_workload_identity) injects the token and the
# settings into pods labelled for it. The pods also get what only this machine needs: the public Entra host sent
# to the emulator (/etc/hosts) and the emulator's CA (an endpoint's certificate, not a credential).
AZURE_CA = "azure-emulator-ca"  # a ConfigMap in each namespace whose pods talk to the emulator
AZURE_CA_DIR = "/etc/porter-dev/azure"
AZURE_CA_FILE = f"{AZURE_CA_DIR}/{CERT_NAME}"
ENTRA_ALIASES = [{"ip": GATEWAY, "hostnames": [ENTRA_HOST]}]
OPERATOR_IDENTITY = ("porter-system-rg", "porter-identity-operator")  # the operator's own managed identity


# The workload: the real SDK and its default credential chain, nothing of ours (the probes hack/cloud-smoke runs).
AWS_WORKLOAD, GCP_WORKLOAD, AZURE_WORKLOAD = AWS_PROBE, GCP_PROBE, AZURE_PROBE


def operator_azure_identity(cluster: NodeCluster) -> dict[str, Any]:
    """The operator's own user-assigned identity, federated with its ServiceAccount as an AKS admin would do
    (az identity federated-credential create); seeding it again returns the same identity."""
    resource_group, name = OPERATOR_IDENTITY
    identity = cluster.azure.seed_identity(AZURE_SUBSCRIPTION, resource_group, name)
    subject = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"
    credential = FederatedIdentityCredential(issuer=cluster.control_plane.server, subject=subject, audiences=[AUDIENCE])
    msi = cluster.azure.client(AZURE_SUBSCRIPTION)
    msi.federated_identity_credentials.create_or_update(resource_group, name, "operator", credential)
    return identity


def release_values(cluster: NodeCluster, **more: Any) -> dict[str, Any]:
    repository, tag = cluster.image.rsplit(":", 1)
    operator_client_id = operator_azure_identity(cluster)["properties"]["clientId"]
    # Where each cloud is here (endpoints, not credentials), and moto's test keys: the operator's own AWS
    # credentials, as Pod Identity or IRSA would give them in a cluster. Its Azure credential is workload identity.
    env = {
        **cluster.aws.env,
        **gcp_env(cluster),
        "PORTER_AZURE_CA_FILE": AZURE_CA_FILE,
        "REQUESTS_CA_BUNDLE": AZURE_CA_FILE,  # for Entra, which azure-identity reaches through requests
    }
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "config": {
            "eksClusterName": EKS_CLUSTER,
            "awsRegion": AWS_REGION,
            "awsAccountId": AWS_ACCOUNT_ID,
            "gcpProjectId": GCP_PROJECT,
            "azureSubscriptionId": AZURE_SUBSCRIPTION,
            "azureArmEndpoint": cluster.azure.endpoint,
            "oidcIssuer": cluster.control_plane.server,
            "retryBaseSeconds": 0.5,
            "retryMaxSeconds": 4,
        },
        "serviceAccount": {"azureClientId": operator_client_id},
        "extraEnv": [{"name": k, "value": v} for k, v in env.items()],
        "extraVolumes": [{"name": "azure-ca", "configMap": {"name": AZURE_CA}}],
        "extraVolumeMounts": [{"name": "azure-ca", "mountPath": AZURE_CA_DIR, "readOnly": True}],
        "hostAliases": ENTRA_ALIASES,
        "policy": {
            "rules": [
                {
                    "name": "workloads",
                    "namespaces": ["wl-*"],
                    "aws": {"roles": ["*"]},
                    "azure": {"identities": ["*"]},
                    "gcp": {"serviceAccounts": ["*"]},
                }
            ]
        },
        # Small enough for this machine's node; the chart's defaults are for a cluster.
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        **more,
    }


def gcp_env(cluster: NodeCluster) -> dict[str, str]:
    """Where Google IAM is here: the emulator's plaintext gRPC endpoint (an endpoint, not a credential)."""
    return {"PORTER_GCP_IAM_ENDPOINT": cluster.gcp.endpoint}


def operator_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    """The release's pods that are not on their way out."""
    listed = cluster.kubectl("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/instance=" + RELEASE, "-o",
                             "json")  # fmt: skip
    return [p for p in json.loads(listed.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]


REPLICAS = 2  # the chart's default: one leader, every replica serves the webhook


def all_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    pods = operator_pods(cluster)
    assert len(pods) == REPLICAS, [p["metadata"]["name"] for p in pods]
    return pods


def webhook_endpoints(cluster: NodeCluster) -> set[str]:
    out = cluster.kubectl("-n", NAMESPACE, "get", "endpointslices", "-l",
                          f"kubernetes.io/service-name={FULLNAME}-webhook", "-o", "json")  # fmt: skip
    return {
        address
        for found in json.loads(out.stdout)["items"]
        for endpoint in found.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint["addresses"]
    }


def holder(cluster: NodeCluster) -> str:
    """The pod that holds the release's Lease (its identity is the pod's hostname and a random suffix)."""
    got = cluster.kubectl("-n", NAMESPACE, "get", "lease", FULLNAME, "-o", "json", check=False)
    if got.returncode != 0:
        return ""
    return str(json.loads(got.stdout)["spec"].get("holderIdentity") or "").rsplit("_", 1)[0]


def apply_dry_run(cluster: NodeCluster, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """A server-side dry run: the webhook answers it like a real apply, nothing is stored."""
    return cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(obj), check=False)


def wait_available(cluster: NodeCluster) -> list[dict[str, Any]]:
    waited = cluster.kubectl("-n", NAMESPACE, "wait", "--for=condition=Available", f"deployment/{FULLNAME}",
                             "--timeout=240s", check=False)  # fmt: skip
    if waited.returncode != 0:
        described = cluster.kubectl("-n", NAMESPACE, "describe", "pods", check=False).stdout
        raise AssertionError(f"the operator Deployment is not Available: {waited.stderr}\n{described[-4000:]}")
    rolled = cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{FULLNAME}", "--timeout=240s",
                             check=False)  # fmt: skip
    assert rolled.returncode == 0, rolled.stderr
    return wait_for(lambda: _all_ready(cluster), 60, interval=1, what="every replica ready")


def _all_ready(cluster: NodeCluster) -> list[dict[str, Any]] | None:
    pods = operator_pods(cluster)
    ready = [p for p in pods if all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])]
    return pods if len(pods) == REPLICAS and len(ready) == REPLICAS else None


def connection(
    namespace: str, name: str, service_account: str, role: str = "", email: str = "", azure: str = ""
) -> dict[str, Any]:
    """A connection to the AWS `role`, or given `email` to that GCP service account, or given `azure`
    ("resource-group/identity") to that managed identity."""
    cloud: dict[str, Any] = {"aws": {"role": role}}
    if email:
        cloud = {"gcp": {"serviceAccountEmail": email}}
    if azure:
        resource_group, identity = azure.split("/")
        cloud = {"azure": {"identityName": identity, "resourceGroup": resource_group}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceIdentityConnection",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"serviceAccountName": service_account, **cloud},
    }


def ready_condition(cluster: NodeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("-n", namespace, "get", "sic", name, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), None)


def wait_ready(cluster: NodeCluster, namespace: str, name: str) -> None:
    def ready() -> dict[str, Any] | None:
        found = ready_condition(cluster, namespace, name)
        return found if found and found["status"] == "True" else None

    wait_for(ready, 60, interval=0.5, what=f"connection {namespace}/{name} to be Ready")


def aws_pod_env(cluster: NodeCluster) -> dict[str, str]:
    return {
        # As EKS's Pod Identity webhook sets them.
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{POD_IDENTITY_AGENT_ADDRESS}/v1/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": EKS_TOKEN.path,
        "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_REGION": AWS_REGION,
        # Where "AWS" is here: the emulator (an endpoint, not a credential).
        "AWS_ENDPOINT_URL": cluster.aws.endpoint,
    }


def run_workload(
    cluster: NodeCluster,
    namespace: str,
    service_account: str,
    script: str,
    env: dict[str, str],
    token: Token | None,
    config_map: str | None = None,
    directory: str = "",
    labels: dict[str, str] | None = None,
    host_aliases: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run `script` with the operator image's Python in a pod of `service_account`, with `env` and `token`
    mounted (as the cloud's injection would), and `config_map`'s keys beside the token (or in `directory`); its
    last JSON line, parsed."""
    name = f"workload-{uuid.uuid4().hex[:6]}"
    sources: list[dict[str, Any]] = [{"configMap": {"name": config_map}}] if config_map else []
    if token:
        token_source = {"audience": token.audience, "expirationSeconds": 86400, "path": token.file}
        sources.insert(0, {"serviceAccountToken": token_source})
    mounts = [{"name": "cloud-token", "mountPath": directory or (token.directory if token else ""), "readOnly": True}]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "serviceAccountName": service_account,
            "restartPolicy": "Never",
            "hostAliases": host_aliases or [],
            "containers": [
                {
                    "name": "app",
                    "image": cluster.image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "volumeMounts": mounts if sources else [],
                }
            ],
            "volumes": [{"name": "cloud-token", "projected": {"sources": sources}}] if sources else [],
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))

    def finished() -> str | None:
        out = cluster.kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}")
        return out.stdout if out.stdout in ("Succeeded", "Failed") else None

    phase = wait_for(finished, 120, interval=1, what=f"workload pod {name} to finish")
    logs = cluster.kubectl("-n", namespace, "logs", name).stdout
    cluster.kubectl("-n", namespace, "delete", "pod", name, "--wait=false")
    assert phase == "Succeeded", logs
    lines = [line for line in logs.splitlines() if line.startswith("{")]
    assert lines, logs
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def check(cluster: NodeCluster, namespace: str, name: str) -> dict[str, Any]:
    """`porter-identity check` from the host, with the release's AWS settings: its JSON verdict."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PORTER_"))},
        **cluster.aws.env,
        "KUBECONFIG": str(cluster.control_plane.kubeconfig),
        "PORTER_EKS_CLUSTER_NAME": EKS_CLUSTER,
        "PORTER_AWS_REGION": AWS_REGION,
        **gcp_env(cluster),
        "PORTER_GCP_PROJECT_ID": GCP_PROJECT,
        "PORTER_OIDC_ISSUER": cluster.control_plane.server,
        "PORTER_GCP_STS_ENDPOINT": cluster.gcp.rest_endpoint,
        "PORTER_GCP_IAM_CREDENTIALS_ENDPOINT": cluster.gcp.rest_endpoint,
        "PORTER_AZURE_SUBSCRIPTION_ID": AZURE_SUBSCRIPTION,
        "PORTER_AZURE_ARM_ENDPOINT": cluster.azure.endpoint,
        "PORTER_AZURE_AUTHORITY": cluster.azure.endpoint,  # Entra, at the address this host knows it by
        "PORTER_AZURE_CA_FILE": str(cluster.azure.ca_file),
    }
    code, verdict = helpers.check(env, namespace, name)
    assert (code == 0) == verdict["ok"], (code, verdict)
    return verdict


def azure_ca(cluster: NodeCluster, namespace: str) -> None:
    """The emulator's certificate as a ConfigMap of `namespace`, for its pods to trust."""
    from_file = f"--from-file={CERT_NAME}={cluster.azure.ca_file}"
    cluster.kubectl("-n", namespace, "create", "configmap", AZURE_CA, from_file)


@pytest.fixture(scope="module")
def installed(node_cluster: NodeCluster) -> Iterator[NodeCluster]:
    """The chart installed (never waited on by helm: the tests wait, and say what is missing)."""
    node_cluster.kubectl("create", "namespace", NAMESPACE)
    azure_ca(node_cluster, NAMESPACE)
    out = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
               *value_args(release_values(node_cluster)), kubeconfig=node_cluster.control_plane.kubeconfig,
               check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    yield node_cluster
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, kubeconfig=node_cluster.control_plane.kubeconfig,
         check=False)  # fmt: skip


@pytest.fixture(scope="module")
def workload(installed: NodeCluster) -> dict[str, str]:
    """A namespace the policy covers, a ServiceAccount and an IAM role it may be linked to."""
    namespace = f"wl-{uuid.uuid4().hex[:6]}"
    installed.kubectl("create", "namespace", namespace)
    installed.kubectl("-n", namespace, "create", "serviceaccount", "checkout")
    role = f"checkout-{uuid.uuid4().hex[:6]}"
    installed.aws.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=pod_identity_trust_policy())
    return {"namespace": namespace, "serviceAccount": "checkout", "role": role}


def test_deployment_becomes_available_non_root_with_a_read_only_root(installed: NodeCluster) -> None:
    pods = wait_available(installed)
    pod = pods[0]
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] and status["image"].endswith(installed.image.split("/", 1)[1])
    name = pod["metadata"]["name"]
    # The process itself, seen from inside the container: the image's user, not root.
    assert installed.kubectl("-n", NAMESPACE, "exec", name, "--", "id", "-u").stdout.strip() == "65532"
    written = installed.kubectl("-n", NAMESPACE, "exec", name, "--", "touch", "/opt/x", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    # /tmp is the chart's emptyDir: writable.
    assert installed.kubectl("-n", NAMESPACE, "exec", name, "--", "touch", "/tmp/x", check=False).returncode == 0
    # One replica holds the release's Lease; the other waits.
    names = {p["metadata"]["name"] for p in pods}
    wait_for(lambda: holder(installed) in names, 60, what="one replica to hold the Lease")


def test_the_webhook_is_served_from_the_pod_and_refuses_a_bad_connection(
    installed: NodeCluster, workload: dict[str, str]
) -> None:
    pod_ips = {p["status"]["podIP"] for p in wait_available(installed)}
    # The webhook Service sends to every ready replica, leader or standby, and to nothing else.
    wait_for(lambda: webhook_endpoints(installed) == pod_ips, 30, what="the webhook Service to select the pods")
    # Porter's own roles are refused whatever the policy says.
    bad = connection(workload["namespace"], "bad", workload["serviceAccount"], "porter-manager")
    refused = installed.kubectl("apply", "-f", "-", stdin=json.dumps(bad), check=False)
    assert refused.returncode != 0
    assert f'admission webhook "{WEBHOOK}" denied the request' in refused.stderr
    assert "porter-manager" in refused.stderr
    # A namespace no rule covers.
    installed.kubectl("create", "namespace", "uncovered", check=False)
    uncovered = connection("uncovered", "any", "any", workload["role"])
    refused = installed.kubectl("apply", "-f", "-", stdin=json.dumps(uncovered), check=False)
    assert f'admission webhook "{WEBHOOK}" denied the request' in refused.stderr
    assert "not allowed by policy" in refused.stderr


def test_an_aws_connection_becomes_ready_and_a_pod_gets_the_role(
    installed: NodeCluster, workload: dict[str, str]
) -> None:
    namespace, service_account, role = workload["namespace"], workload["serviceAccount"], workload["role"]
    installed.kubectl("apply", "-f", "-", stdin=json.dumps(connection(namespace, "checkout", service_account, role)))
    wait_ready(installed, namespace, "checkout")
    associations = installed.aws.client("eks").list_pod_identity_associations(clusterName=EKS_CLUSTER)
    assert [(a["namespace"], a["serviceAccount"]) for a in associations["associations"]] == [
        (namespace, service_account)
    ]
    # The workload: boto3's default chain in the pod, through the node's Pod Identity Agent and EKS Auth.
    answer = run_workload(installed, namespace, service_account, AWS_WORKLOAD, aws_pod_env(installed), EKS_TOKEN)
    assert answer.get("arn", "").startswith(f"arn:aws:sts::{AWS_ACCOUNT_ID}:assumed-role/{role}/"), answer
    # The check's verdict names the identity the pod saw.
    verdict = check(installed, namespace, "checkout")
    assert (verdict["ok"], verdict["reason"], verdict["identity"]) == (True, "IdentityObtained", answer["arn"])


def test_after_the_connection_is_deleted_the_pod_is_refused(installed: NodeCluster, workload: dict[str, str]) -> None:
    namespace, service_account = workload["namespace"], workload["serviceAccount"]
    installed.kubectl("-n", namespace, "delete", "sic", "checkout", "--timeout=60s")
    associations = installed.aws.client("eks").list_pod_identity_associations(clusterName=EKS_CLUSTER)
    assert associations["associations"] == []
    answer = run_workload(installed, namespace, service_account, AWS_WORKLOAD, aws_pod_env(installed), EKS_TOKEN)
    assert answer.get("error") == "CredentialRetrievalError", answer
    # The refusal is EKS Auth's, passed on by the agent.
    assert "ResourceNotFoundException" in answer["message"], answer
    # The check agrees: there is nothing to get credentials from.
    verdict = check(installed, namespace, "checkout")
    assert (verdict["ok"], verdict["failedStep"], verdict["reason"]) == (False, "connection", "ConnectionNotFound")


@pytest.fixture(scope="module")
def gcp_workload(installed: NodeCluster) -> dict[str, str]:
    """A ServiceAccount in a namespace the policy covers, a customer's IAM service account, and the credential
    configuration a fleet workload mounts for it."""
    namespace = f"wl-{uuid.uuid4().hex[:6]}"
    installed.kubectl("create", "namespace", namespace)
    installed.kubectl("-n", namespace, "create", "serviceaccount", "reports")
    email = installed.gcp.seed_service_account(GCP_PROJECT, f"reports-{uuid.uuid4().hex[:6]}")
    rest = installed.gcp.rest_endpoint  # STS and IAM Credentials, where sts/iamcredentials.googleapis.com would be
    configuration = {
        "type": "external_account",
        "audience": f"identitynamespace:{GCP_POOL}:{installed.control_plane.server}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{rest}/v1/token",
        "service_account_impersonation_url": f"{rest}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
        "credential_source": {"file": GCP_TOKEN.path},
    }
    installed.kubectl("-n", namespace, "create", "configmap", "gcp-ksa",
                      f"--from-literal={GCP_CONFIG_FILE}={json.dumps(configuration)}")  # fmt: skip
    return {"namespace": namespace, "serviceAccount": "reports", "email": email}


def run_gcp_workload(cluster: NodeCluster, found: dict[str, str]) -> dict[str, Any]:
    env = {"GOOGLE_APPLICATION_CREDENTIALS": f"{GCP_TOKEN.directory}/{GCP_CONFIG_FILE}"}
    return run_workload(
        cluster, found["namespace"], found["serviceAccount"], GCP_WORKLOAD, env, GCP_TOKEN, config_map="gcp-ksa"
    )


def test_a_gcp_connection_becomes_ready_and_a_pod_gets_the_service_account(
    installed: NodeCluster, gcp_workload: dict[str, str]
) -> None:
    namespace, service_account, email = gcp_workload["namespace"], gcp_workload["serviceAccount"], gcp_workload["email"]
    # Before the link, Google refuses the pod: its federated principal may not act as the service account.
    answer = run_gcp_workload(installed, gcp_workload)
    assert answer.get("error") == "RefreshError" and "iam.serviceAccounts.getAccessToken" in answer["message"], answer
    linked = connection(namespace, "reports", service_account, email=email)
    installed.kubectl("apply", "-f", "-", stdin=json.dumps(linked))
    wait_ready(installed, namespace, "reports")
    member = f"serviceAccount:{GCP_POOL}[{namespace}/{service_account}]"
    policy = installed.gcp.client().get_iam_policy(
        request={"resource": f"projects/{GCP_PROJECT}/serviceAccounts/{email}"}
    )
    assert [list(b.members) for b in policy.bindings if b.role == "roles/iam.workloadIdentityUser"] == [[member]]
    # The workload: google-auth's default chain in the pod, through STS and generateAccessToken.
    answer = run_gcp_workload(installed, gcp_workload)
    assert (answer.get("email"), answer.get("kind")) == (email, "google.auth.identity_pool"), answer
    # The check's verdict names the identity the pod got.
    verdict = check(installed, namespace, "reports")
    assert (verdict["ok"], verdict["reason"], verdict["identity"]) == (True, "IdentityObtained", email), verdict


def test_after_the_gcp_connection_is_deleted_the_pod_is_refused(
    installed: NodeCluster, gcp_workload: dict[str, str]
) -> None:
    namespace, email = gcp_workload["namespace"], gcp_workload["email"]
    installed.kubectl("-n", namespace, "delete", "sic", "reports", "--timeout=60s")
    policy = installed.gcp.client().get_iam_policy(
        request={"resource": f"projects/{GCP_PROJECT}/serviceAccounts/{email}"}
    )
    assert [b for b in policy.bindings if b.role == "roles/iam.workloadIdentityUser"] == []
    answer = run_gcp_workload(installed, gcp_workload)
    # Google's refusal, from generateAccessToken: STS still federates the token, IAM no longer lets it act.
    assert answer.get("error") == "RefreshError", answer
    assert "PERMISSION_DENIED" in answer["message"] and "iam.serviceAccounts.getAccessToken" in answer["message"]
    verdict = check(installed, namespace, "reports")
    assert (verdict["ok"], verdict["failedStep"], verdict["reason"]) == (False, "connection", "ConnectionNotFound")


@pytest.fixture(scope="module")
def azure_workload(installed: NodeCluster) -> dict[str, str]:
    """A ServiceAccount in a namespace the policy covers and a customer's user-assigned managed identity."""
    namespace = f"wl-{uuid.uuid4().hex[:6]}"
    installed.kubectl("create", "namespace", namespace)
    installed.kubectl("-n", namespace, "create", "serviceaccount", "ledger")
    azure_ca(installed, namespace)
    identity = installed.azure.seed_identity(AZURE_SUBSCRIPTION, "ledger-rg", f"ledger-{uuid.uuid4().hex[:6]}")
    return {
        "namespace": namespace,
        "serviceAccount": "ledger",
        "resourceGroup": "ledger-rg",
        "identity": identity["name"],
        "clientId": identity["properties"]["clientId"],
        "principalId": identity["properties"]["principalId"],
    }


def run_azure_workload(cluster: NodeCluster, found: dict[str, str], client_id: str = "") -> dict[str, Any]:
    """A pod labelled for workload identity; given `client_id`, its manifest names the identity itself (the
    webhook keeps a variable the container sets), so Entra is asked even when the ServiceAccount names none."""
    env = {"REQUESTS_CA_BUNDLE": AZURE_CA_FILE, **({"AZURE_CLIENT_ID": client_id} if client_id else {})}
    return run_workload(
        cluster, found["namespace"], found["serviceAccount"], AZURE_WORKLOAD, env, None, config_map=AZURE_CA,
        directory=AZURE_CA_DIR, labels={USE_LABEL: "true"}, host_aliases=ENTRA_ALIASES,
    )  # fmt: skip


def federated(cluster: NodeCluster, found: dict[str, str]) -> list[tuple[str, str]]:
    msi = cluster.azure.client(AZURE_SUBSCRIPTION)
    listed = msi.federated_identity_credentials.list(found["resourceGroup"], found["identity"])
    return [(c.issuer, c.subject) for c in listed]


def test_an_azure_connection_becomes_ready_and_a_pod_gets_the_identity(
    installed: NodeCluster, azure_workload: dict[str, str]
) -> None:
    namespace, service_account = azure_workload["namespace"], azure_workload["serviceAccount"]
    # Before the link, Entra refuses the pod: no federated credential of the identity trusts its token.
    answer = run_azure_workload(installed, azure_workload, client_id=azure_workload["clientId"])
    assert answer.get("error") == "ClientAuthenticationError" and "AADSTS70021" in answer["message"], answer
    identity = f"{azure_workload['resourceGroup']}/{azure_workload['identity']}"
    linked = connection(namespace, "ledger", service_account, azure=identity)
    installed.kubectl("apply", "-f", "-", stdin=json.dumps(linked))
    wait_ready(installed, namespace, "ledger")
    # Made by the operator in its pod, with its own workload identity token.
    subject = f"system:serviceaccount:{namespace}:{service_account}"
    assert federated(installed, azure_workload) == [(installed.control_plane.server, subject)]
    # The workload: the webhook's injection from the ServiceAccount the operator annotated, then
    # DefaultAzureCredential's default chain in the pod.
    answer = run_azure_workload(installed, azure_workload)
    assert answer == {"clientId": azure_workload["clientId"], "principalId": azure_workload["principalId"]}, answer
    verdict = check(installed, namespace, "ledger")
    assert (verdict["ok"], verdict["reason"]) == (True, "IdentityObtained"), verdict
    assert f"client {answer['clientId']} (principal {answer['principalId']})" in verdict["identity"], verdict


def test_after_the_azure_connection_is_deleted_the_pod_is_refused(
    installed: NodeCluster, azure_workload: dict[str, str]
) -> None:
    namespace = azure_workload["namespace"]
    installed.kubectl("-n", namespace, "delete", "sic", "ledger", "--timeout=60s")
    assert federated(installed, azure_workload) == []
    # The annotations the webhook reads are gone too: a new pod gets no client id from them.
    account = installed.kubectl(
        "-n", namespace, "get", "serviceaccount", azure_workload["serviceAccount"], "-o", "json"
    )
    assert CLIENT_ID not in (json.loads(account.stdout)["metadata"].get("annotations") or {})
    # Even a pod whose manifest still names the identity is refused, by Entra.
    answer = run_azure_workload(installed, azure_workload, client_id=azure_workload["clientId"])
    assert answer.get("error") == "ClientAuthenticationError" and "AADSTS70021" in answer["message"], answer
    verdict = check(installed, namespace, "ledger")
    assert (verdict["ok"], verdict["failedStep"], verdict["reason"]) == (False, "connection", "ConnectionNotFound")


def test_hack_cloud_smoke_runs_a_connection_s_whole_life_on_each_cloud(installed: NodeCluster, tmp_path: Path) -> None:
    """The script users run on their EKS, AKS and GKE clusters, here against the emulators (it needs this file's
    node, so its test lives here; tests/e2e/test_cloud_smoke.py)."""
    from tests.e2e.test_cloud_smoke import failing_smoke_on_the_local_node, smoke_on_the_local_node

    wait_available(installed)
    smoke_on_the_local_node(installed, tmp_path)
    failing_smoke_on_the_local_node(installed, tmp_path)


def test_upgrade_with_a_changed_value_rolls_the_pods_and_admission_never_fails(
    installed: NodeCluster, workload: dict[str, str]
) -> None:
    """RollingUpdate with maxUnavailable 0, a preStop sleep and the webhook on every replica: admission answers
    all through the upgrade, and the leader's Lease passes to a new pod."""
    before = {p["metadata"]["uid"] for p in wait_available(installed)}
    good = connection(workload["namespace"], "after-upgrade", workload["serviceAccount"], workload["role"])
    answers: list[subprocess.CompletedProcess[str]] = []
    done = threading.Event()

    def keep_applying() -> None:
        while not done.is_set():
            answers.append(apply_dry_run(installed, good))
            time.sleep(0.5)

    applier = threading.Thread(target=keep_applying)
    applier.start()
    try:
        values = release_values(installed, podAnnotations={"porter.run/test-revision": "2"})
        out = helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, *value_args(values),
                   kubeconfig=installed.control_plane.kubeconfig, check=False)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "REVISION: 2" in out.stdout

        def rolled() -> list[dict[str, Any]] | None:
            pods = _all_ready(installed)
            return pods if pods and not {p["metadata"]["uid"] for p in pods} & before else None

        pods = wait_for(rolled, 240, interval=1, what="both operator pods replaced by new ones (RollingUpdate)")
        assert all(p["metadata"]["annotations"]["porter.run/test-revision"] == "2" for p in pods)
        ips = {p["status"]["podIP"] for p in pods}
        wait_for(lambda: webhook_endpoints(installed) == ips, 60, what="the Service to follow")
        time.sleep(2)
    finally:
        done.set()
        applier.join()
    failed = [a.stderr for a in answers if a.returncode != 0]
    assert len(answers) > 10 and failed == [], failed[:3]
    # The old leader released its Lease on SIGTERM (after its preStop sleep); a new pod holds it.
    wait_for(lambda: holder(installed) in {p["metadata"]["name"] for p in pods}, 60, what="a new pod to lead")
    bad = connection(workload["namespace"], "bad", workload["serviceAccount"], "porter-manager")
    refused = apply_dry_run(installed, bad)
    assert f'admission webhook "{WEBHOOK}" denied the request' in refused.stderr


def test_uninstall_leaves_only_the_crds(installed: NodeCluster) -> None:
    out = helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "120s",
               kubeconfig=installed.control_plane.kubeconfig, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr

    def left() -> set[str]:
        out = installed.kubectl("-n", NAMESPACE, "get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings",
                                "-o", "name").stdout.split()  # fmt: skip
        # The CA ConfigMap is this test's, made before the install.
        return set(out) - {"serviceaccount/default", "configmap/kube-root-ca.crt", f"configmap/{AZURE_CA}"}

    # The pod goes last: the garbage collector deletes it after its ReplicaSet, and it stops gracefully.
    wait_for(lambda: not left(), 60, interval=1, what="the release's objects to go")
    cluster_wide = installed.kubectl("get", "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,"
                                     "validatingwebhookconfigurations", "-o", "name").stdout.split()  # fmt: skip
    assert [name for name in cluster_wide if RELEASE in name] == []
    crds = installed.kubectl("get", "crds", "-o", "name").stdout.split()
    assert {f"customresourcedefinition.apiextensions.k8s.io/{p}.{GROUP}" for p in
            ("serviceidentityconnections", "porterrolesets")} <= set(crds)  # fmt: skip
