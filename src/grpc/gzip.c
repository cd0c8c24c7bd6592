/* The gzip message encoding of gRPC, over zlib. */
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "src/base/base.h"
#include "src/grpc/grpc.h"

#define GZIP_WINDOW_BITS (15 + 16) /* gzip wrapper, not zlib or raw */
#define GUNZIP_FIRST_CAP 4096
#define CHUNK_MAX (1u << 30) /* zlib counts in uInt */

bool usc_grpc_encoding_listed(const char *value, size_t len, const char *name) {
  size_t name_len = strlen(name);
  size_t i = 0;
  while (i <= len) {
    size_t start = i;
    while (i < len && value[i] != ',')
      i++;
    size_t end = i;
    while (start < end && (value[start] == ' ' || value[start] == '\t'))
      start++;
    while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
      end--;
    if (end - start == name_len &&
        strncasecmp(value + start, name, name_len) == 0)
      return true;
    i++; /* past the comma (or the end) */
  }
  return false;
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  return usc_calloc(items, size);
}

static void z_free(voidpf opaque, voidpf address) {
  (void)opaque;
  usc_free(address);
}

/* One inflate step from the remaining input into out[0..room). */
static int inflate_step(z_stream *z, const uint8_t *in, size_t in_len,
                        size_t *in_off, uint8_t *out, size_t room,
                        size_t *produced) {
  size_t chunk = in_len - *in_off > CHUNK_MAX ? CHUNK_MAX : in_len - *in_off;
  if (room > CHUNK_MAX)
    room = CHUNK_MAX;
  z->next_in = (Bytef *)(in + *in_off);
  z->avail_in = (uInt)chunk;
  z->next_out = out;
  z->avail_out = (uInt)room;
  int zrc = inflate(z, Z_NO_FLUSH);
  *in_off += chunk - z->avail_in;
  *produced = room - z->avail_out;
  return zrc;
}

int usc_grpc_gunzip(const uint8_t *in, size_t in_len, size_t max_out,
                    uint8_t **buf, size_t *buf_cap, size_t *out_len) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  z.zalloc = z_alloc;
  z.zfree = z_free;
  int zrc = inflateInit2(&z, GZIP_WINDOW_BITS);
  if (zrc != Z_OK)
    return zrc == Z_MEM_ERROR ? USC_ERR_NOMEM : USC_ERR_INVALID;
  size_t got = 0, in_off = 0;
  int rc;
  for (;;) {
    size_t limit = *buf_cap < max_out ? *buf_cap : max_out;
    uint8_t probe;
    uint8_t *out;
    size_t room, produced;
    if (got < limit) {
      out = *buf + got;
      room = limit - got;
    } else if (got >= max_out) {
      /* Full to the limit: one more byte of output is one too many. */
      out = &probe;
      room = 1;
    } else {
      /* Grow, doubling, but never past max_out. */
      size_t cap = *buf_cap;
      size_t first =
          in_len > GUNZIP_FIRST_CAP / 4 ? in_len * 4 : GUNZIP_FIRST_CAP;
      size_t want = cap == 0 ? first : (cap > max_out / 2 ? max_out : cap * 2);
      if (want > max_out)
        want = max_out;
      uint8_t *grown = usc_realloc(*buf, want);
      if (grown == NULL) {
        rc = USC_ERR_NOMEM;
        break;
      }
      *buf = grown;
      *buf_cap = want;
      continue;
    }
    zrc = inflate_step(&z, in, in_len, &in_off, out, room, &produced);
    if (out == &probe) {
      if (produced > 0) {
        rc = USC_ERR_TOO_LARGE;
        break;
      }
    } else {
      got += produced;
    }
    if (zrc == Z_STREAM_END) {
      rc = in_off == in_len ? 0 : USC_ERR_INVALID;
      break;
    }
    if (zrc == Z_MEM_ERROR) {
      rc = USC_ERR_NOMEM;
      break;
    }
    if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
      rc = USC_ERR_INVALID; /* Z_DATA_ERROR: not gzip, or corrupt */
      break;
    }
    if (produced == 0 && in_off == in_len) {
      rc = USC_ERR_INVALID; /* input ran out before the end: truncated */
      break;
    }
  }
  inflateEnd(&z);
  if (rc == 0)
    *out_len = got;
  return rc;
}

size_t usc_grpc_gzip_bound(size_t len) {
  /* deflateBound's zlib figure plus the gzip wrapper (18 bytes), with
   * room for stored blocks of any input size. */
  return len + len / 1000 + (len / 16000 + 1) * 5 + 64;
}

int usc_grpc_gzip(const uint8_t *in, size_t len, uint8_t *out, size_t cap,
                  size_t *out_len) {
  if (len > CHUNK_MAX || cap > CHUNK_MAX)
    return USC_ERR_TOO_LARGE;
  z_stream z;
  memset(&z, 0, sizeof(z));
  z.zalloc = z_alloc;
  z.zfree = z_free;
  /* Level 1: responses are small and latency matters more than bytes. */
  int zrc =
      deflateInit2(&z, 1, Z_DEFLATED, GZIP_WINDOW_BITS, 8, Z_DEFAULT_STRATEGY);
  if (zrc != Z_OK)
    return zrc == Z_MEM_ERROR ? USC_ERR_NOMEM : USC_ERR_INVALID;
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  zrc = deflate(&z, Z_FINISH);
  size_t n = cap - z.avail_out;
  deflateEnd(&z);
  if (zrc == Z_MEM_ERROR)
    return USC_ERR_NOMEM;
  if (zrc != Z_STREAM_END)
    return USC_ERR_TOO_LARGE;
  *out_len = n;
  return 0;
}
