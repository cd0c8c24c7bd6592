/* Tests of the upstream client against a tiny HTTP/1.1 server running in
 * the same process, on the same libuv loop, listening on 127.0.0.1. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <uv.h>

#include "src/base/base.h"
#include "src/upstream/upstream.h"

/* ---- the test server ---- */

typedef enum {
  MODE_RESPOND,       /* answer each request at once, keep the connection */
  MODE_DELAY,         /* answer after delay_ms */
  MODE_HANG,          /* read requests, never answer (also any "/hang...") */
  MODE_CLOSE_MIDWAY,  /* write the response (cut short), then close */
  MODE_CLOSE_AT_ONCE, /* close on the first bytes received */
} server_mode_t;

typedef struct server server_t;
typedef struct sconn sconn_t;

struct sconn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  server_t *srv;
  sconn_t *next;
  sconn_t *prev;
  bool closing;
  int handles;
  char path[256]; /* of the request being delayed */
  size_t len;
  char buf[64 * 1024];
};

typedef struct {
  uv_write_t req;
  sconn_t *conn;
  bool close_after;
  size_t len;
  char data[];
} swrite_t;

struct server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int port;
  server_mode_t mode;
  const char *response; /* raw HTTP, or NULL to echo the path as body */
  uint64_t delay_ms;
  int open_handles;
  sconn_t *conns;
  /* What was seen. */
  int accepts;
  int requests;
  int peer_closes; /* connections the client closed */
  char method[16];
  char path[256];
  char headers[8192]; /* the header block of the last request */
  char body[8192];
  size_t body_len;
  char first_bytes[64];
  size_t first_len;
};

static void on_server_handle_closed(uv_handle_t *handle) {
  server_t *srv = handle->data;
  srv->open_handles--;
}

static void on_sconn_handle_closed(uv_handle_t *handle) {
  sconn_t *conn = handle->data;
  server_t *srv = conn->srv;
  srv->open_handles--;
  if (--conn->handles == 0)
    free(conn);
}

static void sconn_close(sconn_t *conn) {
  if (conn->closing)
    return;
  conn->closing = true;
  if (conn->prev != NULL)
    conn->prev->next = conn->next;
  else
    conn->srv->conns = conn->next;
  if (conn->next != NULL)
    conn->next->prev = conn->prev;
  uv_close((uv_handle_t *)&conn->tcp, on_sconn_handle_closed);
  uv_close((uv_handle_t *)&conn->timer, on_sconn_handle_closed);
}

static void on_swrite_done(uv_write_t *req, int status) {
  swrite_t *w = (swrite_t *)req;
  if (status < 0 || w->close_after)
    sconn_close(w->conn);
  free(w);
}

static void sconn_write(sconn_t *conn, const char *data, size_t len,
                        bool close_after) {
  if (conn->closing)
    return;
  swrite_t *w = malloc(sizeof(*w) + len);
  assert_non_null(w);
  w->conn = conn;
  w->close_after = close_after;
  w->len = len;
  memcpy(w->data, data, len);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&conn->tcp, &buf, 1, on_swrite_done)) {
    free(w);
    sconn_close(conn);
  }
}

static void respond(sconn_t *conn, const char *path) {
  server_t *srv = conn->srv;
  bool cut = srv->mode == MODE_CLOSE_MIDWAY;
  if (srv->response != NULL) {
    sconn_write(conn, srv->response, strlen(srv->response), cut);
    return;
  }
  char out[512];
  int n = snprintf(out, sizeof(out),
                   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   strlen(path), path);
  sconn_write(conn, out, (size_t)n, cut);
}

static void on_delay(uv_timer_t *timer) {
  sconn_t *conn = timer->data;
  respond(conn, conn->path);
}

static size_t content_length(const char *headers) {
  const char *p = headers;
  while ((p = strchr(p, '\n')) != NULL) {
    p++;
    if (strncasecmp(p, "content-length:", 15) == 0)
      return (size_t)strtoul(p + 15, NULL, 10);
  }
  return 0;
}

/* Records a whole request and answers it as the mode says. */
static void handle_request(sconn_t *conn, const char *head, size_t head_len,
                           const char *body, size_t body_len) {
  server_t *srv = conn->srv;
  srv->requests++;
  sscanf(head, "%15s %255s", srv->method, srv->path);
  const char *eol = strstr(head, "\r\n");
  size_t hlen = head_len - (size_t)(eol - head);
  if (hlen >= sizeof(srv->headers))
    hlen = sizeof(srv->headers) - 1;
  memcpy(srv->headers, eol, hlen);
  srv->headers[hlen] = '\0';
  srv->body_len = body_len < sizeof(srv->body) ? body_len : 0;
  memcpy(srv->body, body, srv->body_len);
  srv->body[srv->body_len] = '\0';
  if (strncmp(srv->path, "/hang", 5) == 0)
    return;
  if (srv->mode == MODE_RESPOND || srv->mode == MODE_CLOSE_MIDWAY) {
    respond(conn, srv->path);
  } else if (srv->mode == MODE_DELAY) {
    snprintf(conn->path, sizeof(conn->path), "%s", srv->path);
    uv_timer_start(&conn->timer, on_delay, srv->delay_ms, 0);
  }
}

