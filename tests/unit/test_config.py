"""Operator settings from PORTER_* environment variables."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from porter_identity.config import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PORTER_* variables from the machine running the tests."""
    for key in list(os.environ):
        if key.upper().startswith("PORTER_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = Settings()
    assert s.aws_region == "us-east-1"
    assert s.aws_account_id is None
    assert s.eks_cluster_name is None
    assert s.aws_max_attempts == 3
    assert s.retry_base_seconds == 1.0
    assert s.retry_max_seconds == 120.0
    assert s.stalled_recheck_seconds == 300.0
    assert s.max_workers == 60


def test_reads_porter_env(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PORTER_AWS_REGION": "eu-west-1",
        "PORTER_AWS_ACCOUNT_ID": "123456789012",
        "PORTER_EKS_CLUSTER_NAME": "prod",
        "PORTER_AWS_MAX_ATTEMPTS": "5",
        "PORTER_RETRY_BASE_SECONDS": "0.5",
        "PORTER_RETRY_MAX_SECONDS": "4",
        "PORTER_STALLED_RECHECK_SECONDS": "60",
        "PORTER_MAX_WORKERS": "7",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.aws_region == "eu-west-1"
    assert s.aws_account_id == "123456789012"
    assert s.eks_cluster_name == "prod"
    assert s.aws_max_attempts == 5
    assert s.retry_base_seconds == 0.5
    assert s.retry_max_seconds == 4.0
    assert s.stalled_recheck_seconds == 60.0
    assert s.max_workers == 7


def test_account_id_keeps_leading_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTER_AWS_ACCOUNT_ID", "012345678901")
    assert Settings().aws_account_id == "012345678901"


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("porter_eks_cluster_name", "lower")
    assert Settings().eks_cluster_name == "lower"


def test_unprefixed_and_unknown_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    monkeypatch.setenv("EKS_CLUSTER_NAME", "nope")
    monkeypatch.setenv("PORTER_SOMETHING_ELSE", "x")
    s = Settings()
    assert s.aws_region == "us-east-1"
    assert s.eks_cluster_name is None
    assert not hasattr(s, "something_else")


@pytest.mark.parametrize(
    "account",
    ["12345678901", "1234567890123", "12345678901a", "abcdefghijkl", "123-456-7890", " 123456789012", ""],
)
def test_rejects_bad_account_id(monkeypatch: pytest.MonkeyPatch, account: str) -> None:
    monkeypatch.setenv("PORTER_AWS_ACCOUNT_ID", account)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [e["loc"] for e in info.value.errors()] == [("aws_account_id",)]


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("PORTER_AWS_MAX_ATTEMPTS", "0", "aws_max_attempts"),
        ("PORTER_AWS_MAX_ATTEMPTS", "11", "aws_max_attempts"),
        ("PORTER_AWS_MAX_ATTEMPTS", "three", "aws_max_attempts"),
        ("PORTER_RETRY_BASE_SECONDS", "0", "retry_base_seconds"),
        ("PORTER_RETRY_BASE_SECONDS", "-1", "retry_base_seconds"),
        ("PORTER_RETRY_MAX_SECONDS", "0", "retry_max_seconds"),
        ("PORTER_STALLED_RECHECK_SECONDS", "0", "stalled_recheck_seconds"),
        ("PORTER_MAX_WORKERS", "0", "max_workers"),
    ],
)
def test_rejects_out_of_range_tuning(monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("10", 10)])
def test_max_attempts_bounds_are_inclusive(monkeypatch: pytest.MonkeyPatch, value: str, expected: int) -> None:
    monkeypatch.setenv("PORTER_AWS_MAX_ATTEMPTS", value)
    assert Settings().aws_max_attempts == expected


def test_keyword_arguments_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTER_AWS_REGION", "eu-west-1")
    assert Settings(aws_region="us-west-2").aws_region == "us-west-2"


def test_security_settings_default_to_deny_and_warn_only(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert (s.policy_file, s.webhook_port, s.webhook_cert_dir, s.block_broad_permissions) == (None, 9443, None, False)
    monkeypatch.setenv("PORTER_POLICY_FILE", "/etc/porter/policy.yaml")
    monkeypatch.setenv("PORTER_WEBHOOK_PORT", "0")
    monkeypatch.setenv("PORTER_BLOCK_BROAD_PERMISSIONS", "true")
    s = Settings()
    assert (s.policy_file, s.webhook_port, s.block_broad_permissions) == ("/etc/porter/policy.yaml", 0, True)
    monkeypatch.setenv("PORTER_WEBHOOK_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings()


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    from porter_identity.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"porter-identity {metadata.version('porter-identity')}"
