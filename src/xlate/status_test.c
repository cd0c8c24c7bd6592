/* The status map (defaults, mapping text, precedence), UAPI error bodies,
 * Retry-After, and the facade's inverse map. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/testutil.h"

typedef struct {
  int http;
  const char *code;
  usc_grpc_status_t status;
} lookup_case_t;

static void check_lookups(const usc_xlate_status_map_t *map,
                          const lookup_case_t *cases, size_t n) {
  for (size_t i = 0; i < n; i++) {
    usc_grpc_status_t got =
        usc_xlate_status_lookup(map, cases[i].http, cases[i].code);
    if (got != cases[i].status)
      fail_msg("%d %s: %s, want %s", cases[i].http,
               cases[i].code ? cases[i].code : "(null)",
               usc_grpc_status_name(got),
               usc_grpc_status_name(cases[i].status));
  }
}

static void test_defaults(void **state) {
  (void)state;
  static const lookup_case_t cases[] = {
      {200, NULL, USC_GRPC_OK},
      {201, "", USC_GRPC_OK},
      {202, "x", USC_GRPC_OK},
      {204, NULL, USC_GRPC_OK},
      {299, NULL, USC_GRPC_OK},
      {400, "pc_phoncall_invalid", USC_GRPC_NOT_FOUND},
      {400, "PC_PHONCALL_INVALID", USC_GRPC_NOT_FOUND},
      {400, "pc_phonecall_invalid", USC_GRPC_NOT_FOUND},
      {400, "pc_phoncallview_invalid", USC_GRPC_NOT_FOUND},
      {400, "pc_phonecallview_invalid", USC_GRPC_NOT_FOUND},
      {400, "pc_phonecall_state_invalid", USC_GRPC_FAILED_PRECONDITION},
      {400, "user_invalid", USC_GRPC_INVALID_ARGUMENT},
      {400, "extension_invalid", USC_GRPC_INVALID_ARGUMENT},
      {400, "count_invalid", USC_GRPC_INVALID_ARGUMENT},
      {400, NULL, USC_GRPC_INVALID_ARGUMENT},
      {401, "access_denied", USC_GRPC_UNAUTHENTICATED},
      {403, NULL, USC_GRPC_PERMISSION_DENIED},
      {404, "pc_phoncall_invalid", USC_GRPC_NOT_FOUND},
      {404, NULL, USC_GRPC_NOT_FOUND},
      {408, NULL, USC_GRPC_DEADLINE_EXCEEDED},
      {409, NULL, USC_GRPC_ABORTED},
      {412, NULL, USC_GRPC_FAILED_PRECONDITION},
      {429, NULL, USC_GRPC_RESOURCE_EXHAUSTED},
      {500, "internal_server_error", USC_GRPC_INTERNAL},
      {501, "request_not_implemented", USC_GRPC_UNIMPLEMENTED},
      {502, NULL, USC_GRPC_UNAVAILABLE},
      {503, NULL, USC_GRPC_UNAVAILABLE},
      {504, NULL, USC_GRPC_UNAVAILABLE},
      {100, NULL, USC_GRPC_UNKNOWN},
      {301, NULL, USC_GRPC_UNKNOWN},
      {402, NULL, USC_GRPC_UNKNOWN},
      {418, NULL, USC_GRPC_UNKNOWN},
      {505, NULL, USC_GRPC_UNKNOWN},
      {0, NULL, USC_GRPC_UNKNOWN},
      {-1, NULL, USC_GRPC_UNKNOWN},
      {999, NULL, USC_GRPC_UNKNOWN},
  };
  check_lookups(NULL, cases, USC_ARRAY_LEN(cases));
}

static usc_xlate_status_map_t *parse_ok(const char *text) {
  usc_xlate_status_map_t *map = NULL;
  char error[200] = "";
  int rc = usc_xlate_status_map_parse(text, strlen(text), &map, error,
                                      sizeof(error));
  if (rc != 0)
    fail_msg("rc %d: %s", rc, error);
  return map;
}

static void test_map_file(void **state) {
  (void)state;
  usc_xlate_status_map_t *map =
      parse_ok("# Our upstream's habits.\n"
               "\n"
               "   \t\n"
               "503 UNKNOWN   # a comment after a rule\r\n"
               "\t400\tpc_phoncall_invalid\tinvalid_argument\n"
               "4xx pc_phoncall_invalid 3\n"
               "5XX UNAVAILABLE\n"
               "418 resource_exhausted\n"
               "400 INVALID_ARGUMENT");
  static const lookup_case_t cases[] = {
      {503, NULL, USC_GRPC_UNKNOWN},
      {400, "pc_phoncall_invalid", USC_GRPC_INVALID_ARGUMENT},
      {404, "pc_phoncall_invalid", USC_GRPC_INVALID_ARGUMENT},
      /* A default naming the code beats a rule that does not. */
      {400, "pc_phonecall_invalid", USC_GRPC_NOT_FOUND},
      {400, NULL, USC_GRPC_INVALID_ARGUMENT},
      /* An exact default beats a class. */
      {500, NULL, USC_GRPC_INTERNAL},
      {507, NULL, USC_GRPC_UNAVAILABLE},
      {418, "x", USC_GRPC_RESOURCE_EXHAUSTED},
      {401, NULL, USC_GRPC_UNAUTHENTICATED},
      {204, NULL, USC_GRPC_OK},
  };
  check_lookups(map, cases, USC_ARRAY_LEN(cases));
  usc_xlate_status_map_free(map);
}

