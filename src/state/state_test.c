#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/base/base.h"
#include "src/state/state.h"

#define SEC INT64_C(1000000000)
#define T0 (INT64_C(1700000000) * SEC) /* 2023-11-14T22:13:20Z */

typedef char call_id_t[USC_STATE_MAX_ID_LEN + 1];

static const char *const SRC[] = {"0003*210"};
static const char *const DST[] = {"0003*211"};

/* ---- helpers ---- */

static usc_state_t *engine(const usc_state_config_t *config) {
  usc_state_t *s = NULL;
  assert_int_equal(usc_state_new(config, &s), 0);
  assert_non_null(s);
  return s;
}

static usc_state_create_t simple(const char *user, const char *ext) {
  usc_state_create_t c = {
      .kind = USC_STATE_CREATE_SIMPLE,
      .address = {.user_id = user, .extension = ext},
      .source = SRC,
      .n_source = 1,
      .destination = DST,
      .n_destination = 1,
  };
  return c;
}

static const usc_state_call_t *create_ok(usc_state_t *s,
                                         const usc_state_create_t *c,
                                         int64_t now, call_id_t id) {
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  assert_int_equal(usc_state_create(s, c, now, &call, &err), 0);
  assert_int_equal(err.status, USC_GRPC_OK);
  assert_non_null(call);
  if (id != NULL)
    strcpy(id, call->id);
  return call;
}

/* A call from 0003*210 to 0003*211 for the default user. */
static const usc_state_call_t *create_default(usc_state_t *s, int64_t now,
                                              call_id_t id) {
  usc_state_create_t c = simple("@me", "0003*210");
  return create_ok(s, &c, now, id);
}

static const usc_state_call_t *get_ok(usc_state_t *s, const char *id,
                                      int64_t now) {
  usc_state_address_t a = {.extension = "@self", .phone_call_id = id};
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  assert_int_equal(usc_state_get(s, &a, now, &call, &err), 0);
  assert_non_null(call);
  return call;
}

static usc_state_action_t action(usc_state_action_kind_t kind, const char *id,
                                 const char *view) {
  usc_state_action_t a = {
      .kind = kind,
      .address = {.extension = "0003*210", .phone_call_id = id},
      .phone_call_view_id = view,
  };
  return a;
}

static const usc_state_call_t *
act_ok(usc_state_t *s, const usc_state_action_t *a, int64_t now) {
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  int rc = usc_state_act(s, a, now, &call, &err);
  if (rc != 0)
    fail_msg("%s: %s", usc_state_action_name(a->kind), err.message);
  assert_non_null(call);
  return call;
}

static void assert_err(int rc, const usc_state_err_t *err, int want_rc,
                       usc_grpc_status_t status, const char *code) {
  assert_int_equal(rc, want_rc);
  assert_int_equal(err->status, status);
  if (code != NULL)
    assert_string_equal(err->uapi_code, code);
  else
    assert_null(err->uapi_code);
  assert_true(strlen(err->message) > 20);
}

static void act_fails(usc_state_t *s, const usc_state_action_t *a, int64_t now,
                      int want_rc, usc_grpc_status_t status, const char *code) {
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  assert_err(usc_state_act(s, a, now, &call, &err), &err, want_rc, status,
             code);
  assert_null(call);
}

static void list_ok(usc_state_t *s, const usc_state_list_t *req, int64_t now,
                    usc_state_page_t *page) {
  usc_state_err_t err;
  int rc = usc_state_list(s, req, now, page, &err);
  if (rc != 0)
    fail_msg("list: %s", err.message);
}

static usc_state_list_t list_req(const char *ext) {
  usc_state_list_t r = {.address = {.extension = ext}};
  return r;
}

/* ---- events ---- */

typedef struct {
  usc_state_event_type_t type;
  call_id_t id;
  int64_t at;
  size_t n_views;
  int status0;
} event_t;

typedef struct {
  event_t ev[64];
  size_t n;
} events_t;

static void record(void *user, usc_state_event_type_t type,
                   const usc_state_call_t *call, int64_t at) {
  events_t *e = user;
  assert_true(e->n < 64);
  event_t *ev = &e->ev[e->n++];
  ev->type = type;
  strcpy(ev->id, call->id);
  ev->at = at;
  ev->n_views = call->n_views;
  ev->status0 = call->views[0].status;
}

static usc_state_watch_t *watch_ok(usc_state_t *s, const char *user,
                                   const char *ext, events_t *e) {
  usc_state_address_t a = {.user_id = user, .extension = ext};
  usc_state_watch_t *w = NULL;
  usc_state_err_t err;
  assert_int_equal(usc_state_watch(s, &a, record, e, &w, &err), 0);
  assert_non_null(w);
  return w;
}

static void assert_event(const events_t *e, size_t i,
                         usc_state_event_type_t type, const char *id,
                         int64_t at) {
  assert_true(i < e->n);
  assert_int_equal(e->ev[i].type, type);
  assert_string_equal(e->ev[i].id, id);
  assert_int_equal(e->ev[i].at, at);
}

/* ---- engine ---- */

static void test_new_defaults(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  assert_int_equal(usc_state_call_count(s), 0);
  assert_int_equal(usc_state_advance(s, T0), 0);
  const usc_state_call_t *c = create_default(s, T0, NULL);
  assert_string_equal(c->owner_id, "1");
  assert_string_equal(c->user, "1");
  assert_string_equal(c->owner_name, "Default Organization");
  usc_state_free(s);
  usc_state_free(NULL);
}

static void test_config_strings_are_copied(void **unused) {
  (void)unused;
  char user[] = "77", org[] = "Acme";
  usc_state_config_t cfg = {.default_user = user, .owner_name = org};
  usc_state_t *s = engine(&cfg);
  strcpy(user, "xx");
  strcpy(org, "zzzz");
  const usc_state_call_t *c = create_default(s, T0, NULL);
  assert_string_equal(c->owner_id, "77");
  assert_string_equal(c->owner_name, "Acme");
  usc_state_free(s);
}

static void test_action_names(void **unused) {
  (void)unused;
  static const char *const names[] = {
      "OnHold",  "OffHold", "StartRecording", "StopRecording",
      "Park",    "UnPark",  "PickUp",         "BargeIn",
      "Whisper", "Monitor", "Transfer",       "TransferToVoicemail"};
  for (int k = USC_STATE_ON_HOLD; k <= USC_STATE_TRANSFER_TO_VOICEMAIL; k++)
    assert_string_equal(usc_state_action_name(k), names[k]);
  assert_string_equal(usc_state_action_name(99), "Unknown");
}

/* ---- create ---- */

static void assert_hex_id(const char *id) {
  assert_int_equal(strlen(id), USC_STATE_CALL_ID_LEN);
  assert_int_equal(strspn(id, "0123456789abcdef"), USC_STATE_CALL_ID_LEN);
}

static void test_create_simple(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  static const char *const src[] = {"5354353", "0003*210"};
  usc_state_create_t c = simple("", "0003*210");
  c.source = src;
  c.n_source = 2;
  c.caller_id = "John Doe <4242425>";
  c.caller_destination = "Jane <1>";
  c.nonce = "130c5a97";
  const usc_state_call_t *call = create_ok(s, &c, T0, NULL);
  assert_hex_id(call->id);
  assert_string_equal(call->extension, "0003*210");
  assert_string_equal(call->nonce, "130c5a97");
  assert_int_equal(call->published, T0);
  assert_int_equal(call->answered, T0);
  assert_int_equal(call->n_views, 2);
  const usc_state_view_t *v0 = &call->views[0], *v1 = &call->views[1];
  assert_string_equal(v0->id, "00");
  assert_string_equal(v1->id, "01");
  assert_string_equal(v0->extension, "0003*210");
  assert_string_equal(v1->extension, "0003*211");
  for (int i = 0; i < 2; i++) {
    const usc_state_view_t *v = &call->views[i];
    assert_int_equal(v->n_source, 2);
    assert_string_equal(v->source[0], "5354353");
    assert_string_equal(v->source[1], "0003*210");
    assert_int_equal(v->n_destination, 1);
    assert_string_equal(v->destination[0], "0003*211");
    assert_int_equal(v->flow, 2);
    assert_int_equal(v->status, 5);
    assert_int_equal(v->answered, T0);
    assert_int_equal(v->ringing, 0);
    assert_int_equal(v->recording, 0);
    assert_int_equal(v->parked, 0);
    assert_int_equal(v->parked_pos, 0);
    assert_null(v->parked_by);
    assert_int_equal(v->on_hold, 0);
    assert_int_equal(v->holder, 0);
    assert_int_equal(v->disposition, -1);
  }
  assert_string_equal(v0->caller_id, "John Doe <4242425>");
  assert_string_equal(v1->caller_id, "Jane <1>");
  assert_int_equal(usc_state_call_count(s), 1);
  usc_state_free(s);
}

static void test_create_unset_optionals(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  usc_state_create_t c = simple(NULL, "210");
  c.caller_id = "";
  c.nonce = "";
  const usc_state_call_t *call = create_ok(s, &c, T0, NULL);
  assert_null(call->nonce);
  assert_null(call->views[0].caller_id);
  assert_null(call->views[1].caller_id);
  c.caller_id = "Me <210>";
  call = create_ok(s, &c, T0, NULL);
  assert_string_equal(call->views[1].caller_id, "Me <210>");
  usc_state_free(s);
}

static int flow_of(const char *const *dst, size_t n, int leg) {
  usc_state_t *s = engine(NULL);
  usc_state_create_t c = simple("@me", "210");
  c.destination = dst;
  c.n_destination = n;
  int flow = create_ok(s, &c, T0, NULL)->views[leg].flow;
  usc_state_free(s);
  return flow;
}

static void test_create_flows(void **unused) {
  (void)unused;
  static const char *const ext5[] = {"12345"};
  static const char *const star[] = {"0003*2101234"};
  static const char *const pub[] = {"3235742879"};
  static const char *const six[] = {"123456"};
  static const char *const plus[] = {"+4021"};
  static const char *const mixed[] = {"211", "3235742879"};
  assert_int_equal(flow_of(ext5, 1, 0), 2);
  assert_int_equal(flow_of(ext5, 1, 1), 2);
  assert_int_equal(flow_of(star, 1, 0), 2);
  assert_int_equal(flow_of(pub, 1, 0), 4);
  assert_int_equal(flow_of(pub, 1, 1), 8);
  assert_int_equal(flow_of(six, 1, 0), 4);
  assert_int_equal(flow_of(plus, 1, 0), 4);
  assert_int_equal(flow_of(mixed, 2, 0), 4);
  assert_int_equal(flow_of(mixed, 2, 1), 8);
}

static void test_create_kinds_and_identity(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  usc_state_create_t c = simple("@me", "212");
  c.kind = USC_STATE_CREATE_CALLBACK;
  assert_string_equal(create_ok(s, &c, T0, NULL)->owner_id, "1");
  c.kind = USC_STATE_CREATE_CONFERENCE_INVITE;
  c.address.identity = "alice";
  assert_string_equal(create_ok(s, &c, T0, NULL)->owner_id, "alice");
  c.address.user_id = "42";
  assert_string_equal(create_ok(s, &c, T0, NULL)->user, "42");
  assert_int_equal(usc_state_call_count(s), 3);
  usc_state_free(s);
}

static void test_ids_deterministic_and_unique(void **unused) {
  (void)unused;
  usc_state_config_t a = {.seed = 7}, b = {.seed = 8};
  usc_state_t *s1 = engine(&a), *s2 = engine(&a), *s3 = engine(&b);
  static call_id_t ids[500];
  for (int i = 0; i < 500; i++) {
    call_id_t id2, id3;
    create_default(s1, T0, ids[i]);
    create_default(s2, T0, id2);
    create_default(s3, T0, id3);
    assert_hex_id(ids[i]);
    assert_string_equal(ids[i], id2);
    assert_string_not_equal(ids[i], id3);
    for (int j = 0; j < i; j++)
      assert_string_not_equal(ids[i], ids[j]);
  }
  usc_state_free(s1);
  usc_state_free(s2);
  usc_state_free(s3);
}

typedef struct {
  const char *user, *ext;
  const char *const *src;
  size_t n_src;
  const char *const *dst;
  size_t n_dst;
  const char *code;
} create_case_t;

static void test_create_validation(void **unused) {
  (void)unused;
  static const char *const nine[] = {"1", "2", "3", "4", "5",
                                     "6", "7", "8", "9"};
  static const char *const bad_char[] = {"12a"};
  static const char *const too_long[] = {"123456789012345678901234567890123"};
  static const char *const empty[] = {""};
  static const char *const null_entry[] = {NULL};
  static const char *const ok_signs[] = {"+40*1#"};
  const char *const u65 =
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  const create_case_t cases[] = {
      {"a/b", "210", SRC, 1, DST, 1, USC_UAPI_USER_INVALID},
      {u65, "210", SRC, 1, DST, 1, USC_UAPI_USER_INVALID},
      {"@other", "210", SRC, 1, DST, 1, USC_UAPI_USER_INVALID},
      {"a b", "", NULL, 0, NULL, 0, USC_UAPI_USER_INVALID},
      {"@me", "", SRC, 1, DST, 1, USC_UAPI_EXTENSION_INVALID},
      {"@me", NULL, SRC, 1, DST, 1, USC_UAPI_EXTENSION_INVALID},
      {"@me", "@self", SRC, 1, DST, 1, USC_UAPI_EXTENSION_INVALID},
      {"@me", "abc", SRC, 1, DST, 1, USC_UAPI_EXTENSION_INVALID},
      {"@me", "***", SRC, 1, DST, 1, USC_UAPI_EXTENSION_INVALID},
      {"@me", "123456789012345678901234567890123", SRC, 1, DST, 1,
       USC_UAPI_EXTENSION_INVALID},
      {"@me", "210", NULL, 0, NULL, 0, "pc_source_invalid"},
      {"@me", "210", nine, 9, DST, 1, "pc_source_invalid"},
      {"@me", "210", bad_char, 1, DST, 1, "pc_source_invalid"},
      {"@me", "210", too_long, 1, DST, 1, "pc_source_invalid"},
      {"@me", "210", empty, 1, DST, 1, "pc_source_invalid"},
      {"@me", "210", null_entry, 1, DST, 1, "pc_source_invalid"},
      {"@me", "210", ok_signs, 1, NULL, 0, "pc_destination_invalid"},
      {"@me", "210", SRC, 1, nine, 9, "pc_destination_invalid"},
      {"@me", "210", SRC, 1, bad_char, 1, "pc_destination_invalid"},
  };
  usc_state_t *s = engine(NULL);
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    const create_case_t *k = &cases[i];
    usc_state_create_t c = {
        .address = {.user_id = k->user, .extension = k->ext},
        .source = k->src,
        .n_source = k->n_src,
        .destination = k->dst,
        .n_destination = k->n_dst};
    const usc_state_call_t *call = NULL;
    usc_state_err_t err;
    int rc = usc_state_create(s, &c, T0, &call, &err);
    assert_err(rc, &err, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT, k->code);
    assert_null(call);
  }
  assert_int_equal(usc_state_call_count(s), 0);
  /* The bounds themselves are fine. */
  static const char *const eight[] = {"1", "2", "3", "4", "5", "6", "7", "8"};
  usc_state_create_t c = simple("@me", "12345678901234567890123456789012");
  c.source = eight;
  c.n_source = 8;
  c.destination = ok_signs;
  create_ok(s, &c, T0, NULL);
  usc_state_free(s);
}

