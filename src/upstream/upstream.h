/* upstream: an HTTP client for the UAPI REST API on the sidecar's own libuv
 * loop. libcurl's multi socket interface does the protocol work; one
 * uv_poll per socket and one uv_timer drive it, and a second uv_timer
 * enforces request deadlines. There are no threads of ours (libcurl's
 * threaded resolver may run getaddrinfo on a thread of its own for host
 * names; IP literals never need one).
 *
 * One client talks to one base URL. Connections are kept alive and reused
 * (HTTP/1.1, or HTTP/2 multiplexing when TLS ALPN offers it). Redirects are
 * never followed: a 3xx comes back as a response with its Location.
 * Requests never complete synchronously: usc_upstream_request either
 * fails at once with an error code (and no callback) or the callback runs
 * exactly once from the loop, unless the request is cancelled first. */
#ifndef USC_UPSTREAM_H
#define USC_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct usc_upstream usc_upstream_t;
typedef struct usc_upstream_req usc_upstream_req_t;

typedef enum {
  /* HTTP/1.1 in clear text; over TLS, HTTP/2 when the server's ALPN offers
   * it, else HTTP/1.1. */
  USC_UPSTREAM_HTTP_DEFAULT = 0,
  USC_UPSTREAM_HTTP_1_1, /* HTTP/1.1 only, even over TLS */
  /* HTTP/2 without negotiation: h2c prior knowledge for http:// URLs. */
  USC_UPSTREAM_HTTP_2_PRIOR_KNOWLEDGE,
} usc_upstream_http_t;

typedef struct {
  /* "http://host[:port][/prefix]" or "https://...", without query or
   * fragment; request paths are appended to it. Copied. */
  const char *base_url;
  /* PEM file of CAs trusted besides the system store, or NULL. Copied.
   * Certificates and host names are always verified. */
  const char *ca_file;
  uint32_t timeout_ms;         /* request timeout when none given; 0: 10 s */
  uint32_t connect_timeout_ms; /* DNS + TCP + TLS; 0: 3 s */
  size_t max_body;             /* response body cap in bytes; 0: 1 MiB */
  /* Requests in flight at once; one more is refused with USC_ERR_FULL
   * (no queue: a caller under load should shed, not wait). 0: 256. */
  size_t max_requests;
  /* Connections to the upstream, open and kept idle; requests beyond wait
   * inside libcurl for a free connection (their deadline runs). 0: 32. */
  size_t max_connections;
  usc_upstream_http_t http;
  const char *user_agent; /* NULL: "uapi-sidecar"; copied */
} usc_upstream_config_t;

typedef enum {
  USC_UPSTREAM_GET,
  USC_UPSTREAM_POST,
  USC_UPSTREAM_PUT,
  USC_UPSTREAM_DELETE,
} usc_upstream_method_t;

/* How a request ended. Only OK carries an HTTP response. */
typedef enum {
  USC_UPSTREAM_OK = 0, /* a whole response arrived, whatever its status */
  /* Nothing of the request was sent, so another backend may safely serve
   * it: connection refused, DNS failure, TLS handshake or certificate
   * failure, or the deadline or connect timeout passed before the request
   * went out (while connecting, or waiting for one of max_connections). */
  USC_UPSTREAM_CONNECT_FAILED,
  /* The deadline passed after the request went out (the upstream may have
   * acted), or had already passed when the request was made (nothing was
   * sent then, and no connection was touched). */
  USC_UPSTREAM_TIMEOUT,
  /* Reset, closed or garbled mid-exchange: the upstream may have acted. */
  USC_UPSTREAM_IO,
  USC_UPSTREAM_TOO_LARGE, /* response body over max_body; transfer aborted */
  USC_UPSTREAM_CANCELLED, /* only from usc_upstream_close */
  USC_UPSTREAM_NOMEM,
} usc_upstream_error_t;

/* "OK", "CONNECT_FAILED", ... */
const char *usc_upstream_error_name(usc_upstream_error_t error);

/* Everything here points into the request and is valid only during the
 * callback; copy what must outlive it. */
