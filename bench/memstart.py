#!/usr/bin/python3
"""Benchmark helper: start time and memory of uapi-sidecar --backend native.

usage: memstart.py SIDECAR CREATE_BIN OUT_MD [SERVER_CPU CLIENT_CPU]

CREATE_BIN is a gRPC-framed CreateSimplePhoneCall request (written by
setup_call.py). Every sidecar instance is started fresh, pinned to
SERVER_CPU (sched_setaffinity before exec, so no taskset in the timing), as

  SIDECAR --backend native --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0

and measured as follows:

- start (STARTS instances): wall time from just before fork+exec until
  stderr shows "listening address=", and until a first
  CreateSimplePhoneCall (raw HTTP/2 over a new TCP connection, python3-h2)
  answers grpc-status 0; median of the STARTS instances;
- idle RSS: VmRSS (/proc/PID/status) of a new instance SETTLE s after its
  listening line, before any connection;
- per idle connection: CONNS TCP connections, each through the client
  preface, both SETTINGS and both SETTINGS ACKs, then SETTLE s; the VmRSS
  delta divided by the connections the admin /metrics reports open;
- per call held: h2load -n CALLS (pinned to CLIENT_CPU) POSTs CREATE_BIN to
  a new instance; after h2load exits and SETTLE s, the VmRSS delta divided
  by uapi_sidecar_engine_calls from /metrics.

Writes a Markdown section to OUT_MD and progress lines to stderr.
"""
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import h2.config
import h2.connection
import h2.events

STARTS = 5
CONNS = int(os.environ.get("BENCH_MEM_CONNS", "1000"))
CALLS = int(os.environ.get("BENCH_MEM_CALLS", "100000"))
SETTLE = 0.5
METHOD = "/uapi.phonecalls.v1.PhoneCallService/CreateSimplePhoneCall"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LISTEN_RE = re.compile(rb"listening address=(\S+)")
ADMIN_RE = re.compile(rb"admin serving address=(\S+)")

# Targets from the issue.
TARGET_IDLE_MIB = 8
TARGET_CONN_KIB = 16
TARGET_CALL_KIB = 1
TARGET_START_MS = 50


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


