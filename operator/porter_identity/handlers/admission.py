"""Validating webhooks: refuse invalid or disallowed specs at `kubectl apply`, before anything reaches a cloud."""

from __future__ import annotations

from typing import Any, Literal, TypeVar, cast

import kopf
from pydantic import BaseModel, ValidationError

from porter_identity import GROUP, VERSION
from porter_identity.api import connection, roleset
from porter_identity.config import Settings
from porter_identity.handlers import namespaces
from porter_identity.reconcile.roleset import account_refusal

CONNECTION_PATH = "validate-connection"
ROLESET_PATH = "validate-roleset"
OPERATIONS: list[Literal["CREATE", "UPDATE"]] = ["CREATE", "UPDATE"]
M = TypeVar("M", bound=BaseModel)
FORBIDDEN = 403
INVALID = 422


def _unchanged(operation: str | None, old: kopf.Body | None, new: kopf.Body | None) -> bool:
    """Deletions in progress and metadata-only updates (our finalizer and bookkeeping patches) always pass."""
    if new is None or new.get("metadata", {}).get("deletionTimestamp"):
        return True
    return operation == "UPDATE" and old is not None and old.get("spec") == new.get("spec")


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
    allowed_identities: kopf.Index[str, str] | None = None,
    **_: Any,
) -> None:
    if _unchanged(operation, old, new):
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
    decision = namespaces.check(memo, allowed_identities, spec, namespace or "")
    if not decision.allowed:
        # The index lags the API server: a Namespace applied with its connection may not be in it yet.
        decision = namespaces.check_live(memo, spec, namespace or "")
    if not decision.allowed:
        raise kopf.AdmissionError(decision.message, code=FORBIDDEN)


def validate_roleset(
    operation: str | None, old: kopf.Body | None, new: kopf.Body | None, memo: kopf.Memo, **_: Any
) -> None:
    if _unchanged(operation, old, new):
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


def register() -> None:
    """Only when the webhook is served: kopf refuses to start with admission handlers and no server."""
    # cast: kopf's WebhookFn protocol spells out every keyword; these take the few they use and **_.
    on_connection = kopf.on.validate(GROUP, VERSION, connection.PLURAL, id=CONNECTION_PATH, operations=OPERATIONS)
    on_connection(cast(Any, validate_connection))
    on_roleset = kopf.on.validate(GROUP, VERSION, roleset.PLURAL, id=ROLESET_PATH, operations=OPERATIONS)
    on_roleset(cast(Any, validate_roleset))
