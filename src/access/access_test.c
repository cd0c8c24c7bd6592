/* access: the tokens file's format, lookups of bearer tokens, and the
 * resolution of request addresses against grants. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/access/access.h"
#include "src/base/base.h"

#define TOKEN_A "tok-A-0123456789abcdef"
#define TOKEN_B "tok-B-0123456789abcdef"
#define TOKEN_C "tok-C-0123456789abcdef"

static usc_access_t *parse_ok(const char *text) {
  usc_access_t *t = NULL;
  char error[256];
  int rc = usc_access_parse(text, strlen(text), &t, error, sizeof(error));
  if (rc != 0)
    fail_msg("usc_access_parse: %s", error);
  return t;
}

/* The text must be refused with exactly `expected`. */
static void parse_fails(const char *text, const char *expected) {
  usc_access_t *t = (usc_access_t *)(uintptr_t)0x1;
  char error[256];
  int rc = usc_access_parse(text, strlen(text), &t, error, sizeof(error));
  assert_int_equal(rc, USC_ERR_INVALID);
  assert_ptr_equal(t, (usc_access_t *)(uintptr_t)0x1); /* untouched */
  assert_string_equal(error, expected);
  assert_null(strstr(error, "tok-"));
}

static const usc_access_grant_t *grant_of(const usc_access_t *t,
                                          const char *token) {
  char value[USC_ACCESS_TOKEN_MAX + 128];
  snprintf(value, sizeof(value), "Bearer %s", token);
  return usc_access_lookup(t, value);
}

static void test_parse_format(void **state) {
  (void)state;
  usc_access_t *t = parse_ok(
      "# tokens of the test\n"
      "\n"
      "   \t\n" TOKEN_A " alice 0003*210 # alice's desk\r\n"
      "\t" TOKEN_B "\tbob\t*\t\n"
      "  # indented comment\n" TOKEN_C "   alice   0003*211,211,0003*212");
  assert_int_equal(usc_access_count(t), 3);

  const usc_access_grant_t *a = grant_of(t, TOKEN_A);
  assert_non_null(a);
  assert_string_equal(a->user, "alice");
  assert_false(a->all_extensions);
  assert_int_equal(a->n_extensions, 1);
  assert_string_equal(a->extensions[0], "0003*210");

  const usc_access_grant_t *b = grant_of(t, TOKEN_B);
  assert_non_null(b);
  assert_string_equal(b->user, "bob");
  assert_true(b->all_extensions);
  assert_int_equal(b->n_extensions, 0);

  const usc_access_grant_t *c = grant_of(t, TOKEN_C);
  assert_non_null(c);
  assert_string_equal(c->user, "alice");
  assert_int_equal(c->n_extensions, 3);
  assert_string_equal(c->extensions[0], "0003*211");
  assert_string_equal(c->extensions[1], "211");
  assert_string_equal(c->extensions[2], "0003*212");
  usc_access_unref(t);
}

static void test_parse_empty(void **state) {
  (void)state;
  static const char *const texts[] = {"", "\n\n", "# nothing yet\n",
                                      "  \r\n#x\r\n"};
  for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
    parse_fails(texts[i], "holds no token: give at least one line TOKEN USER "
                          "EXTENSIONS");
}

static void test_parse_bad_lines(void **state) {
  (void)state;
  parse_fails("# one\n" TOKEN_A "\n",
              "line 2: expected TOKEN USER EXTENSIONS separated by spaces, "
              "found 1 field");
  parse_fails(TOKEN_A " alice\n",
              "line 1: expected TOKEN USER EXTENSIONS separated by spaces, "
              "found 2 fields");
  parse_fails(TOKEN_A " alice 210 extra\n",
              "line 1: expected TOKEN USER EXTENSIONS separated by spaces, "
              "found 4 fields");
  parse_fails(TOKEN_A " alice 210\ntok-short alice 210\n",
              "line 2: the token is shorter than 16 characters: a short "
              "token can be guessed");
  parse_fails("tok-\x01-0123456789abcdef alice 210\n",
              "line 1: the token holds characters a bearer token cannot have "
              "(control characters or non-ASCII bytes)");
  parse_fails("tok-\xc3\xa9-0123456789abcdef alice 210\n",
              "line 1: the token holds characters a bearer token cannot have "
              "(control characters or non-ASCII bytes)");
  parse_fails(TOKEN_A " al.ice 210\n",
              "line 1: user id 'al.ice' is invalid: use 1 to 64 letters and "
              "digits");
  parse_fails(TOKEN_A " @me 210\n", "line 1: user id '@me' is invalid: use 1 "
                                    "to 64 letters and digits");
  parse_fails(TOKEN_A
              " a12345678901234567890123456789012345678901234567890123456789"
              "01234 210\n",
              "line 1: user id 'a123456789012345678901234567890123456789' is "
              "invalid: use 1 to 64 letters and digits");
  parse_fails(TOKEN_A " alice @self\n",
              "line 1: extension '@self' is invalid: use '*' for all, or "
              "numbers of 1 to 32 digits and '*' separated by commas");
  parse_fails(TOKEN_A " alice 210,\n",
              "line 1: extension '' is invalid: use '*' for all, or numbers "
              "of 1 to 32 digits and '*' separated by commas");
  parse_fails(TOKEN_A " alice *,210\n",
              "line 1: extension '*' is invalid: use '*' for all, or numbers "
              "of 1 to 32 digits and '*' separated by commas");
  parse_fails(TOKEN_A " alice 210,211,210\n",
              "line 1: extension '210' is listed twice");
  parse_fails(TOKEN_A " alice 210#note\n",
              "line 1: extension '210#note' is invalid: use '*' for all, or "
              "numbers of 1 to 32 digits and '*' separated by commas");
  char nul[] = TOKEN_A " alice 210\n";
  usc_access_t *t = NULL;
  char error[128];
  assert_int_equal(usc_access_parse(nul, sizeof(nul), &t, error, sizeof(error)),
                   USC_ERR_INVALID);
  assert_string_equal(error, "holds a NUL byte");
  assert_null(t);
}

