"""The PorterRoleSet AWS adapter through boto3 against the AWS emulator: assumed-role sessions and IAM role calls."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

import boto3
import pytest

from porter_dev.processes import AWS_REGION, AwsEmulator
from porter_identity.errors import AccessDenied, Conflict, LimitExceeded, NotFound
from porter_identity.model import POLICY_PATH
from porter_identity.providers import iam as iam_module
from porter_identity.providers.iam import SESSION_NAME, AssumedRoles, IamRoles
from porter_identity.reconcile.roleset import TRUST_LIMIT

ACCOUNT = "123456789012"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
EXTERNAL_ID = "porter-ext-7f3a9c"
ROTATED_ID = "porter-ext-rotated-51d2"
WRONG_ID = "porter-ext-wrong-0000"
S3_READ = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}


def _name(prefix: str = "ps") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _trust(external_id: str = EXTERNAL_ID) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ROOT},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }


def _policy(*actions: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


def _assume_roles(aws: AwsEmulator) -> int:
    return aws.calls().get("sts:AssumeRole", 0)


@pytest.fixture
def endpoint(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> AwsEmulator:
    # AssumedRoles and IamRoles build clients without endpoint_url: boto3 reads AWS_ENDPOINT_URL instead.
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return aws


@pytest.fixture
def base(endpoint: AwsEmulator) -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=AWS_REGION)


@pytest.fixture
def roles(base: boto3.session.Session) -> AssumedRoles:
    return AssumedRoles(max_attempts=1, base=base)


@pytest.fixture
def admin(aws: AwsEmulator) -> Any:
    """A plain IAM client on the test keys, to set up and check what the adapter did."""
    return aws.client("iam")


@pytest.fixture
def iam_roles(base: boto3.session.Session, roles: AssumedRoles) -> IamRoles:
    return IamRoles(base, roles.config(AWS_REGION), ACCOUNT)


def _make_trusted_role(admin: Any, external_id: str = EXTERNAL_ID) -> tuple[str, str]:
    name = _name("assumed")
    arn: str = admin.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_trust(external_id)))["Role"]["Arn"]
    return name, arn


# --- AssumedRoles: one AssumeRole per (role, ExternalId), typed refusals, botocore refresh ---


def test_session_is_assumed_once_and_cached(aws: AwsEmulator, admin: Any, roles: AssumedRoles) -> None:
    _, arn = _make_trusted_role(admin)
    before = _assume_roles(aws)
    first = roles.session(arn, EXTERNAL_ID, AWS_REGION)
    second = roles.session(arn, EXTERNAL_ID, AWS_REGION)
    assert second is first
    assert _assume_roles(aws) - before == 1


def test_session_credentials_are_the_assumed_role(aws: AwsEmulator, admin: Any, roles: AssumedRoles) -> None:
    name, arn = _make_trusted_role(admin)
    session = roles.session(arn, EXTERNAL_ID, AWS_REGION)
    identity = session.client("sts", config=roles.config(AWS_REGION)).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{SESSION_NAME}"
    iam = session.client("iam", config=roles.config(AWS_REGION))
    assert iam.get_role(RoleName=name)["Role"]["Arn"] == arn


def test_rotated_external_id_assumes_again_and_replaces_the_old_session(
    aws: AwsEmulator, admin: Any, roles: AssumedRoles
) -> None:
    name, arn = _make_trusted_role(admin)
    old = roles.session(arn, EXTERNAL_ID, AWS_REGION)
    admin.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(_trust(ROTATED_ID)))
    before = _assume_roles(aws)
    new = roles.session(arn, ROTATED_ID, AWS_REGION)
    assert new is not old
    assert _assume_roles(aws) - before == 1
    assert roles.session(arn, ROTATED_ID, AWS_REGION) is new
    assert _assume_roles(aws) - before == 1
    # The old session was dropped: asking for it again goes to STS, which now refuses the old ExternalId.
    with pytest.raises(AccessDenied):
        roles.session(arn, EXTERNAL_ID, AWS_REGION)
    assert _assume_roles(aws) - before == 2


def test_wrong_external_id_is_access_denied_without_leaking_it_and_is_not_cached(
    aws: AwsEmulator, admin: Any, roles: AssumedRoles
) -> None:
    name, arn = _make_trusted_role(admin)
    before = _assume_roles(aws)
    with pytest.raises(AccessDenied) as err:
        roles.session(arn, WRONG_ID, AWS_REGION)
    assert err.value.code == "AccessDenied"
    assert arn in err.value.message
    assert WRONG_ID not in str(err.value) and WRONG_ID not in repr(err.value.__cause__)
    with pytest.raises(AccessDenied):
        roles.session(arn, WRONG_ID, AWS_REGION)
    assert _assume_roles(aws) - before == 2  # a refusal is not cached
    session = roles.session(arn, EXTERNAL_ID, AWS_REGION)
    assert session.client("iam").get_role(RoleName=name)["Role"]["Arn"] == arn
    assert _assume_roles(aws) - before == 3


def test_missing_role_is_access_denied(roles: AssumedRoles) -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:role/{_name('missing')}"
    with pytest.raises(AccessDenied) as err:
        roles.session(arn, EXTERNAL_ID, AWS_REGION)
    assert arn in err.value.message


def test_short_lived_credentials_are_refreshed_through_assume_role(
    aws: AwsEmulator, admin: Any, roles: AssumedRoles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 900 s is STS's minimum and within botocore's 15-minute advisory window: every use refreshes.
    monkeypatch.setattr(iam_module, "SESSION_SECONDS", 900)
    name, arn = _make_trusted_role(admin)
    before = _assume_roles(aws)
    session = roles.session(arn, EXTERNAL_ID, AWS_REGION)
    assert _assume_roles(aws) - before == 1
    iam = session.client("iam", config=roles.config(AWS_REGION))
    for _ in range(3):
        assert iam.get_role(RoleName=name)["Role"]["Arn"] == arn
    refreshes = _assume_roles(aws) - before - 1
    assert refreshes == 3  # one AssumeRole per signed request
    credentials = session.get_credentials()
    assert credentials is not None
    assert credentials.method == "sts-assume-role"


def test_long_lived_credentials_are_not_refreshed(aws: AwsEmulator, admin: Any, roles: AssumedRoles) -> None:
    name, arn = _make_trusted_role(admin)
    before = _assume_roles(aws)
    iam = roles.session(arn, EXTERNAL_ID, AWS_REGION).client("iam", config=roles.config(AWS_REGION))
    for _ in range(3):
        iam.get_role(RoleName=name)
    assert _assume_roles(aws) - before == 1


def test_refused_refresh_keeps_valid_credentials_until_refresh_is_mandatory(
    aws: AwsEmulator, admin: Any, roles: AssumedRoles, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(iam_module, "SESSION_SECONDS", 900)
    name, arn = _make_trusted_role(admin)
    session = roles.session(arn, EXTERNAL_ID, AWS_REGION)
    iam = session.client("iam", config=roles.config(AWS_REGION))
    admin.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(_trust(ROTATED_ID)))
    before = _assume_roles(aws)
    # In botocore's advisory window (under 15 minutes left) a failed refresh is logged and the old keys are used.
    assert iam.get_role(RoleName=name)["Role"]["Arn"] == arn
    assert _assume_roles(aws) - before == 1
    assert "advisory refresh" in caplog.text
    assert EXTERNAL_ID not in caplog.text
    # Under 10 minutes left the refresh is mandatory: our closure's typed AccessDenied reaches the caller.
    credentials = session.get_credentials()
    now = credentials._time_fetcher  # type: ignore[union-attr]
    credentials._time_fetcher = lambda: now() + datetime.timedelta(minutes=6)  # type: ignore[union-attr]
    with pytest.raises(AccessDenied) as err:
        iam.get_role(RoleName=name)
    assert arn in err.value.message and EXTERNAL_ID not in err.value.message


# --- IamRoles: role, trust, tags, inline and managed policies ---


def test_create_role_then_read(iam_roles: IamRoles) -> None:
    name = _name("role")
    tags = {"porter.run/managed": "true", "porter.run/owner": "ns/set"}
    arn = iam_roles.create_role(name, _trust(), tags, "made by a test")
    assert arn == f"arn:aws:iam::{ACCOUNT}:role/{name}"
    observed = iam_roles.read(name)
    assert observed is not None
    assert (observed.name, observed.arn) == (name, arn)
    assert observed.trust == _trust()
    assert observed.tags == tags
    assert observed.inline == {} and observed.managed == {}


def test_read_missing_role_is_none(iam_roles: IamRoles) -> None:
    assert iam_roles.read(_name("missing")) is None


def test_create_existing_role_is_conflict(iam_roles: IamRoles) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    with pytest.raises(Conflict) as err:
        iam_roles.create_role(name, _trust(), {}, "")
    assert err.value.code == "EntityAlreadyExists"


def test_update_trust(iam_roles: IamRoles) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    iam_roles.update_trust(name, _trust(ROTATED_ID))
    observed = iam_roles.read(name)
    assert observed is not None and observed.trust == _trust(ROTATED_ID)


def test_tag_and_untag(iam_roles: IamRoles) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {"a": "1"}, "")
    iam_roles.tag(name, {"b": "2", "a": "3"})
    iam_roles.untag(name, ["b"])
    observed = iam_roles.read(name)
    assert observed is not None and observed.tags == {"a": "3"}


def test_put_inline_then_read_and_delete(iam_roles: IamRoles) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    doc = _policy("s3:GetObject", "s3:ListBucket")
    iam_roles.put_inline(name, "porter-permissions", doc)
    observed = iam_roles.read(name)
    assert observed is not None and observed.inline == {"porter-permissions": doc}
    iam_roles.delete_inline(name, "porter-permissions")
    observed = iam_roles.read(name)
    assert observed is not None and observed.inline == {}


def test_delete_missing_inline_is_quiet(iam_roles: IamRoles) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    iam_roles.delete_inline(name, "never-put")
    iam_roles.delete_inline(_name("missing"), "never-put")  # a missing role is NoSuchEntity too


def test_put_managed_creates_and_attaches_under_porter_path(iam_roles: IamRoles, admin: Any) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    policy = f"{name}-1"
    doc = _policy("s3:GetObject")
    iam_roles.put_managed(name, policy, doc, {"porter.run/managed": "true"})
    arn = f"arn:aws:iam::{ACCOUNT}:policy{POLICY_PATH}{policy}"
    assert iam_roles.policy_arn(policy) == arn
    got = admin.get_policy(PolicyArn=arn)["Policy"]
    assert got["Path"] == POLICY_PATH and got["PolicyName"] == policy
    assert {"Key": "porter.run/managed", "Value": "true"} in admin.list_policy_tags(PolicyArn=arn)["Tags"]
    attached = admin.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    assert attached == [{"PolicyName": policy, "PolicyArn": arn}]
    observed = iam_roles.read(name)
    assert observed is not None
    assert set(observed.managed) == {policy}
    assert observed.managed[policy].arn == arn
    assert observed.managed[policy].document == doc


def test_put_managed_past_five_versions_keeps_the_latest(iam_roles: IamRoles, admin: Any) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    policy = f"{name}-1"
    docs = [_policy(f"s3:Action{i}") for i in range(7)]
    for doc in docs:
        iam_roles.put_managed(name, policy, doc, {})
        observed = iam_roles.read(name)
        assert observed is not None and observed.managed[policy].document == doc
    versions = admin.list_policy_versions(PolicyArn=iam_roles.policy_arn(policy))["Versions"]
    assert len(versions) == 5
    assert sorted(v["VersionId"] for v in versions) == ["v3", "v4", "v5", "v6", "v7"]  # the oldest went first
    assert [v["VersionId"] for v in versions if v["IsDefaultVersion"]] == ["v7"]


def test_detach_own_policy_deletes_it(iam_roles: IamRoles, admin: Any) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    policy = f"{name}-1"
    for i in range(3):  # non-default versions must go before DeletePolicy
        iam_roles.put_managed(name, policy, _policy(f"s3:Action{i}"), {})
    arn = iam_roles.policy_arn(policy)
    iam_roles.detach(name, arn)
    assert admin.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
    with pytest.raises(admin.exceptions.NoSuchEntityException):
        admin.get_policy(PolicyArn=arn)
    iam_roles.detach(name, arn)  # already gone is quiet
    observed = iam_roles.read(name)
    assert observed is not None and observed.managed == {}


def test_detach_foreign_policy_leaves_it(iam_roles: IamRoles, admin: Any) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    foreign = admin.create_policy(PolicyName=_name("foreign"), PolicyDocument=json.dumps(_policy("s3:GetObject")))
    arn = foreign["Policy"]["Arn"]
    admin.attach_role_policy(RoleName=name, PolicyArn=arn)
    observed = iam_roles.read(name)
    assert observed is not None and observed.managed[foreign["Policy"]["PolicyName"]].arn == arn
    iam_roles.detach(name, arn)
    assert admin.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
    assert admin.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn


def test_detach_porter_policy_of_another_role_leaves_it(iam_roles: IamRoles, admin: Any) -> None:
    name, other = _name("role"), _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    iam_roles.create_role(other, _trust(), {}, "")
    policy = f"{other}-1"
    iam_roles.put_managed(other, policy, _policy("s3:GetObject"), {})
    arn = iam_roles.policy_arn(policy)
    admin.attach_role_policy(RoleName=name, PolicyArn=arn)
    iam_roles.detach(name, arn)
    assert admin.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
    assert admin.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn
    observed = iam_roles.read(other)
    assert observed is not None and set(observed.managed) == {policy}


def test_detach_porter_policy_of_a_role_whose_name_extends_ours_leaves_it(iam_roles: IamRoles, admin: Any) -> None:
    name = _name("role")
    other = f"{name}-api"
    iam_roles.create_role(name, _trust(), {}, "")
    iam_roles.create_role(other, _trust(), {}, "")
    policy = f"{other}-1"
    iam_roles.put_managed(other, policy, _policy("s3:GetObject"), {})
    arn = iam_roles.policy_arn(policy)
    admin.attach_role_policy(RoleName=name, PolicyArn=arn)
    iam_roles.detach(name, arn)
    assert admin.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn


def test_delete_role_with_inline_and_managed_policies(iam_roles: IamRoles, admin: Any) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    iam_roles.put_inline(name, "porter-permissions", _policy("s3:GetObject"))
    for i in (1, 2):
        iam_roles.put_managed(name, f"{name}-{i}", _policy(f"s3:Action{i}"), {})
    foreign = admin.create_policy(PolicyName=_name("foreign"), PolicyDocument=json.dumps(_policy("sqs:*")))
    admin.attach_role_policy(RoleName=name, PolicyArn=foreign["Policy"]["Arn"])
    observed = iam_roles.read(name)
    assert observed is not None and len(observed.inline) == 1 and len(observed.managed) == 3
    iam_roles.delete_role(observed)
    assert iam_roles.read(name) is None
    for i in (1, 2):
        with pytest.raises(admin.exceptions.NoSuchEntityException):
            admin.get_policy(PolicyArn=iam_roles.policy_arn(f"{name}-{i}"))
    assert admin.get_policy(PolicyArn=foreign["Policy"]["Arn"])["Policy"]["AttachmentCount"] == 0
    iam_roles.delete_role(observed)  # already gone is quiet


def test_missing_role_is_not_found_for_writes(iam_roles: IamRoles) -> None:
    with pytest.raises(NotFound) as err:
        iam_roles.update_trust(_name("missing"), _trust())
    assert err.value.code == "NoSuchEntity"


# --- IAM quotas: the trust policy is limited to 2,048 characters ---


def _oversized_trust() -> dict[str, Any]:
    trust = _trust()
    trust["Statement"][0]["Sid"] = "S" * TRUST_LIMIT
    return trust


def test_oversized_trust_on_create_is_refused_with_code_limit_exceeded(iam_roles: IamRoles) -> None:
    name = _name("role")
    with pytest.raises(LimitExceeded) as err:
        iam_roles.create_role(name, _oversized_trust(), {}, "")
    assert err.value.code == "LimitExceeded"
    assert iam_roles.read(name) is None


def test_oversized_trust_on_update_is_refused_with_code_limit_exceeded(iam_roles: IamRoles) -> None:
    name = _name("role")
    iam_roles.create_role(name, _trust(), {}, "")
    with pytest.raises(LimitExceeded) as err:
        iam_roles.update_trust(name, _oversized_trust())
    assert err.value.code == "LimitExceeded"
    observed = iam_roles.read(name)
    assert observed is not None and observed.trust == _trust()
