/* Checks of the h2 server on a libuv loop, with clients on the same loop:
 * raw TCP clients (the address it reports, a host it refuses, connections
 * accepted and closed rather than left in the listener, connections that
 * never send their preface) and nghttp2 clients, for what the transport
 * does to a session over time and under abuse: idle and age GOAWAYs,
 * keepalive PINGs, the drain, ping policing, the reset rate limit, header
 * lists and CONTINUATION frames, the bounds on responses queued for a
 * client that does not read and on request messages partly received.
 * With TLS: the server waits for the ClientHello, cuts off plaintext
 * clients and those that stall, and counts them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>
#include <unistd.h>
#include <uv.h>

#include "src/base/base.h"
#include "src/h2/h2.h"
#include "src/tls/testcert.h"
#include "src/tls/tls.h"

#define WAIT_LIMIT_MS 5000
#define MAX_REPLIES 8
#define LAST_STREAM_ID_MAX 0x7fffffff

typedef struct fixture fixture_t;

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  bool open;
  bool ended;    /* EOF, an error, or the connect failed */
  size_t nbytes; /* received */
  char buf[256];
} client_t;

typedef struct {
  int32_t stream_id;
  const uint8_t *body; /* what the client sends, after the HEADERS */
  size_t body_len;
  size_t body_off;
  int grpc_status; /* -1 until seen */
  size_t data;     /* DATA bytes received */
  bool closed;
  uint32_t close_code;
} reply_t;

/* An HTTP/2 client: frames it got, replies of the streams it opened. */
typedef struct {
  fixture_t *fx;
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  nghttp2_session *session;
  bool open;
  bool ended;
  uint64_t ended_at; /* loop time of the EOF */
  bool settings_seen;
  int goaways;
  uint32_t goaway_code;   /* of the last one */
  int32_t goaway_last[4]; /* last-stream-id of the first four */
  char goaway_debug[32];  /* of the last one */
  int pings;              /* from the server, not ACKs */
  int ping_acks;          /* of the client's own */
  bool no_ping_ack;       /* leaves the server's PINGs unanswered */
  uint8_t frame[9 + 40];  /* the frame being read: header, kept payload */
  size_t frame_got;
  size_t frame_keep;
  size_t skip; /* payload bytes not kept */
  reply_t replies[MAX_REPLIES];
  size_t n_replies;
  uint8_t read_buf[64 * 1024];
} h2client_t;

struct fixture {
  uv_loop_t loop;
  uv_timer_t limit;
  bool timed_out;
  usc_h2_server_t *server;
  bool server_closed;
  usc_h2_server_config_t config;
  usc_tls_ctx_t *tls;
  client_t clients[3];
  h2client_t h2[2];
  usc_h2_call_t *last_call; /* of /t/hold or /t/stream, until cancelled */
  int cancels;
  usc_grpc_status_t cancel_why;
  size_t expected_data; /* DATA bytes a test waits for */
};

/* /t/hold: stays open. /t/stream: response headers, then what the test
 * sends. Anything else ends at once with UNIMPLEMENTED. */
static void on_start(void *user, usc_h2_call_t *call, const char *method,
                     size_t method_len) {
  fixture_t *fx = user;
  (void)method_len;
  if (strcmp(method, "/t/hold") == 0) {
    fx->last_call = call;
  } else if (strcmp(method, "/t/stream") == 0) {
    fx->last_call = call;
    assert_int_equal(usc_h2_call_send_headers(call), 0);
  } else {
    usc_h2_call_finish(call, USC_GRPC_UNIMPLEMENTED, NULL, NULL, 0);
  }
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
  fixture_t *fx = user;
  if (fx->last_call == call)
    fx->last_call = NULL;
  fx->cancels++;
  fx->cancel_why = why;
}

static const usc_h2_handler_t handler = {on_start, on_message, on_half_close,
                                         on_cancel};

static void on_limit(uv_timer_t *timer) {
  fixture_t *fx = timer->data;
  fx->timed_out = true;
}

/* The tests change fx->config before starting. */
static int start(fixture_t *fx, const char *host, char *error, size_t cap) {
  return usc_h2_server_start(&fx->loop, &fx->config, host, 0, &fx->server,
                             error, cap);
}

static void start_local(fixture_t *fx) {
  char error[128] = "";
  assert_int_equal(start(fx, "127.0.0.1", error, sizeof(error)), 0);
}

static char cert_file[300], key_file[300];

