"""Render CustomResourceDefinitions from the pydantic models (the only source of the schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from porter_identity import GROUP, VERSION
from porter_identity.api import connection, roleset
from porter_identity.api.common import KOPF_STATUS

# JSON-schema keywords that a Kubernetes structural schema does not accept or that only add noise.
_DROP = {"title", "$defs", "discriminator"}


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn pydantic's JSON schema into a Kubernetes structural schema: refs inlined, nullables unwrapped."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {schema['anyOf']} structurally")
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        if schema.get("default") is not None:
            rest["default"] = schema["default"]
        return structural({**branches[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP or (key == "additionalProperties" and not isinstance(value, dict)):
            continue  # extra="forbid" yields additionalProperties: false; the API server prunes unknown fields anyway
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    if out.get("type") == "array" and out.get("default") == []:
        del out["default"]
    return out


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return structural(model.model_json_schema(by_alias=True, mode="validation"))


def _ready_column(name: str, field: str) -> dict[str, Any]:
    return {"name": name, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="Ready")].{field}'}


def _crd(
    module: Any,
    scope: str,
    columns: list[dict[str, Any]],
    spec: type[BaseModel],
    status: type[BaseModel],
    kopf_runs_it: bool,
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{module.PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": module.KIND,
                "listKind": f"{module.KIND}List",
                "plural": module.PLURAL,
                "singular": module.SINGULAR,
                "shortNames": module.SHORT_NAMES,
                "categories": ["porter"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": module.DESCRIPTION,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _schema(spec),
                                "status": _unobserved(_with_kopf(_schema(status)) if kopf_runs_it else _schema(status)),
                            },
                        }
                    },
                }
            ],
        },
    }


def _with_kopf(status: dict[str, Any]) -> dict[str, Any]:
    """Keep kopf's bookkeeping (status.kopf) from being pruned; its shape is kopf's, not ours."""
    kopf = {
        "type": "object",
        "description": "kopf's bookkeeping (last handled spec, retry progress); not part of the API.",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return {**status, "properties": {**status["properties"], KOPF_STATUS: kopf}}


def _unobserved(status: dict[str, Any]) -> dict[str, Any]:
    """Until the operator writes status, the API server serves observedGeneration 0: kstatus (Flux, kpt) then says
    InProgress for a new object instead of Current, as it does for any object with no status at all."""
    return {**status, "default": {"observedGeneration": 0}}


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def connection_crd() -> dict[str, Any]:
    columns = [
        {"name": "ServiceAccount", "type": "string", "jsonPath": ".spec.serviceAccountName"},
        {"name": "Provider", "type": "string", "jsonPath": ".status.provider"},
        {"name": "Identity", "type": "string", "jsonPath": ".status.identity"},
        _ready_column("Ready", "status"),
        _ready_column("Reason", "reason"),
        _AGE,
        # kubectl get -o wide
        {"name": "Link", "type": "string", "jsonPath": ".status.link", "priority": 1},
        {**_ready_column("Message", "message"), "priority": 1},
    ]
    # The operator runs connections itself (kube/watch.py, engine/runner.py): no status.kopf; one an earlier version
    # left is pruned by the API server (the schema no longer lists it).
    return _crd(connection, "Namespaced", columns, connection.ConnectionSpec, connection.ConnectionStatus, False)


def roleset_crd() -> dict[str, Any]:
    columns = [
        {"name": "Account", "type": "string", "jsonPath": ".spec.accountId"},
        {"name": "Roles", "type": "string", "jsonPath": ".status.rolesReady"},
        _ready_column("Ready", "status"),
        _ready_column("Reason", "reason"),
        _AGE,
    ]
    return _crd(roleset, "Cluster", columns, roleset.RoleSetSpec, roleset.RoleSetStatus, True)


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD object, for everything the operator serves."""
    return {
        f"{GROUP}_{connection.PLURAL}.yaml": connection_crd(),
        f"{GROUP}_{roleset.PLURAL}.yaml": roleset_crd(),
    }


def render(crd: dict[str, Any]) -> str:
    # The explicit document start keeps files apart where they are concatenated (`helm show crds`).
    header = "# Generated by `porter-identity crds` from operator/porter_identity/api; do not edit.\n---\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=120)


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in all_crds().items():
        path = directory / name
        path.write_text(render(crd))
        written.append(path)
    return written
