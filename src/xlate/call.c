/* PhoneCall and PhoneCallView <-> UAPI JSON, driven by one table per
 * message so that reading and writing name the same members. Reading
 * accepts UAPI's quirks (numbers as strings, callerID, link or links, a
 * bare string for an array); writing emits the documented forms (numbers,
 * callerId, links, UTC "Z" timestamps) and leaves out what is unset. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

typedef enum {
  F_STR,    /* char * */
  F_TIME,   /* Timestamp * */
  F_INT32W, /* Int32Value * */
  F_ENUM,   /* UAPI number kept as is; 0 is "not given" */
  F_ENUM0,  /* UAPI 0 is a real value, numbered UAPI_ZERO in the proto */
  F_STRV,   /* repeated string */
} ftype_t;

typedef struct {
  const char *key;
  const char *alt; /* another spelling accepted on input */
  size_t off;
  size_t count_off; /* F_STRV: the n_ field */
  ftype_t type;
} jfield_t;

#define UAPI_ZERO 100

#define C(f) offsetof(xl_call_t, f)
#define V(f) offsetof(xl_view_t, f)

static const jfield_t call_fields[] = {
    {"id", NULL, C(id), 0, F_STR},
    {"extension", NULL, C(extension), 0, F_STR},
    {"ownerId", NULL, C(owner_id), 0, F_STR},
    {"ownerName", NULL, C(owner_name), 0, F_STR},
    {"published", NULL, C(published), 0, F_TIME},
    {"answered", NULL, C(answered), 0, F_TIME},
    {"nonce", NULL, C(nonce), 0, F_STR},
};

static const jfield_t view_fields[] = {
    {"id", NULL, V(id), 0, F_STR},
    {"extension", NULL, V(extension), 0, F_STR},
    {"source", NULL, V(source), V(n_source), F_STRV},
    {"destination", NULL, V(destination), V(n_destination), F_STRV},
    {"flow", NULL, V(flow), 0, F_ENUM},
    {"status", NULL, V(status), 0, F_ENUM0},
    {"ringing", NULL, V(ringing), 0, F_TIME},
    {"callerId", "callerID", V(caller_id), 0, F_STR},
    {"recording", NULL, V(recording), 0, F_TIME},
    {"answered", NULL, V(answered), 0, F_TIME},
    {"parked", NULL, V(parked), 0, F_TIME},
    {"parkedPos", NULL, V(parked_pos), 0, F_INT32W},
    {"parkedBy", NULL, V(parked_by), 0, F_STR},
    {"onHold", NULL, V(on_hold), 0, F_TIME},
    {"holder", NULL, V(holder), 0, F_INT32W},
    {"disposition", NULL, V(disposition), 0, F_ENUM0},
};

#define AT(msg, f, type) ((type *)((char *)(msg) + (f)->off))

/* ---- reading ---- */

typedef struct {
  ProtobufCAllocator *a;
  char *why;
  size_t why_cap;
} rctx_t;

static int bad(rctx_t *r, const char *key, const char *what) {
  snprintf(r->why, r->why_cap, "\"%s\" is not %s", key, what);
  return USC_ERR_INVALID;
}

static int read_str(rctx_t *r, const jfield_t *f, json_object *v, void *msg) {
  char buf[24];
  const char *s;
  size_t len;
  if (!xl_json_text(v, &s, &len, buf))
    return bad(r, f->key, "a string");
  char *copy = xl_strndup(r->a, s, len);
  if (copy == NULL)
    return USC_ERR_NOMEM;
  *AT(msg, f, char *) = copy;
  return 0;
}

static int read_time(rctx_t *r, const jfield_t *f, json_object *v, void *msg) {
  int64_t sec;
  int32_t nanos;
  if (!json_object_is_type(v, json_type_string))
    return bad(r, f->key, "a date-time string");
  const char *s = json_object_get_string(v);
  size_t len = (size_t)json_object_get_string_len(v);
  if (len == 0)
    return 0; /* an empty date is no date */
  if (usc_time_parse_lenient(s, len, &sec, &nanos) != 0)
    return bad(r, f->key, "an RFC 3339 date-time");
  *AT(msg, f, xl_time_t *) = xl_time_new(r->a, sec, nanos);
  return *AT(msg, f, xl_time_t *) != NULL ? 0 : USC_ERR_NOMEM;
}

