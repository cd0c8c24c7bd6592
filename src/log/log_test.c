#include "src/log/log.h"

#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define TIME_LEN 24 /* 2026-11-29T07:50:00.123Z */

/* Everything logged during one test, via open_memstream. */
static struct {
  FILE *file;
  char *buf;
  size_t len;
} captured;

static int start_capture(void **state) {
  (void)state;
  captured.file = open_memstream(&captured.buf, &captured.len);
  return captured.file == NULL;
}

static int stop_capture(void **state) {
  (void)state;
  usc_log_init(USC_LOG_TEXT, USC_LOG_INFO, NULL);
  fclose(captured.file);
  free(captured.buf);
  return 0;
}

static void use(usc_log_format_t format, usc_log_level_t level) {
  usc_log_init(format, level, captured.file);
}

/* Asserts that `stamp` is an RFC 3339 UTC time with milliseconds within a
 * few seconds of now. */
static void expect_time(const char *stamp) {
  regex_t re;
  struct tm tm;
  char copy[TIME_LEN + 1];
  assert_int_equal(regcomp(&re,
                           "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                           "[0-9]{2}\\.[0-9]{3}Z",
                           REG_EXTENDED | REG_NOSUB),
                   0);
  memcpy(copy, stamp, TIME_LEN);
  copy[TIME_LEN] = '\0';
  if (regexec(&re, copy, 0, NULL, 0) != 0)
    fail_msg("bad time \"%s\"", copy);
  regfree(&re);
  memset(&tm, 0, sizeof tm);
  assert_int_equal(sscanf(copy, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon,
                          &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec),
                   6);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  assert_true(llabs((long long)(timegm(&tm) - time(NULL))) <= 5);
}

/* Asserts the capture is exactly one text line: a time, then `rest`. */
static void expect_text(const char *rest) {
  assert_true(captured.len > TIME_LEN);
  expect_time(captured.buf);
  assert_string_equal(captured.buf + TIME_LEN, rest);
}

/* Asserts the capture is exactly {"time":"<time>"` followed by `rest`. */
static void expect_json(const char *rest) {
  const char *open = "{\"time\":\"";
  size_t n = strlen(open);
  assert_true(captured.len > n + TIME_LEN + 1);
  assert_memory_equal(captured.buf, open, n);
  expect_time(captured.buf + n);
  assert_int_equal(captured.buf[n + TIME_LEN], '"');
  assert_string_equal(captured.buf + n + TIME_LEN + 1, rest);
}

/* open_memstream updates the length only when flushed. */
static void expect_nothing(void) {
  fflush(captured.file);
  assert_int_equal(captured.len, 0);
}

static void test_text_listening_line(void **state) {
  (void)state;
  regex_t re;
  regmatch_t m[2];
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "listening", "address=%s", "127.0.0.1:50051");
  expect_text(" INFO listening address=127.0.0.1:50051\n");

  /* What the whole-program tests look for. */
  assert_int_equal(
      regcomp(&re, "listening address=([^[:space:]]+)", REG_EXTENDED), 0);
  assert_int_equal(regexec(&re, captured.buf, 2, m, 0), 0);
  assert_int_equal(m[1].rm_eo - m[1].rm_so, strlen("127.0.0.1:50051"));
  regfree(&re);
}

static void test_json_listening_line(void **state) {
  (void)state;
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "listening", "address=%s", "127.0.0.1:50051");
  expect_json(",\"level\":\"info\",\"msg\":\"listening\","
              "\"detail\":\"address=127.0.0.1:50051\"}\n");
}

static void test_text_levels(void **state) {
  (void)state;
  use(USC_LOG_TEXT, USC_LOG_DEBUG);
  usc_log(USC_LOG_DEBUG, "a", "n=%d", 1);
  usc_log(USC_LOG_WARN, "b", "n=%d", 2);
  usc_log(USC_LOG_ERROR, "c", "n=%d", 3);
  assert_int_equal(captured.len, 3 * (TIME_LEN + 1) + strlen("DEBUG a n=1\n") +
                                     strlen("WARN b n=2\n") +
                                     strlen("ERROR c n=3\n"));
  assert_non_null(strstr(captured.buf, "Z DEBUG a n=1\n"));
  assert_non_null(strstr(captured.buf, "Z WARN b n=2\n"));
  assert_non_null(strstr(captured.buf, "Z ERROR c n=3\n"));
}

