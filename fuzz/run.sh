#!/bin/bash
# Builds and runs the libFuzzer targets of fuzz/ (see README.md, Fuzzing).
#
#   fuzz/run.sh fuzz SECONDS [TARGET...]   each target for SECONDS, one at a
#       time; what it finds grows build/fuzz/corpus/TARGET, findings go to
#       build/fuzz/artifacts/, the log to build/fuzz/TARGET.log
#   fuzz/run.sh smoke SECONDS              each target for SECONDS from its
#       seeds alone, keeping nothing; for make test
#
# Both end with "N passed, N failed": one per target, failed when it found
# something (a crash, a sanitizer report, a leak, a failed check, a
# timeout) or did not build. The targets are built with clang-14 in a Bazel
# output base of their own (FUZZ_OUTPUT_BASE), so that the gcc build's
# toolchain is never reconfigured.
set -u
cd "$(dirname "$0")/.."

TARGETS=(admin_http config deframe h2_session metadata pb_json uapi_json)
OUTPUT_BASE=${FUZZ_OUTPUT_BASE:-$HOME/.cache/bazel/uapi-sidecar-fuzz}
BAZEL=(bazel --output_base="$OUTPUT_BASE" --max_idle_secs=300)
BUILD_FLAGS=(--config=fuzz --symlink_prefix=/)

usage() {
  echo "usage: $0 fuzz|smoke SECONDS [TARGET...]" >&2
  exit 2
}

[ $# -ge 2 ] || usage
mode=$1
seconds=$2
shift 2
case $mode in fuzz | smoke) ;; *) usage ;; esac
[[ $seconds =~ ^[0-9]+$ ]] || usage
[ $# -gt 0 ] && TARGETS=("$@")

labels=()
for t in "${TARGETS[@]}"; do labels+=("//fuzz:${t}_fuzz"); done
if ! "${BAZEL[@]}" build "${BUILD_FLAGS[@]}" "${labels[@]}"; then
  echo "fuzz targets did not build"
  echo "0 passed, ${#TARGETS[@]} failed"
  exit 1
fi
bin=$("${BAZEL[@]}" info "${BUILD_FLAGS[@]}" bazel-bin 2>/dev/null)/fuzz

passed=0
failed=0
mkdir -p build/fuzz/artifacts
for t in "${TARGETS[@]}"; do
  if [ "$mode" = fuzz ]; then
    corpus=build/fuzz/corpus/$t
    log=build/fuzz/$t.log
    mkdir -p "$corpus"
  else
    corpus=$(mktemp -d)
    log=$corpus.log
  fi
  # -timeout: one input of these targets takes milliseconds.
  "$bin/${t}_fuzz" -max_total_time="$seconds" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$t-" \
    "$corpus" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    echo "$t: clean, ${runs:-0} runs in ${seconds}s (${rate:-0}/s)"
  else
    failed=$((failed + 1))
    echo "$t: FOUND SOMETHING (exit $rc); the log:"
    grep -E -A12 '^==[0-9]+==|SUMMARY|check failed|runtime error' "$log" |
      head -40
    grep -E 'Test unit written to' "$log"
  fi
  if [ "$mode" = smoke ]; then
    rm -rf "$corpus" "$log"
  fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
