/* admin: a small HTTP/1.1 server on the sidecar's libuv loop, for the UAPI
 * REST facade, /metrics and the probes. It knows nothing of what it
 * serves: it parses requests (Debian's http-parser) and hands each whole
 * one (head and body) to a handler, which answers through
 * usc_admin_respond, now or later.
 *
 * Per connection, requests are handled one at a time and in order: while
 * the handler holds one, pipelined bytes are buffered (up to 64 KiB, then
 * the socket is no longer read). Responses always carry Content-Length
 * (except 204) and are gathered and written once per loop turn.
 *
 * Limits: connections (extra ones, and any that find no memory, are
 * accepted and closed at once, without a response), header bytes (431),
 * body bytes (413), the time to receive a request (408) and the time a
 * keep-alive connection may stay idle (closed silently). A malformed
 * request gets 400 (also Content-Length with Transfer-Encoding), Upgrade
 * and CONNECT get 501, a major version other than 1 gets 505; all of these
 * close the connection. "Expect: 100-continue" is answered with
 * "100 Continue" before the body is read, unless the declared body is
 * already over the limit (413). A connection that is to close is shut
 * down for writing after its last response and read (and discarded) until
 * the peer closes or a short linger time passes, so that the peer reads
 * the response rather than a reset. */
#ifndef USC_ADMIN_H
#define USC_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct usc_admin_server usc_admin_server_t;

/* The handle of one request, from on_request until usc_admin_respond or
 * on_cancel; invalid after either (the same address may then stand for
 * the connection's next request: drop it). */
typedef struct usc_admin_req usc_admin_req_t;

/* A header field. Request header names are lower-cased; values have
 * surrounding whitespace removed. */
typedef struct {
  const char *name;
  const char *value;
} usc_admin_header_t;

/* A request as the handler sees it. Every pointer is owned by the server
 * and stays valid, unchanged, until the request is answered or cancelled.
 * Strings are NUL-terminated. */
typedef struct {
  const char *method; /* "GET", "POST", ... (static) */
  const char *target; /* path and query as sent, e.g. "/v1/calls?x=1" */
  size_t target_len;
  const usc_admin_header_t *headers; /* in the order received (no trailers) */
  size_t n_headers;
  const uint8_t *body; /* chunked bodies are de-chunked; never NULL */
  size_t body_len;
  const char *peer; /* "1.2.3.4:5678" or "[::1]:5678" */
  int http_minor;   /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
} usc_admin_request_t;

/* How the handler hears of requests. Both get the `user` pointer of
 * usc_admin_config_t. */
typedef struct {
  /* A whole request. The handler answers with usc_admin_respond, here or
   * later. The server reads no further request from this connection until
   * then. */
  void (*on_request)(void *user, usc_admin_req_t *req,
                     const usc_admin_request_t *request);
  /* The request will never be answered: the client went away (including
   * a half-close, i.e. EOF on its side), or the server is closing. `req`
   * is invalid once this returns; do not call usc_admin_respond from
   * here. */
  void (*on_cancel)(void *user, usc_admin_req_t *req);
} usc_admin_handler_t;

/* Zero fields take the defaults shown. */
typedef struct {
  size_t max_connections;   /* 256 */
  size_t max_header_bytes;  /* 16 KiB: request target + header names and
                               values + 4 bytes per header; or >64 headers */
  size_t max_body_bytes;    /* 1 MiB */
  uint64_t idle_timeout_ms; /* 30 s: a connection between requests, or
                               writing a last response nobody reads */
  uint64_t read_timeout_ms; /* 10 s: from a request's first byte to its
                               last (headers and body) */
  uint64_t linger_ms;       /* 2 s: after a connection's last response is
                               written, the wait for the peer to close */
} usc_admin_limits_t;

/* The body of a response the server gives itself (400, 408, 413, 431,
 * 500, 501, 505), so that a server speaking some API answers in its error
 * format: writes at most `cap` bytes into `body`, sets *len, and returns
 * the content type (a static string). */
typedef const char *(*usc_admin_refusal_fn)(void *user, int status, char *body,
                                            size_t cap, size_t *len);

typedef struct {
  const usc_admin_handler_t *handler; /* must outlive the server */
  void *user;
  usc_admin_limits_t limits;
  usc_admin_refusal_fn refusal; /* NULL: the reason phrase as text/plain */
} usc_admin_config_t;

/* Creates a server on `loop`, listening on host:port. `host` is a literal
 * IPv4 or IPv6 address; port 0 takes any free port (see
 * usc_admin_server_address). The config is copied. Returns 0 or
 * USC_ERR_NOMEM / USC_ERR_IO with a message in `error`; on failure the
 * loop must still run once to close what was opened. */
int usc_admin_server_start(uv_loop_t *loop, const usc_admin_config_t *config,
                           const char *host, int port, usc_admin_server_t **out,
                           char *error, size_t error_cap);

/* "127.0.0.1:PORT" or "[::1]:PORT", the address the server listens on;
 * owned by the server. */
const char *usc_admin_server_address(const usc_admin_server_t *server);

/* Open connections, and requests the handler holds (for draining). */
size_t usc_admin_server_connections(const usc_admin_server_t *server);
size_t usc_admin_server_pending(const usc_admin_server_t *server);

/* Stops accepting and closes idle connections. A request being received
 * or held by the handler goes on; its response says "Connection: close"
 * and the connection closes after it. Pipelined requests not yet started
 * are dropped (the client sees the connection close and may retry). */
void usc_admin_server_drain(usc_admin_server_t *server);

/* Cancels every request the handler holds (on_cancel), closes every
 * connection and handle, and frees the server once libuv has closed them
 * (the loop must keep running until then). `on_closed` (may be NULL) runs
 * when all is closed. */
void usc_admin_server_close(usc_admin_server_t *server,
                            void (*on_closed)(void *), void *closed_user);

/* Answers `req`, which is invalid afterwards. `status` is 200..599;
 * `content_type` may be NULL (no Content-Type); `headers` are extra
 * response headers (names are tokens, values without CR/LF; not
 * Content-Length, Transfer-Encoding or Connection, which the server
 * writes). The body is copied; it is not sent for HEAD, 204 or 304, and
 * 204 has no Content-Length. Returns 0 if the response was queued;
 * USC_ERR_INVALID if an argument was refused, in which case the client
 * gets 500 and the connection closes; USC_ERR_NOMEM if no response could
 * be queued, in which case the connection closes. */
int usc_admin_respond(usc_admin_req_t *req, int status,
                      const char *content_type,
                      const usc_admin_header_t *headers, size_t n_headers,
                      const void *body, size_t len);

/* The request being answered, as given to on_request. */
const usc_admin_request_t *usc_admin_req_request(const usc_admin_req_t *req);

/* The value of the first header named `name` (lower-case), or NULL. */
const char *usc_admin_req_header(const usc_admin_req_t *req, const char *name);

/* The handler's own pointer for a request (NULL until set). */
void usc_admin_req_set_user(usc_admin_req_t *req, void *user);
void *usc_admin_req_user(const usc_admin_req_t *req);

#endif
