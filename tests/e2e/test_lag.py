"""The lagged tier: every emulator with eventual consistency on (`propagationSeconds`), the identity and the
connection created in one step, as one Terraform run or Argo CD sync does.

Each cloud: linked (Ready True, Bound) within 10 s of the identity becoming visible to the service that links it,
one link in the cloud, Ready never True then False, no orphan reported by the sweeps that ran meanwhile, and
`check` saying "not yet propagated" (not refused) while the lag runs, then obtaining the identity."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane, free_port
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AwsEmulator, Operator, pod_identity_trust_policy
from tests.conftest import AZURE_SUBSCRIPTION, EKS_CLUSTER, GCP_POOL, GCP_PROJECT, GROUP, PLURAL, VERSION, wait_for
from tests.e2e import test_check
from tests.e2e.helpers import Connections, instead_of_the_session_operator, scrape, value, wait_sweeps

pytestmark = pytest.mark.e2e

LAG = 10.0  # seconds before a write reaches the services that use it (checks run inside it, with room)
LINKED_WITHIN = 10.0  # after the identity becomes visible to the linking service
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
RG = "lag-rg"

# `check` as test_check runs it (the CLI with the operator's settings and the token endpoints), and the clouds
# trusting the cluster's issuer.
check = test_check.check
clouds_trust_cluster = test_check.clouds_trust_cluster


@pytest.fixture(scope="module")
def operator(operator: Operator, control_plane: ControlPlane, workdir: Path) -> Iterator[Operator]:
    """The session operator's settings, with the drift sweep every 2 s so that sweeps run while the lag does."""
    sweeping = {"PORTER_DRIFT_SWEEP_SECONDS": "2", "PORTER_METRICS_PORT": str(free_port())}
    with instead_of_the_session_operator(operator, control_plane, workdir, lagging=sweeping) as started:
        yield started["lagging"]


@pytest.fixture(scope="module")
def lagging(aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator) -> Iterator[None]:
    for cloud in (aws, azure, gcp):
        cloud.faults(propagationSeconds=LAG)
    try:
        yield
    finally:
        aws.reset()
        azure.reset()
        gcp.reset()


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator, lagging: None) -> Connections:
    return Connections(api, namespace)


class Transitions:
    """Every Ready (status, reason) a namespace's connections go through, as the API server's watch shows them."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.seen: dict[str, list[tuple[float, str, str]]] = {}
        self.lock = threading.Lock()
        self.stopped = False
        self.broken: Exception | None = None
        self.watch = watch.Watch()
        # From the version listed now: every change after this line is delivered, however late the stream opens.
        listed: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        self.since = str(listed["metadata"]["resourceVersion"])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stream = self.watch.stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            resource_version=self.since,
            timeout_seconds=180,
        )
        try:
            for event in stream:
                self._record(event["object"])
        except (ProtocolError, client.ApiException) as err:  # the namespace going away ends the stream
            if not self.stopped:
                self.broken = err

    def _record(self, obj: dict[str, Any]) -> None:
        cond = Connections.condition_of(obj)
        if cond is None:
            return
        with self.lock:
            history = self.seen.setdefault(obj["metadata"]["name"], [])
            if not history or history[-1][1:] != (cond["status"], cond["reason"]):
                history.append((time.monotonic(), cond["status"], cond["reason"]))

    def states(self, name: str) -> list[tuple[str, str]]:
        assert self.broken is None, f"the watch ended early, transitions may be missing: {self.broken}"
        with self.lock:
            return [(status, reason) for _, status, reason in self.seen.get(name, [])]

    def ready_at(self, name: str) -> float:
        """When the watch saw `name` Ready; the test's own read may see it a moment before the watch delivers it."""

        def seen() -> float | None:
            with self.lock:
                return next((when for when, status, _ in self.seen.get(name, []) if status == "True"), None)

        found: float = wait_for(seen, 10, what=f"the watch showing {name} Ready")
        return found

    def stop(self) -> None:
        self.stopped = True
        self.watch.stop()


