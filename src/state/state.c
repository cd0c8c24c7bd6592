/* The native call-state engine; see state.h and docs/native-engine.md.
 *
 * Layout. Each call is one `rec_t` allocation that holds the public
 * usc_state_call_t, the engine's bookkeeping and, behind them, every
 * string given at creation, id included (the source and destination
 * arrays of a created call are shared by legs 00 and 01; a mirrored call,
 * copied from a snapshot, has its own per leg). The legs are a second
 * allocation, grown when someone barges in. A string an action writes
 * later (parked_by too) is a separate allocation owned by its leg
 * (`owned` says which ones), so replacing it frees exactly what it must.
 *
 * Indexes. A hash table (linear probing, backward-shift deletion) finds a
 * call by user and id; a list keeps every call ordered by (published,
 * creation) for Hangup and the buckets of index.h the same for List, per
 * user and per (user, extension) with their counts; a min-heap (base's) on each
 * call's next deadline (ringing that turns into an answer, parking that runs
 * out) lets advance find due work without a scan; a list of the calls with a
 * parked leg serves park positions. The table, heap and buckets are grown
 * before a call is built or changed, so nothing can fail once a change has
 * begun. A mirrored
 * call has no deadline: a leg parked upstream has no limit here
 * (park_secs 0). */
#include "src/state/state.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/state/index.h"
#include "src/state/internal.h"

#define NS_PER_S INT64_C(1000000000)
#define DEFAULT_MAX_CALLS 100000
#define DEFAULT_COUNT 20
#define MAX_COUNT 5000
#define MAX_START_INDEX 5000
#define PARK_DEFAULT_S 180
#define PARK_MIN_S 10
#define PARK_MAX_S 3600
#define MAX_NUMBER_LEN 32
#define MIN_TABLE_CAP 16

#define CALL_ID_CODE USC_UAPI_CALL_INVALID
#define VIEW_ID_CODE USC_UAPI_VIEW_INVALID

enum { FLOW_LOCAL = 2, FLOW_OUTGOING = 4, FLOW_INCOMING = 8 };
enum { ST_RINGING = 3, ST_OTHER_RINGING = 4, ST_ON_CALL = 5 };

/* Leg strings allocated by an action rather than kept in the call's
 * creation block. */
enum { OWN_EXT = 1, OWN_SRC = 2, OWN_DST = 4, OWN_CALLER = 8, OWN_PARKED = 16 };

typedef struct rec rec_t;
struct rec {
  usc_state_call_t call;
  usc_state_view_t *legs;       /* call.views, writable */
  rec_t *prev, *next;           /* every call by (published, creation) */
  rec_t *park_prev, *park_next; /* calls with a parked leg */
  uint64_t seq;                 /* creation order */
  int64_t ring_at;              /* when ringing legs answer; 0: none */
  usc_heap_node_t due;          /* key: the next deadline (0: none); tie: seq */
  uint16_t park_secs[USC_STATE_MAX_VIEWS]; /* 0: parked with no limit */
  uint8_t owned[USC_STATE_MAX_VIEWS];
  uint8_t n_parked;
  bool kept;           /* usc_state_retain's mark */
  index_entry_t index; /* in its user's and its extensions' buckets */
  const char *strs[];  /* sources, destinations, then the text */
};

struct usc_state_watch {
  usc_state_watch_t *prev, *next;
  usc_state_watch_fn fn;
  void *user;
  const char *ext; /* NULL: every extension */
  char owner[];
};

struct usc_state {
  size_t max_calls;
  int64_t ring_ns;
  uint64_t rng;
  uint64_t next_seq;
  char *default_user;
  char *owner_name;
  rec_t **table;
  size_t table_cap; /* 0 or a power of two */
  size_t n_calls;
  rec_t *head, *tail;
  rec_t *parked;
  usc_heap_t heap;
  usc_state_watch_t *watchers;
  call_index_t index;
  uint64_t changes; /* see usc_state_changes */
};

/* An address once checked. */
typedef struct {
  const char *user;
  const char *ext;
  const char *id; /* "" when not given */
} target_t;

/* A leg's extension before an action replaced it: watchers of that
 * extension still hear of the change, and only then is it freed. */
typedef struct {
  const char *ext;
  bool owned;
} prior_t;

/* A filter's date-time: nanoseconds, or, when outside their range
 * (`exact` false), INT64_MIN for earlier and INT64_MAX for later. */
typedef struct {
  int64_t ns;
  bool exact;
} instant_t;

enum { BY_NONE, BY_ID, BY_PUBLISHED };
enum {
  OP_EQUALS,
  OP_GREATER,
  OP_LESS,
  OP_PRESENT,
  OP_STARTS,
  OP_CONTAINS,
  OP_IN,
};

static const char *const OPS[] = {
    "equals",     "greaterThan", "lessThan", "present",
    "startsWith", "contains",    "inArray",
};

typedef struct {
  int32_t count, start;
  int by, op;
  const char *value;
  instant_t when; /* the value of a single-valued filter on published */
  bool descending;
  uint32_t mask;
} query_t;

enum { NEEDS_TARGET = 1, JOINS = 2, TRANSFERS = 4 };

static const struct {
  const char *name;
  uint8_t flags;
} ACTIONS[] = {
    [USC_STATE_ON_HOLD] = {"OnHold", 0},
    [USC_STATE_OFF_HOLD] = {"OffHold", 0},
    [USC_STATE_START_RECORDING] = {"StartRecording", 0},
    [USC_STATE_STOP_RECORDING] = {"StopRecording", 0},
    [USC_STATE_PARK] = {"Park", 0},
    [USC_STATE_UNPARK] = {"UnPark", NEEDS_TARGET},
    [USC_STATE_PICK_UP] = {"PickUp", NEEDS_TARGET},
    [USC_STATE_BARGE_IN] = {"BargeIn", NEEDS_TARGET | JOINS},
    [USC_STATE_WHISPER] = {"Whisper", NEEDS_TARGET | JOINS},
    [USC_STATE_MONITOR] = {"Monitor", NEEDS_TARGET | JOINS},
    [USC_STATE_TRANSFER] = {"Transfer", NEEDS_TARGET | TRANSFERS},
    [USC_STATE_TRANSFER_TO_VOICEMAIL] = {"TransferToVoicemail",
                                         NEEDS_TARGET | TRANSFERS},
};

static const struct {
  const char *name;
  uint32_t bit;
} FIELDS[] = {
    {"id", USC_STATE_FIELD_ID},
    {"extension", USC_STATE_FIELD_EXTENSION},
    {"ownerId", USC_STATE_FIELD_OWNER_ID},
    {"ownerName", USC_STATE_FIELD_OWNER_NAME},
    {"published", USC_STATE_FIELD_PUBLISHED},
    {"answered", USC_STATE_FIELD_ANSWERED},
    {"nonce", USC_STATE_FIELD_NONCE},
    {"phoneCallView", USC_STATE_FIELD_PHONE_CALL_VIEW},
    {"links", USC_STATE_FIELD_LINKS},
};

static const char DIGITS[] = "0123456789";
static const char ALNUM[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* ---- errors ---- */

__attribute__((format(printf, 5, 6))) static int
fail(usc_state_err_t *err, int rc, usc_grpc_status_t status, const char *code,
     const char *fmt, ...) {
  va_list ap;
  err->status = status;
  err->uapi_code = code;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return rc;
}

#define INVALID(err, code, ...)                                                \
  fail(err, USC_ERR_INVALID, USC_GRPC_INVALID_ARGUMENT, code, __VA_ARGS__)
#define NOT_FOUND(err, code, ...)                                              \
  fail(err, USC_ERR_NOT_FOUND, USC_GRPC_NOT_FOUND, code, __VA_ARGS__)
#define BAD_STATE(err, ...)                                                    \
  fail(err, USC_ERR_STATE, USC_GRPC_FAILED_PRECONDITION,                       \
       USC_UAPI_STATE_INVALID, __VA_ARGS__)
#define NO_MEMORY(err, doing)                                                  \
  fail(err, USC_ERR_NOMEM, USC_GRPC_RESOURCE_EXHAUSTED, NULL,                  \
       "out of memory while %s; retry later", doing)

static void clear_err(usc_state_err_t *err) {
  err->status = USC_GRPC_OK;
  err->uapi_code = NULL;
  err->message[0] = '\0';
}

/* ---- small string helpers ---- */

static const char *or_empty(const char *s) { return s != NULL ? s : ""; }

static bool is_set(const char *s) { return s != NULL && s[0] != '\0'; }

static bool made_of(const char *s, const char *set, size_t max) {
  size_t n = strlen(s);
  return n >= 1 && n <= max && strspn(s, set) == n;
}

static bool ext_valid(const char *ext) {
  return made_of(ext, "0123456789*", MAX_NUMBER_LEN) &&
         strpbrk(ext, DIGITS) != NULL;
}

static bool is_self(const char *ext) { return strcmp(ext, "@self") == 0; }

static bool in_texts(const char *const *list, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i], s) == 0)
      return true;
  return false;
}

/* A one-element string array in a single allocation. */
static const char **list1(const char *s) {
  size_t n = strlen(s) + 1;
  const char **list = usc_malloc(sizeof *list + n);
  if (list == NULL)
    return NULL;
  list[0] = memcpy(list + 1, s, n);
  return list;
}

/* ---- matching ---- */

static bool call_matches_ext(const usc_state_call_t *call, const char *ext) {
  if (is_self(ext) || strcmp(call->extension, ext) == 0)
    return true;
  for (size_t i = 0; i < call->n_views; i++)
    if (strcmp(call->views[i].extension, ext) == 0)
      return true;
  return false;
}

static bool visible(const rec_t *r, const target_t *t) {
  return strcmp(r->call.user, t->user) == 0 &&
         call_matches_ext(&r->call, t->ext);
}

static bool call_has_number(const usc_state_call_t *call, const char *num) {
  if (strcmp(call->extension, num) == 0)
    return true;
  for (size_t i = 0; i < call->n_views; i++) {
    const usc_state_view_t *v = &call->views[i];
    if (strcmp(v->extension, num) == 0 ||
        in_texts(v->source, v->n_source, num) ||
        in_texts(v->destination, v->n_destination, num))
      return true;
  }
  return false;
}

