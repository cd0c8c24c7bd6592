/* dispatch: the PhoneCallService methods, driven through the h2 handler
 * callbacks with a fake transport (fake_h2.c), a real engine and a libuv
 * loop; and the package's private arena and conversion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "descriptor_index.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "src/base/base.h"
#include "src/dispatch/arena.h"
#include "src/dispatch/convert.h"
#include "src/dispatch/dispatch.h"
#include "src/dispatch/fake_h2.h"
#include "src/log/log.h"
#include "src/state/state.h"
#include "uapi/phonecalls/v1/phonecalls.pb-c.h"

#define SERVICE "uapi.phonecalls.v1.PhoneCallService"
#define EXT "0003*210"
#define PEER "0003*211"
#define MS INT64_C(1000000)
#define SEC INT64_C(1000000000)
#define RING_NS (20 * MS)
#define ARENA_BLOCK (16 * 1024) /* arena.c's block size */

typedef Uapi__Phonecalls__V1__PhoneCall pb_call_t;
typedef Uapi__Phonecalls__V1__PhoneCallView pb_view_t;
typedef Uapi__Phonecalls__V1__PhoneCallEvent pb_event_t;
typedef Uapi__Phonecalls__V1__ListPhoneCallsResponse pb_list_t;

#define PB(name) (&uapi__phonecalls__v1__##name##__descriptor)
#define ST(name) UAPI__PHONECALLS__V1__PHONE_CALL_VIEW__STATUS__STATUS_##name
#define EV(name) UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__TYPE__##name

/* ---- the environment: loop, engine, dispatcher, calls, log ---- */

typedef struct {
  uv_loop_t loop;
  usc_state_t *state;
  usc_dispatch_t *dispatch;
  const usc_h2_handler_t *handler;
  usc_h2_call_t **calls; /* every fake call of the test */
  size_t n_calls;
  ProtobufCMessage **kept; /* unpacked responses, freed at teardown */
  size_t n_kept;
  FILE *log;
  char *log_buf;
  size_t log_len;
} env_t;

static void *grow(void *array, size_t n, size_t size) {
  void *grown = realloc(array, (n + 1) * size);
  assert_non_null(grown);
  return grown;
}

static int64_t wall_clock(void *user) {
  (void)user;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static int env_open(void **state, int64_t ring_ns) {
  env_t *e = calloc(1, sizeof(*e));
  assert_non_null(e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  usc_state_config_t engine = {.ring_ns = ring_ns, .seed = 7};
  assert_int_equal(usc_state_new(&engine, &e->state), 0);
  usc_dispatch_config_t config = {
      .loop = &e->loop,
      .state = e->state,
      .clock = wall_clock,
      .ring_ns = ring_ns,
  };
  assert_int_equal(usc_dispatch_new(&config, &e->dispatch), 0);
  e->handler = usc_dispatch_handler();
  e->log = open_memstream(&e->log_buf, &e->log_len);
  assert_non_null(e->log);
  usc_log_init(USC_LOG_TEXT, USC_LOG_INFO, e->log);
  *state = e;
  return 0;
}

static int setup(void **state) { return env_open(state, 0); }

static int setup_ringing(void **state) { return env_open(state, RING_NS); }

static void set_flag(void *flag) { *(bool *)flag = true; }

static int teardown(void **state) {
  env_t *e = *state;
  bool closed = false;
  usc_alloc_fail_at(0); /* in case a test failed with a failure armed */
  usc_dispatch_close(e->dispatch, set_flag, &closed);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_true(closed);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  usc_state_free(e->state);
  for (size_t i = 0; i < e->n_calls; i++) {
    assert_int_equal(e->calls[i]->violations, 0);
    fake_h2_call_free(e->calls[i]);
  }
  free(e->calls);
  for (size_t i = 0; i < e->n_kept; i++)
    protobuf_c_message_free_unpacked(e->kept[i], NULL);
  free(e->kept);
  usc_log_init(USC_LOG_TEXT, USC_LOG_INFO, NULL);
  fclose(e->log);
  free(e->log_buf);
  free(e);
  return 0;
}

static bool log_has(env_t *e, const char *text) {
  fflush(e->log);
  return e->log_buf != NULL && strstr(e->log_buf, text) != NULL;
}

/* ---- driving calls through the handler ---- */

static usc_h2_call_t *new_call(env_t *e) {
  e->calls = grow(e->calls, e->n_calls, sizeof(*e->calls));
  return e->calls[e->n_calls++] = fake_h2_call_new();
}

static usc_h2_call_t *begin_path(env_t *e, usc_h2_call_t *c, const char *path) {
  e->handler->on_start(e->dispatch, c, path, strlen(path));
  return c;
}

static usc_h2_call_t *start_path(env_t *e, const char *path) {
  return begin_path(e, new_call(e), path);
}

static usc_h2_call_t *start(env_t *e, const char *method) {
  char path[128];
  snprintf(path, sizeof(path), "/%s/%s", SERVICE, method);
  return start_path(e, path);
}

static void send_bytes(env_t *e, usc_h2_call_t *c, const uint8_t *data,
                       size_t len) {
  assert_false(c->finished);
  e->handler->on_message(e->dispatch, c, data, len);
}

static void send_request(env_t *e, usc_h2_call_t *c, const void *request) {
  size_t len = protobuf_c_message_get_packed_size(request);
  uint8_t *data = malloc(len > 0 ? len : 1);
  assert_non_null(data);
  assert_int_equal(protobuf_c_message_pack(request, data), len);
  send_bytes(e, c, data, len);
  free(data);
}

static void half_close(env_t *e, usc_h2_call_t *c) {
  assert_false(c->finished);
  e->handler->on_half_close(e->dispatch, c);
}

static void cancel(env_t *e, usc_h2_call_t *c) {
  assert_false(c->finished);
  e->handler->on_cancel(e->dispatch, c, USC_GRPC_CANCELLED);
  c->cancelled = true;
}

/* A whole unary (or watch) call; steps stop once the call is finished,
 * as the transport delivers nothing after that. */
static usc_h2_call_t *rpc(env_t *e, const char *method, const void *request) {
  usc_h2_call_t *c = start(e, method);
  if (!c->finished)
    send_request(e, c, request);
  if (!c->finished)
    half_close(e, c);
  return c;
}

static const ProtobufCMethodDescriptor *method_of(const char *name) {
  const ProtobufCMethodDescriptor *m =
      protobuf_c_service_descriptor_get_method_by_name(PB(phone_call_service),
                                                       name);
  assert_non_null(m);
  return m;
}

typedef struct {
  const char *name;
  const char *value; /* NULL: left unset */
} field_t;

/* A call of `method` whose request has the given string fields. */
static usc_h2_call_t *rpc_fields(env_t *e, const char *method,
                                 const field_t *fields) {
  const ProtobufCMessageDescriptor *d = method_of(method)->input;
  ProtobufCMessage *request = calloc(1, d->sizeof_message);
  assert_non_null(request);
  protobuf_c_message_init(d, request);
  for (const field_t *f = fields; f->name != NULL; f++) {
    if (f->value == NULL)
      continue;
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(d, f->name);
    assert_non_null(fd);
    assert_int_equal(fd->type, PROTOBUF_C_TYPE_STRING);
    *(const char **)((char *)request + fd->offset) = f->value;
  }
  usc_h2_call_t *c = rpc(e, method, request);
  free(request);
  return c;
}

#define RPC(e, method, ...)                                                    \
  rpc_fields((e), (method), (const field_t[]){__VA_ARGS__, {NULL, NULL}})

/* ---- reading answers ---- */

static void expect_status(const usc_h2_call_t *c, usc_grpc_status_t status) {
  assert_true(c->finished);
  if (c->status != status)
    print_error("got %s: %s\n", usc_grpc_status_name(c->status),
                c->message != NULL ? c->message : "(no message)");
  assert_int_equal(c->status, status);
}

static void *unpack(env_t *e, const ProtobufCMessageDescriptor *d,
                    const fake_h2_msg_t *msg) {
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, msg->len, msg->data);
  assert_non_null(m);
  e->kept = grow(e->kept, e->n_kept, sizeof(*e->kept));
  e->kept[e->n_kept++] = m;
  return m;
}

/* The one response message of a call answered OK. */
static void *response(env_t *e, const usc_h2_call_t *c,
                      const ProtobufCMessageDescriptor *d) {
  expect_status(c, USC_GRPC_OK);
  assert_null(c->message);
  assert_int_equal(c->n_trailers, 0);
  assert_string_equal(fake_h2_metadata(c, "x-uapi-backend"), "native");
  assert_int_equal(c->n_messages, 1);
  return unpack(e, d, &c->messages[0]);
}

static pb_event_t *event(env_t *e, const usc_h2_call_t *watch, size_t i) {
  assert_true(i < watch->n_messages);
  return unpack(e, PB(phone_call_event), &watch->messages[i]);
}

/* A minimal protobuf wire reader for grpc-status-details-bin. */
typedef struct {
  const uint8_t *p;
  const uint8_t *end;
} wire_t;

typedef struct {
  uint32_t number;
  uint64_t varint;
  wire_t bytes;
} wire_field_t;

static uint64_t read_varint(wire_t *w) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    assert_true(w->p < w->end);
    uint8_t b = *w->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0)
      return v;
  }
  fail_msg("varint over 10 bytes");
  return 0;
}

/* The next field, or false at the end. Only varints and
 * length-delimited fields are expected. */
static bool read_field(wire_t *w, wire_field_t *f) {
  if (w->p == w->end)
    return false;
  uint64_t key = read_varint(w);
  *f = (wire_field_t){.number = (uint32_t)(key >> 3)};
  if ((key & 7) == 0) {
    f->varint = read_varint(w);
  } else if ((key & 7) == 2) {
    uint64_t len = read_varint(w);
    assert_true(len <= (uint64_t)(w->end - w->p));
    f->bytes = (wire_t){w->p, w->p + len};
    w->p += len;
  } else {
    fail_msg("unexpected wire type %u", (unsigned)(key & 7));
  }
  return true;
}

