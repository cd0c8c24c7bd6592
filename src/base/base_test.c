#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "src/base/base.h"

static void test_strerror_known(void **state) {
  (void)state;
  assert_string_equal(usc_strerror(USC_OK), "success");
  assert_string_equal(usc_strerror(USC_ERR_NOMEM), "out of memory");
  assert_string_equal(usc_strerror(USC_ERR_INVALID), "invalid input");
  assert_string_equal(usc_strerror(USC_ERR_TOO_LARGE), "input too large");
  assert_string_equal(usc_strerror(USC_ERR_NOT_FOUND), "not found");
  assert_string_equal(usc_strerror(USC_ERR_FULL), "container full");
  assert_string_equal(usc_strerror(USC_ERR_IO), "I/O error");
  assert_string_equal(usc_strerror(USC_ERR_STATE),
                      "not allowed in the current state");
}

static void test_strerror_distinct(void **state) {
  (void)state;
  for (int a = USC_ERR_STATE; a <= USC_OK; a++)
    for (int b = a + 1; b <= USC_OK; b++)
      assert_string_not_equal(usc_strerror(a), usc_strerror(b));
}

static void test_strerror_unknown(void **state) {
  (void)state;
  assert_string_equal(usc_strerror(1), "unknown error");
  assert_string_equal(usc_strerror(-8), "unknown error");
  assert_string_equal(usc_strerror(INT32_MIN), "unknown error");
}

static void test_strdup_copies(void **state) {
  (void)state;
  const char src[] = "hello";
  char *copy = usc_strdup(src);
  assert_non_null(copy);
  assert_ptr_not_equal(copy, src);
  assert_string_equal(copy, "hello");
  usc_free(copy);

  copy = usc_strdup("");
  assert_non_null(copy);
  assert_string_equal(copy, "");
  usc_free(copy);
}

static void test_strndup_prefix(void **state) {
  (void)state;
  char *copy = usc_strndup("hello world", 5);
  assert_non_null(copy);
  assert_string_equal(copy, "hello");
  usc_free(copy);

  /* The source need not be NUL-terminated within n bytes. */
  const char raw[3] = {'a', 'b', 'c'};
  copy = usc_strndup(raw, sizeof(raw));
  assert_string_equal(copy, "abc");
  usc_free(copy);
}

static void test_free_null(void **state) {
  (void)state;
  usc_free(NULL);
}

static void test_calloc_zeroes(void **state) {
  (void)state;
  unsigned char *p = usc_calloc(16, 4);
  assert_non_null(p);
  for (size_t i = 0; i < 64; i++)
    assert_int_equal(p[i], 0);
  usc_free(p);
}

static void test_alloc_fail_first(void **state) {
  (void)state;
  usc_alloc_fail_at(1);
  assert_null(usc_malloc(8));
  void *p = usc_malloc(8);
  assert_non_null(p);
  usc_free(p);
  usc_alloc_fail_at(0);
}

static void test_alloc_fail_nth_only(void **state) {
  (void)state;
  usc_alloc_fail_at(3);
  void *a = usc_malloc(1);
  void *b = usc_calloc(1, 1);
  void *c = usc_malloc(1);
  void *d = usc_malloc(1);
  assert_non_null(a);
  assert_non_null(b);
  assert_null(c);
  assert_non_null(d);
  usc_free(a);
  usc_free(b);
  usc_free(d);
  usc_alloc_fail_at(0);
}

static void test_alloc_fail_counts(void **state) {
  (void)state;
  usc_alloc_fail_at(0);
  void *a = usc_malloc(1);
  void *b = usc_calloc(2, 2);
  void *c = usc_realloc(NULL, 3);
  char *d = usc_strdup("x");
  char *e = usc_strndup("xy", 1);
  assert_int_equal(usc_alloc_fail_at(0), 5);
  assert_int_equal(usc_alloc_fail_at(0), 0);
  usc_free(a);
  usc_free(b);
  usc_free(c);
  usc_free(d);
  usc_free(e);
}

static void test_alloc_fail_disabled(void **state) {
  (void)state;
  usc_alloc_fail_at(0);
  for (int i = 0; i < 10; i++) {
    void *p = usc_malloc(1);
    assert_non_null(p);
    usc_free(p);
  }
}

