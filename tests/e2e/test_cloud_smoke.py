"""hack/cloud-smoke, the script users run on their own EKS, AKS and GKE clusters, run here so that it cannot rot.

Its whole run (identities made with the SDKs, a connection Ready, pods whose SDKs get the identity, the identity
changed, the connection deleted, nothing left) needs pods, so it runs on the local node: `smoke_on_the_local_node`
is called by a test of tests/e2e/test_node.py, the one file that may hold the node (CONTRIBUTING.md). The tests
here need no node: what the script says when a cloud is not configured or the operator is not installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.msi.models import FederatedIdentityCredential

from porter_dev import REPO_ROOT
from porter_dev.azure import CERT_NAME, AzureEmulator
from porter_dev.controlplane import ControlPlane
from porter_dev.gcp import GcpEmulator
from porter_dev.pod_identity_agent import POD_IDENTITY_AGENT_ADDRESS
from porter_dev.processes import AWS_REGION, AwsEmulator
from porter_dev.smoke_clouds import Aws, Azure, Cloud, Gcp
from tests.conftest import AZURE_SUBSCRIPTION, EKS_CLUSTER, GCP_POOL, GCP_PROJECT, NodeCluster

pytestmark = pytest.mark.e2e

SCRIPT = REPO_ROOT / "hack" / "cloud-smoke"
RESOURCE_GROUP = "smoke-rg"
# Every setting the script reads from the environment; a test's run sees only the ones it sets.
CLOUD_ENV = ("AWS_", "AZURE_", "AKS_", "GOOGLE_", "CLOUDSDK_", "EKS_", "PORTER_", "KUBECONFIG")


def run_smoke(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(CLOUD_ENV)}
    # No shared config or ADC files of the machine either: only what the test gives.
    clean |= {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "HOME": "/nonexistent"}
    return subprocess.run(
        [str(SCRIPT), *args], env=clean | env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_a_cloud_that_is_not_configured_is_skipped_with_the_reason() -> None:
    out = run_smoke({})
    assert out.returncode == 2, out
    assert "nothing to run: no cloud is configured" in out.stderr
    assert "aws    SKIP         no EKS cluster: set EKS_CLUSTER_NAME" in out.stdout, out.stdout
    assert "azure  SKIP         no subscription: set AZURE_SUBSCRIPTION_ID" in out.stdout
    assert "gcp    SKIP         no project: set GOOGLE_CLOUD_PROJECT" in out.stdout
    # Half a configuration says what is missing: a cluster without credentials, then without the second role.
    out = run_smoke({"EKS_CLUSTER_NAME": "prod", "AWS_REGION": "us-east-1"}, "--clouds", "aws")
    assert "aws    SKIP         no AWS credentials in the SDK's chain" in out.stdout, out.stdout
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example"}
    out = run_smoke({"EKS_CLUSTER_NAME": "prod", "AWS_REGION": "us-east-1", **keys,
                     "PORTER_SMOKE_AWS_ROLES": "arn:aws:iam::123456789012:role/a"}, "--clouds", "aws")  # fmt: skip
    assert out.returncode == 2, out
    assert "two IAM roles are needed (the second for the identity change)" in out.stdout, out.stdout


def test_without_the_operator_it_says_so_and_makes_nothing(control_plane: ControlPlane, crds: None) -> None:
    """The CRDs alone (as `kubectl apply -f crds/` leaves them) are not an operator: the script stops before it
    makes anything, and says why."""
    roles = "arn:aws:iam::123456789012:role/a,arn:aws:iam::123456789012:role/b"
    env = {
        "KUBECONFIG": str(control_plane.kubeconfig),
        "EKS_CLUSTER_NAME": "prod",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
        "PORTER_SMOKE_AWS_ROLES": roles,
    }
    out = run_smoke(env, "--timeout", "2")
    assert out.returncode == 2, out
    assert "porter-identity operator is not" in out.stderr, out.stderr
    assert "app.kubernetes.io/name=porter-identity" in out.stderr
    assert "pid-smoke" not in out.stdout + out.stderr  # no namespace, no connection, nothing made


def test_links_the_operator_left_are_removed_by_the_cleanup(
    aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator, eks_cluster: str, make_role: Callable[..., str]
) -> None:
    """When the operator does not remove a link (it is down, or wrong), the run's cleanup removes the links of its
    own ServiceAccount, and only those: another ServiceAccount's stay."""
    namespace, other = f"pid-smoke-x-{uuid.uuid4().hex[:6]}", "shop"
    env = {
        **aws.env,
        "PORTER_AZURE_ARM_ENDPOINT": azure.endpoint,
        "PORTER_AZURE_CA_FILE": str(azure.ca_file),
        "PORTER_AZURE_CREDENTIAL": "emulator",
        "PORTER_GCP_IAM_ENDPOINT": gcp.endpoint,
    }
    eks = aws.client("eks")
    roles = [make_role(), make_role()]
    for space in (namespace, other):
        eks.create_pod_identity_association(
            clusterName=eks_cluster, namespace=space, serviceAccount="smoke", roleArn=roles[1]
        )
    group = f"rg-{uuid.uuid4().hex[:6]}"
    names = [azure.seed_identity(AZURE_SUBSCRIPTION, group, f"id-{i}")["name"] for i in range(2)]
    msi = azure.client(AZURE_SUBSCRIPTION)
    for space in (namespace, other):
        credential = FederatedIdentityCredential(
            issuer="https://issuer.example", subject=f"system:serviceaccount:{space}:smoke", audiences=["api://x"]
        )
        msi.federated_identity_credentials.create_or_update(group, names[0], f"fic-{space}", credential)
    emails = [gcp.seed_service_account(GCP_PROJECT, f"smoke-{uuid.uuid4().hex[:6]}") for _ in range(2)]
    iam = gcp.client()
    resource = f"projects/{GCP_PROJECT}/serviceAccounts/{emails[0]}"
    policy = iam.get_iam_policy(request={"resource": resource})
    members = [f"serviceAccount:{GCP_POOL}[{space}/smoke]" for space in (namespace, other)]
    policy.bindings.add(role="roles/iam.workloadIdentityUser", members=members)
    iam.set_iam_policy(request={"resource": resource, "policy": policy})

    with mock.patch.dict(os.environ, env):
        clouds: list[Cloud] = [
            Aws(eks_cluster, AWS_REGION, ",".join(roles)),
            Azure(AZURE_SUBSCRIPTION, group, "", "", ",".join(names)),
            Gcp(GCP_PROJECT, ",".join(emails)),
        ]
        for cloud in clouds:
            cloud.use_given()
            found = cloud.links(namespace, "smoke")
            assert sum(len(links) for links in found.values()) == 1, (cloud.name, found)
            cloud.unlink(namespace, "smoke")
            assert cloud.links(namespace, "smoke") == {i: [] for i in cloud.identities}, cloud.name
            # Another ServiceAccount's link, on the same identity, is not the run's: it stays.
            assert sum(len(links) for links in cloud.links(other, "smoke").values()) == 1, cloud.name
    assert {a["namespace"] for a in eks.list_pod_identity_associations(clusterName=eks_cluster)["associations"]} >= {
        other
    }
    kept = iam.get_iam_policy(request={"resource": resource})
    assert [list(b.members) for b in kept.bindings] == [[members[1]]]


