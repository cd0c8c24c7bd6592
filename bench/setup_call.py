#!/usr/bin/python3
"""Benchmark helper: creates one call on a PhoneCallService server and
writes the gRPC-framed request bodies h2load sends.

usage: setup_call.py ADDRESS OUTDIR

Writes OUTDIR/get.bin (GetPhoneCall), OUTDIR/onhold.bin, OUTDIR/offhold.bin,
OUTDIR/create.bin (CreateSimplePhoneCall, as the one call made here) (each a 5-byte gRPC message header then the serialized request) and prints
one line: "<call id> <serialized GetPhoneCall response size>".
Stubs are generated at run time with protoc, as the interop tests do.
"""
import os
import struct
import subprocess
import sys
import tempfile

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PROTO_DIR = os.path.join(REPO, "proto")
EXT = "0003*210"


def load_stubs(out):
    subprocess.run(
        ["protoc", "-I", PROTO_DIR, "--python_out", out,
         "--grpc_python_out", out,
         "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
         os.path.join(PROTO_DIR, "uapi/phonecalls/v1/phonecalls.proto")],
        check=True)
    sys.path.insert(0, out)
    from uapi.phonecalls.v1 import phonecalls_pb2, phonecalls_pb2_grpc
    return phonecalls_pb2, phonecalls_pb2_grpc


def frame(msg):
    data = msg.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


def main():
    address, outdir = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="usc-bench-") as tmp:
        pb2, pb2_grpc = load_stubs(tmp)
        with grpc.insecure_channel(address) as ch:
            grpc.channel_ready_future(ch).result(timeout=10)
            stub = pb2_grpc.PhoneCallServiceStub(ch)
            create = pb2.CreatePhoneCallRequest(extension=EXT, source=[EXT],
                                                destination=["210"])
            created = stub.CreateSimplePhoneCall(create, timeout=10)
            call_id = created.phone_calls[0].id
            get = pb2.GetPhoneCallRequest(extension=EXT, phone_call_id=call_id)
            got = stub.GetPhoneCall(get, timeout=10)
            hold = dict(extension=EXT, phone_call_id=call_id,
                        phone_call_view_id="00")
            with open(os.path.join(outdir, "get.bin"), "wb") as f:
                f.write(frame(get))
            with open(os.path.join(outdir, "create.bin"), "wb") as f:
                f.write(frame(create))
            with open(os.path.join(outdir, "onhold.bin"), "wb") as f:
                f.write(frame(pb2.OnHoldRequest(**hold)))
            with open(os.path.join(outdir, "offhold.bin"), "wb") as f:
                f.write(frame(pb2.OffHoldRequest(**hold)))
            print(call_id, len(got.SerializeToString()))
            if os.environ.get("BENCH_DEBUG"):
                print(got, file=sys.stderr)


if __name__ == "__main__":
    main()
