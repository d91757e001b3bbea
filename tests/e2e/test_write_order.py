"""Every ordering of another write against a run's status write, on each cloud: no stale result ever lands.

The runner runs in this process, with the operator's own services, against the real API server (with the chart's
RBAC) and the emulators; the session operator is stopped meanwhile. A client of the runner's own kind makes the
competing write at the moment an ordering needs: before the run reads, between its read and its write, or after
its write with a body read before it. The door runs nothing it is asked for later, so each run here is
exactly one call of `Runner.run`."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import kopf
import pytest
from kubernetes import client

from porter_dev.aws import AwsEmulator
from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import Operator, pod_identity_trust_policy
from porter_identity import GROUP, VERSION
from porter_identity.api.connection import PLURAL
from porter_identity.config import Settings
from porter_identity.engine import runner as engine
from porter_identity.engine.door import Ask, Door
from porter_identity.engine.runner import Runner
from porter_identity.kube import rest
from porter_identity.kube import status as kstatus
from porter_identity.kube.rest import Kube
from porter_identity.reconcile.outcome import Reason, stalled
from porter_identity.runner import services
from tests.conftest import AZURE_SUBSCRIPTION, GCP_PROJECT
from tests.e2e.helpers import Connections, instead_of_the_session_operator, webhook_bypassed
from tests.e2e.test_one_door import RG, associations, credentials, members

pytestmark = pytest.mark.e2e
FINALIZER = f"{GROUP}/finalizer"
Hook = Callable[[], None]


class HookedKube(Kube):
    """The runner's own client; `before_status_write` runs once, just before the next status patch is sent."""

    before_status_write: Hook | None = None
    status_writes = 0

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method == "PATCH" and path.endswith("/status") and f"/{PLURAL}/" in path:
            self.status_writes += 1
            hook, self.before_status_write = self.before_status_write, None
            if hook is not None:
                hook()
        return super().request(method, path, body, **kw)


async def _asked(uid: str, ask: Ask) -> None:
    """The door's run function here: what the runner asks for later is not run (each run is one `Runner.run`)."""


@pytest.fixture(scope="module")
def quiet(operator: Operator, control_plane: ControlPlane, workdir: Path, kubectl: Any) -> Iterator[Operator]:
    """No operator but this module's runner touches the connections meanwhile (nor serves admission)."""
    with instead_of_the_session_operator(operator, control_plane, workdir), webhook_bypassed(kubectl):
        yield operator


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(5)


@pytest.fixture
def runner(quiet: Operator, operator_kubeconfig: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Runner]:
    env = {**quiet.env, "KUBECONFIG": str(operator_kubeconfig)}
    with mock.patch.dict(os.environ, env):
        memo = kopf.Memo(namespaces=[])
        services(memo, Settings())
        memo.kube = HookedKube(rest.login(), 4)
    memo.allowed_identities = None
    memo.kopf_settings = kopf.OperatorSettings()
    memo.finalizer = FINALIZER
    run = Runner(memo, None, 2)
    run.door = Door(_asked, 1)
    asyncio.run_coroutine_threadsafe(_start(run.door), loop).result(5)
    yield run
    asyncio.run_coroutine_threadsafe(run.door.stop(), loop).result(5)


async def _start(door: Door) -> None:
    door.start()


class Cloud:
    """One cloud's identities and its links of one ServiceAccount."""

    def __init__(self, provider: str, aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator, cluster: str) -> None:
        self.provider, self.aws, self.azure, self.gcp, self.cluster = provider, aws, azure, gcp, cluster
        self.made: list[str] = []

    def identity(self) -> dict[str, Any]:
        name = f"order-{uuid.uuid4().hex[:8]}"
        self.made.append(name)
        if self.provider == "aws":
            self.aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=pod_identity_trust_policy())
            return {"aws": {"role": name}}
        if self.provider == "azure":
            self.azure.seed_identity(AZURE_SUBSCRIPTION, RG, name)
            return {"azure": {"identityName": name, "resourceGroup": RG}}
        return {"gcp": {"serviceAccountEmail": self.gcp.seed_service_account(GCP_PROJECT, name)}}

    def links(self, namespace: str) -> int:
        """Links of this namespace's ServiceAccount over every identity made here."""
        if self.provider == "aws":
            return len(associations(self.aws, self.cluster, namespace))
        if self.provider == "azure":
            return sum(
                1
                for name in self.made
                for c in credentials(self.azure, name)
                if c.subject.endswith(f":{namespace}:app")
            )
        emails = [f"{name}@{GCP_PROJECT}.iam.gserviceaccount.com" for name in self.made]
        return sum(1 for email in emails for m in members(self.gcp, email) if f"[{namespace}/app]" in m)


