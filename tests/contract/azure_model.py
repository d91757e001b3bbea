"""Check raw ARM answers against azure-mgmt-msi's generated operations (paths, accepted statuses) and models."""

from __future__ import annotations

import ast
import datetime
import enum
import importlib
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from azure.mgmt.msi import ManagedServiceIdentityClient

API_VERSION: str = ManagedServiceIdentityClient.DEFAULT_API_VERSION
PACKAGE = f"azure.mgmt.msi.v{API_VERSION.replace('-', '_')}"
MODELS: Any = importlib.import_module(f"{PACKAGE}.models")
GROUPS = ("_federated_identity_credentials_operations", "_user_assigned_identities_operations")
_FLATTEN = re.compile(r"(?<!\\)\.")
# ARM's resource contract: a resource answer names itself. systemData is read-only too, but optional.
ALWAYS_SET_EXCEPT = {"system_data"}


@dataclass(frozen=True)
class SdkOperation:
    """One generated operation: its HTTP method and path template, the statuses it accepts, the model it reads."""

    group: str
    name: str
    method: str
    template: str
    statuses: tuple[int, ...]
    model: str | None

    def matches(self, method: str, path: str) -> bool:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.template))
        return method == self.method and re.fullmatch(pattern, path.rstrip("/"), re.IGNORECASE) is not None


def sdk_operations() -> list[SdkOperation]:
    """Read from the generated source: each `build_X_request`'s method and URL, each `X`'s status check and model."""
    out = []
    for group in GROUPS:
        module = importlib.import_module(f"{PACKAGE}.operations.{group}")
        tree = ast.parse(inspect.getsource(module))
        builders = {
            f.name.removeprefix("build_").removesuffix("_request"): f
            for f in tree.body
            if isinstance(f, ast.FunctionDef) and f.name.startswith("build_")
        }
        classes = [c for c in tree.body if isinstance(c, ast.ClassDef) and c.name.endswith("Operations")]
        for cls in classes:
            methods: dict[str, list[ast.FunctionDef]] = {}
            for f in cls.body:
                if isinstance(f, ast.FunctionDef) and f.name in builders:
                    methods.setdefault(f.name, []).append(f)
            for name, defs in methods.items():
                method, template = _request_of(builders[name])
                statuses, model = _answers_of(defs)
                out.append(SdkOperation(cls.name, name, method, template, statuses, model))
    return out


def _request_of(builder: ast.FunctionDef) -> tuple[str, str]:
    method = template = ""
    for node in ast.walk(builder):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "HttpRequest":
            method = next(k.value.value for k in node.keywords if k.arg == "method")  # type: ignore[attr-defined]
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "pop" and len(node.args) == 2:
            first, second = node.args
            if isinstance(first, ast.Constant) and first.value == "template_url" and isinstance(second, ast.Constant):
                template = str(second.value)
    assert method and template, f"no request in {builder.name}"
    return method, template


def _answers_of(defs: list[ast.FunctionDef]) -> tuple[tuple[int, ...], str | None]:
    statuses: tuple[int, ...] = ()
    model = None
    for node in (n for f in defs for n in ast.walk(f)):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Attribute)
            and node.left.attr == "status_code"
            and isinstance(node.ops[0], ast.NotIn)
            and isinstance(node.comparators[0], ast.List)
        ):
            statuses = tuple(int(e.value) for e in node.comparators[0].elts)  # type: ignore[attr-defined]
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "_deserialize" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant):
                model = str(first.value)
    assert statuses, "no status check"
    return statuses, model


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    body: bytes

    @property
    def path(self) -> str:
        return urlparse(self.url).path


@dataclass
class Recorder:
    """Every ARM exchange through azure-core's requests transport in this process (attached with monkeypatch)."""

    exchanges: list[Exchange] = field(default_factory=list)

    def wrap(self, send: Any) -> Any:
        def recording(transport: Any, request: Any, **kwargs: Any) -> Any:
            response = send(transport, request, **kwargs)
            self.exchanges.append(Exchange(request.method, request.url, response.status_code, response.body() or b""))
            return response

        return recording

    def seen(self, operations: list[SdkOperation]) -> set[str]:
        out = set()
        for ex in self.exchanges:
            op = next((o for o in operations if o.matches(ex.method, ex.path)), None)
            out.add(f"{op.group}.{op.name}:{ex.status}" if op else f"{ex.method} {ex.path}:{ex.status}")
        return out


def problems(ex: Exchange, operations: list[SdkOperation]) -> list[str]:
    """What in the exchange the real service could not have answered, per the SDK; [] when none."""
    op = next((o for o in operations if o.matches(ex.method, ex.path)), None)
    if op is None:
        return [f"{ex.method} {ex.path}: no operation of azure-mgmt-msi {API_VERSION} is this request"]
    where = f"{op.group}.{op.name} {ex.status}"
    if ex.status in op.statuses:
        if ex.status == 204 or op.model is None:
            return [] if not ex.body.strip() else [f"{where}: a body where the operation reads none"]
        return [f"{where}: {p}" for p in check_model(op.model, json.loads(ex.body), "")]
    if ex.status < 400:
        return [f"{where}: the operation accepts only {list(op.statuses)}"]
    return [f"{where}: {p}" for p in check_error(ex.body)]


