"""Wire a local operator's admission webhooks and allow rules, as the Helm chart does in a cluster.

Follows the Mutating- and ValidatingWebhookConfiguration API (admissionregistration.k8s.io/v1: `clientConfig.url`
for a webhook outside the cluster, `caBundle`, `failurePolicy: Fail`, `sideEffects: None`, `reinvocationPolicy`)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from porter_dev.azure import CERT_NAME, KEY_NAME, write_certificate

# Not the chart's name (porter-identity), so `helm install porter-identity` works against the sandbox and tests.
NAME = "porter-identity-local"
GROUP, VERSION = "identity.porter.run", "v1alpha1"
# The chart's: a connection's webhook also adds the finalizer at create (mutating); a PorterRoleSet's only checks.
WEBHOOKS = {
    "serviceidentityconnections": ("validate-connection", "MutatingWebhookConfiguration"),
    "porterrolesets": ("validate-roleset", "ValidatingWebhookConfiguration"),
}
# For kubectl get/delete of both configurations at once (they share NAME).
KINDS = "mutatingwebhookconfiguration,validatingwebhookconfiguration"


def write_webhook_certificate(cert_dir: Path) -> bytes:
    """tls.crt / tls.key for the operator (PORTER_WEBHOOK_CERT_DIR); returns the PEM the API server trusts."""
    cert, key = write_certificate(cert_dir, hosts=("127.0.0.1",))
    cert.replace(cert_dir / "tls.crt")
    key.replace(cert_dir / "tls.key")
    assert not (cert_dir / CERT_NAME).exists() and not (cert_dir / KEY_NAME).exists()
    return (cert_dir / "tls.crt").read_bytes()


# The chart's own condition (charts/porter-identity/files/spec-changed.cel): spec-less updates skip the webhook.
SPEC_CHANGED = (
    (Path(__file__).parents[2] / "charts" / "porter-identity" / "files" / "spec-changed.cel").read_text().strip()
)


def webhook_configuration(port: int, ca_pem: bytes) -> dict[str, Any]:
    """A List of the two configurations, one webhook per resource, CREATE and UPDATE only, failing closed, pointing
    at https://127.0.0.1:<port>."""
    items = []
    for plural, (path, kind) in WEBHOOKS.items():
        hook: dict[str, Any] = {
            "name": f"{path}.{GROUP}",
            "clientConfig": {
                "url": f"https://127.0.0.1:{port}/{path}",
                "caBundle": base64.b64encode(ca_pem).decode(),
            },
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "apiVersions": [VERSION],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [plural],
                    "scope": "*",
                }
            ],
            "matchConditions": [{"name": "spec-changed", "expression": SPEC_CHANGED}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
        }
        if kind == "MutatingWebhookConfiguration":
            hook["reinvocationPolicy"] = "IfNeeded"
        items.append(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": NAME},
                "webhooks": [hook],
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}


def write_policy(path: Path, rules: list[dict[str, Any]]) -> Path:
    """A PORTER_POLICY_FILE with these allow rules (api/policy.py describes the format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return path
