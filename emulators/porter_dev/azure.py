"""Azure emulator: an HTTPS fake of ARM's Microsoft.ManagedIdentity API that the real azure-mgmt-msi client talks to.

Routes and shapes follow the Managed Identity REST reference for api-version 2024-11-30 (the default of
azure-mgmt-msi 7.1.0; https://learn.microsoft.com/rest/api/managedidentity/): user-assigned identities
(Get, CreateOrUpdate, Delete) and their federated identity credentials (Get, CreateOrUpdate, Delete, and List
paged by `nextLink` with `$top` / `$skiptoken`). Status codes follow that reference and the ARM resource
provider contract: create 201, update 200, delete 200 or 204 when there was nothing to delete, both without a
body. These are exactly the statuses azure-mgmt-msi's generated operations accept, and every body deserializes
into its models with no unknown key (tests/contract checks both against the SDK's source).

The rules are those of "Important considerations and restrictions for federated identity credentials"
(https://learn.microsoft.com/entra/workload-id/workload-identity-federation-considerations), including its
error table: a name of 3-120 characters, first a letter or digit, then letters, digits, '-' and '_' (400);
exactly one audience and non-empty issuer and subject (400); issuer + subject unique per identity (400,
"Issuer and subject combination already exists for this Managed Identity."); a missing parent identity (404);
at most 20 credentials per identity; concurrent writes (PUT or DELETE) under one identity rejected with 409
`ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity` rather than queued. The documents give
statuses and messages but not every code: `BadRequest` for validation and `QuotaExceeded` for the 21st
credential are this emulator's choice. Missing resource groups and resources use ARM's `ResourceGroupNotFound`
and `ResourceNotFound` (404); errors use ARM's `{"error": {"code": ..., "message": ...}}` body.

Role assignments (for the operator's LeastPrivilege check) follow "Role Assignments - List For Subscription"
(https://learn.microsoft.com/rest/api/authorization/role-assignments/list-for-subscription, api-version
2022-04-01): GET on the subscription with `$filter=principalId eq '{id}'` returns that principal's assignments
at, above and below the subscription; other filters are this emulator's 400 `BadRequest`. Assignments are
seeded through the control route `/_porter/role-assignments` (the emulator has no PUT for them).

Eventual consistency (the plan's `propagationSeconds`, `porter_dev.faults`): ARM's own reads see a federated
credential at once, Entra's token service only `propagationSeconds` after it was created or changed (until then it
answers as if the credential did not exist, AADSTS70021 / 700211 / 700213, or judges the previous issuer, subject
and audiences). AKS's "Use Microsoft Entra Workload ID with AKS" (https://learn.microsoft.com/azure/aks/
workload-identity-overview, Limitations) says it takes a few seconds for a federated identity credential to be
propagated after being initially added, and "Deploy and configure workload identity" (.../aks/
workload-identity-deploy-cluster) that a token request made immediately after may fail until the directory's
cache is populated. A deleted credential stops working at once here.

azure-core only sends bearer tokens over HTTPS, so the server generates a self-signed certificate at start and
writes it where clients can trust it (`connection_verify=`). A JWT bearer token must be one the emulator's
Entra ID (`porter_dev.entra`, same host: `/{tenant}/oauth2/v2.0/token`) issued for ARM, else 401
`InvalidAuthenticationToken` / `ExpiredAuthenticationToken`; any other bearer token stands for the operator's
development credential and is accepted; none is 401. `GET /subscriptions` (api-version 2022-12-01) answers the
subscriptions the caller has roles in: none, as the emulator models no role assignments.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import re
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from porter_dev.entra import Application, Entra, EntraError
from porter_dev.faults import Faults

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken
    from azure.mgmt.msi import ManagedServiceIdentityClient

SERVICE = "managedidentity"
API_VERSIONS = ("2024-11-30", "2023-01-31")
DEFAULT_TENANT = "72f988bf-0000-4000-8000-00000000c0de"
MAX_CREDENTIALS = 20
CONCURRENT_WRITES = "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
CREDENTIAL_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
ROLE_ASSIGNMENTS = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Authorization/roleAssignments/?$", re.IGNORECASE
)
AUTHORIZATION_API_VERSIONS = ("2022-04-01",)
PRINCIPAL_FILTER = re.compile(r"^principalId eq '(?P<id>[0-9A-Fa-f-]+)'$")
CREDENTIAL_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,119}")
IDENTITY_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}")
ROUTE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ManagedIdentity"
    r"/userAssignedIdentities/(?P<identity>[^/]+)"
    r"(?:/(?P<fics>federatedIdentityCredentials)(?:/(?P<fic>[^/]+))?)?/?$",
    re.IGNORECASE,
)
CERT_NAME, KEY_NAME = "azure-emulator.crt", "azure-emulator.key"
ENTRA_ROUTE = re.compile(
    r"^/(?P<tenant>[^/_][^/]*)/(?:(?P<config>v2\.0/\.well-known/openid-configuration)|(?P<keys>discovery/v2\.0/keys)"
    r"|(?P<token>oauth2/v2\.0/token))$"
)
SUBSCRIPTIONS_API_VERSION = "2022-12-01"

StartResponse = Callable[..., Any]


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


@dataclass
class Settings:
    """Knobs tests turn through /_porter/settings; `reset` puts them back."""

    tenant_id: str = DEFAULT_TENANT
    page_size: int = 5
    write_delay_ms: float = 0.0
    retry_after_seconds: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "pageSize": self.page_size,
            "writeDelayMs": self.write_delay_ms,
            "retryAfterSeconds": self.retry_after_seconds,
        }

    def reset(self, tenant_id: str) -> None:
        defaults = Settings(tenant_id=tenant_id)
        self.tenant_id, self.page_size = defaults.tenant_id, defaults.page_size
        self.write_delay_ms, self.retry_after_seconds = defaults.write_delay_ms, defaults.retry_after_seconds

    def update(self, body: dict[str, Any]) -> None:
        page_size = int(body.get("pageSize", self.page_size))
        delay = float(body.get("writeDelayMs", self.write_delay_ms))
        retry_after = int(body.get("retryAfterSeconds", self.retry_after_seconds))
        if page_size < 1 or delay < 0 or retry_after < 0:
            raise ArmError(400, "BadRequest", "pageSize must be >= 1; writeDelayMs and retryAfterSeconds >= 0.")
        self.tenant_id = str(body.get("tenantId", self.tenant_id))
        self.page_size, self.write_delay_ms, self.retry_after_seconds = page_size, delay, retry_after


@dataclass
class Credential:
    name: str
    issuer: str
    subject: str
    audiences: list[str]
    written_at: float | None = None  # time.monotonic() of the last change, for what Entra sees of it
    before: tuple[str, str, list[str]] | None = None  # (issuer, subject, audiences) Entra sees until then

    def seen(self, propagated: Callable[[float | None], bool]) -> tuple[str, str, list[str]] | None:
        """(issuer, subject, audiences) as Entra's token service sees them now; None: not at all yet."""
        if propagated(self.written_at):
            return self.issuer, self.subject, list(self.audiences)
        return self.before

    def to_json(self, identity_id: str) -> dict[str, Any]:
        return {
            "id": f"{identity_id}/federatedIdentityCredentials/{self.name}",
            "name": self.name,
            "type": CREDENTIAL_TYPE,
            "properties": {"issuer": self.issuer, "subject": self.subject, "audiences": list(self.audiences)},
        }


