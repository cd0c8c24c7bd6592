/* Tests of the admin HTTP/1.1 server with in-process clients on the same
 * libuv loop: raw bytes go out over TCP, answers are parsed with
 * http-parser in response mode. The handler's behaviour follows the
 * request target: "/hold..." is kept until the test releases it,
 * "/async..." is answered from a timer, "/echo" echoes the body, "/big"
 * sends 1 MiB, "/204" and "/invalid" test the respond checks; anything
 * else is answered at once with "METHOD TARGET BODY". */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <http_parser.h>
#include <uv.h>

#include "src/admin/admin.h"
#include "src/base/base.h"

#define MAX_CLIENTS 4
#define MAX_RESPONSES 16
#define MAX_HELD 8
#define WAIT_LIMIT_MS 5000
#define BIG_SIZE (1024 * 1024)

typedef struct fixture fixture_t;

typedef struct {
  int status;
  char connection[32];
  char content_type[64];
  char x_seen[16];
  long content_length; /* -1: none */
  char body[512];
  size_t body_len; /* all of it, even past sizeof(body) */
} response_t;

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  fixture_t *fx;
  bool used;
  bool connected;
  bool eof;
  bool closing;
  int connect_status;
  http_parser parser;
  bool parse_error;
  uint32_t head_mask; /* bit i: response i answers a HEAD */
  char field[64];
  char value[128];
  bool in_value;
  int n_responses;
  response_t resp[MAX_RESPONSES]; /* later ones share the last slot */
  char raw[8192];
  size_t raw_len;
} client_t;

struct fixture {
  uv_loop_t loop;
  usc_admin_server_t *server;
  char host[64];
  int port;
  bool server_closed;
  uv_timer_t tick;
  uv_timer_t async_timer;
  bool timer_fired;
  uv_timer_t wait_timer;
  client_t clients[MAX_CLIENTS];
  /* What the handler saw. */
  int requests;
  int cancels;
  int outstanding;
  int max_outstanding;
  int last_rc;
  char method[16];
  char target[256];
  char peer[64];
  char body[4096];
  size_t body_len;
  size_t n_headers;
  char header_names[8][32];
  char header_values[8][64];
  bool user_seen_on_cancel;
  usc_admin_req_t *held[MAX_HELD];
  int n_held;
  usc_admin_req_t *queued[MAX_HELD];
  int n_queued;
};

static char big_body[BIG_SIZE];

/* ---- the handler ---- */

static void record(fixture_t *fx, const usc_admin_request_t *r) {
  fx->requests++;
  if (++fx->outstanding > fx->max_outstanding)
    fx->max_outstanding = fx->outstanding;
  snprintf(fx->method, sizeof(fx->method), "%s", r->method);
  snprintf(fx->target, sizeof(fx->target), "%s", r->target);
  snprintf(fx->peer, sizeof(fx->peer), "%s", r->peer);
  assert_int_equal(strlen(r->target), r->target_len);
  fx->body_len = r->body_len < sizeof(fx->body) ? r->body_len : 0;
  memcpy(fx->body, r->body, fx->body_len);
  fx->n_headers = r->n_headers;
  for (size_t i = 0; i < r->n_headers && i < 8; i++) {
    snprintf(fx->header_names[i], 32, "%s", r->headers[i].name);
    snprintf(fx->header_values[i], 64, "%s", r->headers[i].value);
  }
}

static int respond_echo_line(usc_admin_req_t *req) {
  const usc_admin_request_t *r = usc_admin_req_request(req);
  char body[1024];
  int n = snprintf(body, sizeof(body), "%s %s ", r->method, r->target);
  size_t len = (size_t)n;
  size_t take = r->body_len < sizeof(body) - len ? r->body_len : 0;
  memcpy(body + len, r->body, take);
  usc_admin_header_t seen = {"X-Seen", "yes"};
  return usc_admin_respond(req, 200, "text/plain", &seen, 1, body, len + take);
}

static void answer(fixture_t *fx, usc_admin_req_t *req) {
  const usc_admin_request_t *r = usc_admin_req_request(req);
  fx->outstanding--;
  if (strcmp(r->target, "/invalid") == 0) {
    usc_admin_header_t bad = {"bad name", "x"};
    fx->last_rc = usc_admin_respond(req, 200, NULL, &bad, 1, NULL, 0);
  } else if (strcmp(r->target, "/204") == 0) {
    fx->last_rc = usc_admin_respond(req, 204, NULL, NULL, 0, "x", 1);
  } else if (strcmp(r->target, "/big") == 0) {
    fx->last_rc = usc_admin_respond(req, 200, "application/octet-stream", NULL,
                                    0, big_body, BIG_SIZE);
  } else if (strcmp(r->target, "/twice") == 0) {
    assert_int_equal(usc_admin_respond(req, 202, NULL, NULL, 0, NULL, 0), 0);
    fx->last_rc = usc_admin_respond(req, 200, NULL, NULL, 0, NULL, 0);
  } else if (strcmp(r->target, "/echo") == 0) {
    /* The request's own body: respond must copy it before freeing. */
    fx->last_rc = usc_admin_respond(req, 201, "application/json", NULL, 0,
                                    r->body, r->body_len);
  } else {
    fx->last_rc = respond_echo_line(req);
  }
}

