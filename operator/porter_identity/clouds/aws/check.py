"""Its part of `porter-identity check`: exchange the ServiceAccount token as the pod's SDK does, then call once."""

from __future__ import annotations

from typing import Any

from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.check.exchange import Options, ServiceAccountToken
from porter_identity.check.verdict import (
    CheckReason,
    Seen,
    Step,
    StepFailed,
    Verdict,
    classify_aws,
)
from porter_identity.clouds.aws.plan import trust_problem
from porter_identity.config import Settings
from porter_identity.model import role_name


def exchange(
    conn: ServiceIdentityConnection,
    annotations: dict[str, str],
    sat: ServiceAccountToken,
    settings: Settings,
    options: Options,
    verdict: Verdict,
) -> str:
    """What the EKS Pod Identity Agent does for the pod's SDK: AssumeRoleForPodIdentity, then one STS call."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if not settings.eks_cluster_name:
        raise StepFailed(Step.EXCHANGE, CheckReason.NOT_CONFIGURED, "PORTER_EKS_CLUSTER_NAME is not set")
    session = boto3.session.Session(region_name=settings.aws_region)
    try:
        answer = session.client("eks-auth", endpoint_url=options.aws_endpoint_url).assume_role_for_pod_identity(
            clusterName=settings.eks_cluster_name, token=sat.token
        )
    except ClientError as err:
        code, message = err.response["Error"].get("Code", ""), err.response["Error"].get("Message", "")
        raise StepFailed(Step.EXCHANGE, classify_aws(code, message), f"EKS Auth {code}: {message}") from None
    except BotoCoreError as err:
        raise StepFailed(Step.EXCHANGE, CheckReason.CLOUD_UNAVAILABLE, f"EKS Auth: {err}") from None
    association = answer["podIdentityAssociation"]["associationId"]
    verdict.passed(
        Step.EXCHANGE,
        f"EKS Auth AssumeRoleForPodIdentity in cluster {settings.eks_cluster_name}: association {association}, "
        f"role session {answer['assumedRoleUser']['arn']}",
    )
    creds = answer["credentials"]
    assumed = boto3.session.Session(
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
        region_name=settings.aws_region,
    )
    try:
        arn: str = assumed.client("sts", endpoint_url=options.aws_endpoint_url).get_caller_identity()["Arn"]
    except (ClientError, BotoCoreError) as err:
        raise StepFailed(Step.IDENTITY, CheckReason.IDENTITY_CALL_FAILED, f"STS GetCallerIdentity: {err}") from None
    verdict.passed(Step.IDENTITY, f"STS GetCallerIdentity: {arn}")
    return arn


def control_plane(conn: ServiceIdentityConnection, settings: Settings, options: Options) -> Seen | None:
    """What IAM (GetRole: at once after a write) and EKS show of the role and the association EKS or EKS Auth
    refused: linked when the role exists with a trust policy EKS Pod Identity can use and, once the operator
    recorded an association, that association names the role."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    assert conn.spec.aws is not None
    wanted = conn.spec.aws.role
    session = boto3.session.Session(region_name=settings.aws_region)
    try:
        role = session.client("iam", endpoint_url=options.aws_endpoint_url).get_role(RoleName=role_name(wanted))
    except ClientError as err:
        if err.response["Error"].get("Code") == "NoSuchEntity":
            return Seen(False, f"IAM has no role {role_name(wanted)}")
        return None
    except BotoCoreError:
        return None
    arn, raw = role["Role"]["Arn"], role["Role"].get("AssumeRolePolicyDocument")
    if wanted.startswith("arn:") and arn != wanted:
        return Seen(False, f"IAM's role {role_name(wanted)} is {arn}")
    trust: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    problem = trust_problem(trust)
    if problem is not None:
        return Seen(False, f"IAM role {arn}: {problem}")
    made = f"{role['Role']['CreateDate']:%Y-%m-%dT%H:%M:%SZ}"
    seen = f"IAM GetRole returns {arn}, created {made}, with a trust policy EKS Pod Identity can use"
    recorded = conn.status.aws.association_id if conn.status.aws else None
    if not recorded or not settings.eks_cluster_name:
        return Seen(True, seen)
    try:
        found = session.client("eks", endpoint_url=options.aws_endpoint_url).describe_pod_identity_association(
            clusterName=settings.eks_cluster_name, associationId=recorded
        )["association"]
    except ClientError as err:
        if err.response["Error"].get("Code") == "ResourceNotFoundException":
            return Seen(False, f"EKS has no association {recorded}")
        return None
    except BotoCoreError:
        return None
    if found.get("roleArn") != arn:
        return Seen(False, f"EKS association {recorded} names {found.get('roleArn')}")
    return Seen(True, f"{seen}, and EKS association {recorded} names it")
