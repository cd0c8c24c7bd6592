#include "src/dispatch/dispatch.h"

#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/dispatch/convert.h"
#include "src/dispatch/internal.h"
#include "src/log/log.h"
#include "uapi/phonecalls/v1/phonecalls.pb-c.h"

#define ERROR_DOMAIN "uapi.voipnow.com"
#define MAX_REQUEST_KEEP (64 * 1024)

/* ---- answering ---- */

static uint64_t mono_ns(void) { return uv_hrtime(); }

static void rpc_release(rpc_t *rpc) {
  usc_dispatch_t *d = rpc->dispatch;
  if (rpc->request_cap > MAX_REQUEST_KEEP) {
    usc_free(rpc->request);
    rpc->request = NULL;
    rpc->request_cap = 0;
  }
  rpc->request_len = 0;
  rpc->has_request = false;
  rpc->call = NULL;
  rpc->msg = NULL;
  rpc->probe = rpc->retried_auth = rpc->fetching = false;
  rpc->headers_sent = false;
  rpc->upstream_status = 0;
  rpc->in_streams = false;
  rpc->health_index = -1;
  rpc->authorization = NULL;
  usc_access_unref(rpc->access);
  rpc->access = NULL;
  rpc->grant = NULL;
  arena_reset(&rpc->arena);
  rpc->next = d->free_rpcs;
  d->free_rpcs = rpc;
}

static usc_metrics_rpc_type_t rpc_type(const method_t *m) {
  if (method_client_stream(m))
    return USC_METRICS_BIDI_STREAM;
  if (m->kind == KIND_WATCH || m->kind == KIND_HEALTH_WATCH)
    return USC_METRICS_SERVER_STREAM;
  return USC_METRICS_UNARY;
}

/* Every call ends here, whichever way: the log line and the metrics. */
static void rpc_log(const rpc_t *rpc, usc_grpc_status_t status) {
  int64_t duration = (int64_t)(mono_ns() - rpc->start_ns);
  usc_metrics_rpc_handled(rpc->dispatch->config.metrics, rpc_type(rpc->method),
                          rpc->service, rpc->method_name, (int)status,
                          duration);
  usc_log_rpc_t line = {
      .method = rpc->path,
      .grpc_code = (int)status,
      .duration_ns = duration,
      .backend = rpc->backend,
      .peer = usc_h2_call_peer(rpc->call),
      .request_id = usc_h2_call_header(rpc->call, "x-request-id"),
      .upstream_status = rpc->upstream_status,
  };
  usc_log_rpc(&line);
}

/* Says who answered, in the response headers. */
static void tell_backend(rpc_t *rpc) {
  if (rpc->headers_sent)
    return;
  rpc->headers_sent = true;
  usc_h2_call_add_initial_metadata(rpc->call, "x-uapi-backend", rpc->backend);
}

void rpc_open_stream(rpc_t *rpc) {
  tell_backend(rpc);
  usc_h2_call_send_headers(rpc->call);
}

void rpc_finish_extra(rpc_t *rpc, usc_grpc_status_t status,
                      const char *uapi_code, const char *message,
                      const usc_h2_header_t *extra, size_t n_extra) {
  char details[1024];
  usc_h2_header_t trailers[4];
  size_t n = 0;
  if (status != USC_GRPC_OK) {
    if (uapi_code != NULL)
      trailers[n++] = (usc_h2_header_t){"uapi-error-code", uapi_code};
    if (usc_grpc_status_details_bin(status, message, uapi_code, ERROR_DOMAIN,
                                    details, sizeof(details)) > 0)
      trailers[n++] = (usc_h2_header_t){"grpc-status-details-bin", details};
  }
  for (size_t i = 0; i < n_extra && n < USC_ARRAY_LEN(trailers); i++)
    trailers[n++] = extra[i];
  tell_backend(rpc);
  rpc_log(rpc, status);
  usc_h2_call_finish(rpc->call, status, message, trailers, n);
  rpc_release(rpc);
}

void rpc_finish(rpc_t *rpc, usc_grpc_status_t status, const char *uapi_code,
                const char *message) {
  rpc_finish_extra(rpc, status, uapi_code, message, NULL, 0);
}

static void rpc_fail_state(rpc_t *rpc, const usc_state_err_t *err) {
  rpc_finish(rpc, err->status, err->uapi_code, err->message);
}

static void pack_message(const void *message, uint8_t *out) {
  protobuf_c_message_pack(message, out);
}