@pytest.fixture(params=["aws", "azure", "gcp"])
def cloud(
    request: pytest.FixtureRequest, aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator, eks_cluster: str
) -> Cloud:
    return Cloud(str(request.param), aws, azure, gcp, eks_cluster)


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, service_account: Any, runner: Runner) -> Iterator[Connections]:
    service_account(namespace, "app")
    made = Connections(api, namespace)
    yield made
    for item in made.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        meta = item["metadata"]
        if meta.get("deletionTimestamp") is None:
            made.delete(meta["name"])
        deleting = made.get(meta["name"])
        if deleting is not None:  # the delete run removes the link, then takes its finalizer off
            done = runner.run(meta["uid"], Ask(namespace, meta["name"], "deleting", deleting=True, body=deleting))
            assert isinstance(done, engine.Deleted) and done.delay is None, done
            assert made.get(meta["name"]) is None


def _patch(conns: Connections, name: str, body: dict[str, Any], status: bool = False) -> None:
    patch = (
        conns.custom.patch_namespaced_custom_object_status if status else conns.custom.patch_namespaced_custom_object
    )
    patch(GROUP, VERSION, conns.namespace, PLURAL, name, body)


def _create(conns: Connections, spec: dict[str, Any]) -> dict[str, Any]:
    """A new connection with this shard's finalizer, before any run (as a run that was stopped after adding it)."""
    conns.create("app", "app", **spec)
    _patch(conns, "app", {"metadata": {"finalizers": [FINALIZER]}})
    body = conns.get("app")
    assert body is not None
    return body


def _ready(conns: Connections) -> dict[str, Any]:
    body = conns.get("app")
    assert body is not None
    ready = Connections.condition_of(body)
    assert ready is not None and ready["status"] == "True", body.get("status")
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    return body


STALE_STATUS = {
    "status": {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Reconciling",
                "message": "a stale writer's result",
                "lastTransitionTime": "2020-01-01T00:00:00Z",
            }
        ]
    }
}


def _kube(runner: Runner) -> HookedKube:
    kube = runner.memo.kube
    assert isinstance(kube, HookedKube)
    return kube


def test_a_status_written_between_the_runs_read_and_write_is_not_overwritten_blind(
    cloud: Cloud, conns: Connections, runner: Runner
) -> None:
    """The run's write is refused (the object changed); what it decided from changed, so it runs again on the new
    object instead of writing its result over another one."""
    body = _create(conns, cloud.identity())
    _kube(runner).before_status_write = lambda: _patch(conns, "app", STALE_STATUS, status=True)
    runner.run(body["metadata"]["uid"], Ask(conns.namespace, "app", "its spec", body=body))
    final = _ready(conns)
    assert "stale writer" not in str(final["status"])
    assert _kube(runner).status_writes == 2  # refused once, then written on the object read again
    assert cloud.links(conns.namespace) == 1


def test_a_finalizer_written_between_the_runs_read_and_write_costs_one_more_patch_not_a_run(
    cloud: Cloud, conns: Connections, runner: Runner
) -> None:
    """Another controller's metadata write changes nothing the run decided from: the same result lands on the new
    version."""
    body = _create(conns, cloud.identity())
    other = {"metadata": {"finalizers": [FINALIZER, "example.com/keep"]}}
    _kube(runner).before_status_write = lambda: _patch(conns, "app", other)
    calls: list[str] = []
    original = runner._run_once

    def counted(*args: Any) -> Any:
        calls.append("run")
        return original(*args)

    with mock.patch.object(runner, "_run_once", counted):
        runner.run(body["metadata"]["uid"], Ask(conns.namespace, "app", "its spec", body=body))
    _ready(conns)
    assert calls == ["run"]
    assert _kube(runner).status_writes == 2
    _patch(conns, "app", {"metadata": {"finalizers": [FINALIZER]}})


