#include "src/config/config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ENV_PREFIX "UAPI_SIDECAR_"
#define MS_MAX 3600000 /* an hour: the cap for every duration flag */
#define INT31_MAX 2147483647u
/* Connection lifetimes and keepalive may be long: up to 30 days. */
#define CONN_MS_MAX 2592000000u

/* Flags that take a value, in the order their values are checked. */
enum {
  F_LISTEN,
  F_ADMIN_LISTEN,
  F_BACKEND,
  F_UAPI_URL,
  F_LOG_FORMAT,
  F_LOG_LEVEL,
  F_MAX_RECV_MESSAGE_SIZE,
  F_MAX_CALLS,
  F_RING_DELAY,
  F_SHUTDOWN_GRACE,
  F_MAX_CONCURRENT_STREAMS,
  F_UPSTREAM_TIMEOUT,
  F_UPSTREAM_MAX_BODY,
  F_UPSTREAM_MAX_REQUESTS,
  F_UAPI_CA_FILE,
  F_UAPI_TOKEN_FILE,
  F_OAUTH_TOKEN_URL,
  F_OAUTH_CLIENT_ID,
  F_OAUTH_CLIENT_SECRET_FILE,
  F_STATUS_MAP_FILE,
  F_BREAKER_FAILURES,
  F_BREAKER_OPEN_MS,
  F_WATCH_POLL_INTERVAL,
  F_REST_LISTEN,
  F_MAX_CONNECTIONS,
  F_MAX_HEADER_LIST_SIZE,
  F_MAX_CONNECTION_IDLE,
  F_MAX_CONNECTION_AGE,
  F_MAX_CONNECTION_AGE_GRACE,
  F_KEEPALIVE_TIME,
  F_KEEPALIVE_TIMEOUT,
  F_KEEPALIVE_MIN_TIME,
  F_KEEPALIVE_PERMIT_WITHOUT_CALLS,
  F_TOKENS_FILE,
  F_STATE_FILE,
  F_STATE_SAVE_INTERVAL,
  F_TLS_CERT,
  F_TLS_KEY,
  F_TLS_CLIENT_CA,
  F_TLS_HANDSHAKE_TIMEOUT,
  F_COUNT,
};

/* Stores `value` into `config`, or writes why it is invalid (completing
 * "'<value>' ...") into `why` and returns false. */
typedef bool (*apply_fn)(const char *value, usc_config_t *config, char *why,
                         size_t why_cap);

typedef struct {
  const char *name; /* without the leading "--" */
  apply_fn apply;
} flag_t;

/* Where a flag's winning value came from: "--listen" or
 * "UAPI_SIDECAR_LISTEN", so errors name what the user actually set. */
typedef struct {
  const char *value; /* NULL when unset */
  char origin[48];
} setting_t;

static void set_why(char *why, size_t why_cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t why_cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, why_cap, fmt, ap);
  va_end(ap);
}

/* Parses a run of decimal digits with nothing before or after them
 * (strtoull would accept spaces, signs and "0x"). */
static bool parse_digits(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  if (len == 0)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

static bool check_range(uint64_t v, uint64_t min, uint64_t max, char *why,
                        size_t why_cap) {
  if (v < min && min == 1) {
    set_why(why, why_cap, "is not a positive integer");
    return false;
  }
  if (v < min || v > max) {
    set_why(why, why_cap, "is not in %" PRIu64 "..%" PRIu64, min, max);
    return false;
  }
  return true;
}

static bool parse_uint(const char *value, uint64_t min, uint64_t max,
                       uint64_t *out, char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_digits(value, strlen(value), &v)) {
    /* All digits but too many of them is a range problem, not a typo. */
    if (value[0] != '\0' && strspn(value, "0123456789") == strlen(value))
      set_why(why, why_cap, "is not in %" PRIu64 "..%" PRIu64, min, max);
    else
      set_why(why, why_cap, "is not a %s integer",
              min >= 1 ? "positive" : "non-negative");
    return false;
  }
  if (!check_range(v, min, max, why, why_cap))
    return false;
  *out = v;
  return true;
}

/* Hosts are names or IPv4 literals; IPv6 literals come in brackets. */
static bool valid_host(const char *host, size_t len, bool bracketed) {
  const char *extra = bracketed ? ":.%-_" : ".-_";
  if (len == 0)
    return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)host[i];
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                 (c >= 'A' && c <= 'Z');
    if (!alnum && strchr(extra, c) == NULL)
      return false;
  }
  return !bracketed || memchr(host, ':', len) != NULL;
}

/* Splits HOST:PORT or [IPV6]:PORT; the host is stored without brackets so
 * it can go straight to getaddrinfo. */
