"""Build the cloud adapters the settings ask for; a provider without settings stays None (NotConfigured).

Each cloud's SDK is imported only when that cloud is configured: an operator for one cloud never loads the other
two (tens of MB of resident memory each, docs/performance.md)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from porter_identity.config import Settings
from porter_identity.providers.pacing import Pacer

if TYPE_CHECKING:
    from porter_identity.clouds.aws.client import AwsProvider
    from porter_identity.clouds.azure.client import AzureProvider
    from porter_identity.clouds.gcp.client import GcpProvider


class EmulatorToken:
    """A fixed bearer token for the local ARM emulator (config refuses it for non-loopback endpoints)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("emulator", int(time.time()) + 3600)


@dataclass
class Clouds:
    aws: AwsProvider | None
    azure: AzureProvider | None
    gcp: GcpProvider | None


def build(settings: Settings) -> Clouds:
    aws = azure = gcp = None
    if settings.eks_cluster_name:
        from porter_identity.clouds.aws.client import AwsProvider

        aws = AwsProvider(
            settings.aws_region,
            settings.eks_cluster_name,
            settings.aws_max_attempts,
            pool_size=settings.max_workers,
            pacer=Pacer("aws", settings.rate_limits),
            privilege_cache_seconds=settings.privilege_cache_seconds,
        )
    if settings.azure_subscription_id and settings.oidc_issuer:
        from porter_identity.clouds.azure.client import AzureProvider

        if settings.azure_credential == "emulator":
            credential: Any = EmulatorToken()
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        azure = AzureProvider(
            settings.azure_subscription_id,
            credential,
            base_url=settings.azure_arm_endpoint,
            connection_verify=settings.azure_ca_file or True,
            pool_size=settings.max_workers,
            pacer=Pacer("azure", settings.rate_limits),
            lock_wait_seconds=settings.lock_wait_seconds,
            privilege_cache_seconds=settings.privilege_cache_seconds,
        )
    if settings.workload_pool:
        from porter_identity.clouds.gcp.client import GcpProvider

        gcp = GcpProvider.connect(
            settings.gcp_iam_endpoint,
            Pacer("gcp", settings.rate_limits),
            settings.lock_wait_seconds,
            settings.privilege_cache_seconds,
        )
    return Clouds(aws=aws, azure=azure, gcp=gcp)
