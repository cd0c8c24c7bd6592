/* Helpers for xlate's tests: an arena allocator whose every allocation goes
 * through usc_malloc (so usc_alloc_fail_at reaches it), JSON and protobuf
 * comparisons, and small message builders. */
#ifndef USC_XLATE_TESTUTIL_H
#define USC_XLATE_TESTUTIL_H

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "src/xlate/xlate.h"

typedef struct tblock tblock_t;

typedef struct {
  ProtobufCAllocator pb;
  tblock_t *blocks;
} tarena_t;

void tarena_init(tarena_t *a);
void tarena_reset(tarena_t *a); /* frees everything */

/* Fails the test unless the JSON texts are equal as JSON values. */
void assert_json_eq_(const char *got, size_t len, const char *want,
                     const char *file, int line);
#define assert_json_eq(got, len, want)                                         \
  assert_json_eq_((got), (len), (want), __FILE__, __LINE__)

/* Fails the test unless both messages pack to the same bytes. */
void assert_pb_eq_(const ProtobufCMessage *a, const ProtobufCMessage *b,
                   const char *file, int line);
#define assert_pb_eq(a, b)                                                     \
  assert_pb_eq_((const ProtobufCMessage *)(a), (const ProtobufCMessage *)(b),  \
                __FILE__, __LINE__)

Google__Protobuf__Int32Value *t_i32(tarena_t *a, int32_t v);
Google__Protobuf__BoolValue *t_bool(tarena_t *a, bool v);
Google__Protobuf__Timestamp *t_time(tarena_t *a, int64_t sec, int32_t nanos);
/* `n` initialised PhoneCallViews. */
Uapi__Phonecalls__V1__PhoneCallView **t_alloc_views(tarena_t *a, size_t n);
/* A NULL-terminated list of literals as a repeated string field. */
char **t_strv(tarena_t *a, size_t *n, ...);

/* A new message of type `d`, and its fields set by name (string fields
 * keep the pointer given). Fail the test for an unknown field. */
ProtobufCMessage *t_new(tarena_t *a, const ProtobufCMessageDescriptor *d);
void t_set(ProtobufCMessage *m, const char *field, const char *value);
void t_set_i32(tarena_t *a, ProtobufCMessage *m, const char *field, int32_t v);
void t_set_bool(tarena_t *a, ProtobufCMessage *m, const char *field, bool v);
/* The request message type of `rpc`. */
ProtobufCMessage *t_request(tarena_t *a, usc_xlate_rpc_t rpc);

/* Calls `attempt` with allocation N failing, for N = 1, 2, ... until it
 * returns something other than USC_ERR_NOMEM (which it returns), calling
 * `reset` after each failed attempt. Fails the test when an attempt in
 * which an allocation failed did not return USC_ERR_NOMEM, or after `max`
 * attempts. */
int t_exhaust(int (*attempt)(void *ctx), void (*reset)(void *ctx), void *ctx,
              size_t max, size_t *failures);

#endif
