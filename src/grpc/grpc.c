#include "src/grpc/grpc.h"

#include <string.h>

#include "src/base/base.h"

static const char *const status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

static const char *const status_texts[] = {
    "0", "1",  "2",  "3",  "4",  "5",  "6",  "7",  "8",
    "9", "10", "11", "12", "13", "14", "15", "16",
};

/* The enum may hold any int, so clamp rather than index blindly. */
static unsigned status_index(usc_grpc_status_t status) {
  unsigned i = (unsigned)status;
  return i < USC_ARRAY_LEN(status_names) ? i : USC_GRPC_UNKNOWN;
}

const char *usc_grpc_status_name(usc_grpc_status_t status) {
  return status_names[status_index(status)];
}

const char *usc_grpc_status_text(usc_grpc_status_t status) {
  return status_texts[status_index(status)];
}

/* ---- Deframing ---- */

void usc_grpc_deframer_init(usc_grpc_deframer_t *d, size_t max_len) {
  memset(d, 0, sizeof(*d));
  d->max_len = max_len;
}

void usc_grpc_deframer_free(usc_grpc_deframer_t *d) {
  usc_free(d->body);
  d->body = NULL;
  d->body_cap = 0;
}

bool usc_grpc_deframer_partial(const usc_grpc_deframer_t *d) {
  return d->header_got > 0;
}

