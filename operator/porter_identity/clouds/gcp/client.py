"""GCP adapter: the IAM policy of a service account (google-cloud-iam, gRPC)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.cloud import iam_admin_v1
from google.iam.v1 import iam_policy_pb2, policy_pb2

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
from porter_identity.model import project_of
from porter_identity.providers import fence
from porter_identity.providers.grouped import GroupCommit, Ticket
from porter_identity.providers.pacing import Pacer, is_read
from porter_identity.providers.recent import Recent


@contextmanager
def _counted(operation: str) -> Iterator[None]:
    """Counts one gRPC call; the outcome follows the error the client raised, if any."""
    try:
        yield
    except gexc.GoogleAPICallError as err:
        status = int(err.code or 0) if isinstance(err.code, int) else 0
        outcome = (
            "throttled"
            if isinstance(err, gexc.TooManyRequests | gexc.ResourceExhausted)
            else metrics.outcome_of(status)
        )
        metrics.CLOUD_CALLS.labels("gcp", operation, outcome if outcome != "success" else "client_error").inc()
        raise
    metrics.CLOUD_CALLS.labels("gcp", operation, "success").inc()


PROJECTS_GET_IAM_POLICY = "/google.cloud.resourcemanager.v3.Projects/GetIamPolicy"
RESOURCE_MANAGER = "cloudresourcemanager.googleapis.com:443"


def _resource_manager_channel() -> Any:
    """Production: an ADC-authorised channel to Resource Manager (no client library needed for one call)."""
    import google.auth
    from google.auth.transport.grpc import secure_authorized_channel
    from google.auth.transport.requests import Request

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return secure_authorized_channel(credentials, Request(), RESOURCE_MANAGER)  # type: ignore[no-untyped-call]


def translate(err: gexc.GoogleAPICallError | gexc.RetryError) -> CloudError:
    if isinstance(err, gexc.RetryError):
        return Transient(str(err), code="RetryError")
    code = type(err).__name__
    message = str(err.message or err)
    if isinstance(err, gexc.NotFound):
        return NotFound(message, code=code)
    if isinstance(err, gexc.ResourceExhausted | gexc.TooManyRequests):
        return Throttled(message, code=code)
    if isinstance(err, gexc.Aborted):
        return Transient(message, code=code)  # stale etag: read again and retry
    if isinstance(err, gexc.PermissionDenied | gexc.Unauthenticated):
        return AccessDenied(message, code=code)
    if isinstance(err, gexc.FailedPrecondition) and "limit" in message.lower():
        return LimitExceeded(message, code=code)
    if isinstance(err, gexc.InvalidArgument):
        return Invalid(message, code=code)
    if isinstance(err, gexc.AlreadyExists | gexc.Conflict):
        return Conflict(message, code=code)
    if isinstance(err, gexc.ServerError | gexc.DeadlineExceeded | gexc.ServiceUnavailable):
        return Transient(message, code=code)
    # Anything else (OutOfRange, Cancelled, unknown 4xx): refused as sent; rechecked, not hot-retried.
    return Invalid(message, code=code)


def translated() -> AbstractContextManager[None]:
    return translating((gexc.GoogleAPICallError, gexc.RetryError), translate)


PolicyChange = Callable[[policy_pb2.Policy], policy_pb2.Policy | None]
Written = tuple[policy_pb2.Policy, bool]  # the policy after the write, and whether this change was in it


def resource(email: str) -> str:
    """The policy resource; the project comes from the email, since `projects/-` answers PERMISSION_DENIED
    instead of NOT_FOUND for a missing account (documented on ServiceAccount.name)."""
    return f"projects/{project_of(email) or '-'}/serviceAccounts/{email}"


class GcpProvider:
    """Read-modify-write of service-account IAM policies, serialised per service account, etag-checked."""

    def __init__(
        self,
        client: iam_admin_v1.IAMClient,
        etag_retries: int = 3,
        pacer: Pacer | None = None,
        lock_wait_seconds: float | None = None,
        projects: Callable[[], Any] | None = None,
        privilege_cache_seconds: float = 300.0,
    ) -> None:
        self.client = client
        self.pacer = pacer
        self.etag_retries = etag_retries
        self.writes: GroupCommit[PolicyChange, Written] = GroupCommit(lock_wait_seconds)
        self._privileges: Recent[list[tuple[str, list[str]]]] = Recent(privilege_cache_seconds)
        self._projects_channel = projects or _resource_manager_channel
        self._project_policy: Any = None

    def project_bindings(self, project: str, email: str) -> list[tuple[str, list[str]]]:
        """(role, members) of the project's IAM policy: Resource Manager v3 Projects.GetIamPolicy. Kept
        `privilege_cache_seconds` for `email`'s connections: per identity, like AWS and Azure, so a grant made to
        another service account meanwhile is seen by its first connection."""
        return self._privileges.get(f"{project}/{email}", lambda: self._read_project_bindings(project))

    def _read_project_bindings(self, project: str) -> list[tuple[str, list[str]]]:
        if self._project_policy is None:
            self._project_policy = self._projects_channel().unary_unary(
                PROJECTS_GET_IAM_POLICY,
                request_serializer=iam_policy_pb2.GetIamPolicyRequest.SerializeToString,
                response_deserializer=policy_pb2.Policy.FromString,
            )
        request = iam_policy_pb2.GetIamPolicyRequest(resource=f"projects/{project}")
        try:
            with translated(), self._call("GetProjectIamPolicy"):
                try:
                    found: policy_pb2.Policy = self._project_policy(request, timeout=30)
                except grpc.RpcError as err:
                    raise gexc.from_grpc_error(err) from err  # type: ignore[no-untyped-call]
        except NotFound:
            return []
        return [(b.role, list(b.members)) for b in found.bindings]

    @classmethod
    def connect(
        cls,
        endpoint: str | None = None,
        pacer: Pacer | None = None,
        lock_wait_seconds: float | None = None,
        privilege_cache_seconds: float = 300.0,
    ) -> GcpProvider:
        """Production: Application Default Credentials. `endpoint` (host:port, plaintext) is for the emulator."""
        if endpoint is None:
            return cls(
                iam_admin_v1.IAMClient(),
                pacer=pacer,
                lock_wait_seconds=lock_wait_seconds,
                privilege_cache_seconds=privilege_cache_seconds,
            )
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

        channel = grpc.insecure_channel(endpoint)
        transport = IAMGrpcTransport(channel=channel, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        return cls(
            iam_admin_v1.IAMClient(transport=transport),
            projects=lambda: channel,
            pacer=pacer,
            lock_wait_seconds=lock_wait_seconds,
            privilege_cache_seconds=privilege_cache_seconds,
        )

    def _call(self, operation: str) -> AbstractContextManager[None]:
        if self.pacer is not None:
            self.pacer.wait("read" if is_read(operation) else "write")
        if not is_read(operation):  # after the pacing wait: the fence may have closed during it
            fence.FENCE.check("gcp", operation)
        return _counted(operation)

    def policy(self, email: str) -> policy_pb2.Policy:
        """The full policy (version 3, so conditional bindings are returned as they are)."""
        with translated(), self._call("GetIamPolicy"):
            found: policy_pb2.Policy = self.client.get_iam_policy(
                request={"resource": resource(email), "options": {"requested_policy_version": 3}}
            )
        return found

    def exists(self, email: str) -> bool:
        """Whether IAM's own API has the service account (iam.serviceAccounts.get, in the operator's role): a policy
        that answers NOT_FOUND for an account made a moment ago is propagation, not absence. Unknown (refused, or
        the read failed) counts as absent."""
        try:
            with translated(), self._call("GetServiceAccount"):
                self.client.get_service_account(request={"name": resource(email)})
        except CloudError:
            return False
        return True

    def update(self, email: str, change: PolicyChange) -> Written:
        """Apply `change` (None = nothing to do) with the read etag; a stale etag means read again and retry.

        Changes to one account that queue while a write to it is in flight go out together in its next write
        (GroupCommit): one read and one write for all of them, in the order they came. Returns the resulting policy
        and whether this change was written."""
        return self.writes.submit(email.lower(), change, lambda batch: self._commit(email, batch))

    def _commit(self, email: str, batch: list[Ticket[PolicyChange, Written]]) -> None:
        try:
            self._commit_together(email, batch)
        except (Invalid, LimitExceeded, Conflict) as err:
            if len(batch) == 1:
                batch[0].answer(error=err)
                return
            # One change may be what the policy refuses (a member limit, say): the others must not fail with it.
            for ticket in batch:
                self._commit(email, [ticket])
        except CloudError as err:
            for ticket in batch:
                ticket.answer(error=err)

    def _commit_together(self, email: str, batch: list[Ticket[PolicyChange, Written]]) -> None:
        for attempt in range(self.etag_retries):
            wanted = current = self.policy(email)
            changed: list[Ticket[PolicyChange, Written]] = []
            for ticket in batch:
                after = ticket.change(wanted)
                if after is not None:
                    wanted = after
                    changed.append(ticket)
            if not changed:
                for ticket in batch:
                    ticket.answer((current, False))
                return
            try:
                with translated(), self._call("SetIamPolicy"):
                    self.client.set_iam_policy(request={"resource": resource(email), "policy": wanted})
            except Transient as err:
                if err.code != "Aborted" or attempt == self.etag_retries - 1:
                    raise
                continue
            for ticket in batch:
                ticket.answer((wanted, ticket in changed))
            return
        raise AssertionError("unreachable")
