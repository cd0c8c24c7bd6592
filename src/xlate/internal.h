/* Private to xlate: helpers shared by its .c files. */
#ifndef USC_XLATE_INTERNAL_H
#define USC_XLATE_INTERNAL_H

#include <json-c/json.h>
#include <stdarg.h>

#include "src/xlate/xlate.h"

typedef Uapi__Phonecalls__V1__PhoneCall xl_call_t;
typedef Uapi__Phonecalls__V1__PhoneCallView xl_view_t;
typedef Google__Protobuf__Timestamp xl_time_t;

/* ---- rpc.c ---- */

typedef enum {
  XL_KIND_LIST,
  XL_KIND_GET,
  XL_KIND_CREATE,
  XL_KIND_HANGUP,
  XL_KIND_ACTION,
} xl_kind_t;

xl_kind_t xl_kind(usc_xlate_rpc_t rpc);
/* "simple", "callback" or "conferenceInvite" for creates, else NULL. */
const char *xl_create_segment(usc_xlate_rpc_t rpc);
/* Finds the action RPC named exactly `action`; false when none. */
bool xl_action_find(const char *action, size_t len, usc_xlate_rpc_t *rpc);
/* True when `msg` is a message of `rpc`'s request type. */
bool xl_request_type_ok(usc_xlate_rpc_t rpc, const ProtobufCMessage *msg);

/* Query parameters and action body members, by proto field name and UAPI
 * name, shared by the two directions. `code` is the UAPI error code the
 * facade answers for a bad value. */
typedef enum { XL_STR, XL_INT32, XL_BOOL, XL_STRV } xl_type_t;

typedef struct {
  const char *field; /* proto field name */
  const char *name;  /* UAPI name */
  const char *alias; /* another spelling accepted on input, or NULL */
  xl_type_t type;
  const char *code;
} xl_param_t;

/* The query parameters of an RPC (none for Get and actions). */
const xl_param_t *xl_query_params(usc_xlate_rpc_t rpc, size_t *n);
/* The members of a PhoneCallAction body after "action", in sending order;
 * a message without one of these fields simply skips it. */
const xl_param_t *xl_action_params(size_t *n);

/* ---- error.c ---- */

