/* watch: reads a small secret file and notices when it changes.
 *
 * A timer starts a uv_fs_stat (in libuv's thread pool, so a slow file
 * system never stalls the loop) of the path, which follows symlinks, so a
 * kubelet swapping a Secret volume's `..data` symlink shows up as another
 * inode. The result is compared with the fstat of the last successful
 * read rather than with the previous stat, so that a change between the
 * first read and the first check is not missed (uv_fs_poll would miss
 * it). A changed file is read again synchronously: it is a few bytes that
 * stat has just found. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/base/base.h"
#include "src/creds/internal.h"

static file_id_t id_from_stat(const struct stat *st) {
  return (file_id_t){(uint64_t)st->st_dev,  (uint64_t)st->st_ino,
                     (uint64_t)st->st_size, st->st_mtim.tv_sec,
                     st->st_mtim.tv_nsec,   st->st_ctim.tv_sec,
                     st->st_ctim.tv_nsec};
}

static file_id_t id_from_uv(const uv_stat_t *st) {
  return (file_id_t){st->st_dev,          st->st_ino,
                     st->st_size,         st->st_mtim.tv_sec,
                     st->st_mtim.tv_nsec, st->st_ctim.tv_sec,
                     st->st_ctim.tv_nsec};
}

static bool id_equal(const file_id_t *a, const file_id_t *b) {
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec &&
         a->ctime_sec == b->ctime_sec && a->ctime_nsec == b->ctime_nsec;
}

static const char *kept_name(const watch_t *w) {
  return w->kind == CONTENT_TOKEN ? "token" : "client secret";
}

/* ---- reading ---- */

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

/* Trims `buf` and checks it; *out gets a copy of what is left. */
static int take_contents(const watch_t *w, const char *buf, size_t len,
                         char **out, char *error, size_t error_cap) {
  if (memchr(buf, '\0', len) != NULL) {
    snprintf(error, error_cap, "%s %s holds a NUL byte", w->what, w->path);
    return USC_ERR_INVALID;
  }
  while (len > 0 && is_space(buf[0])) {
    buf++;
    len--;
  }
  while (len > 0 && is_space(buf[len - 1]))
    len--;
  if (len == 0) {
    snprintf(error, error_cap, "%s %s is empty", w->what, w->path);
    return USC_ERR_INVALID;
  }
  if (w->kind == CONTENT_TOKEN && !all_visible(buf, len)) {
    snprintf(error, error_cap,
             "%s %s holds characters a bearer token cannot have (spaces "
             "or control characters inside it)",
             w->what, w->path);
    return USC_ERR_INVALID;
  }
  *out = usc_strndup(buf, len);
  if (*out == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  return 0;
}

/* Reads at most CREDS_MAX_FILE + 1 bytes of an open regular file. */
static int read_fd(const watch_t *w, int fd, char *buf, size_t *len,
                   char *error, size_t error_cap) {
  *len = 0;
  while (*len <= CREDS_MAX_FILE) {
    ssize_t n = read(fd, buf + *len, CREDS_MAX_FILE + 1 - *len);
    if (n == 0)
      break;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      snprintf(error, error_cap, "cannot read %s %s: %s", w->what, w->path,
               strerror(errno));
      return USC_ERR_IO;
    }
    *len += (size_t)n;
  }
  if (*len > CREDS_MAX_FILE) {
    snprintf(error, error_cap, "%s %s is over %d bytes", w->what, w->path,
             CREDS_MAX_FILE);
    return USC_ERR_TOO_LARGE;
  }
  return 0;
}

/* Checks what was opened: a FIFO or a device could block or never end. */
static int check_fd(const watch_t *w, int fd, file_id_t *id, char *error,
                    size_t error_cap) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    snprintf(error, error_cap, "cannot read %s %s: %s", w->what, w->path,
             strerror(errno));
    return USC_ERR_IO;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(error, error_cap, "%s %s is not a regular file", w->what, w->path);
    return USC_ERR_INVALID;
  }
  *id = id_from_stat(&st);
  return 0;
}

