#!/usr/bin/python3
"""Hostile suite: HTTP/2 peers that attack the sidecar, as frames on raw
sockets (hyperframe + hpack, which python3-h2 brings). One test per
attack. Each checks that the abuser is cut off (GOAWAY and close, or its
stream refused), that a well-behaved client keeps being answered on its
own connections meanwhile (a grpcio channel, and a fresh connection for
every call), that the sidecar stays up, and that its resident memory
(process_resident_memory_bytes on the admin endpoint) grows by less than a
bound the test states, taken from the transport's limits (README.md,
"Security: hostile peers").

Run: /usr/bin/python3 tests/interop/python/test_hostile.py [Class[.test] ...]
Same environment as test_interop.py (USC_SIDECAR_BINARY,
USC_SIDECAR_WRAPPER). On an ASan build the bounds are doubled, plus the
quarantine of freed blocks, which this suite sets to 16 MiB (ASan's
default, 256 MiB, would hide any bound); under valgrind memory is not
measured. USC_HOSTILE_RSS=1 prints each test's growth and bound.
"""

import http.client
import os
import re
import select
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from hyperframe import frame as hf  # noqa: E402

import common  # noqa: E402
from common import RPC_TIMEOUT, SLOW, SLOWED, Sidecar  # noqa: E402
from test_transport import RawConn, Reply, frame  # noqa: E402

pb2, pb2_grpc = common.load_stubs()

PATH = "/%s/" % common.SERVICE
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MiB = 1 << 20
OK, RESOURCE_EXHAUSTED = 0, 8
PROTOCOL_ERROR, INTERNAL_ERROR, FRAME_SIZE_ERROR = 1, 2, 6
COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 9, 11
HANDSHAKE_TIMEOUT = 10.0  # the transport's, for connections without preface


def sanitized():
    """Whether the sidecar is an ASan build (its RSS counts shadow memory,
    redzones and the quarantine of freed blocks)."""
    with open(common.sidecar_binary(), "rb") as f:
        return b"__asan_init" in f.read()


