"""kopf's watch events reach the handlers without managedFields, and with everything else as it was."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import watching

from porter_identity.runtime import kopf_internals as watchstream

BODY: dict[str, Any] = {
    "apiVersion": "identity.porter.run/v1alpha1",
    "kind": "ServiceIdentityConnection",
    "metadata": {
        "name": "api",
        "namespace": "team-a",
        "uid": "7a190b0b",
        "resourceVersion": "215",
        "finalizers": ["identity.porter.run/finalizer"],
        "annotations": {"identity.porter.run/reconcile-policy": "skip"},
        "managedFields": [{"manager": "kopf", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
    },
    "spec": {"serviceAccountName": "api", "aws": {"role": "app"}},
    "status": {"observedGeneration": 1},
}


def test_managed_fields_are_dropped_and_nothing_else() -> None:
    event = {"type": "MODIFIED", "object": copy.deepcopy(BODY)}
    lean = watchstream.lean(event)
    expected = copy.deepcopy(BODY)
    del expected["metadata"]["managedFields"]
    assert lean == {"type": "MODIFIED", "object": expected}


@pytest.mark.parametrize(
    "event",
    [
        watching.Bookmark.LISTED,
        {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
        {"type": None, "object": {"metadata": None}},
    ],
)
def test_bookmarks_errors_and_odd_bodies_pass_unchanged(event: Any) -> None:
    before = copy.deepcopy(event)
    assert watchstream.lean(event) == before


def test_the_wrapped_stream_yields_every_event_in_order_lean(monkeypatch: pytest.MonkeyPatch) -> None:
    async def upstream(**kwargs: Any) -> AsyncIterator[Any]:
        assert kwargs == {"namespace": "team-a"}
        yield {"type": None, "object": copy.deepcopy(BODY)}
        yield watching.Bookmark.LISTED
        yield {"type": "ADDED", "object": copy.deepcopy(BODY)}

    monkeypatch.setattr(watchstream, "_infinite_watch", upstream)

    async def collect() -> list[Any]:
        return [event async for event in watchstream.infinite_watch(namespace="team-a")]

    events = asyncio.run(collect())
    assert [e if isinstance(e, watching.Bookmark) else e["type"] for e in events] == [
        None,
        watching.Bookmark.LISTED,
        "ADDED",
    ]
    assert all("managedFields" not in e["object"]["metadata"] for e in events if isinstance(e, dict))


def test_install_makes_kopfs_watcher_read_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watching, "infinite_watch", watching.infinite_watch)  # restored after the test
    watchstream.install()
    from kopf._core.reactor import queueing

    assert queueing.watching.infinite_watch is watchstream.infinite_watch
