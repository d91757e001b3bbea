"""Group commit per key: changes queued while one write to a cloud object is in flight go out together in the next.

A read-modify-write object (a GCP service account's IAM policy) takes one change per write under a per-key lock,
so N connections to one account cost N reads and N writes, in series. Here the caller that finds no write in
flight leads: it takes every change queued so far, and `commit` answers each of them. Changes queued meanwhile
wait; when the leader is done, the oldest of them leads the next batch. With `wait_seconds`, a waiter whose
change no leader has taken yet gives up (Busy) and gives its worker thread back, as KeyedLocks does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from porter_identity.errors import Busy, Transient

Change = TypeVar("Change")
Result = TypeVar("Result")


class Ticket(Generic[Change, Result]):
    """One queued change and, once `commit` answers it, its result or error."""

    def __init__(self, change: Change) -> None:
        self.change = change
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.answered = False
        self.leads = False
        self._woken = threading.Event()

    def answer(self, result: Result | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.answered = result, error, True

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        assert self.answered and self.result is not None
        return self.result


class _Queue(Generic[Change, Result]):
    def __init__(self) -> None:
        self.tickets: list[Ticket[Change, Result]] = []
        self.leading = False


class GroupCommit(Generic[Change, Result]):
    """Per-key queues of changes, each committed by whichever caller leads the key's next batch."""

    def __init__(self, wait_seconds: float | None = None) -> None:
        self.wait_seconds = wait_seconds
        self._guard = threading.Lock()
        self._queues: dict[str, _Queue[Change, Result]] = {}

    def submit(self, key: str, change: Change, commit: Callable[[list[Ticket[Change, Result]]], None]) -> Result:
        """`commit(batch)` must answer every ticket of the batch; one it leaves unanswered fails as Interrupted."""
        ticket: Ticket[Change, Result] = Ticket(change)
        with self._guard:
            queue = self._queues.setdefault(key, _Queue())
            queue.tickets.append(ticket)
            ticket.leads = not queue.leading
            queue.leading = True
        if not ticket.leads:
            self._wait(key, queue, ticket)
            if ticket.answered:
                return ticket.outcome()
        try:
            with self._guard:
                batch, queue.tickets = queue.tickets, []
            try:
                commit(batch)
            finally:
                for unanswered in (t for t in batch if not t.answered):
                    unanswered.answer(error=Transient(f"the write to {key} was interrupted", code="Interrupted"))
                for waiter in batch:
                    waiter._woken.set()
        finally:
            self._hand_over(key, queue)
        return ticket.outcome()

    def _wait(self, key: str, queue: _Queue[Change, Result], ticket: Ticket[Change, Result]) -> None:
        if ticket._woken.wait(self.wait_seconds):
            return
        with self._guard:
            if not ticket.leads and ticket in queue.tickets:
                queue.tickets.remove(ticket)
                raise Busy(f"another write to {key} is in flight", code="Busy")
        ticket._woken.wait()  # a leader took it (or handed the lead to it) just now

    def _hand_over(self, key: str, queue: _Queue[Change, Result]) -> None:
        with self._guard:
            if queue.tickets:
                nxt = queue.tickets[0]
                nxt.leads = True
                nxt._woken.set()
            else:
                queue.leading = False
                if self._queues.get(key) is queue:
                    del self._queues[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._queues)
