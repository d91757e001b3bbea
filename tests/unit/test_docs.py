"""The runbook keeps up with the code: every condition reason has a row saying what it means and what to do."""

from __future__ import annotations

import re

import pytest

from porter_dev import REPO_ROOT
from porter_identity.reconcile.outcome import Reason

RUNBOOK = REPO_ROOT / "docs" / "operations.md"


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_every_reason_has_a_runbook_row(reason: Reason) -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (.+?) \| (.+?) \|$", RUNBOOK.read_text(), flags=re.MULTILINE)
    found = {name: (state, meaning, action) for name, state, meaning, action in rows}
    assert reason.value in found, f"docs/operations.md has no row for {reason.value}"
    _, meaning, action = found[reason.value]
    assert meaning.strip() and action.strip()
