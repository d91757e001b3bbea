"""Decide the ServiceAccount annotation patch: only keys that differ, None removes a key."""

from __future__ import annotations


def patch(current: dict[str, str], wanted: dict[str, str | None]) -> dict[str, str | None] | None:
    changes = {key: value for key, value in wanted.items() if current.get(key) != value}
    return changes or None


def removal(current: dict[str, str], ours: dict[str, str]) -> dict[str, str | None] | None:
    """Remove our annotations, but only where they still hold the values we wrote."""
    return patch(current, {key: None for key, value in ours.items() if current.get(key) == value})
