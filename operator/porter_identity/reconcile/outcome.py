"""The result of one reconcile, in kstatus terms, and the reasons it can carry."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from porter_identity.errors import (
    AccessDenied,
    Busy,
    CloudError,
    Conflict,
    Invalid,
    LimitExceeded,
    NotFound,
    Throttled,
)


class State(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class Reason(StrEnum):
    """One name per situation: condition reason, Event reason, log key and metric label."""

    BOUND = "Bound"
    SYNCED = "Synced"
    SECRET_NOT_FOUND = "SecretNotFound"
    INVALID_SECRET = "InvalidSecret"
    PROGRESSING = "Progressing"
    THROTTLED = "Throttled"
    CLOUD_UNAVAILABLE = "CloudUnavailable"
    ROLE_NOT_FOUND = "RoleNotFound"
    TRUST_POLICY_INVALID = "TrustPolicyInvalid"
    NOT_YET_PROPAGATED = "NotYetPropagated"
    IDENTITY_NOT_FOUND = "IdentityNotFound"
    IDENTITY_OUTSIDE_PROJECT = "IdentityOutsideProject"
    SERVICE_ACCOUNT_NOT_FOUND = "ServiceAccountNotFound"
    LIMIT_EXCEEDED = "LimitExceeded"
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    CONFLICT = "Conflict"
    INVALID_SPEC = "InvalidSpec"
    ACCESS_DENIED = "AccessDenied"
    CLOUD_REJECTED = "CloudRejected"
    NOT_CONFIGURED = "NotConfigured"
    NOT_ALLOWED = "NotAllowed"
    BROAD_PERMISSIONS = "BroadPermissions"
    LEAST_PRIVILEGE = "LeastPrivilege"


# The one state each reason puts a resource in (docs/connections.md is generated from it). LeastPrivilege is the
# reason of the LeastPrivilege condition when nothing broad was found, beside a Ready one.
_RECONCILING = {
    Reason.PROGRESSING,
    Reason.THROTTLED,
    Reason.CLOUD_UNAVAILABLE,
    Reason.SERVICE_ACCOUNT_NOT_FOUND,
    Reason.NOT_YET_PROPAGATED,
}
_READY = {Reason.BOUND, Reason.SYNCED, Reason.LEAST_PRIVILEGE}
STATE: dict[Reason, State] = {
    r: State.RECONCILING if r in _RECONCILING else State.READY if r in _READY else State.STALLED for r in Reason
}


class Action(StrEnum):
    """Reasons of the Events that say what the operator did; every condition reason is an Event reason too."""

    CREATED = "Created"
    UPDATED = "Updated"
    ADOPTED = "Adopted"
    MOVED = "Moved"
    DELETED = "Deleted"
    SKIPPED = "Skipped"
    RETAINED = "Retained"
    RELEASED = "Released"
    PAUSED = "Paused"
    DETACHED = "Detached"
    DRIFT_CORRECTED = "DriftCorrected"
    ORPHANED_LINK = "OrphanedLink"
    ORPHAN_DELETED = "OrphanDeleted"


# Stalls caused by something outside the spec that may get fixed there: rechecked periodically.
OUTSIDE_THE_SPEC = frozenset(
    {
        Reason.ROLE_NOT_FOUND,
        Reason.TRUST_POLICY_INVALID,
        Reason.IDENTITY_NOT_FOUND,
        Reason.LIMIT_EXCEEDED,
        Reason.CLUSTER_NOT_FOUND,
        Reason.CONFLICT,
        Reason.ACCESS_DENIED,
        Reason.SECRET_NOT_FOUND,
        Reason.NOT_ALLOWED,  # a namespace annotation may allow it later: no event wakes us for that
        Reason.BROAD_PERMISSIONS,
        Reason.CLOUD_REJECTED,  # an unknown refusal: the cloud's side may change (a fixed clock, a new token)
    }
)


# Stalls where the spec cannot be linked as written: whatever this connection linked before is removed, since no link
# may outlive what the spec asks for. Not Conflict (the link belongs to another connection) and not failures of the
# operator's own access or the cloud's limits (the spec still asks for the link).
UNLINKED = frozenset(
    {
        Reason.NOT_ALLOWED,
        Reason.BROAD_PERMISSIONS,
        Reason.ROLE_NOT_FOUND,
        Reason.TRUST_POLICY_INVALID,
        Reason.IDENTITY_NOT_FOUND,
        Reason.IDENTITY_OUTSIDE_PROJECT,
    }
)

# Stalls in which a connection neither holds nor can make a link: it does not claim its ServiceAccount.
NOT_CLAIMING = UNLINKED | {Reason.INVALID_SPEC, Reason.NOT_CONFIGURED}


@dataclass(frozen=True)
class Outcome:
    state: State
    reason: Reason
    message: str

    def __post_init__(self) -> None:
        if self.state is not STATE[self.reason]:
            raise ValueError(f"{self.reason} is {STATE[self.reason]}, not {self.state}")

    @property
    def retryable(self) -> bool:
        return self.state is State.RECONCILING

    @property
    def recheck(self) -> bool:
        """Stalled by something outside the spec (a missing role, a foreign association) that may get fixed."""
        return self.state is State.STALLED and self.reason in OUTSIDE_THE_SPEC


def ready(message: str, reason: Reason = Reason.BOUND) -> Outcome:
    return Outcome(State.READY, reason, message)


def stalled(reason: Reason, message: str) -> Outcome:
    return Outcome(State.STALLED, reason, message)


def propagating(message: str) -> Outcome:
    """The cloud's own API has the identity (or its fixed trust) and the linking service does not see it yet: every
    cloud's IAM is eventually consistent. Reconciling, so a link recorded before stays until the new one is made."""
    return Outcome(State.RECONCILING, Reason.NOT_YET_PROPAGATED, message)


def from_error(err: CloudError, *, what: str, missing: Reason = Reason.CLUSTER_NOT_FOUND) -> Outcome:
    """The one error table of all three clouds (docs/operations.md): 401/403 AccessDenied, throttling Throttled,
    5xx and timeouts CloudUnavailable, a missing object `missing` (what the step addresses: the cluster, or the
    identity), anything else CloudRejected, which is rechecked. `what`: e.g. "creating the association"."""
    detail = f"{what}: {err.message}" if err.code == "" else f"{what}: {err.code}: {err.message}"
    if isinstance(err, Busy):
        return Outcome(State.RECONCILING, Reason.PROGRESSING, f"waiting while {detail}; retrying shortly")
    if isinstance(err, Throttled):
        return Outcome(State.RECONCILING, Reason.THROTTLED, f"throttled while {detail}; retrying with backoff")
    if err.retryable:
        return Outcome(State.RECONCILING, Reason.CLOUD_UNAVAILABLE, f"cloud error while {detail}; retrying")
    if isinstance(err, AccessDenied):
        return stalled(Reason.ACCESS_DENIED, f"the operator's credentials were refused while {detail}")
    if isinstance(err, NotFound):
        return stalled(missing, f"not found while {detail}")
    if isinstance(err, LimitExceeded):
        return stalled(Reason.LIMIT_EXCEEDED, f"a cloud limit was reached while {detail}")
    if isinstance(err, Conflict):
        return stalled(Reason.CONFLICT, f"conflict while {detail}")
    if isinstance(err, Invalid):
        return stalled(Reason.CLOUD_REJECTED, f"the cloud rejected the request while {detail}")
    return stalled(Reason.CLOUD_REJECTED, f"unexpected cloud error while {detail}")
