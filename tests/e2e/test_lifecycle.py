"""One link lifecycle, every transition on all three clouds, counted at the emulators (issue 15's matrix).

The operator here sweeps every 3 s with PORTER_DELETE_ORPHANS=true (so a Retained link must survive the orphan
sweep) and rechecks Stalled connections only every 300 s (so a claimant that becomes Ready quickly after its
owner goes was woken, not rechecked).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AwsEmulator, Operator
from porter_identity.kube.rest import Kube
from tests.conftest import (
    AZURE_SUBSCRIPTION,
    EKS_CLUSTER,
    GCP_PROJECT,
    GROUP,
    PLURAL,
    VERSION,
    sa_annotations,
    wait_for,
)
from tests.e2e.helpers import Connections, instead_of_the_session_operator, wait_sweeps

pytestmark = pytest.mark.e2e
RG = "lifecycle-rg"
WI_ROLE = "roles/iam.workloadIdentityUser"
SWEEPS = 15  # several 3 s sweeps, with room for a busy machine
ALLOW = "identity.porter.run/allowed-identities"
MISSING = {"aws": "no-such-role", "azure": "no-such-identity", "gcp": f"nobody@{GCP_PROJECT}.iam.gserviceaccount.com"}
MISSING_REASON = {"aws": "RoleNotFound", "azure": "IdentityNotFound", "gcp": "IdentityNotFound"}


@pytest.fixture(scope="module")
def operator(operator: Operator, control_plane: ControlPlane, workdir: Path) -> Iterator[Operator]:
    settings = {
        "PORTER_DRIFT_SWEEP_SECONDS": "3",
        "PORTER_DELETE_ORPHANS": "true",
        "PORTER_STALLED_RECHECK_SECONDS": "300",
    }
    with instead_of_the_session_operator(operator, control_plane, workdir, lifecycle=settings) as started:
        yield started["lifecycle"]


class Cloud(Protocol):
    name: str

    def identity(self) -> str: ...

    def spec(self, identity: str) -> dict[str, Any]: ...

    def shown(self, identity: str) -> str:
        """The identity as status records it (the spec form)."""
        ...

    def links(self, namespace: str, sa: str) -> set[str]:
        """Every link at the emulator for this namespace/ServiceAccount, as `<identity>` strings."""
        ...

    def break_link(self, namespace: str, sa: str) -> None: ...


class Aws:
    name = "aws"

    def __init__(self, aws: AwsEmulator, make_role: Callable[..., str]) -> None:
        self.eks = aws.client("eks")
        self.make_role = make_role

    def identity(self) -> str:
        return self.make_role()

    def spec(self, identity: str) -> dict[str, Any]:
        return {"aws": {"role": identity}}

    def shown(self, identity: str) -> str:
        return identity

    def associations(self, namespace: str, sa: str) -> list[dict[str, Any]]:
        listed = self.eks.list_pod_identity_associations(
            clusterName=EKS_CLUSTER, namespace=namespace, serviceAccount=sa
        )
        return [
            self.eks.describe_pod_identity_association(clusterName=EKS_CLUSTER, associationId=a["associationId"])[
                "association"
            ]
            for a in listed["associations"]
        ]

    def links(self, namespace: str, sa: str) -> set[str]:
        return {a["roleArn"] for a in self.associations(namespace, sa)}

    def break_link(self, namespace: str, sa: str) -> None:
        for a in self.associations(namespace, sa):
            self.eks.delete_pod_identity_association(clusterName=EKS_CLUSTER, associationId=a["associationId"])


class Azure:
    name = "azure"

    def __init__(self, azure: AzureEmulator) -> None:
        self.emulator = azure
        self.arm = azure.client(AZURE_SUBSCRIPTION)
        self.made: list[str] = []

    def identity(self) -> str:
        name = f"uami-{uuid.uuid4().hex[:8]}"
        self.emulator.seed_identity(AZURE_SUBSCRIPTION, RG, name)
        self.made.append(name)
        return name

    def spec(self, identity: str) -> dict[str, Any]:
        return {"azure": {"identityName": identity, "resourceGroup": RG}}

    def shown(self, identity: str) -> str:
        return f"{RG}/{identity}"

    def credentials(self, namespace: str, sa: str) -> list[tuple[str, Any]]:
        subject = f"system:serviceaccount:{namespace}:{sa}"
        return [
            (name, c)
            for name in self.made
            for c in self.arm.federated_identity_credentials.list(RG, name)
            if c.subject == subject
        ]

    def links(self, namespace: str, sa: str) -> set[str]:
        return {name for name, _ in self.credentials(namespace, sa)}

    def break_link(self, namespace: str, sa: str) -> None:
        for name, c in self.credentials(namespace, sa):
            self.arm.federated_identity_credentials.delete(RG, name, c.name)


class Gcp:
    name = "gcp"

    def __init__(self, gcp: GcpEmulator) -> None:
        self.emulator = gcp
        self.iam = gcp.client()
        self.made: list[str] = []

    def identity(self) -> str:
        email = self.emulator.seed_service_account(GCP_PROJECT, f"svc-{uuid.uuid4().hex[:8]}")
        self.made.append(email)
        return email

    def spec(self, identity: str) -> dict[str, Any]:
        return {"gcp": {"serviceAccountEmail": identity}}

    def shown(self, identity: str) -> str:
        return identity

    def policy(self, email: str) -> Any:
        return self.iam.get_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}"})

    def links(self, namespace: str, sa: str) -> set[str]:
        member = f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{namespace}/{sa}]"
        return {
            email
            for email in self.made
            if any(b.role == WI_ROLE and member in b.members for b in self.policy(email).bindings)
        }

    def break_link(self, namespace: str, sa: str) -> None:
        member = f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{namespace}/{sa}]"
        for email in self.links(namespace, sa):
            policy = self.policy(email)
            for b in list(policy.bindings):
                if member in b.members:
                    b.members.remove(member)
                    if not b.members:
                        policy.bindings.remove(b)
            self.iam.set_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}", "policy": policy})


@pytest.fixture(params=["aws", "azure", "gcp"])
def cloud(
    request: pytest.FixtureRequest,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    make_role: Callable[..., str],
) -> Cloud:
    built: dict[str, Callable[[], Cloud]] = {
        "aws": lambda: Aws(aws, make_role),
        "azure": lambda: Azure(azure),
        "gcp": lambda: Gcp(gcp),
    }
    return built[request.param]()


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def reasons(conns: Connections, name: str) -> list[str]:
    return [e.reason for e in conns.events(name)]


def links_become(cloud: Cloud, conns: Connections, sa: str, expected: set[str], timeout: float = 30) -> None:
    wait_for(lambda: cloud.links(conns.namespace, sa) == expected, timeout, what=f"{cloud.name} links == {expected}")


def linked(cloud: Cloud, conns: Connections, service_account: Any, identity: str, **spec: Any) -> dict[str, Any]:
    """A Ready connection `app` for the ServiceAccount `app`."""
    service_account(conns.namespace, "app")
    conns.create("app", "app", **spec, **cloud.spec(identity))
    return conns.wait_ready("app")


def deleted_leaves_nothing(cloud: Cloud, conns: Connections, name: str = "app") -> None:
    conns.delete(name)
    conns.wait_gone(name)
    assert cloud.links(conns.namespace, "app") == set()


def test_create_and_delete(cloud: Cloud, conns: Connections, service_account: Any) -> None:
    one = cloud.identity()
    obj = linked(cloud, conns, service_account, one)
    assert cloud.links(conns.namespace, "app") == {one}
    assert obj["status"]["identity"] == cloud.shown(one)
    deleted_leaves_nothing(cloud, conns)


def _finalizer_owners(body: dict[str, Any]) -> list[str]:
    """The managers whose managedFields own metadata.finalizers."""
    return [
        entry.get("manager", "")
        for entry in body["metadata"].get("managedFields") or []
        if "f:finalizers" in (entry.get("fieldsV1") or {}).get("f:metadata", {})
    ]


def test_the_webhook_adds_the_finalizer_at_create_and_a_server_side_reapply_keeps_it(
    cloud: Cloud, conns: Connections, service_account: Any, kubectl: Callable[..., Any]
) -> None:
    """The connection's admission adds the finalizer to the create itself: Ready after one write of the operator's
    (its status), no finalizer patch. The API server records admission's change at create under no manager, so a
    GitOps tool's server-side re-apply (which removes only what its manager owns and no longer lists) keeps it."""
    one = cloud.identity()
    service_account(conns.namespace, "app")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceIdentityConnection",
        "metadata": {"name": "app", "namespace": conns.namespace, "labels": {"team": "a"}},
        "spec": {"serviceAccountName": "app", **cloud.spec(one)},
    }
    apply = ("apply", "--server-side", "--field-manager=gitops", "-o", "json", "-f", "-")
    created = json.loads(kubectl(*apply, stdin=json.dumps(body)).stdout)
    assert created["metadata"]["finalizers"] == [f"{GROUP}/finalizer"], "stored with the create"
    ready = conns.wait_ready("app")
    assert int(ready["metadata"]["generation"]) == 1
    assert _finalizer_owners(ready) == [], "no manager wrote the finalizer: the operator did not patch it"
    fields = ready["metadata"]["managedFields"]
    managers = {(e.get("manager"), e.get("operation"), e.get("subresource")) for e in fields}
    assert {m for m in managers if m[2] != "status"} == {("gitops", "Apply", None)}, managers
    body["metadata"]["labels"] = {"team": "b"}
    reapplied = json.loads(kubectl(*apply, stdin=json.dumps(body)).stdout)
    assert reapplied["metadata"]["finalizers"] == [f"{GROUP}/finalizer"]
    assert reapplied["metadata"]["labels"] == {"team": "b"}
    assert cloud.links(conns.namespace, "app") == {one}
    deleted_leaves_nothing(cloud, conns)


