/* Facade direction: UAPI REST requests in (what clients send, hostile
 * paths, bad bodies), UAPI JSON out (every shape, errors), and allocation
 * failure. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/testutil.h"

typedef Uapi__Phonecalls__V1__PhoneCall call_t;
typedef Uapi__Phonecalls__V1__PhoneCallView view_t;
typedef Uapi__Phonecalls__V1__ListPhoneCallsRequest list_req_t;
typedef Uapi__Phonecalls__V1__CreatePhoneCallRequest create_req_t;

static tarena_t arena;

static int setup(void **state) {
  (void)state;
  tarena_init(&arena);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tarena_reset(&arena);
  return 0;
}

static int facade(const char *method, const char *target, const char *body,
                  usc_xlate_rpc_t *rpc, ProtobufCMessage **msg,
                  usc_xlate_error_t *err) {
  usc_xlate_incoming_t in = {method, strlen(method),
                             target, strlen(target),
                             body,   body ? strlen(body) : 0};
  return usc_xlate_facade_parse(&in, &arena.pb, rpc, msg, err);
}

/* Parses a request that must be accepted as `want`. */
static ProtobufCMessage *accept(const char *method, const char *target,
                                const char *body, usc_xlate_rpc_t want) {
  usc_xlate_rpc_t rpc;
  ProtobufCMessage *msg;
  usc_xlate_error_t err;
  int rc = facade(method, target, body, &rpc, &msg, &err);
  if (rc != 0)
    fail_msg("%s %s: rc %d %s %s", method, target, rc, err.code, err.message);
  assert_int_equal(rpc, want);
  assert_ptr_equal(msg->descriptor, usc_xlate_rpc_info(want)->request);
  return msg;
}

/* Parses a request that must be refused with `status` and `code`, and
 * checks the HTTP status the facade would answer. */
static void refuse(const char *method, const char *target, const char *body,
                   usc_grpc_status_t status, const char *code, int http) {
  usc_xlate_rpc_t rpc;
  ProtobufCMessage *msg;
  usc_xlate_error_t err;
  int rc = facade(method, target, body, &rpc, &msg, &err);
  if (rc != USC_ERR_INVALID || err.status != status ||
      strcmp(err.code, code) != 0)
    fail_msg("%s %s %s: rc %d %s %s", method, target, body ? body : "", rc,
             usc_grpc_status_name(err.status), err.code);
  assert_null(msg);
  assert_int_equal(usc_xlate_http_status_for(err.status, err.code), http);
  assert_true(strlen(err.message) > 10);
}

static const char *str(const ProtobufCMessage *m, const char *field) {
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);
  return *(const char **)((const char *)m + f->offset);
}

/* ---- paths ---- */

static void test_list_paths(void **state) {
  (void)state;
  static const char *const targets[] = {
      "/uapi/phoneCalls/@me/0003*210",
      "/uapi/phoneCalls/@me/0003*210/",
      "/uapi/phoneCalls/@me/0003%2A210",
      "/uapi/phoneCalls/%40me/0003%2a210/",
      "/uapi/phoneCall/@me/0003*210",
      "/uapi/phoneCalls/@me/0003*210?",
      "/uapi/phoneCalls/@me/0003*210#frag",
      "/uapi/phoneCalls/@me/0003*210?unknown=1&&x",
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(targets); i++) {
    ProtobufCMessage *m = accept("GET", targets[i], NULL, USC_XLATE_LIST);
    assert_string_equal(str(m, "user_id"), "@me");
    assert_string_equal(str(m, "extension"), "0003*210");
    assert_string_equal(str(m, "phone_call_id"), "");
  }
}

static void test_get_paths(void **state) {
  (void)state;
  ProtobufCMessage *m =
      accept("GET", "/uapi/phoneCall/12/0003%2A210/b817d2618fe6f1804333/?_=1",
             NULL, USC_XLATE_GET);
  assert_string_equal(str(m, "user_id"), "12");
  assert_string_equal(str(m, "extension"), "0003*210");
  assert_string_equal(str(m, "phone_call_id"), "b817d2618fe6f1804333");
  /* With a List parameter, one call's GET is a List. */
  m = accept("GET", "/uapi/phoneCalls/12/@self/abc?fields=id", NULL,
             USC_XLATE_LIST);
  assert_string_equal(str(m, "phone_call_id"), "abc");
}

static void test_list_query(void **state) {
  (void)state;
  list_req_t *r = (list_req_t *)accept(
      "GET",
      "/uapi/phoneCalls/@owner/210?count=5&startIndex=0&filterBy=published"
      "&filterOp=greaterThan&filterValue=2012-06-27T16%3A08%3A55%2B03%3A00"
      "&sortOrder=descending&fields=id,,published&fields=a%2Cb&count=7"
      "&filterValue=%C3%A9+x",
      NULL, USC_XLATE_LIST);
  assert_int_equal(r->count->value, 7); /* the last one wins */
  assert_int_equal(r->start_index->value, 0);
  assert_string_equal(r->filter_by, "published");
  assert_string_equal(r->filter_op, "greaterThan");
  assert_string_equal(r->filter_value, "\xc3\xa9+x"); /* '+' is a '+' */
  assert_string_equal(r->sort_order, "descending");
  assert_int_equal(r->n_fields, 3);
  assert_string_equal(r->fields[0], "id");
  assert_string_equal(r->fields[1], "published");
  assert_string_equal(r->fields[2], "a,b");
  r = (list_req_t *)accept(
      "GET", "/uapi/phoneCalls/@me/210?count=-3&fields=", NULL, USC_XLATE_LIST);
  assert_int_equal(r->count->value, -3); /* the engine judges the range */
  assert_int_equal(r->n_fields, 0);
}

