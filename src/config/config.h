/* config: command-line flags and their UAPI_SIDECAR_* environment
 * equivalents, parsed into one plain immutable struct. A flag given on the
 * command line wins over its environment variable, which wins over the
 * default. */
#ifndef USC_CONFIG_H
#define USC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  USC_BACKEND_NATIVE,
  USC_BACKEND_UAPI,
  USC_BACKEND_AUTO,
} usc_backend_t;

typedef enum { USC_LOG_TEXT, USC_LOG_JSON } usc_log_format_t;

typedef enum {
  USC_LOG_DEBUG,
  USC_LOG_INFO,
  USC_LOG_WARN,
  USC_LOG_ERROR,
} usc_log_level_t;

typedef struct {
  char listen_host[256]; /* --listen, default 127.0.0.1:50051 */
  int listen_port;
  char admin_host[256]; /* --admin-listen, default 127.0.0.1:9090 */
  int admin_port;
  usc_backend_t backend;           /* --backend; default native without
                                      --uapi-url, else auto */
  char uapi_url[1024];             /* --uapi-url, "" when unset */
  usc_log_format_t log_format;     /* --log-format text|json, default text */
  usc_log_level_t log_level;       /* --log-level debug|info|warn|error */
  size_t max_recv_message_size;    /* --max-recv-message-size bytes, 4 MiB */
  size_t max_calls;                /* --max-calls, default 100000 */
  int64_t ring_ns;                 /* --ring-delay ms, default 0 */
  int64_t shutdown_grace_ns;       /* --shutdown-grace ms, default 10000 */
  uint32_t max_concurrent_streams; /* --max-concurrent-streams, 1000 */

  /* gRPC connections (gRFC A8/A9); a duration of 0 turns its rule off. */
  size_t max_connections;              /* --max-connections, 1000; 0 none */
  uint32_t max_header_list_size;       /* --max-header-list-size, 16 KiB */
  int64_t max_connection_idle_ns;      /* --max-connection-idle ms, 0 */
  int64_t max_connection_age_ns;       /* --max-connection-age ms, 0 */
  int64_t max_connection_age_grace_ns; /* ...-age-grace ms, 0 = no limit */
  int64_t keepalive_time_ns;           /* --keepalive-time ms, 2 h */
  int64_t keepalive_timeout_ns;        /* --keepalive-timeout ms, 20 s */
  int64_t keepalive_min_time_ns;       /* --keepalive-min-time ms, 5 min */
  bool keepalive_permit_without_calls; /* --keepalive-permit-without-calls */

  /* The translation backend. */
  int64_t upstream_timeout_ns;         /* --upstream-timeout ms, 10000 */
  size_t upstream_max_body;            /* --upstream-max-body bytes, 8 MiB */
  uint32_t upstream_max_requests;      /* --upstream-max-requests, 256 */
  char uapi_ca_file[1024];             /* --uapi-ca-file, "" */
  char uapi_token_file[1024];          /* --uapi-token-file, "" */
  char oauth_token_url[1024];          /* --oauth-token-url, "" */
  char oauth_client_id[256];           /* --oauth-client-id, "" */
  char oauth_client_secret_file[1024]; /* --oauth-client-secret-file */
  char status_map_file[1024];          /* --status-map-file, "" */
  uint32_t breaker_failures;           /* --breaker-failures, 5 */
  int64_t breaker_open_ns;             /* --breaker-open-ms, 5000 */
  int64_t watch_poll_ns;               /* --watch-poll-interval ms, 1000 */
  char rest_host[256];                 /* --rest-listen HOST:PORT, off */
  int rest_port;                       /* -1 when the facade is off */

  /* Access control: the bearer tokens of PhoneCallService's clients. */
  char tokens_file[1024]; /* --tokens-file, "" (no control) */
  /* Persistence of the native engine's calls. */
  char state_file[1024];          /* --state-file PATH, "" when off */
  int64_t state_save_interval_ns; /* --state-save-interval ms, 5000; 0 =
                                     only at shutdown */

  /* TLS on the gRPC listener: on when both the certificate and the key
   * are given (one without the other is an error). */
  char tls_cert_file[1024];         /* --tls-cert, "" (h2c) */
  char tls_key_file[1024];          /* --tls-key, "" */
  char tls_client_ca_file[1024];    /* --tls-client-ca, "" (no mTLS) */
  int64_t tls_handshake_timeout_ns; /* --tls-handshake-timeout ms, 10 s */
} usc_config_t;

typedef enum {
  USC_CONFIG_RUN,     /* start the sidecar */
  USC_CONFIG_HELP,    /* print usc_config_usage() and exit 0 */
  USC_CONFIG_VERSION, /* print the version and exit 0 */
  USC_CONFIG_ERROR,   /* print `error` and exit 2 */
} usc_config_result_t;

/* Parses argv (argv[0] is the program) and `envp` (NULL-terminated
 * "NAME=value" strings, may be NULL). On USC_CONFIG_ERROR, `error` holds a
 * message naming the flag or variable and the bad value. */
usc_config_result_t usc_config_parse(int argc, char *const argv[],
                                     char *const envp[], usc_config_t *config,
                                     char *error, size_t error_cap);

/* The --help text. Static string. */
const char *usc_config_usage(void);

/* "uapi-sidecar <version>". Static string. */
const char *usc_config_version(void);

#endif
