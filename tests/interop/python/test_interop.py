#!/usr/bin/python3
"""Interop suite: grpcio (Python) against uapi-sidecar's native engine
(or, in pair mode, its translation backend in front of its REST facade).

Run from anywhere: /usr/bin/python3 tests/interop/python/test_interop.py
[TestClass[.test_name] ...]. The sidecar binary is $USC_SIDECAR_BINARY
(default bazel-bin/src/uapi-sidecar); $USC_SIDECAR_WRAPPER is put in front
of its command line (e.g. valgrind, or tests/interop/pair.sh);
$USC_EXPECT_BACKEND is the x-uapi-backend expected (default "native").

Every test creates the calls it needs on extensions (and, where it
matters, users) of its own, so tests do not depend on each other.
"""

import itertools
import json
import os
import queue
import signal
import sys
import threading
import time
import unittest
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from google.protobuf import wrappers_pb2  # noqa: E402

import common  # noqa: E402
from common import RPC_TIMEOUT, SLOW, Sidecar, metadata_values  # noqa: E402

pb2, pb2_grpc = common.load_stubs()

Code = grpc.StatusCode
View = pb2.PhoneCallView
Event = pb2.PhoneCallEvent
METHODS = pb2.DESCRIPTOR.services_by_name["PhoneCallService"].methods_by_name
ACTIONS_WITH_VIEW = ["OnHold", "OffHold", "StartRecording", "StopRecording",
                     "Park", "UnPark", "PickUp", "BargeIn", "Whisper",
                     "Monitor"]
TRANSFERS = ["Transfer", "TransferToVoicemail"]
NEEDS_SEND_CALL_TO = ["UnPark", "PickUp", "BargeIn", "Whisper", "Monitor"] + TRANSFERS
CREATES = ["CreateSimplePhoneCall", "CreateCallbackPhoneCall",
           "CreateConferenceInvitePhoneCall"]
UNKNOWN_ID = "0123456789abcdef0123"  # well-formed, never issued (ids are random)

MAIN = None  # the sidecar most tests share

_seq = itertools.count(1000)


def fresh_ext():
    """An extension number no other test uses ("8*1000", "8*1001", ...)."""
    return "8*%d" % next(_seq)


def fresh_user():
    return "u%d" % next(_seq)


def request(method, **fields):
    """The request message of `method`; plain ints and bools given for
    wrapper fields are wrapped."""
    cls = getattr(pb2, METHODS[method].input_type.name)
    for name, value in list(fields.items()):
        if isinstance(value, bool):
            fields[name] = wrappers_pb2.BoolValue(value=value)
        elif isinstance(value, int):
            fields[name] = wrappers_pb2.Int32Value(value=value)
    return cls(**fields)


def for_method(method, **fields):
    """`fields` less those the request of `method` does not have (for
    tables that try one set of fields on several methods)."""
    names = getattr(pb2, METHODS[method].input_type.name).DESCRIPTOR.fields_by_name
    return {k: v for k, v in fields.items() if k in names}


def ts(t):
    """A google.protobuf.Timestamp as float seconds."""
    return t.seconds + t.nanos / 1e9


def view_of(call, view_id):
    for v in call.phone_call_views:
        if v.id == view_id:
            return v
    raise AssertionError("call %s has no view %s: %s" % (call.id, view_id, call))


def identity(b):
    return b


def setUpModule():
    global MAIN
    MAIN = Sidecar().start()


def tearDownModule():
    if MAIN is not None:
        MAIN.stop_checked()


