#include "src/upstream/upstream.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "src/base/base.h"
#include "src/upstream/curl_lib.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_CONNECT_TIMEOUT_MS 3000
#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_MAX_REQUESTS 256
#define DEFAULT_MAX_CONNECTIONS 32
#define DEFAULT_USER_AGENT "uapi-sidecar"
#define MAX_TIMEOUT_MS (24 * 3600 * 1000L)
#define FIRST_BODY_CAP 1024
/* Idle requests kept for reuse, each with buffers up to this size: enough
 * for the usual JSON bodies without holding much after a burst. With 100
 * RPCs in flight a pool of 32 made a new easy handle for a quarter of the
 * requests (libcurl's handle setup and teardown in the profile); 128
 * covers that at about 25 KiB an idle handle. */
#define MAX_POOLED 128
#define POOL_KEEP_BUFFER (16 * 1024)
#define CAPTURE_CAP 2048

/* Response headers kept for the caller; the rest are not stored. */
enum { H_CONTENT_TYPE, H_RETRY_AFTER, H_LOCATION, N_CAPTURED };
static const char *const captured_names[N_CAPTURED] = {
    "content-type",
    "retry-after",
    "location",
};

typedef struct {
  char *data;
  size_t len;
  size_t cap;
} buf_t;

typedef struct sock sock_t;

/* One socket libcurl asked us to watch. Freed in its close callback: the
 * socket itself belongs to libcurl, which closes it after telling us. */
struct sock {
  uv_poll_t poll;
  usc_upstream_t *client;
  curl_socket_t fd;
  sock_t *next;
  sock_t *prev;
};

struct usc_upstream_req {
  usc_upstream_t *client;
  CURL *easy;
  struct curl_slist *headers;
  usc_upstream_req_t *next; /* in the active list, or the pool */
  usc_upstream_req_t *prev;
  usc_upstream_done_fn done;
  void *user;
  bool active;              /* in the client's active list */
  usc_heap_node_t deadline; /* key: loop time, ms */
  bool in_multi;   /* added to libcurl (not when expired before start) */
  bool completing; /* its callback has started */
  /* Set when the request must end from the loop with this error: its
   * deadline passed before it started, or its socket cannot be watched. */
  usc_upstream_error_t pending;
  bool too_large;
  bool nomem;
  buf_t url;
  buf_t line; /* scratch for "name: value" header lines */
  buf_t out;  /* request body */
  buf_t in;   /* response body */
  char captured[CAPTURE_CAP];
  size_t captured_len;
  int captured_at[N_CAPTURED]; /* offsets into captured, -1 = absent */
  char errbuf[CURL_ERROR_SIZE];
};

struct usc_upstream {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;             /* libcurl's */
  uv_timer_t deadline_timer;    /* ours: the deadline heap's first */
  usc_upstream_config_t config; /* strings point at the copies below */
  char *base_url;
  size_t base_len;
  char *ca_file;
  char *user_agent;
  bool https;
  bool closing;
  usc_upstream_req_t *active;
  size_t n_active;
  size_t n_pending; /* active requests with `pending` set */
  usc_upstream_req_t *pool;
  size_t n_pooled;
  /* Min-heap of in-flight requests by deadline, sized max_requests. It
   * backs libcurl's own timeout, which 7.88 does not apply to transfers
   * queued for a free connection. */
  usc_heap_t deadlines;
  sock_t *socks;
  int open_handles;
  void (*on_closed)(void *);
  void *closed_user;
};

/* ---- global ---- */

static bool curl_ready;
static char global_error[256];

int usc_upstream_global_init(void) {
  if (curl_ready)
    return 0;
  if (curl_lib_load(global_error, sizeof global_error) != 0)
    return USC_ERR_STATE;
  if (curl_lib.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    snprintf(global_error, sizeof global_error, "curl_global_init failed");
    return USC_ERR_STATE;
  }
  curl_ready = true;
  return 0;
}

const char *usc_upstream_global_error(void) { return global_error; }

void usc_upstream_global_cleanup(void) {
  if (!curl_ready)
    return;
  curl_lib.global_cleanup();
  curl_ready = false;
}

const char *usc_upstream_error_name(usc_upstream_error_t error) {
  static const char *const names[] = {
      "OK",        "CONNECT_FAILED", "TIMEOUT", "IO",
      "TOO_LARGE", "CANCELLED",      "NOMEM",
  };
  if ((size_t)error >= USC_ARRAY_LEN(names))
    return "UNKNOWN";
  return names[error];
}

/* ---- buffers ---- */

/* Grows `b` to hold `need` bytes, doubling but never past `limit`. */
static int buf_reserve(buf_t *b, size_t need, size_t limit) {
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : FIRST_BODY_CAP;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
  if (cap > limit)
    cap = need > limit ? need : limit;
  char *grown = usc_realloc(b->data, cap);
  if (grown == NULL)
    return USC_ERR_NOMEM;
  b->data = grown;
  b->cap = cap;
  return 0;
}

