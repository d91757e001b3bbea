"""The `porter-identity` command: run the operator, write CRDs, start the local sandbox."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _crds(args: argparse.Namespace) -> int:
    from porter_identity.api import crd

    for path in crd.write(args.output):
        print(path)
    return 0


def _run(args: argparse.Namespace) -> int:
    from porter_identity import runner

    return runner.run(namespaces=args.namespace, liveness=args.liveness)


def _dev(args: argparse.Namespace) -> int:
    try:
        from porter_dev.sandbox import main as sandbox_main
    except ImportError:
        print("`dev` needs a source checkout installed with the test extra: pip install -e '.[test]'")
        return 2
    return sandbox_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter-identity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument("--namespace", "-n", action="append", default=[], help="watch only these namespaces")
    run.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    crds.add_argument("--output", "-o", type=Path, default=Path("crds"))
    crds.set_defaults(func=_crds)

    dev = sub.add_parser("dev", help="start a local control plane, cloud emulators and the operator")
    dev.add_argument("--workdir", type=Path, default=None)
    dev.add_argument("--no-operator", action="store_true", help="start everything except the operator")
    dev.add_argument("command", nargs="?", choices=["up", "down", "status"], default="up")
    dev.set_defaults(func=_dev)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
