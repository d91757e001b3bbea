"""The drift sweep end to end: links deleted or changed directly in the emulators come back, orphans are reported.

Here an operator sweeping every 3 s takes the session operator's place; the session one keeps the default
interval, so other tests that break links on purpose (test_check.py) see them stay broken."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.msi.models import FederatedIdentityCredential
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane, free_port
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AwsEmulator, Operator
from porter_identity.clouds.azure.plan import credential_name
from porter_identity.reconcile import reconcile_policy
from tests.conftest import AZURE_SUBSCRIPTION, EKS_CLUSTER, GCP_PROJECT, wait_for
from tests.e2e.helpers import Connections, instead_of_the_session_operator
from tests.e2e.test_metrics import scrape, value

pytestmark = pytest.mark.e2e
RG = "drift-rg"
WI_ROLE = "roles/iam.workloadIdentityUser"
SWEEP_WAIT = 20  # several sweeps at 3 s, with room for a busy machine


@pytest.fixture(scope="module")
def operator(operator: Operator, control_plane: ControlPlane, workdir: Path) -> Iterator[Operator]:
    sweeping = {
        "PORTER_DRIFT_SWEEP_SECONDS": "3",
        "PORTER_STALLED_RECHECK_SECONDS": "3",
        "PORTER_METRICS_PORT": str(free_port()),
    }
    with instead_of_the_session_operator(operator, control_plane, workdir, sweeping=sweeping) as started:
        yield started["sweeping"]


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def drift_events(conns: Connections, name: str) -> list[client.CoreV1Event]:
    return [e for e in conns.events(name) if e.reason == "DriftCorrected"]


def describe(aws: AwsEmulator, association_id: str) -> dict[str, Any]:
    found: dict[str, Any] = aws.client("eks").describe_pod_identity_association(
        clusterName=EKS_CLUSTER, associationId=association_id
    )["association"]
    return found


def test_aws_association_deleted_outside_is_recreated_with_an_event(
    conns: Connections, aws: AwsEmulator, make_role: Any
) -> None:
    role = make_role()
    conns.create("gone", "gone", aws={"role": role})
    old = conns.wait_ready("gone")["status"]["aws"]["associationId"]
    aws.client("eks").delete_pod_identity_association(clusterName=EKS_CLUSTER, associationId=old)

    def recreated() -> str | None:
        recorded = ((conns.get("gone") or {}).get("status") or {}).get("aws", {}).get("associationId")
        return recorded if recorded and recorded != old else None

    new = wait_for(recreated, SWEEP_WAIT, what="a new association recorded in status")
    found = describe(aws, new)
    assert (found["namespace"], found["serviceAccount"], found["roleArn"]) == (conns.namespace, "gone", role)
    assert found["tags"]["porter.run/connection-uid"] == conns.get("gone")["metadata"]["uid"]  # type: ignore[index]
    [event] = wait_for(lambda: drift_events(conns, "gone"), 10, what="DriftCorrected Event")
    assert event.type == "Warning" and old in event.message and new in event.message
    assert conns.condition("gone")["status"] == "True"  # type: ignore[index]


def test_aws_role_changed_outside_is_restored(conns: Connections, aws: AwsEmulator, make_role: Any) -> None:
    role, other = make_role(), make_role()
    conns.create("moved", "moved", aws={"role": role})
    obj = conns.wait_ready("moved")
    association_id = obj["status"]["aws"]["associationId"]
    aws.client("eks").update_pod_identity_association(
        clusterName=EKS_CLUSTER, associationId=association_id, roleArn=other
    )

    wait_for(lambda: describe(aws, association_id)["roleArn"] == role, SWEEP_WAIT, what="role restored")
    [event] = wait_for(lambda: drift_events(conns, "moved"), 10, what="DriftCorrected Event")
    assert other in event.message and role in event.message
    # same association, updated in place: status did not need to change
    after = conns.get("moved")
    assert after is not None and after["status"]["aws"] == obj["status"]["aws"]


def test_drift_that_cannot_be_repaired_is_stalled_and_rechecked(
    conns: Connections, aws: AwsEmulator, make_role: Any
) -> None:
    role = make_role()
    name = role.rsplit("/", 1)[-1]
    conns.create("lost", "lost", aws={"role": role})
    old = conns.wait_ready("lost")["status"]["aws"]["associationId"]
    aws.client("eks").delete_pod_identity_association(clusterName=EKS_CLUSTER, associationId=old)
    iam = aws.client("iam")
    trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    iam.delete_role(RoleName=name)

    stalled = conns.wait_reason("lost", "RoleNotFound", SWEEP_WAIT)
    assert conns.condition("lost", "Stalled")["status"] == "True"  # type: ignore[index]
    assert role in stalled["message"]
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))  # the customer puts it back
    obj = conns.wait_ready("lost", SWEEP_WAIT)
    assert obj["status"]["aws"]["associationId"] not in (None, old)
    assert describe(aws, obj["status"]["aws"]["associationId"])["roleArn"] == role


def identity(azure: AzureEmulator) -> str:
    name = f"uami-{uuid.uuid4().hex[:8]}"
    azure.seed_identity(AZURE_SUBSCRIPTION, RG, name)
    return name


def test_azure_credential_deleted_or_changed_outside_is_restored(
    conns: Connections, azure: AzureEmulator, service_account: Any, control_plane: ControlPlane
) -> None:
    uami = identity(azure)
    service_account(conns.namespace, "api")
    conns.create("api", "api", azure={"identityName": uami, "resourceGroup": RG})
    name = conns.wait_ready("api")["status"]["azure"]["credentialName"]
    fics = azure.client(AZURE_SUBSCRIPTION).federated_identity_credentials
    subject = f"system:serviceaccount:{conns.namespace}:api"

    fics.delete(RG, uami, name)
    restored = wait_for(lambda: [c for c in fics.list(RG, uami) if c.name == name], SWEEP_WAIT, what="FIC back")
    assert restored[0].subject == subject and restored[0].issuer == control_plane.server
    wait_for(lambda: len(drift_events(conns, "api")) == 1, 10, what="one DriftCorrected Event")

    wrong = FederatedIdentityCredential(
        issuer=control_plane.server,
        subject="system:serviceaccount:evil:thief",
        audiences=["api://AzureADTokenExchange"],
    )
    fics.create_or_update(RG, uami, name, wrong)
    wait_for(lambda: fics.get(RG, uami, name).subject == subject, SWEEP_WAIT, what="subject restored")
    events = wait_for(lambda: (e := drift_events(conns, "api")) and len(e) == 2 and e, 10, what="second Event")
    assert any("system:serviceaccount:evil:thief" in e.message for e in events)


def test_gcp_member_removed_outside_is_restored(conns: Connections, gcp: GcpEmulator, service_account: Any) -> None:
    email = gcp.seed_service_account(GCP_PROJECT, f"drift-{uuid.uuid4().hex[:8]}")
    other = f"serviceAccount:{GCP_PROJECT}.svc.id.goog[elsewhere/app]"
    service_account(conns.namespace, "web")
    conns.create("web", "web", gcp={"serviceAccountEmail": email})
    member = conns.wait_ready("web")["status"]["gcp"]["member"]
    iam, resource = gcp.client(), f"projects/{GCP_PROJECT}/serviceAccounts/{email}"
    policy = iam.get_iam_policy(request={"resource": resource})
    del policy.bindings[:]
    policy.bindings.add(role=WI_ROLE, members=[other])  # someone replaced the binding's members
    iam.set_iam_policy(request={"resource": resource, "policy": policy})

    def bound() -> list[str]:
        found = iam.get_iam_policy(request={"resource": resource})
        return sorted(m for b in found.bindings if b.role == WI_ROLE for m in b.members)

    wait_for(lambda: bound() == sorted([member, other]), SWEEP_WAIT, what="member restored, other kept")
    [event] = wait_for(lambda: drift_events(conns, "web"), 10, what="DriftCorrected Event")
    assert member in event.message


def test_orphans_are_reported_once_and_left_in_place(
    conns: Connections,
    aws: AwsEmulator,
    azure: AzureEmulator,
    make_role: Any,
    service_account: Any,
    operator: Operator,
    control_plane: ControlPlane,
) -> None:
    """A link tagged or named as ours with no connection: a Warning log line and an Event on its ServiceAccount;
    with PORTER_DELETE_ORPHANS unset it stays (test_drift_scale.py covers deletion)."""
    service_account(conns.namespace, "left")
    orphan = aws.client("eks").create_pod_identity_association(
        clusterName=EKS_CLUSTER,
        namespace=conns.namespace,
        serviceAccount="left",
        roleArn=make_role(),
        tags={"porter.run/managed": "true", "porter.run/connection-uid": str(uuid.uuid4())},
    )["association"]["associationId"]
    # Azure: a credential named by our scheme on an identity a live connection uses (so the sweep lists it)
    uami = identity(azure)
    service_account(conns.namespace, "live")
    service_account(conns.namespace, "old")
    conns.create("live", "live", azure={"identityName": uami, "resourceGroup": RG})
    conns.wait_ready("live")
    fics = azure.client(AZURE_SUBSCRIPTION).federated_identity_credentials
    stale = credential_name(control_plane.server, conns.namespace, "old")
    fics.create_or_update(
        RG, uami, stale,
        FederatedIdentityCredential(
            issuer=control_plane.server,
            subject=f"system:serviceaccount:{conns.namespace}:old",
            audiences=["api://AzureADTokenExchange"],
        ),
    )  # fmt: skip

    def reported(link: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in operator.log().splitlines() if line.startswith("{")]
        return [x for x in lines if x.get("reason") == "OrphanedLink" and link in x.get("message", "")]

    [aws_line] = wait_for(lambda: reported(orphan), SWEEP_WAIT, what="AWS orphan logged")
    [azure_line] = wait_for(lambda: reported(stale), SWEEP_WAIT, what="Azure orphan logged")
    assert aws_line["provider"] == "aws" and azure_line["provider"] == "azure"
    assert aws_line["severity"] == "warning"
    core = client.CoreV1Api(conns.custom.api_client)

    def sa_events(name: str) -> list[client.CoreV1Event]:
        found: list[client.CoreV1Event] = core.list_namespaced_event(
            conns.namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=ServiceAccount"
        ).items
        return [e for e in found if e.reason == "OrphanedLink"]

    [aws_event] = wait_for(lambda: sa_events("left"), 10, what="Event on ServiceAccount left")
    assert orphan in aws_event.message and aws_event.type == "Warning"
    wait_for(lambda: sa_events("old"), 10, what="Event on ServiceAccount old")
    # two more sweeps: still there (nothing deleted without PORTER_DELETE_ORPHANS), still reported once
    sweeps = value(scrape(operator), "porter_identity_drift_sweeps_total", outcome="completed")
    wait_for(
        lambda: value(scrape(operator), "porter_identity_drift_sweeps_total", outcome="completed") >= sweeps + 2,
        SWEEP_WAIT,
        what="two more sweeps",
    )
    assert describe(aws, orphan)["associationId"] == orphan
    assert fics.get(RG, uami, stale).name == stale
    assert len(reported(orphan)) == 1 and len(sa_events("left")) == 1
    assert value(scrape(operator), "porter_identity_orphaned_links", provider="aws") >= 1


def _annotate(conns: Connections, name: str, value: str | None) -> None:
    conns.custom.patch_namespaced_custom_object(
        "identity.porter.run",
        "v1alpha1",
        conns.namespace,
        "serviceidentityconnections",
        name,
        {"metadata": {"annotations": {reconcile_policy.ANNOTATION: value}}},
    )


def test_with_reconcile_policy_skip_an_outside_delete_is_not_repaired_and_the_event_says_why(
    conns: Connections, aws: AwsEmulator, make_role: Any
) -> None:
    role = make_role()
    conns.create("paused", "paused", aws={"role": role})
    old = conns.wait_ready("paused")["status"]["aws"]["associationId"]
    _annotate(conns, "paused", "skip")
    aws.client("eks").delete_pod_identity_association(clusterName=EKS_CLUSTER, associationId=old)

    def paused_events() -> list[client.CoreV1Event]:
        return [e for e in conns.events("paused") if e.reason == "Paused" and "running it again" in e.message]

    [event, *_] = wait_for(paused_events, SWEEP_WAIT, what="a Paused Event from the sweep")
    assert reconcile_policy.ANNOTATION in event.message and "remove the annotation" in event.message
    listed = aws.client("eks").list_pod_identity_associations(clusterName=EKS_CLUSTER, namespace=conns.namespace)
    assert [a for a in listed["associations"] if a["serviceAccount"] == "paused"] == []  # not repaired
    assert not drift_events(conns, "paused")

    _annotate(conns, "paused", None)  # resume: repaired at once, not at the next sweep only

    def recreated() -> str | None:
        recorded = ((conns.get("paused") or {}).get("status") or {}).get("aws", {}).get("associationId")
        return recorded if recorded and recorded != old else None

    assert wait_for(recreated, SWEEP_WAIT, what="the link back after the annotation went")


def test_with_reconcile_policy_detach_on_delete_the_link_outlives_the_connection_and_is_no_orphan(
    conns: Connections, aws: AwsEmulator, make_role: Any
) -> None:
    role = make_role()
    conns.create("detached", "detached", aws={"role": role})
    kept = conns.wait_ready("detached")["status"]["aws"]["associationId"]
    _annotate(conns, "detached", "detach-on-delete")
    conns.delete("detached")
    conns.wait_gone("detached")
    assert describe(aws, kept)["serviceAccount"] == "detached"
    [event] = [e for e in conns.events("detached") if e.reason == "Detached"]
    assert reconcile_policy.ANNOTATION in event.message
    aws.client("eks").delete_pod_identity_association(clusterName=EKS_CLUSTER, associationId=kept)  # tidy up
