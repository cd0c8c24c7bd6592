#include "src/dispatch/breaker.h"

void breaker_init(breaker_t *b, uint32_t threshold, uint64_t open_ms) {
  *b = (breaker_t){.threshold = threshold, .open_ms = open_ms};
}

bool breaker_allow(breaker_t *b, uint64_t now, bool *probe) {
  *probe = false;
  if (b->state == BREAKER_CLOSED)
    return true;
  if (b->state == BREAKER_HALF_OPEN || now < b->open_until)
    return false;
  b->state = BREAKER_HALF_OPEN;
  *probe = true;
  return true;
}

static void open_circuit(breaker_t *b, uint64_t now) {
  b->state = BREAKER_OPEN;
  b->open_until = now + b->open_ms;
}

void breaker_record(breaker_t *b, bool ok, bool probe, uint64_t now) {
  if (ok) {
    b->failures = 0;
    if (probe || b->state == BREAKER_CLOSED)
      b->state = BREAKER_CLOSED;
    return;
  }
  if (probe) {
    open_circuit(b, now);
    return;
  }
  /* Requests that were in flight when the circuit opened say nothing new. */
  if (b->state == BREAKER_CLOSED && ++b->failures >= b->threshold)
    open_circuit(b, now);
}
