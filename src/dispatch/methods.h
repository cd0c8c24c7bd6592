/* The methods of PhoneCallService and generic access to their request
 * fields by name, so that messages of different types that share field
 * names (the twelve actions) share one handler. Private to dispatch. */
#ifndef USC_DISPATCH_METHODS_H
#define USC_DISPATCH_METHODS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/grpc/grpc.h"
#include "src/state/state.h"

#define SERVICE_NAME "uapi.phonecalls.v1.PhoneCallService"

typedef enum {
  KIND_LIST,
  KIND_GET,
  KIND_CREATE,
  KIND_HANGUP,
  KIND_ACTION,
  KIND_WATCH,
  /* The standard services (services.c), answered by the sidecar itself. */
  KIND_HEALTH_CHECK,
  KIND_HEALTH_WATCH,
  KIND_HEALTH_LIST,
  KIND_REFLECTION,
} kind_t;

typedef struct {
  const char *name;
  kind_t kind;
  int sub; /* usc_state_create_kind_t or usc_state_action_kind_t */
  const ProtobufCMessageDescriptor *request;
} method_t;

/* Whether `m` takes a stream of request messages, each answered as it
 * comes; the others take exactly one request message. */
static inline bool method_client_stream(const method_t *m) {
  return m->kind == KIND_REFLECTION;
}

extern const method_t methods[];
extern const size_t n_methods;

/* The method named `name` (e.g. "OffHold"), or NULL. */
const method_t *method_named(const char *name, size_t len);

typedef enum {
  F_USER_ID,
  F_EXTENSION,
  F_PHONE_CALL_ID,
  F_VIEW_ID,
  F_SEND_CALL_TO,
  F_CALLER_ID,
  F_FORMAT,
  F_TRANSFER_FROM,
  F_TRANSFER_NUMBER,
  F_MAX_IN_PARKING,
  F_WAIT_FOR_PICKUP,
  F_PRIVATE,
  F_COUNT,
} field_t;

/* Offsets of each field in each method's request; -1 where absent. */
typedef struct {
  int32_t offset[32][F_COUNT];
} fields_t;

void fields_init(fields_t *fields);
const char *field_str(const fields_t *fields, const method_t *m,
                      const void *msg, field_t f);
/* Sets a string field; the value must outlive the message. */
void field_set_str(const fields_t *fields, const method_t *m, void *msg,
                   field_t f, const char *value);
bool field_int32(const fields_t *fields, const method_t *m, const void *msg,
                 field_t f, int32_t *value);
bool field_bool(const fields_t *fields, const method_t *m, const void *msg,
                field_t f, bool *value);

/* The call address of any request; `identity` is who is asking (NULL:
 * the engine's default user). */
usc_state_address_t address_of(const fields_t *fields, const method_t *m,
                               const void *msg, const char *identity);

/* What serving a request came to: a response message, or a status with
 * the UAPI error code and a sentence for a person. */
typedef struct {
  usc_grpc_status_t status;
  const char *uapi_code; /* static, or NULL */
  char message[256];
  const ProtobufCMessage *response; /* when OK; arena memory */
} outcome_t;

void outcome_error(outcome_t *out, usc_grpc_status_t status,
                   const char *uapi_code, const char *message);

#endif