def test_identity_change_moves_the_link(cloud: Cloud, conns: Connections, service_account: Any) -> None:
    old, new = cloud.identity(), cloud.identity()
    linked(cloud, conns, service_account, old)
    conns.patch_spec("app", cloud.spec(new))
    obj = conns.wait_ready("app")
    assert cloud.links(conns.namespace, "app") == {new}  # the old identity can no longer be used
    assert obj["status"]["identity"] == cloud.shown(new)
    moved = "Updated" if cloud.name == "aws" else "Moved"
    wait_for(lambda: moved in reasons(conns, "app"), 10, what=f"a {moved} Event")
    deleted_leaves_nothing(cloud, conns)


def test_a_refused_identity_removes_the_old_link(cloud: Cloud, conns: Connections, service_account: Any) -> None:
    """Status stops recording the link: the operator still finds it in the cloud and removes it."""
    old = cloud.identity()
    linked(cloud, conns, service_account, old)
    conns.patch_spec("app", cloud.spec(MISSING[cloud.name]))
    conns.wait_reason("app", MISSING_REASON[cloud.name])
    links_become(cloud, conns, "app", set())
    wait_for(lambda: "Deleted" in reasons(conns, "app"), 10, what="a Deleted Event")
    deleted_leaves_nothing(cloud, conns)


