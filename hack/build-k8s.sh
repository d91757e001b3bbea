#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kubectl from the Kubernetes Go modules (via the Go module proxy), cached by version.
# `build-k8s.sh node` also builds what a local node runs (kubelet, kube-scheduler, kube-proxy: porter_dev.node).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
K8S_VERSION=${K8S_VERSION:-1.34.4}
cache=${PORTER_CACHE:-$root/.cache}
bin=$cache/k8s-$K8S_VERSION/bin
want=(kube-apiserver kube-controller-manager kubectl)
node=(kubelet kube-scheduler kube-proxy)
if [ "${1:-}" = node ]; then want+=("${node[@]}"); fi

missing=0
for b in "${want[@]}"; do [ -x "$bin/$b" ] || missing=1; done
if [ $missing = 0 ]; then echo "$bin"; exit 0; fi

mod=$cache/k8s-$K8S_VERSION/src
mkdir -p "$mod" "$bin"
cd "$mod"
export GOFLAGS=-mod=mod CGO_ENABLED=0
# k8s.io/kubernetes requires its staging modules at v0.0.0, which the proxy does not serve:
# replace each one with its published v0.<minor>.<patch> twin.
gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
staging=$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u)
{
  echo "module porter.run/k8s-build"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  echo
  for m in $staging; do echo "replace $m => $m v0.${K8S_VERSION#1.}"; done
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
go mod tidy -e >/dev/null 2>&1 || true
go get "k8s.io/kubernetes@v$K8S_VERSION" >&2
build=()
for b in "${want[@]}"; do [ -x "$bin/$b" ] || build+=("k8s.io/kubernetes/cmd/$b"); done
echo "building ${build[*]##*/} $K8S_VERSION (first run only, several minutes)" >&2
# One go build for all of them: the shared packages compile once and the links run in parallel.
go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION" -o "$bin/" "${build[@]}" >&2
echo "$bin"