static void test_max_calls(void **unused) {
  (void)unused;
  usc_state_config_t cfg = {.max_calls = 2};
  usc_state_t *s = engine(&cfg);
  call_id_t id;
  create_default(s, T0, id);
  create_default(s, T0, NULL);
  usc_state_create_t c = simple("@me", "210");
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  assert_err(usc_state_create(s, &c, T0, &call, &err), &err, USC_ERR_FULL,
             USC_GRPC_RESOURCE_EXHAUSTED, NULL);
  assert_non_null(strstr(err.message, "2 calls"));
  assert_null(call);
  assert_int_equal(usc_state_call_count(s), 2);
  /* Validation comes first. */
  c.address.extension = "@self";
  assert_err(usc_state_create(s, &c, T0, &call, &err), &err, USC_ERR_INVALID,
             USC_GRPC_INVALID_ARGUMENT, USC_UAPI_EXTENSION_INVALID);
  usc_state_hangup_t h = {
      .address = {.extension = "@self", .phone_call_id = id}};
  char **ids;
  size_t n;
  assert_int_equal(usc_state_hangup(s, &h, T0, &ids, &n, &err), 0);
  usc_state_ids_free(ids, n);
  create_default(s, T0, NULL);
  usc_state_free(s);
}

static void test_max_calls_default(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  usc_state_create_t c = simple("@me", "210");
  for (int i = 0; i < 100000; i++)
    create_ok(s, &c, T0, NULL);
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  assert_err(usc_state_create(s, &c, T0, &call, &err), &err, USC_ERR_FULL,
             USC_GRPC_RESOURCE_EXHAUSTED, NULL);
  assert_int_equal(usc_state_call_count(s), 100000);
  usc_state_free(s);
}

/* ---- the shared address rules, for every operation ---- */

typedef int (*addr_op_fn)(usc_state_t *s, const usc_state_address_t *a,
                          usc_state_err_t *err);

static int get_op(usc_state_t *s, const usc_state_address_t *a,
                  usc_state_err_t *err) {
  const usc_state_call_t *call = NULL;
  int rc = usc_state_get(s, a, T0, &call, err);
  assert_true(rc == 0 ? call != NULL : call == NULL);
  return rc;
}

static int act_op(usc_state_t *s, const usc_state_address_t *a,
                  usc_state_err_t *err) {
  usc_state_action_t req = {.kind = USC_STATE_START_RECORDING,
                            .address = *a,
                            .phone_call_view_id = "00"};
  const usc_state_call_t *call = NULL;
  int rc = usc_state_act(s, &req, T0, &call, err);
  /* Leave the call as it was so the next case starts alike. */
  req.kind = USC_STATE_STOP_RECORDING;
  if (rc == 0)
    assert_int_equal(usc_state_act(s, &req, T0, &call, err), 0);
  return rc;
}

static int hangup_op(usc_state_t *s, const usc_state_address_t *a,
                     usc_state_err_t *err) {
  /* A number in no call: nothing is hung up even on success. */
  usc_state_hangup_t req = {.address = *a, .phone_number = "99999"};
  char **ids = NULL;
  size_t n = 7;
  int rc = usc_state_hangup(s, &req, T0, &ids, &n, err);
  if (rc == 0)
    assert_int_equal(n, 0);
  usc_state_ids_free(ids, n);
  return rc;
}

static int list_op(usc_state_t *s, const usc_state_address_t *a,
                   usc_state_err_t *err) {
  usc_state_list_t req = {.address = *a};
  usc_state_page_t page;
  int rc = usc_state_list(s, &req, T0, &page, err);
  if (rc == 0)
    usc_state_page_free(&page);
  return rc;
}

typedef struct {
  const char *user, *ext, *id;
  int rc;
  const char *code;
} addr_case_t;

static void check_address_rules(addr_op_fn op, bool id_required,
                                bool not_found_is_error) {
  usc_state_t *s = engine(NULL);
  call_id_t id, other;
  create_default(s, T0, id);
  usc_state_create_t c = simple("12", "0003*300");
  create_ok(s, &c, T0, other);
  const char *const id65 =
      "a234567890123456789012345678901234567890123456789012345678901234x";
  const addr_case_t cases[] = {
      {"a/b", "@self", id, USC_ERR_INVALID, USC_UAPI_USER_INVALID},
      {"@you", "@self", id, USC_ERR_INVALID, USC_UAPI_USER_INVALID},
      {"a/b", "x", "-", USC_ERR_INVALID, USC_UAPI_USER_INVALID},
      {"@me", "", id, USC_ERR_INVALID, USC_UAPI_EXTENSION_INVALID},
      {"@me", NULL, id, USC_ERR_INVALID, USC_UAPI_EXTENSION_INVALID},
      {"@me", "21a", id, USC_ERR_INVALID, USC_UAPI_EXTENSION_INVALID},
      {"@me", "@all", id, USC_ERR_INVALID, USC_UAPI_EXTENSION_INVALID},
      {"@me", "x", "-", USC_ERR_INVALID, USC_UAPI_EXTENSION_INVALID},
      {"@me", "@self", "ab-c", USC_ERR_INVALID, USC_UAPI_CALL_INVALID},
      {"@me", "@self", id65, USC_ERR_INVALID, USC_UAPI_CALL_INVALID},
      {"@me", "@self", "b817d2618fe6f1804333", USC_ERR_NOT_FOUND,
       USC_UAPI_CALL_INVALID},
      {"@me", "@self", other, USC_ERR_NOT_FOUND, USC_UAPI_CALL_INVALID},
      {"1", "0003*300", other, USC_ERR_NOT_FOUND, USC_UAPI_CALL_INVALID},
      {"@me", "0003*999", id, USC_ERR_NOT_FOUND, USC_UAPI_CALL_INVALID},
      {"@me", "@self", id, 0, NULL},
      {"", "0003*210", id, 0, NULL},
      {"@viewer", "0003*211", id, 0, NULL},
      {"@owner", "@self", id, 0, NULL},
      {NULL, "@self", id, 0, NULL},
      {"1", "@self", id, 0, NULL},
      {"12", "0003*300", other, 0, NULL},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    const addr_case_t *k = &cases[i];
    usc_state_address_t a = {
        .user_id = k->user, .extension = k->ext, .phone_call_id = k->id};
    usc_state_err_t err;
    int rc = op(s, &a, &err);
    if (k->rc == USC_ERR_NOT_FOUND && !not_found_is_error) {
      assert_int_equal(rc, 0);
      continue;
    }
    if (k->rc == 0) {
      assert_int_equal(rc, 0);
      assert_int_equal(err.status, USC_GRPC_OK);
      continue;
    }
    assert_err(rc, &err, k->rc,
               k->rc == USC_ERR_INVALID ? USC_GRPC_INVALID_ARGUMENT
                                        : USC_GRPC_NOT_FOUND,
               k->code);
  }
  usc_state_address_t missing = {.extension = "@self"};
  usc_state_err_t err;
  int rc = op(s, &missing, &err);
  if (id_required)
    assert_err(rc, &err, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
               USC_UAPI_CALL_INVALID);
  else
    assert_int_equal(rc, 0);
  assert_int_equal(usc_state_call_count(s), 2);
  usc_state_free(s);
}

static void test_get_address_rules(void **unused) {
  (void)unused;
  check_address_rules(get_op, true, true);
}

static void test_act_address_rules(void **unused) {
  (void)unused;
  check_address_rules(act_op, true, true);
}

static void test_hangup_address_rules(void **unused) {
  (void)unused;
  check_address_rules(hangup_op, false, true);
}

static void test_list_address_rules(void **unused) {
  (void)unused;
  check_address_rules(list_op, false, false);
}

static void test_not_found_message(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  usc_state_address_t a = {.extension = "0003*210", .phone_call_id = "abc"};
  const usc_state_call_t *call;
  usc_state_err_t err;
  assert_int_equal(usc_state_get(s, &a, T0, &call, &err), USC_ERR_NOT_FOUND);
  assert_string_equal(err.message, "phone call 'abc' not found for user '1' "
                                   "and extension '0003*210'");
  usc_state_free(s);
}

static void test_identity_separates_users(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  usc_state_create_t c = simple("@me", "210");
  c.address.identity = "alice";
  call_id_t id;
  create_ok(s, &c, T0, id);
  usc_state_address_t a = {
      .identity = "bob", .extension = "@self", .phone_call_id = id};
  const usc_state_call_t *call;
  usc_state_err_t err;
  assert_int_equal(usc_state_get(s, &a, T0, &call, &err), USC_ERR_NOT_FOUND);
  assert_int_equal(err.status, USC_GRPC_NOT_FOUND);
  a.identity = NULL; /* the default user "1" */
  assert_int_equal(usc_state_get(s, &a, T0, &call, &err), USC_ERR_NOT_FOUND);
  a.identity = "alice";
  assert_int_equal(usc_state_get(s, &a, T0, &call, &err), 0);
  a.identity = "bob";
  a.user_id = "alice";
  assert_int_equal(usc_state_get(s, &a, T0, &call, &err), 0);
  usc_state_free(s);
}

/* ---- actions ---- */

static void test_hold(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_ON_HOLD, id, "01");
  const usc_state_call_t *c = act_ok(s, &a, T0 + SEC);
  assert_int_equal(c->views[1].on_hold, T0 + SEC);
  assert_int_equal(c->views[1].holder, 1);
  assert_int_equal(c->views[0].on_hold, 0);
  act_fails(s, &a, T0, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
            USC_UAPI_STATE_INVALID);
  a.kind = USC_STATE_OFF_HOLD;
  c = act_ok(s, &a, T0 + 2 * SEC);
  assert_int_equal(c->views[1].on_hold, 0);
  assert_int_equal(c->views[1].holder, 0);
  act_fails(s, &a, T0, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
            USC_UAPI_STATE_INVALID);
  usc_state_free(s);
}

static void test_recording(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_STOP_RECORDING, id, "00");
  act_fails(s, &a, T0, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
            USC_UAPI_STATE_INVALID);
  a.kind = USC_STATE_START_RECORDING;
  static const char *const bad[] = {"mp3", "WAV", "wav48"};
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    a.format = bad[i];
    act_fails(s, &a, T0, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
              "pc_format_invalid");
  }
  static const char *const good[] = {NULL, "", "wav", "wav49"};
  for (size_t i = 0; i < USC_ARRAY_LEN(good); i++) {
    a.format = good[i];
    a.kind = USC_STATE_START_RECORDING;
    assert_int_equal(act_ok(s, &a, T0 + 5)->views[0].recording, T0 + 5);
    act_fails(s, &a, T0, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
              USC_UAPI_STATE_INVALID);
    a.kind = USC_STATE_STOP_RECORDING;
    assert_int_equal(act_ok(s, &a, T0 + 6)->views[0].recording, 0);
  }
  usc_state_free(s);
}

static void test_park_and_unpark(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_UNPARK, id, "01");
  a.send_call_to = "0003*024";
  act_fails(s, &a, T0, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
            USC_UAPI_STATE_INVALID);
  a.kind = USC_STATE_PARK;
  const usc_state_call_t *c = act_ok(s, &a, T0 + SEC);
  assert_int_equal(c->views[1].parked, T0 + SEC);
  assert_int_equal(c->views[1].parked_pos, 1);
  assert_string_equal(c->views[1].parked_by, "0003*210");
  act_fails(s, &a, T0, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
            USC_UAPI_STATE_INVALID);
  a.kind = USC_STATE_UNPARK;
  c = act_ok(s, &a, T0 + 2 * SEC);
  assert_int_equal(c->views[1].parked, 0);
  assert_int_equal(c->views[1].parked_pos, 0);
  assert_null(c->views[1].parked_by);
  assert_string_equal(c->views[1].extension, "0003*024");
  /* Unparked twice: the extension the first UnPark wrote is replaced. */
  a.kind = USC_STATE_PARK;
  a.address.extension = "@self";
  c = act_ok(s, &a, T0 + 3 * SEC);
  assert_string_equal(c->views[1].parked_by, "0003*024");
  a.kind = USC_STATE_UNPARK;
  a.send_call_to = "0003*025";
  c = act_ok(s, &a, T0 + 4 * SEC);
  assert_string_equal(c->views[1].extension, "0003*025");
  assert_int_equal(usc_state_advance(s, T0 + 4 * SEC), 0);
  usc_state_free(s);
}

static void test_park_positions(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t a_id, b_id, other;
  create_default(s, T0, a_id);
  create_default(s, T0, b_id);
  usc_state_create_t c = simple("12", "0003*210");
  create_ok(s, &c, T0, other);
  usc_state_action_t a = action(USC_STATE_PARK, a_id, "00");
  assert_int_equal(act_ok(s, &a, T0)->views[0].parked_pos, 1);
  a.phone_call_view_id = "01";
  assert_int_equal(act_ok(s, &a, T0)->views[1].parked_pos, 2);
  usc_state_action_t b = action(USC_STATE_PARK, b_id, "00");
  assert_int_equal(act_ok(s, &b, T0)->views[0].parked_pos, 3);
  /* Another user's lot is separate. */
  usc_state_action_t o = action(USC_STATE_PARK, other, "00");
  o.address.user_id = "12";
  assert_int_equal(act_ok(s, &o, T0)->views[0].parked_pos, 1);
  /* Freeing position 1 makes it the lowest free one again. */
  a.kind = USC_STATE_UNPARK;
  a.phone_call_view_id = "00";
  a.send_call_to = "0003*210";
  act_ok(s, &a, T0);
  b.phone_call_view_id = "01";
  assert_int_equal(act_ok(s, &b, T0)->views[1].parked_pos, 1);
  /* Hanging up a parked call frees its positions. */
  usc_state_hangup_t h = {
      .address = {.extension = "@self", .phone_call_id = a_id}};
  char **ids;
  size_t n;
  usc_state_err_t err;
  assert_int_equal(usc_state_hangup(s, &h, T0, &ids, &n, &err), 0);
  usc_state_ids_free(ids, n);
  call_id_t d_id;
  create_default(s, T0, d_id);
  usc_state_action_t d = action(USC_STATE_PARK, d_id, "00");
  assert_int_equal(act_ok(s, &d, T0)->views[0].parked_pos, 2);
  usc_state_free(s);
}

