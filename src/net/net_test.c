/* Tests of the listener plumbing: literal addresses, their text, binding
 * on loopback (IPv6 only where the host has it), and the spare refusing
 * connections while the listener goes on accepting. Clients run on the
 * same libuv loop as the listener. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "src/base/base.h"
#include "src/net/net.h"

#define WAIT_LIMIT_MS 5000
#define MAX_CLIENTS 3

/* ---- addresses ---- */

static void test_resolve_ipv4(void **state) {
  (void)state;
  struct sockaddr_storage addr;
  assert_int_equal(usc_net_resolve("127.0.0.1", 8080, &addr), 0);
  const struct sockaddr_in *a4 = (const struct sockaddr_in *)&addr;
  assert_int_equal(a4->sin_family, AF_INET);
  assert_int_equal(ntohs(a4->sin_port), 8080);
  assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x7f000001);
}

static void test_resolve_ipv6(void **state) {
  (void)state;
  struct sockaddr_storage addr;
  assert_int_equal(usc_net_resolve("::1", 443, &addr), 0);
  const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&addr;
  assert_int_equal(a6->sin6_family, AF_INET6);
  assert_int_equal(ntohs(a6->sin6_port), 443);
  assert_int_equal(memcmp(&a6->sin6_addr, &in6addr_loopback, 16), 0);
}

static void test_resolve_refuses_bad_hosts(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",      "localhost", "1.2.3",   "256.0.0.1",   "1.2.3.4 ",   " 1.2.3.4",
      "[::1]", "::g",       "1::2::3", "example.com", "0x7f.0.0.1",
  };
  for (size_t i = 0; i < USC_ARRAY_LEN(bad); i++) {
    struct sockaddr_storage addr;
    print_message("%s\n", bad[i]);
    assert_int_equal(usc_net_resolve(bad[i], 80, &addr), USC_ERR_INVALID);
  }
}

static void format_of(const char *host, int port, char *out, size_t cap) {
  struct sockaddr_storage addr;
  assert_int_equal(usc_net_resolve(host, port, &addr), 0);
  usc_net_format((const struct sockaddr *)&addr, out, cap);
}

static void test_format_ipv4(void **state) {
  (void)state;
  char text[USC_NET_ADDRESS_SIZE];
  format_of("10.1.2.3", 443, text, sizeof(text));
  assert_string_equal(text, "10.1.2.3:443");
  format_of("255.255.255.255", 65535, text, sizeof(text));
  assert_string_equal(text, "255.255.255.255:65535");
  format_of("0.0.0.0", 0, text, sizeof(text));
  assert_string_equal(text, "0.0.0.0:0");
}

static void test_format_ipv6(void **state) {
  (void)state;
  char text[USC_NET_ADDRESS_SIZE];
  format_of("::1", 5678, text, sizeof(text));
  assert_string_equal(text, "[::1]:5678");
  format_of("2001:DB8:0:0:0:0:0:1", 8443, text, sizeof(text));
  assert_string_equal(text, "[2001:db8::1]:8443");
  format_of("::ffff:1.2.3.4", 80, text, sizeof(text));
  assert_string_equal(text, "[::ffff:1.2.3.4]:80");
  /* The longest text there is fits. */
  format_of("1111:2222:3333:4444:5555:6666:7777:8888", 65535, text,
            sizeof(text));
  assert_string_equal(text, "[1111:2222:3333:4444:5555:6666:7777:8888]:65535");
}

static void test_format_other_and_truncated(void **state) {
  (void)state;
  char text[USC_NET_ADDRESS_SIZE];
  struct sockaddr_storage none;
  memset(&none, 0, sizeof(none));
  usc_net_format((const struct sockaddr *)&none, text, sizeof(text));
  assert_string_equal(text, "?:0");
  char small[6];
  format_of("10.1.2.3", 443, small, sizeof(small));
  assert_string_equal(small, "10.1.");
}

/* ---- listening ---- */

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  bool open;
  bool connected;
  bool ended; /* EOF, an error, or the connect failed */
  char buf[64];
} client_t;

typedef struct {
  uv_loop_t loop;
  uv_tcp_t listener;
  bool listener_open;
  uv_timer_t limit;
  bool timed_out;
  usc_net_spare_t spare;
  bool refuse;         /* on_connection refuses rather than accepts */
  bool close_listener; /* and then closes the listener */
  int spare_opened;    /* usc_net_spare_refuse returned true */
  int spare_freed;     /* on_free calls */
  int waiting_seen;    /* on_free calls with a connection waiting */
  uv_tcp_t accepted;   /* the one connection accepted, if any */
  bool accepted_open;
  client_t clients[MAX_CLIENTS];
} fixture_t;

static void on_limit(uv_timer_t *timer) {
  fixture_t *fx = timer->data;
  fx->timed_out = true;
}

