/* UAPI JSON -> protobuf: what the upstream answers (usc_xlate_answer_parse,
 * usc_xlate_error_body_parse) and what REST clients send the facade
 * (usc_xlate_facade_parse). Every message built must be a valid protobuf-c
 * message of the RPC's type that the other direction can write back, and
 * every error something the facade can answer with.
 *
 * Input: a byte choosing the parser and the RPC, a byte choosing the HTTP
 * status (answers) or method (facade), then for the facade the target up
 * to a newline; the rest is the body. */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "src/base/base.h"
#include "src/xlate/xlate.h"

static const int http_statuses[] = {200, 201, 202, 204, 299, 301, 400, 401,
                                    403, 404, 409, 429, 500, 501, 503, 504};
static const char *const methods[] = {"GET",    "POST",  "PUT",
                                      "DELETE", "PATCH", "HEAD"};

static bool terminated(const char *s, size_t cap) {
  return memchr(s, '\0', cap) != NULL;
}

static void check_error(const usc_xlate_error_t *e) {
  FUZZ_CHECK(e->status != USC_GRPC_OK);
  FUZZ_CHECK(terminated(e->code, sizeof(e->code)));
  FUZZ_CHECK(terminated(e->message, sizeof(e->message)));
  for (const char *p = e->code; *p != '\0'; p++)
    FUZZ_CHECK(*p >= '!' && *p <= '~');
}

/* A message built here goes on to the protobuf-c packer and the facade's
 * writer: it must be whole, and writable. */
static void check_message(const ProtobufCMessage *m,
                          const ProtobufCMessageDescriptor *type) {
  FUZZ_CHECK(m != NULL && m->descriptor == type);
  FUZZ_CHECK(protobuf_c_message_check(m));
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(len + 1);
  FUZZ_CHECK(buf != NULL);
  FUZZ_CHECK(protobuf_c_message_pack(m, buf) == len);
  free(buf);
}

static void check_reply(const usc_xlate_reply_t *r) {
  FUZZ_CHECK(r->status >= 200 && r->status <= 599);
  FUZZ_CHECK(r->body == NULL || fuzz_json_valid(r->body, r->body_len));
}

/* The request the answer is to: the address the seeds' answers name. */
static ProtobufCMessage *request_for(usc_xlate_rpc_t rpc, fuzz_arena_t *a) {
  const ProtobufCMessageDescriptor *d = usc_xlate_rpc_info(rpc)->request;
  ProtobufCMessage *m = a->pb.alloc(a->pb.allocator_data, d->sizeof_message);
  FUZZ_CHECK(m != NULL);
  protobuf_c_message_init(d, m);
  static const char *const fields[][2] = {
      {"user_id", "@me"}, {"extension", "0003*210"}, {"phone_call_id", "fz1"}};
  for (size_t i = 0; i < USC_ARRAY_LEN(fields); i++) {
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(d, fields[i][0]);
    if (f != NULL)
      *(const char **)((char *)m + f->offset) = fields[i][1];
  }
  return m;
}

static void answer(usc_xlate_rpc_t rpc, int http_status, const char *body,
                   size_t len, fuzz_arena_t *a) {
  usc_xlate_answer_t in = {
      .rpc = rpc,
      .request = request_for(rpc, a),
      .http_status = http_status,
      .body = body,
      .body_len = len,
      .allocator = &a->pb,
  };
  usc_xlate_result_t r;
  int rc = usc_xlate_answer_parse(&in, &r);
  switch (rc) {
  case USC_XLATE_DONE: {
    check_message(r.response, usc_xlate_rpc_info(rpc)->response);
    usc_xlate_reply_t reply = {0};
    FUZZ_CHECK(usc_xlate_facade_answer(rpc, r.response, &reply) == 0);
    check_reply(&reply);
    usc_xlate_reply_free(&reply);
    break;
  }
  case USC_XLATE_FETCH:
    FUZZ_CHECK(terminated(r.fetch_path, sizeof(r.fetch_path)));
    FUZZ_CHECK(strncmp(r.fetch_path, "/uapi/phoneCalls/", 17) == 0);
    break;
  case USC_XLATE_FAILED:
    check_error(&r.error);
    break;
  default:
    FUZZ_CHECK(!"an outcome");
  }
}

static void error_body(const char *body, size_t len) {
  char code[USC_XLATE_CODE_MAX], message[USC_XLATE_MESSAGE_MAX];
  int rc = usc_xlate_error_body_parse(body, len, code, message);
  FUZZ_CHECK(rc == 0 || rc == USC_ERR_INVALID);
  FUZZ_CHECK(terminated(code, sizeof(code)));
  FUZZ_CHECK(terminated(message, sizeof(message)));
  if (rc != 0)
    FUZZ_CHECK(code[0] == '\0' && message[0] == '\0');
}

