/* The native backend: serves a decoded request from the call-state
 * engine and states the outcome. Private to dispatch. */
#ifndef USC_DISPATCH_NATIVE_H
#define USC_DISPATCH_NATIVE_H

#include "src/dispatch/arena.h"
#include "src/dispatch/methods.h"
#include "src/state/state.h"

typedef struct {
  usc_state_t *state;
  const fields_t *fields;
  int64_t ring_ns;
  /* Wall-clock time in ns, for the engine. */
  int64_t (*clock)(void *user);
  /* Asks to be woken at engine time `due` (a ring or a parking period
   * that will end). */
  void (*wake_at)(void *user, int64_t due);
  void *user;
} native_t;

/* Serves every unary method (not Watch). The response is built in
 * `arena` and points into the engine: send it before the engine changes. */
void native_serve(const native_t *native, const method_t *m,
                  const void *request, const char *identity, arena_t *arena,
                  outcome_t *out);

#endif
