"""What a person sees with the real kubectl: printer columns with real values, describe with conditions and Events."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AWS_ACCOUNT_ID, Operator
from tests.conftest import AZURE_SUBSCRIPTION, GCP_PROJECT, wait_for
from tests.e2e.helpers import Connections
from tests.e2e.test_roleset import ACCESS_ROLE, SECRET_NS, RoleSets, _access_trust

pytestmark = pytest.mark.e2e
RG = "kubectl-rg"


def _columns(line: str) -> list[str]:
    """The cells of a kubectl table row (no value in these tests contains a space)."""
    return line.split()


def _describe_until(kubectl: Callable[..., Any], *args: str, wanted: list[str]) -> str:
    """kubectl describe, repeated until every wanted text is there (Events are posted after the status write)."""

    def described() -> str | None:
        out: str = kubectl("describe", *args).stdout
        return out if all(w in out for w in wanted) else None

    found: str = wait_for(described, what=f"{wanted} in kubectl describe {' '.join(args)}")
    return found


def _condition_block(described: str) -> str:
    return described.split("Conditions:", 1)[1].split("\n  ", 1)[1]


def test_get_sic_shows_real_values_for_each_provider_and_describe_explains_them(
    api: client.ApiClient,
    operator: Operator,
    namespace: str,
    kubectl: Callable[..., Any],
    make_role: Callable[..., str],
    azure: AzureEmulator,
    gcp: GcpEmulator,
    service_account: Callable[[str, str], None],
) -> None:
    conns = Connections(api, namespace)
    role_arn = make_role()
    identity = f"uami-{uuid.uuid4().hex[:8]}"
    azure.seed_identity(AZURE_SUBSCRIPTION, RG, identity)
    email = gcp.seed_service_account(GCP_PROJECT, f"svc-{uuid.uuid4().hex[:8]}")
    for sa in ("api", "inventory", "search"):
        service_account(namespace, sa)
    conns.create("api", "api", aws={"role": role_arn})
    conns.create("inventory", "inventory", azure={"identityName": identity, "resourceGroup": RG})
    conns.create("search", "search", gcp={"serviceAccountEmail": email})
    for name in ("api", "inventory", "search"):
        conns.wait_ready(name)

    table = kubectl("get", "sic", "-A").stdout.splitlines()
    assert _columns(table[0]) == [
        "NAMESPACE", "NAME", "SERVICEACCOUNT", "PROVIDER", "IDENTITY", "READY", "REASON", "AGE",
    ]  # fmt: skip
    rows = {cells[1]: cells for cells in map(_columns, table[1:]) if cells[0] == namespace}
    assert {name: cells[2:7] for name, cells in rows.items()} == {
        "api": ["api", "aws", role_arn, "True", "Bound"],
        "inventory": ["inventory", "azure", f"{RG}/{identity}", "True", "Bound"],
        "search": ["search", "gcp", email, "True", "Bound"],
    }
    assert all(re.fullmatch(r"\d+s", cells[7]) for cells in rows.values())
    assert "<none>" not in "\n".join(line for line in table if line.startswith(namespace))

    wide = kubectl("-n", namespace, "get", "sic", "-o", "wide").stdout
    assert "<none>" not in wide
    header, *lines = wide.splitlines()
    assert _columns(header)[-3:] == ["AGE", "LINK", "MESSAGE"]
    links = {line.split()[0]: line.split()[7] for line in lines}
    assert re.fullmatch(r"a-\w+", links["api"])
    assert links["inventory"].startswith(f"porter-{namespace}-inventory-")
    assert links["search"] == f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{namespace}/search]"
    assert all("is bound to" in line or "is federated with" in line or "may act as" in line for line in lines)

    aws = _describe_until(kubectl, "-n", namespace, "sic", "api", wanted=["Created", "Events:"])
    assert "Service Account Name:  api" in aws
    conditions = _condition_block(aws)
    message = rf"Message:\s+service account {namespace}/api is bound to {role_arn} by association a-\w+"
    assert re.search(message, conditions), conditions
    assert re.search(r"Reason:\s+Bound", conditions) and re.search(r"Status:\s+True", conditions)
    events = aws.split("Events:", 1)[1]
    assert re.search(
        r"Normal\s+Created\s+\S+\s+porter-identity\s+created EKS Pod Identity association a-\w+", events
    ), events

    # kopf keeps no last-handled state for connections (the runner decides what changed): labels a GitOps tool
    # adds are printed once, and status holds only what the operator reports.
    kubectl("-n", namespace, "label", "sic", "api", "team=payments", "app.kubernetes.io/instance=shop")
    labelled = json.loads(kubectl("-n", namespace, "get", "sic", "api", "-o", "json").stdout)
    assert "kopf" not in labelled["status"]
    assert kubectl("-n", namespace, "describe", "sic", "api").stdout.count("payments") == 1  # the Labels line

    az = _describe_until(kubectl, "-n", namespace, "sic", "inventory", wanted=["Events:", "federated"])
    assert re.search(r"Credential Name:\s+porter-", az) and re.search(r"Client Id:\s+\S+", az)
    assert "federated identity credential" in az.split("Events:", 1)[1]

    gc = _describe_until(kubectl, "-n", namespace, "sic", "search", wanted=["Events:", "workloadIdentityUser"])
    member = re.escape(f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{namespace}/search]")
    assert re.search(rf"Member:\s+{member}\n", gc), gc
    assert "workloadIdentityUser" in gc.split("Events:", 1)[1]


def test_a_stalled_connection_says_why_in_get_and_describe(
    api: client.ApiClient, operator: Operator, namespace: str, kubectl: Callable[..., Any]
) -> None:
    conns = Connections(api, namespace)
    conns.create("missing", "missing", aws={"role": "no-such-role"})
    conns.wait_reason("missing", "RoleNotFound")
    [row] = [_columns(line) for line in kubectl("-n", namespace, "get", "sic").stdout.splitlines()[1:]]
    # The Identity column shows the identity actually linked: none here; the message names the one asked for.
    assert row[1:5] == ["missing", "aws", "False", "RoleNotFound"]
    described = _describe_until(kubectl, "-n", namespace, "sic", "missing", wanted=["Warning", "RoleNotFound"])
    conditions = _condition_block(described)
    assert re.search(r"Type:\s+Stalled", conditions) and "no-such-role" in conditions
    assert re.search(r"Warning\s+RoleNotFound\s+", described.split("Events:", 1)[1])


def test_get_prs_shows_real_values_and_describe_shows_roles_conditions_and_events(
    api: client.ApiClient, operator: Operator, aws: Any, kubectl: Callable[..., Any]
) -> None:
    iam = aws.client("iam")
    external_id = "kubectl-" + uuid.uuid4().hex
    try:
        iam.create_role(RoleName=ACCESS_ROLE, AssumeRolePolicyDocument=_access_trust(external_id))
    except iam.exceptions.EntityAlreadyExistsException:
        iam.update_assume_role_policy(RoleName=ACCESS_ROLE, PolicyDocument=_access_trust(external_id))
    core = client.CoreV1Api(api)
    if SECRET_NS not in [ns.metadata.name for ns in core.list_namespace().items]:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=SECRET_NS)))
    rolesets = RoleSets(api)
    name = f"kubectl-{uuid.uuid4().hex[:6]}"
    role = f"porter-e2e-{name}"
    rolesets.secret("kubectl-external-id", external_id)  # a name the chart's RBAC lists (tests/conftest.py)
    rolesets.create(
        name,
        "kubectl-external-id",
        roles=[
            {
                "name": role,
                "trust": {"services": ["ec2.amazonaws.com"]},
                "statements": [{"sid": "Read", "actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::kubectl/*"]}],
            }
        ],
        deletionPolicy="Delete",  # the role is this test's own: leave nothing in the shared account
    )
    try:
        rolesets.wait_ready(name)
        table = kubectl("get", "prs", name).stdout.splitlines()
        assert _columns(table[0]) == ["NAME", "ACCOUNT", "ROLES", "READY", "REASON", "AGE"]
        assert _columns(table[1])[:5] == [name, AWS_ACCOUNT_ID, "1/1", "True", "Synced"]
        assert "<none>" not in table[1]

        described = _describe_until(kubectl, "prs", name, wanted=["Events:", "Synced"])
        assert re.search(r"Roles Ready:\s+1/1", described)
        assert f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/{role}" in described
        conditions = _condition_block(described)
        assert re.search(r"Reason:\s+Synced", conditions) and re.search(r"Message:\s+\S+", conditions)
        events = described.split("Events:", 1)[1]
        assert role in events and "<none>" not in events.splitlines()[0]
        assert external_id not in described
    finally:
        rolesets.delete(name)
        rolesets.wait_gone(name)
        core.delete_namespaced_secret("kubectl-external-id", SECRET_NS)