static void on_async(uv_timer_t *timer) {
  fixture_t *fx = timer->data;
  for (int i = 0; i < fx->n_queued; i++)
    answer(fx, fx->queued[i]);
  fx->n_queued = 0;
}

static void on_server_closed(void *user);

static void on_request(void *user, usc_admin_req_t *req,
                       const usc_admin_request_t *r) {
  fixture_t *fx = user;
  record(fx, r);
  usc_admin_req_set_user(req, fx);
  if (strncmp(r->target, "/hold", 5) == 0) {
    assert_true(fx->n_held < MAX_HELD);
    fx->held[fx->n_held++] = req;
  } else if (strcmp(r->target, "/shutdown") == 0) {
    /* Closing the server from a handler cancels this very request. */
    usc_admin_server_close(fx->server, on_server_closed, fx);
    fx->server = NULL;
  } else if (strncmp(r->target, "/async", 6) == 0) {
    assert_true(fx->n_queued < MAX_HELD);
    fx->queued[fx->n_queued++] = req;
    uv_timer_start(&fx->async_timer, on_async, 10, 0);
  } else {
    answer(fx, req);
  }
}

static void forget(usc_admin_req_t **list, int *n, usc_admin_req_t *req) {
  for (int i = 0; i < *n; i++) {
    if (list[i] == req) {
      memmove(&list[i], &list[i + 1], (size_t)(*n - i - 1) * sizeof(*list));
      (*n)--;
      return;
    }
  }
}

static void on_cancel(void *user, usc_admin_req_t *req) {
  fixture_t *fx = user;
  fx->cancels++;
  fx->outstanding--;
  fx->user_seen_on_cancel = usc_admin_req_user(req) == fx;
  forget(fx->held, &fx->n_held, req);
  forget(fx->queued, &fx->n_queued, req);
}

static const usc_admin_handler_t handler = {on_request, on_cancel};

static void release_held(fixture_t *fx) {
  int n = fx->n_held;
  fx->n_held = 0;
  for (int i = 0; i < n; i++)
    answer(fx, fx->held[i]);
}

/* ---- running the loop ---- */

static void on_tick(uv_timer_t *timer) { (void)timer; }

typedef bool (*pred_fn)(fixture_t *fx, const void *arg, long n);

/* Runs the loop until `done`; a ticking timer keeps UV_RUN_ONCE from
 * blocking forever if nothing happens. */
static void run_until(fixture_t *fx, pred_fn done, const void *arg, long n) {
  uint64_t deadline = uv_now(&fx->loop) + WAIT_LIMIT_MS;
  uv_timer_start(&fx->tick, on_tick, 20, 20);
  while (!done(fx, arg, n)) {
    assert_true(uv_now(&fx->loop) < deadline);
    uv_run(&fx->loop, UV_RUN_ONCE);
  }
  uv_timer_stop(&fx->tick);
}

static bool responses_reached(fixture_t *fx, const void *arg, long n) {
  (void)fx;
  return ((const client_t *)arg)->n_responses >= n;
}

static bool client_done(fixture_t *fx, const void *arg, long n) {
  (void)fx;
  (void)n;
  return ((const client_t *)arg)->eof;
}

static bool client_connected(fixture_t *fx, const void *arg, long n) {
  (void)fx;
  (void)n;
  const client_t *c = arg;
  return c->connected || c->connect_status != 0;
}

static bool int_reached(fixture_t *fx, const void *arg, long n) {
  (void)fx;
  return *(const int *)arg >= n;
}

static bool connections_are(fixture_t *fx, const void *arg, long n) {
  (void)arg;
  return usc_admin_server_connections(fx->server) == (size_t)n;
}

static bool flag_set(fixture_t *fx, const void *arg, long n) {
  (void)fx;
  (void)n;
  return *(const bool *)arg;
}

static void on_wait_timer(uv_timer_t *timer) {
  fixture_t *fx = timer->data;
  fx->timer_fired = true;
}

static void run_for(fixture_t *fx, uint64_t ms) {
  fx->timer_fired = false;
  uv_timer_start(&fx->wait_timer, on_wait_timer, ms, 0);
  run_until(fx, flag_set, &fx->timer_fired, 0);
}

/* ---- the client ---- */

static client_t *client_of(http_parser *p) { return p->data; }

static response_t *current(client_t *c) {
  int i = c->n_responses < MAX_RESPONSES ? c->n_responses : MAX_RESPONSES - 1;
  return &c->resp[i];
}

