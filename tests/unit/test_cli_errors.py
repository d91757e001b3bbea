"""What a user can fix is one line on stderr and exit 2, never a traceback: no kubeconfig, no API server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from porter_identity import cli


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "argv",
    [["check", "shop/api"], ["diff", "prod"], ["inventory", "--live", "prod"], ["export", "-n", "shop"]],
    ids=lambda a: a[0],
)
def test_missing_kubeconfig(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"porter-identity {argv[0]}: no usable kubeconfig") and err.count("\n") == 1


def test_unreachable_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # port 1 on loopback: refused at once
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:1")))
    assert cli.main(["diff", "prod"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("porter-identity diff: cannot reach the API server at 127.0.0.1:1") and err.count("\n") == 1


def test_a_bug_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_inventory", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["inventory"])
