"""Server-side apply of imported connections, pruning of the app's removed ones, and listing for export."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from porter_identity import GROUP, VERSION
from porter_identity.api.connection import PLURAL, SINGULAR
from porter_identity.porteryaml.convert import APP_LABEL, MANAGED_BY_LABEL, MANAGER, SERVICE_LABEL, Imported

APPLY_PATCH = "application/apply-patch+yaml"


class ClusterRefused(Exception):
    """The API server refused a read or a change, or applying would take over a connection not this app's."""


@dataclass(frozen=True)
class Change:
    """What happened (or, in a dry run, would happen) to one connection."""

    name: str
    action: str  # created | configured | unchanged | pruned

    def render(self, dry_run: bool) -> str:
        return f"{SINGULAR}/{self.name} {self.action}" + (" (server dry run)" if dry_run else "")


def _owned_part(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = obj.get("metadata") or {}
    return meta.get("labels"), meta.get("annotations"), obj.get("spec")


def _refusal(err: client.ApiException, name: str) -> ClusterRefused:
    try:
        message = json.loads(err.body or "")["message"]
    except (TypeError, ValueError, KeyError):
        message = err.reason
    return ClusterRefused(f"{SINGULAR}/{name}: {message}")


def list_connections(api: client.ApiClient, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    try:
        found: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=selector
        )
    except client.ApiException as err:
        raise _refusal(err, "*") from err
    items: list[dict[str, Any]] = found["items"]
    return items


def _refuse_takeover(live: Mapping[str, Mapping[str, Any]], imported: Imported) -> None:
    # Names join app and service with '-', so app a-b's service c and app a's service b-c meet: never take over.
    for desired in imported.connections:
        name, labels = desired["metadata"]["name"], desired["metadata"]["labels"]
        if name not in live:
            continue
        theirs = (live[name].get("metadata") or {}).get("labels") or {}
        if (theirs.get(APP_LABEL), theirs.get(SERVICE_LABEL)) != (labels[APP_LABEL], labels[SERVICE_LABEL]):
            owner = theirs.get(APP_LABEL)
            raise ClusterRefused(
                f"{SINGULAR}/{name} exists and is not app {imported.app}'s service {labels[SERVICE_LABEL]}"
                + (f" (it is app {owner}'s)" if owner else " (it was not imported)")
                + "; delete or rename it first"
            )


def _prune(api: client.ApiClient, namespace: str, imported: Imported, dry_run: bool) -> Iterator[Change]:
    custom = client.CustomObjectsApi(api)
    wanted = {c["metadata"]["name"] for c in imported.connections}
    selector = f"{MANAGED_BY_LABEL}={MANAGER},{APP_LABEL}={imported.app}"
    for obj in sorted(list_connections(api, namespace, selector), key=lambda o: str(o["metadata"]["name"])):
        name = obj["metadata"]["name"]
        if name in wanted:
            continue
        try:
            custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, dry_run="All" if dry_run else None
            )
        except client.ApiException as err:
            if err.status != 404:
                raise _refusal(err, name) from err
        yield Change(name, "pruned")


def apply(api: client.ApiClient, namespace: str, imported: Imported, prune: bool, dry_run: bool) -> Iterator[Change]:
    """Apply every connection with field manager MANAGER, then (with `prune`) delete this app's others; each change
    is reported as it is made, so a refusal part way still shows what was done before it."""
    custom = client.CustomObjectsApi(api)
    live = {obj["metadata"]["name"]: obj for obj in list_connections(api, namespace)}
    _refuse_takeover(live, imported)
    for desired in imported.connections:
        name = desired["metadata"]["name"]
        try:
            result: Any = custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                desired,
                field_manager=MANAGER,
                dry_run="All" if dry_run else None,
                _content_type=APPLY_PATCH,
            )
        except client.ApiException as err:
            raise _refusal(err, name) from err
        before = live.get(name)
        same = before is not None and _owned_part(before) == _owned_part(result)
        yield Change(name, "created" if before is None else "unchanged" if same else "configured")
    if prune:
        yield from _prune(api, namespace, imported, dry_run)
