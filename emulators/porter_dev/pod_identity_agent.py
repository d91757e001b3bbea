"""A test-only EKS Pod Identity Agent for the local node: the host-side credentials endpoint pods call.

Follows "Understand how EKS Pod Identity works" (https://docs.aws.amazon.com/eks/latest/userguide/
pod-id-how-it-works.html) and the agent's source (https://github.com/aws/eks-pod-identity-agent): the agent
listens on the link-local address 169.254.170.23, port 80, in the host network; the SDK's container credential
provider (https://docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html) sends
`GET /v1/credentials` with the pod's projected ServiceAccount token (audience `pods.eks.amazonaws.com`, read from
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) as the `Authorization` header; the agent passes the token to EKS Auth
`AssumeRoleForPodIdentity` for its cluster and answers the credentials in the container credentials format
(AccessKeyId, SecretAccessKey, Token, AccountId, Expiration). A refusal of EKS Auth is answered with its HTTP
status and a body naming the error code and message (the real agent's wording differs). No caching: every
request asks EKS Auth, so a removed association is refused at once (the real agent caches for a while).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from porter_dev.node import POD_IDENTITY_AGENT_ADDRESS
from porter_dev.processes import AWS_REGION, spawn_module, stop_process

PATH = "/v1/credentials"


def credentials_answer(eks_auth_answer: dict[str, Any]) -> dict[str, str]:
    """EKS Auth's answer in the container credentials format the SDKs read."""
    creds = eks_auth_answer["credentials"]
    expiration = creds["expiration"]
    if isinstance(expiration, int | float):
        expiration = datetime.datetime.fromtimestamp(expiration, tz=datetime.UTC)
    arn = str(eks_auth_answer["assumedRoleUser"]["arn"])
    return {
        "AccessKeyId": creds["accessKeyId"],
        "SecretAccessKey": creds["secretAccessKey"],
        "Token": creds["sessionToken"],
        "AccountId": arn.split(":")[4],
        "Expiration": expiration.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def make_handler(endpoint: str, cluster: str) -> type[BaseHTTPRequestHandler]:
    client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=AWS_REGION
    ).client("eks-auth", endpoint_url=endpoint)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != PATH:
                return self._answer(404, b"not found", "text/plain")
            token = self.headers.get("Authorization", "").strip()
            if not token:
                return self._answer(
                    400, b"Authorization header with the service account token is required", "text/plain"
                )
            try:
                answer = client.assume_role_for_pod_identity(clusterName=cluster, token=token)
            except ClientError as err:
                error = err.response.get("Error", {})
                status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
                body = f"{error.get('Code', 'Error')}: {error.get('Message', '')}".encode()
                return self._answer(status, body, "text/plain")
            return self._answer(200, json.dumps(credentials_answer(answer)).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"pod-identity-agent: {format % args}\n")

    return Handler


@dataclass
class PodIdentityAgent:
    """The agent as its own process on POD_IDENTITY_AGENT_ADDRESS:80 (the address must exist: Node.create_bridge)."""

    logdir: Path
    eks_auth_endpoint: str
    cluster: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{POD_IDENTITY_AGENT_ADDRESS}{PATH}"

    def start(self, timeout: float = 30.0) -> PodIdentityAgent:
        log = self.logdir / "pod-identity-agent.log"
        args = ["--eks-auth-endpoint", self.eks_auth_endpoint, "--cluster", self.cluster]
        self.proc = spawn_module("porter_dev.pod_identity_agent", args, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pod identity agent exited ({self.proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url, timeout=1).close()
            except urllib.error.HTTPError as err:
                if err.code == 400:  # up, and refusing a request without a token
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url} did not answer within {timeout}s")

    def stop(self) -> None:
        stop_process(self.proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter_dev.pod_identity_agent", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=POD_IDENTITY_AGENT_ADDRESS)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--eks-auth-endpoint", required=True, help="the AWS emulator's URL")
    parser.add_argument("--cluster", required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.eks_auth_endpoint, args.cluster))
    print(f"pod identity agent on http://{args.host}:{args.port}{PATH}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
