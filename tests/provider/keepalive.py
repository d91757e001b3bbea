"""Count the HTTP connections the SDKs open (urllib3 logs each one it opens or reopens)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def opened_connections() -> Iterator[list[str]]:
    """The log line of every connection opened or reopened inside the block."""
    opened: list[str] = []

    class Opened(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith(("Starting new", "Resetting dropped")):
                opened.append(message)

    pool_log = logging.getLogger("urllib3.connectionpool")
    handler, level = Opened(), pool_log.level
    pool_log.addHandler(handler)
    pool_log.setLevel(logging.DEBUG)
    try:
        yield opened
    finally:
        pool_log.removeHandler(handler)
        pool_log.setLevel(level)