static bool parse_address(const char *value, char *host, size_t host_cap,
                          int *port, char *why, size_t why_cap) {
  const char *colon = strrchr(value, ':');
  const char *h = value;
  size_t hlen;
  bool bracketed = value[0] == '[';
  uint64_t p;

  if (colon == NULL) {
    set_why(why, why_cap, "is not HOST:PORT");
    return false;
  }
  hlen = (size_t)(colon - value);
  if (bracketed) {
    if (hlen < 2 || value[hlen - 1] != ']') {
      set_why(why, why_cap, "is not [IPV6]:PORT");
      return false;
    }
    h++;
    hlen -= 2;
  } else if (memchr(value, ':', hlen) != NULL) {
    set_why(why, why_cap,
            "needs brackets around an IPv6 host, e.g. "
            "[::1]:50051");
    return false;
  }
  if (hlen >= host_cap) {
    set_why(why, why_cap, "has a host longer than %zu bytes", host_cap - 1);
    return false;
  }
  if (!valid_host(h, hlen, bracketed)) {
    set_why(why, why_cap, "has an invalid host");
    return false;
  }
  if (!parse_digits(colon + 1, strlen(colon + 1), &p) || p > 65535) {
    set_why(why, why_cap, "does not end in a port 0..65535");
    return false;
  }
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  *port = (int)p;
  return true;
}

static bool apply_listen(const char *value, usc_config_t *config, char *why,
                         size_t why_cap) {
  return parse_address(value, config->listen_host, sizeof config->listen_host,
                       &config->listen_port, why, why_cap);
}

static bool apply_admin_listen(const char *value, usc_config_t *config,
                               char *why, size_t why_cap) {
  return parse_address(value, config->admin_host, sizeof config->admin_host,
                       &config->admin_port, why, why_cap);
}

/* Finds `value` (case-insensitively) in a NULL-terminated list. */
static int lookup(const char *value, const char *const names[]) {
  for (int i = 0; names[i] != NULL; i++)
    if (strcasecmp(value, names[i]) == 0)
      return i;
  return -1;
}

static bool apply_backend(const char *value, usc_config_t *config, char *why,
                          size_t why_cap) {
  static const char *const names[] = {"native", "uapi", "auto", NULL};
  int i = lookup(value, names);
  if (i < 0) {
    set_why(why, why_cap, "is not one of native, uapi, auto");
    return false;
  }
  config->backend = (usc_backend_t)i;
  return true;
}

static bool check_url(const char *value, size_t cap, char *why,
                      size_t why_cap) {
  size_t len = strlen(value);
  size_t scheme;
  if (strncasecmp(value, "http://", 7) == 0)
    scheme = 7;
  else if (strncasecmp(value, "https://", 8) == 0)
    scheme = 8;
  else {
    set_why(why, why_cap, "does not start with http:// or https://");
    return false;
  }
  if (len >= cap) {
    set_why(why, why_cap, "is longer than %zu bytes", cap - 1);
    return false;
  }
  if (value[scheme] == '\0' || value[scheme] == '/') {
    set_why(why, why_cap, "has no host");
    return false;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c <= ' ' || c == 0x7f) {
      set_why(why, why_cap, "contains spaces or control characters");
      return false;
    }
  }
  return true;
}

static bool apply_uapi_url(const char *value, usc_config_t *config, char *why,
                           size_t why_cap) {
  if (!check_url(value, sizeof config->uapi_url, why, why_cap))
    return false;
  strcpy(config->uapi_url, value);
  return true;
}

static bool apply_oauth_token_url(const char *value, usc_config_t *config,
                                  char *why, size_t why_cap) {
  if (!check_url(value, sizeof config->oauth_token_url, why, why_cap))
    return false;
  strcpy(config->oauth_token_url, value);
  return true;
}

/* A string flag stored as given; only its length is checked. */
static bool copy_text(const char *value, char *out, size_t cap, char *why,
                      size_t why_cap) {
  size_t len = strlen(value);
  if (len >= cap) {
    set_why(why, why_cap, "is longer than %zu bytes", cap - 1);
    return false;
  }
  memcpy(out, value, len + 1);
  return true;
}

#define TEXT_FLAG(fn, field)                                                   \
  static bool fn(const char *value, usc_config_t *config, char *why,           \
                 size_t why_cap) {                                             \
    return copy_text(value, config->field, sizeof config->field, why,          \
                     why_cap);                                                 \
  }

TEXT_FLAG(apply_uapi_ca_file, uapi_ca_file)
TEXT_FLAG(apply_uapi_token_file, uapi_token_file)
TEXT_FLAG(apply_oauth_client_id, oauth_client_id)
TEXT_FLAG(apply_oauth_client_secret_file, oauth_client_secret_file)
TEXT_FLAG(apply_status_map_file, status_map_file)
TEXT_FLAG(apply_tokens_file, tokens_file)
TEXT_FLAG(apply_state_file, state_file)
TEXT_FLAG(apply_tls_cert, tls_cert_file)
TEXT_FLAG(apply_tls_key, tls_key_file)
TEXT_FLAG(apply_tls_client_ca, tls_client_ca_file)

static bool apply_log_format(const char *value, usc_config_t *config, char *why,
                             size_t why_cap) {
  static const char *const names[] = {"text", "json", NULL};
  int i = lookup(value, names);
  if (i < 0) {
    set_why(why, why_cap, "is not one of text, json");
    return false;
  }
  config->log_format = (usc_log_format_t)i;
  return true;
}

