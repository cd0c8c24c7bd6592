// Places a call through uapi-sidecar, holds and releases leg "01", hangs up.
//
// usage: place_call [HOST:PORT]
//
// The address comes from argv[1], else $UAPI_SIDECAR_ADDRESS, else
// 127.0.0.1:50051. Build: bazel build //examples/cpp:place_call
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include "uapi/phonecalls/v1/phonecalls.grpc.pb.h"

namespace pc = uapi::phonecalls::v1;

namespace {

constexpr auto kDeadline = std::chrono::seconds(5);
const char kExtension[] = "0003*210";

// A context whose RPC must finish within kDeadline.
std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + kDeadline);
  return ctx;
}

// The canonical name of a gRPC status code, e.g. "FAILED_PRECONDITION".
const char *StatusName(grpc::StatusCode code) {
  static const char *const kNames[] = {
      "OK",                  // 0
      "CANCELLED",           // 1
      "UNKNOWN",             // 2
      "INVALID_ARGUMENT",    // 3
      "DEADLINE_EXCEEDED",   // 4
      "NOT_FOUND",           // 5
      "ALREADY_EXISTS",      // 6
      "PERMISSION_DENIED",   // 7
      "RESOURCE_EXHAUSTED",  // 8
      "FAILED_PRECONDITION", // 9
      "ABORTED",             // 10
      "OUT_OF_RANGE",        // 11
      "UNIMPLEMENTED",       // 12
      "INTERNAL",            // 13
      "UNAVAILABLE",         // 14
      "DATA_LOSS",           // 15
      "UNAUTHENTICATED",     // 16
  };
  int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i]
                                                           : "UNKNOWN";
}

// Prints a failed RPC's status, message and uapi-error-code trailer, and
// exits 1. Returns normally when status is OK.
void Check(const char *step, const grpc::Status &status,
           const grpc::ClientContext &ctx) {
  if (status.ok())
    return;
  std::string code = "(none)";
  const auto &trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find("uapi-error-code");
  if (it != trailers.end())
    code.assign(it->second.data(), it->second.size());
  std::cerr << step << " failed: status " << StatusName(status.error_code())
            << ", message \"" << status.error_message()
            << "\", uapi-error-code " << code << "\n";
  std::exit(1);
}

} // namespace

int main(int argc, char **argv) {
  std::string address = "127.0.0.1:50051";
  const char *env = std::getenv("UAPI_SIDECAR_ADDRESS");
  if (argc > 1) {
    address = argv[1];
  } else if (env != nullptr && *env != '\0') {
    address = env;
  }
  auto stub = pc::PhoneCallService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));

  pc::CreatePhoneCallRequest create;
  create.set_user_id("@me");
  create.set_extension(kExtension);
  create.add_source("0003*210");
  create.add_destination("0003*024");
  pc::CreatePhoneCallResponse created;
  auto ctx = Context();
  Check("CreateSimplePhoneCall",
        stub->CreateSimplePhoneCall(ctx.get(), create, &created), *ctx);
  if (created.phone_calls_size() == 0) {
    std::cerr << "CreateSimplePhoneCall returned no call\n";
    return 1;
  }
  const std::string call_id = created.phone_calls(0).id();
  std::cout << "placed call " << call_id << std::endl;

  pc::OnHoldRequest hold;
  hold.set_user_id("@me");
  hold.set_extension(kExtension);
  hold.set_phone_call_id(call_id);
  hold.set_phone_call_view_id("01");
  pc::PhoneCall held;
  ctx = Context();
  Check("OnHold", stub->OnHold(ctx.get(), hold, &held), *ctx);
  std::string since = "(unset)";
  for (const auto &view : held.phone_call_views()) {
    if (view.id() == "01" && view.has_on_hold()) {
      since = google::protobuf::util::TimeUtil::ToString(view.on_hold());
    }
  }
  std::cout << "on hold leg 01 since " << since << std::endl;

  pc::OffHoldRequest unhold;
  unhold.set_user_id("@me");
  unhold.set_extension(kExtension);
  unhold.set_phone_call_id(call_id);
  unhold.set_phone_call_view_id("01");
  pc::PhoneCall released;
  ctx = Context();
  Check("OffHold", stub->OffHold(ctx.get(), unhold, &released), *ctx);
  std::cout << "off hold leg 01" << std::endl;

  pc::HangupPhoneCallsRequest hangup;
  hangup.set_user_id("@me");
  hangup.set_extension(kExtension);
  hangup.set_phone_call_id(call_id);
  pc::HangupPhoneCallsResponse hung;
  ctx = Context();
  Check("HangupPhoneCalls", stub->HangupPhoneCalls(ctx.get(), hangup, &hung),
        *ctx);
  std::cout << "hung up";
  for (const auto &id : hung.phone_call_ids())
    std::cout << " " << id;
  std::cout << std::endl;
  return 0;
}
