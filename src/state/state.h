/* state: the native call-state engine. Pure: no I/O, no clock of its own
 * (the caller passes the time), no global state. It holds the live calls
 * of every user, applies the UAPI PhoneCalls operations to them with the
 * semantics of api-contract.md §2 and §4, and tells watchers what changed.
 *
 * Addressing. Every operation names a user, an extension and (mostly) a
 * call id, validated with the UAPI grammar:
 *   user: "" / "@me" / "@viewer" / "@owner" (all: the caller's identity),
 *         or [A-Za-z0-9]{1,64};
 *   extension: [0-9*]{1,32} (with at least one digit) or "@self" (any);
 *   call id: [A-Za-z0-9]{1,64};  view id: [0-9]{2}.
 * A call belongs to the user it was created for; other users never see it
 * (NOT_FOUND). A call matches an extension when the extension is "@self",
 * the call's charged extension, or the extension of one of its views.
 *
 * Errors are reported in a usc_state_err_t: the gRPC status, the UAPI code
 * and a sentence a person can act on.
 *
 * Lifetime. Pointers to calls returned by the engine stay valid until the
 * next call that changes the engine (any create, action, hangup, advance,
 * put, remove, retain, load, or free).
 *
 * Mirroring. For the translation backend's fallback, the calls the
 * upstream UAPI returns can be copied into the engine (usc_state_put) and
 * dropped when they end there (usc_state_remove, usc_state_retain).
 * Mirrored calls are ordinary calls afterwards: every operation works on
 * them natively. A call is known by its user and id, so two users may
 * each hold a call with the same id. */
#ifndef USC_STATE_H
#define USC_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/grpc/grpc.h"

#define USC_STATE_CALL_ID_LEN 20 /* the ids the engine makes: lowercase hex */
#define USC_STATE_MAX_VIEWS 8
#define USC_STATE_MAX_NUMBERS 8 /* entries in a source or destination */
#define USC_STATE_MAX_ID_LEN 64

/* UAPI codes used by the engine. */
#define USC_UAPI_CALL_INVALID "pc_phoncall_invalid"
#define USC_UAPI_VIEW_INVALID "pc_phoncallview_invalid"
#define USC_UAPI_STATE_INVALID "pc_phonecall_state_invalid"
#define USC_UAPI_USER_INVALID "user_invalid"
#define USC_UAPI_EXTENSION_INVALID "extension_invalid"

typedef struct {
  usc_grpc_status_t status; /* USC_GRPC_OK when there is no error */
  const char *uapi_code;    /* static string or NULL */
  char message[192];
} usc_state_err_t;

/* Timestamps are nanoseconds since the Unix epoch; 0 means "not set". */
typedef struct {
  char id[3]; /* "00", "01", ... */
  const char *extension;
  const char *const *source;
  size_t n_source;
  const char *const *destination;
  size_t n_destination;
  int flow;   /* UAPI number: 2 local, 4 outgoing public, 8 incoming */
  int status; /* UAPI number 0..5 */
  int64_t ringing;
  const char *caller_id; /* NULL when unset */
  int64_t recording;
  int64_t answered;
  int64_t parked;
  int parked_pos;        /* 0 when not parked */
  const char *parked_by; /* NULL when not parked */
  int64_t on_hold;
  int holder;      /* 1 while this peer holds the call, else 0 (unset) */
  int disposition; /* -1 when unset, else UAPI 0..5 */
} usc_state_view_t;

typedef struct {
  const char *id;   /* [A-Za-z0-9]{1,USC_STATE_MAX_ID_LEN}; engine-owned */
  const char *user; /* owner user id */
  const char *extension;
  const char *owner_id;
  const char *owner_name;
  int64_t published;
  int64_t answered;
  const char *nonce;             /* NULL when unset */
  const usc_state_view_t *views; /* n_views legs, "00" first; engine-owned */
  size_t n_views;                /* at most USC_STATE_MAX_VIEWS */
} usc_state_call_t;

typedef enum {
  USC_STATE_EVENT_CREATED = 1,
  USC_STATE_EVENT_UPDATED = 2,
  USC_STATE_EVENT_ENDED = 3,
} usc_state_event_type_t;

