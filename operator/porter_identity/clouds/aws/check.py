"""Its part of `porter-identity check`: exchange the ServiceAccount token as the pod's SDK does, then call once."""

from __future__ import annotations

from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.check.exchange import Options, ServiceAccountToken
from porter_identity.check.verdict import (
    CheckReason,
    Step,
    StepFailed,
    Verdict,
    classify_aws,
)
from porter_identity.config import Settings


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
