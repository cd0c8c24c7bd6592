/* The translation backend: one RPC, one UAPI exchange (two when an update
 * is answered partially and the call must be fetched), within the RPC's
 * deadline, with the answer or the error mapped back. In the auto backend
 * an upstream that cannot be reached hands the RPC to the native engine. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/dispatch/internal.h"

#define MAX_HEADERS 8
#define FORWARDED_NAMES 3
/* A client gives up at its deadline by resetting the stream, which may
 * reach us a moment before our own deadline timer fires. */
#define DEADLINE_MARGIN_MS 50

static const char *const forwarded[FORWARDED_NAMES] = {
    "traceparent",
    "tracestate",
    "x-request-id",
};

static uint64_t loop_now(const rpc_t *rpc) {
  return uv_now(rpc->dispatch->config.loop);
}

static bool is_auto(const rpc_t *rpc) {
  return rpc->dispatch->config.backend == USC_BACKEND_AUTO;
}

static void record(rpc_t *rpc, bool ok) {
  if (is_auto(rpc))
    breaker_record(&rpc->dispatch->breaker, ok, rpc->probe, loop_now(rpc));
  rpc->probe = false;
}

static usc_upstream_method_t method_of(const char *http) {
  switch (http[0]) {
  case 'P':
    return http[1] == 'O' ? USC_UPSTREAM_POST : USC_UPSTREAM_PUT;
  case 'D':
    return USC_UPSTREAM_DELETE;
  default:
    return USC_UPSTREAM_GET;
  }
}

static size_t request_headers(rpc_t *rpc, bool has_body,
                              usc_upstream_header_t *h) {
  size_t n = 0;
  h[n++] = (usc_upstream_header_t){"accept", "application/json"};
  if (has_body)
    h[n++] = (usc_upstream_header_t){"content-type", "application/json"};
  if (rpc->authorization != NULL)
    h[n++] = (usc_upstream_header_t){"authorization", rpc->authorization};
  for (size_t i = 0; i < FORWARDED_NAMES; i++) {
    const char *value = usc_h2_call_header(rpc->call, forwarded[i]);
    if (value != NULL)
      h[n++] = (usc_upstream_header_t){forwarded[i], value};
  }
  return n;
}

static void on_upstream_done(void *user, const usc_upstream_result_t *result);

static void send_upstream(rpc_t *rpc, const char *http_method,
                          const char *target, const char *body,
                          size_t body_len) {
  usc_upstream_header_t headers[MAX_HEADERS];
  rpc->http_method = http_method;
  usc_upstream_request_t req = {
      .method = method_of(http_method),
      .path = target,
      .headers = headers,
      .n_headers = request_headers(rpc, body != NULL, headers),
      .body = body,
      .body_len = body_len,
      .deadline = (uint64_t)usc_h2_call_deadline(rpc->call),
      .done = on_upstream_done,
      .user = rpc,
  };
  int rc = usc_upstream_request(rpc->dispatch->config.upstream, &req,
                                &rpc->upstream);
  if (rc == USC_ERR_FULL)
    rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
               "too many upstream requests in flight; retry later");
  else if (rc != 0)
    rpc_finish(rpc, USC_GRPC_INTERNAL, NULL,
               "cannot make the upstream request");
}

static void send_request(rpc_t *rpc) {
  usc_xlate_request_t req;
  usc_xlate_error_t err;
  int rc = usc_xlate_request_build(rpc->xrpc, rpc->msg, &req, &err);
  if (rc == USC_ERR_NOMEM) {
    rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL, "out of memory");
    return;
  }
  if (rc != 0) {
    rpc_finish(rpc, err.status, err.code[0] ? err.code : NULL, err.message);
    return;
  }
  send_upstream(rpc, req.method, req.target, req.body, req.body_len);
  usc_xlate_request_free(&req);
}

