"""Operator settings from the environment (Helm values become PORTER_* variables), validated by pydantic."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Cluster facts and tuning; a connection never chooses the cluster, the operator's settings do."""

    model_config = SettingsConfigDict(env_prefix="PORTER_", extra="ignore")

    aws_region: str = Field(default="us-east-1", description="Region of the EKS cluster.")
    aws_account_id: str | None = Field(
        default=None, pattern=r"^[0-9]{12}$", description="Account that role names resolve in."
    )
    eks_cluster_name: str | None = Field(default=None, description="EKS cluster that receives associations.")
    aws_max_attempts: int = Field(default=3, ge=1, le=10, description="botocore attempts per call (standard mode).")

    retry_base_seconds: float = Field(default=1.0, gt=0, description="First backoff after a retryable error.")
    retry_max_seconds: float = Field(default=120.0, gt=0, description="Longest backoff after retryable errors.")
    stalled_recheck_seconds: float = Field(
        default=300.0, gt=0, description="How often a Stalled connection whose cause is outside the spec is rechecked."
    )
    max_workers: int = Field(default=20, ge=1, description="Threads for blocking cloud calls.")
