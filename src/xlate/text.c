/* Text helpers: a capped string builder, percent-encoding, UTF-8 checks,
 * integers, and HTTP-dates (RFC 3339 date-times are base's). */
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

/* ---- string builder ---- */

void xl_sb_init(xl_sb_t *sb, size_t max) { *sb = (xl_sb_t){.max = max}; }

static bool sb_room(xl_sb_t *sb, size_t more) {
  if (sb->err != 0)
    return false;
  if (more > sb->max - sb->len) {
    sb->err = USC_ERR_TOO_LARGE;
    return false;
  }
  if (sb->len + more + 1 <= sb->cap)
    return true;
  char *grown = usc_grow(sb->buf, &sb->cap, sb->len + more + 1, 64);
  if (grown == NULL) {
    sb->err = USC_ERR_NOMEM;
    return false;
  }
  sb->buf = grown;
  return true;
}

void xl_sb_add(xl_sb_t *sb, const char *s, size_t len) {
  if (!sb_room(sb, len))
    return;
  memcpy(sb->buf + sb->len, s, len);
  sb->len += len;
  sb->buf[sb->len] = '\0';
}

void xl_sb_adds(xl_sb_t *sb, const char *s) { xl_sb_add(sb, s, strlen(s)); }

static bool unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

void xl_sb_add_encoded(xl_sb_t *sb, const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
    if (unreserved(c))
      xl_sb_add(sb, s + i, 1);
    else
      xl_sb_add(sb, esc, 3);
  }
}

void xl_sb_free(xl_sb_t *sb) {
  usc_free(sb->buf);
  *sb = (xl_sb_t){0};
}

/* ---- percent-decoding ---- */

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes in place-safe fashion into `out` (at least `len` bytes); returns
 * the decoded length or -1 for a malformed escape. */
static long decode_into(const char *s, size_t len, char *out) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '%') {
      out[n++] = s[i];
      continue;
    }
    int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
    int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
    if (lo < 0)
      return -1;
    out[n++] = (char)(hi * 16 + lo);
    i += 2;
  }
  return (long)n;
}

int xl_decode(const char *s, size_t len, ProtobufCAllocator *a, char **out) {
  char *buf = xl_alloc(a, len + 1);
  if (buf == NULL)
    return USC_ERR_NOMEM;
  long n = decode_into(s, len, buf);
  if (n < 0 || memchr(buf, '\0', (size_t)n) != NULL ||
      !xl_utf8_ok(buf, (size_t)n))
    return USC_ERR_INVALID;
  buf[n] = '\0';
  *out = buf;
  return 0;
}

/* ---- UTF-8 ---- */

/* Length of the sequence starting at s[0], or 0 when it is not well-formed
 * (overlong forms, surrogates and code points past U+10FFFF refused). */
static size_t utf8_seq(const unsigned char *s, size_t left) {
  unsigned c = s[0];
  size_t n = c < 0x80   ? 1
             : c < 0xC2 ? 0
             : c < 0xE0 ? 2
             : c < 0xF0 ? 3
             : c < 0xF5 ? 4
                        : 0;
  if (n == 0 || n > left)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  }
  if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) ||
      (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
    return 0;
  return n;
}

