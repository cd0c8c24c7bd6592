/* Facade direction, request: a UAPI REST request -> the RPC and its request
 * message. Tolerant of what UAPI clients send (see xlate.h), strict about
 * the address: the path's segments pass the same validation as gRPC
 * requests, with the same UAPI codes. Bad values of other members are
 * answered 400 with a provisional pc_<member>_invalid code, as the native
 * engine does. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

typedef struct {
  const usc_xlate_incoming_t *in;
  ProtobufCAllocator *a;
  usc_xlate_error_t *err;
  const char *query; /* after '?', up to any '#' */
  size_t query_len;
  xl_path_t path;
  json_object *body;
} fctx_t;

static int reject(fctx_t *c, usc_grpc_status_t status, const char *code,
                  const char *what) {
  xl_fail(c->err, status, code, "%s", what);
  return USC_ERR_INVALID;
}

static int bad_value(fctx_t *c, const xl_param_t *p) {
  xl_fail(c->err, USC_GRPC_INVALID_ARGUMENT, p->code, "%s has an invalid value",
          p->name);
  return USC_ERR_INVALID;
}

static int nomem_or(fctx_t *c, int rc) {
  return rc == USC_ERR_NOMEM ? xl_nomem(c->err) : rc;
}

/* ---- the query ---- */

typedef struct {
  const char *key, *val;
  size_t key_len, val_len;
} pair_t;

/* The next "key=value" of the query at *pos; false at the end. */
static bool next_pair(const fctx_t *c, size_t *pos, pair_t *p) {
  while (*pos < c->query_len && c->query[*pos] == '&')
    (*pos)++;
  if (*pos >= c->query_len)
    return false;
  const char *s = c->query + *pos;
  const char *amp = memchr(s, '&', c->query_len - *pos);
  size_t len = amp != NULL ? (size_t)(amp - s) : c->query_len - *pos;
  const char *eq = memchr(s, '=', len);
  p->key = s;
  p->key_len = eq != NULL ? (size_t)(eq - s) : len;
  p->val = eq != NULL ? eq + 1 : s + len;
  p->val_len = eq != NULL ? len - p->key_len - 1 : 0;
  *pos += len;
  return true;
}

static bool names(const xl_param_t *p, const char *key, size_t len) {
  return xl_eq(key, len, p->name) ||
         (p->alias != NULL && xl_eq(key, len, p->alias));
}

static const xl_param_t *find_param(const xl_param_t *params, size_t n,
                                    const char *key, size_t len) {
  for (size_t i = 0; i < n; i++) {
    if (names(&params[i], key, len))
      return &params[i];
  }
  return NULL;
}

static bool has_list_param(const fctx_t *c) {
  size_t n, pos = 0;
  const xl_param_t *params = xl_query_params(USC_XLATE_LIST, &n);
  pair_t p;
  while (next_pair(c, &pos, &p)) {
    if (find_param(params, n, p.key, p.key_len) != NULL)
      return true;
  }
  return false;
}

/* "id,published": each name decoded on its own, empty names skipped. */
static int add_pieces(fctx_t *c, const xl_param_t *p, ProtobufCMessage *m,
                      const pair_t *pr) {
  const char *s = pr->val, *end = pr->val + pr->val_len;
  while (s < end) {
    const char *comma = memchr(s, ',', (size_t)(end - s));
    size_t len = comma != NULL ? (size_t)(comma - s) : (size_t)(end - s);
    char *piece;
    int rc = len > 0 ? xl_decode(s, len, c->a, &piece) : 0;
    if (rc == 0 && len > 0)
      rc = xl_pb_add_str(m, p->field, piece, strlen(piece), c->a);
    if (rc != 0)
      return rc == USC_ERR_INVALID ? bad_value(c, p) : nomem_or(c, rc);
    if (comma == NULL)
      break;
    s = comma + 1;
  }
  return 0;
}

static size_t count_pieces(const fctx_t *c, const xl_param_t *p) {
  size_t n = 0, pos = 0;
  pair_t pr;
  while (next_pair(c, &pos, &pr)) {
    if (names(p, pr.key, pr.key_len))
      n += 1 + (size_t)(memchr(pr.val, ',', pr.val_len) != NULL
                            ? pr.val_len /* an upper bound */
                            : 0);
  }
  return n;
}

