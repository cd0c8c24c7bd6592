/* End-to-end checks of the h2 listener on a libuv loop, with raw TCP
 * clients on the same loop: the address it reports, a host it refuses,
 * and that a connection whose memory cannot be had is accepted and closed
 * rather than left in the listener (which would stop the port). With TLS:
 * the server waits for the ClientHello, cuts off plaintext clients and
 * those that stall, and counts them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>
#include <uv.h>

#include "src/base/base.h"
#include "src/h2/h2.h"
#include "src/tls/testcert.h"
#include "src/tls/tls.h"

#define WAIT_LIMIT_MS 5000

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  bool open;
  bool ended;    /* EOF, an error, or the connect failed */
  size_t nbytes; /* received */
  char buf[256];
} client_t;

typedef struct {
  uv_loop_t loop;
  uv_timer_t limit;
  bool timed_out;
  usc_h2_server_t *server;
  bool server_closed;
  usc_tls_ctx_t *tls;
  client_t clients[2];
} fixture_t;

static char cert_file[300], key_file[300];

/* No call gets this far in these tests. */
static void on_start(void *user, usc_h2_call_t *call, const char *method,
                     size_t method_len) {
  (void)user;
  (void)method;
  (void)method_len;
  usc_h2_call_finish(call, USC_GRPC_UNIMPLEMENTED, NULL, NULL, 0);
}

static void on_message(void *user, usc_h2_call_t *call, const uint8_t *data,
                       size_t len) {
  (void)user;
  (void)call;
  (void)data;
  (void)len;
}

static void on_half_close(void *user, usc_h2_call_t *call) {
  (void)user;
  (void)call;
}

static void on_cancel(void *user, usc_h2_call_t *call, usc_grpc_status_t why) {
  (void)user;
  (void)call;
  (void)why;
}

static const usc_h2_handler_t handler = {on_start, on_message, on_half_close,
                                         on_cancel};

static void on_limit(uv_timer_t *timer) {
  fixture_t *fx = timer->data;
  fx->timed_out = true;
}

static int start(fixture_t *fx, const char *host, char *error, size_t cap) {
  usc_h2_server_config_t config = {.handler = &handler,
                                   .user = fx,
                                   .max_recv_message_size = 4096,
                                   .max_concurrent_streams = 8};
  return usc_h2_server_start(&fx->loop, &config, host, 0, &fx->server, error,
                             cap);
}

static void start_tls(fixture_t *fx, uint64_t handshake_timeout_ms) {
  usc_tls_config_t tls = {cert_file, key_file, NULL};
  char error[256] = "";
  assert_int_equal(usc_tls_ctx_new(&tls, &fx->tls, error, sizeof(error)), 0);
  usc_h2_server_config_t config = {
      .handler = &handler,
      .user = fx,
      .max_recv_message_size = 4096,
      .max_concurrent_streams = 8,
      .tls = fx->tls,
      .tls_handshake_timeout_ms = handshake_timeout_ms,
  };
  assert_int_equal(usc_h2_server_start(&fx->loop, &config, "127.0.0.1", 0,
                                       &fx->server, error, sizeof(error)),
                   0);
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_timer_init(&fx->loop, &fx->limit);
  fx->limit.data = fx;
  uv_timer_start(&fx->limit, on_limit, WAIT_LIMIT_MS, 0);
  *state = fx;
  return 0;
}

static void on_server_closed(void *user) {
  fixture_t *fx = user;
  fx->server_closed = true;
}