/* Sets `b` to `len` bytes plus a NUL. */
static int buf_set(buf_t *b, const void *data, size_t len) {
  if (buf_reserve(b, len + 1, SIZE_MAX) != 0)
    return USC_ERR_NOMEM;
  if (len > 0)
    memcpy(b->data, data, len);
  b->data[len] = '\0';
  b->len = len;
  return 0;
}

static int buf_cat(buf_t *b, const char *s) {
  size_t n = strlen(s);
  if (buf_reserve(b, b->len + n + 1, SIZE_MAX) != 0)
    return USC_ERR_NOMEM;
  memcpy(b->data + b->len, s, n + 1);
  b->len += n;
  return 0;
}

/* Keeps a modest buffer for the next request; frees a big one. */
static void buf_recycle(buf_t *b) {
  if (b->cap > POOL_KEEP_BUFFER) {
    usc_free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
  b->len = 0;
}

static void buf_free(buf_t *b) {
  usc_free(b->data);
  *b = (buf_t){0};
}

/* ---- validation ---- */

static bool is_url_char(unsigned char ch) {
  return ch > 0x20 && ch < 0x7f && ch != '#';
}

static bool is_token_char(unsigned char ch) {
  return ch > 0x20 && ch < 0x7f && strchr("()<>@,;:\\\"/[]?={}", ch) == NULL;
}

/* True when the path part holds a "." or ".." segment, which libcurl
 * would resolve, possibly climbing out of the base URL's prefix. */
static bool has_dot_segment(const char *path) {
  size_t end = strcspn(path, "?");
  for (size_t i = 0; i < end; i++) {
    if (path[i] != '/' || path[i + 1] != '.')
      continue;
    size_t dots = path[i + 2] == '.' ? 2 : 1;
    char after = path[i + 1 + dots];
    if (after == '/' || after == '?' || after == '\0')
      return true;
  }
  return false;
}

static bool path_ok(const char *path) {
  if (path == NULL || path[0] != '/')
    return false;
  for (const char *p = path; *p != '\0'; p++) {
    if (!is_url_char((unsigned char)*p))
      return false;
  }
  return !has_dot_segment(path);
}

static bool header_ok(const usc_upstream_header_t *h) {
  if (h->name == NULL || h->name[0] == '\0' || h->value == NULL)
    return false;
  for (const char *p = h->name; *p != '\0'; p++) {
    if (!is_token_char((unsigned char)*p))
      return false;
  }
  return strpbrk(h->value, "\r\n") == NULL;
}

static bool base_url_ok(const char *url) {
  if (url == NULL)
    return false;
  size_t scheme = strncasecmp(url, "http://", 7) == 0    ? 7
                  : strncasecmp(url, "https://", 8) == 0 ? 8
                                                         : 0;
  if (scheme == 0 || url[scheme] == '\0' || url[scheme] == '/')
    return false;
  for (const char *p = url; *p != '\0'; p++) {
    if (!is_url_char((unsigned char)*p) || *p == '?')
      return false;
  }
  /* libcurl's own parser has the last word on what it will accept. */
  CURLU *u = curl_lib.url();
  if (u == NULL)
    return false;
  bool ok = curl_lib.url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK;
  curl_lib.url_cleanup(u);
  return ok;
}

static int check_request(const usc_upstream_request_t *r) {
  if (r->done == NULL || !path_ok(r->path))
    return USC_ERR_INVALID;
  if (r->method > USC_UPSTREAM_DELETE)
    return USC_ERR_INVALID;
  if (r->body_len > 0 && (r->body == NULL || r->method == USC_UPSTREAM_GET))
    return USC_ERR_INVALID;
  if (r->n_headers > 0 && r->headers == NULL)
    return USC_ERR_INVALID;
  for (size_t i = 0; i < r->n_headers; i++) {
    if (!header_ok(&r->headers[i]))
      return USC_ERR_INVALID;
  }
  return 0;
}

/* ---- handles and closing ---- */

static void client_free(usc_upstream_t *c);

/* Every handle's close callback ends here; the last one of a closing
 * client frees it. */
static void handle_closed(usc_upstream_t *c) {
  if (--c->open_handles > 0 || !c->closing)
    return;
  void (*on_closed)(void *) = c->on_closed;
  void *closed_user = c->closed_user;
  client_free(c);
  if (on_closed != NULL)
    on_closed(closed_user);
}

static void on_sock_closed(uv_handle_t *handle) {
  sock_t *s = handle->data;
  usc_upstream_t *c = s->client;
  usc_free(s);
  handle_closed(c);
}

static void sock_close(sock_t *s) {
  usc_upstream_t *c = s->client;
  if (s->prev != NULL)
    s->prev->next = s->next;
  else
    c->socks = s->next;
  if (s->next != NULL)
    s->next->prev = s->prev;
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_timer_closed(uv_handle_t *handle) {
  handle_closed(handle->data);
}

/* ---- completion ---- */

/* True once the request was handed to the connection. libcurl stamps
 * PRETRANSFER when it leaves the DO state, where the request head (and as
 * much body as fits) is written without waiting, and counts at least 1 us
 * for a phase that happened. CONNECT_TIME cannot tell: libcurl 7.88 leaves
 * it 0 on a reused connection, and until TLS is up on a new one. */
static bool was_sent(const usc_upstream_req_t *req) {
  curl_off_t pretransfer = 0;
  curl_lib.easy_getinfo(req->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
  return pretransfer > 0;
}

static usc_upstream_error_t classify(const usc_upstream_req_t *req,
                                     CURLcode code) {
  switch (code) {
  case CURLE_OK:
    return USC_UPSTREAM_OK;
  case CURLE_FILESIZE_EXCEEDED: /* Content-Length over the cap */
    return USC_UPSTREAM_TOO_LARGE;
  case CURLE_OUT_OF_MEMORY:
    return USC_UPSTREAM_NOMEM;
  case CURLE_WRITE_ERROR: /* our body callback refused the data */
    return req->too_large ? USC_UPSTREAM_TOO_LARGE
           : req->nomem   ? USC_UPSTREAM_NOMEM
                          : USC_UPSTREAM_IO;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
    return USC_UPSTREAM_CONNECT_FAILED;
  case CURLE_OPERATION_TIMEDOUT:
    /* Before the request went out: stuck resolving, connecting, in the
     * TLS handshake or waiting for a free connection. */
    return was_sent(req) ? USC_UPSTREAM_TIMEOUT : USC_UPSTREAM_CONNECT_FAILED;
  default:
    /* Send, receive and protocol errors: part of the request may have
     * gone out, so the upstream may have acted. */
    return USC_UPSTREAM_IO;
  }
}

static const char *captured(const usc_upstream_req_t *req, int which) {
  int at = req->captured_at[which];
  return at < 0 ? NULL : req->captured + at;
}

static int http_version(const usc_upstream_req_t *req, long status) {
  long version = 0;
  if (status == 0)
    return 0;
  curl_lib.easy_getinfo(req->easy, CURLINFO_HTTP_VERSION, &version);
  switch (version) {
  case CURL_HTTP_VERSION_1_0:
    return 10;
  case CURL_HTTP_VERSION_2_0:
    return 20;
  case CURL_HTTP_VERSION_3:
    return 30;
  default:
    return 11;
  }
}

static const char *error_text(usc_upstream_req_t *req, CURLcode code,
                              usc_upstream_error_t error) {
  if (error == USC_UPSTREAM_OK)
    return "";
  if (error == USC_UPSTREAM_TOO_LARGE)
    snprintf(req->errbuf, sizeof(req->errbuf),
             "response body over the %zu-byte limit",
             req->client->config.max_body);
  else if (error == USC_UPSTREAM_NOMEM)
    snprintf(req->errbuf, sizeof(req->errbuf), "out of memory");
  return req->errbuf[0] != '\0' ? req->errbuf : curl_lib.easy_strerror(code);
}

static void fill_result(usc_upstream_req_t *req, CURLcode code,
                        usc_upstream_result_t *res) {
  long status = 0;
  curl_off_t total_us = 0;
  curl_lib.easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_lib.easy_getinfo(req->easy, CURLINFO_TOTAL_TIME_T, &total_us);
  *res = (usc_upstream_result_t){
      .error = classify(req, code),
      .status = (int)status,
      .http_version = http_version(req, status),
      .body = req->in.len > 0 ? req->in.data : "",
      .body_len = req->in.len,
      .content_type = captured(req, H_CONTENT_TYPE),
      .retry_after = captured(req, H_RETRY_AFTER),
      .location = captured(req, H_LOCATION),
      .elapsed_ms = (uint64_t)total_us / 1000,
  };
  res->error_text = error_text(req, code, res->error);
}

static void req_put(usc_upstream_req_t *req);

/* ---- deadline heap ---- */

static void on_deadline(uv_timer_t *timer);

static void arm_deadline(usc_upstream_t *c) {
  if (c->closing)
    return;
  usc_heap_node_t *first = usc_heap_peek(&c->deadlines);
  if (first == NULL) {
    uv_timer_stop(&c->deadline_timer);
    return;
  }
  uint64_t now = uv_now(c->loop);
  uint64_t due = (uint64_t)first->key;
  uv_timer_start(&c->deadline_timer, on_deadline, due > now ? due - now : 0, 0);
}

/* Cannot fail: the heap holds max_requests, the most ever in flight. */
static void heap_push(usc_upstream_req_t *req) {
  usc_upstream_t *c = req->client;
  (void)usc_heap_push(&c->deadlines, &req->deadline);
  if (usc_heap_peek(&c->deadlines) == &req->deadline)
    arm_deadline(c);
}

static void heap_remove(usc_upstream_req_t *req) {
  usc_upstream_t *c = req->client;
  if (!usc_heap_node_in_heap(&req->deadline))
    return;
  bool first = usc_heap_peek(&c->deadlines) == &req->deadline;
  usc_heap_remove(&c->deadlines, &req->deadline);
  if (first)
    arm_deadline(c);
}

static void unlink_active(usc_upstream_req_t *req) {
  usc_upstream_t *c = req->client;
  if (req->prev != NULL)
    req->prev->next = req->next;
  else
    c->active = req->next;
  if (req->next != NULL)
    req->next->prev = req->prev;
  req->next = req->prev = NULL;
  req->active = false;
  heap_remove(req);
  c->n_active--;
  if (req->pending != USC_UPSTREAM_OK)
    c->n_pending--;
}

/* Takes the request out of libcurl, which closes an HTTP/1.1 connection
 * still busy with it and resets an HTTP/2 stream. */
static void detach(usc_upstream_req_t *req) {
  bool in_multi = req->in_multi;
  unlink_active(req);
  req->in_multi = false;
  if (in_multi)
    curl_lib.multi_remove_handle(req->client->multi, req->easy);
}

/* Runs the callback with `res` (filled before detaching, while libcurl's
 * info is whole), then recycles the request. The callback may start
 * requests, cancel others or close the client. */
static void complete(usc_upstream_req_t *req, usc_upstream_result_t *res) {
  detach(req);
  req->completing = true;
  req->done(req->user, res);
  req_put(req);
}

static void complete_with(usc_upstream_req_t *req, usc_upstream_error_t error,
                          const char *text) {
  usc_upstream_result_t res = {.error = error, .body = "", .error_text = text};
  complete(req, &res);
}

/* Ends the requests past their deadline that libcurl still holds, as if
 * libcurl had timed them out itself. */
static void on_deadline(uv_timer_t *timer) {
  usc_upstream_t *c = timer->data;
  uint64_t now = uv_now(c->loop);
  usc_heap_node_t *first;
  while (!c->closing && (first = usc_heap_peek(&c->deadlines)) != NULL &&
         (uint64_t)first->key <= now) {
    usc_upstream_req_t *req =
        USC_CONTAINER_OF(first, usc_upstream_req_t, deadline);
    usc_upstream_result_t res;
    snprintf(req->errbuf, sizeof(req->errbuf), "deadline passed %s",
             was_sent(req) ? "awaiting the response"
                           : "before the request was sent");
    fill_result(req, CURLE_OPERATION_TIMEDOUT, &res);
    complete(req, &res);
  }
  arm_deadline(c);
}

static void check_done(usc_upstream_t *c) {
  CURLMsg *msg;
  int left;
  while (!c->closing && (msg = curl_lib.multi_info_read(c->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    char *priv = NULL;
    curl_lib.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    usc_upstream_req_t *req = (usc_upstream_req_t *)priv;
    usc_upstream_result_t res;
    fill_result(req, msg->data.result, &res);
    complete(req, &res);
  }
}

static const char *pending_text(usc_upstream_error_t error) {
  switch (error) {
  case USC_UPSTREAM_TIMEOUT:
    return "deadline passed before the request started";
  case USC_UPSTREAM_NOMEM:
    return "out of memory";
  default:
    return "cannot watch the connection's socket";
  }
}

/* Ends the requests marked pending; the loop calls this, so that no
 * callback ever runs inside usc_upstream_request or a libcurl callback. */
static void complete_pending(usc_upstream_t *c) {
  /* Searched afresh each time: a callback may cancel other requests. */
  while (c->n_pending > 0 && !c->closing) {
    usc_upstream_req_t *req = c->active;
    while (req->pending == USC_UPSTREAM_OK)
      req = req->next;
    complete_with(req, req->pending, pending_text(req->pending));
  }
}

static void on_timer(uv_timer_t *timer);

static void set_pending(usc_upstream_req_t *req, usc_upstream_error_t error) {
  usc_upstream_t *c = req->client;
  if (!req->active || req->pending != USC_UPSTREAM_OK || c->closing)
    return;
  req->pending = error;
  c->n_pending++;
  uv_timer_start(&c->timer, on_timer, 0, 0);
}

/* ---- libcurl's socket and timer callbacks ---- */

static void on_timer(uv_timer_t *timer) {
  usc_upstream_t *c = timer->data;
  int running;
  complete_pending(c);
  if (c->closing)
    return;
  curl_lib.multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  usc_upstream_t *c = userp;
  (void)multi;
  if (c->closing)
    return 0;
  if (timeout_ms < 0 && c->n_pending == 0) {
    uv_timer_stop(&c->timer);
    return 0;
  }
  /* libcurl wants a call "as soon as possible" from the loop, never from
   * inside this callback, so 0 goes through the timer too. */
  uint64_t due = timeout_ms < 0 || c->n_pending > 0 ? 0 : (uint64_t)timeout_ms;
  uv_timer_start(&c->timer, on_timer, due, 0);
  return 0;
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  sock_t *s = poll->data;
  usc_upstream_t *c = s->client;
  int flags = 0;
  int running;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  curl_lib.multi_socket_action(c->multi, s->fd, flags, &running);
  check_done(c);
}

static sock_t *sock_new(usc_upstream_t *c, curl_socket_t fd,
                        usc_upstream_error_t *error) {
  sock_t *s = usc_calloc(1, sizeof(*s));
  *error = USC_UPSTREAM_NOMEM;
  if (s == NULL)
    return NULL;
  if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
    *error = USC_UPSTREAM_IO;
    usc_free(s);
    return NULL;
  }
  s->poll.data = s;
  s->client = c;
  s->fd = fd;
  s->next = c->socks;
  if (c->socks != NULL)
    c->socks->prev = s;
  c->socks = s;
  c->open_handles++;
  return s;
}

static void fail_transfer(CURL *easy, usc_upstream_error_t error) {
  char *priv = NULL;
  if (easy != NULL)
    curl_lib.easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
  if (priv != NULL)
    set_pending((usc_upstream_req_t *)priv, error);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                          void *socketp) {
  usc_upstream_t *c = userp;
  sock_t *s = socketp;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    /* libcurl forgets socketp itself; the fd is closed after we return,
     * so the poll must stop watching it now. */
    if (s != NULL)
      sock_close(s);
    return 0;
  }
  if (c->closing)
    return 0;
  if (s == NULL) {
    usc_upstream_error_t error;
    s = sock_new(c, fd, &error);
    if (s == NULL) {
      /* Returning -1 would fail every transfer and leave the multi handle
       * dead for good; failing just this one (from the loop, as it cannot
       * be removed from inside a libcurl callback) keeps the client up. */
      fail_transfer(easy, error);
      return 0;
    }
    curl_lib.multi_assign(c->multi, fd, s);
  }
  int events = ((what & CURL_POLL_IN) ? UV_READABLE : 0) |
               ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
  uv_poll_start(&s->poll, events, on_poll);
  return 0;
}

/* ---- libcurl's data callbacks ---- */

static size_t on_body(char *data, size_t size, size_t n, void *userp) {
  usc_upstream_req_t *req = userp;
  size_t len = size * n;
  size_t cap = req->client->config.max_body;
  /* Returning less than len aborts the transfer with CURLE_WRITE_ERROR. */
  if (len > cap - req->in.len) {
    req->too_large = true;
    return 0;
  }
  if (buf_reserve(&req->in, req->in.len + len + 1, cap + 1) != 0) {
    req->nomem = true;
    return 0;
  }
  memcpy(req->in.data + req->in.len, data, len);
  req->in.len += len;
  req->in.data[req->in.len] = '\0';
  return len;
}

static void capture_reset(usc_upstream_req_t *req) {
  req->captured_len = 0;
  for (int i = 0; i < N_CAPTURED; i++)
    req->captured_at[i] = -1;
}

/* Stores the value of "Name: value\r\n" when Name is one we keep. A value
 * that does not fit is dropped rather than cut. */
static void capture_line(usc_upstream_req_t *req, const char *line,
                         size_t len) {
  for (int i = 0; i < N_CAPTURED; i++) {
    size_t n = strlen(captured_names[i]);
    if (len <= n || line[n] != ':' || strncasecmp(line, captured_names[i], n))
      continue;
    const char *v = line + n + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
      v++;
    while (end > v && strchr(" \t\r\n", end[-1]) != NULL)
      end--;
    size_t vlen = (size_t)(end - v);
    if (vlen + 1 > CAPTURE_CAP - req->captured_len)
      return;
    req->captured_at[i] = (int)req->captured_len;
    memcpy(req->captured + req->captured_len, v, vlen);
    req->captured_len += vlen;
    req->captured[req->captured_len++] = '\0';
    return;
  }
}

static size_t on_header(char *data, size_t size, size_t n, void *userp) {
  usc_upstream_req_t *req = userp;
  size_t len = size * n;
  /* A status line starts a new head: an interim 1xx's headers are not the
   * final response's. */
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
    capture_reset(req);
  else
    capture_line(req, data, len);
  return len;
}

/* ---- requests ---- */

static usc_upstream_req_t *req_get(usc_upstream_t *c) {
  usc_upstream_req_t *req = c->pool;
  if (req != NULL) {
    c->pool = req->next;
    c->n_pooled--;
    curl_lib.easy_reset(req->easy);
  } else {
    req = usc_calloc(1, sizeof(*req));
    if (req == NULL)
      return NULL;
    req->easy = curl_lib.easy_init();
    if (req->easy == NULL) {
      usc_free(req);
      return NULL;
    }
  }
  req->client = c;
  req->next = req->prev = NULL;
  req->deadline = (usc_heap_node_t){0};
  capture_reset(req);
  return req;
}

static void req_destroy(usc_upstream_req_t *req) {
  curl_lib.slist_free_all(req->headers);
  curl_lib.easy_cleanup(req->easy);
  buf_free(&req->url);
  buf_free(&req->line);
  buf_free(&req->out);
  buf_free(&req->in);
  usc_free(req);
}

/* Back to the pool with its easy handle and modest buffers. */
static void req_put(usc_upstream_req_t *req) {
  usc_upstream_t *c = req->client;
  curl_lib.slist_free_all(req->headers);
  req->headers = NULL;
  buf_recycle(&req->url);
  buf_recycle(&req->line);
  buf_recycle(&req->out);
  buf_recycle(&req->in);
  req->done = NULL;
  req->user = NULL;
  req->in_multi = req->completing = false;
  req->pending = USC_UPSTREAM_OK;
  req->too_large = req->nomem = false;
  req->errbuf[0] = '\0';
  if (c->n_pooled == MAX_POOLED) {
    req_destroy(req);
    return;
  }
  req->next = c->pool;
  c->pool = req;
  c->n_pooled++;
}

static int append_line(usc_upstream_req_t *req, const char *line) {
  struct curl_slist *list = curl_lib.slist_append(req->headers, line);
  if (list == NULL)
    return USC_ERR_NOMEM;
  req->headers = list;
  return 0;
}

static int add_header(usc_upstream_req_t *req, const char *name,
                      const char *value) {
  req->line.len = 0;
  /* "Name;" is libcurl's way to send a header with an empty value;
   * "Name:" would remove it. */
  if (buf_cat(&req->line, name) != 0 ||
      buf_cat(&req->line, value[0] != '\0' ? ": " : ";") != 0 ||
      buf_cat(&req->line, value) != 0)
    return USC_ERR_NOMEM;
  return append_line(req, req->line.data);
}

static bool has_header(const usc_upstream_request_t *r, const char *name) {
  for (size_t i = 0; i < r->n_headers; i++) {
    if (strcasecmp(r->headers[i].name, name) == 0)
      return true;
  }
  return false;
}

static int build_headers(usc_upstream_req_t *req,
                         const usc_upstream_request_t *r) {
  for (size_t i = 0; i < r->n_headers; i++) {
    if (add_header(req, r->headers[i].name, r->headers[i].value) != 0)
      return USC_ERR_NOMEM;
  }
  /* "Name:" removes what libcurl would add: a body's form content type,
   * and Expect: 100-continue, which costs a round trip (or a second when
   * the server ignores it). */
  if (!has_header(r, "content-type") && append_line(req, "Content-Type:"))
    return USC_ERR_NOMEM;
  if (!has_header(r, "expect") && append_line(req, "Expect:"))
    return USC_ERR_NOMEM;
  return 0;
}

static long timeout_for(const usc_upstream_t *c,
                        const usc_upstream_request_t *r) {
  uint64_t now = uv_now(c->loop);
  uint64_t t = r->timeout_ms != 0 ? r->timeout_ms : UINT64_MAX;
  if (r->deadline != 0) {
    uint64_t left = r->deadline > now ? r->deadline - now : 0;
    t = left < t ? left : t;
  }
  if (t == UINT64_MAX)
    t = c->config.timeout_ms;
  return t > MAX_TIMEOUT_MS ? MAX_TIMEOUT_MS : (long)t;
}

static long curl_http_version(usc_upstream_http_t http) {
  switch (http) {
  case USC_UPSTREAM_HTTP_1_1:
    return CURL_HTTP_VERSION_1_1;
  case USC_UPSTREAM_HTTP_2_PRIOR_KNOWLEDGE:
    return CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  default:
    return CURL_HTTP_VERSION_2TLS;
  }
}

/* Options every request gets: this client's policy. */
static bool set_common(usc_upstream_req_t *req, long timeout_ms) {
  const usc_upstream_t *c = req->client;
  CURL *e = req->easy;
  /* Waiting for a connection being set up pays only when it may turn out
   * to be HTTP/2 and carry this request too. */
  bool may_multiplex =
      c->config.http == USC_UPSTREAM_HTTP_2_PRIOR_KNOWLEDGE ||
      (c->https && c->config.http == USC_UPSTREAM_HTTP_DEFAULT);
  return curl_lib.easy_setopt(e, CURLOPT_URL, req->url.data) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_PRIVATE, req) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf) ==
             CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ==
             CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_HTTP_VERSION,
                              curl_http_version(c->config.http)) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_PIPEWAIT, may_multiplex ? 1L : 0L) ==
             CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                              (long)c->config.connect_timeout_ms) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                              (curl_off_t)c->config.max_body) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
         (c->ca_file == NULL ||
          curl_lib.easy_setopt(e, CURLOPT_CAINFO, c->ca_file) == CURLE_OK) &&
         curl_lib.easy_setopt(e, CURLOPT_USERAGENT, c->user_agent) == CURLE_OK;
}

