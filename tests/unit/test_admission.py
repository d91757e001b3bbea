"""The webhook's answers, called directly: operator patches pass, invalid or disallowed specs are refused."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from porter_identity.api.policy import Policy
from porter_identity.config import Settings
from porter_identity.handlers.admission import validate_connection, validate_roleset

POLICY = Policy.model_validate({"rules": [{"namespaces": ["shop"], "aws": {"roles": ["shop-*"]}}]})


def memo(policy: Policy | None = POLICY, live: str | None = None) -> kopf.Memo:
    """`live`: the annotation the API server has now (the webhook reads it before refusing; tests/e2e use a real
    one, see test_security's one-apply test)."""
    out = kopf.Memo()
    out.settings = Settings(aws_account_id="123456789012")
    out.policy = policy
    out.live_annotations = lambda namespace: live
    return out


def sic(spec: dict[str, Any], **meta: Any) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "c", "namespace": "shop", **meta}, "spec": spec})


ALLOWED = {"serviceAccountName": "app", "aws": {"role": "shop-api"}}
DENIED = {"serviceAccountName": "app", "aws": {"role": "billing-api"}}


def check(operation: str, new: kopf.Body, old: kopf.Body | None = None, annotation: str | None = None) -> None:
    index = {"shop": [annotation]} if annotation else {}
    validate_connection(operation=operation, old=old, new=new, namespace="shop", memo=memo(), allowed_identities=index)


def test_allowed_create_passes() -> None:
    check("CREATE", sic(ALLOWED))


def test_disallowed_create_is_forbidden_with_the_reason() -> None:
    with pytest.raises(kopf.AdmissionError) as err:
        check("CREATE", sic(DENIED))
    assert err.value.code == 403
    assert "rules[0] cover namespace shop but do not allow aws IAM role billing-api" in str(err.value)


def test_the_namespace_annotation_from_the_index_allows() -> None:
    check("CREATE", sic(DENIED), annotation="aws:billing-*")


def test_metadata_only_updates_and_deletions_always_pass() -> None:
    """The operator's finalizer and status patches on an object the rules no longer allow must go through."""
    check("UPDATE", sic(DENIED, finalizers=["identity.porter.run/finalizer"]), old=sic(DENIED))
    check("UPDATE", sic(DENIED, deletionTimestamp="2026-01-01T00:00:00Z"), old=sic(DENIED))


def test_invalid_spec_is_unprocessable_with_the_field() -> None:
    with pytest.raises(kopf.AdmissionError) as err:
        check("CREATE", sic({"serviceAccountName": "App", "aws": {"role": "shop-api"}}))
    assert err.value.code == 422 and str(err.value).startswith("spec.serviceAccountName:")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"serviceAccountName": "other"}, "spec.serviceAccountName is immutable"),
        ({"aws": None, "gcp": {"serviceAccountEmail": "a-b-c-d@p-roj.iam.gserviceaccount.com"}}, "cannot change"),
    ],
)
def test_immutable_fields(change: dict[str, Any], message: str) -> None:
    new = {k: v for k, v in {**ALLOWED, **change}.items() if v is not None}
    with pytest.raises(kopf.AdmissionError) as err:
        check("UPDATE", sic(new), old=sic(ALLOWED))
    assert message in str(err.value)


def test_roleset_for_another_account_is_forbidden() -> None:
    spec = {
        "accountId": "999999999999",
        "region": "us-east-1",
        "clusterName": "prod",
        "managementPrincipalArn": "arn:aws:iam::999999999999:root",
        "access": {
            "roleArn": "arn:aws:iam::999999999999:role/porter-access-manager",
            "externalIdSecretRef": {"namespace": "porter-system", "name": "x"},
        },
    }
    with pytest.raises(kopf.AdmissionError) as err:
        validate_roleset(
            operation="CREATE", old=None, new=kopf.Body({"metadata": {"name": "r"}, "spec": spec}), memo=memo()
        )
    assert err.value.code == 403 and "is not the configured account 123456789012" in str(err.value)
    # No configured account: no PorterRoleSet at all (the chart's schema asks for config.awsAccountId).
    with pytest.raises(kopf.AdmissionError) as err:
        validate_roleset(
            operation="CREATE",
            old=None,
            new=kopf.Body({"metadata": {"name": "r"}, "spec": spec}),
            memo=kopf.Memo(settings=Settings(), policy=None, live_annotations=lambda namespace: None),
        )
    assert err.value.code == 403 and "no AWS account configured (Helm value config.awsAccountId" in str(err.value)


def test_a_namespace_the_index_has_not_seen_yet_is_read_before_refusing() -> None:
    """One apply of a Namespace with its connection: the index lags, the API server does not."""
    validate_connection(
        operation="CREATE",
        old=None,
        new=sic(DENIED),
        namespace="shop",
        memo=memo(policy=None, live="aws:billing-*"),
        allowed_identities={},
    )
    with pytest.raises(kopf.AdmissionError, match="not allowed by policy"):
        validate_connection(
            operation="CREATE",
            old=None,
            new=sic(DENIED),
            namespace="shop",
            memo=memo(policy=None, live="aws:shop-*"),
            allowed_identities={},
        )