static bool apply_log_level(const char *value, usc_config_t *config, char *why,
                            size_t why_cap) {
  static const char *const names[] = {"debug", "info", "warn", "error", NULL};
  int i = lookup(value, names);
  if (i < 0) {
    set_why(why, why_cap, "is not one of debug, info, warn, error");
    return false;
  }
  config->log_level = (usc_log_level_t)i;
  return true;
}

/* Bytes, or a number of KiB or MiB, in min..max. */
static bool parse_size(const char *value, uint64_t min, uint64_t max,
                       uint64_t *out, char *why, size_t why_cap) {
  size_t digits = strspn(value, "0123456789");
  const char *suffix = value + digits;
  uint64_t unit = 1, v;

  if (strcasecmp(suffix, "KiB") == 0)
    unit = 1024;
  else if (strcasecmp(suffix, "MiB") == 0)
    unit = 1024 * 1024;
  else if (*suffix != '\0')
    digits = 0;
  if (digits == 0) {
    set_why(why, why_cap,
            "is not a size in bytes (digits, optionally "
            "followed by KiB or MiB)");
    return false;
  }
  if (!parse_digits(value, digits, &v) || v > max / unit)
    v = max / unit + 1;
  if (!check_range(v * unit, min, max, why, why_cap))
    return false;
  *out = v * unit;
  return true;
}

static bool apply_max_header_list_size(const char *value, usc_config_t *config,
                                       char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_size(value, 1024, 16 * 1024 * 1024, &v, why, why_cap))
    return false;
  config->max_header_list_size = (uint32_t)v;
  return true;
}

static bool apply_max_connections(const char *value, usc_config_t *config,
                                  char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 0, INT31_MAX, &v, why, why_cap))
    return false;
  config->max_connections = (size_t)v;
  return true;
}

/* A connection duration: min..CONN_MS_MAX milliseconds. */
static bool apply_conn_ms(const char *value, uint64_t min, int64_t *ns,
                          char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, min, CONN_MS_MAX, &v, why, why_cap))
    return false;
  *ns = (int64_t)v * 1000000;
  return true;
}

#define CONN_MS_FLAG(fn, field, min)                                           \
  static bool fn(const char *value, usc_config_t *config, char *why,           \
                 size_t why_cap) {                                             \
    return apply_conn_ms(value, min, &config->field, why, why_cap);            \
  }

CONN_MS_FLAG(apply_max_connection_idle, max_connection_idle_ns, 0)
CONN_MS_FLAG(apply_max_connection_age, max_connection_age_ns, 0)
CONN_MS_FLAG(apply_max_connection_age_grace, max_connection_age_grace_ns, 0)
CONN_MS_FLAG(apply_keepalive_time, keepalive_time_ns, 0)
CONN_MS_FLAG(apply_keepalive_timeout, keepalive_timeout_ns, 1)
CONN_MS_FLAG(apply_keepalive_min_time, keepalive_min_time_ns, 0)

static bool apply_keepalive_permit_without_calls(const char *value,
                                                 usc_config_t *config,
                                                 char *why, size_t why_cap) {
  if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
    set_why(why, why_cap, "is not true or false");
    return false;
  }
  config->keepalive_permit_without_calls = value[0] == 't';
  return true;
}

static bool apply_max_recv_message_size(const char *value, usc_config_t *config,
                                        char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_size(value, 1, INT31_MAX, &v, why, why_cap))
    return false;
  config->max_recv_message_size = (size_t)v;
  return true;
}

static bool apply_max_calls(const char *value, usc_config_t *config, char *why,
                            size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 1, INT31_MAX, &v, why, why_cap))
    return false;
  config->max_calls = (size_t)v;
  return true;
}

static bool apply_ms(const char *value, int64_t *ns, char *why,
                     size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 0, MS_MAX, &v, why, why_cap))
    return false;
  *ns = (int64_t)v * 1000000;
  return true;
}

static bool apply_ring_delay(const char *value, usc_config_t *config, char *why,
                             size_t why_cap) {
  return apply_ms(value, &config->ring_ns, why, why_cap);
}

static bool apply_shutdown_grace(const char *value, usc_config_t *config,
                                 char *why, size_t why_cap) {
  return apply_ms(value, &config->shutdown_grace_ns, why, why_cap);
}

static bool apply_upstream_timeout(const char *value, usc_config_t *config,
                                   char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 1, MS_MAX, &v, why, why_cap))
    return false;
  config->upstream_timeout_ns = (int64_t)v * 1000000;
  return true;
}

static bool apply_upstream_max_body(const char *value, usc_config_t *config,
                                    char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 1, INT31_MAX, &v, why, why_cap))
    return false;
  config->upstream_max_body = (size_t)v;
  return true;
}

static bool apply_upstream_max_requests(const char *value, usc_config_t *config,
                                        char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 1, 65536, &v, why, why_cap))
    return false;
  config->upstream_max_requests = (uint32_t)v;
  return true;
}

static bool apply_breaker_failures(const char *value, usc_config_t *config,
                                   char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 1, 1000000, &v, why, why_cap))
    return false;
  config->breaker_failures = (uint32_t)v;
  return true;
}

static bool apply_state_save_interval(const char *value, usc_config_t *config,
                                      char *why, size_t why_cap) {
  return apply_ms(value, &config->state_save_interval_ns, why, why_cap);
}

