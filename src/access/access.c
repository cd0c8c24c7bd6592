#include "src/access/access.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/base/base.h"

#define DIGEST_LEN 32
#define MAX_ID_LEN 64
#define MAX_EXT_LEN 32

typedef struct {
  uint8_t digest[DIGEST_LEN]; /* SHA-256 of the token */
  size_t line;
  usc_access_grant_t grant;
  void *block; /* the grant's strings and list */
} entry_t;

struct usc_access {
  int refs;
  entry_t *entries; /* sorted by digest */
  size_t n_entries;
};

/* ---- pieces ---- */

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static bool is_visible(char c) {
  return (unsigned char)c >= 0x21 && (unsigned char)c <= 0x7e;
}

static bool is_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z');
}

static bool user_valid(const char *s, size_t len) {
  if (len == 0 || len > MAX_ID_LEN)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!is_alnum(s[i]))
      return false;
  return true;
}

static bool extension_valid(const char *s, size_t len) {
  bool digit = false;
  if (len == 0 || len > MAX_EXT_LEN)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (s[i] >= '0' && s[i] <= '9')
      digit = true;
    else if (s[i] != '*')
      return false;
  }
  return digit;
}

static int digest(const char *token, size_t len, uint8_t out[DIGEST_LEN]) {
  unsigned int n = 0;
  if (EVP_Digest(token, len, out, &n, EVP_sha256(), NULL) != 1 ||
      n != DIGEST_LEN)
    return USC_ERR_NOMEM;
  return 0;
}

static int compare_entries(const void *a, const void *b) {
  return memcmp(((const entry_t *)a)->digest, ((const entry_t *)b)->digest,
                DIGEST_LEN);
}

/* ---- parsing ---- */

typedef struct {
  const char *start;
  size_t len;
} span_t;

typedef struct {
  size_t line;
  char *error;
  size_t error_cap;
} where_t;

static int bad_line(const where_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int bad_line(const where_t *w, const char *fmt, ...) {
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  snprintf(w->error, w->error_cap, "line %zu: %s", w->line, why);
  return USC_ERR_INVALID;
}

/* Splits a line into its fields, up to a comment; returns how many there
 * are (at most `cap` are kept, more are counted). */
static size_t split(const char *line, size_t len, span_t *fields, size_t cap) {
  size_t n = 0, i = 0;
  while (i < len) {
    while (i < len && is_blank(line[i]))
      i++;
    if (i == len || line[i] == '#')
      break;
    size_t start = i;
    while (i < len && !is_blank(line[i]))
      i++;
    if (n < cap)
      fields[n] = (span_t){line + start, i - start};
    n++;
  }
  return n;
}

static int check_token(const where_t *w, span_t t) {
  for (size_t i = 0; i < t.len; i++)
    if (!is_visible(t.start[i]))
      return bad_line(w, "the token holds characters a bearer token cannot "
                         "have (control characters or non-ASCII bytes)");
  if (t.len < USC_ACCESS_TOKEN_MIN)
    return bad_line(w,
                    "the token is shorter than %d characters: a short "
                    "token can be guessed",
                    USC_ACCESS_TOKEN_MIN);
  if (t.len > USC_ACCESS_TOKEN_MAX)
    return bad_line(w, "the token is longer than %d characters",
                    USC_ACCESS_TOKEN_MAX);
  return 0;
}

/* Checks the extensions field; *n is how many it lists (0 for '*'). */
static int check_extensions(const where_t *w, span_t e, size_t *n) {
  *n = 0;
  if (e.len == 1 && e.start[0] == '*')
    return 0;
  span_t items[USC_ACCESS_MAX_EXTENSIONS];
  const char *p = e.start, *end = e.start + e.len;
  for (;;) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop = comma != NULL ? comma : end;
    span_t item = {p, (size_t)(stop - p)};
    if (!extension_valid(item.start, item.len))
      return bad_line(w,
                      "extension '%.*s' is invalid: use '*' for all, or "
                      "numbers of 1 to 32 digits and '*' separated by commas",
                      (int)(item.len > 40 ? 40 : item.len), item.start);
    for (size_t i = 0; i < *n; i++)
      if (items[i].len == item.len &&
          memcmp(items[i].start, item.start, item.len) == 0)
        return bad_line(w, "extension '%.*s' is listed twice", (int)item.len,
                        item.start);
    if (*n == USC_ACCESS_MAX_EXTENSIONS)
      return bad_line(w, "more than %d extensions", USC_ACCESS_MAX_EXTENSIONS);
    items[(*n)++] = item;
    if (comma == NULL)
      return 0;
    p = comma + 1;
  }
}

