"""Helpers for e2e tests: create, read and wait on ServiceIdentityConnections through the real API server."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from porter_dev import admission
from porter_dev.controlplane import ControlPlane, free_port
from porter_dev.processes import AWS_ACCOUNT_ID, AWS_REGION, Operator
from tests.conftest import EKS_CLUSTER, GROUP, PLURAL, VERSION, wait_for


def roleset(
    name: str, secret: tuple[str, str], access_role: str = "porter-access-manager", **spec: Any
) -> dict[str, Any]:
    """A PorterRoleSet for the emulated account and the e2e cluster; `secret` is the ExternalId's (namespace, name)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PorterRoleSet",
        "metadata": {"name": name},
        "spec": {
            "accountId": AWS_ACCOUNT_ID,
            "region": AWS_REGION,
            "clusterName": EKS_CLUSTER,
            "managementPrincipalArn": f"arn:aws:iam::{AWS_ACCOUNT_ID}:root",
            "access": {
                "roleArn": f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/{access_role}",
                "externalIdSecretRef": {"namespace": secret[0], "name": secret[1]},
            },
            **spec,
        },
    }


def connection(name: str, service_account: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceIdentityConnection",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": service_account, **spec},
    }


class Connections:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, name: str, service_account: str, **spec: Any) -> dict[str, Any]:
        body = connection(name, service_account, **spec)
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return created

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return found

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    @staticmethod
    def condition_of(obj: dict[str, Any] | None, kind: str = "Ready") -> dict[str, Any] | None:
        for cond in ((obj or {}).get("status") or {}).get("conditions", []):
            if cond["type"] == kind:
                found: dict[str, Any] = cond
                return found
        return None

    def condition(self, name: str, kind: str = "Ready") -> dict[str, Any] | None:
        return self.condition_of(self.get(name), kind)

    def wait_ready(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            obj = self.get(name)  # one read, so condition and generation belong together
            cond = self.condition_of(obj)
            status = (obj or {}).get("status") or {}
            current = obj is not None and status.get("observedGeneration") == obj["metadata"]["generation"]
            return obj if current and cond is not None and cond["status"] == "True" else None

        result: dict[str, Any] = wait_for(ready, timeout, what=f"{self.namespace}/{name} Ready")
        return result

    def wait_reason(self, name: str, reason: str, timeout: float = 30.0) -> dict[str, Any]:
        def has_reason() -> dict[str, Any] | None:
            cond = self.condition(name)
            return cond if cond and cond["reason"] == reason else None

        result: dict[str, Any] = wait_for(has_reason, timeout, what=f"{self.namespace}/{name} reason {reason}")
        return result

    def wait_gone(self, name: str, timeout: float = 30.0) -> None:
        wait_for(lambda: self.get(name) is None, timeout, what=f"{self.namespace}/{name} deleted")

    def events(self, name: str) -> list[client.CoreV1Event]:
        core = client.CoreV1Api(self.custom.api_client)
        items: list[client.CoreV1Event] = core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return items


@contextmanager
def instead_of_the_session_operator(
    operator: Operator, control_plane: ControlPlane, workdir: Path, **overrides: dict[str, str]
) -> Iterator[dict[str, Operator]]:
    """Operators named by `overrides` (each the env it changes), in place of the session's; it returns after."""
    operator.stop()
    started: dict[str, Operator] = {}
    try:
        for i, (name, changes) in enumerate(overrides.items()):
            env = {k: v for k, v in operator.env.items() if k != "PORTER_HEALTH_PORT"}
            if i > 0:
                env["PORTER_WEBHOOK_PORT"] = "0"  # the webhook configuration points at the first one's port
            started[name] = _start(operator, workdir, name, env, changes)
        for op in started.values():
            op.wait_ready()
        yield started
    finally:
        for op in started.values():
            op.stop()
        operator.start().wait_ready()


def _start(operator: Operator, workdir: Path, name: str, env: dict[str, str], changes: dict[str, str]) -> Operator:
    """Started with ports picked now; picked again if one was taken between its pick and the bind (another test
    process may take a free port first)."""
    for attempt in range(3):
        ports = {"PORTER_METRICS_PORT": str(free_port())}
        made = Operator(
            kubeconfig=operator.kubeconfig,  # the chart's RBAC, as the session's operator
            logfile=workdir / "logs" / f"operator-{name}-{uuid.uuid4().hex[:4]}.log",
            env=env | ports | changes,
            args=["--log-format", "json"],
        )
        try:
            return made.start()
        except RuntimeError as err:
            if "Address already in use" not in str(err) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def check(env: dict[str, str], namespace: str, name: str, *args: str) -> tuple[int, dict[str, Any]]:
    """`porter-identity check NAMESPACE/NAME -o json` as a user runs it: (exit code, verdict)."""
    done = subprocess.run(
        [sys.executable, "-m", "porter_identity.cli", "check", f"{namespace}/{name}", "-o", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout, done.stderr
    verdict: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, verdict


@contextmanager
def webhook_bypassed(kubectl: Any) -> Iterator[None]:
    """As an attacker who got the webhook configuration deleted: only the CRD rules and reconcile remain."""
    saved = json.loads(kubectl("get", admission.KINDS, admission.NAME, "-o", "json").stdout)
    assert len(saved["items"]) == 2, saved  # the mutating (connections) and the validating (PorterRoleSets)
    kubectl("delete", admission.KINDS, admission.NAME)
    try:
        yield
    finally:
        for item in saved["items"]:
            for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
                item["metadata"].pop(key, None)
        kubectl("apply", "-f", "-", stdin=json.dumps(saved))


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(operator: Operator) -> Samples:
    """The operator's Prometheus endpoint, parsed: (name, sorted labels) -> value."""
    url = f"http://127.0.0.1:{operator.env['PORTER_METRICS_PORT']}/metrics"

    def fetch() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:  # the operator process may still be starting
            return None

    text: str = wait_for(fetch, 30, what=f"{url} answering")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def sweeps(operator: Operator) -> float:
    return value(scrape(operator), "porter_identity_drift_sweeps_total", outcome="completed")


def wait_sweeps(*operators: Operator, count: int = 1, timeout: float = 60.0) -> None:
    """Until each operator has completed `count` more drift sweeps: what "nothing happened" tests wait for, instead
    of a fixed time (a sweep is where drift, orphans and revocations are acted on)."""
    for op in operators:
        start = sweeps(op)
        wait_for(lambda op=op, start=start: sweeps(op) >= start + count, timeout, what=f"{count} more sweeps")


@contextmanager
def sweeping(operator: Operator, seconds: float = 2.0) -> Iterator[Operator]:
    """The session operator sweeps every `seconds` (its own interval is 600 s) once the test next starts it; as it
    was after."""
    saved = operator.env.get("PORTER_DRIFT_SWEEP_SECONDS")
    operator.env["PORTER_DRIFT_SWEEP_SECONDS"] = str(seconds)
    try:
        yield operator
    finally:
        operator.stop()
        if saved is None:
            operator.env.pop("PORTER_DRIFT_SWEEP_SECONDS", None)
        else:
            operator.env["PORTER_DRIFT_SWEEP_SECONDS"] = saved
        operator.start().wait_ready()
