/* h2: the gRPC server transport. A libuv TCP listener, one nghttp2 server
 * session per connection (h2c with prior knowledge, or TLS with ALPN h2),
 * and gRPC calls on its
 * streams: request validation (method, content-type, grpc-encoding),
 * grpc-timeout deadlines, incremental deframing with a size cap, responses
 * with initial metadata, messages and trailers (Trailers-Only for errors
 * before any message), cancellation on RST_STREAM, deadline or connection
 * loss, and a graceful drain. It knows nothing of PhoneCalls: a handler
 * gets each call's method, messages and half-close, and answers through
 * the usc_h2_call_* functions, now or later. Output is gathered and
 * written once per loop turn per connection. */
#ifndef USC_H2_H
#define USC_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "src/grpc/grpc.h"

typedef struct usc_h2_server usc_h2_server_t;
typedef struct usc_h2_call usc_h2_call_t;
/* src/tls/tls.h */
typedef struct usc_tls_ctx usc_tls_ctx_t;

/* A header or metadata entry; the strings must stay valid until the call
 * that takes them returns. */
typedef struct {
  const char *name;
  const char *value;
} usc_h2_header_t;

/* How a handler hears of a call. Every callback gets the `user` pointer of
 * usc_h2_server_config_t. After usc_h2_call_finish the call is no longer
 * the handler's and none of these is called for it again. Before that,
 * on_cancel may come at any time (client reset, deadline, connection lost,
 * server stopped); after on_cancel returns the call is freed. */
typedef struct {
  /* Headers are in and valid. `method` is the :path, e.g.
   * "/pkg.Service/Method". The handler may finish the call at once. */
  void (*on_start)(void *user, usc_h2_call_t *call, const char *method,
                   size_t method_len);
  /* One whole request message; `data` is valid during the call only. */
  void (*on_message)(void *user, usc_h2_call_t *call, const uint8_t *data,
                     size_t len);
  /* The client sent END_STREAM after its messages. */
  void (*on_half_close)(void *user, usc_h2_call_t *call);
  /* Why: CANCELLED (client reset or connection lost), DEADLINE_EXCEEDED,
   * UNAVAILABLE (server closing), or the status the transport itself
   * answered (RESOURCE_EXHAUSTED, INTERNAL). */
  void (*on_cancel)(void *user, usc_h2_call_t *call, usc_grpc_status_t why);
} usc_h2_handler_t;

/* Durations are in milliseconds of loop time. Every field added after
 * max_concurrent_streams keeps the transport's earlier behaviour at 0 (or
 * false), but for defences against hostile peers, which are on unless
 * set otherwise: the handshake timeout and the ping rule for connections
 * without calls. */
typedef struct {
  const usc_h2_handler_t *handler;
  void *user;
  /* The largest request message, after decompression too. The calls of
   * a connection hold at most max(4 x this, 1 MiB) of messages not yet
   * whole; a call that goes over is answered RESOURCE_EXHAUSTED. */
  size_t max_recv_message_size;
  uint32_t max_concurrent_streams;

  /* Response messages of at least this many bytes are gzip-compressed
   * when the request's grpc-accept-encoding lists gzip. A response has one
   * grpc-encoding, chosen with its headers: only a call whose first
   * message is this large gets "grpc-encoding: gzip" (its later messages
   * this large are compressed too, smaller ones not); a call whose headers
   * go out before any message (usc_h2_call_send_headers) is never
   * compressed. 0: never compress. (Compressed requests are always
   * accepted.) */
  size_t gzip_min_response_size;
  /* Open connections at most; more are accepted and closed at once,
   * unless one of those open has not sent its preface yet: the oldest of
   * these is closed instead, to make room. 0: no limit. */
  size_t max_connections;
  /* SETTINGS_MAX_HEADER_LIST_SIZE, enforced (name + value + 32 per
   * field, RFC 9113): a request over it is answered RESOURCE_EXHAUSTED on
   * its stream. The connection itself gets GOAWAY and is closed when the
   * header block comes in more CONTINUATION frames than such a list needs
   * (max(8, limit / 16 KiB)) or has a field HPACK does not decode (a name
   * or value over 64 KiB as encoded): the HPACK state is the connection's.
   * 0: 16384. */
  uint32_t max_header_list_size;
  /* A connection without calls for this long is drained (GOAWAY). 0: off. */
  uint64_t max_connection_idle_ms;
  /* A connection this old (+-10% jitter) is drained; after the grace its
   * calls are cancelled and it is closed. 0: off / no grace limit. */
  uint64_t max_connection_age_ms;
  uint64_t max_connection_age_grace_ms;
  /* After this long without receiving anything, the server PINGs; with no
   * ACK within keepalive_timeout_ms the connection is closed. 0: off /
   * 20000. */
  uint64_t keepalive_time_ms;
  uint64_t keepalive_timeout_ms;
  /* Ping policing (gRFC A8): a client PING sooner than this after the
   * previous one, with no HEADERS or DATA sent in between, is a strike;
   * the third strike gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and
   * the connection is closed. While the connection has no calls, the
   * interval is two hours (or this, if longer) unless
   * keepalive_permit_without_calls. 0: no policing. */
  uint64_t keepalive_min_time_ms;

  /* TLS: with a context, every connection is TLS (ALPN h2; see
   * src/tls/tls.h) and clients that do not speak it are cut off; NULL:
   * h2c. Borrowed: it must outlive the server. A connection whose
   * handshake is not done tls_handshake_timeout_ms after accept is
   * closed (0: 10000). */
  usc_tls_ctx_t *tls;
  uint64_t tls_handshake_timeout_ms;
  bool keepalive_permit_without_calls;
  /* A connection whose preface (its first frame) has not come this long
   * after it was accepted is closed. 0: 10000. */
  uint64_t handshake_timeout_ms;
} usc_h2_server_config_t;

