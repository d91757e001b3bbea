"""Recent answers of permission reads: connections on one identity share one LeastPrivilege read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

from porter_identity.providers.locks import KeyedLocks

V = TypeVar("V")


class Recent(Generic[V]):
    """Keeps each answer `ttl_seconds`; a key is read by one thread at a time, so the others wait and share it
    (ten connections created at once on one role cost one read, not ten). Failures are not kept."""

    def __init__(self, ttl_seconds: float, maxsize: int = 4096) -> None:
        self._values: TTLCache[Hashable, V] = TTLCache(maxsize=maxsize, ttl=ttl_seconds)
        self._guard = threading.Lock()
        self._reading = KeyedLocks()

    def get(self, key: str, read: Callable[[], V]) -> V:
        with self._reading.hold(key):
            with self._guard:
                if key in self._values:
                    return self._values[key]
            value = read()
            with self._guard:
                self._values[key] = value
            return value

    def forget(self, key: str) -> None:
        """The next `get` reads again (an answer that must not be shared, e.g. one that refuses)."""
        with self._guard:
            self._values.pop(key, None)