SANITIZED = sanitized()
QUARANTINE = 16 * MiB
if SANITIZED:
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [
        os.environ.get("ASAN_OPTIONS"),
        "quarantine_size_mb=%d" % (QUARANTINE // MiB)]))


def rss_bound(bound):
    return 2 * bound + QUARANTINE if SANITIZED else bound


def admin_address(sidecar):
    deadline = time.monotonic() + RPC_TIMEOUT
    while time.monotonic() < deadline:
        for line in list(sidecar.lines):
            m = re.search(r"admin serving address=(\S+)", line)
            if m:
                return m.group(1)
        time.sleep(0.02)
    raise AssertionError("no admin address in the log")


def metric(admin, name):
    host, port = admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=RPC_TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    if m is None:
        raise AssertionError("no %s in /metrics" % name)
    return float(m.group(1))


def list_request(ext):
    return pb2.ListPhoneCallsRequest(extension=ext).SerializeToString()


def headers_block(enc, method, extra=(), huffman=True):
    return enc.encode([(":method", "POST"), (":scheme", "http"),
                       (":path", PATH + method), (":authority", "127.0.0.1"),
                       ("content-type", "application/grpc"),
                       ("te", "trailers")] + list(extra), huffman=huffman)


class Conn(RawConn):
    """A RawConn that can also read without blocking, and counts the
    connection's flow-control window for what it sends."""

    def __init__(self, address, settings=None, **kw):
        self.send_window = 65535
        super().__init__(address, preface=settings is None, **kw)
        if settings is not None:
            self.send(PREFACE + hf.SettingsFrame(0, settings).serialize())

    def on_frame(self, f):
        super().on_frame(f)
        if isinstance(f, hf.WindowUpdateFrame) and f.stream_id == 0:
            self.send_window += f.window_increment

    def poll(self):
        """Reads what has come, without waiting."""
        while not self.eof and select.select([self.sock], [], [], 0)[0]:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                data = b""
            if not data:
                self.eof = True
            self.buf += data
        while len(self.buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                break
            f.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            self.on_frame(f)
            self.frames.append(f)

    def flood(self, chunks):
        """Sends chunk after chunk until the server has sent a GOAWAY or
        closed; returns how many went."""
        sent = 0
        for chunk in chunks:
            self.poll()
            if self.eof or self.goaways():
                break
            try:
                self.sock.settimeout(RPC_TIMEOUT)
                self.sock.sendall(chunk)
            except (ConnectionResetError, BrokenPipeError, socket.timeout):
                break
            sent += 1
        return sent

    def data_in_window(self, sid, data):
        """DATA frames of at most 16 KiB, each once the connection's
        window has room for it."""
        deadline = time.monotonic() + self.timeout
        for i in range(0, len(data), 16384):
            chunk = data[i:i + 16384]
            while self.send_window < len(chunk):
                if self.read_frame(deadline) is None:
                    raise AssertionError("connection closed")
            self.send(hf.DataFrame(sid, chunk).serialize())
            self.send_window -= len(chunk)

    def cut_off(self, timeout=None):
        """Waits for the server to close; returns its GOAWAYs."""
        self.wait_eof(timeout or 5 * SLOW)
        return self.goaways()


class Bystander:
    """A well-behaved client calling all along, each round on its own
    grpcio channel and on a fresh connection."""

    def __init__(self, sidecar, ext):
        self.sidecar = sidecar
        self.ext = ext
        self.answered = 0
        self.failures = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + RPC_TIMEOUT
        while self.answered == 0 and not self.failures:
            if time.monotonic() > deadline:
                raise AssertionError("the bystander got no answer at all")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(3 * RPC_TIMEOUT)

    def run(self):
        channel = grpc.insecure_channel(self.sidecar.address)
        stub = pb2_grpc.PhoneCallServiceStub(channel)
        req = pb2.ListPhoneCallsRequest(extension=self.ext)
        try:
            while not self.stop.is_set():
                try:
                    stub.ListPhoneCalls(req, timeout=RPC_TIMEOUT)
                    c = RawConn(self.sidecar.address)
                    try:
                        r = c.unary("ListPhoneCalls",
                                    frame(list_request(self.ext)))
                    finally:
                        c.close()
                    if r.grpc_status != OK:
                        raise AssertionError("fresh connection: %r"
                                             % (r.trailers or r.headers,))
                    self.answered += 1
                except (grpc.RpcError, AssertionError, OSError) as e:
                    self.failures.append(e)
                self.stop.wait(0.02)
        finally:
            channel.close()

    def check(self, test, since):
        """Answers came after `since`, and no call failed."""
        n = self.answered
        deadline = time.monotonic() + RPC_TIMEOUT
        while self.answered < n + 2 and not self.failures:
            test.assertLess(time.monotonic(), deadline,
                            "the bystander got no answer after the attack")
            time.sleep(0.01)
        test.assertEqual(self.failures, [])
        test.assertGreater(self.answered, since)


class HostileTest(unittest.TestCase):
    sidecar_flags = ()

    @classmethod
    def setUpClass(cls):
        cls.sidecar = Sidecar(*cls.sidecar_flags).start()
        cls.admin = admin_address(cls.sidecar)

    @classmethod
    def tearDownClass(cls):
        cls.sidecar.stop_checked()

    def setUp(self):
        if not self.sidecar.alive():
            self.fail("the sidecar died earlier (exit code %r); stderr tail:\n%s"
                      % (self.sidecar.proc.poll(), self.sidecar.log_tail()))

    def conn(self, **kw):
        c = Conn(self.sidecar.address, **kw)
        self.addCleanup(c.close)
        return c

    def rss(self):
        return metric(self.admin, "process_resident_memory_bytes")

    def attack(self, ext, bound):
        return Attack(self, ext, bound)


class Attack:
    """The context of one attack: a bystander calls all along; after the
    attack the sidecar is up, the bystander is still answered and never
    failed, and resident memory grew by less than `bound` (rss_bound)."""

    def __init__(self, test, ext, bound):
        self.test = test
        self.bound = rss_bound(bound)
        self.bystander = Bystander(test.sidecar, ext)

    def __enter__(self):
        self.rss0 = self.test.rss()
        self.bystander.__enter__()
        self.answered0 = self.bystander.answered
        return self

    def __exit__(self, kind, *rest):
        test = self.test
        try:
            if kind is not None:
                return False
            test.assertTrue(test.sidecar.alive(), test.sidecar.log_tail())
            self.bystander.check(test, self.answered0)
        finally:
            self.bystander.__exit__()
        grown = test.rss() - self.rss0
        if os.environ.get("USC_HOSTILE_RSS"):
            sys.stderr.write("  %s: RSS +%.1f MiB (bound %.0f)\n"
                             % (test.id(), grown / MiB, self.bound / MiB))
        if not SLOWED:
            test.assertLess(grown, self.bound,
                            "RSS grew by %.1f MiB" % (grown / MiB))
        return False


class RapidResetTests(HostileTest):
    """HEADERS then RST_STREAM, 5000 times on one connection (CVE-2023-44487):
    nghttp2's reset budget (1000 at once, 33 a second after) runs out, and
    the connection gets GOAWAY INTERNAL_ERROR and is closed, though it holds
    a stream open."""

    def test_rapid_reset(self):
        with self.attack("0011*210", 16 * MiB):
            c = self.conn()
            c.start("CreateSimplePhoneCall")  # held open all along
            chunks = []
            for i in range(1, 5001):
                sid = 1 + 2 * i
                h = hf.HeadersFrame(sid, headers_block(c.enc, "ListPhoneCalls"))
                h.flags.add("END_HEADERS")
                chunks.append(h.serialize()
                              + hf.RstStreamFrame(sid, 8).serialize())
            batches = [b"".join(chunks[i:i + 50])
                       for i in range(0, len(chunks), 50)]
            c.flood(batches)
            goaways = c.cut_off()
            self.assertEqual(len(goaways), 1, goaways)
            self.assertEqual(goaways[0].error_code, INTERNAL_ERROR)
            # The budget, give or take what the refill added meanwhile.
            self.assertLess(goaways[0].last_stream_id, 2 * 1500)


class ContinuationFloodTests(HostileTest):
    """HEADERS without END_HEADERS, then CONTINUATION frames without end
    (CVE-2024-28182): past max(8, header list limit / 16 KiB) frames the
    connection gets GOAWAY PROTOCOL_ERROR and is closed."""

    def test_continuation_flood(self):
        with self.attack("0012*210", 16 * MiB):
            c = self.conn()
            block = headers_block(c.enc, "ListPhoneCalls")
            filler = c.enc.encode([("x-filler", "f" * 100)] * 10)
            c.send(hf.HeadersFrame(1, block).serialize())
            more = hf.ContinuationFrame(1, filler).serialize() * 20
            sent = c.flood(more for _ in range(5000))
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways], [PROTOCOL_ERROR])
            self.assertLess(sent, 5000)

    def test_continuation_flood_of_tiny_frames(self):
        with self.attack("0013*210", 16 * MiB):
            c = self.conn()
            c.send(hf.HeadersFrame(1, headers_block(c.enc, "ListPhoneCalls"))
                   .serialize())
            tiny = hf.ContinuationFrame(1, b"").serialize()
            c.flood(tiny * 100 for _ in range(10000))
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways], [PROTOCOL_ERROR])