static bool set_io(usc_upstream_req_t *req) {
  CURL *e = req->easy;
  return curl_lib.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_WRITEDATA, req) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) ==
             CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_HEADERDATA, req) == CURLE_OK &&
         curl_lib.easy_setopt(e, CURLOPT_HTTPHEADER, req->headers) == CURLE_OK;
}

/* GET is libcurl's default; POSTFIELDS gives a body (Content-Length: 0
 * when empty) and CUSTOMREQUEST renames the method. The body is our own
 * copy, which libcurl borrows until the request is recycled. */
static bool set_method(usc_upstream_req_t *req, usc_upstream_method_t m) {
  static const char *const names[] = {"GET", "POST", "PUT", "DELETE"};
  CURL *e = req->easy;
  bool with_body =
      m == USC_UPSTREAM_POST || m == USC_UPSTREAM_PUT || req->out.len > 0;
  if (m == USC_UPSTREAM_GET)
    return curl_lib.easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
  if (with_body &&
      (curl_lib.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                            (curl_off_t)req->out.len) != CURLE_OK ||
       curl_lib.easy_setopt(e, CURLOPT_POSTFIELDS, req->out.data) != CURLE_OK))
    return false;
  return m == USC_UPSTREAM_POST ||
         curl_lib.easy_setopt(e, CURLOPT_CUSTOMREQUEST, names[m]) == CURLE_OK;
}