@pytest.fixture
def transitions(api: client.ApiClient, conns: Connections) -> Iterator[Transitions]:
    recorder = Transitions(api, conns.namespace)
    yield recorder
    recorder.stop()


def orphans_now(operator: Operator) -> dict[str, float]:
    """The orphan gauge after a whole sweep (an earlier test file's deliberate orphan counts before this test)."""
    wait_sweeps(operator, count=1)
    metrics = scrape(operator)
    return {p: value(metrics, "porter_identity_orphaned_links", provider=p) for p in ("aws", "azure", "gcp")}


def linked(conns: Connections, transitions: Transitions, name: str, visible_at: float) -> dict[str, Any]:
    """Ready and Bound within LINKED_WITHIN of `visible_at`, when the linking service could first see the identity."""
    obj = conns.wait_ready(name, timeout=max(0.0, visible_at - time.monotonic()) + LINKED_WITHIN + 5)
    ready = conns.condition_of(obj)
    assert ready is not None and ready["reason"] == "Bound", ready
    linked_after = transitions.ready_at(name) - visible_at
    assert linked_after <= LINKED_WITHIN, f"linked {linked_after:.1f} s after the identity became visible"
    return obj


def quiet(conns: Connections, transitions: Transitions, operator: Operator, name: str, orphans: Any) -> None:
    """Through two sweeps after the link: Ready never went True then False, and no orphan was reported."""
    sweeps = value(scrape(operator), "porter_identity_drift_sweeps_total", outcome="completed")
    wait_for(
        lambda: value(scrape(operator), "porter_identity_drift_sweeps_total", outcome="completed") >= sweeps + 2,
        30,
        what="two sweeps after the link",
    )
    states = transitions.states(name)
    assert not [(a, b) for a, b in pairwise(states) if a[0] == "True" and b[0] != "True"], states
    lines = [json.loads(line) for line in operator.log().splitlines() if line.startswith("{")]
    reported = [x for x in lines if x.get("reason") == "OrphanedLink" and conns.namespace in x.get("message", "")]
    assert not reported, reported
    events = client.CoreV1Api(conns.custom.api_client).list_namespaced_event(conns.namespace).items
    assert not [e.message for e in events if e.reason == "OrphanedLink"]
    now = orphans_now(operator)
    assert all(now[p] <= orphans[p] for p in now), (orphans, now)


def test_aws_role_made_with_its_connection(
    conns: Connections,
    transitions: Transitions,
    aws: AwsEmulator,
    service_account: Any,
    operator: Operator,
    check: test_check.Check,
) -> None:
    orphans = orphans_now(operator)
    service_account(conns.namespace, "api")
    name = f"lag-{uuid.uuid4().hex[:8]}"
    role = aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=pod_identity_trust_policy())
    visible_at = time.monotonic() + LAG  # EKS sees the role from then on; IAM's GetRole at once
    arn = role["Role"]["Arn"]
    conns.create("api", "api", aws={"role": arn})

    # GetRole returns the role, EKS refuses it as absent: the operator waits for it to appear, check says so.
    waiting = conns.wait_reason("api", "NotYetPropagated", timeout=LAG)
    assert "EKS does not see IAM role" in waiting["message"], waiting
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["failedStep"], verdict["reason"], verdict["retrySoon"]) == (
        1,
        "connection",
        "NotYetPropagated",
        True,
    ), verdict
    assert f"IAM GetRole returns {arn}" in verdict["steps"][-1]["detail"]

    obj = linked(conns, transitions, "api", visible_at)
    quiet(conns, transitions, operator, "api", orphans)
    states = transitions.states("api")
    assert {reason for status, reason in states if status != "True"} <= {"NotYetPropagated", "Progressing"}, states
    found = aws.client("eks").list_pod_identity_associations(
        clusterName=EKS_CLUSTER, namespace=conns.namespace, serviceAccount="api"
    )["associations"]
    assert [a["associationId"] for a in found] == [obj["status"]["aws"]["associationId"]]
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["reason"]) == (0, "IdentityObtained"), verdict


