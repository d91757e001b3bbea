"""CRD generation: structural schemas from pydantic, the connection CRD's shape, and the committed files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from porter_identity import GROUP, VERSION, cli
from porter_identity.api import crd, reference
from porter_identity.api.crd import all_crds, connection_crd, render, structural

REPO = Path(__file__).resolve().parents[2]
# The top-level copy (kubectl apply -f crds/) and the Helm chart's, which Helm installs before the templates.
CRD_DIRS = [REPO / "crds", REPO / "charts" / "porter-identity" / "crds"]


# --- structural() ----------------------------------------------------------------------------------------------------


def test_structural_inlines_ref_from_defs() -> None:
    schema = {
        "$defs": {"Inner": {"title": "Inner", "type": "object", "properties": {"x": {"type": "string"}}}},
        "type": "object",
        "properties": {"inner": {"$ref": "#/$defs/Inner"}},
    }
    assert structural(schema) == {
        "type": "object",
        "properties": {"inner": {"type": "object", "properties": {"x": {"type": "string"}}}},
    }


def test_structural_ref_siblings_override_the_target() -> None:
    schema = {
        "$defs": {"E": {"title": "E", "type": "string", "enum": ["A", "B"], "description": "from def"}},
        "properties": {"e": {"$ref": "#/$defs/E", "description": "from field", "default": "A"}},
    }
    assert structural(schema)["properties"]["e"] == {
        "type": "string",
        "enum": ["A", "B"],
        "description": "from field",
        "default": "A",
    }


def test_structural_inlines_nested_refs() -> None:
    schema = {
        "$defs": {
            "Outer": {"type": "object", "properties": {"inner": {"$ref": "#/$defs/Inner"}}},
            "Inner": {"type": "integer", "title": "Inner"},
        },
        "type": "object",
        "properties": {"outer": {"$ref": "#/$defs/Outer"}},
    }
    assert structural(schema)["properties"]["outer"] == {
        "type": "object",
        "properties": {"inner": {"type": "integer"}},
    }


def test_structural_unwraps_nullable_any_of_and_drops_null_default() -> None:
    schema = {
        "properties": {
            "n": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "N", "description": "d"}
        }
    }
    assert structural(schema)["properties"]["n"] == {"type": "integer", "description": "d"}


def test_structural_unwraps_nullable_any_of_keeps_real_default() -> None:
    schema = {"properties": {"s": {"anyOf": [{"type": "null"}, {"type": "string"}], "default": "x"}}}
    assert structural(schema)["properties"]["s"] == {"type": "string", "default": "x"}


def test_structural_unwraps_nullable_ref() -> None:
    schema = {
        "$defs": {"M": {"title": "M", "type": "object", "additionalProperties": False, "properties": {}}},
        "properties": {"m": {"anyOf": [{"$ref": "#/$defs/M"}, {"type": "null"}], "default": None}},
    }
    assert structural(schema)["properties"]["m"] == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    "any_of",
    [
        [{"type": "string"}, {"type": "integer"}],
        [{"type": "string"}, {"type": "integer"}, {"type": "null"}],
        [{"type": "null"}],
    ],
)
def test_structural_rejects_real_unions(any_of: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="cannot express anyOf"):
        structural({"properties": {"u": {"anyOf": any_of}}})


def test_structural_drops_titles_defs_additional_properties_and_discriminator() -> None:
    schema = {
        "title": "Top",
        "$defs": {},
        "additionalProperties": False,
        "discriminator": {"propertyName": "kind"},
        "type": "object",
        "description": "kept",
        "properties": {"a": {"title": "A", "type": "string", "maxLength": 3}},
    }
    assert structural(schema) == {
        "type": "object",
        "description": "kept",
        "properties": {"a": {"type": "string", "maxLength": 3}},
    }


def test_structural_keeps_a_property_named_title() -> None:
    out = structural({"type": "object", "properties": {"title": {"type": "string", "title": "Title"}}})
    assert out == {"type": "object", "properties": {"title": {"type": "string"}}}


def test_structural_recurses_into_items_and_drops_empty_array_default() -> None:
    schema = {
        "$defs": {"C": {"title": "C", "type": "object", "properties": {"t": {"title": "T", "type": "string"}}}},
        "properties": {
            "list": {"type": "array", "items": {"$ref": "#/$defs/C"}, "default": [], "title": "List"},
            "nonempty": {"type": "array", "items": {"type": "string"}, "default": ["x"]},
        },
    }
    props = structural(schema)["properties"]
    assert props["list"] == {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}}}}
    assert props["nonempty"]["default"] == ["x"]


def test_structural_does_not_mutate_its_input() -> None:
    schema = {
        "$defs": {"I": {"title": "I", "type": "string"}},
        "title": "X",
        "properties": {"i": {"$ref": "#/$defs/I"}, "n": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    }
    before = yaml.safe_dump(schema)
    structural(schema)
    assert yaml.safe_dump(schema) == before


# --- the connection CRD ----------------------------------------------------------------------------------------------


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, key) of every mapping in the tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _schema_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node reachable through properties and items."""
    yield path or "/", schema
    for name, sub in schema.get("properties", {}).items():
        yield from _schema_nodes(sub, f"{path}/{name}")
    if "items" in schema:
        yield from _schema_nodes(schema["items"], f"{path}[]")