static void fixture_init(fixture_t *fx) {
  memset(fx, 0, sizeof(*fx));
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_tcp_init(&fx->loop, &fx->listener);
  fx->listener.data = fx;
  fx->listener_open = true;
  uv_timer_init(&fx->loop, &fx->limit);
  fx->limit.data = fx;
  uv_timer_start(&fx->limit, on_limit, WAIT_LIMIT_MS, 0);
}

static void close_if_open(uv_handle_t *handle, bool *open) {
  if (*open)
    uv_close(handle, NULL);
  *open = false;
}

static void fixture_done(fixture_t *fx) {
  close_if_open((uv_handle_t *)&fx->listener, &fx->listener_open);
  close_if_open((uv_handle_t *)&fx->accepted, &fx->accepted_open);
  for (size_t i = 0; i < MAX_CLIENTS; i++)
    close_if_open((uv_handle_t *)&fx->clients[i].tcp, &fx->clients[i].open);
  uv_close((uv_handle_t *)&fx->limit, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
}

typedef bool (*pred_fn)(const fixture_t *fx);

static void run_until(fixture_t *fx, pred_fn done) {
  while (!done(fx) && !fx->timed_out)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_false(fx->timed_out);
}

static void test_listen_ipv4_any_port(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  char error[128] = "";
  assert_int_equal(usc_net_listen(&fx.listener, "127.0.0.1", 0, 16, NULL, error,
                                  sizeof(error)),
                   0);
  char text[USC_NET_ADDRESS_SIZE];
  usc_net_sockname(&fx.listener, text, sizeof(text));
  assert_int_equal(strncmp(text, "127.0.0.1:", 10), 0);
  assert_true(atoi(text + 10) > 0);
  fixture_done(&fx);
}

/* Whether this host can bind the IPv6 loopback at all. */
static bool have_ipv6(void) {
  uv_loop_t loop;
  uv_tcp_t probe;
  struct sockaddr_in6 addr;
  uv_loop_init(&loop);
  uv_tcp_init(&loop, &probe);
  uv_ip6_addr("::1", 0, &addr);
  bool ok = uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0) == 0 &&
            uv_listen((uv_stream_t *)&probe, 1, NULL) == 0;
  uv_close((uv_handle_t *)&probe, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return ok;
}

static void test_listen_ipv6_any_port(void **state) {
  (void)state;
  if (!have_ipv6()) {
    skip();
  }
  fixture_t fx;
  fixture_init(&fx);
  char error[128] = "";
  assert_int_equal(
      usc_net_listen(&fx.listener, "::1", 0, 16, NULL, error, sizeof(error)),
      0);
  char text[USC_NET_ADDRESS_SIZE];
  usc_net_sockname(&fx.listener, text, sizeof(text));
  assert_int_equal(strncmp(text, "[::1]:", 6), 0);
  assert_true(atoi(text + 6) > 0);
  fixture_done(&fx);
}

static void test_listen_refuses_bad_host(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  char error[128] = "";
  assert_int_equal(usc_net_listen(&fx.listener, "localhost", 8080, 16, NULL,
                                  error, sizeof(error)),
                   USC_ERR_IO);
  assert_string_equal(error,
                      "cannot listen on localhost:8080: invalid argument");
  fixture_done(&fx);
}

static void test_listen_port_in_use(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  char error[128] = "";
  assert_int_equal(usc_net_listen(&fx.listener, "127.0.0.1", 0, 16, NULL, error,
                                  sizeof(error)),
                   0);
  char text[USC_NET_ADDRESS_SIZE];
  usc_net_sockname(&fx.listener, text, sizeof(text));
  int port = atoi(text + 10);
  uv_tcp_t second;
  uv_tcp_init(&fx.loop, &second);
  assert_int_equal(usc_net_listen(&second, "127.0.0.1", port, 16, NULL, error,
                                  sizeof(error)),
                   USC_ERR_IO);
  char want[128];
  snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%d: %s", port,
           uv_strerror(UV_EADDRINUSE));
  assert_string_equal(error, want);
  uv_close((uv_handle_t *)&second, NULL);
  fixture_done(&fx);
}

static void test_names_of_unconnected_handle(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  char text[USC_NET_ADDRESS_SIZE];
  usc_net_peername(&fx.listener, text, sizeof(text));
  assert_string_equal(text, "?:0");
  usc_net_sockname(&fx.listener, text, sizeof(text));
  assert_string_equal(text, "?:0");
  fixture_done(&fx);
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
}

static void on_client_connect(uv_connect_t *req, int status) {
  client_t *c = req->data;
  c->connected = status == 0;
  if (status != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read))
    c->ended = true;
}

