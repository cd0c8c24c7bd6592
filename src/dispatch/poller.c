/* WatchPhoneCalls in front of UAPI, which has no event stream: List is
 * polled at an interval and the differences between two answers become
 * CREATED, UPDATED and ENDED events. One poller serves every watcher of
 * the same user, extension and credentials. The first answer is the
 * baseline: a watcher hears of changes after its stream opened, as it does
 * natively, and its response headers wait for that baseline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/base/base.h"
#include "src/dispatch/internal.h"

#define LIST_PAGE 5000

typedef struct {
  char *id;
  uint8_t *packed; /* the PhoneCall as last seen */
  size_t len;
} seen_t;

struct poller {
  usc_dispatch_t *dispatch;
  poller_t *next;
  poller_t *prev;
  char user[72];
  char extension[40];
  char *client_auth; /* the watchers' own authorization: part of the key */
  char *token;       /* the sidecar's credentials for the next poll, or NULL */
  rpc_t *watchers;   /* linked through rpc->next and rpc->prev */
  uv_timer_t timer;
  usc_upstream_req_t *request;
  usc_creds_waiter_t creds_wait;
  bool waiting_creds;
  bool has_baseline;
  arena_t arena;
  seen_t *seen; /* sorted by id */
  size_t n_seen;
};

/* ---- the set of calls last seen ---- */

static int compare_seen(const void *a, const void *b) {
  return strcmp(((const seen_t *)a)->id, ((const seen_t *)b)->id);
}

static void seen_free(seen_t *seen, size_t n) {
  for (size_t i = 0; i < n; i++) {
    usc_free(seen[i].id);
    usc_free(seen[i].packed);
  }
  usc_free(seen);
}

static int seen_take(seen_t *s, const Uapi__Phonecalls__V1__PhoneCall *call) {
  s->len = protobuf_c_message_get_packed_size(&call->base);
  s->id = usc_strdup(call->id);
  s->packed = usc_malloc(s->len + 1);
  if (s->id == NULL || s->packed == NULL) {
    usc_free(s->id);
    usc_free(s->packed);
    return USC_ERR_NOMEM;
  }
  protobuf_c_message_pack(&call->base, s->packed);
  return 0;
}

static int seen_build(const Uapi__Phonecalls__V1__ListPhoneCallsResponse *list,
                      seen_t **out, size_t *n_out) {
  seen_t *seen = usc_calloc(list->n_phone_calls + 1, sizeof(*seen));
  if (seen == NULL)
    return USC_ERR_NOMEM;
  for (size_t i = 0; i < list->n_phone_calls; i++) {
    if (seen_take(&seen[i], list->phone_calls[i]) != 0) {
      seen_free(seen, i);
      return USC_ERR_NOMEM;
    }
  }
  qsort(seen, list->n_phone_calls, sizeof(*seen), compare_seen);
  *out = seen;
  *n_out = list->n_phone_calls;
  return 0;
}

/* ---- events ---- */

static void pack_event(const void *message, uint8_t *out) {
  protobuf_c_message_pack(message, out);
}

static void broadcast(poller_t *p,
                      Uapi__Phonecalls__V1__PhoneCallEvent__Type type,
                      const seen_t *call) {
  Uapi__Phonecalls__V1__PhoneCall *pb =
      uapi__phonecalls__v1__phone_call__unpack(&p->arena.allocator, call->len,
                                               call->packed);
  int64_t now = dispatch_now_ns(p->dispatch);
  Google__Protobuf__Timestamp time = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  time.seconds = now / 1000000000;
  time.nanos = (int32_t)(now % 1000000000);
  Uapi__Phonecalls__V1__PhoneCallEvent event =
      UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__INIT;
  event.type = type;
  event.phone_call = pb;
  event.time = &time;
  size_t len = protobuf_c_message_get_packed_size(&event.base);
  rpc_t *next;
  for (rpc_t *w = p->watchers; pb != NULL && w != NULL; w = next) {
    next = w->next;
    if (usc_h2_call_send_message(w->call, len, pack_event, &event) != 0) {
      poller_unwatch(w);
      rpc_finish(w, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
                 "cannot queue a watch event");
    }
  }
}

