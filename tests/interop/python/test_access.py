#!/usr/bin/python3
"""Interop suite: access control (--tokens-file) with grpcio (Python) and
plain HTTP/1.1 for the REST facade.

Run from anywhere: /usr/bin/python3 tests/interop/python/test_access.py
[TestClass[.test_name] ...]. The sidecar binary is $USC_SIDECAR_BINARY
(default bazel-bin/src/uapi-sidecar); $USC_SIDECAR_WRAPPER is put in front
of its command line (e.g. valgrind, or tests/interop/pair.sh, where the
translation backend holds the tokens file in front of a facade that has
none).

What is checked: a PhoneCallService call without a token, or with one not
in the file, is UNAUTHENTICATED with the UAPI code access_denied (trailer
and ErrorInfo), while health and reflection stay open; @me is the token's
user; another user's calls are NOT_FOUND for Get, List, the actions,
Hangup and Create, and never reach a Watch; a token limited to some
extensions sees only those; the REST facade answers 401 access_denied;
the file is read again when it changes (a file that does not parse keeps
the tokens in force, and a stream whose token lost its grant ends); a bad
file stops the sidecar at start with exit status 2; no token is logged.
"""

import http.client
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import common  # noqa: E402
from common import RPC_TIMEOUT, SLOW, Sidecar  # noqa: E402

pb2, pb2_grpc = common.load_stubs()

Code = grpc.StatusCode
Event = pb2.PhoneCallEvent

EXT_A = "0003*210"
EXT_A2 = "0003*211"
OUTSIDE = "0003*024"
ALICE = "alice-token-0123456789"      # alice, through EXT_A
ALICE_TWO = "alice-two-token-0123456"  # alice, through EXT_A and EXT_A2
BOB = "bob-token-0123456789abcd"      # bob, every extension
CAROL = "carol-token-0123456789ab"    # only in the reload test's files
TOKENS = """# the suite's tokens
%s alice %s
%s alice %s,%s   # two desks
%s bob *
""" % (ALICE, EXT_A, ALICE_TWO, EXT_A, EXT_A2, BOB)
SECRETS = [ALICE, ALICE_TWO, BOB, CAROL]

REST_RE = re.compile(r"rest-facade serving\b.*?address=([0-9A-Za-z.:\[\]]+)")
REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"

MAIN = None
TMP = None


def bearer(token):
    return (("authorization", "Bearer " + token),)