static void copy_bytes(const wire_field_t *f, char *out, size_t cap) {
  size_t len = (size_t)(f->bytes.end - f->bytes.p);
  assert_true(len < cap);
  memcpy(out, f->bytes.p, len);
  out[len] = '\0';
}

/* Standard alphabet, no padding. */
static size_t base64_decode(const char *in, uint8_t *out, size_t cap) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint32_t bits = 0;
  unsigned n_bits = 0;
  size_t n = 0;
  for (; *in != '\0'; in++) {
    const char *pos = strchr(alphabet, *in);
    assert_non_null(pos); /* '=' is not in it */
    bits = (bits << 6) | (uint32_t)(pos - alphabet);
    n_bits += 6;
    if (n_bits >= 8) {
      n_bits -= 8;
      assert_true(n < cap);
      out[n++] = (uint8_t)(bits >> n_bits);
    }
  }
  assert_true(n_bits < 6);
  assert_int_equal(bits & ((1u << n_bits) - 1), 0);
  return n;
}

typedef struct {
  uint64_t code;
  char message[256];
  size_t n_details;
  char type_url[128];
  char reason[64];
  char domain[64];
} rpc_status_t;

static void decode_error_info(wire_t w, rpc_status_t *s) {
  wire_field_t f;
  while (read_field(&w, &f)) {
    if (f.number == 1)
      copy_bytes(&f, s->reason, sizeof(s->reason));
    else if (f.number == 2)
      copy_bytes(&f, s->domain, sizeof(s->domain));
  }
}

static void decode_any(wire_t w, rpc_status_t *s) {
  wire_field_t f;
  wire_t value = {NULL, NULL};
  while (read_field(&w, &f)) {
    if (f.number == 1)
      copy_bytes(&f, s->type_url, sizeof(s->type_url));
    else if (f.number == 2)
      value = f.bytes;
  }
  if (strcmp(s->type_url, "type.googleapis.com/google.rpc.ErrorInfo") == 0)
    decode_error_info(value, s);
}

static void decode_status(const char *b64, rpc_status_t *s) {
  uint8_t buf[1024];
  size_t n = base64_decode(b64, buf, sizeof(buf));
  memset(s, 0, sizeof(*s));
  wire_t w = {buf, buf + n};
  wire_field_t f;
  while (read_field(&w, &f)) {
    if (f.number == 1) {
      s->code = f.varint;
    } else if (f.number == 2) {
      copy_bytes(&f, s->message, sizeof(s->message));
    } else if (f.number == 3) {
      s->n_details++;
      decode_any(f.bytes, s);
    }
  }
}

/* An error answer: no message, the status, the UAPI code (NULL: none) in
 * the trailer and in the ErrorInfo of the details, and `message` unless it
 * is NULL. */
static void expect_error(const usc_h2_call_t *c, usc_grpc_status_t status,
                         const char *uapi_code, const char *message) {
  expect_status(c, status);
  assert_int_equal(c->n_messages, 0);
  assert_non_null(c->message);
  if (message != NULL)
    assert_string_equal(c->message, message);
  const char *code = fake_h2_trailer(c, "uapi-error-code");
  const char *details = fake_h2_trailer(c, "grpc-status-details-bin");
  if (uapi_code == NULL) {
    assert_null(code);
  } else {
    assert_non_null(code);
    assert_string_equal(code, uapi_code);
    assert_non_null(details);
  }
  if (details == NULL)
    return;
  rpc_status_t s;
  decode_status(details, &s);
  assert_int_equal(s.code, status);
  assert_string_equal(s.message, c->message);
  if (uapi_code == NULL) {
    assert_int_equal(s.n_details, 0);
    return;
  }
  assert_int_equal(s.n_details, 1);
  assert_string_equal(s.type_url, "type.googleapis.com/google.rpc.ErrorInfo");
  assert_string_equal(s.reason, uapi_code);
  assert_string_equal(s.domain, "uapi.voipnow.com");
}

/* ---- typed requests ---- */

static usc_h2_call_t *create_rpc(env_t *e, const char *destination) {
  char *source[] = {EXT};
  char *dest[] = {(char *)destination};
  Uapi__Phonecalls__V1__CreatePhoneCallRequest req =
      UAPI__PHONECALLS__V1__CREATE_PHONE_CALL_REQUEST__INIT;
  req.extension = EXT;
  req.n_source = 1;
  req.source = source;
  req.n_destination = 1;
  req.destination = dest;
  req.nonce = "nonce-1";
  return rpc(e, "CreateSimplePhoneCall", &req);
}

static pb_call_t *create(env_t *e) {
  Uapi__Phonecalls__V1__CreatePhoneCallResponse *r =
      response(e, create_rpc(e, PEER), PB(create_phone_call_response));
  assert_int_equal(r->n_phone_calls, 1);
  return r->phone_calls[0];
}

static usc_h2_call_t *get_rpc(env_t *e, const char *id) {
  return RPC(e, "GetPhoneCall", {"extension", EXT}, {"phone_call_id", id});
}

static pb_call_t *get(env_t *e, const char *id) {
  return response(e, get_rpc(e, id), PB(phone_call));
}

static usc_h2_call_t *act_rpc(env_t *e, const char *method, const char *id,
                              const char *view, const char *send_call_to) {
  return RPC(e, method, {"extension", EXT}, {"phone_call_id", id},
             {"phone_call_view_id", view}, {"send_call_to", send_call_to});
}

static pb_call_t *act(env_t *e, const char *method, const char *id,
                      const char *view, const char *send_call_to) {
  return response(e, act_rpc(e, method, id, view, send_call_to),
                  PB(phone_call));
}

static Uapi__Phonecalls__V1__HangupPhoneCallsResponse *hangup(env_t *e,
                                                              const char *id) {
  return response(
      e, RPC(e, "HangupPhoneCalls", {"extension", EXT}, {"phone_call_id", id}),
      PB(hangup_phone_calls_response));
}

/* count and start_index: -1 leaves them unset; field: NULL for all. */
static pb_list_t *list(env_t *e, int count, int start_index,
                       const char *field) {
  Uapi__Phonecalls__V1__ListPhoneCallsRequest req =
      UAPI__PHONECALLS__V1__LIST_PHONE_CALLS_REQUEST__INIT;
  Google__Protobuf__Int32Value n = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
  Google__Protobuf__Int32Value from = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
  char *fields[] = {(char *)field};
  req.extension = EXT;
  n.value = count;
  from.value = start_index;
  req.count = count >= 0 ? &n : NULL;
  req.start_index = start_index >= 0 ? &from : NULL;
  req.n_fields = field != NULL ? 1 : 0;
  req.fields = fields;
  return response(e, rpc(e, "ListPhoneCalls", &req),
                  PB(list_phone_calls_response));
}

/* A WatchPhoneCalls stream, open. */
static usc_h2_call_t *watch(env_t *e, const char *user, const char *ext) {
  usc_h2_call_t *w =
      RPC(e, "WatchPhoneCalls", {"user_id", user}, {"extension", ext});
  assert_false(w->finished);
  assert_true(w->headers_sent);
  assert_string_equal(fake_h2_metadata(w, "x-uapi-backend"), "native");
  assert_int_equal(w->n_messages, 0);
  return w;
}

/* ---- method routing ---- */

static void test_unknown_method(void **state) {
  env_t *e = *state;
  usc_h2_call_t *c = start(e, "Nope");
  expect_error(c, USC_GRPC_UNIMPLEMENTED, NULL,
               "unknown method Nope for service " SERVICE);
  assert_false(c->headers_sent);
  assert_true(log_has(e, "method=/" SERVICE "/Nope code=UNIMPLEMENTED(12)"));
}

static void test_unknown_service(void **state) {
  env_t *e = *state;
  expect_error(start_path(e, "/foo.Bar/Baz"), USC_GRPC_UNIMPLEMENTED, NULL,
               "unknown service foo.Bar");
  expect_error(
      start_path(e, "/uapi.phonecalls.v1.PhoneCallServic/GetPhoneCall"),
      USC_GRPC_UNIMPLEMENTED, NULL,
      "unknown service uapi.phonecalls.v1.PhoneCallServic");
}

static void test_malformed_path(void **state) {
  env_t *e = *state;
  static const char *const paths[] = {"", "/", "GetPhoneCall", ("/" SERVICE),
                                      "noslash.Service/Method"};
  for (size_t i = 0; i < USC_ARRAY_LEN(paths); i++) {
    usc_h2_call_t *c = start_path(e, paths[i]);
    expect_error(c, USC_GRPC_UNIMPLEMENTED, NULL, NULL);
    char want[128];
    snprintf(want, sizeof(want), "malformed method name: %s", paths[i]);
    assert_string_equal(c->message, want);
  }
}

/* Every method of the service is routed: it gets the backend metadata and
 * its (empty) request is read as its own type and validated. */
static void test_every_method_recognized(void **state) {
  env_t *e = *state;
  const ProtobufCServiceDescriptor *svc = PB(phone_call_service);
  assert_int_equal(svc->n_methods, 19);
  for (size_t i = 0; i < svc->n_methods; i++) {
    const ProtobufCMethodDescriptor *m = &svc->methods[i];
    usc_h2_call_t *c = start(e, m->name);
    assert_false(c->finished);
    ProtobufCMessage *empty = calloc(1, m->input->sizeof_message);
    assert_non_null(empty);
    protobuf_c_message_init(m->input, empty);
    send_request(e, c, empty);
    free(empty);
    half_close(e, c);
    assert_int_equal(c->n_metadata, 1);
    assert_string_equal(fake_h2_metadata(c, "x-uapi-backend"), "native");
    if (m->output == PB(phone_call_event)) {
      /* Empty user and extension: every call of the caller. */
      assert_false(c->finished);
      assert_true(c->headers_sent);
      cancel(e, c);
    } else {
      expect_error(c, USC_GRPC_INVALID_ARGUMENT, USC_UAPI_EXTENSION_INVALID,
                   NULL);
    }
  }
}

