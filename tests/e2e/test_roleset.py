"""PorterRoleSet end to end: real API server, operator process, AWS emulator that checks trust and ExternalId."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from porter_dev.processes import AWS_ACCOUNT_ID, AwsEmulator
from porter_identity.iam import presets
from porter_identity.reconcile.roleset import INLINE_POLICY, canonical
from tests.conftest import GROUP, VERSION, wait_for
from tests.e2e.helpers import roleset
from tests.seedtable import parse_inventory, parse_seed

pytestmark = pytest.mark.e2e

PLURAL = "porterrolesets"
ACCESS_ROLE = "porter-access-manager"
ACCESS_ARN = f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/{ACCESS_ROLE}"
MANAGEMENT = f"arn:aws:iam::{AWS_ACCOUNT_ID}:root"
SECRET_NS = "porter-system"
ALL_PRESETS = [name for name in presets.PRESETS if name != presets.S3_PRESET]
IAM_WRITES = (
    "CreateRole",
    "UpdateAssumeRolePolicy",
    "PutRolePolicy",
    "DeleteRolePolicy",
    "CreatePolicy",
    "CreatePolicyVersion",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "TagRole",
    "UntagRole",
    "DeleteRole",
)


def _access_trust(external_id: str) -> str:
    # What the customer's CloudFormation bootstrap creates: the management principal, gated by the ExternalId.
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": MANAGEMENT},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
                }
            ],
        }
    )


class RoleSets:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create(self, name: str, secret: str, **spec: Any) -> None:
        body = roleset(name, (SECRET_NS, secret), ACCESS_ROLE, **spec)
        self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return found

    def ready(self, name: str) -> dict[str, Any] | None:
        return self.condition(name, "Ready")

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        obj = self.get(name) or {}
        return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), None)

    def wait_ready(self, name: str, timeout: float = 60) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            obj = self.get(name)
            cond = self.ready(name)
            current = (
                obj is not None and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
            )
            return obj if current and cond is not None and cond["status"] == "True" else None

        found: dict[str, Any] = wait_for(ready, timeout, what=f"PorterRoleSet {name} Ready")
        return found

    def delete(self, name: str) -> None:
        self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)

    def wait_gone(self, name: str, timeout: float = 60) -> None:
        wait_for(lambda: self.get(name) is None, timeout, what=f"PorterRoleSet {name} deleted")

    def events(self, name: str) -> list[Any]:
        items: list[Any] = self.core.list_event_for_all_namespaces(
            field_selector=f"involvedObject.name={name},involvedObject.kind=PorterRoleSet"
        ).items
        return items

    def secret(self, name: str, external_id: str) -> None:
        data = {"externalId": base64.b64encode(external_id.encode()).decode()}
        body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=data)
        try:
            self.core.create_namespaced_secret(SECRET_NS, body)
        except client.ApiException as err:
            if err.status != 409:
                raise
            self.core.replace_namespaced_secret(name, SECRET_NS, body)


@pytest.fixture(scope="module")
def rolesets(api: client.ApiClient, operator: Any, aws: AwsEmulator) -> Iterator[RoleSets]:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=SECRET_NS)))
    except client.ApiException as err:
        if err.status != 409:
            raise
    yield RoleSets(api)


@pytest.fixture(scope="module")
def iam(aws: AwsEmulator) -> Any:
    return aws.client("iam")


@pytest.fixture(scope="module")
def access_role(iam: Any) -> Callable[[str], None]:
    """Create (once) or re-key the bootstrap access role, as the customer's CloudFormation stack would."""

    def set_external_id(external_id: str) -> None:
        try:
            iam.create_role(RoleName=ACCESS_ROLE, AssumeRolePolicyDocument=_access_trust(external_id))
        except iam.exceptions.EntityAlreadyExistsException:
            iam.update_assume_role_policy(RoleName=ACCESS_ROLE, PolicyDocument=_access_trust(external_id))

    return set_external_id


