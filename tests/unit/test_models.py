"""ServiceIdentityConnection parsing, the exactly-one-provider rule, string rules and their CEL twins."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
from pydantic import ValidationError

from porter_identity.api import validation
from porter_identity.api.common import ConditionStatus, DeletionPolicy
from porter_identity.api.connection import (
    EXACTLY_ONE_PROVIDER,
    PROVIDER_IMMUTABLE,
    ConnectionSpec,
    Provider,
    ServiceIdentityConnection,
)
from porter_identity.api.crd import connection_crd

ROLE_ARN = "arn:aws:iam::123456789012:role/my-role"
EMAIL = "my-sa-1@my-project.iam.gserviceaccount.com"


def body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "identity.porter.run/v1alpha1",
        "kind": "ServiceIdentityConnection",
        "metadata": {
            "name": "conn",
            "namespace": "team-a",
            "uid": "uid-1",
            "generation": 3,
            "resourceVersion": "42",
            "labels": {"app": "x"},
            "annotations": {"a": "b"},
            "finalizers": ["identity.porter.run/finalizer"],
        },
        "spec": spec,
    }
    if status is not None:
        out["status"] = status
    return out


# --- from_body / camelCase -------------------------------------------------------------------------------------------


def test_from_body_reads_camel_case_metadata_spec_and_status() -> None:
    conn = ServiceIdentityConnection.from_body(
        body(
            {"serviceAccountName": "app", "aws": {"role": ROLE_ARN}, "deletionPolicy": "Retain"},
            {
                "observedGeneration": 2,
                "provider": "aws",
                "identity": ROLE_ARN,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "observedGeneration": 2,
                        "lastTransitionTime": "2024-01-01T00:00:00Z",
                        "reason": "Bound",
                        "message": "ok",
                    }
                ],
                "aws": {"associationId": "a-1", "associationArn": "arn:assoc", "roleArn": ROLE_ARN},
            },
        )
    )
    assert conn.metadata.name == "conn"
    assert conn.metadata.namespace == "team-a"
    assert conn.metadata.uid == "uid-1"
    assert conn.metadata.generation == 3
    assert conn.metadata.deletion_timestamp is None
    assert conn.spec.service_account_name == "app"
    assert conn.spec.aws is not None
    assert conn.spec.aws.role == ROLE_ARN
    assert conn.spec.deletion_policy is DeletionPolicy.RETAIN
    assert conn.status.observed_generation == 2
    assert conn.status.provider is Provider.AWS
    assert conn.status.identity == ROLE_ARN
    assert conn.status.aws is not None
    assert conn.status.aws.association_id == "a-1"
    assert conn.status.aws.association_arn == "arn:assoc"
    assert conn.status.aws.role_arn == ROLE_ARN
    [ready] = conn.status.conditions
    assert ready.type == "Ready"
    assert ready.status is ConditionStatus.TRUE
    assert ready.observed_generation == 2
    assert ready.last_transition_time == "2024-01-01T00:00:00Z"
    assert ready.reason == "Bound"


def test_from_body_reads_deletion_timestamp() -> None:
    raw = body({"serviceAccountName": "app", "aws": {"role": "r"}})
    raw["metadata"]["deletionTimestamp"] = "2024-05-05T10:00:00Z"
    assert ServiceIdentityConnection.from_body(raw).metadata.deletion_timestamp == "2024-05-05T10:00:00Z"


@pytest.mark.parametrize("status", [None, {}])
def test_from_body_without_status_gives_empty_status(status: dict[str, Any] | None) -> None:
    raw = body({"serviceAccountName": "app", "aws": {"role": "r"}})
    raw["status"] = status
    conn = ServiceIdentityConnection.from_body(raw)
    assert conn.status.conditions == []
    assert conn.status.observed_generation is None
    assert conn.status.aws is None
    assert conn.status.provider is None


def test_from_body_status_key_missing() -> None:
    conn = ServiceIdentityConnection.from_body(body({"serviceAccountName": "app", "aws": {"role": "r"}}))
    assert conn.status.conditions == []


def test_from_body_accepts_read_only_mappings() -> None:
    # kopf hands over Mapping views, not dicts
    raw = body({"serviceAccountName": "app", "gcp": {"serviceAccountEmail": EMAIL}})
    view = MappingProxyType({k: MappingProxyType(v) if isinstance(v, dict) else v for k, v in raw.items()})
    conn = ServiceIdentityConnection.from_body(view)
    assert conn.spec.provider is Provider.GCP
    assert conn.metadata.name == "conn"


def test_metadata_defaults_when_absent() -> None:
    conn = ServiceIdentityConnection.from_body(
        {"metadata": {"name": "n"}, "spec": {"serviceAccountName": "app", "aws": {"role": "r"}}}
    )
    assert conn.metadata.namespace is None
    assert conn.metadata.uid == ""
    assert conn.metadata.generation == 0


def test_unknown_spec_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate({"serviceAccountName": "app", "aws": {"role": "r"}, "cluster": "other"})
    assert info.value.errors()[0]["loc"] == ("cluster",)


def test_unknown_provider_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate({"serviceAccountName": "app", "aws": {"role": "r", "accountId": "1"}})
    assert info.value.errors()[0]["loc"] == ("aws", "accountId")


def test_missing_service_account_name_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate({"aws": {"role": "r"}})
    assert info.value.errors()[0]["loc"] == ("serviceAccountName",)
    assert info.value.errors()[0]["type"] == "missing"


def test_snake_case_names_are_accepted_too() -> None:
    spec = ConnectionSpec.model_validate(
        {"service_account_name": "app", "azure": {"identity_name": "idn", "resource_group": "rg"}}
    )
    assert spec.service_account_name == "app"
    assert spec.azure is not None
    assert spec.azure.identity_name == "idn"


def test_dump_by_alias_is_camel_case() -> None:
    spec = ConnectionSpec.model_validate(
        {"serviceAccountName": "app", "azure": {"identityName": "idn", "resourceGroup": "rg"}}
    )
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped == {
        "serviceAccountName": "app",
        "azure": {"identityName": "idn", "resourceGroup": "rg"},
        "deletionPolicy": "Delete",
        "takeOver": "Never",
    }


# --- provider / identity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "provider", "identity"),
    [
        ({"aws": {"role": "my-role"}}, Provider.AWS, "my-role"),
        ({"aws": {"role": ROLE_ARN}}, Provider.AWS, ROLE_ARN),
        ({"azure": {"identityName": "my-id", "resourceGroup": "my-rg"}}, Provider.AZURE, "my-rg/my-id"),
        ({"gcp": {"serviceAccountEmail": EMAIL}}, Provider.GCP, EMAIL),
    ],
)
def test_provider_and_identity(spec: dict[str, Any], provider: Provider, identity: str) -> None:
    parsed = ConnectionSpec.model_validate({"serviceAccountName": "app", **spec})
    assert parsed.provider is provider
    assert parsed.identity == identity


@pytest.mark.parametrize(
    "providers",
    [
        {},
        {"aws": None},
        {"azure": None, "gcp": None},
        {"aws": {"role": "r1"}, "gcp": {"serviceAccountEmail": EMAIL}},
        {
            "aws": {"role": "r1"},
            "azure": {"identityName": "idn", "resourceGroup": "rg"},
            "gcp": {"serviceAccountEmail": EMAIL},
        },
    ],
)
def test_anything_but_exactly_one_provider_is_invalid(providers: dict) -> None:
    # Mirrors the CRD's CEL rule for objects admitted before it existed.
    with pytest.raises(ValidationError, match="exactly one of aws, azure or gcp must be set"):
        ConnectionSpec.model_validate({"serviceAccountName": "app", **providers})


# --- defaults --------------------------------------------------------------------------------------------------------


def test_deletion_policy_defaults_to_delete() -> None:
    spec = ConnectionSpec.model_validate({"serviceAccountName": "app", "aws": {"role": "r"}})
    assert spec.deletion_policy is DeletionPolicy.DELETE
    assert spec.deletion_policy.value == "Delete"
    assert spec.azure is None
    assert spec.gcp is None


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deletion_policy_values(policy: str) -> None:
    spec = ConnectionSpec.model_validate({"serviceAccountName": "app", "aws": {"role": "r"}, "deletionPolicy": policy})
    assert spec.deletion_policy.value == policy


@pytest.mark.parametrize("policy", ["delete", "Orphan", "", "RETAIN"])
def test_deletion_policy_rejects_other_values(policy: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate({"serviceAccountName": "app", "aws": {"role": "r"}, "deletionPolicy": policy})
    assert info.value.errors()[0]["loc"] == ("deletionPolicy",)


# --- string rules ----------------------------------------------------------------------------------------------------


def sa_spec(value: str) -> dict[str, Any]:
    return {"serviceAccountName": value, "aws": {"role": "r"}}


def role_spec(value: str) -> dict[str, Any]:
    return {"serviceAccountName": "app", "aws": {"role": value}}


def identity_spec(value: str) -> dict[str, Any]:
    return {"serviceAccountName": "app", "azure": {"identityName": value, "resourceGroup": "rg"}}


def group_spec(value: str) -> dict[str, Any]:
    return {"serviceAccountName": "app", "azure": {"identityName": "idn", "resourceGroup": value}}


def email_spec(value: str) -> dict[str, Any]:
    return {"serviceAccountName": "app", "gcp": {"serviceAccountEmail": value}}


SA_OK = ["a", "0", "app", "my-app", "app.v1", "a.b.c", "1a", "a1-b2.c3", "a" * 63, "a" * 64, "a" * 253]
SA_BAD = ["", "App", "-app", "app-", "app_x", "app..x", ".app", "app.", "my app", "app\n", "a" * 254, "app.-x"]


@pytest.mark.parametrize("value", SA_OK)
def test_service_account_name_accepted(value: str) -> None:
    assert ConnectionSpec.model_validate(sa_spec(value)).service_account_name == value


@pytest.mark.parametrize("value", SA_BAD)
def test_service_account_name_rejected(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate(sa_spec(value))
    assert [e["loc"] for e in info.value.errors()] == [("serviceAccountName",)]


ROLE_OK = [
    "r",
    "my-role",
    "Role_With+=,.@-chars",
    "a" * 64,
    "arn:aws:iam::123456789012:role/my-role",
    "arn:aws:iam::123456789012:role/a",
    "arn:aws:iam::123456789012:role/" + "a" * 64,
    "arn:aws:iam::123456789012:role/service-role/my-role",
    "arn:aws:iam::123456789012:role/path/to/deep/my-role",
    "arn:aws-cn:iam::123456789012:role/my-role",
    "arn:aws-cn:iam::123456789012:role/team/my-role",
    "arn:aws-us-gov:iam::123456789012:role/my-role",
    "arn:aws-iso:iam::123456789012:role/my-role",
    "arn:aws-iso-b:iam::123456789012:role/my-role",
]
ROLE_BAD = [
    "",
    "a" * 65,
    "my role",
    "my/role",
    "role!",
    "arn:aws:iam::12345678901:role/my-role",
    "arn:aws:iam::1234567890123:role/my-role",
    "arn:aws:iam::abcdefghijkl:role/my-role",
    "arn:aws:iam::123456789012:user/my-user",
    "arn:aws:iam::123456789012:role/",
    "arn:aws:iam::123456789012:role/" + "a" * 65,
    "arn:aws:iam::123456789012:role/path//my-role",
    "arn:aws:iam::123456789012:role/path/",
    "arn:aws-eu:iam::123456789012:role/my-role",
    "arn:aws-cn-north:iam::123456789012:role/my-role",
    "arn:aws:sts::123456789012:role/my-role",
    "arn:aws:iam:us-east-1:123456789012:role/my-role",
    "ARN:aws:iam::123456789012:role/my-role",
    "arn:aws:iam::123456789012:role/my-role\n",
]


@pytest.mark.parametrize("value", ROLE_OK)
def test_role_accepted(value: str) -> None:
    spec = ConnectionSpec.model_validate(role_spec(value))
    assert spec.aws is not None
    assert spec.aws.role == value


@pytest.mark.parametrize("value", ROLE_BAD)
def test_role_rejected(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate(role_spec(value))
    assert [e["loc"] for e in info.value.errors()] == [("aws", "role")]


IDENTITY_OK = ["abc", "my-identity", "My_Identity-1", "1ab", "A--", "a" * 128]
IDENTITY_BAD = ["", "ab", "-abc", "_abc", "my.identity", "my identity", "id/x", "a" * 129]


@pytest.mark.parametrize("value", IDENTITY_OK)
def test_azure_identity_name_accepted(value: str) -> None:
    spec = ConnectionSpec.model_validate(identity_spec(value))
    assert spec.azure is not None
    assert spec.azure.identity_name == value


@pytest.mark.parametrize("value", IDENTITY_BAD)
def test_azure_identity_name_rejected(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate(identity_spec(value))
    assert [e["loc"] for e in info.value.errors()] == [("azure", "identityName")]


GROUP_OK = ["r", "rg", "my-rg", "My.RG(prod)_1", "rg.x", "(rg)", "-", "_", "a" * 90, "." * 89 + "a"]
GROUP_BAD = ["", ".", "rg.", "my rg", "rg/x", "rg:x", "a" * 91]


@pytest.mark.parametrize("value", GROUP_OK)
def test_azure_resource_group_accepted(value: str) -> None:
    spec = ConnectionSpec.model_validate(group_spec(value))
    assert spec.azure is not None
    assert spec.azure.resource_group == value


@pytest.mark.parametrize("value", GROUP_BAD)
def test_azure_resource_group_rejected(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate(group_spec(value))
    assert [e["loc"] for e in info.value.errors()] == [("azure", "resourceGroup")]


EMAIL_OK = [
    "abcdef@p.iam.gserviceaccount.com",
    "my-sa-1@my-project.iam.gserviceaccount.com",
    "a" + "b" * 28 + "c@my-project.iam.gserviceaccount.com",
    "sa-123@example.com:my-project.iam.gserviceaccount.com",
    "abcdef@1project.iam.gserviceaccount.com",
]
EMAIL_BAD = [
    "",
    "abcde@p.iam.gserviceaccount.com",  # 5 characters
    "a" + "b" * 29 + "c@p.iam.gserviceaccount.com",  # 31 characters
    "1abcdef@p.iam.gserviceaccount.com",
    "-abcdef@p.iam.gserviceaccount.com",
    "abcdef-@p.iam.gserviceaccount.com",
    "Abcdef@p.iam.gserviceaccount.com",
    "abc_def@p.iam.gserviceaccount.com",
    "abcdef@P.iam.gserviceaccount.com",
    "abcdef@-p.iam.gserviceaccount.com",
    "abcdef@p.iam.gserviceaccount.org",
    "abcdef@p.gserviceaccount.com",
    "abcdef@p.iamXgserviceaccount.com",
    "abcdef@p.iam.gserviceaccountXcom",
    "abcdef@.iam.gserviceaccount.com",
    "abcdef@p.iam.gserviceaccount.com.evil",
    "abcdef.p.iam.gserviceaccount.com",
    "abcdef@p.iam.gserviceaccount.com\n",
]


@pytest.mark.parametrize("value", EMAIL_OK)
def test_gcp_email_accepted(value: str) -> None:
    spec = ConnectionSpec.model_validate(email_spec(value))
    assert spec.gcp is not None
    assert spec.gcp.service_account_email == value


@pytest.mark.parametrize("value", EMAIL_BAD)
def test_gcp_email_rejected(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate(email_spec(value))
    assert [e["loc"] for e in info.value.errors()] == [("gcp", "serviceAccountEmail")]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (sa_spec("Bad_Name"), "serviceAccountName must be a DNS-1123 subdomain"),
        (role_spec("bad role"), "role must be an IAM role name"),
        (identity_spec("-bad"), "identityName must be 3-128 letters"),
        (group_spec("bad."), "resourceGroup must be 1-90 letters"),
        (email_spec("bad@example.com"), "serviceAccountEmail must be an IAM service account email"),
    ],
)
def test_rule_violation_reports_the_rule_message(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate(spec)
    [error] = info.value.errors()
    assert error["type"] == "value_error"
    assert fragment in error["msg"]


def test_rules_are_checked_through_from_body_too() -> None:
    with pytest.raises(ValidationError) as info:
        ServiceIdentityConnection.from_body(body({"serviceAccountName": "app", "aws": {"role": "no spaces"}}))
    assert info.value.errors()[0]["loc"] == ("spec", "aws", "role")


# --- python regexes == CEL rules in the generated CRD ----------------------------------------------------------------

MATCHES = re.compile(r"^self\.matches\(r'(?P<regex>.*)'\)$", re.DOTALL)

EXPECTED_REGEX = {
    "spec.serviceAccountName": validation.DNS1123_SUBDOMAIN,
    "spec.aws.role": validation.IAM_ROLE,
    "spec.azure.identityName": validation.AZURE_IDENTITY_NAME,
    "spec.azure.resourceGroup": validation.AZURE_RESOURCE_GROUP,
    "spec.gcp.serviceAccountEmail": validation.GCP_SERVICE_ACCOUNT_EMAIL,
}

BAD_VALUE_FOR = {
    "spec.serviceAccountName": sa_spec("Bad_Name"),
    "spec.aws.role": role_spec("bad role"),
    "spec.azure.identityName": identity_spec("-bad"),
    "spec.azure.resourceGroup": group_spec("bad."),
    "spec.gcp.serviceAccountEmail": email_spec("bad@example.com"),
}


def _validations(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, str]]]:
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule
    for name, sub in schema.get("properties", {}).items():
        yield from _validations(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _validations(schema["items"], f"{path}[]")


def _crd_rules() -> list[tuple[str, dict[str, str]]]:
    root = connection_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return list(_validations(root["properties"]["spec"], "spec"))


def _matches_rules() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for path, rule in _crd_rules():
        found = MATCHES.match(rule["rule"])
        if found:
            assert path not in out, f"two matches() rules on {path}"
            out[path] = (found["regex"], rule["message"])
    return out


def test_every_regex_field_has_exactly_one_matches_rule() -> None:
    assert set(_matches_rules()) == set(EXPECTED_REGEX)


@pytest.mark.parametrize("path", sorted(EXPECTED_REGEX))
def test_cel_rule_carries_the_python_regex_verbatim(path: str) -> None:
    regex, _ = _matches_rules()[path]
    assert regex == EXPECTED_REGEX[path]
    assert "'" not in regex  # would end the CEL raw string early


@pytest.mark.parametrize("path", sorted(EXPECTED_REGEX))
def test_cel_message_is_the_python_error_message(path: str) -> None:
    _, message = _matches_rules()[path]
    with pytest.raises(ValidationError) as info:
        ConnectionSpec.model_validate(BAD_VALUE_FOR[path])
    [error] = info.value.errors()
    assert str(error["ctx"]["error"]) == message


@pytest.mark.parametrize("path", sorted(EXPECTED_REGEX))
def test_cel_regex_compiles_and_is_anchored(path: str) -> None:
    regex, _ = _matches_rules()[path]
    re.compile(regex)
    # CEL's matches() is a search, not a full match: both anchors are needed for the two to agree
    assert regex.startswith("^")
    assert regex.endswith("$")


def test_spec_level_and_immutability_rules_are_in_the_crd() -> None:
    rules = _crd_rules()
    spec_rules = [rule for path, rule in rules if path == "spec"]
    assert spec_rules == [EXACTLY_ONE_PROVIDER, PROVIDER_IMMUTABLE]
    sa_rules = [rule["rule"] for path, rule in rules if path == "spec.serviceAccountName"]
    assert "self == oldSelf" in sa_rules
