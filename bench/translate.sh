#!/usr/bin/env bash
# Benchmark of the translation backend: uapi-sidecar --backend uapi in front
# of a real nginx that answers the UAPI paths with fixed JSON
# (bench/translate-nginx.conf), against h2load hitting nginx directly over
# HTTP/1.1. Writes one Markdown section to OUT_MD.
#
# usage: bench/translate.sh SIDECAR_BINARY OUT_MD
#
# Placement (2 CPUs): the server under test is alone on CPU 0, so its CPU
# time per request is the per-core figure.
#   direct:  nginx on CPU 0, h2load --h1 on CPU 1
#   sidecar: sidecar on CPU 0, nginx and h2load together on CPU 1
# Latency at concurrency 1 (h2load -c 1 -m 1 --log-file, per-request
# durations, p50/p99 per run, median of the runs) and peak throughput
# (h2load -D for a fixed time, median req/s of the runs; CPU µs/request
# from utime+stime in /proc/PID/stat across the runs). GetPhoneCall is the
# GET of one call; OnHold is the PUT of an action. A last, diagnostic c=1
# measure moves nginx onto the sidecar's CPU, to tell the sidecar's own
# cost from that of the two extra cross-CPU wake-ups of its placement.
# Upstream keep-alive reuse comes from nginx's stub_status counters.
# Environment: BENCH_SECONDS (peak run length, 5), BENCH_XLATE_LAT_SECONDS
# (latency run length, 2), BENCH_XLATE_RUNS (3), BENCH_XLATE_PEAK_CONC
# (h2load -c for the sidecar, 10), BENCH_XLATE_PEAK_STREAMS (-m, 10),
# BENCH_XLATE_H1_CONC (h2load --h1 -c against nginx direct, 100, as many
# requests in flight as the sidecar gets), BENCH_PORT_XLATE,
# BENCH_PORT_XLATE_ADMIN, BENCH_PORT_NGINX.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 SIDECAR_BINARY OUT_MD" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
SIDECAR=$(readlink -f "$1")
OUT_MD=$2
[ -x "$SIDECAR" ] || { echo "translate: $SIDECAR is not executable" >&2; exit 1; }

SERVER_CPU=0
CLIENT_CPU=1
RUNS=${BENCH_XLATE_RUNS:-3}
PEAK_SECONDS=${BENCH_SECONDS:-5}
LAT_SECONDS=${BENCH_XLATE_LAT_SECONDS:-2}
PEAK_CONC=${BENCH_XLATE_PEAK_CONC:-10}
PEAK_STREAMS=${BENCH_XLATE_PEAK_STREAMS:-10}
H1_CONC=${BENCH_XLATE_H1_CONC:-$((PEAK_CONC * PEAK_STREAMS))}
# Below the kernel's ephemeral range (32768-60999 by default): the runs
# leave thousands of client sockets in TIME-WAIT, and one holding the
# listening port as its local port would make the bind fail.
PORT_SIDECAR=${BENCH_PORT_XLATE:-31974}
PORT_ADMIN=${BENCH_PORT_XLATE_ADMIN:-31976}
PORT_NGINX=${BENCH_PORT_NGINX:-31975}
TARGET_ADDED_US=50
TARGET_RATIO_PCT=70

EXT='0003*210'
CALL_ID=b817d2618fe6f1804333
UAPI_PATH="/uapi/phoneCalls/@me/$EXT/$CALL_ID"
SERVICE=/uapi.phonecalls.v1.PhoneCallService
AUTH='authorization: Bearer bench-token'
GRPC_HDRS=(-H 'content-type: application/grpc' -H 'te: trailers' -H "$AUTH")