static int read_number(rctx_t *r, const jfield_t *f, json_object *v,
                       void *msg) {
  int32_t i;
  bool present;
  if (!xl_json_int32(v, &i, &present) || (f->type != F_INT32W && i < 0))
    return bad(r, f->key, "a number");
  if (!present)
    return 0;
  if (f->type == F_INT32W) {
    *AT(msg, f, Google__Protobuf__Int32Value *) = xl_int32_new(r->a, i);
    return *AT(msg, f, void *) != NULL ? 0 : USC_ERR_NOMEM;
  }
  *AT(msg, f, int) = f->type == F_ENUM0 && i == 0 ? UAPI_ZERO : i;
  return 0;
}

/* An array of strings (or numbers), or a bare string for an array of one. */
static int read_strv(rctx_t *r, const jfield_t *f, json_object *v, void *msg) {
  bool bare = !json_object_is_type(v, json_type_array);
  size_t n = bare ? 1 : json_object_array_length(v);
  char **items = xl_alloc(r->a, (n + 1) * sizeof(char *));
  if (items == NULL)
    return USC_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) {
    json_object *e = bare ? v : json_object_array_get_idx(v, i);
    char buf[24];
    const char *s;
    size_t len;
    if (!xl_json_text(e, &s, &len, buf))
      return bad(r, f->key, "an array of strings");
    if ((items[i] = xl_strndup(r->a, s, len)) == NULL)
      return USC_ERR_NOMEM;
  }
  *AT(msg, f, char **) = items;
  *(size_t *)((char *)msg + f->count_off) = n;
  return 0;
}

static int read_field(rctx_t *r, const jfield_t *f, json_object *o, void *msg) {
  json_object *v = xl_json_get(o, f->key);
  if (v == NULL && f->alt != NULL)
    v = xl_json_get(o, f->alt);
  if (v == NULL)
    return 0;
  switch (f->type) {
  case F_STR:
    return read_str(r, f, v, msg);
  case F_TIME:
    return read_time(r, f, v, msg);
  case F_STRV:
    return read_strv(r, f, v, msg);
  default:
    return read_number(r, f, v, msg);
  }
}

static int read_fields(rctx_t *r, const jfield_t *fields, size_t n,
                       json_object *o, void *msg) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = read_field(r, &fields[i], o, msg);
  return rc;
}

static int read_view(rctx_t *r, json_object *o, xl_view_t **out) {
  if (!json_object_is_type(o, json_type_object))
    return bad(r, "phoneCallView", "an array of objects");
  *out = xl_pb_new(r->a, &uapi__phonecalls__v1__phone_call_view__descriptor);
  if (*out == NULL)
    return USC_ERR_NOMEM;
  return read_fields(r, view_fields, USC_ARRAY_LEN(view_fields), o, *out);
}

/* Says which view was wrong: "phoneCallView[1]: "status" is not ...". */
static int in_view(rctx_t *r, size_t i, int rc) {
  if (rc == USC_ERR_INVALID) {
    char prefix[40];
    snprintf(prefix, sizeof(prefix), "phoneCallView[%zu]: ", i);
    xl_prefix(r->why, r->why_cap, prefix);
  }
  return rc;
}

static int read_views(rctx_t *r, json_object *o, xl_call_t *call) {
  json_object *v = xl_json_get(o, "phoneCallView");
  if (v == NULL)
    return 0;
  bool bare = !json_object_is_type(v, json_type_array);
  size_t n = bare ? 1 : json_object_array_length(v);
  call->phone_call_views = xl_alloc(r->a, (n + 1) * sizeof(xl_view_t *));
  if (call->phone_call_views == NULL)
    return USC_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) {
    json_object *e = bare ? v : json_object_array_get_idx(v, i);
    int rc = in_view(r, i, read_view(r, e, &call->phone_call_views[i]));
    if (rc != 0)
      return rc;
    call->n_phone_call_views = i + 1;
  }
  return 0;
}

/* links.self (documented) or link.self (the seed); a bare string too. */
static json_object *self_of(json_object *o, const char *key) {
  json_object *v = xl_json_get(o, key);
  return json_object_is_type(v, json_type_object) ? xl_json_get(v, "self") : v;
}

static int read_link(rctx_t *r, json_object *o, xl_call_t *call) {
  json_object *v = self_of(o, "links");
  const char *key = "links";
  if (v == NULL) {
    v = self_of(o, "link");
    key = "link";
  }
  if (v == NULL)
    return 0;
  jfield_t f = {key, NULL, C(self_link), 0, F_STR};
  return read_str(r, &f, v, call);
}

