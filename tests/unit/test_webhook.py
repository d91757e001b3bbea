"""The webhook's own server: AdmissionReview in, the same answers as the checks, and a certificate that reloads."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from porter_dev.admission import write_webhook_certificate
from porter_identity import webhook
from porter_identity.engine.namespaces import Namespaces
from porter_identity.reconcile import shard
from tests.unit.test_admission import ALLOWED, DENIED, FINALIZER, memo, sic


def review(obj: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": operation, "namespace": "shop", "object": obj, "oldObject": old},
    }


async def post(app_memo: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with TestClient(TestServer(webhook.app(app_memo))) as http:
        answer = await http.post(f"/{path}", json=body)
        assert answer.status == 200
        found: dict[str, Any] = await answer.json()
        return found


def patched(response: dict[str, Any]) -> list[dict[str, Any]] | None:
    if "patch" not in response:
        return None
    assert response["patchType"] == "JSONPatch"
    found: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return found


def test_an_allowed_connection_is_admitted_with_its_uid_and_the_finalizer() -> None:
    found = asyncio.run(post(memo(), "validate-connection", review(dict(sic(ALLOWED)))))
    assert found["kind"] == "AdmissionReview"
    assert found["response"]["uid"] == "u-1" and found["response"]["allowed"] is True
    assert patched(found["response"]) == [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]


def test_the_finalizer_is_appended_to_others_and_never_twice() -> None:
    other = asyncio.run(post(memo(), "validate-connection", review(dict(sic(ALLOWED, finalizers=["x.io/keep"])))))
    assert patched(other["response"]) == [{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]
    ours = asyncio.run(post(memo(), "validate-connection", review(dict(sic(ALLOWED, finalizers=[FINALIZER])))))
    assert ours["response"]["allowed"] is True and patched(ours["response"]) is None


def test_only_a_create_gets_the_finalizer() -> None:
    """An update's object keeps what it has: the runner adds a missing finalizer before it links."""
    old = dict(sic(ALLOWED))
    new = dict(sic({**ALLOWED, "aws": {"role": "shop-web"}}))
    found = asyncio.run(post(memo(), "validate-connection", review(new, "UPDATE", old)))
    assert found["response"]["allowed"] is True and patched(found["response"]) is None


def test_no_finalizer_where_this_instance_does_not_serve() -> None:
    """A namespace outside `--namespace`, or one this shard's selector does not match (a standby of a shard knows no
    labels): a finalizer there would hold a delete that no runner of this instance ever takes off."""
    elsewhere = memo()
    elsewhere.namespaces = ["billing"]
    found = asyncio.run(post(elsewhere, "validate-connection", review(dict(sic(ALLOWED)))))
    assert found["response"]["allowed"] is True and patched(found["response"]) is None
    sharded = memo()
    sharded.shard = shard.parse("porter.run/shard=a")
    sharded.namespaces_known = Namespaces()
    found = asyncio.run(post(sharded, "validate-connection", review(dict(sic(ALLOWED)))))
    assert patched(found["response"]) is None
    sharded.namespaces_known.labels["shop"] = [{"porter.run/shard": "a"}]
    found = asyncio.run(post(sharded, "validate-connection", review(dict(sic(ALLOWED)))))
    assert patched(found["response"]) == [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]


def test_a_roleset_is_never_patched() -> None:
    body = {"metadata": {"name": "r"}, "spec": {"accountId": "123456789012"}}
    found = asyncio.run(post(memo(), "validate-roleset", review(body)))
    assert "patch" not in found["response"]


def test_a_refusal_carries_the_checks_message_and_code() -> None:
    found = asyncio.run(post(memo(policy=None, live="aws:shop-*"), "validate-connection", review(dict(sic(DENIED)))))
    assert found["response"]["allowed"] is False
    assert found["response"]["status"]["code"] == 403
    assert "not allowed by policy" in found["response"]["status"]["message"]


