#!/usr/bin/python3
"""Interop suite: the standard gRPC services of uapi-sidecar, with grpcio
(Python): grpc.health.v1.Health (Check, Watch, List) and server reflection
(grpc.reflection.v1 and v1alpha), ending with a client that knows no
.proto file of the sidecar: it learns PhoneCallService from reflection
and calls every one of its RPCs.

Run from anywhere: /usr/bin/python3 tests/interop/python/test_services.py
[TestClass[.test_name] ...]. The sidecar binary is $USC_SIDECAR_BINARY
(default bazel-bin/src/uapi-sidecar); $USC_SIDECAR_WRAPPER is put in front
of its command line (e.g. valgrind, or tests/interop/pair.sh).

The health and reflection messages come from the project's own protos
(proto/grpc/...) compiled by protoc into a descriptor set at start-up
(grpcio's generated modules would be named grpc.*, which grpcio itself
owns); PhoneCallService's come from the sidecar, over reflection only.
"""

import http.client
import itertools
import os
import re
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool  # noqa: E402
from google.protobuf import message_factory  # noqa: E402

import common  # noqa: E402
from common import RPC_TIMEOUT, Sidecar  # noqa: E402

Code = grpc.StatusCode
SERVICE = common.SERVICE
HEALTH = "grpc.health.v1.Health"
REFLECTION = {v: "grpc.reflection.%s.ServerReflection" % v
              for v in ("v1", "v1alpha")}
OWN_PROTOS = ["grpc/health/v1/health.proto",
              "grpc/reflection/v1/reflection.proto",
              "grpc/reflection/v1alpha/reflection.proto"]
ALL_SERVICES = {SERVICE, HEALTH, REFLECTION["v1"], REFLECTION["v1alpha"]}
PHONECALLS_FILE = common.PROTO_FILE
PHONECALLS_DEPS = {"google/protobuf/timestamp.proto",
                   "google/protobuf/wrappers.proto"}
NOT_FOUND = 5

MAIN = None
_seq = itertools.count(5000)


def fresh_ext():
    return "7*%d" % next(_seq)


def message_class(pool, name):
    desc = pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def pool_of(files):
    """A DescriptorPool of FileDescriptorProtos given by name, each added
    after the files it imports."""
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):
        if name in added:
            return
        fdp = files[name]
        for dep in fdp.dependency:
            add(dep)
        pool.Add(fdp)
        added.add(name)

    for name in files:
        add(name)
    return pool


def own_messages():
    """The health and reflection message classes, from protoc's descriptor
    set of the project's own protos."""
    out = tempfile.mkdtemp(prefix="usc-services-py-")
    path = os.path.join(out, "set.pb")
    subprocess.run(["protoc", "-I", common.PROTO_DIR, "--include_imports",
                    "--descriptor_set_out", path] + OWN_PROTOS, check=True)
    with open(path, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    common._rmtree(out)
    return pool_of({f.name: f for f in fds.file})


POOL = own_messages()
HealthCheckRequest = message_class(POOL, "grpc.health.v1.HealthCheckRequest")
HealthCheckResponse = message_class(POOL, "grpc.health.v1.HealthCheckResponse")
HealthListRequest = message_class(POOL, "grpc.health.v1.HealthListRequest")
HealthListResponse = message_class(POOL, "grpc.health.v1.HealthListResponse")
Status = HealthCheckResponse.ServingStatus
SERVING = Status.Value("SERVING")
NOT_SERVING = Status.Value("NOT_SERVING")
SERVICE_UNKNOWN = Status.Value("SERVICE_UNKNOWN")


def reflection_classes(version):
    pkg = "grpc.reflection.%s." % version
    return (message_class(POOL, pkg + "ServerReflectionRequest"),
            message_class(POOL, pkg + "ServerReflectionResponse"))


def health_stubs(channel):
    def unary(method, req, resp):
        return channel.unary_unary(
            "/%s/%s" % (HEALTH, method),
            request_serializer=req.SerializeToString,
            response_deserializer=resp.FromString)
    check = unary("Check", HealthCheckRequest, HealthCheckResponse)
    listing = unary("List", HealthListRequest, HealthListResponse)
    watch = channel.unary_stream(
        "/%s/Watch" % HEALTH,
        request_serializer=HealthCheckRequest.SerializeToString,
        response_deserializer=HealthCheckResponse.FromString)
    return check, listing, watch


class Stream:
    """A response stream read by a thread into a queue; END at its end."""

    END = object()

    def __init__(self, call):
        self.call = call
        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for item in self.call:
                self.queue.put(item)
        except grpc.RpcError as e:
            self.queue.put(e)
        self.queue.put(Stream.END)

    def next(self, timeout=RPC_TIMEOUT):
        return self.queue.get(timeout=timeout)

    def quiet(self, seconds):
        try:
            item = self.queue.get(timeout=seconds)
        except queue.Empty:
            return True
        self.queue.put(item)
        return False

    def cancel(self):
        self.call.cancel()


class Reflector:
    """A reflection client over one bidirectional stream: each request is
    sent and its answer read before the next."""

    def __init__(self, channel, version="v1"):
        self.Request, self.Response = reflection_classes(version)
        method = channel.stream_stream(
            "/%s/ServerReflectionInfo" % REFLECTION[version],
            request_serializer=self.Request.SerializeToString,
            response_deserializer=self.Response.FromString)
        self.requests = queue.Queue()
        self.call = method(iter(self.requests.get, None),
                           timeout=RPC_TIMEOUT * 3)
        self.responses = iter(self.call)

    def ask(self, **fields):
        self.requests.put(self.Request(host="", **fields))
        return next(self.responses)

    def close(self):
        self.requests.put(None)
        rest = list(self.responses)
        return rest, self.call.code()

    def files(self, **fields):
        resp = self.ask(**fields)
        if resp.WhichOneof("message_response") != "file_descriptor_response":
            raise AssertionError("not a file answer: %r" % resp)
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in resp.file_descriptor_response.file_descriptor_proto]