int xl_call_from_json(json_object *o, ProtobufCAllocator *a, xl_call_t **out,
                      char *why, size_t why_cap) {
  rctx_t r = {a, why, why_cap};
  if (!json_object_is_type(o, json_type_object))
    return bad(&r, "PhoneCall", "an object");
  xl_call_t *call = xl_pb_new(a, &uapi__phonecalls__v1__phone_call__descriptor);
  if (call == NULL)
    return USC_ERR_NOMEM;
  int rc = read_fields(&r, call_fields, USC_ARRAY_LEN(call_fields), o, call);
  if (rc == 0)
    rc = read_views(&r, o, call);
  if (rc == 0)
    rc = read_link(&r, o, call);
  *out = call;
  return rc;
}

/* ---- writing ---- */

static int write_time(const xl_time_t *t, const char *key, json_object *o) {
  char text[USC_TIME_RFC3339_SIZE];
  if (usc_time_format_seconds(t->seconds, t->nanos, text, sizeof(text)) == 0)
    return USC_ERR_INVALID;
  return xl_json_put_str(o, key, text);
}

static int write_strv(char *const *v, size_t n, const char *key,
                      json_object *o) {
  json_object *array = json_object_new_array_ext((int)n);
  int rc = xl_json_put(o, key, array);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = xl_json_push(array, json_object_new_string(v[i] ? v[i] : ""));
  return rc;
}

static int write_str(const char *s, const char *key, json_object *o) {
  return s != NULL && s[0] != '\0' ? xl_json_put_str(o, key, s) : 0;
}

static int write_enum(const jfield_t *f, int e, json_object *o) {
  if (e == 0)
    return 0;
  return xl_json_put_int(o, f->key,
                         f->type == F_ENUM0 && e == UAPI_ZERO ? 0 : e);
}

static int write_field(const jfield_t *f, const void *msg, json_object *o) {
  void *m = (void *)msg;
  const Google__Protobuf__Int32Value *w;
  size_t n;
  switch (f->type) {
  case F_STR:
    return write_str(*AT(m, f, char *), f->key, o);
  case F_TIME:
    return *AT(m, f, void *) ? write_time(*AT(m, f, xl_time_t *), f->key, o)
                             : 0;
  case F_INT32W:
    w = *AT(m, f, Google__Protobuf__Int32Value *);
    return w != NULL ? xl_json_put_int(o, f->key, w->value) : 0;
  case F_STRV:
    n = *(size_t *)((char *)m + f->count_off);
    return n > 0 ? write_strv(*AT(m, f, char **), n, f->key, o) : 0;
  default:
    return write_enum(f, *AT(m, f, int), o);
  }
}

static int write_fields(const jfield_t *fields, size_t n, const void *msg,
                        json_object *o) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = write_field(&fields[i], msg, o);
  return rc;
}

static int write_views(const xl_call_t *call, json_object *o) {
  if (call->n_phone_call_views == 0)
    return 0;
  json_object *array = json_object_new_array_ext((int)call->n_phone_call_views);
  int rc = xl_json_put(o, "phoneCallView", array);
  for (size_t i = 0; rc == 0 && i < call->n_phone_call_views; i++) {
    json_object *view = json_object_new_object();
    rc = xl_json_push(array, view);
    if (rc == 0)
      rc = write_fields(view_fields, USC_ARRAY_LEN(view_fields),
                        call->phone_call_views[i], view);
  }
  return rc;
}

static int write_link(const xl_call_t *call, json_object *o) {
  if (call->self_link == NULL || call->self_link[0] == '\0')
    return 0; /* NULL fields are left out, not written as null */
  json_object *links = json_object_new_object();
  int rc = xl_json_put(o, "links", links);
  return rc == 0 ? xl_json_put_str(links, "self", call->self_link) : rc;
}

int xl_call_to_json(const xl_call_t *call, json_object **out) {
  json_object *o = json_object_new_object();
  if (o == NULL)
    return USC_ERR_NOMEM;
  int rc = write_fields(call_fields, USC_ARRAY_LEN(call_fields), call, o);
  if (rc == 0)
    rc = write_views(call, o);
  if (rc == 0)
    rc = write_link(call, o);
  if (rc != 0) {
    json_object_put(o);
    return rc;
  }
  *out = o;
  return 0;
}
