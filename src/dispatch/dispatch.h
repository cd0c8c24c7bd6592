/* dispatch: the gRPC methods of uapi.phonecalls.v1.PhoneCallService.
 * It receives calls from the h2 transport, decodes each request with
 * protobuf-c, serves it from the native call-state engine, and answers
 * with the response message or a status carrying the UAPI error code (the
 * "uapi-error-code" trailer and a google.rpc.ErrorInfo in
 * grpc-status-details-bin). WatchPhoneCalls streams engine events. It
 * also serves grpc.health.v1.Health and server reflection (v1, v1alpha). */
#ifndef USC_DISPATCH_H
#define USC_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "src/admin/admin.h"
#include "src/config/config.h"
#include "src/creds/creds.h"
#include "src/h2/h2.h"
#include "src/log/log.h"
#include "src/state/state.h"
#include "src/upstream/upstream.h"
#include "src/xlate/xlate.h"

typedef struct usc_dispatch usc_dispatch_t;

typedef struct {
  uv_loop_t *loop;
  usc_state_t *state; /* borrowed; outlives the dispatcher */
  /* Wall-clock time in ns since the epoch, for the engine's timestamps. */
  int64_t (*clock)(void *clock_user);
  void *clock_user;
  int64_t ring_ns; /* the engine's ring delay, to wake it when due */

  /* Who answers; with uapi or auto the rest is needed. */
  usc_backend_t backend;
  usc_upstream_t *upstream; /* borrowed */
  usc_creds_t *creds; /* borrowed; NULL: forward the client's authorization */
  const usc_xlate_status_map_t *status_map; /* borrowed; NULL: defaults */
  size_t upstream_max_body;                 /* for messages */
  uint32_t breaker_failures;
  uint64_t breaker_open_ms;
  uint64_t watch_poll_ms;
  usc_metrics_t *metrics; /* borrowed; NULL: not counted */
} usc_dispatch_config_t;

/* Returns 0 or USC_ERR_NOMEM; *out written on success. */
int usc_dispatch_new(const usc_dispatch_config_t *config, usc_dispatch_t **out);

/* The handler to give the h2 server, with the dispatcher as its user. */
const usc_h2_handler_t *usc_dispatch_handler(void);

/* The UAPI REST facade's handler for an admin server, with the dispatcher
 * as its user: UAPI REST requests answered by the native engine. */
const usc_admin_handler_t *usc_dispatch_rest_handler(void);

/* The facade's answers to requests its HTTP server refuses by itself
 * (malformed, too large, too slow), in UAPI's error format. */
usc_admin_refusal_fn usc_dispatch_rest_refusal(void);

/* Access control: from now on every PhoneCallService call (gRPC and the
 * REST facade) needs a bearer token of the tokens file whose contents are
 * `text` (format in src/access/access.h), and sees only what its grant
 * allows. A new table replaces the previous one; open Watch streams whose
 * token no longer has the same grant end with UNAUTHENTICATED. Returns 0
 * (*tokens, if not NULL, says how many there are), or USC_ERR_INVALID with
 * a sentence naming the bad line in `error` (never a token), or
 * USC_ERR_NOMEM: the table in force, if any, stays. */
int usc_dispatch_load_tokens(usc_dispatch_t *dispatch, const char *text,
                             size_t len, size_t *tokens, char *error,
                             size_t error_cap);

/* What health checks report: with `serving` false (at the start of a
 * shutdown) every service is NOT_SERVING, and health watchers are told. */
/* For /readyz: whether the service reports SERVING to health checks. */
bool usc_dispatch_ready(const usc_dispatch_t *dispatch);

/* For /metrics: the auto backend's circuit state. */
usc_metrics_breaker_t usc_dispatch_breaker_state(const usc_dispatch_t *d);

void usc_dispatch_set_serving(usc_dispatch_t *dispatch, bool serving);

/* Ends every open WatchPhoneCalls, health Watch and reflection stream with
 * OK (server shutdown). */
void usc_dispatch_end_streams(usc_dispatch_t *dispatch);

/* Frees the dispatcher once its timer is closed; every call must be over
 * (close the h2 server first). `on_closed` may be NULL. */
void usc_dispatch_close(usc_dispatch_t *dispatch, void (*on_closed)(void *),
                        void *closed_user);

#endif
