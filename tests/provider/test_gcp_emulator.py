"""The IAM fake of the GCP emulator behaves as the IAM API reference says, seen through the real IAMClient."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud.iam_admin_v1 import IAMClient
from google.iam.v1 import policy_pb2

from porter_dev.gcp import WORKLOAD_IDENTITY_USER, GcpEmulator, workload_identity_member


@pytest.fixture(scope="module")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpEmulator]:
    """This module's own emulator (it shadows any session `gcp` fixture), so its state stays private."""
    emulator = GcpEmulator(logdir=tmp_path_factory.mktemp("gcp") / "logs").start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def iam(gcp: GcpEmulator) -> Iterator[IAMClient]:
    client = gcp.client()
    yield client
    client.transport.close()


@pytest.fixture(autouse=True)
def clean_faults(gcp: GcpEmulator) -> None:
    gcp.reset()


@pytest.fixture
def project() -> str:
    return f"proj-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sa(gcp: GcpEmulator, project: str) -> str:
    """Resource name of a freshly seeded customer service account."""
    return f"projects/{project}/serviceAccounts/{gcp.seed_service_account(project, 'customer-app')}"


def _get(iam: IAMClient, resource: str, version: int = 3) -> Any:
    return iam.get_iam_policy(request={"resource": resource, "options": {"requested_policy_version": version}})


def _set(iam: IAMClient, resource: str, policy: Any) -> Any:
    return iam.set_iam_policy(request={"resource": resource, "policy": policy})


def _grant(policy: Any, role: str, member: str) -> None:
    for binding in policy.bindings:
        if binding.role == role and not binding.HasField("condition"):
            if member not in binding.members:
                binding.members.append(member)
            return
    policy.bindings.add(role=role, members=[member])


def _members(policy: Any, role: str) -> set[str]:
    return {m for b in policy.bindings if b.role == role for m in b.members}


def test_create_then_get_by_email_unique_id_and_wildcard(iam: IAMClient, project: str) -> None:
    created = iam.create_service_account(
        request={"name": f"projects/{project}", "account_id": "porter-wi", "service_account": {"display_name": "WI"}}
    )
    assert created.email == f"porter-wi@{project}.iam.gserviceaccount.com"
    assert created.name == f"projects/{project}/serviceAccounts/{created.email}"
    assert created.project_id == project and created.display_name == "WI"
    assert len(created.unique_id) == 21 and created.unique_id.isdigit()
    for name in (
        created.name,
        f"projects/{project}/serviceAccounts/{created.unique_id}",
        f"projects/-/serviceAccounts/{created.email}",
    ):
        assert iam.get_service_account(name=name).unique_id == created.unique_id


def test_seeded_account_is_visible_to_the_client(gcp: GcpEmulator, iam: IAMClient, project: str) -> None:
    email = gcp.seed_service_account(project, "seeded-acct", display_name="Customer")
    got = iam.get_service_account(name=f"projects/{project}/serviceAccounts/{email}")
    assert (got.email, got.display_name) == (email, "Customer")


def test_second_create_is_already_exists(iam: IAMClient, project: str) -> None:
    request = {"name": f"projects/{project}", "account_id": "dup-account"}
    iam.create_service_account(request=request)
    with pytest.raises(exceptions.AlreadyExists, match="already exists within project"):
        iam.create_service_account(request=request)


@pytest.mark.parametrize("account_id", ["short", "Upper-case", "1starts-with-digit", "ends-with-hyphen-", "x" * 31])
def test_bad_account_id_is_invalid_argument(iam: IAMClient, project: str, account_id: str) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        iam.create_service_account(request={"name": f"projects/{project}", "account_id": account_id})


def test_missing_service_account_is_not_found(iam: IAMClient, project: str) -> None:
    missing = f"projects/{project}/serviceAccounts/ghost-acct@{project}.iam.gserviceaccount.com"
    with pytest.raises(exceptions.NotFound):
        iam.get_service_account(name=missing)
    with pytest.raises(exceptions.NotFound):
        _get(iam, missing)
    with pytest.raises(exceptions.NotFound):
        _set(iam, missing, policy_pb2.Policy())


def test_missing_service_account_through_wildcard_is_permission_denied(iam: IAMClient, project: str) -> None:
    with pytest.raises(exceptions.PermissionDenied, match="or it may not exist"):
        iam.get_service_account(name=f"projects/-/serviceAccounts/ghost-acct@{project}.iam.gserviceaccount.com")


