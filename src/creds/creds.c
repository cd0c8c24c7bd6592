/* creds: lifecycle, the waiter lists and the public entry points. The
 * file watching is in watch.c, the token endpoint in oauth.c. */
#include "src/creds/creds.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/creds/internal.h"

#define DEFAULT_POLL_MS 1000

/* ---- small helpers ---- */

uint64_t creds_now(const usc_creds_t *creds) {
  if (creds->clock != NULL)
    return creds->clock(creds->clock_user);
  return uv_now(creds->loop);
}

void creds_logf(const usc_creds_t *creds, usc_creds_log_level_t level,
                const char *fmt, ...) {
  if (creds->log == NULL)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  creds->log(creds->log_user, level, line);
}

void creds_free_secret(char *s) {
  if (s == NULL)
    return;
  /* Freed heap is handed out again: leave no token behind in it. */
  explicit_bzero(s, strlen(s));
  usc_free(s);
}

char *creds_bearer(const char *token) {
  static const char prefix[] = "Bearer ";
  size_t len = strlen(token);
  char *value = usc_malloc(sizeof(prefix) + len);
  if (value == NULL)
    return NULL;
  memcpy(value, prefix, sizeof(prefix) - 1);
  memcpy(value + sizeof(prefix) - 1, token, len + 1);
  return value;
}

/* ---- waiter lists ---- */

static void list_push(struct usc_creds_list *list, usc_creds_waiter_t *w) {
  w->list = list;
  w->next = NULL;
  w->prev = list->last;
  if (list->last != NULL)
    list->last->next = w;
  else
    list->first = w;
  list->last = w;
}

static void list_remove(usc_creds_waiter_t *w) {
  struct usc_creds_list *list = w->list;
  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    list->first = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  else
    list->last = w->prev;
  w->next = w->prev = NULL;
  w->list = NULL;
}

/* Moves every waiter of `from` to the end of `to`. */
static void list_splice(struct usc_creds_list *to,
                        struct usc_creds_list *from) {
  usc_creds_waiter_t *w;
  while ((w = from->first) != NULL) {
    list_remove(w);
    list_push(to, w);
  }
}

/* Unqueues the waiter first, so that its callback may reuse it. */
static void answer(usc_creds_waiter_t *w, int status, const char *value,
                   const char *reason) {
  if (w->list != NULL)
    list_remove(w);
  w->creds = NULL;
  usc_creds_result_t result = {status, status == USC_OK ? value : NULL,
                               status == USC_OK ? NULL : reason};
  w->done(w->user, &result);
}

/* Answers the waiters of `ready` one by one. A callback may cancel others
 * (they leave the list), add new gets, or invalidate the very token being
 * handed out: the rest then wait for the next one instead. */
static void answer_ready(usc_creds_t *creds, int status, const char *reason) {
  usc_creds_waiter_t *w;
  while ((w = creds->ready.first) != NULL) {
    if (status == USC_OK && creds->mode == USC_CREDS_OAUTH &&
        creds->authorization == NULL) {
      list_splice(&creds->pending, &creds->ready);
      oauth_want_token(creds, false);
      return;
    }
    answer(w, status, creds->authorization, reason);
  }
}

void creds_answer_pending(usc_creds_t *creds, int status, const char *reason) {
  list_splice(&creds->ready, &creds->pending);
  answer_ready(creds, status, reason);
}

/* ---- construction ---- */

static void on_token_file_changed(usc_creds_t *creds, char *token) {
  char *value = creds_bearer(token);
  creds_free_secret(token);
  if (value != NULL && strcmp(value, creds->authorization) == 0) {
    creds_free_secret(value); /* rewritten with the same token */
    return;
  }
  if (value == NULL) {
    creds_logf(creds, USC_CREDS_LOG_WARN,
               "no memory for the new token of %s; keeping the previous one",
               creds->watch.path);
    return;
  }
  creds_free_secret(creds->authorization);
  creds->authorization = value;
  creds_logf(creds, USC_CREDS_LOG_INFO, "token file %s changed; token reloaded",
             creds->watch.path);
}

