/* Facade direction, answer: response messages and errors -> UAPI JSON, in
 * the shapes uapi-phonecalls.md gives the emulator. */
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

/* UAPI's default page size, said by a one-call GET's collection. */
#define PAGE_SIZE 20

static int reply(json_object *o, int status, usc_xlate_reply_t *out) {
  int rc =
      o != NULL ? xl_json_dump(o, &out->body, &out->body_len) : USC_ERR_NOMEM;
  json_object_put(o);
  if (rc == 0)
    out->status = status;
  return rc;
}

/* [PhoneCall, ...] */
static int call_array(xl_call_t *const *calls, size_t n, json_object **out) {
  json_object *array = json_object_new_array_ext((int)n);
  int rc = array != NULL ? 0 : USC_ERR_NOMEM;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    json_object *call = NULL;
    rc = xl_call_to_json(calls[i], &call);
    if (rc == 0)
      rc = xl_json_push(array, call);
  }
  if (rc != 0)
    json_object_put(array);
  *out = rc == 0 ? array : NULL;
  return rc;
}

/* {"startIndex":...,"itemsPerPage":...,"totalResults":...,"entry":[...]} */
static int collection(xl_call_t *const *calls, size_t n, int32_t start,
                      int32_t per_page, int32_t total, json_object **out) {
  json_object *o = json_object_new_object();
  json_object *entry = NULL;
  int rc = o != NULL ? xl_json_put_int(o, "startIndex", start) : USC_ERR_NOMEM;
  if (rc == 0)
    rc = xl_json_put_int(o, "itemsPerPage", per_page);
  if (rc == 0)
    rc = xl_json_put_int(o, "totalResults", total);
  if (rc == 0)
    rc = call_array(calls, n, &entry);
  if (rc == 0)
    rc = xl_json_put(o, "entry", entry);
  if (rc != 0)
    json_object_put(o);
  *out = rc == 0 ? o : NULL;
  return rc;
}

static int answer_list(const ProtobufCMessage *msg, usc_xlate_reply_t *out) {
  const Uapi__Phonecalls__V1__ListPhoneCallsResponse *r =
      (const Uapi__Phonecalls__V1__ListPhoneCallsResponse *)msg;
  json_object *o;
  int rc = collection(r->phone_calls, r->n_phone_calls, r->start_index,
                      r->items_per_page, r->total_results, &o);
  return rc == 0 ? reply(o, 200, out) : rc;
}

static int answer_get(const ProtobufCMessage *msg, usc_xlate_reply_t *out) {
  xl_call_t *call = (xl_call_t *)msg;
  json_object *o;
  int rc = collection(&call, 1, 0, PAGE_SIZE, 1, &o);
  return rc == 0 ? reply(o, 200, out) : rc;
}

static int answer_create(const ProtobufCMessage *msg, usc_xlate_reply_t *out) {
  const Uapi__Phonecalls__V1__CreatePhoneCallResponse *r =
      (const Uapi__Phonecalls__V1__CreatePhoneCallResponse *)msg;
  json_object *o;
  int rc = call_array(r->phone_calls, r->n_phone_calls, &o);
  return rc == 0 ? reply(o, 200, out) : rc;
}

/* [{"id":...}, ...], or 204 when nothing was hung up. */
static int answer_hangup(const ProtobufCMessage *msg, usc_xlate_reply_t *out) {
  const Uapi__Phonecalls__V1__HangupPhoneCallsResponse *r =
      (const Uapi__Phonecalls__V1__HangupPhoneCallsResponse *)msg;
  if (r->n_phone_call_ids == 0) {
    out->status = 204;
    return 0;
  }
  json_object *array = json_object_new_array_ext((int)r->n_phone_call_ids);
  int rc = array != NULL ? 0 : USC_ERR_NOMEM;
  for (size_t i = 0; rc == 0 && i < r->n_phone_call_ids; i++) {
    json_object *id = json_object_new_object();
    const char *s = r->phone_call_ids[i];
    rc = xl_json_push(array, id);
    if (rc == 0)
      rc = xl_json_put_str(id, "id", s != NULL ? s : "");
  }
  if (rc != 0) {
    json_object_put(array);
    return rc;
  }
  return reply(array, 200, out);
}

static int answer_action(const ProtobufCMessage *msg, usc_xlate_reply_t *out) {
  json_object *o;
  int rc = xl_call_to_json((const xl_call_t *)msg, &o);
  return rc == 0 ? reply(o, 200, out) : rc;
}

