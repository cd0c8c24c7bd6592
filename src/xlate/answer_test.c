/* Client direction, answer: every shape UAPI answers in, the seed's own
 * exchange, partial updates and the path to fetch, wrong JSON, upstream
 * errors, and allocation failure. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/testutil.h"

typedef Uapi__Phonecalls__V1__PhoneCall call_t;
typedef Uapi__Phonecalls__V1__PhoneCallView view_t;
typedef Uapi__Phonecalls__V1__ListPhoneCallsResponse list_t;
typedef Uapi__Phonecalls__V1__CreatePhoneCallResponse create_t;
typedef Uapi__Phonecalls__V1__HangupPhoneCallsResponse hangup_t;

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

/* The request the answers below answer. */
static ProtobufCMessage *request_in(tarena_t *a, usc_xlate_rpc_t rpc) {
  ProtobufCMessage *m = t_request(a, rpc);
  t_set(m, "extension", "0003*210");
  if (rpc == USC_XLATE_GET || usc_xlate_rpc_is_action(rpc))
    t_set(m, "phone_call_id", "b817d2618fe6f1804333");
  if (usc_xlate_rpc_is_action(rpc))
    t_set(m, "phone_call_view_id", "01");
  return m;
}

static ProtobufCMessage *request(usc_xlate_rpc_t rpc) {
  return request_in(&arena, rpc);
}

static int parse_with(usc_xlate_rpc_t rpc, const ProtobufCMessage *req,
                      int status, const char *body,
                      const usc_xlate_status_map_t *map,
                      usc_xlate_result_t *r) {
  usc_xlate_answer_t a = {
      .rpc = rpc,
      .request = req,
      .http_status = status,
      .body = body,
      .body_len = body ? strlen(body) : 0,
      .map = map,
      .allocator = &arena.pb,
  };
  return usc_xlate_answer_parse(&a, r);
}

static int parse(usc_xlate_rpc_t rpc, int status, const char *body,
                 usc_xlate_result_t *r) {
  return parse_with(rpc, request(rpc), status, body, NULL, r);
}

/* Parses an answer that must succeed. */
static const void *done(usc_xlate_rpc_t rpc, int status, const char *body) {
  static usc_xlate_result_t r;
  int rc = parse(rpc, status, body, &r);
  if (rc != USC_XLATE_DONE)
    fail_msg("outcome %d: %s", rc, r.error.message);
  assert_ptr_equal(r.response->descriptor, usc_xlate_rpc_info(rpc)->response);
  return r.response;
}

/* Parses a 2xx answer that the upstream got wrong. */
static void not_expected(usc_xlate_rpc_t rpc, const char *body) {
  usc_xlate_result_t r;
  int rc = parse(rpc, 200, body, &r);
  if (rc != USC_XLATE_FAILED)
    fail_msg("outcome %d for %s", rc, body);
  assert_int_equal(r.error.status, USC_GRPC_INTERNAL);
  assert_null(r.response);
  assert_int_equal(r.error.http_status, 200);
  if (strncmp(r.error.message,
              "upstream answered HTTP 200 but not the JSON expected: ", 54) !=
      0)
    fail_msg("message: %s", r.error.message);
}

/* ---- the seed's own exchange ---- */

#define SEED_LINK                                                              \
  "https://x.x.x.x/uapi/phoneCalls/12/0003*210/b817d2618fe6f1804333"

static const char seed_partial[] =
    "{\n  \"id\": \"b817d2618fe6f1804333\",\n  \"extension\": \"0003*210\",\n"
    "  \"link\": { \"self\": \"" SEED_LINK "\" }\n}";

/* The seed's List answer, with the comma the page lost before "link". */
static const char seed_call[] =
    "{ \"id\": \"b817d2618fe6f1804333\",\n"
    "  \"extension\": \"0003*210\",\n"
    "  \"ownerId\": \"3\",\n"
    "  \"ownerName\": \"Default Organization\",\n"
    "  \"answered\": \"2012-06-27T16:08:55+03:00\",\n"
    "  \"published\": \"2012-06-27T16:08:50+02:00\",\n"
    "  \"phoneCallView\": [\n"
    "    {\n"
    "      \"id\": \"01\",\n"
    "      \"extension\": \"0003*210\",\n"
    "      \"answered\": \"2012-06-27T16:08:55+03:00\",\n"
    "      \"status\": \"5\",\n"
    "      \"callerId\": \"John Doe <3334444>\",\n"
    "      \"source\": [ \"0003*024\" ],\n"
    "      \"destination\": [ \"0003*210\" ]\n"
    "    }\n"
    "  ],\n"
    "  \"link\": { \"self\": \"" SEED_LINK "\" }\n"
    "}";

