"""Decide the Workload Identity binding on a GCP IAM service account's policy, touching nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from porter_identity.model import WORKLOAD_IDENTITY_USER

if TYPE_CHECKING:  # policies come from the GCP provider: only it loads the SDK (an operator without GCP never does)
    from google.iam.v1 import policy_pb2

SERVICE_ACCOUNT_ANNOTATION = "iam.gke.io/gcp-service-account"


def member(workload_pool: str, namespace: str, service_account: str) -> str:
    return f"serviceAccount:{workload_pool}[{namespace}/{service_account}]"


def _unconditional(binding: policy_pb2.Binding) -> bool:
    return binding.role == WORKLOAD_IDENTITY_USER and not binding.HasField("condition")


def with_member(policy: policy_pb2.Policy, who: str) -> policy_pb2.Policy | None:
    """A copy with `who` in the unconditional workloadIdentityUser binding, or None when it is already there.

    Other members, other bindings, conditions, version and etag are kept exactly."""
    if any(_unconditional(b) and who in b.members for b in policy.bindings):
        return None
    out = type(policy)()
    out.CopyFrom(policy)
    for binding in out.bindings:
        if _unconditional(binding):
            binding.members.append(who)
            return out
    out.bindings.add(role=WORKLOAD_IDENTITY_USER, members=[who])
    return out


def without_member(policy: policy_pb2.Policy, who: str) -> policy_pb2.Policy | None:
    """A copy without `who` (its binding dropped only if it becomes empty), or None when it is not there."""
    if not any(_unconditional(b) and who in b.members for b in policy.bindings):
        return None
    out = type(policy)()
    out.CopyFrom(policy)
    kept = []
    for binding in out.bindings:
        if _unconditional(binding) and who in binding.members:
            remaining = [m for m in binding.members if m != who]
            if not remaining:
                continue
            del binding.members[:]
            binding.members.extend(remaining)
        kept.append(binding)
    del out.bindings[:]
    out.bindings.extend(kept)
    return out
