/* RFC 3339 date-times, declared in base.h. Civil dates are converted with
 * day counts over 400-year eras of a calendar that starts on 1 March, so
 * no table of month lengths is needed for the arithmetic, and, unlike
 * mktime, nothing depends on the process's TZ. One parser serves the
 * strict and the lenient entry points. */
#include "src/base/base.h"

#include <string.h>

#define NS_PER_S INT64_C(1000000000)
/* The whole seconds of INT64_MIN and INT64_MAX nanoseconds, floored. */
#define MIN_S (INT64_MIN / NS_PER_S - 1)
#define MAX_S (INT64_MAX / NS_PER_S)

typedef struct {
  const char *p, *end;
} cursor_t;

/* Exactly n digits. */
static bool digits(cursor_t *c, int n, int *out) {
  int v = 0;
  if (c->end - c->p < n)
    return false;
  for (int i = 0; i < n; i++, c->p++) {
    if (*c->p < '0' || *c->p > '9')
      return false;
    v = v * 10 + (*c->p - '0');
  }
  *out = v;
  return true;
}

/* One of the (non-NUL) characters of `any`. */
static bool one_of(cursor_t *c, const char *any) {
  if (c->p == c->end || *c->p == '\0' || strchr(any, *c->p) == NULL)
    return false;
  c->p++;
  return true;
}

static bool is_leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool date_ok(int y, int m, int d) {
  static const int DAYS[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m >= 1 && m <= 12 && d >= 1 &&
         d <= DAYS[m - 1] + (m == 2 && is_leap(y));
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool usc_time_from_civil(int year, int month, int day, int hour, int minute,
                         int second, int64_t *sec) {
  if (year < 0 || year > 9999 || !date_ok(year, month, day) || hour < 0 ||
      hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60)
    return false;
  *sec = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
         second;
  return true;
}

/* What a parse found; secs is local time until the offset is applied. */
typedef struct {
  bool lenient;
  int year;
  int64_t secs, frac;
} stamp_t;

/* "YYYY-MM-DDThh:mm:ss" (lenient, also with a space for the 'T') as local
 * seconds since the epoch. */
static bool date_time(cursor_t *c, stamp_t *t) {
  int mo, d, h, mi, sec;
  if (!digits(c, 4, &t->year) || !one_of(c, "-") || !digits(c, 2, &mo) ||
      !one_of(c, "-") || !digits(c, 2, &d) ||
      !one_of(c, t->lenient ? "Tt " : "Tt") || !digits(c, 2, &h) ||
      !one_of(c, ":") || !digits(c, 2, &mi) || !one_of(c, ":") ||
      !digits(c, 2, &sec))
    return false;
  return usc_time_from_civil(t->year, mo, d, h, mi, sec, &t->secs);
}

/* An optional '.' and at least one digit; the first nine count. */
static bool fraction(cursor_t *c, int64_t *ns) {
  int64_t scale = NS_PER_S / 10;
  *ns = 0;
  if (!one_of(c, "."))
    return true;
  const char *start = c->p;
  for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
    *ns += (*c->p - '0') * scale;
    scale /= 10;
  }
  return c->p > start;
}

/* "Z", "z" or ±hh:mm, as seconds east of UTC; lenient, also ±hhmm or
 * nothing (UTC). */
static bool offset(cursor_t *c, bool lenient, int64_t *east) {
  int sign = c->p < c->end && *c->p == '-' ? -1 : 1, h, m;
  *east = 0;
  if (one_of(c, "Zz") || (lenient && c->p == c->end))
    return true;
  if (!one_of(c, "+-") || !digits(c, 2, &h) || (!one_of(c, ":") && !lenient) ||
      !digits(c, 2, &m) || h > 23 || m > 59)
    return false;
  *east = sign * (h * 3600 + m * 60);
  return true;
}

/* The whole text; t->secs in UTC. */
static bool parse(const char *s, size_t len, stamp_t *t) {
  cursor_t c = {s, s + len};
  int64_t east;
  if (!date_time(&c, t) || !fraction(&c, &t->frac) ||
      !offset(&c, t->lenient, &east) || c.p != c.end)
    return false;
  t->secs -= east;
  return true;
}

int usc_time_parse_rfc3339(const char *s, size_t len, int64_t *ns) {
  stamp_t t = {.lenient = false};
  if (!parse(s, len, &t))
    return USC_ERR_INVALID;
  int64_t secs = t.secs, frac = t.frac;
  if (secs < MIN_S ||
      (secs == MIN_S && frac < INT64_MIN % NS_PER_S + NS_PER_S)) {
    *ns = INT64_MIN;
    return USC_ERR_TOO_LARGE;
  }
  if (secs > MAX_S || (secs == MAX_S && frac > INT64_MAX % NS_PER_S)) {
    *ns = INT64_MAX;
    return USC_ERR_TOO_LARGE;
  }
  /* Negative times go through secs + 1 so that no product overflows. */
  *ns = secs < 0 ? (secs + 1) * NS_PER_S + (frac - NS_PER_S)
                 : secs * NS_PER_S + frac;
  return 0;
}

int usc_time_parse_lenient(const char *s, size_t len, int64_t *sec,
                           int32_t *nanos) {
  stamp_t t = {.lenient = true};
  if (!parse(s, len, &t))
    return USC_ERR_INVALID;
  /* Year 0000 is refused as written, even where an offset would carry it
   * into 0001. */
  if (t.year < 1 || t.secs < USC_TIME_MIN_SEC || t.secs > USC_TIME_MAX_SEC)
    return USC_ERR_TOO_LARGE;
  *sec = t.secs;
  *nanos = (int32_t)t.frac;
  return 0;
}

/* `n` decimal digits of v at p; returns the end. */
static char *put_digits(char *p, int64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v /= 10)
    p[i] = (char)('0' + v % 10);
  return p + n;
}

