"""A stand-in UAPI server for the translation-backend suite.

StandIn is a threaded HTTP/1.1 server on 127.0.0.1 (keep-alive, one thread
per connection) that plays the VoipNow UAPI for a sidecar started with
--uapi-url. It records every request it receives (method, target, headers,
body, when, on which connection, whether the client went away while it was
held) and answers each from a per-test script:

- a queue of canned Answers, consumed first-in first-out; then
- `handler`, a callable(Request) -> Answer (None falls through); then
- a 500 saying that nothing was scripted (easy to spot in a failure).

An Answer can be delayed (the stand-in watches the connection meanwhile and
records the moment the client closes or resets it), sent chunked, cut off
mid-body with a TCP reset, or be no answer at all (close the connection).

Requests whose path is `token_path` go to the OAuth2 token endpoint instead:
their own queue, `token_handler` and record (`token_requests`); by default
it issues "standin-token-<n>" valid for an hour.

stop() closes the listening socket and every open connection, so that a
client that comes back finds the port refused; restart() listens again on
the same port.

FakeUapi is a small stateful UAPI (create, list, get, actions, hang-up)
usable as a handler where a test needs an upstream that behaves, rather
than canned answers.

Run as a program (`standin.py --port P`, serve_main), it is a stand-in of
its own process that a test can kill for real and start again on the same
port, its answers switched by commands on stdin.
"""

import http.server
import itertools
import json
import os
import re
import select
import socket
import struct
import threading
import time
import urllib.parse

__all__ = ["Answer", "FakeUapi", "Request", "StandIn", "error_answer",
           "json_answer", "text_answer", "free_port", "seeded_id"]

REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    301: "Moved Permanently", 302: "Found", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 409: "Conflict", 412: "Precondition Failed",
    418: "I'm a teapot", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def free_port():
    """A port of 127.0.0.1 that nothing listens on (bound, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Request:
    """One request as the stand-in received it."""

    def __init__(self, method, target, headers, body, conn_id):
        self.method = method
        self.target = target  # path and query, exactly as sent
        self.path, _, self.query = target.partition("?")
        self.has_query = "?" in target
        self.headers = headers  # [(name, value)], in the order sent
        self.body = body  # bytes
        self.conn_id = conn_id
        self.t = time.monotonic()
        # Set when the client closed or reset the connection while the
        # answer was held back (time.monotonic()).
        self.aborted_at = None
        self.answered_at = None
        self.status = None  # the status answered, None when none was

    def header_values(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header(self, name):
        """The one value of header `name`, or None; AssertionError when it
        was sent more than once."""
        values = self.header_values(name)
        if len(values) > 1:
            raise AssertionError("header %s sent %d times: %r"
                                 % (name, len(values), values))
        return values[0] if values else None

    def query_items(self):
        """The raw (still percent-encoded) "name=value" segments."""
        return self.query.split("&") if self.query else []

    def query_params(self):
        """{name: [decoded values]}."""
        return urllib.parse.parse_qs(self.query, keep_blank_values=True)

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def __repr__(self):
        return "<%s %s %r>" % (self.method, self.target, self.body[:200])


class Answer:
    """What the stand-in answers to one request.

    status, body (bytes/str, or any JSON value given with json_answer),
    headers [(name, value)], content_type;
    delay: seconds to hold the answer back, watching the connection (the
        client closing it is recorded in Request.aborted_at and ends the
        wait; nothing is sent then);
    release: a threading.Event that ends the delay early when set;
    chunked: send the body with Transfer-Encoding: chunked;
    cut_at: send the head (with the full Content-Length) and only this many
        bytes of the body, then reset the connection (RST);
    no_answer: close the connection without answering (after the delay);
    reset: like no_answer, with a TCP reset instead of a FIN;
    content_length: a Content-Length to claim instead of the real one
        (-1: none, with close=True for a close-delimited body);
    close: close the connection (FIN) once the answer is written;
    raw: bytes written as they are instead of an HTTP answer (anything
        else is ignored but the delay), then the connection is closed.
    """

    def __init__(self, status=200, body=b"", headers=(), content_type=None,
                 delay=0.0, release=None, chunked=False, cut_at=None,
                 no_answer=False, reset=False, content_length=None,
                 close=False, raw=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.status = status
        self.body = body
        self.headers = list(headers)
        self.content_type = content_type
        self.delay = delay
        self.release = release
        self.chunked = chunked
        self.cut_at = cut_at
        self.no_answer = no_answer
        self.reset = reset
        self.content_length = content_length
        self.close = close
        self.raw = raw


def json_answer(value, status=200, **kw):
    return Answer(status, json.dumps(value), content_type="application/json",
                  **kw)


def error_answer(status, code, message, **kw):
    """A UAPI error: {"error":{"code":...,"message":...}}."""
    return json_answer({"error": {"code": code, "message": message}},
                       status=status, **kw)


def text_answer(status, text, content_type="text/plain", **kw):
    return Answer(status, text, content_type=content_type, **kw)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uapi-standin"
    sys_version = ""

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.standin = self.server.standin
        self.conn_id = self.standin._register(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.standin._unregister(self.connection)

    def _serve(self):
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        req = Request(self.command, self.path, list(self.headers.items()),
                      body, self.conn_id)
        answer = self.standin._take(req)
        try:
            self._answer(req, answer)
        except OSError:
            self.close_connection = True
        self.standin._answered(req)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve
    do_OPTIONS = _serve

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _hold(self, req, seconds, release):
        """Waits `seconds` (or until `release` is set) while watching the
        connection. Returns False when the client went away."""
        end = time.monotonic() + seconds
        sock = self.connection
        while True:
            if release is not None and release.is_set():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return True
            if self.standin._stopping:
                return False
            try:
                ready, _, _ = select.select([sock], [], [], min(left, 0.02))
            except (OSError, ValueError):
                ready = [sock]
            if not ready:
                continue
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except OSError:
                data = b""
            if not data:
                req.aborted_at = time.monotonic()
                self.standin._notify()
                return False
            time.sleep(0.02)  # unexpected early bytes: keep holding

    def _rst(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _answer(self, req, a):
        if a.delay or a.release is not None:
            delay = a.delay if a.delay else 3600.0
            if not self._hold(req, delay, a.release):
                self.close_connection = True
                return
        if a.reset:
            self._rst()
            return
        if a.raw is not None:
            self.close_connection = True
            self.wfile.write(a.raw)
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if a.no_answer:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        head = ["HTTP/1.1 %d %s" % (a.status, REASONS.get(a.status, "Status"))]
        no_body = a.status in (204, 304) or 100 <= a.status < 200
        if a.content_type and not no_body:
            head.append("Content-Type: " + a.content_type)
        if not no_body:
            if a.chunked:
                head.append("Transfer-Encoding: chunked")
            elif a.content_length != -1:  # -1: none, the body ends at close
                length = (a.content_length if a.content_length is not None
                          else len(a.body))
                head.append("Content-Length: %d" % length)
        for name, value in a.headers:
            head.append("%s: %s" % (name, value))
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        body = b"" if no_body else a.body
        if a.cut_at is not None:
            self.wfile.write(data + body[:a.cut_at])
            self.wfile.flush()
            req.status = a.status
            time.sleep(0.05)
            self._rst()
            return
        if a.chunked and body:
            mid = len(body) // 2
            for part in (body[:mid], body[mid:]):
                if part:
                    data += b"%x\r\n%s\r\n" % (len(part), part)
            data += b"0\r\n\r\n"
        elif a.chunked:
            data += b"0\r\n\r\n"
        else:
            data += body
        self.wfile.write(data)
        self.wfile.flush()
        req.status = a.status
        req.answered_at = time.monotonic()
        if a.close:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        pass  # a client that resets its connection is part of the tests


class StandIn:
    """See the module's docstring."""

    def __init__(self, token_path="/oauth/token.php"):
        self.token_path = token_path
        self.port = None
        self._lock = threading.Condition()
        self._server = None
        self._thread = None
        self._conns = {}
        self._conn_ids = itertools.count(1)
        self._token_seq = itertools.count(1)
        self._stopping = False
        self.connections_opened = 0
        self.reset()

    # -- life ------------------------------------------------------------

    def start(self, port=0):
        self._stopping = False
        self._server = _Server(("127.0.0.1", port if port else 0), _Handler)
        self._server.standin = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops listening and closes every open connection."""
        if self._server is None:
            return
        self._stopping = True
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns.values())
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._server = None
        deadline = time.monotonic() + 2
        with self._lock:  # the handler threads notice their closed sockets
            while self._conns and time.monotonic() < deadline:
                self._lock.wait(0.05)

    def restart(self):
        """Listens again on the same port."""
        return self.start(self.port)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    # -- the script ----------------------------------------------------------

    def reset(self):
        """Forgets the requests and the script (queues and handlers)."""
        with self._lock:
            self.requests = []
            self.token_requests = []
            self._queue = []
            self._token_queue = []
            self.handler = None
            self.token_handler = None

    def push(self, *answers):
        with self._lock:
            self._queue.extend(answers)

    def push_token(self, *answers):
        with self._lock:
            self._token_queue.extend(answers)

    def _take(self, req):
        with self._lock:
            token = req.path == self.token_path
            (self.token_requests if token else self.requests).append(req)
            queue = self._token_queue if token else self._queue
            answer = queue.pop(0) if queue else None
            handler = self.token_handler if token else self.handler
            self._lock.notify_all()
        if answer is None and handler is not None:
            answer = handler(req)
        if answer is None and token:
            answer = json_answer({"access_token": "standin-token-%d"
                                  % next(self._token_seq),
                                  "token_type": "Bearer",
                                  "expires_in": 3600})
        if answer is None:
            answer = error_answer(
                500, "internal_server_error",
                "stand-in: no answer scripted for %s %s"
                % (req.method, req.target))
        return answer

    # -- waiting -----------------------------------------------------------

    def _notify(self):
        with self._lock:
            self._lock.notify_all()

    def _answered(self, req):
        self._notify()

    def wait_for(self, predicate, timeout):
        """Waits until predicate() (called under the lock) is true; returns
        its last value."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate()
                left = deadline - time.monotonic()
                if value or left <= 0:
                    return value
                self._lock.wait(min(left, 0.05))

    def wait_requests(self, n, timeout):
        """Waits for at least `n` recorded API requests; returns a copy of
        the list (AssertionError when fewer came)."""
        if not self.wait_for(lambda: len(self.requests) >= n, timeout):
            raise AssertionError("stand-in got %d request(s) within %.1f s, "
                                 "expected %d: %r" % (len(self.requests),
                                                      timeout, n,
                                                      self.requests))
        with self._lock:
            return list(self.requests)

    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def open_connections(self):
        with self._lock:
            return len(self._conns)

    # -- connections -------------------------------------------------------

    def _register(self, sock):
        with self._lock:
            conn_id = next(self._conn_ids)
            self._conns[conn_id] = sock
            self.connections_opened += 1
            self._lock.notify_all()
            return conn_id

    def _unregister(self, sock):
        with self._lock:
            for k, v in list(self._conns.items()):
                if v is sock:
                    del self._conns[k]
            self._lock.notify_all()