static void test_list_query_errors(void **state) {
  (void)state;
  static const struct {
    const char *query, *code;
  } cases[] = {
      {"count=abc", "count_invalid"},
      {"count=", "count_invalid"},
      {"count=99999999999", "count_invalid"},
      {"count=1e3", "count_invalid"},
      {"startIndex=%zz", "startindex_invalid"},
      {"filterValue=%00", "filtervalue_invalid"},
      {"filterValue=%FF", "filtervalue_invalid"},
      {"filterBy=%", "filterby_invalid"},
      {"fields=id,%C3", "fields_invalid"},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    char target[128];
    snprintf(target, sizeof(target), "/uapi/phoneCalls/@me/210?%s",
             cases[i].query);
    refuse("GET", target, NULL, USC_GRPC_INVALID_ARGUMENT, cases[i].code, 400);
  }
}

static void test_hostile_paths(void **state) {
  (void)state;
  static const struct {
    const char *target, *code;
    usc_grpc_status_t status;
    int http;
  } cases[] = {
      {"/uapi/phoneCalls/../x", "user_invalid", USC_GRPC_INVALID_ARGUMENT, 400},
      {"/uapi/phoneCalls/%2E%2E/210", "user_invalid", USC_GRPC_INVALID_ARGUMENT,
       400},
      {"/uapi/phoneCalls/a%2Fb/210", "user_invalid", USC_GRPC_INVALID_ARGUMENT,
       400},
      {"/uapi/phoneCalls/%ZZ/210", "user_invalid", USC_GRPC_INVALID_ARGUMENT,
       400},
      {"/uapi/phoneCalls/@me/%2F", "extension_invalid",
       USC_GRPC_INVALID_ARGUMENT, 400},
      {"/uapi/phoneCalls/@me/210%00", "extension_invalid",
       USC_GRPC_INVALID_ARGUMENT, 400},
      {"/uapi/phoneCalls/@me/210/a%2Fb", "pc_phoncall_invalid",
       USC_GRPC_INVALID_ARGUMENT, 400},
      {"/uapi/phoneCalls/@me/210/a%3Fb", "pc_phoncall_invalid",
       USC_GRPC_INVALID_ARGUMENT, 400},
      {"/uapi/phoneCalls/@me/210/..", "pc_phoncall_invalid",
       USC_GRPC_INVALID_ARGUMENT, 400},
      {"/uapi/phoneCalls/@me/210/a/b", "resource_not_found", USC_GRPC_NOT_FOUND,
       404},
      {"/uapi/phoneCalls//210", "resource_not_found", USC_GRPC_NOT_FOUND, 404},
      {"/uapi/phoneCalls/@me//abc", "resource_not_found", USC_GRPC_NOT_FOUND,
       404},
      {"/uapi/phoneCalls/@me/210//", "resource_not_found", USC_GRPC_NOT_FOUND,
       404},
      {"/uapi/phoneCalls", "resource_not_found", USC_GRPC_NOT_FOUND, 404},
      {"/uapi/phoneCalls/", "resource_not_found", USC_GRPC_NOT_FOUND, 404},
      {"/uapi/phoneCalls/@me", "resource_not_found", USC_GRPC_NOT_FOUND, 404},
      {"/uapi/phonecalls/@me/210", "resource_not_found", USC_GRPC_NOT_FOUND,
       404},
      {"/uapi/extensions/@me/210", "resource_not_found", USC_GRPC_NOT_FOUND,
       404},
      {"", "resource_not_found", USC_GRPC_NOT_FOUND, 404},
      {"?x=/uapi/phoneCalls/@me/210", "resource_not_found", USC_GRPC_NOT_FOUND,
       404},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    refuse("GET", cases[i].target, NULL, cases[i].status, cases[i].code,
           cases[i].http);
    refuse("DELETE", cases[i].target, NULL, cases[i].status, cases[i].code,
           cases[i].http);
  }
}

static void test_methods(void **state) {
  (void)state;
  refuse("PATCH", "/uapi/phoneCalls/@me/210/abc", "{}", USC_GRPC_UNIMPLEMENTED,
         "request_not_implemented", 501);
  refuse("get", "/uapi/phoneCalls/@me/210", NULL, USC_GRPC_UNIMPLEMENTED,
         "request_not_implemented", 501);
  refuse("POST", "/uapi/phoneCalls/@me/210/abc", "{}", USC_GRPC_UNIMPLEMENTED,
         "request_not_implemented", 501);
  refuse("POST", "/uapi/phoneCalls/@me/other", "{}", USC_GRPC_NOT_FOUND,
         "resource_not_found", 404);
}

