"""kopf handlers for ServiceIdentityConnection: they only ask the runner (engine/runner.py) for runs.

The watch events of connections, their ServiceAccounts and the delete all reach the one door; nothing here decides
or writes. kopf keeps the finalizer and waits for a delete's run; it stores no progress or diffbase for connections
(kube/diffbase.py), so the runner's status patch is the only write a run makes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from porter_identity import GROUP, VERSION
from porter_identity.api.connection import PLURAL
from porter_identity.clouds.azure import plan as azure
from porter_identity.clouds.gcp import plan as gcp
from porter_identity.engine import revoke
from porter_identity.engine.door import Ask
from porter_identity.engine.runner import ClaimKey, Runner
from porter_identity.handlers.shard import in_shard
from porter_identity.reconcile import claims
from porter_identity.reconcile.outcome import NOT_CLAIMING, Reason


def _provider_of(spec: Mapping[str, Any]) -> str:
    return next((p for p in ("aws", "azure", "gcp") if isinstance(spec.get(p), Mapping)), "")


def _identity_of(spec: Mapping[str, Any]) -> str:
    aws, azure_, gcp_ = spec.get("aws") or {}, spec.get("azure") or {}, spec.get("gcp") or {}
    if azure_:
        return f"{azure_.get('resourceGroup', '')}/{azure_.get('identityName', '')}"
    return str(aws.get("role") or gcp_.get("serviceAccountEmail") or "")


def _needs(status: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The ServiceAccount annotations the recorded link needs: a pod started now gets its identity only with them."""
    if isinstance(status.get("azure"), Mapping):
        linked = status["azure"]
        return (
            (azure.CLIENT_ID_ANNOTATION, str(linked.get("clientId") or "")),
            (azure.TENANT_ID_ANNOTATION, str(linked.get("tenantId") or "")),
        )
    if isinstance(status.get("gcp"), Mapping) and status.get("identity"):
        return ((gcp.SERVICE_ACCOUNT_ANNOTATION, str(status["identity"])),)
    return ()


@kopf.index(GROUP, VERSION, PLURAL)
async def by_service_account(
    namespace: str | None, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, name: str, **_: Any
) -> dict[ClaimKey, claims.Claim]:
    """In-memory index of connections by the ServiceAccount and cloud they link, for ownership without API reads.

    Async on purpose: kopf runs sync callbacks in its thread pool, and this one runs on every watch event."""
    created = str(meta.get("creationTimestamp") or "")
    ready: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    rank = claims.rank(ready.get("status") == "True", str(ready.get("reason", "")), NOT_CLAIMING)
    if meta.get("deletionTimestamp"):
        rank = claims.NONE  # going away: the next claimant may take over as soon as its link is gone
    needs = _needs(status) if rank == claims.HOLDS else ()
    claim = claims.Claim(rank, created, str(meta.uid), name, _identity_of(spec), str(ready.get("reason", "")), needs)
    return {(namespace or "", str(spec.get("serviceAccountName", "")), _provider_of(spec)): claim}


@kopf.on.event(GROUP, VERSION, PLURAL, when=in_shard)
async def connection_seen(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Created, resumed, its spec or pause changed: ask for a run. Its own status writes ask for nothing."""
    runner: Runner | None = memo.get("runner")
    if runner is None:
        return
    if type == "DELETED":
        runner.forget(str(body.metadata.uid))
        return
    if body.metadata.get("deletionTimestamp"):
        return  # the delete handler asks for the delete run
    if memo.finalizer not in (body.metadata.get("finalizers") or []):
        return  # kopf adds the finalizer first (nothing is linked without it); that write's event comes back here
    runner.notice(body)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=in_shard)
async def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The finalizer comes off only when the runner's delete run says the link is gone (or kept by Retain)."""
    runner: Runner = memo.runner
    done = await runner.delete(body)
    if done.delay is not None:
        raise kopf.TemporaryError(done.message, delay=done.delay)


@kopf.on.event("", "v1", "serviceaccounts")
async def service_account_seen(
    type: str | None, name: str, namespace: str | None, annotations: kopf.Annotations, memo: kopf.Memo, **_: Any
) -> None:
    """The ServiceAccount is part of the link: a connection waiting for it runs when it appears, and one whose
    ServiceAccount was deleted, recreated or stripped of the annotations its link needs runs at once."""
    runner: Runner | None = memo.get("runner")
    owners: kopf.Index[ClaimKey, claims.Claim] | None = memo.get("by_service_account")
    if runner is None or owners is None:
        return  # not started yet: every connection is run after start-up anyway
    ns = namespace or ""
    marked = revoke.marks_of(annotations) if type != "DELETED" else {}
    if marked:
        runner.retained_marks[(ns, name)] = marked
    else:
        runner.retained_marks.pop((ns, name), None)
    for provider in ("aws", "azure", "gcp"):
        for claim in list(owners.get((ns, name, provider), [])):
            waiting = claim.reason == Reason.SERVICE_ACCOUNT_NOT_FOUND and type != "DELETED"
            if type == "DELETED":
                why = f"ServiceAccount {ns}/{name} was deleted"
                wanted = bool(claim.needs)
            else:
                why = f"ServiceAccount {ns}/{name} lacks what its link needs"
                wanted = claims.unmet(claim.needs, annotations)
            if waiting:
                why = f"ServiceAccount {ns}/{name} appeared"
            if waiting or wanted:
                runner.ask(claim.uid, Ask(ns, claim.name, why))
