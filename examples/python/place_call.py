#!/usr/bin/python3
"""Places a call through uapi-sidecar, holds and releases leg "01", hangs up.

usage: /usr/bin/python3 examples/python/place_call.py [HOST:PORT]

The address comes from argv[1], else $UAPI_SIDECAR_ADDRESS, else
127.0.0.1:50051. The stubs are generated at start, into a temporary
directory, from proto/ with protoc and Debian's grpc_python_plugin.
Needs: python3-grpcio, python3-protobuf, protobuf-compiler,
protobuf-compiler-grpc.
"""
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

DEADLINE_SECONDS = 5.0
EXTENSION = "0003*210"
PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "..", "..", "proto")
PROTO_FILE = "uapi/phonecalls/v1/phonecalls.proto"


def generate_stubs(out_dir):
    """Runs protoc on the service's .proto; returns (messages, services)."""
    subprocess.run(
        ["protoc", "-I", PROTO_DIR, "-I", "/usr/include",
         "--python_out=" + out_dir, "--grpc_python_out=" + out_dir,
         "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
         PROTO_FILE],
        check=True)
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("uapi.phonecalls.v1.phonecalls_pb2")
    svc = importlib.import_module("uapi.phonecalls.v1.phonecalls_pb2_grpc")
    return pb, svc


def fail(step, err):
    """Prints a failed RPC's status, message and uapi-error-code; exits 1."""
    trailers = dict(err.trailing_metadata() or ())
    print("%s failed: status %s, message %r, uapi-error-code %s" % (
        step, err.code().name, err.details(),
        trailers.get("uapi-error-code", "(none)")), file=sys.stderr)
    sys.exit(1)


def place_call(pb, svc, address):
    with grpc.insecure_channel(address) as channel:
        stub = svc.PhoneCallServiceStub(channel)
        step = "CreateSimplePhoneCall"
        try:
            created = stub.CreateSimplePhoneCall(
                pb.CreatePhoneCallRequest(
                    user_id="@me", extension=EXTENSION,
                    source=["0003*210"], destination=["0003*024"]),
                timeout=DEADLINE_SECONDS)
            call_id = created.phone_calls[0].id
            print("placed call", call_id)

            leg = dict(user_id="@me", extension=EXTENSION,
                       phone_call_id=call_id, phone_call_view_id="01")
            step = "OnHold"
            held = stub.OnHold(pb.OnHoldRequest(**leg),
                               timeout=DEADLINE_SECONDS)
            view = [v for v in held.phone_call_views if v.id == "01"][0]
            print("on hold leg 01 since", view.on_hold.ToJsonString())

            step = "OffHold"
            stub.OffHold(pb.OffHoldRequest(**leg), timeout=DEADLINE_SECONDS)
            print("off hold leg 01")

            step = "HangupPhoneCalls"
            hung = stub.HangupPhoneCalls(
                pb.HangupPhoneCallsRequest(user_id="@me", extension=EXTENSION,
                                           phone_call_id=call_id),
                timeout=DEADLINE_SECONDS)
            print("hung up", " ".join(hung.phone_call_ids))
        except grpc.RpcError as err:
            fail(step, err)


def main():
    if len(sys.argv) > 1:
        address = sys.argv[1]
    else:
        address = os.environ.get("UAPI_SIDECAR_ADDRESS") or "127.0.0.1:50051"
    out_dir = tempfile.mkdtemp(prefix="uapi-stubs-")
    try:
        pb, svc = generate_stubs(out_dir)
        place_call(pb, svc, address)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
