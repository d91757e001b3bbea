"""The generated CRD reference: every field listed, with its description and constraints."""

from __future__ import annotations

from porter_identity.api import reference


def _rows(kind: str = "") -> list[list[str]]:
    """Table rows of one kind's section (all sections when kind is empty)."""
    text = reference.render()
    if kind:
        text = text.split(f"## {kind}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in text.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_every_field_has_a_description() -> None:
    rows = _rows()
    assert len(rows) > 80
    undescribed = [field for field, _, description, _ in rows if not description]
    assert undescribed == []


def test_both_kinds_with_group_scope_and_columns() -> None:
    text = reference.render()
    assert "## ServiceIdentityConnection\n" in text and "## PorterRoleSet\n" in text
    assert "`identity.porter.run/v1alpha1`, namespaced, short name `sic`." in text
    assert "`identity.porter.run/v1alpha1`, cluster-scoped, short name `prs`." in text
    assert (
        "Columns of `kubectl get`: ServiceAccount, Provider, Identity, Ready, Reason, Age. "
        "With `-o wide` also: Link, Message." in text
    )


def test_rows_carry_type_required_default_enum_limits_and_rules() -> None:
    by_field = {field: (kind, description, facts) for field, kind, description, facts in _rows("PorterRoleSet")}
    by_field |= {
        field: (kind, description, facts) for field, kind, description, facts in _rows("ServiceIdentityConnection")
    }
    kind, _, facts = by_field["`spec.serviceAccountName` (required)"]
    assert kind == "`string`"
    assert "1-253 characters" in facts and "rule: serviceAccountName is immutable" in facts
    assert by_field["`spec.deletionPolicy`"][2] == "one of `Delete`, `Retain`; default `Delete`"
    assert by_field["`spec.roles[].trust.podIdentity`"][2] == "default `false`"
    assert by_field["`spec.roles[].statements[].condition`"][0] == "`map[string]map[string][]string`"
    assert by_field["`status.roles[].ready.reason` (required)"][0] == "`string`"


def test_kopf_bookkeeping_is_listed_but_not_expanded() -> None:
    fields = [field for field, *_ in _rows()]
    assert "`status.kopf`" in fields
    assert not [f for f in fields if f.startswith("`status.kopf.")]


def test_pipes_in_text_are_escaped() -> None:
    assert reference._cell("a|b\n c") == "a\\|b c"
