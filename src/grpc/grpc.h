/* grpc: the pure parts of the gRPC over HTTP/2 protocol. No I/O.
 * Status codes and names, incremental 5-byte message (de)framing,
 * grpc-timeout parsing, grpc-message percent-encoding, and the
 * google.rpc.Status + google.rpc.ErrorInfo encoding carried in
 * grpc-status-details-bin. */
#ifndef USC_GRPC_H
#define USC_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  USC_GRPC_OK = 0,
  USC_GRPC_CANCELLED = 1,
  USC_GRPC_UNKNOWN = 2,
  USC_GRPC_INVALID_ARGUMENT = 3,
  USC_GRPC_DEADLINE_EXCEEDED = 4,
  USC_GRPC_NOT_FOUND = 5,
  USC_GRPC_ALREADY_EXISTS = 6,
  USC_GRPC_PERMISSION_DENIED = 7,
  USC_GRPC_RESOURCE_EXHAUSTED = 8,
  USC_GRPC_FAILED_PRECONDITION = 9,
  USC_GRPC_ABORTED = 10,
  USC_GRPC_OUT_OF_RANGE = 11,
  USC_GRPC_UNIMPLEMENTED = 12,
  USC_GRPC_INTERNAL = 13,
  USC_GRPC_UNAVAILABLE = 14,
  USC_GRPC_DATA_LOSS = 15,
  USC_GRPC_UNAUTHENTICATED = 16,
} usc_grpc_status_t;

/* "OK", "CANCELLED", ... "UNAUTHENTICATED"; "UNKNOWN" for values out of
 * range. Static strings. */
const char *usc_grpc_status_name(usc_grpc_status_t status);

/* The decimal text of the status for the grpc-status header ("0".."16").
 * Static strings. */
const char *usc_grpc_status_text(usc_grpc_status_t status);

#define USC_GRPC_FRAME_HEADER_LEN 5

/* Incremental deframer for length-prefixed messages: bytes may arrive split
 * in any way. A message whose declared length exceeds max_len is refused as
 * soon as its 5-byte header is seen, before anything is buffered. A message
 * split across feeds is buffered in `body`, which grows with the bytes
 * received (at most twice them, and at most the declared length). */
typedef struct {
  size_t max_len;
  uint8_t header[USC_GRPC_FRAME_HEADER_LEN];
  size_t header_got;
  uint8_t *body; /* owned; reused between messages */
  size_t body_cap;
  size_t body_len; /* declared length of the current message */
  size_t body_got;
} usc_grpc_deframer_t;

/* Called for each complete message. `data` is valid only during the call.
 * Return 0 to go on, non-zero to stop feeding (returned by feed). */
typedef int (*usc_grpc_on_message_fn)(void *user, bool compressed,
                                      const uint8_t *data, size_t len);

void usc_grpc_deframer_init(usc_grpc_deframer_t *d, size_t max_len);
void usc_grpc_deframer_free(usc_grpc_deframer_t *d); /* accepts zeroed */

/* Feeds `len` bytes. Returns 0, USC_ERR_TOO_LARGE (a declared length over
 * max_len; *declared_len tells it if not NULL), USC_ERR_INVALID (a flags
 * byte other than 0 or 1), USC_ERR_NOMEM, or the callback's non-zero value.
 * After an error the deframer must not be fed again. */
int usc_grpc_deframer_feed(usc_grpc_deframer_t *d, const uint8_t *data,
                           size_t len, usc_grpc_on_message_fn on_message,
                           void *user, uint64_t *declared_len);

/* True while a message is partly received (a half-close now means a
 * truncated message). */
bool usc_grpc_deframer_partial(const usc_grpc_deframer_t *d);

/* Writes the 5-byte prefix of an uncompressed message of `len` bytes. */
void usc_grpc_frame_header(uint8_t out[USC_GRPC_FRAME_HEADER_LEN],
                           uint32_t len);

/* Parses a grpc-timeout value (1 to 8 ASCII digits and a unit among
 * H M S m u n) into nanoseconds, saturating at INT64_MAX.
 * Returns 0 or USC_ERR_INVALID. */
int usc_grpc_timeout_parse(const char *value, size_t len, int64_t *timeout_ns);

/* Percent-encodes `len` bytes for grpc-message: bytes outside 0x20..0x7E
 * and '%' become %XX (upper-case hex). Writes at most `cap` bytes plus a
 * NUL, truncating only between encoded units. Returns the length written
 * (without the NUL). */
size_t usc_grpc_percent_encode(const char *in, size_t len, char *out,
                               size_t cap);

/* Decodes %XX sequences; malformed sequences are kept as they are.
 * Returns the length written; `out` gets at most `cap` bytes plus NUL. */
size_t usc_grpc_percent_decode(const char *in, size_t len, char *out,
                               size_t cap);

/* Serialises a google.rpc.Status{code, message, details: [Any{
 * type_url: "type.googleapis.com/google.rpc.ErrorInfo", value: ErrorInfo{
 * reason, domain}}]} (no detail when reason is NULL or empty) and
 * base64-encodes it (standard alphabet, no padding) for
 * grpc-status-details-bin. Returns the encoded length, or 0 when `cap`
 * is too small; `out` is NUL-terminated. */
size_t usc_grpc_status_details_bin(usc_grpc_status_t code, const char *message,
                                   const char *reason, const char *domain,
                                   char *out, size_t cap);

/* Standard base64 without padding. Returns the length written or 0 when
 * `cap` (which must leave room for a NUL) is too small. */
size_t usc_grpc_base64_encode(const uint8_t *in, size_t len, char *out,
                              size_t cap);

/* ---- compression (gRPC compression spec: "gzip" message encoding) ----
 * gzip.c; links -lz. */

/* True when a grpc-accept-encoding (or grpc-encoding) value, a
 * comma-separated list of names (spaces around them ignored, names
 * compared case-insensitively), names `name`, e.g. "gzip". */
bool usc_grpc_encoding_listed(const char *value, size_t len, const char *name);

/* Inflates the gzip data `in` (exactly one gzip member, nothing after
 * it) into *buf, a usc_malloc'd buffer of *buf_cap bytes (NULL and 0 at
 * first) that is grown as needed and kept for the next call; the caller
 * frees it. Output is never more than `max_out` bytes and *buf never grows
 * past max_out (plus a small minimum), so a "zip bomb" costs at most
 * that. Returns 0 with *out_len set, USC_ERR_TOO_LARGE (the data inflates
 * to more than max_out), USC_ERR_INVALID (not gzip, corrupt, truncated,
 * or trailing bytes) or USC_ERR_NOMEM. */
int usc_grpc_gunzip(const uint8_t *in, size_t in_len, size_t max_out,
                    uint8_t **buf, size_t *buf_cap, size_t *out_len);

/* The most bytes usc_grpc_gzip can write for `len` input bytes. */
size_t usc_grpc_gzip_bound(size_t len);

/* Compresses `in` into one gzip member in `out` (`cap` bytes; with
 * usc_grpc_gzip_bound(len) it always fits). Returns 0 with *out_len set,
 * USC_ERR_TOO_LARGE (does not fit in cap) or USC_ERR_NOMEM. */
int usc_grpc_gzip(const uint8_t *in, size_t len, uint8_t *out, size_t cap,
                  size_t *out_len);

#endif