/* Takes every complete request out of the connection's buffer. */
static void parse_requests(sconn_t *conn) {
  for (;;) {
    conn->buf[conn->len] = '\0';
    char *end = strstr(conn->buf, "\r\n\r\n");
    if (end == NULL)
      return;
    size_t head_len = (size_t)(end - conn->buf) + 4;
    end[2] = '\0';
    size_t body_len = content_length(conn->buf);
    if (conn->len < head_len + body_len) {
      end[2] = '\r';
      return;
    }
    handle_request(conn, conn->buf, head_len - 2, conn->buf + head_len,
                   body_len);
    size_t used = head_len + body_len;
    memmove(conn->buf, conn->buf + used, conn->len - used);
    conn->len -= used;
  }
}

static void on_salloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  sconn_t *conn = handle->data;
  (void)suggested;
  *buf = uv_buf_init(conn->buf + conn->len,
                     (unsigned)(sizeof(conn->buf) - 1 - conn->len));
}

static void note_first_bytes(server_t *srv, const char *data, size_t n) {
  if (srv->first_len > 0)
    return;
  srv->first_len = n < sizeof(srv->first_bytes) ? n : sizeof(srv->first_bytes);
  memcpy(srv->first_bytes, data, srv->first_len);
}

static void on_sread(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  sconn_t *conn = stream->data;
  server_t *srv = conn->srv;
  if (n < 0) {
    srv->peer_closes++;
    sconn_close(conn);
    return;
  }
  note_first_bytes(srv, buf->base, (size_t)n);
  if (srv->mode == MODE_CLOSE_AT_ONCE) {
    sconn_close(conn);
    return;
  }
  conn->len += (size_t)n;
  parse_requests(conn);
}

static void on_sconnection(uv_stream_t *listener, int status) {
  server_t *srv = listener->data;
  assert_int_equal(status, 0);
  sconn_t *conn = calloc(1, sizeof(*conn));
  assert_non_null(conn);
  conn->srv = srv;
  uv_tcp_init(srv->loop, &conn->tcp);
  uv_timer_init(srv->loop, &conn->timer);
  conn->tcp.data = conn->timer.data = conn;
  conn->handles = 2;
  srv->open_handles += 2;
  conn->next = srv->conns;
  if (srv->conns != NULL)
    srv->conns->prev = conn;
  srv->conns = conn;
  assert_int_equal(uv_accept(listener, (uv_stream_t *)&conn->tcp), 0);
  srv->accepts++;
  uv_read_start((uv_stream_t *)&conn->tcp, on_salloc, on_sread);
}

static void server_start(server_t *srv, uv_loop_t *loop) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  memset(srv, 0, sizeof(*srv));
  srv->loop = loop;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_init(loop, &srv->listener), 0);
  srv->listener.data = srv;
  srv->open_handles = 1;
  assert_int_equal(uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0), 0);
  assert_int_equal(
      uv_listen((uv_stream_t *)&srv->listener, 128, on_sconnection), 0);
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
  srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void server_close(server_t *srv) {
  while (srv->conns != NULL)
    sconn_close(srv->conns);
  if (!uv_is_closing((uv_handle_t *)&srv->listener))
    uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
}

/* Header `name` of the last request into `out`; false when absent. */
static bool server_header(const server_t *srv, const char *name, char *out,
                          size_t out_len) {
  size_t n = strlen(name);
  const char *p = srv->headers;
  while ((p = strstr(p, "\r\n")) != NULL) {
    p += 2;
    if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
      const char *v = p + n + 1;
      while (*v == ' ')
        v++;
      size_t vlen = strcspn(v, "\r\n");
      snprintf(out, out_len, "%.*s", (int)vlen, v);
      return true;
    }
  }
  return false;
}

/* ---- fixture ---- */

typedef struct fixture fixture_t;

typedef struct {
  fixture_t *fx;
  int calls;
  usc_upstream_error_t error;
  int status;
  int http_version;
  char body[8192];
  size_t body_len;
  char content_type[128];
  char retry_after[64];
  char location[256];
  char error_text[256];
  int elapsed_order; /* for tests that check completion order */
} record_t;

struct fixture {
  uv_loop_t loop;
  uv_timer_t guard;
  server_t srv;
  usc_upstream_t *client;
  char base[64];
  int done_total;
  /* Callback actions for the reentrancy tests. */
  bool close_in_callback;
  usc_upstream_req_t *cancel_in_callback;
  record_t rec[64];
};

#define NONE "<none>"

static void copy_opt(char *dst, size_t len, const char *src) {
  snprintf(dst, len, "%s", src != NULL ? src : NONE);
}

