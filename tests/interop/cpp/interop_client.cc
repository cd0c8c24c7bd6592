// Interop client: grpc++ against uapi-sidecar's native engine (or, in pair
// mode, its translation backend in front of its REST facade).
//
// Usage: interop_client HOST:PORT [--max-calls-sidecar=HOST:PORT]
//            [--ring-delay-sidecar=HOST:PORT] [test-name-substring ...]
// The two options name sidecars started with --max-calls 3 and with
// --ring-delay 60000 (run.sh starts them); the tests that need them fail
// without them.
// Prints "PASS|FAIL <test> (<seconds>s)" per test and ends with
// "N passed, N failed"; exits 0 only when every test passed. Set
// USC_SIDECAR_WRAPPER (as the runner does under valgrind) to allow for a
// slower server (tests/interop/pair.sh alone does not count as slow: only
// its USC_PAIR_INNER_WRAPPER does). USC_EXPECT_BACKEND is the
// x-uapi-backend expected (default "native"; "uapi" in pair mode).

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "uapi/phonecalls/v1/phonecalls.grpc.pb.h"

namespace {

namespace pc = uapi::phonecalls::v1;
using Clock = std::chrono::steady_clock;
using grpc::ClientContext;
using grpc::Status;
using grpc::StatusCode;
using ms = std::chrono::milliseconds;
using Stub = pc::PhoneCallService::Stub;

const char kDomain[] = "uapi.voipnow.com";
const char kErrorInfoUrl[] = "type.googleapis.com/google.rpc.ErrorInfo";
const char kUnknownId[] = "0123456789abcdef0123";

int g_slow = 1;
// x-uapi-backend expected on every answer: $USC_EXPECT_BACKEND or "native".
std::vector<std::string> g_backend = {"native"};
std::string g_address;
// Sidecars of their own started by run.sh: --max-calls 3, --ring-delay 60000.
std::string g_max_calls_address;
std::string g_ring_delay_address;
std::shared_ptr<grpc::Channel> g_channel;
std::unique_ptr<Stub> g_stub;

ms RpcTimeout() { return ms(10000 * g_slow); }

// ------------------------------------------------------------ assertions

struct Failure {
  std::string what;
};

template <class T>
std::string Show(const T& v) {
  if constexpr (std::is_base_of_v<google::protobuf::Message, T>) {
    return "{" + v.ShortDebugString() + "}";
  } else if constexpr (std::is_enum_v<T>) {
    return std::to_string(static_cast<int>(v));
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string out = "[";
    for (const auto& s : v) out += (out.size() > 1 ? ", " : "") + s;
    return out + "]";
  } else {
    std::ostringstream o;
    o << v;
    return o.str();
  }
}

template <class A, class B>
bool Equal(const A& a, const B& b) {
  if constexpr (std::is_base_of_v<google::protobuf::Message, A>) {
    return google::protobuf::util::MessageDifferencer::Equals(a, b);
  } else {
    return a == b;
  }
}

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond))                                                          \
      throw Failure{std::string(__FILE__ ":") + std::to_string(__LINE__) + \
                    ": CHECK(" #cond ")"};                                \
  } while (0)

// Copies both sides: (a) may name a part of a temporary.
#define CHECK_EQ(a, b)                                                  \
  do {                                                                  \
    const auto a_ = (a);                                                \
    const auto b_ = (b);                                                \
    if (!Equal(a_, b_))                                                 \
      throw Failure{std::string(__FILE__ ":") +                         \
                    std::to_string(__LINE__) + ": " #a " == " #b ": " + \
                    Show(a_) + " != " + Show(b_)};                      \
  } while (0)

std::vector<std::string> Vec(
    const google::protobuf::RepeatedPtrField<std::string>& r) {
  return {r.begin(), r.end()};
}

// ------------------------------------------------------------ protobuf reader
// Just enough of the wire format for google.rpc.Status, Any and ErrorInfo.

struct Field {
  uint32_t number;
  uint64_t varint;
  std::string bytes;
};

