"""The permission inventory as Markdown, from the presets or from the policies live in an account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from porter_identity.iam.policy import Condition, Statement
from porter_identity.iam.presets import PRESETS, S3_PRESET, Preset, statements_for
from porter_identity.iam.sync import RolePreview

SUMMARY_HEADER = "| Role | Created by | Assumable from outside | Purpose |"
STATEMENT_HEADER = "| Statement | Resource path | Actions | Condition |"
_RULE = "|---|---|---|---|"
_NO_CONDITION = "—"
_STRING_OPERATORS = ("StringEquals", "ForAllValues:StringEquals", "StringLike")


@dataclass(frozen=True)
class InventoryRole:
    name: str
    created_by: str
    assumable_from_outside: str
    purpose: str
    summary: str
    trusted_by: str
    statements: tuple[Statement, ...]
    listed_as: str | None = None  # the summary table's name when it differs from the heading's


def _described(
    preset: Preset, name: str, statements: tuple[Statement, ...], listed_as: str | None = None
) -> InventoryRole:
    """A role with the preset's descriptive columns."""
    return InventoryRole(
        name,
        preset.created_by,
        preset.assumable_from_outside,
        preset.purpose,
        preset.summary,
        preset.trusted_by,
        statements,
        listed_as,
    )


def from_presets(account_id: str | None = None) -> list[InventoryRole]:
    """Every preset; without an account the ARNs keep the "<account-id>" placeholder."""
    roles = []
    for preset in PRESETS.values():
        statements = preset.statements if account_id is None else statements_for(preset, account_id)
        name, listed_as = preset.name, None
        if preset.name == S3_PRESET:
            # One role per bucket: the inventory names the template's pattern in the table and heads it with a glob.
            name, listed_as = f"{S3_PRESET}-*", f"{S3_PRESET}-<hash>"
        roles.append(_described(preset, name, statements, listed_as))
    return roles


def render(roles: list[InventoryRole]) -> str:
    lines = [SUMMARY_HEADER, _RULE]
    lines += [
        _row(role.listed_as or role.name, role.created_by, role.assumable_from_outside, role.purpose) for role in roles
    ]
    for role in roles:
        lines += ["", f"### {role.name}", "", role.summary, "", role.trusted_by, "", STATEMENT_HEADER, _RULE]
        lines += [
            _row(s.sid, "<br>".join(s.resources), ", ".join(s.actions), _condition_text(s.conditions))
            for s in role.statements
        ]
    return "\n".join(lines) + "\n"


def _row(*cells: str) -> str:
    return f"| {' | '.join(cells)} |"


def _condition_text(conditions: tuple[Condition, ...]) -> str:
    return "; ".join(c.text() for c in conditions) or _NO_CONDITION


def statements_from_iam(doc: dict[str, Any]) -> tuple[Statement, ...]:
    """The statements of a live policy document, refusing what the inventory's columns cannot show."""
    raw = doc["Statement"]
    return tuple(_statement(s) for s in ([raw] if isinstance(raw, dict) else raw))


def _statement(raw: dict[str, Any]) -> Statement:
    sid = raw.get("Sid", "")
    if raw.get("Effect") != "Allow" or "Action" not in raw or "Resource" not in raw:
        raise ValueError(f"statement {sid!r}: only Allow statements with Action and Resource can be listed")
    conditions = tuple(
        _condition(sid, op, key, value)
        for op, block in raw.get("Condition", {}).items()
        for key, value in block.items()
    )
    return Statement(sid, _strings(raw["Resource"]), _strings(raw["Action"]), conditions)


def _strings(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _condition(sid: str, op: str, key: str, value: Any) -> Condition:
    if op == "Null":
        candidate = Condition(key, "is not null")
        value = str(value).lower()  # a hand-written policy may say false rather than "false"
    elif op in _STRING_OPERATORS:
        single = isinstance(value, str)
        operator = "like" if op == "StringLike" else "=" if single else "in"
        candidate = Condition(key, operator, (value,) if single else tuple(value))
    else:
        raise ValueError(f"statement {sid!r}: condition operator {op} has no inventory form")
    # Show only a condition that encodes back to the same block; anything else would misreport the policy.
    try:
        faithful = candidate.operator_block() == (op, value)
    except ValueError:
        faithful = False
    if not faithful:
        raise ValueError(f"statement {sid!r}: condition {op} {key} {value!r} has no inventory form")
    return candidate


def from_previews(previews: list[RolePreview]) -> list[InventoryRole]:
    """The roles as they are live in the account (policies in layout order), described by their presets."""
    s3 = PRESETS[S3_PRESET]
    roles = []
    for p in previews:
        if p.observed is None:
            continue
        docs = [p.observed.inline.get(n) or _managed_document(p, n) for n in p.placed.names]
        docs += [d for n, d in p.observed.inline.items() if n not in p.placed.names]
        docs += [m.document for n, m in p.observed.managed.items() if n not in p.placed.names]
        statements = tuple(s for doc in docs if doc for s in statements_from_iam(doc))
        preset = PRESETS.get(p.role.name) or (s3 if p.role.name.startswith(f"{S3_PRESET}-") else None)
        if preset is None:
            roles.append(InventoryRole(p.role.name, "PorterRoleSet", "—", p.role.description, "", "", statements))
            continue
        roles.append(_described(preset, p.role.name, statements))
    return roles


def _managed_document(p: RolePreview, name: str) -> dict[str, Any] | None:
    assert p.observed is not None
    found = p.observed.managed.get(name)
    return found.document if found else None
