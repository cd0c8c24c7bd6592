#include "src/config/config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "src/base/base.h"

/* One parse: its result, the config and the error message. */
typedef struct {
  usc_config_result_t result;
  usc_config_t config;
  char error[256];
} outcome_t;

static outcome_t parse_env(char *const argv[], int argc, char *const envp[]) {
  outcome_t o;
  memset(&o, 0, sizeof o);
  o.result =
      usc_config_parse(argc, argv, envp, &o.config, o.error, sizeof o.error);
  return o;
}

/* PARSE("--flag", "value") parses argv {"uapi-sidecar", ...} without an
 * environment; PARSE_ENV(envp, ...) with one. */
#define PARSE_ENV(envp, ...)                                                   \
  parse_env((char *[]){"uapi-sidecar", __VA_ARGS__},                           \
            (int)USC_ARRAY_LEN(((char *[]){"uapi-sidecar", __VA_ARGS__})),     \
            envp)
#define PARSE(...) PARSE_ENV(NULL, __VA_ARGS__)

static outcome_t parse_nothing(char *const envp[]) {
  char *argv[] = {"uapi-sidecar", NULL};
  return parse_env(argv, 1, envp);
}

/* Asserts that parsing failed with exactly `message`. */
static void expect_error(outcome_t o, const char *message) {
  assert_int_equal(o.result, USC_CONFIG_ERROR);
  assert_string_equal(o.error, message);
}

static void test_defaults(void **state) {
  (void)state;
  outcome_t o = parse_nothing(NULL);
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.error, "");
  assert_string_equal(o.config.listen_host, "127.0.0.1");
  assert_int_equal(o.config.listen_port, 50051);
  assert_string_equal(o.config.admin_host, "127.0.0.1");
  assert_int_equal(o.config.admin_port, 9090);
  assert_int_equal(o.config.backend, USC_BACKEND_NATIVE);
  assert_string_equal(o.config.uapi_url, "");
  assert_int_equal(o.config.log_format, USC_LOG_TEXT);
  assert_int_equal(o.config.log_level, USC_LOG_INFO);
  assert_int_equal(o.config.max_recv_message_size, 4194304);
  assert_int_equal(o.config.max_calls, 100000);
  assert_int_equal(o.config.ring_ns, 0);
  assert_int_equal(o.config.shutdown_grace_ns, 10000000000LL);
  assert_int_equal(o.config.max_concurrent_streams, 1000);
}

static void test_no_arguments_at_all(void **state) {
  (void)state;
  usc_config_t config;
  char error[64];
  assert_int_equal(usc_config_parse(0, NULL, NULL, &config, error, 64),
                   USC_CONFIG_RUN);
  assert_int_equal(config.listen_port, 50051);
}

static void test_every_flag_separate_value(void **state) {
  (void)state;
  outcome_t o = PARSE("--listen", "0.0.0.0:7000", "--admin-listen",
                      "localhost:7001", "--backend", "uapi", "--uapi-url",
                      "https://pbx.example.com/uapi", "--log-format", "json",
                      "--log-level", "debug", "--max-recv-message-size", "1000",
                      "--max-calls", "5", "--ring-delay", "250",
                      "--shutdown-grace", "0", "--max-concurrent-streams", "7");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.config.listen_host, "0.0.0.0");
  assert_int_equal(o.config.listen_port, 7000);
  assert_string_equal(o.config.admin_host, "localhost");
  assert_int_equal(o.config.admin_port, 7001);
  assert_int_equal(o.config.backend, USC_BACKEND_UAPI);
  assert_string_equal(o.config.uapi_url, "https://pbx.example.com/uapi");
  assert_int_equal(o.config.log_format, USC_LOG_JSON);
  assert_int_equal(o.config.log_level, USC_LOG_DEBUG);
  assert_int_equal(o.config.max_recv_message_size, 1000);
  assert_int_equal(o.config.max_calls, 5);
  assert_int_equal(o.config.ring_ns, 250000000);
  assert_int_equal(o.config.shutdown_grace_ns, 0);
  assert_int_equal(o.config.max_concurrent_streams, 7);
}

static void test_every_flag_with_equals(void **state) {
  (void)state;
  outcome_t o = PARSE("--listen=0.0.0.0:7000", "--admin-listen=[::1]:7001",
                      "--backend=auto", "--uapi-url=http://10.0.0.1:8080",
                      "--log-format=text", "--log-level=error",
                      "--max-recv-message-size=2MiB", "--max-calls=1",
                      "--ring-delay=3600000", "--shutdown-grace=3600000",
                      "--max-concurrent-streams=2147483647");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.listen_port, 7000);
  assert_string_equal(o.config.admin_host, "::1");
  assert_int_equal(o.config.admin_port, 7001);
  assert_int_equal(o.config.backend, USC_BACKEND_AUTO);
  assert_string_equal(o.config.uapi_url, "http://10.0.0.1:8080");
  assert_int_equal(o.config.log_format, USC_LOG_TEXT);
  assert_int_equal(o.config.log_level, USC_LOG_ERROR);
  assert_int_equal(o.config.max_recv_message_size, 2 * 1024 * 1024);
  assert_int_equal(o.config.max_calls, 1);
  assert_int_equal(o.config.ring_ns, 3600000000000LL);
  assert_int_equal(o.config.shutdown_grace_ns, 3600000000000LL);
  assert_int_equal(o.config.max_concurrent_streams, 2147483647u);
}

