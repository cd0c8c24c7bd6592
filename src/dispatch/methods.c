#include "src/dispatch/methods.h"

#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "uapi/phonecalls/v1/phonecalls.pb-c.h"

#define PB(name) &uapi__phonecalls__v1__##name##__descriptor

const method_t methods[] = {
    {"ListPhoneCalls", KIND_LIST, 0, PB(list_phone_calls_request)},
    {"GetPhoneCall", KIND_GET, 0, PB(get_phone_call_request)},
    {"CreateSimplePhoneCall", KIND_CREATE, USC_STATE_CREATE_SIMPLE,
     PB(create_phone_call_request)},
    {"CreateCallbackPhoneCall", KIND_CREATE, USC_STATE_CREATE_CALLBACK,
     PB(create_phone_call_request)},
    {"CreateConferenceInvitePhoneCall", KIND_CREATE,
     USC_STATE_CREATE_CONFERENCE_INVITE, PB(create_phone_call_request)},
    {"HangupPhoneCalls", KIND_HANGUP, 0, PB(hangup_phone_calls_request)},
    {"OnHold", KIND_ACTION, USC_STATE_ON_HOLD, PB(on_hold_request)},
    {"OffHold", KIND_ACTION, USC_STATE_OFF_HOLD, PB(off_hold_request)},
    {"StartRecording", KIND_ACTION, USC_STATE_START_RECORDING,
     PB(start_recording_request)},
    {"StopRecording", KIND_ACTION, USC_STATE_STOP_RECORDING,
     PB(stop_recording_request)},
    {"Park", KIND_ACTION, USC_STATE_PARK, PB(park_request)},
    {"UnPark", KIND_ACTION, USC_STATE_UNPARK, PB(un_park_request)},
    {"PickUp", KIND_ACTION, USC_STATE_PICK_UP, PB(pick_up_request)},
    {"BargeIn", KIND_ACTION, USC_STATE_BARGE_IN, PB(barge_in_request)},
    {"Whisper", KIND_ACTION, USC_STATE_WHISPER, PB(whisper_request)},
    {"Monitor", KIND_ACTION, USC_STATE_MONITOR, PB(monitor_request)},
    {"Transfer", KIND_ACTION, USC_STATE_TRANSFER, PB(transfer_request)},
    {"TransferToVoicemail", KIND_ACTION, USC_STATE_TRANSFER_TO_VOICEMAIL,
     PB(transfer_to_voicemail_request)},
    {"WatchPhoneCalls", KIND_WATCH, 0, PB(watch_phone_calls_request)},
};

const size_t n_methods = USC_ARRAY_LEN(methods);

static const char *const field_names[F_COUNT] = {
    "user_id",         "extension",
    "phone_call_id",   "phone_call_view_id",
    "send_call_to",    "caller_id",
    "format",          "transfer_from_number",
    "transfer_number", "max_in_parking",
    "wait_for_pickup", "private",
};

const method_t *method_named(const char *name, size_t len) {
  for (size_t i = 0; i < n_methods; i++) {
    if (strlen(methods[i].name) == len &&
        memcmp(methods[i].name, name, len) == 0)
      return &methods[i];
  }
  return NULL;
}

void fields_init(fields_t *fields) {
  _Static_assert(USC_ARRAY_LEN(methods) <= USC_ARRAY_LEN(fields->offset),
                 "room for every method");
  for (size_t m = 0; m < n_methods; m++) {
    for (size_t f = 0; f < F_COUNT; f++) {
      const ProtobufCFieldDescriptor *fd =
          protobuf_c_message_descriptor_get_field_by_name(methods[m].request,
                                                          field_names[f]);
      fields->offset[m][f] = fd != NULL ? (int32_t)fd->offset : -1;
    }
  }
}

static const void *field_ptr(const fields_t *fields, const method_t *m,
                             const void *msg, field_t f) {
  int32_t off = fields->offset[m - methods][f];
  return off < 0 ? NULL : (const char *)msg + off;
}

const char *field_str(const fields_t *fields, const method_t *m,
                      const void *msg, field_t f) {
  const void *p = field_ptr(fields, m, msg, f);
  return p != NULL ? *(char *const *)p : "";
}

void field_set_str(const fields_t *fields, const method_t *m, void *msg,
                   field_t f, const char *value) {
  int32_t off = fields->offset[m - methods][f];
  if (off >= 0)
    *(const char **)((char *)msg + off) = value;
}

bool field_int32(const fields_t *fields, const method_t *m, const void *msg,
                 field_t f, int32_t *value) {
  const void *p = field_ptr(fields, m, msg, f);
  const Google__Protobuf__Int32Value *v =
      p != NULL ? *(Google__Protobuf__Int32Value *const *)p : NULL;
  if (v != NULL)
    *value = v->value;
  return v != NULL;
}

bool field_bool(const fields_t *fields, const method_t *m, const void *msg,
                field_t f, bool *value) {
  const void *p = field_ptr(fields, m, msg, f);
  const Google__Protobuf__BoolValue *v =
      p != NULL ? *(Google__Protobuf__BoolValue *const *)p : NULL;
  if (v != NULL)
    *value = v->value;
  return v != NULL;
}

usc_state_address_t address_of(const fields_t *fields, const method_t *m,
                               const void *msg, const char *identity) {
  return (usc_state_address_t){
      .identity = identity,
      .user_id = field_str(fields, m, msg, F_USER_ID),
      .extension = field_str(fields, m, msg, F_EXTENSION),
      .phone_call_id = field_str(fields, m, msg, F_PHONE_CALL_ID),
  };
}

void outcome_error(outcome_t *out, usc_grpc_status_t status,
                   const char *uapi_code, const char *message) {
  out->status = status;
  out->uapi_code = uapi_code;
  out->response = NULL;
  snprintf(out->message, sizeof(out->message), "%s", message);
}
