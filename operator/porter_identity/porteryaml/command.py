"""The `import` and `export` subcommands: arguments, output on stdout, every problem on stderr."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from porter_identity.api.common import DeletionPolicy
from porter_identity.porteryaml.convert import DEFAULT_SERVICE_ACCOUNT_TEMPLATE, Options, to_connections, to_porter_yaml
from porter_identity.porteryaml.parse import PorterYamlError, parse


def _service_accounts(pairs: list[str]) -> dict[str, str]:
    accounts = {}
    for pair in pairs:
        service, sep, account = pair.partition("=")
        if not sep or not service or not account:
            raise ValueError(f"--service-account takes SERVICE=NAME, not {pair!r}")
        accounts[service] = account
    return accounts


def _options(args: argparse.Namespace) -> Options:
    try:
        args.service_account_template.format(app="app", service="service")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"--service-account-template {args.service_account_template!r}: only {{app}} and {{service}} may appear"
        ) from err
    return Options(
        namespace=args.namespace,
        app=args.app,
        service_account_template=args.service_account_template,
        service_accounts=_service_accounts(args.service_account),
        deletion_policy=DeletionPolicy(args.deletion_policy) if args.deletion_policy else None,
        source=args.source,
    )


def dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, explicit_start=True)


def _import(args: argparse.Namespace) -> int:
    if args.prune and not args.apply:
        print("--prune deletes from the cluster: give --apply too", file=sys.stderr)
        return 2
    if args.dry_run and not args.apply:
        print("--dry-run is a server dry run of --apply: give --apply too", file=sys.stderr)
        return 2
    shown = str(PurePosixPath(args.file))
    try:
        imported = to_connections(parse(args.file.read_text(), shown), _options(args))
    except (PorterYamlError, ValueError) as err:
        print(err, file=sys.stderr)
        return 1
    except OSError as err:
        print(f"cannot read {args.file}: {err.strerror}", file=sys.stderr)
        return 1
    for skipped in imported.skipped:
        print(skipped.render(shown), file=sys.stderr)
    if not args.apply:
        print(dump(imported.connections), end="")
        return 0
    from kubernetes import config

    from porter_identity.porteryaml.apply import ClusterRefused, apply

    api = config.new_client_from_config(config_file=args.kubeconfig or os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
    try:
        for change in apply(api, args.namespace, imported, prune=args.prune, dry_run=args.dry_run):
            print(change.render(args.dry_run), flush=True)
    except ClusterRefused as err:
        print(err, file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    from kubernetes import config

    from porter_identity.porteryaml.apply import ClusterRefused, list_connections

    api = config.new_client_from_config(config_file=args.kubeconfig or os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
    try:
        documents = to_porter_yaml(list_connections(api, args.namespace), args.app)
    except ClusterRefused as err:
        print(err, file=sys.stderr)
        return 1
    if not documents:
        print(
            f"no connections in namespace {args.namespace}" + (f" for app {args.app}" if args.app else ""),
            file=sys.stderr,
        )
        return 1
    print(dump(documents), end="")
    return 0


def register(sub: Any) -> None:
    """Add `import` and `export` to the `porter-identity` command's subparsers."""
    imp = sub.add_parser(
        "import",
        help="turn a porter.yaml's awsRole, azureManagedIdentity and gcpServiceAccount connections into connections",
    )
    imp.add_argument("file", type=Path, help="a porter.yaml (version: v2)")
    imp.add_argument("--namespace", "-n", required=True, help="namespace of the connections and their ServiceAccounts")
    imp.add_argument(
        "--app",
        default=os.environ.get("PORTER_APP_NAME"),
        help="the app's name when the file has none; must match it otherwise (default: $PORTER_APP_NAME, as Porter)",
    )
    imp.add_argument(
        "--service-account-template",
        default=DEFAULT_SERVICE_ACCOUNT_TEMPLATE,
        help="ServiceAccount of each service, from {app} and {service}; default: %(default)s",
    )
    imp.add_argument(
        "--service-account",
        action="append",
        default=[],
        metavar="SERVICE=NAME",
        help="this service's ServiceAccount instead of the template's (repeatable)",
    )
    imp.add_argument("--deletion-policy", choices=[p.value for p in DeletionPolicy], default=None)
    imp.add_argument(
        "--source", default=None, help="the file as labels record it (e.g. its path in Git); default: FILE as given"
    )
    imp.add_argument("--apply", action="store_true", help="server-side apply them instead of printing them")
    imp.add_argument("--prune", action="store_true", help="with --apply: delete this app's connections not in FILE")
    imp.add_argument("--dry-run", action="store_true", help="with --apply: a server dry run, nothing changes")
    imp.add_argument("--kubeconfig", default=None, help="defaults to $KUBECONFIG or ~/.kube/config")
    imp.set_defaults(func=_import)

    exp = sub.add_parser("export", help="print the connections of a namespace as porter.yaml connections: blocks")
    exp.add_argument("--namespace", "-n", required=True)
    exp.add_argument("--app", default=None, help="only the connections imported for this app")
    exp.add_argument("--kubeconfig", default=None, help="defaults to $KUBECONFIG or ~/.kube/config")
    exp.set_defaults(func=_export)
