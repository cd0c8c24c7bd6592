/* usc_state_save and usc_state_load: round trips of every field, what is
 * still to come, and every kind of damaged or hostile input. */
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
#include <zlib.h>

#include "src/base/base.h"
#include "src/state/internal.h"
#include "src/state/state.h"

#define SEC INT64_C(1000000000)
#define T0 (INT64_C(1700000000) * SEC) /* 2023-11-14T22:13:20Z */
#define HEADER 20                      /* magic, version, length */

typedef char call_id_t[USC_STATE_MAX_ID_LEN + 1];

/* ---- helpers ---- */

static usc_state_t *engine(size_t max_calls, int64_t ring_ns, uint64_t seed) {
  usc_state_config_t config = {
      .max_calls = max_calls, .ring_ns = ring_ns, .seed = seed};
  usc_state_t *s = NULL;
  assert_int_equal(usc_state_new(&config, &s), 0);
  return s;
}

static const usc_state_call_t *create(usc_state_t *s, const char *user,
                                      const char *ext, int64_t now,
                                      call_id_t id) {
  static const char *const src[] = {"0003*210", "+4021"};
  static const char *const dst[] = {"0003*211", "0040721000000"};
  usc_state_create_t c = {
      .kind = USC_STATE_CREATE_SIMPLE,
      .address = {.user_id = user, .extension = ext},
      .source = src,
      .n_source = 2,
      .destination = dst,
      .n_destination = 2,
      .caller_id = "Front desk",
      .caller_destination = "Customer",
      .nonce = "nonce-1",
  };
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  assert_int_equal(usc_state_create(s, &c, now, &call, &err), 0);
  if (id != NULL)
    strcpy(id, call->id);
  return call;
}

static void act(usc_state_t *s, usc_state_action_kind_t kind, const char *user,
                const char *id, const char *view, int64_t now) {
  usc_state_action_t a = {
      .kind = kind,
      .address = {.user_id = user, .extension = "@self", .phone_call_id = id},
      .phone_call_view_id = view,
      .send_call_to = "0003*299",
      .caller_id = "Supervisor",
      .has_max_in_parking = kind == USC_STATE_PARK,
      .max_in_parking = 60,
  };
  const usc_state_call_t *call;
  usc_state_err_t err;
  if (usc_state_act(s, &a, now, &call, &err) != 0)
    fail_msg("%s: %s", usc_state_action_name(kind), err.message);
}

static void put(usc_state_t *s, const char *user, const usc_state_call_t *c,
                int64_t now) {
  usc_state_address_t owner = {.user_id = user};
  usc_state_err_t err;
  assert_int_equal(usc_state_put(s, &owner, c, now, &err), 0);
}

/* A mirrored call with values only an upstream gives: no legs' limits, a
 * position of 0 while parked, negative and odd numbers. */
static void put_odd_call(usc_state_t *s, const char *user, const char *id) {
  static const char *const nums[] = {"1", "", "#9"};
  usc_state_view_t views[3] = {
      {.id = "00",
       .extension = "0003*210",
       .source = nums,
       .n_source = 3,
       .destination = nums,
       .n_destination = 0,
       .flow = 99,
       .status = 0,
       .ringing = -5,
       .parked = T0 - SEC,
       .parked_pos = 0,
       .parked_by = "0003*7",
       .holder = 7,
       .disposition = 3},
      {.id = "07", .extension = NULL, .disposition = -1, .on_hold = 1},
      {.id = "03", .extension = "", .parked = 1, .parked_pos = -4},
  };
  usc_state_call_t c = {
      .id = id,
      .extension = "0003*210",
      .owner_id = NULL,
      .owner_name = "Upstream Org",
      .published = T0 - 3600 * SEC,
      .answered = -1,
      .nonce = "",
      .views = views,
      .n_views = 3,
  };
  put(s, user, &c, T0);
}

static void assert_same_str(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    assert_true(a == NULL && b == NULL);
  else
    assert_string_equal(a, b);
}

static void assert_same_numbers(const char *const *a, size_t n_a,
                                const char *const *b, size_t n_b) {
  assert_int_equal(n_a, n_b);
  for (size_t i = 0; i < n_a; i++)
    assert_same_str(a[i], b[i]);
}

