"""Decide what to do with the EKS Pod Identity association of one connection."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from porter_identity.providers.aws import Association

MANAGED_TAG = "porter.run/managed"
UID_TAG = "porter.run/connection-uid"
NAME_TAG = "porter.run/connection"


def ownership_tags(uid: str, namespace: str, name: str) -> dict[str, str]:
    return {MANAGED_TAG: "true", UID_TAG: uid, NAME_TAG: f"{namespace}/{name}"}


def owned_by(association: Association, uid: str, uid_tag: str = UID_TAG) -> bool:
    return association.tags.get(MANAGED_TAG) == "true" and association.tags.get(uid_tag) == uid


def foreign_account(role: str, account_id: str | None) -> str | None:
    """The account a role ARN names when it is not the configured one (no cloud call needed to refuse it)."""
    if account_id is None or not role.startswith("arn:"):
        return None
    named = role.split(":")[4]
    return named if named != account_id else None


class Action(StrEnum):
    CREATE = "Create"
    UPDATE = "Update"
    KEEP = "Keep"
    CONFLICT = "Conflict"


@dataclass(frozen=True)
class Plan:
    action: Action
    association: Association | None = None
    message: str = ""


def plan_apply(uid: str, role_arn: str, observed: Association | None, uid_tag: str = UID_TAG) -> Plan:
    """What to do so that exactly our association, with `role_arn`, exists for the service account."""
    if observed is None:
        return Plan(Action.CREATE)
    if not owned_by(observed, uid, uid_tag):
        owner = observed.tags.get(NAME_TAG) if observed.tags.get(MANAGED_TAG) == "true" else None
        by = f"by connection {owner}" if owner else "outside porter-identity"
        return Plan(
            Action.CONFLICT,
            observed,
            f"service account {observed.namespace}/{observed.service_account} already has EKS Pod Identity "
            f"association {observed.association_id} (role {observed.role_arn}), managed {by}; "
            "EKS allows one per service account: delete that association or bind another service account",
        )
    if observed.role_arn != role_arn:
        return Plan(Action.UPDATE, observed)
    return Plan(Action.KEEP, observed)


class DeleteAction(StrEnum):
    DELETE = "Delete"
    GONE = "Gone"
    NOT_OURS = "NotOurs"


def plan_delete(uid: str, observed: Association | None, uid_tag: str = UID_TAG) -> DeleteAction:
    if observed is None:
        return DeleteAction.GONE
    if not owned_by(observed, uid, uid_tag):
        return DeleteAction.NOT_OURS
    return DeleteAction.DELETE