static void test_alloc_fail_each_kind(void **state) {
  (void)state;
  usc_alloc_fail_at(1);
  assert_null(usc_calloc(1, 1));
  usc_alloc_fail_at(1);
  assert_null(usc_strdup("abc"));
  usc_alloc_fail_at(1);
  assert_null(usc_strndup("abc", 2));
  usc_alloc_fail_at(0);
}

static void test_realloc_failure_keeps_block(void **state) {
  (void)state;
  char *p = usc_strdup("keep");
  assert_non_null(p);
  usc_alloc_fail_at(1);
  assert_null(usc_realloc(p, 1 << 20));
  usc_alloc_fail_at(0);
  assert_string_equal(p, "keep");
  usc_free(p);
}

static void test_grow_doubles(void **state) {
  (void)state;
  size_t cap = 0;
  char *p = usc_grow(NULL, &cap, 1, 64);
  assert_non_null(p);
  assert_int_equal(cap, 64);
  memcpy(p, "kept", 5);
  p = usc_grow(p, &cap, 65, 64);
  assert_int_equal(cap, 128);
  p = usc_grow(p, &cap, 1000, 64);
  assert_int_equal(cap, 1024);
  assert_string_equal(p, "kept");
  /* From scratch, far past `first`. */
  size_t cap2 = 0;
  char *q = usc_grow(NULL, &cap2, 1025, 16);
  assert_int_equal(cap2, 2048);
  usc_free(q);
  usc_free(p);
}

static void test_grow_failure_keeps_block(void **state) {
  (void)state;
  size_t cap = 0;
  char *p = usc_grow(NULL, &cap, 4, 8);
  assert_non_null(p);
  memcpy(p, "keep", 5);
  usc_alloc_fail_at(1);
  assert_null(usc_grow(p, &cap, 100, 8));
  usc_alloc_fail_at(0);
  assert_int_equal(cap, 8);
  assert_string_equal(p, "keep");
  /* Sizes that doubling cannot reach are refused, not looped on. */
  assert_null(usc_grow(p, &cap, SIZE_MAX / 2 + 1, 8));
  assert_null(usc_grow(p, &cap, SIZE_MAX, 8));
  size_t zero = 0;
  assert_null(usc_grow(NULL, &zero, 1, 0));
  assert_int_equal(cap, 8);
  usc_free(p);
}

/* ---- heap ---- */

typedef struct {
  usc_heap_node_t node;
  int id;
} item_t;

static item_t *item_of(usc_heap_node_t *node) {
  return node != NULL ? USC_CONTAINER_OF(node, item_t, node) : NULL;
}

