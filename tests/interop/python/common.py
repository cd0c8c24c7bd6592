"""Shared helpers of the Python interop suites.

- Sidecar: starts uapi-sidecar on 127.0.0.1 port 0 (behind the optional
  USC_SIDECAR_WRAPPER, e.g. valgrind or tests/interop/pair.sh), waits for
  its "listening" line,
  stops it with a signal and reports the exit code; every instance still
  running when the interpreter exits is killed.
- load_stubs: runs protoc on the project's proto into a temporary
  directory and imports the generated modules.
- rpc_status_classes / parse_status_details: google.rpc.Status and
  ErrorInfo message classes built at run time from descriptors (no
  googleapis package needed).
- main: a unittest runner that prints one line per test and ends with
  "N passed, N failed".
"""

import atexit
import importlib
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PROTO_DIR = os.path.join(REPO, "proto")
PROTO_FILE = "uapi/phonecalls/v1/phonecalls.proto"
SERVICE = "uapi.phonecalls.v1.PhoneCallService"
ERROR_DOMAIN = "uapi.voipnow.com"
ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo"

WRAPPER = shlex.split(os.environ.get("USC_SIDECAR_WRAPPER", ""))


def _slow_wrapper():
    """Whether the sidecar runs under a slowing wrapper such as valgrind.
    tests/interop/pair.sh (pair mode) is not one by itself: only the
    wrapper it puts in front of both sidecars, USC_PAIR_INNER_WRAPPER."""
    if WRAPPER and os.path.basename(WRAPPER[0]) == "pair.sh":
        return bool(os.environ.get("USC_PAIR_INNER_WRAPPER", "").split())
    return bool(WRAPPER)


# Everything is slower under valgrind: give startup, RPCs and shutdown room.
SLOWED = _slow_wrapper()
SLOW = 4.0 if SLOWED else 1.0
STARTUP_TIMEOUT = 30.0 if SLOWED else 10.0
RPC_TIMEOUT = 10.0 * SLOW
STOP_TIMEOUT = 30.0 if SLOWED else 10.0

# Who answers, as the x-uapi-backend initial metadata says: "native", or
# "uapi" when the suite runs in pair mode (the translation backend in front
# of the sidecar's own REST facade, tests/interop/pair.sh).
EXPECT_BACKEND = os.environ.get("USC_EXPECT_BACKEND") or "native"

LISTENING_RE = re.compile(r"listening\b.*?address=([0-9A-Za-z.:\[\]]+)")


def sidecar_binary():
    path = os.environ.get("USC_SIDECAR_BINARY") or os.path.join(
        REPO, "bazel-bin", "src", "uapi-sidecar")
    return os.path.abspath(path)


class SidecarError(Exception):
    pass


