"""Liveness and readiness: the decisions, and the real HTTP endpoints a kubelet would probe."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from porter_dev.controlplane import free_port
from porter_identity.health import Health, liveness, readiness


def test_alive_while_the_loop_ticks() -> None:
    assert liveness(lag=1.0, stall_seconds=30) is None


def test_a_stalled_loop_fails_liveness_saying_how_long() -> None:
    assert liveness(lag=45.2, stall_seconds=30) == "event loop stalled: no heartbeat for 45s (limit 30s)"


def test_not_ready_before_startup() -> None:
    assert readiness(False, [], []) == "starting: settings and cloud clients not ready yet"


def test_not_ready_until_every_listed_connection_is_indexed() -> None:
    assert readiness(True, ["a", "b", "c"], ["a"]) == "warming up: 2 connections not indexed yet"
    assert readiness(True, ["a", "b"], ["a", "b", "new"]) is None
    assert readiness(True, [], []) is None


def test_readiness_latches_once_true() -> None:
    answers = iter(["warming up: 1 connections not indexed yet", None, "would not be asked"])
    health = Health(30, lambda: next(answers))
    assert health.ready() is not None
    assert health.ready() is None
    assert health.ready() is None, "a ready operator stays ready: readiness is about warm caches, not load"


def test_a_probe_during_a_running_check_does_not_start_another() -> None:
    import threading

    started, release, calls = threading.Event(), threading.Event(), []

    def slow() -> str | None:
        calls.append(1)
        started.set()
        release.wait(10)
        return None

    health = Health(30, slow)
    first = threading.Thread(target=health.ready)
    first.start()
    assert started.wait(10)
    assert health.ready() == "warming up: the previous readiness check is still running"
    release.set()
    first.join(10)
    assert (health.ready(), len(calls)) == (None, 1)  # latched by the first check, no second one


def test_an_api_error_while_warming_up_is_not_ready_not_a_crash() -> None:
    def failing() -> str | None:
        raise ConnectionRefusedError

    assert Health(30, failing).ready() == "warming up: ConnectionRefusedError"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode().strip()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode().strip()


@pytest.fixture
def serve() -> Callable[[Health], int]:
    servers = []

    def start(health: Health) -> int:
        port = free_port()
        servers.append(health.serve(port))
        return port

    yield start  # type: ignore[misc]
    for server in servers:
        server.shutdown()


def test_endpoints_answer_200_or_503_with_the_reason(serve: Callable[[Health], int]) -> None:
    health = Health(stall_seconds=30, ready_check=lambda: "warming up: 3 connections not indexed yet")
    health.last_tick -= 60  # no heartbeat task runs here: the loop's last tick was a minute ago
    port = serve(health)
    status, text = _get(port, "/healthz")
    assert status == 503 and text.startswith("event loop stalled")
    assert _get(port, "/readyz") == (503, "warming up: 3 connections not indexed yet")
    assert _get(port, "/metrics")[0] == 404

    fresh = Health(stall_seconds=30, ready_check=lambda: None)
    port = serve(fresh)
    assert _get(port, "/healthz") == (200, "ok")
    assert _get(port, "/readyz") == (200, "ok")
