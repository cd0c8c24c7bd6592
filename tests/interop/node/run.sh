#!/usr/bin/env bash
# Installs the locked npm packages when node_modules is missing, then runs
# the Node interop suite. Arguments go to test.js (test-name filters).
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$here/node_modules" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "FAIL  npm ci"
    echo "0 passed, 1 failed"
    exit 1
  }
fi
exec node "$here/test.js" "$@"
