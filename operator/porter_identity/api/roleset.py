"""PorterRoleSet: the Porter IAM roles of one AWS account, kept exactly as declared."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, cast

from pydantic import ConfigDict, Field, model_validator

from porter_identity.api.common import CamelModel, Condition, DeletionPolicy, KubeObject
from porter_identity.api.validation import matching
from porter_identity.iam.presets import s3_role_name

KIND = "PorterRoleSet"
PLURAL = "porterrolesets"
SINGULAR = "porterroleset"
SHORT_NAMES = ["prs"]
DESCRIPTION = (
    "PorterRoleSet declares the Porter IAM roles of one AWS account (trust policies, permissions, tags and "
    "EKS Pod Identity associations) and keeps them as declared, reached through an assumed-role chain with "
    "an ExternalId."
)

ACCOUNT_ID = r"^[0-9]{12}$"
REGION = r"^[a-z]{2}(-gov|-iso|-isob)?-[a-z]+-[0-9]$"
EKS_CLUSTER = r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$"
ROLE_ARN = r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}$"
PRINCIPAL_ARN = r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:(root|role/[A-Za-z0-9+=,.@_/-]+|user/[A-Za-z0-9+=,.@_/-]+)$"
ROLE_NAME = r"^[A-Za-z0-9+=,.@_-]{1,64}$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
SID = r"^[A-Za-z0-9]{1,128}$"
ACTION = r"^[a-z0-9-]+:[A-Za-z0-9*?]+$|^\*$"
SERVICE_PRINCIPAL = r"^[a-z0-9.-]+\.amazonaws\.com(\.cn)?$"

if TYPE_CHECKING:
    AccountId: TypeAlias = str
    Region: TypeAlias = str
    ClusterName: TypeAlias = str
    RoleArn: TypeAlias = str
    PrincipalArn: TypeAlias = str
    RoleName: TypeAlias = str
    DnsLabel: TypeAlias = str
    DnsSubdomain: TypeAlias = str
    SecretKey: TypeAlias = str
    BucketName: TypeAlias = str
    Sid: TypeAlias = str
    Action: TypeAlias = str
    ServicePrincipal: TypeAlias = str
else:
    AccountId = matching(
        ACCOUNT_ID,
        "accountId must be 12 digits",
        12,
        {"rule": "self == oldSelf", "message": "accountId is immutable; create a new PorterRoleSet instead"},
    )
    Region = matching(REGION, "region must be an AWS region such as us-east-1", 32)
    ClusterName = matching(
        EKS_CLUSTER, "clusterName must be an EKS cluster name (1-100 letters, digits, '-', '_')", 100
    )
    RoleArn = matching(ROLE_ARN, "roleArn must be an IAM role ARN such as arn:aws:iam::123456789012:role/name", 2048)
    PrincipalArn = matching(
        PRINCIPAL_ARN,
        "managementPrincipalArn must be an IAM role, user or account-root ARN",
        2048,
    )
    RoleName = matching(ROLE_NAME, "name must be an IAM role name: 1-64 letters, digits and +=,.@_-", 64)
    DnsLabel = matching(DNS_LABEL, "must be a DNS-1123 label", 63)
    DnsSubdomain = matching(DNS_SUBDOMAIN, "must be a DNS-1123 subdomain", 253)
    SecretKey = matching(SECRET_KEY, "key must consist of letters, digits, '-', '_' or '.'", 253)
    BucketName = matching(BUCKET, "bucket name must be 3-63 lower-case letters, digits, '.' and '-'", 63)
    # Statements nest three lists deep: plain OpenAPI patterns keep the CRD under the API server's CEL cost budget.
    Sid = Annotated[str, Field(pattern=SID, max_length=128)]
    Action = Annotated[str, Field(pattern=ACTION, max_length=128)]
    ServicePrincipal = matching(
        SERVICE_PRINCIPAL, "services must be AWS service principals like ec2.amazonaws.com", 128
    )

PresetName = Literal[
    "porter-access-manager",
    "porter-manager",
    "porter-infra-manager",
    "porter-controlplane-manager",
    "porter-node-manager",
    "porter-karpenter",
    "porter-telemetry-manager",
    "porter-agent-compliance-manager",
    "porter-eso-secrets-manager",
]


class TakeOver(StrEnum):
    """What to do with an existing role that no PorterRoleSet made (no porter.run/managed=true tag)."""

    NEVER = "Never"  # leave it untouched: the role is Stalled (Conflict) until adoption is asked for
    KEEP_POLICIES = "KeepPolicies"  # take it over; policies the operator did not write stay attached
    REPLACE_POLICIES = "ReplacePolicies"  # take it over and make it hold exactly the declared policies


TAKE_OVER_DESCRIPTION = (
    "Adoption of an existing role no PorterRoleSet made: Never (default) leaves it untouched and the role Stalled "
    "(Conflict); KeepPolicies adopts it and keeps every policy the operator did not write; ReplacePolicies adopts "
    "it and removes them."
)


class SecretKeyRef(CamelModel):
    """Where the ExternalId lives; it is read at every sync and never written anywhere else."""

    namespace: DnsLabel = Field(description="Namespace of the Secret.")
    name: DnsSubdomain = Field(description="Name of the Secret.")
    key: SecretKey = Field(default="externalId", description="Key in the Secret's data.")


class Access(CamelModel):
    """The first hop of the chain: the role the operator's own credentials assume."""

    role_arn: RoleArn = Field(
        description="Role assumed with the ExternalId (porter-access-manager in Porter's IAM inventory)."
    )
    external_id_secret_ref: SecretKeyRef = Field(description="Secret holding the ExternalId.")


