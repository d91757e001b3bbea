"""Start and stop a real Kubernetes control plane (etcd, kube-apiserver, controller-manager): node-less on loopback,
or, with `serves_node`, on a bridge address with a scheduler and the controllers pods need (porter_dev.node)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from porter_dev import CACHE, REPO_ROOT

ADMIN_TOKEN_USER = "porter-admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def k8s_bin_dir(node: bool = False) -> Path:
    """Build (first run) or find the cached Kubernetes binaries; with `node`, also kubelet, scheduler and proxy."""
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-k8s.sh"), *(["node"] if node else [])],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def etcd_binary() -> str:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if not found:
        raise RuntimeError("etcd not found: install Debian's etcd-server (hack/install-deps.sh does)")
    return found


def _write_signing_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )


@dataclass
class ControlPlane:
    """One control plane in `workdir`; its state file lets another process find and stop it."""

    workdir: Path
    etcd_port: int = 0
    apiserver_port: int = 0
    token: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    # Where the API server listens and what it advertises: pods reach it there (the `kubernetes` Service's endpoint).
    address: str = "127.0.0.1"
    # A node will join: run kube-scheduler and the controllers that Deployments, Services and pods' API access need.
    serves_node: bool = False

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.apiserver_port}"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    def save(self) -> None:
        data = asdict(self)
        data["workdir"] = str(self.workdir)
        self.state_file.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, workdir: Path) -> ControlPlane:
        data = json.loads((workdir / "state.json").read_text())
        data["workdir"] = Path(data["workdir"])
        return cls(**data)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        bins = k8s_bin_dir(node=self.serves_node)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        if not self.token:
            self.token = os.urandom(16).hex()
        key = self.workdir / "sa.key"
        if not key.exists():
            _write_signing_key(key)
        (self.workdir / "tokens.csv").write_text(f'{self.token},{ADMIN_TOKEN_USER},uid-admin,"system:masters"\n')
        self.etcd_port = self.etcd_port or free_port()
        self.apiserver_port = self.apiserver_port or free_port()
        self.start_etcd()
        self.start_apiserver(bins)
        self.wait_ready()
        self.write_kubeconfig()
        self.publish_issuer_discovery()
        self.start_controller_manager(bins)
        if self.serves_node:
            self.start_scheduler(bins)
        self.save()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids[name] = proc.pid

    def start_etcd(self) -> None:
        peer = free_port()
        self._spawn(
            "etcd",
            [
                etcd_binary(),
                "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
            ],
        )  # fmt: skip

    def start_apiserver(self, bins: Path) -> None:
        key = self.workdir / "sa.key"
        self._spawn(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
                "--bind-address", self.address,
                "--advertise-address", self.address,
                "--secure-port", str(self.apiserver_port),
                "--cert-dir", str(self.workdir / "pki"),
                "--token-auth-file", str(self.workdir / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", self.server,
                "--service-account-jwks-uri", f"{self.server}/openid/v1/jwks",
                "--service-account-key-file", str(key),
                "--service-account-signing-key-file", str(key),
                "--api-audiences", f"{self.server},pods.eks.amazonaws.com,api://AzureADTokenExchange",
                "--service-cluster-ip-range", "10.96.0.0/16",
                # With a node, the `kubernetes` Service's endpoint is this address (pods reach it through kube-proxy).
                "--endpoint-reconciler-type", "lease" if self.serves_node else "none",
                "--enable-priority-and-fairness=false",
                # kubectl logs: reach the kubelet at its node's address, not a hostname nothing resolves.
                "--kubelet-preferred-address-types", "InternalIP",
            ],
        )  # fmt: skip

    def start_controller_manager(self, bins: Path) -> None:
        controllers = ["namespace", "garbagecollector", "serviceaccount", "serviceaccount-token"]
        if self.serves_node:
            # Deployments make ReplicaSets make pods; Services get EndpointSlices (kube-proxy) and Endpoints; every
            # pod's API-access volume needs the kube-root-ca.crt ConfigMap.
            controllers += ["deployment", "replicaset", "endpoint", "endpointslice", "root-ca-cert-publisher"]
            # The kubelet registers its node tainted not-ready; the node lifecycle controller lifts the taint.
            controllers.append("nodelifecycle")
        self._spawn(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                *self._component_flags(),
                "--controllers", ",".join(controllers),
                "--service-account-private-key-file", str(self.workdir / "sa.key"),
                "--root-ca-file", str(self.workdir / "pki" / "apiserver.crt"),
                "--use-service-account-credentials=false",
            ],
        )  # fmt: skip

    def start_scheduler(self, bins: Path) -> None:
        self._spawn(
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"),
                *self._component_flags(),
            ],
        )  # fmt: skip

    def _component_flags(self) -> list[str]:
        """What the controller-manager and the scheduler share: our kubeconfig, a free loopback port, no election."""
        kubeconfig = str(self.kubeconfig)
        return [
            "--kubeconfig", kubeconfig,
            "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig,
            "--bind-address", "127.0.0.1",
            "--secure-port", str(free_port()),
            "--leader-elect=false",
        ]  # fmt: skip

    def write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "local",
                            "cluster": {
                                "server": self.server,
                                "certificate-authority": str(self.workdir / "pki" / "apiserver.crt"),
                            },
                        }
                    ],
                    "users": [{"name": ADMIN_TOKEN_USER, "user": {"token": self.token}}],
                    "contexts": [{"name": "local", "context": {"cluster": "local", "user": ADMIN_TOKEN_USER}}],
                    "current-context": "local",
                },
                indent=2,
            )
        )
        self.kubeconfig.chmod(0o600)

    def publish_issuer_discovery(self) -> None:
        """Let anyone read the OIDC discovery document and keys, as cloud token services fetch them unauthenticated.

        Kubernetes' documented way ("Service account issuer discovery"): bind the built-in ClusterRole
        system:service-account-issuer-discovery to system:unauthenticated.
        """
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "porter-dev-issuer-discovery"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:service-account-issuer-discovery",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}],
        }
        req = urllib.request.Request(
            f"{self.server}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            data=json.dumps(binding).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            urllib.request.urlopen(req, context=context, timeout=10).close()
        except urllib.error.HTTPError as err:
            if err.code != 409:  # already there after a restart on the same etcd
                raise

    @property
    def ca_file(self) -> Path:
        """The API server's serving CA: whoever fetches the issuer's discovery document must trust it."""
        return self.workdir / "pki" / "apiserver.crt"

    def is_ready(self) -> bool:
        ctx = ssl.create_default_context()
        # is_ready runs before the kubeconfig (and its CA file) are trusted: the serving cert is self-signed.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_for_start(self.is_ready, self.pids, self.workdir / "logs", "kube-apiserver", timeout)

    def stop_component(self, name: str) -> None:
        pid = self.pids.pop(name, None)
        if pid is not None:
            _terminate(pid)

    def stop(self) -> None:
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self.stop_component(name)
        if self.state_file.exists():
            self.state_file.unlink()


def wait_for_start(
    ready: Callable[[], bool], pids: dict[str, int], logs: Path, what: str, timeout: float = 60.0
) -> None:
    """Wait until `ready()`; fail at once, with its log's tail, if a process we started has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        for name, pid in pids.items():
            if not _alive(pid):
                log = (logs / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"{name} exited during start-up:\n{log}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout}s; logs in {logs}")


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _terminate(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="controlplane", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status", "build"])
    parser.add_argument("--dir", type=Path, default=CACHE / "cluster")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(k8s_bin_dir())
        return 0
    if args.command == "start":
        if (args.dir / "state.json").exists():
            existing = ControlPlane.load(args.dir)
            if existing.is_ready():
                print(f"already running; KUBECONFIG={existing.kubeconfig}")
                return 0
            existing.stop()
        started = time.monotonic()
        cp = ControlPlane(workdir=args.dir)
        cp.start()
        print(f"control plane ready in {time.monotonic() - started:.1f}s; export KUBECONFIG={cp.kubeconfig}")
        return 0
    if not (args.dir / "state.json").exists():
        print("not running")
        return 0 if args.command == "stop" else 1
    cp = ControlPlane.load(args.dir)
    if args.command == "status":
        print(f"{'ready' if cp.is_ready() else 'not ready'}: {cp.server} KUBECONFIG={cp.kubeconfig}")
        return 0 if cp.is_ready() else 1
    cp.stop()
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