static void assert_same_view(const usc_state_view_t *a,
                             const usc_state_view_t *b) {
  assert_string_equal(a->id, b->id);
  assert_same_str(a->extension, b->extension);
  assert_same_numbers(a->source, a->n_source, b->source, b->n_source);
  assert_same_numbers(a->destination, a->n_destination, b->destination,
                      b->n_destination);
  assert_int_equal(a->flow, b->flow);
  assert_int_equal(a->status, b->status);
  assert_int_equal(a->ringing, b->ringing);
  assert_same_str(a->caller_id, b->caller_id);
  assert_int_equal(a->recording, b->recording);
  assert_int_equal(a->answered, b->answered);
  assert_int_equal(a->parked, b->parked);
  assert_int_equal(a->parked_pos, b->parked_pos);
  assert_same_str(a->parked_by, b->parked_by);
  assert_int_equal(a->on_hold, b->on_hold);
  assert_int_equal(a->holder, b->holder);
  assert_int_equal(a->disposition, b->disposition);
}

static void assert_same_call(const usc_state_call_t *a,
                             const usc_state_call_t *b) {
  assert_string_equal(a->id, b->id);
  assert_string_equal(a->user, b->user);
  assert_same_str(a->extension, b->extension);
  assert_same_str(a->owner_id, b->owner_id);
  assert_same_str(a->owner_name, b->owner_name);
  assert_int_equal(a->published, b->published);
  assert_int_equal(a->answered, b->answered);
  assert_same_str(a->nonce, b->nonce);
  assert_int_equal(a->n_views, b->n_views);
  for (size_t i = 0; i < a->n_views; i++)
    assert_same_view(&a->views[i], &b->views[i]);
  state_deadlines_t da, db;
  state_deadlines(a, &da);
  state_deadlines(b, &db);
  assert_int_equal(da.ring_at, db.ring_at);
  for (size_t i = 0; i < a->n_views; i++)
    assert_int_equal(da.park_secs[i], db.park_secs[i]);
}

/* Same calls, in the same order, with the same deadlines. */
static void assert_same_engine(const usc_state_t *a, const usc_state_t *b) {
  assert_int_equal(usc_state_call_count(a), usc_state_call_count(b));
  const usc_state_call_t *ca = state_first(a), *cb = state_first(b);
  for (; ca != NULL && cb != NULL; ca = state_next(ca), cb = state_next(cb))
    assert_same_call(ca, cb);
  assert_null(ca);
  assert_null(cb);
}

typedef struct {
  uint8_t *bytes;
  size_t len;
} file_t;

static file_t save(const usc_state_t *s, int64_t now) {
  file_t f = {NULL, 0};
  assert_int_equal(usc_state_save(s, now, &f.bytes, &f.len), 0);
  assert_non_null(f.bytes);
  return f;
}

static usc_state_t *load_ok(const file_t *f, int64_t now) {
  usc_state_t *s = engine(0, 0, 99);
  usc_state_err_t err;
  int rc = usc_state_load(s, f->bytes, f->len, now, &err);
  if (rc != 0)
    fail_msg("load failed: %s", err.message);
  assert_int_equal(err.status, USC_GRPC_OK);
  return s;
}

/* Loading fails with `rc` and a message containing `words`, and leaves
 * the engine as it was. */
static void load_fails(usc_state_t *s, const uint8_t *bytes, size_t len, int rc,
                       const char *words) {
  size_t calls = usc_state_call_count(s);
  uint64_t changes = usc_state_changes(s);
  usc_state_err_t err;
  int got = usc_state_load(s, bytes, len, T0, &err);
  if (got != rc)
    fail_msg("load of %zu bytes gave %d, not %d (%s): '%s'", len, got, rc,
             words != NULL ? words : "", err.message);
  assert_int_not_equal(err.status, USC_GRPC_OK);
  if (words != NULL && strstr(err.message, words) == NULL)
    fail_msg("message '%s' lacks '%s'", err.message, words);
  assert_int_equal(usc_state_call_count(s), calls);
  assert_int_equal(usc_state_changes(s), changes);
}

/* An engine with calls of every kind: ringing or answered, held,
 * recorded, parked with a limit, joined, transferred, picked up, of
 * several users, mirrored with odd values, two users with one id. */
