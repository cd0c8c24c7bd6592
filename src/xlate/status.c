/* Upstream HTTP answers -> gRPC status: the defaults of api-contract.md §2,
 * an operator's mapping text layered over them, UAPI error bodies, and
 * Retry-After. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

typedef struct {
  int http; /* an exact status, or the class digit (4 for "4xx") */
  bool cls; /* http is a class */
  char code[USC_XLATE_CODE_MAX]; /* "" matches any code */
  usc_grpc_status_t status;
  size_t line;
} rule_t;

struct usc_xlate_status_map {
  size_t n, cap;
  rule_t rules[]; /* cap + 1: the last is the line being read */
};

#define MAX_RULES 1024

/* Well-formedness is checked before anything is sent, so an upstream
 * "invalid call/view" means there is no such call/view. */
static const rule_t defaults[] = {
    {400, false, "pc_phoncall_invalid", USC_GRPC_NOT_FOUND, 0},
    {400, false, "pc_phonecall_invalid", USC_GRPC_NOT_FOUND, 0},
    {400, false, "pc_phoncallview_invalid", USC_GRPC_NOT_FOUND, 0},
    {400, false, "pc_phonecallview_invalid", USC_GRPC_NOT_FOUND, 0},
    {400, false, "pc_phonecall_state_invalid", USC_GRPC_FAILED_PRECONDITION, 0},
    {400, false, "", USC_GRPC_INVALID_ARGUMENT, 0},
    {401, false, "", USC_GRPC_UNAUTHENTICATED, 0},
    {403, false, "", USC_GRPC_PERMISSION_DENIED, 0},
    {404, false, "", USC_GRPC_NOT_FOUND, 0},
    {408, false, "", USC_GRPC_DEADLINE_EXCEEDED, 0},
    {409, false, "", USC_GRPC_ABORTED, 0},
    {412, false, "", USC_GRPC_FAILED_PRECONDITION, 0},
    {429, false, "", USC_GRPC_RESOURCE_EXHAUSTED, 0},
    {500, false, "", USC_GRPC_INTERNAL, 0},
    {501, false, "", USC_GRPC_UNIMPLEMENTED, 0},
    {502, false, "", USC_GRPC_UNAVAILABLE, 0},
    {503, false, "", USC_GRPC_UNAVAILABLE, 0},
    {504, false, "", USC_GRPC_UNAVAILABLE, 0},
};

/* -1 when the rule does not apply; higher is more specific. */
static int score(const rule_t *r, int http, const char *code) {
  if (r->cls ? r->http != http / 100 : r->http != http)
    return -1;
  if (r->code[0] != '\0' && !xl_ieq(code, strlen(code), r->code))
    return -1;
  return (r->code[0] != '\0' ? 2 : 0) + (r->cls ? 0 : 1);
}

/* Keeps the best rule so far; ties keep the earlier (the map's). */
static void consider(const rule_t *rules, size_t n, int http, const char *code,
                     int *best, usc_grpc_status_t *status) {
  for (size_t i = 0; i < n; i++) {
    int s = score(&rules[i], http, code);
    if (s > *best) {
      *best = s;
      *status = rules[i].status;
    }
  }
}

usc_grpc_status_t usc_xlate_status_lookup(const usc_xlate_status_map_t *map,
                                          int http_status, const char *code) {
  int best = -1;
  usc_grpc_status_t status = USC_GRPC_UNKNOWN;
  if (code == NULL)
    code = "";
  if (map != NULL)
    consider(map->rules, map->n, http_status, code, &best, &status);
  consider(defaults, USC_ARRAY_LEN(defaults), http_status, code, &best,
           &status);
  if (best < 0 && http_status >= 200 && http_status <= 299)
    return USC_GRPC_OK;
  return status;
}

/* ---- the mapping text ---- */

typedef struct {
  const char *s;
  size_t len;
} tok_t;

