"""Eventual consistency in the emulators: a write is seen at once by the service that made it, and by the services
that use it only `propagationSeconds` later (the plan tests set, as they set faults)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import requests
from botocore.exceptions import ClientError
from google.api_core import exceptions as gexc

from porter_dev.azure import DEFAULT_TENANT, AzureEmulator
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AWS_ACCOUNT_ID, AwsEmulator
from tests.provider import test_token_services as services

LAG = 3.0
# The module-scoped issuer and token services of the token-services tests, started again for this module.
issuer = services.issuer
entra = services.entra
google = services.google
Issuer = services.Issuer
POOL = services.POOL
SUB = services.SUB


def trust(*actions: str, root: bool = False) -> str:
    """A trust policy letting EKS Pod Identity do `actions`, and with `root` the account's own principals AssumeRole."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": list(actions)}
    ]
    if root:
        principal = {"AWS": f"arn:aws:iam::{AWS_ACCOUNT_ID}:root"}
        statements.append({"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def until_propagated(since: float) -> None:
    """Sleep until a write that returned at `since` (time.monotonic(), one clock for every process) is seen."""
    time.sleep(max(0.0, since + LAG + 0.2 - time.monotonic()))


@pytest.fixture
def lagged_aws(aws: AwsEmulator) -> Iterator[AwsEmulator]:
    aws.faults(propagationSeconds=LAG)
    try:
        yield aws
    finally:
        aws.reset()


@pytest.fixture
def cluster(aws: AwsEmulator, issuer: Any) -> str:
    name = f"lag-{uuid.uuid4().hex[:6]}"
    aws.client("eks").create_cluster(
        name=name, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": []}
    )
    aws.set_cluster_issuer(name, issuer.url, issuer.ca_file)
    return name


def refusal(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call()
    error: Any = err.value.response["Error"]
    return error["Code"], error["Message"]


def test_a_new_role_is_seen_by_iam_at_once_and_by_eks_and_sts_after_the_lag(
    lagged_aws: AwsEmulator, cluster: str
) -> None:
    iam, eks, sts = lagged_aws.client("iam"), lagged_aws.client("eks"), lagged_aws.client("sts")
    name = f"lag-{uuid.uuid4().hex[:6]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust("sts:AssumeRole", "sts:TagSession", root=True))[
        "Role"
    ]["Arn"]
    made = time.monotonic()
    assert iam.get_role(RoleName=name)["Role"]["Arn"] == arn  # IAM's own read: at once

    def create() -> Any:
        return eks.create_pod_identity_association(
            clusterName=cluster, namespace="shop", serviceAccount="api", roleArn=arn
        )

    assert refusal(create) == ("InvalidParameterException", "Role provided in the request does not exist")
    code, _ = refusal(lambda: sts.assume_role(RoleArn=arn, RoleSessionName="lag"))
    assert code == "AccessDenied"
    assert eks.list_pod_identity_associations(clusterName=cluster)["associations"] == []

    until_propagated(made)
    assert create()["association"]["roleArn"] == arn
    assert sts.assume_role(RoleArn=arn, RoleSessionName="lag")["AssumedRoleUser"]["Arn"].endswith(f"{name}/lag")


def test_a_changed_trust_policy_is_judged_as_it_was_until_the_lag_ends(
    lagged_aws: AwsEmulator, cluster: str, issuer: Any
) -> None:
    iam, eks, auth = lagged_aws.client("iam"), lagged_aws.client("eks"), lagged_aws.client("eks-auth")
    name = f"lag-{uuid.uuid4().hex[:6]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust("sts:AssumeRole"))["Role"]["Arn"]
    made = time.monotonic()
    until_propagated(made)  # the role itself is known everywhere by now
    eks.create_pod_identity_association(clusterName=cluster, namespace="shop", serviceAccount="api", roleArn=arn)
    token = issuer.token("pods.eks.amazonaws.com")
    code, message = refusal(lambda: auth.assume_role_for_pod_identity(clusterName=cluster, token=token))
    assert code == "AccessDeniedException" and "sts:TagSession" in message

    iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust("sts:AssumeRole", "sts:TagSession"))
    changed = time.monotonic()
    code, message = refusal(lambda: auth.assume_role_for_pod_identity(clusterName=cluster, token=token))
    assert code == "AccessDeniedException" and "sts:TagSession" in message  # EKS Auth: the old trust still
    until_propagated(changed)
    answer = auth.assume_role_for_pod_identity(clusterName=cluster, token=token)
    assert answer["assumedRoleUser"]["arn"].startswith(f"arn:aws:sts::{AWS_ACCOUNT_ID}:assumed-role/{name}/")


def test_eks_refuses_a_trust_policy_fixed_a_moment_ago_until_the_fix_reaches_it(
    lagged_aws: AwsEmulator, cluster: str
) -> None:
    iam, eks = lagged_aws.client("iam"), lagged_aws.client("eks")
    name = f"lag-{uuid.uuid4().hex[:6]}"
    root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{AWS_ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole"}
    root_only = json.dumps({"Version": "2012-10-17", "Statement": [root]})
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=root_only)["Role"]["Arn"]
    until_propagated(time.monotonic())
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust("sts:AssumeRole", "sts:TagSession"))
    fixed = time.monotonic()
    got = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert got == {"Service": "pods.eks.amazonaws.com"}  # IAM's own read: the fix at once

    def create() -> Any:
        return eks.create_pod_identity_association(
            clusterName=cluster, namespace="shop", serviceAccount="fixed", roleArn=arn
        )

    assert refusal(create) == ("InvalidParameterException", "Trust policy of the role provided is invalid")
    until_propagated(fixed)
    assert create()["association"]["roleArn"] == arn