static void test_map_empty(void **state) {
  (void)state;
  usc_xlate_status_map_t *map = parse_ok("");
  assert_int_equal(usc_xlate_status_lookup(map, 404, NULL), USC_GRPC_NOT_FOUND);
  usc_xlate_status_map_free(map);
  map = parse_ok("# nothing\n\n");
  usc_xlate_status_map_free(map);
  char error[8];
  assert_int_equal(usc_xlate_status_map_parse(NULL, 0, &map, error, 8), 0);
  usc_xlate_status_map_free(map);
  usc_xlate_status_map_free(NULL);
}

typedef struct {
  const char *text;
  const char *error;
} map_error_t;

static const map_error_t map_errors[] = {
    {"404", "line 1: expected \"<http-status> [<uapi-code>] <grpc-status>\""},
    {"# ok\n404 a b NOT_FOUND",
     "line 2: expected \"<http-status> [<uapi-code>] <grpc-status>\""},
    {"99 NOT_FOUND", "line 1: HTTP status \"99\" is not 300..599 or 3xx..5xx"},
    {"200 NOT_FOUND",
     "line 1: HTTP status \"200\" is not 300..599 or 3xx..5xx"},
    {"600 NOT_FOUND",
     "line 1: HTTP status \"600\" is not 300..599 or 3xx..5xx"},
    {"4x5 NOT_FOUND",
     "line 1: HTTP status \"4x5\" is not 300..599 or 3xx..5xx"},
    {"4xxx NOT_FOUND",
     "line 1: HTTP status \"4xxx\" is not 300..599 or 3xx..5xx"},
    {"\n\n404 pc/x NOT_FOUND",
     "line 3: UAPI code \"pc/x\" is not 1 to 63 of [A-Za-z0-9_.-]"},
    {"404 NOTFOUND", "line 1: unknown gRPC status \"NOTFOUND\" (use a name "
                     "such as NOT_FOUND, or 1..16; OK is not an error)"},
    {"404 OK", "line 1: unknown gRPC status \"OK\" (use a name such as "
               "NOT_FOUND, or 1..16; OK is not an error)"},
    {"404 0", "line 1: unknown gRPC status \"0\" (use a name such as "
              "NOT_FOUND, or 1..16; OK is not an error)"},
    {"404 17", "line 1: unknown gRPC status \"17\" (use a name such as "
               "NOT_FOUND, or 1..16; OK is not an error)"},
    {"404 +5", "line 1: unknown gRPC status \"+5\" (use a name such as "
               "NOT_FOUND, or 1..16; OK is not an error)"},
    {"404 NOT_FOUND\n# x\n404 INTERNAL", "line 3: the same rule as line 1"},
    {"400 a_b NOT_FOUND\n400 A_B INTERNAL", "line 2: the same rule as line 1"},
};