static void on_credentials(void *user, const usc_creds_result_t *creds) {
  rpc_t *rpc = user;
  rpc->waiting_creds = false;
  if (creds->status != 0) {
    rpc_finish(rpc, USC_GRPC_UNAVAILABLE, NULL, creds->reason);
    return;
  }
  const char *value = creds->authorization;
  /* No credentials of our own: forward the client's, unless it is a token
   * of the sidecar's own access control. */
  if (value == NULL && rpc->dispatch->access == NULL)
    value = usc_h2_call_header(rpc->call, "authorization");
  rpc->authorization = NULL;
  if (value != NULL) {
    size_t size = strlen(value) + 1;
    char *copy = arena_alloc(&rpc->arena, size);
    if (copy == NULL) {
      rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL, "out of memory");
      return;
    }
    rpc->authorization = memcpy(copy, value, size);
  }
  if (rpc->fetching)
    send_upstream(rpc, "GET", rpc->fetch_path, NULL, 0);
  else
    send_request(rpc);
}

static void authorize_and_send(rpc_t *rpc) {
  usc_creds_t *creds = rpc->dispatch->config.creds;
  if (creds == NULL) {
    on_credentials(rpc, &(usc_creds_result_t){.status = 0});
    return;
  }
  rpc->waiting_creds = true;
  usc_creds_get(creds, &rpc->creds_wait, on_credentials, rpc);
}

static void fail_transport(rpc_t *rpc, const usc_upstream_result_t *r) {
  char message[320];
  usc_grpc_status_t status = USC_GRPC_UNAVAILABLE;
  switch (r->error) {
  case USC_UPSTREAM_TIMEOUT:
    status = USC_GRPC_DEADLINE_EXCEEDED;
    snprintf(message, sizeof(message),
             "the upstream did not answer within the deadline");
    break;
  case USC_UPSTREAM_TOO_LARGE:
    status = USC_GRPC_RESOURCE_EXHAUSTED;
    snprintf(message, sizeof(message),
             "the upstream answer is larger than %zu bytes",
             rpc->dispatch->config.upstream_max_body);
    break;
  case USC_UPSTREAM_NOMEM:
    status = USC_GRPC_RESOURCE_EXHAUSTED;
    snprintf(message, sizeof(message), "out of memory");
    break;
  default:
    snprintf(message, sizeof(message), "the upstream is unavailable: %s",
             r->error_text[0] ? r->error_text
                              : usc_upstream_error_name(r->error));
    break;
  }
  rpc_finish(rpc, status, NULL, message);
}

static void fail_answer(rpc_t *rpc, const usc_xlate_error_t *err,
                        const usc_upstream_result_t *r) {
  char pushback[24];
  usc_h2_header_t extra[1];
  size_t n_extra = 0;
  int64_t delay_ms;
  if (r->retry_after != NULL &&
      usc_xlate_retry_after_ms(r->retry_after, strlen(r->retry_after),
                               dispatch_now_ns(rpc->dispatch) / 1000000,
                               &delay_ms) == 0) {
    snprintf(pushback, sizeof(pushback), "%" PRId64, delay_ms);
    extra[n_extra++] = (usc_h2_header_t){"grpc-retry-pushback-ms", pushback};
  }
  rpc_finish_extra(rpc, err->status, err->code[0] ? err->code : NULL,
                   err->message, extra, n_extra);
}

static void handle_answer(rpc_t *rpc, const usc_upstream_result_t *r) {
  usc_xlate_answer_t answer = {
      .rpc = rpc->fetching ? USC_XLATE_GET : rpc->xrpc,
      .request = rpc->msg,
      .http_status = r->status,
      .body = r->body,
      .body_len = r->body_len,
      .map = rpc->dispatch->config.status_map,
      .allocator = &rpc->arena.allocator,
  };
  usc_xlate_result_t result;
  int outcome = usc_xlate_answer_parse(&answer, &result);
  if (outcome == USC_XLATE_DONE) {
    mirror_answer(rpc->dispatch, rpc->method, rpc->msg, result.response);
    rpc_reply(rpc, result.response);
  } else if (outcome == USC_XLATE_FETCH && !rpc->fetching) {
    rpc->fetching = true;
    snprintf(rpc->fetch_path, sizeof(rpc->fetch_path), "%s", result.fetch_path);
    send_upstream(rpc, "GET", rpc->fetch_path, NULL, 0);
  } else if (outcome == USC_XLATE_FAILED) {
    if (result.error.status == USC_GRPC_NOT_FOUND)
      mirror_gone(rpc->dispatch, rpc->method, rpc->msg);
    fail_answer(rpc, &result.error, r);
  } else {
    rpc_finish(rpc, USC_GRPC_INTERNAL, NULL,
               outcome == USC_ERR_NOMEM
                   ? "out of memory"
                   : "the upstream answered a fetch with another partial "
                     "answer");
  }
}

