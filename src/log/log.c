#include "src/log/log.h"

#include "src/grpc/grpc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

/* The longest line written, newline included; longer records are cut. No
 * more than PIPE_BUF, so that a line is one atomic write to a pipe. */
#define LINE_MAX_BYTES 4096
/* Caps on caller-supplied strings, so that the free-form detail keeps most
 * of the line and every RPC field always fits. */
#define MSG_MAX 256
#define FIELD_MAX 512
#define ELLIPSIS "..."

/* The sink. Set once at startup, before other threads log. */
static struct {
  usc_log_format_t format;
  usc_log_level_t level;
  FILE *out;
} sink = {USC_LOG_TEXT, USC_LOG_INFO, NULL};

void usc_log_init(usc_log_format_t format, usc_log_level_t level, FILE *out) {
  sink.format = format;
  sink.level = level;
  sink.out = out;
}

/* One record being built on the stack. Appends past the end are dropped,
 * always leaving room for the JSON closing brace and the newline. */
typedef struct {
  char buf[LINE_MAX_BYTES];
  size_t len;
} line_t;

static size_t room(const line_t *line) {
  return sizeof line->buf - 2 - line->len;
}

static void put_bytes(line_t *line, const char *s, size_t n) {
  if (n > room(line))
    n = room(line);
  memcpy(line->buf + line->len, s, n);
  line->len += n;
}

static void put(line_t *line, const char *s) { put_bytes(line, s, strlen(s)); }