static void check_seed_call(const call_t *c) {
  assert_string_equal(c->id, "b817d2618fe6f1804333");
  assert_string_equal(c->extension, "0003*210");
  assert_string_equal(c->owner_id, "3");
  assert_string_equal(c->owner_name, "Default Organization");
  assert_int_equal(c->answered->seconds, 1340802535);
  assert_int_equal(c->published->seconds, 1340806130);
  assert_int_equal(c->published->nanos, 0);
  assert_string_equal(c->nonce, "");
  assert_string_equal(c->self_link, SEED_LINK);
  assert_int_equal(c->n_phone_call_views, 1);
  const view_t *v = c->phone_call_views[0];
  assert_string_equal(v->id, "01");
  assert_string_equal(v->extension, "0003*210");
  assert_int_equal(v->answered->seconds, 1340802535);
  assert_int_equal(v->status, 5);
  assert_int_equal(v->flow, 0);
  assert_int_equal(v->disposition, 0);
  assert_string_equal(v->caller_id, "John Doe <3334444>");
  assert_int_equal(v->n_source, 1);
  assert_string_equal(v->source[0], "0003*024");
  assert_int_equal(v->n_destination, 1);
  assert_string_equal(v->destination[0], "0003*210");
  assert_null(v->ringing);
  assert_null(v->recording);
  assert_null(v->parked);
  assert_null(v->parked_pos);
  assert_null(v->holder);
  assert_null(v->on_hold);
  assert_string_equal(v->parked_by, "");
}

static void test_seed_exchange(void **state) {
  (void)state;
  usc_xlate_result_t r;
  ProtobufCMessage *req = request(USC_XLATE_OFF_HOLD);
  t_set(req, "user_id", "@me");
  assert_int_equal(
      parse_with(USC_XLATE_OFF_HOLD, req, 202, seed_partial, NULL, &r),
      USC_XLATE_FETCH);
  assert_null(r.response);
  assert_string_equal(r.fetch_path,
                      "/uapi/phoneCalls/12/0003*210/b817d2618fe6f1804333");
  /* The fetch: a GET of the call, answered by the seed's List output. */
  assert_int_equal(parse_with(USC_XLATE_GET, req, 200, seed_call, NULL, &r),
                   USC_XLATE_DONE);
  check_seed_call((const call_t *)r.response);
}

/* As printed on the page, the List answer lacks a comma: not JSON. */
static void test_seed_verbatim_is_not_json(void **state) {
  (void)state;
  char broken[sizeof(seed_call)];
  snprintf(broken, sizeof(broken), "%s", seed_call);
  char *comma = strstr(broken, "],\n  \"link\"");
  comma[1] = ' ';
  not_expected(USC_XLATE_GET, broken);
}

/* ---- partial updates ---- */

typedef struct {
  const char *body;
  const char *path; /* the fetch path expected */
} fetch_case_t;

#define FALLBACK "/uapi/phoneCalls/@me/0003*210/b817d2618fe6f1804333"

