"""Operator settings from the environment (Helm values become PORTER_* variables), validated by pydantic."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlparse

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from porter_identity.reconcile import shard

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Bucket(BaseModel):
    """A token bucket: `burst` calls at once, refilled at `per_second`."""

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class RateLimits(BaseModel):
    """Client-side limits per cloud and access, kept at or under what each cloud enforces per account.

    Azure: ARM's token buckets per subscription (reads 250, +25/s; writes 200, +10/s).
    GCP: IAM's 6,000 reads and 600 writes per minute per project.
    AWS publishes no EKS Pod Identity or IAM request rate: unset, AWS calls are paced the way its SDK paces them
    (botocore's adaptive retry mode: full speed until AWS throttles, then slower, faster again as calls succeed);
    set, a fixed bucket applies as well."""

    aws_read: Bucket | None = None
    aws_write: Bucket | None = None
    azure_read: Bucket = Bucket(per_second=25, burst=250)
    azure_write: Bucket = Bucket(per_second=10, burst=200)
    gcp_read: Bucket = Bucket(per_second=100, burst=100)
    gcp_write: Bucket = Bucket(per_second=10, burst=50)


class LeaderElection(BaseModel):
    """One Lease per release decides the replica that reconciles; every replica serves admission.

    A leader that has not renewed for renew_deadline_seconds stops all cloud writes and exits; a standby takes
    over lease_duration_seconds after it last saw the Lease change. The difference is the fencing margin."""

    enabled: bool = False
    lease_name: str = Field(default="porter-identity", min_length=1)
    lease_namespace: str | None = None
    lease_duration_seconds: float = Field(default=15.0, ge=1)
    renew_deadline_seconds: float = Field(default=10.0, gt=0)
    retry_period_seconds: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.retry_period_seconds < self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        return self


class Settings(BaseSettings):
    """Cluster facts and tuning; a connection never chooses the cluster, the operator's settings do."""

    model_config = SettingsConfigDict(env_prefix="PORTER_", env_nested_delimiter="__", extra="ignore")

    aws_region: str = Field(default="us-east-1", description="Region of the EKS cluster.")
    aws_account_id: str | None = Field(
        default=None, pattern=r"^[0-9]{12}$", description="Account that role names resolve in."
    )
    eks_cluster_name: str | None = Field(default=None, description="EKS cluster that receives associations.")
    aws_max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="botocore attempts per call (retry mode adaptive for connections, standard for PorterRoleSets).",
    )

    oidc_issuer: str | None = Field(
        default=None, description="The cluster's service-account token issuer (Azure federated credentials trust it)."
    )
    azure_subscription_id: str | None = Field(default=None, description="Subscription of the managed identities.")
    azure_arm_endpoint: str = Field(default="https://management.azure.com", description="Azure Resource Manager.")
    azure_ca_file: str | None = Field(default=None, description="Extra CA bundle for the ARM endpoint.")
    azure_credential: Literal["default", "emulator"] = Field(
        default="default",
        description="default: DefaultAzureCredential (workload identity on AKS); emulator: fixed token, loopback only.",
    )
    gcp_project_id: str | None = Field(default=None, description="Project of the GKE cluster's workload pool.")
    gcp_workload_pool: str | None = Field(default=None, description="Defaults to <gcp_project_id>.svc.id.goog.")
    gcp_iam_endpoint: str | None = Field(
        default=None, description="host:port of a plaintext IAM endpoint (the emulator); unset means Google."
    )
    # Token services `porter-identity check` exchanges a ServiceAccount token with (emulators in dev and tests).
    azure_authority: str = Field(
        default="https://login.microsoftonline.com", description="Microsoft Entra authority (token endpoint host)."
    )
    gcp_sts_endpoint: str = Field(default="https://sts.googleapis.com", description="Google Security Token Service.")
    gcp_iam_credentials_endpoint: str = Field(
        default="https://iamcredentials.googleapis.com", description="Google IAM Service Account Credentials API."
    )
    gcp_identity_provider: str | None = Field(
        default=None,
        description="The cluster's identity provider in the STS audience identitynamespace:POOL:PROVIDER "
        "(GKE: https://container.googleapis.com/v1/projects/P/locations/L/clusters/C); defaults to oidc_issuer.",
    )

    retry_base_seconds: float = Field(default=1.0, gt=0, description="First backoff after a retryable error.")
    retry_max_seconds: float = Field(default=120.0, gt=0, description="Longest backoff after retryable errors.")
    stalled_recheck_seconds: float = Field(
        default=300.0, gt=0, description="How often a Stalled connection whose cause is outside the spec is rechecked."
    )
    # Cloud calls mostly wait on the network (50-200 ms each) and writes to one Azure identity or GCP
    # service account are serialised: enough threads keep the CPU busy (hack/bench: 20 -> 40 threads took
    # N=1,000 from 47 to 50 connections/s at 50 ms per call).
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Prometheus /metrics port; 0 turns it off.")
    max_workers: int = Field(default=60, ge=1, description="Threads for blocking cloud calls.")
    lock_wait_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long a write waits for another write to the same Azure identity or GCP service account "
        "before giving its worker thread back (Progressing, retried shortly).",
    )
    rate_limits: RateLimits = Field(
        default_factory=RateLimits,
        description="Token buckets per cloud and access, e.g. PORTER_RATE_LIMITS__AZURE_WRITE__PER_SECOND=5.",
    )
    policy_file: str | None = Field(
        default=None,
        description="YAML allow rules (docs/security.md); unset means only namespace annotations can allow.",
    )
    webhook_port: int = Field(
        default=9443, ge=0, le=65535, description="HTTPS port of the admission webhook; 0 turns it off."
    )
    webhook_cert_dir: str | None = Field(
        default=None, description="Directory with tls.crt and tls.key for the webhook (needed when the port is set)."
    )
    privilege_cache_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a LeastPrivilege read (a role's policies, an identity's role assignments, a "
        "project's IAM policy) is reused by other connections on the same identity.",
    )
    block_broad_permissions: bool = Field(
        default=False,
        description="true: an identity with admin-like permissions is Stalled (LeastPrivilege); false: only a warning.",
    )
    roleset_sync_seconds: float = Field(
        default=300.0, gt=0, description="How often each PorterRoleSet is compared with its account (drift repair)."
    )
    drift_sweep_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How often cloud links are listed in bulk and compared with the Ready connections (drift repair).",
    )
    drift_role_checks_per_sweep: int = Field(
        default=100,
        ge=0,
        description="AWS associations described per sweep to check their role (the list has no role); rotates.",
    )
    delete_orphans: bool = Field(
        default=False, description="Delete cloud links tagged or named as ours whose connection no longer exists."
    )

    protected_namespaces: list[str] = Field(
        default=["kube-system", "kube-public", "kube-node-lease"],
        description="Namespaces where no connection is admitted or reconciled, so the operator never patches a "
        "ServiceAccount or posts an Event there (the ClusterRole cannot exclude namespaces). JSON list.",
    )
    operator_namespace: str | None = Field(
        default=None,
        description="The operator's own namespace (the chart sets the release's): protected unless "
        "allow_operator_namespace.",
    )
    allow_operator_namespace: bool = Field(
        default=False, description="true: connections may live in the operator's own namespace."
    )
    # The operator's own cloud identities, never a connection's target whatever their names (docs/security.md).
    operator_aws_role_arn: str | None = Field(
        default=None,
        description="The operator's IAM role (the chart: serviceAccount.awsRoleArn or podIdentityRoleArn).",
    )
    operator_azure_client_id: str | None = Field(
        default=None,
        description="Client id of the operator's managed identity (the chart: serviceAccount.azureClientId).",
    )
    operator_gcp_service_account: str | None = Field(
        default=None, description="The operator's IAM service account (the chart: serviceAccount.gcpServiceAccount)."
    )

    leader_election: LeaderElection = Field(
        default_factory=LeaderElection,
        description="Lease-based leader election (the chart turns it on), e.g. "
        "PORTER_LEADER_ELECTION__ENABLED=true, PORTER_LEADER_ELECTION__LEASE_DURATION_SECONDS=15.",
    )
    health_port: int = Field(
        default=8081, ge=0, le=65535, description="/healthz (liveness) and /readyz (readiness) port; 0 turns it off."
    )
    health_stall_seconds: float = Field(
        default=30.0, gt=0, description="/healthz fails once the event loop has not ticked for this long."
    )
    shard_selector: str = Field(
        default="",
        description="Namespace label selector (e.g. porter.run/shard=a): serve connections only in matching "
        "namespaces. Empty serves all. Instances must have disjoint selectors.",
    )
    rolesets: bool = Field(
        default=False,
        description="Reconcile PorterRoleSets (of aws_account_id only). With shards, true on exactly one instance.",
    )

    @field_validator("shard_selector")
    @classmethod
    def _selector_parses(cls, value: str) -> str:
        shard.parse(value)
        return value

    @model_validator(mode="after")
    def _emulator_credential_is_loopback_only(self) -> Self:
        if self.azure_credential == "emulator" and urlparse(self.azure_arm_endpoint).hostname not in LOOPBACK:
            raise ValueError("PORTER_AZURE_CREDENTIAL=emulator is only allowed with a loopback ARM endpoint")
        return self

    @property
    def workload_pool(self) -> str | None:
        if self.gcp_workload_pool:
            return self.gcp_workload_pool
        return f"{self.gcp_project_id}.svc.id.goog" if self.gcp_project_id else None
