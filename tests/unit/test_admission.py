"""The webhook's answers, called directly: operator patches pass, invalid or disallowed specs are refused."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from porter_identity.api.policy import Policy
from porter_identity.config import Settings
from porter_identity.handlers.admission import validate_connection, validate_roleset
from porter_identity.reconcile.guard import OwnIdentities

POLICY = Policy.model_validate({"rules": [{"namespaces": ["shop"], "aws": {"roles": ["shop-*"]}}]})


FINALIZER = "identity.porter.run/finalizer"


def memo(policy: Policy | None = POLICY, live: str | None = None, **settings: Any) -> kopf.Memo:
    """`live`: the annotation the API server has now (the webhook reads it before refusing; tests/e2e use a real
    one, see test_lifecycle's one-apply test)."""
    out = kopf.Memo()
    out.settings = Settings(aws_account_id="123456789012", **settings)
    out.policy = policy
    out.live_annotations = lambda namespace: live
    out.own_identities = OwnIdentities.of(out.settings, {})
    out.finalizer = FINALIZER
    return out


def sic(spec: dict[str, Any], **meta: Any) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "c", "namespace": "shop", **meta}, "spec": spec})


ALLOWED = {"serviceAccountName": "app", "aws": {"role": "shop-api"}}
DENIED = {"serviceAccountName": "app", "aws": {"role": "billing-api"}}


def check(
    operation: str,
    new: kopf.Body,
    old: kopf.Body | None = None,
    annotation: str | None = None,
    namespace: str = "shop",
    **settings: Any,
) -> None:
    index = {namespace: [annotation]} if annotation else {}
    validate_connection(
        operation=operation, old=old, new=new, namespace=namespace, memo=memo(**settings), allowed_identities=index
    )


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


DELETING = {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["identity.porter.run/finalizer"]}


def test_spec_changes_on_an_object_being_deleted_are_refused() -> None:
    """Even to a spec the rules allow: the link of the old spec is being removed, the new one would never be made."""
    moved = {**ALLOWED, "aws": {"role": "shop-other"}}
    with pytest.raises(kopf.AdmissionError) as err:
        check("UPDATE", sic(moved, **DELETING), old=sic(ALLOWED, **DELETING))
    assert err.value.code == 422
    assert str(err.value) == (
        "spec cannot change while the ServiceIdentityConnection is being deleted (metadata.deletionTimestamp is "
        "set): wait until it is gone, then create it again"
    )
    # Removing the finalizer (metadata only) still passes.
    check("UPDATE", sic(ALLOWED, deletionTimestamp=DELETING["deletionTimestamp"]), old=sic(ALLOWED, **DELETING))


def test_roleset_spec_changes_while_deleting_are_refused() -> None:
    spec = {
        "accountId": "123456789012",
        "region": "us-east-1",
        "clusterName": "prod",
        "managementPrincipalArn": "arn:aws:iam::123456789012:root",
        "access": {
            "roleArn": "arn:aws:iam::123456789012:role/porter-access-manager",
            "externalIdSecretRef": {"namespace": "porter-system", "name": "x"},
        },
    }
    old = kopf.Body({"metadata": {"name": "r", **DELETING}, "spec": spec})
    new = kopf.Body({"metadata": {"name": "r", **DELETING}, "spec": {**spec, "region": "eu-west-1"}})
    with pytest.raises(kopf.AdmissionError) as err:
        validate_roleset(operation="UPDATE", old=old, new=new, memo=memo())
    assert err.value.code == 422 and "while the PorterRoleSet is being deleted" in str(err.value)


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "porter-system"])
def test_connections_in_protected_namespaces_are_forbidden_whatever_the_rules(namespace: str) -> None:
    """The ClusterRole patches ServiceAccounts and posts Events everywhere: the operator keeps out of these."""
    with pytest.raises(kopf.AdmissionError) as err:
        check("CREATE", sic(ALLOWED), annotation="aws:*", namespace=namespace, operator_namespace="porter-system")
    assert err.value.code == 403
    assert f"connections may not live in namespace {namespace}" in str(err.value)


def test_the_operator_namespace_can_be_allowed() -> None:
    check(
        "CREATE",
        sic(ALLOWED),
        annotation="aws:*",
        namespace="porter-system",
        operator_namespace="porter-system",
        allow_operator_namespace=True,
    )


