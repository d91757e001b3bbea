"""Every answer the AWS emulator gives the operator's own clients is one botocore's EKS, IAM and STS models allow."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config

from porter_dev.processes import AWS_REGION, AwsEmulator, pod_identity_trust_policy
from porter_identity.clouds.aws.client import AwsProvider
from porter_identity.errors import AccessDenied, CloudError, Conflict, Invalid, NotFound
from porter_identity.providers.iam import AssumedRoles, IamRoles
from tests.contract.aws_model import Answer, Recorder, problems

POD_IDENTITY_OPERATIONS = {
    "CreatePodIdentityAssociation",
    "DescribePodIdentityAssociation",
    "UpdatePodIdentityAssociation",
    "DeletePodIdentityAssociation",
    "ListPodIdentityAssociations",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
}


@pytest.fixture
def recorder(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    aws.reset()
    yield Recorder()
    aws.reset()


@pytest.fixture
def session(recorder: Recorder) -> boto3.session.Session:
    return recorder.attach(
        boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=AWS_REGION)
    )


@pytest.fixture
def provider(session: boto3.session.Session, eks_cluster: str) -> AwsProvider:
    return AwsProvider(AWS_REGION, eks_cluster, max_attempts=1, session=session)


@pytest.fixture
def ns() -> str:
    return f"ns-{uuid.uuid4().hex[:8]}"


def within_model(recorder: Recorder, *, seen: Iterable[str] = ()) -> None:
    """Fail with every answer the model does not allow; `seen` are `Operation:status` that must have been checked."""
    assert recorder.answers, "nothing was recorded"
    found = [f"{a.operation.name} {a.status}: {p}" for a in recorder.answers for p in problems(a)]
    assert found == []
    missing = set(seen) - recorder.operations()
    assert not missing, f"not exercised: {sorted(missing)}"


def refused(kind: type[CloudError], call: Callable[[], Any]) -> None:
    with pytest.raises(kind):
        call()


def test_every_pod_identity_operation_of_the_model_is_covered() -> None:
    """A Pod Identity operation added to the model must be added here (and to the emulator, if the operator uses it)."""
    model = botocore.session.get_session().get_service_model("eks")
    assert {op for op in model.operation_names if "PodIdentityAssociation" in op} <= POD_IDENTITY_OPERATIONS


def test_association_lifecycle_through_the_operator_client(
    provider: AwsProvider, session: boto3.session.Session, recorder: Recorder, make_role: Any, ns: str
) -> None:
    first, second = make_role(), make_role()
    assert provider.find_association(ns, "sa") is None
    created = provider.create_association(ns, "sa", first, {"porter.run/managed": "true"})
    untagged = provider.create_association(ns, "bare", first, {})  # no tags at all
    assert provider.find_association(ns, "sa") == created
    provider.update_association(created.association_id, second)
    provider.tag_association(created, {"porter.run/owner": "x"})
    provider.untag_association(created, ["porter.run/owner"])
    eks = session.client("eks")
    eks.list_tags_for_resource(resourceArn=created.association_arn)
    eks.list_tags_for_resource(resourceArn=untagged.association_arn)
    assert provider.describe_association(untagged.association_id) is not None
    assert {a.association_id for a in provider.list_associations(ns)} == {
        created.association_id,
        untagged.association_id,
    }
    assert provider.delete_association(created.association_id) is True
    assert provider.delete_association(created.association_id) is False  # 404, which the client takes as gone
    assert provider.describe_association(created.association_id) is None
    assert {a.operation.name for a in recorder.answers} == POD_IDENTITY_OPERATIONS
    within_model(
        recorder,
        seen={
            "CreatePodIdentityAssociation:200",
            "DescribePodIdentityAssociation:200",
            "DescribePodIdentityAssociation:404",
            "UpdatePodIdentityAssociation:200",
            "DeletePodIdentityAssociation:200",
            "DeletePodIdentityAssociation:404",
            "ListPodIdentityAssociations:200",
            "TagResource:200",
            "UntagResource:200",
            "ListTagsForResource:200",
        },
    )


def test_paging_answers(
    provider: AwsProvider, session: boto3.session.Session, recorder: Recorder, make_role: Any, ns: str
) -> None:
    role = make_role()
    for i in range(5):
        provider.create_association(ns, f"sa{i}", role, {"k": "v"})
    eks = session.client("eks")
    pages = list(
        eks.get_paginator("list_pod_identity_associations").paginate(
            clusterName=provider.cluster_name, namespace=ns, PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["associations"]) for p in pages] == [2, 2, 1]
    within_model(recorder, seen={"ListPodIdentityAssociations:200"})


def test_refusals_are_errors_the_operations_declare(
    provider: AwsProvider, session: boto3.session.Session, recorder: Recorder, make_role: Any, ns: str
) -> None:
    role = make_role()
    created = provider.create_association(ns, "sa", role, {})
    refused(Conflict, lambda: provider.create_association(ns, "sa", make_role(), {}))
    refused(Invalid, lambda: provider.create_association(ns, "other", "not-an-arn", {}))
    missing_role = f"arn:aws:iam::123456789012:role/missing-{uuid.uuid4().hex[:8]}"
    refused(Invalid, lambda: provider.create_association(ns, "other", missing_role, {}))
    refused(Invalid, lambda: provider.update_association(created.association_id, missing_role))
    refused(NotFound, lambda: provider.update_association("a-nosuchassociation0", role))
    refused(Invalid, lambda: provider.tag_association(created, {"aws:reserved": "x"}))
    gone = AwsProvider(AWS_REGION, "no-such-cluster", max_attempts=1, session=session)
    refused(NotFound, lambda: gone.create_association(ns, "sa", role, {}))
    refused(NotFound, lambda: gone.list_associations())
    eks = session.client("eks")
    arn = created.association_arn.rsplit("/", 1)[0] + "/a-nosuchassociation0"
    with pytest.raises(eks.exceptions.NotFoundException):
        eks.list_tags_for_resource(resourceArn=arn)
    with pytest.raises(eks.exceptions.NotFoundException):
        eks.tag_resource(resourceArn=arn, tags={"k": "v"})
    within_model(
        recorder,
        seen={
            "CreatePodIdentityAssociation:409",
            "CreatePodIdentityAssociation:400",
            "CreatePodIdentityAssociation:404",
            "UpdatePodIdentityAssociation:400",
            "UpdatePodIdentityAssociation:404",
            "ListPodIdentityAssociations:404",
            "TagResource:400",
            "TagResource:404",
            "ListTagsForResource:404",
        },
    )


def _violations(operation: Any, valid: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """From the input shape: `valid` without each required body member, and each length/range bound crossed."""
    shape = operation.input_shape
    for name in shape.required_members:
        if shape.members[name].serialization.get("location") is None:
            yield f"without {name}", {k: v for k, v in valid.items() if k != name}
    for name, member in shape.members.items():
        high = member.metadata.get("max")
        if member.type_name == "map" and high is not None:
            yield f"{name} over {high}", {**valid, name: {f"k{i}": "v" for i in range(high + 1)}}
        if member.type_name == "integer" and high is not None:
            yield f"{name} over {high}", {**valid, name: high + 1}
        low = member.metadata.get("min")
        if member.type_name == "integer" and low is not None:
            yield f"{name} under {low}", {**valid, name: low - 1}


def test_requests_the_model_refuses_are_refused(
    aws: AwsEmulator, recorder: Recorder, eks_cluster: str, make_role: Any, ns: str
) -> None:
    """botocore checks requests before sending; with that off, the emulator must refuse what the model refuses."""
    unchecked = recorder.attach(
        boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=AWS_REGION)
    ).client("eks", config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))
    model = unchecked.meta.service_model
    role = make_role()
    valid = {
        "CreatePodIdentityAssociation": {"namespace": ns, "serviceAccount": "sa", "roleArn": role, "tags": {"k": "v"}},
        "ListPodIdentityAssociations": {"namespace": ns},
    }
    tried = []
    for op_name, good in valid.items():
        method = getattr(unchecked, _snake(op_name))
        for what, params in _violations(model.operation_model(op_name), good):
            tried.append(f"{op_name} {what}")
            with pytest.raises(unchecked.exceptions.ClientError) as err:
                method(clusterName=eks_cluster, **params)
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, f"{op_name} {what}"
    assert "CreatePodIdentityAssociation without roleArn" in tried
    assert "CreatePodIdentityAssociation tags over 50" in tried
    assert "ListPodIdentityAssociations maxResults over 100" in tried
    within_model(recorder)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


@pytest.mark.parametrize(
    ("service", "fault", "seen"),
    [
        ("eks", "throttle", "ListPodIdentityAssociations:429"),
        ("eks", "unavailable", "ListPodIdentityAssociations:500"),
        ("iam", "throttle", "GetRole:400"),
        ("iam", "unavailable", "GetRole:500"),
    ],
)
def test_injected_faults_are_errors_the_model_allows(
    aws: AwsEmulator, provider: AwsProvider, recorder: Recorder, service: str, fault: str, seen: str
) -> None:
    aws.faults(rules=[{"fault": fault, "service": service, "count": 1}])
    with pytest.raises(CloudError):
        if service == "eks":
            provider.list_associations()
        else:
            provider.get_role("anything")
    within_model(recorder, seen={seen})


def test_iam_and_sts_answers_of_the_roleset_client(
    aws: AwsEmulator, session: boto3.session.Session, recorder: Recorder
) -> None:
    """PorterRoleSet's IAM calls (moto's IAM behind our quota checks) and the refused AssumeRole."""
    roles = IamRoles(session, Config(retries={"total_max_attempts": 1}), "123456789012")
    name = f"porter-contract-{uuid.uuid4().hex[:8]}"
    trust = json.loads(pod_identity_trust_policy())
    assert roles.read(name) is None  # GetRole 404
    roles.create_role(name, trust, {"porter.run/managed": "true"}, "contract")
    roles.update_trust(name, trust)
    roles.tag(name, {"team": "x"})
    roles.untag(name, ["team"])
    roles.put_inline(
        name,
        "inline",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]},
    )
    roles.put_managed(
        name,
        f"{name}-1",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]},
        {},
    )
    observed = roles.read(name)
    assert observed is not None and set(observed.inline) == {"inline"}
    roles.delete_role(observed)
    with pytest.raises(CloudError):
        roles.create_role(name, {"Statement": "x" * 3000}, {}, "too long")  # LimitExceeded: trust policy quota
    gate = {"StringEquals": {"sts:ExternalId": "contract-external-id"}}
    statement = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Condition": gate}
    trusted = roles.create_role(
        f"{name}-t", {"Version": "2012-10-17", "Statement": [{**statement, "Action": "sts:AssumeRole"}]}, {}, "t"
    )
    AssumedRoles(max_attempts=1, base=session).session(trusted, "contract-external-id", AWS_REGION)
    with pytest.raises(AccessDenied):
        AssumedRoles(max_attempts=1, base=session).session(trusted, "wrong-external-id", AWS_REGION)
    within_model(
        recorder,
        seen={
            "GetRole:404",
            "GetRole:200",
            "CreateRole:200",
            "CreateRole:409",
            "ListRoleTags:200",
            "ListRolePolicies:200",
            "GetRolePolicy:200",
            "ListAttachedRolePolicies:200",
            "GetPolicy:200",
            "GetPolicyVersion:200",
            "CreatePolicy:200",
            "ListPolicyVersions:404",
            "AttachRolePolicy:200",
            "DeleteRole:200",
            "AssumeRole:200",
            "AssumeRole:403",
        },
    )


def test_eks_auth_refusals(recorder: Recorder, session: boto3.session.Session, eks_cluster: str) -> None:
    """EKS Auth's AssumeRoleForPodIdentity (the emulator's own code): what it answers a token it cannot accept."""
    auth = session.client("eks-auth", config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))
    for cluster, token in ((eks_cluster, "not-a-jwt"), (eks_cluster, ""), ("no-such-cluster", "not-a-jwt")):
        with pytest.raises(auth.exceptions.ClientError):
            auth.assume_role_for_pod_identity(clusterName=cluster, token=token)
    within_model(recorder, seen={"AssumeRoleForPodIdentity:400", "AssumeRoleForPodIdentity:404"})


# ---- the checks themselves can fail


MODELS = botocore.session.get_session()  # the same models boto3's clients load


def _answer(service: str, operation: str, status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    model = MODELS.get_service_model(service)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(service, model.operation_model(operation), status, headers or {}, raw)


GOOD = {
    "clusterName": "c",
    "namespace": "ns",
    "serviceAccount": "sa",
    "roleArn": "arn:aws:iam::123456789012:role/r",
    "associationArn": "arn:aws:eks:us-east-1:123456789012:podidentityassociation/c/a-0123456789abcdefg",
    "associationId": "a-0123456789abcdefg",
    "createdAt": 1.0,
    "modifiedAt": 1.0,
}


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (_answer("eks", "DescribePodIdentityAssociation", 200, {"association": GOOD}), None),
        (
            _answer("eks", "DescribePodIdentityAssociation", 200, {"association": {**GOOD, "owner": "x"}}),
            "not a member",
        ),
        (_answer("eks", "DescribePodIdentityAssociation", 200, {"association": {**GOOD, "tags": {}}}), "min 1"),
        (_answer("eks", "DescribePodIdentityAssociation", 200, {"association": {**GOOD, "createdAt": "now"}}), "epoch"),
        (_answer("eks", "ListPodIdentityAssociations", 200, {"associations": {}}), "a list expected"),
        (
            _answer("eks", "TagResource", 400, {"message": "m"}, {"x-amzn-errortype": "InvalidParameterException"}),
            "not an error TagResource may return",
        ),
        (
            _answer(
                "eks",
                "CreatePodIdentityAssociation",
                400,
                {"message": "m"},
                {"x-amzn-errortype": "ResourceInUseException"},
            ),
            "HTTP 409",
        ),
        (
            _answer(
                "eks",
                "CreatePodIdentityAssociation",
                409,
                {"message": "m", "why": 1},
                {"x-amzn-errortype": "ResourceInUseException"},
            ),
            "not in ResourceInUseException",
        ),
        (
            _answer("iam", "GetRole", 404, b"<ErrorResponse><Error><Code>NoSuchRole</Code></Error></ErrorResponse>"),
            "not an error GetRole may return",
        ),
        (
            _answer(
                "iam",
                "GetRole",
                200,
                b"<GetRoleResponse><GetRoleResult><Role><Path>/</Path><RoleName>r</RoleName>"
                b"<RoleId>AROAAAAAAAAAAAAAAAAAA</RoleId><Arn>arn:aws:iam::123456789012:role/r</Arn>"
                b"<CreateDate>2026-01-01T00:00:00Z</CreateDate><Colour>red</Colour></Role></GetRoleResult>"
                b"</GetRoleResponse>",
            ),
            "Colour: not a member",
        ),
        (
            _answer(
                "iam",
                "GetRole",
                200,
                b"<GetRoleResponse><GetRoleResult><Role><Path>/</Path></Role></GetRoleResult></GetRoleResponse>",
            ),
            "required by Role",
        ),
    ],
)
def test_the_validator_rejects_what_the_model_forbids(answer: Answer, complaint: str | None) -> None:
    found = problems(answer)
    if complaint is None:
        assert found == []
    else:
        assert any(complaint in p for p in found), found