/* ---- creates ---- */

static void test_create(void **state) {
  (void)state;
  create_req_t *r = (create_req_t *)accept(
      "POST",
      "/uapi/phoneCalls/@me/simple?waitForPickUp=20&callDuration=60"
      "&allowPublicTransfer=1&video=FALSE&number=3&pin=1",
      "{\"extension\":210,\"phoneCallView\":[{\"source\":\"5354353\","
      "\"destination\":[\"5353535\",42],\"callerID\":\"John Doe <1>\","
      "\"callerDestination\":\"Jane <2>\",\"junk\":[]},{\"source\":[\"x\"]}],"
      "\"nonce\":\"n1\",\"unknown\":{\"a\":null}}",
      USC_XLATE_CREATE_SIMPLE);
  assert_string_equal(r->user_id, "@me");
  assert_string_equal(r->extension, "210");
  assert_int_equal(r->n_source, 1);
  assert_string_equal(r->source[0], "5354353");
  assert_int_equal(r->n_destination, 2);
  assert_string_equal(r->destination[1], "42");
  assert_string_equal(r->caller_id, "John Doe <1>");
  assert_string_equal(r->caller_destination, "Jane <2>");
  assert_string_equal(r->nonce, "n1");
  assert_int_equal(r->wait_for_pickup->value, 20);
  assert_int_equal(r->call_duration->value, 60);
  assert_true(r->allow_public_transfer->value);
  assert_false(r->video->value);
  assert_null(r->conference_number); /* a conference parameter */
  assert_string_equal(r->pin, "");
}

static void test_create_kinds(void **state) {
  (void)state;
  const char *body = "{\"extension\":\"212\",\"phoneCallView\":{\"source\":"
                     "[\"3334444\"],\"destination\":[\"3235742879\"]}}";
  create_req_t *r = (create_req_t *)accept(
      "POST", "/uapi/phoneCalls/12/CALLBACK/", body, USC_XLATE_CREATE_CALLBACK);
  assert_string_equal(r->destination[0], "3235742879");
  r = (create_req_t *)accept("POST",
                             "/uapi/phoneCalls/@me/conferenceInvite?number=3"
                             "&pin=2233",
                             body, USC_XLATE_CREATE_CONFERENCE_INVITE);
  assert_int_equal(r->conference_number->value, 3);
  assert_string_equal(r->pin, "2233");
  r = (create_req_t *)accept("POST", "/uapi/phoneCalls/@me/simple",
                             "{\"extension\":\"1\",\"phoneCallView\":[]}",
                             USC_XLATE_CREATE_SIMPLE);
  assert_int_equal(r->n_source, 0);
}

static void test_create_errors(void **state) {
  (void)state;
  static const struct {
    const char *body, *code;
  } cases[] = {
      {NULL, "request_invalid"},
      {"", "request_invalid"},
      {"[]", "request_invalid"},
      {"\"x\"", "request_invalid"},
      {"{\"extension\":\"210\"", "request_invalid"},
      {"{\"extension\":\"210\"} {}", "request_invalid"},
      {"{\"extension\":\"\xff\"}", "request_invalid"},
      {"{}", "extension_invalid"},
      {"{\"extension\":\"@self\"}", "extension_invalid"},
      {"{\"extension\":\"21/0\"}", "extension_invalid"},
      {"{\"extension\":{}}", "extension_invalid"},
      {"{\"extension\":\"210\",\"nonce\":[]}", "pc_nonce_invalid"},
      {"{\"extension\":\"210\",\"phoneCallView\":\"x\"}",
       "pc_phonecallview_invalid"},
      {"{\"extension\":\"210\",\"phoneCallView\":[1]}",
       "pc_phonecallview_invalid"},
      {"{\"extension\":\"210\",\"phoneCallView\":[{\"source\":{}}]}",
       "pc_source_invalid"},
      {"{\"extension\":\"210\",\"phoneCallView\":[{\"destination\":[{}]}]}",
       "pc_destination_invalid"},
      {"{\"extension\":\"210\",\"phoneCallView\":[{\"callerId\":1.5}]}",
       "pc_callerid_invalid"},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++)
    refuse("POST", "/uapi/phoneCalls/@me/simple", cases[i].body,
           USC_GRPC_INVALID_ARGUMENT, cases[i].code, 400);
  refuse("POST", "/uapi/phoneCalls/@me/simple?waitForPickup=soon",
         "{\"extension\":\"210\"}", USC_GRPC_INVALID_ARGUMENT,
         "pc_waitforpickup_invalid", 400);
  refuse("POST", "/uapi/phoneCalls/@me/simple?video=maybe",
         "{\"extension\":\"210\"}", USC_GRPC_INVALID_ARGUMENT,
         "pc_video_invalid", 400);
  refuse("POST", "/uapi/phoneCalls/@them/simple", "{\"extension\":\"210\"}",
         USC_GRPC_INVALID_ARGUMENT, "user_invalid", 400);
}

