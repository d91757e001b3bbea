"""PorterRoleSet parsing from the API server's camelCase, the spec's refusals, and their CEL twins in the CRD."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from porter_identity.api.common import ConditionStatus, DeletionPolicy
from porter_identity.api.crd import roleset_crd
from porter_identity.api.roleset import (
    ACCESS_IN_ACCOUNT,
    ACCOUNT_ID,
    BUCKET,
    CUSTOM_NEEDS_DOCUMENTS,
    ONE_OF_PRESET_OR_NAME,
    REGION,
    PorterRoleSet,
    RoleSetSpec,
    RoleSpec,
)
from porter_identity.iam.presets import s3_role_name

ACCOUNT = "123456789012"
MGMT = "arn:aws:iam::210987654321:role/CAPIManagement"
ACCESS_ARN = f"arn:aws:iam::{ACCOUNT}:role/porter-access-manager"


# --- helpers ---------------------------------------------------------------------------------------------------------


def custom_role(name: str = "my-custom", **overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "trust": {"management": "ExternalId", "services": ["ec2.amazonaws.com"], "podIdentity": True},
        "statements": [
            {
                "sid": "ReadObjects",
                "effect": "Deny",
                "actions": ["s3:GetObject", "s3:List*"],
                "resources": ["arn:aws:s3:::data/*"],
                "condition": {"StringEquals": {"aws:SourceAccount": [ACCOUNT]}},
            }
        ],
        "serviceAccount": {"namespace": "apps", "name": "worker"},
    }
    out.update(overrides)
    return out


def spec_body(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "accountId": ACCOUNT,
        "region": "us-east-1",
        "clusterName": "prod-cluster",
        "managementPrincipalArn": MGMT,
        "access": {
            "roleArn": ACCESS_ARN,
            "externalIdSecretRef": {"namespace": "porter", "name": "porter-external-id"},
        },
        "roles": [
            {"preset": "porter-manager"},
            {"preset": "porter-karpenter", "serviceAccount": {"namespace": "karpenter", "name": "karpenter"}},
            custom_role(),
        ],
        "buckets": [
            {"name": "logs-bucket", "serviceAccount": {"namespace": "monitoring", "name": "loki"}},
            {"name": "release.bucket"},
        ],
    }
    out.update(overrides)
    return out


def body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "identity.porter.run/v1alpha1",
        "kind": "PorterRoleSet",
        "metadata": {
            "name": "prod-account",
            "uid": "uid-1",
            "generation": 4,
            "resourceVersion": "99",
            "finalizers": ["identity.porter.run/finalizer"],
            "labels": {"a": "b"},
        },
        "spec": spec,
    }
    if status is not None:
        out["status"] = status
    return out


def edit(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or, with value ..., delete) the item at `path` of a spec body."""

    def apply(spec: dict[str, Any]) -> None:
        target: Any = spec
        for key in path[:-1]:
            target = target[key]
        if value is ...:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return apply


