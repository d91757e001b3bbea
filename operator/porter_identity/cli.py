"""The `porter-identity` command: run the operator, write CRDs, render the inventory, diff, check, import and
export porter.yaml connections, the sandbox."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from porter_identity.porteryaml import command as porteryaml

# The same generated CRDs at the top level (kubectl apply -f crds/) and in the Helm chart, which installs them.
CRD_DIRS = [Path("crds"), Path("charts/porter-identity/crds")]
CRD_REFERENCE = Path("docs/crd-reference.md")


def _crds(args: argparse.Namespace) -> int:
    from porter_identity.api import crd, reference

    for directory in args.output or CRD_DIRS:
        for path in crd.write(directory):
            print(path)
    args.reference.parent.mkdir(parents=True, exist_ok=True)
    args.reference.write_text(reference.render())
    print(args.reference)
    return 0


def _run(args: argparse.Namespace) -> int:
    from porter_identity import runner

    return runner.run(namespaces=args.namespace, log_format=args.log_format)


def _roleset_service(api: Any) -> Any:
    from functools import partial

    from porter_identity.config import Settings
    from porter_identity.iam.sync import RoleSetService
    from porter_identity.kube import secrets
    from porter_identity.providers.iam import AssumedRoles

    # The same account check as the operator's (PORTER_AWS_ACCOUNT_ID): diff and inventory read no other account.
    return RoleSetService(AssumedRoles(), partial(secrets.read_key, api), Settings().aws_account_id)


def _load_roleset(api: Any, name: str | None, manifest: Path | None) -> Any:
    """The live object by name, or a manifest (with the live object's uid when it already exists)."""
    import yaml
    from kubernetes import client

    from porter_identity import GROUP, VERSION
    from porter_identity.api.roleset import PLURAL, PorterRoleSet

    custom = client.CustomObjectsApi(api)
    body: dict[str, Any] = yaml.safe_load(manifest.read_text()) if manifest else {"metadata": {"name": name}}
    try:
        live: Any = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, body["metadata"]["name"])
    except client.ApiException as err:
        if err.status != 404 or manifest is None:
            raise
        live = None
    if manifest is None:
        return PorterRoleSet.from_body(live)
    if live is not None:
        body["metadata"]["uid"] = live["metadata"]["uid"]
    return PorterRoleSet.from_body(body)


def _kube_api() -> Any:
    from kubernetes import client, config

    config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _preview(name: str | None, manifest: Path | None) -> tuple[Any, list[Any]] | None:
    """The PorterRoleSet and what a sync would do, or None after saying why the account cannot be read."""
    from porter_identity.reconcile.outcome import Outcome

    api = _kube_api()
    rs = _load_roleset(api, name, manifest)
    previewed = _roleset_service(api).preview(rs)
    if isinstance(previewed, Outcome):
        reason = f"{previewed.reason.value}: {previewed.message}"
        print(f"cannot read account {rs.spec.account_id}: {reason}", file=sys.stderr)
        return None
    return rs, previewed[0]


def _diff(args: argparse.Namespace) -> int:
    from porter_identity.iam.diff import describe

    if (args.name is None) == (args.filename is None):
        print("give a PorterRoleSet name or -f MANIFEST", file=sys.stderr)
        return 2
    found = _preview(args.name, args.filename)
    if found is None:
        return 2
    rs, previews = found
    lines = describe(previews)
    if not lines:
        print(f"PorterRoleSet {rs.metadata.name}: account {rs.spec.account_id} is as declared")
        return 0
    print("\n".join(lines))
    return 1


def _inventory(args: argparse.Namespace) -> int:
    from porter_identity.iam import inventory

    if args.live is None:
        print(inventory.render(inventory.from_presets(args.account_id)), end="")
        return 0
    found = _preview(args.live, None)
    if found is None:
        return 2
    print(inventory.render_live(inventory.from_previews(found[1])), end="")
    return 0


def _check(args: argparse.Namespace) -> int:
    import json

    from kubernetes import config

    from porter_identity.check.run import Options, check
    from porter_identity.config import Settings

    namespace, _, name = args.connection.partition("/")
    if not namespace or not name:
        print("give the connection as NAMESPACE/NAME", file=sys.stderr)
        return 2
    api = config.new_client_from_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    verdict = check(api, namespace, name, Settings(), Options(args.audience, args.aws_endpoint_url))
    print(json.dumps(verdict.to_json(), indent=2) if args.output == "json" else verdict.render())
    return 0 if verdict.ok else 1


def _dev(args: argparse.Namespace) -> int:
    try:
        from porter_dev.sandbox import main as sandbox_main
    except ImportError:
        print("`dev` needs a source checkout installed with the test extra: pip install -e '.[test]'")
        return 2
    return sandbox_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter-identity", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('porter-identity')}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument("--namespace", "-n", action="append", default=[], help="watch only these namespaces")
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one object per line with resource, namespace, provider, reason keys",
    )
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="write the CRDs and their reference, generated from the API models")
    crds.add_argument(
        "--output",
        "-o",
        type=Path,
        action="append",
        default=None,
        help="directory (repeatable); default: " + ", ".join(map(str, CRD_DIRS)),
    )
    crds.add_argument("--reference", type=Path, default=CRD_REFERENCE, help="the Markdown field reference")
    crds.set_defaults(func=_crds)

    inv = sub.add_parser("inventory", help="render the Porter IAM role inventory as Markdown")
    inv.add_argument("--account-id", default=None, help="fill in <account-id> in ARNs")
    inv.add_argument(
        "--live", metavar="ROLESET", default=None, help="read the roles live from the account of this PorterRoleSet"
    )
    inv.set_defaults(func=_inventory)

    diff = sub.add_parser("diff", help="print what reconciling a PorterRoleSet would change; exit 1 if anything")
    diff.add_argument("name", nargs="?", default=None, help="a PorterRoleSet in the cluster")
    diff.add_argument("--filename", "-f", type=Path, default=None, help="a PorterRoleSet manifest not yet applied")
    diff.set_defaults(func=_diff)

    chk = sub.add_parser(
        "check",
        help="prove a connection end to end (ServiceAccount token, cloud exchange, identity); exit 0 only on success",
    )
    chk.add_argument("connection", metavar="NAMESPACE/NAME", help="a ServiceIdentityConnection")
    chk.add_argument("--kubeconfig", default=None, help="defaults to $KUBECONFIG or ~/.kube/config")
    chk.add_argument("--output", "-o", choices=["text", "json"], default="text")
    chk.add_argument("--audience", default=None, help="request the token for this audience instead (diagnosis)")
    chk.add_argument(
        "--aws-endpoint-url", default=None, help="EKS Auth and STS endpoint; defaults to the SDK's (AWS_ENDPOINT_URL)"
    )
    chk.set_defaults(func=_check)

    porteryaml.register(sub)

    dev = sub.add_parser("dev", help="start a local control plane, cloud emulators and the operator")
    dev.add_argument("--workdir", type=Path, default=None)
    dev.add_argument("--no-operator", action="store_true", help="start everything except the operator")
    dev.add_argument("command", nargs="?", choices=["up", "down", "status"], default="up")
    dev.set_defaults(func=_dev)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
