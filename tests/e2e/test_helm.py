"""The Helm chart against the real API server: server-side dry run, install, webhook wiring, uninstall, RBAC."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from porter_dev.chart import CHART, helm, template, value_args
from porter_dev.controlplane import ControlPlane
from porter_dev.processes import Operator
from tests.conftest import GROUP, OPERATOR_NAMESPACE, OPERATOR_RELEASE, VERSION, wait_for
from tests.e2e.helpers import roleset

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
FULL_VALUES = CHART / "ci" / "full-values.yaml"
# Kinds whose CRDs this node-less test cluster does not have (Prometheus Operator, cert-manager).
NOT_SERVED = {"ServiceMonitor", "Certificate", "Issuer"}
CRD_NAMES = {f"serviceidentityconnections.{GROUP}", f"porterrolesets.{GROUP}"}


@pytest.fixture
def release_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"helm-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    # The session operator's own webhook (tests/conftest.py) admits the probe connection below only if this
    # namespace may use role "probe"; the chart's webhook then answers for itself.
    kubectl("annotate", "namespace", name, "identity.porter.run/allowed-identities=aws:probe")
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def _dry_run(kubectl: Kubectl, objects: list[dict[str, Any]]) -> str:
    out = kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(objects), check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize(
    ("values", "files", "skipped"),
    [
        ({}, [], set()),
        ({}, [FULL_VALUES], {"ServiceMonitor"}),
        ({"webhook": {"certManager": {"enabled": True}}}, [], {"Certificate", "Issuer"}),
        ({"webhook": {"enabled": False}, "metrics": {"enabled": False}}, [], set()),
    ],
    ids=["defaults", "full-values", "cert-manager", "minimal"],
)
def test_rendered_manifests_pass_a_server_side_dry_run(
    kubectl: Kubectl, crds: None, release_namespace: str, values: dict[str, Any], files: list[Path], skipped: set[str]
) -> None:
    # The full example reads ExternalId Secrets in namespaces that do not exist here: point them at ours.
    values = {**values, "rbac": {"externalIdSecretNamespaces": [release_namespace]}} if files else values
    extra = [a for f in files for a in ("--values", str(f))]
    objects = template("dry", release_namespace, values, extra=extra)
    assert {o["kind"] for o in objects} & NOT_SERVED == skipped
    served = [o for o in objects if o["kind"] not in NOT_SERVED]
    out = _dry_run(kubectl, served)
    assert out.count("(server dry run)") == len(served) >= 6


def test_install_creates_everything_and_uninstall_leaves_only_the_crds(
    control_plane: ControlPlane, kubectl: Kubectl, crds: None, release_namespace: str
) -> None:
    release = f"pi-{release_namespace}"
    crd_uids = _crd_uids(kubectl)
    # The webhook has no pods behind it here (no nodes): it checks only objects with this label, so the
    # session's other tests (running against the same API server) are not refused.
    values = {"webhook": {"objectSelector": {"matchLabels": {"porter.run/helm-test": release_namespace}}}}
    installed = helm(
        "install", release, str(CHART), "--namespace", release_namespace, *value_args(values),
        kubeconfig=control_plane.kubeconfig, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert "STATUS: deployed" in installed.stdout
    notes = installed.stdout.split("NOTES:", 1)[1]
    assert f"rollout status deployment/{release}-porter-identity" in notes
    assert "kubectl get sic -A" in notes and "NotConfigured" in notes
    assert "--patch-file docs/argocd/argocd-cm.yaml" in notes and "removes everything but the CRDs" in notes

    fullname = f"{release}-porter-identity"
    expected = {
        ("ServiceAccount", fullname),
        ("ConfigMap", f"{fullname}-policy"),
        ("Secret", f"{fullname}-webhook-tls"),
        ("Service", f"{fullname}-metrics"),
        ("Service", f"{fullname}-webhook"),
        ("Deployment", fullname),
        ("Role", f"{fullname}-external-id"),
        ("RoleBinding", f"{fullname}-external-id"),
        ("Role", f"{fullname}-leader-election"),
        ("RoleBinding", f"{fullname}-leader-election"),
        ("PodDisruptionBudget", fullname),
        ("ClusterRole", fullname),
        ("ClusterRoleBinding", fullname),
        ("MutatingWebhookConfiguration", fullname),
        ("ValidatingWebhookConfiguration", fullname),
    }
    assert _labelled(kubectl, release, release_namespace) == expected
    deployment = json.loads(kubectl("-n", release_namespace, "get", "deployment", fullname, "-o", "json").stdout)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == fullname

    # The webhook is live: a matching object is sent to the operator's Service, and failurePolicy Fail refuses
    # it while no operator pod answers.
    connection = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceIdentityConnection",
        "metadata": {
            "name": "webhook-probe",
            "namespace": release_namespace,
            "labels": {"porter.run/helm-test": release_namespace},
        },
        "spec": {"serviceAccountName": "probe", "aws": {"role": "probe"}},
    }

    def refused_by_the_chart_webhook() -> str | None:
        out = kubectl("apply", "-f", "-", stdin=json.dumps(connection), check=False)
        assert out.returncode != 0, "nothing may admit it while the chart's webhook has no pod"
        return out.stderr if 'failed calling webhook "validate-connection.identity.porter.run"' in out.stderr else None

    wait_for(refused_by_the_chart_webhook, 30, what="the chart's webhook to be the one that refuses")

    # An upgrade keeps the generated CA and certificate (read back with lookup), so the caBundle stays valid.
    before = _webhook_tls(kubectl, release_namespace, fullname)
    upgraded = helm(
        "upgrade", release, str(CHART), "--namespace", release_namespace, *value_args(values),
        kubeconfig=control_plane.kubeconfig, check=False,
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr
    assert "REVISION: 2" in upgraded.stdout
    assert _webhook_tls(kubectl, release_namespace, fullname) == before

    uninstalled = helm("uninstall", release, "--namespace", release_namespace, kubeconfig=control_plane.kubeconfig)
    assert f'release "{release}" uninstalled' in uninstalled.stdout
    assert _labelled(kubectl, release, release_namespace) == set()
    left = kubectl("-n", release_namespace, "get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings", "-o",
                   "name").stdout.split()  # fmt: skip
    # Only what Kubernetes itself puts in every namespace (this control plane publishes no kube-root-ca.crt).
    assert set(left) - {"serviceaccount/default", "configmap/kube-root-ca.crt"} == set()
    # The CRDs are shared with the session's other tests: Helm installs crds/ only when absent, never replaces
    # or deletes them.
    assert _crd_uids(kubectl) == crd_uids


def _webhook_tls(kubectl: Kubectl, namespace: str, fullname: str) -> tuple[dict[str, str], set[str]]:
    """The certificate Secret's data and every caBundle of the webhook configuration."""
    secret = json.loads(kubectl("-n", namespace, "get", "secret", f"{fullname}-webhook-tls", "-o", "json").stdout)
    vwc = json.loads(kubectl("get", "validatingwebhookconfiguration", fullname, "-o", "json").stdout)
    bundles = {hook["clientConfig"]["caBundle"] for hook in vwc["webhooks"]}
    assert bundles == {secret["data"]["ca.crt"]}
    return secret["data"], bundles