static void test_json_levels(void **state) {
  (void)state;
  use(USC_LOG_JSON, USC_LOG_DEBUG);
  usc_log(USC_LOG_DEBUG, "a", "x");
  usc_log(USC_LOG_WARN, "b", "x");
  usc_log(USC_LOG_ERROR, "c", "x");
  assert_non_null(strstr(captured.buf, "\"level\":\"debug\",\"msg\":\"a\""));
  assert_non_null(strstr(captured.buf, "\"level\":\"warn\",\"msg\":\"b\""));
  assert_non_null(strstr(captured.buf, "\"level\":\"error\",\"msg\":\"c\""));
}

static void test_level_filter(void **state) {
  (void)state;
  usc_log_rpc_t rpc = {"/p.S/M", 0, 1000, "native", NULL, NULL, 0};
  use(USC_LOG_TEXT, USC_LOG_WARN);
  usc_log(USC_LOG_DEBUG, "dropped", "x");
  usc_log(USC_LOG_INFO, "dropped", "x");
  usc_log_rpc(&rpc);
  expect_nothing();
  usc_log(USC_LOG_WARN, "kept", "x");
  expect_text(" WARN kept x\n");
}

static void test_info_drops_debug(void **state) {
  (void)state;
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log(USC_LOG_DEBUG, "dropped", "x");
  expect_nothing();
}

static void test_no_detail(void **state) {
  (void)state;
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "stopping", NULL);
  expect_text(" INFO stopping\n");
}

static void test_empty_detail_json(void **state) {
  (void)state;
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "stopping", "%s", "");
  expect_json(",\"level\":\"info\",\"msg\":\"stopping\"}\n");
}

static const usc_log_rpc_t full_rpc = {
    "/uapi.phonecalls.v1.PhoneCallService/GetPhoneCall",
    5,
    123456,
    "native",
    "127.0.0.1:5555",
    "abc",
    0,
};

static void test_rpc_text(void **state) {
  (void)state;
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log_rpc(&full_rpc);
  expect_text(" INFO rpc method=/uapi.phonecalls.v1.PhoneCallService/"
              "GetPhoneCall code=NOT_FOUND(5) duration_us=123 backend=native "
              "peer=127.0.0.1:5555 request_id=abc\n");
}

static const usc_log_rpc_t upstream_rpc = {"/p.S/M", 5,    2000, "uapi",
                                           NULL,     NULL, 404};

static void test_rpc_upstream_status_text(void **state) {
  (void)state;
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log_rpc(&upstream_rpc);
  expect_text(" INFO rpc method=/p.S/M code=NOT_FOUND(5) duration_us=2 "
              "backend=uapi upstream_status=404\n");
}

static void test_rpc_upstream_status_json(void **state) {
  (void)state;
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log_rpc(&upstream_rpc);
  expect_json(",\"level\":\"info\",\"msg\":\"rpc\",\"method\":\"/p.S/M\","
              "\"code\":\"NOT_FOUND\",\"code_num\":5,\"duration_ms\":0.002,"
              "\"backend\":\"uapi\",\"upstream_status\":404}\n");
}

static void test_rpc_text_without_peer_and_request_id(void **state) {
  (void)state;
  usc_log_rpc_t rpc = {"/p.S/M", 0, 999, "uapi", NULL, NULL, 0};
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log_rpc(&rpc);
  expect_text(" INFO rpc method=/p.S/M code=OK(0) duration_us=0 "
              "backend=uapi\n");
}

static void test_rpc_json(void **state) {
  (void)state;
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log_rpc(&full_rpc);
  expect_json(",\"level\":\"info\",\"msg\":\"rpc\",\"method\":\"/"
              "uapi.phonecalls.v1.PhoneCallService/GetPhoneCall\","
              "\"code\":\"NOT_FOUND\",\"code_num\":5,\"duration_ms\":0.123,"
              "\"backend\":\"native\",\"peer\":\"127.0.0.1:5555\","
              "\"request_id\":\"abc\"}\n");
}

