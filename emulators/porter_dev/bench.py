"""`hack/bench`: drive N connections through a real API server, the emulators and the operator; write figures.

Times come from the API server's watch as seen by this process (create returned -> Ready=True observed),
never from the operator's logs. Writes to a connection are the watch's MODIFIED events for it. Cloud calls
are the emulators' own counters. RSS and CPU are read from /proc for the operator process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from porter_dev import CACHE, rbac
from porter_dev import profile as profiling
from porter_dev.admission import KINDS as WEBHOOK_KINDS
from porter_dev.admission import NAME as WEBHOOK_NAME
from porter_dev.admission import webhook_configuration, write_policy, write_webhook_certificate
from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane, free_port
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import (
    AWS_ACCOUNT_ID,
    AwsEmulator,
    Operator,
    emulator_settings,
    pod_identity_trust_policy,
)

GROUP, VERSION, PLURAL = "identity.porter.run", "v1alpha1", "serviceidentityconnections"
PROVIDERS = ("aws", "azure", "gcp")
EKS_CLUSTER = "bench"
SUBSCRIPTION = "00000000-0000-0000-0000-0000000be9c0"
PROJECT = "porter-bench"
NAMESPACES = 10
# Identities are shared the way services share them in practice: a few connections (environments,
# workers) per identity. Azure's limit is 20 credentials per identity, GCP's 1,500 principals per policy.
PER_AWS_ROLE = 10
PER_AZURE_IDENTITY = 5
PER_GCP_ACCOUNT = 5
BENCH_POLICY: list[dict[str, Any]] = [
    {
        "name": "bench",
        "namespaces": ["bench-*"],
        "aws": {"roles": ["*"]},
        "azure": {"identities": ["*"]},
        "gcp": {"serviceAccounts": ["*"]},
    }
]


@dataclass
class Track:
    """One connection as the watch saw it."""

    provider: str
    created: float = 0.0
    ready: float | None = None
    writes_to_ready: int = 0
    writes_after: int = 0
    sa_writes: int = 0


@dataclass
class Watcher:
    """Counts MODIFIED events per connection and notes when each first reports Ready=True."""

    custom: client.CustomObjectsApi
    tracks: dict[tuple[str, str], Track]
    resource_version: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        self._follow(
            lambda rv: watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, resource_version=rv, timeout_seconds=5
            ),
            self._modified,
            self.resource_version,
        )

    def run_service_accounts(self, core: client.CoreV1Api, resource_version: str) -> None:
        """ServiceAccount annotations (Azure, GCP) are writes too: count them per connection."""
        self._follow(
            lambda rv: watch.Watch().stream(  # type: ignore[no-untyped-call]
                core.list_service_account_for_all_namespaces, resource_version=rv, timeout_seconds=5
            ),
            self._sa_modified,
            resource_version,
        )

    def _follow(self, stream: Any, handle: Any, resource_version: str) -> None:
        while not self.stop.is_set():
            for event in stream(resource_version):
                obj = event["object"]
                if not isinstance(obj, dict):  # typed models (ServiceAccounts): only metadata is needed
                    meta = obj.metadata
                    obj = {
                        "metadata": {
                            "namespace": meta.namespace,
                            "name": meta.name,
                            "resourceVersion": meta.resource_version,
                        }
                    }
                resource_version = obj["metadata"]["resourceVersion"]
                if event["type"] == "MODIFIED":
                    handle(obj, time.monotonic())

    def _sa_modified(self, obj: dict[str, Any], now: float) -> None:
        with self.lock:
            track = self.tracks.get((obj["metadata"]["namespace"], obj["metadata"]["name"]))
            if track is not None:
                track.sa_writes += 1

    def _modified(self, obj: dict[str, Any], now: float) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (obj.get("status") or {}).get("conditions", [])
        )
        with self.lock:
            track = self.tracks.get(key)
            if track is None:
                return
            if track.ready is None:
                track.writes_to_ready += 1
                if ready:
                    track.ready = now
            else:
                track.writes_after += 1

    def ready_count(self) -> int:
        with self.lock:
            return sum(1 for t in self.tracks.values() if t.ready is not None)

    def writes_after(self) -> int:
        with self.lock:
            return sum(t.writes_after for t in self.tracks.values())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _spread(n: int, provider: str) -> list[str]:
    return [PROVIDERS[i % 3] if provider == "mixed" else provider for i in range(n)]


def _spec(provider: str, i: int) -> dict[str, Any]:
    """`i` counts connections of this provider only, so identities fill up evenly."""
    if provider == "aws":
        return {"aws": {"role": f"bench-role-{i // PER_AWS_ROLE}"}}
    if provider == "azure":
        return {"azure": {"identityName": f"bench-id-{i // PER_AZURE_IDENTITY}", "resourceGroup": "bench-rg"}}
    return {"gcp": {"serviceAccountEmail": f"bench-sa-{i // PER_GCP_ACCOUNT:04d}@{PROJECT}.iam.gserviceaccount.com"}}


def _nth(providers: list[str]) -> list[int]:
    seen = dict.fromkeys(PROVIDERS, 0)
    out = []
    for p in providers:
        out.append(seen[p])
        seen[p] += 1
    return out


def _seed(aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator, providers: list[str]) -> None:
    aws.client("eks").create_cluster(
        name=EKS_CLUSTER, roleArn=f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/eks", resourcesVpcConfig={"subnetIds": []}
    )
    iam = aws.client("iam")
    for i in range(math.ceil(providers.count("aws") / PER_AWS_ROLE)):
        iam.create_role(RoleName=f"bench-role-{i}", AssumeRolePolicyDocument=pod_identity_trust_policy())
    for i in range(math.ceil(providers.count("azure") / PER_AZURE_IDENTITY)):
        azure.seed_identity(SUBSCRIPTION, "bench-rg", f"bench-id-{i}")
    for i in range(math.ceil(providers.count("gcp") / PER_GCP_ACCOUNT)):
        gcp.seed_service_account(PROJECT, f"bench-sa-{i:04d}")


def _body(name: str, provider: str, nth: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceIdentityConnection",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": name, **_spec(provider, nth)},
    }


def _current_rss(pid: int) -> float:
    """RSS now, in MB (VmRSS; _proc_stats has the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds) of a live process."""
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return peak, cpu


def _system_cpu(pid: int) -> float:
    """The kernel's share of a live process's CPU seconds (system calls: sockets, thread switches, futexes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def _calls(aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator) -> dict[str, int]:
    return {provider: sum(ops.values()) for provider, ops in _operations(aws, azure, gcp).items()}


def _operations(aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator) -> dict[str, dict[str, int]]:
    """Each emulator's calls by operation: what a figure of calls per connection is made of."""
    return {"aws": dict(aws.calls()), "azure": dict(azure.calls()), "gcp": dict(gcp.calls())}


def _ops_between(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {
        p: {op: n - before[p].get(op, 0) for op, n in sorted(ops.items()) if n - before[p].get(op, 0)}
        for p, ops in after.items()
    }


def _unnamed_growth(core: client.CoreV1Api, op: Operator, count: int) -> dict[str, float]:
    """The idle operator's RSS before and after `count` ServiceAccounts that no connection names appear (in a
    namespace of their own): what watching ServiceAccounts costs per ServiceAccount in the cluster."""
    assert op.proc is not None
    namespace = "bench-unnamed"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    before = _current_rss(op.proc.pid)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=f"unnamed-{i}"))
                ),
                range(count),
            )
        )
    _wait_quiet(op.proc.pid, timeout=120)
    after = _current_rss(op.proc.pid)
    return {"count": count, "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1)}


def _wait_quiet(pid: int, timeout: float) -> None:
    """Until the operator has used no CPU for three seconds: its resync is over."""
    deadline, quiet, last = time.monotonic() + timeout, 0, _proc_stats(pid)[1]
    while time.monotonic() < deadline and quiet < 3:
        time.sleep(1)
        now = _proc_stats(pid)[1]
        quiet = quiet + 1 if now - last < 0.05 else 0
        last = now


# The settings that configure each cloud: a run for one provider configures only that one, as an operator for one
# cloud would be (the others' SDKs are then never loaded).
_CLOUD_SETTINGS = {
    "aws": ("PORTER_EKS_CLUSTER_NAME",),
    "azure": ("PORTER_AZURE_SUBSCRIPTION_ID",),
    "gcp": ("PORTER_GCP_PROJECT_ID",),
}


def _only(env: dict[str, str], provider: str) -> dict[str, str]:
    unused = [key for p, keys in _CLOUD_SETTINGS.items() if provider not in ("mixed", p) for key in keys]
    return {k: v for k, v in env.items() if k not in unused}


def _operator(cp: ControlPlane, workdir: Path, env: dict[str, str], n: int = 0) -> Operator:
    """Started and ready: a restarted one is ready once it has indexed all `n` connections (minutes at 10,000)."""
    kubeconfig = rbac.chart_kubeconfig(cp.kubeconfig, workdir / "operator.kubeconfig")
    operator = Operator(kubeconfig=kubeconfig, logfile=workdir / "logs" / "operator.log", env=env).start()
    try:
        return operator.wait_ready(timeout=max(60.0, n / 20))
    except BaseException:
        operator.stop()  # not yet the caller's to stop
        raise


@dataclass
class Options:
    """What one run measures besides the defaults."""

    webhook: bool = True  # the chart's default: the validating webhook is on
    profile: bool = False  # py-spy on the operator from the first create until all are Ready
    admission_probes: int = 300  # dry-run creates per side (webhook on / off) for the admission figure
    pre_created: bool = False  # all N stored before the operator starts: its own catch-up rate, apart from the client's
    unnamed_service_accounts: int = 0  # ServiceAccounts no connection names, made before the run: idle RSS growth


def _kubectl(cp: ControlPlane, *args: str, stdin: str | None = None) -> None:
    import subprocess

    from porter_dev.controlplane import k8s_bin_dir

    subprocess.run(
        [str(k8s_bin_dir() / "kubectl"), "--kubeconfig", str(cp.kubeconfig), *args],
        check=True,
        capture_output=True,
        input=stdin,
        text=True,
    )


def _timed_creates(
    custom: client.CustomObjectsApi,
    bodies: list[tuple[str, dict[str, Any]]],
    dry_run: bool = False,
    started_at: list[float] | None = None,
) -> tuple[float, list[float]]:
    """(wall seconds, per-request seconds) of creating these from 16 threads, as the load generator does;
    `started_at[i]` is set to when the i-th create was sent."""

    def create(i: int) -> float:
        ns, body = bodies[i]
        started = time.monotonic()
        if started_at is not None:
            started_at[i] = started
        # The response is not needed: skipping its parsing keeps the load generator off the CPU it shares. Its
        # body is still read off the socket before the connection goes back to the pool: a pooled connection
        # with unread bytes answers the next request with them (BadStatusLine).
        extra: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        response: Any = custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body, _preload_content=False, **extra
        )
        response.drain_conn()
        response.release_conn()
        return time.monotonic() - started

    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        each = list(pool.map(create, range(len(bodies))))
    return time.monotonic() - began, each


