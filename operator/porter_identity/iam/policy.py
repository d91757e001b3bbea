"""IAM permission statements as the seed writes them, and their IAM JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

VERSION = "2012-10-17"

# Condition keys that hold several values per request: "=" means every value must match.
_MULTIVALUED = {"aws:TagKeys"}


@dataclass(frozen=True)
class Condition:
    """One row of the seed's Condition column: `key = v`, `key in [a, b]`, `key like v`, `key is not null`."""

    key: str
    operator: str  # "=", "in", "like", "is not null"
    values: tuple[str, ...] = ()

    def operator_block(self) -> tuple[str, Any]:
        """The IAM condition operator and the value it tests `key` against."""
        if self.operator == "is not null":
            return "Null", "false"
        if self.operator == "like":
            return "StringLike", self._value()
        if self.operator in ("=", "in"):
            prefix = "ForAllValues:" if self.key in _MULTIVALUED else ""
            return f"{prefix}StringEquals", self._value() if self.operator == "=" else list(self.values)
        raise ValueError(f"unknown condition operator {self.operator!r}")

    def _value(self) -> str:
        if len(self.values) != 1:
            raise ValueError(f"condition {self.key} {self.operator} takes exactly one value")
        return self.values[0]

    def text(self) -> str:
        """The seed's spelling of this condition."""
        if self.operator == "is not null":
            return f"{self.key} is not null"
        if self.operator == "in":
            return f"{self.key} in [{', '.join(self.values)}]"
        return f"{self.key} {self.operator} {self._value()}"


@dataclass(frozen=True)
class Statement:
    """One row of a seed permission table: Sid, resources, actions and conditions (all Allow)."""

    sid: str
    resources: tuple[str, ...]
    actions: tuple[str, ...]
    conditions: tuple[Condition, ...] = field(default=())

    def to_iam(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions),
            "Resource": list(self.resources),
        }
        if self.conditions:
            blocks: dict[str, dict[str, Any]] = {}
            for cond in self.conditions:
                op, value = cond.operator_block()
                blocks.setdefault(op, {})[cond.key] = value
            out["Condition"] = blocks
        return out


def listed(value: Any) -> list[Any]:
    """IAM lets one value stand where a list may be ("Action": "s3:GetObject"): always see a list."""
    return value if isinstance(value, list) else [value]


def document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": statements}


def compact(doc: dict[str, Any]) -> str:
    """The document as sent to IAM: no whitespace, keys in a stable order."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def size(doc: dict[str, Any]) -> int:
    """Characters IAM counts against its quotas (it does not count whitespace)."""
    return sum(1 for ch in compact(doc) if not ch.isspace())
