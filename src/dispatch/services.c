/* The standard gRPC services beside PhoneCallService, answered by the
 * sidecar itself:
 *   grpc.health.v1.Health: Check, List, and Watch (the status now, then
 *     every change, until the call ends or the server shuts down);
 *   grpc.reflection.v1[alpha].ServerReflection: one bidirectional stream,
 *     each request answered as it comes, from the FileDescriptorProtos
 *     generated at build time (proto/descriptor_index.h). v1alpha has the
 *     same messages and field numbers as v1: both are read and written
 *     with v1's code. */
#include <stdio.h>
#include <string.h>

#include "descriptor_index.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "src/base/base.h"
#include "src/dispatch/internal.h"
#include "src/log/log.h"

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_t;
typedef Grpc__Reflection__V1__ServerReflectionRequest refl_req_t;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_resp_t;

#define HS(name) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##name
#define REQ(name)                                                              \
  GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##name
#define RESP(name)                                                             \
  GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##name

/* ---- routing ---- */

static const method_t health_methods[] = {
    {"Check", KIND_HEALTH_CHECK, 0,
     &grpc__health__v1__health_check_request__descriptor},
    {"Watch", KIND_HEALTH_WATCH, 0,
     &grpc__health__v1__health_check_request__descriptor},
    {"List", KIND_HEALTH_LIST, 0,
     &grpc__health__v1__health_list_request__descriptor},
};

static const method_t reflection_methods[] = {
    {"ServerReflectionInfo", KIND_REFLECTION, 0,
     &grpc__reflection__v1__server_reflection_request__descriptor},
};

static const struct {
  const char *name;
  const method_t *methods;
  size_t n_methods;
} services[] = {
    {"grpc.health.v1.Health", health_methods, USC_ARRAY_LEN(health_methods)},
    {"grpc.reflection.v1.ServerReflection", reflection_methods,
     USC_ARRAY_LEN(reflection_methods)},
    {"grpc.reflection.v1alpha.ServerReflection", reflection_methods,
     USC_ARRAY_LEN(reflection_methods)},
};

static bool same(const char *a, size_t a_len, const char *b) {
  return strlen(b) == a_len && memcmp(a, b, a_len) == 0;
}

const method_t *service_method_find(const char *service, size_t service_len,
                                    const char *method, size_t method_len,
                                    bool *known_service) {
  for (size_t i = 0; i < USC_ARRAY_LEN(services); i++) {
    if (!same(service, service_len, services[i].name))
      continue;
    *known_service = true;
    for (size_t j = 0; j < services[i].n_methods; j++)
      if (same(method, method_len, services[i].methods[j].name))
        return &services[i].methods[j];
    return NULL;
  }
  *known_service = false;
  return NULL;
}

/* ---- the streams list ---- */

void stream_link(rpc_t *rpc) {
  usc_dispatch_t *d = rpc->dispatch;
  rpc->in_streams = true;
  rpc->prev = NULL;
  rpc->next = d->streams;
  if (d->streams != NULL)
    d->streams->prev = rpc;
  d->streams = rpc;
}

void stream_unlink(rpc_t *rpc) {
  if (!rpc->in_streams)
    return;
  if (rpc->prev != NULL)
    rpc->prev->next = rpc->next;
  else
    rpc->dispatch->streams = rpc->next;
  if (rpc->next != NULL)
    rpc->next->prev = rpc->prev;
  rpc->next = rpc->prev = NULL;
  rpc->in_streams = false;
}

/* ---- health ---- */

/* The services health checks know: "" is the server as a whole. */
static const char *const health_names[] = {"", SERVICE_NAME};

static int health_find(const char *service) {
  for (size_t i = 0; i < USC_ARRAY_LEN(health_names); i++)
    if (strcmp(service, health_names[i]) == 0)
      return (int)i;
  return -1;
}

