"""`porter-identity check` end to end: a real ServiceAccount token exchanged with each emulated cloud, and refused
exactly where a broken link would refuse it in the cloud."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AwsEmulator, Operator
from tests.conftest import AZURE_SUBSCRIPTION, GCP_POOL, GCP_PROJECT
from tests.e2e import helpers
from tests.e2e.helpers import Connections

pytestmark = pytest.mark.e2e
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"

Check = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture(scope="module")
def clouds_trust_cluster(
    control_plane: ControlPlane, aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator, eks_cluster: str
) -> None:
    """What cluster creation does in each cloud: the EKS cluster's issuer, Entra's fetch, the GKE pool's provider."""
    aws.set_cluster_issuer(eks_cluster, control_plane.server, control_plane.ca_file)
    azure.trust_issuer(control_plane.server, control_plane.ca_file)
    gcp.add_workload_pool_provider(GCP_POOL, control_plane.server, control_plane.ca_file)


@pytest.fixture
def check(
    control_plane: ControlPlane, operator: Operator, azure: AzureEmulator, gcp: GcpEmulator, clouds_trust_cluster: None
) -> Check:
    """Run the real CLI with the operator's settings plus the token endpoints; (exit code, JSON verdict)."""
    env = {
        **os.environ,
        **operator.env,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "PORTER_AZURE_AUTHORITY": azure.endpoint,
        "PORTER_GCP_STS_ENDPOINT": gcp.rest_endpoint,
        "PORTER_GCP_IAM_CREDENTIALS_ENDPOINT": gcp.rest_endpoint,
    }

    def run(namespace: str, name: str, *args: str) -> tuple[int, dict[str, Any]]:
        return helpers.check(env, namespace, name, *args)

    return run


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def failure(verdict: dict[str, Any]) -> tuple[str | None, str | None]:
    return verdict["failedStep"], verdict["reason"]


def aws_ready(conns: Connections, make_role: Callable[..., str], service_account: Any, name: str = "api") -> str:
    role = make_role()
    service_account(conns.namespace, name)
    conns.create(name, name, aws={"role": role})
    return str(conns.wait_ready(name)["status"]["aws"]["associationId"])


def azure_ready(conns: Connections, azure: AzureEmulator, service_account: Any) -> dict[str, Any]:
    identity = azure.seed_identity(AZURE_SUBSCRIPTION, "check-rg", f"id-{uuid.uuid4().hex[:8]}")
    service_account(conns.namespace, "api")
    conns.create("api", "api", azure={"identityName": identity["name"], "resourceGroup": "check-rg"})
    return conns.wait_ready("api")


def gcp_ready(conns: Connections, gcp: GcpEmulator, service_account: Any) -> str:
    email = gcp.seed_service_account(GCP_PROJECT, f"chk-{uuid.uuid4().hex[:8]}")
    service_account(conns.namespace, "api")
    conns.create("api", "api", gcp={"serviceAccountEmail": email})
    conns.wait_ready("api")
    return email


# -- success -----------------------------------------------------------------------------------------------------


def test_aws_check_obtains_the_role_session(
    check: Check, conns: Connections, make_role: Callable[..., str], service_account: Any
) -> None:
    association = aws_ready(conns, make_role, service_account)
    role = conns.get("api")["status"]["aws"]["roleArn"]  # type: ignore[index]
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["ok"], verdict["reason"]) == (0, True, "IdentityObtained"), verdict
    role_name = role.rsplit("/", 1)[1]
    assert verdict["identity"] == f"arn:aws:sts::123456789012:assumed-role/{role_name}/eks-e2e-api"
    assert [s["step"] for s in verdict["steps"]] == ["connection", "serviceaccount", "token", "exchange", "identity"]
    assert association in verdict["steps"][3]["detail"]
    assert "eyJ" not in json.dumps(verdict)  # never a token


def test_azure_check_obtains_an_entra_token_arm_accepts(
    check: Check, conns: Connections, azure: AzureEmulator, service_account: Any
) -> None:
    status = azure_ready(conns, azure, service_account)["status"]["azure"]
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["reason"]) == (0, "IdentityObtained"), verdict
    assert verdict["identity"] == (
        f"client {status['clientId']} (principal {status['principalId']}) in tenant {status['tenantId']}"
    )
    assert "eyJ" not in json.dumps(verdict)


def test_gcp_check_obtains_an_access_token_for_the_service_account(
    check: Check, conns: Connections, gcp: GcpEmulator, service_account: Any
) -> None:
    email = gcp_ready(conns, gcp, service_account)
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["reason"], verdict["identity"]) == (0, "IdentityObtained", email), verdict
    assert f"serviceAccount:{GCP_POOL}[{conns.namespace}/api]" in verdict["steps"][3]["detail"]


