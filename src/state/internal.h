/* What the engine (state.c) lends its file format (codec.c): a walk over
 * its calls, their deadlines, and a way to build calls apart from the
 * engine and then add them all at once. Not for other modules. */
#ifndef USC_STATE_INTERNAL_H
#define USC_STATE_INTERNAL_H

#include "src/state/state.h"

/* A call's pending changes: when its ringing legs answer (0: none), and
 * for each parked leg how long it may stay parked (0: no limit, as for a
 * leg parked upstream). */
typedef struct {
  int64_t ring_at;
  uint16_t park_secs[USC_STATE_MAX_VIEWS];
} state_deadlines_t;

/* The engine's calls in List order (published, then creation); NULL after
 * the last. The pointers live as long as the calls (see state.h). */
const usc_state_call_t *state_first(const usc_state_t *s);
const usc_state_call_t *state_next(const usc_state_call_t *call);
void state_deadlines(const usc_state_call_t *call, state_deadlines_t *out);

/* A call built apart from any engine, owned by whoever built it until
 * state_adopt takes it; free it with state_drop (accepts NULL). */
typedef struct rec rec_t;

/* Checks `c` as usc_state_put checks a snapshot, that it has a user
 * (c->user), and its deadlines as Park and the ring delay make them; then
 * copies it, strings included, into a new call. Returns 0,
 * USC_ERR_INVALID or USC_ERR_NOMEM with *err filled. */
int state_build(const usc_state_call_t *c, const state_deadlines_t *d,
                rec_t **out, usc_state_err_t *err);
void state_drop(rec_t *r);

/* How many more calls the engine takes (--max-calls). */
size_t state_room(const usc_state_t *s);

/* Adds the `n` built calls to the engine, all or none: USC_ERR_FULL past
 * max_calls, USC_ERR_INVALID when two calls of one user share an id (or
 * one is already in the engine), USC_ERR_NOMEM; on error the engine is
 * unchanged and the calls are still the caller's. Tells no watcher. */
int state_adopt(usc_state_t *s, rec_t **recs, size_t n, usc_state_err_t *err);

#endif
