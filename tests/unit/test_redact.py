"""The scrubber that keeps Secret values out of status, Events and logs, the local ExternalId check, blocked deletes."""

from __future__ import annotations

import pytest

from porter_identity.api.common import Condition
from porter_identity.api.roleset import RoleStatus
from porter_identity.clouds.base import Change
from porter_identity.iam.sync import SyncResult, blocked_delete, scrubbed
from porter_identity.reconcile.outcome import Reason, stalled
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


def test_every_text_of_a_role_set_result_is_scrubbed() -> None:

    secret = "s3cr3t/value="
    said = STS.format(secret)
    ready = Condition(type="Ready", status="False", reason="CloudRejected", message=said, last_transition_time="")
    result = SyncResult(
        stalled(Reason.CLOUD_REJECTED, said),
        roles=[RoleStatus(name="r", ready=ready)],
        changes=[Change("Created", said)],
        warnings=[Change("DriftCorrected", said)],
    )
    out = scrubbed(result, [secret])
    texts = [out.outcome.message, out.roles[0].ready.message if out.roles[0].ready else "", *out.changes, *out.warnings]
    assert secret not in repr(texts) and repr(texts).count(REDACTED) == 4


def test_a_blocked_delete_names_what_is_missing_and_both_ways_out() -> None:

    out = blocked_delete("prod", stalled(Reason.SECRET_NOT_FOUND, "Secret porter-system/x does not exist"))
    assert out.reason is Reason.SECRET_NOT_FOUND
    assert "deletionPolicy is Delete" in out.message and "Secret porter-system/x does not exist" in out.message
    assert "restore it" in out.message
    assert """kubectl patch porterroleset prod --type merge -p '{"spec":{"deletionPolicy":"Retain"}}'""" in out.message
