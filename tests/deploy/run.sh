#!/usr/bin/env bash
# Offline validation of deploy/ (Dockerfile, Kubernetes manifests, YAML).
# Installs the npm dependencies from package-lock.json when node_modules is
# missing, then runs test.js, which ends with "N passed, N failed".
#
# usage: tests/deploy/run.sh [BINARY]     (default bazel-bin/src/uapi-sidecar)
set -u

bin=${1:-bazel-bin/src/uapi-sidecar}
if [ -e "$bin" ]; then bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin"); fi
cd "$(dirname "$0")" || exit 2

if [ ! -x "$bin" ]; then
  echo "FAIL  sidecar binary $bin is missing (bazel build //src:uapi-sidecar)"
  echo "0 passed, 1 failed"
  exit 1
fi

if [ ! -d node_modules ]; then
  if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "FAIL  npm ci in tests/deploy"
    echo "0 passed, 1 failed"
    exit 1
  fi
fi

exec node test.js "$bin"
