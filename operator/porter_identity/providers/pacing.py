"""Client-side token buckets per cloud and access (read/write), so a burst of reconciles stays under cloud limits."""

from __future__ import annotations

import time
from typing import Any

from pyrate_limiter import Limiter, Rate, StateBucket, TokenBucket

from porter_identity import metrics
from porter_identity.config import Bucket, RateLimits

# Read-only calls by their API verb; anything else (create, update, put, tag, attach, set...) is a write.
_READ_PREFIXES = ("Get", "List", "Describe")
READ_METHODS = ("GET", "HEAD")


def is_read(operation: str) -> bool:
    return operation.startswith(_READ_PREFIXES)


def _limiter(bucket: Bucket) -> Limiter:
    # pyrate-limiter's Rate is whole tokens per interval in ms: express per_second over 1,000 s so 0.5/s works.
    rate = Rate(max(1, round(bucket.per_second * 1000)), 1_000_000, burst=bucket.burst)
    return Limiter(StateBucket([rate], algorithm=TokenBucket()))


class Pacer:
    """Blocks the calling worker thread until its cloud's bucket has a token; the wait is a metric."""

    def __init__(self, provider: str, limits: RateLimits) -> None:
        self.provider = provider
        buckets: dict[str, Bucket | None] = {
            access: getattr(limits, f"{provider}_{access}") for access in ("read", "write")
        }
        self._buckets = {access: _limiter(bucket) for access, bucket in buckets.items() if bucket is not None}

    @property
    def fixed(self) -> bool:
        """Whether any bucket is set (AWS has none by default: botocore's adaptive mode paces it)."""
        return bool(self._buckets)

    def wait(self, access: str) -> float:
        limiter = self._buckets.get(access)
        if limiter is None:
            return 0.0
        started = time.perf_counter()
        limiter.try_acquire(access)
        waited = time.perf_counter() - started
        metrics.rate_limited(self.provider, access, waited)
        return waited

    def pace_boto3(self, client: Any) -> Any:
        """Every HTTP attempt of a boto3 client (botocore's retries included) takes a token first."""
        client.meta.events.register("before-send", self._before_send)
        return client

    def _before_send(self, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self.wait("read" if is_read(operation) else "write")
