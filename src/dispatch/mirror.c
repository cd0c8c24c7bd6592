/* While the upstream answers, what it says about calls is copied into the
 * native engine, so that the auto backend's fallback serves the last known
 * calls rather than an empty world. */
#include "src/dispatch/convert.h"
#include "src/dispatch/internal.h"

static void put(usc_dispatch_t *d, const usc_state_address_t *owner,
                const Uapi__Phonecalls__V1__PhoneCall *pb) {
  usc_state_call_t snapshot;
  usc_state_err_t err;
  if (convert_to_state(&d->arena, pb, &snapshot) == 0)
    usc_state_put(d->config.state, owner, &snapshot, dispatch_now_ns(d), &err);
}

static void put_all(usc_dispatch_t *d, const usc_state_address_t *owner,
                    Uapi__Phonecalls__V1__PhoneCall *const *calls, size_t n) {
  for (size_t i = 0; i < n; i++)
    put(d, owner, calls[i]);
}

static void remove_all(usc_dispatch_t *d, const usc_state_address_t *owner,
                       char *const *ids, size_t n) {
  for (size_t i = 0; i < n; i++)
    usc_state_remove(d->config.state, owner, ids[i], dispatch_now_ns(d));
}

/* A List without filter, id or offset that returned every match names
 * all the calls of that user and extension: the others have ended. */
static bool
is_whole_list(const ProtobufCMessage *msg,
              const Uapi__Phonecalls__V1__ListPhoneCallsResponse *l) {
  const Uapi__Phonecalls__V1__ListPhoneCallsRequest *req = (const void *)msg;
  bool offset = req->start_index != NULL && req->start_index->value != 0;
  return !offset && req->phone_call_id[0] == '\0' &&
         req->filter_by[0] == '\0' &&
         (size_t)l->total_results == l->n_phone_calls;
}

static void retain(usc_dispatch_t *d, const usc_state_address_t *owner,
                   const Uapi__Phonecalls__V1__ListPhoneCallsResponse *list) {
  const char **ids =
      arena_alloc(&d->arena, (list->n_phone_calls + 1) * sizeof(*ids));
  if (ids == NULL)
    return;
  for (size_t i = 0; i < list->n_phone_calls; i++)
    ids[i] = list->phone_calls[i]->id;
  usc_state_retain(d->config.state, owner, ids, list->n_phone_calls,
                   dispatch_now_ns(d));
}

void mirror_gone(usc_dispatch_t *d, const method_t *m,
                 const ProtobufCMessage *msg) {
  usc_state_address_t owner = address_of(&d->fields, m, msg, NULL);
  if (owner.phone_call_id[0] != '\0')
    usc_state_remove(d->config.state, &owner, owner.phone_call_id,
                     dispatch_now_ns(d));
}

void mirror_answer(usc_dispatch_t *d, const method_t *m,
                   const ProtobufCMessage *msg,
                   const ProtobufCMessage *response) {
  usc_state_address_t owner = address_of(&d->fields, m, msg, NULL);
  const Uapi__Phonecalls__V1__ListPhoneCallsResponse *list;
  const Uapi__Phonecalls__V1__CreatePhoneCallResponse *created;
  const Uapi__Phonecalls__V1__HangupPhoneCallsResponse *hung;
  switch (m->kind) {
  case KIND_LIST:
    list = (const void *)response;
    /* A projection (fields) is not the whole call. */
    if (((const Uapi__Phonecalls__V1__ListPhoneCallsRequest *)msg)->n_fields)
      break;
    put_all(d, &owner, list->phone_calls, list->n_phone_calls);
    if (is_whole_list(msg, list))
      retain(d, &owner, list);
    break;
  case KIND_CREATE:
    created = (const void *)response;
    put_all(d, &owner, created->phone_calls, created->n_phone_calls);
    break;
  case KIND_HANGUP:
    hung = (const void *)response;
    remove_all(d, &owner, hung->phone_call_ids, hung->n_phone_call_ids);
    break;
  case KIND_GET:
  case KIND_ACTION:
    put(d, &owner, (const void *)response);
    break;
  case KIND_WATCH:
  case KIND_HEALTH_CHECK: /* not PhoneCallService's (services.c) */
  case KIND_HEALTH_WATCH:
  case KIND_HEALTH_LIST:
  case KIND_REFLECTION:
    break;
  }
  arena_reset(&d->arena);
}