static void on_done(void *user, const usc_upstream_result_t *res) {
  record_t *r = user;
  r->calls++;
  r->fx->done_total++;
  r->error = res->error;
  r->status = res->status;
  r->http_version = res->http_version;
  assert_non_null(res->body);
  assert_int_equal(res->body[res->body_len], '\0');
  r->body_len = res->body_len < sizeof(r->body) ? res->body_len : 0;
  memcpy(r->body, res->body, r->body_len);
  r->body[r->body_len] = '\0';
  copy_opt(r->content_type, sizeof(r->content_type), res->content_type);
  copy_opt(r->retry_after, sizeof(r->retry_after), res->retry_after);
  copy_opt(r->location, sizeof(r->location), res->location);
  copy_opt(r->error_text, sizeof(r->error_text), res->error_text);
  if (r->fx->cancel_in_callback != NULL) {
    usc_upstream_cancel(r->fx->cancel_in_callback);
    r->fx->cancel_in_callback = NULL;
  }
  if (r->fx->close_in_callback) {
    r->fx->close_in_callback = false;
    usc_upstream_close(r->fx->client, NULL, NULL);
    r->fx->client = NULL;
  }
}

static void on_guard(uv_timer_t *timer) { (void)timer; }

/* Runs the loop until `cond` holds, failing the test after 5 s. A guard
 * timer wakes the loop so that a stuck condition is noticed. */
#define RUN_UNTIL(fx, cond)                                                    \
  do {                                                                         \
    uv_update_time(&(fx)->loop);                                               \
    uint64_t t0_ = uv_now(&(fx)->loop);                                        \
    uv_timer_start(&(fx)->guard, on_guard, 20, 20);                            \
    while (!(cond)) {                                                          \
      assert_true(uv_now(&(fx)->loop) - t0_ < 5000);                           \
      uv_run(&(fx)->loop, UV_RUN_ONCE);                                        \
    }                                                                          \
    uv_timer_stop(&(fx)->guard);                                               \
  } while (0)

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_timer_init(&fx->loop, &fx->guard);
  server_start(&fx->srv, &fx->loop);
  snprintf(fx->base, sizeof(fx->base), "http://127.0.0.1:%d", fx->srv.port);
  for (size_t i = 0; i < USC_ARRAY_LEN(fx->rec); i++)
    fx->rec[i].fx = fx;
  *state = fx;
  return 0;
}

static void on_client_closed(void *user) { *(bool *)user = true; }

