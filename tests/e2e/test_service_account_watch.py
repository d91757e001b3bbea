"""A connection waiting for its ServiceAccount runs when the watch shows the ServiceAccount, not at its next retry.

The operator here backs off at least a minute between retries, so only the ServiceAccount watch can make the
connection Ready within the seconds this test allows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_dev.azure import AzureEmulator
from porter_dev.controlplane import ControlPlane
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import Operator
from tests.conftest import AZURE_SUBSCRIPTION, GCP_PROJECT
from tests.e2e.helpers import Connections, instead_of_the_session_operator

pytestmark = pytest.mark.e2e
SLOW = {"PORTER_RETRY_BASE_SECONDS": "60", "PORTER_RETRY_MAX_SECONDS": "120"}


@pytest.fixture(scope="module")
def operator(operator: Operator, control_plane: ControlPlane, workdir: Path) -> Iterator[Operator]:
    with instead_of_the_session_operator(operator, control_plane, workdir, slow=SLOW) as started:
        yield started["slow"]


@pytest.mark.parametrize("provider", ["azure", "gcp"])
def test_the_service_account_appearing_wakes_the_connection(
    provider: str,
    api: client.ApiClient,
    namespace: str,
    operator: Operator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    service_account: Any,
) -> None:
    conns = Connections(api, namespace)
    if provider == "azure":
        identity = f"uami-{uuid.uuid4().hex[:8]}"
        azure.seed_identity(AZURE_SUBSCRIPTION, "watch-rg", identity)
        spec: dict[str, Any] = {"azure": {"identityName": identity, "resourceGroup": "watch-rg"}}
    else:
        spec = {"gcp": {"serviceAccountEmail": gcp.seed_service_account(GCP_PROJECT, f"w-{uuid.uuid4().hex[:8]}")}}
    conns.create("late", "late", **spec)
    conns.wait_reason("late", "ServiceAccountNotFound")
    time.sleep(1)  # the first retry is now a minute away
    service_account(namespace, "late")
    conns.wait_ready("late", timeout=15)