static void connect_client(fixture_t *fx, client_t *c) {
  struct sockaddr_storage addr;
  char text[USC_NET_ADDRESS_SIZE];
  usc_net_sockname(&fx->listener, text, sizeof(text));
  assert_int_equal(usc_net_resolve("127.0.0.1", atoi(text + 10), &addr), 0);
  uv_tcp_init(&fx->loop, &c->tcp);
  c->tcp.data = c->connect_req.data = c;
  c->open = true;
  assert_int_equal(uv_tcp_connect(&c->connect_req, &c->tcp,
                                  (const struct sockaddr *)&addr,
                                  on_client_connect),
                   0);
}

/* ---- the spare ---- */

static void refuse(fixture_t *fx) {
  if (usc_net_spare_refuse(&fx->spare))
    fx->spare_opened++;
}

static void on_spare_free(usc_net_spare_t *spare, bool waiting) {
  fixture_t *fx = spare->data;
  fx->spare_freed++;
  if (waiting) {
    fx->waiting_seen++;
    refuse(fx);
  }
}

static void on_connection(uv_stream_t *listener, int status) {
  fixture_t *fx = listener->data;
  assert_int_equal(status, 0);
  if (fx->refuse) {
    refuse(fx);
    if (fx->close_listener)
      close_if_open((uv_handle_t *)&fx->listener, &fx->listener_open);
    return;
  }
  assert_false(fx->accepted_open);
  uv_tcp_init(&fx->loop, &fx->accepted);
  fx->accepted_open = true;
  assert_int_equal(uv_accept(listener, (uv_stream_t *)&fx->accepted), 0);
}

static void listen_with_spare(fixture_t *fx) {
  char error[128] = "";
  assert_int_equal(usc_net_listen(&fx->listener, "127.0.0.1", 0, 16,
                                  on_connection, error, sizeof(error)),
                   0);
  usc_net_spare_init(&fx->spare, &fx->listener, on_spare_free, fx);
}

static bool two_refused(const fixture_t *fx) {
  return fx->clients[0].ended && fx->clients[1].ended &&
         fx->spare_freed == fx->spare_opened;
}

static bool third_accepted(const fixture_t *fx) {
  return fx->accepted_open && fx->clients[2].connected;
}

static bool one_accepted(const fixture_t *fx) {
  return fx->accepted_open && fx->clients[0].connected;
}

static bool input_came(const fixture_t *fx) {
  return usc_net_input_waiting(&fx->accepted);
}

/* Bytes sent and not yet read are seen, and stay to be read. */
static void test_input_waiting(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  char error[128] = "";
  assert_int_equal(usc_net_listen(&fx.listener, "127.0.0.1", 0, 16,
                                  on_connection, error, sizeof(error)),
                   0);
  connect_client(&fx, &fx.clients[0]);
  run_until(&fx, one_accepted);
  assert_false(usc_net_input_waiting(&fx.accepted));
  uv_buf_t buf = uv_buf_init("x", 1);
  assert_int_equal(uv_try_write((uv_stream_t *)&fx.clients[0].tcp, &buf, 1), 1);
  run_until(&fx, input_came);
  assert_true(usc_net_input_waiting(&fx.accepted));
  assert_false(usc_net_input_waiting(&fx.listener));
  fixture_done(&fx);
}

static void test_spare_refuses_and_listener_goes_on(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  listen_with_spare(&fx);
  fx.refuse = true;
  /* Both are in the listener's queue before the loop polls it, so the
   * second arrives while the spare still closes the first. */
  connect_client(&fx, &fx.clients[0]);
  connect_client(&fx, &fx.clients[1]);
  run_until(&fx, two_refused);
  assert_int_equal(fx.spare_opened, 2);
  assert_int_equal(fx.waiting_seen, 1);

  fx.refuse = false;
  connect_client(&fx, &fx.clients[2]);
  run_until(&fx, third_accepted);
  char server_side[USC_NET_ADDRESS_SIZE], client_side[USC_NET_ADDRESS_SIZE];
  usc_net_peername(&fx.accepted, server_side, sizeof(server_side));
  usc_net_sockname(&fx.clients[2].tcp, client_side, sizeof(client_side));
  assert_string_equal(server_side, client_side);
  fixture_done(&fx);
}

/* A spare still closing when its owner closes the listener calls on_free
 * all the same, so that the owner can count it among its handles. */
static void test_spare_outlives_listener(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  listen_with_spare(&fx);
  fx.refuse = fx.close_listener = true;
  connect_client(&fx, &fx.clients[0]);
  while (fx.listener_open && !fx.timed_out)
    uv_run(&fx.loop, UV_RUN_ONCE);
  assert_int_equal(fx.spare_opened, 1);
  fixture_done(&fx);
  assert_int_equal(fx.spare_freed, 1);
}

/* ---- once per loop turn ---- */

