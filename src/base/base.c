#include "src/base/base.h"

#include <stdlib.h>
#include <string.h>

static size_t alloc_count;
static size_t alloc_fail_nth;

size_t usc_alloc_fail_at(size_t nth) {
  size_t made = alloc_count;
  alloc_count = 0;
  alloc_fail_nth = nth;
  return made;
}

static int should_fail(void) {
  alloc_count++;
  return alloc_fail_nth != 0 && alloc_count == alloc_fail_nth;
}

void *usc_malloc(size_t size) { return should_fail() ? NULL : malloc(size); }

void *usc_calloc(size_t n, size_t size) {
  return should_fail() ? NULL : calloc(n, size);
}

void *usc_realloc(void *p, size_t size) {
  return should_fail() ? NULL : realloc(p, size);
}

void usc_free(void *p) { free(p); }

void *usc_grow(void *block, size_t *cap, size_t need, size_t first) {
  size_t grown = *cap > 0 ? *cap : first;
  if (need > SIZE_MAX / 2 || grown == 0)
    return NULL;
  while (grown < need)
    grown *= 2;
  void *p = usc_realloc(block, grown);
  if (p != NULL)
    *cap = grown;
  return p;
}

char *usc_strndup(const char *s, size_t n) {
  char *copy = usc_malloc(n + 1);
  if (copy == NULL)
    return NULL;
  memcpy(copy, s, n);
  copy[n] = '\0';
  return copy;
}

char *usc_strdup(const char *s) { return usc_strndup(s, strlen(s)); }

const char *usc_strerror(int err) {
  switch (err) {
  case USC_OK:
    return "success";
  case USC_ERR_NOMEM:
    return "out of memory";
  case USC_ERR_INVALID:
    return "invalid input";
  case USC_ERR_TOO_LARGE:
    return "input too large";
  case USC_ERR_NOT_FOUND:
    return "not found";
  case USC_ERR_FULL:
    return "container full";
  case USC_ERR_IO:
    return "I/O error";
  case USC_ERR_STATE:
    return "not allowed in the current state";
  default:
    return "unknown error";
  }
}
