"""AWS emulator: moto in server mode plus the EKS Pod Identity API that moto lacks, with fault injection.

The Pod Identity routes follow the Amazon EKS API reference
(https://docs.aws.amazon.com/eks/latest/APIReference/): CreatePodIdentityAssociation,
DescribePodIdentityAssociation, UpdatePodIdentityAssociation, DeletePodIdentityAssociation and
ListPodIdentityAssociations, with their REST paths, JSON shapes and errors:
ResourceNotFoundException (404) for a missing cluster or association, ResourceInUseException (409)
for a second association of the same namespace + service account in one cluster,
InvalidParameterException (400) for malformed input (including maxResults outside 1-100 and
a bad nextToken), ResourceLimitExceededException at the 5,000-associations-per-cluster quota, and
clientRequestToken idempotency. Errors carry `x-amzn-ErrorType` and a `{"message": ...}` body
as EKS's restJson protocol does; injected throttling uses the codes botocore retries.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from porter_dev.faults import Faults

ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ASSOCIATIONS_PER_CLUSTER = 5000
MAX_TAGS = 50
POD_IDENTITY = re.compile(r"^/clusters/(?P<cluster>[^/]+)/pod-identity-associations(?:/(?P<id>[^/]+))?/?$")

StartResponse = Callable[..., Any]


class EksError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Association:
    cluster_name: str
    namespace: str
    service_account: str
    role_arn: str
    association_id: str
    association_arn: str
    tags: dict[str, str]
    created_at: float
    modified_at: float
    client_request_token: str | None = None
    disable_session_tags: bool = False
    target_role_arn: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "clusterName": self.cluster_name,
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "roleArn": self.role_arn,
            "associationArn": self.association_arn,
            "associationId": self.association_id,
            "tags": dict(self.tags),
            "createdAt": self.created_at,
            "modifiedAt": self.modified_at,
            "disableSessionTags": self.disable_session_tags,
        }
        if self.target_role_arn:
            out["targetRoleArn"] = self.target_role_arn
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "clusterName": self.cluster_name,
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "associationArn": self.association_arn,
            "associationId": self.association_id,
        }


@dataclass
class PodIdentityStore:
    """Associations by (account, region, cluster); one lock keeps the uniqueness rule atomic."""

    cluster_exists: Callable[[str, str, str], bool]
    associations: dict[tuple[str, str, str], dict[str, Association]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _cluster(self, account: str, region: str, cluster: str) -> dict[str, Association]:
        if not self.cluster_exists(account, region, cluster):
            raise EksError(404, "ResourceNotFoundException", f"No cluster found for name: {cluster}.")
        return self.associations.setdefault((account, region, cluster), {})

    def _get(self, account: str, region: str, cluster: str, association_id: str) -> Association:
        found = self._cluster(account, region, cluster).get(association_id)
        if found is None:
            raise EksError(
                404, "ResourceNotFoundException", f"No Pod Identity Association found for id: {association_id}."
            )
        return found

    def create(self, account: str, region: str, cluster: str, body: dict[str, Any]) -> Association:
        namespace, sa, role = body.get("namespace"), body.get("serviceAccount"), body.get("roleArn")
        for name, value in (("namespace", namespace), ("serviceAccount", sa), ("roleArn", role)):
            if not isinstance(value, str) or not value:
                raise EksError(400, "InvalidParameterException", f"{name} is required.")
        assert isinstance(namespace, str) and isinstance(sa, str) and isinstance(role, str)
        if not K8S_NAME.match(namespace) or not K8S_NAME.match(sa):
            raise EksError(400, "InvalidParameterException", "namespace and serviceAccount must be valid names.")
        if not ROLE_ARN.match(role):
            raise EksError(400, "InvalidParameterException", f"Role ARN {role} is not a valid IAM role ARN.")
        tags = body.get("tags") or {}
        _validate_tags(tags)
        token = body.get("clientRequestToken")
        with self.lock:
            existing = self._cluster(account, region, cluster)
            for assoc in existing.values():
                if token and assoc.client_request_token == token:
                    if (assoc.namespace, assoc.service_account, assoc.role_arn) == (namespace, sa, role):
                        return assoc
                    raise EksError(
                        400, "InvalidParameterException", "clientRequestToken was used with other parameters."
                    )
                if (assoc.namespace, assoc.service_account) == (namespace, sa):
                    raise EksError(
                        409,
                        "ResourceInUseException",
                        f"Association already exists: {assoc.association_id} for namespace {namespace} "
                        f"and service account {sa}.",
                    )
            if len(existing) >= ASSOCIATIONS_PER_CLUSTER:
                raise EksError(
                    400,
                    "ResourceLimitExceededException",
                    f"Cluster {cluster} already has {ASSOCIATIONS_PER_CLUSTER} Pod Identity associations.",
                )
            assoc_id = "a-" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(17))
            now = time.time()
            assoc = Association(
                cluster_name=cluster,
                namespace=namespace,
                service_account=sa,
                role_arn=role,
                association_id=assoc_id,
                association_arn=f"arn:aws:eks:{region}:{account}:podidentityassociation/{cluster}/{assoc_id}",
                tags=dict(tags),
                created_at=now,
                modified_at=now,
                client_request_token=token,
                disable_session_tags=bool(body.get("disableSessionTags", False)),
                target_role_arn=body.get("targetRoleArn"),
            )
            existing[assoc_id] = assoc
            return assoc

    def describe(self, account: str, region: str, cluster: str, association_id: str) -> Association:
        with self.lock:
            return self._get(account, region, cluster, association_id)

    def update(self, account: str, region: str, cluster: str, association_id: str, body: dict[str, Any]) -> Association:
        role = body.get("roleArn")
        if role is not None and (not isinstance(role, str) or not ROLE_ARN.match(role)):
            raise EksError(400, "InvalidParameterException", f"Role ARN {role} is not a valid IAM role ARN.")
        with self.lock:
            assoc = self._get(account, region, cluster, association_id)
            if role is not None:
                assoc.role_arn = role
            if "disableSessionTags" in body:
                assoc.disable_session_tags = bool(body["disableSessionTags"])
            if "targetRoleArn" in body:
                assoc.target_role_arn = body["targetRoleArn"] or None
            assoc.modified_at = time.time()
            return assoc

    def delete(self, account: str, region: str, cluster: str, association_id: str) -> Association:
        with self.lock:
            assoc = self._get(account, region, cluster, association_id)
            del self.associations[(account, region, cluster)][association_id]
            return assoc

    def list(
        self, account: str, region: str, cluster: str, query: dict[str, list[str]]
    ) -> tuple[list[Association], str | None]:
        namespace = _one(query, "namespace")
        sa = _one(query, "serviceAccount")
        raw_max = _one(query, "maxResults")
        try:
            max_results = int(raw_max) if raw_max is not None else 100
        except ValueError:
            raise EksError(400, "InvalidParameterException", "maxResults must be a number.") from None
        if not 1 <= max_results <= 100:
            raise EksError(400, "InvalidParameterException", "maxResults must be between 1 and 100.")
        start = 0
        token = _one(query, "nextToken")
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode())
            except (ValueError, UnicodeDecodeError):
                raise EksError(400, "InvalidParameterException", "The nextToken is not valid.") from None
        with self.lock:
            matching = [
                a
                for a in sorted(self._cluster(account, region, cluster).values(), key=lambda a: a.created_at)
                if (namespace is None or a.namespace == namespace) and (sa is None or a.service_account == sa)
            ]
        page = matching[start : start + max_results]
        more = start + max_results < len(matching)
        next_token = base64.urlsafe_b64encode(str(start + max_results).encode()).decode() if more else None
        return page, next_token


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _validate_tags(tags: Any) -> None:
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise EksError(400, "InvalidParameterException", f"tags must be a map of at most {MAX_TAGS} entries.")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or len(str(value)) > 256 or key.lower().startswith("aws:"):
            raise EksError(400, "InvalidParameterException", f"Tag {key!r} is not valid.")


def _moto_cluster_exists(account: str, region: str, cluster: str) -> bool:
    from moto.eks.models import eks_backends

    return cluster in eks_backends[account][region].clusters


_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


def _json(start: StartResponse, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    data = json.dumps(body).encode()
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests"}
    start(
        f"{status} {reasons.get(status, 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


def _query_error(start: StartResponse, status: int, code: str, message: str) -> list[bytes]:
    body = (
        f'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    ).encode()
    start(f"{status} Error", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


class AwsEmulator:
    """WSGI app: porter control routes, Pod Identity routes, and everything else handed to moto."""

    def __init__(self, inner: Callable[..., Iterable[bytes]] | None = None) -> None:
        if inner is None:
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

            inner = DomainDispatcherApplication(create_backend_app)
        self.inner = inner
        self.faults = Faults()
        self.store = PodIdentityStore(cluster_exists=_moto_cluster_exists)

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/_porter/"):
            return self._control(environ, start, path, method)
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = scope.group("service") if scope else "unknown"
        region = scope.group("region") if scope else "us-east-1"
        body = _read_body(environ)
        match = POD_IDENTITY.match(path) if service == "eks" else None
        operation = _operation(service, method, path, body, environ, match)
        fault = self.faults.on_call(service, operation)
        if fault:
            return _inject(start, service, fault)
        if match is None:
            return self.inner(environ, start)
        from moto.iam.models import get_account_id_from

        account = get_account_id_from(scope.group("key") if scope else "")
        try:
            return self._pod_identity(start, account, region, match, method, body, environ)
        except EksError as err:
            return _json(start, err.status, {"message": err.message}, [("x-amzn-ErrorType", err.code)])

    def _pod_identity(
        self,
        start: StartResponse,
        account: str,
        region: str,
        match: re.Match[str],
        method: str,
        body: bytes,
        environ: dict[str, Any],
    ) -> list[bytes]:
        cluster, assoc_id = match.group("cluster"), match.group("id")
        payload = json.loads(body) if body else {}
        if assoc_id is None and method == "POST":
            return _json(start, 200, {"association": self.store.create(account, region, cluster, payload).to_json()})
        if assoc_id is None and method == "GET":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            page, token = self.store.list(account, region, cluster, query)
            out: dict[str, Any] = {"associations": [a.summary() for a in page]}
            if token:
                out["nextToken"] = token
            return _json(start, 200, out)
        if assoc_id is not None and method == "GET":
            return _json(start, 200, {"association": self.store.describe(account, region, cluster, assoc_id).to_json()})
        if assoc_id is not None and method == "POST":
            updated = self.store.update(account, region, cluster, assoc_id, payload)
            return _json(start, 200, {"association": updated.to_json()})
        if assoc_id is not None and method == "DELETE":
            return _json(start, 200, {"association": self.store.delete(account, region, cluster, assoc_id).to_json()})
        raise EksError(400, "InvalidRequestException", f"{method} is not supported here.")

    def _control(self, environ: dict[str, Any], start: StartResponse, path: str, method: str) -> list[bytes]:
        if path == "/_porter/faults" and method == "POST":
            self.faults.configure(json.loads(_read_body(environ) or b"{}"))
            return _json(start, 200, {"ok": True})
        if path == "/_porter/calls" and method == "GET":
            return _json(start, 200, self.faults.snapshot())
        if path == "/_porter/reset" and method == "POST":
            self.faults.reset()
            return _json(start, 200, {"ok": True})
        if path == "/_porter/health":
            return _json(start, 200, {"ok": True})
        return _json(start, 404, {"message": f"no control route {method} {path}"})


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body once and put it back for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _operation(
    service: str, method: str, path: str, body: bytes, environ: dict[str, Any], match: re.Match[str] | None
) -> str:
    if match is not None:
        has_id = match.group("id") is not None
        return {
            ("POST", False): "CreatePodIdentityAssociation",
            ("GET", False): "ListPodIdentityAssociations",
            ("GET", True): "DescribePodIdentityAssociation",
            ("POST", True): "UpdatePodIdentityAssociation",
            ("DELETE", True): "DeletePodIdentityAssociation",
        }.get((method, has_id), "Unknown")
    params: dict[str, list[str]] = parse_qs(str(environ.get("QUERY_STRING", "")))
    if body and "json" not in environ.get("CONTENT_TYPE", ""):
        params.update(parse_qs(body.decode(errors="replace")))
    action = params.get("Action")
    if action:
        return action[0]
    return f"{method} {path}"


def _inject(start: StartResponse, service: str, fault: str) -> list[bytes]:
    if service in ("iam", "sts"):
        if fault == "throttle":
            return _query_error(start, 400, "Throttling", "Rate exceeded")
        return _query_error(start, 500, "ServiceFailure", "Injected service failure")
    if fault == "throttle":
        return _json(start, 429, {"message": "Rate exceeded"}, [("x-amzn-ErrorType", "ThrottlingException")])
    return _json(start, 500, {"message": "Injected server error"}, [("x-amzn-ErrorType", "ServerException")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter_dev.aws", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, AwsEmulator(), threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
