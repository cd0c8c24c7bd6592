#include "src/tls/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"

/* The largest plaintext of one TLS record. */
#define RECORD_PLAINTEXT (16 * 1024)
/* SSL_read is given at least this much room, so records are not read in
 * small pieces. */
#define MIN_READ_ROOM 4096

/* HTTP/2 allows TLS 1.2 only with ephemeral key exchange and AEAD
 * (RFC 9113 9.2.2); TLS 1.3's suites are all fine. */
static const char tls12_ciphers[] = "ECDHE+AESGCM:ECDHE+CHACHA20";
static const unsigned char session_context[] = "uapi-sidecar";

struct usc_tls_ctx {
  SSL_CTX *ssl_ctx;
  BIO_METHOD *bio_method;
  size_t refs; /* the owner's and one per connection */
};

struct usc_tls {
  usc_tls_ctx_t *ctx;
  SSL *ssl;
  /* During a call only: the bytes the BIO reads and where it writes. */
  const uint8_t *in;
  size_t in_len;
  usc_tls_buf_t *out;
  bool out_nomem;
  bool established;
  bool peer_closed;
  bool failed;
  bool close_sent;
  const char *failure;
};

void usc_tls_buf_free(usc_tls_buf_t *buf) {
  usc_free(buf->data);
  buf->data = NULL;
  buf->len = buf->cap = 0;
}

static int buf_append(usc_tls_buf_t *buf, const void *data, size_t len) {
  if (len > buf->cap - buf->len) {
    uint8_t *grown = usc_grow(buf->data, &buf->cap, buf->len + len, 4096);
    if (grown == NULL)
      return USC_ERR_NOMEM;
    buf->data = grown;
  }
  memcpy(buf->data + buf->len, data, len);
  buf->len += len;
  return 0;
}

/* ---- the BIO: reads tls->in, appends to tls->out ---- */

static int bio_read(BIO *bio, char *data, int len) {
  usc_tls_t *tls = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  if (tls->in_len == 0 || len <= 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = tls->in_len < (size_t)len ? tls->in_len : (size_t)len;
  memcpy(data, tls->in, n);
  tls->in += n;
  tls->in_len -= n;
  return (int)n;
}

static int bio_write(BIO *bio, const char *data, int len) {
  usc_tls_t *tls = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  if (len <= 0)
    return 0;
  if (tls->out == NULL || buf_append(tls->out, data, (size_t)len) != 0) {
    tls->out_nomem = true;
    return -1;
  }
  return len;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr) {
  (void)bio;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *make_bio_method(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                               "uapi-sidecar buffers");
  if (m == NULL)
    return NULL;
  if (!BIO_meth_set_read(m, bio_read) || !BIO_meth_set_write(m, bio_write) ||
      !BIO_meth_set_ctrl(m, bio_ctrl)) {
    BIO_meth_free(m);
    return NULL;
  }
  return m;
}

/* ---- the context ---- */

/* Records `why` for the connection's usc_tls_failure. */
static void set_failure(SSL *ssl, const char *why) {
  usc_tls_t *tls = SSL_get_app_data(ssl);
  if (tls != NULL && tls->failure == NULL)
    tls->failure = why;
}

/* A ClientHello without ALPN never reaches select_alpn. */
static int check_client_hello(SSL *ssl, int *alert, void *arg) {
  (void)arg;
  const unsigned char *ext;
  size_t len;
  if (SSL_client_hello_get0_ext(
          ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
          &len) == 1)
    return SSL_CLIENT_HELLO_SUCCESS;
  set_failure(ssl, "the client offered no ALPN (h2 is required)");
  *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
  return SSL_CLIENT_HELLO_ERROR;
}

static int select_alpn(SSL *ssl, const unsigned char **out,
                       unsigned char *out_len, const unsigned char *in,
                       unsigned int in_len, void *arg) {
  (void)arg;
  unsigned int i = 0;
  while (i < in_len) {
    unsigned int n = in[i];
    if (n > in_len - i - 1)
      break;
    if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
      *out = in + i + 1;
      *out_len = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  set_failure(ssl, "the client's ALPN does not offer h2");
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* An encrypted key would make OpenSSL ask on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *user) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)user;
  return 0;
}

static void openssl_error(char *error, size_t error_cap, const char *what,
                          const char *path) {
  unsigned long e = ERR_peek_last_error();
  const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
  snprintf(error, error_cap, "%s %s: %s", what, path,
           reason != NULL ? reason : "cannot be used");
  ERR_clear_error();
}

