"""kopf's last-handled configuration of a PorterRoleSet keeps the spec and the reconcile-policy annotation, nothing
else."""

from __future__ import annotations

import json

import kopf

from porter_identity.kube.diffbase import SpecDiffBase
from porter_identity.reconcile.reconcile_policy import ANNOTATION

BODY = {
    "apiVersion": "identity.porter.run/v1alpha1",
    "kind": "PorterRoleSet",
    "metadata": {
        "name": "app",
        "namespace": "shop",
        "labels": {"app.kubernetes.io/instance": "shop", "team": "payments"},
        "annotations": {"argocd.argoproj.io/tracking-id": "shop:identity.porter.run/x:shop/app", ANNOTATION: "skip"},
    },
    "spec": {"serviceAccountName": "app", "aws": {"role": "shop-api"}},
    "status": {"observedGeneration": 1},
}


def test_only_the_spec_and_the_reconcile_policy_are_stored() -> None:
    storage = SpecDiffBase(name="kopf")
    essence = storage.build(body=kopf.Body(BODY))
    assert dict(essence) == {"spec": BODY["spec"], "metadata": {"annotations": {ANNOTATION: "skip"}}}
    patch = kopf.Patch()
    storage.store(body=kopf.Body(BODY), patch=patch, essence=essence)
    stored = patch["status"]["kopf"]["last-handled-configuration"]
    assert "team" not in stored and "tracking-id" not in stored
    assert json.loads(stored) == dict(essence)


def test_a_label_change_is_no_change_a_spec_or_policy_change_is() -> None:
    storage = SpecDiffBase(name="kopf")
    before = storage.build(body=kopf.Body(BODY))
    relabelled = {**BODY, "metadata": {**BODY["metadata"], "labels": {"team": "other"}}}
    assert storage.build(body=kopf.Body(relabelled)) == before
    respec = {**BODY, "spec": {**BODY["spec"], "aws": {"role": "other"}}}
    assert storage.build(body=kopf.Body(respec)) != before
    unpaused = {**BODY, "metadata": {**BODY["metadata"], "annotations": {}}}
    assert dict(storage.build(body=kopf.Body(unpaused))) == {"spec": BODY["spec"]}