/* ---- actions ---- */

#define CALL_PATH "/uapi/phoneCalls/12/0003*210/b817d2618fe6f1804333"

static void test_seed_offhold(void **state) {
  (void)state;
  /* The seed's request, singular path and all. */
  ProtobufCMessage *m =
      accept("PUT", "/uapi/phoneCall/12/0003*210/b817d2618fe6f1804333",
             "{\n  \"action\": \"OffHold\",\n  \"phoneCallViewId\": \"01\"\n}",
             USC_XLATE_OFF_HOLD);
  assert_string_equal(str(m, "user_id"), "12");
  assert_string_equal(str(m, "extension"), "0003*210");
  assert_string_equal(str(m, "phone_call_id"), "b817d2618fe6f1804333");
  assert_string_equal(str(m, "phone_call_view_id"), "01");
}

static void test_action_members(void **state) {
  (void)state;
  Uapi__Phonecalls__V1__ParkRequest *p =
      (Uapi__Phonecalls__V1__ParkRequest *)accept(
          "PUT", CALL_PATH,
          "{\"action\":\"Park\",\"maxInParking\":\"30\","
          "\"phoneCallViewId\":\"01\",\"format\":\"ignored\"}",
          USC_XLATE_PARK);
  assert_int_equal(p->max_in_parking->value, 30);
  Uapi__Phonecalls__V1__WhisperRequest *w =
      (Uapi__Phonecalls__V1__WhisperRequest *)accept(
          "PUT", CALL_PATH,
          "{\"action\":\"Whisper\",\"sendCallTo\":\"0003*024\",\"private\":"
          "\"1\",\"callerID\":\"Whisper To Me <42420042>\",\"waitForPickUp\":"
          "\"20\",\"phoneCallViewId\":\"01\"}",
          USC_XLATE_WHISPER);
  assert_string_equal(w->send_call_to, "0003*024");
  assert_true(w->private_->value);
  assert_string_equal(w->caller_id, "Whisper To Me <42420042>");
  assert_int_equal(w->wait_for_pickup->value, 20);
  static const struct {
    const char *value;
    bool want;
  } privates[] = {{"0", false},   {"1", true},      {"\"0\"", false},
                  {"true", true}, {"false", false}, {"\"TRUE\"", true},
                  {"1.0", true}};
  for (size_t i = 0; i < USC_ARRAY_LEN(privates); i++) {
    char body[128];
    snprintf(body, sizeof(body),
             "{\"action\":\"Whisper\",\"phoneCallViewId\":\"01\","
             "\"private\":%s}",
             privates[i].value);
    w = (Uapi__Phonecalls__V1__WhisperRequest *)accept("PUT", CALL_PATH, body,
                                                       USC_XLATE_WHISPER);
    assert_int_equal(w->private_->value, privates[i].want);
  }
  Uapi__Phonecalls__V1__TransferRequest *t =
      (Uapi__Phonecalls__V1__TransferRequest *)accept(
          "PUT", CALL_PATH,
          "{\"action\":\"Transfer\",\"sendCallTo\":3334444,"
          "\"transferFromNumber\":\"0003*024\",\"transferNumber\":"
          "\"0003*210\",\"waitForPickup\":null}",
          USC_XLATE_TRANSFER);
  assert_string_equal(t->send_call_to, "3334444");
  assert_string_equal(t->phone_call_view_id, "");
  assert_string_equal(t->transfer_number, "0003*210");
}

static void test_every_action(void **state) {
  (void)state;
  for (int i = USC_XLATE_ON_HOLD; i < USC_XLATE_RPC_COUNT; i++) {
    char body[128];
    snprintf(body, sizeof(body),
             "{\"action\":\"%s\",\"phoneCallViewId\":"
             "\"00\"}",
             usc_xlate_rpc_info(i)->action);
    accept("PUT", CALL_PATH, body, i);
  }
}