def test_a_spec_changed_between_the_runs_read_and_write_is_run_again_and_the_old_result_never_lands(
    cloud: Cloud, conns: Connections, runner: Runner
) -> None:
    body = _create(conns, cloud.identity())
    second = cloud.identity()
    _kube(runner).before_status_write = lambda: _patch(conns, "app", {"spec": second})
    runner.run(body["metadata"]["uid"], Ask(conns.namespace, "app", "its spec", body=body))
    final = _ready(conns)
    assert final["metadata"]["generation"] == 2
    assert final["spec"][cloud.provider] == second[cloud.provider]
    identity = next(iter(second[cloud.provider].values()))
    assert identity in str(final["status"]), final["status"]
    assert cloud.links(conns.namespace) == 1  # moved, not linked twice


def test_a_result_computed_before_another_runs_write_is_refused_after_it(
    cloud: Cloud, conns: Connections, runner: Runner
) -> None:
    """A run woken while another wrote (the old leader's last run, a stale event's run) cannot overwrite the newer
    result: its write carries the resourceVersion it read, and what it read has changed."""
    stale = _create(conns, cloud.identity())
    runner.run(stale["metadata"]["uid"], Ask(conns.namespace, "app", "its spec", body=stale))
    written = _ready(conns)
    parsed = engine.parse(stale)
    assert isinstance(parsed, engine.ServiceIdentityConnection)
    behind = kstatus.next_status(parsed, stalled(Reason.IDENTITY_NOT_FOUND, "a stale result"), None, None, None)
    with pytest.raises(engine._Changed):
        runner._write(stale, parsed, behind)
    assert conns.get("app") == written  # not even a write that changed nothing
    assert cloud.links(conns.namespace) == 1


def test_a_status_written_before_the_run_reads_is_corrected_by_the_run(
    cloud: Cloud, conns: Connections, runner: Runner
) -> None:
    """A woken run reads the object (no body handed in): a stale status already there is what it starts from."""
    body = _create(conns, cloud.identity())
    runner.run(body["metadata"]["uid"], Ask(conns.namespace, "app", "its spec", body=body))
    _ready(conns)
    _patch(conns, "app", STALE_STATUS, status=True)
    runner.run(body["metadata"]["uid"], Ask(conns.namespace, "app", "ServiceAccount default/app appeared"))
    final = _ready(conns)
    assert "stale writer" not in str(final["status"])
    assert cloud.links(conns.namespace) == 1


def test_a_new_connection_gets_the_finalizer_before_its_link_and_loses_it_after_the_delete_run(
    cloud: Cloud, conns: Connections, runner: Runner
) -> None:
    """The runner adds this shard's finalizer before the cloud is touched; the delete run removes the link, then
    that finalizer only (another controller's stays)."""
    conns.create("app", "app", **cloud.identity())
    body = conns.get("app")
    assert body is not None and not body["metadata"].get("finalizers")
    seen: list[Any] = []
    _kube(runner).before_status_write = lambda: seen.append((conns.get("app") or {})["metadata"].get("finalizers"))
    runner.run(body["metadata"]["uid"], Ask(conns.namespace, "app", "its spec", body=body))
    assert seen == [[FINALIZER]]  # on the object before the status that records the link
    assert _ready(conns)["metadata"]["finalizers"] == [FINALIZER]
    _patch(conns, "app", {"metadata": {"finalizers": ["example.com/keep", FINALIZER]}})
    conns.delete("app")
    deleting = conns.get("app")
    assert deleting is not None and deleting["metadata"].get("deletionTimestamp")
    # A recheck that finds the object deleting runs the delete, as the delete's own ask would.
    done = runner.run(body["metadata"]["uid"], Ask(conns.namespace, "app", "recheck"))
    assert isinstance(done, engine.Deleted) and done.delay is None, done
    assert cloud.links(conns.namespace) == 0
    left = conns.get("app")
    assert left is not None and left["metadata"]["finalizers"] == ["example.com/keep"]
    _patch(conns, "app", {"metadata": {"finalizers": None}})