static int teardown(void **state) {
  fixture_t *fx = *state;
  bool closed = fx->client == NULL;
  usc_upstream_close(fx->client, on_client_closed, &closed);
  server_close(&fx->srv);
  uv_close((uv_handle_t *)&fx->guard, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_true(closed);
  assert_int_equal(fx->srv.open_handles, 0);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  free(fx);
  return 0;
}

static usc_upstream_config_t config_for(const char *base) {
  return (usc_upstream_config_t){.base_url = base, .timeout_ms = 3000};
}

static void client_with(fixture_t *fx, const usc_upstream_config_t *cfg) {
  assert_int_equal(usc_upstream_create(&fx->loop, cfg, &fx->client), 0);
}

static void client_default(fixture_t *fx) {
  usc_upstream_config_t cfg = config_for(fx->base);
  client_with(fx, &cfg);
}

static usc_upstream_req_t *start(fixture_t *fx, usc_upstream_method_t method,
                                 const char *path, record_t *rec) {
  usc_upstream_request_t r = {
      .method = method, .path = path, .done = on_done, .user = rec};
  usc_upstream_req_t *req = NULL;
  assert_int_equal(usc_upstream_request(fx->client, &r, &req), 0);
  assert_non_null(req);
  return req;
}

/* One request, run to its end. */
static record_t *fetch(fixture_t *fx, usc_upstream_method_t method,
                       const char *path) {
  record_t *rec = &fx->rec[0];
  int before = rec->calls;
  start(fx, method, path, rec);
  RUN_UNTIL(fx, rec->calls > before);
  return rec;
}

/* ---- tests: what is sent ---- */

static void test_get_sends_headers(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: 13\r\n\r\n{\"ok\": true }";
  usc_upstream_header_t headers[] = {
      {"authorization", "Bearer secret-token"},
      {"traceparent",
       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
      {"tracestate", "congo=t61rcWkgMzE"},
      {"x-request-id", "req-42"},
  };
  usc_upstream_request_t r = {
      .method = USC_UPSTREAM_GET,
      .path = "/uapi/phoneCalls/@me/0003*210?count=2&startIndex=0",
      .headers = headers,
      .n_headers = USC_ARRAY_LEN(headers),
      .done = on_done,
      .user = &fx->rec[0]};
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  RUN_UNTIL(fx, fx->rec[0].calls == 1);

  char v[256];
  assert_string_equal(fx->srv.method, "GET");
  assert_string_equal(fx->srv.path,
                      "/uapi/phoneCalls/@me/0003*210?count=2&startIndex=0");
  assert_true(server_header(&fx->srv, "authorization", v, sizeof(v)));
  assert_string_equal(v, "Bearer secret-token");
  assert_true(server_header(&fx->srv, "traceparent", v, sizeof(v)));
  assert_string_equal(v, headers[1].value);
  assert_true(server_header(&fx->srv, "tracestate", v, sizeof(v)));
  assert_string_equal(v, "congo=t61rcWkgMzE");
  assert_true(server_header(&fx->srv, "x-request-id", v, sizeof(v)));
  assert_string_equal(v, "req-42");
  assert_true(server_header(&fx->srv, "user-agent", v, sizeof(v)));
  assert_string_equal(v, "uapi-sidecar");
  assert_false(server_header(&fx->srv, "content-type", v, sizeof(v)));
  assert_int_equal(fx->srv.body_len, 0);

  record_t *rec = &fx->rec[0];
  assert_int_equal(rec->error, USC_UPSTREAM_OK);
  assert_int_equal(rec->status, 200);
  assert_int_equal(rec->http_version, 11);
  assert_string_equal(rec->body, "{\"ok\": true }");
  assert_string_equal(rec->content_type, "application/json");
  assert_string_equal(rec->retry_after, NONE);
  assert_string_equal(rec->location, NONE);
  assert_string_equal(rec->error_text, "");
}

static void test_post_sends_body(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.response = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
  /* Over 1 KiB: libcurl would otherwise wait for 100-continue. */
  char body[2000];
  memset(body, 'x', sizeof(body));
  memcpy(body, "{\"a\":\"", 6);
  memcpy(body + sizeof(body) - 2, "\"}", 2);
  usc_upstream_header_t headers[] = {{"Content-Type", "application/json"}};
  usc_upstream_request_t r = {.method = USC_UPSTREAM_POST,
                              .path = "/uapi/phoneCalls/@me/simple",
                              .headers = headers,
                              .n_headers = 1,
                              .body = body,
                              .body_len = sizeof(body),
                              .done = on_done,
                              .user = &fx->rec[0]};
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  /* The body was copied: scribbling on ours changes nothing. */
  memset(body, 'y', sizeof(body));
  RUN_UNTIL(fx, fx->rec[0].calls == 1);

  char v[256];
  assert_string_equal(fx->srv.method, "POST");
  assert_string_equal(fx->srv.path, "/uapi/phoneCalls/@me/simple");
  assert_true(server_header(&fx->srv, "content-type", v, sizeof(v)));
  assert_string_equal(v, "application/json");
  assert_true(server_header(&fx->srv, "content-length", v, sizeof(v)));
  assert_string_equal(v, "2000");
  assert_false(server_header(&fx->srv, "expect", v, sizeof(v)));
  assert_int_equal(fx->srv.body_len, 2000);
  assert_memory_equal(fx->srv.body, "{\"a\":\"xxx", 9);
  assert_memory_equal(fx->srv.body + 1998, "\"}", 2);
  assert_int_equal(fx->rec[0].status, 201);
  assert_string_equal(fx->rec[0].body, "{}");
}

static void test_put_and_delete(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  char v[64];
  fx->srv.response = "HTTP/1.1 204 No Content\r\n\r\n";
  record_t *rec = fetch(fx, USC_UPSTREAM_PUT, "/uapi/phoneCalls/@me/x/1");
  assert_string_equal(fx->srv.method, "PUT");
  assert_true(server_header(&fx->srv, "content-length", v, sizeof(v)));
  assert_string_equal(v, "0");
  assert_false(server_header(&fx->srv, "content-type", v, sizeof(v)));
  assert_int_equal(rec->error, USC_UPSTREAM_OK);
  assert_int_equal(rec->status, 204);
  assert_int_equal(rec->body_len, 0);

  fx->srv.response = "HTTP/1.1 202 Accepted\r\nContent-Length: 9\r\n"
                     "Location: /uapi/phoneCalls/@me/x/1\r\n\r\n{\"id\":1}\n";
  rec = fetch(fx, USC_UPSTREAM_DELETE, "/uapi/phoneCalls/@me/x/1");
  assert_string_equal(fx->srv.method, "DELETE");
  assert_false(server_header(&fx->srv, "content-length", v, sizeof(v)));
  assert_int_equal(rec->status, 202);
  assert_string_equal(rec->body, "{\"id\":1}\n");
  assert_string_equal(rec->location, "/uapi/phoneCalls/@me/x/1");
  assert_int_equal(fx->srv.accepts, 1);
}

/* ---- tests: what comes back ---- */

static void test_error_statuses(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.response = "HTTP/1.1 500 Internal Server Error\r\n"
                     "Content-Type: application/json\r\nContent-Length: 11\r\n"
                     "\r\n{\"error\":1}";
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/a");
  assert_int_equal(rec->error, USC_UPSTREAM_OK);
  assert_int_equal(rec->status, 500);
  assert_string_equal(rec->body, "{\"error\":1}");

  fx->srv.response = "HTTP/1.1 429 Too Many Requests\r\nretry-after:  3 \r\n"
                     "Content-Length: 0\r\n\r\n";
  rec = fetch(fx, USC_UPSTREAM_GET, "/b");
  assert_int_equal(rec->status, 429);
  assert_string_equal(rec->retry_after, "3");
  assert_string_equal(rec->content_type, NONE);
}

static void test_redirect_not_followed(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.response = "HTTP/1.1 302 Found\r\n"
                     "Location: http://elsewhere.invalid/steal\r\n"
                     "Content-Length: 0\r\n\r\n";
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/a");
  assert_int_equal(rec->error, USC_UPSTREAM_OK);
  assert_int_equal(rec->status, 302);
  assert_string_equal(rec->location, "http://elsewhere.invalid/steal");
  assert_int_equal(fx->srv.requests, 1);
}

static void test_keepalive_reuses_connection(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/one");
  assert_string_equal(rec->body, "/one");
  rec = fetch(fx, USC_UPSTREAM_GET, "/two");
  assert_string_equal(rec->body, "/two");
  assert_int_equal(fx->srv.requests, 2);
  assert_int_equal(fx->srv.accepts, 1);
}

static void test_body_at_cap(void **state) {
  fixture_t *fx = *state;
  usc_upstream_config_t cfg = config_for(fx->base);
  cfg.max_body = 4;
  client_with(fx, &cfg);
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/abc");
  assert_int_equal(rec->error, USC_UPSTREAM_OK);
  assert_string_equal(rec->body, "/abc");
}

static void test_too_large_by_length(void **state) {
  fixture_t *fx = *state;
  usc_upstream_config_t cfg = config_for(fx->base);
  cfg.max_body = 4;
  client_with(fx, &cfg);
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/abcd");
  assert_int_equal(rec->error, USC_UPSTREAM_TOO_LARGE);
  assert_non_null(strstr(rec->error_text, "4-byte"));
}

static void test_too_large_chunked(void **state) {
  fixture_t *fx = *state;
  usc_upstream_config_t cfg = config_for(fx->base);
  cfg.max_body = 10;
  client_with(fx, &cfg);
  fx->srv.response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n";
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/a");
  assert_int_equal(rec->error, USC_UPSTREAM_TOO_LARGE);
  /* The transfer was aborted, so its connection is gone. */
  RUN_UNTIL(fx, fx->srv.peer_closes == 1);
}

/* ---- tests: failures ---- */

static void test_connect_refused(void **state) {
  fixture_t *fx = *state;
  uv_tcp_t probe;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(&fx->loop, &probe);
  assert_int_equal(uv_tcp_bind(&probe, (struct sockaddr *)&addr, 0), 0);
  uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &len);
  int port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_close((uv_handle_t *)&probe, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT);

  char base[64];
  snprintf(base, sizeof(base), "http://127.0.0.1:%d/api/", port);
  usc_upstream_config_t cfg = config_for(base);
  client_with(fx, &cfg);
  record_t *rec = fetch(fx, USC_UPSTREAM_POST, "/x");
  assert_int_equal(rec->error, USC_UPSTREAM_CONNECT_FAILED);
  assert_int_equal(rec->status, 0);
  assert_string_not_equal(rec->error_text, "");
}

static void test_dns_failure(void **state) {
  fixture_t *fx = *state;
  usc_upstream_config_t cfg = config_for("http://nonexistent.invalid/");
  client_with(fx, &cfg);
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/x");
  assert_int_equal(rec->error, USC_UPSTREAM_CONNECT_FAILED);
}

static void test_timeout_after_send(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.mode = MODE_DELAY;
  fx->srv.delay_ms = 2000;
  usc_upstream_request_t r = {.method = USC_UPSTREAM_PUT,
                              .path = "/slow",
                              .timeout_ms = 100,
                              .done = on_done,
                              .user = &fx->rec[0]};
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  RUN_UNTIL(fx, fx->rec[0].calls == 1);
  assert_int_equal(fx->rec[0].error, USC_UPSTREAM_TIMEOUT);
  assert_int_equal(fx->srv.requests, 1);

  /* The same through an absolute deadline. */
  r.timeout_ms = 0;
  r.deadline = uv_now(&fx->loop) + 100;
  r.user = &fx->rec[1];
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  RUN_UNTIL(fx, fx->rec[1].calls == 1);
  assert_int_equal(fx->rec[1].error, USC_UPSTREAM_TIMEOUT);
  RUN_UNTIL(fx, fx->srv.peer_closes == 2);
}

/* On a reused connection no connect phase runs: failures there must not
 * pass for CONNECT_FAILED, since the request was sent. */
static void test_failures_on_reused_connection(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fetch(fx, USC_UPSTREAM_GET, "/warm");
  usc_upstream_request_t r = {.method = USC_UPSTREAM_POST,
                              .path = "/hang",
                              .timeout_ms = 100,
                              .done = on_done,
                              .user = &fx->rec[1]};
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  RUN_UNTIL(fx, fx->rec[1].calls == 1);
  assert_int_equal(fx->rec[1].error, USC_UPSTREAM_TIMEOUT);
  assert_int_equal(fx->srv.accepts, 1);

  fetch(fx, USC_UPSTREAM_GET, "/warm");
  fx->srv.mode = MODE_CLOSE_MIDWAY;
  fx->srv.response = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"part";
  record_t *rec = fetch(fx, USC_UPSTREAM_PUT, "/cut");
  assert_int_equal(rec->error, USC_UPSTREAM_IO);
  assert_int_equal(fx->srv.accepts, 2);
}

/* A request still waiting for a free connection when its time is up was
 * never sent. */
static void test_timeout_waiting_for_connection(void **state) {
  fixture_t *fx = *state;
  usc_upstream_config_t cfg = config_for(fx->base);
  cfg.max_connections = 1;
  client_with(fx, &cfg);
  start(fx, USC_UPSTREAM_GET, "/hang", &fx->rec[0]);
  usc_upstream_request_t r = {.method = USC_UPSTREAM_POST,
                              .path = "/queued",
                              .timeout_ms = 100,
                              .done = on_done,
                              .user = &fx->rec[1]};
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  RUN_UNTIL(fx, fx->rec[1].calls == 1);
  assert_int_equal(fx->rec[1].error, USC_UPSTREAM_CONNECT_FAILED);
  assert_int_equal(fx->srv.accepts, 1);
  assert_int_equal(fx->srv.requests, 1);
  assert_int_equal(fx->rec[0].calls, 0);
}

/* Deadlines given out of order expire in order; a cancelled one never
 * fires. */
static void test_deadlines_in_order(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  static const uint32_t timeouts[] = {150, 50, 200, 100, 225, 75, 175, 125};
  usc_upstream_req_t *reqs[8];
  for (size_t i = 0; i < USC_ARRAY_LEN(timeouts); i++) {
    usc_upstream_request_t r = {.method = USC_UPSTREAM_GET,
                                .path = "/hang",
                                .timeout_ms = timeouts[i],
                                .done = on_done,
                                .user = &fx->rec[i]};
    assert_int_equal(usc_upstream_request(fx->client, &r, &reqs[i]), 0);
  }
  usc_upstream_cancel(reqs[3]); /* the 100 ms one */
  int last_done = 0;
  uint32_t last_timeout = 0;
  for (int n = 1; n <= 7; n++) {
    RUN_UNTIL(fx, fx->done_total >= n);
    for (size_t i = 0; i < USC_ARRAY_LEN(timeouts); i++) {
      if (fx->rec[i].calls == 1 && fx->rec[i].elapsed_order == 0) {
        fx->rec[i].elapsed_order = ++last_done;
        assert_true(timeouts[i] > last_timeout);
        last_timeout = timeouts[i];
        assert_int_equal(fx->rec[i].error, USC_UPSTREAM_TIMEOUT);
      }
    }
  }
  assert_int_equal(fx->rec[3].calls, 0);
  assert_int_equal(usc_upstream_active(fx->client), 0);
}

static void test_deadline_already_passed(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  usc_upstream_request_t r = {.method = USC_UPSTREAM_POST,
                              .path = "/late",
                              .deadline = uv_now(&fx->loop),
                              .done = on_done,
                              .user = &fx->rec[0]};
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  assert_int_equal(fx->rec[0].calls, 0); /* never synchronous */
  RUN_UNTIL(fx, fx->rec[0].calls == 1);
  assert_int_equal(fx->rec[0].error, USC_UPSTREAM_TIMEOUT);
  assert_int_equal(fx->srv.accepts, 0);
  assert_int_equal(usc_upstream_active(fx->client), 0);
}

static void test_reset_mid_body(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.mode = MODE_CLOSE_MIDWAY;
  fx->srv.response = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"part";
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/a");
  assert_int_equal(rec->error, USC_UPSTREAM_IO);
  assert_int_equal(rec->status, 200);
}

static void test_nothing_answered(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.mode = MODE_CLOSE_MIDWAY;
  fx->srv.response = "";
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/a");
  assert_int_equal(rec->error, USC_UPSTREAM_IO);
  assert_int_equal(rec->status, 0);
}

static void test_tls_handshake_fails(void **state) {
  fixture_t *fx = *state;
  char base[64];
  snprintf(base, sizeof(base), "https://127.0.0.1:%d", fx->srv.port);
  usc_upstream_config_t cfg = config_for(base);
  client_with(fx, &cfg);
  fx->srv.mode = MODE_CLOSE_AT_ONCE;
  record_t *rec = fetch(fx, USC_UPSTREAM_POST, "/x");
  assert_int_equal(rec->error, USC_UPSTREAM_CONNECT_FAILED);
  assert_int_equal(fx->srv.first_bytes[0], 0x16); /* a TLS handshake */
  assert_int_equal(fx->srv.requests, 0);
}

static void test_tls_handshake_times_out(void **state) {
  fixture_t *fx = *state;
  char base[64];
  snprintf(base, sizeof(base), "https://127.0.0.1:%d", fx->srv.port);
  usc_upstream_config_t cfg = config_for(base);
  cfg.connect_timeout_ms = 100;
  client_with(fx, &cfg);
  fx->srv.mode = MODE_HANG;
  record_t *rec = fetch(fx, USC_UPSTREAM_POST, "/x");
  assert_int_equal(rec->error, USC_UPSTREAM_CONNECT_FAILED);
  assert_int_equal(fx->srv.accepts, 1);
}

static void test_h2c_prior_knowledge(void **state) {
  fixture_t *fx = *state;
  usc_upstream_config_t cfg = config_for(fx->base);
  cfg.http = USC_UPSTREAM_HTTP_2_PRIOR_KNOWLEDGE;
  client_with(fx, &cfg);
  fx->srv.mode = MODE_CLOSE_AT_ONCE;
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/x");
  assert_memory_equal(fx->srv.first_bytes, "PRI * HTTP/2.0\r\n", 16);
  assert_int_equal(rec->error, USC_UPSTREAM_IO);
}

/* ---- tests: cancel, limits, close ---- */

static void test_cancel_slow_request(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.mode = MODE_HANG;
  usc_upstream_req_t *req = start(fx, USC_UPSTREAM_GET, "/slow", &fx->rec[0]);
  RUN_UNTIL(fx, fx->srv.requests == 1);
  usc_upstream_cancel(req);
  assert_int_equal(usc_upstream_active(fx->client), 0);
  RUN_UNTIL(fx, fx->srv.peer_closes == 1);
  assert_int_equal(fx->rec[0].calls, 0);

  /* The client goes on working, from the pooled request. */
  fx->srv.mode = MODE_RESPOND;
  record_t *rec = fetch(fx, USC_UPSTREAM_GET, "/after");
  assert_int_equal(rec->calls, 1);
  assert_string_equal(rec->body, "/after");
}

static void test_cancel_before_start(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  usc_upstream_req_t *req = start(fx, USC_UPSTREAM_GET, "/x", &fx->rec[0]);
  usc_upstream_cancel(req);
  record_t *rec = &fx->rec[1];
  start(fx, USC_UPSTREAM_GET, "/y", rec);
  RUN_UNTIL(fx, rec->calls == 1);
  assert_int_equal(fx->rec[0].calls, 0);
  assert_string_equal(fx->srv.path, "/y");
  assert_int_equal(fx->srv.requests, 1);
}

static void test_fifty_concurrent(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  char paths[50][16];
  for (int i = 0; i < 50; i++) {
    snprintf(paths[i], sizeof(paths[i]), "/r/%d", i);
    start(fx, USC_UPSTREAM_GET, paths[i], &fx->rec[i]);
  }
  assert_int_equal(usc_upstream_active(fx->client), 50);
  RUN_UNTIL(fx, fx->done_total == 50);
  for (int i = 0; i < 50; i++) {
    assert_int_equal(fx->rec[i].calls, 1);
    assert_int_equal(fx->rec[i].error, USC_UPSTREAM_OK);
    assert_string_equal(fx->rec[i].body, paths[i]);
  }
  assert_int_equal(fx->srv.requests, 50);
  assert_in_range(fx->srv.accepts, 1, 32);
  assert_int_equal(usc_upstream_active(fx->client), 0);
}

static void test_concurrency_cap(void **state) {
  fixture_t *fx = *state;
  usc_upstream_config_t cfg = config_for(fx->base);
  cfg.max_requests = 2;
  client_with(fx, &cfg);
  start(fx, USC_UPSTREAM_GET, "/1", &fx->rec[0]);
  start(fx, USC_UPSTREAM_GET, "/2", &fx->rec[1]);
  usc_upstream_request_t r = {.method = USC_UPSTREAM_GET,
                              .path = "/3",
                              .done = on_done,
                              .user = &fx->rec[2]};
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), USC_ERR_FULL);
  RUN_UNTIL(fx, fx->done_total == 2);
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  RUN_UNTIL(fx, fx->rec[2].calls == 1);
  assert_string_equal(fx->rec[2].body, "/3");
}

