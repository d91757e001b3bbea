"""1,000 Ready connections (mixed providers) and 50 Stalled ones, a full resync, a drift sweep and several recheck
intervals: reads only, in bulk, no writes, no Events and no ERROR line.

Its own API server and emulators (counts must not include other tests' work) and its own operator processes:
one creates the connections, a restarted one must find nothing to do on resume and in its sweep, and a
third with PORTER_DELETE_ORPHANS=true removes orphans. Cloud calls are the emulators' own counters and the
operator's metrics; Kubernetes writes are the watch's MODIFIED events and the Events posted."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.msi.models import FederatedIdentityCredential
from kubernetes import client, config

from porter_dev import rbac
from porter_dev.admission import write_policy
from porter_dev.azure import AzureEmulator
from porter_dev.bench import Track, Watcher, wait_for_crd
from porter_dev.controlplane import ControlPlane, free_port, k8s_bin_dir
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import (
    AWS_ACCOUNT_ID,
    AwsEmulator,
    Operator,
    emulator_settings,
    pod_identity_trust_policy,
)
from porter_identity.clouds.azure.plan import credential_name
from tests.conftest import GROUP, PLURAL, VERSION, wait_for
from tests.e2e.test_metrics import scrape, value

pytestmark = pytest.mark.e2e
N = 1000
STALLED = 50  # AWS connections naming a role that does not exist (RoleNotFound), rechecked every 5 s while idle
RECHECK_SECONDS = 2
PROVIDERS = ("aws", "azure", "gcp")
NAMESPACES = 10
PER_IDENTITY = 5  # connections per Azure identity and per GCP service account
AZURE_PAGE = 2  # credentials per ARM list page, so that one identity's list takes several pages
CLUSTER, SUBSCRIPTION, PROJECT, RG = "drift", "00000000-0000-0000-0000-00000000d21f", "porter-drift", "drift-rg"
SCALE_POLICY: list[dict[str, Any]] = [
    {
        "name": "scale",
        "namespaces": ["drift-*"],
        "aws": {"roles": ["drift-role-*"]},
        "azure": {"identities": ["drift-rg/drift-id-*"]},
        "gcp": {"serviceAccounts": ["drift-sa-*"]},
    }
]
ROLE_CHECKS = 100  # PORTER_DRIFT_ROLE_CHECKS_PER_SWEEP (its default)
READS = {
    "eks:ListPodIdentityAssociations",
    "eks:DescribePodIdentityAssociation",
    "managedidentity:FederatedIdentityCredentials_List",
    "iam:GetIamPolicy",
    "iam:GetRole",  # the Stalled connections' rechecks
    "iam:ListRoles",
}


@dataclass
class Scale:
    cp: ControlPlane
    api: client.ApiClient
    aws: AwsEmulator
    azure: AzureEmulator
    gcp: GcpEmulator
    env: dict[str, str]
    names: list[tuple[str, str]]
    providers: list[str]
    workdir: Path
    stalled: list[tuple[str, str]]

    def operator(self, log: str, **env: str) -> Operator:
        settings = {**self.env, "PORTER_METRICS_PORT": str(free_port()), **env}
        kubeconfig = self.workdir / "operator.kubeconfig"
        if not kubeconfig.exists():
            kubeconfig = rbac.chart_kubeconfig(self.cp.kubeconfig, kubeconfig)
        return Operator(kubeconfig, self.workdir / f"{log}.log", settings, ["--log-format", "json"]).start()

    def calls(self) -> Counter[str]:
        return Counter({**self.aws.calls(), **self.azure.calls(), **self.gcp.calls()})

    def stalled_count(self) -> int:
        custom = client.CustomObjectsApi(self.api)
        listed: Any = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return sum(
            1
            for o in listed["items"]
            if any(
                c["type"] == "Ready" and c["reason"] == "RoleNotFound"
                for c in (o.get("status") or {}).get("conditions", [])
            )
        )

    def ready(self) -> int:
        custom = client.CustomObjectsApi(self.api)
        listed: Any = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return sum(
            1
            for o in listed["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in (o.get("status") or {}).get("conditions", [])
            )
        )


def _spec(provider: str, i: int) -> dict[str, Any]:
    if provider == "aws":
        return {"aws": {"role": f"drift-role-{i // 10}"}}
    if provider == "azure":
        return {"azure": {"identityName": f"drift-id-{i // PER_IDENTITY}", "resourceGroup": RG}}
    return {"gcp": {"serviceAccountEmail": f"drift-sa-{i // PER_IDENTITY:04d}@{PROJECT}.iam.gserviceaccount.com"}}


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scale]:
    workdir = tmp_path_factory.mktemp("drift-scale")
    cp = ControlPlane(workdir=workdir / "cluster")
    cp.start()
    aws = AwsEmulator(logdir=workdir / "logs").start()
    azure = AzureEmulator(logdir=workdir / "logs").start()
    gcp = GcpEmulator(logdir=workdir / "logs").start()
    creator: Operator | None = None
    try:
        kubectl = str(k8s_bin_dir() / "kubectl")
        subprocess.run([kubectl, "--kubeconfig", str(cp.kubeconfig), "apply", "-f", "crds/"], check=True)
        providers = [PROVIDERS[i % 3] for i in range(N)]
        per = Counter(providers)
        aws.client("eks").create_cluster(
            name=CLUSTER, roleArn=f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/eks", resourcesVpcConfig={"subnetIds": []}
        )
        iam = aws.client("iam")
        for r in range(math.ceil(per["aws"] / 10)):
            iam.create_role(RoleName=f"drift-role-{r}", AssumeRolePolicyDocument=pod_identity_trust_policy())
        for r in range(math.ceil(per["azure"] / PER_IDENTITY)):
            azure.seed_identity(SUBSCRIPTION, RG, f"drift-id-{r}")
        for r in range(math.ceil(per["gcp"] / PER_IDENTITY)):
            gcp.seed_service_account(PROJECT, f"drift-sa-{r:04d}")
        azure.settings(pageSize=AZURE_PAGE)
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
        cfg.connection_pool_maxsize = 16
        api = client.ApiClient(cfg)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        for n in range(NAMESPACES):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=f"drift-{n}")))
        names = [(f"drift-{i % NAMESPACES}", f"c-{i}") for i in range(N)]
        nth = Counter[str]()
        specs = []
        for p in providers:
            specs.append(_spec(p, nth[p]))
            nth[p] += 1
        wait_for_crd(custom)
        env = {
            **emulator_settings(
                cp.server,
                aws,
                azure,
                gcp,
                cluster=CLUSTER,
                subscription=SUBSCRIPTION,
                project=PROJECT,
                account=AWS_ACCOUNT_ID,
            ),
            # the drift-* namespaces may use the identities seeded above; admission is not what is measured here
            "PORTER_POLICY_FILE": str(write_policy(workdir / "policy.yaml", SCALE_POLICY)),
            "PORTER_WEBHOOK_PORT": "0",
        }
        stalled = [(f"drift-{i % NAMESPACES}", f"stalled-{i}") for i in range(STALLED)]
        scale = Scale(cp, api, aws, azure, gcp, env, names, providers, workdir, stalled)
        creator = scale.operator("creator", PORTER_DRIFT_SWEEP_SECONDS="3600")

        def create(i: int) -> None:
            ns, name = names[i] if i < N else stalled[i - N]
            core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ServiceIdentityConnection",
                "metadata": {"name": name},
                "spec": {
                    "serviceAccountName": name,
                    **(specs[i] if i < N else {"aws": {"role": f"drift-role-gone-{i}"}}),
                },
            }
            response: Any = custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, body, _preload_content=False
            )
            response.drain_conn()  # unread bytes on a pooled connection would answer the next request
            response.release_conn()

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(N + STALLED)))
        wait_for(lambda: scale.ready() == N, 300, interval=2, what=f"{N} connections Ready")
        wait_for(lambda: scale.stalled_count() == STALLED, 60, interval=1, what=f"{STALLED} connections Stalled")
        creator.stop()
        creator = None
        yield scale
    finally:
        if creator is not None:
            creator.stop()
        for emulator in (aws, azure, gcp):
            emulator.stop()
        cp.stop()


@pytest.fixture(scope="module")
def idle(scale: Scale) -> Iterator[dict[str, Any]]:
    """Restart the operator (a full resync) and let it finish exactly one sweep; record what it did."""
    custom, core = client.CustomObjectsApi(scale.api), client.CoreV1Api(scale.api)
    tracks = {key: Track(p, ready=0.0) for key, p in zip(scale.names, scale.providers, strict=True)}
    tracks |= {key: Track("aws", ready=0.0) for key in scale.stalled}
    listed: Any = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    watcher = Watcher(custom, tracks, str(listed["metadata"]["resourceVersion"]))
    threading.Thread(target=watcher.run, daemon=True).start()
    sa_rv = str(core.list_service_account_for_all_namespaces(limit=1).metadata.resource_version)
    threading.Thread(target=watcher.run_service_accounts, args=(core, sa_rv), daemon=True).start()
    events_before = len(core.list_event_for_all_namespaces().items)
    calls_before = scale.calls()
    # The first sweep comes one interval after start, the next one interval after it ends. 45 s leaves the resync
    # time to finish before the first (on a slow CI machine 20 s did not: the sweep saw 883 of 1,050 connections)
    # and the counters time to be read before a second sweep adds its reads to them.
    op = scale.operator("idle", PORTER_DRIFT_SWEEP_SECONDS="45", PORTER_STALLED_RECHECK_SECONDS=str(RECHECK_SECONDS))
    try:
        wait_for(
            lambda: (
                value(scrape(op), "porter_identity_drift_sweeps_total", outcome="completed") >= 1
                and _stalled_runs(scrape(op)) >= STALLED * 4
            ),
            150,
            interval=0.5,
            what="one drift sweep, and three rechecks of every Stalled connection",
        )
        metrics = scrape(op)
        calls = scale.calls() - calls_before
        writes = watcher.writes_after()
        sa_writes = sum(t.sa_writes for t in tracks.values())
        events = len(core.list_event_for_all_namespaces().items) - events_before
        yield {
            "metrics": metrics,
            "calls": calls,
            "writes": writes,
            "sa_writes": sa_writes,
            "events": events,
            "op": op,
            "log": op.log(),
        }
    finally:
        watcher.stop.set()
        op.stop()


def test_resync_and_sweep_make_no_cloud_write(idle: dict[str, Any]) -> None:
    assert set(idle["calls"]) <= READS, idle["calls"]
    kind = {"kind": "serviceidentityconnection"}
    resumed = sum(
        value(idle["metrics"], "porter_identity_reconcile_total", result="UpToDate", provider=p, **kind)
        for p in PROVIDERS
    )
    assert resumed == N  # every connection was resumed and found current, without a cloud call
    assert value(idle["metrics"], "porter_identity_drift_sweeps_total", outcome="completed") == 1
    assert value(idle["metrics"], "porter_identity_drift_sweeps_total", outcome="failed") == 0
    for provider in PROVIDERS:
        assert value(idle["metrics"], "porter_identity_drift_corrected_total", provider=provider) == 0
    # the operator's own count of its cloud calls agrees with the emulators'
    counted = Counter(
        {
            (labels["provider"], labels["operation"]): v
            for (name, pairs), v in idle["metrics"].items()
            if name == "porter_identity_cloud_api_calls_total" and (labels := dict(pairs))["outcome"] == "success" and v
        }
    )
    assert counted == Counter(
        {
            ("aws", "ListPodIdentityAssociations"): idle["calls"]["eks:ListPodIdentityAssociations"],
            ("aws", "DescribePodIdentityAssociation"): idle["calls"]["eks:DescribePodIdentityAssociation"],
            ("azure", "LIST federatedIdentityCredentials"): idle["calls"][
                "managedidentity:FederatedIdentityCredentials_List"
            ],
            ("gcp", "GetIamPolicy"): idle["calls"]["iam:GetIamPolicy"],
        }
    )


def test_resync_and_sweep_make_no_kubernetes_write(idle: dict[str, Any]) -> None:
    assert idle["writes"] == 0  # no status patch, no finalizer, nothing on any connection, Stalled ones included
    assert idle["sa_writes"] == 0
    assert idle["events"] == 0


def _stalled_runs(metrics: Any) -> float:
    kind = {"kind": "serviceidentityconnection", "provider": "aws"}
    return value(metrics, "porter_identity_reconcile_total", result="RoleNotFound", **kind)


def test_stalled_rechecks_are_quiet(idle: dict[str, Any]) -> None:
    """Three recheck intervals of 50 Stalled connections: rechecked (the counter), yet nothing written or posted
    (above) and no ERROR line: a user's mistake is not an operator error."""
    assert _stalled_runs(idle["metrics"]) >= STALLED * 4  # the resume, then three rechecks each
    lines = [json.loads(line) for line in idle["log"].splitlines() if line.startswith("{")]
    assert lines, "the operator logs JSON here"
    assert [r for r in lines if r.get("severity") in ("error", "critical")] == []