static const fetch_case_t fetch_cases[] = {
    {"", FALLBACK},
    {"  \n", FALLBACK},
    {"null", FALLBACK},
    {"[]", FALLBACK},
    {"{}", FALLBACK},
    {"{\"entry\":[]}", FALLBACK},
    {"{\"id\":\"b817d2618fe6f1804333\"}", FALLBACK},
    {"[{\"id\":\"b817d2618fe6f1804333\",\"extension\":\"0003*210\"}]",
     FALLBACK},
    {"{\"links\":{\"self\":\"https://evil.example:8443/uapi/phoneCalls/12/"
     "210/abc?x=1#frag\"}}",
     "/uapi/phoneCalls/12/210/abc"},
    {"{\"link\":{\"self\":\"//evil.example/uapi/phoneCalls/@owner/@self/"
     "abc\"}}",
     "/uapi/phoneCalls/@owner/@self/abc"},
    {"{\"link\":{\"self\":\"/uapi/phoneCalls/12/0003%2A210/abc/\"}}",
     "/uapi/phoneCalls/12/0003*210/abc"},
    {"{\"links\":\"http://h/uapi/phoneCalls/12/210/abc\"}",
     "/uapi/phoneCalls/12/210/abc"},
    {"{\"link\":{\"self\":\"https://h/uapi/phoneCalls/12/210/../../x\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":\"https://h/uapi/phoneCalls/12/210/a%2Fb\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":\"https://h/uapi/phoneCalls/12/210/a%2\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":\"https://h/uapi/phoneCalls/12/210\"}}", FALLBACK},
    {"{\"link\":{\"self\":\"https://h/uapi/phoneCalls/12/210/a/b\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":\"https://h/uapi/phoneCall/12/210/abc\"}}", FALLBACK},
    {"{\"link\":{\"self\":\"https://h/admin/delete?all\"}}", FALLBACK},
    {"{\"link\":{\"self\":\"uapi/phoneCalls/12/210/abc\"}}", FALLBACK},
    {"{\"link\":{\"self\":\"h.example/uapi/phoneCalls/12/210/abc\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":\"javascript:/uapi/phoneCalls/12/210/abc\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":\"https://h?/uapi/phoneCalls/12/210/abc\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":\"https://h/uapi/phoneCalls/1 2/210/abc\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":\"https://h/uapi/phoneCalls/12/210/abc%00\"}}",
     FALLBACK},
    {"{\"link\":{\"self\":42}}", FALLBACK},
    {"{\"link\":{}}", FALLBACK},
};

static void test_partial_fetch(void **state) {
  (void)state;
  for (size_t i = 0; i < USC_ARRAY_LEN(fetch_cases); i++) {
    for (int status = 200; status <= 204; status += 2) {
      usc_xlate_result_t r;
      int rc = parse(USC_XLATE_ON_HOLD, status, fetch_cases[i].body, &r);
      if (rc != USC_XLATE_FETCH || strcmp(r.fetch_path, fetch_cases[i].path))
        fail_msg("case %zu (%s): outcome %d path %s %s", i, fetch_cases[i].body,
                 rc, r.fetch_path, r.error.message);
    }
  }
}

/* With no request to fall back on, a bad link is the upstream's fault. */
static void test_partial_without_fallback(void **state) {
  (void)state;
  usc_xlate_result_t r;
  assert_int_equal(parse_with(USC_XLATE_OFF_HOLD, NULL, 204, NULL, NULL, &r),
                   USC_XLATE_FAILED);
  assert_int_equal(r.error.status, USC_GRPC_INTERNAL);
  assert_int_equal(
      parse_with(USC_XLATE_OFF_HOLD, NULL, 202, seed_partial, NULL, &r),
      USC_XLATE_FETCH);
  assert_string_equal(r.fetch_path,
                      "/uapi/phoneCalls/12/0003*210/b817d2618fe6f1804333");
}

/* ---- full answers to actions ---- */

static void test_action_shapes(void **state) {
  (void)state;
  char body[4096];
  const char *shapes[] = {"%s", "[%s]", "{\"entry\":[%s]}",
                          "{\"entry\":%s,\"totalResults\":\"1\"}"};
  for (size_t i = 0; i < USC_ARRAY_LEN(shapes); i++) {
    snprintf(body, sizeof(body), shapes[i], seed_call);
    for (int status = 200; status <= 202; status++)
      check_seed_call(done(USC_XLATE_OFF_HOLD, status, body));
  }
}

/* Park's page answers an array: the call asked for is picked out of it. */
static void test_action_picks_its_call(void **state) {
  (void)state;
  char body[4096];
  snprintf(body, sizeof(body), "[{\"id\":\"other\",\"nonce\":\"x\"},%s]",
           seed_call);
  check_seed_call(done(USC_XLATE_PARK, 200, body));
  const call_t *c = done(USC_XLATE_PARK, 200,
                         "[{\"id\":\"x1\",\"nonce\":\"a\"},"
                         "{\"id\":\"x2\",\"nonce\":\"b\"}]");
  assert_string_equal(c->id, "x1"); /* none matches: the first */
}

/* ---- UAPI's quirks ---- */

