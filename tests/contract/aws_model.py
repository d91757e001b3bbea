"""Check raw AWS answers against botocore's service models: output shapes (JSON and query XML) and error codes."""

from __future__ import annotations

import datetime
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.model import OperationModel, Shape

# AWS common errors any operation may return (https://docs.aws.amazon.com/eks/latest/APIReference/CommonErrors.html,
# the same page exists for IAM and STS), with their documented HTTP status; a model that declares one of these
# shapes (EKS declares ThrottlingException as 429, AccessDeniedException as 403) wins over this table.
COMMON_ERRORS = {
    "AccessDeniedException": 400,
    "AccessDenied": 403,  # IAM / STS query protocol spelling
    "IncompleteSignature": 400,
    "InternalFailure": 500,
    "InvalidAction": 400,
    "InvalidClientTokenId": 403,
    "NotAuthorized": 400,
    "OptInRequired": 403,
    "RequestExpired": 400,
    "ServiceUnavailable": 503,
    "ThrottlingException": 400,
    "Throttling": 400,  # IAM / STS query protocol spelling
    "ValidationError": 400,
}


@dataclass
class Answer:
    """One raw HTTP answer to one operation, as it came off the wire."""

    service: str
    operation: OperationModel
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """Keeps every answer a boto3 session's clients receive (botocore's `after-call` event: errors too)."""

    answers: list[Answer] = field(default_factory=list)

    def attach(self, session: boto3.session.Session) -> boto3.session.Session:
        session.events.register("after-call", self._record)
        return session

    def _record(self, http_response: Any, model: OperationModel, **_: Any) -> None:
        self.answers.append(
            Answer(
                service=model.service_model.endpoint_prefix,
                operation=model,
                status=int(http_response.status_code),
                headers={k.lower(): v for k, v in http_response.headers.items()},
                body=bytes(http_response.content or b""),
            )
        )

    def operations(self) -> set[str]:
        return {f"{a.operation.name}:{a.status}" for a in self.answers}


def problems(answer: Answer) -> list[str]:
    """What in `answer` the real service could not have sent, per the operation's model; [] when none."""
    protocol = answer.operation.service_model.protocol
    if answer.status >= 300:
        return _error_problems(answer, protocol)
    if protocol == "rest-json":
        return _json_problems(answer.operation.output_shape, answer.body)
    if protocol == "query":
        return _query_problems(answer.operation, answer.body)
    return [f"protocol {protocol} is not checked"]


# ---- errors


def error_code(answer: Answer, protocol: str) -> str:
    if protocol == "query":
        found = ET.fromstring(answer.body).find(".//{*}Error/{*}Code")
        return (found.text or "") if found is not None else ""
    code = answer.headers.get("x-amzn-errortype", "")
    if not code and answer.body:
        body = json.loads(answer.body)
        code = str(body.get("__type") or body.get("code") or "")
    return code.split(":")[0].split("#")[-1]


def _error_problems(answer: Answer, protocol: str) -> list[str]:
    op = answer.operation
    code = error_code(answer, protocol)
    declared = {(s.metadata.get("error") or {}).get("code", s.name): s for s in op.error_shapes}
    service_level = {(s.metadata.get("error") or {}).get("code", s.name): s for s in op.service_model.error_shapes}
    where = f"{op.name} {answer.status} {code}"
    shape = declared.get(code)
    if shape is None and code in COMMON_ERRORS:
        shape = service_level.get(code)
        if shape is None:
            expected = COMMON_ERRORS[code]
            return [] if answer.status == expected else [f"{where}: the common error {code} is HTTP {expected}"]
    if shape is None:
        return [f"{where}: not an error {op.name} may return ({sorted(declared)} or the common errors)"]
    out = []
    status = (shape.metadata.get("error") or {}).get("httpStatusCode")
    if status is not None and status != answer.status:
        out.append(f"{where}: the model gives {code} HTTP {status}")
    if protocol == "rest-json" and answer.body:
        body = json.loads(answer.body)
        unknown = set(body) - set(shape.members) - {"__type", "code", "Message"}
        if unknown:
            out.append(f"{where}: members {sorted(unknown)} are not in {shape.name}")
    return out


# ---- rest-json outputs


def _json_problems(shape: Shape | None, body: bytes) -> list[str]:
    if shape is None:
        return [] if not body.strip(b"{} \n") else ["a body where the model has no output"]
    payload = shape.serialization.get("payload")
    value = json.loads(body) if body else {}
    if payload:
        return check_json(shape.members[payload], value, payload)
    in_body = {n: m for n, m in shape.members.items() if m.serialization.get("location") is None}
    return _check_structure(shape, value, "", in_body)