static void test_rpc_json_without_peer_and_request_id(void **state) {
  (void)state;
  usc_log_rpc_t rpc = {"/p.S/M", 16, 1234567890123LL, "uapi", NULL, NULL, 0};
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log_rpc(&rpc);
  expect_json(",\"level\":\"info\",\"msg\":\"rpc\",\"method\":\"/p.S/M\","
              "\"code\":\"UNAUTHENTICATED\",\"code_num\":16,"
              "\"duration_ms\":1234567.890,\"backend\":\"uapi\"}\n");
}

static void test_rpc_odd_code_and_duration(void **state) {
  (void)state;
  usc_log_rpc_t rpc = {"/p.S/M", 42, -5000, "native", NULL, NULL, 0};
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log_rpc(&rpc);
  expect_text(" INFO rpc method=/p.S/M code=UNKNOWN(42) duration_us=0 "
              "backend=native\n");
}

static void test_json_escaping(void **state) {
  (void)state;
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "q\"b\\", "nl\n tab\t \x01\x1f del\x7f");
  expect_json(",\"level\":\"info\",\"msg\":\"q\\\"b\\\\\","
              "\"detail\":\"nl\\u000a tab\\u0009 \\u0001\\u001f "
              "del\\u007f\"}\n");
}

static void test_json_utf8(void **state) {
  (void)state;
  use(USC_LOG_JSON, USC_LOG_INFO);
  /* Valid: é, €, 😀. Invalid: a stray byte, an overlong '/', a surrogate,
   * a code point past U+10FFFF and a sequence cut short at the end. */
  usc_log(USC_LOG_INFO, "m", "%s",
          "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xff|\xc0\xaf|\xed\xa0\x80|"
          "\xf4\x90\x80\x80|\xe2\x82");
  expect_json(",\"level\":\"info\",\"msg\":\"m\",\"detail\":\""
              "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\\ufffd|\\ufffd\\ufffd|"
              "\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd|"
              "\\ufffd\\ufffd\"}\n");
}

static void test_rpc_json_escaping(void **state) {
  (void)state;
  usc_log_rpc_t rpc = {"/p.S/M", 0, 0, "native", "p\"", "a\nb\"},\"x\":\"", 0};
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log_rpc(&rpc);
  assert_non_null(strstr(captured.buf, ",\"peer\":\"p\\\"\",\"request_id\":\""
                                       "a\\u000ab\\\"},\\\"x\\\":\\\"\"}\n"));
}

static void test_text_escaping(void **state) {
  (void)state;
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "m\n", "a\nb\r\tc\x1b[0m\x7f \"q\" \\");
  expect_text(" INFO m\\n a\\nb\\r\\tc\\x1b[0m\\x7f \"q\" \\\n");
}

static void test_rpc_text_quoting(void **state) {
  (void)state;
  usc_log_rpc_t rpc = {"/p.S/M", 0, 0, "native", "", "abc level=ERROR \"x\\\n",
                       0};
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log_rpc(&rpc);
  expect_text(" INFO rpc method=/p.S/M code=OK(0) duration_us=0 "
              "backend=native peer=\"\" "
              "request_id=\"abc level=ERROR \\\"x\\\\\\n\"\n");
}

/* A detail far over the line size: the line is cut and ends "...". */
static void test_truncated_text(void **state) {
  (void)state;
  char big[10000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "m", "%s", big);
  assert_true(captured.len <= 4096 && captured.len >= 4000);
  assert_int_equal(strlen(captured.buf), captured.len);
  assert_memory_equal(captured.buf + TIME_LEN, " INFO m xxx", 11);
  assert_string_equal(captured.buf + captured.len - 5, "x...\n");
}

static void test_truncated_json(void **state) {
  (void)state;
  char big[10000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "m", "%s", big);
  assert_true(captured.len <= 4096 && captured.len >= 4000);
  assert_string_equal(captured.buf + captured.len - 7, "x...\"}\n");
}

/* Escapes at the cut are whole: the line still parses as JSON. */
static void test_truncated_json_never_splits_escapes(void **state) {
  (void)state;
  char big[3000];
  const char *tail;
  memset(big, '\x01', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, "m", "%s", big);
  assert_true(captured.len <= 4096);
  tail = strstr(captured.buf, "\"detail\":\"") + strlen("\"detail\":\"");
  while (strncmp(tail, "\\u0001", 6) == 0)
    tail += 6;
  assert_string_equal(tail, "...\"}\n");
}

