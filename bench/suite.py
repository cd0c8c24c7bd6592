#!/usr/bin/python3
"""Benchmark measures beyond the GetPhoneCall peak of bench/run.sh:
OnHold/OffHold pairs, latency at half of the peak, and scaling with
concurrent streams and with calls held.

usage: suite.py SIDECAR REF NGHTTPD WORK OUT_MD OUT_JSON PEAKS

SIDECAR and REF are the uapi-sidecar and bench/ref binaries; NGHTTPD is
nghttpd's path or "" (WORK/docroot/GetPhoneCall is the file it serves);
PEAKS is "name=req/s,..." from run.sh's GetPhoneCall table (sidecar,
ref, nghttpd). Every server runs alone pinned to SERVER_CPU (0); every
h2load is pinned to CLIENT_CPU (1). Writes a Markdown section to OUT_MD
and the figures to OUT_JSON (for bench/plot.py).
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from google.protobuf import wrappers_pb2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import setup_call  # noqa: E402

SERVER_CPU = 0
CLIENT_CPU = 1
RUNS = 3
PAIR_SECONDS = int(os.environ.get("BENCH_PAIR_SECONDS", "4"))
LAT_SECONDS = int(os.environ.get("BENCH_LAT_SECONDS", "5"))
SCALE_SECONDS = int(os.environ.get("BENCH_SCALE_SECONDS", "2"))
PAIR_CLIENTS = 10   # one call and one connection each
PAIR_STREAMS = 10   # per connection
STREAM_POINTS = [(1, 1), (1, 10), (10, 10), (10, 100)]  # (-c, -m)
CALL_POINTS = [1, 100, 1000, 10000]
SERVICE = "/uapi.phonecalls.v1.PhoneCallService/"
HDRS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on port %d" % port)


class Server:
    """A server process pinned to SERVER_CPU, stopped on exit."""

    def __init__(self, name, argv, port, logpath, admin=None):
        self.name = name
        self.admin = admin
        self.port = port
        self.argv = argv
        self._log = open(logpath, "ab")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}))
        wait_port(port)

    def url(self, method):
        return "http://127.0.0.1:%d%s" % (self.port, method)

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def handled(server, method):
    """grpc_server_handled_total by code for one method, from /metrics."""
    with urllib.request.urlopen("http://%s/metrics" % server.admin,
                                timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("grpc_server_handled_total{") and \
                'grpc_method="%s"' % method in line:
            code = re.search(r'grpc_code="(\w+)"', line).group(1)
            out[code] = out.get(code, 0) + float(line.rsplit(" ", 1)[1])
    return out


def h2load(args, body, urls, logfile=None):
    """Runs h2load pinned to CLIENT_CPU; returns (req/s, succeeded)."""
    cmd = ["taskset", "-c", str(CLIENT_CPU), "h2load", *args, "-d", body,
           *HDRS]
    if logfile:
        cmd += ["--log-file", logfile]
    out = subprocess.run(cmd + urls, check=True, capture_output=True,
                         text=True).stdout
    rps = float(re.search(r"finished in .*?, ([\d.]+) req/s", out).group(1))
    ok = int(re.search(r"^requests: .*?(\d+) succeeded", out, re.M).group(1))
    return rps, ok


def percentiles(logfile):
    """p50 and p99 in µs of h2load's --log-file (start, status, µs)."""
    with open(logfile) as f:
        us = sorted(int(line.split("\t")[2]) for line in f if line.strip())
    if not us:
        return None, None
    return us[len(us) // 2], us[min(len(us) - 1, int(len(us) * 0.99))]


def median_runs(fn):
    results = [fn() for _ in range(RUNS)]
    return sorted(results)[RUNS // 2]


class Bodies:
    """Calls made on a server and the request bodies that name them."""

    def __init__(self, pb2, pb2_grpc, work):
        self.pb2, self.pb2_grpc, self.work = pb2, pb2_grpc, work

    def create_calls(self, server, n, prefix):
        import grpc
        paths = []
        with grpc.insecure_channel("127.0.0.1:%d" % server.port) as ch:
            stub = self.pb2_grpc.PhoneCallServiceStub(ch)
            for i in range(n):
                made = stub.CreateSimplePhoneCall(self.create_request(),
                                                  timeout=10)
                call_id = made.phone_calls[0].id
                hold = self.pb2.OnHoldRequest(
                    extension=setup_call.EXT, phone_call_id=call_id,
                    phone_call_view_id="00")
                path = os.path.join(self.work, "%s%d.bin" % (prefix, i))
                with open(path, "wb") as f:
                    f.write(setup_call.frame(hold))
                paths.append(path)
        return paths

    def create_request(self):
        return self.pb2.CreatePhoneCallRequest(
            extension=setup_call.EXT, source=[setup_call.EXT],
            destination=["210"])

    def write(self, name, msg):
        path = os.path.join(self.work, name)
        with open(path, "wb") as f:
            f.write(setup_call.frame(msg))
        return path


def pairs(server, bodies):
    """OnHold then OffHold of one call per connection, PAIR_CLIENTS
    connections at once, each h2load alternating the two methods on its
    own call (h2load sends a client's URIs in turn). Returns req/s."""
    calls = bodies.create_calls(server, PAIR_CLIENTS, "hold-%s-" % server.name)
    urls = [server.url(SERVICE + "OnHold"), server.url(SERVICE + "OffHold")]

    def one_run():
        procs = [subprocess.Popen(
            ["taskset", "-c", str(CLIENT_CPU), "h2load", "-D",
             str(PAIR_SECONDS), "-c", "1", "-m", str(PAIR_STREAMS), "-d", body,
             *HDRS, *urls], stdout=subprocess.PIPE, text=True)
            for body in calls]
        total = 0.0
        for p in procs:
            out = p.communicate()[0]
            total += float(re.search(r"finished in .*?, ([\d.]+) req/s",
                                     out).group(1))
        return total

    cpu0 = server.cpu_seconds()
    rates = [one_run() for _ in range(RUNS)]
    cpu = server.cpu_seconds() - cpu0
    done = sum(rates) * PAIR_SECONDS
    return {"rps": statistics.median(rates),
            "cpu_us": cpu * 1e6 / done if done else None}


def latency(server, body, url, peak, work):
    """p50/p99 at half of `peak` req/s, 10 connections x 10 streams."""
    rps_per_client = max(1, int(peak * 0.5 / 10))
    logfile = os.path.join(work, "lat-%s.log" % server.name)

    def one_run():
        if os.path.exists(logfile):
            os.unlink(logfile)
        rps, _ = h2load(["-D", str(LAT_SECONDS), "-c", "10", "-m", "10",
                         "--rps", str(rps_per_client)], body, [url], logfile)
        p50, p99 = percentiles(logfile)
        return (p50, p99, rps)

    p50, p99, rps = median_runs(one_run)
    return {"target_rps": rps_per_client * 10, "rps": rps, "p50_us": p50,
            "p99_us": p99}


def scale_streams(server, body, url, work):
    logfile = os.path.join(work, "streams-%s.log" % server.name)
    points = []
    for c, m in STREAM_POINTS:
        def one_run():
            if os.path.exists(logfile):
                os.unlink(logfile)
            rps, _ = h2load(["-D", str(SCALE_SECONDS), "-c", str(c), "-m",
                             str(m)], body, [url], logfile)
            return (rps, *percentiles(logfile))
        rps, p50, p99 = median_runs(one_run)
        points.append({"streams": c * m, "c": c, "m": m, "rps": rps,
                       "p50_us": p50, "p99_us": p99})
        log("%s: %d streams: %.0f req/s, p99 %s µs" % (server.name, c * m,
                                                       rps, p99))
    return points


def scale_calls(server, bodies, work):
    """Get of one call, List of the first page and List of a page in the
    middle, as the engine holds 1 .. 10,000 calls of that extension."""
    pb2 = bodies.pb2
    create = bodies.write("scale-create.bin", bodies.create_request())
    first = bodies.create_calls(server, 1, "scale-call-")[0]
    held = 1
    get_body = os.path.join(work, "scale-get.bin")
    with open(first, "rb") as f:
        hold = pb2.OnHoldRequest()
        hold.ParseFromString(f.read()[5:])
    bodies.write("scale-get.bin", pb2.GetPhoneCallRequest(
        extension=setup_call.EXT, phone_call_id=hold.phone_call_id))
    logfile = os.path.join(work, "calls-%s.log" % server.name)
    points = []
    for n in CALL_POINTS:
        if n > held:
            h2load(["-n", str(n - held), "-c", "10", "-m", "10"], create,
                   [server.url(SERVICE + "CreateSimplePhoneCall")])
            held = n
        lists = {
            "list_first": bodies.write("scale-list0.bin", pb2.ListPhoneCallsRequest(
                extension=setup_call.EXT)),
            "list_middle": bodies.write("scale-listm.bin", pb2.ListPhoneCallsRequest(
                extension=setup_call.EXT,
                start_index=wrappers_pb2.Int32Value(value=min(n // 2, 5000)))),
        }
        point = {"calls": n}
        for name, body, method in [("get", get_body, "GetPhoneCall"),
                                   ("list_first", lists["list_first"],
                                    "ListPhoneCalls"),
                                   ("list_middle", lists["list_middle"],
                                    "ListPhoneCalls")]:
            def one_run():
                if os.path.exists(logfile):
                    os.unlink(logfile)
                rps, _ = h2load(["-D", str(SCALE_SECONDS), "-c", "10", "-m",
                                 "10"], body, [server.url(SERVICE + method)],
                                logfile)
                return (rps, *percentiles(logfile))
            rps, p50, p99 = median_runs(one_run)
            point[name] = {"rps": rps, "p50_us": p50, "p99_us": p99}
        log("sidecar: %d calls: get %.0f, list %.0f, list middle %.0f req/s"
            % (n, point["get"]["rps"], point["list_first"]["rps"],
               point["list_middle"]["rps"]))
        points.append(point)
    codes = handled(server, "ListPhoneCalls")
    bad = {k: v for k, v in codes.items() if k != "OK"}
    if bad:
        raise RuntimeError("ListPhoneCalls answered errors: %s" % bad)
    return points


def main():
    sidecar, ref, nghttpd, work, out_md, out_json, peaks_arg = sys.argv[1:8]
    peaks = dict((k, float(v)) for k, v in
                 (p.split("=") for p in peaks_arg.split(",") if p))
    stubdir = tempfile.mkdtemp(prefix="usc-bench-stubs-", dir=work)
    pb2, pb2_grpc = setup_call.load_stubs(stubdir)
    bodies = Bodies(pb2, pb2_grpc, work)
    results = {"pairs": {}, "latency": {}, "streams": {}, "calls": []}
    get_body = os.path.join(work, "get.bin")

    def sidecar_server():
        port, admin = free_port(), "127.0.0.1:%d" % free_port()
        return Server("uapi-sidecar", [
            sidecar, "--backend", "native", "--listen", "127.0.0.1:%d" % port,
            "--admin-listen", admin, "--log-level", "warn",
            "--max-calls", "100000"], port, os.path.join(work, "suite.log"),
            admin)

    def ref_server():
        port = free_port()
        return Server("ref-grpc++", [ref, str(port)], port,
                      os.path.join(work, "suite.log"))

    for make in (sidecar_server, ref_server):
        server = make()
        try:
            log("%s: OnHold/OffHold pairs" % server.name)
            results["pairs"][server.name] = pairs(server, bodies)
            if server.name == "uapi-sidecar":
                for method in ("OnHold", "OffHold"):
                    codes = handled(server, method)
                    bad = {k: v for k, v in codes.items() if k != "OK"}
                    if bad:
                        raise RuntimeError("%s answered errors: %s"
                                           % (method, bad))
                results["pairs"][server.name]["verified"] = True
            get_call = bodies.create_calls(server, 1, "get-%s-" % server.name)
            with open(get_call[0], "rb") as f:
                hold = pb2.OnHoldRequest()
                hold.ParseFromString(f.read()[5:])
            body = bodies.write("get-%s.bin" % server.name,
                                pb2.GetPhoneCallRequest(
                                    extension=setup_call.EXT,
                                    phone_call_id=hold.phone_call_id))
            url = server.url(SERVICE + "GetPhoneCall")
            log("%s: latency at half of the peak" % server.name)
            results["latency"][server.name] = latency(
                server, body, url, peaks[server.name], work)
            log("%s: concurrent streams" % server.name)
            results["streams"][server.name] = scale_streams(server, body, url,
                                                            work)
        finally:
            server.stop()

    if nghttpd:
        port = free_port()
        server = Server("nghttpd", [nghttpd, "--no-tls", "-d",
                                    os.path.join(work, "docroot"), str(port)],
                        port, os.path.join(work, "suite.log"))
        try:
            url = server.url("/GetPhoneCall")
            log("nghttpd: latency at half of the peak")
            results["latency"]["nghttpd"] = latency(server, get_body, url,
                                                    peaks["nghttpd"], work)
            results["streams"]["nghttpd"] = scale_streams(server, get_body,
                                                          url, work)
        finally:
            server.stop()

    server = sidecar_server()
    try:
        log("uapi-sidecar: calls held")
        results["calls"] = scale_calls(server, bodies, work)
    finally:
        server.stop()

    with open(out_json, "w") as f:
        json.dump(results, f, indent=1)
    write_markdown(results, out_md)


def fmt(v, digits=0):
    return "n/a" if v is None else ("%.*f" % (digits, v))


def write_markdown(r, path):
    lines = []
    w = lines.append
    w("## OnHold/OffHold pairs")
    w("")
    w("%d connections at once, each with its own call, %d streams each:"
      % (PAIR_CLIENTS, PAIR_STREAMS))
    w("one `h2load -D %d -c 1 -m %d -d hold-N.bin ... URL/OnHold URL/OffHold`"
      % (PAIR_SECONDS, PAIR_STREAMS))
    w("per connection, all pinned to CPU %d (h2load sends a client's URIs in"
      % CLIENT_CPU)
    w("turn, and the server answers a connection's streams in order, so every")
    w("OnHold finds the call off hold). req/s is the sum over the connections,")
    w("median of %d runs; the sidecar's `grpc_server_handled_total` is checked"
      % RUNS)
    w("to hold no code other than OK for both methods afterwards.")
    w("")
    w("| server | req/s (OnHold + OffHold) | CPU µs/request | vs ref-grpc++ |")
    w("|---|---:|---:|---:|")
    ref = r["pairs"].get("ref-grpc++", {}).get("rps")
    for name, v in r["pairs"].items():
        w("| %s | %s | %s | %s |" % (name, fmt(v["rps"]), fmt(v["cpu_us"], 2),
                                   fmt(v["rps"] / ref, 2) if ref else "n/a"))
    w("")
    w("## GetPhoneCall latency at half of the peak")
    w("")
    w("`h2load -D %d -c 10 -m 10 --rps R --log-file F`: R per connection is"
      % LAT_SECONDS)
    w("a tenth of half the server's peak req/s from the table above; p50 and")
    w("p99 of every request's time in F (µs), median of %d runs." % RUNS)
    w("")
    w("| server | offered req/s | achieved req/s | p50 µs | p99 µs |")
    w("|---|---:|---:|---:|---:|")
    for name, v in r["latency"].items():
        w("| %s | %d | %s | %s | %s |" % (name, v["target_rps"], fmt(v["rps"]),
                                         fmt(v["p50_us"]), fmt(v["p99_us"])))
    w("")
    w("## Scaling: concurrent streams")
    w("")
    w("GetPhoneCall at full load, `h2load -D %d -c C -m M` for C x M streams;"
      % SCALE_SECONDS)
    w("median of %d runs." % RUNS)
    w("")
    names = list(r["streams"])
    w("| streams | " + " | ".join("%s req/s | %s p99 µs" % (n, n)
                                   for n in names) + " |")
    w("|---:|" + "---:|---:|" * len(names))
    for i, (c, m) in enumerate(STREAM_POINTS):
        cells = []
        for n in names:
            p = r["streams"][n][i]
            cells += [fmt(p["rps"]), fmt(p["p99_us"])]
        w("| %d (-c %d -m %d) | %s |" % (c * m, c, m, " | ".join(cells)))
    w("")
    w("## Scaling: calls held by the engine")
    w("")
    w("uapi-sidecar alone; the calls are made with CreateSimplePhoneCall on")
    w("one extension, then `h2load -D %d -c 10 -m 10` runs each request:"
      % SCALE_SECONDS)
    w("GetPhoneCall of the first call, ListPhoneCalls of that extension (first")
    w("page: 20 calls, with the total count) and a page from the middle")
    w("(start_index = calls / 2, at most 5000). Median of %d runs." % RUNS)
    w("")
    w("| calls held | Get req/s | Get p99 µs | List first page req/s | "
      "List p99 µs | List middle page req/s | List middle p99 µs |")
    w("|---:|---:|---:|---:|---:|---:|---:|")
    for p in r["calls"]:
        w("| %d | %s | %s | %s | %s | %s | %s |" % (
            p["calls"], fmt(p["get"]["rps"]), fmt(p["get"]["p99_us"]),
            fmt(p["list_first"]["rps"]), fmt(p["list_first"]["p99_us"]),
            fmt(p["list_middle"]["rps"]), fmt(p["list_middle"]["p99_us"])))
    w("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
