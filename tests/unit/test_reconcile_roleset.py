"""PorterRoleSet planning without I/O: policy layout under IAM's quotas, document comparison, digests and steps."""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any, get_args

import pytest

from porter_identity.api.roleset import PresetName, RoleSetSpec, TakeOver
from porter_identity.iam.desired import desired_roles
from porter_identity.iam.policy import VERSION, compact, document, size
from porter_identity.iam.presets import ACCOUNT_PLACEHOLDER, PRESETS, S3_PRESET, statements_for
from porter_identity.model import ManagedPolicy, ObservedRole
from porter_identity.reconcile.roleset import (
    CREATED_TAG,
    INLINE_LIMIT,
    INLINE_POLICY,
    MANAGED_LIMIT,
    MANAGED_PER_ROLE,
    MANAGED_TAG,
    OWNER_TAG,
    REDACTED,
    TRUST_LIMIT,
    DesiredRole,
    Kind,
    Layout,
    Step,
    TooLarge,
    account_refusal,
    canonical,
    created_by,
    digest,
    layout,
    pack,
    plan_role,
    redact,
    same,
)

ACCOUNT = "123456789012"
MGMT = "arn:aws:iam::210987654321:role/CAPIManagement"
EXTERNAL_ID = "secret-external-id-XYZ"  # not hex: it cannot appear inside a digest by chance
OWNER = "prod-account"
UID = "uid-1234"
EMPTY_DOC = size(document([]))

ALL_PRESETS = [name for name in PRESETS if name != S3_PRESET]


# --- helpers ---------------------------------------------------------------------------------------------------------


def stmt(sid: str, resource: str = "*", actions: tuple[str, ...] = ("s3:GetObject",)) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": [resource]}


def padded(prefix: list[dict[str, Any]], sid: str, total: int) -> list[dict[str, Any]]:
    """`prefix` plus one statement padded so that the document of all of them is exactly `total` by `size`."""
    base = size(document([*prefix, stmt(sid, "")]))
    assert total >= base, f"cannot pad to {total}: already {base}"
    out = [*prefix, stmt(sid, "r" * (total - base))]
    assert size(document(out)) == total
    return out


def sized(sid: str, total: int) -> dict[str, Any]:
    """One statement whose one-statement document is exactly `total` characters."""
    return padded([], sid, total)[0]


