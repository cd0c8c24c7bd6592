/* Client direction, answer: an upstream HTTP answer -> the RPC's response
 * message, "fetch the call" for a partial update, or an error. UAPI
 * answers the same thing in several shapes (a bare object, an array, a
 * collection {"entry":[...]}, 204 with nothing); they are all reduced to a
 * list of items first, and each RPC then takes what it needs. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

typedef struct {
  const usc_xlate_answer_t *in;
  usc_xlate_result_t *out;
  char why[192];
} actx_t;

/* ---- outcomes ---- */

static int failed(actx_t *c, usc_grpc_status_t status, const char *code,
                  const char *message) {
  xl_fail(&c->out->error, status, code, "%s", message);
  c->out->error.http_status = c->in->http_status;
  return USC_XLATE_FAILED;
}

/* The upstream's fault, not the client's: INTERNAL, saying what was
 * wrong so that an operator can tell. */
static int not_expected(actx_t *c) {
  char message[2 * USC_XLATE_MESSAGE_MAX]; /* cut to size by xl_fail */
  snprintf(message, sizeof(message),
           "upstream answered HTTP %d but not the JSON expected: %s",
           c->in->http_status, c->why);
  return failed(c, USC_GRPC_INTERNAL, NULL, message);
}

/* Turns an inner result (0, USC_ERR_INVALID, USC_ERR_NOMEM) into an
 * outcome. */
static int outcome(actx_t *c, int rc, ProtobufCMessage *response) {
  if (rc == USC_ERR_NOMEM)
    return xl_nomem(&c->out->error);
  if (rc != 0)
    return not_expected(c);
  c->out->response = response;
  return USC_XLATE_DONE;
}

static int upstream_error(actx_t *c) {
  char code[USC_XLATE_CODE_MAX], text[USC_XLATE_MESSAGE_MAX];
  char message[2 * USC_XLATE_MESSAGE_MAX];
  int http = c->in->http_status;
  usc_xlate_error_body_parse(c->in->body, c->in->body_len, code, text);
  usc_grpc_status_t status = usc_xlate_status_lookup(c->in->map, http, code);
  if (status == USC_GRPC_UNKNOWN || text[0] == '\0')
    snprintf(message, sizeof(message), "upstream answered HTTP %d%s%s", http,
             text[0] ? ": " : "", text);
  else
    snprintf(message, sizeof(message), "%s", text);
  return failed(c, status, code, message);
}

/* ---- items ---- */

typedef struct {
  json_object *array;      /* the entries, when an array */
  json_object *single;     /* the one entry, when a bare object */
  json_object *collection; /* the collection object, if any */
} items_t;

static bool is_collection(json_object *o) {
  static const char *const keys[] = {"entry", "totalResults", "itemsPerPage",
                                     "startIndex"};
  for (size_t i = 0; i < USC_ARRAY_LEN(keys); i++) {
    if (xl_json_get(o, keys[i]) != NULL)
      return true;
  }
  return false;
}

static int items_of(actx_t *c, json_object *root, items_t *it) {
  *it = (items_t){0};
  json_object *v = root;
  if (json_object_is_type(root, json_type_object) && is_collection(root)) {
    it->collection = root;
    v = xl_json_get(root, "entry");
  }
  if (v == NULL || json_object_is_type(v, json_type_array))
    it->array = v;
  else if (json_object_is_type(v, json_type_object))
    it->single = v;
  else {
    snprintf(c->why, sizeof(c->why), "%s is not an object or an array",
             it->collection ? "\"entry\"" : "the body");
    return USC_ERR_INVALID;
  }
  return 0;
}

static size_t items_n(const items_t *it) {
  if (it->array != NULL)
    return json_object_array_length(it->array);
  return it->single != NULL ? 1 : 0;
}

static json_object *item(const items_t *it, size_t i) {
  return it->array != NULL ? json_object_array_get_idx(it->array, i)
                           : it->single;
}

/* The item whose id is the request's call id, else the first. */
static size_t pick(actx_t *c, const items_t *it) {
  const char *want = xl_pb_str(c->in->request, "phone_call_id");
  for (size_t i = 0; want[0] != '\0' && i < items_n(it); i++) {
    json_object *id = xl_json_get(item(it, i), "id");
    if (json_object_is_type(id, json_type_string) &&
        strcmp(json_object_get_string(id), want) == 0)
      return i;
  }
  return 0;
}

