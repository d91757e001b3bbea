"""Chaos: namespaces deleted whole, the operator down or killed -9, the API server restarted, clouds failing."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import k8s_bin_dir
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AwsEmulator, Operator
from tests.conftest import EKS_CLUSTER, GROUP, PLURAL, VERSION, wait_for
from tests.e2e.fleet import Fleet
from tests.e2e.helpers import Connections

pytestmark = pytest.mark.e2e


def _associations(aws: AwsEmulator, namespace: str) -> list[dict[str, Any]]:
    eks = aws.client("eks")
    found: list[dict[str, Any]] = []
    for page in eks.get_paginator("list_pod_identity_associations").paginate(
        clusterName=EKS_CLUSTER, namespace=namespace
    ):
        found += page["associations"]
    return found


def test_deleting_a_namespace_with_50_connections_removes_every_link(
    api: client.ApiClient, operator: Operator, aws: AwsEmulator, make_role: Any
) -> None:
    core = client.CoreV1Api(api)
    namespace = f"doomed-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    conns = Connections(api, namespace)
    role = make_role()
    names = [f"c{i}" for i in range(50)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: conns.create(n, n, aws={"role": role}), names))
    for name in names:
        conns.wait_ready(name, timeout=90)
    assert len(_associations(aws, namespace)) == 50

    core.delete_namespace(namespace)
    wait_for(lambda: _namespace_gone(api, namespace), 120, interval=1, what=f"namespace {namespace} deleted")
    assert _associations(aws, namespace) == [], "every finalizer came off only after its association was deleted"


def test_connections_deleted_while_the_operator_is_down_are_cleaned_up_when_it_returns(
    api: client.ApiClient, namespace: str, operator: Operator, aws: AwsEmulator, make_role: Any
) -> None:
    conns = Connections(api, namespace)
    role = make_role()
    names = [f"d{i}" for i in range(5)]
    for name in names:
        conns.create(name, name, aws={"role": role})
    for name in names:
        conns.wait_ready(name)

    operator.kill()
    try:
        for name in names:
            conns.delete(name)
        # the finalizer holds them: deleted, but still there, links intact
        assert all((conns.get(n) or {}).get("metadata", {}).get("deletionTimestamp") for n in names)
        assert len(_associations(aws, namespace)) == 5
    finally:
        operator.start()
    for name in names:
        conns.wait_gone(name, timeout=60)
    assert _associations(aws, namespace) == []


def test_api_server_and_etcd_restart_mid_run_the_operator_reconnects_on_its_own(
    api: client.ApiClient, namespace: str, operator: Operator, aws: AwsEmulator, make_role: Any, control_plane: Any
) -> None:
    conns = Connections(api, namespace)
    role = make_role()
    conns.create("before", "before", aws={"role": role})
    conns.wait_ready("before")
    pid = operator.proc.pid if operator.proc else None

    for name in ("kube-apiserver", "etcd"):
        control_plane.stop_component(name)
    control_plane.start_etcd()
    control_plane.start_apiserver(k8s_bin_dir())
    control_plane.wait_ready()

    # created after the restart: only a reconnected watch sees it
    conns.create("after", "after", aws={"role": role})
    conns.wait_ready("after", timeout=120)
    assert operator.alive() and operator.proc is not None and operator.proc.pid == pid, "no restart of its own"
    assert len(_associations(aws, namespace)) == 2


@contextmanager
def _namespace(api: client.ApiClient, prefix: str) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _ready_count(conns: Connections) -> int:
    listed = conns.custom.list_namespaced_custom_object(GROUP, VERSION, conns.namespace, PLURAL)["items"]
    return sum(1 for obj in listed if (Connections.condition_of(obj) or {}).get("status") == "True")


def _namespace_gone(api: client.ApiClient, name: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespace(name)
    except client.ApiException as err:
        return err.status == 404
    return False


def test_kill_9_while_200_connections_are_created_converges_with_one_link_each_and_no_leak(
    api: client.ApiClient,
    operator: Operator,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    make_role: Any,
    service_account: Any,
) -> None:
    clouds = (aws, azure, gcp)
    namespace = f"t-kill9-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    conns = Connections(api, namespace)
    fleet = Fleet.prepare(conns, clouds, make_role(), 200, service_account)
    for cloud in clouds:
        # Slow enough that the kill lands mid-creation (at 30 ms a quick operator had all 200 Ready first).
        cloud.faults(latencyMs=300)
    try:
        fleet.create(range(200))  # admitted by the webhook, which the operator serves
        wait_for(lambda: _ready_count(conns) >= 10, 60, what="the first connections Ready")
        operator.kill()
        killed_at = _ready_count(conns)
    finally:
        operator.start()
        for cloud in clouds:
            cloud.faults(latencyMs=0)
    assert killed_at < 200, "the kill landed before everything was Ready"

    fleet.wait_ready(timeout=240)
    assert fleet.links() == Counter({name: 1 for name in fleet.names}), "exactly one cloud link each"

    client.CoreV1Api(api).delete_namespace(namespace)
    wait_for(lambda: _namespace_gone(api, namespace), 180, interval=1, what="no finalizer stuck")
    assert fleet.links() == Counter(), "no cloud object leaked"


def test_30_percent_of_cloud_calls_failing_converges_within_a_bounded_number_of_calls(
    api: client.ApiClient,
    operator: Operator,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    make_role: Any,
    service_account: Any,
) -> None:
    clouds = (aws, azure, gcp)
    role = make_role()
    with _namespace(api, "t-calm") as calm_ns, _namespace(api, "t-storm") as storm_ns:
        calm = Fleet.prepare(Connections(api, calm_ns), clouds, role, 40, service_account)
        storm = Fleet.prepare(Connections(api, storm_ns), clouds, role, 40, service_account)

        before = calm.cloud_calls()
        calm.create(range(calm.size))
        calm.wait_ready(timeout=60)
        fault_free = calm.cloud_calls() - before

        # 15% throttled and 15% unavailable (the second rule sees the 85% the first let through)
        plan = {"rules": [{"fault": "throttle", "rate": 0.15}, {"fault": "unavailable", "rate": 0.18}], "seed": 7}
        for cloud in clouds:
            cloud.faults(**plan)
        try:
            before = storm.cloud_calls()
            storm.create(range(storm.size))
            storm.wait_ready(timeout=180)
            stormy = storm.cloud_calls() - before
            injected = sum(sum(cloud.injected().values()) for cloud in clouds)
        finally:
            for cloud in clouds:
                cloud.faults(rules=[])

        assert injected >= stormy * 0.15, f"faults were really served: {injected} of {stormy} calls"
        # A failed call is retried by the SDK, then by the handler with jittered backoff: about 1.5x the calls
        # of a calm run. Three times is the bound; a hot loop would blow through it.
        assert stormy <= 3 * fault_free, f"{stormy} calls under faults vs {fault_free} without"
        assert storm.links() == Counter({name: 1 for name in storm.names}), "exactly one cloud link each"
