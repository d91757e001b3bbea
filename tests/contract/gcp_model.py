"""Check the IAM fake's gRPC answers against the real proto messages and the status codes Google documents.

Status codes: Google's error model (https://cloud.google.com/apis/design/errors, AIP-193) lets any RPC answer
INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL
and DEADLINE_EXCEEDED; NOT_FOUND is for an RPC on a named resource that does not exist (the IAM reference: a
missing service account is 404 NOT_FOUND, 403 PERMISSION_DENIED through the `projects/-` wildcard); ALREADY_EXISTS
for a create; ABORTED (HTTP 409) for a SetIamPolicy whose etag is not the stored policy's (`google.iam.v1.Policy.etag`
and the IAM docs on concurrent policy changes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud.iam_admin_v1.types import iam
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError, Message

GENERAL = {
    "INVALID_ARGUMENT",
    "FAILED_PRECONDITION",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "INTERNAL",
    "DEADLINE_EXCEEDED",
}
IAM = "/google.iam.admin.v1.IAM/"
PROJECTS = "/google.cloud.resourcemanager.v3.Projects/"
# Per RPC: the response message class (the real one) and the codes beyond GENERAL it may answer.
RPCS: dict[str, tuple[Any, set[str]]] = {
    f"{IAM}GetServiceAccount": (iam.ServiceAccount.pb(), {"NOT_FOUND"}),
    f"{IAM}ListServiceAccounts": (iam.ListServiceAccountsResponse.pb(), {"NOT_FOUND"}),
    f"{IAM}CreateServiceAccount": (iam.ServiceAccount.pb(), {"NOT_FOUND", "ALREADY_EXISTS"}),
    f"{IAM}GetIamPolicy": (policy_pb2.Policy, {"NOT_FOUND"}),
    f"{IAM}SetIamPolicy": (policy_pb2.Policy, {"NOT_FOUND", "ABORTED"}),
    f"{PROJECTS}GetIamPolicy": (policy_pb2.Policy, {"NOT_FOUND"}),
}
MEMBER = re.compile(
    r"^(allUsers|allAuthenticatedUsers|(user|group|serviceAccount|domain):.+|deleted:(user|group|serviceAccount):.+"
    r"|principal(Set)?://.+)$"
)
ROLE = re.compile(r"^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[^/]+/roles/[A-Za-z0-9_.]+)$")


@dataclass
class Call:
    """One RPC as it crossed the channel: the request sent, and the answer's bytes or its status."""

    method: str
    request: Any
    raw: bytes | None = None
    code: str | None = None
    details: str = ""


@dataclass
class Recorder(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """A client interceptor: every unary call on the channel it wraps, kept as bytes (re-encoded from what the
    client decoded, unknown fields included) or as a status."""

    calls: list[Call] = field(default_factory=list)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        call = Call(details.method, _pb(request))
        error = outcome.exception()
        if error is not None:
            call.code, call.details = error.code().name, error.details() or ""
        else:
            call.raw = _pb(outcome.result()).SerializeToString()
        self.calls.append(call)
        return outcome

    def channel(self, endpoint: str) -> Any:
        return grpc.intercept_channel(grpc.insecure_channel(endpoint), self)

    def seen(self) -> set[str]:
        return {f"{c.method.rsplit('/', 1)[-1]}:{c.code or 'OK'}" for c in self.calls}


def _pb(message: Any) -> Message:
    kind = type(message)
    return kind.pb(message) if hasattr(kind, "pb") else message  # type: ignore[no-any-return]


def problems(call: Call) -> list[str]:
    """What in the answer the real service could not have sent; [] when none."""
    known = RPCS.get(call.method)
    if known is None:
        return [f"{call.method}: not an RPC of google.iam.admin.v1.IAM or Projects the fake should serve"]
    kind, codes = known
    name = call.method.rsplit("/", 1)[-1]
    if call.code is not None:
        if call.code not in GENERAL | codes:
            return [f"{name}: {call.code} is not a status this RPC answers ({sorted(GENERAL | codes)})"]
        return [] if call.details else [f"{name}: {call.code} without a message"]
    assert call.raw is not None
    try:
        message = kind.FromString(call.raw)
    except DecodeError as err:
        return [f"{name}: the answer does not decode as {kind.DESCRIPTOR.full_name}: {err}"]
    out = [f"{name}: {p}" for p in _unknown(message, kind.DESCRIPTOR.name)]
    if kind is policy_pb2.Policy:
        out += [f"{name}: {p}" for p in check_policy(message, call.request)]
    elif kind.DESCRIPTOR.name == "ServiceAccount":
        out += [f"{name}: {p}" for p in check_account(message)]
    else:
        for i, account in enumerate(message.accounts):
            out += [f"{name}: accounts[{i}]: {p}" for p in check_account(account)]
    return out


def _unknown(message: Message, path: str) -> list[str]:
    """Fields the message class does not have, anywhere in the message."""
    found = unknown_fields.UnknownFieldSet(message)
    out = [f"{path}: unknown field number {f.field_number}" for f in found]
    for described, value in message.ListFields():
        if described.message_type is None or described.message_type.GetOptions().map_entry:
            continue
        items = value if described.is_repeated else [value]
        for i, item in enumerate(items):
            out += _unknown(item, f"{path}.{described.name}[{i}]")
    return out


def check_policy(policy: Any, request: Any) -> list[str]:
    """What the service always sets in a google.iam.v1.Policy, and what the request asked of it."""
    out = []
    if not policy.etag:
        out.append("a policy always carries an etag")
    if policy.version not in (0, 1, 3):
        out.append(f"version {policy.version} is not 0, 1 or 3")
    conditional = any(b.HasField("condition") for b in policy.bindings)
    if conditional and policy.version != 3:
        out.append("conditional bindings in a policy below version 3")
    for binding in policy.bindings:
        if not ROLE.match(binding.role):
            out.append(f"role {binding.role!r} is not a role name")
        if not binding.members:
            out.append(f"binding {binding.role} without members")
        out += [f"member {m!r} has no type prefix" for m in binding.members if not MEMBER.match(m)]
    asked = request.options.requested_policy_version if isinstance(request, iam_policy_pb2.GetIamPolicyRequest) else 3
    if conditional and asked < 3:
        out.append("conditions returned to a request below version 3")
    sent = request.policy.etag if isinstance(request, iam_policy_pb2.SetIamPolicyRequest) else b""
    if sent and policy.etag == sent:
        out.append("a write kept the etag it was made against (every write changes it)")
    return out


def check_account(account: Any) -> list[str]:
    """The fields GetServiceAccount always fills (IAM reference, ServiceAccount)."""
    out = [
        f"{f} is empty"
        for f in ("name", "project_id", "unique_id", "email", "oauth2_client_id")
        if not getattr(account, f)
    ]
    if account.name and account.name != f"projects/{account.project_id}/serviceAccounts/{account.email}":
        out.append(f"name {account.name!r} is not projects/{{project_id}}/serviceAccounts/{{email}}")
    if account.unique_id and not account.unique_id.isdigit():
        out.append(f"unique_id {account.unique_id!r} is not numeric")
    return out
