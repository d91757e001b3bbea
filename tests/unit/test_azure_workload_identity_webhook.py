"""The test-only Azure Workload Identity webhook mutates pods as the real one documents (porter_dev)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from porter_dev.azure_workload_identity import (
    AUDIENCE,
    CLIENT_ID,
    EXPIRATION,
    MOUNT_PATH,
    SKIP_CONTAINERS,
    TENANT_ID,
    TOKEN_FILE,
    VOLUME,
    Refused,
    mutate,
    review_answer,
)

AUTHORITY = "https://login.microsoftonline.com/"


def pod(*containers: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "annotations": annotations or {}},
        "spec": {"serviceAccountName": "app", "containers": list(containers), "volumes": [{"name": "data"}]},
    }


def sa(**annotations: str) -> dict[str, Any]:
    return {"metadata": {"annotations": annotations}}


def apply(doc: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 `add` (the only op the webhook answers): set the member, replacing what was there."""
    out = copy.deepcopy(doc)
    for op in patch:
        assert op["op"] == "add", op
        *parents, last = op["path"].lstrip("/").split("/")
        target: Any = out
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = op["value"]
    return out


def mutated(p: dict[str, Any], account: dict[str, Any], tenant: str = "default-tenant") -> dict[str, Any]:
    return apply(p, mutate(p, account, tenant, AUTHORITY))


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or []}


def test_injects_the_four_variables_the_mount_and_the_projected_token() -> None:
    out = mutated(pod({"name": "app"}), sa(**{CLIENT_ID: "cid", TENANT_ID: "tid"}))
    [container] = out["spec"]["containers"]
    assert env_of(container) == {
        "AZURE_CLIENT_ID": "cid",
        "AZURE_TENANT_ID": "tid",
        "AZURE_FEDERATED_TOKEN_FILE": TOKEN_FILE,
        "AZURE_AUTHORITY_HOST": AUTHORITY,
    }
    assert container["volumeMounts"] == [{"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": True}]
    volumes = {v["name"]: v for v in out["spec"]["volumes"]}
    assert set(volumes) == {"data", VOLUME}
    [source] = volumes[VOLUME]["projected"]["sources"]
    assert source == {"serviceAccountToken": {"audience": AUDIENCE, "expirationSeconds": 3600, "path": VOLUME}}


def test_a_variable_the_container_sets_is_kept_and_an_empty_one_is_not_added() -> None:
    container = {"name": "app", "env": [{"name": "AZURE_CLIENT_ID", "value": "mine"}]}
    out = mutated(pod(container), sa())  # no client id annotation, no tenant annotation
    env = env_of(out["spec"]["containers"][0])
    assert env["AZURE_CLIENT_ID"] == "mine"
    assert env["AZURE_TENANT_ID"] == "default-tenant"
    # Without a client id anywhere, none is injected.
    assert "AZURE_CLIENT_ID" not in env_of(mutated(pod({"name": "app"}), sa())["spec"]["containers"][0])


def test_skipped_containers_are_left_alone() -> None:
    p = pod({"name": "app"}, {"name": "sidecar"}, annotations={SKIP_CONTAINERS: "sidecar; other"})
    out = mutated(p, sa(**{CLIENT_ID: "cid"}))
    app, sidecar = out["spec"]["containers"]
    assert "AZURE_CLIENT_ID" in env_of(app) and sidecar == {"name": "sidecar"}


@pytest.mark.parametrize(
    ("pod_value", "sa_value", "expected"), [(None, None, 3600), (None, "7200", 7200), ("86400", "7200", 86400)]
)
def test_token_expiration_pod_annotation_then_service_account(
    pod_value: str | None, sa_value: str | None, expected: int
) -> None:
    p = pod({"name": "app"}, annotations={EXPIRATION: pod_value} if pod_value else {})
    out = mutated(p, sa(**({EXPIRATION: sa_value} if sa_value else {})))
    [volume] = [v for v in out["spec"]["volumes"] if v["name"] == VOLUME]
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == expected


@pytest.mark.parametrize("value", ["3599", "86401", "soon"])
def test_an_expiration_outside_the_documented_range_refuses_the_pod(value: str) -> None:
    with pytest.raises(Refused):
        mutate(pod({"name": "app"}), sa(**{EXPIRATION: value}), "t", AUTHORITY)
    review = {"request": {"uid": "u1", "namespace": "ns", "object": pod({"name": "app"})}}
    answer = review_answer(review, lambda ns, name: sa(**{EXPIRATION: value}), "t", AUTHORITY)["response"]
    assert (answer["uid"], answer["allowed"], answer["status"]["code"]) == ("u1", False, 400)


def test_the_review_answer_is_a_json_patch_of_the_pod_for_its_service_account() -> None:
    asked: list[tuple[str, str]] = []

    def read(namespace: str, name: str) -> dict[str, Any]:
        asked.append((namespace, name))
        return sa(**{CLIENT_ID: "cid"})

    p = pod({"name": "app"})
    p["spec"].pop("serviceAccountName")  # the default ServiceAccount
    answer = review_answer({"request": {"uid": "u2", "namespace": "ns", "object": p}}, read, "t", AUTHORITY)
    response = answer["response"]
    assert (response["allowed"], response["patchType"], asked) == (True, "JSONPatch", [("ns", "default")])
    patched = apply(p, json.loads(base64.b64decode(response["patch"])))
    assert env_of(patched["spec"]["containers"][0])["AZURE_CLIENT_ID"] == "cid"
