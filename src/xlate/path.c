/* UAPI paths: splitting an incoming one into decoded segments, and building
 * the path of one call from validated parts. A link from the upstream is
 * reduced to its path, split and validated like any client input, and the
 * path is then rebuilt from its parts: a link never chooses the host, and
 * never smuggles a query or an odd segment. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

#define PREFIX "/uapi/phoneCalls/"
#define ALIAS "/uapi/phoneCall/"

static size_t prefix_len(const char *path, size_t len, bool alias) {
  if (len >= strlen(PREFIX) && memcmp(path, PREFIX, strlen(PREFIX)) == 0)
    return strlen(PREFIX);
  if (alias && len >= strlen(ALIAS) && memcmp(path, ALIAS, strlen(ALIAS)) == 0)
    return strlen(ALIAS);
  return 0;
}

/* A segment with a malformed escape (or one decoding to a NUL or invalid
 * UTF-8) becomes "%", which no validation accepts: the caller then answers
 * with that segment's own error. */
int xl_path_split(const char *path, size_t len, bool alias,
                  ProtobufCAllocator *a, xl_path_t *out) {
  size_t skip = prefix_len(path, len, alias);
  const char *p = path + skip;
  size_t left = len - skip;
  *out = (xl_path_t){0};
  if (skip == 0)
    return USC_ERR_NOT_FOUND;
  if (left > 0 && p[left - 1] == '/')
    left--; /* clients may end the path with a slash */
  for (;;) {
    const char *slash = memchr(p, '/', left);
    size_t seg = slash != NULL ? (size_t)(slash - p) : left;
    if (seg == 0 || out->n == USC_ARRAY_LEN(out->seg))
      return USC_ERR_NOT_FOUND;
    int rc = xl_decode(p, seg, a, &out->seg[out->n]);
    if (rc == USC_ERR_INVALID)
      out->seg[out->n] = (char *)"%";
    else if (rc != 0)
      return rc;
    out->n++;
    if (slash == NULL)
      return 0;
    p = slash + 1;
    left -= seg + 1;
  }
}

bool xl_call_path(const char *user, const char *ext, const char *id,
                  char out[USC_XLATE_PATH_MAX]) {
  if (!xl_user_ok(user, strlen(user)) || !xl_extension_ok(ext, strlen(ext)) ||
      !xl_call_id_ok(id, strlen(id)))
    return false;
  snprintf(out, USC_XLATE_PATH_MAX, PREFIX "%s/%s/%s", user, ext, id);
  return true;
}

/* ---- links ---- */

static bool scheme_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

/* Where the path starts: after "scheme://authority", after
 * "//authority", or at once for "/path"; len when there is no path. */
static size_t path_start(const char *s, size_t len) {
  size_t i = 0;
  while (i < len && scheme_char(s[i]))
    i++;
  if (i > 0 && i < len && s[i] == ':')
    i++; /* a scheme: an authority must follow */
  else
    i = 0;
  if (len - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
    for (i += 2; i < len && !strchr("/?#", s[i]); i++)
      ;
  } else if (i > 0) {
    return len;
  }
  return i < len && s[i] == '/' ? i : len;
}

/* A bump allocator over a caller's buffer, for the link's segments. */
typedef struct {
  char *buf;
  size_t cap, used;
} bump_t;

static void *bump_alloc(void *data, size_t size) {
  bump_t *b = data;
  size = (size + 7) & ~(size_t)7;
  if (size > b->cap - b->used)
    return NULL;
  void *p = b->buf + b->used;
  b->used += size;
  return p;
}

static void bump_free(void *data, void *p) {
  (void)data;
  (void)p;
}

#define LINK_PATH_MAX 1024

bool xl_link_path(const char *link, size_t len, char out[USC_XLATE_PATH_MAX]) {
  size_t start = path_start(link, len), end = start;
  while (end < len && link[end] != '?' && link[end] != '#')
    end++;
  if (start == len || end - start > LINK_PATH_MAX)
    return false;
  _Alignas(8) char buf[LINK_PATH_MAX + 64];
  bump_t bump = {buf, sizeof(buf), 0};
  ProtobufCAllocator a = {bump_alloc, bump_free, &bump};
  xl_path_t path;
  if (xl_path_split(link + start, end - start, false, &a, &path) != 0 ||
      path.n != 3)
    return false;
  return xl_call_path(path.seg[0], path.seg[1], path.seg[2], out);
}