void xl_fail(usc_xlate_error_t *err, usc_grpc_status_t status, const char *code,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Fills `err` (when not NULL) with RESOURCE_EXHAUSTED "out of memory" and
 * returns USC_ERR_NOMEM. */
int xl_nomem(usc_xlate_error_t *err);
/* Copies at most cap-1 bytes of `src` (stopping at a NUL), cutting at a
 * UTF-8 boundary. */
void xl_copy_text(char *dst, size_t cap, const char *src, size_t len);
/* As xl_copy_text, but bytes outside '!'..'~' become '_'. */
void xl_copy_code(char *dst, size_t cap, const char *src, size_t len);

/* Puts `prefix` before the text in `buf`, cutting its end to fit. */
void xl_prefix(char *buf, size_t cap, const char *prefix);

/* ---- pb.c: request fields read and written by name ---- */

/* "" when the message has no such string field. */
const char *xl_pb_str(const ProtobufCMessage *m, const char *name);
/* False when the field is absent (or the message has none). */
bool xl_pb_int32(const ProtobufCMessage *m, const char *name, int32_t *v);
bool xl_pb_bool(const ProtobufCMessage *m, const char *name, bool *v);
/* The elements of a repeated string field; 0 when none. */
size_t xl_pb_strv(const ProtobufCMessage *m, const char *name, char *const **v);
bool xl_pb_has(const ProtobufCMessage *m, const char *name);

/* Arena helpers: NULL when out of memory. */
void *xl_alloc(ProtobufCAllocator *a, size_t size);
void *xl_pb_new(ProtobufCAllocator *a, const ProtobufCMessageDescriptor *d);
char *xl_strndup(ProtobufCAllocator *a, const char *s, size_t len);
xl_time_t *xl_time_new(ProtobufCAllocator *a, int64_t seconds, int32_t nanos);
Google__Protobuf__Int32Value *xl_int32_new(ProtobufCAllocator *a, int32_t v);

/* Setters return 0, USC_ERR_NOT_FOUND (no such field: nothing done) or
 * USC_ERR_NOMEM. Strings are copied into the arena. */
int xl_pb_set_str(ProtobufCMessage *m, const char *name, const char *s,
                  size_t len, ProtobufCAllocator *a);
int xl_pb_set_int32(ProtobufCMessage *m, const char *name, int32_t v,
                    ProtobufCAllocator *a);
int xl_pb_set_bool(ProtobufCMessage *m, const char *name, bool v,
                   ProtobufCAllocator *a);
/* Gives a repeated string field room for `cap` elements (and none yet). */
int xl_pb_strv_reserve(ProtobufCMessage *m, const char *name, size_t cap,
                       ProtobufCAllocator *a);
/* Appends a copy of `s` to a repeated string field, within the room
 * reserved. */
int xl_pb_add_str(ProtobufCMessage *m, const char *name, const char *s,
                  size_t len, ProtobufCAllocator *a);

/* ---- address.c ---- */

bool xl_user_ok(const char *s, size_t len);      /* "" excluded */
bool xl_extension_ok(const char *s, size_t len); /* "@self" included */
bool xl_call_id_ok(const char *s, size_t len);
bool xl_view_id_ok(const char *s, size_t len);
/* The checks of usc_xlate_request_check, one part at a time: 0, or
 * USC_ERR_INVALID with INVALID_ARGUMENT and the part's UAPI code. */
int xl_check_user(const char *user, usc_xlate_error_t *err);
int xl_check_extension(usc_xlate_rpc_t rpc, const char *ext,
                       usc_xlate_error_t *err);
int xl_check_call_id(usc_xlate_rpc_t rpc, const char *id,
                     usc_xlate_error_t *err);
/* The user segment to send: "@me" for "". */
const char *xl_user_segment(const char *user_id);

/* ---- text.c ---- */

/* A growing string, capped at `max` bytes; usc_realloc'd. */
typedef struct {
  char *buf;
  size_t len;
  size_t cap;
  size_t max;
  int err; /* sticky: 0, USC_ERR_NOMEM or USC_ERR_TOO_LARGE */
} xl_sb_t;

void xl_sb_init(xl_sb_t *sb, size_t max);
void xl_sb_add(xl_sb_t *sb, const char *s, size_t len);
void xl_sb_adds(xl_sb_t *sb, const char *s);
/* Percent-encodes everything but RFC 3986's unreserved characters. */
void xl_sb_add_encoded(xl_sb_t *sb, const char *s, size_t len);
void xl_sb_free(xl_sb_t *sb);

/* Decodes %XX into a new arena string. USC_ERR_INVALID for a malformed
 * escape, a NUL or invalid UTF-8; USC_ERR_NOMEM. */
int xl_decode(const char *s, size_t len, ProtobufCAllocator *a, char **out);

bool xl_utf8_ok(const char *s, size_t len);
/* [+-]?[0-9]+ within int32. */
bool xl_parse_int32(const char *s, size_t len, int32_t *v);
bool xl_ieq(const char *a, size_t alen, const char *b); /* ASCII case */
bool xl_eq(const char *a, size_t alen, const char *b);

/* An HTTP-date in any of its three forms -> seconds since the epoch.
 * (RFC 3339 date-times are base's: read with usc_time_parse_lenient, as
 * UAPI answers may be sloppy, and written with usc_time_format_seconds.) */
bool xl_http_date(const char *s, size_t len, int64_t *sec);

/* ---- json.c ---- */

/* Parses `len` bytes as one JSON value (trailing whitespace allowed,
 * UTF-8 checked, depth bounded). *out is NULL for an empty text or
 * `null`. Returns 0, or USC_ERR_INVALID with a reason in `why`. */
int xl_json_parse(const char *text, size_t len, json_object **out, char *why,
                  size_t why_cap);
/* The member `key`, or NULL when absent or null. */
json_object *xl_json_get(json_object *o, const char *key);
/* A string (or an integer written in decimal into `buf`), without NUL. */
bool xl_json_text(json_object *v, const char **s, size_t *len, char buf[24]);
/* An integer, an integral double or a numeric string within int32;
 * *present is false for "" (absent). */
bool xl_json_int32(json_object *v, int32_t *out, bool *present);
/* true/false, 0/1, "0"/"1", "true"/"false". */
bool xl_json_bool(json_object *v, bool *out);

/* Builders: each takes ownership of `v` (NULL means out of memory) and
 * returns 0 or USC_ERR_NOMEM. */
int xl_json_put(json_object *o, const char *key, json_object *v);
int xl_json_push(json_object *array, json_object *v);
int xl_json_put_str(json_object *o, const char *key, const char *s);
int xl_json_put_int(json_object *o, const char *key, int64_t v);
/* The compact text of `o` in a usc_malloc'd copy. */
int xl_json_dump(json_object *o, char **text, size_t *len);

/* ---- call.c: PhoneCall <-> UAPI JSON ---- */

/* Reads a PhoneCall object. Returns 0, USC_ERR_INVALID (`why` says what is
 * wrong) or USC_ERR_NOMEM. */
int xl_call_from_json(json_object *o, ProtobufCAllocator *a, xl_call_t **out,
                      char *why, size_t why_cap);
/* Writes a PhoneCall object. Returns 0, USC_ERR_INVALID (a timestamp
 * outside 0001..9999) or USC_ERR_NOMEM. */
int xl_call_to_json(const xl_call_t *call, json_object **out);

/* ---- path.c ---- */

/* The segments of a /uapi/phoneCalls/ (or, when `alias`, /uapi/phoneCall/)
 * path, decoded into the arena: up to 3, a trailing slash ignored; a
 * segment that does not decode is "%". Returns 0, USC_ERR_NOT_FOUND (not
 * such a path, an empty segment or too many) or USC_ERR_NOMEM. */
typedef struct {
  char *seg[3];
  size_t n;
} xl_path_t;

int xl_path_split(const char *path, size_t len, bool alias,
                  ProtobufCAllocator *a, xl_path_t *out);
/* "/uapi/phoneCalls/{user}/{ext}/{id}" for a validated address; false when
 * the parts do not pass validation. */
bool xl_call_path(const char *user, const char *ext, const char *id,
                  char out[USC_XLATE_PATH_MAX]);
/* The path of a link (its scheme, host, query and fragment dropped) when
 * it names one call validly. */
bool xl_link_path(const char *link, size_t len, char out[USC_XLATE_PATH_MAX]);

#endif