static int load_files(SSL_CTX *ssl_ctx, const usc_tls_config_t *config,
                      char *error, size_t error_cap) {
  SSL_CTX_set_default_passwd_cb(ssl_ctx, no_password);
  if (SSL_CTX_use_certificate_chain_file(ssl_ctx, config->cert_file) != 1) {
    openssl_error(error, error_cap, "certificate", config->cert_file);
    return USC_ERR_INVALID;
  }
  if (SSL_CTX_use_PrivateKey_file(ssl_ctx, config->key_file,
                                  SSL_FILETYPE_PEM) != 1) {
    openssl_error(error, error_cap, "private key", config->key_file);
    return USC_ERR_INVALID;
  }
  if (SSL_CTX_check_private_key(ssl_ctx) != 1) {
    openssl_error(error, error_cap, "private key", config->key_file);
    return USC_ERR_INVALID;
  }
  const char *ca = config->client_ca_file;
  if (ca == NULL || ca[0] == '\0')
    return 0;
  STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
  if (names == NULL || SSL_CTX_load_verify_locations(ssl_ctx, ca, NULL) != 1) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    openssl_error(error, error_cap, "client CA file", ca);
    return USC_ERR_INVALID;
  }
  SSL_CTX_set_client_CA_list(ssl_ctx, names);
  SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     NULL);
  return 0;
}

static int configure(SSL_CTX *ssl_ctx) {
  if (SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ssl_ctx, tls12_ciphers) != 1 ||
      SSL_CTX_set_session_id_context(ssl_ctx, session_context,
                                     sizeof(session_context) - 1) != 1 ||
      SSL_CTX_set_num_tickets(ssl_ctx, 0) != 1)
    return USC_ERR_NOMEM;
  SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                                   SSL_OP_NO_COMPRESSION |
                                   SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_client_hello_cb(ssl_ctx, check_client_hello, NULL);
  SSL_CTX_set_alpn_select_cb(ssl_ctx, select_alpn, NULL);
  return 0;
}

static void ctx_unref(usc_tls_ctx_t *ctx) {
  if (ctx == NULL || --ctx->refs > 0)
    return;
  SSL_CTX_free(ctx->ssl_ctx);
  BIO_meth_free(ctx->bio_method);
  usc_free(ctx);
}