def validations(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, str]]]:
    """Every x-kubernetes-validations rule of a schema, with the property path it sits on."""
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            yield path, rule
        for name, sub in (schema.get("properties") or {}).items():
            yield from validations(sub, f"{path}.{name}")
        if "items" in schema:
            yield from validations(schema["items"], f"{path}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            yield from validations(schema["additionalProperties"], f"{path}{{}}")


@pytest.fixture(scope="module")
def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = roleset_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


@pytest.fixture(scope="module")
def rules(spec_schema: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    return list(validations(spec_schema))


# --- a valid spec ----------------------------------------------------------------------------------------------------


def test_full_spec_parses_from_camel_case() -> None:
    spec = RoleSetSpec.model_validate(spec_body())
    assert spec.account_id == ACCOUNT
    assert spec.region == "us-east-1"
    assert spec.cluster_name == "prod-cluster"
    assert spec.management_principal_arn == MGMT
    assert spec.access.role_arn == ACCESS_ARN
    assert spec.access.external_id_secret_ref.namespace == "porter"
    assert spec.access.external_id_secret_ref.name == "porter-external-id"
    assert [r.role_name for r in spec.roles] == ["porter-manager", "porter-karpenter", "my-custom"]
    assert spec.roles[0].statements is None and spec.roles[0].trust is None
    assert spec.roles[1].service_account is not None
    assert spec.roles[1].service_account.name == "karpenter"
    custom = spec.roles[2]
    assert custom.preset is None
    assert custom.trust is not None
    assert custom.trust.management == "ExternalId"
    assert custom.trust.services == ["ec2.amazonaws.com"]
    assert custom.trust.pod_identity is True
    assert custom.statements is not None
    (statement,) = custom.statements
    assert statement.sid == "ReadObjects"
    assert statement.effect == "Deny"
    assert statement.actions == ["s3:GetObject", "s3:List*"]
    assert statement.resources == ["arn:aws:s3:::data/*"]
    assert statement.condition == {"StringEquals": {"aws:SourceAccount": [ACCOUNT]}}
    assert [b.name for b in spec.buckets] == ["logs-bucket", "release.bucket"]
    assert spec.buckets[0].service_account is not None and spec.buckets[0].service_account.namespace == "monitoring"
    assert spec.buckets[1].service_account is None


def test_defaults() -> None:
    spec = RoleSetSpec.model_validate(spec_body())
    assert spec.deletion_policy is DeletionPolicy.RETAIN
    assert spec.ack_compatible_trust is False
    assert spec.access.external_id_secret_ref.key == "externalId"


def test_minimal_spec_defaults_to_no_roles_or_buckets() -> None:
    spec = RoleSetSpec.model_validate(spec_body(roles=[], buckets=[]))
    assert spec.roles == [] and spec.buckets == []
    del_body = spec_body()
    del del_body["roles"], del_body["buckets"]
    assert RoleSetSpec.model_validate(del_body).roles == []


def test_custom_statement_and_trust_defaults() -> None:
    role = RoleSpec.model_validate(
        {
            "name": "r",
            "trust": {"podIdentity": True},
            "statements": [{"sid": "A", "actions": ["*"], "resources": ["*"]}],
        }
    )
    assert role.statements is not None and role.trust is not None
    assert role.statements[0].effect == "Allow"
    assert role.statements[0].condition is None
    assert role.trust.management == "None"
    assert role.trust.services == []
    assert role.trust.pod_identity is True


def test_explicit_settings_are_read() -> None:
    b = spec_body(ackCompatibleTrust=True, deletionPolicy="Delete")
    b["access"]["externalIdSecretRef"]["key"] = "id.txt"
    spec = RoleSetSpec.model_validate(b)
    assert spec.ack_compatible_trust is True
    assert spec.deletion_policy is DeletionPolicy.DELETE
    assert spec.access.external_id_secret_ref.key == "id.txt"


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "us-gov-west-1", "ap-southeast-2"])
def test_regions_accepted(region: str) -> None:
    assert RoleSetSpec.model_validate(spec_body(region=region)).region == region


def test_management_principal_may_be_account_root_or_user() -> None:
    for arn in ("arn:aws:iam::210987654321:root", "arn:aws:iam::210987654321:user/ops/alice"):
        assert RoleSetSpec.model_validate(spec_body(managementPrincipalArn=arn)).management_principal_arn == arn


# --- refusals --------------------------------------------------------------------------------------------------------


REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "preset and name",
        edit(["roles", 0], {"preset": "porter-manager", "name": "porter-manager"}),
        ONE_OF_PRESET_OR_NAME["message"],
    ),
    ("neither preset nor name", edit(["roles", 0], {}), ONE_OF_PRESET_OR_NAME["message"]),
    (
        "neither preset nor name but documents",
        edit(["roles", 2, "name"], ...),
        ONE_OF_PRESET_OR_NAME["message"],
    ),
    ("custom without statements", edit(["roles", 2, "statements"], ...), CUSTOM_NEEDS_DOCUMENTS["message"]),
    ("custom without trust", edit(["roles", 2, "trust"], ...), CUSTOM_NEEDS_DOCUMENTS["message"]),
    (
        "preset with statements",
        edit(["roles", 0, "statements"], [{"sid": "A", "actions": ["s3:GetObject"], "resources": ["*"]}]),
        CUSTOM_NEEDS_DOCUMENTS["message"],
    ),
    ("preset with trust", edit(["roles", 0, "trust"], {"podIdentity": True}), CUSTOM_NEEDS_DOCUMENTS["message"]),
    (
        "access role in another account",
        edit(["access", "roleArn"], "arn:aws:iam::999999999999:role/porter-access-manager"),
        ACCESS_IN_ACCOUNT["message"],
    ),
    (
        "duplicate preset",
        edit(["roles", 1], {"preset": "porter-manager"}),
        "roles and buckets must be unique; repeated: porter-manager",
    ),
    (
        "custom role named like a preset",
        edit(["roles", 2, "name"], "porter-manager"),
        "roles and buckets must be unique; repeated: porter-manager",
    ),
    (
        "duplicate bucket",
        edit(["buckets", 1], {"name": "logs-bucket"}),
        f"roles and buckets must be unique; repeated: {s3_role_name('logs-bucket')} (bucket logs-bucket)",
    ),
    ("account id too short", edit(["accountId"], "12345678901"), "accountId must be 12 digits"),
    ("account id not digits", edit(["accountId"], "12345678901a"), "accountId must be 12 digits"),
    ("region upper case", edit(["region"], "US-EAST-1"), "region must be an AWS region such as us-east-1"),
    ("region without number", edit(["region"], "us-east"), "region must be an AWS region such as us-east-1"),
    ("bucket upper case", edit(["buckets", 0, "name"], "Logs"), "bucket name must be 3-63 lower-case letters"),
    ("bucket too short", edit(["buckets", 0, "name"], "ab"), "bucket name must be 3-63 lower-case letters"),
    ("bucket ends with dash", edit(["buckets", 0, "name"], "logs-"), "bucket name must be 3-63 lower-case letters"),
    ("bucket with slash", edit(["buckets", 0, "name"], "logs/x"), "bucket name must be 3-63 lower-case letters"),
    ("sid with dash", edit(["roles", 2, "statements", 0, "sid"], "read-objects"), "String should match pattern"),
    ("empty sid", edit(["roles", 2, "statements", 0, "sid"], ""), "String should match pattern"),
    ("action without service", edit(["roles", 2, "statements", 0, "actions"], ["GetObject"]), "should match pattern"),
    ("action with space", edit(["roles", 2, "statements", 0, "actions"], ["s3: GetObject"]), "should match pattern"),
    ("no actions", edit(["roles", 2, "statements", 0, "actions"], []), "at least 1 item"),
    ("no resources", edit(["roles", 2, "statements", 0, "resources"], []), "at least 1 item"),
    ("bad effect", edit(["roles", 2, "statements", 0, "effect"], "allow"), "Input should be 'Allow' or 'Deny'"),
    ("unknown preset", edit(["roles", 0, "preset"], "porter-admin"), "Input should be 'porter-access-manager'"),
    ("s3 is not a role preset", edit(["roles", 0, "preset"], "porter-s3"), "Input should be 'porter-access-manager'"),
    ("unknown spec field", edit(["bogus"], True), "Extra inputs are not permitted"),
    ("unknown role field", edit(["roles", 0, "policy"], "x"), "Extra inputs are not permitted"),
    ("unknown statement field", edit(["roles", 2, "statements", 0, "Sid"], "A"), "Extra inputs are not permitted"),
    ("bad trust management", edit(["roles", 2, "trust", "management"], "Always"), "'None' or 'ExternalId'"),
    ("bad service", edit(["roles", 2, "trust", "services"], ["ec2"]), "services must be AWS service principals"),
    ("bad role name", edit(["roles", 2, "name"], "my role"), "name must be an IAM role name"),
    ("bad access arn", edit(["access", "roleArn"], "porter-access-manager"), "roleArn must be an IAM role ARN"),
    ("bad principal", edit(["managementPrincipalArn"], "CAPIManagement"), "managementPrincipalArn must be"),
    ("bad cluster name", edit(["clusterName"], "-prod"), "clusterName must be an EKS cluster name"),
    ("bad deletion policy", edit(["deletionPolicy"], "Orphan"), "Input should be 'Delete' or 'Retain'"),
    ("bad secret namespace", edit(["access", "externalIdSecretRef", "namespace"], "Porter"), "DNS-1123 label"),
    ("bad secret key", edit(["access", "externalIdSecretRef", "key"], "a/b"), "key must consist of letters"),
    ("bad pod identity sa", edit(["roles", 1, "serviceAccount", "name"], "Karp"), "DNS-1123 subdomain"),
    ("missing access", edit(["access"], ...), "Field required"),
]


