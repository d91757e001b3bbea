"""reconcile/drift.py: what the sweep calls drift, what it calls an orphan, and what it reads to know."""

from __future__ import annotations

from typing import Any

import pytest
from google.iam.v1 import policy_pb2
from google.type import expr_pb2

from porter_identity.clouds.aws import drift as aws_drift
from porter_identity.clouds.azure import drift as azure_drift
from porter_identity.clouds.azure.plan import credential_name, desired
from porter_identity.clouds.gcp import drift as gcp_drift
from porter_identity.model import Association, AssociationSummary, Credential
from porter_identity.reconcile import drift
from porter_identity.reconcile.drift import Linked, Orphan

ISSUER = "https://oidc.example/cluster"
POOL = "proj.svc.id.goog"
ROLE = "arn:aws:iam::123456789012:role/app"


def linked(name: str = "c", *, ready: bool = True, settled: bool = True, reason: str = "Bound", **kw: Any) -> Linked:
    return Linked(
        uid=kw.pop("uid", f"uid-{name}"),
        namespace=kw.pop("namespace", "ns"),
        name=name,
        service_account=kw.pop("service_account", name),
        ready=ready,
        reason=reason,
        settled=settled,
        **kw,
    )


def body(**over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metadata": {"name": "c", "namespace": "ns", "uid": "u1", "generation": 2},
        "spec": {"serviceAccountName": "sa", "aws": {"role": "app"}},
        "status": {
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Bound"}],
            "aws": {"associationId": "a-1", "roleArn": ROLE},
            "kopf": {"progress": {}},
        },
    }
    for key, value in over.items():
        out[key] = {**out[key], **value}
    return out


# --- the index entry --------------------------------------------------------------------------------------------


def test_entry_of_a_ready_aws_connection() -> None:
    group, c = drift.entry(body())  # type: ignore[misc]
    assert group == ("aws",)
    assert c == Linked("u1", "ns", "c", "sa", True, "Bound", True, "a-1", ROLE)
    assert c.checked and not c.rechecked


@pytest.mark.parametrize(
    ("spec", "group"),
    [
        ({"azure": {"identityName": "id", "resourceGroup": "rg"}}, ("azure", "rg", "id")),
        ({"gcp": {"serviceAccountEmail": "x@p.iam.gserviceaccount.com"}}, ("gcp", "x@p.iam.gserviceaccount.com")),
    ],
)
def test_entry_groups_by_what_one_bulk_read_covers(spec: dict[str, Any], group: tuple[str, ...]) -> None:
    raw = body()
    raw["spec"] = {"serviceAccountName": "sa", **spec}
    raw["status"][group[0]] = {"credentialName": "porter-x", "member": "m"}
    found = drift.entry(raw)
    assert found is not None and found[0] == group
    assert found[1].recorded == ("porter-x" if group[0] == "azure" else "m") and found[1].role_arn is None


def test_entry_without_provider_is_none() -> None:
    raw = body()
    raw["spec"] = {"serviceAccountName": "sa"}
    assert drift.entry(raw) is None


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"generation": 3}},  # a spec change no run has written a status for yet
        {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}},  # being deleted
    ],
)
def test_a_connection_a_run_is_due_for_is_not_settled(change: dict[str, Any]) -> None:
    found = drift.entry(body(**change))
    assert found is not None and not found[1].settled and not found[1].checked


def test_a_connection_without_status_is_not_settled() -> None:
    raw = body()
    raw["status"] = {}
    found = drift.entry(raw)
    assert found is not None and not found[1].settled and not found[1].ready and found[1].recorded is None


@pytest.mark.parametrize(
    ("reason", "rechecked"),
    [("RoleNotFound", False), ("Conflict", False), ("CloudUnavailable", True), ("InvalidSpec", False), ("", False)],
)
def test_only_retries_left_by_runs_outside_kopf_are_rechecked(reason: str, rechecked: bool) -> None:
    assert linked(ready=False, reason=reason).rechecked is rechecked
    assert not linked(ready=False, reason=reason, settled=False).rechecked


# --- AWS --------------------------------------------------------------------------------------------------------


def summary(i: str, sa: str = "c", ns: str = "ns") -> AssociationSummary:
    return AssociationSummary(i, ns, sa)


def association(i: str, role: str = ROLE, **tags: str) -> Association:
    return Association(i, f"arn:{i}", "ns", "c", role, dict(tags))