/* Truncating copy (snprintf("%s") draws format-truncation warnings). */
static void copy_str(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static void end_header(client_t *c) {
  response_t *r = current(c);
  if (strcasecmp(c->field, "connection") == 0)
    copy_str(r->connection, sizeof(r->connection), c->value);
  else if (strcasecmp(c->field, "content-type") == 0)
    copy_str(r->content_type, sizeof(r->content_type), c->value);
  else if (strcasecmp(c->field, "x-seen") == 0)
    copy_str(r->x_seen, sizeof(r->x_seen), c->value);
  else if (strcasecmp(c->field, "content-length") == 0)
    r->content_length = atol(c->value);
  c->field[0] = c->value[0] = '\0';
  c->in_value = false;
}

static void append_str(char *dst, size_t cap, const char *at, size_t len) {
  size_t have = strlen(dst);
  size_t take = len < cap - have - 1 ? len : cap - have - 1;
  memcpy(dst + have, at, take);
  dst[have + take] = '\0';
}

static int c_message_begin(http_parser *p) {
  response_t *r = current(client_of(p));
  memset(r, 0, sizeof(*r));
  r->content_length = -1;
  return 0;
}

static int c_header_field(http_parser *p, const char *at, size_t len) {
  client_t *c = client_of(p);
  if (c->in_value)
    end_header(c);
  append_str(c->field, sizeof(c->field), at, len);
  return 0;
}

static int c_header_value(http_parser *p, const char *at, size_t len) {
  client_t *c = client_of(p);
  c->in_value = true;
  append_str(c->value, sizeof(c->value), at, len);
  return 0;
}

static int c_headers_complete(http_parser *p) {
  client_t *c = client_of(p);
  if (c->in_value)
    end_header(c);
  current(c)->status = (int)p->status_code;
  bool head = c->n_responses < 32 && (c->head_mask >> c->n_responses) & 1;
  return head ? 1 : 0; /* 1: no body follows */
}

static int c_body(http_parser *p, const char *at, size_t len) {
  response_t *r = current(client_of(p));
  if (r->body_len < sizeof(r->body)) {
    size_t take = sizeof(r->body) - r->body_len;
    memcpy(r->body + r->body_len, at, len < take ? len : take);
  }
  r->body_len += len;
  return 0;
}

static int c_message_complete(http_parser *p) {
  client_of(p)->n_responses++;
  return 0;
}

static const http_parser_settings client_settings = {
    .on_message_begin = c_message_begin,
    .on_header_field = c_header_field,
    .on_header_value = c_header_value,
    .on_headers_complete = c_headers_complete,
    .on_body = c_body,
    .on_message_complete = c_message_complete,
};

static void c_alloc(uv_handle_t *handle, size_t hint, uv_buf_t *buf) {
  static char scratch[64 * 1024];
  (void)handle;
  (void)hint;
  *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void c_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  client_t *c = stream->data;
  if (nread < 0) {
    c->eof = true;
    uv_read_stop(stream);
    return;
  }
  size_t n = (size_t)nread;
  size_t room = sizeof(c->raw) - 1 - c->raw_len;
  memcpy(c->raw + c->raw_len, buf->base, n < room ? n : room);
  c->raw_len += n < room ? n : room;
  c->raw[c->raw_len] = '\0';
  if (c->parse_error)
    return;
  size_t used = http_parser_execute(&c->parser, &client_settings, buf->base, n);
  c->parse_error = used != n || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK;
}

static void c_connected(uv_connect_t *req, int status) {
  client_t *c = req->data;
  c->connect_status = status;
  if (status == 0) {
    c->connected = true;
    uv_read_start((uv_stream_t *)&c->tcp, c_alloc, c_read);
  }
}

static client_t *client_open(fixture_t *fx) {
  client_t *c = NULL;
  for (int i = 0; i < MAX_CLIENTS && c == NULL; i++)
    c = fx->clients[i].used ? NULL : &fx->clients[i];
  assert_non_null(c);
  memset(c, 0, sizeof(*c));
  c->used = true;
  c->fx = fx;
  http_parser_init(&c->parser, HTTP_RESPONSE);
  c->parser.data = c;
  uv_tcp_init(&fx->loop, &c->tcp);
  c->tcp.data = c->connect_req.data = c;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", fx->port, &addr);
  assert_int_equal(uv_tcp_connect(&c->connect_req, &c->tcp,
                                  (const struct sockaddr *)&addr, c_connected),
                   0);
  run_until(fx, client_connected, c, 0);
  assert_int_equal(c->connect_status, 0);
  return c;
}

typedef struct {
  uv_write_t req;
  char data[];
} client_write_t;

static void c_written(uv_write_t *req, int status) {
  (void)status; /* the server may have closed first */
  free(req);
}

static void client_send_n(client_t *c, const char *data, size_t len) {
  client_write_t *w = malloc(sizeof(*w) + len);
  assert_non_null(w);
  memcpy(w->data, data, len);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
  assert_int_equal(
      uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, c_written), 0);
}

static void client_send(client_t *c, const char *text) {
  client_send_n(c, text, strlen(text));
}

static void client_close(client_t *c) {
  if (!c->closing)
    uv_close((uv_handle_t *)&c->tcp, NULL);
  c->closing = true;
}

static void wait_responses(fixture_t *fx, client_t *c, int n) {
  run_until(fx, responses_reached, c, n);
}

static void wait_eof(fixture_t *fx, client_t *c) {
  run_until(fx, client_done, c, 0);
}

/* ---- fixture ---- */

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  if (fx == NULL || uv_loop_init(&fx->loop) != 0)
    return -1;
  uv_timer_init(&fx->loop, &fx->tick);
  uv_timer_init(&fx->loop, &fx->async_timer);
  uv_timer_init(&fx->loop, &fx->wait_timer);
  fx->tick.data = fx->async_timer.data = fx->wait_timer.data = fx;
  *state = fx;
  return 0;
}

