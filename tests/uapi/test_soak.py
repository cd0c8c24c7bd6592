#!/usr/bin/python3
"""Faults under load: uapi-sidecar (--backend auto, then --backend uapi) in
front of a stand-in UAPI that runs in a process of its own (standin.py
--port), while client threads keep calling it.

Run: /usr/bin/python3 tests/uapi/test_soak.py [SoakTests[.test]]
(tests/uapi/run.sh runs it after test_uapi.py). The sidecar binary is
$USC_SIDECAR_BINARY (default bazel-bin/src/uapi-sidecar).

The load, all the time: two threads alternating GetPhoneCall and
ListPhoneCalls, two threads putting their own call on hold and off hold,
one WatchPhoneCalls stream open from start to end, and one thread opening
short Watch streams on changing extensions (pollers made and dropped).

One cycle of faults, each phase PHASE_SECONDS long (slow: longer by a
deadline):
  healthy        the upstream answers (FakeUapi);
  killed         its process gets SIGKILL;
  restarted      a new one listens on the same port (SO_REUSEADDR);
  slow           it answers after the RPCs' deadline;
  garbage-json   it answers 200 with HTML;
  garbage-bytes  it answers bytes that are not HTTP.
Then SIGTERM with calls in flight (upstream answers delayed).

Per phase, the statuses (and x-uapi-backend) the contract allows
(api-contract.md §2 and §4; AUTO_RULES and UAPI_RULES below) are asserted
for every RPC that started after the phase settled and ended before the
phase ended (in auto, with the upstream killed, new Watch streams too are
answered natively); every RPC, whenever it
ran, ends within its deadline plus a slack (no hang). The sidecar never
dies; on SIGTERM the calls in flight finish OK, new ones are refused with
UNAVAILABLE, the long Watch ends OK, and the process exits 0 within
--shutdown-grace (on the sanitizer build a LeakSanitizer report makes the
exit code non-zero).

RSS: VmRSS of the sidecar is sampled every second. Every cycle does the
same work, so once the first cycle has touched every code path the
largest sample of the last cycle must stay within RSS_BOUND_KIB of the
largest sample of the first cycle (checked when there are two cycles or
more, and not on the sanitizer build, whose quarantine grows by design).

Length: by default the auto run does two cycles (the second checks RSS)
and the uapi run one; USC_SOAK_SECONDS=S gives each run max(2, S / 2 /
cycle length) cycles, so S is about the soak's total length.
"""

import bisect
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop", "python"))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

import common  # noqa: E402
from common import SLOW, Sidecar, metadata_values  # noqa: E402
from standin import seeded_id  # noqa: E402

pb2, pb2_grpc = common.load_stubs()

PHASE_SECONDS = 3.5 * SLOW
UNARY_TIMEOUT = 1.5 * SLOW
SLOW_UPSTREAM = 2.5 * SLOW  # past UNARY_TIMEOUT
DEADLINE_SLACK = 0.75 * SLOW  # an RPC ends by its deadline plus this
WATCH_CHURN_TIMEOUT = 1.0 * SLOW
BREAKER_FAILURES = 3
BREAKER_OPEN_MS = 500
# After a phase that opened the breaker: a probe still out (up to a
# deadline), the open period it starts, the next probe, a margin.
BREAKER_SETTLE = BREAKER_OPEN_MS / 1000.0 + UNARY_TIMEOUT + 0.8 * SLOW
SHUTDOWN_GRACE_MS = 2000
DRAIN_DELAY = 0.3  # upstream answers during the drain, to have calls in flight
# The whole cycle is the same work each time: a leak of a few hundred bytes
# per RPC (thousands of RPCs a cycle) would pass 2 MiB in one cycle, while
# malloc's own reuse and trimming move RSS by a few hundred KiB.
RSS_BOUND_KIB = 2048
N_CALLS = 8
EXTENSION = "0003*210"
STANDIN = os.path.join(HERE, "standin.py")

SOAK_SECONDS = float(os.environ.get("USC_SOAK_SECONDS") or 0)
CYCLE_PHASES = ("healthy", "killed", "restarted", "slow", "garbage-json",
                "garbage-bytes")


