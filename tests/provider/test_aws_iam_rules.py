"""The AWS emulator checks trust policies on sts:AssumeRole and enforces IAM size quotas, as AWS documents them."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from porter_dev.processes import AWS_REGION, AwsEmulator, pod_identity_trust_policy

ACCOUNT = "123456789012"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
DEFAULT_CALLER = f"arn:aws:sts::{ACCOUNT}:user/moto"  # what moto's GetCallerIdentity says for unknown keys
SESSION = "porter-session"
EXTERNAL_ID = "porter-7f3a9c"
S3_READ = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _trust(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(principal: Any, condition: dict[str, Any] | None = None, effect: str = "Allow") -> dict[str, Any]:
    statement = {"Effect": effect, "Principal": principal, "Action": "sts:AssumeRole"}
    return {**statement, "Condition": condition} if condition else statement


def _sized(statement: dict[str, Any], size: int) -> str:
    """A policy of exactly `size` non-whitespace characters, padded through the statement's Sid."""

    def render(sid: str) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": sid, **statement}]}, separators=(",", ":"))

    document = render("S" * (size - len(render(""))))
    assert _non_ws(document) == size
    return document


def _non_ws(document: str) -> int:
    return len(re.sub(r"\s", "", document))


def _role(iam: Any, trust: str) -> str:
    arn: str = iam.create_role(RoleName=_name("r"), AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    return arn


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def _client(aws: AwsEmulator, service: str, creds: dict[str, str]) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds.get("SessionToken"),
        region_name=AWS_REGION,
    )
    return session.client(service, endpoint_url=aws.endpoint)  # type: ignore[call-overload]


def _assume(sts: Any, role_arn: str, **extra: str) -> dict[str, str]:
    creds: dict[str, str] = sts.assume_role(RoleArn=role_arn, RoleSessionName=SESSION, **extra)["Credentials"]
    return creds


def _refused(sts: Any, role_arn: str, caller: str, **extra: str) -> None:
    with pytest.raises(ClientError) as err:
        sts.assume_role(RoleArn=role_arn, RoleSessionName=SESSION, **extra)
    code, status, message = _error(err)
    assert (code, status) == ("AccessDenied", 403)
    assert message == f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"


