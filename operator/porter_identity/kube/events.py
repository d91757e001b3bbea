"""Events posted outside kopf's handlers (the drift sweep) and for cluster-scoped objects.

kopf files every Event of a cluster-scoped object with involvedObject.namespace "default"; kubectl
describe looks for involvedObject.namespace "" and shows none. The API server accepts an Event in
"default" whose involvedObject has no namespace, which is what this module posts for those.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

MAX_MESSAGE = 1024
COMPONENT = "porter-identity"
log = logging.getLogger(__name__)


class Events:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    def post(self, body: Any, type: str, reason: str, message: str) -> None:
        """Best effort, like kopf's own Events: a failed post is logged, never fails the sync."""
        now = datetime.now(UTC)
        meta = body["metadata"]
        namespace = meta.get("namespace") or None
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
            self.core.create_namespaced_event(namespace or "default", event)
        except client.ApiException as err:
            log.warning("could not post Event %s: %s", reason, err.reason)
