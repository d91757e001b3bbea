"""Google STS token exchange and IAM Credentials generateAccessToken for the GCP emulator, over REST.

Follows the Security Token Service reference (https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token:
grant_type `urn:ietf:params:oauth:grant-type:token-exchange`, `subject_token` a JWT whose issuer serves OIDC
discovery, `aud` as the provider allows, errors as OAuth 2.0 JSON `{"error", "error_description"}`: an unknown
provider in `audience` is `invalid_request` "Invalid value for "audience"...", a refused token `invalid_grant`)
and fleet / GKE Workload Identity, whose credential configuration uses the audience
`identitynamespace:POOL:IDENTITY_PROVIDER` with a Kubernetes token whose `aud` is POOL; the federated principal is
`serviceAccount:POOL[NAMESPACE/KSA]`. generateAccessToken follows the IAM Service Account Credentials reference
(https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken):
the caller needs `iam.serviceAccounts.getAccessToken`, which `roles/iam.workloadIdentityUser` and
`roles/iam.serviceAccountTokenCreator` grant; otherwise 403 PERMISSION_DENIED "Permission
'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)." in Google's JSON error shape.
The invalid_grant descriptions are this emulator's wording.
"""

from __future__ import annotations

import datetime
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from porter_dev.oidc import Issuers, TokenError, service_account_of

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
SUBJECT_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
IDENTITY_NAMESPACE = re.compile(r"^identitynamespace:(?P<pool>[^:]+\.svc\.id\.goog):(?P<provider>.+)$")
GENERATE = re.compile(r"^/v1/projects/[^/]+/serviceAccounts/(?P<account>[^/:]+):generateAccessToken$")
GRANTING_ROLES = ("roles/iam.workloadIdentityUser", "roles/iam.serviceAccountTokenCreator")
TOKEN_SECONDS = 3600


def _oauth_error(error: str, description: str) -> tuple[int, dict[str, Any]]:
    return (400 if error != "invalid_client" else 401), {"error": error, "error_description": description}


def _google_error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": status, "message": message, "status": code}}


@dataclass
class TokenService:
    """Workload pools with their identity providers (cluster issuers), and the tokens handed out."""

    members_of: Any  # (email) -> members holding a granting role, or None for a missing account
    pools: dict[str, set[str]] = field(default_factory=dict)
    issuers: Issuers = field(default_factory=Issuers)
    federated: dict[str, str] = field(default_factory=dict)  # federated token -> principal member
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_provider(self, pool: str, issuer: str, ca_file: str | None) -> None:
        with self.lock:
            self.pools.setdefault(pool, set()).add(issuer)
        self.issuers.trust(issuer, ca_file)

    def exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != EXCHANGE:
            return _oauth_error("unsupported_grant_type", f"Unsupported grant_type {form.get('grant_type')!r}.")
        if form.get("subject_token_type") not in SUBJECT_TYPES:
            return _oauth_error("invalid_request", 'Invalid value for "subject_token_type".')
        audience = form.get("audience", "")
        found = IDENTITY_NAMESPACE.match(audience)
        with self.lock:
            known = found is not None and found.group("provider") in self.pools.get(found.group("pool"), set())
        if found is None or not known:
            return _oauth_error(
                "invalid_request",
                'Invalid value for "audience". This value should be the full resource name of the Identity Provider. '
                "See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the list of "
                "possible formats.",
            )
        pool, provider = found.group("pool"), found.group("provider")
        try:
            claims = self.issuers.verify(form.get("subject_token", ""), pool, issuer=provider)
        except TokenError as err:
            return _oauth_error("invalid_grant", _grant_problem(err))
        subject = service_account_of(str(claims.get("sub", "")))
        if subject is None:
            return _oauth_error("invalid_grant", "The subject in the ID Token is not a Kubernetes service account.")
        token = "ya29.emu-federated-" + secrets.token_urlsafe(24)
        with self.lock:
            self.federated[token] = f"serviceAccount:{pool}[{subject[0]}/{subject[1]}]"
        return 200, {
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": TOKEN_SECONDS,
        }

    def generate_access_token(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        found = GENERATE.match(path)
        if found is None:
            return _google_error(404, "NOT_FOUND", f"No route {path}.")
        scheme, _, bearer = authorization.partition(" ")
        with self.lock:
            member = self.federated.get(bearer.strip()) if scheme.lower() == "bearer" else None
        if member is None:
            return _google_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token."
            )
        email = found.group("account")
        members = self.members_of(email)
        if members is None or member not in members:
            return _google_error(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
            )
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=TOKEN_SECONDS)
        return 200, {
            "accessToken": "ya29.emu-" + secrets.token_urlsafe(24),
            "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _grant_problem(err: TokenError) -> str:
    if err.problem == "audience":
        return f"The audience in ID Token does not match the expected audience. {err.message}"
    if err.problem == "issuer":
        return f"The issuer in ID Token does not match the expected issuer. {err.message}"
    if err.problem == "expired":
        return "The ID Token has expired."
    return f"Invalid ID Token. {err.message}"
