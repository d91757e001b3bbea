"""`porter-identity dev`: a whole local system (control plane, emulators, operator, examples) in one command."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from porter_dev import CACHE, REPO_ROOT, rbac
from porter_dev.admission import webhook_configuration, write_webhook_certificate
from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane, free_port, k8s_bin_dir
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AWS_ACCOUNT_ID, AwsEmulator, Operator, emulator_settings, pod_identity_trust_policy

EXAMPLES = REPO_ROOT / "examples"  # only manifests: `kubectl apply -f examples/` works anywhere
# The sandbox's other inputs: the identities it seeds in the emulators and its allow rules (PORTER_POLICY_FILE).
SANDBOX = REPO_ROOT / "sandbox"
POLICY = SANDBOX / "policy.yaml"


def seed_cloud(aws: AwsEmulator, fixtures: dict[str, Any]) -> str:
    """Create the customer-owned cloud identities the examples point at; returns the EKS cluster name."""
    spec = fixtures["aws"]
    eks, iam = aws.client("eks"), aws.client("iam")
    if spec["cluster"] not in eks.list_clusters()["clusters"]:
        eks.create_cluster(
            name=spec["cluster"],
            roleArn="arn:aws:iam::123456789012:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": []},
        )
    existing = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    for role in spec["roles"]:
        if role["name"] not in existing:
            iam.create_role(
                RoleName=role["name"], Path=role.get("path", "/"), AssumeRolePolicyDocument=pod_identity_trust_policy()
            )
    access = spec["accessRole"]
    if access["name"] not in existing:
        iam.create_role(RoleName=access["name"], AssumeRolePolicyDocument=access_trust_policy(access))
    return str(spec["cluster"])


def access_trust_policy(access: dict[str, str]) -> str:
    """The bootstrap trust: the management principal, gated by the ExternalId."""
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": access["managementPrincipal"]},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": access["externalId"]}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def seed_azure(azure: AzureEmulator, fixtures: dict[str, Any]) -> str:
    spec = fixtures["azure"]
    for identity in spec["identities"]:
        azure.seed_identity(spec["subscription"], identity["resourceGroup"], identity["name"])
    return str(spec["subscription"])


def seed_gcp(gcp: GcpEmulator, fixtures: dict[str, Any]) -> str:
    spec = fixtures["gcp"]
    for account in spec["serviceAccounts"]:
        gcp.seed_service_account(spec["project"], account)
    return str(spec["project"])


def kubectl(cp: ControlPlane, *args: str, check: bool = True) -> str:
    out = subprocess.run(
        [str(k8s_bin_dir() / "kubectl"), "--kubeconfig", str(cp.kubeconfig), *args],
        check=check,
        stdout=subprocess.PIPE,
        text=True,
    )
    return out.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(workdir: Path) -> None:
    state = workdir / "sandbox.json"
    if state.exists():
        for pid in json.loads(state.read_text()).values():
            if _alive(pid):
                os.killpg(pid, signal.SIGTERM)
        state.unlink()
    if (workdir / "cluster" / "state.json").exists():
        ControlPlane.load(workdir / "cluster").stop()


def up(workdir: Path, with_operator: bool = True) -> int:
    started = time.monotonic()
    down(workdir)
    # The emulators start empty, so the cluster must too: stale objects would claim links that no longer exist.
    shutil.rmtree(workdir / "cluster", ignore_errors=True)
    print("building/finding Kubernetes binaries (the first run builds them from Go modules: ~10 min)")
    bins = k8s_bin_dir()
    cp = ControlPlane(workdir=workdir / "cluster")
    cp.start()
    print(f"control plane ready at {cp.server}")
    fixtures = yaml.safe_load((SANDBOX / "cloud.yaml").read_text())
    aws = AwsEmulator(logdir=workdir / "logs").start()
    cluster = seed_cloud(aws, fixtures)
    print(f"AWS emulator at {aws.endpoint} (EKS cluster {cluster})")
    azure = AzureEmulator(logdir=workdir / "logs").start()
    subscription = seed_azure(azure, fixtures)
    print(f"Azure ARM emulator at {azure.endpoint} (subscription {subscription})")
    gcp = GcpEmulator(logdir=workdir / "logs").start()
    project = seed_gcp(gcp, fixtures)
    print(f"GCP IAM emulator at {gcp.endpoint} (project {project})")
    # what creating the cluster does in each cloud: they trust its service-account issuer
    aws.set_cluster_issuer(cluster, cp.server, cp.ca_file)
    azure.trust_issuer(cp.server, cp.ca_file)
    gcp.add_workload_pool_provider(f"{project}.svc.id.goog", cp.server, cp.ca_file)
    kubectl(cp, "apply", "-f", str(REPO_ROOT / "crds"))
    kubectl(cp, "wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
    pids = {
        "aws-emulator": aws.proc.pid if aws.proc else 0,
        "azure-emulator": azure.proc.pid if azure.proc else 0,
        "gcp-emulator": gcp.proc.pid if gcp.proc else 0,
    }
    env = {
        **emulator_settings(
            cp.server,
            aws,
            azure,
            gcp,
            cluster=cluster,
            subscription=subscription,
            project=project,
            account=AWS_ACCOUNT_ID,
        ),
        "PORTER_METRICS_PORT": str(free_port()),
        # token services for `porter-identity check` (the operator does not use them)
        "PORTER_AZURE_AUTHORITY": azure.endpoint,
        "PORTER_GCP_STS_ENDPOINT": gcp.rest_endpoint,
        "PORTER_GCP_IAM_CREDENTIALS_ENDPOINT": gcp.rest_endpoint,
        "PORTER_POLICY_FILE": str(POLICY),
        "PORTER_WEBHOOK_PORT": str(free_port()),
        "PORTER_WEBHOOK_CERT_DIR": str(workdir / "webhook"),
    }
    ca = write_webhook_certificate(workdir / "webhook")
    if with_operator:
        kubeconfig = rbac.chart_kubeconfig(cp.kubeconfig, workdir / "operator.kubeconfig", release="sandbox")
        op = Operator(kubeconfig=kubeconfig, logfile=workdir / "logs" / "operator.log", env=env).start()
        pids["operator"] = op.proc.pid if op.proc else 0
        # What the Helm chart installs: the API server asks the operator's webhook before storing a connection.
        config = webhook_configuration(int(env["PORTER_WEBHOOK_PORT"]), ca)
        subprocess.run(
            [str(k8s_bin_dir() / "kubectl"), "--kubeconfig", str(cp.kubeconfig), "apply", "-f", "-"],
            input=json.dumps(config),
            text=True,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    (workdir / "sandbox.json").write_text(json.dumps(pids))
    controls = {
        # The emulators' control routes (faults, call counters, seeding): docs/gitops.md and CONTRIBUTING.md.
        "PORTER_DEV_AWS_CONTROL": f"{aws.endpoint}/_porter",
        "PORTER_DEV_AZURE_CONTROL": f"{azure.endpoint}/_porter",
        "PORTER_DEV_GCP_CONTROL": f"{gcp.control_url}/_porter",
        "PORTER_DEV_GCP_REST": gcp.rest_endpoint,
    }
    (workdir / "env.sh").write_text(
        "".join(f"export {k}={v}\n" for k, v in {**env, **controls, "KUBECONFIG": str(cp.kubeconfig)}.items())
        # The venv's bin holds porter-identity and the kubectl-identity plugin: `kubectl identity` finds it on PATH.
        + f"export PATH={bins}:{Path(sys.executable).parent}:$PATH\n"
    )
    kubectl(cp, "apply", "-f", str(EXAMPLES))
    if with_operator:
        for ns in sorted({ns for ns, _ in example_connections()}):
            kubectl(cp, "-n", ns, "wait", "--for=condition=Ready", "sic", "--all", "--timeout=60s")
        kubectl(cp, "wait", "--for=condition=Ready", "prs", "--all", "--timeout=120s")
    print(kubectl(cp, "get", "sic", "-A"))
    print(kubectl(cp, "get", "prs"))
    if with_operator:
        check_examples(cp, env)
    print(f"sandbox up in {time.monotonic() - started:.1f}s. Use it:")
    print(f"  source {workdir / 'env.sh'}")
    print("  kubectl get sic -A; kubectl -n shop describe sic checkout-api")
    print("  kubectl describe prs dev; porter-identity diff dev; porter-identity inventory")
    print("  porter-identity check shop/checkout-api   # token -> cloud exchange -> identity, as a pod would")
    print("  kubectl apply -f sandbox/refused.yaml   # refused: deny by default, and a role of a foreign account")
    print("  kubectl annotate namespace playground identity.porter.run/allowed-identities='aws:shop-checkout'")
    print("  kubectl apply -f sandbox/refused.yaml   # playground/api is admitted and Bound; the foreign role never")
    print(f"  operator log: {workdir / 'logs' / 'operator.log'}")
    print(f"  metrics: curl -s http://127.0.0.1:{env['PORTER_METRICS_PORT']}/metrics | grep porter_identity")
    print("  porter-identity dev down   # stop everything")
    return 0


def example_connections() -> list[tuple[str, str]]:
    """(namespace, name) of every connection in examples/."""
    return [
        (doc["metadata"]["namespace"], doc["metadata"]["name"])
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "ServiceIdentityConnection"
    ]


def check_examples(cp: ControlPlane, env: dict[str, str]) -> None:
    """Run `porter-identity check` on every example connection the operator links and print its verdict."""
    names = [name for ns, name in example_connections() if ns == "shop"]
    for name in names:
        done = subprocess.run(
            [sys.executable, "-m", "porter_identity.cli", "check", f"shop/{name}"],
            env={**os.environ, **env, "KUBECONFIG": str(cp.kubeconfig)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        print(done.stdout)


def status(workdir: Path) -> int:
    state = workdir / "sandbox.json"
    if not state.exists():
        print("sandbox is not running")
        return 1
    for name, pid in json.loads(state.read_text()).items():
        print(f"{name}: {'running' if _alive(pid) else 'stopped'} (pid {pid})")
    cp = ControlPlane.load(workdir / "cluster")
    print(f"kube-apiserver: {'ready' if cp.is_ready() else 'not ready'} at {cp.server}")
    return 0


def main(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir or CACHE / "sandbox"
    if args.command == "down":
        down(workdir)
        print("sandbox stopped")
        return 0
    if args.command == "status":
        return status(workdir)
    return up(workdir, with_operator=not args.no_operator)
