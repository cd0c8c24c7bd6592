/* The engine's calls as bytes: usc_state_save and usc_state_load.
 *
 * Layout, version 1. Integers are little-endian, times nanoseconds since
 * the epoch on the engine's clock (0: unset):
 *
 *   file    = "USCSTATE" | u32 version | u64 length | payload | u32 crc
 *   payload = i64 saved_at | u32 n_calls | n_calls * call
 *   call    = str user | str id | str extension | str owner_id
 *             | str owner_name | str nonce | i64 published | i64 answered
 *             | i64 ring_at | u8 n_views | n_views * view
 *   view    = 2 bytes id | str extension | u8 n | n * str (sources)
 *             | u8 n | n * str (destinations) | i32 flow | i32 status
 *             | i64 ringing | str caller_id | i64 recording | i64 answered
 *             | i64 parked | i32 parked_pos | str parked_by
 *             | u16 park_secs | i64 on_hold | i32 holder | i32 disposition
 *   str     = u32 len | len bytes, none of them NUL | a NUL; len 0: unset
 *
 * `length` is the payload's size and `crc` zlib's CRC-32 of every byte
 * before it, so a torn or damaged file is refused before a call is read.
 * ring_at is when the call's ringing legs answer and park_secs how long a
 * parked leg may stay parked (0: no limit): both absolute, like the
 * timestamps they derive from, so a restored call keeps its schedule and
 * what fell due while the sidecar was down happens at load. The NUL after
 * each string lets the loader hand it to the engine in place. Calls come
 * in List order, which a load keeps.
 *
 * The checksum only catches accidents; a file made to harm passes it. So
 * every count is bounded before it is used, every read is bounded by the
 * buffer, and every call is checked by the engine (state_build) before
 * any is added (state_adopt). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "src/base/base.h"
#include "src/state/internal.h"
#include "src/state/state.h"

#define MAGIC "USCSTATE"
#define MAGIC_SIZE 8
#define VERSION 1
#define HEADER_SIZE (MAGIC_SIZE + 4 + 8)
#define CRC_SIZE 4
/* The smallest call: six empty strings, three times and no leg. */
#define MIN_CALL_SIZE (6 * 5 + 3 * 8 + 1)

/* ---- writing ---- */

/* Counts bytes when `buf` is NULL, else writes them too. */
typedef struct {
  uint8_t *buf;
  size_t len;
  bool too_large;
} writer_t;

static void put_bytes(writer_t *w, const void *bytes, size_t n) {
  if (w->buf != NULL && n > 0)
    memcpy(w->buf + w->len, bytes, n);
  w->len += n;
}

static inline void put_le(writer_t *w, uint64_t v, size_t n) {
  if (w->buf != NULL) {
    uint8_t *p = w->buf + w->len;
    for (size_t i = 0; i < n; i++)
      p[i] = (uint8_t)(v >> (8 * i));
  }
  w->len += n;
}

static void put_time(writer_t *w, int64_t t) { put_le(w, (uint64_t)t, 8); }

static void put_int(writer_t *w, int v) { put_le(w, (uint32_t)v, 4); }

static void put_str(writer_t *w, const char *s) {
  size_t n = s != NULL ? strlen(s) : 0;
  if (n > UINT32_MAX) {
    w->too_large = true;
    n = 0;
  }
  put_le(w, n, 4);
  put_bytes(w, s, n);
  put_le(w, 0, 1);
}

static void put_numbers(writer_t *w, const char *const *list, size_t n) {
  put_le(w, n, 1);
  for (size_t i = 0; i < n; i++)
    put_str(w, list[i]);
}

static void put_view(writer_t *w, const usc_state_view_t *v,
                     uint16_t park_secs) {
  put_bytes(w, v->id, 2);
  put_str(w, v->extension);
  put_numbers(w, v->source, v->n_source);
  put_numbers(w, v->destination, v->n_destination);
  put_int(w, v->flow);
  put_int(w, v->status);
  put_time(w, v->ringing);
  put_str(w, v->caller_id);
  put_time(w, v->recording);
  put_time(w, v->answered);
  put_time(w, v->parked);
  put_int(w, v->parked_pos);
  put_str(w, v->parked_by);
  put_le(w, park_secs, 2);
  put_time(w, v->on_hold);
  put_int(w, v->holder);
  put_int(w, v->disposition);
}