/* ---- malformed request streams ---- */

static void test_garbage_request(void **state) {
  env_t *e = *state;
  /* Field 1, length-delimited, 10 bytes announced, 1 given. */
  static const uint8_t garbage[] = {0x0a, 0x0a, 'x'};
  usc_h2_call_t *c = start(e, "GetPhoneCall");
  send_bytes(e, c, garbage, sizeof(garbage));
  half_close(e, c);
  expect_error(c, USC_GRPC_INTERNAL, NULL, NULL);
  assert_non_null(strstr(c->message, "unmarshal"));
}

static void test_two_requests_for_unary(void **state) {
  env_t *e = *state;
  Uapi__Phonecalls__V1__GetPhoneCallRequest req =
      UAPI__PHONECALLS__V1__GET_PHONE_CALL_REQUEST__INIT;
  req.extension = EXT;
  usc_h2_call_t *c = start(e, "GetPhoneCall");
  send_request(e, c, &req);
  assert_false(c->finished);
  send_request(e, c, &req);
  expect_error(c, USC_GRPC_INTERNAL, NULL, NULL);
}

static void test_half_close_without_request(void **state) {
  env_t *e = *state;
  usc_h2_call_t *c = start(e, "GetPhoneCall");
  half_close(e, c);
  expect_error(c, USC_GRPC_INTERNAL, NULL, "no request message received");
}

/* A call cancelled mid-request is released, and what it received does
 * not leak into the next call. */
static void test_cancel_mid_request(void **state) {
  env_t *e = *state;
  Uapi__Phonecalls__V1__GetPhoneCallRequest req =
      UAPI__PHONECALLS__V1__GET_PHONE_CALL_REQUEST__INIT;
  req.extension = EXT;
  cancel(e, start(e, "GetPhoneCall"));
  usc_h2_call_t *c = start(e, "GetPhoneCall");
  send_request(e, c, &req);
  cancel(e, c);
  assert_false(c->finished);
  assert_true(log_has(e, "code=CANCELLED(1)"));

  usc_h2_call_t *next = start(e, "GetPhoneCall");
  half_close(e, next);
  expect_error(next, USC_GRPC_INTERNAL, NULL, "no request message received");
}

/* ---- unary methods ---- */

static void expect_time(const Google__Protobuf__Timestamp *t) {
  assert_non_null(t);
  assert_true(t->seconds > 1600000000); /* now-ish, not 0 */
  assert_in_range(t->nanos, 0, SEC - 1);
}

static void test_create_and_get(void **state) {
  env_t *e = *state;
  pb_call_t *call = create(e);
  assert_int_equal(strlen(call->id), USC_STATE_CALL_ID_LEN);
  assert_string_equal(call->extension, EXT);
  assert_string_equal(call->owner_id, "1");
  assert_string_equal(call->owner_name, "Default Organization");
  assert_string_equal(call->nonce, "nonce-1");
  expect_time(call->published);
  expect_time(call->answered);
  char link[128];
  snprintf(link, sizeof(link), "/uapi/phoneCalls/1/%s/%s", EXT, call->id);
  assert_string_equal(call->self_link, link);
  assert_int_equal(call->n_phone_call_views, 2);
  static const char *const ids[] = {"00", "01"};
  static const char *const exts[] = {EXT, PEER};
  for (size_t i = 0; i < 2; i++) {
    const pb_view_t *v = call->phone_call_views[i];
    assert_string_equal(v->id, ids[i]);
    assert_string_equal(v->extension, exts[i]);
    assert_int_equal(v->status, ST(ON_CALL));
    assert_int_equal(v->flow,
                     UAPI__PHONECALLS__V1__PHONE_CALL_VIEW__FLOW__FLOW_LOCAL);
    expect_time(v->answered);
    assert_null(v->ringing);
    assert_null(v->on_hold);
    assert_null(v->holder);
    assert_null(v->parked_pos);
    assert_int_equal(v->n_source, 1);
    assert_string_equal(v->source[0], EXT);
    assert_int_equal(v->n_destination, 1);
    assert_string_equal(v->destination[0], PEER);
  }

  pb_call_t *got = get(e, call->id);
  assert_string_equal(got->id, call->id);
  assert_string_equal(got->self_link, link);
  assert_int_equal(got->n_phone_call_views, 2);
  assert_int_equal(got->published->seconds, call->published->seconds);
  assert_int_equal(got->published->nanos, call->published->nanos);
  assert_true(log_has(e, "method=/" SERVICE "/GetPhoneCall code=OK(0)"));
}

static void test_every_create_method(void **state) {
  env_t *e = *state;
  static const char *const methods[] = {"CreateSimplePhoneCall",
                                        "CreateCallbackPhoneCall",
                                        "CreateConferenceInvitePhoneCall"};
  char *source[] = {EXT};
  char *dest[] = {PEER};
  Uapi__Phonecalls__V1__CreatePhoneCallRequest req =
      UAPI__PHONECALLS__V1__CREATE_PHONE_CALL_REQUEST__INIT;
  req.extension = EXT;
  req.n_source = 1;
  req.source = source;
  req.n_destination = 1;
  req.destination = dest;
  for (size_t i = 0; i < USC_ARRAY_LEN(methods); i++) {
    Uapi__Phonecalls__V1__CreatePhoneCallResponse *r =
        response(e, rpc(e, methods[i], &req), PB(create_phone_call_response));
    assert_int_equal(r->n_phone_calls, 1);
    get(e, r->phone_calls[0]->id);
  }
  assert_int_equal(usc_state_call_count(e->state), USC_ARRAY_LEN(methods));
}

static void test_get_unknown_call(void **state) {
  env_t *e = *state;
  expect_error(get_rpc(e, "abc123"), USC_GRPC_NOT_FOUND, USC_UAPI_CALL_INVALID,
               NULL);
  assert_true(log_has(e, "code=NOT_FOUND(5)"));
}

static void test_invalid_arguments(void **state) {
  env_t *e = *state;
  expect_error(get_rpc(e, "not-an-id"), USC_GRPC_INVALID_ARGUMENT,
               USC_UAPI_CALL_INVALID, NULL);
  expect_error(RPC(e, "GetPhoneCall", {"user_id", "bad user"},
                   {"extension", EXT}, {"phone_call_id", "abc"}),
               USC_GRPC_INVALID_ARGUMENT, USC_UAPI_USER_INVALID, NULL);
  pb_call_t *call = create(e);
  expect_error(act_rpc(e, "OnHold", call->id, "7", NULL),
               USC_GRPC_INVALID_ARGUMENT, USC_UAPI_VIEW_INVALID, NULL);
  expect_error(act_rpc(e, "OnHold", call->id, "07", NULL), USC_GRPC_NOT_FOUND,
               USC_UAPI_VIEW_INVALID, NULL);
}

static void test_hold_cycle(void **state) {
  env_t *e = *state;
  pb_call_t *call = create(e);

  pb_call_t *held = act(e, "OnHold", call->id, "00", NULL);
  const pb_view_t *leg = held->phone_call_views[0];
  expect_time(leg->on_hold);
  assert_non_null(leg->holder);
  assert_int_equal(leg->holder->value, 1);
  assert_null(held->phone_call_views[1]->on_hold);
  assert_null(held->phone_call_views[1]->holder);

  pb_call_t *released = act(e, "OffHold", call->id, "00", NULL);
  assert_null(released->phone_call_views[0]->on_hold);
  assert_null(released->phone_call_views[0]->holder);

  expect_error(act_rpc(e, "OffHold", call->id, "00", NULL),
               USC_GRPC_FAILED_PRECONDITION, USC_UAPI_STATE_INVALID, NULL);
}

/* Each action method applies its own action. */
typedef void (*action_check_fn)(const pb_call_t *call);

static void check_recording(const pb_call_t *call) {
  expect_time(call->phone_call_views[0]->recording);
}

static void check_not_recording(const pb_call_t *call) {
  assert_null(call->phone_call_views[0]->recording);
}

static void check_parked(const pb_call_t *call) {
  const pb_view_t *v = call->phone_call_views[1];
  expect_time(v->parked);
  assert_non_null(v->parked_pos);
  assert_int_equal(v->parked_pos->value, 1);
  assert_string_equal(v->parked_by, EXT);
}

static void check_unparked(const pb_call_t *call) {
  const pb_view_t *v = call->phone_call_views[1];
  assert_null(v->parked);
  assert_null(v->parked_pos);
  assert_string_equal(v->parked_by, "");
  assert_string_equal(v->extension, "0003*212");
}

static void check_joined(const pb_call_t *call) {
  const pb_view_t *v = call->phone_call_views[call->n_phone_call_views - 1];
  char id[8];
  snprintf(id, sizeof(id), "%02zu", call->n_phone_call_views - 1);
  assert_string_equal(v->id, id);
  assert_int_equal(v->n_source, 1);
  assert_string_equal(v->extension, v->source[0]);
  assert_int_equal(v->status, ST(ON_CALL));
}

static void check_transferred(const pb_call_t *call) {
  const pb_view_t *v = call->phone_call_views[1];
  assert_int_equal(v->n_destination, 1);
  assert_string_equal(v->destination[0], v->extension);
}

static void check_picked_up(const pb_call_t *call) {
  const pb_view_t *v = call->phone_call_views[1];
  assert_string_equal(v->extension, "0003*219");
  assert_int_equal(v->status, ST(ON_CALL));
}

