"""Decide what a drift sweep found: links changed or removed outside the operator, and links left without a connection.

Inputs are what the sweep read in bulk (one paged list per EKS cluster or Azure identity, one policy per GCP
service account) and the connections as the operator's in-memory index holds them; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from porter_identity.api.connection import ConnectionSpec
from porter_identity.reconcile import reconcile_policy
from porter_identity.reconcile.outcome import OUTSIDE_THE_SPEC, Action, Reason
from porter_identity.reconcile.reconcile_policy import ReconcilePolicy

# A connection left retrying is asked for by the sweep too: the runner retries it on its own schedule
# (engine/wait.py) and the sweep is the safety net; it may run a backing-off connection early, once a sweep.
RECHECKED = frozenset(
    {Reason.THROTTLED, Reason.CLOUD_UNAVAILABLE, Reason.SERVICE_ACCOUNT_NOT_FOUND, Reason.PROGRESSING}
)

DRIFT_CORRECTED = Action.DRIFT_CORRECTED
"""The Event reason of a repair of something changed outside the operator (connections and PorterRoleSets)."""

Group = tuple[str, ...]
"""What one bulk read covers: ("aws",) the cluster, ("azure", rg, identity), ("gcp", email)."""


@dataclass(frozen=True)
class Linked:
    """One connection as the in-memory index sees it (no API read)."""

    uid: str
    namespace: str
    name: str
    service_account: str
    ready: bool
    reason: str
    settled: bool  # status describes this generation, and it is not being deleted
    recorded: str | None = None  # AWS association id / Azure credential name / GCP member, from status
    role_arn: str | None = None  # AWS: the role recorded in status
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)  # as written, for the policy
    paused: bool = False  # reconcile-policy skip: nothing is rechecked

    def parsed_spec(self) -> ConnectionSpec | None:
        """Parsed when the sweep needs it, not on every watch event (the index runs on each one)."""
        try:
            return ConnectionSpec.model_validate(dict(self.spec))
        except (ValidationError, ValueError):
            return None

    @property
    def checked(self) -> bool:
        """Ready and settled: compared with the cloud."""
        return self.settled and self.ready

    @property
    def rechecked(self) -> bool:
        return self.settled and not self.ready and self.reason in RECHECKED

    @property
    def stalled(self) -> bool:
        """Stalled by something outside the spec that may get fixed there (a role created, a rule added), settled
        for this generation: looked at again every PORTER_STALLED_RECHECK_SECONDS."""
        return self.settled and not self.ready and self.reason in OUTSIDE_THE_SPEC and not self.paused


def group_of(spec: Mapping[str, Any]) -> Group | None:
    if isinstance(spec.get("aws"), Mapping):
        return ("aws",)
    block = spec.get("azure")
    if isinstance(block, Mapping):
        # ARM names compare case-insensitively: RG/READER and rg/reader are one identity, read once.
        return ("azure", str(block.get("resourceGroup", "")).lower(), str(block.get("identityName", "")).lower())
    block = spec.get("gcp")
    if isinstance(block, Mapping):
        return ("gcp", str(block.get("serviceAccountEmail", "")))
    return None


def entry(body: Mapping[str, Any]) -> tuple[Group, Linked] | None:
    """The index entry of a connection body (the API server's JSON), or None when it names no provider."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    status = body.get("status") or {}
    group = group_of(spec)
    if group is None:
        return None
    ready: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    settled = status.get("observedGeneration") == meta.get("generation") and not meta.get("deletionTimestamp")
    provider_status = status.get(group[0]) or {}
    recorded = {"aws": "associationId", "azure": "credentialName", "gcp": "member"}[group[0]]
    return group, Linked(
        uid=str(meta.get("uid", "")),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name", "")),
        service_account=str(spec.get("serviceAccountName", "")),
        ready=ready.get("status") == "True",
        reason=str(ready.get("reason", "")),
        settled=settled,
        recorded=provider_status.get(recorded),
        role_arn=provider_status.get("roleArn") if group[0] == "aws" else None,
        spec=dict(spec),
        paused=reconcile_policy.of(meta.get("annotations"))[0] is ReconcilePolicy.SKIP,
    )


@dataclass(frozen=True)
class Drift:
    """A connection whose link is not as its status says: the sweep runs its reconcile again."""

    connection: Linked
    message: str
    corrects: bool = True  # a change the run makes repairs something done outside (DriftCorrected)


@dataclass(frozen=True)
class Orphan:
    """A cloud link named or tagged as ours that no connection claims (yet to be confirmed against the API)."""

    provider: str
    link: str  # association id or credential name
    where: str  # cluster, or resource group/identity
    namespace: str
    service_account: str
    uid: str | None = None  # AWS: the connection uid in its tags


@dataclass(frozen=True)
class Findings:
    drifts: tuple[Drift, ...] = ()
    orphans: tuple[Orphan, ...] = ()


def rechecks(connections: Iterable[Linked]) -> list[Drift]:
    return [Drift(c, f"rechecking after {c.reason}", corrects=False) for c in connections if c.rechecked]


# --- confirmation against the API server ---------------------------------------------------------------------


def still_claimed(orphan: Orphan, group: Group, namespace_connections: Iterable[tuple[Group, Linked]]) -> bool:
    """Whether a connection read from the API server (not the index, which may lag) claims the link."""
    for found_group, c in namespace_connections:
        if orphan.provider == "aws":
            if c.uid == orphan.uid:  # the tags name the connection by uid
                return True
        elif found_group == group and c.service_account == orphan.service_account:
            return True
    return False
