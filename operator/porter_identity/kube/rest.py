"""The operator's Kubernetes API client: JSON over one urllib3 pool, with the credentials kopf logs in with.

The operator makes a dozen kinds of calls (get, list, patch, create and replace of a few kinds). The `kubernetes`
package brings 22 MB of generated models for them, and kopf imports it whenever it can (docs/performance.md), so
the operator process does without it; the CLI, which must honour any kubeconfig (exec plugins), keeps it.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import time
from typing import Any
from urllib.parse import quote, urlencode

import kopf
import urllib3

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_FILE, CA_FILE = f"{SERVICE_ACCOUNT}/token", f"{SERVICE_ACCOUNT}/ca.crt"
MERGE_PATCH = "application/merge-patch+json"
# client-go reads a projected token again every minute; the kubelet rotates it well before it expires.
TOKEN_REREAD_SECONDS = 60.0


class ApiError(Exception):
    """A refusal by the API server: the HTTP status, its reason phrase and the Status message."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"({status}) {reason}: {message}" if message else f"({status}) {reason}")
        self.status, self.reason, self.message = status, reason, message


def login() -> kopf.ConnectionInfo:
    """In a pod: the API server at KUBERNETES_SERVICE_HOST/PORT (no cluster DNS needed, unlike kopf's own
    in-cluster login) with the ServiceAccount's token and CA; elsewhere the kubeconfig's current context."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port and os.path.exists(TOKEN_FILE):
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        return kopf.ConnectionInfo(server=server, ca_path=CA_FILE, token=_read(TOKEN_FILE))
    found = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    if found is None:
        raise kopf.LoginError("no Kubernetes credentials: not in a pod, and no $KUBECONFIG or ~/.kube/config")
    return found


class Kube:
    """Thread-safe: one pool shared by the worker threads (one connection each, as the pool size says)."""

    def __init__(self, info: kopf.ConnectionInfo, pool_size: int = 10, timeout: float = 60.0) -> None:
        self.server = info.server.rstrip("/")
        self.timeout = timeout
        self._info = info
        self._token = info.token
        # In a pod the token is a file the kubelet rotates: read it again, as client-go does.
        self._token_file = TOKEN_FILE if info.ca_path == CA_FILE else None
        self._token_read = time.monotonic()
        self._lock = threading.Lock()
        tls: dict[str, Any] = {}
        if info.insecure:
            tls["cert_reqs"] = "CERT_NONE"
        else:
            tls["cert_reqs"] = "CERT_REQUIRED"
            if info.ca_path:
                tls["ca_certs"] = os.fsdecode(info.ca_path)
            elif info.ca_data:
                tls["ca_cert_data"] = _pem(info.ca_data)
        if info.certificate_path or info.certificate_data:
            tls["cert_file"] = _file(info.certificate_path, info.certificate_data)
            tls["key_file"] = _file(info.private_key_path, info.private_key_data)
        self.pool = urllib3.PoolManager(maxsize=pool_size, block=False, **tls)

    @classmethod
    def from_environment(cls, pool_size: int = 10) -> Kube:
        return cls(login(), pool_size)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float | None = None,
        answer_wanted: bool = True,
    ) -> Any:
        """The answer's JSON (None when empty, or not `answer_wanted`: a whole object is not parsed for nothing);
        raises ApiError on any status of 400 or more."""
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": accept, **self.auth_headers()}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        answer = self.pool.request(
            method,
            url,
            body=data,
            headers=headers,
            timeout=urllib3.Timeout(total=timeout or self.timeout),
            # As the official client: a failed connect is tried again, and a lost answer only for idempotent methods.
            retries=urllib3.Retry(total=3, redirect=False),
        )
        if answer.status >= 400:
            try:
                message = str(json.loads(answer.data).get("message", ""))
            except (ValueError, AttributeError):
                message = ""
            raise ApiError(answer.status, answer.reason or "", message)
        return json.loads(answer.data) if answer.data and answer_wanted else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> Any:
        """A JSON merge patch."""
        return self.request("PATCH", path, body, content_type=MERGE_PATCH, **kw)

    def auth_headers(self) -> dict[str, str]:
        info = self._info
        if info.username and info.password:
            return dict(urllib3.make_headers(basic_auth=f"{info.username}:{info.password}"))
        token = self._current_token()
        return {"Authorization": f"{info.scheme or 'Bearer'} {token}"} if token else {}

    def _current_token(self) -> str | None:
        if self._token_file is None:
            return self._token
        with self._lock:
            if time.monotonic() - self._token_read >= TOKEN_REREAD_SECONDS:
                self._token = _read(self._token_file) or self._token
                self._token_read = time.monotonic()
            return self._token


def path(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """The REST path of a collection or an object; group "" is the core API."""
    out = "/api/v1" if not group else f"/apis/{group}/{version}"
    if namespace:
        out += f"/namespaces/{quote(namespace)}"
    out += f"/{plural}"
    return out + (f"/{quote(name)}" if name else "")


def _read(file: str) -> str:
    with open(file, encoding="utf-8") as f:
        return f.read().strip()


def _pem(data: str | bytes) -> str:
    """kubeconfig's *-data fields are base64 of PEM."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        return base64.b64decode(raw, validate=True).decode()
    except ValueError:
        return raw.decode()


def _file(path_: Any, data: str | bytes | None) -> str | None:
    """urllib3 takes client certificates and keys as files only."""
    if path_:
        return os.fsdecode(path_)
    if not data:
        return None
    handle = tempfile.NamedTemporaryFile("w", prefix="porter-kube-", suffix=".pem", delete=False)  # noqa: SIM115
    with handle:
        handle.write(_pem(data))
    os.chmod(handle.name, 0o600)
    return handle.name