def test_retain_survives_the_orphan_sweep_and_is_adopted(
    cloud: Cloud, conns: Connections, service_account: Any, operator: Operator
) -> None:
    one = cloud.identity()
    linked(cloud, conns, service_account, one, deletionPolicy="Retain")
    conns.delete("app")
    conns.wait_gone("app")
    assert cloud.links(conns.namespace, "app") == {one}
    # Several sweeps with PORTER_DELETE_ORPHANS=true: a retained link is never ours to delete.
    wait_sweeps(operator, count=3)
    assert cloud.links(conns.namespace, "app") == {one}
    conns.create("again", "app", **cloud.spec(one))
    conns.wait_ready("again")
    wait_for(lambda: "Adopted" in reasons(conns, "again"), 10, what="an Adopted Event")
    assert cloud.links(conns.namespace, "app") == {one}
    deleted_leaves_nothing(cloud, conns, "again")


def test_link_deleted_outside_comes_back(cloud: Cloud, conns: Connections, service_account: Any) -> None:
    one = cloud.identity()
    linked(cloud, conns, service_account, one)
    cloud.break_link(conns.namespace, "app")
    links_become(cloud, conns, "app", {one}, timeout=SWEEPS)
    wait_for(lambda: "DriftCorrected" in reasons(conns, "app"), SWEEPS, what="a DriftCorrected Event")