def setUpModule():
    global MAIN
    MAIN = Sidecar().start()


def tearDownModule():
    if MAIN is not None:
        MAIN.stop_checked()


class Base(unittest.TestCase):
    def setUp(self):
        self.channel = grpc.insecure_channel(MAIN.address)
        self.addCleanup(self.channel.close)
        self.check, self.list, self.watch = health_stubs(self.channel)


class HealthTests(Base):
    def test_check_known_services(self):
        for service in ("", SERVICE):
            resp = self.check(HealthCheckRequest(service=service),
                              timeout=RPC_TIMEOUT)
            self.assertEqual(resp.status, SERVING, service)

    def test_check_unknown_service(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.check(HealthCheckRequest(service="foo.Bar"),
                       timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), Code.NOT_FOUND)

    def test_list(self):
        resp = self.list(HealthListRequest(), timeout=RPC_TIMEOUT)
        self.assertEqual(set(resp.statuses), {"", SERVICE})
        for name, status in resp.statuses.items():
            self.assertEqual(status.status, SERVING, name)

    def test_watch_known_service(self):
        stream = Stream(self.watch(HealthCheckRequest(service=SERVICE),
                                   timeout=RPC_TIMEOUT * 3))
        self.addCleanup(stream.cancel)
        self.assertEqual(stream.next().status, SERVING)
        self.assertTrue(stream.quiet(0.3), "a second status without change")

    def test_watch_unknown_service_stays_open(self):
        stream = Stream(self.watch(HealthCheckRequest(service="foo.Bar"),
                                   timeout=RPC_TIMEOUT * 3))
        self.addCleanup(stream.cancel)
        self.assertEqual(stream.next().status, SERVICE_UNKNOWN)
        self.assertTrue(stream.quiet(0.5), "the stream ended or said more")
        stream.cancel()
        end = stream.next()
        if end is not Stream.END:
            self.assertEqual(end.code(), Code.CANCELLED)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HealthLifecycleTests(unittest.TestCase):
    """Sidecars of their own."""

    def start(self, *flags):
        sidecar = Sidecar(*flags).start()
        self.addCleanup(sidecar.kill)
        channel = grpc.insecure_channel(sidecar.address)
        self.addCleanup(channel.close)
        return sidecar, channel

    def test_sigterm_reports_not_serving_then_ends_ok(self):
        sidecar, channel = self.start()
        _, _, watch = health_stubs(channel)
        streams = [Stream(watch(HealthCheckRequest(service=s),
                                timeout=common.STOP_TIMEOUT * 2))
                   for s in ("", SERVICE)]
        for s in streams:
            self.addCleanup(s.cancel)
            self.assertEqual(s.next().status, SERVING)
        os.kill(sidecar.proc.pid, signal.SIGTERM)
        for s in streams:
            item = s.next(timeout=common.STOP_TIMEOUT)
            self.assertNotIsInstance(item, grpc.RpcError, repr(item))
            self.assertIsNot(item, Stream.END, "ended without NOT_SERVING")
            self.assertEqual(item.status, NOT_SERVING)
            self.assertIs(s.next(timeout=common.STOP_TIMEOUT), Stream.END)
            self.assertEqual(s.call.code(), Code.OK)
        self.assertEqual(sidecar.wait_exit(), 0, sidecar.log_tail())

    @unittest.skipIf(common.WRAPPER and
                     os.path.basename(common.WRAPPER[0]) == "pair.sh",
                     "pair mode chooses the backend itself")
    def test_uapi_backend_follows_the_upstream(self):
        sidecar, channel = self.start(
            "--backend", "uapi",
            "--uapi-url", "http://127.0.0.1:%d" % free_port())
        check, _, watch = health_stubs(channel)
        stream = Stream(watch(HealthCheckRequest(service=SERVICE),
                              timeout=RPC_TIMEOUT * 3))
        self.addCleanup(stream.cancel)
        self.assertEqual(stream.next().status, SERVING)
        get = channel.unary_unary("/%s/GetPhoneCall" % SERVICE)
        # extension "210", phone_call_id "0123456789abcdef0123"
        request = b"\x12\x03210\x1a\x140123456789abcdef0123"
        with self.assertRaises(grpc.RpcError) as cm:
            get(request, timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), Code.UNAVAILABLE,
                         cm.exception.details())
        self.assertEqual(stream.next().status, NOT_SERVING)
        self.assertEqual(check(HealthCheckRequest(service=SERVICE),
                               timeout=RPC_TIMEOUT).status, NOT_SERVING)
        self.assertEqual(check(HealthCheckRequest(service=""),
                               timeout=RPC_TIMEOUT).status, SERVING)
        stream.cancel()
        sidecar.stop_checked(self)


