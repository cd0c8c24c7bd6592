#!/usr/bin/env bash
# Runs the UAPI translation-backend suites against a uapi-sidecar binary:
# tests/uapi/test_uapi.py (the sidecar with --backend uapi/auto in front of a
# stand-in UAPI server, tests/uapi/standin.py, and its REST facade), then
# tests/uapi/test_soak.py (faults under load). The suites start and stop
# their own sidecars and stand-ins on 127.0.0.1 and print one line per test;
# this script ends with their sum "N passed, N failed" and exits non-zero
# when anything failed (a suite that dies without its count line counts as
# one failure).
#
# usage: tests/uapi/run.sh [BINARY] [Class[.test] ...]
#                          (default bazel-bin/src/uapi-sidecar; names of
#                          Soak* classes go to test_soak.py, the others to
#                          test_uapi.py; a suite left without names is
#                          skipped when names are given)
# Env:   USC_SIDECAR_WRAPPER  put in front of every sidecar command line,
#                             e.g. "valgrind --leak-check=full --error-exitcode=99"
#        USC_SOAK_SECONDS     the soak's length (default: about a minute)
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
soak_seconds=${USC_SOAK_SECONDS:-0}
soak_limit=$((300 + 2 * ${soak_seconds%.*}))

uapi_names=() soak_names=()
for name in "$@"; do
  case $name in
    Soak*) soak_names+=("$name") ;;
    *) uapi_names+=("$name") ;;
  esac
done

passed=0 failed=0 rc=0
# suite LIMIT FILE [NAME ...]: runs one suite and adds up its count line.
suite() {
  local limit=$1 file=$2 code line
  shift 2
  timeout --kill-after=15 "$limit" /usr/bin/python3 "$file" "$@" 2>&1 | tee "$out"
  code=${PIPESTATUS[0]}
  [ "$code" -ne 0 ] && rc=1
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [ -z "$line" ]; then
    echo "FAIL  $file exited with $code without its count line"
    failed=$((failed + 1))
    rc=1
    return
  fi
  set -- $line
  passed=$((passed + $1))
  failed=$((failed + $3))
}

if [ $# -eq 0 ] || [ ${#uapi_names[@]} -gt 0 ]; then
  suite "$limit" tests/uapi/test_uapi.py ${uapi_names[@]+"${uapi_names[@]}"}
fi
if [ $# -eq 0 ] || [ ${#soak_names[@]} -gt 0 ]; then
  suite "$soak_limit" tests/uapi/test_soak.py ${soak_names[@]+"${soak_names[@]}"}
fi
echo "$passed passed, $failed failed"
exit "$rc"