def test_withdrawn_annotation_removes_the_link_within_a_sweep(
    cloud: Cloud, api: client.ApiClient, operator: Operator, service_account: Any
) -> None:
    core = client.CoreV1Api(api)
    ns = f"r-{uuid.uuid4().hex[:8]}"  # no policy-file rule covers r-*: only the annotation allows
    one = cloud.identity()
    pattern = {"aws": one.rsplit("/", 1)[-1], "azure": f"{RG}/{one}", "gcp": one}[cloud.name]
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, annotations={ALLOW: f"{cloud.name}:{pattern}"}))
    )
    try:
        conns = Connections(api, ns)
        service_account(ns, "app")
        conns.create("app", "app", **cloud.spec(one))  # admitted at once: the webhook reads the Namespace
        conns.wait_ready("app")
        assert cloud.links(ns, "app") == {one}
        core.patch_namespace(ns, {"metadata": {"annotations": {ALLOW: None}}})
        conns.wait_reason("app", "NotAllowed", timeout=SWEEPS)
        assert cloud.links(ns, "app") == set()
        wait_for(lambda: "NotAllowed" in reasons(conns, "app"), 10, what="a NotAllowed Warning")
    finally:
        core.delete_namespace(ns)


def test_owner_deleted_wakes_the_waiting_connection(cloud: Cloud, conns: Connections, service_account: Any) -> None:
    first, second = cloud.identity(), cloud.identity()
    service_account(conns.namespace, "app")
    conns.create("first", "app", **cloud.spec(first))
    conns.wait_ready("first")
    conns.create("second", "app", **cloud.spec(second))
    conns.wait_reason("second", "Conflict")
    assert cloud.links(conns.namespace, "app") == {first}
    conns.delete("first")
    conns.wait_gone("first")
    conns.wait_ready("second", timeout=30)  # woken, not rechecked (the recheck interval here is 300 s)
    assert cloud.links(conns.namespace, "app") == {second}


def test_a_connection_that_links_nothing_owns_nothing(cloud: Cloud, conns: Connections, service_account: Any) -> None:
    service_account(conns.namespace, "app")
    conns.create("broken", "app", **cloud.spec(MISSING[cloud.name]))
    conns.wait_reason("broken", MISSING_REASON[cloud.name])
    one = cloud.identity()
    conns.create("valid", "app", **cloud.spec(one))
    conns.wait_ready("valid")
    assert cloud.links(conns.namespace, "app") == {one}


def test_three_clouds_on_one_service_account(
    conns: Connections,
    service_account: Any,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    make_role: Callable[..., str],
) -> None:
    """porter.yaml allows one connection of each type per service: they do not clash."""
    service_account(conns.namespace, "app")
    clouds: list[Cloud] = [Aws(aws, make_role), Azure(azure), Gcp(gcp)]
    made = {c.name: c.identity() for c in clouds}
    for c in clouds:
        conns.create(c.name, "app", **c.spec(made[c.name]))
    for c in clouds:
        conns.wait_ready(c.name)
        assert c.links(conns.namespace, "app") == {made[c.name]}


def test_longest_valid_names_link(cloud: Cloud, api: client.ApiClient, operator: Operator) -> None:
    core = client.CoreV1Api(api)
    ns = "t-" + uuid.uuid4().hex[:8] + "x" * 53  # 63 characters, covered by the e2e policy's t-*
    name = ("c" * 61 + ".") * 4 + "c" * 5  # 253 characters
    sa = ("s" * 61 + ".") * 4 + "s" * 5
    assert len(ns) == 63 and len(name) == 253 and len(sa) == 253
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        conns = Connections(api, ns)
        core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa)))
        one = cloud.identity()
        conns.create(name, sa, **cloud.spec(one))
        conns.wait_ready(name)
        assert cloud.links(ns, sa) == {one}
        conns.delete(name)
        conns.wait_gone(name)
        assert cloud.links(ns, sa) == set()
    finally:
        core.delete_namespace(ns)


def test_retained_service_account_annotation_marks_the_link(
    conns: Connections, api: client.ApiClient, azure: AzureEmulator, service_account: Any
) -> None:
    """Azure credentials carry no tags: the Retain mark lives on the ServiceAccount, and adoption clears it."""
    cloud = Azure(azure)
    one = cloud.identity()
    linked(cloud, conns, service_account, one, deletionPolicy="Retain")
    conns.delete("app")
    conns.wait_gone("app")
    assert sa_annotations(api, conns.namespace, "app")["identity.porter.run/retained-azure"] == f"{RG}/{one}"
    conns.create("again", "app", **cloud.spec(one))
    conns.wait_ready("again")
    assert "identity.porter.run/retained-azure" not in sa_annotations(api, conns.namespace, "app")


