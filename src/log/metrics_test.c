#include "src/log/log.h"

#include "src/base/base.h"
#include "src/grpc/grpc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* Renders and returns the text (freed by the caller with usc_free),
 * checking that the length returned agrees with the text. */
static char *render(const usc_metrics_t *m, const usc_metrics_gauges_t *g) {
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(usc_metrics_render(m, g, &text, &len), USC_OK);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  assert_int_equal(text[len - 1], '\n');
  return text;
}

/* The rendered text without the process metrics, which vary. */
static char *render_head(const usc_metrics_t *m,
                         const usc_metrics_gauges_t *g) {
  char *text = render(m, g);
  char *process = strstr(text, "# HELP process_");
  assert_non_null(process);
  *process = '\0';
  return text;
}

/* The value of the sample whose line starts with `series` (name and
 * labels), or fails the test when there is none. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *line = text; *line != '\0'; line = strchr(line, '\n') + 1) {
    if (strncmp(line, series, n) == 0 && line[n] == ' ')
      return strtod(line + n + 1, NULL);
  }
  fail_msg("no sample %s", series);
  return 0;
}

/* How many lines start with `prefix`. */
static size_t count_lines(const char *text, const char *prefix) {
  size_t count = 0, n = strlen(prefix);
  for (const char *line = text; *line != '\0'; line = strchr(line, '\n') + 1)
    count += strncmp(line, prefix, n) == 0;
  return count;
}

#define STARTED "grpc_server_started_total"
#define HANDLED "grpc_server_handled_total"
#define HANDLING "grpc_server_handling_seconds"
#define UP "uapi_sidecar_upstream_requests_total"
#define UP_SECONDS "uapi_sidecar_upstream_request_seconds"

#define HEAD_STARTED                                                           \
  "# HELP " STARTED " Total number of RPCs started on the server.\n"           \
  "# TYPE " STARTED " counter\n"
#define HEAD_HANDLED                                                           \
  "# HELP " HANDLED " Total number of RPCs completed on the server, "          \
  "regardless of success or failure.\n"                                        \
  "# TYPE " HANDLED " counter\n"
#define HEAD_HANDLING                                                          \
  "# HELP " HANDLING " Histogram of response latency (seconds) of gRPC that "  \
  "had been application-level handled by the server.\n"                        \
  "# TYPE " HANDLING " histogram\n"
#define HEAD_UP                                                                \
  "# HELP " UP " Upstream UAPI requests by HTTP method and status; status "    \
  "\"error\" when no response came.\n"                                         \
  "# TYPE " UP " counter\n"
#define HEAD_UP_SECONDS                                                        \
  "# HELP " UP_SECONDS " Duration of upstream UAPI requests in seconds, by "   \
  "HTTP method.\n"                                                             \
  "# TYPE " UP_SECONDS " histogram\n"
#define HEAD_FALLBACK                                                          \
  "# HELP uapi_sidecar_fallback_answers_total RPCs the native engine "         \
  "answered as the fallback of the upstream.\n"                                \
  "# TYPE uapi_sidecar_fallback_answers_total counter\n"

static void empty_registry(void **state) {
  usc_metrics_t *m;
  char *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  text = render_head(m, NULL);
  assert_string_equal(text, HEAD_STARTED HEAD_HANDLED HEAD_HANDLING HEAD_UP
                                HEAD_UP_SECONDS HEAD_FALLBACK
                      "uapi_sidecar_fallback_answers_total 0\n");
  usc_free(text);
  usc_metrics_free(m);
}

#define GET "grpc_type=\"unary\",grpc_service=\"pkg.Svc\",grpc_method=\"Get\""
#define WATCH                                                                  \
  "grpc_type=\"server_stream\",grpc_service=\"pkg.Svc\",grpc_method=\"Watch\""