/* Walks both sorted sets at once. */
static void diff(poller_t *p, const seen_t *now, size_t n_now) {
  size_t i = 0, j = 0;
  while (i < p->n_seen || j < n_now) {
    int c = i == p->n_seen ? 1
            : j == n_now   ? -1
                           : strcmp(p->seen[i].id, now[j].id);
    if (c < 0) {
      broadcast(p, UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__TYPE__ENDED,
                &p->seen[i++]);
    } else if (c > 0) {
      broadcast(p, UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__TYPE__CREATED,
                &now[j++]);
    } else {
      if (p->seen[i].len != now[j].len ||
          memcmp(p->seen[i].packed, now[j].packed, now[j].len) != 0)
        broadcast(p, UAPI__PHONECALLS__V1__PHONE_CALL_EVENT__TYPE__UPDATED,
                  &now[j]);
      i++;
      j++;
    }
  }
}

static void go_live(poller_t *p) {
  p->has_baseline = true;
  for (rpc_t *w = p->watchers; w != NULL; w = w->next)
    rpc_open_stream(w);
}

/* ---- polling ---- */

/* An upstream that refuses the watch (bad address, credentials, access)
 * will not change its mind: the streams end with its answer. Anything
 * else may pass, and the next poll tries again. */
static bool is_refusal(usc_grpc_status_t status) {
  switch (status) {
  case USC_GRPC_INVALID_ARGUMENT:
  case USC_GRPC_NOT_FOUND:
  case USC_GRPC_PERMISSION_DENIED:
  case USC_GRPC_UNAUTHENTICATED:
  case USC_GRPC_FAILED_PRECONDITION:
  case USC_GRPC_UNIMPLEMENTED:
    return true;
  default:
    return false;
  }
}

static void end_watchers(poller_t *p, const usc_xlate_error_t *err) {
  while (p->watchers != NULL) {
    rpc_t *w = p->watchers;
    poller_unwatch(w);
    rpc_finish(w, err->status, err->code[0] ? err->code : NULL, err->message);
  }
}

static void schedule(poller_t *p);

static void take_answer(poller_t *p, const usc_upstream_result_t *r) {
  Uapi__Phonecalls__V1__ListPhoneCallsRequest req =
      UAPI__PHONECALLS__V1__LIST_PHONE_CALLS_REQUEST__INIT;
  req.user_id = p->user;
  req.extension = p->extension;
  usc_xlate_answer_t answer = {
      .rpc = USC_XLATE_LIST,
      .request = &req.base,
      .http_status = r->status,
      .body = r->body,
      .body_len = r->body_len,
      .map = p->dispatch->config.status_map,
      .allocator = &p->arena.allocator,
  };
  usc_xlate_result_t result;
  seen_t *now;
  size_t n_now;
  int outcome = usc_xlate_answer_parse(&answer, &result);
  if (outcome == USC_XLATE_FAILED && is_refusal(result.error.status)) {
    end_watchers(p, &result.error);
    return;
  }
  if (outcome != USC_XLATE_DONE ||
      seen_build((void *)result.response, &now, &n_now) != 0)
    return; /* the next poll tries again */
  mirror_answer(p->dispatch, &methods[0], &req.base, result.response);
  if (p->has_baseline)
    diff(p, now, n_now);
  else
    go_live(p);
  seen_free(p->seen, p->n_seen);
  p->seen = now;
  p->n_seen = n_now;
}

/* The auto backend: watchers still waiting for the first answer of an
 * upstream that cannot be reached go to the native engine. The last one
 * leaving stops the poller. */
static void watchers_to_native(poller_t *p) {
  while (p->watchers != NULL) {
    rpc_t *w = p->watchers;
    poller_unwatch(w);
    watch_natively(w, w->msg);
  }
}