static void test_quirks(void **state) {
  (void)state;
  const call_t *c = done(
      USC_XLATE_GET, 200,
      "{\"id\":\"b817d2618fe6f1804333\",\"ownerId\":3,\"nonce\":\"n\","
      "\"published\":\"2011-02-10T15:04:55Z\",\"unknown\":{\"deep\":[1,{}]},"
      "\"links\":{\"self\":\"...\",\"other\":1},\"link\":{\"self\":\"no\"},"
      "\"phoneCallView\":[{\"id\":\"00\",\"callerID\":\"John Doe "
      "<3332222>\",\"flow\":4,\"status\":0,\"disposition\":\"0\","
      "\"parkedPos\":\"3\",\"holder\":1,\"parkedBy\":\"0003*211\","
      "\"onHold\":\"2011-02-10T15:10:55.5Z\",\"parked\":\"2011-02-10t15:10:55"
      ".123456789123-00:30\",\"ringing\":\"2011-02-10 15:10:55\","
      "\"recording\":\"2011-02-10T15:10:55+0100\",\"source\":\"0003*211\","
      "\"destination\":[3334444,\"x\"],\"whatever\":null,\"answered\":null},"
      "{\"id\":\"01\",\"callerId\":\"A\",\"callerID\":\"B\",\"status\":\"\","
      "\"disposition\":2,\"flow\":\"8\",\"parkedPos\":0}]}");
  assert_string_equal(c->owner_id, "3");
  assert_string_equal(c->self_link, "...");
  assert_int_equal(c->published->seconds, 1297350295);
  assert_null(c->answered);
  assert_int_equal(c->n_phone_call_views, 2);
  const view_t *v = c->phone_call_views[0];
  assert_string_equal(v->caller_id, "John Doe <3332222>");
  assert_int_equal(v->flow, 4);
  assert_int_equal(v->status, 100);      /* UAPI 0: unknown */
  assert_int_equal(v->disposition, 100); /* UAPI 0: answered */
  assert_int_equal(v->parked_pos->value, 3);
  assert_int_equal(v->holder->value, 1);
  assert_string_equal(v->parked_by, "0003*211");
  assert_int_equal(v->on_hold->seconds, 1297350655);
  assert_int_equal(v->on_hold->nanos, 500000000);
  assert_int_equal(v->parked->seconds, 1297350655 + 1800);
  assert_int_equal(v->parked->nanos, 123456789);
  assert_int_equal(v->ringing->seconds, 1297350655);
  assert_int_equal(v->recording->seconds, 1297350655 - 3600);
  assert_null(v->answered);
  assert_int_equal(v->n_source, 1);
  assert_string_equal(v->source[0], "0003*211");
  assert_int_equal(v->n_destination, 2);
  assert_string_equal(v->destination[0], "3334444");
  v = c->phone_call_views[1];
  assert_string_equal(v->caller_id, "A"); /* callerId first */
  assert_int_equal(v->status, 0);         /* "" is not given */
  assert_int_equal(v->disposition, 2);
  assert_int_equal(v->flow, 8);
  assert_int_equal(v->parked_pos->value, 0); /* given as 0: present */
  assert_null(v->holder);
}

static void test_bare_view_and_link_string(void **state) {
  (void)state;
  const call_t *c = done(USC_XLATE_GET, 200,
                         "{\"id\":\"a\",\"phoneCallView\":{\"id\":\"00\"},"
                         "\"link\":\"https://h/uapi/phoneCalls/1/2/a\"}");
  assert_int_equal(c->n_phone_call_views, 1);
  assert_string_equal(c->phone_call_views[0]->id, "00");
  assert_string_equal(c->self_link, "https://h/uapi/phoneCalls/1/2/a");
}

/* ---- the other RPCs ---- */

static void test_list_collection(void **state) {
  (void)state;
  const list_t *l =
      done(USC_XLATE_LIST, 200,
           "{\"startIndex\":\"20\",\"itemsPerPage\":\"2\",\"totalResults\":"
           "\"41\",\"entry\":[{\"id\":\"a\"},{\"id\":\"b\"}],\"paging\":{"
           "\"next\":\"https://h/uapi/phoneCalls/@me/210/?startIndex=22\"}}");
  assert_int_equal(l->n_phone_calls, 2);
  assert_string_equal(l->phone_calls[1]->id, "b");
  assert_int_equal(l->total_results, 41);
  assert_int_equal(l->items_per_page, 2);
  assert_int_equal(l->start_index, 20);
}

