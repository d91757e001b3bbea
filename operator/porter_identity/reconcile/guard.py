"""Refusals no allow rule can lift: protected namespaces, the operator's own identities, per-namespace budgets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from porter_identity.api.connection import ConnectionSpec
from porter_identity.config import Settings
from porter_identity.model import role_name
from porter_identity.reconcile.policy import Decision, Target, target_of

PROTECTED = "protected-namespace"
OWN_IDENTITY = "own-identity"
BUDGET = "budget"
BUDGET_KEY = "maxLinksPerNamespacePerIdentity"  # the policy file's key, named in refusals
# What each cloud's workload identity injects into the operator's pod: the identity it runs as.
AWS_IRSA_ROLE = "AWS_ROLE_ARN"
AZURE_WORKLOAD_CLIENT_ID = "AZURE_CLIENT_ID"


def _refused(rule: str, message: str) -> Decision:
    return Decision(False, rule, f"not allowed by policy: {message}")


@dataclass(frozen=True)
class OwnIdentities:
    """The cloud identities the operator itself runs as; compared case-insensitively (IAM role names, Azure
    client ids and service account emails are all unique regardless of case)."""

    aws_roles: frozenset[str] = frozenset()
    azure_client_ids: frozenset[str] = frozenset()
    gcp_service_accounts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, settings: Settings, environ: Mapping[str, str]) -> OwnIdentities:
        """As configured, and as the pod's environment says it runs (IRSA's AWS_ROLE_ARN, Azure workload
        identity's AZURE_CLIENT_ID), so a chart value left empty still protects the identity in use."""
        roles = {settings.operator_aws_role_arn, environ.get(AWS_IRSA_ROLE)}
        clients = {settings.operator_azure_client_id, environ.get(AZURE_WORKLOAD_CLIENT_ID)}
        return cls(
            aws_roles=frozenset(role_name(r).lower() for r in roles if r),
            azure_client_ids=frozenset(c.lower() for c in clients if c),
            gcp_service_accounts=frozenset(e.lower() for e in (settings.operator_gcp_service_account,) if e),
        )


def protected_namespaces(settings: Settings) -> frozenset[str]:
    """protected_namespaces, plus the operator's own namespace unless allow_operator_namespace."""
    own = (
        {settings.operator_namespace}
        if settings.operator_namespace and not settings.allow_operator_namespace
        else set()
    )
    return frozenset(settings.protected_namespaces) | own


def protected_namespace(namespace: str, settings: Settings) -> Decision | None:
    """A refusal when connections may not live in `namespace`: the operator would patch ServiceAccounts and post
    Events there, which the ClusterRole cannot exclude."""
    if namespace not in protected_namespaces(settings):
        return None
    why = (
        "it is the operator's own namespace (allowOperatorNamespace is false)"
        if namespace == settings.operator_namespace and namespace not in settings.protected_namespaces
        else "it is in protectedNamespaces"
    )
    return _refused(PROTECTED, f"connections may not live in namespace {namespace}: {why}")


def own_identity(spec: ConnectionSpec, own: OwnIdentities, azure_client_id: str | None = None) -> Decision | None:
    """A refusal when the spec names one of the operator's own identities, whatever its name.

    An Azure connection names its identity by resource group and name, the operator knows its own by client id:
    pass `azure_client_id`, the client id ARM returned for the named identity, when it has been read."""
    target = target_of(spec)
    if spec.aws is not None:
        hit = role_name(spec.aws.role).lower() in own.aws_roles
    elif spec.azure is not None:
        hit = azure_client_id is not None and azure_client_id.lower() in own.azure_client_ids
    else:
        assert spec.gcp is not None
        hit = spec.gcp.service_account_email.lower() in own.gcp_service_accounts
    if not hit:
        return None
    return _refused(OWN_IDENTITY, f"{target.shown} is the operator's own identity, which connections may never use")


def refusal(
    spec: ConnectionSpec,
    namespace: str,
    settings: Settings,
    own: OwnIdentities,
    azure_client_id: str | None = None,
) -> Decision | None:
    """The first of the refusals above that applies, else None; checked before the allow rules."""
    return protected_namespace(namespace, settings) or own_identity(spec, own, azure_client_id)


def targets(bodies: Iterable[Mapping[str, Any]], excluding: str, linked_only: bool = False) -> list[Target]:
    """The identities the connections `bodies` name, except the one called `excluding`; unparsable specs name
    none (they were never admitted, or are Stalled InvalidSpec).

    linked_only counts only connections whose status records a link: what reconcile uses, so that when more
    than the budget were admitted (webhook bypassed) the first to link keep their links and the rest wait."""
    found: list[Target] = []
    for body in bodies:
        if (body.get("metadata") or {}).get("name") == excluding:
            continue
        try:
            spec = ConnectionSpec.model_validate(body.get("spec") or {})
        except (ValidationError, ValueError):
            continue
        if linked_only and not (body.get("status") or {}).get(spec.provider.value):
            continue
        found.append(target_of(spec))
    return found


def over_budget(spec: ConnectionSpec, namespace: str, limit: int | None, others: Iterable[Target]) -> Decision | None:
    """A refusal when `namespace` already has `limit` other connections naming the same identity.

    Shared identities have cloud-wide limits (20 federated credentials per Azure identity, a GCP policy's size):
    a budget per namespace keeps one namespace from using them up for all the others."""
    if limit is None:
        return None
    target = target_of(spec)
    used = sum(1 for other in others if (other.provider, other.key) == (target.provider, target.key))
    if used < limit:
        return None
    return _refused(
        BUDGET,
        f"namespace {namespace} already has {used} connections to {target.shown}, the policy's {BUDGET_KEY} "
        f"({limit}); remove one first (other namespaces are not affected)",
    )


def target_named(provider: str, identity: str) -> Target | None:
    """The Target of an identity in its spec form (as the connection index keeps it), None when it does not parse."""
    blocks: dict[str, dict[str, str]] = {
        "aws": {"role": identity},
        "azure": dict(zip(("resourceGroup", "identityName"), identity.split("/", 1), strict=False)),
        "gcp": {"serviceAccountEmail": identity},
    }
    try:
        return target_of(ConnectionSpec.model_validate({"serviceAccountName": "x", provider: blocks[provider]}))
    except (ValidationError, ValueError, KeyError):
        return None
