"""The scrubber that keeps Secret values out of status, Events and logs, and the local ExternalId check."""

from __future__ import annotations

import pytest

from porter_identity.redact import REDACTED, external_id_problem, scrub

# What STS answers for an ExternalId it refuses (aws/aws-cli#4745): the value is echoed.
STS = (
    "1 validation error detected: Value '{}' at 'externalId' failed to satisfy constraint: "
    "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*"
)


@pytest.mark.parametrize(
    "echoed",
    ["tea for two", "tea%20for%20two", "tea+for+two", 'tea \\"for\\" two'],
    ids=["as sent", "url-encoded", "form-encoded", "json-escaped"],
)
def test_every_spelling_of_the_secret_is_removed(echoed: str) -> None:
    secret = 'tea "for" two' if "\\" in echoed else "tea for two"
    out = scrub(STS.format(echoed), [secret])
    assert out == STS.format(REDACTED)


def test_a_longer_secret_is_removed_whole_and_empty_ones_change_nothing() -> None:
    assert scrub("ab abc", ["ab", "abc", ""]) == f"{REDACTED} {REDACTED}"
    assert scrub("nothing here", []) == "nothing here"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("x", "it has 1 characters; AWS requires 2 to 1224"),
        ("x" * 1225, "it has 1225 characters; AWS requires 2 to 1224"),
        ("has space", "outside letters"),
        ("new\nline", "outside letters"),
        ("\u00e9t\u00e9", "outside letters"),  # Java's \w (STS) is ASCII only
        ("ok", None),
        ("A-z_0+9=,.@:/-" * 10, None),
    ],
)
def test_external_id_format_is_checked_locally_without_repeating_it(value: str, problem: str | None) -> None:
    found = external_id_problem(value)
    assert (found is None) == (problem is None)
    if found is not None:
        assert problem is not None and problem in found and value not in found