# ---- a small stateful UAPI ----------------------------------------------

_CALL_PATH = re.compile(r"^/uapi/phoneCalls/([^/]+)/([^/]+)(?:/([^/]+))?/?$")


def iso_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class FakeUapi:
    """Enough of UAPI PhoneCalls to be a live upstream: creates (array of
    the new call), List (collection), GET of one call (collection with one
    entry, empty when gone), actions OnHold/OffHold (the PhoneCall) and any
    other action (the PhoneCall unchanged), hang-up (array of ids).
    `calls` maps id -> call JSON (a dict); tests may edit it directly
    under `lock`."""

    def __init__(self):
        self.calls = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def new_id(self):
        return "fa0e%016x" % next(self._ids)

    def add(self, extension="0003*210", dest="0003*211", call_id=None,
            **extra):
        call_id = call_id or self.new_id()
        call = {
            "id": call_id, "extension": extension, "ownerId": "1",
            "ownerName": "Stand-in Organization", "published": iso_now(),
            "answered": iso_now(),
            "phoneCallView": [
                {"id": "00", "extension": extension, "source": [extension],
                 "destination": [dest], "flow": 2, "status": 5,
                 "answered": iso_now()},
                {"id": "01", "extension": dest, "source": [extension],
                 "destination": [dest], "flow": 2, "status": 5,
                 "answered": iso_now()},
            ],
            "links": {"self": "http://uapi.invalid/uapi/phoneCalls/@me/%s/%s"
                      % (extension, call_id)},
        }
        call.update(extra)
        with self.lock:
            self.calls[call_id] = call
        return call

    def _matching(self, ext, call_id=None):
        out = []
        for c in self.calls.values():
            exts = {c["extension"]} | {v.get("extension")
                                       for v in c["phoneCallView"]}
            if (ext == "@self" or ext in exts) and call_id in (None, c["id"]):
                out.append(json.loads(json.dumps(c)))
        return out

    def __call__(self, req):
        m = _CALL_PATH.match(urllib.parse.unquote(req.path))
        if not m:
            return error_answer(404, "resource_not_found", "no such resource")
        user, ext, call_id = m.groups()
        if req.method == "POST" and call_id is None:
            body = req.json() or {}
            view = (body.get("phoneCallView") or [{}])[0]
            dest = (view.get("destination") or ["0003*211"])[0]
            extra = {"nonce": body["nonce"]} if "nonce" in body else {}
            return json_answer([self.add(body.get("extension", "0003*210"),
                                         dest, **extra)])
        if req.method == "GET":
            with self.lock:
                calls = self._matching(ext, call_id)
            return json_answer({"startIndex": 0, "itemsPerPage": 20,
                                "totalResults": len(calls), "entry": calls})
        if req.method == "PUT" and call_id is not None:
            body = req.json() or {}
            with self.lock:
                call = self.calls.get(call_id)
                if call is None:
                    return error_answer(400, "pc_phoncall_invalid",
                                        "No such phone call.")
                for v in call["phoneCallView"]:
                    if v["id"] == body.get("phoneCallViewId"):
                        if body.get("action") == "OnHold":
                            v["onHold"] = iso_now()
                            v["holder"] = 1
                        elif body.get("action") == "OffHold":
                            v.pop("onHold", None)
                            v.pop("holder", None)
                return json_answer(json.loads(json.dumps(call)))
        if req.method == "DELETE":
            with self.lock:
                gone = [c["id"] for c in self._matching(ext, call_id)]
                for i in gone:
                    del self.calls[i]
            return json_answer([{"id": i} for i in gone])
        return error_answer(501, "request_not_implemented", "not here")


