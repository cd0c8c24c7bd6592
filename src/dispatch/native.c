#include "src/dispatch/native.h"

#include <string.h>

#include "src/dispatch/convert.h"
#include "uapi/phonecalls/v1/phonecalls.pb-c.h"

#define DEFAULT_PARKING_S 180
#define NS_PER_S 1000000000LL

typedef struct {
  const native_t *n;
  const method_t *m;
  const void *msg;
  const char *identity;
  arena_t *arena;
  int64_t now;
  outcome_t *out;
} ctx_t;

static usc_state_address_t address(const ctx_t *c) {
  return address_of(c->n->fields, c->m, c->msg, c->identity);
}

static void fail_state(const ctx_t *c, const usc_state_err_t *err) {
  outcome_error(c->out, err->status, err->uapi_code, err->message);
}

static void succeed(const ctx_t *c, const void *response) {
  if (response == NULL) {
    outcome_error(c->out, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
                  "out of memory building the response");
    return;
  }
  c->out->status = USC_GRPC_OK;
  c->out->uapi_code = NULL;
  c->out->message[0] = '\0';
  c->out->response = response;
}

static void serve_get(const ctx_t *c) {
  usc_state_address_t addr = address(c);
  const usc_state_call_t *call;
  usc_state_err_t err;
  if (usc_state_get(c->n->state, &addr, c->now, &call, &err) != 0)
    fail_state(c, &err);
  else
    succeed(c, convert_call(c->arena, call, USC_STATE_FIELD_ALL));
}

static Uapi__Phonecalls__V1__ListPhoneCallsResponse *
list_response(arena_t *arena, const usc_state_page_t *page) {
  Uapi__Phonecalls__V1__ListPhoneCallsResponse *out =
      arena_alloc(arena, sizeof(*out));
  Uapi__Phonecalls__V1__PhoneCall **calls =
      arena_alloc(arena, page->n_calls * sizeof(*calls) + 1);
  if (out == NULL || calls == NULL)
    return NULL;
  for (size_t i = 0; i < page->n_calls; i++) {
    calls[i] = convert_call(arena, page->calls[i], page->field_mask);
    if (calls[i] == NULL)
      return NULL;
  }
  uapi__phonecalls__v1__list_phone_calls_response__init(out);
  out->n_phone_calls = page->n_calls;
  out->phone_calls = calls;
  out->total_results = page->total_results;
  out->items_per_page = page->items_per_page;
  out->start_index = page->start_index;
  return out;
}

static void serve_list(const ctx_t *c) {
  const Uapi__Phonecalls__V1__ListPhoneCallsRequest *req = c->msg;
  usc_state_list_t list = {
      .address = address(c),
      .has_count = req->count != NULL,
      .count = req->count != NULL ? req->count->value : 0,
      .has_start_index = req->start_index != NULL,
      .start_index = req->start_index != NULL ? req->start_index->value : 0,
      .filter_by = req->filter_by,
      .filter_op = req->filter_op,
      .filter_value = req->filter_value,
      .sort_order = req->sort_order,
      .fields = (const char *const *)req->fields,
      .n_fields = req->n_fields,
  };
  usc_state_page_t page;
  usc_state_err_t err;
  if (usc_state_list(c->n->state, &list, c->now, &page, &err) != 0) {
    fail_state(c, &err);
    return;
  }
  succeed(c, list_response(c->arena, &page));
  usc_state_page_free(&page);
}

static Uapi__Phonecalls__V1__CreatePhoneCallResponse *
create_response(arena_t *arena, const usc_state_call_t *call) {
  Uapi__Phonecalls__V1__CreatePhoneCallResponse *out =
      arena_alloc(arena, sizeof(*out));
  Uapi__Phonecalls__V1__PhoneCall **calls = arena_alloc(arena, sizeof(*calls));
  if (out == NULL || calls == NULL)
    return NULL;
  uapi__phonecalls__v1__create_phone_call_response__init(out);
  calls[0] = convert_call(arena, call, USC_STATE_FIELD_ALL);
  out->n_phone_calls = 1;
  out->phone_calls = calls;
  return calls[0] != NULL ? out : NULL;
}

static void serve_create(const ctx_t *c) {
  const Uapi__Phonecalls__V1__CreatePhoneCallRequest *req = c->msg;
  usc_state_create_t create = {
      .kind = (usc_state_create_kind_t)c->m->sub,
      .address = address(c),
      .source = (const char *const *)req->source,
      .n_source = req->n_source,
      .destination = (const char *const *)req->destination,
      .n_destination = req->n_destination,
      .caller_id = req->caller_id,
      .caller_destination = req->caller_destination,
      .nonce = req->nonce,
  };
  const usc_state_call_t *call;
  usc_state_err_t err;
  if (usc_state_create(c->n->state, &create, c->now, &call, &err) != 0) {
    fail_state(c, &err);
    return;
  }
  if (call->answered == 0)
    c->n->wake_at(c->n->user, c->now + c->n->ring_ns);
  succeed(c, create_response(c->arena, call));
}

