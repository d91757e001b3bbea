"""The one place a cloud is chosen: each provider's Link, built from the operator's settings and clients.

A cloud's Link (and so its SDK) is imported only when that cloud is configured."""

from __future__ import annotations

from dataclasses import dataclass, field

from porter_identity.api.connection import Provider
from porter_identity.clouds.base import Link
from porter_identity.config import Settings
from porter_identity.kube.serviceaccounts import ServiceAccounts
from porter_identity.providers.clients import Clouds
from porter_identity.reconcile.guard import OwnIdentities

NEEDS = {
    Provider.AWS: "PORTER_EKS_CLUSTER_NAME",
    Provider.AZURE: "PORTER_AZURE_SUBSCRIPTION_ID and PORTER_OIDC_ISSUER",
    Provider.GCP: "PORTER_GCP_PROJECT_ID",
}


@dataclass(frozen=True)
class Registry:
    links: dict[Provider, Link] = field(default_factory=dict)

    def get(self, provider: Provider) -> Link | None:
        return self.links.get(provider)


def build(settings: Settings, clouds: Clouds, accounts: ServiceAccounts, own: OwnIdentities | None = None) -> Registry:
    links: dict[Provider, Link] = {}
    if clouds.aws is not None:
        from porter_identity.clouds.aws.link import AwsLink

        links[Provider.AWS] = AwsLink(clouds.aws, settings.aws_account_id, settings.drift_role_checks_per_sweep)
    if clouds.azure is not None and settings.oidc_issuer is not None:
        from porter_identity.clouds.azure.link import AzureLink

        links[Provider.AZURE] = AzureLink(clouds.azure, accounts, settings.oidc_issuer, own)
    if clouds.gcp is not None and settings.workload_pool is not None and settings.gcp_project_id is not None:
        from porter_identity.clouds.gcp.link import GcpLink

        links[Provider.GCP] = GcpLink(clouds.gcp, accounts, settings.gcp_project_id, settings.workload_pool)
    return Registry(links)