static usc_admin_refusal_fn refusal_hook; /* for the next start */

static void start_on(fixture_t *fx, const usc_admin_limits_t *limits,
                     const char *host) {
  usc_admin_config_t config = {
      .handler = &handler, .user = fx, .refusal = refusal_hook};
  refusal_hook = NULL;
  if (limits != NULL)
    config.limits = *limits;
  char error[256] = "";
  int rc = usc_admin_server_start(&fx->loop, &config, host, 0, &fx->server,
                                  error, sizeof(error));
  assert_int_equal(rc, 0);
  const char *address = usc_admin_server_address(fx->server);
  const char *colon = strrchr(address, ':');
  assert_non_null(colon);
  fx->port = atoi(colon + 1);
  assert_true(fx->port > 0);
  fx->server_closed = false;
}

static void start(fixture_t *fx, const usc_admin_limits_t *limits) {
  start_on(fx, limits, "127.0.0.1");
}

static void on_server_closed(void *user) {
  fixture_t *fx = user;
  fx->server_closed = true;
}

/* Closes the clients and the server and lets libuv finish with them. */
static void stop(fixture_t *fx) {
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (fx->clients[i].used)
      client_close(&fx->clients[i]);
    fx->clients[i].used = false;
  }
  if (fx->server != NULL) {
    usc_admin_server_close(fx->server, on_server_closed, fx);
    fx->server = NULL;
    run_until(fx, flag_set, &fx->server_closed, 0);
  }
  uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static int teardown(void **state) {
  fixture_t *fx = *state;
  stop(fx);
  uv_close((uv_handle_t *)&fx->tick, NULL);
  uv_close((uv_handle_t *)&fx->async_timer, NULL);
  uv_close((uv_handle_t *)&fx->wait_timer, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&fx->loop);
  usc_alloc_fail_at(0);
  free(fx);
  assert_int_equal(rc, 0);
  return 0;
}

/* ---- simple requests ---- */

static void test_get_sync(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  assert_non_null(strstr(usc_admin_server_address(fx->server), "127.0.0.1:"));
  client_t *c = client_open(fx);
  client_send(c, "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n"
                 "X-Test:  Value  \r\nX-Empty:\r\n\r\n");
  wait_responses(fx, c, 1);
  response_t *r = &c->resp[0];
  assert_int_equal(r->status, 200);
  assert_string_equal(r->body, "GET /hello?x=1 ");
  assert_int_equal(r->content_length, 15);
  assert_string_equal(r->connection, "keep-alive");
  assert_string_equal(r->content_type, "text/plain");
  assert_string_equal(r->x_seen, "yes");
  assert_non_null(strstr(c->raw, "\r\nDate: "));
  assert_non_null(strstr(c->raw, " GMT\r\n"));
  assert_string_equal(fx->method, "GET");
  assert_string_equal(fx->target, "/hello?x=1");
  assert_int_equal(fx->n_headers, 3);
  assert_string_equal(fx->header_names[0], "host");
  assert_string_equal(fx->header_values[0], "a");
  assert_string_equal(fx->header_names[1], "x-test");
  assert_string_equal(fx->header_values[1], "Value");
  assert_string_equal(fx->header_names[2], "x-empty");
  assert_string_equal(fx->header_values[2], "");
  assert_int_equal(strncmp(fx->peer, "127.0.0.1:", 10), 0);
  assert_int_equal(usc_admin_server_pending(fx->server), 0);
  assert_int_equal(usc_admin_server_connections(fx->server), 1);
}

static void test_get_async(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /async HTTP/1.1\r\nHost: a\r\n\r\n");
  run_until(fx, int_reached, &fx->requests, 1);
  assert_int_equal(usc_admin_server_pending(fx->server), 1);
  assert_int_equal(c->n_responses, 0);
  wait_responses(fx, c, 1);
  assert_int_equal(c->resp[0].status, 200);
  assert_string_equal(c->resp[0].body, "GET /async ");
  assert_int_equal(usc_admin_server_pending(fx->server), 0);
}

static void test_header_lookup(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /hold HTTP/1.1\r\nAuthorization: Bearer t\r\n"
                 "X-Request-ID: 42\r\n\r\n");
  run_until(fx, int_reached, &fx->requests, 1);
  usc_admin_req_t *req = fx->held[0];
  assert_string_equal(usc_admin_req_header(req, "authorization"), "Bearer t");
  assert_string_equal(usc_admin_req_header(req, "x-request-id"), "42");
  assert_null(usc_admin_req_header(req, "X-Request-ID"));
  assert_null(usc_admin_req_header(req, "cookie"));
  assert_ptr_equal(usc_admin_req_user(req), fx);
  release_held(fx);
  wait_responses(fx, c, 1);
  assert_int_equal(c->resp[0].status, 200);
}

