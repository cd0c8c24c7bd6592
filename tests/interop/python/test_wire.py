#!/usr/bin/python3
"""Wire suite: gRPC over HTTP/2 as bytes, with python3-h2 and raw sockets.

Run: /usr/bin/python3 tests/interop/python/test_wire.py [Class[.test] ...]
Same environment as test_interop.py (USC_SIDECAR_BINARY,
USC_SIDECAR_WRAPPER, which may be tests/interop/pair.sh).
"""

import base64
import os
import random
import re
import socket
import struct
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

import common  # noqa: E402
from common import RPC_TIMEOUT, SLOW, Sidecar  # noqa: E402

pb2, pb2_grpc = common.load_stubs()

PATH = "/%s/" % common.SERVICE
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GRPC_MESSAGE_RE = re.compile(rb"^(?:[\x20-\x24\x26-\x7e]|%[0-9A-Fa-f]{2})*$")

MAIN = None


def setUpModule():
    global MAIN
    MAIN = Sidecar().start()


def tearDownModule():
    if MAIN is not None:
        MAIN.stop_checked()


def frame(message, compressed=False):
    """The 5-byte gRPC prefix and the message."""
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def create_request(nonce, ext="0003*210"):
    return pb2.CreatePhoneCallRequest(extension=ext, source=[ext],
                                      destination=["0003*211"],
                                      nonce=nonce).SerializeToString()


def b64decode_unpadded(value):
    return base64.b64decode(value + b"=" * (-len(value) % 4))


class Response:
    """What came back on one stream."""

    def __init__(self):
        self.headers = None      # dict of the first HEADERS block
        self.trailers = None     # dict of the trailing HEADERS block
        self.trailers_only = False
        self.data = bytearray()
        self.data_frames = 0
        self.ended = False
        self.reset = None        # RST_STREAM error code

    @property
    def done(self):
        return self.ended or self.reset is not None

    def status_headers(self):
        """Where grpc-status is: the trailers, or the only HEADERS."""
        return self.headers if self.trailers_only else (self.trailers or {})

    @property
    def grpc_status(self):
        value = self.status_headers().get(b"grpc-status")
        return None if value is None else int(value)

    def messages(self):
        out, data = [], bytes(self.data)
        while data:
            flags, length = struct.unpack(">BI", data[:5])
            assert flags == 0, "compressed response"
            out.append(data[5:5 + length])
            data = data[5 + length:]
        return out


