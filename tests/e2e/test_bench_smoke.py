"""CI smoke run of hack/bench at N=100: the counts are stable, so they are asserted; times are only written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from porter_dev import bench

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench")
    assert bench.main(["--n", "100", "--latency-ms", "0", "--timeout", "180", "--out", str(out)]) == 0
    stem = out / "bench-mixed-n100"
    for suffix in (".md", ".png"):
        assert stem.with_suffix(suffix).stat().st_size > 0
    loaded: dict[str, object] = json.loads(Path(stem.with_suffix(".json")).read_text())
    return loaded


def test_every_connection_became_ready(figures: dict[str, object]) -> None:
    assert figures["ready"] == figures["n"] == 100


def test_exact_cloud_calls_per_connection_and_none_when_idle(figures: dict[str, object]) -> None:
    calls = figures["cloud_calls_per_connection"]
    assert isinstance(calls, dict) and set(calls) == {"aws", "azure", "gcp"}
    # AWS: GetRole, ListAttachedRolePolicies + ListRolePolicies (LeastPrivilege), ListPodIdentityAssociations,
    # Create. Azure: get identity, list role assignments (LeastPrivilege), get credential, put credential.
    # GCP: project getIamPolicy (LeastPrivilege), getIamPolicy, setIamPolicy. Exact, so that one more call
    # per connection is a visible regression.
    assert {p: c["create"] for p, c in calls.items()} == {"aws": 5, "azure": 4, "gcp": 3}
    assert {p: c["idle_resync"] for p, c in calls.items()} == {"aws": 0, "azure": 0, "gcp": 0}


def test_at_most_three_writes_per_connection_and_none_when_idle(figures: dict[str, object]) -> None:
    writes = figures["connection_writes_to_ready"]
    # kopf's finalizer, then one status patch (kopf's own bookkeeping rides in status.kopf).
    assert isinstance(writes, dict) and writes["max"] == 2
    assert figures["connection_writes_idle_resync"] == 0


def test_one_service_account_annotation_for_azure_and_gcp_none_for_aws(figures: dict[str, object]) -> None:
    sa = figures["service_account_writes_per_connection"]
    assert sa == {"aws": 0, "azure": 1, "gcp": 1}
