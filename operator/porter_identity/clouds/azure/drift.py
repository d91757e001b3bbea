"""What the drift sweep finds in one paged list of an identity's federated credentials: pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from porter_identity.clouds.azure import plan as azure
from porter_identity.model import Credential
from porter_identity.reconcile.drift import Drift, Findings, Linked, Orphan, rechecks


def findings(where: str, issuer: str, connections: Sequence[Linked], listed: Sequence[Credential] | None) -> Findings:
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
    drifts += rechecks(connections)
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
