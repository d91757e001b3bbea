"""In-memory index of the namespaces' allow annotations, so policy checks make no API reads."""

from __future__ import annotations

from typing import Any

import kopf

from porter_identity.api.connection import ConnectionSpec
from porter_identity.config import Settings
from porter_identity.reconcile import guard, policy
from porter_identity.reconcile.policy import ANNOTATION


@kopf.index("v1", "namespaces")
async def allowed_identities(name: str, annotations: kopf.Annotations, **_: Any) -> dict[str, str]:
    """Async on purpose, like the connection index: it runs on every namespace watch event."""
    value = annotations.get(ANNOTATION)
    return {name: value} if value is not None else {}


def annotation_of(index: kopf.Index[str, str] | None, namespace: str) -> str | None:
    assert index is not None, "kopf passes every index to every handler"
    return next(iter(index.get(namespace, [])), None)


def check(memo: kopf.Memo, index: kopf.Index[str, str] | None, spec: ConnectionSpec, namespace: str) -> policy.Decision:
    """The policy decision for a connection: refusals no rule lifts (reconcile/guard.py), then the loaded policy
    file and the namespace's annotation. Admission, reconcile and the drift sweep all decide here."""
    settings: Settings = memo.settings
    guarded = guard.refusal(spec, namespace, settings, memo.own_identities)
    if guarded is not None:
        return guarded
    return policy.decide(
        spec,
        namespace,
        memo.policy,
        annotation_of(index, namespace),
        account_id=settings.aws_account_id,
        gcp_project=settings.gcp_project_id,
    )