def test_policy_round_trip_with_workload_identity_member(iam: IAMClient, sa: str, project: str) -> None:
    member = workload_identity_member(project, "shop", "checkout")
    assert member == f"serviceAccount:{project}.svc.id.goog[shop/checkout]"
    policy = _get(iam, sa)
    assert list(policy.bindings) == []
    _grant(policy, WORKLOAD_IDENTITY_USER, member)
    written = _set(iam, sa, policy)
    read = _get(iam, sa)
    assert _members(read, WORKLOAD_IDENTITY_USER) == {member}
    assert read.etag == written.etag
    assert read.version == 1


def test_etag_changes_on_every_write(iam: IAMClient, sa: str, project: str) -> None:
    etags = [_get(iam, sa).etag]
    for _ in range(3):  # the same content each time: the etag still moves
        policy = _get(iam, sa)
        _grant(policy, WORKLOAD_IDENTITY_USER, workload_identity_member(project, "ns", "ksa"))
        etags.append(_set(iam, sa, policy).etag)
        assert _get(iam, sa).etag == etags[-1]
    assert len(set(etags)) == len(etags)


def test_stale_etag_is_aborted(iam: IAMClient, sa: str, project: str) -> None:
    stale = _get(iam, sa)
    fresh = _get(iam, sa)
    _grant(fresh, WORKLOAD_IDENTITY_USER, workload_identity_member(project, "a", "one"))
    _set(iam, sa, fresh)
    _grant(stale, WORKLOAD_IDENTITY_USER, workload_identity_member(project, "b", "two"))
    with pytest.raises(exceptions.Aborted, match="concurrent policy changes"):
        _set(iam, sa, stale)
    assert _members(_get(iam, sa), WORKLOAD_IDENTITY_USER) == {workload_identity_member(project, "a", "one")}


def test_empty_etag_overwrites(iam: IAMClient, sa: str, project: str) -> None:
    first = _get(iam, sa)
    _grant(first, WORKLOAD_IDENTITY_USER, workload_identity_member(project, "a", "one"))
    _set(iam, sa, first)
    blind = policy_pb2.Policy()  # no etag: the real service overwrites whatever is there
    _grant(blind, "roles/iam.serviceAccountTokenCreator", "user:ops@example.com")
    _set(iam, sa, blind)
    read = _get(iam, sa)
    assert _members(read, WORKLOAD_IDENTITY_USER) == set()
    assert _members(read, "roles/iam.serviceAccountTokenCreator") == {"user:ops@example.com"}


def test_concurrent_read_modify_write_aborts_one_and_retry_keeps_both(gcp: GcpEmulator, sa: str, project: str) -> None:
    clients = [gcp.client(), gcp.client()]
    members = [workload_identity_member(project, "team-a", "app"), workload_identity_member(project, "team-b", "app")]
    both_read = threading.Barrier(2, timeout=30)
    aborted: list[int] = []
    errors: list[BaseException] = []

    def add(index: int) -> None:
        client, first = clients[index], True
        try:
            for _ in range(10):
                policy = _get(client, sa)
                if first:
                    both_read.wait()  # both hold the same etag before either writes
                    first = False
                _grant(policy, WORKLOAD_IDENTITY_USER, members[index])
                try:
                    _set(client, sa, policy)
                    return
                except exceptions.Aborted:
                    aborted.append(index)
            raise AssertionError("never succeeded")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for client in clients:
        client.transport.close()
    assert errors == []
    assert len(aborted) == 1
    assert _members(_get(gcp.client(), sa), WORKLOAD_IDENTITY_USER) == set(members)


def _conditional(project: str, version: int) -> Any:
    policy = policy_pb2.Policy(version=version)
    binding = policy.bindings.add(role=WORKLOAD_IDENTITY_USER, members=[workload_identity_member(project, "ns", "k")])
    binding.condition.title = "until-2030"
    binding.condition.expression = 'request.time < timestamp("2030-01-01T00:00:00Z")'
    return policy


@pytest.mark.parametrize("version", [0, 1])
def test_condition_without_version_3_is_invalid(iam: IAMClient, sa: str, project: str, version: int) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="version 3"):
        _set(iam, sa, _conditional(project, version))
    assert list(_get(iam, sa).bindings) == []


def test_condition_with_version_3_and_version_1_view(iam: IAMClient, sa: str, project: str) -> None:
    written = _set(iam, sa, _conditional(project, 3))
    assert written.version == 3
    full = _get(iam, sa, version=3)
    assert full.bindings[0].condition.title == "until-2030"
    old_view = _get(iam, sa, version=1)
    assert old_view.version == 1
    assert old_view.bindings[0].role.startswith(f"{WORKLOAD_IDENTITY_USER}_withcond_")
    assert not old_view.bindings[0].HasField("condition")
    downgrade = policy_pb2.Policy(version=1, etag=full.etag)
    downgrade.bindings.add(role="roles/iam.serviceAccountUser", members=["user:dev@example.com"])
    with pytest.raises(exceptions.InvalidArgument, match=r"cannot be less than the existing policy version \(3\)"):
        _set(iam, sa, downgrade)


