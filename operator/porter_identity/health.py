"""Liveness (/healthz) and readiness (/readyz), answered from a thread of their own so a stuck event loop shows."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEARTBEAT_SECONDS = 1.0


def liveness(lag: float, stall_seconds: float) -> str | None:
    """None when alive; otherwise why not. The loop runs every watch, patch and handler: if it stops
    ticking, nothing is reconciled, and only a restart helps."""
    if lag > stall_seconds:
        return f"event loop stalled: no heartbeat for {lag:.0f}s (limit {stall_seconds:.0f}s)"
    return None


def readiness(started: bool, listed: Iterable[str], indexed: Iterable[str]) -> str | None:
    """None when ready: startup done and every connection that existed when we looked is in the in-memory index
    (kopf fills indexes from its first full listing before any handler runs)."""
    if not started:
        return "starting: settings and cloud clients not ready yet"
    missing = set(listed) - set(indexed)
    if missing:
        return f"warming up: {len(missing)} connections not indexed yet"
    return None


class Health:
    """State the probes read: the event loop's last heartbeat and a readiness check that latches once true."""

    def __init__(self, stall_seconds: float, ready_check: Callable[[], str | None]) -> None:
        self.stall_seconds = stall_seconds
        self.last_tick = time.monotonic()
        self._ready_check = ready_check
        self._ready = False
        # One check at a time: at 10,000 connections a check's list takes longer than a probe waits, and probes
        # that each started another list piled up and starved the resync they were waiting for.
        self._checking = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def start_heartbeat(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def alive(self) -> str | None:
        return liveness(time.monotonic() - self.last_tick, self.stall_seconds)

    def ready(self) -> str | None:
        if self._ready:
            return None
        if not self._checking.acquire(blocking=False):
            return "warming up: the previous readiness check is still running"
        try:
            problem = self._ready_check()
        except Exception as err:  # an API hiccup while warming up means "not yet", not a crash
            return f"warming up: {type(err).__name__}"
        finally:
            self._checking.release()
        self._ready = problem is None
        return problem

    def serve(self, port: int) -> ThreadingHTTPServer:
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                checks: dict[str, Callable[[], str | None]] = {"/healthz": health.alive, "/readyz": health.ready}
                check = checks.get(self.path)
                if check is None:
                    self._answer(404, "not found")
                    return
                problem = check()
                self._answer(503 if problem else 200, problem or "ok")

            def _answer(self, status: int, text: str) -> None:
                body = f"{text}\n".encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the prober gave up waiting (a busy resync): no traceback on stderr for that

            def log_message(self, format: str, *args: Any) -> None:
                """Probes every few seconds are not news."""

        server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
        return server
