"""Start the AWS emulator and the operator as separate processes, for tests and the dev sandbox."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from porter_dev.controlplane import free_port
from porter_dev.rbac import service_account_of

if TYPE_CHECKING:  # the emulators' modules import this one
    from porter_dev.azure import AzureEmulator
    from porter_dev.gcp import GcpEmulator

AWS_ACCOUNT_ID = "123456789012"  # moto's default account for any access key it does not know
AWS_REGION = "us-east-1"
EKS_CLUSTER = "porter-dev"


def _http(method: str, url: str, body: Any = None, timeout: float = 5.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    """Answer an http.server request with `body` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def spawn_module(module: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`python -m module args` in its own session (so it can be killed as a group), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL for the whole group if it does not exit within `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            _http("GET", url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


@dataclass
class AwsEmulator:
    """moto + Pod Identity API on a loopback port (or `host`, e.g. the node's bridge gateway, so pods reach it);
    `env` is what an AWS SDK needs to use it."""

    logdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": AWS_REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> AwsEmulator:
        self.port = self.port or free_port()
        log = self.logdir / "aws-emulator.log"
        self.proc = spawn_module("porter_dev.aws", ["--host", self.host, "--port", str(self.port)], log)
        _wait_http(f"{self.endpoint}/_porter/health", self.proc, log)
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def faults(self, **plan: Any) -> None:
        """e.g. faults(rules=[{"fault": "throttle", "service": "eks", "count": 2}], latencyMs=50)."""
        _http("POST", f"{self.endpoint}/_porter/faults", plan)

    def reset(self) -> None:
        _http("POST", f"{self.endpoint}/_porter/reset", {})

    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = _http("GET", f"{self.endpoint}/_porter/calls")["calls"]
        return calls

    def calls_by_caller(self) -> dict[str, dict[str, int]]:
        """Calls by the app id in the SDK's User-Agent (AWS_SDK_UA_APP_ID), then by service:Operation."""
        found: dict[str, dict[str, int]] = _http("GET", f"{self.endpoint}/_porter/calls")["byCaller"]
        return found

    def assume_role_calls(self) -> dict[str, int]:
        """sts:AssumeRole calls by role ARN, refused ones included (the ExternalId is never recorded)."""
        calls: dict[str, int] = _http("GET", f"{self.endpoint}/_porter/assume-role")
        return calls

    def injected(self) -> dict[str, int]:
        """Faults served so far, by `service:Operation:fault`."""
        injected: dict[str, int] = _http("GET", f"{self.endpoint}/_porter/calls")["injected"]
        return injected

    def set_cluster_issuer(self, cluster: str, issuer: str, ca_file: Path | None = None) -> None:
        """Give the EKS cluster `issuer` (the API server's), whose discovery is fetched trusting `ca_file`."""
        body = {"cluster": cluster, "issuer": issuer, "caFile": str(ca_file) if ca_file else None}
        _http("POST", f"{self.endpoint}/_porter/cluster-issuer", body)

    def client(self, service: str, **config: Any) -> Any:
        """A boto3 client for this emulator; `config` goes to botocore's Config (e.g. retries)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=AWS_REGION
        ).client(service, endpoint_url=self.endpoint, config=Config(**config))  # type: ignore[call-overload]


def pod_identity_trust_policy() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "pods.eks.amazonaws.com"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


def emulator_settings(
    server: str,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    *,
    cluster: str,
    subscription: str,
    project: str,
    account: str | None = None,
) -> dict[str, str]:
    """The PORTER_* settings that point an operator at this API server (its issuer) and these three emulators."""
    env = {
        **aws.env,
        "PORTER_EKS_CLUSTER_NAME": cluster,
        "PORTER_AWS_REGION": AWS_REGION,
        "PORTER_OIDC_ISSUER": server,
        "PORTER_AZURE_SUBSCRIPTION_ID": subscription,
        "PORTER_AZURE_ARM_ENDPOINT": azure.endpoint,
        "PORTER_AZURE_CA_FILE": str(azure.ca_file),
        "PORTER_AZURE_CREDENTIAL": "emulator",
        "PORTER_GCP_PROJECT_ID": project,
        "PORTER_GCP_IAM_ENDPOINT": gcp.endpoint,
    }
    if account is not None:
        # PorterRoleSets are served for the configured account only, and only when asked for.
        env["PORTER_AWS_ACCOUNT_ID"] = account
        env["PORTER_ROLESETS"] = "true"
    return env


@dataclass
class Operator:
    """`porter-identity run` as its own process, so tests can kill -9 and restart it."""

    kubeconfig: Path  # porter_dev.rbac.chart_kubeconfig: the chart's ServiceAccount token, nothing else
    logfile: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # extra `porter-identity run` arguments
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        # Several operators run side by side in tests and the sandbox: each probes on a port of its own.
        self.env.setdefault("PORTER_HEALTH_PORT", str(free_port()))

    def probe(self, path: str = "/readyz") -> tuple[int, str]:
        """(status, text) of /healthz or /readyz; (0, why) while nothing answers."""
        url = f"http://127.0.0.1:{self.env['PORTER_HEALTH_PORT']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status), response.read().decode().strip()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read().decode().strip()
        except OSError as err:
            return 0, str(err)

    def wait_ready(self, timeout: float = 60.0) -> Operator:
        deadline = time.monotonic() + timeout
        status, text = 0, ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"operator exited:\n{self.log()[-3000:]}")
            status, text = self.probe("/readyz")
            if status == 200:
                return self
            time.sleep(0.2)
        raise TimeoutError(f"operator not ready within {timeout}s: {status} {text}")

    def start(self) -> Operator:
        # The chart's RBAC and nothing more: a ServiceAccount token is the only credential it gets (a kubeconfig
        # of anything else is refused here), and no inherited KUBECONFIG can point it at the admin's.
        namespace, _ = service_account_of(self.kubeconfig)
        inherited = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env = {
            **inherited,
            "PORTER_OPERATOR_NAMESPACE": namespace,  # what the chart sets from .Release.Namespace
            **self.env,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = spawn_module("porter_identity.cli", ["run", *self.args], self.logfile, env)
        port = int(self.env.get("PORTER_WEBHOOK_PORT") or 0)
        if port and self.env.get("PORTER_WEBHOOK_CERT_DIR"):
            # The webhook fails closed: until it listens, every apply of a connection would be refused.
            _wait_port(port, self.proc, self.logfile)
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, exactly like an OOM kill or node loss."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""