static int teardown(void **state) {
  fixture_t *fx = *state;
  usc_alloc_fail_at(0);
  for (size_t i = 0; i < USC_ARRAY_LEN(fx->clients); i++) {
    if (fx->clients[i].open)
      uv_close((uv_handle_t *)&fx->clients[i].tcp, NULL);
  }
  if (fx->server != NULL)
    usc_h2_server_close(fx->server, on_server_closed, fx);
  uv_close((uv_handle_t *)&fx->limit, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_true(fx->server == NULL || fx->server_closed);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  usc_tls_ctx_free(fx->tls);
  free(fx);
  return 0;
}

typedef bool (*pred_fn)(const client_t *c);

static void run_until(fixture_t *fx, pred_fn done, const client_t *c) {
  while (!done(c) && !fx->timed_out)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_false(fx->timed_out);
}

/* ---- clients ---- */

static void on_client_alloc(uv_handle_t *handle, size_t hint, uv_buf_t *buf) {
  client_t *c = handle->data;
  (void)hint;
  *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_client_read(uv_stream_t *stream, ssize_t nread,
                           const uv_buf_t *buf) {
  client_t *c = stream->data;
  (void)buf;
  if (nread < 0)
    c->ended = true;
  else
    c->nbytes += (size_t)nread;
}

static void on_client_connect(uv_connect_t *req, int status) {
  client_t *c = req->data;
  if (status != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read))
    c->ended = true;
}

static void connect_client(fixture_t *fx, client_t *c) {
  const char *address = usc_h2_server_address(fx->server);
  struct sockaddr_in addr;
  assert_int_equal(strncmp(address, "127.0.0.1:", 10), 0);
  assert_int_equal(uv_ip4_addr("127.0.0.1", atoi(address + 10), &addr), 0);
  uv_tcp_init(&fx->loop, &c->tcp);
  c->tcp.data = c->connect_req.data = c;
  c->open = true;
  assert_int_equal(uv_tcp_connect(&c->connect_req, &c->tcp,
                                  (const struct sockaddr *)&addr,
                                  on_client_connect),
                   0);
}

static void on_client_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void client_write(client_t *c, const char *data, size_t len) {
  uv_write_t *req = malloc(sizeof(*req));
  assert_non_null(req);
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
  assert_int_equal(
      uv_write(req, (uv_stream_t *)&c->tcp, &buf, 1, on_client_written), 0);
}

static bool ended(const client_t *c) { return c->ended; }

/* The server speaks first: its SETTINGS frame. */
static bool greeted(const client_t *c) { return c->nbytes > 0 || c->ended; }

/* ---- tests ---- */

static void test_address(void **state) {
  fixture_t *fx = *state;
  char error[128] = "";
  assert_int_equal(start(fx, "127.0.0.1", error, sizeof(error)), 0);
  const char *address = usc_h2_server_address(fx->server);
  assert_int_equal(strncmp(address, "127.0.0.1:", 10), 0);
  assert_true(atoi(address + 10) > 0);
}

static void test_bad_host_refused(void **state) {
  fixture_t *fx = *state;
  char error[128] = "";
  assert_int_equal(start(fx, "not-an-address", error, sizeof(error)),
                   USC_ERR_IO);
  assert_string_equal(error,
                      "cannot listen on not-an-address:0: invalid argument");
}

/* The first connection finds no memory: it is closed, and the next one is
 * still accepted. */
static void test_accepts_after_alloc_failure(void **state) {
  fixture_t *fx = *state;
  char error[128] = "";
  assert_int_equal(start(fx, "127.0.0.1", error, sizeof(error)), 0);
  usc_alloc_fail_at(1);
  connect_client(fx, &fx->clients[0]);
  run_until(fx, ended, &fx->clients[0]);
  assert_int_equal(fx->clients[0].nbytes, 0);
  assert_int_equal(usc_h2_server_connections(fx->server), 0);
  usc_alloc_fail_at(0);

  connect_client(fx, &fx->clients[1]);
  run_until(fx, greeted, &fx->clients[1]);
  assert_false(fx->clients[1].ended);
  assert_int_equal(usc_h2_server_connections(fx->server), 1);
}

/* Over TLS the server says nothing before the ClientHello, and cuts off
 * a client that sends none within the handshake timeout. */
static void test_tls_silent_client_is_cut_off(void **state) {
  fixture_t *fx = *state;
  start_tls(fx, 200);
  uint64_t t0 = uv_now(&fx->loop);
  connect_client(fx, &fx->clients[0]);
  run_until(fx, ended, &fx->clients[0]);
  assert_true(uv_now(&fx->loop) - t0 >= 190);
  assert_int_equal(fx->clients[0].nbytes, 0);
  assert_int_equal(usc_h2_server_tls_handshake_failures(fx->server), 1);
  assert_int_equal(usc_h2_server_connections(fx->server), 0);
}

static void test_tls_plaintext_client_is_cut_off(void **state) {
  fixture_t *fx = *state;
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  start_tls(fx, 0);
  connect_client(fx, &fx->clients[0]);
  client_write(&fx->clients[0], preface, sizeof(preface) - 1);
  run_until(fx, ended, &fx->clients[0]);
  assert_int_equal(usc_h2_server_tls_handshake_failures(fx->server), 1);
  assert_int_equal(usc_h2_server_connections(fx->server), 0);
}

/* The connection's TLS state finds no memory: it is closed, uncounted,
 * and the next one is served. */
static void test_tls_accepts_after_alloc_failure(void **state) {
  fixture_t *fx = *state;
  start_tls(fx, 200);
  usc_alloc_fail_at(2); /* the connection, then its TLS state */
  connect_client(fx, &fx->clients[0]);
  run_until(fx, ended, &fx->clients[0]);
  assert_true(usc_alloc_fail_at(0) >= 2);
  assert_int_equal(usc_h2_server_connections(fx->server), 0);
  assert_int_equal(usc_h2_server_tls_handshake_failures(fx->server), 0);

  connect_client(fx, &fx->clients[1]);
  run_until(fx, ended, &fx->clients[1]);
  assert_int_equal(usc_h2_server_tls_handshake_failures(fx->server), 1);
}

static void remove_files(void) {
  unlink(cert_file);
  unlink(key_file);
}

int main(void) {
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(cert_file, sizeof(cert_file), "%s/h2_test_%d.pem",
           tmp != NULL ? tmp : "/tmp", (int)getpid());
  snprintf(key_file, sizeof(key_file), "%s/h2_test_%d.key",
           tmp != NULL ? tmp : "/tmp", (int)getpid());
  if (!usc_testcert_write_server(cert_file, key_file)) {
    fprintf(stderr, "cannot write the test certificate\n");
    return 1;
  }
  atexit(remove_files);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_address, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_host_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_accepts_after_alloc_failure, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tls_silent_client_is_cut_off, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tls_plaintext_client_is_cut_off,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_tls_accepts_after_alloc_failure,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