static int set_scalar(fctx_t *c, const xl_param_t *p, ProtobufCMessage *m,
                      const char *v) {
  int32_t i;
  size_t len = strlen(v);
  switch (p->type) {
  case XL_INT32:
    if (!xl_parse_int32(v, len, &i))
      return bad_value(c, p);
    return nomem_or(c, xl_pb_set_int32(m, p->field, i, c->a));
  case XL_BOOL:
    if (!xl_ieq(v, len, "true") && !xl_ieq(v, len, "false") &&
        !xl_eq(v, len, "1") && !xl_eq(v, len, "0"))
      return bad_value(c, p);
    return nomem_or(
        c, xl_pb_set_bool(m, p->field,
                          xl_ieq(v, len, "true") || xl_eq(v, len, "1"), c->a));
  default:
    return len > 0 ? nomem_or(c, xl_pb_set_str(m, p->field, v, len, c->a)) : 0;
  }
}

static int set_query_param(fctx_t *c, const xl_param_t *p, ProtobufCMessage *m,
                           const pair_t *pr) {
  if (p->type == XL_STRV)
    return add_pieces(c, p, m, pr);
  char *v;
  int rc = xl_decode(pr->val, pr->val_len, c->a, &v);
  if (rc != 0)
    return rc == USC_ERR_INVALID ? bad_value(c, p) : nomem_or(c, rc);
  return set_scalar(c, p, m, v);
}

static int reserve_lists(fctx_t *c, const xl_param_t *params, size_t n,
                         ProtobufCMessage *m) {
  for (size_t i = 0; i < n; i++) {
    if (params[i].type != XL_STRV)
      continue;
    int rc = xl_pb_strv_reserve(m, params[i].field, count_pieces(c, &params[i]),
                                c->a);
    if (rc != 0)
      return nomem_or(c, rc);
  }
  return 0;
}

/* Unknown parameters are ignored; for the others the last one wins, but
 * repeated fields= accumulate. */
static int parse_query(fctx_t *c, usc_xlate_rpc_t rpc, ProtobufCMessage *m) {
  size_t n, pos = 0;
  const xl_param_t *params = xl_query_params(rpc, &n);
  pair_t pr;
  int rc = reserve_lists(c, params, n, m);
  while (rc == 0 && next_pair(c, &pos, &pr)) {
    const xl_param_t *p = find_param(params, n, pr.key, pr.key_len);
    if (p != NULL)
      rc = set_query_param(c, p, m, &pr);
  }
  return rc;
}

/* ---- the body ---- */

static int set_text(fctx_t *c, const xl_param_t *p, ProtobufCMessage *m,
                    json_object *v) {
  char buf[24];
  const char *s;
  size_t len;
  if (!xl_json_text(v, &s, &len, buf))
    return bad_value(c, p);
  return len > 0 ? nomem_or(c, xl_pb_set_str(m, p->field, s, len, c->a)) : 0;
}

/* A member of the given type; absent (or null) members are left unset. */
static int set_member(fctx_t *c, const xl_param_t *p, ProtobufCMessage *m,
                      json_object *v) {
  int32_t i;
  bool b, present;
  switch (p->type) {
  case XL_INT32:
    if (!xl_json_int32(v, &i, &present))
      return bad_value(c, p);
    return present ? nomem_or(c, xl_pb_set_int32(m, p->field, i, c->a)) : 0;
  case XL_BOOL:
    if (!xl_json_bool(v, &b))
      return bad_value(c, p);
    return nomem_or(c, xl_pb_set_bool(m, p->field, b, c->a));
  default:
    return set_text(c, p, m, v);
  }
}

static json_object *member(json_object *o, const xl_param_t *p) {
  json_object *v = xl_json_get(o, p->name);
  return v != NULL || p->alias == NULL ? v : xl_json_get(o, p->alias);
}

/* Members a message has no field for (a format on OffHold) are ignored. */
static int action_members(fctx_t *c, ProtobufCMessage *m) {
  size_t n;
  const xl_param_t *params = xl_action_params(&n);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    json_object *v = member(c->body, &params[i]);
    if (v != NULL && xl_pb_has(m, params[i].field))
      rc = set_member(c, &params[i], m, v);
  }
  return rc;
}

/* An array of strings (numbers taken as their decimal text), or a bare
 * string for an array of one. */
static int set_list(fctx_t *c, const xl_param_t *p, ProtobufCMessage *m,
                    json_object *v) {
  bool bare = !json_object_is_type(v, json_type_array);
  size_t n = bare ? 1 : json_object_array_length(v);
  int rc = xl_pb_strv_reserve(m, p->field, n, c->a);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    json_object *e = bare ? v : json_object_array_get_idx(v, i);
    char buf[24];
    const char *s;
    size_t len;
    if (!xl_json_text(e, &s, &len, buf))
      return bad_value(c, p);
    rc = xl_pb_add_str(m, p->field, s, len, c->a);
  }
  return nomem_or(c, rc);
}

