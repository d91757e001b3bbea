"""Recent permission reads: one read per key while many ask at once, kept for a while, failures not kept."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from porter_identity.providers.recent import Recent


def test_ten_callers_at_once_share_one_read() -> None:
    reads: list[str] = []
    gate = threading.Event()

    def read() -> int:
        reads.append("role-a")
        gate.wait(5)
        return 42

    recent: Recent[int] = Recent(ttl_seconds=300)
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(recent.get, "role-a", read) for _ in range(10)]
        time.sleep(0.1)  # all ten are waiting on the one read
        gate.set()
        assert [f.result(5) for f in futures] == [42] * 10
    assert reads == ["role-a"]
    assert recent.get("role-b", lambda: 7) == 7, "another key is read on its own"


def test_a_failed_read_is_not_kept() -> None:
    recent: Recent[int] = Recent(ttl_seconds=300)

    def refuse() -> int:
        raise PermissionError("iam:ListAttachedRolePolicies")

    with pytest.raises(PermissionError):
        recent.get("role-a", refuse)
    assert recent.get("role-a", lambda: 1) == 1


def test_an_answer_expires_after_its_ttl() -> None:
    recent: Recent[int] = Recent(ttl_seconds=0.05)
    assert recent.get("role-a", lambda: 1) == 1
    assert recent.get("role-a", lambda: 2) == 1
    time.sleep(0.1)
    assert recent.get("role-a", lambda: 3) == 3
