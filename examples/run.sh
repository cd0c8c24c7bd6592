#!/usr/bin/env bash
# Runs every client example against a fresh uapi-sidecar and checks that
# each exits 0 after printing its four steps (placed, on hold, off hold,
# hung up), then stops the sidecar with SIGTERM and requires exit 0.
#
# usage: examples/run.sh [SIDECAR_BINARY]   (default bazel-bin/src/uapi-sidecar)
#
# Listens on 127.0.0.1 only (ports picked by the kernel). Builds the C++
# example with bazel and the Go one with examples/go/build.sh, and runs
# `npm ci` in examples/node when node_modules is missing. Every step is
# bounded by a timeout. Ends with "N passed, N failed", one per example
# (plus one failure if the sidecar does not stop cleanly).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${1:-$repo/bazel-bin/src/uapi-sidecar}

passed=0 failed=0
work=$(mktemp -d /tmp/uapi-examples.XXXXXX)
sidecar_pid=

cleanup() {
  # The sidecar leads its own process group: nothing of it outlives us.
  if [ -n "$sidecar_pid" ]; then
    kill -KILL -- "-$sidecar_pid" 2>/dev/null
    wait "$sidecar_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit
}

fail() { # NAME [DETAIL FILE]
  echo "FAIL  $1"
  [ $# -gt 1 ] && [ -s "$2" ] && tail -n 20 "$2" | sed 's/^/    /'
  failed=$((failed + 1))
}

if [ ! -x "$bin" ]; then
  echo "no sidecar binary at $bin (bazel build //src:uapi-sidecar)" >&2
  fail "start sidecar"
  finish
fi

# --- Debian packages --------------------------------------------------------
# The Makefile's list covers the examples (Go included).
make -s -C "$(dirname "$0")/.." deps >"$work/apt.log" 2>&1 || tail -n 5 "$work/apt.log"

# --- building what needs building ------------------------------------------
# Each build's failure fails only its own example.
cpp_client= go_client= node_ready=
if (cd "$repo" && timeout 900 bazel build //examples/cpp:all) \
  >"$work/cpp-build.log" 2>&1; then
  # bazel-bin may point at another configuration: use fastbuild's output.
  cpp_client=$repo/bazel-out/k8-fastbuild/bin/examples/cpp/place_call
fi
if timeout 300 "$here/go/build.sh" "$work/place_call_go" \
  >"$work/go-build.log" 2>&1; then
  go_client=$work/place_call_go
fi
if [ -d "$here/node/node_modules" ] ||
  (cd "$here/node" && timeout 300 npm ci --no-audit --no-fund) \
    >"$work/node-build.log" 2>&1; then
  node_ready=1
fi

# --- the sidecar -----------------------------------------------------------
setsid "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  </dev/null >/dev/null 2>"$work/sidecar.log" &
sidecar_pid=$!
address=
for _ in $(seq 100); do # up to 10 s
  address=$(sed -n 's/.*listening address=\([0-9.]*:[0-9]*\).*/\1/p' \
    "$work/sidecar.log" | head -n 1)
  [ -n "$address" ] && break
  kill -0 "$sidecar_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$address" ]; then
  fail "start sidecar" "$work/sidecar.log"
  finish
fi
echo "sidecar at $address (pid $sidecar_pid)"

# --- the examples ----------------------------------------------------------
# run_example NAME COMMAND...: runs it against the sidecar (60 s at most) and
# checks its exit code and its four step lines, the hang-up naming the call.
run_example() {
  local name=$1 out=$work/$1.out rc id
  shift
  timeout 60 "$@" "$address" </dev/null >"$out" 2>&1
  rc=$?
  id=$(sed -n 's/^placed call \([0-9A-Za-z]\{1,\}\)$/\1/p' "$out" | head -n 1)
  if [ "$rc" -ne 0 ]; then
    fail "$name (exit $rc)" "$out"
  elif [ -z "$id" ] ||
    ! grep -q '^on hold leg 01 since ' "$out" ||
    ! grep -qx 'off hold leg 01' "$out" ||
    ! grep -qx "hung up $id" "$out"; then
    fail "$name (steps missing)" "$out"
  else
    echo "ok    $name (call $id)"
    passed=$((passed + 1))
  fi
}

run_example python /usr/bin/python3 "$here/python/place_call.py"
if [ -n "$node_ready" ]; then
  run_example node node "$here/node/place_call.js"
else
  fail "node (npm ci)" "$work/node-build.log"
fi
if [ -n "$cpp_client" ]; then
  run_example cpp "$cpp_client"
else
  fail "cpp (bazel build //examples/cpp:all)" "$work/cpp-build.log"
fi
if [ -n "$go_client" ]; then
  run_example go "$go_client"
else
  fail "go (examples/go/build.sh)" "$work/go-build.log"
fi

# --- stopping the sidecar --------------------------------------------------
kill -TERM "$sidecar_pid"
for _ in $(seq 150); do # up to 15 s
  kill -0 "$sidecar_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$sidecar_pid" 2>/dev/null; then
  fail "sidecar did not stop within 15 s of SIGTERM" "$work/sidecar.log"
else
  wait "$sidecar_pid"
  rc=$?
  kill -KILL -- "-$sidecar_pid" 2>/dev/null # anything it left behind
  sidecar_pid=
  if [ "$rc" -ne 0 ]; then
    fail "sidecar exited $rc after SIGTERM" "$work/sidecar.log"
  else
    echo "sidecar stopped cleanly"
  fi
fi
finish