# On the local node (called from tests/e2e/test_node.py, on its Helm release).

# What EKS's Pod Identity webhook, the fleet Workload Identity setup and the emulator's Entra need in a pod here; a
# cloud cluster's own injection adds them (docs/cloud-smoke.md: --pod-overlay).
EKS_TOKEN_DIR = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
GCP_TOKEN_DIR = "/var/run/secrets/tokens/gcp-ksa"
GCP_CONFIG_FILE = "google-application-credentials.json"
AZURE_CA_DIR = "/etc/porter-dev/azure"


IDENTITY = "{{identity}}"  # filled in by the script with the identity the connection names at each probe


def node_overlay(cluster: NodeCluster) -> dict[str, Any]:
    rest = cluster.gcp.rest_endpoint  # STS and IAM Credentials, where sts/iamcredentials.googleapis.com would be
    gcp_configuration = {
        "type": "external_account",
        "audience": f"identitynamespace:{GCP_POOL}:{cluster.control_plane.server}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{rest}/v1/token",
        "service_account_impersonation_url": f"{rest}/v1/projects/-/serviceAccounts/{IDENTITY}:generateAccessToken",
        "credential_source": {"file": f"{GCP_TOKEN_DIR}/token"},
    }
    return {
        "aws": {
            "env": {
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{POD_IDENTITY_AGENT_ADDRESS}/v1/credentials",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": f"{EKS_TOKEN_DIR}/eks-pod-identity-token",
                "AWS_DEFAULT_REGION": AWS_REGION,
                "AWS_REGION": AWS_REGION,
                "AWS_ENDPOINT_URL": cluster.aws.endpoint,
            },
            "volumes": [
                {
                    "name": "eks-token",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": "pods.eks.amazonaws.com",
                                    "expirationSeconds": 86400,
                                    "path": "eks-pod-identity-token",
                                }
                            }
                        ]
                    },
                }
            ],
            "volumeMounts": [{"name": "eks-token", "mountPath": EKS_TOKEN_DIR, "readOnly": True}],
        },
        "azure": {
            "env": {"REQUESTS_CA_BUNDLE": f"{AZURE_CA_DIR}/{CERT_NAME}"},
            "configMaps": {"azure-emulator-ca": {CERT_NAME: cluster.azure.ca_file.read_text()}},
            "volumes": [{"name": "azure-ca", "configMap": {"name": "azure-emulator-ca"}}],
            "volumeMounts": [{"name": "azure-ca", "mountPath": AZURE_CA_DIR, "readOnly": True}],
            "hostAliases": [{"ip": cluster.control_plane.address, "hostnames": ["login.microsoftonline.com"]}],
        },
        "gcp": {
            "env": {"GOOGLE_APPLICATION_CREDENTIALS": f"{GCP_TOKEN_DIR}/{GCP_CONFIG_FILE}"},
            "configMaps": {"gcp-ksa": {GCP_CONFIG_FILE: json.dumps(gcp_configuration)}},
            "volumes": [
                {
                    "name": "gcp-ksa",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": GCP_POOL,
                                    "expirationSeconds": 86400,
                                    "path": "token",
                                }
                            },
                            {"configMap": {"name": "gcp-ksa"}},
                        ]
                    },
                }
            ],
            "volumeMounts": [{"name": "gcp-ksa", "mountPath": GCP_TOKEN_DIR, "readOnly": True}],
        },
    }