static void test_keep_alive(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n");
  wait_responses(fx, c, 1);
  client_send(c, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n");
  wait_responses(fx, c, 2);
  assert_string_equal(c->resp[0].body, "GET /one ");
  assert_string_equal(c->resp[1].body, "GET /two ");
  assert_string_equal(c->resp[1].connection, "keep-alive");
  assert_false(c->eof);
  assert_int_equal(fx->requests, 2);
  assert_int_equal(usc_admin_server_connections(fx->server), 1);
}

static void test_pipelining(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /async1 HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /async2 HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /three HTTP/1.1\r\nHost: a\r\n\r\n");
  wait_responses(fx, c, 3);
  assert_string_equal(c->resp[0].body, "GET /async1 ");
  assert_string_equal(c->resp[1].body, "GET /async2 ");
  assert_string_equal(c->resp[2].body, "GET /three ");
  assert_int_equal(fx->max_outstanding, 1); /* one at a time */
  assert_false(c->parse_error);
}

/* Many pipelined requests held behind a first one: the server stops
 * reading past its input cap and gates on unwritten output, then serves
 * them all in order. */
static void test_pipelining_backpressure(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  enum { N = 4000 };
  static const char one[] = "GET /p HTTP/1.1\r\n\r\n";
  size_t len = sizeof(one) - 1;
  char *batch = malloc(N * len);
  assert_non_null(batch);
  for (int i = 0; i < N; i++)
    memcpy(batch + (size_t)i * len, one, len);
  client_send(c, "GET /hold HTTP/1.1\r\n\r\n");
  client_send_n(c, batch, N * len);
  free(batch);
  run_until(fx, int_reached, &fx->requests, 1);
  run_for(fx, 50);
  assert_int_equal(fx->requests, 1);
  release_held(fx);
  wait_responses(fx, c, N + 1);
  assert_int_equal(fx->requests, N + 1);
  assert_false(c->parse_error);
  assert_false(c->eof);
}

/* ---- bodies ---- */

static void test_post_body(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
                 "Content-Type: application/json\r\n\r\nhello");
  run_for(fx, 20);
  assert_int_equal(fx->requests, 0);
  client_send(c, " world");
  wait_responses(fx, c, 1);
  assert_int_equal(c->resp[0].status, 201);
  assert_string_equal(c->resp[0].body, "hello world");
  assert_string_equal(c->resp[0].content_type, "application/json");
  assert_string_equal(fx->method, "POST");
  assert_int_equal(fx->body_len, 11);
}

static void test_chunked_body(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nHost: a\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
  run_for(fx, 20);
  client_send(c, "6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
                 "GET /after HTTP/1.1\r\n\r\n");
  wait_responses(fx, c, 2);
  assert_int_equal(c->resp[0].status, 201);
  assert_string_equal(c->resp[0].body, "hello world");
  assert_string_equal(c->resp[1].body, "GET /after ");
  assert_int_equal(fx->n_headers, 0); /* of /after; no trailer leaked */
}

static void test_expect_continue(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                 "Expect: 100-continue\r\n\r\n");
  wait_responses(fx, c, 1);
  assert_int_equal(c->resp[0].status, 100);
  assert_int_equal(fx->requests, 0);
  client_send(c, "ping");
  wait_responses(fx, c, 2);
  assert_int_equal(c->resp[1].status, 201);
  assert_string_equal(c->resp[1].body, "ping");
}

static void test_expect_continue_too_large(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.max_body_bytes = 16};
  start(fx, &limits);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 17\r\n"
                 "Expect: 100-continue\r\n\r\n");
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 1);
  assert_int_equal(c->resp[0].status, 413);
}

static const char *json_refusal(void *user, int status, char *body, size_t cap,
                                size_t *len) {
  (void)user;
  *len = (size_t)snprintf(body, cap, "{\"status\":%d}", status);
  return "application/json";
}

/* A server speaking an API answers its own refusals in its format. */
static void test_refusal_hook(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.max_body_bytes = 16};
  refusal_hook = json_refusal;
  start(fx, &limits);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 17\r\n\r\n");
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 1);
  assert_int_equal(c->resp[0].status, 413);
  assert_string_equal(c->resp[0].content_type, "application/json");
  assert_string_equal(c->resp[0].body, "{\"status\":413}");
}

/* ---- limits ---- */

static void test_header_too_large(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.max_header_bytes = 256};
  start(fx, &limits);
  client_t *c = client_open(fx);
  char request[1024];
  char value[400];
  memset(value, 'v', sizeof(value) - 1);
  value[sizeof(value) - 1] = '\0';
  snprintf(request, sizeof(request), "GET / HTTP/1.1\r\nX-Big: %s\r\n\r\n",
           value);
  client_send(c, request);
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 1);
  assert_int_equal(c->resp[0].status, 431);
  assert_string_equal(c->resp[0].connection, "close");
  assert_int_equal(fx->requests, 0);
}

static void test_too_many_headers(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  char request[2048] = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 65; i++)
    snprintf(request + strlen(request), sizeof(request) - strlen(request),
             "H%d: x\r\n", i);
  strcat(request, "\r\n");
  client_send(c, request);
  wait_eof(fx, c);
  assert_int_equal(c->resp[0].status, 431);
  assert_int_equal(fx->requests, 0);
}