static uint64_t next_rand(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* Every parent orders before its children, and every slot is right. */
static void check_heap(const usc_heap_t *h) {
  for (size_t i = 0; i < h->len; i++) {
    assert_int_equal(h->nodes[i]->slot, i + 1);
    if (i == 0)
      continue;
    const usc_heap_node_t *p = h->nodes[(i - 1) / 2], *c = h->nodes[i];
    assert_true(p->key < c->key || (p->key == c->key && p->tie <= c->tie));
  }
}

/* The least item of the model: in the heap, smallest (key, tie). */
static item_t *model_min(item_t *items, const bool *in, size_t n) {
  item_t *best = NULL;
  for (size_t i = 0; i < n; i++)
    if (in[i] && (best == NULL || items[i].node.key < best->node.key ||
                  (items[i].node.key == best->node.key &&
                   items[i].node.tie < best->node.tie)))
      best = &items[i];
  return best;
}

static void test_heap_random_against_model(void **state) {
  (void)state;
  enum { N = 300, OPS = 60000 };
  static item_t items[N];
  static bool in[N];
  size_t len = 0;
  uint64_t rng = 0x9e3779b97f4a7c15u;
  usc_heap_t h;
  usc_heap_init(&h);
  memset(items, 0, sizeof items);
  memset(in, 0, sizeof in);
  for (int i = 0; i < N; i++) {
    items[i].id = i;
    items[i].node.tie = (uint64_t)(N - i); /* distinct: a total order */
  }
  for (int op = 0; op < OPS; op++) {
    size_t i = (size_t)(next_rand(&rng) % N);
    /* Few distinct keys, negative ones too, so ties are common. */
    int64_t key = (int64_t)(next_rand(&rng) % 41) - 20;
    switch (next_rand(&rng) % 6) {
    case 0:
    case 1:
      if (in[i])
        break;
      items[i].node.key = key;
      assert_int_equal(usc_heap_push(&h, &items[i].node), 0);
      in[i] = true;
      len++;
      break;
    case 2:
      usc_heap_remove(&h, &items[i].node); /* a no-op when not in */
      len -= in[i];
      in[i] = false;
      break;
    case 3:
      if (in[i])
        usc_heap_update(&h, &items[i].node, key);
      break;
    case 4: {
      item_t *want = model_min(items, in, N);
      item_t *got = item_of(usc_heap_pop(&h));
      assert_ptr_equal(got, want);
      if (got != NULL) {
        in[got->id] = false;
        len--;
      }
      break;
    }
    default:
      assert_ptr_equal(item_of(usc_heap_peek(&h)), model_min(items, in, N));
    }
    assert_int_equal(usc_heap_len(&h), len);
    for (size_t j = 0; j < 3; j++) {
      size_t k = (size_t)(next_rand(&rng) % N);
      assert_int_equal(usc_heap_node_in_heap(&items[k].node), in[k]);
    }
    if (op % 97 == 0)
      check_heap(&h);
  }
  /* Draining gives every item left, in order. */
  int64_t last_key = INT64_MIN;
  uint64_t last_tie = 0;
  for (item_t *it; (it = item_of(usc_heap_pop(&h))) != NULL; len--) {
    assert_true(in[it->id]);
    assert_true(it->node.key > last_key ||
                (it->node.key == last_key && it->node.tie > last_tie));
    last_key = it->node.key;
    last_tie = it->node.tie;
    assert_false(usc_heap_node_in_heap(&it->node));
  }
  assert_int_equal(len, 0);
  assert_null(usc_heap_peek(&h));
  usc_heap_free(&h);
  assert_int_equal(usc_heap_len(&h), 0);
}

static void test_heap_zeroed_and_ties(void **state) {
  (void)state;
  usc_heap_t h = {0}; /* as good as usc_heap_init */
  item_t a = {.node = {.key = 5, .tie = 2}, .id = 0};
  item_t b = {.node = {.key = 5, .tie = 1}, .id = 1};
  item_t c = {.node = {.key = INT64_MAX}, .id = 2};
  item_t d = {.node = {.key = INT64_MIN}, .id = 3};
  assert_null(usc_heap_pop(&h));
  assert_false(usc_heap_node_in_heap(&a.node));
  assert_int_equal(usc_heap_push(&h, &a.node), 0);
  assert_int_equal(usc_heap_push(&h, &b.node), 0);
  assert_int_equal(usc_heap_push(&h, &c.node), 0);
  assert_int_equal(usc_heap_push(&h, &d.node), 0);
  assert_true(usc_heap_node_in_heap(&a.node));
  assert_ptr_equal(item_of(usc_heap_pop(&h)), &d);
  assert_ptr_equal(item_of(usc_heap_pop(&h)), &b); /* the smaller tie */
  /* Re-keying moves a node both ways. */
  usc_heap_update(&h, &c.node, 0);
  assert_ptr_equal(item_of(usc_heap_peek(&h)), &c);
  usc_heap_update(&h, &c.node, 6);
  assert_ptr_equal(item_of(usc_heap_peek(&h)), &a);
  usc_heap_remove(&h, &a.node);
  usc_heap_remove(&h, &a.node);
  assert_false(usc_heap_node_in_heap(&a.node));
  assert_int_equal(usc_heap_len(&h), 1);
  assert_ptr_equal(item_of(usc_heap_pop(&h)), &c);
  assert_int_equal(usc_heap_len(&h), 0);
  usc_heap_free(&h);
  usc_heap_free(&h); /* twice is fine */
}

static void test_heap_alloc_failure(void **state) {
  (void)state;
  enum { N = 100 };
  static item_t items[N];
  usc_heap_t h;
  usc_heap_init(&h);
  memset(items, 0, sizeof items);
  for (int i = 0; i < N; i++) {
    items[i].id = i;
    items[i].node.key = (i * 37) % N;
    items[i].node.tie = (uint64_t)i;
    /* Fail the allocation a push makes, if it makes one. */
    usc_alloc_fail_at(1);
    int rc = usc_heap_push(&h, &items[i].node);
    size_t made = usc_alloc_fail_at(0);
    if (rc != 0) {
      assert_int_equal(rc, USC_ERR_NOMEM);
      assert_int_equal(made, 1);
      assert_false(usc_heap_node_in_heap(&items[i].node));
      assert_int_equal(usc_heap_len(&h), (size_t)i);
      check_heap(&h);
      assert_int_equal(usc_heap_push(&h, &items[i].node), 0);
    } else {
      assert_int_equal(made, 0);
    }
    check_heap(&h);
  }
  /* A failed reserve changes nothing; a good one makes pushes safe. */
  usc_alloc_fail_at(1);
  assert_int_equal(usc_heap_reserve(&h, 10 * N), USC_ERR_NOMEM);
  usc_alloc_fail_at(0);
  assert_int_equal(usc_heap_len(&h), N);
  check_heap(&h);
  assert_int_equal(usc_heap_reserve(&h, N + 50), 0);
  assert_int_equal(usc_heap_reserve(&h, 3), 0);
  static item_t more[50];
  memset(more, 0, sizeof more);
  usc_alloc_fail_at(1);
  for (int i = 0; i < 50; i++) {
    more[i].node.key = -i - 1;
    assert_int_equal(usc_heap_push(&h, &more[i].node), 0);
  }
  assert_int_equal(usc_alloc_fail_at(0), 0);
  /* A heap far too big to allocate. */
  usc_heap_t big = {0};
  assert_int_equal(usc_heap_reserve(&big, SIZE_MAX / 2), USC_ERR_NOMEM);
  assert_int_equal(usc_heap_len(&big), 0);
  for (int i = 0; i < 50; i++)
    assert_ptr_equal(usc_heap_pop(&h), &more[49 - i].node);
  for (int i = 0; i < N; i++)
    assert_int_equal(usc_heap_pop(&h)->key, i);
  usc_heap_free(&h);
}

/* ---- RFC 3339 ---- */

#define SEC INT64_C(1000000000)
#define T2026 (INT64_C(1795938600) * SEC) /* 2026-11-29T07:50:00Z */

static int parse(const char *text, int64_t *ns) {
  return usc_time_parse_rfc3339(text, strlen(text), ns);
}

static void test_time_parse_valid(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t ns;
  } cases[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2026-11-29T07:50:00Z", T2026},
      {"2026-11-29t07:50:00z", T2026},
      {"2026-11-29T09:50:00+02:00", T2026},
      {"2026-11-29T06:20:00-01:30", T2026},
      {"2026-11-29T07:50:00-00:00", T2026},
      {"2026-11-29T07:50:00+00:00", T2026},
      {"2026-11-30T07:49:00+23:59", T2026},
      {"2026-11-28T07:51:00-23:59", T2026},
      {"2026-11-29T07:50:00.5Z", T2026 + SEC / 2},
      {"2026-11-29T07:50:00.123456789Z", T2026 + 123456789},
      {"2026-11-29T07:50:00.1234567891999Z", T2026 + 123456789},
      {"2026-11-29T07:50:00.000000001Z", T2026 + 1},
      {"2026-11-29T07:50:00.000000000Z", T2026},
      {"2026-11-29T07:50:00.0000000009Z", T2026},
      {"2016-12-31T23:59:60Z", INT64_C(1483228800) * SEC},
      {"2017-01-01T00:00:00Z", INT64_C(1483228800) * SEC},
      {"2024-02-29T12:00:00Z", INT64_C(1709208000) * SEC},
      {"2000-02-29T00:00:00Z", INT64_C(951782400) * SEC},
      {"1900-03-01T00:00:00Z", INT64_C(-2203891200) * SEC},
      {"1969-12-31T23:59:59.5Z", -SEC / 2},
      {"1969-12-31T23:59:59.999999999Z", -1},
      {"1677-09-21T00:12:43.145224192Z", INT64_MIN},
      {"2262-04-11T23:47:16.854775807Z", INT64_MAX},
      {"2262-04-12T00:47:16.854775807+01:00", INT64_MAX},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    int64_t ns = 42;
    print_message("%s\n", cases[i].text);
    assert_int_equal(parse(cases[i].text, &ns), 0);
    assert_int_equal(ns, cases[i].ns);
  }
  /* Only `len` bytes are read. */
  int64_t ns = 0;
  const char *longer = "2026-11-29T07:50:00Zjunk";
  assert_int_equal(usc_time_parse_rfc3339(longer, 20, &ns), 0);
  assert_int_equal(ns, T2026);
  const char raw[20] = "2026-11-29T07:50:00Z"; /* no NUL */
  assert_int_equal(usc_time_parse_rfc3339(raw, sizeof raw, &ns), 0);
  assert_int_equal(ns, T2026);
}

