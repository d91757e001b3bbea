"""kube/watch.py against the real API server: a paged list, then the watch, metadata only; a 410 means list again."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import kopf
import pytest
from kubernetes import client

from porter_identity.engine.namespaces import Namespaces
from porter_identity.handlers import namespaces
from porter_identity.kube import rest, watch
from porter_identity.kube.rest import Kube
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str | None, meta: Mapping[str, Any]) -> None:
        with self.lock:
            self.events.append((kind, dict(meta)))

    def of(self, name: str) -> list[str | None]:
        with self.lock:
            return [kind for kind, meta in self.events if meta.get("name") == name]


@pytest.fixture
def space(api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"t-watch-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    for i in range(7):  # more than a page of 3 below
        core.create_namespaced_service_account(
            name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=f"a{i}"))
        )
    yield name
    core.delete_namespace(name)


def test_listed_in_pages_then_watched_with_metadata_only(
    kube: Kube, api: client.ApiClient, space: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "PAGE", 3)
    seen, stop = Seen(), threading.Event()
    watcher = watch.Watch(kube, rest.path("", "v1", "serviceaccounts", space), seen, stop)
    watcher.start("test watch")
    try:
        wait_for(lambda: all(seen.of(f"a{i}") == [None] for i in range(7)), 10, what="all seven listed")
        core = client.CoreV1Api(api)
        core.create_namespaced_service_account(space, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="b")))
        core.patch_namespaced_service_account("b", space, {"metadata": {"annotations": {"x": "1"}}})
        core.delete_namespaced_service_account("b", space)
        wait_for(lambda: seen.of("b") == ["ADDED", "MODIFIED", "DELETED"], 10, what="b's three events")
        with seen.lock:
            modified = next(meta for kind, meta in seen.events if meta.get("name") == "b" and kind == "MODIFIED")
        assert modified["annotations"] == {"x": "1"}
        # The server answers in PartialObjectMetadata, as the watch asks: names and annotations, no object body.
        listed = kube.get(
            rest.path("", "v1", "serviceaccounts", space), query={"limit": "1"}, accept=watch.PARTIAL_LIST
        )
        assert listed["kind"] == "PartialObjectMetadataList" and set(listed["items"][0]) == {
            "kind",
            "apiVersion",
            "metadata",
        }
    finally:
        stop.set()


def test_a_gone_version_lists_again(kube: Kube, space: str) -> None:
    """The 410 path on its own: an ERROR event with code 410 raises Gone, which run() turns into a new list."""
    watcher = watch.Watch(kube, rest.path("", "v1", "serviceaccounts", space), Seen(), threading.Event())
    with pytest.raises(watch.Gone):
        list(watcher._event({"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}))
    bookmark = list(watcher._event({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}))
    assert bookmark == [] and watcher.resource_version == "42"


def test_a_relist_says_deleted_for_what_it_no_longer_finds(kube: Kube, space: str) -> None:
    """After a 410 the watch lists again; an object deleted in the gap has no event of its own, so the new list's
    absence is its DELETED (as client-go's informers replace their store)."""
    seen = Seen()
    watcher = watch.Watch(kube, rest.path("", "v1", "serviceaccounts", space), seen, threading.Event())
    watcher._list()
    assert all(seen.of(f"a{i}") == [None] for i in range(7))
    watcher._present["gone-uid"] = ("gone", space)
    watcher._list()
    assert seen.of("gone") == ["DELETED"]
    assert all(seen.of(f"a{i}") == [None, None] for i in range(7))  # listed again, not deleted


def test_a_namespaces_relist_asks_as_the_missed_events_would_have(
    kube: Kube, api: client.ApiClient, space: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first list only records annotations; a list again after a 410 asks for what changed in the gap: a
    namespace that appeared, an allow annotation that changed (an admin's withdrawal acts at once, not at the
    next sweep). Unchanged namespaces ask nothing."""
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(namespaces, "namespace_appeared", lambda memo, name: asked.append(("appeared", name)))
    monkeypatch.setattr(namespaces, "allow_annotation_changed", lambda memo, name: asked.append(("changed", name)))
    monkeypatch.setattr(watch.Watch, "start", lambda self, name: None)  # this test lists by hand, as run() would
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    memo = kopf.Memo(kube=kube, namespaces_known=Namespaces())
    core = client.CoreV1Api(api)
    appeared = f"{space}-new"
    try:
        watcher = namespaces.watch_namespaces(memo, loop, threading.Event())
        watcher._list()
        watcher.listed.set()
        assert not [a for a in asked if a[1] in (space, "default", "kube-system")]
        core.patch_namespace(space, {"metadata": {"annotations": {"identity.porter.run/allowed-identities": "aws:x"}}})
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=appeared)))
        watcher._list()
        # Other tests make namespaces meanwhile: only these four are looked at (two changed, two did not).
        mine = {space, appeared, "default", "kube-system"}

        def asks() -> list[tuple[str, str]]:
            return sorted(a for a in list(asked) if a[1] in mine)

        wait_for(lambda: len(asks()) >= 2, 10, what="the relist's asks")
        assert asks() == [("appeared", appeared), ("changed", space)]
        assert memo.namespaces_known.allowed_identities[space] == ["aws:x"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        core.delete_namespace(appeared)
