"""What the check's per-cloud exchanges share: the caller's options and the ServiceAccount token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from porter_identity.api.connection import ServiceIdentityConnection
from porter_identity.check.verdict import Seen, Verdict
from porter_identity.config import Settings


@dataclass(frozen=True)
class Options:
    """What the caller chose: `audience` overrides the cloud's (to diagnose), `aws_endpoint_url` the SDK default."""

    audience: str | None = None
    aws_endpoint_url: str | None = None


@dataclass(frozen=True)
class ServiceAccountToken:
    token: str  # never printed
    claims: dict[str, Any]  # read without verification: what the cloud will see


Exchange = Callable[[ServiceIdentityConnection, dict[str, str], ServiceAccountToken, Settings, Options, Verdict], str]
# What the cloud's own API shows of the connection's identity and link (None: it could not be read).
Probe = Callable[[ServiceIdentityConnection, Settings, Options], Seen | None]
