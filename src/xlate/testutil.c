#include "src/xlate/testutil.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/base/base.h"

struct tblock {
  tblock_t *next;
  _Alignas(16) unsigned char data[];
};

static void *t_alloc(void *data, size_t size) {
  tarena_t *a = data;
  tblock_t *b = usc_malloc(sizeof(*b) + size);
  if (b == NULL)
    return NULL;
  b->next = a->blocks;
  a->blocks = b;
  return b->data;
}

static void t_free(void *data, void *p) {
  (void)data;
  (void)p;
}

void tarena_init(tarena_t *a) {
  a->pb = (ProtobufCAllocator){t_alloc, t_free, a};
  a->blocks = NULL;
}

void tarena_reset(tarena_t *a) {
  while (a->blocks != NULL) {
    tblock_t *next = a->blocks->next;
    usc_free(a->blocks);
    a->blocks = next;
  }
}

void assert_json_eq_(const char *got, size_t len, const char *want,
                     const char *file, int line) {
  if (got == NULL)
    _fail(file, line);
  char *copy = strndup(got, len);
  json_object *g = json_tokener_parse(copy);
  json_object *w = json_tokener_parse(want);
  bool same = g != NULL && w != NULL && json_object_equal(g, w);
  if (!same)
    print_error("JSON differs\n got: %s\nwant: %s\n", copy, want);
  json_object_put(g);
  json_object_put(w);
  free(copy);
  if (!same)
    _fail(file, line);
}

static uint8_t *packed(const ProtobufCMessage *m, size_t *len) {
  *len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(*len + 1);
  protobuf_c_message_pack(m, buf);
  return buf;
}

void assert_pb_eq_(const ProtobufCMessage *a, const ProtobufCMessage *b,
                   const char *file, int line) {
  if (a == NULL || b == NULL || a->descriptor != b->descriptor) {
    print_error("messages of different types (or NULL)\n");
    _fail(file, line);
  }
  size_t alen, blen;
  uint8_t *ab = packed(a, &alen), *bb = packed(b, &blen);
  bool same = alen == blen && memcmp(ab, bb, alen) == 0;
  free(ab);
  free(bb);
  if (!same) {
    print_error("%s messages differ (%zu and %zu bytes packed)\n",
                a->descriptor->short_name, alen, blen);
    _fail(file, line);
  }
}

Google__Protobuf__Int32Value *t_i32(tarena_t *a, int32_t v) {
  Google__Protobuf__Int32Value *w = t_alloc(a, sizeof(*w));
  google__protobuf__int32_value__init(w);
  w->value = v;
  return w;
}

Google__Protobuf__BoolValue *t_bool(tarena_t *a, bool v) {
  Google__Protobuf__BoolValue *w = t_alloc(a, sizeof(*w));
  google__protobuf__bool_value__init(w);
  w->value = v;
  return w;
}

Google__Protobuf__Timestamp *t_time(tarena_t *a, int64_t sec, int32_t nanos) {
  Google__Protobuf__Timestamp *t = t_alloc(a, sizeof(*t));
  google__protobuf__timestamp__init(t);
  t->seconds = sec;
  t->nanos = nanos;
  return t;
}

char **t_strv(tarena_t *a, size_t *n, ...) {
  va_list ap;
  char **v = t_alloc(a, 16 * sizeof(char *));
  *n = 0;
  va_start(ap, n);
  for (const char *s = va_arg(ap, const char *); s != NULL && *n < 16;
       s = va_arg(ap, const char *))
    v[(*n)++] = (char *)s;
  va_end(ap);
  return v;
}

int t_exhaust(int (*attempt)(void *ctx), void (*reset)(void *ctx), void *ctx,
              size_t max, size_t *failures) {
  *failures = 0;
  for (size_t nth = 1; nth <= max; nth++) {
    usc_alloc_fail_at(nth);
    int rc = attempt(ctx);
    size_t made = usc_alloc_fail_at(0);
    if (rc != USC_ERR_NOMEM) {
      /* Success only once no allocation failed: a failure must never be
       * swallowed. */
      if (made >= nth)
        fail_msg("allocation %zu failed and the call went on (rc %d)", nth, rc);
      return rc;
    }
    (*failures)++;
    reset(ctx);
  }
  fail_msg("still out of memory after %zu attempts", max);
  return USC_ERR_NOMEM;
}

ProtobufCMessage *t_new(tarena_t *a, const ProtobufCMessageDescriptor *d) {
  ProtobufCMessage *m = t_alloc(a, d->sizeof_message);
  protobuf_c_message_init(d, m);
  return m;
}

ProtobufCMessage *t_request(tarena_t *a, usc_xlate_rpc_t rpc) {
  return t_new(a, usc_xlate_rpc_info(rpc)->request);
}

static void **t_slot(ProtobufCMessage *m, const char *field) {
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);
  if (f == NULL)
    fail_msg("%s has no field %s", m->descriptor->name, field);
  return (void **)((char *)m + f->offset);
}

void t_set(ProtobufCMessage *m, const char *field, const char *value) {
  *t_slot(m, field) = (void *)value;
}

void t_set_i32(tarena_t *a, ProtobufCMessage *m, const char *field, int32_t v) {
  *t_slot(m, field) = t_i32(a, v);
}

void t_set_bool(tarena_t *a, ProtobufCMessage *m, const char *field, bool v) {
  *t_slot(m, field) = t_bool(a, v);
}

Uapi__Phonecalls__V1__PhoneCallView **t_alloc_views(tarena_t *a, size_t n) {
  Uapi__Phonecalls__V1__PhoneCallView **v = t_alloc(a, n * sizeof(*v) + 1);
  for (size_t i = 0; i < n; i++)
    v[i] = (Uapi__Phonecalls__V1__PhoneCallView *)t_new(
        a, &uapi__phonecalls__v1__phone_call_view__descriptor);
  return v;
}