std::vector<Field> ParseFields(const std::string& buf) {
  std::vector<Field> out;
  size_t i = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (i >= buf.size()) throw Failure{"truncated varint in status details"};
      uint8_t b = static_cast<uint8_t>(buf[i++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw Failure{"varint too long in status details"};
  };
  while (i < buf.size()) {
    uint64_t key = varint();
    Field f{static_cast<uint32_t>(key >> 3), 0, {}};
    switch (key & 7) {
      case 0: f.varint = varint(); break;
      case 1: i += 8; break;
      case 5: i += 4; break;
      case 2: {
        uint64_t n = varint();
        if (n > buf.size() - i) throw Failure{"truncated field in status details"};
        f.bytes = buf.substr(i, n);
        i += n;
        break;
      }
      default: throw Failure{"bad wire type in status details"};
    }
    out.push_back(std::move(f));
  }
  return out;
}

struct RpcStatus {
  int64_t code = 0;
  std::string message;
  std::vector<std::pair<std::string, std::string>> infos;  // reason, domain
};

RpcStatus ParseStatus(const std::string& bin) {
  RpcStatus st;
  for (const Field& f : ParseFields(bin)) {
    if (f.number == 1) st.code = static_cast<int32_t>(f.varint);
    if (f.number == 2) st.message = f.bytes;
    if (f.number != 3) continue;
    std::string url, value;
    for (const Field& a : ParseFields(f.bytes)) {
      if (a.number == 1) url = a.bytes;
      if (a.number == 2) value = a.bytes;
    }
    if (url != kErrorInfoUrl) continue;
    std::pair<std::string, std::string> info;
    for (const Field& e : ParseFields(value)) {
      if (e.number == 1) info.first = e.bytes;
      if (e.number == 2) info.second = e.bytes;
    }
    st.infos.push_back(info);
  }
  return st;
}

// ------------------------------------------------------------ calling

std::vector<std::string> MetadataValues(
    const std::multimap<grpc::string_ref, grpc::string_ref>& md,
    const std::string& key) {
  std::vector<std::string> out;
  auto range = md.equal_range(key);
  for (auto it = range.first; it != range.second; ++it)
    out.emplace_back(it->second.data(), it->second.size());
  return out;
}

void SetDeadline(ClientContext* ctx, ms timeout = RpcTimeout()) {
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
}

template <class Req, class Resp>
using Method = Status (Stub::*)(ClientContext*, const Req&, Resp*);

// A request for failure messages, cut short (some carry megabytes).
std::string Brief(const google::protobuf::Message& req) {
  std::string shown = req.ShortDebugString();
  if (shown.size() > 200) shown = shown.substr(0, 200) + "...";
  return shown;
}

// Calls and requires OK; `backend` gets x-uapi-backend.
template <class Req, class Resp>
Resp Ok(Method<Req, Resp> m, const Req& req,
        std::vector<std::string>* backend = nullptr) {
  ClientContext ctx;
  SetDeadline(&ctx);
  Resp resp;
  Status st = (g_stub.get()->*m)(&ctx, req, &resp);
  if (!st.ok())
    throw Failure{"RPC failed with " + std::to_string(st.error_code()) + ": " +
                  st.error_message() + " request {" + Brief(req) +
                  "}"};
  if (backend)
    *backend = MetadataValues(ctx.GetServerInitialMetadata(), "x-uapi-backend");
  return resp;
}

// The status code, the uapi-error-code trailer and the google.rpc.Status
// of grpc-status-details-bin (uapi_code nullptr: the error has none).
void CheckStatus(const ClientContext& ctx, const Status& st, StatusCode code,
                 const char* uapi_code) {
  CHECK_EQ(st.error_code(), code);
  auto codes = MetadataValues(ctx.GetServerTrailingMetadata(), "uapi-error-code");
  const std::string& details = st.error_details();
  if (uapi_code) {
    CHECK_EQ(codes, std::vector<std::string>{uapi_code});
    CHECK(!st.error_message().empty());
    CHECK(!details.empty());
  }
  if (details.empty()) return;
  RpcStatus rs = ParseStatus(details);
  CHECK_EQ(rs.code, static_cast<int64_t>(code));
  CHECK_EQ(rs.message, st.error_message());
  if (uapi_code) {
    CHECK_EQ(rs.infos.size(), 1u);
    CHECK_EQ(rs.infos[0].first, std::string(uapi_code));
    CHECK_EQ(rs.infos[0].second, std::string(kDomain));
  } else {
    for (const auto& info : rs.infos) {
      CHECK_EQ(info.second, std::string(kDomain));
      CHECK_EQ(codes, std::vector<std::string>{info.first});
    }
  }
}

template <class Req, class Resp>
void Err(Method<Req, Resp> m, const Req& req, StatusCode code,
         const char* uapi_code) {
  ClientContext ctx;
  SetDeadline(&ctx);
  Resp resp;
  Status st = (g_stub.get()->*m)(&ctx, req, &resp);
  try {
    CheckStatus(ctx, st, code, uapi_code);
  } catch (Failure& f) {
    f.what += " (request {" + Brief(req) + "}, got " +
              std::to_string(st.error_code()) + " " + st.error_message() + ")";
    throw;
  }
}

int g_seq = 1000;
std::string FreshExt() { return "8*" + std::to_string(g_seq++); }
std::string FreshUser() { return "u" + std::to_string(g_seq++); }

pc::CreatePhoneCallRequest CreateReq(const std::string& ext,
                                     const std::string& dest = "") {
  pc::CreatePhoneCallRequest req;
  req.set_extension(ext);
  req.add_source(ext);
  req.add_destination(dest.empty() ? FreshExt() : dest);
  return req;
}

pc::PhoneCall Create(const pc::CreatePhoneCallRequest& req) {
  auto resp = Ok(&Stub::CreateSimplePhoneCall, req);
  CHECK_EQ(resp.phone_calls_size(), 1);
  return resp.phone_calls(0);
}

pc::PhoneCall Create(const std::string& ext = "", const std::string& user = "") {
  auto req = CreateReq(ext.empty() ? FreshExt() : ext);
  req.set_user_id(user);
  return Create(req);
}

template <class Req>
Req Addr(const pc::PhoneCall& call, const std::string& view = "",
         const std::string& user = "") {
  Req req;
  req.set_user_id(user);
  req.set_extension(call.extension());
  req.set_phone_call_id(call.id());
  if constexpr (!std::is_same_v<Req, pc::GetPhoneCallRequest> &&
                !std::is_same_v<Req, pc::HangupPhoneCallsRequest>) {
    req.set_phone_call_view_id(view);
  }
  return req;
}

pc::PhoneCall Get(const pc::PhoneCall& call, const std::string& user = "") {
  return Ok(&Stub::GetPhoneCall, Addr<pc::GetPhoneCallRequest>(call, "", user));
}

const pc::PhoneCallView& ViewOf(const pc::PhoneCall& call, const std::string& id) {
  for (const auto& v : call.phone_call_views())
    if (v.id() == id) return v;
  throw Failure{"call has no view " + id + ": " + call.ShortDebugString()};
}

bool TsSet(const google::protobuf::Timestamp& t) {
  return t.seconds() != 0 || t.nanos() != 0;
}

void CheckNow(const google::protobuf::Timestamp& t, double before) {
  double now = std::chrono::duration<double>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  double s = t.seconds() + t.nanos() / 1e9;
  CHECK(TsSet(t));
  CHECK(s >= before - 1 && s <= now + 1);
}

double WallNow() {
  return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ------------------------------------------------------------ watch

// A WatchPhoneCalls stream read by a thread into a queue.
class WatchStream {
 public:
  struct Item {
    bool end = false;  // the stream finished; status() tells how
    pc::PhoneCallEvent event;
  };

  explicit WatchStream(const pc::WatchPhoneCallsRequest& req,
                       std::optional<ms> deadline = std::nullopt) {
    if (deadline) SetDeadline(&ctx_, *deadline);
    reader_ = g_stub->WatchPhoneCalls(&ctx_, req);
    thread_ = std::thread([this] { Pump(); });
  }

  ~WatchStream() {
    ctx_.TryCancel();
    thread_.join();
  }

  void Cancel() { ctx_.TryCancel(); }

  std::optional<Item> Next(ms timeout = RpcTimeout()) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [this] { return !items_.empty(); }))
      return std::nullopt;
    Item item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  pc::PhoneCallEvent NextEvent(ms timeout = RpcTimeout()) {
    auto item = Next(timeout);
    if (!item) throw Failure{"no Watch event in time"};
    if (item->end)
      throw Failure{"Watch ended instead of an event: " + status_.error_message()};
    return item->event;
  }

  pc::PhoneCallEvent Expect(pc::PhoneCallEvent::Type type, const std::string& id) {
    auto ev = NextEvent();
    CHECK_EQ(ev.type(), type);
    CHECK_EQ(ev.phone_call().id(), id);
    return ev;
  }

  // Waits for the response headers: the server sends them when the
  // subscription is live (a polling backend: once its baseline poll is
  // in). True when they came (or the stream ended) within `timeout`.
  bool WaitHeaders(ms timeout = RpcTimeout()) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return headers_; });
  }

  // Waits for the response headers, then creates probe calls until their
  // events flow, then drains up to the last probe's event: from then on
  // the subscription is live.
  void WaitReady(const std::function<pc::PhoneCall()>& probe) {
    if (!WaitHeaders()) throw Failure{"no Watch response headers in time"};
    std::vector<std::string> ids;
    auto is_probe = [&](const pc::PhoneCallEvent& ev) {
      return std::find(ids.begin(), ids.end(), ev.phone_call().id()) != ids.end();
    };
    for (int n = 0; n < 50; n++) {
      ids.push_back(probe().id());
      auto until = Clock::now() + ms(200 * g_slow);
      // Other events (of earlier changes) are skipped.
      while (auto item = Next(std::chrono::duration_cast<ms>(until - Clock::now()))) {
        if (item->end) throw Failure{"Watch ended while waiting"};
        if (!is_probe(item->event)) continue;
        pc::PhoneCallEvent ev = item->event;
        while (ev.phone_call().id() != ids.back()) ev = NextEvent();
        return;
      }
    }
    throw Failure{"Watch delivered no event for 50 probe calls"};
  }

  bool Quiet() {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.empty();
  }

  // Valid once an end item was taken.
  const Status& status() const { return status_; }
  const ClientContext& context() const { return ctx_; }

 private:
  void Pump() {
    reader_->WaitForInitialMetadata();
    {
      std::lock_guard<std::mutex> lock(mu_);
      headers_ = true;
      cv_.notify_all();
    }
    pc::PhoneCallEvent ev;
    while (reader_->Read(&ev)) Push(Item{false, ev});
    status_ = reader_->Finish();
    Push(Item{true, {}});
  }

  void Push(Item item) {
    std::lock_guard<std::mutex> lock(mu_);
    items_.push_back(std::move(item));
    cv_.notify_all();
  }

  ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<pc::PhoneCallEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> items_;
  bool headers_ = false;
  Status status_;
};

