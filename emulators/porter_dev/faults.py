"""Fault injection, request quotas, call accounting and the HTTP handler shared by the cloud emulators.

Quotas are token buckets per access (read/write), as ARM documents its throttling ("Understand how Azure
Resource Manager throttles requests": per-subscription buckets of 250 reads refilled at 25/s and 200 writes
at 10/s); a call over quota is answered as the cloud answers throttling (the emulator's `throttle` fault:
ARM 429 with Retry-After, AWS ThrottlingException, gRPC RESOURCE_EXHAUSTED). Off unless a plan sets them.

Eventual consistency: a plan's `propagationSeconds` is how long a write takes to reach the services that use it
(each emulator's docstring says which writes and which services, and the cloud's page it follows). The writing
service's own reads see the write at once; the others see it `propagationSeconds` after it. Writes are stamped
whatever the plan, so a lag set after a write applies to it too; 0 (the default) makes everything visible."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Rule:
    """Fail calls matching service/operation ('*' matches all): the next `count` of them, or at `rate`."""

    fault: str  # "throttle" | "unavailable" | "invalid" (sts:AssumeRole: STS's refusal of the ExternalId)
    service: str = "*"
    operation: str = "*"
    count: int | None = None
    rate: float | None = None

    def matches(self, service: str, operation: str) -> bool:
        return self.service in ("*", service) and self.operation in ("*", operation)


_READ_VERBS = ("Get", "List", "Describe")


def access_of(operation: str) -> str:
    """`read` for Get/List/Describe operations (AWS `GetRole`, ARM `..._List`, gRPC `GetIamPolicy`), else `write`."""
    verb = operation.rsplit("_", 1)[-1]
    return "read" if verb.startswith(_READ_VERBS) or operation.startswith(_READ_VERBS) else "write"


@dataclass
class Quota:
    """A token bucket: `burst` calls, refilled at `per_second`; `access` is read, write or '*'."""

    per_second: float
    burst: float
    access: str = "*"
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def take(self, access: str) -> bool:
        if self.access not in ("*", access):
            return True
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Faults:
    """Thread-safe fault plan plus a count of every call served, by `service:Operation`."""

    latency_ms: float = 0.0
    rules: list[Rule] = field(default_factory=list)
    quotas: list[Quota] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    # Calls by caller (the SDK's app id in its User-Agent, e.g. botocore's AWS_SDK_UA_APP_ID), then service:Operation.
    by_caller: dict[str, Counter[str]] = field(default_factory=dict)
    seed: int | None = None
    propagation_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _random: random.Random = field(default_factory=random.Random)

    def configure(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.latency_ms = float(body.get("latencyMs", 0))
            self.propagation_seconds = max(0.0, float(body.get("propagationSeconds", 0)))
            self.rules = [
                Rule(
                    fault=r["fault"],
                    service=r.get("service", "*"),
                    operation=r.get("operation", "*"),
                    count=r.get("count"),
                    rate=r.get("rate"),
                )
                for r in body.get("rules", [])
            ]
            self.quotas = [
                Quota(per_second=float(q["perSecond"]), burst=float(q["burst"]), access=q.get("access", "*"))
                for q in body.get("quotas", [])
            ]
            if "seed" in body:
                self._random.seed(body["seed"])

    def reset(self) -> None:
        with self._lock:
            self.latency_ms = 0.0
            self.propagation_seconds = 0.0
            self.rules = []
            self.quotas = []
            self.calls.clear()
            self.injected.clear()
            self.by_caller.clear()

    def propagated(self, written_at: float | None, now: float | None = None) -> bool:
        """Whether a write made at `written_at` (time.monotonic(); None: before any stamp) is seen by the other
        services yet."""
        if written_at is None:
            return True
        with self._lock:
            lag = self.propagation_seconds
        return (time.monotonic() if now is None else now) >= written_at + lag

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "injected": dict(self.injected),
                "byCaller": {caller: dict(calls) for caller, calls in self.by_caller.items()},
            }

    def on_call(self, service: str, operation: str, caller: str = "") -> str | None:
        """Record a call, apply latency, and return the fault to inject, if any."""
        with self._lock:
            self.calls[f"{service}:{operation}"] += 1
            if caller:
                self.by_caller.setdefault(caller, Counter())[f"{service}:{operation}"] += 1
            latency = self.latency_ms
            fault = None
            access = access_of(operation)
            if not all(quota.take(access) for quota in self.quotas):
                fault = "throttle"
            for rule in self.rules if fault is None else []:
                if not rule.matches(service, operation):
                    continue
                if rule.count is not None and rule.count > 0:
                    rule.count -= 1
                    fault = rule.fault
                    break
                if rule.rate is not None and self._random.random() < rule.rate:
                    fault = rule.fault
                    break
            if fault:
                self.injected[f"{service}:{operation}:{fault}"] += 1
        if latency:
            time.sleep(latency / 1000.0)
        return fault


_APP_ID = re.compile(r"(?:^| )app/([A-Za-z0-9_.-]+)")


def caller_of(user_agent: str) -> str:
    """The app id an SDK puts in its User-Agent (`app/<id>`), or empty."""
    found = _APP_ID.search(user_agent)
    return found.group(1) if found else ""


def serve(app: Any, host: str, port: int, tls: tuple[str, str] | None = None) -> None:
    """Serve a WSGI app until the process is stopped, with HTTP/1.1 keep-alive as the real endpoints have, so SDK
    calls reuse their connections (werkzeug's development server closes every one: each call then paid a TCP,
    and for ARM a TLS, handshake that no cloud charges). `tls` is (certificate file, key file)."""
    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    server = wsgi.Server((host, port), app, numthreads=32, request_queue_size=256)
    if tls is not None:
        server.ssl_adapter = BuiltinSSLAdapter(*tls)
    print(f"serving on {'https' if tls else 'http'}://{host}:{port}", flush=True)
    server.safe_start()
