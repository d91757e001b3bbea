"""GCP emulator: a gRPC fake of `google.iam.admin.v1.IAM` (service accounts and their IAM policies) with faults.

The real `google.cloud.iam_admin_v1.IAMClient` talks to it unchanged through
`IAMGrpcTransport(channel=grpc.insecure_channel(...))`. The behaviour follows the IAM API reference
(https://cloud.google.com/iam/docs/reference/rpc/google.iam.admin.v1) and the `google.iam.v1.Policy`
documentation (https://cloud.google.com/iam/docs/reference/rpc/google.iam.v1,
https://cloud.google.com/iam/docs/policies#versions, https://cloud.google.com/iam/docs/troubleshooting-withcond):

- GetServiceAccount / CreateServiceAccount / ListServiceAccounts (page_size default 20, at most 100, opaque
  page_token) and GetIamPolicy / SetIamPolicy on `projects/{PROJECT}/serviceAccounts/{EMAIL or UNIQUE_ID}`.
  `projects/-/serviceAccounts/...` is accepted; a missing account is NOT_FOUND, except through the `-`
  wildcard where, as the ServiceAccount.name documentation warns, the real service answers PERMISSION_DENIED.
- Every successful SetIamPolicy gives the policy a new etag. A non-empty etag that is not the current one
  fails with ABORTED ("There were concurrent policy changes. ..."). An empty etag is a blind write: the
  policy is overwritten, and the version checks against the stored policy are skipped, so a version-1
  write silently drops the conditions of a stored version-3 policy (documented on `Policy.etag`).
- Versions are 0, 1 or 3 (anything else is INVALID_ARGUMENT). Conditional bindings need version 3; a
  versioned (etag) write below 3 over a conditional policy fails with "Specified policy version (1) cannot
  be less than the existing policy version (3)"; reading a conditional policy below version 3 returns the
  version-1 view, with `_withcond_<hash>` role names and no conditions. A stored policy without
  conditions reports version 1.
- Members need a type prefix (`user:`, `group:`, `serviceAccount:`, `domain:`, `deleted:...?uid=`,
  `principal://`, `principalSet://`, or `allUsers` / `allAuthenticatedUsers`); the Workload Identity
  member is `serviceAccount:PROJECT_ID.svc.id.goog[NAMESPACE/KSA]`. A policy holds at most 1,500 principals
  (each occurrence counts) of which at most 250 groups; each binding needs at least one principal.
  Duplicate bindings (same role and condition) are merged and members de-duplicated and sorted.

- `google.cloud.resourcemanager.v3.Projects/GetIamPolicy` on `projects/{PROJECT_ID}` (the operator's
  LeastPrivilege check; https://cloud.google.com/resource-manager/reference/rpc/google.cloud.resourcemanager.v3):
  the project's policy, empty until bindings are seeded through `/_porter/project-bindings`; a malformed
  resource is INVALID_ARGUMENT. Faults use service `cloudresourcemanager`.

Eventual consistency (the plan's `propagationSeconds`, `porter_dev.faults`) follows "Create service accounts"
(https://cloud.google.com/iam/docs/service-accounts-create: after you create a service account you might need to
wait 60 seconds or more before you use it, as reads are eventually consistent), the IAM API's consistency note
(https://cloud.google.com/iam/docs/reference/rpc/google.iam.admin.v1#google.iam.admin.v1.IAM) and "Access change
propagation" (https://cloud.google.com/iam/docs/access-change-propagation: policy changes typically take 2
minutes, potentially 7 or more). For `propagationSeconds` after CreateServiceAccount (or the seeding route),
GetIamPolicy and SetIamPolicy on the account answer NOT_FOUND "Service account ... does not exist.", a
`serviceAccount:` member naming it is refused with INVALID_ARGUMENT "Service account EMAIL does not exist." (as
googleapis/google-cloud-go issue 11482 met it), and the token services do not know it; GetServiceAccount and
ListServiceAccounts see it at once (this emulator's choice: the caller reads what it just wrote, while the
account is not yet usable elsewhere). After a SetIamPolicy, the token services go on honouring the previous
workloadIdentityUser / serviceAccountTokenCreator members for `propagationSeconds`.

Not modelled: UpdateServiceAccount and the other IAM methods (UNIMPLEMENTED), `update_mask` and
`audit_configs` (ignored), whether a `serviceAccount:` member or a Workload Identity pool exists.
Faults come from `porter_dev.faults.Faults` (service `iam`, operation = RPC name): throttle answers
RESOURCE_EXHAUSTED, unavailable answers UNAVAILABLE (which the client retries for Get/List), and
`latencyMs` delays every call. Control routes (`/_porter/...`) are served over HTTP on a second port, with the
REST token services a workload uses (`porter_dev.gcp_sts`: STS `/v1/token` and IAM Credentials
`generateAccessToken`), which honour exactly the `roles/iam.workloadIdentityUser` members stored here.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.cloud.iam_admin_v1 import IAMClient
from google.cloud.iam_admin_v1.services.iam.transports.grpc import IAMGrpcTransport
from google.cloud.iam_admin_v1.types import iam
from google.iam.v1 import iam_policy_pb2, policy_pb2

from porter_dev.controlplane import free_port
from porter_dev.faults import Faults
from porter_dev.gcp_sts import GRANTING_ROLES, TokenService
from porter_dev.processes import _http, _wait_http, send_json, spawn_module, stop_process

SERVICE = "google.iam.admin.v1.IAM"
PROJECTS_SERVICE = "google.cloud.resourcemanager.v3.Projects"
PROJECT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
PROJECT_NAME = re.compile(r"^projects/(?P<project>[^/]+)$")
ACCOUNT_NAME = re.compile(r"^projects/(?P<project>[^/]+)/serviceAccounts/(?P<account>[^/]+)$")
EMAIL = re.compile(r"^[^@\s:/]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
WORKLOAD_IDENTITY = re.compile(
    r"^(?P<project>([a-z][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9])\.svc\.id\.goog"
    r"\[(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/(?P<ksa>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)\]$"
)
DELETED = re.compile(r"^deleted:(user|group|serviceAccount):(?P<email>[^?]+)\?uid=[0-9]+$")
ROLE = re.compile(r"^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[^/]+/roles/[A-Za-z0-9_.]+)$")
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
MAX_PRINCIPALS = 1500
MAX_GROUPS = 250
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
EMPTY_POLICY_ETAG = b"\x00\x20\x01"  # "ACAB", what the service returns for a policy never written
CONCURRENT_CHANGES = (
    "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."
)
VERSIONS_HELP = "For more information, please refer to https://cloud.google.com/iam/docs/policies#versions."
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}


class IamError(Exception):
    """An RPC failure: `code` is a `grpc.StatusCode` name such as "NOT_FOUND"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def workload_identity_member(project: str, namespace: str, service_account: str) -> str:
    """The principal a Kubernetes ServiceAccount gets through GKE Workload Identity."""
    return f"serviceAccount:{project}.svc.id.goog[{namespace}/{service_account}]"