static void test_time_parse_out_of_range(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t ns;
  } cases[] = {
      {"1677-09-21T00:12:43.145224191Z", INT64_MIN},
      {"1677-09-21T00:12:42Z", INT64_MIN},
      {"0000-01-01T00:00:00Z", INT64_MIN},
      {"1000-06-15T00:00:00+05:00", INT64_MIN},
      {"2262-04-11T23:47:16.854775808Z", INT64_MAX},
      {"2262-04-11T23:47:16.854775807-00:01", INT64_MAX},
      {"2262-04-11T23:47:17Z", INT64_MAX},
      {"9999-12-31T23:59:60Z", INT64_MAX},
      {"9999-12-31T23:59:59.999999999-23:59", INT64_MAX},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    int64_t ns = 42;
    print_message("%s\n", cases[i].text);
    assert_int_equal(parse(cases[i].text, &ns), USC_ERR_TOO_LARGE);
    assert_int_equal(ns, cases[i].ns);
  }
}

static void test_time_parse_invalid(void **state) {
  (void)state;
  static const char *const cases[] = {
      "",
      "2026-11-29",
      "2026-11-29T07:50Z",
      "2026-11-29 07:50:00Z",
      "2026-11-29_07:50:00Z",
      "2026-11-29T07:50:00",
      "2026-11-29T07:50:00+0200",
      "2026-11-29T07:50:00+02",
      "2026-11-29T07:50:00+2:00",
      "2026-11-29T07:50:00.Z",
      "2026-11-29T07:50:00,5Z",
      "2026-11-29T07:50:00.5",
      "2026-13-01T00:00:00Z",
      "2026-00-01T00:00:00Z",
      "2026-11-00T00:00:00Z",
      "2026-11-31T00:00:00Z",
      "2023-02-29T00:00:00Z",
      "1900-02-29T00:00:00Z",
      "2026-11-29T24:00:00Z",
      "2026-11-29T07:60:00Z",
      "2026-11-29T07:50:61Z",
      "2026-11-29T07:50:00+24:00",
      "2026-11-29T07:50:00+02:60",
      "2026-11-29T07:50:00Z ",
      " 2026-11-29T07:50:00Z",
      "2026-11-29T07:50:00ZZ",
      "2026-11-29T07:50:00UTC",
      "+2026-11-29T07:50:00Z",
      "20261-11-29T07:50:00Z",
      "2026-1-29T07:50:00Z",
      "2O26-11-29T07:50:00Z",
      "2026-11-29T07:5O:00Z",
      "2026/11/29T07:50:00Z",
      "2026-11-29T07-50-00Z",
      "-026-11-29T07:50:00Z",
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    int64_t ns = 42;
    print_message("'%s'\n", cases[i]);
    assert_int_equal(parse(cases[i], &ns), USC_ERR_INVALID);
    assert_int_equal(ns, 42);
  }
  /* A NUL inside the text, and a text cut short. */
  int64_t ns = 42;
  assert_int_equal(usc_time_parse_rfc3339("2026-11-29T07:50:00\0Z", 21, &ns),
                   USC_ERR_INVALID);
  assert_int_equal(usc_time_parse_rfc3339("2026-11-29T07:50:00Z", 19, &ns),
                   USC_ERR_INVALID);
  assert_int_equal(usc_time_parse_rfc3339("2026-11-29T07:50:00.5Z", 21, &ns),
                   USC_ERR_INVALID);
  assert_int_equal(usc_time_parse_rfc3339("2026-11-29T07:50:00+01:00", 24, &ns),
                   USC_ERR_INVALID);
  assert_int_equal(ns, 42);
}

