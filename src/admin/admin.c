#include "src/admin/admin.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "src/base/base.h"
#include "src/net/net.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define MAX_HEADERS 64
#define HEADER_OVERHEAD 4 /* ": " and CRLF, charged per header */
/* Pipelined input buffered while a request is held; past it the socket is
 * not read until the buffer drains to half. */
#define INPUT_HIGH_WATER (64 * 1024)
/* Output not yet written past which no further request is started. */
#define OUTPUT_HIGH_WATER (256 * 1024)
/* Request and output buffers above these sizes are freed after use
 * rather than kept for the next request. */
#define KEEP_REQUEST_BUFFER (64 * 1024)
#define KEEP_OUTPUT_BUFFER (256 * 1024)

#define DEFAULT_MAX_CONNECTIONS 256
#define DEFAULT_MAX_HEADER_BYTES (16 * 1024)
#define DEFAULT_MAX_BODY_BYTES (1024 * 1024)
#define DEFAULT_IDLE_TIMEOUT_MS 30000
#define DEFAULT_READ_TIMEOUT_MS 10000
#define DEFAULT_LINGER_MS 2000

typedef struct {
  char *data;
  size_t len;
  size_t cap;
} buf_t;

typedef enum {
  ST_IDLE,    /* between requests; the idle timer runs */
  ST_READING, /* a request has begun; the read timer runs */
  ST_PENDING, /* the handler holds the request; the parser is paused */
  ST_CLOSING, /* the last response is queued; input is discarded */
} conn_state_t;

/* Which part of the request head the parser callbacks are filling. */
typedef enum { H_URL, H_FIELD, H_VALUE, H_DONE } head_state_t;

typedef struct conn conn_t;

struct usc_admin_req {
  void *user;
  usc_admin_request_t view;
};

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  http_parser parser;
  usc_admin_server_t *server;
  conn_t *next;
  conn_t *prev;
  conn_state_t state;
  head_state_t hstate;
  int handles;      /* of tcp and timer, still open */
  int error_status; /* set by a parser callback that refuses the request */
  bool closed;
  bool writing;
  bool shut;
  bool read_stopped;
  bool keep_alive;
  bool is_head;
  bool expect_continue;
  size_t header_bytes;
  size_t n_headers;
  size_t value_off;
  size_t name_off[MAX_HEADERS]; /* offsets into head: pointers would move */
  usc_admin_header_t headers[MAX_HEADERS];
  buf_t head; /* "target\0" then "name\0value\0" per header */
  buf_t body;
  buf_t in; /* received, not parsed yet (from in_off) */
  size_t in_off;
  buf_t out;  /* responses queued this loop turn */
  buf_t wbuf; /* responses being written */
  usc_admin_req_t req;
  usc_net_mark_t dirty; /* to parse and write this loop turn */
  char peer[USC_NET_ADDRESS_SIZE];
};

struct usc_admin_server {
  uv_loop_t *loop;
  usc_admin_config_t config;
  uv_tcp_t listener;
  usc_net_batch_t flusher; /* runs each dirty connection once a turn */
  /* Accepts connections that are refused (over the limit, or no memory)
   * only to close them. */
  usc_net_spare_t spare;
  conn_t *conns;
  size_t n_conns;
  size_t pending;
  int open_handles;
  bool listener_open;
  bool draining;
  bool closing;
  time_t date_sec;
  char date[64];
  char address[USC_NET_ADDRESS_SIZE];
  void (*on_closed)(void *);
  void *closed_user;
  char read_buffer[READ_BUFFER_SIZE];
};

typedef struct {
  int status;
  const char *content_type;
  const usc_admin_header_t *headers;
  size_t n_headers;
  const void *body;
  size_t len;
  bool close;
  bool head;
} response_t;

/* ---- buffers ---- */

static int buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap)
    return 0;
  char *grown = usc_grow(b->data, &b->cap, b->len + extra, 1024);
  if (grown == NULL)
    return USC_ERR_NOMEM;
  b->data = grown;
  return 0;
}

/* Appends into space already reserved. */
static void buf_put(buf_t *b, const void *data, size_t len) {
  if (len > 0)
    memcpy(b->data + b->len, data, len);
  b->len += len;
}

static void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static int buf_append(buf_t *b, const void *data, size_t len) {
  if (buf_reserve(b, len) != 0)
    return USC_ERR_NOMEM;
  buf_put(b, data, len);
  return 0;
}