static void start_tls(fixture_t *fx, uint64_t handshake_timeout_ms) {
  usc_tls_config_t tls = {cert_file, key_file, NULL};
  char error[256] = "";
  assert_int_equal(usc_tls_ctx_new(&tls, &fx->tls, error, sizeof(error)), 0);
  fx->config.tls = fx->tls;
  fx->config.tls_handshake_timeout_ms = handshake_timeout_ms;
  start_local(fx);
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_timer_init(&fx->loop, &fx->limit);
  fx->limit.data = fx;
  uv_timer_start(&fx->limit, on_limit, WAIT_LIMIT_MS, 0);
  fx->config = (usc_h2_server_config_t){.handler = &handler,
                                        .user = fx,
                                        .max_recv_message_size = 4096,
                                        .max_concurrent_streams = 8};
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
  for (size_t i = 0; i < USC_ARRAY_LEN(fx->h2); i++) {
    if (fx->h2[i].open)
      uv_close((uv_handle_t *)&fx->h2[i].tcp, NULL);
  }
  if (fx->server != NULL)
    usc_h2_server_close(fx->server, on_server_closed, fx);
  uv_close((uv_handle_t *)&fx->limit, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  for (size_t i = 0; i < USC_ARRAY_LEN(fx->h2); i++)
    nghttp2_session_del(fx->h2[i].session);
  assert_true(fx->server == NULL || fx->server_closed);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  usc_tls_ctx_free(fx->tls);
  free(fx);
  return 0;
}

typedef bool (*pred_fn)(const void *what);

static void run_until(fixture_t *fx, pred_fn done, const void *what) {
  while (!done(what) && !fx->timed_out)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_false(fx->timed_out);
}

/* Runs the loop for `ms` of loop time. */
static void on_pause_over(uv_timer_t *timer) { *(bool *)timer->data = true; }

static void on_pause_closed(uv_handle_t *handle) {
  *(bool *)handle->data = true;
}

static void run_for(fixture_t *fx, uint64_t ms) {
  uv_timer_t pause;
  bool over = false;
  uv_timer_init(&fx->loop, &pause);
  pause.data = &over;
  uv_timer_start(&pause, on_pause_over, ms, 0);
  while (!over && !fx->timed_out)
    uv_run(&fx->loop, UV_RUN_ONCE);
  over = false;
  uv_close((uv_handle_t *)&pause, on_pause_closed);
  while (!over)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_false(fx->timed_out);
}

static struct sockaddr_in server_addr(fixture_t *fx) {
  const char *address = usc_h2_server_address(fx->server);
  struct sockaddr_in addr;
  assert_int_equal(strncmp(address, "127.0.0.1:", 10), 0);
  assert_int_equal(uv_ip4_addr("127.0.0.1", atoi(address + 10), &addr), 0);
  return addr;
}

/* ---- raw clients ---- */

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
  struct sockaddr_in addr = server_addr(fx);
  uv_tcp_init(&fx->loop, &c->tcp);
  c->tcp.data = c->connect_req.data = c;
  c->open = true;
  assert_int_equal(uv_tcp_connect(&c->connect_req, &c->tcp,
                                  (const struct sockaddr *)&addr,
                                  on_client_connect),
                   0);
}

static bool ended(const void *what) { return ((const client_t *)what)->ended; }

/* The server speaks first: its SETTINGS frame. */
static bool greeted(const void *what) {
  const client_t *c = what;
  return c->nbytes > 0 || c->ended;
}

/* ---- HTTP/2 clients ---- */

typedef struct {
  uv_write_t req;
  uint8_t data[];
} write_t;

static void on_h2_written(uv_write_t *req, int status) {
  (void)status; /* a server that closed first is what some tests expect */
  free(req);
}

static void h2_write_raw(h2client_t *c, const uint8_t *data, size_t n) {
  write_t *w = malloc(sizeof(*w) + n);
  assert_non_null(w);
  memcpy(w->data, data, n);
  uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_h2_written) != 0)
    free(w);
}

/* Writes everything the session has to send. */
static void h2_flush(h2client_t *c) {
  for (;;) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->session, &data);
    assert_true(n >= 0);
    if (n == 0 || c->ended)
      return;
    write_t *w = malloc(sizeof(*w) + (size_t)n);
    assert_non_null(w);
    memcpy(w->data, data, (size_t)n);
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_h2_written) != 0)
      free(w);
  }
}