def write_file_atomically(path, text):
    """Writes `text` to a temporary file beside `path`, then renames it."""
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


# ---- a stand-in of its own process ----------------------------------------

GARBAGE_JSON = "<html><body>502 Bad Gateway (but said with 200)</body></html>"
# A TLS ClientHello's first bytes, then noise: nothing an HTTP client can
# take for a status line.
GARBAGE_BYTES = (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                 b" not HTTP \xff\x00\r\n\r\n")


def seeded_fake(n_calls, extension="0003*210"):
    """A FakeUapi holding `n_calls` calls with fixed ids (seeded_id(i)), so
    that a stand-in started again after a crash knows the same calls."""
    fake = FakeUapi()
    for i in range(n_calls):
        fake.add(extension, "0003*2%02d" % (50 + i), call_id=seeded_id(i))
    return fake


def seeded_id(i):
    return "5eed%016x" % i


class _Modes:
    """What the stand-in process answers, switched by commands on stdin:
    healthy [delay], slow <delay>, garbage-json, garbage-bytes."""

    def __init__(self, fake):
        self.fake = fake
        self.mode = "healthy"
        self.delay = 0.0

    def set(self, words):
        mode = words[0]
        if mode not in ("healthy", "slow", "garbage-json", "garbage-bytes"):
            raise ValueError("unknown mode %r" % mode)
        self.delay = float(words[1]) if len(words) > 1 else 0.0
        self.mode = mode

    def __call__(self, req):
        mode, delay = self.mode, self.delay
        if mode == "garbage-json":
            return text_answer(200, GARBAGE_JSON, "text/html", delay=delay)
        if mode == "garbage-bytes":
            return Answer(raw=GARBAGE_BYTES, delay=delay)
        answer = self.fake(req)
        answer.delay = delay
        return answer


def serve_main(argv=None):
    """`standin.py --port P --calls N`: a stand-in UAPI (a seeded FakeUapi)
    in a process of its own, so that a test can kill it for real (SIGKILL)
    and start another on the same port. Prints "listening <port>", then
    reads one command a line on stdin ("healthy [delay]", "slow <delay>",
    "garbage-json", "garbage-bytes") and answers each with a line
    "ok ..." or "error ...". Exits when stdin closes or after
    --max-seconds."""
    import argparse
    import sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args(argv)
    timer = threading.Timer(args.max_seconds, os._exit, (3,))
    timer.daemon = True
    timer.start()
    standin = StandIn()
    modes = _Modes(seeded_fake(args.calls))
    standin.handler = modes
    standin.start(args.port)

    def forget():  # a long soak must not keep every request
        while True:
            time.sleep(1.0)
            with standin._lock:
                del standin.requests[:-100]
    threading.Thread(target=forget, daemon=True).start()
    print("listening %d" % standin.port, flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            modes.set(words)
            print("ok " + " ".join(words), flush=True)
        except (ValueError, IndexError) as err:
            print("error %s" % err, flush=True)
    os._exit(0)


if __name__ == "__main__":
    serve_main()