class HeaderListTests(HostileTest):
    """Header lists over --max-header-list-size (16 KiB): in a few frames,
    RESOURCE_EXHAUSTED on that stream and the connection goes on; a field
    HPACK does not decode (over 64 KiB encoded), or a list in more frames
    than the limit needs, is a connection error (HPACK state is the
    connection's)."""

    def raw_call(self, c, extra, huffman=True):
        block = headers_block(c.enc, "ListPhoneCalls", extra, huffman)
        parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        frames = [hf.HeadersFrame(c.next_sid, parts[0])]
        frames += [hf.ContinuationFrame(c.next_sid, p) for p in parts[1:]]
        frames[-1].flags.add("END_HEADERS")
        sid = c.next_sid
        c.next_sid += 2
        c.replies[sid] = Reply()
        c.send(b"".join(f.serialize() for f in frames))
        c.data(sid, frame(list_request("0014*210")), end=True)
        return sid, len(frames)

    def test_oversized_header_list_is_refused_on_its_stream(self):
        with self.attack("0014*210", 16 * MiB):
            c = self.conn()
            for _ in range(200):
                sid, n = self.raw_call(c, [("x-big", "a" * 30000)],
                                       huffman=False)
                r = c.wait_reply(sid)
                self.assertEqual(r.grpc_status, RESOURCE_EXHAUSTED,
                                 (r.headers, r.trailers))
            self.assertEqual(n, 2)
            sid, _ = self.raw_call(c, [])
            self.assertEqual(c.wait_reply(sid).grpc_status, OK)
            self.assertEqual(c.goaways(), [])

    def test_field_over_64k_is_a_connection_error(self):
        with self.attack("0015*210", 16 * MiB):
            c = self.conn()
            self.raw_call(c, [("x-big", "~" * 70000)], huffman=False)
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways],
                             [COMPRESSION_ERROR])

    def test_list_in_too_many_frames_is_a_connection_error(self):
        with self.attack("0016*210", 16 * MiB):
            c = self.conn()
            _, n = self.raw_call(
                c, [("x-h%02d" % i, "~" * 10000) for i in range(30)],
                huffman=False)
            self.assertGreater(n, 9)
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways], [PROTOCOL_ERROR])