static reply_t *reply_of(h2client_t *c, int32_t stream_id) {
  for (size_t i = 0; i < c->n_replies; i++)
    if (c->replies[i].stream_id == stream_id)
      return &c->replies[i];
  return NULL;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

/* One frame of the connection's (its payload cut to what is kept). */
static void h2_note_frame(h2client_t *c, const uint8_t *f, size_t kept) {
  uint8_t type = f[3], flags = f[4];
  const uint8_t *payload = f + 9;
  if (type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK)) {
    c->settings_seen = true;
  } else if (type == NGHTTP2_PING && kept == 8) {
    if (flags & NGHTTP2_FLAG_ACK) {
      c->ping_acks++;
    } else {
      c->pings++;
      if (!c->no_ping_ack) {
        uint8_t ack[17] = {0, 0, 8, NGHTTP2_PING, NGHTTP2_FLAG_ACK};
        memcpy(ack + 9, payload, 8);
        h2_write_raw(c, ack, sizeof(ack));
      }
    }
  } else if (type == NGHTTP2_GOAWAY && kept >= 8) {
    if (c->goaways < 4)
      c->goaway_last[c->goaways] = (int32_t)(get32(payload) & 0x7fffffff);
    c->goaways++;
    c->goaway_code = get32(payload + 4);
    size_t n = kept - 8 < sizeof(c->goaway_debug) - 1
                   ? kept - 8
                   : sizeof(c->goaway_debug) - 1;
    memcpy(c->goaway_debug, payload + 8, n);
    c->goaway_debug[n] = '\0';
  }
}

/* The frames are read here as they come, rather than from the session:
 * once it has a GOAWAY, an nghttp2 client stops answering PINGs and
 * reporting frames, and the drain is about what comes after one. */
static void h2_scan(h2client_t *c, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (c->skip > 0) {
      size_t k = c->skip < n ? c->skip : n;
      c->skip -= k;
      p += k;
      n -= k;
      continue;
    }
    size_t need = c->frame_got < 9 ? 9 : 9 + c->frame_keep;
    size_t k = need - c->frame_got < n ? need - c->frame_got : n;
    memcpy(c->frame + c->frame_got, p, k);
    c->frame_got += k;
    p += k;
    n -= k;
    if (c->frame_got == 9 && need == 9) {
      size_t len = get32(c->frame) >> 8;
      uint8_t type = c->frame[3];
      bool keep = type == NGHTTP2_PING || type == NGHTTP2_GOAWAY;
      c->frame_keep = keep ? (len < 40 ? len : 40) : 0;
      c->skip = len - c->frame_keep;
    }
    if (c->frame_got == 9 + c->frame_keep) {
      h2_note_frame(c, c->frame, c->frame_keep);
      c->frame_got = 0;
      c->frame_keep = 0;
    }
  }
}

static int h2_on_header(nghttp2_session *session, const nghttp2_frame *f,
                        const uint8_t *name, size_t name_len,
                        const uint8_t *value, size_t value_len, uint8_t flags,
                        void *user) {
  reply_t *r = reply_of(user, f->hd.stream_id);
  (void)session;
  (void)flags;
  (void)value_len;
  /* nghttp2 ends names and values with a NUL. */
  if (r != NULL && name_len == 11 && memcmp(name, "grpc-status", 11) == 0)
    r->grpc_status = atoi((const char *)value);
  return 0;
}

static int h2_on_data(nghttp2_session *session, uint8_t flags,
                      int32_t stream_id, const uint8_t *data, size_t len,
                      void *user) {
  reply_t *r = reply_of(user, stream_id);
  (void)session;
  (void)flags;
  (void)data;
  if (r != NULL)
    r->data += len;
  return 0;
}

static int h2_on_stream_close(nghttp2_session *session, int32_t stream_id,
                              uint32_t code, void *user) {
  reply_t *r = reply_of(user, stream_id);
  (void)session;
  if (r != NULL) {
    r->closed = true;
    r->close_code = code;
  }
  return 0;
}

static void on_h2_alloc(uv_handle_t *handle, size_t hint, uv_buf_t *buf) {
  h2client_t *c = handle->data;
  (void)hint;
  *buf = uv_buf_init((char *)c->read_buf, sizeof(c->read_buf));
}

static void on_h2_read(uv_stream_t *stream, ssize_t nread,
                       const uv_buf_t *buf) {
  h2client_t *c = stream->data;
  if (nread < 0) {
    c->ended = true;
    c->ended_at = uv_now(stream->loop);
    uv_read_stop(stream);
    return;
  }
  h2_scan(c, (const uint8_t *)buf->base, (size_t)nread);
  assert_int_equal(nghttp2_session_mem_recv(
                       c->session, (const uint8_t *)buf->base, (size_t)nread),
                   nread);
  h2_flush(c);
}

static void on_h2_connect(uv_connect_t *req, int status) {
  h2client_t *c = req->data;
  if (status != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_h2_alloc, on_h2_read) != 0) {
    c->ended = true;
    return;
  }
  h2_flush(c);
}

