#include "src/state/index.h"

#include <stdint.h>
#include <string.h>

#include "src/base/base.h"

#define MIN_SLOTS 16
#define MAX_EXTS 16

struct index_bucket {
  index_bucket_t *chain;
  index_member_t *head, *tail;
  size_t n;
  uint64_t hash;
  size_t key_len; /* "user\0ext" without the final NUL; ext "" = all */
  char key[];
};

static uint64_t key_hash(const char *user, const char *ext) {
  uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
  for (; *user != '\0'; user++)
    h = (h ^ (unsigned char)*user) * UINT64_C(1099511628211);
  h *= UINT64_C(1099511628211); /* the NUL between them */
  for (; *ext != '\0'; ext++)
    h = (h ^ (unsigned char)*ext) * UINT64_C(1099511628211);
  return h;
}

static bool key_is(const index_bucket_t *b, uint64_t hash, const char *user,
                   const char *ext) {
  size_t ulen = strlen(user);
  return b->hash == hash && strcmp(b->key, user) == 0 &&
         strcmp(b->key + ulen + 1, ext) == 0;
}

static index_bucket_t *lookup(const call_index_t *ix, const char *user,
                              const char *ext) {
  if (ix->cap == 0)
    return NULL;
  uint64_t h = key_hash(user, ext);
  for (index_bucket_t *b = ix->slots[h & (ix->cap - 1)]; b != NULL;
       b = b->chain)
    if (key_is(b, h, user, ext))
      return b;
  return NULL;
}

/* Keeps at most one bucket per slot on average for `n` buckets. */
static int slots_reserve(call_index_t *ix, size_t n) {
  if (n <= ix->cap)
    return 0;
  size_t cap = ix->cap != 0 ? ix->cap : MIN_SLOTS;
  while (cap < n)
    cap *= 2;
  index_bucket_t **slots = usc_calloc(cap, sizeof *slots);
  if (slots == NULL)
    return USC_ERR_NOMEM;
  for (size_t i = 0; i < ix->cap; i++) {
    index_bucket_t *next;
    for (index_bucket_t *b = ix->slots[i]; b != NULL; b = next) {
      next = b->chain;
      b->chain = slots[b->hash & (cap - 1)];
      slots[b->hash & (cap - 1)] = b;
    }
  }
  usc_free(ix->slots);
  ix->slots = slots;
  ix->cap = cap;
  return 0;
}

static index_bucket_t *bucket_new(const char *user, const char *ext) {
  size_t ulen = strlen(user), elen = strlen(ext);
  index_bucket_t *b = usc_calloc(1, sizeof *b + ulen + elen + 2);
  if (b == NULL)
    return NULL;
  memcpy(b->key, user, ulen + 1);
  memcpy(b->key + ulen + 1, ext, elen + 1);
  b->key_len = ulen + 1 + elen;
  b->hash = key_hash(user, ext);
  return b;
}

static void bucket_insert(call_index_t *ix, index_bucket_t *b) {
  size_t slot = b->hash & (ix->cap - 1);
  b->chain = ix->slots[slot];
  ix->slots[slot] = b;
  ix->n_buckets++;
}

static void bucket_release(call_index_t *ix, index_bucket_t *b) {
  if (b->n > 0)
    return;
  index_bucket_t **p = &ix->slots[b->hash & (ix->cap - 1)];
  while (*p != b)
    p = &(*p)->chain;
  *p = b->chain;
  ix->n_buckets--;
  usc_free(b);
}

/* Calls are mostly added in list order: the walk starts at the tail. */
static void member_link(call_index_t *ix, index_bucket_t *b, index_member_t *m,
                        void *owner) {
  index_member_t *after = b->tail;
  while (after != NULL && ix->before(owner, after->owner))
    after = after->prev;
  m->owner = owner;
  m->bucket = b;
  m->prev = after;
  m->next = after != NULL ? after->next : b->head;
  if (m->next != NULL)
    m->next->prev = m;
  else
    b->tail = m;
  if (after != NULL)
    after->next = m;
  else
    b->head = m;
  b->n++;
}

static void member_unlink(call_index_t *ix, index_member_t *m) {
  index_bucket_t *b = m->bucket;
  if (m->prev != NULL)
    m->prev->next = m->next;
  else
    b->head = m->next;
  if (m->next != NULL)
    m->next->prev = m->prev;
  else
    b->tail = m->prev;
  m->bucket = NULL;
  b->n--;
  bucket_release(ix, b);
}

void index_init(call_index_t *ix, index_before_fn before) {
  memset(ix, 0, sizeof *ix);
  ix->before = before;
}

void index_free(call_index_t *ix) {
  for (size_t i = 0; i < ix->cap; i++) {
    index_bucket_t *next;
    for (index_bucket_t *b = ix->slots[i]; b != NULL; b = next) {
      next = b->chain;
      usc_free(b);
    }
  }
  usc_free(ix->slots);
  ix->slots = NULL;
  ix->cap = ix->n_buckets = 0;
}

