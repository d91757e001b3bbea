"""Kubernetes objects checked against one release's OpenAPI v3 schemas, strictly (unknown fields fail)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from porter_dev import REPO_ROOT


def schemas_dir(version: str) -> Path:
    """Fetch (first run) or find the cached schemas of `version` (hack/k8s-openapi.sh, run by hack/install-deps.sh)."""
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "k8s-openapi.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "K8S_MIN_VERSION": version},
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Objects with declared properties allow no others (the API server drops or refuses unknown fields: a field
    a newer release added is unknown to an older one). Walks schema keywords only: a map of properties may well
    hold a property named `nullable` or `properties` (JSONSchemaProps does)."""
    node = dict(schema)
    if "properties" in node:
        node["properties"] = {name: _strict(prop) for name, prop in node["properties"].items()}
        node.setdefault("additionalProperties", False)
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _strict(node["additionalProperties"])
    if "items" in node:
        node["items"] = _strict(node["items"])
    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in node:
            node[keyword] = [_strict(s) for s in node[keyword]]
    if node.pop("nullable", False):  # OpenAPI 3.0's `nullable` is JSON Schema's null type
        return {"anyOf": [{"type": "null"}, node]}
    return node


class KubeSchemas:
    """The API's built-in kinds of one Kubernetes release, by apiVersion and kind."""

    def __init__(self, directory: Path) -> None:
        components: dict[str, Any] = {}
        for path in sorted(directory.glob("*.json")):
            components |= json.loads(path.read_text()).get("components", {}).get("schemas", {})
        self.root = {"components": {"schemas": {name: _strict(s) for name, s in components.items()}}}
        self.kinds: dict[tuple[str, str], str] = {}
        for name, schema in components.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                # Each kind also appears under its List and watch-event wrappers; take the kind's own schema.
                if name.endswith("." + gvk["kind"]):
                    self.kinds[api_version, gvk["kind"]] = name

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """What is wrong with `obj` for this release; a kind it does not serve is one error."""
        name = self.kinds.get((obj["apiVersion"], obj["kind"]))
        if name is None:
            return [f"{obj['apiVersion']} {obj['kind']} is not served"]
        schema = {**self.root, "$ref": f"#/components/schemas/{name}"}
        found = Draft202012Validator(schema).iter_errors(obj)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


@functools.cache
def release(version: str) -> KubeSchemas:
    return KubeSchemas(schemas_dir(version))
