/* creds internals shared by creds.c (lifecycle, waiters), watch.c (files)
 * and oauth.c (the token endpoint). */
#ifndef USC_CREDS_INTERNAL_H
#define USC_CREDS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "src/creds/creds.h"
#include "src/filewatch/filewatch.h"
#include "src/upstream/upstream.h"

/* A bearer token longer than this is surely a mistake (JWTs run to a few
 * KiB); files are capped at the same size. */
#define CREDS_MAX_FILE (16 * 1024)

struct usc_creds_list {
  usc_creds_waiter_t *first;
  usc_creds_waiter_t *last;
};

typedef enum {
  CONTENT_TOKEN,  /* visible ASCII only: it goes into a header */
  CONTENT_SECRET, /* any bytes but NUL: it is form-encoded */
} content_kind_t;

typedef struct watch watch_t;

/* Takes ownership of `contents` (NUL-terminated, trimmed, checked). */
typedef void (*watch_changed_fn)(usc_creds_t *creds, char *contents);

/* A secret file, watched with src/filewatch. */
struct watch {
  usc_creds_t *creds;
  usc_filewatch_t *file; /* NULL before init and once closing */
  char *path;
  const char *what; /* "token file", for messages */
  content_kind_t kind;
  watch_changed_fn changed;
  char **first; /* during init: where the first contents go */
};

struct usc_creds {
  uv_loop_t *loop;
  usc_creds_mode_t mode;
  uint64_t (*clock)(void *);
  void *clock_user;
  usc_creds_log_fn log;
  void *log_user;

  /* "Bearer <token>": STATIC always, OAUTH while cached. */
  char *authorization;
  watch_t watch; /* the token file, or the client secret file */

  /* OAUTH. */
  usc_upstream_t *client;
  usc_upstream_req_t *req; /* the token request in flight */
  char *token_url;         /* for log lines */
  char *path;              /* path and query of the token URL */
  char *client_id;
  char *client_secret;
  char *scope;
  char *redirect_uri;
  uint32_t request_timeout_ms;
  uint32_t retry_interval_ms;
  uint64_t refresh_at; /* from then on a new token is fetched ... */
  uint64_t dead_at;    /* ... and from then on the cached one is unusable */
  bool attempted;
  bool last_failed;
  int last_status;         /* of the last failure: USC_ERR_IO or _NOMEM */
  char logged_reason[256]; /* so that an outage is logged once */
  uint64_t last_attempt;   /* clock time the last request started */
  uv_timer_t retry_timer;  /* starts a request once the interval passed */
  char reason[256];        /* of the last failure */

  struct usc_creds_list pending; /* waiting for a token request */
  struct usc_creds_list ready;   /* being answered */

  bool closing;
  int closing_parts; /* handles, requests and the client still closing */
  void (*on_closed)(void *);
  void *closed_user;
};

/* creds.c */
uint64_t creds_now(const usc_creds_t *creds);
void creds_logf(const usc_creds_t *creds, usc_creds_log_level_t level,
                const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Answers every pending waiter with the current token or the failure. */
void creds_answer_pending(usc_creds_t *creds, int status, const char *reason);
void creds_part_closed(usc_creds_t *creds);
/* Frees and wipes a string that may hold a secret. Accepts NULL. */
void creds_free_secret(char *s);
/* "Bearer <token>", or NULL without memory. */
char *creds_bearer(const char *token);

/* watch.c */
/* Reads the file a first time. Returns 0, or an error with a sentence. */
int watch_init(usc_creds_t *creds, watch_t *w, const char *path,
               const char *what, content_kind_t kind, watch_changed_fn changed,
               char **contents, char *error, size_t error_cap);
/* Starts checking every `interval_ms`; nothing without a file. */
void watch_start(watch_t *w, uint32_t interval_ms);
/* Checks the file now unless a check is under way. */
void watch_check_now(watch_t *w);
/* Stops watching; the file's closing is one of the closing parts. */
void watch_close(watch_t *w);
void watch_free(watch_t *w);

/* oauth.c */
int oauth_init(usc_creds_t *creds, const usc_creds_config_t *config,
               char *error, size_t error_cap);
/* Makes sure a token request will answer the pending waiters: one is in
 * flight or scheduled, or starts now; or the waiters are answered at once
 * with the last failure when it is too recent to try again. With
 * `background`, the caller holds a usable token: nothing is scheduled and
 * no waiter is answered. */
void oauth_want_token(usc_creds_t *creds, bool background);
void oauth_close(usc_creds_t *creds);
void oauth_free(usc_creds_t *creds);

#endif