def test_rotation_walks_every_id_and_wraps() -> None:
    ids = ["a", "b", "c", "d", "e"]
    seen, cursor = [], 0
    for _ in range(3):
        window, cursor = aws_drift.rotation(ids, cursor, 2)
        seen += window
    assert seen == ["a", "b", "c", "d", "e", "a"]
    assert aws_drift.rotation(ids, 7, 10) == (["c", "d", "e", "a", "b"], 2)  # no id twice in one window
    assert aws_drift.rotation([], 3, 5) == ([], 0)
    assert aws_drift.rotation(ids, 1, 0) == ([], 0)


def test_window_ids_are_checked_connections_only() -> None:
    conns = [
        linked("x", recorded="a-2"),
        linked("y", recorded="a-1"),
        linked("z", recorded="a-3", settled=False),
        linked("w", ready=False, reason="RoleNotFound", recorded="a-4"),
    ]
    assert aws_drift.window_ids(conns) == ["a-1", "a-2"]


def test_describe_unknown_ids_once_then_the_window() -> None:
    conns = [linked("x", recorded="a-1"), linked("y", recorded="a-2")]
    listed = [summary("a-1", "x"), summary("a-2", "y"), summary("f-1"), summary("f-2")]
    known = {"f-2": association("f-2")}
    # f-1 unknown; f-2 already known; a-2 in the window; a-9 in the window but no longer listed
    assert aws_drift.to_describe(conns, listed, known, ["a-2", "a-9"]) == ["f-1", "a-2"]


def test_idle_cluster_has_no_drift_and_no_orphan() -> None:
    conns = [linked("x", recorded="a-1", role_arn=ROLE)]
    described = {"a-1": association("a-1", **{"porter.run/managed": "true", "porter.run/connection-uid": "uid-x"})}
    assert aws_drift.findings("k", conns, [summary("a-1", "x")], described) == drift.Findings()


def test_deleted_association_is_drift() -> None:
    c = linked("x", recorded="a-1", role_arn=ROLE)
    found = aws_drift.findings("k", [c], [], {})
    assert [d.connection for d in found.drifts] == [c] and "a-1 was deleted" in found.drifts[0].message


def test_ready_without_a_recorded_association_is_drift() -> None:
    [found] = aws_drift.findings("k", [linked("x")], [summary("a-1", "x")], {}).drifts
    assert found.message == "status records no EKS Pod Identity association"


def test_changed_role_is_drift_only_when_described() -> None:
    c = linked("x", recorded="a-1", role_arn=ROLE)
    listed = [summary("a-1", "x")]
    assert aws_drift.findings("k", [c], listed, {}).drifts == ()  # not in this sweep's window
    found = aws_drift.findings("k", [c], listed, {"a-1": association("a-1", role="arn:aws:iam::1:role/other")})
    assert "changed to role arn:aws:iam::1:role/other" in found.drifts[0].message


def test_connections_kopf_is_busy_with_are_not_drift() -> None:
    busy = linked("x", recorded="a-1", role_arn=ROLE, settled=False)
    assert aws_drift.findings("k", [busy], [], {}).drifts == ()


def test_sweep_degraded_connections_are_rechecked() -> None:
    """Stalls have their own recheck timer; a retry a sweep's run left behind has nobody else to retry it."""
    c = linked("x", ready=False, reason="CloudUnavailable")
    assert [d.message for d in aws_drift.findings("k", [c], [], {}).drifts] == ["rechecking after CloudUnavailable"]
    stalled = linked("y", ready=False, reason="RoleNotFound")
    assert aws_drift.findings("k", [stalled], [], {}).drifts == ()


def test_tagged_association_without_connection_is_an_orphan() -> None:
    tags = {"porter.run/managed": "true", "porter.run/connection-uid": "gone"}
    found = aws_drift.findings("k", [], [summary("a-7", "old")], {"a-7": association("a-7", **tags)})
    assert found.orphans == (Orphan("aws", "a-7", "k", "ns", "old", "gone"),)


@pytest.mark.parametrize(
    "tags",
    [
        {},  # not ours
        {"porter.run/managed": "false", "porter.run/connection-uid": "gone"},
        {"porter.run/managed": "true", "porter.run/connection-uid": "uid-live"},  # a live connection, any state
        {"porter.run/managed": "true", "porter.run/roleset-uid": "rs", "porter.run/owner": "prod"},  # a PorterRoleSet's
    ],
)
def test_foreign_or_claimed_associations_are_not_orphans(tags: dict[str, str]) -> None:
    live = linked("live", settled=False, ready=False, reason="")  # e.g. created, status not written yet
    found = aws_drift.findings("k", [live], [summary("a-7")], {"a-7": association("a-7", **tags)})
    assert found.orphans == ()


