"""Observed cloud state, as the providers read it and reconcile/ and links/ reason about it: imports nothing of ours."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"


@dataclass(frozen=True)
class Role:
    name: str
    arn: str
    trust_policy: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Association:
    """An EKS Pod Identity association as DescribePodIdentityAssociation returns it."""

    association_id: str
    association_arn: str
    namespace: str
    service_account: str
    role_arn: str
    tags: dict[str, str]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Association:
        return cls(
            association_id=data["associationId"],
            association_arn=data["associationArn"],
            namespace=data["namespace"],
            service_account=data["serviceAccount"],
            role_arn=data["roleArn"],
            tags=dict(data.get("tags") or {}),
        )


@dataclass(frozen=True)
class AssociationSummary:
    """A ListPodIdentityAssociations entry: no role and no tags (DescribePodIdentityAssociation has those)."""

    association_id: str
    namespace: str
    service_account: str


def role_name(role: str) -> str:
    """The role's name from a name or an ARN (paths are not part of the name)."""
    return role.rsplit("/", 1)[-1] if role.startswith("arn:") else role


@dataclass(frozen=True)
class Identity:
    resource_group: str
    name: str
    client_id: str
    principal_id: str
    tenant_id: str


@dataclass(frozen=True)
class Credential:
    """A federated identity credential as ARM returns it."""

    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]


def project_of(email: str) -> str | None:
    """The project a user-managed service account lives in, from its email domain."""
    domain = email.rsplit("@", 1)[-1]
    suffix = ".iam.gserviceaccount.com"
    return domain[: -len(suffix)] if domain.endswith(suffix) else None


POLICY_PATH = "/porter/"
"""The IAM path of the managed policies a PorterRoleSet writes."""


@dataclass(frozen=True)
class ManagedPolicy:
    arn: str
    document: dict[str, Any]


@dataclass(frozen=True)
class ObservedRole:
    """A role as IAM returns it."""

    name: str
    arn: str
    trust: dict[str, Any]
    inline: dict[str, dict[str, Any]]
    managed: dict[str, ManagedPolicy]  # attached policies by policy name
    tags: dict[str, str]
