"""AWS connections end to end: real API server, operator process, AWS emulator."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client

from porter_dev.processes import AwsEmulator, Operator
from tests.conftest import EKS_CLUSTER, wait_for
from tests.e2e.helpers import Connections, sweeping, wait_sweeps

pytestmark = pytest.mark.e2e


def associations(aws: AwsEmulator, namespace: str, service_account: str | None = None) -> list[dict[str, Any]]:
    eks = aws.client("eks")
    query: dict[str, str] = {"clusterName": EKS_CLUSTER, "namespace": namespace}
    if service_account:
        query["serviceAccount"] = service_account
    out = []
    for page in eks.get_paginator("list_pod_identity_associations").paginate(**query):
        for summary in page["associations"]:
            out.append(
                eks.describe_pod_identity_association(clusterName=EKS_CLUSTER, associationId=summary["associationId"])[
                    "association"
                ]
            )
    return out


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def test_apply_becomes_ready_with_tagged_association(conns: Connections, aws: AwsEmulator, make_role: Any) -> None:
    role_arn = make_role()
    created = conns.create("api", "api", aws={"role": role_arn.rsplit("/", 1)[-1]})
    obj = conns.wait_ready("api")

    [assoc] = associations(aws, conns.namespace, "api")
    assert assoc["roleArn"] == role_arn
    assert assoc["tags"]["porter.run/managed"] == "true"
    assert assoc["tags"]["porter.run/connection-uid"] == created["metadata"]["uid"]
    status = obj["status"]
    assert status["aws"] == {
        "associationId": assoc["associationId"],
        "associationArn": assoc["associationArn"],
        "roleArn": role_arn,
    }
    assert status["provider"] == "aws"
    assert "identity.porter.run/finalizer" in obj["metadata"]["finalizers"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {"Ready", "LeastPrivilege"}
    assert (conditions["LeastPrivilege"]["status"], conditions["LeastPrivilege"]["reason"]) == (
        "True",
        "LeastPrivilege",
    )


def test_kubectl_get_and_describe_show_conditions_and_events(conns: Connections, kubectl: Any, make_role: Any) -> None:
    role_arn = make_role()
    conns.create("web", "web", aws={"role": role_arn})
    conns.wait_ready("web")

    table = kubectl("-n", conns.namespace, "get", "sic", "web").stdout.splitlines()
    assert table[0].split() == ["NAME", "SERVICEACCOUNT", "PROVIDER", "IDENTITY", "READY", "REASON", "AGE"]
    assert table[1].split()[:6] == ["web", "web", "aws", role_arn, "True", "Bound"]

    def described() -> str | None:
        out: str = kubectl("-n", conns.namespace, "describe", "sic", "web").stdout
        return out if "Created" in out and "Bound" in out else None

    out = wait_for(described, what="events in kubectl describe")
    assert "Type:                  Ready" in out
    assert "created EKS Pod Identity association a-" in out


def test_changing_the_role_updates_the_association_in_place(
    conns: Connections, aws: AwsEmulator, make_role: Any
) -> None:
    first, second = make_role(), make_role()
    conns.create("svc", "svc", aws={"role": first})
    before = conns.wait_ready("svc")["status"]["aws"]["associationId"]

    conns.patch_spec("svc", {"aws": {"role": second}})
    after = conns.wait_ready("svc")

    [assoc] = associations(aws, conns.namespace, "svc")
    assert assoc["associationId"] == before
    assert assoc["roleArn"] == second
    assert after["status"]["aws"]["roleArn"] == second
    assert any(e.reason == "Updated" for e in conns.events("svc"))


def test_delete_removes_the_association_and_the_finalizer(conns: Connections, aws: AwsEmulator, make_role: Any) -> None:
    conns.create("gone", "gone", aws={"role": make_role()})
    conns.wait_ready("gone")
    assert len(associations(aws, conns.namespace, "gone")) == 1

    conns.delete("gone")
    conns.wait_gone("gone")
    assert associations(aws, conns.namespace, "gone") == []


def test_retain_leaves_the_association(conns: Connections, aws: AwsEmulator, make_role: Any) -> None:
    conns.create("kept", "kept", aws={"role": make_role()}, deletionPolicy="Retain")
    assoc_id = conns.wait_ready("kept")["status"]["aws"]["associationId"]

    conns.delete("kept")
    conns.wait_gone("kept")
    assert [a["associationId"] for a in associations(aws, conns.namespace, "kept")] == [assoc_id]


def test_missing_role_is_stalled_role_not_found(conns: Connections, aws: AwsEmulator) -> None:
    conns.create("norole", "norole", aws={"role": "does-not-exist"})
    conns.wait_reason("norole", "RoleNotFound")
    stalled = conns.condition("norole", "Stalled")
    assert stalled is not None and stalled["status"] == "True"
    assert "does-not-exist" in stalled["message"]
    assert associations(aws, conns.namespace, "norole") == []
    assert any(e.reason == "RoleNotFound" and e.type == "Warning" for e in conns.events("norole"))

    conns.delete("norole")  # nothing was created, so the finalizer comes off at once
    conns.wait_gone("norole")


def test_association_owned_by_someone_else_is_a_conflict_never_taken(
    conns: Connections, aws: AwsEmulator, make_role: Any
) -> None:
    foreign_role = make_role()
    eks = aws.client("eks")
    foreign = eks.create_pod_identity_association(
        clusterName=EKS_CLUSTER, namespace=conns.namespace, serviceAccount="shared", roleArn=foreign_role
    )["association"]

    conns.create("mine", "shared", aws={"role": make_role()})
    cond = conns.wait_reason("mine", "Conflict")
    assert foreign["associationId"] in cond["message"]

    conns.delete("mine")
    conns.wait_gone("mine")
    [still] = associations(aws, conns.namespace, "shared")
    assert still["associationId"] == foreign["associationId"]
    assert still["roleArn"] == foreign_role


def test_an_association_carrying_our_uid_is_adopted(
    conns: Connections, aws: AwsEmulator, make_role: Any, kubectl: Any
) -> None:
    """A crash between "create" and "record status" leaves a tagged association: it is adopted, not duplicated."""
    role_arn = make_role()
    manifest = {
        "apiVersion": "identity.porter.run/v1alpha1",
        "kind": "ServiceIdentityConnection",
        "metadata": {"name": "adopt", "namespace": conns.namespace},
        "spec": {"serviceAccountName": "adopt", "aws": {"role": role_arn}},
    }
    # Simulate the crash: the association exists (tagged with our uid) but status never recorded it.
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    first = conns.wait_ready("adopt")
    assoc_id = first["status"]["aws"]["associationId"]
    conns.custom.patch_namespaced_custom_object_status(
        "identity.porter.run", "v1alpha1", conns.namespace, "serviceidentityconnections", "adopt",
        {"status": {"aws": None, "conditions": None, "observedGeneration": None}},
    )  # fmt: skip
    conns.patch_spec("adopt", {"deletionPolicy": "Retain"})  # a spec change makes the operator look again
    obj = wait_for(
        lambda: (o := conns.get("adopt")) and (o.get("status") or {}).get("aws") and o,
        what="status re-recorded",
    )
    assert obj["status"]["aws"]["associationId"] == assoc_id
    assert len(associations(aws, conns.namespace, "adopt")) == 1
    assert any(e.reason == "Adopted" for e in conns.events("adopt"))


def test_two_providers_are_refused_by_kubectl_apply(namespace: str, kubectl: Any, crds: None) -> None:
    manifest = {
        "apiVersion": "identity.porter.run/v1alpha1",
        "kind": "ServiceIdentityConnection",
        "metadata": {"name": "both", "namespace": namespace},
        "spec": {
            "serviceAccountName": "both",
            "aws": {"role": "r"},
            "gcp": {"serviceAccountEmail": "svc-acct@my-project.iam.gserviceaccount.com"},
        },
    }
    out = kubectl("apply", "-f", "-", stdin=json.dumps(manifest), check=False)
    assert out.returncode != 0
    assert "exactly one of aws, azure or gcp must be set" in out.stderr


def test_operator_restart_makes_no_duplicate_and_no_writes(
    conns: Connections, aws: AwsEmulator, make_role: Any, operator: Operator
) -> None:
    names = [f"r{i}" for i in range(5)]
    for name in names:
        conns.create(name, name, aws={"role": make_role()})
    versions = {name: conns.wait_ready(name)["metadata"]["resourceVersion"] for name in names}
    before = {name: associations(aws, conns.namespace, name) for name in names}
    probe_role = make_role()

    with sweeping(operator):
        operator.kill()
        aws.reset()
        operator.start()
        conns.create("probe", "probe", aws={"role": probe_role})
        conns.wait_ready("probe")
        wait_sweeps(operator, count=2)  # the restart's listing is long handled; an idle sweep writes nothing either
        calls = aws.calls()
    for name in names:
        assert conns.get(name)["metadata"]["resourceVersion"] == versions[name], name
        assert associations(aws, conns.namespace, name) == before[name]  # same id, role, modifiedAt
    # Other tests' namespaces may still be draining (deletes), but nothing resumed was reconciled:
    # the only role lookup and the only create are the probe's.
    assert calls.get("iam:GetRole") == 1, calls
    assert calls.get("eks:CreatePodIdentityAssociation") == 1, calls
    assert "eks:UpdatePodIdentityAssociation" not in calls, calls


def test_throttling_shows_reconciling_then_converges(conns: Connections, aws: AwsEmulator, make_role: Any) -> None:
    role_arn = make_role()
    # botocore makes 3 attempts per call: 4 throttles fail the first reconcile, the retry succeeds.
    aws.faults(rules=[{"fault": "throttle", "service": "eks", "operation": "CreatePodIdentityAssociation", "count": 4}])
    try:
        conns.create("slow", "slow", aws={"role": role_arn})
        conns.wait_ready("slow", timeout=60)
    finally:
        aws.faults(rules=[])
    throttled = [e for e in conns.events("slow") if e.reason == "Throttled"]
    assert throttled and throttled[0].type == "Warning"
    assert "throttled while creating the EKS Pod Identity association: ThrottlingException" in throttled[0].message
    obj = conns.get("slow")
    assert {c["type"] for c in obj["status"]["conditions"]} == {"Ready", "LeastPrivilege"}  # Reconciling removed
    assert len(associations(aws, conns.namespace, "slow")) == 1


def test_role_in_another_account_is_refused_at_admission(conns: Connections, aws: AwsEmulator) -> None:
    aws.reset()
    with pytest.raises(client.ApiException) as refused:
        conns.create("far", "far", aws={"role": "arn:aws:iam::999999999999:role/app"})
    assert refused.value.status == 403
    assert "is in account 999999999999, not the configured 123456789012" in refused.value.body
    assert conns.get("far") is None
    assert associations(aws, conns.namespace, "far") == []


@pytest.mark.parametrize(
    ("trust", "missing"),
    [
        ({"Service": "ec2.amazonaws.com"}, ["sts:AssumeRole"]),
        ({"Service": "pods.eks.amazonaws.com"}, ["sts:AssumeRole"]),
    ],
    ids=["other-principal", "no-tag-session"],
)
def test_role_that_pod_identity_cannot_assume_is_stalled_trust_policy_invalid(
    conns: Connections, aws: AwsEmulator, trust: dict[str, str], missing: list[str]
) -> None:
    name = f"untrusting-{uuid.uuid4().hex[:8]}"
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": trust, "Action": missing}]}
    aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(policy))
    conns.create("untrusting", "untrusting", aws={"role": name})
    cond = conns.wait_reason("untrusting", "TrustPolicyInvalid")
    stalled = conns.condition("untrusting", "Stalled")
    assert stalled is not None and stalled["status"] == "True"
    expected = "not sts:TagSession" if trust["Service"] == "pods.eks.amazonaws.com" else "does not allow the service"
    assert name in cond["message"] and expected in cond["message"]
    assert associations(aws, conns.namespace, "untrusting") == [], "no association for a role Pod Identity cannot use"
    conns.delete("untrusting")
    conns.wait_gone("untrusting")