def smoke_on_the_local_node(cluster: NodeCluster, workdir: Path) -> None:
    """The script on the node's cluster, the three clouds at once, against the emulators; then the emulators are
    asked, not the script, whether anything is left."""
    # What the customer has before: a resource group (the emulator makes one with its first identity), and two
    # IAM service accounts (the GCP emulator cannot delete service accounts, so the script is given them).
    cluster.azure.seed_identity(AZURE_SUBSCRIPTION, RESOURCE_GROUP, "existing")
    emails = [cluster.gcp.seed_service_account(GCP_PROJECT, f"smoke-{uuid.uuid4().hex[:6]}") for _ in range(2)]
    overlay = workdir / "overlay.json"
    overlay.write_text(json.dumps(node_overlay(cluster)))
    env = {
        "KUBECONFIG": str(cluster.control_plane.kubeconfig),
        **cluster.aws.env,  # the emulator's endpoint and moto's test keys
        "EKS_CLUSTER_NAME": EKS_CLUSTER,
        "AWS_REGION": AWS_REGION,
        "AZURE_SUBSCRIPTION_ID": AZURE_SUBSCRIPTION,
        "AZURE_RESOURCE_GROUP": RESOURCE_GROUP,
        "AZURE_LOCATION": "eastus",
        "AKS_OIDC_ISSUER": cluster.control_plane.server,
        "PORTER_AZURE_ARM_ENDPOINT": cluster.azure.endpoint,
        "PORTER_AZURE_CA_FILE": str(cluster.azure.ca_file),
        "PORTER_AZURE_CREDENTIAL": "emulator",
        "GOOGLE_CLOUD_PROJECT": GCP_PROJECT,
        "PORTER_GCP_IAM_ENDPOINT": cluster.gcp.endpoint,
        "PORTER_SMOKE_GCP_SERVICE_ACCOUNTS": ",".join(emails),
    }
    started = time.monotonic()
    out = run_smoke(env, "--create-identity=aws,azure", "--timeout", "120", "--pod-overlay", str(overlay))
    shown = f"{out.stdout}\n{out.stderr}\n(the run took {time.monotonic() - started:.0f}s)"
    print(shown)  # the run's own report, kept by pytest for a failing test
    assert out.returncode == 0, shown
    for cloud in ("aws", "azure", "gcp"):
        assert re.search(rf"^  {cloud} +PASS ", out.stdout, re.MULTILINE), shown
    # Each pod got the identity the connection named then: the first, and after the change the second.
    roles = re.findall(r"created \(tagged as the smoke run's\): (\S+), (\S+)\n", out.stdout)
    assert len(roles) == 2, shown  # the AWS roles and the Azure identities
    arns = next(r for r in roles if r[0].startswith("arn:aws:iam::"))
    identities = next(r for r in roles if r[0].startswith(f"{RESOURCE_GROUP}/"))
    for identity in (*arns, *identities, *emails):
        assert f"pod got {identity}" in out.stdout, (identity, shown)
    # The emulators, asked directly: no association, no federated credential, no member; the made identities gone.
    namespaces = set(re.findall(r"connection (pid-smoke-\w+-\w+)/smoke -> ", out.stdout))
    assert len(namespaces) == 3, shown
    eks = cluster.aws.client("eks")
    associations = eks.list_pod_identity_associations(clusterName=EKS_CLUSTER)["associations"]
    assert [a for a in associations if a["namespace"] in namespaces] == []
    iam = cluster.aws.client("iam")
    assert [r["Arn"] for r in iam.list_roles()["Roles"] if r["Arn"] in arns] == []
    msi = cluster.azure.client(AZURE_SUBSCRIPTION)
    for identity in identities:
        with pytest.raises(ResourceNotFoundError):
            msi.user_assigned_identities.get(*identity.split("/"))
    assert msi.user_assigned_identities.get(RESOURCE_GROUP, "existing").name == "existing"  # not the run's
    for email in emails:
        policy = cluster.gcp.client().get_iam_policy(
            request={"resource": f"projects/{GCP_PROJECT}/serviceAccounts/{email}"}
        )
        assert [list(b.members) for b in policy.bindings] == [], (email, policy)
    listed = cluster.kubectl("get", "namespaces", "-l", "app.kubernetes.io/created-by=porter-identity-smoke", "-o",
                             "jsonpath={.items[*].status.phase}").stdout.split()  # fmt: skip
    assert set(listed) <= {"Terminating"}, listed


