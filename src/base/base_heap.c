/* The intrusive min-heap declared in base.h. Each node records its slot
 * (position + 1) so that removal and re-keying find it without a scan. */
#include "src/base/base.h"

#define MIN_CAP 8

static bool before(const usc_heap_node_t *a, const usc_heap_node_t *b) {
  return a->key < b->key || (a->key == b->key && a->tie < b->tie);
}

static void place(usc_heap_t *h, usc_heap_node_t *node, size_t i) {
  h->nodes[i] = node;
  node->slot = i + 1;
}

/* Moves the node at `i` up, then down, to where it belongs. */
static void settle(usc_heap_t *h, size_t i) {
  usc_heap_node_t *node = h->nodes[i];
  while (i > 0 && before(node, h->nodes[(i - 1) / 2])) {
    place(h, h->nodes[(i - 1) / 2], i);
    i = (i - 1) / 2;
  }
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->len)
      break;
    if (c + 1 < h->len && before(h->nodes[c + 1], h->nodes[c]))
      c++;
    if (!before(h->nodes[c], node))
      break;
    place(h, h->nodes[c], i);
    i = c;
  }
  place(h, node, i);
}

void usc_heap_init(usc_heap_t *heap) {
  heap->nodes = NULL;
  heap->len = heap->cap = 0;
}

void usc_heap_free(usc_heap_t *heap) {
  usc_free(heap->nodes);
  usc_heap_init(heap);
}

int usc_heap_reserve(usc_heap_t *heap, size_t n) {
  if (n <= heap->cap)
    return 0;
  size_t cap = heap->cap < MIN_CAP ? MIN_CAP : heap->cap;
  if (cap <= SIZE_MAX / 2 / sizeof *heap->nodes)
    cap *= 2;
  if (cap < n)
    cap = n;
  if (cap > SIZE_MAX / sizeof *heap->nodes)
    return USC_ERR_NOMEM;
  usc_heap_node_t **nodes = usc_realloc(heap->nodes, cap * sizeof *nodes);
  if (nodes == NULL)
    return USC_ERR_NOMEM;
  heap->nodes = nodes;
  heap->cap = cap;
  return 0;
}

int usc_heap_push(usc_heap_t *heap, usc_heap_node_t *node) {
  if (heap->len == heap->cap && usc_heap_reserve(heap, heap->len + 1) != 0)
    return USC_ERR_NOMEM;
  place(heap, node, heap->len++);
  settle(heap, heap->len - 1);
  return 0;
}

usc_heap_node_t *usc_heap_peek(const usc_heap_t *heap) {
  return heap->len > 0 ? heap->nodes[0] : NULL;
}

usc_heap_node_t *usc_heap_pop(usc_heap_t *heap) {
  usc_heap_node_t *top = usc_heap_peek(heap);
  if (top != NULL)
    usc_heap_remove(heap, top);
  return top;
}

void usc_heap_remove(usc_heap_t *heap, usc_heap_node_t *node) {
  if (node->slot == 0)
    return;
  size_t i = node->slot - 1;
  usc_heap_node_t *last = heap->nodes[--heap->len];
  node->slot = 0;
  if (last == node)
    return;
  place(heap, last, i);
  settle(heap, i);
}

void usc_heap_update(usc_heap_t *heap, usc_heap_node_t *node, int64_t key) {
  node->key = key;
  settle(heap, node->slot - 1);
}

size_t usc_heap_len(const usc_heap_t *heap) { return heap->len; }
