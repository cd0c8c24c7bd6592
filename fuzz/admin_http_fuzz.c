/* The HTTP/1.1 server as the REST facade uses it: the fuzzer's bytes are
 * what a client sends on one connection (the seeds: UAPI REST requests,
 * pipelined, chunked, with Expect: 100-continue), served by the admin
 * server in front of the dispatcher's facade handler and the native
 * engine, on a fresh libuv loop for every input, listening on 127.0.0.1.
 * Everything is closed afterwards; the loop must close, and
 * LeakSanitizer sees what was not freed. */
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "fuzz/fuzz_util.h"
#include "src/admin/admin.h"
#include "src/dispatch/dispatch.h"

static void set_flag(void *flag) { *(bool *)flag = true; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_quiet_log();
  uv_loop_t loop;
  FUZZ_CHECK(uv_loop_init(&loop) == 0);
  usc_state_t *state = fuzz_engine_new();
  usc_dispatch_config_t dc = {
      .loop = &loop,
      .state = state,
      .clock = fuzz_clock,
      .backend = USC_BACKEND_NATIVE,
  };
  usc_dispatch_t *dispatch;
  FUZZ_CHECK(usc_dispatch_new(&dc, &dispatch) == 0);
  /* Small limits, so that inputs of a few KiB reach them. */
  usc_admin_config_t ac = {
      .handler = usc_dispatch_rest_handler(),
      .user = dispatch,
      .refusal = usc_dispatch_rest_refusal(),
      .limits = {.max_connections = 4,
                 .max_header_bytes = 1024,
                 .max_body_bytes = 2048},
  };
  usc_admin_server_t *server;
  char error[256];
  FUZZ_CHECK(usc_admin_server_start(&loop, &ac, "127.0.0.1", 0, &server, error,
                                    sizeof(error)) == 0);
  fuzz_client_exchange(&loop, usc_admin_server_address(server), data, size);

  bool closed = false;
  usc_admin_server_close(server, set_flag, &closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  usc_dispatch_close(dispatch, NULL, NULL);
  fuzz_loop_finish(&loop);
  usc_state_free(state);
  return 0;
}
