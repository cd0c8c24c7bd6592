#!/usr/bin/python3
"""Runs every test suite of the project and ends with one line
'N passed, N failed'. Exit status 0 only when nothing failed.

Steps: the cmocka unit tests (plain and under ASan+UBSan), then the interop
suites, the --state-file suite and the translation backend's suite against
the real binary, the interop suites again with the translation backend in
front of a second sidecar's REST facade, the Python suites against the
sanitizer build so that leaks and memory errors in the server fail them,
and a few seconds of each fuzz target.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
BAZEL_TEST = ["bazel", "test", "--test_output=all", "--nocache_test_results"]
PASSED = re.compile(r"\[  PASSED  \] (\d+) test")
FAILED = re.compile(r"\[  FAILED  \] (\d+) test")
TOTAL = re.compile(r"^(?:\w+: )?(\d+) passed, (\d+) failed", re.M)
TARGET = re.compile(r"^(//\S+)\s+(?:\(cached\) )?(PASSED|FAILED|TIMEOUT|NO STATUS)",
                    re.M)


def run(cmd, env=None):
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    return proc.wait(), "".join(lines)


def unit_tests(config):
    """Counts cmocka's own results; a target that failed without a cmocka
    verdict (a crash, a sanitizer abort) counts as one failure."""
    cmd = BAZEL_TEST + ([f"--config={config}"] if config else []) + ["//src/..."]
    rc, out = run(cmd)
    passed = failed = 0
    for target, status in TARGET.findall(out):
        log = os.path.join(ROOT, "bazel-testlogs", target[2:].replace(":", "/"),
                           "test.log")
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        p = sum(int(n) for n in PASSED.findall(text))
        f = sum(int(n) for n in FAILED.findall(text))
        if status != "PASSED" and f == 0:
            f = 1
        passed += p
        failed += f
    if rc != 0 and failed == 0:
        failed = 1
    return passed, failed


def build_binary(config, name, extra=()):
    cmd = ["bazel", "build"] + ([f"--config={config}"] if config else [])
    rc, _ = run(cmd + ["//src:uapi-sidecar", *extra])
    if rc != 0:
        return None
    os.makedirs(BUILD, exist_ok=True)
    dest = os.path.join(BUILD, name)
    shutil.copy2(os.path.join(ROOT, "bazel-bin/src/uapi-sidecar"), dest)
    return dest


def suite(cmd, env=None):
    rc, out = run(cmd, env)
    totals = TOTAL.findall(out)
    passed, failed = (int(totals[-1][0]), int(totals[-1][1])) if totals else (0, 0)
    if rc != 0 and failed == 0:
        failed = 1
    return passed, failed


def main():
    results = []
    results.append(("units", unit_tests(None)))
    results.append(("units under ASan+UBSan", unit_tests("asan")))
    asan = build_binary("asan", "uapi-sidecar-asan")
    plain = build_binary(None, "uapi-sidecar", ["//tests/interop/cpp:all"])
    if plain is None or asan is None:
        results.append(("build", (0, 1)))
    else:
        results.append(("interop", suite(["tests/interop/run.sh", plain])))
        persist = dict(os.environ, USC_INTEROP_SUITES="persist")
        results.append(("state file",
                        suite(["tests/interop/run.sh", plain], persist)))
        results.append(("deploy manifests and image",
                        suite(["tests/deploy/run.sh", plain])))
        results.append(("examples", suite(["examples/run.sh", plain])))
        results.append(("translation backend",
                        suite(["tests/uapi/run.sh", plain])))
        pair = dict(os.environ, USC_INTEROP_MODE="pair")
        results.append(("interop through the REST facade",
                        suite(["tests/interop/run.sh", plain], pair)))
        env = dict(os.environ,
                   USC_INTEROP_SUITES="python wire services transport access tls "
                   "hostile persist node cpp",
                   ASAN_OPTIONS="detect_leaks=1:halt_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        results.append(("interop on the sanitizer build",
                        suite(["tests/interop/run.sh", asan], env)))
        results.append(("translation backend on the sanitizer build",
                        suite(["tests/uapi/run.sh", asan], env)))
        results.append(("examples on the sanitizer build",
                        suite(["examples/run.sh", asan], env)))
    # One passed per fuzz target that stays clean from its seeds for these
    # seconds, one failed per target that finds something.
    results.append(("fuzz smoke", suite(["fuzz/run.sh", "smoke", "5"])))
    print()
    for name, (p, f) in results:
        print(f"  {name}: {p} passed, {f} failed")
    passed = sum(p for _, (p, _) in results)
    failed = sum(f for _, (_, f) in results)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
