/* dispatch with access control (usc_dispatch_load_tokens): the decisions
 * for calls with and without tokens, users and extensions, Watch streams
 * and a tokens table replaced while they run; through the h2 handler with
 * the fake transport and the native engine. */
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

#include "grpc/health/v1/health.pb-c.h"
#include "src/base/base.h"
#include "src/dispatch/dispatch.h"
#include "src/dispatch/fake_h2.h"
#include "src/log/log.h"
#include "src/state/state.h"
#include "uapi/phonecalls/v1/phonecalls.pb-c.h"

#define SERVICE "uapi.phonecalls.v1.PhoneCallService"
#define EXT "0003*210"
#define EXT2 "0003*211"
#define OUTSIDE "0003*024" /* the other party of every call */

/* alice through one extension, through two, through all; bob through
 * all of his. */
#define ALICE "Bearer alice-token-0123456789"
#define ALICE_TWO "Bearer alice-two-token-012345"
#define ALICE_ALL "Bearer alice-all-token-012345"
#define BOB "Bearer bob-token-0123456789ab"
static const char tokens[] = "# the test's tokens\n"
                             "alice-token-0123456789 alice " EXT "\n"
                             "alice-two-token-012345 alice " EXT "," EXT2 "\n"
                             "alice-all-token-012345 alice *\n"
                             "bob-token-0123456789ab bob *\n";

#define PB(name) (&uapi__phonecalls__v1__##name##__descriptor)
#define EV(name) UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__TYPE__##name

typedef Uapi__Phonecalls__V1__PhoneCall pb_call_t;
typedef Uapi__Phonecalls__V1__ListPhoneCallsResponse pb_list_t;
typedef Uapi__Phonecalls__V1__PhoneCallEvent pb_event_t;