class ServiceAccountRef(CamelModel):
    """The in-cluster ServiceAccount that receives a role through an EKS Pod Identity association."""

    namespace: DnsLabel = Field(description="Namespace of the ServiceAccount.")
    name: DnsSubdomain = Field(description="Name of the ServiceAccount.")


SERVICE_ACCOUNT_DESCRIPTION = (
    "The ServiceAccount that gets this role through an EKS Pod Identity association. (Every field of a role but "
    "preset and name sorts after them, so `kubectl describe` shows each role's name first.)"
)


class PolicyStatement(CamelModel):
    """One IAM statement of a custom role, in IAM's own vocabulary."""

    sid: Sid = Field(description="Statement id, unique in the role.")
    effect: Literal["Allow", "Deny"] = Field(default="Allow", description="Allow or Deny.")
    actions: list[Action] = Field(min_length=1, max_length=500, description="IAM actions, e.g. s3:GetObject.")
    resources: list[Annotated[str, Field(max_length=2048)]] = Field(
        min_length=1, max_length=100, description="Resource ARNs the actions apply to."
    )
    condition: dict[str, dict[str, list[str]]] | None = Field(
        default=None,
        description="IAM condition block: operator -> key -> values, e.g. {StringEquals: {aws:SourceAccount: [..]}}.",
    )


TRUSTS_SOMEONE = {
    "rule": "(has(self.management) && self.management == 'ExternalId')"
    " || (has(self.services) && size(self.services) > 0) || (has(self.podIdentity) && self.podIdentity)",
    "message": "trust must name at least one principal: management ExternalId, services or podIdentity",
}


class CustomTrust(CamelModel):
    """Who may assume a custom role; the same three kinds of principal the presets use."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": cast(Any, [TRUSTS_SOMEONE])})

    management: Literal["None", "ExternalId"] = Field(
        default="None", description="ExternalId: the management principal may assume it with the ExternalId."
    )
    services: list[ServicePrincipal] = Field(
        default_factory=list, max_length=10, description="AWS service principals, e.g. ec2.amazonaws.com."
    )
    pod_identity: bool = Field(default=False, description="Trusted by pods.eks.amazonaws.com, scoped to the account.")

    @model_validator(mode="after")
    def _trusts_someone(self) -> CustomTrust:
        if self.management == "None" and not self.services and not self.pod_identity:
            raise ValueError(TRUSTS_SOMEONE["message"])
        return self


ONE_OF_PRESET_OR_NAME = {
    "rule": "has(self.preset) != has(self.name)",
    "message": "set exactly one of preset or name",
}
CUSTOM_NEEDS_DOCUMENTS = {
    "rule": "has(self.preset) ? !has(self.statements) && !has(self.trust) : has(self.statements) && has(self.trust)",
    "message": "a preset brings its own statements and trust; a custom role (name) needs both",
}


class RoleSpec(CamelModel):
    """A preset from Porter's IAM inventory, or a fully custom role."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": cast(Any, [ONE_OF_PRESET_OR_NAME, CUSTOM_NEEDS_DOCUMENTS])}
    )

    preset: PresetName | None = Field(default=None, description="A role of Porter's IAM inventory.")
    name: RoleName | None = Field(default=None, description="Name of a custom role.")
    service_account: ServiceAccountRef | None = Field(default=None, description=SERVICE_ACCOUNT_DESCRIPTION)
    statements: list[PolicyStatement] | None = Field(
        default=None, min_length=1, max_length=200, description="Permissions of a custom role."
    )
    trust: CustomTrust | None = None
    take_over: TakeOver | None = Field(default=None, description=f"{TAKE_OVER_DESCRIPTION} Unset: the set's.")

    @model_validator(mode="after")
    def _preset_or_custom(self) -> RoleSpec:
        if (self.preset is None) == (self.name is None):
            raise ValueError(ONE_OF_PRESET_OR_NAME["message"])
        if (self.preset is not None) == (self.statements is not None or self.trust is not None) or (
            self.preset is None and (self.statements is None or self.trust is None)
        ):
            raise ValueError(CUSTOM_NEEDS_DOCUMENTS["message"])
        return self

    @property
    def role_name(self) -> str:
        name = self.preset or self.name
        assert name is not None
        return name