void usc_grpc_frame_header(uint8_t out[USC_GRPC_FRAME_HEADER_LEN],
                           uint32_t len) {
  out[0] = 0;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

static uint32_t header_len(const uint8_t *h) {
  return (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 |
         (uint32_t)h[4];
}

/* Checks a complete header; a refused message has nothing buffered yet. */
static int start_body(usc_grpc_deframer_t *d, uint64_t *declared_len) {
  uint32_t len = header_len(d->header);
  if (d->header[0] > 1)
    return USC_ERR_INVALID;
  if (len > d->max_len) {
    if (declared_len != NULL)
      *declared_len = len;
    return USC_ERR_TOO_LARGE;
  }
  d->body_len = len;
  d->body_got = 0;
  return USC_OK;
}

/* Room for `n` more bytes of the current message. The buffer grows with
 * the bytes that come, doubling, and never past the declared length: a
 * prefix that promises max_len bytes and sends a few costs a few. */
static int ensure_body_cap(usc_grpc_deframer_t *d, size_t n) {
  size_t need = d->body_got + n;
  if (d->body_cap >= need)
    return USC_OK;
  size_t cap = d->body_cap * 2 > need ? d->body_cap * 2 : need;
  cap = cap < d->body_len ? cap : d->body_len;
  uint8_t *body = usc_realloc(d->body, cap);
  if (body == NULL)
    return USC_ERR_NOMEM;
  d->body = body;
  d->body_cap = cap;
  return USC_OK;
}

/* Resets before the callback so the deframer is consistent even when the
 * callback stops feeding. A non-NULL pointer is passed for empty messages so
 * callers may hand it to memcpy. */
static int deliver(usc_grpc_deframer_t *d, const uint8_t *data,
                   usc_grpc_on_message_fn on_message, void *user) {
  static const uint8_t empty[1];
  bool compressed = d->header[0] == 1;
  size_t len = d->body_len;
  d->header_got = 0;
  d->body_got = 0;
  return on_message(user, compressed, len > 0 ? data : empty, len);
}

int usc_grpc_deframer_feed(usc_grpc_deframer_t *d, const uint8_t *data,
                           size_t len, usc_grpc_on_message_fn on_message,
                           void *user, uint64_t *declared_len) {
  for (;;) {
    if (d->header_got < USC_GRPC_FRAME_HEADER_LEN) {
      if (len == 0)
        return USC_OK;
      size_t n = USC_GRPC_FRAME_HEADER_LEN - d->header_got;
      n = n < len ? n : len;
      memcpy(d->header + d->header_got, data, n);
      d->header_got += n;
      data += n;
      len -= n;
      if (d->header_got < USC_GRPC_FRAME_HEADER_LEN)
        return USC_OK;
      int rc = start_body(d, declared_len);
      if (rc != USC_OK)
        return rc;
    }
    size_t need = d->body_len - d->body_got;
    if (d->body_got == 0 && len >= need) {
      /* The whole body is in the input: deliver it without copying. */
      int rc = deliver(d, data, on_message, user);
      if (rc != 0)
        return rc;
      data += need;
      len -= need;
      continue;
    }
    if (len == 0)
      return USC_OK;
    size_t n = need < len ? need : len;
    int rc = ensure_body_cap(d, n);
    if (rc != USC_OK)
      return rc;
    memcpy(d->body + d->body_got, data, n);
    d->body_got += n;
    data += n;
    len -= n;
    if (d->body_got == d->body_len) {
      rc = deliver(d, d->body, on_message, user);
      if (rc != 0)
        return rc;
    }
  }
}

/* ---- grpc-timeout ---- */

static int64_t timeout_unit_ns(char unit) {
  switch (unit) {
  case 'H':
    return INT64_C(3600000000000);
  case 'M':
    return INT64_C(60000000000);
  case 'S':
    return INT64_C(1000000000);
  case 'm':
    return INT64_C(1000000);
  case 'u':
    return INT64_C(1000);
  case 'n':
    return 1;
  default:
    return 0;
  }
}

int usc_grpc_timeout_parse(const char *value, size_t len, int64_t *timeout_ns) {
  if (len < 2 || len > 9)
    return USC_ERR_INVALID;
  int64_t unit = timeout_unit_ns(value[len - 1]);
  if (unit == 0)
    return USC_ERR_INVALID;
  int64_t n = 0;
  for (size_t i = 0; i < len - 1; i++) {
    if (value[i] < '0' || value[i] > '9')
      return USC_ERR_INVALID;
    n = n * 10 + (value[i] - '0');
  }
  *timeout_ns = n > INT64_MAX / unit ? INT64_MAX : n * unit;
  return USC_OK;
}

/* ---- grpc-message percent-encoding ---- */

static const char hex_upper[] = "0123456789ABCDEF";

static bool passes_unencoded(unsigned char c) {
  return c >= 0x20 && c <= 0x7E && c != '%';
}

size_t usc_grpc_percent_encode(const char *in, size_t len, char *out,
                               size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (passes_unencoded(c)) {
      if (cap - o < 1)
        break;
      out[o++] = (char)c;
    } else {
      if (cap - o < 3)
        break;
      out[o++] = '%';
      out[o++] = hex_upper[c >> 4];
      out[o++] = hex_upper[c & 0xF];
    }
  }
  out[o] = '\0';
  return o;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* The byte encoded by a %XX sequence at in[i], or -1 if there is none. */
static int percent_byte(const char *in, size_t len, size_t i) {
  if (in[i] != '%' || len - i < 3)
    return -1;
  int hi = hex_value(in[i + 1]);
  int lo = hex_value(in[i + 2]);
  return hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
}

size_t usc_grpc_percent_decode(const char *in, size_t len, char *out,
                               size_t cap) {
  size_t o = 0;
  size_t i = 0;
  while (i < len && o < cap) {
    int b = percent_byte(in, len, i);
    if (b < 0) {
      out[o++] = in[i++];
    } else {
      out[o++] = (char)b;
      i += 3;
    }
  }
  out[o] = '\0';
  return o;
}

/* ---- base64 ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Streams bytes into base64 so protobuf can be encoded straight into the
 * output without an intermediate buffer. The caller has checked room. */
typedef struct {
  char *out;
  size_t len;
  uint8_t carry[3];
  size_t carry_n;
} b64_sink_t;

static void b64_emit(b64_sink_t *s, size_t n) {
  uint32_t v = (uint32_t)s->carry[0] << 16 | (uint32_t)s->carry[1] << 8 |
               (uint32_t)s->carry[2];
  for (size_t k = 0; k <= n; k++)
    s->out[s->len++] = b64_alphabet[(v >> (18 - 6 * k)) & 0x3F];
}

static void b64_put(b64_sink_t *s, const void *data, size_t len) {
  const uint8_t *p = data;
  for (size_t i = 0; i < len; i++) {
    s->carry[s->carry_n++] = p[i];
    if (s->carry_n == 3) {
      b64_emit(s, 3);
      s->carry_n = 0;
    }
  }
}

static size_t b64_finish(b64_sink_t *s) {
  if (s->carry_n > 0) {
    memset(s->carry + s->carry_n, 0, 3 - s->carry_n);
    b64_emit(s, s->carry_n);
  }
  s->out[s->len] = '\0';
  return s->len;
}

/* Written so that it cannot overflow whatever the sizes. */
static bool b64_fits(size_t len, size_t cap) {
  size_t tail = len % 3 > 0 ? len % 3 + 1 : 0;
  return cap > tail && len / 3 <= (cap - 1 - tail) / 4;
}

static size_t too_small(char *out, size_t cap) {
  if (cap > 0)
    out[0] = '\0';
  return 0;
}

size_t usc_grpc_base64_encode(const uint8_t *in, size_t len, char *out,
                              size_t cap) {
  if (!b64_fits(len, cap))
    return too_small(out, cap);
  b64_sink_t s = {.out = out};
  b64_put(&s, in, len);
  return b64_finish(&s);
}

/* ---- google.rpc.Status protobuf ---- */

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

#define ERROR_INFO_TYPE_URL "type.googleapis.com/google.rpc.ErrorInfo"

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7)
    n++;
  return n;
}

