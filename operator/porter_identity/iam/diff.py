"""Human-readable preview of what a sync would change, statement by statement, with ExternalIds redacted."""

from __future__ import annotations

from typing import Any

from porter_identity.clouds.aws import plan as associations
from porter_identity.iam.sync import RolePreview
from porter_identity.reconcile.roleset import Kind, Step, canonical, redact


def _by_sid(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not doc:
        return {}
    return {str(s.get("Sid", i)): s for i, s in enumerate(canonical(doc)["Statement"])}


def statement_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """`+ Sid`, `- Sid`, or `~ Sid: actions +a -b` lines between two documents."""
    old, new = _by_sid(before), _by_sid(after)
    lines = [f"+ {sid}" for sid in new if sid not in old]
    lines += [f"- {sid}" for sid in old if sid not in new]
    for sid in new:
        if sid in old and old[sid] != new[sid]:
            was, now = old[sid].get("Action", []), new[sid].get("Action", [])
            added = [a for a in now if a not in was]
            removed = [a for a in was if a not in now]
            detail = " ".join([*(f"+{a}" for a in added), *(f"-{a}" for a in removed)]) or "resources or conditions"
            lines.append(f"~ {sid}: {detail}")
    return lines


def _observed_policy(p: RolePreview, step: Step) -> dict[str, Any] | None:
    if p.observed is None:
        return None
    if step.kind is Kind.PUT_INLINE:
        return p.observed.inline.get(step.target)
    found = p.observed.managed.get(step.target)
    return found.document if found else None


def describe(previews: list[RolePreview]) -> list[str]:
    """One block per role that would change; an empty list means the account is as declared."""
    out: list[str] = []
    for p in previews:
        lines: list[str] = []
        if p.plan.conflict is not None:
            lines.append(f"  ! {p.plan.conflict}")
        if p.plan.needs_adoption and p.plan.steps:
            lines.append("  adopting it would do:")
        for step in p.plan.steps:
            lines.append(f"  {step.describe(p.role.name)}")
            if step.kind in (Kind.PUT_INLINE, Kind.PUT_MANAGED) and step.document is not None:
                lines += [f"      {line}" for line in statement_changes(_observed_policy(p, step), step.document)]
            if step.kind is Kind.UPDATE_TRUST and step.document is not None:
                before = redact(p.observed.trust) if p.observed else None
                changed = statement_changes(before, redact(step.document))
                lines += [f"      {line}" for line in changed or ["~ ExternalId (value not shown)"]]
        if p.association is not None and p.association.action is not associations.Action.KEEP:
            ns, sa = p.role.service_account or ("", "")
            lines.append(f"  {p.association.action.value} EKS Pod Identity association {ns}/{sa}")
        if lines:
            out += [f"{p.role.name}:", *lines]
    return out
