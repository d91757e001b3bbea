"""Allow rules: reserved names, foreign accounts and projects, rule matching, annotations, the no-policy default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from porter_identity.api.connection import ConnectionSpec
from porter_identity.api.policy import Policy, load
from porter_identity.reconcile.policy import ANNOTATION, Decision, decide, parse_annotation, target_of

ACCOUNT, PROJECT = "123456789012", "proj-a"
POLICY = Policy.model_validate(
    {
        "rules": [
            {
                "name": "shop",
                "namespaces": ["shop", "shop-*"],
                "aws": {"roles": ["shop-*"]},
                "azure": {"identities": ["shop-rg/shop-*"]},
                "gcp": {"serviceAccounts": ["shop-*@proj-a.iam.gserviceaccount.com"]},
            },
            {"namespaces": ["team-?"], "aws": {"roles": ["team-[ab]-*"]}},
        ]
    }
)


def spec(**provider: Any) -> ConnectionSpec:
    return ConnectionSpec.model_validate({"serviceAccountName": "app", **provider})


def aws(role: str) -> ConnectionSpec:
    return spec(aws={"role": role})


def azure(rg: str, name: str) -> ConnectionSpec:
    return spec(azure={"resourceGroup": rg, "identityName": name})


def gcp(email: str) -> ConnectionSpec:
    return spec(gcp={"serviceAccountEmail": email})


def check(
    s: ConnectionSpec, namespace: str = "shop", policy: Policy | None = POLICY, annotation: str | None = None
) -> Decision:
    return decide(s, namespace, policy, annotation, account_id=ACCOUNT, gcp_project=PROJECT)


@pytest.mark.parametrize(
    ("s", "namespace", "rule"),
    [
        (aws("shop-checkout"), "shop", "shop"),
        (aws(f"arn:aws:iam::{ACCOUNT}:role/workloads/shop-reports"), "shop-dev", "shop"),
        (azure("shop-rg", "shop-inventory"), "shop", "shop"),
        (gcp("shop-search@proj-a.iam.gserviceaccount.com"), "shop", "shop"),
        (aws("team-a-api"), "team-1", "rules[1]"),
        (aws("team-b-api"), "team-x", "rules[1]"),
    ],
)
def test_a_matching_rule_allows_and_is_named(s: ConnectionSpec, namespace: str, rule: str) -> None:
    decision = check(s, namespace)
    assert decision.allowed and decision.rule == rule and f"by rule {rule}" in decision.message


@pytest.mark.parametrize(
    ("s", "namespace", "expected"),
    [
        (aws("billing-api"), "shop", "shop cover namespace shop but do not allow aws IAM role billing-api"),
        (aws("shop-checkout"), "billing", "no rule covers namespace billing"),
        (aws("team-c-api"), "team-1", "rules[1] cover namespace team-1 but do not allow"),
        (aws("team-a-api"), "team-10", "no rule covers namespace team-10"),
        (azure("other-rg", "shop-inventory"), "shop", "do not allow azure managed identity other-rg/shop-inventory"),
        (azure("shop-rg", "billing"), "shop", "do not allow azure managed identity shop-rg/billing"),
        (gcp("billing@proj-a.iam.gserviceaccount.com"), "shop", "do not allow gcp service account billing@"),
        # Globs are case-sensitive: IAM treats names case-insensitively, so a rule never widens by case.
        (aws("SHOP-checkout"), "shop", "do not allow aws IAM role SHOP-checkout"),
        (aws("shop-checkout"), "SHOP", "no rule covers namespace SHOP"),
    ],
)
def test_anything_not_allowed_is_refused_with_the_reason(s: ConnectionSpec, namespace: str, expected: str) -> None:
    decision = check(s, namespace)
    assert not decision.allowed and decision.rule == "no-rule"
    assert decision.message.startswith("not allowed by policy: ") and expected in decision.message


def test_a_rule_for_one_provider_allows_nothing_on_another() -> None:
    policy = Policy.model_validate({"rules": [{"namespaces": ["*"], "aws": {"roles": ["*"]}}]})
    assert check(aws("anything"), policy=policy).allowed
    assert not check(azure("rg", "anything"), policy=policy).allowed
    assert not check(gcp("anything@proj-a.iam.gserviceaccount.com"), policy=policy).allowed


@pytest.mark.parametrize(
    "s",
    [
        aws("porter-manager"),
        aws("Porter-Manager"),
        aws(f"arn:aws:iam::{ACCOUNT}:role/porter-infra-manager"),
        aws(f"arn:aws:iam::{ACCOUNT}:role/some/path/porter-s3-1234abcd"),
        azure("shop-rg", "porter-agent"),
        gcp("porter-ops@proj-a.iam.gserviceaccount.com"),
    ],
)
def test_porter_identities_are_refused_even_when_a_rule_allows_everything(s: ConnectionSpec) -> None:
    everything = Policy.model_validate(
        {
            "rules": [
                {
                    "namespaces": ["*"],
                    "aws": {"roles": ["*"]},
                    "azure": {"identities": ["*"]},
                    "gcp": {"serviceAccounts": ["*"]},
                }
            ]
        }
    )
    decision = check(s, policy=everything, annotation="aws:* azure:* gcp:*")
    assert not decision.allowed and decision.rule == "reserved"
    assert "one of Porter's own identities (porter-*)" in decision.message


def test_a_role_in_another_account_is_refused_before_rules() -> None:
    decision = check(aws("arn:aws:iam::999999999999:role/shop-x"))
    assert (decision.allowed, decision.rule) == (False, "account")
    assert "is in account 999999999999, not the configured 123456789012" in decision.message


def test_without_a_configured_account_arns_are_judged_by_rules_only() -> None:
    decision = decide(aws("arn:aws:iam::999999999999:role/shop-x"), "shop", POLICY, None)
    assert decision.allowed


def test_a_service_account_in_another_project_is_refused_before_rules() -> None:
    decision = check(gcp("shop-x@proj-b.iam.gserviceaccount.com"))
    assert (decision.allowed, decision.rule) == (False, "project")
    assert "is in project proj-b, not the configured proj-a" in decision.message


def test_no_policy_file_denies_unless_the_namespace_annotation_allows() -> None:
    refused = check(aws("shop-checkout"), policy=None)
    assert not refused.allowed
    assert f"no policy file is configured and namespace shop has no {ANNOTATION} annotation" in refused.message
    allowed = check(aws("shop-checkout"), policy=None, annotation="aws:shop-*")
    assert allowed.allowed and allowed.rule == f"namespace annotation {ANNOTATION}"


def test_an_empty_policy_denies_everything() -> None:
    decision = check(aws("shop-checkout"), policy=Policy())
    assert not decision.allowed and "no rule covers namespace shop" in decision.message


def test_the_annotation_adds_to_the_file() -> None:
    assert check(aws("billing-api"), annotation="aws:billing-*").allowed
    refused = check(aws("other"), annotation="aws:billing-*")
    assert not refused.allowed
    assert f"shop, namespace annotation {ANNOTATION} cover namespace shop" in refused.message


def test_annotation_entries_parse_by_provider_and_bad_ones_are_reported() -> None:
    rule, bad = parse_annotation(" aws:a-*,azure:rg/b-*  gcp:c@p.iam.gserviceaccount.com ,, nonsense aws: :x ")
    assert rule.aws.roles == ["a-*"] and rule.azure.identities == ["rg/b-*"]
    assert rule.gcp.service_accounts == ["c@p.iam.gserviceaccount.com"] and bad == ["nonsense", "aws:", ":x"]
    decision = check(aws("zzz"), annotation="nonsense")
    assert not decision.allowed and "ignored malformed annotation entries: nonsense" in decision.message


@pytest.mark.parametrize(
    ("s", "key"),
    [
        (aws("app"), "app"),
        (aws(f"arn:aws:iam::{ACCOUNT}:role/a/b/app"), "app"),
        (azure("rg", "uami"), "rg/uami"),
        (gcp("sa-name@proj-a.iam.gserviceaccount.com"), "sa-name@proj-a.iam.gserviceaccount.com"),
    ],
)
def test_targets_are_matched_by_the_documented_key(s: ConnectionSpec, key: str) -> None:
    assert target_of(s).key == key


def test_the_policy_file_loads_and_rejects_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("rules:\n  - namespaces: [shop]\n    aws: {roles: [shop-*]}\n")
    assert load(good).rules[0].aws.roles == ["shop-*"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load(empty).rules == []
    typo = tmp_path / "typo.yaml"
    typo.write_text("rules:\n  - namespaces: [shop]\n    aws: {roleArns: ['*']}\n")
    with pytest.raises(ValidationError):
        load(typo)
    no_namespaces = tmp_path / "none.yaml"
    no_namespaces.write_text("rules:\n  - aws: {roles: ['*']}\n")
    with pytest.raises(ValidationError):
        load(no_namespaces)


def test_a_rule_grants_retain_by_default_and_an_annotation_grants_what_its_keep_entries_say() -> None:
    from porter_identity.api.policy import Keep

    spec = ConnectionSpec.model_validate({"serviceAccountName": "a", "aws": {"role": "shop-api"}})
    file_rule = Policy.model_validate({"rules": [{"name": "shop", "namespaces": ["shop"], "aws": {"roles": ["*"]}}]})
    decided = decide(spec, "shop", file_rule, None)
    assert decided.keep == {Keep.RETAIN}
    assert decided.refuses_keeping(Keep.RETAIN) is None
    assert decided.refuses_keeping(Keep.SKIP) == (
        "not allowed by policy: Skip is not granted by rule shop (it grants Retain); ask a cluster admin"
    )
    annotated = decide(spec, "other", None, "aws:shop-* keep:Skip keep:DetachOnDelete")
    assert annotated.keep == {Keep.SKIP, Keep.DETACH_ON_DELETE}
    rule, bad = parse_annotation("aws:shop-* keep:Forever")
    assert bad == ["keep:Forever"] and rule.keep == [Keep.RETAIN]
    assert decide(spec, "other", None, "aws:shop-* keep:Forever").keep == {Keep.RETAIN}


def test_a_refused_link_refuses_no_keeping_of_its_own() -> None:
    """Nothing to grant where nothing is allowed: the refusal itself removes the link."""
    from porter_identity.api.policy import Keep

    spec = ConnectionSpec.model_validate({"serviceAccountName": "a", "aws": {"role": "shop-api"}})
    assert decide(spec, "shop", None, None).refuses_keeping(Keep.SKIP) is None