# Bench-only packages: nginx, h2load/nghttp (nghttp2-client).
missing=""
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v h2load >/dev/null || missing="$missing nghttp2-client"
if [ -n "$missing" ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  echo "translate: installing$missing"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing || true
fi
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
[ -n "$NGINX" ] || { echo "translate: nginx is required" >&2; exit 1; }
command -v h2load >/dev/null || { echo "translate: h2load is required" >&2; exit 1; }

WORK=$(mktemp -d /tmp/usc-xlate.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$WORK"
}

stop_pid() { # PID: TERM, then KILL after 3 s
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 30); do
    kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
# Other work on the machine skews every figure: note how idle it was.
IDLE_BEFORE=$(vmstat 1 2 | tail -1 | awk '{ print $15 }')
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of a process (all threads), in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
now() { date +%s.%N; }

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() { # PORT PID
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  echo "translate: nothing listens on port $1" >&2
  return 1
}

for p in "$PORT_SIDECAR" "$PORT_ADMIN" "$PORT_NGINX"; do
  port_free "$p" || {
    echo "translate: port $p is already in use (BENCH_PORT_XLATE, BENCH_PORT_XLATE_ADMIN, BENCH_PORT_NGINX)" >&2
    exit 1
  }
done

# The nginx prefix: config, pid, error log and temp dirs, nothing outside.
NGX="$WORK/nginx"
mkdir -p "$NGX"
sed -e "s#@PREFIX@#$NGX#g" -e "s#@PORT@#$PORT_NGINX#g" \
  "$REPO/bench/translate-nginx.conf" >"$NGX/nginx.conf"
NGINX_ARGS=(-c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/error.log")

start_nginx() { # CPU
  taskset -c "$1" "$NGINX" "${NGINX_ARGS[@]}" >>"$WORK/nginx.out" 2>&1 &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$PORT_NGINX" "$NGINX_PID" || { tail -5 "$NGX/error.log" "$WORK/nginx.out" >&2; exit 1; }
}

start_sidecar() { # CPU
  taskset -c "$1" "$SIDECAR" --backend uapi --uapi-url "http://127.0.0.1:$PORT_NGINX" \
    --listen "127.0.0.1:$PORT_SIDECAR" --admin-listen "127.0.0.1:$PORT_ADMIN" \
    --log-level warn >>"$WORK/sidecar.log" 2>&1 &
  SIDECAR_PID=$!
  PIDS+=("$SIDECAR_PID")
  wait_port "$PORT_SIDECAR" "$SIDECAR_PID" || { tail -5 "$WORK/sidecar.log" >&2; exit 1; }
}

stop() { # PID
  stop_pid "$1"
  forget_pid "$1"
}

# gRPC-framed requests, encoded by hand: every field is a short string
# (tag = field << 3 | 2, one-byte length), then the 5-byte gRPC header.
/usr/bin/python3 - "$WORK" "$EXT" "$CALL_ID" <<'EOF'
import struct, sys
out, ext, call_id = sys.argv[1:4]
def field(num, value):
    data = value.encode()
    return bytes([num << 3 | 2, len(data)]) + data
def write(name, msg):
    with open("%s/%s" % (out, name), "wb") as f:
        f.write(struct.pack(">BI", 0, len(msg)) + msg)
write("get.bin", field(2, ext) + field(3, call_id))           # GetPhoneCallRequest
write("onhold.bin", field(2, ext) + field(3, call_id) + field(4, "00"))  # OnHoldRequest
with open("%s/put.json" % out, "w") as f:  # the PUT nginx-direct sends
    f.write('{"action":"OnHold","phoneCallViewId":"00"}')
EOF

nginx_status() { # -> "accepts requests"
  curl -s "http://127.0.0.1:$PORT_NGINX/nginx_status" | awk 'NR == 3 { print $1, $3 }'
}

grpc_check() { # METHOD BODY -> one line "grpc-status x-uapi-backend"
  local out st be
  out=$(nghttp -v "${GRPC_HDRS[@]}" -d "$WORK/$2" "http://127.0.0.1:$PORT_SIDECAR$SERVICE/$1" 2>&1 | tr -d '\0')
  echo "$out" >>"$WORK/nghttp.log"
  st=$(echo "$out" | grep -a 'recv.*grpc-status:' | head -1 | awk '{ print $NF }')
  be=$(echo "$out" | grep -a 'recv.*x-uapi-backend:' | head -1 | awk '{ print $NF }')
  echo "${st:-none} ${be:-none}"
}

h2load_out() { # h2load ARGS... -> stdout kept in h2load.log, echoed
  local out
  out=$(taskset -c "$CLIENT_CPU" h2load "$@")
  printf '%s\n' "$out" >>"$WORK/h2load.log"
  printf '%s\n' "$out"
}

succeeded() { awk '/^requests:/ { print $8 }'; }
rate() { awk '/^finished in/ { print $4 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

percentiles() { # LOGFILE -> "p50 p99" of the duration column (µs)
  awk -F'\t' '$2 == 200 { print $3 }' "$1" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a n/a"; exit }
      i50 = int(NR * 0.50 + 0.5); i99 = int(NR * 0.99 + 0.5)
      if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
      print v[i50], v[i99] }'
}

declare -A P50 P99 LAT_CPU_US RPS CPU_US UPSTREAM_CPU_US BUSY LOAD_CMD LAT_CMD UP_CONNS UP_REQS

# CPU time per request of PID from ticks T0..T1 over N requests.
us_per_req() { awk -v d=$(($2 - $1)) -v hz="$CLK_TCK" -v n="$3" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }'; }

upstream_begin() { [ -z "$TRACK_UPSTREAM" ] || read -r UP_ACC0 UP_REQ0 < <(nginx_status); }
upstream_end() { # NAME: connections nginx accepted and requests it served since upstream_begin
  [ -n "$TRACK_UPSTREAM" ] || return 0
  local acc req
  read -r acc req < <(nginx_status)
  # The status reads are one connection and one request each.
  UP_CONNS[$1]=$((acc - UP_ACC0 - 1))
  UP_REQS[$1]=$((req - UP_REQ0 - 1))
}

latency() { # NAME URL SERVER_PID H2LOAD-ARGS... ; concurrency 1, $RUNS runs
  local name=$1 url=$2 spid=$3; shift 3
  local p50s=() p99s=() i p50 p99 n ok=0 t0 t1
  LAT_CMD[$name]="taskset -c $CLIENT_CPU h2load -c 1 -m 1 -D $LAT_SECONDS --log-file=LOG $(shown "$@" "$url")"
  h2load_out -c 1 -m 1 -n 500 "$@" "$url" >/dev/null # warm-up
  upstream_begin
  t0=$(cpu_ticks "$spid")
  for i in $(seq "$RUNS"); do
    rm -f "$WORK/lat.log"
    ok=$((ok + $(h2load_out -c 1 -m 1 -D "$LAT_SECONDS" --log-file="$WORK/lat.log" "$@" "$url" | succeeded)))
    read -r p50 p99 < <(percentiles "$WORK/lat.log")
    n=$(wc -l <"$WORK/lat.log")
    echo "translate: $name c=1 run $i: p50 $p50 µs, p99 $p99 µs ($n requests)"
    p50s+=("$p50")
    p99s+=("$p99")
  done
  t1=$(cpu_ticks "$spid")
  upstream_end "$name-c1"
  P50[$name]=$(printf '%s\n' "${p50s[@]}" | median)
  P99[$name]=$(printf '%s\n' "${p99s[@]}" | median)
  LAT_CPU_US[$name]=$(us_per_req "$t0" "$t1" "$ok")
}

peak() { # NAME URL SERVER_PID UPSTREAM_PID|"" H2LOAD-ARGS...
  local name=$1 url=$2 spid=$3 upid=$4; shift 4
  local rates=() ok=0 i out t0 t1 u0=0 u1=0 w0 w1
  LOAD_CMD[$name]="taskset -c $CLIENT_CPU h2load -D $PEAK_SECONDS $(shown "$@" "$url")"
  h2load_out -n 2000 "$@" "$url" >/dev/null # warm-up
  upstream_begin
  t0=$(cpu_ticks "$spid")
  if [ -n "$upid" ]; then u0=$(cpu_ticks "$upid"); fi
  w0=$(now)
  for i in $(seq "$RUNS"); do
    out=$(h2load_out -D "$PEAK_SECONDS" "$@" "$url")
    rates+=("$(echo "$out" | rate)")
    ok=$((ok + $(echo "$out" | succeeded)))
    echo "translate: $name peak run $i: ${rates[-1]} req/s"
  done
  w1=$(now)
  t1=$(cpu_ticks "$spid")
  if [ -n "$upid" ]; then u1=$(cpu_ticks "$upid"); fi
  upstream_end "$name-peak"
  RPS[$name]=$(printf '%s\n' "${rates[@]}" | median)
  CPU_US[$name]=$(us_per_req "$t0" "$t1" "$ok")
  BUSY[$name]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v a="$w0" -v b="$w1" \
    'BEGIN { printf "%.0f", d / hz / (b - a) * 100 }')
  if [ -n "$upid" ]; then UPSTREAM_CPU_US[$name]=$(us_per_req "$u0" "$u1" "$ok"); fi
}

shown() { # ARGS... -> one line, args with spaces or globs single-quoted, no $WORK/
  local a out=""
  for a in "$@"; do
    a=${a//$WORK\//}
    case $a in *[\ \*\?\'\"\;\&\|\<\>]*) a="'$a'" ;; esac
    out="$out $a"
  done
  echo "${out# }"
}

per_core() { awk -v c="$1" 'BEGIN { if (c > 0) printf "%.0f", 1e6 / c; else print "n/a" }'; }

NGINX_URL="http://127.0.0.1:$PORT_NGINX$UAPI_PATH"
SIDECAR_URL="http://127.0.0.1:$PORT_SIDECAR$SERVICE"

# 1. nginx direct, alone on the server CPU.
echo "translate: nginx direct (HTTP/1.1)"
TRACK_UPSTREAM=""
start_nginx "$SERVER_CPU"
GET_ANSWER_BYTES=$(curl -s "$NGINX_URL" | wc -c)
PUT_ANSWER_BYTES=$(curl -s -X PUT --data-binary @"$WORK/put.json" "$NGINX_URL" | wc -c)
PUT_H1=(-H ':method: PUT' -H 'content-type: application/json' -H "$AUTH" -d "$WORK/put.json")
latency nginx-get "$NGINX_URL" "$NGINX_PID" --h1 -H "$AUTH"
peak nginx-get "$NGINX_URL" "$NGINX_PID" "" --h1 -c "$H1_CONC" -H "$AUTH"
latency nginx-put "$NGINX_URL" "$NGINX_PID" --h1 "${PUT_H1[@]}"
peak nginx-put "$NGINX_URL" "$NGINX_PID" "" --h1 -c "$H1_CONC" "${PUT_H1[@]}"
stop "$NGINX_PID"

# 2. sidecar alone on the server CPU; nginx shares the client CPU with h2load.
echo "translate: sidecar --backend uapi in front of nginx"
start_nginx "$CLIENT_CPU"
start_sidecar "$SERVER_CPU"
for m in GetPhoneCall:get.bin OnHold:onhold.bin; do
  read -r st be < <(grpc_check "${m%%:*}" "${m#*:}")
  echo "translate: ${m%%:*}: grpc-status $st, x-uapi-backend $be"
  if [ "$st" != 0 ] || [ "$be" != uapi ]; then
    echo "translate: ${m%%:*} answered grpc-status '$st', x-uapi-backend '$be' (want 0, uapi)" >&2
    exit 1
  fi
done
GET_FRAME_BYTES=$(nghttp "${GRPC_HDRS[@]}" -d "$WORK/get.bin" "$SIDECAR_URL/GetPhoneCall" | wc -c)
TRACK_UPSTREAM=1
latency sidecar-get "$SIDECAR_URL/GetPhoneCall" "$SIDECAR_PID" -d "$WORK/get.bin" "${GRPC_HDRS[@]}"
peak sidecar-get "$SIDECAR_URL/GetPhoneCall" "$SIDECAR_PID" "$NGINX_PID" \
  -c "$PEAK_CONC" -m "$PEAK_STREAMS" -d "$WORK/get.bin" "${GRPC_HDRS[@]}"
latency sidecar-onhold "$SIDECAR_URL/OnHold" "$SIDECAR_PID" -d "$WORK/onhold.bin" "${GRPC_HDRS[@]}"
peak sidecar-onhold "$SIDECAR_URL/OnHold" "$SIDECAR_PID" "$NGINX_PID" \
  -c "$PEAK_CONC" -m "$PEAK_STREAMS" -d "$WORK/onhold.bin" "${GRPC_HDRS[@]}"
# Diagnostic: the same latency with nginx moved onto the sidecar's CPU, so
# that the sidecar path has as many cross-CPU wake-ups as nginx direct.
taskset -pc "$SERVER_CPU" "$NGINX_PID" >/dev/null
latency sidecar-get-colocated "$SIDECAR_URL/GetPhoneCall" "$SIDECAR_PID" -d "$WORK/get.bin" "${GRPC_HDRS[@]}"
# RPCs the sidecar ended, by gRPC code (h2load counts HTTP 200s only).
CODES=$(curl -s "http://127.0.0.1:$PORT_ADMIN/metrics" |
  sed -n 's/^grpc_server_handled_total{.*grpc_code="\([A-Z_]*\)"} \([0-9]*\).*/\1 \2/p' |
  awk '{ n[$1] += $2 } END { for (c in n) { printf "%s%s %d", sep, c, n[c]; sep = ", " } }')
stop "$SIDECAR_PID"
stop "$NGINX_PID"
LOADAVG_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "translate: sidecar RPCs by code: $CODES"

# 3. The section.
diff_us() { awk -v a="$1" -v b="$2" 'BEGIN { print a - b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a / b * 100 }'; }
verdict() { if [ "$1" = 1 ]; then echo met; else echo "**not met**"; fi; }
ADDED=$(diff_us "${P50[sidecar-get]}" "${P50[nginx-get]}")
ADDED_PUT=$(diff_us "${P50[sidecar-onhold]}" "${P50[nginx-put]}")
ADDED_COLOCATED=$(diff_us "${P50[sidecar-get-colocated]}" "${P50[nginx-get]}")
RATIO_CPU=$(pct "${CPU_US[nginx-get]}" "${CPU_US[sidecar-get]}")
RATIO_CPU_PUT=$(pct "${CPU_US[nginx-put]}" "${CPU_US[sidecar-onhold]}")
RATIO_WALL=$(pct "${RPS[sidecar-get]}" "${RPS[nginx-get]}")
V_ADDED=$(verdict "$(awk -v a="$ADDED" -v t="$TARGET_ADDED_US" 'BEGIN { print (a <= t) }')")
V_RATIO=$(verdict "$(awk -v a="$RATIO_CPU" -v t="$TARGET_RATIO_PCT" 'BEGIN { print (a >= t) }')")

row() { # LABEL NAME
  local n=$2 up=""
  [ -z "${UPSTREAM_CPU_US[$n]:-}" ] || up=" (+ nginx ${UPSTREAM_CPU_US[$n]})"
  echo "| $1 | ${P50[$n]} | ${P99[$n]} | ${LAT_CPU_US[$n]} | ${RPS[$n]} | ${CPU_US[$n]}$up | $(per_core "${CPU_US[$n]}") | ${BUSY[$n]}% |"
}

{
  echo "## Translation: --backend uapi in front of nginx"
  echo
  echo "Written by \`bench/translate.sh\` on $(date -u +%Y-%m-%dT%H:%MZ) with"
  echo "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //') and $(h2load --version | head -1 | sed 's/^h2load //');"
  echo "load average $LOADAVG before, $LOADAVG_AFTER after; CPU idle in the second"
  echo "before the run: $IDLE_BEFORE%."
  if [ "$IDLE_BEFORE" -lt 90 ]; then
    echo
    echo "**Other work was using the CPUs when this ran: the figures below are skewed"
    echo "by it (more so the latencies and the c=1 CPU costs) and only roughly"
    echo "comparable with each other.**"
  fi
  echo
  echo "### Method"
  echo
  echo "nginx (\`bench/translate-nginx.conf\`: one process without master, access log"
  echo "off, \`keepalive_requests\` 100000000) answers every GET under \`/uapi/phoneCalls/\`"
  echo "with a fixed $GET_ANSWER_BYTES-byte collection holding one call with two views, and"
  echo "every PUT with that call as a $PUT_ANSWER_BYTES-byte object, \`Content-Type: application/json\`."
  echo "The sidecar's GetPhoneCall sends \`GET $UAPI_PATH\` (answer: a"
  echo "$GET_FRAME_BYTES-byte gRPC frame), its OnHold a PUT of"
  echo "\`{\"action\":\"OnHold\",\"phoneCallViewId\":\"00\"}\` to the same path; nginx direct gets"
  echo "the same GET, and the same PUT. Before the load, one GetPhoneCall and one OnHold"
  echo "were checked with \`nghttp -v\`: grpc-status 0 and \`x-uapi-backend: uapi\`."
  echo "Every request carries \`$AUTH\`, which the sidecar forwards."
  echo
  echo "Placement: the server under test is alone on its core, so its CPU time per"
  echo "request is the per-core cost."
  echo
  echo "- nginx direct: nginx on CPU $SERVER_CPU, h2load (HTTP/1.1) on CPU $CLIENT_CPU;"
  echo "- sidecar: sidecar on CPU $SERVER_CPU, nginx **and** h2load together on CPU $CLIENT_CPU."
  echo "  The peak req/s of the sidecar is therefore also bounded by that shared core;"
  echo "  \"req/s per core from CPU\" (10^6 / CPU µs per request: what one fully busy"
  echo "  core would serve) and \"server core busy\" say whether the sidecar's core was"
  echo "  the limit. The sidecar path has one more loopback round trip and two more"
  echo "  cross-CPU wake-ups per request than nginx direct: that is what a sidecar adds."
  echo
  echo "Latency at concurrency 1: h2load \`-c 1 -m 1\` for $LAT_SECONDS s with \`--log-file\`"
  echo "(per request: µs from its start to the end of its response), p50 and p99 of"
  echo "each run, median of $RUNS runs, after a 500-request warm-up. Added latency ="
  echo "sidecar p50 − nginx-direct p50. Peak: h2load for $PEAK_SECONDS s, $RUNS runs, median"
  echo "req/s, after a 2000-request warm-up; gRPC: \`-c $PEAK_CONC -m $PEAK_STREAMS\` ($((PEAK_CONC * PEAK_STREAMS)) requests in"
  echo "flight); HTTP/1.1, which does not multiplex: \`--h1 -c $H1_CONC\` ($H1_CONC in flight)."
  echo "CPU µs/request: the server's utime+stime (\`/proc/PID/stat\`, $CLK_TCK ticks/s) over"
  echo "the $RUNS runs of a measure, divided by the requests h2load counts as succeeded;"
  echo "for the sidecar rows nginx's own CPU per request is in brackets, not in the"
  echo "sidecar's figure. Server core busy = that CPU time / wall time of the peak runs."
  echo
  echo '```'
  echo "# nginx direct"
  echo "taskset -c $SERVER_CPU $NGINX -c NGINX_CONF -p PREFIX -e PREFIX/error.log"
  echo "${LAT_CMD[nginx-get]}"
  echo "${LOAD_CMD[nginx-get]}"
  echo "${LAT_CMD[nginx-put]}"
  echo "${LOAD_CMD[nginx-put]}"
  echo "# sidecar"
  echo "taskset -c $CLIENT_CPU $NGINX -c NGINX_CONF -p PREFIX -e PREFIX/error.log"
  echo "taskset -c $SERVER_CPU $SIDECAR --backend uapi --uapi-url http://127.0.0.1:$PORT_NGINX --listen 127.0.0.1:$PORT_SIDECAR --admin-listen 127.0.0.1:$PORT_ADMIN --log-level warn"
  echo "${LAT_CMD[sidecar-get]}"
  echo "${LOAD_CMD[sidecar-get]}"
  echo "${LAT_CMD[sidecar-onhold]}"
  echo "${LOAD_CMD[sidecar-onhold]}"
  echo "taskset -pc $SERVER_CPU NGINX_PID   # diagnostic row, then:"
  echo "${LAT_CMD[sidecar-get-colocated]}"
  echo '```'
  echo
  echo "NGINX_CONF is \`bench/translate-nginx.conf\` with @PREFIX@ (a temp dir) and @PORT@"
  echo "filled in; get.bin and onhold.bin are the gRPC-framed requests (encoded by the"
  echo "script), put.json the PUT body."
  echo
  echo "### Results"
  echo
  echo "| server | p50 µs, c=1 | p99 µs, c=1 | CPU µs/request, c=1 | req/s peak | CPU µs/request, peak | req/s per core from CPU | server core busy |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  row "nginx direct HTTP/1.1, GET" nginx-get
  row "sidecar --backend uapi, GetPhoneCall" sidecar-get
  row "nginx direct HTTP/1.1, PUT" nginx-put
  row "sidecar --backend uapi, OnHold" sidecar-onhold
  colo=sidecar-get-colocated
  echo "| diagnostic: sidecar GetPhoneCall, nginx on CPU $SERVER_CPU with it | ${P50[$colo]} | ${P99[$colo]} | ${LAT_CPU_US[$colo]} | | | | |"
  echo
  echo "| target (issue) | measured | |"
  echo "|---|---|---|"
  echo "| added latency at p50, concurrency 1: ≤ $TARGET_ADDED_US µs | GetPhoneCall $ADDED µs (OnHold $ADDED_PUT µs) | $V_ADDED |"
  echo "| throughput per sidecar core ≥ $TARGET_RATIO_PCT% of nginx direct HTTP/1.1 per core | GetPhoneCall $RATIO_CPU% (OnHold $RATIO_CPU_PUT%) | $V_RATIO |"
  echo
  echo "Diagnostic row: nginx moved onto CPU $SERVER_CPU with the sidecar for one more"
  echo "c=1 measure (\`taskset -pc $SERVER_CPU NGINX_PID\`), so the sidecar path has the same two"
  echo "cross-CPU wake-ups as nginx direct: added p50 $ADDED_COLOCATED µs. The difference"
  echo "from the first added figure is the cost of waking a process on the other CPU"
  echo "twice more per call, which on a VM can be large."
  echo
  echo "The throughput ratio is req/s per fully busy core, sidecar over nginx direct"
  echo "(nginx CPU µs/request over the sidecar's, peak runs). Wall-clock peak req/s,"
  echo "sidecar over nginx direct: $RATIO_WALL% for GetPhoneCall, with the placement caveat"
  echo "above; the nginx-direct wall figure is itself bounded by h2load on CPU $CLIENT_CPU"
  echo "whenever nginx's core is not fully busy."
  echo
  echo "Upstream keep-alive (nginx \`stub_status\` around the measured runs, warm-ups"
  echo "excluded):"
  echo
  echo "| sidecar runs | requests nginx served | connections nginx accepted |"
  echo "|---|---:|---:|"
  for n in sidecar-get-c1 sidecar-get-peak sidecar-onhold-c1 sidecar-onhold-peak sidecar-get-colocated-c1; do
    echo "| $n | ${UP_REQS[$n]} | ${UP_CONNS[$n]} |"
  done
  echo
  echo "RPCs the sidecar ended, by code (\`grpc_server_handled_total\`, whole run): $CODES."
  echo "CANCELLED ones are the streams still in flight when a timed peak run stops."
  echo "The sidecar then aborts their upstream requests, and an HTTP/1.1 connection"
  echo "with an aborted request cannot be reused: that is where the peak rows' new"
  echo "connections come from. The upstream connections in use at once are capped"
  echo "(libcurl's host and total connection limits, set by src/upstream), so at peak"
  echo "some of the $((PEAK_CONC * PEAK_STREAMS)) RPCs in flight wait for a free connection."
} >"$OUT_MD"
echo "translate: wrote $OUT_MD"