bool xl_utf8_ok(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_seq(p + i, len - i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

/* ---- small comparisons and numbers ---- */

bool xl_eq(const char *a, size_t alen, const char *b) {
  return strlen(b) == alen && memcmp(a, b, alen) == 0;
}

static char lower(char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

bool xl_ieq(const char *a, size_t alen, const char *b) {
  if (strlen(b) != alen)
    return false;
  for (size_t i = 0; i < alen; i++) {
    if (lower(a[i]) != lower(b[i]))
      return false;
  }
  return true;
}

bool xl_parse_int32(const char *s, size_t len, int32_t *v) {
  size_t i = len > 0 && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  bool neg = i == 1 && s[0] == '-';
  if (i == len)
    return false;
  int64_t acc = 0;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    acc = acc * 10 + (s[i] - '0');
    if (acc > (int64_t)INT32_MAX + 1)
      return false;
  }
  acc = neg ? -acc : acc;
  if (acc > INT32_MAX)
    return false;
  *v = (int32_t)acc;
  return true;
}

/* ---- HTTP-date (RFC 9110 §5.6.7) ---- */

typedef struct {
  const char *s;
  size_t len, pos;
} cursor_t;

typedef struct {
  int year, month, day, hour, minute, second;
} civil_t;

/* Exactly `n` digits. */
static bool digits(cursor_t *c, int n, int *v) {
  if (c->len - c->pos < (size_t)n)
    return false;
  *v = 0;
  for (int i = 0; i < n; i++) {
    char ch = c->s[c->pos + i];
    if (ch < '0' || ch > '9')
      return false;
    *v = *v * 10 + (ch - '0');
  }
  c->pos += (size_t)n;
  return true;
}

static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
static const char *const days3[7] = {"Mon", "Tue", "Wed", "Thu",
                                     "Fri", "Sat", "Sun"};
static const char *const days_long[7] = {"Monday",   "Tuesday", "Wednesday",
                                         "Thursday", "Friday",  "Saturday",
                                         "Sunday"};

/* One of `words` (compared without regard to case); its index in *index. */
static bool word(cursor_t *c, const char *const *words, int n, int *index) {
  for (int i = 0; i < n; i++) {
    size_t len = strlen(words[i]);
    if (c->len - c->pos >= len && xl_ieq(c->s + c->pos, len, words[i])) {
      c->pos += len;
      *index = i;
      return true;
    }
  }
  return false;
}

static bool literal(cursor_t *c, const char *text) {
  size_t len = strlen(text);
  if (c->len - c->pos < len || memcmp(c->s + c->pos, text, len) != 0)
    return false;
  c->pos += len;
  return true;
}

static bool clock_time(cursor_t *c, civil_t *t) {
  return digits(c, 2, &t->hour) && literal(c, ":") &&
         digits(c, 2, &t->minute) && literal(c, ":") &&
         digits(c, 2, &t->second);
}

static bool month(cursor_t *c, civil_t *t) {
  int m;
  if (!word(c, months, 12, &m))
    return false;
  t->month = m + 1;
  return true;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", after "Sun". */
static bool imf_fixdate(cursor_t *c, civil_t *t) {
  return literal(c, ", ") && digits(c, 2, &t->day) && literal(c, " ") &&
         month(c, t) && literal(c, " ") && digits(c, 4, &t->year) &&
         literal(c, " ") && clock_time(c, t) && literal(c, " GMT");
}

/* "Sunday, 06-Nov-94 08:49:37 GMT", after "Sunday". Two-digit years:
 * 70..99 are 19xx, 00..69 20xx. */
static bool rfc850_date(cursor_t *c, civil_t *t) {
  int y = 0;
  bool ok = literal(c, ", ") && digits(c, 2, &t->day) && literal(c, "-") &&
            month(c, t) && literal(c, "-") && digits(c, 2, &y) &&
            literal(c, " ") && clock_time(c, t) && literal(c, " GMT");
  t->year = y < 70 ? 2000 + y : 1900 + y;
  return ok;
}

/* "Sun Nov  6 08:49:37 1994", after "Sun". */
static bool asctime_date(cursor_t *c, civil_t *t) {
  if (!literal(c, " ") || !month(c, t) || !literal(c, " "))
    return false;
  if (!literal(c, " ") ? !digits(c, 2, &t->day) : !digits(c, 1, &t->day))
    return false;
  return literal(c, " ") && clock_time(c, t) && literal(c, " ") &&
         digits(c, 4, &t->year);
}

static bool any_http_date(cursor_t *c, civil_t *t) {
  int wd;
  cursor_t again = *c;
  if (word(c, days_long, 7, &wd) && c->pos < c->len && c->s[c->pos] == ',')
    return rfc850_date(c, t);
  *c = again;
  if (!word(c, days3, 7, &wd))
    return false;
  return c->pos < c->len && c->s[c->pos] == ',' ? imf_fixdate(c, t)
                                                : asctime_date(c, t);
}

bool xl_http_date(const char *s, size_t len, int64_t *sec) {
  cursor_t c = {s, len, 0};
  civil_t t = {0};
  /* Years from 0001, as for every date xlate reads. */
  return any_http_date(&c, &t) && c.pos == len && t.year >= 1 &&
         usc_time_from_civil(t.year, t.month, t.day, t.hour, t.minute, t.second,
                             sec);
}
