/* The project's proto files as serialized google.protobuf.FileDescriptorProto
 * messages, for gRPC server reflection: generated at build time from
 * `protoc --include_imports --descriptor_set_out` by gen_descriptor_index.py
 * into descriptor_index.c. */
#ifndef USC_PROTO_DESCRIPTOR_INDEX_H
#define USC_PROTO_DESCRIPTOR_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *name;    /* e.g. "grpc/health/v1/health.proto" */
  const uint8_t *data; /* the serialized FileDescriptorProto */
  size_t len;
  const uint16_t *deps; /* indexes of its direct imports in the table */
  size_t n_deps;
  /* The fully qualified names it defines: messages and enums (nested ones
   * too), services and their methods, sorted (strcmp). */
  const char *const *symbols;
  size_t n_symbols;
  /* The ones of those that are message types. */
  const char *const *messages;
  size_t n_messages;
} usc_descriptor_file_t;

extern const usc_descriptor_file_t usc_descriptor_files[];
extern const size_t usc_descriptor_n_files;

/* Every service defined outside google/protobuf, fully qualified. */
extern const char *const usc_descriptor_services[];
extern const size_t usc_descriptor_n_services;

#endif