static void exact_text(void **state) {
  usc_metrics_t *m;
  usc_metrics_gauges_t gauges = {.breaker_state = USC_METRICS_BREAKER_HALF_OPEN,
                                 .engine_calls = 7,
                                 .open_connections = 3,
                                 .open_streams = 12};
  char *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  assert_int_equal(
      usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc", "Get"), 0);
  assert_int_equal(
      usc_metrics_rpc_started(m, USC_METRICS_SERVER_STREAM, "pkg.Svc", "Watch"),
      0);
  assert_int_equal(
      usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc", "Get"), 0);
  /* 1.5 ms: the 0.0025 bucket. */
  assert_int_equal(usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "pkg.Svc",
                                           "Get", USC_GRPC_OK, 1500000),
                   0);
  /* Exactly 0.0001 s: bounds are inclusive ("le"). */
  assert_int_equal(usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "pkg.Svc",
                                           "Get", USC_GRPC_NOT_FOUND, 100000),
                   0);
  usc_metrics_upstream(m, "GET", 200, 3000000);    /* 0.005 */
  usc_metrics_upstream(m, "POST", 0, 12000000000); /* +Inf */
  usc_metrics_upstream(m, "GET", 503, 2000000000); /* 2.5 */
  usc_metrics_fallback(m);

  text = render_head(m, &gauges);
  assert_string_equal(
      text, HEAD_STARTED STARTED
      "{" GET "} 2\n" STARTED "{" WATCH "} 1\n"
      /* */
      HEAD_HANDLED HANDLED "{" GET ",grpc_code=\"OK\"} 1\n" HANDLED "{" GET
      ",grpc_code=\"NOT_FOUND\"} 1\n"
      /* */
      HEAD_HANDLING HANDLING "_bucket{" GET ",le=\"0.0001\"} 1\n" HANDLING
      "_bucket{" GET ",le=\"0.00025\"} 1\n" HANDLING "_bucket{" GET
      ",le=\"0.0005\"} 1\n" HANDLING "_bucket{" GET
      ",le=\"0.001\"} 1\n" HANDLING "_bucket{" GET
      ",le=\"0.0025\"} 2\n" HANDLING "_bucket{" GET
      ",le=\"0.005\"} 2\n" HANDLING "_bucket{" GET ",le=\"0.01\"} 2\n" HANDLING
      "_bucket{" GET ",le=\"0.025\"} 2\n" HANDLING "_bucket{" GET
      ",le=\"0.05\"} 2\n" HANDLING "_bucket{" GET ",le=\"0.1\"} 2\n" HANDLING
      "_bucket{" GET ",le=\"0.25\"} 2\n" HANDLING "_bucket{" GET
      ",le=\"0.5\"} 2\n" HANDLING "_bucket{" GET ",le=\"1\"} 2\n" HANDLING
      "_bucket{" GET ",le=\"2.5\"} 2\n" HANDLING "_bucket{" GET
      ",le=\"5\"} 2\n" HANDLING "_bucket{" GET ",le=\"10\"} 2\n" HANDLING
      "_bucket{" GET ",le=\"+Inf\"} 2\n" HANDLING "_sum{" GET
      "} 0.0016\n" HANDLING "_count{" GET "} 2\n"
      /* A series started but not yet handled: all zero. */
      HANDLING "_bucket{" WATCH ",le=\"0.0001\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.00025\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.0005\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.001\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.0025\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.005\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.01\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.025\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.05\"} 0\n" HANDLING "_bucket{" WATCH ",le=\"0.1\"} 0\n" HANDLING
      "_bucket{" WATCH ",le=\"0.25\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"0.5\"} 0\n" HANDLING "_bucket{" WATCH ",le=\"1\"} 0\n" HANDLING
      "_bucket{" WATCH ",le=\"2.5\"} 0\n" HANDLING "_bucket{" WATCH
      ",le=\"5\"} 0\n" HANDLING "_bucket{" WATCH ",le=\"10\"} 0\n" HANDLING
      "_bucket{" WATCH ",le=\"+Inf\"} 0\n" HANDLING "_sum{" WATCH
      "} 0\n" HANDLING "_count{" WATCH "} 0\n"
      /* */
      HEAD_UP UP "{method=\"GET\",status=\"200\"} 1\n" UP
      "{method=\"GET\",status=\"503\"} 1\n" UP
      "{method=\"POST\",status=\"error\"} 1\n"
      /* */
      HEAD_UP_SECONDS UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.0001\"} 0\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.00025\"} 0\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.0005\"} 0\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.001\"} 0\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.0025\"} 0\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.005\"} 1\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.01\"} 1\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.025\"} 1\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.05\"} 1\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.1\"} 1\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.25\"} 1\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"0.5\"} 1\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"1\"} 1\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"2.5\"} 2\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"5\"} 2\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"10\"} 2\n" UP_SECONDS
      "_bucket{method=\"GET\",le=\"+Inf\"} 2\n" UP_SECONDS
      "_sum{method=\"GET\"} 2.003\n" UP_SECONDS
      "_count{method=\"GET\"} 2\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.0001\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.00025\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.0005\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.001\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.0025\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.005\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.01\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.025\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.05\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.1\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.25\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"0.5\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"1\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"2.5\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"5\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"10\"} 0\n" UP_SECONDS
      "_bucket{method=\"POST\",le=\"+Inf\"} 1\n" UP_SECONDS
      "_sum{method=\"POST\"} 12\n" UP_SECONDS "_count{method=\"POST\"} 1\n"
      /* */
      HEAD_FALLBACK "uapi_sidecar_fallback_answers_total 1\n"
      /* */
      "# HELP uapi_sidecar_breaker_state State of the upstream circuit "
      "breaker: 0 closed, 1 open, 2 half-open.\n"
      "# TYPE uapi_sidecar_breaker_state gauge\n"
      "uapi_sidecar_breaker_state 2\n"
      "# HELP uapi_sidecar_engine_calls Calls the native call-state engine "
      "holds.\n"
      "# TYPE uapi_sidecar_engine_calls gauge\n"
      "uapi_sidecar_engine_calls 7\n"
      "# HELP uapi_sidecar_open_connections Open HTTP/2 connections.\n"
      "# TYPE uapi_sidecar_open_connections gauge\n"
      "uapi_sidecar_open_connections 3\n"
      "# HELP uapi_sidecar_open_streams Open HTTP/2 streams over all "
      "connections.\n"
      "# TYPE uapi_sidecar_open_streams gauge\n"
      "uapi_sidecar_open_streams 12\n");
  usc_free(text);
  usc_metrics_free(m);
}

