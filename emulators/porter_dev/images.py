"""The operator image without a registry: a Debian base from debootstrap, the project's Dockerfile built by buildah.

Each image is a docker-archive tarball under .cache/images named by a hash of its inputs, so a warm run builds
nothing; `ctr images import` (porter_dev.node) loads it into the node's containerd.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from porter_dev import CACHE, REPO_ROOT

IMAGES = CACHE / "images"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the Dockerfile needs from its base: python3 with venv (Debian's PEP 668 keeps pip out of the system
# Python), CA certificates for HTTPS (the public python image has them too), useradd (passwd is in minbase).
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# Files the image is built from (Dockerfile COPY lines); any change makes a new image.
OPERATOR_INPUTS = ("Dockerfile", "pyproject.toml", "README.md", "LICENSE", "hack/constraints.txt", "operator")


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _tree_digest(paths: tuple[str, ...]) -> str:
    parts: list[str | bytes] = []
    for name in paths:
        root = REPO_ROOT / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" in path.parts:
                continue
            parts += [str(path.relative_to(REPO_ROOT)), path.read_bytes()]
    return _digest(*parts)


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out.stdout.strip()


# runc seals a memfd copy of itself for every RUN step; the kernel refuses the seal with EBUSY now and then (seen
# here with shmem transparent huge pages: flatpak/flatpak#3409). The same step then succeeds when run again.
TRANSIENT = "sealing memfd copy"
ATTEMPTS = 3


def _buildah(*args: str) -> str:
    """buildah with its own storage under .cache (vfs: no overlay mounts needed), never the machine's."""
    store = CACHE / "buildah"
    env = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
    argv = ["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"), *args]
    for attempt in range(ATTEMPTS):
        try:
            return _run(argv, env)
        except RuntimeError as err:
            if TRANSIENT not in str(err) or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def base_image() -> tuple[str, Path]:
    """(name, docker-archive) of a Debian bookworm minbase with Python, built once per package list."""
    tag = _digest(SUITE, MIRROR, *BASE_PACKAGES)
    name = f"porter.local/debian-python:{tag}"
    archive = IMAGES / f"debian-python-{tag}.tar"
    if archive.exists():
        return name, archive
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp) / "root"
        include = ",".join(BASE_PACKAGES)
        _run(["debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(root), MIRROR])
        # The package lists and caches are not part of an image (as in the official Debian images).
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / leftover, ignore_errors=True)
        layer = Path(tmp) / "rootfs.tar"
        _run(["tar", "-C", str(root), "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "-cf",
              str(layer), "."])  # fmt: skip
        container = _buildah("from", "scratch")
        try:
            _buildah("add", container, str(layer), "/")  # a local tarball is extracted, like Dockerfile ADD
            _buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "--cmd", '["sleep", "infinity"]', container)  # fmt: skip
            _buildah("commit", "--rm", container, name)
        except BaseException:
            _buildah("rm", container)
            raise
    _push(name, archive)
    return name, archive


def operator_image() -> tuple[str, Path]:
    """(name, docker-archive) of the project's Dockerfile built FROM the Debian base, keyed by its inputs."""
    base, base_archive = base_image()
    tag = _digest(base, _tree_digest(OPERATOR_INPUTS))
    name = f"porter.local/porter-identity:{tag}"
    archive = IMAGES / f"porter-identity-{tag}.tar"
    if archive.exists():
        return name, archive
    if not _exists(base):  # the archive is cached but buildah's own storage was cleared
        _buildah("pull", f"docker-archive:{base_archive}")
    argv = ["bud", "--isolation", "chroot", "--layers=false", "--build-arg", f"BASE={base}", "--tag", name]
    # A machine whose HTTPS egress goes through an intercepting proxy trusts its CA in the system bundle and in
    # pip.conf: lend both to RUN steps (bind mounts, never part of the image).
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf"):
        if Path(path).exists():
            argv += ["--volume", f"{path}:{path}:ro"]
    _buildah(*argv, "--file", str(REPO_ROOT / "Dockerfile"), str(REPO_ROOT))
    _push(name, archive)
    return name, archive


def _exists(name: str) -> bool:
    try:
        _buildah("inspect", "--type", "image", name)
    except RuntimeError:
        return False
    return True


def _push(name: str, archive: Path) -> None:
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _buildah("push", name, f"docker-archive:{partial}:{name}")
    partial.rename(archive)  # only a complete archive counts as cached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="porter_dev.images", description=__doc__.splitlines()[0])
    parser.add_argument("image", choices=["base", "operator"])
    args = parser.parse_args(argv)
    started = time.monotonic()
    name, archive = base_image() if args.image == "base" else operator_image()
    print(f"{name} {archive} ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