void rpc_reply(rpc_t *rpc, const ProtobufCMessage *message) {
  tell_backend(rpc);
  if (message == NULL) {
    rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
               "out of memory building the response");
    return;
  }
  size_t len = protobuf_c_message_get_packed_size(message);
  if (usc_h2_call_send_message(rpc->call, len, pack_message, message) != 0) {
    rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
               "cannot queue the response");
    return;
  }
  rpc_finish(rpc, USC_GRPC_OK, NULL, NULL);
}

int rpc_send(rpc_t *rpc, const ProtobufCMessage *message) {
  tell_backend(rpc);
  if (message == NULL)
    return USC_ERR_NOMEM;
  return usc_h2_call_send_message(rpc->call,
                                  protobuf_c_message_get_packed_size(message),
                                  pack_message, message);
}

void rpc_conclude(rpc_t *rpc, const outcome_t *out) {
  if (out->status != USC_GRPC_OK)
    rpc_finish(rpc, out->status, out->uapi_code, out->message);
  else
    rpc_reply(rpc, out->response);
}

/* ---- the engine's timers ---- */

static int64_t now_ns(const usc_dispatch_t *d) {
  return d->config.clock(d->config.clock_user);
}

int64_t dispatch_now_ns(const usc_dispatch_t *d) { return now_ns(d); }

static void on_advance_timer(uv_timer_t *timer);

/* Arms the timer for an engine change due at `due` (engine time). */
static void arm_advance(usc_dispatch_t *d, int64_t due) {
  if (due == 0 || (d->advance_due != 0 && d->advance_due <= due))
    return;
  int64_t wait_ms = (due - now_ns(d)) / 1000000 + 1;
  d->advance_due = due;
  uv_timer_start(&d->advance_timer, on_advance_timer,
                 wait_ms > 0 ? (uint64_t)wait_ms : 0, 0);
}

static void on_advance_timer(uv_timer_t *timer) {
  usc_dispatch_t *d = timer->data;
  d->advance_due = 0;
  arm_advance(d, usc_state_advance(d->config.state, now_ns(d)));
}

static int64_t native_clock(void *user) { return now_ns(user); }

static void native_wake_at(void *user, int64_t due) { arm_advance(user, due); }

/* ---- WatchPhoneCalls ---- */

static const Uapi__Phonecalls__V1__PhoneCallEvent__Type event_types[] = {
    [USC_STATE_EVENT_CREATED] =
        UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__TYPE__CREATED,
    [USC_STATE_EVENT_UPDATED] =
        UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__TYPE__UPDATED,
    [USC_STATE_EVENT_ENDED] =
        UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__TYPE__ENDED,
};

void watch_unlink(rpc_t *rpc) {
  usc_dispatch_t *d = rpc->dispatch;
  usc_state_unwatch(d->config.state, rpc->watch);
  rpc->watch = NULL;
  if (rpc->prev != NULL)
    rpc->prev->next = rpc->next;
  else
    d->watches = rpc->next;
  if (rpc->next != NULL)
    rpc->next->prev = rpc->prev;
  rpc->next = rpc->prev = NULL;
}

/* Events come from inside an engine operation, which may be building its
 * own response in the request arena: events have an arena of their own. */
static void on_event(void *user, usc_state_event_type_t type,
                     const usc_state_call_t *call, int64_t time) {
  rpc_t *rpc = user;
  arena_t *scratch = &rpc->dispatch->event_arena;
  Uapi__Phonecalls__V1__PhoneCallEvent event =
      UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__INIT;
  event.type = event_types[type];
  event.phone_call = convert_call(scratch, call, USC_STATE_FIELD_ALL);
  event.time = convert_time(scratch, time);
  int rc = USC_ERR_NOMEM;
  if (event.phone_call != NULL && event.time != NULL)
    rc = usc_h2_call_send_message(
        rpc->call,
        protobuf_c_message_get_packed_size((ProtobufCMessage *)&event),
        pack_message, &event);
  arena_reset(scratch);
  if (rc != 0) {
    /* A watcher that cannot keep up is ended rather than silently lossy. */
    watch_unlink(rpc);
    rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
               "cannot queue a watch event");
  }
}

