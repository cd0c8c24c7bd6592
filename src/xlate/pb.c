/* Request fields read and written by name through protobuf-c descriptors,
 * so that the twelve action messages (and the address fields every request
 * shares) go through one code path. */
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessage *m,
                                                const char *name,
                                                ProtobufCType type,
                                                ProtobufCLabel label) {
  if (m == NULL)
    return NULL;
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
  if (f == NULL || f->type != type || f->label != label)
    return NULL;
  return f;
}

static void *slot(const ProtobufCMessage *m,
                  const ProtobufCFieldDescriptor *f) {
  return (char *)m + f->offset;
}

/* A wrapper message field (Int32Value, BoolValue) of the given type. */
static const ProtobufCFieldDescriptor *
wrapper_of(const ProtobufCMessage *m, const char *name,
           const ProtobufCMessageDescriptor *type) {
  const ProtobufCFieldDescriptor *f =
      field_of(m, name, PROTOBUF_C_TYPE_MESSAGE, PROTOBUF_C_LABEL_NONE);
  return f != NULL && f->descriptor == type ? f : NULL;
}

const char *xl_pb_str(const ProtobufCMessage *m, const char *name) {
  const ProtobufCFieldDescriptor *f =
      field_of(m, name, PROTOBUF_C_TYPE_STRING, PROTOBUF_C_LABEL_NONE);
  const char *s = f != NULL ? *(const char **)slot(m, f) : NULL;
  return s != NULL ? s : "";
}

bool xl_pb_int32(const ProtobufCMessage *m, const char *name, int32_t *v) {
  const ProtobufCFieldDescriptor *f =
      wrapper_of(m, name, &google__protobuf__int32_value__descriptor);
  const Google__Protobuf__Int32Value *w =
      f != NULL ? *(Google__Protobuf__Int32Value **)slot(m, f) : NULL;
  if (w != NULL)
    *v = w->value;
  return w != NULL;
}

bool xl_pb_bool(const ProtobufCMessage *m, const char *name, bool *v) {
  const ProtobufCFieldDescriptor *f =
      wrapper_of(m, name, &google__protobuf__bool_value__descriptor);
  const Google__Protobuf__BoolValue *w =
      f != NULL ? *(Google__Protobuf__BoolValue **)slot(m, f) : NULL;
  if (w != NULL)
    *v = w->value != 0;
  return w != NULL;
}

size_t xl_pb_strv(const ProtobufCMessage *m, const char *name,
                  char *const **v) {
  const ProtobufCFieldDescriptor *f =
      field_of(m, name, PROTOBUF_C_TYPE_STRING, PROTOBUF_C_LABEL_REPEATED);
  if (f == NULL)
    return 0;
  *v = *(char ***)slot(m, f);
  return *(size_t *)((char *)m + f->quantifier_offset);
}

bool xl_pb_has(const ProtobufCMessage *m, const char *name) {
  return m != NULL && protobuf_c_message_descriptor_get_field_by_name(
                          m->descriptor, name) != NULL;
}

/* ---- UTF-8 ---- */

/* The fields of a oneof share their storage: only the one set is read. */
static bool field_present(const ProtobufCMessage *m,
                          const ProtobufCFieldDescriptor *f) {
  return !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
         *(const uint32_t *)((const char *)m + f->quantifier_offset) == f->id;
}

static bool value_utf8_ok(const ProtobufCFieldDescriptor *f, const void *v) {
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    const char *s = *(char *const *)v;
    return s == NULL || xl_utf8_ok(s, strlen(s));
  }
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    const ProtobufCMessage *sub = *(ProtobufCMessage *const *)v;
    return sub == NULL || usc_xlate_message_utf8_ok(sub);
  }
  return true;
}

bool usc_xlate_message_utf8_ok(const ProtobufCMessage *message) {
  const ProtobufCMessageDescriptor *d = message->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (!field_present(message, f))
      continue;
    const char *at = (const char *)message + f->offset;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
      if (!value_utf8_ok(f, at))
        return false;
      continue;
    }
    size_t n = *(const size_t *)((const char *)message + f->quantifier_offset);
    const void *const *items = *(const void *const *const *)at;
    for (size_t k = 0; k < n; k++) {
      if (!value_utf8_ok(f, &items[k]))
        return false;
    }
  }
  return true;
}

/* ---- arena ---- */

void *xl_alloc(ProtobufCAllocator *a, size_t size) {
  return a->alloc(a->allocator_data, size);
}