def test_one_apply_of_namespaces_with_their_connections_is_never_refused(
    api: client.ApiClient, kubectl: Callable[..., Any], make_role: Callable[..., str], operator: Operator
) -> None:
    """GitOps and single-file applies: the webhook must not refuse a connection because its Namespace, applied
    in the same request stream, is not in the operator's index yet."""
    role = make_role()
    name = role.rsplit("/", 1)[-1]  # allow rules match role names
    run = uuid.uuid4().hex[:6]
    docs: list[dict[str, Any]] = []
    spaces = [f"a{run}-{i}" for i in range(50)]
    for ns in spaces:
        docs.append(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "annotations": {ALLOW: f"aws:{name}"}}}
        )
        docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": ns}})
        docs.append(
            {
                "apiVersion": "identity.porter.run/v1alpha1",
                "kind": "ServiceIdentityConnection",
                "metadata": {"name": "app", "namespace": ns},
                "spec": {"serviceAccountName": "app", "aws": {"role": role}},
            }
        )
    try:
        listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        applied = kubectl("apply", "-f", "-", stdin=listed, check=False)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.count("serviceidentityconnection.identity.porter.run/app created") == 50
        for ns in spaces:
            Connections(api, ns).wait_ready("app", timeout=60)
    finally:
        kubectl("delete", "namespace", *spaces, "--wait=false", check=False)


def test_namespace_deletion_leaves_nothing(
    api: client.ApiClient, aws: AwsEmulator, make_role: Callable[..., str], operator: Operator
) -> None:
    """50 connections in a namespace that is deleted, five times: each time every link goes and the namespace
    with it (the ServiceAccounts disappear concurrently with the connections' deletes)."""
    core = client.CoreV1Api(api)
    cloud = Aws(aws, make_role)
    role = cloud.identity()
    for _ in range(5):
        ns = f"t-{uuid.uuid4().hex[:8]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        conns = Connections(api, ns)
        for i in range(50):
            core.create_namespaced_service_account(
                ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=f"s{i}"))
            )
            conns.create(f"c{i}", f"s{i}", aws={"role": role})
        for i in range(50):
            conns.wait_ready(f"c{i}", timeout=60)
        core.delete_namespace(ns)
        wait_for(lambda ns=ns: _namespace_gone(core, ns), 30, what=f"namespace {ns} gone")  # a 60 s stall fails
        listed = cloud.eks.list_pod_identity_associations(clusterName=EKS_CLUSTER, namespace=ns)["associations"]
        assert listed == []


def _namespace_gone(core: client.CoreV1Api, ns: str) -> bool:
    try:
        core.read_namespace(ns)
    except client.ApiException as err:
        return err.status == 404
    return False


def test_operator_killed_mid_move_converges_to_the_new_link(
    cloud: Cloud, conns: Connections, service_account: Any, operator: Operator
) -> None:
    """kill -9 right after an identity change: the restarted operator finishes the move (status still names the
    old identity until the new link is Ready), leaving exactly the new link."""
    old, new = cloud.identity(), cloud.identity()
    linked(cloud, conns, service_account, old)
    conns.patch_spec("app", cloud.spec(new))
    operator.kill()
    operator.start().wait_ready()
    obj = conns.wait_ready("app", timeout=60)
    assert obj["status"]["identity"] == cloud.shown(new)
    links_become(cloud, conns, "app", {new})


# The chaos test's cloud load (tests/e2e/test_chaos.py): 15% throttled, 15% unavailable, and slow answers.
CHAOS = {"rules": [{"fault": "throttle", "rate": 0.15}, {"fault": "unavailable", "rate": 0.18}], "seed": 7}


class Load:
    """The clouds' weather while the operator works: calm, or the chaos test's failures (switched on by `start`)."""

    def __init__(self, name: str, clouds: tuple[AwsEmulator, AzureEmulator, GcpEmulator]) -> None:
        self.name, self.clouds = name, clouds

    def start(self) -> None:
        if self.name == "chaos":
            for emulator in self.clouds:
                emulator.faults(**CHAOS, latencyMs=100)

    def stop(self) -> None:
        for emulator in self.clouds:
            emulator.faults(rules=[], latencyMs=0)


