"""When a connection runs again after an outcome: pure, so every case is unit-tested without a clock."""

from __future__ import annotations

from porter_identity.reconcile import backoff
from porter_identity.reconcile.outcome import Outcome, Reason, State

# What a connection waits for that is often created in the same apply (one Terraform run, one Argo CD sync): looked
# for every second or two at first, then less often, then at the long recheck.
APPEARING = frozenset(
    {Reason.ROLE_NOT_FOUND, Reason.IDENTITY_NOT_FOUND, Reason.SERVICE_ACCOUNT_NOT_FOUND, Reason.NOT_YET_PROPAGATED}
)
FAST_FOR = 60.0  # seconds of looks at most 2 s apart
WAITING_NOTE = "waiting for it to appear: looked for again every 1-2 s in the first minute, then less often"


def appearing(outcome: Outcome) -> bool:
    return outcome.reason in APPEARING


def next_look(waited: float, recheck: float) -> float:
    """The delay before looking again for something missing for `waited` seconds: 1 s for 30 s, 2 s to a minute,
    then doubling from 4 s up to the long recheck."""
    if waited < FAST_FOR / 2:
        return min(1.0, recheck)
    if waited < FAST_FOR:
        return min(2.0, recheck)
    doublings = int((waited - FAST_FOR) // 30)
    return min(4.0 * 2.0 ** min(doublings, 16), recheck)


def retry_delay(outcome: Outcome, retries: int, base: float, cap: float) -> float:
    """After a retryable outcome: waiting for our own write on the same identity ends soon, so it is retried
    quickly; anything else backs off with jitter."""
    steps = min(retries, 2) if outcome.reason is Reason.PROGRESSING else retries
    return float(backoff.delay(steps, base, cap))


def after(
    outcome: Outcome, retries: int, waited: float | None, settings_base: float, settings_cap: float, recheck: float
) -> float | None:
    """The delay before the next run, None when nothing is due (Ready, or Stalled by the spec itself).
    `waited`: how long the missing thing has been missing (None when nothing is)."""
    if waited is not None and appearing(outcome):
        return next_look(waited, recheck)
    if outcome.retryable:
        return retry_delay(outcome, retries, settings_base, settings_cap)
    if outcome.state is State.STALLED and outcome.recheck:
        return recheck
    return None
