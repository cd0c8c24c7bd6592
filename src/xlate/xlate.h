/* xlate: translation between uapi.phonecalls.v1.PhoneCallService messages
 * (protobuf-c) and the VoipNow UAPI PhoneCalls REST/JSON API, both ways.
 * Pure: no I/O, no state, no globals but constant tables. json-c is used
 * inside and never appears in this interface.
 *
 * Client direction (the sidecar calls an upstream UAPI):
 *   usc_xlate_request_build  request message -> HTTP method, target, body
 *   usc_xlate_answer_parse   upstream HTTP status + body -> the response
 *                            message, "fetch the call first", or an error
 * Facade direction (the sidecar serves UAPI REST from its native engine):
 *   usc_xlate_facade_parse   HTTP method, target, body -> request message
 *   usc_xlate_facade_answer  response message -> HTTP status + JSON body
 *   usc_xlate_facade_error   gRPC status + UAPI code -> HTTP error answer
 * Errors: usc_xlate_status_* (upstream HTTP status + UAPI code -> gRPC
 * status, configurable), usc_xlate_error_body_parse,
 * usc_xlate_retry_after_ms.
 *
 * Memory. Messages passed in are only read, never kept. Messages built
 * here are allocated through the caller's ProtobufCAllocator, used as an
 * arena: nothing is ever freed through it, and whatever a call allocated
 * (even a call that failed) is released when the caller resets its arena.
 * Text outputs (usc_xlate_request_t, usc_xlate_reply_t) are usc_malloc'd
 * and belong to the caller until freed with their _free function.
 * Every function returns 0 (or an outcome >= 0), USC_ERR_INVALID or
 * USC_ERR_NOMEM; on USC_ERR_NOMEM the error, when there is one, says
 * RESOURCE_EXHAUSTED "out of memory". */
#ifndef USC_XLATE_H
#define USC_XLATE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/grpc/grpc.h"
#include "uapi/phonecalls/v1/phonecalls.pb-c.h"

/* ---- RPCs ---- */

/* The RPCs that map to one UAPI operation (WatchPhoneCalls does not). */
typedef enum {
  USC_XLATE_LIST,
  USC_XLATE_GET,
  USC_XLATE_CREATE_SIMPLE,
  USC_XLATE_CREATE_CALLBACK,
  USC_XLATE_CREATE_CONFERENCE_INVITE,
  USC_XLATE_HANGUP,
  /* The PUT actions; their UAPI action name is their gRPC method name. */
  USC_XLATE_ON_HOLD,
  USC_XLATE_OFF_HOLD,
  USC_XLATE_START_RECORDING,
  USC_XLATE_STOP_RECORDING,
  USC_XLATE_PARK,
  USC_XLATE_UNPARK,
  USC_XLATE_PICK_UP,
  USC_XLATE_BARGE_IN,
  USC_XLATE_WHISPER,
  USC_XLATE_MONITOR,
  USC_XLATE_TRANSFER,
  USC_XLATE_TRANSFER_TO_VOICEMAIL,
  USC_XLATE_RPC_COUNT,
} usc_xlate_rpc_t;

/* "No RPC known", for usc_xlate_facade_error before a request parsed. */
#define USC_XLATE_RPC_NONE USC_XLATE_RPC_COUNT

typedef struct {
  const char *method;      /* gRPC method name: "OffHold" */
  const char *action;      /* UAPI action ("OffHold") for PUTs, else NULL */
  const char *http_method; /* "GET", "POST", "PUT" or "DELETE" */
  const ProtobufCMessageDescriptor *request;
  const ProtobufCMessageDescriptor *response;
} usc_xlate_rpc_info_t;

/* Static description of `rpc`; NULL when out of range. */
const usc_xlate_rpc_info_t *usc_xlate_rpc_info(usc_xlate_rpc_t rpc);

/* Finds an RPC by gRPC method name ("OffHold") or full path
 * ("/uapi.phonecalls.v1.PhoneCallService/OffHold"). Returns 0 or
 * USC_ERR_NOT_FOUND (also for WatchPhoneCalls). */