class ReflectionTests(Base):
    def each_version(self):
        for version in ("v1", "v1alpha"):
            with self.subTest(version=version):
                r = Reflector(self.channel, version)
                yield r
                rest, code = r.close()
                self.assertEqual(rest, [])
                self.assertEqual(code, Code.OK)

    def test_list_services(self):
        for r in self.each_version():
            resp = r.ask(list_services="*")
            self.assertEqual(resp.original_request.list_services, "*")
            names = {s.name for s in resp.list_services_response.service}
            self.assertEqual(names, ALL_SERVICES)

    def test_file_by_filename(self):
        for r in self.each_version():
            files = r.files(file_by_filename=PHONECALLS_FILE)
            self.assertEqual(files[0].name, PHONECALLS_FILE)
            self.assertEqual(files[0].package, "uapi.phonecalls.v1")
            self.assertEqual({f.name for f in files[1:]}, PHONECALLS_DEPS)
            files = r.files(file_by_filename="grpc/health/v1/health.proto")
            self.assertEqual([f.name for f in files],
                             ["grpc/health/v1/health.proto"])

    def test_file_containing_symbol(self):
        cases = {
            SERVICE: PHONECALLS_FILE,
            SERVICE + ".GetPhoneCall": PHONECALLS_FILE,
            "uapi.phonecalls.v1.PhoneCall": PHONECALLS_FILE,
            "uapi.phonecalls.v1.PhoneCallEvent.Type": PHONECALLS_FILE,
            HEALTH: "grpc/health/v1/health.proto",
            "grpc.health.v1.HealthCheckResponse.ServingStatus":
                "grpc/health/v1/health.proto",
            REFLECTION["v1alpha"]: "grpc/reflection/v1alpha/reflection.proto",
            "google.protobuf.Timestamp": "google/protobuf/timestamp.proto",
        }
        for r in self.each_version():
            for symbol, name in cases.items():
                self.assertEqual(
                    r.files(file_containing_symbol=symbol)[0].name, name,
                    symbol)

    def test_not_found(self):
        for r in self.each_version():
            for fields in ({"file_by_filename": "nope.proto"},
                           {"file_containing_symbol": "uapi.Nope"},
                           {"all_extension_numbers_of_type": "uapi.Nope"}):
                resp = r.ask(**fields)
                self.assertEqual(resp.WhichOneof("message_response"),
                                 "error_response", fields)
                self.assertEqual(resp.error_response.error_code, NOT_FOUND)
            ext = r.Request(host="").file_containing_extension
            ext.containing_type = "uapi.phonecalls.v1.PhoneCall"
            ext.extension_number = 100
            resp = r.ask(file_containing_extension=ext)
            self.assertEqual(resp.error_response.error_code, NOT_FOUND)


