"""What the drift sweep finds in one paged ListPodIdentityAssociations per cluster: pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from porter_identity.clouds.aws import plan as aws
from porter_identity.model import Association, AssociationSummary
from porter_identity.reconcile.drift import Drift, Findings, Linked, Orphan, rechecks


def rotation(ids: Sequence[str], cursor: int, budget: int) -> tuple[list[str], int]:
    """The next `budget` ids after `cursor` (wrapping), and the cursor for the next sweep.

    ListPodIdentityAssociations carries no roleArn, so a role changed outside is only seen by a Describe:
    each sweep describes a window of this size, so every association is checked within len/budget sweeps."""
    if not ids or budget <= 0:
        return [], 0
    start = cursor % len(ids)
    window = [ids[(start + i) % len(ids)] for i in range(min(budget, len(ids)))]
    return window, (start + len(window)) % len(ids)


def to_describe(
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


def window_ids(connections: Sequence[Linked]) -> list[str]:
    """Recorded association ids of checked connections, in a stable order for `rotation`."""
    return sorted(c.recorded for c in connections if c.checked and c.recorded)


def findings(
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
    drifts += rechecks(connections)
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


def prune(
    known: Mapping[str, Association], listed: Sequence[AssociationSummary], connections: Sequence[Linked]
) -> dict[str, Association]:
    """Forget remembered owners of associations that are gone or now recorded by a connection."""
    present = {s.association_id for s in listed}
    recorded = {c.recorded for c in connections if c.recorded}
    return {i: a for i, a in known.items() if i in present and i not in recorded}
