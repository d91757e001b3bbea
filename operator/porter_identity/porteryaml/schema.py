"""The part of Porter's porter.yaml v2 that carries connections, as strict pydantic models.

Follows Porter's "porter.yaml reference" (https://docs.porter.run/applications/configuration-as-code/reference)
and "Connections in porter.yaml" (https://docs.porter.run/applications/configuration-as-code/services/connections).
Fields Porter documents but that do not concern identity (build, run, cpuCores, ...) are accepted and not read;
any other field is an error, so that a typo such as `conections:` cannot silently drop a connection.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from porter_identity.api.validation import AzureIdentityName, AzureResourceGroup, GcpServiceAccountEmail, RoleRef

# The reference's rule for app and service names: at most 31 lower-case letters, digits and '-', alphanumeric ends.
PORTER_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PORTER_NAME_MAX = 31

# Top-level fields of the reference (and of Porter's own parser: addons, previews) that this tool does not read.
APP_FIELDS_NOT_READ = frozenset(
    {
        "build",
        "image",
        "env",
        "envGroups",
        "predeploy",
        "initialDeploy",
        "autoRollback",
        "efsStorage",
        "requiredApps",
        "deploymentStrategy",
        "addons",
        "previews",
    }
)
# Service fields of the web, worker and job references (and gpu, smartOptimization of Porter's parser) not read.
SERVICE_FIELDS_NOT_READ = frozenset(
    {
        "type",
        "run",
        "instances",
        "cpuCores",
        "ramMegabytes",
        "gpuCoresNvidia",
        "gpu",
        "smartOptimization",
        "port",
        "nodeGroup",
        "terminationGracePeriodSeconds",
        "serviceMeshEnabled",
        "metricsScraping",
        "autoscaling",
        "healthCheck",
        "livenessCheck",
        "readinessCheck",
        "startupCheck",
        "private",
        "loadBalancers",
        "loadBalancerConfig",
        "disableTLS",
        "domains",
        "pathRouting",
        "pathRoutingConfig",
        "ingressAnnotations",
        "cron",
        "suspendCron",
        "allowConcurrent",
        "timeoutSeconds",
    }
)

AWS_ROLE = "awsRole"
AZURE_MANAGED_IDENTITY = "azureManagedIdentity"
GCP_SERVICE_ACCOUNT = "gcpServiceAccount"
OURS = (AWS_ROLE, AZURE_MANAGED_IDENTITY, GCP_SERVICE_ACCOUNT)
OTHER = "other"


def _without(fields: frozenset[str], data: Any) -> Any:
    return {k: v for k, v in data.items() if k not in fields} if isinstance(data, dict) else data


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AwsRole(Strict):
    """`type: awsRole`: an IAM role name (an ARN is accepted too, as the connection's `aws.role` accepts it)."""

    type: Literal["awsRole"]
    role: RoleRef


class AzureManagedIdentity(Strict):
    """`type: azureManagedIdentity`: a user-assigned managed identity and its resource group."""

    type: Literal["azureManagedIdentity"]
    identity_name: AzureIdentityName = Field(alias="identityName")
    resource_group: AzureResourceGroup = Field(alias="resourceGroup")


class GcpServiceAccount(Strict):
    """`type: gcpServiceAccount`: an IAM service account's email."""

    type: Literal["gcpServiceAccount"]
    service_account_email: GcpServiceAccountEmail = Field(alias="serviceAccountEmail")


class OtherConnection(BaseModel):
    """A connection type this operator does not serve (cloudSql, disk, ...): reported and skipped."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str


def _connection_tag(data: Any) -> str:
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if kind in OURS else OTHER


Connection = Annotated[
    Annotated[AwsRole, Tag(AWS_ROLE)]
    | Annotated[AzureManagedIdentity, Tag(AZURE_MANAGED_IDENTITY)]
    | Annotated[GcpServiceAccount, Tag(GCP_SERVICE_ACCOUNT)]
    | Annotated[OtherConnection, Tag(OTHER)],
    Discriminator(_connection_tag),
]
OurConnection = AwsRole | AzureManagedIdentity | GcpServiceAccount


class Service(Strict):
    """One entry of `services:`; only `name` and `connections` are read."""

    name: str = Field(pattern=PORTER_NAME, max_length=PORTER_NAME_MAX)
    connections: list[Connection] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_fields_not_read(cls, data: Any) -> Any:
        return _without(SERVICE_FIELDS_NOT_READ, data)


class PorterApp(Strict):
    """A porter.yaml file: `version: v2`, the app's `name` and its `services`."""

    version: Literal["v2"]
    name: str | None = Field(default=None, pattern=PORTER_NAME, max_length=PORTER_NAME_MAX)
    services: list[Service]

    @model_validator(mode="before")
    @classmethod
    def _drop_fields_not_read(cls, data: Any) -> Any:
        return _without(APP_FIELDS_NOT_READ, data)
