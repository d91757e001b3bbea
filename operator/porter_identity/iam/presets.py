"""The IAM roles Porter provisions in a customer account, transcribed from its permission inventory."""

# The inventory's text is kept verbatim, typographic apostrophes (U+2019) included.
# ruff: noqa: RUF001

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Any

from porter_identity.iam.policy import VERSION, Condition, Statement

ACCOUNT_PLACEHOLDER = "<account-id>"
S3_PRESET = "porter-s3"

_MANAGEMENT_MODES = (None, "required", "default")
_ACCOUNT_ID = re.compile(r"\d{12}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_OBJECT_ACTIONS = (
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
)


@dataclass(frozen=True)
class Trust:
    """Who may assume a preset's role."""

    # None: not assumable from outside; "required": ExternalId always; "default": ExternalId unless the
    # spec's ackCompatibleTrust switch is on, because the ACK controllers cannot send one.
    management: str | None
    services: tuple[str, ...]  # AWS service principals allowed sts:AssumeRole
    pod_identity: bool  # pods.eks.amazonaws.com, scoped to the account

    def __post_init__(self) -> None:
        if self.management not in _MANAGEMENT_MODES:
            raise ValueError(f"unknown management trust {self.management!r}")


@dataclass(frozen=True)
class Preset:
    """One role of the inventory: its summary-table columns verbatim, its statements and its trust."""

    name: str
    created_by: str
    assumable_from_outside: str
    purpose: str
    summary: str
    trusted_by: str
    statements: tuple[Statement, ...]  # resources may hold ACCOUNT_PLACEHOLDER
    trust: Trust


def statements_for(preset: Preset, account_id: str) -> tuple[Statement, ...]:
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"AWS account id must be 12 digits, got {account_id!r}")
    return tuple(
        replace(s, resources=tuple(r.replace(ACCOUNT_PLACEHOLDER, account_id) for r in s.resources))
        for s in preset.statements
    )


def s3_role_name(bucket: str) -> str:
    """A short hash rather than the bucket name: bucket names reach 63 characters, role names stop at 64."""
    return f"{S3_PRESET}-{hashlib.sha256(bucket.encode()).hexdigest()[:10]}"


def s3_statements(bucket: str) -> tuple[Statement, ...]:
    """Object access to one bucket; "*" is the inventory's template row, any other wildcard would widen the scope."""
    if bucket != "*" and not _BUCKET.fullmatch(bucket):
        raise ValueError(f"not an S3 bucket name: {bucket!r}")
    return (Statement("S3ObjectAccess", (f"arn:aws:s3:::{bucket}/*",), _S3_OBJECT_ACTIONS),)