static void test_park_limits(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_PARK, id, "00");
  a.has_max_in_parking = true;
  static const int32_t bad[] = {9, 3601, 0, -1};
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    a.max_in_parking = bad[i];
    act_fails(s, &a, T0, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
              "pc_maxinparking_invalid");
  }
  a.max_in_parking = 10;
  act_ok(s, &a, T0);
  a.phone_call_view_id = "01";
  a.max_in_parking = 3600;
  act_ok(s, &a, T0);
  assert_int_equal(usc_state_advance(s, T0), T0 + 10 * SEC);
  usc_state_free(s);
}

static void test_pick_up(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_PICK_UP, id, "01");
  a.send_call_to = "0003*212";
  const usc_state_call_t *c = act_ok(s, &a, T0 + SEC);
  assert_string_equal(c->views[1].extension, "0003*212");
  assert_int_equal(c->views[1].status, 5);
  assert_int_equal(c->views[1].answered, T0); /* kept: it was answered */
  assert_int_equal(c->answered, T0);
  usc_state_free(s);
}

static void test_join_actions(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  static const usc_state_action_kind_t kinds[] = {
      USC_STATE_BARGE_IN, USC_STATE_WHISPER, USC_STATE_MONITOR};
  const usc_state_call_t *c = NULL;
  for (size_t i = 0; i < 6; i++) {
    usc_state_action_t a = action(kinds[i % 3], id, "01");
    a.send_call_to = "0003*024";
    a.caller_id = i == 0 ? "Boss <24>" : NULL;
    a.has_private = true;
    a.private_ = true;
    c = act_ok(s, &a, T0 + SEC);
    assert_int_equal(c->n_views, 3 + i);
  }
  const usc_state_view_t *v = &c->views[2];
  assert_string_equal(v->id, "02");
  assert_string_equal(v->extension, "0003*024");
  assert_int_equal(v->n_source, 1);
  assert_string_equal(v->source[0], "0003*024");
  assert_int_equal(v->n_destination, 1);
  assert_string_equal(v->destination[0], "0003*211");
  assert_int_equal(v->flow, 2);
  assert_int_equal(v->status, 5);
  assert_int_equal(v->answered, T0 + SEC);
  assert_string_equal(v->caller_id, "Boss <24>");
  assert_int_equal(v->disposition, -1);
  assert_null(c->views[3].caller_id);
  assert_string_equal(c->views[7].id, "07");
  /* Joined legs can be acted on and end with the call. */
  usc_state_action_t hold = action(USC_STATE_ON_HOLD, id, "07");
  hold.address.extension = "0003*024";
  assert_int_equal(act_ok(s, &hold, T0)->views[7].holder, 1);
  usc_state_action_t full = action(USC_STATE_BARGE_IN, id, "00");
  full.send_call_to = "0003*025";
  act_fails(s, &full, T0, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
            USC_UAPI_STATE_INVALID);
  assert_int_equal(get_ok(s, id, T0)->n_views, 8);
  usc_state_free(s);
}

static void test_join_needs_answer(void **unused) {
  (void)unused;
  usc_state_config_t cfg = {.ring_ns = 5 * SEC};
  usc_state_t *s = engine(&cfg);
  call_id_t id;
  create_default(s, T0, id);
  static const usc_state_action_kind_t kinds[] = {
      USC_STATE_BARGE_IN, USC_STATE_WHISPER, USC_STATE_MONITOR};
  usc_state_action_t a[3];
  for (size_t i = 0; i < 3; i++) {
    a[i] = action(kinds[i], id, "00");
    a[i].send_call_to = "0003*024";
    act_fails(s, &a[i], T0 + SEC, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
              USC_UAPI_STATE_INVALID);
  }
  /* Once the ringing is over, they may join. */
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(act_ok(s, &a[i], T0 + 5 * SEC)->n_views, 3 + i);
  usc_state_free(s);
}

static void test_transfer(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t hold = action(USC_STATE_ON_HOLD, id, "01");
  act_ok(s, &hold, T0);
  /* No view given: the leg of transfer_number, else 01. */
  usc_state_action_t a = action(USC_STATE_TRANSFER, id, NULL);
  a.send_call_to = "3334444";
  a.transfer_from_number = "0003*210";
  const usc_state_call_t *c = act_ok(s, &a, T0);
  assert_string_equal(c->views[1].extension, "3334444");
  assert_int_equal(c->views[1].n_destination, 1);
  assert_string_equal(c->views[1].destination[0], "3334444");
  assert_int_equal(c->views[1].on_hold, 0);
  assert_int_equal(c->views[1].holder, 0);
  assert_string_equal(c->views[0].destination[0], "0003*211");
  a.kind = USC_STATE_TRANSFER_TO_VOICEMAIL;
  a.send_call_to = "0003*299";
  a.transfer_number = "0003*210";
  c = act_ok(s, &a, T0);
  assert_string_equal(c->views[0].extension, "0003*299");
  assert_string_equal(c->views[0].destination[0], "0003*299");
  assert_string_equal(c->views[1].extension, "3334444");
  /* A view given wins; the call still matches its charged extension. */
  a.kind = USC_STATE_TRANSFER;
  a.phone_call_view_id = "01";
  a.send_call_to = "+4021";
  c = act_ok(s, &a, T0);
  assert_string_equal(c->views[1].extension, "+4021");
  assert_string_equal(c->views[1].destination[0], "+4021");
  assert_string_equal(c->views[0].extension, "0003*299");
  a.phone_call_view_id = "02";
  act_fails(s, &a, T0, USC_ERR_NOT_FOUND, USC_GRPC_NOT_FOUND,
            USC_UAPI_VIEW_INVALID);
  a.phone_call_view_id = "2";
  act_fails(s, &a, T0, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
            USC_UAPI_VIEW_INVALID);
  usc_state_free(s);
}

static void test_view_id_rules(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  for (int k = USC_STATE_ON_HOLD; k <= USC_STATE_MONITOR; k++) {
    usc_state_action_t a = action(k, id, NULL);
    a.send_call_to = "0003*024";
    act_fails(s, &a, T0, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
              USC_UAPI_VIEW_INVALID);
    static const char *const bad[] = {"", "1", "001", "0a", "x1"};
    for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
      a.phone_call_view_id = bad[i];
      act_fails(s, &a, T0, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
                USC_UAPI_VIEW_INVALID);
    }
    a.phone_call_view_id = "02";
    act_fails(s, &a, T0, USC_ERR_NOT_FOUND, USC_GRPC_NOT_FOUND,
              USC_UAPI_VIEW_INVALID);
    /* The view id's form is checked before the call is looked up, as in
     * front of UAPI; its existence after. */
    a.address.phone_call_id = "nosuchcall";
    a.phone_call_view_id = "x";
    act_fails(s, &a, T0, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
              USC_UAPI_VIEW_INVALID);
    a.phone_call_view_id = "01";
    act_fails(s, &a, T0, USC_ERR_NOT_FOUND, USC_GRPC_NOT_FOUND,
              USC_UAPI_CALL_INVALID);
  }
  usc_state_free(s);
}

static void test_send_call_to_rules(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  for (int k = USC_STATE_UNPARK; k <= USC_STATE_TRANSFER_TO_VOICEMAIL; k++) {
    usc_state_action_t a = action(k, id, "01");
    static const char *const bad[] = {NULL, "", "12#",
                                      "123456789012345678901234567890123"};
    /* Argument errors come before the state check (UnPark: not parked). */
    for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
      a.send_call_to = bad[i];
      act_fails(s, &a, T0, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
                "pc_sendcallto_invalid");
    }
    /* The view is looked up before the other arguments are checked. */
    a.phone_call_view_id = "05";
    act_fails(s, &a, T0, USC_ERR_NOT_FOUND, USC_GRPC_NOT_FOUND,
              USC_UAPI_VIEW_INVALID);
  }
  usc_state_free(s);
}

static void test_unknown_action(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t a = action((usc_state_action_kind_t)42, id, "00");
  act_fails(s, &a, T0, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT, NULL);
  usc_state_free(s);
}

/* ---- hangup ---- */

static size_t hangup(usc_state_t *s, const usc_state_hangup_t *h, int64_t now,
                     char ***ids) {
  size_t n = 99;
  usc_state_err_t err;
  int rc = usc_state_hangup(s, h, now, ids, &n, &err);
  if (rc != 0)
    fail_msg("hangup: %s", err.message);
  return n;
}

static void test_hangup_one(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t id, keep;
  create_default(s, T0, id);
  create_default(s, T0, keep);
  char **ids;
  usc_state_hangup_t h = {
      .address = {.extension = "0003*211", .phone_call_id = id},
      .phone_number = "5550000"};
  assert_int_equal(hangup(s, &h, T0, &ids), 0);
  assert_null(ids);
  assert_int_equal(usc_state_call_count(s), 2);
  h.phone_number = "0003*211"; /* a destination and a leg's extension */
  assert_int_equal(hangup(s, &h, T0, &ids), 1);
  assert_string_equal(ids[0], id);
  usc_state_ids_free(ids, 1);
  assert_int_equal(usc_state_call_count(s), 1);
  usc_state_address_t a = {.extension = "@self", .phone_call_id = id};
  const usc_state_call_t *call;
  usc_state_err_t err;
  assert_int_equal(usc_state_get(s, &a, T0, &call, &err), USC_ERR_NOT_FOUND);
  size_t n;
  assert_int_equal(usc_state_hangup(s, &h, T0, &ids, &n, &err),
                   USC_ERR_NOT_FOUND);
  assert_int_equal(err.status, USC_GRPC_NOT_FOUND);
  get_ok(s, keep, T0);
  usc_state_free(s);
}

static void test_hangup_all(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t ids_in[4], other_ext, other_user;
  static const char *const pub[] = {"3235742879"};
  for (int i = 0; i < 4; i++) {
    usc_state_create_t c = simple("@me", "0003*210");
    if (i == 2)
      c.destination = pub;
    create_ok(s, &c, T0 + (4 - i) * SEC, ids_in[i]); /* published backwards */
  }
  usc_state_create_t c = simple("@me", "0003*300");
  c.destination = pub;
  create_ok(s, &c, T0, other_ext);
  c = simple("12", "0003*210");
  create_ok(s, &c, T0, other_user);
  char **ids;
  usc_state_hangup_t h = {.address = {.extension = "0003*210"},
                          .phone_number = "3235742879"};
  assert_int_equal(hangup(s, &h, T0 + 9 * SEC, &ids), 1);
  assert_string_equal(ids[0], ids_in[2]);
  usc_state_ids_free(ids, 1);
  h.phone_number = NULL;
  assert_int_equal(hangup(s, &h, T0 + 9 * SEC, &ids), 3);
  assert_string_equal(ids[0], ids_in[3]); /* published order */
  assert_string_equal(ids[1], ids_in[1]);
  assert_string_equal(ids[2], ids_in[0]);
  usc_state_ids_free(ids, 3);
  assert_int_equal(hangup(s, &h, T0 + 9 * SEC, &ids), 0);
  assert_int_equal(usc_state_call_count(s), 2);
  h.address.extension = "@self";
  assert_int_equal(hangup(s, &h, T0 + 9 * SEC, &ids), 1);
  assert_string_equal(ids[0], other_ext);
  usc_state_ids_free(ids, 1);
  usc_state_address_t a = {
      .user_id = "12", .extension = "@self", .phone_call_id = other_user};
  const usc_state_call_t *call;
  usc_state_err_t err;
  assert_int_equal(usc_state_get(s, &a, T0, &call, &err), 0);
  usc_state_ids_free(NULL, 0);
  usc_state_free(s);
}

/* ---- list ---- */

typedef struct {
  usc_state_t *s;
  call_id_t ids[5]; /* ext 0003*210, published T0 + i s */
  call_id_t other_ext, other_user;
} listing_t;

static void listing(listing_t *l) {
  l->s = engine(NULL);
  for (int i = 0; i < 5; i++)
    create_default(l->s, T0 + i * SEC, l->ids[i]);
  usc_state_create_t c = simple("@me", "0003*300");
  static const char *const dst[] = {"0003*301"};
  c.destination = dst;
  create_ok(l->s, &c, T0 + 2 * SEC, l->other_ext);
  c = simple("12", "0003*210");
  create_ok(l->s, &c, T0, l->other_user);
}

/* Lists and checks the page holds exactly the calls of `want` (indexes
 * into l->ids, -1 ends), in that order. */
static void expect_page(listing_t *l, const usc_state_list_t *req,
                        const int *want) {
  usc_state_page_t page;
  list_ok(l->s, req, T0 + 10 * SEC, &page);
  size_t n = 0;
  for (; want[n] >= 0; n++) {
    assert_true(n < page.n_calls);
    assert_string_equal(page.calls[n]->id, l->ids[want[n]]);
  }
  assert_int_equal(page.n_calls, n);
  usc_state_page_free(&page);
}

static void test_list_defaults_and_paging(void **unused) {
  (void)unused;
  listing_t l;
  listing(&l);
  usc_state_list_t req = list_req("0003*210");
  usc_state_page_t page;
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.n_calls, 5);
  assert_int_equal(page.total_results, 5);
  assert_int_equal(page.items_per_page, 20);
  assert_int_equal(page.start_index, 0);
  assert_int_equal(page.field_mask, USC_STATE_FIELD_ALL);
  for (int i = 0; i < 5; i++)
    assert_string_equal(page.calls[i]->id, l.ids[i]);
  usc_state_page_free(&page);
  assert_null(page.calls);
  req.has_count = true;
  req.count = 2;
  req.has_start_index = true;
  req.start_index = 1;
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.n_calls, 2);
  assert_int_equal(page.total_results, 5);
  assert_int_equal(page.items_per_page, 2);
  assert_int_equal(page.start_index, 1);
  assert_string_equal(page.calls[0]->id, l.ids[1]);
  assert_string_equal(page.calls[1]->id, l.ids[2]);
  usc_state_page_free(&page);
  req.start_index = 5;
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.n_calls, 0);
  assert_int_equal(page.total_results, 5);
  usc_state_page_free(&page);
  /* descending reverses the whole order, then pages. */
  req.sort_order = "descending";
  req.start_index = 0;
  expect_page(&l, &req, (const int[]){4, 3, -1});
  req.sort_order = "ascending";
  expect_page(&l, &req, (const int[]){0, 1, -1});
  req.sort_order = "";
  req.has_count = false;
  req.has_start_index = false;
  expect_page(&l, &req, (const int[]){0, 1, 2, 3, 4, -1});
  /* @self: every call of the user, whatever the extension. */
  req.address.extension = "@self";
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.total_results, 6);
  usc_state_page_free(&page);
  req.address.extension = "0003*301";
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.total_results, 1);
  assert_string_equal(page.calls[0]->id, l.other_ext);
  usc_state_page_free(&page);
  usc_state_free(l.s);
}

