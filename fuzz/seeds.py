#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora, fuzz/corpus/<target>/, from the
messages below: real gRPC frames and HTTP/2 sessions of PhoneCallService
calls (protobuf, HPACK and frames encoded here by hand, without Huffman
coding, so that the fuzzer sees the names), UAPI JSON answers as
uapi-phonecalls.md gives them, REST requests, flags and a status map.
Run it after changing a seed; the files are committed. Inputs that once
found a bug, kept as regress_* beside the seeds, are not touched."""
import gzip
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SERVICE = "/uapi.phonecalls.v1.PhoneCallService/"

# ---- protobuf ----


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(number, value):
    """A string, bytes or nested message (wire type 2), or an int
    (wire type 0)."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def msg(*fields):
    return b"".join(field(n, v) for n, v in fields)


def int32_value(v):
    return msg((1, v))


def timestamp(seconds, nanos=0):
    return msg((1, seconds), (2, nanos)) if nanos else msg((1, seconds))


ADDRESS = ((1, "@me"), (2, "0003*210"), (3, "fz1"))
GET = msg(*ADDRESS)
LIST = msg((1, "@viewer"), (2, "@self"), (4, int32_value(5)),
           (6, "published"), (7, "greaterThan"),
           (8, "2012-06-27T16:08:55+03:00"), (9, "descending"),
           (10, "id"), (10, "phoneCallView"))
CREATE = msg((1, "@me"), (2, "0003*210"), (3, "0003*210"), (4, "0003*211"),
             (5, "John Doe <3334444>"), (7, "n0nce"), (8, int32_value(30)))
OFF_HOLD = msg(*ADDRESS, (4, "01"))
PARK = msg(*ADDRESS, (4, "00"), (5, int32_value(60)))
TRANSFER = msg(*ADDRESS, (4, "01"), (5, "0003*212"), (6, "0003*211"),
               (7, "0003*213"))
HANGUP = msg((1, "@me"), (2, "0003*210"), (4, "0003*211"))
WATCH = msg((1, "@me"), (2, "@self"))
VIEW = msg((1, "00"), (2, "0003*210"), (3, "0003*211"), (3, "0003*210"),
           (4, "3334444"), (5, 4), (6, 3), (7, timestamp(1297350295)),
           (8, "John Doe <3332222>"), (10, timestamp(1297350655, 120000000)),
           (12, int32_value(3)), (13, "0003*214"), (15, int32_value(1)))
CALL = msg((1, "b817d2618fe6f1804333"), (2, "0003*210"), (3, "53tete535"),
           (4, "Default Organization"), (5, timestamp(1297350295)),
           (6, timestamp(1297350655)), (7, "130c5a97768be67df6543b5f5fa3cc51"),
           (8, VIEW), (8, msg((1, "01"), (2, "0003*211"), (6, 100))))
LIST_RESPONSE = msg((1, CALL), (2, 1), (3, 20), (4, 0))
HANGUP_RESPONSE = msg((1, "b817d2618fe6f1804333"), (1, "fz1"))


def frame(message, compressed=False):
    if compressed:
        message = gzip.compress(message, mtime=0)
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(message)) \
        + message


# ---- HTTP/2 ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = \
    0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def h2frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_string(s):
    s = s.encode()
    assert len(s) < 127
    return bytes([len(s)]) + s


def hpack(headers):
    """Literal fields without indexing and without Huffman coding."""
    return b"".join(b"\x00" + hpack_string(n) + hpack_string(v)
                    for n, v in headers)


def request_headers(path, extra=()):
    return hpack([(":method", "POST"), (":scheme", "http"),
                  (":path", path), (":authority", "127.0.0.1"),
                  ("content-type", "application/grpc"), ("te", "trailers"),
                  *extra])


def call(stream, path, message, extra=(), compressed=False, end=True):
    return h2frame(HEADERS, END_HEADERS, stream,
                   request_headers(path, extra)) + \
        h2frame(DATA, END_STREAM if end else 0, stream,
                frame(message, compressed))


