#include "src/dispatch/arena.h"

#include "src/base/base.h"

#include <stdint.h>

#define BLOCK_SIZE (16 * 1024)
#define ALIGN 16

struct arena_block {
  arena_block_t *next;
  size_t cap;
  size_t used;
  _Alignas(ALIGN) unsigned char data[];
};

static arena_block_t *block_new(size_t cap) {
  arena_block_t *b = usc_malloc(sizeof(*b) + cap);
  if (b != NULL) {
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
  }
  return b;
}

static void *take(arena_block_t *b, size_t size) {
  void *p = b->data + b->used;
  b->used += (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  return p;
}

static bool fits(const arena_block_t *b, size_t size) {
  return b != NULL && b->cap - b->used >= size;
}

void *arena_alloc(arena_t *arena, size_t size) {
  if (size > SIZE_MAX - BLOCK_SIZE)
    return NULL;
  /* Whole units, so that a large block sized to fit is not overrun. */
  size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (arena->first == NULL)
    arena->first = block_new(BLOCK_SIZE);
  if (fits(arena->first, size))
    return take(arena->first, size);
  if (fits(arena->extra, size))
    return take(arena->extra, size);
  arena_block_t *b = block_new(size > BLOCK_SIZE ? size : BLOCK_SIZE);
  if (b == NULL)
    return NULL;
  b->next = arena->extra;
  arena->extra = b;
  return take(b, size);
}

static void *pb_alloc(void *data, size_t size) {
  return arena_alloc(data, size);
}

static void pb_free(void *data, void *p) {
  (void)data;
  (void)p;
}

void arena_init(arena_t *arena) {
  arena->first = NULL;
  arena->extra = NULL;
  arena->allocator = (ProtobufCAllocator){
      .alloc = pb_alloc, .free = pb_free, .allocator_data = arena};
}

void arena_reset(arena_t *arena) {
  while (arena->extra != NULL) {
    arena_block_t *next = arena->extra->next;
    usc_free(arena->extra);
    arena->extra = next;
  }
  if (arena->first != NULL)
    arena->first->used = 0;
}

void arena_free(arena_t *arena) {
  arena_reset(arena);
  usc_free(arena->first);
  arena->first = NULL;
}