class H2Client:
    """A sans-I/O h2 client driven over a blocking socket."""

    def __init__(self, address, timeout=RPC_TIMEOUT):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.flush()
        self.streams = {}
        self.terminated = None   # ConnectionTerminated event
        self.eof = False

    def close(self):
        self.sock.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self, method, content_type="application/grpc", extra=()):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"),
                   (":path", method if method.startswith("/") else PATH + method),
                   (":authority", "127.0.0.1")]
        if content_type is not None:
            headers.append(("content-type", content_type))
        headers += [("te", "trailers")] + list(extra)
        self.conn.send_headers(sid, headers)
        self.flush()
        self.streams[sid] = Response()
        return sid

    def send(self, sid, data, end=False):
        self.conn.send_data(sid, data, end_stream=end)
        self.flush()

    def send_all(self, sid, data, deadline):
        """Sends `data` and END_STREAM within the peer's flow-control
        windows, reading (window updates) as needed."""
        off = 0
        while off < len(data):
            n = min(self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size, len(data) - off)
            if n > 0:
                self.send(sid, data[off:off + n])
                off += n
            else:
                self.pump(deadline)
        self.send(sid, b"", end=True)

    def open_windows(self, size):
        """Lets the server send `size` bytes per stream and on the whole
        connection without waiting for WINDOW_UPDATE."""
        self.conn.update_settings(
            {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: size})
        self.conn.increment_flow_control_window(size)
        self.flush()

    def reset(self, sid, code=8):  # CANCEL
        self.conn.reset_stream(sid, code)
        self.flush()

    def unary(self, method, message, **kw):
        sid = self.start(method, **kw)
        self.send(sid, frame(message), end=True)
        return self.wait(sid)

    def wait(self, sid, timeout=None):
        """Reads until stream `sid` ended or was reset."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.streams[sid].done:
            self.pump(deadline)
        return self.streams[sid]

    def pump(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no answer in time")
        if self.eof:
            raise AssertionError("connection closed by the server (%r)"
                                 % (self.terminated,))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("no answer in time")
        if not data:
            self.eof = True
            return
        for event in self.conn.receive_data(data):
            self.on_event(event)
        self.flush()

    def on_event(self, event):
        r = self.streams.get(getattr(event, "stream_id", None))
        if isinstance(event, h2.events.ResponseReceived):
            r.headers = dict(event.headers)
            r.trailers_only = event.stream_ended is not None
        elif isinstance(event, h2.events.DataReceived):
            r.data += event.data
            r.data_frames += 1
            self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            r.trailers = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            r.ended = True
        elif isinstance(event, h2.events.StreamReset):
            r.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event


class WireTest(unittest.TestCase):

    def setUp(self):
        if not MAIN.alive():
            self.fail("the sidecar died earlier (exit code %r); stderr tail:\n%s"
                      % (MAIN.proc.poll(), MAIN.log_tail()))

    def client(self):
        c = H2Client(MAIN.address)
        self.addCleanup(c.close)
        return c

    def assert_grpc_headers(self, headers):
        self.assertEqual(headers.get(b":status"), b"200", headers)
        self.assertTrue(headers.get(b"content-type", b"").startswith(
            b"application/grpc"), headers)

    def assert_created(self, r, nonce):
        self.assertEqual(r.grpc_status, 0, (r.headers, r.trailers))
        self.assert_grpc_headers(r.headers)
        (message,) = r.messages()
        resp = pb2.CreatePhoneCallResponse.FromString(message)
        if nonce is not None:
            self.assertEqual(resp.phone_calls[0].nonce, nonce)

    def assert_serving(self, c=None):
        """A normal exchange works (on `c`, else on a new connection)."""
        nonce = "alive-%d" % random.randrange(1 << 30)
        self.assert_created((c or self.client()).unary(
            "CreateSimplePhoneCall", create_request(nonce)), nonce)


class ProtocolTests(WireTest):

    def test_success_has_headers_data_trailers(self):
        r = self.client().unary("CreateSimplePhoneCall", create_request("ok"))
        self.assertFalse(r.trailers_only)
        self.assert_created(r, "ok")
        self.assertNotIn(b"grpc-status", r.headers)
        self.assertIsNotNone(r.trailers)
        self.assertIsNone(r.reset)

    def test_non_grpc_content_type_is_415(self):
        c = self.client()
        for ctype in ("application/json", "text/plain", None):
            with self.subTest(content_type=ctype):
                sid = c.start("GetPhoneCall", content_type=ctype)
                c.send(sid, b"{}", end=True)
                r = c.wait(sid)
                self.assertEqual(r.headers.get(b":status"), b"415", r.headers)
        self.assert_serving(c)

    def test_grpc_content_type_variants_are_accepted(self):
        c = self.client()
        for ctype in ("application/grpc", "application/grpc+proto"):
            with self.subTest(content_type=ctype):
                sid = c.start("CreateSimplePhoneCall", content_type=ctype)
                c.send(sid, frame(create_request(ctype)), end=True)
                self.assert_created(c.wait(sid), ctype)

    def test_unsupported_compression(self):
        c = self.client()
        sid = c.start("CreateSimplePhoneCall", extra=[("grpc-encoding", "snappy")])
        c.send(sid, frame(b"\x00snappy-bytes", compressed=True), end=True)
        r = c.wait(sid)
        self.assertEqual(r.grpc_status, 12, (r.headers, r.trailers))
        accept = (r.status_headers().get(b"grpc-accept-encoding")
                  or r.headers.get(b"grpc-accept-encoding"))
        self.assertIsNotNone(accept, (r.headers, r.trailers))
        self.assertNotIn(b"snappy", accept)
        self.assertEqual(r.messages(), [])
        self.assert_serving(c)

    def test_message_in_one_byte_frames(self):
        c = self.client()
        sid = c.start("CreateSimplePhoneCall")
        for byte in frame(create_request("one-byte-at-a-time")):
            c.send(sid, bytes([byte]))
        c.send(sid, b"", end=True)
        self.assert_created(c.wait(sid), "one-byte-at-a-time")

    def test_large_message_both_ways(self):
        """A 3 MiB request and its 3 MiB answer, with the client's windows
        at the default 64 KiB and opened wide (as grpc-core does)."""
        nonce = "n" * (3 * 1024 * 1024)
        for window in (None, 16 * 1024 * 1024):
            with self.subTest(window=window):
                c = self.client()
                if window:
                    c.open_windows(window)
                sid = c.start("CreateSimplePhoneCall")
                deadline = time.monotonic() + RPC_TIMEOUT
                c.send_all(sid, frame(create_request(nonce)), deadline)
                r = c.wait(sid, timeout=5 * SLOW)
                self.assert_created(r, nonce)

    def test_huge_length_prefix_is_refused_at_once(self):
        c = self.client()
        for length in (1 << 30, 4 * 1024 * 1024 + 1, 0xFFFFFFFF):
            with self.subTest(length=length):
                sid = c.start("CreateSimplePhoneCall")
                # Only the prefix and a few bytes: an answer proves the
                # server did not wait to buffer the promised body.
                c.send(sid, struct.pack(">BI", 0, length) + b"\x0a\x03abc")
                t0 = time.monotonic()
                r = c.wait(sid, timeout=5 * SLOW)
                self.assertLess(time.monotonic() - t0, 5 * SLOW)
                self.assertEqual(r.grpc_status, 8, (r.headers, r.trailers))
        self.assert_serving(c)

    def test_trailers_only_errors(self):
        c = self.client()
        cases = [("GetPhoneCall", pb2.GetPhoneCallRequest(
                      extension="210", phone_call_id="bad!").SerializeToString(),
                  3, b"pc_phoncall_invalid"),
                 ("GetPhoneCall", pb2.GetPhoneCallRequest(
                      extension="210", phone_call_id="0123456789abcdef0123"
                  ).SerializeToString(), 5, b"pc_phoncall_invalid"),
                 ("NoSuchMethod", b"", 12, None),
                 ("/no.such.Service/Method", b"", 12, None),
                 ("GetPhoneCall", b"\xff\xff\xff\xff", 13, None)]
        for method, message, status, uapi_code in cases:
            with self.subTest(method=method, status=status):
                r = c.unary(method, message)
                self.assertTrue(r.trailers_only,
                                "expected one HEADERS with END_STREAM, got "
                                "headers %r, %d DATA frames, trailers %r"
                                % (r.headers, r.data_frames, r.trailers))
                self.assertEqual(r.data_frames, 0)
                self.assert_grpc_headers(r.headers)
                self.assertEqual(r.grpc_status, status)
                if uapi_code is None:
                    continue
                self.assertEqual(r.headers.get(b"uapi-error-code"), uapi_code)
                st, infos = common.parse_status_details(
                    b64decode_unpadded(r.headers[b"grpc-status-details-bin"]))
                self.assertEqual(st.code, status)
                self.assertEqual(st.message.encode(), urllib.parse.unquote_to_bytes(
                    r.headers[b"grpc-message"]))
                self.assertEqual([i.reason.encode() for i in infos], [uapi_code])
        self.assert_serving(c)

    def test_grpc_message_is_percent_encoded(self):
        c = self.client()
        nasty = "\u00fc%\n\t\"caf\u00e9 50%"
        requests = [
            ("GetPhoneCall", pb2.GetPhoneCallRequest(extension="210",
                                                     phone_call_id=nasty)),
            ("GetPhoneCall", pb2.GetPhoneCallRequest(extension=nasty,
                                                     phone_call_id="abc")),
            ("GetPhoneCall", pb2.GetPhoneCallRequest(user_id=nasty,
                                                     extension="210")),
            ("ListPhoneCalls", pb2.ListPhoneCallsRequest(extension="210",
                                                         sort_order=nasty)),
            ("ListPhoneCalls", pb2.ListPhoneCallsRequest(
                extension="210", fields=[nasty])),
            ("N\u00f6Method%", pb2.GetPhoneCallRequest()),
        ]
        escaped = 0
        for method, req in requests:
            with self.subTest(method=method, request=str(req)):
                r = c.unary(urllib.parse.quote(method, safe="%"),
                            req.SerializeToString())
                self.assertNotEqual(r.grpc_status, 0)
                raw = r.status_headers().get(b"grpc-message", b"")
                self.assertTrue(raw, "no grpc-message")
                self.assertRegex(raw, GRPC_MESSAGE_RE)
                text = urllib.parse.unquote_to_bytes(raw).decode("utf-8")
                if "%" in raw.decode():
                    escaped += 1
                    self.assertNotIn("%25", text)
        self.assertGreater(escaped, 0,
                           "no grpc-message needed escaping: none names the "
                           "offending value")

    def test_server_side_deadline(self):
        c = self.client()
        sid = c.start("WatchPhoneCalls", extra=[("grpc-timeout", "300m")])
        c.send(sid, frame(pb2.WatchPhoneCallsRequest(
            extension="9*9").SerializeToString()), end=True)
        t0 = time.monotonic()
        r = c.wait(sid, timeout=5 * SLOW)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.grpc_status, 4, (r.headers, r.trailers))
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 2 * SLOW)
        # A generous timeout does not get in the way.
        sid = c.start("CreateSimplePhoneCall", extra=[("grpc-timeout", "10S")])
        c.send(sid, frame(create_request("in-time")), end=True)
        self.assert_created(c.wait(sid), "in-time")

    def test_50_concurrent_streams_on_one_connection(self):
        c = self.client()
        sids = [c.start("CreateSimplePhoneCall") for _ in range(50)]
        for i, sid in reversed(list(enumerate(sids))):
            c.send(sid, frame(create_request("s%d" % i)), end=True)
        for i, sid in enumerate(sids):
            self.assert_created(c.wait(sid), "s%d" % i)

    def test_client_reset_mid_request(self):
        c = self.client()
        sid = c.start("CreateSimplePhoneCall")
        c.send(sid, frame(create_request("never"))[:3])
        c.reset(sid)
        sid = c.start("CreateSimplePhoneCall")
        c.send(sid, frame(create_request("never"))[:12])
        c.reset(sid)
        sid = c.start("WatchPhoneCalls")
        c.send(sid, frame(pb2.WatchPhoneCallsRequest().SerializeToString()),
               end=True)
        c.reset(sid)
        self.assert_serving(c)
        self.assertIsNone(c.terminated)

    def test_ping_is_answered(self):
        c = self.client()
        c.conn.ping(b"usc-ping")
        c.flush()
        deadline = time.monotonic() + RPC_TIMEOUT
        acked = []
        orig = c.on_event

        def on_event(event):
            if isinstance(event, h2.events.PingAckReceived):
                acked.append(event.ping_data)
            orig(event)

        c.on_event = on_event
        while not acked:
            c.pump(deadline)
        self.assertEqual(acked, [b"usc-ping"])


class TimerTests(WireTest):
    """Output made by the server's timers (a ring that turns into an
    answer) reaches a connection that sends nothing meanwhile."""

    @classmethod
    def setUpClass(cls):
        cls.ringing = Sidecar("--ring-delay", "300").start()
        cls.addClassCleanup(cls.ringing.stop_checked)

    def test_ring_delay_update_is_sent_without_client_traffic(self):
        watcher, creator = (H2Client(self.ringing.address) for _ in range(2))
        self.addCleanup(watcher.close)
        self.addCleanup(creator.close)
        sid = watcher.start("WatchPhoneCalls")
        watcher.send(sid, frame(pb2.WatchPhoneCallsRequest(
            extension="7*1").SerializeToString()), end=True)
        deadline = time.monotonic() + RPC_TIMEOUT
        nonces = iter(range(1000))

        def events():
            return [pb2.PhoneCallEvent.FromString(m)
                    for m in watcher.streams[sid].messages()]

        # The response headers come once the subscription is live (a
        # polling backend: once its first poll is in).
        while watcher.streams[sid].headers is None:
            watcher.pump(deadline)
        self.assertFalse(watcher.streams[sid].trailers_only,
                         watcher.streams[sid].headers)
        # Calls are made until the watch reports one: it is live then.
        while not events():
            self.assert_created(creator.unary(
                "CreateSimplePhoneCall",
                create_request("probe%d" % next(nonces), ext="7*1")), None)
            try:
                watcher.pump(time.monotonic() + 0.2 * SLOW)
            except AssertionError:
                pass
            self.assertLess(time.monotonic(), deadline, "Watch stays silent")
        first = events()[0].phone_call.id
        # Its answer comes from the ring-delay timer, 300 ms later.
        def answered():
            return [e for e in events() if e.phone_call.id == first
                    and e.type == pb2.PhoneCallEvent.UPDATED]

        deadline = time.monotonic() + 3 * SLOW
        while not answered():
            watcher.pump(deadline)
        view = answered()[0].phone_call.phone_call_views[1]
        self.assertEqual(view.status, pb2.PhoneCallView.STATUS_ON_CALL)


class JunkTests(WireTest):
    """Misbehaving connections are answered or dropped; meanwhile a normal
    gRPC client on another connection is served."""

    def setUp(self):
        super().setUp()
        self.channel = grpc.insecure_channel(MAIN.address)
        self.addCleanup(self.channel.close)
        self.stub = pb2_grpc.PhoneCallServiceStub(self.channel)

    def normal_call_works(self):
        req = pb2.CreatePhoneCallRequest(extension="210", source=["210"],
                                         destination=["211"], nonce="normal")
        resp = self.stub.CreateSimplePhoneCall(req, timeout=RPC_TIMEOUT)
        self.assertEqual(resp.phone_calls[0].nonce, "normal")

    def raw(self, payload=b""):
        host, port = MAIN.address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=RPC_TIMEOUT)
        self.addCleanup(sock.close)
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server may drop us before it read everything
        return sock

    def assert_dropped(self, sock):
        """The server closes the connection within a bound (RFC 9113 3.4: a
        bad preface is a connection error); returns what it sent first."""
        got = b""
        deadline = time.monotonic() + 5 * SLOW
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("connection still open after %.0f s; got %r"
                          % (5 * SLOW, got[:64]))
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk

    def test_random_bytes(self):
        rng = random.Random(1234)
        socks = []
        for n in (24, 100, 4096, 70000):
            junk = bytes(rng.randrange(256) for _ in range(n))
            socks.append(self.raw(b"X" + junk[1:]))  # never a preface
        self.normal_call_works()
        for sock in socks:
            self.assert_dropped(sock)
        self.normal_call_works()

    def test_http1_request(self):
        sock = self.raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.normal_call_works()
        got = self.assert_dropped(sock)
        # What came first, if anything: HTTP/1.1, or HTTP/2 SETTINGS/GOAWAY.
        if got:
            self.assertTrue(got.startswith(b"HTTP/1.") or got[3:4] in (b"\x04", b"\x07"),
                            got[:64])
        self.normal_call_works()

    def test_truncated_preface_then_close(self):
        for n in (1, 10, len(PREFACE) - 1):
            self.raw(PREFACE[:n]).close()
        self.normal_call_works()

    def test_stalled_connections(self):
        stalled = [self.raw(PREFACE),                       # preface only
                   self.raw(b"X"),                           # one junk byte
                   self.raw(PREFACE[:10]),                   # half a preface
                   self.raw(PREFACE + b"\x00\x00"),          # half a frame header
                   self.raw(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
                   self.raw()]                               # nothing at all
        self.normal_call_works()
        c = self.client()
        self.assert_serving(c)
        for sock in stalled:
            sock.close()
        self.normal_call_works()

    def test_many_junk_connections_at_once(self):
        socks = [self.raw(b"X" + os.urandom(63)) for _ in range(30)]
        socks += [self.raw(PREFACE) for _ in range(30)]
        self.normal_call_works()
        for sock in socks[:30]:
            self.assert_dropped(sock)
        for sock in socks:
            sock.close()
        self.normal_call_works()


if __name__ == "__main__":
    common.main(__name__)
