#!/usr/bin/python3
"""Interop suite: TLS on the gRPC listener (--tls-cert, --tls-key,
--tls-client-ca), with grpcio (Python) and Python's ssl module on raw
sockets.

Run from anywhere: /usr/bin/python3 tests/interop/python/test_tls.py
[TestClass[.test_name] ...]. The sidecar binary is $USC_SIDECAR_BINARY
(default bazel-bin/src/uapi-sidecar); $USC_SIDECAR_WRAPPER is put in front
of its command line (e.g. valgrind, or tests/interop/pair.sh, where the
translation backend serves TLS in front of a plain REST facade).

The certificates are made when the suite starts, with the openssl CLI, in
a temporary directory: a self-signed server certificate for localhost and
127.0.0.1, and a client CA with a client certificate for mutual TLS.

What is checked: Create, Get, OnHold, List, a Watch stream and health
over grpc.secure_channel; a plaintext gRPC client and raw h2c are cut off
(and counted) while TLS clients keep working; a ClientHello without ALPN,
or without h2 in it, gets the no_application_protocol alert; TLS 1.1 is
refused and TLS 1.2 accepted; a client that stalls before or during the
handshake is cut off after --tls-handshake-timeout; garbage after a
ClientHello or instead of one does not hurt the server; with
--tls-client-ca a client without a certificate, or with one from another
CA, is refused; unusable TLS files stop the sidecar at start with exit
status 2.
"""

import http.client
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from google.protobuf import wrappers_pb2  # noqa: E402

import common  # noqa: E402
from common import RPC_TIMEOUT, SLOW, Sidecar, metadata_values  # noqa: E402

pb2, pb2_grpc = common.load_stubs()

Code = grpc.StatusCode
Event = pb2.PhoneCallEvent

# Short, so that the stall tests are quick; room for a handshake under
# valgrind.
HANDSHAKE_TIMEOUT_MS = int(1500 * SLOW)
ADMIN_RE = re.compile(r"admin serving\b.*?address=([0-9A-Za-z.:\[\]]+)")

TMP = None
FILES = {}
MAIN = None


