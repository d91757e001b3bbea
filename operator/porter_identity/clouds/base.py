"""The Link interface each cloud implements, and what its operations hand back to the lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from porter_identity.api.connection import Provider, ServiceIdentityConnection
from porter_identity.kube.serviceaccounts import ServiceAccounts
from porter_identity.reconcile.drift import Findings, Group, Linked, Orphan
from porter_identity.reconcile.outcome import Action, Outcome, ready
from porter_identity.reconcile.privilege import Check


def retained_annotation(provider: Provider) -> str:
    """On a ServiceAccount: the identity (spec form) whose link a Retain delete left in place. Azure credentials
    and GCP members carry no tags of their own; AWS marks the association itself with a tag."""
    return f"identity.porter.run/retained-{provider.value}"


def kept_for_another(
    annotations: Mapping[str, str],
    conn: ServiceIdentityConnection,
    provider: Provider,
    identity: str,
    same: Callable[[str, str], bool],
) -> bool:
    """A link a Retain delete left (marked in the ServiceAccount's `annotations`) that this connection has not
    taken over."""
    if conn.status.identity is not None and same(conn.status.identity, identity):
        return False
    marked = annotations.get(retained_annotation(provider))
    return marked is not None and same(marked, identity)


def mark_retained(accounts: ServiceAccounts, conn: ServiceIdentityConnection, what: str) -> Result:
    """Retain for links without tags of their own (Azure, GCP): the mark goes on the ServiceAccount."""
    ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
    marked = accounts.annotate_if_present(ns, sa, {retained_annotation(conn.spec.provider): conn.spec.identity})
    message = f"deletionPolicy is Retain: {what} kept" + (
        "" if marked else f" (ServiceAccount {ns}/{sa} is gone, so it is not marked retained)"
    )
    return Result(ready(message), None, Change(Action.RETAINED, message))


@dataclass(frozen=True)
class RetainedLink:
    """A link a Retain or detach-on-delete delete left in place: no connection holds it any more."""

    provider: Provider
    namespace: str
    service_account: str
    identity: str  # the spec form: role, <resource group>/<identity>, email
    link: str = ""  # the association id (AWS); Azure and GCP find theirs by name when removing


@dataclass(frozen=True)
class Change:
    """Something done in the cloud or cluster, reported as a Normal Event."""

    reason: str
    message: str


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status: BaseModel | None
    change: Change | None = None
    privilege: Check | None = None  # set when this run read the identity's permissions (LeastPrivilege)


class Link(Protocol):
    """One cloud's side of a connection, in the spirit of ACK's resource manager: every operation finds what this
    connection owns in the cloud (by tag or deterministic name), never only through status."""

    provider: Provider
    moves_in_place: bool  # a new identity replaces the old one in the same cloud object (nothing to remove after)

    def same_identity(self, a: str, b: str) -> bool:
        """Whether two spec forms name one identity, compared the way the cloud compares names."""
        ...

    def apply(self, conn: ServiceIdentityConnection, block_broad: bool) -> Result:
        """Make exactly this connection's link to the spec's identity exist (create, update, adopt or keep)."""
        ...

    def remove(self, conn: ServiceIdentityConnection, identity: str) -> Result:
        """Remove this connection's link to `identity` (the spec form); a missing link is success, with no change.
        A link marked retained that this connection never took over is left alone."""
        ...

    def retain(self, conn: ServiceIdentityConnection) -> Result:
        """Leave the link in place for good, marked so that nothing of ours deletes it, a later connection adopts it."""
        ...

    def survey(self, group: Group, linked: list[Linked]) -> Findings:
        """One bulk read for the drift sweep (a paged list per cluster or identity, a policy per service account),
        and what reconcile/drift.py finds in it."""
        ...

    def retained_orphan(self, orphan: Orphan) -> bool:
        """An orphan a Retain delete left: never ours to delete, nor to report."""
        ...

    def delete_orphan(self, orphan: Orphan) -> None: ...

    def retained_links(self, namespace: str | None, marks: Mapping[tuple[str, str], str]) -> list[RetainedLink]:
        """Links a Retain delete left, in `namespace` or everywhere: AWS finds them by tag (everywhere: those the
        last sweep saw), Azure and GCP from their ServiceAccounts' marks (`marks`: namespace/name -> identity)."""
        ...

    def remove_retained(self, retained: RetainedLink) -> str:
        """Delete a retained link the policy withdrew, and its marks; the message says what was removed."""
        ...