static int req_prepare(usc_upstream_req_t *req, const usc_upstream_request_t *r,
                       long timeout_ms) {
  usc_upstream_t *c = req->client;
  req->done = r->done;
  req->user = r->user;
  if (buf_set(&req->url, c->base_url, c->base_len) != 0 ||
      buf_cat(&req->url, r->path) != 0 ||
      buf_set(&req->out, r->body, r->body_len) != 0 ||
      buf_reserve(&req->in, 1, SIZE_MAX) != 0)
    return USC_ERR_NOMEM;
  req->in.len = 0;
  req->in.data[0] = '\0';
  if (build_headers(req, r) != 0)
    return USC_ERR_NOMEM;
  if (!set_common(req, timeout_ms) || !set_io(req) ||
      !set_method(req, r->method))
    return USC_ERR_NOMEM;
  return 0;
}

static void link_active(usc_upstream_req_t *req) {
  usc_upstream_t *c = req->client;
  req->prev = NULL;
  req->next = c->active;
  if (c->active != NULL)
    c->active->prev = req;
  c->active = req;
  req->active = true;
  c->n_active++;
}

int usc_upstream_request(usc_upstream_t *c, const usc_upstream_request_t *r,
                         usc_upstream_req_t **out) {
  if (c->closing)
    return USC_ERR_STATE;
  int rc = check_request(r);
  if (rc != 0)
    return rc;
  if (c->n_active >= c->config.max_requests)
    return USC_ERR_FULL;
  usc_upstream_req_t *req = req_get(c);
  if (req == NULL)
    return USC_ERR_NOMEM;
  long timeout_ms = timeout_for(c, r);
  req->deadline.key = (int64_t)(uv_now(c->loop) + (uint64_t)timeout_ms);
  rc = req_prepare(req, r, timeout_ms);
  if (rc == 0 && timeout_ms > 0) {
    if (curl_lib.multi_add_handle(c->multi, req->easy) != CURLM_OK)
      rc = USC_ERR_NOMEM;
    req->in_multi = rc == 0;
  }
  if (rc != 0) {
    req_put(req);
    return rc;
  }
  link_active(req);
  if (req->in_multi)
    heap_push(req);
  else
    set_pending(req, USC_UPSTREAM_TIMEOUT);
  if (out != NULL)
    *out = req;
  return 0;
}

