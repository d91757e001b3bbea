"""The one path of a connection's link, shared by the runner's runs and the drift sweep.

It decides which identities to touch (the spec's, and the one status says is linked) and when: apply makes,
moves (make-before-break), adopts or keeps the link; a refusal removes what this connection linked; Retain
marks the link so that nothing of ours deletes it; delete removes it. The Link of each cloud does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from porter_identity.api.common import DeletionPolicy
from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.clouds.base import Change, Link, Result
from porter_identity.clouds.registry import NEEDS, Registry
from porter_identity.reconcile import conditions
from porter_identity.reconcile.claims import Claim
from porter_identity.reconcile.outcome import UNLINKED, Action, Reason, State, ready, stalled


@dataclass(frozen=True)
class Step:
    """A lifecycle run's result, and the identity linked after it (what status records)."""

    result: Result
    linked: str | None


def recorded(conn: ServiceIdentityConnection) -> str | None:
    """The identity status says this connection linked (the provider cannot change, so it is the spec's)."""
    if conn.status.provider is not conn.spec.provider or getattr(conn.status, conn.spec.provider.value) is None:
        return None
    return conn.status.identity


def _joined(changes: list[Change], reason: str) -> Change | None:
    if not changes:
        return None
    if len(changes) == 1:
        return changes[0]
    return Change(reason, "; ".join(c.message for c in changes))


