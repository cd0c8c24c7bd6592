#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/base/base.h"
#include "src/grpc/grpc.h"

/* ---- Status names ---- */

static void test_status_names(void **state) {
  (void)state;
  static const char *const names[] = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
  };
  for (int i = 0; i <= USC_GRPC_UNAUTHENTICATED; i++)
    assert_string_equal(usc_grpc_status_name((usc_grpc_status_t)i), names[i]);
  assert_string_equal(usc_grpc_status_name(USC_GRPC_DEADLINE_EXCEEDED),
                      "DEADLINE_EXCEEDED");
}

static void test_status_name_out_of_range(void **state) {
  (void)state;
  assert_string_equal(usc_grpc_status_name((usc_grpc_status_t)17), "UNKNOWN");
  assert_string_equal(usc_grpc_status_name((usc_grpc_status_t)-1), "UNKNOWN");
  assert_string_equal(usc_grpc_status_name((usc_grpc_status_t)1000), "UNKNOWN");
}

static void test_status_text(void **state) {
  (void)state;
  char want[12];
  for (int i = 0; i <= USC_GRPC_UNAUTHENTICATED; i++) {
    snprintf(want, sizeof(want), "%d", i);
    assert_string_equal(usc_grpc_status_text((usc_grpc_status_t)i), want);
  }
  assert_string_equal(usc_grpc_status_text((usc_grpc_status_t)17), "2");
  assert_string_equal(usc_grpc_status_text((usc_grpc_status_t)-5), "2");
}

/* ---- Framing ---- */

static void test_frame_header(void **state) {
  (void)state;
  uint8_t h[USC_GRPC_FRAME_HEADER_LEN];
  usc_grpc_frame_header(h, 0x01020304);
  static const uint8_t want[] = {0, 1, 2, 3, 4};
  assert_memory_equal(h, want, sizeof(want));
  usc_grpc_frame_header(h, 0);
  static const uint8_t zero[] = {0, 0, 0, 0, 0};
  assert_memory_equal(h, zero, sizeof(zero));
  usc_grpc_frame_header(h, UINT32_MAX);
  static const uint8_t max[] = {0, 0xFF, 0xFF, 0xFF, 0xFF};
  assert_memory_equal(h, max, sizeof(max));
}

enum { MAX_MSGS = 16, REC_BYTES = 4096 };

/* Collects delivered messages; stops feeding at message `stop_at` (1-based)
 * by returning `stop_rc`. */
typedef struct {
  size_t count;
  bool compressed[MAX_MSGS];
  size_t len[MAX_MSGS];
  size_t off[MAX_MSGS];
  uint8_t bytes[REC_BYTES];
  size_t used;
  size_t stop_at;
  int stop_rc;
} recorder_t;

static int record(void *user, bool compressed, const uint8_t *data,
                  size_t len) {
  recorder_t *r = user;
  assert_non_null(data);
  assert_true(r->count < MAX_MSGS);
  assert_true(r->used + len <= REC_BYTES);
  r->compressed[r->count] = compressed;
  r->len[r->count] = len;
  r->off[r->count] = r->used;
  memcpy(r->bytes + r->used, data, len);
  r->used += len;
  r->count++;
  return r->count == r->stop_at ? r->stop_rc : 0;
}

typedef struct {
  bool compressed;
  size_t len;
} msg_spec_t;

static const msg_spec_t stream_msgs[] = {
    {false, 5}, {false, 0},    {true, 300}, {true, 0},
    {false, 1}, {false, 1000}, {false, 6},
};

enum { STREAM_MAX_LEN = 1000 };

static uint8_t msg_byte(size_t msg, size_t i) {
  return (uint8_t)(msg * 31 + i * 7 + 1);
}

static size_t build_stream(uint8_t *out, size_t cap) {
  size_t n = 0;
  for (size_t m = 0; m < USC_ARRAY_LEN(stream_msgs); m++) {
    assert_true(n + USC_GRPC_FRAME_HEADER_LEN + stream_msgs[m].len <= cap);
    usc_grpc_frame_header(out + n, (uint32_t)stream_msgs[m].len);
    out[n] = stream_msgs[m].compressed ? 1 : 0;
    n += USC_GRPC_FRAME_HEADER_LEN;
    for (size_t i = 0; i < stream_msgs[m].len; i++)
      out[n++] = msg_byte(m, i);
  }
  return n;
}

static void check_stream(const recorder_t *r) {
  assert_int_equal(r->count, USC_ARRAY_LEN(stream_msgs));
  for (size_t m = 0; m < r->count; m++) {
    assert_int_equal(r->compressed[m], stream_msgs[m].compressed);
    assert_int_equal(r->len[m], stream_msgs[m].len);
    for (size_t i = 0; i < r->len[m]; i++)
      assert_int_equal(r->bytes[r->off[m] + i], msg_byte(m, i));
  }
}

static uint32_t xorshift(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/* Feeds `stream` in chunks of 1..max_chunk bytes picked by `seed`; a
 * max_chunk of 0 feeds it all at once. */
static void feed_stream(const uint8_t *stream, size_t len, uint32_t seed,
                        size_t max_chunk, recorder_t *r) {
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, STREAM_MAX_LEN);
  memset(r, 0, sizeof(*r));
  size_t pos = 0;
  while (pos < len) {
    size_t n = max_chunk == 0 ? len : 1 + xorshift(&seed) % max_chunk;
    n = n < len - pos ? n : len - pos;
    assert_int_equal(
        usc_grpc_deframer_feed(&d, stream + pos, n, record, r, NULL), 0);
    pos += n;
  }
  assert_false(usc_grpc_deframer_partial(&d));
  assert_true(d.body_cap <= STREAM_MAX_LEN);
  usc_grpc_deframer_free(&d);
}