@pytest.fixture(scope="module")
def the_crd() -> dict[str, Any]:
    return connection_crd()


@pytest.fixture(scope="module")
def version(the_crd: dict[str, Any]) -> dict[str, Any]:
    [v] = the_crd["spec"]["versions"]
    assert isinstance(v, dict)
    return v


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_walk_finds_nested_keys() -> None:
    # guard for the helper itself, so the "no forbidden keys" test cannot pass vacuously
    keys = {key for _, key in _walk({"a": [{"b": {"$ref": 1}}]})}
    assert keys == {"a", "b", "$ref"}


@pytest.mark.parametrize("forbidden", ["$ref", "anyOf", "title", "$defs", "additionalProperties", "allOf", "oneOf"])
def test_no_forbidden_keys_anywhere(the_crd: dict[str, Any], forbidden: str) -> None:
    hits = [path for path, key in _walk(the_crd) if key == forbidden]
    assert hits == [], f"{forbidden} found at {hits}"


def test_every_schema_node_has_a_type(root: dict[str, Any]) -> None:
    untyped = [path for path, node in _schema_nodes(root) if "type" not in node]
    assert untyped == []
    assert len(list(_schema_nodes(root))) > 20


def test_identity(the_crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert the_crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert the_crd["kind"] == "CustomResourceDefinition"
    assert the_crd["metadata"]["name"] == f"serviceidentityconnections.{GROUP}"
    assert the_crd["spec"]["group"] == GROUP == "identity.porter.run"
    assert the_crd["spec"]["scope"] == "Namespaced"
    assert version["name"] == VERSION
    assert version["served"] is True
    assert version["storage"] is True


def test_names(the_crd: dict[str, Any]) -> None:
    names = the_crd["spec"]["names"]
    assert names["kind"] == "ServiceIdentityConnection"
    assert names["listKind"] == "ServiceIdentityConnectionList"
    assert names["plural"] == "serviceidentityconnections"
    assert names["singular"] == "serviceidentityconnection"
    assert names["shortNames"] == ["sic"]
    assert names["categories"] == ["porter"]


def test_status_subresource(version: dict[str, Any]) -> None:
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == [
        "ServiceAccount",
        "Provider",
        "Identity",
        "Ready",
        "Reason",
        "Age",
    ]
    assert [c["name"] for c in columns if c.get("priority") == 1] == ["Link", "Message"]  # kubectl get -o wide
    by_name = {c["name"]: c for c in columns}
    assert by_name["ServiceAccount"]["jsonPath"] == ".spec.serviceAccountName"
    assert by_name["Provider"]["jsonPath"] == ".status.provider"
    assert by_name["Identity"]["jsonPath"] == ".status.identity"
    assert by_name["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert by_name["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert by_name["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    assert all(c["type"] == "string" for c in columns if c["name"] != "Age")


def test_printer_column_paths_exist_in_the_schema(root: dict[str, Any]) -> None:
    props = root["properties"]
    assert "serviceAccountName" in props["spec"]["properties"]
    for field in ("provider", "identity", "conditions"):
        assert field in props["status"]["properties"]
    condition = props["status"]["properties"]["conditions"]["items"]["properties"]
    assert {"type", "status", "reason"} <= set(condition)


def test_top_level_schema(root: dict[str, Any]) -> None:
    assert root["type"] == "object"
    assert root["required"] == ["spec"]
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert root["properties"]["metadata"] == {"type": "object"}
    assert root["description"].startswith("ServiceIdentityConnection links one ServiceAccount")


def test_conditions_are_a_map_list_keyed_by_type(root: dict[str, Any]) -> None:
    conditions = root["properties"]["status"]["properties"]["conditions"]
    assert conditions["type"] == "array"
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "default" not in conditions
    item = conditions["items"]
    assert item["type"] == "object"
    # a map key must be required
    assert "type" in item["required"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_spec_schema(root: dict[str, Any]) -> None:
    spec = root["properties"]["spec"]
    assert spec["type"] == "object"
    assert spec["required"] == ["serviceAccountName"]
    assert set(spec["properties"]) == {"serviceAccountName", "aws", "azure", "gcp", "deletionPolicy", "takeOver"}
    take_over = spec["properties"]["takeOver"]
    assert (take_over["enum"], take_over["default"]) == (["Never", "Adopt"], "Never")
    policy = spec["properties"]["deletionPolicy"]
    assert policy["type"] == "string"
    assert policy["enum"] == ["Delete", "Retain"]
    assert policy["default"] == "Delete"
    for provider in ("aws", "azure", "gcp"):
        sub = spec["properties"][provider]
        assert sub["type"] == "object"
        assert "default" not in sub  # None defaults must not leak into the CRD
    assert spec["properties"]["aws"]["required"] == ["role"]
    assert spec["properties"]["azure"]["required"] == ["identityName", "resourceGroup"]
    assert spec["properties"]["gcp"]["required"] == ["serviceAccountEmail"]


@pytest.mark.parametrize(
    ("path", "max_length"),
    [
        (("serviceAccountName",), 253),
        (("aws", "role"), 2048),
        (("azure", "identityName"), 128),
        (("azure", "resourceGroup"), 90),
        (("gcp", "serviceAccountEmail"), 254),
    ],
)
def test_string_fields_have_length_bounds(root: dict[str, Any], path: tuple[str, ...], max_length: int) -> None:
    node = root["properties"]["spec"]
    for part in path:
        node = node["properties"][part]
    assert node["type"] == "string"
    assert node["minLength"] == 1
    assert node["maxLength"] == max_length


def test_status_schema_has_no_required_or_null_defaults(root: dict[str, Any]) -> None:
    status = root["properties"]["status"]
    assert status["type"] == "object"
    assert "required" not in status
    hits = [path for path, node in _schema_nodes(status) if "default" in node and node["default"] is None]
    assert hits == []
    assert status["properties"]["observedGeneration"]["type"] == "integer"
    assert set(status["properties"]["aws"]["properties"]) == {"associationId", "associationArn", "roleArn"}


# --- rendering and the committed files -------------------------------------------------------------------------------


def test_all_crds_names_both_files() -> None:
    crds = all_crds()
    assert list(crds) == [
        "identity.porter.run_serviceidentityconnections.yaml",
        "identity.porter.run_porterrolesets.yaml",
    ]
    assert crds["identity.porter.run_serviceidentityconnections.yaml"] == connection_crd()
    assert crds["identity.porter.run_porterrolesets.yaml"] == crd.roleset_crd()


def test_roleset_crd_is_cluster_scoped_with_short_name_and_columns() -> None:
    spec = crd.roleset_crd()["spec"]
    assert spec["scope"] == "Cluster"
    assert spec["names"]["shortNames"] == ["prs"]
    columns = [c["name"] for c in spec["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Account", "Roles", "Ready", "Reason", "Age"]
    props = spec["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert props["deletionPolicy"]["default"] == "Retain"


def test_maps_keep_their_value_schema() -> None:
    # IAM condition blocks are maps of maps of string lists: without additionalProperties the API server prunes them.
    spec = crd.roleset_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    condition = spec["properties"]["roles"]["items"]["properties"]["statements"]["items"]["properties"]["condition"]
    assert condition["additionalProperties"]["additionalProperties"] == {"type": "array", "items": {"type": "string"}}


def test_render_has_header_and_round_trips(the_crd: dict[str, Any]) -> None:
    text = render(the_crd)
    assert text.startswith("# Generated by `porter-identity crds`")
    assert text.splitlines()[1] == "---"  # files stay apart when concatenated (helm show crds)
    assert text.splitlines()[2] == "apiVersion: apiextensions.k8s.io/v1"  # key order kept
    assert yaml.safe_load(text) == the_crd


def test_render_is_deterministic() -> None:
    assert render(connection_crd()) == render(connection_crd())


@pytest.mark.parametrize("directory", CRD_DIRS, ids=lambda d: str(d.relative_to(REPO)))
@pytest.mark.parametrize("name", sorted(crd.all_crds()))
def test_committed_crd_is_up_to_date(directory: Path, name: str) -> None:
    committed = directory / name
    assert committed.is_file(), f"{committed} is missing: run `porter-identity crds`"
    expected = crd.render(crd.all_crds()[name])
    assert committed.read_text() == expected, f"{committed} is stale: run `porter-identity crds`"


@pytest.mark.parametrize("directory", CRD_DIRS, ids=lambda d: str(d.relative_to(REPO)))
def test_no_stray_files_in_crds_dir(directory: Path) -> None:
    on_disk = {p.name for p in directory.iterdir()}
    assert on_disk == set(all_crds()), f"{directory} does not match the generated set: run `porter-identity crds`"


def test_committed_reference_is_up_to_date() -> None:
    committed = REPO / "docs" / "crd-reference.md"
    assert committed.is_file(), f"{committed} is missing: run `porter-identity crds`"
    assert committed.read_text() == reference.render(), f"{committed} is stale: run `porter-identity crds`"


def test_cli_prints_the_crds_and_writes_nothing_without_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["crds"]) == 0
    assert list(tmp_path.iterdir()) == []
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in printed] == [c["metadata"]["name"] for c in all_crds().values()]


def test_cli_writes_every_generated_file_under_the_directory_given(tmp_path: Path) -> None:
    assert cli.main(["crds", str(tmp_path / "tree")]) == 0
    written = {str(p.relative_to(tmp_path / "tree")) for p in (tmp_path / "tree").rglob("*") if p.is_file()}
    assert written == {
        *(f"{d.relative_to(REPO)}/{name}" for d in CRD_DIRS for name in all_crds()),
        "docs/crd-reference.md",
        "docs/configuration.md",
        "docs/connections.md",
        "docs/metrics.md",
        "docs/argocd/argocd-cm.yaml",
        "docs/argocd/identity.porter.run/ServiceIdentityConnection/health.lua",
        "docs/argocd/identity.porter.run/PorterRoleSet/health.lua",
    }


def test_new_objects_are_served_with_observed_generation_zero() -> None:
    # kstatus (Flux, kpt) reads observedGeneration 0 < generation as InProgress until the operator writes status
    for the_crd in all_crds().values():
        status = the_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["default"] == {"observedGeneration": 0}