/* ---- the id table ---- */

/* A call is known by its user and id: two users may hold the same id. */
static size_t home(const usc_state_t *s, const char *user, const char *id) {
  uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
  for (; *user != '\0'; user++)
    h = (h ^ (unsigned char)*user) * UINT64_C(1099511628211);
  h *= UINT64_C(1099511628211); /* the NUL between them */
  for (; *id != '\0'; id++)
    h = (h ^ (unsigned char)*id) * UINT64_C(1099511628211);
  return (size_t)h & (s->table_cap - 1);
}

static size_t home_of(const usc_state_t *s, const rec_t *r) {
  return home(s, r->call.user, r->call.id);
}

static rec_t *find(const usc_state_t *s, const char *user, const char *id) {
  if (s->table_cap == 0)
    return NULL;
  for (size_t i = home(s, user, id);; i = (i + 1) & (s->table_cap - 1)) {
    rec_t *r = s->table[i];
    if (r == NULL ||
        (strcmp(r->call.id, id) == 0 && strcmp(r->call.user, user) == 0))
      return r;
  }
}

static void table_put(usc_state_t *s, rec_t *r) {
  size_t i = home_of(s, r);
  while (s->table[i] != NULL)
    i = (i + 1) & (s->table_cap - 1);
  s->table[i] = r;
}

/* Keeps the load at most 3/4 for `n` calls. */
static int table_reserve(usc_state_t *s, size_t n) {
  if (n * 4 <= s->table_cap * 3)
    return 0;
  size_t old_cap = s->table_cap, cap = old_cap ? old_cap * 2 : MIN_TABLE_CAP;
  while (n * 4 > cap * 3) /* a load adds many calls at once */
    cap *= 2;
  rec_t **old = s->table, **table = usc_calloc(cap, sizeof *table);
  if (table == NULL)
    return USC_ERR_NOMEM;
  s->table = table;
  s->table_cap = cap;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i] != NULL)
      table_put(s, old[i]);
  usc_free(old);
  return 0;
}

static void table_remove(usc_state_t *s, const rec_t *r) {
  size_t mask = s->table_cap - 1, hole = home_of(s, r);
  while (s->table[hole] != r)
    hole = (hole + 1) & mask;
  /* Entries after the hole move back into it unless that would put them
   * before their home slot. */
  for (size_t j = (hole + 1) & mask; s->table[j] != NULL; j = (j + 1) & mask) {
    size_t from_home = (j - home_of(s, s->table[j])) & mask;
    if (from_home >= ((j - hole) & mask)) {
      s->table[hole] = s->table[j];
      hole = j;
    }
  }
  s->table[hole] = NULL;
}

/* ---- the deadline heap ---- */

/* Whether a leg's parking runs out: a leg parked upstream (in a mirrored
 * call) has no limit the engine knows of. */
static bool park_expires(const rec_t *r, size_t i) {
  return r->legs[i].parked != 0 && r->park_secs[i] != 0;
}

static int64_t park_end(const rec_t *r, size_t i) {
  return r->legs[i].parked + (int64_t)r->park_secs[i] * NS_PER_S;
}

static int64_t next_due(const rec_t *r) {
  int64_t due = r->ring_at;
  for (size_t i = 0; i < r->call.n_views; i++)
    if (park_expires(r, i) && (due == 0 || park_end(r, i) < due))
      due = park_end(r, i);
  return due;
}

/* Re-keys a call after a change to its ringing or parking. The heap has
 * room for every call, so this cannot fail. */
static void heap_update(usc_state_t *s, rec_t *r) {
  int64_t due = next_due(r);
  if (due == 0) {
    usc_heap_remove(&s->heap, &r->due);
  } else if (usc_heap_node_in_heap(&r->due)) {
    usc_heap_update(&s->heap, &r->due, due);
  } else {
    r->due.key = due;
    (void)usc_heap_push(&s->heap, &r->due);
  }
}

/* ---- the published-order list and the parked list ---- */

/* List order: by published, then by creation. */
static bool rec_before(const void *a, const void *b) {
  const rec_t *x = a, *y = b;
  return x->call.published != y->call.published
             ? x->call.published < y->call.published
             : x->seq < y->seq;
}

/* The distinct extensions a call matches, "" (none) left out; returns how
 * many are in `exts` (at most 1 + USC_STATE_MAX_VIEWS). */
static size_t call_exts(const rec_t *r, const char **exts) {
  size_t n = 0;
  for (size_t i = 0; i <= r->call.n_views; i++) {
    const char *ext = i == 0 ? r->call.extension : r->legs[i - 1].extension;
    if (ext == NULL || ext[0] == '\0' || in_texts(exts, n, ext))
      continue;
    exts[n++] = ext;
  }
  return n;
}

static int index_call(usc_state_t *s, rec_t *r) {
  const char *exts[1 + USC_STATE_MAX_VIEWS];
  size_t n = call_exts(r, exts);
  return index_add(&s->index, &r->index, r, r->call.user, exts, n);
}

static void list_insert(usc_state_t *s, rec_t *r) {
  rec_t *after = s->tail;
  while (after != NULL && rec_before(r, after))
    after = after->prev;
  r->prev = after;
  r->next = after != NULL ? after->next : s->head;
  if (r->next != NULL)
    r->next->prev = r;
  else
    s->tail = r;
  if (after != NULL)
    after->next = r;
  else
    s->head = r;
}

static void list_unlink(usc_state_t *s, rec_t *r) {
  if (r->prev != NULL)
    r->prev->next = r->next;
  else
    s->head = r->next;
  if (r->next != NULL)
    r->next->prev = r->prev;
  else
    s->tail = r->prev;
}

static void park_link(usc_state_t *s, rec_t *r) {
  r->park_prev = NULL;
  r->park_next = s->parked;
  if (s->parked != NULL)
    s->parked->park_prev = r;
  s->parked = r;
}

static void park_unlink(usc_state_t *s, rec_t *r) {
  if (r->park_prev != NULL)
    r->park_prev->park_next = r->park_next;
  else
    s->parked = r->park_next;
  if (r->park_next != NULL)
    r->park_next->park_prev = r->park_prev;
}

/* ---- watchers ---- */

static bool watch_sees(const usc_state_watch_t *w, const rec_t *r,
                       const char *prior_ext) {
  if (strcmp(w->owner, r->call.user) != 0)
    return false;
  if (w->ext == NULL || call_matches_ext(&r->call, w->ext))
    return true;
  return prior_ext != NULL && strcmp(prior_ext, w->ext) == 0;
}

static void emit(usc_state_t *s, usc_state_event_type_t type, const rec_t *r,
                 int64_t at, const char *prior_ext) {
  usc_state_watch_t *next;
  s->changes++; /* every change to a call is an event */
  for (usc_state_watch_t *w = s->watchers; w != NULL; w = next) {
    next = w->next; /* a callback may unwatch itself */
    if (watch_sees(w, r, prior_ext))
      w->fn(w->user, type, &r->call, at);
  }
}

/* ---- calls: freeing, ringing, parking ---- */

static void free_leg_text(rec_t *r, size_t i) {
  usc_state_view_t *v = &r->legs[i];
  if (r->owned[i] & OWN_EXT)
    usc_free((void *)v->extension);
  if (r->owned[i] & OWN_SRC)
    usc_free((void *)v->source);
  if (r->owned[i] & OWN_DST)
    usc_free((void *)v->destination);
  if (r->owned[i] & OWN_CALLER)
    usc_free((void *)v->caller_id);
  if (r->owned[i] & OWN_PARKED)
    usc_free((void *)v->parked_by);
}

static void free_call(rec_t *r) {
  for (size_t i = 0; i < r->call.n_views; i++)
    free_leg_text(r, i);
  usc_free(r->legs);
  usc_free(r);
}

static void end_call(usc_state_t *s, rec_t *r, int64_t now) {
  table_remove(s, r);
  list_unlink(s, r);
  index_remove(&s->index, &r->index);
  usc_heap_remove(&s->heap, &r->due);
  if (r->n_parked > 0)
    park_unlink(s, r);
  s->n_calls--;
  emit(s, USC_STATE_EVENT_ENDED, r, now, NULL);
  free_call(r);
}

static void answer_ringing(rec_t *r, int64_t t) {
  for (size_t i = 0; i < r->call.n_views; i++) {
    usc_state_view_t *v = &r->legs[i];
    if (v->ringing == 0)
      continue;
    v->status = ST_ON_CALL;
    v->ringing = 0;
    if (v->answered == 0)
      v->answered = t;
  }
  if (r->call.answered == 0)
    r->call.answered = t;
  r->ring_at = 0;
}

static void clear_park(usc_state_t *s, rec_t *r, size_t i) {
  usc_state_view_t *v = &r->legs[i];
  if (r->owned[i] & OWN_PARKED)
    usc_free((void *)v->parked_by);
  r->owned[i] &= (uint8_t)~OWN_PARKED;
  v->parked_by = NULL;
  v->parked = 0;
  v->parked_pos = 0;
  r->park_secs[i] = 0;
  if (--r->n_parked == 0)
    park_unlink(s, r);
}

/* Applies every transition of the call due at `t`, its earliest. */
static void apply_due(usc_state_t *s, rec_t *r, int64_t t) {
  if (r->ring_at != 0 && r->ring_at <= t)
    answer_ringing(r, t);
  for (size_t i = 0; i < r->call.n_views; i++)
    if (park_expires(r, i) && park_end(r, i) <= t)
      clear_park(s, r, i);
}

int64_t usc_state_advance(usc_state_t *state, int64_t now) {
  usc_heap_node_t *first;
  while ((first = usc_heap_peek(&state->heap)) != NULL && first->key <= now) {
    rec_t *r = USC_CONTAINER_OF(first, rec_t, due);
    int64_t t = first->key;
    apply_due(state, r, t);
    heap_update(state, r);
    emit(state, USC_STATE_EVENT_UPDATED, r, t, NULL);
  }
  return first != NULL ? first->key : 0;
}

/* ---- engine ---- */