def _crd_uids(kubectl: Kubectl) -> dict[str, str]:
    listed = json.loads(kubectl("get", "crd", *sorted(CRD_NAMES), "-o", "json").stdout)["items"]
    return {item["metadata"]["name"]: item["metadata"]["uid"] for item in listed}


def _labelled(kubectl: Kubectl, release: str, namespace: str) -> set[tuple[str, str]]:
    """Every object of the release, namespaced and cluster-wide, by the chart's instance label."""
    selector = f"app.kubernetes.io/instance={release}"
    kinds = "serviceaccounts,configmaps,secrets,services,deployments,roles,rolebindings,poddisruptionbudgets"
    cluster_kinds = "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations"
    found = set()
    for args in (["-n", namespace, "get", kinds], ["get", cluster_kinds]):
        listed = json.loads(kubectl(*args, "-l", selector, "-o", "json").stdout)["items"]
        found |= {(item["kind"], item["metadata"]["name"]) for item in listed}
    return found


# The session's operator runs with the chart's RBAC (tests/conftest.py, operator_kubeconfig): every e2e test that
# drives it proves these grants are enough. This one proves they are no more than the operator needs.
ALLOWED = [
    ("list", "serviceidentityconnections.identity.porter.run", None),
    ("watch", "serviceidentityconnections.identity.porter.run", None),
    ("patch", "serviceidentityconnections.identity.porter.run", "shop"),
    ("get", "serviceidentityconnections.identity.porter.run", "shop"),  # the drift repair reads it fresh
    ("list", "serviceidentityconnections.identity.porter.run", "shop"),  # the webhook counts links per identity
    ("get", "porterrolesets.identity.porter.run", None),
    ("patch", "serviceidentityconnections.identity.porter.run/status", "shop"),
    ("watch", "porterrolesets.identity.porter.run", None),
    ("patch", "porterrolesets.identity.porter.run/status", None),
    ("get", "serviceaccounts", "shop"),
    ("patch", "serviceaccounts", "shop"),
    ("list", "serviceaccounts", None),  # metadata watch: a connection waiting for its ServiceAccount
    ("watch", "serviceaccounts", None),
    ("get", "namespaces", None),  # admission reads a namespace the index has not seen yet
    ("create", "events", "shop"),
    ("create", "events", "default"),
    ("patch", "events", "shop"),
    ("get", "serviceidentityconnections.identity.porter.run", "shop"),
    ("list", "serviceaccounts", None),
    ("watch", "serviceaccounts", None),
    ("get", "namespaces", None),
    ("get", "secrets/porter-external-id", OPERATOR_NAMESPACE),
    ("list", "namespaces", None),
    ("watch", "namespaces", None),
]
DENIED = [
    ("create", "serviceidentityconnections.identity.porter.run", "shop"),
    ("update", "serviceidentityconnections.identity.porter.run", "shop"),
    ("delete", "serviceidentityconnections.identity.porter.run", "shop"),
    ("delete", "porterrolesets.identity.porter.run", None),
    ("create", "serviceaccounts", "shop"),
    ("create", "serviceaccounts/token", "shop"),
    ("get", "secrets", "kube-system"),
    # only the named ExternalId Secrets: never a Helm release Secret or the webhook's CA key
    ("get", "secrets", OPERATOR_NAMESPACE),
    ("get", "secrets/sh.helm.release.v1.porter-identity.v1", OPERATOR_NAMESPACE),
    ("get", "secrets", "shop"),
    ("list", "secrets", OPERATOR_NAMESPACE),
    ("watch", "secrets", OPERATOR_NAMESPACE),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("patch", "namespaces", None),
    ("list", "events", "shop"),
    ("patch", "events", "shop"),
    ("list", "pods", None),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io", None),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io", None),
]


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED + DENIED)
def test_operator_service_account_has_exactly_the_chart_grants(
    kubectl: Kubectl, operator_kubeconfig: Path, verb: str, resource: str, namespace: str | None
) -> None:
    account = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_RELEASE}-porter-identity"
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    out = kubectl("auth", "can-i", verb, resource, *scope, "--as", account, check=False)
    assert out.stdout.strip() == ("yes" if (verb, resource, namespace) in ALLOWED else "no"), out.stderr