class ReflectionClientTests(Base):
    """A client that learns PhoneCallService from reflection alone and calls
    every one of its RPCs."""

    def discover(self):
        r = Reflector(self.channel, "v1")
        files = {}
        names = {s.name for s in
                 r.ask(list_services="").list_services_response.service}
        self.assertIn(SERVICE, names)
        for fdp in r.files(file_containing_symbol=SERVICE):
            files[fdp.name] = fdp
        # Every import is there, or fetched by name.
        missing = [d for f in files.values() for d in f.dependency
                   if d not in files]
        for name in missing:
            for fdp in r.files(file_by_filename=name):
                files.setdefault(fdp.name, fdp)
        self.assertEqual(r.close()[1], Code.OK)
        pool = pool_of(files)
        return pool, pool.FindServiceByName(SERVICE)

    def callable_of(self, method, pool):
        req = message_class(pool, method.input_type.full_name)
        resp = message_class(pool, method.output_type.full_name)
        path = "/%s/%s" % (SERVICE, method.name)
        kind = (self.channel.unary_stream if method.server_streaming
                else self.channel.unary_unary)
        return req, kind(path, request_serializer=req.SerializeToString,
                         response_deserializer=resp.FromString)

    def test_discover_and_call_every_rpc(self):
        pool, service = self.discover()
        methods = {m.name: m for m in service.methods}
        self.assertEqual(len(methods), 19)
        ext = fresh_ext()

        Create, create = self.callable_of(methods["CreateSimplePhoneCall"], pool)
        created = create(Create(extension=ext, source=[ext],
                                destination=["210"]), timeout=RPC_TIMEOUT)
        self.assertEqual(len(created.phone_calls), 1)
        call_id = created.phone_calls[0].id

        Get, get = self.callable_of(methods["GetPhoneCall"], pool)
        got = get(Get(extension=ext, phone_call_id=call_id),
                  timeout=RPC_TIMEOUT)
        self.assertEqual(got.id, call_id)

        List, list_calls = self.callable_of(methods["ListPhoneCalls"], pool)
        page = list_calls(List(extension=ext), timeout=RPC_TIMEOUT)
        self.assertIn(call_id, [c.id for c in page.phone_calls])

        Watch, watch = self.callable_of(methods["WatchPhoneCalls"], pool)
        stream = Stream(watch(Watch(extension=ext), timeout=RPC_TIMEOUT * 3))
        self.addCleanup(stream.cancel)
        stream.call.initial_metadata()  # the stream is live
        create(Create(extension=ext, source=[ext], destination=["211"]),
               timeout=RPC_TIMEOUT)
        event = stream.next()
        self.assertNotIsInstance(event, grpc.RpcError, repr(event))
        self.assertEqual(event.phone_call.extension, ext)
        stream.cancel()

        # Every other method: its request is read as its own type and
        # answered by the service (an answer or the service's own error,
        # never UNIMPLEMENTED or a decoding failure).
        done = {"CreateSimplePhoneCall", "GetPhoneCall", "ListPhoneCalls",
                "WatchPhoneCalls"}
        for name, method in methods.items():
            if name in done:
                continue
            with self.subTest(method=name):
                Req, fn = self.callable_of(method, pool)
                fields = {"extension": ext, "phone_call_id": call_id,
                          "phone_call_view_id": "01", "source": [ext],
                          "destination": ["212"], "send_call_to": "213"}
                known = Req.DESCRIPTOR.fields_by_name
                req = Req(**{k: v for k, v in fields.items() if k in known})
                try:
                    fn(req, timeout=RPC_TIMEOUT)
                except grpc.RpcError as e:
                    self.assertIn(e.code(), (Code.INVALID_ARGUMENT,
                                             Code.FAILED_PRECONDITION,
                                             Code.NOT_FOUND),
                                  "%s: %s" % (name, e.details()))
        Hangup, hangup = self.callable_of(methods["HangupPhoneCalls"], pool)
        hangup(Hangup(extension=ext), timeout=RPC_TIMEOUT)
        self.assertEqual(len(list_calls(List(extension=ext),
                                        timeout=RPC_TIMEOUT).phone_calls), 0)


