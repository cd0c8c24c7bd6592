#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
