"""PorterRoleSet end to end: real API server, operator process, AWS emulator that checks trust and ExternalId."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_dev.processes import AWS_ACCOUNT_ID, AwsEmulator, Operator
from porter_identity.iam import presets
from porter_identity.iam.inventory import STATEMENT_HEADER
from porter_identity.reconcile.roleset import INLINE_POLICY, canonical
from tests.conftest import EKS_CLUSTER, GROUP, VERSION, wait_for
from tests.e2e.helpers import roleset, webhook_bypassed
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

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": spec})

    def wait_reason(self, name: str, reason: str, kind: str = "Ready", timeout: float = 30) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            cond = self.condition(name, kind)
            return cond if cond is not None and cond["reason"] == reason else None

        cond: dict[str, Any] = wait_for(found, timeout, what=f"PorterRoleSet {name} {kind} reason {reason}")
        return cond

    def delete(self, name: str) -> None:
        self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)

    def wait_gone(self, name: str, timeout: float = 60) -> None:
        wait_for(lambda: self.get(name) is None, timeout, what=f"PorterRoleSet {name} deleted")

    def events(self, name: str) -> list[Any]:
        items: list[Any] = self.core.list_event_for_all_namespaces(
            field_selector=f"involvedObject.name={name},involvedObject.kind=PorterRoleSet"
        ).items
        return items

    def delete_secret(self, name: str) -> None:
        self.core.delete_namespaced_secret(name, SECRET_NS)

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
        roles=[{"preset": ACCESS_ROLE, "takeOver": "KeepPolicies"}, custom],
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
    env = {
        **os.environ,
        **aws.env,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "PORTER_AWS_ACCOUNT_ID": AWS_ACCOUNT_ID,
    }
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
    roles[ALL_PRESETS.index(ACCESS_ROLE)]["takeOver"] = "KeepPolicies"  # the customer's bootstrap made it
    karpenter = next(r for r in roles if r["preset"] == "porter-karpenter")
    karpenter["serviceAccount"] = {"namespace": "karpenter", "name": "karpenter"}
    rolesets.create(
        "prod",
        "porter-external-id",
        roles=roles,
        buckets=[{"name": "porter-logs-e2e", "serviceAccount": {"namespace": "monitoring", "name": "loki"}}],
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
    assert re.search(r"^  Roles Ready:\s+10/10$", described, re.MULTILINE), described
    # each spec entry starts with its preset: the karpenter binding prints under porter-karpenter, not before it
    spec = _role_fields(described, "Spec")
    assert spec[0].startswith("Preset: ")
    assert spec[spec.index("Preset: porter-karpenter") + 1] == "Service Account:"
    assert spec[spec.index("Preset: porter-karpenter") - 1] == "Preset: porter-node-manager"

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


# --- lifecycle at the edges (issue 16) and secrets and account checks (issue 22) ----------------------------------

REPO = Path(__file__).resolve().parents[2]
FOREIGN_ACCOUNT = "210987654321"


def _custom(name: str, pod: tuple[str, str] | None = None) -> dict[str, Any]:
    role: dict[str, Any] = {
        "name": name,
        "trust": {"podIdentity": True},
        "statements": [{"sid": "Read", "actions": ["s3:GetObject"], "resources": [f"arn:aws:s3:::{name}/*"]}],
    }
    if pod is not None:
        role["serviceAccount"] = {"namespace": pod[0], "name": pod[1]}
    return role


def _associations(aws: AwsEmulator, namespace: str) -> dict[str, str]:
    """ServiceAccount -> association id, for one namespace of the e2e cluster."""
    eks = aws.client("eks")
    found = eks.list_pod_identity_associations(clusterName=EKS_CLUSTER, namespace=namespace)["associations"]
    return {a["serviceAccount"]: a["associationId"] for a in found}


def _tags(iam: Any, name: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}


def _role_fields(described: str, part: str = "Status") -> list[str]:
    """The fields of `kubectl describe prs` at the level of the spec's or status's role entries, in print order."""
    block = described.split(f"\n{part}:\n", 1)[1].split("\n  Roles:\n", 1)[1].splitlines()
    depth = len(block[0]) - len(block[0].lstrip())
    fields = []
    for line in block:
        indent = len(line) - len(line.lstrip())
        if indent < depth:
            break
        if indent == depth:
            fields.append(re.sub(r":\s+", ": ", line.strip()))  # kubectl aligns values with spaces
    return fields


def _status_role_entries(described: str) -> list[list[str]]:
    """The status.roles entries, split where a `Name:` field starts one."""
    entries: list[list[str]] = []
    for field in _role_fields(described):
        if field.startswith("Name:") or not entries:
            entries.append([])
        entries[-1].append(field)
    return entries


def test_a_role_leaving_the_spec_goes_as_deletion_policy_says_with_its_association(
    rolesets: RoleSets, access_role: Callable[[str], None], aws: AwsEmulator, iam: Any, kubectl: Any
) -> None:
    external_id = "removal-" + uuid.uuid4().hex
    access_role(external_id)
    rolesets.secret("removal", external_id)
    sfx = uuid.uuid4().hex[:6]
    gone, kept, stays, ns = f"porter-e2e-gone-{sfx}", f"porter-e2e-kept-{sfx}", f"porter-e2e-stays-{sfx}", f"rm-{sfx}"
    roles = [_custom(gone, (ns, "gone")), _custom(kept, (ns, "kept")), _custom(stays)]
    rolesets.create("removal", "removal", roles=roles, deletionPolicy="Delete")
    obj = rolesets.wait_ready("removal")
    assert obj["status"]["rolesReady"] == "3/3"
    assert set(_associations(aws, ns)) == {"gone", "kept"}

    # kubectl describe: each status entry starts with the role it describes, so no field reads as the previous one's
    entries = _status_role_entries(kubectl("describe", "prs", "removal").stdout)
    assert [e[0] for e in entries] == [f"Name: {n}" for n in (gone, kept, stays)], entries
    for entry, name in zip(entries, (gone, kept, stays), strict=True):
        assert any(f.startswith("Role Arn:") and f.endswith(f":role/{name}") for f in entry), entry

    # Delete: the role that left the spec is deleted, with its association; the others are untouched
    rolesets.patch_spec("removal", {"roles": [roles[1], roles[2]]})
    wait_for(lambda: not _role_exists(iam, gone), 30, what=f"{gone} deleted")
    assert set(_associations(aws, ns)) == {"kept"}
    obj = rolesets.wait_ready("removal")
    assert obj["status"]["rolesReady"] == "2/2"
    assert [r["name"] for r in obj["status"]["roles"]] == [kept, stays]
    deleted = [e.message for e in rolesets.events("removal") if e.reason == "Deleted"]
    assert any(gone in m and "left the spec" in m for m in deleted), deleted

    # Retain: the role that left is released (kept, our owner tag removed) and loses its association
    rolesets.patch_spec("removal", {"deletionPolicy": "Retain", "roles": [roles[2]]})
    wait_for(lambda: "porter.run/owner" not in _tags(iam, kept), 30, what=f"{kept} released")
    assert _role_exists(iam, kept) and _tags(iam, kept)["porter.run/managed"] == "true"
    assert iam.list_role_policies(RoleName=kept)["PolicyNames"] == [INLINE_POLICY], "a released role is not emptied"
    wait_for(lambda: _associations(aws, ns) == {}, 15, what="the released role's association deleted")
    released = [e.message for e in rolesets.events("removal") if e.reason == "Released"]
    assert any(kept in m and "deletionPolicy Retain" in m for m in released), released
    assert rolesets.wait_ready("removal")["status"]["rolesReady"] == "1/1"
    rolesets.delete("removal")
    rolesets.wait_gone("removal")


def _snapshot(iam: Any, name: str) -> dict[str, Any]:
    role = iam.get_role(RoleName=name)["Role"]
    inline = {
        p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
        for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
    }
    attached = sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"])
    return {"trust": role["AssumeRolePolicyDocument"], "inline": inline, "attached": attached, "tags": _tags(iam, name)}


def test_an_existing_role_is_adopted_only_when_asked_and_keeps_the_policies_we_did_not_write(
    rolesets: RoleSets, access_role: Callable[[str], None], aws: AwsEmulator, iam: Any, control_plane: Any
) -> None:
    external_id = "adoption-" + uuid.uuid4().hex
    access_role(external_id)
    rolesets.secret("adoption", external_id)
    sfx = uuid.uuid4().hex[:6]
    name = f"porter-e2e-adoptee-{sfx}"
    iam.create_role(
        RoleName=name, AssumeRolePolicyDocument=_access_trust("x" * 8), Tags=[{"Key": "team", "Value": "data"}]
    )
    team = {"Version": "2012-10-17", "Statement": [{"Sid": "TeamOwn", "Effect": "Allow", "Action": "s3:ListBucket"}]}
    team["Statement"][0]["Resource"] = "arn:aws:s3:::team-data"  # type: ignore[index]
    iam.put_role_policy(RoleName=name, PolicyName="team-extra", PolicyDocument=json.dumps(team))
    managed = iam.create_policy(PolicyName=f"team-{sfx}", PolicyDocument=json.dumps(team))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=name, PolicyArn=managed)
    before = _snapshot(iam, name)

    rolesets.create("adoption", "adoption", roles=[_custom(name)])
    stalled = rolesets.wait_reason("adoption", "Conflict", kind="Stalled")
    assert f"role {name} already exists and no PorterRoleSet made it" in stalled["message"]
    assert "takeOver: KeepPolicies" in stalled["message"]
    assert _snapshot(iam, name) == before, "a role no set made is left untouched"

    # diff says what adopting it would change, before anything does
    shown = _cli(control_plane, aws, "diff", "adoption")
    assert shown.returncode == 1, shown.stderr
    block = shown.stdout.split(f"{name}:\n", 1)[1]
    assert block.startswith(f"  ! role {name} already exists") and "  adopting it would do:" in block
    assert f"UpdateTrust on {name}" in block and f"TagRole on {name}" in block
    assert f"PutInlinePolicy {INLINE_POLICY} on {name}" in block
    assert "team-extra" not in block and managed not in block, "what we did not write is not removed"
    assert _snapshot(iam, name) == before

    rolesets.patch_spec("adoption", {"roles": [_custom(name) | {"takeOver": "KeepPolicies"}]})
    rolesets.wait_ready("adoption")
    after = _snapshot(iam, name)
    assert set(after["inline"]) == {"team-extra", INLINE_POLICY}
    assert canonical(after["inline"]["team-extra"]) == canonical(before["inline"]["team-extra"])
    assert after["attached"] == [managed]
    assert after["tags"] == {"team": "data", "porter.run/managed": "true", "porter.run/owner": "adoption"}
    rolesets.delete("adoption")
    rolesets.wait_gone("adoption")
    assert _role_exists(iam, name), "adopted, not created: Retain releases it"


def test_a_delete_blocked_by_a_missing_secret_says_how_to_finish_and_retain_finishes_it(
    rolesets: RoleSets, access_role: Callable[[str], None], iam: Any
) -> None:
    external_id = "dead-end-" + uuid.uuid4().hex
    access_role(external_id)
    rolesets.secret("dead-end", external_id)
    name = f"porter-e2e-dead-end-{uuid.uuid4().hex[:6]}"
    rolesets.create("dead-end", "dead-end", roles=[_custom(name)], deletionPolicy="Delete")
    rolesets.wait_ready("dead-end")
    rolesets.delete_secret("dead-end")
    rolesets.delete("dead-end")

    def explained() -> dict[str, Any] | None:
        cond = rolesets.ready("dead-end")
        return cond if cond and "deletionPolicy is Delete" in cond["message"] else None

    cond = wait_for(explained, 30, what="the blocked delete explained in the Ready condition")
    assert cond["status"] == "False" and cond["reason"] == "SecretNotFound"
    assert "Secret porter-system/dead-end does not exist" in cond["message"]
    assert "restore it" in cond["message"] and '"deletionPolicy":"Retain"' in cond["message"]
    assert (rolesets.get("dead-end") or {})["metadata"].get("deletionTimestamp")
    tags = _tags(iam, name)

    rolesets.patch_spec("dead-end", {"deletionPolicy": "Retain"})
    rolesets.wait_gone("dead-end", timeout=20)
    assert _role_exists(iam, name) and _tags(iam, name) == tags, "Retain touches no role"


def _live_sections(text: str) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """`inventory --live` per role: its statements rebuilt as IAM JSON from the table, and its marked differences."""
    out = {}
    for section in text.split("\n### ")[1:]:
        name, body = section.split("\n", 1)
        statements, notes = [], []
        for line in body.split(STATEMENT_HEADER, 1)[1].splitlines():
            if line.startswith("| ") and not line.startswith("|---"):
                sid, resources, actions, condition = (c.strip() for c in line.strip("|").split(" | "))
                stmt: dict[str, Any] = {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": actions.split(", "),
                    "Resource": resources.split("<br>"),
                }
                if condition != "—":
                    stmt["Condition"] = _condition_block(condition)
                statements.append(stmt)
            elif line.startswith("- `"):
                notes.append(line)
        out[name.strip()] = (statements, notes)
    return out


_CONDITION = re.compile(
    r"(?:(?P<op>[A-Za-z]+(?::[A-Za-z]+)?) )?(?P<key>[\w:/.-]+) "
    r"(?:= (?P<one>.+)|in \[(?P<many>.*)\]|like (?P<like>.+)|(?P<null>is not null))"
)


def _condition_block(text: str) -> dict[str, dict[str, list[str]]]:
    """The inventory's condition cell back to IAM: the seed's spelling means the plain operator."""
    blocks: dict[str, dict[str, list[str]]] = {}
    for part in text.split("; "):
        m = _CONDITION.fullmatch(part)
        assert m is not None, part
        if m["null"]:
            op, values = "Null", ["false"]
        elif m["like"]:
            op, values = "StringLike", [m["like"]]
        else:
            op, values = "StringEquals", [m["one"]] if m["one"] else m["many"].split(", ")
        blocks.setdefault(m["op"] or op, {})[m["key"]] = values
    return blocks


def test_inventory_live_is_what_the_account_holds_and_marks_each_deliberate_difference_from_the_seed(
    rolesets: RoleSets, access_role: Callable[[str], None], aws: AwsEmulator, iam: Any, control_plane: Any
) -> None:
    external_id = "live-" + uuid.uuid4().hex
    access_role(external_id)
    rolesets.secret("live", external_id)
    bucket = f"porter-e2e-live-{uuid.uuid4().hex[:6]}"
    rolesets.create("live", "live", roles=[{"preset": "porter-node-manager"}], buckets=[{"name": bucket}])
    rolesets.wait_ready("live")
    listed = _cli(control_plane, aws, "inventory", "--live", "live")
    assert listed.returncode == 0, listed.stderr
    sections = _live_sections(listed.stdout)
    s3_role = presets.s3_role_name(bucket)
    assert set(sections) == {"porter-node-manager", s3_role}
    for name, (statements, _) in sections.items():
        assert canonical({"Statement": statements})["Statement"] == _role_statements(iam, name), name

    node_notes = sections["porter-node-manager"][1]
    assert [n.split("`")[1] for n in node_notes] == ["AllowCreateAccessPoint", "AllowTagNewAccessPoints"]
    for note in node_notes:
        assert "inventory `aws:TagKeys = efs.csi.aws.com/cluster`" in note
        assert "deployed `ForAllValues:StringEquals aws:TagKeys = efs.csi.aws.com/cluster`" in note
        assert "multivalued context key" in note
    [s3_note] = sections[s3_role][1]
    assert s3_note.startswith(f"- `S3ObjectAccess`: inventory `arn:aws:s3:::*/*`, deployed `arn:aws:s3:::{bucket}/*`")
    assert "only the objects of its own bucket" in s3_note
    # the docs list the same deliberate differences
    docs = (REPO / "docs" / "rolesets.md").read_text()
    assert "ForAllValues:StringEquals" in docs and "arn:aws:s3:::*/*" in docs
    rolesets.delete("live")
    rolesets.wait_gone("live")


def test_a_set_that_never_reached_its_account_reads_0_of_n(rolesets: RoleSets, kubectl: Any) -> None:
    rolesets.create(
        "zero",
        "absent-external-id",
        roles=[{"preset": "porter-telemetry-manager"}, {"preset": "porter-eso-secrets-manager"}],
        buckets=[{"name": "porter-e2e-zero"}],
    )
    rolesets.wait_reason("zero", "SecretNotFound", kind="Stalled")
    assert (rolesets.get("zero") or {})["status"]["rolesReady"] == "0/3"
    table = kubectl("get", "prs", "zero").stdout
    assert re.search(r"\b0/3\b", table), table
    rolesets.delete("zero")
    rolesets.wait_gone("zero")


def _metrics(operator: Operator) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.env['PORTER_METRICS_PORT']}/metrics", timeout=5) as r:
        text: str = r.read().decode()
    return text


def test_an_external_id_echoed_by_sts_reaches_no_status_event_log_or_metric(
    rolesets: RoleSets, access_role: Callable[[str], None], aws: AwsEmulator, operator: Operator
) -> None:
    # Characters STS accepts that a query body URL-encodes, so every spelling of the value is looked for.
    external_id = f"leak/{uuid.uuid4().hex}=+@:"
    access_role(external_id)
    rolesets.secret("leak", external_id)
    # STS refusing the value answers with it inside its message, as it does for a malformed one.
    aws.faults(rules=[{"fault": "invalid", "service": "sts", "operation": "AssumeRole", "rate": 1.0}])
    try:
        rolesets.create("leak", "leak", roles=[_custom(f"porter-e2e-leak-{uuid.uuid4().hex[:6]}")])
        cond = rolesets.wait_reason("leak", "CloudRejected", kind="Stalled")
        assert aws.injected().get("sts:AssumeRole:invalid", 0) >= 1
    finally:
        aws.faults()
    assert "ValidationError: 1 validation error detected: Value '(redacted)' at 'externalId'" in cond["message"]
    events = [f"{e.reason} {e.message}" for e in rolesets.events("leak")]
    assert any("(redacted)" in e for e in events), events
    seen = {
        "status": json.dumps(rolesets.get("leak")),
        "events": "\n".join(events),
        "operator log": operator.log(),
        "metrics": _metrics(operator),
    }
    spellings = {external_id, urllib.parse.quote(external_id, safe=""), urllib.parse.quote_plus(external_id)}
    for where, text in seen.items():
        for spelling in spellings:
            assert spelling not in text, f"the ExternalId leaked into {where}"
    rolesets.delete("leak")
    rolesets.wait_gone("leak")


@pytest.mark.parametrize("value", ["x", "two words"], ids=["too short", "space"])
def test_a_malformed_external_id_is_invalid_secret_and_reaches_no_aws_call(
    rolesets: RoleSets, aws: AwsEmulator, operator: Operator, value: str
) -> None:
    rolesets.secret("invalid-id", value)
    name = f"invalid-{uuid.uuid4().hex[:6]}"
    access = f"porter-e2e-access-{name}"  # its own access role: AssumeRole calls are counted per role
    body = roleset(name, (SECRET_NS, "invalid-id"), access, roles=[_custom(f"porter-e2e-{name}")])
    rolesets.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    cond = rolesets.wait_reason(name, "InvalidSecret", kind="Stalled")
    assert cond["message"].startswith("key 'externalId' of Secret porter-system/invalid-id is not a valid ExternalId")
    assert "nothing was sent to AWS" in cond["message"]
    # Stalled, not retried as a network failure: the syncs that follow (every 2 s here) call AWS no more.
    time.sleep(5)
    assert aws.assume_role_calls().get(f"arn:aws:iam::{AWS_ACCOUNT_ID}:role/{access}", 0) == 0
    assert rolesets.wait_reason(name, "InvalidSecret", kind="Stalled")
    if len(value) > 1:
        assert value not in json.dumps(rolesets.get(name)) and value not in operator.log()
    rolesets.delete(name)
    rolesets.wait_gone(name)


def test_a_set_for_a_foreign_account_never_assumes_a_role_even_without_the_webhook(
    rolesets: RoleSets, access_role: Callable[[str], None], aws: AwsEmulator, kubectl: Any
) -> None:
    rolesets.secret("foreign", "foreign-" + uuid.uuid4().hex)
    foreign_access = f"arn:aws:iam::{FOREIGN_ACCOUNT}:role/{ACCESS_ROLE}"
    body = roleset("foreign", (SECRET_NS, "foreign"), ACCESS_ROLE)
    body["spec"].update(accountId=FOREIGN_ACCOUNT, managementPrincipalArn=f"arn:aws:iam::{FOREIGN_ACCOUNT}:root")
    body["spec"]["access"]["roleArn"] = foreign_access
    body["spec"]["roles"] = [{"preset": "porter-telemetry-manager"}]
    # with the webhook in place it is refused at admission
    with pytest.raises(client.ApiException) as refused:
        rolesets.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert refused.value.status == 403 and f"is not the configured account {AWS_ACCOUNT_ID}" in str(refused.value.body)

    with webhook_bypassed(kubectl):
        rolesets.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        cond = rolesets.wait_reason("foreign", "NotAllowed", kind="Stalled")
    assert f"spec.accountId {FOREIGN_ACCOUNT} is not the configured account {AWS_ACCOUNT_ID}" in cond["message"]
    assert aws.assume_role_calls().get(foreign_access, 0) == 0, "no AssumeRole, so the ExternalId never left"
    rolesets.delete("foreign")
    rolesets.wait_gone("foreign")
