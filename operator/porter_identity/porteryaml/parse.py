"""Read a porter.yaml keeping its YAML nodes, so that every error names the file, the line and the service."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from porter_identity.porteryaml.schema import OURS, PorterApp

STR, SEQ, MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
Loc = Sequence[str | int]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file, at a 1-based line, in a service when it is inside one."""

    line: int
    service: str | None
    message: str

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}: " + (f"service {self.service}: " if self.service else "")
        return where + self.message


class PorterYamlError(Exception):
    """The file cannot be imported; `problems` says where and why."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(p.render(source) for p in self.problems))


@dataclass(frozen=True)
class Parsed:
    """The validated app, with the YAML it came from to point at lines."""

    source: str
    app: PorterApp
    root: yaml.Node

    def line(self, loc: Loc) -> int:
        return line_of(self.root, loc)


def line_of(root: yaml.Node, loc: Loc) -> int:
    """The line of the key or item `loc` leads to; parts that are not in the YAML (union tags, missing keys)
    leave it at the nearest enclosing one."""
    node, line = root, root.start_mark.line
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            if found:
                key, node = found[-1]
                line = key.start_mark.line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
    return line + 1


def service_of(data: Any, loc: Loc) -> str | None:
    """The name of the service `loc` is in, as written (None outside services or when it has none)."""
    if len(loc) < 2 or loc[0] != "services" or not isinstance(data, dict):
        return None
    services, index = data.get("services"), loc[1]
    if isinstance(services, list) and isinstance(index, int) and index < len(services):
        entry = services[index]
        name = entry.get("name") if isinstance(entry, dict) else None
        return str(name) if name is not None else None
    return None


def _walk(node: yaml.Node, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], yaml.Node]]:
    yield loc, node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(value, (*loc, str(key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _walk(item, (*loc, i))


def _duplicate_keys(root: yaml.Node) -> Iterator[tuple[tuple[str | int, ...], yaml.Node]]:
    # PyYAML keeps the last of two equal keys without a word; a second `connections:` would hide the first.
    for loc, node in _walk(root):
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in seen:
                        yield (*loc, key.value), key
                    seen.add(key.value)


def _services_as_list(root: yaml.Node) -> None:
    """Porter's first v2 parser read `services:` as a map from name to service; make it the documented list."""
    if not isinstance(root, yaml.MappingNode):
        return
    for i, (key, value) in enumerate(root.value):
        if key.value == "services" and isinstance(value, yaml.MappingNode):
            items: list[yaml.Node] = []
            for name, body in value.value:
                if not isinstance(body, yaml.MappingNode):
                    items.append(body)  # not a service: validation says so at its line
                    continue
                name_key = yaml.ScalarNode(STR, "name", name.start_mark, name.end_mark)
                items.append(yaml.MappingNode(MAP, [(name_key, name), *body.value], name.start_mark, body.end_mark))
            root.value[i] = (key, yaml.SequenceNode(SEQ, items, value.start_mark, value.end_mark))


def _message(error: Any) -> str:
    loc = [p for p in error["loc"] if p not in (*OURS, "other")]
    if len(loc) > 2 and loc[0] == "services":
        loc = loc[2:]  # the message names the service
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if error["type"] == "extra_forbidden":
        return f"unknown field {where}"
    if error["type"] == "missing":
        return f"missing required field {where}"
    if error["type"] in ("model_type", "dict_type"):
        return f"{where or 'the file'} must be a mapping"
    text = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {text}" if where else text


def parse(text: str, source: str) -> Parsed:
    """Validate `text` (the contents of `source`) as a porter.yaml; raise PorterYamlError naming every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise PorterYamlError(source, [Problem(line, None, f"not valid YAML: {err.problem or err}")]) from err
    if root is None:
        raise PorterYamlError(source, [Problem(1, None, "the file is empty; a porter.yaml starts with version: v2")])
    _services_as_list(root)
    data = yaml.SafeLoader("").construct_document(root)
    duplicates = [
        Problem(key.start_mark.line + 1, service_of(data, loc), f"duplicate key {key.value}")
        for loc, key in _duplicate_keys(root)
    ]
    if duplicates:
        raise PorterYamlError(source, duplicates)
    try:
        app = PorterApp.model_validate(data)
    except ValidationError as err:
        problems = [Problem(line_of(root, e["loc"]), service_of(data, e["loc"]), _message(e)) for e in err.errors()]
        raise PorterYamlError(source, sorted(problems, key=lambda p: p.line)) from err
    return Parsed(source, app, root)