static void test_value_may_contain_equals(void **state) {
  (void)state;
  outcome_t o = PARSE("--uapi-url=http://h/x?a=b");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.config.uapi_url, "http://h/x?a=b");
}

static void test_last_occurrence_wins(void **state) {
  (void)state;
  outcome_t o = PARSE("--max-calls", "3", "--max-calls=4");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.max_calls, 4);
}

static void test_environment(void **state) {
  (void)state;
  char *envp[] = {"PATH=/bin",
                  "UAPI_SIDECAR_LISTEN=127.0.0.1:0",
                  "UAPI_SIDECAR_UAPI_URL=https://u",
                  "UAPI_SIDECAR_LOG_FORMAT=json",
                  "UAPI_SIDECAR_MAX_RECV_MESSAGE_SIZE=64KiB",
                  "UAPI_SIDECAR_MAX_CONCURRENT_STREAMS=9",
                  NULL};
  outcome_t o = parse_nothing(envp);
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.listen_port, 0);
  assert_string_equal(o.config.uapi_url, "https://u");
  assert_int_equal(o.config.backend, USC_BACKEND_AUTO);
  assert_int_equal(o.config.log_format, USC_LOG_JSON);
  assert_int_equal(o.config.max_recv_message_size, 65536);
  assert_int_equal(o.config.max_concurrent_streams, 9);
}

static void test_command_line_beats_environment(void **state) {
  (void)state;
  char *envp[] = {"UAPI_SIDECAR_MAX_CALLS=7", "UAPI_SIDECAR_LOG_LEVEL=warn",
                  NULL};
  outcome_t o = PARSE_ENV(envp, "--max-calls", "8");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.max_calls, 8);
  assert_int_equal(o.config.log_level, USC_LOG_WARN);
}

static void test_overridden_bad_environment_is_ignored(void **state) {
  (void)state;
  char *envp[] = {"UAPI_SIDECAR_MAX_CALLS=lots", NULL};
  outcome_t o = PARSE_ENV(envp, "--max-calls=8");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.max_calls, 8);
}

static void test_environment_error_names_variable(void **state) {
  (void)state;
  char *envp[] = {"UAPI_SIDECAR_MAX_CALLS=abc", NULL};
  expect_error(parse_nothing(envp),
               "UAPI_SIDECAR_MAX_CALLS: 'abc' is not a positive integer");
}

static void test_empty_environment_counts_as_unset(void **state) {
  (void)state;
  char *envp[] = {"UAPI_SIDECAR_LISTEN=", "UAPI_SIDECAR_UAPI_URL=", NULL};
  outcome_t o = parse_nothing(envp);
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.listen_port, 50051);
  assert_int_equal(o.config.backend, USC_BACKEND_NATIVE);
}

/* Kubernetes adds UAPI_SIDECAR_PORT=tcp://... for a Service of that name. */
static void test_unknown_environment_is_ignored(void **state) {
  (void)state;
  char *envp[] = {"UAPI_SIDECAR_PORT=tcp://10.0.0.1:50051",
                  "UAPI_SIDECAR_LISTENER=x", "UAPI_SIDECAR_HELP=1",
                  "uapi_sidecar_listen=bad", NULL};
  outcome_t o = parse_nothing(envp);
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.listen_port, 50051);
}

static void test_first_environment_entry_wins(void **state) {
  (void)state;
  char *envp[] = {"UAPI_SIDECAR_MAX_CALLS=1", "UAPI_SIDECAR_MAX_CALLS=2", NULL};
  assert_int_equal(parse_nothing(envp).config.max_calls, 1);
}

static void test_help_and_version(void **state) {
  (void)state;
  assert_int_equal(PARSE("--help").result, USC_CONFIG_HELP);
  assert_int_equal(PARSE("-h").result, USC_CONFIG_HELP);
  assert_int_equal(PARSE("--version").result, USC_CONFIG_VERSION);
  assert_int_equal(PARSE("--max-calls=1", "--version", "--help").result,
                   USC_CONFIG_VERSION);
  /* Asking for help never fails on a bad value given with it. */
  assert_int_equal(PARSE("--max-calls=0", "--help").result, USC_CONFIG_HELP);
  expect_error(PARSE("--help=yes"), "--help takes no value");
  expect_error(PARSE("--version=1"), "--version takes no value");
}

static void test_unknown_flags_and_arguments(void **state) {
  (void)state;
  expect_error(PARSE("--foo"), "unknown flag --foo; see --help");
  expect_error(PARSE("--foo=bar"), "unknown flag --foo; see --help");
  expect_error(PARSE("-x"), "unknown flag -x; see --help");
  expect_error(PARSE("--Listen=1.2.3.4:5"),
               "unknown flag --Listen; see --help");
  expect_error(PARSE("serve"), "unexpected argument 'serve'; see --help");
  expect_error(PARSE("-"), "unexpected argument '-'; see --help");
  expect_error(PARSE("--"), "unexpected argument '--'; see --help");
  expect_error(PARSE("--listen", "1.2.3.4:5", "extra"),
               "unexpected argument 'extra'; see --help");
}

