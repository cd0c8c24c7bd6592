/* Engine calls to protobuf-c messages, built in an arena (no copies of
 * the engine's strings: the messages point at them, so they are valid only
 * until the engine next changes). Private to dispatch. */
#ifndef USC_DISPATCH_CONVERT_H
#define USC_DISPATCH_CONVERT_H

#include "src/dispatch/arena.h"
#include "src/state/state.h"
#include "uapi/phonecalls/v1/phonecalls.pb-c.h"

/* The call with the fields of `field_mask` (USC_STATE_FIELD_*); NULL when
 * out of memory. */
Uapi__Phonecalls__V1__PhoneCall *
convert_call(arena_t *arena, const usc_state_call_t *call, uint32_t field_mask);

Google__Protobuf__Timestamp *convert_time(arena_t *arena, int64_t ns);

/* The other way, for mirroring upstream answers into the engine: a
 * snapshot whose strings point into `pb` and whose views are in `arena`.
 * Returns 0 or USC_ERR_NOMEM / USC_ERR_TOO_LARGE (more views than the
 * engine holds). */
int convert_to_state(arena_t *arena, const Uapi__Phonecalls__V1__PhoneCall *pb,
                     usc_state_call_t *out);

#endif
