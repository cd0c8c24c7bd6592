/* Request metadata values as a client or the upstream sends them, each
 * parser given the whole input and checked against what its header
 * promises: grpc-timeout, grpc-message percent-decoding (and encoding,
 * which must round-trip), grpc-accept-encoding lists, base64 and
 * grpc-status-details-bin, and the upstream's Retry-After. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz/fuzz_util.h"
#include "src/base/base.h"
#include "src/grpc/grpc.h"
#include "src/xlate/xlate.h"

#define NOW_MS (FUZZ_NOW_NS / 1000000)

static void check_timeout(const char *v, size_t len) {
  int64_t ns = -1;
  int rc = usc_grpc_timeout_parse(v, len, &ns);
  bool digits = len >= 2 && len <= 9;
  for (size_t i = 0; digits && i + 1 < len; i++)
    digits = v[i] >= '0' && v[i] <= '9';
  static const char units[] = "HMSmun";
  static const int64_t unit_ns[] = {INT64_C(3600000000000),
                                    INT64_C(60000000000),
                                    1000000000,
                                    1000000,
                                    1000,
                                    1};
  const char *unit = digits ? memchr(units, v[len - 1], 6) : NULL;
  if (unit == NULL) {
    FUZZ_CHECK(rc == USC_ERR_INVALID);
    return;
  }
  FUZZ_CHECK(rc == 0);
  __int128 want = 0;
  for (size_t i = 0; i + 1 < len; i++)
    want = want * 10 + (v[i] - '0');
  want *= unit_ns[unit - units];
  FUZZ_CHECK(ns == (want > INT64_MAX ? INT64_MAX : (int64_t)want));
}

static bool encoded_byte_ok(unsigned char c) { return c >= 0x20 && c <= 0x7E; }

static void check_percent(const char *v, size_t len, size_t cap) {
  /* Encoding: printable output, cut only between whole units. */
  char *enc = malloc(cap + 1);
  FUZZ_CHECK(enc != NULL);
  size_t n = usc_grpc_percent_encode(v, len, enc, cap);
  FUZZ_CHECK(n <= cap && enc[n] == '\0');
  size_t full = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)v[i];
    full += c >= 0x20 && c <= 0x7E && c != '%' ? 1 : 3;
  }
  for (size_t i = 0; i < n; i++)
    FUZZ_CHECK(encoded_byte_ok((unsigned char)enc[i]));
  if (n == full) {
    char *dec = malloc(len + 1);
    FUZZ_CHECK(dec != NULL);
    FUZZ_CHECK(usc_grpc_percent_decode(enc, n, dec, len) == len);
    FUZZ_CHECK(memcmp(dec, v, len) == 0);
    free(dec);
  } else {
    FUZZ_CHECK(n < full && cap - n < 3);
  }
  free(enc);
  /* Decoding whatever comes: never more than cap bytes, nor than len. */
  char *dec = malloc(cap + 1);
  FUZZ_CHECK(dec != NULL);
  size_t d = usc_grpc_percent_decode(v, len, dec, cap);
  FUZZ_CHECK(d <= cap && d <= len && dec[d] == '\0');
  free(dec);
}

static bool listed(const char *v, size_t len, const char *name) {
  size_t i = 0;
  while (i <= len) {
    size_t start = i;
    while (i < len && v[i] != ',')
      i++;
    size_t end = i++;
    while (start < end && (v[start] == ' ' || v[start] == '\t'))
      start++;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
      end--;
    if (end - start == strlen(name) &&
        strncasecmp(v + start, name, end - start) == 0)
      return true;
  }
  return false;
}

static void check_encoding(const char *v, size_t len) {
  static const char *const names[] = {"gzip", "identity", "deflate", ""};
  for (size_t i = 0; i < USC_ARRAY_LEN(names); i++)
    FUZZ_CHECK(usc_grpc_encoding_listed(v, len, names[i]) ==
               listed(v, len, names[i]));
}

static int b64_value(char c) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char *p = c != '\0' ? strchr(alphabet, c) : NULL;
  return p != NULL ? (int)(p - alphabet) : -1;
}

static void check_base64(const uint8_t *v, size_t len, size_t cap) {
  char *out = malloc(cap + 1);
  FUZZ_CHECK(out != NULL);
  size_t want = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
  size_t n = usc_grpc_base64_encode(v, len, out, cap);
  if (want + 1 > cap) {
    FUZZ_CHECK(n == 0);
    free(out);
    return;
  }
  FUZZ_CHECK(n == want && out[n] == '\0');
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int b = b64_value(out[i]);
    FUZZ_CHECK(b >= 0);
    acc = acc << 6 | (uint32_t)b;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      FUZZ_CHECK(o < len && (uint8_t)(acc >> bits) == v[o]);
      o++;
    }
  }
  FUZZ_CHECK(o == len);
  free(out);
}

static void check_status_details(const char *text, usc_grpc_status_t code,
                                 size_t cap) {
  char *out = malloc(cap + 1);
  FUZZ_CHECK(out != NULL);
  size_t n = usc_grpc_status_details_bin(code, text, text, "uapi", out, cap);
  FUZZ_CHECK(n < cap || (n == 0 && cap == 0));
  if (cap > 0)
    FUZZ_CHECK(out[n] == '\0');
  free(out);
}

static void check_retry_after(const char *v, size_t len) {
  int64_t ms = -1;
  if (usc_xlate_retry_after_ms(v, len, NOW_MS, &ms) == 0)
    FUZZ_CHECK(ms >= 0 && ms <= INT32_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_input_t in = {data, size};
  size_t cap = fuzz_take_byte(&in);
  usc_grpc_status_t code = (usc_grpc_status_t)(fuzz_take_byte(&in) % 20);
  /* A copy of exactly the value, so that reading past it is caught. */
  char *v = malloc(in.len + 1);
  FUZZ_CHECK(v != NULL);
  memcpy(v, in.data, in.len);
  v[in.len] = '\0';
  check_timeout(v, in.len);
  check_percent(v, in.len, cap);
  check_encoding(v, in.len);
  check_base64(in.data, in.len, cap);
  check_status_details(v, code, cap * 4);
  check_retry_after(v, in.len);
  free(v);
  return 0;
}
