"""Malformed and hostile specs through `kubectl apply`: each refused with its exact reason, nothing made in a cloud."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AWS_ACCOUNT_ID, AwsEmulator, Operator
from tests.conftest import AZURE_SUBSCRIPTION, EKS_CLUSTER, GCP_PROJECT, wait_for
from tests.e2e.helpers import Connections, webhook_bypassed

pytestmark = pytest.mark.e2e

SUFFIX = uuid.uuid4().hex[:6]
OK, FORBIDDEN, RESERVED = f"ok-{SUFFIX}", f"forbidden-{SUFFIX}", f"porter-hst-{SUFFIX}"
RG = "ok-rg"
HOSTILE_NS, UNCOVERED_NS = f"h-{SUFFIX}", f"u-{SUFFIX}"

# Messages the CRD's rules return (api/validation.py), the webhook's policy refusals (reconcile/policy.py).
SA_RULE = "serviceAccountName must be a DNS-1123 subdomain"
ROLE_RULE = "role must be an IAM role name"
ONE_PROVIDER = "exactly one of aws, azure or gcp must be set"
IDENTITY_RULE = "identityName must be 3-128 letters"
RG_RULE = "resourceGroup must be 1-90 letters"
EMAIL_RULE = "serviceAccountEmail must be an IAM service account email"
RESERVED_MSG = "one of Porter's own identities (porter-*)"


def email(name: str, project: str = GCP_PROJECT) -> str:
    return f"{name}@{project}.iam.gserviceaccount.com"


@dataclass(frozen=True)
class Case:
    id: str
    spec: dict[str, Any]
    expected: str
    namespace: str = HOSTILE_NS


def aws(role: str, sa: str = "app") -> dict[str, Any]:
    return {"serviceAccountName": sa, "aws": {"role": role}}


def azure(name: str, rg: str = RG) -> dict[str, Any]:
    return {"serviceAccountName": "app", "azure": {"identityName": name, "resourceGroup": rg}}


def gcp(address: str) -> dict[str, Any]:
    return {"serviceAccountName": "app", "gcp": {"serviceAccountEmail": address}}


CREATES = [
    # -- structure (CRD schema and CEL: they hold even with the webhook down). The connection's webhook is a mutating
    # one, which the API server calls before it checks the schema: it answers first, with the same rule messages
    # (api/validation.py) or pydantic's for a length or an enum, each naming the field.
    Case("no-provider", {"serviceAccountName": "app"}, ONE_PROVIDER),
    Case("two-providers", {**aws(OK), "gcp": {"serviceAccountEmail": email(OK)}}, ONE_PROVIDER),
    Case("three-providers", {**aws(OK), **azure(OK), "gcp": {"serviceAccountEmail": email(OK)}}, ONE_PROVIDER),
    Case("other-namespace-field", {**aws(OK), "namespace": "kube-system"}, 'unknown field "spec.namespace"'),
    Case("sa-in-other-namespace", aws(OK, "kube-system/default"), SA_RULE),
    Case("sa-as-subject", aws(OK, "system:serviceaccount:kube-system:default"), SA_RULE),
    Case("sa-dot-dot-slash", aws(OK, "../etc"), SA_RULE),
    Case("sa-newline", aws(OK, "app\nadmin"), SA_RULE),
    Case("sa-shell", aws(OK, "$(whoami)"), SA_RULE),
    Case("sa-quote", aws(OK, 'app";drop'), SA_RULE),
    Case("sa-upper-case", aws(OK, "App"), SA_RULE),
    Case("sa-homoglyph", aws(OK, "\u0430pp"), SA_RULE),  # Cyrillic a
    Case("sa-zero-width", aws(OK, "ap\u200bp"), SA_RULE),
    Case("sa-rtl-override", aws(OK, "app\u202eppa"), SA_RULE),
    Case("sa-empty", aws(OK, ""), "spec.serviceAccountName"),
    Case("sa-oversize", aws(OK, "a" * 254), "spec.serviceAccountName: String should have at most 253 characters"),
    Case("role-dot-dot-slash", aws("../porter-manager"), ROLE_RULE),
    Case("role-quote", aws(f"{OK}'"), ROLE_RULE),
    Case("role-newline", aws(f"{OK}\nporter-manager"), ROLE_RULE),
    Case("role-shell", aws("$(curl evil)"), ROLE_RULE),
    Case("role-homoglyph", aws(f"\u043ek-{SUFFIX}"), ROLE_RULE),  # Cyrillic o: looks like ok-*
    Case("role-zero-width", aws(f"ok\u200b-{SUFFIX}"), ROLE_RULE),
    Case("role-rtl-override", aws(f"\u202e{OK}"), ROLE_RULE),
    Case("role-65-chars", aws("r" * 65), ROLE_RULE),
    Case("role-oversize", aws("r" * 2049), "spec.aws.role: String should have at most 2048 characters"),
    Case("role-arn-wildcard", aws(f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/*"), ROLE_RULE),
    Case("role-arn-short-account", aws(f"arn:aws:iam::12345:role/{OK}"), ROLE_RULE),
    Case("role-arn-user", aws(f"arn:aws:iam::{AWS_ACCOUNT_ID}:user/{OK}"), ROLE_RULE),
    Case("azure-name-short", azure("ab"), IDENTITY_RULE),
    Case("azure-name-traversal", azure(f"../{OK}"), IDENTITY_RULE),
    Case("azure-name-quote", azure(f"{OK}' or '1'='1"), IDENTITY_RULE),
    Case("azure-name-zero-width", azure(f"ok\u200b-{SUFFIX}"), IDENTITY_RULE),
    Case("azure-rg-trailing-dot", azure(OK, "ok-rg."), RG_RULE),
    Case("azure-rg-slash", azure(OK, "ok-rg/../other"), RG_RULE),
    Case("gcp-not-a-service-account", gcp("someone@gmail.com"), EMAIL_RULE),
    Case("gcp-newline", gcp(f"{OK}\n@{GCP_PROJECT}.iam.gserviceaccount.com"), EMAIL_RULE),
    Case("gcp-homoglyph", gcp(email(f"\u043ek-{SUFFIX}")), EMAIL_RULE),
    Case("gcp-upper-case", gcp(email(OK.upper())), EMAIL_RULE),
    Case("bad-deletion-policy", {**aws(OK), "deletionPolicy": "Destroy"}, "spec.deletionPolicy: Input should be"),
    # -- policy (the webhook)
    Case("reserved-aws-role", aws(RESERVED), RESERVED_MSG),
    Case("reserved-aws-arn", aws(f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/porter-manager"), RESERVED_MSG),
    Case("reserved-aws-mixed-case", aws("Porter-Manager"), RESERVED_MSG),
    Case("reserved-azure", azure(RESERVED), RESERVED_MSG),
    Case("reserved-gcp", gcp(email(RESERVED)), RESERVED_MSG),
    Case("cross-account-arn", aws(f"arn:aws:iam::999999999999:role/{OK}"), "is in account 999999999999"),
    Case("cross-project-gcp", gcp(email(OK, "other-project")), "is in project other-project"),
    Case("aws-not-allowed", aws(FORBIDDEN), f"do not allow aws IAM role {FORBIDDEN}"),
    Case("azure-not-allowed", azure(FORBIDDEN), f"do not allow azure managed identity {RG}/{FORBIDDEN}"),
    Case("azure-other-rg", azure(OK, "other-rg"), f"do not allow azure managed identity other-rg/{OK}"),
    Case("gcp-not-allowed", gcp(email(FORBIDDEN)), f"do not allow gcp service account {email(FORBIDDEN)}"),
    Case("uncovered-namespace", aws(OK), f"no rule covers namespace {UNCOVERED_NS}", UNCOVERED_NS),
]

UPDATES = [
    Case("change-service-account", {"serviceAccountName": "other"}, "serviceAccountName is immutable"),
    Case("change-provider", {"aws": None, "gcp": {"serviceAccountEmail": email(OK)}}, "cannot change"),
    Case("switch-to-forbidden-role", {"aws": {"role": FORBIDDEN}}, f"do not allow aws IAM role {FORBIDDEN}"),
    Case("switch-to-reserved-role", {"aws": {"role": RESERVED}}, RESERVED_MSG),
    Case("switch-to-foreign-account", {"aws": {"role": f"arn:aws:iam::999999999999:role/{OK}"}}, "is in account"),
]


def roleset(**spec: Any) -> dict[str, Any]:
    base = {
        "accountId": AWS_ACCOUNT_ID,
        "region": "us-east-1",
        "clusterName": EKS_CLUSTER,
        "managementPrincipalArn": f"arn:aws:iam::{AWS_ACCOUNT_ID}:root",
        "access": {
            "roleArn": f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/porter-access-manager",
            "externalIdSecretRef": {"namespace": "default", "name": "absent"},
        },
    }
    return {**base, **spec}


ROLESETS = [
    Case(
        "roleset-other-account",
        roleset(
            accountId="999999999999",
            access={
                "roleArn": "arn:aws:iam::999999999999:role/porter-access-manager",
                "externalIdSecretRef": {"namespace": "default", "name": "absent"},
            },
        ),
        "is not the configured account 123456789012",
    ),
    Case(
        "roleset-access-in-other-account",
        roleset(
            access={
                "roleArn": "arn:aws:iam::999999999999:role/porter-access-manager",
                "externalIdSecretRef": {"namespace": "default", "name": "absent"},
            }
        ),
        "access.roleArn must be a role of accountId",
    ),
    Case("roleset-role-injection", roleset(roles=[{"name": 'x"; rm -rf /', "trust": {}}]), "name must be an IAM"),
    Case("roleset-unknown-preset", roleset(roles=[{"preset": "porter-god-mode"}]), "Unsupported value"),
    Case("roleset-bad-account", roleset(accountId="12345678901x"), "accountId must be 12 digits"),
]


class Clouds:
    """Everything a bypassed check could have created, read straight from the emulators."""

    def __init__(self, aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator) -> None:
        self.eks, self.iam = aws.client("eks"), aws.client("iam")
        self.msi = azure.client(AZURE_SUBSCRIPTION)
        self.gcp = gcp.client()

    def snapshot(self) -> dict[str, Any]:
        # Only where these cases could create anything: other suites' namespaces are torn down concurrently.
        associations = [
            (a["namespace"], a["serviceAccount"], a["associationId"])
            for namespace in (HOSTILE_NS, UNCOVERED_NS, "kube-system", "default")
            for page in self.eks.get_paginator("list_pod_identity_associations").paginate(
                clusterName=EKS_CLUSTER, namespace=namespace
            )
            for a in page["associations"]
        ]
        roles = [
            r["RoleName"]
            for page in self.iam.get_paginator("list_roles").paginate()
            for r in page["Roles"]
            if SUFFIX in r["RoleName"] or r["RoleName"].startswith("porter-")
        ]
        credentials = {
            name: sorted(c.name for c in self.msi.federated_identity_credentials.list(RG, name))
            for name in (OK, FORBIDDEN, RESERVED)
        }
        members = {
            name: sorted(
                m
                for b in self.gcp.get_iam_policy(
                    request={"resource": f"projects/{GCP_PROJECT}/serviceAccounts/{email(name)}"}
                ).bindings
                for m in b.members
            )
            for name in (OK, FORBIDDEN, RESERVED)
        }
        return {
            "associations": sorted(associations),
            "roles": sorted(roles),
            "credentials": credentials,
            "members": members,
        }


@pytest.fixture(scope="module")
def clouds(aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator, make_role: Any) -> Clouds:
    for name in (OK, FORBIDDEN, RESERVED):
        make_role(name)
        azure.seed_identity(AZURE_SUBSCRIPTION, RG, name)
        gcp.seed_service_account(GCP_PROJECT, name)
    return Clouds(aws, azure, gcp)


@pytest.fixture(scope="module")
def namespaces(api: client.ApiClient, operator: Operator) -> Iterator[None]:
    core = client.CoreV1Api(api)
    for name in (HOSTILE_NS, UNCOVERED_NS):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield
    for name in (HOSTILE_NS, UNCOVERED_NS):
        core.delete_namespace(name)


Kubectl = Callable[..., Any]


def apply_refused(kubectl: Kubectl, manifest: dict[str, Any], verb: str = "apply") -> str:
    out = kubectl(verb, "-f", "-", stdin=json.dumps(manifest), check=False)
    assert out.returncode != 0, f"applied, but should have been refused: {out.stdout}"
    message: str = out.stderr
    return message


def sic(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "identity.porter.run/v1alpha1",
        "kind": "ServiceIdentityConnection",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# The structural cases (the CRD's schema and CEL rules), and what the API server says where pydantic's words differ.
STRUCTURE = CREATES[: next(i for i, c in enumerate(CREATES) if c.id == "reserved-aws-role")]
SCHEMA_SAYS = {
    "sa-oversize": "spec.serviceAccountName: Too long",
    "role-oversize": "spec.aws.role: Too long",
    "bad-deletion-policy": 'spec.deletionPolicy: Unsupported value: "Destroy"',
}


def test_the_crd_rules_refuse_every_malformed_spec_with_the_webhook_bypassed(
    kubectl: Kubectl, clouds: Clouds, namespaces: None, api: client.ApiClient
) -> None:
    """The webhook answers first; these hold without it (configuration deleted, failurePolicy Ignore)."""
    before = clouds.snapshot()
    oversize = next(c for c in STRUCTURE if c.id == "sa-oversize")
    with webhook_bypassed(kubectl):
        wait_for(
            lambda: SCHEMA_SAYS["sa-oversize"] in apply_refused(kubectl, sic(oversize.id, HOSTILE_NS, oversize.spec)),
            what="the API server to stop calling the deleted webhook",
        )
        for case in STRUCTURE:
            message = apply_refused(kubectl, sic(case.id, case.namespace, case.spec))
            assert SCHEMA_SAYS.get(case.id, case.expected) in message, (case.id, message)
            assert "admission webhook" not in message, (case.id, message)
    for case in STRUCTURE:
        assert Connections(api, case.namespace).get(case.id) is None
    assert clouds.snapshot() == before


@pytest.mark.parametrize("case", CREATES, ids=[c.id for c in CREATES])
def test_hostile_connection_is_refused_and_nothing_is_created(
    case: Case, kubectl: Kubectl, clouds: Clouds, namespaces: None, api: client.ApiClient
) -> None:
    before = clouds.snapshot()
    message = apply_refused(kubectl, sic(case.id, case.namespace, case.spec))
    assert case.expected in message
    assert Connections(api, case.namespace).get(case.id) is None
    assert clouds.snapshot() == before


@pytest.fixture(scope="module")
def bound(api: client.ApiClient, namespaces: None, clouds: Clouds) -> Connections:
    conns = Connections(api, HOSTILE_NS)
    conns.create("bound", "bound", aws={"role": OK})
    conns.wait_ready("bound")
    return conns


@pytest.mark.parametrize("case", UPDATES, ids=[c.id for c in UPDATES])
def test_hostile_change_to_a_bound_connection_is_refused_and_the_link_kept(
    case: Case, kubectl: Kubectl, clouds: Clouds, bound: Connections
) -> None:
    before = clouds.snapshot()
    current = bound.get("bound")
    assert current is not None
    spec = {k: v for k, v in {**current["spec"], **case.spec}.items() if v is not None}
    message = apply_refused(kubectl, sic("bound", HOSTILE_NS, spec), verb="replace")  # the whole spec, as written
    assert case.expected in message
    after = bound.get("bound")
    assert after is not None and after["spec"] == current["spec"]
    assert clouds.snapshot() == before


@pytest.mark.parametrize("case", ROLESETS, ids=[c.id for c in ROLESETS])
def test_hostile_roleset_is_refused_and_nothing_is_created(case: Case, kubectl: Kubectl, clouds: Clouds) -> None:
    before = clouds.snapshot()
    manifest = {
        "apiVersion": "identity.porter.run/v1alpha1",
        "kind": "PorterRoleSet",
        "metadata": {"name": case.id},
        "spec": case.spec,
    }
    message = apply_refused(kubectl, manifest)
    assert case.expected in message
    assert kubectl("get", "prs", case.id, check=False).returncode != 0
    assert clouds.snapshot() == before


def test_the_table_covers_at_least_forty_cases() -> None:
    assert len(CREATES) + len(UPDATES) + len(ROLESETS) >= 40