/* Sums are exact decimals, without float noise or trailing zeros. */
static void sum_text(void **state) {
  usc_metrics_t *m;
  char *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "one_ns", 0, 1);
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "ten_s", 0, 10000000000);
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "point_one", 0, 100000000);
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "point_one", 0, 200000000);
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "negative", 0, -5);
  text = render(m, NULL);
#define SUM(method)                                                            \
  HANDLING "_sum{grpc_type=\"unary\",grpc_service=\"s\",grpc_method=\"" method \
           "\"} "
  assert_non_null(strstr(text, "\n" SUM("one_ns") "0.000000001\n"));
  assert_non_null(strstr(text, "\n" SUM("ten_s") "10\n"));
  assert_non_null(strstr(text, "\n" SUM("point_one") "0.3\n"));
  /* A negative duration counts as 0, in the first bucket. */
  assert_non_null(strstr(text, "\n" SUM("negative") "0\n"));
  assert_non_null(strstr(text, "grpc_method=\"negative\",le=\"0.0001\"} 1\n"));
  usc_free(text);
  usc_metrics_free(m);
}

/* The grpc_type is part of the series; so is each name. */
static void series_kept_apart(void **state) {
  usc_metrics_t *m;
  char *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  usc_metrics_rpc_started(m, USC_METRICS_UNARY, "ab", "c");
  usc_metrics_rpc_started(m, USC_METRICS_BIDI_STREAM, "ab", "c");
  usc_metrics_rpc_started(m, USC_METRICS_CLIENT_STREAM, "a", "bc");
  usc_metrics_rpc_started(m, USC_METRICS_CLIENT_STREAM, "a", "bc");
  text = render(m, NULL);
  assert_int_equal(
      sample(text, STARTED
             "{grpc_type=\"unary\",grpc_service=\"ab\",grpc_method=\"c\"}"),
      1);
  assert_int_equal(
      sample(
          text, STARTED
          "{grpc_type=\"bidi_stream\",grpc_service=\"ab\",grpc_method=\"c\"}"),
      1);
  assert_int_equal(sample(text, STARTED
                          "{grpc_type=\"client_stream\",grpc_service=\"a\","
                          "grpc_method=\"bc\"}"),
                   2);
  assert_int_equal(count_lines(text, STARTED "{"), 3);
  usc_free(text);
  usc_metrics_free(m);
}