@dataclass
class Identity:
    subscription: str
    resource_group: str
    name: str
    location: str
    tenant_id: str
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    tags: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, Credential] = field(default_factory=dict)  # by lower-cased name
    writing: bool = False  # a credential write is in progress

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{IDENTITY_TYPE}/{self.name}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": IDENTITY_TYPE,
            "location": self.location,
            "tags": dict(self.tags),
            "properties": {
                "tenantId": self.tenant_id,
                "principalId": self.principal_id,
                "clientId": self.client_id,
                "isolationScope": "None",
            },
        }


def _key(*parts: str) -> tuple[str, ...]:
    """ARM resource names are case-insensitive."""
    return tuple(p.lower() for p in parts)


@dataclass
class IdentityStore:
    """Identities by (subscription, resource group, name); one lock guards all state, never held while sleeping."""

    settings: Settings
    # whether a write stamped then has reached Entra (Faults.propagated: the plan's propagationSeconds)
    propagated: Callable[[float | None], bool] = field(default=lambda written_at: True)
    groups: dict[tuple[str, ...], str] = field(default_factory=dict)  # key -> name as first seen
    identities: dict[tuple[str, ...], Identity] = field(default_factory=dict)
    role_assignments: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def assign_role(self, sub: str, principal_id: str, role_definition: str, scope: str) -> dict[str, Any]:
        name = str(uuid.uuid4())
        assignment = {
            "id": f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{name}",
            "name": name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                f"{role_definition}",
                "principalId": principal_id,
                "principalType": "ServicePrincipal",
                "scope": scope,
            },
        }
        with self.lock:
            self.role_assignments.append(assignment)
        return assignment

    def assignments_of(self, sub: str, principal_id: str) -> list[dict[str, Any]]:
        """At, above (the tenant root "/", management groups) and below the subscription."""
        prefix = f"/subscriptions/{sub}".lower()
        with self.lock:
            return [
                a
                for a in self.role_assignments
                if a["properties"]["principalId"] == principal_id
                and (
                    a["properties"]["scope"].lower().startswith(prefix)
                    or not a["properties"]["scope"].lower().startswith("/subscriptions/")
                )
            ]

    def _identity(self, sub: str, rg: str, name: str, parent: bool = False) -> Identity:
        if _key(sub, rg) not in self.groups:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        found = self.identities.get(_key(sub, rg, name))
        if found is None:
            if parent:
                raise ArmError(404, "ResourceNotFound", "The parent user-assigned identity does not exist.")
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{IDENTITY_TYPE}/{name}' under resource group '{rg}' was not found.",
            )
        return found

    def seed(self, sub: str, rg: str, name: str, location: str = "eastus") -> tuple[Identity, bool]:
        """Create an identity (and implicitly its resource group); (identity, created)."""
        if not IDENTITY_NAME.fullmatch(name):
            raise ArmError(400, "BadRequest", f"Resource name '{name}' is invalid.")
        with self.lock:
            self.groups.setdefault(_key(sub, rg), rg)
            existing = self.identities.get(_key(sub, rg, name))
            if existing is not None:
                return existing, False
            made = Identity(sub, self.groups[_key(sub, rg)], name, location, self.settings.tenant_id)
            self.identities[_key(sub, rg, name)] = made
            return made, True

    def get_identity(self, sub: str, rg: str, name: str) -> Identity:
        with self.lock:
            return self._identity(sub, rg, name)

    def put_identity(self, sub: str, rg: str, name: str, body: dict[str, Any]) -> tuple[Identity, bool]:
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        tags = body.get("tags") or {}
        if not isinstance(tags, dict):
            raise ArmError(400, "BadRequest", "tags must be an object.")
        if not IDENTITY_NAME.fullmatch(name):
            raise ArmError(400, "BadRequest", f"Resource name '{name}' is invalid.")
        with self.lock:
            if _key(sub, rg) not in self.groups:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            existing = self.identities.get(_key(sub, rg, name))
            if existing is not None:
                existing.tags = {str(k): str(v) for k, v in tags.items()}
                return existing, False
            made = Identity(sub, self.groups[_key(sub, rg)], name, location, self.settings.tenant_id)
            made.tags = {str(k): str(v) for k, v in tags.items()}
            self.identities[_key(sub, rg, name)] = made
            return made, True

    def delete_identity(self, sub: str, rg: str, name: str) -> bool:
        with self.lock:
            if _key(sub, rg) not in self.groups:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            return self.identities.pop(_key(sub, rg, name), None) is not None

    def get_credential(self, sub: str, rg: str, name: str, fic: str) -> tuple[Identity, Credential]:
        with self.lock:
            identity = self._identity(sub, rg, name, parent=True)
            found = identity.credentials.get(fic.lower())
            if found is None:
                raise ArmError(
                    404,
                    "ResourceNotFound",
                    f"The Resource '{CREDENTIAL_TYPE}/{name}/{fic}' under resource group '{rg}' was not found.",
                )
            return identity, found

    def list_credentials(
        self, sub: str, rg: str, name: str, top: int | None, after: str | None
    ) -> tuple[Identity, list[Credential], bool]:
        """One page of credentials ordered by name, starting after the name `after`; (identity, page, more)."""
        size = min(top, self.settings.page_size) if top else self.settings.page_size
        with self.lock:
            identity = self._identity(sub, rg, name, parent=True)
            ordered = [c for k, c in sorted(identity.credentials.items()) if after is None or k > after]
        return identity, ordered[:size], len(ordered) > size

    def write(self, sub: str, rg: str, name: str, apply: Callable[[Identity], Any]) -> Any:
        """Run one credential write: refuse it if another write on the identity is in flight, else hold the
        identity's write flag for writeDelayMs and apply the change at the end of that window."""
        with self.lock:
            identity = self._identity(sub, rg, name, parent=True)
            if identity.writing:
                raise ArmError(
                    409,
                    CONCURRENT_WRITES,
                    f"Too many Federated Identity Credentials are written concurrently for the managed identity "
                    f"'{identity.id.lower()}'. Concurrent Federated Identity Credentials writes under the same "
                    "managed identity are not supported.",
                )
            identity.writing = True
            delay = self.settings.write_delay_ms
        try:
            if delay:
                time.sleep(delay / 1000.0)
            with self.lock:
                current = self._identity(sub, rg, name, parent=True)
                return apply(current)
        finally:
            with self.lock:
                identity.writing = False

    def put_credential(
        self, sub: str, rg: str, name: str, fic: str, body: dict[str, Any]
    ) -> tuple[Identity, Credential, bool]:
        """Create or update; (identity, credential, created). Same content again is a no-op update."""
        wanted = _parse_credential(fic, body)

        def apply(identity: Identity) -> tuple[Identity, Credential, bool]:
            existing = identity.credentials.get(fic.lower())
            for other_key, other in identity.credentials.items():
                if other_key != fic.lower() and (other.issuer, other.subject) == (wanted.issuer, wanted.subject):
                    raise ArmError(
                        400, "BadRequest", "Issuer and subject combination already exists for this Managed Identity."
                    )
            if existing is not None:
                content = (wanted.issuer, wanted.subject, wanted.audiences)
                if (existing.issuer, existing.subject, existing.audiences) != content:
                    existing.before = existing.seen(self.propagated)
                    existing.written_at = time.monotonic()
                existing.issuer, existing.subject, existing.audiences = content
                return identity, existing, False
            if len(identity.credentials) >= MAX_CREDENTIALS:
                raise ArmError(
                    400,
                    "QuotaExceeded",
                    f"A maximum of {MAX_CREDENTIALS} federated identity credentials can be added to a "
                    f"user-assigned managed identity; '{identity.name}' already has {len(identity.credentials)}.",
                )
            wanted.written_at = time.monotonic()
            identity.credentials[fic.lower()] = wanted
            return identity, wanted, True

        result: tuple[Identity, Credential, bool] = self.write(sub, rg, name, apply)
        return result

    def delete_credential(self, sub: str, rg: str, name: str, fic: str) -> bool:
        deleted: bool = self.write(
            sub, rg, name, lambda identity: identity.credentials.pop(fic.lower(), None) is not None
        )
        return deleted


