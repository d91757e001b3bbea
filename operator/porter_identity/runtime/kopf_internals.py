"""The one door to kopf's private modules: checked against the kopf versions the tests ran, then installed.

Two adaptations, each written up for upstream in docs/architecture.md: toggle sets that wake their waiters only when
their state changes (runtime/kopf_toggles.py), and watch streams without metadata.managedFields
(runtime/kopf_watch.py). Both replace a module attribute kopf reads when the operator starts; neither changes
kopf's behaviour otherwise. To drop one: delete its module and its line in `install`."""

from __future__ import annotations

from importlib.metadata import version

from porter_identity.runtime import kopf_toggles, kopf_watch

# The kopf releases whose private modules these patches were tested against: hack/constraints.txt pins the one CI
# runs (1.45.2), and pyproject.toml allows this range only.
TESTED = ((1, 45), (1, 45))


class UntestedKopf(RuntimeError):
    """kopf outside the tested range: its private modules may differ, so nothing is patched."""


def parse(text: str) -> tuple[int, int]:
    major, minor, *_ = (int("".join(ch for ch in part if ch.isdigit()) or 0) for part in text.split("."))
    return major, minor


def check(installed: str | None = None) -> tuple[int, int]:
    found = parse(installed or version("kopf"))
    low, high = TESTED
    if not low <= found <= high:
        raise UntestedKopf(
            f"kopf {'.'.join(map(str, found))} is not one porter-identity was tested with "
            f"({'.'.join(map(str, low))} to {'.'.join(map(str, high))}.x): install a kopf in that range"
        )
    return found


def install() -> None:
    check()
    kopf_toggles.install()
    kopf_watch.install()