static void test_every_action_method(void **state) {
  env_t *e = *state;
  static const struct {
    const char *method;
    const char *view;
    const char *send_call_to;
    size_t n_views;
    action_check_fn check;
  } steps[] = {
      {"StartRecording", "00", NULL, 2, check_recording},
      {"StopRecording", "00", NULL, 2, check_not_recording},
      {"Park", "01", NULL, 2, check_parked},
      {"UnPark", "01", "0003*212", 2, check_unparked},
      {"BargeIn", "00", "0003*213", 3, check_joined},
      {"Whisper", "00", "0003*214", 4, check_joined},
      {"Monitor", "00", "0003*215", 5, check_joined},
      {"Transfer", "01", "0003*216", 5, check_transferred},
      {"TransferToVoicemail", "01", "0003*217", 5, check_transferred},
      {"PickUp", "01", "0003*219", 5, check_picked_up},
  };
  pb_call_t *call = create(e);
  for (size_t i = 0; i < USC_ARRAY_LEN(steps); i++) {
    pb_call_t *after =
        act(e, steps[i].method, call->id, steps[i].view, steps[i].send_call_to);
    assert_string_equal(after->id, call->id);
    assert_int_equal(after->n_phone_call_views, steps[i].n_views);
    steps[i].check(after);
  }
  /* The refusals of the state-changing pairs. */
  expect_error(act_rpc(e, "StopRecording", call->id, "00", NULL),
               USC_GRPC_FAILED_PRECONDITION, USC_UAPI_STATE_INVALID, NULL);
  expect_error(act_rpc(e, "UnPark", call->id, "01", "0003*212"),
               USC_GRPC_FAILED_PRECONDITION, USC_UAPI_STATE_INVALID, NULL);
}

/* The methods whose effects look alike are told apart by the action their
 * refusals name. */
static void test_action_names_in_errors(void **state) {
  env_t *e = *state;
  static const char *const methods[] = {
      "UnPark",
      "PickUp",
      "BargeIn",
      "Whisper",
      "Monitor",
      "Transfer",
      "TransferToVoicemail",
  };
  pb_call_t *call = create(e);
  for (size_t i = 0; i < USC_ARRAY_LEN(methods); i++) {
    usc_h2_call_t *c = act_rpc(e, methods[i], call->id, "01", NULL);
    expect_error(c, USC_GRPC_INVALID_ARGUMENT, "pc_sendcallto_invalid", NULL);
    char name[64];
    snprintf(name, sizeof(name), "for %s:", methods[i]);
    assert_non_null(strstr(c->message, name));
  }
}

static void test_hangup(void **state) {
  env_t *e = *state;
  pb_call_t *first = create(e);
  pb_call_t *second = create(e);

  Uapi__Phonecalls__V1__HangupPhoneCallsResponse *r = hangup(e, first->id);
  assert_int_equal(r->n_phone_call_ids, 1);
  assert_string_equal(r->phone_call_ids[0], first->id);
  expect_error(get_rpc(e, first->id), USC_GRPC_NOT_FOUND, USC_UAPI_CALL_INVALID,
               NULL);

  r = hangup(e, NULL);
  assert_int_equal(r->n_phone_call_ids, 1);
  assert_string_equal(r->phone_call_ids[0], second->id);
  assert_int_equal(hangup(e, NULL)->n_phone_call_ids, 0);

  expect_error(
      RPC(e, "HangupPhoneCalls", {"extension", EXT}, {"phone_call_id", "abc"}),
      USC_GRPC_NOT_FOUND, USC_UAPI_CALL_INVALID, NULL);
}

/* ---- List ---- */

static void expect_only_id(const pb_call_t *call) {
  assert_int_equal(strlen(call->id), USC_STATE_CALL_ID_LEN);
  assert_string_equal(call->extension, "");
  assert_string_equal(call->owner_id, "");
  assert_string_equal(call->owner_name, "");
  assert_string_equal(call->nonce, "");
  assert_string_equal(call->self_link, "");
  assert_null(call->published);
  assert_null(call->answered);
  assert_int_equal(call->n_phone_call_views, 0);
}

static void test_list_fields_and_paging(void **state) {
  env_t *e = *state;
  const char *ids[3];
  for (size_t i = 0; i < 3; i++)
    ids[i] = create(e)->id;

  pb_list_t *page = list(e, 2, 1, "id");
  assert_int_equal(page->total_results, 3);
  assert_int_equal(page->items_per_page, 2);
  assert_int_equal(page->start_index, 1);
  assert_int_equal(page->n_phone_calls, 2);
  for (size_t i = 0; i < 2; i++) {
    expect_only_id(page->phone_calls[i]);
    assert_string_equal(page->phone_calls[i]->id, ids[i + 1]);
  }

  page = list(e, -1, -1, NULL);
  assert_int_equal(page->total_results, 3);
  assert_int_equal(page->items_per_page, 20);
  assert_int_equal(page->start_index, 0);
  assert_int_equal(page->n_phone_calls, 3);
  assert_string_equal(page->phone_calls[0]->id, ids[0]);
  assert_string_equal(page->phone_calls[0]->owner_name, "Default Organization");
  assert_int_equal(page->phone_calls[0]->n_phone_call_views, 2);
  expect_time(page->phone_calls[0]->published);

  assert_int_equal(list(e, 5, 3, NULL)->n_phone_calls, 0);
}

/* A page whose call pointers alone take more than an arena block. */
static void test_list_many_calls(void **state) {
  env_t *e = *state;
  enum { N = 2100 };
  for (size_t i = 0; i < N; i++)
    assert_int_equal(create_rpc(e, PEER)->status, USC_GRPC_OK);
  pb_list_t *page = list(e, 5000, -1, NULL);
  assert_int_equal(page->total_results, N);
  assert_int_equal(page->n_phone_calls, N);
  for (size_t i = 0; i < N; i++)
    assert_int_equal(page->phone_calls[i]->n_phone_call_views, 2);
}

/* ---- WatchPhoneCalls ---- */

static void test_watch_events(void **state) {
  env_t *e = *state;
  usc_h2_call_t *w = watch(e, "", "");
  pb_call_t *call = create(e);
  assert_int_equal(w->n_messages, 1);
  pb_event_t *ev = event(e, w, 0);
  assert_int_equal(ev->type, EV(CREATED));
  assert_string_equal(ev->phone_call->id, call->id);
  assert_int_equal(ev->phone_call->n_phone_call_views, 2);
  expect_time(ev->time);

  act(e, "OnHold", call->id, "01", NULL);
  assert_int_equal(w->n_messages, 2);
  ev = event(e, w, 1);
  assert_int_equal(ev->type, EV(UPDATED));
  assert_non_null(ev->phone_call->phone_call_views[1]->on_hold);

  hangup(e, call->id);
  assert_int_equal(w->n_messages, 3);
  ev = event(e, w, 2);
  assert_int_equal(ev->type, EV(ENDED));
  assert_string_equal(ev->phone_call->id, call->id);

  assert_false(w->finished);
  usc_dispatch_end_streams(e->dispatch);
  expect_status(w, USC_GRPC_OK);
  assert_int_equal(w->n_trailers, 0);
  create(e);
  assert_int_equal(w->n_messages, 3);
}

static void test_watch_cancel(void **state) {
  env_t *e = *state;
  usc_h2_call_t *w[3];
  for (size_t i = 0; i < 3; i++)
    w[i] = watch(e, "@me", "@self");
  cancel(e, w[1]);
  create(e);
  assert_int_equal(w[0]->n_messages, 1);
  assert_int_equal(w[1]->n_messages, 0);
  assert_int_equal(w[2]->n_messages, 1);
  assert_true(log_has(e, "WatchPhoneCalls code=CANCELLED(1)"));

  cancel(e, w[2]);
  cancel(e, w[0]);
  create(e);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(w[i]->n_messages, i == 1 ? 0 : 1);
  usc_dispatch_end_streams(e->dispatch); /* none left */
}

static void test_end_streams(void **state) {
  env_t *e = *state;
  usc_h2_call_t *a = watch(e, "", "");
  usc_h2_call_t *b = watch(e, "", EXT);
  usc_dispatch_end_streams(e->dispatch);
  expect_status(a, USC_GRPC_OK);
  expect_status(b, USC_GRPC_OK);
  assert_int_equal(a->n_messages, 0);
  create(e);
  assert_int_equal(a->n_messages, 0);
  assert_int_equal(b->n_messages, 0);
  usc_dispatch_end_streams(e->dispatch);
}

static void test_watch_filters(void **state) {
  env_t *e = *state;
  usc_h2_call_t *other_ext = watch(e, "", "0003*299");
  usc_h2_call_t *other_user = watch(e, "12", "");
  usc_h2_call_t *peer = watch(e, "1", PEER);
  create(e);
  assert_int_equal(other_ext->n_messages, 0);
  assert_int_equal(other_user->n_messages, 0);
  assert_int_equal(peer->n_messages, 1);
  usc_dispatch_end_streams(e->dispatch);
}

static void test_watch_invalid(void **state) {
  env_t *e = *state;
  usc_h2_call_t *w = RPC(e, "WatchPhoneCalls", {"extension", "abc"});
  expect_error(w, USC_GRPC_INVALID_ARGUMENT, USC_UAPI_EXTENSION_INVALID, NULL);
}

/* A watcher whose event cannot be queued is ended; the change it missed
 * still happens. */
static void test_watch_send_failure(void **state) {
  env_t *e = *state;
  usc_h2_call_t *w = watch(e, "", "");
  w->fail_sends = 1;
  create(e);
  expect_error(w, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
               "cannot queue a watch event");
  create(e);
  assert_int_equal(usc_state_call_count(e->state), 2);
}

static void test_reply_send_failure(void **state) {
  env_t *e = *state;
  usc_h2_call_t *c = start(e, "GetPhoneCall");
  pb_call_t *call = create(e);
  Uapi__Phonecalls__V1__GetPhoneCallRequest req =
      UAPI__PHONECALLS__V1__GET_PHONE_CALL_REQUEST__INIT;
  req.extension = EXT;
  req.phone_call_id = call->id;
  send_request(e, c, &req);
  c->fail_sends = 1;
  half_close(e, c);
  expect_error(c, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
               "cannot queue the response");
}

/* ---- ring delay: the advance timer ---- */

static void set_flag_timer(uv_timer_t *timer) { set_flag(timer->data); }