def test_a_secret_outside_the_granted_namespaces_is_refused_and_explained(
    api: client.ApiClient, operator: Operator
) -> None:
    """The chart lets the operator read Secrets only in rbac.externalIdSecretNamespaces; elsewhere it says so."""
    custom = client.CustomObjectsApi(api)
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    body = roleset(name, ("kube-system", "porter-external-id"), roles=[{"preset": "porter-telemetry-manager"}])
    custom.create_cluster_custom_object(GROUP, VERSION, "porterrolesets", body)
    try:

        def stalled() -> dict[str, Any] | None:
            obj: dict[str, Any] = custom.get_cluster_custom_object(GROUP, VERSION, "porterrolesets", name)
            conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
            return conditions.get("Stalled")

        condition = wait_for(stalled, 30, what=f"PorterRoleSet {name} Stalled")
        assert condition["reason"] == "AccessDenied"
        assert condition["message"].startswith(
            "cannot read Secret kube-system/porter-external-id: the operator may not read it: the Helm chart grants "
            "reading only the Secret names of rbac.externalIdSecretNames (default porter-external-id) in the "
            "namespaces of rbac.externalIdSecretNamespaces"
        )
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "porterrolesets", name)


def test_the_endpoints_the_probes_use_answer(operator: Operator) -> None:
    """The chart's probes GET /healthz and /readyz on PORTER_HEALTH_PORT: the operator serves both."""
    [deployment] = template("probe", "porter-system", show_only=["templates/deployment.yaml"])
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "PORTER_HEALTH_PORT", "value": "8081"} in container["env"]
    operator.wait_ready()
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator.probe(container[probe]["httpGet"]["path"]) == (200, "ok")
