"""Decide the Workload Identity binding on a GCP IAM service account's policy."""

from __future__ import annotations

from porter_identity.providers.gcp import WORKLOAD_IDENTITY_USER, Bindings

SERVICE_ACCOUNT_ANNOTATION = "iam.gke.io/gcp-service-account"


def member(workload_pool: str, namespace: str, service_account: str) -> str:
    return f"serviceAccount:{workload_pool}[{namespace}/{service_account}]"


def with_member(bindings: Bindings, who: str) -> Bindings | None:
    """The bindings with `who` in roles/iam.workloadIdentityUser, or None when it is already there."""
    members = bindings.get(WORKLOAD_IDENTITY_USER, [])
    if who in members:
        return None
    return {**bindings, WORKLOAD_IDENTITY_USER: [*members, who]}


def without_member(bindings: Bindings, who: str) -> Bindings | None:
    """The bindings without `who` (other members untouched), or None when it is not there."""
    members = bindings.get(WORKLOAD_IDENTITY_USER, [])
    if who not in members:
        return None
    return {**bindings, WORKLOAD_IDENTITY_USER: [m for m in members if m != who]}
