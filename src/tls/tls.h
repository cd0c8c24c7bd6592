/* tls: TLS for the gRPC listener, without I/O. A context holds the
 * server's certificate chain and private key, read once when it is made;
 * a connection takes the bytes read from its socket and gives back the
 * plaintext, and takes plaintext to send and gives back the bytes to
 * write. Nothing here touches a socket or a loop (OpenSSL, through a BIO
 * that reads from and writes to the caller's buffers).
 *
 * What the server accepts: TLS 1.2 and 1.3; for TLS 1.2 only the ECDHE
 * suites with AEAD that HTTP/2 allows (RFC 9113 9.2.2), no renegotiation,
 * no compression. ALPN must offer "h2": a ClientHello without ALPN, or
 * without h2 in it, is refused with the no_application_protocol alert, as
 * gRPC servers do. No session resumption (no cache, no tickets): a
 * sidecar's clients keep one long-lived HTTP/2 connection, and the server
 * keeps no session state or ticket key. With a client CA file, clients
 * must present a certificate that CA signed (mutual TLS).
 *
 * Memory: an idle established connection holds only OpenSSL's connection
 * state (read and write buffers are released when empty); see
 * usc_tls_t. Single-threaded, like the loop that uses it. */
#ifndef USC_TLS_H
#define USC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct usc_tls_ctx usc_tls_ctx_t;
typedef struct usc_tls usc_tls_t;

/* A byte buffer that calls append to: `data` is usc_malloc'd (NULL when
 * cap is 0) and owned by whoever holds the struct; appends grow it with
 * usc_grow. A zeroed struct is an empty buffer. */
typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} usc_tls_buf_t;

/* Frees the data and empties the buffer. */
void usc_tls_buf_free(usc_tls_buf_t *buf);

typedef struct {
  const char *cert_file; /* PEM: the server certificate, then its chain */
  const char *key_file;  /* PEM: its private key, not encrypted */
  /* PEM CA certificates; clients must present a certificate one of them
   * signed. NULL or "": no client certificate is asked for. */
  const char *client_ca_file;
} usc_tls_config_t;

/* Reads the files and makes a server context. Returns 0 or a negative
 * USC_ERR_* (USC_ERR_INVALID for a file that cannot be read or used, with
 * the file and OpenSSL's reason in `error`). The paths are only read
 * during the call. Free with usc_tls_ctx_free (accepts NULL); connections
 * made from it hold their own reference, so it may be freed first. */
int usc_tls_ctx_new(const usc_tls_config_t *config, usc_tls_ctx_t **out,
                    char *error, size_t error_cap);
void usc_tls_ctx_free(usc_tls_ctx_t *ctx);

/* A server connection that waits for the client's ClientHello. Returns 0
 * or USC_ERR_NOMEM. Free with usc_tls_free (accepts NULL). */
int usc_tls_new(usc_tls_ctx_t *ctx, usc_tls_t **out);
void usc_tls_free(usc_tls_t *tls);

/* Takes `len` bytes received from the peer, all of them (an incomplete
 * record is kept for the next call). Appends the plaintext they complete
 * to `plain`: no more than `len` plus one record (16 KiB), so the buffer
 * stays bounded by the caller's reads. Appends to `out` what must be
 * written to the peer: handshake messages, and an alert when it fails.
 * Returns 0; USC_ERR_INVALID when the handshake failed or the peer broke
 * the protocol (see usc_tls_failure; the connection is then unusable,
 * but `out` may hold an alert worth sending); USC_ERR_NOMEM (unusable
 * too). After the peer's close_notify, usc_tls_peer_closed is true and
 * later bytes are ignored. */
int usc_tls_feed(usc_tls_t *tls, const uint8_t *in, size_t len,
                 usc_tls_buf_t *plain, usc_tls_buf_t *out);

/* Encrypts `len` bytes of plaintext (0 is allowed) and appends the
 * records to `out`. Returns 0, USC_ERR_STATE before the handshake is done
 * or after a failure, or USC_ERR_NOMEM or USC_ERR_INVALID (the connection
 * is then unusable). */
int usc_tls_encrypt(usc_tls_t *tls, const uint8_t *plain, size_t len,
                    usc_tls_buf_t *out);

/* Appends a close_notify alert to `out`, once; later calls and calls on a
 * connection not established append nothing. Returns 0 or
 * USC_ERR_NOMEM. */
int usc_tls_close_notify(usc_tls_t *tls, usc_tls_buf_t *out);

/* The handshake is done: usc_tls_encrypt may be used. */
bool usc_tls_established(const usc_tls_t *tls);

/* The peer sent close_notify. */
bool usc_tls_peer_closed(const usc_tls_t *tls);

/* Why the connection failed, a static string for logs ("the client
 * offered no ALPN", OpenSSL's reason, ...); NULL while it has not. */
const char *usc_tls_failure(const usc_tls_t *tls);

/* The protocol version ("TLSv1.3") and cipher suite name of an
 * established connection; static strings. */
const char *usc_tls_version(const usc_tls_t *tls);
const char *usc_tls_cipher(const usc_tls_t *tls);

#endif