static void test_map_errors(void **state) {
  (void)state;
  for (size_t i = 0; i < USC_ARRAY_LEN(map_errors); i++) {
    usc_xlate_status_map_t *map = (void *)1;
    char error[200];
    const char *text = map_errors[i].text;
    assert_int_equal(usc_xlate_status_map_parse(text, strlen(text), &map, error,
                                                sizeof(error)),
                     USC_ERR_INVALID);
    assert_null(map);
    assert_string_equal(error, map_errors[i].error);
  }
  /* A small error buffer is cut, never overrun. */
  char small[8];
  usc_xlate_status_map_t *map;
  assert_int_equal(usc_xlate_status_map_parse("1", 1, &map, small, 8),
                   USC_ERR_INVALID);
  assert_string_equal(small, "line 1:");
}

static void test_map_limits(void **state) {
  (void)state;
  size_t cap = 1100 * 24;
  char *text = malloc(cap);
  size_t len = 0;
  for (int i = 0; i < 1025; i++)
    len += (size_t)snprintf(text + len, cap - len, "400 c%d NOT_FOUND\n", i);
  usc_xlate_status_map_t *map;
  char error[100];
  assert_int_equal(
      usc_xlate_status_map_parse(text, len, &map, error, sizeof(error)),
      USC_ERR_INVALID);
  assert_string_equal(error, "line 1025: more than 1024 rules");
  /* 1024 rules, and comments beyond, are fine. */
  len = 0;
  for (int i = 0; i < 1024; i++)
    len += (size_t)snprintf(text + len, cap - len, "400 c%d NOT_FOUND\n", i);
  len += (size_t)snprintf(text + len, cap - len, "# end\n\n");
  assert_int_equal(
      usc_xlate_status_map_parse(text, len, &map, error, sizeof(error)), 0);
  assert_int_equal(usc_xlate_status_lookup(map, 400, "c1023"),
                   USC_GRPC_NOT_FOUND);
  usc_xlate_status_map_free(map);
  free(text);
}

static int map_attempt(void *ctx) {
  usc_xlate_status_map_t *map;
  char error[64];
  int rc = usc_xlate_status_map_parse(ctx, strlen(ctx), &map, error, 64);
  usc_xlate_status_map_free(rc == 0 ? map : NULL);
  return rc;
}

static void no_reset(void *ctx) { (void)ctx; }

static void test_map_alloc_failure(void **state) {
  (void)state;
  size_t failures;
  assert_int_equal(
      t_exhaust(map_attempt, no_reset, "404 NOT_FOUND", 10, &failures), 0);
  assert_int_equal(failures, 1);
}

/* ---- error bodies ---- */

static void test_error_body(void **state) {
  (void)state;
  char code[USC_XLATE_CODE_MAX], message[USC_XLATE_MESSAGE_MAX];
  const char *body = "{\"error\":{\"code\":\"access_denied\",\"message\":"
                     "\"You are not authorized to use this request.\"}}";
  assert_int_equal(
      usc_xlate_error_body_parse(body, strlen(body), code, message), 0);
  assert_string_equal(code, "access_denied");
  assert_string_equal(message, "You are not authorized to use this request.");
  body = "{\"error\":{\"code\":400}}";
  assert_int_equal(
      usc_xlate_error_body_parse(body, strlen(body), code, message), 0);
  assert_string_equal(code, "400");
  assert_string_equal(message, "");
  body = "{\"error\":\"invalid_token\",\"error_description\":\"expired\"}";
  assert_int_equal(
      usc_xlate_error_body_parse(body, strlen(body), code, message), 0);
  assert_string_equal(code, "invalid_token");
  assert_string_equal(message, "expired");
  static const char *const bad[] = {
      "", "<html>", "[]", "{}", "{\"error\":[1]}", "{\"error\":null}"};
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    assert_int_equal(
        usc_xlate_error_body_parse(bad[i], strlen(bad[i]), code, message),
        USC_ERR_INVALID);
    assert_string_equal(code, "");
    assert_string_equal(message, "");
  }
}