static void test_deframe_all_at_once(void **state) {
  (void)state;
  uint8_t stream[2048];
  size_t len = build_stream(stream, sizeof(stream));
  recorder_t r;
  usc_alloc_fail_at(0);
  feed_stream(stream, len, 1, 0, &r);
  /* A body wholly inside the input is delivered in place. */
  assert_int_equal(usc_alloc_fail_at(0), 0);
  check_stream(&r);
}

static void test_deframe_byte_by_byte(void **state) {
  (void)state;
  uint8_t stream[2048];
  size_t len = build_stream(stream, sizeof(stream));
  recorder_t r;
  feed_stream(stream, len, 1, 1, &r);
  check_stream(&r);
}

static void test_deframe_random_splits(void **state) {
  (void)state;
  uint8_t stream[2048];
  size_t len = build_stream(stream, sizeof(stream));
  static const size_t chunks[] = {2, 3, 7, 64, 500, 1500};
  for (size_t c = 0; c < USC_ARRAY_LEN(chunks); c++) {
    for (uint32_t seed = 1; seed <= 50; seed++) {
      recorder_t r;
      feed_stream(stream, len, seed * 2654435761u, chunks[c], &r);
      check_stream(&r);
    }
  }
}

static void test_deframe_empty_feed(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 10);
  recorder_t r = {0};
  assert_int_equal(usc_grpc_deframer_feed(&d, NULL, 0, record, &r, NULL), 0);
  assert_int_equal(r.count, 0);
  assert_false(usc_grpc_deframer_partial(&d));
  usc_grpc_deframer_free(&d);
}

static void test_deframe_zero_length(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 0);
  recorder_t r = {0};
  static const uint8_t msg[] = {0, 0, 0, 0, 0};
  assert_int_equal(
      usc_grpc_deframer_feed(&d, msg, sizeof(msg), record, &r, NULL), 0);
  assert_int_equal(r.count, 1);
  assert_int_equal(r.len[0], 0);
  assert_false(r.compressed[0]);
  assert_false(usc_grpc_deframer_partial(&d));
  assert_null(d.body);
  usc_grpc_deframer_free(&d);
}

static void test_deframe_partial(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 10);
  recorder_t r = {0};
  static const uint8_t msg[] = {0, 0, 0, 0, 2, 'h', 'i'};
  assert_false(usc_grpc_deframer_partial(&d));
  assert_int_equal(usc_grpc_deframer_feed(&d, msg, 1, record, &r, NULL), 0);
  assert_true(usc_grpc_deframer_partial(&d));
  assert_int_equal(usc_grpc_deframer_feed(&d, msg + 1, 4, record, &r, NULL), 0);
  assert_true(usc_grpc_deframer_partial(&d));
  assert_int_equal(usc_grpc_deframer_feed(&d, msg + 5, 1, record, &r, NULL), 0);
  assert_true(usc_grpc_deframer_partial(&d));
  assert_int_equal(r.count, 0);
  assert_int_equal(usc_grpc_deframer_feed(&d, msg + 6, 1, record, &r, NULL), 0);
  assert_false(usc_grpc_deframer_partial(&d));
  assert_int_equal(r.count, 1);
  assert_memory_equal(r.bytes, "hi", 2);
  usc_grpc_deframer_free(&d);
}

static void test_deframe_too_large(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 100);
  recorder_t r = {0};
  uint8_t msg[5 + 101] = {0};
  usc_grpc_frame_header(msg, 101);
  uint64_t declared = 0;
  usc_alloc_fail_at(0);
  assert_int_equal(
      usc_grpc_deframer_feed(&d, msg, sizeof(msg), record, &r, &declared),
      USC_ERR_TOO_LARGE);
  assert_int_equal(declared, 101);
  assert_int_equal(r.count, 0);
  assert_null(d.body);
  assert_int_equal(usc_alloc_fail_at(0), 0);
  usc_grpc_deframer_free(&d);
}

static void test_deframe_too_large_on_header(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 100);
  recorder_t r = {0};
  uint8_t h[USC_GRPC_FRAME_HEADER_LEN];
  usc_grpc_frame_header(h, UINT32_MAX);
  uint64_t declared = 0;
  assert_int_equal(usc_grpc_deframer_feed(&d, h, 3, record, &r, &declared), 0);
  assert_int_equal(usc_grpc_deframer_feed(&d, h + 3, 2, record, &r, &declared),
                   USC_ERR_TOO_LARGE);
  assert_int_equal(declared, UINT32_MAX);
  assert_null(d.body);
  usc_grpc_deframer_free(&d);
}

static void test_deframe_too_large_null_declared(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 0);
  recorder_t r = {0};
  uint8_t h[USC_GRPC_FRAME_HEADER_LEN];
  usc_grpc_frame_header(h, 1);
  assert_int_equal(usc_grpc_deframer_feed(&d, h, sizeof(h), record, &r, NULL),
                   USC_ERR_TOO_LARGE);
  usc_grpc_deframer_free(&d);
}

static void test_deframe_exactly_max_len(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 4);
  recorder_t r = {0};
  static const uint8_t msg[] = {0, 0, 0, 0, 4, 'a', 'b', 'c', 'd'};
  for (size_t i = 0; i < sizeof(msg); i++)
    assert_int_equal(usc_grpc_deframer_feed(&d, msg + i, 1, record, &r, NULL),
                     0);
  assert_int_equal(r.count, 1);
  assert_memory_equal(r.bytes, "abcd", 4);
  assert_int_equal(d.body_cap, 4);
  usc_grpc_deframer_free(&d);
}

