/* watch: the credentials' secret files, watched with src/filewatch. Each
 * version read is trimmed and checked here; the first one goes to the
 * caller of watch_init, later ones to the mode's `changed` callback. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/creds/internal.h"

static const char *kept_name(const watch_t *w) {
  return w->kind == CONTENT_TOKEN ? "token" : "client secret";
}

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
         c == '\f';
}

static bool all_visible(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
      return false;
  }
  return true;
}

/* Trims the contents and checks them; the copy goes where it belongs. */
static int take(void *user, const char *buf, size_t len, char *error,
                size_t error_cap) {
  watch_t *w = user;
  while (len > 0 && is_space(buf[0])) {
    buf++;
    len--;
  }
  while (len > 0 && is_space(buf[len - 1]))
    len--;
  if (len == 0) {
    snprintf(error, error_cap, "is empty");
    return USC_ERR_INVALID;
  }
  if (w->kind == CONTENT_TOKEN && !all_visible(buf, len)) {
    snprintf(error, error_cap,
             "holds characters a bearer token cannot have (spaces or "
             "control characters inside it)");
    return USC_ERR_INVALID;
  }
  char *copy = usc_strndup(buf, len);
  if (copy == NULL) {
    snprintf(error, error_cap, "cannot be kept: out of memory");
    return USC_ERR_NOMEM;
  }
  if (w->first != NULL) {
    *w->first = copy;
    w->first = NULL;
  } else {
    w->changed(w->creds, copy);
  }
  return 0;
}

/* Logs once per streak of failures; what was read before stays. */
static void failed(void *user, const char *why) {
  watch_t *w = user;
  creds_logf(w->creds, USC_CREDS_LOG_WARN, "%s; keeping the previous %s", why,
             kept_name(w));
}

int watch_init(usc_creds_t *creds, watch_t *w, const char *path,
               const char *what, content_kind_t kind, watch_changed_fn changed,
               char **contents, char *error, size_t error_cap) {
  w->creds = creds;
  w->what = what;
  w->kind = kind;
  w->changed = changed;
  w->first = contents;
  w->path = usc_strdup(path);
  if (w->path == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  usc_filewatch_config_t config = {
      .path = path,
      .what = what,
      .max_size = CREDS_MAX_FILE,
      .take = take,
      .failed = failed,
      .user = w,
  };
  int rc = usc_filewatch_new(creds->loop, &config, &w->file, error, error_cap);
  w->first = NULL;
  return rc;
}

void watch_check_now(watch_t *w) {
  if (w->file != NULL)
    usc_filewatch_check_now(w->file);
}

void watch_start(watch_t *w, uint32_t interval_ms) {
  if (w->file != NULL)
    usc_filewatch_start(w->file, interval_ms);
}

static void on_file_closed(void *user) { creds_part_closed(user); }

void watch_close(watch_t *w) {
  usc_filewatch_t *file = w->file;
  if (file == NULL)
    return;
  w->file = NULL;
  w->creds->closing_parts++;
  usc_filewatch_close(file, on_file_closed, w->creds);
}

void watch_free(watch_t *w) {
  /* A file never started (the construction failed later) closes at once. */
  usc_filewatch_close(w->file, NULL, NULL);
  w->file = NULL;
  usc_free(w->path);
  w->path = NULL;
}