static void test_error_body_bounds(void **state) {
  (void)state;
  char body[2048], code[USC_XLATE_CODE_MAX], message[USC_XLATE_MESSAGE_MAX];
  /* 254 ASCII bytes then "é" (2 bytes): the cut must not split it. */
  char text[600];
  memset(text, 'm', 254);
  snprintf(text + 254, sizeof(text) - 254, "\xc3\xa9tail");
  char long_code[100];
  memset(long_code, 'c', 99);
  long_code[99] = '\0';
  snprintf(body, sizeof(body),
           "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", long_code, text);
  assert_int_equal(
      usc_xlate_error_body_parse(body, strlen(body), code, message), 0);
  assert_int_equal(strlen(code), USC_XLATE_CODE_MAX - 1);
  assert_int_equal(strlen(message), 254);
  /* Control characters in a code are made header-safe. */
  snprintf(body, sizeof(body),
           "{\"error\":{\"code\":\"a\\nb\\u0000c\",\"message\":\"x\"}}");
  assert_int_equal(
      usc_xlate_error_body_parse(body, strlen(body), code, message), 0);
  assert_string_equal(code, "");
  snprintf(body, sizeof(body),
           "{\"error\":{\"code\":\"a b\\tc\\u00e9\",\"message\":\"x\"}}");
  assert_int_equal(
      usc_xlate_error_body_parse(body, strlen(body), code, message), 0);
  assert_string_equal(code, "a_b_c__");
}

/* ---- Retry-After ---- */

#define DATE_S 784111777LL /* Sun, 06 Nov 1994 08:49:37 GMT */

static void retry_ok(const char *value, int64_t now_ms, int64_t want) {
  int64_t ms = -5;
  if (usc_xlate_retry_after_ms(value, strlen(value), now_ms, &ms) != 0)
    fail_msg("refused \"%s\"", value);
  if (ms != want)
    fail_msg("\"%s\": %lld, want %lld", value, (long long)ms, (long long)want);
}

static void test_retry_after(void **state) {
  (void)state;
  int64_t now = DATE_S * 1000 - 10000;
  retry_ok("120", 0, 120000);
  retry_ok(" 5\t", 0, 5000);
  retry_ok("0", 0, 0);
  retry_ok("2147483", 0, 2147483000);
  retry_ok("2147484", 0, INT32_MAX);
  retry_ok("99999999999999999999999", 0, INT32_MAX);
  retry_ok("Sun, 06 Nov 1994 08:49:37 GMT", now, 10000);
  retry_ok("sun, 06 nov 1994 08:49:37 GMT", now, 10000);
  retry_ok("Sunday, 06-Nov-94 08:49:37 GMT", now, 10000);
  retry_ok("Sun Nov  6 08:49:37 1994", now, 10000);
  retry_ok("Wed Nov 16 08:49:37 1994", now, 10 * 86400000LL + 10000);
  retry_ok("Thursday, 01-Jan-70 00:00:00 GMT", 0, 0);
  retry_ok("Monday, 01-Jan-69 00:00:01 GMT", 0, INT32_MAX);
  retry_ok("Sun, 06 Nov 1994 08:49:37 GMT", DATE_S * 1000 + 1, 0);
  retry_ok("Sat, 06 Nov 1993 08:49:37 GMT", now, 0);
  retry_ok("Sun, 06 Nov 2094 08:49:37 GMT", now, INT32_MAX);
  static const char *const bad[] = {
      "",
      " ",
      "-1",
      "1.5",
      "12s",
      "Sun, 06 Nov 1994 08:49:37 PST",
      "Sun, 06 Nov 1994 08:49:37 GMT junk",
      "Sun, 31 Feb 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 24:49:37 GMT",
      "Sun, 06 Nov 1994 08:60:37 GMT",
      "Foo, 06 Nov 1994 08:49:37 GMT",
      "Sun, 06 Xyz 1994 08:49:37 GMT",
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sunday, 06-Nov-1994 08:49:37 GMT",
      "Sun Nov 6 08:49:37 1994",
      "Sun, 06 Nov 0000 08:49:37 GMT",
      "Sun,",
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    int64_t ms;
    if (usc_xlate_retry_after_ms(bad[i], strlen(bad[i]), now, &ms) !=
        USC_ERR_INVALID)
      fail_msg("accepted \"%s\"", bad[i]);
  }
}

