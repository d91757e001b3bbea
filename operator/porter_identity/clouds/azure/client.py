"""Azure adapter: user-assigned managed identities and their federated identity credentials (azure-mgmt-msi)."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Any

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse, policies
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.models import FederatedIdentityCredential
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from porter_identity import metrics
from porter_identity.errors import (
    AccessDenied,
    CloudError,
    Conflict,
    Invalid,
    LimitExceeded,
    NotFound,
    Throttled,
    Transient,
    translating,
)
from porter_identity.model import Credential, Identity
from porter_identity.providers import fence
from porter_identity.providers.locks import KeyedLocks
from porter_identity.providers.pacing import READ_METHODS, Pacer
from porter_identity.providers.recent import Recent

ARM_SCOPE = "https://management.azure.com/.default"  # what azure-mgmt-msi asks tokens for
AUTHORIZATION_API_VERSION = "2022-04-01"  # Microsoft.Authorization roleAssignments (list, $filter=principalId)
CONCURRENT_WRITES = "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
# As ROLE_SHARE_SECONDS for AWS: a burst of creates on one identity shares its read; a connection that already links
# reads the identity afresh.
IDENTITY_SHARE_SECONDS = 30.0


def translate(err: HttpResponseError | ServiceRequestError | ServiceResponseError) -> CloudError:
    if not isinstance(err, HttpResponseError) or isinstance(err, ServiceResponseError):
        return Transient(f"Azure unreachable: {err}", code=type(err).__name__)
    status = err.status_code or 0
    code = (err.error.code if err.error is not None else "") or ""
    message = (err.error.message if err.error is not None else "") or err.message or str(err)
    if code == CONCURRENT_WRITES:
        return Transient(message, code=code)
    if "issuer and subject combination already exists" in message.lower():
        return Conflict(message, code=code)
    if status == 429 or code in ("TooManyRequests", "Throttled"):
        return Throttled(message, code=code)
    if status == 404:
        return NotFound(message, code=code)
    if status in (401, 403):
        return AccessDenied(message, code=code)
    if "limit" in code.lower() or "quota" in code.lower():
        return LimitExceeded(message, code=code)
    if status == 409:
        return Conflict(message, code=code)
    if status >= 500:
        return Transient(message, code=code)
    return Invalid(message, code=code)


def translated() -> AbstractContextManager[None]:
    return translating((HttpResponseError, ServiceRequestError, ServiceResponseError), translate)


def _pooled_transport(pool_size: int, connection_verify: str | bool) -> RequestsTransport:
    """azure-core's transport with one pooled connection per worker thread (requests keeps 10 by default,
    and every connection beyond that pays a new TLS handshake)."""
    session = requests.Session()
    # azure-core retries in its own pipeline policy; urllib3 must not retry underneath it.
    adapter = HTTPAdapter(pool_maxsize=pool_size, max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(session=session, session_owner=False, connection_verify=connection_verify)


_ARM_TYPE = re.compile(r"/(userAssignedIdentities|federatedIdentityCredentials|roleAssignments)(/[^/?]+)?(?:\?|$)")


class _ArmCallMetrics(SansIOHTTPPolicy[Any, Any]):
    """Counts every ARM attempt as `METHOD resourceType`, e.g. `PUT federatedIdentityCredentials`; a GET of a
    collection (one page of a list) is `LIST federatedIdentityCredentials`."""

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        found = _ARM_TYPE.search(request.http_request.url)
        kind = found.group(1) if found else "other"
        method = request.http_request.method
        if found and method == "GET" and found.group(2) is None:
            method = "LIST"
        operation = f"{method} {kind}"
        metrics.CLOUD_CALLS.labels("azure", operation, metrics.outcome_of(response.http_response.status_code)).inc()


class _ArmPacing(SansIOHTTPPolicy[Any, Any]):
    """A per-retry pipeline policy: each ARM attempt, azure-core's retries included, takes a token."""

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self._pacer.wait("read" if request.http_request.method in READ_METHODS else "write")


