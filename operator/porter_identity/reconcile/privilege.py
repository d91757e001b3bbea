"""Spot admin-like permissions on the identity a connection links (LeastPrivilege): pure checks, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from porter_identity.api.common import Condition, ConditionStatus
from porter_identity.reconcile.outcome import Outcome, Reason, stalled

CONDITION = "LeastPrivilege"

# AWS managed policy that grants everything (any partition).
ADMIN_POLICY_NAME = "AdministratorAccess"
# Azure built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
AZURE_BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6210-4208-b1cd-7fd16bd8d0b1": "Contributor",
}
GCP_BROAD_ROLES = ("roles/owner", "roles/editor")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def aws_admin_statement(document: dict[str, Any]) -> bool:
    """An Allow statement with action `*` (or `*:*`) on resource `*`."""
    for statement in _listed(document.get("Statement") or []):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = {str(a) for a in _listed(statement.get("Action") or [])}
        resources = {str(r) for r in _listed(statement.get("Resource") or [])}
        if actions & {"*", "*:*"} and "*" in resources:
            return True
    return False


def aws_findings(
    attached: Iterable[str], managed_documents: dict[str, dict[str, Any]], inline: dict[str, dict[str, Any]]
) -> list[str]:
    """What makes a role admin-like: AdministratorAccess attached, or any policy allowing `*` on `*`."""
    found = []
    for arn in attached:
        if arn.split(":")[4:5] == ["aws"] and arn.endswith(f":policy/{ADMIN_POLICY_NAME}"):
            found.append(f"managed policy {ADMIN_POLICY_NAME} is attached")
        elif aws_admin_statement(managed_documents.get(arn, {})):
            found.append(f"managed policy {arn} allows * on *")
    found += [f"inline policy {name} allows * on *" for name, doc in sorted(inline.items()) if aws_admin_statement(doc)]
    return found


def azure_findings(assignments: Iterable[tuple[str, str]], subscription_id: str) -> list[str]:
    """(roleDefinitionId, scope) pairs: Owner or Contributor on the subscription (or above it) is broad."""
    found = []
    subscription = f"/subscriptions/{subscription_id}".lower()
    for role_definition, scope in assignments:
        role = AZURE_BROAD_ROLES.get(role_definition.rsplit("/", 1)[-1].lower())
        wide = scope.lower().rstrip("/") in (subscription, "") or "/managementgroups/" in scope.lower()
        if role is not None and wide:
            found.append(f"role {role} is assigned at scope {scope or '/'}")
    return found


def gcp_findings(bindings: Iterable[tuple[str, Iterable[str]]], email: str, project: str) -> list[str]:
    """(role, members) of the project's policy: owner or editor granted to the service account is broad."""
    member = f"serviceAccount:{email}".lower()
    return [
        f"{role} is granted on project {project}"
        for role, members in bindings
        if role in GCP_BROAD_ROLES and member in {m.lower() for m in members}
    ]


@dataclass(frozen=True)
class Check:
    """What the LeastPrivilege read found on `identity`; `unknown` says why it could not be read."""

    identity: str
    findings: tuple[str, ...] = ()
    unknown: str = ""

    @property
    def broad(self) -> bool:
        return bool(self.findings)

    @property
    def message(self) -> str:
        if self.unknown:
            return f"permissions of {self.identity} could not be read: {self.unknown}"
        if self.findings:
            return (
                f"{self.identity} has admin-like permissions: {'; '.join(self.findings)}; grant it only what it needs"
            )
        return f"{self.identity} has no admin-like permissions"


def blocked(check: Check, block: bool) -> Outcome | None:
    """Stalled when broad permissions are configured to block (PORTER_BLOCK_BROAD_PERMISSIONS); nothing is linked."""
    if not (block and check.broad):
        return None
    return stalled(Reason.BROAD_PERMISSIONS, f"{check.message} (the operator is configured to refuse such identities)")


def condition(check: Check, generation: int, previous: Condition | None, now: str) -> Condition:
    if check.unknown:
        status, reason = ConditionStatus.UNKNOWN, Reason.ACCESS_DENIED
    elif check.broad:
        status, reason = ConditionStatus.FALSE, Reason.BROAD_PERMISSIONS
    else:
        status, reason = ConditionStatus.TRUE, Reason.LEAST_PRIVILEGE
    kept = previous is not None and previous.status == status
    return Condition(
        type=CONDITION,
        status=status,
        observed_generation=generation,
        last_transition_time=previous.last_transition_time if kept and previous is not None else now,
        reason=reason.value,
        message=check.message,
    )
