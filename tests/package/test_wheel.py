"""The released package: `python -m build` gives a wheel of porter_identity alone, which installs and runs in an empty
virtualenv and an empty directory (no source tree, no porter_dev)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from porter_dev import REPO_ROOT

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # sdist first, then the wheel from the sdist, as `python -m build` does: the sdist must be complete too
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)], check=True, capture_output=True
    )
    (found,) = out.glob("porter_identity-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-c", str(REPO_ROOT / "hack" / "constraints.txt"), str(wheel)], check=True)
    return root / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd), "KUBECONFIG": str(cwd / "no-kubeconfig")}
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_holds_only_the_operator(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert packages == {"porter_identity"}
    assert "porter_identity/py.typed" in names and "porter_identity/api/argocd_health.lua" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "porter-identity = porter_identity.cli:main" in scripts
    assert "kubectl-identity = porter_identity.cli:kubectl_plugin" in scripts


def test_installed_commands_run_in_an_empty_directory(venv: Path, tmp_path: Path) -> None:
    version = _run(venv, tmp_path, "porter-identity", "--version")
    assert version.returncode == 0 and version.stdout.startswith("porter-identity 0."), version.stderr
    crds = _run(venv, tmp_path, "porter-identity", "crds")
    assert crds.returncode == 0, crds.stderr
    kinds = [d["spec"]["names"]["kind"] for d in yaml.safe_load_all(crds.stdout)]
    assert kinds == ["ServiceIdentityConnection", "PorterRoleSet"]
    inventory = _run(venv, tmp_path, "porter-identity", "inventory")
    assert inventory.returncode == 0 and "porter-manager" in inventory.stdout, inventory.stderr
    check = _run(venv, tmp_path, "porter-identity", "check", "--help")
    assert check.returncode == 0 and "NAMESPACE/NAME" in check.stdout
    plugin = _run(venv, tmp_path, "kubectl-identity", "check", "--help")
    assert plugin.returncode == 0 and plugin.stdout.startswith("usage: kubectl identity check")
    assert sorted(os.listdir(tmp_path)) == [], "nothing written into the working directory"


def test_no_kubeconfig_is_one_line_not_a_traceback(venv: Path, tmp_path: Path) -> None:
    done = _run(venv, tmp_path, "porter-identity", "check", "shop/api")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("porter-identity check: no usable kubeconfig")


def test_porter_dev_is_not_installed(venv: Path, tmp_path: Path) -> None:
    done = _run(venv, tmp_path, str(venv / "python"), "-c", "import porter_dev")
    assert done.returncode != 0 and "No module named 'porter_dev'" in done.stderr