typedef struct {
  size_t max_calls;         /* RESOURCE_EXHAUSTED past it; 0 = 100000 */
  int64_t ring_ns;          /* ringing delay before answer; 0 = at once */
  uint64_t seed;            /* for call ids */
  const char *default_user; /* identity of "@me" when none is given; "1" */
  const char *owner_name;   /* "Default Organization" when NULL */
} usc_state_config_t;

typedef struct usc_state usc_state_t;

/* Every operation below returns 0 on success, or a negative USC_ERR_*
 * with *err filled (an allocation failure is RESOURCE_EXHAUSTED). Outputs
 * are written only on success. */

/* Creates an engine. Returns 0 or USC_ERR_NOMEM; *out written on success.
 * The config's strings are copied. */
int usc_state_new(const usc_state_config_t *config, usc_state_t **out);
void usc_state_free(usc_state_t *state); /* accepts NULL */

size_t usc_state_call_count(const usc_state_t *state);

/* Who is asking: `identity` is the authenticated user, or NULL for the
 * engine's default user. "@me", "@viewer", "@owner" and "" resolve to it. */
typedef struct {
  const char *identity;
  const char *user_id;
  const char *extension;
  const char *phone_call_id;
} usc_state_address_t;

typedef enum {
  USC_STATE_CREATE_SIMPLE,
  USC_STATE_CREATE_CALLBACK,
  USC_STATE_CREATE_CONFERENCE_INVITE,
} usc_state_create_kind_t;

typedef struct {
  usc_state_create_kind_t kind;
  usc_state_address_t address; /* phone_call_id unused; extension required,
                                  not "@self" */
  const char *const *source;   /* at least one */
  size_t n_source;
  const char *const *destination; /* at least one */
  size_t n_destination;
  const char *caller_id;          /* NULL or "" = unset */
  const char *caller_destination; /* NULL or "" = unset */
  const char *nonce;              /* NULL or "" = unset */
} usc_state_create_t;

/* Creates one call. On success *call points to it (see Lifetime). */
int usc_state_create(usc_state_t *state, const usc_state_create_t *req,
                     int64_t now, const usc_state_call_t **call,
                     usc_state_err_t *err);

/* The call named by the address (phone_call_id required). */
int usc_state_get(usc_state_t *state, const usc_state_address_t *address,
                  int64_t now, const usc_state_call_t **call,
                  usc_state_err_t *err);

typedef struct {
  usc_state_address_t address; /* phone_call_id optional */
  bool has_count;
  int32_t count; /* 1..5000, default 20 */
  bool has_start_index;
  int32_t start_index;       /* 0..5000, default 0 */
  const char *filter_by;     /* NULL/"" or "id", "published" */
  const char *filter_op;     /* equals greaterThan lessThan present
                                startsWith contains inArray */
  const char *filter_value;  /* inArray: comma-separated */
  const char *sort_order;    /* NULL/"", "ascending", "descending" */
  const char *const *fields; /* UAPI PhoneCall field names; none = all */
  size_t n_fields;
} usc_state_list_t;

/* Bits of usc_state_page_t.field_mask, one per UAPI PhoneCall field. */
enum {
  USC_STATE_FIELD_ID = 1 << 0,
  USC_STATE_FIELD_EXTENSION = 1 << 1,
  USC_STATE_FIELD_OWNER_ID = 1 << 2,
  USC_STATE_FIELD_OWNER_NAME = 1 << 3,
  USC_STATE_FIELD_PUBLISHED = 1 << 4,
  USC_STATE_FIELD_ANSWERED = 1 << 5,
  USC_STATE_FIELD_NONCE = 1 << 6,
  USC_STATE_FIELD_PHONE_CALL_VIEW = 1 << 7,
  USC_STATE_FIELD_LINKS = 1 << 8,
  USC_STATE_FIELD_ALL = (1 << 9) - 1,
};

typedef struct {
  const usc_state_call_t **calls; /* owned by the result */
  size_t n_calls;
  int32_t total_results;
  int32_t items_per_page;
  int32_t start_index;
  uint32_t field_mask; /* the fields asked for; USC_STATE_FIELD_ALL */
} usc_state_page_t;

/* Lists the calls of a user and extension ordered by published, then by
 * creation; one page of them. Free the page with usc_state_page_free. A
 * phone_call_id naming no call gives an empty page, as UAPI's collection
 * does. */