/* A 401 may mean our cached token expired: one refresh and one retry. */
static bool retry_with_fresh_token(rpc_t *rpc, int status) {
  usc_creds_t *creds = rpc->dispatch->config.creds;
  if (status != 401 || creds == NULL || rpc->retried_auth)
    return false;
  rpc->retried_auth = true;
  if (rpc->authorization != NULL)
    usc_creds_invalidate(creds, rpc->authorization);
  authorize_and_send(rpc);
  return true;
}

static void on_upstream_done(void *user, const usc_upstream_result_t *r) {
  rpc_t *rpc = user;
  usc_metrics_t *metrics = rpc->dispatch->config.metrics;
  rpc->upstream = NULL;
  rpc->upstream_status = r->error == USC_UPSTREAM_OK ? r->status : 0;
  usc_metrics_upstream(metrics, rpc->http_method, rpc->upstream_status,
                       (int64_t)r->elapsed_ms * 1000000);
  if (r->error == USC_UPSTREAM_CONNECT_FAILED)
    health_upstream(rpc->dispatch, false);
  else if (r->error == USC_UPSTREAM_OK)
    health_upstream(rpc->dispatch, true);
  /* The fallback answers only what the upstream never saw: not the fetch
   * that follows an update it accepted. */
  if (r->error == USC_UPSTREAM_CONNECT_FAILED && is_auto(rpc) &&
      !rpc->fetching) {
    record(rpc, false);
    usc_metrics_fallback(metrics);
    rpc->backend = "native";
    serve_native(rpc, rpc->msg);
    return;
  }
  if (r->error != USC_UPSTREAM_OK) {
    record(rpc, r->error == USC_UPSTREAM_TOO_LARGE);
    fail_transport(rpc, r);
    return;
  }
  record(rpc, r->status < 500);
  if (!retry_with_fresh_token(rpc, r->status))
    handle_answer(rpc, r);
}

void uapi_serve(rpc_t *rpc, const ProtobufCMessage *msg) {
  usc_dispatch_t *d = rpc->dispatch;
  if (usc_xlate_rpc_find(rpc->method->name, strlen(rpc->method->name),
                         &rpc->xrpc) != 0) {
    rpc_finish(rpc, USC_GRPC_UNIMPLEMENTED, NULL,
               "this method has no UAPI operation");
    return;
  }
  /* Refused before anything is sent: it says nothing of the upstream. */
  usc_xlate_error_t err;
  if (usc_xlate_request_check(rpc->xrpc, msg, &err) != 0) {
    rpc_finish(rpc, err.status, err.code[0] ? err.code : NULL, err.message);
    return;
  }
  bool upstream = true;
  if (d->config.backend == USC_BACKEND_AUTO)
    upstream = breaker_allow(&d->breaker, loop_now(rpc), &rpc->probe);
  if (!upstream) {
    usc_metrics_fallback(d->config.metrics);
    rpc->backend = "native";
    serve_native(rpc, msg);
    return;
  }
  rpc->backend = "uapi";
  rpc->msg = msg;
  authorize_and_send(rpc);
}

static bool at_deadline(const rpc_t *rpc, usc_grpc_status_t why) {
  uint64_t deadline = usc_h2_call_deadline(rpc->call);
  return why == USC_GRPC_DEADLINE_EXCEEDED ||
         (why == USC_GRPC_CANCELLED && deadline != 0 &&
          loop_now(rpc) + DEADLINE_MARGIN_MS >= deadline);
}

void uapi_cancel(rpc_t *rpc, usc_grpc_status_t why) {
  /* The deadline passed with the request out: a timeout, whether the
   * upstream client, our deadline timer or the client noticed it first,
   * and it counts towards the breaker as such. */
  bool timed_out = rpc->upstream != NULL && at_deadline(rpc, why);
  if (rpc->upstream != NULL) {
    usc_upstream_cancel(rpc->upstream);
    rpc->upstream = NULL;
  }
  if (rpc->waiting_creds) {
    usc_creds_cancel(&rpc->creds_wait);
    rpc->waiting_creds = false;
  }
  /* A probe that never finished must not leave the circuit half-open. */
  if (rpc->probe || timed_out)
    record(rpc, false);
}
