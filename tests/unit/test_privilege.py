"""LeastPrivilege decisions: what counts as admin-like per cloud, the condition, and blocking only when configured."""

from __future__ import annotations

from typing import Any

import pytest

from porter_identity.api.common import Condition
from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.kube.status import next_status
from porter_identity.reconcile.outcome import Reason, State, ready
from porter_identity.reconcile.privilege import (
    Check,
    aws_admin_statement,
    aws_findings,
    azure_findings,
    blocked,
    condition,
    gcp_findings,
)

SUB = "0000-sub"


@pytest.mark.parametrize(
    ("statement", "admin"),
    [
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": "*:*", "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": ["s3:GetObject", "*"], "Resource": ["arn:aws:s3:::b", "*"]}, True),
        ({"Effect": "Deny", "Action": "*", "Resource": "*"}, False),
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, False),
        ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::bucket/*"}, False),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, False),
    ],
)
def test_aws_admin_statement(statement: dict[str, Any], admin: bool) -> None:
    assert aws_admin_statement({"Statement": [statement]}) is admin
    assert aws_admin_statement({"Statement": statement}) is admin  # a single statement need not be a list


def test_aws_findings_name_each_source() -> None:
    admin_doc = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    found = aws_findings(
        [
            "arn:aws:iam::aws:policy/AdministratorAccess",
            "arn:aws-us-gov:iam::aws:policy/AdministratorAccess",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "arn:aws:iam::123456789012:policy/AdministratorAccess",  # a customer policy named so: judged by content
            "arn:aws:iam::123456789012:policy/all",
        ],
        {"arn:aws:iam::123456789012:policy/all": admin_doc},
        {"b": admin_doc, "a": {"Statement": []}},
    )
    assert found == [
        "managed policy AdministratorAccess is attached",
        "managed policy AdministratorAccess is attached",
        "managed policy arn:aws:iam::123456789012:policy/all allows * on *",
        "inline policy b allows * on *",
    ]


@pytest.mark.parametrize(
    ("role", "scope", "broad"),
    [
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", f"/subscriptions/{SUB}", True),
        ("B24988AC-6210-4208-B1CD-7FD16BD8D0B1", f"/subscriptions/{SUB}/", True),
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "/providers/Microsoft.Management/managementGroups/root", True),
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "/", True),
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", f"/subscriptions/{SUB}/resourceGroups/rg", False),
        ("acdd72a7-3385-48ef-bd42-f606fba81ae7", f"/subscriptions/{SUB}", False),  # Reader
    ],
)
def test_azure_owner_or_contributor_at_subscription_or_above(role: str, scope: str, broad: bool) -> None:
    definition = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    assert bool(azure_findings([(definition, scope)], SUB)) is broad


def test_gcp_owner_or_editor_for_this_service_account_only() -> None:
    email = "app@proj.iam.gserviceaccount.com"
    bindings = [
        ("roles/owner", ["user:me@example.com"]),
        ("roles/editor", ["serviceAccount:other@proj.iam.gserviceaccount.com"]),
        ("roles/viewer", [f"serviceAccount:{email}"]),
    ]
    assert gcp_findings(bindings, email, "proj") == []
    bindings.append(("roles/owner", [f"serviceAccount:{email.upper()}"]))
    assert gcp_findings(bindings, email, "proj") == ["roles/owner is granted on project proj"]


def test_blocking_only_when_configured_and_broad() -> None:
    broad = Check("IAM role r", ("inline policy p allows * on *",))
    assert blocked(broad, block=False) is None
    assert blocked(Check("IAM role r"), block=True) is None
    assert blocked(Check("IAM role r", unknown="AccessDenied"), block=True) is None
    refusal = blocked(broad, block=True)
    assert refusal is not None and (refusal.state, refusal.reason) == (State.STALLED, Reason.BROAD_PERMISSIONS)
    assert "inline policy p allows * on *" in refusal.message and refusal.retryable is False and refusal.recheck


@pytest.mark.parametrize(
    ("check", "status", "reason"),
    [
        (Check("x"), "True", "LeastPrivilege"),
        (Check("x", ("f",)), "False", "BroadPermissions"),
        (Check("x", unknown="denied"), "Unknown", "AccessDenied"),
    ],
)
def test_condition_and_stable_transition_time(check: Check, status: str, reason: str) -> None:
    first = condition(check, 3, None, "2026-01-01T00:00:00Z")
    assert (first.type, first.status, first.reason, first.observed_generation) == ("LeastPrivilege", status, reason, 3)
    again = condition(check, 4, first, "2026-01-02T00:00:00Z")
    assert again.last_transition_time == "2026-01-01T00:00:00Z"
    flipped = condition(Check("x", ("g",)) if status != "False" else Check("x"), 4, first, "2026-01-02T00:00:00Z")
    assert flipped.last_transition_time == "2026-01-02T00:00:00Z"
    assert isinstance(first, Condition)


def _conn(generation: int, conditions: list[dict[str, Any]]) -> ServiceIdentityConnection:
    return ServiceIdentityConnection.model_validate(
        {
            "metadata": {"name": "c", "namespace": "ns", "generation": generation},
            "spec": {"serviceAccountName": "app", "aws": {"role": "r"}},
            "status": {"conditions": conditions},
        }
    )


def test_status_keeps_least_privilege_only_for_the_generation_it_describes() -> None:
    checked = next_status(_conn(1, []), ready("ok"), Check("IAM role r", ("f",)))
    lp = [c for c in checked.conditions if c.type == "LeastPrivilege"]
    assert len(lp) == 1 and lp[0].status == "False"
    previous = [c.model_dump(by_alias=True) for c in checked.conditions]
    same = next_status(_conn(1, previous), ready("ok"))
    assert [c.type for c in same.conditions] == ["Ready", "LeastPrivilege"], "kept: this generation was checked"
    newer = next_status(_conn(2, previous), ready("ok"))
    assert [c.type for c in newer.conditions] == ["Ready"], "dropped: it described the old spec"