static void handle_watch(rpc_t *rpc, const void *msg) {
  usc_dispatch_t *d = rpc->dispatch;
  usc_state_address_t addr =
      address_of(&d->fields, rpc->method, msg, rpc_identity(rpc));
  usc_state_err_t err;
  if (usc_state_watch(d->config.state, &addr, on_event, rpc, &rpc->watch,
                      &err) != 0) {
    rpc_fail_state(rpc, &err);
    return;
  }
  rpc->next = d->watches;
  rpc->prev = NULL;
  if (d->watches != NULL)
    d->watches->prev = rpc;
  d->watches = rpc;
  /* Headers now, so the client knows the stream is live before any event. */
  rpc_open_stream(rpc);
}

void watch_natively(rpc_t *rpc, const ProtobufCMessage *msg) {
  usc_metrics_fallback(rpc->dispatch->config.metrics);
  rpc->backend = "native";
  handle_watch(rpc, msg);
}

/* In the auto backend, a Watch goes upstream only while the circuit is
 * closed, like the other RPCs. */
static bool watch_upstream(const usc_dispatch_t *d) {
  return d->config.backend != USC_BACKEND_AUTO ||
         d->breaker.state == BREAKER_CLOSED;
}

void usc_dispatch_end_streams(usc_dispatch_t *d) {
  while (d->watches != NULL) {
    rpc_t *rpc = d->watches;
    watch_unlink(rpc);
    rpc_finish(rpc, USC_GRPC_OK, NULL, NULL);
  }
  pollers_end_streams(d);
  while (d->streams != NULL) {
    rpc_t *rpc = d->streams;
    stream_unlink(rpc);
    rpc_finish(rpc, USC_GRPC_OK, NULL, NULL);
  }
}

bool usc_dispatch_ready(const usc_dispatch_t *d) {
  return !d->not_serving &&
         !(d->config.backend == USC_BACKEND_UAPI && d->upstream_down);
}

usc_metrics_breaker_t usc_dispatch_breaker_state(const usc_dispatch_t *d) {
  switch (d->breaker.state) {
  case BREAKER_OPEN:
    return USC_METRICS_BREAKER_OPEN;
  case BREAKER_HALF_OPEN:
    return USC_METRICS_BREAKER_HALF_OPEN;
  default:
    return USC_METRICS_BREAKER_CLOSED;
  }
}

void usc_dispatch_set_serving(usc_dispatch_t *d, bool serving) {
  d->not_serving = !serving;
  health_notify(d);
}

/* ---- h2 handler ---- */

void serve_native(rpc_t *rpc, const ProtobufCMessage *msg) {
  usc_dispatch_t *d = rpc->dispatch;
  outcome_t out;
  native_serve(&d->native, rpc->method, msg, rpc_identity(rpc), &d->arena,
               &out);
  rpc_conclude(rpc, &out);
  arena_reset(&d->arena);
}

ProtobufCMessage *request_decode(const ProtobufCMessageDescriptor *type,
                                 arena_t *arena, const uint8_t *data,
                                 size_t len, const char **why) {
  ProtobufCMessage *msg =
      protobuf_c_message_unpack(type, &arena->allocator, len, data);
  if (msg == NULL)
    *why = "grpc: error unmarshalling request: the bytes are not a valid "
           "message of the method's type";
  else if (!usc_xlate_message_utf8_ok(msg))
    *why = "grpc: error unmarshalling request: string field contains "
           "invalid UTF-8";
  else
    return msg;
  arena_reset(arena);
  return NULL;
}

/* A request served at once is decoded into the shared arena; one that
 * waits for the upstream, into its own. */
static void run(rpc_t *rpc) {
  usc_dispatch_t *d = rpc->dispatch;
  if (rpc->method->kind >= KIND_HEALTH_CHECK) {
    services_run(rpc, rpc->request, rpc->request_len);
    return;
  }
  bool native = d->config.backend == USC_BACKEND_NATIVE;
  arena_t *arena = native ? &d->arena : &rpc->arena;
  const char *why;
  ProtobufCMessage *msg = request_decode(rpc->method->request, arena,
                                         rpc->request, rpc->request_len, &why);
  outcome_t refused;
  if (msg == NULL) {
    rpc_finish(rpc, USC_GRPC_INTERNAL, NULL, why);
  } else if (rpc->grant != NULL &&
             !authorize(&d->fields, rpc->method, msg, rpc->grant, &refused)) {
    arena_reset(arena);
    rpc_conclude(rpc, &refused);
  } else if (rpc->method->kind == KIND_WATCH && native) {
    handle_watch(rpc, msg);
    arena_reset(arena);
  } else if (rpc->method->kind == KIND_WATCH && !watch_upstream(d)) {
    watch_natively(rpc, msg);
    arena_reset(arena);
  } else if (rpc->method->kind == KIND_WATCH) {
    rpc->msg = msg;
    poller_watch(rpc, msg);
  } else if (native) {
    serve_native(rpc, msg);
  } else {
    uapi_serve(rpc, msg);
  }
}