def test_aws_a_role_that_does_not_exist_is_refused_not_propagating(
    conns: Connections, service_account: Any, check: test_check.Check
) -> None:
    service_account(conns.namespace, "api")
    conns.create("api", "api", aws={"role": f"arn:aws:iam::123456789012:role/absent-{uuid.uuid4().hex[:8]}"})
    conns.wait_reason("api", "RoleNotFound")
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["failedStep"], verdict["reason"], verdict["retrySoon"]) == (
        1,
        "connection",
        "ConnectionNotReady",
        False,
    ), verdict


def test_azure_credential_reaches_entra_after_its_link(
    conns: Connections,
    transitions: Transitions,
    azure: AzureEmulator,
    service_account: Any,
    operator: Operator,
    check: test_check.Check,
) -> None:
    orphans = orphans_now(operator)
    identity = azure.seed_identity(AZURE_SUBSCRIPTION, RG, f"lag-{uuid.uuid4().hex[:8]}")["name"]
    service_account(conns.namespace, "api")
    made = time.monotonic()  # ARM sees the credential at once: the link does not wait
    conns.create("api", "api", azure={"identityName": identity, "resourceGroup": RG})
    obj = linked(conns, transitions, "api", made)
    linked_at = transitions.ready_at("api")
    code, verdict = check(conns.namespace, "api")  # Entra does not have the credential yet
    assert (code, verdict["failedStep"], verdict["reason"], verdict["retrySoon"]) == (
        1,
        "exchange",
        "NotYetPropagated",
        True,
    ), verdict
    assert "ARM has federated credential" in verdict["steps"][-1]["detail"]

    quiet(conns, transitions, operator, "api", orphans)
    fics = azure.client(AZURE_SUBSCRIPTION).federated_identity_credentials
    subject = f"system:serviceaccount:{conns.namespace}:api"
    assert [f.name for f in fics.list(RG, identity) if f.subject == subject] == [
        obj["status"]["azure"]["credentialName"]
    ]
    time.sleep(max(0.0, linked_at + LAG + 0.5 - time.monotonic()))
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["reason"]) == (0, "IdentityObtained"), verdict


def test_gcp_service_account_made_with_its_connection(
    conns: Connections,
    transitions: Transitions,
    gcp: GcpEmulator,
    service_account: Any,
    operator: Operator,
    check: test_check.Check,
) -> None:
    orphans = orphans_now(operator)
    service_account(conns.namespace, "api")
    email = gcp.seed_service_account(GCP_PROJECT, f"lag-{uuid.uuid4().hex[:8]}")
    who = f"serviceAccount:{GCP_POOL}[{conns.namespace}/api]"
    visible_at = time.monotonic() + LAG  # its policy can be read and set from then on
    conns.create("api", "api", gcp={"serviceAccountEmail": email})

    waiting = conns.wait_reason("api", "NotYetPropagated", timeout=LAG)
    assert f"IAM shows service account {email}" in waiting["message"], waiting
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["failedStep"], verdict["reason"]) == (1, "connection", "NotYetPropagated"), verdict
    assert f"IAM GetServiceAccount returns {email}" in verdict["steps"][-1]["detail"]

    linked(conns, transitions, "api", visible_at)
    linked_at = transitions.ready_at("api")
    # The member is in the policy; the token services see the change LAG later.
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["failedStep"], verdict["reason"]) == (1, "identity", "NotYetPropagated"), verdict
    assert f"has {who}" in verdict["steps"][-1]["detail"]

    quiet(conns, transitions, operator, "api", orphans)
    states = transitions.states("api")
    assert {reason for status, reason in states if status != "True"} <= {"NotYetPropagated", "Progressing"}, states
    policy = gcp.client().get_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}"})
    assert [m for b in policy.bindings if b.role == WORKLOAD_IDENTITY_USER for m in b.members if m == who] == [who]
    time.sleep(max(0.0, linked_at + LAG + 0.5 - time.monotonic()))
    code, verdict = check(conns.namespace, "api")
    assert (code, verdict["reason"], verdict["identity"]) == (0, "IdentityObtained", email), verdict


