/* The two directions against each other: for every RPC, a request sent by
 * the client direction and read by the facade is the request that was
 * sent, and a response written by the facade and read by the client
 * direction is the response that was written. Errors too, where HTTP can
 * carry the gRPC status back. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/testutil.h"

typedef Uapi__Phonecalls__V1__PhoneCall call_t;
typedef Uapi__Phonecalls__V1__PhoneCallView view_t;

static tarena_t arena;
static tarena_t *build = &arena; /* where the test's messages are made */

static int setup(void **state) {
  (void)state;
  tarena_init(&arena);
  build = &arena;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tarena_reset(&arena);
  return 0;
}

/* request -> REST -> request; returns the RPC the facade saw. */
static int request_trip(usc_xlate_rpc_t rpc, const ProtobufCMessage *in,
                        usc_xlate_rpc_t *seen, ProtobufCMessage **out) {
  usc_xlate_request_t req;
  usc_xlate_error_t err;
  int rc = usc_xlate_request_build(rpc, in, &req, &err);
  if (rc != 0)
    return rc;
  usc_xlate_incoming_t incoming = {
      req.method,     strlen(req.method), req.target,
      req.target_len, req.body,           req.body_len,
  };
  rc = usc_xlate_facade_parse(&incoming, &arena.pb, seen, out, &err);
  if (rc == USC_ERR_INVALID)
    fail_msg("%s %s %s: %s %s", req.method, req.target,
             req.body ? req.body : "", err.code, err.message);
  usc_xlate_request_free(&req);
  return rc;
}

static void request_round_trip(usc_xlate_rpc_t rpc,
                               const ProtobufCMessage *in) {
  usc_xlate_rpc_t seen;
  ProtobufCMessage *out;
  assert_int_equal(request_trip(rpc, in, &seen, &out), 0);
  assert_int_equal(seen, rpc);
  assert_pb_eq(in, out);
}

/* ---- requests ---- */

static ProtobufCMessage *address(usc_xlate_rpc_t rpc, const char *user,
                                 const char *ext, const char *id) {
  ProtobufCMessage *m = t_request(build, rpc);
  t_set(m, "user_id", user);
  t_set(m, "extension", ext);
  if (id != NULL)
    t_set(m, "phone_call_id", id);
  return m;
}

static void test_list(void **state) {
  (void)state;
  Uapi__Phonecalls__V1__ListPhoneCallsRequest *r =
      (Uapi__Phonecalls__V1__ListPhoneCallsRequest *)address(
          USC_XLATE_LIST, "@viewer", "0003*210", NULL);
  request_round_trip(USC_XLATE_LIST, &r->base);
  r->phone_call_id = "b817d2618fe6f1804db1";
  r->count = t_i32(&arena, -5);
  request_round_trip(USC_XLATE_LIST, &r->base);
  r->count = t_i32(&arena, INT32_MAX);
  r->start_index = t_i32(&arena, INT32_MIN);
  r->filter_by = "published";
  r->filter_op = "greaterThan";
  r->filter_value = "2012-06-27T16:08:55+03:00 é &=?#%/,;\"'";
  r->sort_order = "descending";
  r->fields = t_strv(&arena, &r->n_fields, "id", "a,b", "%2C", "é", NULL);
  request_round_trip(USC_XLATE_LIST, &r->base);
}

/* A List of one call with nothing else is the very request a Get sends:
 * the facade reads it as the Get. */
static void test_list_of_one_is_get(void **state) {
  (void)state;
  ProtobufCMessage *list = address(USC_XLATE_LIST, "12", "210", "abc");
  ProtobufCMessage *get = address(USC_XLATE_GET, "12", "210", "abc");
  usc_xlate_rpc_t seen;
  ProtobufCMessage *out;
  assert_int_equal(request_trip(USC_XLATE_LIST, list, &seen, &out), 0);
  assert_int_equal(seen, USC_XLATE_GET);
  assert_pb_eq(get, out);
}

static void test_get(void **state) {
  (void)state;
  request_round_trip(USC_XLATE_GET, address(USC_XLATE_GET, "@owner", "@self",
                                            "b817d2618fe6f1804333"));
}

/* "" means "@me" and is sent as such: it comes back "@me". */
static void test_default_user(void **state) {
  (void)state;
  usc_xlate_rpc_t seen;
  ProtobufCMessage *out;
  assert_int_equal(request_trip(USC_XLATE_GET,
                                address(USC_XLATE_GET, "", "210", "abc"), &seen,
                                &out),
                   0);
  assert_pb_eq(address(USC_XLATE_GET, "@me", "210", "abc"), out);
}