static void test_time_format(void **state) {
  (void)state;
  static const struct {
    int64_t ns;
    const char *text;
  } cases[] = {
      {0, "1970-01-01T00:00:00Z"},
      {T2026, "2026-11-29T07:50:00Z"},
      {T2026 + 123456789, "2026-11-29T07:50:00.123456789Z"},
      {T2026 + 120000000, "2026-11-29T07:50:00.120Z"},
      {T2026 + 1000, "2026-11-29T07:50:00.000001Z"},
      {T2026 + 100, "2026-11-29T07:50:00.000000100Z"},
      {T2026 + 1, "2026-11-29T07:50:00.000000001Z"},
      {T2026 + 999999000, "2026-11-29T07:50:00.999999Z"},
      {INT64_C(1709208000) * SEC, "2024-02-29T12:00:00Z"},
      {INT64_C(951868799) * SEC, "2000-02-29T23:59:59Z"},
      {INT64_C(-2203891200) * SEC, "1900-03-01T00:00:00Z"},
      {-1, "1969-12-31T23:59:59.999999999Z"},
      {-SEC / 2, "1969-12-31T23:59:59.500Z"},
      {-SEC, "1969-12-31T23:59:59Z"},
      {INT64_MIN, "1677-09-21T00:12:43.145224192Z"},
      {INT64_MAX, "2262-04-11T23:47:16.854775807Z"},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    char out[USC_TIME_RFC3339_SIZE];
    size_t n = usc_time_format_rfc3339(cases[i].ns, out, sizeof out);
    assert_string_equal(out, cases[i].text);
    assert_int_equal(n, strlen(cases[i].text));
  }
  assert_int_equal(strlen("1677-09-21T00:12:43.145224192Z") + 1,
                   USC_TIME_RFC3339_SIZE);
  /* Too small a buffer: nothing written. */
  char small[21];
  memset(small, 'x', sizeof small);
  assert_int_equal(usc_time_format_rfc3339(T2026, small, 20), 0);
  assert_int_equal(small[0], 'x');
  assert_int_equal(usc_time_format_rfc3339(T2026, small, 0), 0);
  assert_int_equal(usc_time_format_rfc3339(T2026, small, 21), 20);
  assert_string_equal(small, "2026-11-29T07:50:00Z");
}

