"""Chaos: a namespace deleted whole, connections deleted while the operator is down, the API server restarted."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client

from porter_dev.controlplane import k8s_bin_dir
from porter_dev.processes import AwsEmulator, Operator
from tests.conftest import EKS_CLUSTER, wait_for
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

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except client.ApiException as err:
            return err.status == 404
        return False

    wait_for(gone, 120, interval=1, what=f"namespace {namespace} deleted")
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