class Sidecar:
    """One uapi-sidecar process listening on 127.0.0.1 with a free port."""

    _live = set()

    def __init__(self, *flags):
        self.flags = list(flags)
        self.proc = None
        self.address = None
        self.lines = []
        self._cond = threading.Condition()
        self._reader = None

    @property
    def port(self):
        return int(self.address.rsplit(":", 1)[1])

    def start(self):
        cmd = WRAPPER + [sidecar_binary(), "--listen", "127.0.0.1:0",
                         "--admin-listen", "127.0.0.1:0"] + self.flags
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)
        Sidecar._live.add(self)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with self._cond:
            while self.address is None:
                left = deadline - time.monotonic()
                if self.proc.poll() is not None and not self._reader.is_alive():
                    break
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        if self.address is None:
            code = self.proc.poll()
            self.kill()
            raise SidecarError(
                "sidecar %r did not log its listening address within %.0f s "
                "(exit code %r); stderr:\n%s"
                % (cmd, STARTUP_TIMEOUT, code, self.log_tail()))
        return self

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if self.address is None:
                    m = LISTENING_RE.search(line)
                    if m:
                        self.address = m.group(1)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def log_tail(self, n=40):
        with self._cond:
            return "\n".join(self.lines[-n:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends `sig` and waits for the exit; returns the exit code (a
        negative number for a death by signal). Kills it after `timeout`
        and raises SidecarError then."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Waits (without signalling) for the exit; returns the exit code,
        or kills it and raises SidecarError after `timeout`."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SidecarError("sidecar still running after %.0f s" % timeout)
        Sidecar._live.discard(self)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stop_checked(self, testcase=None):
        """SIGTERM, then the exit code must be 0 (under valgrind, its error
        exit code reports leaks and memory errors)."""
        code = self.stop()
        if code != 0:
            msg = "sidecar exited with %r; stderr tail:\n%s" % (
                code, self.log_tail(80))
            if testcase is not None:
                testcase.fail(msg)
            raise SidecarError(msg)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        Sidecar._live.discard(self)


@atexit.register
def _kill_leftovers():
    for sidecar in list(Sidecar._live):
        sidecar.kill()


def _on_signal(signum, _frame):
    _kill_leftovers()
    sys.exit(128 + signum)


def install_signal_cleanup():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)


_STUB_DIR = None


def load_stubs():
    """Generates the Python messages and gRPC stubs of the service into a
    temporary directory; returns (phonecalls_pb2, phonecalls_pb2_grpc)."""
    global _STUB_DIR
    if _STUB_DIR is None:
        out = tempfile.mkdtemp(prefix="usc-interop-py-")
        atexit.register(_rmtree, out)
        subprocess.run(
            ["protoc", "-I", PROTO_DIR, "--python_out", out,
             "--grpc_python_out", out,
             "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
             os.path.join(PROTO_DIR, PROTO_FILE)],
            check=True)
        sys.path.insert(0, out)
        _STUB_DIR = out
    pb2 = importlib.import_module("uapi.phonecalls.v1.phonecalls_pb2")
    pb2_grpc = importlib.import_module("uapi.phonecalls.v1.phonecalls_pb2_grpc")
    return pb2, pb2_grpc


def _rmtree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


_STATUS_CLASSES = None


def rpc_status_classes():
    """(Status, ErrorInfo) message classes of google.rpc, built from
    descriptors written here."""
    global _STATUS_CLASSES
    if _STATUS_CLASSES is not None:
        return _STATUS_CLASSES
    from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool
    from google.protobuf import message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="usc_interop/google_rpc.proto", package="google.rpc",
        syntax="proto3", dependency=["google/protobuf/any.proto"])
    status = fdp.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=F.TYPE_INT32,
                     label=F.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=F.TYPE_STRING,
                     label=F.LABEL_OPTIONAL)
    status.field.add(name="details", number=3, type=F.TYPE_MESSAGE,
                     label=F.LABEL_REPEATED, type_name=".google.protobuf.Any")
    info = fdp.message_type.add(name="ErrorInfo")
    info.field.add(name="reason", number=1, type=F.TYPE_STRING,
                   label=F.LABEL_OPTIONAL)
    info.field.add(name="domain", number=2, type=F.TYPE_STRING,
                   label=F.LABEL_OPTIONAL)
    entry = info.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING,
                    label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING,
                    label=F.LABEL_OPTIONAL)
    info.field.add(name="metadata", number=3, type=F.TYPE_MESSAGE,
                   label=F.LABEL_REPEATED,
                   type_name=".google.rpc.ErrorInfo.MetadataEntry")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(
        any_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(fdp)

    def message_class(name):
        desc = pool.FindMessageTypeByName(name)
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(desc)
        return message_factory.MessageFactory(pool).GetPrototype(desc)

    _STATUS_CLASSES = (message_class("google.rpc.Status"),
                       message_class("google.rpc.ErrorInfo"))
    return _STATUS_CLASSES


def parse_status_details(data):
    """Decodes grpc-status-details-bin (raw bytes) into (Status,
    [ErrorInfo...]) where only the ErrorInfo details are decoded."""
    Status, ErrorInfo = rpc_status_classes()
    status = Status.FromString(data)
    infos = [ErrorInfo.FromString(d.value) for d in status.details
             if d.type_url == ERROR_INFO_TYPE_URL]
    return status, infos


def metadata_values(metadata, key):
    return [v for k, v in (metadata or ()) if k == key]


class CountingResult(unittest.TextTestResult):
    """Prints "PASS|FAIL|ERROR|SKIP <test> (<seconds>s)" per test."""

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _line(self, word, test, extra=""):
        took = time.monotonic() - getattr(self, "_t0", time.monotonic())
        self.stream.write("%-5s %s (%.2fs)%s\n" % (word, test.id(), took, extra))
        self.stream.flush()

    passed = 0

    def addSuccess(self, test):
        unittest.TestResult.addSuccess(self, test)
        self.passed += 1
        self._line("PASS", test)

    def addFailure(self, test, err):
        unittest.TestResult.addFailure(self, test, err)
        self._line("FAIL", test)

    def addError(self, test, err):
        unittest.TestResult.addError(self, test, err)
        self._line("ERROR", test)

    def addSkip(self, test, reason):
        unittest.TestResult.addSkip(self, test, reason)
        self._line("SKIP", test, " " + reason)

    def addSubTest(self, test, subtest, err):
        unittest.TestResult.addSubTest(self, test, subtest, err)
        if err is not None:
            word = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._line(word, subtest)

    def addExpectedFailure(self, test, err):
        unittest.TestResult.addExpectedFailure(self, test, err)
        self._line("XFAIL", test)

    def addUnexpectedSuccess(self, test):
        unittest.TestResult.addUnexpectedSuccess(self, test)
        self._line("XPASS", test)


def main(module_name):
    """Runs the tests of `module_name`; prints per-test lines, the failure
    details, then "N passed, N failed". Exits 0 only when nothing failed."""
    install_signal_cleanup()
    loader = unittest.TestLoader()
    if len(sys.argv) > 1:
        suite = loader.loadTestsFromNames(sys.argv[1:], sys.modules[module_name])
    else:
        suite = loader.loadTestsFromModule(sys.modules[module_name])
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=0,
                                     resultclass=CountingResult)
    result = runner.run(suite)
    failed = (len(result.failures) + len(result.errors)
              + len(result.unexpectedSuccesses))
    # Errors in setUpModule/setUpClass count as failures too.
    passed = result.passed
    line = "%d passed, %d failed" % (passed, failed)
    if result.skipped:
        line += ", %d skipped" % len(result.skipped)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    _kill_leftovers()
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)