static void test_token_lengths(void **state) {
  (void)state;
  char text[USC_ACCESS_TOKEN_MAX + 64];
  memset(text, 'x', USC_ACCESS_TOKEN_MAX + 1);
  strcpy(text + USC_ACCESS_TOKEN_MAX + 1, " alice *");
  parse_fails(text, "line 1: the token is longer than 4096 characters");
  memmove(text + 1, text + 2, strlen(text + 2) + 1);
  usc_access_t *t = parse_ok(text);
  text[USC_ACCESS_TOKEN_MAX] = '\0';
  assert_non_null(grant_of(t, text));
  usc_access_unref(t);

  t = parse_ok("0123456789abcdef alice *");
  assert_non_null(grant_of(t, "0123456789abcdef"));
  usc_access_unref(t);
}

static void test_many_extensions(void **state) {
  (void)state;
  char text[8192];
  size_t n = (size_t)snprintf(text, sizeof(text), "%s alice ", TOKEN_A);
  for (int i = 0; i < USC_ACCESS_MAX_EXTENSIONS; i++)
    n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%d", i ? "," : "",
                          1000 + i);
  usc_access_t *t = parse_ok(text);
  assert_int_equal(grant_of(t, TOKEN_A)->n_extensions,
                   USC_ACCESS_MAX_EXTENSIONS);
  usc_access_unref(t);
  snprintf(text + n, sizeof(text) - n, ",9999");
  parse_fails(text, "line 1: more than 256 extensions");
}

static void test_duplicate_tokens(void **state) {
  (void)state;
  parse_fails(TOKEN_A " alice 210\n" TOKEN_B " bob *\n" TOKEN_A " bob *\n",
              "line 3: the same token as line 1");
  /* The first repetition in the file's order is named. */
  parse_fails(TOKEN_C " carol *\n" TOKEN_B " bob *\n" TOKEN_A " a 1\n" TOKEN_B
                      " bob 2\n" TOKEN_C " carol 3\n" TOKEN_A " a 4\n",
              "line 4: the same token as line 2");
  /* The same user with two tokens is fine. */
  usc_access_t *t = parse_ok(TOKEN_A " alice 210\n" TOKEN_B " alice 211\n");
  assert_int_equal(usc_access_count(t), 2);
  usc_access_unref(t);
}

