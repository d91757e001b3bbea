"""Wire a local operator's validating webhook and allow rules, as the Helm chart does in a cluster.

Follows the ValidatingWebhookConfiguration API (admissionregistration.k8s.io/v1: `clientConfig.url` for a
webhook outside the cluster, `caBundle`, `failurePolicy: Fail`, `sideEffects: None`)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from porter_dev.azure import CERT_NAME, KEY_NAME, write_certificate

# Not the chart's name (porter-identity), so `helm install porter-identity` works against the sandbox and tests.
NAME = "porter-identity-local"
GROUP, VERSION = "identity.porter.run", "v1alpha1"
WEBHOOKS = {"serviceidentityconnections": "validate-connection", "porterrolesets": "validate-roleset"}


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
    """One webhook per resource, CREATE and UPDATE only, failing closed, pointing at https://127.0.0.1:<port>."""
    hooks = [
        {
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
        for plural, path in WEBHOOKS.items()
    ]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": NAME},
        "webhooks": hooks,
    }


def write_policy(path: Path, rules: list[dict[str, Any]]) -> Path:
    """A PORTER_POLICY_FILE with these allow rules (api/policy.py describes the format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return path
