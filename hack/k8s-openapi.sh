#!/usr/bin/env bash
# The OpenAPI v3 schemas of the oldest Kubernetes the chart supports (Chart.yaml kubeVersion), from the
# k8s.io/kubernetes Go module (api/openapi-spec/v3) through the Go module proxy, cached by version.
# tests/chart/test_kube_schemas.py validates every render against them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
K8S_MIN_VERSION=${K8S_MIN_VERSION:-1.30.0}
cache=${PORTER_CACHE:-$root/.cache}
out=$cache/k8s-openapi-$K8S_MIN_VERSION
if [ -f "$out/api__v1_openapi.json" ]; then echo "$out"; exit 0; fi
# Only the module's files are needed, not a build: `go mod download` fetches and verifies its zip (about 20 MB).
dir=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$K8S_MIN_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$cache"
tmp=$(mktemp -d "$out.XXXXXX")
cp "$dir"/api/openapi-spec/v3/*.json "$tmp/"
chmod -R u+w "$tmp"
# Two test processes may fetch at once: the first rename wins, the other's copy is dropped.
mv -T "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"
echo "$out"