def phase_seconds(name):
    """Slow RPCs last a whole deadline: the slow phase has room for a few
    of them that start and end inside it."""
    return PHASE_SECONDS + (UNARY_TIMEOUT if name == "slow" else 0)


def cycles(default):
    if SOAK_SECONDS <= 0:
        return default
    cycle = sum(phase_seconds(name) for name in CYCLE_PHASES)
    return max(2, int(SOAK_SECONDS / 2 / cycle))


def sanitizer_build():
    try:
        with open(common.sidecar_binary(), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def quiet_port():
    """A free port of 127.0.0.1 below the ephemeral range: while the
    upstream is down, the sidecar's own connection attempts (from
    ephemeral ports) can never take it, nor connect to themselves."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(200):
        port = random.randrange(max(1025, low - 12000), low)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port below %d" % low)


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


# ---- the upstream, a process of its own ------------------------------------

class Upstream:
    """standin.py --port in a child process, driven through its stdin."""

    def __init__(self, port):
        self.port = port
        self.proc = None
        self._lines = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        deadline = time.monotonic() + 10
        while True:
            errors = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                [sys.executable, STANDIN, "--port", str(self.port),
                 "--calls", str(N_CALLS), "--max-seconds", "3600"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=errors, text=True, start_new_session=True)
            self._lines = queue.Queue()
            threading.Thread(target=self._read, args=(self.proc, self._lines),
                             daemon=True).start()
            line = self._line(10)
            if line == "listening %d" % self.port:
                return self
            self.proc.kill()
            self.proc.wait()
            errors.seek(0)
            if time.monotonic() > deadline:  # the port stayed taken
                raise RuntimeError("stand-in did not listen on %d: %r, %s"
                                   % (self.port, line, errors.read()))
            time.sleep(0.1)

    @staticmethod
    def _read(proc, lines):
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    def _line(self, timeout):
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def command(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        line = self._line(10)
        if line != "ok " + text:
            raise RuntimeError("stand-in answered %r to %r" % (line, text))

    def kill(self):
        """SIGKILL: its sockets are closed by the kernel, nothing more."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()


# ---- the load ------------------------------------------------------------

class Outcome:
    __slots__ = ("kind", "start", "end", "code", "backend", "details",
                 "timeout")

    def __init__(self, kind, start, end, code, backend, details, timeout):
        self.kind, self.start, self.end = kind, start, end
        self.code, self.backend, self.details = code, backend, details
        self.timeout = timeout

    def key(self):
        return "%s/%s" % (self.code, self.backend or "-")

    def __repr__(self):
        return "<%s %s %.2fs %r>" % (self.kind, self.key(),
                                     self.end - self.start, self.details)


class Outcomes(list):
    """The outcomes of a run, in the order they ended."""

    def __init__(self, outcomes):
        super().__init__(sorted(outcomes, key=lambda o: o.end))
        self._ends = [o.end for o in self]

    def ended(self, t0, t1):
        """Those that ended between t0 and t1."""
        return self[bisect.bisect_left(self._ends, t0):
                    bisect.bisect_right(self._ends, t1)]


def backend_of(*metadata):
    for md in metadata:
        values = metadata_values(md or (), "x-uapi-backend")
        if values:
            return values[0]
    return None


class Load:
    """Client threads calling the sidecar until stop(); every RPC's
    outcome is recorded."""

    def __init__(self, address):
        self.address = address
        self.outcomes = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.channels = [grpc.insecure_channel(address) for _ in range(3)]
        self.stubs = [pb2_grpc.PhoneCallServiceStub(c) for c in self.channels]
        self.threads = []
        self.watch_events = 0
        self.watch_end = None  # (time, "OK" or a status name)

    def start(self):
        for i in range(2):
            self._spawn(self._reader, i)
            self._spawn(self._holder, i)
        self._spawn(self._watch_churn)
        self._spawn(self._long_watch)
        return self

    def _spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(UNARY_TIMEOUT + 10)
        for c in self.channels:
            c.close()

    def snapshot(self):
        with self.lock:
            return list(self.outcomes)

    def _record(self, outcome):
        with self.lock:
            self.outcomes.append(outcome)

    def _unary(self, stub, method, timeout=UNARY_TIMEOUT, **fields):
        req = getattr(pb2, method + "Request")(**fields)
        t0 = time.monotonic()
        try:
            _, call = getattr(stub, method).with_call(req, timeout=timeout)
            code, details = "OK", ""
            backend = backend_of(call.initial_metadata())
        except grpc.RpcError as err:
            code, details = err.code().name, err.details() or ""
            backend = backend_of(err.initial_metadata(),
                                 err.trailing_metadata())
        self._record(Outcome(method, t0, time.monotonic(), code, backend,
                             details, timeout))
        if code != "OK":
            time.sleep(0.01)  # a sidecar that is gone fails calls at once

    def _reader(self, i):
        stub = self.stubs[i % len(self.stubs)]
        n = 0
        while not self.stopping.is_set():
            n += 1
            if n % 2:
                self._unary(stub, "GetPhoneCall", extension=EXTENSION,
                            phone_call_id=seeded_id(n % N_CALLS))
            else:
                self._unary(stub, "ListPhoneCalls", extension=EXTENSION)

    def _holder(self, i):
        stub = self.stubs[(i + 1) % len(self.stubs)]
        call_id = seeded_id(i)
        while not self.stopping.is_set():
            for action in ("OnHold", "OffHold"):
                self._unary(stub, action, extension=EXTENSION,
                            phone_call_id=call_id, phone_call_view_id="01")

    def _watch_churn(self):
        stub = self.stubs[2]
        n = 0
        while not self.stopping.is_set():
            n += 1
            req = pb2.WatchPhoneCallsRequest(extension="0003*3%02d" % (n % 5))
            t0 = time.monotonic()
            stream = stub.WatchPhoneCalls(req, timeout=WATCH_CHURN_TIMEOUT)
            try:
                for _ in stream:
                    pass
                code, details = "OK", ""
            except grpc.RpcError as err:
                code, details = err.code().name, err.details() or ""
            self._record(Outcome("Watch", t0, time.monotonic(), code,
                                 backend_of(stream.initial_metadata()),
                                 details, WATCH_CHURN_TIMEOUT))
            if code not in ("OK", "DEADLINE_EXCEEDED"):
                time.sleep(0.05)

    def _long_watch(self):
        stream = self.stubs[0].WatchPhoneCalls(
            pb2.WatchPhoneCallsRequest(extension=EXTENSION), timeout=3600)
        code = "OK"
        try:
            for _ in stream:
                self.watch_events += 1
        except grpc.RpcError as err:
            code = "%s %s" % (err.code().name, err.details())
        self.watch_end = (time.monotonic(), code)


class Rss:
    """VmRSS of a process, sampled every second by a thread."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = []  # (monotonic time, KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            kib = rss_kib(self.pid)
            if kib is not None:
                self.samples.append((time.monotonic(), kib))
            self._stop.wait(1.0)

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def between(self, t0, t1):
        return [k for t, k in self.samples if t0 <= t <= t1]


# ---- what each phase allows -----------------------------------------------

class Rule:
    """settle: seconds after the phase starts before RPCs are judged;
    allowed: "CODE/backend" keys (backend "-" when none was said) a unary
    RPC may end with; required: keys that must be seen at least once;
    watch: the keys a short Watch may end with (its deadline always ends
    it; the backend is who sent its headers)."""

    def __init__(self, settle, allowed, required=(), watch=None):
        self.settle = settle
        self.allowed = set(allowed)
        self.required = list(required)
        self.watch = set(watch or ("DEADLINE_EXCEEDED/uapi",
                                   "DEADLINE_EXCEEDED/native",
                                   "DEADLINE_EXCEEDED/-"))


NATIVE = ("OK/native", "FAILED_PRECONDITION/native")
# The native engine may refuse a hold action its mirror of the call does
# not allow (the upstream's answer to the last one was lost in a fault):
# FAILED_PRECONDITION, as the contract says.

AUTO_RULES = {
    "healthy": Rule(BREAKER_SETTLE, ["OK/uapi"], ["OK/uapi"]),
    # Refused connections: the native engine answers in the same RPC,
    # Watch streams included.
    "killed": Rule(0.5, NATIVE, ["OK/native"],
                   watch=["DEADLINE_EXCEEDED/native"]),
    "restarted": Rule(0.0, ("OK/uapi",) + NATIVE, ["OK/uapi"]),
    # Timeouts after sending are returned as mapped and open the breaker.
    "slow": Rule(0.0, ("DEADLINE_EXCEEDED/uapi", "DEADLINE_EXCEEDED/-")
                 + NATIVE, ["DEADLINE_EXCEEDED", "OK/native"]),
    # A 2xx that is not JSON is the upstream's fault, and not a failure of
    # the kind that opens the breaker.
    "garbage-json": Rule(BREAKER_SETTLE, ["INTERNAL/uapi"], ["INTERNAL/uapi"]),
    # Bytes that are not HTTP after the request went out: a protocol
    # error, UNAVAILABLE like a reset, and counted by the breaker.
    "garbage-bytes": Rule(0.0, ("UNAVAILABLE/uapi",) + NATIVE,
                          ["UNAVAILABLE/uapi", "OK/native"]),
}

UAPI_RULES = {
    "healthy": Rule(0.3, ["OK/uapi"], ["OK/uapi"]),
    "killed": Rule(0.3, ["UNAVAILABLE/uapi"], ["UNAVAILABLE/uapi"]),
    "restarted": Rule(0.5, ["OK/uapi"], ["OK/uapi"]),
    "slow": Rule(0.0, ["DEADLINE_EXCEEDED/uapi", "DEADLINE_EXCEEDED/-"],
                 ["DEADLINE_EXCEEDED"]),
    "garbage-json": Rule(0.3, ["INTERNAL/uapi"], ["INTERNAL/uapi"]),
    "garbage-bytes": Rule(0.3, ["UNAVAILABLE/uapi"], ["UNAVAILABLE/uapi"]),
}

# What the message of an error must name, by status.
MESSAGES = {"INTERNAL": "upstream", "UNAVAILABLE": "upstream"}


def matches(key, wanted):
    """"DEADLINE_EXCEEDED" matches any backend; "CODE/b" only that one."""
    return key == wanted or ("/" not in wanted and key.split("/")[0] == wanted)


# ---- the test --------------------------------------------------------------

class Phase:
    def __init__(self, name, cycle, start):
        self.name, self.cycle, self.start = name, cycle, start
        self.end = None


class SoakTests(unittest.TestCase):

    def setUp(self):
        if common.WRAPPER:
            self.skipTest("not under a wrapper: RSS and timing would be the "
                          "wrapper's")

    def test_auto_backend_under_faults(self):
        self.soak("auto", AUTO_RULES, cycles(2))

    def test_uapi_backend_under_faults(self):
        self.soak("uapi", UAPI_RULES, cycles(1))

    # -- the run ---------------------------------------------------------------

    def soak(self, backend, rules, n_cycles):
        upstream = Upstream(quiet_port()).start()
        self.addCleanup(lambda: self.upstream.close())
        self.upstream = upstream
        srv = Sidecar("--backend", backend, "--uapi-url", upstream.url,
                      "--upstream-timeout", "1000",
                      "--breaker-failures", str(BREAKER_FAILURES),
                      "--breaker-open-ms", str(BREAKER_OPEN_MS),
                      "--watch-poll-interval", "200",
                      "--shutdown-grace", str(SHUTDOWN_GRACE_MS),
                      "--log-level", "info").start()
        self.addCleanup(srv.kill)
        rss = Rss(srv.proc.pid)
        self.addCleanup(rss.stop)
        load = Load(srv.address).start()
        self.addCleanup(load.stop)
        phases, problems = [], []
        for cycle in range(n_cycles):
            for name in CYCLE_PHASES:
                phases.append(self.phase(name, cycle, srv))
                with srv._cond:  # a long soak logs a line per RPC
                    del srv.lines[:-2000]
                if not srv.alive():
                    self.fail("the sidecar died in phase %s (exit code %r); "
                              "stderr tail:\n%s" % (name, srv.proc.poll(),
                                                    srv.log_tail(80)))
        term, exit_code, exited = self.drain(srv, phases, n_cycles)
        time.sleep(0.5)
        load.stop()
        rss.stop()
        outcomes = Outcomes(load.snapshot())
        problems += self.judge(rules, phases, outcomes)
        problems += self.judge_drain(load, outcomes, term, exit_code, exited,
                                     srv)
        problems += self.judge_rss(rss, phases, n_cycles)
        self.report(backend, phases, outcomes, rss, load)
        self.assertEqual(problems, [], "\n".join(problems) +
                         "\nstderr tail:\n" + srv.log_tail(30))

    def phase(self, name, cycle, srv):
        if name == "healthy":
            self.upstream.command("healthy")
        elif name == "killed":
            self.upstream.kill()
        elif name == "restarted":
            self.upstream = Upstream(self.upstream.port).start()
        elif name == "slow":
            self.upstream.command("slow %.2f" % SLOW_UPSTREAM)
        else:
            self.upstream.command(name)
        p = Phase(name, cycle, time.monotonic())
        end = p.start + phase_seconds(name)
        while time.monotonic() < end and srv.alive():
            time.sleep(0.05)
        p.end = time.monotonic()
        return p

    def drain(self, srv, phases, n_cycles):
        """Upstream healthy but slowish (calls in flight), then SIGTERM."""
        self.upstream.command("healthy %.2f" % DRAIN_DELAY)
        p = Phase("before-drain", n_cycles, time.monotonic())
        time.sleep(BREAKER_SETTLE + 1.0)
        p.end = time.monotonic()
        phases.append(p)
        term = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.wait_exit(SHUTDOWN_GRACE_MS / 1000.0 + 10 * SLOW)
        return term, code, time.monotonic()

    # -- judging ---------------------------------------------------------------

    def judge(self, rules, phases, outcomes):
        problems = []
        late = [o for o in outcomes if o.end - o.start > o.timeout +
                DEADLINE_SLACK]
        if late:
            problems.append("%d RPC(s) ended past their deadline plus %.2f s, "
                            "e.g. %r" % (len(late), DEADLINE_SLACK, late[:3]))
        for p in phases:
            rule = rules.get(p.name) or rules["healthy"]
            ended = outcomes.ended(p.start, p.end)
            unary = [o for o in ended if o.kind != "Watch"]
            inside = [o for o in unary if o.start >= p.start + rule.settle]
            where = "cycle %d, phase %s" % (p.cycle, p.name)
            if not inside:
                problems.append("%s: no RPC ran" % where)
                continue
            bad = [o for o in inside if o.key() not in rule.allowed]
            if bad:
                problems.append("%s: %d RPC(s) outside %s, e.g. %r"
                                % (where, len(bad), sorted(rule.allowed),
                                   bad[:3]))
            # What must be seen may have started just before the phase did
            # (the load does not wait for the fault to be in place).
            keys = {o.key() for o in unary}
            for want in rule.required:
                if not any(matches(k, want) for k in keys):
                    problems.append("%s: no %s among %s" % (where, want,
                                                            sorted(keys)))
            for o in inside:
                word = MESSAGES.get(o.code)
                if word and o.backend == "uapi" and word not in o.details:
                    problems.append("%s: %r does not name the %s"
                                    % (where, o, word))
                    break
            if p.name == "restarted":
                problems += self.judge_recovery(p, unary, where)
            churn = [o for o in ended if o.kind == "Watch" and
                     o.start >= p.start + rule.settle and
                     o.key() not in rule.watch]
            if churn:
                problems.append("%s: %d short Watch stream(s) outside %s, "
                                "e.g. %r" % (where, len(churn),
                                             sorted(rule.watch), churn[:3]))
        return problems

    def judge_recovery(self, p, unary, where):
        """Translation resumes once the upstream is back (at once in uapi
        mode; after the breaker's open period and a good probe in auto)."""
        first = min((o.end for o in unary if o.key() == "OK/uapi" and
                     o.start >= p.start), default=None)
        limit = BREAKER_OPEN_MS / 1000.0 + 1.0 * SLOW
        if first is None or first - p.start > limit:
            return ["%s: translation did not resume within %.1f s of the "
                    "restart" % (where, limit)]
        late = [o for o in unary if o.start >= first + 0.2 and
                o.key() != "OK/uapi"]
        if late:
            return ["%s: after translation resumed, %d RPC(s) were not "
                    "answered upstream, e.g. %r" % (where, len(late),
                                                    late[:3])]
        return []

    def judge_drain(self, load, outcomes, term, code, exited, srv):
        problems = []
        grace = SHUTDOWN_GRACE_MS / 1000.0
        if code != 0:
            problems.append("exit code %r after SIGTERM" % code)
        if exited - term > grace + 1.0 * SLOW:
            problems.append("exit %.2f s after SIGTERM, grace %.1f s"
                            % (exited - term, grace))
        # In flight: made long enough before SIGTERM to have reached the
        # sidecar (one made in the same instant may meet its GOAWAY).
        sent = term - 0.05
        in_flight = [o for o in outcomes if o.kind != "Watch" and
                     o.start < sent and o.end > term]
        if not in_flight:
            problems.append("no call was in flight at SIGTERM")
        bad = [o for o in in_flight if o.code != "OK"]
        if bad:
            problems.append("calls in flight at SIGTERM did not finish OK: "
                            "%r" % bad[:5])
        after = [o for o in outcomes if o.start >= sent]
        bad = [o for o in after if o.code not in ("OK", "UNAVAILABLE") and
               not (o.kind == "Watch" and o.code == "DEADLINE_EXCEEDED")]
        if bad:
            problems.append("calls made after SIGTERM ended otherwise than "
                            "OK or UNAVAILABLE: %r" % bad[:5])
        if not any(o.code == "UNAVAILABLE" and o.start > exited
                   for o in after):
            problems.append("no call was refused once the sidecar was gone")
        if load.watch_end is None:
            problems.append("the long Watch did not end after SIGTERM")
        else:
            t, status = load.watch_end
            if t < term:
                problems.append("the long Watch ended before SIGTERM: %s"
                                % status)
            elif status != "OK":
                problems.append("the long Watch ended with %s on SIGTERM"
                                % status)
        if load.watch_events == 0:
            problems.append("the long Watch saw no event")
        if "LeakSanitizer" in srv.log_tail(400):
            problems.append("LeakSanitizer reported leaks")
        return problems

    def judge_rss(self, rss, phases, n_cycles):
        if n_cycles < 2 or sanitizer_build():
            return []
        first = [p for p in phases if p.cycle == 0]
        last = [p for p in phases if p.cycle == n_cycles - 1]
        warm = rss.between(first[0].start, first[-1].end)
        end = rss.between(last[0].start, last[-1].end)
        if not warm or not end:
            return ["too few RSS samples"]
        if max(end) > max(warm) + RSS_BOUND_KIB:
            return ["RSS grew: largest %d KiB in the first cycle, %d KiB in "
                    "the last (bound +%d KiB)" % (max(warm), max(end),
                                                 RSS_BOUND_KIB)]
        return []

    def report(self, backend, phases, outcomes, rss, load):
        """One summary line per phase (statuses seen) and the RSS curve."""
        lines = ["soak --backend %s: %d RPCs, %d events on the long Watch"
                 % (backend, len(outcomes), load.watch_events)]
        for p in phases:
            counts, watches = {}, {}
            for o in outcomes.ended(p.start, p.end):
                if p.start <= o.start:
                    into = watches if o.kind == "Watch" else counts
                    into[o.key()] = into.get(o.key(), 0) + 1
            lines.append("  %d %-13s %s; Watch %s" % (
                p.cycle, p.name,
                " ".join("%s=%d" % kv for kv in sorted(counts.items())),
                " ".join("%s=%d" % kv for kv in sorted(watches.items()))))
        kib = [k for _, k in rss.samples]
        if kib:
            lines.append("  RSS KiB: first %d, last %d, max %d (%d samples)"
                         % (kib[0], kib[-1], max(kib), len(kib)))
            per_cycle = {}
            for p in phases:
                for k in rss.between(p.start, p.end):
                    per_cycle.setdefault(p.cycle, []).append(k)
            lines.append("  RSS KiB max per cycle: " + " ".join(
                "%d" % max(v) for _, v in sorted(per_cycle.items())))
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    common.main(__name__)
