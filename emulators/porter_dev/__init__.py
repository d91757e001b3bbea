"""Development and test tooling: a local control plane and cloud emulators. Never shipped in the image."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache"