static void test_list_shapes(void **state) {
  (void)state;
  const list_t *l = done(USC_XLATE_LIST, 200, "[{\"id\":\"a\"},{}]");
  assert_int_equal(l->n_phone_calls, 2);
  assert_int_equal(l->total_results, 2);
  assert_int_equal(l->items_per_page, 0);
  l = done(USC_XLATE_LIST, 200, "{\"id\":\"a\"}");
  assert_int_equal(l->n_phone_calls, 1);
  assert_int_equal(l->total_results, 1);
  l = done(USC_XLATE_LIST, 204, NULL);
  assert_int_equal(l->n_phone_calls, 0);
  assert_int_equal(l->total_results, 0);
  l = done(USC_XLATE_LIST, 200, "{\"totalResults\":0,\"itemsPerPage\":20}");
  assert_int_equal(l->n_phone_calls, 0);
  assert_int_equal(l->items_per_page, 20);
  l = done(USC_XLATE_LIST, 200, "{\"entry\":{\"id\":\"a\"}}");
  assert_int_equal(l->n_phone_calls, 1);
  l = done(USC_XLATE_LIST, 200, "{\"entry\":[],\"totalResults\":3.0}");
  assert_int_equal(l->total_results, 3);
}

static void test_get_gone(void **state) {
  (void)state;
  const char *bodies[] = {NULL, "[]", "{\"entry\":[],\"totalResults\":0}",
                          "{\"totalResults\":\"0\"}", "null"};
  for (size_t i = 0; i < USC_ARRAY_LEN(bodies); i++) {
    for (int status = 200; status <= 204; status += 4) {
      usc_xlate_result_t r;
      assert_int_equal(parse(USC_XLATE_GET, status, bodies[i], &r),
                       USC_XLATE_FAILED);
      assert_int_equal(r.error.status, USC_GRPC_NOT_FOUND);
      assert_string_equal(r.error.code, "pc_phoncall_invalid");
      assert_non_null(strstr(r.error.message, "b817d2618fe6f1804333"));
    }
  }
}

static void test_create_shapes(void **state) {
  (void)state;
  const create_t *c = done(USC_XLATE_CREATE_SIMPLE, 200,
                           "[{\"id\":\"a\",\"extension\":\"210\"}]");
  assert_int_equal(c->n_phone_calls, 1);
  assert_string_equal(c->phone_calls[0]->extension, "210");
  c = done(USC_XLATE_CREATE_CALLBACK, 201, "{\"id\":\"a\"}");
  assert_int_equal(c->n_phone_calls, 1);
  c = done(USC_XLATE_CREATE_CONFERENCE_INVITE, 204, "");
  assert_int_equal(c->n_phone_calls, 0);
  c = done(USC_XLATE_CREATE_SIMPLE, 200, "[{\"id\":\"a\"},{\"id\":\"b\"}]");
  assert_int_equal(c->n_phone_calls, 2);
}

static void test_hangup_shapes(void **state) {
  (void)state;
  const hangup_t *h =
      done(USC_XLATE_HANGUP, 200, "[{\"id\":\"a\"},{\"id\":\"b\"}]");
  assert_int_equal(h->n_phone_call_ids, 2);
  assert_string_equal(h->phone_call_ids[1], "b");
  char body[4096];
  snprintf(body, sizeof(body), "[%s]", seed_call);
  h = done(USC_XLATE_HANGUP, 200, body);
  assert_int_equal(h->n_phone_call_ids, 1);
  assert_string_equal(h->phone_call_ids[0], "b817d2618fe6f1804333");
  h = done(USC_XLATE_HANGUP, 200, "[\"a\",7]");
  assert_string_equal(h->phone_call_ids[1], "7");
  h = done(USC_XLATE_HANGUP, 200, "{\"id\":\"x\"}");
  assert_int_equal(h->n_phone_call_ids, 1);
  h = done(USC_XLATE_HANGUP, 204, NULL);
  assert_int_equal(h->n_phone_call_ids, 0);
  h = done(USC_XLATE_HANGUP, 200, "{\"entry\":[{\"id\":\"c\"}]}");
  assert_string_equal(h->phone_call_ids[0], "c");
  not_expected(USC_XLATE_HANGUP, "[{\"x\":1}]");
  not_expected(USC_XLATE_HANGUP, "[{\"id\":{}}]");
  not_expected(USC_XLATE_HANGUP, "[true]");
  not_expected(USC_XLATE_HANGUP, "\"a\"");
}