def _control(aws: AwsEmulator, route: str) -> str:
    with urllib.request.urlopen(f"{aws.endpoint}/_porter/{route}", timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode()


@pytest.fixture
def iam(aws: AwsEmulator) -> Any:
    return aws.client("iam")


@pytest.fixture
def sts(aws: AwsEmulator) -> Any:
    return aws.client("sts")


@pytest.mark.parametrize(
    ("operator", "expected"), [("StringEquals", EXTERNAL_ID), ("StringLike", ["other", "porter-7f*"])]
)
def test_external_id_must_match_the_trust_condition(
    aws: AwsEmulator, iam: Any, sts: Any, operator: str, expected: Any
) -> None:
    role = _role(iam, _trust(_allow({"AWS": ROOT}, {operator: {"sts:ExternalId": expected}})))
    creds = _assume(sts, role, ExternalId=EXTERNAL_ID)
    session_sts = _client(aws, "sts", creds)
    name = role.split("/")[-1]
    assert session_sts.get_caller_identity()["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{SESSION}"
    assert _client(aws, "iam", creds).get_role(RoleName=name)["Role"]["Arn"] == role
    _refused(sts, role, DEFAULT_CALLER, ExternalId="porter-wrong")
    _refused(sts, role, DEFAULT_CALLER)
    assert json.loads(_control(aws, "assume-role"))[role] == 3


def test_external_id_is_never_reported(aws: AwsEmulator, iam: Any, sts: Any) -> None:
    role = _role(iam, _trust(_allow({"AWS": ROOT}, {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}})))
    _assume(sts, role, ExternalId=EXTERNAL_ID)
    _refused(sts, role, DEFAULT_CALLER, ExternalId="porter-guess")
    reports = _control(aws, "assume-role") + _control(aws, "calls")
    assert role in reports
    assert EXTERNAL_ID not in reports and "porter-guess" not in reports


@pytest.mark.parametrize(("external_id", "constraint"), [("Q", "length"), ("has space", "pattern")])
def test_malformed_external_id_is_a_validation_error(
    aws: AwsEmulator, iam: Any, external_id: str, constraint: str
) -> None:
    role = _role(iam, _trust(_allow({"AWS": ROOT})))
    unchecked = aws.client("sts", parameter_validation=False)  # let the server see what botocore would refuse
    with pytest.raises(ClientError) as err:
        unchecked.assume_role(RoleArn=role, RoleSessionName=SESSION, ExternalId=external_id)
    code, status, message = _error(err)
    assert (code, status) == ("ValidationError", 400)
    # STS echoes the value (aws/aws-cli#4745), so a client copying AWS's text on would leak it: tests catch that.
    assert constraint in message and f"Value '{external_id}' at 'externalId'" in message


def test_invalid_fault_refuses_any_external_id_as_sts_does(aws: AwsEmulator, iam: Any, sts: Any) -> None:
    role = _role(iam, _trust(_allow({"AWS": ROOT})))
    aws.faults(rules=[{"fault": "invalid", "service": "sts", "operation": "AssumeRole", "count": 1}])
    try:
        with pytest.raises(ClientError) as err:
            sts.assume_role(RoleArn=role, RoleSessionName=SESSION, ExternalId="well-formed-value")
    finally:
        aws.faults()
    code, status, message = _error(err)
    assert (code, status) == ("ValidationError", 400)
    assert message.startswith("1 validation error detected: Value 'well-formed-value' at 'externalId' failed")


def test_role_trusting_another_account_refuses(iam: Any, sts: Any) -> None:
    role = _role(iam, _trust(_allow({"AWS": "arn:aws:iam::210987654321:root"})))
    _refused(sts, role, DEFAULT_CALLER)


def test_role_trusting_only_a_service_refuses_an_iam_caller(iam: Any, sts: Any) -> None:
    role = _role(iam, pod_identity_trust_policy())
    _refused(sts, role, DEFAULT_CALLER)


def test_missing_role_is_access_denied(sts: Any) -> None:
    _refused(sts, f"arn:aws:iam::{ACCOUNT}:role/{_name('absent')}", DEFAULT_CALLER)


@pytest.mark.parametrize("principal", ["*", {"AWS": "*"}, {"AWS": ACCOUNT}, {"AWS": [DEFAULT_CALLER]}])
def test_principal_forms_naming_the_caller_allow(iam: Any, sts: Any, principal: Any) -> None:
    assert _assume(sts, _role(iam, _trust(_allow(principal))))["AccessKeyId"].startswith("ASIA")


def test_explicit_deny_wins(iam: Any, sts: Any) -> None:
    role = _role(iam, _trust(_allow({"AWS": ROOT}), _allow({"AWS": DEFAULT_CALLER}, effect="Deny")))
    _refused(sts, role, DEFAULT_CALLER)


def test_principal_account_condition_is_the_callers_account(iam: Any, sts: Any) -> None:
    ours = _role(iam, _trust(_allow("*", {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}})))
    theirs = _role(iam, _trust(_allow("*", {"StringEquals": {"aws:PrincipalAccount": "210987654321"}})))
    _assume(sts, ours)
    _refused(sts, theirs, DEFAULT_CALLER)


def test_iam_user_keys_match_a_trust_naming_that_user(aws: AwsEmulator, iam: Any) -> None:
    user = iam.create_user(UserName=_name("u"))["User"]
    key = iam.create_access_key(UserName=user["UserName"])["AccessKey"]
    user_sts = _client(aws, "sts", key)
    assert _assume(user_sts, _role(iam, _trust(_allow({"AWS": user["Arn"]}))))["AccessKeyId"]
    _refused(user_sts, _role(iam, _trust(_allow({"AWS": f"arn:aws:iam::{ACCOUNT}:user/someone-else"}))), user["Arn"])


