"""`make release` into a temporary directory: five artefacts of pyproject.toml's one version, their sha256 sums, each
artefact read again here; and a tree with uncommitted changes refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import pytest
import yaml

from porter_dev import REPO_ROOT
from porter_dev.chart import CHART, helm
from porter_identity.api import crd

# A fresh machine builds the image first (hack/install-deps.sh already has, under `make test`).
pytestmark = pytest.mark.timeout(1800)
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
REPOSITORY = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]


@dataclass(frozen=True)
class Release:
    dist: Path
    stdout: str
    stderr: str
    seconds: float

    def path(self, name: str) -> Path:
        return self.dist / name.format(v=VERSION)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    dist = tmp_path_factory.mktemp("dist")
    # the tests run on working trees with changes; the refusal itself is tested below
    env = {**os.environ, "PORTER_RELEASE_ALLOW_DIRTY": "1"}
    started = time.monotonic()
    done = subprocess.run(
        ["make", "--no-print-directory", "release", f"DIST={dist}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield Release(dist, done.stdout, done.stderr, time.monotonic() - started)
    shutil.rmtree(dist)  # the image archive alone is hundreds of MB: not kept with pytest's last temporary dirs


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


NAMES = [
    "porter_identity-{v}-py3-none-any.whl",
    "porter_identity-{v}.tar.gz",
    "porter-identity-{v}.tgz",
    "porter-identity-{v}-image.tar",
    "porter-identity-{v}-crds.yaml",
]


def test_it_makes_five_artefacts_and_their_sums(release: Release) -> None:
    expected = sorted([*(n.format(v=VERSION) for n in NAMES), "SHA256SUMS"])
    assert sorted(p.name for p in release.dist.iterdir()) == expected
    sums = dict(line.split("  ")[::-1] for line in release.path("SHA256SUMS").read_text().splitlines())
    assert sums == {n.format(v=VERSION): sha256(release.path(n)) for n in NAMES}
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=release.dist, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    for name, digest in sums.items():
        assert f"{digest}  {name}" in release.stdout, "what it made is printed with its sum"
    assert f"porter-identity {VERSION} from commit" in release.stdout
    print(f"make release took {release.seconds:.0f} s:\n{release.stderr}")


def test_wheel_and_sdist_are_the_version(release: Release) -> None:
    with zipfile.ZipFile(release.path(NAMES[0])) as wheel:
        metadata = HeaderParser().parsestr(wheel.read(f"porter_identity-{VERSION}.dist-info/METADATA").decode())
        names = wheel.namelist()
    assert metadata["Name"] == "porter-identity" and metadata["Version"] == VERSION
    assert "porter_identity/cli.py" in names and "porter_identity/api/argocd_health.lua" in names
    with tarfile.open(release.path(NAMES[1])) as sdist:
        pkg_info = sdist.extractfile(f"porter_identity-{VERSION}/PKG-INFO")
        assert pkg_info is not None
        assert HeaderParser().parsestr(pkg_info.read().decode())["Version"] == VERSION


def test_chart_package_is_the_version_and_lints_strict(release: Release) -> None:
    package = release.path(NAMES[2])
    with tarfile.open(package) as chart:
        member = chart.extractfile("porter-identity/Chart.yaml")
        assert member is not None
        meta = yaml.safe_load(member.read())
    assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION)
    lint = helm("lint", "--strict", str(package), check=False)
    assert lint.returncode == 0, lint.stdout


def test_image_archive_is_tagged_with_the_version_and_runs_it(release: Release) -> None:
    with tarfile.open(release.path(NAMES[3])) as archive:
        manifest_file = archive.extractfile("manifest.json")
        assert manifest_file is not None
        [manifest] = json.load(manifest_file)
        config_file = archive.extractfile(manifest["Config"])
        assert config_file is not None
        config = json.load(config_file)["config"]
    assert manifest["RepoTags"] == [f"{REPOSITORY}:{VERSION}"]
    assert config["Entrypoint"] == ["porter-identity", "run"] and config["User"] == "65532:65532"
    # hack/release ran the archive's own porter-identity with buildah and checked what it printed
    assert f"`porter-identity --version` prints 'porter-identity {VERSION}'" in release.stderr


def test_crd_bundle_is_the_generated_crds(release: Release) -> None:
    docs = [d for d in yaml.safe_load_all(release.path(NAMES[4]).read_text()) if d]
    assert {d["metadata"]["name"]: d for d in docs} == {d["metadata"]["name"]: d for d in crd.all_crds().values()}


def test_the_installed_command_prints_the_version() -> None:
    done = subprocess.run([sys.executable, "-m", "porter_identity.cli", "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"porter-identity {VERSION}", done.stderr


def test_a_tree_with_uncommitted_changes_is_refused(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO_ROOT), str(clone)], check=True)
    (clone / "operator" / "porter_identity" / "stray.py").write_text("")
    env = {**os.environ, "PYTHONPATH": f"{clone / 'emulators'}"}
    env.pop("PORTER_RELEASE_ALLOW_DIRTY", None)
    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "porter_dev.release", "--dist", str(dist)],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "uncommitted changes" in done.stderr and "?? operator/porter_identity/stray.py" in done.stderr
    assert not dist.exists(), "nothing is built"