class PingFloodTests(HostileTest):
    """PINGs by the hundred thousand, never reading the ACKs. Ping policing
    (--keepalive-min-time, default 5 min) answers the third close one with
    GOAWAY ENHANCE_YOUR_CALM too_many_pings (nghttp2's flood limit may add
    its own GOAWAY for the rest of what was read with it)."""

    def test_ping_flood(self):
        with self.attack("0017*210", 16 * MiB):
            c = self.conn()
            ping = hf.PingFrame(0, b"flooding").serialize()
            c.flood(ping * 1000 for _ in range(100))
            goaways = c.cut_off()
            self.assertGreaterEqual(len(goaways), 1)
            self.assertEqual(goaways[0].error_code, ENHANCE_YOUR_CALM)
            self.assertEqual(goaways[0].additional_data, b"too_many_pings")


class IdlePingTests(HostileTest):
    """PINGs spaced by more than --keepalive-min-time on a connection
    without calls: gRFC A8 holds such a connection to one ping in two
    hours, and the third strike gets GOAWAY ENHANCE_YOUR_CALM."""

    sidecar_flags = ("--keepalive-min-time", "100")

    def test_pings_on_a_connection_without_calls(self):
        with self.attack("0026*210", 16 * MiB):
            c = self.conn()
            for i in range(4):
                c.ping(b"idle-%03d" % i)
                time.sleep(0.15)
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways],
                             [ENHANCE_YOUR_CALM])
            self.assertEqual(goaways[0].additional_data, b"too_many_pings")


class PermittedIdlePingTests(HostileTest):
    """The same with --keepalive-permit-without-calls true: allowed."""

    sidecar_flags = ("--keepalive-min-time", "100",
                     "--keepalive-permit-without-calls", "true")

    def test_pings_on_a_connection_without_calls(self):
        with self.attack("0027*210", 16 * MiB):
            c = self.conn()
            for i in range(6):
                c.ping(b"idle-%03d" % i)
                c.wait_for(lambda f: isinstance(f, hf.PingFrame)
                           and "ACK" in f.flags
                           and f.opaque_data == b"idle-%03d" % i)
                time.sleep(0.15)
            self.assertEqual(c.goaways(), [])