static usc_state_t *busy_engine_with(call_id_t a) {
  usc_state_t *s = engine(0, 0, 7);
  call_id_t b, c;
  create(s, "@me", "0003*210", T0, a);
  act(s, USC_STATE_ON_HOLD, "", a, "00", T0 + SEC);
  act(s, USC_STATE_START_RECORDING, "", a, "01", T0 + 2 * SEC);
  act(s, USC_STATE_PARK, "", a, "01", T0 + 3 * SEC);
  act(s, USC_STATE_BARGE_IN, "", a, "00", T0 + 4 * SEC);
  create(s, "12", "0003*210", T0, b); /* same published: creation order */
  act(s, USC_STATE_TRANSFER, "12", b, "01", T0 + 5 * SEC);
  act(s, USC_STATE_WHISPER, "12", b, "01", T0 + 5 * SEC);
  create(s, "@me", "0003*211", T0 + 6 * SEC, c);
  act(s, USC_STATE_PARK, "", c, "00", T0 + 6 * SEC);
  put_odd_call(s, "@me", "Upstream1");
  put_odd_call(s, "u7", "Upstream1");
  return s;
}

static usc_state_t *busy_engine(void) {
  call_id_t unused;
  return busy_engine_with(unused);
}

/* The payload of `f` sealed again, as a file: for hostile content behind
 * a correct checksum. */
static file_t seal(const uint8_t *payload, size_t len) {
  file_t f = {malloc(HEADER + len + 4), HEADER + len + 4};
  assert_non_null(f.bytes);
  memcpy(f.bytes, "USCSTATE", 8);
  uint64_t version = 1, n = len;
  for (int i = 0; i < 4; i++)
    f.bytes[8 + i] = (uint8_t)(version >> (8 * i));
  for (int i = 0; i < 8; i++)
    f.bytes[12 + i] = (uint8_t)(n >> (8 * i));
  memcpy(f.bytes + HEADER, payload, len);
  uint32_t crc = (uint32_t)crc32_z(0, f.bytes, HEADER + len);
  for (int i = 0; i < 4; i++)
    f.bytes[HEADER + len + i] = (uint8_t)(crc >> (8 * i));
  return f;
}

/* ---- round trips ---- */

static void test_round_trip_every_field(void **unused) {
  (void)unused;
  usc_state_t *a = busy_engine();
  file_t f = save(a, T0 + 7 * SEC);
  usc_state_t *b = load_ok(&f, T0 + 7 * SEC);
  assert_int_equal(usc_state_call_count(b), 5);
  assert_same_engine(a, b);
  /* The copy is the engine's own: free the bytes and the first engine. */
  usc_free(f.bytes);
  usc_state_free(a);
  /* And it saves to the same bytes again. */
  file_t g = save(b, T0 + 7 * SEC);
  usc_state_t *c = load_ok(&g, T0 + 7 * SEC);
  file_t h = save(c, T0 + 7 * SEC);
  assert_int_equal(g.len, h.len);
  assert_memory_equal(g.bytes, h.bytes, g.len);
  usc_free(g.bytes);
  usc_free(h.bytes);
  usc_state_free(b);
  usc_state_free(c);
}

static void test_round_trip_empty(void **unused) {
  (void)unused;
  usc_state_t *a = engine(0, 0, 1);
  file_t f = save(a, T0);
  assert_int_equal(f.len, HEADER + 8 + 4 + 4);
  usc_state_t *b = load_ok(&f, T0);
  assert_int_equal(usc_state_call_count(b), 0);
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(b);
}

/* Loaded calls are ordinary calls: every operation works on them. */
static void test_loaded_calls_work(void **unused) {
  (void)unused;
  call_id_t id;
  usc_state_t *a = busy_engine_with(id);
  file_t f = save(a, T0 + 7 * SEC);
  usc_state_t *b = load_ok(&f, T0 + 7 * SEC);
  act(b, USC_STATE_OFF_HOLD, "", id, "00", T0 + 8 * SEC);
  act(b, USC_STATE_UNPARK, "", id, "01", T0 + 8 * SEC);
  act(b, USC_STATE_TRANSFER, "", id, "02", T0 + 8 * SEC);
  act(b, USC_STATE_UNPARK, "", "Upstream1", "00", T0 + 8 * SEC);
  act(b, USC_STATE_BARGE_IN, "", "Upstream1", "07", T0 + 8 * SEC);
  /* A park takes the lowest position the user's loaded legs leave. */
  act(b, USC_STATE_PARK, "", "Upstream1", "07", T0 + 9 * SEC);
  usc_state_address_t addr = {.extension = "@self",
                              .phone_call_id = "Upstream1"};
  const usc_state_call_t *up;
  usc_state_err_t err;
  assert_int_equal(usc_state_get(b, &addr, T0 + 9 * SEC, &up, &err), 0);
  assert_int_equal(up->views[1].parked_pos, 1);
  usc_state_hangup_t all = {.address = {.extension = "@self"}};
  char **ids;
  size_t n_ids;
  assert_int_equal(usc_state_hangup(b, &all, T0 + 10 * SEC, &ids, &n_ids, &err),
                   0);
  assert_int_equal(n_ids, 3); /* the default user's */
  usc_state_ids_free(ids, n_ids);
  assert_int_equal(usc_state_call_count(b), 2);
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(b);
}

