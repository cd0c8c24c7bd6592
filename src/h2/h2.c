#include "src/h2/h2.h"

#include <inttypes.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/log/log.h"
#include "src/net/net.h"
#include "src/tls/tls.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define WRITE_HIGH_WATER (256 * 1024)
/* Response bytes a connection's calls may hold that nghttp2 has not taken
 * (the client's flow-control windows are shut): past it, a call that
 * already waits cannot queue more. */
#define MAX_QUEUED_OUTPUT (4 * 1024 * 1024)
/* Request bytes a connection's calls may hold in messages not yet whole:
 * four of the largest, and at least this. */
#define MIN_BUFFERED_INPUT (1024 * 1024)
#define MAX_INITIAL_METADATA 8
#define MAX_CAPTURED_HEADERS 8
#define CAPTURED_HEADERS_CAP (16 * 1024)
#define MAX_EXTRA_TRAILERS 6
#define STREAM_WINDOW (1 << 20)
#define POOL_KEEP_BUFFER (64 * 1024)
#define DEFAULT_MAX_HEADER_LIST_SIZE (16 * 1024)
#define DEFAULT_KEEPALIVE_TIMEOUT_MS 20000
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define DRAIN_PING_WAIT_MS 1000
#define MAX_PING_STRIKES 2
#define DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS 10000
/* TLS records made while reading (handshake, alerts, key updates) that
 * wait for the socket: a peer that makes more of them without reading
 * is cut off. */
#define TLS_PENDING_CAP (64 * 1024)
/* gRFC A8: the ping interval a connection without calls is held to,
 * unless keepalive_permit_without_calls: TCP keepalive's. */
#define NO_CALLS_PING_INTERVAL_MS (2 * 3600 * 1000)
/* nghttp2's flood limits, stated here so their bounds are ours: RST_STREAM
 * frames received are a token bucket (rapid reset, CVE-2023-44487); PING
 * and SETTINGS ACKs the peer makes the session queue and does not read; the
 * entries of one SETTINGS frame; the CONTINUATION frames of one header
 * block (CVE-2024-28182), at least enough for a header list of
 * max_header_list_size in frames of the default 16 KiB. */
#define RESET_BURST 1000
#define RESET_RATE_PER_S 33
#define MAX_OUTBOUND_ACK 1000
#define MAX_SETTINGS_ENTRIES 32
#define MIN_CONTINUATIONS 8
#define DEFAULT_FRAME_SIZE 16384

/* Opaque data of the server's own PINGs, to tell their ACKs apart. */
static const uint8_t drain_ping[8] = "usc-drn";
static const uint8_t keepalive_ping[8] = "usc-kal";

/* Headers a handler may ask for; everything else is not kept. */
static const char *const captured_names[] = {
    "authorization", "x-request-id", "traceparent", "tracestate", "user-agent",
};

typedef struct conn conn_t;

typedef struct {
  char *data;
  size_t len;
  size_t cap;
} strbuf_t;

struct usc_h2_call {
  conn_t *conn;
  int32_t stream_id;
  void *user;
  usc_h2_call_t *next_in_conn;
  usc_h2_call_t *prev_in_conn;

  /* Request. */
  bool method_post;
  bool content_type_ok;
  bool has_content_type;
  bool encoding_unsupported;
  bool gzip_in;      /* grpc-encoding: gzip */
  bool accepts_gzip; /* grpc-accept-encoding lists gzip */
  bool headers_too_large;
  size_t header_bytes; /* the request's header list size so far */
  bool timeout_bad;
  bool started;
  bool half_closed;
  usc_heap_node_t deadline; /* key: loop time in ms, 0 = none */
  strbuf_t path;
  strbuf_t headers; /* captured "name\0value\0" pairs */
  usc_grpc_deframer_t deframer;

  /* Response. */
  bool finished; /* the handler is done with the call */
  bool headers_sent;
  bool gzip_out; /* the response declared grpc-encoding: gzip */
  bool deferred;
  bool trailers_ready;
  bool reset_after_trailers;
  uint32_t reset_code;
  strbuf_t initial; /* "name\0value\0" pairs */
  size_t n_initial;
  strbuf_t trailers; /* "name\0value\0" pairs */
  size_t n_trailers;
  uint8_t *out;
  size_t out_len;
  size_t out_off;
  size_t out_cap;
};

struct conn {
  uv_tcp_t tcp;
  usc_h2_server_t *server;
  nghttp2_session *session;
  conn_t *next;
  conn_t *prev;
  usc_net_mark_t dirty; /* output to write this loop turn */
  bool closing;
  bool draining;      /* the final GOAWAY is out: close when calls end */
  bool close_written; /* close once the output is written */
  bool writing;
  int goaway_phase; /* 0, 1 (notice and PING sent), 2 (final GOAWAY) */
  /* Connection management, in loop time (ms); 0 = none. One heap node
   * per connection holds the earliest of these (see conn_schedule). */
  usc_heap_node_t timer;
  uint64_t preface_due;    /* no frame received yet: close then */
  uint64_t idle_since;     /* no calls since then */
  uint64_t last_read;      /* bytes last received */
  uint64_t age_due;        /* max-connection-age reached */
  uint64_t close_due;      /* max-connection-age grace over */
  uint64_t ping_due;       /* keepalive PING unanswered by then: close */
  uint64_t goaway_due;     /* phase 1 waits for the PING ACK until then */
  uint64_t last_ping_recv; /* a client PING, since HEADERS/DATA last sent */
  int ping_strikes;
  uv_write_t write_req;
  uint8_t *unsent; /* what the socket did not take at once; NULL if none */
  usc_tls_t *tls;  /* NULL: h2c */
  /* Ciphertext made while reading, written with the next output; empty,
   * without a buffer, but for the handshake. */
  usc_tls_buf_t tls_pending;
  uint64_t handshake_due; /* TLS handshake not done by then: close */
  size_t queued;          /* response bytes in calls' output, not yet taken */
  size_t buffered;        /* request bytes in calls' deframers */
  usc_h2_call_t *calls;
  char peer[USC_NET_ADDRESS_SIZE];
};

struct usc_h2_server {
  uv_loop_t *loop;
  usc_h2_server_config_t config;
  uv_tcp_t listener;
  /* Accepts connections that find no memory, only to close them. */
  usc_net_spare_t spare;
  usc_net_batch_t flusher; /* writes each dirty connection once a turn */
  uv_timer_t deadline_timer;
  uv_timer_t conn_timer; /* the first of conn_timers */
  usc_heap_t conn_timers;
  uint64_t rng;
  uint8_t *inflate_buf; /* decompressed request messages */
  size_t inflate_cap;
  uint8_t *pack_buf; /* response messages before compression */
  size_t pack_cap;
  /* Each connection's output is gathered here and written at once: an
   * idle connection holds no output buffer of its own. */
  uint8_t *out_buf;
  size_t out_cap;
  /* With TLS: a connection's plaintext read, and its ciphertext to
   * write, both used by one connection at a time. */
  usc_tls_buf_t tls_plain;
  usc_tls_buf_t tls_out;
  uint64_t tls_handshake_failures;
  conn_t *conns;
  usc_heap_t deadlines; /* the started calls that have a deadline */
  usc_h2_call_t *pool;  /* free calls, linked by next_in_conn */
  size_t active_calls;
  nghttp2_session_callbacks *callbacks;
  nghttp2_option *option;
  uint8_t read_buffer[READ_BUFFER_SIZE];
  char address[USC_NET_ADDRESS_SIZE];
  bool listening;
  bool closing;
  int open_handles;
  size_t n_conns;
  void (*on_closed)(void *);
  void *closed_user;
};

/* ---- small buffers ---- */

