/* The call address grammar (native-engine.md "Validation"). Whatever passes
 * here is made only of [A-Za-z0-9@*], so it can go into a path as it is:
 * nothing a client sends can add a '/', '?', '#', '%' or "..". */
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

#define ID_MAX 64
#define EXTENSION_MAX 32

static bool alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9');
}

static bool all_alnum(const char *s, size_t len, size_t max) {
  if (len == 0 || len > max)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (!alnum(s[i]))
      return false;
  }
  return true;
}

bool xl_user_ok(const char *s, size_t len) {
  return xl_eq(s, len, "@me") || xl_eq(s, len, "@viewer") ||
         xl_eq(s, len, "@owner") || all_alnum(s, len, ID_MAX);
}

bool xl_extension_ok(const char *s, size_t len) {
  if (xl_eq(s, len, "@self"))
    return true;
  if (len == 0 || len > EXTENSION_MAX)
    return false;
  bool digit = false;
  for (size_t i = 0; i < len; i++) {
    if (s[i] >= '0' && s[i] <= '9')
      digit = true;
    else if (s[i] != '*')
      return false;
  }
  return digit;
}

bool xl_call_id_ok(const char *s, size_t len) {
  return all_alnum(s, len, ID_MAX);
}

bool xl_view_id_ok(const char *s, size_t len) {
  return len == 2 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9';
}

const char *xl_user_segment(const char *user_id) {
  return user_id[0] == '\0' ? "@me" : user_id;
}

/* ---- per RPC ---- */

static bool call_id_required(usc_xlate_rpc_t rpc) {
  xl_kind_t kind = xl_kind(rpc);
  return kind == XL_KIND_GET || kind == XL_KIND_ACTION;
}

/* Transfers may name the leg by transfer_number instead. */
static bool view_id_required(usc_xlate_rpc_t rpc) {
  return usc_xlate_rpc_is_action(rpc) && rpc != USC_XLATE_TRANSFER &&
         rpc != USC_XLATE_TRANSFER_TO_VOICEMAIL;
}

int xl_check_user(const char *user, usc_xlate_error_t *err) {
  if (user[0] == '\0' || xl_user_ok(user, strlen(user)))
    return 0;
  xl_fail(err, USC_GRPC_INVALID_ARGUMENT, "user_invalid",
          "user_id must be @me, @viewer, @owner or 1 to 64 letters and "
          "digits");
  return USC_ERR_INVALID;
}

/* A create's extension places the call, so "all extensions" is no use. */
int xl_check_extension(usc_xlate_rpc_t rpc, const char *ext,
                       usc_xlate_error_t *err) {
  bool ok = xl_extension_ok(ext, strlen(ext));
  if (xl_kind(rpc) == XL_KIND_CREATE && strcmp(ext, "@self") == 0)
    ok = false;
  if (ok)
    return 0;
  xl_fail(err, USC_GRPC_INVALID_ARGUMENT, "extension_invalid",
          "extension must be @self or 1 to 32 digits and '*' (such as "
          "0003*210)%s",
          xl_kind(rpc) == XL_KIND_CREATE ? ", and not @self for a create" : "");
  return USC_ERR_INVALID;
}

int xl_check_call_id(usc_xlate_rpc_t rpc, const char *id,
                     usc_xlate_error_t *err) {
  if (id[0] == '\0' && !call_id_required(rpc))
    return 0;
  if (xl_call_id_ok(id, strlen(id)))
    return 0;
  xl_fail(err, USC_GRPC_INVALID_ARGUMENT, "pc_phoncall_invalid",
          "phone_call_id %s 1 to 64 letters and digits",
          call_id_required(rpc) ? "is required:" : "must be");
  return USC_ERR_INVALID;
}

static int check_view_id(usc_xlate_rpc_t rpc, const char *view,
                         usc_xlate_error_t *err) {
  if (!usc_xlate_rpc_is_action(rpc) ||
      (view[0] == '\0' && !view_id_required(rpc)))
    return 0;
  if (xl_view_id_ok(view, strlen(view)))
    return 0;
  xl_fail(err, USC_GRPC_INVALID_ARGUMENT, "pc_phoncallview_invalid",
          "phone_call_view_id %s two digits, such as \"01\"",
          view_id_required(rpc) ? "is required:" : "must be");
  return USC_ERR_INVALID;
}

int usc_xlate_request_check(usc_xlate_rpc_t rpc,
                            const ProtobufCMessage *request,
                            usc_xlate_error_t *error) {
  if (!xl_request_type_ok(rpc, request)) {
    xl_fail(error, USC_GRPC_INTERNAL, NULL,
            "request message of the wrong type for the method");
    return USC_ERR_INVALID;
  }
  int rc = xl_check_user(xl_pb_str(request, "user_id"), error);
  if (rc == 0)
    rc = xl_check_extension(rpc, xl_pb_str(request, "extension"), error);
  if (rc == 0 && xl_kind(rpc) != XL_KIND_CREATE)
    rc = xl_check_call_id(rpc, xl_pb_str(request, "phone_call_id"), error);
  if (rc == 0)
    rc = check_view_id(rpc, xl_pb_str(request, "phone_call_view_id"), error);
  return rc;
}
