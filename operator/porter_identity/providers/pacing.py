"""Client-side token buckets per cloud and access (read/write), so a burst of reconciles stays under cloud limits."""

from __future__ import annotations

import time
from typing import Any

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from pyrate_limiter import Limiter, Rate, StateBucket, TokenBucket

from porter_identity import metrics
from porter_identity.config import Bucket, RateLimits

# Read-only calls by their API verb; anything else (create, update, put, tag, attach, set...) is a write.
_READ_PREFIXES = ("Get", "List", "Describe")
_READ_METHODS = ("GET", "HEAD")


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
        self._buckets = {
            "read": _limiter(getattr(limits, f"{provider}_read")),
            "write": _limiter(getattr(limits, f"{provider}_write")),
        }

    def wait(self, access: str) -> float:
        started = time.perf_counter()
        self._buckets[access].try_acquire(access)
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

    def arm_policy(self) -> SansIOHTTPPolicy[Any, Any]:
        return _ArmPacing(self)


class _ArmPacing(SansIOHTTPPolicy[Any, Any]):
    """A per-retry pipeline policy: each ARM attempt, azure-core's retries included, takes a token."""

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self._pacer.wait("read" if request.http_request.method in _READ_METHODS else "write")
