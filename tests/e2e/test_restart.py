"""After a kill -9 and restart, Azure and GCP connections that are already Ready cost no cloud or Kubernetes write."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import Operator
from tests.conftest import AZURE_SUBSCRIPTION, GCP_PROJECT
from tests.e2e.helpers import Connections, sweeping, wait_sweeps

pytestmark = pytest.mark.e2e


def test_restart_leaves_azure_and_gcp_links_untouched(
    api: client.ApiClient,
    namespace: str,
    operator: Operator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    make_role: Any,
    service_account: Any,
) -> None:
    conns = Connections(api, namespace)
    uami = f"uami-{uuid.uuid4().hex[:8]}"
    azure.seed_identity(AZURE_SUBSCRIPTION, "restart-rg", uami)
    email = gcp.seed_service_account(GCP_PROJECT, f"rst-{uuid.uuid4().hex[:8]}")
    for name in ("az", "gc"):
        service_account(namespace, name)
    conns.create("az", "az", azure={"identityName": uami, "resourceGroup": "restart-rg"})
    conns.create("gc", "gc", gcp={"serviceAccountEmail": email})
    versions = {n: conns.wait_ready(n)["metadata"]["resourceVersion"] for n in ("az", "gc")}
    core = client.CoreV1Api(api)
    sa_versions = {
        n: core.read_namespaced_service_account(n, namespace).metadata.resource_version for n in ("az", "gc")
    }
    resource = f"projects/{GCP_PROJECT}/serviceAccounts/{email}"
    etag = gcp.client().get_iam_policy(request={"resource": resource}).etag
    probe_role = make_role()

    with sweeping(operator):
        operator.kill()
        azure.reset()
        operator.start()
        conns.create("probe", "probe", aws={"role": probe_role})
        conns.wait_ready("probe")
        wait_sweeps(operator, count=2)  # the restart's listing is long handled; an idle sweep writes nothing either
        calls = azure.calls()

    for name in ("az", "gc"):
        assert conns.get(name)["metadata"]["resourceVersion"] == versions[name]
        assert core.read_namespaced_service_account(name, namespace).metadata.resource_version == sa_versions[name]
    assert gcp.client().get_iam_policy(request={"resource": resource}).etag == etag  # every write changes it
    # Only the apply path reads identities; deletes draining from other tests' namespaces do not.
    assert "managedidentity:UserAssignedIdentities_Get" not in calls, calls