/* Empties the buffer, keeping its memory unless it grew past `keep`. */
static void buf_recycle(buf_t *b, size_t keep) {
  if (b->cap > keep) {
    usc_free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
  b->len = 0;
}

/* ---- the Date header, formatted once a second ---- */

static const char *http_date(usc_admin_server_t *s) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                  "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(NULL);
  struct tm tm;
  if (now == s->date_sec || gmtime_r(&now, &tm) == NULL)
    return s->date;
  s->date_sec = now;
  /* Not strftime: %a and %b follow the locale. */
  snprintf(s->date, sizeof(s->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
           days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return s->date;
}

/* ---- responses ---- */

static const char *reason_phrase(int status) {
  const char *reason = http_status_str((enum http_status)status);
  return reason[0] == '<' ? "" : reason; /* "<unknown>" */
}

static bool is_token(const char *s) {
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if (*s == '\0')
    return false;
  for (; *s != '\0'; s++) {
    unsigned char ch = (unsigned char)*s;
    bool alnum = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                 (ch >= 'A' && ch <= 'Z');
    if (!alnum && strchr(extra, ch) == NULL)
      return false;
  }
  return true;
}

/* Anything but control characters (tab allowed): no header injection. */
static bool is_field_value(const char *s) {
  for (; *s != '\0'; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return false;
  }
  return true;
}

/* Headers the server writes itself; a second copy would break framing. */
static bool is_reserved(const char *name) {
  return strcasecmp(name, "content-length") == 0 ||
         strcasecmp(name, "transfer-encoding") == 0 ||
         strcasecmp(name, "connection") == 0;
}

static int check_response(const response_t *r) {
  if (r->status < 200 || r->status > 599)
    return USC_ERR_INVALID;
  if (r->content_type != NULL && !is_field_value(r->content_type))
    return USC_ERR_INVALID;
  if ((r->n_headers > 0 && r->headers == NULL) ||
      (r->len > 0 && r->body == NULL))
    return USC_ERR_INVALID;
  for (size_t i = 0; i < r->n_headers; i++) {
    const usc_admin_header_t *h = &r->headers[i];
    if (h->name == NULL || h->value == NULL || !is_token(h->name) ||
        is_reserved(h->name) || !is_field_value(h->value))
      return USC_ERR_INVALID;
  }
  return 0;
}

static bool sends_body(const response_t *r) {
  return !r->head && r->status != 204 && r->status != 304;
}

static size_t header_size(const char *name, const char *value) {
  return strlen(name) + strlen(value) + 4;
}

static void put_header(buf_t *b, const char *name, const char *value) {
  buf_puts(b, name);
  buf_puts(b, ": ");
  buf_puts(b, value);
  buf_puts(b, "\r\n");
}

static size_t optional_headers_size(const response_t *r) {
  size_t n = 0;
  if (r->content_type != NULL)
    n += header_size("Content-Type", r->content_type);
  for (size_t i = 0; i < r->n_headers; i++)
    n += header_size(r->headers[i].name, r->headers[i].value);
  return n;
}

static void mark_dirty(conn_t *c);

/* Appends a whole response to the connection's output (reserved at once,
 * so nothing is appended on failure). */
static int write_response(conn_t *c, const response_t *r) {
  char line[160];
  char length[48] = "";
  int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\nDate: %s\r\n",
                   r->status, reason_phrase(r->status), http_date(c->server));
  if (r->status != 204) /* RFC 9110, 8.6: never in a 204 */
    snprintf(length, sizeof(length), "Content-Length: %zu\r\n", r->len);
  const char *connection = r->close ? "close" : "keep-alive";
  size_t body_len = sends_body(r) ? r->len : 0;
  size_t total = (size_t)n + strlen(length) +
                 header_size("Connection", connection) +
                 optional_headers_size(r) + 2 + body_len;
  if (buf_reserve(&c->out, total) != 0)
    return USC_ERR_NOMEM;
  buf_put(&c->out, line, (size_t)n);
  buf_puts(&c->out, length);
  put_header(&c->out, "Connection", connection);
  if (r->content_type != NULL)
    put_header(&c->out, "Content-Type", r->content_type);
  for (size_t i = 0; i < r->n_headers; i++)
    put_header(&c->out, r->headers[i].name, r->headers[i].value);
  buf_puts(&c->out, "\r\n");
  buf_put(&c->out, r->body, body_len);
  mark_dirty(c);
  return 0;
}

/* ---- connection output: gathered, one write per loop turn ---- */

static void mark_dirty(conn_t *c) {
  if (!c->closed)
    usc_net_batch_mark(&c->server->flusher, &c->dirty);
}

static void conn_close(conn_t *c);
static void set_timer(conn_t *c, uint64_t ms);

static void on_shutdown(uv_shutdown_t *req, int status) {
  if (status < 0)
    conn_close(req->data);
}

/* After the last response: FIN to the peer, then keep reading (and
 * discarding) until it closes, so that a request it was still sending does
 * not make our kernel answer with a reset that could destroy the response
 * in flight. The linger timer bounds the wait. */
static void shut_down(conn_t *c) {
  if (c->shut)
    return;
  c->shut = true;
  set_timer(c, c->server->config.limits.linger_ms);
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
    conn_close(c);
}

static void on_write_done(uv_write_t *req, int status) {
  conn_t *c = req->data;
  c->writing = false;
  buf_recycle(&c->wbuf, KEEP_OUTPUT_BUFFER);
  if (status < 0) {
    conn_close(c);
    return;
  }
  /* Room again: requests held back by OUTPUT_HIGH_WATER may go on. */
  mark_dirty(c);
}

static void conn_flush(conn_t *c) {
  if (c->closed || c->writing)
    return;
  if (c->out.len == 0) {
    if (c->state == ST_CLOSING)
      shut_down(c);
    return;
  }
  /* Swap so responses queued during this write gather in the other. */
  buf_t written = c->out;
  c->out = c->wbuf;
  c->wbuf = written;
  uv_buf_t buf = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
  c->write_req.data = c;
  if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_write_done) !=
      0) {
    conn_close(c);
    return;
  }
  c->writing = true;
}