def trust(external_id: str | None = EXTERNAL_ID, services: tuple[str, ...] = ()) -> dict[str, Any]:
    management: dict[str, Any] = {
        "Sid": "PorterManagement",
        "Effect": "Allow",
        "Principal": {"AWS": MGMT},
        "Action": "sts:AssumeRole",
    }
    if external_id is not None:
        management["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    statements = [management]
    if services:
        statements.append(
            {
                "Sid": "AwsServices",
                "Effect": "Allow",
                "Principal": {"Service": list(services)},
                "Action": "sts:AssumeRole",
            }
        )
    return {"Version": VERSION, "Statement": statements}


def trust_of_size(total: int) -> dict[str, Any]:
    base = size(trust(""))
    doc = trust("e" * (total - base))
    assert size(doc) == total
    return doc


def role(statements: list[dict[str, Any]] | tuple[dict[str, Any], ...], name: str = "app", **kw: Any) -> DesiredRole:
    return DesiredRole(name=name, trust=kw.pop("trust", trust()), statements=tuple(statements), **kw)


def big_role(name: str = "big") -> DesiredRole:
    """Over INLINE_LIMIT: three statements of 4000 characters, no two of which fit one managed policy."""
    return role([sized(f"S{i}", 4000) for i in range(3)], name=name)


def flatten(placed: Layout) -> list[dict[str, Any]]:
    return [s for doc in (*placed.inline.values(), *placed.managed.values()) for s in doc["Statement"]]


def observed_for(
    desired: DesiredRole, placed: Layout, tags: dict[str, str] | None = None, name: str | None = None
) -> ObservedRole:
    """The role exactly as IAM would hold it after a successful sync."""
    return ObservedRole(
        name=name or desired.name,
        arn=f"arn:aws:iam::{ACCOUNT}:role/{desired.name}",
        trust=copy.deepcopy(desired.trust),
        inline=copy.deepcopy(placed.inline),
        managed={
            n: ManagedPolicy(f"arn:aws:iam::{ACCOUNT}:policy/porter/{n}", copy.deepcopy(d))
            for n, d in placed.managed.items()
        },
        tags={MANAGED_TAG: "true", OWNER_TAG: OWNER, CREATED_TAG: UID} if tags is None else tags,
    )


def kinds(steps: list[Step]) -> list[Kind]:
    return [s.kind for s in steps]


def external_ids(doc: dict[str, Any]) -> list[Any]:
    return [
        keys["sts:ExternalId"]
        for s in doc["Statement"]
        for keys in (s.get("Condition") or {}).values()
        if "sts:ExternalId" in keys
    ]


def spec(**overrides: Any) -> RoleSetSpec:
    body: dict[str, Any] = {
        "accountId": ACCOUNT,
        "region": "us-east-1",
        "clusterName": "prod",
        "managementPrincipalArn": MGMT,
        "access": {
            "roleArn": f"arn:aws:iam::{ACCOUNT}:role/porter-access-manager",
            "externalIdSecretRef": {"namespace": "porter", "name": "porter-external-id"},
        },
        "roles": [{"preset": p} for p in ALL_PRESETS],
    }
    body.update(overrides)
    return RoleSetSpec.model_validate(body)


def by_name(roles: list[DesiredRole]) -> dict[str, DesiredRole]:
    return {r.name: r for r in roles}


# --- layout: inline ---------------------------------------------------------------------------------------------------


def test_small_statements_go_to_one_inline_policy() -> None:
    statements = [stmt("A"), stmt("B", "arn:aws:s3:::b/*")]
    placed = layout(role(statements))
    assert placed.inline == {INLINE_POLICY: {"Version": VERSION, "Statement": statements}}
    assert placed.managed == {}
    assert placed.names == [INLINE_POLICY]


def test_statements_exactly_at_inline_limit_stay_inline() -> None:
    statements = padded([sized("A", 5000)], "B", INLINE_LIMIT)
    placed = layout(role(statements))
    assert list(placed.inline) == [INLINE_POLICY]
    assert placed.managed == {}
    assert size(placed.inline[INLINE_POLICY]) == INLINE_LIMIT


def test_one_character_over_inline_limit_goes_managed() -> None:
    statements = padded([sized("A", 5000)], "B", INLINE_LIMIT + 1)
    placed = layout(role(statements, name="edge"))
    assert placed.inline == {}
    assert list(placed.managed) == ["edge-1", "edge-2"]
    assert flatten(placed) == statements


def test_whitespace_is_not_counted_against_the_inline_limit() -> None:
    # compact() keeps spaces inside values; IAM (and size) ignores them.
    spaced = {"Sid": "Spaces", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["a" + " " * INLINE_LIMIT]}
    assert len(compact(document([spaced]))) > INLINE_LIMIT
    assert size(document([spaced])) <= INLINE_LIMIT
    assert list(layout(role([spaced])).inline) == [INLINE_POLICY]


# --- layout: managed -------------------------------------------------------------------------------------------------


def test_over_inline_limit_splits_into_numbered_managed_policies_within_limit_in_order() -> None:
    statements = [sized(f"S{i}", 1500) for i in range(12)]
    assert size(document(statements)) > INLINE_LIMIT
    placed = layout(role(statements, name="wide"))
    assert placed.inline == {}
    assert list(placed.managed) == [f"wide-{i}" for i in range(1, len(placed.managed) + 1)]
    assert len(placed.managed) == 3  # four 1500-character statements fit 6144, five do not
    assert all(size(d) <= MANAGED_LIMIT for d in placed.managed.values())
    assert all(d["Version"] == VERSION for d in placed.managed.values())
    assert flatten(placed) == statements
    assert placed.names == list(placed.managed)


def test_managed_policies_are_as_few_as_order_allows() -> None:
    placed = layout(big_role())
    assert [[s["Sid"] for s in d["Statement"]] for d in placed.managed.values()] == [["S0"], ["S1"], ["S2"]]


def test_statement_exactly_at_managed_limit_is_accepted() -> None:
    statements = [sized("Huge", MANAGED_LIMIT), sized("Other", 5000)]
    placed = layout(role(statements, name="r"))
    assert placed.managed == {"r-1": document([statements[0]]), "r-2": document([statements[1]])}
    assert size(placed.managed["r-1"]) == MANAGED_LIMIT


def test_single_statement_over_managed_limit_is_too_large_naming_sid_and_role() -> None:
    statements = [sized("Huge", MANAGED_LIMIT + 1), sized("Other", 5000)]
    with pytest.raises(TooLarge, match=r"role r: statement Huge alone is over 6144 characters"):
        layout(role(statements, name="r"))


def test_exactly_managed_per_role_chunks_fit() -> None:
    statements = [sized(f"S{i}", 4000) for i in range(MANAGED_PER_ROLE)]
    placed = layout(role(statements, name="r"))
    assert list(placed.managed) == [f"r-{i}" for i in range(1, MANAGED_PER_ROLE + 1)]


def test_more_than_managed_per_role_chunks_is_too_large() -> None:
    statements = [sized(f"S{i}", 4000) for i in range(MANAGED_PER_ROLE + 1)]
    with pytest.raises(TooLarge, match=rf"role r: .* need {MANAGED_PER_ROLE + 1} managed policies.* at most 10"):
        layout(role(statements, name="r"))


def test_too_large_is_a_value_error() -> None:
    assert issubclass(TooLarge, ValueError)


# --- layout: trust ---------------------------------------------------------------------------------------------------


def test_trust_exactly_at_limit_is_accepted() -> None:
    placed = layout(role([stmt("A")], trust=trust_of_size(TRUST_LIMIT)))
    assert list(placed.inline) == [INLINE_POLICY]


def test_trust_over_limit_is_too_large() -> None:
    with pytest.raises(TooLarge, match=rf"role t: trust policy is {TRUST_LIMIT + 1} characters; IAM allows 2048"):
        layout(role([stmt("A")], name="t", trust=trust_of_size(TRUST_LIMIT + 1)))


def test_trust_is_checked_before_statements() -> None:
    with pytest.raises(TooLarge, match="trust policy"):
        layout(role([sized("Huge", MANAGED_LIMIT + 1), sized("B", 5000)], trust=trust_of_size(TRUST_LIMIT + 1)))


# --- layout: determinism and real presets ----------------------------------------------------------------------------


def test_layout_is_deterministic() -> None:
    statements = [sized(f"S{i}", 1500 + 37 * i) for i in range(10)]
    assert layout(role(statements)) == layout(role(copy.deepcopy(statements)))


def test_porter_manager_preset_lands_inline() -> None:
    roles = by_name(desired_roles(spec(), EXTERNAL_ID))
    manager = roles["porter-manager"]
    placed = layout(manager)
    assert list(placed.inline) == [INLINE_POLICY]
    assert placed.managed == {}
    assert placed.inline[INLINE_POLICY]["Statement"] == list(manager.statements)
    assert len(manager.statements) == len(PRESETS["porter-manager"].statements)


def test_porter_node_manager_preset_lands_in_two_managed_policies() -> None:
    statements = tuple(s.to_iam() for s in statements_for(PRESETS["porter-node-manager"], ACCOUNT))
    placed = layout(role(statements, name="porter-node-manager"))
    assert placed.inline == {}
    assert list(placed.managed) == ["porter-node-manager-1", "porter-node-manager-2"]
    assert all(size(d) <= MANAGED_LIMIT for d in placed.managed.values())
    assert flatten(placed) == list(statements)


def test_every_preset_of_a_full_spec_fits_iam_quotas() -> None:
    placed = {r.name: layout(r) for r in desired_roles(spec(buckets=[{"name": "logs"}]), EXTERNAL_ID)}
    managed = sorted(n for n, p in placed.items() if p.managed)
    assert managed == ["porter-node-manager"]
    assert all(list(p.inline) == [INLINE_POLICY] for n, p in placed.items() if n != "porter-node-manager")


# --- pack ------------------------------------------------------------------------------------------------------------


def test_pack_of_nothing_is_empty() -> None:
    assert pack((), MANAGED_LIMIT) == []


def test_pack_keeps_order_and_does_not_move_small_statements_back() -> None:
    a, b, c = sized("A", 4000), sized("B", 4000), sized("C", 200)
    # C would fit beside A, but statements stay in order.
    assert pack((a, b, c), MANAGED_LIMIT) == [[a], [b, c]]


def test_pack_limit_is_inclusive() -> None:
    two = padded([sized("A", 3000)], "B", 5000)
    assert pack(tuple(two), 5000) == [two]
    assert pack(tuple(two), 4999) == [[two[0]], [two[1]]]


def test_pack_is_deterministic() -> None:
    statements = tuple(sized(f"S{i}", 900 + 53 * i) for i in range(20))
    first = pack(statements, 3000)
    assert first == pack(copy.deepcopy(statements), 3000)
    assert [s for chunk in first for s in chunk] == list(statements)
    assert all(size(document(chunk)) <= 3000 for chunk in first)


def test_pack_names_the_sid_or_question_mark() -> None:
    with pytest.raises(TooLarge, match="statement Big alone is over 200 characters"):
        pack((stmt("A"), sized("Big", 201)), 200)
    anonymous = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["r" * 300]}
    with pytest.raises(TooLarge, match=r"statement \? alone"):
        pack((anonymous,), 200)