static ProtobufCMessage *create(usc_xlate_rpc_t rpc, bool full) {
  Uapi__Phonecalls__V1__CreatePhoneCallRequest *r =
      (Uapi__Phonecalls__V1__CreatePhoneCallRequest *)t_request(build, rpc);
  r->user_id = "12";
  r->extension = "0003*210";
  if (!full)
    return &r->base;
  r->source = t_strv(build, &r->n_source, "5354353", "+40 21", "", NULL);
  r->destination = t_strv(build, &r->n_destination, "0003*211", NULL);
  r->caller_id = "John \"JD\" Doe <4242425> ☎";
  r->caller_destination = "Jane\\Roe <1>";
  r->nonce = "130c5a97768be67df6543b5f5fa3cc51/?#&";
  r->wait_for_pickup = t_i32(build, 0);
  r->call_duration = t_i32(build, 3600);
  r->allow_public_transfer = t_bool(build, false);
  r->video = t_bool(build, true);
  if (rpc == USC_XLATE_CREATE_CONFERENCE_INVITE) {
    r->conference_number = t_i32(build, 3);
    r->pin = "22 33&x=1";
  }
  return &r->base;
}

static void test_creates(void **state) {
  (void)state;
  for (int rpc = USC_XLATE_CREATE_SIMPLE;
       rpc <= USC_XLATE_CREATE_CONFERENCE_INVITE; rpc++) {
    request_round_trip(rpc, create(rpc, false));
    request_round_trip(rpc, create(rpc, true));
  }
}

static void test_hangup(void **state) {
  (void)state;
  ProtobufCMessage *m = address(USC_XLATE_HANGUP, "@me", "0003*210", NULL);
  request_round_trip(USC_XLATE_HANGUP, m);
  t_set(m, "phone_call_id", "7d280cc4feae3255a497");
  t_set(m, "phone_number", "+4412345");
  request_round_trip(USC_XLATE_HANGUP, m);
}

/* Every member the message has, set (`full`), or just the address. */
static ProtobufCMessage *action(usc_xlate_rpc_t rpc, bool full) {
  ProtobufCMessage *m = address(rpc, "12", "0003*210", "b817d2618fe6f1804333");
  const ProtobufCMessageDescriptor *d = m->descriptor;
  bool transfer =
      rpc == USC_XLATE_TRANSFER || rpc == USC_XLATE_TRANSFER_TO_VOICEMAIL;
  if (full || !transfer)
    t_set(m, "phone_call_view_id", "01");
  if (!full)
    return m;
  static const char *const strings[] = {"send_call_to", "caller_id", "format",
                                        "transfer_from_number",
                                        "transfer_number"};
  for (size_t i = 0; i < USC_ARRAY_LEN(strings); i++) {
    if (protobuf_c_message_descriptor_get_field_by_name(d, strings[i]))
      t_set(m, strings[i], "0003*024 \"x\" é");
  }
  if (protobuf_c_message_descriptor_get_field_by_name(d, "wait_for_pickup"))
    t_set_i32(build, m, "wait_for_pickup", 25);
  if (protobuf_c_message_descriptor_get_field_by_name(d, "max_in_parking"))
    t_set_i32(build, m, "max_in_parking", -1);
  if (protobuf_c_message_descriptor_get_field_by_name(d, "private"))
    t_set_bool(build, m, "private", false);
  return m;
}

static void test_actions(void **state) {
  (void)state;
  for (int rpc = USC_XLATE_ON_HOLD; rpc < USC_XLATE_RPC_COUNT; rpc++) {
    request_round_trip(rpc, action(rpc, false));
    request_round_trip(rpc, action(rpc, true));
  }
}

/* ---- responses ---- */

static call_t *call(const char *id, bool full) {
  call_t *c =
      (call_t *)t_new(build, &uapi__phonecalls__v1__phone_call__descriptor);
  c->id = (char *)id;
  c->extension = "0003*210";
  c->owner_id = "1";
  if (!full)
    return c;
  c->owner_name = "Default \"Organization\" é";
  c->published = t_time(build, 1340806130, 0);
  c->answered = t_time(build, -62135596800, 999999999);
  c->nonce = "n";
  c->self_link = "https://h/uapi/phoneCalls/1/0003*210/x?y#z";
  c->phone_call_views = t_alloc_views(build, 3);
  c->n_phone_call_views = 3;
  view_t *v = c->phone_call_views[0];
  v->id = "00";
  v->extension = "0003*210";
  v->source = t_strv(build, &v->n_source, "0003*211", "", NULL);
  v->destination = t_strv(build, &v->n_destination, "3334444", NULL);
  v->flow = 8;
  v->status = 100;
  v->ringing = t_time(build, 0, 0);
  v->caller_id = "John Doe <3332222>";
  v->recording = t_time(build, -1, 1000);
  v->answered = t_time(build, 1, 1000000);
  v->parked = t_time(build, 253402300799, 0);
  v->parked_pos = t_i32(build, 0);
  v->parked_by = "0003*210";
  v->on_hold = t_time(build, 951868799, 123456789);
  v->holder = t_i32(build, -7);
  v->disposition = 100;
  c->phone_call_views[1]->id = "01";
  c->phone_call_views[1]->flow = 16; /* unknown to the proto: kept */
  c->phone_call_views[1]->status = 3;
  c->phone_call_views[1]->disposition = 5;
  return c;
}