static serving_t health_status(const usc_dispatch_t *d, int index) {
  if (d->not_serving)
    return HS(NOT_SERVING);
  /* In front of UAPI alone, PhoneCallService needs the upstream; the auto
   * backend's engine answers when it cannot be reached. */
  if (index == 1 && d->config.backend == USC_BACKEND_UAPI && d->upstream_down)
    return HS(NOT_SERVING);
  return HS(SERVING);
}

static int health_send(rpc_t *rpc, serving_t status) {
  Grpc__Health__V1__HealthCheckResponse resp =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = status;
  rpc->health_sent = (int)status;
  return rpc_send(rpc, &resp.base);
}

void health_notify(usc_dispatch_t *d) {
  rpc_t *next;
  for (rpc_t *rpc = d->streams; rpc != NULL; rpc = next) {
    next = rpc->next;
    if (rpc->method->kind != KIND_HEALTH_WATCH || rpc->health_index < 0)
      continue;
    serving_t status = health_status(d, rpc->health_index);
    if ((int)status == rpc->health_sent)
      continue;
    if (health_send(rpc, status) != 0) {
      /* A watcher that cannot keep up is ended rather than misinformed. */
      stream_unlink(rpc);
      rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
                 "cannot queue a health status");
    }
  }
}

void health_upstream(usc_dispatch_t *d, bool reachable) {
  if (d->config.backend != USC_BACKEND_UAPI || d->upstream_down == !reachable)
    return;
  d->upstream_down = !reachable;
  usc_log(reachable ? USC_LOG_INFO : USC_LOG_WARN,
          reachable ? "upstream reachable" : "upstream unreachable",
          "health=%s service=" SERVICE_NAME,
          reachable ? "SERVING" : "NOT_SERVING");
  health_notify(d);
}

static void health_check(rpc_t *rpc, const char *service) {
  int index = health_find(service);
  if (index < 0) {
    rpc_finish(rpc, USC_GRPC_NOT_FOUND, NULL, "unknown service");
    return;
  }
  Grpc__Health__V1__HealthCheckResponse resp =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = health_status(rpc->dispatch, index);
  rpc_reply(rpc, &resp.base);
}

static void health_watch(rpc_t *rpc, const char *service) {
  rpc->health_index = health_find(service);
  stream_link(rpc);
  rpc_open_stream(rpc);
  serving_t status = rpc->health_index < 0
                         ? HS(SERVICE_UNKNOWN)
                         : health_status(rpc->dispatch, rpc->health_index);
  if (health_send(rpc, status) != 0) {
    stream_unlink(rpc);
    rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
               "cannot queue a health status");
  }
}

static void health_list(rpc_t *rpc) {
  enum { N = USC_ARRAY_LEN(health_names) };
  Grpc__Health__V1__HealthListResponse__StatusesEntry entries[N], *pointers[N];
  Grpc__Health__V1__HealthCheckResponse statuses[N];
  for (size_t i = 0; i < N; i++) {
    statuses[i] = (Grpc__Health__V1__HealthCheckResponse)
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    statuses[i].status = health_status(rpc->dispatch, (int)i);
    entries[i] = (Grpc__Health__V1__HealthListResponse__StatusesEntry)
        GRPC__HEALTH__V1__HEALTH_LIST_RESPONSE__STATUSES_ENTRY__INIT;
    entries[i].key = (char *)health_names[i];
    entries[i].value = &statuses[i];
    pointers[i] = &entries[i];
  }
  Grpc__Health__V1__HealthListResponse resp =
      GRPC__HEALTH__V1__HEALTH_LIST_RESPONSE__INIT;
  resp.n_statuses = N;
  resp.statuses = pointers;
  rpc_reply(rpc, &resp.base);
}

