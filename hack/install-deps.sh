#!/usr/bin/env bash
# Install everything the tests and the sandbox need, from package registries only: etcd (Debian),
# a virtualenv with the project and its test/dev
# extras (PyPI), and the Kubernetes binaries and helm (Go module proxy).
# Then the local node's parts (hack/install-node-deps.sh): tests/e2e/test_node.py runs the chart on a real node.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server from Debian"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null \
    || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
  # Debian starts a system etcd on the default ports; ours run on free ports of their own.
  as_root systemctl disable --now etcd >/dev/null 2>&1 || true
fi
command -v go >/dev/null 2>&1 || { echo "Go is required to build kube-apiserver (https://go.dev/dl)"; exit 1; }

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c hack/constraints.txt -e '.[test,dev,bench]'
# porter_dev (emulators, sandbox, test tooling) is never in the wheel: the venv imports it from the source tree.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$root/emulators" > "$site/porter-dev.pth"

bash hack/build-k8s.sh >/dev/null
bash hack/build-helm.sh >/dev/null
bash hack/build-gitops.sh >/dev/null
bash hack/install-node-deps.sh
echo "dependencies ready"