static void test_action_errors(void **state) {
  (void)state;
  static const struct {
    const char *target, *body, *code;
  } cases[] = {
      {CALL_PATH, "{\"action\":\"Dance\",\"phoneCallViewId\":\"01\"}",
       "pc_action_invalid"},
      {CALL_PATH, "{\"action\":\"offhold\",\"phoneCallViewId\":\"01\"}",
       "pc_action_invalid"},
      {CALL_PATH, "{\"action\":5}", "pc_action_invalid"},
      {CALL_PATH, "{\"phoneCallViewId\":\"01\"}", "pc_action_invalid"},
      {CALL_PATH, "{\"action\":\"\"}", "pc_action_invalid"},
      {CALL_PATH,
       "{\"action\":\"PickUp\",\"sendCallTo\":\"0003*024\",\"callerId:\"John "
       "Doe <42420042>\",\"waitForPickup\":\"20\",\"phoneCallViewId\":\"01\"}",
       "request_invalid"},
      {CALL_PATH, NULL, "request_invalid"},
      {CALL_PATH, "{\"action\":\"OffHold\"}", "pc_phoncallview_invalid"},
      {CALL_PATH, "{\"action\":\"OffHold\",\"phoneCallViewId\":\"1\"}",
       "pc_phoncallview_invalid"},
      {CALL_PATH, "{\"action\":\"OffHold\",\"phoneCallViewId\":1}",
       "pc_phoncallview_invalid"},
      {CALL_PATH, "{\"action\":\"OffHold\",\"phoneCallViewId\":[]}",
       "pc_phoncallview_invalid"},
      {CALL_PATH,
       "{\"action\":\"UnPark\",\"phoneCallViewId\":\"01\",\"waitForPickup\":"
       "\"abc\"}",
       "pc_waitforpickup_invalid"},
      {CALL_PATH,
       "{\"action\":\"Whisper\",\"phoneCallViewId\":\"01\",\"private\":2}",
       "pc_private_invalid"},
      {CALL_PATH,
       "{\"action\":\"Park\",\"phoneCallViewId\":\"01\",\"maxInParking\":"
       "true}",
       "pc_maxinparking_invalid"},
      {CALL_PATH,
       "{\"action\":\"UnPark\",\"phoneCallViewId\":\"01\",\"sendCallTo\":{}}",
       "pc_sendcallto_invalid"},
      {"/uapi/phoneCalls/12/0003*210", "{\"action\":\"OffHold\"}",
       "pc_phoncall_invalid"},
      {"/uapi/phoneCalls/12/0003*210/", "not even JSON", "pc_phoncall_invalid"},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++)
    refuse("PUT", cases[i].target, cases[i].body, USC_GRPC_INVALID_ARGUMENT,
           cases[i].code, 400);
}

/* ---- hang up ---- */

static void test_hangup(void **state) {
  (void)state;
  ProtobufCMessage *m = accept("DELETE",
                               "/uapi/phoneCalls/@me/0003*210/"
                               "7d280cc4feae3255a497?phoneNumber=8887777",
                               NULL, USC_XLATE_HANGUP);
  assert_string_equal(str(m, "phone_call_id"), "7d280cc4feae3255a497");
  assert_string_equal(str(m, "phone_number"), "8887777");
  m = accept("DELETE", "/uapi/phoneCalls/@me/@self/?phoneNumber=+4412345",
             "ignored", USC_XLATE_HANGUP);
  assert_string_equal(str(m, "phone_call_id"), "");
  assert_string_equal(str(m, "phone_number"), "+4412345");
  m = accept("DELETE", "/uapi/phoneCalls/@me/210?phoneNumber=%2B1&count=x",
             NULL, USC_XLATE_HANGUP);
  assert_string_equal(str(m, "phone_number"), "+1");
}

/* ---- answers ---- */

static call_t *full_call(void) {
  call_t *c =
      (call_t *)t_new(&arena, &uapi__phonecalls__v1__phone_call__descriptor);
  c->id = "b817d2618fe6f1804333";
  c->extension = "0003*210";
  c->owner_id = "1";
  c->owner_name = "Default Organization";
  c->published = t_time(&arena, 1297350295, 0);
  c->answered = t_time(&arena, 1297350655, 5000000);
  c->nonce = "n";
  c->self_link = "/uapi/phoneCalls/1/0003*210/b817d2618fe6f1804333";
  c->phone_call_views = t_alloc_views(&arena, 2);
  c->n_phone_call_views = 2;
  view_t *v = c->phone_call_views[0];
  v->id = "00";
  v->extension = "0003*210";
  v->source = t_strv(&arena, &v->n_source, "0003*211", "0003*210", NULL);
  v->destination = t_strv(&arena, &v->n_destination, "3334444", NULL);
  v->flow = 4;
  v->status = 100;
  v->ringing = t_time(&arena, 0, 0);
  v->caller_id = "John Doe <3332222>";
  v->recording = t_time(&arena, -1, 123456000);
  v->parked = t_time(&arena, 253402300799, 999999999);
  v->parked_pos = t_i32(&arena, 0);
  v->parked_by = "0003*210";
  v->on_hold = t_time(&arena, 951868799, 1);
  v->holder = t_i32(&arena, 1);
  v->disposition = 100;
  c->phone_call_views[1]->id = "01";
  c->phone_call_views[1]->status = 5;
  c->phone_call_views[1]->disposition = 3;
  return c;
}