static void test_list_one_call(void **unused) {
  (void)unused;
  listing_t l;
  listing(&l);
  usc_state_list_t req = list_req("@self");
  req.address.phone_call_id = l.ids[3];
  expect_page(&l, &req, (const int[]){3, -1});
  req.address.extension = "0003*300"; /* the call is not on it */
  expect_page(&l, &req, (const int[]){-1});
  req.address.extension = "@self";
  req.address.phone_call_id = l.other_user;
  expect_page(&l, &req, (const int[]){-1});
  req.address.phone_call_id = "nosuchcall";
  usc_state_page_t page;
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.n_calls, 0);
  assert_int_equal(page.total_results, 0);
  usc_state_page_free(&page);
  req.address.phone_call_id = l.ids[3];
  req.has_start_index = true;
  req.start_index = 1;
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.n_calls, 0);
  assert_int_equal(page.total_results, 1);
  usc_state_page_free(&page);
  usc_state_free(l.s);
}

static void test_list_published_order(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t late, early, tie1, tie2;
  create_default(s, T0 + 10 * SEC, late);
  create_default(s, T0 + 5 * SEC, early);
  create_default(s, T0 + 7 * SEC, tie1);
  create_default(s, T0 + 7 * SEC, tie2);
  usc_state_list_t req = list_req("@self");
  usc_state_page_t page;
  list_ok(s, &req, T0, &page);
  assert_int_equal(page.n_calls, 4);
  assert_string_equal(page.calls[0]->id, early);
  assert_string_equal(page.calls[1]->id, tie1);
  assert_string_equal(page.calls[2]->id, tie2);
  assert_string_equal(page.calls[3]->id, late);
  usc_state_page_free(&page);
  usc_state_free(s);
}

static size_t count_ids(const listing_t *l, int sign, const char *v) {
  size_t n = 0;
  for (int i = 0; i < 5; i++) {
    int cmp = strcmp(l->ids[i], v);
    n += sign > 0 ? cmp > 0 : cmp < 0;
  }
  return n;
}

static int32_t total_for(listing_t *l, const char *by, const char *op,
                         const char *value) {
  usc_state_list_t req = list_req("0003*210");
  req.filter_by = by;
  req.filter_op = op;
  req.filter_value = value;
  usc_state_page_t page;
  list_ok(l->s, &req, T0, &page);
  for (size_t i = 0; i < page.n_calls; i++)
    assert_string_equal(page.calls[i]->extension, "0003*210");
  usc_state_page_free(&page);
  return page.total_results;
}

static void test_list_filter_id(void **unused) {
  (void)unused;
  listing_t l;
  listing(&l);
  assert_int_equal(total_for(&l, "id", "equals", l.ids[2]), 1);
  assert_int_equal(total_for(&l, "id", "equals", l.other_ext), 0);
  assert_int_equal(total_for(&l, "id", "greaterThan", l.ids[2]),
                   count_ids(&l, 1, l.ids[2]));
  assert_int_equal(total_for(&l, "id", "lessThan", l.ids[2]),
                   count_ids(&l, -1, l.ids[2]));
  assert_int_equal(total_for(&l, "id", "greaterThan", "0"), 5);
  assert_int_equal(total_for(&l, "id", "lessThan", "0"), 0);
  assert_int_equal(total_for(&l, "id", "present", NULL), 5);
  assert_int_equal(total_for(&l, "id", "startsWith", l.ids[1]), 1);
  char prefix[3] = {l.ids[1][0], l.ids[1][1], '\0'};
  assert_true(total_for(&l, "id", "startsWith", prefix) >= 1);
  assert_int_equal(total_for(&l, "id", "startsWith", "g"), 0);
  char middle[9];
  memcpy(middle, l.ids[3] + 6, 8);
  middle[8] = '\0';
  assert_int_equal(total_for(&l, "id", "contains", middle), 1);
  assert_int_equal(total_for(&l, "id", "startsWith", middle), 0);
  assert_int_equal(total_for(&l, "id", "contains", "xyz"), 0);
  char in[256];
  snprintf(in, sizeof in, "%s, %s ,nope,,%s", l.ids[0], l.ids[4], l.other_user);
  assert_int_equal(total_for(&l, "id", "inArray", in), 2);
  usc_state_list_t req = list_req("0003*210");
  req.filter_by = "id";
  req.filter_op = "inArray";
  req.filter_value = in;
  req.sort_order = "descending";
  expect_page(&l, &req, (const int[]){4, 0, -1});
  usc_state_free(l.s);
}

static void test_list_filter_published(void **unused) {
  (void)unused;
  listing_t l;
  listing(&l);
  const char *by = "published";
  /* T0 + 2 s is 2023-11-14T22:13:22Z. */
  assert_int_equal(total_for(&l, by, "equals", "2023-11-14T22:13:22Z"), 1);
  assert_int_equal(total_for(&l, by, "equals", "2023-11-15T00:13:22+02:00"), 1);
  assert_int_equal(total_for(&l, by, "equals", "2023-11-14T21:13:22-01:00"), 1);
  assert_int_equal(total_for(&l, by, "equals", "2023-11-14t22:13:22.000z"), 1);
  assert_int_equal(total_for(&l, by, "equals", "2023-11-14T22:13:22.001Z"), 0);
  assert_int_equal(total_for(&l, by, "greaterThan", "2023-11-14T22:13:22Z"), 2);
  assert_int_equal(total_for(&l, by, "lessThan", "2023-11-14T22:13:22.5Z"), 3);
  assert_int_equal(total_for(&l, by, "lessThan", "2023-11-14T22:13:20Z"), 0);
  assert_int_equal(total_for(&l, by, "present", ""), 5);
  assert_int_equal(total_for(&l, by, "startsWith", "2023-11-14T22:13:21Z"), 1);
  assert_int_equal(total_for(&l, by, "contains", "2023-11-14T22:13:23Z"), 1);
  assert_int_equal(total_for(&l, by, "inArray",
                             "2023-11-14T22:13:20Z, 2023-11-14T23:13:24+01:00"),
                   2);
  /* Sub-second published times; digits past nanoseconds are dropped. */
  create_default(l.s, T0 + SEC / 2, NULL);
  assert_int_equal(total_for(&l, by, "equals", "2023-11-14T22:13:20.5Z"), 1);
  assert_int_equal(
      total_for(&l, by, "equals", "2023-11-14T22:13:20.5000000009Z"), 1);
  assert_int_equal(total_for(&l, by, "greaterThan", "2023-11-14T22:13:20Z"), 5);
  /* Leap day and distant dates parse. */
  assert_int_equal(total_for(&l, by, "lessThan", "2024-02-29T00:00:00Z"), 6);
  assert_int_equal(total_for(&l, by, "greaterThan", "2000-02-29T00:00:00Z"), 6);
  assert_int_equal(total_for(&l, by, "greaterThan", "0000-01-01T00:00:00Z"), 6);
  assert_int_equal(total_for(&l, by, "lessThan", "9999-12-31T23:59:60Z"), 6);
  assert_int_equal(total_for(&l, by, "greaterThan", "2023-11-14T22:13:24Z"), 0);
  usc_state_free(l.s);
}

typedef struct {
  int32_t count, start;
  const char *by, *op, *value, *sort, *field;
  const char *code;
} list_case_t;

static void test_list_validation(void **unused) {
  (void)unused;
  listing_t l;
  listing(&l);
  const char *ts = "2023-11-14T22:13:22Z";
  const list_case_t cases[] = {
      {0, 0, NULL, NULL, NULL, NULL, NULL, "count_invalid"},
      {5001, 0, NULL, NULL, NULL, NULL, NULL, "count_invalid"},
      {-3, 0, NULL, NULL, NULL, NULL, NULL, "count_invalid"},
      {20, -1, NULL, NULL, NULL, NULL, NULL, "startindex_invalid"},
      {20, 5001, NULL, NULL, NULL, NULL, NULL, "startindex_invalid"},
      {0, -1, "x", "y", NULL, "z", "w", "count_invalid"},
      {20, 0, "name", "equals", "a", NULL, NULL, "filterby_invalid"},
      {20, 0, "ID", "equals", "a", NULL, NULL, "filterby_invalid"},
      {20, 0, NULL, "equals", "a", NULL, NULL, "filterby_invalid"},
      {20, 0, "", "bogus", "a", NULL, NULL, "filterby_invalid"},
      {20, 0, "id", NULL, "a", NULL, NULL, "filterop_invalid"},
      {20, 0, "id", "", "a", NULL, NULL, "filterop_invalid"},
      {20, 0, "id", "like", "a", NULL, NULL, "filterop_invalid"},
      {20, 0, "id", "Equals", "a", NULL, NULL, "filterop_invalid"},
      {20, 0, "id", "equals", NULL, NULL, NULL, "filtervalue_invalid"},
      {20, 0, "id", "inArray", "", NULL, NULL, "filtervalue_invalid"},
      {20, 0, "published", "equals", "yesterday", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "equals", "2023-11-14", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "equals", "2023-11-14T22:13:22", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "equals", "2023-11-14 22:13:22Z", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-02-29T00:00:00Z", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2100-02-29T00:00:00Z", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-13-01T00:00:00Z", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-04-31T00:00:00Z", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-01-01T24:00:00Z", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-01-01T00:60:00Z", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-01-01T00:00:00.Z", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-01-01T00:00:00+0200", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-01-01T00:00:00+24:00", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "lessThan", "2023-01-01T00:00:00Zjunk", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "inArray", "2023-11-14T22:13:22Z,soon", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "inArray", "2023-11-14T22:13:22Z,", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "greaterThan", "", NULL, NULL,
       "filtervalue_invalid"},
      {20, 0, "published", "equals", ts, "up", NULL, "sortorder_invalid"},
      {20, 0, NULL, NULL, NULL, "Descending", NULL, "sortorder_invalid"},
      {20, 0, NULL, NULL, NULL, NULL, "ownerID", "fields_invalid"},
      {20, 0, NULL, NULL, NULL, NULL, "", "fields_invalid"},
      {20, 0, NULL, NULL, NULL, NULL, "phone_call_views", "fields_invalid"},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    const list_case_t *k = &cases[i];
    const char *fields[] = {"id", k->field};
    usc_state_list_t req = {
        .address = {.extension = "@self"},
        .has_count = true,
        .count = k->count,
        .has_start_index = true,
        .start_index = k->start,
        .filter_by = k->by,
        .filter_op = k->op,
        .filter_value = k->value,
        .sort_order = k->sort,
        .fields = fields,
        .n_fields = k->field != NULL ? 2 : 0,
    };
    usc_state_page_t page = {.n_calls = 77};
    usc_state_err_t err;
    int rc = usc_state_list(l.s, &req, T0, &page, &err);
    assert_err(rc, &err, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT, k->code);
    assert_int_equal(page.n_calls, 77);
  }
  /* Limits that are accepted; a lone filter_value is ignored. */
  usc_state_list_t req = {.address = {.extension = "@self"},
                          .has_count = true,
                          .count = 5000,
                          .has_start_index = true,
                          .start_index = 5000,
                          .filter_value = "junk"};
  usc_state_page_t page;
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.total_results, 6);
  assert_int_equal(page.n_calls, 0);
  usc_state_page_free(&page);
  usc_state_free(l.s);
}

static void test_list_fields(void **unused) {
  (void)unused;
  listing_t l;
  listing(&l);
  static const char *const some[] = {"id", "published", "id"};
  static const char *const all[] = {"id",        "extension",     "ownerId",
                                    "ownerName", "published",     "answered",
                                    "nonce",     "phoneCallView", "links"};
  usc_state_list_t req = list_req("@self");
  usc_state_page_t page;
  req.fields = some;
  req.n_fields = 3;
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.field_mask,
                   USC_STATE_FIELD_ID | USC_STATE_FIELD_PUBLISHED);
  usc_state_page_free(&page);
  req.fields = all;
  req.n_fields = 9;
  list_ok(l.s, &req, T0, &page);
  assert_int_equal(page.field_mask, USC_STATE_FIELD_ALL);
  usc_state_page_free(&page);
  for (size_t i = 0; i < 9; i++) {
    req.fields = &all[i];
    req.n_fields = 1;
    list_ok(l.s, &req, T0, &page);
    assert_int_equal(page.field_mask, 1u << i);
    usc_state_page_free(&page);
  }
  usc_state_page_free(NULL);
  usc_state_free(l.s);
}

/* ---- time: ringing and parking ---- */

static void test_ring_delay(void **unused) {
  (void)unused;
  usc_state_config_t cfg = {.ring_ns = 3 * SEC};
  usc_state_t *s = engine(&cfg);
  events_t e = {0};
  watch_ok(s, "@me", NULL, &e);
  call_id_t id;
  const usc_state_call_t *c = create_default(s, T0, id);
  assert_int_equal(c->answered, 0);
  assert_int_equal(c->views[0].status, 4);
  assert_int_equal(c->views[1].status, 3);
  assert_int_equal(c->views[0].ringing, T0);
  assert_int_equal(c->views[1].ringing, T0);
  assert_int_equal(c->views[0].answered, 0);
  assert_int_equal(usc_state_advance(s, T0 + 3 * SEC - 1), T0 + 3 * SEC);
  assert_int_equal(e.n, 1);
  assert_int_equal(usc_state_advance(s, T0 + 4 * SEC), 0);
  assert_int_equal(e.n, 2);
  assert_event(&e, 1, USC_STATE_EVENT_UPDATED, id, T0 + 3 * SEC);
  assert_int_equal(e.ev[1].status0, 5);
  c = get_ok(s, id, T0 + 4 * SEC);
  assert_int_equal(c->answered, T0 + 3 * SEC);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(c->views[i].status, 5);
    assert_int_equal(c->views[i].ringing, 0);
    assert_int_equal(c->views[i].answered, T0 + 3 * SEC);
  }
  assert_int_equal(usc_state_advance(s, T0 + 100 * SEC), 0);
  assert_int_equal(e.n, 2);
  usc_state_free(s);
}

static void test_ring_applied_lazily(void **unused) {
  (void)unused;
  usc_state_config_t cfg = {.ring_ns = 2 * SEC};
  usc_state_t *s = engine(&cfg);
  events_t e = {0};
  watch_ok(s, NULL, "", &e);
  call_id_t id;
  create_default(s, T0, id);
  const usc_state_call_t *c = get_ok(s, id, T0 + 2 * SEC - 1);
  assert_int_equal(c->answered, 0);
  c = get_ok(s, id, T0 + 2 * SEC);
  assert_int_equal(c->answered, T0 + 2 * SEC);
  assert_int_equal(e.n, 2);
  assert_event(&e, 1, USC_STATE_EVENT_UPDATED, id, T0 + 2 * SEC);
  /* The other operations do the same. */
  call_id_t id2;
  create_default(s, T0 + 10 * SEC, id2);
  usc_state_list_t req = list_req("@self");
  usc_state_page_t page;
  list_ok(s, &req, T0 + 20 * SEC, &page);
  assert_int_equal(page.calls[1]->answered, T0 + 12 * SEC);
  usc_state_page_free(&page);
  assert_int_equal(usc_state_advance(s, T0 + 20 * SEC), 0);
  usc_state_free(s);
}

