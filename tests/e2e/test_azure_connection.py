"""Azure connections end to end: a federated identity credential on the managed identity, client id on the SA."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane
from porter_dev.processes import Operator
from tests.conftest import AZURE_SUBSCRIPTION, sa_annotations
from tests.e2e.helpers import Connections

pytestmark = pytest.mark.e2e
RG = "e2e-rg"


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def identity(azure: AzureEmulator) -> tuple[str, dict[str, Any]]:
    name = f"uami-{uuid.uuid4().hex[:8]}"
    return name, azure.seed_identity(AZURE_SUBSCRIPTION, RG, name)


def credentials(azure: AzureEmulator, name: str) -> list[Any]:
    return list(azure.client(AZURE_SUBSCRIPTION).federated_identity_credentials.list(RG, name))


def test_apply_creates_credential_and_annotates_service_account(
    conns: Connections,
    azure: AzureEmulator,
    api: client.ApiClient,
    service_account: Any,
    control_plane: ControlPlane,
) -> None:
    name, seeded = identity(azure)
    service_account(conns.namespace, "api")
    conns.create("api", "api", azure={"identityName": name, "resourceGroup": RG})
    obj = conns.wait_ready("api")

    [cred] = credentials(azure, name)
    assert cred.issuer == control_plane.server
    assert cred.subject == f"system:serviceaccount:{conns.namespace}:api"
    assert list(cred.audiences) == ["api://AzureADTokenExchange"]
    status = obj["status"]["azure"]
    assert status["credentialName"] == cred.name
    props = seeded.get("properties", seeded)
    assert status["clientId"] == props["clientId"]
    assert status["tenantId"] == props["tenantId"]
    annotations = sa_annotations(api, conns.namespace, "api")
    assert annotations["azure.workload.identity/client-id"] == props["clientId"]
    assert annotations["azure.workload.identity/tenant-id"] == props["tenantId"]

    conns.delete("api")
    conns.wait_gone("api")
    assert credentials(azure, name) == []
    assert "azure.workload.identity/client-id" not in sa_annotations(api, conns.namespace, "api")


def test_many_connections_on_one_identity_are_serialised_not_failed(
    conns: Connections, azure: AzureEmulator, service_account: Any
) -> None:
    """Azure refuses overlapping writes on one identity; the operator serialises and retries them."""
    name, _ = identity(azure)
    names = [f"w{i}" for i in range(20)]
    for sa in names:
        service_account(conns.namespace, sa)
    for sa in names:  # applied at once: the operator handles them concurrently
        conns.create(sa, sa, azure={"identityName": name, "resourceGroup": RG})
    for sa in names:
        conns.wait_ready(sa, timeout=120)
    creds = credentials(azure, name)
    assert len(creds) == 20
    assert {c.subject for c in creds} == {f"system:serviceaccount:{conns.namespace}:{sa}" for sa in names}

    service_account(conns.namespace, "w20")
    conns.create("w20", "w20", azure={"identityName": name, "resourceGroup": RG})
    cond = conns.wait_reason("w20", "LimitExceeded")
    assert "20 federated identity credentials" in cond["message"]
    assert len(credentials(azure, name)) == 20


def test_missing_identity_is_stalled_identity_not_found(conns: Connections) -> None:
    conns.create("noid", "noid", azure={"identityName": "does-not-exist", "resourceGroup": RG})
    cond = conns.wait_reason("noid", "IdentityNotFound")
    assert "does-not-exist" in cond["message"]
    assert conns.condition("noid", "Stalled")["status"] == "True"


def test_twenty_credential_limit_is_stalled_with_advice(
    conns: Connections, azure: AzureEmulator, service_account: Any, control_plane: ControlPlane
) -> None:
    from azure.mgmt.msi.models import FederatedIdentityCredential

    name, _ = identity(azure)
    msi = azure.client(AZURE_SUBSCRIPTION)
    for i in range(20):
        msi.federated_identity_credentials.create_or_update(
            RG,
            name,
            f"other-{i}",
            FederatedIdentityCredential(
                issuer="https://elsewhere.example", subject=f"system:serviceaccount:x:{i}", audiences=["api://x"]
            ),
        )
    conns.create("full", "full", azure={"identityName": name, "resourceGroup": RG})
    cond = conns.wait_reason("full", "LimitExceeded")
    assert "20 federated identity credentials" in cond["message"]
    assert "delete unused credentials" in cond["message"]
    assert len(credentials(azure, name)) == 20


def test_retain_keeps_the_credential_and_describe_shows_it(
    conns: Connections, azure: AzureEmulator, service_account: Any, kubectl: Any
) -> None:
    name, _ = identity(azure)
    service_account(conns.namespace, "kept")
    conns.create("kept", "kept", azure={"identityName": name, "resourceGroup": RG}, deletionPolicy="Retain")
    conns.wait_ready("kept")
    described = kubectl("-n", conns.namespace, "describe", "sic", "kept").stdout
    assert "Credential Name:" in described and "Client Id:" in described
    conns.delete("kept")
    conns.wait_gone("kept")
    assert len(credentials(azure, name)) == 1