/* Ringing and parking keep their deadlines: what is due later happens
 * then, what fell due while the engine was away happens at load, at its
 * own time. */
static void test_deadlines_kept(void **unused) {
  (void)unused;
  usc_state_t *a = engine(0, 10 * SEC, 3);
  call_id_t ringing, parked;
  create(a, "@me", "0003*210", T0, ringing); /* answers at T0 + 10 s */
  create(a, "@me", "0003*212", T0, parked);
  act(a, USC_STATE_PARK, "", parked, "00", T0 + 2 * SEC); /* T0 + 62 s */
  file_t f = save(a, T0 + 3 * SEC);

  usc_state_t *b = load_ok(&f, T0 + 4 * SEC);
  assert_same_engine(a, b);
  assert_int_equal(usc_state_advance(b, T0 + 4 * SEC), T0 + 10 * SEC);
  assert_int_equal(usc_state_advance(b, T0 + 10 * SEC), T0 + 62 * SEC);
  const usc_state_call_t *c = state_first(b);
  assert_string_equal(c->id, ringing);
  assert_int_equal(c->answered, T0 + 10 * SEC);
  assert_int_equal(c->views[0].status, 5);
  assert_int_equal(c->views[1].ringing, 0);
  assert_int_equal(usc_state_advance(b, T0 + 62 * SEC), 0);
  assert_int_equal(state_next(c)->views[0].parked, 0);

  /* Loaded long after: both happened, at their times. */
  usc_state_t *late = load_ok(&f, T0 + 3600 * SEC);
  c = state_first(late);
  assert_int_equal(c->answered, T0 + 10 * SEC);
  assert_int_equal(state_next(c)->views[0].parked, 0);
  assert_int_equal(state_next(c)->answered, T0 + 10 * SEC);
  assert_int_equal(usc_state_advance(late, T0 + 3600 * SEC), 0);

  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(b);
  usc_state_free(late);
}

/* The id generator is not saved: a new engine, even one seeded as the
 * first was, makes ids that none of the loaded calls has. */
static void test_new_ids_after_load(void **unused) {
  (void)unused;
  usc_state_t *a = engine(0, 0, 42);
  call_id_t first;
  create(a, "@me", "0003*210", T0, first);
  file_t f = save(a, T0);
  usc_state_t *b = engine(0, 0, 42);
  usc_state_err_t err;
  assert_int_equal(usc_state_load(b, f.bytes, f.len, T0, &err), 0);
  call_id_t next;
  create(b, "@me", "0003*210", T0 + SEC, next);
  assert_string_not_equal(next, first);
  assert_int_equal(strlen(next), USC_STATE_CALL_ID_LEN);
  assert_int_equal(usc_state_call_count(b), 2);
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(b);
}

static void test_changes_counter(void **unused) {
  (void)unused;
  usc_state_t *s = engine(0, SEC, 5);
  uint64_t c0 = usc_state_changes(s);
  call_id_t id;
  create(s, "@me", "0003*210", T0, id);
  uint64_t c1 = usc_state_changes(s);
  assert_true(c1 > c0);
  usc_state_address_t addr = {.extension = "@self", .phone_call_id = id};
  const usc_state_call_t *call;
  usc_state_err_t err;
  assert_int_equal(usc_state_get(s, &addr, T0, &call, &err), 0);
  assert_int_equal(usc_state_changes(s), c1); /* reading changes nothing */
  usc_state_advance(s, T0 + SEC);             /* the answer */
  uint64_t c2 = usc_state_changes(s);
  assert_true(c2 > c1);
  put_odd_call(s, "@me", "Up1");
  uint64_t c3 = usc_state_changes(s);
  assert_true(c3 > c2);
  put_odd_call(s, "@me", "Up1"); /* the same content */
  assert_int_equal(usc_state_changes(s), c3);
  file_t f = save(s, T0);
  assert_int_equal(usc_state_changes(s), c3);
  usc_state_t *b = engine(0, 0, 1);
  uint64_t before = usc_state_changes(b);
  assert_int_equal(usc_state_load(b, f.bytes, f.len, T0, &err), 0);
  assert_true(usc_state_changes(b) > before);
  assert_int_equal(usc_state_remove(s, &addr, "Up1", T0), 0);
  assert_true(usc_state_changes(s) > c3);
  usc_free(f.bytes);
  usc_state_free(s);
  usc_state_free(b);
}

