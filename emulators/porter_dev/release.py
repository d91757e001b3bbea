"""`make release`: the wheel, sdist, Helm chart, image archive and CRD bundle of one version, each checked.

The version is pyproject.toml's; Chart.yaml's version and appVersion must equal it. The image is the Dockerfile
built by buildah (porter_dev.images, cached by its inputs), tagged with the chart's image repository and the version,
and written as a docker-archive; its `porter-identity --version` is run from that archive with buildah (chroot).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import yaml

from porter_dev import REPO_ROOT, images
from porter_dev.chart import CHART, helm
from porter_dev.images import _buildah as buildah  # the same storage under .cache as the image build's

PACKAGE = REPO_ROOT / "operator" / "porter_identity"
# Files of the package that are not Python (pyproject.toml [tool.setuptools.package-data]).
PACKAGE_DATA = ("py.typed", "api/argocd_health.lua")


class ReleaseError(Exception):
    """A check of an artefact failed: nothing of this run is a release."""


@dataclass(frozen=True)
class Artefact:
    path: Path
    what: str

    def sha256(self) -> str:
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()


def version() -> str:
    """The one version: pyproject.toml's [project] version."""
    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


def version_problems(expected: str) -> list[str]:
    """Where the chart disagrees with pyproject.toml's version."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    problems = [
        f"charts/porter-identity/Chart.yaml {key} is {chart.get(key)!r}, pyproject.toml says {expected!r}"
        for key in ("version", "appVersion")
        if str(chart.get(key)) != expected
    ]
    if values["image"]["tag"] or values["image"]["digest"]:
        problems.append("charts/porter-identity/values.yaml pins image.tag or image.digest: the default is appVersion")
    return problems


def _run(*argv: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise ReleaseError(f"{' '.join(argv[:3])} ... failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise ReleaseError(message)


# --- the Python package ----------------------------------------------------------------------------------------------


def source_copy(into: Path) -> Path:
    """The files git knows (tracked, and untracked ones it does not ignore) copied into a directory: the build sees
    no egg-info or build/ left by earlier builds, and writes none into the source tree (whose operator/ is also the
    image's input, porter_dev.images)."""
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file() and not source.is_symlink():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def build_python(dist: Path, expected: str) -> list[Artefact]:
    # sdist first, then the wheel from the sdist (python -m build's default): the sdist must be complete too
    # File times in the wheel are the commit's: one commit builds the same wheel, byte for byte (the sdist's gzip
    # header still carries the build's time).
    epoch = _run("git", "log", "-1", "--format=%ct").strip()
    with tempfile.TemporaryDirectory() as tmp:
        source = str(source_copy(Path(tmp)))
        _run(
            sys.executable, "-m", "build", "--outdir", str(dist), source, env={**os.environ, "SOURCE_DATE_EPOCH": epoch}
        )
    wheel = dist / f"porter_identity-{expected}-py3-none-any.whl"
    sdist = dist / f"porter_identity-{expected}.tar.gz"
    _expect(wheel.is_file() and sdist.is_file(), f"python -m build made no {wheel.name} and {sdist.name}")
    check_wheel(wheel, expected)
    check_sdist(sdist, expected)
    return [Artefact(wheel, "wheel"), Artefact(sdist, "sdist")]


def check_wheel(wheel: Path, expected: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"porter_identity-{expected}.dist-info"
        metadata = HeaderParser().parsestr(z.read(f"{info}/METADATA").decode())
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    _expect(metadata["Version"] == expected, f"{wheel.name}: METADATA Version {metadata['Version']}, not {expected}")
    sources = {
        f"porter_identity/{p.relative_to(PACKAGE).as_posix()}"
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    modules = {n for n in names if n.startswith("porter_identity/") and n.endswith(".py")}
    _expect(modules == sources, f"{wheel.name}: modules differ from the source tree: {sorted(modules ^ sources)}")
    missing = [d for d in PACKAGE_DATA if f"porter_identity/{d}" not in names]
    _expect(not missing, f"{wheel.name}: package data missing: {missing}")
    tops = {n.split("/", 1)[0] for n in names} - {info}
    _expect(tops == {"porter_identity"}, f"{wheel.name}: holds more than the operator: {sorted(tops)}")
    _expect("porter-identity = porter_identity.cli:main" in entry_points, f"{wheel.name}: no porter-identity command")


def check_sdist(sdist: Path, expected: str) -> None:
    top = f"porter_identity-{expected}"
    with tarfile.open(sdist) as t:
        names = set(t.getnames())
        pkg_info = t.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        metadata = HeaderParser().parsestr(pkg_info.read().decode())
    _expect(metadata["Version"] == expected, f"{sdist.name}: PKG-INFO Version {metadata['Version']}, not {expected}")
    needed = {f"{top}/pyproject.toml", f"{top}/LICENSE", *(f"{top}/operator/porter_identity/{d}" for d in PACKAGE_DATA)}
    _expect(needed <= names, f"{sdist.name}: missing {sorted(needed - names)}")


# --- the chart -------------------------------------------------------------------------------------------------------


def build_chart(dist: Path, expected: str) -> list[Artefact]:
    helm("package", str(CHART), "--destination", str(dist))
    package = dist / f"porter-identity-{expected}.tgz"
    _expect(package.is_file(), f"helm package made no {package.name}")
    check_chart(package, expected)
    return [Artefact(package, "Helm chart")]


def chart_file(package: Path, name: str) -> str:
    with tarfile.open(package) as t:
        member = t.extractfile(f"porter-identity/{name}")
        _expect(member is not None, f"{package.name}: no {name}")
        assert member is not None
        return member.read().decode()


def check_chart(package: Path, expected: str) -> None:
    chart = yaml.safe_load(chart_file(package, "Chart.yaml"))
    _expect(
        (str(chart["version"]), str(chart["appVersion"])) == (expected, expected),
        f"{package.name}: version {chart['version']}, appVersion {chart['appVersion']}, not {expected}",
    )
    monitoring = ["--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"]
    for extra in ([], monitoring):
        lint = helm("lint", "--strict", str(package), *extra, check=False)
        _expect(lint.returncode == 0, f"helm lint --strict {package.name} {' '.join(extra)}:\n{lint.stdout}")
    rendered = helm("template", "rel", str(package), "--show-only", "templates/deployment.yaml").stdout
    [deployment] = [d for d in yaml.safe_load_all(rendered) if d]
    [operator] = deployment["spec"]["template"]["spec"]["containers"]
    repository = yaml.safe_load(chart_file(package, "values.yaml"))["image"]["repository"]
    _expect(
        operator["image"] == f"{repository}:{expected}",
        f"{package.name}: the Deployment runs {operator['image']}, not {repository}:{expected}",
    )


# --- the image -------------------------------------------------------------------------------------------------------


def image_reference(expected: str) -> str:
    repository = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    return f"{repository}:{expected}"


def build_image(dist: Path, expected: str) -> list[Artefact]:
    name, cached = images.operator_image()  # built once per set of inputs (Dockerfile, operator/, ...)
    try:
        buildah("inspect", "--type", "image", name)
    except RuntimeError:  # the archive is cached but buildah's own storage was cleared
        buildah("pull", f"docker-archive:{cached}")
    reference = image_reference(expected)
    archive = dist / f"porter-identity-{expected}-image.tar"
    archive.unlink(missing_ok=True)
    buildah("tag", name, reference)
    try:
        buildah("push", reference, f"docker-archive:{archive}:{reference}")
    finally:
        buildah("rmi", reference)  # the tag only: the image keeps its cache name
    check_image(archive, expected)
    return [Artefact(archive, f"image {reference} (docker-archive: docker load, ctr images import)")]


def image_config(archive: Path) -> tuple[list[str], dict[str, Any]]:
    """(RepoTags, the image's config) as `docker load` reads them from a docker-archive."""
    with tarfile.open(archive) as t:
        manifest_file = t.extractfile("manifest.json")
        assert manifest_file is not None
        [manifest] = json.load(manifest_file)
        config_file = t.extractfile(manifest["Config"])
        assert config_file is not None
        config: dict[str, Any] = json.load(config_file)["config"]
    return list(manifest.get("RepoTags") or []), config


def check_image(archive: Path, expected: str) -> None:
    tags, config = image_config(archive)
    reference = image_reference(expected)
    _expect(tags == [reference], f"{archive.name}: tagged {tags}, not {reference}")
    entrypoint = config.get("Entrypoint") or []
    _expect(entrypoint == ["porter-identity", "run"], f"{archive.name}: entrypoint {entrypoint}")
    _expect(config.get("User") == "65532:65532", f"{archive.name}: runs as {config.get('User')!r}, not 65532:65532")
    printed = run_in_image(archive, config["User"], entrypoint[0], "--version").strip()
    _expect(
        printed == f"porter-identity {expected}", f"{archive.name}: `{entrypoint[0]} --version` printed {printed!r}"
    )
    print(f"  the image as user {config['User']}: `{entrypoint[0]} --version` prints {printed!r}", file=sys.stderr)


def run_in_image(archive: Path, user: str, *argv: str) -> str:
    """Run a command in a container of the archive itself (buildah, chroot isolation: no daemon needed)."""
    container = buildah("from", "--quiet", f"docker-archive:{archive}").splitlines()[-1]
    try:
        return buildah("run", "--user", user, container, "--", *argv)
    finally:
        buildah("rm", container)


# --- the CRDs --------------------------------------------------------------------------------------------------------


def build_crds(dist: Path, expected: str, chart: Path) -> list[Artefact]:
    files = sorted((REPO_ROOT / "crds").glob("*.yaml"))
    _expect(bool(files), "no crds/*.yaml")
    bundle = dist / f"porter-identity-{expected}-crds.yaml"
    bodies = [f.read_text().removeprefix("---\n").rstrip() for f in files]
    text = "".join(f"---\n{body}\n" for body in bodies)
    bundle.write_text(f"# porter-identity {expected}: kubectl apply --server-side -f {bundle.name}\n{text}")
    check_crds(bundle, chart)
    return [Artefact(bundle, "CRDs")]


def check_crds(bundle: Path, chart: Path) -> None:
    docs = [d for d in yaml.safe_load_all(bundle.read_text()) if d]
    _expect(all(d["kind"] == "CustomResourceDefinition" for d in docs), f"{bundle.name}: not only CRDs")
    with tarfile.open(chart) as t:
        in_chart = [
            d
            for m in t.getmembers()
            if m.name.startswith("porter-identity/crds/") and m.isfile()
            for d in yaml.safe_load_all(io.TextIOWrapper(t.extractfile(m) or io.BytesIO()).read())
            if d
        ]
    key = lambda d: d["metadata"]["name"]  # noqa: E731
    _expect(sorted(docs, key=key) == sorted(in_chart, key=key), f"{bundle.name} differs from the chart's crds/")


# --- all of it -------------------------------------------------------------------------------------------------------


def commit() -> str:
    return _run("git", "rev-parse", "--short=12", "HEAD").strip()


def uncommitted() -> list[str]:
    return _run("git", "status", "--porcelain").splitlines()


def release(dist: Path, allow_dirty: bool) -> list[Artefact]:
    expected = version()
    problems = version_problems(expected)
    if problems:
        raise ReleaseError("versions disagree:\n  " + "\n  ".join(problems))
    dirty = uncommitted()
    if dirty and not allow_dirty:
        raise ReleaseError(
            "the tree has uncommitted changes (git status --porcelain):\n  "
            + "\n  ".join(dirty[:20])
            + "\ncommit them, or set PORTER_RELEASE_ALLOW_DIRTY=1 for a build that is not a release"
        )
    dist.mkdir(parents=True, exist_ok=True)
    steps: list[tuple[str, Callable[[], list[Artefact]]]] = [
        ("wheel and sdist", lambda: build_python(dist, expected)),
        ("chart", lambda: build_chart(dist, expected)),
        ("image", lambda: build_image(dist, expected)),
        ("CRDs", lambda: build_crds(dist, expected, dist / f"porter-identity-{expected}.tgz")),
    ]
    made: list[Artefact] = []
    for step, build in steps:
        started = time.monotonic()
        made += build()
        print(f"  {step}: built and checked ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    sums = dist / "SHA256SUMS"
    sums.write_text("".join(f"{a.sha256()}  {a.path.name}\n" for a in made))
    state = "with uncommitted changes: not a release" if dirty else "clean"
    print(f"porter-identity {expected} from commit {commit()} ({state}) in {dist}:")
    for a in made:
        print(f"{a.sha256()}  {a.path.name}  {a.path.stat().st_size:>11,d} B  {a.what}")
    print(f"checksums: {sums} (sha256sum -c SHA256SUMS)")
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/release", description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist", help="where the artefacts go (dist/)")
    parser.add_argument(
        "--allow-dirty", action="store_true", help="build from uncommitted changes (PORTER_RELEASE_ALLOW_DIRTY=1)"
    )
    args = parser.parse_args(argv)
    try:
        release(args.dist.resolve(), args.allow_dirty)
    except (ReleaseError, RuntimeError, subprocess.CalledProcessError) as err:
        detail = f"{err}\n{err.stderr}" if isinstance(err, subprocess.CalledProcessError) else str(err)
        print(f"hack/release: {detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
