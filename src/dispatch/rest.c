/* The UAPI REST facade: UAPI requests over HTTP/1.1, answered by the
 * native engine through the same path as gRPC calls, so REST clients (and
 * another sidecar's translation backend) can use the sidecar as a UAPI
 * stand-in. */
#include <string.h>

#include "src/dispatch/internal.h"

/* A 401 names the scheme the client must use (RFC 6750). */
static const usc_admin_header_t bearer_challenge = {"www-authenticate",
                                                    "Bearer"};

static void respond(usc_admin_req_t *req, const usc_xlate_reply_t *reply) {
  bool challenge = reply->status == 401;
  usc_admin_respond(req, reply->status,
                    reply->body != NULL ? "application/json" : NULL,
                    challenge ? &bearer_challenge : NULL, challenge ? 1 : 0,
                    reply->body, reply->body_len);
}

static void respond_error(usc_admin_req_t *req, usc_xlate_rpc_t rpc,
                          usc_grpc_status_t status, const char *code,
                          const char *message) {
  usc_xlate_reply_t reply = {0};
  if (usc_xlate_facade_error(rpc, status, code, message, &reply) != 0) {
    usc_admin_respond(req, 500, NULL, NULL, 0, NULL, 0);
    return;
  }
  respond(req, &reply);
  usc_xlate_reply_free(&reply);
}

static void serve(usc_dispatch_t *d, usc_admin_req_t *req, usc_xlate_rpc_t rpc,
                  ProtobufCMessage *msg, const usc_access_grant_t *grant) {
  const char *name = usc_xlate_rpc_info(rpc)->method;
  const method_t *m = method_named(name, strlen(name));
  outcome_t out;
  if (grant != NULL && !authorize(&d->fields, m, msg, grant, &out)) {
    respond_error(req, rpc, out.status, out.uapi_code, out.message);
    return;
  }
  native_serve(&d->native, m, msg, grant != NULL ? grant->user : NULL,
               &d->arena, &out);
  if (out.status != USC_GRPC_OK) {
    respond_error(req, rpc, out.status, out.uapi_code, out.message);
    return;
  }
  usc_xlate_reply_t reply = {0};
  if (usc_xlate_facade_answer(rpc, out.response, &reply) != 0) {
    respond_error(req, rpc, USC_GRPC_INTERNAL, NULL, "cannot write the answer");
    return;
  }
  respond(req, &reply);
  usc_xlate_reply_free(&reply);
}

static void on_request(void *user, usc_admin_req_t *req,
                       const usc_admin_request_t *request) {
  usc_dispatch_t *d = user;
  const usc_access_grant_t *grant = NULL;
  if (d->access != NULL) {
    const char *refused = access_refusal(
        d->access, usc_admin_req_header(req, "authorization"), &grant);
    if (refused != NULL) {
      respond_error(req, USC_XLATE_RPC_NONE, USC_GRPC_UNAUTHENTICATED,
                    "access_denied", refused);
      return;
    }
  }
  usc_xlate_incoming_t in = {
      .method = request->method,
      .method_len = strlen(request->method),
      .target = request->target,
      .target_len = request->target_len,
      .body = (const char *)request->body,
      .body_len = request->body_len,
  };
  usc_xlate_rpc_t rpc = USC_XLATE_RPC_NONE;
  ProtobufCMessage *msg;
  usc_xlate_error_t err;
  if (usc_xlate_facade_parse(&in, &d->arena.allocator, &rpc, &msg, &err) != 0)
    respond_error(req, rpc, err.status, err.code, err.message);
  else
    serve(d, req, rpc, msg, grant);
  arena_reset(&d->arena);
}

/* Every request is answered before on_request returns: nothing to stop. */
static void on_cancel(void *user, usc_admin_req_t *req) {
  (void)user;
  (void)req;
}

/* The server's own refusals (malformed, too large, too slow) in UAPI's
 * error format. */
static const char *refusal(void *user, int status, char *body, size_t cap,
                           size_t *len) {
  (void)user;
  usc_grpc_status_t grpc = USC_GRPC_INVALID_ARGUMENT;
  const char *code = "request_invalid";
  if (status == 408) {
    grpc = USC_GRPC_DEADLINE_EXCEEDED;
    code = "request_timeout";
  } else if (status == 413 || status == 431) {
    grpc = USC_GRPC_RESOURCE_EXHAUSTED;
    code = "request_too_large";
  } else if (status == 501 || status == 505) {
    grpc = USC_GRPC_UNIMPLEMENTED;
    code = "request_not_implemented";
  } else if (status >= 500) {
    grpc = USC_GRPC_INTERNAL;
    code = "internal_server_error";
  }
  usc_xlate_reply_t reply = {0};
  *len = 0;
  if (usc_xlate_facade_error(USC_XLATE_RPC_NONE, grpc, code, NULL, &reply) ==
          0 &&
      reply.body_len <= cap) {
    memcpy(body, reply.body, reply.body_len);
    *len = reply.body_len;
  }
  usc_xlate_reply_free(&reply);
  return "application/json";
}

usc_admin_refusal_fn usc_dispatch_rest_refusal(void) { return refusal; }

static const usc_admin_handler_t rest_handler = {
    .on_request = on_request,
    .on_cancel = on_cancel,
};

const usc_admin_handler_t *usc_dispatch_rest_handler(void) {
  return &rest_handler;
}
