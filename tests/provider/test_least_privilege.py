"""The LeastPrivilege reads against the emulators: IAM role policies, ARM role assignments, project IAM policy."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from porter_dev.azure import AzureEmulator
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AWS_REGION, AwsEmulator
from porter_identity.clouds.aws.client import AwsProvider
from porter_identity.clouds.azure.client import AzureProvider
from porter_identity.clouds.gcp.client import GcpProvider
from porter_identity.errors import Invalid
from porter_identity.providers.clients import EmulatorToken
from porter_identity.reconcile.privilege import aws_findings, azure_findings, gcp_findings

OWNER, CONTRIBUTOR = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b24988ac-6210-4208-b1cd-7fd16bd8d0b1"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
NO_CACHE = 1e-9  # these tests change permissions between reads: every read goes to the emulator
SUBSCRIPTION = "00000000-0000-0000-0000-0000000001ea"
PROJECT = "porter-least"
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@pytest.fixture
def aws_provider(aws: AwsEmulator, eks_cluster: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProvider]:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    yield AwsProvider(AWS_REGION, eks_cluster, max_attempts=1, privilege_cache_seconds=NO_CACHE)


def findings(provider: AwsProvider, role: str) -> list[str]:
    found = provider.role_policies(role)
    return aws_findings(found.attached, found.managed, found.inline)


def test_aws_role_policies_are_read_and_admin_ones_found(
    aws_provider: AwsProvider, aws: AwsEmulator, make_role: Any
) -> None:
    iam = aws.client("iam")
    role = make_role().rsplit("/", 1)[-1]
    assert findings(aws_provider, role) == []
    iam.put_role_policy(RoleName=role, PolicyName="s3", PolicyDocument=json.dumps(S3))
    assert findings(aws_provider, role) == [], "a service wildcard is not admin"
    iam.put_role_policy(RoleName=role, PolicyName="all", PolicyDocument=json.dumps(ADMIN))
    assert findings(aws_provider, role) == ["inline policy all allows * on *"]
    custom = iam.create_policy(PolicyName=f"everything-{uuid.uuid4().hex[:6]}", PolicyDocument=json.dumps(ADMIN))
    iam.attach_role_policy(RoleName=role, PolicyArn=custom["Policy"]["Arn"])
    iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    assert sorted(findings(aws_provider, role)) == sorted(
        [
            "managed policy AdministratorAccess is attached",
            f"managed policy {custom['Policy']['Arn']} allows * on *",
            "inline policy all allows * on *",
        ]
    )


@pytest.fixture
def azure_provider(azure: AzureEmulator) -> AzureProvider:
    return AzureProvider(
        SUBSCRIPTION,
        EmulatorToken(),
        base_url=azure.endpoint,
        connection_verify=str(azure.ca_file),
        privilege_cache_seconds=NO_CACHE,
    )


def test_azure_role_assignments_of_the_principal_only_and_by_scope(
    azure_provider: AzureProvider, azure: AzureEmulator
) -> None:
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    assert azure_provider.role_assignments(me) == []
    azure.assign_role(SUBSCRIPTION, other, OWNER)
    azure.assign_role(SUBSCRIPTION, me, READER)
    azure.assign_role(SUBSCRIPTION, me, OWNER, scope=f"/subscriptions/{SUBSCRIPTION}/resourceGroups/app-rg")
    azure.assign_role("11111111-0000-0000-0000-000000000000", me, OWNER)  # another subscription: not listed
    listed = azure_provider.role_assignments(me)
    assert len(listed) == 2
    assert azure_findings(listed, SUBSCRIPTION) == [], "Reader, and Owner on one resource group, are not broad"
    azure.assign_role(SUBSCRIPTION, me, CONTRIBUTOR)
    azure.assign_role(SUBSCRIPTION, me, OWNER, scope="/providers/Microsoft.Management/managementGroups/root")
    assert azure_findings(azure_provider.role_assignments(me), SUBSCRIPTION) == [
        f"role Contributor is assigned at scope /subscriptions/{SUBSCRIPTION}",
        "role Owner is assigned at scope /providers/Microsoft.Management/managementGroups/root",
    ]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"api-version": "2022-04-01", "$filter": "atScope()"}, "BadRequest"),
        ({"api-version": "2024-11-30", "$filter": "principalId eq '1'"}, "NoRegisteredProviderFound"),
    ],
)
def test_azure_role_assignment_errors_have_arm_shapes(
    azure_provider: AzureProvider, params: dict[str, str], code: str
) -> None:
    url = azure_provider.arm.format_url(
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleAssignments"
    )
    response = azure_provider.arm.send_request(HttpRequest("GET", url, params=params))
    with pytest.raises(HttpResponseError) as err:
        response.raise_for_status()
    assert err.value.status_code == 400 and response.json()["error"]["code"] == code


def test_gcp_project_policy_is_read_and_owner_or_editor_found(gcp: GcpEmulator) -> None:
    provider = GcpProvider.connect(gcp.endpoint, privilege_cache_seconds=NO_CACHE)
    email = f"sa-{uuid.uuid4().hex[:6]}@{PROJECT}.iam.gserviceaccount.com"
    assert gcp_findings(provider.project_bindings(PROJECT, email), email, PROJECT) == []
    gcp.grant_on_project(PROJECT, "roles/viewer", f"serviceAccount:{email}")
    gcp.grant_on_project(PROJECT, "roles/owner", "user:someone@example.com")
    assert gcp_findings(provider.project_bindings(PROJECT, email), email, PROJECT) == []
    gcp.grant_on_project(PROJECT, "roles/editor", f"serviceAccount:{email}")
    assert gcp_findings(provider.project_bindings(PROJECT, email), email, PROJECT) == [
        f"roles/editor is granted on project {PROJECT}"
    ]
    with pytest.raises(Invalid):
        provider.project_bindings("Not_A_Project", "x@Not_A_Project.iam.gserviceaccount.com")