def check_error(body: bytes) -> list[str]:
    """ARM's error body: {"error": CloudErrorBody} with a code and a message (ARMErrorFormat reads these)."""
    try:
        value = json.loads(body)
    except ValueError:
        return ["an error body that is not JSON"]
    if not isinstance(value, dict) or set(value) != {"error"}:
        return [f"an error body must be exactly {{'error': ...}}, got {value!r}"]
    out = check_model("CloudErrorBody", value["error"], ".error", always=False)
    out += [f".error.{k}: missing" for k in ("code", "message") if not value["error"].get(k)]
    return out


def check_model(model: str, value: Any, path: str, *, always: bool = True) -> list[str]:
    """Unknown keys, missing required or always-set attributes, wrong types and enum values, per the model class;
    the body must also deserialize with the SDK's own deserializer."""
    cls = getattr(MODELS, model)
    if not isinstance(value, dict):
        return [f"{path or '.'}: an object expected for {model}"]
    out = _walk(cls, value, path, always)
    if not out:
        try:
            cls.deserialize(value)
        except Exception as err:
            out.append(f"{path or '.'}: {model}.deserialize refused it: {err}")
    return out


def _tree(cls: Any) -> dict[str, Any]:
    """The model's wire keys as a tree (msrest flattens `properties.x` into one attribute)."""
    tree: dict[str, Any] = {}
    for attr, desc in cls._attribute_map.items():
        keys = [k.replace("\\.", ".") for k in _FLATTEN.split(desc["key"])]
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = (attr, desc["type"])
    return tree


def _walk(cls: Any, value: dict[str, Any], path: str, always: bool) -> list[str]:
    out: list[str] = []
    validation = getattr(cls, "_validation", {}) or {}
    wanted = {a for a, rule in validation.items() if rule.get("required")}
    if always:
        wanted |= {a for a, rule in validation.items() if rule.get("readonly")} - ALWAYS_SET_EXCEPT
    present: set[str] = set()

    def visit(tree: dict[str, Any], node: Any, where: str) -> None:
        if not isinstance(node, dict):
            out.append(f"{where}: an object expected")
            return
        for key, item in node.items():
            spec = tree.get(key)
            if spec is None:
                out.append(f"{where}.{key}: not an attribute of {cls.__name__}")
            elif isinstance(spec, dict):
                visit(spec, item, f"{where}.{key}")
            elif item is not None:
                present.add(spec[0])
                out.extend(_check_type(cls, spec[0], spec[1], item, f"{where}.{key}"))

    visit(_tree(cls), value, path)
    out += [f"{path}: {cls.__name__}.{a} missing" for a in sorted(wanted - present)]
    return out


def _check_type(cls: Any, attr: str, kind: str, value: Any, path: str) -> list[str]:
    if kind.startswith("[") and kind.endswith("]"):
        if not isinstance(value, list):
            return [f"{path}: a list expected"]
        return [p for i, v in enumerate(value) for p in _check_type(cls, attr, kind[1:-1], v, f"{path}[{i}]")]
    if kind.startswith("{") and kind.endswith("}"):
        if not isinstance(value, dict):
            return [f"{path}: a map expected"]
        return [p for k, v in value.items() for p in _check_type(cls, attr, kind[1:-1], v, f"{path}[{k}]")]
    if kind == "str":
        if not isinstance(value, str):
            return [f"{path}: a string expected, got {value!r}"]
        allowed = _enum_values(cls, attr)
        return [] if allowed is None or value in allowed else [f"{path}: {value!r} is not one of {sorted(allowed)}"]
    if kind == "bool":
        return [] if isinstance(value, bool) else [f"{path}: a boolean expected, got {value!r}"]
    if kind in ("int", "long"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: an integer expected, got {value!r}"]
    if kind == "iso-8601":
        try:
            datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return [f"{path}: an ISO 8601 time expected, got {value!r}"]
        return []
    if hasattr(MODELS, kind):
        return check_model(kind, value, path, always=False)
    return [f"{path}: type {kind} is not checked"]


def _enum_values(cls: Any, attr: str) -> set[str] | None:
    """The enum an attribute is typed with in the model's signature (e.g. `Union[str, "_models.IsolationScope"]`)."""
    parameter = inspect.signature(cls.__init__).parameters.get(attr)
    annotation = str(parameter.annotation) if parameter is not None else ""
    for name in re.findall(r"_models\.(\w+)", annotation):
        found = getattr(MODELS, name, None)
        if isinstance(found, type) and issubclass(found, enum.Enum):
            return {str(m.value) for m in found}
    return None