static int static_init(usc_creds_t *creds, const usc_creds_config_t *config,
                       char *error, size_t error_cap) {
  if (config->token_file == NULL || config->token_file[0] == '\0') {
    snprintf(error, error_cap, "a token file is required");
    return USC_ERR_INVALID;
  }
  char *token = NULL;
  int rc = watch_init(creds, &creds->watch, config->token_file, "token file",
                      CONTENT_TOKEN, on_token_file_changed, &token, error,
                      error_cap);
  if (rc != 0)
    return rc;
  creds->authorization = creds_bearer(token);
  creds_free_secret(token);
  if (creds->authorization == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  return 0;
}

static void creds_free(usc_creds_t *creds) {
  creds_free_secret(creds->authorization);
  watch_free(&creds->watch);
  oauth_free(creds);
  usc_free(creds);
}

static int mode_init(usc_creds_t *creds, const usc_creds_config_t *config,
                     char *error, size_t error_cap) {
  switch (config->mode) {
  case USC_CREDS_NONE:
    return 0;
  case USC_CREDS_STATIC:
    return static_init(creds, config, error, error_cap);
  case USC_CREDS_OAUTH:
    return oauth_init(creds, config, error, error_cap);
  }
  snprintf(error, error_cap, "unknown credentials mode %d", (int)config->mode);
  return USC_ERR_INVALID;
}

int usc_creds_new(uv_loop_t *loop, const usc_creds_config_t *config,
                  usc_creds_t **out, char *error, size_t error_cap) {
  if (error_cap > 0)
    error[0] = '\0';
  usc_creds_t *creds = usc_calloc(1, sizeof(*creds));
  if (creds == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  creds->loop = loop;
  creds->mode = config->mode;
  creds->clock = config->clock;
  creds->clock_user = config->clock_user;
  creds->log = config->log;
  creds->log_user = config->log_user;
  int rc = mode_init(creds, config, error, error_cap);
  if (rc != 0) {
    creds_free(creds);
    return rc;
  }
  /* Initialised in every mode so that closing is always asynchronous. */
  uv_timer_init(loop, &creds->retry_timer);
  creds->retry_timer.data = creds;
  watch_start(&creds->watch, config->poll_interval_ms ? config->poll_interval_ms
                                                      : DEFAULT_POLL_MS);
  *out = creds;
  return 0;
}

usc_creds_mode_t usc_creds_mode(const usc_creds_t *creds) {
  return creds->mode;
}

/* ---- gets ---- */

static void oauth_get(usc_creds_t *creds, usc_creds_waiter_t *w) {
  uint64_t now = creds_now(creds);
  if (creds->authorization != NULL && now < creds->dead_at) {
    /* Still good: the caller need not wait for its successor. */
    if (now >= creds->refresh_at)
      oauth_want_token(creds, true);
    if (creds->authorization != NULL) {
      answer(w, USC_OK, creds->authorization, NULL);
      return;
    }
  }
  creds_free_secret(creds->authorization);
  creds->authorization = NULL;
  list_push(&creds->pending, w);
  oauth_want_token(creds, false);
}

void usc_creds_get(usc_creds_t *creds, usc_creds_waiter_t *w,
                   usc_creds_done_fn done, void *user) {
  w->creds = creds;
  w->done = done;
  w->user = user;
  w->list = NULL;
  w->next = w->prev = NULL;
  if (creds->closing) {
    answer(w, USC_ERR_STATE, NULL, "credentials are shutting down");
    return;
  }
  switch (creds->mode) {
  case USC_CREDS_NONE:
    answer(w, USC_OK, NULL, NULL);
    return;
  case USC_CREDS_STATIC:
    answer(w, USC_OK, creds->authorization, NULL);
    return;
  case USC_CREDS_OAUTH:
    oauth_get(creds, w);
    return;
  }
}

void usc_creds_cancel(usc_creds_waiter_t *w) {
  if (w == NULL || w->creds == NULL)
    return;
  if (w->list != NULL)
    list_remove(w);
  w->creds = NULL;
}

void usc_creds_invalidate(usc_creds_t *creds, const char *authorization) {
  if (creds->closing || authorization == NULL || creds->authorization == NULL ||
      strcmp(authorization, creds->authorization) != 0)
    return;
  if (creds->mode == USC_CREDS_STATIC) {
    watch_check_now(&creds->watch);
    return;
  }
  creds_logf(creds, USC_CREDS_LOG_INFO,
             "the upstream refused the OAuth token; a new one will be "
             "requested");
  creds_free_secret(creds->authorization);
  creds->authorization = NULL;
}

/* ---- closing ---- */

void creds_part_closed(usc_creds_t *creds) {
  if (--creds->closing_parts > 0)
    return;
  void (*on_closed)(void *) = creds->on_closed;
  void *closed_user = creds->closed_user;
  creds_free(creds);
  if (on_closed != NULL)
    on_closed(closed_user);
}

static void on_retry_timer_closed(uv_handle_t *handle) {
  creds_part_closed(handle->data);
}

void usc_creds_close(usc_creds_t *creds, void (*on_closed)(void *),
                     void *closed_user) {
  if (creds == NULL || creds->closing)
    return;
  creds->closing = true;
  creds->on_closed = on_closed;
  creds->closed_user = closed_user;
  /* One part for this function, so that nothing closing synchronously
   * below can free the credentials under it. */
  creds->closing_parts = 1;
  list_splice(&creds->ready, &creds->pending);
  answer_ready(creds, USC_ERR_STATE, "credentials are shutting down");
  oauth_close(creds);
  watch_close(&creds->watch);
  creds->closing_parts++;
  uv_close((uv_handle_t *)&creds->retry_timer, on_retry_timer_closed);
  creds_part_closed(creds);
}