static void test_body_too_large(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.max_body_bytes = 16};
  start(fx, &limits);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
                 "0123456789");
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 1);
  assert_int_equal(c->resp[0].status, 413);
  assert_string_equal(c->resp[0].connection, "close");
  client_t *d = client_open(fx);
  client_send(d, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n");
  wait_eof(fx, d);
  assert_int_equal(d->n_responses, 1);
  assert_int_equal(d->resp[0].status, 413);
  assert_int_equal(fx->requests, 0);
}

static void test_body_at_limit(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.max_body_bytes = 16};
  start(fx, &limits);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 16\r\n\r\n"
                 "0123456789abcdef");
  wait_responses(fx, c, 1);
  assert_int_equal(c->resp[0].status, 201);
  assert_string_equal(c->resp[0].body, "0123456789abcdef");
}

static void test_slowloris(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.read_timeout_ms = 100};
  start(fx, &limits);
  client_t *c = client_open(fx);
  uint64_t began = uv_now(&fx->loop);
  client_send(c, "GET / HTTP/1.1\r\nHost: x\r\n");
  run_for(fx, 40);
  client_send(c, "X-More: y\r\n"); /* trickling does not extend the time */
  wait_eof(fx, c);
  assert_true(uv_now(&fx->loop) - began >= 100);
  assert_int_equal(c->n_responses, 1);
  assert_int_equal(c->resp[0].status, 408);
  assert_string_equal(c->resp[0].connection, "close");
  assert_int_equal(fx->requests, 0);
}

static void test_idle_timeout(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.idle_timeout_ms = 100};
  start(fx, &limits);
  client_t *c = client_open(fx);
  /* Loop time before sending: the idle timer starts no earlier. */
  uint64_t began = uv_now(&fx->loop);
  client_send(c, "GET / HTTP/1.1\r\n\r\n");
  wait_responses(fx, c, 1);
  wait_eof(fx, c);
  assert_true(uv_now(&fx->loop) - began >= 100);
  assert_int_equal(c->n_responses, 1);
  run_until(fx, connections_are, NULL, 0);
}

static void test_max_connections(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.max_connections = 1};
  start(fx, &limits);
  client_t *a = client_open(fx);
  client_send(a, "GET /a HTTP/1.1\r\n\r\n");
  wait_responses(fx, a, 1);
  client_t *b = client_open(fx);
  client_send(b, "GET /b HTTP/1.1\r\n\r\n");
  wait_eof(fx, b);
  assert_int_equal(b->n_responses, 0);
  client_send(a, "GET /a2 HTTP/1.1\r\n\r\n");
  wait_responses(fx, a, 2);
  assert_string_equal(a->resp[1].body, "GET /a2 ");
  client_close(a);
  run_until(fx, connections_are, NULL, 0);
  client_t *c = client_open(fx); /* room again */
  client_send(c, "GET /c HTTP/1.1\r\n\r\n");
  wait_responses(fx, c, 1);
  assert_int_equal(c->resp[0].status, 200);
}

/* ---- connection handling ---- */

static void test_malformed(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET / HTTP/1.1\r\nBad Header\r\n\r\n");
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 1);
  assert_int_equal(c->resp[0].status, 400);
  assert_string_equal(c->resp[0].connection, "close");
  assert_int_equal(fx->requests, 0);
}

static void test_junk_isolated(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *a = client_open(fx);
  client_t *b = client_open(fx);
  char junk[512];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof(junk); i++) {
    x = x * 1103515245u + 12345u;
    junk[i] = (char)(x >> 16);
  }
  junk[0] = '\x01';
  client_send_n(a, junk, sizeof(junk));
  client_send(b, "GET /fine HTTP/1.1\r\n\r\n");
  wait_eof(fx, a);
  wait_responses(fx, b, 1);
  assert_int_equal(a->n_responses, 1);
  assert_int_equal(a->resp[0].status, 400);
  assert_string_equal(b->resp[0].body, "GET /fine ");
  assert_false(b->eof);
}

static void test_http10(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /old HTTP/1.0\r\n\r\n");
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 1);
  assert_string_equal(c->resp[0].connection, "close");
  assert_string_equal(c->resp[0].body, "GET /old ");
  assert_int_equal(strncmp(c->raw, "HTTP/1.1 200 OK\r\n", 17), 0);
  client_t *d = client_open(fx);
  client_send(d, "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  wait_responses(fx, d, 1);
  assert_string_equal(d->resp[0].connection, "keep-alive");
  client_send(d, "GET /ka2 HTTP/1.0\r\n\r\n");
  wait_eof(fx, d);
  assert_int_equal(d->n_responses, 2);
  assert_string_equal(d->resp[1].connection, "close");
}

static void test_connection_close(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n"
                 "GET /ignored HTTP/1.1\r\n\r\n");
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 1);
  assert_string_equal(c->resp[0].connection, "close");
  assert_int_equal(fx->requests, 1);
  client_close(c); /* the server lingers until the client closes */
  run_until(fx, connections_are, NULL, 0);
}

static void test_linger_timeout(void **state) {
  fixture_t *fx = *state;
  usc_admin_limits_t limits = {.linger_ms = 50};
  start(fx, &limits);
  client_t *c = client_open(fx);
  client_send(c, "GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n");
  wait_eof(fx, c);
  /* The client never closes: the server gives up after linger_ms. */
  assert_int_equal(usc_admin_server_connections(fx->server), 1);
  run_until(fx, connections_are, NULL, 0);
}