static int read_file(const watch_t *w, char **contents, file_id_t *id,
                     char *error, size_t error_cap) {
  int fd = open(w->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    snprintf(error, error_cap, "cannot read %s %s: %s", w->what, w->path,
             strerror(errno));
    return USC_ERR_IO;
  }
  char *buf = usc_malloc(CREDS_MAX_FILE + 1);
  if (buf == NULL) {
    close(fd);
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  size_t len = 0;
  int rc = check_fd(w, fd, id, error, error_cap);
  if (rc == 0)
    rc = read_fd(w, fd, buf, &len, error, error_cap);
  close(fd);
  if (rc == 0)
    rc = take_contents(w, buf, len, contents, error, error_cap);
  explicit_bzero(buf, len);
  usc_free(buf);
  return rc;
}

int watch_init(usc_creds_t *creds, watch_t *w, const char *path,
               const char *what, content_kind_t kind, watch_changed_fn changed,
               char **contents, char *error, size_t error_cap) {
  w->creds = creds;
  w->what = what;
  w->kind = kind;
  w->changed = changed;
  w->path = usc_strdup(path);
  if (w->path == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  return read_file(w, contents, &w->id, error, error_cap);
}

/* ---- checking ---- */

/* Logs once per streak of failures, and keeps what was read before. */
static void check_failed(watch_t *w, const char *why) {
  if (!w->failing)
    creds_logf(w->creds, USC_CREDS_LOG_WARN, "%s; keeping the previous %s", why,
               kept_name(w));
  w->failing = true;
}

static void reread(watch_t *w) {
  char error[512];
  char *contents = NULL;
  file_id_t id;
  if (read_file(w, &contents, &id, error, sizeof(error)) != 0) {
    check_failed(w, error);
    return;
  }
  w->id = id;
  w->failing = false;
  w->changed(w->creds, contents);
}

static void on_stat(uv_fs_t *req) {
  watch_t *w = USC_CONTAINER_OF(req, watch_t, stat_req);
  ssize_t result = req->result;
  file_id_t id = {0};
  if (result == 0)
    id = id_from_uv(&req->statbuf);
  uv_fs_req_cleanup(req);
  w->stat_pending = false;
  if (w->creds->closing) {
    creds_part_closed(w->creds);
    return;
  }
  if (result < 0) {
    char why[512];
    snprintf(why, sizeof(why), "cannot read %s %s: %s", w->what, w->path,
             uv_strerror((int)result));
    check_failed(w, why);
    return;
  }
  if (!id_equal(&id, &w->id) || w->failing)
    reread(w);
}

void watch_check_now(watch_t *w) {
  if (!w->started || w->stat_pending || w->creds->closing)
    return;
  if (uv_fs_stat(w->creds->loop, &w->stat_req, w->path, on_stat) == 0)
    w->stat_pending = true;
}

static void on_timer(uv_timer_t *timer) { watch_check_now(timer->data); }

void watch_start(watch_t *w, uint32_t interval_ms) {
  if (w->path == NULL)
    return;
  uv_timer_init(w->creds->loop, &w->timer);
  w->timer.data = w;
  uv_timer_start(&w->timer, on_timer, interval_ms, interval_ms);
  w->started = true;
}

static void on_timer_closed(uv_handle_t *handle) {
  watch_t *w = handle->data;
  creds_part_closed(w->creds);
}

void watch_close(watch_t *w) {
  if (!w->started)
    return;
  w->creds->closing_parts++;
  uv_close((uv_handle_t *)&w->timer, on_timer_closed);
  if (w->stat_pending) {
    /* The callback runs either way (UV_ECANCELED when the thread pool had
     * not started it) and counts itself closed. */
    w->creds->closing_parts++;
    uv_cancel((uv_req_t *)&w->stat_req);
  }
}

void watch_free(watch_t *w) {
  usc_free(w->path);
  w->path = NULL;
}
