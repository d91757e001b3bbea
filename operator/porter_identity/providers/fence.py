"""The leader's fence: every cloud write checks it, so a replica that may have lost its Lease writes nothing."""

from __future__ import annotations

import http.client
import math
import threading
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

# The write this thread is sending (provider, operation), between the SDK's last hook and its answer.
_SENDING = threading.local()
_send = http.client.HTTPConnection.send


def _guarded_send(self: http.client.HTTPConnection, data: Any) -> None:
    """Every write of a request body or headers checks the fence again: a thread that passed the SDK's hook and was
    then stopped (a GC pause, SIGSTOP, a starved core) sends nothing once it wakes after the deadline."""
    sending = getattr(_SENDING, "write", None)
    if sending is not None:
        FENCE.check(*sending)
    _send(self, data)


# http.client's send is the last Python frame before a socket write, for botocore (urllib3) and azure-core (requests
# over urllib3) alike; only a thread marked by `sending` is checked there, so Kubernetes and reads pass untouched.
http.client.HTTPConnection.send = _guarded_send  # type: ignore[method-assign]


def sending(provider: str, operation: str) -> None:
    """Checks the fence, then marks this thread's next HTTP request as a write until `sent`."""
    _SENDING.write = None
    FENCE.check(provider, operation)
    _SENDING.write = (provider, operation)


def sent() -> None:
    _SENDING.write = None


def guard_boto3(client: Any) -> Any:
    """Every HTTP attempt of a boto3 client that writes (botocore's retries included) checks the fence, after any
    pacing wait (registered last) and again at each socket write, until botocore has the call's answer."""
    client.meta.events.register_last("before-send", _before_send)
    client.meta.events.register("after-call", _after_call)
    client.meta.events.register("after-call-error", _after_call)
    return client


def _before_send(event_name: str, **_: Any) -> None:
    operation = event_name.rsplit(".", 1)[-1]
    if is_read(operation):
        sent()
    else:
        sending("aws", operation)


def _after_call(**_: Any) -> None:
    sent()


def refusal(exception: BaseException | None) -> Fenced | None:
    """The fence's refusal behind a failed call, raised by the hook or wrapped by the HTTP stack, if it was one."""
    while exception is not None:
        if isinstance(exception, Fenced):
            return exception
        wrapped = getattr(exception, "kwargs", {}).get("error")  # botocore's HTTPClientError(error=...)
        exception = wrapped if isinstance(wrapped, BaseException) else exception.__cause__ or exception.__context__
    return None
