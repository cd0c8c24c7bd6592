#!/usr/bin/env bash
# Starts uapi-sidecars (a plain one, one with --max-calls 3, one with
# --ring-delay 60000), runs the C++ interop client against them, stops them
# with SIGTERM and requires exit code 0 from each.
#
# usage: tests/interop/cpp/run.sh [SIDECAR_BINARY] [test-substring...]
# Env: USC_SIDECAR_BINARY (default bazel-bin/src/uapi-sidecar),
#      USC_SIDECAR_WRAPPER (put in front of the sidecar, e.g. valgrind or
#      tests/interop/pair.sh), USC_EXPECT_BACKEND (read by the client),
#      USC_CPP_CLIENT (a prebuilt interop_client; else it is built with
#      bazel). Ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)

bin=${1:-${USC_SIDECAR_BINARY:-$repo/bazel-bin/src/uapi-sidecar}}
[ $# -gt 0 ] && shift
read -r -a wrapper <<<"${USC_SIDECAR_WRAPPER:-}"
# A slowing wrapper such as valgrind; tests/interop/pair.sh only through
# the wrapper it runs both sidecars in (USC_PAIR_INNER_WRAPPER).
slowed=${#wrapper[@]}
if [ "$slowed" -gt 0 ] && [ "$(basename "${wrapper[0]}")" = pair.sh ]; then
  read -r -a inner <<<"${USC_PAIR_INNER_WRAPPER:-}"
  slowed=${#inner[@]}
fi
if [ "$slowed" -gt 0 ]; then startup=30 stop_wait=60; else startup=10 stop_wait=15; fi

passed=0 failed=0
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit
}
fail() {
  echo "FAIL  $1"
  shift
  [ $# -gt 0 ] && printf '    %s\n' "$@"
  failed=$((failed + 1))
}

client=${USC_CPP_CLIENT:-}
if [ -z "$client" ]; then
  if ! (cd "$repo" && bazel build //tests/interop/cpp:interop_client >/tmp/usc-cpp-build.$$ 2>&1); then
    fail "build interop_client" "$(tail -20 /tmp/usc-cpp-build.$$)"
    rm -f /tmp/usc-cpp-build.$$
    finish
  fi
  rm -f /tmp/usc-cpp-build.$$
  client=$repo/bazel-bin/tests/interop/cpp/interop_client
fi

# Running and not a zombie.
alive() {
  local state
  state=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# The sidecars: the main one, and two with flags of their own for the tests
# of a full engine and of unanswered calls.
names=("sidecar" "sidecar --max-calls 3" "sidecar --ring-delay 60000")
flags=("" "--max-calls 3" "--ring-delay 60000")
pids=() logs=() addresses=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    if [ -n "$p" ] && alive "$p"; then kill -KILL "$p" 2>/dev/null; fi
  done
  rm -f "${logs[@]}"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

for i in "${!names[@]}"; do
  logs[i]=$(mktemp /tmp/usc-cpp-sidecar.XXXXXX)
  read -r -a extra <<<"${flags[i]}"
  "${wrapper[@]}" "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "${extra[@]}" \
    </dev/null >/dev/null 2>"${logs[i]}" &
  pids[i]=$!
done
deadline=$((SECONDS + startup))
for i in "${!names[@]}"; do
  address=
  while [ $SECONDS -lt $deadline ]; do
    address=$(grep -oE 'listening\b.*address=[0-9A-Za-z.:]+' "${logs[i]}" | head -1 | sed 's/.*address=//')
    [ -n "$address" ] && break
    alive "${pids[i]}" || break
    sleep 0.05
  done
  if [ -z "$address" ]; then
    fail "start ${names[i]}" "no listening line within ${startup}s" "$(tail -20 "${logs[i]}")"
    finish
  fi
  addresses[i]=$address
done

out=$(mktemp /tmp/usc-cpp-out.XXXXXX)
timeout --kill-after=10 $((300 * (slowed > 0 ? 4 : 1))) \
  "$client" "${addresses[0]}" --max-calls-sidecar="${addresses[1]}" \
  --ring-delay-sidecar="${addresses[2]}" "$@" | tee "$out"
rc=${PIPESTATUS[0]}
# Fold the client's count line into this script's own.
read -r cp cf < <(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$out" | tail -1)
rm -f "$out"
if [ -z "${cp:-}" ]; then
  fail "interop_client" "exited with $rc without a count line"
else
  passed=$((passed + cp)) failed=$((failed + cf))
  [ $rc -ne 0 ] && [ "$cf" -eq 0 ] && fail "interop_client" "exited with $rc"
fi

# SIGTERM: exit code 0 (under valgrind, its error exit code means leaks).
# No watchdog subshell: it would inherit the EXIT trap (cleanup) and the
# job table. alive is false once the sidecar is a zombie; wait reaps it.
kill -TERM "${pids[@]}"
deadline=$((SECONDS + stop_wait))
for i in "${!names[@]}"; do
  while alive "${pids[i]}" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
  if alive "${pids[i]}"; then kill -KILL "${pids[i]}" 2>/dev/null; fi
  wait "${pids[i]}" 2>/dev/null
  code=$?
  if [ $code -eq 0 ]; then
    echo "PASS  ${names[i]} exits 0 on SIGTERM"
    passed=$((passed + 1))
  else
    fail "${names[i]} exits 0 on SIGTERM" \
      "exit code $code (137: still running ${stop_wait}s after SIGTERM)" \
      "$(tail -40 "${logs[i]}")"
  fi
  pids[i]=
done
finish