void services_run(rpc_t *rpc, const uint8_t *request, size_t len) {
  usc_dispatch_t *d = rpc->dispatch;
  const char *why;
  ProtobufCMessage *msg =
      request_decode(rpc->method->request, &d->arena, request, len, &why);
  if (msg == NULL) {
    rpc_finish(rpc, USC_GRPC_INTERNAL, NULL, why);
    return;
  }
  switch (rpc->method->kind) {
  case KIND_HEALTH_CHECK:
    health_check(rpc, ((Grpc__Health__V1__HealthCheckRequest *)msg)->service);
    break;
  case KIND_HEALTH_WATCH:
    health_watch(rpc, ((Grpc__Health__V1__HealthCheckRequest *)msg)->service);
    break;
  case KIND_HEALTH_LIST:
    health_list(rpc);
    break;
  default:
    rpc_finish(rpc, USC_GRPC_INTERNAL, NULL, "not a health method");
    break;
  }
  arena_reset(&d->arena);
}

/* ---- reflection ---- */

static int file_named(const char *name) {
  for (size_t i = 0; i < usc_descriptor_n_files; i++)
    if (strcmp(usc_descriptor_files[i].name, name) == 0)
      return (int)i;
  return -1;
}

static bool in_list(const char *const *list, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i], name) == 0)
      return true;
  return false;
}

/* The file defining `symbol` (a leading dot allowed), or -1. */
static int file_defining(const char *symbol, bool messages_only) {
  if (symbol[0] == '.')
    symbol++;
  for (size_t i = 0; i < usc_descriptor_n_files; i++) {
    const usc_descriptor_file_t *f = &usc_descriptor_files[i];
    if (messages_only ? in_list(f->messages, f->n_messages, symbol)
                      : in_list(f->symbols, f->n_symbols, symbol))
      return (int)i;
  }
  return -1;
}

/* The file `index` first, then every file it imports, directly or not,
 * each once. */
static Grpc__Reflection__V1__FileDescriptorResponse *
file_response(arena_t *arena, int index) {
  size_t n = usc_descriptor_n_files;
  Grpc__Reflection__V1__FileDescriptorResponse *fr =
      arena_alloc(arena, sizeof(*fr));
  ProtobufCBinaryData *files = arena_alloc(arena, n * sizeof(*files));
  bool *seen = arena_alloc(arena, n * sizeof(*seen));
  uint16_t *queue = arena_alloc(arena, n * sizeof(*queue));
  if (fr == NULL || files == NULL || seen == NULL || queue == NULL)
    return NULL;
  *fr = (Grpc__Reflection__V1__FileDescriptorResponse)
      GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
  memset(seen, 0, n * sizeof(*seen));
  size_t head = 0, tail = 0;
  queue[tail++] = (uint16_t)index;
  seen[index] = true;
  while (head < tail) {
    const usc_descriptor_file_t *f = &usc_descriptor_files[queue[head++]];
    files[fr->n_file_descriptor_proto++] =
        (ProtobufCBinaryData){f->len, (uint8_t *)f->data};
    for (size_t i = 0; i < f->n_deps; i++) {
      if (!seen[f->deps[i]]) {
        seen[f->deps[i]] = true;
        queue[tail++] = f->deps[i];
      }
    }
  }
  fr->file_descriptor_proto = files;
  return fr;
}

static bool set_error(arena_t *arena, refl_resp_t *resp, usc_grpc_status_t code,
                      const char *what, const char *name) {
  Grpc__Reflection__V1__ErrorResponse *err = arena_alloc(arena, sizeof(*err));
  char *message = arena_alloc(arena, 320);
  if (err == NULL || message == NULL)
    return false;
  *err = (Grpc__Reflection__V1__ErrorResponse)
      GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
  snprintf(message, 320, "%s%.256s", what, name);
  err->error_code = (int32_t)code;
  err->error_message = message;
  resp->message_response_case = RESP(ERROR_RESPONSE);
  resp->error_response = err;
  return true;
}

static bool set_files(arena_t *arena, refl_resp_t *resp, int index) {
  resp->file_descriptor_response = file_response(arena, index);
  resp->message_response_case = RESP(FILE_DESCRIPTOR_RESPONSE);
  return resp->file_descriptor_response != NULL;
}

