"""ServiceIdentityConnection: one ServiceAccount linked to one cloud identity."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

from pydantic import ConfigDict, Field, model_validator

from porter_identity.api.common import CamelModel, Condition, DeletionPolicy, KubeObject
from porter_identity.api.validation import (
    AzureIdentityName,
    AzureResourceGroup,
    GcpServiceAccountEmail,
    RoleRef,
    ServiceAccountName,
)

KIND = "ServiceIdentityConnection"
PLURAL = "serviceidentityconnections"
SINGULAR = "serviceidentityconnection"
SHORT_NAMES = ["sic"]
DESCRIPTION = (
    "ServiceIdentityConnection links one ServiceAccount in its namespace to one cloud identity "
    "(an AWS IAM role, an Azure user-assigned managed identity or a GCP IAM service account) "
    "so that its pods get short-lived credentials without stored keys."
)


class Provider(StrEnum):
    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"


class AwsConnection(CamelModel):
    """An IAM role in the configured account, linked through an EKS Pod Identity association."""

    role: RoleRef = Field(description="IAM role name (resolved in the configured account) or full role ARN.")


class AzureConnection(CamelModel):
    """A user-assigned managed identity, linked through a federated identity credential."""

    identity_name: AzureIdentityName = Field(description="Name of the user-assigned managed identity.")
    resource_group: AzureResourceGroup = Field(description="Resource group of the managed identity.")


class GcpConnection(CamelModel):
    """An IAM service account, linked through a Workload Identity binding."""

    service_account_email: GcpServiceAccountEmail = Field(description="Email of the IAM service account.")


EXACTLY_ONE_PROVIDER = {
    "rule": "(has(self.aws) ? 1 : 0) + (has(self.azure) ? 1 : 0) + (has(self.gcp) ? 1 : 0) == 1",
    "message": "exactly one of aws, azure or gcp must be set",
}
PROVIDER_IMMUTABLE = {
    "rule": "has(self.aws) == has(oldSelf.aws) && has(self.azure) == has(oldSelf.azure)"
    " && has(self.gcp) == has(oldSelf.gcp)",
    "message": "the provider (aws, azure or gcp) cannot change; create a new connection instead",
}


class TakeOver(StrEnum):
    """What to do with an existing link that porter-identity did not make (a GCP member bound by hand or Terraform)."""

    NEVER = "Never"  # leave it untouched: the connection is Stalled (Conflict) until adoption is asked for
    ADOPT = "Adopt"  # take it over; deleting the connection releases it (left in place), never deletes it


class ConnectionSpec(CamelModel):
    """What the workload's ServiceAccount should be linked to."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": cast(Any, [EXACTLY_ONE_PROVIDER, PROVIDER_IMMUTABLE])}
    )

    service_account_name: ServiceAccountName = Field(
        description="ServiceAccount in the connection's own namespace that receives the credentials.",
    )
    aws: AwsConnection | None = None
    azure: AzureConnection | None = None
    gcp: GcpConnection | None = None
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description="Delete removes the cloud link with the connection; Retain leaves it in place.",
    )
    take_over: TakeOver = Field(
        default=TakeOver.NEVER,
        description="An existing link porter-identity did not make (a Workload Identity member bound by hand or by "
        "Terraform on GCP; AWS and Azure refuse a second link for one ServiceAccount anyway): Never (default) leaves "
        "it untouched and the connection Stalled (Conflict); Adopt takes it over, and deleting the connection then "
        "releases it, left in place.",
    )

    @model_validator(mode="after")
    def _exactly_one_provider(self) -> ConnectionSpec:
        # The CRD's CEL rule says the same; this covers objects admitted before that rule existed.
        if sum(block is not None for block in (self.aws, self.azure, self.gcp)) != 1:
            raise ValueError("exactly one of aws, azure or gcp must be set")
        return self

    @property
    def provider(self) -> Provider:
        if self.aws is not None:
            return Provider.AWS
        if self.azure is not None:
            return Provider.AZURE
        if self.gcp is not None:
            return Provider.GCP
        raise ValueError("exactly one of aws, azure or gcp must be set")

    @property
    def identity(self) -> str:
        """The cloud identity as the user wrote it, for printer columns and messages."""
        if self.aws is not None:
            return self.aws.role
        if self.azure is not None:
            return f"{self.azure.resource_group}/{self.azure.identity_name}"
        if self.gcp is not None:
            return self.gcp.service_account_email
        raise ValueError("exactly one of aws, azure or gcp must be set")


class AwsStatus(CamelModel):
    """The EKS Pod Identity association the operator owns."""

    association_id: str | None = Field(default=None, description="Id of the association.")
    association_arn: str | None = Field(default=None, description="ARN of the association.")
    role_arn: str | None = Field(default=None, description="The role ARN the association grants.")

    @property
    def link_id(self) -> str | None:
        return self.association_id


class AzureStatus(CamelModel):
    """The federated identity credential the operator owns, and the identity it is on."""

    credential_name: str | None = Field(default=None, description="Name of the federated identity credential.")
    client_id: str | None = Field(
        default=None, description="Client id of the managed identity (annotated on the ServiceAccount)."
    )
    principal_id: str | None = Field(default=None, description="Object id of the managed identity's principal.")
    tenant_id: str | None = Field(default=None, description="Tenant of the managed identity.")

    @property
    def link_id(self) -> str | None:
        return self.credential_name


class GcpStatus(CamelModel):
    """The member the operator owns in roles/iam.workloadIdentityUser on the IAM service account."""

    member: str | None = Field(default=None, description="serviceAccount:PROJECT.svc.id.goog[NS/SA].")
    adopted: bool | None = Field(
        default=None,
        description="The member existed before this connection (spec.takeOver: Adopt): released on delete.",
    )

    @property
    def link_id(self) -> str | None:
        return self.member


class ConnectionStatus(CamelModel):
    """What the operator observed and did, in kstatus form."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready always; Reconciling and Stalled while true.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    provider: Provider | None = Field(default=None, description="aws, azure or gcp (a printer column).")
    identity: str | None = Field(
        default=None,
        description="The cloud identity actually linked, in the spec's form (printer column); empty while nothing is.",
    )
    link: str | None = Field(
        default=None,
        description="The cloud link's id: association id (AWS), credential name (Azure) or member (GCP); "
        "a column of kubectl get -o wide.",
    )
    aws: AwsStatus | None = None
    azure: AzureStatus | None = None
    gcp: GcpStatus | None = None


class ServiceIdentityConnection(KubeObject):
    """The whole object as the API server returns it."""

    spec: ConnectionSpec
    status: ConnectionStatus = Field(default_factory=ConnectionStatus)