void *xl_pb_new(ProtobufCAllocator *a, const ProtobufCMessageDescriptor *d) {
  void *m = xl_alloc(a, d->sizeof_message);
  if (m != NULL)
    protobuf_c_message_init(d, m);
  return m;
}

char *xl_strndup(ProtobufCAllocator *a, const char *s, size_t len) {
  char *copy = xl_alloc(a, len + 1);
  if (copy != NULL) {
    if (len > 0)
      memcpy(copy, s, len);
    copy[len] = '\0';
  }
  return copy;
}

xl_time_t *xl_time_new(ProtobufCAllocator *a, int64_t seconds, int32_t nanos) {
  xl_time_t *t = xl_pb_new(a, &google__protobuf__timestamp__descriptor);
  if (t != NULL) {
    t->seconds = seconds;
    t->nanos = nanos;
  }
  return t;
}

Google__Protobuf__Int32Value *xl_int32_new(ProtobufCAllocator *a, int32_t v) {
  Google__Protobuf__Int32Value *w =
      xl_pb_new(a, &google__protobuf__int32_value__descriptor);
  if (w != NULL)
    w->value = v;
  return w;
}

/* ---- setters ---- */

int xl_pb_set_str(ProtobufCMessage *m, const char *name, const char *s,
                  size_t len, ProtobufCAllocator *a) {
  const ProtobufCFieldDescriptor *f =
      field_of(m, name, PROTOBUF_C_TYPE_STRING, PROTOBUF_C_LABEL_NONE);
  if (f == NULL)
    return USC_ERR_NOT_FOUND;
  char *copy = xl_strndup(a, s, len);
  if (copy == NULL)
    return USC_ERR_NOMEM;
  *(char **)slot(m, f) = copy;
  return 0;
}

int xl_pb_set_int32(ProtobufCMessage *m, const char *name, int32_t v,
                    ProtobufCAllocator *a) {
  const ProtobufCFieldDescriptor *f =
      wrapper_of(m, name, &google__protobuf__int32_value__descriptor);
  if (f == NULL)
    return USC_ERR_NOT_FOUND;
  Google__Protobuf__Int32Value *w = xl_int32_new(a, v);
  if (w == NULL)
    return USC_ERR_NOMEM;
  *(Google__Protobuf__Int32Value **)slot(m, f) = w;
  return 0;
}

int xl_pb_set_bool(ProtobufCMessage *m, const char *name, bool v,
                   ProtobufCAllocator *a) {
  const ProtobufCFieldDescriptor *f =
      wrapper_of(m, name, &google__protobuf__bool_value__descriptor);
  if (f == NULL)
    return USC_ERR_NOT_FOUND;
  Google__Protobuf__BoolValue *w =
      xl_pb_new(a, &google__protobuf__bool_value__descriptor);
  if (w == NULL)
    return USC_ERR_NOMEM;
  w->value = v;
  *(Google__Protobuf__BoolValue **)slot(m, f) = w;
  return 0;
}

/* Repeated fields are sized once: growing them one element at a time in
 * an arena would cost memory quadratic in their length. */
int xl_pb_strv_reserve(ProtobufCMessage *m, const char *name, size_t cap,
                       ProtobufCAllocator *a) {
  const ProtobufCFieldDescriptor *f =
      field_of(m, name, PROTOBUF_C_TYPE_STRING, PROTOBUF_C_LABEL_REPEATED);
  if (f == NULL)
    return USC_ERR_NOT_FOUND;
  if (cap > SIZE_MAX / sizeof(char *) - 1)
    return USC_ERR_NOMEM;
  char **v = xl_alloc(a, (cap + 1) * sizeof(char *));
  if (v == NULL)
    return USC_ERR_NOMEM;
  *(char ***)slot(m, f) = v;
  *(size_t *)((char *)m + f->quantifier_offset) = 0;
  return 0;
}

int xl_pb_add_str(ProtobufCMessage *m, const char *name, const char *s,
                  size_t len, ProtobufCAllocator *a) {
  const ProtobufCFieldDescriptor *f =
      field_of(m, name, PROTOBUF_C_TYPE_STRING, PROTOBUF_C_LABEL_REPEATED);
  if (f == NULL)
    return USC_ERR_NOT_FOUND;
  char *copy = xl_strndup(a, s, len);
  if (copy == NULL)
    return USC_ERR_NOMEM;
  size_t *n = (size_t *)((char *)m + f->quantifier_offset);
  (*(char ***)slot(m, f))[(*n)++] = copy;
  return 0;
}