/* ---- wrong JSON: always an error, never a crash ---- */

static void test_wrong_json(void **state) {
  (void)state;
  static const char *const bodies[] = {
      "{",
      "{\"id\":\"a\"} x",
      "{\"id\":\"a\"}{}",
      "\"just a string\"",
      "42",
      "true",
      "{\"id\":{}}",
      "{\"id\":[\"a\"]}",
      "{\"id\":1.5}",
      "{\"id\":\"a\\u0000b\"}",
      "{\"id\":\"\xff\"}",
      "{\"published\":\"yesterday\"}",
      "{\"published\":12345}",
      "{\"published\":\"2012-13-01T00:00:00Z\"}",
      "{\"published\":\"2012-02-30T00:00:00Z\"}",
      "{\"published\":\"2012-06-27T24:00:00Z\"}",
      "{\"published\":\"2012-06-27T16:08:55+24:00\"}",
      "{\"published\":\"2012-06-27T16:08:55.Z\"}",
      "{\"published\":\"2012-06-27T16:08:55Zjunk\"}",
      "{\"published\":\"0001-01-01T00:00:00+00:01\"}",
      "{\"published\":\"10000-01-01T00:00:00Z\"}",
      "{\"phoneCallView\":\"x\"}",
      "{\"phoneCallView\":[1]}",
      "{\"phoneCallView\":[{\"status\":\"abc\"}]}",
      "{\"phoneCallView\":[{\"status\":-1}]}",
      "{\"phoneCallView\":[{\"status\":1.5}]}",
      "{\"phoneCallView\":[{\"status\":1099511627776}]}",
      "{\"phoneCallView\":[{\"status\":true}]}",
      "{\"phoneCallView\":[{\"flow\":\"4a\"}]}",
      "{\"phoneCallView\":[{\"holder\":{}}]}",
      "{\"phoneCallView\":[{\"source\":{\"a\":1}}]}",
      "{\"phoneCallView\":[{\"source\":[1,{}]}]}",
      "{\"phoneCallView\":[{\"source\":[null]}]}",
      "{\"phoneCallView\":[{\"callerID\":[]}]}",
      "{\"links\":{\"self\":[]}}",
      "{\"entry\":\"x\"}",
      "{\"entry\":[{\"id\":\"a\"},5]}",
      "{\"entry\":[],\"totalResults\":\"many\"}",
      ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
       "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"),
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(bodies); i++) {
    const char *b = bodies[i];
    not_expected(USC_XLATE_LIST, b);
    if (strstr(b, "entry") == NULL)
      not_expected(USC_XLATE_GET, b);
    /* Only id, extension and a link would be a partial answer. */
    if (strstr(b, "phoneCallView") != NULL || strstr(b, "published") != NULL)
      not_expected(USC_XLATE_OFF_HOLD, b);
  }
  /* The message says where. */
  usc_xlate_result_t r;
  parse(USC_XLATE_LIST, 200,
        "{\"entry\":[{},{\"phoneCallView\":[{},{\"status\":\"x\"}]}]}", &r);
  assert_non_null(strstr(r.error.message, "entry 1: phoneCallView[1]: "
                                          "\"status\" is not a number"));
}

/* A body with an error but a 2xx status is the upstream's fault. */
static void test_error_with_success_status(void **state) {
  (void)state;
  usc_xlate_result_t r;
  assert_int_equal(parse(USC_XLATE_GET, 200,
                         "{\"error\":{\"code\":\"internal_server_error\","
                         "\"message\":\"oops\"}}",
                         &r),
                   USC_XLATE_FAILED);
  assert_int_equal(r.error.status, USC_GRPC_INTERNAL);
  assert_string_equal(r.error.code, "internal_server_error");
  assert_non_null(strstr(r.error.message, "oops"));
}

/* ---- upstream errors ---- */

typedef struct {
  int http;
  const char *code;
  usc_grpc_status_t status;
} error_case_t;

