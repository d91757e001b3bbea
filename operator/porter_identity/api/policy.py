"""The allow-rule file (PORTER_POLICY_FILE): which namespaces may link which cloud identities."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import Field

from porter_identity.api.common import CamelModel

# Globs are fnmatch patterns (`*`, `?`, `[abc]`), matched case-sensitively against the whole value.
Glob = str


class AwsAllow(CamelModel):
    roles: list[Glob] = Field(default_factory=list, description="IAM role names (the part after the last '/').")


class AzureAllow(CamelModel):
    identities: list[Glob] = Field(
        default_factory=list, description="Managed identities as <resourceGroup>/<identityName>."
    )


class GcpAllow(CamelModel):
    service_accounts: list[Glob] = Field(default_factory=list, description="IAM service account emails.")


class Keep(StrEnum):
    """A connection's way of keeping its link beyond what the operator would do: the cluster admin's to grant."""

    RETAIN = "Retain"  # spec.deletionPolicy: Retain
    DETACH_ON_DELETE = "DetachOnDelete"  # identity.porter.run/reconcile-policy: detach-on-delete
    SKIP = "Skip"  # identity.porter.run/reconcile-policy: skip


DEFAULT_KEEP = (Keep.RETAIN,)


class Rule(CamelModel):
    """Connections in `namespaces` may link the identities listed under each provider; nothing else."""

    name: str = Field(default="", max_length=63, description="Shown in refusals; defaults to rules[<index>].")
    namespaces: list[Glob] = Field(min_length=1)
    aws: AwsAllow = Field(default_factory=AwsAllow)
    azure: AzureAllow = Field(default_factory=AzureAllow)
    gcp: GcpAllow = Field(default_factory=GcpAllow)
    keep: list[Keep] = Field(
        default_factory=lambda: list(DEFAULT_KEEP),
        description="What connections this rule allows may ask to keep their link: Retain (deletionPolicy), "
        "DetachOnDelete and Skip (the identity.porter.run/reconcile-policy annotation). Default: Retain only; "
        "pausing and detaching are granted per namespace by the cluster admin. Whatever is kept, a link the "
        "policy no longer allows is removed.",
    )


class Policy(CamelModel):
    """Deny unless some rule whose namespaces match allows the identity (rules only ever add)."""

    rules: list[Rule] = Field(default_factory=list)
    max_links_per_namespace_per_identity: int | None = Field(
        default=None,
        ge=1,
        description="At most this many connections in one namespace may name the same identity (one Azure "
        "credential or GCP member each), so no namespace uses up a shared identity's cloud limits; unset: no limit.",
    )

    def named(self) -> list[tuple[str, Rule]]:
        return [(rule.name or f"rules[{i}]", rule) for i, rule in enumerate(self.rules)]


def load(path: str | Path) -> Policy:
    """Parse the file; an invalid file raises, so the operator refuses to start rather than guess."""
    return Policy.model_validate(yaml.safe_load(Path(path).read_text()) or {})