static bool apply_breaker_open_ms(const char *value, usc_config_t *config,
                                  char *why, size_t why_cap) {
  return apply_ms(value, &config->breaker_open_ns, why, why_cap);
}

static bool apply_watch_poll_interval(const char *value, usc_config_t *config,
                                      char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 10, MS_MAX, &v, why, why_cap))
    return false;
  config->watch_poll_ns = (int64_t)v * 1000000;
  return true;
}

static bool apply_tls_handshake_timeout(const char *value, usc_config_t *config,
                                        char *why, size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 1, MS_MAX, &v, why, why_cap))
    return false;
  config->tls_handshake_timeout_ns = (int64_t)v * 1000000;
  return true;
}

static bool apply_rest_listen(const char *value, usc_config_t *config,
                              char *why, size_t why_cap) {
  return parse_address(value, config->rest_host, sizeof config->rest_host,
                       &config->rest_port, why, why_cap);
}

static bool apply_max_concurrent_streams(const char *value,
                                         usc_config_t *config, char *why,
                                         size_t why_cap) {
  uint64_t v;
  if (!parse_uint(value, 1, INT31_MAX, &v, why, why_cap))
    return false;
  config->max_concurrent_streams = (uint32_t)v;
  return true;
}

static const flag_t flags[F_COUNT] = {
    [F_LISTEN] = {"listen", apply_listen},
    [F_ADMIN_LISTEN] = {"admin-listen", apply_admin_listen},
    [F_BACKEND] = {"backend", apply_backend},
    [F_UAPI_URL] = {"uapi-url", apply_uapi_url},
    [F_LOG_FORMAT] = {"log-format", apply_log_format},
    [F_LOG_LEVEL] = {"log-level", apply_log_level},
    [F_MAX_RECV_MESSAGE_SIZE] = {"max-recv-message-size",
                                 apply_max_recv_message_size},
    [F_MAX_CALLS] = {"max-calls", apply_max_calls},
    [F_RING_DELAY] = {"ring-delay", apply_ring_delay},
    [F_SHUTDOWN_GRACE] = {"shutdown-grace", apply_shutdown_grace},
    [F_MAX_CONCURRENT_STREAMS] = {"max-concurrent-streams",
                                  apply_max_concurrent_streams},
    [F_UPSTREAM_TIMEOUT] = {"upstream-timeout", apply_upstream_timeout},
    [F_UPSTREAM_MAX_BODY] = {"upstream-max-body", apply_upstream_max_body},
    [F_UPSTREAM_MAX_REQUESTS] = {"upstream-max-requests",
                                 apply_upstream_max_requests},
    [F_UAPI_CA_FILE] = {"uapi-ca-file", apply_uapi_ca_file},
    [F_UAPI_TOKEN_FILE] = {"uapi-token-file", apply_uapi_token_file},
    [F_OAUTH_TOKEN_URL] = {"oauth-token-url", apply_oauth_token_url},
    [F_OAUTH_CLIENT_ID] = {"oauth-client-id", apply_oauth_client_id},
    [F_OAUTH_CLIENT_SECRET_FILE] = {"oauth-client-secret-file",
                                    apply_oauth_client_secret_file},
    [F_STATUS_MAP_FILE] = {"status-map-file", apply_status_map_file},
    [F_BREAKER_FAILURES] = {"breaker-failures", apply_breaker_failures},
    [F_BREAKER_OPEN_MS] = {"breaker-open-ms", apply_breaker_open_ms},
    [F_WATCH_POLL_INTERVAL] = {"watch-poll-interval",
                               apply_watch_poll_interval},
    [F_REST_LISTEN] = {"rest-listen", apply_rest_listen},
    [F_MAX_CONNECTIONS] = {"max-connections", apply_max_connections},
    [F_MAX_HEADER_LIST_SIZE] = {"max-header-list-size",
                                apply_max_header_list_size},
    [F_MAX_CONNECTION_IDLE] = {"max-connection-idle",
                               apply_max_connection_idle},
    [F_MAX_CONNECTION_AGE] = {"max-connection-age", apply_max_connection_age},
    [F_MAX_CONNECTION_AGE_GRACE] = {"max-connection-age-grace",
                                    apply_max_connection_age_grace},
    [F_KEEPALIVE_TIME] = {"keepalive-time", apply_keepalive_time},
    [F_KEEPALIVE_TIMEOUT] = {"keepalive-timeout", apply_keepalive_timeout},
    [F_KEEPALIVE_MIN_TIME] = {"keepalive-min-time", apply_keepalive_min_time},
    [F_KEEPALIVE_PERMIT_WITHOUT_CALLS] = {"keepalive-permit-without-calls",
                                          apply_keepalive_permit_without_calls},
    [F_TOKENS_FILE] = {"tokens-file", apply_tokens_file},
    [F_STATE_FILE] = {"state-file", apply_state_file},
    [F_STATE_SAVE_INTERVAL] = {"state-save-interval",
                               apply_state_save_interval},
    [F_TLS_CERT] = {"tls-cert", apply_tls_cert},
    [F_TLS_KEY] = {"tls-key", apply_tls_key},
    [F_TLS_CLIENT_CA] = {"tls-client-ca", apply_tls_client_ca},
    [F_TLS_HANDSHAKE_TIMEOUT] = {"tls-handshake-timeout",
                                 apply_tls_handshake_timeout},
};