static void test_lookup_forms(void **state) {
  (void)state;
  usc_access_t *t = parse_ok(TOKEN_A " alice *\n" TOKEN_B " bob *\n");
  static const char *const good[] = {
      "Bearer " TOKEN_A,
      "bearer " TOKEN_A,
      "BEARER\t" TOKEN_A,
      "Bearer    " TOKEN_A "  ",
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    const usc_access_grant_t *g = usc_access_lookup(t, good[i]);
    assert_non_null(g);
    assert_string_equal(g->user, "alice");
  }
  static const char *const bad[] = {
      "",
      "Bearer",
      "Bearer ",
      "Bearer" TOKEN_A,
      "Basic " TOKEN_A,
      TOKEN_A,
      "Bearer " TOKEN_A " x",
      "Bearer " TOKEN_A "x",
      "Bearer tok-A-0123456789abcde",
      "Bearer " TOKEN_C,
      "Bearer tok-a-0123456789abcdef",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_null(usc_access_lookup(t, bad[i]));
  assert_null(usc_access_lookup(t, NULL));
  assert_string_equal(usc_access_lookup(t, "Bearer " TOKEN_B)->user, "bob");
  usc_access_unref(t);
}

/* Every token of a larger table is found, whatever its digest's place. */
static void test_lookup_many(void **state) {
  (void)state;
  enum { N = 500 };
  char *text = malloc(N * 64);
  assert_non_null(text);
  size_t n = 0;
  for (int i = 0; i < N; i++)
    n += (size_t)sprintf(text + n, "token-%04d-abcdefghij user%d *\n", i, i);
  usc_access_t *t = parse_ok(text);
  free(text);
  assert_int_equal(usc_access_count(t), N);
  for (int i = 0; i < N; i++) {
    char value[64], user[16];
    snprintf(value, sizeof(value), "Bearer token-%04d-abcdefghij", i);
    snprintf(user, sizeof(user), "user%d", i);
    const usc_access_grant_t *g = usc_access_lookup(t, value);
    assert_non_null(g);
    assert_string_equal(g->user, user);
  }
  assert_null(usc_access_lookup(t, "Bearer token-0500-abcdefghij"));
  usc_access_unref(t);
}

static void test_references(void **state) {
  (void)state;
  usc_access_t *t = parse_ok(TOKEN_A " alice *\n");
  const usc_access_grant_t *g = grant_of(t, TOKEN_A);
  assert_ptr_equal(usc_access_ref(t), t);
  usc_access_unref(t);
  assert_string_equal(g->user, "alice"); /* one reference is left */
  usc_access_unref(t);
  usc_access_unref(NULL);
}

static void test_grant_equal(void **state) {
  (void)state;
  usc_access_t *t = parse_ok("tok-1-0123456789abcdef alice 210,211\n"
                             "tok-2-0123456789abcdef alice 210,211\n"
                             "tok-3-0123456789abcdef alice 211,210\n"
                             "tok-4-0123456789abcdef alice 210\n"
                             "tok-5-0123456789abcdef alice *\n"
                             "tok-6-0123456789abcdef bob 210,211\n"
                             "tok-7-0123456789abcdef bob *\n");
  const usc_access_grant_t *g[8];
  for (int i = 1; i <= 7; i++) {
    char token[48];
    snprintf(token, sizeof(token), "tok-%d-0123456789abcdef", i);
    g[i] = grant_of(t, token);
    assert_non_null(g[i]);
  }
  assert_true(usc_access_grant_equal(g[1], g[2]));
  assert_true(usc_access_grant_equal(g[1], g[1]));
  for (int i = 3; i <= 7; i++)
    assert_false(usc_access_grant_equal(g[1], g[i]));
  assert_false(usc_access_grant_equal(g[5], g[7]));
  usc_access_unref(t);
}

/* ---- resolving ---- */

typedef struct {
  const char *user_id;
  const char *extension;
  usc_access_wildcard_t wildcard;
  usc_access_verdict_t verdict;
  const char *user; /* when ALLOWED */
  const char *extension_out;
} resolve_case_t;

static void check_cases(const usc_access_grant_t *g, const resolve_case_t *c,
                        size_t n) {
  for (size_t i = 0; i < n; i++) {
    const char *user = "unset", *ext = "unset";
    usc_access_verdict_t v = usc_access_resolve(g, c[i].user_id, c[i].extension,
                                                c[i].wildcard, &user, &ext);
    if (v != c[i].verdict)
      fail_msg("case %zu (%s, %s): verdict %d, expected %d", i, c[i].user_id,
               c[i].extension, v, c[i].verdict);
    if (v == USC_ACCESS_ALLOWED) {
      assert_string_equal(user, c[i].user);
      assert_string_equal(ext, c[i].extension_out);
    } else {
      assert_string_equal(user, "unset");
      assert_string_equal(ext, "unset");
    }
  }
}

#define SELF USC_ACCESS_SELF
#define BLANK USC_ACCESS_SELF_OR_BLANK
#define NUMBER USC_ACCESS_NUMBER
#define OK USC_ACCESS_ALLOWED
#define HIDDEN USC_ACCESS_HIDDEN
#define AMBIGUOUS USC_ACCESS_AMBIGUOUS

static void test_resolve_users(void **state) {
  (void)state;
  usc_access_t *t = parse_ok(TOKEN_A " 12 *\n");
  const usc_access_grant_t *g = grant_of(t, TOKEN_A);
  static const resolve_case_t cases[] = {
      {"", "210", SELF, OK, "12", "210"},
      {NULL, "210", SELF, OK, "12", "210"},
      {"@me", "210", SELF, OK, "12", "210"},
      {"@viewer", "210", SELF, OK, "12", "210"},
      {"@owner", "210", SELF, OK, "12", "210"},
      {"12", "210", SELF, OK, "12", "210"},
      {"13", "210", SELF, HIDDEN, NULL, NULL},
      {"1", "210", NUMBER, HIDDEN, NULL, NULL},
      {"bob", "@self", BLANK, HIDDEN, NULL, NULL},
      /* Malformed: left for the request's validation (user_invalid). */
      {"@you", "210", SELF, OK, "@you", "210"},
      {"1/2", "210", SELF, OK, "1/2", "210"},
      {"@ME", "210", SELF, OK, "@ME", "210"},
      /* Every extension: left as it is. */
      {"@me", "@self", SELF, OK, "12", "@self"},
      {"@me", "", BLANK, OK, "12", ""},
      {"@me", "9*9", NUMBER, OK, "12", "9*9"},
      {"@me", "bad", SELF, OK, "12", "bad"},
  };
  check_cases(g, cases, sizeof(cases) / sizeof(cases[0]));
  usc_access_unref(t);
}

static void test_resolve_one_extension(void **state) {
  (void)state;
  usc_access_t *t = parse_ok(TOKEN_A " alice 0003*210\n");
  const usc_access_grant_t *g = grant_of(t, TOKEN_A);
  static const resolve_case_t cases[] = {
      {"@me", "0003*210", SELF, OK, "alice", "0003*210"},
      {"@me", "0003*210", NUMBER, OK, "alice", "0003*210"},
      {"@me", "@self", SELF, OK, "alice", "0003*210"},
      {"@me", "@self", BLANK, OK, "alice", "0003*210"},
      {"@me", "", BLANK, OK, "alice", "0003*210"},
      /* Where "" is no wildcard, validation refuses it. */
      {"@me", "", SELF, OK, "alice", ""},
      /* A create needs a number: "@self" stays for validation to refuse. */
      {"@me", "@self", NUMBER, OK, "alice", "@self"},
      {"@me", "0003*211", SELF, HIDDEN, NULL, NULL},
      {"@me", "210", SELF, HIDDEN, NULL, NULL},
      {"@me", "0003*211", NUMBER, HIDDEN, NULL, NULL},
      {"@me", "0003*211", BLANK, HIDDEN, NULL, NULL},
      {"@me", "abc", SELF, OK, "alice", "abc"},
      {"@me", "***", SELF, OK, "alice", "***"},
      {"bob", "0003*210", SELF, HIDDEN, NULL, NULL},
  };
  check_cases(g, cases, sizeof(cases) / sizeof(cases[0]));
  usc_access_unref(t);
}

static void test_resolve_several_extensions(void **state) {
  (void)state;
  usc_access_t *t = parse_ok(TOKEN_A " alice 0003*210,0003*211\n");
  const usc_access_grant_t *g = grant_of(t, TOKEN_A);
  static const resolve_case_t cases[] = {
      {"", "0003*210", SELF, OK, "alice", "0003*210"},
      {"", "0003*211", NUMBER, OK, "alice", "0003*211"},
      {"", "@self", SELF, AMBIGUOUS, NULL, NULL},
      {"", "@self", BLANK, AMBIGUOUS, NULL, NULL},
      {"", "", BLANK, AMBIGUOUS, NULL, NULL},
      {"", "", SELF, OK, "alice", ""},
      {"", "@self", NUMBER, OK, "alice", "@self"},
      {"", "0003*212", SELF, HIDDEN, NULL, NULL},
      /* Another user stays hidden even where the extension is unclear. */
      {"bob", "@self", SELF, HIDDEN, NULL, NULL},
  };
  check_cases(g, cases, sizeof(cases) / sizeof(cases[0]));
  usc_access_unref(t);
}

static void test_allocation_failures(void **state) {
  (void)state;
  static const char text[] = TOKEN_A " alice 210,211\n" TOKEN_B " bob *\n";
  for (size_t nth = 1;; nth++) {
    usc_access_t *t = NULL;
    char error[128];
    usc_alloc_fail_at(nth);
    int rc = usc_access_parse(text, strlen(text), &t, error, sizeof(error));
    size_t made = usc_alloc_fail_at(0);
    if (rc == 0) {
      assert_true(made < nth);
      assert_non_null(grant_of(t, TOKEN_B));
      usc_access_unref(t);
      break;
    }
    assert_int_equal(rc, USC_ERR_NOMEM);
    assert_string_equal(error, "out of memory");
    assert_null(t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_format),
      cmocka_unit_test(test_parse_empty),
      cmocka_unit_test(test_parse_bad_lines),
      cmocka_unit_test(test_token_lengths),
      cmocka_unit_test(test_many_extensions),
      cmocka_unit_test(test_duplicate_tokens),
      cmocka_unit_test(test_lookup_forms),
      cmocka_unit_test(test_lookup_many),
      cmocka_unit_test(test_references),
      cmocka_unit_test(test_grant_equal),
      cmocka_unit_test(test_resolve_users),
      cmocka_unit_test(test_resolve_one_extension),
      cmocka_unit_test(test_resolve_several_extensions),
      cmocka_unit_test(test_allocation_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
