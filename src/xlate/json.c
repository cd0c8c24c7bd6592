/* json-c helpers: one bounded, UTF-8-checking parser for every JSON text
 * that comes in, UAPI's lenient readings of scalars (numbers as strings,
 * 0/1 for booleans), and builders that keep ownership rules simple (each
 * takes the value it is given, even when it fails). */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

/* PhoneCall JSON nests 4 levels; 32 leaves room for unknown members. */
#define JSON_DEPTH 32

static bool blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
      return false;
  }
  return true;
}

/* json-c wants to see the end of the text to finish a bare literal or
 * number ("null", "12"): the NUL it treats as end of input. */
static json_object *finish(struct json_tokener *tok, json_object *obj,
                           enum json_tokener_error *e) {
  if (*e == json_tokener_continue) {
    obj = json_tokener_parse_ex(tok, "", 1);
    *e = json_tokener_get_error(tok);
  }
  return obj;
}

/* One JSON value from the text; *end is where json-c stopped. False
 * when json-c could not even make its tokener. */
static bool tokenize(const char *text, size_t len, json_object **obj,
                     enum json_tokener_error *e, size_t *end) {
  struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
  if (tok == NULL)
    return false;
  json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
  *obj = json_tokener_parse_ex(tok, text, (int)len);
  *e = json_tokener_get_error(tok);
  *end = json_tokener_get_parse_end(tok);
  *obj = finish(tok, *obj, e);
  json_tokener_free(tok);
  return true;
}

int xl_json_parse(const char *text, size_t len, json_object **out, char *why,
                  size_t why_cap) {
  enum json_tokener_error e;
  size_t end;
  json_object *obj;
  *out = NULL;
  if (len == 0 || blank(text, len))
    return 0;
  if (len > USC_XLATE_JSON_MAX) {
    snprintf(why, why_cap, "the JSON text is over %d bytes",
             USC_XLATE_JSON_MAX);
    return USC_ERR_INVALID;
  }
  if (!tokenize(text, len, &obj, &e, &end))
    return USC_ERR_NOMEM;
  if (e == json_tokener_success && blank(text + end, len - end)) {
    *out = obj;
    return 0;
  }
  json_object_put(obj);
  snprintf(why, why_cap, "malformed JSON (%s at byte %zu)",
           e == json_tokener_success ? "text after the value"
                                     : json_tokener_error_desc(e),
           end);
  return USC_ERR_INVALID;
}

json_object *xl_json_get(json_object *o, const char *key) {
  json_object *v = NULL;
  if (!json_object_is_type(o, json_type_object) ||
      !json_object_object_get_ex(o, key, &v))
    return NULL;
  return v; /* NULL for JSON null */
}

bool xl_json_text(json_object *v, const char **s, size_t *len, char buf[24]) {
  if (json_object_is_type(v, json_type_int)) {
    *len =
        (size_t)snprintf(buf, 24, "%lld", (long long)json_object_get_int64(v));
    *s = buf;
    return true;
  }
  if (!json_object_is_type(v, json_type_string))
    return false;
  *s = json_object_get_string(v);
  *len = (size_t)json_object_get_string_len(v);
  /* A C string cannot hold an embedded NUL ("\u0000"). */
  return memchr(*s, '\0', *len) == NULL;
}

/* Integral values only; the range test also refuses NaN. */
static bool double_int32(double d, int32_t *out) {
  if (!(d >= INT32_MIN && d <= INT32_MAX))
    return false;
  *out = (int32_t)d;
  return (double)*out == d;
}

bool xl_json_int32(json_object *v, int32_t *out, bool *present) {
  *present = true;
  switch (json_object_get_type(v)) {
  case json_type_int: {
    int64_t i = json_object_get_int64(v);
    *out = (int32_t)i;
    return i >= INT32_MIN && i <= INT32_MAX;
  }
  case json_type_double:
    return double_int32(json_object_get_double(v), out);
  case json_type_string: {
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    *present = len > 0;
    return len == 0 || xl_parse_int32(s, len, out);
  }
  default:
    return false;
  }
}

bool xl_json_bool(json_object *v, bool *out) {
  int32_t i;
  bool present;
  if (json_object_is_type(v, json_type_boolean)) {
    *out = json_object_get_boolean(v);
    return true;
  }
  if (json_object_is_type(v, json_type_string)) {
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (xl_ieq(s, len, "true") || xl_ieq(s, len, "false")) {
      *out = xl_ieq(s, len, "true");
      return true;
    }
  }
  if (!xl_json_int32(v, &i, &present) || !present || (i != 0 && i != 1))
    return false;
  *out = i == 1;
  return true;
}

/* ---- building ---- */

int xl_json_put(json_object *o, const char *key, json_object *v) {
  if (v == NULL)
    return USC_ERR_NOMEM;
  if (json_object_object_add(o, key, v) != 0) {
    json_object_put(v); /* json-c keeps it only on success */
    return USC_ERR_NOMEM;
  }
  return 0;
}

int xl_json_push(json_object *array, json_object *v) {
  if (v == NULL)
    return USC_ERR_NOMEM;
  if (json_object_array_add(array, v) != 0) {
    json_object_put(v);
    return USC_ERR_NOMEM;
  }
  return 0;
}

int xl_json_put_str(json_object *o, const char *key, const char *s) {
  return xl_json_put(o, key, json_object_new_string(s));
}

int xl_json_put_int(json_object *o, const char *key, int64_t v) {
  return xl_json_put(o, key, json_object_new_int64(v));
}

int xl_json_dump(json_object *o, char **text, size_t *len) {
  size_t n;
  const char *s = json_object_to_json_string_length(
      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
  if (s == NULL)
    return USC_ERR_NOMEM;
  *text = usc_strndup(s, n);
  if (*text == NULL)
    return USC_ERR_NOMEM;
  *len = n;
  return 0;
}