@pytest.fixture(params=["calm", "chaos"])
def load(request: pytest.FixtureRequest, aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator) -> Iterator[Load]:
    weather = Load(str(request.param), (aws, azure, gcp))
    try:
        yield weather
    finally:
        weather.stop()


@pytest.mark.parametrize("pairs", [20])
def test_two_connections_applied_together_never_both_link(
    cloud: Cloud, conns: Connections, api: client.ApiClient, pairs: int, load: Load
) -> None:
    """Pairs of connections for one ServiceAccount, created back to back (the index lags), with the clouds calm and
    under the chaos test's failures: never are both of a pair Ready at once; once settled, exactly one of each pair
    is Ready and exactly its link exists; deleting both leaves nothing. Runs for one ServiceAccount and cloud are
    serialized and see each other's results, so this settles without the sweep's help."""
    patience = SWEEPS if load.name == "calm" else 4 * SWEEPS  # retries back off under faults
    core = client.CoreV1Api(api)
    made: dict[int, tuple[str, str]] = {}
    for i in range(pairs):
        core.create_namespaced_service_account(
            conns.namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=f"p{i}"))
        )
        made[i] = (cloud.identity(), cloud.identity())
    load.start()
    for i, (a, b) in made.items():
        conns.create(f"p{i}-a", f"p{i}", **cloud.spec(a))
        conns.create(f"p{i}-b", f"p{i}", **cloud.spec(b))

    def conditions() -> dict[str, dict[str, Any]]:
        listed: Any = conns.custom.list_namespaced_custom_object(GROUP, VERSION, conns.namespace, PLURAL)
        return {o["metadata"]["name"]: Connections.condition_of(o) or {} for o in listed["items"]}

    def winner(i: int) -> str | None:
        """The one Ready of pair i once the other says Conflict, else None; never two Ready."""
        found = conditions()
        ready = [s for s in ("a", "b") if found.get(f"p{i}-{s}", {}).get("status") == "True"]
        assert len(ready) < 2, f"pair {i}: both connections Ready at once"
        waiting = [s for s in ("a", "b") if found.get(f"p{i}-{s}", {}).get("reason") == "Conflict"]
        if len(ready) != 1 or len(waiting) != 1:
            return None
        return made[i][0] if ready == ["a"] else made[i][1]

    for i in range(pairs):
        # Well within one sweep's worth of waiting per pair: no sweep has to heal anything.
        if load.name == "calm":
            wait_for(
                lambda i=i: (w := winner(i)) and cloud.links(conns.namespace, f"p{i}") == {w},
                patience,
                what=f"pair {i}: one Ready with exactly its link",
            )
        else:  # the test's own reads of the clouds would meet the faults too: links are counted after
            wait_for(lambda i=i: winner(i), patience, what=f"pair {i}: one Ready, the other Conflict")
    load.stop()
    for i in range(pairs):
        # A run still in its backoff from the last faults settles within seconds of them stopping; never two Ready.
        wait_for(
            lambda i=i: (w := winner(i)) and cloud.links(conns.namespace, f"p{i}") == {w},
            SWEEPS,
            what=f"pair {i}: exactly the Ready one's link",
        )
    load.start()
    for i in range(pairs):
        conns.delete(f"p{i}-a")
        conns.delete(f"p{i}-b")
    for i in range(pairs):
        conns.wait_gone(f"p{i}-a", timeout=patience)
        conns.wait_gone(f"p{i}-b", timeout=patience)
    load.stop()
    for i in range(pairs):
        assert cloud.links(conns.namespace, f"p{i}") == set()


def test_a_repeated_event_is_counted_up_not_posted_again(kube: Kube, conns: Connections) -> None:
    from porter_identity.kube.events import Events

    made = conns.create("counted", "counted", aws={"role": "no-such-role"})
    events = Events(kube)
    for _ in range(3):
        events.post(made, "Warning", "Throttled", "slow down, said the cloud")
    found = [e for e in conns.events("counted") if e.reason == "Throttled"]
    assert [(e.count, e.message) for e in found] == [(3, "slow down, said the cloud")]
