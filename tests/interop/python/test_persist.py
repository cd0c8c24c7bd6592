#!/usr/bin/python3
"""The --state-file against the real binary: the native engine's calls
survive a restart (SIGTERM, and kill -9 after a periodic write); a torn or
damaged file is moved aside and the sidecar starts without calls; two
sidecars never share one file.

Run from anywhere: /usr/bin/python3 tests/interop/python/test_persist.py
[TestClass[.test_name] ...]. The sidecar binary is $USC_SIDECAR_BINARY
(default bazel-bin/src/uapi-sidecar), behind $USC_SIDECAR_WRAPPER if set.
Each test uses a state file of its own in a fresh directory.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from google.protobuf import wrappers_pb2  # noqa: E402

import common  # noqa: E402
from common import RPC_TIMEOUT, SLOW, STARTUP_TIMEOUT, Sidecar  # noqa: E402

pb2, pb2_grpc = common.load_stubs()

ADMIN_RE = re.compile(r"admin serving\b.*?address=([0-9A-Za-z.:\[\]]+)")


class PersistTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="usc-persist-")
        self.path = os.path.join(self.dir, "calls.state")
        self.sidecars = []

    def tearDown(self):
        for s in self.sidecars:
            s.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *flags):
        s = Sidecar("--state-file", self.path, *flags).start()
        self.sidecars.append(s)
        return s

    def stub(self, sidecar):
        channel = grpc.insecure_channel(sidecar.address)
        self.addCleanup(channel.close)
        return pb2_grpc.PhoneCallServiceStub(channel)

    def metrics(self, sidecar):
        m = ADMIN_RE.search("\n".join(sidecar.lines))
        self.assertIsNotNone(m, "no admin address logged")
        with urllib.request.urlopen("http://%s/metrics" % m.group(1),
                                    timeout=RPC_TIMEOUT) as r:
            return r.read().decode()

    def metric(self, sidecar, series):
        for line in self.metrics(sidecar).splitlines():
            if line.startswith(series + " "):
                return float(line.split()[1])
        self.fail("no sample %s" % series)

    def create(self, stub, ext, user="", **fields):
        resp = stub.CreateSimplePhoneCall(
            pb2.CreatePhoneCallRequest(user_id=user, extension=ext,
                                       source=[ext],
                                       destination=["0003*299"], **fields),
            timeout=RPC_TIMEOUT)
        return resp.phone_calls[0]

    def get(self, stub, call, user=""):
        return stub.GetPhoneCall(
            pb2.GetPhoneCallRequest(user_id=user, extension="@self",
                                    phone_call_id=call.id),
            timeout=RPC_TIMEOUT)

    def list_all(self, stub, user=""):
        return list(stub.ListPhoneCalls(
            pb2.ListPhoneCallsRequest(user_id=user, extension="@self",
                                      count=wrappers_pb2.Int32Value(value=5000)),
            timeout=RPC_TIMEOUT).phone_calls)

    def wait_for(self, what, predicate, timeout=10.0 * SLOW):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    def busy_state(self, stub):
        """Calls of two users, one held, one parked and recorded, one with a
        leg that barged in. Returns them as the sidecar shows them."""
        a = self.create(stub, "0003*210", nonce="first")
        b = self.create(stub, "0003*211", caller_id="Front desk")
        c = self.create(stub, "0003*212", user="42")
        stub.OnHold(pb2.OnHoldRequest(extension="@self", phone_call_id=a.id,
                                      phone_call_view_id="00"),
                    timeout=RPC_TIMEOUT)
        stub.Park(pb2.ParkRequest(extension="@self", phone_call_id=b.id,
                                  phone_call_view_id="01",
                                  max_in_parking=wrappers_pb2.Int32Value(
                                      value=600)),
                  timeout=RPC_TIMEOUT)
        stub.StartRecording(pb2.StartRecordingRequest(
            extension="@self", phone_call_id=b.id, phone_call_view_id="00"),
            timeout=RPC_TIMEOUT)
        stub.BargeIn(pb2.BargeInRequest(
            user_id="42", extension="@self", phone_call_id=c.id,
            phone_call_view_id="00", send_call_to="0003*555"),
            timeout=RPC_TIMEOUT)
        return [self.get(stub, a), self.get(stub, b),
                self.get(stub, c, user="42")]

    def test_sigterm_and_restart_keep_every_call(self):
        first = self.start("--state-save-interval", "0")
        before = self.busy_state(self.stub(first))
        self.assertTrue(before[0].phone_call_views[0].HasField("on_hold"))
        self.assertTrue(before[1].phone_call_views[1].HasField("parked"))
        first.stop_checked(self)

        second = self.start()
        self.assertIn("state file loaded", second.log_tail())
        stub = self.stub(second)
        after = [self.get(stub, before[0]), self.get(stub, before[1]),
                 self.get(stub, before[2], user="42")]
        self.assertEqual(after, before)  # every field, as the client sees it
        self.assertEqual(len(self.list_all(stub)), 2)
        self.assertEqual(len(self.list_all(stub, user="42")), 1)
        # Loaded calls are ordinary calls.
        stub.OffHold(pb2.OffHoldRequest(extension="@self",
                                        phone_call_id=before[0].id,
                                        phone_call_view_id="00"),
                     timeout=RPC_TIMEOUT)
        hung = stub.HangupPhoneCalls(pb2.HangupPhoneCallsRequest(
            extension="@self", phone_call_id=before[1].id),
            timeout=RPC_TIMEOUT)
        self.assertEqual(list(hung.phone_call_ids), [before[1].id])
        # New ids never repeat a loaded one.
        fresh = self.create(stub, "0003*210")
        self.assertNotIn(fresh.id, [c.id for c in before])
        second.stop_checked(self)

        third = self.start()
        stub = self.stub(third)
        ids = sorted(c.id for c in self.list_all(stub))
        self.assertEqual(ids, sorted([before[0].id, fresh.id]))
        self.assertFalse(self.get(stub, before[0])
                         .phone_call_views[0].HasField("on_hold"))
        third.stop_checked(self)

    def test_kill_9_keeps_calls_up_to_the_last_write(self):
        first = self.start("--state-save-interval", "100")
        stub = self.stub(first)
        calls = [self.create(stub, "0003*210"), self.create(stub, "0003*211")]

        def written():
            with open(self.path, "rb") as f:
                data = f.read()
            return all(c.id.encode() in data for c in calls)
        self.wait_for("a periodic write with both calls", written)
        self.assertGreater(self.metric(
            first, "uapi_sidecar_state_last_save_timestamp_seconds"), 0)
        self.assertEqual(self.metric(
            first, 'uapi_sidecar_state_saves_total{result="error"}'), 0)
        first.stop(signal.SIGKILL)

        second = self.start()
        stub = self.stub(second)
        got = sorted(c.id for c in self.list_all(stub))
        self.assertEqual(got, sorted(c.id for c in calls))
        second.stop_checked(self)

    def assert_moved_aside(self, content, problem):
        with open(self.path, "wb") as f:
            f.write(content)
        s = self.start()
        log = s.log_tail(80)
        self.assertIn("state file rejected", log)
        self.assertIn(problem, log)
        aside = glob.glob(self.path + ".rejected-*")
        self.assertEqual(len(aside), 1, aside)
        with open(aside[0], "rb") as f:
            self.assertEqual(f.read(), content)  # kept whole
        stub = self.stub(s)
        self.assertEqual(self.list_all(stub), [])
        self.assertEqual(self.metric(
            s, "uapi_sidecar_state_file_rejected_total"), 1)
        # It serves, and its calls are written again from now on.
        call = self.create(stub, "0003*210")
        s.stop_checked(self)
        os.unlink(aside[0])
        again = self.start()
        self.assertEqual([c.id for c in self.list_all(self.stub(again))],
                         [call.id])
        self.assertEqual(self.metric(
            again, "uapi_sidecar_state_file_rejected_total"), 0)
        again.stop_checked(self)

    def test_damaged_file_is_moved_aside(self):
        self.assert_moved_aside(b"garbage that is not a state file",
                                "not a uapi-sidecar state file")

    def test_torn_and_flipped_files_are_moved_aside(self):
        s = self.start("--state-save-interval", "0")
        stub = self.stub(s)
        for ext in ("0003*210", "0003*211", "0003*212"):
            self.create(stub, ext)
        s.stop_checked(self)
        with open(self.path, "rb") as f:
            good = f.read()
        self.assert_moved_aside(good[:len(good) * 2 // 3], "truncated")
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 0x04
        self.assert_moved_aside(bytes(flipped), "damaged: the checksum")

    def test_too_many_calls_for_max_calls(self):
        s = self.start("--state-save-interval", "0")
        stub = self.stub(s)
        for ext in ("0003*210", "0003*211", "0003*212"):
            self.create(stub, ext)
        s.stop_checked(self)
        small = self.start("--max-calls", "2")
        self.assertIn("raise --max-calls", small.log_tail(80))
        self.assertEqual(len(glob.glob(self.path + ".rejected-*")), 1)
        small.stop_checked(self)

    def test_ringing_goes_on_after_a_restart(self):
        ring_ms = int(4000 * SLOW)
        first = self.start("--ring-delay", str(ring_ms),
                           "--state-save-interval", "0")
        call = self.create(self.stub(first), "0003*210")
        self.assertEqual(call.phone_call_views[0].status, 4)  # other rings
        first.stop_checked(self)

        second = self.start("--ring-delay", str(ring_ms))
        stub = self.stub(second)
        watch = stub.WatchPhoneCalls(pb2.WatchPhoneCallsRequest(
            extension="@self"), timeout=2 * ring_ms / 1000.0 + 10)
        watch.initial_metadata()  # subscribed
        self.assertEqual(self.get(stub, call).phone_call_views[0].status, 4,
                         "the restart took longer than the ringing")
        # The engine wakes by itself when the ringing ends, on the call's
        # own schedule: an UPDATED event without any request.
        event = next(iter(watch))
        watch.cancel()
        self.assertEqual(event.type, pb2.PhoneCallEvent.Type.Value("UPDATED"))
        self.assertEqual(event.phone_call.id, call.id)
        due = call.published.ToNanoseconds() + ring_ms * 1000000
        self.assertEqual(event.phone_call.answered.ToNanoseconds(), due)
        self.assertEqual(event.phone_call.phone_call_views[0].status, 5)
        second.stop_checked(self)

    def test_one_sidecar_per_file(self):
        first = self.start()
        cmd = common.WRAPPER + [
            common.sidecar_binary(), "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", "--state-file", self.path]
        second = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True,
                                timeout=STARTUP_TIMEOUT)
        self.assertEqual(second.returncode, 1, second.stderr)
        self.assertIn("another process holds it", second.stderr)
        first.stop_checked(self)

    def test_unusable_path_stops_the_start(self):
        cmd = common.WRAPPER + [
            common.sidecar_binary(), "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
            "--state-file", os.path.join(self.dir, "missing", "calls.state")]
        run = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True,
                             timeout=STARTUP_TIMEOUT)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn("cannot start", run.stderr)
        self.assertIn("--state-file", run.stderr)


if __name__ == "__main__":
    common.main(__name__)