static void test_missing_value(void **state) {
  (void)state;
  expect_error(PARSE("--listen"), "--listen: missing value");
  expect_error(PARSE("--uapi-url", "--backend", "uapi"),
               "--uapi-url: missing value");
}

static void test_empty_value_on_command_line(void **state) {
  (void)state;
  expect_error(PARSE("--max-calls="), "--max-calls: '' is not a positive "
                                      "integer");
  expect_error(PARSE("--log-format", ""),
               "--log-format: '' is not one of text, json");
}

static void test_listen_addresses(void **state) {
  (void)state;
  outcome_t o = PARSE("--listen", "[::1]:0");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.config.listen_host, "::1");
  assert_int_equal(o.config.listen_port, 0);

  o = PARSE("--listen", "[fe80::1%eth0]:65535");
  assert_string_equal(o.config.listen_host, "fe80::1%eth0");
  assert_int_equal(o.config.listen_port, 65535);

  o = PARSE("--listen", "my-host.example_1:80");
  assert_string_equal(o.config.listen_host, "my-host.example_1");
}

static void test_listen_errors(void **state) {
  (void)state;
  expect_error(PARSE("--listen", "127.0.0.1"),
               "--listen: '127.0.0.1' is not HOST:PORT");
  expect_error(PARSE("--listen", "127.0.0.1:65536"),
               "--listen: '127.0.0.1:65536' does not end in a port 0..65535");
  expect_error(PARSE("--listen", "127.0.0.1:"),
               "--listen: '127.0.0.1:' does not end in a port 0..65535");
  expect_error(PARSE("--listen", "127.0.0.1:+5"),
               "--listen: '127.0.0.1:+5' does not end in a port 0..65535");
  expect_error(PARSE("--listen", "::1:50051"),
               "--listen: '::1:50051' needs brackets around an IPv6 host, "
               "e.g. [::1]:50051");
  expect_error(PARSE("--listen", ":50051"),
               "--listen: ':50051' has an invalid host");
  expect_error(PARSE("--listen", "a b:1"),
               "--listen: 'a b:1' has an invalid host");
  expect_error(PARSE("--listen", "[]:1"),
               "--listen: '[]:1' has an invalid host");
  expect_error(PARSE("--listen", "[1.2.3.4]:1"),
               "--listen: '[1.2.3.4]:1' has an invalid host");
  expect_error(PARSE("--listen", "[::1]"), "--listen: '[::1]' is not "
                                           "[IPV6]:PORT");
  expect_error(PARSE("--listen", "[::1]x:5"),
               "--listen: '[::1]x:5' is not [IPV6]:PORT");
  expect_error(PARSE("--admin-listen=x:y"),
               "--admin-listen: 'x:y' does not end in a port 0..65535");
}

static void test_listen_host_too_long(void **state) {
  (void)state;
  char value[300], expected[256];
  outcome_t o;
  memset(value, 'a', 256);
  strcpy(value + 256, ":1");
  o = PARSE("--listen", value);
  assert_int_equal(o.result, USC_CONFIG_ERROR);
  /* The value is shown shortened. */
  snprintf(expected, sizeof expected,
           "--listen: '%.76s...' has a host longer than 255 bytes", value);
  assert_string_equal(o.error, expected);

  value[255] = '\0';
  strcat(value, ":1");
  o = PARSE("--listen", value);
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(strlen(o.config.listen_host), 255);
}

static void test_same_address_twice(void **state) {
  (void)state;
  expect_error(PARSE("--admin-listen", "127.0.0.1:50051"),
               "--admin-listen: '127.0.0.1:50051' is the same address as "
               "--listen");
  expect_error(PARSE("--listen", "127.0.0.1:9090"),
               "--listen: '127.0.0.1:9090' is the same address as "
               "--admin-listen");
  assert_int_equal(
      PARSE("--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0").result,
      USC_CONFIG_RUN);
  assert_int_equal(PARSE("--listen", "0.0.0.0:9090").result, USC_CONFIG_RUN);
}

static void test_backend(void **state) {
  (void)state;
  outcome_t o = PARSE("--uapi-url", "http://x");
  assert_int_equal(o.config.backend, USC_BACKEND_AUTO);
  o = PARSE("--uapi-url", "http://x", "--backend", "native");
  assert_int_equal(o.config.backend, USC_BACKEND_NATIVE);
  o = PARSE("--backend", "NATIVE");
  assert_int_equal(o.config.backend, USC_BACKEND_NATIVE);
  expect_error(PARSE("--backend", "uapi"),
               "--backend: 'uapi' needs --uapi-url");
  expect_error(PARSE("--backend=auto"), "--backend: 'auto' needs --uapi-url");
  expect_error(PARSE("--backend", "grpc"),
               "--backend: 'grpc' is not one of native, uapi, auto");

  char *envp[] = {"UAPI_SIDECAR_BACKEND=uapi", NULL};
  expect_error(parse_nothing(envp),
               "UAPI_SIDECAR_BACKEND: 'uapi' needs --uapi-url");
}

