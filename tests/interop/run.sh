#!/usr/bin/env bash
# Runs every interop suite against a uapi-sidecar binary:
#   python  tests/interop/python/test_interop.py  (grpcio)
#   wire    tests/interop/python/test_wire.py     (python3-h2, raw sockets)
#   access  tests/interop/python/test_access.py   (--tokens-file, grpcio)
#   persist tests/interop/python/test_persist.py  (--state-file restarts;
#                                                  not in the default set:
#                                                  native mode only)
#   tls     tests/interop/python/test_tls.py      (--tls-cert, grpcio, ssl)
#   hostile tests/interop/python/test_hostile.py  (attacks, raw frames)
#   node    tests/interop/node/test.js            (@grpc/grpc-js)
#   cpp     tests/interop/cpp/run.sh              (grpc++)
# Each suite starts and stops its own sidecars and prints its own lines,
# ending with "N passed, N failed"; this script ends with the sum and exits
# non-zero when any suite failed.
#
# usage: tests/interop/run.sh [BINARY]     (default bazel-bin/src/uapi-sidecar)
# Env:   USC_SIDECAR_WRAPPER  put in front of every sidecar command line,
#                             e.g. "valgrind --leak-check=full --error-exitcode=99"
#        USC_INTEROP_SUITES   the suites to run (default "python wire services transport access tls hostile node cpp")
#        USC_INTEROP_MODE     native (default): each sidecar serves from its
#                             native engine; pair: each "sidecar" is a pair
#                             (tests/interop/pair.sh): the translation backend
#                             (--backend uapi) in front of a second sidecar's
#                             REST facade, and x-uapi-backend must be "uapi".
#                             A USC_SIDECAR_WRAPPER (valgrind) then runs both
#                             sidecars of each pair (USC_PAIR_INNER_WRAPPER).
set -u

bin=${1:-bazel-bin/src/uapi-sidecar}
if [ -e "$bin" ]; then bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin"); fi
cd "$(dirname "$0")/../.." || exit 2
repo=$(pwd)

total_passed=0 total_failed=0
summary() {
  echo "$total_passed passed, $total_failed failed"
  [ "$total_failed" -eq 0 ] && [ "$total_passed" -gt 0 ]
  exit
}

if [ ! -x "$bin" ]; then
  echo "FAIL  sidecar binary $bin is missing (bazel build //src:uapi-sidecar)"
  total_failed=1
  summary
fi
# A private copy: a rebuild during the run must not swap the binary
# between suites (or between the sidecars of one suite).
snapshot=$(mktemp -d /tmp/usc-interop-bin.XXXXXX)
trap 'rm -rf "$snapshot"' EXIT
cp "$bin" "$snapshot/uapi-sidecar"
bin=$snapshot/uapi-sidecar
export USC_SIDECAR_BINARY=$bin
export USC_SIDECAR_WRAPPER=${USC_SIDECAR_WRAPPER:-}
slow_wrapper=$USC_SIDECAR_WRAPPER

case ${USC_INTEROP_MODE:-native} in
  native) ;;
  pair)
    pair=$repo/tests/interop/pair.sh
    read -r -a words <<<"$USC_SIDECAR_WRAPPER"
    if [ ${#words[@]} -gt 0 ] && [ "$(basename "${words[0]}")" != pair.sh ]; then
      # The wrapper given (valgrind) runs both sidecars of each pair.
      export USC_PAIR_INNER_WRAPPER=${USC_PAIR_INNER_WRAPPER:-$USC_SIDECAR_WRAPPER}
    fi
    export USC_SIDECAR_WRAPPER=$pair USC_EXPECT_BACKEND=uapi
    slow_wrapper=${USC_PAIR_INNER_WRAPPER:-}
    echo "=== pair mode: every sidecar is $pair (--backend uapi in front of" \
      "a sidecar's REST facade)${slow_wrapper:+, both under $slow_wrapper}"
    ;;
  *)
    echo "FAIL  USC_INTEROP_MODE=${USC_INTEROP_MODE}: expected native or pair"
    total_failed=1
    summary
    ;;
esac

if [ -n "$slow_wrapper" ]; then limit=2400; else limit=600; fi

# run_suite NAME COMMAND...: runs one suite bounded in time, adds its count
# line to the totals; a suite that fails without saying so counts 1 failure.
run_suite() {
  local name=$1 out rc p f
  shift
  echo "=== $name"
  out=$(mktemp /tmp/usc-interop.XXXXXX)
  timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  read -r p f < <(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed.*$/\1 \2/p' "$out" | tail -1)
  rm -f "$out"
  p=${p:-0} f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL  suite $name exited with $rc"
    f=1
  fi
  echo "=== end of $name (passed $p, failed $f)"
  total_passed=$((total_passed + p)) total_failed=$((total_failed + f))
}

for suite in ${USC_INTEROP_SUITES:-python wire services transport access tls hostile node cpp}; do
  case $suite in
    python) run_suite python /usr/bin/python3 tests/interop/python/test_interop.py ;;
    wire) run_suite wire /usr/bin/python3 tests/interop/python/test_wire.py ;;
    services) run_suite services /usr/bin/python3 tests/interop/python/test_services.py ;;
    transport) run_suite transport /usr/bin/python3 tests/interop/python/test_transport.py ;;
    access) run_suite access /usr/bin/python3 tests/interop/python/test_access.py ;;
    persist) run_suite persist /usr/bin/python3 tests/interop/python/test_persist.py ;;
    tls) run_suite tls /usr/bin/python3 tests/interop/python/test_tls.py ;;
    hostile) run_suite hostile /usr/bin/python3 tests/interop/python/test_hostile.py ;;
    node) run_suite node tests/interop/node/run.sh ;;
    cpp) run_suite cpp tests/interop/cpp/run.sh "$bin" ;;
    *) echo "unknown suite $suite"; total_failed=$((total_failed + 1)) ;;
  esac
done
echo "=== all suites"
summary
