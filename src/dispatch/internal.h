/* What dispatch.c and the translation backend (uapi.c, poller.c) share:
 * the dispatcher and its calls. Private to dispatch. */
#ifndef USC_DISPATCH_INTERNAL_H
#define USC_DISPATCH_INTERNAL_H

#include "src/access/access.h"
#include "src/creds/creds.h"
#include "src/dispatch/arena.h"
#include "src/dispatch/breaker.h"
#include "src/dispatch/dispatch.h"
#include "src/dispatch/methods.h"
#include "src/dispatch/native.h"
#include "src/upstream/upstream.h"
#include "src/xlate/xlate.h"

typedef struct rpc rpc_t;
typedef struct poller poller_t;

struct rpc {
  usc_dispatch_t *dispatch;
  usc_h2_call_t *call;
  const method_t *method;
  char path[128];
  char service[96]; /* the path's parts, for metrics labels */
  char method_name[48];
  uint64_t start_ns;
  uint8_t *request; /* the raw request message, kept until half-close */
  size_t request_len;
  size_t request_cap;
  bool has_request;
  const char *backend; /* who answers: "native" or "uapi" */
  usc_state_watch_t *watch;
  poller_t *poller; /* WatchPhoneCalls in front of UAPI */
  rpc_t *next;      /* in a watch list or the free list */
  rpc_t *prev;
  /* An exchange with the upstream: the request message and everything
   * built from it live in the call's own arena until it is answered. */
  arena_t arena;
  const ProtobufCMessage *msg;
  usc_xlate_rpc_t xrpc;
  usc_upstream_req_t *upstream;
  const char *http_method; /* of the request in flight: static */
  int upstream_status;     /* of the last upstream answer, 0: none */
  usc_creds_waiter_t creds_wait;
  bool waiting_creds;
  bool probe;
  bool retried_auth;
  bool fetching;
  bool headers_sent;
  bool in_streams;           /* in the dispatcher's streams list (services.c) */
  int health_index;          /* a health Watch: the known service, or -1 */
  int health_sent;           /* the status it last sent */
  const char *authorization; /* the value sent upstream (arena), or NULL */
  /* With access control: the grant of the call's token, and a reference
   * to its table; else NULL. */
  usc_access_t *access;
  const usc_access_grant_t *grant;
  char fetch_path[USC_XLATE_PATH_MAX];
};

struct usc_dispatch {
  usc_dispatch_config_t config;
  uv_timer_t advance_timer;
  int64_t advance_due; /* engine time of the armed timer, 0 = none */
  arena_t arena;
  arena_t event_arena;
  rpc_t *watches;
  rpc_t *free_rpcs;
  fields_t fields;
  native_t native;
  breaker_t breaker;
  poller_t *pollers;
  /* Health Watch and reflection streams (services.c). */
  rpc_t *streams;
  bool not_serving;     /* shutting down: every service is NOT_SERVING */
  bool upstream_down;   /* uapi backend: the upstream could not be reached */
  usc_access_t *access; /* the tokens table, NULL: no access control */
  void (*on_closed)(void *);
  void *closed_user;
};

/* Answering a call; each ends it (the rpc is released). */
void rpc_finish(rpc_t *rpc, usc_grpc_status_t status, const char *uapi_code,
                const char *message);
void rpc_finish_extra(rpc_t *rpc, usc_grpc_status_t status,
                      const char *uapi_code, const char *message,
                      const usc_h2_header_t *extra, size_t n_extra);
void rpc_reply(rpc_t *rpc, const ProtobufCMessage *message);
void rpc_conclude(rpc_t *rpc, const outcome_t *out);
/* Sends the response headers of a stream before its first message. */
void rpc_open_stream(rpc_t *rpc);
/* Queues one message of a stream (NULL: out of memory). Returns 0 or a
 * USC_ERR_*; the call goes on either way. */
int rpc_send(rpc_t *rpc, const ProtobufCMessage *message);

/* ---- the standard services (services.c) ---- */

/* The method of a service other than PhoneCallService at "svc/method";
 * *known_service tells whether the service exists. */
const method_t *service_method_find(const char *service, size_t service_len,
                                    const char *method, size_t method_len,
                                    bool *known_service);
/* A health call whose one request message is in; a reflection request
 * message. Both use the shared arena. */
