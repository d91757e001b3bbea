"""GCP connections end to end: Workload Identity member on the IAM service account, ServiceAccount annotated."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from porter_dev.gcp import GcpEmulator
from porter_dev.processes import Operator
from tests.conftest import GCP_PROJECT, sa_annotations
from tests.e2e.helpers import Connections

pytestmark = pytest.mark.e2e
ROLE = "roles/iam.workloadIdentityUser"


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def members(gcp: GcpEmulator, email: str) -> list[str]:
    policy = gcp.client().get_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}"})
    return [m for b in policy.bindings if b.role == ROLE for m in b.members]


def gsa(gcp: GcpEmulator) -> str:
    return gcp.seed_service_account(GCP_PROJECT, f"svc-{uuid.uuid4().hex[:8]}")


def test_apply_binds_member_and_annotates_service_account(
    conns: Connections, gcp: GcpEmulator, api: client.ApiClient, service_account: Any
) -> None:
    email = gsa(gcp)
    service_account(conns.namespace, "api")
    conns.create("api", "api", gcp={"serviceAccountEmail": email})
    obj = conns.wait_ready("api")

    member = f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{conns.namespace}/api]"
    assert members(gcp, email) == [member]
    assert obj["status"]["gcp"] == {"member": member}
    assert sa_annotations(api, conns.namespace, "api")["iam.gke.io/gcp-service-account"] == email


def test_other_members_survive_and_delete_removes_only_ours(
    conns: Connections, gcp: GcpEmulator, api: client.ApiClient, service_account: Any
) -> None:
    email = gsa(gcp)
    other = f"serviceAccount:{GCP_PROJECT}.svc.id.goog[elsewhere/app]"
    iam = gcp.client()
    policy = iam.get_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}"})
    policy.bindings.add(role=ROLE, members=[other])
    iam.set_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}", "policy": policy})

    service_account(conns.namespace, "web")
    conns.create("web", "web", gcp={"serviceAccountEmail": email})
    conns.wait_ready("web")
    assert len(members(gcp, email)) == 2

    conns.delete("web")
    conns.wait_gone("web")
    assert members(gcp, email) == [other]
    assert "iam.gke.io/gcp-service-account" not in sa_annotations(api, conns.namespace, "web")


def test_missing_service_account_email_is_identity_not_found(conns: Connections) -> None:
    conns.create(
        "nogsa",
        "nogsa",
        gcp={"serviceAccountEmail": f"missing-{uuid.uuid4().hex[:6]}@{GCP_PROJECT}.iam.gserviceaccount.com"},
    )
    cond = conns.wait_reason("nogsa", "IdentityNotFound")
    assert "does not exist" in cond["message"]


def test_concurrent_connections_to_one_gsa_all_land(conns: Connections, gcp: GcpEmulator, service_account: Any) -> None:
    """Read-modify-write races on one policy (etags) must not lose a member."""
    email = gsa(gcp)
    names = [f"w{i}" for i in range(50)]
    for name in names:
        service_account(conns.namespace, name)
    for name in names:  # applied at once: the operator handles them concurrently
        conns.create(name, name, gcp={"serviceAccountEmail": email})
    for name in names:
        conns.wait_ready(name, timeout=120)
    expected = {f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{conns.namespace}/{n}]" for n in names}
    assert set(members(gcp, email)) == expected


def test_missing_kubernetes_service_account_waits_then_converges(
    conns: Connections, gcp: GcpEmulator, api: client.ApiClient, service_account: Any
) -> None:
    email = gsa(gcp)
    conns.create("late", "late", gcp={"serviceAccountEmail": email})
    conns.wait_reason("late", "ServiceAccountNotFound")
    assert conns.condition("late", "Reconciling")["status"] == "True"
    service_account(conns.namespace, "late")
    conns.wait_ready("late", timeout=60)
    assert sa_annotations(api, conns.namespace, "late")["iam.gke.io/gcp-service-account"] == email


def test_service_account_in_another_project_is_refused_at_admission(conns: Connections) -> None:
    with pytest.raises(client.ApiException) as refused:
        conns.create("far", "far", gcp={"serviceAccountEmail": "svc-far@other-project.iam.gserviceaccount.com"})
    assert refused.value.status == 403
    assert f"is in project other-project, not the configured {GCP_PROJECT}" in refused.value.body
    assert conns.get("far") is None


def test_retain_keeps_the_member_and_describe_shows_it(
    conns: Connections, gcp: GcpEmulator, service_account: Any, kubectl: Any
) -> None:
    email = gsa(gcp)
    service_account(conns.namespace, "kept")
    conns.create("kept", "kept", gcp={"serviceAccountEmail": email}, deletionPolicy="Retain")
    conns.wait_ready("kept")
    described = kubectl("-n", conns.namespace, "describe", "sic", "kept").stdout
    assert "Member:" in described and f"[{conns.namespace}/kept]" in described
    conns.delete("kept")
    conns.wait_gone("kept")
    assert members(gcp, email) == [f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{conns.namespace}/kept]"]


def test_second_connection_for_one_service_account_is_a_conflict_and_its_delete_touches_nothing(
    conns: Connections, gcp: GcpEmulator, service_account: Any
) -> None:
    first_gsa, second_gsa = gsa(gcp), gsa(gcp)
    service_account(conns.namespace, "shared")
    conns.create("first", "shared", gcp={"serviceAccountEmail": first_gsa})
    conns.wait_ready("first")
    conns.create("second", "shared", gcp={"serviceAccountEmail": second_gsa})
    cond = conns.wait_reason("second", "Conflict")
    assert "already linked by connection first" in cond["message"]
    assert members(gcp, second_gsa) == []

    conns.delete("second")
    conns.wait_gone("second")
    assert members(gcp, first_gsa) == [f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{conns.namespace}/shared]"]
    assert conns.condition("first")["status"] == "True"