static void test_uapi_url_errors(void **state) {
  (void)state;
  char value[1100];
  expect_error(PARSE("--uapi-url", "ftp://x"),
               "--uapi-url: 'ftp://x' does not start with http:// or "
               "https://");
  expect_error(PARSE("--uapi-url", "pbx.example.com"),
               "--uapi-url: 'pbx.example.com' does not start with http:// "
               "or https://");
  expect_error(PARSE("--uapi-url", "http://"),
               "--uapi-url: 'http://' has no host");
  expect_error(PARSE("--uapi-url", "https:///x"),
               "--uapi-url: 'https:///x' has no host");
  expect_error(PARSE("--uapi-url", "http://a b"),
               "--uapi-url: 'http://a b' contains spaces or control "
               "characters");
  expect_error(PARSE("--uapi-url", "http://a\nb"),
               "--uapi-url: 'http://a?b' contains spaces or control "
               "characters");

  strcpy(value, "http://");
  memset(value + 7, 'h', 1016);
  value[1023] = '\0';
  assert_int_equal(PARSE("--uapi-url", value).result, USC_CONFIG_RUN);
  strcat(value, "h");
  outcome_t o = PARSE("--uapi-url", value);
  assert_int_equal(o.result, USC_CONFIG_ERROR);
  assert_non_null(strstr(o.error, "' is longer than 1023 bytes"));
}

static void test_log_format_and_level(void **state) {
  (void)state;
  assert_int_equal(PARSE("--log-format", "JSON").config.log_format,
                   USC_LOG_JSON);
  assert_int_equal(PARSE("--log-level", "warn").config.log_level, USC_LOG_WARN);
  assert_int_equal(PARSE("--log-level", "Info").config.log_level, USC_LOG_INFO);
  expect_error(PARSE("--log-format", "xml"),
               "--log-format: 'xml' is not one of text, json");
  expect_error(PARSE("--log-level", "trace"),
               "--log-level: 'trace' is not one of debug, info, warn, error");
}

static void test_message_size(void **state) {
  (void)state;
  assert_int_equal(
      PARSE("--max-recv-message-size=1").config.max_recv_message_size, 1);
  assert_int_equal(
      PARSE("--max-recv-message-size=4KiB").config.max_recv_message_size, 4096);
  assert_int_equal(
      PARSE("--max-recv-message-size=2047MiB").config.max_recv_message_size,
      2047u * 1024 * 1024);
  assert_int_equal(
      PARSE("--max-recv-message-size=2147483647").config.max_recv_message_size,
      2147483647u);
}

static void test_message_size_errors(void **state) {
  (void)state;
  const char *bad_size = "' is not a size in bytes (digits, optionally "
                         "followed by KiB or MiB)";
  const char *bad[] = {"abc", "-1", "1.5MiB", "4 KiB", "KiB", "4KB", "", "4k"};
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    char expected[200];
    snprintf(expected, sizeof expected, "--max-recv-message-size: '%s%s",
             bad[i], bad_size);
    expect_error(PARSE("--max-recv-message-size", (char *)bad[i]), expected);
  }
  expect_error(PARSE("--max-recv-message-size", "0"),
               "--max-recv-message-size: '0' is not a positive integer");
  expect_error(PARSE("--max-recv-message-size", "0KiB"),
               "--max-recv-message-size: '0KiB' is not a positive integer");
  expect_error(PARSE("--max-recv-message-size", "2147483648"),
               "--max-recv-message-size: '2147483648' is not in "
               "1..2147483647");
  expect_error(PARSE("--max-recv-message-size", "2048MiB"),
               "--max-recv-message-size: '2048MiB' is not in 1..2147483647");
  expect_error(PARSE("--max-recv-message-size", "99999999999999999999999KiB"),
               "--max-recv-message-size: '99999999999999999999999KiB' is not "
               "in 1..2147483647");
}

static void test_integer_errors(void **state) {
  (void)state;
  expect_error(PARSE("--max-calls", "abc"),
               "--max-calls: 'abc' is not a positive integer");
  expect_error(PARSE("--max-calls", "0"),
               "--max-calls: '0' is not a positive integer");
  expect_error(PARSE("--max-calls", " 5"),
               "--max-calls: ' 5' is not a positive integer");
  expect_error(PARSE("--max-calls", "+5"),
               "--max-calls: '+5' is not a positive integer");
  expect_error(PARSE("--max-calls", "0x10"),
               "--max-calls: '0x10' is not a positive integer");
  expect_error(PARSE("--max-calls", "99999999999999999999999"),
               "--max-calls: '99999999999999999999999' is not in "
               "1..2147483647");
  expect_error(PARSE("--ring-delay", "-1"),
               "--ring-delay: '-1' is not a non-negative integer");
  expect_error(PARSE("--ring-delay", "3600001"),
               "--ring-delay: '3600001' is not in 0..3600000");
  expect_error(PARSE("--shutdown-grace", "1s"),
               "--shutdown-grace: '1s' is not a non-negative integer");
  expect_error(PARSE("--max-concurrent-streams", "0"),
               "--max-concurrent-streams: '0' is not a positive integer");
  expect_error(PARSE("--max-concurrent-streams", "2147483648"),
               "--max-concurrent-streams: '2147483648' is not in "
               "1..2147483647");
}

