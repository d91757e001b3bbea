"""The import direction of the layers (DESIGN.md section 2): observed state and API models depend on nothing above
them, decisions never reach a cloud, cloud adapters never decide."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "porter_identity"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("porter_identity"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("porter_identity")}
    return found


def modules(under: str) -> list[Path]:
    root = PACKAGE / under
    return sorted(root.rglob("*.py")) if root.is_dir() else [root]


@pytest.mark.parametrize("path", modules("model.py") + modules("errors.py"), ids=lambda p: p.name)
def test_observed_state_and_errors_import_nothing_of_ours(path: Path) -> None:
    assert imports_of(path) == set()


# The seed's presets are data the PorterRoleSet model validates against (their names, the bucket role names).
SEED_DATA = ("porter_identity.iam.presets", "porter_identity.iam.policy")


@pytest.mark.parametrize("path", modules("api"), ids=lambda p: p.name)
def test_api_models_import_only_the_api_the_seed_data_and_the_package_root(path: Path) -> None:
    above = {m for m in imports_of(path) if not m.startswith(("porter_identity.api", *SEED_DATA))}
    assert above <= {"porter_identity", "porter_identity.GROUP", "porter_identity.VERSION"}, above


def test_the_seed_data_imports_only_itself() -> None:
    for name in ("presets.py", "policy.py"):
        assert {m for m in imports_of(PACKAGE / "iam" / name) if not m.startswith(SEED_DATA)} == set()


CLOUDS = ("aws", "azure", "gcp")
SIDE_EFFECTS = tuple(f"porter_identity.clouds.{c}.{m}" for c in CLOUDS for m in ("client", "link"))


@pytest.mark.parametrize("path", modules("reconcile"), ids=lambda p: p.name)
def test_decisions_never_import_a_cloud_client_or_a_link(path: Path) -> None:
    assert not [m for m in imports_of(path) if m.startswith((*SIDE_EFFECTS, "porter_identity.providers"))]


@pytest.mark.parametrize(
    "path",
    [PACKAGE / "clouds" / c / f"{m}.py" for c in CLOUDS for m in ("plan", "drift")],
    ids=lambda p: p.parent.name + "/" + p.name,
)
def test_a_clouds_plan_and_drift_are_pure(path: Path) -> None:
    """No SDK client, no link, no engine: what a cloud decides is unit-tested without I/O."""
    assert not [
        m
        for m in imports_of(path)
        if m.startswith((*SIDE_EFFECTS, "porter_identity.providers", "porter_identity.engine"))
    ]


@pytest.mark.parametrize(
    "path", modules("providers") + [PACKAGE / "clouds" / c / "client.py" for c in CLOUDS], ids=lambda p: p.name
)
def test_cloud_clients_never_import_a_decision(path: Path) -> None:
    assert not [
        m
        for m in imports_of(path)
        if m.startswith(("porter_identity.reconcile", "porter_identity.engine", "porter_identity.handlers"))
        or m.startswith(tuple(f"porter_identity.clouds.{c}.{d}" for c in CLOUDS for d in ("plan", "link", "drift")))
    ]


@pytest.mark.parametrize("path", modules("clouds"), ids=lambda p: p.parent.name + "/" + p.name)
def test_clouds_never_import_the_engine_or_kopf_handlers(path: Path) -> None:
    assert not [m for m in imports_of(path) if m.startswith(("porter_identity.handlers", "porter_identity.engine"))]


@pytest.mark.parametrize("path", modules("engine"), ids=lambda p: p.name)
def test_the_engine_never_imports_kopf_handlers(path: Path) -> None:
    assert not [m for m in imports_of(path) if m.startswith("porter_identity.handlers")]


def test_the_operator_process_runs_without_the_kubernetes_package() -> None:
    """`porter-identity run` keeps `kubernetes` out (kube/rest.py serves the operator; kopf would load its 22 MB of
    models): every module the operator imports must do without it, and kopf must not pull it in."""
    probe = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "from porter_identity import runner\n"
        "print(sorted(m for m in sys.modules if m.startswith('kubernetes') and sys.modules[m] is not None))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