int usc_xlate_facade_answer(usc_xlate_rpc_t rpc,
                            const ProtobufCMessage *response,
                            usc_xlate_reply_t *out) {
  const usc_xlate_rpc_info_t *info = usc_xlate_rpc_info(rpc);
  *out = (usc_xlate_reply_t){0};
  if (info == NULL || response == NULL ||
      response->descriptor != info->response ||
      !usc_xlate_message_utf8_ok(response))
    return USC_ERR_INVALID;
  switch (xl_kind(rpc)) {
  case XL_KIND_LIST:
    return answer_list(response, out);
  case XL_KIND_GET:
    return answer_get(response, out);
  case XL_KIND_CREATE:
    return answer_create(response, out);
  case XL_KIND_HANGUP:
    return answer_hangup(response, out);
  default:
    return answer_action(response, out);
  }
}

/* ---- errors ---- */

static bool field_code(const char *code) {
  return code != NULL &&
         (strncmp(code, "pc_", 3) == 0 || strncmp(code, "user_", 5) == 0 ||
          strncmp(code, "extension_", 10) == 0);
}

int usc_xlate_http_status_for(usc_grpc_status_t status, const char *code) {
  switch (status) {
  case USC_GRPC_OK:
    return 200;
  case USC_GRPC_INVALID_ARGUMENT:
  case USC_GRPC_FAILED_PRECONDITION: /* UAPI reports action errors as 400 */
    return 400;
  case USC_GRPC_NOT_FOUND:
    return field_code(code) ? 400 : 404;
  case USC_GRPC_UNAUTHENTICATED:
    return 401;
  case USC_GRPC_PERMISSION_DENIED:
    return 403;
  case USC_GRPC_RESOURCE_EXHAUSTED:
    return 429;
  case USC_GRPC_UNIMPLEMENTED:
    return 501;
  case USC_GRPC_UNAVAILABLE:
    return 503;
  case USC_GRPC_DEADLINE_EXCEEDED:
    return 504;
  default:
    return 500;
  }
}

/* UAPI's own codes where it has one; provisional ones elsewhere. */
static const char *default_code(usc_grpc_status_t status) {
  switch (status) {
  case USC_GRPC_INVALID_ARGUMENT:
    return "request_invalid";
  case USC_GRPC_NOT_FOUND:
    return "resource_not_found";
  case USC_GRPC_FAILED_PRECONDITION:
    return "pc_phonecall_state_invalid";
  case USC_GRPC_UNAUTHENTICATED:
  case USC_GRPC_PERMISSION_DENIED:
    return "access_denied";
  case USC_GRPC_RESOURCE_EXHAUSTED:
    return "limit_exceeded";
  case USC_GRPC_UNIMPLEMENTED:
    return "request_not_implemented";
  case USC_GRPC_UNAVAILABLE:
    return "service_unavailable";
  case USC_GRPC_DEADLINE_EXCEEDED:
    return "request_timeout";
  default:
    return "internal_server_error";
  }
}

static bool empty(const char *s) { return s == NULL || s[0] == '\0'; }

int usc_xlate_facade_error(usc_xlate_rpc_t rpc, usc_grpc_status_t status,
                           const char *code, const char *message,
                           usc_xlate_reply_t *out) {
  *out = (usc_xlate_reply_t){0};
  if (status == USC_GRPC_OK)
    return USC_ERR_INVALID;
  if (rpc == USC_XLATE_GET && status == USC_GRPC_NOT_FOUND) {
    json_object *o;
    int rc = collection(NULL, 0, 0, PAGE_SIZE, 0, &o);
    return rc == 0 ? reply(o, 200, out) : rc;
  }
  if (empty(code))
    code = default_code(status);
  json_object *o = json_object_new_object();
  json_object *e = json_object_new_object();
  int rc = o != NULL ? xl_json_put(o, "error", e) : USC_ERR_NOMEM;
  if (rc == 0)
    rc = xl_json_put_str(e, "code", code);
  if (rc == 0)
    rc = xl_json_put_str(
        e, "message", empty(message) ? usc_grpc_status_name(status) : message);
  if (rc != 0) {
    json_object_put(o ? o : e);
    return rc;
  }
  return reply(o, usc_xlate_http_status_for(status, code), out);
}

void usc_xlate_reply_free(usc_xlate_reply_t *reply) {
  usc_free(reply->body);
  *reply = (usc_xlate_reply_t){0};
}
