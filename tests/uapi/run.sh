#!/usr/bin/env bash
# Runs the UAPI translation-backend suite (tests/uapi/test_uapi.py) against
# a uapi-sidecar binary: the sidecar with --backend uapi/auto in front of a
# stand-in UAPI server (tests/uapi/standin.py), and its REST facade. The
# suite starts and stops its own sidecars and stand-ins on 127.0.0.1, prints
# one line per test and ends with "N passed, N failed"; this script exits
# non-zero when anything failed (a suite that dies without its count line
# counts as one failure).
#
# usage: tests/uapi/run.sh [BINARY] [Class[.test] ...]
#                          (default bazel-bin/src/uapi-sidecar)
# Env:   USC_SIDECAR_WRAPPER  put in front of every sidecar command line,
#                             e.g. "valgrind --leak-check=full --error-exitcode=99"
set -u

bin=${1:-bazel-bin/src/uapi-sidecar}
[ $# -gt 0 ] && shift
if [ -e "$bin" ]; then bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin"); fi
cd "$(dirname "$0")/../.." || exit 2

if [ ! -x "$bin" ]; then
  echo "FAIL  sidecar binary $bin is missing (bazel build //src:uapi-sidecar)"
  echo "0 passed, 1 failed"
  exit 1
fi
# A private copy: a rebuild during the run must not swap the binary
# between the sidecars of the suite.
snapshot=$(mktemp -d /tmp/usc-uapi-bin.XXXXXX)
out=$(mktemp /tmp/usc-uapi.XXXXXX)
trap 'rm -rf "$snapshot" "$out"' EXIT
cp "$bin" "$snapshot/uapi-sidecar"
export USC_SIDECAR_BINARY=$snapshot/uapi-sidecar
export USC_SIDECAR_WRAPPER=${USC_SIDECAR_WRAPPER:-}

if [ -n "$USC_SIDECAR_WRAPPER" ]; then limit=1200; else limit=300; fi

timeout --kill-after=15 "$limit" /usr/bin/python3 tests/uapi/test_uapi.py "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
if ! grep -qE '^[0-9]+ passed, [0-9]+ failed' "$out"; then
  echo "FAIL  suite exited with $rc without its count line"
  echo "0 passed, 1 failed"
  exit 1
fi
exit "$rc"
