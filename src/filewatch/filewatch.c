#include "src/filewatch/filewatch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/base/base.h"

#define DEFAULT_MAX_SIZE (16 * 1024)
#define DEFAULT_INTERVAL_MS 1000

/* Identity of a file's version: a rename over it or a symlink swap changes
 * the inode, an in-place write the times or size. */
typedef struct {
  uint64_t dev;
  uint64_t ino;
  uint64_t size;
  int64_t mtime_sec;
  int64_t mtime_nsec;
  int64_t ctime_sec;
  int64_t ctime_nsec;
} file_id_t;

struct usc_filewatch {
  uv_loop_t *loop;
  char *path;
  const char *what;
  size_t max_size;
  usc_filewatch_take_fn take;
  usc_filewatch_failed_fn failed;
  void *user;
  file_id_t id; /* of the last version taken */
  uv_timer_t timer;
  uv_fs_t stat_req;
  bool started;      /* the timer is initialised */
  bool stat_pending; /* stat_req is in the thread pool */
  bool failing;      /* the last check failed; told once per streak */
  bool closing;
  int closing_parts; /* the timer and a stat in flight */
  void (*on_closed)(void *);
  void *closed_user;
};

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

/* ---- reading ---- */

/* Reads at most max_size + 1 bytes of an open regular file. */
static int read_fd(const usc_filewatch_t *w, int fd, char *buf, size_t *len,
                   char *error, size_t error_cap) {
  *len = 0;
  while (*len <= w->max_size) {
    ssize_t n = read(fd, buf + *len, w->max_size + 1 - *len);
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
  if (*len > w->max_size) {
    snprintf(error, error_cap, "%s %s is over %zu bytes", w->what, w->path,
             w->max_size);
    return USC_ERR_TOO_LARGE;
  }
  return 0;
}

/* Checks what was opened: a FIFO or a device could block or never end. */
static int check_fd(const usc_filewatch_t *w, int fd, file_id_t *id,
                    char *error, size_t error_cap) {
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

static int offer(const usc_filewatch_t *w, const char *buf, size_t len,
                 char *error, size_t error_cap) {
  if (memchr(buf, '\0', len) != NULL) {
    snprintf(error, error_cap, "%s %s holds a NUL byte", w->what, w->path);
    return USC_ERR_INVALID;
  }
  char why[384] = "";
  int rc = w->take(w->user, buf, len, why, sizeof(why));
  if (rc != 0)
    snprintf(error, error_cap, "%s %s %s", w->what, w->path,
             why[0] ? why : "was refused");
  return rc;
}

/* Reads the file and offers it; *id is its version when it was taken. */
static int read_file(const usc_filewatch_t *w, file_id_t *id, char *error,
                     size_t error_cap) {
  int fd = open(w->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    snprintf(error, error_cap, "cannot read %s %s: %s", w->what, w->path,
             strerror(errno));
    return USC_ERR_IO;
  }
  char *buf = usc_malloc(w->max_size + 1);
  if (buf == NULL) {
    close(fd);
    snprintf(error, error_cap, "out of memory reading %s %s", w->what, w->path);
    return USC_ERR_NOMEM;
  }
  size_t len = 0;
  int rc = check_fd(w, fd, id, error, error_cap);
  if (rc == 0)
    rc = read_fd(w, fd, buf, &len, error, error_cap);
  close(fd);
  if (rc == 0) {
    buf[len] = '\0';
    rc = offer(w, buf, len, error, error_cap);
  }
  explicit_bzero(buf, len);
  usc_free(buf);
  return rc;
}

static void watch_free(usc_filewatch_t *w) {
  usc_free(w->path);
  usc_free(w);
}

int usc_filewatch_new(uv_loop_t *loop, const usc_filewatch_config_t *config,
                      usc_filewatch_t **out, char *error, size_t error_cap) {
  usc_filewatch_t *w = usc_calloc(1, sizeof(*w));
  char *path = usc_strdup(config->path);
  if (w == NULL || path == NULL) {
    usc_free(w);
    usc_free(path);
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  w->loop = loop;
  w->path = path;
  w->what = config->what;
  w->max_size = config->max_size ? config->max_size : DEFAULT_MAX_SIZE;
  w->take = config->take;
  w->failed = config->failed;
  w->user = config->user;
  int rc = read_file(w, &w->id, error, error_cap);
  if (rc != 0) {
    watch_free(w);
    return rc;
  }
  *out = w;
  return 0;
}

const char *usc_filewatch_path(const usc_filewatch_t *w) { return w->path; }

/* ---- checking ---- */

static void check_failed(usc_filewatch_t *w, const char *why) {
  if (!w->failing && w->failed != NULL)
    w->failed(w->user, why);
  w->failing = true;
}

static void reread(usc_filewatch_t *w) {
  char error[512];
  file_id_t id;
  if (read_file(w, &id, error, sizeof(error)) != 0) {
    check_failed(w, error);
    return;
  }
  w->id = id;
  w->failing = false;
}

static void part_closed(usc_filewatch_t *w) {
  if (--w->closing_parts > 0)
    return;
  void (*on_closed)(void *) = w->on_closed;
  void *closed_user = w->closed_user;
  watch_free(w);
  if (on_closed != NULL)
    on_closed(closed_user);
}

static void on_stat(uv_fs_t *req) {
  usc_filewatch_t *w = USC_CONTAINER_OF(req, usc_filewatch_t, stat_req);
  ssize_t result = req->result;
  file_id_t id = {0};
  if (result == 0)
    id = id_from_uv(&req->statbuf);
  uv_fs_req_cleanup(req);
  w->stat_pending = false;
  if (w->closing) {
    part_closed(w);
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

void usc_filewatch_check_now(usc_filewatch_t *w) {
  if (!w->started || w->stat_pending || w->closing)
    return;
  if (uv_fs_stat(w->loop, &w->stat_req, w->path, on_stat) == 0)
    w->stat_pending = true;
}

static void on_timer(uv_timer_t *timer) {
  usc_filewatch_check_now(timer->data);
}

void usc_filewatch_start(usc_filewatch_t *w, uint32_t interval_ms) {
  if (w->started || w->closing)
    return;
  if (interval_ms == 0)
    interval_ms = DEFAULT_INTERVAL_MS;
  uv_timer_init(w->loop, &w->timer);
  w->timer.data = w;
  uv_timer_start(&w->timer, on_timer, interval_ms, interval_ms);
  w->started = true;
}

static void on_timer_closed(uv_handle_t *handle) { part_closed(handle->data); }

void usc_filewatch_close(usc_filewatch_t *w, void (*on_closed)(void *),
                         void *closed_user) {
  if (w == NULL || w->closing)
    return;
  w->closing = true;
  w->on_closed = on_closed;
  w->closed_user = closed_user;
  /* One part for this function, so that nothing closing synchronously
   * below can free the watch under it. */
  w->closing_parts = 1;
  if (w->started) {
    w->closing_parts++;
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
  }
  if (w->stat_pending) {
    /* The callback runs either way (UV_ECANCELED when the thread pool had
     * not started it) and counts itself closed. */
    w->closing_parts++;
    uv_cancel((uv_req_t *)&w->stat_req);
  }
  part_closed(w);
}