def _same(link: Link, a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and link.same_identity(a, b)


@dataclass(frozen=True)
class Lifecycle:
    registry: Registry
    block_broad: bool = False

    def apply(self, conn: ServiceIdentityConnection, refusal: str | None, owner: Claim | None) -> Step:
        """`refusal`: the policy's message when the spec is not allowed; `owner`: another connection that owns
        the ServiceAccount for this provider."""
        provider = conn.spec.provider
        before = recorded(conn)
        link = self.registry.get(provider)
        if link is None:
            outcome = stalled(
                Reason.NOT_CONFIGURED, f"{provider.value} connections need operator settings: {NEEDS[provider]}"
            )
            return Step(Result(outcome, getattr(conn.status, provider.value)), before)
        if refusal is not None:
            # The refusal is what the user must see, even where another connection owns the ServiceAccount.
            return self._unlink(link, conn, Result(stalled(Reason.NOT_ALLOWED, refusal), None), before, owner)
        if owner is not None:
            return self._yield_to(link, conn, owner, before)
        result = link.apply(conn, self.block_broad)
        outcome = result.outcome
        if outcome.state is State.RECONCILING:
            # Make-before-break: the link recorded stays until the spec's one is Ready.
            return Step(result, before or (conn.spec.identity if result.status is not None else None))
        if outcome.state is State.STALLED and outcome.reason in UNLINKED:
            return self._unlink(link, conn, result, before)
        if outcome.state is State.STALLED:
            # The spec still asks for this link (a cloud limit, our own access): what exists is kept.
            return Step(Result(outcome, getattr(conn.status, provider.value), None, result.privilege), before)
        if before is None or link.moves_in_place or _same(link, before, conn.spec.identity):
            return Step(result, conn.spec.identity)
        old = link.remove(conn, before)
        if old.outcome.state is not State.READY:
            return Step(Result(old.outcome, result.status, result.change, result.privilege), before)
        changes = [c for c in (result.change, old.change) if c is not None]
        moved = Change(
            Action.MOVED,
            f"moved the link from {before} to {conn.spec.identity}: " + "; ".join(c.message for c in changes),
        )
        return Step(Result(outcome, result.status, moved, result.privilege), conn.spec.identity)

    def _unlink(
        self,
        link: Link,
        conn: ServiceIdentityConnection,
        result: Result,
        before: str | None,
        owner: Claim | None = None,
    ) -> Step:
        """A refusal: remove what this connection linked, found in the cloud, not only through status; never the
        link another connection owns under the same names (Azure and GCP)."""
        previous = conditions.ready_condition(conn.status.conditions)
        repeated = previous is not None and previous.reason == result.outcome.reason.value
        if before is None and repeated and conn.status.observed_generation == conn.metadata.generation:
            return Step(result, None)  # a recheck of the same refusal: looked already, nothing is linked
        targets = [conn.spec.identity] + ([before] if before and not _same(link, before, conn.spec.identity) else [])
        if owner is not None and not link.moves_in_place:
            targets = [t for t in targets if not _same(link, t, owner.identity)]
        changes: list[Change] = []
        for identity in targets:
            gone = link.remove(conn, identity)
            if gone.outcome.state is not State.READY:
                return Step(Result(gone.outcome, getattr(conn.status, conn.spec.provider.value)), before)
            if gone.change is not None:
                changes.append(gone.change)
        return Step(Result(result.outcome, None, _joined(changes, Action.DELETED), result.privilege), None)

    def _yield_to(self, link: Link, conn: ServiceIdentityConnection, owner: Claim, before: str | None) -> Step:
        """Another connection owns the ServiceAccount: Conflict, and a link this one made (a race) is removed,
        unless it is the very link the owner holds (same names on Azure and GCP)."""
        conflict = stalled(
            Reason.CONFLICT,
            f"service account {conn.metadata.namespace}/{conn.spec.service_account_name} is already linked by "
            f"connection {owner.name} ({conn.spec.provider.value}); one ServiceAccount gets one identity per cloud: "
            "delete one of the two connections",
        )
        if before is None and link.moves_in_place:
            # AWS finds its link by this connection's uid tag, never another's: one made while the status that
            # recorded it was lost (a stale write) would keep the owner from linking, so it goes here too.
            gone = link.remove(conn, conn.spec.identity)
            if gone.outcome.state is State.READY and gone.change is not None and gone.change.reason == Action.DELETED:
                return Step(Result(conflict, None, gone.change), None)
            return Step(Result(conflict, None), None)  # a failed removal is tried again at the next run
        if before is None or (not link.moves_in_place and _same(link, before, owner.identity)):
            return Step(Result(conflict, None), None)
        gone = link.remove(conn, before)
        if gone.outcome.state is not State.READY:
            return Step(Result(gone.outcome, getattr(conn.status, conn.spec.provider.value)), before)
        return Step(Result(conflict, None, gone.change), None)

    def delete(self, conn: ServiceIdentityConnection, owner: Claim | None) -> Result:
        """Remove the link (or mark it retained); anything but Ready keeps the finalizer on."""
        provider = conn.spec.provider
        link = self.registry.get(provider)
        before = recorded(conn)
        if link is None:
            if conn.spec.deletion_policy is DeletionPolicy.RETAIN or (before is None and owner is not None):
                return Result(ready("nothing to remove"), None)
            return Result(
                stalled(
                    Reason.NOT_CONFIGURED,
                    f"cannot remove the {provider.value} link: the operator lacks {NEEDS[provider]}; configure it, "
                    "or set deletionPolicy: Retain to let this connection go and keep its link",
                ),
                None,
            )
        if conn.spec.deletion_policy is DeletionPolicy.RETAIN:
            if owner is not None and before is None:
                return Result(ready("deletionPolicy is Retain: this connection linked nothing"), None)
            return link.retain(conn)
        targets = [] if before is None else [before]
        owned_elsewhere = (
            owner is not None and not link.moves_in_place and _same(link, owner.identity, conn.spec.identity)
        )
        if not owned_elsewhere and not _same(link, before, conn.spec.identity):
            targets.append(conn.spec.identity)
        changes: list[Change] = []
        for identity in targets:
            gone = link.remove(conn, identity)
            if gone.outcome.state is not State.READY:
                return gone
            if gone.change is not None:
                changes.append(gone.change)
        done = _joined(changes, Action.DELETED)
        return Result(ready(done.message if done else "no link of this connection's was found"), None, done)