static void escaping(void **state) {
  usc_metrics_t *m;
  char *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  /* Quote, backslash and newline are escaped; a byte that is not UTF-8
   * becomes U+FFFD; valid UTF-8 and tabs pass. */
  usc_metrics_rpc_started(m, USC_METRICS_UNARY, "a\"b\\c\nd",
                          "m\xff\xc3\xa9\t\xed\xa0\x80x");
  text = render(m, NULL);
  assert_non_null(strstr(text, "\n" STARTED "{grpc_type=\"unary\","
                               "grpc_service=\"a\\\"b\\\\c\\nd\","
                               "grpc_method=\"m\xef\xbf\xbd\xc3\xa9\t"
                               "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx\"} 1\n"));
  usc_free(text);
  usc_metrics_free(m);
}

static void cap_on_series(void **state) {
  usc_metrics_t *m;
  char name[32], *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  for (int i = 0; i < USC_METRICS_MAX_SERIES; i++) {
    snprintf(name, sizeof name, "M%d", i);
    assert_int_equal(
        usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc", name), 0);
  }
  /* Full: known series still count under their names... */
  usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc", "M7");
  /* ...new methods of a known service under method "other"... */
  usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc", "Extra1");
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "pkg.Svc", "Extra2",
                          USC_GRPC_UNIMPLEMENTED, 1000);
  /* ...and unknown services under "other" too. */
  usc_metrics_rpc_started(m, USC_METRICS_UNARY, "evil.Svc", "X");
  usc_metrics_rpc_started(m, USC_METRICS_BIDI_STREAM, "evil.Svc", "Y");

  /* After the first time, hostile names cost no memory. */
  usc_alloc_fail_at(0);
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof name, "junk%d", i);
    assert_int_equal(usc_metrics_rpc_started(m, USC_METRICS_UNARY, name, name),
                     0);
    assert_int_equal(
        usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc", name), 0);
  }
  assert_int_equal(usc_alloc_fail_at(0), 0);

  text = render(m, NULL);
  assert_int_equal(count_lines(text, STARTED "{"), USC_METRICS_MAX_SERIES + 3);
  assert_int_equal(sample(text, STARTED
                          "{grpc_type=\"unary\",grpc_service=\"pkg.Svc\","
                          "grpc_method=\"M7\"}"),
                   2);
  assert_int_equal(sample(text, STARTED
                          "{grpc_type=\"unary\",grpc_service=\"pkg.Svc\","
                          "grpc_method=\"other\"}"),
                   2001);
  assert_int_equal(sample(text, HANDLED
                          "{grpc_type=\"unary\",grpc_service=\"pkg.Svc\","
                          "grpc_method=\"other\",grpc_code=\"UNIMPLEMENTED\"}"),
                   1);
  assert_int_equal(sample(text,
                          STARTED "{grpc_type=\"unary\",grpc_service=\"other\","
                                  "grpc_method=\"other\"}"),
                   2001);
  assert_int_equal(sample(text, STARTED
                          "{grpc_type=\"bidi_stream\",grpc_service=\"other\","
                          "grpc_method=\"other\"}"),
                   1);
  assert_null(strstr(text, "junk"));
  assert_null(strstr(text, "evil"));
  usc_free(text);
  usc_metrics_free(m);
}

static void state_file_metrics(void **state) {
  usc_metrics_t *m;
  usc_metrics_gauges_t gauges = {
      .state_file = true,
      .state_saves = 12,
      .state_save_errors = 1,
      .state_file_rejected = 1,
      .state_last_save_ns = INT64_C(1700000000250000000),
  };
  char *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  text = render(m, &gauges);
  assert_non_null(strstr(text, "# TYPE uapi_sidecar_state_saves_total "
                               "counter\n"
                               "uapi_sidecar_state_saves_total{result=\"ok\"} "
                               "12\n"
                               "uapi_sidecar_state_saves_total{result="
                               "\"error\"} 1\n"));
  assert_int_equal(sample(text, "uapi_sidecar_state_file_rejected_total"), 1);
  assert_non_null(strstr(text, "\nuapi_sidecar_state_last_save_timestamp_"
                               "seconds 1700000000.25\n"));
  usc_free(text);
  usc_metrics_free(m);
}