class Bucket(CamelModel):
    """A Porter-provisioned S3 bucket: one porter-s3-<hash> role scoped to its objects."""

    name: BucketName = Field(description="The bucket's name.")
    service_account: ServiceAccountRef | None = Field(default=None, description=SERVICE_ACCOUNT_DESCRIPTION)


ACCESS_IN_ACCOUNT = {
    "rule": "self.access.roleArn.split(':')[4] == self.accountId",
    "message": "access.roleArn must be a role of accountId",
}


class RoleSetSpec(CamelModel):
    """One AWS account's Porter roles and how to reach them."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": cast(Any, [ACCESS_IN_ACCOUNT])})

    account_id: AccountId = Field(description="The customer's AWS account.")
    region: Region = Field(description="Region of the EKS cluster (and of STS calls).")
    cluster_name: ClusterName = Field(description="EKS cluster that receives the Pod Identity associations.")
    management_principal_arn: PrincipalArn = Field(
        description="Porter's management principal (CAPIManagement), trusted by the externally assumable roles."
    )
    access: Access
    ack_compatible_trust: bool = Field(
        default=False,
        description="true: porter-access-manager and porter-infra-manager trust the management principal without "
        "an ExternalId, as Porter's IAM inventory does for ACK. porter-manager always requires it.",
    )
    roles: list[RoleSpec] = Field(default_factory=list, max_length=50, description="Presets and custom roles.")
    buckets: list[Bucket] = Field(
        default_factory=list, max_length=100, description="Buckets that each get a porter-s3-<hash> role."
    )
    take_over: TakeOver = Field(default=TakeOver.NEVER, description=f"{TAKE_OVER_DESCRIPTION} Roles may say otherwise.")
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description="Retain (default) leaves the roles in place; Delete removes the roles this resource created. "
        "It applies to the whole set and to a role that leaves spec.roles or spec.buckets.",
    )

    @property
    def role_names(self) -> list[str]:
        """Every role the spec declares, as IAM names it, in spec order."""
        return [r.role_name for r in self.roles] + [s3_role_name(b.name) for b in self.buckets]

    @model_validator(mode="after")
    def _access_in_account_and_unique(self) -> RoleSetSpec:
        if self.access.role_arn.split(":")[4] != self.account_id:
            raise ValueError(ACCESS_IN_ACCOUNT["message"])
        # A bucket becomes the role porter-s3-<hash>: compare the role names IAM will see, name the bucket.
        names = [(r.role_name, r.role_name) for r in self.roles]
        names += [(s3_role_name(b.name), f"{s3_role_name(b.name)} (bucket {b.name})") for b in self.buckets]
        roles = [n for n, _ in names]
        duplicates = sorted({shown for n, shown in names if roles.count(n) > 1})
        if duplicates:
            raise ValueError(f"roles and buckets must be unique; repeated: {', '.join(duplicates)}")
        return self


class RoleStatus(CamelModel):
    """What the operator applied to one role.

    Every other field name sorts after `name`: `kubectl describe` prints fields alphabetically with nothing
    between list entries, so each entry must start with the role it describes."""

    name: str = Field(description="The role's name.")
    role_arn: str | None = Field(default=None, description="The role's ARN.")
    policy_digest: str | None = Field(
        default=None, description="sha256 of the applied documents (ExternalId redacted)."
    )
    policies: list[str] = Field(default_factory=list, description="Inline and managed policies holding statements.")
    pod_identity_association_id: str | None = Field(
        default=None, description="Id of the role's EKS Pod Identity association, if it has one."
    )
    ready: Condition | None = Field(default=None, description="The Ready condition of this role.")


class RoleSetStatus(CamelModel):
    """Summary conditions plus one entry per role, in kstatus form."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last synced.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready always; Reconciling and Stalled while true.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    roles_ready: str | None = Field(default=None, description="Ready roles / declared roles, e.g. 9/10.")
    roles: list[RoleStatus] = Field(
        default_factory=list,
        description="One entry per declared role.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class PorterRoleSet(KubeObject):
    """The whole object as the API server returns it."""

    spec: RoleSetSpec
    status: RoleSetStatus = Field(default_factory=RoleSetStatus)