def _role_statements(iam: Any, name: str) -> list[dict[str, Any]]:
    """Every statement the role holds, inline first then managed policies in name order."""
    out: list[dict[str, Any]] = []
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        out += canonical(iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])["Statement"]
    attached = sorted(iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"], key=_policy_order)
    for policy in attached:
        version = iam.get_policy(PolicyArn=policy["PolicyArn"])["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=policy["PolicyArn"], VersionId=version)["PolicyVersion"]["Document"]
        out += canonical(doc)["Statement"]
    return out


def _policy_order(policy: dict[str, Any]) -> int:
    return int(policy["PolicyName"].rsplit("-", 1)[-1])


def _expected(name: str) -> list[dict[str, Any]]:
    stmts = [s.to_iam() for s in presets.statements_for(presets.PRESETS[name], AWS_ACCOUNT_ID)]
    return canonical({"Version": "2012-10-17", "Statement": stmts})["Statement"]


def _writes(aws: AwsEmulator) -> int:
    calls = aws.calls()
    return sum(calls.get(f"iam:{op}", 0) for op in IAM_WRITES)


def _role_exists(iam: Any, name: str) -> bool:
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return False
    return True


def test_wrong_external_id_is_stalled_access_denied_and_touches_no_role(
    rolesets: RoleSets, access_role: Callable[[str], None], aws: AwsEmulator, iam: Any
) -> None:
    access_role("right-" + uuid.uuid4().hex)
    wrong = "wrong-" + uuid.uuid4().hex
    rolesets.secret("wrong-id", wrong)
    before = _writes(aws)
    rolesets.create(
        "wrong-id",
        "wrong-id",
        roles=[
            {
                "name": "porter-e2e-never",
                "trust": {"podIdentity": True},
                "statements": [{"sid": "X", "actions": ["s3:GetObject"], "resources": ["*"]}],
            }
        ],
    )
    cond = wait_for(lambda: rolesets.condition("wrong-id", "Stalled"), 30, what="Stalled")
    ready = rolesets.ready("wrong-id")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "AccessDenied"
    assert ACCESS_ARN in ready["message"] and wrong not in ready["message"]
    assert cond["reason"] == "AccessDenied"
    assert not _role_exists(iam, "porter-e2e-never")
    assert _writes(aws) == before
    rolesets.delete("wrong-id")
    rolesets.wait_gone("wrong-id")


def test_delete_policy_removes_only_roles_it_created(
    rolesets: RoleSets, access_role: Callable[[str], None], iam: Any
) -> None:
    external_id = "owned-" + uuid.uuid4().hex
    access_role(external_id)
    rolesets.secret("owned", external_id)
    iam.create_role(RoleName="porter-e2e-bystander", AssumeRolePolicyDocument=_access_trust("x" * 8))
    custom = {
        "name": "porter-e2e-custom",
        "trust": {"podIdentity": True},
        "statements": [{"sid": "Read", "actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::b/*"]}],
    }
    rolesets.create(
        "owned",
        "owned",
        roles=[{"preset": ACCESS_ROLE}, custom],
        buckets=[{"name": "porter-e2e-owned"}],
        deletionPolicy="Delete",
    )
    obj = rolesets.wait_ready("owned")
    assert obj["status"]["rolesReady"] == "3/3"
    s3_role = presets.s3_role_name("porter-e2e-owned")
    assert _role_exists(iam, "porter-e2e-custom") and _role_exists(iam, s3_role)
    rolesets.delete("owned")
    rolesets.wait_gone("owned")
    assert not _role_exists(iam, "porter-e2e-custom")
    assert not _role_exists(iam, s3_role)
    assert _role_exists(iam, ACCESS_ROLE), "adopted from the bootstrap, so never deleted"
    assert _role_exists(iam, "porter-e2e-bystander")
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=ACCESS_ROLE)["Tags"]}
    assert "porter.run/owner" not in tags, "released for the next PorterRoleSet"


