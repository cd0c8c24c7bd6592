#!/usr/bin/env bash
# Benchmark of uapi-sidecar against a grpc++ reference server, nghttpd (the
# HTTP/2 ceiling) and nginx (translation). Writes bench/RESULTS.md and
# bench/results.png.
#
# For each server: start it pinned to core 0 (taskset), create one call
# (bench/setup_call.py, not for nghttpd), check grpc-status of one answer
# with `nghttp -v`, calibrate -n for ~5 s, run h2load pinned to core 1 three
# times and keep the median req/s; CPU time per request comes from the
# server's utime+stime in /proc/PID/stat around the three runs.
# Then "memory and start" of the sidecar alone (bench/memstart.py): time to
# listening and to a first call, idle RSS, RSS per idle HTTP/2 connection
# and per call held, against the targets from the issue; OnHold/OffHold
# pairs, latency at half of each peak and scaling (bench/suite.py); the
# translation backend in front of nginx (bench/translate.sh); the plot
# (bench/plot.py).
# Nothing in `make test` runs this or depends on its figures.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
BAZEL=${BAZEL:-bazel}
CONC=${BENCH_CONC:-10}          # h2load -c
STREAMS=${BENCH_STREAMS:-10}    # h2load -m
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
RUNS=3
SERVER_CPU=0
CLIENT_CPU=1
# Below the ephemeral range, where a TIME-WAIT socket cannot hold them.
PORT_SIDECAR=${BENCH_PORT_SIDECAR:-31971}
PORT_REF=${BENCH_PORT_REF:-31972}
PORT_NGHTTPD=${BENCH_PORT_NGHTTPD:-31973}
METHOD=/uapi.phonecalls.v1.PhoneCallService/GetPhoneCall
HDRS=(-H 'content-type: application/grpc' -H 'te: trailers')

# Bench-only packages: h2load/nghttp (nghttp2-client), nghttpd
# (nghttp2-server), matplotlib for the plot.
missing=""
command -v h2load >/dev/null || missing="$missing nghttp2-client"
command -v nghttpd >/dev/null || [ -x /usr/sbin/nghttpd ] || missing="$missing nghttp2-server"
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || missing="$missing python3-matplotlib"
if [ -n "$missing" ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  echo "bench: installing$missing"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing || true
fi
command -v h2load >/dev/null || { echo "bench: h2load is required" >&2; exit 1; }
NGHTTPD=$(command -v nghttpd || { [ -x /usr/sbin/nghttpd ] && echo /usr/sbin/nghttpd; } || true)

"$BAZEL" build //src:uapi-sidecar //bench/ref:all
SIDECAR="$REPO/bazel-bin/src/uapi-sidecar"
REF="$REPO/bazel-bin/bench/ref/ref_server"

WORK=$(mktemp -d /tmp/usc-bench.XXXXXX)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of a process, in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing listens on port $1" >&2
  return 1
}