static bool set_services(arena_t *arena, refl_resp_t *resp) {
  size_t n = usc_descriptor_n_services;
  Grpc__Reflection__V1__ListServiceResponse *list =
      arena_alloc(arena, sizeof(*list));
  Grpc__Reflection__V1__ServiceResponse *items =
      arena_alloc(arena, n * sizeof(*items));
  Grpc__Reflection__V1__ServiceResponse **pointers =
      arena_alloc(arena, n * sizeof(*pointers));
  if (list == NULL || items == NULL || pointers == NULL)
    return false;
  *list = (Grpc__Reflection__V1__ListServiceResponse)
      GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
  for (size_t i = 0; i < n; i++) {
    items[i] = (Grpc__Reflection__V1__ServiceResponse)
        GRPC__REFLECTION__V1__SERVICE_RESPONSE__INIT;
    items[i].name = (char *)usc_descriptor_services[i];
    pointers[i] = &items[i];
  }
  list->n_service = n;
  list->service = pointers;
  resp->message_response_case = RESP(LIST_SERVICES_RESPONSE);
  resp->list_services_response = list;
  return true;
}

/* proto3 files have no extensions: a known message type has none. */
static bool set_extension_numbers(arena_t *arena, refl_resp_t *resp,
                                  const char *type) {
  if (file_defining(type, true) < 0)
    return set_error(arena, resp, USC_GRPC_NOT_FOUND, "unknown type: ", type);
  Grpc__Reflection__V1__ExtensionNumberResponse *numbers =
      arena_alloc(arena, sizeof(*numbers));
  if (numbers == NULL)
    return false;
  *numbers = (Grpc__Reflection__V1__ExtensionNumberResponse)
      GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
  numbers->base_type_name = (char *)(type[0] == '.' ? type + 1 : type);
  resp->message_response_case = RESP(ALL_EXTENSION_NUMBERS_RESPONSE);
  resp->all_extension_numbers_response = numbers;
  return true;
}

/* Fills `resp` for `req`; false when out of memory. */
static bool answer(arena_t *arena, const refl_req_t *req, refl_resp_t *resp) {
  int index;
  switch (req->message_request_case) {
  case REQ(LIST_SERVICES):
    return set_services(arena, resp);
  case REQ(FILE_BY_FILENAME):
    index = file_named(req->file_by_filename);
    if (index < 0)
      return set_error(arena, resp, USC_GRPC_NOT_FOUND,
                       "unknown file: ", req->file_by_filename);
    return set_files(arena, resp, index);
  case REQ(FILE_CONTAINING_SYMBOL):
    index = file_defining(req->file_containing_symbol, false);
    if (index < 0)
      return set_error(arena, resp, USC_GRPC_NOT_FOUND,
                       "unknown symbol: ", req->file_containing_symbol);
    return set_files(arena, resp, index);
  case REQ(FILE_CONTAINING_EXTENSION):
    return set_error(arena, resp, USC_GRPC_NOT_FOUND,
                     "no extensions are defined; extended type: ",
                     req->file_containing_extension->containing_type);
  case REQ(ALL_EXTENSION_NUMBERS_OF_TYPE):
    return set_extension_numbers(arena, resp,
                                 req->all_extension_numbers_of_type);
  default:
    return set_error(arena, resp, USC_GRPC_INVALID_ARGUMENT,
                     "the request asks for nothing", "");
  }
}

void reflection_message(rpc_t *rpc, const uint8_t *request, size_t len) {
  arena_t *arena = &rpc->dispatch->arena;
  const char *why;
  refl_req_t *req = (refl_req_t *)request_decode(rpc->method->request, arena,
                                                 request, len, &why);
  if (req == NULL) {
    stream_unlink(rpc);
    rpc_finish(rpc, USC_GRPC_INTERNAL, NULL, why);
    return;
  }
  refl_resp_t resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
  resp.valid_host = req->host;
  resp.original_request = req;
  int rc =
      answer(arena, req, &resp) ? rpc_send(rpc, &resp.base) : USC_ERR_NOMEM;
  arena_reset(arena);
  if (rc != 0) {
    stream_unlink(rpc);
    rpc_finish(rpc, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
               "cannot queue a reflection response");
  }
}