static const error_case_t error_cases[] = {
    {400, "pc_phoncall_invalid", USC_GRPC_NOT_FOUND},
    {400, "pc_phonecall_invalid", USC_GRPC_NOT_FOUND},
    {400, "pc_phoncallview_invalid", USC_GRPC_NOT_FOUND},
    {400, "pc_phonecallview_invalid", USC_GRPC_NOT_FOUND},
    {400, "pc_phonecall_state_invalid", USC_GRPC_FAILED_PRECONDITION},
    {400, "user_invalid", USC_GRPC_INVALID_ARGUMENT},
    {400, "extension_invalid", USC_GRPC_INVALID_ARGUMENT},
    {400, "pc_sendcallto_invalid", USC_GRPC_INVALID_ARGUMENT},
    {400, "", USC_GRPC_INVALID_ARGUMENT},
    {401, "access_denied", USC_GRPC_UNAUTHENTICATED},
    {403, "", USC_GRPC_PERMISSION_DENIED},
    {404, "", USC_GRPC_NOT_FOUND},
    {408, "", USC_GRPC_DEADLINE_EXCEEDED},
    {409, "", USC_GRPC_ABORTED},
    {412, "", USC_GRPC_FAILED_PRECONDITION},
    {429, "", USC_GRPC_RESOURCE_EXHAUSTED},
    {500, "internal_server_error", USC_GRPC_INTERNAL},
    {501, "request_not_implemented", USC_GRPC_UNIMPLEMENTED},
    {502, "", USC_GRPC_UNAVAILABLE},
    {503, "", USC_GRPC_UNAVAILABLE},
    {504, "", USC_GRPC_UNAVAILABLE},
    {418, "teapot", USC_GRPC_UNKNOWN},
    {302, "", USC_GRPC_UNKNOWN},
    {505, "", USC_GRPC_UNKNOWN},
    {100, "", USC_GRPC_UNKNOWN},
};

static void test_upstream_errors(void **state) {
  (void)state;
  for (size_t i = 0; i < USC_ARRAY_LEN(error_cases); i++) {
    const error_case_t *c = &error_cases[i];
    char body[256];
    snprintf(body, sizeof(body),
             "{\"error\":{\"code\":\"%s\",\"message\":\"Said by UAPI.\"}}",
             c->code);
    usc_xlate_result_t r;
    assert_int_equal(parse(USC_XLATE_OFF_HOLD, c->http, body, &r),
                     USC_XLATE_FAILED);
    if (r.error.status != c->status)
      fail_msg("HTTP %d %s: %s", c->http, c->code,
               usc_grpc_status_name(r.error.status));
    assert_string_equal(r.error.code, c->code);
    assert_int_equal(r.error.http_status, c->http);
    char want[64];
    snprintf(want, sizeof(want), "upstream answered HTTP %d: Said by UAPI.",
             c->http);
    assert_string_equal(r.error.message,
                        c->status == USC_GRPC_UNKNOWN ? want : "Said by UAPI.");
  }
}

static void test_upstream_error_bodies(void **state) {
  (void)state;
  usc_xlate_result_t r;
  parse(USC_XLATE_LIST, 503, "<html>Service Unavailable</html>", &r);
  assert_int_equal(r.error.status, USC_GRPC_UNAVAILABLE);
  assert_string_equal(r.error.code, "");
  assert_string_equal(r.error.message, "upstream answered HTTP 503");
  parse(USC_XLATE_LIST, 418, NULL, &r);
  assert_string_equal(r.error.message, "upstream answered HTTP 418");
  parse(USC_XLATE_LIST, 401,
        "{\"error\":{\"code\":\"access_denided\",\"message\":\"You are not "
        "authorized to use this request.\"}}",
        &r);
  assert_int_equal(r.error.status, USC_GRPC_UNAUTHENTICATED);
  assert_string_equal(r.error.code, "access_denided");
  /* Header-unsafe bytes in a code never reach a header. */
  parse(USC_XLATE_LIST, 400,
        "{\"error\":{\"code\":\"bad\\r\\ncode: x\",\"message\":\"m\"}}", &r);
  assert_string_equal(r.error.code, "bad__code:_x");
  assert_int_equal(r.error.status, USC_GRPC_INVALID_ARGUMENT);
}