def _parse_credential(name: str, body: dict[str, Any]) -> Credential:
    if not CREDENTIAL_NAME.fullmatch(name):
        raise ArmError(
            400,
            "BadRequest",
            f"Federated Identity Credential name '{name}' is invalid. Alphanumeric, dash, underscore, "
            "3-120 symbols, the first one alphanumeric.",
        )
    props = body.get("properties")
    if not isinstance(props, dict):
        raise ArmError(400, "BadRequest", "Federated Identity Credential from HTTP body has empty properties")
    issuer, subject, audiences = props.get("issuer"), props.get("subject"), props.get("audiences")
    if not isinstance(issuer, str) or not issuer or not isinstance(subject, str) or not subject:
        raise ArmError(400, "BadRequest", "Federated Identity Credential from HTTP body has empty properties")
    parsed = urllib.parse.urlparse(issuer)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ArmError(400, "BadRequest", f"Issuer '{issuer}' is not a valid URL.")
    if not isinstance(audiences, list) or len(audiences) != 1 or not isinstance(audiences[0], str) or not audiences[0]:
        raise ArmError(400, "BadRequest", "Federated identity credentials must have exactly 1 audience.")
    return Credential(name=name, issuer=issuer, subject=subject, audiences=[audiences[0]])


def _encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ArmError(400, "BadRequest", "The $skiptoken is not valid.") from None