def _webhook_own(metrics_port: int) -> tuple[float, float, dict[float, float]]:
    """The operator's histogram of its own time per AdmissionReview: (sum, count, cumulative count by bucket)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    total, count = 0.0, 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "porter_identity_admission_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return total, count, buckets


def _own_time(
    before: tuple[float, float, dict[float, float]], after: tuple[float, float, dict[float, float]]
) -> dict[str, float]:
    """Mean and the p99's bucket bound (ms) of the webhook's own time over the requests between two scrapes."""
    count = after[1] - before[1]
    if count <= 0:
        return {}
    mean = (after[0] - before[0]) / count
    p99 = next((le for le in sorted(after[2]) if after[2][le] - before[2].get(le, 0.0) >= 0.99 * count), float("inf"))
    return {"mean_ms": round(1000 * mean, 2), "p99_at_most_ms": round(1000 * p99, 2), "requests": count}


def _admission(
    cp: ControlPlane,
    custom: client.CustomObjectsApi,
    hooks: str,
    bodies: list[tuple[str, dict[str, Any]]],
    metrics_port: int,
) -> dict[str, Any]:
    """Added latency of the validating webhook: the same dry-run creates (admitted, never stored, so nothing is
    reconciled meanwhile) with the webhook configured and without; the operator is otherwise idle. Beside it, the
    webhook's own time per request, from its histogram: what the API server's round trip adds is the difference."""
    _timed_creates(custom, bodies[:50], dry_run=True)  # warm the connections either way
    own_before = _webhook_own(metrics_port)
    with_wall, with_each = _timed_creates(custom, bodies, dry_run=True)
    own = _own_time(own_before, _webhook_own(metrics_port))
    _kubectl(cp, "delete", WEBHOOK_KINDS, WEBHOOK_NAME)
    time.sleep(2)  # the API server's webhook configuration follows its watch
    _timed_creates(custom, bodies[:50], dry_run=True)
    without_wall, without_each = _timed_creates(custom, bodies, dry_run=True)
    _kubectl(cp, "apply", "-f", "-", stdin=hooks)
    ms = {
        side: {q: round(1000 * percentile(each, v), 2) for q, v in (("p50", 0.5), ("p99", 0.99))}
        for side, each in (("webhook", with_each), ("no_webhook", without_each))
    }
    return {
        "requests": len(bodies),
        "latency_ms": ms,
        "added_ms": {q: round(ms["webhook"][q] - ms["no_webhook"][q], 2) for q in ("p50", "p99")},
        "wall_seconds": {"webhook": round(with_wall, 2), "no_webhook": round(without_wall, 2)},
        "webhook_own": own,
    }


def machine_seconds() -> float:
    """A fixed pure-Python loop, timed: this machine's speed at that moment. The shared 2-core machines here vary
    by up to 2x within an hour, which moves throughput and CPU figures as much as any change of ours does."""
    started = time.perf_counter()
    sum(i * i for i in range(5_000_000))
    return round(time.perf_counter() - started, 3)


def run(
    n: int, provider: str, latency_ms: float, out: Path, timeout: float, options: Options | None = None
) -> dict[str, Any]:
    options = options or Options()
    speed_before = machine_seconds()
    workdir = out / "work"
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh etcd and emulators for every run
    providers = _spread(n, provider)
    cp = ControlPlane(workdir=workdir / "cluster")
    cp.start()
    aws = AwsEmulator(logdir=workdir / "logs").start()
    azure = AzureEmulator(logdir=workdir / "logs").start()
    gcp = GcpEmulator(logdir=workdir / "logs").start()
    op: Operator | None = None
    try:
        _kubectl(cp, "apply", "-f", "crds/")
        _seed(aws, azure, gcp, providers)
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
        cfg.connection_pool_maxsize = 32
        api = client.ApiClient(cfg)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        for i in range(NAMESPACES):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=f"bench-{i}")))
        names = [(f"bench-{i % NAMESPACES}", f"c-{i}") for i in range(n)]
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda key: core.create_namespaced_service_account(
                        key[0], client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=key[1]))
                    ),
                    names,
                )
            )
        wait_for_crd(custom)
        for emulator in (aws, azure, gcp):
            emulator.faults(latencyMs=latency_ms)
        settings = emulator_settings(
            cp.server,
            aws,
            azure,
            gcp,
            cluster=EKS_CLUSTER,
            subscription=SUBSCRIPTION,
            project=PROJECT,
            account=AWS_ACCOUNT_ID,
        )
        op_env = {
            **_only(settings, provider),
            "PORTER_METRICS_PORT": str(free_port()),
            # Every bench namespace may use every seeded identity.
            "PORTER_POLICY_FILE": str(write_policy(workdir / "policy.yaml", BENCH_POLICY)),
            "PORTER_WEBHOOK_PORT": "0",
        }
        hooks = ""
        if options.webhook:
            certs = workdir / "webhook"
            ca = write_webhook_certificate(certs)
            port = free_port()
            op_env |= {"PORTER_WEBHOOK_PORT": str(port), "PORTER_WEBHOOK_CERT_DIR": str(certs)}
            hooks = json.dumps(webhook_configuration(port, ca))
        nth = _nth(providers)
        bodies = [(names[i][0], _body(names[i][1], providers[i], nth[i])) for i in range(n)]
        tracks = {key: Track(providers[i]) for i, key in enumerate(names)}
        listed: Any = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        watcher = Watcher(custom, tracks, str(listed["metadata"]["resourceVersion"]))
        threading.Thread(target=watcher.run, daemon=True).start()
        sa_list: Any = core.list_service_account_for_all_namespaces(limit=1)
        sa_rv = str(sa_list.metadata.resource_version)
        threading.Thread(target=watcher.run_service_accounts, args=(core, sa_rv), daemon=True).start()
        admission = None
        unnamed: dict[str, float] | None = None
        each: list[float] = []
        if options.pre_created:
            # Stored while no operator runs (and no webhook is configured): the operator's own catch-up rate.
            applied, each = _timed_creates(custom, bodies)
            before = _calls(aws, azure, gcp)
            ops_before = _operations(aws, azure, gcp)
            harness = os.times()
            began = time.monotonic()
            for key in names:
                tracks[key].created = began
            op = _operator(cp, workdir, op_env, n)
            assert op.proc is not None
            if hooks:
                _kubectl(cp, "apply", "-f", "-", stdin=hooks)
            idle_rss, cpu_before, system_before = 0.0, 0.0, 0.0
            recording = None
        else:
            op = _operator(cp, workdir, op_env)
            assert op.proc is not None
            if hooks:
                _kubectl(cp, "apply", "-f", "-", stdin=hooks)
                time.sleep(2)  # the API server's webhook configuration follows its watch
            time.sleep(3)  # the operator's start-up (imports, first lists) is over: this is its idle RSS
            idle_rss = _current_rss(op.proc.pid)
            if options.unnamed_service_accounts:
                unnamed = _unnamed_growth(core, op, options.unnamed_service_accounts)
            if hooks and options.admission_probes:
                metrics_port = int(op_env["PORTER_METRICS_PORT"])
                admission = _admission(cp, custom, hooks, bodies[: options.admission_probes], metrics_port)
            before = _calls(aws, azure, gcp)
            ops_before = _operations(aws, azure, gcp)
            cpu_before, system_before = _proc_stats(op.proc.pid)[1], _system_cpu(op.proc.pid)
            recording = (
                profiling.Recording(op.proc.pid, out / f"profile-{provider}-n{n}.txt").start()
                if options.profile
                else None
            )
            harness = os.times()
            began = time.monotonic()
            started_at = [0.0] * n
            applied, each = _timed_creates(custom, bodies, started_at=started_at)
            for i, key in enumerate(names):
                tracks[key].created = started_at[i]
        deadline = began + timeout
        while watcher.ready_count() < n and time.monotonic() < deadline:
            time.sleep(0.2)
        settled = _calls(aws, azure, gcp)
        operations = _ops_between(ops_before, _operations(aws, azure, gcp))
        harness_cpu = sum(os.times()[:2]) - sum(harness[:2])
        assert op.proc is not None
        peak_rss, cpu = _proc_stats(op.proc.pid)
        cpu -= cpu_before
        system_cpu = _system_cpu(op.proc.pid) - system_before
        profile = recording.stop() if recording is not None else None

        # one full resync: a restarted operator lists everything and must find nothing to do
        writes_before = watcher.writes_after()
        op.stop()
        restarted = time.monotonic()
        op = _operator(cp, workdir, op_env, n)
        restart_ready = time.monotonic() - restarted
        assert op.proc is not None
        _wait_quiet(op.proc.pid, timeout=max(60.0, n / 20))
        resynced = _calls(aws, azure, gcp)
        resync_rss = _proc_stats(op.proc.pid)[0]
        watcher.stop.set()
        return _figures(
            n, provider, latency_ms, began, applied, tracks, before, settled, resynced,
            watcher.writes_after() - writes_before, idle_rss, peak_rss, cpu, harness_cpu, resync_rss,
        ) | {
            "webhook": options.webhook,
            "create_request_ms": {
                q: round(1000 * percentile(each, v), 1) for q, v in (("p50", 0.5), ("p99", 0.99))
            },
            "admission": admission,
            "cloud_calls_by_operation": operations,
            "restart_ready_seconds": round(restart_ready, 1),
            "operator_system_cpu_seconds": round(system_cpu, 1),
            "pre_created": options.pre_created,
            "unnamed_service_accounts": unnamed,
            "profile": profile,
            "machine_loop_seconds": {"before": speed_before, "after": machine_seconds()},
        }  # fmt: skip
    finally:
        if op is not None:
            op.stop()
        for emulator in (aws, azure, gcp):
            emulator.stop()
        cp.stop()


def wait_for_crd(custom: client.CustomObjectsApi, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
            return
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _figures(
    n: int,
    provider: str,
    latency_ms: float,
    began: float,
    applied: float,
    tracks: dict[tuple[str, str], Track],
    before: dict[str, int],
    settled: dict[str, int],
    resynced: dict[str, int],
    resync_writes: int,
    idle_rss: float,
    peak_rss: float,
    cpu: float,
    harness_cpu: float,
    resync_rss: float,
) -> dict[str, Any]:
    done = [t for t in tracks.values() if t.ready is not None]
    latencies = [t.ready - t.created for t in done if t.ready is not None]
    last = max((t.ready for t in done if t.ready is not None), default=began)
    per_provider = {p: sum(1 for t in tracks.values() if t.provider == p) for p in PROVIDERS}
    writes = [t.writes_to_ready for t in done]
    return {
        "n": n,
        "provider": provider,
        "cloud_latency_ms": latency_ms,
        "ready": len(done),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "create_to_ready_seconds": {
            "p50": round(percentile(latencies, 0.50), 3) if latencies else None,
            "p95": round(percentile(latencies, 0.95), 3) if latencies else None,
            "p99": round(percentile(latencies, 0.99), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
        },
        "apply_seconds": round(applied, 2),
        "throughput_per_second": round(len(done) / (last - began), 1) if last > began else None,
        "cloud_calls_per_connection": {
            p: {
                "create": round((settled[p] - before[p]) / per_provider[p], 2),
                "idle_resync": resynced[p] - settled[p],
            }
            for p in PROVIDERS
            if per_provider[p]
        },
        "connection_writes_to_ready": {
            "mean": round(sum(writes) / len(writes), 2) if writes else None,
            "max": max(writes, default=0),
        },
        "connection_writes_idle_resync": resync_writes,
        "service_account_writes_per_connection": {
            p: round(sum(t.sa_writes for t in tracks.values() if t.provider == p) / per_provider[p], 2)
            for p in PROVIDERS
            if per_provider[p]
        },
        "operator": {
            "rss_before_mb": round(idle_rss, 1),
            "peak_rss_mb": round(peak_rss, 1),
            "cpu_seconds": round(cpu, 1),
            "resync_peak_rss_mb": round(resync_rss, 1),
        },
        "load_generator_cpu_seconds": round(harness_cpu, 1),
        "ready_over_time": sorted(round(t.ready - began, 3) for t in done if t.ready is not None),
    }


def markdown(fig: dict[str, Any]) -> str:
    lat, calls = fig["create_to_ready_seconds"], fig["cloud_calls_per_connection"]
    rows = [
        ("connections (Ready / applied)", f"{fig['ready']} / {fig['n']} ({fig['provider']})"),
        ("cloud latency added per call", f"{fig['cloud_latency_ms']:g} ms"),
        ("create → Ready p50 / p95 / p99", f"{lat['p50']} / {lat['p95']} / {lat['p99']} s"),
        (
            "throughput (all Ready / time from the operator's start, all stored before)"
            if fig.get("pre_created")
            else "throughput (all Ready / time from first create)",
            f"{fig['throughput_per_second']} connections/s",
        ),
        ("time to apply all connections", f"{fig['apply_seconds']} s"),
        (
            "create request p50 / p99 (client side, " + ("webhook on" if fig["webhook"] else "webhook off") + ")",
            f"{fig['create_request_ms']['p50']} / {fig['create_request_ms']['p99']} ms",
        ),
        *(
            [
                (
                    f"admission: added latency p50 / p99 ({adm['requests']} dry-run creates, idle operator)",
                    f"{adm['added_ms']['p50']} / {adm['added_ms']['p99']} ms "
                    f"(with {adm['latency_ms']['webhook']['p99']} ms, without {adm['latency_ms']['no_webhook']['p99']}"
                    " ms p99)",
                )
            ]
            if (adm := fig.get("admission"))
            else []
        ),
        *(
            [
                (
                    "admission: the webhook's own time per request, mean / p99 (its histogram)",
                    f"{own['mean_ms']} / ≤ {own['p99_at_most_ms']} ms",
                )
            ]
            if (own := (fig.get("admission") or {}).get("webhook_own"))
            else []
        ),
        *(
            (f"{p} cloud calls per connection (create / idle resync total)", f"{c['create']} / {c['idle_resync']}")
            for p, c in calls.items()
        ),
        *(
            (f"{p} calls by operation, to Ready", ", ".join(f"{op} {n}" for op, n in ops.items()))
            for p, ops in (fig.get("cloud_calls_by_operation") or {}).items()
            if ops
        ),
        (
            "writes to the connection to reach Ready (mean / max)",
            f"{fig['connection_writes_to_ready']['mean']} / {fig['connection_writes_to_ready']['max']}",
        ),
        ("writes to connections on an idle resync (total)", str(fig["connection_writes_idle_resync"])),
        *(
            (f"{p} ServiceAccount writes per connection (whole run)", str(w))
            for p, w in fig["service_account_writes_per_connection"].items()
        ),
        ("CPU used by this load generator meanwhile (same machine)", f"{fig['load_generator_cpu_seconds']} s"),
        ("operator RSS before the run", f"{fig['operator']['rss_before_mb']} MB"),
        *(
            [
                (
                    f"idle operator RSS before / after {un['count']} ServiceAccounts no connection names",
                    f"{un['rss_before_mb']} / {un['rss_after_mb']} MB",
                )
            ]
            if (un := fig.get("unnamed_service_accounts"))
            else []
        ),
        ("operator peak RSS / CPU", f"{fig['operator']['peak_rss_mb']} MB / {fig['operator']['cpu_seconds']} s"),
        ("operator CPU in the kernel (of the above)", f"{fig.get('operator_system_cpu_seconds', '-')} s"),
        ("restarted operator's peak RSS after its full resync", f"{fig['operator']['resync_peak_rss_mb']} MB"),
        ("restarted operator: start to ready (every connection indexed)", f"{fig.get('restart_ready_seconds', '-')} s"),
        *(
            [
                (
                    "machine: a fixed pure-Python loop before / after the run (lower is faster)",
                    f"{speed['before']} / {speed['after']} s",
                )
            ]
            if (speed := fig.get("machine_loop_seconds"))
            else []
        ),
    ]
    table = "| measure | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    return table + ("\n" + profiling.markdown(fig["profile"]) if fig.get("profile") else "")


def plot(fig: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = fig["ready_over_time"]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.step(times, range(1, len(times) + 1), where="post")
    axes.set_xlabel("seconds since the first create")
    axes.set_ylabel("connections Ready")
    axes.set_title(f"N={fig['n']} ({fig['provider']}), {fig['cloud_latency_ms']:g} ms per cloud call")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000], help="connections per run")
    parser.add_argument("--big", action="store_true", help="also run N=10,000")
    parser.add_argument("--provider", choices=[*PROVIDERS, "mixed"], default="mixed")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added to every cloud call")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all Ready")
    parser.add_argument("--out", type=Path, default=CACHE / "bench")
    parser.add_argument("--no-webhook", action="store_true", help="run without the validating webhook")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator while it creates")
    parser.add_argument(
        "--unnamed-service-accounts",
        type=int,
        default=0,
        metavar="K",
        help="before the run, K ServiceAccounts no connection names: the idle operator's RSS before and after",
    )
    parser.add_argument(
        "--pre-created",
        action="store_true",
        help="store all N while the operator is stopped, then start it: its own catch-up rate (times from its start)",
    )
    parser.add_argument(
        "--admission-probes", type=int, default=300, help="dry-run creates per side for the admission figure"
    )
    args = parser.parse_args(argv)
    options = Options(
        webhook=not args.no_webhook,
        profile=args.profile,
        admission_probes=args.admission_probes,
        pre_created=args.pre_created,
        unnamed_service_accounts=args.unnamed_service_accounts,
    )
    # SIGTERM (e.g. `timeout`) must still stop the control plane, emulators and operator this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [*args.n, *([10_000] if args.big else [])]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        fig = run(n, args.provider, args.latency_ms, args.out / f"n{n}", args.timeout, options)
        stem = args.out / f"bench-{args.provider}-n{n}{'-pre-created' if args.pre_created else ''}"
        stem.with_suffix(".json").write_text(json.dumps(fig, indent=2))
        stem.with_suffix(".md").write_text(markdown(fig))
        plot(fig, stem.with_suffix(".png"))
        print(markdown(fig))
        print(f"wrote {stem}.json, .md, .png")
        results.append(fig)
    return 0 if all(f["ready"] == f["n"] for f in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