OURS = {"porter.run/managed": "true", "porter.run/connection-uid": "uid-b"}


def test_an_association_tagged_for_a_connection_whose_status_lost_it_runs_that_connection() -> None:
    """Two connections for one ServiceAccount: the woken one linked, then a stale status write said Conflict."""
    b = linked("b", ready=False, reason="Conflict")
    found = aws_drift.findings("k", [b], [summary("a-7", "sa")], {"a-7": association("a-7", **OURS)})
    assert [(d.connection, d.message, d.corrects) for d in found.drifts] == [
        (b, "EKS Pod Identity association a-7 carries its uid, its status records none", False)
    ]
    assert found.orphans == ()


@pytest.mark.parametrize(
    "b",
    [
        linked("b", ready=False, reason="Conflict", settled=False),  # kopf is on it
        linked("b", ready=False, reason="Conflict", paused=True),  # reconcile-policy skip
        linked("b", ready=False, reason="CloudUnavailable"),  # rechecked already: one run, not two
        linked("b", recorded="a-7", role_arn=ROLE),  # recorded: nothing lost
    ],
)
def test_an_association_tagged_for_a_connection_is_not_run_again_otherwise(b: Linked) -> None:
    found = aws_drift.findings("k", [b], [summary("a-7", "sa")], {"a-7": association("a-7", **OURS)})
    assert [d.message for d in found.drifts if "carries its uid" in d.message] == []


def test_undescribed_association_is_not_an_orphan() -> None:
    assert aws_drift.findings("k", [], [summary("a-7")], {}).orphans == ()


def test_prune_forgets_gone_and_recorded_ids() -> None:
    known = {i: association(i) for i in ("a-1", "a-2", "a-3")}
    pruned = aws_drift.prune(known, [summary("a-1"), summary("a-2")], [linked("x", recorded="a-2")])
    assert list(pruned) == ["a-1"]


# --- Azure ------------------------------------------------------------------------------------------------------


def cred(ns: str, sa: str, **over: Any) -> Credential:
    wanted = desired(ISSUER, ns, sa)
    return Credential(
        name=over.get("name", wanted.name),
        issuer=over.get("issuer", wanted.issuer),
        subject=over.get("subject", wanted.subject),
        audiences=over.get("audiences", wanted.audiences),
    )


def test_azure_in_sync_is_quiet() -> None:
    assert azure_drift.findings("rg/id", ISSUER, [linked("a")], [cred("ns", "a")]) == drift.Findings()


def test_azure_names_are_compared_case_insensitively() -> None:
    upper = cred("ns", "a", name=credential_name(ISSUER, "ns", "a").upper())
    assert azure_drift.findings("rg/id", ISSUER, [linked("a")], [upper]).drifts == ()


@pytest.mark.parametrize(
    ("listed", "words"),
    [
        ([], "was deleted outside"),
        (None, "was deleted outside"),  # the identity itself is gone
        (
            [cred("ns", "a", subject="system:serviceaccount:evil:x")],
            "changed outside (subject system:serviceaccount:evil",
        ),
        ([cred("ns", "a", issuer="https://other")], "changed outside"),
        ([cred("ns", "a", audiences=("api://other",))], "changed outside"),
    ],
)
def test_azure_deleted_or_changed_is_drift(listed: list[Credential] | None, words: str) -> None:
    [found] = azure_drift.findings("rg/id", ISSUER, [linked("a")], listed).drifts
    assert words in found.message


def test_azure_orphan_is_our_name_and_issuer_without_connection() -> None:
    listed = [cred("ns", "a"), cred("ns", "old")]
    found = azure_drift.findings("rg/id", ISSUER, [linked("a")], listed)
    assert found.orphans == (Orphan("azure", credential_name(ISSUER, "ns", "old"), "rg/id", "ns", "old"),)


