"""The EKS Pod Identity routes of the AWS emulator behave as the EKS API reference says."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from porter_dev.processes import AwsEmulator
from tests.provider.keepalive import opened_connections


@pytest.fixture
def eks(aws: AwsEmulator, eks_cluster: str) -> Any:
    aws.reset()
    return aws.client("eks")


@pytest.fixture
def ns() -> str:
    return f"ns-{uuid.uuid4().hex[:8]}"


def _code(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_paging_with_max_results_and_next_token(eks: Any, eks_cluster: str, make_role: Any, ns: str) -> None:
    role = make_role()
    made = [
        eks.create_pod_identity_association(
            clusterName=eks_cluster, namespace=ns, serviceAccount=f"sa{i}", roleArn=role
        )["association"]["associationId"]
        for i in range(7)
    ]
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"clusterName": eks_cluster, "namespace": ns, "maxResults": 3}
        if token:
            kwargs["nextToken"] = token
        page = eks.list_pod_identity_associations(**kwargs)
        pages += 1
        assert len(page["associations"]) <= 3
        seen += [a["associationId"] for a in page["associations"]]
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(made)


@pytest.mark.parametrize("max_results", [0, 101])
def test_max_results_out_of_range_is_invalid(aws: AwsEmulator, eks_cluster: str, max_results: int) -> None:
    unchecked = aws.client("eks", parameter_validation=False)  # let the server see what botocore would refuse
    with pytest.raises(ClientError) as err:
        unchecked.list_pod_identity_associations(clusterName=eks_cluster, maxResults=max_results)
    assert _code(err) == ("InvalidParameterException", 400)


def test_bad_next_token_is_invalid(eks: Any, eks_cluster: str) -> None:
    with pytest.raises(ClientError) as err:
        eks.list_pod_identity_associations(clusterName=eks_cluster, nextToken="!!!")
    assert _code(err) == ("InvalidParameterException", 400)


def test_duplicate_service_account_is_resource_in_use(eks: Any, eks_cluster: str, make_role: Any, ns: str) -> None:
    eks.create_pod_identity_association(clusterName=eks_cluster, namespace=ns, serviceAccount="sa", roleArn=make_role())
    with pytest.raises(ClientError) as err:
        eks.create_pod_identity_association(
            clusterName=eks_cluster, namespace=ns, serviceAccount="sa", roleArn=make_role()
        )
    assert _code(err) == ("ResourceInUseException", 409)


def test_filters_select_namespace_and_service_account(eks: Any, eks_cluster: str, make_role: Any, ns: str) -> None:
    role = make_role()
    for sa in ("a", "b"):
        eks.create_pod_identity_association(clusterName=eks_cluster, namespace=ns, serviceAccount=sa, roleArn=role)
    only = eks.list_pod_identity_associations(clusterName=eks_cluster, namespace=ns, serviceAccount="b")
    assert [(a["namespace"], a["serviceAccount"]) for a in only["associations"]] == [(ns, "b")]


def test_tags_are_returned_and_validated(eks: Any, eks_cluster: str, make_role: Any, ns: str) -> None:
    made = eks.create_pod_identity_association(
        clusterName=eks_cluster, namespace=ns, serviceAccount="t", roleArn=make_role(), tags={"k": "v"}
    )["association"]
    described = eks.describe_pod_identity_association(clusterName=eks_cluster, associationId=made["associationId"])
    assert described["association"]["tags"] == {"k": "v"}
    with pytest.raises(ClientError) as err:
        eks.create_pod_identity_association(
            clusterName=eks_cluster, namespace=ns, serviceAccount="u", roleArn=make_role(), tags={"aws:x": "v"}
        )
    assert _code(err) == ("InvalidParameterException", 400)


def test_unknown_cluster_and_association_are_not_found(eks: Any, eks_cluster: str, make_role: Any) -> None:
    with pytest.raises(ClientError) as err:
        eks.list_pod_identity_associations(clusterName="nope")
    assert _code(err) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as err:
        eks.update_pod_identity_association(clusterName=eks_cluster, associationId="a-0000", roleArn=make_role())
    assert _code(err) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as err:
        eks.delete_pod_identity_association(clusterName=eks_cluster, associationId="a-0000")
    assert _code(err) == ("ResourceNotFoundException", 404)


def test_client_request_token_is_idempotent(eks: Any, eks_cluster: str, make_role: Any, ns: str) -> None:
    role = make_role()
    args = {"clusterName": eks_cluster, "namespace": ns, "serviceAccount": "idem", "roleArn": role}
    first = eks.create_pod_identity_association(**args, clientRequestToken="tok-1")["association"]
    again = eks.create_pod_identity_association(**args, clientRequestToken="tok-1")["association"]
    assert first["associationId"] == again["associationId"]


def test_fault_injection_fails_exactly_the_planned_calls(aws: AwsEmulator, eks_cluster: str) -> None:
    once = aws.client("eks", retries={"mode": "standard", "total_max_attempts": 1})
    aws.faults(
        rules=[{"fault": "unavailable", "service": "eks", "operation": "ListPodIdentityAssociations", "count": 1}]
    )
    with pytest.raises(ClientError) as err:
        once.list_pod_identity_associations(clusterName=eks_cluster)
    assert _code(err) == ("ServerException", 500)
    assert "associations" in once.list_pod_identity_associations(clusterName=eks_cluster)  # count used up
    assert aws.calls()["eks:ListPodIdentityAssociations"] == 2


def test_injected_latency_delays_calls(aws: AwsEmulator, eks: Any, eks_cluster: str) -> None:
    import time

    aws.faults(latencyMs=200)
    started = time.monotonic()
    eks.list_pod_identity_associations(clusterName=eks_cluster)
    assert time.monotonic() - started >= 0.2


def test_sdk_calls_reuse_their_connection(aws: AwsEmulator, eks_cluster: str, make_role: Any, ns: str) -> None:
    """Keep-alive, as AWS endpoints serve: a new TCP connection per call would charge the operator a cost no cloud
    does (urllib3 logs each connection it opens or reopens)."""
    client = aws.client("eks")
    client.list_pod_identity_associations(clusterName=eks_cluster)  # the first connection
    role = make_role()
    with opened_connections() as opened:
        for i in range(5):
            client.create_pod_identity_association(
                clusterName=eks_cluster, namespace=ns, serviceAccount=f"ka{i}", roleArn=role
            )
            client.list_pod_identity_associations(clusterName=eks_cluster, namespace=ns)
    assert opened == []


def test_eks_refuses_a_role_it_cannot_see_or_that_does_not_trust_pod_identity(
    aws: AwsEmulator, eks: Any, eks_cluster: str, make_role: Any, ns: str
) -> None:
    """As EKS does at create and update (the messages terraform-provider-aws matches, its issues 34711, 41483)."""
    with pytest.raises(ClientError) as err:
        eks.create_pod_identity_association(
            clusterName=eks_cluster, namespace=ns, serviceAccount="a", roleArn="arn:aws:iam::123456789012:role/ghost"
        )
    assert _code(err) == ("InvalidParameterException", 400)
    assert "Role provided in the request does not exist" in str(err.value)
    ec2_only = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    other = aws.client("iam").create_role(RoleName=f"ec2-{ns}", AssumeRolePolicyDocument=ec2_only)["Role"]["Arn"]
    with pytest.raises(ClientError) as err:
        eks.create_pod_identity_association(clusterName=eks_cluster, namespace=ns, serviceAccount="b", roleArn=other)
    assert "Trust policy of the role provided is invalid" in str(err.value)
    made = eks.create_pod_identity_association(
        clusterName=eks_cluster, namespace=ns, serviceAccount="c", roleArn=make_role()
    )["association"]
    with pytest.raises(ClientError) as err:
        eks.update_pod_identity_association(clusterName=eks_cluster, associationId=made["associationId"], roleArn=other)
    assert "Trust policy of the role provided is invalid" in str(err.value)
