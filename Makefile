# uapi-sidecar: the two commands a user needs.
#   make run   installs what is missing, builds, serves on 127.0.0.1:50051
#   make test  the same set-up, then every test; ends "N passed, N failed"
#   make fuzz  each fuzz target for FUZZ_SECONDS (fuzz/run.sh)

SHELL := /bin/bash
LISTEN ?= 127.0.0.1:50051
BAZEL ?= bazel
FUZZ_SECONDS ?= 60

# Debian packages: what building the binary needs (the container image
# installs exactly these), and what the tests and examples add.
BUILD_PACKAGES := bazel-bootstrap gcc g++ make libnghttp2-dev libuv1-dev \
	libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev \
	libcurl4-openssl-dev libjson-c-dev libhttp-parser-dev zlib1g-dev \
	libssl-dev python3-protobuf
TEST_PACKAGES := libcmocka-dev libgrpc++-dev protobuf-compiler-grpc \
	python3-grpcio python3-h2 valgrind clang-format golang-go \
	golang-google-grpc-dev golang-google-protobuf-dev protoc-gen-go \
	protoc-gen-go-grpc openssl clang-14 lld-14 libclang-rt-14-dev
PACKAGES := $(BUILD_PACKAGES) $(TEST_PACKAGES)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NODE_DIR := tests/interop/node

.PHONY: run test build deps node-deps format clean bench fuzz

run: deps build
	@echo "uapi-sidecar: serving PhoneCallService (native backend) on $(LISTEN); Ctrl-C stops it"
	exec bazel-bin/src/uapi-sidecar --backend native --listen $(LISTEN)

test: deps node-deps
	/usr/bin/python3 tests/run_all.py

build:
	$(BAZEL) build //src:uapi-sidecar

deps:
	@missing=$$(for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

node-deps:
	@[ -d $(NODE_DIR)/node_modules ] || (cd $(NODE_DIR) && npm ci --no-audit --no-fund)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	$(BAZEL) clean
	rm -rf build $(NODE_DIR)/node_modules

# Not part of make test: GetPhoneCall throughput against a grpc++ reference
# server and nghttpd; writes bench/RESULTS.md (bench/run.sh).
bench: deps build
	bench/run.sh

# Not part of make test (which runs each target for seconds): every fuzz
# target for FUZZ_SECONDS, one after the other (fuzz/run.sh; FUZZ_TARGETS
# picks some). Findings go to build/fuzz/artifacts/.
fuzz: deps
	fuzz/run.sh fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)
