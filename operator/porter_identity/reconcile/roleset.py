"""Decide, without I/O, how one PorterRoleSet role must change: policy layout under IAM's limits, then steps."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from porter_identity.api.roleset import TakeOver
from porter_identity.iam.policy import compact, document, listed, size
from porter_identity.model import POLICY_PATH, ObservedRole
from porter_identity.reconcile.outcome import Outcome, Reason, stalled
from porter_identity.redact import REDACTED

# IAM quotas (characters, whitespace not counted): https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
TRUST_LIMIT = 2_048
INLINE_LIMIT = 10_240  # all inline policies of one role together
MANAGED_LIMIT = 6_144  # one managed policy
MANAGED_PER_ROLE = 10

INLINE_POLICY = "porter-permissions"
MANAGED_TAG = "porter.run/managed"
OWNER_TAG = "porter.run/owner"
CREATED_TAG = "porter.run/created-by"


class TooLarge(ValueError):
    """The documents cannot fit IAM's quotas however they are split."""


@dataclass(frozen=True)
class DesiredRole:
    """One role as the spec and presets declare it (trust already holds the ExternalId where needed)."""

    name: str
    trust: dict[str, Any]
    statements: tuple[dict[str, Any], ...]
    description: str = ""
    service_account: tuple[str, str] | None = None  # (namespace, name) given the role by a Pod Identity association
    take_over: TakeOver = TakeOver.NEVER


@dataclass(frozen=True)
class Layout:
    """Where the statements go: one inline policy when they fit, else as few managed policies as needed."""

    inline: dict[str, dict[str, Any]] = field(default_factory=dict)
    managed: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [*self.inline, *self.managed]


class Kind(StrEnum):
    CREATE_ROLE = "CreateRole"
    UPDATE_TRUST = "UpdateTrust"
    TAG_ROLE = "TagRole"
    PUT_INLINE = "PutInlinePolicy"
    DELETE_INLINE = "DeleteInlinePolicy"
    PUT_MANAGED = "PutManagedPolicy"
    DETACH_POLICY = "DetachPolicy"


@dataclass(frozen=True)
class Step:
    kind: Kind
    target: str = ""  # policy name (or ARN for DetachPolicy)
    document: dict[str, Any] | None = None
    tags: dict[str, str] | None = None

    def describe(self, role: str) -> str:
        where = f" {self.target}" if self.target else ""
        return f"{self.kind.value}{where} on {role}"


@dataclass(frozen=True)
class RolePlan:
    """The steps; under a conflict nothing is applied (an adoption not asked for: the steps show what it would do)."""

    steps: list[Step]
    conflict: str | None = None
    needs_adoption: bool = False


def pack(statements: tuple[dict[str, Any], ...], limit: int) -> list[list[dict[str, Any]]]:
    """Split statements, in order, into as few documents of at most `limit` characters as order allows."""
    chunks: list[list[dict[str, Any]]] = [[]]
    for stmt in statements:
        if size(document([stmt])) > limit:
            raise TooLarge(f"statement {stmt.get('Sid', '?')} alone is over {limit} characters")
        if chunks[-1] and size(document([*chunks[-1], stmt])) > limit:
            chunks.append([])
        chunks[-1].append(stmt)
    return [c for c in chunks if c]


def layout(role: DesiredRole) -> Layout:
    """Check every quota before AWS is called; the same statements always give the same layout."""
    trust_size = size(role.trust)
    if trust_size > TRUST_LIMIT:
        raise TooLarge(f"role {role.name}: trust policy is {trust_size} characters; IAM allows {TRUST_LIMIT}")
    whole = document(list(role.statements))
    if size(whole) <= INLINE_LIMIT:
        return Layout(inline={INLINE_POLICY: whole})
    try:
        chunks = pack(role.statements, MANAGED_LIMIT)
    except TooLarge as err:
        raise TooLarge(f"role {role.name}: {err}") from None
    if len(chunks) > MANAGED_PER_ROLE:
        raise TooLarge(
            f"role {role.name}: {size(whole)} characters of statements need {len(chunks)} managed policies; "
            f"IAM attaches at most {MANAGED_PER_ROLE} to a role"
        )
    return Layout(managed={f"{role.name}-{i}": document(chunk) for i, chunk in enumerate(chunks, start=1)})


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    """IAM treats "x" and ["x"] alike and may return either: compare documents in one shape."""
    statements = doc.get("Statement", [])
    out = []
    for stmt in [statements] if isinstance(statements, dict) else statements:
        norm = dict(stmt)
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in norm:
                norm[key] = listed(norm[key])
        if isinstance(norm.get("Principal"), dict):
            norm["Principal"] = {k: listed(v) for k, v in norm["Principal"].items()}
        if "Condition" in norm:
            norm["Condition"] = {op: {k: listed(v) for k, v in keys.items()} for op, keys in norm["Condition"].items()}
        out.append(norm)
    return {"Version": doc.get("Version"), "Statement": out}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return canonical(a) == canonical(b)


