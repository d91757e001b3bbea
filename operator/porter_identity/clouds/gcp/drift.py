"""What the drift sweep finds in one getIamPolicy per IAM service account: pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from porter_identity.clouds.gcp import plan as gcp
from porter_identity.model import WORKLOAD_IDENTITY_USER
from porter_identity.reconcile.drift import Drift, Findings, Linked, rechecks

if TYPE_CHECKING:  # only the GCP provider loads the SDK
    from google.iam.v1 import policy_pb2


def bound_members(policy: policy_pb2.Policy) -> set[str]:
    """Members of the unconditional workloadIdentityUser binding (the only one the operator writes)."""
    return {
        m
        for b in policy.bindings
        if b.role == WORKLOAD_IDENTITY_USER and not b.HasField("condition")
        for m in b.members
    }


def findings(email: str, pool: str, connections: Sequence[Linked], members: set[str] | None) -> Findings:
    """`members` is None when the service account is gone. The member format is GKE's, not ours, so a member
    without a connection may be someone's manual binding: GCP links are never reported as orphans."""
    drifts = [
        Drift(c, f"{gcp.member(pool, c.namespace, c.service_account)} was removed from {email} outside the operator")
        for c in connections
        if c.checked and gcp.member(pool, c.namespace, c.service_account) not in (members or set())
    ]
    return Findings(tuple(drifts + rechecks(connections)), ())