int usc_state_new(const usc_state_config_t *config, usc_state_t **out) {
  static const usc_state_config_t defaults = {0};
  const usc_state_config_t *c = config != NULL ? config : &defaults;
  usc_state_t *s = usc_calloc(1, sizeof *s);
  if (s == NULL)
    return USC_ERR_NOMEM;
  s->default_user = usc_strdup(is_set(c->default_user) ? c->default_user : "1");
  s->owner_name = usc_strdup(c->owner_name != NULL ? c->owner_name
                                                   : "Default Organization");
  if (s->default_user == NULL || s->owner_name == NULL) {
    usc_state_free(s);
    return USC_ERR_NOMEM;
  }
  s->max_calls = c->max_calls != 0 ? c->max_calls : DEFAULT_MAX_CALLS;
  s->ring_ns = c->ring_ns > 0 ? c->ring_ns : 0;
  s->rng = c->seed;
  index_init(&s->index, rec_before);
  *out = s;
  return 0;
}

void usc_state_free(usc_state_t *state) {
  if (state == NULL)
    return;
  rec_t *next_call;
  for (rec_t *r = state->head; r != NULL; r = next_call) {
    next_call = r->next;
    index_remove(&state->index, &r->index);
    free_call(r);
  }
  index_free(&state->index);
  usc_state_watch_t *next_watch;
  for (usc_state_watch_t *w = state->watchers; w != NULL; w = next_watch) {
    next_watch = w->next;
    usc_free(w);
  }
  usc_free(state->table);
  usc_heap_free(&state->heap);
  usc_free(state->default_user);
  usc_free(state->owner_name);
  usc_free(state);
}

size_t usc_state_call_count(const usc_state_t *state) { return state->n_calls; }

const char *usc_state_action_name(usc_state_action_kind_t kind) {
  return (size_t)kind < USC_ARRAY_LEN(ACTIONS) ? ACTIONS[kind].name : "Unknown";
}

/* ---- address validation ---- */

static bool is_me(const char *user) {
  return user[0] == '\0' || strcmp(user, "@me") == 0 ||
         strcmp(user, "@viewer") == 0 || strcmp(user, "@owner") == 0;
}

static int check_user(const usc_state_t *s, const usc_state_address_t *a,
                      const char **user, usc_state_err_t *err) {
  const char *u = or_empty(a->user_id);
  if (is_me(u)) {
    *user = is_set(a->identity) ? a->identity : s->default_user;
    return 0;
  }
  if (!made_of(u, ALNUM, USC_STATE_MAX_ID_LEN))
    return INVALID(err, USC_UAPI_USER_INVALID,
                   "user id '%.40s' is invalid: use @me, @viewer, @owner or "
                   "1 to 64 letters and digits",
                   u);
  *user = u;
  return 0;
}

static int check_ext(const char *ext, bool self_ok, usc_state_err_t *err) {
  if (is_self(ext) && !self_ok)
    return INVALID(err, USC_UAPI_EXTENSION_INVALID,
                   "extension '@self' cannot place a call: give the "
                   "extension that makes it, such as 0003*210");
  if (is_self(ext) || ext_valid(ext))
    return 0;
  if (ext[0] == '\0')
    return INVALID(err, USC_UAPI_EXTENSION_INVALID,
                   "extension is required: give @self or an extension "
                   "number such as 0003*210");
  return INVALID(err, USC_UAPI_EXTENSION_INVALID,
                 "extension '%.40s' is invalid: use @self or 1 to 32 digits "
                 "and '*', such as 0003*210",
                 ext);
}

static int check_user_ext(const usc_state_t *s, const usc_state_address_t *a,
                          bool self_ok, target_t *t, usc_state_err_t *err) {
  int rc = check_user(s, a, &t->user, err);
  if (rc != 0)
    return rc;
  t->ext = or_empty(a->extension);
  t->id = or_empty(a->phone_call_id);
  return check_ext(t->ext, self_ok, err);
}

static int check_address(const usc_state_t *s, const usc_state_address_t *a,
                         bool id_required, target_t *t, usc_state_err_t *err) {
  int rc = check_user_ext(s, a, true, t, err);
  if (rc != 0 || (t->id[0] == '\0' && !id_required))
    return rc;
  if (t->id[0] == '\0')
    return INVALID(err, CALL_ID_CODE,
                   "phone_call_id is required: give the id of the call");
  if (!made_of(t->id, ALNUM, USC_STATE_MAX_ID_LEN))
    return INVALID(err, CALL_ID_CODE,
                   "phone call id '%.40s' is invalid: use 1 to 64 letters "
                   "and digits",
                   t->id);
  return 0;
}

static int find_visible(const usc_state_t *s, const target_t *t, rec_t **out,
                        usc_state_err_t *err) {
  rec_t *r = find(s, t->user, t->id);
  if (r == NULL || !visible(r, t))
    return NOT_FOUND(err, CALL_ID_CODE,
                     "phone call '%s' not found for user '%.40s' and "
                     "extension '%s'",
                     t->id, t->user, t->ext);
  *out = r;
  return 0;
}

/* ---- create ---- */

static int check_numbers(const char *const *list, size_t n, const char *what,
                         const char *code, usc_state_err_t *err) {
  if (n == 0 || n > USC_STATE_MAX_NUMBERS)
    return INVALID(err, code, "a call needs 1 to %d %s numbers, not %zu",
                   USC_STATE_MAX_NUMBERS, what, n);
  for (size_t i = 0; i < n; i++)
    if (!made_of(or_empty(list[i]), "0123456789*+#", MAX_NUMBER_LEN))
      return INVALID(err, code,
                     "%s number '%.40s' is invalid: use 1 to 32 digits, "
                     "'*', '+' or '#'",
                     what, or_empty(list[i]));
  return 0;
}

static int make_room(usc_state_t *s, usc_state_err_t *err) {
  if (s->n_calls >= s->max_calls)
    return fail(err, USC_ERR_FULL, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
                "the engine already holds its limit of %zu calls: hang some "
                "up or raise --max-calls",
                s->max_calls);
  if (usc_heap_reserve(&s->heap, s->n_calls + 1) != 0 ||
      table_reserve(s, s->n_calls + 1) != 0)
    return NO_MEMORY(err, "creating a call");
  return 0;
}

static size_t text_size(const char *s) { return is_set(s) ? strlen(s) + 1 : 0; }

/* The call's block; its id goes last. */
static size_t call_size(const usc_state_create_t *req, const char *user) {
  size_t n = sizeof(rec_t) +
             (req->n_source + req->n_destination) * sizeof(const char *) +
             USC_STATE_CALL_ID_LEN + 1;
  n += text_size(user) + text_size(req->address.extension) +
       text_size(req->nonce) + text_size(req->caller_id) +
       text_size(req->caller_destination);
  for (size_t i = 0; i < req->n_source; i++)
    n += text_size(req->source[i]);
  for (size_t i = 0; i < req->n_destination; i++)
    n += text_size(req->destination[i]);
  return n;
}

/* Copies `s` at *cur, which moves past it; NULL for an unset string. */
static const char *put(char **cur, const char *s) {
  if (!is_set(s))
    return NULL;
  size_t n = strlen(s) + 1;
  const char *copy = memcpy(*cur, s, n);
  *cur += n;
  return copy;
}

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static void new_id(usc_state_t *s, const char *user, char *id) {
  static const char HEX[] = "0123456789abcdef";
  do {
    uint64_t hi = splitmix64(&s->rng), lo = splitmix64(&s->rng);
    for (int i = 0; i < 16; i++)
      id[i] = HEX[(hi >> (60 - 4 * i)) & 15];
    for (int i = 0; i < 4; i++)
      id[16 + i] = HEX[(lo >> (60 - 4 * i)) & 15];
    id[USC_STATE_CALL_ID_LEN] = '\0';
  } while (find(s, user, id) != NULL);
}

static void init_leg(usc_state_view_t *v, size_t n) {
  memset(v, 0, sizeof *v);
  v->id[0] = (char)('0' + n / 10);
  v->id[1] = (char)('0' + n % 10);
  v->disposition = -1;
}

static bool looks_like_extension(const char *num) {
  size_t n = strlen(num);
  return strchr(num, '*') != NULL || (n <= 5 && strspn(num, DIGITS) == n);
}

static void start_leg(usc_state_view_t *v, int ringing_status, int64_t now,
                      bool ring) {
  v->status = ring ? ringing_status : ST_ON_CALL;
  if (ring)
    v->ringing = now;
  else
    v->answered = now;
}

static void fill_legs(rec_t *r, size_t n_src, size_t n_dst, const char *caller,
                      const char *callee, int64_t now, bool ring) {
  bool local = true;
  for (size_t i = 0; i < n_dst; i++)
    local = local && looks_like_extension(r->strs[n_src + i]);
  for (size_t i = 0; i < 2; i++) {
    init_leg(&r->legs[i], i);
    r->legs[i].source = r->strs;
    r->legs[i].n_source = n_src;
    r->legs[i].destination = r->strs + n_src;
    r->legs[i].n_destination = n_dst;
    r->legs[i].flow = FLOW_LOCAL;
  }
  r->legs[0].extension = r->call.extension;
  r->legs[0].caller_id = caller;
  r->legs[1].extension = r->strs[n_src];
  r->legs[1].caller_id = callee != NULL ? callee : caller;
  if (!local) {
    r->legs[0].flow = FLOW_OUTGOING;
    r->legs[1].flow = FLOW_INCOMING;
  }
  start_leg(&r->legs[0], ST_OTHER_RINGING, now, ring);
  start_leg(&r->legs[1], ST_RINGING, now, ring);
}

static void fill_call(usc_state_t *s, rec_t *r, const usc_state_create_t *req,
                      const char *user, int64_t now) {
  size_t n_src = req->n_source, n_dst = req->n_destination;
  char *cur = (char *)&r->strs[n_src + n_dst];
  for (size_t i = 0; i < n_src; i++)
    r->strs[i] = put(&cur, req->source[i]);
  for (size_t i = 0; i < n_dst; i++)
    r->strs[n_src + i] = put(&cur, req->destination[i]);
  r->call.user = r->call.owner_id = put(&cur, user);
  r->call.extension = put(&cur, req->address.extension);
  r->call.nonce = put(&cur, req->nonce);
  r->call.owner_name = s->owner_name;
  r->call.published = now;
  const char *caller = put(&cur, req->caller_id);
  fill_legs(r, n_src, n_dst, caller, put(&cur, req->caller_destination), now,
            s->ring_ns > 0);
  r->ring_at = s->ring_ns > 0 ? now + s->ring_ns : 0;
  r->call.answered = s->ring_ns > 0 ? 0 : now;
}

