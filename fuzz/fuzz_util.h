/* Shared by the fuzz targets: an arena for protobuf-c messages, a quiet
 * log, a cursor over the fuzzer's bytes, and a TCP client that plays the
 * fuzzer's bytes to a server on the same libuv loop. Any failed check
 * aborts, so that libFuzzer records the input. */
#ifndef USC_FUZZ_UTIL_H
#define USC_FUZZ_UTIL_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "src/state/state.h"

/* Prints what failed and aborts. */
#define FUZZ_CHECK(cond)                                                       \
  ((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #cond))
void fuzz_fail(const char *file, int line, const char *what)
    __attribute__((noreturn));

/* Every allocation is a usc_malloc of its own, so that AddressSanitizer
 * sees each message's bounds; all of it goes at fuzz_arena_reset. */
typedef struct fuzz_block fuzz_block_t;
typedef struct {
  ProtobufCAllocator pb;
  fuzz_block_t *blocks;
} fuzz_arena_t;

void fuzz_arena_init(fuzz_arena_t *arena);
void fuzz_arena_reset(fuzz_arena_t *arena);

/* Sends the sidecar's log lines to /dev/null (errors only), once. */
void fuzz_quiet_log(void);

/* Reads control values off the front of the input; past its end every
 * value is 0 and every slice empty. */
typedef struct {
  const uint8_t *data;
  size_t len;
} fuzz_input_t;

uint8_t fuzz_take_byte(fuzz_input_t *in);
/* The next `n` bytes (fewer at the end), or up to and without the first
 * `stop` byte, which is consumed. */
const uint8_t *fuzz_take(fuzz_input_t *in, size_t n, size_t *got);
const uint8_t *fuzz_take_until(fuzz_input_t *in, uint8_t stop, size_t *got);

/* Connects to the server at `address` ("127.0.0.1:PORT") on `loop`,
 * writes `data`, reads what comes back until the server has been quiet
 * for a few loop turns or closes, then half-closes, reads until quiet or
 * closed again, and resets the connection (no TIME_WAIT). Returns the
 * number of bytes the server sent. The loop is left with nothing of the
 * client's. With USC_FUZZ_TRACE set in the environment, what the server
 * sends is copied to stderr (to see what a seed or a crash does). */
size_t fuzz_client_exchange(uv_loop_t *loop, const char *address,
                            const uint8_t *data, size_t len);

/* The engine's clock in the server targets: 2026-01-02T03:04:05Z, fixed
 * so that runs repeat. */
#define FUZZ_NOW_NS (INT64_C(1767323045) * 1000000000)
int64_t fuzz_clock(void *user);

/* A native engine holding one call answered on both legs, of the default
 * user, so that seeds can act on it: id FUZZ_CALL_ID, extension
 * "0003*210", legs "00" (0003*210 -> 0003*211) and "01". */
#define FUZZ_CALL_ID "fz1"
usc_state_t *fuzz_engine_new(void);

/* Runs the loop until nothing is left on it, closes it, and aborts if it
 * does not close (a handle left open). */
void fuzz_loop_finish(uv_loop_t *loop);

/* A JSON text json-c accepts as a whole, strictly, and in UTF-8. */
bool fuzz_json_valid(const char *text, size_t len);

#endif
