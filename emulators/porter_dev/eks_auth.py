"""EKS Auth `AssumeRoleForPodIdentity` for the AWS emulator: what the EKS Pod Identity Agent calls.

Follows the Amazon EKS Auth API reference (https://docs.aws.amazon.com/eks/latest/APIReference/
API_auth_AssumeRoleForPodIdentity.html) and "Understand how EKS Pod Identity works": the token must be a
service-account token of the cluster's own OIDC issuer with audience `pods.eks.amazonaws.com`
(InvalidTokenException, ExpiredTokenException, 400), the cluster must exist and the service account must have
a Pod Identity association (ResourceNotFoundException, 404), and the role's trust policy must let
`pods.eks.amazonaws.com` perform `sts:AssumeRole` and, unless the association disables session tags,
`sts:TagSession` (AccessDeniedException, 400). The error codes and statuses are the service model's; the
message texts are this emulator's. Credentials come from moto's STS, so they work for any later call
(GetCallerIdentity answers with the assumed-role ARN).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from porter_dev import iam_rules
from porter_dev.oidc import Issuers, TokenError, service_account_of

AUDIENCE = "pods.eks.amazonaws.com"
PATH = re.compile(r"^/clusters/(?P<cluster>[^/]+)/assume-role-for-pod-identity/?$")


class EksAuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def cluster_issuer(account: str, region: str, cluster: str) -> str:
    """The cluster's OIDC issuer as DescribeCluster reports it (set by `set_cluster_issuer` for the dev cluster)."""
    from moto.eks.models import eks_backends

    found = eks_backends[account][region].clusters.get(cluster)
    if found is None:
        raise EksAuthError(404, "ResourceNotFoundException", f"No cluster found for name: {cluster}.")
    return str(found.identity["oidc"]["issuer"])


def set_cluster_issuer(account: str, region: str, cluster: str, issuer: str) -> None:
    from moto.eks.models import eks_backends

    found = eks_backends[account][region].clusters.get(cluster)
    if found is None:
        raise EksAuthError(404, "ResourceNotFoundException", f"No cluster found for name: {cluster}.")
    found.identity = {"oidc": {"issuer": issuer}}


def assume_role_for_pod_identity(
    associations: list[Any],
    issuers: Issuers,
    account: str,
    region: str,
    cluster: str,
    body: dict[str, Any],
    trust_of: Callable[[str], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """The response body; `associations` are the cluster's Pod Identity associations, `trust_of` the role's trust
    policy as EKS Auth sees it (None: no such role), by default IAM's own."""
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise EksAuthError(400, "InvalidParameterException", "token is required.")
    issuer = cluster_issuer(account, region, cluster)
    try:
        claims = issuers.verify(token, AUDIENCE, issuer=issuer)
    except TokenError as err:
        code = "ExpiredTokenException" if err.problem == "expired" else "InvalidTokenException"
        raise EksAuthError(400, code, err.message) from None
    subject = service_account_of(str(claims.get("sub", "")))
    if subject is None:
        raise EksAuthError(400, "InvalidTokenException", "The token's subject is not a Kubernetes service account.")
    namespace, service_account = subject
    assoc = next((a for a in associations if (a.namespace, a.service_account) == subject), None)
    if assoc is None:
        raise EksAuthError(
            404,
            "ResourceNotFoundException",
            f"No Pod Identity Association found for service account {service_account} in namespace {namespace} "
            f"of cluster {cluster}.",
        )
    role_arn = assoc.target_role_arn or assoc.role_arn
    _check_trust(role_arn, account, assoc.disable_session_tags, trust_of)
    return _credentials(account, region, cluster, assoc, role_arn, namespace, service_account)


def _check_trust(
    role_arn: str, account: str, disable_session_tags: bool, trust_of: Callable[[str], dict[str, Any] | None] | None
) -> None:
    from porter_dev.aws import _trust_policy

    policy = (trust_of or _trust_policy)(role_arn)
    actions = ["sts:AssumeRole"] if disable_session_tags else ["sts:AssumeRole", "sts:TagSession"]
    for action in actions:
        if policy is None or not iam_rules.service_allows(policy, AUDIENCE, action, account):
            raise EksAuthError(
                400,
                "AccessDeniedException",
                f"{AUDIENCE} is not authorized to perform: {action} on resource: {role_arn} "
                "(check the role's trust policy).",
            )


def _credentials(
    account: str, region: str, cluster: str, assoc: Any, role_arn: str, namespace: str, service_account: str
) -> dict[str, Any]:
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    session_name = f"eks-{cluster}-{service_account}"[:64]
    assumed = sts_backends[account][get_partition(region)].assume_role(
        region_name=region,
        role_session_name=session_name,
        role_arn=role_arn,
        policy="",
        duration=21600,
        external_id="",
    )
    return {
        "subject": {"namespace": namespace, "serviceAccount": service_account},
        "audience": AUDIENCE,
        "podIdentityAssociation": {"associationArn": assoc.association_arn, "associationId": assoc.association_id},
        "assumedRoleUser": {"arn": assumed.arn, "assumeRoleId": assumed.user_id},
        "credentials": {
            "sessionToken": assumed.session_token,
            "secretAccessKey": assumed.secret_access_key,
            "accessKeyId": assumed.access_key_id,
            "expiration": assumed.expiration.timestamp(),
        },
    }
