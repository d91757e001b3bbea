"""GroupCommit: who leads a batch, what a batch holds, and that every caller gets exactly its own answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from porter_identity.errors import Busy, Transient
from porter_identity.providers.grouped import GroupCommit, Ticket


class Recorder:
    """A commit that blocks its first batch until released, and records every batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.inside = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: list[Ticket[int, int]]) -> None:
        self.batches.append([t.change for t in batch])
        if len(self.batches) == 1:
            self.inside.set()
            assert self.release.wait(5)
        for ticket in batch:
            ticket.answer(ticket.change * 10)


def _queued(group: GroupCommit[int, int], key: str) -> int:
    with group._guard:
        queue = group._queues.get(key)
        return 0 if queue is None else len(queue.tickets)


def test_alone_a_change_is_its_own_batch_and_the_key_is_dropped_after() -> None:
    group: GroupCommit[int, int] = GroupCommit()
    commit = Recorder()
    commit.release.set()
    assert group.submit("sa", 1, commit) == 10
    assert commit.batches == [[1]]
    assert len(group) == 0


def test_changes_queued_behind_a_write_go_out_together_in_order_each_with_its_own_answer() -> None:
    group: GroupCommit[int, int] = GroupCommit()
    commit = Recorder()
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(group.submit, "sa", 1, commit)
        assert commit.inside.wait(5)
        rest = {}
        for change in (2, 3, 4, 5):
            rest[change] = pool.submit(group.submit, "sa", change, commit)
            while _queued(group, "sa") < change - 1:
                threading.Event().wait(0.001)
        other = pool.submit(group.submit, "other", 9, commit)  # another key is not held up
        assert other.result(5) == 90
        commit.release.set()
        assert first.result(5) == 10
        assert {c: f.result(5) for c, f in rest.items()} == {2: 20, 3: 30, 4: 40, 5: 50}
    assert commit.batches == [[1], [9], [2, 3, 4, 5]]
    assert len(group) == 0


def test_a_waiter_no_leader_took_gives_up_with_busy_and_is_never_committed() -> None:
    group: GroupCommit[int, int] = GroupCommit(wait_seconds=0.05)
    commit = Recorder()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(group.submit, "sa", 1, commit)
        assert commit.inside.wait(5)
        with pytest.raises(Busy, match="another write to sa is in flight"):
            group.submit("sa", 2, commit)
        commit.release.set()
        assert first.result(5) == 10
    assert commit.batches == [[1]]
    assert len(group) == 0


def test_an_unanswered_ticket_fails_as_interrupted_and_the_next_batch_still_runs() -> None:
    group: GroupCommit[int, int] = GroupCommit()

    def forgets(batch: list[Ticket[int, int]]) -> None:
        batch[0].answer(error=Transient("refused", code="Refused"))

    with pytest.raises(Transient, match="refused"):
        group.submit("sa", 1, forgets)

    def answers_first_only(batch: list[Ticket[int, int]]) -> None:
        batch[0].answer(7)

    assert group.submit("sa", 2, answers_first_only) == 7

    def raises(batch: list[Ticket[int, int]]) -> None:
        raise RuntimeError("bug in a change")

    with pytest.raises(RuntimeError, match="bug in a change"):
        group.submit("sa", 3, raises)
    assert len(group) == 0  # the lead was handed back even though commit raised


def test_a_waiter_taken_into_a_batch_that_is_left_unanswered_gets_interrupted() -> None:
    group: GroupCommit[int, int] = GroupCommit()
    inside, release = threading.Event(), threading.Event()

    def only_answers_the_leader(batch: list[Ticket[int, int]]) -> None:
        if batch[0].change == 1:
            inside.set()
            assert release.wait(5)
        batch[0].answer(batch[0].change)

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(group.submit, "sa", 1, only_answers_the_leader)
        assert inside.wait(5)
        second = pool.submit(group.submit, "sa", 2, only_answers_the_leader)
        third = pool.submit(group.submit, "sa", 3, only_answers_the_leader)
        while _queued(group, "sa") < 2:
            threading.Event().wait(0.001)
        release.set()
        assert first.result(5) == 1
        assert second.result(5) == 2
        with pytest.raises(Transient, match="interrupted") as err:
            third.result(5)
        assert err.value.code == "Interrupted"