static void test_error_shows_control_characters_safely(void **state) {
  (void)state;
  expect_error(PARSE("--log-level", "info\n\x1b[31m"),
               "--log-level: 'info??[31m' is not one of debug, info, warn, "
               "error");
  expect_error(PARSE("--x\ny"), "unknown flag --x?y; see --help");
}

static void test_config_untouched_on_error(void **state) {
  (void)state;
  usc_config_t config;
  char *argv[] = {"uapi-sidecar", "--max-calls=9", "--ring-delay=x"};
  char error[128];
  memset(&config, 0xab, sizeof config);
  assert_int_equal(
      usc_config_parse(3, argv, NULL, &config, error, sizeof error),
      USC_CONFIG_ERROR);
  for (size_t i = 0; i < sizeof config; i++)
    assert_int_equal(((unsigned char *)&config)[i], 0xab);
}

static void test_small_error_buffer(void **state) {
  (void)state;
  usc_config_t config;
  char *argv[] = {"uapi-sidecar", "--max-calls=abc"};
  char error[8];
  assert_int_equal(
      usc_config_parse(2, argv, NULL, &config, error, sizeof error),
      USC_CONFIG_ERROR);
  assert_string_equal(error, "--max-c");
  assert_int_equal(usc_config_parse(2, argv, NULL, &config, NULL, 0),
                   USC_CONFIG_ERROR);
}

static void test_connection_flags_defaults(void **state) {
  (void)state;
  outcome_t o = parse_nothing(NULL);
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.max_connections, 1000);
  assert_int_equal(o.config.max_header_list_size, 16384);
  assert_int_equal(o.config.max_connection_idle_ns, 0);
  assert_int_equal(o.config.max_connection_age_ns, 0);
  assert_int_equal(o.config.max_connection_age_grace_ns, 0);
  assert_int_equal(o.config.keepalive_time_ns, 7200000000000LL);
  assert_int_equal(o.config.keepalive_timeout_ns, 20000000000LL);
  assert_int_equal(o.config.keepalive_min_time_ns, 300000000000LL);
  assert_false(o.config.keepalive_permit_without_calls);
}

static void test_connection_flags(void **state) {
  (void)state;
  outcome_t o =
      PARSE("--max-connections", "0", "--max-header-list-size", "32KiB",
            "--max-connection-idle=1500", "--max-connection-age", "2592000000",
            "--max-connection-age-grace=250", "--keepalive-time=0",
            "--keepalive-timeout", "1", "--keepalive-min-time=10",
            "--keepalive-permit-without-calls", "true");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.max_connections, 0);
  assert_int_equal(o.config.max_header_list_size, 32768);
  assert_int_equal(o.config.max_connection_idle_ns, 1500000000LL);
  assert_int_equal(o.config.max_connection_age_ns, 2592000000000000LL);
  assert_int_equal(o.config.max_connection_age_grace_ns, 250000000LL);
  assert_int_equal(o.config.keepalive_time_ns, 0);
  assert_int_equal(o.config.keepalive_timeout_ns, 1000000LL);
  assert_int_equal(o.config.keepalive_min_time_ns, 10000000LL);
  assert_true(o.config.keepalive_permit_without_calls);

  char *envp[] = {"UAPI_SIDECAR_MAX_CONNECTIONS=7",
                  "UAPI_SIDECAR_MAX_HEADER_LIST_SIZE=1024",
                  "UAPI_SIDECAR_MAX_CONNECTION_IDLE=5",
                  "UAPI_SIDECAR_MAX_CONNECTION_AGE=6",
                  "UAPI_SIDECAR_MAX_CONNECTION_AGE_GRACE=7",
                  "UAPI_SIDECAR_KEEPALIVE_TIME=8",
                  "UAPI_SIDECAR_KEEPALIVE_TIMEOUT=9",
                  "UAPI_SIDECAR_KEEPALIVE_MIN_TIME=10",
                  "UAPI_SIDECAR_KEEPALIVE_PERMIT_WITHOUT_CALLS=true",
                  NULL};
  o = PARSE_ENV(envp, "--keepalive-time=11");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.max_connections, 7);
  assert_int_equal(o.config.max_header_list_size, 1024);
  assert_int_equal(o.config.max_connection_idle_ns, 5000000LL);
  assert_int_equal(o.config.max_connection_age_ns, 6000000LL);
  assert_int_equal(o.config.max_connection_age_grace_ns, 7000000LL);
  assert_int_equal(o.config.keepalive_time_ns, 11000000LL);
  assert_int_equal(o.config.keepalive_timeout_ns, 9000000LL);
  assert_int_equal(o.config.keepalive_min_time_ns, 10000000LL);
  assert_true(o.config.keepalive_permit_without_calls);
  o = PARSE_ENV(envp, "--keepalive-permit-without-calls=false");
  assert_false(o.config.keepalive_permit_without_calls);
}