/* ---- connection states and timers ---- */

static void refuse(conn_t *c, int status);

static void on_timer(uv_timer_t *timer) {
  conn_t *c = timer->data;
  if (c->state == ST_READING)
    refuse(c, 408);
  else
    conn_close(c); /* idle too long, or lingering done */
}

static void set_timer(conn_t *c, uint64_t ms) {
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void resume_reading(conn_t *c);

static void enter_idle(conn_t *c) {
  c->state = ST_IDLE;
  set_timer(c, c->server->config.limits.idle_timeout_ms);
}

static void enter_closing(conn_t *c) {
  c->state = ST_CLOSING;
  /* Until the last response is out; shut_down then waits linger_ms. */
  set_timer(c, c->server->config.limits.idle_timeout_ms);
  if (c->read_stopped)
    resume_reading(c); /* to see the peer's EOF while lingering */
  mark_dirty(c);
}

/* An error response from the server itself; the connection closes. */
static void refuse(conn_t *c, int status) {
  char body[256];
  size_t len = 0;
  const char *content_type = "text/plain; charset=utf-8";
  const usc_admin_config_t *config = &c->server->config;
  if (config->refusal != NULL)
    content_type =
        config->refusal(config->user, status, body, sizeof(body), &len);
  else
    len = (size_t)snprintf(body, sizeof(body), "%s\n", reason_phrase(status));
  response_t r = {.status = status,
                  .content_type = content_type,
                  .body = body,
                  .len = len < sizeof(body) ? len : sizeof(body),
                  .close = true,
                  .head = c->is_head};
  if (write_response(c, &r) != 0) {
    conn_close(c);
    return;
  }
  enter_closing(c);
}

/* ---- request head and body: http-parser callbacks ---- */

static void reset_request(conn_t *c) {
  c->head.len = 0;
  c->body.len = 0;
  c->n_headers = 0;
  c->header_bytes = 0;
  c->hstate = H_URL;
  c->error_status = 0;
  c->keep_alive = false;
  c->is_head = false;
  c->expect_continue = false;
}

static int refuse_later(conn_t *c, int status) {
  c->error_status = status;
  return -1;
}

static int on_message_begin(http_parser *p) {
  conn_t *c = p->data;
  reset_request(c);
  c->state = ST_READING;
  set_timer(c, c->server->config.limits.read_timeout_ms);
  return 0;
}

/* Bytes of the request head, counted against the limit. */
static int head_bytes(conn_t *c, const char *at, size_t len) {
  c->header_bytes += len;
  if (c->header_bytes > c->server->config.limits.max_header_bytes)
    return refuse_later(c, 431);
  if (buf_append(&c->head, at, len) != 0)
    return refuse_later(c, 500);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  c->is_head = p->method == HTTP_HEAD;
  return head_bytes(c, at, len);
}

static void end_value(conn_t *c) {
  /* http-parser drops leading whitespace but keeps trailing. */
  while (c->head.len > c->value_off && (c->head.data[c->head.len - 1] == ' ' ||
                                        c->head.data[c->head.len - 1] == '\t'))
    c->head.len--;
  const char *name = c->head.data + c->name_off[c->n_headers - 1];
  size_t value_len = c->head.len - c->value_off;
  if (strcmp(name, "expect") == 0 && value_len == 12 &&
      strncasecmp(c->head.data + c->value_off, "100-continue", 12) == 0)
    c->expect_continue = true;
}

/* Terminates the target, name or value being received. */
static int end_piece(conn_t *c) {
  if (c->hstate == H_DONE)
    return 0;
  if (c->hstate == H_VALUE)
    end_value(c);
  /* "\0" is two NULs: a name still open also gets an empty value. */
  size_t nuls = c->hstate == H_FIELD ? 2 : 1;
  if (buf_append(&c->head, "\0", nuls) != 0)
    return refuse_later(c, 500);
  return 0;
}

/* Trailers of a chunked body are counted against the limit, not kept. */
static int count_trailer(conn_t *c, size_t len) {
  c->header_bytes += len;
  if (c->header_bytes > c->server->config.limits.max_header_bytes)
    return refuse_later(c, 431);
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  if (c->hstate == H_DONE)
    return count_trailer(c, len + HEADER_OVERHEAD);
  if (c->hstate != H_FIELD) {
    if (end_piece(c) != 0)
      return -1;
    if (c->n_headers == MAX_HEADERS)
      return refuse_later(c, 431);
    c->name_off[c->n_headers++] = c->head.len;
    c->header_bytes += HEADER_OVERHEAD;
    c->hstate = H_FIELD;
  }
  size_t start = c->head.len;
  if (head_bytes(c, at, len) != 0)
    return -1;
  for (size_t i = start; i < c->head.len; i++) {
    char ch = c->head.data[i];
    if (ch >= 'A' && ch <= 'Z')
      c->head.data[i] = (char)(ch - 'A' + 'a');
  }
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  if (c->hstate == H_DONE)
    return count_trailer(c, len);
  if (c->hstate == H_FIELD) {
    if (buf_append(&c->head, "", 1) != 0)
      return refuse_later(c, 500);
    c->value_off = c->head.len;
    c->hstate = H_VALUE;
  }
  return head_bytes(c, at, len);
}

static bool body_expected(const http_parser *p) {
  return (p->flags & F_CHUNKED) ||
         ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
}

static int on_headers_complete(http_parser *p) {
  conn_t *c = p->data;
  const usc_admin_limits_t *limits = &c->server->config.limits;
  if (end_piece(c) != 0)
    return -1;
  c->hstate = H_DONE;
  if (p->http_major != 1)
    return refuse_later(c, 505);
  if (p->upgrade) /* Upgrade with "Connection: upgrade", or CONNECT */
    return refuse_later(c, 501);
  if ((p->flags & F_CONTENTLENGTH) &&
      p->content_length > limits->max_body_bytes)
    return refuse_later(c, 413);
  c->keep_alive = http_should_keep_alive(p) != 0;
  /* HTTP/1.0 clients do not know 100 Continue (RFC 9110, 10.1.1). */
  if (c->expect_continue && p->http_minor >= 1 && body_expected(p)) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (buf_append(&c->out, cont, sizeof(cont) - 1) != 0)
      return refuse_later(c, 500);
    mark_dirty(c);
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  if (c->body.len + len > c->server->config.limits.max_body_bytes)
    return refuse_later(c, 413);
  if (buf_append(&c->body, at, len) != 0)
    return refuse_later(c, 500);
  return 0;
}

/* The request is handed over outside the parser (see consume), so that a
 * handler answering at once never runs inside http_parser_execute. */
static int on_message_complete(http_parser *p) {
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- handing requests over ---- */

static void fill_view(conn_t *c) {
  usc_admin_request_t *v = &c->req.view;
  for (size_t i = 0; i < c->n_headers; i++) {
    const char *name = c->head.data + c->name_off[i];
    c->headers[i] = (usc_admin_header_t){name, name + strlen(name) + 1};
  }
  v->method = http_method_str((enum http_method)c->parser.method);
  v->target = c->head.data;
  v->target_len = strlen(v->target);
  v->headers = c->headers;
  v->n_headers = c->n_headers;
  v->body =
      c->body.len > 0 ? (const uint8_t *)c->body.data : (const uint8_t *)"";
  v->body_len = c->body.len;
  v->peer = c->peer;
  v->http_minor = c->parser.http_minor;
}

static void dispatch(conn_t *c) {
  usc_admin_server_t *s = c->server;
  uv_timer_stop(&c->timer);
  c->state = ST_PENDING;
  s->pending++;
  c->req.user = NULL;
  fill_view(c);
  s->config.handler->on_request(s->config.user, &c->req, &c->req.view);
}

/* The response is queued (or failed): the request's memory may go, and
 * the caller picks the next state. */
static void end_request(conn_t *c) {
  c->server->pending--;
  c->state = ST_IDLE;
  buf_recycle(&c->head, KEEP_REQUEST_BUFFER);
  buf_recycle(&c->body, KEEP_REQUEST_BUFFER);
  memset(&c->req, 0, sizeof(c->req));
}

/* ---- request input ---- */

/* Whether a request may be parsed now: one at a time, and not while a
 * client that does not read its responses lets them pile up. */
static bool can_parse(const conn_t *c) {
  if (c->closed)
    return false;
  if (c->state == ST_READING)
    return true;
  return c->state == ST_IDLE && c->out.len + c->wbuf.len < OUTPUT_HIGH_WATER;
}

static int refusal_status(const conn_t *c, enum http_errno err) {
  if (c->error_status != 0)
    return c->error_status;
  return err == HPE_HEADER_OVERFLOW ? 431 : 400;
}

/* Parses and hands over requests from `data` while the connection may
 * take them; returns how many bytes were used (all of them once the
 * connection refused a request). */
static size_t consume(conn_t *c, const char *data, size_t len) {
  size_t used = 0;
  while (used < len && can_parse(c)) {
    http_parser_pause(&c->parser, 0);
    size_t n = http_parser_execute(&c->parser, &parser_settings, data + used,
                                   len - used);
    used += n;
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (err == HPE_PAUSED) {
      dispatch(c);
    } else if (err != HPE_OK || used < len) {
      /* The parser stops early without an error only for an upgrade,
       * which on_headers_complete refuses; never trust the rest. */
      refuse(c, refusal_status(c, err));
      return len;
    }
  }
  return used;
}

static int in_append(conn_t *c, const char *data, size_t len) {
  if (c->in_off > 0) {
    memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in.len -= c->in_off;
    c->in_off = 0;
  }
  return buf_append(&c->in, data, len);
}

/* Parses what was buffered while a request was held. */
static void conn_advance(conn_t *c) {
  if (c->in.len == c->in_off || !can_parse(c))
    return;
  size_t used = consume(c, c->in.data + c->in_off, c->in.len - c->in_off);
  if (c->closed)
    return;
  c->in_off += used;
  if (c->in_off == c->in.len)
    c->in.len = c->in_off = 0;
  if (c->read_stopped && c->in.len - c->in_off < INPUT_HIGH_WATER / 2)
    resume_reading(c);
}

static void receive(conn_t *c, const char *data, size_t len) {
  if (c->in.len == c->in_off && can_parse(c)) {
    /* The common case: parse straight from the shared read buffer. */
    size_t used = consume(c, data, len);
    if (c->closed || c->state == ST_CLOSING || used == len)
      return;
    data += used;
    len -= used;
  }
  if (in_append(c, data, len) != 0) {
    conn_close(c);
    return;
  }
  if (c->in.len - c->in_off >= INPUT_HIGH_WATER) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->read_stopped = true;
  }
  conn_advance(c);
}

static void on_alloc(uv_handle_t *handle, size_t hint, uv_buf_t *buf) {
  conn_t *c = handle->data;
  (void)hint;
  *buf = uv_buf_init(c->server->read_buffer, READ_BUFFER_SIZE);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread < 0) {
    /* EOF or error. A half-closing client is taken as gone: HTTP/1.1
     * clients do not half-close while waiting for an answer. */
    conn_close(c);
    return;
  }
  if (nread == 0 || c->state == ST_CLOSING)
    return;
  receive(c, buf->base, (size_t)nread);
}

