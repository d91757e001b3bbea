"""What the operator would refuse at start, the chart refuses at `helm template`, naming the value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from porter_dev.chart import CHART, helm, template, value_args
from porter_identity import helmchart
from porter_identity.api.policy import load as load_policy
from porter_identity.config import LeaderElection
from porter_identity.reconcile import shard


def refusal(values: dict[str, Any]) -> str:
    """helm template's complaint (helm install renders the same way; helm lint reports a template `fail` as INFO)."""
    out = helm("template", "rel", str(CHART), *value_args(values), check=False)
    assert out.returncode != 0, f"helm template accepted {values}"
    return out.stderr


def renders(values: dict[str, Any]) -> bool:
    return helm("template", "rel", str(CHART), *value_args(values), check=False).returncode == 0


# --- leader election and replicas ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("election", "message"),
    [
        (
            {"renewDeadlineSeconds": 15, "leaseDurationSeconds": 15},
            "leaderElection.renewDeadlineSeconds (15) must be less than leaderElection.leaseDurationSeconds (15)",
        ),
        (
            {"renewDeadlineSeconds": 30},
            "leaderElection.renewDeadlineSeconds (30) must be less than leaderElection.leaseDurationSeconds (15)",
        ),
        (
            {"retryPeriodSeconds": 10},
            "leaderElection.retryPeriodSeconds (10) must be less than leaderElection.renewDeadlineSeconds (10)",
        ),
    ],
)
def test_leader_election_timings_the_operator_refuses_fail_the_render(election: dict[str, int], message: str) -> None:
    assert message in refusal({"leaderElection": election})
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["leaderElection"]
    merged = {**defaults, **election}
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElection(
            lease_duration_seconds=merged["leaseDurationSeconds"],
            renew_deadline_seconds=merged["renewDeadlineSeconds"],
            retry_period_seconds=merged["retryPeriodSeconds"],
        )


def test_several_replicas_need_leader_election() -> None:
    message = refusal({"leaderElection": {"enabled": False}})
    assert "replicas is 2 but leaderElection.enabled is false" in message
    assert "replicas is 3 but leaderElection.enabled is false" in refusal(
        {"leaderElection": {"enabled": False}, "replicas": 3}
    )
    assert renders({"leaderElection": {"enabled": False}, "replicas": 1})
    assert renders({"leaderElection": {"renewDeadlineSeconds": 14, "retryPeriodSeconds": 13}})


# --- shardSelector ---------------------------------------------------------------------------------------------------

SELECTORS = [
    "porter.run/shard=a",
    "porter.run/shard==a",
    "porter.run/shard!=a",
    "porter.run/shard",
    "!porter.run/shard",
    " porter.run/shard in (a, b) ",
    "porter.run/shard notin (a),team=x,!legacy",
    "shard=",
    "a.b-c_d/E_f.9=v-1.x_2",
    "porter.run/shard=a=b",
    "porter.run/shard in a,b",
    "porter.run/shard==",
    "Porter.run/shard=a",
    "-shard=a",
    "shard=a,",
    ",shard=a",
    "shard=a b",
    "shard in (a,b",
    "shard exists",
    "shard=-a",
    "a/b/c=d",
]


def _operator_accepts(selector: str) -> bool:
    try:
        shard.parse(selector)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("selector", SELECTORS)
def test_the_chart_accepts_exactly_the_selectors_the_operator_parses(selector: str) -> None:
    values = {"config": {"shardSelector": selector}}
    if _operator_accepts(selector):
        assert renders(values), selector
    else:
        assert f"config.shardSelector {json.dumps(selector)} is not a label selector" in refusal(values)


def test_both_kinds_of_selector_are_in_the_examples() -> None:
    accepted = [s for s in SELECTORS if _operator_accepts(s)]
    assert 6 <= len(accepted) <= len(SELECTORS) - 6


# --- policy ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "complaints"),
    [
        ({"rules": [], "denyAll": True}, ["at '/policy': additional properties 'denyAll' not allowed"]),
        (
            {"rules": [{"namespace": ["shop"]}]},
            [
                "at '/policy/rules/0': additional properties 'namespace' not allowed",
                "at '/policy/rules/0': missing property 'namespaces'",
            ],
        ),
        (
            {"rules": [{"namespaces": ["shop"], "aws": {"role": ["x"]}}]},
            ["at '/policy/rules/0/aws': additional properties 'role' not allowed"],
        ),
        (
            {"rules": [{"namespaces": ["shop"], "gcp": {"service_accounts": ["x"]}}]},
            ["at '/policy/rules/0/gcp': additional properties 'service_accounts' not allowed"],
        ),
        (
            {"rules": [{"namespaces": ["shop"], "keep": ["Retain", "Forever"]}]},
            ["at '/policy/rules/0/keep/1': value must be one of 'Retain', 'DetachOnDelete', 'Skip'"],
        ),
        ({"rules": [{"namespaces": []}]}, ["at '/policy/rules/0/namespaces'"]),
        ({"rules": [{"namespaces": ["shop"], "name": "x" * 64}]}, ["at '/policy/rules/0/name'"]),
        ({"rules": [{"namespaces": ["shop"], "azure": "rg/id"}]}, ["at '/policy/rules/0/azure'"]),
    ],
)
def test_the_policy_is_typed_like_the_operator_model(policy: dict[str, Any], complaints: list[str]) -> None:
    said = refusal({"policy": policy})
    for complaint in complaints:
        assert complaint in said


def test_every_policy_the_schema_accepts_the_operator_loads(tmp_path: Path) -> None:
    for values_file in (CHART / "values.yaml", CHART / "ci" / "full-values.yaml"):
        policy = yaml.safe_load(values_file.read_text())["policy"]
        [config_map] = [
            o
            for o in template("rel", "ns", {"policy": policy})
            if o["kind"] == "ConfigMap" and "policy.yaml" in o["data"]
        ]
        (tmp_path / "policy.yaml").write_text(config_map["data"]["policy.yaml"])
        loaded = load_policy(tmp_path / "policy.yaml").model_dump(by_alias=True, exclude_unset=True, mode="json")
        assert loaded == policy


def test_the_committed_policy_schema_is_generated_from_the_model() -> None:
    committed = (CHART / "values.schema.json").read_text()
    assert helmchart.update_schema(committed) == committed, "stale: run `porter-identity crds .`"
    schema = json.loads(committed)
    assert schema["definitions"]["policyKeep"]["enum"] == ["Retain", "DetachOnDelete", "Skip"]
    assert schema["definitions"]["policyRule"]["properties"]["keep"]["default"] == ["Retain"]


# --- affinity --------------------------------------------------------------------------------------------------------


def test_a_given_affinity_replaces_the_default_anti_affinity_and_says_so() -> None:
    def affinity(values: dict[str, Any]) -> dict[str, Any]:
        [deployment] = [o for o in template("rel", "ns", values) if o["kind"] == "Deployment"]
        result: dict[str, Any] = deployment["spec"]["template"]["spec"]["affinity"]
        return result

    assert set(affinity({})) == {"podAntiAffinity"}
    node_affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    assert affinity({"affinity": node_affinity}) == node_affinity
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    above = lines[: lines.index("affinity: {}")]
    note = " ".join(line.lstrip("# ") for line in above[-3:] if line.startswith("#"))
    assert "drops the default pod anti-affinity" in note
    [row] = [
        r for r in helmchart.rows(text, json.loads((CHART / "values.schema.json").read_text())) if r[0] == "`affinity`"
    ]
    assert "drops the default pod anti-affinity" in row[2]