static void test_close_cancels_in_flight(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  fx->srv.mode = MODE_HANG;
  for (int i = 0; i < 3; i++)
    start(fx, USC_UPSTREAM_GET, "/hang", &fx->rec[i]);
  RUN_UNTIL(fx, fx->srv.requests == 3);
  bool closed = false;
  usc_upstream_close(fx->client, on_client_closed, &closed);
  fx->client = NULL;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(fx->rec[i].calls, 1);
    assert_int_equal(fx->rec[i].error, USC_UPSTREAM_CANCELLED);
  }
  RUN_UNTIL(fx, closed && fx->srv.peer_closes == 3);
}

static void test_close_from_callback(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  start(fx, USC_UPSTREAM_GET, "/fast", &fx->rec[0]);
  start(fx, USC_UPSTREAM_GET, "/hang", &fx->rec[1]);
  fx->close_in_callback = true;
  RUN_UNTIL(fx, fx->rec[0].calls == 1);
  assert_null(fx->client);
  assert_int_equal(fx->rec[1].calls, 1);
  assert_int_equal(fx->rec[1].error, USC_UPSTREAM_CANCELLED);
}

static void test_cancel_from_callback(void **state) {
  fixture_t *fx = *state;
  client_default(fx);
  start(fx, USC_UPSTREAM_GET, "/fast", &fx->rec[0]);
  fx->cancel_in_callback = start(fx, USC_UPSTREAM_GET, "/hang", &fx->rec[1]);
  RUN_UNTIL(fx, fx->rec[0].calls == 1);
  assert_null(fx->cancel_in_callback);
  assert_int_equal(usc_upstream_active(fx->client), 0);
  RUN_UNTIL(fx, fx->srv.peer_closes >= 1);
  assert_int_equal(fx->rec[1].calls, 0);
}