static int strbuf_append(strbuf_t *b, const void *data, size_t len,
                         size_t limit) {
  if (b->len + len > limit)
    return USC_ERR_TOO_LARGE;
  if (b->len + len > b->cap) {
    char *grown = usc_grow(b->data, &b->cap, b->len + len, 128);
    if (grown == NULL)
      return USC_ERR_NOMEM;
    b->data = grown;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

static int strbuf_append_pair(strbuf_t *b, const char *name, size_t name_len,
                              const char *value, size_t value_len,
                              size_t limit) {
  static const char nul = '\0';
  size_t mark = b->len;
  if (strbuf_append(b, name, name_len, limit) ||
      strbuf_append(b, &nul, 1, limit) ||
      strbuf_append(b, value, value_len, limit) ||
      strbuf_append(b, &nul, 1, limit)) {
    b->len = mark;
    return USC_ERR_NOMEM;
  }
  return 0;
}

/* Fills `nv` from "name\0value\0" pairs; returns how many. */
static size_t pairs_to_nv(const strbuf_t *b, nghttp2_nv *nv, size_t max) {
  size_t n = 0;
  size_t off = 0;
  while (off < b->len && n < max) {
    const char *name = b->data + off;
    size_t name_len = strlen(name);
    const char *value = name + name_len + 1;
    size_t value_len = strlen(value);
    nv[n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, name_len,
                           value_len, NGHTTP2_NV_FLAG_NONE};
    off += name_len + value_len + 2;
  }
  return n;
}

static nghttp2_nv make_nv(const char *name, const char *value) {
  return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name),
                      strlen(value), NGHTTP2_NV_FLAG_NONE};
}

/* ---- deadlines ---- */

static void on_deadline_timer(uv_timer_t *timer);

static void arm_deadline_timer(usc_h2_server_t *s) {
  if (s->closing)
    return;
  usc_heap_node_t *first = usc_heap_peek(&s->deadlines);
  if (first == NULL) {
    uv_timer_stop(&s->deadline_timer);
    return;
  }
  uint64_t now = uv_now(s->loop);
  uint64_t due = (uint64_t)first->key;
  uv_timer_start(&s->deadline_timer, on_deadline_timer,
                 due > now ? due - now : 0, 0);
}

/* ---- connection output: gathered, one write per loop turn ---- */

static void mark_dirty(conn_t *c) {
  if (!c->closing)
    usc_net_batch_mark(&c->server->flusher, &c->dirty);
}

static void conn_close(conn_t *c);
static void conn_schedule(conn_t *c);

static void on_write_done(uv_write_t *req, int status) {
  conn_t *c = req->data;
  c->writing = false;
  usc_free(c->unsent);
  c->unsent = NULL;
  if (status < 0) {
    conn_close(c);
    return;
  }
  mark_dirty(c);
}

/* Gathers up to WRITE_HIGH_WATER bytes of the session's output in the
 * server's out_buf; returns how many, or a negative USC_ERR_*. */
static ssize_t gather_output(conn_t *c) {
  usc_h2_server_t *s = c->server;
  size_t len = 0;
  while (len < WRITE_HIGH_WATER) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->session, &data);
    if (n < 0)
      return USC_ERR_IO;
    if (n == 0)
      break;
    if (len + (size_t)n > s->out_cap) {
      uint8_t *grown =
          usc_grow(s->out_buf, &s->out_cap, len + (size_t)n, 16 * 1024);
      if (grown == NULL)
        return USC_ERR_NOMEM;
      s->out_buf = grown;
    }
    memcpy(s->out_buf + len, data, (size_t)n);
    len += (size_t)n;
  }
  return (ssize_t)len;
}

/* Writes what the socket takes now; the rest is copied and queued, and
 * the connection waits for that write before gathering more. */
static int write_output(conn_t *c, const uint8_t *data, size_t len) {
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
  if (n == UV_EAGAIN)
    n = 0;
  if (n < 0)
    return n;
  if ((size_t)n == len)
    return 0;
  if ((c->unsent = usc_malloc(len - (size_t)n)) == NULL)
    return USC_ERR_NOMEM;
  memcpy(c->unsent, data + n, len - (size_t)n);
  buf = uv_buf_init((char *)c->unsent, (unsigned)(len - (size_t)n));
  c->write_req.data = c;
  int rc =
      uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_write_done);
  if (rc != 0) {
    usc_free(c->unsent);
    c->unsent = NULL;
    return rc;
  }
  c->writing = true;
  return 0;
}

/* TLS: the records reading left to send (the handshake, alerts), then
 * the session's output encrypted, once the handshake is done, in the
 * server's tls_out; returns how many bytes, or a negative USC_ERR_*. */
static ssize_t gather_tls(conn_t *c) {
  usc_h2_server_t *s = c->server;
  usc_tls_buf_t *out = &s->tls_out;
  out->len = 0;
  if (c->tls_pending.len > 0) {
    usc_tls_buf_t pending = c->tls_pending;
    c->tls_pending = *out;
    *out = pending;
    usc_tls_buf_free(&c->tls_pending);
  }
  if (!usc_tls_established(c->tls))
    return (ssize_t)out->len;
  ssize_t len = gather_output(c);
  if (len < 0)
    return len;
  int rc = usc_tls_encrypt(c->tls, s->out_buf, (size_t)len, out);
  return rc != 0 ? rc : (ssize_t)out->len;
}

/* A TLS connection closed by the server ends with close_notify, if the
 * socket takes it now. */
static void say_goodbye(conn_t *c) {
  usc_tls_buf_t *out = &c->server->tls_out;
  out->len = 0;
  if (c->tls == NULL || c->close_written ||
      usc_tls_close_notify(c->tls, out) != 0 || out->len == 0)
    return;
  uv_buf_t buf = uv_buf_init((char *)out->data, (unsigned)out->len);
  uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
}

static void conn_flush(conn_t *c) {
  if (c->closing || c->writing)
    return;
  usc_h2_server_t *s = c->server;
  for (;;) {
    ssize_t len = c->tls != NULL ? gather_tls(c) : gather_output(c);
    const uint8_t *data = c->tls != NULL ? s->tls_out.data : s->out_buf;
    if (len < 0 || (len > 0 && write_output(c, data, (size_t)len) != 0)) {
      conn_close(c);
      return;
    }
    if (c->writing)
      return;
    if (len == 0)
      break;
  }
  bool done = !nghttp2_session_want_read(c->session) &&
              !nghttp2_session_want_write(c->session);
  if (done || (c->draining && c->calls == NULL) || c->close_written) {
    say_goodbye(c);
    conn_close(c);
  }
}

static void on_flush(usc_net_batch_t *flusher, usc_net_mark_t *dirty) {
  (void)flusher;
  conn_flush(USC_CONTAINER_OF(dirty, conn_t, dirty));
}

/* ---- connection management: idle, age, keepalive, drain ----
 *
 * Each connection has one node in the server's conn_timers heap, keyed by
 * the earliest moment something may be due for it; one timer serves the
 * heap. Keys may be early (a read since pushes the keepalive moment
 * back): conn_tick checks what is really due and schedules again. */

static void on_conn_timer(uv_timer_t *timer);

static uint64_t earliest(uint64_t a, uint64_t b) {
  return a == 0 ? b : (b == 0 || a < b ? a : b);
}

static void arm_conn_timer(usc_h2_server_t *s) {
  if (s->closing)
    return;
  usc_heap_node_t *first = usc_heap_peek(&s->conn_timers);
  if (first == NULL) {
    uv_timer_stop(&s->conn_timer);
    return;
  }
  uint64_t now = uv_now(s->loop);
  uint64_t due = (uint64_t)first->key;
  uv_timer_start(&s->conn_timer, on_conn_timer, due > now ? due - now : 0, 0);
}

