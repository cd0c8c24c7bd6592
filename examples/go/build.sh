#!/usr/bin/env bash
# Builds the Go example offline against Debian's Go packages (GOPATH mode,
# /usr/share/gocode; no module download).
#
# usage: examples/go/build.sh [OUTPUT]   (default /tmp/uapi-place-call-go)
# Needs: golang-go golang-google-grpc-dev golang-google-protobuf-dev
#        protoc-gen-go protoc-gen-go-grpc protobuf-compiler
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-/tmp/uapi-place-call-go}
case $out in /*) ;; *) out=$PWD/$out ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The stubs land under the proto's go_package, uapi-sidecar/gen/...
mkdir -p "$work/src/uapi-sidecar/examples/place_call"
protoc -I "$repo/proto" -I /usr/include \
  --go_out="$work/src" --go-grpc_out="$work/src" \
  uapi/phonecalls/v1/phonecalls.proto
cp "$here"/*.go "$work/src/uapi-sidecar/examples/place_call/"

cd "$work/src/uapi-sidecar/examples/place_call"
GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$work:/usr/share/gocode" \
  GOCACHE="$work/cache" go build -o "$out" .
echo "built $out"