def test_assumed_role_credentials_chain_into_a_role_trusting_the_first(aws: AwsEmulator, iam: Any, sts: Any) -> None:
    first = _role(iam, _trust(_allow({"AWS": ROOT})))
    second = _role(iam, _trust(_allow({"AWS": first})))
    _refused(sts, second, DEFAULT_CALLER)
    first_sts = _client(aws, "sts", _assume(sts, first))
    chained = _client(aws, "sts", _assume(first_sts, second))
    assert (
        chained.get_caller_identity()["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{second.split('/')[-1]}/{SESSION}"
    )
    _refused(chained, second, f"arn:aws:sts::{ACCOUNT}:assumed-role/{second.split('/')[-1]}/{SESSION}")


def test_trust_policy_size_quota_counts_non_whitespace(iam: Any) -> None:
    trust = _allow({"AWS": ROOT})
    name = _name("r")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=_sized(trust, 2048))
    for call in (
        lambda doc: iam.create_role(RoleName=_name("r"), AssumeRolePolicyDocument=doc),
        lambda doc: iam.update_assume_role_policy(RoleName=name, PolicyDocument=doc),
    ):
        with pytest.raises(ClientError) as err:
            call(_sized(trust, 2049))
        assert _error(err) == ("LimitExceeded", 409, "Cannot exceed quota for ACLSizePerRole: 2048")
    padded = json.dumps(json.loads(_sized(trust, 2048)), indent=40)
    assert len(padded) > 2048
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=padded)
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == json.loads(padded)


def test_malformed_trust_policy_is_refused(iam: Any) -> None:
    with pytest.raises(ClientError) as err:
        iam.create_role(RoleName=_name("r"), AssumeRolePolicyDocument='{"Statement": [')
    assert _error(err)[:2] == ("MalformedPolicyDocument", 400)


def test_inline_policies_of_a_role_share_one_quota(iam: Any) -> None:
    name = _role(iam, _trust(_allow({"AWS": ROOT}))).split("/")[-1]
    iam.put_role_policy(RoleName=name, PolicyName="a", PolicyDocument=_sized(S3_READ, 5120))
    iam.put_role_policy(RoleName=name, PolicyName="b", PolicyDocument=_sized(S3_READ, 5120))
    iam.put_role_policy(RoleName=name, PolicyName="b", PolicyDocument=_sized(S3_READ, 5120))  # replaces, counted once
    with pytest.raises(ClientError) as err:
        iam.put_role_policy(RoleName=name, PolicyName="b", PolicyDocument=_sized(S3_READ, 5121))
    assert _error(err) == ("LimitExceeded", 409, f"Maximum policy size of 10240 bytes exceeded for role {name}")
    with pytest.raises(ClientError):
        iam.put_role_policy(RoleName=name, PolicyName="c", PolicyDocument=_sized(S3_READ, 200))
    assert sorted(iam.list_role_policies(RoleName=name)["PolicyNames"]) == ["a", "b"]


def test_managed_policy_size_quota(iam: Any) -> None:
    arn = iam.create_policy(PolicyName=_name("p"), PolicyDocument=_sized(S3_READ, 6144))["Policy"]["Arn"]
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=_sized(S3_READ, 6144))
    for call in (
        lambda doc: iam.create_policy(PolicyName=_name("p"), PolicyDocument=doc),
        lambda doc: iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc),
    ):
        with pytest.raises(ClientError) as err:
            call(_sized(S3_READ, 6145))
        assert _error(err) == ("LimitExceeded", 409, "Cannot exceed quota for PolicySize: 6144")
    assert len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 2


def test_eleventh_attached_policy_is_refused(iam: Any) -> None:
    name = _role(iam, _trust(_allow({"AWS": ROOT}))).split("/")[-1]
    arns = [
        iam.create_policy(
            PolicyName=_name("p"), PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [S3_READ]})
        )["Policy"]["Arn"]
        for _ in range(11)
    ]
    for arn in arns[:10]:
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    iam.attach_role_policy(RoleName=name, PolicyArn=arns[0])  # re-attaching is a no-op, not an 11th
    with pytest.raises(ClientError) as err:
        iam.attach_role_policy(RoleName=name, PolicyArn=arns[10])
    assert _error(err) == ("LimitExceeded", 409, "Cannot exceed quota for PoliciesPerRole: 10")
    assert len(iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]) == 10