/* Loading adds to the calls already there, without clashes. */
static void test_load_into_busy_engine(void **unused) {
  (void)unused;
  usc_state_t *a = engine(0, 0, 11);
  create(a, "@me", "0003*210", T0, NULL);
  file_t f = save(a, T0);
  usc_state_t *b = engine(0, 0, 12);
  create(b, "@me", "0003*210", T0 - SEC, NULL);
  create(b, "@me", "0003*210", T0 + SEC, NULL);
  usc_state_err_t err;
  assert_int_equal(usc_state_load(b, f.bytes, f.len, T0, &err), 0);
  assert_int_equal(usc_state_call_count(b), 3);
  /* In published order. */
  const usc_state_call_t *c = state_first(b);
  assert_int_equal(c->published, T0 - SEC);
  assert_int_equal(state_next(c)->published, T0);
  /* The same file again clashes: nothing is added. */
  load_fails(b, f.bytes, f.len, USC_ERR_INVALID, "two calls with the id");
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(b);
}

static void test_max_calls(void **unused) {
  (void)unused;
  usc_state_t *a = engine(0, 0, 1);
  for (int i = 0; i < 5; i++)
    create(a, "@me", "0003*210", T0 + i, NULL);
  file_t f = save(a, T0);
  usc_state_t *small = engine(4, 0, 1);
  load_fails(small, f.bytes, f.len, USC_ERR_FULL, "--max-calls");
  usc_state_t *part = engine(6, 0, 1);
  create(part, "@me", "0003*210", T0, NULL);
  create(part, "@me", "0003*210", T0, NULL);
  load_fails(part, f.bytes, f.len, USC_ERR_FULL, "room for 4 more");
  usc_state_t *fits = engine(5, 0, 1);
  usc_state_err_t err;
  assert_int_equal(usc_state_load(fits, f.bytes, f.len, T0, &err), 0);
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(small);
  usc_state_free(part);
  usc_state_free(fits);
}

/* 100000 calls, the default --max-calls: they all come back. */
static void test_many_calls(void **unused) {
  (void)unused;
  enum { N = 100000 };
  usc_state_t *a = engine(0, 0, 21);
  for (int i = 0; i < N; i++)
    create(a, i % 3 ? "@me" : "55", "0003*210", T0 + i / 7, NULL);
  struct timespec t0, t1, t2;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  file_t f = save(a, T0 + N);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  usc_state_t *b = engine(0, 0, 22);
  usc_state_err_t err;
  assert_int_equal(usc_state_load(b, f.bytes, f.len, T0 + N, &err), 0);
  clock_gettime(CLOCK_MONOTONIC, &t2);
  print_message("%d calls: %zu bytes, saved in %.1f ms, loaded in %.1f ms\n", N,
                f.len,
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
                (double)(t2.tv_sec - t1.tv_sec) * 1e3 +
                    (double)(t2.tv_nsec - t1.tv_nsec) / 1e6);
  assert_same_engine(a, b);
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(b);
}

/* ---- damaged files ---- */

static void test_truncated_anywhere(void **unused) {
  (void)unused;
  usc_state_t *a = busy_engine();
  file_t f = save(a, T0);
  usc_state_t *s = engine(0, 0, 1);
  for (size_t len = 0; len < f.len; len++)
    load_fails(s, f.bytes, len, USC_ERR_INVALID, NULL);
  load_fails(s, f.bytes, 10, USC_ERR_INVALID, "truncated");
  load_fails(s, f.bytes, f.len - 1, USC_ERR_INVALID, "truncated");
  /* Longer than written: the length says so. */
  uint8_t *longer = malloc(f.len + 1);
  memcpy(longer, f.bytes, f.len);
  longer[f.len] = 0;
  load_fails(s, longer, f.len + 1, USC_ERR_INVALID, "extra bytes");
  free(longer);
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(s);
}

static void test_any_flipped_bit(void **unused) {
  (void)unused;
  usc_state_t *a = busy_engine();
  file_t f = save(a, T0);
  usc_state_t *s = engine(0, 0, 1);
  for (size_t i = 0; i < f.len; i++)
    for (int bit = 0; bit < 8; bit++) {
      f.bytes[i] ^= (uint8_t)(1u << bit);
      load_fails(s, f.bytes, f.len, USC_ERR_INVALID, NULL);
      f.bytes[i] ^= (uint8_t)(1u << bit);
    }
  /* A byte of the calls: the checksum finds it. */
  f.bytes[HEADER + 30] ^= 0xff;
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "damaged: the checksum");
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(s);
}