static void gauges_optional(void **state) {
  usc_metrics_t *m;
  usc_metrics_gauges_t gauges = {.breaker_state = USC_METRICS_BREAKER_OPEN,
                                 .engine_calls = 100000};
  char *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  text = render(m, &gauges);
  assert_int_equal(sample(text, "uapi_sidecar_breaker_state"), 1);
  assert_int_equal(sample(text, "uapi_sidecar_engine_calls"), 100000);
  assert_int_equal(sample(text, "uapi_sidecar_open_connections"), 0);
  assert_int_equal(sample(text, "uapi_sidecar_open_streams"), 0);
  assert_null(strstr(text, "uapi_sidecar_state_"));
  assert_null(strstr(text, "uapi_sidecar_tls_handshake_failures_total"));
  usc_free(text);
  text = render(m, NULL);
  assert_null(strstr(text, "uapi_sidecar_breaker_state"));
  assert_null(strstr(text, "uapi_sidecar_open_streams"));
  usc_free(text);
  usc_metrics_free(m);
}

static void tls_counter_with_tls_only(void **state) {
  usc_metrics_t *m;
  usc_metrics_gauges_t gauges = {.tls = true, .tls_handshake_failures = 4};
  char *text;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  text = render(m, &gauges);
  assert_non_null(
      strstr(text, "# TYPE uapi_sidecar_tls_handshake_failures_total "
                   "counter\nuapi_sidecar_tls_handshake_failures_total 4\n"));
  usc_free(text);
  usc_metrics_free(m);
}

static void process_metrics(void **state) {
  usc_metrics_t *m;
  char *text;
  double start;
  (void)state;
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  text = render(m, NULL);
  assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
  assert_true(sample(text, "process_cpu_seconds_total") >= 0);
  assert_non_null(strstr(text, "# TYPE process_resident_memory_bytes gauge\n"));
  assert_true(sample(text, "process_resident_memory_bytes") > 0);
  /* At least stdin, stdout and stderr; not absurd. */
  assert_true(sample(text, "process_open_fds") >= 3);
  assert_true(sample(text, "process_open_fds") < 100000);
  /* This test started moments ago. */
  start = sample(text, "process_start_time_seconds");
  assert_true(start <= (double)time(NULL) + 2);
  assert_true(start > (double)time(NULL) - 3600);
  usc_free(text);
  usc_metrics_free(m);
}

/* Everything but allocation: bad arguments and out-of-range values. */
static void edges(void **state) {
  usc_metrics_t *m;
  char *text = (char *)"untouched";
  size_t len = 42;
  (void)state;
  usc_metrics_free(NULL);
  assert_int_equal(usc_metrics_rpc_started(NULL, USC_METRICS_UNARY, "s", "m"),
                   0);
  assert_int_equal(usc_metrics_rpc_handled(NULL, 9, NULL, NULL, 0, 0), 0);
  assert_int_equal(usc_metrics_upstream(NULL, "GET", 200, 0), 0);
  assert_int_equal(usc_metrics_fallback(NULL), 0);
  assert_int_equal(usc_metrics_render(NULL, NULL, &text, &len),
                   USC_ERR_INVALID);
  assert_string_equal(text, "untouched");
  assert_int_equal(len, 42);

  assert_int_equal(usc_metrics_new(&m), USC_OK);
  assert_int_equal(
      usc_metrics_rpc_started(m, (usc_metrics_rpc_type_t)4, "s", "m"),
      USC_ERR_INVALID);
  assert_int_equal(usc_metrics_rpc_started(m, USC_METRICS_UNARY, NULL, "m"),
                   USC_ERR_INVALID);
  assert_int_equal(
      usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", NULL, 0, 0),
      USC_ERR_INVALID);
  /* Codes out of range are UNKNOWN, as usc_grpc_status_name says. */
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "m", 17, 0);
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "m", -1, 0);
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "m", USC_GRPC_UNKNOWN, 0);
  usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "s", "m",
                          USC_GRPC_UNAUTHENTICATED, 0);
  /* Unknown HTTP methods are "other"; statuses outside 100..599 "error". */
  usc_metrics_upstream(m, "BREW", 418, 0);
  usc_metrics_upstream(m, NULL, 200, 0);
  usc_metrics_upstream(m, "get", 42, 0);
  usc_metrics_upstream(m, "DELETE", 600, 0);
  usc_metrics_upstream(m, "OPTIONS", 100, 0);
  usc_metrics_upstream(m, "PATCH", 599, 0);
  text = render(m, NULL);