static void resume_reading(conn_t *c) {
  c->read_stopped = false;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    conn_close(c);
}

/* ---- connections ---- */

static void handle_closed(usc_admin_server_t *s);

static void on_conn_handle_closed(uv_handle_t *handle) {
  conn_t *c = handle->data;
  usc_admin_server_t *s = c->server;
  if (--c->handles == 0) {
    usc_free(c->head.data);
    usc_free(c->body.data);
    usc_free(c->in.data);
    usc_free(c->out.data);
    usc_free(c->wbuf.data);
    usc_free(c);
  }
  handle_closed(s);
}

static void conn_unlink(conn_t *c) {
  usc_admin_server_t *s = c->server;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  s->n_conns--;
  usc_net_batch_unmark(&s->flusher, &c->dirty);
}

/* Closes the connection; a request the handler holds is cancelled, last,
 * so that a handler closing the server from on_cancel finds this one
 * gone already. */
static void conn_close(conn_t *c) {
  if (c->closed)
    return;
  usc_admin_server_t *s = c->server;
  bool was_pending = c->state == ST_PENDING;
  c->closed = true;
  c->state = ST_CLOSING;
  conn_unlink(c);
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
  if (was_pending) {
    s->pending--;
    s->config.handler->on_cancel(s->config.user, &c->req);
  }
}