def _cli(control_plane: Any, aws: AwsEmulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **aws.env, "KUBECONFIG": str(control_plane.kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "porter_identity.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_inventory_command_renders_the_seed(control_plane: Any, aws: AwsEmulator) -> None:
    out = _cli(control_plane, aws, "inventory")
    assert out.returncode == 0, out.stderr
    rendered, seed = parse_inventory(out.stdout), parse_seed()
    assert rendered.summary == seed.summary
    assert rendered.roles == seed.roles


def test_diff_shows_a_given_change_and_nothing_when_in_sync(
    rolesets: RoleSets,
    access_role: Callable[[str], None],
    aws: AwsEmulator,
    iam: Any,
    control_plane: Any,
    tmp_path: Any,
) -> None:
    external_id = "diff-" + uuid.uuid4().hex
    access_role(external_id)
    rolesets.secret("diff", external_id)
    rolesets.create("diff", "diff", roles=[{"preset": "porter-telemetry-manager"}], deletionPolicy="Delete")
    live = rolesets.wait_ready("diff")

    in_sync = _cli(control_plane, aws, "diff", "diff")
    assert in_sync.returncode == 0, in_sync.stderr
    assert "is as declared" in in_sync.stdout

    # a change it is given: one more preset and a bucket, in a manifest not yet applied
    changed = {k: live[k] for k in ("apiVersion", "kind")} | {"metadata": {"name": "diff"}, "spec": dict(live["spec"])}
    changed["spec"]["roles"] = [*live["spec"]["roles"], {"preset": "porter-eso-secrets-manager"}]
    changed["spec"]["buckets"] = [{"name": "porter-diff-e2e"}]
    manifest = tmp_path / "diff.yaml"
    manifest.write_text(json.dumps(changed))
    before = _writes(aws)
    shown = _cli(control_plane, aws, "diff", "-f", str(manifest))
    assert shown.returncode == 1, shown.stderr
    assert "porter-eso-secrets-manager:\n  CreateRole on porter-eso-secrets-manager" in shown.stdout
    assert "      + EnvGroupSecrets" in shown.stdout and "      + ListSecretsCatalog" in shown.stdout
    assert f"CreateRole on {presets.s3_role_name('porter-diff-e2e')}" in shown.stdout
    assert "porter-telemetry-manager" not in shown.stdout, "in sync roles are not listed"
    assert external_id not in shown.stdout
    assert _writes(aws) == before, "diff never writes"
    assert not _role_exists(iam, "porter-eso-secrets-manager")

    # the live inventory of the account matches the preset rows
    listed = _cli(control_plane, aws, "inventory", "--live", "diff")
    assert listed.returncode == 0, listed.stderr
    assert (
        parse_inventory(listed.stdout).roles["porter-telemetry-manager"]
        == parse_seed().roles["porter-telemetry-manager"]
    )
    rolesets.delete("diff")
    rolesets.wait_gone("diff")


def test_all_presets_exactly_as_the_seed_drift_rotation_and_retain(
    rolesets: RoleSets, access_role: Callable[[str], None], aws: AwsEmulator, iam: Any, kubectl: Any
) -> None:
    first = "first-" + uuid.uuid4().hex
    access_role(first)
    rolesets.secret("porter-external-id", first)
    roles: list[dict[str, Any]] = [{"preset": name} for name in ALL_PRESETS]
    karpenter = next(r for r in roles if r["preset"] == "porter-karpenter")
    karpenter["podIdentity"] = {"namespace": "karpenter", "serviceAccount": "karpenter"}
    rolesets.create(
        "prod",
        "porter-external-id",
        roles=roles,
        buckets=[{"name": "porter-logs-e2e", "podIdentity": {"namespace": "monitoring", "serviceAccount": "loki"}}],
    )
    obj = rolesets.wait_ready("prod", timeout=90)
    assert obj["status"]["rolesReady"] == f"{len(ALL_PRESETS) + 1}/{len(ALL_PRESETS) + 1}"

    # every role holds exactly the seed's statements and the trust the seed describes
    for name in ALL_PRESETS:
        assert _role_statements(iam, name) == _expected(name), name
        preset = presets.PRESETS[name]
        trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        want = presets.trust_document(preset.trust, AWS_ACCOUNT_ID, MANAGEMENT, first, ack_compatible=False)
        assert canonical(trust) == canonical(want), name
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}
        assert tags["porter.run/managed"] == "true" and tags["porter.run/owner"] == "prod"
    # porter-manager (about 9,100 characters) fits the 10,240 inline budget; porter-node-manager does not and is
    # split over managed policies of at most 6,144 characters each.
    assert iam.list_role_policies(RoleName="porter-manager")["PolicyNames"] == [INLINE_POLICY]
    node = iam.list_attached_role_policies(RoleName="porter-node-manager")["AttachedPolicies"]
    assert len(node) == 2 and iam.list_role_policies(RoleName="porter-node-manager")["PolicyNames"] == []
    s3_role = presets.s3_role_name("porter-logs-e2e")
    s3_doc = iam.get_role_policy(RoleName=s3_role, PolicyName=INLINE_POLICY)["PolicyDocument"]
    assert canonical(s3_doc)["Statement"][0]["Resource"] == ["arn:aws:s3:::porter-logs-e2e/*"]

    eks = aws.client("eks")
    listed = eks.list_pod_identity_associations(clusterName="e2e", namespace="karpenter")["associations"]
    assert len(listed) == 1
    assoc = eks.describe_pod_identity_association(clusterName="e2e", associationId=listed[0]["associationId"])
    assert assoc["association"]["roleArn"].endswith(":role/porter-karpenter")

    # kubectl shows real values
    table = kubectl("get", "prs", "prod").stdout
    assert AWS_ACCOUNT_ID in table and "10/10" in table and "True" in table

    # drift: an inline policy and a managed policy edited outside are restored, with a Warning Event
    iam.put_role_policy(
        RoleName="porter-telemetry-manager",
        PolicyName=INLINE_POLICY,
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    node_policies = iam.list_attached_role_policies(RoleName="porter-node-manager")["AttachedPolicies"]
    assert len(node_policies) == 2, "porter-node-manager is over the 10,240 inline limit: managed policies"
    iam.detach_role_policy(RoleName="porter-node-manager", PolicyArn=node_policies[0]["PolicyArn"])
    wait_for(
        lambda: (
            _role_statements(iam, "porter-telemetry-manager") == _expected("porter-telemetry-manager")
            and _role_statements(iam, "porter-node-manager") == _expected("porter-node-manager")
        ),
        30,
        what="drift restored",
    )
    reasons = wait_for(
        lambda: {e.reason for e in rolesets.events("prod")} >= {"DriftCorrected"} and rolesets.events("prod"),
        15,
        what="DriftCorrected event",
    )
    assert any(
        e.type == "Warning" and "porter-telemetry-manager" in e.message for e in reasons if e.reason == "DriftCorrected"
    )

    described = kubectl("describe", "prs", "prod").stdout
    events = described.split("Events:", 1)[1]
    assert "DriftCorrected" in events and "porter-telemetry-manager" in events, described[-2000:]
    assert "Roles Ready:  10/10" in described

    # idle: a sweep of an account in sync writes nothing
    writes = _writes(aws)
    assumes = aws.calls().get("sts:AssumeRole", 0)
    version = rolesets.get("prod")["metadata"]["resourceVersion"]  # type: ignore[index]
    time.sleep(5)  # at least two sweeps at PORTER_ROLESET_SYNC_SECONDS=2
    assert _writes(aws) == writes
    assert aws.calls().get("sts:AssumeRole", 0) == assumes, "credentials are cached, not one AssumeRole per sweep"
    assert rolesets.get("prod")["metadata"]["resourceVersion"] == version  # type: ignore[index]

    # rotation: the customer re-keys the access role and the Secret; the new ExternalId is used and written
    second = "second-" + uuid.uuid4().hex
    access_role(second)
    rolesets.secret("porter-external-id", second)

    def manager_trusts_second() -> bool:
        doc = iam.get_role(RoleName="porter-manager")["Role"]["AssumeRolePolicyDocument"]
        return second in json.dumps(doc) and first not in json.dumps(doc)

    wait_for(manager_trusts_second, 30, what="porter-manager trust re-keyed")
    assert rolesets.wait_ready("prod")["status"]["conditions"][0]["status"] == "True"
    for event in rolesets.events("prod"):
        assert first not in event.message and second not in event.message
    assert first not in json.dumps(rolesets.get("prod")) and second not in json.dumps(rolesets.get("prod"))

    # Retain: the resource goes, the roles stay
    rolesets.delete("prod")
    rolesets.wait_gone("prod")
    for name in ALL_PRESETS:
        assert _role_exists(iam, name), name
