/* A whole gRPC server session: the fuzzer's bytes are what a client sends
 * on one connection (the seeds start with the HTTP/2 preface, SETTINGS,
 * then HEADERS and DATA of PhoneCallService calls). The server is the
 * sidecar's own stack, the h2 transport in front of the dispatcher and
 * the native engine, on a fresh libuv loop for every input, listening on
 * 127.0.0.1; everything is closed afterwards, the loop must close, and
 * LeakSanitizer sees what was not freed. */
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "fuzz/fuzz_util.h"
#include "src/dispatch/dispatch.h"
#include "src/h2/h2.h"

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
  usc_h2_server_config_t sc = {
      .handler = usc_dispatch_handler(),
      .user = dispatch,
      .max_recv_message_size = 1024,
      .max_concurrent_streams = 16,
      .gzip_min_response_size = 64,
      .max_header_list_size = 2048,
      .keepalive_min_time_ms = 1000,
  };
  usc_h2_server_t *server;
  char error[256];
  FUZZ_CHECK(usc_h2_server_start(&loop, &sc, "127.0.0.1", 0, &server, error,
                                 sizeof(error)) == 0);
  fuzz_client_exchange(&loop, usc_h2_server_address(server), data, size);

  /* As the sidecar shuts down: streams end, the server closes, then the
   * dispatcher. */
  usc_dispatch_set_serving(dispatch, false);
  usc_dispatch_end_streams(dispatch);
  bool server_closed = false;
  usc_h2_server_close(server, set_flag, &server_closed);
  while (!server_closed)
    uv_run(&loop, UV_RUN_ONCE);
  usc_dispatch_close(dispatch, NULL, NULL);
  fuzz_loop_finish(&loop);
  usc_state_free(state);
  return 0;
}