static conn_t *conn_new(usc_admin_server_t *s) {
  conn_t *c = usc_calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->server = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles = 2;
  s->open_handles += 2;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->next = s->conns;
  if (s->conns != NULL)
    s->conns->prev = c;
  s->conns = c;
  s->n_conns++;
  return c;
}

static void accept_one(usc_admin_server_t *s);

/* A connection that waited for the spare is taken now: it may find room
 * or memory this time. */
static void on_spare_free(usc_net_spare_t *spare, bool waiting) {
  usc_admin_server_t *s = spare->data;
  if (waiting && s->listener_open)
    accept_one(s);
  handle_closed(s);
}

static void refuse_connection(usc_admin_server_t *s) {
  if (usc_net_spare_refuse(&s->spare))
    s->open_handles++;
}

static void accept_one(usc_admin_server_t *s) {
  conn_t *c = NULL;
  if (s->n_conns < s->config.limits.max_connections)
    c = conn_new(s);
  if (c == NULL) {
    refuse_connection(s);
    return;
  }
  if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  usc_net_peername(&c->tcp, c->peer, sizeof(c->peer));
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  enter_idle(c);
}

static void on_connection(uv_stream_t *listener, int status) {
  usc_admin_server_t *s = listener->data;
  if (status < 0 || s->closing)
    return;
  accept_one(s);
}