static void test_deframe_bad_flags(void **state) {
  (void)state;
  static const uint8_t flags[] = {2, 0x80, 0xFF};
  for (size_t i = 0; i < USC_ARRAY_LEN(flags); i++) {
    usc_grpc_deframer_t d;
    usc_grpc_deframer_init(&d, 10);
    recorder_t r = {0};
    const uint8_t msg[] = {flags[i], 0, 0, 0, 1, 'x'};
    assert_int_equal(
        usc_grpc_deframer_feed(&d, msg, sizeof(msg), record, &r, NULL),
        USC_ERR_INVALID);
    assert_int_equal(r.count, 0);
    usc_grpc_deframer_free(&d);
  }
}

/* Feeds a message of `len` bytes split in two so it must be buffered. */
static void feed_split(usc_grpc_deframer_t *d, size_t len, recorder_t *r) {
  uint8_t msg[USC_GRPC_FRAME_HEADER_LEN + 256] = {0};
  assert_true(len <= 256);
  usc_grpc_frame_header(msg, (uint32_t)len);
  size_t total = USC_GRPC_FRAME_HEADER_LEN + len;
  size_t half = USC_GRPC_FRAME_HEADER_LEN + len / 2;
  assert_int_equal(usc_grpc_deframer_feed(d, msg, half, record, r, NULL), 0);
  assert_int_equal(
      usc_grpc_deframer_feed(d, msg + half, total - half, record, r, NULL), 0);
}

static void test_deframe_buffer_reuse(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 256);
  recorder_t r = {0};
  feed_split(&d, 100, &r);
  assert_int_equal(d.body_cap, 100);
  uint8_t *body = d.body;
  usc_alloc_fail_at(0);
  feed_split(&d, 50, &r);
  feed_split(&d, 100, &r);
  assert_int_equal(usc_alloc_fail_at(0), 0);
  assert_ptr_equal(d.body, body);
  assert_int_equal(d.body_cap, 100);
  feed_split(&d, 256, &r);
  assert_int_equal(d.body_cap, 256);
  assert_int_equal(r.count, 4);
  usc_grpc_deframer_free(&d);
  assert_null(d.body);
  assert_int_equal(d.body_cap, 0);
}

static void test_deframe_nomem(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 100);
  recorder_t r = {0};
  static const uint8_t msg[] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
  usc_alloc_fail_at(1);
  assert_int_equal(usc_grpc_deframer_feed(&d, msg, 6, record, &r, NULL),
                   USC_ERR_NOMEM);
  usc_alloc_fail_at(0);
  assert_null(d.body);
  assert_int_equal(r.count, 0);
  usc_grpc_deframer_free(&d);
}

/* A failed growth keeps the old buffer owned (ASan would see a leak). */
static void test_deframe_nomem_on_growth(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 256);
  recorder_t r = {0};
  feed_split(&d, 10, &r);
  uint8_t *body = d.body;
  /* 11 bytes of 20: more than the buffer's 10. */
  static const uint8_t msg[] = {0,   0,   0,   0,   20,  'a', 'b', 'c',
                                'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k'};
  usc_alloc_fail_at(1);
  assert_int_equal(
      usc_grpc_deframer_feed(&d, msg, sizeof(msg), record, &r, NULL),
      USC_ERR_NOMEM);
  usc_alloc_fail_at(0);
  assert_ptr_equal(d.body, body);
  assert_int_equal(d.body_cap, 10);
  assert_int_equal(r.count, 1);
  usc_grpc_deframer_free(&d);
}

/* A prefix promising max_len bytes followed by a few: the buffer holds
 * about what came, not what was promised. */
static void test_deframe_grows_with_data(void **state) {
  (void)state;
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, 1 << 20);
  recorder_t r = {0};
  uint8_t msg[USC_GRPC_FRAME_HEADER_LEN + 1000] = {0};
  usc_grpc_frame_header(msg, 1 << 20);
  assert_int_equal(
      usc_grpc_deframer_feed(&d, msg, sizeof(msg), record, &r, NULL), 0);
  assert_int_equal(d.body_cap, 1000);
  for (int i = 0; i < 3; i++)
    assert_int_equal(usc_grpc_deframer_feed(&d, msg + USC_GRPC_FRAME_HEADER_LEN,
                                            1000, record, &r, NULL),
                     0);
  assert_int_equal(d.body_cap, 4000);
  assert_int_equal(usc_grpc_deframer_feed(&d, msg + USC_GRPC_FRAME_HEADER_LEN,
                                          1, record, &r, NULL),
                   0);
  assert_int_equal(d.body_cap, 8000);
  assert_int_equal(r.count, 0);
  usc_grpc_deframer_free(&d);
}

static void test_deframe_callback_stops(void **state) {
  (void)state;
  uint8_t stream[2048];
  size_t len = build_stream(stream, sizeof(stream));
  static const size_t max_chunks[] = {0, 1, 17};
  for (size_t c = 0; c < USC_ARRAY_LEN(max_chunks); c++) {
    usc_grpc_deframer_t d;
    usc_grpc_deframer_init(&d, STREAM_MAX_LEN);
    recorder_t r = {.stop_at = 3, .stop_rc = 42};
    uint32_t seed = 7;
    size_t pos = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
      size_t n = max_chunks[c] == 0 ? len : 1 + xorshift(&seed) % max_chunks[c];
      n = n < len - pos ? n : len - pos;
      rc = usc_grpc_deframer_feed(&d, stream + pos, n, record, &r, NULL);
      pos += n;
    }
    assert_int_equal(rc, 42);
    assert_int_equal(r.count, 3);
    usc_grpc_deframer_free(&d);
  }
}