int usc_state_list(usc_state_t *state, const usc_state_list_t *req, int64_t now,
                   usc_state_page_t *page, usc_state_err_t *err);
void usc_state_page_free(usc_state_page_t *page);

typedef enum {
  USC_STATE_ON_HOLD,
  USC_STATE_OFF_HOLD,
  USC_STATE_START_RECORDING,
  USC_STATE_STOP_RECORDING,
  USC_STATE_PARK,
  USC_STATE_UNPARK,
  USC_STATE_PICK_UP,
  USC_STATE_BARGE_IN,
  USC_STATE_WHISPER,
  USC_STATE_MONITOR,
  USC_STATE_TRANSFER,
  USC_STATE_TRANSFER_TO_VOICEMAIL,
} usc_state_action_kind_t;

/* The UAPI action name ("OnHold", "UnPark", ...). Static string. */
const char *usc_state_action_name(usc_state_action_kind_t kind);

typedef struct {
  usc_state_action_kind_t kind;
  usc_state_address_t address;    /* phone_call_id required */
  const char *phone_call_view_id; /* required except for the transfers */
  const char *send_call_to;       /* required for UnPark, PickUp, BargeIn,
                                     Whisper, Monitor and both transfers */
  const char *caller_id;
  const char *format; /* StartRecording: NULL/"", "wav", "wav49" */
  const char *transfer_from_number;
  const char *transfer_number;
  bool has_max_in_parking;
  int32_t max_in_parking; /* seconds, 10..3600, default 180 */
  bool has_wait_for_pickup;
  int32_t wait_for_pickup;
  bool has_private;
  bool private_;
} usc_state_action_t;

/* Applies one PhoneCallAction. On success *call is the updated call. */
int usc_state_act(usc_state_t *state, const usc_state_action_t *req,
                  int64_t now, const usc_state_call_t **call,
                  usc_state_err_t *err);

typedef struct {
  usc_state_address_t address; /* phone_call_id optional */
  const char *phone_number;    /* NULL/"" = any */
} usc_state_hangup_t;

/* Hangs up the matching calls. On success *ids (owned by the caller, free
 * with usc_state_ids_free) holds the ids of the calls hung up, possibly
 * none. A phone_call_id naming no call is NOT_FOUND. */
int usc_state_hangup(usc_state_t *state, const usc_state_hangup_t *req,
                     int64_t now, char ***ids, size_t *n_ids,
                     usc_state_err_t *err);
void usc_state_ids_free(char **ids, size_t n_ids);

/* Applies what time brings: rings that turn into answers, parking that
 * runs out. Emits UPDATED events. Returns the time of the next such
 * change, or 0 when none is pending. */
int64_t usc_state_advance(usc_state_t *state, int64_t now);

/* Watchers. The callback runs synchronously inside the operation that
 * changed the call; `call` is valid only during the callback, and the
 * callback must not call back into the engine. */
typedef void (*usc_state_watch_fn)(void *user, usc_state_event_type_t type,
                                   const usc_state_call_t *call, int64_t time);

typedef struct usc_state_watch usc_state_watch_t;

/* Subscribes to the calls of `address.user_id` (resolved like every
 * address) and of `address.extension` (NULL, "" or "@self": all).
 * Returns 0, USC_ERR_NOMEM, or an INVALID_ARGUMENT in *err. */
int usc_state_watch(usc_state_t *state, const usc_state_address_t *address,
                    usc_state_watch_fn fn, void *user, usc_state_watch_t **out,
                    usc_state_err_t *err);
void usc_state_unwatch(usc_state_t *state, usc_state_watch_t *watch);

/* ---- mirroring ---- */

