"""Sample a running operator with py-spy (`hack/bench --profile`) and sum the samples up by function and package.

py-spy samples the process from outside (no change to the operator, little overhead with --nonblocking); its
`raw` output is one collapsed stack per line, `frame;frame;...;leaf COUNT`, each frame `function (file:line)`
(https://github.com/benfred/py-spy#how-do-i-use-py-spy).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Where a frame's file lives, most specific first: the package that owns the sample.
_PACKAGES = (
    ("porter_identity", "porter_identity (ours)"),
    ("kopf", "kopf"),
    ("aiohttp", "aiohttp"),
    ("uvloop", "uvloop"),
    ("asyncio", "asyncio"),
    ("botocore", "botocore"),
    ("boto3", "botocore"),
    ("urllib3", "urllib3"),
    ("kubernetes", "kubernetes client"),
    ("pydantic", "pydantic"),
    ("json", "json"),
    ("ssl", "ssl"),
    ("concurrent", "threads (concurrent.futures)"),
    ("threading", "threads (concurrent.futures)"),
    ("logging", "logging"),
    ("prometheus_client", "prometheus_client"),
    ("azure", "azure SDK"),
    ("google", "google SDK / grpc"),
    ("grpc", "google SDK / grpc"),
)


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install -c hack/constraints.txt -e '.[bench]'")
    return found


@dataclass
class Recording:
    """py-spy attached to one process until `stop`."""

    pid: int
    out: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, rate: int = 100) -> Recording:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        command = [_py_spy(), "record", "--pid", str(self.pid), "--rate", str(rate), "--format", "raw", "--gil"]
        self.proc = subprocess.Popen(
            [*command, "--nonblocking", "--output", str(self.out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    def stop(self) -> dict[str, Any]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return summarize(self.out.read_text() if self.out.exists() else "")


def _package(file: str) -> str:
    parts = re.split(r"[/\\]", file)
    for key, name in _PACKAGES:
        if key in parts or f"{key}.py" in parts:
            return name
    return "other (stdlib, C)"


def _function(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, "other (stdlib, C)"
    file = match["file"]
    short = "/".join(file.split("site-packages/")[-1].split("/")[-3:])
    return f"{match['function']} ({short})", _package(file)


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Share of samples by package (the leaf frame's) and the top functions by own and by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f[0].startswith("thread (")]
        if not frames:
            continue
        leaf, package = frames[-1]
        own[leaf] += n
        packages[package] += n
        for name in {name for name, _ in frames}:
            inclusive[name] += n

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "by_package_percent": share(packages),
        "top_own_percent": share(own),
        "top_inclusive_percent": share(inclusive),
    }


def markdown(profile: dict[str, Any]) -> str:
    rows = [
        f"py-spy, {profile['samples']} samples of the operator from the first create until all were Ready\n\n",
        # Measured 2026-12-03: 27.5/s and 21.7 s of CPU profiled against 84.8/s and 9.4 s unprofiled, same commit.
        "py-spy itself takes much of a core on a 2-core machine: this run's throughput, latency and CPU are not "
        "the operator's; read only the shares below, and the figures from a run without --profile.\n",
    ]
    for key, title in (
        ("by_package_percent", "package (leaf frame)"),
        ("top_own_percent", "function, own time"),
        ("top_inclusive_percent", "function, inclusive"),
    ):
        rows.append(f"\n| {title} | % of samples |\n|---|---|\n")
        rows += [f"| `{name}` | {pct} |\n" for name, pct in profile[key]]
    return "".join(rows)