# --- canonical / same ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["Action", "NotAction", "Resource", "NotResource"])
def test_string_and_one_element_list_are_the_same(key: str) -> None:
    a = {"Version": VERSION, "Statement": [{"Effect": "Allow", key: "x"}]}
    b = {"Version": VERSION, "Statement": [{"Effect": "Allow", key: ["x"]}]}
    assert same(a, b)
    assert canonical(a)["Statement"][0][key] == ["x"]


@pytest.mark.parametrize("principal", ["AWS", "Service", "Federated"])
def test_principal_values_string_or_list_are_the_same(principal: str) -> None:
    a = {"Version": VERSION, "Statement": [{"Effect": "Allow", "Principal": {principal: "p"}}]}
    b = {"Version": VERSION, "Statement": [{"Effect": "Allow", "Principal": {principal: ["p"]}}]}
    assert same(a, b)


def test_condition_values_string_or_list_are_the_same() -> None:
    a = {"Version": VERSION, "Statement": [{"Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]}
    b = {"Version": VERSION, "Statement": [{"Condition": {"StringEquals": {"aws:SourceAccount": [ACCOUNT]}}}]}
    assert same(a, b)


def test_single_statement_dict_is_the_same_as_a_list_of_it() -> None:
    s = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    assert same({"Version": VERSION, "Statement": s}, {"Version": VERSION, "Statement": [s]})
    assert canonical({"Version": VERSION, "Statement": s})["Statement"] == [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]}
    ]


def test_trust_in_iam_shape_is_the_same_as_the_rendered_trust() -> None:
    rendered = trust(services=("ec2.amazonaws.com",))
    from_iam = copy.deepcopy(rendered)
    from_iam["Statement"][0]["Principal"]["AWS"] = [MGMT]
    from_iam["Statement"][0]["Action"] = ["sts:AssumeRole"]
    from_iam["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] = [EXTERNAL_ID]
    from_iam["Statement"][1]["Principal"]["Service"] = "ec2.amazonaws.com"
    assert same(rendered, from_iam)


def test_action_order_matters() -> None:
    a = document([stmt("A", actions=("s3:GetObject", "s3:PutObject"))])
    b = document([stmt("A", actions=("s3:PutObject", "s3:GetObject"))])
    assert not same(a, b)


def test_statement_order_matters() -> None:
    assert not same(document([stmt("A"), stmt("B")]), document([stmt("B"), stmt("A")]))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["Statement"][0].update(Action=["s3:PutObject"]),
        lambda d: d["Statement"][0].update(Resource="arn:aws:s3:::other/*"),
        lambda d: d["Statement"][0].update(Effect="Deny"),
        lambda d: d["Statement"][0].update(Condition={"Bool": {"aws:SecureTransport": "true"}}),
        lambda d: d.update(Version="2008-10-17"),
    ],
)
def test_real_differences_are_not_the_same(change: Any) -> None:
    a = document([stmt("A")])
    b = copy.deepcopy(a)
    change(b)
    assert not same(a, b)


