#include "src/dispatch/convert.h"

#include "src/base/base.h"

#include <stdio.h>
#include <string.h>

typedef Uapi__Phonecalls__V1__PhoneCall pb_call_t;
typedef Uapi__Phonecalls__V1__PhoneCallView pb_view_t;

static const pb_call_t call_init = UAPI__PHONECALLS__V1__PHONE_CALL__INIT;
static const pb_view_t view_init = UAPI__PHONECALLS__V1__PHONE_CALL_VIEW__INIT;
static const Google__Protobuf__Timestamp time_init =
    GOOGLE__PROTOBUF__TIMESTAMP__INIT;
static const Google__Protobuf__Int32Value int32_init =
    GOOGLE__PROTOBUF__INT32_VALUE__INIT;

#define NS_PER_S 1000000000LL

/* UAPI's 0 has its own enum number (100) so that 0 means "not given". */
#define UAPI_ZERO 100

Google__Protobuf__Timestamp *convert_time(arena_t *arena, int64_t ns) {
  if (ns == 0)
    return NULL;
  Google__Protobuf__Timestamp *t = arena_alloc(arena, sizeof(*t));
  if (t == NULL)
    return NULL;
  *t = time_init;
  t->seconds = ns / NS_PER_S;
  t->nanos = (int32_t)(ns % NS_PER_S);
  return t;
}

static Google__Protobuf__Int32Value *convert_int32(arena_t *arena, int value) {
  Google__Protobuf__Int32Value *v = arena_alloc(arena, sizeof(*v));
  if (v == NULL)
    return NULL;
  *v = int32_init;
  v->value = value;
  return v;
}

/* Optional fields: a failed allocation leaves the field unset and makes
 * the conversion fail as a whole. */
#define OPTIONAL(dst, expr, ok)                                                \
  do {                                                                         \
    (dst) = (expr);                                                            \
    if ((dst) == NULL)                                                         \
      (ok) = false;                                                            \
  } while (0)

static bool convert_times(arena_t *arena, const usc_state_view_t *v,
                          pb_view_t *out) {
  bool ok = true;
  if (v->ringing)
    OPTIONAL(out->ringing, convert_time(arena, v->ringing), ok);
  if (v->recording)
    OPTIONAL(out->recording, convert_time(arena, v->recording), ok);
  if (v->answered)
    OPTIONAL(out->answered, convert_time(arena, v->answered), ok);
  if (v->parked)
    OPTIONAL(out->parked, convert_time(arena, v->parked), ok);
  if (v->on_hold)
    OPTIONAL(out->on_hold, convert_time(arena, v->on_hold), ok);
  if (v->parked_pos > 0)
    OPTIONAL(out->parked_pos, convert_int32(arena, v->parked_pos), ok);
  if (v->holder > 0)
    OPTIONAL(out->holder, convert_int32(arena, v->holder), ok);
  return ok;
}

static pb_view_t *convert_view(arena_t *arena, const usc_state_view_t *v) {
  pb_view_t *out = arena_alloc(arena, sizeof(*out));
  if (out == NULL)
    return NULL;
  *out = view_init;
  out->id = (char *)v->id;
  out->extension = (char *)v->extension;
  out->n_source = v->n_source;
  out->source = (char **)v->source;
  out->n_destination = v->n_destination;
  out->destination = (char **)v->destination;
  out->flow = v->flow;
  out->status = v->status == 0 ? UAPI_ZERO : v->status;
  if (v->caller_id != NULL)
    out->caller_id = (char *)v->caller_id;
  if (v->parked_by != NULL)
    out->parked_by = (char *)v->parked_by;
  if (v->disposition >= 0)
    out->disposition = v->disposition == 0 ? UAPI_ZERO : v->disposition;
  return convert_times(arena, v, out) ? out : NULL;
}

static bool convert_views(arena_t *arena, const usc_state_call_t *call,
                          pb_call_t *out) {
  out->phone_call_views =
      arena_alloc(arena, call->n_views * sizeof(*out->phone_call_views) + 1);
  if (out->phone_call_views == NULL)
    return false;
  for (size_t i = 0; i < call->n_views; i++) {
    out->phone_call_views[i] = convert_view(arena, &call->views[i]);
    if (out->phone_call_views[i] == NULL)
      return false;
  }
  out->n_phone_call_views = call->n_views;
  return true;
}

