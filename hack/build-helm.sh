#!/usr/bin/env bash
# Build helm from its Go module (via the Go module proxy), cached by version; prints the binary's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
HELM_VERSION=${HELM_VERSION:-3.22.0}
cache=${PORTER_CACHE:-$root/.cache}
dir=$cache/helm-$HELM_VERSION
if [ -x "$dir/helm" ]; then echo "$dir/helm"; exit 0; fi

command -v go >/dev/null 2>&1 || { echo "Go is required to build helm (https://go.dev/dl)" >&2; exit 1; }
echo "building helm $HELM_VERSION (first run only, a few minutes)" >&2
module=helm.sh/helm/v3
# The same ldflags as helm's Makefile: its version, and the Kubernetes version that `helm template` and
# `helm lint` assume without a cluster (1.<client-go minor>, else v1.20 and kubeVersion checks fail).
gomod=$(go mod download -json "$module@v$HELM_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]; exit}' "$gomod")
flags="-s -w -X $module/internal/version.version=v$HELM_VERSION -X $module/internal/version.gitTreeState=clean"
for pkg in pkg/chartutil pkg/lint/rules; do
  flags="$flags -X $module/$pkg.k8sVersionMajor=1 -X $module/$pkg.k8sVersionMinor=$minor"
done
mkdir -p "$dir"
CGO_ENABLED=0 GOBIN=$dir go install -trimpath -ldflags "$flags" "$module/cmd/helm@v$HELM_VERSION" >&2
echo "$dir/helm"