class AdminEndpointTests(unittest.TestCase):
    """--admin-listen: Prometheus /metrics, /healthz and /readyz."""

    @classmethod
    def setUpClass(cls):
        cls.sidecar = Sidecar().start()
        cls.admin = cls.wait_admin(cls.sidecar)

    @classmethod
    def tearDownClass(cls):
        assert cls.sidecar.stop() == 0

    @staticmethod
    def wait_admin(sidecar):
        deadline = time.monotonic() + RPC_TIMEOUT
        while time.monotonic() < deadline:
            for line in list(sidecar.lines):
                m = re.search(r"admin serving address=(\S+)", line)
                if m:
                    return m.group(1)
            time.sleep(0.02)
        raise AssertionError("no admin address in the log")

    def get(self, path, method="GET"):
        host, port = self.admin.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=RPC_TIMEOUT)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, r.getheader("content-type"), r.read().decode()
        finally:
            conn.close()

    def call_get(self, call_id):
        ch = grpc.insecure_channel(self.sidecar.address)
        try:
            ch.unary_unary(
                "/uapi.phonecalls.v1.PhoneCallService/GetPhoneCall")(
                    b"\x12\x03210\x1a\x05abcde", timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            return e.code()
        finally:
            ch.close()

    def test_probes(self):
        self.assertEqual(self.get("/healthz")[0], 200)
        self.assertEqual(self.get("/readyz")[0], 200)
        self.assertEqual(self.get("/nope")[0], 404)
        self.assertEqual(self.get("/metrics", "POST")[0], 405)

    def test_metrics_count_rpcs_by_code(self):
        self.assertEqual(self.call_get("abcde"), grpc.StatusCode.NOT_FOUND)
        status, ctype, text = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"))
        handled = ('grpc_server_handled_total{grpc_type="unary",'
                   'grpc_service="uapi.phonecalls.v1.PhoneCallService",'
                   'grpc_method="GetPhoneCall",grpc_code="NOT_FOUND"} ')
        line = [l for l in text.splitlines() if l.startswith(handled)]
        self.assertEqual(len(line), 1, text)
        self.assertGreaterEqual(int(line[0].split()[-1]), 1)
        for name in ("grpc_server_started_total{",
                     "grpc_server_handling_seconds_bucket{",
                     "uapi_sidecar_engine_calls ",
                     "uapi_sidecar_breaker_state ",
                     "process_resident_memory_bytes "):
            self.assertIn("\n" + name, text)

    def test_not_ready_while_draining(self):
        sidecar = Sidecar("--shutdown-grace", "3000").start()
        admin = self.wait_admin(sidecar)
        ch = grpc.insecure_channel(sidecar.address)
        stream = ch.unary_stream(
            "/uapi.phonecalls.v1.PhoneCallService/WatchPhoneCalls")(
                b"", timeout=10)
        stream.initial_metadata()  # the stream is open: drain must wait
        os.kill(sidecar.proc.pid, signal.SIGTERM)
        host, port = admin.rsplit(":", 1)
        # The signal is handled on a later loop turn: poll until readiness
        # goes (503, or the endpoint already closed with the process).
        status, deadline = 200, time.monotonic() + 5
        while status == 200 and time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=2)
                conn.request("GET", "/readyz")
                status = conn.getresponse().status
                conn.close()
            except OSError:
                status = None
            if status == 200:
                time.sleep(0.01)
        self.assertIn(status, (503, None))
        ch.close()
        self.assertEqual(sidecar.proc.wait(timeout=10), 0)


if __name__ == "__main__":
    common.main(__name__)