@pytest.mark.parametrize(
    ("spec", "settings"),
    [
        ({"aws": {"role": "shop-api"}}, {"operator_aws_role_arn": "arn:aws:iam::123456789012:role/ops/Shop-API"}),
        (
            {"gcp": {"serviceAccountEmail": "shop-op@p-roj.iam.gserviceaccount.com"}},
            {"operator_gcp_service_account": "shop-op@p-roj.iam.gserviceaccount.com"},
        ),
    ],
    ids=["aws", "gcp"],
)
def test_the_operators_own_identity_is_forbidden_even_when_a_rule_allows_it(
    spec: dict[str, Any], settings: dict[str, str]
) -> None:
    body = sic({"serviceAccountName": "app", **spec})
    check("CREATE", body, annotation="aws:* gcp:*")  # allowed while it is not the operator's
    with pytest.raises(kopf.AdmissionError) as err:
        check("CREATE", body, annotation="aws:* gcp:*", **settings)
    assert err.value.code == 403 and "is the operator's own identity" in str(err.value)


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


def test_deletion_policy_may_still_change_while_deleting() -> None:
    """Switching to Retain is the way out of a delete that cannot finish: the webhook lets exactly that through."""
    retained = {**ALLOWED, "deletionPolicy": "Retain"}
    check("UPDATE", sic(retained, **DELETING), old=sic(ALLOWED, **DELETING))


def test_an_allowed_create_and_bookkeeping_patches_are_answered_without_a_read() -> None:
    """Answered on the event loop, the spec parsed once; only a refusal (or a budget, or an Azure client id) needs a
    read, and says so instead of reading there (the webhook then checks again on threads of its own)."""
    from porter_identity.handlers.admission import NeedsRead

    allowed = {"operation": "CREATE", "old": None, "new": sic(ALLOWED), "namespace": "shop", "memo": memo()}
    validate_connection(**allowed, allowed_identities={}, may_read=False)
    patched = {"operation": "UPDATE", "old": sic(DENIED), "new": sic(DENIED), "namespace": "shop", "memo": memo()}
    validate_connection(**patched, allowed_identities={}, may_read=False)
    refused = {"operation": "CREATE", "old": None, "new": sic(DENIED), "namespace": "shop", "memo": memo()}
    with pytest.raises(NeedsRead):
        validate_connection(**refused, allowed_identities={}, may_read=False)
    with pytest.raises(kopf.AdmissionError, match="not allowed by policy"):
        validate_connection(**refused, allowed_identities={})


# --- what a connection may keep is the cluster admin's to grant ---------------------------------------------------

PAUSE = "identity.porter.run/reconcile-policy"


@pytest.mark.parametrize(
    ("spec", "annotations", "refused"),
    [
        ({**ALLOWED, "deletionPolicy": "Retain"}, {}, None),  # Retain is granted by default
        (ALLOWED, {PAUSE: "skip"}, "Skip"),
        (ALLOWED, {PAUSE: "detach-on-delete"}, "DetachOnDelete"),
        (ALLOWED, {PAUSE: "whatever"}, "Skip"),  # an unknown value pauses, so it is a skip
        (ALLOWED, {PAUSE: "manage"}, None),
    ],
)
def test_keeping_a_link_is_refused_unless_the_rule_grants_it(
    spec: dict[str, Any], annotations: dict[str, str], refused: str | None
) -> None:
    new = sic(spec, annotations=annotations)
    if refused is None:
        check("CREATE", new)
        return
    with pytest.raises(kopf.AdmissionError) as err:
        check("CREATE", new)
    assert err.value.code == 403
    assert f"{refused} is not granted by rule rules[0] (it grants Retain)" in str(err.value)


def test_a_rule_that_grants_nothing_refuses_retain_and_one_that_grants_skip_admits_it() -> None:
    strict = Policy.model_validate({"rules": [{"namespaces": ["shop"], "aws": {"roles": ["shop-*"]}, "keep": []}]})
    trusted = Policy.model_validate(
        {"rules": [{"name": "ops", "namespaces": ["shop"], "aws": {"roles": ["shop-*"]}, "keep": ["Skip"]}]}
    )
    with pytest.raises(kopf.AdmissionError, match="Retain is not granted by rule rules\\[0\\] \\(it grants nothing\\)"):
        check("CREATE", sic({**ALLOWED, "deletionPolicy": "Retain"}), policy=strict)
    check("CREATE", sic(ALLOWED, annotations={PAUSE: "skip"}), policy=trusted)


def test_a_pause_added_by_a_metadata_only_update_is_checked_and_a_namespace_annotation_may_grant_it() -> None:
    before = sic(ALLOWED)
    paused = sic(ALLOWED, annotations={PAUSE: "skip"})
    with pytest.raises(kopf.AdmissionError, match="Skip is not granted"):
        check("UPDATE", paused, old=before)
    check("UPDATE", sic(ALLOWED, labels={"team": "a"}), old=before)  # other metadata still passes untouched
    check("UPDATE", paused, old=before, annotation="aws:shop-* keep:Skip", namespace="shop", policy=None)