/* Runs the loop until `w` has `n` messages or two seconds pass. */
static void run_until_messages(env_t *e, const usc_h2_call_t *w, size_t n) {
  bool expired = false;
  uv_timer_t guard;
  uv_timer_init(&e->loop, &guard);
  guard.data = &expired;
  uv_timer_start(&guard, set_flag_timer, 2000, 0);
  while (w->n_messages < n && !expired)
    uv_run(&e->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&e->loop, UV_RUN_NOWAIT);
}

static void test_ring_delay(void **state) {
  env_t *e = *state;
  usc_h2_call_t *w = watch(e, "", "");
  int64_t created_at = wall_clock(NULL);
  pb_call_t *call = create(e);
  assert_null(call->answered);
  assert_int_equal(call->phone_call_views[0]->status, ST(OTHER_SIDE_RINGING));
  assert_int_equal(call->phone_call_views[1]->status, ST(RINGING));
  expect_time(call->phone_call_views[1]->ringing);
  assert_null(call->phone_call_views[1]->answered);
  assert_int_equal(w->n_messages, 1);

  run_until_messages(e, w, 2);
  assert_int_equal(w->n_messages, 2);
  assert_true(wall_clock(NULL) - created_at >= RING_NS);
  pb_event_t *ev = event(e, w, 1);
  assert_int_equal(ev->type, EV(UPDATED));
  assert_string_equal(ev->phone_call->id, call->id);
  expect_time(ev->phone_call->answered);
  for (size_t i = 0; i < 2; i++) {
    const pb_view_t *v = ev->phone_call->phone_call_views[i];
    assert_int_equal(v->status, ST(ON_CALL));
    expect_time(v->answered);
    assert_null(v->ringing);
  }
  assert_int_equal(get(e, call->id)->phone_call_views[0]->status, ST(ON_CALL));
  usc_dispatch_end_streams(e->dispatch);
}

/* ---- logging and allocation failures ---- */

static void test_rpc_log_line(void **state) {
  env_t *e = *state;
  usc_h2_call_t *c = new_call(e);
  c->request_id = "req-7";
  begin_path(e, c, "/" SERVICE "/GetPhoneCall");
  half_close(e, c);
  expect_status(c, USC_GRPC_INTERNAL);
  assert_true(log_has(e, " rpc method=/" SERVICE "/GetPhoneCall "
                         "code=INTERNAL(13) duration_us="));
  assert_true(log_has(e, " backend=native peer=127.0.0.1:40000 "
                         "request_id=req-7\n"));
}

/* Once warm, a request allocates nothing: its state, its buffer and the
 * arena's first block are reused. */
static void test_steady_state_allocates_nothing(void **state) {
  env_t *e = *state;
  const char *id = create(e)->id;
  get(e, id);
  usc_alloc_fail_at(0);
  for (size_t i = 0; i < 500; i++)
    get(e, id);
  assert_int_equal(usc_alloc_fail_at(0), 0);
}

/* The status of a call made while the nth allocation fails: an answer
 * in every case, never a crash or a leak. */
static void test_allocation_failures(void **state) {
  env_t *e = *state;
  size_t n;
  for (n = 1; n < 100; n++) {
    usc_alloc_fail_at(n);
    usc_h2_call_t *c = create_rpc(e, PEER);
    size_t made = usc_alloc_fail_at(0);
    assert_true(c->finished);
    if (c->status == USC_GRPC_OK && made < n)
      break;
    /* OOM while decoding reads as a malformed request: protobuf-c does
     * not tell the two apart. */
    if (c->status == USC_GRPC_INTERNAL)
      assert_non_null(strstr(c->message, "unmarshal"));
    else if (c->status != USC_GRPC_OK)
      expect_status(c, USC_GRPC_RESOURCE_EXHAUSTED);
  }
  assert_true(n < 100);
  list(e, -1, -1, NULL);
}

/* ---- grpc.health.v1.Health ---- */

#define HEALTH "/grpc.health.v1.Health/"
#define HS(name) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##name
typedef Grpc__Health__V1__HealthCheckResponse pb_health_t;

static usc_h2_call_t *health_call(env_t *e, const char *method,
                                  const char *service) {
  char path[64];
  snprintf(path, sizeof(path), HEALTH "%s", method);
  usc_h2_call_t *c = start_path(e, path);
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = (char *)service;
  send_request(e, c, &req);
  if (!c->finished)
    half_close(e, c);
  return c;
}

static int health_message(env_t *e, const usc_h2_call_t *c, size_t i) {
  assert_true(i < c->n_messages);
  pb_health_t *h = unpack(
      e, &grpc__health__v1__health_check_response__descriptor, &c->messages[i]);
  return (int)h->status;
}

static int check(env_t *e, const char *service) {
  usc_h2_call_t *c = health_call(e, "Check", service);
  pb_health_t *h =
      response(e, c, &grpc__health__v1__health_check_response__descriptor);
  return (int)h->status;
}

static void test_health_check(void **state) {
  env_t *e = *state;
  assert_int_equal(check(e, ""), HS(SERVING));
  assert_int_equal(check(e, SERVICE), HS(SERVING));
  usc_h2_call_t *c = health_call(e, "Check", "foo.Bar");
  expect_error(c, USC_GRPC_NOT_FOUND, NULL, "unknown service");
  assert_true(log_has(e, "method=/grpc.health.v1.Health/Check code=OK(0)"));
  expect_error(start_path(e, HEALTH "Nope"), USC_GRPC_UNIMPLEMENTED, NULL,
               "unknown method Nope for service grpc.health.v1.Health");
}

/* Check stays a unary method: one request message only. */
static void test_health_check_two_requests(void **state) {
  env_t *e = *state;
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  usc_h2_call_t *c = start_path(e, HEALTH "Check");
  send_request(e, c, &req);
  send_request(e, c, &req);
  expect_error(c, USC_GRPC_INTERNAL, NULL, NULL);
  c = start_path(e, HEALTH "Check");
  half_close(e, c);
  expect_error(c, USC_GRPC_INTERNAL, NULL, "no request message received");
}

static void test_health_list(void **state) {
  env_t *e = *state;
  Grpc__Health__V1__HealthListRequest req =
      GRPC__HEALTH__V1__HEALTH_LIST_REQUEST__INIT;
  usc_h2_call_t *c = start_path(e, HEALTH "List");
  send_request(e, c, &req);
  half_close(e, c);
  Grpc__Health__V1__HealthListResponse *list =
      response(e, c, &grpc__health__v1__health_list_response__descriptor);
  assert_int_equal(list->n_statuses, 2);
  bool seen[2] = {false, false};
  for (size_t i = 0; i < list->n_statuses; i++) {
    const char *key = list->statuses[i]->key;
    assert_true(strcmp(key, "") == 0 || strcmp(key, SERVICE) == 0);
    seen[key[0] != '\0'] = true;
    assert_int_equal(list->statuses[i]->value->status, HS(SERVING));
  }
  assert_true(seen[0] && seen[1]);
  usc_dispatch_set_serving(e->dispatch, false);
  c = start_path(e, HEALTH "List");
  send_request(e, c, &req);
  half_close(e, c);
  list = response(e, c, &grpc__health__v1__health_list_response__descriptor);
  for (size_t i = 0; i < list->n_statuses; i++)
    assert_int_equal(list->statuses[i]->value->status, HS(NOT_SERVING));
}

/* Watch: the status now, every change, and at shutdown NOT_SERVING before
 * the stream ends OK; an unknown service is SERVICE_UNKNOWN, still open. */
static void test_health_watch_shutdown(void **state) {
  env_t *e = *state;
  usc_h2_call_t *all = health_call(e, "Watch", "");
  usc_h2_call_t *svc = health_call(e, "Watch", SERVICE);
  usc_h2_call_t *unknown = health_call(e, "Watch", "foo.Bar");
  usc_h2_call_t *gone = health_call(e, "Watch", "");
  for (size_t i = 0; i < e->n_calls; i++) {
    assert_false(e->calls[i]->finished);
    assert_true(e->calls[i]->headers_sent);
    assert_int_equal(e->calls[i]->n_messages, 1);
  }
  assert_int_equal(health_message(e, all, 0), HS(SERVING));
  assert_int_equal(health_message(e, svc, 0), HS(SERVING));
  assert_int_equal(health_message(e, unknown, 0), HS(SERVICE_UNKNOWN));
  cancel(e, gone);

  usc_dispatch_set_serving(e->dispatch, true); /* no change: nothing sent */
  assert_int_equal(all->n_messages, 1);
  usc_dispatch_set_serving(e->dispatch, false);
  assert_int_equal(all->n_messages, 2);
  assert_int_equal(svc->n_messages, 2);
  assert_int_equal(unknown->n_messages, 1);
  assert_int_equal(gone->n_messages, 1);
  assert_int_equal(health_message(e, all, 1), HS(NOT_SERVING));
  assert_int_equal(health_message(e, svc, 1), HS(NOT_SERVING));
  assert_int_equal(check(e, ""), HS(NOT_SERVING));
  assert_int_equal(check(e, SERVICE), HS(NOT_SERVING));

  /* PhoneCall watchers end at the same time. */
  usc_h2_call_t *w = watch(e, "", "");
  usc_dispatch_end_streams(e->dispatch);
  expect_status(all, USC_GRPC_OK);
  expect_status(svc, USC_GRPC_OK);
  expect_status(unknown, USC_GRPC_OK);
  expect_status(w, USC_GRPC_OK);
  assert_int_equal(all->n_messages, 2);
  usc_dispatch_set_serving(e->dispatch, true);
  usc_dispatch_end_streams(e->dispatch);
}

static void test_health_watch_send_failure(void **state) {
  env_t *e = *state;
  usc_h2_call_t *w = health_call(e, "Watch", "");
  usc_h2_call_t *ok = health_call(e, "Watch", "");
  w->fail_sends = 1;
  usc_dispatch_set_serving(e->dispatch, false);
  expect_status(w, USC_GRPC_RESOURCE_EXHAUSTED);
  assert_string_equal(w->message, "cannot queue a health status");
  assert_int_equal(w->n_messages, 1);
  assert_int_equal(ok->n_messages, 2);
  usc_dispatch_end_streams(e->dispatch);
  expect_status(ok, USC_GRPC_OK);
}