static void test_pick_up_while_ringing(void **unused) {
  (void)unused;
  usc_state_config_t cfg = {.ring_ns = 10 * SEC};
  usc_state_t *s = engine(&cfg);
  call_id_t id, id2;
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_PICK_UP, id, "01");
  a.send_call_to = "0003*212";
  const usc_state_call_t *c = act_ok(s, &a, T0 + SEC);
  assert_int_equal(c->views[1].status, 5);
  assert_int_equal(c->views[1].ringing, 0);
  assert_int_equal(c->views[1].answered, T0 + SEC);
  assert_int_equal(c->answered, T0 + SEC);
  assert_int_equal(c->views[0].status, 4);
  /* The other leg still answers when the delay passes. */
  assert_int_equal(usc_state_advance(s, T0 + 10 * SEC), 0);
  c = get_ok(s, id, T0 + 10 * SEC);
  assert_int_equal(c->views[0].status, 5);
  assert_int_equal(c->views[0].answered, T0 + 10 * SEC);
  assert_int_equal(c->answered, T0 + SEC);
  /* Picking up every ringing leg leaves nothing pending. */
  create_default(s, T0 + 20 * SEC, id2);
  a.address.phone_call_id = id2;
  act_ok(s, &a, T0 + 21 * SEC);
  a.phone_call_view_id = "00";
  act_ok(s, &a, T0 + 21 * SEC);
  assert_int_equal(usc_state_advance(s, T0 + 21 * SEC), 0);
  usc_state_free(s);
}

static void test_park_expiry(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t e = {0};
  watch_ok(s, "@me", "0003*210", &e);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_PARK, id, "01");
  a.has_max_in_parking = true;
  a.max_in_parking = 30;
  act_ok(s, &a, T0 + SEC);
  a.phone_call_view_id = "00";
  a.has_max_in_parking = false; /* 180 s */
  act_ok(s, &a, T0 + 2 * SEC);
  assert_int_equal(e.n, 3);
  assert_int_equal(usc_state_advance(s, T0 + 30 * SEC), T0 + 31 * SEC);
  assert_int_equal(usc_state_advance(s, T0 + 31 * SEC), T0 + 182 * SEC);
  assert_int_equal(e.n, 4);
  assert_event(&e, 3, USC_STATE_EVENT_UPDATED, id, T0 + 31 * SEC);
  const usc_state_call_t *c = get_ok(s, id, T0 + 31 * SEC);
  assert_int_equal(c->views[1].parked, 0);
  assert_int_equal(c->views[1].parked_pos, 0);
  assert_null(c->views[1].parked_by);
  assert_string_equal(c->views[1].extension, "0003*211");
  assert_int_equal(c->views[0].parked_pos, 2);
  /* The freed position is handed out again. */
  a.phone_call_view_id = "01";
  a.address.phone_call_id = id;
  assert_int_equal(act_ok(s, &a, T0 + 40 * SEC)->views[1].parked_pos, 1);
  assert_int_equal(usc_state_advance(s, T0 + 1000 * SEC), 0);
  assert_int_equal(e.n, 7);
  assert_event(&e, 5, USC_STATE_EVENT_UPDATED, id, T0 + 182 * SEC);
  assert_event(&e, 6, USC_STATE_EVENT_UPDATED, id, T0 + 220 * SEC);
  c = get_ok(s, id, T0 + 1000 * SEC);
  assert_int_equal(c->views[0].parked, 0);
  assert_int_equal(c->views[1].parked, 0);
  usc_state_free(s);
}

static void test_deadlines_in_order(void **unused) {
  (void)unused;
  usc_state_config_t cfg = {.ring_ns = 5 * SEC};
  usc_state_t *s = engine(&cfg);
  events_t e = {0};
  watch_ok(s, "@me", "@self", &e);
  call_id_t ids[6];
  /* Created out of time order, so deadlines are too. */
  static const int at[] = {4, 1, 3, 0, 2, 0};
  for (int i = 0; i < 6; i++)
    create_default(s, T0 + at[i] * SEC, ids[i]);
  call_id_t gone;
  create_default(s, T0, gone);
  usc_state_hangup_t h = {
      .address = {.extension = "@self", .phone_call_id = gone}};
  char **out;
  assert_int_equal(hangup(s, &h, T0, &out), 1);
  usc_state_ids_free(out, 1);
  e.n = 0;
  assert_int_equal(usc_state_advance(s, T0 + 4 * SEC), T0 + 5 * SEC);
  assert_int_equal(usc_state_advance(s, T0 + 100 * SEC), 0);
  assert_int_equal(e.n, 6);
  static const int order[] = {3, 5, 1, 4, 2, 0};
  for (int i = 0; i < 6; i++)
    assert_event(&e, i, USC_STATE_EVENT_UPDATED, ids[order[i]],
                 T0 + (5 + at[order[i]]) * SEC);
  /* Equal deadlines come in creation order. */
  call_id_t same[40];
  for (int i = 0; i < 40; i++)
    create_default(s, T0 + 200 * SEC, same[i]);
  e.n = 0;
  assert_int_equal(usc_state_advance(s, T0 + 205 * SEC), 0);
  assert_int_equal(e.n, 40);
  for (int i = 0; i < 40; i++)
    assert_event(&e, i, USC_STATE_EVENT_UPDATED, same[i], T0 + 205 * SEC);
  usc_state_free(s);
}

/* ---- watchers ---- */

static void test_watch_events(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t all = {0}, leg = {0}, moved = {0}, other = {0}, none = {0};
  watch_ok(s, "@me", NULL, &all);
  watch_ok(s, "1", "0003*211", &leg);
  watch_ok(s, "", "0003*999", &moved);
  watch_ok(s, "12", "@self", &other);
  usc_state_watch_t *w = watch_ok(s, "@me", "", &none);
  usc_state_unwatch(s, w);
  call_id_t id;
  create_default(s, T0, id);
  assert_int_equal(all.n, 1);
  assert_event(&all, 0, USC_STATE_EVENT_CREATED, id, T0);
  assert_int_equal(all.ev[0].n_views, 2);
  assert_int_equal(leg.n, 1);
  assert_int_equal(moved.n, 0);
  usc_state_action_t a = action(USC_STATE_ON_HOLD, id, "01");
  act_ok(s, &a, T0 + SEC);
  assert_event(&all, 1, USC_STATE_EVENT_UPDATED, id, T0 + SEC);
  assert_event(&leg, 1, USC_STATE_EVENT_UPDATED, id, T0 + SEC);
  /* Moving the leg away: its old and new extensions both hear of it. */
  a.kind = USC_STATE_TRANSFER;
  a.send_call_to = "0003*999";
  act_ok(s, &a, T0 + 2 * SEC);
  assert_event(&all, 2, USC_STATE_EVENT_UPDATED, id, T0 + 2 * SEC);
  assert_event(&leg, 2, USC_STATE_EVENT_UPDATED, id, T0 + 2 * SEC);
  assert_event(&moved, 0, USC_STATE_EVENT_UPDATED, id, T0 + 2 * SEC);
  usc_state_hangup_t h = {.address = {.extension = "@self"}};
  char **ids;
  assert_int_equal(hangup(s, &h, T0 + 3 * SEC, &ids), 1);
  usc_state_ids_free(ids, 1);
  assert_event(&all, 3, USC_STATE_EVENT_ENDED, id, T0 + 3 * SEC);
  assert_event(&moved, 1, USC_STATE_EVENT_ENDED, id, T0 + 3 * SEC);
  assert_int_equal(all.n, 4);
  assert_int_equal(leg.n, 3);
  assert_int_equal(moved.n, 2);
  assert_int_equal(other.n, 0);
  assert_int_equal(none.n, 0);
  /* Another user's calls reach only that user's watchers. */
  usc_state_create_t c = simple("12", "0003*210");
  create_ok(s, &c, T0, id);
  assert_event(&other, 0, USC_STATE_EVENT_CREATED, id, T0);
  assert_int_equal(all.n, 4);
  usc_state_free(s); /* frees the remaining watchers */
}

static void test_unwatch_any_time(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t e[3];
  memset(e, 0, sizeof e);
  usc_state_watch_t *w[3];
  for (int i = 0; i < 3; i++)
    w[i] = watch_ok(s, "@me", "@self", &e[i]);
  create_default(s, T0, NULL);
  usc_state_unwatch(s, w[1]);
  create_default(s, T0, NULL);
  usc_state_unwatch(s, w[2]);
  create_default(s, T0, NULL);
  usc_state_unwatch(s, w[0]);
  create_default(s, T0, NULL);
  assert_int_equal(e[0].n, 3);
  assert_int_equal(e[1].n, 1);
  assert_int_equal(e[2].n, 2);
  usc_state_unwatch(s, NULL);
  usc_state_free(s);
}

static void test_watch_validation(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t e = {0};
  usc_state_watch_t *w = NULL;
  usc_state_err_t err;
  usc_state_address_t a = {.user_id = "a b", .extension = "210"};
  assert_err(usc_state_watch(s, &a, record, &e, &w, &err), &err,
             USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT, USC_UAPI_USER_INVALID);
  a.user_id = "@me";
  a.extension = "21x";
  assert_err(usc_state_watch(s, &a, record, &e, &w, &err), &err,
             USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
             USC_UAPI_EXTENSION_INVALID);
  a.extension = "*";
  assert_err(usc_state_watch(s, &a, record, &e, &w, &err), &err,
             USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
             USC_UAPI_EXTENSION_INVALID);
  assert_null(w);
  usc_state_free(s);
}

/* ---- scale ---- */

static void test_many_calls(void **unused) {
  (void)unused;
  enum { N = 10000 };
  usc_state_t *s = engine(NULL);
  call_id_t *ids = malloc(N * sizeof *ids);
  assert_non_null(ids);
  for (int i = 0; i < N; i++)
    create_default(s, T0 + i, ids[i]);
  assert_int_equal(usc_state_call_count(s), N);
  for (int i = 0; i < N; i++)
    assert_string_equal(get_ok(s, ids[i], T0)->id, ids[i]);
  for (int i = 0; i < N; i += 2) {
    usc_state_hangup_t h = {
        .address = {.extension = "0003*210", .phone_call_id = ids[i]}};
    char **out;
    assert_int_equal(hangup(s, &h, T0, &out), 1);
    usc_state_ids_free(out, 1);
  }
  assert_int_equal(usc_state_call_count(s), N / 2);
  for (int i = 0; i < N; i++) {
    usc_state_address_t a = {.extension = "@self", .phone_call_id = ids[i]};
    const usc_state_call_t *c;
    usc_state_err_t err;
    assert_int_equal(usc_state_get(s, &a, T0, &c, &err),
                     i % 2 ? 0 : USC_ERR_NOT_FOUND);
  }
  usc_state_list_t req = list_req("@self");
  req.has_count = true;
  req.count = 5000;
  usc_state_page_t page;
  list_ok(s, &req, T0, &page);
  assert_int_equal(page.total_results, N / 2);
  assert_int_equal(page.n_calls, 5000);
  for (int i = 0; i < 5000; i++)
    assert_string_equal(page.calls[i]->id, ids[2 * i + 1]);
  usc_state_page_free(&page);
  free(ids);
  usc_state_free(s);
}

/* ---- calls as text ---- */

__attribute__((format(printf, 4, 5))) static void
appendf(char *out, size_t cap, size_t *len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out + *len, cap - *len, fmt, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < cap - *len);
  *len += (size_t)n;
}

static void dump_view(const usc_state_view_t *v, char *out, size_t cap,
                      size_t *len) {
  appendf(out, cap, len, "[%s %s %d %d %lld %s %lld %lld %lld %d %s %lld %d",
          v->id, v->extension, v->flow, v->status, (long long)v->ringing,
          v->caller_id ? v->caller_id : "-", (long long)v->recording,
          (long long)v->answered, (long long)v->parked, v->parked_pos,
          v->parked_by ? v->parked_by : "-", (long long)v->on_hold, v->holder);
  for (size_t i = 0; i < v->n_source; i++)
    appendf(out, cap, len, " s%s", v->source[i]);
  for (size_t i = 0; i < v->n_destination; i++)
    appendf(out, cap, len, " d%s", v->destination[i]);
  appendf(out, cap, len, " %d]", v->disposition);
}

/* ---- mirroring ---- */

static const char *const M_SRC[] = {"0003*210", "+15551234"};
static const char *const M_DST[] = {"0003*211"};
static const char LONG_ID[] =
    "A123456789b123456789C123456789d123456789E123456789f123456789G123";

/* A call as the upstream might return it, every field set. */
typedef struct {
  usc_state_view_t views[USC_STATE_MAX_VIEWS + 1];
  usc_state_call_t call;
} snap_t;

static void snapshot(snap_t *m, const char *id) {
  memset(m, 0, sizeof *m);
  m->views[0] = (usc_state_view_t){
      .id = "00",
      .extension = "0003*210",
      .source = M_SRC,
      .n_source = 2,
      .destination = M_DST,
      .n_destination = 1,
      .flow = 4,
      .status = 5,
      .caller_id = "Alice <210>",
      .recording = T0 + 3 * SEC,
      .answered = T0 + SEC,
      .on_hold = T0 + 4 * SEC,
      .holder = 1,
      .disposition = -1,
  };
  m->views[1] = (usc_state_view_t){
      .id = "01",
      .extension = "0003*211",
      .source = M_SRC,
      .n_source = 2,
      .destination = M_DST,
      .n_destination = 1,
      .flow = 8,
      .status = 3,
      .ringing = T0,
      .parked = T0 + 2 * SEC,
      .parked_pos = 1,
      .parked_by = "0003*210",
      .disposition = 2,
  };
  m->call = (usc_state_call_t){
      .id = id,
      .extension = "0003*210",
      .owner_id = "1",
      .owner_name = "Upstream Org",
      .published = T0 - 60 * SEC,
      .answered = T0 + SEC,
      .nonce = "n-1",
      .views = m->views,
      .n_views = 2,
  };
}

static int put_as(usc_state_t *s, const char *user, const usc_state_call_t *c,
                  int64_t now, usc_state_err_t *err) {
  usc_state_address_t a = {.user_id = user};
  return usc_state_put(s, &a, c, now, err);
}

static void put_ok(usc_state_t *s, const char *user, const usc_state_call_t *c,
                   int64_t now) {
  usc_state_err_t err;
  if (put_as(s, user, c, now, &err) != 0)
    fail_msg("put: %s", err.message);
  assert_int_equal(err.status, USC_GRPC_OK);
}

