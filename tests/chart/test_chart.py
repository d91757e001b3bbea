"""The Helm chart as rendered by the real helm: lint, schema, settings, security context, RBAC, webhook, metrics."""

from __future__ import annotations

import base64
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from porter_dev import REPO_ROOT
from porter_dev.chart import CHART, helm, template, value_args
from porter_identity.api import crd
from porter_identity.api.policy import load as load_policy
from porter_identity.config import LeaderElection, RateLimits, Settings

FULL_VALUES = CHART / "ci" / "full-values.yaml"
# Settings the chart sets from other values (ports, mounted files), not from `config`.
FROM_OTHER_VALUES = {"metrics_port", "health_port", "rate_limits", "webhook_port", "webhook_cert_dir", "policy_file"}
FROM_OTHER_VALUES |= {"leader_election"}  # leaderElection.*, with the release's name and namespace
# The release namespace and the operator's own identities (serviceAccount.*), never a connection's target.
FROM_OTHER_VALUES |= {
    "operator_namespace",
    "operator_aws_role_arn",
    "operator_azure_client_id",
    "operator_gcp_service_account",
}
# Settings `porter-identity check` reads on a workstation (token exchange endpoints); the operator never uses them.
CHECK_ONLY = {"azure_authority", "gcp_sts_endpoint", "gcp_iam_credentials_endpoint", "gcp_identity_provider"}
# Settings that only make sense against the local emulators, never in a cluster.
EMULATOR_ONLY = {"azure_ca_file", "azure_credential", "gcp_iam_endpoint"}


def render(values: dict[str, Any] | None = None, *files: Path) -> list[dict[str, Any]]:
    return template("rel", "porter-system", values, extra=[a for f in files for a in ("--values", str(f))])


def one(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    return found


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [c] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(objects)["env"] if "value" in e}


def camel(snake: str) -> str:
    first, *rest = snake.split("_")
    return first + "".join(part.title() for part in rest)


