/* A bump allocator for one request's protobuf-c messages: requests are
 * decoded into it and responses built in it, and all of it is dropped at
 * once when the request is answered. The first block is kept and reused,
 * so a typical request allocates nothing. Private to dispatch. */
#ifndef USC_DISPATCH_ARENA_H
#define USC_DISPATCH_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct arena_block arena_block_t;

typedef struct {
  arena_block_t *first; /* reused across resets */
  arena_block_t *extra; /* freed at reset */
  ProtobufCAllocator allocator;
} arena_t;

void arena_init(arena_t *arena);
/* NULL when out of memory. */
void *arena_alloc(arena_t *arena, size_t size);
void arena_reset(arena_t *arena);
void arena_free(arena_t *arena);

#endif
