"""Refusals no rule lifts: protected namespaces, the operator's own identities, and per-namespace budgets."""

from __future__ import annotations

from typing import Any

import pytest

from porter_identity.api.connection import ConnectionSpec
from porter_identity.api.policy import Policy
from porter_identity.config import Settings
from porter_identity.reconcile import guard

AZURE = {"identityName": "shared-id", "resourceGroup": "rg"}


def spec(**provider: Any) -> ConnectionSpec:
    return ConnectionSpec.model_validate({"serviceAccountName": "app", **provider})


def body(name: str, **provider: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"serviceAccountName": name, **provider}}


def test_system_namespaces_are_protected_by_default_and_the_operator_namespace_unless_allowed() -> None:
    settings = Settings(operator_namespace="porter-system")
    assert guard.protected_namespaces(settings) == {"kube-system", "kube-public", "kube-node-lease", "porter-system"}
    refused = guard.protected_namespace("porter-system", settings)
    assert refused is not None and refused.rule == guard.PROTECTED
    assert refused.message == (
        "not allowed by policy: connections may not live in namespace porter-system: it is the operator's own "
        "namespace (allowOperatorNamespace is false)"
    )
    assert guard.protected_namespace("shop", settings) is None
    allowed = Settings(operator_namespace="porter-system", allow_operator_namespace=True)
    assert guard.protected_namespace("porter-system", allowed) is None
    assert guard.protected_namespace("kube-system", allowed) is not None
    assert guard.protected_namespace("kube-system", Settings(protected_namespaces=[])) is None


def test_own_identities_come_from_settings_and_from_the_pods_workload_identity() -> None:
    settings = Settings(
        operator_aws_role_arn="arn:aws:iam::123456789012:role/infra/Ops-Role",
        operator_gcp_service_account="Operator-SA@p-roj.iam.gserviceaccount.com",
    )
    own = guard.OwnIdentities.of(
        settings,
        {
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/irsa-role",
            "AZURE_CLIENT_ID": "AAAAAAAA-0000-0000-0000-000000000001",
        },
    )
    assert own.aws_roles == {"ops-role", "irsa-role"}
    assert own.azure_client_ids == {"aaaaaaaa-0000-0000-0000-000000000001"}
    assert own.gcp_service_accounts == {"operator-sa@p-roj.iam.gserviceaccount.com"}
    assert guard.OwnIdentities.of(Settings(), {}) == guard.OwnIdentities()


@pytest.mark.parametrize(
    ("target", "client_id", "refused"),
    [
        ({"aws": {"role": "OPS-ROLE"}}, None, True),  # IAM role names are unique regardless of case
        ({"aws": {"role": "arn:aws:iam::123456789012:role/other/ops-role"}}, None, True),
        ({"aws": {"role": "ops-role-2"}}, None, False),
        ({"azure": AZURE}, "aaaaaaaa-0000-0000-0000-000000000001", True),
        ({"azure": AZURE}, "bbbbbbbb-0000-0000-0000-000000000001", False),
        ({"azure": AZURE}, None, False),  # not read yet: reconcile checks with the client id it reads
        ({"gcp": {"serviceAccountEmail": "operator-sa@p-roj.iam.gserviceaccount.com"}}, None, True),
    ],
)
def test_own_identity_is_refused_whatever_it_is_called(
    target: dict[str, Any], client_id: str | None, refused: bool
) -> None:
    own = guard.OwnIdentities(
        aws_roles=frozenset({"ops-role"}),
        azure_client_ids=frozenset({"aaaaaaaa-0000-0000-0000-000000000001"}),
        gcp_service_accounts=frozenset({"operator-sa@p-roj.iam.gserviceaccount.com"}),
    )
    decision = guard.own_identity(spec(**target), own, client_id)
    assert (decision is not None) is refused
    if decision is not None:
        assert decision.rule == guard.OWN_IDENTITY and "is the operator's own identity" in decision.message


def test_refusal_checks_the_namespace_first() -> None:
    own = guard.OwnIdentities(aws_roles=frozenset({"ops"}))
    decision = guard.refusal(spec(aws={"role": "ops"}), "kube-system", Settings(), own)
    assert decision is not None and decision.rule == guard.PROTECTED
    decision = guard.refusal(spec(aws={"role": "ops"}), "shop", Settings(), own)
    assert decision is not None and decision.rule == guard.OWN_IDENTITY
    assert guard.refusal(spec(aws={"role": "app"}), "shop", Settings(), own) is None


def test_budget_counts_other_connections_naming_the_same_identity() -> None:
    others = guard.targets(
        [
            body("a", azure=AZURE),
            body("b", azure=AZURE),
            body("c", azure={**AZURE, "identityName": "another"}),
            body("self", azure=AZURE),  # the object under review is not counted against itself
            {"metadata": {"name": "broken"}, "spec": {"serviceAccountName": "x"}},  # names no identity
        ],
        excluding="self",
    )
    assert len(others) == 3
    linked = {**body("linked", azure=AZURE), "status": {"azure": {"credentialName": "x"}}}
    assert guard.targets([linked, body("pending", azure=AZURE)], excluding="self", linked_only=True) == [
        guard.target_of(spec(azure=AZURE))
    ]
    assert guard.over_budget(spec(azure=AZURE), "shop", 3, others) is None
    assert guard.over_budget(spec(azure=AZURE), "shop", None, others) is None
    decision = guard.over_budget(spec(azure=AZURE), "shop", 2, others)
    assert decision is not None and decision.rule == guard.BUDGET
    assert decision.message == (
        "not allowed by policy: namespace shop already has 2 connections to azure managed identity rg/shared-id, "
        "the policy's maxLinksPerNamespacePerIdentity (2); remove one first (other namespaces are not affected)"
    )


def test_the_policy_file_carries_the_budget() -> None:
    policy = Policy.model_validate({"rules": [], "maxLinksPerNamespacePerIdentity": 5})
    assert policy.max_links_per_namespace_per_identity == 5
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Policy.model_validate({"maxLinksPerNamespacePerIdentity": 0})