static void test_custom_map(void **state) {
  (void)state;
  usc_xlate_status_map_t *map;
  char error[128];
  const char *text = "500 UNAVAILABLE\n400 pc_phoncall_invalid "
                     "INVALID_ARGUMENT\n";
  assert_int_equal(
      usc_xlate_status_map_parse(text, strlen(text), &map, error, 128), 0);
  usc_xlate_result_t r;
  parse_with(USC_XLATE_GET, NULL, 500, "", map, &r);
  assert_int_equal(r.error.status, USC_GRPC_UNAVAILABLE);
  parse_with(USC_XLATE_GET, NULL, 400,
             "{\"error\":{\"code\":\"pc_phoncall_invalid\"}}", map, &r);
  assert_int_equal(r.error.status, USC_GRPC_INVALID_ARGUMENT);
  parse_with(USC_XLATE_GET, NULL, 400,
             "{\"error\":{\"code\":\"pc_phonecall_invalid\"}}", map, &r);
  assert_int_equal(r.error.status, USC_GRPC_NOT_FOUND);
  usc_xlate_status_map_free(map);
}

static void test_bad_rpc(void **state) {
  (void)state;
  usc_xlate_result_t r;
  assert_int_equal(parse_with(USC_XLATE_RPC_COUNT, NULL, 200, "{}", NULL, &r),
                   USC_XLATE_FAILED);
  assert_int_equal(r.error.status, USC_GRPC_INTERNAL);
}

/* ---- allocation failure ---- */

typedef struct {
  usc_xlate_rpc_t rpc;
  const char *body;
  int outcome;
  ProtobufCMessage *req; /* in its own arena: allocated before failures */
} alloc_ctx_t;

static int alloc_attempt(void *ctx) {
  alloc_ctx_t *c = ctx;
  usc_xlate_result_t r;
  int rc = parse_with(c->rpc, c->req, 200, c->body, NULL, &r);
  if (rc == USC_ERR_NOMEM) {
    assert_int_equal(r.error.status, USC_GRPC_RESOURCE_EXHAUSTED);
    return rc;
  }
  assert_int_equal(rc, c->outcome);
  return rc;
}

static void alloc_reset(void *ctx) {
  (void)ctx;
  tarena_reset(&arena);
}

static void test_alloc_failure(void **state) {
  (void)state;
  char list[8192];
  snprintf(list, sizeof(list), "{\"totalResults\":2,\"entry\":[%s,%s]}",
           seed_call, seed_call);
  alloc_ctx_t cases[] = {
      {USC_XLATE_GET, seed_call, USC_XLATE_DONE, NULL},
      {USC_XLATE_LIST, list, USC_XLATE_DONE, NULL},
      {USC_XLATE_HANGUP, "[{\"id\":\"a\"},\"b\"]", USC_XLATE_DONE, NULL},
      {USC_XLATE_CREATE_SIMPLE, list, USC_XLATE_DONE, NULL},
      {USC_XLATE_OFF_HOLD, seed_partial, USC_XLATE_FETCH, NULL},
      {USC_XLATE_GET, "[]", USC_XLATE_FAILED, NULL},
  };
  tarena_t requests;
  tarena_init(&requests);
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    size_t failures;
    cases[i].req = request_in(&requests, cases[i].rpc);
    t_exhaust(alloc_attempt, alloc_reset, &cases[i], 500, &failures);
    /* Only a message built allocates: FETCH and FAILED do not. */
    assert_true(failures >= 1 || cases[i].outcome != USC_XLATE_DONE);
    tarena_reset(&arena);
  }
  tarena_reset(&requests);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_seed_exchange),
      T(test_seed_verbatim_is_not_json),
      T(test_partial_fetch),
      T(test_partial_without_fallback),
      T(test_action_shapes),
      T(test_action_picks_its_call),
      T(test_quirks),
      T(test_bare_view_and_link_string),
      T(test_list_collection),
      T(test_list_shapes),
      T(test_get_gone),
      T(test_create_shapes),
      T(test_hangup_shapes),
      T(test_wrong_json),
      T(test_error_with_success_status),
      T(test_upstream_errors),
      T(test_upstream_error_bodies),
      T(test_custom_map),
      T(test_bad_rpc),
      T(test_alloc_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
