"""Namespace label selectors for sharding, with Kubernetes' semantics."""

from __future__ import annotations

import pytest

from porter_identity.reconcile.shard import Requirement, matches, parse

LABELS = {"porter.run/shard": "a", "team": "web", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("porter.run/shard=a", True),
        ("porter.run/shard==a", True),
        ("porter.run/shard=b", False),
        ("porter.run/shard!=b", True),
        ("porter.run/shard!=a", False),
        ("missing!=x", True),  # as in Kubernetes: != matches a namespace without the label
        ("team", True),
        ("!team", False),
        ("!missing", True),
        ("missing", False),
        ("env in (prod, staging)", True),
        ("env in (staging)", False),
        ("env notin (staging,dev)", True),
        ("env notin (prod)", False),
        ("porter.run/shard=a,team=web", True),
        ("porter.run/shard=a,team=api", False),
        ("env in (prod,dev),!missing,team", True),
    ],
)
def test_selector_semantics(selector: str, expected: bool) -> None:
    assert matches(parse(selector), LABELS) is expected


def test_parse_builds_requirements() -> None:
    assert parse("a=b, c notin (d, e), !f") == (
        Requirement("a", "in", frozenset({"b"})),
        Requirement("c", "notin", frozenset({"d", "e"})),
        Requirement("f", "!exists"),
    )


@pytest.mark.parametrize("bad", ["a=b=c", "=b", "a in b", "a in (b", "a b", "-a=b", "a=b,", "a=b c"])
def test_a_bad_selector_is_refused_naming_the_part(bad: str) -> None:
    with pytest.raises(ValueError, match="not a label selector requirement"):
        parse(bad)