@pytest.mark.parametrize(("change", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused(change: Callable[[dict[str, Any]], None], message: str) -> None:
    b = spec_body()
    change(b)
    with pytest.raises(ValidationError) as err:
        RoleSetSpec.model_validate(b)
    assert message in str(err.value)


def test_refusals_table_starts_from_a_valid_spec() -> None:
    # Each row above changes one thing of this body: if it were invalid, every row would pass for the wrong reason.
    assert RoleSetSpec.model_validate(copy.deepcopy(spec_body())).account_id == ACCOUNT


def test_duplicates_are_all_named_sorted() -> None:
    b = spec_body(
        roles=[{"preset": "porter-manager"}, {"preset": "porter-karpenter"}] * 2,
        buckets=[{"name": "zz-bucket"}, {"name": "zz-bucket"}],
    )
    with pytest.raises(
        ValidationError, match=r"repeated: porter-karpenter, porter-manager, porter-s3-\w+ \(bucket zz-bucket\)"
    ):
        RoleSetSpec.model_validate(b)


def test_same_role_in_another_set_is_not_a_duplicate() -> None:
    spec = RoleSetSpec.model_validate(spec_body(roles=[{"preset": "porter-manager"}], buckets=[{"name": "abc"}]))
    assert [r.role_name for r in spec.roles] == ["porter-manager"]


def test_custom_role_colliding_with_a_bucket_role_is_refused() -> None:
    b = spec_body(roles=[custom_role(s3_role_name("logs-bucket"))], buckets=[{"name": "logs-bucket"}])
    with pytest.raises(ValidationError, match="must be unique"):
        RoleSetSpec.model_validate(b)


def test_bucket_named_like_a_preset_is_not_a_duplicate() -> None:
    spec = RoleSetSpec.model_validate(
        spec_body(roles=[{"preset": "porter-manager"}], buckets=[{"name": "porter-manager"}])
    )
    assert [b.name for b in spec.buckets] == ["porter-manager"]


def test_role_name_property() -> None:
    assert RoleSpec.model_validate({"preset": "porter-node-manager"}).role_name == "porter-node-manager"
    assert RoleSpec.model_validate(custom_role("abc")).role_name == "abc"


# --- PorterRoleSet.from_body -----------------------------------------------------------------------------------------


STATUS = {
    "observedGeneration": 3,
    "conditions": [
        {
            "type": "Ready",
            "status": "False",
            "observedGeneration": 3,
            "lastTransitionTime": "2024-05-01T10:00:00Z",
            "reason": "Conflict",
            "message": "role porter-manager is managed by PorterRoleSet other",
        }
    ],
    "rolesReady": "1/2",
    "roles": [
        {
            "name": "porter-manager",
            "roleArn": f"arn:aws:iam::{ACCOUNT}:role/porter-manager",
            "policyDigest": "sha256:0123456789abcdef",
            "policies": ["porter-permissions"],
            "podIdentityAssociationId": "a-123",
            "ready": {
                "type": "Ready",
                "status": "True",
                "observedGeneration": 3,
                "lastTransitionTime": "2024-05-01T10:00:00Z",
                "reason": "Synced",
                "message": "",
            },
        }
    ],
}


def test_from_body_reads_metadata_spec_and_status() -> None:
    obj = PorterRoleSet.from_body(body(spec_body(), STATUS))
    assert obj.metadata.name == "prod-account"
    assert obj.metadata.uid == "uid-1"
    assert obj.metadata.generation == 4
    assert obj.metadata.namespace is None
    assert obj.spec.account_id == ACCOUNT
    assert obj.status.observed_generation == 3
    assert obj.status.roles_ready == "1/2"
    assert obj.status.conditions[0].status is ConditionStatus.FALSE
    assert obj.status.conditions[0].reason == "Conflict"
    (role,) = obj.status.roles
    assert role.policy_digest == "sha256:0123456789abcdef"
    assert role.policies == ["porter-permissions"]
    assert role.pod_identity_association_id == "a-123"
    assert role.ready is not None and role.ready.last_transition_time == "2024-05-01T10:00:00Z"


def test_from_body_status_round_trips() -> None:
    obj = PorterRoleSet.from_body(body(spec_body(), copy.deepcopy(STATUS)))
    assert obj.status.model_dump(by_alias=True, mode="json") == STATUS


def test_from_body_spec_round_trips_with_defaults_filled_in() -> None:
    obj = PorterRoleSet.from_body(body(spec_body()))
    dumped = obj.spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert dumped["deletionPolicy"] == "Retain"
    assert dumped["ackCompatibleTrust"] is False
    assert dumped["access"]["externalIdSecretRef"]["key"] == "externalId"
    assert RoleSetSpec.model_validate(dumped) == obj.spec


@pytest.mark.parametrize("status", [None, {}])
def test_from_body_without_status_is_empty(status: dict[str, Any] | None) -> None:
    b = body(spec_body())
    b["status"] = status
    obj = PorterRoleSet.from_body(b)
    assert obj.status.conditions == [] and obj.status.roles == []
    assert obj.status.observed_generation is None


def test_from_body_refuses_an_invalid_spec() -> None:
    with pytest.raises(ValidationError, match=ACCESS_IN_ACCOUNT["message"]):
        PorterRoleSet.from_body(body(spec_body(accountId="999999999999")))


def test_from_body_does_not_mutate_the_body() -> None:
    b = body(spec_body(), STATUS)
    before = copy.deepcopy(b)
    PorterRoleSet.from_body(b)
    assert b == before


# --- the CRD's CEL twins ---------------------------------------------------------------------------------------------


def test_crd_role_items_carry_preset_or_name_rules(spec_schema: dict[str, Any]) -> None:
    role_rules = spec_schema["properties"]["roles"]["items"]["x-kubernetes-validations"]
    assert ONE_OF_PRESET_OR_NAME in role_rules
    assert CUSTOM_NEEDS_DOCUMENTS in role_rules
    assert ONE_OF_PRESET_OR_NAME == {
        "rule": "has(self.preset) != has(self.name)",
        "message": "set exactly one of preset or name",
    }


def test_crd_spec_carries_access_in_account_rule(spec_schema: dict[str, Any]) -> None:
    assert spec_schema["x-kubernetes-validations"] == [ACCESS_IN_ACCOUNT]
    assert ACCESS_IN_ACCOUNT["rule"] == "self.access.roleArn.split(':')[4] == self.accountId"


def test_crd_model_rules_appear_exactly_once_where_expected(rules: list[tuple[str, dict[str, str]]]) -> None:
    for rule, where in [
        (ONE_OF_PRESET_OR_NAME, ".roles[]"),
        (CUSTOM_NEEDS_DOCUMENTS, ".roles[]"),
        (ACCESS_IN_ACCOUNT, ""),
    ]:
        assert [path for path, r in rules if r == rule] == [where]
        assert [path for path, r in rules if r["message"] == rule["message"]] == [where]


def test_crd_account_id_is_immutable(rules: list[tuple[str, dict[str, str]]]) -> None:
    account_rules = [r for path, r in rules if path == ".accountId"]
    assert {"rule": "self == oldSelf", "message": "accountId is immutable; create a new PorterRoleSet instead"} in (
        account_rules
    )
    assert {"rule": f"self.matches(r'{ACCOUNT_ID}')", "message": "accountId must be 12 digits"} in account_rules


@pytest.mark.parametrize(
    ("path", "regex", "message"),
    [
        (".region", REGION, "region must be an AWS region such as us-east-1"),
        (".buckets[].name", BUCKET, "bucket name must be 3-63 lower-case letters, digits, '.' and '-'"),
    ],
)
def test_crd_string_rules_match_the_model(
    rules: list[tuple[str, dict[str, str]]], path: str, regex: str, message: str
) -> None:
    assert {"rule": f"self.matches(r'{regex}')", "message": message} in [r for p, r in rules if p == path]


def test_crd_statement_strings_use_plain_patterns(spec_schema: dict[str, Any]) -> None:
    statement = spec_schema["properties"]["roles"]["items"]["properties"]["statements"]["items"]
    assert statement["properties"]["sid"]["pattern"] == "^[A-Za-z0-9]{1,128}$"
    assert "x-kubernetes-validations" not in statement["properties"]["sid"]
    assert "pattern" in statement["properties"]["actions"]["items"]


def test_crd_preset_enum_excludes_s3(spec_schema: dict[str, Any]) -> None:
    enum = spec_schema["properties"]["roles"]["items"]["properties"]["preset"]["enum"]
    assert "porter-manager" in enum
    assert "porter-s3" not in enum
    assert len(enum) == 9


def test_crd_refusals_without_cel_are_model_only(rules: list[tuple[str, dict[str, str]]]) -> None:
    # Duplicate roles/buckets are refused by the operator's model only; no CEL rule claims to check them.
    assert not [r for _, r in rules if "unique" in r["message"]]


def test_custom_role_trusting_nobody_is_refused() -> None:
    body = spec_body(roles=[{**custom_role("porter-lonely"), "trust": {}}])
    with pytest.raises(ValidationError, match="trust must name at least one principal"):
        RoleSetSpec.model_validate(body)


def test_custom_role_without_statements_is_refused() -> None:
    body = spec_body(roles=[{**custom_role("porter-empty"), "statements": []}])
    with pytest.raises(ValidationError, match="at least 1 item"):
        RoleSetSpec.model_validate(body)
