/* A fake of the h2 transport's call API (src/h2/h2.h) for dispatch's
 * tests: a call records what the handler does with it (initial metadata,
 * headers, messages, the final status and trailers) for the test to read,
 * and counts uses the real transport forbids (anything after finish or
 * cancel, metadata after headers). Its own memory comes from malloc, not
 * usc_malloc, so allocation-failure tests see the handler's only. */
#ifndef USC_DISPATCH_FAKE_H2_H
#define USC_DISPATCH_FAKE_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/h2/h2.h"

#define FAKE_H2_MAX_METADATA 8 /* the transport's limit */
#define FAKE_H2_MAX_TRAILERS 8

typedef struct {
  char *name;
  char *value;
} fake_h2_kv_t;

typedef struct {
  uint8_t *data;
  size_t len;
} fake_h2_msg_t;

struct usc_h2_call {
  void *user;
  const char *peer;
  const char *request_id;    /* the x-request-id header, or NULL */
  const char *authorization; /* the authorization header, or NULL */
  int fail_sends;            /* send_message fails while > 0 (decremented) */

  fake_h2_kv_t metadata[FAKE_H2_MAX_METADATA];
  size_t n_metadata;
  bool headers_sent; /* explicitly, or with the first message */
  fake_h2_msg_t *messages;
  size_t n_messages;

  bool finished;
  usc_grpc_status_t status;
  char *message; /* NULL when finish got NULL */
  fake_h2_kv_t trailers[FAKE_H2_MAX_TRAILERS];
  size_t n_trailers;

  bool cancelled; /* set by the test once on_cancel has returned */
  int violations; /* uses the transport's contract forbids */
};

usc_h2_call_t *fake_h2_call_new(void);
void fake_h2_call_free(usc_h2_call_t *call); /* accepts NULL */

/* The value of an initial metadata entry or trailer, or NULL. */
const char *fake_h2_metadata(const usc_h2_call_t *call, const char *name);
const char *fake_h2_trailer(const usc_h2_call_t *call, const char *name);

#endif