/* Natively there is no upstream host: the link is the call's UAPI path. */
static char *self_link(arena_t *arena, const usc_state_call_t *call) {
  size_t cap =
      32 + strlen(call->user) + strlen(call->extension) + strlen(call->id);
  char *link = arena_alloc(arena, cap);
  if (link != NULL)
    snprintf(link, cap, "/uapi/phoneCalls/%s/%s/%s", call->user,
             call->extension, call->id);
  return link;
}

pb_call_t *convert_call(arena_t *arena, const usc_state_call_t *call,
                        uint32_t mask) {
  pb_call_t *out = arena_alloc(arena, sizeof(*out));
  bool ok = out != NULL;
  if (!ok)
    return NULL;
  *out = call_init;
  if (mask & USC_STATE_FIELD_ID)
    out->id = (char *)call->id;
  if (mask & USC_STATE_FIELD_EXTENSION)
    out->extension = (char *)call->extension;
  if (mask & USC_STATE_FIELD_OWNER_ID)
    out->owner_id = (char *)call->owner_id;
  if (mask & USC_STATE_FIELD_OWNER_NAME)
    out->owner_name = (char *)call->owner_name;
  if ((mask & USC_STATE_FIELD_NONCE) && call->nonce != NULL)
    out->nonce = (char *)call->nonce;
  if ((mask & USC_STATE_FIELD_PUBLISHED) && call->published)
    OPTIONAL(out->published, convert_time(arena, call->published), ok);
  if ((mask & USC_STATE_FIELD_ANSWERED) && call->answered)
    OPTIONAL(out->answered, convert_time(arena, call->answered), ok);
  if (mask & USC_STATE_FIELD_PHONE_CALL_VIEW)
    ok = ok && convert_views(arena, call, out);
  if (mask & USC_STATE_FIELD_LINKS)
    OPTIONAL(out->self_link, self_link(arena, call), ok);
  return ok ? out : NULL;
}

static int64_t time_ns(const Google__Protobuf__Timestamp *t) {
  return t == NULL ? 0 : t->seconds * NS_PER_S + t->nanos;
}

static int from_uapi_enum(int value) { return value == UAPI_ZERO ? 0 : value; }

static const char *optional_text(const char *s) { return s[0] ? s : NULL; }

static void view_to_state(const pb_view_t *v, usc_state_view_t *out) {
  memset(out, 0, sizeof(*out));
  snprintf(out->id, sizeof(out->id), "%s", v->id);
  out->extension = v->extension;
  out->source = (const char *const *)v->source;
  out->n_source = v->n_source;
  out->destination = (const char *const *)v->destination;
  out->n_destination = v->n_destination;
  out->flow = v->flow;
  out->status = from_uapi_enum(v->status);
  out->ringing = time_ns(v->ringing);
  out->caller_id = optional_text(v->caller_id);
  out->recording = time_ns(v->recording);
  out->answered = time_ns(v->answered);
  out->parked = time_ns(v->parked);
  out->parked_pos = v->parked_pos != NULL ? v->parked_pos->value : 0;
  out->parked_by = optional_text(v->parked_by);
  out->on_hold = time_ns(v->on_hold);
  out->holder = v->holder != NULL ? v->holder->value : 0;
  out->disposition = v->disposition == 0 ? -1 : from_uapi_enum(v->disposition);
}

int convert_to_state(arena_t *arena, const pb_call_t *pb,
                     usc_state_call_t *out) {
  if (pb->n_phone_call_views > USC_STATE_MAX_VIEWS)
    return USC_ERR_TOO_LARGE;
  usc_state_view_t *views =
      arena_alloc(arena, (pb->n_phone_call_views + 1) * sizeof(*views));
  if (views == NULL)
    return USC_ERR_NOMEM;
  for (size_t i = 0; i < pb->n_phone_call_views; i++)
    view_to_state(pb->phone_call_views[i], &views[i]);
  memset(out, 0, sizeof(*out));
  out->id = pb->id;
  out->extension = pb->extension;
  out->owner_id = pb->owner_id;
  out->owner_name = pb->owner_name;
  out->published = time_ns(pb->published);
  out->answered = time_ns(pb->answered);
  out->nonce = optional_text(pb->nonce);
  out->views = views;
  out->n_views = pb->n_phone_call_views;
  return 0;
}
