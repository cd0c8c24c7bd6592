/* Text helpers: a capped string builder, percent-encoding, UTF-8 checks,
 * integers, and RFC 3339 timestamps (civil-date arithmetic done here, not
 * with timegm, to stay pure and independent of the process's TZ). */
#include <limits.h>
#include <stdio.h>
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
  size_t cap = sb->cap ? sb->cap : 64;
  while (cap < sb->len + more + 1)
    cap *= 2;
  char *grown = usc_realloc(sb->buf, cap);
  if (grown == NULL) {
    sb->err = USC_ERR_NOMEM;
    return false;
  }
  sb->buf = grown;
  sb->cap = cap;
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

/* ---- civil dates ---- */

static bool leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

bool xl_date_ok(int64_t y, int m, int d) {
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1)
    return false;
  return d <= days[m - 1] + (m == 2 && leap(y));
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
int64_t xl_days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

typedef struct {
  int64_t year;
  int month, day, hour, minute, second;
} civil_t;

static civil_t civil_from_seconds(int64_t sec) {
  int64_t days = sec / 86400, rem = sec % 86400;
  if (rem < 0) {
    rem += 86400;
    days--;
  }
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int month = (int)(mp < 10 ? mp + 3 : mp - 9);
  return (civil_t){.year = yoe + era * 400 + (month <= 2),
                   .month = month,
                   .day = (int)(doy - (153 * mp + 2) / 5 + 1),
                   .hour = (int)(rem / 3600),
                   .minute = (int)(rem / 60 % 60),
                   .second = (int)(rem % 60)};
}

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, protobuf's bounds. */
#define TIME_MIN (-62135596800LL)
#define TIME_MAX 253402300799LL

bool xl_time_format(int64_t sec, int32_t nanos, char out[XL_TIME_TEXT_MAX]) {
  if (sec < TIME_MIN || sec > TIME_MAX || nanos < 0 || nanos > 999999999)
    return false;
  civil_t c = civil_from_seconds(sec);
  int n = snprintf(out, XL_TIME_TEXT_MAX, "%04d-%02d-%02dT%02d:%02d:%02d",
                   (int)c.year, c.month, c.day, c.hour, c.minute, c.second);
  /* As protobuf's JSON mapping: 0, 3, 6 or 9 fractional digits. */
  if (nanos % 1000000 == 0 && nanos != 0)
    n += snprintf(out + n, (size_t)(XL_TIME_TEXT_MAX - n), ".%03d",
                  nanos / 1000000);
  else if (nanos % 1000 == 0 && nanos != 0)
    n += snprintf(out + n, (size_t)(XL_TIME_TEXT_MAX - n), ".%06d",
                  nanos / 1000);
  else if (nanos != 0)
    n += snprintf(out + n, (size_t)(XL_TIME_TEXT_MAX - n), ".%09d", nanos);
  snprintf(out + n, (size_t)(XL_TIME_TEXT_MAX - n), "Z");
  return true;
}

/* ---- RFC 3339 parsing ---- */

typedef struct {
  const char *s;
  size_t len, pos;
} cursor_t;

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

static bool expect(cursor_t *c, const char *any) {
  if (c->pos >= c->len || strchr(any, c->s[c->pos]) == NULL)
    return false;
  c->pos++;
  return true;
}

static bool parse_civil(cursor_t *c, civil_t *t) {
  int y = 0;
  if (!digits(c, 4, &y) || !expect(c, "-") || !digits(c, 2, &t->month) ||
      !expect(c, "-") || !digits(c, 2, &t->day) || !expect(c, "Tt ") ||
      !digits(c, 2, &t->hour) || !expect(c, ":") || !digits(c, 2, &t->minute) ||
      !expect(c, ":") || !digits(c, 2, &t->second))
    return false;
  t->year = y;
  /* Second 60 (a leap second) is taken as the next second, as POSIX does. */
  return xl_date_ok(t->year, t->month, t->day) && t->hour < 24 &&
         t->minute < 60 && t->second <= 60;
}

/* Up to 9 digits kept; more are read and dropped. */
static bool parse_fraction(cursor_t *c, int32_t *nanos) {
  *nanos = 0;
  if (c->pos >= c->len || c->s[c->pos] != '.')
    return true;
  c->pos++;
  int n = 0;
  while (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9') {
    if (n++ < 9)
      *nanos = *nanos * 10 + (c->s[c->pos] - '0');
    c->pos++;
  }
  for (int i = n; i < 9; i++)
    *nanos *= 10;
  return n > 0;
}

/* The zone's offset east of UTC, in seconds. */
static bool parse_zone(cursor_t *c, int64_t *offset) {
  *offset = 0;
  if (c->pos == c->len || expect(c, "Zz"))
    return c->pos == c->len;
  int sign = c->s[c->pos] == '-' ? -1 : 1;
  int hh, mm;
  if (!expect(c, "+-") || !digits(c, 2, &hh))
    return false;
  expect(c, ":");
  if (!digits(c, 2, &mm) || hh > 23 || mm > 59 || c->pos != c->len)
    return false;
  *offset = sign * (hh * 3600 + mm * 60);
  return true;
}

bool xl_time_parse(const char *s, size_t len, int64_t *sec, int32_t *nanos) {
  cursor_t c = {s, len, 0};
  civil_t t;
  int64_t offset;
  if (!parse_civil(&c, &t) || !parse_fraction(&c, nanos) ||
      !parse_zone(&c, &offset))
    return false;
  int64_t v = xl_days_from_civil(t.year, t.month, t.day) * 86400 +
              t.hour * 3600 + t.minute * 60 + t.second - offset;
  if (v < TIME_MIN || v > TIME_MAX)
    return false;
  *sec = v;
  return true;
}

/* ---- HTTP-date (RFC 9110 §5.6.7) ---- */

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
  int y = 0;
  bool ok = literal(c, ", ") && digits(c, 2, &t->day) && literal(c, " ") &&
            month(c, t) && literal(c, " ") && digits(c, 4, &y) &&
            literal(c, " ") && clock_time(c, t) && literal(c, " GMT");
  t->year = y;
  return ok;
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
  int y = 0;
  if (!literal(c, " ") || !month(c, t) || !literal(c, " "))
    return false;
  if (!literal(c, " ") ? !digits(c, 2, &t->day) : !digits(c, 1, &t->day))
    return false;
  bool ok = literal(c, " ") && clock_time(c, t) && literal(c, " ") &&
            digits(c, 4, &y);
  t->year = y;
  return ok;
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
  if (!any_http_date(&c, &t) || c.pos != len ||
      !xl_date_ok(t.year, t.month, t.day) || t.hour > 23 || t.minute > 59 ||
      t.second > 60)
    return false;
  *sec = xl_days_from_civil(t.year, t.month, t.day) * 86400 + t.hour * 3600 +
         t.minute * 60 + t.second;
  return true;
}