static int new_call(usc_state_t *s, const usc_state_create_t *req,
                    const char *user, int64_t now, rec_t **out) {
  size_t size = call_size(req, user);
  rec_t *r = usc_calloc(1, size);
  usc_state_view_t *legs = usc_calloc(2, sizeof *legs);
  if (r == NULL || legs == NULL) {
    usc_free(r);
    usc_free(legs);
    return USC_ERR_NOMEM;
  }
  r->legs = legs;
  r->call.views = legs;
  r->call.n_views = 2;
  fill_call(s, r, req, user, now);
  char *id = (char *)r + size - (USC_STATE_CALL_ID_LEN + 1);
  new_id(s, r->call.user, id);
  r->call.id = id;
  r->seq = s->next_seq++;
  r->due.tie = r->seq;
  *out = r;
  return 0;
}

int usc_state_create(usc_state_t *state, const usc_state_create_t *req,
                     int64_t now, const usc_state_call_t **call,
                     usc_state_err_t *err) {
  target_t t;
  rec_t *r = NULL;
  clear_err(err);
  usc_state_advance(state, now);
  int rc = check_user_ext(state, &req->address, false, &t, err);
  if (rc == 0)
    rc = check_numbers(req->source, req->n_source, "source",
                       "pc_source_invalid", err);
  if (rc == 0)
    rc = check_numbers(req->destination, req->n_destination, "destination",
                       "pc_destination_invalid", err);
  if (rc == 0)
    rc = make_room(state, err);
  uint64_t rng = state->rng, seq = state->next_seq;
  if (rc == 0 && new_call(state, req, t.user, now, &r) != 0)
    rc = NO_MEMORY(err, "creating a call");
  if (rc == 0 && index_call(state, r) != 0) {
    free_call(r);
    state->rng = rng; /* a failed create takes no id */
    state->next_seq = seq;
    rc = NO_MEMORY(err, "creating a call");
  }
  if (rc != 0)
    return rc;
  table_put(state, r);
  list_insert(state, r);
  heap_update(state, r);
  state->n_calls++;
  emit(state, USC_STATE_EVENT_CREATED, r, now, NULL);
  *call = &r->call;
  return 0;
}

/* ---- get ---- */

int usc_state_get(usc_state_t *state, const usc_state_address_t *address,
                  int64_t now, const usc_state_call_t **call,
                  usc_state_err_t *err) {
  target_t t;
  rec_t *r = NULL;
  clear_err(err);
  usc_state_advance(state, now);
  int rc = check_address(state, address, true, &t, err);
  if (rc == 0)
    rc = find_visible(state, &t, &r, err);
  if (rc == 0)
    *call = &r->call;
  return rc;
}

/* ---- list: RFC 3339 date-times ---- */

/* Whether the text is an RFC 3339 date-time, in range or not. */
static bool parse_time(const char *text, size_t len, instant_t *out) {
  int rc = usc_time_parse_rfc3339(text, len, &out->ns);
  out->exact = rc == 0;
  return rc == 0 || rc == USC_ERR_TOO_LARGE;
}

/* Compares a published time with a filter's. */
static int instant_cmp(int64_t published, instant_t when) {
  if (!when.exact)
    return when.ns == INT64_MIN ? 1 : -1;
  return published < when.ns ? -1 : published > when.ns;
}

/* ---- list: filters ---- */

typedef bool (*elem_fn)(const char *s, size_t len, const void *ctx);

/* Calls fn on each element of a comma-separated list (spaces around an
 * element are dropped) until one returns true. */
static bool any_elem(const char *list, elem_fn fn, const void *ctx) {
  for (;;) {
    const char *comma = strchr(list, ',');
    size_t len = comma != NULL ? (size_t)(comma - list) : strlen(list);
    for (; len > 0 && *list == ' '; len--)
      list++;
    while (len > 0 && list[len - 1] == ' ')
      len--;
    if (fn(list, len, ctx))
      return true;
    if (comma == NULL)
      return false;
    list = comma + 1;
  }
}

static bool not_time(const char *s, size_t len, const void *ctx) {
  instant_t unused;
  (void)ctx;
  return !parse_time(s, len, &unused);
}

static bool same_time(const char *s, size_t len, const void *ctx) {
  instant_t when;
  return parse_time(s, len, &when) &&
         instant_cmp(*(const int64_t *)ctx, when) == 0;
}

static bool same_text(const char *s, size_t len, const void *ctx) {
  const char *id = ctx;
  return strlen(id) == len && memcmp(id, s, len) == 0;
}

static bool id_passes(const query_t *q, const char *id) {
  switch (q->op) {
  case OP_EQUALS:
    return strcmp(id, q->value) == 0;
  case OP_GREATER:
    return strcmp(id, q->value) > 0;
  case OP_LESS:
    return strcmp(id, q->value) < 0;
  case OP_STARTS:
    return strncmp(id, q->value, strlen(q->value)) == 0;
  case OP_CONTAINS:
    return strstr(id, q->value) != NULL;
  case OP_IN:
    return any_elem(q->value, same_text, id);
  default: /* present: every call has an id */
    return true;
  }
}

/* A full date-time starts with or contains only itself, so startsWith and
 * contains on published mean equals. */
static bool published_passes(const query_t *q, int64_t published) {
  switch (q->op) {
  case OP_PRESENT:
    return true;
  case OP_GREATER:
    return instant_cmp(published, q->when) > 0;
  case OP_LESS:
    return instant_cmp(published, q->when) < 0;
  case OP_IN:
    return any_elem(q->value, same_time, &published);
  default:
    return instant_cmp(published, q->when) == 0;
  }
}

static bool passes(const query_t *q, const usc_state_call_t *call) {
  if (q->by == BY_ID)
    return id_passes(q, call->id);
  return q->by == BY_NONE || published_passes(q, call->published);
}

/* ---- list: arguments ---- */

static int check_paging(const usc_state_list_t *req, query_t *q,
                        usc_state_err_t *err) {
  q->count = req->has_count ? req->count : DEFAULT_COUNT;
  q->start = req->has_start_index ? req->start_index : 0;
  if (q->count < 1 || q->count > MAX_COUNT)
    return INVALID(err, "count_invalid",
                   "count %ld is out of range: use 1 to %d", (long)q->count,
                   MAX_COUNT);
  if (q->start < 0 || q->start > MAX_START_INDEX)
    return INVALID(err, "startindex_invalid",
                   "start_index %ld is out of range: use 0 to %d",
                   (long)q->start, MAX_START_INDEX);
  return 0;
}

static int check_filter_by(const char *by, query_t *q, usc_state_err_t *err) {
  if (strcmp(by, "id") == 0 || strcmp(by, "published") == 0) {
    q->by = by[0] == 'i' ? BY_ID : BY_PUBLISHED;
    return 0;
  }
  if (by[0] == '\0')
    return INVALID(err, "filterby_invalid",
                   "filter_op needs filter_by: use id or published");
  return INVALID(err, "filterby_invalid",
                 "filter_by '%.40s' is invalid: use id or published", by);
}

static int check_filter_op(const char *op, query_t *q, usc_state_err_t *err) {
  for (size_t i = 0; i < USC_ARRAY_LEN(OPS); i++)
    if (strcmp(op, OPS[i]) == 0) {
      q->op = (int)i;
      return 0;
    }
  return INVALID(err, "filterop_invalid",
                 "filter_op '%.40s' is invalid: use equals, greaterThan, "
                 "lessThan, present, startsWith, contains or inArray",
                 op);
}

static int check_filter_value(query_t *q, usc_state_err_t *err) {
  if (q->op == OP_PRESENT)
    return 0;
  if (q->value[0] == '\0')
    return INVALID(err, "filtervalue_invalid",
                   "filter_value is required with filter_op %s", OPS[q->op]);
  if (q->by == BY_PUBLISHED &&
      (q->op == OP_IN ? any_elem(q->value, not_time, NULL)
                      : !parse_time(q->value, strlen(q->value), &q->when)))
    return INVALID(err, "filtervalue_invalid",
                   "filter_value '%.60s' is not an RFC 3339 date-time such "
                   "as 2024-05-01T10:00:00Z",
                   q->value);
  return 0;
}

static int check_filter(const usc_state_list_t *req, query_t *q,
                        usc_state_err_t *err) {
  const char *by = or_empty(req->filter_by), *op = or_empty(req->filter_op);
  q->by = BY_NONE;
  q->value = or_empty(req->filter_value);
  if (by[0] == '\0' && op[0] == '\0')
    return 0;
  int rc = check_filter_by(by, q, err);
  if (rc == 0 && op[0] == '\0')
    return INVALID(err, "filterop_invalid",
                   "filter_by needs filter_op: use equals, greaterThan, "
                   "lessThan, present, startsWith, contains or inArray");
  if (rc == 0)
    rc = check_filter_op(op, q, err);
  return rc != 0 ? rc : check_filter_value(q, err);
}

static int check_sort(const char *order, query_t *q, usc_state_err_t *err) {
  q->descending = strcmp(order, "descending") == 0;
  if (order[0] == '\0' || q->descending || strcmp(order, "ascending") == 0)
    return 0;
  return INVALID(err, "sortorder_invalid",
                 "sort_order '%.40s' is invalid: use ascending or descending",
                 order);
}

static uint32_t field_bit(const char *name) {
  for (size_t i = 0; i < USC_ARRAY_LEN(FIELDS); i++)
    if (strcmp(name, FIELDS[i].name) == 0)
      return FIELDS[i].bit;
  return 0;
}

