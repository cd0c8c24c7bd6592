#!/usr/bin/env bash
# Runs a sidecar as a pair: the translation backend in front of the
# sidecar's own UAPI REST facade. Meant as USC_SIDECAR_WRAPPER, which the
# interop suites put in front of every sidecar command line:
#
#   pair.sh BINARY ARGS...
#
# starts
#   A  BINARY --backend native --log-format text --log-level info
#             --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
#             --rest-listen 127.0.0.1:0 ENGINE-FLAGS
#      (ENGINE-FLAGS: the --max-calls and --ring-delay of ARGS, as
#      "--flag V" or "--flag=V"; backend and log flags are explicit so that
#      UAPI_SIDECAR_* variables cannot change them), its stderr into a
#      deleted temporary file: its own "listening address=" line must not
#      reach the suite;
#   B  BINARY ARGS-WITHOUT-ENGINE-FLAGS --backend uapi
#             --uapi-url http://A's-REST-ADDRESS --watch-poll-interval 50
#      once A logged "rest-facade serving address=", with B's stdout and
#      stderr passed through (the suite reads B's "listening" line).
#
# SIGTERM or SIGINT is forwarded to B; once B has exited (SIGKILL after
# 15 s, 60 s with an inner wrapper), A gets SIGTERM (SIGKILL after as
# long). The exit status is B's, or A's when B exited 0 and A did not (A's
# log tail then goes to stderr); A gets 8 s (25 s) to log its REST address.
# If pair.sh itself is killed, A and B get SIGKILL from the kernel
# (setpriv --pdeathsig), so nothing is left behind. (A shell that starts
# pair.sh in the background without job control makes it ignore SIGINT:
# send SIGTERM then.)
#
# Env: USC_PAIR_INNER_WRAPPER  put in front of both sidecars, e.g.
#        "valgrind --leak-check=full --error-exitcode=99" (bounds grow).
set -u

if [ $# -lt 1 ]; then
  echo "usage: pair.sh BINARY [ARGS...]" >&2
  exit 2
fi
bin=$1
shift
read -r -a inner <<<"${USC_PAIR_INNER_WRAPPER:-}"
if [ ${#inner[@]} -gt 0 ]; then start_limit=25 stop_limit=60; else start_limit=8 stop_limit=15; fi

# Engine flags go to A, everything else to B. Every sidecar flag takes a
# value except --help/-h and --version, so "--flag V" pairs are kept whole.
engine=() rest=()
while [ $# -gt 0 ]; do
  case $1 in
    --max-calls=* | --ring-delay=*) engine+=("$1"); shift ;;
    --max-calls | --ring-delay)
      engine+=("$1")
      [ $# -ge 2 ] && engine+=("$2") && shift
      shift ;;
    -h | --help | --version | --*=* | [!-]*) rest+=("$1"); shift ;;
    --*)
      rest+=("$1")
      [ $# -ge 2 ] && rest+=("$2") && shift
      shift ;;
    *) rest+=("$1"); shift ;;
  esac
done

# A and B die with this script, whatever kills it.
guard=()
if command -v setpriv >/dev/null 2>&1 && setpriv --pdeathsig KILL true 2>/dev/null; then
  guard=(setpriv --pdeathsig KILL --)
fi

# A's log: a temporary file that is deleted at once (nothing is left behind
# even when this script is killed), written through fd 3 and read through
# /proc (a fresh open, from the start).
tmp=$(mktemp /tmp/usc-pair-a.XXXXXX) || exit 2
exec 3<>"$tmp"
rm -f "$tmp"
alog=/proc/$$/fd/3
apid= bpid= signalled=
on_signal() {
  signalled=$1
  if [ -n "$bpid" ]; then kill -s "$1" "$bpid" 2>/dev/null; fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# Running and not a zombie.
alive() {
  local state
  state=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop_pid PID SIGNAL: sends SIGNAL, waits up to stop_limit seconds, then
# SIGKILL; reaps it and leaves its exit status in $stopped.
stop_pid() {
  local deadline=$((SECONDS + stop_limit))
  if [ -n "$2" ]; then kill -s "$2" "$1" 2>/dev/null; fi
  while alive "$1" && [ $SECONDS -lt $deadline ]; do sleep 0.02; done
  if alive "$1"; then
    echo "pair.sh: sidecar pid $1 still running after ${stop_limit}s; SIGKILL" >&2
    kill -KILL "$1" 2>/dev/null
  fi
  wait "$1" 2>/dev/null
  stopped=$?
}

# A's log, without its "listening" line (the suite would take it for B's).
a_log_tail() {
  grep -v 'listening' "$alog" | tail -n "$1" | sed 's/^/pair.sh: A: /' >&2
}

"${guard[@]}" "${inner[@]}" "$bin" --backend native --log-format text --log-level info \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --rest-listen 127.0.0.1:0 \
  "${engine[@]}" </dev/null >/dev/null 2>&3 3>&- &
apid=$!

rest_address=
deadline=$((SECONDS + start_limit))
while [ -z "$signalled" ] && [ $SECONDS -lt $deadline ] && alive "$apid"; do
  rest_address=$(grep -m1 -oE 'rest-facade serving.*address=[0-9A-Za-z.:]+' "$alog" |
    sed 's/.*address=//')
  [ -n "$rest_address" ] && break
  sleep 0.02
done
if [ -z "$rest_address" ]; then
  if [ -n "$signalled" ]; then
    stop_pid "$apid" TERM
    exit $((128 + $(kill -l "$signalled")))
  fi
  if alive "$apid"; then
    echo "pair.sh: sidecar A (engine, REST facade) did not log its rest-facade" \
      "address within ${start_limit}s" >&2
  else
    echo "pair.sh: sidecar A (engine, REST facade) exited before logging its" \
      "rest-facade address" >&2
  fi
  stop_pid "$apid" TERM
  echo "pair.sh: A exited with $stopped; its log:" >&2
  a_log_tail 40
  exit 1
fi

"${guard[@]}" "${inner[@]}" "$bin" "${rest[@]}" --backend uapi \
  --uapi-url "http://$rest_address" --watch-poll-interval 50 </dev/null 3>&- &
bpid=$!
# A signal that came while B was being started is forwarded now.
if [ -n "$signalled" ]; then kill -s "$signalled" "$bpid" 2>/dev/null; fi

# wait returns early when a trapped signal comes; after one was forwarded,
# B gets stop_limit seconds to exit.
while [ -z "$signalled" ]; do
  wait "$bpid"
  brc=$?
  [ -z "$signalled" ] && break
done
if [ -n "$signalled" ]; then
  stop_pid "$bpid" ""
  brc=$stopped
fi

stop_pid "$apid" TERM
arc=$stopped
if [ "$arc" -ne 0 ]; then
  echo "pair.sh: sidecar A (engine, REST facade) exited with $arc; its log tail:" >&2
  a_log_tail 60
  [ "$brc" -eq 0 ] && exit "$arc"
fi
exit "$brc"