#define S_M "grpc_type=\"unary\",grpc_service=\"s\",grpc_method=\"m\""
  assert_int_equal(sample(text, HANDLED "{" S_M ",grpc_code=\"UNKNOWN\"}"), 3);
  assert_int_equal(
      sample(text, HANDLED "{" S_M ",grpc_code=\"UNAUTHENTICATED\"}"), 1);
  assert_int_equal(count_lines(text, HANDLED "{"), 2);
  assert_int_equal(sample(text, UP "{method=\"other\",status=\"418\"}"), 1);
  assert_int_equal(sample(text, UP "{method=\"other\",status=\"200\"}"), 1);
  assert_int_equal(sample(text, UP "{method=\"other\",status=\"error\"}"), 1);
  assert_int_equal(sample(text, UP "{method=\"DELETE\",status=\"error\"}"), 1);
  assert_int_equal(sample(text, UP "{method=\"OPTIONS\",status=\"100\"}"), 1);
  assert_int_equal(sample(text, UP "{method=\"PATCH\",status=\"599\"}"), 1);
  assert_int_equal(sample(text, UP_SECONDS "_count{method=\"other\"}"), 3);
  usc_free(text);
  usc_metrics_free(m);
}

/* One allocation for the registry and one per new series; none for an
 * observation of a known series, an upstream request or a fallback. */
static void no_allocation_when_warm(void **state) {
  usc_metrics_t *m;
  (void)state;
  usc_alloc_fail_at(0);
  assert_int_equal(usc_metrics_new(&m), USC_OK);
  usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc", "Get");
  usc_metrics_rpc_handled(m, USC_METRICS_SERVER_STREAM, "pkg.Svc", "Watch", 0,
                          5);
  assert_int_equal(usc_alloc_fail_at(0), 3);
  for (int i = 0; i < 10000; i++) {
    usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc", "Get");
    usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "pkg.Svc", "Get", i % 20,
                            i * 100000);
    usc_metrics_rpc_started(m, USC_METRICS_SERVER_STREAM, "pkg.Svc", "Watch");
    usc_metrics_upstream(m, i % 2 ? "GET" : "PUT", 200 + i % 400, i);
    usc_metrics_fallback(m);
  }
  assert_int_equal(usc_alloc_fail_at(0), 0);
  usc_metrics_free(m);
}

/* One round of everything, the nth allocation failing. Returns how many
 * allocations it made (fewer than nth: nothing failed). */
static size_t round_failing_at(size_t nth) {
  usc_metrics_t *m = NULL;
  char *text = (char *)"untouched";
  size_t len = 42;
  int err;

  usc_alloc_fail_at(nth);
  err = usc_metrics_new(&m);
  if (err != USC_OK) {
    assert_int_equal(err, USC_ERR_NOMEM);
    assert_null(m);
    return usc_alloc_fail_at(0);
  }
  for (int i = 0; i < 3; i++) {
    err = usc_metrics_rpc_started(m, USC_METRICS_UNARY, "pkg.Svc",
                                  i == 1 ? "B" : "A");
    assert_true(err == USC_OK || err == USC_ERR_NOMEM);
    err = usc_metrics_rpc_handled(m, USC_METRICS_UNARY, "pkg.Svc", "C", 0, 1);
    assert_true(err == USC_OK || err == USC_ERR_NOMEM);
  }
  usc_metrics_upstream(m, "GET", 200, 1);
  err = usc_metrics_render(m, NULL, &text, &len);
  if (err == USC_OK) {
    assert_int_equal(strlen(text), len);
    usc_free(text);
  } else {
    assert_int_equal(err, USC_ERR_NOMEM);
    assert_string_equal(text, "untouched");
    assert_int_equal(len, 42);
  }
  usc_metrics_free(m);
  return usc_alloc_fail_at(0);
}

static void allocation_failures(void **state) {
  size_t nth = 1;
  (void)state;
  while (round_failing_at(nth) >= nth)
    nth++;
  /* The registry, three series and the render buffer growing. */
  assert_true(nth > 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(empty_registry),
      cmocka_unit_test(exact_text),
      cmocka_unit_test(sum_text),
      cmocka_unit_test(series_kept_apart),
      cmocka_unit_test(escaping),
      cmocka_unit_test(cap_on_series),
      cmocka_unit_test(gauges_optional),
      cmocka_unit_test(state_file_metrics),
      cmocka_unit_test(tls_counter_with_tls_only),
      cmocka_unit_test(process_metrics),
      cmocka_unit_test(edges),
      cmocka_unit_test(no_allocation_when_warm),
      cmocka_unit_test(allocation_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