static void set_defaults(usc_config_t *config) {
  memset(config, 0, sizeof *config);
  strcpy(config->listen_host, "127.0.0.1");
  config->listen_port = 50051;
  strcpy(config->admin_host, "127.0.0.1");
  config->admin_port = 9090;
  config->backend = USC_BACKEND_NATIVE;
  config->log_format = USC_LOG_TEXT;
  config->log_level = USC_LOG_INFO;
  config->max_recv_message_size = 4 * 1024 * 1024;
  config->max_calls = 100000;
  config->ring_ns = 0;
  config->shutdown_grace_ns = 10000 * (int64_t)1000000;
  config->max_concurrent_streams = 1000;
  config->upstream_timeout_ns = 10000 * (int64_t)1000000;
  config->upstream_max_body = 8 * 1024 * 1024;
  config->upstream_max_requests = 256;
  config->breaker_failures = 5;
  config->breaker_open_ns = 5000 * (int64_t)1000000;
  config->watch_poll_ns = 1000 * (int64_t)1000000;
  config->rest_port = -1;
  config->max_connections = 1000;
  config->max_header_list_size = 16 * 1024;
  config->keepalive_time_ns = 7200000 * (int64_t)1000000;
  config->keepalive_timeout_ns = 20000 * (int64_t)1000000;
  config->keepalive_min_time_ns = 300000 * (int64_t)1000000;
  config->state_save_interval_ns = 5000 * (int64_t)1000000;
  config->tls_handshake_timeout_ns = 10000 * (int64_t)1000000;
}

static void fail(char *error, size_t error_cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(char *error, size_t error_cap, const char *fmt, ...) {
  va_list ap;
  if (error == NULL || error_cap == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(error, error_cap, fmt, ap);
  va_end(ap);
}

/* Copies a user-supplied value for an error message: bounded, and with
 * control characters replaced so the message stays one printable line. */
static void quote(const char *value, char *out, size_t cap) {
  size_t n = 0;
  const size_t shown = cap - 4; /* room for "..." and NUL */
  for (; value[n] != '\0' && n < shown; n++) {
    unsigned char c = (unsigned char)value[n];
    out[n] = c < ' ' || c == 0x7f ? '?' : (char)c;
  }
  strcpy(out + n, value[n] != '\0' ? "..." : "");
}

/* The flag whose name is the first `len` bytes of `name`, or -1. */
static int find_flag(const char *name, size_t len) {
  for (int i = 0; i < F_COUNT; i++)
    if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
      return i;
  return -1;
}

/* By hand rather than toupper(), which follows the locale. */
static char env_char(char c) {
  if (c == '-')
    return '_';
  return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* "UAPI_SIDECAR_" followed by the flag name upper-cased, '-' as '_'. */
static void env_name(const char *flag, char *out, size_t cap) {
  size_t n = strlen(ENV_PREFIX);
  memcpy(out, ENV_PREFIX, n);
  for (; *flag != '\0' && n + 1 < cap; flag++)
    out[n++] = env_char(*flag);
  out[n] = '\0';
}

/* Takes values from the environment. Unknown UAPI_SIDECAR_* variables are
 * ignored: Kubernetes injects UAPI_SIDECAR_PORT and friends for a Service
 * of that name. Empty values count as unset, as with an unset shell
 * variable in a compose file. */
static void read_env(char *const envp[], setting_t settings[F_COUNT]) {
  if (envp == NULL)
    return;
  for (int f = 0; f < F_COUNT; f++) {
    char name[sizeof settings[f].origin];
    size_t len;
    env_name(flags[f].name, name, sizeof name);
    len = strlen(name);
    for (char *const *e = envp; *e != NULL; e++) {
      if (strncmp(*e, name, len) != 0 || (*e)[len] != '=')
        continue;
      if ((*e)[len + 1] != '\0') {
        settings[f].value = *e + len + 1;
        strcpy(settings[f].origin, name);
      }
      break; /* the first entry wins, as with getenv */
    }
  }
}

/* Handles one "--name[=value]" argument at argv[*i], advancing *i past a
 * separate value. */
static usc_config_result_t read_flag(int argc, char *const argv[], int *i,
                                     setting_t settings[F_COUNT], char *error,
                                     size_t error_cap) {
  const char *name = argv[*i] + 2;
  const char *eq = strchr(name, '=');
  size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
  int f = find_flag(name, len);
  char shown[80];

  if (f < 0) {
    bool help = len == 4 && strncmp(name, "help", 4) == 0;
    if (help || (len == 7 && strncmp(name, "version", 7) == 0)) {
      fail(error, error_cap, "--%.*s takes no value", (int)len, name);
      return USC_CONFIG_ERROR;
    }
    quote(name, shown, sizeof shown);
    fail(error, error_cap, "unknown flag --%.*s; see --help",
         (int)strcspn(shown, "="), shown);
    return USC_CONFIG_ERROR;
  }
  if (eq != NULL) {
    settings[f].value = eq + 1;
  } else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
    settings[f].value = argv[++*i];
  } else {
    fail(error, error_cap, "--%s: missing value", flags[f].name);
    return USC_CONFIG_ERROR;
  }
  snprintf(settings[f].origin, sizeof settings[f].origin, "--%s",
           flags[f].name);
  return USC_CONFIG_RUN;
}

static usc_config_result_t read_args(int argc, char *const argv[],
                                     setting_t settings[F_COUNT], char *error,
                                     size_t error_cap) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    char shown[80];
    usc_config_result_t r;

    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
      return USC_CONFIG_HELP;
    if (strcmp(arg, "--version") == 0)
      return USC_CONFIG_VERSION;
    quote(arg, shown, sizeof shown);
    if (arg[0] != '-' || arg[1] == '\0' || strcmp(arg, "--") == 0) {
      fail(error, error_cap, "unexpected argument '%s'; see --help", shown);
      return USC_CONFIG_ERROR;
    }
    if (arg[1] != '-') {
      fail(error, error_cap, "unknown flag %s; see --help", shown);
      return USC_CONFIG_ERROR;
    }
    r = read_flag(argc, argv, &i, settings, error, error_cap);
    if (r != USC_CONFIG_RUN)
      return r;
  }
  return USC_CONFIG_RUN;
}