def test_canonical_does_not_mutate_and_fills_missing_parts() -> None:
    doc = {"Statement": {"Action": "a:b", "Principal": {"AWS": "x"}, "Condition": {"Null": {"k": "false"}}}}
    before = copy.deepcopy(doc)
    assert canonical(doc) == {
        "Version": None,
        "Statement": [{"Action": ["a:b"], "Principal": {"AWS": ["x"]}, "Condition": {"Null": {"k": ["false"]}}}],
    }
    assert doc == before
    assert canonical({}) == {"Version": None, "Statement": []}


def test_canonical_keeps_a_wildcard_principal_string() -> None:
    doc = {"Version": VERSION, "Statement": [{"Principal": "*"}]}
    assert canonical(doc)["Statement"][0]["Principal"] == "*"


# --- redact ----------------------------------------------------------------------------------------------------------


def test_redact_hides_external_id_and_keeps_the_rest() -> None:
    doc = trust(services=("eks.amazonaws.com",))
    doc["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"] = ACCOUNT
    out = redact(doc)
    assert external_ids(out) == [[REDACTED]]
    assert out["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"] == [ACCOUNT]
    assert out["Statement"][0]["Principal"] == {"AWS": [MGMT]}
    assert out["Statement"][1] == canonical(doc)["Statement"][1]
    assert EXTERNAL_ID not in compact(out)


def test_redact_does_not_mutate_its_input() -> None:
    doc = trust()
    doc["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] = [EXTERNAL_ID]  # list shape too
    before = copy.deepcopy(doc)
    redact(doc)
    assert doc == before


def test_redact_hides_external_id_under_any_operator_and_in_every_statement() -> None:
    doc = {
        "Version": VERSION,
        "Statement": [
            {"Condition": {"StringLike": {"sts:ExternalId": "abc*"}}},
            {"Condition": {"StringEquals": {"sts:ExternalId": ["one", "two"]}}},
        ],
    }
    assert external_ids(redact(doc)) == [[REDACTED], [REDACTED]]


def test_redact_leaves_documents_without_external_id_as_canonical() -> None:
    doc = trust(external_id=None, services=("ec2.amazonaws.com",))
    assert redact(doc) == canonical(doc)


# --- digest ----------------------------------------------------------------------------------------------------------


def test_digest_has_a_fixed_shape_and_is_stable() -> None:
    r = role([stmt("A")])
    d = digest(r, layout(r))
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", d)
    again = role(copy.deepcopy([stmt("A")]), trust=copy.deepcopy(r.trust))
    assert digest(again, layout(again)) == d


def test_digest_changes_when_a_statement_changes() -> None:
    a, b = role([stmt("A")]), role([stmt("A", "arn:aws:s3:::other/*")])
    assert digest(a, layout(a)) != digest(b, layout(b))


def test_digest_changes_when_trust_changes_otherwise() -> None:
    a = role([stmt("A")])
    b = role([stmt("A")], trust=trust(services=("ec2.amazonaws.com",)))
    assert digest(a, layout(a)) != digest(b, layout(b))


def test_digest_ignores_the_external_id() -> None:
    a = role([stmt("A")], trust=trust("first-id"))
    b = role([stmt("A")], trust=trust("second-id"))
    assert digest(a, layout(a)) == digest(b, layout(b))


def test_digest_does_not_equal_the_unredacted_hash_nor_contain_the_external_id() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    d = digest(r, placed)
    assert EXTERNAL_ID not in d
    unredacted = "\n".join([compact(canonical(r.trust)), compact(canonical(placed.inline[INLINE_POLICY]))])
    assert d != "sha256:" + hashlib.sha256(unredacted.encode()).hexdigest()[:16]


def test_digest_is_shape_insensitive() -> None:
    a = role([{"Sid": "A", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}])
    b = role([stmt("A")])
    assert digest(a, layout(a)) == digest(b, layout(b))


def test_digest_covers_managed_policies() -> None:
    a = big_role()
    changed = [*a.statements[:-1], {**a.statements[-1], "Effect": "Deny"}]
    b = role(changed, name="big")
    assert digest(a, layout(a)) != digest(b, layout(b))


# --- plan_role: create -----------------------------------------------------------------------------------------------


def test_plan_creates_missing_role_with_tags_then_inline_policy() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    plan = plan_role(r, placed, None, OWNER, UID)
    assert plan.conflict is None
    assert plan.steps == [
        Step(Kind.CREATE_ROLE, document=r.trust, tags={MANAGED_TAG: "true", OWNER_TAG: OWNER, CREATED_TAG: UID}),
        Step(Kind.PUT_INLINE, INLINE_POLICY, placed.inline[INLINE_POLICY]),
    ]


def test_plan_creates_missing_role_then_managed_policies_in_order() -> None:
    r = big_role()
    placed = layout(r)
    plan = plan_role(r, placed, None, OWNER, UID)
    assert kinds(plan.steps) == [Kind.CREATE_ROLE, Kind.PUT_MANAGED, Kind.PUT_MANAGED, Kind.PUT_MANAGED]
    assert [(s.target, s.document) for s in plan.steps[1:]] == list(placed.managed.items())
    assert plan.steps[0].tags is not None and plan.steps[0].tags[CREATED_TAG] == UID


# --- plan_role: update -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: role([stmt("A")]), big_role])
def test_plan_for_role_in_sync_is_empty(make: Any) -> None:
    r = make()
    placed = layout(r)
    assert plan_role(r, placed, observed_for(r, placed), OWNER, UID).steps == []


def test_plan_for_role_in_sync_in_iam_shape_is_empty() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    observed = observed_for(r, placed)
    observed.inline[INLINE_POLICY]["Statement"] = {
        "Sid": "A",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "*",
    }
    observed.trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] = [EXTERNAL_ID]
    assert plan_role(r, placed, observed, OWNER, UID).steps == []