static void test_connection_flag_errors(void **state) {
  (void)state;
  expect_error(PARSE("--max-connections=-1"),
               "--max-connections: '-1' is not a non-negative integer");
  expect_error(PARSE("--max-connections=2147483648"),
               "--max-connections: '2147483648' is not in 0..2147483647");
  expect_error(PARSE("--max-header-list-size=1023"),
               "--max-header-list-size: '1023' is not in 1024..16777216");
  expect_error(PARSE("--max-header-list-size=17MiB"),
               "--max-header-list-size: '17MiB' is not in 1024..16777216");
  expect_error(PARSE("--max-header-list-size=1k"),
               "--max-header-list-size: '1k' is not a size in bytes (digits, "
               "optionally followed by KiB or MiB)");
  expect_error(PARSE("--max-connection-idle=2592000001"),
               "--max-connection-idle: '2592000001' is not in 0..2592000000");
  expect_error(PARSE("--max-connection-age=1s"),
               "--max-connection-age: '1s' is not a non-negative integer");
  expect_error(PARSE("--keepalive-timeout=0"),
               "--keepalive-timeout: '0' is not a positive integer");
  expect_error(PARSE("--keepalive-permit-without-calls=yes"),
               "--keepalive-permit-without-calls: 'yes' is not true or false");
  char *envp[] = {"UAPI_SIDECAR_KEEPALIVE_MIN_TIME=x", NULL};
  expect_error(parse_nothing(envp),
               "UAPI_SIDECAR_KEEPALIVE_MIN_TIME: 'x' is not a non-negative "
               "integer");
}

static void test_usage_lists_every_flag(void **state) {
  (void)state;
  const char *usage = usc_config_usage();
  const char *expected[] = {
      "--listen HOST:PORT",
      "UAPI_SIDECAR_LISTEN, default 127.0.0.1:50051",
      "--admin-listen HOST:PORT",
      "UAPI_SIDECAR_ADMIN_LISTEN, default 127.0.0.1:9090",
      "--backend native|uapi|auto",
      "UAPI_SIDECAR_BACKEND, default native",
      "--uapi-url URL",
      "UAPI_SIDECAR_UAPI_URL, default none",
      "--log-format text|json",
      "UAPI_SIDECAR_LOG_FORMAT, default text",
      "--log-level debug|info|warn|error",
      "UAPI_SIDECAR_LOG_LEVEL, default info",
      "--max-recv-message-size BYTES",
      "UAPI_SIDECAR_MAX_RECV_MESSAGE_SIZE, default 4194304",
      "--max-calls N",
      "UAPI_SIDECAR_MAX_CALLS, default 100000",
      "--ring-delay MS",
      "UAPI_SIDECAR_RING_DELAY, default 0",
      "--shutdown-grace MS",
      "UAPI_SIDECAR_SHUTDOWN_GRACE, default 10000",
      "--max-concurrent-streams N",
      "UAPI_SIDECAR_MAX_CONCURRENT_STREAMS, default 1000",
      "--max-connections N",
      "UAPI_SIDECAR_MAX_CONNECTIONS, default 1000",
      "--max-header-list-size BYTES",
      "UAPI_SIDECAR_MAX_HEADER_LIST_SIZE, default 16384",
      "--max-connection-idle MS",
      "UAPI_SIDECAR_MAX_CONNECTION_IDLE, default 0",
      "--max-connection-age MS, --max-connection-age-grace MS",
      "UAPI_SIDECAR_MAX_CONNECTION_AGE, default 0",
      "UAPI_SIDECAR_MAX_CONNECTION_AGE_GRACE, default 0",
      "--keepalive-time MS, --keepalive-timeout MS",
      "UAPI_SIDECAR_KEEPALIVE_TIME, default 7200000",
      "UAPI_SIDECAR_KEEPALIVE_TIMEOUT, default 20000",
      "--keepalive-min-time MS",
      "UAPI_SIDECAR_KEEPALIVE_MIN_TIME, default 300000",
      "--state-file PATH",
      "UAPI_SIDECAR_STATE_FILE, default none",
      "--state-save-interval MS",
      "UAPI_SIDECAR_STATE_SAVE_INTERVAL, default 5000",
      "--keepalive-permit-without-calls true|false",
      "UAPI_SIDECAR_KEEPALIVE_PERMIT_WITHOUT_CALLS, default false",
      "-h, --help",
      "--version",
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(expected); i++)
    if (strstr(usage, expected[i]) == NULL)
      fail_msg("usage lacks \"%s\"", expected[i]);
}

static void test_usage_lines_fit_a_terminal(void **state) {
  (void)state;
  const char *line = usc_config_usage();
  while (*line != '\0') {
    size_t len = strcspn(line, "\n");
    assert_true(len <= 79);
    line += len + (line[len] == '\n');
  }
}