static int check_fields(const usc_state_list_t *req, query_t *q,
                        usc_state_err_t *err) {
  q->mask = req->n_fields > 0 ? 0 : USC_STATE_FIELD_ALL;
  for (size_t i = 0; i < req->n_fields; i++) {
    uint32_t bit = field_bit(or_empty(req->fields[i]));
    if (bit == 0)
      return INVALID(err, "fields_invalid",
                     "field '%.40s' is not a PhoneCall field: use id, "
                     "extension, ownerId, ownerName, published, answered, "
                     "nonce, phoneCallView or links",
                     or_empty(req->fields[i]));
    q->mask |= bit;
  }
  return 0;
}

static int check_query(const usc_state_list_t *req, query_t *q,
                       usc_state_err_t *err) {
  int rc = check_paging(req, q, err);
  if (rc == 0)
    rc = check_filter(req, q, err);
  if (rc == 0)
    rc = check_sort(or_empty(req->sort_order), q, err);
  return rc != 0 ? rc : check_fields(req, q, err);
}

/* ---- list ---- */

typedef struct {
  const usc_state_call_t **calls;
  size_t n, total;
} gather_t;

static void gather(gather_t *g, const rec_t *r, const target_t *t,
                   const query_t *q) {
  if (!visible(r, t) || !passes(q, &r->call))
    return;
  if (g->total >= (size_t)q->start && g->n < (size_t)q->count)
    g->calls[g->n++] = &r->call;
  g->total++;
}

/* Reads the bucket of the user and extension only; without a filter its
 * count is the total, and only the page itself is read. */
static void gather_all(gather_t *g, const usc_state_t *s, const target_t *t,
                       const query_t *q) {
  const rec_t *r;
  if (t->id[0] != '\0') {
    if ((r = find(s, t->user, t->id)) != NULL)
      gather(g, r, t, q);
    return;
  }
  const index_bucket_t *b =
      index_find(&s->index, t->user, is_self(t->ext) ? NULL : t->ext);
  const index_member_t *m = index_first(b, q->descending);
  if (q->by != BY_NONE) {
    for (; m != NULL; m = index_next(m, q->descending))
      gather(g, m->owner, t, q);
    return;
  }
  g->total = index_count(b);
  for (size_t i = 0; m != NULL && g->n < (size_t)q->count;
       m = index_next(m, q->descending), i++)
    if (i >= (size_t)q->start)
      g->calls[g->n++] = &((const rec_t *)m->owner)->call;
}

int usc_state_list(usc_state_t *state, const usc_state_list_t *req, int64_t now,
                   usc_state_page_t *page, usc_state_err_t *err) {
  target_t t;
  query_t q = {0};
  gather_t g = {NULL, 0, 0};
  clear_err(err);
  usc_state_advance(state, now);
  int rc = check_address(state, &req->address, false, &t, err);
  if (rc == 0)
    rc = check_query(req, &q, err);
  if (rc != 0)
    return rc;
  size_t cap = t.id[0] != '\0' ? 1 : state->n_calls;
  if (cap > (size_t)q.count)
    cap = (size_t)q.count;
  if (cap > 0 && (g.calls = usc_malloc(cap * sizeof *g.calls)) == NULL)
    return NO_MEMORY(err, "listing calls");
  gather_all(&g, state, &t, &q);
  page->calls = g.calls;
  page->n_calls = g.n;
  page->total_results = (int32_t)g.total;
  page->items_per_page = q.count;
  page->start_index = q.start;
  page->field_mask = q.mask;
  return 0;
}

void usc_state_page_free(usc_state_page_t *page) {
  if (page == NULL)
    return;
  usc_free(page->calls);
  page->calls = NULL;
  page->n_calls = 0;
}

/* ---- actions: arguments and preconditions ---- */

static size_t transfer_leg(const rec_t *r, const char *number) {
  for (size_t i = 0; is_set(number) && i < r->call.n_views; i++)
    if (strcmp(r->legs[i].extension, number) == 0)
      return i;
  return 1;
}

/* Well-formedness comes before existence, as in front of UAPI, where it is
 * checked before anything is sent: the same request gets the same answer
 * from either backend. */
static int check_view_id(const usc_state_action_t *req, usc_state_err_t *err) {
  const char *vid = or_empty(req->phone_call_view_id);
  if (vid[0] == '\0' && (ACTIONS[req->kind].flags & TRANSFERS))
    return 0;
  if (vid[0] == '\0')
    return INVALID(err, VIEW_ID_CODE,
                   "phone_call_view_id is required for %s: give a leg such "
                   "as 00 or 01",
                   ACTIONS[req->kind].name);
  if (strlen(vid) != 2 || strspn(vid, DIGITS) != 2)
    return INVALID(err, VIEW_ID_CODE,
                   "phone call view id '%.40s' is invalid: use two digits "
                   "such as 00 or 01",
                   vid);
  return 0;
}

static int pick_leg(const rec_t *r, const usc_state_action_t *req, size_t *leg,
                    usc_state_err_t *err) {
  const char *vid = or_empty(req->phone_call_view_id);
  if (vid[0] == '\0') {
    *leg = transfer_leg(r, req->transfer_number);
    return 0;
  }
  for (size_t i = 0; i < r->call.n_views; i++)
    if (strcmp(r->legs[i].id, vid) == 0) {
      *leg = i;
      return 0;
    }
  return NOT_FOUND(err, VIEW_ID_CODE,
                   "phone call view '%s' not found in phone call '%s'", vid,
                   r->call.id);
}

static int check_target(const usc_state_action_t *req, usc_state_err_t *err) {
  const char *to = or_empty(req->send_call_to), *name = ACTIONS[req->kind].name;
  if (to[0] == '\0')
    return INVALID(err, "pc_sendcallto_invalid",
                   "send_call_to is required for %s: give the number that "
                   "takes the call",
                   name);
  if (!made_of(to, "0123456789*+", MAX_NUMBER_LEN))
    return INVALID(err, "pc_sendcallto_invalid",
                   "send_call_to '%.40s' is invalid: use 1 to 32 digits, '*' "
                   "or '+'",
                   to);
  return 0;
}

static int check_action_args(const usc_state_action_t *req,
                             usc_state_err_t *err) {
  const char *format = or_empty(req->format);
  if (ACTIONS[req->kind].flags & NEEDS_TARGET)
    return check_target(req, err);
  if (req->kind == USC_STATE_START_RECORDING && format[0] != '\0' &&
      strcmp(format, "wav") != 0 && strcmp(format, "wav49") != 0)
    return INVALID(err, "pc_format_invalid",
                   "format '%.40s' is invalid: use wav or wav49", format);
  if (req->kind == USC_STATE_PARK && req->has_max_in_parking &&
      (req->max_in_parking < PARK_MIN_S || req->max_in_parking > PARK_MAX_S))
    return INVALID(err, "pc_maxinparking_invalid",
                   "max_in_parking %ld is out of range: use %d to %d seconds",
                   (long)req->max_in_parking, PARK_MIN_S, PARK_MAX_S);
  return 0;
}

static int leg_refused(const rec_t *r, size_t i, const char *why,
                       usc_state_action_kind_t kind, usc_state_err_t *err) {
  return BAD_STATE(err, "leg '%s' of phone call '%s' %s, so %s cannot apply",
                   r->legs[i].id, r->call.id, why, ACTIONS[kind].name);
}

static int check_join(const rec_t *r, usc_state_action_kind_t kind,
                      usc_state_err_t *err) {
  if (r->call.answered == 0)
    return BAD_STATE(err,
                     "phone call '%s' is not answered yet: retry %s once it "
                     "is",
                     r->call.id, ACTIONS[kind].name);
  if (r->call.n_views >= USC_STATE_MAX_VIEWS)
    return BAD_STATE(err,
                     "phone call '%s' already has %d legs, so %s cannot add "
                     "one",
                     r->call.id, USC_STATE_MAX_VIEWS, ACTIONS[kind].name);
  return 0;
}

static int check_leg_state(const rec_t *r, size_t i,
                           usc_state_action_kind_t kind, usc_state_err_t *err) {
  const usc_state_view_t *v = &r->legs[i];
  switch (kind) {
  case USC_STATE_ON_HOLD:
    return v->on_hold ? leg_refused(r, i, "is already on hold", kind, err) : 0;
  case USC_STATE_OFF_HOLD:
    return v->on_hold ? 0 : leg_refused(r, i, "is not on hold", kind, err);
  case USC_STATE_START_RECORDING:
    return v->recording ? leg_refused(r, i, "is already recording", kind, err)
                        : 0;
  case USC_STATE_STOP_RECORDING:
    return v->recording ? 0 : leg_refused(r, i, "is not recording", kind, err);
  case USC_STATE_PARK:
    return v->parked ? leg_refused(r, i, "is already parked", kind, err) : 0;
  case USC_STATE_UNPARK:
    return v->parked ? 0 : leg_refused(r, i, "is not parked", kind, err);
  default:
    return (ACTIONS[kind].flags & JOINS) ? check_join(r, kind, err) : 0;
  }
}

/* ---- actions: effects ---- */

static void swap_ext(rec_t *r, size_t i, char *ext, prior_t *prior) {
  prior->ext = r->legs[i].extension;
  prior->owned = (r->owned[i] & OWN_EXT) != 0;
  r->legs[i].extension = ext;
  r->owned[i] |= OWN_EXT;
}

static size_t count_parked(const usc_state_t *s, const char *user) {
  size_t n = 0;
  for (const rec_t *r = s->parked; r != NULL; r = r->park_next)
    if (strcmp(r->call.user, user) == 0)
      n += r->n_parked;
  return n;
}

/* A leg parked upstream may come without a position (0) or with any
 * number: only 1..n can hide a free position. */
static void mark_taken(const rec_t *r, bool *taken, size_t n) {
  for (size_t i = 0; i < r->call.n_views; i++) {
    int pos = r->legs[i].parked_pos;
    if (r->legs[i].parked != 0 && pos >= 1 && (size_t)pos <= n)
      taken[pos - 1] = true;
  }
}

/* The lowest position no parked leg of `user` holds. With n parked legs
 * it is at most n + 1. */
