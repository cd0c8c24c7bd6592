/* Client direction, request: a validated request message -> the UAPI HTTP
 * request. The path is made of validated segments only; every client
 * string that goes into the query is percent-encoded; the body is built
 * with json-c, so client strings can only ever be JSON string values. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

/* ---- target ---- */

static void add_path(usc_xlate_rpc_t rpc, const ProtobufCMessage *req,
                     xl_sb_t *sb) {
  xl_sb_adds(sb, "/uapi/phoneCalls/");
  xl_sb_adds(sb, xl_user_segment(xl_pb_str(req, "user_id")));
  xl_sb_adds(sb, "/");
  if (xl_kind(rpc) == XL_KIND_CREATE) {
    xl_sb_adds(sb, xl_create_segment(rpc));
    return;
  }
  xl_sb_adds(sb, xl_pb_str(req, "extension"));
  const char *id = xl_pb_str(req, "phone_call_id");
  if (id[0] != '\0') {
    xl_sb_adds(sb, "/");
    xl_sb_adds(sb, id);
  }
}

/* The path holds no '?' (its segments are validated), so the first '?' is
 * the query's. */
static void add_key(xl_sb_t *sb, const char *name) {
  bool query = sb->buf != NULL && strchr(sb->buf, '?') != NULL;
  xl_sb_adds(sb, query ? "&" : "?");
  xl_sb_adds(sb, name);
  xl_sb_adds(sb, "=");
}

/* fields=id,published: each name encoded, the commas literal. */
static void add_list(xl_sb_t *sb, const char *name, char *const *v, size_t n) {
  bool first = true;
  for (size_t i = 0; i < n; i++) {
    if (v[i] == NULL || v[i][0] == '\0')
      continue;
    if (first)
      add_key(sb, name);
    else
      xl_sb_adds(sb, ",");
    xl_sb_add_encoded(sb, v[i], strlen(v[i]));
    first = false;
  }
}

static void add_param(xl_sb_t *sb, const xl_param_t *p,
                      const ProtobufCMessage *req) {
  char num[16];
  const char *s = xl_pb_str(req, p->field);
  int32_t i;
  bool b;
  char *const *v;
  if (p->type == XL_INT32 && xl_pb_int32(req, p->field, &i)) {
    snprintf(num, sizeof(num), "%d", i);
    s = num;
  } else if (p->type == XL_BOOL && xl_pb_bool(req, p->field, &b)) {
    s = b ? "true" : "false";
  } else if (p->type == XL_STRV) {
    size_t n = xl_pb_strv(req, p->field, &v);
    add_list(sb, p->name, v, n);
    return;
  }
  if (s[0] == '\0')
    return; /* unset: left out, never sent as "" */
  add_key(sb, p->name);
  xl_sb_add_encoded(sb, s, strlen(s));
}

static int build_target(usc_xlate_rpc_t rpc, const ProtobufCMessage *req,
                        usc_xlate_request_t *out, usc_xlate_error_t *err) {
  xl_sb_t sb;
  size_t n;
  const xl_param_t *params = xl_query_params(rpc, &n);
  xl_sb_init(&sb, USC_XLATE_TARGET_MAX);
  add_path(rpc, req, &sb);
  for (size_t i = 0; i < n; i++)
    add_param(&sb, &params[i], req);
  if (sb.err == 0) {
    out->target = sb.buf;
    out->target_len = sb.len;
    return 0;
  }
  int failure = sb.err;
  xl_sb_free(&sb);
  if (failure != USC_ERR_TOO_LARGE)
    return xl_nomem(err);
  xl_fail(err, USC_GRPC_INVALID_ARGUMENT, NULL,
          "the request's query string would be over %d bytes",
          USC_XLATE_TARGET_MAX);
  return USC_ERR_INVALID;
}

/* ---- body ---- */

static int put_strv(json_object *o, const char *key,
                    const ProtobufCMessage *req, const char *field) {
  char *const *v;
  size_t n = xl_pb_strv(req, field, &v);
  if (n == 0)
    return 0;
  json_object *array = json_object_new_array_ext((int)n);
  int rc = xl_json_put(o, key, array);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = xl_json_push(array, json_object_new_string(v[i] ? v[i] : ""));
  return rc;
}

static int put_str(json_object *o, const char *key, const char *s) {
  return s[0] != '\0' ? xl_json_put_str(o, key, s) : 0;
}