#define FULL_CALL_JSON                                                         \
  "{\"id\":\"b817d2618fe6f1804333\",\"extension\":\"0003*210\","               \
  "\"ownerId\":\"1\",\"ownerName\":\"Default Organization\","                  \
  "\"published\":\"2011-02-10T15:04:55Z\","                                    \
  "\"answered\":\"2011-02-10T15:10:55.005Z\",\"nonce\":\"n\","                 \
  "\"phoneCallView\":[{\"id\":\"00\",\"extension\":\"0003*210\","              \
  "\"source\":[\"0003*211\",\"0003*210\"],\"destination\":[\"3334444\"],"      \
  "\"flow\":4,\"status\":0,\"ringing\":\"1970-01-01T00:00:00Z\","              \
  "\"callerId\":\"John Doe <3332222>\","                                       \
  "\"recording\":\"1969-12-31T23:59:59.123456Z\","                             \
  "\"parked\":\"9999-12-31T23:59:59.999999999Z\",\"parkedPos\":0,"             \
  "\"parkedBy\":\"0003*210\",\"onHold\":\"2000-02-29T23:59:59.000000001Z\","   \
  "\"holder\":1,\"disposition\":0},"                                           \
  "{\"id\":\"01\",\"status\":5,\"disposition\":3}],"                           \
  "\"links\":{\"self\":\"/uapi/phoneCalls/1/0003*210/b817d2618fe6f1804333\"}}"

static void check_reply(const usc_xlate_reply_t *r, int status,
                        const char *json) {
  assert_int_equal(r->status, status);
  if (json == NULL)
    assert_null(r->body);
  else
    assert_json_eq(r->body, r->body_len, json);
}

static void answer(usc_xlate_rpc_t rpc, const void *msg, int status,
                   const char *json) {
  usc_xlate_reply_t r;
  assert_int_equal(usc_xlate_facade_answer(rpc, msg, &r), 0);
  check_reply(&r, status, json);
  usc_xlate_reply_free(&r);
}

static void test_answer_action(void **state) {
  (void)state;
  for (int i = USC_XLATE_ON_HOLD; i < USC_XLATE_RPC_COUNT; i++)
    answer(i, full_call(), 200, FULL_CALL_JSON);
  /* Nothing set: nothing written, not even null. */
  answer(USC_XLATE_OFF_HOLD,
         t_new(&arena, &uapi__phonecalls__v1__phone_call__descriptor), 200,
         "{}");
  usc_xlate_reply_t r;
  assert_int_equal(
      usc_xlate_facade_answer(USC_XLATE_OFF_HOLD, &full_call()->base, &r), 0);
  assert_null(strstr(r.body, "null"));
  assert_null(strstr(r.body, "callerID"));
  assert_null(strstr(r.body, "\\/"));
  usc_xlate_reply_free(&r);
}

static void test_answer_list_get(void **state) {
  (void)state;
  Uapi__Phonecalls__V1__ListPhoneCallsResponse *l =
      (Uapi__Phonecalls__V1__ListPhoneCallsResponse *)t_new(
          &arena, &uapi__phonecalls__v1__list_phone_calls_response__descriptor);
  answer(USC_XLATE_LIST, l, 200,
         "{\"startIndex\":0,\"itemsPerPage\":0,\"totalResults\":0,"
         "\"entry\":[]}");
  call_t *c = full_call();
  l->phone_calls = &c;
  l->n_phone_calls = 1;
  l->total_results = 41;
  l->items_per_page = 20;
  l->start_index = 20;
  answer(USC_XLATE_LIST, l, 200,
         "{\"startIndex\":20,\"itemsPerPage\":20,\"totalResults\":41,"
         "\"entry\":[" FULL_CALL_JSON "]}");
  answer(USC_XLATE_GET, c, 200,
         "{\"startIndex\":0,\"itemsPerPage\":20,\"totalResults\":1,"
         "\"entry\":[" FULL_CALL_JSON "]}");
}

static void test_answer_create_hangup(void **state) {
  (void)state;
  Uapi__Phonecalls__V1__CreatePhoneCallResponse *cr =
      (Uapi__Phonecalls__V1__CreatePhoneCallResponse *)t_new(
          &arena,
          &uapi__phonecalls__v1__create_phone_call_response__descriptor);
  call_t *c = full_call();
  cr->phone_calls = &c;
  cr->n_phone_calls = 1;
  answer(USC_XLATE_CREATE_SIMPLE, cr, 200, "[" FULL_CALL_JSON "]");
  Uapi__Phonecalls__V1__HangupPhoneCallsResponse *h =
      (Uapi__Phonecalls__V1__HangupPhoneCallsResponse *)t_new(
          &arena,
          &uapi__phonecalls__v1__hangup_phone_calls_response__descriptor);
  answer(USC_XLATE_HANGUP, h, 204, NULL);
  h->phone_call_ids = t_strv(&arena, &h->n_phone_call_ids, "a", "b", NULL);
  answer(USC_XLATE_HANGUP, h, 200, "[{\"id\":\"a\"},{\"id\":\"b\"}]");
}

