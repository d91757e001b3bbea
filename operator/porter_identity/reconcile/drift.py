"""Decide what a drift sweep found: links changed or removed outside the operator, and links left without a connection.

Inputs are what the sweep read in bulk (one paged list per EKS cluster or Azure identity, one policy per GCP
service account) and the connections as kopf's in-memory index holds them; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from porter_identity.api.connection import ConnectionSpec
from porter_identity.model import WORKLOAD_IDENTITY_USER, Association, AssociationSummary, Credential
from porter_identity.reconcile import aws, azure, gcp, reconcile_policy
from porter_identity.reconcile.outcome import OUTSIDE_THE_SPEC, Action, Reason
from porter_identity.reconcile.reconcile_policy import ReconcilePolicy

if TYPE_CHECKING:  # only the GCP provider loads the SDK
    from google.iam.v1 import policy_pb2

# A connection a run outside kopf's handlers (the sweep, a woken claimant) left retrying is rechecked by the sweep:
# kopf did not run it, so kopf does not retry it. Stalls are rechecked on their own schedule (reconcile/recheck.py).
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
    settled: bool  # status describes this generation and kopf has no handler in progress for it
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
        """Ready and left alone by kopf: compared with the cloud."""
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
    in_progress = bool(((status.get("kopf") or {}).get("progress")) or {})
    settled = (
        status.get("observedGeneration") == meta.get("generation")
        and not in_progress
        and not meta.get("deletionTimestamp")
    )
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


def _rechecks(connections: Iterable[Linked]) -> list[Drift]:
    return [Drift(c, f"rechecking after {c.reason}", corrects=False) for c in connections if c.rechecked]


# --- AWS: one paged ListPodIdentityAssociations per cluster -------------------------------------------------


def rotation(ids: Sequence[str], cursor: int, budget: int) -> tuple[list[str], int]:
    """The next `budget` ids after `cursor` (wrapping), and the cursor for the next sweep.

    ListPodIdentityAssociations carries no roleArn, so a role changed outside is only seen by a Describe:
    each sweep describes a window of this size, so every association is checked within len/budget sweeps."""
    if not ids or budget <= 0:
        return [], 0
    start = cursor % len(ids)
    window = [ids[(start + i) % len(ids)] for i in range(min(budget, len(ids)))]
    return window, (start + len(window)) % len(ids)


def aws_to_describe(
    connections: Sequence[Linked],
    listed: Sequence[AssociationSummary],
    known: Mapping[str, Association],
    window: Sequence[str],
) -> list[str]:
    """Listed associations no connection records and not yet described (to learn their owner from the tags),
    then the role-check window. Owners of unrecorded associations are remembered by the caller (`known`)."""
    recorded = {c.recorded for c in connections if c.recorded}
    unknown = [s.association_id for s in listed if s.association_id not in recorded and s.association_id not in known]
    present = {s.association_id for s in listed}
    return unknown + [i for i in window if i in present and i not in unknown]


def aws_window_ids(connections: Sequence[Linked]) -> list[str]:
    """Recorded association ids of checked connections, in a stable order for `rotation`."""
    return sorted(c.recorded for c in connections if c.checked and c.recorded)


def aws_findings(
    cluster: str,
    connections: Sequence[Linked],
    listed: Sequence[AssociationSummary],
    described: Mapping[str, Association],
) -> Findings:
    """`described`: associations read by Describe this sweep or remembered from earlier ones (unrecorded ids only)."""
    present = {s.association_id for s in listed}
    drifts: list[Drift] = []
    for c in connections:
        if not c.checked:
            continue
        if c.recorded is None:
            drifts.append(Drift(c, "status records no EKS Pod Identity association"))
            continue
        if c.recorded not in present:
            drifts.append(Drift(c, f"EKS Pod Identity association {c.recorded} was deleted outside the operator"))
            continue
        found = described.get(c.recorded or "")
        if found is not None and found.role_arn != c.role_arn:
            drifts.append(
                Drift(c, f"EKS Pod Identity association {c.recorded} was changed to role {found.role_arn} outside")
            )
    drifts += _rechecks(connections)
    uids = {c.uid for c in connections}
    recorded = {c.recorded for c in connections if c.recorded}
    drifts += _unrecorded_own(connections, listed, described, recorded)
    orphans = [
        Orphan("aws", s.association_id, cluster, s.namespace, s.service_account, found.tags.get(aws.UID_TAG))
        for s in listed
        if s.association_id not in recorded
        and (found := described.get(s.association_id)) is not None
        and found.tags.get(aws.MANAGED_TAG) == "true"
        # a connection's tag: a PorterRoleSet's associations are managed too, under its own uid tag
        and aws.UID_TAG in found.tags
        and found.tags[aws.UID_TAG] not in uids
        and not aws.retained(found)  # Retain: never ours to delete, nor an orphan to report
    ]
    return Findings(tuple(drifts), tuple(orphans))


def _unrecorded_own(
    connections: Sequence[Linked],
    listed: Sequence[AssociationSummary],
    described: Mapping[str, Association],
    recorded: set[str],
) -> list[Drift]:
    """A settled connection that is not Ready while an association tagged with its uid exists: a run linked it and
    the status that says so was lost (a stale write landed after it). Its run adopts it, or removes it."""
    waiting = {c.uid: c for c in connections if c.settled and not c.ready and not c.paused}
    out = []
    for s in listed:
        found = described.get(s.association_id)
        if s.association_id in recorded or found is None or found.tags.get(aws.MANAGED_TAG) != "true":
            continue
        c = waiting.get(found.tags.get(aws.UID_TAG, ""))
        if c is not None and not c.rechecked:  # a recheck is already on its way (_rechecks)
            message = f"EKS Pod Identity association {s.association_id} carries its uid, its status records none"
            out.append(Drift(c, message, corrects=False))
    return out


def aws_prune(
    known: Mapping[str, Association], listed: Sequence[AssociationSummary], connections: Sequence[Linked]
) -> dict[str, Association]:
    """Forget remembered owners of associations that are gone or now recorded by a connection."""
    present = {s.association_id for s in listed}
    recorded = {c.recorded for c in connections if c.recorded}
    return {i: a for i, a in known.items() if i in present and i not in recorded}


# --- Azure: one paged list of federated identity credentials per identity ----------------------------------


def azure_findings(
    where: str, issuer: str, connections: Sequence[Linked], listed: Sequence[Credential] | None
) -> Findings:
    """`listed` is None when the identity itself is gone (every link on it is then missing)."""
    by_name = {c.name.lower(): c for c in listed or ()}
    drifts: list[Drift] = []
    for c in connections:
        if not c.checked:
            continue
        wanted = azure.desired(issuer, c.namespace, c.service_account, c.recorded)
        found = by_name.get(wanted.name.lower())
        if found is None:
            drifts.append(Drift(c, f"federated identity credential {wanted.name} on {where} was deleted outside"))
        elif azure.plan_apply(wanted, found) is not azure.Action.KEEP:
            drifts.append(
                Drift(
                    c,
                    f"federated identity credential {wanted.name} on {where} was changed outside "
                    f"(subject {found.subject}, issuer {found.issuer})",
                )
            )
    drifts += _rechecks(connections)
    claimed = {(c.namespace, c.service_account) for c in connections}
    orphans = []
    for cred in listed or ():
        # Another cluster's operator may federate the same identity: its credentials trust another issuer.
        owner = azure.ours(cred, issuer)
        if owner is None:
            continue
        if owner not in claimed:
            orphans.append(Orphan("azure", cred.name, where, owner[0], owner[1]))
    return Findings(tuple(drifts), tuple(orphans))


# --- GCP: one getIamPolicy per IAM service account ------------------------------------------------------------


def bound_members(policy: policy_pb2.Policy) -> set[str]:
    """Members of the unconditional workloadIdentityUser binding (the only one the operator writes)."""
    return {
        m
        for b in policy.bindings
        if b.role == WORKLOAD_IDENTITY_USER and not b.HasField("condition")
        for m in b.members
    }


def gcp_findings(email: str, pool: str, connections: Sequence[Linked], members: set[str] | None) -> Findings:
    """`members` is None when the service account is gone. The member format is GKE's, not ours, so a member
    without a connection may be someone's manual binding: GCP links are never reported as orphans."""
    drifts = [
        Drift(c, f"{gcp.member(pool, c.namespace, c.service_account)} was removed from {email} outside the operator")
        for c in connections
        if c.checked and gcp.member(pool, c.namespace, c.service_account) not in (members or set())
    ]
    return Findings(tuple(drifts + _rechecks(connections)), ())


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