# --- lint and schema -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("files", [[], [FULL_VALUES]], ids=["defaults", "full-values"])
def test_lint_strict_is_clean(files: list[Path]) -> None:
    out = helm("lint", "--strict", str(CHART), *[a for f in files for a in ("--values", str(f))], check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replica": 2}, "additional properties 'replica' not allowed"),
        ({"replicas": 0}, "/replicas"),
        ({"config": {"awsAccountId": "12345"}}, "/config/awsAccountId"),
        ({"config": {"awsAccountId": 123456789012}}, "/config/awsAccountId"),
        ({"config": {"azureSubscriptionId": "not-a-guid"}}, "/config/azureSubscriptionId"),
        ({"config": {"oidcIssuer": "http://issuer.example"}}, "/config/oidcIssuer"),
        ({"config": {"maxWorkers": 0}}, "/config/maxWorkers"),
        ({"config": {"retryBaseSeconds": 0}}, "/config/retryBaseSeconds"),
        ({"config": {"azureCredential": "emulator"}}, "additional properties 'azureCredential' not allowed"),
        ({"serviceAccount": {"awsRoleArn": "my-role"}}, "/serviceAccount/awsRoleArn"),
        ({"serviceAccount": {"create": False}}, "/serviceAccount/name"),  # an existing ServiceAccount needs its name
        ({"serviceAccount": {"gcpServiceAccount": "me@gmail.com"}}, "/serviceAccount/gcpServiceAccount"),
        ({"rbac": {"externalIdSecretNamespaces": ["Not_A_Namespace"]}}, "/rbac/externalIdSecretNamespaces/0"),
        ({"webhook": {"failurePolicy": "Sometimes"}}, "/webhook/failurePolicy"),
        ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
        ({"webhook": {"certManager": {"issuerRef": {"kind": "Vault"}}}}, "/webhook/certManager/issuerRef/kind"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"policy": {"rules": "allow everything"}}, "/policy/rules"),
        ({"policy": {"rules": [], "maxLinksPerNamespacePerIdentity": 0}}, "/policy/maxLinksPerNamespacePerIdentity"),
        ({"config": {"protectedNamespaces": ["Kube_System"]}}, "/config/protectedNamespaces/0"),
        ({"serviceAccount": {"podIdentityRoleArn": "my-role"}}, "/serviceAccount/podIdentityRoleArn"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
        ({"config": {"rolesets": "yes"}}, "/config/rolesets"),
        # PorterRoleSets serve one configured account, and read only named Secrets.
        ({"config": {"rolesets": True}}, "/config"),
        ({"config": {"rolesets": True, "awsAccountId": ""}}, "/config/awsAccountId"),
        ({"rbac": {"externalIdSecretNames": []}}, "/rbac/externalIdSecretNames"),
        ({"rbac": {"externalIdSecretNames": ["Helm.Release"]}}, "/rbac/externalIdSecretNames/0"),
        ({"rateLimits": {"azure_write": {"per_second": 0, "burst": 5}}}, "/rateLimits/azure_write/per_second"),
        ({"rateLimits": {"azure_write": {"per_second": 5}}}, "/rateLimits/azure_write"),
        ({"rateLimits": {"oracle_write": {"per_second": 5, "burst": 5}}}, "additional properties 'oracle_write'"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    for command in (["template", "rel"], ["lint", "--strict"]):
        out = helm(*command, str(CHART), *value_args(values), check=False)
        assert out.returncode != 0, f"helm {command[0]} accepted {values}"
        assert complaint in out.stdout + out.stderr


def test_chart_ships_the_generated_crds() -> None:
    shown = helm("show", "crds", str(CHART)).stdout
    by_name = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(shown)}
    assert by_name == {doc["metadata"]["name"]: doc for doc in crd.all_crds().values()}


def test_chart_versions_follow_the_operator() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == version
    assert chart["version"] == version


def test_every_config_key_is_an_operator_setting_with_its_default() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]["properties"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    fields = Settings.model_fields
    assert set(schema) == set(defaults)
    assert set(schema) == {camel(f) for f in fields if f not in FROM_OTHER_VALUES | EMULATOR_ONLY | CHECK_ONLY}
    for key, value in defaults.items():
        default = fields[re.sub(r"([A-Z])", r"_\1", key).lower()].default
        assert value == ("" if default is None else default), key


def test_rendered_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    full = render(None, FULL_VALUES)
    for key in [k for k in os.environ if k.startswith("PORTER_")]:
        monkeypatch.delenv(key)
    for name, value in env_of(full).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.eks_cluster_name == "prod" and settings.aws_account_id == "123456789012"
    assert settings.aws_max_attempts == 5 and settings.retry_base_seconds == 0.5
    assert settings.azure_subscription_id == "00000000-0000-0000-0000-000000000001"
    assert settings.workload_pool == "porter-prod.svc.id.goog"
    assert settings.metrics_port == 8080
    # Defaults leave optional settings unset rather than empty (an empty PORTER_AWS_ACCOUNT_ID would not validate).
    assert "PORTER_AWS_ACCOUNT_ID" not in env_of(render())
    assert env_of(render())["PORTER_AWS_REGION"] == "us-east-1"


# --- Deployment ------------------------------------------------------------------------------------------------------


def test_deployment_is_two_rolling_restricted_pods_with_probes_and_limits() -> None:
    objects = render()
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(objects)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["args"] == ["--log-format=json"]
    assert {"name": "health", "containerPort": 8081} in c["ports"]
    assert {"name": "PORTER_HEALTH_PORT", "value": "8081"} in c["env"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert set(c["resources"]) == {"requests", "limits"}
    assert c["image"] == "ghcr.io/porter-dev/porter-identity:0.1.0"
    assert pod["serviceAccountName"] == "rel-porter-identity"


def test_image_user_matches_the_pod_security_context() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    context = one(render(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user
    assert user[0] != "0"


def test_image_is_multi_stage_pinned_and_ships_only_the_operator() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert bases == ["${BASE}", "${BASE}"], "a build stage and a runtime stage on the same base"
    [default] = re.findall(r"^ARG BASE=(\S+)$", dockerfile, re.M)
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[a-f0-9]{64})?", default), default
    assert "-c hack/constraints.txt" in dockerfile, "the image installs the versions the tests ran with"
    assert "org.opencontainers.image.source" in dockerfile
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ignore[0] == "*", "everything is excluded unless listed"
    assert {line for line in ignore if line.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!LICENSE",
        "!hack/constraints.txt",
        "!operator/",
    }


def test_cloud_identity_of_the_operator_itself() -> None:
    plain = render()
    assert "annotations" not in one(plain, "ServiceAccount")["metadata"]
    assert "azure.workload.identity/use" not in one(plain, "Deployment")["spec"]["template"]["metadata"]["labels"]
    full = render(None, FULL_VALUES)
    annotations = one(full, "ServiceAccount")["metadata"]["annotations"]
    assert annotations == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/porter-identity-operator",
        "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000003",
        "iam.gke.io/gcp-service-account": "porter-identity@porter-prod.iam.gserviceaccount.com",
        "example.com/owner": "platform",
    }
    labels = one(full, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    assert one(full, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "porter-identity-operator"


# --- RBAC ------------------------------------------------------------------------------------------------------------


def test_cluster_role_grants_only_what_the_operator_calls() -> None:
    rules = one(render(), "ClusterRole")["rules"]
    granted = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    kinds = ("serviceidentityconnections", "porterrolesets")
    assert granted == {
        # get: a connection read fresh before a run outside its handler (the drift repair, revocation)
        *(("identity.porter.run", kind, verb) for kind in kinds for verb in ("get", "list", "watch", "patch")),
        *(("identity.porter.run", f"{kind}/status", "patch") for kind in kinds),
        *(("", "serviceaccounts", verb) for verb in ("get", "list", "watch", "patch")),
        ("", "events", "create"),
        ("", "events", "patch"),
        *(("", "namespaces", verb) for verb in ("get", "list", "watch")),
    }


def test_role_sets_are_served_only_when_enabled_with_an_account() -> None:
    assert env_of(render())["PORTER_ROLESETS"] == "false"
    enabled = env_of(render({"config": {"rolesets": True, "awsAccountId": "123456789012"}}))
    assert (enabled["PORTER_ROLESETS"], enabled["PORTER_AWS_ACCOUNT_ID"]) == ("true", "123456789012")


def test_protected_namespaces_and_own_identities_reach_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    """RBAC cannot exclude namespaces from the ClusterRole: the operator's settings do, from these values."""
    for key in [k for k in os.environ if k.startswith("PORTER_")]:
        monkeypatch.delenv(key)
    for name, value in env_of(render()).items():
        monkeypatch.setenv(name, value)
    plain = Settings()
    assert plain.protected_namespaces == ["kube-system", "kube-public", "kube-node-lease"]
    assert (plain.operator_namespace, plain.allow_operator_namespace) == ("porter-system", False)
    assert (plain.operator_aws_role_arn, plain.operator_azure_client_id, plain.operator_gcp_service_account) == (
        None,
        None,
        None,
    )
    full = env_of(render(None, FULL_VALUES))
    assert full["PORTER_OPERATOR_AWS_ROLE_ARN"] == "arn:aws:iam::123456789012:role/porter-identity-operator"
    assert full["PORTER_OPERATOR_AZURE_CLIENT_ID"] == "00000000-0000-0000-0000-000000000003"
    assert full["PORTER_OPERATOR_GCP_SERVICE_ACCOUNT"] == "porter-identity@porter-prod.iam.gserviceaccount.com"
    pod_identity = "arn:aws:iam::123456789012:role/operator-pod-identity"
    objects = render({"serviceAccount": {"podIdentityRoleArn": pod_identity}, "config": {"protectedNamespaces": []}})
    assert env_of(objects)["PORTER_OPERATOR_AWS_ROLE_ARN"] == pod_identity
    assert "annotations" not in one(objects, "ServiceAccount")["metadata"], "Pod Identity needs no annotation"
    assert env_of(objects)["PORTER_PROTECTED_NAMESPACES"] == "[]"


def test_the_policy_budget_reaches_the_operator(tmp_path: Path) -> None:
    policy = {"rules": [], "maxLinksPerNamespacePerIdentity": 3}
    rendered = one(render({"policy": policy}), "ConfigMap", "-policy")["data"]["policy.yaml"]
    (tmp_path / "policy.yaml").write_text(rendered)
    assert load_policy(tmp_path / "policy.yaml").max_links_per_namespace_per_identity == 3


def test_rate_limits_reach_the_operator_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(render({"rateLimits": {"azure_write": {"per_second": 5, "burst": 50}}}))
    monkeypatch.setenv("PORTER_RATE_LIMITS", env["PORTER_RATE_LIMITS"])
    limits = Settings().rate_limits
    assert (limits.azure_write.per_second, limits.azure_write.burst) == (5, 50)
    assert limits.gcp_write == RateLimits().gcp_write, "buckets not named keep their defaults"
    assert "PORTER_RATE_LIMITS" not in env_of(render())


def test_secrets_are_readable_only_in_the_listed_namespaces_and_names() -> None:
    default = [
        o
        for o in render()
        if o["kind"] in ("Role", "RoleBinding") and not o["metadata"]["name"].endswith("-leader-election")
    ]
    assert sorted((o["kind"], o["metadata"]["namespace"]) for o in default) == [
        ("Role", "porter-system"),
        ("RoleBinding", "porter-system"),
    ]
    # By default one fixed name: never any Secret (Helm release Secrets, the webhook's CA key) of the namespace.
    [role] = [o for o in default if o["kind"] == "Role"]
    assert role["rules"][0]["resourceNames"] == ["porter-external-id"]
    full = render(None, FULL_VALUES)
    roles = [o for o in full if o["kind"] == "Role" and not o["metadata"]["name"].endswith("-leader-election")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["porter-roles", "porter-system"]
    for role in roles:
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["porter-external-id"]}
        ]


# --- webhook, policy, metrics ----------------------------------------------------------------------------------------


WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def webhooks(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The connection's webhook (mutating), then the PorterRoleSet's (validating)."""
    return [hook for kind in WEBHOOK_KINDS for hook in one(objects, kind)["webhooks"]]


def test_webhook_configuration() -> None:
    """A connection's webhook is a mutating one (it adds the finalizer at create, and is called again after a later
    webhook's change); a PorterRoleSet's validates only."""
    objects = render()
    hooks = webhooks(objects)
    assert [(h["name"], h["clientConfig"]["service"]["path"], h["rules"][0]["resources"]) for h in hooks] == [
        ("validate-connection.identity.porter.run", "/validate-connection", ["serviceidentityconnections"]),
        ("validate-roleset.identity.porter.run", "/validate-roleset", ["porterrolesets"]),
    ]
    assert one(objects, "MutatingWebhookConfiguration")["webhooks"][0]["reinvocationPolicy"] == "IfNeeded"
    assert "reinvocationPolicy" not in one(objects, "ValidatingWebhookConfiguration")["webhooks"][0]
    for hook in hooks:
        assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
        assert (hook["failurePolicy"], hook["sideEffects"], hook["timeoutSeconds"]) == ("Fail", "None", 5)
        assert hook["clientConfig"]["service"] == {
            "name": "rel-porter-identity-webhook",
            "namespace": "porter-system",
            "path": hook["clientConfig"]["service"]["path"],
            "port": 443,
        }
    service = one(objects, "Service", "-webhook")
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}]
    env = env_of(objects)
    assert env["PORTER_WEBHOOK_PORT"] == "9443"
    assert env["PORTER_WEBHOOK_CERT_DIR"] == "/etc/porter/webhook"
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    assert mounts["webhook-tls"] == "/etc/porter/webhook"


def test_generated_certificate_is_signed_by_the_ca_bundle_for_the_service_name() -> None:
    objects = render()
    secret = one(objects, "Secret", "-webhook-tls")
    ca_bundle = one(objects, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    assert secret["data"]["ca.crt"] == ca_bundle
    assert one(objects, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"] == ca_bundle
    ca = x509.load_pem_x509_certificate(base64.b64decode(ca_bundle))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "rel-porter-identity-webhook.porter-system.svc" in names
    assert b"PRIVATE KEY" in base64.b64decode(secret["data"]["tls.key"])


def test_cert_manager_issues_the_certificate_instead() -> None:
    objects = render({"webhook": {"certManager": {"enabled": True}}})
    assert not [o for o in objects if o["kind"] == "Secret"]
    certificate = one(objects, "Certificate")
    assert certificate["spec"]["secretName"] == "rel-porter-identity-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {"name": "rel-porter-identity-selfsigned", "kind": "Issuer"}
    assert one(objects, "Issuer")["spec"] == {"selfSigned": {}}
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        configuration = one(objects, kind)
        assert configuration["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": "porter-system/rel-porter-identity-webhook"
        }
        assert all("caBundle" not in h["clientConfig"] for h in configuration["webhooks"])
    given = render(
        {"webhook": {"certManager": {"enabled": True, "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}}}
    )
    assert not [o for o in given if o["kind"] == "Issuer"]
    assert one(given, "Certificate")["spec"]["issuerRef"] == {"name": "ca", "kind": "ClusterIssuer"}


def test_webhook_disabled_renders_none_of_it() -> None:
    objects = render({"webhook": {"enabled": False}})
    kinds = {o["kind"] for o in objects}
    assert not {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Secret"} & kinds
    assert not [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-webhook")]
    assert not {"PORTER_WEBHOOK_PORT", "PORTER_WEBHOOK_CERT_DIR"} & set(env_of(objects))
    assert "webhook-tls" not in {v["name"] for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def test_policy_is_mounted_where_the_operator_reads_it() -> None:
    policy = {"rules": [{"namespaces": ["shop"], "aws": {"roles": ["shop-*"]}}]}
    objects = render({"policy": policy})
    config_map = one(objects, "ConfigMap", "-policy")
    assert yaml.safe_load(config_map["data"]["policy.yaml"]) == policy
    assert yaml.safe_load(one(render(), "ConfigMap", "-policy")["data"]["policy.yaml"]) == {"rules": []}
    assert env_of(objects)["PORTER_POLICY_FILE"] == "/etc/porter/policy/policy.yaml"
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    assert mounts["policy"] == "/etc/porter/policy"
    # A new policy rolls the pod.
    annotation = "checksum/policy"
    before = one(render(), "Deployment")["spec"]["template"]["metadata"]["annotations"][annotation]
    assert one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"][annotation] != before


def test_extra_volumes_are_mounted_next_to_the_chart_own() -> None:
    volume = {"name": "ca", "configMap": {"name": "corp-ca"}}
    mount = {"name": "ca", "mountPath": "/etc/porter/ca", "readOnly": True}
    objects = render({"extraVolumes": [volume], "extraVolumeMounts": [mount]})
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert volume in volumes and {"policy", "tmp"} <= {v["name"] for v in volumes}
    assert mount in container(objects)["volumeMounts"]
    assert "ca" not in {v["name"] for v in one(render(), "Deployment")["spec"]["template"]["spec"]["volumes"]}
    refused = helm("template", "rel", str(CHART), *value_args({"extraVolumeMounts": [{"name": "ca"}]}), check=False)
    assert refused.returncode != 0 and "mountPath" in refused.stderr


def test_metrics_service_and_optional_service_monitor() -> None:
    objects = render()
    service = one(objects, "Service", "-metrics")
    assert service["spec"]["ports"][0]["port"] == 8080
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"]
    monitor = one(
        render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}}), "ServiceMonitor"
    )
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/component"] == "metrics"  # the metrics Service, not the webhook's
    off = render({"metrics": {"enabled": False}})
    assert env_of(off)["PORTER_METRICS_PORT"] == "0"
    assert not [o for o in off if o["kind"] == "Service" and o["metadata"]["name"].endswith("-metrics")]


# --- High availability -----------------------------------------------------------------------------------------------


def test_leader_election_is_on_with_the_releases_lease_and_only_that_lease_granted() -> None:
    objects = render()
    election = json.loads(env_of(objects)["PORTER_LEADER_ELECTION"])
    settings = LeaderElection.model_validate(election)
    assert settings.enabled and settings.lease_name == one(objects, "Deployment")["metadata"]["name"]
    assert settings.lease_duration_seconds > settings.renew_deadline_seconds > settings.retry_period_seconds
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith("-leader-election"))
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [settings.lease_name],
            "verbs": ["get", "update"],
        },
    ]


def test_a_disruption_budget_keeps_a_webhook_up_and_goes_away_with_one_replica() -> None:
    budget = one(render(), "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert not [o for o in render({"replicas": 1}) if o["kind"] == "PodDisruptionBudget"]


def test_spec_less_updates_never_reach_the_webhook_and_the_sandbox_uses_the_same_condition() -> None:
    from porter_dev.admission import SPEC_CHANGED

    hooks = webhooks(render())
    assert [h["matchConditions"] for h in hooks] == [[{"name": "spec-changed", "expression": SPEC_CHANGED}]] * 2
    assert "object.spec != oldObject.spec" in SPEC_CHANGED


def test_the_argo_cd_ignore_differences_name_what_the_chart_generates() -> None:
    """docs/argocd/ignore-differences.yaml, for the release `porter-identity`: the Secret and the caBundle."""
    ignored = yaml.safe_load((CHART.parents[1] / "docs" / "argocd" / "ignore-differences.yaml").read_text())
    objects = template("porter-identity", "porter-system", None)
    secret = next(o for o in objects if o["kind"] == "Secret" and o["type"] == "kubernetes.io/tls")
    names = {(i["kind"], i["name"]) for i in ignored["ignoreDifferences"]}
    assert names == {
        ("Secret", secret["metadata"]["name"]),
        *((kind, one(objects, kind)["metadata"]["name"]) for kind in WEBHOOK_KINDS),
    }
    assert "RespectIgnoreDifferences=true" in ignored["syncPolicy"]["syncOptions"]
