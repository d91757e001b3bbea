"""Event names are made by the operator (as client-go's recorder makes them), so a post's answer is never parsed."""

from __future__ import annotations

import re

from porter_identity.kube.events import _name


def test_a_name_is_the_objects_then_nanoseconds_in_hex() -> None:
    first, second = _name("app"), _name("app")
    assert re.fullmatch(r"app\.[0-9a-f]{15,16}", first), first
    assert first != second


def test_a_name_at_the_limit_is_cut_to_stay_a_valid_subdomain() -> None:
    longest = "a" * 250 + "-b"
    made = _name(longest)
    assert len(made) <= 253
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", made), made
    cut_at_a_dash = _name("a" * 235 + "-" + "b" * 17)
    assert ".-" not in cut_at_a_dash and "-." not in cut_at_a_dash