@dataclass
class ServiceAccountRecord:
    project: str
    account_id: str
    email: str
    unique_id: str
    display_name: str = ""
    description: str = ""
    policy: Any = field(default_factory=lambda: policy_pb2.Policy(etag=EMPTY_POLICY_ETAG))
    created_at: float = field(default_factory=time.monotonic)
    # (when, members holding a token-granting role): the policies the token services may still be judging by
    granting: list[tuple[float, frozenset[str]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"projects/{self.project}/serviceAccounts/{self.email}"

    def to_proto(self) -> iam.ServiceAccount:
        return iam.ServiceAccount(
            name=self.name,
            project_id=self.project,
            unique_id=self.unique_id,
            email=self.email,
            display_name=self.display_name,
            description=self.description,
            oauth2_client_id=self.unique_id,
            disabled=False,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "projectId": self.project,
            "uniqueId": self.unique_id,
            "email": self.email,
            "displayName": self.display_name,
            "description": self.description,
            "oauth2ClientId": self.unique_id,
            "disabled": False,
        }


@dataclass
class IamStore:
    """Service accounts by email, with their policies; one lock makes each etag check-and-write atomic."""

    accounts: dict[str, ServiceAccountRecord] = field(default_factory=dict)
    # whether a write stamped then has reached the other services (Faults.propagated: the plan's propagationSeconds)
    propagated: Callable[[float | None], bool] = field(default=lambda written_at: True)
    project_bindings: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # project -> role -> members
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.project_bindings.clear()

    def grant_on_project(self, project: str, role: str, member: str) -> None:
        with self.lock:
            members = self.project_bindings.setdefault(project, {}).setdefault(role, [])
            if member not in members:
                members.append(member)

    def project_policy(self, resource: str) -> Any:
        found = PROJECT_NAME.match(resource)
        if found is None or not PROJECT_ID.match(found.group("project")):
            raise IamError("INVALID_ARGUMENT", f"Invalid resource name: {resource}")
        with self.lock:
            roles = self.project_bindings.get(found.group("project"), {})
            return policy_pb2.Policy(
                version=1,
                bindings=[policy_pb2.Binding(role=r, members=sorted(m)) for r, m in sorted(roles.items())],
                etag=b"\x00",
            )

    def create(self, name: str, account_id: str, display_name: str = "", description: str = "") -> ServiceAccountRecord:
        project = _project(name)
        if not 6 <= len(account_id) <= 30 or not ACCOUNT_ID.match(account_id):
            raise IamError(
                "INVALID_ARGUMENT",
                f"Invalid account_id {account_id!r}: it must be 6-30 characters long and match "
                "[a-z]([-a-z0-9]*[a-z0-9]).",
            )
        if len(display_name.encode()) > 100:
            raise IamError("INVALID_ARGUMENT", "display_name must be at most 100 UTF-8 bytes.")
        if len(description.encode()) > 256:
            raise IamError("INVALID_ARGUMENT", "description must be at most 256 UTF-8 bytes.")
        email = f"{account_id}@{project}.iam.gserviceaccount.com"
        with self.lock:
            if email in self.accounts:
                raise IamError(
                    "ALREADY_EXISTS", f"Service account {account_id} already exists within project projects/{project}."
                )
            taken = {a.unique_id for a in self.accounts.values()}
            unique_id = _unique_id()
            while unique_id in taken:
                unique_id = _unique_id()
            record = ServiceAccountRecord(project, account_id, email, unique_id, display_name, description)
            self.accounts[email] = record
            return record

    def _resolve(self, name: str, permission: str, missing: str, propagated: bool = False) -> ServiceAccountRecord:
        """The account `name` names; `propagated`: only once its creation has reached the policy service."""
        match = ACCOUNT_NAME.match(name)
        if match is None:
            raise IamError(
                "INVALID_ARGUMENT", f"Invalid resource name {name!r}: expected projects/*/serviceAccounts/*."
            )
        project, account = match.group("project"), match.group("account")
        found = self.accounts.get(account)
        if found is None and account.isdigit():
            found = next((a for a in self.accounts.values() if a.unique_id == account), None)
        if found is not None and propagated and not self.propagated(found.created_at):
            found = None
        if found is not None and project in ("-", found.project):
            return found
        if project == "-":
            raise IamError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource (or it may not exist).")
        raise IamError("NOT_FOUND", missing.format(name=name))

    def _check_members_propagated(self, bindings: list[Any]) -> None:
        """A `serviceAccount:` member naming an account made a moment ago is refused as the service refuses one that
        does not exist (INVALID_ARGUMENT, "Service account ... does not exist."); unknown accounts stay unchecked."""
        for binding in bindings:
            for who in binding.members:
                kind, _, email = who.partition(":")
                found = self.accounts.get(email) if kind == "serviceAccount" else None
                if found is not None and not self.propagated(found.created_at):
                    raise IamError("INVALID_ARGUMENT", f"Service account {email} does not exist.")

    def token_granting_members(self, email: str) -> set[str] | None:
        """Members that may mint tokens for `email` (workloadIdentityUser, serviceAccountTokenCreator), or None."""
        with self.lock:
            found = self.accounts.get(email)
            if found is None or not self.propagated(found.created_at):
                return None
            seen = [i for i, (when, _) in enumerate(found.granting) if self.propagated(when)]
            if not seen:
                return set()
            del found.granting[: seen[-1]]  # older policies are no longer seen anywhere
            return set(found.granting[0][1])

    def get(self, name: str) -> ServiceAccountRecord:
        with self.lock:
            return self._resolve(name, "iam.serviceAccounts.get", "Unknown service account")

    def list(self, name: str, page_size: int, page_token: str) -> tuple[list[ServiceAccountRecord], str]:
        project = _project(name)
        if page_size < 0:
            raise IamError("INVALID_ARGUMENT", "page_size must not be negative.")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _decode_token(page_token, project) if page_token else ""
        with self.lock:
            emails = sorted(e for e, a in self.accounts.items() if a.project == project and e > after)
            page = [self.accounts[e] for e in emails[:size]]
        next_token = _encode_token(project, page[-1].email) if len(emails) > size else ""
        return page, next_token

    def get_policy(self, resource: str, requested_version: int) -> Any:
        if requested_version not in (0, 1, 3):
            raise IamError(
                "INVALID_ARGUMENT",
                f"Invalid requested policy version ({requested_version}). Valid values are 0, 1, and 3.",
            )
        with self.lock:
            stored = self._resolve(
                resource, "iam.serviceAccounts.getIamPolicy", "Service account {name} does not exist.", True
            ).policy
            out = policy_pb2.Policy()
            out.CopyFrom(stored)
        if requested_version < 3 and _has_conditions(out):
            return _version_one_view(out)
        return out

    def set_policy(self, resource: str, policy: Any) -> Any:
        version = int(policy.version)
        if version not in (0, 1, 3):
            raise IamError("INVALID_ARGUMENT", f"Invalid policy version ({version}). Valid values are 0, 1, and 3.")
        if _has_conditions(policy) and version != 3:
            raise IamError(
                "INVALID_ARGUMENT",
                f"Policies with conditional role bindings must specify version 3, not {version}. {VERSIONS_HELP}",
            )
        bindings = _normalized_bindings(policy)
        with self.lock:
            record = self._resolve(
                resource, "iam.serviceAccounts.setIamPolicy", "Service account {name} does not exist.", True
            )
            self._check_members_propagated(bindings)
            current = record.policy
            if policy.etag:
                if policy.etag != current.etag:
                    raise IamError("ABORTED", CONCURRENT_CHANGES)
                if _has_conditions(current) and version < 3:
                    raise IamError(
                        "INVALID_ARGUMENT",
                        f"Specified policy version ({max(version, 1)}) cannot be less than the existing policy "
                        f"version (3). {VERSIONS_HELP}",
                    )
            etag = _new_etag()
            while etag == current.etag:
                etag = _new_etag()
            stored = policy_pb2.Policy(
                version=3 if any(b.HasField("condition") for b in bindings) else 1, bindings=bindings, etag=etag
            )
            record.policy = stored
            granting = frozenset(m for b in bindings if b.role in GRANTING_ROLES for m in b.members)
            record.granting.append((time.monotonic(), granting))
            out = policy_pb2.Policy()
            out.CopyFrom(stored)
            return out


def _project(name: str) -> str:
    match = PROJECT_NAME.match(name)
    if match is None or not PROJECT_ID.match(match.group("project")):
        raise IamError("INVALID_ARGUMENT", f"Invalid project resource name {name!r}: expected projects/PROJECT_ID.")
    return match.group("project")


def _unique_id() -> str:
    return "1" + "".join(secrets.choice("0123456789") for _ in range(20))


def _new_etag() -> bytes:
    return b"\x07" + secrets.token_bytes(7)  # real etags are 8 bytes, "Bw..." in base64


def _encode_token(project: str, after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([project, after]).encode()).decode()


def _decode_token(token: str, project: str) -> str:
    try:
        token_project, after = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise IamError("INVALID_ARGUMENT", "Invalid page token.") from None
    if token_project != project or not isinstance(after, str):
        raise IamError("INVALID_ARGUMENT", "Invalid page token.")
    return after


def _has_conditions(policy: Any) -> bool:
    return any(b.HasField("condition") for b in policy.bindings)


def _version_one_view(policy: Any) -> Any:
    """What a request for version 0 or 1 sees of a conditional policy: role names hide the conditions."""
    view = policy_pb2.Policy(version=1, etag=policy.etag)
    for binding in policy.bindings:
        role = binding.role
        if binding.HasField("condition"):
            digest = hashlib.sha256(binding.condition.SerializeToString(deterministic=True)).hexdigest()
            role = f"{role}_withcond_{digest[:20]}"
        view.bindings.add(role=role, members=list(binding.members))
    return view


def _check_member(member: str) -> None:
    if member in ("allUsers", "allAuthenticatedUsers"):
        return
    if member.startswith(("principal://", "principalSet://")):
        if member.split("://", 1)[1]:
            return
        raise IamError("INVALID_ARGUMENT", f"Invalid principal identifier: {member}.")
    kind, sep, value = member.partition(":")
    if not sep or kind not in ("user", "group", "serviceAccount", "domain", "deleted"):
        raise IamError(
            "INVALID_ARGUMENT",
            f"The member {member} is of an unknown type. Please set a valid type prefix for the member.",
        )
    if kind == "deleted":
        deleted = DELETED.match(member)
        ok = deleted is not None and EMAIL.match(deleted.group("email")) is not None
    elif kind == "domain":
        ok = DOMAIN.match(value) is not None
    elif kind == "serviceAccount" and ".svc.id.goog[" in value:
        ok = WORKLOAD_IDENTITY.match(value) is not None
    else:
        ok = EMAIL.match(value) is not None
    if not ok:
        raise IamError("INVALID_ARGUMENT", f"Invalid {kind} member: {member}.")


def _normalized_bindings(policy: Any) -> list[Any]:
    """Validate bindings and merge duplicates (same role and condition); members de-duplicated and sorted."""
    merged: dict[tuple[str, bytes], tuple[Any, set[str]]] = {}
    for binding in policy.bindings:
        if not ROLE.match(binding.role) or "_withcond_" in binding.role:
            raise IamError("INVALID_ARGUMENT", f"Role {binding.role!r} is not a valid role name.")
        if not binding.members:
            raise IamError("INVALID_ARGUMENT", f"The binding for role {binding.role} must contain at least one member.")
        for member in binding.members:
            _check_member(member)
        condition = binding.condition if binding.HasField("condition") else None
        if condition is not None and (not condition.expression or not condition.title):
            raise IamError("INVALID_ARGUMENT", "A condition needs both an expression and a title.")
        key = (binding.role, condition.SerializeToString(deterministic=True) if condition is not None else b"")
        merged.setdefault(key, (condition, set()))[1].update(binding.members)
    out = []
    for (role, _), (condition, members) in sorted(merged.items(), key=lambda item: item[0]):
        binding = policy_pb2.Binding(role=role, members=sorted(members))
        if condition is not None:
            binding.condition.CopyFrom(condition)
        out.append(binding)
    principals = sum(len(b.members) for b in out)
    if principals > MAX_PRINCIPALS:
        raise IamError(
            "INVALID_ARGUMENT",
            f"The number of members in the policy ({principals:,}) is larger than the maximum allowed size "
            f"{MAX_PRINCIPALS:,}.",
        )
    groups = sum(1 for b in out for m in b.members if m.startswith("group:"))
    if groups > MAX_GROUPS:
        raise IamError(
            "INVALID_ARGUMENT",
            f"The number of groups in the policy ({groups:,}) is larger than the maximum allowed size {MAX_GROUPS}.",
        )
    return out


class IamService:
    """The gRPC side: decodes requests, applies faults, calls the store, encodes responses."""

    def __init__(self, store: IamStore | None = None, faults: Faults | None = None) -> None:
        self.store = store or IamStore()
        self.faults = faults or Faults()
        self.store.propagated = self.faults.propagated
        self.tokens = TokenService(members_of=self.store.token_granting_members)
        methods: dict[str, Callable[[bytes], bytes]] = {
            "GetServiceAccount": self._get_service_account,
            "CreateServiceAccount": self._create_service_account,
            "ListServiceAccounts": self._list_service_accounts,
            "GetIamPolicy": self._get_iam_policy,
            "SetIamPolicy": self._set_iam_policy,
        }
        self.handler: Any = grpc.method_handlers_generic_handler(
            SERVICE,
            {name: grpc.unary_unary_rpc_method_handler(self._behaviour(name, fn)) for name, fn in methods.items()},
        )
        self.projects_handler: Any = grpc.method_handlers_generic_handler(
            PROJECTS_SERVICE,
            {
                "GetIamPolicy": grpc.unary_unary_rpc_method_handler(
                    self._behaviour("GetIamPolicy", self._get_project_policy, "cloudresourcemanager")
                )
            },
        )

    def _get_project_policy(self, data: bytes) -> bytes:
        request = iam_policy_pb2.GetIamPolicyRequest.FromString(data)
        out: bytes = self.store.project_policy(request.resource).SerializeToString()
        return out

    def _behaviour(
        self, operation: str, fn: Callable[[bytes], bytes], service: str = "iam"
    ) -> Callable[[bytes, Any], bytes]:
        def behaviour(request: bytes, context: Any) -> bytes:
            fault = self.faults.on_call(service, operation)
            try:
                if fault == "throttle":
                    raise IamError(
                        "RESOURCE_EXHAUSTED",
                        f"Quota exceeded for quota metric '{operation} requests' and limit "
                        f"'{operation} requests per minute' of service 'iam.googleapis.com'.",
                    )
                if fault:
                    raise IamError("UNAVAILABLE", "The service is currently unavailable.")
                return fn(request)
            except IamError as err:
                context.abort(getattr(grpc.StatusCode, err.code), err.message)  # raises
                raise

        return behaviour

    def _get_service_account(self, data: bytes) -> bytes:
        request = iam.GetServiceAccountRequest.deserialize(data)
        out: bytes = iam.ServiceAccount.serialize(self.store.get(request.name).to_proto())
        return out

    def _create_service_account(self, data: bytes) -> bytes:
        request = iam.CreateServiceAccountRequest.deserialize(data)
        account = request.service_account
        record = self.store.create(request.name, request.account_id, account.display_name, account.description)
        out: bytes = iam.ServiceAccount.serialize(record.to_proto())
        return out

    def _list_service_accounts(self, data: bytes) -> bytes:
        request = iam.ListServiceAccountsRequest.deserialize(data)
        page, token = self.store.list(request.name, request.page_size, request.page_token)
        response = iam.ListServiceAccountsResponse(accounts=[a.to_proto() for a in page], next_page_token=token)
        out: bytes = iam.ListServiceAccountsResponse.serialize(response)
        return out

    def _get_iam_policy(self, data: bytes) -> bytes:
        request = iam_policy_pb2.GetIamPolicyRequest.FromString(data)
        policy = self.store.get_policy(request.resource, int(request.options.requested_policy_version))
        out: bytes = policy.SerializeToString()
        return out

    def _set_iam_policy(self, data: bytes) -> bytes:
        request = iam_policy_pb2.SetIamPolicyRequest.FromString(data)
        out: bytes = self.store.set_policy(request.resource, request.policy).SerializeToString()
        return out


class _ControlHandler(BaseHTTPRequestHandler):
    """`/_porter/*` routes, as in the AWS emulator, plus seeding of customer service accounts."""

    service: IamService  # set on the per-server subclass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        tokens = self.service.tokens
        if path == "/v1/token" and method == "POST":
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
            self._json(*tokens.exchange(form))
            return
        if path.startswith("/v1/projects/") and method == "POST":
            self._json(*tokens.generate_access_token(path, self.headers.get("Authorization") or ""))
            return
        try:
            body: dict[str, Any] = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"message": "body is not JSON"})
            return
        faults, store = self.service.faults, self.service.store
        if path == "/_porter/faults" and method == "POST":
            faults.configure(body)
            self._json(200, {"ok": True})
        elif path == "/_porter/calls" and method == "GET":
            self._json(200, faults.snapshot())
        elif path == "/_porter/reset" and method == "POST":
            faults.reset()
            if body.get("state"):
                store.reset()
            self._json(200, {"ok": True})
        elif path == "/_porter/health":
            self._json(200, {"ok": True})
        elif path == "/_porter/workload-pools" and method == "POST":
            tokens.add_provider(str(body.get("pool", "")), str(body.get("issuer", "")), body.get("caFile"))
            self._json(200, {"ok": True})
        elif path == "/_porter/service-accounts" and method == "POST":
            try:
                record = store.create(
                    f"projects/{body.get('project', '')}",
                    str(body.get("accountId", "")),
                    str(body.get("displayName", "")),
                    str(body.get("description", "")),
                )
            except IamError as err:
                self._json(HTTP_STATUS.get(err.code, 400), {"code": err.code, "message": err.message})
                return
            self._json(200, {"serviceAccount": record.to_json()})
        elif path == "/_porter/project-bindings" and method == "POST":
            store.grant_on_project(str(body.get("project", "")), str(body.get("role", "")), str(body.get("member", "")))
            self._json(200, {"ok": True})
        else:
            self._json(404, {"message": f"no control route {method} {path}"})

    def _json(self, status: int, body: Any) -> None:
        send_json(self, status, body)