static void test_translation_defaults(void **state) {
  (void)state;
  outcome_t o = parse_nothing(NULL);
  assert_int_equal(o.config.upstream_timeout_ns, 10000000000LL);
  assert_int_equal(o.config.upstream_max_body, 8388608);
  assert_int_equal(o.config.upstream_max_requests, 256);
  assert_int_equal(o.config.breaker_failures, 5);
  assert_int_equal(o.config.breaker_open_ns, 5000000000LL);
  assert_int_equal(o.config.watch_poll_ns, 1000000000LL);
  assert_int_equal(o.config.rest_port, -1);
  assert_string_equal(o.config.uapi_token_file, "");
  assert_string_equal(o.config.state_file, "");
  assert_int_equal(o.config.state_save_interval_ns, 5000000000LL);
}

static void test_state_file_flags(void **state) {
  (void)state;
  outcome_t o = PARSE("--state-file", "/var/lib/usc/calls.state",
                      "--state-save-interval", "0");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.config.state_file, "/var/lib/usc/calls.state");
  assert_int_equal(o.config.state_save_interval_ns, 0);
  char *env[] = {"UAPI_SIDECAR_STATE_FILE=/data/calls",
                 "UAPI_SIDECAR_STATE_SAVE_INTERVAL=250", NULL};
  o = parse_nothing(env);
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.config.state_file, "/data/calls");
  assert_int_equal(o.config.state_save_interval_ns, 250000000);
  expect_error(PARSE("--state-save-interval", "3600001"),
               "--state-save-interval: '3600001' is not in 0..3600000");
  expect_error(PARSE("--state-save-interval", "5s"),
               "--state-save-interval: '5s' is not a non-negative integer");
}

static void test_translation_flags(void **state) {
  (void)state;
  outcome_t o =
      PARSE("--uapi-url", "https://pbx.example/", "--upstream-timeout", "250",
            "--upstream-max-body=4096", "--upstream-max-requests", "8",
            "--uapi-ca-file", "/etc/ca.pem", "--oauth-token-url",
            "https://pbx.example/oauth/token.php", "--oauth-client-id", "app",
            "--oauth-client-secret-file", "/run/secret", "--status-map-file",
            "/etc/map", "--breaker-failures", "3", "--breaker-open-ms", "100",
            "--watch-poll-interval", "50", "--rest-listen", "127.0.0.1:0");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_int_equal(o.config.backend, USC_BACKEND_AUTO);
  assert_int_equal(o.config.upstream_timeout_ns, 250000000);
  assert_int_equal(o.config.upstream_max_body, 4096);
  assert_int_equal(o.config.upstream_max_requests, 8);
  assert_string_equal(o.config.uapi_ca_file, "/etc/ca.pem");
  assert_string_equal(o.config.oauth_token_url,
                      "https://pbx.example/oauth/token.php");
  assert_string_equal(o.config.oauth_client_id, "app");
  assert_string_equal(o.config.oauth_client_secret_file, "/run/secret");
  assert_string_equal(o.config.status_map_file, "/etc/map");
  assert_int_equal(o.config.breaker_failures, 3);
  assert_int_equal(o.config.breaker_open_ns, 100000000);
  assert_int_equal(o.config.watch_poll_ns, 50000000);
  assert_string_equal(o.config.rest_host, "127.0.0.1");
  assert_int_equal(o.config.rest_port, 0);
}

static void test_translation_flag_errors(void **state) {
  (void)state;
  expect_error(PARSE("--upstream-timeout", "0"),
               "--upstream-timeout: '0' is not a positive integer");
  expect_error(PARSE("--watch-poll-interval", "5"),
               "--watch-poll-interval: '5' is not in 10..3600000");
  expect_error(PARSE("--oauth-token-url", "ftp://x"),
               "--oauth-token-url: 'ftp://x' does not start with http:// or "
               "https://");
  expect_error(PARSE("--oauth-token-url", "https://x/t"),
               "--oauth-token-url needs --oauth-client-id and "
               "--oauth-client-secret-file");
  expect_error(PARSE("--oauth-token-url", "https://x/t", "--oauth-client-id",
                     "a", "--oauth-client-secret-file", "/s",
                     "--uapi-token-file", "/t"),
               "--uapi-token-file and --oauth-token-url are two kinds of "
               "upstream credentials: give one");
}

static void test_tokens_file(void **state) {
  (void)state;
  assert_string_equal(parse_nothing(NULL).config.tokens_file, "");
  outcome_t o = PARSE("--tokens-file", "/etc/uapi/tokens");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.config.tokens_file, "/etc/uapi/tokens");
  char *envp[] = {"UAPI_SIDECAR_TOKENS_FILE=/run/tokens", NULL};
  assert_string_equal(parse_nothing(envp).config.tokens_file, "/run/tokens");
  assert_string_equal(PARSE_ENV(envp, "--tokens-file=/x").config.tokens_file,
                      "/x");
  const char *usage = usc_config_usage();
  assert_non_null(strstr(usage, "--tokens-file PATH"));
  assert_non_null(strstr(usage, "env UAPI_SIDECAR_TOKENS_FILE, default none"));
}

