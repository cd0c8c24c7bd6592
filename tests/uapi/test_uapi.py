#!/usr/bin/python3
"""UAPI translation-backend suite: uapi-sidecar with --backend uapi (and
auto) in front of a stand-in UAPI server (standin.py), plus the REST facade.

Run: /usr/bin/python3 tests/uapi/test_uapi.py [Class[.test] ...]
(or tests/uapi/run.sh [BINARY]). The sidecar binary is $USC_SIDECAR_BINARY
(default bazel-bin/src/uapi-sidecar); $USC_SIDECAR_WRAPPER is put in front
of its command line (e.g. valgrind). Sidecars and stand-ins listen on
127.0.0.1 only and are stopped at the end.

What is checked (api-contract.md §2-§4, uapi-phonecalls.md, the seed):
- every RPC becomes the exact UAPI request (method, path, query, headers,
  JSON body), and initial metadata says x-uapi-backend: uapi;
- every UAPI answer shape maps back, the seed's 202 + link exchange and a
  204 update are followed by a GET on the configured upstream;
- upstream errors and faults map to the documented statuses, with the UAPI
  code and message passed through, and leave the sidecar serving;
- hostile addresses never reach the upstream;
- credentials: forwarded, static token file (re-read), OAuth2 client
  credentials (refresh on 401), never logged;
- --backend auto: native fallback, breaker, mirror of upstream calls;
- WatchPhoneCalls by polling, shared between watchers;
- the REST facade (--rest-listen) serving the native engine as UAPI;
- access control (--tokens-file) in front of UAPI.
"""

import datetime
import http.client
import json
import os
import queue
import re
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop", "python"))
sys.path.insert(0, HERE)

import grpc  # noqa: E402
from google.protobuf import timestamp_pb2, wrappers_pb2  # noqa: E402

import common  # noqa: E402
from common import RPC_TIMEOUT, SLOW, Sidecar, metadata_values  # noqa: E402
import standin  # noqa: E402
from standin import (Answer, FakeUapi, StandIn, error_answer,  # noqa: E402
                     free_port, json_answer, text_answer)

pb2, pb2_grpc = common.load_stubs()

Code = grpc.StatusCode
View = pb2.PhoneCallView
Event = pb2.PhoneCallEvent
METHODS = pb2.DESCRIPTOR.services_by_name["PhoneCallService"].methods_by_name
ACTIONS = ["OnHold", "OffHold", "StartRecording", "StopRecording", "Park",
           "UnPark", "PickUp", "BargeIn", "Whisper", "Monitor", "Transfer",
           "TransferToVoicemail"]

CALL_ID = "b817d2618fe6f1804333"
SELF_LINK = "https://uapi.example.com/uapi/phoneCalls/12/0003*210/" + CALL_ID
ID64 = "a123456789b123456789c123456789d123456789e123456789f123456789abcd"
ID65 = ID64 + "e"

# Sidecar flags common to every sidecar of this suite: a bounded drain, and
# debug logs (so that the "no token in the logs" checks see the most).
BASE_FLAGS = ["--shutdown-grace", "2000", "--log-level", "debug"]
# Many upstream failures in a row are the point of several tests: keep a
# breaker (if the uapi backend has one) out of the way of the main sidecar.
NO_BREAKER = ["--breaker-failures", "1000"]

STANDIN = None  # the stand-in UAPI most tests share
MAIN = None  # --backend uapi in front of STANDIN, started when first needed
_MAIN_ERROR = None


def setUpModule():
    global STANDIN
    STANDIN = StandIn().start()


def main_sidecar():
    """MAIN, started at the first call; a start that failed fails every
    test that needs it (and only those)."""
    global MAIN, _MAIN_ERROR
    if MAIN is None and _MAIN_ERROR is None:
        try:
            MAIN = Sidecar("--backend", "uapi", "--uapi-url", STANDIN.url,
                           *NO_BREAKER, *BASE_FLAGS).start()
        except common.SidecarError as err:
            _MAIN_ERROR = err
    if MAIN is None:
        raise _MAIN_ERROR
    return MAIN


def tearDownModule():
    try:
        if MAIN is not None:
            MAIN.stop_checked()
    finally:
        if STANDIN is not None:
            STANDIN.stop()


# ---- helpers ---------------------------------------------------------------

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