static const method_t *find_method(const char *path, size_t len, char *error,
                                   size_t error_cap) {
  static const char prefix[] = "/" SERVICE_NAME "/";
  size_t plen = sizeof(prefix) - 1;
  if (len >= plen && memcmp(path, prefix, plen) == 0) {
    const method_t *m = method_named(path + plen, len - plen);
    if (m == NULL)
      snprintf(error, error_cap, "unknown method %.*s for service %s",
               (int)(len - plen), path + plen, SERVICE_NAME);
    return m;
  }
  const char *slash = len > 1 ? memchr(path + 1, '/', len - 1) : NULL;
  if (path[0] == '/' && slash != NULL) {
    bool known = false;
    size_t slen = (size_t)(slash - path - 1);
    const method_t *m =
        service_method_find(path + 1, slen, slash + 1, len - slen - 2, &known);
    if (m != NULL)
      return m;
    if (known) {
      snprintf(error, error_cap, "unknown method %.*s for service %.*s",
               (int)(len - slen - 2 > 100 ? 100 : len - slen - 2), slash + 1,
               (int)slen, path + 1);
      return NULL;
    }
  }
  if (path[0] != '/' || slash == NULL)
    snprintf(error, error_cap, "malformed method name: %.*s",
             (int)(len > 100 ? 100 : len), path);
  else
    snprintf(error, error_cap, "unknown service %.*s",
             (int)(slash - path - 1 > 100 ? 100 : slash - path - 1), path + 1);
  return NULL;
}

static rpc_t *rpc_new(usc_dispatch_t *d) {
  rpc_t *rpc = d->free_rpcs;
  if (rpc != NULL) {
    d->free_rpcs = rpc->next;
    rpc->next = NULL;
    return rpc;
  }
  rpc = usc_calloc(1, sizeof(*rpc));
  if (rpc != NULL) {
    rpc->dispatch = d;
    arena_init(&rpc->arena);
  }
  return rpc;
}

/* Copies at most cap - 1 bytes of `text` and ends the copy with NUL (as
 * snprintf "%.*s" would, without formatting on every call). */
static void copy_text(char *dst, size_t cap, const char *text, size_t len) {
  if (len >= cap)
    len = cap - 1;
  memcpy(dst, text, len);
  dst[len] = '\0';
}

static void on_start(void *user, usc_h2_call_t *call, const char *path,
                     size_t len) {
  usc_dispatch_t *d = user;
  char error[256];
  const method_t *method = find_method(path, len, error, sizeof(error));
  if (method == NULL) {
    usc_log_rpc(&(usc_log_rpc_t){.method = path,
                                 .grpc_code = USC_GRPC_UNIMPLEMENTED,
                                 .backend = "native",
                                 .peer = usc_h2_call_peer(call)});
    usc_h2_call_finish(call, USC_GRPC_UNIMPLEMENTED, error, NULL, 0);
    return;
  }
  rpc_t *rpc = rpc_new(d);
  if (rpc == NULL) {
    usc_h2_call_finish(call, USC_GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL,
                       0);
    return;
  }
  rpc->backend = d->config.backend == USC_BACKEND_NATIVE ? "native" : "uapi";
  if (method->kind >= KIND_HEALTH_CHECK)
    rpc->backend = "native"; /* the sidecar itself answers */
  rpc->call = call;
  rpc->method = method;
  rpc->start_ns = mono_ns();
  rpc->health_index = -1;
  copy_text(rpc->path, sizeof(rpc->path), path, len);
  const char *slash = strchr(rpc->path + 1, '/');
  size_t service_len = slash != NULL ? (size_t)(slash - rpc->path - 1) : 0;
  copy_text(rpc->service, sizeof(rpc->service), rpc->path + 1, service_len);
  const char *name = slash != NULL ? slash + 1 : "";
  copy_text(rpc->method_name, sizeof(rpc->method_name), name, strlen(name));
  usc_metrics_rpc_started(d->config.metrics, rpc_type(method), rpc->service,
                          rpc->method_name);
  usc_h2_call_set_user(call, rpc);
  /* Before any work: a call without a valid token ends here. */
  if (!authenticate(rpc))
    return;
  /* A stream of requests is live from the start: shutdown ends it. */
  if (method_client_stream(method))
    stream_link(rpc);
}

