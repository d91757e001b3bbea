"""Turn an outcome into a status patch and Events, writing nothing when nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf
from pydantic import BaseModel

from porter_identity.api.connection import (
    AwsStatus,
    AzureStatus,
    ConnectionStatus,
    GcpStatus,
    Provider,
    ServiceIdentityConnection,
)
from porter_identity.reconcile import conditions
from porter_identity.reconcile import privilege as least
from porter_identity.reconcile.outcome import Outcome, Reason
from porter_identity.reconcile.privilege import Check


def next_status(
    conn: ServiceIdentityConnection,
    result: Outcome,
    privilege: Check | None = None,
    linked: str | None = None,
    provider_status: BaseModel | None = None,
) -> ConnectionStatus:
    """The status this outcome implies: the identity actually linked (None when nothing is), and the cloud's
    record of that link; transition times survive when a condition keeps its value.

    LeastPrivilege is rewritten when this run read the permissions, kept while it describes this generation."""
    try:
        provider: Provider | None = conn.spec.provider
    except ValueError:
        provider = None
    generation, now = conn.metadata.generation, conditions.now_rfc3339()
    built = conditions.build(result, generation, conn.status.conditions, now)
    before = next((c for c in conn.status.conditions if c.type == least.CONDITION), None)
    if privilege is not None:
        built.append(least.condition(privilege, generation, before, now))
    elif before is not None and before.observed_generation == generation:
        built.append(before)
    blocks: dict[str, Any] = {provider.value: provider_status} if provider is not None else {}
    link = provider_status.link_id if isinstance(provider_status, AwsStatus | AzureStatus | GcpStatus) else None
    return ConnectionStatus(
        observed_generation=generation, conditions=built, provider=provider, identity=linked, link=link, **blocks
    )


def write(patch: kopf.Patch, old: ConnectionStatus, new: ConnectionStatus) -> bool:
    """Patch status only if it differs; keys set to None are removed by the merge patch."""
    new_doc = new.model_dump(mode="json", by_alias=True)
    if new_doc == old.model_dump(mode="json", by_alias=True):
        return False
    for key, value in new_doc.items():
        patch.status[key] = value
    return True


def warn_broad(
    body: Any, old: ConnectionStatus, check: Check | None, result: Outcome, post: Callable[[Any, str, str, str], None]
) -> None:
    """A Warning when an identity is newly found broad; when that blocks, the Stalled Event already says it."""
    if check is None or not check.broad or result.reason is Reason.BROAD_PERMISSIONS:
        return
    before = next((c for c in old.conditions if c.type == least.CONDITION), None)
    if before is not None and before.status == "False" and before.message == check.message:
        return
    post(body, "Warning", Reason.BROAD_PERMISSIONS.value, check.message)