typedef struct {
  bool no_ping_ack;
  int32_t initial_window; /* SETTINGS_INITIAL_WINDOW_SIZE; -1: default */
} h2_options_t;

/* Connects and queues the preface (sent once connected). */
static h2client_t *h2_connect(fixture_t *fx, int i, h2_options_t opts) {
  h2client_t *c = &fx->h2[i];
  nghttp2_session_callbacks *cb;
  nghttp2_option *option;
  assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
  nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb,
                                                         h2_on_stream_close);
  assert_int_equal(nghttp2_option_new(&option), 0);
  nghttp2_option_set_no_auto_ping_ack(option, 1); /* h2_scan answers */
  nghttp2_option_set_max_send_header_block_length(option, 1 << 20);
  assert_int_equal(nghttp2_session_client_new2(&c->session, cb, c, option), 0);
  nghttp2_session_callbacks_del(cb);
  nghttp2_option_del(option);
  nghttp2_settings_entry iv[1] = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)opts.initial_window}};
  assert_int_equal(nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv,
                                           opts.initial_window >= 0 ? 1 : 0),
                   0);

  struct sockaddr_in addr = server_addr(fx);
  c->fx = fx;
  c->no_ping_ack = opts.no_ping_ack;
  uv_tcp_init(&fx->loop, &c->tcp);
  c->tcp.data = c->connect_req.data = c;
  c->open = true;
  assert_int_equal(uv_tcp_connect(&c->connect_req, &c->tcp,
                                  (const struct sockaddr *)&addr,
                                  on_h2_connect),
                   0);
  return c;
}

#define MAX_EXTRA_HEADERS 32

/* Opens a stream on `path` with `n_extra` more headers; END_STREAM with
 * the HEADERS when `end`. */