int usc_xlate_rpc_find(const char *name, size_t len, usc_xlate_rpc_t *rpc);

bool usc_xlate_rpc_is_action(usc_xlate_rpc_t rpc);

/* ---- Errors ---- */

#define USC_XLATE_CODE_MAX 64
#define USC_XLATE_MESSAGE_MAX 256

/* What to answer when a translation fails. Copies are bounded: longer
 * codes and messages are cut (messages at a UTF-8 boundary), and bytes of
 * a code outside '!'..'~' become '_' since it goes into a header. */
typedef struct {
  usc_grpc_status_t status;
  int http_status; /* the upstream's HTTP status when it answered, else 0 */
  char code[USC_XLATE_CODE_MAX];       /* UAPI error code, "" when none */
  char message[USC_XLATE_MESSAGE_MAX]; /* a sentence for grpc-message */
} usc_xlate_error_t;

/* Checks the call address of `request` (a message of `rpc`'s request type)
 * as api-contract.md §2 and native-engine.md say: user_id ("" is "@me"),
 * extension, phone_call_id and phone_call_view_id where the RPC has them.
 * Returns 0, or USC_ERR_INVALID with INVALID_ARGUMENT and the UAPI code
 * (user_invalid, extension_invalid, pc_phoncall_invalid,
 * pc_phoncallview_invalid), or INTERNAL for a message of the wrong type. */
int usc_xlate_request_check(usc_xlate_rpc_t rpc,
                            const ProtobufCMessage *request,
                            usc_xlate_error_t *error);

/* Whether every string of `message`, those of its repeated and nested
 * messages included, is valid UTF-8, as proto3 requires of string fields.
 * protobuf-c does not check it when unpacking, and JSON text (RFC 8259)
 * cannot carry anything else: the builders below refuse such messages. */
bool usc_xlate_message_utf8_ok(const ProtobufCMessage *message);

/* ---- Client direction: the request ---- */

/* Longest target (path and query) built; longer ones are refused. */
#define USC_XLATE_TARGET_MAX 8192
/* Longest JSON text accepted or produced. */
#define USC_XLATE_JSON_MAX (16 * 1024 * 1024)
/* Room for a call's path "/uapi/phoneCalls/{user}/{ext}/{id}" and NUL. */
#define USC_XLATE_PATH_MAX 256

/* An HTTP request for the upstream. Owned by the caller: free it with
 * usc_xlate_request_free. */
typedef struct {
  const char *method; /* "GET", "POST", "PUT", "DELETE": static */
  char *target;       /* "/uapi/phoneCalls/...", with the query if any */
  size_t target_len;
  char *body; /* JSON (application/json), NULL when there is no body */
  size_t body_len;
} usc_xlate_request_t;

/* Validates the address (usc_xlate_request_check) and builds the UAPI
 * request for `request`, a message of `rpc`'s request type. Unset fields
 * are left out; query parameters are percent-encoded (RFC 3986's
 * unreserved characters pass), "fields" comma-joined. Nothing is built on
 * error: *out is left zeroed. Returns 0, USC_ERR_INVALID (error says why:
 * INVALID_ARGUMENT with a UAPI code, INVALID_ARGUMENT for a target over
 * USC_XLATE_TARGET_MAX, a body over USC_XLATE_JSON_MAX or a string that
 * is not UTF-8, INTERNAL for a message of the wrong type) or
 * USC_ERR_NOMEM. */
int usc_xlate_request_build(usc_xlate_rpc_t rpc,
                            const ProtobufCMessage *request,
                            usc_xlate_request_t *out, usc_xlate_error_t *error);

/* Frees what `req` holds and zeroes it; accepts a zeroed request. */
void usc_xlate_request_free(usc_xlate_request_t *req);

/* ---- Client direction: the answer ---- */

/* Upstream HTTP status + UAPI code -> gRPC status. NULL means the defaults
 * of api-contract.md §2. */
typedef struct usc_xlate_status_map usc_xlate_status_map_t;