static int call_at(actx_t *c, const items_t *it, size_t i, xl_call_t **out) {
  int rc = xl_call_from_json(item(it, i), c->in->allocator, out, c->why,
                             sizeof(c->why));
  if (rc == USC_ERR_INVALID && it->array != NULL) {
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "entry %zu: ", i);
    xl_prefix(c->why, sizeof(c->why), prefix);
  }
  return rc;
}

/* All items as PhoneCalls, into *calls / *n. */
static int calls_of(actx_t *c, const items_t *it, xl_call_t ***calls,
                    size_t *n) {
  size_t count = items_n(it);
  *n = 0;
  *calls = xl_alloc(c->in->allocator, (count + 1) * sizeof(xl_call_t *));
  if (*calls == NULL)
    return USC_ERR_NOMEM;
  for (size_t i = 0; i < count; i++) {
    int rc = call_at(c, it, i, &(*calls)[i]);
    if (rc != 0)
      return rc;
    *n = i + 1;
  }
  return 0;
}

/* ---- per RPC ---- */

static int meta(actx_t *c, const items_t *it, const char *key, int32_t *v) {
  bool present;
  json_object *m = xl_json_get(it->collection, key);
  if (m == NULL)
    return 0;
  if (!xl_json_int32(m, v, &present)) {
    snprintf(c->why, sizeof(c->why), "\"%s\" is not a number", key);
    return USC_ERR_INVALID;
  }
  return 0;
}

static int parse_list(actx_t *c, const items_t *it) {
  Uapi__Phonecalls__V1__ListPhoneCallsResponse *r =
      xl_pb_new(c->in->allocator,
                &uapi__phonecalls__v1__list_phone_calls_response__descriptor);
  if (r == NULL)
    return outcome(c, USC_ERR_NOMEM, NULL);
  int rc = calls_of(c, it, &r->phone_calls, &r->n_phone_calls);
  /* Without a count, the entries are all there is. */
  r->total_results = (int32_t)r->n_phone_calls;
  if (rc == 0)
    rc = meta(c, it, "totalResults", &r->total_results);
  if (rc == 0)
    rc = meta(c, it, "itemsPerPage", &r->items_per_page);
  if (rc == 0)
    rc = meta(c, it, "startIndex", &r->start_index);
  return outcome(c, rc, &r->base);
}

/* Nothing where one call was asked for: the call is gone (ended). */
static int parse_get(actx_t *c, const items_t *it) {
  if (items_n(it) == 0) {
    char message[USC_XLATE_MESSAGE_MAX];
    snprintf(message, sizeof(message),
             "phone call %.64s not found for that user and extension",
             xl_pb_str(c->in->request, "phone_call_id"));
    return failed(c, USC_GRPC_NOT_FOUND, "pc_phoncall_invalid", message);
  }
  xl_call_t *call = NULL;
  int rc = call_at(c, it, pick(c, it), &call);
  return outcome(c, rc, call != NULL ? &call->base : NULL);
}

static int parse_create(actx_t *c, const items_t *it) {
  Uapi__Phonecalls__V1__CreatePhoneCallResponse *r =
      xl_pb_new(c->in->allocator,
                &uapi__phonecalls__v1__create_phone_call_response__descriptor);
  if (r == NULL)
    return outcome(c, USC_ERR_NOMEM, NULL);
  int rc = calls_of(c, it, &r->phone_calls, &r->n_phone_calls);
  return outcome(c, rc, &r->base);
}

/* An id, a {"id":...} or a whole PhoneCall. */
static int hangup_id(actx_t *c, json_object *e, size_t i, char **out) {
  char buf[24];
  const char *s;
  size_t len;
  json_object *id =
      json_object_is_type(e, json_type_object) ? xl_json_get(e, "id") : e;
  if (!xl_json_text(id, &s, &len, buf)) {
    snprintf(c->why, sizeof(c->why), "entry %zu has no string \"id\"", i);
    return USC_ERR_INVALID;
  }
  *out = xl_strndup(c->in->allocator, s, len);
  return *out != NULL ? 0 : USC_ERR_NOMEM;
}

static int parse_hangup(actx_t *c, const items_t *it) {
  Uapi__Phonecalls__V1__HangupPhoneCallsResponse *r =
      xl_pb_new(c->in->allocator,
                &uapi__phonecalls__v1__hangup_phone_calls_response__descriptor);
  size_t n = items_n(it);
  char **ids =
      r != NULL ? xl_alloc(c->in->allocator, (n + 1) * sizeof(char *)) : NULL;
  if (ids == NULL)
    return outcome(c, USC_ERR_NOMEM, NULL);
  r->phone_call_ids = ids;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = hangup_id(c, item(it, i), i, &ids[i]);
    r->n_phone_call_ids = rc == 0 ? i + 1 : i;
  }
  return outcome(c, rc, &r->base);
}

