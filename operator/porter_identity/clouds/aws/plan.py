"""Decide what to do with the EKS Pod Identity association of one connection."""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from porter_identity.iam.policy import listed
from porter_identity.model import Association

MANAGED_TAG = "porter.run/managed"
UID_TAG = "porter.run/connection-uid"
NAME_TAG = "porter.run/connection"
CLUSTER_TAG = "porter.run/cluster"
RETAINED_TAG = "porter.run/retained"
TAG_VALUE_MAX = 256  # EKS tag values: at most 256 characters


def _fit(value: str) -> str:
    """A tag value within EKS's limit for any valid name; the digest keeps long values distinct."""
    if len(value) <= TAG_VALUE_MAX:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    return f"{value[: TAG_VALUE_MAX - len(digest) - 1]}~{digest}"


def ownership_tags(uid: str, namespace: str, name: str, cluster: str | None = None) -> dict[str, str]:
    """The connection's uid and this cluster on every association we make (the name is for people)."""
    tags = {MANAGED_TAG: "true", UID_TAG: uid, NAME_TAG: _fit(f"{namespace}/{name}")}
    if cluster is not None:
        tags[CLUSTER_TAG] = _fit(cluster)
    return tags


def retained(association: Association) -> bool:
    """Left in place by a Retain delete: never deleted by us, adopted by the next connection for its ServiceAccount."""
    return association.tags.get(MANAGED_TAG) == "true" and association.tags.get(RETAINED_TAG) == "true"


def owned_by(association: Association, uid: str, uid_tag: str = UID_TAG) -> bool:
    return association.tags.get(MANAGED_TAG) == "true" and association.tags.get(uid_tag) == uid


def foreign_account(role: str, account_id: str | None) -> str | None:
    """The account a role ARN names when it is not the configured one (no cloud call needed to refuse it)."""
    if account_id is None or not role.startswith("arn:"):
        return None
    named = role.split(":")[4]
    return named if named != account_id else None


POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
POD_IDENTITY_ACTIONS = ("sts:AssumeRole", "sts:TagSession")


def _covers(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), str(pattern).lower())


def trust_problem(trust_policy: dict[str, Any]) -> str | None:
    """Why EKS Pod Identity could not assume a role with this trust policy, or None when it can.

    EKS Pod Identity assumes the role as pods.eks.amazonaws.com with sts:AssumeRole and sts:TagSession
    (https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html). Conditions are not evaluated:
    they usually scope the account or cluster, which only AWS can check.
    """
    granted: set[str] = set()
    trusted = False
    for stmt in listed(trust_policy.get("Statement", [])):
        if not isinstance(stmt, dict) or stmt.get("Effect") != "Allow":
            continue
        principal = stmt.get("Principal")
        services = listed(principal.get("Service", [])) if isinstance(principal, dict) else []
        if POD_IDENTITY_PRINCIPAL not in services:
            continue
        trusted = True
        granted |= {a for a in POD_IDENTITY_ACTIONS for p in listed(stmt.get("Action", [])) if _covers(p, a)}
    if not trusted:
        return f"the trust policy does not allow the service principal {POD_IDENTITY_PRINCIPAL}"
    missing = [a for a in POD_IDENTITY_ACTIONS if a not in granted]
    if missing:
        return f"the trust policy allows {POD_IDENTITY_PRINCIPAL} but not {' and '.join(missing)}"
    return None


class Action(StrEnum):
    CREATE = "Create"
    UPDATE = "Update"
    KEEP = "Keep"
    ADOPT = "Adopt"
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
    if uid_tag == UID_TAG and retained(observed) and observed.tags.get(uid_tag) != uid:
        return Plan(Action.ADOPT, observed)
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


class RoleRefusal(Enum):
    """What EKS says of a role at CreatePodIdentityAssociation or Update, that GetRole may not have shown."""

    NOT_VISIBLE = "not visible"  # IAM is eventually consistent: a role made a moment ago may be unknown to EKS
    TRUST = "trust"


def eks_role_refusal(code: str, message: str) -> RoleRefusal | None:
    """EKS's refusal of the role itself (InvalidParameterException with these messages, as terraform-provider-aws
    matches them: its issues 34711 and 41483), else None."""
    if code != "InvalidParameterException":
        return None
    text = message.lower()
    if "role provided in the request does not exist" in text:
        return RoleRefusal.NOT_VISIBLE
    if "trust policy of the role provided is invalid" in text:
        return RoleRefusal.TRUST
    return None
