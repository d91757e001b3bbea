"""Events of connections and PorterRoleSets: a repeat is counted up on the Event already posted, not re-posted.

kopf's own Events are posted anew each time; these keep `count` and `lastTimestamp`, as kubectl describe shows
them ("x3 over 10m"), so a retry loop cannot flood the namespace with Events.

kopf files every Event of a cluster-scoped object with involvedObject.namespace "default"; kubectl
describe looks for involvedObject.namespace "" and shows none. The API server accepts an Event in
"default" whose involvedObject has no namespace, which is what this module posts for those.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache
from kubernetes import client

MAX_MESSAGE = 1024
COMPONENT = "porter-identity"
log = logging.getLogger(__name__)


class Events:
    def __init__(self, api: client.ApiClient, remembered: int = 10_000) -> None:
        self.core = client.CoreV1Api(api)
        # (uid, type, reason, message) -> (namespace, Event name, count) of the last post; bounded, so memory is too
        self.posted: LRUCache[tuple[str, str, str, str], tuple[str, str, int]] = LRUCache(remembered)
        self.lock = threading.Lock()

    def post(self, body: Any, type: str, reason: str, message: str) -> None:
        """Best effort, like kopf's own Events: a failed post is logged, never fails the sync."""
        now = datetime.now(UTC)
        meta = body["metadata"]
        namespace = meta.get("namespace") or None
        key = (str(meta["uid"]), type, reason, message[:MAX_MESSAGE])
        with self.lock:
            seen = self.posted.get(key)
        if seen is not None and self._count_up(seen, now):
            with self.lock:
                self.posted[key] = (seen[0], seen[1], seen[2] + 1)
            return
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=namespace or "default"),
            involved_object=client.V1ObjectReference(
                api_version=body["apiVersion"],
                kind=body["kind"],
                name=meta["name"],
                uid=meta["uid"],
                namespace=namespace,
            ),
            type=type,
            reason=reason,
            message=message[:MAX_MESSAGE],
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=COMPONENT,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            made: Any = self.core.create_namespaced_event(namespace or "default", event)
        except client.ApiException as err:
            log.warning("could not post Event %s: %s", reason, err.reason)
            return
        with self.lock:
            self.posted[key] = (namespace or "default", str(made.metadata.name), 1)

    def _count_up(self, seen: tuple[str, str, int], now: datetime) -> bool:
        """False when the Event is gone (expired, deleted): the caller posts a new one."""
        namespace, name, count = seen
        patch = {"count": count + 1, "lastTimestamp": now.isoformat().replace("+00:00", "Z")}
        try:
            self.core.patch_namespaced_event(name, namespace, patch)
        except client.ApiException as err:
            if err.status != 404:
                log.warning("could not count up Event %s: %s", name, err.reason)
            return False
        return True
