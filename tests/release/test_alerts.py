"""The chart's alerts and dashboard: off by default, rendered when asked, the rules run by Prometheus' own promtool,
and every metric they read exported by the operator (or, for the webhook, by the Kubernetes API server)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from porter_dev import REPO_ROOT
from porter_dev.chart import CHART, helm, template
from porter_dev.controlplane import k8s_bin_dir
from porter_identity import metrics
from porter_identity.reconcile.outcome import STATE, State

HERE = Path(__file__).parent
CASES = HERE / "alerts_test.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
MONITORING = REPO_ROOT / "docs" / "monitoring.md"
ON = {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
ALERTS = {
    "PorterIdentityStalled",
    "PorterIdentityOrphanedLinks",
    "PorterIdentityCloudThrottled",
    "PorterIdentityNoLeader",
    "PorterIdentityDriftSweepsFailing",
    "PorterIdentityWebhookErrors",
}


def promtool() -> str:
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-promtool.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def rendered(values: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in template("rel", "porter-system", values) if o["kind"] == kind]


def rules(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    [rule] = rendered({**ON, **(values or {})}, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


# --- rendering -------------------------------------------------------------------------------------------------------


def test_off_by_default() -> None:
    objects = template("rel", "porter-system")
    assert not [o for o in objects if o["kind"] == "PrometheusRule"]
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]


def test_rendered_when_enabled_with_their_labels() -> None:
    values = {
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "alertLabels": {"team": "x"},
        },
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Porter"}, "namespace": "monitoring"},
    }
    [rule] = rendered(values, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "porter-system"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in alerts} == ALERTS
    assert all(r["labels"]["team"] == "x" and r["labels"]["severity"] in {"warning", "critical"} for r in alerts)
    [board] = [c for c in rendered(values, "ConfigMap") if c["metadata"]["name"] == "rel-porter-identity-dashboard"]
    assert board["metadata"]["namespace"] == "monitoring"
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "Porter"}
    assert json.loads(board["data"]["porter-identity.json"]) == json.loads(DASHBOARD.read_text())


def test_enabled_without_metrics_is_refused() -> None:
    for key in ON:
        out = helm(
            "template", "rel", str(CHART), "--set", f"{key}.enabled=true", "--set", "metrics.enabled=false", check=False
        )
        assert out.returncode != 0 and f"{key}.enabled needs metrics.enabled" in out.stderr


def test_lint_strict_with_both_on() -> None:
    out = helm(
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "grafanaDashboard.enabled=true",
        check=False,
    )
    assert out.returncode == 0, out.stdout


def test_selector_narrows_every_operator_series() -> None:
    selector = 'namespace="ops",job="pi-metrics"'
    for rule in rules({"prometheusRule": {"enabled": True, "selector": selector}}):
        for name in re.findall(r"\b(porter_identity_\w+)\{([^}]*)\}", rule["expr"]):
            assert name[1].startswith(selector), rule["alert"]


def test_without_leader_election_only_a_missing_operator_is_no_leader() -> None:
    [no_leader] = [
        r
        for r in rules({"replicas": 1, "leaderElection": {"enabled": False}})
        if r["alert"] == "PorterIdentityNoLeader"
    ]
    # one replica without an election never sets porter_identity_leader: only its absence means no operator
    assert no_leader["expr"].strip() == 'absent(porter_identity_leader{namespace="porter-system"})'


def test_stalled_alert_names_every_stalled_reason() -> None:
    [stalled] = [r for r in rules() if r["alert"] == "PorterIdentityStalled"]
    [pattern] = re.findall(r'result=~"([^"]+)"', stalled["expr"])
    assert set(pattern.split("|")) == {reason.value for reason, state in STATE.items() if state is State.STALLED}


def test_runbooks_are_headings_of_the_monitoring_page() -> None:
    headings = re.findall(r"^#+ (.+)$", MONITORING.read_text(), flags=re.M)
    anchors = {h.strip().lower() for h in headings}
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"/docs/monitoring.md#{rule['alert'].lower()}")
        assert rule["alert"].lower() in anchors, f"docs/monitoring.md has no heading {rule['alert']}"


# --- promtool --------------------------------------------------------------------------------------------------------


def test_rules_fire_and_stay_quiet_as_promtool_runs_them(tmp_path: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    groups = [{"name": "porter-identity", "rules": rules()}]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tool = promtool()
    check = subprocess.run(
        [tool, "check", "rules", "--lint-fatal", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    cases = yaml.safe_load(CASES.read_text())
    runbook = f"{chart['home']}/blob/v{chart['appVersion']}/docs/monitoring.md"
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
            for alert in case["exp_alerts"]:
                alert["exp_annotations"]["runbook_url"] = f"{runbook}#{case['alertname'].lower()}"
    assert fired == quiet == ALERTS, "every alert has a case that fires it and one that does not"
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(cases, sort_keys=False))
    out = subprocess.run([tool, "test", "rules", "alerts_test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool checks each dashboard query as a recording rule, Grafana's variables given plain values."""
    plain = {"$__rate_interval": "5m", "$namespace": "porter-system", "$job": ".+"}
    exprs = []
    for expr in dashboard_exprs():
        for variable, value in plain.items():
            expr = expr.replace(variable, value)
        exprs.append(expr)
    assert not [e for e in exprs if "$" in e]
    records = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    out = subprocess.run([promtool(), "check", "rules", "dashboard.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_shape() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "porter-identity"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


# --- metric names ----------------------------------------------------------------------------------------------------

# Words of PromQL that are not metric names (functions are told apart by their parenthesis).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: strings, label matchers, ranges and grouping lists removed,
    what is left that is no function call or keyword."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", text)
    return {n for n in names if n not in KEYWORDS}


SUFFIXES = {"counter": ["_total"], "info": ["_info"], "histogram": ["_bucket", "_count", "_sum"]}


def family_series(family: Any) -> set[str]:
    """The series names of one metric family, as /metrics writes them."""
    return {family.name + s for s in SUFFIXES.get(family.type, [""])} | {sample.name for sample in family.samples}


def operator_series() -> set[str]:
    """Every series name the operator's registry exposes."""
    return {name for family in metrics.REGISTRY.collect() for name in family_series(family)}


def apiserver_series() -> set[str]:
    """The admission metrics of the API server the tests run (k8s.io/apiserver, at the version it is built from)."""
    source = k8s_bin_dir().parent / "src"
    env = {"PATH": f"{Path(shutil.which('go') or 'go').parent}:/usr/bin:/bin", "GOPROXY": "off", "GOFLAGS": "-mod=mod"}
    env["HOME"] = str(Path.home())
    module = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/apiserver"], cwd=source, env=env, capture_output=True, text=True
    )
    assert module.returncode == 0, module.stderr
    code = (Path(module.stdout.strip()) / "pkg" / "admission" / "metrics" / "metrics.go").read_text()
    [namespace] = re.findall(r'^\s*namespace\s*=\s*"(\w+)"', code, flags=re.M)
    [subsystem] = re.findall(r'^\s*subsystem\s*=\s*"(\w+)"', code, flags=re.M)
    base = {f"{namespace}_{subsystem}_{n}" for n in re.findall(r'Name:\s*"(\w+)"', code)}
    return base | {b + s for b in base for s in ("_bucket", "_count", "_sum")}


