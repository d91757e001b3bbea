"""Every gRPC answer of the GCP IAM fake decodes as the real proto message and uses a status Google documents."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud.iam_admin_v1 import IAMClient
from google.cloud.iam_admin_v1.services.iam.transports.grpc import IAMGrpcTransport
from google.cloud.iam_admin_v1.types import iam
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.type import expr_pb2

from porter_dev.gcp import HTTP_STATUS, WORKLOAD_IDENTITY_USER, GcpEmulator
from porter_identity.clouds.gcp.client import GcpProvider, resource
from porter_identity.clouds.gcp.plan import member, with_member, without_member
from porter_identity.errors import CloudError, NotFound
from tests.contract.gcp_model import IAM, PROJECTS, Call, Recorder, problems

WRONG_ETAG = b"\x07wrongtag"


@pytest.fixture
def recorder(gcp: GcpEmulator) -> Iterator[Recorder]:
    gcp.reset()
    yield Recorder()
    gcp.reset()


@pytest.fixture
def channel(gcp: GcpEmulator, recorder: Recorder) -> Iterator[Any]:
    found = recorder.channel(gcp.endpoint)
    yield found
    found.close()


@pytest.fixture
def client(channel: Any) -> IAMClient:
    return IAMClient(transport=IAMGrpcTransport(channel=channel))


@pytest.fixture
def provider(client: IAMClient, channel: Any) -> GcpProvider:
    return GcpProvider(client, projects=lambda: channel)


@pytest.fixture
def project() -> str:
    return f"proj-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def email(gcp: GcpEmulator, project: str) -> str:
    return gcp.seed_service_account(project, "contract-app")  # a control route: not recorded


def within_protos(recorder: Recorder, seen: Iterable[str] = ()) -> None:
    assert recorder.calls, "nothing was recorded"
    found = [p for call in recorder.calls for p in problems(call)]
    assert found == []
    missing = set(seen) - recorder.seen()
    assert not missing, f"not exercised: {sorted(missing)}"


def test_workload_identity_binding_through_the_operator_client(
    gcp: GcpEmulator, provider: GcpProvider, recorder: Recorder, project: str, email: str
) -> None:
    who = member(f"{project}.svc.id.goog", "ns", "ksa")
    assert provider.policy(email).etag  # the etag of a policy never written
    policy, written = provider.update(email, lambda p: with_member(p, who))
    assert written and who in {m for b in policy.bindings for m in b.members}
    provider.update(email, lambda p: without_member(p, who))
    gcp.grant_on_project(project, "roles/iam.serviceAccountAdmin", f"serviceAccount:{email}")
    assert provider.project_bindings(project, email)
    with pytest.raises(NotFound):
        provider.policy(f"missing-app@{project}.iam.gserviceaccount.com")
    within_protos(recorder, seen={"GetIamPolicy:OK", "SetIamPolicy:OK", "GetIamPolicy:NOT_FOUND"})
    assert any(c.method == f"{PROJECTS}GetIamPolicy" for c in recorder.calls)


def test_stale_etag_is_aborted_and_the_operator_reads_again(
    gcp: GcpEmulator, client: IAMClient, provider: GcpProvider, recorder: Recorder, project: str, email: str
) -> None:
    first = provider.policy(email)
    other = member(f"{project}.svc.id.goog", "ns", "someone-else")
    client.set_iam_policy(request={"resource": resource(email), "policy": with_member(first, other)})
    stale = with_member(first, member(f"{project}.svc.id.goog", "ns", "late"))
    assert stale is not None
    with pytest.raises(gexc.Aborted) as err:
        client.set_iam_policy(request={"resource": resource(email), "policy": stale})
    assert err.value.code == 409  # api-core's HTTP mapping of ABORTED, as the IAM docs give it
    within_protos(recorder, seen={"SetIamPolicy:ABORTED", "SetIamPolicy:OK"})


def test_service_accounts_and_refusals(
    gcp: GcpEmulator, client: IAMClient, recorder: Recorder, project: str, email: str
) -> None:
    name = f"projects/{project}/serviceAccounts/{email}"
    client.get_service_account(name=name)
    client.get_service_account(name=f"projects/-/serviceAccounts/{email}")
    created = client.create_service_account(
        request={"name": f"projects/{project}", "account_id": "made-by-contract", "service_account": {}}
    )
    assert created.email.startswith("made-by-contract@")
    list(client.list_service_accounts(request={"name": f"projects/{project}", "page_size": 1}))
    refusals: list[tuple[Any, dict[str, Any]]] = [
        (
            client.get_service_account,
            {"name": f"projects/{project}/serviceAccounts/gone@{project}.iam.gserviceaccount.com"},
        ),
        (client.get_service_account, {"name": f"projects/-/serviceAccounts/gone@{project}.iam.gserviceaccount.com"}),
        (client.get_service_account, {"name": "not-a-name"}),
        (client.create_service_account, {"name": f"projects/{project}", "account_id": "made-by-contract"}),
        (client.get_iam_policy, {"resource": name, "options": {"requested_policy_version": 2}}),
        (client.set_iam_policy, {"resource": name, "policy": {"etag": WRONG_ETAG}}),
        (
            client.set_iam_policy,
            {"resource": name, "policy": {"bindings": [{"role": WORKLOAD_IDENTITY_USER, "members": ["nobody"]}]}},
        ),
    ]
    for call, request in refusals:
        with pytest.raises(gexc.GoogleAPICallError):
            call(request=request, retry=None)
    within_protos(
        recorder,
        seen={
            "GetServiceAccount:OK",
            "CreateServiceAccount:OK",
            "ListServiceAccounts:OK",
            "GetServiceAccount:NOT_FOUND",
            "GetServiceAccount:PERMISSION_DENIED",
            "GetServiceAccount:INVALID_ARGUMENT",
            "CreateServiceAccount:ALREADY_EXISTS",
            "GetIamPolicy:INVALID_ARGUMENT",
            "SetIamPolicy:ABORTED",
            "SetIamPolicy:INVALID_ARGUMENT",
        },
    )


def test_conditional_policy_versions(client: IAMClient, recorder: Recorder, project: str, email: str) -> None:
    name = f"projects/{project}/serviceAccounts/{email}"
    condition = expr_pb2.Expr(title="until", expression='request.time < timestamp("2030-01-01T00:00:00Z")')
    binding = policy_pb2.Binding(role=WORKLOAD_IDENTITY_USER, members=[f"user:a@{project}.test"], condition=condition)
    client.set_iam_policy(request={"resource": name, "policy": policy_pb2.Policy(version=3, bindings=[binding])})
    for version in (1, 3):
        client.get_iam_policy(request={"resource": name, "options": {"requested_policy_version": version}})
    within_protos(recorder, seen={"GetIamPolicy:OK", "SetIamPolicy:OK"})


@pytest.mark.parametrize(("fault", "code"), [("throttle", "RESOURCE_EXHAUSTED"), ("unavailable", "UNAVAILABLE")])
def test_injected_faults_are_documented_statuses(
    gcp: GcpEmulator, provider: GcpProvider, recorder: Recorder, email: str, fault: str, code: str
) -> None:
    gcp.faults(rules=[{"fault": fault, "operation": "SetIamPolicy", "count": 5}])
    with pytest.raises(CloudError):
        provider.update(email, lambda p: with_member(p, "user:x@example.com"))
    within_protos(recorder, seen={f"SetIamPolicy:{code}"})


def test_the_rest_status_table_is_api_cores() -> None:
    """The fake's REST side maps gRPC codes to HTTP as google-api-core does (ABORTED and ALREADY_EXISTS are 409)."""
    for code, status in HTTP_STATUS.items():
        assert gexc.exception_class_for_grpc_status(getattr(grpc.StatusCode, code)).code == status, code