def strict_equal(a, b):
    """JSON values equal, types included (1 is not true, 1 is not 1.0, "1"
    is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k])
                                            for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y)
                                        for x, y in zip(a, b))
    return a == b


def tstamp(text):
    """google.protobuf.Timestamp of an ISO 8601 date with Z or an offset."""
    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    seconds = int(d.timestamp() // 1)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=d.microsecond * 1000)


def full_call(call_id=CALL_ID, ext="0003*210"):
    """A PhoneCall as UAPI answers it, with every member, offsets and all."""
    return {
        "id": call_id, "extension": ext, "ownerId": "3",
        "ownerName": "Default Organization",
        "published": "2012-06-27T16:08:50+02:00",
        "answered": "2012-06-27T16:08:55+03:00",
        "nonce": "nonce-7",
        "phoneCallView": [
            {"id": "00", "extension": ext, "source": [ext],
             "destination": ["0003*024"], "flow": 2, "status": 5,
             "ringing": "2012-06-27T13:08:50Z",
             "callerId": "John Doe <3334444>",
             "answered": "2012-06-27T13:08:55Z",
             "recording": "2012-06-27T13:09:00.250Z", "disposition": 0},
            {"id": "01", "extension": "0003*024", "source": [ext],
             "destination": ["0003*024", "3334444"], "flow": 4, "status": 0,
             "parked": "2012-06-27T13:10:00-01:30", "parkedPos": 3,
             "parkedBy": ext, "onHold": "2012-06-27T13:11:00Z", "holder": 1,
             "disposition": 3},
        ],
        "links": {"self": SELF_LINK},
    }


def expected_call(call_id=CALL_ID, ext="0003*210"):
    """full_call() as the PhoneCall message it must become."""
    return pb2.PhoneCall(
        id=call_id, extension=ext, owner_id="3",
        owner_name="Default Organization",
        published=tstamp("2012-06-27T16:08:50+02:00"),
        answered=tstamp("2012-06-27T16:08:55+03:00"), nonce="nonce-7",
        self_link=SELF_LINK,
        phone_call_views=[
            View(id="00", extension=ext, source=[ext],
                 destination=["0003*024"], flow=View.FLOW_LOCAL,
                 status=View.STATUS_ON_CALL,
                 ringing=tstamp("2012-06-27T13:08:50Z"),
                 caller_id="John Doe <3334444>",
                 answered=tstamp("2012-06-27T13:08:55Z"),
                 recording=tstamp("2012-06-27T13:09:00.250Z"),
                 disposition=View.DISPOSITION_ANSWERED),
            View(id="01", extension="0003*024", source=[ext],
                 destination=["0003*024", "3334444"],
                 flow=View.FLOW_OUTGOING_PUBLIC, status=View.STATUS_UNKNOWN,
                 parked=tstamp("2012-06-27T13:10:00-01:30"),
                 parked_pos=wrappers_pb2.Int32Value(value=3), parked_by=ext,
                 on_hold=tstamp("2012-06-27T13:11:00Z"),
                 holder=wrappers_pb2.Int32Value(value=1),
                 disposition=View.DISPOSITION_NO_ANSWER),
        ])


# The seed's partial answer and its List output (with the comma the page
# lost before "link").
SEED_LINK = "https://x.x.x.x/uapi/phoneCalls/12/0003*210/" + CALL_ID
SEED_PARTIAL = ('{\n  "id": "%s",\n  "extension": "0003*210",\n'
                '  "link": { "self": "%s" }\n}' % (CALL_ID, "%s"))
SEED_CALL = """{ "id": "b817d2618fe6f1804333",
  "extension": "0003*210",
  "ownerId": "3",
  "ownerName": "Default Organization",
  "answered": "2012-06-27T16:08:55+03:00",
  "published": "2012-06-27T16:08:50+02:00",
  "phoneCallView": [
    {
      "id": "01",
      "extension": "0003*210",
      "answered": "2012-06-27T16:08:55+03:00",
      "status": "5",
      "callerId": "John Doe <3334444>",
      "source": [ "0003*024" ],
      "destination": [ "0003*210" ]
    }
  ],
  "link": { "self": "%s" }
}""" % SEED_LINK

SEED_EXPECTED = pb2.PhoneCall(
    id=CALL_ID, extension="0003*210", owner_id="3",
    owner_name="Default Organization",
    answered=tstamp("2012-06-27T16:08:55+03:00"),
    published=tstamp("2012-06-27T16:08:50+02:00"), self_link=SEED_LINK,
    phone_call_views=[View(id="01", extension="0003*210",
                           answered=tstamp("2012-06-27T16:08:55+03:00"),
                           status=View.STATUS_ON_CALL,
                           caller_id="John Doe <3334444>",
                           source=["0003*024"], destination=["0003*210"])])


def collection(*calls, **extra):
    body = {"startIndex": 0, "itemsPerPage": 20, "totalResults": len(calls),
            "entry": list(calls)}
    body.update(extra)
    return body


def raw_unary(address, method, message, metadata=(), timeout=RPC_TIMEOUT,
              grpc_timeout=None):
    """One unary call over a bare HTTP/2 connection (python3-h2); returns
    (headers, trailers) as lists of (name, value) strings, so that every
    header the sidecar sent is visible (grpcio keeps some to itself).
    grpc_timeout (seconds, default `timeout`) is the deadline sent; the
    client itself never gives up before `timeout`."""
    import h2.config
    import h2.connection
    import h2.events
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"),
            (":path", "/%s/%s" % (common.SERVICE, method)),
            (":authority", address), ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "%dm" % ((grpc_timeout or timeout) * 1000))]
            + list(metadata))
        data = message.SerializeToString()
        conn.send_data(sid, struct.pack(">BI", 0, len(data)) + data,
                       end_stream=True)
        sock.sendall(conn.data_to_send())
        blocks, ended = [], False
        deadline = time.monotonic() + timeout
        while not ended:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            for ev in conn.receive_data(chunk):
                if isinstance(ev, (h2.events.ResponseReceived,
                                   h2.events.TrailersReceived)):
                    blocks.append(list(ev.headers))
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(
                        ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded,
                                     h2.events.StreamReset)):
                    ended = True
            sock.sendall(conn.data_to_send())
        if not blocks:
            raise AssertionError("no response headers")
        return blocks[0], blocks[-1]
    finally:
        sock.close()


class WatchStream:
    """A WatchPhoneCalls stream read by a thread into a queue."""

    END = object()

    def __init__(self, stub, metadata=None, **fields):
        self.call = stub.WatchPhoneCalls(request("WatchPhoneCalls", **fields),
                                         timeout=60, metadata=metadata)
        self.events = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        try:
            for event in self.call:
                self.events.put(event)
            self.events.put(self.END)
        except grpc.RpcError as err:
            self.events.put(err)

    def next_event(self, timeout=5.0 * SLOW):
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no Watch event within %.1f s" % timeout)
        if item is self.END or isinstance(item, grpc.RpcError):
            raise AssertionError("Watch ended instead of an event: %r"
                                 % (item,))
        return item

    def cancel(self):
        self.call.cancel()
        self._thread.join(RPC_TIMEOUT)


# ---- the base class ----------------------------------------------------------

class Base(unittest.TestCase):
    """A channel and stub to the class's sidecar (MAIN by default), and the
    class's stand-in (STANDIN by default), reset before each test."""

    sidecar = None
    upstream = None
    uses_main = True  # False: the tests start sidecars of their own

    def server(self):
        return self.sidecar or main_sidecar()

    def up(self):
        return self.upstream or STANDIN

    def setUp(self):
        if self.sidecar is None and not self.uses_main:
            self.up().reset()
            return
        srv = self.server()
        if srv is None or not srv.alive():
            self.fail("the sidecar is not running (exit code %r); stderr "
                      "tail:\n%s" % (srv and srv.proc.poll(),
                                     srv and srv.log_tail()))
        self.up().reset()
        self.channel = grpc.insecure_channel(srv.address)
        self.addCleanup(self.channel.close)
        self.stub = pb2_grpc.PhoneCallServiceStub(self.channel)

    # -- calling ---------------------------------------------------------------

    def call(self, method, metadata=None, timeout=RPC_TIMEOUT, stub=None,
             **fields):
        """(response, grpc call) of a unary RPC."""
        stub = stub or self.stub
        return getattr(stub, method).with_call(
            request(method, **fields), timeout=timeout, metadata=metadata)

    def rpc(self, method, **kw):
        return self.call(method, **kw)[0]

    def rpc_uapi(self, method, **kw):
        """A successful RPC that the upstream answered."""
        resp, rpc_call = self.call(method, **kw)
        self.assert_backend(rpc_call, "uapi")
        return resp

    def rpc_error(self, method, code, uapi_code=None, message=None, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call(method, **kw)
        self.assert_error(cm.exception, code, uapi_code, message)
        return cm.exception

    def get(self, **kw):
        kw.setdefault("extension", "0003*210")
        kw.setdefault("phone_call_id", CALL_ID)
        return self.rpc_uapi("GetPhoneCall", **kw)

    def get_error(self, code, uapi_code=None, message=None, **kw):
        kw.setdefault("extension", "0003*210")
        kw.setdefault("phone_call_id", CALL_ID)
        return self.rpc_error("GetPhoneCall", code, uapi_code, message, **kw)

    # -- asserting -------------------------------------------------------------

    def assert_backend(self, rpc_call, name):
        self.assertEqual(
            metadata_values(rpc_call.initial_metadata(), "x-uapi-backend"),
            [name], "initial metadata: %r" % (rpc_call.initial_metadata(),))

    def assert_error(self, err, code, uapi_code=None, message=None):
        """Status code; the UAPI code (when given) in the uapi-error-code
        trailer and in an ErrorInfo of grpc-status-details-bin; `message`
        (when given) inside grpc-message; the details agree with the
        status."""
        self.assertIsInstance(err, grpc.RpcError)
        self.assertEqual(err.code(), code, "details: %r" % err.details())
        self.assertTrue(err.details(), "grpc-message is empty")
        if message is not None:
            self.assertIn(message, err.details())
        trailers = err.trailing_metadata() or ()
        codes = metadata_values(trailers, "uapi-error-code")
        details = metadata_values(trailers, "grpc-status-details-bin")
        if uapi_code is not None:
            self.assertEqual(codes, [uapi_code], trailers)
            self.assertEqual(len(details), 1,
                             "grpc-status-details-bin missing: %r"
                             % (trailers,))
        for d in details:
            status, infos = common.parse_status_details(d)
            self.assertEqual(status.code, code.value[0])
            self.assertEqual(status.message, err.details())
            if uapi_code is not None:
                self.assertEqual([(i.reason, i.domain) for i in infos],
                                 [(uapi_code, common.ERROR_DOMAIN)], status)
            for info in infos:
                self.assertEqual(info.domain, common.ERROR_DOMAIN)
                self.assertEqual(codes, [info.reason])

    def assert_request(self, req, method, path, query=(), body=None,
                       exact_body=None):
        """One upstream request: method, raw path, query segments (raw,
        in any order), and the JSON body (types included) or none."""
        self.assertEqual(req.method, method, req)
        self.assertEqual(req.path, path, req)
        if query:
            self.assertEqual(sorted(req.query_items()), sorted(query), req)
        else:
            self.assertFalse(req.has_query, "unexpected query: %r" % req)
        if body is None and exact_body is None:
            self.assertEqual(req.body, b"", req)
            self.assertIn(req.header("content-length"), (None, "0"), req)
            return
        self.assertEqual(req.header("transfer-encoding"), None, req)
        ctype = req.header("content-type") or ""
        self.assertEqual(ctype.split(";")[0].strip().lower(),
                         "application/json", req)
        if exact_body is not None:
            self.assertEqual(req.body.decode(), exact_body)
        else:
            got = req.json()
            self.assertTrue(strict_equal(got, body),
                            "body %s, expected %s" % (json.dumps(got),
                                                      json.dumps(body)))

    def only_request(self):
        """The one request the stand-in got (waiting briefly for it)."""
        reqs = self.up().wait_requests(1, 2.0)
        time.sleep(0.02)
        reqs = self.up().snapshot()
        self.assertEqual(len(reqs), 1, reqs)
        return reqs[0]

    def assert_still_serving(self):
        """A normal exchange still works."""
        self.up().push(json_answer(collection(full_call())))
        self.assertEqual(self.get(), expected_call())

    def assert_not_logged(self, srv, *secrets):
        time.sleep(0.05)
        with srv._cond:
            lines = list(srv.lines)
        for secret in secrets:
            leaks = [line for line in lines if secret in line]
            self.assertEqual(leaks, [], "%r appears in the sidecar's log"
                             % secret)


def start_sidecar(testcase, *flags, env=None):
    """A sidecar of the test's own, stopped (exit code 0 required) at the
    end of the test."""
    saved = {}
    for k, v in (env or {}).items():
        saved[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        srv = Sidecar(*flags, *BASE_FLAGS).start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    testcase.addCleanup(srv.stop_checked, testcase)
    return srv


def start_standin(testcase, **kw):
    s = StandIn(**kw).start()
    testcase.addCleanup(s.stop)
    return s


# ==== requests ===============================================================

class RequestTests(Base):
    """Every RPC becomes the exact UAPI request (request_test.c's
    expectations, seen on the wire)."""

    def test_list_minimal(self):
        self.up().push(json_answer(collection()))
        resp = self.rpc_uapi("ListPhoneCalls", extension="0003*210")
        self.assert_request(self.only_request(), "GET",
                            "/uapi/phoneCalls/@me/0003*210")
        self.assertEqual(list(resp.phone_calls), [])
        self.assertEqual(resp.total_results, 0)

    def test_list_every_parameter(self):
        self.up().push(json_answer({
            "startIndex": "20", "itemsPerPage": "5", "totalResults": "41",
            "entry": [full_call()],
            "paging": {"next": "https://h/uapi/phoneCalls/12/0003*210/"
                               "?startIndex=25"}}))
        resp = self.rpc_uapi(
            "ListPhoneCalls", user_id="12", extension="0003*210",
            phone_call_id="b817d2618fe6f1804db1", count=5, start_index=0,
            filter_by="published", filter_op="greaterThan",
            filter_value="2012-06-27T16:08:55+03:00", sort_order="descending",
            fields=["id", "", "published", "a,b/c"])
        self.assert_request(
            self.only_request(), "GET",
            "/uapi/phoneCalls/12/0003*210/b817d2618fe6f1804db1",
            ["count=5", "startIndex=0", "filterBy=published",
             "filterOp=greaterThan",
             "filterValue=2012-06-27T16%3A08%3A55%2B03%3A00",
             "sortOrder=descending", "fields=id,published,a%2Cb%2Fc"])
        self.assertEqual(list(resp.phone_calls), [expected_call()])
        self.assertEqual((resp.total_results, resp.items_per_page,
                          resp.start_index), (41, 5, 20))

    def test_list_query_is_percent_encoded(self):
        self.up().push(json_answer(collection()))
        self.rpc_uapi("ListPhoneCalls", extension="@self",
                      filter_value="é &=?#%/ ~._-", fields=[""])
        self.assert_request(
            self.only_request(), "GET", "/uapi/phoneCalls/@me/@self",
            ["filterValue=%C3%A9%20%26%3D%3F%23%25%2F%20~._-"])

    def test_list_zero_values_are_sent(self):
        self.up().push(json_answer(collection()))
        self.rpc_uapi("ListPhoneCalls", extension="210", count=0,
                      start_index=0)
        self.assert_request(self.only_request(), "GET",
                            "/uapi/phoneCalls/@me/210",
                            ["count=0", "startIndex=0"])

    def test_get(self):
        self.up().push(json_answer(collection(full_call())))
        resp = self.get(user_id="@owner", extension="@self")
        self.assert_request(self.only_request(), "GET",
                            "/uapi/phoneCalls/@owner/@self/" + CALL_ID)
        self.assertEqual(resp, expected_call())

    def test_good_addresses_go_literally(self):
        cases = [("", "0003*210", "/uapi/phoneCalls/@me/0003*210/"),
                 ("@me", "210", "/uapi/phoneCalls/@me/210/"),
                 ("@viewer", "*1", "/uapi/phoneCalls/@viewer/*1/"),
                 ("@owner", "@self", "/uapi/phoneCalls/@owner/@self/"),
                 ("AbC9", "0003*210", "/uapi/phoneCalls/AbC9/0003*210/"),
                 (ID64, "0003*210", "/uapi/phoneCalls/%s/0003*210/" % ID64)]
        for user, ext, prefix in cases:
            with self.subTest(user=user, ext=ext):
                self.up().reset()
                self.up().push(json_answer(collection(full_call(ID64, ext))))
                self.get(user_id=user, extension=ext, phone_call_id=ID64)
                self.assert_request(self.only_request(), "GET", prefix + ID64)

    CREATE_FULL = dict(
        extension="210", source=["5354353", "5302040"],
        destination=["5353535"], caller_id="John Doe <4242425>",
        caller_destination="Jane Roe <4242426>",
        nonce="130c5a97768be67df6543b5f5fa3cc51", wait_for_pickup=20,
        call_duration=600, allow_public_transfer=True, video=False,
        conference_number=3, pin="2233")
    CREATE_BODY = {
        "extension": "210",
        "phoneCallView": [{"source": ["5354353", "5302040"],
                           "destination": ["5353535"],
                           "callerId": "John Doe <4242425>",
                           "callerDestination": "Jane Roe <4242426>"}],
        "nonce": "130c5a97768be67df6543b5f5fa3cc51"}

    def create(self, method, fields, path, query, body):
        self.up().reset()
        self.up().push(json_answer([full_call()]))
        resp = self.rpc_uapi(method, **fields)
        self.assert_request(self.only_request(), "POST", path, query, body)
        self.assertEqual(list(resp.phone_calls), [expected_call()])

    def test_create_simple(self):
        # Conference number and PIN belong to conference invites only.
        self.create("CreateSimplePhoneCall", self.CREATE_FULL,
                    "/uapi/phoneCalls/@me/simple",
                    ["waitForPickup=20", "callDuration=600",
                     "allowPublicTransfer=true", "video=false"],
                    self.CREATE_BODY)

    def test_create_callback(self):
        fields = dict(self.CREATE_FULL, user_id="12")
        del fields["allow_public_transfer"], fields["video"]
        self.create("CreateCallbackPhoneCall", fields,
                    "/uapi/phoneCalls/12/callback",
                    ["waitForPickup=20", "callDuration=600"],
                    self.CREATE_BODY)

    def test_create_conference_invite(self):
        fields = dict(self.CREATE_FULL)
        for k in ("wait_for_pickup", "call_duration", "allow_public_transfer",
                  "video"):
            del fields[k]
        self.create("CreateConferenceInvitePhoneCall", fields,
                    "/uapi/phoneCalls/@me/conferenceInvite",
                    ["number=3", "pin=2233"], self.CREATE_BODY)

    def test_create_doc_example_byte_for_byte(self):
        self.up().push(json_answer([full_call()]))
        self.rpc_uapi("CreateSimplePhoneCall", extension="210",
                      source=["5354353", "5302040"], destination=["5353535"],
                      caller_id="John Doe <4242425>")
        self.assert_request(
            self.only_request(), "POST", "/uapi/phoneCalls/@me/simple",
            exact_body='{"extension":"210","phoneCallView":[{"source":'
                       '["5354353","5302040"],"destination":["5353535"],'
                       '"callerId":"John Doe <4242425>"}]}')

    def test_create_minimal_leaves_everything_out(self):
        self.up().push(json_answer([full_call()]))
        self.rpc_uapi("CreateSimplePhoneCall", extension="0003*210",
                      caller_id='"Quoted" \\ <1>')
        self.assert_request(
            self.only_request(), "POST", "/uapi/phoneCalls/@me/simple", (),
            {"extension": "0003*210",
             "phoneCallView": [{"callerId": '"Quoted" \\ <1>'}]})

    def test_hangup(self):
        cases = [
            (dict(phone_call_id="7d280cc4feae3255a497",
                  phone_number="8887777"),
             "/uapi/phoneCalls/@me/0003*210/7d280cc4feae3255a497",
             ["phoneNumber=8887777"]),
            (dict(phone_number="+4412345"), "/uapi/phoneCalls/@me/0003*210",
             ["phoneNumber=%2B4412345"]),
            ({}, "/uapi/phoneCalls/@me/0003*210", []),
        ]
        for fields, path, query in cases:
            with self.subTest(fields=fields):
                self.up().reset()
                self.up().push(json_answer([{"id": "7d280cc4feae3255a497"},
                                            {"id": "a1"}]))
                resp = self.rpc_uapi("HangupPhoneCalls", extension="0003*210",
                                     **fields)
                self.assert_request(self.only_request(), "DELETE", path,
                                    query)
                self.assertEqual(list(resp.phone_call_ids),
                                 ["7d280cc4feae3255a497", "a1"])

    CALLED = {"sendCallTo": "0003*024", "callerId": "John Doe <42420042>",
              "waitForPickup": 20}
    TRANSFER = {"sendCallTo": "0003*024", "transferFromNumber": "0003*024",
                "transferNumber": "0003*210"}
    ACTION_BODIES = {
        "OnHold": {},
        "OffHold": {},
        "StartRecording": {"format": "wav49"},
        "StopRecording": {},
        "Park": {"maxInParking": 30},
        "UnPark": CALLED,
        "PickUp": CALLED,
        "BargeIn": CALLED,
        "Whisper": dict(CALLED, private=1),
        "Monitor": CALLED,
        "Transfer": TRANSFER,
        "TransferToVoicemail": TRANSFER,
    }

    @staticmethod
    def action_fields(method):
        """Every field the method's request has, set."""
        names = getattr(pb2, METHODS[method].input_type.name) \
            .DESCRIPTOR.fields_by_name
        fields = dict(user_id="12", extension="0003*210",
                      phone_call_id="b817d2618fe6f1804333",
                      phone_call_view_id="01", send_call_to="0003*024",
                      caller_id="John Doe <42420042>", wait_for_pickup=20,
                      private=True, format="wav49", max_in_parking=30,
                      transfer_from_number="0003*024",
                      transfer_number="0003*210")
        return {k: v for k, v in fields.items() if k in names}

    def test_every_action(self):
        for method in ACTIONS:
            with self.subTest(method=method):
                self.up().reset()
                self.up().push(json_answer(full_call()))
                resp = self.rpc_uapi(method, **self.action_fields(method))
                body = dict({"action": method, "phoneCallViewId": "01"},
                            **self.ACTION_BODIES[method])
                self.assert_request(
                    self.only_request(), "PUT",
                    "/uapi/phoneCalls/12/0003*210/b817d2618fe6f1804333", (),
                    body)
                self.assertEqual(resp, expected_call())

    def test_seed_offhold_request_byte_for_byte(self):
        self.up().push(json_answer(full_call()))
        self.rpc_uapi("OffHold", user_id="12", extension="0003*210",
                      phone_call_id=CALL_ID, phone_call_view_id="01")
        self.assert_request(
            self.only_request(), "PUT",
            "/uapi/phoneCalls/12/0003*210/" + CALL_ID,
            exact_body='{"action":"OffHold","phoneCallViewId":"01"}')

    def test_unset_fields_are_left_out_and_zero_is_sent(self):
        base = dict(extension="210", phone_call_id="abc",
                    phone_call_view_id="00", send_call_to="211")
        cases = [
            ({}, {"action": "Whisper", "phoneCallViewId": "00",
                  "sendCallTo": "211"}),
            (dict(wait_for_pickup=0, private=False),
             {"action": "Whisper", "phoneCallViewId": "00",
              "sendCallTo": "211", "waitForPickup": 0, "private": 0}),
        ]
        for extra, body in cases:
            with self.subTest(extra=extra):
                self.up().reset()
                self.up().push(json_answer(full_call("abc")))
                self.rpc_uapi("Whisper", **base, **extra)
                self.assert_request(self.only_request(), "PUT",
                                    "/uapi/phoneCalls/@me/210/abc", (), body)
        self.up().reset()
        self.up().push(json_answer(full_call()))
        self.rpc_uapi("Park", extension="210", phone_call_id="abc",
                      phone_call_view_id="01")
        self.assert_request(self.only_request(), "PUT",
                            "/uapi/phoneCalls/@me/210/abc", (),
                            {"action": "Park", "phoneCallViewId": "01"})

    def test_transfer_without_view(self):
        self.up().push(json_answer(full_call()))
        self.rpc_uapi("Transfer", extension="0003*210", phone_call_id=CALL_ID,
                      send_call_to="3334444", transfer_from_number="0003*024",
                      transfer_number="0003*210")
        self.assert_request(
            self.only_request(), "PUT", "/uapi/phoneCalls/@me/0003*210/"
            + CALL_ID, (),
            {"action": "Transfer", "sendCallTo": "3334444",
             "transferFromNumber": "0003*024", "transferNumber": "0003*210"})

    TRACE = [("traceparent",
              "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
             ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
             ("x-request-id", "req-7f3a-42")]

    def test_headers_are_forwarded(self):
        token = "Bearer client-token-Zq81xK"
        calls = [
            ("GetPhoneCall", dict(extension="0003*210", phone_call_id=CALL_ID),
             json_answer(collection(full_call())), False),
            ("CreateSimplePhoneCall", dict(extension="0003*210",
                                           destination=["1"]),
             json_answer([full_call()]), True),
            ("OnHold", dict(extension="0003*210", phone_call_id=CALL_ID,
                            phone_call_view_id="00"),
             json_answer(full_call()), True),
            ("HangupPhoneCalls", dict(extension="0003*210"),
             json_answer([{"id": CALL_ID}]), False),
        ]
        for method, fields, answer, has_body in calls:
            with self.subTest(method=method):
                self.up().reset()
                self.up().push(answer)
                self.rpc_uapi(method, metadata=[("authorization", token)]
                              + self.TRACE, **fields)
                req = self.only_request()
                self.assertEqual(req.header("authorization"), token)
                for name, value in self.TRACE:
                    self.assertEqual(req.header(name), value, name)
                self.assertEqual(req.header("host"), self.up().host)
                self.assertIsNone(req.header("expect"))
                if has_body:
                    self.assertEqual(req.header("content-type"),
                                     "application/json")
                    self.assertEqual(int(req.header("content-length")),
                                     len(req.body))
        self.assert_not_logged(self.server(), "client-token-Zq81xK")

    def test_no_authorization_without_one_from_the_client(self):
        self.up().push(json_answer(collection(full_call())))
        self.get()
        req = self.only_request()
        self.assertIsNone(req.header("authorization"))
        for name, _ in self.TRACE:
            self.assertIsNone(req.header(name))

    def test_connections_are_reused(self):
        for _ in range(5):
            self.up().push(json_answer(collection(full_call())))
        for _ in range(5):
            self.get()
        conns = {r.conn_id for r in self.up().snapshot()}
        self.assertEqual(len(conns), 1, "five sequential requests used %d "
                         "connections" % len(conns))


    def test_long_authorization_is_forwarded_whole(self):
        for size in (3000, 7000):
            with self.subTest(size=size):
                token = "Bearer " + ("t0K3n" * size)[:size]
                self.up().reset()
                self.up().push(json_answer(collection(full_call())))
                self.get(metadata=[("authorization", token)])
                got = self.only_request().header("authorization") or ""
                self.assertEqual(len(got), len(token),
                                 "a %d-byte authorization reached the "
                                 "upstream as %d bytes" % (len(token),
                                                           len(got)))
                self.assertEqual(got, token)

    def test_upstream_closing_idle_connections(self):
        """The upstream may close a kept-alive connection after any
        answer; the next request opens a new one."""
        for _ in range(3):
            self.up().push(json_answer(collection(full_call()), close=True))
        for _ in range(3):
            self.assertEqual(self.get(), expected_call())
            time.sleep(0.05)
        self.assertEqual(len({r.conn_id for r in self.up().snapshot()}), 3)

    def test_target_over_the_limit_is_refused_locally(self):
        self.rpc_error("ListPhoneCalls", Code.INVALID_ARGUMENT,
                       extension="0003*210", filter_value="v" * 9000)
        time.sleep(0.1)
        self.assertEqual(self.up().snapshot(), [])

    def test_concurrent_rpcs_run_in_parallel(self):
        self.up().handler = lambda req: json_answer(
            collection(full_call()), delay=0.3)
        n = 40
        t0 = time.monotonic()
        futures = [self.stub.GetPhoneCall.future(
            request("GetPhoneCall", extension="0003*210",
                    phone_call_id=CALL_ID), timeout=RPC_TIMEOUT)
            for _ in range(n)]
        results = [f.result() for f in futures]
        took = time.monotonic() - t0
        self.assertEqual(results, [expected_call()] * n)
        self.assertEqual(len(self.up().snapshot()), n)
        self.assertLess(took, 3.0 * SLOW, "%d RPCs held 0.3 s each took %.1f s: "
                        "serialized?" % (n, took))

    def test_large_list(self):
        calls = [full_call("c%05d" % i) for i in range(700)]
        body = collection(*calls)
        self.assertLess(len(json.dumps(body)), 1048576)
        self.up().push(json_answer(body))
        resp = self.rpc_uapi("ListPhoneCalls", extension="0003*210",
                             count=1000)
        self.assertEqual([c.id for c in resp.phone_calls],
                         [c["id"] for c in calls])
        self.assertEqual(resp.phone_calls[699], expected_call("c00699"))


# ==== answers ================================================================

class AnswerTests(Base):
    """Every UAPI answer shape maps back."""

    def get_with(self, body, status=200, **kw):
        self.up().reset()
        self.up().push(json_answer(body, status=status, **kw)
                       if not isinstance(body, Answer) else body)
        return self.get()

    def test_call_shapes(self):
        shapes = {
            "object": full_call(),
            "array": [full_call()],
            "collection": collection(full_call()),
            "collection with strings": {"entry": [full_call()],
                                        "totalResults": "1",
                                        "itemsPerPage": "20",
                                        "startIndex": "0"},
            "entry as an object": {"entry": full_call(), "totalResults": 1},
        }
        for name, body in shapes.items():
            with self.subTest(shape=name):
                self.assertEqual(self.get_with(body), expected_call())

    def test_numbers_as_strings(self):
        call = full_call()
        call["ownerId"] = 3
        for v in call["phoneCallView"]:
            for k in ("flow", "status", "parkedPos", "holder", "disposition"):
                if k in v:
                    v[k] = str(v[k])
        self.assertEqual(self.get_with(collection(call)), expected_call())

    def test_caller_id_spellings(self):
        call = full_call()
        call["phoneCallView"][0]["callerID"] = \
            call["phoneCallView"][0].pop("callerId")
        self.assertEqual(self.get_with(collection(call)), expected_call())

    def test_link_and_links(self):
        call = full_call()
        call["link"] = call.pop("links")
        self.assertEqual(self.get_with(collection(call)), expected_call())
        call["link"] = SELF_LINK  # a bare string
        self.assertEqual(self.get_with(collection(call)), expected_call())

    def test_timestamps_with_offsets_and_fractions(self):
        call = full_call()
        call["published"] = "2011-02-10T15:04:55.5-00:30"
        call["answered"] = "2011-02-10T15:04:55Z"
        got = self.get_with(collection(call))
        self.assertEqual(got.published.seconds, 1297350295 + 1800)
        self.assertEqual(got.published.nanos, 500000000)
        self.assertEqual(got.answered.seconds, 1297350295)

    def test_absent_fields_stay_absent(self):
        got = self.get_with({"id": CALL_ID, "phoneCallView": [{"id": "00"}]})
        self.assertEqual(got, pb2.PhoneCall(
            id=CALL_ID, phone_call_views=[View(id="00")]))
        v = got.phone_call_views[0]
        for name in ("ringing", "answered", "parked", "parked_pos", "holder",
                     "on_hold", "recording"):
            self.assertFalse(v.HasField(name), name)

    def test_chunked_answer(self):
        self.assertEqual(self.get_with(Answer(
            200, json.dumps(collection(full_call())),
            content_type="application/json", chunked=True)), expected_call())

    def test_unicode(self):
        call = full_call()
        call["ownerName"] = "Caf\u00e9 \ud83d\ude00 \u2615"
        got = self.get_with(Answer(200, json.dumps(collection(call)),
                                   content_type="application/json"))
        self.assertEqual(got.owner_name, "Caf\u00e9 \U0001f600 \u2615")

    def test_close_delimited_body(self):
        """HTTP/1.1 allows a body ended by closing the connection."""
        self.up().push(Answer(200, json.dumps(collection(full_call())),
                              content_type="application/json",
                              content_length=-1, close=True))
        self.assertEqual(self.get(), expected_call())

    def test_seed_exchange_202_link_to_another_host(self):
        """The seed's own exchange: PUT OffHold answered 202 with a partial
        body whose link names another host. The sidecar GETs the link's
        path on the configured upstream and returns the whole call."""
        evil = start_standin(self)
        evil.handler = lambda req: json_answer(collection(full_call()))
        link = "%s/uapi/phoneCalls/12/0003*210/%s" % (evil.url, CALL_ID)
        for name, self_link in (("stand-in host", link),
                                ("seed's host", SEED_LINK)):
            with self.subTest(link=name):
                self.up().reset()
                self.up().push(
                    Answer(202, SEED_PARTIAL % self_link,
                           content_type="application/json"),
                    Answer(200, SEED_CALL, content_type="application/json"))
                resp = self.rpc_uapi("OffHold", extension="0003*210",
                                     phone_call_id=CALL_ID,
                                     phone_call_view_id="01")
                reqs = self.up().wait_requests(2, 2.0)
                time.sleep(0.05)
                reqs = self.up().snapshot()
                self.assertEqual(len(reqs), 2, reqs)
                self.assert_request(
                    reqs[0], "PUT", "/uapi/phoneCalls/@me/0003*210/" + CALL_ID,
                    exact_body='{"action":"OffHold","phoneCallViewId":"01"}')
                # The link's path (user 12), not the request's (@me).
                self.assert_request(reqs[1], "GET",
                                    "/uapi/phoneCalls/12/0003*210/" + CALL_ID)
                self.assertEqual(reqs[1].header("host"), self.up().host)
                self.assertEqual(resp, SEED_EXPECTED)
        self.assertEqual(evil.snapshot(), [],
                         "the link's host was contacted")

    def test_partial_with_hostile_link_uses_the_request_address(self):
        for link in ("https://h/uapi/phoneCalls/12/210/../../admin",
                     "https://h/admin/delete?all",
                     "https://h/uapi/phoneCalls/12/210/a%2Fb"):
            with self.subTest(link=link):
                self.up().reset()
                self.up().push(
                    json_answer({"id": CALL_ID, "link": {"self": link}},
                                status=202),
                    json_answer(collection(full_call())))
                resp = self.rpc_uapi("OnHold", extension="0003*210",
                                     phone_call_id=CALL_ID,
                                     phone_call_view_id="00")
                reqs = self.up().wait_requests(2, 2.0)
                self.assert_request(reqs[1], "GET",
                                    "/uapi/phoneCalls/@me/0003*210/" + CALL_ID)
                self.assertEqual(resp, expected_call())

    def test_204_update_then_get(self):
        self.up().push(Answer(204), json_answer(collection(full_call())))
        resp = self.rpc_uapi("StartRecording", user_id="@owner",
                             extension="0003*210", phone_call_id=CALL_ID,
                             phone_call_view_id="00", format="wav")
        reqs = self.up().wait_requests(2, 2.0)
        time.sleep(0.05)
        reqs = self.up().snapshot()
        self.assertEqual(len(reqs), 2, reqs)
        self.assertEqual(reqs[0].method, "PUT")
        self.assert_request(reqs[1], "GET",
                            "/uapi/phoneCalls/@owner/0003*210/" + CALL_ID)
        self.assertEqual(resp, expected_call())

    def test_update_fetch_failure_is_mapped(self):
        self.up().push(Answer(204),
                       error_answer(503, "service_unavailable", "Try later."))
        self.rpc_error("OffHold", Code.UNAVAILABLE, "service_unavailable",
                       "Try later.", extension="0003*210",
                       phone_call_id=CALL_ID, phone_call_view_id="01")

    def test_update_fetch_shares_the_deadline(self):
        self.up().push(Answer(202, SEED_PARTIAL % SEED_LINK,
                              content_type="application/json", delay=0.4),
                       json_answer(collection(full_call()), delay=5))
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("OffHold", timeout=1.2, extension="0003*210",
                      phone_call_id=CALL_ID, phone_call_view_id="01")
        self.assertEqual(cm.exception.code(), Code.DEADLINE_EXCEEDED)
        reqs = self.up().wait_requests(2, 2.0)
        self.assertTrue(self.up().wait_for(lambda: reqs[1].aborted_at, 2.0 * SLOW),
                        "the follow-up GET was not aborted at the deadline")
        self.assertLess(reqs[1].aborted_at - t0, 1.2 + 1.0 * SLOW)
        self.assert_still_serving()

    def test_cancel_during_the_follow_up_get_aborts_it(self):
        self.up().push(Answer(204), json_answer(collection(full_call()),
                                                delay=5))
        fut = self.stub.OnHold.future(
            request("OnHold", extension="0003*210", phone_call_id=CALL_ID,
                    phone_call_view_id="00"), timeout=RPC_TIMEOUT)
        reqs = self.up().wait_requests(2, 3.0)
        time.sleep(0.1)
        t_cancel = time.monotonic()
        fut.cancel()
        self.assertTrue(self.up().wait_for(lambda: reqs[1].aborted_at, 2.5 * SLOW),
                        "the follow-up GET kept running after the cancel")
        self.assertLess(reqs[1].aborted_at - t_cancel, 1.0 * SLOW)
        self.assert_still_serving()

    def test_action_answered_with_an_array_picks_its_call(self):
        self.up().push(json_answer([full_call("other"), full_call()]))
        resp = self.rpc_uapi("Park", extension="0003*210",
                             phone_call_id=CALL_ID, phone_call_view_id="01")
        self.assertEqual(resp, expected_call())

    def test_get_of_a_gone_call_is_not_found(self):
        for body in ([], collection(), {"totalResults": "0"}):
            with self.subTest(body=body):
                self.up().reset()
                self.up().push(json_answer(body))
                self.get_error(Code.NOT_FOUND, "pc_phoncall_invalid", CALL_ID)
        self.up().reset()
        self.up().push(Answer(204))
        self.get_error(Code.NOT_FOUND, "pc_phoncall_invalid", CALL_ID)

    def test_list_answer_shapes(self):
        cases = [
            ([full_call("a"), full_call("b")], ["a", "b"], 2),
            (full_call("a"), ["a"], 1),
            (Answer(204), [], 0),
            ({"totalResults": 0, "itemsPerPage": 20}, [], 0),
            ({"entry": [full_call("c")], "totalResults": 3.0}, ["c"], 3),
        ]
        for body, ids, total in cases:
            with self.subTest(body=body):
                self.up().reset()
                self.up().push(body if isinstance(body, Answer)
                               else json_answer(body))
                resp = self.rpc_uapi("ListPhoneCalls", extension="0003*210")
                self.assertEqual([c.id for c in resp.phone_calls], ids)
                self.assertEqual(resp.total_results, total)

    def test_create_and_hangup_answer_shapes(self):
        self.up().push(json_answer(full_call(), status=201))
        resp = self.rpc_uapi("CreateCallbackPhoneCall", extension="212")
        self.assertEqual(list(resp.phone_calls), [expected_call()])
        for body, ids in (([{"id": "a"}, "b", 7], ["a", "b", "7"]),
                          ({"entry": [{"id": "c"}]}, ["c"]),
                          ([full_call()], [CALL_ID])):
            with self.subTest(body=body):
                self.up().reset()
                self.up().push(json_answer(body))
                resp = self.rpc_uapi("HangupPhoneCalls", extension="210")
                self.assertEqual(list(resp.phone_call_ids), ids)
        self.up().reset()
        self.up().push(Answer(204))
        resp = self.rpc_uapi("HangupPhoneCalls", extension="210")
        self.assertEqual(list(resp.phone_call_ids), [])


# ==== errors ===================================================================

class ErrorTests(Base):
    """Upstream HTTP errors → gRPC (api-contract.md §2 defaults)."""

    def offhold_error(self, answer, code, uapi_code=None, message=None):
        self.up().reset()
        self.up().push(answer)
        err = self.rpc_error("OffHold", code, uapi_code, message,
                             extension="0003*210", phone_call_id=CALL_ID,
                             phone_call_view_id="01")
        self.only_request()
        return err

    def test_400_by_uapi_code(self):
        cases = [("pc_phoncall_invalid", Code.NOT_FOUND),
                 ("pc_phonecall_invalid", Code.NOT_FOUND),
                 ("pc_phoncallview_invalid", Code.NOT_FOUND),
                 ("pc_phonecallview_invalid", Code.NOT_FOUND),
                 ("pc_phonecall_state_invalid", Code.FAILED_PRECONDITION),
                 ("user_invalid", Code.INVALID_ARGUMENT),
                 ("extension_invalid", Code.INVALID_ARGUMENT),
                 ("pc_sendcallto_invalid", Code.INVALID_ARGUMENT),
                 ("count_invalid", Code.INVALID_ARGUMENT)]
        for uapi_code, code in cases:
            with self.subTest(code=uapi_code):
                message = "Said by UAPI about %s." % uapi_code
                self.offhold_error(error_answer(400, uapi_code, message),
                                   code, uapi_code, message)
        self.assert_still_serving()

    def test_http_statuses(self):
        cases = [(401, "access_denied", Code.UNAUTHENTICATED),
                 (403, "forbidden", Code.PERMISSION_DENIED),
                 (404, "resource_not_found", Code.NOT_FOUND),
                 (408, "request_timeout", Code.DEADLINE_EXCEEDED),
                 (409, "conflict", Code.ABORTED),
                 (412, "precondition_failed", Code.FAILED_PRECONDITION),
                 (500, "internal_server_error", Code.INTERNAL),
                 (501, "request_not_implemented", Code.UNIMPLEMENTED),
                 (502, "bad_gateway", Code.UNAVAILABLE),
                 (503, "service_unavailable", Code.UNAVAILABLE),
                 (504, "gateway_timeout", Code.UNAVAILABLE)]
        for status, uapi_code, code in cases:
            with self.subTest(status=status):
                message = "UAPI says %d." % status
                self.offhold_error(error_answer(status, uapi_code, message),
                                   code, uapi_code, message)
        self.assert_still_serving()

    def test_access_denided_typo_passes_through(self):
        self.offhold_error(
            error_answer(401, "access_denided",
                         "You are not authorized to use this request."),
            Code.UNAUTHENTICATED, "access_denided",
            "You are not authorized to use this request.")

    def test_error_without_uapi_body(self):
        for status, code in ((503, Code.UNAVAILABLE), (500, Code.INTERNAL),
                             (400, Code.INVALID_ARGUMENT)):
            with self.subTest(status=status):
                err = self.offhold_error(
                    text_answer(status, "<html>%d</html>" % status,
                                "text/html"), code)
                self.assertIn(str(status), err.details())

    def test_other_statuses_are_unknown_with_the_status(self):
        for status in (418, 505, 402):
            with self.subTest(status=status):
                err = self.offhold_error(
                    error_answer(status, "odd_%d" % status, "Odd."),
                    Code.UNKNOWN, "odd_%d" % status)
                self.assertIn(str(status), err.details())
                self.assertIn("Odd.", err.details())
        self.assert_still_serving()

    def test_redirect_is_not_followed(self):
        self.up().reset()
        self.up().push(Answer(302, headers=[(
            "Location", self.up().url + "/uapi/phoneCalls/@me/0003*210/x")]))
        err = self.get_error(Code.UNKNOWN)
        self.assertIn("302", err.details())
        time.sleep(0.1)
        self.assertEqual(len(self.up().snapshot()), 1)

    def test_429_retry_after_becomes_pushback(self):
        self.up().push(error_answer(429, "limit_exceeded", "Slow down.",
                                    headers=[("Retry-After", "3")]))
        _, trailers = raw_unary(
            self.server().address, "GetPhoneCall",
            request("GetPhoneCall", extension="0003*210",
                    phone_call_id=CALL_ID))
        t = dict(trailers)
        self.assertEqual(t.get("grpc-status"), "8", trailers)
        self.assertEqual(t.get("uapi-error-code"), "limit_exceeded", trailers)
        self.assertEqual(t.get("grpc-retry-pushback-ms"), "3000", trailers)
        # And through grpcio: RESOURCE_EXHAUSTED with the code.
        self.up().push(error_answer(429, "limit_exceeded", "Slow down.",
                                    headers=[("Retry-After", "3")]))
        self.get_error(Code.RESOURCE_EXHAUSTED, "limit_exceeded",
                       "Slow down.")

    def test_429_retry_after_http_date(self):
        when = time.time() + 5
        date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
        self.up().push(error_answer(429, "limit_exceeded", "Slow down.",
                                    headers=[("Retry-After", date)]))
        _, trailers = raw_unary(
            self.server().address, "GetPhoneCall",
            request("GetPhoneCall", extension="0003*210",
                    phone_call_id=CALL_ID))
        t = dict(trailers)
        self.assertEqual(t.get("grpc-status"), "8", trailers)
        ms = int(t.get("grpc-retry-pushback-ms", "-1"))
        self.assertTrue(2500 <= ms <= 6500, "pushback %d ms for a date 5 s "
                        "ahead" % ms)

    def test_2xx_that_is_not_json_is_internal(self):
        for answer in (text_answer(200, "<html>ok</html>", "text/html"),
                       json_answer({"id": {}}),
                       Answer(200, '{"id":"a"', content_type="application/json"),
                       json_answer({"phoneCallView": [{"status": "abc"}]}),
                       json_answer({"error": {"code": "internal_server_error",
                                              "message": "oops"}})):
            with self.subTest(body=answer.body):
                self.up().reset()
                self.up().push(answer)
                err = self.get_error(Code.INTERNAL)
                self.assertIn("upstream", err.details().lower())
        self.assert_still_serving()

    def test_header_unsafe_code_never_reaches_a_header(self):
        self.up().push(error_answer(400, "bad\r\ncode: x", "m"))
        err = self.get_error(Code.INVALID_ARGUMENT)
        trailers = err.trailing_metadata()
        self.assertEqual(metadata_values(trailers, "code"), [])
        codes = metadata_values(trailers, "uapi-error-code")
        self.assertEqual(len(codes), 1, trailers)
        self.assertNotRegex(codes[0], r"[\r\n ]")
        self.assert_still_serving()

    def test_non_ascii_error_message(self):
        message = "Num\u00e9ro invalide \u260e: 100% s\u00fbr"
        self.up().push(error_answer(400, "pc_sendcallto_invalid", message))
        self.get_error(Code.INVALID_ARGUMENT, "pc_sendcallto_invalid",
                       message)

    def test_huge_response_header(self):
        self.up().push(json_answer(collection(full_call()),
                                   headers=[("X-Big", "b" * 200000)]))
        with self.assertRaises(grpc.RpcError) as cm:
            self.get()
        self.assertNotEqual(cm.exception.code(), Code.OK)
        self.up().reset()
        self.assert_still_serving()

    def test_long_error_message_is_bounded(self):
        message = "x" * 5000
        self.up().push(error_answer(400, "user_invalid", message))
        err = self.get_error(Code.INVALID_ARGUMENT, "user_invalid")
        self.assertLess(len(err.details()), 4096)
        self.assert_still_serving()


class StatusMapTests(Base):
    """--status-map-file: an operator's rules layered over the defaults."""

    @classmethod
    def setUpClass(cls):
        cls.upstream = StandIn().start()
        cls.tmp = tempfile.mkdtemp(prefix="usc-uapi-map-")
        path = os.path.join(cls.tmp, "map.txt")
        with open(path, "w") as f:
            f.write("# ours\n409 FAILED_PRECONDITION\n"
                    "400 some_code NOT_FOUND  # one code\n")
        try:
            cls.sidecar = Sidecar("--backend", "uapi", "--uapi-url",
                                  cls.upstream.url, "--status-map-file", path,
                                  *NO_BREAKER, *BASE_FLAGS).start()
        except Exception:
            cls.upstream.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sidecar.stop_checked()
        finally:
            cls.upstream.stop()
            common._rmtree(cls.tmp)

    def test_changed_rows(self):
        cases = [(409, "conflict", Code.FAILED_PRECONDITION),
                 (400, "some_code", Code.NOT_FOUND),
                 (400, "SOME_CODE", Code.NOT_FOUND),
                 # unchanged defaults
                 (400, "other_code", Code.INVALID_ARGUMENT),
                 (400, "pc_phoncall_invalid", Code.NOT_FOUND),
                 (404, "resource_not_found", Code.NOT_FOUND),
                 (503, "service_unavailable", Code.UNAVAILABLE)]
        for status, uapi_code, code in cases:
            with self.subTest(status=status, code=uapi_code):
                self.up().reset()
                self.up().push(error_answer(status, uapi_code, "Map me."))
                self.get_error(code, uapi_code, "Map me.")

    def test_bad_map_file_refuses_to_start(self):
        path = os.path.join(self.tmp, "bad.txt")
        with open(path, "w") as f:
            f.write("404 NOT_FOUND\n404 NOTFOUND\n")
        srv = Sidecar("--backend", "uapi", "--uapi-url", self.up().url,
                      "--status-map-file", path, *BASE_FLAGS)
        with self.assertRaises(common.SidecarError):
            srv.start()
        self.assertNotEqual(srv.proc.poll(), 0)
        self.assertIn("line 2", srv.log_tail())


class BaseUrlTests(Base):
    """--uapi-url with a trailing slash or a path prefix."""

    uses_main = False

    def test_trailing_slash_and_prefix(self):
        up = start_standin(self)
        for suffix, prefix in (("/", ""), ("/api", "/api"),
                               ("/api/v3/", "/api/v3")):
            with self.subTest(url=suffix):
                srv = start_sidecar(self, "--backend", "uapi", "--uapi-url",
                                    up.url + suffix, *NO_BREAKER)
                ch = grpc.insecure_channel(srv.address)
                self.addCleanup(ch.close)
                stub = pb2_grpc.PhoneCallServiceStub(ch)
                up.reset()
                up.push(json_answer(collection(full_call())))
                self.call("GetPhoneCall", stub=stub, extension="0003*210",
                          phone_call_id=CALL_ID)
                self.assertEqual(up.snapshot()[0].path, prefix +
                                 "/uapi/phoneCalls/@me/0003*210/" + CALL_ID)
                # The seed's exchange, the link carrying the same prefix.
                up.reset()
                up.push(Answer(202, SEED_PARTIAL % (
                    "https://x.x.x.x%s/uapi/phoneCalls/12/0003*210/%s"
                    % (prefix, CALL_ID)), content_type="application/json"),
                        Answer(200, SEED_CALL,
                               content_type="application/json"))
                resp, _ = self.call("OffHold", stub=stub,
                                    extension="0003*210",
                                    phone_call_id=CALL_ID,
                                    phone_call_view_id="01")
                self.assertEqual(resp, SEED_EXPECTED)
                reqs = up.snapshot()
                self.assertEqual(len(reqs), 2, reqs)
                self.assertIn(reqs[1].path, (
                    prefix + "/uapi/phoneCalls/12/0003*210/" + CALL_ID,
                    prefix + "/uapi/phoneCalls/@me/0003*210/" + CALL_ID))


# ==== hostile addresses ======================================================

class HostileAddressTests(Base):
    """Malformed addresses → INVALID_ARGUMENT with the UAPI code, and no
    request reaches the upstream."""

    CASES = [
        ("ListPhoneCalls", dict(user_id="../x", extension="210"),
         "user_invalid"),
        ("ListPhoneCalls", dict(user_id="..", extension="210"),
         "user_invalid"),
        ("ListPhoneCalls", dict(user_id="a/b", extension="210"),
         "user_invalid"),
        ("ListPhoneCalls", dict(user_id="12?x=1", extension="210"),
         "user_invalid"),
        ("ListPhoneCalls", dict(user_id="12#x", extension="210"),
         "user_invalid"),
        ("ListPhoneCalls", dict(user_id="%2F", extension="210"),
         "user_invalid"),
        ("ListPhoneCalls", dict(user_id="@them", extension="210"),
         "user_invalid"),
        ("ListPhoneCalls", dict(user_id=ID65, extension="210"),
         "user_invalid"),
        ("ListPhoneCalls", dict(user_id="12", extension=""),
         "extension_invalid"),
        ("ListPhoneCalls", dict(user_id="12", extension="../210"),
         "extension_invalid"),
        ("ListPhoneCalls", dict(user_id="12", extension="0003/210"),
         "extension_invalid"),
        ("ListPhoneCalls", dict(user_id="12", extension="210?a=b"),
         "extension_invalid"),
        ("ListPhoneCalls", dict(user_id="12", extension="210#"),
         "extension_invalid"),
        ("ListPhoneCalls", dict(user_id="12", extension="210%2F"),
         "extension_invalid"),
        ("ListPhoneCalls", dict(user_id="12", extension="@self/.."),
         "extension_invalid"),
        ("ListPhoneCalls", dict(extension="210", phone_call_id="../x"),
         "pc_phoncall_invalid"),
        ("ListPhoneCalls", dict(extension="210", phone_call_id="a?b"),
         "pc_phoncall_invalid"),
        ("GetPhoneCall", dict(extension="210", phone_call_id=""),
         "pc_phoncall_invalid"),
        ("GetPhoneCall", dict(extension="210", phone_call_id="../x"),
         "pc_phoncall_invalid"),
        ("GetPhoneCall", dict(extension="210", phone_call_id="a/b"),
         "pc_phoncall_invalid"),
        ("GetPhoneCall", dict(extension="210", phone_call_id="abc#"),
         "pc_phoncall_invalid"),
        ("GetPhoneCall", dict(extension="210", phone_call_id="ab%2F"),
         "pc_phoncall_invalid"),
        ("GetPhoneCall", dict(extension="210", phone_call_id="ab?x=1"),
         "pc_phoncall_invalid"),
        ("GetPhoneCall", dict(extension="210", phone_call_id=ID65),
         "pc_phoncall_invalid"),
        ("HangupPhoneCalls", dict(extension="210", phone_call_id="a/b"),
         "pc_phoncall_invalid"),
        ("HangupPhoneCalls", dict(extension="210", phone_call_id="%2F.."),
         "pc_phoncall_invalid"),
        ("OffHold", dict(extension="210", phone_call_id="",
                         phone_call_view_id="01"), "pc_phoncall_invalid"),
        ("OffHold", dict(extension="210", phone_call_id="abc",
                         phone_call_view_id=""), "pc_phoncallview_invalid"),
        ("OffHold", dict(extension="210", phone_call_id="abc",
                         phone_call_view_id="../01"),
         "pc_phoncallview_invalid"),
        ("OffHold", dict(extension="210", phone_call_id="abc",
                         phone_call_view_id="0/1"),
         "pc_phoncallview_invalid"),
        ("OffHold", dict(extension="210", phone_call_id="abc",
                         phone_call_view_id="0?"),
         "pc_phoncallview_invalid"),
        ("OffHold", dict(extension="210", phone_call_id="abc",
                         phone_call_view_id="0#"),
         "pc_phoncallview_invalid"),
        ("OffHold", dict(extension="210", phone_call_id="abc",
                         phone_call_view_id="%2F"),
         "pc_phoncallview_invalid"),
        ("Park", dict(extension="210", phone_call_id="abc",
                      phone_call_view_id=".."), "pc_phoncallview_invalid"),
        ("Whisper", dict(extension="210", phone_call_id="abc",
                         phone_call_view_id="1"), "pc_phoncallview_invalid"),
        ("Transfer", dict(extension="210", phone_call_id="abc",
                          phone_call_view_id="x" * 65),
         "pc_phoncallview_invalid"),
        ("CreateSimplePhoneCall", dict(extension="@self"),
         "extension_invalid"),
        ("CreateCallbackPhoneCall", dict(extension=""), "extension_invalid"),
        ("CreateConferenceInvitePhoneCall",
         dict(user_id="1/2", extension="210"), "user_invalid"),
        ("CreateSimplePhoneCall", dict(user_id="../admin", extension="210"),
         "user_invalid"),
    ]

    def test_hostile_addresses_never_reach_the_upstream(self):
        for method, fields, uapi_code in self.CASES:
            with self.subTest(method=method, fields=fields):
                self.rpc_error(method, Code.INVALID_ARGUMENT, uapi_code,
                               **fields)
        time.sleep(0.1)
        self.assertEqual(self.up().snapshot(), [])
        self.assert_still_serving()

    def test_hostile_watch_never_polls(self):
        for fields, uapi_code in ((dict(user_id="../x"), "user_invalid"),
                                  (dict(extension="../210"),
                                   "extension_invalid")):
            with self.subTest(fields=fields):
                with self.assertRaises(grpc.RpcError) as cm:
                    list(self.stub.WatchPhoneCalls(
                        request("WatchPhoneCalls", **fields),
                        timeout=RPC_TIMEOUT))
                self.assert_error(cm.exception, Code.INVALID_ARGUMENT,
                                  uapi_code)
        time.sleep(0.2)
        self.assertEqual(self.up().snapshot(), [])


# ==== faults =================================================================

class FaultTests(Base):
    """Transport faults: each gives the documented status and leaves the
    sidecar serving."""

    def test_slow_upstream_past_the_client_deadline(self):
        self.up().push(json_answer(collection(full_call()), delay=5))
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("GetPhoneCall", timeout=0.5, extension="0003*210",
                      phone_call_id=CALL_ID)
        self.assertEqual(cm.exception.code(), Code.DEADLINE_EXCEEDED)
        req = self.only_request()
        self.assertTrue(self.up().wait_for(lambda: req.aborted_at, 2.5 * SLOW),
                        "the upstream request was not aborted")
        self.assertLess(req.aborted_at - t0, 0.5 + 1.0 * SLOW,
                        "the upstream request outlived the deadline by "
                        "%.2f s" % (req.aborted_at - t0 - 0.5))
        self.assert_still_serving()

    def test_cancelled_rpc_aborts_the_upstream_request(self):
        self.up().push(json_answer(collection(full_call()), delay=5))
        fut = self.stub.GetPhoneCall.future(
            request("GetPhoneCall", extension="0003*210",
                    phone_call_id=CALL_ID), timeout=RPC_TIMEOUT)
        req = self.up().wait_requests(1, 3.0)[0]
        time.sleep(0.1)
        t_cancel = time.monotonic()
        fut.cancel()
        self.assertTrue(self.up().wait_for(lambda: req.aborted_at, 2.5 * SLOW),
                        "the upstream request kept running after the cancel")
        self.assertLess(req.aborted_at - t_cancel, 1.0 * SLOW)
        self.assert_still_serving()

    def test_reset_mid_body(self):
        body = json.dumps(collection(full_call()))
        self.up().push(Answer(200, body, content_type="application/json",
                              cut_at=40))
        self.get_error(Code.UNAVAILABLE)
        self.assert_still_serving()

    def test_connection_closed_without_an_answer(self):
        # Every attempt (libcurl may retry once on a reused connection).
        self.up().handler = lambda req: Answer(no_answer=True)
        self.get_error(Code.UNAVAILABLE)
        self.up().reset()
        self.assert_still_serving()

    def test_connection_reset_without_an_answer(self):
        self.up().handler = lambda req: Answer(reset=True)
        self.get_error(Code.UNAVAILABLE)
        self.up().reset()
        self.assert_still_serving()

    def test_short_body(self):
        """Fewer bytes than Content-Length, then the connection closes."""
        body = json.dumps(collection(full_call()))
        self.up().push(Answer(200, body, content_type="application/json",
                              content_length=len(body) + 100, close=True))
        self.get_error(Code.UNAVAILABLE)
        self.assert_still_serving()

    def test_5xx_leaves_it_serving(self):
        for status in (500, 502, 503, 504):
            self.up().push(error_answer(status, "e%d" % status, "Down."))
            self.get_error(Code.INTERNAL if status == 500 else
                           Code.UNAVAILABLE, "e%d" % status, "Down.")
        self.assert_still_serving()

    def test_refused(self):
        srv = start_sidecar(self, "--backend", "uapi", "--uapi-url",
                            "http://127.0.0.1:%d" % free_port(), *NO_BREAKER)
        stub = pb2_grpc.PhoneCallServiceStub(
            self._channel(srv.address))
        for _ in range(3):
            t0 = time.monotonic()
            with self.assertRaises(grpc.RpcError) as cm:
                self.call("GetPhoneCall", stub=stub, extension="0003*210",
                          phone_call_id=CALL_ID)
            self.assert_error(cm.exception, Code.UNAVAILABLE)
            self.assertLess(time.monotonic() - t0, 3.0 * SLOW)
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("GetPhoneCall", stub=stub, extension="0003*210",
                      phone_call_id="a/b")
        self.assert_error(cm.exception, Code.INVALID_ARGUMENT,
                          "pc_phoncall_invalid")
        self.assertTrue(srv.alive())

    def test_dns_failure(self):
        srv = start_sidecar(self, "--backend", "uapi", "--uapi-url",
                            "http://nonexistent.invalid", *NO_BREAKER)
        stub = pb2_grpc.PhoneCallServiceStub(self._channel(srv.address))
        for _ in range(2):
            with self.assertRaises(grpc.RpcError) as cm:
                self.call("ListPhoneCalls", stub=stub, extension="0003*210")
            self.assert_error(cm.exception, Code.UNAVAILABLE)
        self.assertTrue(srv.alive())

    def test_upstream_timeout_flag(self):
        up = start_standin(self)
        srv = start_sidecar(self, "--backend", "uapi", "--uapi-url", up.url,
                            "--upstream-timeout", "500", *NO_BREAKER)
        stub = pb2_grpc.PhoneCallServiceStub(self._channel(srv.address))
        up.push(json_answer(collection(full_call()), delay=5))
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            # No grpc-timeout: the flag's deadline applies.
            self.call("GetPhoneCall", stub=stub, timeout=None,
                      extension="0003*210", phone_call_id=CALL_ID)
        took = time.monotonic() - t0
        self.assert_error(cm.exception, Code.DEADLINE_EXCEEDED)
        self.assertLess(took, 3.0 * SLOW)
        req = up.wait_requests(1, 1)[0]
        self.assertTrue(up.wait_for(lambda: req.aborted_at, 2.0 * SLOW),
                        "the upstream request was not aborted")
        up.push(json_answer(collection(full_call())))
        resp, _ = self.call("GetPhoneCall", stub=stub, extension="0003*210",
                            phone_call_id=CALL_ID)
        self.assertEqual(resp, expected_call())

    def test_body_over_the_limit(self):
        up = start_standin(self)
        srv = start_sidecar(self, "--backend", "uapi", "--uapi-url", up.url,
                            "--upstream-max-body", "4096", *NO_BREAKER)
        stub = pb2_grpc.PhoneCallServiceStub(self._channel(srv.address))
        big = full_call()
        big["padding"] = "p" * 8000
        for chunked in (False, True):
            with self.subTest(chunked=chunked):
                up.push(Answer(200, json.dumps(collection(big)),
                               content_type="application/json",
                               chunked=chunked))
                with self.assertRaises(grpc.RpcError) as cm:
                    self.call("GetPhoneCall", stub=stub, extension="0003*210",
                              phone_call_id=CALL_ID)
                # gRPC's own answer to a message over the receive limit.
                self.assert_error(cm.exception, Code.RESOURCE_EXHAUSTED)
        small = full_call()
        small["padding"] = "p" * 1000
        up.push(json_answer(collection(small)))
        resp, _ = self.call("GetPhoneCall", stub=stub, extension="0003*210",
                            phone_call_id=CALL_ID)
        self.assertEqual(resp, expected_call())

    def test_max_requests(self):
        up = start_standin(self)
        srv = start_sidecar(self, "--backend", "uapi", "--uapi-url", up.url,
                            "--upstream-max-requests", "1", *NO_BREAKER)
        stub = pb2_grpc.PhoneCallServiceStub(self._channel(srv.address))
        release = threading.Event()
        up.push(json_answer(collection(full_call()), release=release))
        first = stub.GetPhoneCall.future(
            request("GetPhoneCall", extension="0003*210",
                    phone_call_id=CALL_ID), timeout=RPC_TIMEOUT)
        up.wait_requests(1, 3.0)
        try:
            with self.assertRaises(grpc.RpcError) as cm:
                self.call("GetPhoneCall", stub=stub, extension="0003*210",
                          phone_call_id=CALL_ID)
            self.assertIn(cm.exception.code(),
                          (Code.RESOURCE_EXHAUSTED, Code.UNAVAILABLE),
                          cm.exception.details())
        finally:
            release.set()
        self.assertEqual(first.result(), expected_call())
        self.assertEqual(len(up.snapshot()), 1)

    def _channel(self, address):
        ch = grpc.insecure_channel(address)
        self.addCleanup(ch.close)
        return ch


# ==== credentials ============================================================

class CredentialTests(Base):

    uses_main = False

    def _channel(self, address):
        ch = grpc.insecure_channel(address)
        self.addCleanup(ch.close)
        return pb2_grpc.PhoneCallServiceStub(ch)

    def _tmpdir(self):
        d = tempfile.mkdtemp(prefix="usc-uapi-cred-")
        self.addCleanup(common._rmtree, d)
        return d

    def test_token_file_replaces_the_client_token_and_is_reread(self):
        up = start_standin(self)
        up.handler = lambda req: json_answer(collection(full_call()))
        path = os.path.join(self._tmpdir(), "token")
        standin.write_file_atomically(path, "file-token-A7yq\n")
        srv = start_sidecar(self, "--backend", "uapi", "--uapi-url", up.url,
                            "--uapi-token-file", path, *NO_BREAKER)
        stub = self._channel(srv.address)
        meta = [("authorization", "Bearer client-token-Pw3e")]
        self.call("GetPhoneCall", stub=stub, metadata=meta,
                  extension="0003*210", phone_call_id=CALL_ID)
        self.assertEqual(up.snapshot()[-1].header("authorization"),
                         "Bearer file-token-A7yq")
        standin.write_file_atomically(path, "file-token-B9zr\n")
        t0 = time.monotonic()
        seen = None
        while time.monotonic() - t0 < 4.0 * SLOW:
            self.call("GetPhoneCall", stub=stub, metadata=meta,
                      extension="0003*210", phone_call_id=CALL_ID)
            seen = up.snapshot()[-1].header("authorization")
            if seen == "Bearer file-token-B9zr":
                break
            time.sleep(0.1)
        took = time.monotonic() - t0
        self.assertEqual(seen, "Bearer file-token-B9zr")
        self.assertLess(took, 2.5 * SLOW, "the new token took %.1f s" % took)
        w = WatchStream(stub, metadata=meta, extension="0003*210")
        self.addCleanup(w.cancel)
        n = len(up.snapshot())
        up.wait_for(lambda: len(up.requests) >= n + 1, 3.0)
        self.assertEqual(up.snapshot()[-1].header("authorization"),
                         "Bearer file-token-B9zr")
        w.cancel()
        self.assert_not_logged(srv, "file-token-A7yq", "file-token-B9zr",
                               "client-token-Pw3e")

    def _oauth_sidecar(self, up, *extra):
        d = self._tmpdir()
        secret = os.path.join(d, "secret")
        with open(secret, "w") as f:
            f.write("s3cr3t-Kd8w\n")
        return start_sidecar(
            self, "--backend", "uapi", "--uapi-url", up.url,
            "--oauth-token-url", up.url + "/oauth/token.php",
            "--oauth-client-id", "client-id-17", "--oauth-client-secret-file",
            secret, *NO_BREAKER, *extra)

    @staticmethod
    def _token_endpoint(up, expires_in=3600):
        seq = iter(range(1, 100))

        def issue(req):
            return json_answer({"access_token": "oauth-at-%d-Qm" % next(seq),
                                "token_type": "Bearer",
                                "expires_in": expires_in})
        up.token_handler = issue

    def assert_token_request(self, req):
        self.assertEqual(req.method, "POST")
        self.assertEqual(
            (req.header("content-type") or "").split(";")[0].strip(),
            "application/x-www-form-urlencoded")
        form = urllib.parse.parse_qs(req.body.decode())
        self.assertEqual(form.get("grant_type"), ["client_credentials"])
        self.assertEqual(form.get("client_id"), ["client-id-17"])
        self.assertEqual(form.get("client_secret"), ["s3cr3t-Kd8w"])

    def test_oauth_401_refreshes_once_and_retries(self):
        up = start_standin(self)
        self._token_endpoint(up)

        def api(req):
            if req.header("authorization") == "Bearer oauth-at-1-Qm":
                return error_answer(401, "access_denied", "Token revoked.")
            return json_answer(collection(full_call()))
        up.handler = api
        srv = self._oauth_sidecar(up)
        stub = self._channel(srv.address)
        resp, rpc_call = self.call(
            "GetPhoneCall", stub=stub, extension="0003*210",
            phone_call_id=CALL_ID,
            metadata=[("authorization", "Bearer client-token-Hh5")])
        self.assertEqual(resp, expected_call())
        self.assert_backend(rpc_call, "uapi")
        self.assertEqual(len(up.token_requests), 2, up.token_requests)
        for req in up.token_requests:
            self.assert_token_request(req)
        self.assertEqual([r.header("authorization") for r in up.snapshot()],
                         ["Bearer oauth-at-1-Qm", "Bearer oauth-at-2-Qm"])
        # The new token is cached: no more token requests.
        for _ in range(3):
            self.call("GetPhoneCall", stub=stub, extension="0003*210",
                      phone_call_id=CALL_ID)
        self.assertEqual(len(up.token_requests), 2)
        self.assertEqual(up.snapshot()[-1].header("authorization"),
                         "Bearer oauth-at-2-Qm")
        self.assert_not_logged(srv, "oauth-at-1-Qm", "oauth-at-2-Qm",
                               "s3cr3t-Kd8w", "client-token-Hh5")

    def test_oauth_concurrent_rpcs_share_one_token_request(self):
        up = start_standin(self)
        seq = iter(range(1, 100))
        up.token_handler = lambda req: json_answer(
            {"access_token": "oauth-at-%d-Qm" % next(seq),
             "expires_in": 3600}, delay=0.3)
        up.handler = lambda req: json_answer(collection(full_call()))
        srv = self._oauth_sidecar(up)
        stub = self._channel(srv.address)
        futures = [stub.GetPhoneCall.future(
            request("GetPhoneCall", extension="0003*210",
                    phone_call_id=CALL_ID), timeout=RPC_TIMEOUT)
            for _ in range(10)]
        for f in futures:
            self.assertEqual(f.result(), expected_call())
        self.assertEqual(len(up.token_requests), 1, up.token_requests)
        self.assertEqual({r.header("authorization") for r in up.snapshot()},
                         {"Bearer oauth-at-1-Qm"})

    def test_oauth_long_token_is_sent_whole(self):
        """OAuth access tokens are often long JWTs."""
        up = start_standin(self)
        token = ("eyJhbGciOiJSUzI1NiJ9." + "x" * 3000 + ".Sig-Qm")
        up.token_handler = lambda req: json_answer(
            {"access_token": token, "expires_in": 3600})
        up.handler = lambda req: (
            json_answer(collection(full_call()))
            if req.header("authorization") == "Bearer " + token
            else error_answer(401, "access_denied", "Bad token."))
        srv = self._oauth_sidecar(up)
        stub = self._channel(srv.address)
        try:
            self.call("GetPhoneCall", stub=stub, extension="0003*210",
                      phone_call_id=CALL_ID)
        except grpc.RpcError as err:
            sent = [len(r.header("authorization") or "")
                    for r in up.snapshot()]
            self.fail("%s %s; the upstream got authorization values of %r "
                      "bytes, the token is %d bytes"
                      % (err.code(), err.details(), sent,
                         len("Bearer " + token)))

    def test_oauth_token_endpoint_failure_then_recovery(self):
        up = start_standin(self)
        up.push_token(error_answer(503, "service_unavailable", "Busy."))
        up.handler = lambda req: json_answer(collection(full_call()))
        srv = self._oauth_sidecar(up)
        stub = self._channel(srv.address)
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("GetPhoneCall", stub=stub, extension="0003*210",
                      phone_call_id=CALL_ID)
        self.assertIn(cm.exception.code(),
                      (Code.UNAVAILABLE, Code.UNAUTHENTICATED),
                      cm.exception.details())
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(up.snapshot(), [], "sent without a token")
        deadline = time.monotonic() + 5.0 * SLOW
        while True:
            time.sleep(0.3)
            try:
                resp, _ = self.call("GetPhoneCall", stub=stub,
                                    extension="0003*210",
                                    phone_call_id=CALL_ID)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
        self.assertEqual(resp, expected_call())
        self.assertEqual(up.snapshot()[-1].header("authorization"),
                         "Bearer standin-token-1")

    def test_oauth_persistent_401_is_unauthenticated(self):
        up = start_standin(self)
        self._token_endpoint(up)
        up.handler = lambda req: error_answer(401, "access_denied",
                                              "You are not authorized.")
        srv = self._oauth_sidecar(up)
        stub = self._channel(srv.address)
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("GetPhoneCall", stub=stub, extension="0003*210",
                      phone_call_id=CALL_ID)
        self.assert_error(cm.exception, Code.UNAUTHENTICATED, "access_denied",
                          "You are not authorized.")
        self.assertEqual(len(up.snapshot()), 2, "one retry after a refresh")
        self.assertEqual(len(up.token_requests), 2)

    def test_oauth_token_is_renewed_when_it_expires(self):
        up = start_standin(self)
        self._token_endpoint(up, expires_in=1)
        up.handler = lambda req: json_answer(collection(full_call()))
        srv = self._oauth_sidecar(up)
        stub = self._channel(srv.address)
        self.call("GetPhoneCall", stub=stub, extension="0003*210",
                  phone_call_id=CALL_ID)
        first = up.snapshot()[-1].header("authorization")
        time.sleep(1.6)
        self.call("GetPhoneCall", stub=stub, extension="0003*210",
                  phone_call_id=CALL_ID)
        second = up.snapshot()[-1].header("authorization")
        self.assertRegex(first, r"^Bearer oauth-at-\d+-Qm$")
        self.assertRegex(second, r"^Bearer oauth-at-\d+-Qm$")
        self.assertNotEqual(first, second, "an expired token was used")

    def test_flags_from_the_environment(self):
        up = start_standin(self)
        up.handler = lambda req: json_answer(collection(full_call()))
        srv = start_sidecar(self, env={"UAPI_SIDECAR_BACKEND": "uapi",
                                       "UAPI_SIDECAR_UAPI_URL": up.url})
        stub = self._channel(srv.address)
        resp, rpc_call = self.call("GetPhoneCall", stub=stub,
                                   extension="0003*210", phone_call_id=CALL_ID)
        self.assert_backend(rpc_call, "uapi")
        self.assertEqual(len(up.snapshot()), 1)


class ShutdownTests(Base):

    uses_main = False

    def test_sigterm_with_upstream_work_in_flight(self):
        up = start_standin(self)
        fake = FakeUapi()
        srv = Sidecar("--backend", "uapi", "--uapi-url", up.url,
                      "--watch-poll-interval", "100",
                      "--shutdown-grace", "500", "--log-level", "debug").start()
        self.addCleanup(srv.kill)
        ch = grpc.insecure_channel(srv.address)
        self.addCleanup(ch.close)
        stub = pb2_grpc.PhoneCallServiceStub(ch)
        held = []

        def api(req):
            if req.method == "GET" and req.path.endswith(CALL_ID):
                held.append(req)
                return json_answer(collection(full_call()), delay=10)
            return fake(req)
        up.handler = api
        w = WatchStream(stub, extension="0003*210")
        self.addCleanup(w.cancel)
        up.wait_for(lambda: len(up.requests) >= 2, 3.0)
        fut = stub.GetPhoneCall.future(
            request("GetPhoneCall", extension="0003*210",
                    phone_call_id=CALL_ID), timeout=RPC_TIMEOUT)
        self.assertTrue(up.wait_for(lambda: held, 3.0))
        t0 = time.monotonic()
        code = srv.stop(timeout=10 * SLOW)
        took = time.monotonic() - t0
        self.assertEqual(code, 0, srv.log_tail())
        self.assertLess(took, 0.5 + 2.0 * SLOW)
        # The held RPC ended with an error, the Watch with OK.
        with self.assertRaises(grpc.RpcError):
            fut.result(timeout=5)
        item = w.events.get(timeout=5)
        self.assertIs(item, WatchStream.END, item)
        self.assertTrue(up.wait_for(lambda: held[0].aborted_at, 2.0),
                        "the held upstream request was not aborted")


# ==== --backend auto =========================================================

class AutoTests(Base):

    uses_main = False

    def _stub(self, address):
        ch = grpc.insecure_channel(address)
        self.addCleanup(ch.close)
        return pb2_grpc.PhoneCallServiceStub(ch)

    def test_fallback_mirror_and_return(self):
        up = start_standin(self)
        fake = FakeUapi()
        up.handler = fake
        srv = start_sidecar(self, "--backend", "auto", "--uapi-url", up.url,
                            "--breaker-failures", "2",
                            "--breaker-open-ms", "300")
        stub = self._stub(srv.address)
        # 1. Upstream up: answered by it, and mirrored.
        resp, rpc_call = self.call(
            "CreateSimplePhoneCall", stub=stub, extension="0003*210",
            source=["0003*210"], destination=["0003*211"], nonce="mirror-me")
        self.assert_backend(rpc_call, "uapi")
        seen = resp.phone_calls[0]
        self.assertTrue(seen.id.startswith("fa0e"), seen)
        got, rpc_call = self.call("GetPhoneCall", stub=stub,
                                  extension="0003*210", phone_call_id=seen.id)
        self.assert_backend(rpc_call, "uapi")
        self.assertEqual(got.id, seen.id)
        n_up = len(up.snapshot())
        # 2. Upstream down (refused): the native engine answers in the
        # same RPC, and knows the call seen through the upstream.
        up.stop()
        got, rpc_call = self.call("GetPhoneCall", stub=stub,
                                  extension="0003*210", phone_call_id=seen.id)
        self.assert_backend(rpc_call, "native")
        self.assertEqual(got.id, seen.id)
        self.assertEqual(got.extension, seen.extension)
        self.assertEqual([v.id for v in got.phone_call_views],
                         [v.id for v in seen.phone_call_views])
        self.assertEqual(got.nonce, "mirror-me")
        listed, rpc_call = self.call("ListPhoneCalls", stub=stub,
                                     extension="0003*210")
        self.assert_backend(rpc_call, "native")
        self.assertIn(seen.id, [c.id for c in listed.phone_calls])
        made, rpc_call = self.call(
            "CreateSimplePhoneCall", stub=stub, extension="0003*210",
            source=["0003*210"], destination=["0003*212"])
        self.assert_backend(rpc_call, "native")
        self.assertRegex(made.phone_calls[0].id, r"^[0-9a-f]{20}$")
        # 3. Upstream back on the same port: upstream again once the
        # breaker's probe succeeds.
        up.restart()
        deadline = time.monotonic() + 5.0
        backend = None
        while time.monotonic() < deadline:
            _, rpc_call = self.call("ListPhoneCalls", stub=stub,
                                    extension="0003*210")
            backend = metadata_values(rpc_call.initial_metadata(),
                                      "x-uapi-backend")
            if backend == ["uapi"]:
                break
            time.sleep(0.1)
        self.assertEqual(backend, ["uapi"], "still not upstream 5 s after "
                         "it came back")
        self.assertGreater(len(up.snapshot()), n_up)

    def test_mirror_follows_what_the_upstream_said(self):
        """The mirror keeps the upstream's last word: an action's answer
        updates the copy, a hang-up removes it, and a call the upstream
        says is gone is gone in the fallback too."""
        up = start_standin(self)
        fake = FakeUapi()
        up.handler = fake
        srv = start_sidecar(self, "--backend", "auto", "--uapi-url", up.url,
                            "--breaker-failures", "2",
                            "--breaker-open-ms", "300")
        stub = self._stub(srv.address)
        ext = "0003*270"
        held, hung, vanished = (fake.add(ext, "0003*271") for _ in range(3))
        listed, rpc_call = self.call("ListPhoneCalls", stub=stub,
                                     extension=ext)
        self.assert_backend(rpc_call, "uapi")
        self.assertEqual(len(listed.phone_calls), 3)
        # OnHold through the upstream.
        resp, _ = self.call("OnHold", stub=stub, extension=ext,
                            phone_call_id=held["id"], phone_call_view_id="01")
        self.assertTrue(resp.phone_call_views[1].HasField("on_hold"))
        # Hang-up through the upstream.
        resp, _ = self.call("HangupPhoneCalls", stub=stub, extension=ext,
                            phone_call_id=hung["id"])
        self.assertEqual(list(resp.phone_call_ids), [hung["id"]])
        # Ended upstream by someone else: a Get says NOT_FOUND.
        with fake.lock:
            del fake.calls[vanished["id"]]
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("GetPhoneCall", stub=stub, extension=ext,
                      phone_call_id=vanished["id"])
        self.assertEqual(cm.exception.code(), Code.NOT_FOUND)
        # Upstream gone: the native engine agrees with all of it.
        up.stop()
        got, rpc_call = self.call("GetPhoneCall", stub=stub, extension=ext,
                                  phone_call_id=held["id"])
        self.assert_backend(rpc_call, "native")
        self.assertTrue(got.phone_call_views[1].HasField("on_hold"),
                        "the mirror missed the OnHold answer")
        for gone, why in ((hung, "hung up through the upstream"),
                          (vanished, "reported gone by the upstream")):
            with self.subTest(call=why):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.call("GetPhoneCall", stub=stub, extension=ext,
                              phone_call_id=gone["id"])
                self.assert_error(cm.exception, Code.NOT_FOUND,
                                  "pc_phoncall_invalid")

    def test_timeouts_at_the_deadline_open_the_breaker(self):
        """A slow upstream: each RPC ends at its deadline, noticed first by
        the sidecar's own timer or by the client resetting the stream (as
        grpcio does when its deadline passes). Either way it is a timeout
        after the request was sent, and counts towards the breaker."""
        up = start_standin(self)
        up.handler = lambda req: json_answer(collection(), delay=5)
        for who in ("sidecar", "client"):
            with self.subTest(noticed_by=who):
                srv = start_sidecar(self, "--backend", "auto", "--uapi-url",
                                    up.url, "--breaker-failures", "2",
                                    "--breaker-open-ms", "60000")
                stub = self._stub(srv.address)
                for _ in range(2):
                    if who == "sidecar":
                        _, trailers = raw_unary(
                            srv.address, "ListPhoneCalls",
                            request("ListPhoneCalls", extension="0003*210"),
                            timeout=3.0 * SLOW, grpc_timeout=0.3)
                        self.assertIn(("grpc-status", "4"), trailers)
                    else:
                        with self.assertRaises(grpc.RpcError) as cm:
                            self.call("ListPhoneCalls", stub=stub,
                                      timeout=0.3, extension="0003*210")
                        self.assertEqual(cm.exception.code(),
                                         Code.DEADLINE_EXCEEDED)
                n = len(up.snapshot())
                _, rpc_call = self.call("ListPhoneCalls", stub=stub,
                                        extension="0003*210")
                self.assert_backend(rpc_call, "native")
                self.assertEqual(len(up.snapshot()), n)
                up.reset()
                up.handler = lambda req: json_answer(collection(), delay=5)

    def _watch_backend(self, stub, extension):
        """A Watch stream, and who answered it (its response headers)."""
        call = stub.WatchPhoneCalls(request("WatchPhoneCalls",
                                            extension=extension),
                                    timeout=5.0 * SLOW)
        self.addCleanup(call.cancel)
        return call, metadata_values(call.initial_metadata(),
                                     "x-uapi-backend")

    def test_watch_falls_back_when_the_upstream_is_down(self):
        """A Watch is an RPC like the others: refused at its first poll, or
        with the breaker open, it is served by the native engine instead
        of waiting (headers held back) for a poll that succeeds."""
        srv = start_sidecar(self, "--backend", "auto", "--uapi-url",
                            "http://127.0.0.1:%d" % free_port(),
                            *NO_BREAKER)
        stub = self._stub(srv.address)
        call, backend = self._watch_backend(stub, "0003*260")
        self.assertEqual(backend, ["native"])
        made, rpc_call = self.call(
            "CreateSimplePhoneCall", stub=stub, extension="0003*260",
            source=["0003*260"], destination=["0003*261"])
        self.assert_backend(rpc_call, "native")
        event = next(call)
        self.assertEqual((event.type, event.phone_call.id),
                         (Event.CREATED, made.phone_calls[0].id))
        # The breaker open: no poll at all.
        up, stub = self._auto_503(1, 60000)
        self.assertEqual(self._list_backend(stub), "uapi")
        n = len(up.snapshot())
        _, backend = self._watch_backend(stub, "0003*262")
        self.assertEqual(backend, ["native"])
        time.sleep(0.3)
        self.assertEqual(len(up.snapshot()), n)

    def _auto_503(self, failures, open_ms):
        up = start_standin(self)
        up.handler = lambda req: error_answer(503, "service_unavailable",
                                              "Maintenance.")
        srv = start_sidecar(self, "--backend", "auto", "--uapi-url", up.url,
                            "--breaker-failures", str(failures),
                            "--breaker-open-ms", str(open_ms))
        return up, self._stub(srv.address)

    def _list_backend(self, stub):
        """The backend that answered a List: "uapi" for an upstream error."""
        try:
            _, rpc_call = self.call("ListPhoneCalls", stub=stub,
                                    extension="0003*210")
        except grpc.RpcError as err:
            self.assertEqual(err.code(), Code.UNAVAILABLE, err.details())
            return "uapi"
        return metadata_values(rpc_call.initial_metadata(),
                               "x-uapi-backend")[0]

    def _hostile(self, stub):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("GetPhoneCall", stub=stub, extension="0003*210",
                      phone_call_id="a/b")
        self.assertEqual(cm.exception.code(), Code.INVALID_ARGUMENT)

    def test_refused_requests_do_not_reset_the_failure_count(self):
        """A request refused locally (bad address) never reached the
        upstream: it is no evidence that the upstream is well."""
        up, stub = self._auto_503(2, 60000)
        self.assertEqual(self._list_backend(stub), "uapi")
        self._hostile(stub)
        self.assertEqual(self._list_backend(stub), "uapi")
        # Two upstream failures in a row: open.
        self.assertEqual(self._list_backend(stub), "native",
                         "the circuit is still closed after two upstream "
                         "failures in a row (with a locally refused request "
                         "between them)")
        self.assertEqual(len(up.snapshot()), 2)

    def test_refused_request_is_not_a_successful_probe(self):
        up, stub = self._auto_503(3, 300)
        for _ in range(3):
            self.assertEqual(self._list_backend(stub), "uapi")
        self.assertEqual(self._list_backend(stub), "native")
        time.sleep(0.45)
        self._hostile(stub)  # after open-ms, before any real probe
        self.assertEqual(self._list_backend(stub), "uapi")  # the probe: 503
        n = len(up.snapshot())
        self.assertEqual(self._list_backend(stub), "native",
                         "the circuit closed without a successful probe")
        self.assertEqual(len(up.snapshot()), n)

    def test_dns_failure_falls_back(self):
        srv = start_sidecar(self, "--backend", "auto", "--uapi-url",
                            "http://nonexistent.invalid")
        stub = self._stub(srv.address)
        resp, rpc_call = self.call(
            "CreateSimplePhoneCall", stub=stub, extension="0003*280",
            source=["0003*280"], destination=["0003*281"])
        self.assert_backend(rpc_call, "native")
        self.assertRegex(resp.phone_calls[0].id, r"^[0-9a-f]{20}$")

    def test_breaker_opens_on_5xx_and_a_probe_closes_it(self):
        up = start_standin(self)
        up.handler = lambda req: error_answer(503, "service_unavailable",
                                              "Maintenance.")
        srv = start_sidecar(self, "--backend", "auto", "--uapi-url", up.url,
                            "--breaker-failures", "2",
                            "--breaker-open-ms", "500")
        stub = self._stub(srv.address)
        # 5xx after the request went out: returned as mapped, not served
        # natively.
        for _ in range(2):
            with self.assertRaises(grpc.RpcError) as cm:
                self.call("ListPhoneCalls", stub=stub, extension="0003*210")
            self.assert_error(cm.exception, Code.UNAVAILABLE,
                              "service_unavailable", "Maintenance.")
        n = len(up.snapshot())
        self.assertEqual(n, 2)
        # Open: the native engine answers, the upstream sees nothing.
        _, rpc_call = self.call("ListPhoneCalls", stub=stub,
                                extension="0003*210")
        self.assert_backend(rpc_call, "native")
        time.sleep(0.05)
        self.assertEqual(len(up.snapshot()), n)
        # Healthy again: a probe after --breaker-open-ms closes it.
        up.handler = FakeUapi()
        deadline = time.monotonic() + 5.0
        backend = None
        while time.monotonic() < deadline:
            _, rpc_call = self.call("ListPhoneCalls", stub=stub,
                                    extension="0003*210")
            backend = metadata_values(rpc_call.initial_metadata(),
                                      "x-uapi-backend")
            if backend == ["uapi"]:
                break
            time.sleep(0.1)
        self.assertEqual(backend, ["uapi"])


# ==== WatchPhoneCalls by polling =============================================

class WatchTests(Base):

    @classmethod
    def setUpClass(cls):
        cls.upstream = StandIn().start()
        cls.fake = FakeUapi()
        try:
            cls.sidecar = Sidecar("--backend", "uapi", "--uapi-url",
                                  cls.upstream.url, "--watch-poll-interval",
                                  "100", *NO_BREAKER, *BASE_FLAGS).start()
        except Exception:
            cls.upstream.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sidecar.stop_checked()
        finally:
            cls.upstream.stop()

    def setUp(self):
        super().setUp()
        with self.fake.lock:
            self.fake.calls.clear()
        self.up().handler = self.fake

    def watch(self, stub=None, **fields):
        w = WatchStream(stub or self.stub, **fields)
        self.addCleanup(w.cancel)
        return w

    def polls(self, ext):
        path = "/uapi/phoneCalls/@me/" + ext
        return [r for r in self.up().snapshot()
                if r.method == "GET" and r.path.rstrip("/") == path]

    def test_created_updated_ended(self):
        w = self.watch(extension="0003*220")
        self.up().wait_for(lambda: len(self.polls("0003*220")) >= 2, 3.0)
        self.assertGreaterEqual(len(self.polls("0003*220")), 2,
                                "no List polls at the upstream")
        self.assertEqual(metadata_values(w.call.initial_metadata(),
                                         "x-uapi-backend"), ["uapi"])
        call = self.fake.add("0003*220", "0003*221")
        ev = w.next_event()
        self.assertEqual((ev.type, ev.phone_call.id), (Event.CREATED,
                                                       call["id"]))
        self.assertEqual(ev.phone_call.extension, "0003*220")
        self.assertTrue(ev.time.seconds)
        with self.fake.lock:
            self.fake.calls[call["id"]]["phoneCallView"][1]["onHold"] = \
                "2012-06-27T13:11:00Z"
        ev = w.next_event()
        self.assertEqual((ev.type, ev.phone_call.id), (Event.UPDATED,
                                                       call["id"]))
        self.assertEqual(ev.phone_call.phone_call_views[1].on_hold.seconds,
                         tstamp("2012-06-27T13:11:00Z").seconds)
        with self.fake.lock:
            del self.fake.calls[call["id"]]
        ev = w.next_event()
        self.assertEqual((ev.type, ev.phone_call.id), (Event.ENDED,
                                                       call["id"]))
        # ENDED carries the call as last seen.
        self.assertTrue(ev.phone_call.phone_call_views[1].HasField("on_hold"))

    def test_watch_forwards_the_client_authorization(self):
        for size in (40, 3000):
            with self.subTest(size=size):
                token = "Bearer " + ("w4tch" * size)[:size]
                ext = "0003*2%02d" % (size % 97)
                self.up().reset()
                self.up().handler = self.fake
                w = WatchStream(self.stub, metadata=[("authorization", token)],
                                extension=ext)
                self.addCleanup(w.cancel)
                self.up().wait_for(lambda: len(self.polls(ext)) >= 2, 3.0)
                polls = self.polls(ext)
                self.assertGreaterEqual(len(polls), 2)
                sent = {p.header("authorization") or "" for p in polls}
                self.assertEqual([len(a) for a in sent], [len(token)],
                                 "a %d-byte authorization reached the "
                                 "upstream polls as %r bytes"
                                 % (len(token), [len(a) for a in sent]))
                self.assertEqual(sent, {token})
                w.cancel()

    def test_closed_connection_stops_polling(self):
        ch = grpc.insecure_channel(self.server().address)
        stub = pb2_grpc.PhoneCallServiceStub(ch)
        w = WatchStream(stub, extension="0003*235")
        self.up().wait_for(lambda: len(self.polls("0003*235")) >= 2, 3.0)
        self.assertGreaterEqual(len(self.polls("0003*235")), 2)
        ch.close()
        time.sleep(0.6)
        before = len(self.polls("0003*235"))
        time.sleep(1.0)
        self.assertLessEqual(len(self.polls("0003*235")) - before, 1,
                             "polling went on after the client went away")
        w.cancel()

    def test_upstream_refusing_the_watch_ends_it_with_the_error(self):
        """A poll refused for good (401, 400 extension_invalid) is what
        the same List would answer: the Watch ends with that status
        rather than hanging until the client's deadline."""
        cases = [("0003*251", error_answer(401, "access_denied",
                                           "You are not authorized."),
                  Code.UNAUTHENTICATED, "access_denied"),
                 ("0003*252", error_answer(400, "extension_invalid",
                                           "No such extension."),
                  Code.INVALID_ARGUMENT, "extension_invalid")]
        for ext, answer, code, uapi_code in cases:
            with self.subTest(ext=ext):
                self.up().handler = lambda req, a=answer: a
                t0 = time.monotonic()
                with self.assertRaises(grpc.RpcError) as cm:
                    list(self.stub.WatchPhoneCalls(
                        request("WatchPhoneCalls", extension=ext),
                        timeout=2.5 * SLOW))
                self.assert_error(cm.exception, code, uapi_code)
                self.assertLess(time.monotonic() - t0, 2.0 * SLOW)

    def test_two_watchers_share_one_poll_stream(self):
        ch2 = grpc.insecure_channel(self.server().address)
        self.addCleanup(ch2.close)
        stub2 = pb2_grpc.PhoneCallServiceStub(ch2)
        w1 = self.watch(extension="0003*230")
        w2 = self.watch(stub=stub2, extension="0003*230")
        time.sleep(0.5)
        start = len(self.polls("0003*230"))
        time.sleep(2.0)
        n = len(self.polls("0003*230")) - start
        # One stream at 100 ms gives ~20 polls in 2 s, two would give ~40.
        self.assertGreaterEqual(n, 8 / SLOW, "too few polls: %d" % n)
        self.assertLessEqual(n, 28, "%d polls in 2 s at a 100 ms interval "
                             "for two watchers of one extension" % n)
        call = self.fake.add("0003*230", "0003*231")
        for w in (w1, w2):
            ev = w.next_event()
            self.assertEqual((ev.type, ev.phone_call.id),
                             (Event.CREATED, call["id"]))
        # Both gone: polling stops.
        w1.cancel()
        w2.cancel()
        time.sleep(0.6)
        before = len(self.polls("0003*230"))
        time.sleep(1.0)
        self.assertLessEqual(len(self.polls("0003*230")) - before, 1,
                             "polling went on after the watchers left")


# ==== the REST facade ========================================================

REST_RE = re.compile(r"rest-facade serving\b.*?address=([0-9A-Za-z.:\[\]]+)")


class RestFacadeTests(Base):
    """--rest-listen: the native engine served as UAPI REST/JSON."""

    @classmethod
    def setUpClass(cls):
        cls.upstream = StandIn()  # unused, never started
        cls.sidecar = Sidecar("--backend", "native", "--rest-listen",
                              "127.0.0.1:0", *BASE_FLAGS).start()
        deadline = time.monotonic() + 5
        cls.rest = None
        while cls.rest is None and time.monotonic() < deadline:
            with cls.sidecar._cond:
                for line in cls.sidecar.lines:
                    m = REST_RE.search(line)
                    if m:
                        cls.rest = m.group(1)
            time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.sidecar.stop_checked()

    def setUp(self):
        super().setUp()
        if self.rest is None:
            self.fail("no 'rest-facade serving address=' log line; stderr:\n"
                      + self.sidecar.log_tail())
        host, port = self.rest.rsplit(":", 1)
        self.http = http.client.HTTPConnection(host, int(port), timeout=5)
        self.addCleanup(self.http.close)

    def rest_call(self, method, target, body=None, content_type=None):
        """(status, headers, parsed JSON or None) on the kept-alive
        connection."""
        headers = {}
        if body is not None:
            if not isinstance(body, (str, bytes)):
                body = json.dumps(body)
            headers["Content-Type"] = content_type or "application/json"
        self.http.request(method, target, body=body, headers=headers)
        r = self.http.getresponse()
        data = r.read()
        parsed = None
        if data:
            self.assertEqual(
                (r.getheader("content-type") or "").split(";")[0],
                "application/json", data)
            parsed = json.loads(data)
        return r.status, r, parsed

    def create(self, ext="0003*210", dest="0003*211", query="", **extra):
        body = {"extension": ext,
                "phoneCallView": [{"source": [ext], "destination": [dest],
                                   "callerId": "John Doe <4242425>"}]}
        body.update(extra)
        status, _, answer = self.rest_call(
            "POST", "/uapi/phoneCalls/@me/simple" + query, body)
        self.assertEqual(status, 200, answer)
        self.assertIsInstance(answer, list)
        self.assertEqual(len(answer), 1, answer)
        return answer[0]

    def assert_rest_error(self, status_code, code, answer_tuple):
        status, _, answer = answer_tuple
        self.assertEqual(status, status_code, answer)
        self.assertIsInstance(answer, dict, answer)
        self.assertEqual(set(answer), {"error"}, answer)
        self.assertEqual(answer["error"].get("code"), code, answer)
        self.assertTrue(answer["error"].get("message"), answer)

    def view(self, call, view_id):
        for v in call["phoneCallView"]:
            if v["id"] == view_id:
                return v
        self.fail("no view %s in %r" % (view_id, call))

    def test_create_get_list_hold_delete(self):
        call = self.create(nonce="rest-1")
        self.assertRegex(call["id"], r"^[0-9a-f]{20}$")
        self.assertEqual(call["extension"], "0003*210")
        self.assertEqual(call["nonce"], "rest-1")
        self.assertEqual([v["id"] for v in call["phoneCallView"]],
                         ["00", "01"])
        cid = call["id"]
        # GET one call: a collection with one entry.
        status, _, answer = self.rest_call(
            "GET", "/uapi/phoneCalls/@me/0003*210/" + cid)
        self.assertEqual(status, 200)
        self.assertEqual([c["id"] for c in answer["entry"]], [cid])
        self.assertEqual(answer["totalResults"], 1)
        # The same call over gRPC: one engine.
        got = self.rpc("GetPhoneCall", extension="0003*210",
                       phone_call_id=cid)
        self.assertEqual(got.id, cid)
        # List, the seed's and 4PSA's shapes: %2A, trailing slash.
        for target in ("/uapi/phoneCalls/@me/0003*210",
                       "/uapi/phoneCalls/@me/0003%2A210/",
                       "/uapi/phoneCalls/@me/@self/?count=5"):
            with self.subTest(target=target):
                status, _, answer = self.rest_call("GET", target)
                self.assertEqual(status, 200, answer)
                self.assertIn(cid, [c["id"] for c in answer["entry"]])
                self.assertIsInstance(answer["totalResults"], int)
        # OnHold, then the seed's OffHold request (singular path, its
        # spacing): each answers the PhoneCall.
        status, _, answer = self.rest_call(
            "PUT", "/uapi/phoneCalls/@me/0003*210/" + cid,
            {"action": "OnHold", "phoneCallViewId": "01"})
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["id"], cid)
        self.assertIn("onHold", self.view(answer, "01"))
        status, _, answer = self.rest_call(
            "PUT", "/uapi/phoneCall/@me/0003*210/" + cid,
            '{\n  "action": "OffHold",\n  "phoneCallViewId": "01"\n}')
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["id"], cid)
        self.assertNotIn("onHold", self.view(answer, "01"))
        self.assert_rest_error(400, "pc_phonecall_state_invalid",
                               self.rest_call(
                                   "PUT", "/uapi/phoneCalls/@me/0003*210/"
                                   + cid, {"action": "OffHold",
                                           "phoneCallViewId": "01"}))
        # Numbers as strings.
        status, _, answer = self.rest_call(
            "PUT", "/uapi/phoneCalls/@me/0003*210/" + cid + "/",
            {"action": "Park", "phoneCallViewId": "01",
             "maxInParking": "30"})
        self.assertEqual(status, 200, answer)
        self.assertIn("parked", self.view(answer, "01"))
        self.assertIsInstance(self.view(answer, "01").get("parkedPos"), int)
        # DELETE: an array of ids; the call is gone after.
        status, _, answer = self.rest_call(
            "DELETE", "/uapi/phoneCalls/@me/0003*210/" + cid)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer, [{"id": cid}])
        status, _, answer = self.rest_call(
            "GET", "/uapi/phoneCalls/@me/0003*210/" + cid)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer.get("entry", []), [])
        self.assertEqual(answer.get("totalResults"), 0)
        # A named call that is gone: as GetPhoneCall/Hangup over gRPC,
        # NOT_FOUND pc_phoncall_invalid, which UAPI answers 400.
        self.assert_rest_error(400, "pc_phoncall_invalid", self.rest_call(
            "DELETE", "/uapi/phoneCalls/@me/0003*210/" + cid))
        # Nothing to hang up on an extension is not an error.
        status, _, answer = self.rest_call(
            "DELETE", "/uapi/phoneCalls/@me/0003*299")
        self.assertIn(status, (200, 204), answer)
        self.assertIn(answer, (None, []))

    def test_seed_request_shapes(self):
        call = self.create(ext="0003*240", dest="0003*241",
                           query="?waitForPickup=20&callDuration=60")
        cid = call["id"]
        # %2A in the PUT path; numbers as strings in the body.
        status, _, answer = self.rest_call(
            "PUT", "/uapi/phoneCalls/@me/0003%2A240/" + cid,
            {"action": "Whisper", "phoneCallViewId": "00",
             "sendCallTo": "0003*242", "private": "1",
             "waitForPickUp": "20", "callerID": "Whisper <1>"})
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["id"], cid)
        # Create with the extension as a number and a bare destination.
        status, _, answer = self.rest_call(
            "POST", "/uapi/phoneCalls/@me/simple/",
            '{"extension":250,"phoneCallView":[{"source":["250"],'
            '"destination":"251"}]}')
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer[0]["extension"], "250")
        made = answer[0]["id"]
        # Hang up every call of the extension.
        status, _, answer = self.rest_call(
            "DELETE", "/uapi/phoneCalls/@me/250/")
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer, [{"id": made}])

    def test_chunked_request_body(self):
        body = json.dumps({"extension": "0003*290", "phoneCallView": [
            {"source": ["0003*290"], "destination": ["0003*291"]}]})
        self.http.request("POST", "/uapi/phoneCalls/@me/simple",
                          body=iter([body[:10].encode(), body[10:].encode()]),
                          headers={"Content-Type": "application/json"},
                          encode_chunked=True)
        r = self.http.getresponse()
        answer = json.loads(r.read())
        self.assertEqual(r.status, 200, answer)
        self.assertEqual(answer[0]["extension"], "0003*290")

    def test_pipelined_requests(self):
        call = self.create(ext="0003*295", dest="0003*296")
        host, port = self.rest.rsplit(":", 1)
        target = "/uapi/phoneCalls/@me/0003*295/" + call["id"]
        one = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target).encode()
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(one * 3)
            f = sock.makefile("rb")
            answers = []
            for _ in range(3):
                status = int(f.readline().split()[1])
                length = 0
                while True:
                    line = f.readline().strip()
                    if not line:
                        break
                    name, _, value = line.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                answers.append((status, json.loads(f.read(length))))
            f.close()
        for status, answer in answers:
            self.assertEqual(status, 200)
            self.assertEqual([c["id"] for c in answer["entry"]],
                             [call["id"]])

    def test_oversized_body_is_refused(self):
        """A 20 MiB body: refused (400/413) with UAPI's error body, or by
        closing the connection; the facade goes on serving."""
        body = b'{"extension":"210","nonce":"' + b"n" * (20 << 20) + b'"}'
        got = None
        try:
            self.http.request("POST", "/uapi/phoneCalls/@me/simple", body,
                              {"Content-Type": "application/json"})
            r = self.http.getresponse()
            got = (r.status, r.getheader("content-type"), r.read())
        except (ConnectionError, BrokenPipeError):
            pass  # refused by closing the connection: fine too
        self.http.close()
        call = self.create(ext="0003*297", dest="0003*298")
        self.assertRegex(call["id"], r"^[0-9a-f]{20}$")
        if got is not None:
            status, ctype, data = got
            self.assertIn(status, (400, 413), data)
            self.assertEqual((ctype or "").split(";")[0], "application/json",
                             "HTTP %d answered with %r, not UAPI's error "
                             "body: %r" % (status, ctype, data[:200]))
            self.assertTrue(json.loads(data)["error"]["code"])

    def test_errors(self):
        self.assert_rest_error(400, "pc_phoncall_invalid", self.rest_call(
            "GET", "/uapi/phoneCalls/@me/0003*210/a%2Fb"))
        self.assert_rest_error(400, "user_invalid", self.rest_call(
            "GET", "/uapi/phoneCalls/%2E%2E/210"))
        self.assert_rest_error(400, "extension_invalid", self.rest_call(
            "GET", "/uapi/phoneCalls/@me/210%2F"))
        self.assert_rest_error(400, "pc_phoncall_invalid", self.rest_call(
            "PUT", "/uapi/phoneCalls/@me/0003*210/0123456789abcdef0123",
            {"action": "OnHold", "phoneCallViewId": "00"}))
        call = self.create(ext="0003*260", dest="0003*261")
        path = "/uapi/phoneCalls/@me/0003*260/" + call["id"]
        self.assert_rest_error(400, "pc_action_invalid", self.rest_call(
            "PUT", path, {"action": "Dance", "phoneCallViewId": "00"}))
        self.assert_rest_error(400, "pc_phoncallview_invalid", self.rest_call(
            "PUT", path, {"action": "OnHold", "phoneCallViewId": "07"}))
        self.assert_rest_error(400, "request_invalid", self.rest_call(
            "PUT", path, '{"action": "OnHold",'))
        self.assert_rest_error(404, "resource_not_found", self.rest_call(
            "GET", "/uapi/extensions/@me/210"))
        self.assert_rest_error(501, "request_not_implemented", self.rest_call(
            "PATCH", path, {"action": "OnHold"}))
        # Still serving on the same connection.
        status, _, answer = self.rest_call("GET", path)
        self.assertEqual(status, 200)
        self.assertEqual([c["id"] for c in answer["entry"]], [call["id"]])