static void test_answer_refused(void **state) {
  (void)state;
  usc_xlate_reply_t r;
  call_t *c = full_call();
  assert_int_equal(usc_xlate_facade_answer(USC_XLATE_LIST, &c->base, &r),
                   USC_ERR_INVALID);
  assert_int_equal(usc_xlate_facade_answer(USC_XLATE_OFF_HOLD, NULL, &r),
                   USC_ERR_INVALID);
  assert_int_equal(usc_xlate_facade_answer(USC_XLATE_RPC_COUNT, &c->base, &r),
                   USC_ERR_INVALID);
  static const struct {
    int64_t sec;
    int32_t nanos;
  } bad[] = {{253402300800, 0}, {-62135596801, 0}, {0, -1}, {0, 1000000000}};
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    c->phone_call_views[1]->ringing = t_time(&arena, bad[i].sec, bad[i].nanos);
    assert_int_equal(usc_xlate_facade_answer(USC_XLATE_PARK, &c->base, &r),
                     USC_ERR_INVALID);
    assert_null(r.body);
  }
  c->phone_call_views[1]->ringing = t_time(&arena, -62135596800, 0);
  assert_int_equal(usc_xlate_facade_answer(USC_XLATE_PARK, &c->base, &r), 0);
  assert_non_null(strstr(r.body, "\"0001-01-01T00:00:00Z\""));
  usc_xlate_reply_free(&r);
}

/* JSON text is UTF-8: a string that is not (which protobuf-c lets through
 * when unpacking) cannot be written, wherever it sits in the message. */
static void test_answer_not_utf8(void **state) {
  (void)state;
  usc_xlate_reply_t r;
  call_t *c = full_call();
  assert_true(usc_xlate_message_utf8_ok(&c->base));
  c->phone_call_views[0]->destination[0] = "0003*21\xc6";
  assert_false(usc_xlate_message_utf8_ok(&c->base));
  assert_int_equal(usc_xlate_facade_answer(USC_XLATE_PARK, &c->base, &r),
                   USC_ERR_INVALID);
  assert_null(r.body);
  Uapi__Phonecalls__V1__ListPhoneCallsResponse *l =
      (Uapi__Phonecalls__V1__ListPhoneCallsResponse *)t_new(
          &arena, &uapi__phonecalls__v1__list_phone_calls_response__descriptor);
  l->phone_calls = &c;
  l->n_phone_calls = 1;
  assert_int_equal(usc_xlate_facade_answer(USC_XLATE_LIST, &l->base, &r),
                   USC_ERR_INVALID);
  c->phone_call_views[0]->destination[0] = "3334444";
  c->owner_name = "\xed\xa0\x80"; /* a surrogate */
  assert_int_equal(usc_xlate_facade_answer(USC_XLATE_PARK, &c->base, &r),
                   USC_ERR_INVALID);
  c->owner_name = "Societ\xc3\xa9 \xf0\x9f\x93\x9e";
  assert_int_equal(usc_xlate_facade_answer(USC_XLATE_PARK, &c->base, &r), 0);
  usc_xlate_reply_free(&r);
}

/* ---- errors ---- */

static void error_reply(usc_xlate_rpc_t rpc, usc_grpc_status_t status,
                        const char *code, const char *message, int http,
                        const char *json) {
  usc_xlate_reply_t r;
  assert_int_equal(usc_xlate_facade_error(rpc, status, code, message, &r), 0);
  check_reply(&r, http, json);
  usc_xlate_reply_free(&r);
}

static void test_errors(void **state) {
  (void)state;
  error_reply(USC_XLATE_OFF_HOLD, USC_GRPC_INVALID_ARGUMENT, "user_invalid",
              "bad user", 400,
              "{\"error\":{\"code\":\"user_invalid\",\"message\":\"bad "
              "user\"}}");
  error_reply(USC_XLATE_OFF_HOLD, USC_GRPC_NOT_FOUND, "pc_phoncall_invalid",
              "no such call", 400,
              "{\"error\":{\"code\":\"pc_phoncall_invalid\",\"message\":\"no "
              "such call\"}}");
  error_reply(USC_XLATE_OFF_HOLD, USC_GRPC_FAILED_PRECONDITION,
              "pc_phonecall_state_invalid", "not on hold", 400,
              "{\"error\":{\"code\":\"pc_phonecall_state_invalid\","
              "\"message\":\"not on hold\"}}");
  error_reply(USC_XLATE_RPC_NONE, USC_GRPC_NOT_FOUND, NULL, NULL, 404,
              "{\"error\":{\"code\":\"resource_not_found\",\"message\":"
              "\"NOT_FOUND\"}}");
  error_reply(USC_XLATE_LIST, USC_GRPC_UNAUTHENTICATED, "", "", 401,
              "{\"error\":{\"code\":\"access_denied\",\"message\":"
              "\"UNAUTHENTICATED\"}}");
  error_reply(USC_XLATE_LIST, USC_GRPC_RESOURCE_EXHAUSTED, NULL, "full", 429,
              "{\"error\":{\"code\":\"limit_exceeded\",\"message\":\"full\"}}");
  error_reply(USC_XLATE_LIST, USC_GRPC_UNIMPLEMENTED, NULL, "x", 501,
              "{\"error\":{\"code\":\"request_not_implemented\",\"message\":"
              "\"x\"}}");
  error_reply(USC_XLATE_LIST, USC_GRPC_INTERNAL, NULL, "\"quoted\"", 500,
              "{\"error\":{\"code\":\"internal_server_error\",\"message\":"
              "\"\\\"quoted\\\"\"}}");
  error_reply(USC_XLATE_HANGUP, USC_GRPC_NOT_FOUND, "pc_phoncall_invalid",
              "gone", 400,
              "{\"error\":{\"code\":\"pc_phoncall_invalid\",\"message\":"
              "\"gone\"}}");
  /* A GET of a call that is gone answers an empty collection, as UAPI. */
  error_reply(USC_XLATE_GET, USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", "gone",
              200,
              "{\"startIndex\":0,\"itemsPerPage\":20,\"totalResults\":0,"
              "\"entry\":[]}");
  error_reply(USC_XLATE_GET, USC_GRPC_INVALID_ARGUMENT, "pc_phoncall_invalid",
              "bad id", 400,
              "{\"error\":{\"code\":\"pc_phoncall_invalid\",\"message\":"
              "\"bad id\"}}");
  usc_xlate_reply_t r;
  assert_int_equal(
      usc_xlate_facade_error(USC_XLATE_LIST, USC_GRPC_OK, NULL, NULL, &r),
      USC_ERR_INVALID);
  assert_null(r.body);
}

