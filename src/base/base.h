/* base: error codes, allocation hooks and small helpers shared by every
 * module. Depends on libc only. */
#ifndef USC_BASE_H
#define USC_BASE_H

#include <stdbool.h>
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

/* For buffers that are appended to: makes the usc_malloc'd `block` of
 * *cap bytes (NULL when 0) hold at least `need` > *cap bytes. The capacity
 * doubles, from `first` when it is 0, until it does, so that appends take
 * amortised constant time. Returns the block, perhaps moved, with *cap
 * updated; NULL when out of memory (or `need` is past SIZE_MAX / 2), the
 * block and *cap unchanged. */
void *usc_grow(void *block, size_t *cap, size_t need, size_t first);

/* Test hook: the `nth` allocation from now on (1 = the next one) fails;
 * 0 disables. Returns the number of allocations made since the last call. */
size_t usc_alloc_fail_at(size_t nth);

/* ---- min-heap (base_heap.c) ----
 *
 * An intrusive binary min-heap, typically of deadlines. The element embeds
 * a usc_heap_node_t and the heap stores pointers to those nodes; find the
 * element again with USC_CONTAINER_OF. Nodes are ordered by key, then by
 * tie (smaller first); with equal key and tie the order is unspecified.
 * Set tie (e.g. to a creation sequence) for a deterministic order, or
 * leave it 0.
 *
 * A zeroed node is in no heap. A node is in at most one heap at a time
 * and must stay at the same address while in it. */
typedef struct {
  int64_t key;
  uint64_t tie;
  size_t slot; /* private: 1 + its position while in a heap, else 0 */
} usc_heap_node_t;

typedef struct {
  usc_heap_node_t **nodes; /* private */
  size_t len, cap;
} usc_heap_t;

/* A zeroed usc_heap_t is an empty heap too. */
void usc_heap_init(usc_heap_t *heap);
/* Frees the heap's array; the nodes are not touched (they may already be
 * gone) and the heap is empty again. */
void usc_heap_free(usc_heap_t *heap);
/* Makes room for `n` nodes, so that pushes up to that many cannot fail.
 * Returns 0 or USC_ERR_NOMEM (the heap unchanged). */
int usc_heap_reserve(usc_heap_t *heap, size_t n);
/* Adds a node that is in no heap, with its key and tie set. Grows the heap
 * when full: returns 0 or USC_ERR_NOMEM (nothing changed). */
int usc_heap_push(usc_heap_t *heap, usc_heap_node_t *node);
/* The least node, or NULL when empty. */
usc_heap_node_t *usc_heap_peek(const usc_heap_t *heap);
/* Removes and returns the least node, or NULL when empty. */
usc_heap_node_t *usc_heap_pop(usc_heap_t *heap);
/* Removes a node; a node in no heap is left alone. */
void usc_heap_remove(usc_heap_t *heap, usc_heap_node_t *node);
/* Changes the key of a node in the heap and moves it into place. */
void usc_heap_update(usc_heap_t *heap, usc_heap_node_t *node, int64_t key);
size_t usc_heap_len(const usc_heap_t *heap);
/* Whether the node is in a heap. */
static inline bool usc_heap_node_in_heap(const usc_heap_node_t *node) {
  return node->slot != 0;
}

/* ---- RFC 3339 date-times (base_time.c) ----
 *
 * Times are nanoseconds since the Unix epoch (1970-01-01T00:00:00Z), the
 * range of int64_t: 1677-09-21T00:12:43.145224192Z to
 * 2262-04-11T23:47:16.854775807Z. */

/* Parses exactly `len` bytes (no NUL needed) as an RFC 3339 date-time:
 *   YYYY-MM-DD ("T" | "t") hh:mm:ss [ "." 1*DIGIT ] ("Z" | "z" | ("+" |
 *   "-") hh:mm)
 * Years 0000 to 9999; the date must exist (leap years included); hours
 * 00-23, minutes 00-59, seconds 00-60, where 60 (a leap second) is taken
 * as the next second, as POSIX does. Fraction digits past the ninth are
 * dropped (truncated, not rounded). Offsets up to 23:59 either way;
 * "-00:00" is UTC. No spaces, nothing before or after.
 * Returns 0 with *ns set; USC_ERR_INVALID for anything else (*ns
 * untouched); USC_ERR_TOO_LARGE for a well-formed date-time outside the
 * range above, with *ns saturated to INT64_MIN or INT64_MAX (so it still
 * orders before or after every time in range, but equals the extreme
 * one: tell them apart by the return value). */
int usc_time_parse_rfc3339(const char *s, size_t len, int64_t *ns);

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in seconds since the
 * epoch: the range of protobuf's Timestamp, wider than int64_t
 * nanoseconds. */
#define USC_TIME_MIN_SEC INT64_C(-62135596800)
#define USC_TIME_MAX_SEC INT64_C(253402300799)

/* As usc_time_parse_rfc3339, for date-times from producers that are not
 * strict about RFC 3339: it also takes a space between date and time, an
 * offset without its colon ("+hhmm") and no zone at all (UTC). The result
 * is seconds since the epoch and nanoseconds (0..999999999) after them, as
 * protobuf's Timestamp has it, within USC_TIME_MIN_SEC..USC_TIME_MAX_SEC
 * (and years as written 0001 to 9999). Returns 0 with *sec and *nanos set;
 * USC_ERR_INVALID for malformed text, USC_ERR_TOO_LARGE for a well-formed
 * date-time outside that range (both leave *sec and *nanos untouched). */
int usc_time_parse_lenient(const char *s, size_t len, int64_t *sec,
                           int32_t *nanos);

/* Seconds since the epoch of a UTC date and time of day, checked as the
 * parsers check them: years 0000 to 9999, a date that exists, hours
 * 00-23, minutes 00-59, seconds 00-60 (60 is the next second). Returns
 * false, *sec untouched, for anything else. */
bool usc_time_from_civil(int year, int month, int day, int hour, int minute,
                         int second, int64_t *sec);

/* The longest text usc_time_format_rfc3339 writes, with its NUL. */
#define USC_TIME_RFC3339_SIZE 31

/* Writes `ns` as UTC, "YYYY-MM-DDThh:mm:ss[.fff]Z", NUL-terminated. The
 * fraction is left out when zero, else it has 3, 6 or 9 digits: the
 * fewest that are exact (as protobuf's JSON mapping of Timestamp), e.g.
 * 2026-11-29T07:50:00Z, 2026-11-29T07:50:00.120Z,
 * 2026-11-29T07:50:00.000001Z, 2026-11-29T07:50:00.123456789Z. Every
 * int64_t gives a four-digit year. Returns the length without the NUL, or 0
 * (writing nothing) when `cap` is too small; USC_TIME_RFC3339_SIZE is
 * always enough. */
size_t usc_time_format_rfc3339(int64_t ns, char *out, size_t cap);

/* The same text for `sec` seconds since the epoch and `nanos` after them:
 * sec within USC_TIME_MIN_SEC..USC_TIME_MAX_SEC and nanos 0..999999999,
 * else 0 (writing nothing), as when `cap` is too small. */
size_t usc_time_format_seconds(int64_t sec, int32_t nanos, char *out,
                               size_t cap);

#define USC_CONTAINER_OF(ptr, type, member)                                    \
  ((type *)((char *)(ptr)-offsetof(type, member)))

#define USC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