pc::WatchPhoneCallsRequest WatchReq(const std::string& ext,
                                    const std::string& user = "") {
  pc::WatchPhoneCallsRequest req;
  req.set_user_id(user);
  req.set_extension(ext);
  return req;
}

// ------------------------------------------------------------ error rows
// The native engine's error rows (docs/native-engine.md, api-contract.md
// §2) are tables of ErrRow: methods by name, the request as Fields (set on
// each method's request by reflection; fields a request does not have are
// skipped), the status code and the UAPI code (nullptr: none). CheckErrors
// calls every method of every row and checks it with CheckStatus.

using Strs = std::vector<std::string>;
// A string field, a wrapper's value (Int32Value), or a repeated string.
using Value = std::variant<std::string, int32_t, Strs>;
using Fields = std::map<std::string, Value>;

Fields With(Fields fields, const Fields& more) {
  for (const auto& [name, value] : more) fields.insert_or_assign(name, value);
  return fields;
}

void Fill(google::protobuf::Message* msg, const Fields& fields) {
  const auto* desc = msg->GetDescriptor();
  const auto* refl = msg->GetReflection();
  for (const auto& [name, value] : fields) {
    const auto* field = desc->FindFieldByName(name);
    if (field == nullptr) continue;
    if (const auto* s = std::get_if<std::string>(&value)) {
      refl->SetString(msg, field, *s);
    } else if (const auto* n = std::get_if<int32_t>(&value)) {
      auto* wrapper = refl->MutableMessage(msg, field);
      wrapper->GetReflection()->SetInt32(
          wrapper, wrapper->GetDescriptor()->FindFieldByName("value"), *n);
    } else {
      refl->ClearField(msg, field);
      for (const auto& item : std::get<Strs>(value)) refl->AddString(msg, field, item);
    }
  }
}

// One RPC by name: fills its request from Fields, calls it on g_channel
// and returns the status; `shown` gets the request for messages.
using AnyCall = std::function<Status(ClientContext*, const Fields&, std::string* shown)>;

template <class Req, class Resp>
AnyCall Unary(Method<Req, Resp> m) {
  return [m](ClientContext* ctx, const Fields& fields, std::string* shown) {
    Req req;
    Fill(&req, fields);
    *shown = req.ShortDebugString();
    Resp resp;
    return (pc::PhoneCallService::NewStub(g_channel).get()->*m)(ctx, req, &resp);
  };
}

// WatchPhoneCalls read to its end.
Status WatchToEnd(ClientContext* ctx, const Fields& fields, std::string* shown) {
  pc::WatchPhoneCallsRequest req;
  Fill(&req, fields);
  *shown = req.ShortDebugString();
  auto reader = pc::PhoneCallService::NewStub(g_channel)->WatchPhoneCalls(ctx, req);
  pc::PhoneCallEvent ev;
  while (reader->Read(&ev)) {
  }
  return reader->Finish();
}

// A unary call of a "/service/method" path with the raw request bytes of
// field "raw" (through grpc++'s generic stub).
Status RawCall(const std::string& path, ClientContext* ctx, const Fields& fields,
               std::string* shown) {
  const std::string& bytes = std::get<std::string>(fields.at("raw"));
  *shown = std::to_string(bytes.size()) + " raw bytes";
  grpc::GenericStub stub(g_channel);
  grpc::CompletionQueue cq;
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  auto call = stub.PrepareUnaryCall(ctx, path, request, &cq);
  call->StartCall();
  Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

const std::map<std::string, AnyCall>& Rpcs() {
  static const std::map<std::string, AnyCall> rpcs = {
      {"ListPhoneCalls", Unary(&Stub::ListPhoneCalls)},
      {"GetPhoneCall", Unary(&Stub::GetPhoneCall)},
      {"CreateSimplePhoneCall", Unary(&Stub::CreateSimplePhoneCall)},
      {"CreateCallbackPhoneCall", Unary(&Stub::CreateCallbackPhoneCall)},
      {"CreateConferenceInvitePhoneCall", Unary(&Stub::CreateConferenceInvitePhoneCall)},
      {"HangupPhoneCalls", Unary(&Stub::HangupPhoneCalls)},
      {"OnHold", Unary(&Stub::OnHold)},
      {"OffHold", Unary(&Stub::OffHold)},
      {"StartRecording", Unary(&Stub::StartRecording)},
      {"StopRecording", Unary(&Stub::StopRecording)},
      {"Park", Unary(&Stub::Park)},
      {"UnPark", Unary(&Stub::UnPark)},
      {"PickUp", Unary(&Stub::PickUp)},
      {"BargeIn", Unary(&Stub::BargeIn)},
      {"Whisper", Unary(&Stub::Whisper)},
      {"Monitor", Unary(&Stub::Monitor)},
      {"Transfer", Unary(&Stub::Transfer)},
      {"TransferToVoicemail", Unary(&Stub::TransferToVoicemail)},
      {"WatchPhoneCalls", WatchToEnd},
  };
  return rpcs;
}

// Every method of the service, from its descriptor (each must be in Rpcs()).
Strs AllMethods() {
  const auto* service = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      pc::PhoneCallService::service_full_name());
  if (service == nullptr) throw Failure{"no descriptor of the service"};
  Strs out;
  for (int i = 0; i < service->method_count(); i++) out.push_back(service->method(i)->name());
  return out;
}

Strs Concat(std::initializer_list<Strs> lists) {
  Strs out;
  for (const Strs& l : lists) out.insert(out.end(), l.begin(), l.end());
  return out;
}

Strs Without(Strs methods, const std::string& name) {
  methods.erase(std::remove(methods.begin(), methods.end(), name), methods.end());
  return methods;
}

const Strs kCreates = {"CreateSimplePhoneCall", "CreateCallbackPhoneCall",
                       "CreateConferenceInvitePhoneCall"};
const Strs kActionsWithView = {"OnHold", "OffHold", "StartRecording", "StopRecording",
                               "Park",   "UnPark",  "PickUp",         "BargeIn",
                               "Whisper", "Monitor"};
const Strs kTransfers = {"Transfer", "TransferToVoicemail"};
const Strs kActions = Concat({kActionsWithView, kTransfers});
const Strs kNeedsSendCallTo = Concat(
    {{"UnPark", "PickUp", "BargeIn", "Whisper", "Monitor"}, kTransfers});
const Strs kListeningIn = {"BargeIn", "Whisper", "Monitor"};
const auto IA = StatusCode::INVALID_ARGUMENT;
const auto NF = StatusCode::NOT_FOUND;
const auto FP = StatusCode::FAILED_PRECONDITION;
const char kStateInvalid[] = "pc_phonecall_state_invalid";

// A request every method accepts for `call` (each row then spoils one field).
Fields ValidReq(const pc::PhoneCall& call, const std::string& user = "") {
  return {{"user_id", user},           {"extension", call.extension()},
          {"phone_call_id", call.id()}, {"phone_call_view_id", "00"},
          {"send_call_to", "210"},      {"source", Strs{"210"}},
          {"destination", Strs{"211"}}};
}

struct ErrRow {
  Strs methods;
  Fields fields;
  StatusCode code;
  const char* uapi_code;  // nullptr: the row has no UAPI code
};

