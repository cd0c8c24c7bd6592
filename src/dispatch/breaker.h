/* A circuit breaker for the auto backend: consecutive upstream failures
 * open it, and while it is open the native engine answers; once the open
 * period is over one request goes upstream as a probe, and its outcome
 * closes or reopens the circuit. Pure; time is passed in (ms). Private to
 * dispatch. */
#ifndef USC_DISPATCH_BREAKER_H
#define USC_DISPATCH_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
  BREAKER_CLOSED,
  BREAKER_OPEN,
  BREAKER_HALF_OPEN, /* a probe is in flight */
} breaker_state_t;

typedef struct {
  uint32_t threshold; /* consecutive failures that open it */
  uint64_t open_ms;   /* how long it stays open before a probe */
  uint32_t failures;
  breaker_state_t state;
  uint64_t open_until;
} breaker_t;

void breaker_init(breaker_t *b, uint32_t threshold, uint64_t open_ms);

/* May this request go upstream? *probe tells whether it is the probe whose
 * outcome decides the circuit. */
bool breaker_allow(breaker_t *b, uint64_t now, bool *probe);

/* The outcome of a request that went upstream. */
void breaker_record(breaker_t *b, bool ok, bool probe, uint64_t now);

#endif
