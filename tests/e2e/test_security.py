"""Security e2e: annotation allows and its withdrawal is enforced, secrets never leak, broad permissions flagged."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AWS_ACCOUNT_ID, AwsEmulator, Operator
from porter_dev.sandbox import access_trust_policy
from tests.conftest import AZURE_SUBSCRIPTION, EKS_CLUSTER, GCP_PROJECT, OPERATOR_NAMESPACE, wait_for
from tests.e2e import helpers
from tests.e2e.helpers import Connections

pytestmark = pytest.mark.e2e
ANNOTATION = "identity.porter.run/allowed-identities"


def associations(aws: AwsEmulator, namespace: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = aws.client("eks").list_pod_identity_associations(
        clusterName=EKS_CLUSTER, namespace=namespace
    )["associations"]
    return found


@pytest.fixture
def uncovered(api: client.ApiClient) -> Iterator[str]:
    """A namespace no rule of the e2e policy covers: only its annotation can allow anything."""
    name = f"r-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def test_annotation_allows_and_its_withdrawal_removes_the_link_on_resume(
    api: client.ApiClient, operator: Operator, aws: AwsEmulator, make_role: Any, uncovered: str
) -> None:
    core = client.CoreV1Api(api)
    conns = Connections(api, uncovered)
    role = make_role()  # an ARN; allow rules match the role's name
    with pytest.raises(client.ApiException) as refused:
        conns.create("app", "app", aws={"role": role})
    assert refused.value.status == 403 and f"no rule covers namespace {uncovered}" in refused.value.body

    grant = f"gcp:x-* aws:{role.rsplit('/', 1)[-1]}"
    core.patch_namespace(uncovered, {"metadata": {"annotations": {ANNOTATION: grant}}})

    def created() -> bool:
        try:
            conns.create("app", "app", aws={"role": role})
        except client.ApiException as err:  # the operator's namespace index may lag the patch by a watch event
            assert err.status == 403, err.body
            return False
        return True

    wait_for(created, 10, what="the annotation to allow the connection")
    conns.wait_ready("app")
    assert len(associations(aws, uncovered)) == 1

    # The admin withdraws the grant while the operator is down: on resume the link is removed.
    operator.kill()
    core.patch_namespace(uncovered, {"metadata": {"annotations": {ANNOTATION: None}}})
    operator.start()
    cond = conns.wait_reason("app", "NotAllowed")
    assert f"not allowed by policy: no rule covers namespace {uncovered}" in cond["message"]
    assert conns.condition("app", "Stalled") is not None
    assert associations(aws, uncovered) == []
    reasons = {e.reason for e in conns.events("app")}
    assert {"NotAllowed", "Deleted"} <= reasons
    obj = conns.get("app")
    assert obj is not None and "aws" not in obj["status"], "status no longer claims a link"
    conns.delete("app")
    conns.wait_gone("app")


def test_no_secret_appears_in_logs_events_status_or_metrics(
    api: client.ApiClient,
    operator: Operator,
    aws: AwsEmulator,
    azure: AzureEmulator,
    namespace: str,
    service_account: Any,
) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    iam = aws.client("iam")
    suffix = uuid.uuid4().hex[:8]
    external_id = f"sec-ext-{uuid.uuid4().hex}"
    access = f"sec-access-{suffix}"
    iam.create_role(
        RoleName=access,
        AssumeRolePolicyDocument=access_trust_policy(
            {"managementPrincipal": f"arn:aws:iam::{AWS_ACCOUNT_ID}:root", "externalId": external_id}
        ),
    )
    core.create_namespaced_secret(
        OPERATOR_NAMESPACE,  # the chart lets the operator read Secrets here only
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="sec-external-id"),
            data={"externalId": base64.b64encode(external_id.encode()).decode()},
        ),
    )
    roleset = f"sec-{suffix}"
    body = helpers.roleset(
        roleset, (OPERATOR_NAMESPACE, "sec-external-id"), access, roles=[{"preset": "porter-manager"}]
    )
    custom.create_cluster_custom_object("identity.porter.run", "v1alpha1", "porterrolesets", body)

    # A linked ServiceAccount with a live token: the operator annotates it, so it is in the operator's reach.
    service_account(namespace, "tok")
    token = core.create_namespaced_service_account_token(
        "tok", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=["api"]))
    ).status.token
    assert token and len(token) > 100
    uami = f"sec-{suffix}"
    azure.seed_identity(AZURE_SUBSCRIPTION, "sec-rg", uami)
    conns = Connections(api, namespace)
    conns.create("tok", "tok", azure={"identityName": uami, "resourceGroup": "sec-rg"})
    conns.wait_ready("tok")

    def roleset_ready() -> bool:
        obj = custom.get_cluster_custom_object("identity.porter.run", "v1alpha1", "porterrolesets", roleset)
        conds = (obj.get("status") or {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    wait_for(roleset_ready, 60, what=f"PorterRoleSet {roleset} Ready (the ExternalId was used)")

    events = [e.to_dict() for e in core.list_event_for_all_namespaces().items]
    statuses = [
        o.get("status")
        for o in custom.list_cluster_custom_object("identity.porter.run", "v1alpha1", "serviceidentityconnections")[
            "items"
        ]
    ]
    statuses += [
        o.get("status")
        for o in custom.list_cluster_custom_object("identity.porter.run", "v1alpha1", "porterrolesets")["items"]
    ]
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.env['PORTER_METRICS_PORT']}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    places = {
        "operator log": operator.log(),
        "events": json.dumps(events, default=str),
        "status": json.dumps(statuses),
        "metrics": metrics,
    }
    assert len(events) > 0 and "porter_identity" in metrics and roleset in places["status"]
    secrets = {"ExternalId": external_id, "ServiceAccount token": token, "Azure bearer": "Bearer emulator"}
    leaks = [f"{what} in {where}" for what, value in secrets.items() for where, text in places.items() if value in text]
    assert leaks == []
    custom.delete_cluster_custom_object("identity.porter.run", "v1alpha1", "porterrolesets", roleset)


OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"


def least_privilege(conns: Connections, name: str) -> dict[str, Any]:
    found = conns.condition(name, "LeastPrivilege")
    assert found is not None, f"{name} has no LeastPrivilege condition"
    return found


def test_broad_permissions_warn_but_still_link(
    api: client.ApiClient,
    operator: Operator,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    make_role: Any,
    namespace: str,
    service_account: Any,
) -> None:
    conns = Connections(api, namespace)
    role = make_role()
    aws.client("iam").attach_role_policy(
        RoleName=role.rsplit("/", 1)[-1], PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    uami = f"lp-{uuid.uuid4().hex[:8]}"
    principal = azure.seed_identity(AZURE_SUBSCRIPTION, "lp-rg", uami)["properties"]["principalId"]
    azure.assign_role(AZURE_SUBSCRIPTION, principal, OWNER)
    email = gcp.seed_service_account(GCP_PROJECT, f"lp-{uuid.uuid4().hex[:8]}")
    gcp.grant_on_project(GCP_PROJECT, "roles/editor", f"serviceAccount:{email}")
    for sa in ("aws-admin", "azure-owner", "gcp-editor"):
        service_account(namespace, sa)
    conns.create("aws-admin", "aws-admin", aws={"role": role})
    conns.create("azure-owner", "azure-owner", azure={"identityName": uami, "resourceGroup": "lp-rg"})
    conns.create("gcp-editor", "gcp-editor", gcp={"serviceAccountEmail": email})
    expected = {
        "aws-admin": "managed policy AdministratorAccess is attached",
        "azure-owner": f"role Owner is assigned at scope /subscriptions/{AZURE_SUBSCRIPTION}",
        "gcp-editor": f"roles/editor is granted on project {GCP_PROJECT}",
    }
    for name, finding in expected.items():
        conns.wait_ready(name)
        cond = least_privilege(conns, name)
        assert (cond["status"], cond["reason"]) == ("False", "BroadPermissions") and finding in cond["message"]
        warnings = [e for e in conns.events(name) if e.reason == "BroadPermissions"]
        assert len(warnings) == 1 and warnings[0].type == "Warning" and finding in warnings[0].message
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.env['PORTER_METRICS_PORT']}/metrics", timeout=5) as r:
        scraped = r.read().decode()
    for operation in ('"ListAttachedRolePolicies"', '"LIST roleAssignments"', '"GetProjectIamPolicy"'):
        assert f"operation={operation}" in scraped, f"{operation} is not counted in /metrics"


def test_broad_permissions_block_when_configured_and_nothing_is_linked(
    api: client.ApiClient, operator: Operator, aws: AwsEmulator, make_role: Any, namespace: str
) -> None:
    conns = Connections(api, namespace)
    role = make_role()
    aws.client("iam").put_role_policy(
        RoleName=role.rsplit("/", 1)[-1],
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*:*", "Resource": "*"}]}
        ),
    )
    operator.stop()
    operator.env["PORTER_BLOCK_BROAD_PERMISSIONS"] = "true"
    try:
        operator.start()
        conns.create("blocked", "blocked", aws={"role": role})
        cond = conns.wait_reason("blocked", "BroadPermissions")
        assert "inline policy everything allows * on *" in cond["message"]
        assert conns.condition("blocked", "Stalled") is not None
        assert (least_privilege(conns, "blocked")["status"]) == "False"
        assert associations(aws, namespace) == []
    finally:
        operator.stop()
        del operator.env["PORTER_BLOCK_BROAD_PERMISSIONS"]
        operator.start()


def test_blocked_broad_permissions_remove_an_existing_link_on_resume(
    api: client.ApiClient, operator: Operator, aws: AwsEmulator, make_role: Any, namespace: str
) -> None:
    """A linked role made admin while the operator was down: with PORTER_BLOCK_BROAD_PERMISSIONS the resume reads
    its permissions (the up-to-date shortcut does not skip it) and removes the live association."""
    conns = Connections(api, namespace)
    role = make_role()
    conns.create("later", "later", aws={"role": role})
    conns.wait_ready("later")
    assert len(associations(aws, namespace)) == 1
    operator.stop()
    aws.client("iam").put_role_policy(
        RoleName=role.rsplit("/", 1)[-1],
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*:*", "Resource": "*"}]}
        ),
    )
    operator.env["PORTER_BLOCK_BROAD_PERMISSIONS"] = "true"
    try:
        operator.start()
        conns.wait_reason("later", "BroadPermissions")
        wait_for(lambda: associations(aws, namespace) == [], 20, what="the association removed")
    finally:
        operator.stop()
        del operator.env["PORTER_BLOCK_BROAD_PERMISSIONS"]
        operator.start()
