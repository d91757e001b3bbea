"""The emulated token services check ServiceAccount tokens as the clouds do and refuse with the clouds' errors.

A local HTTPS issuer (its own CA, discovery document and keys) signs the tokens, so expired, forged and foreign
tokens can be made, which a real API server never hands out.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
import requests
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa

from porter_dev.azure import DEFAULT_TENANT, AzureEmulator, write_certificate
from porter_dev.controlplane import free_port
from porter_dev.gcp import GcpEmulator
from porter_dev.oidc import Issuers, TokenError
from porter_dev.processes import AWS_REGION, AwsEmulator, pod_identity_trust_policy

SUB = "00000000-0000-4000-8000-0000000000c1"
POOL = "porter-tok.svc.id.goog"
KID = "k1"


@dataclass
class Issuer:
    url: str
    ca_file: Path
    key: rsa.RSAPrivateKey

    def token(
        self,
        audience: str,
        subject: str = "system:serviceaccount:shop:api",
        lifetime: int = 600,
        key: rsa.RSAPrivateKey | None = None,
        issuer: str | None = None,
    ) -> str:
        now = int(time.time())
        claims = {"iss": issuer or self.url, "sub": subject, "aud": [audience], "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": KID})


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": KID, "alg": "RS256"}
    documents = {
        "/.well-known/openid-configuration": {"issuer": url, "jwks_uri": f"{url}/openid/v1/jwks"},
        "/openid/v1/jwks": {"keys": [jwk]},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(documents.get(self.path, {})).encode()
            self.send_response(200 if self.path in documents else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    cert, cert_key = write_certificate(tmp_path_factory.mktemp("issuer"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(cert_key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Issuer(url, cert, key)
    server.shutdown()


# -- the verifier itself ------------------------------------------------------------------------------------------


def test_verifier_checks_signature_issuer_audience_and_expiry(issuer: Issuer) -> None:
    issuers = Issuers()
    issuers.trust(issuer.url, str(issuer.ca_file))
    claims = issuers.verify(issuer.token("aud-1"), "aud-1", issuer=issuer.url)
    assert claims["sub"] == "system:serviceaccount:shop:api"

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases: list[tuple[str, str]] = [
        (issuer.token("aud-2"), "audience"),
        (issuer.token("aud-1", lifetime=-60), "expired"),
        (issuer.token("aud-1", key=other_key), "signature"),
        (issuer.token("aud-1", issuer="https://127.0.0.1:1"), "issuer"),
        ("not-a-jwt", "malformed"),
    ]
    for token, problem in cases:
        with pytest.raises(TokenError) as err:
            issuers.verify(token, "aud-1")
        assert err.value.problem == problem, err.value.message


def test_verifier_needs_the_issuers_ca(issuer: Issuer) -> None:
    with pytest.raises(TokenError) as err:
        Issuers().verify(issuer.token("aud-1"), "aud-1")
    assert err.value.problem == "issuer"
    assert "discovery document" in err.value.message


# -- EKS Auth -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pod_identity(aws: AwsEmulator, issuer: Issuer) -> dict[str, Any]:
    """A cluster whose issuer is the test issuer, and a role associated with shop/api."""
    cluster = f"tok-{uuid.uuid4().hex[:6]}"
    aws.client("eks").create_cluster(
        name=cluster, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": []}
    )
    aws.set_cluster_issuer(cluster, issuer.url, issuer.ca_file)
    role = f"tok-{uuid.uuid4().hex[:6]}"
    arn = aws.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=pod_identity_trust_policy())["Role"][
        "Arn"
    ]
    aws.client("eks").create_pod_identity_association(
        clusterName=cluster, namespace="shop", serviceAccount="api", roleArn=arn
    )
    return {"cluster": cluster, "role": role, "arn": arn}


def eks_auth_error(aws: AwsEmulator, cluster: str, token: str) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        aws.client("eks-auth").assume_role_for_pod_identity(clusterName=cluster, token=token)
    response: Any = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def test_eks_auth_credentials_work_for_get_caller_identity(
    aws: AwsEmulator, issuer: Issuer, pod_identity: dict[str, Any]
) -> None:
    cluster = pod_identity["cluster"]
    answer = aws.client("eks-auth").assume_role_for_pod_identity(
        clusterName=cluster, token=issuer.token("pods.eks.amazonaws.com")
    )
    assert answer["subject"] == {"namespace": "shop", "serviceAccount": "api"}
    assert answer["audience"] == "pods.eks.amazonaws.com"
    session_arn = f"arn:aws:sts::123456789012:assumed-role/{pod_identity['role']}/eks-{cluster}-api"
    assert answer["assumedRoleUser"]["arn"] == session_arn
    creds = answer["credentials"]
    sts = boto3.session.Session(
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
        region_name=AWS_REGION,
    ).client("sts", endpoint_url=aws.endpoint)
    assert sts.get_caller_identity()["Arn"] == session_arn


def test_eks_auth_refusals(aws: AwsEmulator, issuer: Issuer, pod_identity: dict[str, Any]) -> None:
    cluster, aud = pod_identity["cluster"], "pods.eks.amazonaws.com"
    code, status, message = eks_auth_error(aws, cluster, issuer.token("sts.amazonaws.com"))
    assert (code, status) == ("InvalidTokenException", 400) and "audience" in message
    assert eks_auth_error(aws, cluster, issuer.token(aud, lifetime=-60))[:2] == ("ExpiredTokenException", 400)
    code, status, message = eks_auth_error(aws, cluster, issuer.token(aud, issuer="https://elsewhere.example"))
    assert (code, status) == ("InvalidTokenException", 400) and "issuer" in message
    code, status, message = eks_auth_error(aws, cluster, issuer.token(aud, subject="system:serviceaccount:shop:web"))
    assert (code, status) == ("ResourceNotFoundException", 404) and "web" in message
    code, status, message = eks_auth_error(aws, "no-such-cluster", issuer.token(aud))
    assert (code, status, message) == ("ResourceNotFoundException", 404, "No cluster found for name: no-such-cluster.")


def test_eks_auth_needs_tag_session_in_the_trust_unless_session_tags_are_disabled(
    aws: AwsEmulator, issuer: Issuer, pod_identity: dict[str, Any]
) -> None:
    cluster, iam, eks = pod_identity["cluster"], aws.client("iam"), aws.client("eks")
    role = f"tok-{uuid.uuid4().hex[:6]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    made = eks.create_pod_identity_association(
        clusterName=cluster, namespace="shop", serviceAccount="tags", roleArn=arn
    )
    token = issuer.token("pods.eks.amazonaws.com", subject="system:serviceaccount:shop:tags")
    code, status, message = eks_auth_error(aws, cluster, token)
    assert (code, status) == ("AccessDeniedException", 400)
    assert "sts:TagSession" in message and arn in message

    eks.update_pod_identity_association(
        clusterName=cluster, associationId=made["association"]["associationId"], disableSessionTags=True
    )
    answer = aws.client("eks-auth").assume_role_for_pod_identity(clusterName=cluster, token=token)
    assert answer["assumedRoleUser"]["arn"].startswith(f"arn:aws:sts::123456789012:assumed-role/{role}/")


# -- Microsoft Entra ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[AzureEmulator]:
    emu = AzureEmulator(logdir=tmp_path_factory.mktemp("entra")).start()
    emu.trust_issuer(issuer.url, issuer.ca_file)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def entra_identity(entra: AzureEmulator, issuer: Issuer) -> dict[str, Any]:
    """An identity whose one federated credential trusts shop/api of the test issuer."""
    made = entra.seed_identity(SUB, "tok-rg", "tok-id")
    entra.client(SUB).federated_identity_credentials.create_or_update(
        "tok-rg",
        "tok-id",
        "shop-api",
        {
            "issuer": issuer.url,
            "subject": "system:serviceaccount:shop:api",
            "audiences": ["api://AzureADTokenExchange"],
        },
    )
    return made


EntraPost = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def entra_token(entra: AzureEmulator, entra_identity: dict[str, Any]) -> EntraPost:
    def post(assertion: str, client_id: str | None = None, tenant: str = DEFAULT_TENANT, scope: str = "") -> Any:
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id or entra_identity["properties"]["clientId"],
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": scope or "https://management.azure.com/.default",
        }
        resp = requests.post(
            f"{entra.endpoint}/{tenant}/oauth2/v2.0/token", data=form, verify=str(entra.ca_file), timeout=10
        )
        return resp.status_code, resp.json()

    return post


def test_entra_issues_a_token_arm_accepts(
    entra: AzureEmulator, issuer: Issuer, entra_token: EntraPost, entra_identity: dict[str, Any]
) -> None:
    status, body = entra_token(issuer.token("api://AzureADTokenExchange"))
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    props = entra_identity["properties"]
    assert (claims["appid"], claims["oid"], claims["tid"]) == (props["clientId"], props["principalId"], DEFAULT_TENANT)
    assert claims["aud"] == "https://management.azure.com"

    arm = f"{entra.endpoint}/subscriptions?api-version=2022-12-01"
    ok = requests.get(arm, headers={"Authorization": f"Bearer {body['access_token']}"}, verify=str(entra.ca_file))
    assert (ok.status_code, ok.json()) == (200, {"value": []})
    forged = jwt.encode({**claims, "exp": int(time.time()) + 60}, issuer.key, algorithm="RS256")
    refused = requests.get(arm, headers={"Authorization": f"Bearer {forged}"}, verify=str(entra.ca_file))
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")


def test_entra_refusals_carry_the_aadsts_codes(issuer: Issuer, entra_token: EntraPost) -> None:
    aud = "api://AzureADTokenExchange"
    cases: list[tuple[dict[str, Any], int, str, int]] = [
        ({"assertion": issuer.token(aud, issuer="https://elsewhere.example")}, 401, "invalid_client", 700211),
        ({"assertion": issuer.token(aud, subject="system:serviceaccount:shop:web")}, 401, "invalid_client", 700213),
        ({"assertion": issuer.token("api://Other")}, 401, "invalid_client", 700212),
        ({"assertion": issuer.token(aud, lifetime=-60)}, 400, "invalid_client", 700024),
        ({"assertion": issuer.token(aud, key=rsa.generate_private_key(65537, 2048))}, 401, "invalid_client", 700027),
        ({"assertion": issuer.token(aud), "client_id": str(uuid.uuid4())}, 400, "unauthorized_client", 700016),
        ({"assertion": issuer.token(aud), "tenant": str(uuid.uuid4())}, 400, "invalid_request", 90002),
        ({"assertion": issuer.token(aud), "scope": "https://management.azure.com"}, 400, "invalid_scope", 70011),
    ]
    for kwargs, status, error, code in cases:
        got_status, body = entra_token(**kwargs)
        assert (got_status, body["error"], body["error_codes"]) == (status, error, [code]), body
        assert body["error_description"].startswith(f"AADSTS{code}: ")


def test_entra_discovery_document_is_what_msal_reads(entra: AzureEmulator) -> None:
    found = requests.get(
        f"{entra.endpoint}/{DEFAULT_TENANT}/v2.0/.well-known/openid-configuration", verify=str(entra.ca_file)
    ).json()
    assert found["token_endpoint"] == f"{entra.endpoint}/{DEFAULT_TENANT}/oauth2/v2.0/token"
    keys = requests.get(found["jwks_uri"], verify=str(entra.ca_file)).json()["keys"]
    assert [k["kty"] for k in keys] == ["RSA"]


# -- Google STS and IAM Credentials -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def google(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[GcpEmulator]:
    emu = GcpEmulator(logdir=tmp_path_factory.mktemp("gcp-sts")).start()
    emu.add_workload_pool_provider(POOL, issuer.url, issuer.ca_file)
    yield emu
    emu.stop()


def sts(google: GcpEmulator, issuer: Issuer, token: str, audience: str | None = None) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": audience or f"identitynamespace:{POOL}:{issuer.url}",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    }
    resp = requests.post(f"{google.rest_endpoint}/v1/token", data=urllib.parse.urlencode(form), timeout=10)
    return resp.status_code, resp.json()


def generate(google: GcpEmulator, email: str, bearer: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    resp = requests.post(
        f"{google.rest_endpoint}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
        json={"scope": ["https://www.googleapis.com/auth/cloud-platform"]},
        headers=headers,
        timeout=10,
    )
    return resp.status_code, resp.json()


def test_sts_refusals(google: GcpEmulator, issuer: Issuer) -> None:
    status, body = sts(google, issuer, issuer.token(POOL), audience=f"identitynamespace:{POOL}:https://unknown.example")
    assert (status, body["error"]) == (400, "invalid_request")
    assert body["error_description"].startswith('Invalid value for "audience".')
    status, body = sts(google, issuer, issuer.token("other.svc.id.goog"))
    assert (status, body["error"]) == (400, "invalid_grant") and "audience" in body["error_description"]
    status, body = sts(google, issuer, issuer.token(POOL, lifetime=-60))
    assert (status, body["error"], body["error_description"]) == (400, "invalid_grant", "The ID Token has expired.")


def test_generate_access_token_needs_the_workload_identity_member(google: GcpEmulator, issuer: Issuer) -> None:
    email = google.seed_service_account("porter-tok", f"tok-{uuid.uuid4().hex[:6]}")
    status, body = sts(google, issuer, issuer.token(POOL))
    assert status == 200 and body["token_type"] == "Bearer", body
    federated = body["access_token"]

    assert generate(google, email, None)[0] == 401
    status, body = generate(google, email, federated)
    assert (status, body["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert "iam.serviceAccounts.getAccessToken" in body["error"]["message"]

    iam = google.client()
    resource = f"projects/-/serviceAccounts/{email}"
    policy = iam.get_iam_policy(request={"resource": resource})
    policy.bindings.add(role="roles/iam.workloadIdentityUser", members=[f"serviceAccount:{POOL}[shop/web]"])
    iam.set_iam_policy(request={"resource": resource, "policy": policy})
    assert generate(google, email, federated)[0] == 403  # another KSA's member does not count

    policy = iam.get_iam_policy(request={"resource": resource})
    policy.bindings[0].members.append(f"serviceAccount:{POOL}[shop/api]")
    iam.set_iam_policy(request={"resource": resource, "policy": policy})
    status, body = generate(google, email, federated)
    assert status == 200 and body["accessToken"].startswith("ya29.") and body["expireTime"].endswith("Z")
