"""hack/cloud-smoke's view of each cloud: the identities, the link the operator should make, what a pod should get.

Every call goes through the cloud's own SDK and its standard credential chain (boto3, DefaultAzureCredential,
Application Default Credentials). The PORTER_* endpoint settings the operator honours point them at the emulators.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

# Every identity the smoke run makes carries this mark (a tag, or the GCP description): safe to delete.
SMOKE_TAG = "porter-identity-smoke"
SMOKE_DESCRIPTION = "made by porter-identity hack/cloud-smoke; safe to delete"

# The probes: the cloud's SDK and its default credential chain in the pod, nothing of ours. One JSON line on
# stdout; tokens are never printed, only whose they are.
AWS_PROBE = """
import json, boto3
try:
    print(json.dumps({"arn": boto3.client("sts").get_caller_identity()["Arn"]}))
except Exception as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""

AZURE_PROBE = """
import base64, json
from azure.identity import DefaultAzureCredential
try:
    token = DefaultAzureCredential().get_token("https://management.azure.com/.default").token
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    print(json.dumps({"clientId": claims["appid"], "principalId": claims["oid"]}))
except Exception as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""

GCP_PROBE = """
import json, google.auth
from google.auth.transport.requests import Request
try:
    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(Request())
    print(json.dumps({"email": credentials.service_account_email, "kind": type(credentials).__module__}))
except Exception as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""


class NotConfigured(Exception):
    """The cloud is not configured in the environment: skipped, with this reason."""


def _pair(value: str, what: str, flag: str) -> list[str]:
    found = [v.strip() for v in value.split(",") if v.strip()]
    if len(found) != 2:
        raise NotConfigured(
            f"two {what} are needed (the second for the identity change): set {flag}A,B or use --create-identity"
        )
    return found


@dataclass
class Cloud:
    """One cloud's side of the lifecycle. `identities` are the two the connection uses (the second after the
    change); `made` is what this run created there, deleted by `cleanup`."""

    name: str
    identities: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    probe: str = ""

    def spec(self, identity: str) -> dict[str, Any]:
        raise NotImplementedError

    def allow(self) -> str:
        """The namespace annotation entries that allow both identities (the cluster admin's consent)."""
        raise NotImplementedError

    def use_given(self) -> None:
        """Take the two identities the environment names (they must exist)."""
        raise NotImplementedError

    def create(self, run_id: str) -> None:
        """Make two identities, marked as the smoke run's."""
        raise NotImplementedError

    def links(self, namespace: str, service_account: str) -> dict[str, list[str]]:
        """The links made for this ServiceAccount, by identity (each identity of the run is a key)."""
        raise NotImplementedError

    def unlink(self, namespace: str, service_account: str) -> None:
        """Remove the ServiceAccount's links from every identity of the run: only when the operator did not."""
        raise NotImplementedError

    def answer_is(self, answer: dict[str, Any], identity: str) -> bool:
        raise NotImplementedError

    def cleanup(self) -> list[str]:
        """Delete what `create` made (already gone is fine); returns what could not be deleted."""
        raise NotImplementedError