@pytest.mark.parametrize(
    "member",
    [
        "alice@example.com",
        "robot:thing@example.com",
        "user:not-an-email",
        "serviceAccount:proj-123456.svc.id.goog[missing-slash]",
        "serviceAccount:proj-123456.svc.id.goog[Bad_NS/ksa]",
        "domain:",
    ],
)
def test_malformed_member_is_invalid(iam: IAMClient, sa: str, member: str) -> None:
    policy = _get(iam, sa)
    policy.bindings.add(role=WORKLOAD_IDENTITY_USER, members=[member])
    with pytest.raises(exceptions.InvalidArgument):
        _set(iam, sa, policy)


def test_well_formed_member_kinds_are_accepted(iam: IAMClient, sa: str, project: str) -> None:
    accepted = {
        "user:dev@example.com",
        "group:sre@example.com",
        "domain:example.com",
        f"serviceAccount:ci@{project}.iam.gserviceaccount.com",
        workload_identity_member(project, "default", "web"),
    }
    policy = _get(iam, sa)
    policy.bindings.add(role="roles/iam.serviceAccountUser", members=sorted(accepted))
    assert _members(_set(iam, sa, policy), "roles/iam.serviceAccountUser") == accepted


def test_at_most_1500_members(iam: IAMClient, sa: str) -> None:
    policy = _get(iam, sa)
    policy.bindings.add(role="roles/iam.serviceAccountUser", members=[f"user:u{i}@example.com" for i in range(1500)])
    written = _set(iam, sa, policy)
    assert len(written.bindings[0].members) == 1500
    written.bindings[0].members.append("user:one-too-many@example.com")
    with pytest.raises(exceptions.InvalidArgument, match=r"\(1,501\) is larger than the maximum allowed size 1,500"):
        _set(iam, sa, written)


def test_injected_throttle_is_resource_exhausted(gcp: GcpEmulator, iam: IAMClient, sa: str, project: str) -> None:
    gcp.faults(rules=[{"fault": "throttle", "service": "iam", "operation": "SetIamPolicy", "count": 1}])
    policy = _get(iam, sa)
    _grant(policy, WORKLOAD_IDENTITY_USER, workload_identity_member(project, "ns", "ksa"))
    with pytest.raises(exceptions.ResourceExhausted):
        _set(iam, sa, policy)
    assert _members(_get(iam, sa), WORKLOAD_IDENTITY_USER) == set()  # the throttled write did not land
    _set(iam, sa, policy)
    assert gcp.calls()["iam:SetIamPolicy"] == 2
    assert gcp.injected() == {"iam:SetIamPolicy:throttle": 1}


def test_unavailable_is_retried_by_the_client_on_reads(gcp: GcpEmulator, iam: IAMClient, sa: str) -> None:
    gcp.faults(rules=[{"fault": "unavailable", "operation": "GetServiceAccount", "count": 2}])
    assert iam.get_service_account(name=sa).name == sa
    assert gcp.calls()["iam:GetServiceAccount"] == 3


def test_unavailable_surfaces_on_writes(gcp: GcpEmulator, iam: IAMClient, sa: str) -> None:
    gcp.faults(rules=[{"fault": "unavailable", "operation": "SetIamPolicy", "count": 1}])
    with pytest.raises(exceptions.ServiceUnavailable):
        _set(iam, sa, _get(iam, sa))


def test_latency_is_added_to_each_call(gcp: GcpEmulator, iam: IAMClient, sa: str) -> None:
    gcp.faults(latencyMs=300)
    started = time.monotonic()
    iam.get_service_account(name=sa)
    assert time.monotonic() - started >= 0.3


def test_paged_list(gcp: GcpEmulator, iam: IAMClient, project: str) -> None:
    made = {gcp.seed_service_account(project, f"paged-acct-{i}") for i in range(7)}
    gcp.seed_service_account(f"other-{project}", "paged-acct-x")  # another project stays out of the list
    first = iam.list_service_accounts(request={"name": f"projects/{project}", "page_size": 3})
    pages = list(first.pages)
    assert [len(p.accounts) for p in pages] == [3, 3, 1]
    assert pages[-1].next_page_token == ""
    assert {a.email for p in pages for a in p.accounts} == made
    assert gcp.calls()["iam:ListServiceAccounts"] == 3
    assert {a.email for a in iam.list_service_accounts(name=f"projects/{project}")} == made


def test_bad_page_token_is_invalid(iam: IAMClient, project: str) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        iam.list_service_accounts(request={"name": f"projects/{project}", "page_token": "not-a-token"})