def session(*frames):
    settings = struct.pack(">HI", 0x3, 100) + struct.pack(">HI", 0x4, 65535)
    return PREFACE + h2frame(SETTINGS, 0, 0, settings) + \
        h2frame(SETTINGS, ACK, 0) + b"".join(frames)


H2_SESSIONS = {
    "get": session(call(1, SERVICE + "GetPhoneCall", GET,
                        [("grpc-timeout", "1S"),
                         ("user-agent", "grpc-python/1.51"),
                         ("x-request-id", "r1")])),
    "create_onhold_gzip": session(
        call(1, SERVICE + "CreateSimplePhoneCall", CREATE,
             [("grpc-accept-encoding", "identity, gzip")]),
        call(3, SERVICE + "OnHold", OFF_HOLD,
             [("grpc-encoding", "gzip")], compressed=True)),
    "list_hangup_ping": session(
        call(1, SERVICE + "ListPhoneCalls", LIST),
        h2frame(PING, 0, 0, b"12345678"),
        h2frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 65536)),
        call(3, SERVICE + "HangupPhoneCalls", HANGUP),
        h2frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0))),
    "watch_reset": session(
        call(1, SERVICE + "WatchPhoneCalls", WATCH, end=False),
        call(3, SERVICE + "Park", PARK),
        h2frame(RST_STREAM, 0, 1, struct.pack(">I", 8))),
    "health_reflection": session(
        call(1, "/grpc.health.v1.Health/Check", b""),
        call(3, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
             msg((7, "")))),
}

# ---- UAPI JSON ----

CALL_JSON = (
    '{"id":"b817d2618fe6f1804333","nonce":"130c5a97768be67df6543b5f5fa3cc51",'
    '"extension":"0003*210","ownerId":"53tete535","ownerName":"53tete535",'
    '"published":"2011-02-10T15:04:55Z","answered":"2011-02-10T15:10:55Z",'
    '"phoneCallView":[{"id":"00","extension":"0003*210","source":["0003*211",'
    '"0003*210"],"destination":["3334444"],"flow":4,"status":3,'
    '"ringing":"2011-02-10T15:04:55Z","callerID":"John Doe <3332222>"},'
    '{"id":"01","extension":"0003*211","source":["0003*211","0003*210"],'
    '"destination":["3334444"],"flow":4,"status":"5",'
    '"answered":"2012-06-27T16:08:55+03:00","parkedPos":2,"holder":1}],'
    '"links":{"self":"https://uapi.example/uapi/phoneCalls/12/0003*210/'
    'b817d2618fe6f1804333"}}')
PARTIAL_JSON = ('{"id":"b817d2618fe6f1804333","extension":"0003*210",'
                '"link":{"self":"https://x.x.x.x/uapi/phoneCalls/12/0003*210/'
                'b817d2618fe6f1804333"}}')
ERROR_JSON = ('{"error":{"code":"pc_phoncall_invalid","message":"Value '
              'supplied in phoneCallId from the URI-Fragment is invalid."}}')
RPC = {name: i for i, name in enumerate([
    "List", "Get", "CreateSimple", "CreateCallback",
    "CreateConferenceInvite", "Hangup", "OnHold", "OffHold",
    "StartRecording", "StopRecording", "Park", "UnPark", "PickUp", "BargeIn",
    "Whisper", "Monitor", "Transfer", "TransferToVoicemail"])}
HTTP = [200, 201, 202, 204, 299, 301, 400, 401, 403, 404, 409, 429, 500, 501,
        503, 504]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]


def answer(rpc, status, body):
    return bytes([RPC[rpc] * 3, HTTP.index(status)]) + body.encode()


def incoming(method, target, body=""):
    return bytes([1, METHODS.index(method)]) + target.encode() + b"\n" + \
        body.encode()