int index_add(call_index_t *ix, index_entry_t *e, void *owner, const char *user,
              const char *const *exts, size_t n) {
  index_bucket_t *fresh[MAX_EXTS + 1] = {NULL};
  index_member_t *members[MAX_EXTS] = {NULL};
  const char *keys[MAX_EXTS + 1];
  size_t n_fresh = 0;
  if (n > MAX_EXTS)
    return USC_ERR_INVALID;
  keys[0] = "";
  for (size_t i = 0; i < n; i++)
    keys[i + 1] = exts[i];
  int rc = slots_reserve(ix, ix->n_buckets + n + 1);
  for (size_t i = 0; rc == 0 && i <= n; i++) {
    if (lookup(ix, user, keys[i]) != NULL)
      continue;
    if ((fresh[i] = bucket_new(user, keys[i])) == NULL)
      rc = USC_ERR_NOMEM;
    n_fresh++;
  }
  for (size_t i = 0; rc == 0 && i < n; i++)
    if ((members[i] = usc_calloc(1, sizeof *members[i])) == NULL)
      rc = USC_ERR_NOMEM;
  if (rc != 0) {
    for (size_t i = 0; i <= n; i++)
      usc_free(fresh[i]);
    for (size_t i = 0; i < n; i++)
      usc_free(members[i]);
    return rc;
  }
  for (size_t i = 0; i <= n; i++)
    if (fresh[i] != NULL)
      bucket_insert(ix, fresh[i]);
  member_link(ix, lookup(ix, user, ""), &e->all, owner);
  e->exts = NULL;
  for (size_t i = n; i > 0; i--) {
    member_link(ix, lookup(ix, user, keys[i]), members[i - 1], owner);
    members[i - 1]->sibling = e->exts;
    e->exts = members[i - 1];
  }
  return 0;
}

void index_remove(call_index_t *ix, index_entry_t *e) {
  index_member_t *next;
  for (index_member_t *m = e->exts; m != NULL; m = next) {
    next = m->sibling;
    member_unlink(ix, m);
    usc_free(m);
  }
  e->exts = NULL;
  if (e->all.bucket != NULL)
    member_unlink(ix, &e->all);
}

int index_reserve(call_index_t *ix, const char *user, const char *ext,
                  index_reservation_t *res) {
  res->bucket = NULL;
  res->member = usc_calloc(1, sizeof *res->member);
  if (res->member == NULL)
    return USC_ERR_NOMEM;
  if (lookup(ix, user, ext) != NULL)
    return 0;
  if (slots_reserve(ix, ix->n_buckets + 1) != 0 ||
      (res->bucket = bucket_new(user, ext)) == NULL) {
    usc_free(res->member);
    res->member = NULL;
    return USC_ERR_NOMEM;
  }
  bucket_insert(ix, res->bucket);
  return 0;
}

static const char *member_ext(const index_member_t *m) {
  return m->bucket->key + strlen(m->bucket->key) + 1;
}

static bool listed(const char *const *exts, size_t n, const char *ext) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(exts[i], ext) == 0)
      return true;
  return false;
}

void index_sync(call_index_t *ix, index_entry_t *e, const char *user,
                const char *const *exts, size_t n, index_reservation_t *res) {
  void *owner = e->all.owner;
  for (index_member_t **p = &e->exts; *p != NULL;) {
    index_member_t *m = *p;
    if (listed(exts, n, member_ext(m))) {
      p = &m->sibling;
      continue;
    }
    *p = m->sibling;
    member_unlink(ix, m);
    usc_free(m);
  }
  for (size_t i = 0; i < n; i++) {
    bool linked = false;
    for (index_member_t *m = e->exts; m != NULL && !linked; m = m->sibling)
      linked = strcmp(member_ext(m), exts[i]) == 0;
    index_bucket_t *b = linked ? NULL : lookup(ix, user, exts[i]);
    if (b == NULL || res == NULL || res->member == NULL)
      continue; /* linked, or (by the contract) not new */
    member_link(ix, b, res->member, owner);
    res->member->sibling = e->exts;
    e->exts = res->member;
    res->member = NULL;
  }
  if (res != NULL) {
    usc_free(res->member);
    res->member = NULL;
    if (res->bucket != NULL)
      bucket_release(ix, res->bucket);
    res->bucket = NULL;
  }
}

const index_bucket_t *index_find(const call_index_t *ix, const char *user,
                                 const char *ext) {
  return lookup(ix, user, ext != NULL ? ext : "");
}

size_t index_count(const index_bucket_t *b) { return b != NULL ? b->n : 0; }

const index_member_t *index_first(const index_bucket_t *b, bool backwards) {
  if (b == NULL)
    return NULL;
  return backwards ? b->tail : b->head;
}

const index_member_t *index_next(const index_member_t *m, bool backwards) {
  return backwards ? m->prev : m->next;
}