/* Seconds (years 0000..9999) and nanoseconds (0..NS_PER_S-1) as text. */
static size_t format(int64_t secs, int64_t frac, char *out, size_t cap) {
  int64_t days = secs / 86400, rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days--;
  }
  /* The inverse of days_from_civil. */
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2);
  int64_t day = doy - (153 * mp + 2) / 5 + 1;
  int frac_digits = frac == 0             ? 0
                    : frac % 1000000 == 0 ? 3
                    : frac % 1000 == 0    ? 6
                                          : 9;
  char text[USC_TIME_RFC3339_SIZE], *p = text;
  p = put_digits(p, year, 4);
  *p++ = '-';
  p = put_digits(p, month, 2);
  *p++ = '-';
  p = put_digits(p, day, 2);
  *p++ = 'T';
  p = put_digits(p, rem / 3600, 2);
  *p++ = ':';
  p = put_digits(p, rem / 60 % 60, 2);
  *p++ = ':';
  p = put_digits(p, rem % 60, 2);
  if (frac_digits > 0) {
    *p++ = '.';
    for (int i = frac_digits; i < 9; i += 3)
      frac /= 1000;
    p = put_digits(p, frac, frac_digits);
  }
  *p++ = 'Z';
  size_t len = (size_t)(p - text);
  if (len >= cap)
    return 0;
  memcpy(out, text, len);
  out[len] = '\0';
  return len;
}

size_t usc_time_format_rfc3339(int64_t ns, char *out, size_t cap) {
  int64_t secs = ns / NS_PER_S, frac = ns % NS_PER_S;
  if (frac < 0) {
    frac += NS_PER_S;
    secs--;
  }
  return format(secs, frac, out, cap);
}

size_t usc_time_format_seconds(int64_t sec, int32_t nanos, char *out,
                               size_t cap) {
  if (sec < USC_TIME_MIN_SEC || sec > USC_TIME_MAX_SEC || nanos < 0 ||
      nanos >= NS_PER_S)
    return 0;
  return format(sec, nanos, out, cap);
}
