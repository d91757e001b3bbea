"""The chart's values table (docs/configuration.md, the chart README) is generated from values.yaml and its schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from porter_dev import REPO_ROOT
from porter_dev.chart import CHART
from porter_identity import cli, helmchart

STALE = "stale: run `porter-identity crds .`"


def values_text() -> str:
    return (CHART / "values.yaml").read_text()


def schema() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return result


def table_rows() -> dict[str, list[str]]:
    rows = helmchart.rows(values_text(), schema())
    paths = [r[0].strip("`") for r in rows]
    assert len(paths) == len(set(paths)), "every value has one row"
    return {r[0].strip("`"): r for r in rows}


def test_the_docs_carry_the_generated_values_table() -> None:
    docs = (REPO_ROOT / "docs" / "configuration.md").read_text()
    table = helmchart.values_table(values_text(), schema())
    assert f"{helmchart.MARK}\n{table}\n{helmchart.END}" in docs, STALE
    assert docs.count(helmchart.MARK) == 1
    assert helmchart.update_docs(docs, table) == docs


def test_the_chart_readme_is_generated() -> None:
    readme = (CHART / "README.md").read_text()
    assert readme == helmchart.readme((CHART / "Chart.yaml").read_text(), values_text(), schema()), STALE
    assert helmchart.values_table(values_text(), schema()) in readme
    assert "`>=1.30.0`" in readme


def test_the_table_lists_every_value_once_with_what_it_does() -> None:
    rows = table_rows()
    for path in (
        "podDisruptionBudget.enabled",
        "podDisruptionBudget.maxUnavailable",
        "logFormat",
        "extraVolumes",
        "extraVolumeMounts",
        "imagePullSecrets",
        "webhook.validityDays",
        "serviceAccount.create",
        "serviceAccount.name",
        "serviceAccount.annotations",
        "serviceAccount.awsRoleArn",
        "serviceAccount.podIdentityRoleArn",
        "serviceAccount.azureClientId",
        "serviceAccount.gcpServiceAccount",
        "config.rolesets",
        "policy.rules[].keep",
        "policy.maxLinksPerNamespacePerIdentity",
    ):
        assert path in rows, path
    assert [p for p in rows if p == "config.rolesets"] == ["config.rolesets"]
    assert rows["webhook.validityDays"][1] == "`3650`"
    assert rows["policy.maxLinksPerNamespacePerIdentity"][1] == "unset"
    assert "`DetachOnDelete`" in rows["policy.rules[].keep"][2]
    # Every value says what it does, itself or in the row of the map holding it (resources.limits.cpu).
    for path, row in rows.items():
        parents = [rows[p][2] for p in (path.rsplit(".", n)[0] for n in range(1, path.count(".") + 1)) if p in rows]
        assert row[2] or any(parents), f"{path} has no comment in values.yaml and no description in the schema"


def test_every_value_the_schema_knows_is_in_the_table() -> None:
    rows = table_rows()
    top = {p.split(".")[0].split("[")[0] for p in rows}
    assert top == set(schema()["properties"]) - {"global"}
    for name, node in schema()["properties"].items():
        leaf = name in rows and rows[name][1] != ""  # e.g. rateLimits: {}, its keys described in its comment
        for key in () if leaf else node.get("properties", {}):
            assert any(p == f"{name}.{key}" or p.startswith(f"{name}.{key}.") for p in rows), f"{name}.{key}"


def test_comments_become_descriptions() -> None:
    text = """# Heading of a map.
top:
  # Above a key.
  above: 1
  beside: ""    # beside a key
                # and continued
  # AWS
  grouped: x    # the first of a group
  # A list, e.g.
  #   list: [{example: 1}]
  list: []
  ref: {}
    #   name: x
  # Unset: described.
  # commented: 3
items:
  - name: a
    value: b
"""
    values = {v.path: v for v in helmchart.read_values(text)}
    assert values["top"].parent and values["top"].description == "Heading of a map."
    assert values["top.above"].description == "Above a key."
    assert values["top.beside"].description == "beside a key and continued"
    assert values["top.grouped"].description == "AWS: the first of a group"
    assert values["top.list"].description == "A list, e.g. `list: [{example: 1}]`"
    assert values["top.ref"].description == "`name: x`"
    assert values["top.commented"].default is helmchart.UNSET
    assert values["top.commented"].description == "Unset: described."
    assert list(values) == [
        *("top", "top.above", "top.beside", "top.grouped", "top.list", "top.ref", "top.commented", "items")
    ]
    assert values["items"].default == [{"name": "a", "value": "b"}]


def test_one_command_regenerates_all_of_it(tmp_path: Path) -> None:
    """`porter-identity crds .` (make crds) writes the schema's policy part, the README and the docs' table."""
    tree = tmp_path / "tree"
    shutil.copytree(CHART, tree / helmchart.CHART)
    (tree / "docs").mkdir()
    shutil.copy(REPO_ROOT / helmchart.DOCS, tree / helmchart.DOCS)
    schema_file = tree / helmchart.CHART / "values.schema.json"
    stale = json.loads(schema_file.read_text())
    stale["properties"]["policy"] = {"type": "object"}
    schema_file.write_text(json.dumps(stale))
    (tree / helmchart.CHART / "README.md").unlink()
    docs = tree / helmchart.DOCS
    docs.write_text(docs.read_text().replace("`podDisruptionBudget.enabled`", "`podDisruptionBudget.on`"))
    assert cli.main(["crds", str(tree)]) == 0
    for path in (helmchart.CHART / "values.schema.json", helmchart.CHART / "README.md", helmchart.DOCS):
        assert (tree / path).read_text() == (REPO_ROOT / path).read_text(), path
