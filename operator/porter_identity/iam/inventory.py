"""The permission inventory as Markdown, from the presets or from the policies live in an account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from porter_identity.iam.policy import Condition, Statement, listed
from porter_identity.iam.presets import PRESETS, S3_PRESET, Preset, s3_role_name, statements_for
from porter_identity.iam.sync import RolePreview
from porter_identity.reconcile.roleset import canonical

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


# The deployed documents differ from the seed's tables in these places, on purpose; `inventory --live` marks them.
BUCKET_SCOPED = (
    "the inventory's row is the template of every porter-s3-<hash> role (arn:aws:s3:::*/*); each deployed role reaches "
    "only the objects of its own bucket"
)
SET_OPERATOR = (
    "{key} is a multivalued context key (every tag key of the request): IAM requires a condition set operator "
    "for it, and ForAllValues makes every key of the request match (IAM User Guide, single-valued vs. "
    "multivalued context keys)"
)
NOT_ON_PURPOSE = "not a deliberate difference: `porter-identity diff` shows what a sync would restore"
_PLAIN = {"=": "StringEquals", "in": "StringEquals", "like": "StringLike", "is not null": "Null"}


@dataclass(frozen=True)
class Difference:
    """One place where a deployed statement differs from the seed's row, and why."""

    sid: str
    seed: str
    deployed: str
    why: str


@dataclass(frozen=True)
class LiveRole:
    """A role as the account holds it: the preset's description, every statement exactly as IAM returns it."""

    described: InventoryRole
    statements: tuple[dict[str, Any], ...]  # canonical IAM statements, in layout order
    differences: tuple[Difference, ...]


def live_condition_text(op: str, key: str, value: Any) -> str:
    """The seed's spelling when the IAM operator is the one that spelling means, else the operator written out."""
    values = listed(value)
    shown = f"= {values[0]}" if len(values) == 1 else f"in [{', '.join(values)}]"
    if op == "Null" and values == ["false"]:
        return f"{key} is not null"
    if op == "StringLike" and len(values) == 1:
        return f"{key} like {values[0]}"
    if op == "StringEquals":
        return f"{key} {shown}"
    return f"{op} {key} {shown}"


def _conditions_text(stmt: dict[str, Any]) -> str:
    blocks = stmt.get("Condition") or {}
    cells = [live_condition_text(op, key, value) for op, keys in blocks.items() for key, value in keys.items()]
    return "; ".join(cells) or _NO_CONDITION


def differences(role: str, seed: tuple[Statement, ...], deployed: tuple[dict[str, Any], ...]) -> list[Difference]:
    """Every statement that differs from the seed's row of the same Sid, with the reason (or that there is none)."""
    rows = {s.sid: s for s in seed}
    out = []
    for stmt in deployed:
        sid = str(stmt.get("Sid", ""))
        row = rows.get(sid)
        if row is None:
            out.append(Difference(sid, "(no such row)", "present", NOT_ON_PURPOSE))
            continue
        resources = tuple(listed(stmt.get("Resource", [])))
        if resources != row.resources:
            scoped = role.startswith(f"{S3_PRESET}-") and row.resources == ("arn:aws:s3:::*/*",)
            bucket = resources[0].removeprefix("arn:aws:s3:::").removesuffix("/*") if len(resources) == 1 else ""
            ok = scoped and resources == (f"arn:aws:s3:::{bucket}/*",) and s3_role_name(bucket) == role
            out.append(
                Difference(sid, " ".join(row.resources), " ".join(resources), BUCKET_SCOPED if ok else NOT_ON_PURPOSE)
            )
        if tuple(listed(stmt.get("Action", []))) != row.actions or stmt.get("Effect") != "Allow":
            actions = ", ".join(listed(stmt.get("Action", [])))
            out.append(Difference(sid, ", ".join(row.actions), actions, NOT_ON_PURPOSE))
        seed_ops = {c.key: c for c in row.conditions}
        found: set[str] = set()
        for op, keys in (stmt.get("Condition") or {}).items():
            for key, value in keys.items():
                found.add(key)
                cond = seed_ops.get(key)
                shown = live_condition_text(op, key, value)
                if cond is None:
                    out.append(Difference(sid, "(no condition)", shown, NOT_ON_PURPOSE))
                    continue
                plain = _PLAIN[cond.operator]
                same_values = listed(value) == listed(cond.operator_block()[1])
                if op == plain and same_values:
                    continue
                on_purpose = op == f"ForAllValues:{plain}" == cond.operator_block()[0] and same_values
                why = SET_OPERATOR.format(key=key) if on_purpose else NOT_ON_PURPOSE
                out.append(Difference(sid, cond.text(), shown, why))
        out += [
            Difference(sid, c.text(), "(no condition)", NOT_ON_PURPOSE) for c in row.conditions if c.key not in found
        ]
    return out


def from_previews(previews: list[RolePreview]) -> list[LiveRole]:
    """The roles as they are live in the account (policies in layout order), described by their presets."""
    s3 = PRESETS[S3_PRESET]
    roles = []
    for p in previews:
        if p.observed is None:
            continue
        docs = [p.observed.inline.get(n) or _managed_document(p, n) for n in p.placed.names]
        docs += [d for n, d in p.observed.inline.items() if n not in p.placed.names]
        docs += [m.document for n, m in p.observed.managed.items() if n not in p.placed.names]
        deployed = tuple(s for doc in docs if doc for s in canonical(doc)["Statement"])
        statements = tuple(s for doc in docs if doc for s in statements_from_iam(doc))
        preset = PRESETS.get(p.role.name) or (s3 if p.role.name.startswith(f"{S3_PRESET}-") else None)
        if preset is None:
            described = InventoryRole(p.role.name, "PorterRoleSet", "—", p.role.description, "", "", statements)
            roles.append(LiveRole(described, deployed, ()))
            continue
        account = p.observed.arn.split(":")[4]
        seed = statements_for(preset, account) if preset.name != S3_PRESET else preset.statements
        found = tuple(differences(p.role.name, seed, deployed))
        roles.append(LiveRole(_described(preset, p.role.name, statements), deployed, found))
    return roles


def render_live(roles: list[LiveRole]) -> str:
    """The inventory's layout, each statement exactly as deployed, and every difference from the seed with its why."""
    lines = [SUMMARY_HEADER, _RULE]
    lines += [
        _row(r.described.name, r.described.created_by, r.described.assumable_from_outside, r.described.purpose)
        for r in roles
    ]
    for r in roles:
        role = r.described
        lines += ["", f"### {role.name}", "", role.summary, "", role.trusted_by, "", STATEMENT_HEADER, _RULE]
        lines += [
            _row(
                str(s.get("Sid", "")),
                "<br>".join(listed(s.get("Resource", []))),
                ", ".join(listed(s.get("Action", []))),
                _conditions_text(s),
            )
            for s in r.statements
        ]
        if r.differences:
            lines += ["", "Deployed differently from Porter's IAM inventory:", ""]
            lines += [f"- `{d.sid}`: inventory `{d.seed}`, deployed `{d.deployed}`: {d.why}" for d in r.differences]
    return "\n".join(lines) + "\n"


def _managed_document(p: RolePreview, name: str) -> dict[str, Any] | None:
    assert p.observed is not None
    found = p.observed.managed.get(name)
    return found.document if found else None