static void test_invalid_input(void **state) {
  fixture_t *fx = *state;
  const char *bad_bases[] = {"ftp://h/",      "http://",      "http:///x",
                             "http://h/?q=1", "http://h/a b", "h:80"};
  usc_upstream_t *c = NULL;
  for (size_t i = 0; i < USC_ARRAY_LEN(bad_bases); i++) {
    usc_upstream_config_t cfg = config_for(bad_bases[i]);
    assert_int_equal(usc_upstream_create(&fx->loop, &cfg, &c), USC_ERR_INVALID);
  }
  usc_upstream_config_t none = {0};
  assert_int_equal(usc_upstream_create(&fx->loop, &none, &c), USC_ERR_INVALID);
  assert_null(c);

  client_default(fx);
  usc_upstream_header_t crlf = {"x-a", "b\r\nInjected: 1"};
  usc_upstream_header_t bad_name = {"x a", "b"};
  usc_upstream_request_t ok = {
      .method = USC_UPSTREAM_GET, .path = "/x", .done = on_done};
  usc_upstream_request_t r;
  const char *bad_paths[] = {"x",     "",       "/a b",  "/a#b",    "/a\r\n",
                             "/../x", "/a/./b", "/a/..", "/a/..?q", NULL};
  for (size_t i = 0; i < USC_ARRAY_LEN(bad_paths); i++) {
    r = ok;
    r.path = bad_paths[i];
    assert_int_equal(usc_upstream_request(fx->client, &r, NULL),
                     USC_ERR_INVALID);
  }
  /* Dots that are not whole segments are fine. */
  const char *good_paths[] = {"/a/..b", "/.well-known", "/a?x=/../"};
  for (size_t i = 0; i < USC_ARRAY_LEN(good_paths); i++) {
    r = ok;
    r.path = good_paths[i];
    r.user = &fx->rec[i];
    assert_int_equal(usc_upstream_request(fx->client, &r, NULL), 0);
  }
  RUN_UNTIL(fx, fx->done_total == 3);
  assert_string_equal(fx->rec[2].body, "/a?x=/../");
  r = ok;
  r.headers = &crlf;
  r.n_headers = 1;
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), USC_ERR_INVALID);
  r.headers = &bad_name;
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), USC_ERR_INVALID);
  r = ok;
  r.body = "x";
  r.body_len = 1;
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), USC_ERR_INVALID);
  r = ok;
  r.done = NULL;
  assert_int_equal(usc_upstream_request(fx->client, &r, NULL), USC_ERR_INVALID);
  assert_int_equal(usc_upstream_active(fx->client), 0);
  assert_string_equal(usc_upstream_error_name(USC_UPSTREAM_TOO_LARGE),
                      "TOO_LARGE");
}

