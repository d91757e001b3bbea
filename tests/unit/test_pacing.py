"""Token buckets per cloud and access: reads and writes are told apart, a burst passes, then callers wait."""

from __future__ import annotations

import pytest

from porter_identity import metrics
from porter_identity.config import Bucket, RateLimits, Settings
from porter_identity.providers.pacing import Pacer, is_read


@pytest.mark.parametrize(
    ("operation", "read"),
    [
        ("GetRole", True),
        ("ListPodIdentityAssociations", True),
        ("DescribePodIdentityAssociation", True),
        ("GetIamPolicy", True),
        ("CreatePodIdentityAssociation", False),
        ("UpdatePodIdentityAssociation", False),
        ("DeletePodIdentityAssociation", False),
        ("SetIamPolicy", False),
        ("PutRolePolicy", False),
        ("TagRole", False),
    ],
)
def test_reads_and_writes_are_told_apart_by_verb(operation: str, read: bool) -> None:
    assert is_read(operation) is read


def _waited(provider: str, access: str) -> tuple[float, float]:
    """(count, sum) of the wait histogram for one label pair."""
    count = metrics.REGISTRY.get_sample_value(
        "porter_identity_cloud_rate_limit_wait_seconds_count", {"provider": provider, "access": access}
    )
    total = metrics.REGISTRY.get_sample_value(
        "porter_identity_cloud_rate_limit_wait_seconds_sum", {"provider": provider, "access": access}
    )
    return count or 0.0, total or 0.0


def test_a_burst_passes_at_once_then_the_next_call_waits_for_a_token() -> None:
    # One token a second: margins of half a second either way, so a busy machine's hiccup cannot flip the result.
    limits = RateLimits(gcp_write=Bucket(per_second=1, burst=3))
    pacer = Pacer("gcp", limits)
    count0, total0 = _waited("gcp", "write")
    burst = [pacer.wait("write") for _ in range(3)]
    assert max(burst) < 0.5
    assert pacer.wait("write") > 0.5
    count, total = _waited("gcp", "write")
    assert count - count0 == 4 and total - total0 > 0.5


def test_reads_do_not_spend_write_tokens() -> None:
    pacer = Pacer("aws", RateLimits(aws_write=Bucket(per_second=0.1, burst=1), aws_read=Bucket(per_second=1, burst=5)))
    pacer.wait("write")
    assert max(pacer.wait("read") for _ in range(5)) < 0.1


def test_each_bucket_is_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTER_RATE_LIMITS__AZURE_WRITE__PER_SECOND", "2.5")
    monkeypatch.setenv("PORTER_RATE_LIMITS__AZURE_WRITE__BURST", "4")
    limits = Settings().rate_limits
    assert limits.azure_write == Bucket(per_second=2.5, burst=4)
    assert limits.azure_read == RateLimits().azure_read, "the other buckets keep their defaults"


def test_a_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Bucket(per_second=0, burst=1)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Bucket(per_second=1, burst=0)


def test_aws_has_no_fixed_bucket_by_default_and_is_paced_adaptively() -> None:
    # AWS publishes no rate for EKS Pod Identity or IAM reads: botocore's adaptive mode slows down only on throttling.
    from porter_identity.clouds.aws.client import AwsProvider

    pacer = Pacer("aws", RateLimits())
    assert not pacer.fixed
    assert max(pacer.wait("write") for _ in range(500)) == 0.0
    provider = AwsProvider("us-east-1", "c", pacer=pacer)
    for sdk in (provider.eks, provider.iam):
        assert sdk.meta.config.retries["mode"] == "adaptive"


def test_a_fixed_aws_bucket_still_applies_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTER_RATE_LIMITS__AWS_WRITE__PER_SECOND", "5")
    monkeypatch.setenv("PORTER_RATE_LIMITS__AWS_WRITE__BURST", "1")
    pacer = Pacer("aws", Settings().rate_limits)
    assert pacer.fixed
    pacer.wait("write")
    assert pacer.wait("write") > 0.1
