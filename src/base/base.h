/* base: error codes, allocation hooks and small helpers shared by every
 * module. Depends on libc only. */
#ifndef USC_BASE_H
#define USC_BASE_H

#include <stddef.h>
#include <stdint.h>

/* Functions return 0 or one of these. */
enum {
  USC_OK = 0,
  USC_ERR_NOMEM = -1,     /* an allocation failed */
  USC_ERR_INVALID = -2,   /* malformed input */
  USC_ERR_TOO_LARGE = -3, /* input over a configured cap */
  USC_ERR_NOT_FOUND = -4,
  USC_ERR_FULL = -5, /* a bounded container is full */
  USC_ERR_IO = -6,
  USC_ERR_STATE = -7, /* operation not allowed in the current state */
};

/* A static English description of a USC_ERR_* value. */
const char *usc_strerror(int err);

/* All project allocations go through these so tests can make the Nth one
 * fail. usc_free accepts NULL. */
void *usc_malloc(size_t size);
void *usc_calloc(size_t n, size_t size);
void *usc_realloc(void *p, size_t size);
void usc_free(void *p);
char *usc_strdup(const char *s);
char *usc_strndup(const char *s, size_t n);

/* Test hook: the `nth` allocation from now on (1 = the next one) fails;
 * 0 disables. Returns the number of allocations made since the last call. */
size_t usc_alloc_fail_at(size_t nth);

#define USC_CONTAINER_OF(ptr, type, member)                                    \
  ((type *)((char *)(ptr)-offsetof(type, member)))

#define USC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