static void test_time_round_trip(void **state) {
  (void)state;
  uint64_t rng = 12345;
  for (int i = 0; i < 200000; i++) {
    uint64_t r = next_rand(&rng);
    int64_t ns;
    switch (i % 4) {
    case 0:
      ns = (int64_t)r; /* anywhere */
      break;
    case 1:
      ns = (int64_t)(r % (UINT64_C(200) * 365 * 86400)) * SEC; /* whole */
      break;
    case 2:
      ns = (int64_t)(r % 4000000) * 1000000 - INT64_C(2000000000000);
      break;
    default:
      ns = i % 8 < 4 ? INT64_MIN + (int64_t)(r % 100000)
                     : INT64_MAX - (int64_t)(r % 100000);
    }
    char out[USC_TIME_RFC3339_SIZE];
    size_t n = usc_time_format_rfc3339(ns, out, sizeof out);
    assert_true(n >= 20 && n < sizeof out);
    int64_t back = 0;
    assert_int_equal(usc_time_parse_rfc3339(out, n, &back), 0);
    assert_int_equal(back, ns);
  }
}

/* ---- lenient RFC 3339, seconds and nanoseconds ---- */

#define S2026 INT64_C(1795938600) /* 2026-11-29T07:50:00Z */

static int lenient(const char *text, int64_t *sec, int32_t *nanos) {
  return usc_time_parse_lenient(text, strlen(text), sec, nanos);
}

static void test_time_lenient_valid(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t sec;
    int32_t nanos;
  } cases[] = {
      /* Everything the strict parser takes. */
      {"2026-11-29T07:50:00Z", S2026, 0},
      {"2026-11-29t07:50:00z", S2026, 0},
      {"2026-11-29T09:50:00+02:00", S2026, 0},
      {"2026-11-29T06:20:00-01:30", S2026, 0},
      {"2026-11-29T07:50:00.1234567891999Z", S2026, 123456789},
      {"2016-12-31T23:59:60Z", INT64_C(1483228800), 0},
      /* What it does not. */
      {"2026-11-29 07:50:00Z", S2026, 0},
      {"2026-11-29T09:50:00+0200", S2026, 0},
      {"2026-11-29T06:20:00-0130", S2026, 0},
      {"2026-11-29T07:50:00", S2026, 0},
      {"2026-11-29 07:50:00.5", S2026, 500000000},
      /* Beyond int64_t nanoseconds, within protobuf's Timestamp. */
      {"0001-01-01T00:00:00Z", USC_TIME_MIN_SEC, 0},
      {"0001-01-01T00:00:00-00:01", USC_TIME_MIN_SEC + 60, 0},
      {"9999-12-31T23:59:59.999999999Z", USC_TIME_MAX_SEC, 999999999},
      {"9999-12-31T23:59:60+00:01", USC_TIME_MAX_SEC - 59, 0},
      {"1969-12-31T23:59:59.5Z", -1, 500000000},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    int64_t sec = 42;
    int32_t nanos = 42;
    print_message("%s\n", cases[i].text);
    assert_int_equal(lenient(cases[i].text, &sec, &nanos), 0);
    assert_int_equal(sec, cases[i].sec);
    assert_int_equal(nanos, cases[i].nanos);
  }
}