/* Stores a copy of `snapshot` as a call of the user `owner` resolves to
 * (owner->identity and owner->user_id, as in every address; the
 * extension and phone_call_id are not used, nor snapshot->user).
 *
 * The call gets exactly the snapshot's content: id, extension, owner_id,
 * owner_name, published, answered, nonce and every view with all its
 * fields, strings copied into the engine. NULL and "" are the same
 * content: extension, owner_id, owner_name, a view's extension and the
 * numbers read "" when NULL; nonce, caller_id and parked_by read NULL
 * when "". A published of 0 means `now` for a new call and the current
 * value for a replacement. Nothing is derived: no ringing delay and no
 * parking limit run for it (the upstream owns them), so only actions,
 * hangups, puts, removes and retains change it.
 *
 * If the user has a call with that id it is replaced: UPDATED when the
 * content differs (to watchers of the call before or after), nothing at
 * all when it is the same. Else the call is added (CREATED), within
 * max_calls (RESOURCE_EXHAUSTED, USC_ERR_FULL).
 *
 * Validation (INVALID_ARGUMENT, USC_ERR_INVALID; nothing is truncated):
 * the user as in every address (user_invalid); the id
 * [A-Za-z0-9]{1,64} (pc_phoncall_invalid); at most USC_STATE_MAX_VIEWS
 * views, each id two digits, no id twice (pc_phoncallview_invalid); at
 * most USC_STATE_MAX_NUMBERS sources and destinations per view, none NULL
 * (pc_source_invalid, pc_destination_invalid). Other values (flow,
 * status, extensions, numbers) are copied as they are.
 *
 * Returns 0, or an error with *err filled; on error (allocation failure
 * included) the engine is unchanged. */
int usc_state_put(usc_state_t *state, const usc_state_address_t *owner,
                  const usc_state_call_t *snapshot, int64_t now,
                  usc_state_err_t *err);

/* Removes the call `id` of the user `owner` resolves to, whatever its
 * extension; ENDED. Returns 0, or USC_ERR_NOT_FOUND when that user has no
 * such call (a malformed user or id has none). */
int usc_state_remove(usc_state_t *state, const usc_state_address_t *owner,
                     const char *id, int64_t now);

/* After a full List of a user's calls for an extension: ends (ENDED) each
 * call of the user `owner_and_extension` resolves to that matches its
 * extension (NULL, "" or "@self": every call of the user; else as in
 * every address: the call's extension or a view's) and whose id is not
 * among `ids` (NULL entries and unknown ids are ignored). Returns the
 * number of calls ended, or USC_ERR_INVALID (nothing ended) for a
 * malformed user or extension. */
int usc_state_retain(usc_state_t *state,
                     const usc_state_address_t *owner_and_extension,
                     const char *const *ids, size_t n_ids, int64_t now);

/* ---- persistence (codec.c) ----
 *
 * The engine's calls as bytes, so that they survive a restart: every
 * field of every call and leg, the owner, and what is still to come
 * (ringing that turns into an answer, parking that runs out), as absolute
 * times on the engine's clock. The id generator is not saved: the new
 * engine's seed makes new ids, and a new id never equals one it holds.
 * The format (versioned, with a length and a CRC-32) is described in
 * codec.c and docs/native-engine.md. No I/O here. */

/* Changes whenever a call is created, changed or ended (by any operation,
 * advance and load included); equal values mean nothing changed. */
uint64_t usc_state_changes(const usc_state_t *state);

/* Writes every call into a new buffer: *bytes (usc_malloc'd, the caller
 * frees it with usc_free) of *len bytes, both written only on success.
 * `now` is recorded as the time of the save. Returns 0, USC_ERR_NOMEM, or
 * USC_ERR_TOO_LARGE for a string over 4 GiB. */
int usc_state_save(const usc_state_t *state, int64_t now, uint8_t **bytes,
                   size_t *len);

/* Adds the calls saved in `bytes` (borrowed during the call) to the
 * engine, all or none. The whole buffer is checked first (size, magic,
 * version, length, checksum), then every call as usc_state_put checks a
 * snapshot (and its owner and deadlines as the engine makes them), before
 * the first is added. Then what was due by `now` happens (advance).
 * Loading tells no watcher. Returns 0, or with *err filled (its message
 * says what is wrong and where) and the engine unchanged:
 * USC_ERR_INVALID for bytes that are not a whole, intact save of a
 * supported version or hold an invalid call (or one whose user and id are
 * already taken), USC_ERR_FULL when the calls would pass max_calls,
 * USC_ERR_NOMEM. */
int usc_state_load(usc_state_t *state, const uint8_t *bytes, size_t len,
                   int64_t now, usc_state_err_t *err);

#endif