static void test_tls_flags(void **state) {
  (void)state;
  outcome_t o = parse_nothing(NULL);
  assert_string_equal(o.config.tls_cert_file, "");
  assert_string_equal(o.config.tls_key_file, "");
  assert_string_equal(o.config.tls_client_ca_file, "");
  assert_int_equal(o.config.tls_handshake_timeout_ns, 10000000000LL);
  o = PARSE("--tls-cert", "/etc/tls/tls.crt", "--tls-key=/etc/tls/tls.key",
            "--tls-client-ca", "/etc/tls/ca.crt", "--tls-handshake-timeout",
            "250");
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.config.tls_cert_file, "/etc/tls/tls.crt");
  assert_string_equal(o.config.tls_key_file, "/etc/tls/tls.key");
  assert_string_equal(o.config.tls_client_ca_file, "/etc/tls/ca.crt");
  assert_int_equal(o.config.tls_handshake_timeout_ns, 250000000);
  char *envp[] = {"UAPI_SIDECAR_TLS_CERT=/run/c.pem",
                  "UAPI_SIDECAR_TLS_KEY=/run/k.pem",
                  "UAPI_SIDECAR_TLS_HANDSHAKE_TIMEOUT=3000", NULL};
  o = parse_nothing(envp);
  assert_int_equal(o.result, USC_CONFIG_RUN);
  assert_string_equal(o.config.tls_cert_file, "/run/c.pem");
  assert_string_equal(o.config.tls_key_file, "/run/k.pem");
  assert_int_equal(o.config.tls_handshake_timeout_ns, 3000000000LL);
  const char *usage = usc_config_usage();
  assert_non_null(strstr(usage, "--tls-cert PATH, --tls-key PATH"));
  assert_non_null(strstr(usage, "--tls-client-ca PATH"));
  assert_non_null(
      strstr(usage, "env UAPI_SIDECAR_TLS_HANDSHAKE_TIMEOUT, default 10000"));
}

static void test_tls_flag_errors(void **state) {
  (void)state;
  const char *pair = "--tls-cert and --tls-key go together: give both for "
                     "TLS, or neither";
  expect_error(PARSE("--tls-cert", "/c.pem"), pair);
  expect_error(PARSE("--tls-key", "/k.pem"), pair);
  char *envp[] = {"UAPI_SIDECAR_TLS_KEY=/k.pem", NULL};
  expect_error(parse_nothing(envp), pair);
  expect_error(PARSE("--tls-client-ca", "/ca.pem"),
               "--tls-client-ca needs --tls-cert and --tls-key");
  expect_error(PARSE("--tls-handshake-timeout", "0"),
               "--tls-handshake-timeout: '0' is not a positive integer");
  expect_error(PARSE("--tls-handshake-timeout", "3600001"),
               "--tls-handshake-timeout: '3600001' is not in 1..3600000");
}

static void test_version(void **state) {
  (void)state;
  assert_string_equal(usc_config_version(), "uapi-sidecar 0.1.0");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_translation_defaults),
      cmocka_unit_test(test_translation_flags),
      cmocka_unit_test(test_translation_flag_errors),
      cmocka_unit_test(test_state_file_flags),
      cmocka_unit_test(test_no_arguments_at_all),
      cmocka_unit_test(test_tokens_file),
      cmocka_unit_test(test_tls_flags),
      cmocka_unit_test(test_tls_flag_errors),
      cmocka_unit_test(test_every_flag_separate_value),
      cmocka_unit_test(test_every_flag_with_equals),
      cmocka_unit_test(test_value_may_contain_equals),
      cmocka_unit_test(test_last_occurrence_wins),
      cmocka_unit_test(test_environment),
      cmocka_unit_test(test_command_line_beats_environment),
      cmocka_unit_test(test_overridden_bad_environment_is_ignored),
      cmocka_unit_test(test_environment_error_names_variable),
      cmocka_unit_test(test_empty_environment_counts_as_unset),
      cmocka_unit_test(test_unknown_environment_is_ignored),
      cmocka_unit_test(test_first_environment_entry_wins),
      cmocka_unit_test(test_help_and_version),
      cmocka_unit_test(test_unknown_flags_and_arguments),
      cmocka_unit_test(test_missing_value),
      cmocka_unit_test(test_empty_value_on_command_line),
      cmocka_unit_test(test_listen_addresses),
      cmocka_unit_test(test_listen_errors),
      cmocka_unit_test(test_listen_host_too_long),
      cmocka_unit_test(test_same_address_twice),
      cmocka_unit_test(test_backend),
      cmocka_unit_test(test_uapi_url_errors),
      cmocka_unit_test(test_log_format_and_level),
      cmocka_unit_test(test_message_size),
      cmocka_unit_test(test_message_size_errors),
      cmocka_unit_test(test_integer_errors),
      cmocka_unit_test(test_error_shows_control_characters_safely),
      cmocka_unit_test(test_config_untouched_on_error),
      cmocka_unit_test(test_small_error_buffer),
      cmocka_unit_test(test_connection_flags_defaults),
      cmocka_unit_test(test_connection_flags),
      cmocka_unit_test(test_connection_flag_errors),
      cmocka_unit_test(test_usage_lists_every_flag),
      cmocka_unit_test(test_usage_lines_fit_a_terminal),
      cmocka_unit_test(test_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
