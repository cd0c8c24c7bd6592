/* log: the process's log sink, one line per record, text or JSON; and the
 * metrics registry with its Prometheus text exporter. */
#ifndef USC_LOG_H
#define USC_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/config/config.h"

/* Configures the sink: records below `level` are dropped. Lines go to
 * `out` (stderr when NULL), each written with one write. */
void usc_log_init(usc_log_format_t format, usc_log_level_t level, FILE *out);

/* A free-form record: `msg` plus printf-style details, e.g.
 * usc_log(USC_LOG_INFO, "listening", "address=%s", "127.0.0.1:50051").
 * In JSON the details become "detail". */
void usc_log(usc_log_level_t level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One line per finished RPC: time, method ("/pkg.Svc/Method"), gRPC
 * status name and code, duration, backend ("native"/"uapi"), the last
 * upstream HTTP status (0: none), peer and request id (either may be
 * NULL). */
typedef struct {
  const char *method;
  int grpc_code;
  int64_t duration_ns;
  const char *backend;
  const char *peer;
  const char *request_id;
  int upstream_status;
} usc_log_rpc_t;

void usc_log_rpc(const usc_log_rpc_t *rpc);

/* ---- metrics (metrics.c) ----
 *
 * A registry of the sidecar's counters and histograms and their rendering
 * in the Prometheus text exposition format 0.0.4, for /metrics. Metric
 * names follow go-grpc-prometheus, so existing dashboards work:
 *
 *   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
 *   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
 *   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}
 *   uapi_sidecar_upstream_requests_total{method,status}
 *   uapi_sidecar_upstream_request_seconds{method}
 *   uapi_sidecar_fallback_answers_total
 *   uapi_sidecar_breaker_state, uapi_sidecar_engine_calls,
 *   uapi_sidecar_open_connections, uapi_sidecar_open_streams (gauges)
 *   uapi_sidecar_state_saves_total{result}, (with --state-file)
 *   uapi_sidecar_state_file_rejected_total,
 *   uapi_sidecar_state_last_save_timestamp_seconds
 *   uapi_sidecar_tls_handshake_failures_total (with TLS)
 *   process_cpu_seconds_total, process_resident_memory_bytes,
 *   process_open_fds, process_start_time_seconds
 *
 * grpc_code is the status name ("OK", "NOT_FOUND"). Both histograms have
 * the buckets (seconds, upper bounds inclusive) 0.0001, 0.00025, 0.0005,
 * 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
 * and +Inf; buckets are rendered cumulative, with _sum and _count.
 *
 * Series are rendered in the order they were first seen. A family's HELP
 * and TYPE lines are always there, even before its first sample.
 *
 * Single-threaded, like the loop that uses it: no locking. */
typedef struct usc_metrics usc_metrics_t;

typedef enum {
  USC_METRICS_UNARY = 0,
  USC_METRICS_CLIENT_STREAM = 1,
  USC_METRICS_SERVER_STREAM = 2,
  USC_METRICS_BIDI_STREAM = 3,
} usc_metrics_rpc_type_t;

/* The most distinct (grpc_type, grpc_service, grpc_method) series kept
 * under their own names. Past it, a new series is counted under
 * grpc_method="other", keeping grpc_service when that service already has
 * a series of its own and else grpc_service="other", so that clients
 * calling made-up services and methods cannot grow memory. */
#define USC_METRICS_MAX_SERIES 256

/* Creates an empty registry into *out (untouched on failure). Returns 0 or
 * USC_ERR_NOMEM. Free it with usc_metrics_free (which accepts NULL). */
int usc_metrics_new(usc_metrics_t **out);
void usc_metrics_free(usc_metrics_t *m);

/* Observations. Every one accepts m == NULL (metrics off) and returns 0.
 *
 * `service` ("uapi.phonecalls.v1.PhoneCallService") and `method`
 * ("OnHold") are NUL-terminated and only read during the call: a new
 * series copies them once. After that an observation of the same series
 * is a hash lookup and a few increments, allocating nothing. Returns 0,
 * USC_ERR_INVALID for a type outside the enum or a NULL string, or
 * USC_ERR_NOMEM when a new series cannot be made (the observation is then
 * lost, nothing else changes). */
int usc_metrics_rpc_started(usc_metrics_t *m, usc_metrics_rpc_type_t type,
                            const char *service, const char *method);
/* An RPC finished with `grpc_code` (a usc_grpc_status_t; values out of
 * range count as UNKNOWN) after `duration_ns` (negative counts as 0). */
int usc_metrics_rpc_handled(usc_metrics_t *m, usc_metrics_rpc_type_t type,
                            const char *service, const char *method,
                            int grpc_code, int64_t duration_ns);

/* An upstream request finished: `http_method` is GET, HEAD, POST, PUT,
 * DELETE, PATCH or OPTIONS (anything else, NULL included, counts as
 * "other"); `status` is the HTTP status 100..599, or 0 when no response
 * came (refused, reset, timed out: status="error"; other values count as
 * "error" too). Never allocates; always returns 0. */
int usc_metrics_upstream(usc_metrics_t *m, const char *http_method, int status,
                         int64_t duration_ns);

/* An RPC answered by the native engine as the fallback of the auto
 * backend. Never allocates; always returns 0. */
int usc_metrics_fallback(usc_metrics_t *m);

/* Values only the caller knows, read at render time. */
typedef enum {
  USC_METRICS_BREAKER_CLOSED = 0,
  USC_METRICS_BREAKER_OPEN = 1,
  USC_METRICS_BREAKER_HALF_OPEN = 2,
} usc_metrics_breaker_t;

typedef struct {
  usc_metrics_breaker_t breaker_state;
  uint64_t engine_calls;     /* calls the native engine holds */
  uint64_t open_connections; /* HTTP/2 connections */
  uint64_t open_streams;     /* HTTP/2 streams, all connections */
  /* --state-file: the families below are rendered only when it is set. */
  bool state_file;
  uint64_t state_saves;         /* uapi_sidecar_state_saves_total */
  uint64_t state_save_errors;   /* ...{result="error"} */
  uint64_t state_file_rejected; /* uapi_sidecar_state_file_rejected_total */
  int64_t state_last_save_ns;   /* wall clock of the last write; 0: none */
  /* With TLS on the gRPC listener only: the counter
   * uapi_sidecar_tls_handshake_failures_total. */
  bool tls;
  uint64_t tls_handshake_failures;
} usc_metrics_gauges_t;

/* Renders every metric as Prometheus text: the registry's, then the
 * gauges (left out when `gauges` is NULL), then the process metrics read
 * from /proc/self (each left out when it cannot be read). On success
 * *text is a NUL-terminated, usc_malloc'd string the caller frees with
 * usc_free, and *len its length without the NUL. Returns 0 or
 * USC_ERR_NOMEM (*text and *len untouched); USC_ERR_INVALID when m is
 * NULL. */
int usc_metrics_render(const usc_metrics_t *m,
                       const usc_metrics_gauges_t *gauges, char **text,
                       size_t *len);

#endif