UAPI_JSON = {
    "get_collection": answer("Get", 200, '{"startIndex":0,"itemsPerPage":20,'
                             '"totalResults":1,"entry":[' + CALL_JSON + ']}'),
    "list_paging": answer("List", 200, '{"totalResults":"2","entry":[' +
                          CALL_JSON + ',{"id":"fz1","extension":"0003*210"}],'
                          '"paging":{"next":"https://h/uapi/phoneCalls/@me/'
                          '0003*210/?startIndex=20&count=20"}}'),
    "offhold_partial": answer("OffHold", 202, PARTIAL_JSON),
    "create_array": answer("CreateSimple", 200, "[" + CALL_JSON + "]"),
    "hangup_ids": answer("Hangup", 200, '[{"id":"b817d2618fe6f1804333"}]'),
    "onhold_error": answer("OnHold", 400, ERROR_JSON),
    "error_body": bytes([2, 0]) + ERROR_JSON.encode(),
    "facade_get": incoming("GET", "/uapi/phoneCalls/@me/0003*210/"
                           "b817d2618fe6f1804333"),
    "facade_list": incoming("GET", "/uapi/phoneCalls/@viewer/%40self/?count=5"
                            "&startIndex=0&filterBy=published&filterOp="
                            "greaterThan&filterValue=2012-06-27T16%3A08%3A55Z"
                            "&sortOrder=descending&fields=id,extension"),
    "facade_create": incoming("POST", "/uapi/phoneCalls/@me/simple",
                              '{"extension":"0003*210","phoneCallView":[{'
                              '"source":["0003*210"],"destination":'
                              '"0003*211","callerID":"John <1>"}],'
                              '"waitForPickUp":"30","nonce":"abc"}'),
    "facade_offhold": incoming("PUT", "/uapi/phoneCall/12/0003%2A210/"
                               "b817d2618fe6f1804333",
                               '{"action":"OffHold","phoneCallViewId":"01"}'),
    "facade_transfer": incoming("PUT", "/uapi/phoneCalls/@me/0003*210/fz1",
                                '{"action":"Transfer","phoneCallViewId":"01",'
                                '"sendCallTo":"0003*212","transferNumber":'
                                '"0003*213","private":1}'),
    "facade_hangup": incoming("DELETE", "/uapi/phoneCalls/@me/0003*210?"
                              "phoneNumber=0003*211"),
}

PB_JSON = {
    "get_request": bytes([RPC["Get"] * 2]) + GET,
    "list_request": bytes([RPC["List"] * 2]) + LIST,
    "create_request": bytes([RPC["CreateCallback"] * 2]) + CREATE,
    "park_request": bytes([RPC["Park"] * 2]) + PARK,
    "transfer_request": bytes([RPC["Transfer"] * 2]) + TRANSFER,
    "hangup_request": bytes([RPC["Hangup"] * 2]) + HANGUP,
    "list_response": bytes([RPC["List"] * 2 + 1]) + LIST_RESPONSE,
    "call_response": bytes([RPC["OffHold"] * 2 + 1]) + CALL,
    "create_response": bytes([RPC["CreateSimple"] * 2 + 1]) + msg((1, CALL)),
    "hangup_response": bytes([RPC["Hangup"] * 2 + 1]) + HANGUP_RESPONSE,
}

# ---- deframing: max_len choice (5: 1024), stop, 4 piece sizes, stream ----

DEFRAME = {
    "one": bytes([5, 0, 0, 0, 0, 0]) + frame(GET),
    "split": bytes([5, 0, 1, 2, 3, 7]) + frame(GET) + frame(b"") +
    frame(OFF_HOLD),
    "gzip": bytes([5, 0, 0, 0, 0, 0]) + frame(CREATE, compressed=True),
    "stop": bytes([5, 2, 5, 0, 0, 0]) + frame(GET) * 3,
    "too_large": bytes([1, 0, 0, 0, 0, 0]) + frame(GET),
    "truncated": bytes([5, 0, 3, 0, 0, 0]) + frame(LIST)[:-4],
}

# ---- metadata: cap, status code, value ----

