"""AWS adapter for PorterRoleSet: the assumed-role chain (cached, refreshed credentials) and IAM role calls."""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from porter_identity import metrics
from porter_identity.clouds.aws.client import translated
from porter_identity.errors import NotFound
from porter_identity.iam.policy import compact
from porter_identity.model import POLICY_PATH, ManagedPolicy, ObservedRole
from porter_identity.providers import fence

SESSION_NAME = "porter-identity"
SESSION_SECONDS = 3600


def _fingerprint(external_id: str) -> str:
    # Cache key only; the ExternalId itself is never kept outside the refresh closure.
    return hashlib.sha256(external_id.encode()).hexdigest()


class AssumedRoles:
    """One boto3 session per (role, ExternalId): AssumeRole once, then botocore refreshes before expiry."""

    def __init__(self, max_attempts: int = 3, base: boto3.session.Session | None = None) -> None:
        self._base = base or boto3.session.Session()
        self._max_attempts = max_attempts
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str, str], boto3.session.Session] = {}

    def config(self, region: str) -> Config:
        return Config(region_name=region, retries={"mode": "standard", "total_max_attempts": self._max_attempts})

    def session(self, role_arn: str, external_id: str, region: str) -> boto3.session.Session:
        """Credentials for `role_arn`; raises AccessDenied when the trust or the ExternalId refuses us."""
        key = (role_arn, _fingerprint(external_id), region)
        with self._lock:
            cached = self._sessions.get(key)
        if cached is not None:
            return cached
        sts = fence.guard_boto3(metrics.instrument_boto3(self._base.client("sts", config=self.config(region))))

        def refresh() -> dict[str, str]:
            with translated():
                creds = sts.assume_role(
                    RoleArn=role_arn,
                    RoleSessionName=SESSION_NAME,
                    ExternalId=external_id,
                    DurationSeconds=SESSION_SECONDS,
                )["Credentials"]
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
        )
        core = botocore.session.get_session()
        # botocore has no public setter for refreshable credentials; this is how boto3 users attach them.
        core._credentials = credentials  # type: ignore[attr-defined]
        session = boto3.session.Session(botocore_session=core, region_name=region)
        with self._lock:
            # A rotated ExternalId replaces the old session for this role.
            for old in [k for k in self._sessions if k[0] == role_arn and k[2] == region]:
                del self._sessions[old]
            self._sessions[key] = session
        return session


class IamRoles:
    """IAM calls for one account through an assumed-role session."""

    def __init__(self, session: boto3.session.Session, config: Config, account_id: str) -> None:
        self.iam = fence.guard_boto3(metrics.instrument_boto3(session.client("iam", config=config)))
        self.account_id = account_id

    def policy_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.account_id}:policy{POLICY_PATH}{name}"

    def read(self, name: str) -> ObservedRole | None:
        try:
            with translated():
                role = self.iam.get_role(RoleName=name)["Role"]
        except NotFound:
            return None
        with translated():
            tags = {t["Key"]: t["Value"] for t in self.iam.list_role_tags(RoleName=name).get("Tags", [])}
            inline = {}
            for page in self.iam.get_paginator("list_role_policies").paginate(RoleName=name):
                for policy in page["PolicyNames"]:
                    got = self.iam.get_role_policy(RoleName=name, PolicyName=policy)
                    # botocore decodes IAM's URL-encoded policy documents into dicts
                    inline[policy] = got["PolicyDocument"]
            managed = {}
            for listing in self.iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
                for attached in listing["AttachedPolicies"]:
                    managed[attached["PolicyName"]] = self._managed(attached["PolicyArn"])
        return ObservedRole(
            name=role["RoleName"],
            arn=role["Arn"],
            trust=role.get("AssumeRolePolicyDocument") or {},
            inline=inline,
            managed=managed,
            tags=tags,
        )

    def _managed(self, arn: str) -> ManagedPolicy:
        version = self.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        doc = self.iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        return ManagedPolicy(arn=arn, document=doc)

    def create_role(self, name: str, trust: dict[str, Any], tags: dict[str, str], description: str) -> str:
        with translated():
            role = self.iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=compact(trust),
                Description=description[:1000],
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )["Role"]
        arn: str = role["Arn"]
        return arn

    def update_trust(self, name: str, trust: dict[str, Any]) -> None:
        with translated():
            self.iam.update_assume_role_policy(RoleName=name, PolicyDocument=compact(trust))

    def tag(self, name: str, tags: dict[str, str]) -> None:
        with translated():
            self.iam.tag_role(RoleName=name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def untag(self, name: str, keys: list[str]) -> None:
        with translated():
            self.iam.untag_role(RoleName=name, TagKeys=keys)

    def put_inline(self, role: str, policy: str, doc: dict[str, Any]) -> None:
        with translated():
            self.iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=compact(doc))

    def delete_inline(self, role: str, policy: str) -> None:
        try:
            with translated():
                self.iam.delete_role_policy(RoleName=role, PolicyName=policy)
        except NotFound:
            pass

    def put_managed(self, role: str, policy: str, doc: dict[str, Any], tags: dict[str, str]) -> None:
        """Create the policy or add a default version (dropping the oldest: IAM keeps 5), then attach it."""
        arn = self.policy_arn(policy)
        with translated():
            try:
                versions = self.iam.list_policy_versions(PolicyArn=arn)["Versions"]
            except self.iam.exceptions.NoSuchEntityException:
                versions = None
            if versions is None:
                self.iam.create_policy(
                    PolicyName=policy,
                    Path=POLICY_PATH,
                    PolicyDocument=compact(doc),
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
                )
            else:
                old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
                if len(versions) >= 5 and old:
                    self.iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
                self.iam.create_policy_version(PolicyArn=arn, PolicyDocument=compact(doc), SetAsDefault=True)
            self.iam.attach_role_policy(RoleName=role, PolicyArn=arn)

    def detach(self, role: str, arn: str) -> None:
        """Detach; our own policies (under POLICY_PATH, named after the role) are deleted too."""
        with translated():
            with contextlib.suppress(self.iam.exceptions.NoSuchEntityException):
                self.iam.detach_role_policy(RoleName=role, PolicyArn=arn)
            if re.fullmatch(re.escape(self.policy_arn(role)) + r"-[0-9]+", arn):
                self._delete_policy(arn)

    def _delete_policy(self, arn: str) -> None:
        try:
            for version in self.iam.list_policy_versions(PolicyArn=arn)["Versions"]:
                if not version["IsDefaultVersion"]:
                    self.iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
            self.iam.delete_policy(PolicyArn=arn)
        except self.iam.exceptions.NoSuchEntityException:
            pass

    def delete_role(self, observed: ObservedRole) -> None:
        """IAM refuses to delete a role with policies: remove them first."""
        for policy in observed.inline:
            self.delete_inline(observed.name, policy)
        for attached in observed.managed.values():
            self.detach(observed.name, attached.arn)
        try:
            with translated():
                self.iam.delete_role(RoleName=observed.name)
        except NotFound:
            pass
