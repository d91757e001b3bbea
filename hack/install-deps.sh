#!/usr/bin/env bash
# Install everything the tests and the sandbox need, from package registries only: etcd and the local node's parts
# (Debian), a virtualenv with the project and its test/dev extras (PyPI), the Kubernetes binaries, helm,
# hack/gitops, promtool and the Prometheus Operator's CRDs (Go module proxy), and the node tier's images
# (debootstrap + buildah, porter_dev.images).
# The Go builds use the CPU while pip and debootstrap mostly wait on downloads, so they run side by side.
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
bash hack/install-node-deps.sh packages
command -v go >/dev/null 2>&1 || { echo "Go is required to build kube-apiserver (https://go.dev/dl)"; exit 1; }

logs=${PORTER_CACHE:-$root/.cache}/logs
mkdir -p "$logs"
# Waits for a background step; on failure shows the end of its log.
finish() {
  if ! wait "$1"; then
    echo "$2 failed; the end of $3:" >&2
    tail -n 40 "$3" >&2
    exit 1
  fi
}
(bash hack/build-k8s.sh node && bash hack/build-helm.sh && bash hack/build-gitops.sh && bash hack/k8s-openapi.sh \
  && bash hack/build-promtool.sh && bash hack/fetch-prometheus-operator-crds.sh) >"$logs/go-builds.log" 2>&1 &
go_builds=$!

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c hack/constraints.txt -e '.[test,dev,bench]'
# porter_dev (emulators, sandbox, test tooling) is never in the wheel: the venv imports it from the source tree.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$root/emulators" > "$site/porter-dev.pth"

# The operator image (and its Debian base) for the node tier, cached by the hash of its inputs.
.venv/bin/python -m porter_dev.images operator >"$logs/images.log" 2>&1 &
images=$!
finish "$go_builds" "building the Kubernetes binaries, helm, hack/gitops and promtool" "$logs/go-builds.log"
finish "$images" "building the operator image" "$logs/images.log"
echo "dependencies ready"
