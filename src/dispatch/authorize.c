/* Access control (--tokens-file): each PhoneCallService call must carry a
 * bearer token of the table, and sees only what the token's grant allows:
 * its user's calls, through the extensions it holds. The standard
 * services (health, reflection) stay open, as probes need them. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/dispatch/internal.h"

#define CODE_ACCESS_DENIED "access_denied"

static const char *const no_token =
    "this call needs a bearer token: send 'authorization: Bearer <token>'";
static const char *const bad_token =
    "the bearer token is not valid: check it, or ask for a new one";

bool authenticate(rpc_t *rpc) {
  usc_dispatch_t *d = rpc->dispatch;
  if (d->access == NULL || rpc->method->kind >= KIND_HEALTH_CHECK)
    return true;
  const char *authorization = usc_h2_call_header(rpc->call, "authorization");
  const usc_access_grant_t *grant = usc_access_lookup(d->access, authorization);
  if (grant == NULL) {
    rpc_finish(rpc, USC_GRPC_UNAUTHENTICATED, CODE_ACCESS_DENIED,
               authorization == NULL ? no_token : bad_token);
    return false;
  }
  rpc->access = usc_access_ref(d->access);
  rpc->grant = grant;
  return true;
}

const char *access_refusal(const usc_access_t *table, const char *authorization,
                           const usc_access_grant_t **grant) {
  *grant = usc_access_lookup(table, authorization);
  if (*grant != NULL)
    return NULL;
  return authorization == NULL ? no_token : bad_token;
}

static usc_access_wildcard_t wildcard_of(const method_t *m) {
  switch (m->kind) {
  case KIND_CREATE:
    return USC_ACCESS_NUMBER;
  case KIND_WATCH:
    return USC_ACCESS_SELF_OR_BLANK;
  default:
    return USC_ACCESS_SELF;
  }
}

/* An outcome keeps static codes: the address checks' own. */
static const char *static_code(const char *code) {
  static const char *const known[] = {
      USC_UAPI_USER_INVALID,
      USC_UAPI_EXTENSION_INVALID,
      USC_UAPI_CALL_INVALID,
      USC_UAPI_VIEW_INVALID,
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(known); i++)
    if (strcmp(code, known[i]) == 0)
      return known[i];
  return NULL;
}

/* A malformed request stays INVALID_ARGUMENT, whoever it is addressed to:
 * only a well-formed one is hidden. */
static bool malformed(const method_t *m, const ProtobufCMessage *msg,
                      const fields_t *f, outcome_t *out) {
  usc_xlate_rpc_t xrpc = USC_XLATE_LIST;
  Uapi__Phonecalls__V1__ListPhoneCallsRequest watched =
      UAPI__PHONECALLS__V1__LIST_PHONE_CALLS_REQUEST__INIT;
  if (m->kind == KIND_WATCH) {
    const char *ext = field_str(f, m, msg, F_EXTENSION);
    watched.user_id = (char *)field_str(f, m, msg, F_USER_ID);
    watched.extension = (char *)(ext[0] ? ext : "@self");
    msg = &watched.base;
  } else if (usc_xlate_rpc_find(m->name, strlen(m->name), &xrpc) != 0) {
    return false;
  }
  usc_xlate_error_t err;
  if (usc_xlate_request_check(xrpc, msg, &err) == 0)
    return false;
  outcome_error(out, err.status, static_code(err.code), err.message);
  return true;
}

static bool is_me(const char *user) {
  return user[0] == '\0' || strcmp(user, "@me") == 0 ||
         strcmp(user, "@viewer") == 0 || strcmp(user, "@owner") == 0;
}

/* Says nothing a request for a call that does not exist would not say:
 * the engine's sentence, with the user resolved as the engine does. */
static void hidden(const method_t *m, const ProtobufCMessage *msg,
                   const fields_t *f, const usc_access_grant_t *grant,
                   outcome_t *out) {
  if (malformed(m, msg, f, out))
    return;
  const char *id = field_str(f, m, msg, F_PHONE_CALL_ID);
  const char *user = field_str(f, m, msg, F_USER_ID);
  const char *ext = field_str(f, m, msg, F_EXTENSION);
  if (is_me(user))
    user = grant->user;
  char message[256];
  if (id[0] != '\0')
    snprintf(message, sizeof(message),
             "phone call '%s' not found for user '%.40s' and extension '%s'",
             id, user, ext);
  else
    snprintf(message, sizeof(message),
             "no phone calls found for user '%.40s' and extension '%.40s'",
             user, ext);
  outcome_error(out, USC_GRPC_NOT_FOUND, USC_UAPI_CALL_INVALID, message);
}

bool authorize(const fields_t *f, const method_t *m, ProtobufCMessage *msg,
               const usc_access_grant_t *grant, outcome_t *out) {
  const char *user, *ext;
  const char *asked = field_str(f, m, msg, F_EXTENSION);
  switch (usc_access_resolve(grant, field_str(f, m, msg, F_USER_ID), asked,
                             wildcard_of(m), &user, &ext)) {
  case USC_ACCESS_ALLOWED:
    field_set_str(f, m, msg, F_USER_ID, user);
    field_set_str(f, m, msg, F_EXTENSION, ext);
    return true;
  case USC_ACCESS_HIDDEN:
    hidden(m, msg, f, grant, out);
    return false;
  case USC_ACCESS_AMBIGUOUS:
    break;
  }
  char message[256];
  snprintf(message, sizeof(message),
           "extension '%s' stands for every extension of the user, and "
           "this token holds only some of them: name one",
           asked[0] ? asked : "@self");
  outcome_error(out, USC_GRPC_INVALID_ARGUMENT, USC_UAPI_EXTENSION_INVALID,
                message);
  return false;
}

/* ---- a new table ---- */

/* A stream keeps what it was given only while its token grants the same. */
static bool still_granted(const usc_access_t *table, rpc_t *rpc) {
  const usc_access_grant_t *now =
      usc_access_lookup(table, usc_h2_call_header(rpc->call, "authorization"));
  return now != NULL && usc_access_grant_equal(now, rpc->grant);
}

static void end_revoked(rpc_t *rpc) {
  rpc_finish(rpc, USC_GRPC_UNAUTHENTICATED, CODE_ACCESS_DENIED,
             "the tokens file changed and no longer grants this stream what "
             "it had: open it again");
}

static bool revoked(rpc_t *rpc) {
  return rpc->grant != NULL && !still_granted(rpc->dispatch->access, rpc);
}

static void recheck_streams(usc_dispatch_t *d) {
  rpc_t *next;
  for (rpc_t *rpc = d->watches; rpc != NULL; rpc = next) {
    next = rpc->next;
    if (revoked(rpc)) {
      watch_unlink(rpc);
      end_revoked(rpc);
    }
  }
  pollers_recheck(d, revoked, end_revoked);
}

int usc_dispatch_load_tokens(usc_dispatch_t *d, const char *text, size_t len,
                             size_t *tokens, char *error, size_t error_cap) {
  usc_access_t *table;
  int rc = usc_access_parse(text, len, &table, error, error_cap);
  if (rc != 0)
    return rc;
  usc_access_unref(d->access);
  d->access = table;
  if (tokens != NULL)
    *tokens = usc_access_count(table);
  recheck_streams(d);
  return 0;
}