def trust_document(
    trust: Trust, account_id: str, management_principal_arn: str, external_id: str | None, ack_compatible: bool
) -> dict[str, Any]:
    """The role's trust policy; `ack_compatible` drops the ExternalId only where the preset allows it."""
    statements: list[dict[str, Any]] = []
    if trust.management is not None:
        management: dict[str, Any] = {
            "Sid": "PorterManagement",
            "Effect": "Allow",
            "Principal": {"AWS": management_principal_arn},
            "Action": "sts:AssumeRole",
        }
        if trust.management == "required" or not ack_compatible:
            if not external_id:
                raise ValueError("this trust needs an ExternalId")
            management["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
        statements.append(management)
    if trust.services:
        statements.append(
            {
                "Sid": "AwsServices",
                "Effect": "Allow",
                "Principal": {"Service": sorted(trust.services)},
                "Action": "sts:AssumeRole",
            }
        )
    if trust.pod_identity:
        statements.append(
            {
                "Sid": "EksPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        )
    return {"Version": VERSION, "Statement": statements}


def _s(sid: str, resources: str, actions: str, *conditions: Condition) -> Statement:
    """A statement with its resources and actions written space-separated, in the inventory's order."""
    return Statement(sid, tuple(resources.split()), tuple(actions.split()), conditions)


def _eq(key: str, value: str) -> Condition:
    return Condition(key, "=", (value,))


def _in(key: str, *values: str) -> Condition:
    return Condition(key, "in", values)


def _like(key: str, value: str) -> Condition:
    return Condition(key, "like", (value,))


def _not_null(key: str) -> Condition:
    return Condition(key, "is not null")


_POD_IDENTITY_ONLY = Trust(None, (), pod_identity=True)

# porter-node-manager repeats these porter-controlplane-manager statements verbatim.
_EKS_CLUSTER_POLICY = _s(
    "AmazonEKSClusterPolicy",
    "*",
    "autoscaling:DescribeAutoScalingGroups autoscaling:UpdateAutoScalingGroup ec2:AttachVolume "
    "ec2:AuthorizeSecurityGroupIngress ec2:CreateRoute ec2:CreateSecurityGroup ec2:CreateTags ec2:CreateVolume "
    "ec2:DeleteRoute ec2:DeleteSecurityGroup ec2:DeleteVolume ec2:DescribeAccountAttributes "
    "ec2:DescribeAddresses ec2:DescribeAvailabilityZones ec2:DescribeDhcpOptions ec2:DescribeInstances "
    "ec2:DescribeInstanceTopology ec2:DescribeInternetGateways ec2:DescribeNetworkInterfaces "
    "ec2:DescribeRouteTables ec2:DescribeSecurityGroups ec2:DescribeSubnets ec2:DescribeVolumes "
    "ec2:DescribeVolumesModifications ec2:DescribeVpcs ec2:DetachVolume ec2:ModifyInstanceAttribute "
    "ec2:ModifyVolume ec2:RevokeSecurityGroupIngress elasticloadbalancing:AddTags "
    "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer elasticloadbalancing:AttachLoadBalancerToSubnets "
    "elasticloadbalancing:ConfigureHealthCheck elasticloadbalancing:CreateListener "
    "elasticloadbalancing:CreateLoadBalancer elasticloadbalancing:CreateLoadBalancerListeners "
    "elasticloadbalancing:CreateLoadBalancerPolicy elasticloadbalancing:CreateTargetGroup "
    "elasticloadbalancing:DeleteListener elasticloadbalancing:DeleteLoadBalancer "
    "elasticloadbalancing:DeleteLoadBalancerListeners elasticloadbalancing:DeleteTargetGroup "
    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer elasticloadbalancing:DeregisterTargets "
    "elasticloadbalancing:DescribeListeners elasticloadbalancing:DescribeLoadBalancerAttributes "
    "elasticloadbalancing:DescribeLoadBalancerPolicies elasticloadbalancing:DescribeLoadBalancers "
    "elasticloadbalancing:DescribeTargetGroupAttributes elasticloadbalancing:DescribeTargetGroups "
    "elasticloadbalancing:DescribeTargetHealth elasticloadbalancing:DetachLoadBalancerFromSubnets "
    "elasticloadbalancing:ModifyListener elasticloadbalancing:ModifyLoadBalancerAttributes "
    "elasticloadbalancing:ModifyTargetGroup elasticloadbalancing:ModifyTargetGroupAttributes "
    "elasticloadbalancing:RegisterInstancesWithLoadBalancer elasticloadbalancing:RegisterTargets "
    "elasticloadbalancing:SetLoadBalancerPoliciesForBackendServer "
    "elasticloadbalancing:SetLoadBalancerPoliciesOfListener kms:DescribeKey",
)
_EKS_SLR_CREATE = _s(
    "AmazonEKSClusterPolicySLRCreate",
    "*",
    "iam:CreateServiceLinkedRole",
    _eq("iam:AWSServiceName", "elasticloadbalancing.amazonaws.com"),
)
_EKS_ENI_DELETE = _s(
    "AmazonEKSClusterPolicyENIDelete",
    "*",
    "ec2:DeleteNetworkInterface",
    _eq("ec2:ResourceTag/eks:eni:owner", "amazon-vpc-cni"),
)
_LOAD_BALANCERS = _s(
    "LoadBalancers",
    "*",
    "acm:DescribeCertificate acm:GetCertificate acm:ListCertificates acm:RequestCertificate ec2:DeleteTags "
    "elasticloadbalancing:AddListenerCertificates elasticloadbalancing:AddTags "
    "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer elasticloadbalancing:ConfigureHealthCheck "
    "elasticloadbalancing:CreateLoadBalancer elasticloadbalancing:CreateRule "
    "elasticloadbalancing:DeleteLoadBalancer elasticloadbalancing:DeleteRule "
    "elasticloadbalancing:DeleteTargetGroup elasticloadbalancing:DeregisterInstancesFromLoadBalancer "
    "elasticloadbalancing:DescribeListenerAttributes elasticloadbalancing:DescribeListenerCertificates "
    "elasticloadbalancing:DescribeLoadBalancerAttributes elasticloadbalancing:DescribeLoadBalancers "
    "elasticloadbalancing:DescribeRules elasticloadbalancing:DescribeTags "
    "elasticloadbalancing:DescribeTargetGroups elasticloadbalancing:ModifyLoadBalancerAttributes "
    "elasticloadbalancing:ModifyRule elasticloadbalancing:RegisterInstancesWithLoadBalancer "
    "elasticloadbalancing:RemoveListenerCertificates elasticloadbalancing:RemoveTags "
    "elasticloadbalancing:SetRulePriorities elasticloadbalancing:SetSubnets elasticloadbalancing:SetWebACL "
    "wafv2:AssociateWebACL wafv2:GetWebACL wafv2:GetWebACLForResource wafv2:ListResourcesForWebACL "
    "wafv2:ListRuleGroups wafv2:ListTagsForResource wafv2:ListWebACLs wafv2:TagResource",
)
_CLUSTER_AUTOSCALING = _s(
    "ClusterAutoscaling",
    "*",
    "autoscaling:DescribeAutoScalingGroups autoscaling:DescribeAutoScalingInstances "
    "autoscaling:DescribeLaunchConfigurations autoscaling:DescribeScalingActivities autoscaling:DescribeTags "
    "autoscaling:SetDesiredCapacity autoscaling:TerminateInstanceInAutoScalingGroup ec2:DescribeImages "
    "ec2:DescribeInstanceTypes ec2:DescribeLaunchTemplateVersions ec2:GetInstanceTypesFromInstanceRequirements "
    "eks:DescribeNodegroup",
)

_ALL = (
    Preset(
        name="porter-access-manager",
        created_by="CloudFormation (initial bootstrap)",
        assumable_from_outside="Yes (Porter’s CAPIManagement)",
        purpose=(
            "Grants Porter the ability to provision and update the rest of the IAM roles and policies in your "
            "account. Used for IAM operations only."
        ),
        summary=(
            "For creating, updating, and deleting the other Porter-provisioned roles and their attached policies."
        ),
        trusted_by=(
            "Assumable by Porter’s CAPIManagement role, and by EC2, EKS, and EKS Pod Identity service principals."
        ),
        trust=Trust("default", ("ec2.amazonaws.com", "eks.amazonaws.com"), pod_identity=True),
        statements=(
            _s(
                "IAMController",
                "*",
                "iam:AttachRolePolicy iam:CreatePolicy iam:CreatePolicyVersion iam:CreateRole iam:DeletePolicy "
                "iam:DeletePolicyVersion iam:DeleteRole iam:DeleteRolePolicy iam:DetachRolePolicy "
                "iam:GetPolicy iam:GetPolicyVersion iam:GetRole iam:GetRolePolicy iam:ListAttachedRolePolicies "
                "iam:ListPolicyTags iam:ListPolicyVersions iam:ListRolePolicies iam:ListRoleTags "
                "iam:PutRolePermissionsBoundary iam:PutRolePolicy iam:TagPolicy iam:TagRole iam:UntagPolicy "
                "iam:UntagRole iam:UpdateAssumeRolePolicy iam:UpdateRole",
            ),
        ),
    ),
    Preset(
        name="porter-manager",
        created_by="Provisioned by Porter after bootstrap",
        assumable_from_outside="Yes (Porter’s CAPIManagement, gated by a per-project ExternalId)",
        purpose=(
            "Primary operational role. Used by Porter’s control plane to manage EKS clusters, networking, "
            "storage, container registries, observability, and datastores."
        ),
        summary=(
            "For managing EKS clusters, networking, storage, container registries, and datastores via the "
            "Porter control plane."
        ),
        trusted_by=(
            "Assumable by Porter’s CAPIManagement role with a per-project ExternalId required, and by EC2 and "
            "EKS service principals."
        ),
        trust=Trust("required", ("ec2.amazonaws.com", "eks.amazonaws.com"), pod_identity=False),
        statements=(
            _s(
                "EksClusterManagement",
                "*",
                "ecr:CompleteLayerUpload ecr:CreateRepository ecr:InitiateLayerUpload ecr:PutImage "
                "ecr:TagResource ecr:UploadLayerPart eks:AssociateEncryptionConfig eks:CreateAddon "
                "eks:CreateCluster eks:CreateNodegroup eks:DeleteAddon eks:DeleteCluster eks:DeleteNodegroup "
                "eks:DescribeAddon eks:DescribeCluster eks:DescribeNodegroup eks:DescribeUpdate eks:ListAddons "
                "eks:ListFargateProfiles eks:ListNodegroups eks:ListUpdates eks:TagResource eks:UntagResource "
                "eks:UpdateAddon eks:UpdateClusterConfig eks:UpdateClusterVersion eks:UpdateNodegroupConfig "
                "eks:UpdateNodegroupVersion iam:AddClientIDToOpenIDConnectProvider "
                "iam:CreateOpenIDConnectProvider iam:CreateServiceLinkedRole iam:DeleteOpenIDConnectProvider "
                "iam:DeleteRole iam:DetachRolePolicy iam:GetOpenIDConnectProvider iam:GetRole "
                "iam:GetRolePolicy iam:ListAttachedRolePolicies iam:ListOpenIDConnectProviders iam:PassRole "
                "iam:TagOpenIDConnectProvider iam:UpdateOpenIDConnectProviderThumbprint "
                "secretsmanager:CreateSecret secretsmanager:DeleteSecret secretsmanager:TagResource "
                "servicequotas:GetServiceQuota servicequotas:ListRequestedServiceQuotaChangeHistoryByQuota "
                "servicequotas:ListServiceQuotas servicequotas:RequestServiceQuotaIncrease",
            ),
            _s(
                "CloudFormation",
                "*",
                "cloudformation:CreateStack cloudformation:DescribeStacks cloudformation:UpdateStack",
            ),
            _s(
                "IamPorterAssumeRolePolicy",
                "arn:aws:iam::*:role/porter*",
                "iam:UpdateAssumeRolePolicy",
            ),
            _s(
                "KmsAliasAndKey",
                "arn:aws:kms:*:*:alias/* arn:aws:kms:*:*:key/*",
                "kms:CreateAlias kms:CreateGrant kms:EnableKeyRotation kms:PutKeyPolicy kms:TagResource",
            ),
            _s(
                "KmsCreateKey",
                "*",
                "kms:CreateKey",
            ),
            _s(
                "SsmGetParameter",
                "*",
                "ssm:GetParameter",
            ),
            _s(
                "Efs",
                "*",
                "elasticfilesystem:CreateFileSystem elasticfilesystem:CreateMountTarget "
                "elasticfilesystem:DeleteFileSystem elasticfilesystem:DeleteMountTarget "
                "elasticfilesystem:DescribeFileSystems elasticfilesystem:DescribeMountTargets "
                "elasticfilesystem:TagResource elasticfilesystem:UntagResource",
            ),
            _s(
                "Soc2Requirements",
                "*",
                "ecr:GetRegistryScanningConfiguration ecr:PutRegistryScanningConfiguration inspector2:Enable",
            ),
            _s(
                "EksClusterOperations",
                "*",
                "account:ListRegions autoscaling:DescribeScalingActivities eks:CreatePodIdentityAssociation "
                "eks:DeletePodIdentityAssociation eks:DescribeCluster eks:DescribeNodegroup "
                "eks:DescribePodIdentityAssociation eks:ListClusters eks:ListPodIdentityAssociations",
            ),
            _s(
                "LoadBalancersRead",
                "*",
                "acm:AddTagsToCertificate acm:DescribeCertificate acm:ListCertificates acm:RequestCertificate "
                "elasticloadbalancing:DescribeLoadBalancers elasticloadbalancing:DescribeTags",
            ),
            _s(
                "IamRoles",
                "*",
                "iam:AttachRolePolicy iam:CreateRole iam:DeleteRole iam:DeleteRolePolicy iam:DetachRolePolicy "
                "iam:GetPolicy iam:GetRole iam:GetRolePolicy iam:ListAttachedRolePolicies iam:ListRolePolicies "
                "iam:PutRolePermissionsBoundary iam:PutRolePolicy iam:TagRole",
            ),
            _s(
                "S3Storage",
                "*",
                "s3:CreateBucket s3:DeleteBucket s3:DeleteObject s3:GetBucketLocation s3:GetBucketPolicy "
                "s3:GetBucketTagging s3:GetObject s3:ListBucket s3:PutBucketPolicy "
                "s3:PutBucketPublicAccessBlock s3:PutBucketTagging s3:PutBucketVersioning s3:PutObject",
            ),
            _s(
                "SsmParameterStore",
                "*",
                "ssm:AddTagsToResource ssm:DeleteParameter ssm:GetParameter ssm:PutParameter",
            ),
            _s(
                "EnvGroupSecrets",
                "arn:*:secretsmanager:*:*:secret:/porter/env-groups/*",
                "secretsmanager:CreateSecret secretsmanager:DeleteSecret secretsmanager:GetSecretValue "
                "secretsmanager:PutSecretValue secretsmanager:TagResource",
            ),
            _s(
                "Datastores",
                "*",
                "elasticache:AddTagsToResource elasticache:CreateCacheSubnetGroup "
                "elasticache:CreateReplicationGroup elasticache:DeleteCacheSubnetGroup "
                "elasticache:DeleteReplicationGroup elasticache:DescribeCacheClusters "
                "elasticache:DescribeCacheSubnetGroups elasticache:DescribeReplicationGroups "
                "elasticache:ListTagsForResource elasticache:ModifyCacheSubnetGroup "
                "elasticache:ModifyReplicationGroup rds:AddTagsToResource rds:CreateDBCluster "
                "rds:CreateDBInstance rds:CreateDBSubnetGroup rds:DeleteDBCluster rds:DeleteDBInstance "
                "rds:DeleteDBSubnetGroup rds:DescribeDBClusterSnapshots rds:DescribeDBClusters "
                "rds:DescribeDBEngineVersions rds:DescribeDBInstances rds:DescribeDBSnapshots "
                "rds:DescribeDBSubnetGroups rds:FailoverDBCluster rds:ListTagsForResource rds:ModifyDBCluster "
                "rds:ModifyDBInstance rds:ModifyDBSubnetGroup rds:RestoreDBClusterToPointInTime "
                "rds:RestoreDBInstanceFromDBSnapshot",
            ),
            _s(
                "Telemetry",
                "*",
                "aps:*",
                _eq("aws:ResourceTag/porter.run/managed", "true"),
            ),
            _s(
                "TelemetryAdmin",
                "*",
                "aps:ListWorkspaces",
            ),
            _s(
                "ReadOnlyBilling",
                "*",
                "ce:Get* ce:List* freetier:GetAccountPlanState pricing:*",
            ),
            _s(
                "PorterInstanceProxy",
                "*",
                "ec2:AssociateAddress ec2:ImportKeyPair",
            ),
            _s(
                "Sqs",
                "*",
                "sqs:CreateQueue sqs:DeleteQueue sqs:GetQueueAttributes sqs:GetQueueUrl sqs:SetQueueAttributes "
                "sqs:TagQueue",
            ),
            _s(
                "KarpenterInterruptionEventBridge",
                "*",
                "events:DeleteRule events:DescribeRule events:PutRule events:PutTargets events:RemoveTargets "
                "events:TagResource",
            ),
            _s(
                "CloudWatchObservability",
                "*",
                "cloudwatch:DeleteAlarms cloudwatch:DescribeAlarms cloudwatch:GetMetricData "
                "cloudwatch:GetMetricStatistics cloudwatch:PutMetricAlarm cloudwatch:TagResource "
                "logs:DescribeLogGroups",
            ),
            _s(
                "GuardDuty",
                "*",
                "guardduty:CreateDetector guardduty:DeleteDetector guardduty:GetAdministratorAccount "
                "guardduty:GetDetector guardduty:ListDetectors guardduty:TagResource guardduty:UpdateDetector",
            ),
            _s(
                "EcrPullImages",
                "*",
                "ecr:BatchCheckLayerAvailability ecr:BatchGetImage ecr:DescribeRepositories "
                "ecr:GetAuthorizationToken ecr:GetDownloadUrlForLayer",
            ),
            _s(
                "KmsClusterEncryption",
                "*",
                "kms:CreateGrant kms:Decrypt kms:DescribeKey kms:Encrypt",
            ),
            _s(
                "CloudTrailLookup",
                "*",
                "cloudtrail:LookupEvents",
            ),
            _s(
                "Ec2NetworkingCore",
                "*",
                "autoscaling:DescribeAutoScalingGroups ec2:AllocateAddress ec2:AssociateRouteTable "
                "ec2:AttachInternetGateway ec2:CreateInternetGateway ec2:CreateLaunchTemplate "
                "ec2:CreateLaunchTemplateVersion ec2:CreateNatGateway ec2:CreateNetworkInterface "
                "ec2:CreateRoute ec2:CreateRouteTable ec2:CreateSecurityGroup ec2:CreateSubnet ec2:CreateTags "
                "ec2:CreateVpc ec2:DeleteInternetGateway ec2:DeleteLaunchTemplate "
                "ec2:DeleteLaunchTemplateVersions ec2:DeleteNatGateway ec2:DeleteRouteTable "
                "ec2:DeleteSecurityGroup ec2:DeleteSubnet ec2:DeleteVpc ec2:DescribeAccountAttributes "
                "ec2:DescribeAddresses ec2:DescribeAvailabilityZones ec2:DescribeEgressOnlyInternetGateways "
                "ec2:DescribeImages ec2:DescribeInstanceTypes ec2:DescribeInstances "
                "ec2:DescribeInternetGateways ec2:DescribeKeyPairs ec2:DescribeLaunchTemplateVersions "
                "ec2:DescribeLaunchTemplates ec2:DescribeNatGateways ec2:DescribeRouteTables "
                "ec2:DescribeSecurityGroups ec2:DescribeSubnets ec2:DescribeVolumes ec2:DescribeVpcAttribute "
                "ec2:DescribeVpcs ec2:DetachInternetGateway ec2:DisassociateRouteTable "
                "ec2:ModifyLaunchTemplate ec2:ModifySubnetAttribute ec2:ModifyVpcAttribute ec2:ReleaseAddress "
                "ec2:ReplaceRoute ec2:RevokeSecurityGroupIngress ec2:RunInstances tag:GetResources",
            ),
            _s(
                "VpcPeering",
                "*",
                "ec2:AcceptVpcPeeringConnection ec2:CreateVpcPeeringConnection ec2:DeleteVpcPeeringConnection "
                "ec2:DescribeVpcPeeringConnections ec2:ModifyVpcPeeringConnectionOptions",
            ),
            _s(
                "VpcEndpoints",
                "*",
                "ec2:CreateVpcEndpoint ec2:DeleteVpcEndpoints ec2:DescribeVpcEndpointServiceConfigurations "
                "ec2:DescribeVpcEndpoints ec2:ModifyVpcEndpoint",
            ),
            _s(
                "VpcFlowLogs",
                "*",
                "ec2:CreateFlowLogs ec2:DescribeFlowLogs",
            ),
        ),
    ),
    Preset(
        name="porter-infra-manager",
        created_by="Provisioned by Porter after bootstrap",
        assumable_from_outside="Yes (Porter’s CAPIManagement)",
        purpose=(
            "Used by AWS Controllers for Kubernetes (ACK) to reconcile Kubernetes resource definitions to AWS "
            "state. Handles CloudWatch, CloudTrail, EventBridge, KMS, S3, SNS, and other EC2/VPC "
            "infrastructure."
        ),
        summary=(
            "For reconciling CloudWatch, CloudTrail, EventBridge, KMS, SNS, and other EC2/VPC infrastructure "
            "via AWS Controllers for Kubernetes (ACK)."
        ),
        trusted_by=(
            "Assumable by Porter’s CAPIManagement role (no ExternalId), and by EC2, EKS, EKS Pod Identity, and "
            "VPC Flow Logs service principals."
        ),
        trust=Trust(
            "default",
            ("ec2.amazonaws.com", "eks.amazonaws.com", "vpc-flow-logs.amazonaws.com"),
            pod_identity=True,
        ),
        statements=(
            _s(
                "KmsManagement",
                "*",
                "kms:CreateAlias kms:CreateKey kms:DeleteAlias kms:Describe* kms:EnableKeyRotation "
                "kms:GenerateRandom kms:Get* kms:List* kms:ScheduleKeyDeletion kms:TagResource "
                "kms:UntagResource kms:UpdateAlias",
            ),
            _s(
                "IamReadOnly",
                "*",
                "iam:GetRolePolicy iam:GetUser iam:ListGroups iam:ListRoles iam:ListUsers",
            ),
            _s(
                "CloudTrailS3Buckets",
                "arn:aws:s3:::aws-cloudtrail-logs* arn:aws:s3:::porter-* arn:aws:s3:::porter-*/*",
                "s3:*",
            ),
            _s(
                "S3BucketsRead",
                "*",
                "s3:GetBucketLocation s3:GetBucketPolicy s3:ListAllMyBuckets",
            ),
            _s(
                "SecurityGroups",
                "*",
                "ec2:AuthorizeSecurityGroupEgress ec2:AuthorizeSecurityGroupIngress ec2:CreateSecurityGroup "
                "ec2:DeleteSecurityGroup ec2:DeleteTags ec2:DescribeManagedPrefixLists "
                "ec2:DescribeSecurityGroupRules ec2:DescribeSecurityGroups ec2:RevokeSecurityGroupEgress "
                "ec2:RevokeSecurityGroupIngress",
            ),
            _s(
                "VpcManagement",
                "*",
                "ec2:AcceptVpcPeeringConnection ec2:AssociateRouteTable ec2:CreateFlowLogs ec2:CreateRoute "
                "ec2:CreateRouteTable ec2:CreateSubnet ec2:CreateTags ec2:CreateVpc ec2:CreateVpcEndpoint "
                "ec2:CreateVpcEndpointServiceConfiguration ec2:CreateVpcPeeringConnection ec2:DeleteFlowLogs "
                "ec2:DeleteRoute ec2:DeleteRouteTable ec2:DeleteSubnet ec2:DeleteVpc ec2:DeleteVpcEndpoint "
                "ec2:DeleteVpcEndpointServiceConfigurations ec2:DeleteVpcPeeringConnection "
                "ec2:DescribeFlowLogs ec2:DescribeRouteTables ec2:DescribeSubnets ec2:DescribeVpcAttribute "
                "ec2:DescribeVpcEndpointServiceConfigurations ec2:DescribeVpcEndpointServicePermissions "
                "ec2:DescribeVpcEndpointServices ec2:DescribeVpcEndpoints ec2:DescribeVpcPeeringConnections "
                "ec2:DescribeVpcs ec2:DisassociateRouteTable ec2:ModifySubnetAttribute ec2:ModifyVpcAttribute "
                "ec2:ModifyVpcEndpoint ec2:ModifyVpcEndpointServiceConfiguration "
                "ec2:ModifyVpcEndpointServicePermissions",
            ),
            _s(
                "CloudTrail",
                "*",
                "cloudtrail:*",
            ),
            _s(
                "CloudTrailLogGroup",
                "arn:aws:logs:*:*:log-group:aws-cloudtrail-logs*",
                "logs:CreateLogGroup",
            ),
            _s(
                "CloudTrailPassRole",
                "*",
                "iam:PassRole",
                _eq("iam:PassedToService", "cloudtrail.amazonaws.com"),
            ),
            _s(
                "S3ReplicationPassRole",
                "*",
                "iam:PassRole",
                _eq("iam:PassedToService", "s3.amazonaws.com"),
            ),
            _s(
                "PorterInfraManagerPassRole",
                "arn:aws:iam::<account-id>:role/porter-infra-manager",
                "iam:PassRole",
            ),
            _s(
                "Datastores",
                "*",
                "cloudwatch:DeleteAlarms cloudwatch:DescribeAlarms cloudwatch:GetMetricData "
                "cloudwatch:GetMetricStatistics cloudwatch:ListMetrics cloudwatch:PutMetricAlarm "
                "ec2:CreateTags ec2:CreateVpcEndpoint ec2:DescribeAccountAttributes "
                "ec2:DescribeAvailabilityZones ec2:DescribeCoipPools ec2:DescribeInternetGateways "
                "ec2:DescribeLocalGatewayRouteTablePermissions "
                "ec2:DescribeLocalGatewayRouteTableVpcAssociations ec2:DescribeLocalGatewayRouteTables "
                "ec2:DescribeLocalGateways ec2:DescribeSecurityGroups ec2:DescribeVpcs ec2:GetCoipPoolUsage "
                "elasticache:* kms:DescribeKey kms:ListAliases kms:ListKeys logs:DescribeLogGroups "
                "logs:DescribeLogStreams logs:GetLogEvents rds:* sns:ListSubscriptions sns:ListTopics "
                "sns:Publish",
            ),
            _s(
                "NodeGroupManagement",
                "*",
                "ec2:DescribeLaunchTemplates",
                _eq("aws:ResourceTag/porter.run/managed", "true"),
            ),
            _s(
                "Telemetry",
                "*",
                "aps:*",
                _eq("aws:ResourceTag/porter.run/managed", "true"),
            ),
            _s(
                "DatastoreServiceLinkedRoles",
                "*",
                "iam:CreateServiceLinkedRole",
                _in(
                    "iam:AWSServiceName",
                    "elasticache.amazonaws.com",
                    "rds.amazonaws.com",
                    "rds.application-autoscaling.amazonaws.com",
                ),
            ),
            _s(
                "CostExplorer",
                "*",
                "ce:GetCostAndUsage",
            ),
            _s(
                "PorterInstanceProxy",
                "*",
                "ec2:AllocateAddress ec2:AssociateAddress ec2:AttachInternetGateway ec2:CreateInternetGateway "
                "ec2:DescribeAddresses ec2:DescribeInstances ec2:DetachInternetGateway ec2:ImportKeyPair "
                "ec2:RunInstances ec2:TerminateInstances",
            ),
            _s(
                "CloudWatchLogs",
                "*",
                "logs:CreateLogGroup logs:CreateLogStream logs:DeleteLogGroup logs:DeleteRetentionPolicy "
                "logs:DescribeLogGroups logs:DescribeLogStreams logs:DescribeSubscriptionFilters "
                "logs:ListTagsForResource logs:PutLogEvents logs:PutRetentionPolicy logs:TagResource "
                "logs:UntagResource",
            ),
            _s(
                "Sns",
                "*",
                "sns:CreateTopic sns:DeleteTopic sns:GetTopicAttributes sns:ListTagsForResource "
                "sns:SetTopicAttributes sns:Subscribe sns:TagResource sns:Unsubscribe",
            ),
            _s(
                "EventBridgeRules",
                "*",
                "events:DescribeEventBus events:DescribeRule events:ListTagsForResource "
                "events:ListTargetsByRule events:PutRule events:TagResource",
            ),
        ),
    ),
    Preset(
        name="porter-controlplane-manager",
        created_by="Provisioned by Porter after bootstrap",
        assumable_from_outside="No (trusted by eks.amazonaws.com only)",
        purpose="Assumed by the AWS EKS service to operate the EKS managed control plane on your cluster.",
        summary="For operating the EKS managed control plane.",
        trusted_by="Assumable by EKS service principals (not by Porter).",
        trust=Trust(None, ("eks.amazonaws.com",), pod_identity=False),
        statements=(
            _EKS_CLUSTER_POLICY,
            _EKS_SLR_CREATE,
            _EKS_ENI_DELETE,
            _LOAD_BALANCERS,
            _CLUSTER_AUTOSCALING,
        ),
    ),
    Preset(
        name="porter-node-manager",
        created_by="Provisioned by Porter after bootstrap",
        assumable_from_outside="No (trusted by ec2.amazonaws.com only)",
        purpose=(
            "Instance profile role for EKS worker nodes. Used by kubelet and in-cluster controllers "
            "(cluster-autoscaler, aws-load-balancer-controller) running on nodes."
        ),
        summary="Instance profile role for EKS worker nodes.",
        trusted_by="Assumable by the EC2 service principal (not by Porter).",
        trust=Trust(None, ("ec2.amazonaws.com",), pod_identity=False),
        statements=(
            _s(
                "CustomerCloudWatchLogs",
                "*",
                "logs:CreateLogGroup logs:CreateLogStream logs:DescribeLogStreams logs:PutLogEvents "
                "logs:PutRetentionPolicy",
            ),
            _s(
                "CustomerEcrAccess",
                "*",
                "ecr:BatchCheckLayerAvailability ecr:BatchGetImage ecr:DescribeImages ecr:DescribeRegistry "
                "ecr:DescribeRepositories ecr:GetAuthorizationToken ecr:GetDownloadUrlForLayer ecr:ListImages "
                "ecr:ListTagsForResource",
            ),
            _s(
                "CustomerEcrPublicAccess",
                "*",
                "ecr-public:GetAuthorizationToken sts:GetServiceBearerToken",
            ),
            _s(
                "ParameterStoreAccess",
                "*",
                "ssm:GetParameter*",
            ),
            _s(
                "AmazonEKSCNIPolicy",
                "*",
                "ec2:AssignPrivateIpAddresses ec2:AttachNetworkInterface ec2:CreateNetworkInterface "
                "ec2:DeleteNetworkInterface ec2:DescribeInstances ec2:DescribeInstanceTypes "
                "ec2:DescribeNetworkInterfaces ec2:DescribeSecurityGroups ec2:DescribeSubnets ec2:DescribeTags "
                "ec2:DetachNetworkInterface ec2:ModifyNetworkInterfaceAttribute ec2:UnassignPrivateIpAddresses",
            ),
            _s(
                "AmazonEKSCNIPolicyENITag",
                "arn:aws:ec2:*:*:network-interface/*",
                "ec2:CreateTags",
            ),
            _EKS_CLUSTER_POLICY,
            _EKS_SLR_CREATE,
            _EKS_ENI_DELETE,
            _s(
                "WorkerNodePermissions",
                "*",
                "ec2:DescribeInstances ec2:DescribeInstanceTypes ec2:DescribeRouteTables "
                "ec2:DescribeSecurityGroups ec2:DescribeSubnets ec2:DescribeVolumes "
                "ec2:DescribeVolumesModifications ec2:DescribeVpcs eks:DescribeCluster "
                "eks-auth:AssumeRoleForPodIdentity",
            ),
            _s(
                "AmazonEC2ContainerRegistryReadOnly",
                "*",
                "ecr:BatchCheckLayerAvailability ecr:BatchGetImage ecr:DescribeImages "
                "ecr:DescribeImageScanFindings ecr:DescribeRepositories ecr:GetAuthorizationToken "
                "ecr:GetDownloadUrlForLayer ecr:GetLifecyclePolicy ecr:GetLifecyclePolicyPreview "
                "ecr:GetRepositoryPolicy ecr:ListImages ecr:ListTagsForResource",
            ),
            _s(
                "EbsDescribe",
                "*",
                "ec2:DescribeAvailabilityZones ec2:DescribeInstances ec2:DescribeInstanceTypes "
                "ec2:DescribeSnapshots ec2:DescribeTags ec2:DescribeVolumes ec2:DescribeVolumeStatus "
                "ec2:DescribeVolumesModifications",
            ),
            _s(
                "EbsVolumeSnapshotModify",
                "arn:aws:ec2:*:*:volume/*",
                "ec2:CreateSnapshot ec2:ModifyVolume",
            ),
            _s(
                "EbsCopyVolumes",
                "arn:aws:ec2:*:*:volume/vol-*",
                "ec2:CopyVolumes",
            ),
            _s(
                "EbsAttachDetach",
                "arn:aws:ec2:*:*:volume/* arn:aws:ec2:*:*:instance/*",
                "ec2:AttachVolume ec2:DetachVolume",
            ),
            _s(
                "EbsCreateVolumeFromSnapshot",
                "arn:aws:ec2:*:*:snapshot/*",
                "ec2:CreateVolume ec2:EnableFastSnapshotRestores",
            ),
            _s(
                "EbsCreateTagsOnCreate",
                "arn:aws:ec2:*:*:volume/* arn:aws:ec2:*:*:snapshot/*",
                "ec2:CreateTags",
                _in("ec2:CreateAction", "CreateVolume", "CreateSnapshot", "CopyVolumes"),
            ),
            _s(
                "EbsDeleteTags",
                "arn:aws:ec2:*:*:volume/* arn:aws:ec2:*:*:snapshot/*",
                "ec2:DeleteTags",
            ),
            _s(
                "EbsCreateVolumeClusterTag",
                "arn:aws:ec2:*:*:volume/*",
                "ec2:CreateVolume ec2:CopyVolumes",
                _like("aws:RequestTag/ebs.csi.aws.com/cluster", "true"),
            ),
            _s(
                "EbsCreateVolumeCsiName",
                "arn:aws:ec2:*:*:volume/*",
                "ec2:CreateVolume ec2:CopyVolumes",
                _like("aws:RequestTag/CSIVolumeName", "*"),
            ),
            _s(
                "EbsDeleteVolumeClusterTag",
                "arn:aws:ec2:*:*:volume/*",
                "ec2:DeleteVolume",
                _like("ec2:ResourceTag/ebs.csi.aws.com/cluster", "true"),
            ),
            _s(
                "EbsDeleteVolumeCsiName",
                "arn:aws:ec2:*:*:volume/*",
                "ec2:DeleteVolume",
                _like("ec2:ResourceTag/CSIVolumeName", "*"),
            ),
            _s(
                "EbsDeleteVolumePvcName",
                "arn:aws:ec2:*:*:volume/*",
                "ec2:DeleteVolume",
                _like("ec2:ResourceTag/kubernetes.io/created-for/pvc/name", "*"),
            ),
            _s(
                "EbsCreateSnapshotCsiName",
                "arn:aws:ec2:*:*:snapshot/*",
                "ec2:CreateSnapshot",
                _like("aws:RequestTag/CSIVolumeSnapshotName", "*"),
            ),
            _s(
                "EbsCreateSnapshotClusterTag",
                "arn:aws:ec2:*:*:snapshot/*",
                "ec2:CreateSnapshot",
                _like("aws:RequestTag/ebs.csi.aws.com/cluster", "true"),
            ),
            _s(
                "EbsDeleteSnapshotCsiName",
                "arn:aws:ec2:*:*:snapshot/*",
                "ec2:DeleteSnapshot ec2:LockSnapshot",
                _like("ec2:ResourceTag/CSIVolumeSnapshotName", "*"),
            ),
            _s(
                "EbsDeleteSnapshotClusterTag",
                "arn:aws:ec2:*:*:snapshot/*",
                "ec2:DeleteSnapshot ec2:LockSnapshot",
                _like("ec2:ResourceTag/ebs.csi.aws.com/cluster", "true"),
            ),
            _s(
                "AllowDescribe",
                "*",
                "elasticfilesystem:DescribeAccessPoints elasticfilesystem:DescribeFileSystems "
                "elasticfilesystem:DescribeMountTargets ec2:DescribeAvailabilityZones",
            ),
            _s(
                "AllowCreateAccessPoint",
                "*",
                "elasticfilesystem:CreateAccessPoint",
                _not_null("aws:RequestTag/efs.csi.aws.com/cluster"),
                _eq("aws:TagKeys", "efs.csi.aws.com/cluster"),
            ),
            _s(
                "AllowTagNewAccessPoints",
                "*",
                "elasticfilesystem:TagResource",
                _eq("elasticfilesystem:CreateAction", "CreateAccessPoint"),
                _not_null("aws:RequestTag/efs.csi.aws.com/cluster"),
                _eq("aws:TagKeys", "efs.csi.aws.com/cluster"),
            ),
            _s(
                "AllowDeleteAccessPoint",
                "*",
                "elasticfilesystem:DeleteAccessPoint",
                _not_null("aws:ResourceTag/efs.csi.aws.com/cluster"),
            ),
            _LOAD_BALANCERS,
            _CLUSTER_AUTOSCALING,
        ),
    ),
    Preset(
        name="porter-karpenter",
        created_by="Provisioned by Porter after bootstrap",
        assumable_from_outside="No (Pod Identity, pods.eks.amazonaws.com, scoped to your account)",
        purpose="Assumed by the Karpenter controller pod to provision and manage EC2 nodes for your cluster.",
        summary="For provisioning and managing cost-optimized EKS worker nodes.",
        trusted_by="Assumable by the Karpenter controller pod using EKS Pod Identities.",
        trust=_POD_IDENTITY_ONLY,
        statements=(
            _s(
                "ScopedEc2InstanceAccess",
                "arn:aws:ec2:*::image/* arn:aws:ec2:*::snapshot/* arn:aws:ec2:*:*:security-group/* "
                "arn:aws:ec2:*:*:subnet/*",
                "ec2:CreateFleet ec2:RunInstances",
            ),
            _s(
                "ScopedEc2LaunchTemplateAccess",
                "arn:aws:ec2:*:*:launch-template/*",
                "ec2:CreateFleet ec2:RunInstances",
            ),
            _s(
                "ScopedEc2InstanceCreate",
                "arn:aws:ec2:*:*:fleet/* arn:aws:ec2:*:*:instance/* arn:aws:ec2:*:*:launch-template/* "
                "arn:aws:ec2:*:*:network-interface/* arn:aws:ec2:*:*:spot-instances-request/* "
                "arn:aws:ec2:*:*:volume/*",
                "ec2:CreateFleet ec2:CreateLaunchTemplate ec2:RunInstances",
            ),
            _s(
                "ScopedResourceCreationTagging",
                "arn:aws:ec2:*:*:fleet/* arn:aws:ec2:*:*:instance/* arn:aws:ec2:*:*:launch-template/* "
                "arn:aws:ec2:*:*:network-interface/* arn:aws:ec2:*:*:spot-instances-request/* "
                "arn:aws:ec2:*:*:volume/*",
                "ec2:CreateTags",
                _in("ec2:CreateAction", "CreateFleet", "CreateLaunchTemplate", "RunInstances"),
                _like("aws:RequestTag/karpenter.sh/nodepool", "*"),
            ),
            _s(
                "ScopedResourceTagging",
                "arn:aws:ec2:*:*:instance/*",
                "ec2:CreateTags",
            ),
            _s(
                "ScopedEc2Deletion",
                "arn:aws:ec2:*:*:instance/* arn:aws:ec2:*:*:launch-template/*",
                "ec2:DeleteLaunchTemplate ec2:TerminateInstances",
            ),
            _s(
                "RegionalEc2Read",
                "*",
                "ec2:DescribeImages ec2:DescribeInstanceTypeOfferings ec2:DescribeInstanceTypes "
                "ec2:DescribeInstances ec2:DescribeLaunchTemplates ec2:DescribeSecurityGroups "
                "ec2:DescribeSpotPriceHistory ec2:DescribeSubnets",
            ),
            _s(
                "PricingRead",
                "*",
                "pricing:GetProducts",
            ),
            _s(
                "SsmParameterRead",
                "*",
                "ssm:GetParameter",
            ),
            _s(
                "SqsInterruptionQueue",
                "arn:aws:sqs:*:*:*",
                "sqs:CreateQueue sqs:DeleteMessage sqs:DeleteQueue sqs:GetQueueAttributes sqs:GetQueueUrl "
                "sqs:ReceiveMessage sqs:SetQueueAttributes sqs:TagQueue",
            ),
            _s(
                "EventBridgeRules",
                "arn:aws:events:*:*:rule/*",
                "events:DeleteRule events:DescribeRule events:PutRule events:PutTargets events:RemoveTargets",
            ),
            _s(
                "PassNodeInstanceRole",
                "arn:aws:iam::<account-id>:role/porter-node-manager",
                "iam:PassRole",
                _in("iam:PassedToService", "ec2.amazonaws.com", "ec2.amazonaws.com.cn"),
            ),
            _s(
                "InstanceProfileScoped",
                "arn:aws:iam::*:instance-profile/*",
                "iam:AddRoleToInstanceProfile iam:CreateInstanceProfile iam:DeleteInstanceProfile "
                "iam:GetInstanceProfile iam:RemoveRoleFromInstanceProfile iam:TagInstanceProfile",
            ),
            _s(
                "InstanceProfileList",
                "*",
                "iam:ListInstanceProfiles",
            ),
            _s(
                "EksClusterDescribe",
                "arn:aws:eks:*:*:cluster/*",
                "eks:DescribeCluster",
            ),
            _s(
                "ServiceLinkedRoleCreate",
                "arn:aws:iam::*:role/aws-service-role/*",
                "iam:CreateServiceLinkedRole",
            ),
        ),
    ),
    Preset(
        name="porter-telemetry-manager",
        created_by="Provisioned by Porter after bootstrap",
        assumable_from_outside="No (Pod Identity)",
        purpose=(
            "Assumed by Porter’s OpenTelemetry collector pod to push cluster metrics to Amazon Managed "
            "Prometheus and Porter-managed S3 buckets."
        ),
        summary="For collecting and exporting OTLP metrics.",
        trusted_by="Assumable by the OpenTelemetry Collector pod using EKS Pod Identities.",
        trust=_POD_IDENTITY_ONLY,
        statements=(
            _s(
                "PorterMetrics",
                "*",
                "aps:GetLabels aps:GetMetricMetadata aps:GetSeries aps:QueryMetrics aps:RemoteWrite",
            ),
            _s(
                "PorterLogs",
                "arn:aws:s3:::porter-* arn:aws:s3:::porter-*/*",
                "s3:AbortMultipartUpload s3:CreateBucket s3:DeleteObject s3:GetObject s3:ListBucket "
                "s3:ListBucketVersions s3:PutObject",
            ),
        ),
    ),
    Preset(
        name="porter-agent-compliance-manager",
        created_by="Provisioned by Porter after bootstrap",
        assumable_from_outside="No (Pod Identity)",
        purpose=(
            "Assumed by the porter-agent pod to manage CloudWatch alarms and publish SOC2 compliance notifications."
        ),
        summary="For managing compliance alarms.",
        trusted_by="Assumable by the Porter Agent pod using EKS Pod Identities.",
        trust=_POD_IDENTITY_ONLY,
        statements=(
            _s(
                "CloudWatchAlarms",
                "*",
                "cloudwatch:DeleteAlarms cloudwatch:DescribeAlarms cloudwatch:ListTagsForResource "
                "cloudwatch:PutMetricAlarm cloudwatch:TagResource",
            ),
            _s(
                "SnsPublish",
                "arn:aws:sns:*:*:porter-soc2-notifications-*",
                "sns:Publish",
            ),
        ),
    ),
    Preset(
        name="porter-eso-secrets-manager",
        created_by="Provisioned by Porter after creation of environment groups",
        assumable_from_outside="No (Pod Identity)",
        purpose=(
            "Assumed by the External Secrets Operator pod to retrieve environment-group secrets from AWS "
            "Secrets Manager. Scoped to the /porter/env-groups/* path."
        ),
        summary="For managing environment group secrets in Secrets Manager.",
        trusted_by="Assumable by the External Secrets Operator pod using EKS Pod Identities.",
        trust=_POD_IDENTITY_ONLY,
        statements=(
            _s(
                "EnvGroupSecrets",
                "arn:*:secretsmanager:*:*:secret:/porter/env-groups/*",
                "secretsmanager:BatchGetSecretValue secretsmanager:DescribeSecret secretsmanager:GetSecretValue",
            ),
            _s(
                "ListSecretsCatalog",
                "*",
                "secretsmanager:ListSecrets",
            ),
        ),
    ),
    Preset(
        name="porter-s3",
        created_by="Provisioned dynamically per bucket",
        assumable_from_outside="No (Pod Identity)",
        purpose=(
            "One role per Porter-provisioned S3 bucket (logs buckets, release buckets, etc.). Each is scoped "
            "to objects in its specific bucket only, and can only be assumed by pods in your cluster."
        ),
        summary="For creating, updating, and deleting S3 objects for specific buckets.",
        trusted_by=(
            "Assumable by the Loki pod using EKS Pod Identities. One role is provisioned per Porter-managed "
            "bucket; scoping to a single bucket is enforced by the per-bucket EKS Pod Identity trust on the "
            "role itself."
        ),
        trust=_POD_IDENTITY_ONLY,
        statements=s3_statements("*"),
    ),
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _ALL}