def test_text_output_names_the_identity(
    control_plane: ControlPlane,
    check: Check,
    conns: Connections,
    make_role: Callable[..., str],
    service_account: Any,
    operator: Operator,
) -> None:
    aws_ready(conns, make_role, service_account)
    env = {**os.environ, **operator.env, "KUBECONFIG": str(control_plane.kubeconfig)}
    done = subprocess.run(
        [sys.executable, "-m", "porter_identity.cli", "check", f"{conns.namespace}/api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identity obtained: arn:aws:sts::123456789012:assumed-role/" in done.stdout
    assert "[FAIL]" not in done.stdout


# -- broken links ------------------------------------------------------------------------------------------------


def test_wrong_audience_is_refused_by_every_cloud(
    check: Check,
    conns: Connections,
    make_role: Callable[..., str],
    azure: AzureEmulator,
    gcp: GcpEmulator,
    service_account: Any,
    api: client.ApiClient,
) -> None:
    aws_ready(conns, make_role, service_account, name="a")
    code, verdict = check(conns.namespace, "a", "--audience", "sts.amazonaws.com")
    assert (code, *failure(verdict)) == (1, "exchange", "AudienceMismatch"), verdict
    assert "InvalidTokenException" in verdict["steps"][-1]["detail"]

    azure_ready(conns, azure, service_account)
    code, verdict = check(conns.namespace, "api", "--audience", "api://SomethingElse")
    assert (code, *failure(verdict)) == (1, "exchange", "AudienceMismatch"), verdict
    assert "AADSTS700212" in verdict["steps"][-1]["detail"]


def test_gcp_wrong_audience(check: Check, conns: Connections, gcp: GcpEmulator, service_account: Any) -> None:
    gcp_ready(conns, gcp, service_account)
    code, verdict = check(conns.namespace, "api", "--audience", "other.svc.id.goog")
    assert (code, *failure(verdict)) == (1, "exchange", "AudienceMismatch"), verdict
    assert "invalid_grant" in verdict["steps"][-1]["detail"]


def test_aws_association_removed_behind_the_operators_back(
    check: Check, conns: Connections, make_role: Callable[..., str], service_account: Any, aws: AwsEmulator
) -> None:
    association = aws_ready(conns, make_role, service_account)
    aws.client("eks").delete_pod_identity_association(clusterName="e2e", associationId=association)
    code, verdict = check(conns.namespace, "api")
    assert (code, *failure(verdict)) == (1, "exchange", "BindingMissing"), verdict
    assert "ResourceNotFoundException" in verdict["steps"][-1]["detail"]


def test_aws_trust_policy_without_tag_session(
    check: Check, conns: Connections, make_role: Callable[..., str], service_account: Any, aws: AwsEmulator
) -> None:
    aws_ready(conns, make_role, service_account)
    role_name = conns.get("api")["status"]["aws"]["roleArn"].rsplit("/", 1)[1]  # type: ignore[index]
    only_assume = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    aws.client("iam").update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(only_assume))
    code, verdict = check(conns.namespace, "api")
    assert (code, *failure(verdict)) == (1, "exchange", "TrustPolicyInvalid"), verdict
    assert "sts:TagSession" in verdict["steps"][-1]["detail"]


def test_azure_credential_subject_edited(
    check: Check, conns: Connections, azure: AzureEmulator, service_account: Any
) -> None:
    obj = azure_ready(conns, azure, service_account)
    identity = obj["spec"]["azure"]["identityName"]
    name = obj["status"]["azure"]["credentialName"]
    msi = azure.client(AZURE_SUBSCRIPTION, retry_total=0)
    fic = msi.federated_identity_credentials.get("check-rg", identity, name)
    fic.subject = f"system:serviceaccount:{conns.namespace}:someone-else"
    msi.federated_identity_credentials.create_or_update("check-rg", identity, name, fic)
    code, verdict = check(conns.namespace, "api")
    assert (code, *failure(verdict)) == (1, "exchange", "SubjectMismatch"), verdict
    assert "AADSTS700213" in verdict["steps"][-1]["detail"]


def test_azure_credential_deleted(check: Check, conns: Connections, azure: AzureEmulator, service_account: Any) -> None:
    obj = azure_ready(conns, azure, service_account)
    msi = azure.client(AZURE_SUBSCRIPTION, retry_total=0)
    msi.federated_identity_credentials.delete(
        "check-rg", obj["spec"]["azure"]["identityName"], obj["status"]["azure"]["credentialName"]
    )
    code, verdict = check(conns.namespace, "api")
    assert (code, *failure(verdict)) == (1, "exchange", "BindingMissing"), verdict
    assert "AADSTS700211" in verdict["steps"][-1]["detail"]


def test_gcp_member_removed(check: Check, conns: Connections, gcp: GcpEmulator, service_account: Any) -> None:
    email = gcp_ready(conns, gcp, service_account)
    iam = gcp.client()
    resource = f"projects/-/serviceAccounts/{email}"
    policy = iam.get_iam_policy(request={"resource": resource})
    del policy.bindings[:]
    iam.set_iam_policy(request={"resource": resource, "policy": policy})
    code, verdict = check(conns.namespace, "api")
    assert (code, *failure(verdict)) == (1, "identity", "BindingMissing"), verdict
    assert "iam.serviceAccounts.getAccessToken" in verdict["steps"][-1]["detail"]
    assert verdict["steps"][3] == {
        "step": "exchange",
        "ok": True,
        "detail": f"Google STS federated token for workload pool {GCP_POOL}",
    }


def test_not_ready_and_missing_objects_stop_early(
    check: Check, conns: Connections, service_account: Any, gcp: GcpEmulator
) -> None:
    code, verdict = check(conns.namespace, "nothing")
    assert (code, *failure(verdict)) == (1, "connection", "ConnectionNotFound"), verdict

    email = gcp.seed_service_account(GCP_PROJECT, f"chk-{uuid.uuid4().hex[:8]}")
    conns.create("early", "no-such-sa", gcp={"serviceAccountEmail": email})
    conns.wait_reason("early", "ServiceAccountNotFound")
    code, verdict = check(conns.namespace, "early")
    assert (code, *failure(verdict)) == (1, "connection", "ConnectionNotReady"), verdict
    assert "ServiceAccountNotFound" in verdict["steps"][0]["detail"]


def test_check_needs_namespace_and_name(control_plane: ControlPlane) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "porter_identity.cli", "check", "just-a-name"],
        env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "NAMESPACE/NAME" in done.stderr