/* The grant's block: the list of extension pointers, then the strings. */
static int build_grant(entry_t *entry, span_t user, span_t exts, size_t n) {
  size_t size = n * sizeof(char *) + user.len + 1 + exts.len + 1;
  char *block = usc_malloc(size);
  if (block == NULL)
    return USC_ERR_NOMEM;
  const char **list = (const char **)(void *)block;
  char *user_copy = block + n * sizeof(char *);
  memcpy(user_copy, user.start, user.len);
  user_copy[user.len] = '\0';
  char *ext_copy = user_copy + user.len + 1;
  memcpy(ext_copy, exts.start, exts.len);
  ext_copy[exts.len] = '\0';
  for (size_t i = 0; i < n; i++) {
    list[i] = ext_copy;
    char *comma = strchr(ext_copy, ',');
    if (comma != NULL) {
      *comma = '\0';
      ext_copy = comma + 1;
    }
  }
  entry->block = block;
  entry->grant = (usc_access_grant_t){
      .user = user_copy,
      .all_extensions = n == 0,
      .extensions = list,
      .n_extensions = n,
  };
  return 0;
}

static int parse_line(const where_t *w, const char *line, size_t len,
                      entry_t *entry, bool *blank) {
  span_t f[3];
  size_t n = split(line, len, f, 3);
  *blank = n == 0;
  if (n == 0)
    return 0;
  if (n != 3)
    return bad_line(w,
                    "expected TOKEN USER EXTENSIONS separated by spaces, "
                    "found %zu field%s",
                    n, n == 1 ? "" : "s");
  int rc = check_token(w, f[0]);
  if (rc != 0)
    return rc;
  if (!user_valid(f[1].start, f[1].len))
    return bad_line(w,
                    "user id '%.*s' is invalid: use 1 to 64 letters and "
                    "digits",
                    (int)(f[1].len > 40 ? 40 : f[1].len), f[1].start);
  size_t n_ext;
  rc = check_extensions(w, f[2], &n_ext);
  if (rc != 0)
    return rc;
  if (digest(f[0].start, f[0].len, entry->digest) != 0 ||
      build_grant(entry, f[1], f[2], n_ext) != 0) {
    snprintf(w->error, w->error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  entry->line = w->line;
  return 0;
}

static void table_free(usc_access_t *t) {
  for (size_t i = 0; i < t->n_entries; i++) {
    explicit_bzero(t->entries[i].digest, DIGEST_LEN);
    usc_free(t->entries[i].block);
  }
  usc_free(t->entries);
  usc_free(t);
}

/* After sorting, equal digests are neighbours: names the later line of
 * the first repeated token in file order. */
static int check_duplicates(const usc_access_t *t, char *error,
                            size_t error_cap) {
  const entry_t *first = NULL, *again = NULL;
  for (size_t i = 1; i < t->n_entries; i++) {
    const entry_t *a = &t->entries[i - 1], *b = &t->entries[i];
    if (memcmp(a->digest, b->digest, DIGEST_LEN) != 0)
      continue;
    const entry_t *later = a->line > b->line ? a : b;
    if (again == NULL || later->line < again->line) {
      again = later;
      first = later == a ? b : a;
    }
  }
  if (again == NULL)
    return 0;
  snprintf(error, error_cap, "line %zu: the same token as line %zu",
           again->line, first->line);
  return USC_ERR_INVALID;
}

static size_t count_lines(const char *text, size_t len) {
  size_t n = 1;
  for (size_t i = 0; i < len; i++)
    n += text[i] == '\n';
  return n;
}

static int parse_lines(usc_access_t *t, const char *text, size_t len,
                       char *error, size_t error_cap) {
  where_t w = {0, error, error_cap};
  size_t pos = 0;
  while (pos < len) {
    const char *line = text + pos;
    const char *nl = memchr(line, '\n', len - pos);
    size_t line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
    pos += line_len + (nl != NULL);
    if (line_len > 0 && line[line_len - 1] == '\r')
      line_len--;
    w.line++;
    bool blank;
    int rc = parse_line(&w, line, line_len, &t->entries[t->n_entries], &blank);
    if (rc != 0)
      return rc;
    if (!blank)
      t->n_entries++;
  }
  return 0;
}

int usc_access_parse(const char *text, size_t len, usc_access_t **out,
                     char *error, size_t error_cap) {
  if (error_cap > 0)
    error[0] = '\0';
  if (memchr(text, '\0', len) != NULL) {
    snprintf(error, error_cap, "holds a NUL byte");
    return USC_ERR_INVALID;
  }
  usc_access_t *t = usc_calloc(1, sizeof(*t));
  entry_t *entries = usc_calloc(count_lines(text, len), sizeof(*entries));
  if (t == NULL || entries == NULL) {
    usc_free(t);
    usc_free(entries);
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  t->refs = 1;
  t->entries = entries;
  int rc = parse_lines(t, text, len, error, error_cap);
  if (rc == 0 && t->n_entries == 0) {
    snprintf(error, error_cap,
             "holds no token: give at least one line TOKEN USER EXTENSIONS");
    rc = USC_ERR_INVALID;
  }
  if (rc == 0) {
    qsort(t->entries, t->n_entries, sizeof(*t->entries), compare_entries);
    rc = check_duplicates(t, error, error_cap);
  }
  if (rc != 0) {
    table_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

usc_access_t *usc_access_ref(usc_access_t *t) {
  t->refs++;
  return t;
}

void usc_access_unref(usc_access_t *t) {
  if (t != NULL && --t->refs == 0)
    table_free(t);
}

size_t usc_access_count(const usc_access_t *t) { return t->n_entries; }

/* ---- lookups ---- */

/* The token of "Bearer <token>", or NULL. */
static const char *bearer_token(const char *value, size_t *len) {
  static const char scheme[] = "Bearer";
  size_t slen = sizeof(scheme) - 1;
  if (value == NULL || strncasecmp(value, scheme, slen) != 0 ||
      !is_blank(value[slen]))
    return NULL;
  const char *token = value + slen;
  while (is_blank(*token))
    token++;
  size_t n = 0;
  while (is_visible(token[n]))
    n++;
  for (const char *rest = token + n; *rest != '\0'; rest++)
    if (!is_blank(*rest))
      return NULL;
  *len = n;
  return n > 0 ? token : NULL;
}

const usc_access_grant_t *usc_access_lookup(const usc_access_t *t,
                                            const char *authorization) {
  size_t len;
  const char *token = bearer_token(authorization, &len);
  uint8_t d[DIGEST_LEN];
  if (token == NULL || t->n_entries == 0 || digest(token, len, d) != 0)
    return NULL;
  /* The search orders digests, which says nothing of the tokens; the
   * final comparison takes the same time whatever the bytes. */
  size_t lo = 0, hi = t->n_entries - 1;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (memcmp(t->entries[mid].digest, d, DIGEST_LEN) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  const entry_t *e = &t->entries[lo];
  bool match = CRYPTO_memcmp(e->digest, d, DIGEST_LEN) == 0;
  explicit_bzero(d, sizeof(d));
  return match ? &e->grant : NULL;
}

bool usc_access_grant_equal(const usc_access_grant_t *a,
                            const usc_access_grant_t *b) {
  if (strcmp(a->user, b->user) != 0 || a->all_extensions != b->all_extensions ||
      a->n_extensions != b->n_extensions)
    return false;
  for (size_t i = 0; i < a->n_extensions; i++)
    if (strcmp(a->extensions[i], b->extensions[i]) != 0)
      return false;
  return true;
}

/* ---- resolving an address ---- */

static bool is_me(const char *user) {
  return user[0] == '\0' || strcmp(user, "@me") == 0 ||
         strcmp(user, "@viewer") == 0 || strcmp(user, "@owner") == 0;
}

static bool holds(const usc_access_grant_t *g, const char *ext) {
  for (size_t i = 0; i < g->n_extensions; i++)
    if (strcmp(g->extensions[i], ext) == 0)
      return true;
  return false;
}

static bool is_wildcard(const char *ext, usc_access_wildcard_t wildcard) {
  if (wildcard == USC_ACCESS_NUMBER)
    return false;
  return strcmp(ext, "@self") == 0 ||
         (ext[0] == '\0' && wildcard == USC_ACCESS_SELF_OR_BLANK);
}

usc_access_verdict_t
usc_access_resolve(const usc_access_grant_t *g, const char *user_id,
                   const char *extension, usc_access_wildcard_t wildcard,
                   const char **user, const char **extension_out) {
  const char *u = user_id != NULL ? user_id : "";
  const char *ext = extension != NULL ? extension : "";
  if (is_me(u) || strcmp(u, g->user) == 0)
    u = g->user;
  else if (user_valid(u, strlen(u)))
    return USC_ACCESS_HIDDEN;
  if (!g->all_extensions && !holds(g, ext)) {
    if (is_wildcard(ext, wildcard) && g->n_extensions > 1)
      return USC_ACCESS_AMBIGUOUS;
    if (is_wildcard(ext, wildcard))
      ext = g->extensions[0];
    else if (extension_valid(ext, strlen(ext)))
      return USC_ACCESS_HIDDEN;
  }
  *user = u;
  *extension_out = ext;
  return USC_ACCESS_ALLOWED;
}