# ==== access control in front of UAPI =======================================

class AccessTests(Base):
    """--tokens-file with the translation backend: tokens and addresses are
    checked before any upstream request, the token's user id goes into the
    path (UAPI's own @me would be the user of the sidecar's upstream
    credentials), and the client's token, meant for the sidecar, is never
    forwarded."""

    uses_main = False
    ALICE = "alice-token-0123456789"  # user 12, extension 0003*210
    BOB = "bob-token-0123456789ab"  # user 34, every extension
    UPSTREAM = "upstream-token-Zr4k"
    TOKENS = "%s 12 0003*210\n%s 34 *\n" % (ALICE, BOB)

    def _sidecar(self, *extra, own_credentials=True):
        up = start_standin(self)
        self.fake = FakeUapi()
        up.handler = self.fake
        d = tempfile.mkdtemp(prefix="usc-uapi-access-")
        self.addCleanup(common._rmtree, d)
        tokens = os.path.join(d, "tokens")
        standin.write_file_atomically(tokens, self.TOKENS)
        flags = ["--uapi-url", up.url, "--tokens-file", tokens,
                 "--watch-poll-interval", "100", *NO_BREAKER, *extra]
        if "--backend" not in extra:
            flags += ["--backend", "uapi"]
        if own_credentials:
            token = os.path.join(d, "upstream-token")
            standin.write_file_atomically(token, self.UPSTREAM + "\n")
            flags += ["--uapi-token-file", token]
        srv = start_sidecar(self, *flags)
        ch = grpc.insecure_channel(srv.address)
        self.addCleanup(ch.close)
        return up, srv, pb2_grpc.PhoneCallServiceStub(ch)

    @staticmethod
    def auth(token):
        return [("authorization", "Bearer " + token)]

    def test_refused_before_any_upstream_request(self):
        up, srv, stub = self._sidecar()
        for meta in [None, self.auth("not-a-token-0123456789")]:
            self.rpc_error("ListPhoneCalls", Code.UNAUTHENTICATED,
                           "access_denied", stub=stub, metadata=meta,
                           extension="0003*210")
        bob, alice = self.auth(self.BOB), self.auth(self.ALICE)
        hidden = [
            (bob, "GetPhoneCall", dict(user_id="12", extension="0003*210",
                                       phone_call_id=CALL_ID)),
            (bob, "ListPhoneCalls", dict(user_id="12", extension="@self")),
            (bob, "OnHold", dict(user_id="12", extension="0003*210",
                                 phone_call_id=CALL_ID,
                                 phone_call_view_id="01")),
            (bob, "HangupPhoneCalls", dict(user_id="12",
                                           extension="0003*210")),
            (bob, "CreateSimplePhoneCall", dict(
                user_id="12", extension="0003*210", source=["0003*210"],
                destination=["0003*211"])),
            (alice, "ListPhoneCalls", dict(extension="0003*211")),
            (alice, "GetPhoneCall", dict(user_id="34", extension="0003*210",
                                         phone_call_id=CALL_ID)),
        ]
        for meta, method, fields in hidden:
            with self.subTest(method=method, fields=fields):
                self.rpc_error(method, Code.NOT_FOUND, "pc_phoncall_invalid",
                               stub=stub, metadata=meta, **fields)
        w = WatchStream(stub, metadata=bob, user_id="12")
        self.assert_error(w.events.get(timeout=RPC_TIMEOUT), Code.NOT_FOUND,
                          "pc_phoncall_invalid")
        time.sleep(0.3)  # a poll would have come by now
        self.assertEqual(up.snapshot(), [])

    def test_token_user_in_the_path_and_own_credentials_upstream(self):
        up, srv, stub = self._sidecar()
        alice, bob = self.auth(self.ALICE), self.auth(self.BOB)
        made = self.rpc_uapi("CreateSimplePhoneCall", stub=stub,
                             metadata=alice, user_id="@me",
                             extension="0003*210", source=["0003*210"],
                             destination=["0003*024"]).phone_calls[0]
        self.rpc_uapi("GetPhoneCall", stub=stub, metadata=alice,
                      extension="@self", phone_call_id=made.id)
        self.rpc_uapi("ListPhoneCalls", stub=stub, metadata=alice,
                      user_id="@viewer", extension="0003*210")
        self.rpc_uapi("ListPhoneCalls", stub=stub, metadata=bob,
                      extension="@self")
        self.rpc_uapi("HangupPhoneCalls", stub=stub, metadata=bob,
                      user_id="34", extension="@self")
        got = [(r.method, r.path.rstrip("/")) for r in up.snapshot()]
        self.assertEqual(got, [
            ("POST", "/uapi/phoneCalls/12/simple"),
            ("GET", "/uapi/phoneCalls/12/0003*210/" + made.id),
            ("GET", "/uapi/phoneCalls/12/0003*210"),
            ("GET", "/uapi/phoneCalls/34/@self"),
            ("DELETE", "/uapi/phoneCalls/34/@self"),
        ])
        for r in up.snapshot():
            self.assertEqual(r.header_values("authorization"),
                             ["Bearer " + self.UPSTREAM], r)
        self.assert_not_logged(srv, self.ALICE, self.BOB, self.UPSTREAM)

    def test_watch_polls_per_user(self):
        up, srv, stub = self._sidecar()
        a = WatchStream(stub, metadata=self.auth(self.ALICE))
        self.addCleanup(a.cancel)
        b = WatchStream(stub, metadata=self.auth(self.BOB), user_id="@me")
        self.addCleanup(b.cancel)

        def polled(path):
            return [r for r in up.snapshot()
                    if r.method == "GET" and r.path.rstrip("/") == path]
        up.wait_for(lambda: len(polled("/uapi/phoneCalls/12/0003*210")) >= 2
                    and len(polled("/uapi/phoneCalls/34/@self")) >= 2,
                    3.0 * SLOW)
        self.assertGreaterEqual(len(polled("/uapi/phoneCalls/12/0003*210")), 2)
        self.assertGreaterEqual(len(polled("/uapi/phoneCalls/34/@self")), 2)
        self.assertEqual({r.path.rstrip("/") for r in up.snapshot()},
                         {"/uapi/phoneCalls/12/0003*210",
                          "/uapi/phoneCalls/34/@self"})
        call = self.fake.add("0003*210", "0003*024")
        ev = a.next_event()
        self.assertEqual((ev.type, ev.phone_call.id), (Event.CREATED,
                                                       call["id"]))

    def test_client_token_is_not_forwarded(self):
        up, srv, stub = self._sidecar(own_credentials=False)
        self.assertIn("not forwarded upstream", srv.log_tail())
        self.rpc_uapi("ListPhoneCalls", stub=stub,
                      metadata=self.auth(self.ALICE), extension="0003*210")
        reqs = up.snapshot()
        self.assertEqual(len(reqs), 1, reqs)
        self.assertEqual(reqs[0].header_values("authorization"), [])

    def test_auto_fallback_keeps_the_token_user(self):
        up, srv, stub = self._sidecar("--backend", "auto")
        alice, bob = self.auth(self.ALICE), self.auth(self.BOB)
        up.stop()
        made, rpc_call = self.call(
            "CreateSimplePhoneCall", stub=stub, metadata=alice,
            extension="0003*210", source=["0003*210"],
            destination=["0003*024"])
        self.assert_backend(rpc_call, "native")
        self.assertEqual(made.phone_calls[0].owner_id, "12")
        listed, rpc_call = self.call("ListPhoneCalls", stub=stub,
                                     metadata=bob, extension="@self")
        self.assert_backend(rpc_call, "native")
        self.assertEqual(list(listed.phone_calls), [])
        self.rpc_error("GetPhoneCall", Code.NOT_FOUND, "pc_phoncall_invalid",
                       stub=stub, metadata=bob, user_id="12",
                       extension="0003*210",
                       phone_call_id=made.phone_calls[0].id)

if __name__ == "__main__":
    common.main(__name__)