/* Fails each allocation in turn while creating a client and fetching a
 * body big enough to grow its buffer: every failure must be reported
 * (an error code or a NOMEM result) and leak nothing. */
static void test_allocation_failures(void **state) {
  fixture_t *fx = *state;
  char big[5000 + 128];
  char body[5001];
  memset(body, 'b', 5000);
  body[5000] = '\0';
  snprintf(big, sizeof(big),
           "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n%s", body);
  fx->srv.response = big;
  for (size_t nth = 1;; nth++) {
    usc_upstream_config_t cfg = config_for(fx->base);
    record_t *rec = &fx->rec[0];
    rec->calls = 0;
    usc_alloc_fail_at(nth);
    int rc = usc_upstream_create(&fx->loop, &cfg, &fx->client);
    if (rc == 0) {
      usc_upstream_request_t r = {.method = USC_UPSTREAM_GET,
                                  .path = "/big",
                                  .done = on_done,
                                  .user = rec};
      rc = usc_upstream_request(fx->client, &r, NULL);
      if (rc == 0)
        RUN_UNTIL(fx, rec->calls == 1);
      bool closed = false;
      usc_upstream_close(fx->client, on_client_closed, &closed);
      fx->client = NULL;
      RUN_UNTIL(fx, closed);
    }
    size_t made = usc_alloc_fail_at(0);
    if (made < nth) {
      /* No allocation failed: the whole run must have worked. */
      assert_int_equal(rc, 0);
      assert_int_equal(rec->error, USC_UPSTREAM_OK);
      assert_int_equal(rec->body_len, 5000);
      break;
    }
    assert_true(rc == USC_ERR_NOMEM || rec->error == USC_UPSTREAM_NOMEM);
  }
}

int main(void) {
  /* The test server writes to sockets the client may have closed. */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(test_get_sends_headers),
      T(test_post_sends_body),
      T(test_put_and_delete),
      T(test_error_statuses),
      T(test_redirect_not_followed),
      T(test_keepalive_reuses_connection),
      T(test_body_at_cap),
      T(test_too_large_by_length),
      T(test_too_large_chunked),
      T(test_connect_refused),
      T(test_dns_failure),
      T(test_timeout_after_send),
      T(test_failures_on_reused_connection),
      T(test_timeout_waiting_for_connection),
      T(test_deadlines_in_order),
      T(test_deadline_already_passed),
      T(test_reset_mid_body),
      T(test_nothing_answered),
      T(test_tls_handshake_fails),
      T(test_tls_handshake_times_out),
      T(test_h2c_prior_knowledge),
      T(test_cancel_slow_request),
      T(test_cancel_before_start),
      T(test_fifty_concurrent),
      T(test_concurrency_cap),
      T(test_close_cancels_in_flight),
      T(test_close_from_callback),
      T(test_cancel_from_callback),
      T(test_invalid_input),
      T(test_allocation_failures),
#undef T
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  usc_upstream_global_cleanup();
  return failed;
}