def openssl(*args):
    subprocess.run(["openssl"] + list(args), cwd=TMP, check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def self_signed(name, subject, *extensions):
    key, cert = name + ".key", name + ".pem"
    args = ["req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
            "-days", "2", "-subj", subject]
    for ext in extensions:
        args += ["-addext", ext]
    openssl(*args)
    return os.path.join(TMP, cert), os.path.join(TMP, key)


def signed_by(name, subject, ca):
    key, csr, cert = name + ".key", name + ".csr", name + ".pem"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
    openssl("x509", "-req", "-in", csr, "-CA", ca + ".pem", "-CAkey",
            ca + ".key", "-set_serial", str(int(time.time() * 1000)),
            "-out", cert, "-days", "2")
    return os.path.join(TMP, cert), os.path.join(TMP, key)


def make_files():
    FILES["cert"], FILES["key"] = self_signed(
        "server", "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1")
    FILES["ca"], _ = self_signed("ca", "/CN=uapi-sidecar test client CA")
    FILES["client_cert"], FILES["client_key"] = signed_by(
        "client", "/CN=test client", "ca")
    self_signed("rogue-ca", "/CN=another CA")
    FILES["rogue_cert"], FILES["rogue_key"] = signed_by(
        "rogue", "/CN=rogue client", "rogue-ca")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def setUpModule():
    global TMP, MAIN
    TMP = tempfile.mkdtemp(prefix="usc-tls-")
    make_files()
    MAIN = Sidecar("--tls-cert", FILES["cert"], "--tls-key", FILES["key"],
                   "--tls-handshake-timeout", str(HANDSHAKE_TIMEOUT_MS),
                   "--log-level", "debug").start()


def tearDownModule():
    try:
        if MAIN is not None:
            MAIN.stop_checked()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


def secure_channel(sidecar, cert=None, key=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(FILES["cert"]),
        private_key=read(key) if key else None,
        certificate_chain=read(cert) if cert else None)
    return grpc.secure_channel(sidecar.address, creds)


def request(method, **fields):
    methods = pb2.DESCRIPTOR.services_by_name["PhoneCallService"]
    cls = getattr(pb2, methods.methods_by_name[method].input_type.name)
    return cls(**fields)


def admin_metric(sidecar, name):
    """The value of a sample on the sidecar's /metrics."""
    match = None
    for line in sidecar.log_tail(100000).splitlines():
        match = match or ADMIN_RE.search(line)
    if match is None:
        raise AssertionError("no admin address in the log")
    host, port = match.group(1).rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=RPC_TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def handshake_failures(sidecar):
    return admin_metric(sidecar, "uapi_sidecar_tls_handshake_failures_total")


def tls_context(alpn=("h2",), max_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(FILES["cert"])
    if alpn is not None:
        ctx.set_alpn_protocols(list(alpn))
    if max_version is not None:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = max_version
    return ctx


def connect(sidecar):
    sock = socket.create_connection(("127.0.0.1", sidecar.port),
                                    timeout=RPC_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def client_hello(alpn=("h2",)):
    """The bytes of a ClientHello, and the SSLObject that wrote it."""
    ctx = tls_context(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def read_to_end(sock, limit):
    """Reads until the server closes; returns (bytes, seconds). A reset
    counts as the end. Fails when the connection is still open after
    `limit` seconds."""
    t0 = time.monotonic()
    data = b""
    sock.settimeout(0.2)
    while True:
        if time.monotonic() - t0 > limit:
            raise AssertionError("the connection is still open after %.1f s"
                                 % limit)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - t0


def send_all(sock, data):
    """Sends what the server still reads; it may close at any moment."""
    try:
        sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass


class WatchStream:
    """A WatchPhoneCalls stream read by a thread into a queue."""

    def __init__(self, stub, **fields):
        self.call = stub.WatchPhoneCalls(request("WatchPhoneCalls", **fields),
                                         timeout=60 * SLOW)
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
        except grpc.RpcError as err:
            self.events.put(err)

    def event_for(self, call_id):
        """The first event about `call_id` (earlier ones are skipped)."""
        deadline = time.monotonic() + RPC_TIMEOUT
        while True:
            try:
                item = self.events.get(
                    timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no Watch event for %s" % call_id)
            if isinstance(item, grpc.RpcError):
                raise AssertionError("Watch failed: %r" % item)
            if item.phone_call.id == call_id:
                return item

    def cancel(self):
        self.call.cancel()
        self._thread.join(RPC_TIMEOUT)


class Base(unittest.TestCase):

    sidecar = None

    def server(self):
        return self.sidecar or MAIN

    def setUp(self):
        if not self.server().alive():
            self.fail("the sidecar died earlier; stderr tail:\n%s"
                      % self.server().log_tail())
        self.channel = secure_channel(self.server())
        self.addCleanup(self.channel.close)
        self.stub = pb2_grpc.PhoneCallServiceStub(self.channel)

    def create(self, ext):
        resp = self.stub.CreateSimplePhoneCall(
            request("CreateSimplePhoneCall", extension=ext, source=[ext],
                    destination=["0003*024"]), timeout=RPC_TIMEOUT)
        self.assertEqual(len(resp.phone_calls), 1, resp)
        return resp.phone_calls[0]

    def assert_serving(self, channel=None):
        """A Get over a fresh TLS channel (or `channel`) works."""
        own = channel is None
        channel = channel or secure_channel(self.server())
        try:
            stub = pb2_grpc.PhoneCallServiceStub(channel)
            call = self.create("0003*310")
            got = stub.GetPhoneCall(
                request("GetPhoneCall", extension=call.extension,
                        phone_call_id=call.id), timeout=RPC_TIMEOUT)
            self.assertEqual(got.id, call.id)
        finally:
            if own:
                channel.close()

    def wait_log(self, text, timeout=RPC_TIMEOUT):
        deadline = time.monotonic() + timeout
        while text not in self.server().log_tail(100000):
            if time.monotonic() > deadline:
                self.fail("no log line with %r; tail:\n%s"
                          % (text, self.server().log_tail()))
            time.sleep(0.05)


class RpcTests(Base):
    """The service over grpc.secure_channel."""

    def test_listening_line_says_tls(self):
        self.assertIn("tls=on", self.server().log_tail(100000))

    def test_create_get_on_hold_list(self):
        ext = "0003*301"
        call = self.create(ext)
        got, rpc = self.stub.GetPhoneCall.with_call(
            request("GetPhoneCall", extension=ext, phone_call_id=call.id),
            timeout=RPC_TIMEOUT)
        self.assertEqual(got, call)
        self.assertEqual(metadata_values(rpc.initial_metadata(),
                                         "x-uapi-backend"),
                         [common.EXPECT_BACKEND])
        held = self.stub.OnHold(
            request("OnHold", extension=ext, phone_call_id=call.id,
                    phone_call_view_id="01"), timeout=RPC_TIMEOUT)
        views = {v.id: v for v in held.phone_call_views}
        self.assertTrue(views["01"].on_hold.seconds)
        listed = self.stub.ListPhoneCalls(
            request("ListPhoneCalls", extension=ext), timeout=RPC_TIMEOUT)
        self.assertEqual([c.id for c in listed.phone_calls], [call.id])
        self.assertTrue(listed.phone_calls[0].phone_call_views[1]
                        .on_hold.seconds)

    def test_errors_keep_their_details(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub.GetPhoneCall(
                request("GetPhoneCall", extension="0003*302",
                        phone_call_id="0123456789abcdef0123"),
                timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), Code.NOT_FOUND)
        self.assertEqual(metadata_values(cm.exception.trailing_metadata(),
                                         "uapi-error-code"),
                         ["pc_phoncall_invalid"])

    def test_watch_stream(self):
        ext = "0003*303"
        stream = WatchStream(self.stub, extension=ext)
        self.addCleanup(stream.cancel)
        self.assertTrue(stream.headers.wait(RPC_TIMEOUT),
                        "the Watch stream never went live")
        call = self.create(ext)
        self.assertEqual(stream.event_for(call.id).type, Event.CREATED)
        self.stub.HangupPhoneCalls(
            request("HangupPhoneCalls", extension=ext, phone_call_id=call.id),
            timeout=RPC_TIMEOUT)
        self.assertEqual(stream.event_for(call.id).type, Event.ENDED)

    def test_health(self):
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check")
        self.assertEqual(check(b"", timeout=RPC_TIMEOUT), b"\x08\x01")

    def test_large_messages_both_ways(self):
        # Requests and responses of many TLS records each.
        ext = "0003*304"
        nonce = "".join("%07d," % i for i in range(40000))
        call = self.stub.CreateSimplePhoneCall(
            request("CreateSimplePhoneCall", extension=ext, source=[ext],
                    destination=["0003*024"], nonce=nonce),
            timeout=RPC_TIMEOUT).phone_calls[0]
        self.assertEqual(call.nonce, nonce)
        ids = [call.id] + [self.create(ext).id for _ in range(40)]
        listed = self.stub.ListPhoneCalls(
            request("ListPhoneCalls", extension=ext,
                    count=wrappers_pb2.Int32Value(value=100)),
            timeout=RPC_TIMEOUT)
        self.assertEqual(sorted(c.id for c in listed.phone_calls),
                         sorted(ids))


class RefusalTests(Base):
    """Clients that do not speak TLS with ALPN h2 are cut off; the others
    go on."""

    def test_plaintext_grpc_client_is_cut_off(self):
        before = handshake_failures(self.server())
        self.assert_serving(self.channel)
        with grpc.insecure_channel(self.server().address) as plain:
            stub = pb2_grpc.PhoneCallServiceStub(plain)
            with self.assertRaises(grpc.RpcError) as cm:
                stub.ListPhoneCalls(request("ListPhoneCalls",
                                            extension="0003*305"),
                                    timeout=3 * SLOW)
            self.assertIn(cm.exception.code(),
                          (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED))
        self.assertGreater(handshake_failures(self.server()), before)
        self.assert_serving(self.channel)

    def test_raw_h2c_preface_gets_an_alert(self):
        with connect(self.server()) as sock:
            send_all(sock, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                     b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            data, _ = read_to_end(sock, RPC_TIMEOUT)
        # Nothing but TLS alert records, if anything.
        if data:
            self.assertEqual(data[0], 0x15, data[:16])
        self.assert_serving()

    def handshake(self, ctx):
        with connect(self.server()) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.version(), tls.selected_alpn_protocol()

    def expect_refused(self, ctx, alert):
        before = handshake_failures(self.server())
        with self.assertRaises(ssl.SSLError) as cm:
            self.handshake(ctx)
        if alert is not None:
            self.assertIn(alert, str(cm.exception))
        self.assertEqual(handshake_failures(self.server()), before + 1)

    def test_client_without_alpn_is_refused(self):
        self.expect_refused(tls_context(alpn=None), "no application protocol")
        self.wait_log("the client offered no ALPN (h2 is required)")
        self.assert_serving()

    def test_client_without_h2_in_alpn_is_refused(self):
        self.expect_refused(tls_context(alpn=("http/1.1", "grpc-exp")),
                            "no application protocol")
        self.wait_log("the client's ALPN does not offer h2")
        self.assert_serving()

    def test_h2_is_selected(self):
        self.assertEqual(self.handshake(tls_context(alpn=("http/1.1", "h2"))),
                         ("TLSv1.3", "h2"))

    def test_tls_1_2_is_accepted_and_1_1_refused(self):
        self.assertEqual(
            self.handshake(tls_context(max_version=ssl.TLSVersion.TLSv1_2)),
            ("TLSv1.2", "h2"))
        self.expect_refused(tls_context(max_version=ssl.TLSVersion.TLSv1_1),
                            None)


class HandshakeTests(Base):
    """Stalled and garbled handshakes."""

    def expect_cut_off(self, first_bytes):
        before = handshake_failures(self.server())
        timeout = HANDSHAKE_TIMEOUT_MS / 1000.0
        with connect(self.server()) as sock:
            send_all(sock, first_bytes)
            _, took = read_to_end(sock, timeout + 5 * SLOW)
        self.assertGreater(took, timeout * 0.8)
        self.assertEqual(handshake_failures(self.server()), before + 1)
        self.wait_log("the TLS handshake timed out")

    def test_silent_client_is_cut_off(self):
        self.expect_cut_off(b"")

    def test_half_a_client_hello_is_cut_off(self):
        hello = client_hello()
        self.expect_cut_off(hello[:len(hello) // 2])

    def test_client_that_stalls_after_its_hello_is_cut_off(self):
        # The server answers the ClientHello and waits for the client's
        # Finished, which never comes.
        self.expect_cut_off(client_hello())

    def test_others_are_served_while_one_stalls(self):
        with connect(self.server()) as stalled:
            send_all(stalled, client_hello())
            for _ in range(3):
                self.assert_serving()

    def test_garbage_after_client_hello(self):
        junk = os.urandom(64 * 1024)
        for prefix in (b"", b"\x17\x03\x03\x40\x00", b"\x16\x03\x03\xff\xff"):
            with self.subTest(prefix=prefix):
                with connect(self.server()) as sock:
                    send_all(sock, client_hello() + prefix + junk)
                    read_to_end(sock, RPC_TIMEOUT)
        self.assertTrue(self.server().alive())
        self.assert_serving()

    def test_garbage_instead_of_client_hello(self):
        for junk in (os.urandom(1000), b"\x16\x03\x01\x00\x05hello",
                     b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 5000):
            with connect(self.server()) as sock:
                send_all(sock, junk)
                read_to_end(sock, RPC_TIMEOUT)
        self.assertTrue(self.server().alive())
        self.assert_serving()

    def test_client_closes_mid_handshake(self):
        for cut in (1, 5, 50):
            with connect(self.server()) as sock:
                send_all(sock, client_hello()[:cut])
        with connect(self.server()) as sock:
            send_all(sock, client_hello())
            sock.recv(10)
        self.assert_serving()


class MutualTlsTests(Base):
    """--tls-client-ca: clients need a certificate the CA signed."""

    @classmethod
    def setUpClass(cls):
        cls.sidecar = Sidecar("--tls-cert", FILES["cert"], "--tls-key",
                              FILES["key"], "--tls-client-ca", FILES["ca"],
                              "--log-level", "debug").start()

    @classmethod
    def tearDownClass(cls):
        cls.sidecar.stop_checked()

    def setUp(self):
        if not self.server().alive():
            self.fail("the sidecar died earlier; stderr tail:\n%s"
                      % self.server().log_tail())
        self.channel = secure_channel(self.server(), FILES["client_cert"],
                                      FILES["client_key"])
        self.addCleanup(self.channel.close)
        self.stub = pb2_grpc.PhoneCallServiceStub(self.channel)

    def test_client_with_a_certificate_of_the_ca(self):
        self.assertIn("tls=mutual", self.server().log_tail(100000))
        self.assert_serving(self.channel)

    def refused(self, cert=None, key=None):
        with secure_channel(self.server(), cert, key) as channel:
            stub = pb2_grpc.PhoneCallServiceStub(channel)
            with self.assertRaises(grpc.RpcError) as cm:
                stub.ListPhoneCalls(request("ListPhoneCalls",
                                            extension="0003*306"),
                                    timeout=3 * SLOW)
            self.assertIn(cm.exception.code(),
                          (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED))

    def test_client_without_a_certificate_is_refused(self):
        self.refused()
        self.wait_log("peer did not return a certificate")
        self.assert_serving(self.channel)

    def test_client_with_a_certificate_of_another_ca_is_refused(self):
        self.refused(FILES["rogue_cert"], FILES["rogue_key"])
        self.wait_log("certificate verify failed")
        self.assert_serving(self.channel)


class StartTests(unittest.TestCase):
    """TLS files that cannot be used stop the sidecar at start."""

    def start_fails(self, *flags):
        cmd = common.WRAPPER + [common.sidecar_binary(), "--listen",
                                "127.0.0.1:0", "--admin-listen",
                                "127.0.0.1:0"] + list(flags)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=common.STARTUP_TIMEOUT + 20)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertNotIn("listening", proc.stderr)
        return proc.stderr

    def test_cert_without_key(self):
        err = self.start_fails("--tls-cert", FILES["cert"])
        self.assertIn("--tls-cert and --tls-key go together", err)

    def test_missing_key(self):
        missing = os.path.join(TMP, "missing.key")
        err = self.start_fails("--tls-cert", FILES["cert"], "--tls-key",
                               missing)
        self.assertIn("TLS: private key %s" % missing, err)

    def test_key_of_another_certificate(self):
        err = self.start_fails("--tls-cert", FILES["cert"], "--tls-key",
                               FILES["client_key"])
        self.assertIn("TLS: private key %s" % FILES["client_key"], err)

    def test_not_a_certificate(self):
        err = self.start_fails("--tls-cert", FILES["key"], "--tls-key",
                               FILES["key"])
        self.assertIn("TLS: certificate %s" % FILES["key"], err)


if __name__ == "__main__":
    common.main(__name__)