class Aws(Cloud):
    """EKS Pod Identity: an association per ServiceAccount, to an IAM role whose trust names pods.eks.amazonaws.com."""

    def __init__(self, cluster: str, region: str, roles: str) -> None:
        super().__init__("aws", probe=AWS_PROBE)
        if not cluster:
            raise NotConfigured("no EKS cluster: set EKS_CLUSTER_NAME (or --eks-cluster)")
        if not region:
            raise NotConfigured("no region: set AWS_REGION (or --aws-region)")
        import boto3

        self.cluster = cluster
        self.session = boto3.session.Session(region_name=region)
        if self.session.get_credentials() is None:
            raise NotConfigured("no AWS credentials in the SDK's chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)")
        self.eks: Any = self.session.client("eks")
        self.iam: Any = self.session.client("iam")
        self.wanted = roles

    def use_given(self) -> None:
        given = _pair(self.wanted, "IAM roles", "PORTER_SMOKE_AWS_ROLES=")
        self.identities = [r if r.startswith("arn:") else self.iam.get_role(RoleName=r)["Role"]["Arn"] for r in given]

    def create(self, run_id: str) -> None:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "pods.eks.amazonaws.com"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
        for suffix in ("a", "b"):
            name = f"pid-smoke-{run_id}-{suffix}"
            role = self.iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=SMOKE_DESCRIPTION,
                Tags=[{"Key": SMOKE_TAG, "Value": run_id}],
            )["Role"]
            self.made.append(role["Arn"])
            self.identities.append(role["Arn"])

    @staticmethod
    def _name(arn: str) -> str:
        return arn.rsplit("/", 1)[-1]

    def spec(self, identity: str) -> dict[str, Any]:
        return {"aws": {"role": identity}}

    def allow(self) -> str:
        return ",".join(f"aws:{self._name(r)}" for r in self.identities)

    def links(self, namespace: str, service_account: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {r: [] for r in self.identities}
        listed = self.eks.list_pod_identity_associations(
            clusterName=self.cluster, namespace=namespace, serviceAccount=service_account
        )["associations"]
        for summary in listed:
            described = self.eks.describe_pod_identity_association(
                clusterName=self.cluster, associationId=summary["associationId"]
            )["association"]
            found.setdefault(described["roleArn"], []).append(f"association {described['associationId']}")
        return found

    def unlink(self, namespace: str, service_account: str) -> None:
        listed = self.eks.list_pod_identity_associations(
            clusterName=self.cluster, namespace=namespace, serviceAccount=service_account
        )["associations"]
        for summary in listed:
            with contextlib.suppress(self.eks.exceptions.ResourceNotFoundException):
                self.eks.delete_pod_identity_association(
                    clusterName=self.cluster, associationId=summary["associationId"]
                )

    def answer_is(self, answer: dict[str, Any], identity: str) -> bool:
        return f":assumed-role/{self._name(identity)}/" in str(answer.get("arn", ""))

    def cleanup(self) -> list[str]:
        failed = []
        for arn in self.made:
            try:
                self.iam.delete_role(RoleName=self._name(arn))
            except self.iam.exceptions.NoSuchEntityException:
                pass
            except Exception as err:  # reported, and the rest are still deleted
                failed.append(f"IAM role {arn}: {err}")
        return failed


class Azure(Cloud):
    """AKS workload identity: a federated credential on a user-assigned managed identity, per ServiceAccount."""

    def __init__(self, subscription: str, resource_group: str, issuer: str, location: str, identities: str) -> None:
        super().__init__("azure", probe=AZURE_PROBE)
        if not subscription:
            raise NotConfigured("no subscription: set AZURE_SUBSCRIPTION_ID (or --azure-subscription)")
        if not resource_group:
            raise NotConfigured("no resource group: set AZURE_RESOURCE_GROUP (or --azure-resource-group)")
        from azure.mgmt.msi import ManagedServiceIdentityClient

        # The operator's own settings, when set, point the SDK at another ARM endpoint (the emulators).
        endpoint = os.environ.get("PORTER_AZURE_ARM_ENDPOINT", "")
        credential: Any
        if os.environ.get("PORTER_AZURE_CREDENTIAL") == "emulator" and endpoint:
            from porter_identity.providers.clients import EmulatorToken

            credential = EmulatorToken()
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        extra: dict[str, Any] = {"base_url": endpoint} if endpoint else {}
        if os.environ.get("PORTER_AZURE_CA_FILE"):
            extra["connection_verify"] = os.environ["PORTER_AZURE_CA_FILE"]
        self.msi = ManagedServiceIdentityClient(credential, subscription, **extra)
        self.resource_group, self.issuer, self.location, self.wanted = resource_group, issuer, location, identities
        self.client_ids: dict[str, str] = {}

    def _split(self, identity: str) -> tuple[str, str]:
        group, _, name = identity.rpartition("/")
        return group or self.resource_group, name

    def _remember(self, identity: str) -> None:
        found = self.msi.user_assigned_identities.get(*self._split(identity))
        self.client_ids[identity] = str(found.client_id)

    def use_given(self) -> None:
        given = _pair(self.wanted, "managed identities", "PORTER_SMOKE_AZURE_IDENTITIES=")
        self.identities = ["/".join(self._split(i)) for i in given]
        for identity in self.identities:
            self._remember(identity)

    def create(self, run_id: str) -> None:
        from azure.mgmt.msi.models import Identity

        if not self.location:
            raise NotConfigured("--create-identity needs a location for the identities: set AZURE_LOCATION")
        for suffix in ("a", "b"):
            name = f"pid-smoke-{run_id}-{suffix}"
            body = Identity(location=self.location, tags={SMOKE_TAG: run_id})
            self.msi.user_assigned_identities.create_or_update(self.resource_group, name, body)
            identity = f"{self.resource_group}/{name}"
            self.made.append(identity)
            self.identities.append(identity)
            self._remember(identity)

    def spec(self, identity: str) -> dict[str, Any]:
        group, name = self._split(identity)
        return {"azure": {"identityName": name, "resourceGroup": group}}

    def allow(self) -> str:
        return ",".join(f"azure:{i}" for i in self.identities)

    def links(self, namespace: str, service_account: str) -> dict[str, list[str]]:
        subject = f"system:serviceaccount:{namespace}:{service_account}"
        found: dict[str, list[str]] = {}
        for identity in self.identities:
            listed = self.msi.federated_identity_credentials.list(*self._split(identity))
            found[identity] = [
                f"federated credential {c.name} (issuer {c.issuer})"
                for c in listed
                if c.subject == subject and (not self.issuer or c.issuer == self.issuer)
            ]
            # A credential for our subject under another issuer is still ours: report it, never miss it.
            found[identity] += [
                f"federated credential {c.name} under another issuer: {c.issuer}"
                for c in listed
                if c.subject == subject and self.issuer and c.issuer != self.issuer
            ]
        return found

    def unlink(self, namespace: str, service_account: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        subject = f"system:serviceaccount:{namespace}:{service_account}"
        for identity in self.identities:
            group, name = self._split(identity)
            for credential in self.msi.federated_identity_credentials.list(group, name):
                if credential.subject == subject:
                    with contextlib.suppress(ResourceNotFoundError):
                        self.msi.federated_identity_credentials.delete(group, name, credential.name)

    def answer_is(self, answer: dict[str, Any], identity: str) -> bool:
        return bool(answer.get("clientId")) and answer.get("clientId") == self.client_ids.get(identity)

    def cleanup(self) -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        failed = []
        for identity in self.made:
            try:
                self.msi.user_assigned_identities.delete(*self._split(identity))
            except ResourceNotFoundError:
                pass
            except Exception as err:  # reported, and the rest are still deleted
                failed.append(f"managed identity {identity}: {err}")
        return failed


class Gcp(Cloud):
    """GKE Workload Identity: the member PROJECT.svc.id.goog[NS/SA] in roles/iam.workloadIdentityUser on a GSA."""

    def __init__(self, project: str, service_accounts: str) -> None:
        super().__init__("gcp", probe=GCP_PROBE)
        if not project:
            raise NotConfigured("no project: set GOOGLE_CLOUD_PROJECT (or --gcp-project)")
        from google.cloud import iam_admin_v1

        endpoint = os.environ.get("PORTER_GCP_IAM_ENDPOINT", "")
        if endpoint:  # the emulator's plaintext gRPC, as the operator reaches it
            import grpc
            from google.auth.credentials import AnonymousCredentials
            from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport

            transport = IAMGrpcTransport(channel=grpc.insecure_channel(endpoint), credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
            self.iam: Any = iam_admin_v1.IAMClient(transport=transport)
        else:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                google.auth.default()
            except DefaultCredentialsError as err:
                raise NotConfigured(f"no Application Default Credentials: {err}") from None
            self.iam = iam_admin_v1.IAMClient()
        self.project, self.wanted = project, service_accounts

    def use_given(self) -> None:
        self.identities = _pair(self.wanted, "IAM service accounts", "PORTER_SMOKE_GCP_SERVICE_ACCOUNTS=")

    def create(self, run_id: str) -> None:
        for suffix in ("a", "b"):
            made = self.iam.create_service_account(
                request={
                    "name": f"projects/{self.project}",
                    "account_id": f"pid-smoke-{run_id}-{suffix}",
                    "service_account": {"display_name": f"{SMOKE_TAG} {run_id}", "description": SMOKE_DESCRIPTION},
                }
            )
            self.made.append(made.email)
            self.identities.append(made.email)

    def spec(self, identity: str) -> dict[str, Any]:
        return {"gcp": {"serviceAccountEmail": identity}}

    def allow(self) -> str:
        return ",".join(f"gcp:{e}" for e in self.identities)

    def links(self, namespace: str, service_account: str) -> dict[str, list[str]]:
        suffix = f".svc.id.goog[{namespace}/{service_account}]"
        found: dict[str, list[str]] = {}
        for email in self.identities:
            policy = self.iam.get_iam_policy(request={"resource": f"projects/{self.project}/serviceAccounts/{email}"})
            found[email] = [f"member {m} in {b.role}" for b in policy.bindings for m in b.members if m.endswith(suffix)]
        return found

    def unlink(self, namespace: str, service_account: str) -> None:
        suffix = f".svc.id.goog[{namespace}/{service_account}]"
        for email in self.identities:
            resource = f"projects/{self.project}/serviceAccounts/{email}"
            policy = self.iam.get_iam_policy(request={"resource": resource})
            if not any(m.endswith(suffix) for b in policy.bindings for m in b.members):
                continue
            for binding in policy.bindings:
                kept = [m for m in binding.members if not m.endswith(suffix)]
                del binding.members[:]
                binding.members.extend(kept)
            kept_bindings = [b for b in policy.bindings if b.members]
            del policy.bindings[:]
            policy.bindings.extend(kept_bindings)
            # The policy's etag makes this a read-modify-write: a concurrent change fails it instead of being lost.
            self.iam.set_iam_policy(request={"resource": resource, "policy": policy})

    def answer_is(self, answer: dict[str, Any], identity: str) -> bool:
        return answer.get("email") == identity

    def cleanup(self) -> list[str]:
        from google.api_core.exceptions import NotFound

        failed = []
        for email in self.made:
            try:
                self.iam.delete_service_account(name=f"projects/{self.project}/serviceAccounts/{email}")
            except NotFound:
                pass
            except Exception as err:  # reported, and the rest are still deleted
                failed.append(f"IAM service account {email}: {err}")
        return failed