static int free_park_pos(const usc_state_t *s, const char *user, int *pos) {
  size_t n = count_parked(s, user), p = 0;
  bool *taken = usc_calloc(n + 1, sizeof *taken);
  if (taken == NULL)
    return USC_ERR_NOMEM;
  for (const rec_t *r = s->parked; r != NULL; r = r->park_next)
    if (strcmp(r->call.user, user) == 0)
      mark_taken(r, taken, n + 1);
  while (taken[p])
    p++;
  usc_free(taken);
  *pos = (int)p + 1;
  return 0;
}

static int park(usc_state_t *s, rec_t *r, size_t i,
                const usc_state_action_t *req, int64_t now,
                usc_state_err_t *err) {
  const char *by = req->address.extension;
  char *copy = usc_strdup(is_self(by) ? r->legs[i].extension : by);
  int pos;
  if (copy == NULL || free_park_pos(s, r->call.user, &pos) != 0) {
    usc_free(copy);
    return NO_MEMORY(err, "parking a call");
  }
  r->legs[i].parked = now;
  r->legs[i].parked_pos = pos;
  r->legs[i].parked_by = copy;
  r->owned[i] |= OWN_PARKED;
  r->park_secs[i] = (uint16_t)(req->has_max_in_parking ? req->max_in_parking
                                                       : PARK_DEFAULT_S);
  if (r->n_parked++ == 0)
    park_link(s, r);
  return 0;
}

static int unpark(usc_state_t *s, rec_t *r, size_t i, const char *to,
                  prior_t *prior, usc_state_err_t *err) {
  char *ext = usc_strdup(to);
  if (ext == NULL)
    return NO_MEMORY(err, "unparking a call");
  clear_park(s, r, i);
  swap_ext(r, i, ext, prior);
  return 0;
}

static bool any_ringing(const rec_t *r) {
  for (size_t i = 0; i < r->call.n_views; i++)
    if (r->legs[i].ringing != 0)
      return true;
  return false;
}

static int pick_up(rec_t *r, size_t i, const char *to, int64_t now,
                   prior_t *prior, usc_state_err_t *err) {
  usc_state_view_t *v = &r->legs[i];
  char *ext = usc_strdup(to);
  if (ext == NULL)
    return NO_MEMORY(err, "picking up a call");
  swap_ext(r, i, ext, prior);
  v->status = ST_ON_CALL;
  v->ringing = 0;
  if (v->answered == 0)
    v->answered = now;
  if (r->call.answered == 0)
    r->call.answered = now;
  if (!any_ringing(r))
    r->ring_at = 0;
  return 0;
}

/* The strings of a leg that joins a call. */
typedef struct {
  char *ext, *caller;
  const char **src, **dst;
} join_text_t;

static void join_text_free(join_text_t *jt) {
  usc_free(jt->ext);
  usc_free(jt->caller);
  usc_free(jt->src);
  usc_free(jt->dst);
}

/* On failure the caller frees what was made with join_text_free. */
static bool join_text_new(join_text_t *jt, const char *to, const char *peer,
                          const char *caller) {
  jt->ext = usc_strdup(to);
  jt->src = list1(to);
  jt->dst = list1(peer);
  jt->caller = is_set(caller) ? usc_strdup(caller) : NULL;
  return jt->ext != NULL && jt->src != NULL && jt->dst != NULL &&
         (jt->caller != NULL || !is_set(caller));
}

static void fill_joined(usc_state_view_t *v, const join_text_t *jt,
                        int64_t now) {
  v->extension = jt->ext;
  v->source = jt->src;
  v->n_source = 1;
  v->destination = jt->dst;
  v->n_destination = 1;
  v->flow = FLOW_LOCAL;
  v->status = ST_ON_CALL;
  v->caller_id = jt->caller;
  v->answered = now;
}

static bool leg_number_used(const rec_t *r, size_t number) {
  for (size_t i = 0; i < r->call.n_views; i++)
    if (r->legs[i].id[0] == (char)('0' + number / 10) &&
        r->legs[i].id[1] == (char)('0' + number % 10))
      return true;
  return false;
}

/* The number of a new leg: 2, 3, ... after the legs a call was created
 * with, passing over any a mirrored call's legs already use. */
static size_t free_leg_number(const rec_t *r) {
  size_t number = r->call.n_views;
  while (leg_number_used(r, number))
    number++;
  return number;
}

static int join(rec_t *r, size_t i, const usc_state_action_t *req, int64_t now,
                usc_state_err_t *err) {
  size_t n = r->call.n_views, number = free_leg_number(r);
  join_text_t jt;
  usc_state_view_t *legs = NULL;
  if (!join_text_new(&jt, req->send_call_to, r->legs[i].extension,
                     req->caller_id) ||
      (legs = usc_realloc(r->legs, (n + 1) * sizeof *legs)) == NULL) {
    join_text_free(&jt);
    return NO_MEMORY(err, "adding a leg to a call");
  }
  r->legs = legs;
  r->call.views = legs;
  init_leg(&legs[n], number);
  fill_joined(&legs[n], &jt, now);
  r->owned[n] = OWN_EXT | OWN_SRC | OWN_DST | (jt.caller ? OWN_CALLER : 0);
  r->call.n_views = n + 1;
  return 0;
}

static int transfer(rec_t *r, size_t i, const char *to, prior_t *prior,
                    usc_state_err_t *err) {
  usc_state_view_t *v = &r->legs[i];
  char *ext = usc_strdup(to);
  const char **dst = list1(to);
  if (ext == NULL || dst == NULL) {
    usc_free(ext);
    usc_free(dst);
    return NO_MEMORY(err, "transferring a call");
  }
  if (r->owned[i] & OWN_DST)
    usc_free((void *)v->destination);
  v->destination = dst;
  v->n_destination = 1;
  r->owned[i] |= OWN_DST;
  swap_ext(r, i, ext, prior);
  v->on_hold = 0;
  v->holder = 0;
  return 0;
}

static int apply_action(usc_state_t *s, rec_t *r, size_t i,
                        const usc_state_action_t *req, int64_t now,
                        prior_t *prior, usc_state_err_t *err) {
  usc_state_view_t *v = &r->legs[i];
  switch (req->kind) {
  case USC_STATE_ON_HOLD:
  case USC_STATE_OFF_HOLD:
    v->on_hold = req->kind == USC_STATE_ON_HOLD ? now : 0;
    v->holder = req->kind == USC_STATE_ON_HOLD;
    return 0;
  case USC_STATE_START_RECORDING:
  case USC_STATE_STOP_RECORDING:
    v->recording = req->kind == USC_STATE_START_RECORDING ? now : 0;
    return 0;
  case USC_STATE_PARK:
    return park(s, r, i, req, now, err);
  case USC_STATE_UNPARK:
    return unpark(s, r, i, req->send_call_to, prior, err);
  case USC_STATE_PICK_UP:
    return pick_up(r, i, req->send_call_to, now, prior, err);
  case USC_STATE_TRANSFER:
  case USC_STATE_TRANSFER_TO_VOICEMAIL:
    return transfer(r, i, req->send_call_to, prior, err);
  default:
    return join(r, i, req, now, err);
  }
}

/* A leg may take send_call_to as its extension: its bucket is made ready
 * first, and the call's memberships follow whatever the action did. */
static int act_indexed(usc_state_t *s, rec_t *r, size_t i,
                       const usc_state_action_t *req, int64_t now,
                       prior_t *prior, usc_state_err_t *err) {
  if (!is_set(req->send_call_to))
    return apply_action(s, r, i, req, now, prior, err);
  index_reservation_t res;
  if (index_reserve(&s->index, r->call.user, req->send_call_to, &res) != 0)
    return NO_MEMORY(err, "indexing a call");
  int rc = apply_action(s, r, i, req, now, prior, err);
  const char *exts[1 + USC_STATE_MAX_VIEWS];
  size_t n = call_exts(r, exts);
  index_sync(&s->index, &r->index, r->call.user, exts, n, &res);
  return rc;
}

int usc_state_act(usc_state_t *state, const usc_state_action_t *req,
                  int64_t now, const usc_state_call_t **call,
                  usc_state_err_t *err) {
  target_t t;
  rec_t *r = NULL;
  size_t leg = 0;
  prior_t prior = {NULL, false};
  clear_err(err);
  if ((size_t)req->kind >= USC_ARRAY_LEN(ACTIONS))
    return INVALID(err, NULL, "action %d is not a PhoneCall action",
                   (int)req->kind);
  usc_state_advance(state, now);
  int rc = check_address(state, &req->address, true, &t, err);
  if (rc == 0)
    rc = check_view_id(req, err);
  if (rc == 0)
    rc = find_visible(state, &t, &r, err);
  if (rc == 0)
    rc = pick_leg(r, req, &leg, err);
  if (rc == 0)
    rc = check_action_args(req, err);
  if (rc == 0)
    rc = check_leg_state(r, leg, req->kind, err);
  if (rc == 0)
    rc = act_indexed(state, r, leg, req, now, &prior, err);
  if (rc != 0)
    return rc;
  heap_update(state, r);
  emit(state, USC_STATE_EVENT_UPDATED, r, now, prior.ext);
  if (prior.owned)
    usc_free((void *)prior.ext);
  *call = &r->call;
  return 0;
}

/* ---- hangup ---- */

static bool hangs_up(const rec_t *r, const target_t *t, const char *number) {
  return visible(r, t) &&
         (number[0] == '\0' || call_has_number(&r->call, number));
}

/* Counts the calls to hang up and adds the bytes of their ids to *bytes
 * or, given `ids`, ends them and records their ids, copied at `text`. */
static size_t sweep(usc_state_t *s, const target_t *t, rec_t *only,
                    const char *number, char **ids, char *text, size_t *bytes,
                    int64_t now) {
  size_t n = 0;
  rec_t *next;
  for (rec_t *r = only != NULL ? only : s->head; r != NULL; r = next) {
    next = only != NULL ? NULL : r->next;
    if (!hangs_up(r, t, number))
      continue;
    size_t size = strlen(r->call.id) + 1;
    if (ids != NULL) {
      ids[n] = memcpy(text, r->call.id, size);
      text += size;
      end_call(s, r, now);
    }
    *bytes += size;
    n++;
  }
  return n;
}

