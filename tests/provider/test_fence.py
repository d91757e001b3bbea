"""The fence against the AWS emulator: a write is refused after a pacing wait and at the socket, never sent."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from porter_dev.processes import AWS_REGION, AwsEmulator
from porter_identity.providers.aws import AwsProvider
from porter_identity.providers.fence import FENCE, Fenced

CREATE = "eks:CreatePodIdentityAssociation"


@pytest.fixture
def provider(aws: AwsEmulator, eks_cluster: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProvider]:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    aws.reset()
    yield AwsProvider(AWS_REGION, eks_cluster, max_attempts=1)
    FENCE.extend(math.inf)
    aws.reset()


def _close_the_fence(**_: Any) -> None:
    FENCE.close()


def test_a_fence_that_closes_during_a_pacing_wait_refuses_the_write(
    provider: AwsProvider, aws: AwsEmulator, make_role: Any
) -> None:
    # A pacing hook registered after the fence's, as a fixed pacer is: the fence must still be checked after it.
    provider.eks.meta.events.register("before-send", _close_the_fence)
    with pytest.raises(Fenced, match="CreatePodIdentityAssociation not sent"):
        provider.create_association(f"ns-{uuid.uuid4().hex[:8]}", "sa", make_role(), {})
    assert aws.calls().get(CREATE, 0) == 0


def test_a_thread_that_wakes_after_the_deadline_between_hook_and_socket_sends_nothing(
    provider: AwsProvider, aws: AwsEmulator, make_role: Any, monkeypatch: pytest.MonkeyPatch
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


def test_an_open_fence_lets_the_write_through(provider: AwsProvider, aws: AwsEmulator, make_role: Any) -> None:
    FENCE.extend(math.inf)
    created = provider.create_association(f"ns-{uuid.uuid4().hex[:8]}", "sa", make_role(), {})
    assert created.association_id.startswith("a-")
    assert aws.calls().get(CREATE, 0) == 1