def write_atomically(path, text):
    """Replaces `path` as editors and Kubernetes do: a new inode."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def setUpModule():
    global MAIN, TMP
    TMP = tempfile.mkdtemp(prefix="usc-access-")
    path = os.path.join(TMP, "tokens")
    with open(path, "w") as f:
        f.write(TOKENS)
    MAIN = Sidecar("--tokens-file", path, "--rest-listen", "127.0.0.1:0",
                   "--shutdown-grace", "2000").start()


def tearDownModule():
    try:
        if MAIN is not None:
            MAIN.stop_checked()
            log = MAIN.log_tail(100000)
            for secret in SECRETS:
                if secret in log:
                    raise AssertionError("a token is in the log")
    finally:
        import shutil
        shutil.rmtree(TMP, ignore_errors=True)


def request(method, **fields):
    methods = pb2.DESCRIPTOR.services_by_name["PhoneCallService"]
    cls = getattr(pb2, methods.methods_by_name[method].input_type.name)
    return cls(**fields)


class WatchStream:
    """A WatchPhoneCalls stream read by a thread into a queue; `headers`
    is set once the stream is live."""

    END = object()

    def __init__(self, stub, token, **fields):
        self.call = stub.WatchPhoneCalls(
            request("WatchPhoneCalls", **fields), timeout=60 * SLOW,
            metadata=bearer(token) if token else None)
        self.events = queue.Queue()
        self.headers = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        try:
            try:
                self.call.initial_metadata()
            finally:
                self.headers.set()
            for event in self.call:
                self.events.put(event)
            self.events.put(self.END)
        except grpc.RpcError as err:
            self.events.put(err)

    def live(self):
        if not self.headers.wait(RPC_TIMEOUT):
            raise AssertionError("the Watch stream never went live")
        return self

    def next(self, timeout=RPC_TIMEOUT):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no Watch event within %.1f s" % timeout)

    def cancel(self):
        self.call.cancel()
        self._thread.join(RPC_TIMEOUT)


class Base(unittest.TestCase):
    sidecar = None  # MAIN unless a class has its own

    def setUp(self):
        sidecar = self.sidecar or MAIN
        self.channel = grpc.insecure_channel(sidecar.address)
        self.addCleanup(self.channel.close)
        self.stub = pb2_grpc.PhoneCallServiceStub(self.channel)

    def call(self, method, token, **fields):
        return getattr(self.stub, method)(
            request(method, **fields), timeout=RPC_TIMEOUT,
            metadata=bearer(token) if token else None)

    def refused(self, code, uapi_code, method, token, metadata=None,
                **fields):
        """The RpcError of a call that must fail with `code`, after checking
        the UAPI code in the trailer and in the ErrorInfo."""
        with self.assertRaises(grpc.RpcError) as ctx:
            if metadata is None:
                self.call(method, token, **fields)
            else:
                getattr(self.stub, method)(request(method, **fields),
                                           timeout=RPC_TIMEOUT,
                                           metadata=metadata)
        err = ctx.exception
        self.assertEqual(err.code(), code, err.details())
        trailers = dict(err.trailing_metadata() or ())
        self.assertEqual(trailers.get("uapi-error-code"), uapi_code)
        _, infos = common.parse_status_details(
            trailers["grpc-status-details-bin"])
        self.assertEqual([(i.reason, i.domain) for i in infos],
                         [(uapi_code, common.ERROR_DOMAIN)])
        return err

    def create(self, token, ext, user=""):
        return self.call("CreateSimplePhoneCall", token, user_id=user,
                         extension=ext, source=[ext],
                         destination=[OUTSIDE]).phone_calls[0]

    def list_ids(self, token, ext, user=""):
        answer = self.call("ListPhoneCalls", token, user_id=user,
                           extension=ext)
        return [c.id for c in answer.phone_calls]


class AuthenticationTests(Base):

    def test_no_token_is_unauthenticated(self):
        for method, fields in [
                ("ListPhoneCalls", {"extension": EXT_A}),
                ("GetPhoneCall", {"extension": EXT_A, "phone_call_id": "abc"}),
                ("CreateSimplePhoneCall",
                 {"extension": EXT_A, "source": [EXT_A],
                  "destination": [OUTSIDE]}),
                ("OnHold", {"extension": EXT_A, "phone_call_id": "abc",
                            "phone_call_view_id": "01"}),
                ("HangupPhoneCalls", {"extension": EXT_A})]:
            with self.subTest(method=method):
                err = self.refused(Code.UNAUTHENTICATED, "access_denied",
                                   method, None, **fields)
                self.assertIn("needs a bearer token", err.details())
        stream = WatchStream(self.stub, None, extension=EXT_A)
        item = stream.next()
        self.assertIsInstance(item, grpc.RpcError)
        self.assertEqual(item.code(), Code.UNAUTHENTICATED)
        self.assertEqual(dict(item.trailing_metadata())["uapi-error-code"],
                         "access_denied")

    def test_bad_token_is_unauthenticated(self):
        for metadata in [bearer("not-a-token-0123456789"),
                         bearer(ALICE + "x"),
                         (("authorization", "Basic " + ALICE),),
                         (("authorization", ALICE),)]:
            with self.subTest(metadata=metadata[0][1][:12]):
                err = self.refused(Code.UNAUTHENTICATED, "access_denied",
                                   "ListPhoneCalls", None, metadata=metadata,
                                   extension=EXT_A)
                self.assertIn("not valid", err.details())
                self.assertNotIn(ALICE, err.details())

    def test_health_and_reflection_stay_open(self):
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check")
        # HealthCheckRequest{} in, HealthCheckResponse{status: SERVING} out.
        self.assertEqual(check(b"", timeout=RPC_TIMEOUT), b"\x08\x01")
        info = self.channel.stream_stream(REFLECTION)
        # ServerReflectionRequest{list_services: ""}.
        answers = list(info(iter([b"\x3a\x00"]), timeout=RPC_TIMEOUT))
        self.assertEqual(len(answers), 1)
        self.assertIn(common.SERVICE.encode(), answers[0])

    def test_me_is_the_token_user(self):
        call = self.create(ALICE, EXT_A, user="@me")
        self.assertEqual(call.owner_id, "alice")
        for user in ["", "@me", "@viewer", "@owner", "alice"]:
            with self.subTest(user=user):
                got = self.call("GetPhoneCall", ALICE, user_id=user,
                                extension=EXT_A, phone_call_id=call.id)
                self.assertEqual(got.id, call.id)
        self.assertIn(call.id, self.list_ids(ALICE, EXT_A, user="alice"))
        self.call("HangupPhoneCalls", ALICE, extension=EXT_A,
                  phone_call_id=call.id)


class IsolationTests(Base):

    def test_other_user_cannot_see_act_or_hang_up(self):
        call = self.create(ALICE, EXT_A)
        self.addCleanup(self.call, "HangupPhoneCalls", ALICE,
                        extension=EXT_A, phone_call_id=call.id)
        hidden = self.refused(Code.NOT_FOUND, "pc_phoncall_invalid",
                              "GetPhoneCall", BOB, user_id="alice",
                              extension=EXT_A, phone_call_id=call.id)
        never = self.refused(Code.NOT_FOUND, "pc_phoncall_invalid",
                             "GetPhoneCall", BOB, user_id="alice",
                             extension=EXT_A,
                             phone_call_id="0123456789abcdef0123")
        # Nothing tells an existing call from one that never was.
        self.assertEqual(hidden.details().replace(call.id, "X"),
                         never.details().replace("0123456789abcdef0123", "X"))
        self.refused(Code.NOT_FOUND, "pc_phoncall_invalid", "GetPhoneCall",
                     BOB, extension="@self", phone_call_id=call.id)
        self.refused(Code.NOT_FOUND, "pc_phoncall_invalid", "ListPhoneCalls",
                     BOB, user_id="alice", extension=EXT_A)
        self.assertNotIn(call.id, self.list_ids(BOB, "@self"))
        self.refused(Code.NOT_FOUND, "pc_phoncall_invalid", "OnHold", BOB,
                     user_id="alice", extension=EXT_A, phone_call_id=call.id,
                     phone_call_view_id="01")
        self.refused(Code.NOT_FOUND, "pc_phoncall_invalid",
                     "HangupPhoneCalls", BOB, user_id="alice",
                     extension=EXT_A, phone_call_id=call.id)
        self.refused(Code.NOT_FOUND, "pc_phoncall_invalid",
                     "HangupPhoneCalls", BOB, user_id="alice",
                     extension="@self")
        self.refused(Code.NOT_FOUND, "pc_phoncall_invalid",
                     "CreateSimplePhoneCall", BOB, user_id="alice",
                     extension=EXT_A, source=[EXT_A], destination=[OUTSIDE])
        # alice's call is as it was.
        got = self.call("GetPhoneCall", ALICE, extension=EXT_A,
                        phone_call_id=call.id)
        self.assertFalse(got.phone_call_views[1].HasField("on_hold"))

    def test_malformed_is_still_invalid(self):
        self.refused(Code.INVALID_ARGUMENT, "pc_phoncall_invalid",
                     "GetPhoneCall", BOB, user_id="alice", extension=EXT_A,
                     phone_call_id="bad!")
        self.refused(Code.INVALID_ARGUMENT, "user_invalid", "ListPhoneCalls",
                     ALICE, user_id="a.b", extension=EXT_A)

    def test_extensions_of_the_token(self):
        call = self.create(ALICE, EXT_A)
        self.addCleanup(self.call, "HangupPhoneCalls", ALICE,
                        extension=EXT_A, phone_call_id=call.id)
        # One extension: @self is it.
        got = self.call("GetPhoneCall", ALICE, extension="@self",
                        phone_call_id=call.id)
        self.assertEqual(got.extension, EXT_A)
        self.refused(Code.NOT_FOUND, "pc_phoncall_invalid", "ListPhoneCalls",
                     ALICE, extension=EXT_A2)
        self.refused(Code.NOT_FOUND, "pc_phoncall_invalid",
                     "CreateSimplePhoneCall", ALICE, extension=EXT_A2,
                     source=[EXT_A2], destination=[OUTSIDE])
        # Two: by name.
        self.assertIn(call.id, self.list_ids(ALICE_TWO, EXT_A))
        err = self.refused(Code.INVALID_ARGUMENT, "extension_invalid",
                           "ListPhoneCalls", ALICE_TWO, extension="@self")
        self.assertIn("name one", err.details())
        # Every extension.
        self.assertNotIn(call.id, self.list_ids(BOB, "@self"))

    def test_watch_shows_only_the_token_user(self):
        bob = WatchStream(self.stub, BOB, user_id="@me").live()
        self.addCleanup(bob.cancel)
        alice = WatchStream(self.stub, ALICE).live()
        self.addCleanup(alice.cancel)
        nosy = WatchStream(self.stub, BOB, user_id="alice",
                           extension="@self")
        err = nosy.next()
        self.assertIsInstance(err, grpc.RpcError)
        self.assertEqual(err.code(), Code.NOT_FOUND)

        call = self.create(ALICE, EXT_A)
        self.addCleanup(self.call, "HangupPhoneCalls", ALICE,
                        extension=EXT_A, phone_call_id=call.id)
        event = alice.next()
        self.assertEqual((event.type, event.phone_call.id),
                         (Event.CREATED, call.id))
        mine = self.create(BOB, EXT_A)
        self.addCleanup(self.call, "HangupPhoneCalls", BOB,
                        extension=EXT_A, phone_call_id=mine.id)
        # bob's first event is his own call: alice's never reached him.
        event = bob.next()
        self.assertEqual((event.type, event.phone_call.id),
                         (Event.CREATED, mine.id))
        self.assertEqual(event.phone_call.owner_id, "bob")


class RestFacadeTests(Base):

    def setUp(self):
        super().setUp()
        address = None
        deadline = time.monotonic() + 5 * SLOW
        while address is None and time.monotonic() < deadline:
            for line in MAIN.log_tail(1000).splitlines():
                m = REST_RE.search(line)
                if m:
                    address = m.group(1)
            time.sleep(0.05)
        if address is None:
            self.fail("no 'rest-facade serving address=' log line")
        host, port = address.rsplit(":", 1)
        self.http = http.client.HTTPConnection(host, int(port),
                                               timeout=RPC_TIMEOUT)
        self.addCleanup(self.http.close)

    def rest(self, method, target, token=None, body=None):
        headers = {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        if body is not None:
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.http.request(method, target, body=body, headers=headers)
        r = self.http.getresponse()
        data = r.read()
        return r.status, r, json.loads(data) if data else None

    def test_without_a_token(self):
        for token in [None, "not-a-token-0123456789"]:
            with self.subTest(token=token):
                status, r, answer = self.rest(
                    "GET", "/uapi/phoneCalls/@me/" + EXT_A, token)
                self.assertEqual(status, 401, answer)
                self.assertEqual(answer["error"]["code"], "access_denied")
                self.assertEqual(r.getheader("www-authenticate"), "Bearer")

    def test_with_a_token(self):
        status, _, created = self.rest(
            "POST", "/uapi/phoneCalls/@me/simple", ALICE,
            {"extension": EXT_A,
             "phoneCallView": [{"source": [EXT_A],
                                "destination": [OUTSIDE]}]})
        self.assertEqual(status, 200, created)
        cid = created[0]["id"]
        self.assertEqual(created[0]["ownerId"], "alice")
        status, _, answer = self.rest(
            "GET", "/uapi/phoneCalls/@me/%s/%s" % (EXT_A, cid), ALICE)
        self.assertEqual([c["id"] for c in answer["entry"]], [cid])
        # bob: alice's user is hidden, her call is not in his.
        status, _, answer = self.rest(
            "GET", "/uapi/phoneCalls/alice/" + EXT_A, BOB)
        self.assertEqual(status, 400, answer)
        self.assertEqual(answer["error"]["code"], "pc_phoncall_invalid")
        status, _, answer = self.rest(
            "GET", "/uapi/phoneCalls/@me/%s/%s" % (EXT_A, cid), BOB)
        self.assertEqual((status, answer.get("entry", [])), (200, []))
        status, _, answer = self.rest(
            "DELETE", "/uapi/phoneCalls/alice/%s/%s" % (EXT_A, cid), BOB)
        self.assertEqual(status, 400, answer)
        status, _, answer = self.rest(
            "DELETE", "/uapi/phoneCalls/@me/%s/%s" % (EXT_A, cid), ALICE)
        self.assertEqual(status, 200, answer)


class ReloadTests(Base):
    """A sidecar of its own, whose tokens file changes under it."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="usc-access-reload-")
        cls.path = os.path.join(cls.dir, "tokens")
        with open(cls.path, "w") as f:
            f.write("%s alice *\n" % ALICE)
        cls.sidecar = Sidecar("--tokens-file", cls.path,
                              "--shutdown-grace", "2000").start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sidecar.stop_checked()
            log = cls.sidecar.log_tail(100000)
            for secret in SECRETS:
                if secret in log:
                    raise AssertionError("a token is in the log")
        finally:
            import shutil
            shutil.rmtree(cls.dir, ignore_errors=True)

    def status_of(self, token):
        try:
            self.call("ListPhoneCalls", token, extension="@self")
            return Code.OK
        except grpc.RpcError as err:
            return err.code()

    def wait_status(self, token, code):
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            if self.status_of(token) == code:
                return
            time.sleep(0.1)
        self.fail("%s never became %s" % (token[:5], code))

    def wait_log(self, text):
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            if text in self.sidecar.log_tail(100000):
                return
            time.sleep(0.1)
        self.fail("no %r in the log:\n%s" % (text, self.sidecar.log_tail()))

    def test_changes_take_effect(self):
        self.assertEqual(self.status_of(ALICE), Code.OK)
        self.assertEqual(self.status_of(CAROL), Code.UNAUTHENTICATED)
        watch = WatchStream(self.stub, ALICE).live()
        self.addCleanup(watch.cancel)

        # Renamed over: carol comes in, alice's grant is unchanged.
        write_atomically(self.path, "%s alice *\n%s carol *\n"
                         % (ALICE, CAROL))
        self.wait_status(CAROL, Code.OK)
        self.assertEqual(self.status_of(ALICE), Code.OK)
        call = self.create(ALICE, EXT_A)
        event = watch.next()
        self.assertEqual((event.type, event.phone_call.id),
                         (Event.CREATED, call.id))

        # A file that does not parse keeps the tokens in force.
        write_atomically(self.path, "%s carol\n" % CAROL)
        self.wait_log("tokens file not reloaded")
        self.assertIn("line 1: expected TOKEN USER EXTENSIONS",
                      self.sidecar.log_tail(100000))
        self.assertEqual(self.status_of(ALICE), Code.OK)
        self.assertEqual(self.status_of(CAROL), Code.OK)

        # Written in place: alice goes, and her open stream ends.
        with open(self.path, "w") as f:
            f.write("%s carol *\n" % CAROL)
        self.wait_status(ALICE, Code.UNAUTHENTICATED)
        item = watch.next()
        self.assertIsInstance(item, grpc.RpcError)
        self.assertEqual(item.code(), Code.UNAUTHENTICATED)
        self.assertEqual(self.status_of(CAROL), Code.OK)


class StartTests(unittest.TestCase):
    """A tokens file that cannot be used stops the sidecar at start."""

    def start_fails(self, path):
        cmd = common.WRAPPER + [common.sidecar_binary(), "--listen",
                                "127.0.0.1:0", "--admin-listen",
                                "127.0.0.1:0", "--tokens-file", path]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=common.STARTUP_TIMEOUT + 20)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertNotIn("listening", proc.stderr)
        return proc.stderr

    def test_bad_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "tokens")
            with open(path, "w") as f:
                f.write("# ok\n%s alice *\nshort bob *\n" % ALICE)
            err = self.start_fails(path)
            self.assertIn("--tokens-file: tokens file %s line 3: the token "
                          "is shorter than 16 characters" % path, err)
            self.assertNotIn(ALICE, err)
            err = self.start_fails(os.path.join(d, "missing"))
            self.assertIn("cannot read tokens file", err)


if __name__ == "__main__":
    common.main(__name__)