def test_metric_name_extraction() -> None:
    expr = 'sum by (le, a) (rate(x_bucket{a=~"b|c", d!="e"}[5m])) / on (a) group_left (f) y or absent(z{q="w"}) > 0'
    assert metric_names(expr) == {"x_bucket", "y", "z"}


def test_every_metric_read_exists() -> None:
    used = {n for r in rules() for n in metric_names(r["expr"])} | {
        n for e in dashboard_exprs() for n in metric_names(e)
    }
    assert {n for n in used if n.startswith("porter_identity_")}, "the extraction finds the operator's metrics"
    operator, apiserver = operator_series(), apiserver_series()
    assert {n for n in used if n.startswith("apiserver_")} <= apiserver
    unknown = {n for n in used if not n.startswith("apiserver_")} - operator
    assert not unknown, f"not exported by the operator: {sorted(unknown)}"


def test_the_dashboard_shows_every_operator_metric() -> None:
    shown = {n for e in dashboard_exprs() for n in metric_names(e)}
    for family in metrics.REGISTRY.collect():
        if family.name.startswith("porter_identity_"):
            assert family_series(family) & shown, f"{family.name} is on no panel"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_each_alert_waits_before_firing(name: str) -> None:
    [rule] = [r for r in rules() if r["alert"] == name]
    assert re.fullmatch(r"\d+m", rule["for"]), "every alert holds for minutes: one scrape never pages"