static int32_t h2_call_with(h2client_t *c, const char *path, bool end,
                            const nghttp2_nv *extra, size_t n_extra) {
  nghttp2_nv nv[6 + MAX_EXTRA_HEADERS] = {
      {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
      {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
      {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
      {(uint8_t *)":authority", (uint8_t *)"t", 10, 1, 0},
      {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
      {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0},
  };
  assert_true(n_extra <= MAX_EXTRA_HEADERS);
  if (n_extra > 0)
    memcpy(nv + 6, extra, n_extra * sizeof(*extra));
  int32_t id =
      nghttp2_submit_headers(c->session, end ? NGHTTP2_FLAG_END_STREAM : 0, -1,
                             NULL, nv, 6 + n_extra, NULL);
  assert_true(id > 0);
  if (c->n_replies < MAX_REPLIES)
    c->replies[c->n_replies++] = (reply_t){.stream_id = id, .grpc_status = -1};
  h2_flush(c);
  return id;
}

static int32_t h2_call(h2client_t *c, const char *path, bool end) {
  return h2_call_with(c, path, end, NULL, 0);
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id,
                         uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
  reply_t *r = source->ptr;
  size_t n = r->body_len - r->body_off;
  (void)session;
  (void)stream_id;
  (void)user;
  n = n < length ? n : length;
  memcpy(buf, r->body + r->body_off, n);
  r->body_off += n;
  if (r->body_off == r->body_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
  return (ssize_t)n;
}

/* Sends `len` bytes (which must stay valid) on the stream, without
 * END_STREAM. */
static void h2_send(h2client_t *c, int32_t stream_id, const uint8_t *data,
                    size_t len) {
  reply_t *r = reply_of(c, stream_id);
  r->body = data;
  r->body_len = len;
  r->body_off = 0;
  nghttp2_data_provider provider = {.source.ptr = r,
                                    .read_callback = read_body};
  assert_int_equal(
      nghttp2_submit_data(c->session, NGHTTP2_FLAG_NONE, stream_id, &provider),
      0);
  h2_flush(c);
}

static void h2_reset(h2client_t *c, int32_t stream_id) {
  assert_int_equal(nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE,
                                             stream_id, NGHTTP2_CANCEL),
                   0);
  h2_flush(c);
}

static void h2_ping(h2client_t *c) {
  assert_int_equal(nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL), 0);
  h2_flush(c);
}

static bool h2_goaway(const void *what) {
  const h2client_t *c = what;
  return c->goaways > 0 || c->ended;
}

static bool h2_ended(const void *what) {
  return ((const h2client_t *)what)->ended;
}

static bool h2_ready(const void *what) {
  const h2client_t *c = what;
  return c->settings_seen || c->ended;
}

static bool h2_two_goaways(const void *what) {
  const h2client_t *c = what;
  return c->goaways > 1 || c->ended;
}

static bool h2_pinged(const void *what) {
  const h2client_t *c = what;
  return c->pings > 0 || c->ended;
}

static bool h2_first_reply_closed(const void *what) {
  const h2client_t *c = what;
  return (c->n_replies > 0 && c->replies[0].closed) || c->ended;
}

static bool call_started(const void *what) {
  const fixture_t *fx = what;
  return fx->last_call != NULL || fx->timed_out;
}

/* ---- the listener ---- */

static void test_address(void **state) {
  fixture_t *fx = *state;
  start_local(fx);
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
  start_local(fx);
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

/* A connection without its preface is closed after
 * handshake_timeout_ms; one that sent it is not. */
static void test_preface_timeout(void **state) {
  fixture_t *fx = *state;
  fx->config.handshake_timeout_ms = 80;
  start_local(fx);
  uint64_t t0 = uv_now(&fx->loop);
  connect_client(fx, &fx->clients[0]);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  run_until(fx, ended, &fx->clients[0]);
  assert_true(uv_now(&fx->loop) - t0 >= 80);
  assert_true(fx->clients[0].nbytes > 0); /* the server's SETTINGS */
  run_for(fx, 100);
  assert_false(c->ended);
  assert_int_equal(usc_h2_server_connections(fx->server), 1);
}

/* At max_connections, a new connection closes the oldest one that has not
 * sent its preface; when all have, the new one is refused. */
static void test_full_server_makes_room(void **state) {
  fixture_t *fx = *state;
  fx->config.max_connections = 2;
  start_local(fx);
  connect_client(fx, &fx->clients[0]);
  run_until(fx, greeted, &fx->clients[0]);
  connect_client(fx, &fx->clients[1]);
  run_until(fx, greeted, &fx->clients[1]);

  h2client_t *a = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  h2_call(a, "/t/unary", true);
  run_until(fx, h2_first_reply_closed, a);
  assert_int_equal(a->replies[0].grpc_status, USC_GRPC_UNIMPLEMENTED);
  run_until(fx, ended, &fx->clients[0]);
  assert_false(fx->clients[1].ended);

  h2client_t *b = h2_connect(fx, 1, (h2_options_t){.initial_window = -1});
  h2_call(b, "/t/unary", true);
  run_until(fx, h2_first_reply_closed, b);
  assert_int_equal(b->replies[0].grpc_status, USC_GRPC_UNIMPLEMENTED);
  run_until(fx, ended, &fx->clients[1]);

  connect_client(fx, &fx->clients[2]);
  run_until(fx, ended, &fx->clients[2]);
  assert_int_equal(fx->clients[2].nbytes, 0);
  assert_false(a->ended);
  assert_false(b->ended);
  assert_int_equal(usc_h2_server_connections(fx->server), 2);
}

/* ---- connection management over time ---- */

/* Without calls for max_connection_idle_ms: the two GOAWAYs of a drain
 * (2^31-1, then the last stream), and the connection closes. */
static void test_idle_connection_is_drained(void **state) {
  fixture_t *fx = *state;
  fx->config.max_connection_idle_ms = 60;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  run_until(fx, h2_ready, c);
  uint64_t t0 = uv_now(&fx->loop);
  h2_call(c, "/t/unary", true);
  run_until(fx, h2_first_reply_closed, c);
  assert_int_equal(c->replies[0].grpc_status, USC_GRPC_UNIMPLEMENTED);
  run_until(fx, h2_ended, c);
  assert_true(uv_now(&fx->loop) - t0 >= 60);
  assert_int_equal(c->goaways, 2);
  assert_int_equal(c->goaway_last[0], LAST_STREAM_ID_MAX);
  assert_int_equal(c->goaway_last[1], 1);
  assert_int_equal(c->goaway_code, NGHTTP2_NO_ERROR);
  assert_int_equal(usc_h2_server_connections(fx->server), 0);
}

/* A call open the whole time: the connection is not idle. */
static void test_open_call_is_not_idle(void **state) {
  fixture_t *fx = *state;
  fx->config.max_connection_idle_ms = 40;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  h2_call(c, "/t/hold", false);
  run_until(fx, call_started, fx);
  run_for(fx, 150);
  assert_int_equal(c->goaways, 0);
  assert_false(c->ended);
  /* Once it ends, the idle clock starts. */
  usc_h2_call_finish(fx->last_call, USC_GRPC_OK, NULL, NULL, 0);
  run_until(fx, h2_ended, c);
  assert_int_equal(c->goaways, 2);
}

/* max_connection_age_ms (+-10%): the drain, then the grace; a call still
 * open at its end is cancelled and the connection closed. */
static void test_old_connection_closes_after_grace(void **state) {
  fixture_t *fx = *state;
  fx->config.max_connection_age_ms = 100;
  fx->config.max_connection_age_grace_ms = 80;
  start_local(fx);
  uint64_t t0 = uv_now(&fx->loop);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  int32_t held = h2_call(c, "/t/hold", false);
  run_until(fx, h2_two_goaways, c);
  uint64_t drained = uv_now(&fx->loop) - t0;
  assert_true(drained >= 90);
  assert_int_equal(c->goaway_last[0], LAST_STREAM_ID_MAX);
  assert_int_equal(c->goaway_last[1], held);
  assert_false(c->ended);
  run_until(fx, h2_ended, c);
  assert_true(c->ended_at - t0 >= 90 + 80);
  assert_int_equal(fx->cancels, 1);
  assert_int_equal(fx->cancel_why, USC_GRPC_CANCELLED);
}

/* keepalive_time_ms without a byte from the client: a PING; answered, the
 * connection stays. */
static void test_keepalive_ping_answered(void **state) {
  fixture_t *fx = *state;
  fx->config.keepalive_time_ms = 40;
  fx->config.keepalive_timeout_ms = 40;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  run_until(fx, h2_pinged, c);
  run_for(fx, 200);
  assert_true(c->pings >= 2);
  assert_false(c->ended);
  assert_int_equal(c->goaways, 0);
}

/* Unanswered, the connection is closed keepalive_timeout_ms later, its
 * calls cancelled. */
static void test_keepalive_ping_unanswered(void **state) {
  fixture_t *fx = *state;
  fx->config.keepalive_time_ms = 40;
  fx->config.keepalive_timeout_ms = 60;
  start_local(fx);
  uint64_t t0 = uv_now(&fx->loop);
  h2client_t *c = h2_connect(
      fx, 0, (h2_options_t){.no_ping_ack = true, .initial_window = -1});
  h2_call(c, "/t/hold", false);
  run_until(fx, h2_ended, c);
  assert_true(c->ended_at - t0 >= 40 + 60);
  assert_int_equal(c->pings, 1);
  assert_int_equal(fx->cancels, 1);
}

/* The drain: GOAWAY 2^31-1 and a PING; at its ACK the final GOAWAY with
 * the last stream; the open call goes on, and then the connection closes. */
static void test_drain_two_goaways(void **state) {
  fixture_t *fx = *state;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  int32_t held = h2_call(c, "/t/hold", false);
  run_until(fx, call_started, fx);
  uint64_t t0 = uv_now(&fx->loop);
  usc_h2_server_drain(fx->server);
  run_until(fx, h2_two_goaways, c);
  /* The ACK, not the one-second wait, brought the final GOAWAY. */
  assert_true(uv_now(&fx->loop) - t0 < 500);
  assert_int_equal(c->goaway_last[0], LAST_STREAM_ID_MAX);
  assert_int_equal(c->goaway_last[1], held);
  assert_int_equal(c->pings, 1);
  assert_false(c->ended);
  usc_h2_call_finish(fx->last_call, USC_GRPC_OK, NULL, NULL, 0);
  run_until(fx, h2_ended, c);
  assert_int_equal(c->replies[0].grpc_status, USC_GRPC_OK);
  assert_int_equal(fx->cancels, 0);
}

/* Without the PING ACK, the final GOAWAY comes a second later. */
static void test_drain_without_ping_ack(void **state) {
  fixture_t *fx = *state;
  start_local(fx);
  h2client_t *c = h2_connect(
      fx, 0, (h2_options_t){.no_ping_ack = true, .initial_window = -1});
  run_until(fx, h2_ready, c);
  uint64_t t0 = uv_now(&fx->loop);
  usc_h2_server_drain(fx->server);
  run_until(fx, h2_ended, c);
  assert_true(c->ended_at - t0 >= 1000);
  assert_int_equal(c->goaways, 2);
  assert_int_equal(c->goaway_last[1], 0);
}

/* ---- abuse ---- */

/* HEADERS and RST_STREAM, over and over: past nghttp2's reset budget
 * (1000 at once) the connection gets GOAWAY and is closed, even with a
 * call still open on it. */
static void test_rapid_reset_is_cut_off(void **state) {
  fixture_t *fx = *state;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  h2_call(c, "/t/hold", false);
  run_until(fx, h2_ready, c);
  for (int i = 0; i < 1100 && !c->ended; i++) {
    h2_reset(c, h2_call(c, "/t/unary", false));
    c->n_replies = 1;
  }
  run_until(fx, h2_ended, c);
  assert_int_equal(c->goaways, 1);
  assert_int_equal(c->goaway_code, NGHTTP2_INTERNAL_ERROR);
  assert_int_equal(fx->cancels, 1);
  assert_int_equal(usc_h2_server_connections(fx->server), 0);
}

/* `n` headers x-hNN of `len` bytes each, in `value` (n * len bytes). */
static void big_headers(nghttp2_nv *nv, char names[][8], char *value, size_t n,
                        size_t len) {
  memset(value, '~', n * len); /* longer in Huffman: sent as is */
  for (size_t i = 0; i < n; i++) {
    snprintf(names[i], 8, "x-h%02u", (unsigned)(i % 100));
    nv[i] = (nghttp2_nv){(uint8_t *)names[i], (uint8_t *)value + i * len, 5,
                         len, NGHTTP2_NV_FLAG_NO_INDEX};
  }
}

/* Over the header list limit in a few frames: that stream alone is
 * refused. In more frames than such a list needs (a CONTINUATION flood),
 * or with a field HPACK cannot take (over 64 KiB), the connection is. */
static void test_header_list_limits(void **state) {
  fixture_t *fx = *state;
  static char value[20 * 10000];
  char names[20][8];
  nghttp2_nv nv[20];
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  big_headers(nv, names, value, 2, 10000); /* 20 KB, 2 frames */
  h2_call_with(c, "/t/unary", true, nv, 2);
  run_until(fx, h2_first_reply_closed, c);
  assert_int_equal(c->replies[0].grpc_status, USC_GRPC_RESOURCE_EXHAUSTED);
  big_headers(nv, names, value, 20, 10000); /* 200 KB, 13 frames */
  h2_call_with(c, "/t/unary", true, nv, 20);
  run_until(fx, h2_ended, c);
  assert_int_equal(c->goaways, 1);
  assert_int_equal(c->goaway_code, NGHTTP2_PROTOCOL_ERROR);

  c = h2_connect(fx, 1, (h2_options_t){.initial_window = -1});
  big_headers(nv, names, value, 1, 70000); /* 70 KB, 5 frames */
  h2_call_with(c, "/t/unary", true, nv, 1);
  run_until(fx, h2_ended, c);
  assert_int_equal(c->goaways, 1);
  assert_int_equal(c->goaway_code, NGHTTP2_COMPRESSION_ERROR);
}

/* A header list limit raised to 256 KiB lets a 200 KB list in 13 frames
 * through: the CONTINUATION limit follows it. */
static void test_continuations_follow_the_header_list_limit(void **state) {
  fixture_t *fx = *state;
  static char value[20 * 10000];
  char names[20][8];
  nghttp2_nv nv[20];
  fx->config.max_header_list_size = 256 * 1024;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  big_headers(nv, names, value, 20, 10000);
  h2_call_with(c, "/t/unary", true, nv, 20);
  run_until(fx, h2_first_reply_closed, c);
  assert_int_equal(c->replies[0].grpc_status, USC_GRPC_UNIMPLEMENTED);
  assert_int_equal(c->goaways, 0);
}

/* gRFC A8 ping policing: PINGs once per keepalive_min_time_ms are fine
 * while calls are open; without calls, unless permitted, closer than two
 * hours they are strikes, and the third strike ends the connection. */
static void send_pings(fixture_t *fx, h2client_t *c, int n, uint64_t gap_ms) {
  for (int i = 0; i < n && !c->ended; i++) {
    h2_ping(c);
    run_for(fx, gap_ms);
  }
}

static void test_pings_without_calls_are_strikes(void **state) {
  fixture_t *fx = *state;
  fx->config.keepalive_min_time_ms = 20;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  send_pings(fx, c, 3, 40);
  assert_int_equal(c->goaways, 0);
  h2_ping(c);
  run_until(fx, h2_ended, c);
  assert_int_equal(c->goaways, 1);
  assert_int_equal(c->goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  assert_string_equal(c->goaway_debug, "too_many_pings");
}

static void test_pings_without_calls_permitted(void **state) {
  fixture_t *fx = *state;
  fx->config.keepalive_min_time_ms = 20;
  fx->config.keepalive_permit_without_calls = true;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  send_pings(fx, c, 5, 40);
  assert_int_equal(c->ping_acks, 5);
  assert_int_equal(c->goaways, 0);
  assert_false(c->ended);
}

static void test_pings_with_a_call_open(void **state) {
  fixture_t *fx = *state;
  fx->config.keepalive_min_time_ms = 20;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  h2_call(c, "/t/hold", false);
  run_until(fx, call_started, fx);
  send_pings(fx, c, 5, 40);
  assert_int_equal(c->ping_acks, 5);
  assert_int_equal(c->goaways, 0);
  /* Closer than the minimum, even with a call: strikes all the same. */
  for (int i = 0; i < 4; i++)
    h2_ping(c);
  run_until(fx, h2_goaway, c);
  assert_int_equal(c->goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  run_until(fx, h2_ended, c);
  assert_int_equal(fx->cancels, 1);
}

#define BLOCK (64 * 1024)
#define QUEUE_CAP (4 * 1024 * 1024)

static uint8_t block[BLOCK];

static void pack_block(const void *message, uint8_t *out) {
  memcpy(out, message, BLOCK);
}

static bool first_reply_has_all(const void *what) {
  const h2client_t *c = what;
  return c->replies[0].data >= c->fx->expected_data || c->ended;
}

/* A client that does not open its windows: its connection's unsent
 * responses stop at 4 MiB, though a call with nothing waiting still gets
 * a message in; once the client reads, calls may queue again. */
static void test_queued_output_is_bounded(void **state) {
  fixture_t *fx = *state;
  start_local(fx);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = 0});
  h2_call(c, "/t/stream", false);
  run_until(fx, call_started, fx);
  usc_h2_call_t *first = fx->last_call;
  size_t queued = 0;
  int rc = 0;
  for (int i = 0; i < 2 * QUEUE_CAP / BLOCK && rc == 0; i++) {
    rc = usc_h2_call_send_message(first, BLOCK, pack_block, block);
    queued += rc == 0 ? 5 + BLOCK : 0;
  }
  assert_int_equal(rc, USC_ERR_FULL);
  assert_true(queued <= QUEUE_CAP && queued > QUEUE_CAP - 5 - BLOCK);

  fx->last_call = NULL;
  h2_call(c, "/t/stream", false);
  run_until(fx, call_started, fx);
  usc_h2_call_t *second = fx->last_call;
  assert_int_equal(usc_h2_call_send_message(second, BLOCK, pack_block, block),
                   0);
  assert_int_equal(usc_h2_call_send_message(second, BLOCK, pack_block, block),
                   USC_ERR_FULL);

  nghttp2_settings_entry open[] = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 8 * 1024 * 1024}};
  assert_int_equal(
      nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, open, 1), 0);
  h2_flush(c);
  fx->expected_data = queued;
  run_until(fx, first_reply_has_all, c);
  assert_false(c->ended);
  assert_int_equal(usc_h2_call_send_message(first, BLOCK, pack_block, block),
                   0);
}

static bool a_reply_closed(const void *what) {
  const h2client_t *c = what;
  size_t closed = 0;
  for (size_t i = 0; i < c->n_replies; i++)
    closed += c->replies[i].closed;
  return closed > 0 || c->ended;
}

/* Five streams each send 250 KB of a 256 KiB message: the connection's
 * calls may hold four such (1 MiB), so one of them is refused and the
 * others go on. */
static void test_buffered_input_is_bounded(void **state) {
  fixture_t *fx = *state;
  static uint8_t message[5 + 250 * 1000];
  fx->config.max_recv_message_size = 256 * 1024;
  start_local(fx);
  usc_grpc_frame_header(message, 256 * 1024);
  h2client_t *c = h2_connect(fx, 0, (h2_options_t){.initial_window = -1});
  for (int i = 0; i < 5; i++)
    h2_send(c, h2_call(c, "/t/hold", false), message, sizeof(message));
  run_until(fx, a_reply_closed, c);
  run_for(fx, 50);
  int refused = 0;
  for (size_t i = 0; i < c->n_replies; i++) {
    if (c->replies[i].closed) {
      assert_int_equal(c->replies[i].grpc_status, USC_GRPC_RESOURCE_EXHAUSTED);
      refused++;
    }
  }
  assert_int_equal(refused, 1);
  assert_int_equal(fx->cancels, 1);
  assert_int_equal(fx->cancel_why, USC_GRPC_RESOURCE_EXHAUSTED);
  assert_false(c->ended);
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
      cmocka_unit_test_setup_teardown(test_tls_silent_client_is_cut_off, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tls_plaintext_client_is_cut_off,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_tls_accepts_after_alloc_failure,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_address, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_host_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_accepts_after_alloc_failure, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_preface_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_server_makes_room, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_idle_connection_is_drained, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_open_call_is_not_idle, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_old_connection_closes_after_grace,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_keepalive_ping_answered, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_keepalive_ping_unanswered, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_drain_two_goaways, setup, teardown),
      cmocka_unit_test_setup_teardown(test_drain_without_ping_ack, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_rapid_reset_is_cut_off, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_header_list_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_continuations_follow_the_header_list_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pings_without_calls_are_strikes,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_pings_without_calls_permitted, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pings_with_a_call_open, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_queued_output_is_bounded, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_buffered_input_is_bounded, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