static void on_message(void *user, usc_h2_call_t *call, const uint8_t *data,
                       size_t len) {
  (void)user;
  rpc_t *rpc = usc_h2_call_user(call);
  if (method_client_stream(rpc->method)) {
    reflection_message(rpc, data, len);
    return;
  }
  if (rpc->has_request) {
    rpc_finish(rpc, USC_GRPC_INTERNAL, NULL,
               "more than one request message for a method that takes one");
    return;
  }
  if (len > rpc->request_cap) {
    uint8_t *grown = usc_realloc(rpc->request, len);
    if (grown == NULL) {
      rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL, "out of memory");
      return;
    }
    rpc->request = grown;
    rpc->request_cap = len;
  }
  if (len > 0)
    memcpy(rpc->request, data, len);
  rpc->request_len = len;
  rpc->has_request = true;
}

static void on_half_close(void *user, usc_h2_call_t *call) {
  (void)user;
  rpc_t *rpc = usc_h2_call_user(call);
  if (method_client_stream(rpc->method)) {
    /* Every request is answered: the stream is over. */
    stream_unlink(rpc);
    rpc_finish(rpc, USC_GRPC_OK, NULL, NULL);
    return;
  }
  if (!rpc->has_request) {
    rpc_finish(rpc, USC_GRPC_INTERNAL, NULL, "no request message received");
    return;
  }
  run(rpc);
}

static void on_cancel(void *user, usc_h2_call_t *call, usc_grpc_status_t why) {
  (void)user;
  rpc_t *rpc = usc_h2_call_user(call);
  if (rpc->watch != NULL)
    watch_unlink(rpc);
  if (rpc->poller != NULL)
    poller_unwatch(rpc);
  if (rpc->in_streams)
    stream_unlink(rpc);
  uapi_cancel(rpc, why);
  rpc_log(rpc, why);
  rpc_release(rpc);
}

static const usc_h2_handler_t handler = {
    .on_start = on_start,
    .on_message = on_message,
    .on_half_close = on_half_close,
    .on_cancel = on_cancel,
};

const usc_h2_handler_t *usc_dispatch_handler(void) { return &handler; }

int usc_dispatch_new(const usc_dispatch_config_t *config,
                     usc_dispatch_t **out) {
  usc_dispatch_t *d = usc_calloc(1, sizeof(*d));
  if (d == NULL)
    return USC_ERR_NOMEM;
  d->config = *config;
  arena_init(&d->arena);
  arena_init(&d->event_arena);
  fields_init(&d->fields);
  breaker_init(&d->breaker, config->breaker_failures, config->breaker_open_ms);
  d->native = (native_t){
      .state = config->state,
      .fields = &d->fields,
      .ring_ns = config->ring_ns,
      .clock = native_clock,
      .wake_at = native_wake_at,
      .user = d,
  };
  uv_timer_init(config->loop, &d->advance_timer);
  d->advance_timer.data = d;
  uv_unref((uv_handle_t *)&d->advance_timer);
  /* Calls loaded from a state file may still ring or be parked. */
  arm_advance(d, usc_state_advance(config->state, now_ns(d)));
  *out = d;
  return 0;
}

static void on_timer_closed(uv_handle_t *handle) {
  usc_dispatch_t *d = handle->data;
  void (*on_closed)(void *) = d->on_closed;
  void *closed_user = d->closed_user;
  arena_free(&d->arena);
  arena_free(&d->event_arena);
  usc_access_unref(d->access);
  while (d->free_rpcs != NULL) {
    rpc_t *rpc = d->free_rpcs;
    d->free_rpcs = rpc->next;
    usc_free(rpc->request);
    arena_free(&rpc->arena);
    usc_free(rpc);
  }
  usc_free(d);
  if (on_closed != NULL)
    on_closed(closed_user);
}

void usc_dispatch_close(usc_dispatch_t *d, void (*on_closed)(void *),
                        void *closed_user) {
  d->on_closed = on_closed;
  d->closed_user = closed_user;
  pollers_close(d);
  uv_close((uv_handle_t *)&d->advance_timer, on_timer_closed);
}