static void put_fails(usc_state_t *s, const usc_state_call_t *c, int want_rc,
                      usc_grpc_status_t status, const char *code) {
  usc_state_err_t err;
  size_t before = usc_state_call_count(s);
  assert_err(put_as(s, NULL, c, T0, &err), &err, want_rc, status, code);
  assert_int_equal(usc_state_call_count(s), before);
}

static const usc_state_call_t *get_as(usc_state_t *s, const char *user,
                                      const char *id) {
  usc_state_address_t a = {
      .user_id = user, .extension = "@self", .phone_call_id = id};
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  int rc = usc_state_get(s, &a, T0, &call, &err);
  return rc == 0 ? call : NULL;
}

/* A call's whole content as text, NULL and "" alike. */
static void describe(const usc_state_call_t *c, char *out, size_t cap) {
  size_t len = 0;
  appendf(out, cap, &len, "%s|%s|%s|%s|%lld|%lld|%s|%zu", c->id,
          c->extension ? c->extension : "", c->owner_id ? c->owner_id : "",
          c->owner_name ? c->owner_name : "", (long long)c->published,
          (long long)c->answered, c->nonce ? c->nonce : "", c->n_views);
  for (size_t i = 0; i < c->n_views; i++)
    dump_view(&c->views[i], out, cap, &len);
}

static void assert_same_call(const usc_state_call_t *got,
                             const usc_state_call_t *want) {
  static char a[4096], b[4096];
  assert_non_null(got);
  describe(got, a, sizeof a);
  describe(want, b, sizeof b);
  assert_string_equal(a, b);
}

static void test_put_new_replace_identical(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t e = {0};
  watch_ok(s, "@me", NULL, &e);
  snap_t m;
  snapshot(&m, "444444");
  put_ok(s, "@me", &m.call, T0);
  assert_int_equal(usc_state_call_count(s), 1);
  assert_int_equal(e.n, 1);
  assert_event(&e, 0, USC_STATE_EVENT_CREATED, "444444", T0);
  const usc_state_call_t *c = get_ok(s, "444444", T0);
  assert_same_call(c, &m.call);
  assert_string_equal(c->user, "1");
  /* Every string was copied. */
  assert_ptr_not_equal(c->id, m.call.id);
  assert_ptr_not_equal(c->views[0].source, M_SRC);
  assert_ptr_not_equal(c->views[1].parked_by, m.views[1].parked_by);
  assert_ptr_not_equal(c->owner_name, m.call.owner_name);

  /* The same content again: nothing happens. */
  put_ok(s, "", &m.call, T0 + SEC);
  assert_int_equal(e.n, 1);
  assert_ptr_equal(get_ok(s, "444444", T0), c);
  /* NULL and "" are the same; published 0 keeps the call's. */
  m.call.nonce = "n-1";
  m.views[0].parked_by = "";
  m.call.published = 0;
  put_ok(s, "1", &m.call, T0 + 2 * SEC);
  assert_int_equal(e.n, 1);
  assert_int_equal(get_ok(s, "444444", T0)->published, T0 - 60 * SEC);

  /* A change in any field is an update. */
  snapshot(&m, "444444");
  m.views[1].status = 5;
  m.views[1].ringing = 0;
  put_ok(s, "@me", &m.call, T0 + 3 * SEC);
  assert_int_equal(e.n, 2);
  assert_event(&e, 1, USC_STATE_EVENT_UPDATED, "444444", T0 + 3 * SEC);
  assert_same_call(get_ok(s, "444444", T0), &m.call);
  static const char *const other_dst[] = {"0003*212"};
  m.views[0].destination = other_dst;
  put_ok(s, "@me", &m.call, T0 + 4 * SEC);
  m.views[0].disposition = 4;
  put_ok(s, "@me", &m.call, T0 + 4 * SEC);
  m.call.nonce = NULL;
  put_ok(s, "@me", &m.call, T0 + 4 * SEC);
  m.call.published = T0 - 30 * SEC;
  put_ok(s, "@me", &m.call, T0 + 4 * SEC);
  m.call.n_views = 1;
  put_ok(s, "@me", &m.call, T0 + 4 * SEC);
  assert_int_equal(e.n, 7);
  assert_same_call(get_ok(s, "444444", T0), &m.call);
  assert_int_equal(usc_state_call_count(s), 1);
  usc_state_free(s);
}

static void test_put_published_and_order(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  call_id_t native;
  create_default(s, T0, native);
  snap_t m;
  snapshot(&m, "early");
  put_ok(s, "@me", &m.call, T0); /* published T0 - 60 s */
  snapshot(&m, "late");
  m.call.published = 0; /* gets now */
  put_ok(s, "@me", &m.call, T0 + 5 * SEC);
  assert_int_equal(get_ok(s, "late", T0)->published, T0 + 5 * SEC);
  snapshot(&m, "tie");
  m.call.published = T0;
  put_ok(s, "@me", &m.call, T0 + 5 * SEC);
  usc_state_list_t req = list_req("@self");
  usc_state_page_t page;
  list_ok(s, &req, T0 + 5 * SEC, &page);
  assert_int_equal(page.n_calls, 4);
  assert_string_equal(page.calls[0]->id, "early");
  assert_string_equal(page.calls[1]->id, native);
  assert_string_equal(page.calls[2]->id, "tie");
  assert_string_equal(page.calls[3]->id, "late");
  usc_state_page_free(&page);
  /* A replacement keeps its place among equals, or moves with published. */
  m.call.answered = T0 + 9 * SEC;
  put_ok(s, "@me", &m.call, T0 + 6 * SEC);
  m.call.id = "early";
  m.call.published = T0 + 7 * SEC;
  put_ok(s, "@me", &m.call, T0 + 7 * SEC);
  list_ok(s, &req, T0 + 7 * SEC, &page);
  assert_string_equal(page.calls[0]->id, native);
  assert_string_equal(page.calls[1]->id, "tie");
  assert_string_equal(page.calls[2]->id, "late");
  assert_string_equal(page.calls[3]->id, "early");
  usc_state_page_free(&page);
  /* The published filter sees mirrored times. */
  req.filter_by = "published";
  req.filter_op = "lessThan";
  req.filter_value = "2023-11-14T22:13:21Z";
  list_ok(s, &req, T0 + 7 * SEC, &page);
  assert_int_equal(page.total_results, 2);
  usc_state_page_free(&page);
  usc_state_free(s);
}

static void test_put_ids_of_other_lengths(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t e = {0};
  watch_ok(s, "@me", NULL, &e);
  static const char *const ids[] = {"1", "444444", "0123456789abcdef0123",
                                    "ABCDEFabcdef0123456789XYZ", LONG_ID};
  snap_t m;
  for (size_t i = 0; i < USC_ARRAY_LEN(ids); i++) {
    snapshot(&m, ids[i]);
    put_ok(s, "@me", &m.call, T0);
    assert_string_equal(get_ok(s, ids[i], T0)->id, ids[i]);
    assert_event(&e, i, USC_STATE_EVENT_CREATED, ids[i], T0);
  }
  assert_int_equal(strlen(LONG_ID), USC_STATE_MAX_ID_LEN);
  /* List by id, and a filter on it. */
  usc_state_list_t req = list_req("0003*211");
  req.address.phone_call_id = LONG_ID;
  usc_state_page_t page;
  list_ok(s, &req, T0, &page);
  assert_int_equal(page.n_calls, 1);
  assert_string_equal(page.calls[0]->id, LONG_ID);
  usc_state_page_free(&page);
  req = list_req("@self");
  req.filter_by = "id";
  req.filter_op = "inArray";
  req.filter_value = "444444,1,A123456789b123456789C123456789d123456789E1234567"
                     "89f123456789G123";
  list_ok(s, &req, T0, &page);
  assert_int_equal(page.total_results, 3);
  usc_state_page_free(&page);
  /* Bad ids. */
  static const char TOO_LONG[] =
      "A123456789b123456789C123456789d123456789E123456789f123456789G1234";
  static const char *const bad[] = {"", "abc-1", "a b", "x_y", TOO_LONG};
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    snapshot(&m, bad[i]);
    put_fails(s, &m.call, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
              USC_UAPI_CALL_INVALID);
  }
  snapshot(&m, NULL);
  put_fails(s, &m.call, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
            USC_UAPI_CALL_INVALID);
  /* Hangup returns long ids whole. */
  usc_state_hangup_t h = {.address = {.extension = "@self"}};
  char **out;
  assert_int_equal(hangup(s, &h, T0, &out), USC_ARRAY_LEN(ids));
  for (size_t i = 0; i < USC_ARRAY_LEN(ids); i++)
    assert_string_equal(out[i], ids[i]);
  usc_state_ids_free(out, USC_ARRAY_LEN(ids));
  assert_int_equal(e.n, 2 * USC_ARRAY_LEN(ids));
  usc_state_free(s);
}

static void test_put_validation(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  snap_t m;
  usc_state_err_t err;
  snapshot(&m, "444444");
  assert_err(put_as(s, "bad user!", &m.call, T0, &err), &err, USC_ERR_INVALID,
             USC_GRPC_INVALID_ARGUMENT, USC_UAPI_USER_INVALID);
  /* Views: how many, their ids. */
  for (size_t i = 2; i <= USC_STATE_MAX_VIEWS; i++) {
    m.views[i] = m.views[0];
    m.views[i].id[0] = (char)('0' + i / 10);
    m.views[i].id[1] = (char)('0' + i % 10);
  }
  m.call.n_views = USC_STATE_MAX_VIEWS + 1;
  put_fails(s, &m.call, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
            USC_UAPI_VIEW_INVALID);
  m.call.n_views = USC_STATE_MAX_VIEWS;
  put_ok(s, "@me", &m.call, T0);
  assert_int_equal(get_ok(s, "444444", T0)->n_views, USC_STATE_MAX_VIEWS);
  snapshot(&m, "555555");
  static const char *const view_ids[] = {"0", "0a", " 1", "01"};
  for (size_t i = 0; i < USC_ARRAY_LEN(view_ids); i++) {
    strcpy(m.views[1].id, view_ids[i]);
    if (i == 3)
      strcpy(m.views[0].id, "01"); /* twice */
    put_fails(s, &m.call, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
              USC_UAPI_VIEW_INVALID);
  }
  m.call.views = NULL;
  put_fails(s, &m.call, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
            USC_UAPI_VIEW_INVALID);
  /* Numbers: how many, none NULL. */
  static const char *const nine[] = {"1", "2", "3", "4", "5",
                                     "6", "7", "8", "9"};
  static const char *const with_null[] = {"1", NULL};
  snapshot(&m, "555555");
  m.views[1].source = nine;
  m.views[1].n_source = 9;
  put_fails(s, &m.call, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
            "pc_source_invalid");
  m.views[1].n_source = 8;
  m.views[0].destination = with_null;
  m.views[0].n_destination = 2;
  put_fails(s, &m.call, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
            "pc_destination_invalid");
  m.views[0].destination = NULL;
  m.views[0].n_destination = 1;
  put_fails(s, &m.call, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT,
            "pc_destination_invalid");
  m.views[0].n_destination = 0; /* none at all is fine */
  put_ok(s, "@me", &m.call, T0);
  assert_int_equal(get_ok(s, "555555", T0)->views[1].n_source, 8);
  /* No views, and unset strings, are fine too. */
  snapshot(&m, "666666");
  m.call.n_views = 0;
  m.call.extension = NULL;
  m.call.owner_id = NULL;
  m.call.owner_name = NULL;
  m.call.nonce = "";
  put_ok(s, "@me", &m.call, T0);
  const usc_state_call_t *c = get_ok(s, "666666", T0);
  assert_string_equal(c->extension, "");
  assert_string_equal(c->owner_id, "");
  assert_string_equal(c->owner_name, "");
  assert_null(c->nonce);
  assert_int_equal(c->n_views, 0);
  usc_state_action_t a = action(USC_STATE_ON_HOLD, "666666", "00");
  a.address.extension = "@self";
  act_fails(s, &a, T0, USC_ERR_NOT_FOUND, USC_GRPC_NOT_FOUND,
            USC_UAPI_VIEW_INVALID);
  assert_int_equal(usc_state_call_count(s), 3);
  usc_state_free(s);
}

static void test_put_max_calls(void **unused) {
  (void)unused;
  usc_state_config_t cfg = {.max_calls = 2};
  usc_state_t *s = engine(&cfg);
  snap_t m;
  snapshot(&m, "111");
  put_ok(s, "@me", &m.call, T0);
  create_default(s, T0, NULL);
  snapshot(&m, "222");
  put_fails(s, &m.call, USC_ERR_FULL, USC_GRPC_RESOURCE_EXHAUSTED, NULL);
  /* A replacement needs no room. */
  snapshot(&m, "111");
  m.call.answered = T0 + 5 * SEC;
  put_ok(s, "@me", &m.call, T0);
  assert_int_equal(get_ok(s, "111", T0)->answered, T0 + 5 * SEC);
  assert_int_equal(usc_state_call_count(s), 2);
  usc_state_free(s);
}

static void test_put_users(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t mine = {0}, twelve = {0};
  watch_ok(s, "@me", NULL, &mine);
  watch_ok(s, "12", NULL, &twelve);
  snap_t m;
  snapshot(&m, "444444");
  put_ok(s, "@viewer", &m.call, T0);
  assert_null(get_as(s, "12", "444444"));
  /* The same id for another user is another call. */
  m.call.nonce = "twelve";
  put_ok(s, "12", &m.call, T0);
  assert_int_equal(usc_state_call_count(s), 2);
  assert_string_equal(get_as(s, "12", "444444")->nonce, "twelve");
  assert_string_equal(get_as(s, "12", "444444")->user, "12");
  assert_string_equal(get_as(s, "@me", "444444")->nonce, "n-1");
  assert_int_equal(mine.n, 1);
  assert_int_equal(twelve.n, 1);
  /* An identity is the user of "@me". */
  usc_state_address_t a = {.identity = "alice", .user_id = "@owner"};
  usc_state_err_t err;
  assert_int_equal(usc_state_put(s, &a, &m.call, T0, &err), 0);
  assert_string_equal(get_as(s, "alice", "444444")->user, "alice");
  /* Actions, hangups and removal of one leave the others. */
  a.phone_call_id = "444444";
  a.extension = "@self";
  assert_int_equal(usc_state_remove(s, &a, "444444", T0), 0);
  assert_null(get_as(s, "alice", "444444"));
  usc_state_hangup_t h = {.address = {.user_id = "12",
                                      .extension = "@self",
                                      .phone_call_id = "444444"}};
  char **out;
  assert_int_equal(hangup(s, &h, T0, &out), 1);
  usc_state_ids_free(out, 1);
  assert_non_null(get_as(s, "1", "444444"));
  assert_int_equal(usc_state_call_count(s), 1);
  usc_state_free(s);
}