def test_plan_updates_trust_that_differs() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    observed = observed_for(r, placed)
    observed.trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] = "old-id"
    assert plan_role(r, placed, observed, OWNER, UID).steps == [Step(Kind.UPDATE_TRUST, document=r.trust)]


@pytest.mark.parametrize(
    "tags",
    [
        {},
        {OWNER_TAG: OWNER},
        {MANAGED_TAG: "false", OWNER_TAG: OWNER},
        {"team": "x"},
    ],
)
def test_plan_tags_an_adopted_role(tags: dict[str, str]) -> None:
    r = role([stmt("A")], take_over=TakeOver.KEEP_POLICIES)
    placed = layout(r)
    plan = plan_role(r, placed, observed_for(r, placed, tags=tags), OWNER, UID)
    assert plan.conflict is None
    assert plan.steps == [Step(Kind.TAG_ROLE, tags={MANAGED_TAG: "true", OWNER_TAG: OWNER})]


@pytest.mark.parametrize("tags", [{}, {OWNER_TAG: OWNER}, {MANAGED_TAG: "false"}, {"team": "x"}])
def test_a_role_no_set_made_is_a_conflict_naming_the_opt_in_and_shows_what_adoption_would_do(
    tags: dict[str, str],
) -> None:
    r = role([stmt("A")])
    placed = layout(r)
    observed = observed_for(r, placed, tags=tags)
    observed.inline["team-extra"] = document([stmt("X")])
    plan = plan_role(r, placed, observed, OWNER, UID)
    assert plan.needs_adoption and plan.conflict is not None
    assert "takeOver: KeepPolicies" in plan.conflict and "takeOver: ReplacePolicies" in plan.conflict
    # what adopting would do, for diff: tag it, keep the policy we did not write
    assert plan.steps == [Step(Kind.TAG_ROLE, tags={MANAGED_TAG: "true", OWNER_TAG: OWNER})]


def test_an_adopted_role_keeps_policies_we_did_not_write_and_loses_ours_it_no_longer_needs() -> None:
    grown = big_role()
    small = role([stmt("A")], name="big", take_over=TakeOver.KEEP_POLICIES)
    observed = observed_for(grown, layout(grown), tags={MANAGED_TAG: "true", OWNER_TAG: OWNER})
    observed.inline["team-extra"] = document([stmt("X")])
    admin = ManagedPolicy("arn:aws:iam::aws:policy/AdministratorAccess", document([stmt("Admin")]))
    observed.managed["AdministratorAccess"] = admin
    outside = ManagedPolicy(f"arn:aws:iam::{ACCOUNT}:policy/team/big-1x", document([stmt("T")]))
    observed.managed["big-1x"] = outside
    plan = plan_role(small, layout(small), observed, OWNER, UID)
    assert plan.conflict is None
    assert kinds(plan.steps) == [Kind.PUT_INLINE] + [Kind.DETACH_POLICY] * 3
    detached = {s.target for s in plan.steps[1:]}
    assert detached == {f"arn:aws:iam::{ACCOUNT}:policy/porter/big-{i}" for i in (1, 2, 3)}
    replaced = plan_role(
        role([stmt("A")], name="big", take_over=TakeOver.REPLACE_POLICIES), layout(small), observed, OWNER, UID
    )
    assert {s.target for s in replaced.steps if s.kind is Kind.DETACH_POLICY} == detached | {admin.arn, outside.arn}
    assert [s.target for s in replaced.steps if s.kind is Kind.DELETE_INLINE] == ["team-extra"]