static void on_polled(void *user, const usc_upstream_result_t *r) {
  poller_t *p = user;
  p->request = NULL;
  if (r->error == USC_UPSTREAM_CONNECT_FAILED)
    health_upstream(p->dispatch, false);
  else if (r->error == USC_UPSTREAM_OK)
    health_upstream(p->dispatch, true);
  if (r->error == USC_UPSTREAM_CONNECT_FAILED && !p->has_baseline &&
      p->dispatch->config.backend == USC_BACKEND_AUTO) {
    watchers_to_native(p);
    return;
  }
  if (r->error == USC_UPSTREAM_OK)
    take_answer(p, r);
  arena_reset(&p->arena);
  if (p->watchers != NULL)
    schedule(p);
}

static void send_poll(poller_t *p) {
  Google__Protobuf__Int32Value count = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
  count.value = LIST_PAGE;
  Uapi__Phonecalls__V1__ListPhoneCallsRequest req =
      UAPI__PHONECALLS__V1__LIST_PHONE_CALLS_REQUEST__INIT;
  req.user_id = p->user;
  req.extension = p->extension;
  req.count = &count;
  usc_xlate_request_t built;
  usc_xlate_error_t err;
  if (usc_xlate_request_build(USC_XLATE_LIST, &req.base, &built, &err) != 0) {
    schedule(p);
    return;
  }
  const char *auth = p->token != NULL ? p->token : p->client_auth;
  usc_upstream_header_t headers[2] = {{"accept", "application/json"},
                                      {"authorization", auth}};
  usc_upstream_request_t up = {
      .method = USC_UPSTREAM_GET,
      .path = built.target,
      .headers = headers,
      .n_headers = auth[0] ? 2 : 1,
      .done = on_polled,
      .user = p,
  };
  if (usc_upstream_request(p->dispatch->config.upstream, &up, &p->request))
    schedule(p);
  usc_xlate_request_free(&built);
}

static void on_poll_credentials(void *user, const usc_creds_result_t *creds) {
  poller_t *p = user;
  p->waiting_creds = false;
  if (creds->status != 0) {
    schedule(p);
    return;
  }
  usc_free(p->token);
  p->token =
      creds->authorization != NULL ? usc_strdup(creds->authorization) : NULL;
  if (creds->authorization != NULL && p->token == NULL) {
    schedule(p);
    return;
  }
  send_poll(p);
}

static void poll_now(poller_t *p) {
  if (p->dispatch->config.creds == NULL) {
    send_poll(p);
    return;
  }
  p->waiting_creds = true;
  usc_creds_get(p->dispatch->config.creds, &p->creds_wait, on_poll_credentials,
                p);
}

static void on_tick(uv_timer_t *timer) { poll_now(timer->data); }

static void schedule(poller_t *p) {
  uv_timer_start(&p->timer, on_tick, p->dispatch->config.watch_poll_ms, 0);
}

/* ---- pollers ---- */

static void on_poller_closed(uv_handle_t *handle) {
  poller_t *p = handle->data;
  usc_free(p->client_auth);
  usc_free(p->token);
  seen_free(p->seen, p->n_seen);
  arena_free(&p->arena);
  usc_free(p);
}

static void poller_stop(poller_t *p) {
  usc_dispatch_t *d = p->dispatch;
  if (p->request != NULL)
    usc_upstream_cancel(p->request);
  if (p->waiting_creds)
    usc_creds_cancel(&p->creds_wait);
  if (p->prev != NULL)
    p->prev->next = p->next;
  else
    d->pollers = p->next;
  if (p->next != NULL)
    p->next->prev = p->prev;
  uv_close((uv_handle_t *)&p->timer, on_poller_closed);
}

static poller_t *poller_find(usc_dispatch_t *d, const char *user,
                             const char *extension, const char *auth) {
  for (poller_t *p = d->pollers; p != NULL; p = p->next) {
    if (strcmp(p->user, user) == 0 && strcmp(p->extension, extension) == 0 &&
        strcmp(p->client_auth, auth) == 0)
      return p;
  }
  return NULL;
}

