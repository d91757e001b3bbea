"""A list and watch of one kind on a thread, handing each object (or only its metadata) to a callback.

The operator's own informer for connections, their ServiceAccounts and Namespaces: kopf keeps a memory, a worker
and loggers per object and runs its change detection and handler machinery on every event; what the operator needs
of an event is a few dict lookups. Of a ServiceAccount or Namespace it needs only the name, labels and annotations:
PartialObjectMetadata (what client-go's metadata informers use) is a fraction of a whole body."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3

from porter_identity.kube.rest import ApiError, Kube

PARTIAL = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
PAGE = 500
# The API server ends a watch after this long; the watch then continues from the last resourceVersion seen.
WATCH_SECONDS = 300
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0)
log = logging.getLogger(__name__)

# (event type, object or metadata): the type is None for an object found by a list, as kopf's on.event has it.
Deliver = Callable[[str | None, Mapping[str, Any]], None]
WHOLE = "application/json"


class Gone(Exception):
    """410: the resourceVersion is too old to watch from; list again."""


class Watch:
    """List (a page at a time), then watch from the list's resourceVersion; list again after a 410, and then say
    DELETED for what the new list no longer has (as client-go's informers do: a delete during the gap has no event).

    `whole`: deliver whole objects; otherwise each object's metadata only. `listed` is set once the first list
    has been delivered."""

    def __init__(
        self,
        kube: Kube,
        path: str,
        deliver: Deliver,
        stop: threading.Event,
        whole: bool = False,
        paced: Callable[[], None] | None = None,
    ) -> None:
        self.kube, self.path, self.deliver, self.stop, self.whole = kube, path, deliver, stop, whole
        self.paced = paced  # called after each listed page: waits until that page is handled, so pages don't pile up
        self.resource_version = ""
        self.listed = threading.Event()
        # uid -> (name, namespace) of each object now present, to say DELETED after a relist (about 0.2 KB each)
        self._present: dict[str, tuple[str, str]] = {}

    def start(self, name: str) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=name, daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                if not self.resource_version:
                    self.resource_version = self._list()
                    self.listed.set()
                for kind, obj in self._watch():
                    failures = 0
                    self._keep(kind, obj)
                    self.deliver(kind, obj)
            except Gone:
                self.resource_version = ""
            except (ApiError, OSError, urllib3.exceptions.HTTPError, ValueError) as err:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning(f"watch of {self.path} failed ({err}); again in {delay:.0f} s")
                self.stop.wait(delay)

    def _keep(self, kind: str | None, obj: Mapping[str, Any]) -> None:
        meta = (obj.get("metadata") or {}) if self.whole else obj
        uid = str(meta.get("uid") or "")
        if kind == "DELETED":
            self._present.pop(uid, None)
        elif uid:
            self._present[uid] = (str(meta.get("name") or ""), str(meta.get("namespace") or ""))

    def _list(self) -> str:
        token = ""
        before, self._present = self._present, {}
        while True:
            query = {"limit": str(PAGE)} | ({"continue": token} if token else {})
            page = self.kube.get(self.path, query=query, accept=WHOLE if self.whole else PARTIAL_LIST)
            for item in page.get("items") or []:
                found = item if self.whole else item.get("metadata") or {}
                self._keep(None, found)
                self.deliver(None, found)
            if self.paced is not None:
                self.paced()
            listed = page.get("metadata") or {}
            token = str(listed.get("continue") or "")
            if not token:
                for uid, (name, namespace) in before.items():
                    if uid not in self._present:
                        meta = {"uid": uid, "name": name, "namespace": namespace}
                        self.deliver("DELETED", {"metadata": meta} if self.whole else meta)
                return str(listed.get("resourceVersion") or "")

    def _watch(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self.resource_version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        answer = self.kube.pool.request(
            "GET",
            f"{self.kube.server}{self.path}?{urlencode(query)}",
            headers={"Accept": WHOLE if self.whole else PARTIAL, **self.kube.auth_headers()},
            preload_content=False,
            timeout=urllib3.Timeout(connect=30, read=WATCH_SECONDS + 30),
            retries=False,
        )
        try:
            if answer.status == 410:
                raise Gone()
            if answer.status >= 400:
                raise ApiError(answer.status, answer.reason or "", answer.data.decode(errors="replace")[:200])
            buffer = b""
            for chunk in answer.stream(64 * 1024):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield from self._event(json.loads(line))
                if self.stop.is_set():
                    return
        finally:
            answer.release_conn()

    def _event(self, event: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
        kind, obj = str(event.get("type")), event.get("object") or {}
        meta = obj.get("metadata") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ApiError(int(obj.get("code") or 500), str(obj.get("reason") or ""), str(obj.get("message") or ""))
        if meta.get("resourceVersion"):
            self.resource_version = str(meta["resourceVersion"])
        if kind != "BOOKMARK":
            yield kind, obj if self.whole else meta