static void test_long_message_is_capped(void **state) {
  (void)state;
  char msg[1000];
  memset(msg, 'm', sizeof msg - 1);
  msg[sizeof msg - 1] = '\0';
  use(USC_LOG_TEXT, USC_LOG_INFO);
  usc_log(USC_LOG_INFO, msg, "detail=kept");
  assert_true(captured.len < 400);
  assert_non_null(strstr(captured.buf, "mmm... detail=kept\n"));
}

/* A hostile field is capped, and the fields after it survive. */
static void test_long_rpc_field_is_capped(void **state) {
  (void)state;
  char method[10000];
  usc_log_rpc_t rpc = {method, 3, 0, "native", "1.2.3.4:5", "r", 0};
  memset(method, 'z', sizeof method - 1);
  method[sizeof method - 1] = '\0';
  use(USC_LOG_JSON, USC_LOG_INFO);
  usc_log_rpc(&rpc);
  assert_true(captured.len < 1024);
  assert_non_null(strstr(
      captured.buf, "zzz...\",\"code\":\"INVALID_ARGUMENT\",\"code_num\":3,"
                    "\"duration_ms\":0.000,\"backend\":\"native\","
                    "\"peer\":\"1.2.3.4:5\",\"request_id\":\"r\"}\n"));
}

/* Many threads log long lines at once; every line comes out whole. */
enum { THREADS = 4, LINES = 300, DETAIL = 1000 };

static void *log_lines(void *arg) {
  char detail[DETAIL + 1];
  memset(detail, 'a' + (int)(intptr_t)arg, DETAIL);
  detail[DETAIL] = '\0';
  for (int i = 0; i < LINES; i++)
    usc_log(USC_LOG_INFO, "t", "%s", detail);
  return NULL;
}

static void test_concurrent_lines_do_not_interleave(void **state) {
  (void)state;
  pthread_t threads[THREADS];
  const char *line;
  int count = 0;
  use(USC_LOG_TEXT, USC_LOG_INFO);
  for (intptr_t t = 0; t < THREADS; t++)
    assert_int_equal(pthread_create(&threads[t], NULL, log_lines, (void *)t),
                     0);
  for (int t = 0; t < THREADS; t++)
    pthread_join(threads[t], NULL);
  for (line = captured.buf; *line != '\0'; count++) {
    const char *detail = line + TIME_LEN + strlen(" INFO t ");
    assert_int_equal(strcspn(line, "\n"),
                     TIME_LEN + strlen(" INFO t ") + DETAIL);
    assert_int_equal(strspn(detail, (char[]){detail[0], '\0'}), DETAIL);
    line = detail + DETAIL + 1;
  }
  assert_int_equal(count, THREADS * LINES);
}

int main(void) {
#define TEST(f) cmocka_unit_test_setup_teardown(f, start_capture, stop_capture)
  const struct CMUnitTest tests[] = {
      TEST(test_text_listening_line),
      TEST(test_json_listening_line),
      TEST(test_text_levels),
      TEST(test_json_levels),
      TEST(test_level_filter),
      TEST(test_info_drops_debug),
      TEST(test_no_detail),
      TEST(test_empty_detail_json),
      TEST(test_rpc_text),
      TEST(test_rpc_upstream_status_text),
      TEST(test_rpc_upstream_status_json),
      TEST(test_rpc_text_without_peer_and_request_id),
      TEST(test_rpc_json),
      TEST(test_rpc_json_without_peer_and_request_id),
      TEST(test_rpc_odd_code_and_duration),
      TEST(test_json_escaping),
      TEST(test_json_utf8),
      TEST(test_rpc_json_escaping),
      TEST(test_text_escaping),
      TEST(test_rpc_text_quoting),
      TEST(test_truncated_text),
      TEST(test_truncated_json),
      TEST(test_truncated_json_never_splits_escapes),
      TEST(test_long_message_is_capped),
      TEST(test_long_rpc_field_is_capped),
      TEST(test_concurrent_lines_do_not_interleave),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
