"""Pure AWS decisions: ownership tags, role ARNs, the apply / delete plans and the trust policy check."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from porter_identity.clouds.aws import plan as decide
from porter_identity.clouds.aws.plan import (
    MANAGED_TAG,
    NAME_TAG,
    UID_TAG,
    Action,
    DeleteAction,
    Plan,
    foreign_account,
    owned_by,
    ownership_tags,
    plan_apply,
    plan_delete,
)
from porter_identity.model import Association

UID = "0b7e-our-uid"
OTHER_UID = "9f1c-other-uid"
ROLE = "arn:aws:iam::123456789012:role/app"
OTHER_ROLE = "arn:aws:iam::123456789012:role/other"


def association(tags: dict[str, str], role_arn: str = ROLE) -> Association:
    return Association(
        association_id="a-0123456789",
        association_arn="arn:aws:eks:us-east-1:123456789012:podidentityassociation/c/a-0123456789",
        namespace="team-a",
        service_account="app",
        role_arn=role_arn,
        tags=tags,
    )


def ours(role_arn: str = ROLE) -> Association:
    return association(ownership_tags(UID, "team-a", "conn"), role_arn)


def theirs() -> Association:
    return association(ownership_tags(OTHER_UID, "team-b", "other-conn"))


# --- tags and ownership ----------------------------------------------------------------------------------------------


def test_tag_keys() -> None:
    assert MANAGED_TAG == "porter.run/managed"
    assert UID_TAG == "porter.run/connection-uid"
    assert NAME_TAG == "porter.run/connection"


def test_ownership_tags() -> None:
    assert ownership_tags("u-1", "ns", "name") == {
        "porter.run/managed": "true",
        "porter.run/connection-uid": "u-1",
        "porter.run/connection": "ns/name",
    }


def test_owned_by_our_tags() -> None:
    assert owned_by(ours(), UID)


def test_not_owned_by_other_uid() -> None:
    assert not owned_by(ours(), OTHER_UID)
    assert not owned_by(theirs(), UID)


@pytest.mark.parametrize(
    "tags",
    [
        {},
        {UID_TAG: UID},
        {MANAGED_TAG: "false", UID_TAG: UID},
        {MANAGED_TAG: "True", UID_TAG: UID},
        {MANAGED_TAG: "true"},
        {MANAGED_TAG: "true", UID_TAG: ""},
        {MANAGED_TAG: "true", UID_TAG: UID.upper()},
    ],
)
def test_not_owned_without_both_tags_exactly(tags: dict[str, str]) -> None:
    assert not owned_by(association(tags), UID)


def test_owned_ignores_extra_and_name_tags() -> None:
    tags = {MANAGED_TAG: "true", UID_TAG: UID, NAME_TAG: "somewhere/else", "team": "x"}
    assert owned_by(association(tags), UID)


def test_empty_uid_never_matches_a_missing_uid_tag() -> None:
    assert not owned_by(association({MANAGED_TAG: "true"}), "")


# --- foreign_account -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "account", "expected"),
    [
        ("app", "123456789012", None),
        ("arn:aws:iam::123456789012:role/app", "123456789012", None),
        ("arn:aws:iam::123456789012:role/path/app", None, None),
        ("arn:aws:iam::999999999999:role/app", "123456789012", "999999999999"),
        ("arn:aws-cn:iam::999999999999:role/app", "123456789012", "999999999999"),
    ],
)
def test_foreign_account(role: str, account: str | None, expected: str | None) -> None:
    assert foreign_account(role, account) == expected


# --- plan_apply ------------------------------------------------------------------------------------------------------


def test_apply_nothing_there_creates() -> None:
    plan = plan_apply(UID, ROLE, None)
    assert plan == Plan(Action.CREATE)
    assert plan.association is None
    assert plan.message == ""


def test_apply_ours_with_same_role_keeps() -> None:
    observed = ours()
    plan = plan_apply(UID, ROLE, observed)
    assert plan.action is Action.KEEP
    assert plan.association is observed
    assert plan.message == ""


def test_apply_ours_with_other_role_updates() -> None:
    observed = ours(OTHER_ROLE)
    plan = plan_apply(UID, ROLE, observed)
    assert plan.action is Action.UPDATE
    assert plan.association is observed


def test_apply_role_comparison_is_exact() -> None:
    # a path or partition difference is a different role
    assert plan_apply(UID, "arn:aws:iam::123456789012:role/p/app", ours()).action is Action.UPDATE
    assert plan_apply(UID, "arn:aws-cn:iam::123456789012:role/app", ours()).action is Action.UPDATE


def test_apply_other_connections_association_conflicts_and_names_it() -> None:
    observed = theirs()
    plan = plan_apply(UID, ROLE, observed)
    assert plan.action is Action.CONFLICT
    assert plan.association is observed
    assert "by connection team-b/other-conn" in plan.message
    assert "outside porter-identity" not in plan.message
    assert "team-a/app" in plan.message
    assert "a-0123456789" in plan.message
    assert ROLE in plan.message


def test_apply_conflict_even_when_role_matches() -> None:
    assert plan_apply(UID, ROLE, theirs()).action is Action.CONFLICT


def test_apply_untagged_association_conflicts_as_foreign() -> None:
    plan = plan_apply(UID, ROLE, association({}))
    assert plan.action is Action.CONFLICT
    assert "outside porter-identity" in plan.message
    assert "by connection" not in plan.message
    assert "EKS allows one per service account" in plan.message


def test_apply_managed_false_with_our_uid_conflicts() -> None:
    tags = {MANAGED_TAG: "false", UID_TAG: UID, NAME_TAG: "team-a/conn"}
    plan = plan_apply(UID, ROLE, association(tags))
    assert plan.action is Action.CONFLICT
    # not managed, so the name tag is not trusted
    assert "outside porter-identity" in plan.message
    assert "team-a/conn" not in plan.message


def test_apply_managed_without_name_tag_says_outside() -> None:
    plan = plan_apply(UID, ROLE, association({MANAGED_TAG: "true", UID_TAG: OTHER_UID}))
    assert plan.action is Action.CONFLICT
    assert "outside porter-identity" in plan.message


def test_plan_is_frozen() -> None:
    plan = plan_apply(UID, ROLE, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.action = Action.KEEP  # type: ignore[misc]


# --- plan_delete -----------------------------------------------------------------------------------------------------


def test_delete_nothing_there_is_gone() -> None:
    assert plan_delete(UID, None) is DeleteAction.GONE


def test_delete_ours_deletes() -> None:
    assert plan_delete(UID, ours()) is DeleteAction.DELETE
    assert plan_delete(UID, ours(OTHER_ROLE)) is DeleteAction.DELETE


@pytest.mark.parametrize(
    "observed",
    [
        theirs(),
        association({}),
        association({MANAGED_TAG: "false", UID_TAG: UID}),
        association({UID_TAG: UID}),
    ],
)
def test_delete_foreign_is_not_ours(observed: Association) -> None:
    assert plan_delete(UID, observed) is DeleteAction.NOT_OURS


def test_action_values() -> None:
    assert [a.value for a in Action] == ["Create", "Update", "Keep", "Adopt", "Conflict"]
    assert [a.value for a in DeleteAction] == ["Delete", "Gone", "NotOurs"]


# --- Association.from_api --------------------------------------------------------------------------------------------


def test_association_from_api() -> None:
    data = {
        "clusterName": "c",
        "associationId": "a-1",
        "associationArn": "arn:assoc",
        "namespace": "ns",
        "serviceAccount": "sa",
        "roleArn": ROLE,
        "tags": {MANAGED_TAG: "true"},
        "createdAt": "ignored",
    }
    assoc = Association.from_api(data)
    assert assoc == Association("a-1", "arn:assoc", "ns", "sa", ROLE, {MANAGED_TAG: "true"})
    assert assoc.tags is not data["tags"]


@pytest.mark.parametrize("extra", [{}, {"tags": None}])
def test_association_from_api_without_tags(extra: dict[str, None]) -> None:
    data = {
        "associationId": "a-1",
        "associationArn": "arn:assoc",
        "namespace": "ns",
        "serviceAccount": "sa",
        "roleArn": ROLE,
        **extra,
    }
    assoc = Association.from_api(data)
    assert assoc.tags == {}
    assert plan_delete(UID, assoc) is DeleteAction.NOT_OURS


# --- trust policy check ----------------------------------------------------------------------------------------------


def _trust(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


POD_ID = {"Service": "pods.eks.amazonaws.com"}


@pytest.mark.parametrize(
    "trust",
    [
        _trust({"Effect": "Allow", "Principal": POD_ID, "Action": ["sts:AssumeRole", "sts:TagSession"]}),
        _trust({"Effect": "Allow", "Principal": POD_ID, "Action": "sts:*"}),
        _trust({"Effect": "Allow", "Principal": POD_ID, "Action": "*"}),
        _trust(
            {
                "Effect": "Allow",
                "Principal": {"Service": ["ec2.amazonaws.com", "pods.eks.amazonaws.com"]},
                "Action": ["sts:AssumeRole"],
            },
            {"Effect": "Allow", "Principal": POD_ID, "Action": "sts:TagSession"},
        ),
        _trust(
            {
                "Effect": "Allow",
                "Principal": POD_ID,
                "Action": ["STS:assumerole", "sts:TagSession"],
                "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
            }
        ),
        {"Statement": {"Effect": "Allow", "Principal": POD_ID, "Action": ["sts:AssumeRole", "sts:TagSession"]}},
    ],
)
def test_trust_that_pod_identity_can_use(trust: dict[str, Any]) -> None:
    assert decide.trust_problem(trust) is None


@pytest.mark.parametrize(
    ("trust", "says"),
    [
        (_trust(), "does not allow the service principal pods.eks.amazonaws.com"),
        (
            _trust({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}),
            "does not allow the service principal pods.eks.amazonaws.com",
        ),
        (
            _trust({"Effect": "Deny", "Principal": POD_ID, "Action": ["sts:AssumeRole", "sts:TagSession"]}),
            "does not allow the service principal pods.eks.amazonaws.com",
        ),
        (
            _trust({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:*"}),
            "does not allow the service principal pods.eks.amazonaws.com",
        ),
        (
            _trust({"Effect": "Allow", "Principal": POD_ID, "Action": "sts:AssumeRole"}),
            "allows pods.eks.amazonaws.com but not sts:TagSession",
        ),
        (
            _trust({"Effect": "Allow", "Principal": POD_ID, "Action": "sts:TagSession"}),
            "allows pods.eks.amazonaws.com but not sts:AssumeRole",
        ),
        (
            _trust({"Effect": "Allow", "Principal": POD_ID, "Action": "sts:AssumeRoleWithWebIdentity"}),
            "but not sts:AssumeRole and sts:TagSession",
        ),
    ],
)
def test_trust_that_pod_identity_cannot_use_names_what_is_missing(trust: dict[str, Any], says: str) -> None:
    problem = decide.trust_problem(trust)
    assert problem is not None and says in problem


@pytest.mark.parametrize(
    ("code", "message", "refusal"),
    [
        ("InvalidParameterException", "Role provided in the request does not exist", "NOT_VISIBLE"),
        ("InvalidParameterException", "Trust policy of the role provided is invalid", "TRUST"),
        ("InvalidParameterException", "namespace and serviceAccount must be valid names.", None),
        ("ResourceInUseException", "Role provided in the request does not exist", None),
    ],
)
def test_eks_refusals_of_the_role_itself_are_told_from_other_invalid_requests(
    code: str, message: str, refusal: str | None
) -> None:
    from porter_identity.clouds.aws.plan import RoleRefusal, eks_role_refusal

    found = eks_role_refusal(code, message)
    assert found is (None if refusal is None else RoleRefusal[refusal])
