/* creds: the sidecar's own credentials for the UAPI upstream, on the
 * sidecar's libuv loop. Three modes:
 *
 *  - NONE: the sidecar holds none; every answer says "forward the client's
 *    own `authorization` metadata" (a NULL value).
 *  - STATIC: a bearer token read from a file at start and read again when
 *    the file changes (as a mounted Kubernetes Secret does when the
 *    kubelet swaps its `..data` symlink). A failed re-read keeps the
 *    previous token.
 *  - OAUTH: an OAuth 2 client-credentials token fetched from a token URL
 *    with the upstream client, cached until shortly before it expires.
 *    One fetch at most is in flight; callers arriving meanwhile wait for
 *    it and are all answered when it ends.
 *
 * Tokens and secrets never appear in a log line, an error message or a
 * failure reason. There are no threads of ours: file changes are noticed
 * with a timer and uv_fs_stat (libuv's thread pool does the stat). */
#ifndef USC_CREDS_H
#define USC_CREDS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct usc_creds usc_creds_t;
typedef struct usc_creds_waiter usc_creds_waiter_t;

typedef enum {
  USC_CREDS_NONE = 0,
  USC_CREDS_STATIC,
  USC_CREDS_OAUTH,
} usc_creds_mode_t;

typedef enum {
  USC_CREDS_LOG_INFO,
  USC_CREDS_LOG_WARN,
} usc_creds_log_level_t;

/* `message` is one line without secrets, valid during the call. */
typedef void (*usc_creds_log_fn)(void *user, usc_creds_log_level_t level,
                                 const char *message);

typedef struct {
  usc_creds_mode_t mode;

  /* STATIC: the token file (--uapi-token-file). Surrounding whitespace is
   * trimmed; what is left must be a non-empty run of visible ASCII. */
  const char *token_file;

  /* OAUTH (--oauth-token-url, --oauth-client-id,
   * --oauth-client-secret-file). The URL is "http[s]://host[:port]/path
   * [?query]" without user information or fragment. The secret file is
   * trimmed like the token file and is also read again when it changes.
   * `scope` and `redirect_uri` are sent when not NULL. */
  const char *token_url;
  const char *client_id;
  const char *client_secret_file;
  const char *scope;
  const char *redirect_uri;
  const char *ca_file; /* PEM CAs for the token URL besides the system's */
  uint32_t request_timeout_ms; /* one token request; 0: 10 s */
  /* Least time between the starts of two token requests; 0: 1 s. */
  uint32_t retry_interval_ms;

  /* STATIC and OAUTH: how often the file is checked; 0: 1 s. */
  uint32_t poll_interval_ms;

  /* Milliseconds from any origin, for token lifetimes and the retry
   * interval; NULL: uv_now(loop). Tests pass a fake. Timers still wait in
   * loop time. */
  uint64_t (*clock)(void *clock_user);
  void *clock_user;

  usc_creds_log_fn log; /* NULL: nothing is logged */
  void *log_user;
} usc_creds_config_t;

/* What a get learns. Everything points into the credentials and is valid
 * only during the callback, and not after the callback itself calls
 * usc_creds_invalidate or usc_creds_close: copy what must outlive it. */
typedef struct {
  /* USC_OK; USC_ERR_IO: no token could be had (the token endpoint failed,
   * answered an error or garbage, or did so less than retry_interval_ms
   * ago), which a caller reports as UNAVAILABLE; USC_ERR_STATE: the
   * credentials are closing; USC_ERR_NOMEM. */
  int status;
  /* On USC_OK: the whole `authorization` header value, "Bearer <token>",
   * or NULL in NONE mode, meaning "forward the client's own". NULL on
   * failure. */
  const char *authorization;
  /* On failure: a sentence for logs and grpc-message, e.g. "token request
   * failed: HTTP 401 (invalid_client)"; NULL on USC_OK. */
  const char *reason;
} usc_creds_result_t;

typedef void (*usc_creds_done_fn)(void *user, const usc_creds_result_t *result);

/* Caller-owned, usually embedded in the caller's request; it must stay in
 * place from usc_creds_get until its callback starts or it is cancelled,
 * and serves one get at a time. The fields are private. Zero it before first
 * use, so that usc_creds_cancel is safe on a waiter never passed to
 * usc_creds_get. */
struct usc_creds_waiter {
  usc_creds_t *creds; /* non-NULL while queued */
  usc_creds_waiter_t *next;
  usc_creds_waiter_t *prev;
  struct usc_creds_list *list;
  usc_creds_done_fn done;
  void *user;
};

/* Checks the configuration and reads the files (an empty, unreadable or
 * malformed file is an error here). Returns 0 and sets *out, or
 * USC_ERR_INVALID / USC_ERR_IO / USC_ERR_NOMEM with a sentence in `error`
 * (a path may appear in it, never a file's contents). The strings in
 * `config` are copied. */
int usc_creds_new(uv_loop_t *loop, const usc_creds_config_t *config,
                  usc_creds_t **out, char *error, size_t error_cap);

usc_creds_mode_t usc_creds_mode(const usc_creds_t *creds);

/* Asks for the `authorization` value of one upstream request. `done` runs
 * exactly once, unless the waiter is cancelled first: before this returns
 * when the answer is known (NONE, STATIC, a cached OAuth token, a failure
 * less than retry_interval_ms old, closing), else later from the loop.
 * Callbacks may call any function of this module. */
void usc_creds_get(usc_creds_t *creds, usc_creds_waiter_t *waiter,
                   usc_creds_done_fn done, void *user);

/* Withdraws a waiting get: its callback is never called. Does nothing for
 * a waiter that is not waiting (answered, cancelled, or zeroed). */
void usc_creds_cancel(usc_creds_waiter_t *waiter);

/* Says that the upstream refused `authorization` (an HTTP 401). OAUTH:
 * the cached token is dropped if it is still that value, so that many
 * concurrent 401s cause one new token request, and a 401 for an older
 * token none. STATIC: the file is checked for a change at once rather
 * than at the next poll. NONE: nothing. */
void usc_creds_invalidate(usc_creds_t *creds, const char *authorization);

/* Answers every waiting get with USC_ERR_STATE before returning (their
 * callbacks are called), aborts a token request in flight, stops watching
 * files, and frees the credentials once libuv has closed its handles (the
 * loop must keep running until then); `on_closed` (may be NULL) runs
 * last. Gets made from then on are answered with USC_ERR_STATE at once.
 * Accepts NULL. */
void usc_creds_close(usc_creds_t *creds, void (*on_closed)(void *),
                     void *closed_user);

#endif