typedef struct {
  usc_upstream_error_t error;
  int status;       /* HTTP status; 0 when no response head arrived */
  int http_version; /* 11 or 20 when a response arrived, else 0 */
  /* The body, NUL-terminated (the NUL is not counted); "" when none.
   * Only complete when error is OK. */
  const char *body;
  size_t body_len;
  /* Response headers of interest (of the final response head, trimmed),
   * NULL when absent or longer than about 2 KiB together. */
  const char *content_type;
  const char *retry_after;
  const char *location;
  /* libcurl's description of the failure, for logs; "" on OK. It never
   * holds request headers. */
  const char *error_text;
  uint64_t elapsed_ms;
} usc_upstream_result_t;

typedef void (*usc_upstream_done_fn)(void *user,
                                     const usc_upstream_result_t *result);

typedef struct {
  const char *name;
  const char *value;
} usc_upstream_header_t;

typedef struct {
  usc_upstream_method_t method;
  /* "/path?query" appended to the base URL: starts with '/', printable
   * ASCII without spaces or '#', no "." or ".." segment (they could climb
   * out of the base URL's path). Copied. */
  const char *path;
  /* Sent as given (authorization, content-type, traceparent, tracestate,
   * x-request-id, ...); names are tokens, values hold no CR, LF or NUL.
   * Copied. libcurl's default form content type and "Expect:
   * 100-continue" are never added. */
  const usc_upstream_header_t *headers;
  size_t n_headers;
  /* The request body, copied; NULL with body_len 0 for none. Not allowed
   * with GET. A PUT or POST without one sends Content-Length: 0. */
  const void *body;
  size_t body_len;
  /* When the exchange must be over: `deadline` in loop time (uv_now(),
   * ms) and/or `timeout_ms` from now; the earlier of those set wins, and
   * with neither the client's default timeout applies. It bounds
   * everything, waiting for a connection included. */
  uint64_t deadline;
  uint32_t timeout_ms;
  usc_upstream_done_fn done; /* required */
  void *user;
} usc_upstream_request_t;

/* Loads libcurl (only processes that translate pay for it and its
 * dependencies) and calls curl_global_init, once per process;
 * usc_upstream_create calls it, so calling it yourself is only needed to
 * do it early. Not thread-safe (the process has one thread). Returns 0 or
 * USC_ERR_STATE, with the reason in usc_upstream_global_error(). */
int usc_upstream_global_init(void);

/* Why usc_upstream_global_init failed ("" when it did not). Static. */
const char *usc_upstream_global_error(void);

/* Undoes usc_upstream_global_init once no client is left, e.g. at the end
 * of a test process so that leak checkers see libcurl's one-time
 * allocations freed. */
void usc_upstream_global_cleanup(void);

/* Creates a client on `loop`. Returns 0 and sets *out, or
 * USC_ERR_INVALID (bad base URL), USC_ERR_NOMEM, USC_ERR_STATE (libcurl
 * would not initialise). */
int usc_upstream_create(uv_loop_t *loop, const usc_upstream_config_t *config,
                        usc_upstream_t **out);

/* Starts a request. Returns 0 and sets *out (may be NULL when the caller
 * never cancels) to a handle valid until the callback starts or the
 * request is cancelled; or, without any callback, USC_ERR_INVALID (bad
 * path, header or body), USC_ERR_FULL (max_requests in flight),
 * USC_ERR_STATE (the client is closing), USC_ERR_NOMEM. The callback may
 * start new requests and cancel others. */
int usc_upstream_request(usc_upstream_t *client,
                         const usc_upstream_request_t *request,
                         usc_upstream_req_t **out);

/* Aborts a request at once: its connection is closed (HTTP/1.1) or its
 * stream reset (HTTP/2), and its callback is NOT called, now or later.
 * Must not be called with a request whose callback has started. */
void usc_upstream_cancel(usc_upstream_req_t *req);

/* Requests in flight. */
size_t usc_upstream_active(const usc_upstream_t *client);

/* Completes every request in flight with CANCELLED (their callbacks run
 * before this returns), closes every connection and handle, and frees the
 * client once libuv has closed them (the loop must keep running until
 * then). `on_closed` (may be NULL) runs last. Accepts NULL. */
void usc_upstream_close(usc_upstream_t *client, void (*on_closed)(void *),
                        void *closed_user);

#endif