static const xl_param_t create_members[] = {
    {"extension", "extension", NULL, XL_STR, "extension_invalid"},
    {"nonce", "nonce", NULL, XL_STR, "pc_nonce_invalid"},
};

static const xl_param_t view_members[] = {
    {"source", "source", NULL, XL_STRV, "pc_source_invalid"},
    {"destination", "destination", NULL, XL_STRV, "pc_destination_invalid"},
    {"caller_id", "callerId", "callerID", XL_STR, "pc_callerid_invalid"},
    {"caller_destination", "callerDestination", NULL, XL_STR,
     "pc_callerdestination_invalid"},
};

static const xl_param_t view_param = {"", "phoneCallView", NULL, XL_STR,
                                      "pc_phonecallview_invalid"};

static int fill(fctx_t *c, const xl_param_t *params, size_t n, json_object *o,
                ProtobufCMessage *m) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    json_object *v = member(o, &params[i]);
    if (v == NULL)
      continue;
    rc = params[i].type == XL_STRV ? set_list(c, &params[i], m, v)
                                   : set_member(c, &params[i], m, v);
  }
  return rc;
}

/* {"extension":...,"phoneCallView":[{...}],"nonce":...}: only the first
 * view is used, as UAPI does; a bare view object is taken too. */
static int create_members_of(fctx_t *c, ProtobufCMessage *m) {
  int rc = fill(c, create_members, USC_ARRAY_LEN(create_members), c->body, m);
  json_object *views = xl_json_get(c->body, "phoneCallView");
  json_object *view = views;
  if (rc != 0 || views == NULL)
    return rc;
  if (json_object_is_type(views, json_type_array))
    view = json_object_array_get_idx(views, 0);
  if (view == NULL && json_object_array_length(views) == 0)
    return 0;
  if (!json_object_is_type(view, json_type_object))
    return bad_value(c, &view_param);
  return fill(c, view_members, USC_ARRAY_LEN(view_members), view, m);
}

static int parse_body(fctx_t *c) {
  char why[128];
  int rc =
      xl_json_parse(c->in->body, c->in->body_len, &c->body, why, sizeof(why));
  if (rc == USC_ERR_NOMEM)
    return xl_nomem(c->err);
  if (rc != 0) {
    xl_fail(c->err, USC_GRPC_INVALID_ARGUMENT, "request_invalid",
            "the request body is not valid JSON: %s", why);
    return rc;
  }
  if (!json_object_is_type(c->body, json_type_object))
    return reject(c, USC_GRPC_INVALID_ARGUMENT, "request_invalid",
                  "the request body must be a JSON object");
  return 0;
}

static int action_of(fctx_t *c, usc_xlate_rpc_t *rpc) {
  json_object *v = xl_json_get(c->body, "action");
  const char *s = json_object_get_string(v);
  size_t len = json_object_is_type(v, json_type_string)
                   ? (size_t)json_object_get_string_len(v)
                   : 0;
  if (len > 0 && xl_action_find(s, len, rpc))
    return 0;
  return reject(c, USC_GRPC_INVALID_ARGUMENT, "pc_action_invalid",
                "action must be one of OnHold, OffHold, StartRecording, "
                "StopRecording, Park, UnPark, PickUp, BargeIn, Whisper, "
                "Monitor, Transfer, TransferToVoicemail");
}

/* ---- the path ---- */

static int split_target(fctx_t *c) {
  const char *t = c->in->target;
  size_t len = c->in->target_len, q = 0;
  while (q < len && t[q] != '?' && t[q] != '#')
    q++;
  size_t end = q;
  while (end < len && t[end] != '#')
    end++;
  c->query = q < len && t[q] == '?' ? t + q + 1 : t + end;
  c->query_len = q < len && t[q] == '?' ? end - q - 1 : 0;
  int rc = xl_path_split(t, q, true, c->a, &c->path);
  if (rc == USC_ERR_NOT_FOUND || (rc == 0 && c->path.n < 2))
    return reject(c, USC_GRPC_NOT_FOUND, "resource_not_found",
                  "no such resource: use /uapi/phoneCalls/{user}/{extension}"
                  "[/{phoneCallId}]");
  return nomem_or(c, rc);
}