def failing_smoke_on_the_local_node(cluster: NodeCluster, workdir: Path) -> None:
    """A run whose pods cannot get credentials (the agent's address is wrong) fails with a non-zero exit, and
    still deletes what it made: the roles, the connection (so the association) and the namespace."""
    overlay = node_overlay(cluster)
    overlay["aws"]["env"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:9/v1/credentials"
    (workdir / "broken.json").write_text(json.dumps(overlay))
    env = {
        "KUBECONFIG": str(cluster.control_plane.kubeconfig),
        **cluster.aws.env,
        "EKS_CLUSTER_NAME": EKS_CLUSTER,
        "AWS_REGION": AWS_REGION,
    }
    out = run_smoke(env, "--create-identity", "--timeout", "10", "--pod-overlay", str(workdir / "broken.json"))
    shown = f"{out.stdout}\n{out.stderr}"
    print(shown)
    assert out.returncode == 1, shown
    assert re.search(r"^  aws +FAIL .*did not get arn:aws:iam::", out.stdout, re.MULTILINE), shown
    assert "azure  SKIP" in out.stdout and "gcp    SKIP" in out.stdout, shown
    [arns] = re.findall(r"created \(tagged as the smoke run's\): (\S+), (\S+)\n", out.stdout)
    [namespace] = re.findall(r"connection (pid-smoke-aws-\w+)/smoke -> ", out.stdout)
    assert "cleanup: deleting the connection" in out.stdout, shown
    iam = cluster.aws.client("iam")
    assert [r["Arn"] for r in iam.list_roles()["Roles"] if r["Arn"] in arns] == []
    associations = cluster.aws.client("eks").list_pod_identity_associations(clusterName=EKS_CLUSTER)
    assert [a for a in associations["associations"] if a["namespace"] == namespace] == []
    phase = cluster.kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.phase}", check=False).stdout
    assert phase in ("", "Terminating"), phase
