"""The policy decides last for links no connection holds: a link a Retain or detach-on-delete delete left in place
is removed once no rule allows it, with a Warning Event on its ServiceAccount naming why."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from porter_identity.api.connection import ConnectionSpec, Provider
from porter_identity.clouds.base import RetainedLink, retained_annotation
from porter_identity.engine import allow
from porter_identity.engine.lifecycle import Lifecycle
from porter_identity.errors import CloudError
from porter_identity.kube import rest
from porter_identity.kube.events import post_on_service_account
from porter_identity.kube.rest import Kube
from porter_identity.reconcile.outcome import Reason

log = logging.getLogger(__name__)
Marks = dict[tuple[str, str], dict[str, str]]  # namespace/ServiceAccount -> provider -> the identity retained


def marks_of(annotations: Mapping[str, str]) -> dict[str, str]:
    """The retained links a ServiceAccount is marked with, by provider."""
    return {p.value: annotations[retained_annotation(p)] for p in Provider if retained_annotation(p) in annotations}


def spec_of(retained: RetainedLink) -> ConnectionSpec | None:
    """The spec a connection for this link would have: what the policy is asked about."""
    block: dict[str, Any]
    if retained.provider is Provider.AWS:
        block = {"role": retained.identity}
    elif retained.provider is Provider.AZURE:
        resource_group, _, name = retained.identity.partition("/")
        block = {"resourceGroup": resource_group, "identityName": name}
    else:
        block = {"serviceAccountEmail": retained.identity}
    try:
        return ConnectionSpec.model_validate(
            {"serviceAccountName": retained.service_account, retained.provider.value: block}
        )
    except ValueError:
        return None  # not a spec any connection could have had: nothing to ask the policy


def marks_in(kube: Kube, namespace: str) -> Marks:
    """The marks of one namespace's ServiceAccounts as the API server has them now (the watch may lag a mark
    written a moment ago)."""
    listed: Any = kube.get(rest.path("", "v1", "serviceaccounts", namespace))
    out: Marks = {}
    for item in listed.get("items") or []:
        meta = item.get("metadata") or {}
        found = marks_of(meta.get("annotations") or {})
        if found:
            out[(namespace, str(meta.get("name")))] = found
    return out


def revoke_retained(memo: kopf.Memo, marks: Marks, namespace: str | None = None) -> int:
    """Remove the retained links (in `namespace`, read fresh, or everywhere) that no rule allows any more; how many
    were."""
    lifecycle: Lifecycle = memo.lifecycle
    if namespace is not None:
        marks = marks_in(memo.kube, namespace)
    removed = 0
    for provider in Provider:
        link = lifecycle.registry.get(provider)
        if link is None:
            continue
        scoped = {
            key: found[provider.value]
            for key, found in list(marks.items())
            if provider.value in found and (namespace is None or key[0] == namespace)
        }
        try:
            candidates = link.retained_links(namespace, scoped)
        except CloudError as err:
            log.warning(f"could not list retained {provider.value} links: {err.message}")
            continue
        for retained in candidates:
            spec = spec_of(retained)
            if spec is None:
                continue
            decision = allow.check(memo, memo.get("allowed_identities"), spec, retained.namespace)
            if decision.allowed:
                continue
            try:
                what = link.remove_retained(retained)
            except (CloudError, rest.ApiError) as err:
                log.warning(f"could not remove a retained link the policy withdrew: {err}")
                continue
            removed += 1
            message = f"{what}: {decision.message}"
            log.warning(message, extra={"reason": Reason.NOT_ALLOWED.value, "provider": provider.value})
            post_on_service_account(
                memo.kube,
                memo.events,
                retained.namespace,
                retained.service_account,
                "Warning",
                Reason.NOT_ALLOWED.value,
                message,
            )
    return removed