// Runs every method of every row; throws one Failure naming all the rows
// that failed.
void CheckErrors(const std::vector<ErrRow>& rows) {
  std::vector<std::string> failures;
  size_t n = 0;
  for (const ErrRow& row : rows) {
    for (const std::string& method : row.methods) {
      n++;
      ClientContext ctx;
      SetDeadline(&ctx);
      std::string shown;
      Status st;
      if (method[0] == '/') {
        st = RawCall(method, &ctx, row.fields, &shown);
      } else {
        auto it = Rpcs().find(method);
        if (it == Rpcs().end()) throw Failure{"no caller for method " + method};
        st = it->second(&ctx, row.fields, &shown);
      }
      try {
        CheckStatus(ctx, st, row.code, row.uapi_code);
      } catch (const Failure& f) {
        if (shown.size() > 200) shown = shown.substr(0, 200) + "...";
        failures.push_back(method + " {" + shown + "}: " + f.what + " (got " +
                           std::to_string(st.error_code()) + " " + st.error_message() + ")");
      }
    }
  }
  CHECK(n > 0);
  if (failures.empty()) return;
  std::string what = std::to_string(failures.size()) + " of " + std::to_string(n) +
                     " error rows failed:";
  for (size_t i = 0; i < failures.size() && i < 20; i++) what += "\n    " + failures[i];
  throw Failure{what};
}

// Points g_channel and g_stub at another sidecar (run.sh's --max-calls or
// --ring-delay one) for the scope.
class OtherSidecar {
 public:
  OtherSidecar(const std::string& address, const char* option) {
    if (address.empty())
      throw Failure{std::string("no ") + option + "=HOST:PORT (run through run.sh)"};
    saved_channel_ = g_channel;
    saved_stub_ = std::move(g_stub);
    g_channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    g_stub = pc::PhoneCallService::NewStub(g_channel);
  }
  ~OtherSidecar() {
    g_channel = saved_channel_;
    g_stub = std::move(saved_stub_);
  }

 private:
  std::shared_ptr<grpc::Channel> saved_channel_;
  std::unique_ptr<Stub> saved_stub_;
};

// ------------------------------------------------------------ tests

using PV = pc::PhoneCallView;
using Event = pc::PhoneCallEvent;

void TestCreates() {
  struct Case {
    Method<pc::CreatePhoneCallRequest, pc::CreatePhoneCallResponse> method;
    std::string dest;
    PV::Flow flow0, flow1;
  };
  const Case cases[] = {
      {&Stub::CreateSimplePhoneCall, "0003*211", PV::FLOW_LOCAL, PV::FLOW_LOCAL},
      {&Stub::CreateCallbackPhoneCall, "4242425001", PV::FLOW_OUTGOING_PUBLIC,
       PV::FLOW_INCOMING_PUBLIC},
      {&Stub::CreateConferenceInvitePhoneCall, "21000", PV::FLOW_LOCAL,
       PV::FLOW_LOCAL},
  };
  for (const Case& c : cases) {
    std::string ext = FreshExt();
    auto req = CreateReq(ext, c.dest);
    req.set_caller_id("John <4242425>");
    req.set_caller_destination("Desk <210>");
    req.set_nonce("nonce-cpp");
    req.mutable_wait_for_pickup()->set_value(30);
    req.mutable_video()->set_value(false);
    req.mutable_conference_number()->set_value(5000);
    req.set_pin("1234");
    double t0 = WallNow();
    std::vector<std::string> backend;
    auto resp = Ok(c.method, req, &backend);
    CHECK_EQ(backend, g_backend);
    CHECK_EQ(resp.phone_calls_size(), 1);
    const pc::PhoneCall& call = resp.phone_calls(0);
    CHECK(std::regex_match(call.id(), std::regex("[0-9a-f]{20}")));
    CHECK_EQ(call.extension(), ext);
    CHECK_EQ(call.owner_id(), std::string("1"));
    CHECK_EQ(call.owner_name(), std::string("Default Organization"));
    CHECK_EQ(call.nonce(), std::string("nonce-cpp"));
    CheckNow(call.published(), t0);
    CheckNow(call.answered(), t0);
    CHECK_EQ(call.phone_call_views_size(), 2);
    const PV& v0 = ViewOf(call, "00");
    const PV& v1 = ViewOf(call, "01");
    CHECK_EQ(v0.extension(), ext);
    CHECK_EQ(v1.extension(), c.dest);
    CHECK_EQ(v0.flow(), c.flow0);
    CHECK_EQ(v1.flow(), c.flow1);
    CHECK_EQ(v0.caller_id(), std::string("John <4242425>"));
    CHECK_EQ(v1.caller_id(), std::string("Desk <210>"));
    for (const PV* v : {&v0, &v1}) {
      CHECK_EQ(Vec(v->source()), std::vector<std::string>{ext});
      CHECK_EQ(Vec(v->destination()), std::vector<std::string>{c.dest});
      CHECK_EQ(v->status(), PV::STATUS_ON_CALL);
      CheckNow(v->answered(), t0);
      CHECK(!v->has_ringing() && !v->has_on_hold() && !v->has_parked() &&
            !v->has_recording() && !v->has_holder() && !v->has_parked_pos());
    }
    CHECK_EQ(Get(call), call);
  }
}

void TestGet() {
  auto call = Create();
  for (const char* user : {"", "@me", "@viewer", "@owner", "1"}) {
    for (const std::string& ext :
         {call.extension(), std::string("@self"), ViewOf(call, "01").extension()}) {
      pc::GetPhoneCallRequest req;
      req.set_user_id(user);
      req.set_extension(ext);
      req.set_phone_call_id(call.id());
      std::vector<std::string> backend;
      CHECK_EQ(Ok(&Stub::GetPhoneCall, req, &backend), call);
      CHECK_EQ(backend, g_backend);
    }
  }
}

std::vector<std::string> Ids(const pc::ListPhoneCallsResponse& r) {
  std::vector<std::string> out;
  for (const auto& c : r.phone_calls()) out.push_back(c.id());
  return out;
}

void TestList() {
  std::string ext = FreshExt();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; i++) ids.push_back(Create(ext).id());
  pc::ListPhoneCallsRequest req;
  req.set_extension(ext);
  auto r = Ok(&Stub::ListPhoneCalls, req);
  CHECK_EQ(Ids(r), ids);
  CHECK_EQ(r.total_results(), 5);
  CHECK_EQ(r.items_per_page(), 20);
  CHECK_EQ(r.start_index(), 0);

  req.mutable_count()->set_value(2);
  req.mutable_start_index()->set_value(4);
  r = Ok(&Stub::ListPhoneCalls, req);
  CHECK_EQ(Ids(r), std::vector<std::string>{ids[4]});
  CHECK_EQ(r.total_results(), 5);
  CHECK_EQ(r.items_per_page(), 2);
  CHECK_EQ(r.start_index(), 4);

  req.clear_count();
  req.clear_start_index();
  req.set_sort_order("descending");
  r = Ok(&Stub::ListPhoneCalls, req);
  CHECK_EQ(Ids(r), std::vector<std::string>(ids.rbegin(), ids.rend()));

  req.clear_sort_order();
  req.set_filter_by("id");
  req.set_filter_op("inArray");
  req.set_filter_value(ids[3] + "," + ids[0]);
  r = Ok(&Stub::ListPhoneCalls, req);
  CHECK_EQ(Ids(r), (std::vector<std::string>{ids[0], ids[3]}));

  req.set_filter_by("published");
  req.set_filter_op("greaterThan");
  req.set_filter_value("2999-01-01T00:00:00Z");
  r = Ok(&Stub::ListPhoneCalls, req);
  CHECK_EQ(r.total_results(), 0);

  req.clear_filter_by();
  req.clear_filter_op();
  req.clear_filter_value();
  req.add_fields("id");
  req.set_phone_call_id(ids[2]);
  r = Ok(&Stub::ListPhoneCalls, req);
  pc::PhoneCall only;
  only.set_id(ids[2]);
  CHECK_EQ(r.phone_calls_size(), 1);
  CHECK_EQ(r.phone_calls(0), only);
}