typedef struct {
  usc_net_mark_t mark;
  int runs;
  int again; /* marks itself again this many times while running */
} item_t;

typedef struct {
  uv_loop_t loop;
  usc_net_batch_t batch;
  item_t items[3];
  int closed;
  int order[8];
  int n_order;
} batch_fixture_t;

static void on_run(usc_net_batch_t *batch, usc_net_mark_t *mark) {
  batch_fixture_t *fx = batch->data;
  item_t *item = USC_CONTAINER_OF(mark, item_t, mark);
  item->runs++;
  if (fx->n_order < (int)USC_ARRAY_LEN(fx->order))
    fx->order[fx->n_order++] = (int)(item - fx->items);
  if (item->again > 0) {
    item->again--;
    usc_net_batch_mark(batch, mark);
  }
}

static void on_batch_closed(uv_handle_t *handle) {
  batch_fixture_t *fx = handle->data;
  fx->closed++;
}

static void batch_init(batch_fixture_t *fx) {
  memset(fx, 0, sizeof(*fx));
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  usc_net_batch_init(&fx->batch, &fx->loop, on_run, fx);
}

static void batch_done(batch_fixture_t *fx) {
  usc_net_batch_close(&fx->batch, on_batch_closed);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(fx->closed, 2);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
}

/* The loop, with nothing else to do, still turns once to run what is
 * marked, and then ends: the batch keeps no loop alive. */
static void test_batch_runs_each_once(void **state) {
  (void)state;
  batch_fixture_t fx;
  batch_init(&fx);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  usc_net_batch_mark(&fx.batch, &fx.items[0].mark);
  usc_net_batch_mark(&fx.batch, &fx.items[1].mark);
  usc_net_batch_mark(&fx.batch, &fx.items[0].mark);
  assert_int_equal(fx.items[0].runs, 0);
  uv_run(&fx.loop, UV_RUN_DEFAULT);
  assert_int_equal(fx.items[0].runs, 1);
  assert_int_equal(fx.items[1].runs, 1);
  assert_int_equal(fx.items[2].runs, 0);
  /* Nothing marked: nothing runs again. */
  uv_run(&fx.loop, UV_RUN_NOWAIT);
  assert_int_equal(fx.items[0].runs, 1);
  batch_done(&fx);
}

static void test_batch_marked_while_running(void **state) {
  (void)state;
  batch_fixture_t fx;
  batch_init(&fx);
  fx.items[0].again = 2;
  usc_net_batch_mark(&fx.batch, &fx.items[0].mark);
  usc_net_batch_mark(&fx.batch, &fx.items[1].mark);
  uv_run(&fx.loop, UV_RUN_NOWAIT);
  assert_int_equal(fx.items[0].runs, 3);
  assert_int_equal(fx.items[1].runs, 1);
  batch_done(&fx);
}

static void test_batch_unmark(void **state) {
  (void)state;
  batch_fixture_t fx;
  batch_init(&fx);
  for (int i = 0; i < 3; i++)
    usc_net_batch_mark(&fx.batch, &fx.items[i].mark);
  usc_net_batch_unmark(&fx.batch, &fx.items[1].mark);
  usc_net_batch_unmark(&fx.batch, &fx.items[1].mark); /* not marked: no-op */
  uv_run(&fx.loop, UV_RUN_NOWAIT);
  assert_int_equal(fx.items[0].runs, 1);
  assert_int_equal(fx.items[1].runs, 0);
  assert_int_equal(fx.items[2].runs, 1);
  assert_int_equal(fx.n_order, 2);
  /* Unmarked, it can be marked again. */
  usc_net_batch_mark(&fx.batch, &fx.items[1].mark);
  uv_run(&fx.loop, UV_RUN_NOWAIT);
  assert_int_equal(fx.items[1].runs, 1);
  batch_done(&fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resolve_ipv4),
      cmocka_unit_test(test_resolve_ipv6),
      cmocka_unit_test(test_resolve_refuses_bad_hosts),
      cmocka_unit_test(test_format_ipv4),
      cmocka_unit_test(test_format_ipv6),
      cmocka_unit_test(test_format_other_and_truncated),
      cmocka_unit_test(test_listen_ipv4_any_port),
      cmocka_unit_test(test_listen_ipv6_any_port),
      cmocka_unit_test(test_listen_refuses_bad_host),
      cmocka_unit_test(test_listen_port_in_use),
      cmocka_unit_test(test_names_of_unconnected_handle),
      cmocka_unit_test(test_input_waiting),
      cmocka_unit_test(test_spare_refuses_and_listener_goes_on),
      cmocka_unit_test(test_spare_outlives_listener),
      cmocka_unit_test(test_batch_runs_each_once),
      cmocka_unit_test(test_batch_marked_while_running),
      cmocka_unit_test(test_batch_unmark),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