typedef struct {
  usc_xlate_rpc_t rpc;
  /* The request that was sent (any request message carrying user_id,
   * extension and phone_call_id), or NULL. Used to pick the call out of a
   * collection and to build the path to fetch when a link is unusable. */
  const ProtobufCMessage *request;
  int http_status;
  const char *body; /* may be NULL when body_len is 0 */
  size_t body_len;
  const usc_xlate_status_map_t *map; /* NULL: the defaults */
  ProtobufCAllocator *allocator;     /* the caller's arena */
} usc_xlate_answer_t;

typedef enum {
  /* result.response is the RPC's response message, in the arena. */
  USC_XLATE_DONE = 0,
  /* An action answered by a partial update (any 2xx whose call has only
   * id, extension and link(s), like the seed's 202; or 204, an empty body,
   * an empty array or collection): GET result.fetch_path (a validated
   * path, relative to the configured base URL: the link's path when it
   * names a call validly, else the request's address) and parse that
   * answer as USC_XLATE_GET, with the same request. */
  USC_XLATE_FETCH = 1,
  /* result.error says what to answer. */
  USC_XLATE_FAILED = 2,
} usc_xlate_outcome_t;

typedef struct {
  ProtobufCMessage *response;
  char fetch_path[USC_XLATE_PATH_MAX];
  usc_xlate_error_t error;
} usc_xlate_result_t;

/* Turns an upstream answer into the RPC's outcome. A non-2xx status gives
 * FAILED with the mapped status and the upstream's error.code and
 * error.message; a 2xx body that is not the JSON expected gives FAILED
 * INTERNAL ("upstream answered HTTP 200 but not the JSON expected: ...");
 * a GET of one call answered with nothing gives FAILED NOT_FOUND
 * pc_phoncall_invalid. Returns a usc_xlate_outcome_t or USC_ERR_NOMEM. */
int usc_xlate_answer_parse(const usc_xlate_answer_t *answer,
                           usc_xlate_result_t *result);

/* Reads a UAPI error body {"error":{"code":...,"message":...}} into
 * bounded copies (see usc_xlate_error_t; "" for a missing member).
 * Returns 0, or USC_ERR_INVALID when `body` is not such an object (code and
 * message are then ""). */
int usc_xlate_error_body_parse(const char *body, size_t len,
                               char code[USC_XLATE_CODE_MAX],
                               char message[USC_XLATE_MESSAGE_MAX]);

/* The gRPC status for an upstream answer: the most specific rule wins (a
 * rule naming the UAPI code over one that does not, an exact HTTP status
 * over a class "4xx"), and at the same specificity the map's rule over the
 * default; with no rule, 2xx is OK and anything else UNKNOWN. `map` may be
 * NULL, `code` NULL or "". Codes compare without regard to ASCII case. */
usc_grpc_status_t usc_xlate_status_lookup(const usc_xlate_status_map_t *map,
                                          int http_status, const char *code);

/* Parses a mapping text, one rule a line, layered over the defaults:
 *   # a comment (also after a rule)
 *   404 NOT_FOUND
 *   400 pc_phonecall_state_invalid FAILED_PRECONDITION
 *   5xx UNAVAILABLE
 * The HTTP status is 300..599 or a class 3xx..5xx; the UAPI code is
 * [A-Za-z0-9_.-]{1,63}; the gRPC status is a name (any case) or 1..16
 * (never OK). On error returns USC_ERR_INVALID with a message naming the
 * line in `error` ("line 3: unknown gRPC status \"NOTFOUND\""), or
 * USC_ERR_NOMEM. *out is the caller's; free it with
 * usc_xlate_status_map_free. */
int usc_xlate_status_map_parse(const char *text, size_t len,
                               usc_xlate_status_map_t **out, char *error,
                               size_t error_cap);

void usc_xlate_status_map_free(usc_xlate_status_map_t *map); /* NULL ok */

/* A Retry-After value: delay-seconds, or an HTTP-date (IMF-fixdate,
 * RFC 850 or asctime form) taken relative to `now_ms` (ms since the
 * epoch). A date in the past gives 0; the result saturates at INT32_MAX,
 * the most grpc-retry-pushback-ms can say. Returns 0 or USC_ERR_INVALID. */
int usc_xlate_retry_after_ms(const char *value, size_t len, int64_t now_ms,
                             int64_t *delay_ms);