def test_no_lag_without_a_plan(aws: AwsEmulator, cluster: str) -> None:
    aws.reset()
    arn = aws.client("iam").create_role(
        RoleName=f"lag-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument=trust("sts:AssumeRole")
    )["Role"]["Arn"]
    made = aws.client("eks").create_pod_identity_association(
        clusterName=cluster, namespace="shop", serviceAccount="now", roleArn=arn
    )
    assert made["association"]["roleArn"] == arn


# -- Azure: Entra sees a federated credential after the lag ------------------------------------------------------


def entra_status(entra: AzureEmulator, client_id: str, assertion: str) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "scope": "https://management.azure.com/.default",
    }
    resp = requests.post(
        f"{entra.endpoint}/{DEFAULT_TENANT}/oauth2/v2.0/token", data=form, verify=str(entra.ca_file), timeout=10
    )
    return resp.status_code, resp.json()


def test_a_new_federated_credential_reaches_entra_after_the_lag(entra: AzureEmulator, issuer: Any) -> None:
    identity = entra.seed_identity(SUB, "lag-rg", f"lag-{uuid.uuid4().hex[:6]}")
    client_id = identity["properties"]["clientId"]
    msi = entra.client(SUB)
    entra.faults(propagationSeconds=LAG)
    try:
        subject = "system:serviceaccount:shop:lag"
        body = {"issuer": issuer.url, "subject": subject, "audiences": ["api://AzureADTokenExchange"]}
        msi.federated_identity_credentials.create_or_update("lag-rg", identity["name"], "shop-lag", body)
        made = time.monotonic()
        assert msi.federated_identity_credentials.get("lag-rg", identity["name"], "shop-lag").subject == subject
        assertion = issuer.token("api://AzureADTokenExchange", subject=subject)
        status, answer = entra_status(entra, client_id, assertion)
        assert (status, answer["error_codes"]) == (401, [700211]), answer  # no credential of that issuer yet

        until_propagated(made)
        status, answer = entra_status(entra, client_id, assertion)
        assert status == 200, answer

        # A changed subject: Entra judges the old one until the change reaches it.
        moved = {**body, "subject": "system:serviceaccount:shop:moved"}
        msi.federated_identity_credentials.create_or_update("lag-rg", identity["name"], "shop-lag", moved)
        changed = time.monotonic()
        assert entra_status(entra, client_id, assertion)[0] == 200
        until_propagated(changed)
        status, answer = entra_status(entra, client_id, assertion)
        assert (status, answer["error_codes"]) == (401, [700213]), answer
    finally:
        entra.reset()


# -- GCP: a new service account's policy, and a policy change reaching the token services -------------------------


def rpc_code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(gexc.GoogleAPICallError) as err:
        call()
    assert err.value.grpc_status_code is not None
    return err.value.grpc_status_code, str(err.value.message)


def test_a_new_service_account_is_usable_in_policies_and_tokens_after_the_lag(google: GcpEmulator, issuer: Any) -> None:
    google.faults(propagationSeconds=LAG)
    try:
        iam = google.client()
        other = google.seed_service_account("porter-tok", f"lag-{uuid.uuid4().hex[:6]}")
        until_propagated(time.monotonic())
        email = google.seed_service_account("porter-tok", f"lag-{uuid.uuid4().hex[:6]}")
        made = time.monotonic()
        resource = f"projects/porter-tok/serviceAccounts/{email}"
        assert iam.get_service_account(request={"name": resource}).email == email  # IAM's own read: at once
        code, message = rpc_code(lambda: iam.get_iam_policy(request={"resource": resource}))
        assert (code, message) == (grpc.StatusCode.NOT_FOUND, f"Service account {resource} does not exist.")
        code, _ = rpc_code(lambda: iam.set_iam_policy(request={"resource": resource, "policy": {}}))
        assert code == grpc.StatusCode.NOT_FOUND
        member = {"role": "roles/iam.serviceAccountUser", "members": [f"serviceAccount:{email}"]}
        other_resource = f"projects/porter-tok/serviceAccounts/{other}"
        code, message = rpc_code(
            lambda: iam.set_iam_policy(request={"resource": other_resource, "policy": {"bindings": [member]}})
        )
        assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, f"Service account {email} does not exist.")

        until_propagated(made)
        federated = services.sts(google, issuer, issuer.token(POOL))[1]["access_token"]
        policy = iam.get_iam_policy(request={"resource": resource})
        policy.bindings.add(role="roles/iam.workloadIdentityUser", members=[f"serviceAccount:{POOL}[shop/api]"])
        iam.set_iam_policy(request={"resource": resource, "policy": policy})
        changed = time.monotonic()
        assert services.generate(google, email, federated)[0] == 403  # the token service: the old policy still
        until_propagated(changed)
        assert services.generate(google, email, federated)[0] == 200
    finally:
        google.reset()
