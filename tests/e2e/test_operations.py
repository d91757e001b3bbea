"""Running the operator: probes a kubelet can use, and shards that split namespaces between instances."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_dev.controlplane import ControlPlane
from porter_dev.processes import Operator
from tests.e2e.helpers import Connections

pytestmark = pytest.mark.e2e


def test_the_running_operator_is_live_and_ready(operator: Operator) -> None:
    operator.wait_ready()
    assert operator.probe("/healthz") == (200, "ok")
    assert operator.probe("/readyz") == (200, "ok")


def _labelled_namespace(core: client.CoreV1Api, labels: dict[str, str]) -> str:
    name = f"shard-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    return name


def _namespaces_logged(op: Operator) -> set[str]:
    seen = set()
    for line in op.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("namespace"):
            seen.add(record["namespace"])
    return seen


@pytest.fixture
def shards(control_plane: ControlPlane, operator: Operator, workdir: Path) -> Iterator[dict[str, Operator]]:
    """Two instances with disjoint namespace selectors, in place of the session's cluster-wide operator."""
    operator.stop()
    started: dict[str, Operator] = {}
    try:
        for shard, rolesets in (("a", "false"), ("b", "true")):
            env = {k: v for k, v in operator.env.items() if k not in ("PORTER_HEALTH_PORT", "PORTER_METRICS_PORT")}
            env |= {"PORTER_SHARD_SELECTOR": f"porter.run/shard={shard}", "PORTER_ROLESETS": rolesets}
            env["PORTER_METRICS_PORT"] = "0"
            started[shard] = Operator(
                kubeconfig=control_plane.kubeconfig,
                logfile=workdir / "logs" / f"operator-shard-{shard}-{uuid.uuid4().hex[:4]}.log",
                env=env,
                args=["--log-format", "json"],
            ).start()
        for op in started.values():
            op.wait_ready()
        yield started
    finally:
        for op in started.values():
            op.stop()
        operator.start().wait_ready()


def test_two_shards_serve_disjoint_namespaces_and_leave_the_rest_alone(
    api: client.ApiClient, shards: dict[str, Operator], make_role: Any
) -> None:
    core = client.CoreV1Api(api)
    spaces = {
        "a": _labelled_namespace(core, {"porter.run/shard": "a"}),
        "b": _labelled_namespace(core, {"porter.run/shard": "b"}),
        "none": _labelled_namespace(core, {}),
    }
    try:
        role = make_role()
        conns = {shard: Connections(api, ns) for shard, ns in spaces.items()}
        for c in conns.values():
            c.create("app", "app", aws={"role": role})
        for shard in ("a", "b"):
            conns[shard].wait_ready("app")
        time.sleep(2)  # both shards have had every event; neither must touch the unlabelled namespace
        orphan = conns["none"].get("app") or {}
        assert not orphan.get("status"), "no instance reconciled a namespace outside every shard"
        assert not orphan["metadata"].get("finalizers"), "no finalizer: deleting it is never blocked"

        assert spaces["a"] in _namespaces_logged(shards["a"])
        assert spaces["b"] not in _namespaces_logged(shards["a"])
        assert spaces["b"] in _namespaces_logged(shards["b"])
        assert spaces["a"] not in _namespaces_logged(shards["b"])
        assert spaces["none"] not in _namespaces_logged(shards["a"]) | _namespaces_logged(shards["b"])
    finally:
        for ns in spaces.values():
            core.delete_namespace(ns)
