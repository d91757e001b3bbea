"""GcpProvider.update against the emulator: links to one account that arrive together share one read and one write."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from porter_dev.gcp import WORKLOAD_IDENTITY_USER, GcpEmulator, workload_identity_member
from porter_identity.clouds.gcp import plan as decide
from porter_identity.clouds.gcp.client import GcpProvider
from porter_identity.errors import Invalid, NotFound


@pytest.fixture(scope="module")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpEmulator]:
    """This module's own emulator, so that its call counts are this module's alone."""
    emulator = GcpEmulator(logdir=tmp_path_factory.mktemp("gcp") / "logs").start()
    yield emulator
    emulator.stop()


@pytest.fixture
def project() -> str:
    return f"proj-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def email(gcp: GcpEmulator, project: str) -> str:
    return gcp.seed_service_account(project, "customer-app")


@pytest.fixture
def provider(gcp: GcpEmulator) -> GcpProvider:
    gcp.reset()
    return GcpProvider.connect(gcp.endpoint)


def _members(provider: GcpProvider, email: str) -> set[str]:
    policy = provider.policy(email)
    return {m for b in policy.bindings if b.role == WORKLOAD_IDENTITY_USER for m in b.members}


def _add(provider: GcpProvider, email: str, who: str) -> bool:
    return provider.update(email, lambda policy: decide.with_member(policy, who))[1]


def test_twenty_links_at_once_to_one_account_all_land_in_a_few_writes(
    gcp: GcpEmulator, provider: GcpProvider, email: str, project: str
) -> None:
    gcp.faults(latencyMs=50)
    who = [workload_identity_member(project, f"team-{i}", "app") for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        wrote = list(pool.map(lambda w: _add(provider, email, w), who))
    assert wrote == [True] * 20
    calls = gcp.calls()
    # One change alone would be 20 reads and 20 writes in series; batched, a handful, and no etag was stale.
    assert calls["iam:SetIamPolicy"] <= 5
    assert calls["iam:GetIamPolicy"] == calls["iam:SetIamPolicy"]
    gcp.faults(latencyMs=0)
    assert _members(provider, email) == set(who)
    assert len(provider.writes) == 0


def test_adds_and_removes_in_one_batch_apply_in_order_and_report_their_own_write(
    gcp: GcpEmulator, provider: GcpProvider, email: str, project: str
) -> None:
    kept, dropped, present = (workload_identity_member(project, n, "app") for n in ("kept", "dropped", "present"))
    assert _add(provider, email, present)
    gcp.faults(latencyMs=200)
    started = threading.Event()

    def first(policy: decide.policy_pb2.Policy) -> decide.policy_pb2.Policy | None:
        started.set()
        return decide.with_member(policy, kept)

    with ThreadPoolExecutor(4) as pool:
        leader = pool.submit(provider.update, email, first)
        assert started.wait(10)
        again = pool.submit(_add, provider, email, present)  # already there: no write for it
        add = pool.submit(_add, provider, email, dropped)
        remove = pool.submit(lambda: provider.update(email, lambda p: decide.without_member(p, dropped))[1])
        assert leader.result(10)[1] is True
        assert (again.result(10), add.result(10)) == (False, True)
        removed = remove.result(10)  # True when it came after the add, in its batch or a later one
    gcp.faults(latencyMs=0)
    members = _members(provider, email)
    assert {kept, present} <= members
    assert (dropped in members) is not removed


def test_a_change_the_policy_refuses_fails_alone_and_the_rest_of_its_batch_lands(
    gcp: GcpEmulator, provider: GcpProvider, email: str, project: str
) -> None:
    good = [workload_identity_member(project, f"good-{i}", "app") for i in range(3)]
    bad = "serviceAccount:proj-123456.svc.id.goog[Bad_NS/ksa]"
    gcp.faults(latencyMs=200)
    started = threading.Event()

    def leader_change(policy: decide.policy_pb2.Policy) -> decide.policy_pb2.Policy | None:
        started.set()
        return decide.with_member(policy, good[0])

    with ThreadPoolExecutor(4) as pool:
        leader = pool.submit(provider.update, email, leader_change)
        assert started.wait(10)
        queued = [pool.submit(_add, provider, email, w) for w in (good[1], bad, good[2])]
        assert leader.result(10)[1] is True
        assert queued[0].result(10) is True and queued[2].result(10) is True
        with pytest.raises(Invalid):
            queued[1].result(10)
    gcp.faults(latencyMs=0)
    assert _members(provider, email) == set(good)


def test_a_missing_account_answers_every_queued_change_not_found(gcp: GcpEmulator, provider: GcpProvider) -> None:
    email = f"gone-{uuid.uuid4().hex[:6]}@proj-missing.iam.gserviceaccount.com"
    gcp.faults(latencyMs=100)
    with ThreadPoolExecutor(5) as pool:
        futures = [
            pool.submit(_add, provider, email, workload_identity_member("proj-missing", f"ns-{i}", "app"))
            for i in range(5)
        ]
        for future in futures:
            with pytest.raises(NotFound):
                future.result(10)
    assert gcp.calls().get("iam:SetIamPolicy", 0) == 0
    assert len(provider.writes) == 0