static Uapi__Phonecalls__V1__HangupPhoneCallsResponse *
hangup_response(arena_t *arena, char **ids, size_t n_ids) {
  Uapi__Phonecalls__V1__HangupPhoneCallsResponse *out =
      arena_alloc(arena, sizeof(*out));
  char **copy = arena_alloc(arena, n_ids * sizeof(*copy) + 1);
  if (out == NULL || copy == NULL)
    return NULL;
  uapi__phonecalls__v1__hangup_phone_calls_response__init(out);
  for (size_t i = 0; i < n_ids; i++) {
    size_t size = strlen(ids[i]) + 1;
    copy[i] = arena_alloc(arena, size);
    if (copy[i] == NULL)
      return NULL;
    memcpy(copy[i], ids[i], size);
  }
  out->n_phone_call_ids = n_ids;
  out->phone_call_ids = copy;
  return out;
}

static void serve_hangup(const ctx_t *c) {
  const Uapi__Phonecalls__V1__HangupPhoneCallsRequest *req = c->msg;
  usc_state_hangup_t hangup = {
      .address = address(c),
      .phone_number = req->phone_number,
  };
  char **ids;
  size_t n_ids;
  usc_state_err_t err;
  if (usc_state_hangup(c->n->state, &hangup, c->now, &ids, &n_ids, &err)) {
    fail_state(c, &err);
    return;
  }
  succeed(c, hangup_response(c->arena, ids, n_ids));
  usc_state_ids_free(ids, n_ids);
}

static usc_state_action_t action_of(const ctx_t *c) {
  const fields_t *f = c->n->fields;
  usc_state_action_t act = {
      .kind = (usc_state_action_kind_t)c->m->sub,
      .address = address(c),
      .phone_call_view_id = field_str(f, c->m, c->msg, F_VIEW_ID),
      .send_call_to = field_str(f, c->m, c->msg, F_SEND_CALL_TO),
      .caller_id = field_str(f, c->m, c->msg, F_CALLER_ID),
      .format = field_str(f, c->m, c->msg, F_FORMAT),
      .transfer_from_number = field_str(f, c->m, c->msg, F_TRANSFER_FROM),
      .transfer_number = field_str(f, c->m, c->msg, F_TRANSFER_NUMBER),
  };
  act.has_max_in_parking =
      field_int32(f, c->m, c->msg, F_MAX_IN_PARKING, &act.max_in_parking);
  act.has_wait_for_pickup =
      field_int32(f, c->m, c->msg, F_WAIT_FOR_PICKUP, &act.wait_for_pickup);
  act.has_private = field_bool(f, c->m, c->msg, F_PRIVATE, &act.private_);
  return act;
}

static void serve_action(const ctx_t *c) {
  usc_state_action_t act = action_of(c);
  const usc_state_call_t *call;
  usc_state_err_t err;
  if (usc_state_act(c->n->state, &act, c->now, &call, &err) != 0) {
    fail_state(c, &err);
    return;
  }
  if (act.kind == USC_STATE_PARK) {
    int64_t seconds =
        act.has_max_in_parking ? act.max_in_parking : DEFAULT_PARKING_S;
    c->n->wake_at(c->n->user, c->now + seconds * NS_PER_S);
  }
  succeed(c, convert_call(c->arena, call, USC_STATE_FIELD_ALL));
}

void native_serve(const native_t *native, const method_t *m,
                  const void *request, const char *identity, arena_t *arena,
                  outcome_t *out) {
  ctx_t c = {native, m, request, identity, arena, native->clock(native->user),
             out};
  switch (m->kind) {
  case KIND_LIST:
    serve_list(&c);
    break;
  case KIND_GET:
    serve_get(&c);
    break;
  case KIND_CREATE:
    serve_create(&c);
    break;
  case KIND_HANGUP:
    serve_hangup(&c);
    break;
  case KIND_ACTION:
    serve_action(&c);
    break;
  case KIND_WATCH:
    outcome_error(out, USC_GRPC_INTERNAL, NULL,
                  "WatchPhoneCalls is a stream, not a unary call");
    break;
  case KIND_HEALTH_CHECK: /* served by services.c */
  case KIND_HEALTH_WATCH:
  case KIND_HEALTH_LIST:
  case KIND_REFLECTION:
    outcome_error(out, USC_GRPC_INTERNAL, NULL,
                  "not a PhoneCallService method");
    break;
  }
}