static void test_time_lenient_refused(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int rc;
  } cases[] = {
      {"0000-01-01T00:00:00Z", USC_ERR_TOO_LARGE},
      {"0000-12-31T23:30:00-01:00", USC_ERR_TOO_LARGE},
      {"0001-01-01T00:00:00+00:01", USC_ERR_TOO_LARGE},
      {"9999-12-31T23:59:60Z", USC_ERR_TOO_LARGE},
      {"9999-12-31T23:59:59-00:01", USC_ERR_TOO_LARGE},
      {"10000-01-01T00:00:00Z", USC_ERR_INVALID},
      {"2026-11-29T07:50:00+02", USC_ERR_INVALID},
      {"2026-11-29T07:50:00+2:00", USC_ERR_INVALID},
      {"2026-11-29T07:50:00+020", USC_ERR_INVALID},
      {"2026-11-29T07:50:00+24:00", USC_ERR_INVALID},
      {"2026-11-29T07:50:00.Z", USC_ERR_INVALID},
      {"2026-11-29T07:50:00Zjunk", USC_ERR_INVALID},
      {"2026-11-29T07:50:00 ", USC_ERR_INVALID},
      {"2026-11-29  07:50:00Z", USC_ERR_INVALID},
      {"2026-11-29_07:50:00Z", USC_ERR_INVALID},
      {"2026-02-30T07:50:00Z", USC_ERR_INVALID},
      {"", USC_ERR_INVALID},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    int64_t sec = 42;
    int32_t nanos = 42;
    print_message("'%s'\n", cases[i].text);
    assert_int_equal(lenient(cases[i].text, &sec, &nanos), cases[i].rc);
    assert_int_equal(sec, 42);
    assert_int_equal(nanos, 42);
  }
  /* A NUL is no separator and no zone. */
  int64_t sec = 42;
  int32_t nanos = 42;
  assert_int_equal(usc_time_parse_lenient("2026-11-29\0"
                                          "07:50:00",
                                          19, &sec, &nanos),
                   USC_ERR_INVALID);
  assert_int_equal(
      usc_time_parse_lenient("2026-11-29T07:50:00\0", 20, &sec, &nanos),
      USC_ERR_INVALID);
  assert_int_equal(sec, 42);
}

static void test_time_format_seconds(void **state) {
  (void)state;
  static const struct {
    int64_t sec;
    int32_t nanos;
    const char *text;
  } cases[] = {
      {S2026, 0, "2026-11-29T07:50:00Z"},
      {S2026, 120000000, "2026-11-29T07:50:00.120Z"},
      {S2026, 1000, "2026-11-29T07:50:00.000001Z"},
      {S2026, 1, "2026-11-29T07:50:00.000000001Z"},
      {-1, 500000000, "1969-12-31T23:59:59.500Z"},
      {USC_TIME_MIN_SEC, 0, "0001-01-01T00:00:00Z"},
      {USC_TIME_MAX_SEC, 999999999, "9999-12-31T23:59:59.999999999Z"},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    char out[USC_TIME_RFC3339_SIZE];
    size_t n =
        usc_time_format_seconds(cases[i].sec, cases[i].nanos, out, sizeof out);
    assert_string_equal(out, cases[i].text);
    assert_int_equal(n, strlen(cases[i].text));
  }
  char out[USC_TIME_RFC3339_SIZE] = "x";
  assert_int_equal(
      usc_time_format_seconds(USC_TIME_MIN_SEC - 1, 0, out, sizeof out), 0);
  assert_int_equal(
      usc_time_format_seconds(USC_TIME_MAX_SEC + 1, 0, out, sizeof out), 0);
  assert_int_equal(usc_time_format_seconds(0, -1, out, sizeof out), 0);
  assert_int_equal(usc_time_format_seconds(0, 1000000000, out, sizeof out), 0);
  assert_int_equal(usc_time_format_seconds(0, 0, out, 20), 0);
  assert_string_equal(out, "x");
}