static void test_deframer_free_zeroed(void **state) {
  (void)state;
  usc_grpc_deframer_t d = {0};
  usc_grpc_deframer_free(&d);
  usc_grpc_deframer_free(&d);
}

/* ---- grpc-timeout ---- */

static int parse_timeout(const char *s, int64_t *ns) {
  return usc_grpc_timeout_parse(s, strlen(s), ns);
}

static void test_timeout_units(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t ns;
  } cases[] = {
      {"1H", INT64_C(3600000000000)},
      {"5M", INT64_C(300000000000)},
      {"10S", INT64_C(10000000000)},
      {"100m", INT64_C(100000000)},
      {"7u", INT64_C(7000)},
      {"3n", 3},
      {"0n", 0},
      {"00000001S", INT64_C(1000000000)},
      {"99999999n", INT64_C(99999999)},
      {"99999999S", INT64_C(99999999000000000)},
      {"99999999M", INT64_C(5999999940000000000)},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    int64_t ns = -1;
    assert_int_equal(parse_timeout(cases[i].text, &ns), 0);
    assert_int_equal(ns, cases[i].ns);
  }
}

static void test_timeout_saturates(void **state) {
  (void)state;
  int64_t ns = 0;
  assert_int_equal(parse_timeout("99999999H", &ns), 0);
  assert_int_equal(ns, INT64_MAX);
  ns = 0;
  assert_int_equal(parse_timeout("2562048H", &ns), 0);
  assert_int_equal(ns, INT64_MAX);
  /* The largest whole hour count that still fits. */
  assert_int_equal(parse_timeout("2562047H", &ns), 0);
  assert_int_equal(ns, INT64_C(2562047) * INT64_C(3600000000000));
}

static void test_timeout_invalid(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",     "S",   "1",   "123456789S", "1s",   "1h",
      "1x",   "+1S", "-1S", " 1S",        "1 S",  "1S ",
      "1.5S", "1SS", "aS",  "1e3n",       "0x1S", "\xef\xbc\x91S",
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    int64_t ns = 12345;
    assert_int_equal(parse_timeout(bad[i], &ns), USC_ERR_INVALID);
    assert_int_equal(ns, 12345);
  }
  int64_t ns = 0;
  assert_int_equal(usc_grpc_timeout_parse(NULL, 0, &ns), USC_ERR_INVALID);
}

static void test_timeout_uses_len(void **state) {
  (void)state;
  int64_t ns = 0;
  assert_int_equal(usc_grpc_timeout_parse("10Sxyz", 3, &ns), 0);
  assert_int_equal(ns, INT64_C(10000000000));
  assert_int_equal(usc_grpc_timeout_parse("10S", 2, &ns), USC_ERR_INVALID);
}

/* ---- Percent-encoding ---- */

static void test_percent_encode(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *out;
  } cases[] = {
      {"", ""},
      {"hello world", "hello world"},
      {" ~!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}",
       " ~!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}"},
      {"100%", "100%25"},
      {"a\nb\r\t", "a%0Ab%0D%09"},
      {"\x1f\x7f\xff", "%1F%7F%FF"},
      {"caf\xc3\xa9", "caf%C3%A9"},
  };
  char out[64];
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    size_t n = usc_grpc_percent_encode(cases[i].in, strlen(cases[i].in), out,
                                       sizeof(out) - 1);
    assert_string_equal(out, cases[i].out);
    assert_int_equal(n, strlen(cases[i].out));
  }
}

static void test_percent_encode_nul(void **state) {
  (void)state;
  char out[16];
  size_t n = usc_grpc_percent_encode("a\0b", 3, out, sizeof(out) - 1);
  assert_int_equal(n, 5);
  assert_string_equal(out, "a%00b");
}

static void test_percent_encode_truncates_between_units(void **state) {
  (void)state;
  char out[8];
  memset(out, 'Z', sizeof(out));
  assert_int_equal(usc_grpc_percent_encode("a\nb", 3, out, 3), 1);
  assert_string_equal(out, "a");
  assert_int_equal(usc_grpc_percent_encode("a\nb", 3, out, 4), 4);
  assert_string_equal(out, "a%0A");
  assert_int_equal(usc_grpc_percent_encode("a\nb", 3, out, 5), 5);
  assert_string_equal(out, "a%0Ab");
  assert_int_equal(usc_grpc_percent_encode("abc", 3, out, 2), 2);
  assert_string_equal(out, "ab");
  assert_int_equal(usc_grpc_percent_encode("abc", 3, out, 0), 0);
  assert_string_equal(out, "");
}

static void test_percent_decode(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *out;
  } cases[] = {
      {"", ""},
      {"plain text", "plain text"},
      {"100%25", "100%"},
      {"caf%C3%A9", "caf\xc3\xa9"},
      {"caf%c3%a9", "caf\xc3\xa9"},
      {"%", "%"},
      {"100%", "100%"},
      {"%4", "%4"},
      {"%G1", "%G1"},
      {"%4G", "%4G"},
      {"%%41", "%A"},
      {"%%%", "%%%"},
      {"a%2", "a%2"},
  };
  char out[64];
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    size_t n = usc_grpc_percent_decode(cases[i].in, strlen(cases[i].in), out,
                                       sizeof(out) - 1);
    assert_string_equal(out, cases[i].out);
    assert_int_equal(n, strlen(cases[i].out));
  }
}