void usc_upstream_cancel(usc_upstream_req_t *req) {
  if (req == NULL || req->completing)
    return;
  detach(req);
  req_put(req);
}

size_t usc_upstream_active(const usc_upstream_t *c) { return c->n_active; }

/* ---- client ---- */

static int copy_strings(usc_upstream_t *c, const usc_upstream_config_t *cfg) {
  const char *ua = cfg->user_agent ? cfg->user_agent : DEFAULT_USER_AGENT;
  c->base_url = usc_strdup(cfg->base_url);
  c->user_agent = usc_strdup(ua);
  if (cfg->ca_file != NULL)
    c->ca_file = usc_strdup(cfg->ca_file);
  if (c->base_url == NULL || c->user_agent == NULL ||
      (cfg->ca_file != NULL && c->ca_file == NULL))
    return USC_ERR_NOMEM;
  /* Paths start with '/', so the base ends without one. */
  c->base_len = strlen(c->base_url);
  while (c->base_len > 0 && c->base_url[c->base_len - 1] == '/')
    c->base_url[--c->base_len] = '\0';
  c->https = strncasecmp(c->base_url, "https://", 8) == 0;
  c->config.base_url = c->base_url;
  c->config.ca_file = c->ca_file;
  c->config.user_agent = c->user_agent;
  return 0;
}