start_server() { # PORT CMD...
  local port=$1; shift
  taskset -c "$SERVER_CPU" "$@" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$port"
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

h2load_run() { # N URL -> prints "req/s succeeded"
  local out
  out=$(taskset -c "$CLIENT_CPU" h2load -n "$1" -c "$CONC" -m "$STREAMS" \
    -d "$WORK/get.bin" "${HDRS[@]}" "$2")
  echo "$out" >>"$WORK/h2load.log"
  local rps ok
  rps=$(echo "$out" | awk '/^finished in/ { print $4 }')
  ok=$(echo "$out" | awk '/^requests:/ { print $8 }')
  echo "$rps $ok"
}

declare -A RPS CPU_US NOTE CMD
ORDER=()

bench_server() { # NAME URL (server already started, body in $WORK/get.bin)
  local name=$1 url=$2
  # Calibrate: 1 short run, then -n for ~SECONDS_PER_RUN seconds.
  local cal n
  cal=$(h2load_run 20000 "$url" | awk '{ print $1 }')
  n=$(awk -v r="$cal" -v s="$SECONDS_PER_RUN" 'BEGIN { n = int(r * s / 1000) * 1000; if (n < 10000) n = 10000; print n }')
  CMD[$name]="taskset -c $CLIENT_CPU h2load -n $n -c $CONC -m $STREAMS -d get.bin -H 'content-type: application/grpc' -H 'te: trailers' $url"
  local t0 t1 rates=() total_ok=0 r ok
  t0=$(cpu_ticks "$SERVER_PID")
  for i in $(seq "$RUNS"); do
    read -r r ok < <(h2load_run "$n" "$url")
    echo "bench: $name run $i: $r req/s ($ok succeeded)"
    rates+=("$r")
    total_ok=$((total_ok + ok))
  done
  t1=$(cpu_ticks "$SERVER_PID")
  RPS[$name]=$(printf '%s\n' "${rates[@]}" | sort -g | sed -n 2p)
  CPU_US[$name]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$total_ok" \
    'BEGIN { if (n > 0) printf "%.2f", d / hz * 1e6 / n; else print "n/a" }')
  ORDER+=("$name")
}

grpc_status() { # URL -> grpc-status of one answer, from nghttp -v
  nghttp -v "${HDRS[@]}" -d "$WORK/get.bin" "$1" 2>&1 |
    grep -a 'recv.*grpc-status:' | head -1 | awk '{ print $NF }'
}

grpc_server() { # NAME PORT CMD...
  local name=$1 port=$2; shift 2
  echo "bench: $name"
  start_server "$port" "$@"
  read -r CALL_ID RESP_SIZE < <(/usr/bin/python3 bench/setup_call.py "127.0.0.1:$port" "$WORK")
  local url="http://127.0.0.1:$port$METHOD"
  local st
  st=$(grpc_status "$url")
  echo "bench: $name: call $CALL_ID, response $RESP_SIZE bytes, grpc-status $st"
  [ "$st" = 0 ] || { echo "bench: $name: GetPhoneCall grpc-status is '$st', not 0" >&2; exit 1; }
  NOTE[$name]="response message $RESP_SIZE bytes, grpc-status $st (nghttp -v)"
  bench_server "$name" "$url"
  stop_server
}

grpc_server uapi-sidecar "$PORT_SIDECAR" "$SIDECAR" --backend native \
  --listen "127.0.0.1:$PORT_SIDECAR" --admin-listen 127.0.0.1:0 --log-level warn
SIDECAR_RESP_SIZE=$RESP_SIZE
echo "bench: uapi-sidecar memory and start"
/usr/bin/python3 bench/memstart.py "$SIDECAR" "$WORK/create.bin" "$WORK/memstart.md" \
  "$SERVER_CPU" "$CLIENT_CPU"
SERVER_CMD_SIDECAR="taskset -c $SERVER_CPU $SIDECAR --backend native --listen 127.0.0.1:$PORT_SIDECAR --admin-listen 127.0.0.1:0 --log-level warn"
grpc_server ref-grpc++ "$PORT_REF" "$REF" "$PORT_REF"
SERVER_CMD_REF="taskset -c $SERVER_CPU $REF $PORT_REF"

SERVER_CMD_NGHTTPD="(skipped: nghttpd not installed)"
if [ -n "$NGHTTPD" ]; then
  echo "bench: nghttpd"
  # A static file as large as the sidecar's framed GetPhoneCall answer
  # (5-byte gRPC header + message); h2load POSTs the same request body to it.
  mkdir -p "$WORK/docroot"
  head -c $((SIDECAR_RESP_SIZE + 5)) /dev/zero >"$WORK/docroot/GetPhoneCall"
  start_server "$PORT_NGHTTPD" "$NGHTTPD" --no-tls -d "$WORK/docroot" "$PORT_NGHTTPD"
  SERVER_CMD_NGHTTPD="taskset -c $SERVER_CPU $NGHTTPD --no-tls -d DOCROOT $PORT_NGHTTPD   # DOCROOT/GetPhoneCall: $((SIDECAR_RESP_SIZE + 5)) bytes"
  NOTE[nghttpd]="static file of $((SIDECAR_RESP_SIZE + 5)) bytes, no trailers"
  bench_server nghttpd "http://127.0.0.1:$PORT_NGHTTPD/GetPhoneCall"
  stop_server
fi

PEAKS=""
{
  echo "{"
  sep=""
  for s in "${ORDER[@]}"; do
    printf '%s "%s": {"rps": %s, "cpu_us": %s}' "$sep" "$s" "${RPS[$s]}" "${CPU_US[$s]}"
    sep=","
    PEAKS="$PEAKS$s=${RPS[$s]},"
  done
  echo "}"
} >"$WORK/get.json"
echo "bench: OnHold/OffHold pairs, latency, scaling"
/usr/bin/python3 bench/suite.py "$SIDECAR" "$REF" "$NGHTTPD" "$WORK" \
  "$WORK/suite.md" "$WORK/suite.json" "$PEAKS"
/usr/bin/python3 bench/plot.py "$WORK/get.json" "$WORK/suite.json" bench/results.png
# Last: it leaves thousands of sockets in TIME-WAIT.
echo "bench: translation backend against nginx"
bench/translate.sh "$SIDECAR" "$WORK/translate.md"

ratio() { # A B -> A/B or n/a
  if [ -n "${2:-}" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo n/a; fi
}

OUT=bench/RESULTS.md
{
  echo "# Benchmark results: GetPhoneCall, memory and start"
  echo
  echo "Written by \`bench/run.sh\` (\`make bench\`) on $(date -u +%Y-%m-%dT%H:%MZ)."
  echo "Nothing in \`make test\` runs the benchmark or depends on these figures;"
  echo "they vary with the machine and its load."
  echo
  echo "## Machine"
  echo
  echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "- CPUs: $(nproc) ($(lscpu | sed -n 's/^Thread(s) per core: */threads per core: /p'))"
  echo "- OS: $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "- h2load: $(h2load --version | head -1)"
  echo
  echo "## Method"
  echo
  echo "Each server runs alone, pinned to CPU $SERVER_CPU; h2load is pinned to CPU $CLIENT_CPU."
  echo "One call is created first (\`bench/setup_call.py\`, grpcio stubs generated"
  echo "at run time), which also writes the gRPC-framed GetPhoneCall request body"
  echo "(\`get.bin\`) that every h2load request POSTs. One answer's grpc-status is"
  echo "checked with \`nghttp -v\` (h2load counts HTTP 200s only). A 20000-request"
  echo "calibration run sets -n to about ${SECONDS_PER_RUN} s of work; then $RUNS runs, median req/s."
  echo "CPU µs/request: the server's utime+stime (\`/proc/PID/stat\`, ${CLK_TCK} ticks/s)"
  echo "across the $RUNS runs, divided by the requests that succeeded."
  echo "The sidecar runs with \`--log-level warn\`: at the default (info) it logs"
  echo "one line per RPC, which the reference server does not do."
  echo
  echo "Servers:"
  echo
  echo '```'
  echo "$SERVER_CMD_SIDECAR"
  echo "$SERVER_CMD_REF"
  echo "$SERVER_CMD_NGHTTPD"
  echo '```'
  echo
  echo "Load (per server):"
  echo
  echo '```'
  for s in "${ORDER[@]}"; do echo "${CMD[$s]}"; done
  echo '```'
  echo
  echo "## Results"
  echo
  echo "| server | req/s (median of $RUNS) | CPU µs/request | vs ref-grpc++ | vs nghttpd | notes |"
  echo "|---|---:|---:|---:|---:|---|"
  for s in "${ORDER[@]}"; do
    echo "| $s | ${RPS[$s]} | ${CPU_US[$s]} | $(ratio "${RPS[$s]}" "${RPS[ref-grpc++]:-}") | $(ratio "${RPS[$s]}" "${RPS[nghttpd]:-}") | ${NOTE[$s]} |"
  done
  if [ -z "$NGHTTPD" ]; then
    echo
    echo "nghttpd was not available: its row and ratios are skipped."
  fi
  echo
  echo
  verdict() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "n/a") print "n/a"; else print (v >= t ? "met" : "not met") }'; }
  vs_ref=$(ratio "${RPS[uapi-sidecar]}" "${RPS[ref-grpc++]:-}")
  vs_ngh=$(ratio "${RPS[uapi-sidecar]}" "${RPS[nghttpd]:-}")
  echo "Targets: GetPhoneCall at least 2x the grpc++ server per core: ${vs_ref}x, $(verdict "$vs_ref" 2);"
  echo "at least 0.60 of nghttpd: ${vs_ngh}, $(verdict "$vs_ngh" 0.60)."
  echo
  echo "Ratios are req/s of the row's server divided by req/s of the other."
  echo "ref-grpc++ is \`bench/ref/ref_server.cc\`: grpc++ $(dpkg-query -W -f='${Version}' libgrpc++-dev 2>/dev/null || echo '?') callback API,"
  echo "CreateSimplePhoneCall, GetPhoneCall, OnHold and OffHold only (the rest UNIMPLEMENTED)."
  echo
  cat "$WORK/memstart.md"
  echo
  cat "$WORK/suite.md"
  echo
  cat "$WORK/translate.md"
  echo
  echo "![throughput, latency and scaling](results.png)"
  echo
  cat bench/HISTORY.md
} >"$OUT"
echo "bench: wrote $OUT"
cat "$OUT"