void TestHangup() {
  std::string ext = FreshExt(), dest = FreshExt();
  auto a = Create(CreateReq(ext, dest));
  auto b = Create(CreateReq(ext));
  auto c = Create(CreateReq(ext, dest));
  auto d = Create(CreateReq(ext));
  pc::HangupPhoneCallsRequest req;
  req.set_extension(ext);
  req.set_phone_call_id(a.id());
  req.set_phone_number("0003*999");
  CHECK_EQ(Ok(&Stub::HangupPhoneCalls, req).phone_call_ids_size(), 0);
  req.set_phone_number(dest);
  CHECK_EQ(Vec(Ok(&Stub::HangupPhoneCalls, req).phone_call_ids()),
           std::vector<std::string>{a.id()});
  Err(&Stub::GetPhoneCall, Addr<pc::GetPhoneCallRequest>(a), StatusCode::NOT_FOUND,
      "pc_phoncall_invalid");
  req.set_phone_call_id(b.id());
  req.clear_phone_number();
  CHECK_EQ(Vec(Ok(&Stub::HangupPhoneCalls, req).phone_call_ids()),
           std::vector<std::string>{b.id()});
  req.clear_phone_call_id();
  req.set_phone_number(dest);
  CHECK_EQ(Vec(Ok(&Stub::HangupPhoneCalls, req).phone_call_ids()),
           std::vector<std::string>{c.id()});
  req.clear_phone_number();
  CHECK_EQ(Vec(Ok(&Stub::HangupPhoneCalls, req).phone_call_ids()),
           std::vector<std::string>{d.id()});
  CHECK_EQ(Ok(&Stub::HangupPhoneCalls, req).phone_call_ids_size(), 0);
}

void TestHoldAndRecording() {
  auto call = Create();
  double t0 = WallNow();
  auto held = Ok(&Stub::OnHold, Addr<pc::OnHoldRequest>(call, "01"));
  CheckNow(ViewOf(held, "01").on_hold(), t0);
  CHECK_EQ(ViewOf(held, "01").holder().value(), 1);
  CHECK_EQ(ViewOf(held, "00"), ViewOf(call, "00"));
  CHECK_EQ(Get(call), held);
  CHECK_EQ(Ok(&Stub::OffHold, Addr<pc::OffHoldRequest>(call, "01")), call);

  auto rec_req = Addr<pc::StartRecordingRequest>(call, "00");
  rec_req.set_format("wav");
  auto rec = Ok(&Stub::StartRecording, rec_req);
  CheckNow(ViewOf(rec, "00").recording(), t0);
  CHECK_EQ(Ok(&Stub::StopRecording, Addr<pc::StopRecordingRequest>(call, "00")),
           call);
}

void TestParkAndUnPark() {
  std::string user = FreshUser();
  auto a = Create("", user);
  auto b = Create("", user);
  double t0 = WallNow();
  auto park = Addr<pc::ParkRequest>(a, "01", user);
  park.mutable_max_in_parking()->set_value(600);
  auto pa = Ok(&Stub::Park, park);
  CheckNow(ViewOf(pa, "01").parked(), t0);
  CHECK_EQ(ViewOf(pa, "01").parked_pos().value(), 1);
  CHECK_EQ(ViewOf(pa, "01").parked_by(), a.extension());
  auto pb = Ok(&Stub::Park, Addr<pc::ParkRequest>(b, "00", user));
  CHECK_EQ(ViewOf(pb, "00").parked_pos().value(), 2);
  auto unpark = Addr<pc::UnParkRequest>(a, "01", user);
  unpark.set_send_call_to("0003*333");
  auto ua = Ok(&Stub::UnPark, unpark);
  const PV& v = ViewOf(ua, "01");
  CHECK(!v.has_parked() && !v.has_parked_pos());
  CHECK_EQ(v.parked_by(), std::string());
  CHECK_EQ(v.extension(), std::string("0003*333"));
  CHECK_EQ(Get(ua, user), ua);
}

void TestPickUp() {
  auto call = Create();
  auto req = Addr<pc::PickUpRequest>(call, "01");
  req.set_send_call_to("0003*444");
  auto got = Ok(&Stub::PickUp, req);
  const PV& v = ViewOf(got, "01");
  CHECK_EQ(v.extension(), std::string("0003*444"));
  CHECK_EQ(v.status(), PV::STATUS_ON_CALL);
  CHECK(!v.has_ringing());
  CHECK_EQ(v.answered(), ViewOf(call, "01").answered());
}

template <class Req>
Req ListenReq(const pc::PhoneCall& call, const std::string& view,
              const std::string& to) {
  auto req = Addr<Req>(call, view);
  req.set_send_call_to(to);
  req.set_caller_id("Boss");
  return req;
}

void CheckNewView(const pc::PhoneCall& got, const pc::PhoneCall& before,
                  const std::string& leg, const std::string& to) {
  CHECK_EQ(got.phone_call_views_size(), before.phone_call_views_size() + 1);
  const PV& nv = got.phone_call_views(got.phone_call_views_size() - 1);
  CHECK_EQ(nv.id(), std::string("0") + std::to_string(before.phone_call_views_size()));
  CHECK_EQ(nv.extension(), to);
  CHECK_EQ(Vec(nv.source()), std::vector<std::string>{to});
  CHECK_EQ(Vec(nv.destination()),
           std::vector<std::string>{ViewOf(before, leg).extension()});
  CHECK_EQ(nv.flow(), PV::FLOW_LOCAL);
  CHECK_EQ(nv.status(), PV::STATUS_ON_CALL);
  CHECK_EQ(nv.caller_id(), std::string("Boss"));
  CHECK(TsSet(nv.answered()));
}

void TestBargeInWhisperMonitor() {
  auto call = Create();
  auto b = Ok(&Stub::BargeIn, ListenReq<pc::BargeInRequest>(call, "01", "0003*301"));
  CheckNewView(b, call, "01", "0003*301");
  auto wreq = ListenReq<pc::WhisperRequest>(call, "00", "0003*302");
  wreq.mutable_private_()->set_value(true);
  auto w = Ok(&Stub::Whisper, wreq);
  CheckNewView(w, b, "00", "0003*302");
  auto m = Ok(&Stub::Monitor, ListenReq<pc::MonitorRequest>(call, "01", "0003*303"));
  CheckNewView(m, w, "01", "0003*303");
  CHECK_EQ(Get(call), m);
}

