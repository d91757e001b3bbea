"""Every ARM answer of the Azure emulator is one azure-mgmt-msi's generated operations accept and its models read."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity

from porter_dev.azure import API_VERSIONS, AzureEmulator, StaticTokenCredential
from porter_identity.clouds.azure.client import AzureProvider
from porter_identity.errors import CloudError, NotFound
from porter_identity.model import Credential
from tests.contract.azure_model import API_VERSION, Exchange, Recorder, SdkOperation, problems, sdk_operations

SUB = "00000000-0000-4000-8000-0000000000c7"
ISSUER = "https://oidc.example.test/contract"
AUDIENCE = "api://AzureADTokenExchange"
FIC = "FederatedIdentityCredentialsOperations"
UAI = "UserAssignedIdentitiesOperations"


@pytest.fixture(scope="module")
def operations() -> list[SdkOperation]:
    return sdk_operations()


@pytest.fixture
def recorder(azure: AzureEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    azure.reset()
    found = Recorder()
    monkeypatch.setattr(RequestsTransport, "send", found.wrap(RequestsTransport.send))
    yield found
    azure.reset()


@pytest.fixture
def provider(azure: AzureEmulator, recorder: Recorder) -> AzureProvider:
    return AzureProvider(
        SUB, StaticTokenCredential(), base_url=azure.endpoint, connection_verify=str(azure.ca_file), retry_total=0
    )


@pytest.fixture
def msi(azure: AzureEmulator, recorder: Recorder) -> ManagedServiceIdentityClient:
    return azure.client(SUB, retry_total=0)


@pytest.fixture
def identity(azure: AzureEmulator) -> tuple[str, str]:
    rg, name = f"rg-{uuid.uuid4().hex[:8]}", f"id-{uuid.uuid4().hex[:8]}"
    azure.seed_identity(SUB, rg, name)  # a control route, not ARM: not recorded
    return rg, name


def cred(name: str, subject: str) -> Credential:
    return Credential(name=name, issuer=ISSUER, subject=subject, audiences=(AUDIENCE,))


def within_sdk(recorder: Recorder, operations: list[SdkOperation], seen: Iterable[str] = ()) -> None:
    assert recorder.exchanges, "nothing was recorded"
    found = [p for ex in recorder.exchanges for p in problems(ex, operations)]
    assert found == []
    missing = set(seen) - recorder.seen(operations)
    assert not missing, f"not exercised: {sorted(missing)}"


def test_the_emulator_serves_the_sdk_api_version() -> None:
    assert API_VERSIONS[0] == API_VERSION


def test_credential_lifecycle_through_the_operator_client(
    provider: AzureProvider, recorder: Recorder, operations: list[SdkOperation], identity: tuple[str, str]
) -> None:
    rg, name = identity
    assert provider.get_identity(rg, name).client_id
    with pytest.raises(NotFound):
        provider.get_identity(rg, "no-such-identity")
    assert provider.put_credential(rg, name, cred("fic-0", "system:serviceaccount:ns:sa0")) is True  # 201
    assert provider.put_credential(rg, name, cred("fic-0", "system:serviceaccount:ns:sa0")) is False  # 200
    for i in range(1, 7):  # more than one page (the emulator's page is 5)
        provider.put_credential(rg, name, cred(f"fic-{i}", f"system:serviceaccount:ns:sa{i}"))
    assert len(provider.list_credentials(rg, name)) == 7
    assert provider.get_credential(rg, name, "fic-0") is not None
    assert provider.get_credential(rg, name, "no-such-fic") is None  # 404
    assert provider.delete_credential(rg, name, "fic-0") is True  # 200
    assert provider.delete_credential(rg, name, "fic-0") is False  # 204: ARM's answer for nothing to delete
    within_sdk(
        recorder,
        operations,
        seen={
            f"{UAI}.get:200",
            f"{UAI}.get:404",
            f"{FIC}.create_or_update:201",
            f"{FIC}.create_or_update:200",
            f"{FIC}.list:200",
            f"{FIC}.get:200",
            f"{FIC}.get:404",
            f"{FIC}.delete:200",
            f"{FIC}.delete:204",
        },
    )
    assert sum(1 for ex in recorder.exchanges if ex.method == "GET" and ex.path.endswith("Credentials")) == 2


def test_identity_put_and_delete(
    msi: ManagedServiceIdentityClient, recorder: Recorder, operations: list[SdkOperation], identity: tuple[str, str]
) -> None:
    rg, _ = identity
    msi.user_assigned_identities.create_or_update(rg, "made-here", Identity(location="westeurope"))
    msi.user_assigned_identities.create_or_update(rg, "made-here", Identity(location="westeurope", tags={"a": "b"}))
    msi.user_assigned_identities.delete(rg, "made-here")
    msi.user_assigned_identities.delete(rg, "made-here")
    within_sdk(
        recorder,
        operations,
        seen={
            f"{UAI}.create_or_update:201",
            f"{UAI}.create_or_update:200",
            f"{UAI}.delete:200",
            f"{UAI}.delete:204",
        },
    )


def test_refusals_are_arm_errors(
    azure: AzureEmulator,
    msi: ManagedServiceIdentityClient,
    recorder: Recorder,
    operations: list[SdkOperation],
    identity: tuple[str, str],
) -> None:
    rg, name = identity
    fics = msi.federated_identity_credentials

    def put(fic: str, subject: str, audiences: list[str] | None = None) -> None:
        body = FederatedIdentityCredential(issuer=ISSUER, subject=subject, audiences=audiences or [AUDIENCE])
        fics.create_or_update(rg, name, fic, body)

    for bad in ("-bad-name", "ab"):
        with pytest.raises(HttpResponseError):
            put(bad, "system:serviceaccount:ns:x")
    with pytest.raises(HttpResponseError):
        put("two-audiences", "system:serviceaccount:ns:x", [AUDIENCE, "other"])
    put("first", "system:serviceaccount:ns:dup")
    with pytest.raises(HttpResponseError):
        put("second", "system:serviceaccount:ns:dup")  # issuer + subject already used
    for i in range(19):
        put(f"fill-{i:02d}", f"system:serviceaccount:ns:fill{i}")
    with pytest.raises(HttpResponseError):
        put("the-21st", "system:serviceaccount:ns:too-many")
    with pytest.raises(HttpResponseError):
        body = FederatedIdentityCredential(issuer=ISSUER, subject="system:serviceaccount:ns:x", audiences=[AUDIENCE])
        fics.create_or_update(rg, "no-such-identity", "x-fic", body)
    azure.faults(rules=[{"fault": "throttle", "count": 1}, {"fault": "unavailable", "count": 1}])
    for _ in range(2):
        with pytest.raises(HttpResponseError):
            fics.get(rg, name, "first")
    azure.settings(writeDelayMs=1500)
    errors: list[Exception] = []

    def slow() -> None:
        try:
            fics.delete(rg, name, "first")
        except HttpResponseError as err:
            errors.append(err)

    key = "managedidentity:FederatedIdentityCredentials_Delete"
    before = azure.calls().get(key, 0)
    writer = threading.Thread(target=slow)
    writer.start()
    deadline = time.monotonic() + 10
    while azure.calls().get(key, 0) == before and time.monotonic() < deadline:
        time.sleep(0.02)  # until the other delete has reached the emulator and holds the identity
    time.sleep(0.1)
    with pytest.raises(HttpResponseError) as err:
        fics.delete(rg, name, "fill-00")
    writer.join()
    assert err.value.status_code == 409 and not errors
    within_sdk(
        recorder,
        operations,
        seen={
            f"{FIC}.create_or_update:400",
            f"{FIC}.create_or_update:404",
            f"{FIC}.get:429",
            f"{FIC}.get:503",
            f"{FIC}.delete:409",
        },
    )


def test_throttled_operator_read_is_an_arm_error(
    azure: AzureEmulator,
    provider: AzureProvider,
    recorder: Recorder,
    operations: list[SdkOperation],
    identity: tuple[str, str],
) -> None:
    azure.faults(rules=[{"fault": "throttle", "count": 1}])
    with pytest.raises(CloudError):
        provider.list_credentials(*identity)
    within_sdk(recorder, operations, seen={f"{FIC}.list:429"})


# ---- the checks themselves can fail

PATH = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
GOOD_FIC = {
    "id": f"{PATH}/federatedIdentityCredentials/f",
    "name": "f",
    "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
    "properties": {"issuer": ISSUER, "subject": "s", "audiences": [AUDIENCE]},
}
GOOD_IDENTITY = {
    "id": PATH,
    "name": "id",
    "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
    "location": "eastus",
    "properties": {"tenantId": "t", "principalId": "p", "clientId": "c", "isolationScope": "None"},
}


def _ex(method: str, path: str, status: int, body: Any) -> Exchange:
    raw = b"" if body is None else json.dumps(body).encode()
    return Exchange(method, f"https://127.0.0.1{path}?api-version={API_VERSION}", status, raw)


@pytest.mark.parametrize(
    ("exchange", "complaint"),
    [
        (_ex("PUT", f"{PATH}/federatedIdentityCredentials/f", 201, GOOD_FIC), None),
        (_ex("GET", PATH, 200, GOOD_IDENTITY), None),
        (_ex("DELETE", f"{PATH}/federatedIdentityCredentials/f", 204, None), None),
        (_ex("PUT", f"{PATH}/federatedIdentityCredentials/f", 202, GOOD_FIC), "accepts only [200, 201]"),
        (_ex("DELETE", f"{PATH}/federatedIdentityCredentials/f", 202, None), "accepts only [200, 204]"),
        (_ex("DELETE", f"{PATH}/federatedIdentityCredentials/f", 200, {"ok": True}), "a body where"),
        (_ex("GET", f"{PATH}/federatedIdentityCredentials/f", 200, {**GOOD_FIC, "etag": "x"}), "not an attribute"),
        (
            _ex("GET", f"{PATH}/federatedIdentityCredentials/f", 200, {k: v for k, v in GOOD_FIC.items() if k != "id"}),
            "FederatedIdentityCredential.id missing",
        ),
        (
            _ex("GET", PATH, 200, {**GOOD_IDENTITY, "properties": {**GOOD_IDENTITY["properties"], "clientId": None}}),
            "Identity.client_id missing",
        ),
        (
            _ex(
                "GET",
                PATH,
                200,
                {**GOOD_IDENTITY, "properties": {**GOOD_IDENTITY["properties"], "isolationScope": "x"}},
            ),
            "is not one of",
        ),
        (_ex("GET", PATH, 404, {"code": "NotFound", "message": "m"}), "exactly {'error'"),
        (_ex("GET", PATH, 404, {"error": {"message": "m"}}), ".error.code: missing"),
        (_ex("GET", f"{PATH}/somethingElse", 200, {}), "no operation"),
    ],
)
def test_the_validator_rejects_what_the_sdk_cannot_read(exchange: Exchange, complaint: str | None) -> None:
    found = problems(exchange, sdk_operations())
    if complaint is None:
        assert found == []
    else:
        assert any(complaint in p for p in found), found