@dataclass
class RunningGcpEmulator:
    """An in-process emulator: the gRPC server and the HTTP control server, stopped together."""

    service: IamService
    grpc_server: Any
    control_server: ThreadingHTTPServer
    port: int
    control_port: int

    def stop(self) -> None:
        self.control_server.shutdown()
        self.control_server.server_close()
        self.grpc_server.stop(grace=1).wait()


def serve(host: str = "127.0.0.1", port: int = 0, control_port: int = 0, workers: int = 16) -> RunningGcpEmulator:
    """Start both servers on background threads; port 0 picks a free port."""
    service = IamService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((service.handler, service.projects_handler))
    bound: int = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"could not bind the gRPC port {host}:{port}")
    server.start()
    handler = type("ControlHandler", (_ControlHandler,), {"service": service})
    control = ThreadingHTTPServer((host, control_port), handler)
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, name="gcp-control", daemon=True).start()
    return RunningGcpEmulator(service, server, control, bound, control.server_address[1])


@dataclass
class GcpEmulator:
    """The IAM fake as its own process: gRPC on `port` (`endpoint`), control routes on `control_port`.

    No environment variable points `IAMClient` at a plaintext endpoint (the client only builds TLS
    channels by itself), so code under test needs the channel handed in: see `client()`.
    """

    logdir: Path
    port: int = 0
    control_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"  # or e.g. the node's bridge gateway, so pods reach it

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    def start(self) -> GcpEmulator:
        self.port = self.port or free_port()
        self.control_port = self.control_port or free_port()
        log = self.logdir / "gcp-emulator.log"
        args = ["--host", self.host, "--port", str(self.port), "--control-port", str(self.control_port)]
        self.proc = spawn_module("porter_dev.gcp", args, log)
        _wait_http(f"{self.control_url}/_porter/health", self.proc, log)
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def faults(self, **plan: Any) -> None:
        """e.g. faults(rules=[{"fault": "throttle", "operation": "SetIamPolicy", "count": 1}], latencyMs=50)."""
        _http("POST", f"{self.control_url}/_porter/faults", plan)

    def reset(self, state: bool = False) -> None:
        """Clear faults and call counts; with `state`, also every service account and policy."""
        _http("POST", f"{self.control_url}/_porter/reset", {"state": state})

    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = _http("GET", f"{self.control_url}/_porter/calls")["calls"]
        return calls

    def injected(self) -> dict[str, int]:
        injected: dict[str, int] = _http("GET", f"{self.control_url}/_porter/calls")["injected"]
        return injected

    @property
    def rest_endpoint(self) -> str:
        """Where STS (`/v1/token`) and IAM Credentials (`generateAccessToken`) answer, over plain HTTP."""
        return self.control_url

    def add_workload_pool_provider(self, pool: str, issuer: str, ca_file: Path | None = None) -> None:
        """Make the cluster with OIDC `issuer` an identity provider of `pool` (as GKE or fleet registration does)."""
        body = {"pool": pool, "issuer": issuer, "caFile": str(ca_file) if ca_file else None}
        _http("POST", f"{self.control_url}/_porter/workload-pools", body)

    def seed_service_account(self, project: str, account_id: str, display_name: str = "") -> str:
        """Create a customer-owned service account out of band; returns its email."""
        body = {"project": project, "accountId": account_id, "displayName": display_name}
        email: str = _http("POST", f"{self.control_url}/_porter/service-accounts", body)["serviceAccount"]["email"]
        return email

    def grant_on_project(self, project: str, role: str, member: str) -> None:
        """Add `member` to `role` in the project's IAM policy (what `gcloud projects add-iam-policy-binding` does)."""
        _http(
            "POST", f"{self.control_url}/_porter/project-bindings", {"project": project, "role": role, "member": member}
        )

    def client(self) -> IAMClient:
        """A real `IAMClient` on a plaintext channel to this emulator.

        Given a channel, the transport ignores credentials and never looks for Application Default
        Credentials, so none are passed (AnonymousCredentials would be dropped the same way).
        """
        transport = IAMGrpcTransport(channel=grpc.insecure_channel(self.endpoint))
        return IAMClient(transport=transport)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter_dev.gcp", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--control-port", type=int, default=8086)
    args = parser.parse_args(argv)
    running = serve(args.host, args.port, args.control_port)
    print(f"IAM gRPC on {args.host}:{running.port}, control on http://{args.host}:{running.control_port}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