def _links_over_time(sample: Any, until: float) -> list[int]:
    """How many links `sample()` finds, every 0.2 s until `until` (monotonic)."""
    counts = []
    while time.monotonic() < until:
        counts.append(sample())
        time.sleep(0.2)
    return counts


def test_aws_moving_to_a_role_made_a_moment_ago_keeps_the_old_link_until_the_new_one_is_made(
    conns: Connections, aws: AwsEmulator, service_account: Any, make_role: Any
) -> None:
    """Make before break under IAM's lag: EKS refuses the new role as absent while GetRole returns it; the old
    association stays (pods keep getting credentials) until the new role is linked."""
    service_account(conns.namespace, "api")
    old = make_role()
    time.sleep(LAG)  # the old role has reached EKS
    conns.create("api", "api", aws={"role": old})
    conns.wait_ready("api", timeout=LINKED_WITHIN)
    eks = aws.client("eks")

    def associations() -> int:
        return len(
            eks.list_pod_identity_associations(clusterName=EKS_CLUSTER, namespace=conns.namespace)["associations"]
        )

    name = f"lag-{uuid.uuid4().hex[:8]}"
    arn = aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=pod_identity_trust_policy())["Role"][
        "Arn"
    ]
    visible_at = time.monotonic() + LAG
    conns.patch_spec("api", {"aws": {"role": arn}})
    waiting = conns.wait_reason("api", "NotYetPropagated", timeout=LAG)
    assert "EKS does not see IAM role" in waiting["message"], waiting
    kept = _links_over_time(associations, visible_at - 1)
    assert kept and set(kept) == {1}, "the old association stays while EKS does not see the new role"
    obj = conns.wait_ready("api", timeout=LINKED_WITHIN + 5)
    assert obj["status"]["aws"]["roleArn"] == arn
    assert associations() == 1


def test_gcp_moving_to_a_service_account_made_a_moment_ago_keeps_the_old_member_until_the_new_one_is_added(
    conns: Connections, gcp: GcpEmulator, service_account: Any
) -> None:
    service_account(conns.namespace, "api")
    old = gcp.seed_service_account(GCP_PROJECT, f"lag-{uuid.uuid4().hex[:8]}")
    time.sleep(LAG)
    conns.create("api", "api", gcp={"serviceAccountEmail": old})
    conns.wait_ready("api", timeout=LINKED_WITHIN)
    who = f"serviceAccount:{GCP_POOL}[{conns.namespace}/api]"

    def members(email: str) -> set[str]:
        policy = gcp.client().get_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}"})
        return {m for b in policy.bindings if b.role == WORKLOAD_IDENTITY_USER for m in b.members}

    new = gcp.seed_service_account(GCP_PROJECT, f"lag-{uuid.uuid4().hex[:8]}")
    visible_at = time.monotonic() + LAG
    conns.patch_spec("api", {"gcp": {"serviceAccountEmail": new}})
    waiting = conns.wait_reason("api", "NotYetPropagated", timeout=LAG)
    assert f"IAM shows service account {new}" in waiting["message"], waiting
    kept = _links_over_time(lambda: int(who in members(old)), visible_at - 1)
    assert kept and set(kept) == {1}, "the old member stays while the new account is not usable yet"
    obj = conns.wait_ready("api", timeout=LINKED_WITHIN + 5)
    assert obj["status"]["identity"] == new
    assert who in members(new) and who not in members(old)
