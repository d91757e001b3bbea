"""Running the operator: probes a kubelet can use, and shards that split namespaces between instances."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane
from porter_dev.processes import AwsEmulator, Operator
from porter_identity import runner
from porter_identity.handlers import shard as shard_filters
from porter_identity.kube.rest import Kube
from tests.conftest import AZURE_SUBSCRIPTION, EKS_CLUSTER, GROUP, PLURAL, VERSION
from tests.e2e.helpers import Connections, connection, instead_of_the_session_operator, wait_sweeps

pytestmark = pytest.mark.e2e


def test_the_running_operator_is_live_and_ready(operator: Operator) -> None:
    operator.wait_ready()
    assert operator.probe("/healthz") == (200, "ok")
    assert operator.probe("/readyz") == (200, "ok")


def test_readiness_lists_connection_metadata_only_from_the_api_server(
    operator: Operator, api: client.ApiClient, kube: Kube, namespace: str, make_role: Any
) -> None:
    """The readiness list asks for PartialObjectMetadataList: the uids of exactly the connections there are."""
    role = make_role()
    custom = client.CustomObjectsApi(api)
    made = [
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, connection(f"m{i}", f"m{i}", aws={"role": role})
        )
        for i in range(3)
    ]
    expected = sorted(str(m["metadata"]["uid"]) for m in made)
    assert sorted(runner._listed_uids(kube, [namespace])) == expected
    everywhere = runner._listed_uids(kube, [])
    assert set(expected) <= set(everywhere)
    listed = kube.get(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}", accept=runner.METADATA_ONLY)
    assert listed["kind"] == "PartialObjectMetadataList"
    assert all("spec" not in item for item in listed["items"])


def _labelled_namespace(core: client.CoreV1Api, labels: dict[str, str]) -> str:
    name = f"t-shard-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    return name


def _namespaces_reconciled(op: Operator) -> set[str]:
    seen = set()
    for line in op.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        # a reconcile's outcome line carries its provider; admission and index lines do not reconcile anything
        if record.get("namespace") and record.get("provider"):
            seen.add(record["namespace"])
    return seen


SWEEP = {"PORTER_DRIFT_SWEEP_SECONDS": "2"}


@pytest.fixture
def shards(control_plane: ControlPlane, operator: Operator, workdir: Path) -> Iterator[dict[str, Operator]]:
    """Two instances with disjoint namespace selectors; only the second syncs PorterRoleSets."""
    with instead_of_the_session_operator(
        operator,
        control_plane,
        workdir,
        # AWS_SDK_UA_APP_ID: botocore's User-Agent app id, so the AWS emulator counts each shard's calls apart
        a={"PORTER_SHARD_SELECTOR": "porter.run/shard=a", "PORTER_ROLESETS": "false", "AWS_SDK_UA_APP_ID": "shard-a"}
        | SWEEP,
        b={"PORTER_SHARD_SELECTOR": "porter.run/shard=b", "PORTER_ROLESETS": "true", "AWS_SDK_UA_APP_ID": "shard-b"}
        | SWEEP,
    ) as started:
        yield started


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
        # both shards have had every event and swept twice; neither must touch the unlabelled namespace
        wait_sweeps(*shards.values(), count=2)
        orphan = conns["none"].get("app") or {}
        # only the CRD default, as the API server serves it before anyone writes status
        assert orphan.get("status") == {"observedGeneration": 0}, (
            "no instance reconciled a namespace outside every shard"
        )
        assert not orphan["metadata"].get("finalizers"), "no finalizer: deleting it is never blocked"

        assert spaces["a"] in _namespaces_reconciled(shards["a"])
        assert spaces["b"] not in _namespaces_reconciled(shards["a"])
        assert spaces["b"] in _namespaces_reconciled(shards["b"])
        assert spaces["a"] not in _namespaces_reconciled(shards["b"])
        assert spaces["none"] not in _namespaces_reconciled(shards["a"]) | _namespaces_reconciled(shards["b"])
    finally:
        for ns in spaces.values():
            core.delete_namespace(ns)


def test_shards_keep_their_own_finalizers_through_deletes_and_write_only_their_own_links(
    api: client.ApiClient, shards: dict[str, Operator], make_role: Any, aws: AwsEmulator
) -> None:
    """Each shard has a finalizer of its own (kopf adds and removes finalizers by `when`): with one name, shard B
    would take shard A's off, and a delete in between would skip A's cloud delete."""
    core = client.CoreV1Api(api)
    spaces = {key: _labelled_namespace(core, {"porter.run/shard": key}) for key in ("a", "b")}
    names = [f"c{i:02d}" for i in range(12)]
    finalizers = {s: shard_filters.finalizer(GROUP, f"porter.run/shard={s}") for s in spaces}
    try:
        role = make_role()
        conns = {s: Connections(api, ns) for s, ns in spaces.items()}
        for c in conns.values():
            for name in names:
                c.create(name, name, aws={"role": role})
        for c in conns.values():  # deletes while the shards are still creating
            for name in names[::2]:
                c.delete(name)
        for s, c in conns.items():
            for name in names[1::2]:
                ready = c.wait_ready(name)
                assert ready["metadata"]["finalizers"] == [finalizers[s]]
            for name in names[::2]:
                c.wait_gone(name)
        eks = aws.client("eks")
        for ns in spaces.values():
            listed = eks.list_pod_identity_associations(clusterName=EKS_CLUSTER, namespace=ns)["associations"]
            assert sorted(a["serviceAccount"] for a in listed) == names[1::2]  # deleted ones left nothing behind
        calls = aws.calls_by_caller()
        for key, other in (("a", "b"), ("b", "a")):
            # Each shard made links (a connection deleted before its link was made needs none) ...
            assert calls.get(f"shard-{key}", {}).get("eks:CreatePodIdentityAssociation", 0) >= len(names) // 2
            # ... and reconciled only its own namespace.
            assert spaces[key] in _namespaces_reconciled(shards[key])
            assert spaces[other] not in _namespaces_reconciled(shards[key])
    finally:
        for ns in spaces.values():
            core.delete_namespace(ns)


def test_a_queue_of_writes_to_one_identity_does_not_starve_other_connections(
    api: client.ApiClient,
    namespace: str,
    operator: Operator,
    control_plane: ControlPlane,
    workdir: Path,
    azure: AzureEmulator,
    make_role: Any,
    service_account: Any,
) -> None:
    conns = Connections(api, namespace)
    identity = f"busy-{uuid.uuid4().hex[:6]}"
    azure.seed_identity(AZURE_SUBSCRIPTION, "busy-rg", identity)
    names = [f"az{i}" for i in range(16)]
    for name in names:
        service_account(namespace, name)
    role = make_role()
    azure.settings(writeDelayMs=1000)  # each credential write on the identity takes a second, one at a time
    try:
        small_pool = {"PORTER_MAX_WORKERS": "4", "PORTER_LOCK_WAIT_SECONDS": "0.2"}
        with instead_of_the_session_operator(operator, control_plane, workdir, small=small_pool):
            for name in names:
                conns.create(name, name, azure={"identityName": identity, "resourceGroup": "busy-rg"})
            conns.create("unrelated", "unrelated", aws={"role": role})
            conns.wait_ready("unrelated", timeout=30)
            waiting = [n for n in names if (conns.condition(n) or {}).get("status") != "True"]
            # Had the 4 threads queued on the identity's lock, the AWS connection would have waited for ~12 of
            # the 16 one-second writes; with threads given back it gets one within the first write or two.
            assert len(waiting) >= 10, f"the AWS connection waited behind the Azure queue: {len(waiting)} left"
            for name in names:
                conns.wait_ready(name, timeout=90)
    finally:
        azure.settings(writeDelayMs=0)
    fics = azure.client(AZURE_SUBSCRIPTION).federated_identity_credentials.list("busy-rg", identity)
    assert len(list(fics)) == 16


def test_client_side_buckets_keep_the_operator_under_the_clouds_quota(
    api: client.ApiClient,
    operator: Operator,
    control_plane: ControlPlane,
    workdir: Path,
    azure: AzureEmulator,
    service_account: Any,
) -> None:
    """ARM's write bucket, scaled down to 2/s with a burst of 4: an operator paced a little under it is never
    throttled, while one paced above it is (and still converges). Exactly the same rate would leave no room for
    calls that leave the operator spaced and reach ARM bunched up."""
    core = client.CoreV1Api(api)
    identities = [f"quota-{uuid.uuid4().hex[:6]}-{i}" for i in range(2)]
    for identity in identities:
        azure.seed_identity(AZURE_SUBSCRIPTION, "quota-rg", identity)

    def create_twelve(namespace: str) -> Connections:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        conns = Connections(api, namespace)
        for i in range(12):
            service_account(namespace, f"q{i}")
            conns.create(f"q{i}", f"q{i}", azure={"identityName": identities[i % 2], "resourceGroup": "quota-rg"})
        for i in range(12):
            conns.wait_ready(f"q{i}", timeout=90)
        return conns

    def throttled() -> int:
        return sum(n for key, n in azure.injected().items() if key.endswith(":throttle"))

    paced = {"PORTER_RATE_LIMITS__AZURE_WRITE__PER_SECOND": "1.6", "PORTER_RATE_LIMITS__AZURE_WRITE__BURST": "3"}
    spaces = [f"t-paced-{uuid.uuid4().hex[:6]}", f"t-unpaced-{uuid.uuid4().hex[:6]}"]
    try:
        with instead_of_the_session_operator(operator, control_plane, workdir, paced=paced):
            before = throttled()
            azure.faults(quotas=[{"access": "write", "perSecond": 2, "burst": 4}])
            create_twelve(spaces[0])
            assert throttled() == before, "the operator's own bucket kept it under the quota"

        azure.faults(quotas=[{"access": "write", "perSecond": 2, "burst": 4}])
        before = throttled()
        create_twelve(spaces[1])  # the session operator: 10 writes/s, ARM's real rate, over this quota
        assert throttled() > before, "the emulated quota bites when the operator is faster than it allows"
    finally:
        azure.faults(quotas=[])
        for namespace in spaces:
            core.delete_namespace(namespace)
