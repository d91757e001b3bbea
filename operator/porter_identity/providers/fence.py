"""The leader's fence: every cloud write checks it, so a replica that may have lost its Lease writes nothing."""

from __future__ import annotations

import math
import time
from typing import Any

from porter_identity.errors import Transient
from porter_identity.providers.pacing import is_read


class Fenced(Transient):
    """Refused before the call left this process: the Lease is not ours (or may not be) any more. Retryable, for
    the replica that holds the Lease next."""


class Fence:
    """A deadline on the monotonic clock, moved forward by each Lease renewal (porter_identity.leader).

    Open forever without leader election; closed (deadline in the past) on a standby and once leadership is lost.
    A deadline, not a flag: a worker thread that wakes up late after a stalled renewal is refused all the same."""

    def __init__(self) -> None:
        self._until = math.inf

    def extend(self, until: float) -> None:
        self._until = until

    def close(self) -> None:
        self._until = -math.inf

    @property
    def open(self) -> bool:
        return time.monotonic() < self._until

    def check(self, provider: str, operation: str) -> None:
        if not self.open:
            raise Fenced(
                f"{provider} {operation} not sent: this replica is not the leader (its Lease may have expired)"
            )


FENCE = Fence()


def guard_boto3(client: Any) -> Any:
    """Every HTTP attempt of a boto3 client that writes (botocore's retries included) checks the fence first."""
    client.meta.events.register("before-send", _before_send)
    return client


def _before_send(event_name: str, **_: Any) -> None:
    operation = event_name.rsplit(".", 1)[-1]
    if not is_read(operation):
        FENCE.check("aws", operation)
