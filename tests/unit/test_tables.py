"""The docs' reference tables are generated from the code (`porter-identity crds .`) and kept current."""

from __future__ import annotations

import re

import pytest
import yaml

from porter_dev import REPO_ROOT
from porter_identity import tables
from porter_identity.api import argocd
from porter_identity.config import Settings
from porter_identity.reconcile.outcome import OUTSIDE_THE_SPEC, STATE, Action, Reason, State

DOCS = REPO_ROOT / "docs"


@pytest.mark.parametrize("name", sorted(tables.FILES))
def test_committed_tables_are_current(name: str) -> None:
    text = (DOCS / name).read_text()
    for table in tables.FILES[name]:
        assert tables.block(table) in text, f"docs/{name}: table {table} is stale: run `porter-identity crds .`"


@pytest.mark.parametrize("path", sorted(argocd.files()), ids=str)
def test_committed_argocd_files_are_current(path: object) -> None:
    committed = REPO_ROOT / str(path)
    assert committed.read_text() == argocd.files()[path], f"{path} is stale: run `porter-identity crds .`"  # type: ignore[index]


def _rows(text: str) -> dict[str, list[str]]:
    return {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if line.startswith("| `")
        for cells in [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]]
    }


def test_every_setting_is_a_row_with_its_default_and_helm_value() -> None:
    rows = _rows(tables.settings())
    for name in Settings.model_fields:
        if name == "rate_limits":
            continue
        if name == "leader_election":
            assert rows["`PORTER_LEADER_ELECTION__LEASE_DURATION_SECONDS`"][0] == "`15`"
            continue
        assert f"`PORTER_{name.upper()}`" in rows, name
    assert rows["`PORTER_STALLED_RECHECK_SECONDS`"][0] == "`300`"
    assert rows["`PORTER_EKS_CLUSTER_NAME`"][2] == "`config.eksClusterName`"
    assert rows["`PORTER_RATE_LIMITS__GCP_WRITE__PER_SECOND` / `__BURST`"][0] == "`10` / `50`"


def test_helm_values_named_exist_in_the_chart() -> None:
    values = yaml.safe_load((REPO_ROOT / "charts" / "porter-identity" / "values.yaml").read_text())
    named = {tables.chart_value(n) for n in Settings.model_fields if n not in tables.CHART}
    assert {f"`config.{key}`" for key in values["config"]} == named, "values.yaml config keys and settings differ"


def test_every_reason_has_its_state_from_the_code() -> None:
    rows = _rows(tables.reasons())
    assert set(rows) == {f"`{r.value}`" for r in Reason}
    assert rows["`ServiceAccountNotFound`"][0].startswith("Reconciling")
    assert rows["`IdentityOutsideProject`"][0].startswith("Stalled")
    for reason in Reason:
        state = rows[f"`{reason.value}`"][0]
        assert state.startswith(STATE[reason].value)
        if STATE[reason] is State.STALLED:
            assert ("rechecked" in state) is (reason in OUTSIDE_THE_SPEC)


def test_every_event_reason_is_listed() -> None:
    assert set(_rows(tables.events())) == {f"`{a.value}`" for a in Action}


def test_every_metric_is_listed() -> None:
    rows = _rows(tables.metric_list())
    assert "`porter_identity_build_info`" in rows and "`porter_identity_reconcile_total`" in rows
    assert rows["`porter_identity_reconcile_total`"][1] == "`kind`, `provider`, `result`"
    assert not [m for m in rows if m.endswith("_created`")]


def test_event_reasons_in_the_code_come_from_the_enum() -> None:
    """No Change(...) or Events.post(...) names its reason with a bare string: each is an Action or a Reason."""
    import ast

    literal = []
    for path in sorted((REPO_ROOT / "operator" / "porter_identity").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            args = node.args[:1] if name == "Change" else node.args[2:3] if name == "post" else []
            literal += [f"{path.name}:{node.lineno}" for a in args if isinstance(a, ast.Constant)]
    assert literal == []