/* ---- partial updates ---- */

/* Only id, extension and the link: the seed's 202 answer. */
static bool partial(json_object *o) {
  if (!json_object_is_type(o, json_type_object))
    return false;
  json_object_object_foreach(o, key, value) {
    (void)value;
    if (strcmp(key, "id") != 0 && strcmp(key, "extension") != 0 &&
        strcmp(key, "link") != 0 && strcmp(key, "links") != 0)
      return false;
  }
  return true;
}

static const char *link_of(json_object *o, size_t *len) {
  static const char *const keys[] = {"links", "link"};
  for (size_t i = 0; i < USC_ARRAY_LEN(keys); i++) {
    json_object *v = xl_json_get(o, keys[i]);
    if (json_object_is_type(v, json_type_object))
      v = xl_json_get(v, "self");
    if (json_object_is_type(v, json_type_string)) {
      *len = (size_t)json_object_get_string_len(v);
      return json_object_get_string(v);
    }
  }
  return NULL;
}

/* The link's path when it names a call validly, else the request's. */
static int fetch(actx_t *c, json_object *o) {
  size_t len = 0;
  const char *link = link_of(o, &len);
  const ProtobufCMessage *req = c->in->request;
  if (link != NULL && xl_link_path(link, len, c->out->fetch_path))
    return USC_XLATE_FETCH;
  if (req != NULL &&
      xl_call_path(xl_user_segment(xl_pb_str(req, "user_id")),
                   xl_pb_str(req, "extension"), xl_pb_str(req, "phone_call_id"),
                   c->out->fetch_path))
    return USC_XLATE_FETCH;
  snprintf(c->why, sizeof(c->why),
           "a partial answer, and no valid call path to fetch the call");
  return not_expected(c);
}

static int parse_action(actx_t *c, const items_t *it) {
  if (items_n(it) == 0)
    return fetch(c, NULL);
  json_object *o = item(it, pick(c, it));
  if (partial(o))
    return fetch(c, o);
  xl_call_t *call = NULL;
  int rc = call_at(c, it, pick(c, it), &call);
  return outcome(c, rc, call != NULL ? &call->base : NULL);
}

/* ---- entry point ---- */

/* {"error":{...}} with a 2xx status: the upstream contradicts itself. */
static int error_in_success(actx_t *c, json_object *root) {
  char code[USC_XLATE_CODE_MAX], text[USC_XLATE_MESSAGE_MAX];
  if (!json_object_is_type(xl_json_get(root, "error"), json_type_object) ||
      usc_xlate_error_body_parse(c->in->body, c->in->body_len, code, text))
    return -1;
  char shorter[160];
  xl_copy_text(shorter, sizeof(shorter), text, sizeof(text));
  snprintf(c->why, sizeof(c->why), "an error (%s)", shorter);
  not_expected(c);
  xl_copy_code(c->out->error.code, sizeof(c->out->error.code), code,
               strlen(code));
  return USC_XLATE_FAILED;
}

static int by_kind(actx_t *c, json_object *root) {
  items_t it;
  int rc = error_in_success(c, root);
  if (rc >= 0)
    return rc;
  if ((rc = items_of(c, root, &it)) != 0)
    return outcome(c, rc, NULL);
  switch (xl_kind(c->in->rpc)) {
  case XL_KIND_LIST:
    return parse_list(c, &it);
  case XL_KIND_GET:
    return parse_get(c, &it);
  case XL_KIND_CREATE:
    return parse_create(c, &it);
  case XL_KIND_HANGUP:
    return parse_hangup(c, &it);
  default:
    return parse_action(c, &it);
  }
}

int usc_xlate_answer_parse(const usc_xlate_answer_t *answer,
                           usc_xlate_result_t *result) {
  actx_t c = {.in = answer, .out = result};
  json_object *root = NULL;
  memset(result, 0, sizeof(*result));
  if (usc_xlate_rpc_info(answer->rpc) == NULL)
    return failed(&c, USC_GRPC_INTERNAL, NULL, "no such RPC");
  if (answer->http_status < 200 || answer->http_status > 299)
    return upstream_error(&c);
  int rc = xl_json_parse(answer->body, answer->body_len, &root, c.why,
                         sizeof(c.why));
  if (rc != 0)
    return outcome(&c, rc, NULL);
  rc = by_kind(&c, root);
  json_object_put(root);
  return rc;
}
