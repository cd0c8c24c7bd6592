#include "src/dispatch/fake_h2.h"

#include <stdlib.h>
#include <string.h>

#include "src/base/base.h"

static char *copy(const char *s) {
  if (s == NULL)
    return NULL;
  char *c = strdup(s);
  if (c == NULL)
    abort();
  return c;
}

static void kv_set(fake_h2_kv_t *kv, const char *name, const char *value) {
  kv->name = copy(name);
  kv->value = copy(value);
}

static void kv_free(fake_h2_kv_t *kv, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(kv[i].name);
    free(kv[i].value);
  }
}

static const char *kv_find(const fake_h2_kv_t *kv, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i].name, name) == 0)
      return kv[i].value;
  return NULL;
}

/* Counts a use of a call the handler no longer owns. */
static void check_open(const usc_h2_call_t *call) {
  if (call->finished || call->cancelled)
    ((usc_h2_call_t *)call)->violations++;
}

usc_h2_call_t *fake_h2_call_new(void) {
  usc_h2_call_t *call = calloc(1, sizeof(*call));
  if (call == NULL)
    abort();
  call->peer = "127.0.0.1:40000";
  return call;
}

void fake_h2_call_free(usc_h2_call_t *call) {
  if (call == NULL)
    return;
  kv_free(call->metadata, call->n_metadata);
  kv_free(call->trailers, call->n_trailers);
  for (size_t i = 0; i < call->n_messages; i++)
    free(call->messages[i].data);
  free(call->messages);
  free(call->message);
  free(call);
}

const char *fake_h2_metadata(const usc_h2_call_t *call, const char *name) {
  return kv_find(call->metadata, call->n_metadata, name);
}

const char *fake_h2_trailer(const usc_h2_call_t *call, const char *name) {
  return kv_find(call->trailers, call->n_trailers, name);
}

/* ---- the transport API ---- */

void usc_h2_call_set_user(usc_h2_call_t *call, void *user) {
  check_open(call);
  call->user = user;
}

void *usc_h2_call_user(const usc_h2_call_t *call) {
  check_open(call);
  return call->user;
}

const char *usc_h2_call_header(const usc_h2_call_t *call, const char *name) {
  check_open(call);
  if (strcmp(name, "authorization") == 0)
    return call->authorization;
  return strcmp(name, "x-request-id") == 0 ? call->request_id : NULL;
}

uint64_t usc_h2_call_deadline(const usc_h2_call_t *call) {
  check_open(call);
  return 0;
}

const char *usc_h2_call_peer(const usc_h2_call_t *call) {
  check_open(call);
  return call->peer;
}

int usc_h2_call_add_initial_metadata(usc_h2_call_t *call, const char *name,
                                     const char *value) {
  check_open(call);
  if (call->headers_sent) {
    call->violations++;
    return USC_ERR_STATE;
  }
  if (call->n_metadata == FAKE_H2_MAX_METADATA)
    return USC_ERR_FULL;
  kv_set(&call->metadata[call->n_metadata++], name, value);
  return 0;
}

int usc_h2_call_send_headers(usc_h2_call_t *call) {
  check_open(call);
  if (call->headers_sent)
    return USC_ERR_STATE;
  call->headers_sent = true;
  return 0;
}

int usc_h2_call_send_message(usc_h2_call_t *call, size_t len,
                             usc_h2_pack_fn pack, const void *message) {
  check_open(call);
  if (call->fail_sends > 0) {
    call->fail_sends--;
    return USC_ERR_NOMEM;
  }
  /* Exactly `len` bytes (at least one for malloc), so that a pack
   * writing more is a heap overflow under ASan. */
  uint8_t *data = malloc(len > 0 ? len : 1);
  fake_h2_msg_t *grown =
      realloc(call->messages, (call->n_messages + 1) * sizeof(*grown));
  if (data == NULL || grown == NULL)
    abort();
  pack(message, data);
  call->messages = grown;
  call->messages[call->n_messages++] = (fake_h2_msg_t){data, len};
  call->headers_sent = true;
  return 0;
}

void usc_h2_call_finish(usc_h2_call_t *call, usc_grpc_status_t status,
                        const char *message, const usc_h2_header_t *trailers,
                        size_t n_trailers) {
  check_open(call);
  if (call->finished)
    return;
  call->finished = true;
  call->status = status;
  call->message = copy(message);
  if (n_trailers > FAKE_H2_MAX_TRAILERS) {
    call->violations++;
    n_trailers = FAKE_H2_MAX_TRAILERS;
  }
  for (size_t i = 0; i < n_trailers; i++)
    kv_set(&call->trailers[i], trailers[i].name, trailers[i].value);
  call->n_trailers = n_trailers;
}