def _operation(method: str, match: re.Match[str] | None) -> str:
    if match is None:
        return "Unknown"
    if match.group("fic"):
        kind = {"GET": "Get", "PUT": "CreateOrUpdate", "DELETE": "Delete"}.get(method, method)
        return f"FederatedIdentityCredentials_{kind}"
    if match.group("fics"):
        return "FederatedIdentityCredentials_List" if method == "GET" else f"FederatedIdentityCredentials_{method}"
    kind = {"GET": "Get", "PUT": "CreateOrUpdate", "DELETE": "Delete", "PATCH": "Update"}.get(method, method)
    return f"UserAssignedIdentities_{kind}"


def _json(start: StartResponse, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    reasons = {
        200: "OK",
        201: "Created",
        204: "No Content",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        429: "Too Many Requests",
        501: "Not Implemented",
        503: "Service Unavailable",
    }
    # No body is no bytes: a delete's 200 carries nothing (the SDK reads no model for it), never "null".
    data = b"" if status == 204 or body is None else json.dumps(body).encode()
    out = [("x-ms-request-id", str(uuid.uuid4())), ("Content-Length", str(len(data))), *headers]
    if data:
        out.insert(0, ("Content-Type", "application/json; charset=utf-8"))
    start(f"{status} {reasons.get(status, 'Error')}", out)
    return [data]


def _error(start: StartResponse, err: ArmError) -> list[bytes]:
    return _json(start, err.status, {"error": {"code": err.code, "message": err.message}}, err.headers)


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw: bytes = environ["wsgi.input"].read(length) if length else b""
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ArmError(
            400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
        ) from None
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


class ManagedIdentityApp:
    """WSGI app: porter control routes, then auth, api-version, injected faults and the ARM routes."""

    def __init__(self, tenant_id: str = DEFAULT_TENANT) -> None:
        self.default_tenant = tenant_id
        self.settings = Settings(tenant_id=tenant_id)
        self.faults = Faults()
        self.store = IdentityStore(settings=self.settings, propagated=self.faults.propagated)
        self.entra = Entra()

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path.startswith("/_porter/"):
                return self._control(environ, start, path, method)
            entra = ENTRA_ROUTE.match(path)
            if entra is not None:
                return self._entra(environ, start, entra)
            return self._arm(environ, start, path, method)
        except ArmError as err:
            return _error(start, err)

    def _entra(self, environ: dict[str, Any], start: StartResponse, match: re.Match[str]) -> list[bytes]:
        host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        tenant = match.group("tenant")
        if match.group("config"):
            return _json(start, 200, self.entra.openid_configuration(f"https://{host}", tenant))
        if match.group("keys"):
            return _json(start, 200, self.entra.jwks())
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(environ["wsgi.input"].read(length).decode()).items()}
        with self.store.lock:
            apps = [
                Application(
                    i.client_id,
                    i.principal_id,
                    i.tenant_id,
                    [seen for c in i.credentials.values() if (seen := c.seen(self.store.propagated)) is not None],
                )
                for i in self.store.identities.values()
            ]
            tenants = {self.settings.tenant_id, *(a.tenant_id for a in apps)}
        try:
            return _json(start, 200, self.entra.token(tenant, form, tenants, apps))
        except EntraError as err:
            return _json(start, err.status, err.to_json())

    def _authenticate(self, token: str) -> None:
        """Tokens shaped as JWTs must come from the emulator's Entra; others are the development credential."""
        if token.count(".") != 2:
            return
        import jwt

        try:
            self.entra.verify_access_token(token)
        except jwt.ExpiredSignatureError:
            raise ArmError(
                401, "ExpiredAuthenticationToken", "The access token expiry UTC time is in the past."
            ) from None
        except jwt.PyJWTError as err:
            raise ArmError(401, "InvalidAuthenticationToken", f"The access token is invalid: {err}.") from None

    def _arm(self, environ: dict[str, Any], start: StartResponse, path: str, method: str) -> list[bytes]:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if not auth:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                [
                    (
                        "WWW-Authenticate",
                        'Bearer authorization_uri="https://login.microsoftonline.com/common", '
                        'error="invalid_token", error_description="The authentication failed because of missing '
                        "'Authorization' header.\"",
                    )
                ],
            )
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid: expected 'Bearer <token>'.")
        self._authenticate(token.strip())
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        api_version = query.get("api-version", [""])[0]
        if not api_version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if path.rstrip("/") == "/subscriptions" and method == "GET":
            if api_version != SUBSCRIPTIONS_API_VERSION:
                raise ArmError(400, "InvalidApiVersionParameter", f"The api-version '{api_version}' is invalid.")
            return _json(start, 200, {"value": []})
        match = ROUTE.match(path)
        assignments = ROLE_ASSIGNMENTS.match(path)
        operation = "RoleAssignments_ListForSubscription" if assignments else _operation(method, match)
        fault = self.faults.on_call(SERVICE, operation)
        if fault == "throttle":
            retry_after = str(self.settings.retry_after_seconds)
            raise ArmError(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type.",
                [("Retry-After", retry_after)],
            )
        if fault:
            raise ArmError(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable (injected).",
                [("Retry-After", str(self.settings.retry_after_seconds))],
            )
        if assignments is not None:
            return self._role_assignments(start, assignments.group("sub"), method, query, api_version)
        if api_version not in API_VERSIONS:
            raise ArmError(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for API version '{api_version}' and type "
                f"'userAssignedIdentities'. The supported api-versions are '{', '.join(API_VERSIONS)}'.",
            )
        if match is None:
            raise ArmError(501, "NotImplementedInEmulator", f"The emulator does not implement {method} {path}.")
        return self._route(environ, start, match, method, query, api_version)

    def _route(
        self,
        environ: dict[str, Any],
        start: StartResponse,
        match: re.Match[str],
        method: str,
        query: dict[str, list[str]],
        api_version: str,
    ) -> list[bytes]:
        sub, rg, name, fic = match.group("sub"), match.group("rg"), match.group("identity"), match.group("fic")
        if fic is not None:
            if method == "GET":
                identity, found = self.store.get_credential(sub, rg, name, fic)
                return _json(start, 200, found.to_json(identity.id))
            if method == "PUT":
                identity, credential, created = self.store.put_credential(sub, rg, name, fic, _read_json(environ))
                return _json(start, 201 if created else 200, credential.to_json(identity.id))
            if method == "DELETE":
                deleted = self.store.delete_credential(sub, rg, name, fic)
                return _json(start, 200 if deleted else 204, None)
        elif match.group("fics") is not None:
            if method == "GET":
                return self._list(environ, start, sub, rg, name, query, api_version)
        else:
            if method == "GET":
                return _json(start, 200, self.store.get_identity(sub, rg, name).to_json())
            if method == "PUT":
                identity, created = self.store.put_identity(sub, rg, name, _read_json(environ))
                return _json(start, 201 if created else 200, identity.to_json())
            if method == "DELETE":
                return _json(start, 200 if self.store.delete_identity(sub, rg, name) else 204, None)
            if method == "PATCH":
                raise ArmError(501, "NotImplementedInEmulator", "PATCH of identities is not emulated.")
        raise ArmError(405, "MethodNotAllowed", f"The method {method} is not allowed here.")

    def _role_assignments(
        self, start: StartResponse, sub: str, method: str, query: dict[str, list[str]], api_version: str
    ) -> list[bytes]:
        if api_version not in AUTHORIZATION_API_VERSIONS:
            raise ArmError(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for API version '{api_version}' and type "
                f"'roleAssignments'. The supported api-versions are '{', '.join(AUTHORIZATION_API_VERSIONS)}'.",
            )
        if method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"The method {method} is not allowed here.")
        wanted = PRINCIPAL_FILTER.match(query.get("$filter", [""])[0])
        if wanted is None:
            raise ArmError(400, "BadRequest", "The emulator supports only $filter=principalId eq '{id}'.")
        return _json(start, 200, {"value": self.store.assignments_of(sub, wanted.group("id"))})

    def _list(
        self,
        environ: dict[str, Any],
        start: StartResponse,
        sub: str,
        rg: str,
        name: str,
        query: dict[str, list[str]],
        api_version: str,
    ) -> list[bytes]:
        raw_top = query.get("$top", [None])[0]
        top: int | None = None
        if raw_top is not None:
            try:
                top = int(raw_top)
            except ValueError:
                top = 0
            if top < 1:
                raise ArmError(400, "BadRequest", "The $top query parameter must be an integer of at least 1.")
        token = query.get("$skiptoken", [None])[0]
        after = _decode_token(token) if token else None
        identity, page, more = self.store.list_credentials(sub, rg, name, top, after)
        out: dict[str, Any] = {"value": [c.to_json(identity.id) for c in page]}
        if more and page:
            params = {"api-version": api_version, "$skiptoken": _encode_token(page[-1].name.lower())}
            if top is not None:
                params["$top"] = str(top)
            host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
            out["nextLink"] = (
                f"https://{host}{identity.id}/federatedIdentityCredentials?{urllib.parse.urlencode(params, safe='$')}"
            )
        return _json(start, 200, out)

    def _control(self, environ: dict[str, Any], start: StartResponse, path: str, method: str) -> list[bytes]:
        if path == "/_porter/faults" and method == "POST":
            self.faults.configure(_read_json(environ))
            return _json(start, 200, {"ok": True})
        if path == "/_porter/calls" and method == "GET":
            return _json(start, 200, self.faults.snapshot())
        if path == "/_porter/reset" and method == "POST":
            self.faults.reset()
            with self.store.lock:
                self.settings.reset(self.default_tenant)
            return _json(start, 200, {"ok": True})
        if path == "/_porter/health":
            return _json(start, 200, {"ok": True})
        if path == "/_porter/settings" and method == "GET":
            return _json(start, 200, self.settings.to_json())
        if path == "/_porter/settings" and method == "POST":
            body = _read_json(environ)
            with self.store.lock:
                self.settings.update(body)
                return _json(start, 200, self.settings.to_json())
        if path == "/_porter/issuers" and method == "POST":
            body = _read_json(environ)
            self.entra.issuers.trust(str(body.get("issuer", "")), body.get("caFile"))
            return _json(start, 200, {"ok": True})
        if path == "/_porter/identities" and method == "POST":
            body = _read_json(environ)
            fields = [body.get(k) for k in ("subscription", "resourceGroup", "name")]
            if not all(isinstance(f, str) and f for f in fields):
                raise ArmError(400, "BadRequest", "subscription, resourceGroup and name are required strings.")
            sub, rg, name = (str(f) for f in fields)
            identity, created = self.store.seed(sub, rg, name, str(body.get("location") or "eastus"))
            return _json(start, 201 if created else 200, identity.to_json())
        if path == "/_porter/role-assignments" and method == "POST":
            body = _read_json(environ)
            fields = [body.get(k) for k in ("subscription", "principalId", "roleDefinitionId")]
            if not all(isinstance(f, str) and f for f in fields):
                raise ArmError(400, "BadRequest", "subscription, principalId and roleDefinitionId are required.")
            sub, principal, role = (str(f) for f in fields)
            scope = str(body.get("scope") or f"/subscriptions/{sub}")
            return _json(start, 201, self.store.assign_role(sub, principal, role, scope))
        raise ArmError(404, "NotFound", f"no control route {method} {path}")