/* ---- Facade direction ---- */

/* An incoming UAPI REST request; every piece is borrowed. */
typedef struct {
  const char *method; /* "GET", ... */
  size_t method_len;
  const char *target; /* path and query: "/uapi/phoneCalls/@me/210?count=5" */
  size_t target_len;
  const char *body; /* may be NULL when body_len is 0 */
  size_t body_len;
} usc_xlate_incoming_t;

/* Parses a UAPI REST request into the RPC and its request message, built
 * through `allocator` (the caller's arena). Accepts what UAPI clients send:
 * a trailing slash, %2A for '*', the singular /uapi/phoneCall/ alias,
 * numbers as strings, waitForPickUp, callerID, a bare string where an array
 * is expected; unknown members and parameters are ignored. GET of one
 * call (three segments, no List parameter) is GetPhoneCall, any other GET
 * ListPhoneCalls. The path's address is checked first, then the message as
 * a whole with usc_xlate_request_check (the view id, a create's extension);
 * other values are only checked for their type (400 pc_<member>_invalid,
 * count_invalid, ...; malformed JSON: 400 request_invalid) and left to the
 * engine. Unknown paths: NOT_FOUND resource_not_found (404); other methods:
 * UNIMPLEMENTED request_not_implemented (501). Returns 0, USC_ERR_INVALID
 * (error says what to answer: give it to usc_xlate_facade_error) or
 * USC_ERR_NOMEM. */
int usc_xlate_facade_parse(const usc_xlate_incoming_t *in,
                           ProtobufCAllocator *allocator, usc_xlate_rpc_t *rpc,
                           ProtobufCMessage **request,
                           usc_xlate_error_t *error);

/* An HTTP answer of the facade. Owned by the caller: free it with
 * usc_xlate_reply_free. */
typedef struct {
  int status;
  char *body; /* JSON (application/json), NULL for none (204) */
  size_t body_len;
} usc_xlate_reply_t;

/* Serialises `response` (of `rpc`'s response type) as UAPI answers it:
 * creates -> 200 and an array of PhoneCall; hangup -> 200 and an array of
 * {"id":...}, or 204 when nothing was hung up; List -> 200 and a collection
 * {startIndex, itemsPerPage, totalResults, entry}; Get -> the same
 * collection with one entry; actions -> 200 and the PhoneCall. Returns 0,
 * USC_ERR_INVALID (wrong type, a timestamp outside 0001..9999, or a string
 * that is not UTF-8) or USC_ERR_NOMEM. */
int usc_xlate_facade_answer(usc_xlate_rpc_t rpc,
                            const ProtobufCMessage *response,
                            usc_xlate_reply_t *out);

/* Serialises an error as {"error":{"code":...,"message":...}} with
 * usc_xlate_http_status_for's status. `code` NULL or "" gets a default for
 * the status (access_denied, request_not_implemented, ...); `message` NULL
 * or "" gets the status name. A GetPhoneCall NOT_FOUND is answered as UAPI
 * answers a GET of a call that is gone: 200 and an empty collection.
 * Returns 0, USC_ERR_INVALID (status OK) or USC_ERR_NOMEM. */
int usc_xlate_facade_error(usc_xlate_rpc_t rpc, usc_grpc_status_t status,
                           const char *code, const char *message,
                           usc_xlate_reply_t *out);

/* The HTTP status UAPI would answer for a gRPC status (the inverse of the
 * default map): INVALID_ARGUMENT and FAILED_PRECONDITION 400; NOT_FOUND 400
 * with a pc_/user_/extension_ code, else 404; UNAUTHENTICATED 401;
 * PERMISSION_DENIED 403; RESOURCE_EXHAUSTED 429; UNIMPLEMENTED 501;
 * UNAVAILABLE 503; DEADLINE_EXCEEDED 504; OK 200; anything else 500. */
int usc_xlate_http_status_for(usc_grpc_status_t status, const char *code);

/* Frees what `reply` holds and zeroes it; accepts a zeroed reply. */
void usc_xlate_reply_free(usc_xlate_reply_t *reply);

#endif