/* ---- the request handle ---- */

int usc_admin_respond(usc_admin_req_t *req, int status,
                      const char *content_type,
                      const usc_admin_header_t *headers, size_t n_headers,
                      const void *body, size_t len) {
  conn_t *c = USC_CONTAINER_OF(req, conn_t, req);
  if (c->closed || c->state != ST_PENDING)
    return USC_ERR_STATE;
  response_t r = {.status = status,
                  .content_type = content_type,
                  .headers = headers,
                  .n_headers = n_headers,
                  .body = body,
                  .len = len,
                  .close = !c->keep_alive || c->server->draining,
                  .head = c->is_head};
  int rc = check_response(&r);
  if (rc == 0)
    rc = write_response(c, &r);
  end_request(c); /* after writing: the body may be the request's own */
  if (rc == USC_ERR_INVALID)
    refuse(c, 500);
  else if (rc != 0)
    conn_close(c);
  else if (r.close)
    enter_closing(c);
  else
    enter_idle(c);
  mark_dirty(c); /* the check phase parses what is buffered, and writes */
  return rc;
}

const usc_admin_request_t *usc_admin_req_request(const usc_admin_req_t *req) {
  return &req->view;
}

const char *usc_admin_req_header(const usc_admin_req_t *req, const char *name) {
  for (size_t i = 0; i < req->view.n_headers; i++) {
    if (strcmp(req->view.headers[i].name, name) == 0)
      return req->view.headers[i].value;
  }
  return NULL;
}