static int route_post(fctx_t *c, usc_xlate_rpc_t *rpc) {
  static const usc_xlate_rpc_t creates[] = {USC_XLATE_CREATE_SIMPLE,
                                            USC_XLATE_CREATE_CALLBACK,
                                            USC_XLATE_CREATE_CONFERENCE_INVITE};
  const char *kind = c->path.seg[1];
  if (c->path.n != 2)
    return reject(c, USC_GRPC_UNIMPLEMENTED, "request_not_implemented",
                  "POST creates calls: /uapi/phoneCalls/{user}/simple, "
                  "callback or conferenceInvite");
  for (size_t i = 0; i < USC_ARRAY_LEN(creates); i++) {
    if (xl_ieq(kind, strlen(kind), xl_create_segment(creates[i]))) {
      *rpc = creates[i];
      return 0;
    }
  }
  return reject(c, USC_GRPC_NOT_FOUND, "resource_not_found",
                "no such kind of call to create: use simple, callback or "
                "conferenceInvite");
}

/* Which RPC, from the method and the path alone (PUT: the action says). */
static int route(fctx_t *c, usc_xlate_rpc_t *rpc) {
  const char *m = c->in->method;
  size_t len = c->in->method_len;
  if (xl_eq(m, len, "GET"))
    *rpc =
        c->path.n == 3 && !has_list_param(c) ? USC_XLATE_GET : USC_XLATE_LIST;
  else if (xl_eq(m, len, "DELETE"))
    *rpc = USC_XLATE_HANGUP;
  else if (xl_eq(m, len, "POST"))
    return route_post(c, rpc);
  else if (xl_eq(m, len, "PUT"))
    *rpc = USC_XLATE_OFF_HOLD; /* any action until the body says which */
  else
    return reject(c, USC_GRPC_UNIMPLEMENTED, "request_not_implemented",
                  "PhoneCalls answer GET, POST, PUT and DELETE");
  return 0;
}

/* The path's address, checked before the body is even read. Split never
 * yields an empty segment, so "" is never taken for "@me" here. */
static int check_path(fctx_t *c, usc_xlate_rpc_t rpc) {
  const char *id = c->path.n == 3 ? c->path.seg[2] : "";
  int rc = xl_check_user(c->path.seg[0], c->err);
  if (rc == 0 && xl_kind(rpc) != XL_KIND_CREATE)
    rc = xl_check_extension(rpc, c->path.seg[1], c->err);
  if (rc == 0 && xl_kind(rpc) != XL_KIND_CREATE)
    rc = xl_check_call_id(rpc, id, c->err);
  return rc;
}

static int set_address(fctx_t *c, usc_xlate_rpc_t rpc, ProtobufCMessage *m) {
  static const char *const fields[] = {"user_id", "extension", "phone_call_id"};
  for (size_t i = 0; i < c->path.n; i++) {
    if (i == 1 && xl_kind(rpc) == XL_KIND_CREATE)
      continue; /* the kind of create, not an extension */
    const char *s = c->path.seg[i];
    if (xl_pb_set_str(m, fields[i], s, strlen(s), c->a) != 0)
      return xl_nomem(c->err);
  }
  return 0;
}

static int build(fctx_t *c, usc_xlate_rpc_t *rpc, ProtobufCMessage **out) {
  xl_kind_t kind = xl_kind(*rpc);
  bool has_body = kind == XL_KIND_CREATE || kind == XL_KIND_ACTION;
  int rc = has_body ? parse_body(c) : 0;
  if (rc == 0 && kind == XL_KIND_ACTION)
    rc = action_of(c, rpc);
  if (rc != 0)
    return rc;
  ProtobufCMessage *m = xl_pb_new(c->a, usc_xlate_rpc_info(*rpc)->request);
  if (m == NULL)
    return xl_nomem(c->err);
  rc = set_address(c, *rpc, m);
  if (rc == 0)
    rc = parse_query(c, *rpc, m);
  if (rc == 0 && kind == XL_KIND_CREATE)
    rc = create_members_of(c, m);
  if (rc == 0 && kind == XL_KIND_ACTION)
    rc = action_members(c, m);
  if (rc == 0)
    rc = usc_xlate_request_check(*rpc, m, c->err);
  *out = rc == 0 ? m : NULL;
  return rc;
}

int usc_xlate_facade_parse(const usc_xlate_incoming_t *in,
                           ProtobufCAllocator *allocator, usc_xlate_rpc_t *rpc,
                           ProtobufCMessage **request,
                           usc_xlate_error_t *error) {
  fctx_t c = {.in = in, .a = allocator, .err = error};
  *request = NULL;
  *error = (usc_xlate_error_t){0};
  int rc = split_target(&c);
  if (rc == 0)
    rc = route(&c, rpc);
  if (rc == 0)
    rc = check_path(&c, *rpc);
  if (rc == 0)
    rc = build(&c, rpc, request);
  json_object_put(c.body);
  return rc;
}