def test_a_role_released_by_a_set_is_taken_without_opt_in() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    plan = plan_role(r, placed, observed_for(r, placed, tags={MANAGED_TAG: "true"}), OWNER, UID)
    assert plan.conflict is None
    assert plan.steps == [Step(Kind.TAG_ROLE, tags={MANAGED_TAG: "true", OWNER_TAG: OWNER})]


@pytest.mark.parametrize(
    ("configured", "account", "reason"),
    [(None, ACCOUNT, "NotConfigured"), ("999999999999", ACCOUNT, "NotAllowed"), (ACCOUNT, ACCOUNT, None)],
)
def test_only_the_configured_account_is_served(configured: str | None, account: str, reason: str | None) -> None:
    refused = account_refusal(configured, account)
    assert (refused.reason.value if refused else None) == reason


def test_plan_ignores_extra_tags() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    tags = {MANAGED_TAG: "true", OWNER_TAG: OWNER, CREATED_TAG: "someone-else", "team": "x"}
    assert plan_role(r, placed, observed_for(r, placed, tags=tags), OWNER, UID).steps == []


def test_plan_puts_changed_inline_policy() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    observed = observed_for(r, placed)
    observed.inline[INLINE_POLICY]["Statement"][0]["Action"] = ["s3:*"]
    assert plan_role(r, placed, observed, OWNER, UID).steps == [
        Step(Kind.PUT_INLINE, INLINE_POLICY, placed.inline[INLINE_POLICY])
    ]


def test_plan_puts_missing_inline_policy() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    observed = observed_for(r, placed)
    observed.inline.clear()
    assert kinds(plan_role(r, placed, observed, OWNER, UID).steps) == [Kind.PUT_INLINE]


def test_plan_deletes_extra_inline_policy() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    observed = observed_for(r, placed)
    observed.inline["hand-made"] = document([stmt("X")])
    assert plan_role(r, placed, observed, OWNER, UID).steps == [Step(Kind.DELETE_INLINE, "hand-made")]


def test_plan_detaches_extra_attached_policy_by_arn() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    observed = observed_for(r, placed)
    arn = "arn:aws:iam::aws:policy/AdministratorAccess"
    observed.managed["AdministratorAccess"] = ManagedPolicy(arn, document([stmt("Admin")]))
    assert plan_role(r, placed, observed, OWNER, UID).steps == [Step(Kind.DETACH_POLICY, arn)]


def test_plan_puts_only_the_changed_managed_policy() -> None:
    r = big_role()
    placed = layout(r)
    observed = observed_for(r, placed)
    observed.managed["big-2"].document["Statement"][0]["Effect"] = "Deny"
    assert plan_role(r, placed, observed, OWNER, UID).steps == [
        Step(Kind.PUT_MANAGED, "big-2", placed.managed["big-2"])
    ]


def test_plan_puts_missing_managed_policy() -> None:
    r = big_role()
    placed = layout(r)
    observed = observed_for(r, placed)
    del observed.managed["big-3"]
    assert plan_role(r, placed, observed, OWNER, UID).steps == [
        Step(Kind.PUT_MANAGED, "big-3", placed.managed["big-3"])
    ]


def test_plan_moving_from_inline_to_managed_puts_before_deleting() -> None:
    small = role([stmt("A")], name="big")
    grown = big_role()
    placed = layout(grown)
    observed = observed_for(small, layout(small))
    plan = plan_role(grown, placed, observed, OWNER, UID)
    assert kinds(plan.steps) == [Kind.PUT_MANAGED] * 3 + [Kind.DELETE_INLINE]
    assert plan.steps[-1].target == INLINE_POLICY


def test_plan_moving_from_managed_to_inline_puts_before_detaching() -> None:
    grown = big_role()
    small = role([stmt("A")], name="big")
    observed = observed_for(grown, layout(grown))
    plan = plan_role(small, layout(small), observed, OWNER, UID)
    assert kinds(plan.steps) == [Kind.PUT_INLINE] + [Kind.DETACH_POLICY] * 3
    assert [s.target for s in plan.steps[1:]] == [p.arn for p in observed.managed.values()]


def test_plan_orders_trust_tags_puts_then_removals() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    observed = observed_for(r, placed, tags={MANAGED_TAG: "true", CREATED_TAG: UID})
    observed.trust["Statement"][0]["Principal"]["AWS"] = "arn:aws:iam::210987654321:role/Other"
    observed.inline[INLINE_POLICY] = document([stmt("Old")])
    observed.inline["extra"] = document([stmt("X")])
    observed.managed["Extra"] = ManagedPolicy("arn:aws:iam::aws:policy/Extra", document([stmt("Y")]))
    assert kinds(plan_role(r, placed, observed, OWNER, UID).steps) == [
        Kind.UPDATE_TRUST,
        Kind.TAG_ROLE,
        Kind.PUT_INLINE,
        Kind.DELETE_INLINE,
        Kind.DETACH_POLICY,
    ]