/* ---- server reflection ---- */

typedef Grpc__Reflection__V1__ServerReflectionRequest pb_refl_req_t;
typedef Grpc__Reflection__V1__ServerReflectionResponse pb_refl_resp_t;
#define REQ_CASE(name)                                                         \
  GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##name
#define RESP_CASE(name)                                                        \
  GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##name

/* Sends one reflection request on `c` and returns its one answer. */
static pb_refl_resp_t *ask(env_t *e, usc_h2_call_t *c, int which,
                           const char *arg) {
  pb_refl_req_t req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  Grpc__Reflection__V1__ExtensionRequest ext =
      GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
  req.host = "localhost";
  req.message_request_case = which;
  switch (which) {
  case REQ_CASE(FILE_BY_FILENAME):
    req.file_by_filename = (char *)arg;
    break;
  case REQ_CASE(FILE_CONTAINING_SYMBOL):
    req.file_containing_symbol = (char *)arg;
    break;
  case REQ_CASE(FILE_CONTAINING_EXTENSION):
    ext.containing_type = (char *)arg;
    ext.extension_number = 100;
    req.file_containing_extension = &ext;
    break;
  case REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE):
    req.all_extension_numbers_of_type = (char *)arg;
    break;
  case REQ_CASE(LIST_SERVICES):
    req.list_services = (char *)arg;
    break;
  }
  size_t before = c->n_messages;
  send_request(e, c, &req);
  assert_false(c->finished);
  assert_int_equal(c->n_messages, before + 1);
  pb_refl_resp_t *resp =
      unpack(e, &grpc__reflection__v1__server_reflection_response__descriptor,
             &c->messages[before]);
  assert_string_equal(resp->valid_host, "localhost");
  assert_non_null(resp->original_request);
  assert_int_equal(resp->original_request->message_request_case, which);
  return resp;
}

/* The name of a serialized FileDescriptorProto (field 1). */
static void file_name(const ProtobufCBinaryData *fdp, char *out, size_t cap) {
  wire_t w = {fdp->data, fdp->data + fdp->len};
  wire_field_t f;
  while (read_field(&w, &f)) {
    if (f.number == 1) {
      copy_bytes(&f, out, cap);
      return;
    }
  }
  fail_msg("no name in a FileDescriptorProto");
}

static void expect_files(const pb_refl_resp_t *resp, const char *const *names,
                         size_t n) {
  assert_int_equal(resp->message_response_case,
                   RESP_CASE(FILE_DESCRIPTOR_RESPONSE));
  const Grpc__Reflection__V1__FileDescriptorResponse *files =
      resp->file_descriptor_response;
  assert_int_equal(files->n_file_descriptor_proto, n);
  char name[128];
  file_name(&files->file_descriptor_proto[0], name, sizeof(name));
  assert_string_equal(name, names[0]); /* the one asked for first */
  for (size_t i = 1; i < n; i++) {
    bool found = false;
    for (size_t j = 1; j < n; j++) {
      file_name(&files->file_descriptor_proto[j], name, sizeof(name));
      found |= strcmp(name, names[i]) == 0;
    }
    assert_true(found);
  }
}

static void expect_refl_error(const pb_refl_resp_t *resp, int code) {
  assert_int_equal(resp->message_response_case, RESP_CASE(ERROR_RESPONSE));
  assert_int_equal(resp->error_response->error_code, code);
  assert_true(strlen(resp->error_response->error_message) > 0);
}

static void reflection_session(env_t *e, const char *path) {
  static const char *const phonecalls[] = {
      "uapi/phonecalls/v1/phonecalls.proto", "google/protobuf/timestamp.proto",
      "google/protobuf/wrappers.proto"};
  static const char *const health[] = {"grpc/health/v1/health.proto"};
  static const char *const v1alpha[] = {
      "grpc/reflection/v1alpha/reflection.proto"};
  usc_h2_call_t *c = start_path(e, path);
  assert_false(c->finished);

  pb_refl_resp_t *r = ask(e, c, REQ_CASE(LIST_SERVICES), "*");
  assert_int_equal(r->message_response_case, RESP_CASE(LIST_SERVICES_RESPONSE));
  static const char *const want[] = {
      SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection"};
  assert_int_equal(r->list_services_response->n_service, 4);
  for (size_t i = 0; i < USC_ARRAY_LEN(want); i++) {
    bool found = false;
    for (size_t j = 0; j < 4; j++)
      found |=
          strcmp(r->list_services_response->service[j]->name, want[i]) == 0;
    assert_true(found);
  }

  expect_files(ask(e, c, REQ_CASE(FILE_BY_FILENAME), phonecalls[0]), phonecalls,
               3);
  expect_files(ask(e, c, REQ_CASE(FILE_BY_FILENAME), phonecalls[1]),
               phonecalls + 1, 1);
  static const char *const symbols[] = {
      SERVICE, SERVICE ".GetPhoneCall", "uapi.phonecalls.v1.PhoneCall",
      "uapi.phonecalls.v1.PhoneCallEvent.Type",
      ".uapi.phonecalls.v1.PhoneCall"};
  for (size_t i = 0; i < USC_ARRAY_LEN(symbols); i++)
    expect_files(ask(e, c, REQ_CASE(FILE_CONTAINING_SYMBOL), symbols[i]),
                 phonecalls, 3);
  expect_files(ask(e, c, REQ_CASE(FILE_CONTAINING_SYMBOL),
                   "grpc.health.v1.HealthCheckResponse.ServingStatus"),
               health, 1);
  expect_files(ask(e, c, REQ_CASE(FILE_CONTAINING_SYMBOL),
                   "grpc.reflection.v1alpha.ServerReflection"),
               v1alpha, 1);
  expect_files(
      ask(e, c, REQ_CASE(FILE_CONTAINING_SYMBOL), "google.protobuf.Int32Value"),
      phonecalls + 2, 1);

  expect_refl_error(ask(e, c, REQ_CASE(FILE_BY_FILENAME), "nope.proto"), 5);
  expect_refl_error(
      ask(e, c, REQ_CASE(FILE_CONTAINING_SYMBOL), "uapi.phonecalls.v1.Nope"),
      5);
  expect_refl_error(ask(e, c, REQ_CASE(FILE_CONTAINING_SYMBOL), "uapi"), 5);
  expect_refl_error(ask(e, c, REQ_CASE(FILE_CONTAINING_EXTENSION),
                        "uapi.phonecalls.v1.PhoneCall"),
                    5);
  expect_refl_error(ask(e, c, REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE),
                        "uapi.phonecalls.v1.Nope"),
                    5);
  r = ask(e, c, REQ_CASE(ALL_EXTENSION_NUMBERS_OF_TYPE),
          "uapi.phonecalls.v1.PhoneCall");
  assert_int_equal(r->message_response_case,
                   RESP_CASE(ALL_EXTENSION_NUMBERS_RESPONSE));
  assert_string_equal(r->all_extension_numbers_response->base_type_name,
                      "uapi.phonecalls.v1.PhoneCall");
  assert_int_equal(r->all_extension_numbers_response->n_extension_number, 0);
  expect_refl_error(ask(e, c, REQ_CASE(_NOT_SET), NULL), 3);

  half_close(e, c);
  expect_status(c, USC_GRPC_OK);
  assert_null(c->message);
}

