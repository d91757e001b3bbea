"""Jittered exponential backoff for retryable failures ("full jitter" above a floor of half the step)."""

from __future__ import annotations

import random


def delay(retry: int, base: float, cap: float, rand: float | None = None) -> float:
    """Seconds to wait before attempt `retry + 1`; `rand` in [0, 1) makes it deterministic for tests."""
    step = min(cap, base * 2.0 ** min(max(retry, 0), 62))  # kopf's retry count grows without bound
    r = random.random() if rand is None else rand
    return step / 2 + step / 2 * r