static usc_config_result_t apply_settings(const setting_t settings[F_COUNT],
                                          usc_config_t *config, char *error,
                                          size_t error_cap) {
  for (int f = 0; f < F_COUNT; f++) {
    char why[128], shown[80];
    if (settings[f].value == NULL)
      continue;
    if (!flags[f].apply(settings[f].value, config, why, sizeof why)) {
      quote(settings[f].value, shown, sizeof shown);
      fail(error, error_cap, "%s: '%s' %s", settings[f].origin, shown, why);
      return USC_CONFIG_ERROR;
    }
  }
  return USC_CONFIG_RUN;
}

/* Rules that involve more than one flag. */
static usc_config_result_t check_combined(const setting_t settings[F_COUNT],
                                          usc_config_t *config, char *error,
                                          size_t error_cap) {
  const setting_t *backend = &settings[F_BACKEND];
  /* Blame whichever address the user set; the defaults differ. */
  bool admin_set = settings[F_ADMIN_LISTEN].value != NULL;
  const setting_t *blame = &settings[admin_set ? F_ADMIN_LISTEN : F_LISTEN];
  char shown[80];

  if (backend->value == NULL)
    config->backend =
        config->uapi_url[0] != '\0' ? USC_BACKEND_AUTO : USC_BACKEND_NATIVE;
  else if (config->backend != USC_BACKEND_NATIVE &&
           config->uapi_url[0] == '\0') {
    quote(backend->value, shown, sizeof shown);
    fail(error, error_cap, "%s: '%s' needs --uapi-url", backend->origin, shown);
    return USC_CONFIG_ERROR;
  }
  if (config->oauth_token_url[0] != '\0' &&
      (config->oauth_client_id[0] == '\0' ||
       config->oauth_client_secret_file[0] == '\0')) {
    fail(error, error_cap,
         "--oauth-token-url needs --oauth-client-id and "
         "--oauth-client-secret-file");
    return USC_CONFIG_ERROR;
  }
  if (config->oauth_token_url[0] != '\0' && config->uapi_token_file[0]) {
    fail(error, error_cap,
         "--uapi-token-file and --oauth-token-url are two kinds of upstream "
         "credentials: give one");
    return USC_CONFIG_ERROR;
  }
  if ((config->tls_cert_file[0] == '\0') != (config->tls_key_file[0] == '\0')) {
    fail(error, error_cap,
         "--tls-cert and --tls-key go together: give both for TLS, or "
         "neither");
    return USC_CONFIG_ERROR;
  }
  if (config->tls_client_ca_file[0] != '\0' &&
      config->tls_cert_file[0] == '\0') {
    fail(error, error_cap, "--tls-client-ca needs --tls-cert and --tls-key");
    return USC_CONFIG_ERROR;
  }
  /* Port 0 picks a fresh port for each, so only fixed ports can clash. */
  if (config->admin_port != 0 && config->admin_port == config->listen_port &&
      strcmp(config->admin_host, config->listen_host) == 0) {
    quote(blame->value, shown, sizeof shown);
    fail(error, error_cap, "%s: '%s' is the same address as %s", blame->origin,
         shown, admin_set ? "--listen" : "--admin-listen");
    return USC_CONFIG_ERROR;
  }
  return USC_CONFIG_RUN;
}

usc_config_result_t usc_config_parse(int argc, char *const argv[],
                                     char *const envp[], usc_config_t *config,
                                     char *error, size_t error_cap) {
  setting_t settings[F_COUNT];
  usc_config_t parsed;
  usc_config_result_t r;

  memset(settings, 0, sizeof settings);
  if (error != NULL && error_cap > 0)
    error[0] = '\0';
  read_env(envp, settings);
  r = read_args(argc, argv, settings, error, error_cap);
  if (r != USC_CONFIG_RUN)
    return r;
  set_defaults(&parsed);
  r = apply_settings(settings, &parsed, error, error_cap);
  if (r == USC_CONFIG_RUN)
    r = check_combined(settings, &parsed, error, error_cap);
  if (r == USC_CONFIG_RUN)
    *config = parsed;
  return r;
}