int usc_tls_ctx_new(const usc_tls_config_t *config, usc_tls_ctx_t **out,
                    char *error, size_t error_cap) {
  ERR_clear_error();
  usc_tls_ctx_t *ctx = usc_calloc(1, sizeof(*ctx));
  if (ctx == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  ctx->refs = 1;
  int rc = USC_ERR_NOMEM;
  snprintf(error, error_cap, "out of memory");
  if ((ctx->bio_method = make_bio_method()) == NULL ||
      (ctx->ssl_ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
      configure(ctx->ssl_ctx) != 0)
    goto fail;
  rc = load_files(ctx->ssl_ctx, config, error, error_cap);
  if (rc != 0)
    goto fail;
  /* Reading PEM leaves expected errors behind; the queue is shared with
   * libcurl's OpenSSL. */
  ERR_clear_error();
  *out = ctx;
  return 0;
fail:
  ERR_clear_error();
  ctx_unref(ctx);
  return rc;
}

void usc_tls_ctx_free(usc_tls_ctx_t *ctx) { ctx_unref(ctx); }

/* ---- connections ---- */

int usc_tls_new(usc_tls_ctx_t *ctx, usc_tls_t **out) {
  usc_tls_t *tls = usc_calloc(1, sizeof(*tls));
  if (tls == NULL)
    return USC_ERR_NOMEM;
  BIO *bio = NULL;
  if ((tls->ssl = SSL_new(ctx->ssl_ctx)) == NULL ||
      (bio = BIO_new(ctx->bio_method)) == NULL) {
    SSL_free(tls->ssl);
    usc_free(tls);
    ERR_clear_error();
    return USC_ERR_NOMEM;
  }
  BIO_set_data(bio, tls);
  BIO_set_init(bio, 1);
  SSL_set_bio(tls->ssl, bio, bio);
  SSL_set_app_data(tls->ssl, tls);
  SSL_set_accept_state(tls->ssl);
  tls->ctx = ctx;
  ctx->refs++;
  *out = tls;
  return 0;
}

void usc_tls_free(usc_tls_t *tls) {
  if (tls == NULL)
    return;
  SSL_free(tls->ssl);
  ctx_unref(tls->ctx);
  usc_free(tls);
}

/* Ends a call that failed: the reason is kept for the logs. */
static int fail(usc_tls_t *tls, int rc) {
  tls->failed = true;
  if (rc == USC_ERR_NOMEM || tls->out_nomem) {
    tls->failure = tls->failure != NULL ? tls->failure : "out of memory";
    return USC_ERR_NOMEM;
  }
  if (tls->failure == NULL) {
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    tls->failure = reason != NULL ? reason : "TLS connection failed";
  }
  return USC_ERR_INVALID;
}

static int make_read_room(usc_tls_buf_t *plain) {
  if (plain->cap - plain->len >= MIN_READ_ROOM)
    return 0;
  uint8_t *grown = usc_grow(plain->data, &plain->cap,
                            plain->len + RECORD_PLAINTEXT, RECORD_PLAINTEXT);
  if (grown == NULL)
    return USC_ERR_NOMEM;
  plain->data = grown;
  return 0;
}

/* Reads until OpenSSL wants more input than there is. */
static int read_all(usc_tls_t *tls, usc_tls_buf_t *plain) {
  for (;;) {
    if (make_read_room(plain) != 0)
      return USC_ERR_NOMEM;
    size_t n = 0;
    int ok = SSL_read_ex(tls->ssl, plain->data + plain->len,
                         plain->cap - plain->len, &n);
    if (ok == 1) {
      plain->len += n;
      continue;
    }
    switch (SSL_get_error(tls->ssl, ok)) {
    case SSL_ERROR_WANT_READ:
      return tls->out_nomem ? USC_ERR_NOMEM : 0;
    case SSL_ERROR_ZERO_RETURN:
      tls->peer_closed = true;
      return 0;
    default:
      return USC_ERR_INVALID;
    }
  }
}

int usc_tls_feed(usc_tls_t *tls, const uint8_t *in, size_t len,
                 usc_tls_buf_t *plain, usc_tls_buf_t *out) {
  if (tls->failed)
    return USC_ERR_INVALID;
  if (tls->peer_closed || len == 0)
    return 0;
  ERR_clear_error();
  tls->in = in;
  tls->in_len = len;
  tls->out = out;
  tls->out_nomem = false;
  int rc = read_all(tls, plain);
  tls->established = SSL_is_init_finished(tls->ssl);
  if (rc != 0)
    rc = fail(tls, rc);
  tls->in = NULL;
  tls->in_len = 0;
  tls->out = NULL;
  ERR_clear_error();
  return rc;
}

int usc_tls_encrypt(usc_tls_t *tls, const uint8_t *plain, size_t len,
                    usc_tls_buf_t *out) {
  if (!tls->established || tls->failed)
    return USC_ERR_STATE;
  if (len == 0)
    return 0;
  ERR_clear_error();
  tls->out = out;
  tls->out_nomem = false;
  size_t written = 0;
  int rc = 0;
  if (SSL_write_ex(tls->ssl, plain, len, &written) != 1 || written != len)
    rc = fail(tls, USC_ERR_INVALID);
  tls->out = NULL;
  ERR_clear_error();
  return rc;
}

int usc_tls_close_notify(usc_tls_t *tls, usc_tls_buf_t *out) {
  if (!tls->established || tls->failed || tls->close_sent)
    return 0;
  tls->close_sent = true;
  ERR_clear_error();
  tls->out = out;
  tls->out_nomem = false;
  SSL_shutdown(tls->ssl);
  tls->out = NULL;
  ERR_clear_error();
  return tls->out_nomem ? USC_ERR_NOMEM : 0;
}

bool usc_tls_established(const usc_tls_t *tls) {
  return tls->established && !tls->failed;
}

bool usc_tls_peer_closed(const usc_tls_t *tls) { return tls->peer_closed; }

const char *usc_tls_failure(const usc_tls_t *tls) {
  return tls->failed ? tls->failure : NULL;
}

const char *usc_tls_version(const usc_tls_t *tls) {
  return SSL_get_version(tls->ssl);
}

const char *usc_tls_cipher(const usc_tls_t *tls) {
  return SSL_get_cipher_name(tls->ssl);
}