static void test_reflection_v1(void **state) {
  reflection_session(
      *state, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
}

static void test_reflection_v1alpha(void **state) {
  env_t *e = *state;
  reflection_session(
      e, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
  assert_true(log_has(e, "method=/grpc.reflection.v1alpha.ServerReflection/"
                         "ServerReflectionInfo code=OK(0)"));
}

/* Every symbol the index names is found in its own file; every import of
 * every file is in the table. */
static void test_reflection_index(void **state) {
  (void)state;
  assert_int_equal(usc_descriptor_n_files, 6);
  for (size_t i = 0; i < usc_descriptor_n_files; i++) {
    const usc_descriptor_file_t *f = &usc_descriptor_files[i];
    assert_true(f->len > 0);
    for (size_t j = 0; j < f->n_deps; j++)
      assert_true(f->deps[j] < usc_descriptor_n_files);
    for (size_t j = 1; j < f->n_symbols; j++)
      assert_true(strcmp(f->symbols[j - 1], f->symbols[j]) < 0);
  }
  assert_int_equal(usc_descriptor_n_services, 4);
}

static void test_reflection_streams(void **state) {
  env_t *e = *state;
  const char *path =
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
  /* Garbage ends the stream; a cancelled one is dropped; shutdown ends
   * the others with OK. */
  static const uint8_t garbage[] = {0x0a, 0x0a, 'x'};
  usc_h2_call_t *bad = start_path(e, path);
  send_bytes(e, bad, garbage, sizeof(garbage));
  expect_error(bad, USC_GRPC_INTERNAL, NULL, NULL);
  usc_h2_call_t *gone = start_path(e, path);
  ask(e, gone, REQ_CASE(LIST_SERVICES), "");
  cancel(e, gone);
  usc_h2_call_t *open = start_path(e, path);
  usc_h2_call_t *idle = start_path(e, path);
  ask(e, open, REQ_CASE(LIST_SERVICES), "");
  open->fail_sends = 1;
  pb_refl_req_t req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  send_request(e, open, &req);
  expect_status(open, USC_GRPC_RESOURCE_EXHAUSTED);
  assert_string_equal(open->message, "cannot queue a reflection response");
  usc_dispatch_end_streams(e->dispatch);
  expect_status(idle, USC_GRPC_OK);
  assert_int_equal(idle->n_messages, 0);
  expect_error(start_path(e, "/grpc.reflection.v1.ServerReflection/Info"),
               USC_GRPC_UNIMPLEMENTED, NULL,
               "unknown method Info for service "
               "grpc.reflection.v1.ServerReflection");
}

/* proto3 strings are UTF-8, and gRPC's own implementations refuse a
 * request that breaks the rule; protobuf-c does not check it. Accepted,
 * such a string would be stored by the engine and answered to every
 * client, whose parsers refuse it, and written into JSON for the
 * upstream. Found by fuzz/pb_json_fuzz. */
static void test_request_not_utf8(void **state) {
  env_t *e = *state;
  const char *why = "grpc: error unmarshalling request: string field "
                    "contains invalid UTF-8";
  char *source[] = {EXT};
  char *dest[] = {PEER};
  Uapi__Phonecalls__V1__CreatePhoneCallRequest create =
      UAPI__PHONECALLS__V1__CREATE_PHONE_CALL_REQUEST__INIT;
  create.extension = EXT;
  create.n_source = create.n_destination = 1;
  create.source = source;
  create.destination = dest;
  create.caller_id = "John \xc6";
  expect_error(rpc(e, "CreateSimplePhoneCall", &create), USC_GRPC_INTERNAL,
               NULL, why);
  assert_int_equal(usc_state_call_count(e->state), 0);
  expect_error(health_call(e, "Check", "\xed\xa0\x80"), USC_GRPC_INTERNAL, NULL,
               why);
  /* The string set in a oneof; and the one that is not set, which shares
   * its storage with a message, is not read. */
  usc_h2_call_t *c = start_path(
      e, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
  ask(e, c, REQ_CASE(FILE_CONTAINING_EXTENSION), SERVICE);
  pb_refl_req_t req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  req.message_request_case = REQ_CASE(FILE_CONTAINING_SYMBOL);
  req.file_containing_symbol = "uapi\xff";
  send_request(e, c, &req);
  expect_status(c, USC_GRPC_INTERNAL);
  assert_string_equal(c->message, why);
  create.caller_id = "Jos\xc3\xa9";
  expect_status(rpc(e, "CreateSimplePhoneCall", &create), USC_GRPC_OK);
}

/* The nth allocation failing in a reflection answer: an answer or a
 * RESOURCE_EXHAUSTED, never a crash or a leak. */
static void test_reflection_allocation_failures(void **state) {
  env_t *e = *state;
  const char *path =
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
  size_t n;
  for (n = 1; n < 100; n++) {
    usc_h2_call_t *c = start_path(e, path);
    if (c->finished)
      continue;
    pb_refl_req_t req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = REQ_CASE(FILE_CONTAINING_SYMBOL);
    req.file_containing_symbol = SERVICE;
    size_t len = protobuf_c_message_get_packed_size(&req.base);
    uint8_t buf[256];
    assert_true(len <= sizeof(buf));
    protobuf_c_message_pack(&req.base, buf);
    usc_alloc_fail_at(n);
    send_bytes(e, c, buf, len);
    size_t made = usc_alloc_fail_at(0);
    if (!c->finished) {
      assert_int_equal(c->n_messages, 1);
      half_close(e, c);
      if (made < n)
        break;
    } else if (c->status != USC_GRPC_INTERNAL) {
      expect_status(c, USC_GRPC_RESOURCE_EXHAUSTED);
    }
  }
  assert_true(n < 100);
}

/* ---- convert ---- */

static const char *const SOURCE[] = {EXT};
static const char *const DEST[] = {PEER};

static usc_state_view_t plain_view(void) {
  return (usc_state_view_t){
      .id = "00",
      .extension = EXT,
      .source = SOURCE,
      .n_source = 1,
      .destination = DEST,
      .n_destination = 1,
      .flow = 2,
      .status = 5,
      .disposition = -1,
  };
}

static usc_state_call_t plain_call(const usc_state_view_t *views, size_t n) {
  return (usc_state_call_t){
      .id = "0123456789abcdef0123",
      .user = "12",
      .extension = EXT,
      .owner_id = "12",
      .owner_name = "Org",
      .published = 1700000000 * SEC + 5,
      .views = views,
      .n_views = n,
  };
}

static void test_convert_uapi_zero(void **state) {
  (void)state;
  usc_state_view_t views[3] = {plain_view(), plain_view(), plain_view()};
  views[0].status = 0;
  views[0].disposition = 0;
  views[1].status = 3;
  views[1].disposition = 2;
  usc_state_call_t call = plain_call(views, 3);
  arena_t arena;
  arena_init(&arena);
  pb_call_t *out = convert_call(&arena, &call, USC_STATE_FIELD_ALL);
  assert_non_null(out);
  pb_view_t *const *v = out->phone_call_views;
  assert_int_equal(v[0]->status, ST(UNKNOWN));
  assert_int_equal(
      v[0]->disposition,
      UAPI__PHONECALLS__V1__PHONE_CALL_VIEW__DISPOSITION__DISPOSITION_ANSWERED);
  assert_int_equal(v[1]->status, ST(RINGING));
  assert_int_equal(
      v[1]->disposition,
      UAPI__PHONECALLS__V1__PHONE_CALL_VIEW__DISPOSITION__DISPOSITION_FAILED);
  assert_int_equal(v[2]->status, ST(ON_CALL));
  assert_int_equal(
      v[2]->disposition,
      UAPI__PHONECALLS__V1__PHONE_CALL_VIEW__DISPOSITION__DISPOSITION_UNSPECIFIED);
  arena_free(&arena);
}

static void expect_timestamp(const Google__Protobuf__Timestamp *t, int64_t ns) {
  assert_non_null(t);
  assert_int_equal(t->seconds, ns / SEC);
  assert_int_equal(t->nanos, ns % SEC);
}

static void test_convert_optional_fields(void **state) {
  (void)state;
  const int64_t t = 1700000000 * SEC + 123456789;
  usc_state_view_t views[2] = {plain_view(), plain_view()};
  usc_state_view_t *full = &views[1];
  memcpy(full->id, "01", 3);
  full->ringing = t + 1;
  full->caller_id = "Jo <210>";
  full->recording = t + 2;
  full->answered = t + 3;
  full->parked = t + 4;
  full->parked_pos = 2;
  full->parked_by = "0003*299";
  full->on_hold = t + 5;
  full->holder = 1;
  usc_state_call_t call = plain_call(views, 2);
  call.published = t;
  arena_t arena;
  arena_init(&arena);
  pb_call_t *out = convert_call(&arena, &call, USC_STATE_FIELD_ALL);
  assert_non_null(out);
  expect_timestamp(out->published, t);
  assert_null(out->answered);
  assert_string_equal(out->nonce, "");

  const pb_view_t *bare = out->phone_call_views[0];
  assert_null(bare->ringing);
  assert_null(bare->recording);
  assert_null(bare->answered);
  assert_null(bare->parked);
  assert_null(bare->on_hold);
  assert_null(bare->parked_pos);
  assert_null(bare->holder);
  assert_string_equal(bare->caller_id, "");
  assert_string_equal(bare->parked_by, "");

  const pb_view_t *set = out->phone_call_views[1];
  assert_string_equal(set->id, "01");
  expect_timestamp(set->ringing, t + 1);
  expect_timestamp(set->recording, t + 2);
  expect_timestamp(set->answered, t + 3);
  expect_timestamp(set->parked, t + 4);
  expect_timestamp(set->on_hold, t + 5);
  assert_int_equal(set->parked_pos->value, 2);
  assert_int_equal(set->holder->value, 1);
  assert_string_equal(set->caller_id, "Jo <210>");
  assert_string_equal(set->parked_by, "0003*299");
  assert_null(convert_time(&arena, 0));
  arena_free(&arena);
}

static void test_convert_field_mask(void **state) {
  (void)state;
  usc_state_view_t view = plain_view();
  usc_state_call_t call = plain_call(&view, 1);
  call.answered = call.published;
  call.nonce = "n";
  arena_t arena;
  arena_init(&arena);
  pb_call_t *out = convert_call(&arena, &call, USC_STATE_FIELD_ID);
  assert_non_null(out);
  assert_string_equal(out->id, call.id);
  assert_string_equal(out->owner_id, "");

  out = convert_call(&arena, &call,
                     USC_STATE_FIELD_PUBLISHED | USC_STATE_FIELD_NONCE);
  assert_string_equal(out->id, "");
  assert_string_equal(out->nonce, "n");
  assert_non_null(out->published);
  assert_null(out->answered);
  assert_int_equal(out->n_phone_call_views, 0);

  out = convert_call(&arena, &call, USC_STATE_FIELD_ALL);
  assert_string_equal(out->extension, EXT);
  assert_string_equal(out->owner_id, "12");
  assert_string_equal(out->owner_name, "Org");
  assert_non_null(out->answered);
  assert_int_equal(out->n_phone_call_views, 1);
  assert_string_equal(out->self_link,
                      "/uapi/phoneCalls/12/" EXT "/0123456789abcdef0123");
  arena_free(&arena);
}

static void test_convert_self_link_long_names(void **state) {
  (void)state;
  char user[65];
  char ext[33];
  memset(user, 'u', 64);
  user[64] = '\0';
  memset(ext, '9', 32);
  ext[32] = '\0';
  usc_state_call_t call = plain_call(NULL, 0);
  call.user = user;
  call.extension = ext;
  arena_t arena;
  arena_init(&arena);
  pb_call_t *out = convert_call(&arena, &call, USC_STATE_FIELD_LINKS);
  assert_non_null(out);
  char want[160];
  snprintf(want, sizeof(want), "/uapi/phoneCalls/%s/%s/%s", user, ext, call.id);
  assert_string_equal(out->self_link, want);
  assert_string_equal(out->id, "");
  arena_free(&arena);
}

/* What convert builds is a message protobuf-c packs, and reads back. */
static void test_convert_round_trip(void **state) {
  (void)state;
  usc_state_view_t views[2] = {plain_view(), plain_view()};
  views[1].holder = 1;
  views[1].on_hold = 1700000001 * SEC;
  usc_state_call_t call = plain_call(views, 2);
  arena_t arena;
  arena_init(&arena);
  pb_call_t *out = convert_call(&arena, &call, USC_STATE_FIELD_ALL);
  assert_non_null(out);
  size_t len = protobuf_c_message_get_packed_size(&out->base);
  uint8_t *buf = arena_alloc(&arena, len);
  assert_non_null(buf);
  protobuf_c_message_pack(&out->base, buf);
  pb_call_t *back = (pb_call_t *)protobuf_c_message_unpack(
      PB(phone_call), &arena.allocator, len, buf);
  assert_non_null(back);
  assert_string_equal(back->id, call.id);
  assert_int_equal(back->n_phone_call_views, 2);
  assert_int_equal(back->phone_call_views[1]->holder->value, 1);
  assert_null(back->phone_call_views[0]->holder);
  arena_free(&arena);
}

/* Whichever allocation of a conversion fails, the result is NULL, never a
 * call with a field missing. The first block is filled up to leave `room`
 * bytes, so the one failing allocation (a new block) comes at each step of
 * the conversion in turn. */
static void test_convert_allocation_failure(void **state) {
  (void)state;
  usc_state_view_t views[2] = {plain_view(), plain_view()};
  for (size_t i = 0; i < 2; i++) {
    views[i].ringing = views[i].recording = views[i].answered = SEC;
    views[i].parked = views[i].on_hold = SEC;
    views[i].parked_pos = views[i].holder = 1;
  }
  usc_state_call_t call = plain_call(views, 2);
  call.answered = call.published;
  arena_t arena;
  arena_init(&arena);
  size_t failed = 0;
  for (size_t room = 0; room <= 4096; room += 16) {
    arena_reset(&arena);
    assert_non_null(arena_alloc(&arena, ARENA_BLOCK - room));
    usc_alloc_fail_at(1);
    pb_call_t *out = convert_call(&arena, &call, USC_STATE_FIELD_ALL);
    if (usc_alloc_fail_at(0) > 0) {
      assert_null(out);
      failed++;
    } else {
      assert_non_null(out);
      assert_int_equal(out->n_phone_call_views, 2);
    }
  }
  assert_true(failed > 10);
  arena_free(&arena);
}

/* ---- arena ---- */

static bool aligned(const void *p) { return (uintptr_t)p % 16 == 0; }

static void test_arena_alignment(void **state) {
  (void)state;
  static const size_t sizes[] = {1, 3, 16, 17, 100, 7, 1000, 33};
  unsigned char *p[USC_ARRAY_LEN(sizes)];
  arena_t arena;
  arena_init(&arena);
  for (size_t i = 0; i < USC_ARRAY_LEN(sizes); i++) {
    p[i] = arena_alloc(&arena, sizes[i]);
    assert_non_null(p[i]);
    assert_true(aligned(p[i]));
    memset(p[i], (int)i, sizes[i]);
  }
  for (size_t i = 0; i < USC_ARRAY_LEN(sizes); i++)
    for (size_t j = 0; j < sizes[i]; j++)
      assert_int_equal(p[i][j], i);
  arena_free(&arena);
}

static void test_arena_reuse_after_reset(void **state) {
  (void)state;
  arena_t arena;
  arena_init(&arena);
  void *first = arena_alloc(&arena, 100);
  assert_non_null(arena_alloc(&arena, 200));
  arena_reset(&arena);
  /* The first block is kept: no allocation needed. */
  usc_alloc_fail_at(1);
  void *again = arena_alloc(&arena, 100);
  usc_alloc_fail_at(0);
  assert_ptr_equal(again, first);
  arena_free(&arena);
  arena_free(&arena); /* twice is harmless */
}

static void test_arena_large(void **state) {
  (void)state;
  arena_t arena;
  arena_init(&arena);
  unsigned char *small = arena_alloc(&arena, 10);
  unsigned char *big = arena_alloc(&arena, 4 * ARENA_BLOCK);
  assert_non_null(small);
  assert_non_null(big);
  assert_true(aligned(big));
  memset(big, 0xab, 4 * ARENA_BLOCK);
  memset(small, 0xcd, 10);
  assert_int_equal(big[4 * ARENA_BLOCK - 1], 0xab);
  assert_non_null(arena_alloc(&arena, 10));

  /* Reset frees it: a large allocation needs new memory again, while a
   * small one is served from the kept block. */
  arena_reset(&arena);
  usc_alloc_fail_at(1);
  assert_null(arena_alloc(&arena, 4 * ARENA_BLOCK));
  usc_alloc_fail_at(1);
  assert_non_null(arena_alloc(&arena, 10));
  usc_alloc_fail_at(0);
  arena_free(&arena);
}

/* A large allocation whose size is not a multiple of 16, then more than
 * the first block has left: the second must not go past the first. */
static void test_arena_large_odd_size(void **state) {
  (void)state;
  arena_t arena;
  arena_init(&arena);
  assert_non_null(arena_alloc(&arena, ARENA_BLOCK - 400));
  size_t odd = ARENA_BLOCK + 1;
  unsigned char *big = arena_alloc(&arena, odd);
  assert_non_null(big);
  memset(big, 0xab, odd);
  unsigned char *next = arena_alloc(&arena, 1000);
  assert_non_null(next);
  assert_true(aligned(next));
  memset(next, 0xcd, 1000);
  for (size_t i = 0; i < odd; i++)
    assert_int_equal(big[i], 0xab);
  arena_free(&arena);
}

static void test_arena_allocation_failure(void **state) {
  (void)state;
  arena_t arena;
  arena_init(&arena);
  /* Without a first block, a failure may be retried: NULL or usable. */
  usc_alloc_fail_at(1);
  unsigned char *p = arena_alloc(&arena, 16);
  usc_alloc_fail_at(0);
  if (p != NULL)
    memset(p, 1, 16);
  arena_free(&arena);

  arena_init(&arena);
  assert_non_null(arena_alloc(&arena, ARENA_BLOCK - 16));
  /* The first block is full: the next needs a block of its own. */
  usc_alloc_fail_at(1);
  assert_null(arena_alloc(&arena, 64));
  usc_alloc_fail_at(0);
  assert_non_null(arena_alloc(&arena, 64));
  assert_null(arena_alloc(&arena, SIZE_MAX));
  assert_null(arena_alloc(&arena, SIZE_MAX - ARENA_BLOCK + 1));
  arena_free(&arena);
}

static void test_arena_protobuf_allocator(void **state) {
  (void)state;
  Uapi__Phonecalls__V1__GetPhoneCallRequest req =
      UAPI__PHONECALLS__V1__GET_PHONE_CALL_REQUEST__INIT;
  req.extension = EXT;
  req.phone_call_id = "abc";
  uint8_t buf[64];
  size_t len = protobuf_c_message_pack(&req.base, buf);
  arena_t arena;
  arena_init(&arena);
  Uapi__Phonecalls__V1__GetPhoneCallRequest *back =
      (Uapi__Phonecalls__V1__GetPhoneCallRequest *)protobuf_c_message_unpack(
          PB(get_phone_call_request), &arena.allocator, len, buf);
  assert_non_null(back);
  assert_true(aligned(back));
  assert_string_equal(back->extension, EXT);
  assert_string_equal(back->phone_call_id, "abc");
  protobuf_c_message_free_unpacked(&back->base, &arena.allocator);
  arena_free(&arena);
}

#define ENV_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      ENV_TEST(test_unknown_method),
      ENV_TEST(test_unknown_service),
      ENV_TEST(test_malformed_path),
      ENV_TEST(test_every_method_recognized),
      ENV_TEST(test_garbage_request),
      ENV_TEST(test_two_requests_for_unary),
      ENV_TEST(test_half_close_without_request),
      ENV_TEST(test_cancel_mid_request),
      ENV_TEST(test_create_and_get),
      ENV_TEST(test_every_create_method),
      ENV_TEST(test_get_unknown_call),
      ENV_TEST(test_invalid_arguments),
      ENV_TEST(test_hold_cycle),
      ENV_TEST(test_every_action_method),
      ENV_TEST(test_action_names_in_errors),
      ENV_TEST(test_hangup),
      ENV_TEST(test_list_fields_and_paging),
      ENV_TEST(test_list_many_calls),
      ENV_TEST(test_watch_events),
      ENV_TEST(test_watch_cancel),
      ENV_TEST(test_end_streams),
      ENV_TEST(test_watch_filters),
      ENV_TEST(test_watch_invalid),
      ENV_TEST(test_watch_send_failure),
      ENV_TEST(test_reply_send_failure),
      cmocka_unit_test_setup_teardown(test_ring_delay, setup_ringing, teardown),
      ENV_TEST(test_rpc_log_line),
      ENV_TEST(test_steady_state_allocates_nothing),
      ENV_TEST(test_allocation_failures),
      ENV_TEST(test_health_check),
      ENV_TEST(test_health_check_two_requests),
      ENV_TEST(test_health_list),
      ENV_TEST(test_health_watch_shutdown),
      ENV_TEST(test_health_watch_send_failure),
      ENV_TEST(test_reflection_v1),
      ENV_TEST(test_reflection_v1alpha),
      cmocka_unit_test(test_reflection_index),
      ENV_TEST(test_reflection_streams),
      ENV_TEST(test_request_not_utf8),
      ENV_TEST(test_reflection_allocation_failures),
      cmocka_unit_test(test_convert_uapi_zero),
      cmocka_unit_test(test_convert_optional_fields),
      cmocka_unit_test(test_convert_field_mask),
      cmocka_unit_test(test_convert_self_link_long_names),
      cmocka_unit_test(test_convert_round_trip),
      cmocka_unit_test(test_convert_allocation_failure),
      cmocka_unit_test(test_arena_alignment),
      cmocka_unit_test(test_arena_reuse_after_reset),
      cmocka_unit_test(test_arena_large),
      cmocka_unit_test(test_arena_large_odd_size),
      cmocka_unit_test(test_arena_allocation_failure),
      cmocka_unit_test(test_arena_protobuf_allocator),
  };
  /* e.g. DISPATCH_TEST_FILTER='test_arena_*' to run some tests alone */
  const char *filter = getenv("DISPATCH_TEST_FILTER");
  if (filter != NULL)
    cmocka_set_test_filter(filter);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