static void apply_defaults(usc_upstream_config_t *cfg) {
  if (cfg->timeout_ms == 0)
    cfg->timeout_ms = DEFAULT_TIMEOUT_MS;
  if (cfg->connect_timeout_ms == 0)
    cfg->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  if (cfg->max_body == 0)
    cfg->max_body = DEFAULT_MAX_BODY;
  if (cfg->max_requests == 0)
    cfg->max_requests = DEFAULT_MAX_REQUESTS;
  if (cfg->max_requests > 1000000)
    cfg->max_requests = 1000000;
  if (cfg->max_connections == 0)
    cfg->max_connections = DEFAULT_MAX_CONNECTIONS;
  if (cfg->max_connections > LONG_MAX)
    cfg->max_connections = LONG_MAX;
}

static bool setup_multi(usc_upstream_t *c) {
  CURLM *m = c->multi;
  long conns = (long)c->config.max_connections;
  return curl_lib.multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_curl_socket) ==
             CURLM_OK &&
         curl_lib.multi_setopt(m, CURLMOPT_SOCKETDATA, c) == CURLM_OK &&
         curl_lib.multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer) ==
             CURLM_OK &&
         curl_lib.multi_setopt(m, CURLMOPT_TIMERDATA, c) == CURLM_OK &&
         curl_lib.multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX) ==
             CURLM_OK &&
         curl_lib.multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, conns) ==
             CURLM_OK &&
         curl_lib.multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns) ==
             CURLM_OK &&
         curl_lib.multi_setopt(m, CURLMOPT_MAXCONNECTS, conns) == CURLM_OK;
}

