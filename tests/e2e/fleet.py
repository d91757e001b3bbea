"""A mixed fleet of connections (AWS, Azure, GCP) in one namespace, and what each cloud holds for it."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from porter_dev.azure import AzureEmulator
from porter_dev.gcp import GcpEmulator
from porter_dev.processes import AwsEmulator
from tests.conftest import AZURE_SUBSCRIPTION, EKS_CLUSTER, GCP_PROJECT
from tests.e2e.helpers import Connections

RESOURCE_GROUP = "fleet-rg"
AZURE_PER_IDENTITY = 10  # Azure allows 20 federated credentials per identity
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"


@dataclass
class Fleet:
    """`size` connections: half AWS, a quarter Azure, a quarter GCP; each on a ServiceAccount of its own."""

    conns: Connections
    aws: AwsEmulator
    azure: AzureEmulator
    gcp: GcpEmulator
    role: str
    size: int
    identities: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)

    @classmethod
    def prepare(
        cls,
        conns: Connections,
        clouds: tuple[AwsEmulator, AzureEmulator, GcpEmulator],
        role: str,
        size: int,
        service_account: Callable[[str, str], None],
    ) -> Fleet:
        aws, azure, gcp = clouds
        fleet = cls(conns, aws, azure, gcp, role, size)
        tag = uuid.uuid4().hex[:6]
        for i in range(-(-fleet.quarter // AZURE_PER_IDENTITY)):
            fleet.identities.append(f"fleet-{tag}-{i}")
            azure.seed_identity(AZURE_SUBSCRIPTION, RESOURCE_GROUP, fleet.identities[-1])
        for i in range(-(-fleet.quarter // 10)):
            fleet.emails.append(gcp.seed_service_account(GCP_PROJECT, f"fl-{tag}-{i}"))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: service_account(conns.namespace, n), fleet.names))
        return fleet

    @property
    def quarter(self) -> int:
        return self.size // 4

    @property
    def names(self) -> list[str]:
        return [f"c{i}" for i in range(self.size)]

    def spec(self, i: int) -> dict[str, Any]:
        if i < self.size - 2 * self.quarter:
            return {"aws": {"role": self.role}}
        if i < self.size - self.quarter:
            j = i - (self.size - 2 * self.quarter)
            return {
                "azure": {"identityName": self.identities[j // AZURE_PER_IDENTITY], "resourceGroup": RESOURCE_GROUP}
            }
        j = i - (self.size - self.quarter)
        return {"gcp": {"serviceAccountEmail": self.emails[j // 10]}}

    def create(self, indexes: Iterable[int]) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: self.conns.create(f"c{i}", f"c{i}", **self.spec(i)), indexes))

    def wait_ready(self, timeout: float) -> None:
        for name in self.names:
            self.conns.wait_ready(name, timeout=timeout)

    # -- what the clouds hold --------------------------------------------------------------------------

    def aws_links(self) -> Counter[str]:
        """Associations in this namespace, by ServiceAccount."""
        found: Counter[str] = Counter()
        eks = self.aws.client("eks")
        for page in eks.get_paginator("list_pod_identity_associations").paginate(
            clusterName=EKS_CLUSTER, namespace=self.conns.namespace
        ):
            found.update(a["serviceAccount"] for a in page["associations"])
        return found

    def azure_links(self) -> Counter[str]:
        """Federated credentials whose subject is a ServiceAccount of this namespace, by ServiceAccount."""
        prefix = f"system:serviceaccount:{self.conns.namespace}:"
        msi = self.azure.client(AZURE_SUBSCRIPTION)
        found: Counter[str] = Counter()
        for identity in self.identities:
            for fic in msi.federated_identity_credentials.list(RESOURCE_GROUP, identity):
                if fic.subject.startswith(prefix):
                    found[fic.subject[len(prefix) :]] += 1
        return found

    def gcp_links(self) -> Counter[str]:
        """Workload Identity members of this namespace, by ServiceAccount."""
        prefix = f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{self.conns.namespace}/"
        found: Counter[str] = Counter()
        for email in self.emails:
            policy = self.gcp.client().get_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}"})
            for binding in policy.bindings:
                if binding.role == WORKLOAD_IDENTITY_USER:
                    found.update(m[len(prefix) : -1] for m in binding.members if m.startswith(prefix))
        return found

    def links(self) -> Counter[str]:
        return self.aws_links() + self.azure_links() + self.gcp_links()

    def cloud_calls(self) -> int:
        return sum(self.aws.calls().values()) + sum(self.azure.calls().values()) + sum(self.gcp.calls().values())
