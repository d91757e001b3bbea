"""Operator settings from the environment (Helm values become PORTER_* variables), validated by pydantic."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlparse

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Settings(BaseSettings):
    """Cluster facts and tuning; a connection never chooses the cluster, the operator's settings do."""

    model_config = SettingsConfigDict(env_prefix="PORTER_", extra="ignore")

    aws_region: str = Field(default="us-east-1", description="Region of the EKS cluster.")
    aws_account_id: str | None = Field(
        default=None, pattern=r"^[0-9]{12}$", description="Account that role names resolve in."
    )
    eks_cluster_name: str | None = Field(default=None, description="EKS cluster that receives associations.")
    aws_max_attempts: int = Field(default=3, ge=1, le=10, description="botocore attempts per call (standard mode).")

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

    retry_base_seconds: float = Field(default=1.0, gt=0, description="First backoff after a retryable error.")
    retry_max_seconds: float = Field(default=120.0, gt=0, description="Longest backoff after retryable errors.")
    stalled_recheck_seconds: float = Field(
        default=300.0, gt=0, description="How often a Stalled connection whose cause is outside the spec is rechecked."
    )
    # Cloud calls mostly wait on the network (50-200 ms each) and writes to one Azure identity or GCP
    # service account are serialised: enough threads keep the CPU busy (hack/bench: 20 -> 40 threads took
    # N=1,000 from 47 to 50 connections/s at 50 ms per call).
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Prometheus /metrics port; 0 turns it off.")
    max_workers: int = Field(default=40, ge=1, description="Threads for blocking cloud calls.")
    policy_file: str | None = Field(
        default=None,
        description="YAML allow rules (docs/security.md); unset means only namespace annotations can allow.",
    )
    webhook_port: int = Field(
        default=9443, ge=0, le=65535, description="HTTPS port of the validating webhook; 0 turns it off."
    )
    webhook_cert_dir: str | None = Field(
        default=None, description="Directory with tls.crt and tls.key for the webhook (needed when the port is set)."
    )
    block_broad_permissions: bool = Field(
        default=False,
        description="true: an identity with admin-like permissions is Stalled (LeastPrivilege); false: only a warning.",
    )
    roleset_sync_seconds: float = Field(
        default=300.0, gt=0, description="How often each PorterRoleSet is compared with its account (drift repair)."
    )

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