class UnpolicedFloodTests(HostileTest):
    """Without ping policing, PING and SETTINGS floods meet nghttp2's limit
    of 1000 ACKs queued and not read: GOAWAY and close."""

    sidecar_flags = ("--keepalive-min-time", "0")

    def test_ping_flood_without_policing(self):
        with self.attack("0018*210", 16 * MiB):
            c = self.conn()
            ping = hf.PingFrame(0, b"flooding").serialize()
            c.flood(ping * 5000 for _ in range(100))
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways], [PROTOCOL_ERROR])

    def test_settings_flood(self):
        with self.attack("0019*210", 16 * MiB):
            c = self.conn()
            settings = hf.SettingsFrame(0, {4: 65535}).serialize()
            c.flood(settings * 5000 for _ in range(100))
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways], [PROTOCOL_ERROR])

    def test_settings_with_too_many_entries(self):
        with self.attack("0020*210", 16 * MiB):
            c = self.conn()
            c.send(hf.SettingsFrame(0, {0x100 + i: 1 for i in range(33)})
                   .serialize())
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways],
                             [ENHANCE_YOUR_CALM])


class LengthPrefixTests(HostileTest):
    """Lengths that promise more than will come."""

    def test_grpc_prefix_of_4_gb(self):
        """A message prefix of 2^32-1: RESOURCE_EXHAUSTED at once, before
        any of it comes and without room made for it."""
        with self.attack("0021*210", 16 * MiB):
            c = self.conn()
            for _ in range(1000):
                sid = c.start("CreateSimplePhoneCall")
                c.data(sid, b"\0\xff\xff\xff\xff")
                r = c.wait_reply(sid)
                self.assertEqual(r.grpc_status, RESOURCE_EXHAUSTED,
                                 (r.headers, r.trailers))
            self.assertIn("received message larger than max (4294967295",
                          r.status_headers.get("grpc-message", ""))
            self.assertEqual(c.goaways(), [])

    def test_frame_length_of_16_mb(self):
        """An HTTP/2 frame header announcing 2^24-1 bytes, over
        SETTINGS_MAX_FRAME_SIZE (16 KiB): GOAWAY FRAME_SIZE_ERROR."""
        with self.attack("0022*210", 16 * MiB):
            c = self.conn()
            c.send(b"\xff\xff\xff\x00\x00\x00\x00\x00\x01")
            goaways = c.cut_off()
            self.assertEqual([g.error_code for g in goaways],
                             [FRAME_SIZE_ERROR])

    def test_many_streams_promising_4_mib(self):
        """300 streams each promise a 4 MiB message (the receive limit) and
        send 64 KiB of it: each holds about what it sent, and the
        connection's calls together at most 16 MiB (4 x the limit); the
        streams that go over are refused, the others and the connection go
        on."""
        with self.attack("0023*210", 16 * MiB + 4 * MiB + 8 * MiB):
            c = self.conn()
            part = struct.pack(">BI", 0, 4 * MiB) + b"p" * (64 * 1024)
            sids = []
            for _ in range(300):
                sid = c.start("CreateSimplePhoneCall")
                c.data_in_window(sid, part)
                sids.append(sid)
            c.ping(b"all-sent")
            c.wait_for(lambda f: isinstance(f, hf.PingFrame)
                       and "ACK" in f.flags and f.opaque_data == b"all-sent")
            refused = [s for s in sids if c.replies[s].grpc_status is not None]
            self.assertGreater(len(refused), 50)
            self.assertLess(len(refused), 250)
            for sid in refused:
                r = c.replies[sid]
                self.assertEqual(r.grpc_status, RESOURCE_EXHAUSTED)
                self.assertIn("held for this connection",
                              r.status_headers.get("grpc-message", ""))
            self.assertEqual(c.goaways(), [])
            r = c.unary("ListPhoneCalls", frame(list_request("0023*210")))
            self.assertEqual(r.grpc_status, OK)


