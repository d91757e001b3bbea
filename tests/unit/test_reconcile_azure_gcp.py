"""Pure decisions for Azure credentials, GCP bindings and ServiceAccount annotations."""

from __future__ import annotations

import re
import threading
import time

import pytest
from google.iam.v1 import policy_pb2

from porter_identity.clouds.azure import plan as azure
from porter_identity.clouds.gcp import plan as gcp
from porter_identity.errors import Busy
from porter_identity.model import WORKLOAD_IDENTITY_USER, Credential, project_of
from porter_identity.providers.locks import KeyedLocks
from porter_identity.reconcile import annotation_patch, outcome
from porter_identity.reconcile.outcome import Reason, State

ISSUER = "https://oidc.example/cluster"
AZURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")


@pytest.mark.parametrize(
    ("namespace", "service_account"),
    [
        ("shop", "checkout"),
        ("a", "b"),
        ("x" * 63, "y" * 253),
        ("team.one", "sa.with.dots"),
        ("ns", "a-b"),
    ],
)
def test_credential_names_are_always_valid_for_azure(namespace: str, service_account: str) -> None:
    name = azure.credential_name(ISSUER, namespace, service_account)
    assert AZURE_NAME.fullmatch(name), name
    assert name == azure.credential_name(ISSUER, namespace, service_account)  # deterministic


def test_credential_names_are_unique_where_the_readable_part_collides() -> None:
    assert azure.credential_name(ISSUER, "a-b", "c") != azure.credential_name(ISSUER, "a", "b-c")
    long_ns = "n" * 63
    assert azure.credential_name(ISSUER, long_ns, "s" * 200 + "1") != azure.credential_name(
        ISSUER, long_ns, "s" * 200 + "2"
    )


def test_desired_credential_trusts_the_issuer_for_exactly_this_service_account() -> None:
    wanted = azure.desired("https://issuer.example", "shop", "api")
    assert wanted.subject == "system:serviceaccount:shop:api"
    assert wanted.audiences == ("api://AzureADTokenExchange",)
    assert wanted.issuer == "https://issuer.example"


def test_azure_plan() -> None:
    wanted = azure.desired("https://issuer", "ns", "sa")
    assert azure.plan_apply(wanted, None) is azure.Action.CREATE
    assert azure.plan_apply(wanted, wanted) is azure.Action.KEEP
    drifted = Credential(wanted.name, "https://other", wanted.subject, wanted.audiences)
    assert azure.plan_apply(wanted, drifted) is azure.Action.UPDATE
    wrong_audience = Credential(wanted.name, wanted.issuer, wanted.subject, ("api://else",))
    assert azure.plan_apply(wanted, wrong_audience) is azure.Action.UPDATE


def _policy() -> policy_pb2.Policy:
    policy = policy_pb2.Policy(version=3, etag=b"etag-1")
    policy.bindings.add(role=WORKLOAD_IDENTITY_USER, members=["serviceAccount:proj.svc.id.goog[other/sa]"])
    conditional = policy.bindings.add(role=WORKLOAD_IDENTITY_USER, members=["user:temp@example.com"])
    conditional.condition.expression = "request.time < timestamp('2030-01-01T00:00:00Z')"
    conditional.condition.title = "until 2030"
    policy.bindings.add(role="roles/viewer", members=["user:a@example.com"])
    return policy


def test_gcp_member_is_added_to_the_unconditional_binding_only_and_everything_else_kept() -> None:
    who = gcp.member("proj.svc.id.goog", "shop", "api")
    assert who == "serviceAccount:proj.svc.id.goog[shop/api]"
    before = _policy()
    added = gcp.with_member(before, who)
    assert added is not None
    assert list(added.bindings[0].members) == ["serviceAccount:proj.svc.id.goog[other/sa]", who]
    assert added.bindings[1] == before.bindings[1]  # conditional binding untouched, condition kept
    assert added.bindings[2] == before.bindings[2]
    assert (added.version, added.etag) == (3, b"etag-1")  # the etag read is the etag written
    assert before == _policy()  # input not mutated
    assert gcp.with_member(added, who) is None


