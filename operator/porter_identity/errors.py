"""Typed cloud errors: the failure vocabulary of providers/, reconcile/ and links/ (imports nothing of ours)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class CloudError(Exception):
    """Base class; `retryable` says whether backing off and trying again can help."""

    retryable = False

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NotFound(CloudError):
    """The addressed cloud object does not exist."""


class Conflict(CloudError):
    """The cloud object exists in a state that clashes with the request."""


class Invalid(CloudError):
    """The cloud refused the request as malformed."""


class AccessDenied(CloudError):
    """The operator's own credentials may not do this."""


class Throttled(CloudError):
    """The cloud asked us to slow down."""

    retryable = True


class Transient(CloudError):
    """5xx, timeouts, connection errors, concurrency conflicts: try again later."""

    retryable = True


class Busy(CloudError):
    """Another write of this operator to the same cloud object is in flight; the worker is given back."""

    retryable = True


class LimitExceeded(CloudError):
    """A documented quota of the cloud is reached (e.g. 20 federated credentials per managed identity)."""


@contextmanager
def translating(kinds: tuple[type[BaseException], ...], translate: Callable[[Any], CloudError]) -> Iterator[None]:
    """Re-raise an SDK failure of `kinds` as the typed error `translate` picks, keeping it as the cause."""
    try:
        yield
    except kinds as err:
        raise translate(err) from err