class PrefaceTests(HostileTest):
    """2000 connections that never finish the preface against
    --max-connections 200: each new connection takes the place of the
    oldest one without a preface, so others keep being served, and each is
    closed within 10 s anyway."""

    sidecar_flags = ("--max-connections", "200")

    def test_connections_without_preface(self):
        with self.attack("0024*210", 32 * MiB):
            host, port = self.sidecar.address.rsplit(":", 1)
            idle = []
            self.addCleanup(lambda: [s.close() for s in idle])
            t0 = time.monotonic()
            for i in range(2000):
                s = socket.create_connection((host, int(port)),
                                             timeout=RPC_TIMEOUT)
                if i % 2:
                    s.sendall(PREFACE[:10])  # half a preface
                idle.append(s)
            # The bystander, on fresh connections, is answered meanwhile.
            time.sleep(0.5)
            deadline = t0 + HANDSHAKE_TIMEOUT + 5 * SLOW
            for s in idle:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    while s.recv(65536):
                        pass
                except ConnectionResetError:
                    pass
            self.assertLess(time.monotonic(), deadline)
        self.assertLessEqual(metric(self.admin,
                                    "uapi_sidecar_open_connections"), 2)


class SlowReaderTests(HostileTest):
    """Watch streams whose client never opens its flow-control window, or
    never reads its socket, while events keep coming: a connection holds at
    most 4 MiB of responses nghttp2 has not taken (plus what the socket
    took), past which each stream ends with RESOURCE_EXHAUSTED."""

    WATCHES = 10

    def watch(self, c, ext):
        req = pb2.WatchPhoneCallsRequest(extension=ext).SerializeToString()
        sids = []
        for _ in range(self.WATCHES):
            sid = c.start("WatchPhoneCalls")
            c.data(sid, frame(req), end=True)
            sids.append(sid)
        return sids

    def test_slow_readers(self):
        ext = "0025*210"
        with self.attack("0025*211", 2 * 9 * MiB + 16 * MiB):
            shut = self.conn(settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 0})
            shut_sids = self.watch(shut, ext)
            deaf = self.conn(settings={
                hf.SettingsFrame.INITIAL_WINDOW_SIZE: 2 ** 31 - 1})
            deaf.send(hf.WindowUpdateFrame(0, 2 ** 31 - 1 - 65535).serialize())
            self.watch(deaf, ext)
            for c in (shut, deaf):  # every stream is live
                c.ping(b"watching")
                c.wait_for(lambda f: isinstance(f, hf.PingFrame)
                           and "ACK" in f.flags)
            channel = grpc.insecure_channel(self.sidecar.address)
            self.addCleanup(channel.close)
            stub = pb2_grpc.PhoneCallServiceStub(channel)
            nonce = "n" * 2000
            # Each create is an event of ~2 KB to each of 20 watchers: 80 MB
            # in all if nothing held them back.
            for i in range(2000):
                stub.CreateSimplePhoneCall(pb2.CreatePhoneCallRequest(
                    extension=ext, source=[ext], destination=["0025*299"],
                    nonce=nonce + str(i)), timeout=RPC_TIMEOUT)
            self.assertTrue(self.sidecar.alive())

        # The reader that opens its window at last gets the backlog, then
        # each stream's end.
        shut.send(hf.SettingsFrame(0, {
            hf.SettingsFrame.INITIAL_WINDOW_SIZE: 2 ** 31 - 1}).serialize())
        shut.send(hf.WindowUpdateFrame(0, 2 ** 31 - 1 - 65535).serialize())
        total = 0
        for sid in shut_sids:
            r = shut.wait_reply(sid, timeout=5 * RPC_TIMEOUT)
            self.assertEqual(r.grpc_status, RESOURCE_EXHAUSTED,
                             (r.headers, r.trailers))
            self.assertIn("cannot queue", r.trailers.get("grpc-message", ""))
            total += len(r.data)
        self.assertLess(total, 4 * MiB + 64 * 1024)


if __name__ == "__main__":
    common.main(__name__)