/* A refused request renders as the error the facade answers. */
static void test_parse_error_renders(void **state) {
  (void)state;
  usc_xlate_rpc_t rpc;
  ProtobufCMessage *msg;
  usc_xlate_error_t err;
  assert_int_equal(facade("PUT", CALL_PATH, "{", &rpc, &msg, &err),
                   USC_ERR_INVALID);
  usc_xlate_reply_t r;
  assert_int_equal(usc_xlate_facade_error(USC_XLATE_RPC_NONE, err.status,
                                          err.code, err.message, &r),
                   0);
  assert_int_equal(r.status, 400);
  assert_non_null(strstr(r.body, "\"code\":\"request_invalid\""));
  usc_xlate_reply_free(&r);
}

/* ---- allocation failure ---- */

typedef struct {
  const char *method, *target, *body;
} parse_ctx_t;

static int parse_attempt(void *ctx) {
  parse_ctx_t *p = ctx;
  usc_xlate_rpc_t rpc;
  ProtobufCMessage *msg;
  usc_xlate_error_t err;
  int rc = facade(p->method, p->target, p->body, &rpc, &msg, &err);
  if (rc == USC_ERR_NOMEM)
    assert_int_equal(err.status, USC_GRPC_RESOURCE_EXHAUSTED);
  return rc;
}

static void reset_arena(void *ctx) {
  (void)ctx;
  tarena_reset(&arena);
}

static int answer_attempt(void *ctx) {
  usc_xlate_reply_t r;
  int rc = usc_xlate_facade_answer(USC_XLATE_PARK, ctx, &r);
  usc_xlate_reply_free(&r);
  return rc;
}

static int error_attempt(void *ctx) {
  (void)ctx;
  usc_xlate_reply_t r;
  int rc = usc_xlate_facade_error(USC_XLATE_PARK, USC_GRPC_NOT_FOUND,
                                  "pc_phoncall_invalid", "gone", &r);
  usc_xlate_reply_free(&r);
  return rc;
}

static void no_reset(void *ctx) { (void)ctx; }

static void test_alloc_failure(void **state) {
  (void)state;
  parse_ctx_t cases[] = {
      {"GET", "/uapi/phoneCalls/@me/210/abc?fields=id,nonce&count=2", NULL},
      {"POST", "/uapi/phoneCalls/@me/conferenceInvite?number=1&pin=2",
       "{\"extension\":\"210\",\"phoneCallView\":[{\"source\":[\"1\",\"2\"],"
       "\"destination\":\"3\",\"callerId\":\"c\"}],\"nonce\":\"n\"}"},
      {"PUT", CALL_PATH,
       "{\"action\":\"Whisper\",\"phoneCallViewId\":\"01\",\"private\":1,"
       "\"waitForPickup\":5,\"sendCallTo\":\"1\"}"},
      {"DELETE", "/uapi/phoneCalls/@me/210?phoneNumber=1", NULL},
  };
  size_t failures;
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    assert_int_equal(
        t_exhaust(parse_attempt, reset_arena, &cases[i], 200, &failures), 0);
    assert_true(failures >= 3);
    tarena_reset(&arena);
  }
  call_t *c = full_call();
  assert_int_equal(t_exhaust(answer_attempt, no_reset, c, 10, &failures), 0);
  assert_int_equal(failures, 1); /* the text copy; json-c's are not hooked */
  assert_int_equal(t_exhaust(error_attempt, no_reset, NULL, 10, &failures), 0);
  assert_int_equal(failures, 1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_list_paths),
      T(test_get_paths),
      T(test_list_query),
      T(test_list_query_errors),
      T(test_hostile_paths),
      T(test_methods),
      T(test_create),
      T(test_create_kinds),
      T(test_create_errors),
      T(test_seed_offhold),
      T(test_action_members),
      T(test_every_action),
      T(test_action_errors),
      T(test_hangup),
      T(test_answer_action),
      T(test_answer_list_get),
      T(test_answer_create_hangup),
      T(test_answer_refused),
      T(test_answer_not_utf8),
      T(test_errors),
      T(test_parse_error_renders),
      T(test_alloc_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
