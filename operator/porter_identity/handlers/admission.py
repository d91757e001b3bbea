"""Admission: refuse invalid or disallowed specs at `kubectl apply`, before anything reaches a cloud; a connection
admitted at create carries this shard's finalizer from its first write."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from porter_identity import GROUP, VERSION
from porter_identity.api import connection, roleset, validation
from porter_identity.api.policy import Policy
from porter_identity.config import Settings
from porter_identity.engine import allow
from porter_identity.errors import CloudError
from porter_identity.handlers.shard import serves
from porter_identity.kube import rest
from porter_identity.kube.rest import Kube
from porter_identity.reconcile import guard, policy, reconcile_policy
from porter_identity.reconcile.roleset import account_refusal

if TYPE_CHECKING:  # memo.clouds holds it only when Azure is configured
    from porter_identity.clouds.azure.client import AzureProvider

CONNECTION_PATH = "validate-connection"
ROLESET_PATH = "validate-roleset"
M = TypeVar("M", bound=BaseModel)
FORBIDDEN = 403
INVALID = 422
# The reads an answer may need (the Namespace before a refusal, the budget's list, an Azure identity's client id)
# run here (porter_identity.webhook), never in kopf's worker pool: there an answer would queue behind every
# reconcile in flight.
READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="admission")


class NeedsRead(Exception):
    """The answer needs a read (`may_read=False` was asked): check again where reads may block (READS)."""


def _may(may_read: bool) -> None:
    if not may_read:
        raise NeedsRead


def _pause(body: kopf.Body | None) -> str | None:
    annotations: dict[str, str] = (body.get("metadata", {}).get("annotations") if body is not None else None) or {}
    return annotations.get(reconcile_policy.ANNOTATION)


def _unchanged(kind: str, operation: str | None, old: kopf.Body | None, new: kopf.Body | None) -> bool:
    """Metadata-only updates (our finalizer and bookkeeping patches) always pass, deleted objects included, unless
    they change the reconcile-policy annotation; a spec change on an object being deleted is refused."""
    if new is None:
        return True
    frozen = validation.spec_change_while_deleting(kind, old, new)
    if frozen is not None:
        raise kopf.AdmissionError(frozen, code=INVALID)
    if new.get("metadata", {}).get("deletionTimestamp"):
        return True
    return (
        operation == "UPDATE" and old is not None and old.get("spec") == new.get("spec") and _pause(old) == _pause(new)
    )


def _parse(model: type[M], spec: Any) -> M:
    try:
        return model.model_validate(dict(spec or {}))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(["spec", *(str(p) for p in first["loc"])])
        raise kopf.AdmissionError(f"{where}: {first['msg']}", code=INVALID) from None


def validate_connection(
    operation: str | None,
    old: kopf.Body | None,
    new: kopf.Body | None,
    namespace: str | None,
    memo: kopf.Memo,
    allowed_identities: allow.AllowIndex | None = None,
    may_read: bool = True,
    **_: Any,
) -> None:
    """The connection's checks, parsed once. With `may_read=False` (on the event loop) a check that must read the
    API server or a cloud first raises NeedsRead instead: an allowed create is answered without a thread hop."""
    if _unchanged(connection.KIND, operation, old, new):
        return
    assert new is not None
    spec = _parse(connection.ConnectionSpec, new.get("spec"))
    if operation == "UPDATE" and old is not None:
        before = _parse(connection.ConnectionSpec, old.get("spec"))
        # The CRD's CEL rules say the same; repeated so the webhook's answer is complete on its own.
        if before.service_account_name != spec.service_account_name:
            raise kopf.AdmissionError("spec.serviceAccountName is immutable; create a new connection instead", INVALID)
        if before.provider is not spec.provider:
            raise kopf.AdmissionError(
                "the provider (aws, azure or gcp) cannot change; create a new connection instead", INVALID
            )
    ns = namespace or ""
    # Protected namespaces and the operator's own identities by name come first, inside the policy decision.
    decision = allow.check(memo, allowed_identities, spec, ns)
    if not decision.allowed:
        # The index lags the API server: a Namespace applied with its connection may not be in it yet.
        _may(may_read)
        decision = allow.check_live(memo, spec, namespace or "")
    if not decision.allowed:
        raise kopf.AdmissionError(decision.message, code=FORBIDDEN)
    annotations = new.get("metadata", {}).get("annotations")
    for wanted in reconcile_policy.keeps(annotations, spec.deletion_policy.value):
        kept = decision.refuses_keeping(wanted)
        if kept is not None:
            raise kopf.AdmissionError(kept, code=FORBIDDEN)
    refused = guard.own_identity(spec, memo.own_identities, _azure_client_id(memo, spec, may_read)) or _over_budget(
        memo, spec, ns, str(new.get("metadata", {}).get("name", "")), may_read
    )
    if refused is not None:
        raise kopf.AdmissionError(refused.message, code=FORBIDDEN)


def _azure_client_id(memo: kopf.Memo, spec: connection.ConnectionSpec, may_read: bool) -> str | None:
    """The named Azure identity's client id, read only when the operator's own client id is known; None when it
    cannot be read now (reconcile checks again with the identity it reads anyway)."""
    own: guard.OwnIdentities = memo.own_identities
    azure: AzureProvider | None = memo.clouds.azure if own.azure_client_ids and spec.azure is not None else None
    if azure is None or spec.azure is None:
        return None
    _may(may_read)
    try:
        return azure.get_identity(spec.azure.resource_group, spec.azure.identity_name).client_id
    except CloudError:
        return None


def _over_budget(
    memo: kopf.Memo, spec: connection.ConnectionSpec, namespace: str, name: str, may_read: bool
) -> policy.Decision | None:
    """The namespace's budget per identity, counted from the API server itself (a quorum list, not the watch
    cache), so connections created a moment ago count."""
    rules: Policy | None = memo.policy
    limit = rules.max_links_per_namespace_per_identity if rules is not None else None
    if limit is None:
        return None
    _may(may_read)
    kube: Kube = memo.kube
    listed: Any = kube.get(rest.path(GROUP, VERSION, connection.PLURAL, namespace))
    return guard.over_budget(spec, namespace, limit, guard.targets(listed["items"], excluding=name))


def finalizer_patch(
    operation: str | None, new: kopf.Body | None, namespace: str | None, memo: kopf.Memo, **_: Any
) -> list[dict[str, Any]] | None:
    """A JSON patch adding this shard's finalizer to a connection it serves, at create: otherwise the runner adds it
    with a write of its own before it links (one more write and watch event per connection). Only where this
    instance knows it serves the namespace (a standby of a shard does not: the runner adds it then)."""
    if operation != "CREATE" or new is None:
        return None
    ns = namespace or ""
    watched: list[str] = memo.get("namespaces") or []
    finalizer: str | None = memo.get("finalizer")
    if finalizer is None or (watched and ns not in watched) or not serves(memo, ns):
        return None
    finalizers = list(new.get("metadata", {}).get("finalizers") or [])
    if finalizer in finalizers:
        return None
    if not finalizers:
        return [{"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}]
    return [{"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}]


def validate_roleset(
    operation: str | None, old: kopf.Body | None, new: kopf.Body | None, memo: kopf.Memo, **_: Any
) -> None:
    if _unchanged(roleset.KIND, operation, old, new):
        return
    assert new is not None
    spec = _parse(roleset.RoleSetSpec, new.get("spec"))
    settings: Settings = memo.settings
    # The same check reconcile makes (a bypassed webhook changes nothing): here it answers at kubectl apply.
    refused = account_refusal(settings.aws_account_id, spec.account_id)
    if refused is not None:
        raise kopf.AdmissionError(refused.message, code=FORBIDDEN)
    if operation == "UPDATE" and old is not None:
        before = _parse(roleset.RoleSetSpec, old.get("spec"))
        if before.account_id != spec.account_id:
            raise kopf.AdmissionError("spec.accountId is immutable; create a new PorterRoleSet instead", INVALID)