static void packed_equal(const ProtobufCMessage *a, const ProtobufCMessage *b) {
  size_t alen = protobuf_c_message_get_packed_size(a);
  size_t blen = protobuf_c_message_get_packed_size(b);
  FUZZ_CHECK(alen == blen);
  uint8_t *ab = malloc(alen + 1), *bb = malloc(blen + 1);
  FUZZ_CHECK(ab != NULL && bb != NULL);
  protobuf_c_message_pack(a, ab);
  protobuf_c_message_pack(b, bb);
  FUZZ_CHECK(memcmp(ab, bb, alen) == 0);
  free(ab);
  free(bb);
}

/* A List of one call whose other parameters are all left out when sent
 * (an empty "fields=", say) is the very request of a Get; the facade reads
 * it so. */
static void same_call(const ProtobufCMessage *list,
                      const ProtobufCMessage *get) {
  const Uapi__Phonecalls__V1__ListPhoneCallsRequest *l =
      (const Uapi__Phonecalls__V1__ListPhoneCallsRequest *)list;
  const Uapi__Phonecalls__V1__GetPhoneCallRequest *g =
      (const Uapi__Phonecalls__V1__GetPhoneCallRequest *)get;
  FUZZ_CHECK(strcmp(l->user_id, g->user_id) == 0);
  FUZZ_CHECK(strcmp(l->extension, g->extension) == 0);
  FUZZ_CHECK(strcmp(l->phone_call_id, g->phone_call_id) == 0);
}

/* A request the facade read, sent on by the translation backend (as a
 * sidecar in front of another one's facade does), is read back the same. */
static void facade(const char *method, const char *target, size_t target_len,
                   const char *body, size_t len, fuzz_arena_t *a) {
  usc_xlate_incoming_t in = {method,     strlen(method), target,
                             target_len, body,           len};
  usc_xlate_rpc_t rpc = USC_XLATE_RPC_NONE;
  ProtobufCMessage *msg = NULL;
  usc_xlate_error_t err;
  int rc = usc_xlate_facade_parse(&in, &a->pb, &rpc, &msg, &err);
  if (rc != 0) {
    FUZZ_CHECK(rc == USC_ERR_INVALID);
    check_error(&err);
    usc_xlate_reply_t reply = {0};
    FUZZ_CHECK(usc_xlate_facade_error(rpc, err.status, err.code, err.message,
                                      &reply) == 0);
    check_reply(&reply);
    usc_xlate_reply_free(&reply);
    return;
  }
  FUZZ_CHECK(rpc < USC_XLATE_RPC_COUNT);
  check_message(msg, usc_xlate_rpc_info(rpc)->request);
  FUZZ_CHECK(usc_xlate_request_check(rpc, msg, &err) == 0);
  usc_xlate_request_t req;
  rc = usc_xlate_request_build(rpc, msg, &req, &err);
  if (rc != 0) {
    /* Only the length of the query can stop it. */
    FUZZ_CHECK(rc == USC_ERR_INVALID &&
               err.status == USC_GRPC_INVALID_ARGUMENT && err.code[0] == '\0');
    return;
  }
  FUZZ_CHECK(req.body == NULL || fuzz_json_valid(req.body, req.body_len));
  usc_xlate_incoming_t again = {req.method, strlen(req.method),
                                req.target, req.target_len,
                                req.body,   req.body_len};
  usc_xlate_rpc_t rpc2;
  ProtobufCMessage *msg2 = NULL;
  FUZZ_CHECK(usc_xlate_facade_parse(&again, &a->pb, &rpc2, &msg2, &err) == 0);
  if (rpc == USC_XLATE_LIST && rpc2 == USC_XLATE_GET)
    same_call(msg, msg2);
  else
    packed_equal(msg, msg2);
  FUZZ_CHECK(rpc2 == rpc || rpc == USC_XLATE_LIST);
  usc_xlate_request_free(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_input_t in = {data, size};
  uint8_t mode = fuzz_take_byte(&in);
  uint8_t choice = fuzz_take_byte(&in);
  usc_xlate_rpc_t rpc = (usc_xlate_rpc_t)(mode / 3 % USC_XLATE_RPC_COUNT);
  fuzz_arena_t arena;
  fuzz_arena_init(&arena);
  size_t target_len = 0;
  const uint8_t *target = NULL;
  if (mode % 3 == 1)
    target = fuzz_take_until(&in, '\n', &target_len);
  /* Exact copies, so that reading past either is caught. */
  char *body = malloc(in.len ? in.len : 1);
  char *tgt = malloc(target_len ? target_len : 1);
  FUZZ_CHECK(body != NULL && tgt != NULL);
  memcpy(body, in.data, in.len);
  if (target_len > 0)
    memcpy(tgt, target, target_len);
  switch (mode % 3) {
  case 0:
    answer(rpc, http_statuses[choice % USC_ARRAY_LEN(http_statuses)], body,
           in.len, &arena);
    break;
  case 1:
    facade(methods[choice % USC_ARRAY_LEN(methods)], tgt, target_len, body,
           in.len, &arena);
    break;
  default:
    error_body(body, in.len);
    break;
  }
  free(tgt);
  free(body);
  fuzz_arena_reset(&arena);
  return 0;
}