class Sidecar:
    """One sidecar process; a thread keeps its stderr drained."""

    def __init__(self, binary, cpu, logpath):
        self.cpu = cpu
        self.listen = None
        self.admin = None
        self.t_listen = None
        self._ready = threading.Event()
        self._log = open(logpath, "ab")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "--backend", "native", "--listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        for line in self.proc.stderr:
            if self.listen is None:
                m = LISTEN_RE.search(line)
                if m:
                    self.t_listen = time.monotonic()
                    self.listen = m.group(1).decode()
            m = ADMIN_RE.search(line)
            if m:
                self.admin = m.group(1).decode()
            if self.listen and self.admin:
                self._ready.set()
            self._log.write(line)
        self._ready.set()

    def wait_listening(self, timeout=10):
        if not self._ready.wait(timeout) or self.listen is None:
            raise RuntimeError("sidecar did not log 'listening address='")
        return self.t_listen - self.t0

    def host_port(self):
        host, port = self.listen.rsplit(":", 1)
        return host, int(port)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def metrics(self):
        with urllib.request.urlopen("http://%s/metrics" % self.admin,
                                    timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(5)
        self._log.close()


def grpc_call(host, port, body, timeout=10):
    """One unary call over a new connection; returns grpc-status (str)."""
    cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config=cfg)
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"),
            (":authority", "%s:%d" % (host, port)), (":path", METHOD),
            ("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status = None
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, (h2.events.ResponseReceived,
                                   h2.events.TrailersReceived)):
                    for k, v in ev.headers:
                        if k == "grpc-status":
                            status = v
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(
                        ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    return status
                elif isinstance(ev, (h2.events.StreamReset,
                                     h2.events.ConnectionTerminated)):
                    return "reset"
            sock.sendall(conn.data_to_send())
        return status
    finally:
        sock.close()


def read_frames(sock, buf):
    """Reads more bytes; returns (buf, [(type, flags)]) of whole frames."""
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("connection closed during the HTTP/2 handshake")
    buf += data
    frames = []
    while len(buf) >= 9:
        length = int.from_bytes(buf[0:3], "big")
        if len(buf) < 9 + length:
            break
        frames.append((buf[3], buf[4]))
        buf = buf[9 + length:]
    return buf, frames


def h2_idle_conn(host, port):
    """TCP connection through preface + SETTINGS exchange both ways."""
    sock = socket.create_connection((host, port), timeout=10)
    # Client preface and an empty SETTINGS frame.
    sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    got_settings = got_ack = False
    buf = b""
    while not (got_settings and got_ack):
        buf, frames = read_frames(sock, buf)
        for ftype, flags in frames:
            if ftype == 4 and flags & 1:
                got_ack = True
            elif ftype == 4:
                got_settings = True
                sock.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
    return sock


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft < need:
        raise RuntimeError("open-files limit %d < %d" % (soft, need))


def verdict(ok):
    return "met" if ok else "**not met**"


def main():
    binary, create_bin, out_md = sys.argv[1:4]
    server_cpu = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    client_cpu = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    with open(create_bin, "rb") as f:
        body = f.read()
    logpath = out_md + ".server.log"
    os.sched_setaffinity(0, {client_cpu})
    # The sidecar inherits this limit: it must hold CONNS sockets too.
    raise_nofile(CONNS + 200)

    # 1. Start time.
    t_listen, t_serve = [], []
    for i in range(STARTS):
        sc = Sidecar(binary, server_cpu, logpath)
        try:
            tl = sc.wait_listening()
            st = grpc_call(*sc.host_port(), body)
            ts = time.monotonic() - sc.t0
        finally:
            sc.stop()
        if st != "0":
            raise RuntimeError("first call: grpc-status %r" % st)
        log("memstart: start %d: listening %.1f ms, first call %.1f ms"
            % (i + 1, tl * 1e3, ts * 1e3))
        t_listen.append(tl * 1e3)
        t_serve.append(ts * 1e3)
    med_listen = statistics.median(t_listen)
    med_serve = statistics.median(t_serve)

    # 2. Idle RSS and idle connections.
    sc = Sidecar(binary, server_cpu, logpath)
    socks = []
    try:
        sc.wait_listening()
        time.sleep(SETTLE)
        rss_idle = sc.rss_kib()
        host, port = sc.host_port()
        for _ in range(CONNS):
            socks.append(h2_idle_conn(host, port))
        time.sleep(SETTLE)
        rss_conns = sc.rss_kib()
        open_conns = int(sc.metrics()["uapi_sidecar_open_connections"])
    finally:
        for s in socks:
            s.close()
        sc.stop()
    if open_conns < CONNS:
        raise RuntimeError("only %d of %d connections open" % (open_conns, CONNS))
    per_conn = (rss_conns - rss_idle) / CONNS
    log("memstart: idle RSS %d KiB; %d connections: RSS %d KiB (%.2f KiB each)"
        % (rss_idle, CONNS, rss_conns, per_conn))

    # 3. Calls held.
    sc = Sidecar(binary, server_cpu, logpath)
    try:
        sc.wait_listening()
        time.sleep(SETTLE)
        rss_before = sc.rss_kib()
        url = "http://%s%s" % (sc.listen, METHOD)
        h2load_cmd = ["h2load", "-n", str(CALLS), "-c", "10", "-m", "10",
                      "-d", create_bin, "-H", "content-type: application/grpc",
                      "-H", "te: trailers", url]
        out = subprocess.run(h2load_cmd, check=True, capture_output=True,
                             text=True).stdout
        time.sleep(SETTLE)
        rss_calls = sc.rss_kib()
        m = sc.metrics()
        held = int(m["uapi_sidecar_engine_calls"])
        rss_idle2 = rss_before
    finally:
        sc.stop()
    finished = re.search(r"^finished in ([^,\s]+)", out, re.M)
    reqs = re.search(r"^requests: .*", out, re.M)
    if held < 1:
        raise RuntimeError("no call held after h2load:\n" + out)
    per_call = (rss_calls - rss_before) / held
    log("memstart: %d calls held: RSS %d -> %d KiB (%.3f KiB each)"
        % (held, rss_before, rss_calls, per_call))

    kib = lambda k: "%d KiB (%.2f MiB)" % (k, k / 1024)
    rows = [
        ("time to `listening address=` (median of %d)" % STARTS,
         "%.1f ms" % med_listen, "—", "—"),
        ("time to first successful gRPC call (median of %d)" % STARTS,
         "%.1f ms" % med_serve, "≤ %d ms" % TARGET_START_MS,
         verdict(med_serve <= TARGET_START_MS)),
        ("RSS idle", kib(rss_idle), "≤ %d MiB" % TARGET_IDLE_MIB,
         verdict(rss_idle <= TARGET_IDLE_MIB * 1024)),
        ("RSS per idle connection (%d open: %s)" % (open_conns, kib(rss_conns)),
         "%.2f KiB (%.1f MiB per 1,000)" % (per_conn, per_conn * 1000 / 1024),
         "≤ %d KiB" % TARGET_CONN_KIB, verdict(per_conn <= TARGET_CONN_KIB)),
        ("RSS per call held (%d held: %s, from %s)"
         % (held, kib(rss_calls), kib(rss_idle2)),
         "%.3f KiB (%d bytes)" % (per_call, round(per_call * 1024)),
         "≤ %d KiB" % TARGET_CALL_KIB, verdict(per_call <= TARGET_CALL_KIB)),
    ]
    with open(out_md, "w") as f:
        w = lambda s="": print(s, file=f)
        w("## Memory and start")
        w()
        w("uapi-sidecar only, started fresh for each measure and pinned to CPU %d"
          % server_cpu)
        w("(`sched_setaffinity` before exec); the client (`bench/memstart.py`,")
        w("/usr/bin/python3, and h2load) is pinned to CPU %d:" % client_cpu)
        w()
        w("```")
        w("%s --backend native --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0"
          % binary)
        w("```")
        w()
        w("- start: wall time from just before fork+exec until stderr shows")
        w("  `listening address=`, and until a first CreateSimplePhoneCall on a new")
        w("  connection (python3-h2) answers grpc-status 0; %d starts, median."
          % STARTS)
        w("  All starts (ms, listening / first call): %s."
          % ", ".join("%.1f / %.1f" % p for p in zip(t_listen, t_serve)))
        w("- RSS idle: VmRSS (`/proc/PID/status`) %.1f s after the listening line,"
          % SETTLE)
        w("  before any connection.")
        w("- per idle connection: %d TCP connections, each through the client" % CONNS)
        w("  preface, both SETTINGS frames and both ACKs, then %.1f s; VmRSS delta"
          % SETTLE)
        w("  over the idle figure divided by %d (`uapi_sidecar_open_connections`"
          % CONNS)
        w("  on /metrics reads %d)." % open_conns)
        w("- per call held: `%s` (CreateSimplePhoneCall, the body"
          % " ".join(h2load_cmd[:8] + ["create.bin", "-H", "'content-type: application/grpc'",
                                          "-H", "'te: trailers'", "URL"]))
        w("  of `bench/setup_call.py`) against a new instance at the default")
        w("  `--max-calls` 100000; %.1f s after h2load exits, VmRSS delta divided by"
          % SETTLE)
        w("  `uapi_sidecar_engine_calls` on /metrics (%d). h2load: %s%s."
          % (held, reqs.group(0) if reqs else "?",
             ", finished in " + finished.group(1) if finished else ""))
        w("  (h2load counts HTTP 200s; the metric counts the calls actually held.)")
        w("  The delta includes whatever the allocator keeps from h2load's 10")
        w("  connections.")
        w("- the first-call time includes the Python client's connect, handshake")
        w("  and request; the sidecar logs at the default level (info) here, its")
        w("  stderr drained by a thread of `bench/memstart.py`.")
        w()
        w("| measure | value | target (issue) | |")
        w("|---|---:|---:|---|")
        for r in rows:
            w("| %s | %s | %s | %s |" % r)
    log("memstart: wrote " + out_md)


if __name__ == "__main__":
    main()
