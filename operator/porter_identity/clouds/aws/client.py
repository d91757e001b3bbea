"""AWS adapter: IAM role lookup and EKS Pod Identity associations through boto3."""

from __future__ import annotations

import json
import urllib.parse
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from porter_identity import metrics
from porter_identity.errors import (
    AccessDenied,
    CloudError,
    Conflict,
    Invalid,
    LimitExceeded,
    NotFound,
    Throttled,
    Transient,
    translating,
)
from porter_identity.model import Association, AssociationSummary, Role, role_name
from porter_identity.providers import fence
from porter_identity.providers.pacing import Pacer
from porter_identity.providers.recent import Recent

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
}
_NOT_FOUND = {"NoSuchEntity", "ResourceNotFoundException"}
_CONFLICT = {"ResourceInUseException", "EntityAlreadyExists"}
_INVALID = {"InvalidParameterException", "InvalidRequestException", "ValidationError", "MalformedPolicyDocument"}
_LIMIT = {"LimitExceeded", "ResourceLimitExceededException"}
_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",  # clock skew: signed too long ago
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
}


def translate(err: ClientError | BotoCoreError) -> CloudError:
    """Map a botocore failure onto the typed errors, keeping AWS's own code and message."""
    if isinstance(err, BotoCoreError):
        if (refused := fence.refusal(err)) is not None:
            return refused  # stopped at the socket: never sent
        return Transient(f"AWS unreachable: {err}", code=type(err).__name__)
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or str(err)
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLING or status == 429:
        return Throttled(message, code=code)
    if code in _NOT_FOUND:
        return NotFound(message, code=code)
    if code in _CONFLICT:
        return Conflict(message, code=code)
    if code in _LIMIT:
        return LimitExceeded(message, code=code)
    if code in _INVALID:
        return Invalid(message, code=code)
    if code in _DENIED or status in (401, 403):
        return AccessDenied(message, code=code)
    if status >= 500 or status == 0:
        return Transient(message, code=code)
    return Invalid(message, code=code)


def translated() -> AbstractContextManager[None]:
    return translating((ClientError, BotoCoreError), translate)


@dataclass(frozen=True)
class RolePolicies:
    attached: list[str]
    managed: dict[str, dict[str, Any]]
    inline: dict[str, dict[str, Any]]


def _document(raw: Any) -> dict[str, Any]:
    """boto3 decodes policy documents to dicts; a string (some endpoints) is URL-encoded JSON."""
    if isinstance(raw, dict):
        return raw
    return dict(json.loads(urllib.parse.unquote(str(raw))))


# Long enough for a burst of creates on one role to share its GetRole, short enough that a role deleted or made
# untrusting is seen by the next burst; runs of a connection that already links read the role afresh.
ROLE_SHARE_SECONDS = 30.0