static void putf(line_t *line, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void putf(line_t *line, const char *fmt, ...) {
  size_t avail = room(line) + 1; /* vsnprintf counts the NUL; see room() */
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(line->buf + line->len, avail, fmt, ap);
  va_end(ap);
  if (n > 0)
    line->len += (size_t)n < avail ? (size_t)n : avail - 1;
}

/* Writes the encoding of the unit starting at s[0] (of the `n` bytes left)
 * to `out` (at most 8 bytes), sets *used to the input bytes it covers and
 * returns the output length. */
typedef size_t (*escape_fn)(const unsigned char *s, size_t n, char *out,
                            size_t *used);

static const char hex[] = "0123456789abcdef";

/* The length of the well-formed UTF-8 sequence at s, or 0. Overlong forms,
 * surrogates and code points past U+10FFFF are not well-formed. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char lo = 0x80, hi = 0xbf;
  size_t len;
  if (s[0] >= 0xc2 && s[0] <= 0xdf)
    len = 2;
  else if (s[0] >= 0xe0 && s[0] <= 0xef)
    len = 3;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4)
    len = 4;
  else
    return 0;
  if (s[0] == 0xe0)
    lo = 0xa0;
  else if (s[0] == 0xed)
    hi = 0x9f;
  else if (s[0] == 0xf0)
    lo = 0x90;
  else if (s[0] == 0xf4)
    hi = 0x8f;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return len;
}

/* JSON string content: quotes, backslashes and control characters are
 * escaped, and bytes that are not UTF-8 become U+FFFD, so any input gives
 * a valid JSON line. */
static size_t escape_json(const unsigned char *s, size_t n, char *out,
                          size_t *used) {
  size_t len;
  *used = 1;
  if (s[0] == '"' || s[0] == '\\') {
    out[0] = '\\';
    out[1] = (char)s[0];
    return 2;
  }
  if (s[0] < 0x20 || s[0] == 0x7f) {
    memcpy(out, "\\u00", 4);
    out[4] = hex[s[0] >> 4];
    out[5] = hex[s[0] & 0xf];
    return 6;
  }
  if (s[0] < 0x80) {
    out[0] = (char)s[0];
    return 1;
  }
  len = utf8_len(s, n);
  if (len == 0) {
    memcpy(out, "\\ufffd", 6);
    return 6;
  }
  memcpy(out, s, len);
  *used = len;
  return len;
}

/* Text: control characters are escaped so a record stays on one line and
 * cannot fake another. */
static size_t escape_text(const unsigned char *s, size_t n, char *out,
                          size_t *used) {
  (void)n;
  *used = 1;
  if (s[0] >= 0x20 && s[0] != 0x7f) {
    out[0] = (char)s[0];
    return 1;
  }
  out[0] = '\\';
  switch (s[0]) {
  case '\n':
    out[1] = 'n';
    return 2;
  case '\r':
    out[1] = 'r';
    return 2;
  case '\t':
    out[1] = 't';
    return 2;
  default:
    out[1] = 'x';
    out[2] = hex[s[0] >> 4];
    out[3] = hex[s[0] & 0xf];
    return 4;
  }
}

/* Inside a quoted text value, quotes and backslashes are escaped too. */
static size_t escape_text_quoted(const unsigned char *s, size_t n, char *out,
                                 size_t *used) {
  if (s[0] == '"' || s[0] == '\\') {
    *used = 1;
    out[0] = '\\';
    out[1] = (char)s[0];
    return 2;
  }
  return escape_text(s, n, out, used);
}

/* How many bytes of s[0..n) fit in `limit` bytes once encoded by
 * `escape`. An escape is never split. */
static size_t fitting(const char *s, size_t n, size_t limit, escape_fn escape) {
  const unsigned char *u = (const unsigned char *)s;
  size_t in = 0, out = 0, used;
  char unit[8];
  while (in < n) {
    size_t len = escape(u + in, n - in, unit, &used);
    if (out + len > limit)
      break;
    out += len;
    in += used;
  }
  return in;
}

/* Appends s[0..n) encoded by `escape`, in at most `budget` bytes. When it
 * does not fit, or `cut` says the input was already shortened, it ends in
 * ELLIPSIS instead. */
static void put_escaped(line_t *line, const char *s, size_t n, size_t budget,
                        escape_fn escape, bool cut) {
  const unsigned char *u = (const unsigned char *)s;
  size_t used;
  char unit[8];

  if (budget > room(line))
    budget = room(line);
  if (cut || fitting(s, n, budget, escape) < n) {
    size_t marker = strlen(ELLIPSIS);
    n = fitting(s, n, budget > marker ? budget - marker : 0, escape);
    cut = true;
  }
  for (size_t in = 0; in < n; in += used)
    put_bytes(line, unit, escape(u + in, n - in, unit, &used));
  if (cut)
    put(line, ELLIPSIS);
}

static const char *level_name(usc_log_level_t level, bool upper) {
  static const char *const names[][2] = {{"debug", "DEBUG"},
                                         {"info", "INFO"},
                                         {"warn", "WARN"},
                                         {"error", "ERROR"}};
  if ((unsigned)level >= sizeof names / sizeof names[0])
    level = USC_LOG_ERROR;
  return names[level][upper];
}

/* RFC 3339 UTC with milliseconds: 2026-11-29T07:50:00.123Z. */
static void put_time(line_t *line) {
  struct timespec ts;
  struct tm tm;
  char stamp[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  putf(line, "%s.%03ldZ", stamp, ts.tv_nsec / 1000000);
}

/* Starts a record: the time and level, and in JSON the opening brace. */
static void begin(line_t *line, usc_log_level_t level) {
  line->len = 0;
  if (sink.format == USC_LOG_JSON) {
    put(line, "{\"time\":\"");
    put_time(line);
    putf(line, "\",\"level\":\"%s\"", level_name(level, false));
  } else {
    put_time(line);
    putf(line, " %s", level_name(level, true));
  }
}

/* A JSON member with a string value: ,"key":"value". */
static void put_json_field(line_t *line, const char *key, const char *value,
                           size_t budget, bool cut) {
  putf(line, ",\"%s\":\"", key);
  put_escaped(line, value, strlen(value), budget, escape_json, cut);
  put(line, "\"");
}

/* A text value, quoted when it is empty or holds characters that would
 * make the key=value pairs ambiguous. */
static void put_text_value(line_t *line, const char *value) {
  size_t n = strlen(value);
  bool quote = n == 0 || strpbrk(value, " \"=\\") != NULL;
  for (size_t i = 0; i < n && !quote; i++)
    quote = (unsigned char)value[i] < 0x20 || value[i] == 0x7f;
  if (!quote) {
    put_escaped(line, value, n, FIELD_MAX, escape_text, false);
    return;
  }
  put(line, "\"");
  put_escaped(line, value, n, FIELD_MAX, escape_text_quoted, false);
  put(line, "\"");
}

/* An RPC field, left out when `value` is NULL. */
static void put_rpc_field(line_t *line, const char *key, const char *value) {
  if (value == NULL)
    return;
  if (sink.format == USC_LOG_JSON) {
    put_json_field(line, key, value, FIELD_MAX, false);
    return;
  }
  putf(line, " %s=", key);
  put_text_value(line, value);
}

/* Ends the record and writes it with one call, so concurrent records never
 * interleave: stdio locks the stream for the duration of fwrite. room()
 * kept the two bytes used here. */
static void finish(line_t *line) {
  FILE *out = sink.out != NULL ? sink.out : stderr;
  if (sink.format == USC_LOG_JSON)
    line->buf[line->len++] = '}';
  line->buf[line->len++] = '\n';
  fwrite(line->buf, 1, line->len, out);
  fflush(out);
}

void usc_log(usc_log_level_t level, const char *msg, const char *fmt, ...) {
  line_t line;
  char detail[LINE_MAX_BYTES];
  size_t detail_len = 0;
  bool cut = false;

  if (level < sink.level)
    return;
  if (fmt != NULL) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (n > 0) {
      cut = (size_t)n >= sizeof detail;
      detail_len = cut ? sizeof detail - 1 : (size_t)n;
    }
  }
  if (msg == NULL)
    msg = "";

  begin(&line, level);
  if (sink.format == USC_LOG_JSON) {
    put_json_field(&line, "msg", msg, MSG_MAX, false);
    if (detail_len > 0) {
      put(&line, ",\"detail\":\"");
      /* Leaves a byte for the closing quote. */
      put_escaped(&line, detail, detail_len, room(&line) - 1, escape_json, cut);
      put(&line, "\"");
    }
  } else {
    put(&line, " ");
    put_escaped(&line, msg, strlen(msg), MSG_MAX, escape_text, false);
    if (detail_len > 0) {
      put(&line, " ");
      put_escaped(&line, detail, detail_len, room(&line), escape_text, cut);
    }
  }
  finish(&line);
}

void usc_log_rpc(const usc_log_rpc_t *rpc) {
  line_t line;
  const char *code = usc_grpc_status_name((usc_grpc_status_t)rpc->grpc_code);
  int64_t us = rpc->duration_ns > 0 ? rpc->duration_ns / 1000 : 0;

  if (USC_LOG_INFO < sink.level)
    return;
  begin(&line, USC_LOG_INFO);
  if (sink.format == USC_LOG_JSON)
    put(&line, ",\"msg\":\"rpc\"");
  else
    put(&line, " rpc");
  put_rpc_field(&line, "method", rpc->method);
  if (sink.format == USC_LOG_JSON)
    putf(&line, ",\"code\":\"%s\",\"code_num\":%d,\"duration_ms\":%lld.%03lld",
         code, rpc->grpc_code, (long long)(us / 1000), (long long)(us % 1000));
  else
    putf(&line, " code=%s(%d) duration_us=%lld", code, rpc->grpc_code,
         (long long)us);
  put_rpc_field(&line, "backend", rpc->backend);
  if (rpc->upstream_status > 0)
    putf(&line,
         sink.format == USC_LOG_JSON ? ",\"upstream_status\":%d"
                                     : " upstream_status=%d",
         rpc->upstream_status);
  put_rpc_field(&line, "peer", rpc->peer);
  put_rpc_field(&line, "request_id", rpc->request_id);
  finish(&line);
}
