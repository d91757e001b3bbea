"""Microsoft Entra ID token endpoint for the Azure emulator: client credentials with a federated client assertion.

Follows "Microsoft identity platform and the OAuth 2.0 client credentials flow" (second case: a certificate or
federated credential as `client_assertion`, `client_assertion_type`
`urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, `scope` ending in `/.default`), the OpenID
Connect discovery document MSAL reads at `{authority}/{tenant}/v2.0/.well-known/openid-configuration`, and
"Workload identity federation" with the error codes of "Microsoft Entra authentication and authorization
error codes" (https://learn.microsoft.com/entra/identity-platform/reference-error-codes):
AADSTS700211 no federated credential trusts the assertion's issuer, AADSTS700212 none with its audience,
AADSTS700213 none with its subject (invalid_client, 401, "Please check your federated identity credential
Subject, Audience and Issuer against the presented assertion."), AADSTS700024 assertion outside its valid time
range, AADSTS700027 signature validation failed, AADSTS700016 unknown client id, AADSTS90002 unknown tenant,
AADSTS70011 invalid scope. The access tokens are RS256 JWTs for `https://management.azure.com` that the
emulator's ARM verifies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from porter_dev.oidc import Issuers, TokenError, unverified_claims

ARM_AUDIENCE = "https://management.azure.com"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CHECK_FIC = (
    "Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
)
TOKEN_SECONDS = 3600


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.code, self.message = status, error, code, message

    def to_json(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.message}\r\nTrace ID: {uuid.uuid4()}",
            "error_codes": [self.code],
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


@dataclass(frozen=True)
class Application:
    """What Entra knows of a managed identity's service principal: ids and federated credentials."""

    client_id: str
    principal_id: str
    tenant_id: str
    credentials: list[tuple[str, str, list[str]]]  # (issuer, subject, audiences)


@dataclass
class Entra:
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)
    issuers: Issuers = field(default_factory=Issuers)

    def openid_configuration(self, base: str, tenant: str) -> dict[str, Any]:
        return {
            "issuer": f"{base}/{tenant}/v2.0",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(
        self, tenant: str, form: dict[str, str], tenants: set[str], apps: Iterable[Application]
    ) -> dict[str, Any]:
        """The client-credentials answer, or EntraError as Entra refuses."""
        if tenant not in tenants:
            raise EntraError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        scope = form.get("scope", "")
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != ASSERTION_TYPE:
            raise EntraError(400, "invalid_request", 900144, "Only client_credentials with a jwt-bearer assertion.")
        if not scope.endswith("/.default"):
            raise EntraError(400, "invalid_scope", 70011, f"The provided value for scope {scope} is not valid.")
        client_id = form.get("client_id", "")
        app = next((a for a in apps if a.client_id == client_id and a.tenant_id == tenant), None)
        if app is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        self._check_assertion(form.get("client_assertion", ""), app)
        now = int(time.time())
        claims = {
            "aud": scope.removesuffix("/.default").rstrip("/"),
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_SECONDS,
            "appid": app.client_id,
            "oid": app.principal_id,
            "sub": app.principal_id,
            "tid": tenant,
            "idtyp": "app",
        }
        access = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
            "ext_expires_in": TOKEN_SECONDS,
            "access_token": access,
        }

    def _check_assertion(self, assertion: str, app: Application) -> None:
        try:
            claims = unverified_claims(assertion)
        except TokenError as err:
            raise EntraError(
                400, "invalid_request", 50027, f"JWT token is invalid or malformed. {err.message}"
            ) from None
        issuer, subject, audience = claims["iss"], str(claims.get("sub")), claims.get("aud")
        by_issuer = [c for c in app.credentials if c[0] == issuer]
        if not by_issuer:
            raise EntraError(
                401,
                "invalid_client",
                700211,
                f"No matching federated identity record found for presented assertion issuer '{issuer}'. {CHECK_FIC}",
            )
        by_subject = [c for c in by_issuer if c[1] == subject]
        if not by_subject:
            raise EntraError(
                401,
                "invalid_client",
                700213,
                f"No matching federated identity record found for presented assertion subject '{subject}'. {CHECK_FIC}",
            )
        audiences = audience if isinstance(audience, list) else [audience]
        matching = next((aud for c in by_subject for aud in c[2] if aud in audiences), None)
        if matching is None:
            raise EntraError(
                401,
                "invalid_client",
                700212,
                f"No matching federated identity record found for presented assertion audience '{audience}'. "
                f"{CHECK_FIC}",
            )
        try:
            self.issuers.verify(assertion, matching, issuer=issuer)
        except TokenError as err:
            if err.problem == "expired":
                raise EntraError(
                    400, "invalid_client", 700024, "Client assertion is not within its valid time range."
                ) from None
            raise EntraError(
                401, "invalid_client", 700027, f"Client assertion failed signature validation. {err.message}"
            ) from None

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """Claims of a token this Entra issued for ARM; jwt.PyJWTError otherwise."""
        claims: dict[str, Any] = jwt.decode(
            token, self.key.public_key(), algorithms=["RS256"], audience=[ARM_AUDIENCE, ARM_AUDIENCE + "/"]
        )
        return claims