typedef struct {
  uv_loop_t loop;
  usc_state_t *state;
  usc_dispatch_t *dispatch;
  const usc_h2_handler_t *handler;
  usc_h2_call_t **calls;
  size_t n_calls;
  ProtobufCMessage **kept;
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
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void load(env_t *e, const char *text) {
  char error[256];
  size_t n = 0;
  int rc = usc_dispatch_load_tokens(e->dispatch, text, strlen(text), &n, error,
                                    sizeof(error));
  if (rc != 0)
    fail_msg("usc_dispatch_load_tokens: %s", error);
}

static int setup(void **state) {
  env_t *e = calloc(1, sizeof(*e));
  assert_non_null(e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  usc_state_config_t engine = {.seed = 7};
  assert_int_equal(usc_state_new(&engine, &e->state), 0);
  usc_dispatch_config_t config = {
      .loop = &e->loop,
      .state = e->state,
      .clock = wall_clock,
  };
  assert_int_equal(usc_dispatch_new(&config, &e->dispatch), 0);
  e->handler = usc_dispatch_handler();
  e->log = open_memstream(&e->log_buf, &e->log_len);
  assert_non_null(e->log);
  usc_log_init(USC_LOG_TEXT, USC_LOG_INFO, e->log);
  load(e, tokens);
  *state = e;
  return 0;
}

static void set_flag(void *flag) { *(bool *)flag = true; }

static int teardown(void **state) {
  env_t *e = *state;
  bool closed = false;
  usc_alloc_fail_at(0);
  usc_dispatch_end_streams(e->dispatch);
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

/* ---- calls ---- */

/* A whole call of `path` with `token` (an authorization value, or NULL);
 * steps stop once the call is finished. */
static usc_h2_call_t *call_path(env_t *e, const char *token, const char *path,
                                const ProtobufCMessage *request) {
  e->calls = grow(e->calls, e->n_calls, sizeof(*e->calls));
  usc_h2_call_t *c = e->calls[e->n_calls++] = fake_h2_call_new();
  c->authorization = token;
  e->handler->on_start(e->dispatch, c, path, strlen(path));
  if (!c->finished) {
    size_t len = protobuf_c_message_get_packed_size(request);
    uint8_t *data = malloc(len + 1);
    assert_non_null(data);
    protobuf_c_message_pack(request, data);
    e->handler->on_message(e->dispatch, c, data, len);
    free(data);
  }
  if (!c->finished)
    e->handler->on_half_close(e->dispatch, c);
  return c;
}

typedef struct {
  const char *name;
  const char *value; /* NULL: left unset */
} field_t;

/* A PhoneCallService call whose request has the given string fields;
 * creates also get a source and a destination. */
static usc_h2_call_t *call_fields(env_t *e, const char *token,
                                  const char *method, const field_t *fields) {
  const ProtobufCMethodDescriptor *md =
      protobuf_c_service_descriptor_get_method_by_name(PB(phone_call_service),
                                                       method);
  assert_non_null(md);
  ProtobufCMessage *request = calloc(1, md->input->sizeof_message);
  assert_non_null(request);
  protobuf_c_message_init(md->input, request);
  for (const field_t *f = fields; f->name != NULL; f++) {
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(md->input, f->name);
    assert_non_null(fd);
    if (f->value != NULL)
      *(const char **)((char *)request + fd->offset) = f->value;
  }
  char *source[] = {EXT}, *dest[] = {OUTSIDE};
  if (md->input == PB(create_phone_call_request)) {
    Uapi__Phonecalls__V1__CreatePhoneCallRequest *create = (void *)request;
    create->n_source = create->n_destination = 1;
    create->source = source;
    create->destination = dest;
  }
  char path[128];
  snprintf(path, sizeof(path), "/%s/%s", SERVICE, method);
  usc_h2_call_t *c = call_path(e, token, path, request);
  free(request);
  return c;
}

#define CALL(e, token, method, ...)                                            \
  call_fields((e), (token), (method),                                          \
              (const field_t[]){__VA_ARGS__, {NULL, NULL}})

static void expect_status(const usc_h2_call_t *c, usc_grpc_status_t status) {
  assert_true(c->finished);
  if (c->status != status)
    print_error("got %s: %s\n", usc_grpc_status_name(c->status),
                c->message != NULL ? c->message : "(no message)");
  assert_int_equal(c->status, status);
}

/* An error with its UAPI code in both places, and `message` (when not
 * NULL) as grpc-message. */
static void expect_error(const usc_h2_call_t *c, usc_grpc_status_t status,
                         const char *code, const char *message) {
  expect_status(c, status);
  assert_string_equal(fake_h2_trailer(c, "uapi-error-code"), code);
  const char *details = fake_h2_trailer(c, "grpc-status-details-bin");
  assert_non_null(details);
  assert_true(strlen(details) > 0);
  assert_int_equal(c->n_messages, 0);
  if (message != NULL)
    assert_string_equal(c->message, message);
}

static void *answer(env_t *e, const usc_h2_call_t *c,
                    const ProtobufCMessageDescriptor *d) {
  expect_status(c, USC_GRPC_OK);
  assert_int_equal(c->n_messages, 1);
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, c->messages[0].len,
                                                  c->messages[0].data);
  assert_non_null(m);
  e->kept = grow(e->kept, e->n_kept, sizeof(*e->kept));
  e->kept[e->n_kept++] = m;
  return m;
}

static pb_event_t *event(env_t *e, const usc_h2_call_t *w, size_t i) {
  assert_true(i < w->n_messages);
  ProtobufCMessage *m = protobuf_c_message_unpack(
      PB(phone_call_event), NULL, w->messages[i].len, w->messages[i].data);
  assert_non_null(m);
  e->kept = grow(e->kept, e->n_kept, sizeof(*e->kept));
  e->kept[e->n_kept++] = m;
  return (pb_event_t *)m;
}

static pb_call_t *create_as(env_t *e, const char *token, const char *user,
                            const char *ext) {
  Uapi__Phonecalls__V1__CreatePhoneCallResponse *r =
      answer(e,
             CALL(e, token, "CreateSimplePhoneCall", {"user_id", user},
                  {"extension", ext}),
             PB(create_phone_call_response));
  assert_int_equal(r->n_phone_calls, 1);
  return r->phone_calls[0];
}

static pb_list_t *list_as(env_t *e, const char *token, const char *user,
                          const char *ext) {
  return answer(
      e,
      CALL(e, token, "ListPhoneCalls", {"user_id", user}, {"extension", ext}),
      PB(list_phone_calls_response));
}

static usc_h2_call_t *watch_as(env_t *e, const char *token, const char *user,
                               const char *ext) {
  usc_h2_call_t *w =
      CALL(e, token, "WatchPhoneCalls", {"user_id", user}, {"extension", ext});
  if (w->finished)
    print_error("watch finished: %s\n", w->message ? w->message : "");
  assert_false(w->finished);
  assert_true(w->headers_sent);
  return w;
}

static bool log_has(env_t *e, const char *text) {
  fflush(e->log);
  return e->log_buf != NULL && strstr(e->log_buf, text) != NULL;
}

#define NO_TOKEN                                                               \
  "this call needs a bearer token: send 'authorization: Bearer <token>'"
#define BAD_TOKEN                                                              \
  "the bearer token is not valid: check it, or ask for a new one"

/* ---- tests ---- */

/* Every method, before any work: nothing reaches the engine. */
static void test_every_method_needs_a_token(void **state) {
  env_t *e = *state;
  const ProtobufCServiceDescriptor *svc = PB(phone_call_service);
  for (unsigned i = 0; i < svc->n_methods; i++) {
    usc_h2_call_t *c = CALL(e, NULL, svc->methods[i].name, {"extension", EXT});
    expect_error(c, USC_GRPC_UNAUTHENTICATED, "access_denied", NO_TOKEN);
    c = CALL(e, "Bearer nobody-0123456789abcdef", svc->methods[i].name,
             {"extension", EXT});
    expect_error(c, USC_GRPC_UNAUTHENTICATED, "access_denied", BAD_TOKEN);
  }
  assert_int_equal(usc_state_call_count(e->state), 0);
  assert_true(log_has(e, "CreateSimplePhoneCall code=UNAUTHENTICATED(16)"));
}

static void test_bad_tokens(void **state) {
  env_t *e = *state;
  static const char *const bad[] = {
      "",
      "Bearer",
      "Basic alice-token-0123456789",
      "alice-token-0123456789",
      "Bearer alice-token-012345678",
      "Bearer alice-token-0123456789 x",
      "Bearer Alice-token-0123456789",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    expect_error(CALL(e, bad[i], "ListPhoneCalls", {"extension", EXT}),
                 USC_GRPC_UNAUTHENTICATED, "access_denied", BAD_TOKEN);
  /* The scheme in any case, as HTTP has it. */
  list_as(e, "bearer alice-token-0123456789", "", EXT);
  assert_false(log_has(e, "alice-token"));
}

static void test_health_stays_open(void **state) {
  env_t *e = *state;
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  usc_h2_call_t *c =
      call_path(e, NULL, "/grpc.health.v1.Health/Check", &req.base);
  Grpc__Health__V1__HealthCheckResponse *h =
      answer(e, c, &grpc__health__v1__health_check_response__descriptor);
  assert_int_equal(
      h->status,
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
}

/* @me and its aliases are the token's user; so is its own id. */
static void test_me_is_the_token_user(void **state) {
  env_t *e = *state;
  static const char *const users[] = {"", "@me", "@viewer", "@owner", "alice"};
  for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
    pb_call_t *call = create_as(e, ALICE, users[i], EXT);
    assert_string_equal(call->owner_id, "alice");
    for (size_t j = 0; j < sizeof(users) / sizeof(users[0]); j++) {
      pb_call_t *got =
          answer(e,
                 CALL(e, ALICE_ALL, "GetPhoneCall", {"user_id", users[j]},
                      {"extension", EXT}, {"phone_call_id", call->id}),
                 PB(phone_call));
      assert_string_equal(got->id, call->id);
    }
  }
  assert_int_equal(list_as(e, ALICE, "@me", EXT)->total_results, 5);
  assert_int_equal(list_as(e, BOB, "@me", "@self")->total_results, 0);
}

/* bob cannot see, act on or end alice's call, nor place one for her. */
static void test_other_users_calls_are_hidden(void **state) {
  env_t *e = *state;
  pb_call_t *call = create_as(e, ALICE, "@me", EXT);
  char hidden[128];
  snprintf(hidden, sizeof(hidden),
           "phone call '%s' not found for user 'alice' and extension '@self'",
           call->id);
  expect_error(CALL(e, BOB, "GetPhoneCall", {"user_id", "alice"},
                    {"extension", "@self"}, {"phone_call_id", call->id}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", hidden);
  /* The same answer as for a call that does not exist. */
  expect_error(CALL(e, BOB, "GetPhoneCall", {"user_id", "alice"},
                    {"extension", "@self"}, {"phone_call_id", "nosuchcall"}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid",
               "phone call 'nosuchcall' not found for user 'alice' and "
               "extension '@self'");
  /* bob's own @me has no such call. */
  expect_error(CALL(e, BOB, "GetPhoneCall", {"extension", "@self"},
                    {"phone_call_id", call->id}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  expect_error(
      CALL(e, BOB, "ListPhoneCalls", {"user_id", "alice"}, {"extension", EXT}),
      USC_GRPC_NOT_FOUND, "pc_phoncall_invalid",
      "no phone calls found for user 'alice' and extension '" EXT "'");
  expect_error(CALL(e, BOB, "OnHold", {"user_id", "alice"}, {"extension", EXT},
                    {"phone_call_id", call->id}, {"phone_call_view_id", "01"}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  expect_error(CALL(e, BOB, "HangupPhoneCalls", {"user_id", "alice"},
                    {"extension", EXT}, {"phone_call_id", call->id}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  expect_error(CALL(e, BOB, "HangupPhoneCalls", {"user_id", "alice"},
                    {"extension", "@self"}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  expect_error(CALL(e, BOB, "CreateSimplePhoneCall", {"user_id", "alice"},
                    {"extension", EXT}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  expect_error(
      CALL(e, BOB, "WatchPhoneCalls", {"user_id", "alice"}, {"extension", ""}),
      USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  /* Untouched. */
  pb_list_t *mine = list_as(e, ALICE, "", EXT);
  assert_int_equal(mine->total_results, 1);
  assert_null(mine->phone_calls[0]->phone_call_views[1]->on_hold);
  assert_int_equal(usc_state_call_count(e->state), 1);
}

/* Malformed requests are INVALID_ARGUMENT whoever they name. */
static void test_malformed_stays_invalid(void **state) {
  env_t *e = *state;
  expect_error(CALL(e, BOB, "GetPhoneCall", {"user_id", "alice"},
                    {"extension", EXT}, {"phone_call_id", "bad!"}),
               USC_GRPC_INVALID_ARGUMENT, "pc_phoncall_invalid", NULL);
  expect_error(CALL(e, BOB, "GetPhoneCall", {"user_id", "alice"},
                    {"extension", "x/y"}, {"phone_call_id", "abc"}),
               USC_GRPC_INVALID_ARGUMENT, "extension_invalid", NULL);
  expect_error(CALL(e, ALICE, "GetPhoneCall", {"user_id", "a.b"},
                    {"extension", EXT}, {"phone_call_id", "abc"}),
               USC_GRPC_INVALID_ARGUMENT, "user_invalid", NULL);
  expect_error(CALL(e, ALICE, "ListPhoneCalls", {"extension", "x/y"}),
               USC_GRPC_INVALID_ARGUMENT, "extension_invalid", NULL);
  expect_error(CALL(e, ALICE, "OnHold", {"user_id", "bob"}, {"extension", EXT},
                    {"phone_call_id", "abc"}, {"phone_call_view_id", "1"}),
               USC_GRPC_INVALID_ARGUMENT, "pc_phoncallview_invalid", NULL);
  expect_error(CALL(e, BOB, "WatchPhoneCalls", {"user_id", "alice"},
                    {"extension", "x/y"}),
               USC_GRPC_INVALID_ARGUMENT, "extension_invalid", NULL);
}

static void test_extensions_of_the_token(void **state) {
  env_t *e = *state;
  pb_call_t *call = create_as(e, ALICE, "", EXT);
  create_as(e, ALICE_TWO, "", EXT2);
  /* One extension: @self is that one. */
  pb_call_t *got = answer(e,
                          CALL(e, ALICE, "GetPhoneCall", {"extension", "@self"},
                               {"phone_call_id", call->id}),
                          PB(phone_call));
  assert_string_equal(got->id, call->id);
  pb_list_t *l = list_as(e, ALICE, "", "@self");
  assert_int_equal(l->total_results, 1);
  assert_string_equal(l->phone_calls[0]->extension, EXT);
  /* Another extension of the same user is hidden. */
  expect_error(CALL(e, ALICE, "ListPhoneCalls", {"extension", EXT2}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid",
               "no phone calls found for user 'alice' and extension '" EXT2
               "'");
  expect_error(CALL(e, ALICE, "CreateSimplePhoneCall", {"extension", EXT2}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  expect_error(CALL(e, ALICE, "GetPhoneCall", {"extension", EXT2},
                    {"phone_call_id", call->id}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  expect_error(CALL(e, ALICE, "HangupPhoneCalls", {"extension", EXT2}),
               USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", NULL);
  /* A create still needs a number. */
  expect_error(CALL(e, ALICE, "CreateSimplePhoneCall", {"extension", "@self"}),
               USC_GRPC_INVALID_ARGUMENT, "extension_invalid", NULL);
  /* Two extensions: each by name, not @self. */
  assert_int_equal(list_as(e, ALICE_TWO, "", EXT)->total_results, 1);
  assert_int_equal(list_as(e, ALICE_TWO, "", EXT2)->total_results, 1);
  expect_error(CALL(e, ALICE_TWO, "ListPhoneCalls", {"extension", "@self"}),
               USC_GRPC_INVALID_ARGUMENT, "extension_invalid",
               "extension '@self' stands for every extension of the user, and "
               "this token holds only some of them: name one");
  expect_error(CALL(e, ALICE_TWO, "WatchPhoneCalls", {"extension", ""}),
               USC_GRPC_INVALID_ARGUMENT, "extension_invalid", NULL);
  /* Every extension. */
  assert_int_equal(list_as(e, ALICE_ALL, "", "@self")->total_results, 2);
  /* Hangup of @self with the one-extension token ends only its calls. */
  Uapi__Phonecalls__V1__HangupPhoneCallsResponse *hung =
      answer(e, CALL(e, ALICE, "HangupPhoneCalls", {"extension", "@self"}),
             PB(hangup_phone_calls_response));
  assert_int_equal(hung->n_phone_call_ids, 1);
  assert_string_equal(hung->phone_call_ids[0], call->id);
  assert_int_equal(usc_state_call_count(e->state), 1);
}

static void test_watch_sees_only_its_user(void **state) {
  env_t *e = *state;
  usc_h2_call_t *alice = watch_as(e, ALICE, "", "");
  usc_h2_call_t *alice_all = watch_as(e, ALICE_ALL, "@me", "@self");
  usc_h2_call_t *bob = watch_as(e, BOB, "", "");
  pb_call_t *call = create_as(e, ALICE, "", EXT);
  assert_int_equal(alice->n_messages, 1);
  assert_int_equal(event(e, alice, 0)->type, EV(CREATED));
  assert_string_equal(event(e, alice, 0)->phone_call->id, call->id);
  assert_int_equal(alice_all->n_messages, 1);
  assert_int_equal(bob->n_messages, 0);
  create_as(e, BOB, "", EXT);
  assert_int_equal(bob->n_messages, 1);
  assert_int_equal(alice->n_messages, 1);
  /* alice's other extension: not on the one-extension stream. */
  create_as(e, ALICE_TWO, "", EXT2);
  assert_int_equal(alice->n_messages, 1);
  assert_int_equal(alice_all->n_messages, 2);
}

static void test_new_table_ends_revoked_streams(void **state) {
  env_t *e = *state;
  usc_h2_call_t *alice = watch_as(e, ALICE, "", "");
  usc_h2_call_t *alice_all = watch_as(e, ALICE_ALL, "", "");
  usc_h2_call_t *bob = watch_as(e, BOB, "", "");
  load(e, "alice-token-0123456789 alice " EXT "\n"
          "alice-all-token-012345 alice " EXT "\n");
  assert_false(alice->finished);
  expect_error(bob, USC_GRPC_UNAUTHENTICATED, "access_denied",
               "the tokens file changed and no longer grants this stream what "
               "it had: open it again");
  expect_status(alice_all, USC_GRPC_UNAUTHENTICATED);
  expect_error(CALL(e, BOB, "ListPhoneCalls", {"extension", EXT}),
               USC_GRPC_UNAUTHENTICATED, "access_denied", BAD_TOKEN);
  create_as(e, ALICE, "", EXT);
  assert_int_equal(alice->n_messages, 1);

  /* A table that does not parse leaves the one in force. */
  char error[256];
  static const char bad[] = "bob-token-0123456789ab bob\n";
  assert_int_equal(usc_dispatch_load_tokens(e->dispatch, bad, strlen(bad), NULL,
                                            error, sizeof(error)),
                   USC_ERR_INVALID);
  assert_string_equal(error, "line 1: expected TOKEN USER EXTENSIONS "
                             "separated by spaces, found 2 fields");
  assert_false(alice->finished);
  list_as(e, ALICE, "", EXT);
  expect_status(CALL(e, BOB, "ListPhoneCalls", {"extension", EXT}),
                USC_GRPC_UNAUTHENTICATED);

  /* Nor does one without any token (a file caught while written). */
  assert_int_equal(usc_dispatch_load_tokens(e->dispatch, "#\n", 2, NULL, error,
                                            sizeof(error)),
                   USC_ERR_INVALID);
  list_as(e, ALICE, "", EXT);

  /* alice's token goes: her stream ends. */
  load(e, "alice-all-token-012345 alice " EXT "\n");
  expect_status(alice, USC_GRPC_UNAUTHENTICATED);
  expect_status(CALL(e, ALICE, "ListPhoneCalls", {"extension", EXT}),
                USC_GRPC_UNAUTHENTICATED);
}

static void test_load_allocation_failures(void **state) {
  env_t *e = *state;
  static const char other[] = "carol-token-0123456789 carol *\n";
  for (size_t nth = 1;; nth++) {
    char error[256];
    usc_alloc_fail_at(nth);
    int rc = usc_dispatch_load_tokens(e->dispatch, other, strlen(other), NULL,
                                      error, sizeof(error));
    usc_alloc_fail_at(0);
    if (rc == 0)
      break;
    assert_int_equal(rc, USC_ERR_NOMEM);
    list_as(e, ALICE, "", EXT); /* the previous table stays */
  }
  expect_status(CALL(e, ALICE, "ListPhoneCalls", {"extension", EXT}),
                USC_GRPC_UNAUTHENTICATED);
  list_as(e, "Bearer carol-token-0123456789", "", "@self");
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_every_method_needs_a_token),
      T(test_bad_tokens),
      T(test_health_stays_open),
      T(test_me_is_the_token_user),
      T(test_other_users_calls_are_hidden),
      T(test_malformed_stays_invalid),
      T(test_extensions_of_the_token),
      T(test_watch_sees_only_its_user),
      T(test_new_table_ends_revoked_streams),
      T(test_load_allocation_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
