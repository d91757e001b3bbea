"""The AWS adapter against the AWS emulator: lookups, the association lifecycle, typed errors, throttling, the fence."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from porter_dev.processes import AWS_REGION, AwsEmulator
from porter_identity.clouds.aws.client import AwsProvider
from porter_identity.errors import Conflict, Invalid, NotFound, Throttled, Transient
from porter_identity.providers.fence import FENCE, Fenced


@pytest.fixture
def provider(aws: AwsEmulator, eks_cluster: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProvider]:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    aws.reset()
    yield AwsProvider(AWS_REGION, eks_cluster, max_attempts=1)
    aws.reset()


@pytest.fixture
def ns() -> str:
    return f"ns-{uuid.uuid4().hex[:8]}"


def test_get_role_by_name_and_by_arn_with_path(provider: AwsProvider, make_role: Any) -> None:
    arn = make_role(path="/team/")
    name = arn.rsplit("/", 1)[-1]
    assert provider.get_role(name).arn == arn
    role = provider.get_role(arn)
    assert role.arn == arn and role.name == name
    assert role.trust_policy["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}


def test_missing_role_is_not_found(provider: AwsProvider) -> None:
    with pytest.raises(NotFound) as err:
        provider.get_role("no-such-role")
    assert err.value.code == "NoSuchEntity"


def test_association_lifecycle(provider: AwsProvider, make_role: Any, ns: str) -> None:
    first, second = make_role(), make_role()
    assert provider.find_association(ns, "sa") is None
    created = provider.create_association(ns, "sa", first, {"porter.run/managed": "true"})
    assert created.association_id.startswith("a-")
    assert provider.find_association(ns, "sa") == created
    updated = provider.update_association(created.association_id, second)
    assert updated.role_arn == second and updated.association_id == created.association_id
    assert provider.delete_association(created.association_id) is True
    assert provider.delete_association(created.association_id) is False  # already gone is success
    assert provider.describe_association(created.association_id) is None


def test_second_association_for_the_same_service_account_is_a_conflict(
    provider: AwsProvider, make_role: Any, ns: str
) -> None:
    provider.create_association(ns, "sa", make_role(), {})
    with pytest.raises(Conflict) as err:
        provider.create_association(ns, "sa", make_role(), {})
    assert err.value.code == "ResourceInUseException"


def test_invalid_role_arn_is_invalid(provider: AwsProvider, ns: str) -> None:
    with pytest.raises(Invalid) as err:
        provider.create_association(ns, "sa", "not-an-arn", {})
    assert err.value.code == "InvalidParameterException"


def test_missing_cluster_is_not_found(aws: AwsEmulator, make_role: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    other = AwsProvider(AWS_REGION, "no-such-cluster", max_attempts=1)
    with pytest.raises(NotFound) as err:
        other.create_association("ns", "sa", make_role(), {})
    assert "No cluster found" in err.value.message


def test_injected_throttling_is_typed_and_botocore_retries_it(
    provider: AwsProvider, aws: AwsEmulator, make_role: Any, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = make_role()
    aws.faults(rules=[{"fault": "throttle", "service": "eks", "operation": "CreatePodIdentityAssociation", "count": 1}])
    with pytest.raises(Throttled):
        provider.create_association(ns, "sa", role, {})
    assert provider.find_association(ns, "sa") is None

    retrying = AwsProvider(AWS_REGION, provider.cluster_name, max_attempts=3)
    aws.reset()
    aws.faults(rules=[{"fault": "throttle", "service": "eks", "operation": "CreatePodIdentityAssociation", "count": 2}])
    created = retrying.create_association(ns, "sa", role, {})
    assert created.role_arn == role
    assert aws.calls()["eks:CreatePodIdentityAssociation"] == 3  # two throttled, one served


def test_injected_5xx_is_transient(provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.faults(rules=[{"fault": "unavailable", "service": "iam", "count": 1}])
    with pytest.raises(Transient):
        provider.get_role("anything")


def test_list_associations_reads_the_whole_cluster_one_call_per_page_of_100(
    provider: AwsProvider, aws: AwsEmulator, make_role: Any
) -> None:
    """The drift sweep's bulk read: its cost is the number of pages, whatever the number of associations."""
    cluster = f"paging-{uuid.uuid4().hex[:6]}"  # its own cluster: the session operator's stays untouched
    aws.client("eks").create_cluster(
        name=cluster, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": []}
    )
    paged = AwsProvider(AWS_REGION, cluster, max_attempts=1)
    role = make_role()
    made = {paged.create_association("ns", f"sa-{i}", role, {}).association_id for i in range(201)}
    aws.reset()
    listed = paged.list_associations()
    assert {a.association_id for a in listed} == made and len(listed) == 201
    assert {a.service_account for a in listed} == {f"sa-{i}" for i in range(201)}
    assert aws.calls() == {"eks:ListPodIdentityAssociations": 3}


# --- the fence: a write refused after a pacing wait and at the socket is never sent ---

CREATE = "eks:CreatePodIdentityAssociation"


@pytest.fixture
def fence() -> Iterator[None]:
    """The process-wide fence, opened again after the test."""
    yield
    FENCE.extend(math.inf)


def _close_the_fence(**_: Any) -> None:
    FENCE.close()


def test_a_fence_that_closes_during_a_pacing_wait_refuses_the_write(
    provider: AwsProvider, aws: AwsEmulator, make_role: Any, fence: None
) -> None:
    # A pacing hook registered after the fence's, as a fixed pacer is: the fence must still be checked after it.
    provider.eks.meta.events.register("before-send", _close_the_fence)
    with pytest.raises(Fenced, match="CreatePodIdentityAssociation not sent"):
        provider.create_association(f"ns-{uuid.uuid4().hex[:8]}", "sa", make_role(), {})
    assert aws.calls().get(CREATE, 0) == 0


def test_a_thread_that_wakes_after_the_deadline_between_hook_and_socket_sends_nothing(
    provider: AwsProvider, aws: AwsEmulator, make_role: Any, monkeypatch: pytest.MonkeyPatch, fence: None
) -> None:
    """SIGSTOP or a long pause after botocore's last hook: the socket write checks the fence again."""
    session = provider.eks._endpoint.http_session
    send = session.send

    def frozen_then_woken(request: Any) -> Any:
        FENCE.close()  # the renewal deadline passed while this thread was stopped here
        return send(request)

    monkeypatch.setattr(session, "send", frozen_then_woken)
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Fenced, match="CreatePodIdentityAssociation not sent"):
        provider.create_association(ns, "sa", make_role(), {})
    assert aws.calls().get(CREATE, 0) == 0
    # The mark ends with the call: a read (and any other HTTP on this thread) is not refused afterwards.
    monkeypatch.setattr(session, "send", send)
    assert provider.find_association(ns, "sa") is None
    assert aws.calls().get("eks:ListPodIdentityAssociations", 0) == 1


def test_an_open_fence_lets_the_write_through(
    provider: AwsProvider, aws: AwsEmulator, make_role: Any, fence: None
) -> None:
    FENCE.extend(math.inf)
    created = provider.create_association(f"ns-{uuid.uuid4().hex[:8]}", "sa", make_role(), {})
    assert created.association_id.startswith("a-")
    assert aws.calls().get(CREATE, 0) == 1