/* {"source":[...],"destination":[...],"callerId":...,
 *  "callerDestination":...}: the one view a create describes. */
static int create_view(const ProtobufCMessage *req, json_object **out) {
  json_object *view = json_object_new_object();
  if (view == NULL)
    return USC_ERR_NOMEM;
  int rc = put_strv(view, "source", req, "source");
  if (rc == 0)
    rc = put_strv(view, "destination", req, "destination");
  if (rc == 0)
    rc = put_str(view, "callerId", xl_pb_str(req, "caller_id"));
  if (rc == 0)
    rc = put_str(view, "callerDestination",
                 xl_pb_str(req, "caller_destination"));
  if (rc != 0)
    json_object_put(view);
  *out = rc == 0 ? view : NULL;
  return rc;
}

static int create_body(const ProtobufCMessage *req, json_object *o) {
  json_object *view = NULL;
  json_object *views = json_object_new_array_ext(1);
  int rc = put_str(o, "extension", xl_pb_str(req, "extension"));
  if (rc == 0)
    rc = xl_json_put(o, "phoneCallView", views);
  else
    json_object_put(views);
  if (rc == 0)
    rc = create_view(req, &view);
  if (rc == 0)
    rc = xl_json_push(views, view);
  if (rc == 0)
    rc = put_str(o, "nonce", xl_pb_str(req, "nonce"));
  return rc;
}

static int action_member(const xl_param_t *p, const ProtobufCMessage *req,
                         json_object *o) {
  int32_t i;
  bool b;
  switch (p->type) {
  case XL_INT32:
    return xl_pb_int32(req, p->field, &i) ? xl_json_put_int(o, p->name, i) : 0;
  case XL_BOOL: /* UAPI's private is a number, 0 or 1 */
    return xl_pb_bool(req, p->field, &b) ? xl_json_put_int(o, p->name, b) : 0;
  default:
    return put_str(o, p->name, xl_pb_str(req, p->field));
  }
}

static int action_body(usc_xlate_rpc_t rpc, const ProtobufCMessage *req,
                       json_object *o) {
  size_t n;
  const xl_param_t *params = xl_action_params(&n);
  int rc = xl_json_put_str(o, "action", usc_xlate_rpc_info(rpc)->action);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = action_member(&params[i], req, o);
  return rc;
}

static int build_body(usc_xlate_rpc_t rpc, const ProtobufCMessage *req,
                      usc_xlate_request_t *out, usc_xlate_error_t *err) {
  xl_kind_t kind = xl_kind(rpc);
  if (kind != XL_KIND_CREATE && kind != XL_KIND_ACTION)
    return 0;
  json_object *o = json_object_new_object();
  if (o == NULL)
    return xl_nomem(err);
  int rc =
      kind == XL_KIND_CREATE ? create_body(req, o) : action_body(rpc, req, o);
  if (rc == 0)
    rc = xl_json_dump(o, &out->body, &out->body_len);
  json_object_put(o);
  if (rc != 0)
    return xl_nomem(err);
  if (out->body_len <= USC_XLATE_JSON_MAX)
    return 0;
  xl_fail(err, USC_GRPC_INVALID_ARGUMENT, NULL,
          "the request's JSON body would be over %d bytes", USC_XLATE_JSON_MAX);
  return USC_ERR_INVALID;
}

int usc_xlate_request_build(usc_xlate_rpc_t rpc,
                            const ProtobufCMessage *request,
                            usc_xlate_request_t *out,
                            usc_xlate_error_t *error) {
  *out = (usc_xlate_request_t){0};
  int rc = usc_xlate_request_check(rpc, request, error);
  if (rc == 0 && !usc_xlate_message_utf8_ok(request)) {
    xl_fail(error, USC_GRPC_INVALID_ARGUMENT, NULL,
            "a string of the request is not valid UTF-8");
    rc = USC_ERR_INVALID;
  }
  if (rc == 0)
    rc = build_target(rpc, request, out, error);
  if (rc == 0)
    rc = build_body(rpc, request, out, error);
  if (rc != 0) {
    usc_xlate_request_free(out);
    return rc;
  }
  out->method = usc_xlate_rpc_info(rpc)->http_method;
  return 0;
}

void usc_xlate_request_free(usc_xlate_request_t *req) {
  usc_free(req->target);
  usc_free(req->body);
  *req = (usc_xlate_request_t){0};
}
