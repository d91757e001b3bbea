"""porter.yaml connections to ServiceIdentityConnection objects and back, without I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from porter_identity import API_VERSION, GROUP
from porter_identity.api.common import DeletionPolicy
from porter_identity.api.connection import KIND, ConnectionSpec, Provider
from porter_identity.porteryaml.parse import Parsed, PorterYamlError, Problem
from porter_identity.porteryaml.schema import (
    AWS_ROLE,
    AZURE_MANAGED_IDENTITY,
    GCP_SERVICE_ACCOUNT,
    OURS,
    AwsRole,
    AzureManagedIdentity,
    GcpServiceAccount,
    OtherConnection,
)

# Who wrote the object: also the server-side apply field manager, so `kubectl get --show-managed-fields` agrees.
MANAGER = "porter-identity-import"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
APP_LABEL = f"{GROUP}/porter-app"
SERVICE_LABEL = f"{GROUP}/porter-service"
SOURCE_LABEL = f"{GROUP}/porter-source"
SOURCE_ANNOTATION = f"{GROUP}/porter-source-file"
DEFAULT_SERVICE_ACCOUNT_TEMPLATE = "{service}"
PROVIDER_OF = {AWS_ROLE: Provider.AWS, AZURE_MANAGED_IDENTITY: Provider.AZURE, GCP_SERVICE_ACCOUNT: Provider.GCP}
LABEL_VALUE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE_MAX = 63


@dataclass(frozen=True)
class Options:
    """What the command line adds to the file: where the connections go and which ServiceAccounts they bind."""

    namespace: str
    app: str | None = None
    service_account_template: str = DEFAULT_SERVICE_ACCOUNT_TEMPLATE
    service_accounts: Mapping[str, str] = field(default_factory=dict)
    deletion_policy: DeletionPolicy | None = None
    source: str | None = None  # the file as labels record it, when not as read (e.g. its path in Git)


@dataclass(frozen=True)
class Imported:
    """The connections of one app, sorted by name, and the connections skipped because they are not ours."""

    app: str
    connections: list[dict[str, Any]]
    skipped: list[Problem]


def source_label(source: str) -> str:
    """The source file as a label value: the path itself when it is one, else a hash of it."""
    if len(source) <= LABEL_VALUE_MAX and LABEL_VALUE.fullmatch(source):
        return source
    return "sha256-" + hashlib.sha256(source.encode()).hexdigest()[:40]


def connection_name(app: str, service: str, provider: Provider) -> str:
    # App and service names are at most 31 of [a-z0-9-] (Porter's rule): always a DNS-1123 name of at most 69.
    return f"{app}-{service}-{provider.value}"


def _spec_block(conn: AwsRole | AzureManagedIdentity | GcpServiceAccount) -> dict[str, Any]:
    return conn.model_dump(by_alias=True, exclude={"type"})


def _service_account(options: Options, app: str, service: str) -> str:
    if service in options.service_accounts:
        return options.service_accounts[service]
    return options.service_account_template.format(app=app, service=service)


def _app_name(parsed: Parsed, options: Options) -> str:
    named, given = parsed.app.name, options.app
    if named is not None and given is not None and named != given:
        problem = Problem(parsed.line(["name"]), None, f"name {named} does not match --app {given}")
        raise PorterYamlError(parsed.source, [problem])
    if named is None and given is None:
        raise PorterYamlError(parsed.source, [Problem(1, None, "the app has no name: add name: or pass --app")])
    return named or str(given)


def to_connections(parsed: Parsed, options: Options) -> Imported:
    """One connection per awsRole, azureManagedIdentity and gcpServiceAccount connection of each service."""
    app = _app_name(parsed, options)
    unknown = sorted(set(options.service_accounts) - {s.name for s in parsed.app.services})
    if unknown:
        raise ValueError(f"--service-account names services that are not in {parsed.source}: {', '.join(unknown)}")
    problems: list[Problem] = []
    skipped: list[Problem] = []
    connections: list[dict[str, Any]] = []
    services_seen: set[str] = set()
    owners: dict[tuple[str, Provider], str] = {}
    for i, service in enumerate(parsed.app.services):
        if service.name in services_seen:
            problems.append(
                Problem(parsed.line(["services", i, "name"]), service.name, "a second service of this name")
            )
        services_seen.add(service.name)
        types_seen: set[str] = set()
        account = _service_account(options, app, service.name)
        for j, conn in enumerate(service.connections):
            line = parsed.line(["services", i, "connections", j])
            if isinstance(conn, OtherConnection):
                skipped.append(Problem(line, service.name, f"connection type {conn.type} skipped: not served here"))
                continue
            if conn.type in types_seen:
                # Porter's rule: a service has several connections but only one of each type.
                problems.append(Problem(line, service.name, f"a second {conn.type} connection; Porter allows one"))
                continue
            types_seen.add(conn.type)
            provider = PROVIDER_OF[conn.type]
            owner = owners.setdefault((account, provider), service.name)
            if owner != service.name:
                message = f"ServiceAccount {account} already has its {conn.type} connection from service {owner}"
                problems.append(Problem(line, service.name, message))
                continue
            connections.append(_connection(parsed, options, app, service.name, account, conn, line))
    if problems:
        raise PorterYamlError(parsed.source, problems)
    return Imported(app, sorted(connections, key=lambda c: str(c["metadata"]["name"])), skipped)


def _connection(
    parsed: Parsed,
    options: Options,
    app: str,
    service: str,
    account: str,
    conn: AwsRole | AzureManagedIdentity | GcpServiceAccount,
    line: int,
) -> dict[str, Any]:
    provider = PROVIDER_OF[conn.type]
    source = options.source or parsed.source
    spec: dict[str, Any] = {"serviceAccountName": account, provider.value: _spec_block(conn)}
    if options.deletion_policy is not None:
        spec["deletionPolicy"] = options.deletion_policy.value
    try:
        ConnectionSpec.model_validate(spec)
    except ValidationError as err:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        raise PorterYamlError(parsed.source, [Problem(line, service, reasons)]) from err
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": connection_name(app, service, provider),
            "namespace": options.namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGER,
                APP_LABEL: app,
                SERVICE_LABEL: service,
                SOURCE_LABEL: source_label(source),
            },
            "annotations": {SOURCE_ANNOTATION: source},
        },
        "spec": spec,
    }


def _porter_connection(spec: ConnectionSpec) -> dict[str, Any]:
    if spec.aws is not None:
        return {"type": AWS_ROLE, "role": spec.aws.role}
    if spec.azure is not None:
        return {
            "type": AZURE_MANAGED_IDENTITY,
            "identityName": spec.azure.identity_name,
            "resourceGroup": spec.azure.resource_group,
        }
    if spec.gcp is not None:
        return {"type": GCP_SERVICE_ACCOUNT, "serviceAccountEmail": spec.gcp.service_account_email}
    raise ValueError("exactly one of aws, azure or gcp must be set")


def to_porter_yaml(objects: Iterable[Mapping[str, Any]], app: str | None = None) -> list[dict[str, Any]]:
    """porter.yaml documents, one per app, with the `connections:` of each service.

    Connections that `import` wrote carry their app and service labels; any other connection is listed under a
    service named after its ServiceAccount, in a document without a name."""
    apps: dict[str | None, dict[str, list[dict[str, Any]]]] = {}
    for obj in objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if app is not None and labels.get(APP_LABEL) != app:
            continue
        spec = ConnectionSpec.model_validate(obj["spec"])
        service = labels.get(SERVICE_LABEL) or spec.service_account_name
        apps.setdefault(labels.get(APP_LABEL), {}).setdefault(service, []).append(_porter_connection(spec))
    documents = []
    for name in sorted(apps, key=lambda n: (n is None, n or "")):
        services: list[dict[str, Any]] = [
            {"name": service, "connections": sorted(conns, key=lambda c: (OURS.index(c["type"]), str(c)))}
            for service, conns in sorted(apps[name].items())
        ]
        documents.append({"version": "v2", **({"name": name} if name else {}), "services": services})
    return documents
