#!/usr/bin/env bash
# Build promtool (Prometheus' rule checker and unit-test runner) from its Go module via the Go module proxy,
# cached by version; prints the binary's path. tests/release runs the chart's alert rules through `promtool test rules`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# The Go module's v0.<minor*100+...> tags are Prometheus releases: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_MODULE_VERSION=${PROMTOOL_MODULE_VERSION:-0.316.0}
cache=${PORTER_CACHE:-$root/.cache}
dir=$cache/promtool-$PROMTOOL_MODULE_VERSION
if [ -x "$dir/promtool" ]; then echo "$dir/promtool"; exit 0; fi

command -v go >/dev/null 2>&1 || { echo "Go is required to build promtool (https://go.dev/dl)" >&2; exit 1; }
echo "building promtool $PROMTOOL_MODULE_VERSION (first run only, a few minutes)" >&2
module=github.com/prometheus/prometheus
flags="-s -w -X github.com/prometheus/common/version.Version=$PROMTOOL_MODULE_VERSION"
# remove_all_sd (Prometheus' own build tag) leaves out the service discovery of every cloud, which rule tests never
# use: a third of the build.
mkdir -p "$dir"
# Into a temporary directory first: only a finished binary counts as cached.
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN=$tmp go install -trimpath -tags remove_all_sd -ldflags "$flags" "$module/cmd/promtool@v$PROMTOOL_MODULE_VERSION" >&2
mv "$tmp/promtool" "$dir/promtool"
echo "$dir/promtool"
