#!/usr/bin/env bash
# Lint the Dockerfile with dockerfilelint (from the npm registry, cached in .cache/npm; the image itself cannot be
# built on machines without a Docker engine, so a real linter is the check we can run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=.cache/npm/node_modules/.bin/dockerfilelint
if [ ! -x "$bin" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is required to lint the Dockerfile"; exit 1; }
  npm install --silent --prefix .cache/npm dockerfilelint@1.8.0 --no-audit --no-fund >/dev/null
fi
# dockerfilelint does not expand ARGs: lint the Dockerfile as built with its default BASE, so the default's tag is
# what the missing-tag rule checks.
base=$(sed -n 's/^ARG BASE=//p' Dockerfile)
[ -n "$base" ] || { echo "Dockerfile: ARG BASE=<image:tag> is missing"; exit 1; }
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
sed "s|\${BASE}|$base|g" Dockerfile > "$rendered/Dockerfile"
"$bin" "$rendered/Dockerfile"