/* Splits a line (comment removed) into at most 4 tokens. */
static size_t tokenize(const char *line, size_t len, tok_t tok[4]) {
  const char *hash = memchr(line, '#', len);
  size_t n = 0, i = 0;
  if (hash != NULL)
    len = (size_t)(hash - line);
  while (i < len && n < 4) {
    while (i < len && strchr(" \t\r", line[i]) != NULL)
      i++;
    size_t start = i;
    while (i < len && strchr(" \t\r", line[i]) == NULL)
      i++;
    if (i > start)
      tok[n++] = (tok_t){line + start, i - start};
  }
  while (i < len && strchr(" \t\r", line[i]) != NULL)
    i++;
  return i < len ? 5 : n; /* 5: too many */
}

static bool parse_http(tok_t t, rule_t *r) {
  if (t.len != 3 || t.s[0] < '3' || t.s[0] > '5')
    return false;
  r->cls = xl_ieq(t.s + 1, 2, "xx");
  r->http = t.s[0] - '0';
  if (r->cls)
    return true;
  int32_t v;
  if (!xl_parse_int32(t.s, 3, &v))
    return false;
  r->http = v;
  return true;
}

static bool parse_code(tok_t t, rule_t *r) {
  if (t.len == 0 || t.len >= sizeof(r->code))
    return false;
  for (size_t i = 0; i < t.len; i++) {
    char c = t.s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
      return false;
  }
  memcpy(r->code, t.s, t.len);
  r->code[t.len] = '\0';
  return true;
}

/* A name ("NOT_FOUND", any case) or a number 1..16; never OK. */
static bool parse_status(tok_t t, rule_t *r) {
  int32_t v;
  if (xl_parse_int32(t.s, t.len, &v) && t.s[0] != '+' && t.s[0] != '-') {
    r->status = (usc_grpc_status_t)v;
    return v >= 1 && v <= 16;
  }
  for (int i = 1; i <= 16; i++) {
    if (xl_ieq(t.s, t.len, usc_grpc_status_name((usc_grpc_status_t)i))) {
      r->status = (usc_grpc_status_t)i;
      return true;
    }
  }
  return false;
}

static bool same_rule(const rule_t *a, const rule_t *b) {
  return a->http == b->http && a->cls == b->cls &&
         xl_ieq(a->code, strlen(a->code), b->code);
}

typedef struct {
  char *error;
  size_t cap;
  size_t lineno;
} where_t;

