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
import time
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache

from porter_identity.kube.rest import ApiError, Kube, path

MAX_MESSAGE = 1024
COMPONENT = "porter-identity"
log = logging.getLogger(__name__)


class Events:
    def __init__(self, kube: Kube, remembered: int = 10_000) -> None:
        self.kube = kube
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
        stamp = _timestamp(now)
        name = _name(str(meta["name"]))
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace or "default"},
            "involvedObject": {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "name": meta["name"],
                "uid": meta["uid"],
                **({"namespace": namespace} if namespace else {}),
            },
            "type": type,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.kube.post(path("", "v1", "events", namespace or "default"), event, answer_wanted=False)
        except ApiError as err:
            log.warning("could not post Event %s: %s", reason, err.reason)
            return
        with self.lock:
            self.posted[key] = (namespace or "default", name, 1)

    def _count_up(self, seen: tuple[str, str, int], now: datetime) -> bool:
        """False when the Event is gone (expired, deleted): the caller posts a new one."""
        namespace, name, count = seen
        patch = {"count": count + 1, "lastTimestamp": _timestamp(now)}
        try:
            self.kube.patch(path("", "v1", "events", namespace, name), patch, answer_wanted=False)
        except ApiError as err:
            if err.status != 404:
                log.warning("could not count up Event %s: %s", name, err.reason)
            return False
        return True


def _name(involved: str) -> str:
    """As client-go's recorder names an Event (`<object>.<unix nanoseconds in hex>`): known before the post, so its
    answer need not be parsed. A name at the 253-character limit is cut to leave room for the suffix."""
    suffix = f".{time.time_ns():x}"
    return involved[: 253 - len(suffix)].rstrip(".-") + suffix


def _timestamp(now: datetime) -> str:
    """metav1.Time: RFC 3339 in UTC, whole seconds."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def post_on_service_account(
    kube: Kube, events: Events, namespace: str, name: str, type: str, reason: str, message: str
) -> None:
    """The ServiceAccount a link serves is the object an admin looks at; nothing is posted when it is gone too."""
    try:
        found: Any = kube.get(path("", "v1", "serviceaccounts", namespace, name))
    except ApiError:
        return
    meta = found["metadata"]
    body = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": meta["name"], "namespace": namespace, "uid": meta["uid"]},
    }
    events.post(body, type, reason, message)