/* response -> UAPI JSON -> response, for `request`'s RPC. */
static void response_round_trip(usc_xlate_rpc_t rpc,
                                const ProtobufCMessage *in) {
  usc_xlate_reply_t reply;
  assert_int_equal(usc_xlate_facade_answer(rpc, in, &reply), 0);
  usc_xlate_answer_t a = {
      .rpc = rpc,
      .http_status = reply.status,
      .body = reply.body,
      .body_len = reply.body_len,
      .allocator = &arena.pb,
  };
  usc_xlate_result_t r;
  int rc = usc_xlate_answer_parse(&a, &r);
  if (rc != USC_XLATE_DONE)
    fail_msg("%d %s: outcome %d %s", reply.status, reply.body, rc,
             r.error.message);
  assert_pb_eq(in, r.response);
  usc_xlate_reply_free(&reply);
}

static void test_list_responses(void **state) {
  (void)state;
  Uapi__Phonecalls__V1__ListPhoneCallsResponse *l =
      (Uapi__Phonecalls__V1__ListPhoneCallsResponse *)t_new(
          &arena, &uapi__phonecalls__v1__list_phone_calls_response__descriptor);
  response_round_trip(USC_XLATE_LIST, &l->base);
  call_t *calls[] = {call("a", true), call("b", false)};
  l->phone_calls = calls;
  l->n_phone_calls = 2;
  l->total_results = 41;
  l->items_per_page = 2;
  l->start_index = 20;
  response_round_trip(USC_XLATE_LIST, &l->base);
}

static void test_call_responses(void **state) {
  (void)state;
  response_round_trip(USC_XLATE_GET, &call("a", true)->base);
  response_round_trip(USC_XLATE_GET, &call("a", false)->base);
  for (int rpc = USC_XLATE_ON_HOLD; rpc < USC_XLATE_RPC_COUNT; rpc++)
    response_round_trip(rpc, &call("b817d2618fe6f1804333", true)->base);
}

static void test_create_responses(void **state) {
  (void)state;
  Uapi__Phonecalls__V1__CreatePhoneCallResponse *c =
      (Uapi__Phonecalls__V1__CreatePhoneCallResponse *)t_new(
          &arena,
          &uapi__phonecalls__v1__create_phone_call_response__descriptor);
  response_round_trip(USC_XLATE_CREATE_SIMPLE, &c->base);
  call_t *calls[] = {call("a", true), call("b", true)};
  c->phone_calls = calls;
  c->n_phone_calls = 2;
  for (int rpc = USC_XLATE_CREATE_SIMPLE;
       rpc <= USC_XLATE_CREATE_CONFERENCE_INVITE; rpc++)
    response_round_trip(rpc, &c->base);
}

static void test_hangup_responses(void **state) {
  (void)state;
  Uapi__Phonecalls__V1__HangupPhoneCallsResponse *h =
      (Uapi__Phonecalls__V1__HangupPhoneCallsResponse *)t_new(
          &arena,
          &uapi__phonecalls__v1__hangup_phone_calls_response__descriptor);
  response_round_trip(USC_XLATE_HANGUP, &h->base);
  h->phone_call_ids = t_strv(&arena, &h->n_phone_call_ids, "a", "b", NULL);
  response_round_trip(USC_XLATE_HANGUP, &h->base);
}

/* ---- errors ---- */

static void error_round_trip(usc_xlate_rpc_t rpc, usc_grpc_status_t status,
                             const char *code) {
  usc_xlate_reply_t reply;
  assert_int_equal(
      usc_xlate_facade_error(rpc, status, code, "Said by the engine.", &reply),
      0);
  usc_xlate_answer_t a = {
      .rpc = rpc,
      .request = address(USC_XLATE_GET, "@me", "210", "abc"),
      .http_status = reply.status,
      .body = reply.body,
      .body_len = reply.body_len,
      .allocator = &arena.pb,
  };
  usc_xlate_result_t r;
  assert_int_equal(usc_xlate_answer_parse(&a, &r), USC_XLATE_FAILED);
  if (r.error.status != status)
    fail_msg("%s %s came back %s", usc_grpc_status_name(status),
             code ? code : "", usc_grpc_status_name(r.error.status));
  if (code != NULL)
    assert_string_equal(r.error.code, code);
  if (rpc != USC_XLATE_GET)
    assert_string_equal(r.error.message, "Said by the engine.");
  usc_xlate_reply_free(&reply);
}