void usc_admin_req_set_user(usc_admin_req_t *req, void *user) {
  req->user = user;
}

void *usc_admin_req_user(const usc_admin_req_t *req) { return req->user; }

/* ---- server ---- */

static void on_flush(usc_net_batch_t *flusher, usc_net_mark_t *dirty) {
  conn_t *c = USC_CONTAINER_OF(dirty, conn_t, dirty);
  (void)flusher;
  conn_advance(c);
  conn_flush(c);
}

/* Every handle's close callback ends here; the last one of a closing
 * server frees it. */
static void handle_closed(usc_admin_server_t *s) {
  if (--s->open_handles > 0 || !s->closing)
    return;
  void (*on_closed)(void *) = s->on_closed;
  void *closed_user = s->closed_user;
  usc_free(s);
  if (on_closed != NULL)
    on_closed(closed_user);
}

static void on_server_handle_closed(uv_handle_t *handle) {
  handle_closed(handle->data);
}

static void stop_listening(usc_admin_server_t *s) {
  if (!s->listener_open)
    return;
  s->listener_open = false;
  uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
}

static void close_server_handles(usc_admin_server_t *s) {
  stop_listening(s);
  usc_net_batch_close(&s->flusher, on_server_handle_closed);
}

static void init_handles(usc_admin_server_t *s) {
  uv_tcp_init(s->loop, &s->listener);
  usc_net_batch_init(&s->flusher, s->loop, on_flush, s);
  s->listener.data = s;
  s->listener_open = true;
  s->open_handles = 3; /* the listener and the flusher's two */
  usc_net_spare_init(&s->spare, &s->listener, on_spare_free, s);
}

static int listen_on(usc_admin_server_t *s, const char *host, int port,
                     char *error, size_t error_cap) {
  int rc = usc_net_listen(&s->listener, host, port, 128, on_connection, error,
                          error_cap);
  if (rc == 0)
    usc_net_sockname(&s->listener, s->address, sizeof(s->address));
  return rc;
}

static void apply_defaults(usc_admin_limits_t *l) {
  if (l->max_connections == 0)
    l->max_connections = DEFAULT_MAX_CONNECTIONS;
  if (l->max_header_bytes == 0)
    l->max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
  if (l->max_body_bytes == 0)
    l->max_body_bytes = DEFAULT_MAX_BODY_BYTES;
  if (l->idle_timeout_ms == 0)
    l->idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
  if (l->read_timeout_ms == 0)
    l->read_timeout_ms = DEFAULT_READ_TIMEOUT_MS;
  if (l->linger_ms == 0)
    l->linger_ms = DEFAULT_LINGER_MS;
}

int usc_admin_server_start(uv_loop_t *loop, const usc_admin_config_t *config,
                           const char *host, int port, usc_admin_server_t **out,
                           char *error, size_t error_cap) {
  usc_admin_server_t *s = usc_calloc(1, sizeof(*s));
  if (s == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  s->loop = loop;
  s->config = *config;
  apply_defaults(&s->config.limits);
  init_handles(s);
  int rc = listen_on(s, host, port, error, error_cap);
  if (rc != 0) {
    /* The handles close on the next loop turn; the server goes with them. */
    s->closing = true;
    close_server_handles(s);
    return rc;
  }
  *out = s;
  return 0;
}

const char *usc_admin_server_address(const usc_admin_server_t *server) {
  return server->address;
}

size_t usc_admin_server_connections(const usc_admin_server_t *server) {
  return server->n_conns;
}

size_t usc_admin_server_pending(const usc_admin_server_t *server) {
  return server->pending;
}

void usc_admin_server_drain(usc_admin_server_t *s) {
  s->draining = true;
  stop_listening(s);
  conn_t *next;
  for (conn_t *c = s->conns; c != NULL; c = next) {
    next = c->next;
    if (c->state != ST_IDLE)
      continue; /* reading or held: its response will close it */
    if (c->writing || c->out.len > 0)
      enter_closing(c);
    else
      conn_close(c);
  }
}

void usc_admin_server_close(usc_admin_server_t *s, void (*on_closed)(void *),
                            void *closed_user) {
  if (s->closing)
    return;
  s->closing = true;
  s->on_closed = on_closed;
  s->closed_user = closed_user;
  while (s->conns != NULL)
    conn_close(s->conns);
  close_server_handles(s);
}