static void test_percent_decode_truncates(void **state) {
  (void)state;
  char out[8];
  assert_int_equal(usc_grpc_percent_decode("ab%41cd", 7, out, 3), 3);
  assert_string_equal(out, "abA");
  assert_int_equal(usc_grpc_percent_decode("abc", 3, out, 0), 0);
  assert_string_equal(out, "");
}

static void test_percent_round_trip_all_bytes(void **state) {
  (void)state;
  char in[256];
  for (int i = 0; i < 256; i++)
    in[i] = (char)i;
  char enc[256 * 3 + 1];
  size_t n = usc_grpc_percent_encode(in, sizeof(in), enc, sizeof(enc) - 1);
  /* 94 printable bytes pass (0x20..0x7E less '%'); the others take 3. */
  assert_int_equal(n, 94 + 3 * (256 - 94));
  for (size_t i = 0; i < n; i++)
    assert_true(enc[i] >= 0x20 && enc[i] <= 0x7E);
  char dec[257];
  assert_int_equal(usc_grpc_percent_decode(enc, n, dec, sizeof(dec) - 1), 256);
  assert_memory_equal(dec, in, sizeof(in));
}

/* ---- base64 ---- */

static void test_base64_vectors(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *out;
  } cases[] = {
      {"", ""},
      {"f", "Zg"},
      {"fo", "Zm8"},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg"},
      {"fooba", "Zm9vYmE"},
      {"foobar", "Zm9vYmFy"},
  };
  char out[16];
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    size_t n = usc_grpc_base64_encode((const uint8_t *)cases[i].in,
                                      strlen(cases[i].in), out, sizeof(out));
    assert_string_equal(out, cases[i].out);
    assert_int_equal(n, strlen(cases[i].out));
  }
}

static void test_base64_alphabet_ends(void **state) {
  (void)state;
  static const uint8_t in[] = {0xFB, 0xEF, 0xFF, 0x00};
  char out[8];
  assert_int_equal(usc_grpc_base64_encode(in, sizeof(in), out, sizeof(out)), 6);
  assert_string_equal(out, "++//AA");
}

static void test_base64_cap(void **state) {
  (void)state;
  char out[8];
  const uint8_t *foo = (const uint8_t *)"foo";
  assert_int_equal(usc_grpc_base64_encode(foo, 3, out, 5), 4);
  assert_string_equal(out, "Zm9v");
  memset(out, 'Z', sizeof(out));
  assert_int_equal(usc_grpc_base64_encode(foo, 3, out, 4), 0);
  assert_string_equal(out, "");
  assert_int_equal(usc_grpc_base64_encode(foo, 2, out, 3), 0);
  assert_int_equal(usc_grpc_base64_encode(foo, 2, out, 4), 3);
  assert_int_equal(usc_grpc_base64_encode(foo, 0, out, 0), 0);
  assert_int_equal(usc_grpc_base64_encode(foo, 3, out, 0), 0);
}

/* ---- grpc-status-details-bin ---- */

static int b64_value(char c) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char *p = c != '\0' ? strchr(alphabet, c) : NULL;
  assert_non_null(p);
  return (int)(p - alphabet);
}

/* Decodes unpadded base64 (the test's own, independent of grpc.c). */
static size_t b64_decode(const char *in, uint8_t *out, size_t cap) {
  size_t len = strlen(in);
  assert_int_not_equal(len % 4, 1);
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    acc = acc << 6 | (uint32_t)b64_value(in[i]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      assert_true(n < cap);
      out[n++] = (uint8_t)(acc >> bits);
    }
  }
  /* Unused trailing bits must be zero in canonical output. */
  assert_int_equal(acc & ((1u << bits) - 1), 0);
  return n;
}

typedef struct {
  const uint8_t *p;
  size_t len;
} span_t;

static uint64_t pb_varint(span_t *s) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    assert_true(s->len > 0);
    assert_true(shift < 64);
    uint8_t b = *s->p++;
    s->len--;
    v |= (uint64_t)(b & 0x7F) << shift;
    if ((b & 0x80) == 0)
      return v;
  }
}

/* Reads one field; length-delimited values land in `sub`, varints in
 * `*v`. Returns the field number. */
static unsigned pb_field(span_t *s, uint64_t *v, span_t *sub) {
  uint64_t tag = pb_varint(s);
  unsigned wire = (unsigned)(tag & 7);
  if (wire == 0) {
    *v = pb_varint(s);
  } else {
    assert_int_equal(wire, 2);
    uint64_t n = pb_varint(s);
    assert_true(n <= s->len);
    sub->p = s->p;
    sub->len = (size_t)n;
    s->p += n;
    s->len -= n;
  }
  return (unsigned)(tag >> 3);
}

typedef struct {
  bool has_code;
  int32_t code;
  char message[512];
  int details;
  char type_url[64];
  char reason[64];
  char domain[64];
} status_t;

static void span_str(span_t sp, char *out, size_t cap) {
  assert_true(sp.len < cap);
  memcpy(out, sp.p, sp.len);
  out[sp.len] = '\0';
}

static void decode_error_info(span_t s, status_t *st) {
  while (s.len > 0) {
    uint64_t v;
    span_t sub;
    unsigned f = pb_field(&s, &v, &sub);
    assert_true(f == 1 || f == 2);
    span_str(sub, f == 1 ? st->reason : st->domain, sizeof(st->reason));
  }
}