static void test_time_lenient_round_trip(void **state) {
  (void)state;
  uint64_t rng = 54321;
  uint64_t span = (uint64_t)(USC_TIME_MAX_SEC - USC_TIME_MIN_SEC) + 1;
  for (int i = 0; i < 100000; i++) {
    int64_t sec = USC_TIME_MIN_SEC + (int64_t)(next_rand(&rng) % span);
    int32_t nanos = i % 2 ? (int32_t)(next_rand(&rng) % 1000000000) : 0;
    char out[USC_TIME_RFC3339_SIZE];
    size_t n = usc_time_format_seconds(sec, nanos, out, sizeof out);
    assert_true(n >= 20);
    int64_t back_sec = 0;
    int32_t back_nanos = -1;
    assert_int_equal(usc_time_parse_lenient(out, n, &back_sec, &back_nanos), 0);
    assert_int_equal(back_sec, sec);
    assert_int_equal(back_nanos, nanos);
  }
}

static void test_time_from_civil(void **state) {
  (void)state;
  int64_t sec = 42;
  assert_true(usc_time_from_civil(2026, 11, 29, 7, 50, 0, &sec));
  assert_int_equal(sec, S2026);
  assert_true(usc_time_from_civil(2016, 12, 31, 23, 59, 60, &sec));
  assert_int_equal(sec, INT64_C(1483228800));
  assert_true(usc_time_from_civil(1, 1, 1, 0, 0, 0, &sec));
  assert_int_equal(sec, USC_TIME_MIN_SEC);
  assert_true(usc_time_from_civil(0, 2, 29, 0, 0, 0, &sec)); /* leap */
  sec = 42;
  assert_false(usc_time_from_civil(-1, 1, 1, 0, 0, 0, &sec));
  assert_false(usc_time_from_civil(10000, 1, 1, 0, 0, 0, &sec));
  assert_false(usc_time_from_civil(2023, 2, 29, 0, 0, 0, &sec));
  assert_false(usc_time_from_civil(2026, 0, 1, 0, 0, 0, &sec));
  assert_false(usc_time_from_civil(2026, 13, 1, 0, 0, 0, &sec));
  assert_false(usc_time_from_civil(2026, 1, 0, 0, 0, 0, &sec));
  assert_false(usc_time_from_civil(2026, 1, 1, 24, 0, 0, &sec));
  assert_false(usc_time_from_civil(2026, 1, 1, -1, 0, 0, &sec));
  assert_false(usc_time_from_civil(2026, 1, 1, 0, 60, 0, &sec));
  assert_false(usc_time_from_civil(2026, 1, 1, 0, 0, 61, &sec));
  assert_int_equal(sec, 42);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror_known),
      cmocka_unit_test(test_strerror_distinct),
      cmocka_unit_test(test_strerror_unknown),
      cmocka_unit_test(test_strdup_copies),
      cmocka_unit_test(test_strndup_prefix),
      cmocka_unit_test(test_free_null),
      cmocka_unit_test(test_calloc_zeroes),
      cmocka_unit_test(test_alloc_fail_first),
      cmocka_unit_test(test_alloc_fail_nth_only),
      cmocka_unit_test(test_alloc_fail_counts),
      cmocka_unit_test(test_alloc_fail_disabled),
      cmocka_unit_test(test_alloc_fail_each_kind),
      cmocka_unit_test(test_realloc_failure_keeps_block),
      cmocka_unit_test(test_grow_doubles),
      cmocka_unit_test(test_grow_failure_keeps_block),
      cmocka_unit_test(test_heap_random_against_model),
      cmocka_unit_test(test_heap_zeroed_and_ties),
      cmocka_unit_test(test_heap_alloc_failure),
      cmocka_unit_test(test_time_parse_valid),
      cmocka_unit_test(test_time_parse_out_of_range),
      cmocka_unit_test(test_time_parse_invalid),
      cmocka_unit_test(test_time_format),
      cmocka_unit_test(test_time_round_trip),
      cmocka_unit_test(test_time_lenient_valid),
      cmocka_unit_test(test_time_lenient_refused),
      cmocka_unit_test(test_time_format_seconds),
      cmocka_unit_test(test_time_lenient_round_trip),
      cmocka_unit_test(test_time_from_civil),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