class AwsProvider:
    """Talks to IAM and EKS for one cluster; clients are thread-safe and shared."""

    def __init__(
        self,
        region: str,
        cluster_name: str,
        max_attempts: int = 3,
        session: Any = None,
        pool_size: int = 10,
        pacer: Pacer | None = None,
        privilege_cache_seconds: float = 300.0,
        role_share_seconds: float = ROLE_SHARE_SECONDS,
    ) -> None:
        session = session or boto3.session.Session()
        # One pooled connection per worker thread: a smaller pool drops connections and reconnects under load.
        # Adaptive mode: standard retries plus botocore's client-side rate limiter, which stays out of the way until
        # AWS throttles, then sends at the rate AWS accepts and speeds up again (CUBIC) as calls succeed.
        config = Config(
            region_name=region,
            retries={"mode": "adaptive", "total_max_attempts": max_attempts},
            max_pool_connections=pool_size,
        )
        self.cluster_name = cluster_name
        self._privileges: Recent[RolePolicies] = Recent(privilege_cache_seconds)
        self._roles: Recent[Role] = Recent(role_share_seconds)
        self.iam = fence.guard_boto3(metrics.instrument_boto3(session.client("iam", config=config)))
        self.eks = fence.guard_boto3(metrics.instrument_boto3(session.client("eks", config=config)))
        if pacer is not None and pacer.fixed:
            pacer.pace_boto3(self.iam)
            pacer.pace_boto3(self.eks)

    def get_role(self, role: str) -> Role:
        with translated():
            data = self.iam.get_role(RoleName=role_name(role))["Role"]
        trust = data.get("AssumeRolePolicyDocument") or {}
        return Role(name=data["RoleName"], arn=data["Arn"], trust_policy=trust if isinstance(trust, dict) else {})

    def shared_role(self, role: str) -> Role:
        """`get_role`, shared for `role_share_seconds` by the connections created together on one role (ten
        connections on a role cost one GetRole, not ten). A missing role is not kept."""
        return self._roles.get(role_name(role), lambda: self.get_role(role))

    def forget_role(self, role: str) -> None:
        """A role refused (its trust policy): the next connection on it reads it again, so a fix is seen."""
        self._roles.forget(role_name(role))

    def role_policies(self, name: str) -> RolePolicies:
        """Attached policy ARNs, the documents of customer-managed ones, and inline documents (for LeastPrivilege).

        AWS-managed policies are judged by name, so a typical role costs two list calls and nothing more; the
        answer is kept `privilege_cache_seconds`, shared by every connection on the role."""
        return self._privileges.get(name, lambda: self._read_role_policies(name))

    def _read_role_policies(self, name: str) -> RolePolicies:
        with translated():
            attached = [
                p["PolicyArn"]
                for page in self.iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
                for p in page["AttachedPolicies"]
            ]
            managed = {}
            for arn in attached:
                if arn.split(":")[4] != "aws":
                    version = self.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
                    found = self.iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
                    managed[arn] = _document(found["Document"])
            names = [
                n
                for page in self.iam.get_paginator("list_role_policies").paginate(RoleName=name)
                for n in page["PolicyNames"]
            ]
            inline = {
                n: _document(self.iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"]) for n in names
            }
        return RolePolicies(attached, managed, inline)

    def find_association(self, namespace: str, service_account: str) -> Association | None:
        """The association for this namespace + service account, if any (EKS allows at most one)."""
        with translated():
            listed = self.eks.list_pod_identity_associations(
                clusterName=self.cluster_name, namespace=namespace, serviceAccount=service_account
            )["associations"]
        for summary in listed:
            found = self.describe_association(summary["associationId"])
            if found is not None:
                return found
        return None

    def list_associations(self, namespace: str | None = None) -> list[AssociationSummary]:
        """Every association of the cluster (or of one namespace), one call per page of 100 (the API's largest)."""
        out: list[AssociationSummary] = []
        token: str | None = None
        only = {"namespace": namespace} if namespace is not None else {}
        while True:
            with translated():
                page = self.eks.list_pod_identity_associations(
                    clusterName=self.cluster_name, maxResults=100, **only, **({"nextToken": token} if token else {})
                )
            out += [
                AssociationSummary(a["associationId"], a["namespace"], a["serviceAccount"])
                for a in page["associations"]
            ]
            token = page.get("nextToken")
            if not token:
                return out

    def describe_association(self, association_id: str) -> Association | None:
        try:
            with translated():
                data = self.eks.describe_pod_identity_association(
                    clusterName=self.cluster_name, associationId=association_id
                )["association"]
        except NotFound:
            return None
        return Association.from_api(data)

    def create_association(
        self, namespace: str, service_account: str, role_arn: str, tags: dict[str, str]
    ) -> Association:
        with translated():
            data = self.eks.create_pod_identity_association(
                clusterName=self.cluster_name,
                namespace=namespace,
                serviceAccount=service_account,
                roleArn=role_arn,
                tags=tags,
            )["association"]
        return Association.from_api(data)

    def update_association(self, association_id: str, role_arn: str) -> Association:
        with translated():
            data = self.eks.update_pod_identity_association(
                clusterName=self.cluster_name, associationId=association_id, roleArn=role_arn
            )["association"]
        return Association.from_api(data)

    def tag_association(self, association: Association, tags: dict[str, str]) -> None:
        with translated():
            self.eks.tag_resource(resourceArn=association.association_arn, tags=tags)

    def untag_association(self, association: Association, keys: list[str]) -> None:
        with translated():
            self.eks.untag_resource(resourceArn=association.association_arn, tagKeys=keys)

    def delete_association(self, association_id: str) -> bool:
        """Delete; False when it was already gone (which counts as success)."""
        try:
            with translated():
                self.eks.delete_pod_identity_association(clusterName=self.cluster_name, associationId=association_id)
        except NotFound:
            return False
        return True