def redact(trust: dict[str, Any]) -> dict[str, Any]:
    """The trust policy with any ExternalId replaced, for digests and messages."""
    doc = canonical(trust)
    for stmt in doc["Statement"]:
        for keys in (stmt.get("Condition") or {}).values():
            if "sts:ExternalId" in keys:
                keys["sts:ExternalId"] = [REDACTED]
    return doc


def digest(role: DesiredRole, placed: Layout) -> str:
    parts = [compact(redact(role.trust))] + [
        compact(canonical(d)) for d in (*placed.inline.values(), *placed.managed.values())
    ]
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def wanted_tags(owner: str) -> dict[str, str]:
    return {MANAGED_TAG: "true", OWNER_TAG: owner}


def written_by_us(role: str, policy: str, arn: str | None = None) -> bool:
    """Our inline policy, or one of our managed policies (path /porter/, named <role>-<n>)."""
    if arn is None:
        return policy == INLINE_POLICY
    return POLICY_PATH in arn and re.fullmatch(re.escape(role) + r"-[0-9]+", policy) is not None


def plan_role(role: DesiredRole, placed: Layout, observed: ObservedRole | None, owner: str, uid: str) -> RolePlan:
    """Steps that make IAM hold `placed` and `role.trust` for this role; a role of another set is a conflict.

    Only a role this set created (or one adopted with ReplacePolicies) is made to hold exactly `placed`; an
    adopted role keeps every policy the operator did not write. A role no PorterRoleSet made is not taken
    without `takeOver`."""
    tags = wanted_tags(owner)
    if observed is None:
        steps = [Step(Kind.CREATE_ROLE, document=role.trust, tags={**tags, CREATED_TAG: uid})]
        steps += [Step(Kind.PUT_INLINE, name, doc) for name, doc in placed.inline.items()]
        steps += [Step(Kind.PUT_MANAGED, name, doc) for name, doc in placed.managed.items()]
        return RolePlan(steps)
    holder = observed.tags.get(OWNER_TAG)
    porter_made = observed.tags.get(MANAGED_TAG) == "true"
    if porter_made and holder not in (None, owner):
        return RolePlan([], f"role {role.name} is managed by PorterRoleSet {holder}; it is left untouched")
    exact = created_by(observed, uid) or role.take_over is TakeOver.REPLACE_POLICIES
    steps = []
    if not same(observed.trust, role.trust):
        steps.append(Step(Kind.UPDATE_TRUST, document=role.trust))
    if any(observed.tags.get(k) != v for k, v in tags.items()):
        steps.append(Step(Kind.TAG_ROLE, tags=tags))
    for name, doc in placed.inline.items():
        if name not in observed.inline or not same(observed.inline[name], doc):
            steps.append(Step(Kind.PUT_INLINE, name, doc))
    for name, doc in placed.managed.items():
        if name not in observed.managed or not same(observed.managed[name].document, doc):
            steps.append(Step(Kind.PUT_MANAGED, name, doc))
    steps += [
        Step(Kind.DELETE_INLINE, name)
        for name in observed.inline
        if name not in placed.inline and (exact or written_by_us(role.name, name))
    ]
    steps += [
        Step(Kind.DETACH_POLICY, policy.arn)
        for name, policy in observed.managed.items()
        if name not in placed.managed and (exact or written_by_us(role.name, name, policy.arn))
    ]
    if not porter_made and role.take_over is TakeOver.NEVER:
        return RolePlan(
            steps,
            f"role {role.name} already exists and no PorterRoleSet made it (no tag {MANAGED_TAG}=true); it is left "
            "untouched. To adopt it set takeOver: KeepPolicies on this role or on the set (its other policies are "
            "kept), or takeOver: ReplacePolicies (it then holds exactly the declared policies)",
            needs_adoption=True,
        )
    return RolePlan(steps)


def created_by(observed: ObservedRole, uid: str) -> bool:
    """Only roles this PorterRoleSet created may be deleted with it."""
    return observed.tags.get(MANAGED_TAG) == "true" and observed.tags.get(CREATED_TAG) == uid


def account_refusal(configured: str | None, account_id: str) -> Outcome | None:
    """The operator works only in the account it is configured for, whatever admission let through."""
    if configured is None:
        return stalled(
            Reason.NOT_CONFIGURED,
            "the operator has no AWS account configured (Helm value config.awsAccountId, PORTER_AWS_ACCOUNT_ID): "
            "it serves no PorterRoleSet until one is set",
        )
    if account_id != configured:
        return stalled(
            Reason.NOT_ALLOWED,
            f"not allowed by policy: spec.accountId {account_id} is not the configured account {configured}",
        )
    return None