static poller_t *poller_new(usc_dispatch_t *d, const char *user,
                            const char *extension, const char *auth) {
  poller_t *p = usc_calloc(1, sizeof(*p));
  char *client_auth = usc_strdup(auth);
  if (p == NULL || client_auth == NULL) {
    usc_free(p);
    usc_free(client_auth);
    return NULL;
  }
  p->dispatch = d;
  p->client_auth = client_auth;
  snprintf(p->user, sizeof(p->user), "%s", user);
  snprintf(p->extension, sizeof(p->extension), "%s", extension);
  arena_init(&p->arena);
  uv_timer_init(d->config.loop, &p->timer);
  p->timer.data = p;
  p->next = d->pollers;
  if (d->pollers != NULL)
    d->pollers->prev = p;
  d->pollers = p;
  poll_now(p);
  return p;
}

static void join(poller_t *p, rpc_t *rpc) {
  rpc->poller = p;
  rpc->prev = NULL;
  rpc->next = p->watchers;
  if (p->watchers != NULL)
    p->watchers->prev = rpc;
  p->watchers = rpc;
  if (p->has_baseline)
    rpc_open_stream(rpc);
}

void poller_watch(rpc_t *rpc, const ProtobufCMessage *msg) {
  const Uapi__Phonecalls__V1__WatchPhoneCallsRequest *req = (const void *)msg;
  const char *user = req->user_id[0] ? req->user_id : "@me";
  const char *extension = req->extension[0] ? req->extension : "@self";
  Uapi__Phonecalls__V1__ListPhoneCallsRequest check =
      UAPI__PHONECALLS__V1__LIST_PHONE_CALLS_REQUEST__INIT;
  check.user_id = (char *)user;
  check.extension = (char *)extension;
  usc_xlate_error_t err;
  if (usc_xlate_request_check(USC_XLATE_LIST, &check.base, &err) != 0) {
    rpc_finish(rpc, err.status, err.code[0] ? err.code : NULL, err.message);
    return;
  }
  usc_dispatch_t *d = rpc->dispatch;
  /* The poller's user is part of its key: with access control it is the
   * token's user id, and the client's token, meant for the sidecar, is
   * not forwarded. */
  const char *auth = "";
  if (d->config.creds == NULL && d->access == NULL) {
    auth = usc_h2_call_header(rpc->call, "authorization");
    auth = auth != NULL ? auth : "";
  }
  poller_t *p = poller_find(d, user, extension, auth);
  if (p == NULL)
    p = poller_new(d, user, extension, auth);
  if (p == NULL) {
    rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL, "out of memory");
    return;
  }
  join(p, rpc);
}

void poller_unwatch(rpc_t *rpc) {
  poller_t *p = rpc->poller;
  rpc->poller = NULL;
  if (rpc->prev != NULL)
    rpc->prev->next = rpc->next;
  else
    p->watchers = rpc->next;
  if (rpc->next != NULL)
    rpc->next->prev = rpc->prev;
  rpc->next = rpc->prev = NULL;
  if (p->watchers == NULL)
    poller_stop(p);
}

void pollers_recheck(usc_dispatch_t *d, bool (*revoked)(rpc_t *rpc),
                     void (*end)(rpc_t *rpc)) {
  poller_t *next_poller;
  for (poller_t *p = d->pollers; p != NULL; p = next_poller) {
    /* A poller whose last watcher leaves is unlinked, not yet freed. */
    next_poller = p->next;
    rpc_t *next;
    for (rpc_t *w = p->watchers; w != NULL; w = next) {
      next = w->next;
      if (revoked(w)) {
        poller_unwatch(w);
        end(w);
      }
    }
  }
}

void pollers_end_streams(usc_dispatch_t *d) {
  while (d->pollers != NULL) {
    rpc_t *w = d->pollers->watchers;
    poller_unwatch(w);
    rpc_finish(w, USC_GRPC_OK, NULL, NULL);
  }
}

void pollers_close(usc_dispatch_t *d) {
  while (d->pollers != NULL)
    poller_stop(d->pollers);
}