/* Creates a server on `loop`, listening on host:port (port 0: any free
 * port; see usc_h2_server_address). Returns 0 or a negative USC_ERR_* and
 * a message in `error`. The config is copied. */
int usc_h2_server_start(uv_loop_t *loop, const usc_h2_server_config_t *config,
                        const char *host, int port, usc_h2_server_t **out,
                        char *error, size_t error_cap);

/* "ip:port" or "[ip]:port" (IPv6), the address the server listens on. */
const char *usc_h2_server_address(const usc_h2_server_t *server);

/* Number of calls whose streams are still open, and of open connections
 * (for draining). */
size_t usc_h2_server_active_calls(const usc_h2_server_t *server);
size_t usc_h2_server_connections(const usc_h2_server_t *server);

/* TLS connections closed before their handshake was done: refused (no
 * h2 in ALPN, an old version, no shared cipher, no or a bad client
 * certificate, not TLS at all) or timed out. Each is logged at debug
 * level with the peer and the reason. */
uint64_t usc_h2_server_tls_handshake_failures(const usc_h2_server_t *server);

/* Stops accepting and drains every connection in two steps: a GOAWAY
 * with last-stream-id 2^31-1 (NO_ERROR) and a PING; when the PING ACK
 * comes back (or after a second), a second GOAWAY with the last stream id
 * processed. Streams opened before it are still served; calls in flight
 * go on. Connections close once their streams are done. */
void usc_h2_server_drain(usc_h2_server_t *server);

/* Cancels every call still open, closes every connection and handle, and
 * frees the server once libuv has closed them (the loop must keep running
 * until then). `on_closed` (may be NULL) runs when all is closed. */
void usc_h2_server_close(usc_h2_server_t *server, void (*on_closed)(void *),
                         void *closed_user);

/* The handler's own pointer for a call. */
void usc_h2_call_set_user(usc_h2_call_t *call, void *user);
void *usc_h2_call_user(const usc_h2_call_t *call);

/* A request header captured for handlers (authorization, x-request-id,
 * traceparent, tracestate, user-agent), or NULL. */
const char *usc_h2_call_header(const usc_h2_call_t *call, const char *name);

/* When the call's grpc-timeout runs out, in loop time (uv_now, ms); 0
 * when it has none. */
uint64_t usc_h2_call_deadline(const usc_h2_call_t *call);

/* "ip:port" or "[ip]:port" (IPv6) of the client; "?:0" when unknown. */
const char *usc_h2_call_peer(const usc_h2_call_t *call);

/* Metadata to send with the response headers (at the first message, or in
 * a Trailers-Only response). Copied; call before sending anything. At most
 * 8 entries in all. Returns 0 or USC_ERR_FULL / USC_ERR_NOMEM. */
int usc_h2_call_add_initial_metadata(usc_h2_call_t *call, const char *name,
                                     const char *value);

/* Sends the response headers now, before any message (a stream that
 * waits for events). Returns 0 or USC_ERR_STATE. */
int usc_h2_call_send_headers(usc_h2_call_t *call);

/* Writes `len` bytes of message through `pack` (which must write exactly
 * `len` bytes into `out`), framed, into the call's output; they go out on
 * the next loop turn, as the client's flow-control windows let them.
 * Returns 0, USC_ERR_FULL (the client does not read: its connection holds
 * 4 MiB of responses not yet sent, some of them this call's; a call with
 * nothing waiting is never refused), USC_ERR_TOO_LARGE (len over 2^32-1)
 * or USC_ERR_NOMEM. */
typedef void (*usc_h2_pack_fn)(const void *message, uint8_t *out);
int usc_h2_call_send_message(usc_h2_call_t *call, size_t len,
                             usc_h2_pack_fn pack, const void *message);

/* Ends the call with a status, a message for a person (percent-encoded on
 * the wire; may be NULL) and extra trailers (copied). If the client is
 * still sending, the stream is then reset with NO_ERROR. */
void usc_h2_call_finish(usc_h2_call_t *call, usc_grpc_status_t status,
                        const char *message, const usc_h2_header_t *trailers,
                        size_t n_trailers);

#endif
