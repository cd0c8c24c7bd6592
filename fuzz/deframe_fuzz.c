/* gRPC message deframing: the fuzzer's bytes, fed to the deframer in
 * pieces of the sizes it chooses, must give the messages (and the error,
 * and the partial state) that one simple reading of the whole stream
 * gives; compressed messages are inflated with the sidecar's gunzip.
 *
 * Input: a byte choosing max_len, a byte naming the message whose
 * callback stops the feed (0: none), four bytes of piece sizes used in
 * turn (0: the rest at once), then the stream. */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "src/base/base.h"
#include "src/grpc/grpc.h"

#define MAX_MESSAGES 4096
#define STOP_VALUE 77
#define INFLATE_MAX 4096

typedef struct {
  const uint8_t *data; /* within the stream */
  size_t len;
  bool compressed;
} message_t;

typedef struct {
  message_t *want;
  size_t n_want;
  size_t got;
  size_t stop_at; /* 1-based; 0 = never */
  uint8_t *inflated;
  size_t inflated_cap;
} check_t;

static const size_t max_lens[] = {0, 1, 5, 16, 100, 1024, 65536, 4u << 20};

/* The whole stream, read the plain way: the messages, then the error the
 * deframer must report (0 when none) and whether a message is left
 * unfinished. */
static int reference(const uint8_t *p, size_t len, size_t max_len,
                     message_t *out, size_t *n, bool *partial) {
  *n = 0;
  *partial = false;
  while (len > 0) {
    if (len < USC_GRPC_FRAME_HEADER_LEN) {
      *partial = true;
      return 0;
    }
    if (p[0] > 1)
      return USC_ERR_INVALID;
    uint32_t body = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[3] << 8 | p[4];
    if (body > max_len)
      return USC_ERR_TOO_LARGE;
    if (len - USC_GRPC_FRAME_HEADER_LEN < body) {
      *partial = true;
      return 0;
    }
    FUZZ_CHECK(*n < MAX_MESSAGES);
    out[(*n)++] = (message_t){p + USC_GRPC_FRAME_HEADER_LEN, body, p[0] == 1};
    p += USC_GRPC_FRAME_HEADER_LEN + body;
    len -= USC_GRPC_FRAME_HEADER_LEN + body;
  }
  return 0;
}

static int on_message(void *user, bool compressed, const uint8_t *data,
                      size_t len) {
  check_t *c = user;
  FUZZ_CHECK(data != NULL);
  FUZZ_CHECK(c->got < c->n_want);
  const message_t *m = &c->want[c->got++];
  FUZZ_CHECK(m->compressed == compressed);
  FUZZ_CHECK(m->len == len);
  FUZZ_CHECK(len == 0 || memcmp(m->data, data, len) == 0);
  if (compressed) {
    size_t n = 0;
    int rc = usc_grpc_gunzip(data, len, INFLATE_MAX, &c->inflated,
                             &c->inflated_cap, &n);
    FUZZ_CHECK(rc == 0 || rc == USC_ERR_TOO_LARGE || rc == USC_ERR_INVALID);
    FUZZ_CHECK(rc != 0 || n <= INFLATE_MAX);
    FUZZ_CHECK(rc != 0 || n == 0 || c->inflated != NULL);
  }
  return c->got == c->stop_at ? STOP_VALUE : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_input_t in = {data, size};
  size_t max_len = max_lens[fuzz_take_byte(&in) % USC_ARRAY_LEN(max_lens)];
  size_t stop_at = fuzz_take_byte(&in);
  uint8_t pieces[4];
  for (size_t i = 0; i < 4; i++)
    pieces[i] = fuzz_take_byte(&in);

  static message_t want[MAX_MESSAGES];
  size_t n_want;
  bool partial;
  int want_rc = reference(in.data, in.len, max_len, want, &n_want, &partial);
  if (stop_at != 0 && stop_at <= n_want) {
    want_rc = STOP_VALUE;
    n_want = stop_at;
    partial = false;
  }

  check_t c = {.want = want, .n_want = n_want, .stop_at = stop_at};
  usc_grpc_deframer_t d;
  usc_grpc_deframer_init(&d, max_len);
  int rc = 0;
  uint64_t declared = 0;
  for (size_t i = 0; rc == 0 && in.len > 0; i++) {
    size_t n;
    const uint8_t *piece =
        fuzz_take(&in, pieces[i % 4] ? pieces[i % 4] : in.len, &n);
    rc = usc_grpc_deframer_feed(&d, piece, n, on_message, &c, &declared);
  }
  FUZZ_CHECK(rc == want_rc);
  FUZZ_CHECK(c.got == n_want);
  if (rc == USC_ERR_TOO_LARGE)
    FUZZ_CHECK(declared > max_len);
  if (rc == 0)
    FUZZ_CHECK(usc_grpc_deframer_partial(&d) == partial);
  usc_grpc_deframer_free(&d);
  usc_free(c.inflated);
  return 0;
}