static void conn_schedule(conn_t *c) {
  usc_h2_server_t *s = c->server;
  const usc_h2_server_config_t *cfg = &s->config;
  if (c->closing)
    return;
  uint64_t due = 0;
  if (c->goaway_phase == 0 && !c->draining) {
    if (cfg->max_connection_idle_ms != 0 && c->idle_since != 0)
      due = earliest(due, c->idle_since + cfg->max_connection_idle_ms);
    due = earliest(due, c->age_due);
  }
  if (cfg->keepalive_time_ms != 0 && c->ping_due == 0)
    due = earliest(due, c->last_read + cfg->keepalive_time_ms);
  due = earliest(due, c->preface_due);
  due = earliest(due, c->ping_due);
  due = earliest(due, c->goaway_due);
  due = earliest(due, c->close_due);
  due = earliest(due, c->handshake_due);
  if (due == 0) {
    usc_heap_remove(&s->conn_timers, &c->timer);
  } else if (usc_heap_node_in_heap(&c->timer)) {
    usc_heap_update(&s->conn_timers, &c->timer, (int64_t)due);
  } else {
    c->timer.key = (int64_t)due;
    /* Room for every connection was reserved when it was accepted. */
    usc_heap_push(&s->conn_timers, &c->timer);
  }
  arm_conn_timer(s);
}

/* The second GOAWAY: streams after the last one processed are refused,
 * and the connection closes once its calls are done. */
static void final_goaway(conn_t *c) {
  if (c->goaway_phase == 2 || c->closing)
    return;
  c->goaway_phase = 2;
  c->goaway_due = 0;
  c->draining = true;
  nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(c->session),
                        NGHTTP2_NO_ERROR, NULL, 0);
  conn_schedule(c);
  mark_dirty(c);
}

/* The first GOAWAY (last-stream-id 2^31-1, NO_ERROR) and a PING: streams
 * the client opens before it sees the GOAWAY are still served; the PING
 * ACK (or DRAIN_PING_WAIT_MS) tells when it has. */
static void start_goaway(conn_t *c) {
  if (c->goaway_phase != 0 || c->draining || c->closing)
    return;
  c->goaway_phase = 1;
  /* The PING follows once the GOAWAY is out (on_frame_send): nghttp2
   * would send it first, and its ACK must mean the GOAWAY was seen. */
  if (nghttp2_submit_shutdown_notice(c->session) != 0) {
    final_goaway(c);
    return;
  }
  c->goaway_due = uv_now(c->server->loop) + DRAIN_PING_WAIT_MS;
  conn_schedule(c);
  mark_dirty(c);
}

/* Ping policing: GOAWAY ENHANCE_YOUR_CALM, then close once it is out. */
static void too_many_pings(conn_t *c) {
  static const char debug[] = "too_many_pings";
  c->goaway_phase = 2;
  c->goaway_due = 0;
  c->draining = true;
  c->close_written = true;
  uv_read_stop((uv_stream_t *)&c->tcp);
  nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(c->session),
                        NGHTTP2_ENHANCE_YOUR_CALM, (const uint8_t *)debug,
                        sizeof(debug) - 1);
  mark_dirty(c);
}

static void on_ping(conn_t *c, const nghttp2_frame *f) {
  usc_h2_server_t *s = c->server;
  if (f->hd.flags & NGHTTP2_FLAG_ACK) {
    if (memcmp(f->ping.opaque_data, keepalive_ping, 8) == 0) {
      c->ping_due = 0;
      conn_schedule(c);
    } else if (memcmp(f->ping.opaque_data, drain_ping, 8) == 0 &&
               c->goaway_phase == 1) {
      final_goaway(c);
    }
    return;
  }
  uint64_t min = s->config.keepalive_min_time_ms;
  if (min == 0 || c->close_written)
    return;
  if (c->calls == NULL && !s->config.keepalive_permit_without_calls &&
      min < NO_CALLS_PING_INTERVAL_MS)
    min = NO_CALLS_PING_INTERVAL_MS;
  uint64_t now = uv_now(s->loop);
  if (c->last_ping_recv != 0 && now - c->last_ping_recv < min &&
      ++c->ping_strikes > MAX_PING_STRIKES) {
    too_many_pings(c);
    return;
  }
  c->last_ping_recv = now;
}

static void handshake_failed(conn_t *c, const char *why);

static void conn_tick(conn_t *c, uint64_t now) {
  const usc_h2_server_config_t *cfg = &c->server->config;
  if (c->handshake_due != 0 && now >= c->handshake_due) {
    handshake_failed(c, "the TLS handshake timed out");
    conn_close(c);
    return;
  }
  if ((c->close_due != 0 && now >= c->close_due) ||
      (c->ping_due != 0 && now >= c->ping_due) ||
      (c->preface_due != 0 && now >= c->preface_due)) {
    conn_close(c);
    return;
  }
  if (c->goaway_phase == 1 && now >= c->goaway_due)
    final_goaway(c);
  if (c->goaway_phase == 0 && !c->draining) {
    if (c->age_due != 0 && now >= c->age_due) {
      if (cfg->max_connection_age_grace_ms != 0)
        c->close_due = now + cfg->max_connection_age_grace_ms;
      start_goaway(c);
    } else if (cfg->max_connection_idle_ms != 0 && c->idle_since != 0 &&
               now - c->idle_since >= cfg->max_connection_idle_ms) {
      start_goaway(c);
    }
  }
  if (cfg->keepalive_time_ms != 0 && c->ping_due == 0 &&
      now - c->last_read >= cfg->keepalive_time_ms && !c->close_written &&
      nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, keepalive_ping) == 0) {
    c->ping_due =
        now + (cfg->keepalive_timeout_ms != 0 ? cfg->keepalive_timeout_ms
                                              : DEFAULT_KEEPALIVE_TIMEOUT_MS);
    mark_dirty(c);
  }
  conn_schedule(c);
}

static void on_conn_timer(uv_timer_t *timer) {
  usc_h2_server_t *s = timer->data;
  uint64_t now = uv_now(s->loop);
  usc_heap_node_t *first;
  while ((first = usc_heap_peek(&s->conn_timers)) != NULL &&
         (uint64_t)first->key <= now) {
    usc_heap_remove(&s->conn_timers, first);
    conn_tick(USC_CONTAINER_OF(first, conn_t, timer), now);
  }
  arm_conn_timer(s);
}

/* max-connection-age, +-10%, so connections made together do not all
 * go together. */
static uint64_t jittered(usc_h2_server_t *s, uint64_t ms) {
  s->rng ^= s->rng << 13;
  s->rng ^= s->rng >> 7;
  s->rng ^= s->rng << 17;
  uint64_t span = ms / 5;
  return span == 0 ? ms : ms - ms / 10 + s->rng % (span + 1);
}

/* ---- calls ---- */

static usc_h2_call_t *call_new(conn_t *c, int32_t stream_id) {
  usc_h2_server_t *s = c->server;
  usc_h2_call_t *call = s->pool;
  if (call != NULL) {
    s->pool = call->next_in_conn;
  } else {
    call = usc_calloc(1, sizeof(*call));
    if (call == NULL)
      return NULL;
  }
  call->conn = c;
  call->stream_id = stream_id;
  c->idle_since = 0;
  usc_grpc_deframer_init(&call->deframer, s->config.max_recv_message_size);
  call->prev_in_conn = NULL;
  call->next_in_conn = c->calls;
  if (c->calls != NULL)
    c->calls->prev_in_conn = call;
  c->calls = call;
  s->active_calls++;
  return call;
}