void services_run(rpc_t *rpc, const uint8_t *request, size_t len);
void reflection_message(rpc_t *rpc, const uint8_t *request, size_t len);
/* The streams list: what usc_dispatch_end_streams ends and on_cancel
 * drops. */
void stream_link(rpc_t *rpc);
void stream_unlink(rpc_t *rpc);
/* Sends every health watcher whose status changed its new status. */
void health_notify(usc_dispatch_t *d);
/* The outcome of an exchange with the upstream: whether it answered at
 * all (uapi backend: PhoneCallService's health). */
void health_upstream(usc_dispatch_t *d, bool reachable);

/* ---- access control (authorize.c) ---- */

/* Finds the grant of the call's bearer token (rpc->grant). Returns false
 * after answering UNAUTHENTICATED when a PhoneCallService call has none;
 * true when it has one, or nothing is required. */
bool authenticate(rpc_t *rpc);
/* For the REST facade: the grant of an `authorization` value in *grant,
 * and NULL; or the sentence to refuse it with (UNAUTHENTICATED). */
const char *access_refusal(const usc_access_t *table, const char *authorization,
                           const usc_access_grant_t **grant);
/* Resolves the address of `msg` against `grant` and writes what it
 * resolves to into the message (the grant's user id; @self as the one
 * extension it holds). Returns false with the answer in `out` when the
 * request must not be served: NOT_FOUND for another user's calls or an
 * extension the token does not hold. */
bool authorize(const fields_t *fields, const method_t *m, ProtobufCMessage *msg,
               const usc_access_grant_t *grant, outcome_t *out);

/* The engine's identity of who asks: the token's user, or NULL. */
static inline const char *rpc_identity(const rpc_t *rpc) {
  return rpc->grant != NULL ? rpc->grant->user : NULL;
}

/* A native WatchPhoneCalls leaves the engine and the watches list. */
void watch_unlink(rpc_t *rpc);

/* The auto backend's fallback for a WatchPhoneCalls whose upstream cannot
 * be reached: the native engine serves the decoded request `msg` for the
 * rest of the stream. */
void watch_natively(rpc_t *rpc, const ProtobufCMessage *msg);

/* Serves a decoded request from the native engine. */
void serve_native(rpc_t *rpc, const ProtobufCMessage *msg);

/* The translation backend (uapi.c): serves the decoded request `msg`
 * (in rpc->arena) through the upstream, or natively when the auto backend
 * decides so; cancel stops what is in flight, `why` being the transport's
 * reason (on_cancel of src/h2/h2.h). */
void uapi_serve(rpc_t *rpc, const ProtobufCMessage *msg);
void uapi_cancel(rpc_t *rpc, usc_grpc_status_t why);

/* Copies what the upstream answered for `msg` into the engine. */
void mirror_answer(usc_dispatch_t *d, const method_t *m,
                   const ProtobufCMessage *msg,
                   const ProtobufCMessage *response);

/* The upstream said the call `msg` names is not found: drop it. */
void mirror_gone(usc_dispatch_t *d, const method_t *m,
                 const ProtobufCMessage *msg);

/* WatchPhoneCalls in front of UAPI (poller.c). */
void poller_watch(rpc_t *rpc, const ProtobufCMessage *msg);
void poller_unwatch(rpc_t *rpc);
/* Ends with `end` every polled stream that `revoked` picks. */
void pollers_recheck(usc_dispatch_t *d, bool (*revoked)(rpc_t *rpc),
                     void (*end)(rpc_t *rpc));
/* Ends every polled stream with OK (shutdown). */
void pollers_end_streams(usc_dispatch_t *d);
/* Stops the pollers; their timers close on the loop. Streams must be
 * over. */
void pollers_close(usc_dispatch_t *d);

int64_t dispatch_now_ns(const usc_dispatch_t *d);

/* Decodes a request message into `arena`, refusing what gRPC's own
 * implementations refuse: bytes that are not a message of `type`, and a
 * string field that is not UTF-8 (proto3 requires it; protobuf-c does not
 * check). NULL when refused, with the arena reset and *why the status
 * message ("grpc: error unmarshalling request: ...", static). */
ProtobufCMessage *request_decode(const ProtobufCMessageDescriptor *type,
                                 arena_t *arena, const uint8_t *data,
                                 size_t len, const char **why);

#endif
