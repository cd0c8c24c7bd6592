/* protobuf -> JSON: a request message as a gRPC client may send it,
 * turned into the UAPI request the translation backend sends
 * (usc_xlate_request_build), and a response message turned into the
 * facade's JSON answer (usc_xlate_facade_answer). Whatever is built must be
 * valid JSON, and a request the backend sends must be one the facade (of
 * another sidecar) accepts, for the same RPC.
 *
 * Input: a byte choosing the RPC and the direction, then the message in
 * the protobuf wire format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "src/base/base.h"
#include "src/xlate/xlate.h"

static void check_error(const usc_xlate_error_t *e) {
  FUZZ_CHECK(e->status != USC_GRPC_OK);
  FUZZ_CHECK(memchr(e->code, '\0', sizeof(e->code)) != NULL);
  FUZZ_CHECK(memchr(e->message, '\0', sizeof(e->message)) != NULL);
}

static void request(usc_xlate_rpc_t rpc, const ProtobufCMessage *msg,
                    fuzz_arena_t *a) {
  usc_xlate_request_t req;
  usc_xlate_error_t err;
  int rc = usc_xlate_request_build(rpc, msg, &req, &err);
  if (rc != 0) {
    FUZZ_CHECK(rc == USC_ERR_INVALID);
    check_error(&err);
    FUZZ_CHECK(req.target == NULL && req.body == NULL);
    return;
  }
  FUZZ_CHECK(req.target != NULL && strlen(req.target) == req.target_len);
  FUZZ_CHECK(req.target_len <= USC_XLATE_TARGET_MAX);
  FUZZ_CHECK(strncmp(req.target, "/uapi/phoneCalls/", 17) == 0);
  FUZZ_CHECK(req.body == NULL || fuzz_json_valid(req.body, req.body_len));
  usc_xlate_incoming_t in = {req.method,     strlen(req.method), req.target,
                             req.target_len, req.body,           req.body_len};
  usc_xlate_rpc_t seen;
  ProtobufCMessage *back = NULL;
  rc = usc_xlate_facade_parse(&in, &a->pb, &seen, &back, &err);
  if (rc != 0) {
    fprintf(stderr, "facade refused %s %s %s: %s %s\n", req.method, req.target,
            req.body ? req.body : "", err.code, err.message);
    FUZZ_CHECK(rc == 0);
  }
  /* A List naming one call and nothing else is the very request of a Get. */
  FUZZ_CHECK(seen == rpc || (rpc == USC_XLATE_LIST && seen == USC_XLATE_GET));
  usc_xlate_request_free(&req);
}

static void response(usc_xlate_rpc_t rpc, const ProtobufCMessage *msg) {
  usc_xlate_reply_t reply = {0};
  int rc = usc_xlate_facade_answer(rpc, msg, &reply);
  if (rc != 0) {
    FUZZ_CHECK(rc == USC_ERR_INVALID);
    FUZZ_CHECK(reply.body == NULL);
    return;
  }
  FUZZ_CHECK(reply.status == 200 || reply.status == 204);
  FUZZ_CHECK((reply.body == NULL) == (reply.status == 204));
  FUZZ_CHECK(reply.body == NULL || fuzz_json_valid(reply.body, reply.body_len));
  usc_xlate_reply_free(&reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_input_t in = {data, size};
  uint8_t choice = fuzz_take_byte(&in);
  usc_xlate_rpc_t rpc = (usc_xlate_rpc_t)(choice / 2 % USC_XLATE_RPC_COUNT);
  bool is_request = choice % 2 == 0;
  const usc_xlate_rpc_info_t *info = usc_xlate_rpc_info(rpc);
  fuzz_arena_t arena;
  fuzz_arena_init(&arena);
  ProtobufCMessage *msg = protobuf_c_message_unpack(
      is_request ? info->request : info->response, &arena.pb, in.len, in.data);
  if (msg != NULL) {
    if (is_request)
      request(rpc, msg, &arena);
    else
      response(rpc, msg);
  }
  fuzz_arena_reset(&arena);
  return 0;
}