/* ---- the facade's inverse ---- */

static void test_http_status_for(void **state) {
  (void)state;
  static const struct {
    usc_grpc_status_t status;
    const char *code;
    int http;
  } cases[] = {
      {USC_GRPC_OK, NULL, 200},
      {USC_GRPC_INVALID_ARGUMENT, "user_invalid", 400},
      {USC_GRPC_INVALID_ARGUMENT, NULL, 400},
      {USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", 400},
      {USC_GRPC_NOT_FOUND, "user_invalid", 400},
      {USC_GRPC_NOT_FOUND, "extension_invalid", 400},
      {USC_GRPC_NOT_FOUND, "resource_not_found", 404},
      {USC_GRPC_NOT_FOUND, NULL, 404},
      {USC_GRPC_NOT_FOUND, "pc", 404},
      {USC_GRPC_FAILED_PRECONDITION, "pc_phonecall_state_invalid", 400},
      {USC_GRPC_UNAUTHENTICATED, "access_denied", 401},
      {USC_GRPC_PERMISSION_DENIED, NULL, 403},
      {USC_GRPC_RESOURCE_EXHAUSTED, NULL, 429},
      {USC_GRPC_UNIMPLEMENTED, NULL, 501},
      {USC_GRPC_UNAVAILABLE, NULL, 503},
      {USC_GRPC_DEADLINE_EXCEEDED, NULL, 504},
      {USC_GRPC_INTERNAL, NULL, 500},
      {USC_GRPC_ABORTED, NULL, 500},
      {USC_GRPC_UNKNOWN, NULL, 500},
      {USC_GRPC_CANCELLED, NULL, 500},
      {USC_GRPC_DATA_LOSS, NULL, 500},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++)
    assert_int_equal(usc_xlate_http_status_for(cases[i].status, cases[i].code),
                     cases[i].http);
}

/* Every default maps back to the status it came from, where the inverse
 * is documented (403, 404, 429, 501, 503, 504 and the 400s). */
static void test_inverse_round_trip(void **state) {
  (void)state;
  static const struct {
    int http;
    const char *code;
  } cases[] = {
      {400, "user_invalid"},
      {400, "pc_phoncall_invalid"},
      {400, "pc_phoncallview_invalid"},
      {400, "pc_phonecall_state_invalid"},
      {401, "access_denied"},
      {403, "access_denied"},
      {404, "resource_not_found"},
      {429, "limit_exceeded"},
      {501, "request_not_implemented"},
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(cases); i++) {
    usc_grpc_status_t s =
        usc_xlate_status_lookup(NULL, cases[i].http, cases[i].code);
    assert_int_equal(usc_xlate_http_status_for(s, cases[i].code),
                     cases[i].http);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_map_file),
      cmocka_unit_test(test_map_empty),
      cmocka_unit_test(test_map_errors),
      cmocka_unit_test(test_map_limits),
      cmocka_unit_test(test_map_alloc_failure),
      cmocka_unit_test(test_error_body),
      cmocka_unit_test(test_error_body_bounds),
      cmocka_unit_test(test_retry_after),
      cmocka_unit_test(test_http_status_for),
      cmocka_unit_test(test_inverse_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