template <class Req>
void CheckTransfer(Method<Req, pc::PhoneCall> method) {
  auto call = Create();
  Ok(&Stub::OnHold, Addr<pc::OnHoldRequest>(call, "01"));
  auto req = Addr<Req>(call, "01");
  req.set_send_call_to("0003*400");
  req.set_transfer_from_number(call.extension());
  auto got = Ok(method, req);
  const PV& v = ViewOf(got, "01");
  CHECK_EQ(Vec(v.destination()), std::vector<std::string>{"0003*400"});
  CHECK_EQ(v.extension(), std::string("0003*400"));
  CHECK(!v.has_on_hold() && !v.has_holder());
  CHECK_EQ(ViewOf(got, "00"), ViewOf(call, "00"));
  auto by_number = Addr<Req>(call, "");
  by_number.set_send_call_to("4242425");
  by_number.set_transfer_number(call.extension());
  CHECK_EQ(Vec(ViewOf(Ok(method, by_number), "00").destination()),
           std::vector<std::string>{"4242425"});
}

void TestTransfers() {
  CheckTransfer<pc::TransferRequest>(&Stub::Transfer);
  CheckTransfer<pc::TransferToVoicemailRequest>(&Stub::TransferToVoicemail);
}

void TestUserInvalid() {
  CHECK_EQ(AllMethods().size(), Rpcs().size());
  auto call = Create();
  std::vector<ErrRow> rows;
  for (const std::string& user :
       Strs{"bad-user", std::string(65, 'a'), "@nobody", "1 2", "\xc3\xbc"})
    rows.push_back({AllMethods(), ValidReq(call, user), IA, "user_invalid"});
  CheckErrors(rows);
}

void TestExtensionInvalid() {
  auto call = Create();
  std::vector<ErrRow> rows;
  for (const std::string& ext : Strs{"", "abc", "***", std::string(33, '1'), "12a", "@me"}) {
    // Watch: empty means every extension.
    rows.push_back({ext.empty() ? Without(AllMethods(), "WatchPhoneCalls") : AllMethods(),
                    With(ValidReq(call), {{"extension", ext}}), IA, "extension_invalid"});
  }
  rows.push_back({kCreates, With(ValidReq(call), {{"extension", "@self"}}), IA,
                  "extension_invalid"});
  CheckErrors(rows);
}

void TestCallIdInvalid() {
  auto call = Create();
  std::vector<ErrRow> rows;
  for (const std::string& id : Strs{"", "abc-123", "a b", std::string(65, 'a')}) {
    // Optional on List and Hangup: there only a given id is checked.
    rows.push_back({id.empty() ? Concat({{"GetPhoneCall"}, kActions})
                               : Concat({{"GetPhoneCall", "ListPhoneCalls", "HangupPhoneCalls"},
                                         kActions}),
                    With(ValidReq(call), {{"phone_call_id", id}}), IA, "pc_phoncall_invalid"});
  }
  CheckErrors(rows);
  CHECK_EQ(Get(call), call);
}

void TestCallNotFound() {
  auto call = Create();
  std::string other = FreshUser();
  auto theirs = Create("", other);
  const Strs methods = Concat({{"GetPhoneCall", "HangupPhoneCalls"}, kActions});
  const char* code = "pc_phoncall_invalid";
  std::vector<ErrRow> rows = {
      {methods, With(ValidReq(call), {{"phone_call_id", kUnknownId}}), NF, code},
      {methods, With(ValidReq(call), {{"phone_call_id", std::string(64, 'Z')}}), NF, code},
      {methods, With(ValidReq(call), {{"extension", FreshExt()}}), NF, code},
  };
  // My call asked for as the other user, theirs as the default user; by the
  // call's extension and by @self.
  for (const auto& [user, c] : {std::pair{other, call}, std::pair{std::string(), theirs}}) {
    for (const std::string& ext : Strs{c.extension(), "@self"})
      rows.push_back({methods, With(ValidReq(c, user), {{"extension", ext}}), NF, code});
  }
  CheckErrors(rows);
  CHECK_EQ(Get(call), call);
  CHECK_EQ(Get(theirs, other), theirs);
}

void TestViewInvalid() {
  auto call = Create();
  auto row = [&](const Strs& methods, const char* view, StatusCode code) {
    return ErrRow{methods, With(ValidReq(call), {{"phone_call_view_id", view}}), code,
                  "pc_phoncallview_invalid"};
  };
  std::vector<ErrRow> rows;
  for (const char* view : {"", "0", "000", "ab", "0a", " 0"})
    rows.push_back(row(kActionsWithView, view, IA));
  // Optional on the transfers: there only a given view is checked.
  for (const char* view : {"x", "000"}) rows.push_back(row(kTransfers, view, IA));
  for (const char* view : {"02", "99"}) rows.push_back(row(kActions, view, NF));
  CheckErrors(rows);
  CHECK_EQ(Get(call), call);
}

void TestStateRules() {
  auto call = Create();
  auto on_both_legs = [&](const Strs& methods) {
    std::vector<ErrRow> rows;
    for (const char* view : {"00", "01"})
      rows.push_back({methods, With(ValidReq(call), {{"phone_call_view_id", view}}), FP,
                      kStateInvalid});
    return rows;
  };
  // OffHold not on hold, StopRecording not recording, UnPark not parked.
  CheckErrors(on_both_legs({"OffHold", "StopRecording", "UnPark"}));
  for (const std::string view : {"00", "01"}) {
    Ok(&Stub::OnHold, Addr<pc::OnHoldRequest>(call, view));
    Ok(&Stub::StartRecording, Addr<pc::StartRecordingRequest>(call, view));
    Ok(&Stub::Park, Addr<pc::ParkRequest>(call, view));
  }
  CheckErrors(on_both_legs({"OnHold", "StartRecording", "Park"}));
  auto got = Get(call);
  for (const char* view : {"00", "01"}) {
    const PV& v = ViewOf(got, view);
    CHECK(v.has_on_hold() && v.has_recording() && v.has_parked());
  }
  // At most 8 views: listening in on a full call.
  auto full = Create();
  for (int i = 0; i < 6; i++)
    Ok(&Stub::BargeIn,
       ListenReq<pc::BargeInRequest>(full, "01", "0003*60" + std::to_string(i)));
  CheckErrors({{kListeningIn, With(ValidReq(full), {{"send_call_to", "0003*699"}}), FP,
                kStateInvalid}});
  CHECK_EQ(Get(full).phone_call_views_size(), 8);
}

void TestUnansweredCall() {
  OtherSidecar ringing(g_ring_delay_address, "--ring-delay-sidecar");
  auto call = Create();
  CHECK(!call.has_answered());
  CheckErrors({{kListeningIn, With(ValidReq(call), {{"send_call_to", "0003*556"}}), FP,
                kStateInvalid}});
  CHECK_EQ(Get(call), call);
}