static void put_call(writer_t *w, const usc_state_call_t *c) {
  state_deadlines_t d;
  state_deadlines(c, &d);
  put_str(w, c->user);
  put_str(w, c->id);
  put_str(w, c->extension);
  put_str(w, c->owner_id);
  put_str(w, c->owner_name);
  put_str(w, c->nonce);
  put_time(w, c->published);
  put_time(w, c->answered);
  put_time(w, d.ring_at);
  put_le(w, c->n_views, 1);
  for (size_t i = 0; i < c->n_views; i++)
    put_view(w, &c->views[i], d.park_secs[i]);
}

static void put_payload(writer_t *w, const usc_state_t *s, int64_t now) {
  size_t n = usc_state_call_count(s);
  if (n > UINT32_MAX)
    w->too_large = true;
  put_time(w, now);
  put_le(w, n, 4);
  for (const usc_state_call_t *c = state_first(s); c != NULL; c = state_next(c))
    put_call(w, c);
}

int usc_state_save(const usc_state_t *state, int64_t now, uint8_t **bytes,
                   size_t *len) {
  writer_t w = {NULL, HEADER_SIZE, false};
  put_payload(&w, state, now);
  if (w.too_large)
    return USC_ERR_TOO_LARGE;
  size_t payload = w.len - HEADER_SIZE, total = w.len + CRC_SIZE;
  uint8_t *buf = usc_malloc(total);
  if (buf == NULL)
    return USC_ERR_NOMEM;
  w = (writer_t){buf, 0, false};
  put_bytes(&w, MAGIC, MAGIC_SIZE);
  put_le(&w, VERSION, 4);
  put_le(&w, payload, 8);
  put_payload(&w, state, now);
  put_le(&w, crc32_z(0, buf, w.len), CRC_SIZE);
  *bytes = buf;
  *len = total;
  return 0;
}

/* ---- reading ---- */

__attribute__((format(printf, 3, 4))) static int
refuse(usc_state_err_t *err, int rc, const char *fmt, ...) {
  va_list ap;
  err->status = rc == USC_ERR_INVALID ? USC_GRPC_INVALID_ARGUMENT
                                      : USC_GRPC_RESOURCE_EXHAUSTED;
  err->uapi_code = NULL;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return rc;
}

