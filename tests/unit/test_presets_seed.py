"""The presets against the seed's role inventory: roles, statements, trust, rendering and sizes."""

from __future__ import annotations

import re

import pytest

from porter_identity.iam.inventory import from_presets, render, statements_from_iam
from porter_identity.iam.policy import Condition, Statement, compact, document, size
from porter_identity.iam.presets import (
    ACCOUNT_PLACEHOLDER,
    PRESETS,
    S3_PRESET,
    Preset,
    Trust,
    s3_role_name,
    s3_statements,
    statements_for,
    trust_document,
)
from tests.seedtable import SEED_PATH, SERVICES, Inventory, Row, parse_inventory, parse_seed, split_seed_actions

ACCOUNT = "123456789012"
MANAGEMENT_ARN = "arn:aws:iam::999999999999:role/CAPIManagement"
MANAGED_POLICY_LIMIT = 6144  # characters, whitespace excluded
S3_HEADING, S3_LISTED = f"{S3_PRESET}-*", f"{S3_PRESET}-<hash>"


@pytest.fixture(scope="module")
def seed() -> Inventory:
    # The seed is part of the build's inputs (../shared beside the checkout, as in CI): missing is a failure.
    assert SEED_PATH.exists(), f"seed inventory not found at {SEED_PATH}: check out ../shared beside the project"
    return parse_seed()


def heading(name: str) -> str:
    return S3_HEADING if name == S3_PRESET else name


def rows(statements: tuple[Statement, ...]) -> list[Row]:
    return [(s.sid, s.resources, s.actions, "; ".join(c.text() for c in s.conditions) or "—") for s in statements]


def full_document(preset: Preset) -> dict[str, object]:
    return document([s.to_iam() for s in statements_for(preset, ACCOUNT)])


# --- the seed parser itself ---------------------------------------------------------------------------------


def test_parser_splits_concatenated_actions_on_service_prefixes() -> None:
    assert split_seed_actions("iam:GetRoleiam:GetRolePolicy") == ("iam:GetRole", "iam:GetRolePolicy")
    assert split_seed_actions("ecr-public:GetAuthorizationTokensts:GetServiceBearerToken") == (
        "ecr-public:GetAuthorizationToken",
        "sts:GetServiceBearerToken",
    )
    assert split_seed_actions("eks:DescribeClustereks-auth:AssumeRoleForPodIdentity") == (
        "eks:DescribeCluster",
        "eks-auth:AssumeRoleForPodIdentity",
    )


def test_every_parsed_seed_action_is_one_well_formed_action(seed: Inventory) -> None:
    actions = {a for role in seed.roles.values() for row in role.rows for a in row[2]}
    malformed = {a for a in actions if not re.fullmatch(r"([a-z0-9-]+):[A-Z*][A-Za-z0-9]*\*?", a)}
    assert not malformed
    assert {a.split(":")[0] for a in actions} == set(SERVICES)


# --- coverage: one preset per seed role ----------------------------------------------------------------------


def test_every_seed_role_has_a_preset_and_vice_versa_in_seed_order(seed: Inventory) -> None:
    assert [heading(name) for name in PRESETS] == list(seed.roles)
    assert [row[0] for row in seed.summary] == [S3_LISTED if n == S3_PRESET else n for n in PRESETS]


# --- statements, summary columns and trust lines -------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_statements_match_the_seed_one_by_one(seed: Inventory, name: str) -> None:
    expected = seed.roles[heading(name)].rows
    actual = rows(PRESETS[name].statements)
    assert [row[0] for row in actual] == [row[0] for row in expected]
    for got, want in zip(actual, expected, strict=True):
        assert got == want, got[0]


@pytest.mark.parametrize("name", PRESETS)
def test_summary_columns_and_role_lines_match_the_seed(seed: Inventory, name: str) -> None:
    preset = PRESETS[name]
    (row,) = [r for r in seed.summary if r[0] == (S3_LISTED if name == S3_PRESET else name)]
    assert (preset.created_by, preset.assumable_from_outside, preset.purpose) == row[1:]
    role = seed.roles[heading(name)]
    assert (preset.summary, preset.trusted_by) == (role.summary, role.trusted_by)


# --- account placeholder -------------------------------------------------------------------------------------


def test_statements_for_fills_the_account_everywhere() -> None:
    assert any(ACCOUNT_PLACEHOLDER in r for s in PRESETS["porter-karpenter"].statements for r in s.resources)
    for preset in PRESETS.values():
        filled = statements_for(preset, ACCOUNT)
        assert ACCOUNT_PLACEHOLDER not in compact(document([s.to_iam() for s in filled]))
        assert [s.sid for s in filled] == [s.sid for s in preset.statements]
    (passrole,) = [s for s in statements_for(PRESETS["porter-karpenter"], ACCOUNT) if s.sid == "PassNodeInstanceRole"]
    assert passrole.resources == (f"arn:aws:iam::{ACCOUNT}:role/porter-node-manager",)