void TestProvisionalCodes() {
  auto call = Create();
  // Leg 01 parked, so that UnPark gets as far as its send_call_to.
  auto park = Addr<pc::ParkRequest>(call, "01");
  park.mutable_max_in_parking()->set_value(3600);
  Ok(&Stub::Park, park);
  const Fields valid = ValidReq(call);
  std::vector<ErrRow> rows;
  Strs nine;
  for (int i = 0; i < 9; i++) nine.push_back(std::to_string(200 + i));
  for (const Strs& bad :
       std::vector<Strs>{{}, {"abc"}, {std::string(33, '1')}, {""}, {"21 0"}, nine}) {
    rows.push_back({kCreates, With(valid, {{"source", bad}}), IA, "pc_source_invalid"});
    rows.push_back({kCreates, With(valid, {{"destination", bad}}), IA, "pc_destination_invalid"});
  }
  rows.push_back({{"StartRecording"}, With(valid, {{"format", "mp3"}}), IA, "pc_format_invalid"});
  for (int32_t seconds : {9, 3601, 0, -1})
    rows.push_back({{"Park"}, With(valid, {{"max_in_parking", seconds}}), IA,
                    "pc_maxinparking_invalid"});
  for (const std::string& to : Strs{"", "abc", std::string(33, '1'), "#1"}) {
    for (const std::string& method : kNeedsSendCallTo)
      rows.push_back({{method},
                      With(valid, {{"phone_call_view_id", method == "UnPark" ? "01" : "00"},
                                   {"send_call_to", to}}),
                      IA, "pc_sendcallto_invalid"});
  }
  const std::pair<const char*, Fields> list_rows[] = {
      {"count_invalid", {{"count", 0}}},
      {"count_invalid", {{"count", 5001}}},
      {"count_invalid", {{"count", -1}}},
      {"startindex_invalid", {{"start_index", -1}}},
      {"startindex_invalid", {{"start_index", 5001}}},
      {"filterby_invalid",
       {{"filter_by", "extension"}, {"filter_op", "equals"}, {"filter_value", "1"}}},
      {"filterby_invalid", {{"filter_op", "equals"}, {"filter_value", "1"}}},
      {"filterop_invalid", {{"filter_by", "id"}, {"filter_op", "like"}, {"filter_value", "1"}}},
      {"filterop_invalid", {{"filter_by", "id"}, {"filter_value", "1"}}},
      {"filtervalue_invalid", {{"filter_by", "id"}, {"filter_op", "equals"}}},
      {"filtervalue_invalid",
       {{"filter_by", "published"}, {"filter_op", "greaterThan"}, {"filter_value", "yesterday"}}},
      {"filtervalue_invalid",
       {{"filter_by", "published"}, {"filter_op", "lessThan"},
        {"filter_value", "2024-13-01T00:00:00Z"}}},
      {"sortorder_invalid", {{"sort_order", "up"}}},
      {"fields_invalid", {{"fields", Strs{"bogus"}}}},
      {"fields_invalid", {{"fields", Strs{"id", "phone_call_views"}}}},
  };
  for (const auto& [uapi_code, fields] : list_rows)
    rows.push_back({{"ListPhoneCalls"}, With(fields, {{"extension", call.extension()}}), IA,
                    uapi_code});
  CheckErrors(rows);
  // None of them changed the call; the limits themselves are fine.
  CHECK_EQ(Get(call).phone_call_views_size(), 2);
  pc::ListPhoneCallsRequest list;
  list.set_extension(call.extension());
  list.mutable_count()->set_value(5000);
  list.mutable_start_index()->set_value(5000);
  auto r = Ok(&Stub::ListPhoneCalls, list);
  CHECK_EQ(r.total_results(), 1);
  CHECK_EQ(r.items_per_page(), 5000);
  CHECK_EQ(r.start_index(), 5000);
  CHECK_EQ(r.phone_calls_size(), 0);
}

void TestEngineFull() {
  OtherSidecar limited(g_max_calls_address, "--max-calls-sidecar");
  std::string ext = FreshExt();
  const auto req = CreateReq(ext, "0003*1");
  const Fields fields = {
      {"extension", ext}, {"source", Strs{ext}}, {"destination", Strs{"0003*1"}}};
  std::vector<pc::PhoneCall> made;
  for (auto method : {&Stub::CreateSimplePhoneCall, &Stub::CreateCallbackPhoneCall,
                      &Stub::CreateConferenceInvitePhoneCall})
    made.push_back(Ok(method, req).phone_calls(0));
  CheckErrors({{kCreates, fields, StatusCode::RESOURCE_EXHAUSTED, nullptr}});
  Ok(&Stub::HangupPhoneCalls, Addr<pc::HangupPhoneCallsRequest>(made[0]));
  Create(req);
  CheckErrors({{{"CreateSimplePhoneCall"}, fields, StatusCode::RESOURCE_EXHAUSTED, nullptr}});
  pc::ListPhoneCallsRequest list;
  list.set_extension(ext);
  auto r = Ok(&Stub::ListPhoneCalls, list);
  CHECK_EQ(r.total_results(), 3);
  CHECK_EQ(r.phone_calls(0).id(), made[1].id());
  CHECK_EQ(r.phone_calls(1).id(), made[2].id());
}

void TestRequestTooLarge() {
  std::string ext = FreshExt();
  const Fields fields = {{"extension", ext}, {"source", Strs{ext}}, {"destination", Strs{"210"}},
                         {"nonce", std::string(4 * 1024 * 1024 + 1024, 'n')}};
  CheckErrors({{kCreates, fields, StatusCode::RESOURCE_EXHAUSTED, nullptr}});
  auto under = CreateReq(ext, "210");
  under.set_nonce(std::string(3 * 1024 * 1024, 'n'));
  auto call = Create(under);
  CHECK(call.nonce() == under.nonce());
  CHECK_EQ(Vec(Ok(&Stub::HangupPhoneCalls, Addr<pc::HangupPhoneCallsRequest>(call))
                   .phone_call_ids()),
           Strs{call.id()});
}

void TestUnimplementedAndGarbage() {
  const std::string service = pc::PhoneCallService::service_full_name();
  Strs every_method;
  for (const std::string& m : AllMethods()) every_method.push_back("/" + service + "/" + m);
  CheckErrors({
      {{"/" + service + "/NoSuchMethod", "/uapi.phonecalls.v1.NoSuchService/GetPhoneCall",
        "/no.such.Service/Method", "/" + service + "/getPhoneCall"},
       {{"raw", ""}},
       StatusCode::UNIMPLEMENTED,
       nullptr},
      {every_method, {{"raw", "\xff\xff\xff\xff"}}, StatusCode::INTERNAL, nullptr},
  });
  auto call = Create();
  CHECK_EQ(Get(call), call);
}

void TestDeadline() {
  auto t0 = Clock::now();
  WatchStream w(WatchReq(FreshExt()), ms(500));
  auto item = w.Next(ms(5000 * g_slow));
  auto elapsed = std::chrono::duration_cast<ms>(Clock::now() - t0).count();
  CHECK(item.has_value());
  CHECK(item->end);
  CheckStatus(w.context(), w.status(), StatusCode::DEADLINE_EXCEEDED, nullptr);
  CHECK(elapsed >= 400);
  CHECK(elapsed < 2000 * g_slow);
  Create();
}

void TestCancelledWatch() {
  std::string ext = FreshExt();
  WatchStream w(WatchReq(ext));
  w.WaitReady([&] { return Create(ext); });
  w.Cancel();
  auto item = w.Next();
  CHECK(item.has_value() && item->end);
  CHECK_EQ(w.status().error_code(), StatusCode::CANCELLED);
  auto call = Create(ext);
  CHECK_EQ(Get(call), call);
}