static void test_put_watchers_of_old_extension(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t old_ext = {0}, new_ext = {0};
  watch_ok(s, "@me", "0003*211", &old_ext);
  watch_ok(s, "@me", "0003*555", &new_ext);
  snap_t m;
  snapshot(&m, "444444");
  put_ok(s, "@me", &m.call, T0);
  /* Leg 01 moves to 0003*555: both watchers hear of it, then only the
   * new one. */
  m.views[1].extension = "0003*555";
  put_ok(s, "@me", &m.call, T0 + SEC);
  m.views[1].status = 5;
  put_ok(s, "@me", &m.call, T0 + 2 * SEC);
  assert_int_equal(old_ext.n, 2);
  assert_event(&old_ext, 0, USC_STATE_EVENT_CREATED, "444444", T0);
  assert_event(&old_ext, 1, USC_STATE_EVENT_UPDATED, "444444", T0 + SEC);
  assert_int_equal(new_ext.n, 2);
  assert_event(&new_ext, 0, USC_STATE_EVENT_UPDATED, "444444", T0 + SEC);
  assert_event(&new_ext, 1, USC_STATE_EVENT_UPDATED, "444444", T0 + 2 * SEC);
  usc_state_free(s);
}

static void test_actions_on_mirrored_call(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t e = {0};
  watch_ok(s, "@me", NULL, &e);
  snap_t m;
  snapshot(&m, "444444");
  put_ok(s, "@me", &m.call, T0);
  /* Nothing is derived: leg 01 rings and stays parked for good. */
  assert_int_equal(usc_state_advance(s, T0 + 100000 * SEC), 0);
  const usc_state_call_t *c = get_ok(s, "444444", T0 + 100000 * SEC);
  assert_int_equal(c->views[1].status, 3);
  assert_int_equal(c->views[1].parked, T0 + 2 * SEC);
  assert_int_equal(e.n, 1);
  int64_t now = T0 + 100000 * SEC;
  /* Leg 00 is on hold upstream: OffHold, then OnHold again. */
  usc_state_action_t a = action(USC_STATE_ON_HOLD, "444444", "00");
  act_fails(s, &a, now, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,
            USC_UAPI_STATE_INVALID);
  a.kind = USC_STATE_OFF_HOLD;
  c = act_ok(s, &a, now);
  assert_int_equal(c->views[0].on_hold, 0);
  assert_int_equal(c->views[0].holder, 0);
  a.kind = USC_STATE_STOP_RECORDING;
  assert_int_equal(act_ok(s, &a, now)->views[0].recording, 0);
  /* Parking positions count the leg parked upstream; a native park runs
   * out, the upstream one does not. */
  a.kind = USC_STATE_PARK;
  a.has_max_in_parking = true;
  a.max_in_parking = 10;
  c = act_ok(s, &a, now);
  assert_int_equal(c->views[0].parked_pos, 2);
  assert_string_equal(c->views[0].parked_by, "0003*210");
  assert_int_equal(usc_state_advance(s, now), now + 10 * SEC);
  assert_int_equal(usc_state_advance(s, now + 10 * SEC), 0);
  c = get_ok(s, "444444", now + 10 * SEC);
  assert_int_equal(c->views[0].parked, 0);
  assert_int_equal(c->views[1].parked, T0 + 2 * SEC);
  /* UnPark the upstream's parked leg. */
  a = action(USC_STATE_UNPARK, "444444", "01");
  a.address.extension = "@self";
  a.send_call_to = "0003*213";
  c = act_ok(s, &a, now + 11 * SEC);
  assert_int_equal(c->views[1].parked, 0);
  assert_null(c->views[1].parked_by);
  assert_string_equal(c->views[1].extension, "0003*213");
  /* PickUp answers the ringing leg; BargeIn adds one; Transfer moves one. */
  a.kind = USC_STATE_PICK_UP;
  a.send_call_to = "0003*214";
  c = act_ok(s, &a, now + 12 * SEC);
  assert_int_equal(c->views[1].status, 5);
  assert_int_equal(c->views[1].ringing, 0);
  assert_int_equal(c->views[1].answered, now + 12 * SEC);
  a.kind = USC_STATE_BARGE_IN;
  a.send_call_to = "0003*024";
  c = act_ok(s, &a, now + 13 * SEC);
  assert_int_equal(c->n_views, 3);
  assert_string_equal(c->views[2].id, "02");
  assert_string_equal(c->views[2].destination[0], "0003*214");
  a.kind = USC_STATE_TRANSFER;
  a.phone_call_view_id = "00";
  a.send_call_to = "0003*300";
  c = act_ok(s, &a, now + 14 * SEC);
  assert_string_equal(c->views[0].destination[0], "0003*300");
  assert_int_equal(c->views[0].n_destination, 1);
  assert_int_equal(e.n, 9);
  /* A put brings the upstream's view back. */
  put_ok(s, "@me", &m.call, now + 15 * SEC);
  assert_same_call(get_ok(s, "444444", now + 15 * SEC), &m.call);
  /* Hangup. */
  usc_state_hangup_t h = {
      .address = {.extension = "0003*211", .phone_call_id = "444444"}};
  char **out;
  assert_int_equal(hangup(s, &h, now + 16 * SEC, &out), 1);
  assert_string_equal(out[0], "444444");
  usc_state_ids_free(out, 1);
  assert_int_equal(e.n, 11);
  assert_event(&e, 9, USC_STATE_EVENT_UPDATED, "444444", now + 15 * SEC);
  assert_event(&e, 10, USC_STATE_EVENT_ENDED, "444444", now + 16 * SEC);
  assert_int_equal(usc_state_call_count(s), 0);
  usc_state_free(s);
}

/* A leg parked upstream may have no position (0) or a strange one: a
 * native park still finds the lowest free position, reading nothing
 * outside its own bookkeeping. */
static void test_park_beside_mirrored_positions(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  snap_t m;
  snapshot(&m, "777");
  m.views[1].parked_pos = 0;
  put_ok(s, "@me", &m.call, T0);
  snapshot(&m, "778");
  m.views[1].parked_pos = -3;
  put_ok(s, "@me", &m.call, T0);
  call_id_t id;
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_PARK, id, "00");
  assert_int_equal(act_ok(s, &a, T0)->views[0].parked_pos, 1);
  usc_state_free(s);
}

/* A leg that joins a mirrored call gets an id none of its legs has. */
static void test_join_mirrored_leg_ids(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  snap_t m;
  snapshot(&m, "779");
  strcpy(m.views[1].id, "02");
  put_ok(s, "@me", &m.call, T0);
  usc_state_action_t a = action(USC_STATE_BARGE_IN, "779", "00");
  a.send_call_to = "0003*299";
  const usc_state_call_t *c = act_ok(s, &a, T0);
  assert_int_equal(c->n_views, 3);
  assert_string_equal(c->views[2].id, "03");
  c = act_ok(s, &a, T0);
  assert_string_equal(c->views[3].id, "04");
  usc_state_free(s);
}

static void test_remove(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t e = {0};
  watch_ok(s, "@me", NULL, &e);
  snap_t m;
  snapshot(&m, "444444");
  put_ok(s, "@me", &m.call, T0);
  call_id_t native;
  create_default(s, T0, native);
  usc_state_address_t me = {.user_id = "@me"}, other = {.user_id = "12"};
  usc_state_address_t bad = {.user_id = "bad user!"};
  assert_int_equal(usc_state_remove(s, &other, "444444", T0),
                   USC_ERR_NOT_FOUND);
  assert_int_equal(usc_state_remove(s, &bad, "444444", T0), USC_ERR_NOT_FOUND);
  assert_int_equal(usc_state_remove(s, &me, "nope", T0), USC_ERR_NOT_FOUND);
  assert_int_equal(usc_state_remove(s, &me, "", T0), USC_ERR_NOT_FOUND);
  assert_int_equal(usc_state_remove(s, &me, NULL, T0), USC_ERR_NOT_FOUND);
  assert_int_equal(e.n, 2);
  assert_int_equal(usc_state_remove(s, &me, "444444", T0 + SEC), 0);
  assert_int_equal(e.n, 3);
  assert_event(&e, 2, USC_STATE_EVENT_ENDED, "444444", T0 + SEC);
  assert_int_equal(usc_state_remove(s, &me, "444444", T0), USC_ERR_NOT_FOUND);
  /* Native calls too, whatever the extension. */
  assert_int_equal(usc_state_remove(s, &me, native, T0 + SEC), 0);
  assert_int_equal(usc_state_call_count(s), 0);
  assert_int_equal(e.n, 4);
  usc_state_free(s);
}

static void test_retain(void **unused) {
  (void)unused;
  usc_state_t *s = engine(NULL);
  events_t e = {0};
  watch_ok(s, "@me", NULL, &e);
  snap_t m;
  /* User 1: A and B match 0003*210 (B by a view), C does not; user 12
   * has D, which does. */
  snapshot(&m, "A");
  put_ok(s, "@me", &m.call, T0);
  snapshot(&m, "B");
  m.call.extension = "0003*211";
  put_ok(s, "@me", &m.call, T0);
  snapshot(&m, "C");
  m.call.extension = "0003*999";
  m.views[0].extension = "0003*999";
  put_ok(s, "@me", &m.call, T0);
  snapshot(&m, "D");
  put_ok(s, "12", &m.call, T0);
  e.n = 0;
  usc_state_address_t a = {.user_id = "@me", .extension = "0003*210"};
  const char *const keep[] = {"A", "nope", NULL, "C", "D"};
  assert_int_equal(usc_state_retain(s, &a, keep, USC_ARRAY_LEN(keep), T0 + SEC),
                   1);
  assert_int_equal(e.n, 1);
  assert_event(&e, 0, USC_STATE_EVENT_ENDED, "B", T0 + SEC);
  assert_null(get_as(s, "1", "B"));
  assert_non_null(get_as(s, "1", "A"));
  /* Keeping them all ends nothing. */
  const char *const all[] = {"A", "C"};
  a.extension = "@self";
  assert_int_equal(usc_state_retain(s, &a, all, 2, T0 + SEC), 0);
  /* Nothing kept this time: the marks of the last call are gone. */
  a.extension = NULL;
  assert_int_equal(usc_state_retain(s, &a, NULL, 0, T0 + 2 * SEC), 2);
  assert_int_equal(e.n, 3);
  assert_int_equal(usc_state_call_count(s), 1);
  assert_non_null(get_as(s, "12", "D"));
  /* A malformed user or extension ends nothing. */
  usc_state_address_t bad_user = {.user_id = "bad user!"};
  usc_state_address_t bad_ext = {.user_id = "12", .extension = "abc"};
  assert_int_equal(usc_state_retain(s, &bad_user, NULL, 0, T0),
                   USC_ERR_INVALID);
  assert_int_equal(usc_state_retain(s, &bad_ext, NULL, 0, T0), USC_ERR_INVALID);
  assert_int_equal(usc_state_call_count(s), 1);
  usc_state_free(s);
}

/* ---- allocation failures ---- */

/* Everything the engine shows of user 1's calls, as text. */
static void dump(usc_state_t *s, char *out, size_t cap) {
  usc_state_list_t req = list_req("@self");
  usc_state_page_t page;
  size_t len = 0;
  list_ok(s, &req, T0, &page);
  appendf(out, cap, &len, "n=%zu next=%lld;", usc_state_call_count(s),
          (long long)usc_state_advance(s, T0));
  for (size_t i = 0; i < page.n_calls; i++) {
    const usc_state_call_t *c = page.calls[i];
    appendf(out, cap, &len, "{%s %s %lld %zu", c->id, c->extension,
            (long long)c->answered, c->n_views);
    for (size_t j = 0; j < c->n_views; j++)
      dump_view(&c->views[j], out, cap, &len);
    appendf(out, cap, &len, "}");
  }
  usc_state_page_free(&page);
}

typedef struct {
  const char *name;
  void (*setup)(usc_state_t *s, call_id_t id);
  int (*op)(usc_state_t *s, const char *id, usc_state_err_t *err);
} scenario_t;

static void one_call(usc_state_t *s, call_id_t id) {
  create_default(s, T0, id);
}

static void twelve_calls(usc_state_t *s, call_id_t id) {
  for (int i = 0; i < 12; i++)
    create_default(s, T0, id);
}

static void parked_call(usc_state_t *s, call_id_t id) {
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_PARK, id, "00");
  act_ok(s, &a, T0);
}

static void joined_call(usc_state_t *s, call_id_t id) {
  create_default(s, T0, id);
  usc_state_action_t a = action(USC_STATE_BARGE_IN, id, "01");
  a.send_call_to = "0003*024";
  a.caller_id = "Boss <24>";
  act_ok(s, &a, T0);
  a.kind = USC_STATE_TRANSFER;
  act_ok(s, &a, T0);
  a = action(USC_STATE_ON_HOLD, id, "02");
  act_ok(s, &a, T0);
}

static int create_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_create_t c = simple("@me", "0003*210");
  c.caller_id = "A <1>";
  c.caller_destination = "B <2>";
  c.nonce = "n1";
  const usc_state_call_t *call;
  (void)id;
  return usc_state_create(s, &c, T0, &call, err);
}

static int act_with(usc_state_t *s, usc_state_action_t *a,
                    usc_state_err_t *err) {
  const usc_state_call_t *call;
  a->send_call_to = "0003*024";
  a->caller_id = "Boss <24>";
  return usc_state_act(s, a, T0, &call, err);
}

static int park_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_action_t a = action(USC_STATE_PARK, id, "01");
  return act_with(s, &a, err);
}

static int unpark_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_action_t a = action(USC_STATE_UNPARK, id, "00");
  return act_with(s, &a, err);
}

static int pick_up_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_action_t a = action(USC_STATE_PICK_UP, id, "02");
  return act_with(s, &a, err);
}

static int barge_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_action_t a = action(USC_STATE_WHISPER, id, "02");
  return act_with(s, &a, err);
}

static int transfer_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_action_t a = action(USC_STATE_TRANSFER_TO_VOICEMAIL, id, "02");
  return act_with(s, &a, err);
}

static int list_all_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_list_t req = list_req("@self");
  usc_state_page_t page;
  (void)id;
  int rc = usc_state_list(s, &req, T0, &page, err);
  if (rc == 0)
    usc_state_page_free(&page);
  return rc;
}

static int hangup_all_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_hangup_t h = {.address = {.extension = "@self"}};
  char **ids;
  size_t n;
  (void)id;
  int rc = usc_state_hangup(s, &h, T0, &ids, &n, err);
  if (rc == 0)
    usc_state_ids_free(ids, n);
  return rc;
}

static int hangup_one_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_hangup_t h = {
      .address = {.extension = "@self", .phone_call_id = id}};
  char **ids;
  size_t n;
  int rc = usc_state_hangup(s, &h, T0, &ids, &n, err);
  if (rc == 0)
    usc_state_ids_free(ids, n);
  return rc;
}