/* Frees what the client owns; its handles are closed (or never opened). */
static void client_free(usc_upstream_t *c) {
  while (c->pool != NULL) {
    usc_upstream_req_t *req = c->pool;
    c->pool = req->next;
    req_destroy(req);
  }
  if (c->multi != NULL)
    curl_lib.multi_cleanup(c->multi);
  usc_heap_free(&c->deadlines);
  usc_free(c->base_url);
  usc_free(c->ca_file);
  usc_free(c->user_agent);
  usc_free(c);
}

int usc_upstream_create(uv_loop_t *loop, const usc_upstream_config_t *config,
                        usc_upstream_t **out) {
  int rc = usc_upstream_global_init();
  if (rc != 0)
    return rc;
  if (!base_url_ok(config->base_url))
    return USC_ERR_INVALID;
  usc_upstream_t *c = usc_calloc(1, sizeof(*c));
  if (c == NULL)
    return USC_ERR_NOMEM;
  c->loop = loop;
  c->config = *config;
  apply_defaults(&c->config);
  rc = copy_strings(c, config);
  if (rc == 0 && usc_heap_reserve(&c->deadlines, c->config.max_requests) != 0)
    rc = USC_ERR_NOMEM;
  if (rc == 0 && (c->multi = curl_lib.multi_init()) == NULL)
    rc = USC_ERR_NOMEM;
  if (rc == 0 && !setup_multi(c))
    rc = USC_ERR_STATE;
  if (rc != 0) {
    client_free(c);
    return rc;
  }
  uv_timer_init(loop, &c->timer);
  uv_timer_init(loop, &c->deadline_timer);
  c->timer.data = c->deadline_timer.data = c;
  c->open_handles = 2;
  *out = c;
  return 0;
}

void usc_upstream_close(usc_upstream_t *c, void (*on_closed)(void *),
                        void *closed_user) {
  if (c == NULL || c->closing)
    return;
  c->closing = true;
  c->on_closed = on_closed;
  c->closed_user = closed_user;
  /* The callbacks may cancel other requests; new ones are refused. */
  while (c->active != NULL)
    complete_with(c->active, USC_UPSTREAM_CANCELLED, "client closed");
  /* Closes the kept-alive connections; libcurl reports their sockets
   * removed, which closes their polls. Any left are closed here. */
  curl_lib.multi_cleanup(c->multi);
  c->multi = NULL;
  while (c->socks != NULL)
    sock_close(c->socks);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  uv_close((uv_handle_t *)&c->deadline_timer, on_timer_closed);
}