static void strbuf_recycle(strbuf_t *b) {
  if (b->cap > POOL_KEEP_BUFFER) {
    usc_free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
  b->len = 0;
}

/* Unlinks the call and returns it to the pool, keeping modest buffers. */
static void call_free(usc_h2_call_t *call) {
  conn_t *c = call->conn;
  usc_h2_server_t *s = c->server;
  usc_heap_remove(&s->deadlines, &call->deadline);
  if (call->prev_in_conn != NULL)
    call->prev_in_conn->next_in_conn = call->next_in_conn;
  else
    c->calls = call->next_in_conn;
  if (call->next_in_conn != NULL)
    call->next_in_conn->prev_in_conn = call->prev_in_conn;
  s->active_calls--;
  c->queued -= call->out_len - call->out_off;
  c->buffered -= call->deframer.body_cap;
  if (c->calls == NULL && !c->closing) {
    c->idle_since = uv_now(s->loop);
    if (s->config.max_connection_idle_ms != 0)
      conn_schedule(c);
  }
  usc_grpc_deframer_free(&call->deframer);
  strbuf_t path = call->path, headers = call->headers;
  strbuf_t initial = call->initial, trailers = call->trailers;
  uint8_t *out = call->out;
  size_t out_cap = call->out_cap;
  if (out_cap > POOL_KEEP_BUFFER) {
    usc_free(out);
    out = NULL;
    out_cap = 0;
  }
  strbuf_recycle(&path);
  strbuf_recycle(&headers);
  strbuf_recycle(&initial);
  strbuf_recycle(&trailers);
  memset(call, 0, sizeof(*call));
  call->path = path;
  call->headers = headers;
  call->initial = initial;
  call->trailers = trailers;
  call->out = out;
  call->out_cap = out_cap;
  call->next_in_conn = s->pool;
  s->pool = call;
}

static void call_cancel(usc_h2_call_t *call, usc_grpc_status_t why) {
  if (call->finished)
    return;
  call->finished = true;
  usc_h2_server_t *s = call->conn->server;
  if (call->started)
    s->config.handler->on_cancel(s->config.user, call, why);
}

static ssize_t read_response(nghttp2_session *session, int32_t stream_id,
                             uint8_t *buf, size_t length, uint32_t *flags,
                             nghttp2_data_source *source, void *user) {
  usc_h2_call_t *call = source->ptr;
  (void)session;
  (void)user;
  size_t avail = call->out_len - call->out_off;
  size_t n = avail < length ? avail : length;
  if (n > 0)
    memcpy(buf, call->out + call->out_off, n);
  call->out_off += n;
  call->conn->queued -= n;
  if (call->out_off == call->out_len)
    call->out_off = call->out_len = 0;
  if (n == avail && call->trailers_ready) {
    nghttp2_nv nv[3 + MAX_EXTRA_TRAILERS];
    size_t n_nv = pairs_to_nv(&call->trailers, nv, USC_ARRAY_LEN(nv));
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (nghttp2_submit_trailer(call->conn->session, stream_id, nv, n_nv) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)n;
  }
  if (n == 0) {
    call->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

/* Response headers: :status, content-type, grpc-encoding when the
 * response is compressed, then the initial metadata. */
static size_t response_headers(usc_h2_call_t *call, nghttp2_nv *nv,
                               size_t max) {
  size_t n = 0;
  nv[n++] = make_nv(":status", "200");
  nv[n++] = make_nv("content-type", "application/grpc");
  if (call->gzip_out)
    nv[n++] = make_nv("grpc-encoding", "gzip");
  return n + pairs_to_nv(&call->initial, nv + n, max - n);
}

static int submit_headers_with_body(usc_h2_call_t *call) {
  nghttp2_nv nv[3 + MAX_INITIAL_METADATA];
  size_t n = response_headers(call, nv, USC_ARRAY_LEN(nv));
  nghttp2_data_provider provider = {.source.ptr = call,
                                    .read_callback = read_response};
  if (nghttp2_submit_response(call->conn->session, call->stream_id, nv, n,
                              &provider) != 0)
    return USC_ERR_STATE;
  call->headers_sent = true;
  return 0;
}

static void wake_body(usc_h2_call_t *call) {
  if (call->deferred) {
    call->deferred = false;
    nghttp2_session_resume_data(call->conn->session, call->stream_id);
  }
  mark_dirty(call->conn);
}

void usc_h2_call_set_user(usc_h2_call_t *call, void *user) {
  call->user = user;
}

void *usc_h2_call_user(const usc_h2_call_t *call) { return call->user; }

uint64_t usc_h2_call_deadline(const usc_h2_call_t *call) {
  return call->deadline.key > 0 ? (uint64_t)call->deadline.key : 0;
}

const char *usc_h2_call_peer(const usc_h2_call_t *call) {
  return call->conn->peer;
}

const char *usc_h2_call_header(const usc_h2_call_t *call, const char *name) {
  size_t off = 0;
  while (off < call->headers.len) {
    const char *key = call->headers.data + off;
    const char *value = key + strlen(key) + 1;
    if (strcmp(key, name) == 0)
      return value;
    off += (size_t)(value - key) + strlen(value) + 1;
  }
  return NULL;
}

int usc_h2_call_add_initial_metadata(usc_h2_call_t *call, const char *name,
                                     const char *value) {
  if (call->n_initial == MAX_INITIAL_METADATA || call->headers_sent)
    return USC_ERR_FULL;
  int rc = strbuf_append_pair(&call->initial, name, strlen(name), value,
                              strlen(value), SIZE_MAX);
  if (rc == 0)
    call->n_initial++;
  return rc;
}

int usc_h2_call_send_headers(usc_h2_call_t *call) {
  if (call->finished)
    return USC_ERR_STATE;
  if (call->headers_sent)
    return 0;
  int rc = submit_headers_with_body(call);
  if (rc == 0)
    mark_dirty(call->conn);
  return rc;
}

/* Whether a response message of `len` bytes goes out compressed; the
 * first message decides the response's grpc-encoding. */
static bool compress_message(usc_h2_call_t *call, size_t len) {
  size_t min = call->conn->server->config.gzip_min_response_size;
  if (min == 0 || len < min || len > (1u << 30))
    return false;
  if (!call->headers_sent && call->accepts_gzip)
    call->gzip_out = true;
  return call->gzip_out;
}

/* Packs the message, gzips it and appends it, framed with the compressed
 * flag. */
static int append_compressed(usc_h2_call_t *call, size_t len,
                             usc_h2_pack_fn pack, const void *message) {
  usc_h2_server_t *s = call->conn->server;
  if (len > s->pack_cap) {
    uint8_t *grown = usc_grow(s->pack_buf, &s->pack_cap, len, 4096);
    if (grown == NULL)
      return USC_ERR_NOMEM;
    s->pack_buf = grown;
  }
  pack(message, s->pack_buf);
  size_t bound = usc_grpc_gzip_bound(len);
  size_t need = call->out_len + USC_GRPC_FRAME_HEADER_LEN + bound;
  if (need > call->out_cap) {
    uint8_t *grown = usc_grow(call->out, &call->out_cap, need, 256);
    if (grown == NULL)
      return USC_ERR_NOMEM;
    call->out = grown;
  }
  uint8_t *frame = call->out + call->out_len;
  size_t zlen;
  int rc = usc_grpc_gzip(s->pack_buf, len, frame + USC_GRPC_FRAME_HEADER_LEN,
                         bound, &zlen);
  if (s->pack_cap > POOL_KEEP_BUFFER) {
    usc_free(s->pack_buf);
    s->pack_buf = NULL;
    s->pack_cap = 0;
  }
  if (rc != 0)
    return rc;
  usc_grpc_frame_header(frame, (uint32_t)zlen);
  frame[0] = 1; /* compressed */
  call->out_len += USC_GRPC_FRAME_HEADER_LEN + zlen;
  call->conn->queued += USC_GRPC_FRAME_HEADER_LEN + zlen;
  return 0;
}

/* Whether the client reads too little for another message: the
 * connection holds MAX_QUEUED_OUTPUT of unsent responses and this call
 * some of them. A call with nothing waiting may always queue one, so that
 * no response is refused for the others' backlog. */
static bool output_full(const usc_h2_call_t *call, size_t len) {
  return call->out_len > call->out_off &&
         call->conn->queued + USC_GRPC_FRAME_HEADER_LEN + len >
             MAX_QUEUED_OUTPUT;
}

/* Drops what nghttp2 has taken from the front of the output once that is
 * at least as much as what is left, so that a stream that never quite
 * catches up holds about its backlog rather than all it ever sent. */
static void compact_output(usc_h2_call_t *call) {
  size_t unsent = call->out_len - call->out_off;
  if (call->out_off == 0 || call->out_off < unsent)
    return;
  memmove(call->out, call->out + call->out_off, unsent);
  call->out_len = unsent;
  call->out_off = 0;
}

int usc_h2_call_send_message(usc_h2_call_t *call, size_t len,
                             usc_h2_pack_fn pack, const void *message) {
  if (call->finished)
    return USC_ERR_STATE;
  if (len > UINT32_MAX)
    return USC_ERR_TOO_LARGE;
  if (output_full(call, len))
    return USC_ERR_FULL;
  compact_output(call);
  if (compress_message(call, len)) {
    int rc = append_compressed(call, len, pack, message);
    if (rc != 0)
      return rc;
    if (!call->headers_sent) {
      rc = submit_headers_with_body(call);
      if (rc != 0)
        return rc;
    }
    wake_body(call);
    return 0;
  }
  size_t need = call->out_len + USC_GRPC_FRAME_HEADER_LEN + len;
  if (need > call->out_cap) {
    uint8_t *grown = usc_grow(call->out, &call->out_cap, need, 256);
    if (grown == NULL)
      return USC_ERR_NOMEM;
    call->out = grown;
  }
  uint8_t *frame = call->out + call->out_len;
  usc_grpc_frame_header(frame, (uint32_t)len);
  pack(message, frame + USC_GRPC_FRAME_HEADER_LEN);
  call->out_len = need;
  call->conn->queued += USC_GRPC_FRAME_HEADER_LEN + len;
  if (!call->headers_sent) {
    int rc = submit_headers_with_body(call);
    if (rc != 0)
      return rc;
  }
  wake_body(call);
  return 0;
}

static int build_trailers(usc_h2_call_t *call, usc_grpc_status_t status,
                          const char *message, const usc_h2_header_t *extra,
                          size_t n_extra) {
  char encoded[1024];
  strbuf_t *t = &call->trailers;
  const char *code = usc_grpc_status_text(status);
  t->len = 0;
  call->n_trailers = 0;
  if (strbuf_append_pair(t, "grpc-status", 11, code, strlen(code), SIZE_MAX))
    return USC_ERR_NOMEM;
  call->n_trailers++;
  if (message != NULL && message[0] != '\0') {
    size_t n = usc_grpc_percent_encode(message, strlen(message), encoded,
                                       sizeof(encoded) - 1);
    if (strbuf_append_pair(t, "grpc-message", 12, encoded, n, SIZE_MAX))
      return USC_ERR_NOMEM;
    call->n_trailers++;
  }
  for (size_t i = 0; i < n_extra && i < MAX_EXTRA_TRAILERS; i++) {
    if (strbuf_append_pair(t, extra[i].name, strlen(extra[i].name),
                           extra[i].value, strlen(extra[i].value), SIZE_MAX))
      return USC_ERR_NOMEM;
    call->n_trailers++;
  }
  return 0;
}

/* A Trailers-Only response: one HEADERS frame ending the stream. */
static int submit_trailers_only(usc_h2_call_t *call) {
  nghttp2_nv nv[3 + MAX_INITIAL_METADATA + 2 + MAX_EXTRA_TRAILERS];
  size_t n = response_headers(call, nv, 3 + MAX_INITIAL_METADATA);
  n += pairs_to_nv(&call->trailers, nv + n, USC_ARRAY_LEN(nv) - n);
  if (nghttp2_submit_response(call->conn->session, call->stream_id, nv, n,
                              NULL) != 0)
    return USC_ERR_STATE;
  call->headers_sent = true;
  return 0;
}

/* A stream the client is still sending on, or one cut short, is reset
 * once its last HEADERS frame is out (see on_frame_send): queued earlier,
 * the reset could overtake the response. */
static void reset_after_end(usc_h2_call_t *call, uint32_t reset_code) {
  call->reset_after_trailers =
      !call->half_closed || reset_code != NGHTTP2_NO_ERROR;
  call->reset_code = reset_code;
}

static void finish_stream(usc_h2_call_t *call, usc_grpc_status_t status,
                          const char *message, const usc_h2_header_t *extra,
                          size_t n_extra, uint32_t reset_code) {
  call->finished = true;
  usc_heap_remove(&call->conn->server->deadlines, &call->deadline);
  reset_after_end(call, reset_code);
  if (build_trailers(call, status, message, extra, n_extra) != 0) {
    nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE,
                              call->stream_id, NGHTTP2_INTERNAL_ERROR);
  } else if (!call->headers_sent) {
    if (submit_trailers_only(call) != 0)
      nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE,
                                call->stream_id, NGHTTP2_INTERNAL_ERROR);
  } else {
    call->trailers_ready = true;
    wake_body(call);
  }
  mark_dirty(call->conn);
}

void usc_h2_call_finish(usc_h2_call_t *call, usc_grpc_status_t status,
                        const char *message, const usc_h2_header_t *trailers,
                        size_t n_trailers) {
  if (call->finished)
    return;
  finish_stream(call, status, message, trailers, n_trailers, NGHTTP2_NO_ERROR);
}

/* The transport's own verdicts, given before or instead of the handler. */
static void fail_call(usc_h2_call_t *call, usc_grpc_status_t status,
                      const char *message) {
  call_cancel(call, status);
  finish_stream(call, status, message, NULL, 0, NGHTTP2_NO_ERROR);
}

static void on_deadline_timer(uv_timer_t *timer) {
  usc_h2_server_t *s = timer->data;
  uint64_t now = uv_now(s->loop);
  usc_heap_node_t *first;
  while ((first = usc_heap_peek(&s->deadlines)) != NULL &&
         (uint64_t)first->key <= now) {
    usc_h2_call_t *call = USC_CONTAINER_OF(first, usc_h2_call_t, deadline);
    usc_heap_remove(&s->deadlines, first);
    call_cancel(call, USC_GRPC_DEADLINE_EXCEEDED);
    finish_stream(call, USC_GRPC_DEADLINE_EXCEEDED, "Deadline Exceeded", NULL,
                  0, NGHTTP2_CANCEL);
  }
  arm_deadline_timer(s);
}

/* ---- request side: nghttp2 callbacks ---- */

static usc_h2_call_t *stream_call(nghttp2_session *session, int32_t id) {
  return nghttp2_session_get_stream_user_data(session, id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *f,
                            void *user) {
  conn_t *c = user;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  if (c->draining)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  usc_h2_call_t *call = call_new(c, f->hd.stream_id);
  if (call == NULL)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  nghttp2_session_set_stream_user_data(session, f->hd.stream_id, call);
  return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *want) {
  return len == strlen(want) && memcmp(name, want, len) == 0;
}

static bool content_type_is_grpc(const uint8_t *v, size_t len) {
  static const char grpc[] = "application/grpc";
  size_t n = sizeof(grpc) - 1;
  if (len < n || memcmp(v, grpc, n) != 0)
    return false;
  return len == n || v[n] == '+' || v[n] == ';';
}

static void capture_header(usc_h2_call_t *call, const uint8_t *name,
                           size_t name_len, const uint8_t *value,
                           size_t value_len) {
  for (size_t i = 0; i < USC_ARRAY_LEN(captured_names); i++) {
    if (name_is(name, name_len, captured_names[i])) {
      strbuf_append_pair(&call->headers, (const char *)name, name_len,
                         (const char *)value, value_len, CAPTURED_HEADERS_CAP);
      return;
    }
  }
}

static void set_deadline(usc_h2_call_t *call, const uint8_t *v, size_t len) {
  int64_t ns;
  if (usc_grpc_timeout_parse((const char *)v, len, &ns) != 0) {
    call->timeout_bad = true;
    return;
  }
  int64_t ms = ns / 1000000 + (ns % 1000000 != 0);
  uint64_t now = uv_now(call->conn->server->loop);
  call->deadline.key =
      ms > INT64_MAX - (int64_t)now ? INT64_MAX : (int64_t)now + ms;
}

static uint32_t header_list_limit(const usc_h2_server_t *s) {
  return s->config.max_header_list_size != 0 ? s->config.max_header_list_size
                                             : DEFAULT_MAX_HEADER_LIST_SIZE;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *f,
                     const uint8_t *name, size_t name_len, const uint8_t *value,
                     size_t value_len, uint8_t flags, void *user) {
  (void)flags;
  (void)user;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  usc_h2_call_t *call = stream_call(session, f->hd.stream_id);
  if (call == NULL || call->headers_too_large)
    return 0;
  /* RFC 9113 6.5.2: the list size counts 32 bytes of overhead a field. */
  call->header_bytes += name_len + value_len + 32;
  if (call->header_bytes > header_list_limit(call->conn->server)) {
    call->headers_too_large = true;
    return 0;
  }
  if (name_is(name, name_len, ":path")) {
    call->path.len = 0;
    if (strbuf_append(&call->path, value, value_len, 4096) != 0 ||
        strbuf_append(&call->path, "", 1, 4097) != 0)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  } else if (name_is(name, name_len, ":method")) {
    call->method_post = name_is(value, value_len, "POST");
  } else if (name_is(name, name_len, "content-type")) {
    call->has_content_type = true;
    call->content_type_ok = content_type_is_grpc(value, value_len);
  } else if (name_is(name, name_len, "grpc-timeout")) {
    set_deadline(call, value, value_len);
  } else if (name_is(name, name_len, "grpc-encoding")) {
    call->gzip_in = name_is(value, value_len, "gzip");
    call->encoding_unsupported =
        !call->gzip_in && !name_is(value, value_len, "identity");
  } else if (name_is(name, name_len, "grpc-accept-encoding")) {
    call->accepts_gzip =
        usc_grpc_encoding_listed((const char *)value, value_len, "gzip");
  } else {
    capture_header(call, name, name_len, value, value_len);
  }
  return 0;
}

/* An HTTP-level refusal, for requests that are not gRPC at all. */
static void refuse_http(usc_h2_call_t *call, const char *status) {
  nghttp2_nv nv[] = {make_nv(":status", status),
                     make_nv("content-type", "text/plain")};
  call->finished = true;
  call->headers_sent = true;
  reset_after_end(call, NGHTTP2_NO_ERROR);
  nghttp2_submit_response(call->conn->session, call->stream_id, nv,
                          USC_ARRAY_LEN(nv), NULL);
}

static void start_call(usc_h2_call_t *call) {
  usc_h2_server_t *s = call->conn->server;
  if (call->headers_too_large) {
    /* gRPC's answer to HTTP 431; the stream is reset if still open. */
    char msg[96];
    snprintf(msg, sizeof(msg), "request header list larger than %" PRIu32,
             header_list_limit(s));
    finish_stream(call, USC_GRPC_RESOURCE_EXHAUSTED, msg, NULL, 0,
                  NGHTTP2_NO_ERROR);
  } else if (!call->method_post) {
    refuse_http(call, "405");
  } else if (!call->content_type_ok) {
    refuse_http(call, "415");
  } else if (call->timeout_bad) {
    fail_call(call, USC_GRPC_INTERNAL, "malformed grpc-timeout");
  } else if (call->encoding_unsupported) {
    usc_h2_header_t accept = {"grpc-accept-encoding", "gzip, identity"};
    finish_stream(call, USC_GRPC_UNIMPLEMENTED,
                  "unsupported grpc-encoding; this server accepts gzip, "
                  "identity",
                  &accept, 1, NGHTTP2_NO_ERROR);
  } else {
    if (call->deadline.key != 0) {
      if (usc_heap_push(&s->deadlines, &call->deadline) != 0) {
        fail_call(call, USC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
      }
      arm_deadline_timer(s);
    }
    call->started = true;
    const char *path = call->path.len ? call->path.data : "";
    s->config.handler->on_start(s->config.user, call, path, strlen(path));
  }
}

static void half_close(usc_h2_call_t *call) {
  usc_h2_server_t *s = call->conn->server;
  call->half_closed = true;
  if (call->finished)
    return;
  if (usc_grpc_deframer_partial(&call->deframer)) {
    fail_call(call, USC_GRPC_INTERNAL,
              "request ended inside a length-prefixed message");
    return;
  }
  s->config.handler->on_half_close(s->config.user, call);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *f,
                         void *user) {
  conn_t *c = user;
  if (c->preface_due != 0) {
    c->preface_due = 0;
    conn_schedule(c);
  }
  if (f->hd.type == NGHTTP2_PING) {
    on_ping(user, f);
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
    return 0;
  usc_h2_call_t *call = stream_call(session, f->hd.stream_id);
  if (call == NULL)
    return 0;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    call->half_closed = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    start_call(call);
    if (call->half_closed && !call->finished) {
      call->half_closed = false;
      half_close(call);
    }
    return 0;
  }
  if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
    half_close(call);
  return 0;
}

static int deliver_message(void *user, bool compressed, const uint8_t *data,
                           size_t len) {
  usc_h2_call_t *call = user;
  usc_h2_server_t *s = call->conn->server;
  if (compressed) {
    if (!call->gzip_in) {
      fail_call(call, USC_GRPC_INTERNAL,
                "compressed message without a grpc-encoding");
      return 1;
    }
    size_t n = 0;
    int rc = usc_grpc_gunzip(data, len, s->config.max_recv_message_size,
                             &s->inflate_buf, &s->inflate_cap, &n);
    if (rc != 0) {
      char msg[160];
      if (rc == USC_ERR_TOO_LARGE)
        snprintf(msg, sizeof(msg), "decompressed message larger than max (%zu)",
                 s->config.max_recv_message_size);
      else
        snprintf(msg, sizeof(msg), "%s",
                 rc == USC_ERR_NOMEM ? "out of memory"
                                     : "could not decompress a gzip message");
      fail_call(call,
                rc == USC_ERR_INVALID ? USC_GRPC_INTERNAL
                                      : USC_GRPC_RESOURCE_EXHAUSTED,
                msg);
      return 1;
    }
    data = s->inflate_buf;
    len = n;
  }
  s->config.handler->on_message(s->config.user, call, data, len);
  if (s->inflate_cap > POOL_KEEP_BUFFER) {
    usc_free(s->inflate_buf);
    s->inflate_buf = NULL;
    s->inflate_cap = 0;
  }
  return call->finished ? 1 : 0;
}

static size_t max_buffered_input(const usc_h2_server_t *s) {
  size_t four = 4 * s->config.max_recv_message_size;
  return four > MIN_BUFFERED_INPUT ? four : MIN_BUFFERED_INPUT;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user) {
  (void)flags;
  (void)user;
  usc_h2_call_t *call = stream_call(session, stream_id);
  if (call == NULL || call->finished || !call->started)
    return 0;
  conn_t *c = call->conn;
  size_t held = call->deframer.body_cap;
  uint64_t declared = 0;
  int rc = usc_grpc_deframer_feed(&call->deframer, data, len, deliver_message,
                                  call, &declared);
  c->buffered += call->deframer.body_cap - held;
  if (rc == 0 && !call->finished &&
      c->buffered > max_buffered_input(c->server)) {
    /* Many streams each sending part of a large message: the one that
     * went over lets its part go, and the others go on. */
    char msg[160];
    snprintf(msg, sizeof(msg),
             "request messages held for this connection over %zu bytes",
             max_buffered_input(c->server));
    c->buffered -= call->deframer.body_cap;
    usc_grpc_deframer_free(&call->deframer);
    fail_call(call, USC_GRPC_RESOURCE_EXHAUSTED, msg);
  } else if (rc == USC_ERR_TOO_LARGE) {
    char msg[160];
    snprintf(msg, sizeof(msg),
             "received message larger than max (%" PRIu64 " vs. %zu)", declared,
             call->conn->server->config.max_recv_message_size);
    fail_call(call, USC_GRPC_RESOURCE_EXHAUSTED, msg);
  } else if (rc == USC_ERR_INVALID) {
    fail_call(call, USC_GRPC_INTERNAL, "malformed message prefix");
  } else if (rc == USC_ERR_NOMEM) {
    fail_call(call, USC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
  }
  return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *f,
                         void *user) {
  if (f->hd.type == NGHTTP2_GOAWAY &&
      f->goaway.error_code != NGHTTP2_NO_ERROR) {
    /* A verdict on the peer (nghttp2's own, such as the reset rate limit,
     * keeps the connection while streams are open): it is cut off. */
    conn_t *c = user;
    c->close_written = true;
    return 0;
  }
  if (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) {
    /* Pings after a response are not abuse (ping policing). */
    conn_t *c = user;
    c->ping_strikes = 0;
    c->last_ping_recv = 0;
  }
  if (f->hd.type == NGHTTP2_GOAWAY &&
      f->goaway.last_stream_id == (int32_t)0x7fffffff) {
    conn_t *c = user;
    if (c->goaway_phase == 1 &&
        nghttp2_submit_ping(session, NGHTTP2_FLAG_NONE, drain_ping) != 0)
      final_goaway(c);
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  usc_h2_call_t *call = stream_call(session, f->hd.stream_id);
  if (call != NULL && call->reset_after_trailers) {
    call->reset_after_trailers = false;
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                              call->reset_code);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user) {
  (void)error_code;
  (void)user;
  usc_h2_call_t *call = stream_call(session, stream_id);
  if (call == NULL)
    return 0;
  nghttp2_session_set_stream_user_data(session, stream_id, NULL);
  call_cancel(call, USC_GRPC_CANCELLED);
  conn_t *c = call->conn;
  call_free(call);
  if (c->draining && c->calls == NULL)
    mark_dirty(c);
  return 0;
}

/* ---- connections ---- */

static void on_alloc(uv_handle_t *handle, size_t hint, uv_buf_t *buf) {
  conn_t *c = handle->data;
  (void)hint;
  *buf = uv_buf_init((char *)c->server->read_buffer, READ_BUFFER_SIZE);
}

static void recv_plaintext(conn_t *c, const uint8_t *data, size_t len) {
  ssize_t rc = nghttp2_session_mem_recv(c->session, data, len);
  if (rc < 0) {
    /* Send whatever GOAWAY nghttp2 queued, then drop the peer. */
    c->draining = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    nghttp2_session_terminate_session(c->session, NGHTTP2_PROTOCOL_ERROR);
  }
}

static void handshake_failed(conn_t *c, const char *why) {
  c->server->tls_handshake_failures++;
  usc_log(USC_LOG_DEBUG, "TLS handshake failed", "peer=%s reason=%s", c->peer,
          why);
}

/* Writes what is pending (an alert, perhaps), then closes. */
static void tls_failed(conn_t *c, bool was_established) {
  const char *why = usc_tls_failure(c->tls);
  if (why == NULL)
    why = "too many TLS records waiting for the peer to read";
  if (was_established)
    usc_log(USC_LOG_DEBUG, "TLS connection failed", "peer=%s reason=%s",
            c->peer, why);
  else
    handshake_failed(c, why);
  c->close_written = true;
  uv_read_stop((uv_stream_t *)&c->tcp);
}

static void read_tls(conn_t *c, const uint8_t *data, size_t len) {
  usc_h2_server_t *s = c->server;
  bool was_established = usc_tls_established(c->tls);
  s->tls_plain.len = 0;
  int rc = usc_tls_feed(c->tls, data, len, &s->tls_plain, &c->tls_pending);
  if (rc != 0 || c->tls_pending.len > TLS_PENDING_CAP) {
    tls_failed(c, was_established);
    return;
  }
  if (!was_established && usc_tls_established(c->tls)) {
    c->handshake_due = 0;
    conn_schedule(c);
    usc_log(USC_LOG_DEBUG, "TLS connection", "peer=%s version=%s cipher=%s",
            c->peer, usc_tls_version(c->tls), usc_tls_cipher(c->tls));
  }
  if (s->tls_plain.len > 0)
    recv_plaintext(c, s->tls_plain.data, s->tls_plain.len);
  if (usc_tls_peer_closed(c->tls))
    conn_close(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (nread > 0)
    c->last_read = uv_now(c->server->loop);
  if (c->tls != NULL)
    read_tls(c, (const uint8_t *)buf->base, (size_t)nread);
  else
    recv_plaintext(c, (const uint8_t *)buf->base, (size_t)nread);
  mark_dirty(c);
}

/* Every handle's close callback ends here; the last one of a closing
 * server frees it. */
static void handle_closed(usc_h2_server_t *s) {
  if (--s->open_handles > 0 || !s->closing)
    return;
  void (*on_closed)(void *) = s->on_closed;
  void *closed_user = s->closed_user;
  usc_free(s);
  if (on_closed != NULL)
    on_closed(closed_user);
}

static void on_conn_closed(uv_handle_t *handle) {
  conn_t *c = handle->data;
  usc_h2_server_t *s = c->server;
  usc_free(c->unsent);
  usc_free(c);
  handle_closed(s);
}

static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  usc_h2_server_t *s = c->server;
  while (c->calls != NULL) {
    usc_h2_call_t *call = c->calls;
    call_cancel(call, s->closing ? USC_GRPC_UNAVAILABLE : USC_GRPC_CANCELLED);
    call_free(call);
  }
  nghttp2_session_del(c->session);
  c->session = NULL;
  usc_tls_free(c->tls);
  c->tls = NULL;
  usc_tls_buf_free(&c->tls_pending);
  usc_heap_remove(&s->conn_timers, &c->timer);
  s->n_conns--;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  usc_net_batch_unmark(&s->flusher, &c->dirty);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static int conn_session(conn_t *c) {
  usc_h2_server_t *s = c->server;
  if (nghttp2_session_server_new2(&c->session, s->callbacks, c, s->option))
    return USC_ERR_NOMEM;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
       s->config.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, header_list_limit(s)},
  };
  if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings,
                              USC_ARRAY_LEN(settings)) != 0)
    return USC_ERR_NOMEM;
  return 0;
}

static void accept_one(usc_h2_server_t *s);

/* A connection that waited for the spare is taken now: it may find memory
 * this time. */
static void on_spare_free(usc_net_spare_t *spare, bool waiting) {
  usc_h2_server_t *s = spare->data;
  if (waiting && s->listening)
    accept_one(s);
  handle_closed(s);
}

/* Without an accept libuv would poll the listener no more: see net.h. */
static void refuse_connection(usc_h2_server_t *s) {
  if (usc_net_spare_refuse(&s->spare))
    s->open_handles++;
}

/* The connection accepted first of those that have not sent their
 * preface yet and have nothing unread (a preface may be waiting behind
 * a burst of new connections accepted in one go), or NULL. */
static conn_t *oldest_without_preface(usc_h2_server_t *s) {
  conn_t *c = s->conns; /* newest first */
  while (c != NULL && c->next != NULL)
    c = c->next;
  for (; c != NULL; c = c->prev)
    if (c->preface_due != 0 && !usc_net_input_waiting(&c->tcp))
      return c;
  return NULL;
}

static void accept_one(usc_h2_server_t *s) {
  if (s->config.max_connections != 0 &&
      s->n_conns >= s->config.max_connections) {
    /* Connections that never send a preface must not lock the others
     * out: the oldest of them makes room. */
    conn_t *idle = oldest_without_preface(s);
    if (idle == NULL) {
      refuse_connection(s);
      return;
    }
    conn_close(idle);
  }
  conn_t *c = usc_calloc(1, sizeof(*c));
  if (c == NULL) {
    refuse_connection(s);
    return;
  }
  c->server = s;
  uv_tcp_init(s->loop, &c->tcp);
  c->tcp.data = c;
  s->open_handles++;
  s->n_conns++;
  c->next = s->conns;
  if (s->conns != NULL)
    s->conns->prev = c;
  s->conns = c;
  uint64_t now = uv_now(s->loop);
  c->last_read = c->idle_since = now;
  c->preface_due = now + (s->config.handshake_timeout_ms != 0
                              ? s->config.handshake_timeout_ms
                              : DEFAULT_HANDSHAKE_TIMEOUT_MS);
  if (s->config.max_connection_age_ms != 0)
    c->age_due = now + jittered(s, s->config.max_connection_age_ms);
  if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0 ||
      conn_session(c) != 0 ||
      (s->config.tls != NULL && usc_tls_new(s->config.tls, &c->tls) != 0) ||
      usc_heap_reserve(&s->conn_timers, s->n_conns) != 0) {
    conn_close(c);
    return;
  }
  if (c->tls != NULL)
    c->handshake_due = now + (s->config.tls_handshake_timeout_ms != 0
                                  ? s->config.tls_handshake_timeout_ms
                                  : DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS);
  uv_tcp_nodelay(&c->tcp, 1);
  usc_net_peername(&c->tcp, c->peer, sizeof(c->peer));
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  conn_schedule(c);
  mark_dirty(c);
}

static void on_connection(uv_stream_t *listener, int status) {
  usc_h2_server_t *s = listener->data;
  if (status < 0 || s->closing)
    return;
  accept_one(s);
}

/* ---- server ---- */

static int make_callbacks(usc_h2_server_t *s) {
  if (nghttp2_session_callbacks_new(&s->callbacks) != 0)
    return USC_ERR_NOMEM;
  nghttp2_session_callbacks *cb = s->callbacks;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
  if (nghttp2_option_new(&s->option) != 0)
    return USC_ERR_NOMEM;
  nghttp2_option *o = s->option;
  size_t continuations = header_list_limit(s) / DEFAULT_FRAME_SIZE;
  nghttp2_option_set_stream_reset_rate_limit(o, RESET_BURST, RESET_RATE_PER_S);
  nghttp2_option_set_max_outbound_ack(o, MAX_OUTBOUND_ACK);
  nghttp2_option_set_max_settings(o, MAX_SETTINGS_ENTRIES);
  nghttp2_option_set_max_continuations(
      o, continuations > MIN_CONTINUATIONS ? continuations : MIN_CONTINUATIONS);
  return 0;
}

static void init_handles(usc_h2_server_t *s) {
  uv_tcp_init(s->loop, &s->listener);
  usc_net_batch_init(&s->flusher, s->loop, on_flush, s);
  uv_timer_init(s->loop, &s->deadline_timer);
  uv_timer_init(s->loop, &s->conn_timer);
  s->listener.data = s->deadline_timer.data = s->conn_timer.data = s;
  /* the listener, the flusher's two, the two timers */
  s->open_handles = 5;
  s->rng = uv_hrtime() | 1;
  usc_net_spare_init(&s->spare, &s->listener, on_spare_free, s);
}

static int listen_on(usc_h2_server_t *s, const char *host, int port,
                     char *error, size_t error_cap) {
  int rc = usc_net_listen(&s->listener, host, port, 1024, on_connection, error,
                          error_cap);
  if (rc != 0)
    return rc;
  s->listening = true;
  usc_net_sockname(&s->listener, s->address, sizeof(s->address));
  return 0;
}

static void on_server_handle_closed(uv_handle_t *handle) {
  handle_closed(handle->data);
}

static void server_free(usc_h2_server_t *s) {
  usc_free(s->inflate_buf);
  s->inflate_buf = NULL;
  usc_free(s->pack_buf);
  s->pack_buf = NULL;
  usc_free(s->out_buf);
  s->out_buf = NULL;
  usc_tls_buf_free(&s->tls_plain);
  usc_tls_buf_free(&s->tls_out);
  usc_heap_free(&s->conn_timers);
  while (s->pool != NULL) {
    usc_h2_call_t *call = s->pool;
    s->pool = call->next_in_conn;
    usc_free(call->path.data);
    usc_free(call->headers.data);
    usc_free(call->initial.data);
    usc_free(call->trailers.data);
    usc_free(call->out);
    usc_free(call);
  }
  usc_heap_free(&s->deadlines);
  nghttp2_session_callbacks_del(s->callbacks);
  nghttp2_option_del(s->option);
}

static void close_server_handles(usc_h2_server_t *s) {
  if (s->listening || !uv_is_closing((uv_handle_t *)&s->listener)) {
    s->listening = false;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
  }
  usc_net_batch_close(&s->flusher, on_server_handle_closed);
  uv_close((uv_handle_t *)&s->deadline_timer, on_server_handle_closed);
  uv_close((uv_handle_t *)&s->conn_timer, on_server_handle_closed);
}

int usc_h2_server_start(uv_loop_t *loop, const usc_h2_server_config_t *config,
                        const char *host, int port, usc_h2_server_t **out,
                        char *error, size_t error_cap) {
  usc_h2_server_t *s = usc_calloc(1, sizeof(*s));
  if (s == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  s->loop = loop;
  s->config = *config;
  if (make_callbacks(s) != 0) {
    snprintf(error, error_cap, "out of memory");
    server_free(s);
    usc_free(s);
    return USC_ERR_NOMEM;
  }
  init_handles(s);
  int rc = listen_on(s, host, port, error, error_cap);
  if (rc != 0) {
    /* The handles close on the next loop turn; the server goes with them. */
    s->closing = true;
    server_free(s);
    close_server_handles(s);
    return rc;
  }
  *out = s;
  return 0;
}

const char *usc_h2_server_address(const usc_h2_server_t *server) {
  return server->address;
}

size_t usc_h2_server_active_calls(const usc_h2_server_t *server) {
  return server->active_calls;
}

size_t usc_h2_server_connections(const usc_h2_server_t *server) {
  return server->n_conns;
}

uint64_t usc_h2_server_tls_handshake_failures(const usc_h2_server_t *server) {
  return server->tls_handshake_failures;
}

void usc_h2_server_drain(usc_h2_server_t *s) {
  if (s->listening) {
    s->listening = false;
    uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
  }
  for (conn_t *c = s->conns; c != NULL; c = c->next)
    start_goaway(c);
}

void usc_h2_server_close(usc_h2_server_t *s, void (*on_closed)(void *),
                         void *closed_user) {
  s->closing = true;
  while (s->conns != NULL)
    conn_close(s->conns);
  server_free(s);
  s->on_closed = on_closed;
  s->closed_user = closed_user;
  close_server_handles(s);
}