/* "line N: ..." into the caller's buffer; returns false. */
static bool line_error(const where_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool line_error(const where_t *w, const char *fmt, ...) {
  if (w->cap == 0)
    return false;
  int n = snprintf(w->error, w->cap, "line %zu: ", w->lineno);
  va_list ap;
  va_start(ap, fmt);
  if (n >= 0 && (size_t)n < w->cap)
    vsnprintf(w->error + n, w->cap - (size_t)n, fmt, ap);
  va_end(ap);
  return false;
}

/* Quotes at most 32 bytes of a token in messages. */
#define TOK(t) (int)((t).len > 32 ? 32 : (t).len), (t).s

static bool parse_rule(const tok_t *tok, size_t n, rule_t *r,
                       const where_t *w) {
  if (n < 2 || n > 3)
    return line_error(w, "expected \"<http-status> [<uapi-code>] "
                         "<grpc-status>\"");
  if (!parse_http(tok[0], r))
    return line_error(w, "HTTP status \"%.*s\" is not 300..599 or 3xx..5xx",
                      TOK(tok[0]));
  if (n == 3 && !parse_code(tok[1], r))
    return line_error(w,
                      "UAPI code \"%.*s\" is not 1 to 63 of "
                      "[A-Za-z0-9_.-]",
                      TOK(tok[1]));
  if (!parse_status(tok[n - 1], r))
    return line_error(w,
                      "unknown gRPC status \"%.*s\" (use a name such as "
                      "NOT_FOUND, or 1..16; OK is not an error)",
                      TOK(tok[n - 1]));
  return true;
}

/* Two rules for the same case would make the file's meaning depend on
 * their order: refused. */
static bool add_rule(usc_xlate_status_map_t *map, const rule_t *r,
                     const where_t *w) {
  for (size_t i = 0; i < map->n; i++) {
    if (same_rule(&map->rules[i], r))
      return line_error(w, "the same rule as line %zu", map->rules[i].line);
  }
  if (map->n == map->cap)
    return line_error(w, "more than %d rules", MAX_RULES);
  map->n++;
  return true;
}

/* Reads one line into map->rules[map->n] (0 tokens: nothing). */
static bool parse_line(const char *line, size_t len, const where_t *w,
                       usc_xlate_status_map_t *map) {
  tok_t tok[5];
  size_t n = tokenize(line, len, tok);
  rule_t *r = &map->rules[map->n];
  *r = (rule_t){.line = w->lineno};
  if (n == 0)
    return true;
  return parse_rule(tok, n, r, w) && add_rule(map, r, w);
}

static size_t count_lines(const char *text, size_t len) {
  size_t n = 1;
  for (size_t i = 0; i < len; i++)
    n += text[i] == '\n';
  return n;
}

int usc_xlate_status_map_parse(const char *text, size_t len,
                               usc_xlate_status_map_t **out, char *error,
                               size_t error_cap) {
  *out = NULL;
  if (text == NULL)
    text = "";
  size_t lines = count_lines(text, len);
  size_t cap = lines < MAX_RULES ? lines : MAX_RULES;
  usc_xlate_status_map_t *map =
      usc_malloc(sizeof(*map) + (cap + 1) * sizeof(rule_t));
  if (map == NULL)
    return USC_ERR_NOMEM;
  map->n = 0;
  map->cap = cap;
  size_t start = 0;
  for (size_t lineno = 1; start <= len; lineno++) {
    const char *nl = memchr(text + start, '\n', len - start);
    size_t end = nl != NULL ? (size_t)(nl - text) : len;
    where_t w = {error, error_cap, lineno};
    if (!parse_line(text + start, end - start, &w, map)) {
      usc_free(map);
      return USC_ERR_INVALID;
    }
    start = end + 1;
  }
  *out = map;
  return 0;
}

void usc_xlate_status_map_free(usc_xlate_status_map_t *map) { usc_free(map); }

/* ---- error bodies ---- */

static void copy_member(json_object *o, const char *key, char *dst, size_t cap,
                        bool is_code) {
  char buf[24];
  const char *s;
  size_t len;
  if (!xl_json_text(xl_json_get(o, key), &s, &len, buf))
    return;
  if (is_code)
    xl_copy_code(dst, cap, s, len);
  else
    xl_copy_text(dst, cap, s, len);
}

int usc_xlate_error_body_parse(const char *body, size_t len,
                               char code[USC_XLATE_CODE_MAX],
                               char message[USC_XLATE_MESSAGE_MAX]) {
  char why[128];
  json_object *root = NULL;
  code[0] = message[0] = '\0';
  if (xl_json_parse(body, len, &root, why, sizeof(why)) != 0)
    return USC_ERR_INVALID;
  json_object *e = xl_json_get(root, "error");
  int rc = USC_ERR_INVALID;
  if (json_object_is_type(e, json_type_object)) {
    copy_member(e, "code", code, USC_XLATE_CODE_MAX, true);
    copy_member(e, "message", message, USC_XLATE_MESSAGE_MAX, false);
    rc = 0;
  } else if (json_object_is_type(e, json_type_string)) {
    /* OAuth's form, from a token check in front of UAPI. */
    copy_member(root, "error", code, USC_XLATE_CODE_MAX, true);
    copy_member(root, "error_description", message, USC_XLATE_MESSAGE_MAX,
                false);
    rc = 0;
  }
  json_object_put(root);
  return rc;
}

/* ---- Retry-After ---- */

static int64_t clamp_ms(int64_t ms) {
  return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : ms;
}

static bool delay_seconds(const char *s, size_t len, int64_t *ms) {
  int64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    if (v < INT32_MAX) /* saturate: the result is capped anyway */
      v = v * 10 + (s[i] - '0');
  }
  *ms = clamp_ms(v * 1000);
  return len > 0;
}

int usc_xlate_retry_after_ms(const char *value, size_t len, int64_t now_ms,
                             int64_t *delay_ms) {
  while (len > 0 && (value[0] == ' ' || value[0] == '\t')) {
    value++;
    len--;
  }
  while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
    len--;
  if (delay_seconds(value, len, delay_ms))
    return 0;
  int64_t sec;
  if (!xl_http_date(value, len, &sec))
    return USC_ERR_INVALID;
  *delay_ms = clamp_ms(sec * 1000 - now_ms);
  return 0;
}