def test_a_standby_without_the_index_reads_the_namespace_and_admits() -> None:
    """No `allowed_identities` in the memo (a standby): the live annotation decides."""
    standby = memo(policy=None, live="aws:billing-*")
    assert standby.get("allowed_identities") is None
    found = asyncio.run(post(standby, "validate-connection", review(dict(sic(DENIED)))))
    assert found["response"]["allowed"] is True


def test_an_invalid_spec_is_refused_with_422_and_the_field() -> None:
    found = asyncio.run(post(memo(), "validate-connection", review(dict(sic({"serviceAccountName": "app"})))))
    assert found["response"]["allowed"] is False
    assert found["response"]["status"]["code"] == 422


def test_once_draining_every_answer_closes_its_connection() -> None:
    """SIGTERM: the API server must dial again (through the Service, to a replica that stays) rather than reuse a
    kept-alive connection to this one."""

    async def headers() -> tuple[str | None, str | None]:
        application = webhook.app(memo())
        async with TestClient(TestServer(application)) as http:
            before = await http.post("/validate-connection", json=review(dict(sic(ALLOWED))))
            webhook.drain(application)
            after = await http.post("/validate-connection", json=review(dict(sic(ALLOWED))))
            assert (await after.json())["response"]["allowed"] is True  # still answered
            return before.headers.get("Connection"), after.headers.get("Connection")

    before, after = asyncio.run(headers())
    assert before != "close" and after == "close"


def test_roleset_path_is_served() -> None:
    body = review({"metadata": {"name": "r"}, "spec": {"accountId": "nope"}})
    found = asyncio.run(post(memo(), "validate-roleset", body))
    assert found["response"]["allowed"] is False
    assert found["response"]["status"]["code"] == 422


def _presented(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    import socket

    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_a_rotated_secret_is_served_without_a_restart(tmp_path: Path) -> None:
    """As the kubelet updates a Secret volume: a new directory, then the `..data` symlink swapped atomically."""
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir(), second.mkdir()
    write_webhook_certificate(first)
    write_webhook_certificate(second)
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "..data").symlink_to(first)
    for name in ("tls.crt", "tls.key"):
        (mount / name).symlink_to(Path("..data") / name)
    certificate = webhook.Certificate(mount)

    async def scenario() -> tuple[bytes, bytes, bool]:
        from aiohttp import web

        runner = web.AppRunner(web.Application())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certificate.context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        before = await asyncio.to_thread(_presented, port)
        unchanged = certificate.reload_if_changed()
        swap = mount / "..data_tmp"
        swap.symlink_to(second)
        os.replace(swap, mount / "..data")
        assert certificate.reload_if_changed()
        after = await asyncio.to_thread(_presented, port)
        await runner.cleanup()
        return before, after, unchanged

    before, after, unchanged = asyncio.run(scenario())
    assert not unchanged
    assert before != after
    assert ssl.DER_cert_to_PEM_cert(after).strip() == (second / "tls.crt").read_text().strip()


def test_a_half_written_pair_keeps_the_old_certificate(tmp_path: Path) -> None:
    write_webhook_certificate(tmp_path)
    certificate = webhook.Certificate(tmp_path)
    (tmp_path / "tls.key").write_text("not a key")
    assert not certificate.reload_if_changed()


def test_a_review_past_aiohttps_default_size_is_still_answered() -> None:
    """A mutating webhook sees an object before the API server checks its size and schema: a 2 MiB spec is refused
    with its field's message, not with a 413 that the API server reports as a failed call."""
    huge = dict(sic({"serviceAccountName": "a" * (2 * 1024 * 1024), "aws": {"role": "shop-api"}}))
    found = asyncio.run(post(memo(), "validate-connection", review(huge)))
    assert found["response"]["allowed"] is False
    assert found["response"]["status"]["message"].startswith("spec.serviceAccountName: String should have at most")
