"""`inventory --live`: statements exactly as deployed, and every difference from the seed marked with its reason."""

from __future__ import annotations

import pytest

from porter_identity.iam import inventory
from porter_identity.iam.policy import document
from porter_identity.iam.presets import PRESETS, S3_PRESET, s3_role_name, s3_statements, statements_for
from porter_identity.reconcile.roleset import canonical

ACCOUNT = "123456789012"


def deployed(statements: tuple[object, ...]) -> tuple[dict[str, object], ...]:
    return tuple(canonical(document([s.to_iam() for s in statements]))["Statement"])  # type: ignore[attr-defined]


def test_the_deployed_presets_differ_from_the_seed_only_where_marked_on_purpose() -> None:
    found = {}
    for name, preset in PRESETS.items():
        if name == S3_PRESET:
            continue
        seed = statements_for(preset, ACCOUNT)
        found[name] = inventory.differences(name, seed, deployed(seed))
    marked = {(name, d.sid, d.seed, d.deployed) for name, ds in found.items() for d in ds}
    assert marked == {
        (
            "porter-node-manager",
            sid,
            "aws:TagKeys = efs.csi.aws.com/cluster",
            "ForAllValues:StringEquals aws:TagKeys = efs.csi.aws.com/cluster",
        )
        for sid in ("AllowCreateAccessPoint", "AllowTagNewAccessPoints")
    }
    assert all("multivalued context key" in d.why for d in found["porter-node-manager"])


def test_a_bucket_role_is_scoped_to_its_bucket_on_purpose_and_to_another_bucket_is_not() -> None:
    template = PRESETS[S3_PRESET].statements
    [scoped] = inventory.differences(s3_role_name("porter-logs"), template, deployed(s3_statements("porter-logs")))
    assert (scoped.seed, scoped.deployed, scoped.why) == (
        "arn:aws:s3:::*/*",
        "arn:aws:s3:::porter-logs/*",
        inventory.BUCKET_SCOPED,
    )
    [other] = inventory.differences(s3_role_name("porter-logs"), template, deployed(s3_statements("someone-else")))
    assert other.why == inventory.NOT_ON_PURPOSE


@pytest.mark.parametrize(
    ("edit", "seed_text"),
    [
        (lambda s: s.update(Action=["*"]), None),
        (lambda s: s["Condition"].update({"ForAllValues:StringEquals": {"aws:TagKeys": ["x", "y"]}}), None),
        (lambda s: s.pop("Condition"), "aws:TagKeys = efs.csi.aws.com/cluster"),
    ],
    ids=["actions", "other tag keys", "conditions dropped"],
)
def test_a_drifted_statement_is_not_marked_on_purpose(edit: object, seed_text: str | None) -> None:
    seed = statements_for(PRESETS["porter-node-manager"], ACCOUNT)
    docs = [dict(s) for s in deployed(seed)]
    target = next(s for s in docs if s["Sid"] == "AllowCreateAccessPoint")
    if "Condition" in target:
        target["Condition"] = {op: dict(keys) for op, keys in target["Condition"].items()}  # type: ignore[attr-defined]
    edit(target)  # type: ignore[operator]
    found = inventory.differences("porter-node-manager", seed, tuple(docs))
    mine = [d for d in found if d.sid == "AllowCreateAccessPoint"]
    assert mine and any(d.why == inventory.NOT_ON_PURPOSE for d in mine)
    if seed_text is not None:
        assert any(d.seed == seed_text for d in mine)


@pytest.mark.parametrize(
    ("op", "value", "text"),
    [
        ("StringEquals", ["a"], "k = a"),
        ("StringEquals", ["a", "b"], "k in [a, b]"),
        ("StringLike", ["a*"], "k like a*"),
        ("Null", ["false"], "k is not null"),
        ("ForAllValues:StringEquals", ["a"], "ForAllValues:StringEquals k = a"),
        ("Null", ["true"], "Null k = true"),
    ],
)
def test_live_condition_text_spells_out_any_operator_the_seed_spelling_does_not_mean(
    op: str, value: list[str], text: str
) -> None:
    assert inventory.live_condition_text(op, "k", value) == text