class WatchStream:
    """A WatchPhoneCalls stream read by a thread into a queue."""

    END = object()

    def __init__(self, stub, timeout=None, **fields):
        self.call = stub.WatchPhoneCalls(request("WatchPhoneCalls", **fields),
                                         timeout=timeout)
        self.events = queue.Queue()
        # Set once the response headers are in (or the stream ended): the
        # server sends them when the subscription is live (a polling
        # backend: once its baseline poll is in).
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

    def next(self, timeout=RPC_TIMEOUT):
        """The next event; END when the stream ended OK; an RpcError when
        it failed. AssertionError when nothing comes within `timeout`."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no Watch event within %.1f s" % timeout)

    def final(self, timeout=RPC_TIMEOUT):
        """Skips events up to the end of the stream: returns END or the
        RpcError."""
        while True:
            item = self.next(timeout)
            if item is self.END or isinstance(item, grpc.RpcError):
                return item

    def next_event(self, timeout=RPC_TIMEOUT):
        item = self.next(timeout)
        if item is self.END or isinstance(item, grpc.RpcError):
            raise AssertionError("Watch stream ended instead of an event: %r"
                                 % (item,))
        return item

    def expect(self, etype, call_id, timeout=RPC_TIMEOUT):
        event = self.next_event(timeout)
        if (event.type, event.phone_call.id) != (etype, call_id):
            raise AssertionError(
                "expected %s for %s, got %s for %s" % (
                    Event.Type.Name(etype), call_id,
                    Event.Type.Name(event.type), event.phone_call.id))
        return event

    def wait_headers(self, timeout=RPC_TIMEOUT):
        if not self.headers.wait(timeout):
            raise AssertionError("no Watch response headers within %.1f s"
                                 % timeout)

    def wait_ready(self, make_probe, attempts=50):
        """Waits for the response headers, then creates probe calls (with
        make_probe(), which must match the stream's filter) until their
        CREATED events flow: from then on the subscription is live.
        Drains up to the last probe's event."""
        self.wait_headers()
        probes = []
        for _ in range(attempts):
            probes.append(make_probe().id)
            deadline = time.monotonic() + 0.2 * SLOW
            while True:  # other events (of earlier changes) are skipped
                try:
                    event = self.events.get(
                        timeout=max(0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if event is self.END or isinstance(event, grpc.RpcError):
                    raise AssertionError("Watch ended while waiting: %r"
                                         % (event,))
                if event.phone_call.id in probes:
                    self.skip_to(probes[-1], event)
                    return
        raise AssertionError("Watch stream delivered no event for %d probe "
                             "calls" % attempts)

    def skip_to(self, call_id, event=None):
        """Reads events up to and including the first one for `call_id`
        (starting with `event` when given); returns that one."""
        while event is None or event.phone_call.id != call_id:
            event = self.next_event()
        return event

    def assert_quiet(self):
        """Nothing is queued (events already delivered for earlier changes
        would be here: the stream is ordered)."""
        if not self.events.empty():
            raise AssertionError("unexpected Watch item %r" % self.events.get())

    def cancel(self):
        self.call.cancel()
        self._thread.join(RPC_TIMEOUT)


class Base(unittest.TestCase):
    """A channel and stub to MAIN (or to the class's own `sidecar`)."""

    sidecar = None

    def server(self):
        return self.sidecar or MAIN

    def setUp(self):
        if not self.server().alive():
            self.fail("the sidecar died earlier (exit code %r); stderr tail:\n%s"
                      % (self.server().proc.poll(), self.server().log_tail()))
        self.channel = grpc.insecure_channel(self.server().address)
        self.addCleanup(self.channel.close)
        self.stub = pb2_grpc.PhoneCallServiceStub(self.channel)

    # -- calling ---------------------------------------------------------

    def rpc(self, method, **fields):
        req = request(method, **fields)
        if method == "WatchPhoneCalls":  # only used where it must fail
            return list(self.stub.WatchPhoneCalls(req, timeout=RPC_TIMEOUT))
        return getattr(self.stub, method)(req, timeout=RPC_TIMEOUT)

    def rpc_with_call(self, method, **fields):
        return getattr(self.stub, method).with_call(
            request(method, **fields), timeout=RPC_TIMEOUT)

    def create(self, ext=None, dest=None, method="CreateSimplePhoneCall",
               **fields):
        ext = ext or fresh_ext()
        fields.setdefault("source", [ext])
        fields.setdefault("destination", [dest or fresh_ext()])
        resp = self.rpc(method, extension=ext, **fields)
        self.assertEqual(len(resp.phone_calls), 1, resp)
        return resp.phone_calls[0]

    def get(self, call, user="", ext=None):
        return self.rpc("GetPhoneCall", user_id=user,
                        extension=ext or call.extension, phone_call_id=call.id)

    def act(self, method, call, view="00", user="", **fields):
        if view is not None:
            fields["phone_call_view_id"] = view
        return self.rpc(method, user_id=user, extension=call.extension,
                        phone_call_id=call.id, **fields)

    def list_ids(self, **fields):
        return [c.id for c in self.rpc("ListPhoneCalls", **fields).phone_calls]

    def watch(self, timeout=None, **fields):
        stream = WatchStream(self.stub, timeout=timeout, **fields)
        self.addCleanup(stream.cancel)
        return stream

    # -- asserting -------------------------------------------------------

    def assert_status(self, err, code, uapi_code):
        """Status code, uapi-error-code trailer and the google.rpc.Status
        in grpc-status-details-bin (code, message, ErrorInfo)."""
        self.assertIsInstance(err, grpc.RpcError)
        self.assertEqual(err.code(), code, "details: %r" % err.details())
        trailers = err.trailing_metadata()
        details = metadata_values(trailers, "grpc-status-details-bin")
        codes = metadata_values(trailers, "uapi-error-code")
        if uapi_code is not None:
            self.assertEqual(codes, [uapi_code], trailers)
            self.assertTrue(err.details(), "grpc-message is empty")
            self.assertEqual(len(details), 1,
                             "grpc-status-details-bin missing: %r" % (trailers,))
        if details:
            status, infos = common.parse_status_details(details[0])
            self.assertEqual(status.code, code.value[0])
            self.assertEqual(status.message, err.details())
            if uapi_code is not None:
                self.assertEqual([(i.reason, i.domain) for i in infos],
                                 [(uapi_code, common.ERROR_DOMAIN)], status)
            else:
                for info in infos:
                    self.assertEqual(info.domain, common.ERROR_DOMAIN)
                    self.assertEqual(codes, [info.reason])

    def rpc_error(self, method, code, uapi_code, **fields):
        with self.assertRaises(grpc.RpcError) as cm:
            self.rpc(method, **fields)
        self.assert_status(cm.exception, code, uapi_code)
        return cm.exception

    def assert_now(self, t, before, after=None):
        """Timestamp `t` is set between `before` and `after` (seconds)."""
        after = time.time() if after is None else after
        self.assertTrue(t.seconds or t.nanos, "timestamp unset")
        self.assertGreaterEqual(ts(t), before - 1.0)
        self.assertLessEqual(ts(t), after + 1.0)

    def assert_backend(self, call):
        """x-uapi-backend names the expected backend ("native", or "uapi"
        in pair mode)."""
        self.assertEqual(metadata_values(call.initial_metadata(), "x-uapi-backend"),
                         [common.EXPECT_BACKEND])


class CreateTests(Base):

    def check_new_call(self, call, ext, source, destination, caller_id,
                       caller_destination, nonce, t0, flows):
        t1 = time.time()
        self.assertRegex(call.id, r"^[0-9a-f]{20}$")
        self.assertEqual(call.extension, ext)
        self.assertEqual(call.owner_id, "1")
        self.assertEqual(call.owner_name, "Default Organization")
        self.assert_now(call.published, t0, t1)
        self.assert_now(call.answered, t0, t1)
        self.assertEqual(call.nonce, nonce)
        self.assertEqual([v.id for v in call.phone_call_views], ["00", "01"])
        v0, v1 = call.phone_call_views
        self.assertEqual(v0.extension, ext)
        self.assertEqual(v1.extension, destination[0])
        for v, flow, cid in ((v0, flows[0], caller_id),
                             (v1, flows[1], caller_destination or caller_id)):
            self.assertEqual(list(v.source), source)
            self.assertEqual(list(v.destination), destination)
            self.assertEqual(v.flow, flow)
            self.assertEqual(v.status, View.STATUS_ON_CALL)
            self.assertEqual(v.caller_id, cid)
            self.assert_now(v.answered, t0, t1)
            for unset in ("ringing", "recording", "parked", "parked_pos",
                          "on_hold", "holder"):
                self.assertFalse(v.HasField(unset), unset)
            self.assertEqual(v.parked_by, "")

    def create_and_check(self, method, dest, flows, **extra):
        ext = fresh_ext()
        fields = dict(source=[ext, "0003*777"], destination=[dest, "0003*778"],
                      caller_id="John Doe <4242425>", nonce="nonce-" + method,
                      wait_for_pickup=30, call_duration=120,
                      allow_public_transfer=False, video=True, **extra)
        t0 = time.time()
        resp, rpc_call = self.rpc_with_call(method, extension=ext, **fields)
        self.assert_backend(rpc_call)
        self.assertEqual(len(resp.phone_calls), 1)
        call = resp.phone_calls[0]
        self.check_new_call(call, ext, fields["source"], fields["destination"],
                            fields["caller_id"],
                            fields.get("caller_destination", ""),
                            fields["nonce"], t0, flows)
        self.assertEqual(self.get(call), call)
        return call

    def test_create_simple_local(self):
        self.create_and_check("CreateSimplePhoneCall", fresh_ext(),
                              (View.FLOW_LOCAL, View.FLOW_LOCAL),
                              caller_destination="Front Desk <210>")

    def test_create_simple_public(self):
        self.create_and_check("CreateSimplePhoneCall", "4242425001",
                              (View.FLOW_OUTGOING_PUBLIC,
                               View.FLOW_INCOMING_PUBLIC))

    def test_create_callback(self):
        self.create_and_check("CreateCallbackPhoneCall", "+40213100000",
                              (View.FLOW_OUTGOING_PUBLIC,
                               View.FLOW_INCOMING_PUBLIC),
                              caller_destination="Callback <1>")

    def test_create_conference_invite(self):
        self.create_and_check("CreateConferenceInvitePhoneCall", fresh_ext(),
                              (View.FLOW_LOCAL, View.FLOW_LOCAL),
                              conference_number=5000, pin="1234")

    def test_flow_is_local_only_when_every_destination_looks_local(self):
        cases = [(["21000"], View.FLOW_LOCAL),        # 5 digits
                 (["210001"], View.FLOW_OUTGOING_PUBLIC),  # 6 digits
                 (["0003*210", "212"], View.FLOW_LOCAL),
                 (["0003*210", "4242425"], View.FLOW_OUTGOING_PUBLIC)]
        for destination, flow in cases:
            with self.subTest(destination=destination):
                call = self.create(destination=destination)
                self.assertEqual(view_of(call, "00").flow, flow)
                self.assertEqual(view_of(call, "01").flow,
                                 View.FLOW_LOCAL if flow == View.FLOW_LOCAL
                                 else View.FLOW_INCOMING_PUBLIC)

    def test_minimal_request_leaves_optional_fields_unset(self):
        call = self.create()
        self.assertEqual(call.nonce, "")
        for v in call.phone_call_views:
            self.assertEqual(v.caller_id, "")

    def test_ids_are_unique(self):
        ext = fresh_ext()
        ids = {self.create(ext=ext).id for _ in range(30)}
        self.assertEqual(len(ids), 30)

    def test_create_for_another_user(self):
        user = fresh_user()
        call = self.create(user_id=user)
        self.assertEqual(call.owner_id, user)
        self.assertEqual(self.get(call, user=user), call)


class GetTests(Base):

    def test_get_with_every_alias_of_the_caller_and_every_matching_extension(self):
        call = self.create()
        for user in ("", "@me", "@viewer", "@owner", "1"):
            for ext in (call.extension, "@self",
                        view_of(call, "01").extension):
                with self.subTest(user=user, ext=ext):
                    self.assertEqual(self.get(call, user=user, ext=ext), call)

    def test_get_sends_backend_metadata(self):
        call = self.create()
        got, rpc_call = self.rpc_with_call(
            "GetPhoneCall", extension=call.extension, phone_call_id=call.id)
        self.assertEqual(got, call)
        self.assert_backend(rpc_call)


class ListTests(Base):

    def make_calls(self, n, ext=None):
        ext = ext or fresh_ext()
        return ext, [self.create(ext=ext, nonce="n%d" % i) for i in range(n)]

    def test_list_defaults(self):
        ext, calls = self.make_calls(3)
        resp, rpc_call = self.rpc_with_call("ListPhoneCalls", extension=ext)
        self.assert_backend(rpc_call)
        self.assertEqual(list(resp.phone_calls), calls)
        self.assertEqual((resp.total_results, resp.items_per_page,
                          resp.start_index), (3, 20, 0))

    def test_list_paging(self):
        ext, calls = self.make_calls(5)
        ids = [c.id for c in calls]
        for start, page in ((0, ids[0:2]), (2, ids[2:4]), (4, ids[4:]),
                            (10, [])):
            with self.subTest(start_index=start):
                resp = self.rpc("ListPhoneCalls", extension=ext, count=2,
                                start_index=start)
                self.assertEqual([c.id for c in resp.phone_calls], page)
                self.assertEqual((resp.total_results, resp.items_per_page,
                                  resp.start_index), (5, 2, start))

    def test_list_sort_order(self):
        ext, calls = self.make_calls(4)
        ids = [c.id for c in calls]
        self.assertEqual(self.list_ids(extension=ext, sort_order="ascending"), ids)
        self.assertEqual(self.list_ids(extension=ext, sort_order="descending"),
                         ids[::-1])
        resp = self.rpc("ListPhoneCalls", extension=ext, sort_order="descending",
                        count=3, start_index=1)
        self.assertEqual([c.id for c in resp.phone_calls], ids[::-1][1:4])

    def test_list_one_call_by_id(self):
        ext, calls = self.make_calls(2)
        resp = self.rpc("ListPhoneCalls", extension=ext, phone_call_id=calls[1].id)
        self.assertEqual(list(resp.phone_calls), [calls[1]])
        self.assertEqual(resp.total_results, 1)
        resp = self.rpc("ListPhoneCalls", extension=ext, phone_call_id=UNKNOWN_ID)
        self.assertEqual((len(resp.phone_calls), resp.total_results), (0, 0))

    def test_list_filter_by_id(self):
        ext, calls = self.make_calls(3)
        ids = [c.id for c in calls]
        target = ids[1]
        cases = [("equals", target, [target]),
                 ("startsWith", target[:12], [target]),
                 ("contains", target[4:16], [target]),
                 ("inArray", "%s,%s" % (ids[2], ids[0]), [ids[0], ids[2]]),
                 ("inArray", "%s,%s" % (target, UNKNOWN_ID), [target]),
                 ("equals", UNKNOWN_ID, []),
                 ("present", "", ids)]
        for op, value, expected in cases:
            with self.subTest(op=op, value=value):
                resp = self.rpc("ListPhoneCalls", extension=ext, filter_by="id",
                                filter_op=op, filter_value=value)
                self.assertEqual([c.id for c in resp.phone_calls], expected)
                self.assertEqual(resp.total_results, len(expected))

    def test_list_filter_by_published(self):
        ext, calls = self.make_calls(3)
        ids = [c.id for c in calls]
        cases = [("greaterThan", "2000-01-01T00:00:00Z", ids),
                 ("lessThan", "2000-01-01T00:00:00Z", []),
                 ("greaterThan", "2999-01-01T00:00:00+02:00", []),
                 ("lessThan", "2999-01-01T00:00:00.5+02:00", ids),
                 ("present", "", ids)]
        for op, value, expected in cases:
            with self.subTest(op=op, value=value):
                self.assertEqual(
                    self.list_ids(extension=ext, filter_by="published",
                                  filter_op=op, filter_value=value), expected)

    def test_list_fields(self):
        ext, (call,) = self.make_calls(1)
        resp = self.rpc("ListPhoneCalls", extension=ext, fields=["id", "published"])
        (got,) = resp.phone_calls
        expected = pb2.PhoneCall(id=call.id)
        expected.published.CopyFrom(call.published)
        self.assertEqual(got, expected)
        resp = self.rpc("ListPhoneCalls", extension=ext,
                        fields=["nonce", "phoneCallView", "ownerId"])
        (got,) = resp.phone_calls
        expected = pb2.PhoneCall(nonce=call.nonce, owner_id=call.owner_id,
                                 phone_call_views=call.phone_call_views)
        self.assertEqual(got, expected)

    def test_list_by_view_extension_and_self(self):
        ext, (call,) = self.make_calls(1)
        self.assertEqual(self.list_ids(extension=view_of(call, "01").extension),
                         [call.id])
        self.assertIn(call.id, self.list_ids(extension="@self", count=5000))

    def test_list_of_other_user_is_empty(self):
        ext, _ = self.make_calls(2)
        resp = self.rpc("ListPhoneCalls", user_id=fresh_user(), extension=ext)
        self.assertEqual((len(resp.phone_calls), resp.total_results), (0, 0))

    def test_list_empty_extension_is_not_an_error(self):
        resp = self.rpc("ListPhoneCalls", extension=fresh_ext())
        self.assertEqual((len(resp.phone_calls), resp.total_results,
                          resp.items_per_page), (0, 0, 20))


class HangupTests(Base):

    def hangup(self, **fields):
        return list(self.rpc("HangupPhoneCalls", **fields).phone_call_ids)

    def assert_gone(self, call):
        self.rpc_error("GetPhoneCall", Code.NOT_FOUND, "pc_phoncall_invalid",
                       extension=call.extension, phone_call_id=call.id)

    def test_hangup_one_call(self):
        call, other = self.create(), self.create()
        resp, rpc_call = self.rpc_with_call(
            "HangupPhoneCalls", extension=call.extension, phone_call_id=call.id)
        self.assertEqual(list(resp.phone_call_ids), [call.id])
        self.assert_backend(rpc_call)
        self.assert_gone(call)
        self.assertEqual(self.list_ids(extension=call.extension), [])
        self.assertEqual(self.get(other), other)

    def test_hangup_one_call_with_phone_number(self):
        dest = fresh_ext()
        call = self.create(dest=dest)
        self.assertEqual(self.hangup(extension=call.extension,
                                     phone_call_id=call.id,
                                     phone_number=fresh_ext()), [])
        self.assertEqual(self.get(call), call)
        self.assertEqual(self.hangup(extension=call.extension,
                                     phone_call_id=call.id,
                                     phone_number=dest), [call.id])
        self.assert_gone(call)

    def test_hangup_every_call_of_extension(self):
        ext = fresh_ext()
        calls = [self.create(ext=ext) for _ in range(3)]
        bystander = self.create()
        self.assertEqual(self.hangup(extension=ext), [c.id for c in calls])
        self.assertEqual(self.list_ids(extension=ext), [])
        self.assertEqual(self.get(bystander), bystander)

    def test_hangup_every_call_with_phone_number(self):
        ext, d1, d2 = fresh_ext(), fresh_ext(), fresh_ext()
        c1 = self.create(ext=ext, dest=d1)
        c2 = self.create(ext=ext, dest=d2)
        c3 = self.create(ext=ext, dest=d1)
        self.assertEqual(self.hangup(extension=ext, phone_number=d1),
                         [c1.id, c3.id])
        self.assertEqual(self.list_ids(extension=ext), [c2.id])

    def test_hangup_by_view_extension(self):
        call = self.create()
        dest = view_of(call, "01").extension
        self.assertEqual(self.hangup(extension=dest), [call.id])

    def test_hangup_nothing_is_ok(self):
        self.assertEqual(self.hangup(extension=fresh_ext()), [])

    def test_hangup_leaves_other_users_calls(self):
        user, ext = fresh_user(), fresh_ext()
        theirs = self.create(ext=ext, user_id=user)
        mine = self.create(ext=ext)
        self.assertEqual(self.hangup(extension=ext), [mine.id])
        self.assertEqual(self.get(theirs, user=user), theirs)
        self.assertEqual(self.hangup(user_id=user, extension="@self"), [theirs.id])


class ActionTests(Base):

    def assert_returned_is_current(self, returned):
        self.assertEqual(self.get(returned), returned)

    def test_on_hold_and_off_hold(self):
        call = self.create()
        t0 = time.time()
        held, rpc_call = self.rpc_with_call(
            "OnHold", extension=call.extension, phone_call_id=call.id,
            phone_call_view_id="01")
        self.assert_backend(rpc_call)
        self.assert_now(view_of(held, "01").on_hold, t0)
        self.assertEqual(view_of(held, "01").holder.value, 1)
        self.assertEqual(view_of(held, "00"), view_of(call, "00"))
        self.assert_returned_is_current(held)
        released = self.act("OffHold", call, "01")
        self.assertEqual(released, call)
        self.assert_returned_is_current(released)

    def test_recording(self):
        call = self.create()
        for fmt in ("wav49", "wav", ""):
            with self.subTest(format=fmt):
                t0 = time.time()
                rec = self.act("StartRecording", call, "00", format=fmt)
                self.assert_now(view_of(rec, "00").recording, t0)
                self.assertFalse(view_of(rec, "01").HasField("recording"))
                self.assert_returned_is_current(rec)
                stopped = self.act("StopRecording", call, "00")
                self.assertEqual(stopped, call)

    def test_park_and_unpark(self):
        user = fresh_user()
        c1, c2, c3 = (self.create(user_id=user) for _ in range(3))
        t0 = time.time()
        p1 = self.act("Park", c1, "01", user=user, max_in_parking=600)
        v = view_of(p1, "01")
        self.assert_now(v.parked, t0)
        self.assertEqual((v.parked_pos.value, v.parked_by), (1, c1.extension))
        self.assertEqual(view_of(p1, "00"), view_of(c1, "00"))
        self.assertEqual(self.get(p1, user=user), p1)
        # "@self": parked_by is the leg's own extension.
        p2 = self.rpc("Park", user_id=user, extension="@self", phone_call_id=c2.id,
                      phone_call_view_id="01")
        v = view_of(p2, "01")
        self.assertEqual((v.parked_pos.value, v.parked_by),
                         (2, view_of(c2, "01").extension))
        # Another user's parking lot is separate.
        other = self.create(user_id=fresh_user())
        self.assertEqual(view_of(self.act("Park", other, "00",
                                          user=other.owner_id), "00")
                         .parked_pos.value, 1)
        # UnPark frees position 1 and hands the leg to send_call_to.
        u1 = self.act("UnPark", c1, "01", user=user, send_call_to="0003*333",
                      caller_id="Valet", wait_for_pickup=20)
        v = view_of(u1, "01")
        for unset in ("parked", "parked_pos"):
            self.assertFalse(v.HasField(unset), unset)
        self.assertEqual((v.parked_by, v.extension), ("", "0003*333"))
        self.assertEqual(self.get(u1, user=user), u1)
        # The lowest free position is reused.
        p3 = self.act("Park", c3, "00", user=user)
        self.assertEqual(view_of(p3, "00").parked_pos.value, 1)

    def test_park_runs_out(self):
        user, ext = fresh_user(), fresh_ext()
        stream = self.watch(user_id=user, extension=ext)
        stream.wait_ready(lambda: self.create(ext=ext, user_id=user))
        call = self.create(ext=ext, user_id=user)
        stream.expect(Event.CREATED, call.id)
        t0 = time.monotonic()
        self.act("Park", call, "01", user=user, max_in_parking=10)
        stream.expect(Event.UPDATED, call.id)
        event = stream.expect(Event.UPDATED, call.id, timeout=10 + 10 * SLOW)
        self.assertGreaterEqual(time.monotonic() - t0, 9.5)
        v = view_of(event.phone_call, "01")
        self.assertFalse(v.HasField("parked"))
        self.assertFalse(v.HasField("parked_pos"))
        self.assertEqual(self.get(call, user=user), event.phone_call)

    def test_pick_up_answered_leg(self):
        call = self.create()
        picked = self.act("PickUp", call, "01", send_call_to="0003*444",
                          caller_id="Desk", wait_for_pickup=10)
        v = view_of(picked, "01")
        self.assertEqual((v.extension, v.status), ("0003*444", View.STATUS_ON_CALL))
        self.assertEqual(v.answered, view_of(call, "01").answered)
        self.assertFalse(v.HasField("ringing"))
        self.assertEqual(picked.answered, call.answered)
        self.assert_returned_is_current(picked)

    def test_barge_in_whisper_monitor_add_views(self):
        call = self.create()
        steps = [("BargeIn", "01", "0003*301", {}),
                 ("Whisper", "00", "0003*302", {"private": True}),
                 ("Monitor", "01", "0003*303", {"wait_for_pickup": 15})]
        for n, (method, leg, to, extra) in enumerate(steps):
            with self.subTest(method=method):
                t0 = time.time()
                got = self.act(method, call, leg, send_call_to=to,
                               caller_id="Boss <%d>" % n, **extra)
                self.assertEqual([v.id for v in got.phone_call_views],
                                 ["00", "01", "02", "03", "04"][:3 + n])
                new = got.phone_call_views[-1]
                self.assertEqual(new.extension, to)
                self.assertEqual(list(new.source), [to])
                self.assertEqual(list(new.destination),
                                 [view_of(call, leg).extension])
                self.assertEqual((new.flow, new.status, new.caller_id),
                                 (View.FLOW_LOCAL, View.STATUS_ON_CALL,
                                  "Boss <%d>" % n))
                self.assert_now(new.answered, t0)
                self.assertEqual(got.phone_call_views[:2], call.phone_call_views[:2])
                self.assert_returned_is_current(got)

    def test_transfer_named_view_clears_hold(self):
        for method in TRANSFERS:
            with self.subTest(method=method):
                call = self.create()
                self.act("OnHold", call, "01")
                got = self.act(method, call, "01", send_call_to="0003*400",
                               transfer_from_number=call.extension,
                               transfer_number=view_of(call, "01").extension)
                v = view_of(got, "01")
                self.assertEqual((list(v.destination), v.extension),
                                 (["0003*400"], "0003*400"))
                self.assertFalse(v.HasField("on_hold"))
                self.assertFalse(v.HasField("holder"))
                self.assertEqual(view_of(got, "00"), view_of(call, "00"))
                self.assert_returned_is_current(got)

    def test_transfer_without_view(self):
        for method in TRANSFERS:
            with self.subTest(method=method, by="transfer_number"):
                call = self.create()
                got = self.act(method, call, None, send_call_to="4242425",
                               transfer_number=call.extension)
                v = view_of(got, "00")
                self.assertEqual((list(v.destination), v.extension),
                                 (["4242425"], "4242425"))
                self.assertEqual(view_of(got, "01"), view_of(call, "01"))
            with self.subTest(method=method, by="default"):
                call = self.create()
                got = self.act(method, call, None, send_call_to="0003*401")
                self.assertEqual(view_of(got, "01").extension, "0003*401")
                self.assertEqual(view_of(got, "00"), view_of(call, "00"))


class ErrorTests(Base):
    """The native engine's error rows: every one with its status code,
    uapi-error-code trailer and status details."""

    def setUp(self):
        super().setUp()
        self.call = self.create()
        self.addr = dict(extension=self.call.extension, phone_call_id=self.call.id)

    def check(self, method, code, uapi_code, **fields):
        fields = for_method(method, **fields)
        with self.subTest(method=method, **{k: (v if len(repr(v)) < 80 else "...")
                                            for k, v in fields.items()}):
            self.rpc_error(method, code, uapi_code, **fields)

    def test_user_invalid(self):
        for user in ("bad-user", "a" * 65, "@nobody", "1 2", "ü"):
            self.check("GetPhoneCall", Code.INVALID_ARGUMENT, "user_invalid",
                       user_id=user, **self.addr)
            self.check("ListPhoneCalls", Code.INVALID_ARGUMENT, "user_invalid",
                       user_id=user, extension=self.call.extension)
            self.check("HangupPhoneCalls", Code.INVALID_ARGUMENT, "user_invalid",
                       user_id=user, extension=self.call.extension)
            self.check("OnHold", Code.INVALID_ARGUMENT, "user_invalid",
                       user_id=user, phone_call_view_id="00", **self.addr)
            self.check("WatchPhoneCalls", Code.INVALID_ARGUMENT, "user_invalid",
                       user_id=user)
            for method in CREATES:
                self.check(method, Code.INVALID_ARGUMENT, "user_invalid",
                           user_id=user, extension="210", source=["210"],
                           destination=["211"])

    def test_extension_invalid(self):
        for ext in ("", "abc", "***", "1" * 33, "12a", "@me", "21 0"):
            self.check("GetPhoneCall", Code.INVALID_ARGUMENT, "extension_invalid",
                       extension=ext, phone_call_id=self.call.id)
            if ext:
                self.check("WatchPhoneCalls", Code.INVALID_ARGUMENT,
                           "extension_invalid", extension=ext)
            self.check("ListPhoneCalls", Code.INVALID_ARGUMENT,
                       "extension_invalid", extension=ext)
            self.check("HangupPhoneCalls", Code.INVALID_ARGUMENT,
                       "extension_invalid", extension=ext)
            self.check("Park", Code.INVALID_ARGUMENT, "extension_invalid",
                       extension=ext, phone_call_id=self.call.id,
                       phone_call_view_id="00")
        for method in CREATES:
            for ext in ("@self", "", "x1"):
                self.check(method, Code.INVALID_ARGUMENT, "extension_invalid",
                           extension=ext, source=["210"], destination=["211"])

    def test_phone_call_id_invalid(self):
        ext = self.call.extension
        for bad in ("", "abc-123", "a" * 65, "ü", "a b", "../x"):
            self.check("GetPhoneCall", Code.INVALID_ARGUMENT,
                       "pc_phoncall_invalid", extension=ext, phone_call_id=bad)
            for method in ACTIONS_WITH_VIEW + TRANSFERS:
                self.check(method, Code.INVALID_ARGUMENT, "pc_phoncall_invalid",
                           extension=ext, phone_call_id=bad,
                           phone_call_view_id="00", send_call_to="210")
            if bad:
                self.check("ListPhoneCalls", Code.INVALID_ARGUMENT,
                           "pc_phoncall_invalid", extension=ext, phone_call_id=bad)
                self.check("HangupPhoneCalls", Code.INVALID_ARGUMENT,
                           "pc_phoncall_invalid", extension=ext,
                           phone_call_id=bad)

    def test_phone_call_not_found(self):
        ext = self.call.extension
        # Unknown id; a 64-character id is still well-formed.
        for unknown in (UNKNOWN_ID, "Z" * 64):
            self.check("GetPhoneCall", Code.NOT_FOUND, "pc_phoncall_invalid",
                       extension=ext, phone_call_id=unknown)
            self.check("HangupPhoneCalls", Code.NOT_FOUND, "pc_phoncall_invalid",
                       extension=ext, phone_call_id=unknown)
            for method in ACTIONS_WITH_VIEW + TRANSFERS:
                self.check(method, Code.NOT_FOUND, "pc_phoncall_invalid",
                           extension=ext, phone_call_id=unknown,
                           phone_call_view_id="00", send_call_to="210")
        # A call that exists, but not on that extension.
        self.check("GetPhoneCall", Code.NOT_FOUND, "pc_phoncall_invalid",
                   extension=fresh_ext(), phone_call_id=self.call.id)
        self.check("OnHold", Code.NOT_FOUND, "pc_phoncall_invalid",
                   extension=fresh_ext(), phone_call_id=self.call.id,
                   phone_call_view_id="00")
        self.check("HangupPhoneCalls", Code.NOT_FOUND, "pc_phoncall_invalid",
                   extension=fresh_ext(), phone_call_id=self.call.id)

    def test_other_users_call_is_not_found(self):
        other = fresh_user()
        for user, call in ((other, self.call),
                           ("", self.create(user_id=other))):
            for ext in (call.extension, "@self"):
                self.check("GetPhoneCall", Code.NOT_FOUND, "pc_phoncall_invalid",
                           user_id=user, extension=ext, phone_call_id=call.id)
                self.check("OnHold", Code.NOT_FOUND, "pc_phoncall_invalid",
                           user_id=user, extension=ext, phone_call_id=call.id,
                           phone_call_view_id="00")
                self.check("HangupPhoneCalls", Code.NOT_FOUND,
                           "pc_phoncall_invalid", user_id=user, extension=ext,
                           phone_call_id=call.id)
                self.check("Transfer", Code.NOT_FOUND, "pc_phoncall_invalid",
                           user_id=user, extension=ext, phone_call_id=call.id,
                           send_call_to="210")
        # Neither call was touched.
        self.assertEqual(self.get(self.call), self.call)

    def test_phone_call_view_id_invalid(self):
        for method in ACTIONS_WITH_VIEW:
            for view in ("", "0", "000", "ab", "0a", " 0"):
                self.check(method, Code.INVALID_ARGUMENT,
                           "pc_phoncallview_invalid", phone_call_view_id=view,
                           send_call_to="210", **self.addr)
        for method in TRANSFERS:
            self.check(method, Code.INVALID_ARGUMENT, "pc_phoncallview_invalid",
                       phone_call_view_id="x", send_call_to="210", **self.addr)

    def test_phone_call_view_not_found(self):
        for method in ACTIONS_WITH_VIEW + TRANSFERS:
            for view in ("02", "99"):
                self.check(method, Code.NOT_FOUND, "pc_phoncallview_invalid",
                           phone_call_view_id=view, send_call_to="210",
                           **self.addr)

    def test_validation_order(self):
        ext, cid = self.call.extension, self.call.id
        self.check("GetPhoneCall", Code.INVALID_ARGUMENT, "user_invalid",
                   user_id="b-d", extension="x", phone_call_id="!")
        self.check("GetPhoneCall", Code.INVALID_ARGUMENT, "extension_invalid",
                   extension="x", phone_call_id="!")
        self.check("OnHold", Code.INVALID_ARGUMENT, "pc_phoncall_invalid",
                   extension=ext, phone_call_id="!", phone_call_view_id="x")
        # Every form before any lookup, as in front of UAPI.
        self.check("OnHold", Code.INVALID_ARGUMENT, "pc_phoncallview_invalid",
                   extension=ext, phone_call_id=UNKNOWN_ID,
                   phone_call_view_id="x")
        self.check("OnHold", Code.NOT_FOUND, "pc_phoncall_invalid",
                   extension=ext, phone_call_id=UNKNOWN_ID,
                   phone_call_view_id="01")
        self.check("OnHold", Code.INVALID_ARGUMENT, "pc_phoncallview_invalid",
                   extension=ext, phone_call_id=cid, phone_call_view_id="x")
        self.act("OnHold", self.call, "00")
        self.check("OnHold", Code.NOT_FOUND, "pc_phoncallview_invalid",
                   extension=ext, phone_call_id=cid, phone_call_view_id="07")
        self.check("OnHold", Code.FAILED_PRECONDITION,
                   "pc_phonecall_state_invalid", extension=ext,
                   phone_call_id=cid, phone_call_view_id="00")

    def test_state_invalid(self):
        st = (Code.FAILED_PRECONDITION, "pc_phonecall_state_invalid")
        for view in ("00", "01"):
            a = dict(phone_call_view_id=view, **self.addr)
            self.check("OffHold", *st, **a)
            self.check("StopRecording", *st, **a)
            self.check("UnPark", *st, send_call_to="210", **a)
            self.act("OnHold", self.call, view)
            self.check("OnHold", *st, **a)
            self.act("StartRecording", self.call, view)
            self.check("StartRecording", *st, format="wav", **a)
            self.act("Park", self.call, view)
            self.check("Park", *st, **a)
        # The failed actions changed nothing.
        got = self.get(self.call)
        for view in ("00", "01"):
            v = view_of(got, view)
            for field in ("on_hold", "recording", "parked"):
                self.assertTrue(v.HasField(field), field)

    def test_at_most_eight_views(self):
        for n in range(6):
            self.act("BargeIn", self.call, "00", send_call_to="0003*6%02d" % n)
        self.assertEqual(len(self.get(self.call).phone_call_views), 8)
        for method in ("BargeIn", "Whisper", "Monitor"):
            self.check(method, Code.FAILED_PRECONDITION,
                       "pc_phonecall_state_invalid", phone_call_view_id="00",
                       send_call_to="0003*699", **self.addr)

    def test_create_numbers_invalid(self):
        ext = fresh_ext()
        bad_lists = [[], ["abc"], ["1" * 33], [""], ["21 0"],
                     ["%d" % (200 + i) for i in range(9)]]
        for method in CREATES:
            for bad in bad_lists:
                self.check(method, Code.INVALID_ARGUMENT, "pc_source_invalid",
                           extension=ext, source=bad, destination=["211"])
                self.check(method, Code.INVALID_ARGUMENT,
                           "pc_destination_invalid", extension=ext,
                           source=["210"], destination=bad)
        # The limits themselves are fine.
        eight = ["+40%d#" % (200 + i) for i in range(8)]
        call = self.create(source=eight, destination=["1" * 32] + eight[:7])
        self.assertEqual(list(call.phone_call_views[0].source), eight)

    def test_action_fields_invalid(self):
        self.check("StartRecording", Code.INVALID_ARGUMENT, "pc_format_invalid",
                   phone_call_view_id="00", format="mp3", **self.addr)
        for seconds in (9, 3601, 0, -1):
            self.check("Park", Code.INVALID_ARGUMENT, "pc_maxinparking_invalid",
                       phone_call_view_id="00", max_in_parking=seconds,
                       **self.addr)
        self.act("Park", self.call, "01", max_in_parking=3600)
        for method in NEEDS_SEND_CALL_TO:
            view = "01" if method == "UnPark" else "00"
            for to in ("", "abc", "1" * 33, "#1"):
                self.check(method, Code.INVALID_ARGUMENT, "pc_sendcallto_invalid",
                           phone_call_view_id=view, send_call_to=to, **self.addr)
        # None of them changed the call.
        self.assertEqual(len(self.get(self.call).phone_call_views), 2)

    def test_list_parameters_invalid(self):
        ext = self.call.extension
        rows = [
            ("count_invalid", dict(count=0)),
            ("count_invalid", dict(count=5001)),
            ("count_invalid", dict(count=-1)),
            ("startindex_invalid", dict(start_index=-1)),
            ("startindex_invalid", dict(start_index=5001)),
            ("filterby_invalid", dict(filter_by="extension", filter_op="equals",
                                      filter_value="1")),
            ("filterby_invalid", dict(filter_op="equals", filter_value="1")),
            ("filterop_invalid", dict(filter_by="id", filter_op="like",
                                      filter_value="1")),
            ("filterop_invalid", dict(filter_by="id", filter_value="1")),
            ("filtervalue_invalid", dict(filter_by="id", filter_op="equals")),
            ("filtervalue_invalid", dict(filter_by="published",
                                         filter_op="greaterThan",
                                         filter_value="yesterday")),
            ("filtervalue_invalid", dict(filter_by="published",
                                         filter_op="lessThan",
                                         filter_value="2024-13-01T00:00:00Z")),
            ("sortorder_invalid", dict(sort_order="up")),
            ("fields_invalid", dict(fields=["bogus"])),
            ("fields_invalid", dict(fields=["id", "phone_call_views"])),
        ]
        for uapi_code, fields in rows:
            self.check("ListPhoneCalls", Code.INVALID_ARGUMENT, uapi_code,
                       extension=ext, **fields)
        # The limits themselves are fine.
        resp = self.rpc("ListPhoneCalls", extension=ext, count=5000,
                        start_index=5000)
        self.assertEqual((resp.total_results, resp.items_per_page,
                          resp.start_index, len(resp.phone_calls)),
                         (1, 5000, 5000, 0))


class RingDelayTests(Base):
    """Calls that ring: a sidecar with a ring delay longer than the tests,
    and one with a short delay whose answer is observed."""

    @classmethod
    def setUpClass(cls):
        cls.sidecar = Sidecar("--ring-delay", "60000").start()
        cls.addClassCleanup(cls.sidecar.stop_checked)
        cls.short = Sidecar("--ring-delay", "300").start()
        cls.addClassCleanup(cls.short.stop_checked)

    def test_ringing_call(self):
        t0 = time.time()
        call = self.create()
        self.assertFalse(call.HasField("answered"))
        v0, v1 = call.phone_call_views
        self.assertEqual((v0.status, v1.status),
                         (View.STATUS_OTHER_SIDE_RINGING, View.STATUS_RINGING))
        for v in (v0, v1):
            self.assert_now(v.ringing, t0)
            self.assertFalse(v.HasField("answered"))

    def test_pick_up_answers_ringing_call(self):
        call = self.create()
        t0 = time.time()
        got = self.act("PickUp", call, "01", send_call_to="0003*555")
        v = view_of(got, "01")
        self.assertEqual((v.extension, v.status), ("0003*555", View.STATUS_ON_CALL))
        self.assert_now(v.answered, t0)
        self.assertFalse(v.HasField("ringing"))
        self.assert_now(got.answered, t0)
        self.assertEqual(self.get(got), got)

    def test_listening_in_needs_an_answered_call(self):
        call = self.create()
        for method in ("BargeIn", "Whisper", "Monitor"):
            with self.subTest(method=method):
                self.rpc_error(method, Code.FAILED_PRECONDITION,
                               "pc_phonecall_state_invalid",
                               extension=call.extension, phone_call_id=call.id,
                               phone_call_view_id="00", send_call_to="0003*556")
        self.assertEqual(self.get(call), call)

    def test_ring_delay_ends_with_an_answer(self):
        with grpc.insecure_channel(self.short.address) as channel:
            stub = pb2_grpc.PhoneCallServiceStub(channel)
            ext = fresh_ext()
            stream = WatchStream(stub, extension=ext)
            self.addCleanup(stream.cancel)

            def create():
                resp = stub.CreateSimplePhoneCall(
                    request("CreateSimplePhoneCall", extension=ext,
                            source=[ext], destination=["0003*557"]),
                    timeout=RPC_TIMEOUT)
                return resp.phone_calls[0]

            stream.wait_ready(create)
            t0 = time.monotonic()
            call = create()
            self.assertEqual(view_of(call, "01").status, View.STATUS_RINGING)
            # The probes' own answers may come in between: skip them.
            self.assertEqual(stream.skip_to(call.id).type, Event.CREATED)
            event = stream.skip_to(call.id)
            self.assertEqual(event.type, Event.UPDATED)
            self.assertGreaterEqual(time.monotonic() - t0, 0.25)
            answered = event.phone_call
            self.assertTrue(answered.HasField("answered"))
            for v in answered.phone_call_views:
                self.assertEqual(v.status, View.STATUS_ON_CALL)
                self.assertTrue(v.HasField("answered"))
                self.assertFalse(v.HasField("ringing"))


class MaxCallsTests(Base):

    @classmethod
    def setUpClass(cls):
        cls.sidecar = Sidecar("--max-calls", "3").start()
        cls.addClassCleanup(cls.sidecar.stop_checked)

    def test_engine_full(self):
        ext = fresh_ext()
        calls = [self.create(ext=ext, method=m) for m in CREATES]
        for method in CREATES:
            with self.subTest(method=method):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.create(ext=ext, method=method)
                self.assert_status(cm.exception, Code.RESOURCE_EXHAUSTED, None)
        self.assertEqual(self.list_ids(extension=ext), [c.id for c in calls])
        self.rpc("HangupPhoneCalls", extension=ext, phone_call_id=calls[0].id)
        self.create(ext=ext)
        with self.assertRaises(grpc.RpcError) as cm:
            self.create(ext=ext)
        self.assert_status(cm.exception, Code.RESOURCE_EXHAUSTED, None)


class TransportTests(Base):
    """gRPC behaviour around the service: deadlines, cancellation, limits,
    unknown methods, garbage, concurrency."""

    def raw_unary(self, path, payload, timeout=RPC_TIMEOUT):
        method = self.channel.unary_unary(path, request_serializer=identity,
                                          response_deserializer=identity)
        return method(payload, timeout=timeout)

    def assert_still_serving(self):
        call = self.create()
        self.assertEqual(self.get(call), call)

    def test_deadline_exceeded(self):
        stream = self.watch(timeout=0.5, extension=fresh_ext())
        t0 = time.monotonic()
        err = stream.next(timeout=5 * SLOW)
        elapsed = time.monotonic() - t0
        self.assertIsInstance(err, grpc.RpcError)
        self.assertEqual(err.code(), Code.DEADLINE_EXCEEDED)
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 2.0 * SLOW)
        self.assert_still_serving()

    def test_cancelled_watch(self):
        ext = fresh_ext()
        streams = [self.watch(extension=ext) for _ in range(20)]
        for stream in streams:
            stream.wait_ready(lambda: self.create(ext=ext))
        keeper = streams.pop()
        for stream in streams:
            stream.cancel()
            end = stream.final()
            self.assertIsInstance(end, grpc.RpcError, "stream ended OK")
            self.assertEqual(end.code(), Code.CANCELLED)
        # The server serves on, and the remaining watcher still hears.
        call = self.create(ext=ext)
        self.assertEqual(keeper.expect(Event.CREATED, call.id).phone_call, call)
        self.assert_still_serving()

    def test_request_over_default_limit(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.create(nonce="n" * (4 * 1024 * 1024 + 1024))
        self.assert_status(cm.exception, Code.RESOURCE_EXHAUSTED, None)
        self.assert_still_serving()

    def test_request_under_default_limit(self):
        nonce = "n" * (3 * 1024 * 1024)
        call = self.create(nonce=nonce)
        self.assertEqual(call.nonce, nonce)
        self.rpc("HangupPhoneCalls", extension=call.extension,
                 phone_call_id=call.id)

    def test_request_over_configured_limit(self):
        small = Sidecar("--max-recv-message-size", "1024").start()
        self.addCleanup(small.kill)
        with grpc.insecure_channel(small.address) as channel:
            stub = pb2_grpc.PhoneCallServiceStub(channel)

            def create(nonce):
                return stub.CreateSimplePhoneCall(request(
                    "CreateSimplePhoneCall", extension="210", source=["210"],
                    destination=["211"], nonce=nonce), timeout=RPC_TIMEOUT)

            self.assertEqual(create("n" * 900).phone_calls[0].nonce, "n" * 900)
            with self.assertRaises(grpc.RpcError) as cm:
                create("n" * 2000)
            self.assert_status(cm.exception, Code.RESOURCE_EXHAUSTED, None)
            self.assertEqual(len(create("ok").phone_calls), 1)
        small.stop_checked(self)

    def test_unknown_method_and_service(self):
        for path in ("/uapi.phonecalls.v1.PhoneCallService/NoSuchMethod",
                     "/uapi.phonecalls.v1.NoSuchService/GetPhoneCall",
                     "/no.such.Service/Method",
                     "/uapi.phonecalls.v1.PhoneCallService/getPhoneCall"):
            with self.subTest(path=path):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.raw_unary(path, b"")
                self.assert_status(cm.exception, Code.UNIMPLEMENTED, None)
        self.assert_still_serving()

    def test_garbage_request_bytes(self):
        for method in ("GetPhoneCall", "CreateSimplePhoneCall", "OnHold"):
            with self.subTest(method=method):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.raw_unary("/%s/%s" % (common.SERVICE, method),
                                   b"\xff\xff\xff\xff")
                self.assert_status(cm.exception, Code.INTERNAL, None)
        self.assert_still_serving()

    def test_150_concurrent_calls(self):
        ext = fresh_ext()
        n = 150
        creates = [self.stub.CreateSimplePhoneCall.future(
            request("CreateSimplePhoneCall", extension=ext, source=[ext],
                    destination=["0003*%d" % i], nonce="c%d" % i),
            timeout=RPC_TIMEOUT * 3) for i in range(n)]
        calls = [f.result().phone_calls[0] for f in creates]
        for i, call in enumerate(calls):
            self.assertEqual((call.nonce, list(call.phone_call_views[1].destination)),
                             ("c%d" % i, ["0003*%d" % i]))
        self.assertEqual(len({c.id for c in calls}), n)
        gets = [self.stub.GetPhoneCall.future(
            request("GetPhoneCall", extension=ext, phone_call_id=c.id),
            timeout=RPC_TIMEOUT * 3) for c in calls]
        errors = [self.stub.GetPhoneCall.future(
            request("GetPhoneCall", extension=ext, phone_call_id="bad!%d" % i),
            timeout=RPC_TIMEOUT * 3) for i in range(n // 3)]
        self.assertEqual([f.result() for f in gets], calls)
        for f in errors:
            self.assertEqual(f.code(), Code.INVALID_ARGUMENT)
            self.assertEqual(metadata_values(f.trailing_metadata(),
                                             "uapi-error-code"),
                             ["pc_phoncall_invalid"])
        resp = self.rpc("ListPhoneCalls", extension=ext, count=5000)
        self.assertEqual(resp.total_results, n)
        self.assertEqual({c.id for c in resp.phone_calls}, {c.id for c in calls})

    def test_concurrent_calls_from_many_channels(self):
        ext = fresh_ext()
        channels = [grpc.insecure_channel(self.server().address) for _ in range(10)]
        try:
            with futures.ThreadPoolExecutor(10) as pool:
                def work(i):
                    stub = pb2_grpc.PhoneCallServiceStub(channels[i])
                    out = []
                    for j in range(10):
                        out.append(stub.CreateSimplePhoneCall(request(
                            "CreateSimplePhoneCall", extension=ext, source=[ext],
                            destination=["210"], nonce="%d.%d" % (i, j)),
                            timeout=RPC_TIMEOUT).phone_calls[0].nonce)
                    return out
                results = list(pool.map(work, range(10)))
        finally:
            for channel in channels:
                channel.close()
        self.assertEqual(results, [["%d.%d" % (i, j) for j in range(10)]
                                   for i in range(10)])
        self.assertEqual(self.rpc("ListPhoneCalls", extension=ext).total_results,
                         100)


class WatchTests(Base):

    def other_stub(self):
        channel = grpc.insecure_channel(self.server().address)
        self.addCleanup(channel.close)
        return pb2_grpc.PhoneCallServiceStub(channel)

    def test_created_updated_ended(self):
        ext = fresh_ext()
        stream = self.watch(extension=ext)
        stream.wait_ready(lambda: self.create(ext=ext))
        # Changes are made from another channel, each once the event of
        # the one before came (a polling backend sees states, not steps).
        self.stub = self.other_stub()
        t0 = time.time()
        call = self.create(ext=ext, nonce="watched")
        created = stream.expect(Event.CREATED, call.id)
        self.assertEqual(created.phone_call, call)
        self.assert_now(created.time, t0)
        held = self.act("OnHold", call, "00")
        self.assertEqual(stream.expect(Event.UPDATED, call.id).phone_call, held)
        rec = self.act("StartRecording", call, "01")
        self.assertEqual(stream.expect(Event.UPDATED, call.id).phone_call, rec)
        self.rpc("HangupPhoneCalls", extension=ext, phone_call_id=call.id)
        ended = stream.expect(Event.ENDED, call.id)
        self.assertEqual(ended.phone_call, rec)
        self.assert_now(ended.time, t0)
        self.assert_backend(stream.call)
        stream.assert_quiet()

    def test_extension_filter(self):
        ext, other_ext = fresh_ext(), fresh_ext()
        stream = self.watch(extension=ext)
        stream.wait_ready(lambda: self.create(ext=ext))
        # Not watched: if these leaked, they would come first.
        elsewhere = self.create(ext=other_ext)
        self.act("OnHold", elsewhere, "00")
        # A call is watched when the extension is one of its views' too.
        incoming = self.create(ext=other_ext, dest=ext)
        stream.expect(Event.CREATED, incoming.id)
        self.rpc("HangupPhoneCalls", extension=other_ext)
        stream.expect(Event.ENDED, incoming.id)
        mine = self.create(ext=ext)
        stream.expect(Event.CREATED, mine.id)
        stream.assert_quiet()

    def test_all_extensions(self):
        for ext_filter in ("", "@self"):
            with self.subTest(extension=ext_filter):
                user = fresh_user()
                stream = self.watch(user_id=user, extension=ext_filter)
                stream.wait_ready(lambda: self.create(user_id=user))
                a = self.create(user_id=user)
                stream.expect(Event.CREATED, a.id)
                b = self.create(user_id=user)
                stream.expect(Event.CREATED, b.id)

    def test_other_users_calls_are_not_watched(self):
        ext, user = fresh_ext(), fresh_user()
        mine = self.watch(extension=ext)
        mine.wait_ready(lambda: self.create(ext=ext))
        theirs = self.watch(user_id=user, extension=ext)
        theirs.wait_ready(lambda: self.create(ext=ext, user_id=user))
        # Their call first: had it leaked into `mine`, it would come there
        # before my call's event.
        their_call = self.create(ext=ext, user_id=user)
        theirs.expect(Event.CREATED, their_call.id)
        my_call = self.create(ext=ext)
        mine.expect(Event.CREATED, my_call.id)
        mine.assert_quiet()
        theirs.assert_quiet()

    def test_many_watchers_see_the_same_events(self):
        ext = fresh_ext()
        streams = [self.watch(extension=ext) for _ in range(10)]
        for stream in streams:
            stream.wait_ready(lambda: self.create(ext=ext))
        marker = self.create(ext=ext)
        for stream in streams:
            stream.skip_to(marker.id)
        call = self.create(ext=ext)
        for stream in streams:
            stream.expect(Event.CREATED, call.id)
        self.act("Park", call, "00")
        for stream in streams:
            stream.expect(Event.UPDATED, call.id)
        self.rpc("HangupPhoneCalls", extension=ext, phone_call_id=call.id)
        for stream in streams:
            stream.expect(Event.ENDED, call.id)

    def test_every_change_is_an_event_natively(self):
        """The native engine emits an event per change, however quick the
        changes; a polling backend (pair mode) only sees the states its
        polls find, so there this test is skipped."""
        if common.EXPECT_BACKEND != "native":
            self.skipTest("a polling backend sees states, not every change")
        ext = fresh_ext()
        stream = self.watch(extension=ext)
        stream.wait_ready(lambda: self.create(ext=ext))
        call = self.create(ext=ext)
        self.act("Park", call, "00")
        self.act("OnHold", call, "01")
        self.rpc("HangupPhoneCalls", extension=ext, phone_call_id=call.id)
        for etype in (Event.CREATED, Event.UPDATED, Event.UPDATED, Event.ENDED):
            stream.expect(etype, call.id)
        stream.assert_quiet()


class LifecycleTests(unittest.TestCase):
    """Sidecars of their own: signals and log format."""

    def start(self, *flags):
        sidecar = Sidecar(*flags).start()
        self.addCleanup(sidecar.kill)
        channel = grpc.insecure_channel(sidecar.address)
        self.addCleanup(channel.close)
        return sidecar, pb2_grpc.PhoneCallServiceStub(channel)

    def test_sigterm_ends_watch_with_ok_and_exits_0(self):
        sidecar, stub = self.start()
        ext = fresh_ext()

        def create():
            return stub.CreateSimplePhoneCall(request(
                "CreateSimplePhoneCall", extension=ext, source=[ext],
                destination=["210"]), timeout=RPC_TIMEOUT).phone_calls[0]

        stream = WatchStream(stub, extension=ext)
        self.addCleanup(stream.cancel)
        stream.wait_ready(create)
        os.kill(sidecar.proc.pid, signal.SIGTERM)
        end = stream.next(timeout=common.STOP_TIMEOUT)
        self.assertIs(end, WatchStream.END,
                      "stream ended with %r" % (end,))
        self.assertEqual(stream.call.code(), Code.OK)
        self.assertEqual(sidecar.wait_exit(), 0, sidecar.log_tail())

    def test_sigint_exits_0(self):
        sidecar, stub = self.start()
        stub.ListPhoneCalls(request("ListPhoneCalls", extension="210"),
                            timeout=RPC_TIMEOUT)
        self.assertEqual(sidecar.stop(signal.SIGINT), 0, sidecar.log_tail())

    def test_json_log_lines(self):
        sidecar, stub = self.start("--log-format", "json")
        stub.ListPhoneCalls(request("ListPhoneCalls", extension="210"),
                            timeout=RPC_TIMEOUT)
        sidecar.stop_checked(self)
        records = []
        for line in sidecar.lines:
            if line.startswith("==") or not line.strip():
                continue  # valgrind's own lines
            try:
                records.append(json.loads(line))
            except ValueError:
                self.fail("not a JSON log line: %r" % line)
        self.assertTrue(all(isinstance(r, dict) for r in records))
        self.assertTrue(any("/%s/ListPhoneCalls" % common.SERVICE in json.dumps(r)
                            for r in records), records)


if __name__ == "__main__":
    common.main(__name__)