# --- plan_role: ownership --------------------------------------------------------------------------------------------


def test_plan_refuses_role_managed_by_another_set() -> None:
    r = role([stmt("A")], name="porter-manager")
    placed = layout(r)
    observed = observed_for(r, placed, tags={MANAGED_TAG: "true", OWNER_TAG: "other-set"})
    observed.inline.clear()  # even with drift, nothing is touched
    observed.trust["Statement"].clear()
    plan = plan_role(r, placed, observed, OWNER, UID)
    assert plan.steps == []
    assert plan.conflict is not None
    assert "other-set" in plan.conflict
    assert "porter-manager" in plan.conflict


def test_plan_adopts_managed_role_without_owner() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    plan = plan_role(r, placed, observed_for(r, placed, tags={MANAGED_TAG: "true"}), OWNER, UID)
    assert plan.conflict is None
    assert plan.steps == [Step(Kind.TAG_ROLE, tags={MANAGED_TAG: "true", OWNER_TAG: OWNER})]


def test_plan_for_own_role_is_not_a_conflict() -> None:
    r = role([stmt("A")])
    placed = layout(r)
    assert plan_role(r, placed, observed_for(r, placed), OWNER, UID).conflict is None


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({MANAGED_TAG: "true", OWNER_TAG: OWNER, CREATED_TAG: UID}, True),
        ({MANAGED_TAG: "true", CREATED_TAG: UID}, True),
        ({MANAGED_TAG: "true", OWNER_TAG: OWNER, CREATED_TAG: "other-uid"}, False),
        ({MANAGED_TAG: "true", OWNER_TAG: OWNER}, False),
        ({CREATED_TAG: UID}, False),
        ({MANAGED_TAG: "false", CREATED_TAG: UID}, False),
        ({}, False),
    ],
)
def test_created_by(tags: dict[str, str], expected: bool) -> None:
    r = role([stmt("A")])
    assert created_by(observed_for(r, layout(r), tags=tags), UID) is expected


def test_step_describe() -> None:
    assert Step(Kind.PUT_INLINE, INLINE_POLICY).describe("app") == "PutInlinePolicy porter-permissions on app"
    assert Step(Kind.CREATE_ROLE).describe("app") == "CreateRole on app"


# --- iam.desired.desired_roles ---------------------------------------------------------------------------------------


def test_desired_roles_follow_spec_order_presets_then_buckets() -> None:
    s = spec(buckets=[{"name": "logs-bucket"}, {"name": "release.bucket"}])
    names = [r.name for r in desired_roles(s, EXTERNAL_ID)]
    buckets = [f"porter-s3-{hashlib.sha256(b.encode()).hexdigest()[:10]}" for b in ("logs-bucket", "release.bucket")]
    assert names == [*ALL_PRESETS, *buckets]


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_preset_role_carries_preset_statements_with_account_filled_in(name: str) -> None:
    desired = by_name(desired_roles(spec(), EXTERNAL_ID))[name]
    preset = PRESETS[name]
    assert desired.statements == tuple(s.to_iam() for s in statements_for(preset, ACCOUNT))
    assert [s["Sid"] for s in desired.statements] == [s.sid for s in preset.statements]
    assert ACCOUNT_PLACEHOLDER not in compact(document(list(desired.statements)))
    assert desired.description == preset.purpose


@pytest.mark.parametrize("name", ["porter-infra-manager", "porter-karpenter"])
def test_account_placeholders_become_the_account(name: str) -> None:
    desired = by_name(desired_roles(spec(), EXTERNAL_ID))[name]
    assert ACCOUNT_PLACEHOLDER in compact(document([s.to_iam() for s in PRESETS[name].statements]))
    assert ACCOUNT in compact(document(list(desired.statements)))


@pytest.mark.parametrize("ack", [True, False])
def test_porter_manager_trust_always_requires_the_external_id(ack: bool) -> None:
    desired = by_name(desired_roles(spec(ackCompatibleTrust=ack), EXTERNAL_ID))["porter-manager"]
    assert external_ids(desired.trust) == [EXTERNAL_ID]


@pytest.mark.parametrize("name", ["porter-access-manager", "porter-infra-manager"])
def test_ack_compatible_trust_drops_external_id_only_where_allowed(name: str) -> None:
    with_ack = by_name(desired_roles(spec(ackCompatibleTrust=True), EXTERNAL_ID))[name]
    without = by_name(desired_roles(spec(ackCompatibleTrust=False), EXTERNAL_ID))[name]
    assert external_ids(with_ack.trust) == []
    assert external_ids(without.trust) == [EXTERNAL_ID]
    management = [s for s in with_ack.trust["Statement"] if s.get("Sid") == "PorterManagement"]
    assert [s["Principal"] for s in management] == [{"AWS": MGMT}]  # still trusted, just without the ExternalId


@pytest.mark.parametrize("name", ["porter-karpenter", "porter-controlplane-manager", "porter-node-manager"])
def test_roles_not_assumable_from_outside_do_not_trust_the_management_principal(name: str) -> None:
    desired = by_name(desired_roles(spec(), EXTERNAL_ID))[name]
    assert external_ids(desired.trust) == []
    assert MGMT not in compact(desired.trust)


