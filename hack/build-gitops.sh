#!/usr/bin/env bash
# Build hack/gitops (kstatus from sigs.k8s.io/cli-utils and Argo CD's way of running health.lua with gopher-lua)
# from the Go module proxy, cached by the hash of its sources; prints the binary's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${PORTER_CACHE:-$root/.cache}
src=$root/hack/gitops
digest=$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-12)
bin=$cache/gitops-$digest/gitops
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

command -v go >/dev/null 2>&1 || { echo "Go is required to build hack/gitops (https://go.dev/dl)" >&2; exit 1; }
echo "building hack/gitops (first run only)" >&2
mkdir -p "$(dirname "$bin")"
(cd "$src" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$bin" .)
echo "$bin"
