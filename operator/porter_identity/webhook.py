"""The admission webhook's HTTPS server, on every replica; its certificate is reloaded when its files change."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web

from porter_identity import metrics
from porter_identity.handlers import admission

log = logging.getLogger("porter_identity.webhook")
RELOAD_SECONDS = 2.0
MAX_REVIEW_BYTES = 8 * 1024 * 1024  # an AdmissionReview of a 3 MiB object, with its oldObject on an update
DRAINING = web.AppKey("draining", threading.Event)  # set once, never cleared: the process is on its way out

Validate = Callable[..., None]
Mutate = Callable[..., list[dict[str, Any]] | None]


class Certificate:
    """tls.crt/tls.key of a mounted Secret. The kubelet swaps a Secret volume's files atomically (a symlink to a new
    directory), so a change shows as a new inode: then the context loads the new pair and every new handshake
    presents it. A pair that does not load (a half-finished write) keeps the old one until the next look."""

    def __init__(self, directory: Path) -> None:
        self.crt, self.key = directory / "tls.crt", directory / "tls.key"
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._stamp = self._stat()
        self.context.load_cert_chain(self.crt, self.key)

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in (os.stat(self.crt), os.stat(self.key)))

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            self.context.load_cert_chain(self.crt, self.key)
        except (OSError, ssl.SSLError) as err:
            log.warning("webhook certificate not reloaded yet", extra={"error": type(err).__name__})
            return False
        self._stamp = stamp
        log.info("webhook certificate reloaded", extra={"file": str(self.crt)})
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            self.reload_if_changed()


def answer(uid: str, refusal: kopf.AdmissionError | None, patch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview response; an admitted object may come with a JSON patch."""
    response: dict[str, Any] = {"uid": uid, "allowed": refusal is None}
    if refusal is not None:
        response["status"] = {"message": str(refusal), "code": refusal.code or 500}
    elif patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def app(memo: kopf.Memo) -> web.Application:
    # A connection's webhook is a mutating one (the chart's MutatingWebhookConfiguration): it checks, then adds
    # the finalizer at create. PorterRoleSets' only checks.
    routes: dict[str, tuple[Validate, Mutate | None]] = {
        admission.CONNECTION_PATH: (admission.validate_connection, admission.finalizer_patch),
        admission.ROLESET_PATH: (admission.validate_roleset, None),
    }
    # The API server sends up to its 3 MiB request limit: a mutating webhook sees an object before the schema's
    # limits are checked, and aiohttp's default 1 MiB would answer 413 ("failed calling webhook") instead.
    application = web.Application(client_max_size=MAX_REVIEW_BYTES)
    application[DRAINING] = threading.Event()
    for path, (validate, mutate) in routes.items():
        application.router.add_post(f"/{path}", partial(_review, memo, validate, mutate))
    return application


async def _review(memo: kopf.Memo, validate: Validate, mutate: Mutate | None, request: web.Request) -> web.Response:
    review = await request.json()
    started = time.perf_counter()
    req: dict[str, Any] = review.get("request") or {}
    kwargs = {
        "operation": req.get("operation"),
        "old": req.get("oldObject"),
        "new": req.get("object"),
        "namespace": req.get("namespace"),
        "memo": memo,
        # The leader's in-memory index; a standby has none and reads the Namespace when the answer depends on it.
        "allowed_identities": memo.get("allowed_identities"),
    }
    refusal: kopf.AdmissionError | None = None
    patch: list[dict[str, Any]] | None = None
    try:
        try:
            validate(**kwargs, may_read=False)
        except admission.NeedsRead:
            # Off the event loop: the Namespace, the budget's list or an Azure identity is read first.
            await asyncio.get_running_loop().run_in_executor(admission.READS, partial(validate, **kwargs))
        patch = mutate(**kwargs) if mutate is not None else None
    except kopf.AdmissionError as err:
        refusal = err
    except Exception as err:  # the API server applies the failure policy to a 500; say which check broke
        log.exception("admission check failed", extra={"error": type(err).__name__})
        refusal = kopf.AdmissionError(f"the operator could not check this object: {type(err).__name__}", code=500)
    response = web.json_response(answer(str(req.get("uid", "")), refusal, patch))
    result = "allowed" if refusal is None else "error" if refusal.code == 500 else "denied"
    kind = str((req.get("kind") or {}).get("kind") or "").lower()
    metrics.ADMISSION_SECONDS.labels(kind, result).observe(time.perf_counter() - started)
    if request.app[DRAINING].is_set():
        response.force_close()
    return response


def drain(application: web.Application) -> None:
    """On SIGTERM. The API server keeps its connections to a webhook alive, and a Service's connection stays with
    the pod it reached whatever the endpoints say since, so it would go on sending here until the process exits
    and then see EOF or a reset. From now on every answer says `Connection: close`: the API server dials again,
    and the Service sends it to a replica that stays. An idle connection is not closed from this side: a request
    the API server is sending at that moment would fail with EOF (it does not retry a POST)."""
    application[DRAINING].set()


async def serve(memo: kopf.Memo, port: int, cert_dir: Path) -> web.AppRunner:
    certificate = Certificate(cert_dir)
    runner = web.AppRunner(app(memo), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, port=port, ssl_context=certificate.context).start()
    memo.certificate_watch = asyncio.get_running_loop().create_task(certificate.watch())
    return runner