@pytest.mark.parametrize("account", ["", "12345678901", "1234567890123", "*", "12345678901x"])
def test_statements_for_refuses_what_is_not_an_account_id(account: str) -> None:
    with pytest.raises(ValueError):
        statements_for(PRESETS["porter-karpenter"], account)


# --- the per-bucket S3 role ----------------------------------------------------------------------------------


def test_s3_statements_are_scoped_to_the_bucket() -> None:
    (template,) = PRESETS[S3_PRESET].statements
    (scoped,) = s3_statements("porter-logs-abc")
    assert scoped.resources == ("arn:aws:s3:::porter-logs-abc/*",)
    assert (scoped.sid, scoped.actions, scoped.conditions) == (template.sid, template.actions, ())
    assert s3_statements("*") == PRESETS[S3_PRESET].statements


@pytest.mark.parametrize("bucket", ["", "porter-*", "a", "Upper", "b/*", "x" * 64])
def test_s3_statements_refuse_wildcards_and_invalid_bucket_names(bucket: str) -> None:
    with pytest.raises(ValueError):
        s3_statements(bucket)


def test_s3_role_name_is_valid_deterministic_and_distinct() -> None:
    long_a, long_b = "a" * 62 + "1", "a" * 62 + "2"
    names = {s3_role_name(b) for b in ("logs", "release", long_a, long_b)}
    assert len(names) == 4
    assert s3_role_name(long_a) == s3_role_name(long_a)
    for name in names:
        assert re.fullmatch(r"porter-s3-[0-9a-f]{10}", name)
        assert len(name) <= 64


# --- trust ---------------------------------------------------------------------------------------------------


def trust_from_line(trusted_by: str) -> Trust:
    """What the seed's "Assumable by ..." line says, independently of how the presets spell it."""
    if "EKS Pod Identities" in trusted_by:
        return Trust(None, (), pod_identity=True)
    services = {"EC2": "ec2.amazonaws.com", "EKS": "eks.amazonaws.com", "VPC Flow Logs": "vpc-flow-logs.amazonaws.com"}
    mentioned = tuple(arn for word, arn in services.items() if re.search(rf"\b{word}\b(?! Pod)", trusted_by))
    management = None
    if "CAPIManagement" in trusted_by:
        management = "required" if "ExternalId required" in trusted_by else "default"
    return Trust(management, mentioned, pod_identity="EKS Pod Identity" in trusted_by)


@pytest.mark.parametrize("name", PRESETS)
def test_trust_is_what_the_assumable_by_line_says(name: str) -> None:
    preset = PRESETS[name]
    assert preset.trust == trust_from_line(preset.trusted_by)
    assert (preset.trust.management is not None) == preset.assumable_from_outside.startswith("Yes")


def test_trust_of_the_outside_assumable_roles() -> None:
    assert PRESETS["porter-manager"].trust == Trust("required", ("ec2.amazonaws.com", "eks.amazonaws.com"), False)
    assert PRESETS["porter-access-manager"].trust == Trust("default", ("ec2.amazonaws.com", "eks.amazonaws.com"), True)
    assert PRESETS["porter-infra-manager"].trust == Trust(
        "default", ("ec2.amazonaws.com", "eks.amazonaws.com", "vpc-flow-logs.amazonaws.com"), True
    )


def statements_by_sid(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    statements = doc["Statement"]
    assert isinstance(statements, list)
    return {s["Sid"]: s for s in statements}


def test_porter_manager_requires_the_external_id_even_when_ack_compatible() -> None:
    doc = trust_document(PRESETS["porter-manager"].trust, ACCOUNT, MANAGEMENT_ARN, "ext-1", ack_compatible=True)
    by_sid = statements_by_sid(doc)
    assert doc["Version"] == "2012-10-17"
    assert list(by_sid) == ["PorterManagement", "AwsServices"]
    assert by_sid["PorterManagement"] == {
        "Sid": "PorterManagement",
        "Effect": "Allow",
        "Principal": {"AWS": MANAGEMENT_ARN},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "ext-1"}},
    }
    assert by_sid["AwsServices"]["Principal"] == {"Service": ["ec2.amazonaws.com", "eks.amazonaws.com"]}


@pytest.mark.parametrize("name", ["porter-access-manager", "porter-infra-manager"])
def test_ack_compatible_trust_drops_the_external_id_only_where_allowed(name: str) -> None:
    trust = PRESETS[name].trust
    relaxed = statements_by_sid(trust_document(trust, ACCOUNT, MANAGEMENT_ARN, None, ack_compatible=True))
    assert "Condition" not in relaxed["PorterManagement"]
    strict = statements_by_sid(trust_document(trust, ACCOUNT, MANAGEMENT_ARN, "ext-1", ack_compatible=False))
    assert strict["PorterManagement"]["Condition"] == {"StringEquals": {"sts:ExternalId": "ext-1"}}


