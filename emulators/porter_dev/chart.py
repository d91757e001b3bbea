"""The project's Helm chart, rendered and installed with the helm that hack/build-helm.sh builds (tests, sandbox)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from porter_dev import REPO_ROOT

CHART = REPO_ROOT / "charts" / "porter-identity"


def helm_binary() -> Path:
    """Build (first run) or find the cached helm."""
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-helm.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm; with a kubeconfig it talks to that cluster, without one it never reaches any."""
    cluster = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    return subprocess.run([str(helm_binary()), *args, *cluster], capture_output=True, text=True, check=check)


def value_args(values: dict[str, Any] | None) -> list[str]:
    """Values as --set-json per top-level key, so types stay exact (--set guesses strings and numbers)."""
    return [arg for key, value in (values or {}).items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]


def template(
    release: str,
    namespace: str,
    values: dict[str, Any] | None = None,
    show_only: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them (CRDs not included)."""
    only = [arg for path in show_only for arg in ("--show-only", path)]
    out = helm("template", release, str(CHART), "--namespace", namespace, *value_args(values), *only, *extra)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]
