"""The only kubeconfig an operator process gets in tests and the sandbox: a token of the chart's ServiceAccount."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from porter_dev import chart
from porter_dev.controlplane import k8s_bin_dir

OPERATOR_NAMESPACE = "porter-system"
OPERATOR_RELEASE = "e2e"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def chart_kubeconfig(
    admin: Path,
    out: Path,
    *,
    namespace: str = OPERATOR_NAMESPACE,
    release: str = OPERATOR_RELEASE,
    values: dict[str, Any] | None = None,
) -> Path:
    """Apply the chart's ServiceAccount and RBAC (rendered with `values`) with the `admin` kubeconfig, and write
    to `out` a kubeconfig whose only credential is a TokenRequest token of that ServiceAccount.

    The admin kubeconfig is used here, by the test process, and never handed to the operator: every API call the
    operator makes must then be granted by the chart's ClusterRole and Roles."""

    def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
        cmd = [str(k8s_bin_dir() / "kubectl"), "--kubeconfig", str(admin), *args]
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=check).stdout

    kubectl("create", "namespace", namespace, check=False)
    rendered = chart.template(
        release, namespace, values, show_only=["templates/serviceaccount.yaml", "templates/rbac.yaml"]
    )
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rendered))
    [account] = [doc["metadata"]["name"] for doc in rendered if doc["kind"] == "ServiceAccount"]
    token = kubectl("create", "token", account, "-n", namespace, "--duration", "8h").strip()
    config = yaml.safe_load(admin.read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == current["context"]["cluster"])
    user = f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{account}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": user}}],
                "current-context": "operator",
            }
        )
    )
    out.chmod(0o600)
    return out


def service_account_of(kubeconfig: Path) -> tuple[str, str]:
    """(namespace, name) of the ServiceAccount whose token is the kubeconfig's only credential; raises otherwise.

    Read from the token's own claims (a ServiceAccount token is a JWT whose `sub` names it), not from the user's
    name in the file, which anyone can write."""
    config = yaml.safe_load(kubeconfig.read_text())
    users = config.get("users") or []
    if len(users) != 1 or set(users[0].get("user") or {}) != {"token"}:
        raise ValueError(f"{kubeconfig}: an operator under test gets exactly one credential, a ServiceAccount token")
    parts = str(users[0]["user"]["token"]).split(".")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (IndexError, ValueError):
        claims = {}
    subject = str(claims.get("sub", ""))
    if not subject.startswith(SERVICE_ACCOUNT_PREFIX):
        raise ValueError(
            f"{kubeconfig}: not a ServiceAccount token; operators under test run with the chart's RBAC "
            "(porter_dev.rbac.chart_kubeconfig), never with the admin kubeconfig"
        )
    namespace, name = subject.removeprefix(SERVICE_ACCOUNT_PREFIX).split(":", 1)
    return namespace, name