static void mirrored_call(usc_state_t *s, call_id_t id) {
  snap_t m;
  snapshot(&m, "444444");
  put_ok(s, "@me", &m.call, T0);
  strcpy(id, "444444");
}

static void twelve_mirrored(usc_state_t *s, call_id_t id) {
  for (int i = 0; i < 12; i++) {
    snap_t m;
    snprintf(id, USC_STATE_MAX_ID_LEN + 1, "m%d", i);
    snapshot(&m, id);
    put_ok(s, "@me", &m.call, T0);
  }
}

static int put_new_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  snap_t m;
  (void)id;
  snapshot(&m, LONG_ID);
  return put_as(s, "@me", &m.call, T0, err);
}

/* Replaces the call `id` (mirrored or native) with a changed copy. */
static int put_replace_op(usc_state_t *s, const char *id,
                          usc_state_err_t *err) {
  snap_t m;
  snapshot(&m, id);
  m.views[1].status = 5;
  m.call.published = 0;
  return put_as(s, "@me", &m.call, T0, err);
}

static int put_same_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  snap_t m;
  snapshot(&m, id);
  return put_as(s, "@me", &m.call, T0, err);
}

static int act_mirrored_op(usc_state_t *s, const char *id,
                           usc_state_err_t *err) {
  usc_state_action_t a = action(USC_STATE_UNPARK, id, "01");
  return act_with(s, &a, err);
}

static int barge_mirrored_op(usc_state_t *s, const char *id,
                             usc_state_err_t *err) {
  usc_state_action_t a = action(USC_STATE_BARGE_IN, id, "00");
  return act_with(s, &a, err);
}

static int watch_op(usc_state_t *s, const char *id, usc_state_err_t *err) {
  usc_state_address_t a = {.extension = "0003*210"};
  usc_state_watch_t *w;
  (void)id;
  return usc_state_watch(s, &a, record, NULL, &w, err);
}

/* Makes the 1st, 2nd, ... allocation of the operation fail until it runs
 * without failing: each failure must leave the engine as it was. Leaks
 * are caught by the sanitizer or valgrind. */
static void run_scenario(const scenario_t *sc) {
  static char before[16384], after[16384];
  for (size_t n = 1;; n++) {
    usc_state_t *s = engine(NULL);
    call_id_t id = "";
    sc->setup(s, id);
    dump(s, before, sizeof before);
    usc_state_err_t err;
    usc_alloc_fail_at(n);
    int rc = sc->op(s, id, &err);
    size_t made = usc_alloc_fail_at(0);
    if (rc != 0) {
      assert_int_equal(rc, USC_ERR_NOMEM);
      assert_int_equal(err.status, USC_GRPC_RESOURCE_EXHAUSTED);
      dump(s, after, sizeof after);
      assert_string_equal(before, after);
    }
    usc_state_free(s);
    if (rc == 0) {
      assert_true(made < n); /* no failure was swallowed */
      break;
    }
  }
}

static void test_alloc_failures(void **unused) {
  (void)unused;
  static const scenario_t scenarios[] = {
      {"create", one_call, create_op},
      {"create+grow", twelve_calls, create_op},
      {"park", parked_call, park_op},
      {"unpark", parked_call, unpark_op},
      {"pick up", joined_call, pick_up_op},
      {"barge", joined_call, barge_op},
      {"transfer", joined_call, transfer_op},
      {"list", twelve_calls, list_all_op},
      {"hangup all", joined_call, hangup_all_op},
      {"hangup one", parked_call, hangup_one_op},
      {"watch", one_call, watch_op},
      {"put new", one_call, put_new_op},
      {"put new+grow", twelve_mirrored, put_new_op},
      {"put replace", mirrored_call, put_replace_op},
      {"put replace native", parked_call, put_replace_op},
      {"put same", mirrored_call, put_same_op},
      {"unpark mirrored", mirrored_call, act_mirrored_op},
      {"barge mirrored", mirrored_call, barge_mirrored_op},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(scenarios); i++) {
    print_message("scenario %s\n", scenarios[i].name);
    run_scenario(&scenarios[i]);
  }
}

static void test_alloc_failures_new(void **unused) {
  (void)unused;
  for (size_t n = 1;; n++) {
    usc_state_t *s = NULL;
    usc_alloc_fail_at(n);
    int rc = usc_state_new(NULL, &s);
    size_t made = usc_alloc_fail_at(0);
    if (rc == 0) {
      assert_true(made < n);
      usc_state_free(s);
      break;
    }
    assert_int_equal(rc, USC_ERR_NOMEM);
    assert_null(s);
  }
}

/* A create that fails takes no id: the next call gets the id the failed
 * one would have had. */
static void test_failed_create_keeps_ids(void **unused) {
  (void)unused;
  usc_state_config_t cfg = {.seed = 99};
  usc_state_t *ref = engine(&cfg);
  call_id_t want;
  create_default(ref, T0, want);
  usc_state_free(ref);
  /* heap, table, call, legs, then the index: its table, three buckets
   * (the user's, two extensions) and two members */
  for (size_t n = 1; n <= 10; n++) {
    usc_state_t *s = engine(&cfg);
    usc_state_create_t c = simple("@me", "0003*210");
    const usc_state_call_t *call;
    usc_state_err_t err;
    c.n_source = 0;
    assert_int_equal(usc_state_create(s, &c, T0, &call, &err), USC_ERR_INVALID);
    c.n_source = 1;
    usc_alloc_fail_at(n);
    assert_int_equal(usc_state_create(s, &c, T0, &call, &err), USC_ERR_NOMEM);
    usc_alloc_fail_at(0);
    call_id_t got;
    create_default(s, T0, got);
    assert_string_equal(got, want);
    usc_state_free(s);
  }
}

/* The per-user and per-extension buckets List reads follow every change
 * of a call's extensions: a random mix of creates, transfers, pick-ups,
 * barge-ins, mirrored replacements and hangups, with every List checked
 * against the calls themselves after each step. */
enum { IX_USERS = 2, IX_EXTS = 5, IX_MAX = 64 };
static const char *const IX_USER[IX_USERS] = {"1", "12"};
static const char *const IX_EXT[IX_EXTS] = {"0003*210", "0003*300", "0003*400",
                                            "777", "0003*211"};

typedef struct {
  usc_state_t *s;
  call_id_t id[IX_MAX];
  int user[IX_MAX];
  size_t n;
  uint64_t rng;
} ix_run_t;

static unsigned ix_rand(ix_run_t *r, unsigned n) {
  r->rng = r->rng * UINT64_C(6364136223846793005) + 1442695040888963407u;
  return (unsigned)(r->rng >> 33) % n;
}

static const usc_state_call_t *ix_get(ix_run_t *r, size_t i) {
  usc_state_address_t a = {.user_id = IX_USER[r->user[i]],
                           .extension = "@self",
                           .phone_call_id = r->id[i]};
  const usc_state_call_t *c = NULL;
  usc_state_err_t err;
  return usc_state_get(r->s, &a, T0, &c, &err) == 0 ? c : NULL;
}

static bool ix_matches(const usc_state_call_t *c, const char *ext) {
  if (strcmp(ext, "@self") == 0 || strcmp(c->extension, ext) == 0)
    return true;
  for (size_t v = 0; v < c->n_views; v++)
    if (strcmp(c->views[v].extension, ext) == 0)
      return true;
  return false;
}

static void ix_check(ix_run_t *r) {
  for (int u = 0; u < IX_USERS; u++) {
    for (int e = 0; e <= IX_EXTS; e++) {
      const char *ext = e < IX_EXTS ? IX_EXT[e] : "@self";
      usc_state_list_t req = list_req(ext);
      req.address.user_id = IX_USER[u];
      req.has_count = true;
      req.count = 5000;
      usc_state_page_t page;
      list_ok(r->s, &req, T0, &page);
      int32_t want = 0;
      for (size_t i = 0; i < r->n; i++) {
        const usc_state_call_t *c = r->user[i] == u ? ix_get(r, i) : NULL;
        if (c == NULL || !ix_matches(c, ext))
          continue;
        want++;
        bool listed = false;
        for (size_t k = 0; k < page.n_calls && !listed; k++)
          listed = strcmp(page.calls[k]->id, r->id[i]) == 0;
        if (!listed)
          fail_msg("user %s ext %s: call %s not listed", IX_USER[u], ext,
                   r->id[i]);
      }
      assert_int_equal(page.total_results, want);
      assert_int_equal(page.n_calls, (size_t)want);
      for (size_t k = 1; k < page.n_calls; k++)
        assert_true(page.calls[k - 1]->published <= page.calls[k]->published);
      usc_state_page_free(&page);
    }
  }
}

static void ix_create(ix_run_t *r, int64_t now) {
  if (r->n == IX_MAX)
    return;
  int u = (int)ix_rand(r, IX_USERS);
  usc_state_create_t c = simple(IX_USER[u], IX_EXT[ix_rand(r, 3)]);
  const char *dst[] = {IX_EXT[ix_rand(r, IX_EXTS)]};
  c.destination = dst;
  create_ok(r->s, &c, now, r->id[r->n]);
  r->user[r->n++] = u;
}

static void ix_act(ix_run_t *r, size_t i, int64_t now) {
  static const usc_state_action_kind_t kinds[] = {
      USC_STATE_TRANSFER, USC_STATE_PICK_UP, USC_STATE_BARGE_IN,
      USC_STATE_ON_HOLD};
  usc_state_action_t a =
      action(kinds[ix_rand(r, 4)], r->id[i], ix_rand(r, 2) ? "00" : "01");
  a.address.user_id = IX_USER[r->user[i]];
  a.address.extension = "@self";
  a.send_call_to = IX_EXT[ix_rand(r, IX_EXTS)];
  const usc_state_call_t *c;
  usc_state_err_t err;
  usc_state_act(r->s, &a, now, &c, &err); /* refusals are fine too */
}

static void ix_mirror(ix_run_t *r, size_t i, int64_t now) {
  const usc_state_call_t *c = ix_get(r, i);
  if (c == NULL || c->n_views < 2)
    return;
  usc_state_call_t copy = *c;
  usc_state_view_t views[USC_STATE_MAX_VIEWS];
  memcpy(views, c->views, c->n_views * sizeof *views);
  views[1].extension = IX_EXT[ix_rand(r, IX_EXTS)];
  copy.views = views;
  copy.published = now; /* moves it in list order */
  put_ok(r->s, IX_USER[r->user[i]], &copy, now);
}

static void ix_hangup(ix_run_t *r, size_t i, int64_t now) {
  usc_state_hangup_t h = {.address = {.user_id = IX_USER[r->user[i]],
                                      .extension = "@self",
                                      .phone_call_id = r->id[i]}};
  char **out = NULL;
  usc_state_err_t err;
  size_t n = 0;
  if (usc_state_hangup(r->s, &h, now, &out, &n, &err) == 0)
    usc_state_ids_free(out, n);
}

static void test_list_index_follows_changes(void **unused) {
  (void)unused;
  ix_run_t r = {.s = engine(NULL), .rng = 42};
  for (int step = 0; step < 400; step++) {
    int64_t now = T0 + step * SEC;
    unsigned op = ix_rand(&r, 10);
    size_t i = r.n > 0 ? ix_rand(&r, (unsigned)r.n) : 0;
    if (op < 3 || r.n == 0)
      ix_create(&r, now);
    else if (op < 7)
      ix_act(&r, i, now);
    else if (op < 9)
      ix_mirror(&r, i, now);
    else
      ix_hangup(&r, i, now);
    ix_check(&r);
  }
  usc_state_free(r.s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_failed_create_keeps_ids),
      cmocka_unit_test(test_new_defaults),
      cmocka_unit_test(test_config_strings_are_copied),
      cmocka_unit_test(test_action_names),
      cmocka_unit_test(test_create_simple),
      cmocka_unit_test(test_create_unset_optionals),
      cmocka_unit_test(test_create_flows),
      cmocka_unit_test(test_create_kinds_and_identity),
      cmocka_unit_test(test_ids_deterministic_and_unique),
      cmocka_unit_test(test_create_validation),
      cmocka_unit_test(test_max_calls),
      cmocka_unit_test(test_max_calls_default),
      cmocka_unit_test(test_get_address_rules),
      cmocka_unit_test(test_act_address_rules),
      cmocka_unit_test(test_hangup_address_rules),
      cmocka_unit_test(test_list_address_rules),
      cmocka_unit_test(test_not_found_message),
      cmocka_unit_test(test_identity_separates_users),
      cmocka_unit_test(test_hold),
      cmocka_unit_test(test_recording),
      cmocka_unit_test(test_park_and_unpark),
      cmocka_unit_test(test_park_positions),
      cmocka_unit_test(test_park_limits),
      cmocka_unit_test(test_pick_up),
      cmocka_unit_test(test_join_actions),
      cmocka_unit_test(test_join_needs_answer),
      cmocka_unit_test(test_transfer),
      cmocka_unit_test(test_view_id_rules),
      cmocka_unit_test(test_send_call_to_rules),
      cmocka_unit_test(test_unknown_action),
      cmocka_unit_test(test_hangup_one),
      cmocka_unit_test(test_hangup_all),
      cmocka_unit_test(test_list_defaults_and_paging),
      cmocka_unit_test(test_list_one_call),
      cmocka_unit_test(test_list_published_order),
      cmocka_unit_test(test_list_filter_id),
      cmocka_unit_test(test_list_filter_published),
      cmocka_unit_test(test_list_validation),
      cmocka_unit_test(test_list_fields),
      cmocka_unit_test(test_ring_delay),
      cmocka_unit_test(test_ring_applied_lazily),
      cmocka_unit_test(test_pick_up_while_ringing),
      cmocka_unit_test(test_park_expiry),
      cmocka_unit_test(test_deadlines_in_order),
      cmocka_unit_test(test_watch_events),
      cmocka_unit_test(test_unwatch_any_time),
      cmocka_unit_test(test_watch_validation),
      cmocka_unit_test(test_many_calls),
      cmocka_unit_test(test_list_index_follows_changes),
      cmocka_unit_test(test_put_new_replace_identical),
      cmocka_unit_test(test_put_published_and_order),
      cmocka_unit_test(test_put_ids_of_other_lengths),
      cmocka_unit_test(test_put_validation),
      cmocka_unit_test(test_put_max_calls),
      cmocka_unit_test(test_put_users),
      cmocka_unit_test(test_put_watchers_of_old_extension),
      cmocka_unit_test(test_actions_on_mirrored_call),
      cmocka_unit_test(test_park_beside_mirrored_positions),
      cmocka_unit_test(test_join_mirrored_leg_ids),
      cmocka_unit_test(test_remove),
      cmocka_unit_test(test_retain),
      cmocka_unit_test(test_alloc_failures),
      cmocka_unit_test(test_alloc_failures_new),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