static void test_magic_and_version(void **unused) {
  (void)unused;
  usc_state_t *a = engine(0, 0, 1);
  file_t f = save(a, T0);
  usc_state_t *s = engine(0, 0, 1);
  memcpy(f.bytes, "{\"calls\"", 8);
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "not a uapi-sidecar state");
  memcpy(f.bytes, "USCSTATE", 8);
  f.bytes[8] = 2;
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "version 2");
  f.bytes[8] = 1;
  f.bytes[11] = 0x80;
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "version 2147483649");
  f.bytes[11] = 0;
  f.bytes[19] = 0x40; /* a huge length */
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "truncated");
  f.bytes[19] = 0;
  usc_state_err_t err;
  assert_int_equal(usc_state_load(s, f.bytes, f.len, T0, &err), 0);
  usc_free(f.bytes);
  usc_state_free(a);
  usc_state_free(s);
}

/* ---- hostile content behind a correct checksum ---- */

/* Builds payloads byte by byte. */
typedef struct {
  uint8_t b[4096];
  size_t n;
} payload_t;

static void p_le(payload_t *p, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; i++)
    p->b[p->n++] = (uint8_t)(v >> (8 * i));
}

static void p_str(payload_t *p, const char *s) {
  size_t n = strlen(s);
  p_le(p, n, 4);
  memcpy(p->b + p->n, s, n + 1);
  p->n += n + 1;
}

/* Knobs for one call of one leg; the defaults make a valid call. */
typedef struct {
  const char *user, *id, *view_id;
  uint64_t n_views, n_source;
  int64_t ring_at, parked;
  uint16_t park_secs;
} hostile_t;

static const hostile_t VALID = {"1", "abc", "00", 1, 1, 0, 0, 0};

static void p_call(payload_t *p, const hostile_t *h) {
  p_str(p, h->user);
  p_str(p, h->id);
  p_str(p, "0003*210"); /* extension */
  p_str(p, "1");        /* owner_id */
  p_str(p, "Org");      /* owner_name */
  p_str(p, "");         /* nonce */
  p_le(p, (uint64_t)T0, 8);
  p_le(p, (uint64_t)T0, 8);
  p_le(p, (uint64_t)h->ring_at, 8);
  p_le(p, h->n_views, 1);
  for (uint64_t v = 0; v < h->n_views && v < 9; v++) {
    p->b[p->n++] = (uint8_t)h->view_id[0];
    p->b[p->n++] = (uint8_t)h->view_id[1];
    p_str(p, "0003*210");
    p_le(p, h->n_source, 1);
    for (uint64_t i = 0; i < h->n_source && i < 9; i++)
      p_str(p, "1");
    p_le(p, 0, 1); /* no destination */
    p_le(p, 2, 4); /* flow */
    p_le(p, 5, 4); /* status */
    p_le(p, 0, 8);
    p_str(p, "");
    p_le(p, 0, 8);
    p_le(p, (uint64_t)T0, 8);
    p_le(p, (uint64_t)h->parked, 8);
    p_le(p, h->parked != 0, 4);
    p_str(p, h->parked != 0 ? "0003*210" : "");
    p_le(p, h->park_secs, 2);
    p_le(p, 0, 8);
    p_le(p, 0, 4);
    p_le(p, UINT32_MAX, 4); /* disposition -1 */
  }
}

static payload_t calls_payload(const hostile_t *calls, size_t n) {
  payload_t p = {.n = 0};
  p_le(&p, (uint64_t)T0, 8);
  p_le(&p, n, 4);
  for (size_t i = 0; i < n; i++)
    p_call(&p, &calls[i]);
  return p;
}

static void hostile_fails(const hostile_t *calls, size_t n, int rc,
                          const char *words) {
  payload_t p = calls_payload(calls, n);
  file_t f = seal(p.b, p.n);
  usc_state_t *s = engine(0, 0, 1);
  load_fails(s, f.bytes, f.len, rc, words);
  usc_state_free(s);
  free(f.bytes);
}

static void hostile_loads(const hostile_t *calls, size_t n) {
  payload_t p = calls_payload(calls, n);
  file_t f = seal(p.b, p.n);
  usc_state_t *s = engine(0, 0, 1);
  usc_state_err_t err;
  if (usc_state_load(s, f.bytes, f.len, T0, &err) != 0)
    fail_msg("load failed: %s", err.message);
  assert_int_equal(usc_state_call_count(s), n);
  usc_state_free(s);
  free(f.bytes);
}

