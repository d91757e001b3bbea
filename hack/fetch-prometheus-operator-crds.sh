#!/usr/bin/env bash
# The Prometheus Operator's PrometheusRule and ServiceMonitor CRDs, from its Go module via the Go module proxy, cached
# by version; prints their directory. tests/release applies them to the test API server to dry-run the chart's objects.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PROMETHEUS_OPERATOR_VERSION=${PROMETHEUS_OPERATOR_VERSION:-0.85.0}
cache=${PORTER_CACHE:-$root/.cache}
dir=$cache/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION
kinds=(prometheusrules servicemonitors)
if [ -f "$dir/monitoring.coreos.com_${kinds[-1]}.yaml" ]; then echo "$dir"; exit 0; fi

command -v go >/dev/null 2>&1 || { echo "Go is required to fetch the Prometheus Operator's CRDs" >&2; exit 1; }
module=github.com/prometheus-operator/prometheus-operator
src=$(go mod download -json "$module@v$PROMETHEUS_OPERATOR_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
mkdir -p "$dir"
for kind in "${kinds[@]}"; do
  cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$dir/"
done
echo "$dir"
