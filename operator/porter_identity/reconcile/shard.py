"""Which namespaces this operator instance serves: a Kubernetes label selector matched against namespace labels."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# key: optional DNS-subdomain prefix and a name (the label key syntax); value: the label value syntax.
_KEY = r"(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQUALITY = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "in" | "notin" | "exists" | "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside a `(...)` value set."""
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def parse(selector: str) -> tuple[Requirement, ...]:
    """The requirements of a label selector (`a=b,c!=d,e,!f,g in (h,i),j notin (k)`); ValueError names a bad one."""
    if not selector.strip():
        return ()
    found: list[Requirement] = []
    for part in _split(selector):
        if m := _SET.match(part):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            found.append(Requirement(m["key"], m["op"], values))
        elif m := _EQUALITY.match(part):
            found.append(Requirement(m["key"], "notin" if m["op"] == "!=" else "in", frozenset({m["value"]})))
        elif m := _EXISTS.match(part):
            found.append(Requirement(m["key"], "!exists" if m["neg"] else "exists"))
        else:
            raise ValueError(f"not a label selector requirement: {part.strip()!r}")
    return tuple(found)


def matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    """All requirements hold (an empty selector matches every namespace, as in Kubernetes)."""
    return all(r.matches(labels) for r in requirements)
