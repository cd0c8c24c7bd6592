/* The RPC table, and the query parameters and action members each RPC
 * carries: one table per fact, read by both directions so that they cannot
 * disagree. */
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

#define SERVICE_PREFIX "/uapi.phonecalls.v1.PhoneCallService/"
#define PB(name) &uapi__phonecalls__v1__##name##__descriptor

typedef struct {
  usc_xlate_rpc_info_t info;
  xl_kind_t kind;
  const char *segment; /* the create's path segment */
} rpc_row_t;

#define ACTION(name, req)                                                      \
  { {name, name, "PUT", PB(req), PB(phone_call)}, XL_KIND_ACTION, NULL }

static const rpc_row_t rows[USC_XLATE_RPC_COUNT] = {
    [USC_XLATE_LIST] = {{"ListPhoneCalls", NULL, "GET",
                         PB(list_phone_calls_request),
                         PB(list_phone_calls_response)},
                        XL_KIND_LIST,
                        NULL},
    [USC_XLATE_GET] = {{"GetPhoneCall", NULL, "GET", PB(get_phone_call_request),
                        PB(phone_call)},
                       XL_KIND_GET,
                       NULL},
    [USC_XLATE_CREATE_SIMPLE] = {{"CreateSimplePhoneCall", NULL, "POST",
                                  PB(create_phone_call_request),
                                  PB(create_phone_call_response)},
                                 XL_KIND_CREATE,
                                 "simple"},
    [USC_XLATE_CREATE_CALLBACK] = {{"CreateCallbackPhoneCall", NULL, "POST",
                                    PB(create_phone_call_request),
                                    PB(create_phone_call_response)},
                                   XL_KIND_CREATE,
                                   "callback"},
    [USC_XLATE_CREATE_CONFERENCE_INVITE] = {{"CreateConferenceInvitePhoneCall",
                                             NULL, "POST",
                                             PB(create_phone_call_request),
                                             PB(create_phone_call_response)},
                                            XL_KIND_CREATE,
                                            "conferenceInvite"},
    [USC_XLATE_HANGUP] = {{"HangupPhoneCalls", NULL, "DELETE",
                           PB(hangup_phone_calls_request),
                           PB(hangup_phone_calls_response)},
                          XL_KIND_HANGUP,
                          NULL},
    [USC_XLATE_ON_HOLD] = ACTION("OnHold", on_hold_request),
    [USC_XLATE_OFF_HOLD] = ACTION("OffHold", off_hold_request),
    [USC_XLATE_START_RECORDING] =
        ACTION("StartRecording", start_recording_request),
    [USC_XLATE_STOP_RECORDING] =
        ACTION("StopRecording", stop_recording_request),
    [USC_XLATE_PARK] = ACTION("Park", park_request),
    [USC_XLATE_UNPARK] = ACTION("UnPark", un_park_request),
    [USC_XLATE_PICK_UP] = ACTION("PickUp", pick_up_request),
    [USC_XLATE_BARGE_IN] = ACTION("BargeIn", barge_in_request),
    [USC_XLATE_WHISPER] = ACTION("Whisper", whisper_request),
    [USC_XLATE_MONITOR] = ACTION("Monitor", monitor_request),
    [USC_XLATE_TRANSFER] = ACTION("Transfer", transfer_request),
    [USC_XLATE_TRANSFER_TO_VOICEMAIL] =
        ACTION("TransferToVoicemail", transfer_to_voicemail_request),
};

static bool rpc_ok(usc_xlate_rpc_t rpc) {
  return (unsigned)rpc < USC_XLATE_RPC_COUNT;
}

const usc_xlate_rpc_info_t *usc_xlate_rpc_info(usc_xlate_rpc_t rpc) {
  return rpc_ok(rpc) ? &rows[rpc].info : NULL;
}

int usc_xlate_rpc_find(const char *name, size_t len, usc_xlate_rpc_t *rpc) {
  size_t plen = strlen(SERVICE_PREFIX);
  if (len > plen && memcmp(name, SERVICE_PREFIX, plen) == 0) {
    name += plen;
    len -= plen;
  }
  for (int i = 0; i < USC_XLATE_RPC_COUNT; i++) {
    if (xl_eq(name, len, rows[i].info.method)) {
      *rpc = (usc_xlate_rpc_t)i;
      return 0;
    }
  }
  return USC_ERR_NOT_FOUND;
}