static void decode_any(span_t s, status_t *st) {
  span_t value = {0};
  while (s.len > 0) {
    uint64_t v;
    span_t sub;
    unsigned f = pb_field(&s, &v, &sub);
    if (f == 1) {
      span_str(sub, st->type_url, sizeof(st->type_url));
    } else {
      assert_int_equal(f, 2);
      value = sub;
    }
  }
  assert_string_equal(st->type_url, "type.googleapis.com/google.rpc.ErrorInfo");
  decode_error_info(value, st);
}

static void decode_status(const char *b64, status_t *st) {
  uint8_t buf[1024];
  span_t s = {buf, b64_decode(b64, buf, sizeof(buf))};
  memset(st, 0, sizeof(*st));
  while (s.len > 0) {
    uint64_t v = 0;
    span_t sub = {0};
    unsigned f = pb_field(&s, &v, &sub);
    if (f == 1) {
      st->has_code = true;
      st->code = (int32_t)(uint32_t)v;
    } else if (f == 2) {
      span_str(sub, st->message, sizeof(st->message));
    } else {
      assert_int_equal(f, 3);
      st->details++;
      decode_any(sub, st);
    }
  }
}

static void test_status_details_full(void **state) {
  (void)state;
  char out[512];
  size_t n = usc_grpc_status_details_bin(USC_GRPC_INVALID_ARGUMENT,
                                         "bad phone number", "INVALID_NUMBER",
                                         "uapi.voipnow.com", out, sizeof(out));
  assert_int_equal(n, strlen(out));
  status_t st;
  decode_status(out, &st);
  assert_true(st.has_code);
  assert_int_equal(st.code, USC_GRPC_INVALID_ARGUMENT);
  assert_string_equal(st.message, "bad phone number");
  assert_int_equal(st.details, 1);
  assert_string_equal(st.reason, "INVALID_NUMBER");
  assert_string_equal(st.domain, "uapi.voipnow.com");
}

/* Worked out by hand from the wire format. */
static void test_status_details_exact_bytes(void **state) {
  (void)state;
  static const uint8_t type_url[] = "type.googleapis.com/google.rpc.ErrorInfo";
  uint8_t want[64];
  size_t n = 0;
  static const uint8_t head[] = {0x08, 0x05, 0x12, 0x01, 'x',
                                 0x1A, 50,   0x0A, 40};
  memcpy(want + n, head, sizeof(head));
  n += sizeof(head);
  memcpy(want + n, type_url, 40);
  n += 40;
  static const uint8_t tail[] = {0x12, 6, 0x0A, 1, 'R', 0x12, 1, 'd'};
  memcpy(want + n, tail, sizeof(tail));
  n += sizeof(tail);
  assert_int_equal(n, 57);

  char out[128];
  size_t len = usc_grpc_status_details_bin(USC_GRPC_NOT_FOUND, "x", "R", "d",
                                           out, sizeof(out));
  assert_int_equal(len, 76); /* 57 bytes: 19 groups of 3 */
  uint8_t got[64];
  assert_int_equal(b64_decode(out, got, sizeof(got)), n);
  assert_memory_equal(got, want, n);
}

static void test_status_details_no_reason(void **state) {
  (void)state;
  char out[128];
  static const char *const reasons[] = {NULL, ""};
  for (size_t i = 0; i < USC_ARRAY_LEN(reasons); i++) {
    size_t n = usc_grpc_status_details_bin(USC_GRPC_UNAVAILABLE, "down",
                                           reasons[i], "d", out, sizeof(out));
    assert_true(n > 0);
    status_t st;
    decode_status(out, &st);
    assert_int_equal(st.code, USC_GRPC_UNAVAILABLE);
    assert_string_equal(st.message, "down");
    assert_int_equal(st.details, 0);
  }
  /* Status{code: 14, message: "down"} = 08 0E 12 04 'd' 'o' 'w' 'n'. */
  usc_grpc_status_details_bin(USC_GRPC_UNAVAILABLE, "down", NULL, NULL, out,
                              sizeof(out));
  assert_string_equal(out, "CA4SBGRvd24");
}

static void test_status_details_proto3_defaults(void **state) {
  (void)state;
  char out[128];
  size_t n = usc_grpc_status_details_bin(USC_GRPC_OK, "fine", NULL, NULL, out,
                                         sizeof(out));
  assert_true(n > 0);
  status_t st;
  decode_status(out, &st);
  assert_false(st.has_code);
  assert_string_equal(st.message, "fine");

  usc_grpc_status_details_bin(USC_GRPC_ABORTED, NULL, "R", NULL, out,
                              sizeof(out));
  decode_status(out, &st);
  assert_int_equal(st.code, USC_GRPC_ABORTED);
  assert_string_equal(st.message, "");
  assert_int_equal(st.details, 1);
  assert_string_equal(st.reason, "R");
  assert_string_equal(st.domain, "");

  usc_grpc_status_details_bin(USC_GRPC_ABORTED, "", "R", "", out, sizeof(out));
  status_t st2;
  decode_status(out, &st2);
  assert_memory_equal(&st, &st2, sizeof(st));

  /* An empty Status is zero bytes. */
  assert_int_equal(usc_grpc_status_details_bin(USC_GRPC_OK, "", NULL, NULL, out,
                                               sizeof(out)),
                   0);
  assert_string_equal(out, "");
}

static void test_status_details_long_message(void **state) {
  (void)state;
  char msg[300];
  memset(msg, 'm', sizeof(msg) - 1);
  msg[sizeof(msg) - 1] = '\0';
  char out[1024];
  size_t n = usc_grpc_status_details_bin(USC_GRPC_INTERNAL, msg, "REASON",
                                         "example.com", out, sizeof(out));
  assert_true(n > 0);
  status_t st;
  decode_status(out, &st);
  assert_int_equal(st.code, USC_GRPC_INTERNAL);
  assert_string_equal(st.message, msg);
  assert_string_equal(st.reason, "REASON");
  assert_string_equal(st.domain, "example.com");
}