# ---- the checks themselves can fail


def _policy(**fields: Any) -> bytes:
    return policy_pb2.Policy(**fields).SerializeToString()


GET = iam_policy_pb2.GetIamPolicyRequest(resource="r", options={"requested_policy_version": 1})
SET = iam_policy_pb2.SetIamPolicyRequest(resource="r", policy=policy_pb2.Policy(etag=b"\x07same"))
GOOD_ACCOUNT = iam.ServiceAccount(
    name="projects/p-123456/serviceAccounts/a@p-123456.iam.gserviceaccount.com",
    project_id="p-123456",
    unique_id="112233445566778899001",
    email="a@p-123456.iam.gserviceaccount.com",
    oauth2_client_id="112233445566778899001",
)
WI = policy_pb2.Binding(role=WORKLOAD_IDENTITY_USER, members=["serviceAccount:p.svc.id.goog[ns/sa]"])
CONDITIONAL = policy_pb2.Binding(
    role=WORKLOAD_IDENTITY_USER, members=["user:a@b.test"], condition=expr_pb2.Expr(title="t", expression="true")
)


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        (Call(f"{IAM}GetIamPolicy", GET, _policy(version=1, etag=b"\x07a", bindings=[WI])), None),
        (Call(f"{IAM}GetServiceAccount", None, iam.ServiceAccount.serialize(GOOD_ACCOUNT)), None),
        (Call(f"{IAM}GetIamPolicy", GET, _policy(version=1, bindings=[WI])), "always carries an etag"),
        (Call(f"{IAM}GetIamPolicy", GET, _policy(version=2, etag=b"\x07a")), "version 2"),
        (Call(f"{IAM}GetIamPolicy", GET, _policy(version=3, etag=b"\x07a", bindings=[CONDITIONAL])), "below version 3"),
        (Call(f"{IAM}GetIamPolicy", GET, _policy(version=1, etag=b"\x07a", bindings=[CONDITIONAL])), "below version 3"),
        (
            Call(
                f"{IAM}GetIamPolicy",
                GET,
                _policy(etag=b"\x07a", bindings=[policy_pb2.Binding(role="r", members=["x"])]),
            ),
            "is not a role name",
        ),
        (Call(f"{IAM}SetIamPolicy", SET, _policy(etag=b"\x07same")), "kept the etag"),
        (Call(f"{IAM}GetIamPolicy", GET, _policy(etag=b"\x07a") + b"\xa8\x06\x01"), "unknown field number 101"),
        (Call(f"{IAM}GetIamPolicy", GET, b"\xff\xff\xff"), "does not decode"),
        (
            Call(f"{IAM}GetServiceAccount", None, iam.ServiceAccount.serialize(iam.ServiceAccount(email="a@b.c"))),
            "unique_id is empty",
        ),
        (Call(f"{IAM}GetIamPolicy", GET, None, "ALREADY_EXISTS", "m"), "not a status this RPC answers"),
        (Call(f"{IAM}GetServiceAccount", None, None, "ABORTED", "m"), "not a status this RPC answers"),
        (Call(f"{IAM}SetIamPolicy", SET, None, "ABORTED", ""), "without a message"),
        (Call(f"{IAM}DeleteServiceAccount", None, b""), "not an RPC"),
    ],
)
def test_the_validator_rejects_what_the_protos_and_docs_forbid(call: Call, complaint: str | None) -> None:
    found = problems(call)
    if complaint is None:
        assert found == []
    else:
        assert any(complaint in p for p in found), found