static void test_hostile_calls(void **unused) {
  (void)unused;
  hostile_loads(&VALID, 1);
  hostile_t h = VALID;
  h.user = "";
  hostile_fails(&h, 1, USC_ERR_INVALID,
                "call 1 of 1 (byte 32): a call has no user");
  h.user = "alice@example.com"; /* an identity is taken as it is */
  hostile_loads(&h, 1);
  h = VALID;
  h.id = "../etc";
  hostile_fails(&h, 1, USC_ERR_INVALID, "phone call id");
  char long_id[66];
  memset(long_id, 'a', 65);
  long_id[65] = '\0';
  h.id = long_id;
  hostile_fails(&h, 1, USC_ERR_INVALID, "phone call id");
  long_id[64] = '\0';
  hostile_loads(&h, 1);
  h.id = "";
  hostile_fails(&h, 1, USC_ERR_INVALID, "phone call id");
  h = VALID;
  h.n_views = 9;
  hostile_fails(&h, 1, USC_ERR_INVALID, "9 legs");
  h.n_views = 0; /* a mirrored call may have none */
  hostile_loads(&h, 1);
  h = VALID;
  h.n_source = 9;
  hostile_fails(&h, 1, USC_ERR_INVALID, "9 source numbers");
  h = VALID;
  h.view_id = "0a";
  hostile_fails(&h, 1, USC_ERR_INVALID, "invalid id");
  h.view_id = "0\0";
  hostile_fails(&h, 1, USC_ERR_INVALID, "invalid id");
  h.view_id = "00";
  h.n_views = 2;
  hostile_fails(&h, 1, USC_ERR_INVALID, "two legs '00'");
  h = VALID;
  h.ring_at = -1;
  hostile_fails(&h, 1, USC_ERR_INVALID, "rings until");
  h = VALID;
  h.park_secs = 9;
  h.parked = T0;
  hostile_fails(&h, 1, USC_ERR_INVALID, "stays parked 9 s");
  h.park_secs = 3601;
  hostile_fails(&h, 1, USC_ERR_INVALID, "stays parked 3601 s");
  h.park_secs = 60;
  h.parked = 0;
  hostile_fails(&h, 1, USC_ERR_INVALID, "no time of parking");
  h.parked = INT64_MAX - 10; /* its end would overflow */
  hostile_fails(&h, 1, USC_ERR_INVALID, "no time of parking");
  h.parked = T0;
  hostile_loads(&h, 1);
}

static void test_hostile_sets(void **unused) {
  (void)unused;
  hostile_t two[2] = {VALID, VALID};
  hostile_fails(two, 2, USC_ERR_INVALID, "user '1' has two calls with the id");
  two[1].user = "2"; /* another user may use the id */
  hostile_loads(two, 2);
  two[1] = VALID;
  two[1].id = "abd";
  hostile_loads(two, 2);
  two[1].id = "a-b"; /* the second is bad: the first is not kept either */
  hostile_fails(two, 2, USC_ERR_INVALID, "call 2 of 2");
}

static void test_hostile_lengths(void **unused) {
  (void)unused;
  usc_state_t *s = engine(0, 0, 1);
  /* Billions of calls announced: refused before any allocation. */
  payload_t p = calls_payload(&VALID, 1);
  p.b[8] = p.b[9] = p.b[10] = p.b[11] = 0xff;
  file_t f = seal(p.b, p.n);
  usc_alloc_fail_at(0);
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "4294967295 calls announced");
  assert_int_equal(usc_alloc_fail_at(0), 0);
  free(f.bytes);

  /* Fewer calls than announced, or more. */
  p = calls_payload(&VALID, 1);
  p.b[8] = 2;
  f = seal(p.b, p.n);
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, NULL);
  free(f.bytes);
  p.b[8] = 0;
  f = seal(p.b, p.n);
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "after the last call");
  free(f.bytes);

  /* A string that claims 4 GiB. */
  p = calls_payload(&VALID, 1);
  p.b[12] = p.b[13] = p.b[14] = p.b[15] = 0xff;
  f = seal(p.b, p.n);
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID,
             "byte 36: the user runs past the end");
  free(f.bytes);

  /* A string with a NUL inside, or without its NUL. The payload: saved_at
   * (0..7), the count (8..11), the user (length 12..15, "1" 16, NUL 17),
   * the id (length 18..21, "abc" 22..24, NUL 25). */
  p = calls_payload(&VALID, 1);
  p.b[25] = 'x';
  f = seal(p.b, p.n);
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "without NUL bytes");
  free(f.bytes);
  p = calls_payload(&VALID, 1);
  p.b[23] = '\0'; /* "a\0c" */
  f = seal(p.b, p.n);
  load_fails(s, f.bytes, f.len, USC_ERR_INVALID, "without NUL bytes");
  free(f.bytes);
  usc_state_free(s);
}

