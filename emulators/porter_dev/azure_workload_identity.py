"""A test-only Azure Workload Identity mutating webhook for the local node: what AKS injects into a labelled pod.

Follows "Mutating Admission Webhook" and "Service Account Labels and Annotations" of Azure AD Workload Identity
(https://azure.github.io/azure-workload-identity/docs/installation/mutating-admission-webhook.html,
https://azure.github.io/azure-workload-identity/docs/topics/service-account-labels-and-annotations.html):
only pods labelled `azure.workload.identity/use: "true"` are mutated (the webhook configuration's
objectSelector); the pod's ServiceAccount (`default` when unset) is read, and every container not named in the
pod annotation `azure.workload.identity/skip-containers` (`;`-separated) gets AZURE_CLIENT_ID (the
ServiceAccount's `azure.workload.identity/client-id`), AZURE_TENANT_ID (its `azure.workload.identity/tenant-id`,
else the webhook's tenant), AZURE_FEDERATED_TOKEN_FILE and AZURE_AUTHORITY_HOST, each only when the container does
not set it already and the value is not empty; plus a read-only mount of the projected volume
`azure-identity-token` at /var/run/secrets/azure/tokens, whose ServiceAccount token has the audience
`api://AzureADTokenExchange` and lives `azure.workload.identity/service-account-token-expiration` seconds (pod
annotation, then ServiceAccount annotation, else 3600; outside 3600..86400 the pod is refused). A ServiceAccount
that cannot be read refuses the pod (400), as the real webhook does. The proxy sidecar is not modelled.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from porter_dev.azure import CERT_NAME, write_certificate
from porter_dev.processes import send_json, spawn_module, stop_process

USE_LABEL = "azure.workload.identity/use"
CLIENT_ID = "azure.workload.identity/client-id"
TENANT_ID = "azure.workload.identity/tenant-id"
EXPIRATION = "azure.workload.identity/service-account-token-expiration"
SKIP_CONTAINERS = "azure.workload.identity/skip-containers"
AUDIENCE = "api://AzureADTokenExchange"
VOLUME = "azure-identity-token"
MOUNT_PATH = "/var/run/secrets/azure/tokens"
TOKEN_FILE = f"{MOUNT_PATH}/{VOLUME}"
DEFAULT_EXPIRATION, MIN_EXPIRATION, MAX_EXPIRATION = 3600, 3600, 86400
PUBLIC_AUTHORITY = "https://login.microsoftonline.com/"  # AzurePublicCloud's ActiveDirectoryEndpoint
PATH = "/mutate-v1-pod"
NAME = "azure-wi-webhook-mutation"


class Refused(Exception):
    """The pod is refused with this message (the real webhook answers 400)."""


def _expiration(pod_annotations: dict[str, str], sa_annotations: dict[str, str]) -> int:
    raw = pod_annotations.get(EXPIRATION) or sa_annotations.get(EXPIRATION) or str(DEFAULT_EXPIRATION)
    try:
        seconds = int(raw)
    except ValueError:
        raise Refused(f"token expiration {raw!r} is not an integer") from None
    if not MIN_EXPIRATION <= seconds <= MAX_EXPIRATION:
        raise Refused(f"token expiration {seconds} not valid. Expected value to be between 3600 and 86400")
    return seconds


def mutate(pod: dict[str, Any], service_account: dict[str, Any], tenant_id: str, authority: str) -> list[Any]:
    """The JSON patch (RFC 6902) the webhook answers for `pod` run as `service_account`."""
    meta = pod.get("metadata") or {}
    pod_annotations = meta.get("annotations") or {}
    sa_annotations = (service_account.get("metadata") or {}).get("annotations") or {}
    expiration = _expiration(pod_annotations, sa_annotations)
    wanted = {
        "AZURE_CLIENT_ID": sa_annotations.get(CLIENT_ID, ""),
        "AZURE_TENANT_ID": sa_annotations.get(TENANT_ID, tenant_id),
        "AZURE_FEDERATED_TOKEN_FILE": TOKEN_FILE,
        "AZURE_AUTHORITY_HOST": authority,
    }
    skip = {name.strip() for name in pod_annotations.get(SKIP_CONTAINERS, "").split(";") if name.strip()}
    spec = pod["spec"]
    patch: list[Any] = []
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind) or []):
            if container["name"] in skip:
                continue
            present = {e["name"] for e in container.get("env") or []}
            env = [*(container.get("env") or [])]
            env += [{"name": k, "value": v} for k, v in wanted.items() if k not in present and v]
            mounts = [m for m in container.get("volumeMounts") or [] if m["name"] != VOLUME]
            mounts.append({"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": True})
            patch.append({"op": "add", "path": f"/spec/{kind}/{i}/env", "value": env})
            patch.append({"op": "add", "path": f"/spec/{kind}/{i}/volumeMounts", "value": mounts})
    token = {"serviceAccountToken": {"audience": AUDIENCE, "expirationSeconds": expiration, "path": VOLUME}}
    volumes = [v for v in spec.get("volumes") or [] if v["name"] != VOLUME]
    volumes.append({"name": VOLUME, "projected": {"sources": [token], "defaultMode": 420}})
    patch.append({"op": "add", "path": "/spec/volumes", "value": volumes})
    return patch


def review_answer(review: dict[str, Any], read_service_account: Any, tenant_id: str, authority: str) -> dict[str, Any]:
    """The AdmissionReview response for one request."""
    request = review["request"]
    pod = request["object"]
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace", "")
    name = pod["spec"].get("serviceAccountName") or "default"
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    try:
        patch = mutate(pod, read_service_account(namespace, name), tenant_id, authority)
    except Refused as err:
        response = {"uid": request["uid"], "allowed": False, "status": {"code": 400, "message": str(err)}}
    else:
        response |= {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(patch).encode()).decode()}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def _service_account_reader(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]

    def read(namespace: str, name: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = core.read_namespaced_service_account(name, namespace).to_dict()
        except client.ApiException as err:
            raise Refused(f"failed to get service account {namespace}/{name}: {err.reason}") from None
        return {"metadata": {"annotations": found["metadata"].get("annotations") or {}}}

    return read


def make_handler(kubeconfig: Path, tenant_id: str, authority: str) -> type[BaseHTTPRequestHandler]:
    read = _service_account_reader(kubeconfig)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.split("?")[0] != PATH:
                return self._answer(404, {"message": "not found"})
            review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            return self._answer(200, review_answer(review, read, tenant_id, authority))

        def do_GET(self) -> None:
            return self._answer(200 if self.path == "/healthz" else 404, {})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            send_json(self, status, body)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"azure-workload-identity-webhook: {format % args}\n")

    return Handler


@dataclass
class WorkloadIdentityWebhook:
    """The webhook as its own process on `host`:`port` (HTTPS, its own certificate), registered with the API
    server by `configuration()`."""

    logdir: Path
    kubeconfig: Path
    host: str
    port: int
    tenant_id: str
    authority: str = PUBLIC_AUTHORITY
    proc: subprocess.Popen[bytes] | None = None

    @property
    def cert_dir(self) -> Path:
        return self.logdir / "azure-workload-identity-tls"

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> WorkloadIdentityWebhook:
        log = self.logdir / "azure-workload-identity-webhook.log"
        (self.cert_dir / CERT_NAME).unlink(missing_ok=True)
        args = ["--host", self.host, "--port", str(self.port), "--cert-dir", str(self.cert_dir)]
        args += ["--kubeconfig", str(self.kubeconfig), "--tenant-id", self.tenant_id, "--authority", self.authority]
        self.proc = spawn_module("porter_dev.azure_workload_identity", args, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"workload identity webhook exited ({self.proc.returncode}):\n{log.read_text()}")
            try:
                context = ssl.create_default_context(cafile=str(self.cert_dir / CERT_NAME))
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1, context=context).close()
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise TimeoutError(f"{self.url}/healthz did not answer within {timeout}s")

    def configuration(self) -> dict[str, Any]:
        """The MutatingWebhookConfiguration: Pod CREATE of labelled pods, failing closed, as the real chart."""
        ca = base64.b64encode((self.cert_dir / CERT_NAME).read_bytes()).decode()
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": NAME},
            "webhooks": [
                {
                    "name": "mutation.azure-workload-identity.io",
                    "clientConfig": {"url": f"{self.url}{PATH}", "caBundle": ca},
                    "objectSelector": {"matchLabels": {USE_LABEL: "true"}},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                            "scope": "*",
                        }
                    ],
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 10,
                }
            ],
        }

    def stop(self) -> None:
        stop_process(self.proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter_dev.azure_workload_identity", description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True, help="to read ServiceAccounts")
    parser.add_argument("--tenant-id", required=True, help="the default when a ServiceAccount names none")
    parser.add_argument("--authority", default=PUBLIC_AUTHORITY, help="AZURE_AUTHORITY_HOST")
    args = parser.parse_args(argv)
    cert, key = write_certificate(args.cert_dir, hosts=(args.host,))
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.kubeconfig, args.tenant_id, args.authority))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"azure workload identity webhook on https://{args.host}:{args.port}{PATH}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