def test_sweep_cost_is_pages_not_connections(idle: dict[str, Any], scale: Scale) -> None:
    per = Counter(scale.providers)
    assert idle["calls"]["eks:ListPodIdentityAssociations"] == math.ceil(per["aws"] / 100)  # 100 per page
    assert idle["calls"]["eks:DescribePodIdentityAssociation"] == min(ROLE_CHECKS, per["aws"])  # the role-check window
    # one list per identity, AZURE_PAGE credentials per page (the last identity holds fewer)
    held = [min(PER_IDENTITY, per["azure"] - start) for start in range(0, per["azure"], PER_IDENTITY)]
    pages = sum(math.ceil(h / AZURE_PAGE) for h in held)
    assert idle["calls"]["managedidentity:FederatedIdentityCredentials_List"] == pages
    assert idle["calls"]["iam:GetIamPolicy"] == math.ceil(per["gcp"] / PER_IDENTITY)  # one per service account


def test_orphans_are_deleted_only_with_delete_orphans(scale: Scale, idle: dict[str, Any]) -> None:
    eks = scale.aws.client("eks")
    ns = scale.names[0][0]
    orphan = eks.create_pod_identity_association(
        clusterName=CLUSTER,
        namespace=ns,
        serviceAccount="departed",
        roleArn=f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/drift-role-0",
        tags={"porter.run/managed": "true", "porter.run/connection-uid": str(uuid.uuid4())},
    )["association"]["associationId"]
    fics = scale.azure.client(SUBSCRIPTION).federated_identity_credentials
    stale = credential_name(scale.cp.server, ns, "departed")
    fics.create_or_update(
        RG, "drift-id-0", stale,
        FederatedIdentityCredential(
            issuer=scale.cp.server, subject=f"system:serviceaccount:{ns}:departed", audiences=["api://AzureADTokenExchange"]
        ),
    )  # fmt: skip
    # Foreign links (not tagged, or not named by our scheme) are never touched.
    foreign = eks.create_pod_identity_association(
        clusterName=CLUSTER,
        namespace=ns,
        serviceAccount="someone",
        roleArn=f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/drift-role-0",
    )["association"]["associationId"]
    listed_before = sum(
        len(p["associations"])
        for p in eks.get_paginator("list_pod_identity_associations").paginate(clusterName=CLUSTER)
    )
    op = scale.operator("cleaner", PORTER_DRIFT_SWEEP_SECONDS="2", PORTER_DELETE_ORPHANS="true")
    try:
        wait_for(
            lambda: (
                value(scrape(op), "porter_identity_orphaned_links_deleted_total", provider="aws") == 1
                and value(scrape(op), "porter_identity_orphaned_links_deleted_total", provider="azure") == 1
            ),
            90,
            interval=0.5,
            what="both orphans deleted",
        )
    finally:
        op.stop()
    after = [
        a["associationId"]
        for p in eks.get_paginator("list_pod_identity_associations").paginate(clusterName=CLUSTER)
        for a in p["associations"]
    ]
    assert orphan not in after and foreign in after
    assert len(after) == listed_before - 1  # every connection's association is still there
    assert stale not in [c.name for c in fics.list(RG, "drift-id-0")]
    assert len(list(fics.list(RG, "drift-id-0"))) == PER_IDENTITY