/* Random damage behind a correct checksum never crashes the loader (run
 * under ASan): it refuses, or loads calls that save and load again. */
static void test_random_damage(void **unused) {
  (void)unused;
  usc_state_t *a = busy_engine();
  file_t good = save(a, T0);
  size_t payload = good.len - HEADER - 4;
  uint8_t *work = malloc(payload);
  uint64_t x = 12345;
  int loaded = 0;
  for (int round = 0; round < 3000; round++) {
    memcpy(work, good.bytes + HEADER, payload);
    size_t len = payload;
    int edits = 1 + round % 4;
    for (int e = 0; e < edits; e++) {
      x = x * 6364136223846793005u + 1442695040888963407u;
      size_t at = (size_t)(x >> 33) % len;
      work[at] = (uint8_t)(x >> 13);
    }
    if (round % 5 == 0)
      len = (size_t)(x >> 20) % payload;
    file_t f = seal(work, len);
    usc_state_t *s = engine(0, 0, 1);
    usc_state_err_t err;
    if (usc_state_load(s, f.bytes, f.len, T0, &err) == 0) {
      loaded++;
      file_t again = save(s, T0);
      usc_state_t *b = load_ok(&again, T0);
      assert_same_engine(s, b);
      usc_free(again.bytes);
      usc_state_free(b);
    } else {
      assert_int_equal(usc_state_call_count(s), 0);
    }
    usc_state_free(s);
    free(f.bytes);
  }
  print_message("%d of 3000 damaged files still held valid calls\n", loaded);
  free(work);
  usc_free(good.bytes);
  usc_state_free(a);
}

/* ---- out of memory ---- */

static void test_alloc_failures_load(void **unused) {
  (void)unused;
  usc_state_t *a = busy_engine();
  file_t f = save(a, T0);
  for (size_t n = 1;; n++) {
    usc_state_t *s = engine(0, 0, 1);
    create(s, "@me", "0003*299", T0, NULL);
    usc_state_err_t err;
    usc_alloc_fail_at(n);
    int rc = usc_state_load(s, f.bytes, f.len, T0, &err);
    size_t made = usc_alloc_fail_at(0);
    if (rc == 0) {
      assert_true(made < n);
      assert_int_equal(usc_state_call_count(s), 6);
      usc_state_free(s);
      break;
    }
    assert_int_equal(rc, USC_ERR_NOMEM);
    assert_int_equal(err.status, USC_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(usc_state_call_count(s), 1);
    /* The engine still works. */
    create(s, "@me", "0003*299", T0, NULL);
    usc_state_free(s);
  }
  usc_free(f.bytes);
  usc_state_free(a);
}

static void test_alloc_failures_save(void **unused) {
  (void)unused;
  usc_state_t *a = busy_engine();
  uint8_t *bytes = (uint8_t *)"untouched";
  size_t len = 7;
  usc_alloc_fail_at(1);
  assert_int_equal(usc_state_save(a, T0, &bytes, &len), USC_ERR_NOMEM);
  usc_alloc_fail_at(0);
  assert_string_equal((char *)bytes, "untouched");
  assert_int_equal(len, 7);
  usc_state_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_every_field),
      cmocka_unit_test(test_round_trip_empty),
      cmocka_unit_test(test_loaded_calls_work),
      cmocka_unit_test(test_deadlines_kept),
      cmocka_unit_test(test_new_ids_after_load),
      cmocka_unit_test(test_changes_counter),
      cmocka_unit_test(test_load_into_busy_engine),
      cmocka_unit_test(test_max_calls),
      cmocka_unit_test(test_many_calls),
      cmocka_unit_test(test_truncated_anywhere),
      cmocka_unit_test(test_any_flipped_bit),
      cmocka_unit_test(test_magic_and_version),
      cmocka_unit_test(test_hostile_calls),
      cmocka_unit_test(test_hostile_sets),
      cmocka_unit_test(test_hostile_lengths),
      cmocka_unit_test(test_random_damage),
      cmocka_unit_test(test_alloc_failures_load),
      cmocka_unit_test(test_alloc_failures_save),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
