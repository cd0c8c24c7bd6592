// Reference PhoneCallService server for bench/run.sh.
//
// Serves CreateSimplePhoneCall, GetPhoneCall, OnHold and OffHold from an
// in-memory map of calls with grpc++'s callback API; every other RPC of the
// service answers UNIMPLEMENTED (the generated base class does that). It
// mimics the shape of the sidecar's native answers (two legs "00" and "01",
// answered at once) so both servers send responses of similar size; it does
// not validate addressing fields beyond looking the call up.
//
// usage: ref_server PORT   (listens on 127.0.0.1:PORT, prints "listening")
//
// Threads: grpc++ runs callback handlers on its own executor; the resource
// quota caps the server's threads, and bench/run.sh pins the whole process
// to one core with taskset.

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "uapi/phonecalls/v1/phonecalls.grpc.pb.h"

namespace pc = uapi::phonecalls::v1;

namespace {

class Service final : public pc::PhoneCallService::CallbackService {
 public:
  grpc::ServerUnaryReactor* CreateSimplePhoneCall(
      grpc::CallbackServerContext* ctx, const pc::CreatePhoneCallRequest* req,
      pc::CreatePhoneCallResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->source_size() == 0 || req->destination_size() == 0) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "source and destination are required"));
      return reactor;
    }
    pc::PhoneCall call;
    google::protobuf::Timestamp now = Now();
    std::lock_guard<std::mutex> lock(mu_);
    std::string id = NewId();
    call.set_id(id);
    call.set_extension(req->extension());
    call.set_owner_id("1");
    call.set_owner_name("Default Organization");
    *call.mutable_published() = now;
    *call.mutable_answered() = now;
    call.set_nonce(req->nonce());
    const char* view_ids[] = {"00", "01"};
    const std::string view_exts[] = {req->extension(), req->destination(0)};
    for (int i = 0; i < 2; i++) {
      pc::PhoneCallView* v = call.add_phone_call_views();
      v->set_id(view_ids[i]);
      v->set_extension(view_exts[i]);
      *v->mutable_source() = req->source();
      *v->mutable_destination() = req->destination();
      v->set_flow(pc::PhoneCallView::FLOW_LOCAL);
      v->set_status(pc::PhoneCallView::STATUS_ON_CALL);
      *v->mutable_answered() = now;
    }
    call.set_self_link("/uapi/phoneCalls/1/" + req->extension() + "/" + id);
    *resp->add_phone_calls() = call;
    calls_.emplace(id, std::move(call));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* GetPhoneCall(grpc::CallbackServerContext* ctx,
                                         const pc::GetPhoneCallRequest* req,
                                         pc::PhoneCall* resp) override {
    auto* reactor = ctx->DefaultReactor();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(req->phone_call_id());
    if (it == calls_.end()) {
      reactor->Finish(NotFound());
    } else {
      *resp = it->second;
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* OnHold(grpc::CallbackServerContext* ctx,
                                   const pc::OnHoldRequest* req,
                                   pc::PhoneCall* resp) override {
    return Hold(ctx, req->phone_call_id(), req->phone_call_view_id(), true,
                resp);
  }

  grpc::ServerUnaryReactor* OffHold(grpc::CallbackServerContext* ctx,
                                    const pc::OffHoldRequest* req,
                                    pc::PhoneCall* resp) override {
    return Hold(ctx, req->phone_call_id(), req->phone_call_view_id(), false,
                resp);
  }

 private:
  grpc::ServerUnaryReactor* Hold(grpc::CallbackServerContext* ctx,
                                 const std::string& call_id,
                                 const std::string& view_id, bool on,
                                 pc::PhoneCall* resp) {
    auto* reactor = ctx->DefaultReactor();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(call_id);
    if (it == calls_.end()) {
      reactor->Finish(NotFound());
      return reactor;
    }
    pc::PhoneCallView* view = nullptr;
    for (auto& v : *it->second.mutable_phone_call_views())
      if (v.id() == view_id) view = &v;
    if (view == nullptr) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "no such view of the call"));
      return reactor;
    }
    if (view->has_on_hold() == on) {
      reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                   on ? "the leg is already on hold"
                                      : "the leg is not on hold"));
      return reactor;
    }
    if (on) {
      *view->mutable_on_hold() = Now();
      view->mutable_holder()->set_value(1);
    } else {
      view->clear_on_hold();
      view->clear_holder();
    }
    *resp = it->second;
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  static grpc::Status NotFound() {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such call");
  }

  static google::protobuf::Timestamp Now() {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    google::protobuf::Timestamp t;
    t.set_seconds(ns / 1000000000);
    t.set_nanos(static_cast<int>(ns % 1000000000));
    return t;
  }

  // 20 lowercase hex characters, like the sidecar's native ids.
  std::string NewId() {
    static const char hex[] = "0123456789abcdef";
    std::string id(20, '0');
    for (auto& c : id) c = hex[rng_() & 15];
    return id;
  }

  std::mutex mu_;
  std::map<std::string, pc::PhoneCall> calls_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::atoi(argv[1]) <= 0) {
    std::fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  std::string address = std::string("127.0.0.1:") + argv[1];
  Service service;
  grpc::ResourceQuota quota("ref_server");
  quota.SetMaxThreads(2);
  grpc::ServerBuilder builder;
  builder.SetResourceQuota(quota);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "ref_server: cannot listen on %s\n", address.c_str());
    return 1;
  }
  std::printf("listening address=%s\n", address.c_str());
  std::fflush(stdout);
  server->Wait();
  return 0;
}