int usc_state_hangup(usc_state_t *state, const usc_state_hangup_t *req,
                     int64_t now, char ***ids, size_t *n_ids,
                     usc_state_err_t *err) {
  target_t t;
  rec_t *only = NULL;
  char **list = NULL;
  clear_err(err);
  usc_state_advance(state, now);
  int rc = check_address(state, &req->address, false, &t, err);
  if (rc == 0 && t.id[0] != '\0')
    rc = find_visible(state, &t, &only, err);
  if (rc != 0)
    return rc;
  const char *number = or_empty(req->phone_number);
  size_t bytes = 0, n = sweep(state, &t, only, number, NULL, NULL, &bytes, 0);
  /* One allocation: the pointers, then the ids they point to. */
  if (n > 0 && (list = usc_malloc(n * sizeof *list + bytes)) == NULL)
    return NO_MEMORY(err, "hanging up calls");
  if (n > 0)
    sweep(state, &t, only, number, list, (char *)(list + n), &bytes, now);
  *ids = list;
  *n_ids = n;
  return 0;
}

void usc_state_ids_free(char **ids, size_t n_ids) {
  (void)n_ids; /* the ids live in the same allocation as the array */
  usc_free(ids);
}

/* ---- mirroring ---- */

/* Strings the engine always sets (extensions, owner, numbers) are "" when
 * a snapshot has none; the optional ones (nonce, caller_id, parked_by)
 * are NULL when unset or "". So NULL and "" are the same content. */
static bool same_str(const char *a, const char *b) {
  return strcmp(or_empty(a), or_empty(b)) == 0;
}

static bool same_numbers(const char *const *a, size_t n_a, const char *const *b,
                         size_t n_b) {
  if (n_a != n_b)
    return false;
  for (size_t i = 0; i < n_a; i++)
    if (!same_str(a[i], b[i]))
      return false;
  return true;
}

static bool same_view(const usc_state_view_t *a, const usc_state_view_t *b) {
  return strcmp(a->id, b->id) == 0 && same_str(a->extension, b->extension) &&
         same_numbers(a->source, a->n_source, b->source, b->n_source) &&
         same_numbers(a->destination, a->n_destination, b->destination,
                      b->n_destination) &&
         a->flow == b->flow && a->status == b->status &&
         a->ringing == b->ringing && same_str(a->caller_id, b->caller_id) &&
         a->recording == b->recording && a->answered == b->answered &&
         a->parked == b->parked && a->parked_pos == b->parked_pos &&
         same_str(a->parked_by, b->parked_by) && a->on_hold == b->on_hold &&
         a->holder == b->holder && a->disposition == b->disposition;
}

/* Whether the engine's call already has the snapshot's content (with
 * `published` for the snapshot's). */
static bool same_call(const usc_state_call_t *a, const usc_state_call_t *b,
                      int64_t published) {
  if (!same_str(a->extension, b->extension) ||
      !same_str(a->owner_id, b->owner_id) ||
      !same_str(a->owner_name, b->owner_name) || a->published != published ||
      a->answered != b->answered || !same_str(a->nonce, b->nonce) ||
      a->n_views != b->n_views)
    return false;
  for (size_t i = 0; i < a->n_views; i++)
    if (!same_view(&a->views[i], &b->views[i]))
      return false;
  return true;
}

static int check_mirrored_numbers(const char *call, const usc_state_view_t *v,
                                  bool src, usc_state_err_t *err) {
  const char *const *list = src ? v->source : v->destination;
  size_t n = src ? v->n_source : v->n_destination;
  const char *what = src ? "source" : "destination";
  const char *code = src ? "pc_source_invalid" : "pc_destination_invalid";
  if (n > USC_STATE_MAX_NUMBERS)
    return INVALID(err, code,
                   "leg '%s' of phone call '%s' has %zu %s numbers: the "
                   "engine holds at most %d",
                   v->id, call, n, what, USC_STATE_MAX_NUMBERS);
  for (size_t i = 0; i < n; i++)
    if (list == NULL || list[i] == NULL)
      return INVALID(err, code,
                     "leg '%s' of phone call '%s' lacks %s number %zu: give "
                     "every number as a string",
                     v->id, call, what, i + 1);
  return 0;
}

static int check_mirrored_view(const usc_state_call_t *c, size_t i,
                               usc_state_err_t *err) {
  const usc_state_view_t *v = &c->views[i];
  if (v->id[2] != '\0' || strspn(v->id, DIGITS) != 2)
    return INVALID(err, VIEW_ID_CODE,
                   "leg %zu of phone call '%s' has an invalid id: use two "
                   "digits such as 00 or 01",
                   i + 1, c->id);
  for (size_t j = 0; j < i; j++)
    if (strcmp(c->views[j].id, v->id) == 0)
      return INVALID(err, VIEW_ID_CODE,
                     "phone call '%s' has two legs '%s': give each leg its "
                     "own id",
                     c->id, v->id);
  int rc = check_mirrored_numbers(c->id, v, true, err);
  return rc != 0 ? rc : check_mirrored_numbers(c->id, v, false, err);
}