def test_gcp_member_creates_the_binding_when_absent_and_drops_it_when_emptied() -> None:
    who = gcp.member("proj.svc.id.goog", "shop", "api")
    bare = policy_pb2.Policy(etag=b"e")
    added = gcp.with_member(bare, who)
    assert added is not None and [(b.role, list(b.members)) for b in added.bindings] == [
        (WORKLOAD_IDENTITY_USER, [who])
    ]
    removed = gcp.without_member(added, who)
    assert removed is not None and list(removed.bindings) == []
    assert gcp.without_member(bare, who) is None


def test_gcp_member_removal_keeps_other_members_and_conditional_bindings() -> None:
    who = gcp.member("proj.svc.id.goog", "shop", "api")
    added = gcp.with_member(_policy(), who)
    assert added is not None
    removed = gcp.without_member(added, who)
    assert removed == _policy()


def test_annotation_patch_only_differences_and_removal_only_of_our_values() -> None:
    current = {"a": "1", "b": "2"}
    assert annotation_patch.patch(current, {"a": "1"}) is None
    assert annotation_patch.patch(current, {"a": "9", "c": "3"}) == {"a": "9", "c": "3"}
    assert annotation_patch.removal(current, {"a": "1", "b": "someone-else"}) == {"a": None}
    assert annotation_patch.removal(current, {"z": "1"}) is None


def test_keyed_locks_serialise_one_key_and_not_others() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    def hold(key: str, tag: str, seconds: float) -> None:
        with locks.hold(key):
            order.append(f"{tag}+")
            time.sleep(seconds)
            order.append(f"{tag}-")

    first = threading.Thread(target=hold, args=("id-1", "a", 0.2))
    first.start()
    time.sleep(0.05)
    same = threading.Thread(target=hold, args=("id-1", "b", 0.0))
    other = threading.Thread(target=hold, args=("id-2", "c", 0.0))
    same.start()
    other.start()
    other.join()
    assert order[:3] == ["a+", "c+", "c-"]  # another key is not blocked by "a"
    first.join()
    same.join()
    assert order[3:] == ["a-", "b+", "b-"]  # the same key waits its turn
    assert len(locks) == 0  # nothing kept once idle


def test_a_writer_gives_up_after_its_wait_with_busy_and_the_lock_is_left_clean() -> None:
    locks = KeyedLocks(wait_seconds=0.05)
    inside = threading.Event()
    leave = threading.Event()

    def holder() -> None:
        with locks.hold("id-1"):
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    inside.wait(5)
    with pytest.raises(Busy, match="another write to id-1 is in flight"), locks.hold("id-1"):
        pytest.fail("must not get in while another write holds the key")
    with locks.hold("id-2"):
        pass  # other keys are free
    leave.set()
    thread.join()
    with locks.hold("id-1"):
        pass  # the give-up left no stale user count behind
    assert len(locks) == 0


def test_busy_is_progressing_not_a_failure() -> None:
    found = outcome.from_error(Busy("another write to x is in flight", code="Busy"), what="writing the credential")
    assert (found.state, found.reason, found.retryable) == (State.RECONCILING, Reason.PROGRESSING, True)
    assert "waiting while writing the credential" in found.message


def test_project_of_service_account_email() -> None:
    assert project_of("a@my-proj.iam.gserviceaccount.com") == "my-proj"
    assert project_of("123-compute@developer.gserviceaccount.com") is None


def test_oldest_claim_owns_the_service_account() -> None:
    from porter_identity.reconcile import claims

    older = claims.Claim(1, "2026-01-01T00:00:00Z", "uid-b", "first")
    newer = claims.Claim(1, "2026-01-02T00:00:00Z", "uid-a", "second")
    tie = claims.Claim(1, "2026-01-01T00:00:00Z", "uid-c", "third")
    assert claims.owner([newer, older]) == older
    assert claims.owner([tie, older]) == older  # same second: uid breaks the tie, the same way every time
    bound_same_second = claims.Claim(0, "2026-01-01T00:00:00Z", "uid-z", "bound")
    assert claims.owner([older, bound_same_second]) == bound_same_second  # holding the link wins
    assert claims.owner([]) is None
    refused = claims.Claim(claims.NONE, "2025-01-01T00:00:00Z", "uid-0", "refused")
    assert claims.owner([refused, newer]) == newer  # a connection that links nothing owns nothing
    assert claims.owner([refused]) is None
    assert claims.waiting([refused, newer, older], gone="uid-b") == [newer]  # the next claimant to wake