const char *usc_config_usage(void) {
  return "Usage: uapi-sidecar [FLAGS]\n"
         "\n"
         "A gRPC sidecar serving the VoipNow UAPI PhoneCalls API.\n"
         "\n"
         "Write --flag VALUE or --flag=VALUE. Each flag can also be set\n"
         "with the environment variable shown; the command line wins\n"
         "over the variable, which wins over the default. An empty\n"
         "variable counts as unset.\n"
         "\n"
         "  --listen HOST:PORT\n"
         "      gRPC address; port 0 picks a free port; IPv6 as [::1]:PORT\n"
         "      env UAPI_SIDECAR_LISTEN, default 127.0.0.1:50051\n"
         "  --admin-listen HOST:PORT\n"
         "      HTTP address of /metrics, /healthz and /readyz\n"
         "      env UAPI_SIDECAR_ADMIN_LISTEN, default 127.0.0.1:9090\n"
         "  --backend native|uapi|auto\n"
         "      who answers: the in-memory engine, the UAPI upstream, or\n"
         "      the upstream with the engine as fallback; uapi and auto\n"
         "      need --uapi-url\n"
         "      env UAPI_SIDECAR_BACKEND, default native, or auto when\n"
         "      --uapi-url is set\n"
         "  --uapi-url URL\n"
         "      UAPI base URL, starting with http:// or https://\n"
         "      env UAPI_SIDECAR_UAPI_URL, default none\n"
         "  --log-format text|json\n"
         "      env UAPI_SIDECAR_LOG_FORMAT, default text\n"
         "  --log-level debug|info|warn|error\n"
         "      env UAPI_SIDECAR_LOG_LEVEL, default info\n"
         "  --max-recv-message-size BYTES\n"
         "      largest gRPC message accepted, 1..2147483647; a KiB or\n"
         "      MiB suffix may follow the number\n"
         "      env UAPI_SIDECAR_MAX_RECV_MESSAGE_SIZE, default 4194304\n"
         "  --max-calls N\n"
         "      most calls the native engine holds, 1..2147483647\n"
         "      env UAPI_SIDECAR_MAX_CALLS, default 100000\n"
         "  --ring-delay MS\n"
         "      how long a native call rings before it is answered,\n"
         "      0..3600000\n"
         "      env UAPI_SIDECAR_RING_DELAY, default 0\n"
         "  --shutdown-grace MS\n"
         "      how long running RPCs may take to finish after SIGTERM,\n"
         "      0..3600000\n"
         "      env UAPI_SIDECAR_SHUTDOWN_GRACE, default 10000\n"
         "  --max-concurrent-streams N\n"
         "      HTTP/2 streams per connection, 1..2147483647\n"
         "      env UAPI_SIDECAR_MAX_CONCURRENT_STREAMS, default 1000\n"
         "  --upstream-timeout MS\n"
         "      upstream deadline of an RPC without grpc-timeout\n"
         "      env UAPI_SIDECAR_UPSTREAM_TIMEOUT, default 10000\n"
         "  --upstream-max-body BYTES\n"
         "      largest upstream answer read\n"
         "      env UAPI_SIDECAR_UPSTREAM_MAX_BODY, default 8388608\n"
         "  --upstream-max-requests N\n"
         "      upstream requests in flight at once, 1..65536\n"
         "      env UAPI_SIDECAR_UPSTREAM_MAX_REQUESTS, default 256\n"
         "  --uapi-ca-file PATH\n"
         "      PEM CA certificates trusted for the upstream, besides\n"
         "      the system store\n"
         "      env UAPI_SIDECAR_UAPI_CA_FILE, default none\n"
         "  --uapi-token-file PATH\n"
         "      the sidecar's own upstream bearer token, re-read when the\n"
         "      file changes; without it the client's authorization\n"
         "      metadata is forwarded\n"
         "      env UAPI_SIDECAR_UAPI_TOKEN_FILE, default none\n"
         "  --oauth-token-url URL, --oauth-client-id ID,\n"
         "  --oauth-client-secret-file PATH\n"
         "      OAuth 2 client credentials for the upstream instead\n"
         "      env UAPI_SIDECAR_OAUTH_TOKEN_URL, ..._OAUTH_CLIENT_ID,\n"
         "      ..._OAUTH_CLIENT_SECRET_FILE, default none\n"
         "  --status-map-file PATH\n"
         "      rules mapping upstream HTTP statuses (and UAPI codes)\n"
         "      to gRPC statuses, over the defaults\n"
         "      env UAPI_SIDECAR_STATUS_MAP_FILE, default none\n"
         "  --breaker-failures N, --breaker-open-ms MS\n"
         "      auto backend: consecutive upstream failures that open\n"
         "      the circuit, and how long it stays open before a probe\n"
         "      env UAPI_SIDECAR_BREAKER_FAILURES, default 5;\n"
         "      env UAPI_SIDECAR_BREAKER_OPEN_MS, default 5000\n"
         "  --watch-poll-interval MS\n"
         "      how often WatchPhoneCalls polls the upstream, 10..3600000\n"
         "      env UAPI_SIDECAR_WATCH_POLL_INTERVAL, default 1000\n"
         "  --rest-listen HOST:PORT\n"
         "      also serve the native engine as UAPI REST (HTTP/1.1)\n"
         "      env UAPI_SIDECAR_REST_LISTEN, default off\n"
         "  --state-file PATH\n"
         "      keep the native engine's calls in this file: loaded at\n"
         "      start, written (atomically) after changes and at\n"
         "      shutdown; a damaged file is moved aside to\n"
         "      PATH.rejected-TIME and the sidecar starts without calls\n"
         "      env UAPI_SIDECAR_STATE_FILE, default none\n"
         "  --state-save-interval MS\n"
         "      how often the state file is written when calls changed,\n"
         "      0..3600000 (0: only at shutdown)\n"
         "      env UAPI_SIDECAR_STATE_SAVE_INTERVAL, default 5000\n"
         "  --max-connections N\n"
         "      open gRPC connections at most, 0..2147483647 (0: no\n"
         "      limit); more are accepted and closed at once, unless one\n"
         "      open has sent no preface: the oldest such makes room\n"
         "      env UAPI_SIDECAR_MAX_CONNECTIONS, default 1000\n"
         "  --max-header-list-size BYTES\n"
         "      largest request header list (HTTP/2\n"
         "      SETTINGS_MAX_HEADER_LIST_SIZE), 1024..16777216; a KiB or\n"
         "      MiB suffix may follow; larger requests get\n"
         "      RESOURCE_EXHAUSTED\n"
         "      env UAPI_SIDECAR_MAX_HEADER_LIST_SIZE, default 16384\n"
         "  --max-connection-idle MS\n"
         "      GOAWAY to a connection without calls for that long,\n"
         "      0..2592000000 (0: never)\n"
         "      env UAPI_SIDECAR_MAX_CONNECTION_IDLE, default 0\n"
         "  --max-connection-age MS, --max-connection-age-grace MS\n"
         "      GOAWAY to a connection that old (+-10%), then close it\n"
         "      after the grace even with calls running, 0..2592000000\n"
         "      (0: never / no limit)\n"
         "      env UAPI_SIDECAR_MAX_CONNECTION_AGE, default 0;\n"
         "      env UAPI_SIDECAR_MAX_CONNECTION_AGE_GRACE, default 0\n"
         "  --keepalive-time MS, --keepalive-timeout MS\n"
         "      PING a connection silent that long (0: never), and close\n"
         "      it if the ACK takes longer than the timeout (1..)\n"
         "      env UAPI_SIDECAR_KEEPALIVE_TIME, default 7200000;\n"
         "      env UAPI_SIDECAR_KEEPALIVE_TIMEOUT, default 20000\n"
         "  --keepalive-min-time MS\n"
         "      client PINGs closer together than this (with no response\n"
         "      data between) are strikes; the third gets GOAWAY\n"
         "      ENHANCE_YOUR_CALM \"too_many_pings\" (0: allow any)\n"
         "      env UAPI_SIDECAR_KEEPALIVE_MIN_TIME, default 300000\n"
         "  --keepalive-permit-without-calls true|false\n"
         "      whether clients may ping that often while they have no\n"
         "      calls; if not, such pings closer than two hours are\n"
         "      strikes (gRFC A8)\n"
         "      env UAPI_SIDECAR_KEEPALIVE_PERMIT_WITHOUT_CALLS, default "
         "false\n"
         "  --tokens-file PATH\n"
         "      the bearer tokens PhoneCallService's clients must send,\n"
         "      one a line: TOKEN USER EXTENSIONS (comma-separated, or\n"
         "      '*' for all); re-read when the file changes; health and\n"
         "      reflection stay open\n"
         "      env UAPI_SIDECAR_TOKENS_FILE, default none (no access\n"
         "      control)\n"
         "  --tls-cert PATH, --tls-key PATH\n"
         "      serve gRPC over TLS (ALPN h2, TLS 1.2+) with this PEM\n"
         "      certificate chain and its private key, read at start;\n"
         "      both or neither (plaintext h2c); the admin port stays\n"
         "      plain HTTP\n"
         "      env UAPI_SIDECAR_TLS_CERT, UAPI_SIDECAR_TLS_KEY, default\n"
         "      none\n"
         "  --tls-client-ca PATH\n"
         "      mutual TLS: clients must present a certificate signed by\n"
         "      one of these PEM CAs\n"
         "      env UAPI_SIDECAR_TLS_CLIENT_CA, default none\n"
         "  --tls-handshake-timeout MS\n"
         "      close a TLS connection whose handshake takes longer,\n"
         "      1..3600000\n"
         "      env UAPI_SIDECAR_TLS_HANDSHAKE_TIMEOUT, default 10000\n"
         "  -h, --help\n"
         "      print this help and exit\n"
         "  --version\n"
         "      print the version and exit\n";
}

const char *usc_config_version(void) { return "uapi-sidecar 0.1.0"; }