class _ArmFence(SansIOHTTPPolicy[Any, Any]):
    """The last per-retry pipeline policy (after any pacing wait): no ARM write attempt leaves a replica whose fence
    is closed, checked here and again at each socket write until the attempt has its answer."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if request.http_request.method in READ_METHODS:
            fence.sent()
        else:
            fence.sending("azure", request.http_request.method)

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        fence.sent()

    def on_exception(self, request: PipelineRequest[Any]) -> None:
        fence.sent()


class AzureProvider:
    """Talks to ARM for one subscription; writes to one identity are serialised (Azure allows one at a time)."""

    def __init__(
        self,
        subscription_id: str,
        credential: TokenCredential,
        base_url: str = "https://management.azure.com",
        connection_verify: str | bool = True,
        retry_total: int = 3,
        pool_size: int = 10,
        pacer: Pacer | None = None,
        lock_wait_seconds: float | None = None,
        privilege_cache_seconds: float = 300.0,
        identity_share_seconds: float = IDENTITY_SHARE_SECONDS,
    ) -> None:
        self.subscription_id = subscription_id
        transport = _pooled_transport(pool_size, connection_verify)
        pacing = [_ArmPacing(pacer)] if pacer else []
        self.client = ManagedServiceIdentityClient(
            credential,
            subscription_id,
            base_url=base_url,
            connection_verify=connection_verify,
            retry_total=retry_total,
            transport=transport,
            per_retry_policies=[_ArmCallMetrics(), *pacing, _ArmFence()],
        )
        # Role assignments (Microsoft.Authorization) have no call in azure-mgmt-msi: one pipeline with the same
        # credential scope, retries, metrics and connection pool serves that single read.
        self.arm: ARMPipelineClient[Any, Any] = ARMPipelineClient(
            base_url=base_url,
            policies=[
                policies.RequestIdPolicy(),
                ARMChallengeAuthenticationPolicy(credential, ARM_SCOPE),
                policies.RetryPolicy(retry_total=retry_total),
                _ArmCallMetrics(),
                *pacing,
                _ArmFence(),
                policies.ContentDecodePolicy(),
            ],
            transport=transport,
        )
        self.writes = KeyedLocks(lock_wait_seconds)
        self._privileges: Recent[list[tuple[str, str]]] = Recent(privilege_cache_seconds)
        self._identities: Recent[Identity] = Recent(identity_share_seconds)

    def _key(self, resource_group: str, identity: str) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group}/{identity}".lower()

    def get_identity(self, resource_group: str, name: str) -> Identity:
        with translated():
            found: Any = self.client.user_assigned_identities.get(resource_group, name)
        return Identity(
            resource_group=resource_group,
            name=name,
            client_id=str(found.client_id),
            principal_id=str(found.principal_id),
            tenant_id=str(found.tenant_id),
        )

    def shared_identity(self, resource_group: str, name: str) -> Identity:
        """`get_identity`, shared for `identity_share_seconds` by the connections created together on one identity.
        A missing identity is not kept."""
        return self._identities.get(self._key(resource_group, name), lambda: self.get_identity(resource_group, name))

    def role_assignments(self, principal_id: str) -> list[tuple[str, str]]:
        """(roleDefinitionId, scope) of every role assignment of the principal visible at the subscription; kept
        `privilege_cache_seconds`, shared by every connection on the identity."""
        return self._privileges.get(principal_id, lambda: self._read_role_assignments(principal_id))

    def _read_role_assignments(self, principal_id: str) -> list[tuple[str, str]]:
        url: str | None = f"/subscriptions/{self.subscription_id}/providers/Microsoft.Authorization/roleAssignments"
        params: dict[str, str] | None = {
            "api-version": AUTHORIZATION_API_VERSION,
            "$filter": f"principalId eq '{principal_id}'",
        }
        out: list[tuple[str, str]] = []
        while url:
            with translated():
                response = self.arm.send_request(HttpRequest("GET", self.arm.format_url(url), params=params))
                response.raise_for_status()
            page = response.json()
            out += [
                (str(a["properties"]["roleDefinitionId"]), str(a["properties"].get("scope", "")))
                for a in page.get("value", [])
            ]
            url, params = page.get("nextLink"), None
        return out

    def get_credential(self, resource_group: str, identity: str, name: str) -> Credential | None:
        try:
            with translated():
                found: Any = self.client.federated_identity_credentials.get(resource_group, identity, name)
        except NotFound:
            return None
        return _credential(found)

    def list_credentials(self, resource_group: str, identity: str) -> list[Credential]:
        with translated():
            return [_credential(c) for c in self.client.federated_identity_credentials.list(resource_group, identity)]

    def put_credential(self, resource_group: str, identity: str, wanted: Credential) -> bool:
        """Create or update; True when ARM created it (201), False when one by that name was replaced (200)."""
        body = FederatedIdentityCredential(
            issuer=wanted.issuer, subject=wanted.subject, audiences=list(wanted.audiences)
        )
        with self.writes.hold(self._key(resource_group, identity)), translated():
            created: bool = self.client.federated_identity_credentials.create_or_update(
                resource_group,
                identity,
                wanted.name,
                body,
                cls=lambda response, *_: response.http_response.status_code == 201,
            )
        return created

    def delete_credential(self, resource_group: str, identity: str, name: str) -> bool:
        """Delete; False when it was already gone (success too): ARM answers 200 for a delete and 204 when there
        was nothing to delete (azure-mgmt-msi's operation accepts both)."""
        try:
            with self.writes.hold(self._key(resource_group, identity)), translated():
                existed: bool = self.client.federated_identity_credentials.delete(
                    resource_group, identity, name, cls=lambda response, *_: response.http_response.status_code == 200
                )
        except NotFound:
            return False
        return existed


def _credential(found: Any) -> Credential:
    return Credential(
        name=str(found.name),
        issuer=str(found.issuer),
        subject=str(found.subject),
        audiences=tuple(found.audiences or ()),
    )
