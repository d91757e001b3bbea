"""An object that does not exist is one line and exit 2 from the commands that read it, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from porter_dev.controlplane import ControlPlane

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["diff", "no-such-set"], 'porterrolesets.identity.porter.run "no-such-set" not found'),
        (["inventory", "--live", "no-such-set"], 'porterrolesets.identity.porter.run "no-such-set" not found'),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else "",
)
def test_missing_object(control_plane: ControlPlane, crds: None, argv: list[str], said: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}
    done = subprocess.run(
        [sys.executable, "-m", "porter_identity.cli", *argv], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr == f"porter-identity {argv[0]}: the API server answered 404: {said}\n"