bool usc_xlate_rpc_is_action(usc_xlate_rpc_t rpc) {
  return rpc_ok(rpc) && rows[rpc].kind == XL_KIND_ACTION;
}

xl_kind_t xl_kind(usc_xlate_rpc_t rpc) { return rows[rpc].kind; }

const char *xl_create_segment(usc_xlate_rpc_t rpc) {
  return rpc_ok(rpc) ? rows[rpc].segment : NULL;
}

bool xl_action_find(const char *action, size_t len, usc_xlate_rpc_t *rpc) {
  for (int i = 0; i < USC_XLATE_RPC_COUNT; i++) {
    const char *name = rows[i].info.action;
    if (name != NULL && xl_eq(action, len, name)) {
      *rpc = (usc_xlate_rpc_t)i;
      return true;
    }
  }
  return false;
}

bool xl_request_type_ok(usc_xlate_rpc_t rpc, const ProtobufCMessage *msg) {
  return rpc_ok(rpc) && msg != NULL &&
         msg->descriptor == rows[rpc].info.request;
}

/* ---- parameters ---- */

static const xl_param_t list_params[] = {
    {"count", "count", NULL, XL_INT32, "count_invalid"},
    {"start_index", "startIndex", NULL, XL_INT32, "startindex_invalid"},
    {"filter_by", "filterBy", NULL, XL_STR, "filterby_invalid"},
    {"filter_op", "filterOp", NULL, XL_STR, "filterop_invalid"},
    {"filter_value", "filterValue", NULL, XL_STR, "filtervalue_invalid"},
    {"sort_order", "sortOrder", NULL, XL_STR, "sortorder_invalid"},
    {"fields", "fields", NULL, XL_STRV, "fields_invalid"},
};

/* The conference parameters come last so that the other creates can use a
 * prefix of the table. */
static const xl_param_t create_params[] = {
    {"wait_for_pickup", "waitForPickup", "waitForPickUp", XL_INT32,
     "pc_waitforpickup_invalid"},
    {"call_duration", "callDuration", NULL, XL_INT32,
     "pc_callduration_invalid"},
    {"allow_public_transfer", "allowPublicTransfer", NULL, XL_BOOL,
     "pc_allowpublictransfer_invalid"},
    {"video", "video", NULL, XL_BOOL, "pc_video_invalid"},
    {"conference_number", "number", NULL, XL_INT32, "pc_number_invalid"},
    {"pin", "pin", NULL, XL_STR, "pc_pin_invalid"},
};
#define CONFERENCE_ONLY 2

static const xl_param_t hangup_params[] = {
    {"phone_number", "phoneNumber", NULL, XL_STR, "pc_phonenumber_invalid"},
};

static const xl_param_t action_params[] = {
    {"phone_call_view_id", "phoneCallViewId", NULL, XL_STR,
     "pc_phoncallview_invalid"},
    {"send_call_to", "sendCallTo", NULL, XL_STR, "pc_sendcallto_invalid"},
    {"caller_id", "callerId", "callerID", XL_STR, "pc_callerid_invalid"},
    {"wait_for_pickup", "waitForPickup", "waitForPickUp", XL_INT32,
     "pc_waitforpickup_invalid"},
    {"max_in_parking", "maxInParking", NULL, XL_INT32,
     "pc_maxinparking_invalid"},
    {"format", "format", NULL, XL_STR, "pc_format_invalid"},
    {"private", "private", NULL, XL_BOOL, "pc_private_invalid"},
    {"transfer_from_number", "transferFromNumber", NULL, XL_STR,
     "pc_transferfromnumber_invalid"},
    {"transfer_number", "transferNumber", NULL, XL_STR,
     "pc_transfernumber_invalid"},
};

const xl_param_t *xl_query_params(usc_xlate_rpc_t rpc, size_t *n) {
  switch (xl_kind(rpc)) {
  case XL_KIND_LIST:
    *n = USC_ARRAY_LEN(list_params);
    return list_params;
  case XL_KIND_CREATE:
    *n = USC_ARRAY_LEN(create_params);
    if (rpc != USC_XLATE_CREATE_CONFERENCE_INVITE)
      *n -= CONFERENCE_ONLY;
    return create_params;
  case XL_KIND_HANGUP:
    *n = USC_ARRAY_LEN(hangup_params);
    return hangup_params;
  default:
    *n = 0;
    return NULL;
  }
}

const xl_param_t *xl_action_params(size_t *n) {
  *n = USC_ARRAY_LEN(action_params);
  return action_params;
}
