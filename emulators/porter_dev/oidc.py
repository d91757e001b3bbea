"""Verify a Kubernetes service-account token as the clouds' token services do: OIDC discovery, JWKS, claims.

Follows OpenID Connect Discovery 1.0 section 4 (the issuer serves `/.well-known/openid-configuration`, whose
`issuer` equals the token's `iss` and whose `jwks_uri` lists the signing keys) and RFC 7523 section 3 (`iss`,
`sub`, `aud`, `exp` required, `exp` in the future, signature by a listed key), which AWS EKS Pod Identity,
Microsoft Entra workload identity federation and Google STS all document for the tokens they accept
(https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token, "subjectToken").
The clouds fetch discovery over public TLS; a loopback API server has a private CA, registered with `trust`.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt

TokenProblem = Literal["malformed", "issuer", "signature", "audience", "expired"]
KEYS_TTL_SECONDS = 60.0


class TokenError(Exception):
    """Why a token was refused; `problem` picks the cloud's error code, `message` explains it."""

    def __init__(self, problem: TokenProblem, message: str) -> None:
        super().__init__(message)
        self.problem, self.message = problem, message


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims without checking anything: the services look at `iss` first to know whom to ask for keys."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise TokenError("malformed", f"The token is not a valid JWT: {err}.") from None
    if not isinstance(claims.get("iss"), str):
        raise TokenError("malformed", "The token has no iss claim.")
    return claims


def service_account_of(subject: str) -> tuple[str, str] | None:
    """(namespace, name) from a Kubernetes subject `system:serviceaccount:NS:SA`, else None."""
    parts = subject.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"] and all(parts[2:]):
        return parts[2], parts[3]
    return None


@dataclass
class Issuers:
    """Signing keys per issuer, fetched through discovery and cached briefly (refetched for an unknown key id)."""

    ca_files: dict[str, str] = field(default_factory=dict)
    keys: dict[str, tuple[float, jwt.PyJWKSet]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def trust(self, issuer: str, ca_file: str | None) -> None:
        """Fetch `issuer`'s discovery with `ca_file` as its TLS trust (a private cluster CA)."""
        with self.lock:
            if ca_file:
                self.ca_files[issuer] = ca_file
            self.keys.pop(issuer, None)

    def _get(self, url: str, issuer: str) -> Any:
        context = ssl.create_default_context(cafile=self.ca_files.get(issuer))
        with urllib.request.urlopen(url, timeout=5, context=context) as resp:
            return json.loads(resp.read())

    def _fetch(self, issuer: str) -> jwt.PyJWKSet:
        try:
            discovery = self._get(issuer.rstrip("/") + "/.well-known/openid-configuration", issuer)
            if discovery.get("issuer") != issuer:
                raise TokenError(
                    "issuer", f"The discovery document of {issuer} names issuer {discovery.get('issuer')}."
                )
            return jwt.PyJWKSet.from_dict(self._get(str(discovery["jwks_uri"]), issuer))
        except (OSError, ValueError, KeyError, jwt.PyJWTError) as err:
            raise TokenError(
                "issuer", f"Could not read the OIDC discovery document or keys of {issuer}: {err}."
            ) from None

    def key_for(self, issuer: str, kid: str | None) -> Any:
        with self.lock:
            cached = self.keys.get(issuer)
        fresh = cached is not None and time.monotonic() - cached[0] < KEYS_TTL_SECONDS
        keyset = cached[1] if cached is not None and fresh else None
        if keyset is None or not any(k.key_id == kid for k in keyset.keys):
            keyset = self._fetch(issuer)
            with self.lock:
                self.keys[issuer] = (time.monotonic(), keyset)
        found = next((k for k in keyset.keys if k.key_id == kid), None)
        if found is None:
            raise TokenError("signature", f"No key with kid {kid!r} is published by {issuer}.")
        return found.key

    def verify(self, token: str, audience: str, issuer: str | None = None) -> dict[str, Any]:
        """The verified claims; `issuer`, when given, is the only one accepted (an EKS cluster's own issuer)."""
        claims = unverified_claims(token)
        if issuer is not None and claims["iss"] != issuer:
            raise TokenError("issuer", f"The token's issuer {claims['iss']} is not {issuer}.")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.key_for(claims["iss"], kid)
            verified: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256", "ES256"],
                audience=audience,
                issuer=claims["iss"],
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired", "The token has expired.") from None
        except jwt.InvalidAudienceError:
            raise TokenError("audience", f"The token's audience {claims.get('aud')} is not {audience}.") from None
        except jwt.InvalidSignatureError:
            raise TokenError("signature", "The token's signature does not verify.") from None
        except jwt.PyJWTError as err:
            raise TokenError("malformed", f"The token is not valid: {err}.") from None
        return verified