static void test_smuggling_refused(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *a = client_open(fx);
  client_send(a, "POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  client_t *b = client_open(fx);
  client_send(b, "POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                 "Content-Length: 4\r\n\r\nabcd");
  client_t *c = client_open(fx);
  client_send(c, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx");
  wait_eof(fx, a);
  wait_eof(fx, b);
  wait_eof(fx, c);
  assert_int_equal(a->resp[0].status, 400);
  assert_int_equal(b->resp[0].status, 400);
  assert_int_equal(c->resp[0].status, 400);
  assert_int_equal(fx->requests, 0);
}

static void test_disconnect_while_reading(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nab");
  run_for(fx, 20);
  client_close(c);
  run_until(fx, connections_are, NULL, 0);
  assert_int_equal(fx->requests, 0);
  assert_int_equal(fx->cancels, 0);
}

static void test_head(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  c->head_mask = 1;
  client_send(c, "HEAD /h HTTP/1.1\r\n\r\nGET /h HTTP/1.1\r\n\r\n");
  wait_responses(fx, c, 2);
  assert_int_equal(c->resp[0].status, 200);
  assert_int_equal(c->resp[0].content_length, 8); /* "HEAD /h " */
  assert_int_equal(c->resp[0].body_len, 0);
  assert_string_equal(c->resp[1].body, "GET /h ");
  assert_false(c->parse_error);
}

static void test_upgrade_and_connect(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *a = client_open(fx);
  client_send(a, "GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\n\r\n");
  client_t *b = client_open(fx);
  client_send(b, "CONNECT example.com:443 HTTP/1.1\r\n\r\n");
  client_t *c = client_open(fx);
  client_send(c, "GET / HTTP/2.0\r\n\r\n");
  wait_eof(fx, a);
  wait_eof(fx, b);
  wait_eof(fx, c);
  assert_int_equal(a->resp[0].status, 501);
  assert_int_equal(b->resp[0].status, 501);
  assert_int_equal(c->resp[0].status, 505);
  assert_int_equal(fx->requests, 0);
}

static void test_respond_checks(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  c->head_mask = 0;
  client_send(c, "GET /204 HTTP/1.1\r\n\r\nGET /invalid HTTP/1.1\r\n\r\n");
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 2);
  assert_int_equal(c->resp[0].status, 204);
  assert_int_equal(c->resp[0].content_length, -1);
  assert_int_equal(c->resp[0].body_len, 0);
  assert_int_equal(c->resp[1].status, 500);
  assert_string_equal(c->resp[1].connection, "close");
  assert_int_equal(fx->last_rc, USC_ERR_INVALID);
}

static void test_respond_twice(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /twice HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
  wait_responses(fx, c, 2);
  assert_int_equal(fx->last_rc, 0); /* of /next */
  assert_int_equal(c->resp[0].status, 202);
  assert_int_equal(c->resp[0].content_length, 0);
  assert_string_equal(c->resp[1].body, "GET /next ");
}

static void test_close_from_handler(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_t *d = client_open(fx);
  client_send(d, "GET /hold HTTP/1.1\r\n\r\n");
  run_until(fx, int_reached, &fx->requests, 1);
  client_send(c, "GET /shutdown HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
  run_until(fx, flag_set, &fx->server_closed, 0);
  assert_int_equal(fx->requests, 2);
  assert_int_equal(fx->cancels, 2);
  wait_eof(fx, c);
  wait_eof(fx, d);
  assert_int_equal(c->n_responses, 0);
}

static void test_big_response(void **state) {
  fixture_t *fx = *state;
  memset(big_body, 'b', sizeof(big_body));
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /big HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
  wait_responses(fx, c, 2);
  assert_int_equal(c->resp[0].body_len, BIG_SIZE);
  assert_int_equal(c->resp[0].content_length, BIG_SIZE);
  assert_string_equal(c->resp[1].body, "GET /after ");
}

/* ---- cancellation, drain, close ---- */

static void test_disconnect_cancels(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "POST /hold HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
  run_until(fx, int_reached, &fx->requests, 1);
  assert_int_equal(usc_admin_server_pending(fx->server), 1);
  client_close(c);
  run_until(fx, int_reached, &fx->cancels, 1);
  assert_true(fx->user_seen_on_cancel);
  assert_int_equal(fx->n_held, 0);
  assert_int_equal(usc_admin_server_pending(fx->server), 0);
  run_until(fx, connections_are, NULL, 0);
}

static void test_close_cancels(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "GET /hold HTTP/1.1\r\n\r\n");
  run_until(fx, int_reached, &fx->requests, 1);
  usc_admin_server_close(fx->server, on_server_closed, fx);
  fx->server = NULL;
  assert_int_equal(fx->cancels, 1);
  assert_int_equal(fx->n_held, 0);
  run_until(fx, flag_set, &fx->server_closed, 0);
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 0);
}

static void test_drain(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *busy = client_open(fx);
  client_t *idle = client_open(fx);
  client_send(busy, "GET /hold HTTP/1.1\r\n\r\n");
  run_until(fx, int_reached, &fx->requests, 1);
  run_until(fx, connections_are, NULL, 2);
  usc_admin_server_drain(fx->server);
  wait_eof(fx, idle);
  assert_int_equal(idle->n_responses, 0);
  assert_int_equal(usc_admin_server_connections(fx->server), 1);
  assert_false(busy->eof);
  release_held(fx);
  wait_eof(fx, busy);
  assert_int_equal(busy->n_responses, 1);
  assert_int_equal(busy->resp[0].status, 200);
  assert_string_equal(busy->resp[0].connection, "close");
  client_close(busy); /* the server lingers until the client closes */
  run_until(fx, connections_are, NULL, 0);
  assert_int_equal(fx->cancels, 0);
}

static void test_drain_while_reading(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  client_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
  run_until(fx, connections_are, NULL, 1);
  run_for(fx, 20);
  usc_admin_server_drain(fx->server);
  client_send(c, "cd");
  wait_eof(fx, c);
  assert_int_equal(c->n_responses, 1);
  assert_string_equal(c->resp[0].body, "abcd");
  assert_string_equal(c->resp[0].connection, "close");
}

static void test_start_failure(void **state) {
  fixture_t *fx = *state;
  usc_admin_config_t config = {.handler = &handler, .user = fx};
  char error[256] = "";
  usc_admin_server_t *server = NULL;
  int rc = usc_admin_server_start(&fx->loop, &config, "256.0.0.1", 0, &server,
                                  error, sizeof(error));
  assert_int_equal(rc, USC_ERR_IO);
  assert_null(server);
  assert_non_null(strstr(error, "256.0.0.1"));
  uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void test_ipv6_address(void **state) {
  fixture_t *fx = *state;
  usc_admin_config_t config = {.handler = &handler, .user = fx};
  char error[256] = "";
  int rc = usc_admin_server_start(&fx->loop, &config, "::1", 0, &fx->server,
                                  error, sizeof(error));
  if (rc != 0) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    skip(); /* no IPv6 loopback here */
  }
  assert_int_equal(strncmp(usc_admin_server_address(fx->server), "[::1]:", 6),
                   0);
}

/* ---- memory ---- */

static void test_no_allocation_per_request(void **state) {
  fixture_t *fx = *state;
  start(fx, NULL);
  client_t *c = client_open(fx);
  /* Two warm-up requests, one at a time: output alternates between two
   * buffers. */
  for (int i = 0; i < 12; i++) {
    if (i == 2)
      usc_alloc_fail_at(0);
    client_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n"
                   "X-A: 1\r\n\r\nhello");
    wait_responses(fx, c, 1 + i);
  }
  assert_int_equal(usc_alloc_fail_at(0), 0);
}