/* Field numbers here are all below 16, so every tag is one byte. */
static size_t len_field_size(size_t len) { return 1 + varint_size(len) + len; }

/* proto3 leaves empty strings off the wire. */
static size_t string_field_size(size_t len) {
  return len > 0 ? len_field_size(len) : 0;
}

static void put_varint(b64_sink_t *s, uint64_t v) {
  for (; v >= 0x80; v >>= 7) {
    uint8_t b = (uint8_t)(v | 0x80);
    b64_put(s, &b, 1);
  }
  uint8_t b = (uint8_t)v;
  b64_put(s, &b, 1);
}

static void put_tag(b64_sink_t *s, unsigned field, unsigned wire) {
  uint8_t tag = (uint8_t)(field << 3 | wire);
  b64_put(s, &tag, 1);
}

static void put_len_header(b64_sink_t *s, unsigned field, size_t len) {
  put_tag(s, field, WIRE_LEN);
  put_varint(s, len);
}

static void put_string(b64_sink_t *s, unsigned field, const char *str,
                       size_t len) {
  if (len == 0)
    return;
  put_len_header(s, field, len);
  b64_put(s, str, len);
}

typedef struct {
  uint64_t code; /* int32 on the wire: negatives are sign-extended */
  const char *message, *reason, *domain;
  size_t message_len, reason_len, domain_len;
  size_t error_info_size, any_size, status_size;
} status_pb_t;

/* Sizes must be known up front: each length-delimited field is prefixed by
 * its length. Expects the size fields zeroed. */
static void status_pb_measure(status_pb_t *pb) {
  if (pb->reason_len > 0) {
    pb->error_info_size =
        string_field_size(pb->reason_len) + string_field_size(pb->domain_len);
    pb->any_size = string_field_size(strlen(ERROR_INFO_TYPE_URL)) +
                   len_field_size(pb->error_info_size);
  }
  pb->status_size = (pb->code != 0 ? 1 + varint_size(pb->code) : 0) +
                    string_field_size(pb->message_len) +
                    (pb->any_size > 0 ? len_field_size(pb->any_size) : 0);
}

static void status_pb_write(const status_pb_t *pb, b64_sink_t *s) {
  if (pb->code != 0) {
    put_tag(s, 1, WIRE_VARINT);
    put_varint(s, pb->code);
  }
  put_string(s, 2, pb->message, pb->message_len);
  if (pb->any_size == 0)
    return;
  put_len_header(s, 3, pb->any_size);
  put_string(s, 1, ERROR_INFO_TYPE_URL, strlen(ERROR_INFO_TYPE_URL));
  put_len_header(s, 2, pb->error_info_size);
  put_string(s, 1, pb->reason, pb->reason_len);
  put_string(s, 2, pb->domain, pb->domain_len);
}

static size_t strlen_or_0(const char *s) { return s != NULL ? strlen(s) : 0; }

size_t usc_grpc_status_details_bin(usc_grpc_status_t code, const char *message,
                                   const char *reason, const char *domain,
                                   char *out, size_t cap) {
  status_pb_t pb = {
      .code = (uint64_t)(int64_t)(int32_t)code,
      .message = message,
      .reason = reason,
      .domain = domain,
      .message_len = strlen_or_0(message),
      .reason_len = strlen_or_0(reason),
      .domain_len = strlen_or_0(domain),
  };
  status_pb_measure(&pb);
  if (!b64_fits(pb.status_size, cap))
    return too_small(out, cap);
  b64_sink_t s = {.out = out};
  status_pb_write(&pb, &s);
  return b64_finish(&s);
}
