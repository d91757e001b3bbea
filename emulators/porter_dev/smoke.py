"""`hack/cloud-smoke`: one ServiceIdentityConnection's whole life on a real cluster, for each configured cloud.

For each cloud: two identities (given, or made with --create-identity), a namespace whose annotation allows them,
a connection to the first, Ready, a pod whose SDK gets it, the connection moved to the second, a new pod gets
that, the connection deleted, and no link left for the ServiceAccount on either identity. Everything it makes is
deleted again in every case (docs/cloud-smoke.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from porter_dev.smoke_clouds import Aws, Azure, Cloud, Gcp, NotConfigured

GROUP, VERSION, PLURAL = "identity.porter.run", "v1alpha1", "serviceidentityconnections"
CRD = f"{PLURAL}.{GROUP}"
ALLOW_ANNOTATION = "identity.porter.run/allowed-identities"
OPERATOR_SELECTOR = "app.kubernetes.io/name=porter-identity"
SMOKE_LABEL = {"app.kubernetes.io/created-by": "porter-identity-smoke"}
AZURE_USE_LABEL = "azure.workload.identity/use"  # AKS's webhook injects the token into pods labelled so
SERVICE_ACCOUNT = CONNECTION = "smoke"
CLOUDS = ("aws", "azure", "gcp")
PROBE_PAUSE = 5.0  # between probe pods: new links take seconds to reach every cloud endpoint

stopping = threading.Event()  # Ctrl-C: every wait gives up, every cleanup still runs
_print_lock = threading.Lock()


def say(cloud: str, message: str) -> None:
    with _print_lock:
        print(f"[{cloud}] {message}", flush=True)


class Failed(Exception):
    """A step did not hold; the message says which and what was seen."""


class OperatorMissing(Exception):
    """The operator is not installed (or not Available) on the cluster."""


@dataclass
class Options:
    timeout: float
    image: str
    pull_policy: str
    overlay: dict[str, Any]
    create: set[str]
    run_id: str


@dataclass
class Outcome:
    cloud: str
    result: str  # PASS, FAIL or SKIP
    detail: str
    seconds: float = 0.0
    made: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def wait(what: str, timeout: float, check: Callable[[], Any], interval: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy; Failed with `what` (and the last value) otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline and not stopping.is_set():
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise Failed(f"{'interrupted' if stopping.is_set() else f'timed out after {timeout:.0f}s'} waiting for {what}")


def find_operator(api: Any, timeout: float) -> tuple[str, str]:
    """The operator's image and pull policy (the probe pods run it: it has the three SDKs and the cluster pulls
    it), once its Deployment is Available."""
    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD)
    except client.ApiException as err:
        if err.status != 404:
            raise
        raise OperatorMissing(
            f"porter-identity is not installed on this cluster: there is no CustomResourceDefinition {CRD}. "
            "Install the operator with its Helm chart first (README: Install with Helm)."
        ) from None
    apps: Any = client.AppsV1Api(api)

    def available() -> Any:
        found = apps.list_deployment_for_all_namespaces(label_selector=OPERATOR_SELECTOR).items
        return next((d for d in found if (d.status.available_replicas or 0) > 0), None) or (not found and "none")

    try:
        found = wait("the operator Deployment to be Available", timeout, available, interval=2)
    except Failed:
        raise OperatorMissing(
            f"the porter-identity operator is not Available: no Deployment labelled {OPERATOR_SELECTOR} "
            f"has an available replica after {timeout:.0f}s (kubectl get deploy -A -l {OPERATOR_SELECTOR})"
        ) from None
    if found == "none":
        raise OperatorMissing(
            f"the CRDs are installed but the porter-identity operator is not: no Deployment labelled "
            f"{OPERATOR_SELECTOR} in any namespace. Install it with its Helm chart (README: Install with Helm)."
        )
    containers = found.spec.template.spec.containers
    container = next((c for c in containers if c.name == "operator"), containers[0])
    say("cluster", f"operator Deployment {found.metadata.namespace}/{found.metadata.name} is Available")
    return str(container.image), str(container.image_pull_policy or "IfNotPresent")


def _fill(value: Any, values: dict[str, str]) -> Any:
    """The overlay with {{identity}}, {{namespace}} and {{serviceAccount}} replaced, in every string."""
    if isinstance(value, str):
        for key, filled in values.items():
            value = value.replace("{{" + key + "}}", filled)
        return value
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


class Lifecycle:
    """One cloud's run on the cluster; `run` raises Failed, `cleanup` never raises."""

    def __init__(self, cloud: Cloud, options: Options) -> None:
        self.cloud, self.options = cloud, options
        # One API client per cloud's thread; the SDK's models are bypassed (dicts in, dicts or models out).
        self.api = config.new_client_from_config()  # type: ignore[no-untyped-call]
        self.core: Any = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)
        self.last_condition: dict[str, Any] | None = None
        self.namespace = f"pid-smoke-{cloud.name}-{options.run_id}"
        self.made: list[str] = []
        self.probes = 0

    def say(self, message: str) -> None:
        say(self.cloud.name, message)

    # The connection.

    def _get(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, CONNECTION
            )
            return found
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise

    def _ready(self) -> dict[str, Any] | None:
        found = self._get()
        if found is None:
            return None
        generation = found["metadata"].get("generation", 0)
        ready = next((c for c in found.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)
        self.last_condition = ready
        if ready and ready["status"] == "True" and (ready.get("observedGeneration") or 0) >= generation:
            return found
        return None

    def wait_ready(self) -> None:
        self.last_condition = None
        try:
            wait(f"connection {self.namespace}/{CONNECTION} to be Ready", self.options.timeout, self._ready)
        except Failed as err:
            seen = self.last_condition
            shown = f"; Ready={seen['status']} {seen['reason']}: {seen.get('message', '')}" if seen else ""
            raise Failed(f"{err}{shown}") from None

    def apply(self, identity: str) -> None:
        found = self._get()
        spec = {"serviceAccountName": SERVICE_ACCOUNT, **self.cloud.spec(identity)}
        if found is None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ServiceIdentityConnection",
                "metadata": {"name": CONNECTION, "namespace": self.namespace},
                "spec": spec,
            }
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
            self.made.append(f"ServiceIdentityConnection {self.namespace}/{CONNECTION}")
        else:
            found["spec"] = spec  # the identity change: the same connection, another identity
            self.custom.replace_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, CONNECTION, found)
        self.say(f"connection {self.namespace}/{CONNECTION} -> {identity}")
        self.wait_ready()
        self.say("connection is Ready")

    def delete_connection(self) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, CONNECTION)
        except client.ApiException as err:
            if err.status != 404:
                raise
        wait(f"connection {self.namespace}/{CONNECTION} to be deleted", self.options.timeout, lambda: not self._get())

    # The cloud side.

    def expect_links(self, identity: str | None) -> None:
        """The ServiceAccount's links are exactly one, on `identity` (None: no link at all)."""
        found = self.cloud.links(self.namespace, SERVICE_ACCOUNT)
        wrong = {i: links for i, links in found.items() if links and i != identity}
        mine = found.get(identity, []) if identity else []
        if wrong or (identity and len(mine) != 1):
            raise Failed(f"expected one link on {identity or 'no identity'}; the cloud has {found}")
        self.say(f"cloud: {mine[0]} on {identity}" if identity else "cloud: no link left on either identity")

    # The workload.

    def _pod(self, name: str, identity: str) -> dict[str, Any]:
        overlay = _fill(
            self.options.overlay.get(self.cloud.name, {}),
            {"identity": identity, "namespace": self.namespace, "serviceAccount": SERVICE_ACCOUNT},
        )
        for config_map, data in overlay.get("configMaps", {}).items():
            body = {"metadata": {"name": config_map, "labels": SMOKE_LABEL}, "data": data}
            try:
                self.core.replace_namespaced_config_map(config_map, self.namespace, body)
            except client.ApiException as err:
                if err.status != 404:
                    raise
                self.core.create_namespaced_config_map(self.namespace, body)
        labels = {**SMOKE_LABEL, **({AZURE_USE_LABEL: "true"} if self.cloud.name == "azure" else {})}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {**labels, **overlay.get("labels", {})}},
            "spec": {
                "serviceAccountName": SERVICE_ACCOUNT,
                "restartPolicy": "Never",
                "hostAliases": overlay.get("hostAliases", []),
                # What the restricted Pod Security Standard asks; the operator image runs as 65532.
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {
                        "name": "probe",
                        "image": self.options.image,
                        "imagePullPolicy": self.options.pull_policy,
                        "command": ["python", "-c", self.cloud.probe],
                        "env": [{"name": k, "value": v} for k, v in overlay.get("env", {}).items()],
                        "volumeMounts": overlay.get("volumeMounts", []),
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                    }
                ],
                "volumes": overlay.get("volumes", []),
            },
        }

    def _run_probe(self, identity: str) -> dict[str, Any]:
        self.probes += 1
        name = f"probe-{self.probes}"
        self.core.create_namespaced_pod(self.namespace, self._pod(name, identity))

        waiting: list[str] = []

        def finished() -> str | None:
            status = self.core.read_namespaced_pod(name, self.namespace).status
            # Why it has not run yet (ImagePullBackOff, ...), for the report if it never does.
            waiting[:] = [
                f"{c.state.waiting.reason}: {c.state.waiting.message or ''}"
                for c in status.container_statuses or []
                if c.state and c.state.waiting and c.state.waiting.reason
            ]
            return str(status.phase) if status.phase in ("Succeeded", "Failed") else None

        try:
            try:
                phase = wait(f"pod {self.namespace}/{name} to finish", self.options.timeout, finished)
            except Failed as err:
                raise Failed(f"{err}{'; ' + '; '.join(waiting) if waiting else ''}") from None
            logs = str(self.core.read_namespaced_pod_log(name, self.namespace))
        finally:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        lines = [line for line in logs.splitlines() if line.startswith("{")]
        if phase != "Succeeded" or not lines:
            return {"error": f"pod {phase}", "message": logs[-2000:]}
        answer: dict[str, Any] = json.loads(lines[-1])
        return answer

    def expect_pod_gets(self, identity: str) -> None:
        """A new pod of the ServiceAccount gets `identity` through its SDK's default chain; new pods are tried
        until the step's timeout, as a new link takes a while to reach every endpoint of a cloud."""
        deadline = time.monotonic() + self.options.timeout
        while True:
            answer = self._run_probe(identity)
            if self.cloud.answer_is(answer, identity):
                self.say(f"pod got {identity}: {answer}")
                return
            if time.monotonic() > deadline or stopping.is_set():
                raise Failed(f"a pod of {self.namespace}/{SERVICE_ACCOUNT} did not get {identity}; it got {answer}")
            self.say(f"pod did not get {identity} yet ({answer}); trying a new pod")
            time.sleep(PROBE_PAUSE)

    # The whole life.

    def run(self) -> None:
        if self.cloud.name in self.options.create:
            self.cloud.create(self.options.run_id)
            self.say(f"created (tagged as the smoke run's): {', '.join(self.cloud.made)}")
        elif not self.cloud.identities:
            self.cloud.use_given()
        first, second = self.cloud.identities
        namespace = {
            "metadata": {
                "name": self.namespace,
                "labels": SMOKE_LABEL,
                # The cluster admin's consent for this namespace: exactly the two identities of the run.
                "annotations": {ALLOW_ANNOTATION: self.cloud.allow()},
            }
        }
        self.core.create_namespace(namespace)
        self.made.append(f"Namespace {self.namespace}")
        self.core.create_namespaced_service_account(self.namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
        self.apply(first)
        self.expect_links(first)
        self.expect_pod_gets(first)
        self.apply(second)
        self.expect_links(second)
        self.expect_pod_gets(second)
        self.delete_connection()
        self.say("connection deleted")
        self.expect_links(None)

    def cleanup(self) -> list[str]:
        """Delete everything made, whatever happened; returns what is left (never raises)."""
        left: list[str] = []
        if any(m.startswith("ServiceIdentityConnection") for m in self.made):
            try:
                if self._get() is not None:
                    self.say("cleanup: deleting the connection (the operator removes its link)")
                    self.delete_connection()
            except Exception as err:  # reported; its links are still looked for and removed
                left.append(f"ServiceIdentityConnection {self.namespace}/{CONNECTION}: {err}")
            try:
                leftover = self.cloud.links(self.namespace, SERVICE_ACCOUNT)
                found = [f"{link} on {identity}" for identity, links in leftover.items() for link in links]
                if found:
                    # The operator did not remove them: the run does, and still fails.
                    self.cloud.unlink(self.namespace, SERVICE_ACCOUNT)
                    left += [f"{link} (the operator left it; the smoke run removed it)" for link in found]
            except Exception as err:  # reported; the rest of the cleanup still runs
                left.append(f"links of {self.namespace}/{SERVICE_ACCOUNT}: {err}")
        if any(m.startswith("Namespace") for m in self.made):
            try:
                self.core.delete_namespace(self.namespace)
            except client.ApiException as err:
                if err.status != 404:
                    left.append(f"Namespace {self.namespace}: {err.reason}")
            except Exception as err:  # reported; the identities are still deleted
                left.append(f"Namespace {self.namespace}: {err}")
        left += self.cloud.cleanup()
        return left


def build_clouds(args: argparse.Namespace) -> tuple[list[Cloud], list[Outcome]]:
    """The configured clouds, and a SKIP for each one that is not (with why)."""
    makers: dict[str, Callable[[], Cloud]] = {
        "aws": lambda: Aws(args.eks_cluster, args.aws_region, args.aws_roles),
        "azure": lambda: Azure(
            args.azure_subscription,
            args.azure_resource_group,
            args.oidc_issuer,
            args.azure_location,
            args.azure_identities,
        ),
        "gcp": lambda: Gcp(args.gcp_project, args.gcp_service_accounts),
    }
    clouds: list[Cloud] = []
    skipped: list[Outcome] = []
    for name in args.clouds:
        try:
            cloud = makers[name]()
            if name not in args.create_identity:
                cloud.use_given()
            clouds.append(cloud)
        except NotConfigured as why:
            say(name, f"skipped: {why}")
            skipped.append(Outcome(name, "SKIP", str(why)))
        except Exception as err:  # e.g. a named identity that does not exist: nothing was made yet
            say(name, f"FAILED before starting: {type(err).__name__}: {err}")
            skipped.append(Outcome(name, "FAIL", f"{type(err).__name__}: {err}"))
    return clouds, skipped


def run_cloud(cloud: Cloud, options: Options) -> Outcome:
    started = time.monotonic()
    life = Lifecycle(cloud, options)
    outcome = Outcome(cloud.name, "PASS", "pod got both identities; no link left")
    try:
        life.run()
    except NotConfigured as why:
        outcome = Outcome(cloud.name, "SKIP", str(why))
    except Exception as err:  # every failure is reported the same way, and cleaned up after
        outcome = Outcome(
            cloud.name, "FAIL", f"{type(err).__name__}: {err}" if not isinstance(err, Failed) else str(err)
        )
        life.say(f"FAILED: {outcome.detail}")
    finally:
        outcome.left = life.cleanup()
        outcome.made = [*cloud.made, *life.made]
        if outcome.left and outcome.result != "SKIP":
            outcome.result = "FAIL"
            outcome.detail += f"; left behind: {'; '.join(outcome.left)}"
        outcome.seconds = time.monotonic() - started
    return outcome


def summary(outcomes: list[Outcome]) -> str:
    lines = ["", "cloud-smoke summary"]
    for o in sorted(outcomes, key=lambda o: CLOUDS.index(o.cloud)):
        took = f"{o.seconds:5.0f}s" if o.result != "SKIP" else "      "
        lines.append(f"  {o.cloud:6} {o.result:4} {took}  {o.detail}")
    made = [(o.cloud, m) for o in outcomes for m in o.made]
    if made:
        lines.append("made by this run (all deleted again unless listed as left behind):")
        lines += [f"  {cloud:6} {m}" for cloud, m in made]
    return "\n".join(lines)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="hack/cloud-smoke",
        description="Run one connection's whole life on a real cluster (KUBECONFIG) for each configured cloud. "
        "See docs/cloud-smoke.md.",
    )
    p.add_argument("--clouds", type=_csv, default=list(CLOUDS), help="clouds to try (default: aws,azure,gcp)")
    p.add_argument(
        "--create-identity",
        nargs="?",
        const=",".join(CLOUDS),
        default="",
        type=_csv,
        help="make two identities per cloud with the SDK (tagged as the smoke run's; deleted at the end); "
        "optionally only for some clouds, e.g. --create-identity=aws,azure",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=float(env("PORTER_SMOKE_TIMEOUT", "300")),
        help="seconds each step may take (default 300: new identities take a while to propagate)",
    )
    p.add_argument(
        "--image",
        default=env("PORTER_SMOKE_IMAGE", ""),
        help="image of the probe pods (default: the operator's own, which has the three SDKs)",
    )
    p.add_argument(
        "--pod-overlay",
        default=env("PORTER_SMOKE_POD_OVERLAY", ""),
        help="JSON file: per cloud, env, labels, volumes, volumeMounts, hostAliases and configMaps "
        "added to each probe pod, for clusters without the cloud's injection (docs/cloud-smoke.md)",
    )
    aws = p.add_argument_group("AWS (EKS with the Pod Identity Agent add-on; credentials: the boto3 chain)")
    aws.add_argument("--eks-cluster", default=env("EKS_CLUSTER_NAME", ""))
    aws.add_argument("--aws-region", default=env("AWS_REGION", env("AWS_DEFAULT_REGION", "")))
    aws.add_argument("--aws-roles", default=env("PORTER_SMOKE_AWS_ROLES", ""), help="two role names or ARNs: A,B")
    az = p.add_argument_group("Azure (AKS with OIDC issuer and workload identity; credentials: DefaultAzureCredential)")
    az.add_argument("--azure-subscription", default=env("AZURE_SUBSCRIPTION_ID", ""))
    az.add_argument("--azure-resource-group", default=env("AZURE_RESOURCE_GROUP", ""))
    az.add_argument(
        "--oidc-issuer",
        default=env("AKS_OIDC_ISSUER", ""),
        help="the cluster's issuer: the federated credential must name it (az aks show --query "
        "oidcIssuerProfile.issuerUrl)",
    )
    az.add_argument("--azure-location", default=env("AZURE_LOCATION", ""), help="for --create-identity")
    az.add_argument(
        "--azure-identities",
        default=env("PORTER_SMOKE_AZURE_IDENTITIES", ""),
        help="two user-assigned identities, NAME or RESOURCE_GROUP/NAME: A,B",
    )
    gcp = p.add_argument_group("GCP (GKE with Workload Identity; credentials: Application Default Credentials)")
    gcp.add_argument("--gcp-project", default=env("GOOGLE_CLOUD_PROJECT", env("CLOUDSDK_CORE_PROJECT", "")))
    gcp.add_argument(
        "--gcp-service-accounts",
        default=env("PORTER_SMOKE_GCP_SERVICE_ACCOUNTS", ""),
        help="two IAM service account emails: A,B",
    )
    args = p.parse_args(argv)
    unknown = set(args.clouds + args.create_identity) - set(CLOUDS)
    if unknown:
        p.error(f"unknown cloud(s): {', '.join(sorted(unknown))} (expected aws, azure, gcp)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    clouds, skipped = build_clouds(args)
    if not clouds:
        print(summary(skipped))
        if any(o.result == "FAIL" for o in skipped):
            return 1
        print("nothing to run: no cloud is configured (docs/cloud-smoke.md lists the settings)", file=sys.stderr)
        return 2
    try:
        api = config.new_client_from_config()  # type: ignore[no-untyped-call]
        image, pull_policy = find_operator(api, min(args.timeout, 120))
    except OperatorMissing as err:
        print(f"cloud-smoke: {err}", file=sys.stderr)
        return 2
    except config.ConfigException as err:
        print(f"cloud-smoke: no cluster to run on (set KUBECONFIG): {err}", file=sys.stderr)
        return 2
    except Exception as err:  # unreachable API server, refused credentials: nothing was made yet
        print(f"cloud-smoke: cannot use the cluster: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    overlay = json.loads(Path(args.pod_overlay).read_text()) if args.pod_overlay else {}
    options = Options(
        args.timeout,
        args.image or image,
        pull_policy if not args.image else "IfNotPresent",
        overlay,
        set(args.create_identity),
        uuid.uuid4().hex[:6],
    )
    say("cluster", f"run {options.run_id}: {', '.join(c.name for c in clouds)}; probe image {options.image}")
    with ThreadPoolExecutor(len(clouds)) as pool:
        futures = [pool.submit(run_cloud, cloud, options) for cloud in clouds]
        try:
            outcomes = [f.result() for f in futures]
        except KeyboardInterrupt:
            stopping.set()  # every wait gives up; each cloud still cleans up before its thread ends
            print("interrupted: cleaning up", file=sys.stderr)
            outcomes = [f.result() for f in futures]
    print(summary(outcomes + skipped))
    failed = [o for o in outcomes + skipped if o.result == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