void TestConcurrentAsync() {
  const int n = 200;
  std::string ext = FreshExt();
  grpc::CompletionQueue cq;
  struct Pending {
    ClientContext ctx;
    pc::CreatePhoneCallResponse resp;
    Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pc::CreatePhoneCallResponse>> rpc;
  };
  std::vector<std::unique_ptr<Pending>> pending;
  for (int i = 0; i < n; i++) {
    auto p = std::make_unique<Pending>();
    SetDeadline(&p->ctx, RpcTimeout() * 3);
    auto req = CreateReq(ext, "0003*" + std::to_string(i));
    req.set_nonce("a" + std::to_string(i));
    p->rpc = g_stub->PrepareAsyncCreateSimplePhoneCall(&p->ctx, req, &cq);
    p->rpc->StartCall();
    p->rpc->Finish(&p->resp, &p->status, reinterpret_cast<void*>(static_cast<intptr_t>(i)));
    pending.push_back(std::move(p));
  }
  std::set<intptr_t> done;
  auto until = std::chrono::system_clock::now() + RpcTimeout() * 4;
  while (done.size() < static_cast<size_t>(n)) {
    void* tag;
    bool ok;
    auto r = cq.AsyncNext(&tag, &ok, until);
    if (r != grpc::CompletionQueue::GOT_EVENT) break;
    CHECK(ok);
    done.insert(reinterpret_cast<intptr_t>(tag));
  }
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  CHECK_EQ(done.size(), static_cast<size_t>(n));
  std::set<std::string> ids;
  for (int i = 0; i < n; i++) {
    const Pending& p = *pending[i];
    if (!p.status.ok()) throw Failure{"async call failed: " + p.status.error_message()};
    CHECK_EQ(p.resp.phone_calls(0).nonce(), "a" + std::to_string(i));
    CHECK_EQ(Vec(p.resp.phone_calls(0).phone_call_views(1).destination()),
             std::vector<std::string>{"0003*" + std::to_string(i)});
    ids.insert(p.resp.phone_calls(0).id());
  }
  CHECK_EQ(ids.size(), static_cast<size_t>(n));
  pc::ListPhoneCallsRequest list;
  list.set_extension(ext);
  list.mutable_count()->set_value(5000);
  CHECK_EQ(Ok(&Stub::ListPhoneCalls, list).total_results(), n);
}

void TestWatchEvents() {
  std::string ext = FreshExt();
  WatchStream w(WatchReq(ext));
  w.WaitReady([&] { return Create(ext); });
  double t0 = WallNow();
  Create(FreshExt());  // another extension: not watched
  auto call = Create(ext);
  auto created = w.Expect(Event::CREATED, call.id());
  CHECK_EQ(created.phone_call(), call);
  CheckNow(created.time(), t0);
  auto held = Ok(&Stub::OnHold, Addr<pc::OnHoldRequest>(call, "00"));
  CHECK_EQ(w.Expect(Event::UPDATED, call.id()).phone_call(), held);
  Ok(&Stub::HangupPhoneCalls, Addr<pc::HangupPhoneCallsRequest>(call));
  CHECK_EQ(w.Expect(Event::ENDED, call.id()).phone_call(), held);
  CHECK(w.Quiet());
  CHECK_EQ(MetadataValues(w.context().GetServerInitialMetadata(), "x-uapi-backend"),
           g_backend);
}

struct Test {
  const char* name;
  void (*fn)();
};

const Test kTests[] = {
    {"creates (simple, callback, conference invite)", TestCreates},
    {"GetPhoneCall with user aliases and view extension", TestGet},
    {"ListPhoneCalls paging, sort, filters, fields", TestList},
    {"HangupPhoneCalls by id, phone number, extension", TestHangup},
    {"OnHold/OffHold/StartRecording/StopRecording", TestHoldAndRecording},
    {"Park/UnPark", TestParkAndUnPark},
    {"PickUp", TestPickUp},
    {"BargeIn/Whisper/Monitor", TestBargeInWhisperMonitor},
    {"Transfer/TransferToVoicemail", TestTransfers},
    {"every RPC: user_invalid", TestUserInvalid},
    {"every RPC: extension_invalid (@self on creates)", TestExtensionInvalid},
    {"pc_phoncall_invalid INVALID_ARGUMENT: empty, not alphanumeric, 65 chars",
     TestCallIdInvalid},
    {"pc_phoncall_invalid NOT_FOUND: unknown id, other extension, other user",
     TestCallNotFound},
    {"pc_phoncallview_invalid INVALID_ARGUMENT and NOT_FOUND", TestViewInvalid},
    {"FAILED_PRECONDITION: every state rule", TestStateRules},
    {"FAILED_PRECONDITION: listening in on an unanswered call (--ring-delay)",
     TestUnansweredCall},
    {"provisional codes of the other fields", TestProvisionalCodes},
    {"RESOURCE_EXHAUSTED: engine full (--max-calls 3)", TestEngineFull},
    {"RESOURCE_EXHAUSTED: request over the 4 MiB receive limit", TestRequestTooLarge},
    {"UNIMPLEMENTED unknown methods; INTERNAL garbage to every method",
     TestUnimplementedAndGarbage},
    {"DEADLINE_EXCEEDED on a Watch", TestDeadline},
    {"cancelled Watch (TryCancel)", TestCancelledWatch},
    {"200 concurrent async calls", TestConcurrentAsync},
    {"Watch CREATED/UPDATED/ENDED", TestWatchEvents},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0]
              << " HOST:PORT [--max-calls-sidecar=HOST:PORT]"
                 " [--ring-delay-sidecar=HOST:PORT] [test-substring...]\n";
    return 2;
  }
  g_address = argv[1];
  std::vector<std::string> filters;
  for (int i = 2; i < argc; i++) {
    const std::string arg = argv[i];
    const std::string max_calls = "--max-calls-sidecar=", ring_delay = "--ring-delay-sidecar=";
    if (arg.rfind(max_calls, 0) == 0) {
      g_max_calls_address = arg.substr(max_calls.size());
    } else if (arg.rfind(ring_delay, 0) == 0) {
      g_ring_delay_address = arg.substr(ring_delay.size());
    } else {
      filters.push_back(arg);
    }
  }
  // A slowing wrapper such as valgrind; pair.sh only through the wrapper
  // it runs both sidecars in.
  auto words = [](const char* env) {
    std::istringstream in(std::getenv(env) ? std::getenv(env) : "");
    Strs out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
  };
  const Strs wrapper = words("USC_SIDECAR_WRAPPER");
  bool pair = !wrapper.empty() &&
              wrapper[0].substr(wrapper[0].rfind('/') + 1) == "pair.sh";
  if (pair ? !words("USC_PAIR_INNER_WRAPPER").empty() : !wrapper.empty()) g_slow = 4;
  const char* expect_backend = std::getenv("USC_EXPECT_BACKEND");
  if (expect_backend && *expect_backend) g_backend = {expect_backend};
  g_channel = grpc::CreateChannel(g_address, grpc::InsecureChannelCredentials());
  g_stub = pc::PhoneCallService::NewStub(g_channel);
  int passed = 0, failed = 0;
  for (const Test& t : kTests) {
    if (!filters.empty()) {
      bool match = false;
      for (const std::string& f : filters)
        match = match || std::string(t.name).find(f) != std::string::npos;
      if (!match) continue;
    }
    auto t0 = Clock::now();
    std::string error;
    try {
      t.fn();
    } catch (const Failure& f) {
      error = f.what;
    } catch (const std::exception& e) {
      error = std::string("exception: ") + e.what();
    }
    double took = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("%-5s %s (%.2fs)\n", error.empty() ? "PASS" : "FAIL", t.name, took);
    if (!error.empty()) std::printf("    %s\n", error.c_str());
    std::fflush(stdout);
    (error.empty() ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