def test_custom_role_is_rendered_in_iam_shape() -> None:
    custom = {
        "name": "my-custom",
        "trust": {"management": "ExternalId", "services": ["lambda.amazonaws.com", "ec2.amazonaws.com"]},
        "statements": [
            {
                "sid": "ReadLogs",
                "effect": "Deny",
                "actions": ["logs:GetLogEvents", "logs:Describe*"],
                "resources": ["arn:aws:logs:us-east-1:123456789012:log-group:*"],
                "condition": {"StringEquals": {"aws:RequestedRegion": ["us-east-1"]}},
            },
            {"sid": "Plain", "actions": ["s3:ListAllMyBuckets"], "resources": ["*"]},
        ],
    }
    desired = desired_roles(spec(roles=[custom], ackCompatibleTrust=True), EXTERNAL_ID)
    assert [d.name for d in desired] == ["my-custom"]
    (r,) = desired
    assert r.statements == (
        {
            "Sid": "ReadLogs",
            "Effect": "Deny",
            "Action": ["logs:GetLogEvents", "logs:Describe*"],
            "Resource": ["arn:aws:logs:us-east-1:123456789012:log-group:*"],
            "Condition": {"StringEquals": {"aws:RequestedRegion": ["us-east-1"]}},
        },
        {"Sid": "Plain", "Effect": "Allow", "Action": ["s3:ListAllMyBuckets"], "Resource": ["*"]},
    )
    assert external_ids(r.trust) == [EXTERNAL_ID]  # ExternalId management is "required", ack or not
    services = [s for s in r.trust["Statement"] if s.get("Sid") == "AwsServices"]
    assert services[0]["Principal"] == {"Service": ["ec2.amazonaws.com", "lambda.amazonaws.com"]}
    assert not any(s.get("Sid") == "EksPodIdentity" for s in r.trust["Statement"])
    assert r.service_account is None


def test_custom_role_without_management_trusts_only_pods() -> None:
    custom = {
        "name": "pods-only",
        "trust": {"podIdentity": True},
        "statements": [{"sid": "A", "actions": ["s3:GetObject"], "resources": ["*"]}],
        "serviceAccount": {"namespace": "apps", "name": "worker"},
    }
    (r,) = desired_roles(spec(roles=[custom]), EXTERNAL_ID)
    assert [s["Sid"] for s in r.trust["Statement"]] == ["EksPodIdentity"]
    assert r.trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert r.service_account == ("apps", "worker")


@pytest.mark.parametrize("bucket", ["logs-bucket", "my.release.bucket", "abc"])
def test_each_bucket_yields_an_s3_role_scoped_to_its_objects(bucket: str) -> None:
    (r,) = desired_roles(spec(roles=[], buckets=[{"name": bucket}]), EXTERNAL_ID)
    assert r.name == "porter-s3-" + hashlib.sha256(bucket.encode()).hexdigest()[:10]
    assert len(r.statements) == 1
    assert r.statements[0]["Resource"] == [f"arn:aws:s3:::{bucket}/*"]
    assert r.statements[0]["Effect"] == "Allow"
    assert all(a.startswith("s3:") and "*" not in a for a in r.statements[0]["Action"])
    assert [s["Sid"] for s in r.trust["Statement"]] == ["EksPodIdentity"]
    assert external_ids(r.trust) == []
    assert bucket in r.description


def test_distinct_buckets_get_distinct_roles() -> None:
    roles = desired_roles(spec(roles=[], buckets=[{"name": "bucket-a"}, {"name": "bucket-b"}]), EXTERNAL_ID)
    assert len({r.name for r in roles}) == 2
    assert roles[0].statements != roles[1].statements


def test_pod_identity_is_carried_through() -> None:
    s = spec(
        roles=[
            {"preset": "porter-karpenter", "serviceAccount": {"namespace": "karpenter", "name": "karpenter"}},
            {"preset": "porter-telemetry-manager"},
        ],
        buckets=[
            {"name": "logs-bucket", "serviceAccount": {"namespace": "monitoring", "name": "loki"}},
            {"name": "other-bucket"},
        ],
    )
    assert [r.service_account for r in desired_roles(s, EXTERNAL_ID)] == [
        ("karpenter", "karpenter"),
        None,
        ("monitoring", "loki"),
        None,
    ]


def test_external_id_needed_but_missing_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an ExternalId"):
        desired_roles(spec(roles=[{"preset": "porter-manager"}]), "")


def test_desired_roles_pass_through_layout_and_digest_without_leaking_the_external_id() -> None:
    for r in desired_roles(spec(buckets=[{"name": "logs-bucket"}]), EXTERNAL_ID):
        d = digest(r, layout(r))
        assert EXTERNAL_ID not in d
        assert EXTERNAL_ID not in compact(redact(r.trust))


def test_the_crd_offers_exactly_the_presets_of_the_seed_in_order() -> None:
    # The API's enum and the preset data are written separately: this keeps them one list.
    assert list(get_args(PresetName)) == ALL_PRESETS
