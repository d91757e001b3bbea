"""A real node for the local control plane: containerd + runc, a CNI bridge, kubelet and kube-proxy, as root.

Pods get an address on the bridge `porter0` (10.244.0.0/24) and reach only this machine: the bridge gateway, where
the API server and the emulators listen, and the Service addresses kube-proxy translates to it. Forwarding off the
bridge is rejected. Everything runs from `workdir` (config, state, sockets) and stops by pid; the bridge and the
iptables rules are removed. Needs Debian's containerd, runc, containernetworking-plugins and iptables
(hack/install-deps.sh) and the binaries of `hack/build-k8s.sh node`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from porter_dev.controlplane import ControlPlane, _terminate, free_port, k8s_bin_dir, wait_for_start

BRIDGE = "porter0"
SUBNET = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
CNI_BIN = "/usr/lib/cni"
NODE_NAME = "porter-node"
# The address the EKS Pod Identity Agent serves on every node (link-local, host network); on this node it is one
# more address of the bridge, so pods reach it the way they do on EKS (porter_dev.pod_identity_agent).
POD_IDENTITY_AGENT_ADDRESS = "169.254.170.23"
IPTABLES_TABLES = ("filter", "nat", "mangle")
REJECT_OFF_BRIDGE = ["FORWARD", "-s", SUBNET, "!", "-d", SUBNET, "-m", "comment", "--comment", "porter-node",
                     "-j", "REJECT"]  # fmt: skip


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class Node:
    """One node named NODE_NAME in `workdir`, registered to `control_plane` (which must serve it)."""

    workdir: Path
    control_plane: ControlPlane
    pids: dict[str, int] = field(default_factory=dict)
    ip_forward: str = ""
    # iptables chains per table before the node started: the kubelet leaves its own (KUBE-FIREWALL,
    # KUBE-KUBELET-CANARY, ...) behind, and kube-proxy --cleanup removes only kube-proxy's.
    chains_before: dict[str, set[str]] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @staticmethod
    def create_bridge() -> None:
        """The bridge with its gateway address, before anything binds to it (the CNI plugin reuses it)."""
        if _ip("link", "show", BRIDGE, check=False).returncode != 0:
            _ip("link", "add", BRIDGE, "type", "bridge")
        for address in (f"{GATEWAY}/24", f"{POD_IDENTITY_AGENT_ADDRESS}/32"):
            _ip("addr", "replace", address, "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")

    def start(self, sandbox_image: str, images: list[Path]) -> Node:
        """containerd (with `images` imported; `sandbox_image` runs every pod's sandbox), kubelet, kube-proxy."""
        bins = k8s_bin_dir(node=True)
        for sub in ("logs", "containerd", "cni/net.d", "cni/ipam", "kubelet", "pods-logs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.create_bridge()
        self.ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        self.chains_before = {table: _chains(table) for table in IPTABLES_TABLES}
        # The bridge plugin turns on forwarding (isGateway); pods still may not leave the bridge.
        if subprocess.run(["iptables", "-C", *REJECT_OFF_BRIDGE], capture_output=True).returncode != 0:
            subprocess.run(["iptables", "-I", *REJECT_OFF_BRIDGE], check=True)
        self._start_containerd(sandbox_image)
        for archive in images:
            subprocess.run(self.ctr("images", "import", str(archive)), check=True, capture_output=True)
        self._start_kubelet(bins)
        self._start_kube_proxy(bins)
        return self

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args]

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.pids[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True).pid

    def _start_containerd(self, sandbox_image: str) -> None:
        base = self.workdir / "containerd"
        cni = {
            "cniVersion": "0.4.0",
            "name": "porter",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # no address translation to the outside: there is no outside
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.workdir / "cni" / "net.d" / "10-porter.conflist").write_text(json.dumps(cni, indent=2))
        config = f"""
version = 2
root = "{base / "root"}"
state = "{base / "state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{base / "ttrpc.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # Without it runc cannot start the sandbox here ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.workdir / "cni" / "net.d"}"
"""
        (base / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(base / "config.toml")])
        self._wait(lambda: subprocess.run(self.ctr("version"), capture_output=True).returncode == 0, "containerd")

    def _start_kubelet(self, bins: Path) -> None:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY,  # the API server reaches it here for logs and exec
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "failCgroupV1": False,
            "localStorageCapacityIsolation": False,
            "evictionHard": {},
            # The imported images have no registry to come back from: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "podLogsDir": str(self.workdir / "pods-logs"),
            # Only the API server can reach this address; it calls the kubelet without a client certificate.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "serializeImagePulls": False,
        }
        path = self.workdir / "kubelet" / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                str(bins / "kubelet"),
                "--config", str(path),
                "--kubeconfig", str(self.control_plane.kubeconfig),
                "--hostname-override", NODE_NAME,
                "--node-ip", GATEWAY,
                "--root-dir", str(self.workdir / "kubelet" / "root"),
                "--cert-dir", str(self.workdir / "kubelet" / "pki"),
            ],
        )  # fmt: skip

    def _start_kube_proxy(self, bins: Path) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.control_plane.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": SUBNET,
            "bindAddress": GATEWAY,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Replies from a Service's endpoint come back through the host even on the same bridge.
            "iptables": {"masqueradeAll": True},
            # Leave the machine's conntrack table size alone; NodePorts only on the bridge (no route_localnet).
            "conntrack": {"maxPerCore": 0},
            "nodePortAddresses": [f"{GATEWAY}/32"],
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [str(bins / "kube-proxy"), "--config", str(path)])

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        wait_for_start(ready, self.pids, self.workdir / "logs", what, timeout)

    def wait_ready(self, kubectl: list[str], timeout: float = 120.0) -> Node:
        """Until the node reports Ready (`kubectl` is the admin kubectl command line)."""

        def ready() -> bool:
            out = subprocess.run([*kubectl, "get", "node", NODE_NAME, "-o", "json"], capture_output=True, text=True)
            if out.returncode != 0:
                return False
            conditions = json.loads(out.stdout)["status"].get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(ready, f"node {NODE_NAME}", timeout)
        return self

    def stop(self, kubectl: list[str]) -> None:
        """Pods first (the kubelet tears down their sandboxes, so CNI releases addresses and veths), then kube-proxy
        and its rules, kubelet, containerd and its shims, the bridge last. `kubectl` as for wait_ready."""
        if "kubelet" in self.pids:
            subprocess.run([*kubectl, "delete", "deployments,replicasets,pods", "--all", "--all-namespaces",
                            "--grace-period=0", "--force", "--wait=false"], capture_output=True)  # fmt: skip
            with contextlib.suppress(TimeoutError, RuntimeError):  # what is left is killed below
                self._wait(lambda: not self._tasks(), "pods to stop", timeout=30)
        for name in ("kube-proxy", "kubelet"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                _terminate(pid)
        bins = k8s_bin_dir(node=True)
        subprocess.run([str(bins / "kube-proxy"), "--cleanup"], capture_output=True)
        if "containerd" in self.pids:
            for task in self._tasks():
                subprocess.run(self.ctr("tasks", "kill", "--signal", "SIGKILL", task), capture_output=True)
            _terminate(self.pids.pop("containerd"))
        for pid in _shims(self.workdir / "containerd"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _unmount_under(self.workdir)
        subprocess.run(["iptables", "-D", *REJECT_OFF_BRIDGE], capture_output=True)
        if self.chains_before:
            for table in IPTABLES_TABLES:
                _remove_chains(table, _chains(table) - self.chains_before.get(table, set()))
        _ip("link", "delete", BRIDGE, check=False)
        if self.ip_forward:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward)

    def _tasks(self) -> list[str]:
        listed = subprocess.run(self.ctr("tasks", "list", "--quiet"), capture_output=True, text=True)
        return listed.stdout.split()


def _unmount_under(root: Path) -> None:
    """The kubelet bind-mounts its root dir onto itself and mounts every pod's volumes (tmpfs) under it; nothing
    unmounts them when it is killed. Deepest first, so the workdir can be removed."""
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted({m for m in mounts if m.startswith(prefix)}, key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", point], capture_output=True)


def _chains(table: str) -> set[str]:
    listed = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True)
    return {line.split()[1] for line in listed.stdout.splitlines() if line.startswith("-N ")}


def _remove_chains(table: str, chains: set[str]) -> None:
    """Delete the rules that jump to `chains` (in any chain), then empty and delete the chains themselves."""
    if not chains:
        return
    listed = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True)
    for line in listed.stdout.splitlines():
        words = line.split()
        if words[:1] == ["-A"] and words[1] not in chains and "-j" in words and words[words.index("-j") + 1] in chains:
            # iptables -S quotes comments; shlex gives the argument list back as iptables -D wants it.
            subprocess.run(["iptables", "-t", table, "-D", *shlex.split(line)[1:]], capture_output=True)
    for chain in chains:
        subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
    for chain in chains:
        subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)


def _shims(containerd_dir: Path) -> list[int]:
    """The containerd-shim processes of this node (each names our socket on its command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(containerd_dir).encode() in b" ".join(argv):
            found.append(int(proc.name))
    return found