def check_json(shape: Shape, value: Any, path: str) -> list[str]:
    """Every way `value` breaks `shape` (types, required, unknown members, enums, lengths, ranges, patterns)."""
    kind = shape.type_name
    if kind == "structure":
        return _check_structure(shape, value, path, shape.members)
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: a list expected, got {type(value).__name__}"]
        out = _length(shape, len(value), path)
        for i, item in enumerate(value):
            out += check_json(shape.member, item, f"{path}[{i}]")  # type: ignore[attr-defined]
        return out
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: a map expected, got {type(value).__name__}"]
        out = _length(shape, len(value), path)
        for k, v in value.items():
            out += check_json(shape.key, k, f"{path}.<key>")  # type: ignore[attr-defined]
            out += check_json(shape.value, v, f"{path}[{k}]")  # type: ignore[attr-defined]
        return out
    if kind == "string":
        return _check_string(shape, value, path)
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: an integer expected, got {value!r}"]
        return _range(shape, value, path)
    if kind in ("float", "double"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: a number expected, got {value!r}"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: a boolean expected, got {value!r}"]
    if kind == "timestamp":
        # rest-json's default timestamp format is epoch seconds
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: epoch seconds expected, got {value!r}"]
    if kind == "blob":
        return [] if isinstance(value, str) else [f"{path}: base64 text expected, got {value!r}"]
    return [f"{path}: shape type {kind} is not checked"]


def _check_structure(shape: Shape, value: Any, path: str, members: dict[str, Shape]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path or '.'}: an object expected, got {type(value).__name__}"]
    by_wire = {m.serialization.get("name", n): (n, m) for n, m in members.items()}
    out = [f"{path}.{k}: not a member of {shape.name}" for k in value if k not in by_wire]
    out += [f"{path}.{r}: required by {shape.name}, missing" for r in shape.required_members if r not in value]
    for key, item in value.items():
        if key in by_wire and item is not None:
            out += check_json(by_wire[key][1], item, f"{path}.{key}")
    return out


def _check_string(shape: Shape, value: Any, path: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{path}: a string expected, got {value!r}"]
    out = _length(shape, len(value), path)
    enum = getattr(shape, "enum", None) or []
    if enum and value not in enum:
        out.append(f"{path}: {value!r} is not one of {enum}")
    pattern = shape.metadata.get("pattern")
    if pattern and not re.fullmatch(_python_pattern(pattern), value, re.DOTALL):
        out.append(f"{path}: {value!r} does not match {pattern}")
    return out


def _python_pattern(pattern: str) -> str:
    # The models write code points as \uXXXX (Python understands), anchor some patterns themselves and use Java's
    # \p{L} / \p{N} / \p{Z} inside classes (IAM's tag patterns): \w and \s, slightly wider, stand in for them.
    pattern = pattern.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\w").replace(r"\p{Z}", r"\s")
    return pattern.removeprefix("^").removesuffix("$")


def _length(shape: Shape, n: int, path: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and n < low:
        return [f"{path}: length {n} < min {low} of {shape.name}"]
    if high is not None and n > high:
        return [f"{path}: length {n} > max {high} of {shape.name}"]
    return []


def _range(shape: Shape, n: float, path: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and n < low) or (high is not None and n > high):
        return [f"{path}: {n} outside [{low}, {high}] of {shape.name}"]
    return []


# ---- query (XML) outputs


def _query_problems(op: OperationModel, body: bytes) -> list[str]:
    root = ET.fromstring(body)
    if _local(root.tag) != f"{op.name}Response":
        return [f"root element {_local(root.tag)}, not {op.name}Response"]
    shape = op.output_shape
    wrapper = shape.serialization.get("resultWrapper") if shape is not None else None
    children = [c for c in root if _local(c.tag) != "ResponseMetadata"]
    if shape is None:
        return [f"{op.name}: unexpected {[_local(c.tag) for c in children]}"] if children else []
    result = next((c for c in children if _local(c.tag) == wrapper), None)
    if result is None:
        return [f"{op.name}: no {wrapper}"]
    return check_xml(shape, result, wrapper or op.name)


def check_xml(shape: Shape, node: ET.Element, path: str) -> list[str]:
    kind = shape.type_name
    if kind == "structure":
        by_wire = {m.serialization.get("name", n): m for n, m in shape.members.items()}
        out: list[str] = []
        seen = set()
        for child in node:
            name = _local(child.tag)
            seen.add(name)
            member = by_wire.get(name)
            if member is None:
                out.append(f"{path}.{name}: not a member of {shape.name}")
            else:
                out += check_xml(member, child, f"{path}.{name}")
        out += [f"{path}.{r}: required by {shape.name}, missing" for r in shape.required_members if r not in seen]
        return out
    if kind == "list":
        items = [c for c in node if _local(c.tag) == "member"]
        out = [f"{path}.{_local(c.tag)}: a list holds <member>" for c in node if _local(c.tag) != "member"]
        out += _length(shape, len(items), path)
        for i, item in enumerate(items):
            out += check_xml(shape.member, item, f"{path}[{i}]")  # type: ignore[attr-defined]
        return out
    text = node.text or ""
    if kind == "string":
        return _check_string(shape, text, path)
    if kind in ("integer", "long"):
        if not re.fullmatch(r"-?[0-9]+", text):
            return [f"{path}: an integer expected, got {text!r}"]
        return _range(shape, int(text), path)
    if kind == "boolean":
        return [] if text in ("true", "false") else [f"{path}: true or false expected, got {text!r}"]
    if kind == "timestamp":
        try:
            datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return [f"{path}: an ISO 8601 timestamp expected, got {text!r}"]
        return []
    return [f"{path}: shape type {kind} is not checked"]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