static void test_status_details_negative_code(void **state) {
  (void)state;
  char out[128];
  usc_grpc_status_details_bin((usc_grpc_status_t)-1, "", NULL, NULL, out,
                              sizeof(out));
  /* int32 -1 is a ten-byte varint: 08 FF FF FF FF FF FF FF FF FF 01. */
  uint8_t raw[16];
  assert_int_equal(b64_decode(out, raw, sizeof(raw)), 11);
  status_t st;
  decode_status(out, &st);
  assert_int_equal(st.code, -1);
}

static void test_status_details_cap(void **state) {
  (void)state;
  char out[256];
  size_t n = usc_grpc_status_details_bin(USC_GRPC_NOT_FOUND, "x", "R", "d", out,
                                         sizeof(out));
  assert_int_equal(n, 76);
  char exact[77];
  assert_int_equal(usc_grpc_status_details_bin(USC_GRPC_NOT_FOUND, "x", "R",
                                               "d", exact, sizeof(exact)),
                   76);
  assert_string_equal(exact, out);
  memset(exact, 'Z', sizeof(exact));
  assert_int_equal(
      usc_grpc_status_details_bin(USC_GRPC_NOT_FOUND, "x", "R", "d", exact, 76),
      0);
  assert_string_equal(exact, "");
}

/* ---- gzip ---- */

static void test_encoding_listed(void **state) {
  (void)state;
  const char *v = "identity, deflate,gzip ";
  assert_true(usc_grpc_encoding_listed(v, strlen(v), "gzip"));
  assert_true(usc_grpc_encoding_listed(v, strlen(v), "identity"));
  assert_true(usc_grpc_encoding_listed(v, strlen(v), "deflate"));
  assert_false(usc_grpc_encoding_listed(v, strlen(v), "snappy"));
  assert_true(usc_grpc_encoding_listed("GZIP", 4, "gzip"));
  assert_false(usc_grpc_encoding_listed("gzipx", 5, "gzip"));
  assert_false(usc_grpc_encoding_listed("", 0, "gzip"));
  assert_false(usc_grpc_encoding_listed("gzip", 3, "gzip"));
  assert_true(usc_grpc_encoding_listed(",,gzip,", 7, "gzip"));
}

static uint8_t *gz(const uint8_t *in, size_t len, size_t *out_len) {
  size_t cap = usc_grpc_gzip_bound(len);
  uint8_t *out = malloc(cap);
  assert_non_null(out);
  assert_int_equal(usc_grpc_gzip(in, len, out, cap, out_len), 0);
  assert_true(*out_len <= cap);
  return out;
}

static void test_gzip_round_trips(void **state) {
  (void)state;
  size_t sizes[] = {0, 1, 100, 4096, 100000, 1 << 20};
  uint8_t *buf = NULL;
  size_t buf_cap = 0;
  for (size_t k = 0; k < USC_ARRAY_LEN(sizes); k++) {
    size_t n = sizes[k];
    uint8_t *in = malloc(n + 1);
    /* Half text-like, half noise: both kinds of block. */
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
      x = x * 1103515245u + 12345u;
      in[i] = i < n / 2 ? (uint8_t)("abcab"[i % 5]) : (uint8_t)(x >> 24);
    }
    size_t zlen = 0, out_len = 99;
    uint8_t *z = gz(in, n, &zlen);
    assert_true(zlen >= 18);
    assert_int_equal(z[0], 0x1f); /* the gzip magic */
    assert_int_equal(z[1], 0x8b);
    assert_int_equal(usc_grpc_gunzip(z, zlen, n, &buf, &buf_cap, &out_len), 0);
    assert_int_equal(out_len, n);
    if (n > 0)
      assert_memory_equal(buf, in, n);
    assert_true(buf_cap <= (n > 0 ? n : 1) || buf_cap <= 4096);
    free(z);
    free(in);
  }
  usc_free(buf);
}

static void test_gzip_too_small_cap(void **state) {
  (void)state;
  uint8_t in[64] = {0};
  uint8_t out[8];
  size_t n;
  assert_int_equal(usc_grpc_gzip(in, sizeof(in), out, sizeof(out), &n),
                   USC_ERR_TOO_LARGE);
}

/* 64 MiB of zeros is a 64 KiB gzip: with a 1 MiB limit, inflating stops
 * there and the buffer never grows past the limit. */
static void test_gunzip_bomb(void **state) {
  (void)state;
  size_t big = 64u << 20;
  uint8_t *zeros = calloc(1, big);
  assert_non_null(zeros);
  size_t zlen;
  uint8_t *z = gz(zeros, big, &zlen);
  free(zeros);
  assert_true(zlen < big / 100);
  uint8_t *buf = NULL;
  size_t cap = 0, out_len = 0;
  assert_int_equal(usc_grpc_gunzip(z, zlen, 1 << 20, &buf, &cap, &out_len),
                   USC_ERR_TOO_LARGE);
  assert_true(cap <= (1u << 20));
  /* Exactly at the limit is fine; one byte under is not. */
  uint8_t small[1000];
  memset(small, 7, sizeof(small));
  free(z);
  z = gz(small, sizeof(small), &zlen);
  assert_int_equal(usc_grpc_gunzip(z, zlen, 1000, &buf, &cap, &out_len), 0);
  assert_int_equal(out_len, 1000);
  assert_int_equal(usc_grpc_gunzip(z, zlen, 999, &buf, &cap, &out_len),
                   USC_ERR_TOO_LARGE);
  assert_int_equal(usc_grpc_gunzip(z, zlen, 0, &buf, &cap, &out_len),
                   USC_ERR_TOO_LARGE);
  free(z);
  usc_free(buf);
}

