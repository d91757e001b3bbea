"""Per-key locks: serialise writes to one cloud object without blocking work on any other.

With `wait_seconds`, a writer waits at most that long, then gives its worker thread back (Busy): a queue of
writes to one identity must never occupy the whole pool while connections on other identities wait."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from porter_identity.errors import Busy


class KeyedLocks:
    """One lock per key, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self, wait_seconds: float | None = None) -> None:
        self.wait_seconds = wait_seconds
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            if not lock.acquire(timeout=-1 if self.wait_seconds is None else self.wait_seconds):
                raise Busy(f"another write to {key} is in flight", code="Busy")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