static void test_errors(void **state) {
  (void)state;
  error_round_trip(USC_XLATE_OFF_HOLD, USC_GRPC_INVALID_ARGUMENT,
                   "user_invalid");
  error_round_trip(USC_XLATE_LIST, USC_GRPC_INVALID_ARGUMENT, "count_invalid");
  error_round_trip(USC_XLATE_OFF_HOLD, USC_GRPC_NOT_FOUND,
                   "pc_phoncall_invalid");
  error_round_trip(USC_XLATE_OFF_HOLD, USC_GRPC_NOT_FOUND,
                   "pc_phoncallview_invalid");
  error_round_trip(USC_XLATE_OFF_HOLD, USC_GRPC_NOT_FOUND, NULL);
  error_round_trip(USC_XLATE_OFF_HOLD, USC_GRPC_FAILED_PRECONDITION,
                   "pc_phonecall_state_invalid");
  error_round_trip(USC_XLATE_OFF_HOLD, USC_GRPC_FAILED_PRECONDITION, NULL);
  error_round_trip(USC_XLATE_LIST, USC_GRPC_UNAUTHENTICATED, "access_denied");
  error_round_trip(USC_XLATE_LIST, USC_GRPC_PERMISSION_DENIED, NULL);
  error_round_trip(USC_XLATE_CREATE_SIMPLE, USC_GRPC_RESOURCE_EXHAUSTED, NULL);
  error_round_trip(USC_XLATE_CREATE_SIMPLE, USC_GRPC_UNIMPLEMENTED, NULL);
  error_round_trip(USC_XLATE_CREATE_SIMPLE, USC_GRPC_UNAVAILABLE, NULL);
  error_round_trip(USC_XLATE_CREATE_SIMPLE, USC_GRPC_INTERNAL, NULL);
  /* A malformed view id is refused before anything is sent, so an
   * upstream 400 pc_phoncallview_invalid can only mean "no such view". */
  usc_xlate_reply_t reply;
  usc_xlate_facade_error(USC_XLATE_OFF_HOLD, USC_GRPC_INVALID_ARGUMENT,
                         "pc_phoncallview_invalid", "m", &reply);
  assert_int_equal(reply.status, 400);
  assert_int_equal(
      usc_xlate_status_lookup(NULL, reply.status, "pc_phoncallview_invalid"),
      USC_GRPC_NOT_FOUND);
  usc_xlate_reply_free(&reply);
  /* A GET of a call that is gone: an empty collection, and back. */
  error_round_trip(USC_XLATE_GET, USC_GRPC_NOT_FOUND, "pc_phoncall_invalid");
}

/* ---- allocation failure along the whole trip ---- */

typedef struct {
  usc_xlate_rpc_t rpc;
  ProtobufCMessage *in;
} trip_ctx_t;

static int trip_attempt(void *ctx) {
  trip_ctx_t *t = ctx;
  usc_xlate_rpc_t seen;
  ProtobufCMessage *out;
  int rc = request_trip(t->rpc, t->in, &seen, &out);
  if (rc == 0)
    assert_pb_eq(t->in, out);
  return rc;
}

static void trip_reset(void *ctx) {
  (void)ctx;
  tarena_reset(&arena);
}

static void test_alloc_failure(void **state) {
  (void)state;
  tarena_t inputs;
  tarena_init(&inputs);
  build = &inputs; /* the inputs live where the resets do not reach */
  trip_ctx_t cases[] = {
      {USC_XLATE_WHISPER, action(USC_XLATE_WHISPER, true)},
      {USC_XLATE_CREATE_CONFERENCE_INVITE,
       create(USC_XLATE_CREATE_CONFERENCE_INVITE, true)},
  };
  build = &arena;
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    size_t failures;
    assert_int_equal(
        t_exhaust(trip_attempt, trip_reset, &cases[i], 500, &failures), 0);
    assert_true(failures >= 5);
  }
  tarena_reset(&inputs);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_list),
      T(test_list_of_one_is_get),
      T(test_get),
      T(test_default_user),
      T(test_creates),
      T(test_hangup),
      T(test_actions),
      T(test_list_responses),
      T(test_call_responses),
      T(test_create_responses),
      T(test_hangup_responses),
      T(test_errors),
      T(test_alloc_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