static void test_gunzip_corrupt(void **state) {
  (void)state;
  uint8_t text[3000];
  for (size_t i = 0; i < sizeof(text); i++)
    text[i] = (uint8_t)("hello gzip "[i % 11]);
  size_t zlen;
  uint8_t *z = gz(text, sizeof(text), &zlen);
  uint8_t *buf = NULL;
  size_t cap = 0, out_len = 0;
  /* Truncated anywhere. */
  for (size_t cut = 0; cut < zlen; cut += 3)
    assert_int_equal(usc_grpc_gunzip(z, cut, 1 << 20, &buf, &cap, &out_len),
                     USC_ERR_INVALID);
  /* A flipped byte in the body or the CRC. */
  uint8_t *bad = malloc(zlen + 1);
  memcpy(bad, z, zlen);
  bad[zlen - 6] ^= 0x55;
  assert_int_equal(usc_grpc_gunzip(bad, zlen, 1 << 20, &buf, &cap, &out_len),
                   USC_ERR_INVALID);
  /* Trailing garbage after the member. */
  memcpy(bad, z, zlen);
  bad[zlen] = 0;
  assert_int_equal(
      usc_grpc_gunzip(bad, zlen + 1, 1 << 20, &buf, &cap, &out_len),
      USC_ERR_INVALID);
  /* Not gzip at all (a zlib stream, plain text). */
  assert_int_equal(usc_grpc_gunzip((const uint8_t *)"\x78\x9c\x03\x00", 4,
                                   1 << 20, &buf, &cap, &out_len),
                   USC_ERR_INVALID);
  assert_int_equal(usc_grpc_gunzip(text, 100, 1 << 20, &buf, &cap, &out_len),
                   USC_ERR_INVALID);
  free(bad);
  free(z);
  usc_free(buf);
}

static void test_gunzip_nomem(void **state) {
  (void)state;
  uint8_t text[100] = {1, 2, 3};
  size_t zlen;
  uint8_t *z = gz(text, sizeof(text), &zlen);
  uint8_t *buf = NULL;
  size_t cap = 0, out_len = 0;
  for (size_t nth = 1; nth < 8; nth++) {
    usc_alloc_fail_at(nth);
    int rc = usc_grpc_gunzip(z, zlen, 1 << 20, &buf, &cap, &out_len);
    usc_alloc_fail_at(0);
    assert_true(rc == 0 || rc == USC_ERR_NOMEM);
  }
  assert_int_equal(usc_grpc_gunzip(z, zlen, 1 << 20, &buf, &cap, &out_len), 0);
  assert_int_equal(out_len, sizeof(text));
  free(z);
  usc_free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_names),
      cmocka_unit_test(test_encoding_listed),
      cmocka_unit_test(test_gzip_round_trips),
      cmocka_unit_test(test_gzip_too_small_cap),
      cmocka_unit_test(test_gunzip_bomb),
      cmocka_unit_test(test_gunzip_corrupt),
      cmocka_unit_test(test_gunzip_nomem),
      cmocka_unit_test(test_status_name_out_of_range),
      cmocka_unit_test(test_status_text),
      cmocka_unit_test(test_frame_header),
      cmocka_unit_test(test_deframe_all_at_once),
      cmocka_unit_test(test_deframe_byte_by_byte),
      cmocka_unit_test(test_deframe_random_splits),
      cmocka_unit_test(test_deframe_empty_feed),
      cmocka_unit_test(test_deframe_zero_length),
      cmocka_unit_test(test_deframe_partial),
      cmocka_unit_test(test_deframe_too_large),
      cmocka_unit_test(test_deframe_too_large_on_header),
      cmocka_unit_test(test_deframe_too_large_null_declared),
      cmocka_unit_test(test_deframe_exactly_max_len),
      cmocka_unit_test(test_deframe_bad_flags),
      cmocka_unit_test(test_deframe_buffer_reuse),
      cmocka_unit_test(test_deframe_nomem),
      cmocka_unit_test(test_deframe_nomem_on_growth),
      cmocka_unit_test(test_deframe_grows_with_data),
      cmocka_unit_test(test_deframe_callback_stops),
      cmocka_unit_test(test_deframer_free_zeroed),
      cmocka_unit_test(test_timeout_units),
      cmocka_unit_test(test_timeout_saturates),
      cmocka_unit_test(test_timeout_invalid),
      cmocka_unit_test(test_timeout_uses_len),
      cmocka_unit_test(test_percent_encode),
      cmocka_unit_test(test_percent_encode_nul),
      cmocka_unit_test(test_percent_encode_truncates_between_units),
      cmocka_unit_test(test_percent_decode),
      cmocka_unit_test(test_percent_decode_truncates),
      cmocka_unit_test(test_percent_round_trip_all_bytes),
      cmocka_unit_test(test_base64_vectors),
      cmocka_unit_test(test_base64_alphabet_ends),
      cmocka_unit_test(test_base64_cap),
      cmocka_unit_test(test_status_details_full),
      cmocka_unit_test(test_status_details_exact_bytes),
      cmocka_unit_test(test_status_details_no_reason),
      cmocka_unit_test(test_status_details_proto3_defaults),
      cmocka_unit_test(test_status_details_long_message),
      cmocka_unit_test(test_status_details_negative_code),
      cmocka_unit_test(test_status_details_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
