/* index: the calls of each user and of each (user, extension), in list
 * order, with their counts, so that List reads only the calls it can
 * answer with. Internal to src/state.
 *
 * A bucket holds the members of one key; a call has one member in its
 * user's bucket (every extension: List's "@self") and one in the bucket of
 * each distinct extension it matches (the charged extension and the
 * extension of every leg). Buckets are made when their first member comes
 * and freed when their last one goes.
 *
 * Changes that may fail (allocation) come first, before the call itself
 * changes: index_add for a new call, index_reserve before an action that
 * may give a leg a new extension; index_sync afterwards cannot fail. */
#ifndef USC_STATE_INDEX_H
#define USC_STATE_INDEX_H

#include <stdbool.h>
#include <stddef.h>

typedef struct index_bucket index_bucket_t;
typedef struct index_member index_member_t;

struct index_member {
  index_member_t *prev, *next; /* in the bucket, in list order */
  index_member_t *sibling;     /* the call's next extension member */
  index_bucket_t *bucket;
  void *owner;
};

/* The memberships of one call; embed it in the call, zeroed. */
typedef struct {
  index_member_t all;   /* in the user's bucket */
  index_member_t *exts; /* one per extension, linked by sibling */
} index_entry_t;

/* Whether owner `a` comes before owner `b` in list order. */
typedef bool (*index_before_fn)(const void *a, const void *b);

typedef struct {
  index_bucket_t **slots; /* chained; cap is 0 or a power of two */
  size_t cap, n_buckets;
  index_before_fn before;
} call_index_t;

/* What index_reserve set aside for one action. */
typedef struct {
  index_bucket_t *bucket; /* made for the action; freed by sync if unused */
  index_member_t *member;
} index_reservation_t;

void index_init(call_index_t *ix, index_before_fn before);
/* Frees the table; index_remove every call first. */
void index_free(call_index_t *ix);

/* Links a new call with its distinct extensions `exts` (n of them, at most
 * 16). Returns 0, or USC_ERR_NOMEM with nothing changed. */
int index_add(call_index_t *ix, index_entry_t *e, void *owner, const char *user,
              const char *const *exts, size_t n);

/* Unlinks a call; frees its members and the buckets left empty. */
void index_remove(call_index_t *ix, index_entry_t *e);

/* Makes sure a leg of the call may take extension `ext` afterwards without
 * allocating. Returns 0 or USC_ERR_NOMEM with nothing changed. */
int index_reserve(call_index_t *ix, const char *user, const char *ext,
                  index_reservation_t *res);

/* After the call's extensions changed (or not): links it to exactly
 * `exts` (at most one of them new, the reserved one), and releases what
 * the reservation did not use. Never allocates. */
void index_sync(call_index_t *ix, index_entry_t *e, const char *user,
                const char *const *exts, size_t n, index_reservation_t *res);

/* The bucket of (user, ext), ext NULL for every extension; NULL if no call
 * has that key. */
const index_bucket_t *index_find(const call_index_t *ix, const char *user,
                                 const char *ext);
size_t index_count(const index_bucket_t *b);
/* The first member in list order (last when `backwards`), NULL if none;
 * then each next one. */
const index_member_t *index_first(const index_bucket_t *b, bool backwards);
const index_member_t *index_next(const index_member_t *m, bool backwards);

#endif
