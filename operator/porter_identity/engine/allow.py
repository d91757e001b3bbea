"""The allow policy's decision for a connection, from the namespaces' annotation index (no API reads)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import kopf

from porter_identity.api.connection import ConnectionSpec
from porter_identity.config import Settings
from porter_identity.kube import rest
from porter_identity.kube.rest import Kube
from porter_identity.reconcile import guard, policy
from porter_identity.reconcile.policy import ANNOTATION

# Namespace name -> its allow annotation (a list of at most one value, as kopf's indexes have it):
# engine/namespaces.py keeps it from the namespaces' watch.
AllowIndex = Mapping[str, Collection[str]]


def annotation_of(index: AllowIndex | None, namespace: str) -> str | None:
    """None without an index (a standby's webhook): a refusal is then checked again with `check_live`."""
    if index is None:
        return None
    return next(iter(index.get(namespace, [])), None)


def check(memo: kopf.Memo, index: AllowIndex | None, spec: ConnectionSpec, namespace: str) -> policy.Decision:
    """The policy decision for a connection: refusals no rule lifts (reconcile/guard.py), then the loaded policy
    file and the namespace's annotation. Admission, reconcile and the drift sweep all decide here."""
    return _decide(memo, spec, namespace, annotation_of(index, namespace))


class LiveAnnotations:
    """The allow annotation read from the API server, for a refusal the index may be too late for."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def __call__(self, namespace: str) -> str | None:
        try:
            found: Any = self.kube.get(rest.path("", "v1", "namespaces", name=namespace))
        except rest.ApiError as err:
            if err.status == 404:
                return None
            raise
        annotations: dict[str, str] = (found.get("metadata") or {}).get("annotations") or {}
        return annotations.get(ANNOTATION)


def check_live(memo: kopf.Memo, spec: ConnectionSpec, namespace: str) -> policy.Decision:
    """`check` with the annotation as the API server has it now (memo.live_annotations, a LiveAnnotations)."""
    read: Callable[[str], str | None] = memo.live_annotations
    return _decide(memo, spec, namespace, read(namespace))


def _decide(memo: kopf.Memo, spec: ConnectionSpec, namespace: str, annotation: str | None) -> policy.Decision:
    settings: Settings = memo.settings
    guarded = guard.refusal(spec, namespace, settings, memo.own_identities)
    if guarded is not None:
        return guarded
    return policy.decide(
        spec,
        namespace,
        memo.policy,
        annotation,
        account_id=settings.aws_account_id,
        gcp_project=settings.gcp_project_id,
    )
