"""AWS emulator: moto in server mode plus the EKS Pod Identity API that moto lacks, with fault injection.

The Pod Identity routes follow the Amazon EKS API reference
(https://docs.aws.amazon.com/eks/latest/APIReference/): CreatePodIdentityAssociation,
DescribePodIdentityAssociation, UpdatePodIdentityAssociation, DeletePodIdentityAssociation and
ListPodIdentityAssociations, with their REST paths, JSON shapes and errors:
ResourceNotFoundException (404) for a missing cluster or association, ResourceInUseException (409)
for a second association of the same namespace + service account in one cluster,
InvalidParameterException (400) for malformed input (including maxResults outside 1-100 and
a bad nextToken), ResourceLimitExceededException at the 5,000-associations-per-cluster quota, and
clientRequestToken idempotency. Create and Update check the role as EKS does: one that does not exist, or whose
trust policy does not let pods.eks.amazonaws.com AssumeRole, is refused with
InvalidParameterException ("Role provided in the request does not exist", "Trust policy of the role provided is
invalid": the messages terraform-provider-aws matches, its issues 34711 and 41483).
TagResource, UntagResource and ListTagsForResource on an association's ARN are served here too (moto knows no
associations), with the only errors those operations declare: BadRequestException (400) and NotFoundException (404).
Errors carry `x-amzn-ErrorType` and a `{"message": ...}` body
as EKS's restJson protocol does; injected throttling uses the codes botocore retries. Every answer the tests see
is checked against botocore's EKS service model (shapes, lengths, the errors each operation declares), so an
association without tags has no `tags` member (the model's TagMap holds 1-50 entries).
EKS Auth's AssumeRoleForPodIdentity (`porter_dev.eks_auth`, which cites its pages) checks the token against the
cluster's OIDC issuer, set with `/_porter/cluster-issuer` (moto gives clusters a made-up issuer).

AWS managed policies (AdministratorAccess and the rest) are loaded, as every real account has them.

Eventual consistency (the plan's `propagationSeconds`, `porter_dev.faults`) follows IAM's "Changes that I make are
not always immediately visible" (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html
#troubleshoot_general_eventual-consistency): IAM's own reads (GetRole, ListRoles) see a write at once, the services
that use IAM do not. For `propagationSeconds` after CreateRole, EKS's CreatePodIdentityAssociation and
UpdatePodIdentityAssociation refuse the role with "Role provided in the request does not exist", EKS Auth's
AssumeRoleForPodIdentity with its AccessDeniedException, and sts:AssumeRole with AccessDenied; after
UpdateAssumeRolePolicy they go on judging the previous trust policy for as long. That is the trap a caller meets:
GetRole returns the role, EKS says it does not exist.

moto lets anyone assume any role and enforces no IAM size quotas, so IAM and STS query-protocol calls get
what AWS does, with the rules in `porter_dev.iam_rules` (which cites the pages):
- sts:AssumeRole follows the STS AssumeRole API reference
  (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html), the IAM JSON policy elements
  Principal and Condition, and "How to use an external ID": the role's trust policy must allow the caller
  (an assumed-role session, an IAM user's key, or for keys moto does not know its default identity
  arn:aws:sts::123456789012:user/moto), else AccessDenied (403), also for a role that does not exist.
  ExternalId must be 2-1224 characters of [\\w+=,.@:/-] (ValidationError, 400, echoing the value in its
  message as STS does, so a client that copies AWS's text on is caught); the value is never recorded. The
  `invalid` fault answers AssumeRole with that same error for any value. Conditions: StringEquals and
  StringLike on sts:ExternalId (absent = no match), aws:SourceAccount and aws:PrincipalAccount (both taken
  as the caller's account) are evaluated; other keys and operators are treated as met, as we have no
  request context for them. An explicit Deny wins. The caller's own
  identity-based policies are not evaluated.
- IAM quotas (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html), counted without
  white space: role trust policy 2,048 characters (CreateRole, UpdateAssumeRolePolicy), all inline policies of
  a role together 10,240 (PutRolePolicy), managed policy 6,144 (CreatePolicy, CreatePolicyVersion), 10 managed
  policies attached per role (AttachRolePolicy): LimitExceeded (409). moto itself enforces the 5 versions per
  managed policy and rejects malformed JSON everywhere except CreateRole's trust policy, which we check.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

from porter_dev import eks_auth, iam_rules
from porter_dev.faults import Faults, caller_of
from porter_dev.iam_rules import Caller, IamRuleError
from porter_dev.oidc import Issuers

ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ASSOCIATIONS_PER_CLUSTER = 5000
MAX_TAGS = 50
QUERY_XMLNS = {"iam": "https://iam.amazonaws.com/doc/2010-05-08/", "sts": "https://sts.amazonaws.com/doc/2011-06-15/"}
QUOTA_CHECKED = {
    "CreateRole",
    "UpdateAssumeRolePolicy",
    "PutRolePolicy",
    "CreatePolicy",
    "CreatePolicyVersion",
    "AttachRolePolicy",
}
POD_IDENTITY = re.compile(r"^/clusters/(?P<cluster>[^/]+)/pod-identity-associations(?:/(?P<id>[^/]+))?/?$")
ASSOCIATION_TAGS = re.compile(r"^/tags/(?P<arn>arn(?::|%3A)[^/]*(?::|%3A).*podidentityassociation(?:/|%2F).+)$", re.I)

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
            "createdAt": self.created_at,
            "modifiedAt": self.modified_at,
            "disableSessionTags": self.disable_session_tags,
        }
        if self.tags:  # the model's TagMap holds 1-50 entries: no tags is no member, never {}
            out["tags"] = dict(self.tags)
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
    # The role's trust policy as EKS sees it (None: no such role). EKS checks the role at create and update:
    # InvalidParameterException "Role provided in the request does not exist" (terraform-provider-aws retries on
    # it, its issue 34711), and "Trust policy of the role provided is invalid" (its issue 41483).
    trust_of: Callable[[str], dict[str, Any] | None] = field(default=lambda role: {})
    associations: dict[tuple[str, str, str], dict[str, Association]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _cluster(self, account: str, region: str, cluster: str) -> dict[str, Association]:
        if not self.cluster_exists(account, region, cluster):
            raise EksError(404, "ResourceNotFoundException", f"No cluster found for name: {cluster}.")
        return self.associations.setdefault((account, region, cluster), {})

    def _check_role(self, account: str, role: str) -> None:
        """A missing sts:TagSession is not refused here: EKS Auth refuses it when a pod asks for credentials."""
        policy = self.trust_of(role)
        if policy is None:
            raise EksError(400, "InvalidParameterException", "Role provided in the request does not exist")
        if policy and not iam_rules.service_allows(policy, eks_auth.AUDIENCE, "sts:AssumeRole", account):
            raise EksError(400, "InvalidParameterException", "Trust policy of the role provided is invalid")

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
        self._check_role(account, role)
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
        if role is not None:
            self._check_role(account, role)
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

    def _by_arn(self, account: str, region: str, arn: str) -> Association:
        found = [
            a
            for (acct, reg, _), byid in self.associations.items()
            if (acct, reg) == (account, region)
            for a in byid.values()
            if a.association_arn == arn
        ]
        if not found:
            raise EksError(404, "NotFoundException", f"Resource {arn} not found.")
        return found[0]

    def tag(self, account: str, region: str, arn: str, tags: dict[str, str] | None, remove: list[str]) -> None:
        """TagResource / UntagResource on an association, by its ARN (EKS API reference: TagResource,
        UntagResource: at most 50 tags, keys 1-128 and values up to 256 characters, no aws: prefix). These two
        operations may return only BadRequestException and NotFoundException."""
        with self.lock:
            found = self._by_arn(account, region, arn)
            merged = {k: v for k, v in found.tags.items() if k not in remove}
            merged.update(tags or {})
            try:
                _validate_tags(merged)
            except EksError as err:
                raise EksError(400, "BadRequestException", err.message) from None
            found.tags = merged

    def tags_of(self, account: str, region: str, arn: str) -> dict[str, str]:
        """ListTagsForResource of an association."""
        with self.lock:
            return dict(self._by_arn(account, region, arn).tags)

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


def _query_error(start: StartResponse, service: str, status: int, code: str, message: str) -> list[bytes]:
    """The error shape of the IAM and STS query protocol; the namespace is the service's API version."""
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{QUERY_XMLNS[service]}"><Error><Type>{kind}</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    ).encode()
    start(f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _moto_caller(access_key: str, region: str) -> Caller:
    """Who moto's GetCallerIdentity says signed with `access_key`, plus the role behind a session."""
    from moto.iam.models import get_account_id_from
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    backend = sts_backends[get_account_id_from(access_key)][get_partition(region)]
    session = backend.get_assumed_role_from_access_key(access_key)
    _, arn, account = backend.get_caller_identity(access_key, region)
    return Caller(arn=arn, account=account, role_arn=session.role_arn if session else None)


def _moto_role(account: str, partition: str, name: str | None = None, arn: str | None = None) -> Any:
    """The role in moto's IAM backend by name or ARN, or None."""
    from moto.iam.models import iam_backends

    roles = iam_backends[account][partition].roles.values()
    return next((r for r in roles if r.name == name or r.arn == arn), None)


def _trust_policy(role_arn: str) -> dict[str, Any] | None:
    """The trust policy of an existing role, or None (a missing role and an unreadable policy both refuse)."""
    if not ROLE_ARN.match(role_arn):
        return None
    _, partition, _, _, account, _ = role_arn.split(":", 5)
    role = _moto_role(account, partition, arn=role_arn)
    return _policy_of(role.assume_role_policy_document if role else None)


def _policy_of(document: Any) -> dict[str, Any] | None:
    try:
        policy = json.loads(document) if isinstance(document, str) else document
    except ValueError:
        return None
    return policy if isinstance(policy, dict) else None


@dataclass
class Propagation:
    """When each role and trust policy was written, for what EKS, EKS Auth and STS see of IAM (module docstring)."""

    faults: Faults
    created: dict[tuple[str, str], float] = field(default_factory=dict)  # (account, lower-cased name) -> when
    # (account, lower-cased name) -> (the trust document before the last UpdateAssumeRolePolicy, when)
    trust_before: dict[tuple[str, str], tuple[Any, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrote(self, operation: str, account: str, name: str, previous_trust: Any = None) -> None:
        key, now = (account, name.lower()), time.monotonic()
        with self.lock:
            if operation == "CreateRole":
                self.created[key] = now
                self.trust_before.pop(key, None)
            elif operation == "UpdateAssumeRolePolicy":
                older = self.trust_before.get(key)
                # writes in quick succession: what the others see is still the one before the first
                if older is None or self.faults.propagated(older[1], now):
                    self.trust_before[key] = (previous_trust, now)
                else:
                    self.trust_before[key] = (older[0], now)

    def trust_seen(self, role_arn: str) -> dict[str, Any] | None:
        """The role's trust policy as the services using IAM see it: None while a new role has not reached them,
        the previous document while a changed one has not."""
        if not ROLE_ARN.match(role_arn):
            return None
        _, partition, _, _, account, _ = role_arn.split(":", 5)
        role = _moto_role(account, partition, arn=role_arn)
        if role is None:
            return None
        key = (account, str(role.name).lower())
        with self.lock:
            created, before = self.created.get(key), self.trust_before.get(key)
        if not self.faults.propagated(created):
            return None
        if before is not None and not self.faults.propagated(before[1]):
            return _policy_of(before[0])
        return _policy_of(role.assume_role_policy_document)


class AwsEmulator:
    """WSGI app: porter control routes, Pod Identity routes, and everything else handed to moto."""

    def __init__(self, inner: Callable[..., Iterable[bytes]] | None = None) -> None:
        if inner is None:
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

            inner = DomainDispatcherApplication(create_backend_app)
        self.inner = inner
        self.faults = Faults()
        self.propagation = Propagation(self.faults)
        self.store = PodIdentityStore(cluster_exists=_moto_cluster_exists, trust_of=self.propagation.trust_seen)
        self.assume_role_calls: Counter[str] = Counter()
        self.counter_lock = threading.Lock()
        # a quota check and the write it allows must not interleave with another write to the same role
        self.quota_lock = threading.Lock()
        self.issuers = Issuers()

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
        tags_match = ASSOCIATION_TAGS.match(path) if service == "eks" and method in ("POST", "DELETE", "GET") else None
        auth_match = eks_auth.PATH.match(path) if service == "eks-auth" and method == "POST" else None
        params = _params(environ, body) if match is None and auth_match is None and tags_match is None else {}
        operation = "AssumeRoleForPodIdentity" if auth_match else _operation(method, path, params, match)
        if tags_match is not None:
            operation = {"POST": "TagResource", "DELETE": "UntagResource"}.get(method, "ListTagsForResource")
        fault = self.faults.on_call(service, operation, caller_of(environ.get("HTTP_USER_AGENT", "")))
        if fault == "invalid" and service == "sts" and operation == "AssumeRole":
            err = iam_rules.refuse_external_id(_one(params, "ExternalId") or "")
            return _query_error(start, service, err.status, err.code, err.message)
        if fault:
            return _inject(start, service, fault)
        access_key = scope.group("key") if scope else ""
        try:
            if service == "sts" and operation == "AssumeRole":
                return self._assume_role(environ, start, params, access_key, region)
            if service == "iam" and operation in QUOTA_CHECKED:
                return self._quota_checked(environ, start, operation, params, access_key, region)
        except IamRuleError as err:
            return _query_error(start, service, err.status, err.code, err.message)
        if auth_match is not None:
            return self._eks_auth(start, access_key, region, auth_match.group("cluster"), body)
        if match is None and tags_match is None:
            return self.inner(environ, start)
        from moto.iam.models import get_account_id_from

        account = get_account_id_from(scope.group("key") if scope else "")
        try:
            if tags_match is not None:
                arn = unquote(tags_match.group("arn"))
                if method == "GET":
                    found = self.store.tags_of(account, region, arn)
                    return _json(start, 200, {"tags": found} if found else {})
                query = parse_qs(environ.get("QUERY_STRING", ""))
                tags = json.loads(body).get("tags") if method == "POST" and body else None
                self.store.tag(account, region, arn, tags, query.get("tagKeys", []) if method == "DELETE" else [])
                return _json(start, 200, {})
            assert match is not None
            return self._pod_identity(start, account, region, match, method, body, environ)
        except EksError as err:
            return _json(start, err.status, {"message": err.message}, [("x-amzn-ErrorType", err.code)])

    def _assume_role(
        self, environ: dict[str, Any], start: StartResponse, params: dict[str, list[str]], access_key: str, region: str
    ) -> Iterable[bytes]:
        role_arn = _one(params, "RoleArn") or ""
        with self.counter_lock:
            self.assume_role_calls[role_arn] += 1
        external_id = _one(params, "ExternalId")
        iam_rules.check_external_id(external_id)
        caller = _moto_caller(access_key, region)
        policy = self.propagation.trust_seen(role_arn)
        if policy is None or not iam_rules.trust_allows(policy, caller, external_id):
            raise IamRuleError(
                403,
                "AccessDenied",
                f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            )
        return self.inner(environ, start)

    def _eks_auth(self, start: StartResponse, access_key: str, region: str, cluster: str, body: bytes) -> list[bytes]:
        from moto.iam.models import get_account_id_from

        account = get_account_id_from(access_key)
        try:
            payload = json.loads(body) if body else {}
            with self.store.lock:
                associations = list(self.store.associations.get((account, region, cluster), {}).values())
            answer = eks_auth.assume_role_for_pod_identity(
                associations, self.issuers, account, region, cluster, payload, self.propagation.trust_seen
            )
        except eks_auth.EksAuthError as err:
            return _json(start, err.status, {"message": err.message}, [("x-amzn-ErrorType", err.code)])
        return _json(start, 200, answer)

    def _quota_checked(
        self,
        environ: dict[str, Any],
        start: StartResponse,
        operation: str,
        params: dict[str, list[str]],
        access_key: str,
        region: str,
    ) -> list[bytes]:
        from moto.iam.models import get_account_id_from
        from moto.utilities.utils import get_partition

        account, name = get_account_id_from(access_key), _one(params, "RoleName") or ""
        statuses: list[str] = []

        def started(status: str, headers: Any, *exc_info: Any) -> Any:
            statuses.append(status)
            return start(status, headers, *exc_info)

        with self.quota_lock:
            role = _moto_role(account, get_partition(region), name=name)
            _check_quota(operation, params, role)
            previous = role.assume_role_policy_document if role is not None else None
            answer = list(self.inner(environ, started))
            if statuses and statuses[-1].startswith("200"):
                self.propagation.wrote(operation, account, name, previous)
            return answer

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
        if path == "/_porter/assume-role" and method == "GET":
            with self.counter_lock:
                return _json(start, 200, dict(self.assume_role_calls))
        if path == "/_porter/reset" and method == "POST":
            self.faults.reset()
            with self.counter_lock:
                self.assume_role_calls.clear()
            return _json(start, 200, {"ok": True})
        if path == "/_porter/health":
            return _json(start, 200, {"ok": True})
        if path == "/_porter/cluster-issuer" and method == "POST":
            return self._set_cluster_issuer(start, json.loads(_read_body(environ) or b"{}"))
        return _json(start, 404, {"message": f"no control route {method} {path}"})

    def _set_cluster_issuer(self, start: StartResponse, body: dict[str, Any]) -> list[bytes]:
        """The EKS cluster's OIDC issuer (DescribeCluster shows it) and the CA to fetch its discovery with."""
        from porter_dev.processes import AWS_ACCOUNT_ID, AWS_REGION

        region = str(body.get("region") or AWS_REGION)
        try:
            eks_auth.set_cluster_issuer(AWS_ACCOUNT_ID, region, str(body["cluster"]), str(body["issuer"]))
        except (KeyError, eks_auth.EksAuthError) as err:
            return _json(start, 400, {"message": f"cannot set the cluster issuer: {err}"})
        self.issuers.trust(str(body["issuer"]), body.get("caFile"))
        return _json(start, 200, {"ok": True})


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body once and put it back for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _params(environ: dict[str, Any], body: bytes) -> dict[str, list[str]]:
    """Query-protocol parameters: the query string plus a form body (parse_qs URL-decodes documents)."""
    params: dict[str, list[str]] = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    if body and "json" not in environ.get("CONTENT_TYPE", ""):
        params.update(parse_qs(body.decode(errors="replace"), keep_blank_values=True))
    return params


def _check_quota(operation: str, params: dict[str, list[str]], role: Any) -> None:
    """Raise IamRuleError if `operation` would break an IAM quota; a missing role is left to moto to report."""
    document = _one(params, "AssumeRolePolicyDocument" if operation == "CreateRole" else "PolicyDocument") or ""
    if operation == "CreateRole":
        iam_rules.check_trust_policy_size(document)
        iam_rules.check_json(document)
    elif operation == "UpdateAssumeRolePolicy":
        iam_rules.check_trust_policy_size(document)
    elif operation in ("CreatePolicy", "CreatePolicyVersion"):
        iam_rules.check_managed_policy_size(document)
    elif operation == "PutRolePolicy" and role is not None:
        iam_rules.check_inline_policies(role.name, role.policies, _one(params, "PolicyName") or "", document)
    elif operation == "AttachRolePolicy" and role is not None:
        iam_rules.check_attach(role.managed_policies, _one(params, "PolicyArn") or "")


def _operation(method: str, path: str, params: dict[str, list[str]], match: re.Match[str] | None) -> str:
    if match is not None:
        has_id = match.group("id") is not None
        return {
            ("POST", False): "CreatePodIdentityAssociation",
            ("GET", False): "ListPodIdentityAssociations",
            ("GET", True): "DescribePodIdentityAssociation",
            ("POST", True): "UpdatePodIdentityAssociation",
            ("DELETE", True): "DeletePodIdentityAssociation",
        }.get((method, has_id), "Unknown")
    action = params.get("Action")
    if action:
        return action[0]
    return f"{method} {path}"


def _inject(start: StartResponse, service: str, fault: str) -> list[bytes]:
    if service in ("iam", "sts"):
        if fault == "throttle":
            return _query_error(start, service, 400, "Throttling", "Rate exceeded")
        return _query_error(start, service, 500, "ServiceFailure", "Injected service failure")
    if fault == "throttle":
        return _json(start, 429, {"message": "Rate exceeded"}, [("x-amzn-ErrorType", "ThrottlingException")])
    return _json(start, 500, {"message": "Injected server error"}, [("x-amzn-ErrorType", "ServerException")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter_dev.aws", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    # AWS managed policies (AdministratorAccess, ...) exist in every real account; moto loads them only when asked.
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    from porter_dev.faults import serve

    serve(AwsEmulator(), args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