METADATA = {
    "timeout_s": b"\x40\x04" + b"1S",
    "timeout_max": b"\x40\x04" + b"99999999H",
    "timeout_m": b"\x40\x04" + b"250m",
    "message": b"\x20\x05" + "call fz1 not found: 100% é\n".encode(),
    "accept_encoding": b"\x40\x00" + b"identity, deflate,\tgzip ",
    "retry_after_date": b"\x40\x0e" + b"Sun, 06 Nov 1994 08:49:37 GMT",
    "retry_after_asctime": b"\x40\x0e" + b"Sun Nov  6 08:49:37 1994",
    "retry_after_seconds": b"\x40\x0e" + b"120",
}

# ---- HTTP/1.1 facade requests ----


def action(name):
    body = b'{"action":"%s","phoneCallViewId":"01"}' % name.encode()
    return b"PUT /uapi/phoneCall/1/0003*210/fz1 HTTP/1.1\r\nHost: h\r\n" \
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" \
        % (len(body), body)


def chunked(*chunks):
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + \
        b"0\r\n\r\n"


ADMIN_HTTP = {
    "get": b"GET /uapi/phoneCalls/@me/0003*210/fz1 HTTP/1.1\r\n"
           b"Host: 127.0.0.1\r\nAuthorization: Bearer t\r\n\r\n",
    "hold_pipelined": action("OnHold") + action("OffHold") +
    b"GET /uapi/phoneCalls/@me/@self?count=2 HTTP/1.1\r\nHost: h\r\n\r\n",
    "create_chunked_expect": b"POST /uapi/phoneCalls/@me/simple HTTP/1.1\r\n"
                             b"Host: h\r\nTransfer-Encoding: chunked\r\n"
                             b"Expect: 100-continue\r\n\r\n" +
                             chunked(b'{"extension":"0003*210","ph',
                                     b'oneCallView":[{"source":["0003*210"],'
                                     b'"destination":["1"]}]}'),
    "hangup_http10": b"DELETE /uapi/phoneCalls/@me/0003*210/fz1 HTTP/1.0\r\n"
                     b"Connection: keep-alive\r\n\r\n",
    "bad_version": b"GET /uapi/phoneCalls/@me/0003*210 HTTP/2.0\r\n\r\n",
}

# ---- flags (0, argument count, NUL-separated) and a status map (1) ----


def flags(args, env=()):
    return bytes([0, len(args)]) + b"\0".join(
        s.encode() for s in [*args, *env])


CONFIG = {
    "native": flags(["--listen", "127.0.0.1:0", "--backend", "native",
                     "--max-recv-message-size=2MiB", "--ring-delay", "250",
                     "--keepalive-time=60000"],
                    ["UAPI_SIDECAR_LOG_FORMAT=json",
                     "UAPI_SIDECAR_MAX_CALLS=5"]),
    "uapi": flags(["--uapi-url=http://127.0.0.1:8080/uapi", "--backend=auto",
                   "--admin-listen", "[::1]:9091", "--rest-listen",
                   "127.0.0.1:0", "--upstream-max-body", "1MiB",
                   "--breaker-failures", "3"],
                  ["UAPI_SIDECAR_UAPI_TOKEN_FILE=/run/token"]),
    "oauth": flags(["--uapi-url", "https://pbx.example.com/uapi",
                    "--oauth-token-url", "https://pbx.example.com/oauth/token",
                    "--oauth-client-id", "app", "--oauth-client-secret-file",
                    "/run/secret"]),
    "help": flags(["--max-calls=1", "--help"]),
    "status_map": b"\x01# operator overrides\n404 NOT_FOUND\n"
                  b"400 pc_phonecall_state_invalid FAILED_PRECONDITION\n"
                  b"5xx unavailable   # retry\n429 8\n",
}

CORPORA = {
    "admin_http": ADMIN_HTTP,
    "config": CONFIG,
    "deframe": DEFRAME,
    "h2_session": H2_SESSIONS,
    "metadata": METADATA,
    "pb_json": PB_JSON,
    "uapi_json": UAPI_JSON,
}


def main():
    for target, seeds in CORPORA.items():
        d = os.path.join(ROOT, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