@pytest.mark.parametrize(
    "other",
    [
        cred("ns", "old", issuer="https://another-cluster"),  # another cluster's operator federates it too
        cred("ns", "old", name="handmade"),  # not our naming scheme
        cred("ns", "old", subject="repo:org/app:ref:refs/heads/main"),  # not a Kubernetes subject
        cred("ns", "x", name=credential_name(ISSUER, "ns", "y"), subject="system:serviceaccount:ns:x"),  # name is for y
    ],
)
def test_azure_credentials_not_ours_are_never_orphans(other: Credential) -> None:
    assert azure_drift.findings("rg/id", ISSUER, [], [other]).orphans == ()


def test_azure_credential_of_a_connection_in_any_state_is_not_an_orphan() -> None:
    pending = linked("a", ready=False, settled=False, reason="")
    assert azure_drift.findings("rg/id", ISSUER, [pending], [cred("ns", "a")]) == drift.Findings()


# --- GCP --------------------------------------------------------------------------------------------------------


def member(sa: str) -> str:
    return f"serviceAccount:{POOL}[ns/{sa}]"


def test_bound_members_ignores_conditional_and_other_roles() -> None:
    policy = policy_pb2.Policy()
    policy.bindings.add(role="roles/iam.workloadIdentityUser", members=[member("a")])
    policy.bindings.add(role="roles/viewer", members=[member("b")])
    conditional = policy.bindings.add(role="roles/iam.workloadIdentityUser", members=[member("c")])
    conditional.condition.CopyFrom(expr_pb2.Expr(expression="true"))
    assert gcp_drift.bound_members(policy) == {member("a")}


def test_gcp_missing_member_is_drift_and_present_is_quiet() -> None:
    conns = [linked("a"), linked("b"), linked("c", settled=False)]
    found = gcp_drift.findings("x@p", POOL, conns, {member("a")})
    assert [d.connection.name for d in found.drifts] == ["b"]
    assert gcp_drift.findings("x@p", POOL, conns, None).drifts[0].connection.name == "a"  # account gone


def test_gcp_never_reports_orphans() -> None:
    assert gcp_drift.findings("x@p", POOL, [], {member("stranger")}).orphans == ()


# --- confirmation against the API server -------------------------------------------------------------------------


def test_aws_orphan_is_claimed_only_by_its_uid() -> None:
    orphan = Orphan("aws", "a-1", "k", "ns", "sa", "u1")
    assert drift.still_claimed(orphan, ("aws",), [(("aws",), linked("x", uid="u1"))])
    # a new connection for the same ServiceAccount does not claim an older connection's association
    assert not drift.still_claimed(orphan, ("aws",), [(("aws",), linked("sa", uid="u2"))])


def test_azure_orphan_is_claimed_by_a_connection_on_that_identity_and_service_account() -> None:
    orphan = Orphan("azure", "porter-x", "rg/id", "ns", "sa")
    group = ("azure", "rg", "id")
    assert drift.still_claimed(orphan, group, [(group, linked("c", service_account="sa"))])
    assert not drift.still_claimed(orphan, group, [(("azure", "rg", "other"), linked("c", service_account="sa"))])
    assert not drift.still_claimed(orphan, group, [(group, linked("c", service_account="other"))])


def test_azure_identities_named_in_another_case_are_one_group() -> None:
    """ARM names are case-insensitive: RG/READER in one namespace and rg/reader in another are one identity, read
    once, and neither namespace's credential looks like an orphan to the other's group."""
    upper = body(
        spec={"serviceAccountName": "a", "aws": None, "azure": {"identityName": "READER", "resourceGroup": "RG"}}
    )
    lower = body(
        spec={"serviceAccountName": "b", "aws": None, "azure": {"identityName": "reader", "resourceGroup": "rg"}}
    )
    upper["spec"].pop("aws")
    lower["spec"].pop("aws")
    first, second = drift.entry(upper), drift.entry(lower)
    assert first is not None and second is not None and first[0] == second[0] == ("azure", "rg", "reader")
    both = [linked("a", namespace="one", service_account="a"), linked("b", namespace="two", service_account="b")]
    listed = [cred("one", "a"), cred("two", "b")]
    assert azure_drift.findings("rg/reader", ISSUER, both, listed).orphans == ()


def test_legacy_credential_names_are_ours_and_other_issuers_are_not() -> None:
    from porter_identity.clouds.azure import plan as azure

    legacy = cred("ns", "old", name=azure.legacy_credential_name("ns", "old"))
    assert azure.ours(legacy, ISSUER) == ("ns", "old")
    assert azure.ours(cred("ns", "old", issuer="https://another-cluster"), ISSUER) is None
