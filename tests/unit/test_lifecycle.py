"""The link lifecycle's decisions, over a recording Link (the cloud side is proven against the emulators in
tests/e2e/test_lifecycle.py): which identities are touched, in which order, and what status records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from porter_identity.api.connection import AzureStatus, Provider, ServiceIdentityConnection
from porter_identity.clouds.base import Change, Result
from porter_identity.clouds.registry import Registry
from porter_identity.engine.lifecycle import Lifecycle
from porter_identity.reconcile.claims import CAN_LINK, Claim
from porter_identity.reconcile.outcome import Outcome, Reason, State, ready, stalled

RG = "rg"


@dataclass
class Recording:
    """A Link whose answers the test sets, and which records every call."""

    provider: Provider = Provider.AZURE
    moves_in_place: bool = False
    answer: Outcome = field(default_factory=lambda: ready("bound"))
    remove_answer: Outcome = field(default_factory=lambda: ready("removed"))
    removed: Result | None = None  # the whole answer of remove, when a test sets it
    calls: list[tuple[str, str]] = field(default_factory=list)

    def same_identity(self, a: str, b: str) -> bool:
        return a.lower() == b.lower()

    def apply(self, conn: ServiceIdentityConnection, block_broad: bool) -> Result:
        self.calls.append(("apply", conn.spec.identity))
        status = AzureStatus(credential_name="c") if self.answer.state is State.READY else None
        return Result(self.answer, status, Change("Created", "created c"))

    def remove(self, conn: ServiceIdentityConnection, identity: str) -> Result:
        self.calls.append(("remove", identity))
        if self.removed is not None:
            return self.removed
        return Result(self.remove_answer, None, Change("Deleted", f"deleted on {identity}"))

    def retain(self, conn: ServiceIdentityConnection) -> Result:
        self.calls.append(("retain", conn.spec.identity))
        return Result(ready("kept"), None, Change("Retained", "kept"))


def conn(
    identity: str = "new", linked: str | None = None, policy: str = "Delete", **status: Any
) -> ServiceIdentityConnection:
    body: dict[str, Any] = {
        "apiVersion": "identity.porter.run/v1alpha1",
        "kind": "ServiceIdentityConnection",
        "metadata": {"name": "c", "namespace": "ns", "uid": "u1", "generation": 2},
        "spec": {
            "serviceAccountName": "sa",
            "azure": {"identityName": identity, "resourceGroup": RG},
            "deletionPolicy": policy,
        },
        "status": {"observedGeneration": 1, "provider": "azure", **status},
    }
    if linked is not None:
        body["status"] |= {"identity": f"{RG}/{linked}", "azure": {"credentialName": "c"}}
    return ServiceIdentityConnection.from_body(body)


def lifecycle(link: Recording) -> Lifecycle:
    return Lifecycle(Registry({Provider.AZURE: link}))


def test_identity_change_makes_the_new_link_then_removes_the_old() -> None:
    link = Recording()
    step = lifecycle(link).apply(conn("new", linked="old"), None, None)
    assert link.calls == [("apply", f"{RG}/new"), ("remove", f"{RG}/old")]
    assert step.linked == f"{RG}/new"
    assert step.result.change is not None and step.result.change.reason == "Moved"


def test_identity_change_keeps_the_old_link_until_the_new_one_is_ready() -> None:
    link = Recording(answer=Outcome(State.RECONCILING, Reason.THROTTLED, "slow down"))
    step = lifecycle(link).apply(conn("new", linked="old"), None, None)
    assert link.calls == [("apply", f"{RG}/new")]
    assert step.linked == f"{RG}/old"


def test_old_link_failing_to_go_is_retried_and_stays_recorded() -> None:
    link = Recording(remove_answer=Outcome(State.RECONCILING, Reason.CLOUD_UNAVAILABLE, "503"))
    step = lifecycle(link).apply(conn("new", linked="old"), None, None)
    assert step.result.outcome.retryable and step.linked == f"{RG}/old"


def test_same_identity_in_another_case_is_not_a_move() -> None:
    link = Recording()
    lifecycle(link).apply(conn("READER", linked="reader"), None, None)
    assert link.calls == [("apply", f"{RG}/READER")]


@pytest.mark.parametrize("reason", [Reason.IDENTITY_NOT_FOUND, Reason.BROAD_PERMISSIONS])
def test_a_refusal_removes_what_was_linked_before_and_for_the_spec(reason: Reason) -> None:
    link = Recording(answer=stalled(reason, "no"))
    step = lifecycle(link).apply(conn("new", linked="old"), None, None)
    assert link.calls == [("apply", f"{RG}/new"), ("remove", f"{RG}/new"), ("remove", f"{RG}/old")]
    assert step.linked is None and step.result.status is None and step.result.outcome.reason is reason


def test_a_policy_refusal_never_applies_and_removes_the_link() -> None:
    link = Recording()
    step = lifecycle(link).apply(conn("new", linked="new"), "not allowed by policy: x", None)
    assert link.calls == [("remove", f"{RG}/new")]
    assert step.result.outcome.reason is Reason.NOT_ALLOWED and step.linked is None


def test_a_repeated_refusal_with_nothing_linked_makes_no_cloud_call() -> None:
    link = Recording(answer=stalled(Reason.IDENTITY_NOT_FOUND, "no"))
    repeated = conn(
        "new",
        conditions=[
            {
                "type": "Ready",
                "status": "False",
                "reason": "IdentityNotFound",
                "message": "no",
                "observedGeneration": 2,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    )
    repeated.status.observed_generation = 2
    lifecycle(link).apply(repeated, None, None)
    assert link.calls == [("apply", f"{RG}/new")]


def test_a_cloud_limit_keeps_the_existing_link() -> None:
    link = Recording(answer=stalled(Reason.LIMIT_EXCEEDED, "20"))
    step = lifecycle(link).apply(conn("new", linked="new"), None, None)
    assert link.calls == [("apply", f"{RG}/new")] and step.linked == f"{RG}/new"


def test_another_owner_gets_conflict_and_this_connections_own_other_link_goes() -> None:
    owner = Claim(0, "2026-01-01T00:00:00Z", "u0", "first", f"{RG}/shared")
    link = Recording()
    step = lifecycle(link).apply(conn("mine", linked="mine"), None, owner)
    assert link.calls == [("remove", f"{RG}/mine")]
    assert step.result.outcome.reason is Reason.CONFLICT and "first" in step.result.outcome.message
    shared = Recording()
    lifecycle(shared).apply(conn("shared", linked="shared"), None, owner)
    assert shared.calls == []  # the same credential name on the same identity: it is the owner's link


@pytest.mark.parametrize(
    ("removed", "change"),
    [
        (Result(ready("deleted a-1"), None, Change("Deleted", "deleted a-1")), "deleted a-1"),
        (Result(ready("left a-2"), None, Change("Skipped", "left a-2: it is not this connection's")), None),
        (Result(ready("already gone"), None), None),
        (Result(Outcome(State.RECONCILING, Reason.THROTTLED, "slow"), None), None),  # tried again next run
    ],
)
def test_a_yielding_aws_connection_without_a_recorded_link_removes_one_tagged_as_its_own(
    removed: Result, change: str | None
) -> None:
    """Its status lost the association it made (a stale write): the owner could never link while it stays."""
    owner = Claim(CAN_LINK, "2026-01-01T00:00:00Z", "u0", "first", "role-a")
    link = Recording(moves_in_place=True, removed=removed)
    step = lifecycle(link).apply(conn("mine"), None, owner)
    assert link.calls == [("remove", f"{RG}/mine")]
    assert step.result.outcome.reason is Reason.CONFLICT and step.linked is None
    assert (step.result.change.message if step.result.change else None) == change


def test_a_yielding_connection_without_a_recorded_link_touches_nothing_where_names_are_shared() -> None:
    owner = Claim(CAN_LINK, "2026-01-01T00:00:00Z", "u0", "first", f"{RG}/other")
    link = Recording()  # Azure, GCP: found by name, which the owner's link may share
    step = lifecycle(link).apply(conn("mine"), None, owner)
    assert link.calls == [] and step.result.outcome.reason is Reason.CONFLICT


def test_delete_removes_the_recorded_and_the_spec_identity() -> None:
    link = Recording()
    done = lifecycle(link).delete(conn("new", linked="old"), None)
    assert link.calls == [("remove", f"{RG}/old"), ("remove", f"{RG}/new")]
    assert done.outcome.state is State.READY


def test_delete_leaves_the_owners_link_alone() -> None:
    owner = Claim(CAN_LINK, "2026-01-01T00:00:00Z", "u0", "first", f"{RG}/new")
    link = Recording()
    lifecycle(link).delete(conn("new"), owner)
    assert link.calls == []


def test_retain_marks_instead_of_removing() -> None:
    link = Recording()
    lifecycle(link).delete(conn("new", linked="new", policy="Retain"), None)
    assert link.calls == [("retain", f"{RG}/new")]


def test_an_unconfigured_cloud_keeps_the_finalizer_with_the_way_out() -> None:
    done = Lifecycle(Registry()).delete(conn("new", linked="new"), None)
    assert done.outcome.state is State.STALLED and done.outcome.reason is Reason.NOT_CONFIGURED
    assert "deletionPolicy: Retain" in done.outcome.message
    kept = Lifecycle(Registry()).delete(conn("new", linked="new", policy="Retain"), None)
    assert kept.outcome.state is State.READY


def test_a_failed_removal_on_delete_keeps_the_finalizer() -> None:
    link = Recording(remove_answer=Outcome(State.RECONCILING, Reason.THROTTLED, "slow"))
    assert lifecycle(link).delete(conn("new", linked="new"), None).outcome.state is State.RECONCILING


def test_two_holders_of_one_service_account_the_newer_yields() -> None:
    from porter_identity.reconcile import claims

    older = Claim(claims.HOLDS, "2026-01-01T00:00:00Z", "u1", "first")
    newer = Claim(claims.HOLDS, "2026-01-01T00:00:01Z", "u2", "second")
    waiting = Claim(claims.CAN_LINK, "2026-01-01T00:00:02Z", "u3", "third")
    key = ("ns", "sa", "azure")
    assert claims.double_bound({key: [newer, older, waiting]}) == [(key, newer)]
    assert claims.double_bound({key: [older, waiting]}) == []


def test_a_refusal_shows_even_where_another_connection_owns_and_leaves_its_link() -> None:
    owner = Claim(0, "2026-01-01T00:00:00Z", "u0", "first", f"{RG}/new")
    link = Recording()
    step = lifecycle(link).apply(conn("new"), "not allowed by policy: x", owner)
    assert step.result.outcome.reason is Reason.NOT_ALLOWED
    assert link.calls == []  # the credential on rg/new is the owner's