static uint64_t le(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Everything but the calls: that the bytes are one whole save of this
 * version, undamaged. */
static int check_envelope(const uint8_t *bytes, size_t len,
                          usc_state_err_t *err) {
  if (len >= MAGIC_SIZE && memcmp(bytes, MAGIC, MAGIC_SIZE) != 0)
    return refuse(err, USC_ERR_INVALID,
                  "not a uapi-sidecar state file: it does not start with "
                  "\"" MAGIC "\"");
  if (len < HEADER_SIZE + CRC_SIZE)
    return refuse(err, USC_ERR_INVALID,
                  "truncated: %zu bytes, where a state file has at least %d",
                  len, HEADER_SIZE + CRC_SIZE);
  uint32_t version = (uint32_t)le(bytes + MAGIC_SIZE, 4);
  if (version != VERSION)
    return refuse(err, USC_ERR_INVALID,
                  "state file version %lu is not one this build reads (%d)",
                  (unsigned long)version, VERSION);
  uint64_t payload = le(bytes + MAGIC_SIZE + 4, 8);
  if (payload != len - HEADER_SIZE - CRC_SIZE)
    return refuse(err, USC_ERR_INVALID,
                  "%s: the header announces %llu bytes of calls and %zu are "
                  "there",
                  payload > len - HEADER_SIZE - CRC_SIZE ? "truncated"
                                                         : "extra bytes",
                  (unsigned long long)payload, len - HEADER_SIZE - CRC_SIZE);
  uint32_t stored = (uint32_t)le(bytes + len - CRC_SIZE, CRC_SIZE);
  uint32_t computed = (uint32_t)crc32_z(0, bytes, len - CRC_SIZE);
  if (stored != computed)
    return refuse(err, USC_ERR_INVALID,
                  "damaged: the checksum is %08lx where the content gives "
                  "%08lx",
                  (unsigned long)stored, (unsigned long)computed);
  return 0;
}

/* Reads the payload; after the first problem (written to *err) every read
 * gives 0 or "" and `failed` stays set. */
typedef struct {
  const uint8_t *start, *p, *end;
  usc_state_err_t *err;
  bool failed;
} reader_t;

__attribute__((format(printf, 2, 3))) static void bad(reader_t *r,
                                                      const char *fmt, ...) {
  char what[150];
  va_list ap;
  if (r->failed)
    return;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  refuse(r->err, USC_ERR_INVALID, "byte %zu: %s", (size_t)(r->p - r->start),
         what);
  r->failed = true;
}

static bool need(reader_t *r, size_t n, const char *what) {
  if (!r->failed && (size_t)(r->end - r->p) < n)
    bad(r, "%s runs past the end of the calls", what);
  return !r->failed;
}

static uint64_t get_le(reader_t *r, size_t n, const char *what) {
  if (!need(r, n, what))
    return 0;
  uint64_t v = le(r->p, n);
  r->p += n;
  return v;
}

static int64_t get_time(reader_t *r, const char *what) {
  return (int64_t)get_le(r, 8, what);
}

static int get_int(reader_t *r, const char *what) {
  return (int32_t)(uint32_t)get_le(r, 4, what);
}

/* The string in place ("" when unset or after a problem). */
static const char *get_str(reader_t *r, const char *what) {
  size_t n = (size_t)get_le(r, 4, what);
  if (!need(r, n + 1, what))
    return "";
  const char *s = (const char *)r->p;
  if (r->p[n] != '\0' || memchr(s, '\0', n) != NULL) {
    bad(r, "%s is not a string without NUL bytes, then one", what);
    return "";
  }
  r->p += n + 1;
  return s;
}

/* A call as read: the strings point into the buffer. */
typedef struct {
  usc_state_call_t call;
  usc_state_view_t views[USC_STATE_MAX_VIEWS];
  const char *numbers[USC_STATE_MAX_VIEWS][2 * USC_STATE_MAX_NUMBERS];
  state_deadlines_t deadlines;
} decoded_t;

static size_t get_numbers(reader_t *r, const char **out, const char *what) {
  size_t n = (size_t)get_le(r, 1, what);
  if (n > USC_STATE_MAX_NUMBERS) {
    bad(r, "%zu %s numbers where a leg has at most %d", n, what,
        USC_STATE_MAX_NUMBERS);
    return 0;
  }
  for (size_t i = 0; i < n; i++)
    out[i] = get_str(r, what);
  return n;
}

static void get_view(reader_t *r, decoded_t *d, size_t i) {
  usc_state_view_t *v = &d->views[i];
  const char **numbers = d->numbers[i];
  memset(v, 0, sizeof *v);
  if (need(r, 2, "a leg id")) {
    memcpy(v->id, r->p, 2);
    r->p += 2;
  }
  v->extension = get_str(r, "a leg's extension");
  v->n_source = get_numbers(r, numbers, "source");
  v->source = numbers;
  v->n_destination = get_numbers(r, numbers + v->n_source, "destination");
  v->destination = numbers + v->n_source;
  v->flow = get_int(r, "flow");
  v->status = get_int(r, "status");
  v->ringing = get_time(r, "ringing");
  v->caller_id = get_str(r, "caller_id");
  v->recording = get_time(r, "recording");
  v->answered = get_time(r, "answered");
  v->parked = get_time(r, "parked");
  v->parked_pos = get_int(r, "parked_pos");
  v->parked_by = get_str(r, "parked_by");
  d->deadlines.park_secs[i] = (uint16_t)get_le(r, 2, "the parking limit");
  v->on_hold = get_time(r, "on_hold");
  v->holder = get_int(r, "holder");
  v->disposition = get_int(r, "disposition");
}

static void get_call(reader_t *r, decoded_t *d) {
  usc_state_call_t *c = &d->call;
  memset(d, 0, sizeof *d);
  c->user = get_str(r, "the user");
  c->id = get_str(r, "the call id");
  c->extension = get_str(r, "the extension");
  c->owner_id = get_str(r, "owner_id");
  c->owner_name = get_str(r, "owner_name");
  c->nonce = get_str(r, "nonce");
  c->published = get_time(r, "published");
  c->answered = get_time(r, "answered");
  d->deadlines.ring_at = get_time(r, "the end of ringing");
  size_t n = (size_t)get_le(r, 1, "the leg count");
  if (n > USC_STATE_MAX_VIEWS) {
    bad(r, "%zu legs where a call has at most %d", n, USC_STATE_MAX_VIEWS);
    n = 0;
  }
  for (size_t i = 0; i < n && !r->failed; i++)
    get_view(r, d, i);
  c->views = d->views;
  c->n_views = n;
}

/* Reads and builds the `n` calls into recs[], all of them or, on error,
 * none (those built are dropped). */
static int build_all(reader_t *r, rec_t **recs, size_t n,
                     usc_state_err_t *err) {
  decoded_t d;
  size_t built = 0;
  int rc = 0;
  for (; built < n; built++) {
    size_t at = (size_t)(r->p - r->start);
    get_call(r, &d);
    if (r->failed) {
      rc = USC_ERR_INVALID;
      break;
    }
    if ((rc = state_build(&d.call, &d.deadlines, &recs[built], err))) {
      char why[sizeof err->message];
      memcpy(why, err->message, sizeof why);
      refuse(err, rc, "call %zu of %zu (byte %zu): %s", built + 1, n, at, why);
      break;
    }
  }
  if (rc == 0 && r->p != r->end)
    rc = refuse(err, USC_ERR_INVALID, "byte %zu: %zu bytes after the last call",
                (size_t)(r->p - r->start), (size_t)(r->end - r->p));
  if (rc != 0)
    while (built > 0)
      state_drop(recs[--built]);
  return rc;
}

int usc_state_load(usc_state_t *state, const uint8_t *bytes, size_t len,
                   int64_t now, usc_state_err_t *err) {
  *err = (usc_state_err_t){USC_GRPC_OK, NULL, ""};
  int rc = check_envelope(bytes, len, err);
  if (rc != 0)
    return rc;
  reader_t r = {bytes, bytes + HEADER_SIZE, bytes + len - CRC_SIZE, err, false};
  (void)get_time(&r, "the time of the save");
  size_t n = (size_t)get_le(&r, 4, "the call count");
  if (r.failed)
    return USC_ERR_INVALID;
  if (n > (size_t)(r.end - r.p) / MIN_CALL_SIZE)
    return refuse(err, USC_ERR_INVALID,
                  "%zu calls announced in %zu bytes: too few bytes for them", n,
                  (size_t)(r.end - r.p));
  if (n > state_room(state))
    return refuse(err, USC_ERR_FULL,
                  "%zu calls saved, and the engine has room for %zu more: "
                  "raise --max-calls",
                  n, state_room(state));
  rec_t **recs = usc_calloc(n > 0 ? n : 1, sizeof *recs);
  if (recs == NULL)
    return refuse(err, USC_ERR_NOMEM, "out of memory while loading calls");
  rc = build_all(&r, recs, n, err);
  if (rc == 0 && (rc = state_adopt(state, recs, n, err)) != 0)
    for (size_t i = 0; i < n; i++)
      state_drop(recs[i]);
  usc_free(recs);
  if (rc == 0)
    usc_state_advance(state, now);
  return rc;
}
