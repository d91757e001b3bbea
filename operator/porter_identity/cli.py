"""The `porter-identity` command: run the operator, write CRDs, render the inventory, diff, check, import and
export porter.yaml connections, the sandbox."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from porter_identity.porteryaml import command as porteryaml

# Under the source tree given to `crds`: the same CRDs at the top level (kubectl apply -f crds/) and in the Helm
# chart, which installs them; the field reference; the docs whose tables are generated.
CRD_DIRS = [Path("crds"), Path("charts/porter-identity/crds")]
CRD_REFERENCE = Path("docs/crd-reference.md")
DOCS = Path("docs")


def _crds(args: argparse.Namespace) -> int:
    from porter_identity import helmchart, tables
    from porter_identity.api import argocd, crd, reference

    if args.directory is None:
        print("".join(crd.render(c) for c in crd.all_crds().values()), end="")
        return 0
    root: Path = args.directory
    for directory in CRD_DIRS:
        for path in crd.write(root / directory):
            print(path)
    written = {root / CRD_REFERENCE: reference.render()}
    written |= {root / path: text for path, text in argocd.files().items()}
    for name in tables.FILES:
        path = root / DOCS / name
        written[path] = tables.render_file(name, path.read_text() if path.exists() else "")
    # The chart's policy schema, its README and the docs' Helm values table, when the tree has the chart.
    written |= helmchart.files(root, written)
    for path, text in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


def _run(args: argparse.Namespace) -> int:
    # The operator talks to the API server through kube/rest.py; kopf would import the kubernetes package all the
    # same when it is installed (22 MB of models, docs/performance.md): the operator process never loads it.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    from porter_identity import runner

    return runner.run(namespaces=args.namespace, log_format=args.log_format)


def _roleset_service(api: Any) -> Any:
    from functools import partial

    from kubernetes import client

    from porter_identity.config import Settings
    from porter_identity.iam.sync import RoleSetService
    from porter_identity.kube import secrets
    from porter_identity.providers.iam import AssumedRoles

    def read(namespace: str, name: str) -> dict[str, str] | None:
        try:
            found: Any = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
        except client.ApiException as err:
            if err.status == 404:
                return None
            if err.status == 403:
                raise secrets.SecretForbidden(secrets.FORBIDDEN) from None
            raise
        return dict(found.data or {})

    # The same account check as the operator's (PORTER_AWS_ACCOUNT_ID): diff and inventory read no other account.
    return RoleSetService(AssumedRoles(), partial(secrets.read_key, read), Settings().aws_account_id)


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


def kubeconfig(given: str | None = None) -> str | None:
    """--kubeconfig, else $KUBECONFIG as it is now (the client library reads it once, at import), else its default."""
    return given or os.environ.get("KUBECONFIG")


def _kube_api() -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig())  # type: ignore[no-untyped-call]


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

    from porter_identity.check.exchange import Options
    from porter_identity.check.run import check
    from porter_identity.config import Settings

    namespace, _, name = args.connection.partition("/")
    if not namespace or not name:
        print("give the connection as NAMESPACE/NAME", file=sys.stderr)
        return 2
    api = config.new_client_from_config(config_file=kubeconfig(args.kubeconfig))  # type: ignore[no-untyped-call]
    verdict = check(api, namespace, name, Settings(), Options(args.audience, args.aws_endpoint_url))
    print(json.dumps(verdict.to_json(), indent=2) if args.output == "json" else verdict.render())
    return 0 if verdict.ok else 1


def _dev(args: argparse.Namespace) -> int:
    try:
        from porter_dev.sandbox import main as sandbox_main
    except ImportError:
        print("`dev` needs the source tree set up by hack/install-deps.sh (make dev)", file=sys.stderr)
        return 2
    return sandbox_main(args)


def kubectl_plugin() -> int:
    """`kubectl identity ...`: kubectl finds kubectl-identity on PATH and passes the rest of the command line."""
    return main(prog="kubectl identity")


def main(argv: list[str] | None = None, prog: str = "porter-identity") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--version", action="version", version=f"porter-identity {metadata.version('porter-identity')}")
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

    crds = sub.add_parser(
        "crds",
        help="print the CRDs (generated from the API models); with a directory, write every generated file under it",
    )
    crds.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=None,
        help="a source tree: writes "
        + ", ".join(map(str, [*CRD_DIRS, CRD_REFERENCE]))
        + " and the generated tables in docs/",
    )
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
    try:
        return int(args.func(args))
    except Exception as err:
        message = _user_error(err)
        if message is None:
            raise
        print(f"{prog} {args.command}: {message}", file=sys.stderr)
        return 2


def _user_error(err: Exception) -> str | None:
    """One line for what a user can fix (no kubeconfig, no API server, no such object); None for a bug."""
    kopf = sys.modules.get("kopf")
    if kopf is not None and isinstance(err, kopf.LoginError):  # the operator's own login (kube/rest.py)
        return f"no usable Kubernetes credentials ({err}); set KUBECONFIG, or run in a pod"
    if sys.modules.get("kubernetes") is None:  # not loaded, or kept out of the operator process (`run`)
        return f"{err.filename}: {err.strerror}" if isinstance(err, FileNotFoundError) else None
    from kubernetes.client import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import MaxRetryError

    if isinstance(err, ConfigException):
        return f"no usable kubeconfig ({err}); set KUBECONFIG or pass --kubeconfig"
    if isinstance(err, MaxRetryError):
        return f"cannot reach the API server at {err.pool.host}:{err.pool.port}: {err.reason}"
    if isinstance(err, ApiException):
        import json

        try:
            detail = json.loads(err.body or "{}").get("message") or err.reason
        except ValueError:
            detail = err.reason
        return f"the API server answered {err.status}: {detail}"
    if isinstance(err, FileNotFoundError):
        return f"{err.filename}: {err.strerror}"
    return None


if __name__ == "__main__":
    sys.exit(main())