static int check_snapshot(const usc_state_call_t *c, usc_state_err_t *err) {
  const char *id = or_empty(c->id);
  if (!made_of(id, ALNUM, USC_STATE_MAX_ID_LEN))
    return INVALID(err, CALL_ID_CODE,
                   "phone call id '%.40s' is invalid: use 1 to 64 letters "
                   "and digits",
                   id);
  if (c->n_views > USC_STATE_MAX_VIEWS || (c->n_views > 0 && c->views == NULL))
    return INVALID(err, VIEW_ID_CODE,
                   "phone call '%s' has %zu legs: the engine holds at most %d",
                   id, c->n_views, USC_STATE_MAX_VIEWS);
  for (size_t i = 0; i < c->n_views; i++) {
    int rc = check_mirrored_view(c, i, err);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static size_t count_numbers(const usc_state_call_t *c) {
  size_t n = 0;
  for (size_t i = 0; i < c->n_views; i++)
    n += c->views[i].n_source + c->views[i].n_destination;
  return n;
}

/* The block of a mirrored call: the record, every leg's numbers, then the
 * text. */
static size_t snapshot_size(const usc_state_call_t *c, const char *user) {
  size_t n = sizeof(rec_t) + count_numbers(c) * sizeof(const char *);
  n += text_size(c->id) + text_size(user) + text_size(c->extension) +
       text_size(c->owner_id) + text_size(c->owner_name) + text_size(c->nonce);
  for (size_t i = 0; i < c->n_views; i++) {
    const usc_state_view_t *v = &c->views[i];
    n += text_size(v->extension) + text_size(v->caller_id) +
         text_size(v->parked_by);
    for (size_t j = 0; j < v->n_source; j++)
      n += text_size(v->source[j]);
    for (size_t j = 0; j < v->n_destination; j++)
      n += text_size(v->destination[j]);
  }
  return n;
}

/* As put, but "" for an unset string. */
static const char *put_text(char **cur, const char *s) {
  const char *copy = put(cur, s);
  return copy != NULL ? copy : "";
}

static const char **put_numbers(const char ***ptrs, char **cur,
                                const char *const *list, size_t n) {
  const char **out = *ptrs;
  for (size_t i = 0; i < n; i++)
    out[i] = put_text(cur, list[i]);
  *ptrs += n;
  return out;
}

static void fill_mirrored_leg(rec_t *r, size_t i, const usc_state_view_t *src,
                              const char ***ptrs, char **cur) {
  usc_state_view_t *v = &r->legs[i];
  *v = *src;
  v->extension = put_text(cur, src->extension);
  v->source = put_numbers(ptrs, cur, src->source, src->n_source);
  v->destination = put_numbers(ptrs, cur, src->destination, src->n_destination);
  v->caller_id = put(cur, src->caller_id);
  v->parked_by = put(cur, src->parked_by);
  if (v->parked != 0)
    r->n_parked++;
}

static void fill_mirrored(rec_t *r, const usc_state_call_t *c, const char *user,
                          int64_t published) {
  const char **ptrs = r->strs;
  char *cur = (char *)&r->strs[count_numbers(c)];
  r->call.id = put(&cur, c->id);
  r->call.user = put(&cur, user);
  r->call.extension = put_text(&cur, c->extension);
  r->call.owner_id = put_text(&cur, c->owner_id);
  r->call.owner_name = put_text(&cur, c->owner_name);
  r->call.nonce = put(&cur, c->nonce);
  r->call.published = published;
  r->call.answered = c->answered;
  for (size_t i = 0; i < c->n_views; i++)
    fill_mirrored_leg(r, i, &c->views[i], &ptrs, &cur);
}

static int new_mirrored(const usc_state_call_t *c, const char *user,
                        int64_t published, rec_t **out) {
  rec_t *r = usc_calloc(1, snapshot_size(c, user));
  usc_state_view_t *legs =
      usc_calloc(c->n_views > 0 ? c->n_views : 1, sizeof *legs);
  if (r == NULL || legs == NULL) {
    usc_free(r);
    usc_free(legs);
    return USC_ERR_NOMEM;
  }
  r->legs = legs;
  r->call.views = legs;
  r->call.n_views = c->n_views;
  fill_mirrored(r, c, user, published);
  *out = r;
  return 0;
}

static void list_replace(usc_state_t *s, const rec_t *old, rec_t *r) {
  r->prev = old->prev;
  r->next = old->next;
  if (r->prev != NULL)
    r->prev->next = r;
  else
    s->head = r;
  if (r->next != NULL)
    r->next->prev = r;
  else
    s->tail = r;
}

/* Puts `r` in the place of `old`, which it replaces, and frees `old`.
 * Watchers of either hear of it. */
static void replace_call(usc_state_t *s, rec_t *old, rec_t *r, int64_t now) {
  index_remove(&s->index, &old->index);
  table_remove(s, old);
  table_put(s, r);
  if (r->call.published == old->call.published) {
    list_replace(s, old, r);
  } else {
    list_unlink(s, old);
    list_insert(s, r);
  }
  usc_heap_remove(&s->heap, &old->due);
  if (old->n_parked > 0)
    park_unlink(s, old);
  if (r->n_parked > 0)
    park_link(s, r);
  s->changes++;
  usc_state_watch_t *next;
  for (usc_state_watch_t *w = s->watchers; w != NULL; w = next) {
    next = w->next;
    if (watch_sees(w, r, NULL) || watch_sees(w, old, NULL))
      w->fn(w->user, USC_STATE_EVENT_UPDATED, &r->call, now);
  }
  free_call(old);
}

/* A mirrored call has no deadline (the upstream owns them), so it never
 * enters the heap. */
int usc_state_put(usc_state_t *state, const usc_state_address_t *owner,
                  const usc_state_call_t *snapshot, int64_t now,
                  usc_state_err_t *err) {
  const char *user;
  rec_t *r = NULL;
  clear_err(err);
  usc_state_advance(state, now);
  int rc = check_user(state, owner, &user, err);
  if (rc == 0)
    rc = check_snapshot(snapshot, err);
  if (rc != 0)
    return rc;
  rec_t *old = find(state, user, snapshot->id);
  int64_t published = snapshot->published != 0 ? snapshot->published
                      : old != NULL            ? old->call.published
                                               : now;
  if (old != NULL && same_call(&old->call, snapshot, published))
    return 0;
  if (old == NULL && (rc = make_room(state, err)) != 0)
    return rc;
  if (new_mirrored(snapshot, user, published, &r) != 0)
    return NO_MEMORY(err, "mirroring a call");
  r->seq = old != NULL ? old->seq : state->next_seq;
  r->due.tie = r->seq;
  if (index_call(state, r) != 0) {
    free_call(r);
    return NO_MEMORY(err, "mirroring a call");
  }
  if (old != NULL) {
    replace_call(state, old, r, now);
    return 0;
  }
  state->next_seq++;
  table_put(state, r);
  list_insert(state, r);
  if (r->n_parked > 0)
    park_link(state, r);
  state->n_calls++;
  emit(state, USC_STATE_EVENT_CREATED, r, now, NULL);
  return 0;
}

int usc_state_remove(usc_state_t *state, const usc_state_address_t *owner,
                     const char *id, int64_t now) {
  const char *user;
  usc_state_err_t err;
  rec_t *r = NULL;
  usc_state_advance(state, now);
  if (id != NULL && check_user(state, owner, &user, &err) == 0)
    r = find(state, user, id);
  if (r == NULL)
    return USC_ERR_NOT_FOUND;
  end_call(state, r, now);
  return 0;
}

int usc_state_retain(usc_state_t *state,
                     const usc_state_address_t *owner_and_extension,
                     const char *const *ids, size_t n_ids, int64_t now) {
  const usc_state_address_t *a = owner_and_extension;
  const char *user, *ext = or_empty(a->extension);
  usc_state_err_t err;
  usc_state_advance(state, now);
  if (check_user(state, a, &user, &err) != 0 ||
      (ext[0] != '\0' && check_ext(ext, true, &err) != 0))
    return USC_ERR_INVALID;
  for (size_t i = 0; i < n_ids; i++) {
    rec_t *r = ids[i] != NULL ? find(state, user, ids[i]) : NULL;
    if (r != NULL)
      r->kept = true;
  }
  int n = 0;
  rec_t *next;
  for (rec_t *r = state->head; r != NULL; r = next) {
    next = r->next;
    if (r->kept)
      r->kept = false;
    else if (strcmp(r->call.user, user) == 0 &&
             (ext[0] == '\0' || call_matches_ext(&r->call, ext))) {
      end_call(state, r, now);
      n++;
    }
  }
  return n;
}

/* ---- watch ---- */

int usc_state_watch(usc_state_t *state, const usc_state_address_t *address,
                    usc_state_watch_fn fn, void *user, usc_state_watch_t **out,
                    usc_state_err_t *err) {
  const char *owner, *ext = or_empty(address->extension);
  clear_err(err);
  int rc = check_user(state, address, &owner, err);
  bool all = ext[0] == '\0' || is_self(ext);
  if (rc == 0 && !all)
    rc = check_ext(ext, true, err);
  if (rc != 0)
    return rc;
  size_t owner_size = strlen(owner) + 1;
  usc_state_watch_t *w =
      usc_malloc(sizeof *w + owner_size + (all ? 0 : strlen(ext) + 1));
  if (w == NULL)
    return NO_MEMORY(err, "starting a watch");
  memcpy(w->owner, owner, owner_size);
  w->ext = all ? NULL : strcpy(w->owner + owner_size, ext);
  w->fn = fn;
  w->user = user;
  w->prev = NULL;
  w->next = state->watchers;
  if (w->next != NULL)
    w->next->prev = w;
  state->watchers = w;
  *out = w;
  return 0;
}

void usc_state_unwatch(usc_state_t *state, usc_state_watch_t *watch) {
  if (watch == NULL)
    return;
  if (watch->prev != NULL)
    watch->prev->next = watch->next;
  else
    state->watchers = watch->next;
  if (watch->next != NULL)
    watch->next->prev = watch->prev;
  usc_free(watch);
}

/* ---- for the file format (codec.c, through internal.h) ---- */

uint64_t usc_state_changes(const usc_state_t *state) { return state->changes; }

const usc_state_call_t *state_first(const usc_state_t *s) {
  return s->head != NULL ? &s->head->call : NULL;
}

const usc_state_call_t *state_next(const usc_state_call_t *call) {
  const rec_t *r = USC_CONTAINER_OF(call, rec_t, call);
  return r->next != NULL ? &r->next->call : NULL;
}

void state_deadlines(const usc_state_call_t *call, state_deadlines_t *out) {
  const rec_t *r = USC_CONTAINER_OF(call, rec_t, call);
  memset(out, 0, sizeof *out);
  out->ring_at = r->ring_at;
  for (size_t i = 0; i < call->n_views; i++)
    out->park_secs[i] = r->park_secs[i];
}

/* The user of a call kept by the engine: a user id, or the caller's
 * identity, which the engine takes as it is (only never empty). */
static int check_owner(const char *user, usc_state_err_t *err) {
  if (is_set(user))
    return 0;
  return INVALID(err, USC_UAPI_USER_INVALID, "a call has no user");
}

/* A limit runs from the moment a leg was parked, as Park sets them. */
static int check_deadlines(const usc_state_call_t *c,
                           const state_deadlines_t *d, usc_state_err_t *err) {
  if (d->ring_at < 0)
    return INVALID(err, NULL, "phone call '%s' rings until a time before 1970",
                   c->id);
  for (size_t i = 0; i < c->n_views; i++) {
    unsigned secs = d->park_secs[i];
    int64_t parked = c->views[i].parked;
    if (secs == 0)
      continue;
    if (secs < PARK_MIN_S || secs > PARK_MAX_S)
      return INVALID(err, NULL,
                     "leg '%s' of phone call '%s' stays parked %u s: the "
                     "limit is %d to %d s",
                     c->views[i].id, c->id, secs, PARK_MIN_S, PARK_MAX_S);
    if (parked == 0 || parked > INT64_MAX - PARK_MAX_S * NS_PER_S)
      return INVALID(err, NULL,
                     "leg '%s' of phone call '%s' has a parking limit but "
                     "no time of parking",
                     c->views[i].id, c->id);
  }
  return 0;
}

int state_build(const usc_state_call_t *c, const state_deadlines_t *d,
                rec_t **out, usc_state_err_t *err) {
  rec_t *r = NULL;
  int rc = check_owner(c->user, err);
  if (rc == 0)
    rc = check_snapshot(c, err);
  if (rc == 0)
    rc = check_deadlines(c, d, err);
  if (rc != 0)
    return rc;
  if (new_mirrored(c, c->user, c->published, &r) != 0)
    return NO_MEMORY(err, "loading calls");
  r->ring_at = d->ring_at;
  for (size_t i = 0; i < c->n_views; i++)
    r->park_secs[i] = d->park_secs[i];
  *out = r;
  return 0;
}

void state_drop(rec_t *r) {
  if (r != NULL)
    free_call(r);
}

size_t state_room(const usc_state_t *s) { return s->max_calls - s->n_calls; }

/* Puts every call in the id table, or none: a call whose user and id are
 * already taken (by the engine or by an earlier one of `recs`) undoes the
 * others. */
static int adopt_ids(usc_state_t *s, rec_t **recs, size_t n,
                     usc_state_err_t *err) {
  for (size_t i = 0; i < n; i++) {
    const usc_state_call_t *c = &recs[i]->call;
    if (find(s, c->user, c->id) != NULL) {
      while (i > 0)
        table_remove(s, recs[--i]);
      return INVALID(err, CALL_ID_CODE,
                     "user '%.40s' has two calls with the id '%s'", c->user,
                     c->id);
    }
    table_put(s, recs[i]);
  }
  return 0;
}

/* Numbers the calls and puts them in their buckets, all or none. */
static int index_all(usc_state_t *s, rec_t **recs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    recs[i]->seq = s->next_seq + i;
    recs[i]->due.tie = recs[i]->seq;
    if (index_call(s, recs[i]) != 0) {
      while (i > 0)
        index_remove(&s->index, &recs[--i]->index);
      return USC_ERR_NOMEM;
    }
  }
  s->next_seq += n;
  return 0;
}

int state_adopt(usc_state_t *s, rec_t **recs, size_t n, usc_state_err_t *err) {
  if (n > state_room(s))
    return fail(err, USC_ERR_FULL, USC_GRPC_RESOURCE_EXHAUSTED, NULL,
                "%zu calls do not fit: the engine holds %zu of at most %zu "
                "(--max-calls)",
                n, s->n_calls, s->max_calls);
  if (usc_heap_reserve(&s->heap, s->n_calls + n) != 0 ||
      table_reserve(s, s->n_calls + n) != 0)
    return NO_MEMORY(err, "loading calls");
  int rc = adopt_ids(s, recs, n, err);
  if (rc != 0)
    return rc;
  if (index_all(s, recs, n) != 0) {
    for (size_t i = 0; i < n; i++)
      table_remove(s, recs[i]);
    return NO_MEMORY(err, "loading calls");
  }
  for (size_t i = 0; i < n; i++) {
    rec_t *r = recs[i];
    list_insert(s, r);
    heap_update(s, r);
    if (r->n_parked > 0)
      park_link(s, r);
  }
  s->n_calls += n;
  s->changes++;
  return 0;
}