@pytest.mark.parametrize(
    ("name", "ack_compatible"),
    [("porter-manager", True), ("porter-manager", False), ("porter-access-manager", False)],
)
@pytest.mark.parametrize("external_id", [None, ""])
def test_trust_document_refuses_a_missing_external_id(name: str, ack_compatible: bool, external_id: str | None) -> None:
    with pytest.raises(ValueError):
        trust_document(PRESETS[name].trust, ACCOUNT, MANAGEMENT_ARN, external_id, ack_compatible)


def test_pod_identity_trust_allows_tag_session_from_this_account_only() -> None:
    doc = trust_document(PRESETS["porter-karpenter"].trust, ACCOUNT, MANAGEMENT_ARN, None, ack_compatible=False)
    assert statements_by_sid(doc) == {
        "EksPodIdentity": {
            "Sid": "EksPodIdentity",
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }
    }


def test_infra_manager_trusts_all_its_services_and_pod_identity() -> None:
    trust = PRESETS["porter-infra-manager"].trust
    by_sid = statements_by_sid(trust_document(trust, ACCOUNT, MANAGEMENT_ARN, "ext-1", ack_compatible=False))
    assert list(by_sid) == ["PorterManagement", "AwsServices", "EksPodIdentity"]
    assert by_sid["AwsServices"]["Principal"] == {
        "Service": ["ec2.amazonaws.com", "eks.amazonaws.com", "vpc-flow-logs.amazonaws.com"]
    }


def test_unknown_management_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        Trust("sometimes", (), pod_identity=False)


# --- rendering the inventory ---------------------------------------------------------------------------------


def test_rendered_presets_parse_back_to_the_seed(seed: Inventory) -> None:
    rendered = parse_inventory(render(from_presets()))
    assert rendered.summary == seed.summary
    assert list(rendered.roles) == list(seed.roles)
    for name, role in seed.roles.items():
        assert rendered.roles[name] == role, name


def test_rendering_for_an_account_fills_the_placeholder() -> None:
    text = render(from_presets(ACCOUNT))
    assert ACCOUNT_PLACEHOLDER not in text
    assert f"arn:aws:iam::{ACCOUNT}:role/porter-infra-manager" in text


def test_render_is_readable_markdown() -> None:
    text = render(from_presets())
    assert (
        "| IamReadOnly | * | iam:GetRolePolicy, iam:GetUser, iam:ListGroups, iam:ListRoles, iam:ListUsers | — |" in text
    )
    assert "| CloudTrailS3Buckets | arn:aws:s3:::aws-cloudtrail-logs*<br>arn:aws:s3:::porter-*<br>" in text
    assert "\n### porter-s3-*\n" in text
    assert "\n| porter-s3-<hash> | Provisioned dynamically per bucket |" in text


# --- reading live policy documents back ----------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_statements_from_iam_round_trips_every_preset(name: str) -> None:
    statements = statements_for(PRESETS[name], ACCOUNT)
    assert statements_from_iam(document([s.to_iam() for s in statements])) == statements


def test_statements_from_iam_accepts_single_strings() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": {
            "Sid": "One",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {"Null": {"aws:RequestTag/x": False}, "StringLike": {"aws:RequestTag/y": "a*"}},
        },
    }
    assert statements_from_iam(doc) == (
        Statement(
            "One",
            ("*",),
            ("s3:GetObject",),
            (Condition("aws:RequestTag/x", "is not null"), Condition("aws:RequestTag/y", "like", ("a*",))),
        ),
    )


@pytest.mark.parametrize(
    "statement",
    [
        {"Sid": "Deny", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},
        {"Sid": "NotAction", "Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},
        {"Sid": "Op", "Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"k": "true"}}},
        {"Sid": "Null", "Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Null": {"k": "true"}}},
        {
            "Sid": "ForAll",
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"ForAllValues:StringEquals": {"aws:RequestTag/x": "v"}},
        },
        {
            "Sid": "LikeList",
            "Effect": "Allow",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringLike": {"k": ["a", "b"]}},
        },
    ],
)
def test_statements_from_iam_refuses_what_the_inventory_cannot_show(statement: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        statements_from_iam({"Version": "2012-10-17", "Statement": [statement]})


# --- policy sizes --------------------------------------------------------------------------------------------


def test_report_policy_sizes_and_every_statement_fits_a_managed_policy() -> None:
    for name, preset in PRESETS.items():
        print(f"{name}: {size(full_document(preset))} characters")
        for statement in statements_for(preset, ACCOUNT):
            assert size(document([statement.to_iam()])) <= MANAGED_POLICY_LIMIT, (name, statement.sid)


def test_porter_manager_exceeds_one_managed_policy() -> None:
    # IAM caps a managed policy at 6,144 characters, so the operator must split porter-manager's statements
    # across several attached policies instead of writing one document.
    assert size(full_document(PRESETS["porter-manager"])) > MANAGED_POLICY_LIMIT