/* Every allocation of a connection's life fails in turn: the client gets
 * an answer or a closed connection, never a hang, a crash or a leak. */
static void test_allocation_failures(void **state) {
  fixture_t *fx = *state;
  for (size_t nth = 1;; nth++) {
    start(fx, NULL);
    usc_alloc_fail_at(nth);
    client_t *c = client_open(fx);
    /* Answered later, so that "GET /next" waits in the input buffer and
     * both output buffers are used. */
    client_send(c, "POST /async HTTP/1.1\r\nContent-Length: 5\r\n"
                   "Expect: 100-continue\r\n\r\nhello"
                   "GET /next HTTP/1.1\r\n\r\n");
    uint64_t deadline = uv_now(&fx->loop) + WAIT_LIMIT_MS;
    uv_timer_start(&fx->tick, on_tick, 20, 20);
    while (c->n_responses < 3 && !c->eof) {
      assert_true(uv_now(&fx->loop) < deadline);
      uv_run(&fx->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&fx->tick);
    size_t made = usc_alloc_fail_at(0);
    stop(fx);
    if (made < nth) {
      assert_int_equal(c->n_responses, 3);
      assert_true(nth > 6); /* every allocation did fail once */
      break;
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(test_get_sync),
      T(test_get_async),
      T(test_header_lookup),
      T(test_keep_alive),
      T(test_pipelining),
      T(test_pipelining_backpressure),
      T(test_post_body),
      T(test_chunked_body),
      T(test_expect_continue),
      T(test_expect_continue_too_large),
      T(test_refusal_hook),
      T(test_header_too_large),
      T(test_too_many_headers),
      T(test_body_too_large),
      T(test_body_at_limit),
      T(test_slowloris),
      T(test_idle_timeout),
      T(test_max_connections),
      T(test_malformed),
      T(test_junk_isolated),
      T(test_http10),
      T(test_connection_close),
      T(test_linger_timeout),
      T(test_smuggling_refused),
      T(test_disconnect_while_reading),
      T(test_head),
      T(test_upgrade_and_connect),
      T(test_respond_checks),
      T(test_respond_twice),
      T(test_close_from_handler),
      T(test_big_response),
      T(test_disconnect_cancels),
      T(test_close_cancels),
      T(test_drain),
      T(test_drain_while_reading),
      T(test_start_failure),
      T(test_ipv6_address),
      T(test_no_allocation_per_request),
      T(test_allocation_failures),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
