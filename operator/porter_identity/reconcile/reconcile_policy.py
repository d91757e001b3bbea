"""The per-object pause: `identity.porter.run/reconcile-policy` (like Azure Service Operator's reconcile-policy)."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from porter_identity.api.policy import Keep

ANNOTATION = "identity.porter.run/reconcile-policy"


class ReconcilePolicy(enum.Enum):
    MANAGE = "manage"  # the default: reconcile, repair, delete the link with the connection
    SKIP = "skip"  # touch nothing in the cloud: no reconcile, no drift repair; on delete the link is left as it is
    DETACH_ON_DELETE = "detach-on-delete"  # reconcile as usual; on delete keep the link (as deletionPolicy: Retain)


def of(annotations: Mapping[str, str] | None) -> tuple[ReconcilePolicy, str | None]:
    """The policy, and a warning when the value is unknown: an unknown value pauses (skip), since whoever set it
    during an incident meant to stop the operator, not to be ignored."""
    value = (annotations or {}).get(ANNOTATION)
    if value is None:
        return ReconcilePolicy.MANAGE, None
    try:
        return ReconcilePolicy(value.strip().lower()), None
    except ValueError:
        known = ", ".join(p.value for p in ReconcilePolicy)
        return ReconcilePolicy.SKIP, f"unknown {ANNOTATION} {value!r} (one of {known}): treated as skip"


def paused_message(why: str) -> str:
    return f"{ANNOTATION} is skip: {why} not done; remove the annotation (or set manage) to resume"


def keeps(annotations: Mapping[str, str] | None, deletion_policy: str) -> list[Keep]:
    """What a connection asks to keep beyond what the operator would do, in the policy's terms."""
    wanted = [Keep.RETAIN] if deletion_policy == Keep.RETAIN.value else []
    pause, _ = of(annotations)
    if pause is ReconcilePolicy.SKIP:
        wanted.append(Keep.SKIP)
    elif pause is ReconcilePolicy.DETACH_ON_DELETE:
        wanted.append(Keep.DETACH_ON_DELETE)
    return wanted
