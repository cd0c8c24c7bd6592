/* log: the process's log sink, one line per record, text or JSON. */
#ifndef USC_LOG_H
#define USC_LOG_H

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
 * status name and code, duration, backend ("native"/"uapi"), peer and
 * request id (either may be NULL). */
typedef struct {
  const char *method;
  int grpc_code;
  int64_t duration_ns;
  const char *backend;
  const char *peer;
  const char *request_id;
} usc_log_rpc_t;

void usc_log_rpc(const usc_log_rpc_t *rpc);

#endif