def write_certificate(cert_dir: Path, hosts: Iterable[str] = ("127.0.0.1", "localhost", "::1")) -> tuple[Path, Path]:
    """A fresh self-signed certificate for `hosts`; it is its own CA, so trusting the file trusts the server."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "porter-dev azure emulator")])
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = cert_dir / CERT_NAME, cert_dir / KEY_NAME
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    tmp = cert_dir / (CERT_NAME + ".tmp")  # clients poll for the file: never let them read half of it
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(cert_path)
    return cert_path, key_path


class StaticTokenCredential:
    """A TokenCredential that always returns the same bearer token: stands in for Entra ID against the emulator."""

    def __init__(self, token: str = "porter-dev-emulator") -> None:
        self.token = token

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)


def _https(method: str, url: str, ca_file: Path, body: Any = None, timeout: float = 5.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        return json.loads(resp.read() or b"{}")


@dataclass
class AzureEmulator:
    """The ARM Managed Identity fake as its own process on a loopback HTTPS port (or `host`, e.g. the node's
    bridge gateway; its certificate names that address too)."""

    logdir: Path
    port: int = 0
    tenant_id: str = DEFAULT_TENANT
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    # More names its certificate holds, e.g. login.microsoftonline.com for pods whose /etc/hosts send it here.
    names: tuple[str, ...] = ()

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def cert_dir(self) -> Path:
        return self.logdir / "azure-emulator-tls"

    @property
    def ca_file(self) -> Path:
        """The emulator's self-signed certificate: pass it as `connection_verify` (or REQUESTS_CA_BUNDLE)."""
        return self.cert_dir / CERT_NAME

    def start(self, timeout: float = 30.0) -> AzureEmulator:
        from porter_dev.controlplane import free_port
        from porter_dev.processes import spawn_module

        self.port = self.port or free_port()
        self.ca_file.unlink(missing_ok=True)  # wait for this run's certificate, not a stale one
        log = self.logdir / "azure-emulator.log"
        args = ["--host", self.host, "--port", str(self.port), "--cert-dir", str(self.cert_dir)]
        args += ["--tenant-id", self.tenant_id, *(f"--name={n}" for n in self.names)]
        self.proc = spawn_module("porter_dev.azure", args, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"azure emulator exited ({self.proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                _https("GET", f"{self.endpoint}/_porter/health", self.ca_file, timeout=1)
                return self
            except OSError:  # no certificate yet, connection refused, TLS not up
                time.sleep(0.1)
        raise TimeoutError(f"{self.endpoint}/_porter/health did not answer within {timeout}s")

    def stop(self) -> None:
        from porter_dev.processes import stop_process

        stop_process(self.proc)

    def _control(self, method: str, route: str, body: Any = None) -> Any:
        return _https(method, f"{self.endpoint}/_porter/{route}", self.ca_file, body)

    def faults(self, **plan: Any) -> None:
        """e.g. faults(rules=[{"fault": "throttle", "operation": "FederatedIdentityCredentials_Get", "count": 1}])."""
        self._control("POST", "faults", plan)

    def reset(self) -> None:
        """Clear faults, call counts and settings; identities and credentials stay."""
        self._control("POST", "reset", {})

    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = self._control("GET", "calls")["calls"]
        return calls

    def injected(self) -> dict[str, int]:
        """Faults served so far, by `service:Operation:fault`."""
        injected: dict[str, int] = self._control("GET", "calls")["injected"]
        return injected

    def settings(self, **values: Any) -> dict[str, Any]:
        """Update (e.g. pageSize=3, writeDelayMs=500) and return the settings."""
        out: dict[str, Any] = self._control("POST", "settings", values)
        return out

    def trust_issuer(self, issuer: str, ca_file: Path) -> None:
        """Let Entra fetch `issuer`'s discovery document over TLS signed by `ca_file` (the API server's CA)."""
        self._control("POST", "issuers", {"issuer": issuer, "caFile": str(ca_file)})

    def seed_identity(self, subscription: str, resource_group: str, name: str) -> dict[str, Any]:
        """A customer's user-assigned identity (its resource group exists from then on), as ARM returns it."""
        out: dict[str, Any] = self._control(
            "POST", "identities", {"subscription": subscription, "resourceGroup": resource_group, "name": name}
        )
        return out

    def assign_role(self, subscription: str, principal_id: str, role_definition: str, scope: str = "") -> Any:
        """Give a principal a role (a built-in role definition GUID), at the subscription unless `scope` says."""
        body = {"subscription": subscription, "principalId": principal_id, "roleDefinitionId": role_definition}
        return self._control("POST", "role-assignments", {**body, "scope": scope} if scope else body)

    def client(self, subscription: str, **kwargs: Any) -> ManagedServiceIdentityClient:
        """The real SDK client aimed at this emulator; `kwargs` go to azure-core (e.g. retry_total=0)."""
        from azure.mgmt.msi import ManagedServiceIdentityClient

        return ManagedServiceIdentityClient(
            StaticTokenCredential(),
            subscription,
            base_url=self.endpoint,
            connection_verify=str(self.ca_file),
            **kwargs,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter_dev.azure", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert-dir", type=Path, required=True, help=f"where {CERT_NAME} and {KEY_NAME} are written")
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT)
    parser.add_argument("--name", action="append", default=[], help="another name its certificate holds")
    args = parser.parse_args(argv)
    from porter_dev.faults import serve

    hosts = dict.fromkeys((args.host, "127.0.0.1", "localhost", *args.name))
    cert, key = write_certificate(args.cert_dir, hosts=hosts)
    serve(ManagedIdentityApp(tenant_id=args.tenant_id), args.host, args.port, tls=(str(cert), str(key)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
