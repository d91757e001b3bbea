# One command for the sandbox, one for the tests. Both install what they need first.
.PHONY: deps dev down test lint crds unit release

VENV := .venv/bin
# Test processes: each runs whole files (--dist loadfile) with its own control plane and emulators.
WORKERS ?= 2

deps:
	bash hack/install-deps.sh

dev: deps
	$(VENV)/porter-identity dev

down:
	$(VENV)/porter-identity dev down

crds:
	$(VENV)/porter-identity crds .

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	bash hack/lint-dockerfile.sh

unit:
	$(VENV)/pytest tests/unit -q

test: deps lint
	$(VENV)/pytest -q -n $(WORKERS) --dist loadfile

# The wheel, sdist, Helm chart, image archive and CRDs of pyproject.toml's version, checked, into $(DIST)
# (docs/release.md). A tree with uncommitted changes is refused unless PORTER_RELEASE_ALLOW_DIRTY=1.
DIST ?= dist
release:
	bash hack/release --dist $(DIST)
