"""The Azure emulator, driven by the real azure-mgmt-msi client, behaves as ARM's Managed Identity API does."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity

from porter_dev.azure import CONCURRENT_WRITES, DEFAULT_TENANT, AzureEmulator
from tests.provider.keepalive import opened_connections

SUB = "00000000-0000-4000-8000-000000000001"
ISSUER = "https://oidc.example.test/cluster-1"
AUDIENCE = "api://AzureADTokenExchange"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEmulator]:
    emu = AzureEmulator(logdir=tmp_path_factory.mktemp("azure")).start()
    yield emu
    emu.stop()


@pytest.fixture
def azure(emulator: AzureEmulator) -> AzureEmulator:
    emulator.reset()
    return emulator


@pytest.fixture
def msi(azure: AzureEmulator) -> ManagedServiceIdentityClient:
    return azure.client(SUB)


@pytest.fixture
def no_retry(azure: AzureEmulator) -> ManagedServiceIdentityClient:
    return azure.client(SUB, retry_total=0)


@pytest.fixture
def identity(azure: AzureEmulator) -> tuple[str, str]:
    rg, name = f"rg-{uuid.uuid4().hex[:8]}", f"id-{uuid.uuid4().hex[:8]}"
    azure.seed_identity(SUB, rg, name)
    return rg, name


def fic(subject: str, issuer: str = ISSUER, audiences: list[str] | None = None) -> FederatedIdentityCredential:
    return FederatedIdentityCredential(
        issuer=issuer, subject=subject, audiences=[AUDIENCE] if audiences is None else audiences
    )


def status(resp: Any, deserialized: Any, headers: Any) -> tuple[int, Any]:
    """`cls=` hook: the HTTP status alongside the deserialized body."""
    return resp.http_response.status_code, deserialized


def put(msi: ManagedServiceIdentityClient, rg: str, name: str, cred: str, subject: str, **kw: Any) -> tuple[int, Any]:
    result: tuple[int, Any] = msi.federated_identity_credentials.create_or_update(
        rg, name, cred, fic(subject, **kw), cls=status
    )
    return result


def code(err: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str | None]:
    return err.value.status_code, err.value.error.code if err.value.error else None


def raw(
    azure: AzureEmulator, path: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, Any], Any]:
    """A plain urllib request (no SDK) trusting only the emulator's certificate."""
    ctx = context or ssl.create_default_context(cafile=str(azure.ca_file))
    req = urllib.request.Request(f"{azure.endpoint}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def identity_path(rg: str, name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"


# --- identities ------------------------------------------------------------------------------------------------


def test_seeded_identity_carries_ids_and_the_tenant(azure: AzureEmulator, msi: ManagedServiceIdentityClient) -> None:
    rg, name = f"rg-{uuid.uuid4().hex[:8]}", "customer-identity"
    seeded = azure.seed_identity(SUB, rg, name)
    props = seeded["properties"]
    assert uuid.UUID(props["clientId"]) != uuid.UUID(props["principalId"])
    assert props["tenantId"] == DEFAULT_TENANT

    got = msi.user_assigned_identities.get(rg, name)
    assert (got.client_id, got.principal_id, got.tenant_id) == (props["clientId"], props["principalId"], DEFAULT_TENANT)
    assert got.id == identity_path(rg, name)
    assert azure.seed_identity(SUB, rg, name)["properties"]["clientId"] == props["clientId"]  # seeding is idempotent

    azure.settings(tenantId="11111111-2222-4333-8444-555555555555")
    other = azure.seed_identity(SUB, rg, "second-identity")
    assert other["properties"]["tenantId"] == "11111111-2222-4333-8444-555555555555"


def test_identity_put_creates_then_updates_in_a_seeded_group(
    msi: ManagedServiceIdentityClient, identity: tuple[str, str]
) -> None:
    rg, _ = identity
    code1, made = msi.user_assigned_identities.create_or_update(
        rg, "made-by-sdk", Identity(location="westeurope"), cls=status
    )
    code2, again = msi.user_assigned_identities.create_or_update(
        rg, "made-by-sdk", Identity(location="westeurope", tags={"a": "b"}), cls=status
    )
    assert (code1, code2) == (201, 200)
    assert again.client_id == made.client_id
    assert again.tags == {"a": "b"}


def test_deleting_an_identity_removes_it_and_its_credentials(
    msi: ManagedServiceIdentityClient, identity: tuple[str, str]
) -> None:
    rg, name = identity
    put(msi, rg, name, "cred-1", "system:serviceaccount:ns:sa")
    deleted = msi.user_assigned_identities.delete(rg, name, cls=status)
    assert deleted[0] == 200
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get(rg, name)
    with pytest.raises(ResourceNotFoundError) as err:
        msi.federated_identity_credentials.get(rg, name, "cred-1")
    assert code(err) == (404, "ResourceNotFound")


# --- credentials -----------------------------------------------------------------------------------------------


def test_credential_create_get_update_delete(msi: ManagedServiceIdentityClient, identity: tuple[str, str]) -> None:
    rg, name = identity
    created, body = put(msi, rg, name, "cred-1", "system:serviceaccount:ns:sa")
    assert created == 201
    assert (body.issuer, body.subject, body.audiences) == (ISSUER, "system:serviceaccount:ns:sa", [AUDIENCE])
    assert body.id == f"{identity_path(rg, name)}/federatedIdentityCredentials/cred-1"

    got = msi.federated_identity_credentials.get(rg, name, "CRED-1")  # ARM names are case-insensitive
    assert (got.name, got.subject) == ("cred-1", "system:serviceaccount:ns:sa")

    assert put(msi, rg, name, "cred-1", "system:serviceaccount:ns:sa")[0] == 200  # same content: idempotent
    updated, body = put(msi, rg, name, "cred-1", "system:serviceaccount:ns:other")
    assert updated == 200
    assert msi.federated_identity_credentials.get(rg, name, "cred-1").subject == "system:serviceaccount:ns:other"
    assert [c.name for c in msi.federated_identity_credentials.list(rg, name)] == ["cred-1"]

    assert msi.federated_identity_credentials.delete(rg, name, "cred-1", cls=status)[0] == 200
    with pytest.raises(ResourceNotFoundError) as err:
        msi.federated_identity_credentials.get(rg, name, "cred-1")
    assert code(err) == (404, "ResourceNotFound")
    assert msi.federated_identity_credentials.delete(rg, name, "cred-1", cls=status)[0] == 204  # nothing to delete


def test_list_pages_through_next_link(
    azure: AzureEmulator, msi: ManagedServiceIdentityClient, identity: tuple[str, str]
) -> None:
    rg, name = identity
    made = {f"cred-{i:02d}" for i in range(12)}
    for cred in sorted(made):
        put(msi, rg, name, cred, f"subject-{cred}")

    pages = [[c.name for c in page] for page in msi.federated_identity_credentials.list(rg, name).by_page()]
    assert [len(p) for p in pages] == [5, 5, 2]  # default pageSize 5
    assert {n for p in pages for n in p} == made
    assert azure.calls()["managedidentity:FederatedIdentityCredentials_List"] == 3

    pages = [[c.name for c in page] for page in msi.federated_identity_credentials.list(rg, name, top=3).by_page()]
    assert [len(p) for p in pages] == [3, 3, 3, 3]  # $top is kept in nextLink
    assert sorted(n for p in pages for n in p) == sorted(made)

    azure.settings(pageSize=7)
    pages = [[c.name for c in page] for page in msi.federated_identity_credentials.list(rg, name).by_page()]
    assert [len(p) for p in pages] == [7, 5]


@pytest.mark.parametrize("bad", ["ab", "-starts-with-dash", "_underscore-first", "has.dot", "a" * 121])
def test_invalid_credential_name_is_refused(
    msi: ManagedServiceIdentityClient, identity: tuple[str, str], bad: str
) -> None:
    rg, name = identity
    with pytest.raises(HttpResponseError) as err:
        put(msi, rg, name, bad, "sub")
    assert code(err) == (400, "BadRequest")
    assert f"'{bad}' is invalid" in str(err.value.error.message if err.value.error else "")


@pytest.mark.parametrize("good", ["abc", "9-digit_first", "a" * 120])
def test_edge_credential_names_are_accepted(
    msi: ManagedServiceIdentityClient, identity: tuple[str, str], good: str
) -> None:
    rg, name = identity
    assert put(msi, rg, name, good, "sub")[0] == 201


@pytest.mark.parametrize("audiences", [[], ["api://AzureADTokenExchange", "api://other"]])
def test_exactly_one_audience_is_required(
    msi: ManagedServiceIdentityClient, identity: tuple[str, str], audiences: list[str]
) -> None:
    rg, name = identity
    with pytest.raises(HttpResponseError) as err:
        put(msi, rg, name, "cred-1", "sub", audiences=audiences)
    assert code(err) == (400, "BadRequest")
    with pytest.raises(ResourceNotFoundError):
        msi.federated_identity_credentials.get(rg, name, "cred-1")


def test_twenty_first_credential_is_refused(msi: ManagedServiceIdentityClient, identity: tuple[str, str]) -> None:
    rg, name = identity
    for i in range(20):
        assert put(msi, rg, name, f"cred-{i:02d}", f"subject-{i}")[0] == 201
    with pytest.raises(HttpResponseError) as err:
        put(msi, rg, name, "cred-20", "subject-20")
    assert code(err) == (400, "QuotaExceeded")
    assert len(list(msi.federated_identity_credentials.list(rg, name))) == 20
    assert put(msi, rg, name, "cred-00", "subject-changed")[0] == 200  # updating one of the 20 still works


def test_issuer_and_subject_are_unique_per_identity(
    azure: AzureEmulator, msi: ManagedServiceIdentityClient, identity: tuple[str, str]
) -> None:
    rg, name = identity
    put(msi, rg, name, "first", "system:serviceaccount:ns:sa")
    with pytest.raises(HttpResponseError) as err:
        put(msi, rg, name, "second", "system:serviceaccount:ns:sa")
    assert code(err) == (400, "BadRequest")
    assert err.value.error is not None
    assert err.value.error.message == "Issuer and subject combination already exists for this Managed Identity."

    assert put(msi, rg, name, "second", "system:serviceaccount:ns:sa", issuer="https://other.example")[0] == 201
    azure.seed_identity(SUB, rg, "another-identity")
    assert put(msi, rg, "another-identity", "first", "system:serviceaccount:ns:sa")[0] == 201


# --- concurrency -----------------------------------------------------------------------------------------------


def _race(*calls: Callable[[], Any]) -> tuple[list[Any], float]:
    """Start the calls together on their own threads; (results or exceptions in order, seconds taken)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as err:  # the test inspects it
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results, time.monotonic() - began


@pytest.mark.parametrize("second", ["put", "delete"])
def test_overlapping_writes_on_one_identity_fail_one_with_concurrency_conflict(
    azure: AzureEmulator, identity: tuple[str, str], second: str
) -> None:
    rg, name = identity
    c1, c2 = azure.client(SUB, retry_total=0), azure.client(SUB, retry_total=0)
    put(c1, rg, name, "existing", "subject-existing")
    azure.settings(writeDelayMs=1000)

    def second_write() -> Any:
        if second == "put":
            return put(c2, rg, name, "cred-b", "subject-b")
        return c2.federated_identity_credentials.delete(rg, name, "existing", cls=status)

    results, _ = _race(lambda: put(c1, rg, name, "cred-a", "subject-a"), second_write)
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1, results
    assert isinstance(failures[0], ResourceExistsError)  # the SDK's type for 409
    assert (failures[0].status_code, failures[0].error.code if failures[0].error else None) == (409, CONCURRENT_WRITES)
    winner = next(i for i, r in enumerate(results) if not isinstance(r, Exception))
    assert results[winner][0] == (200 if (winner, second) == (1, "delete") else 201)

    azure.settings(writeDelayMs=0)  # the flag was released: the next write goes through
    assert put(c1, rg, name, "cred-c", "subject-c")[0] == 201


def test_overlapping_writes_on_different_identities_both_succeed(
    azure: AzureEmulator, identity: tuple[str, str]
) -> None:
    rg, name = identity
    azure.seed_identity(SUB, rg, "other-identity")
    c1, c2 = azure.client(SUB, retry_total=0), azure.client(SUB, retry_total=0)
    c1.user_assigned_identities.get(rg, name)  # open both TLS connections before the race
    c2.user_assigned_identities.get(rg, name)
    azure.settings(writeDelayMs=1000)

    results, took = _race(
        lambda: put(c1, rg, name, "cred-a", "subject-a"),
        lambda: put(c2, rg, "other-identity", "cred-a", "subject-a"),
    )
    assert [r[0] for r in results] == [201, 201], results
    assert took < 1.9, f"writes on different identities were serialised ({took:.2f}s)"


# --- not found -------------------------------------------------------------------------------------------------


def test_missing_resource_group_identity_and_credential_are_404(
    msi: ManagedServiceIdentityClient, identity: tuple[str, str]
) -> None:
    rg, name = identity
    with pytest.raises(ResourceNotFoundError) as err:
        msi.federated_identity_credentials.get("no-such-rg", name, "cred-1")
    assert code(err) == (404, "ResourceGroupNotFound")
    with pytest.raises(ResourceNotFoundError) as err:
        msi.user_assigned_identities.create_or_update("no-such-rg", "x-identity", Identity(location="eastus"))
    assert code(err) == (404, "ResourceGroupNotFound")

    with pytest.raises(ResourceNotFoundError) as err:
        msi.user_assigned_identities.get(rg, "no-such-identity")
    assert code(err) == (404, "ResourceNotFound")
    with pytest.raises(ResourceNotFoundError) as err:
        put(msi, rg, "no-such-identity", "cred-1", "sub")
    assert code(err) == (404, "ResourceNotFound")
    with pytest.raises(ResourceNotFoundError) as err:
        list(msi.federated_identity_credentials.list(rg, "no-such-identity"))
    assert code(err) == (404, "ResourceNotFound")

    with pytest.raises(ResourceNotFoundError) as err:
        msi.federated_identity_credentials.get(rg, name, "no-such-cred")
    assert code(err) == (404, "ResourceNotFound")


# --- faults ----------------------------------------------------------------------------------------------------


def test_injected_throttle_is_429_with_retry_after(
    azure: AzureEmulator,
    msi: ManagedServiceIdentityClient,
    no_retry: ManagedServiceIdentityClient,
    identity: tuple[str, str],
) -> None:
    rg, name = identity
    azure.faults(rules=[{"fault": "throttle", "operation": "UserAssignedIdentities_Get", "count": 1}])
    with pytest.raises(HttpResponseError) as err:
        no_retry.user_assigned_identities.get(rg, name)
    assert code(err) == (429, "TooManyRequests")
    assert err.value.response is not None
    assert err.value.response.headers["Retry-After"] == "1"

    azure.faults(rules=[{"fault": "throttle", "operation": "UserAssignedIdentities_Get", "count": 1}])
    assert msi.user_assigned_identities.get(rg, name).name == name  # azure-core honours Retry-After, then succeeds
    calls = azure.calls()
    assert calls["managedidentity:UserAssignedIdentities_Get"] == 3
    assert azure.injected()["managedidentity:UserAssignedIdentities_Get:throttle"] == 2


def test_injected_unavailable_is_503(
    azure: AzureEmulator, no_retry: ManagedServiceIdentityClient, identity: tuple[str, str]
) -> None:
    rg, name = identity
    azure.faults(rules=[{"fault": "unavailable", "service": "managedidentity", "count": 1}])
    with pytest.raises(HttpResponseError) as err:
        list(no_retry.federated_identity_credentials.list(rg, name))
    assert code(err) == (503, "ServiceUnavailable")
    assert list(no_retry.federated_identity_credentials.list(rg, name)) == []  # count exhausted


# --- transport and auth ----------------------------------------------------------------------------------------


def test_missing_authorization_is_401(azure: AzureEmulator, identity: tuple[str, str]) -> None:
    rg, name = identity
    path = f"{identity_path(rg, name)}?api-version=2024-11-30"
    status_, body, headers = raw(azure, path)
    assert status_ == 401
    assert body["error"]["code"] == "AuthenticationFailed"
    assert headers["WWW-Authenticate"].startswith("Bearer")

    assert raw(azure, path, {"Authorization": "Basic dXNlcjpwdw=="})[0] == 401
    ok, body, _ = raw(azure, path, {"Authorization": "Bearer anything"})
    assert (ok, body["name"]) == (200, name)


def test_api_version_is_required(azure: AzureEmulator, identity: tuple[str, str]) -> None:
    rg, name = identity
    auth = {"Authorization": "Bearer anything"}
    status_, body, _ = raw(azure, identity_path(rg, name), auth)
    assert (status_, body["error"]["code"]) == (400, "MissingApiVersionParameter")
    status_, body, _ = raw(azure, f"{identity_path(rg, name)}?api-version=2015-01-01", auth)
    assert (status_, body["error"]["code"]) == (400, "NoRegisteredProviderFound")


def test_tls_certificate_is_only_trusted_through_the_ca_file(azure: AzureEmulator) -> None:
    assert Path(azure.ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----")
    with pytest.raises(urllib.error.URLError) as err:
        raw(azure, "/_porter/health", context=ssl.create_default_context())
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    assert raw(azure, "/_porter/health")[0] == 200


def test_sdk_calls_reuse_their_tls_connection(azure: AzureEmulator, msi: ManagedServiceIdentityClient) -> None:
    """Keep-alive, as ARM serves: a TLS handshake per call would charge the operator a cost ARM does not."""
    azure.seed_identity(SUB, "ka-rg", "ka-id")
    msi.user_assigned_identities.get("ka-rg", "ka-id")  # the first connection
    with opened_connections() as opened:
        for i in range(5):
            msi.federated_identity_credentials.create_or_update("ka-rg", "ka-id", f"cred{i}", fic(f"system:sa:ka:s{i}"))
            msi.user_assigned_identities.get("ka-rg", "ka-id")
    assert opened == []
