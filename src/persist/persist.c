/* The --state-file: see persist.h. */
#include "src/persist/persist.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "src/base/base.h"
#include "src/log/log.h"

#define NS_PER_MS 1000000

/* One serialized state on its way to the file. */
typedef struct {
  uv_work_t work;
  usc_persist_t *p;
  uint8_t *bytes;
  size_t len;
  size_t calls;
  uint64_t changes; /* usc_state_changes when serialized */
  uint64_t serialize_ns, write_ns;
  /* Set by the thread pool: the failed step and errno, or step NULL. */
  const char *step;
  int errnum;
} job_t;

struct usc_persist {
  uv_loop_t *loop;
  usc_state_t *state; /* NULL once closing */
  uint64_t interval_ms;
  int64_t (*clock)(void *clock_user);
  void *clock_user;
  uv_timer_t timer;
  int lock_fd;
  job_t *writing; /* on the thread pool, or NULL */
  job_t *pending; /* the last state, serialized at close during a write */
  uint64_t saved_changes;
  bool failing; /* the last write failed */
  void (*on_closed)(void *user);
  void *closed_user;
  usc_persist_stats_t stats;
  char path[];
};

/* ---- the file work (any thread) ---- */

static int io_failed(const char **step, int *errnum, const char *what) {
  *step = what;
  *errnum = errno;
  return USC_ERR_IO;
}

static int write_all(int fd, const uint8_t *bytes, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, bytes, len < (1u << 30) ? len : (1u << 30));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    bytes += n;
    len -= (size_t)n;
  }
  return 0;
}

/* The directory holding `path`, for its fsync after the rename. */
static bool dir_of(const char *path, char *dir, size_t cap) {
  const char *slash = strrchr(path, '/');
  size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
  if (n + 2 > cap)
    return false;
  if (n == 0) {
    strcpy(dir, ".");
  } else {
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  return true;
}

static int sync_dir(const char *dir, const char **step, int *errnum) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return io_failed(step, errnum, "opening the directory");
  int rc =
      fsync(fd) != 0 ? io_failed(step, errnum, "syncing the directory") : 0;
  close(fd);
  return rc;
}

/* Writes PATH.tmp, syncs it and renames it over PATH; on a failure before
 * the rename, PATH.tmp is removed. */
static int write_atomically(const char *path, const uint8_t *bytes, size_t len,
                            const char **step, int *errnum) {
  char tmp[PATH_MAX], dir[PATH_MAX];
  errno = ENAMETOOLONG;
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp ||
      !dir_of(path, dir, sizeof dir))
    return io_failed(step, errnum, "naming the temporary file");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return io_failed(step, errnum, "creating the temporary file");
  int rc = 0;
  if (write_all(fd, bytes, len) != 0)
    rc = io_failed(step, errnum, "writing the temporary file");
  else if (fsync(fd) != 0)
    rc = io_failed(step, errnum, "syncing the temporary file");
  if (close(fd) != 0 && rc == 0)
    rc = io_failed(step, errnum, "closing the temporary file");
  if (rc == 0 && rename(tmp, path) != 0)
    rc = io_failed(step, errnum, "renaming the temporary file");
  if (rc != 0) {
    unlink(tmp);
    return rc;
  }
  return sync_dir(dir, step, errnum);
}

int usc_persist_write_file(const char *path, const uint8_t *bytes, size_t len,
                           char *error, size_t error_cap) {
  const char *step = NULL;
  int errnum = 0;
  int rc = write_atomically(path, bytes, len, &step, &errnum);
  if (rc != 0)
    snprintf(error, error_cap, "%s: %s %s", path, step, strerror(errnum));
  return rc;
}

static int read_all(int fd, uint8_t *bytes, size_t cap, size_t *len) {
  size_t n = 0;
  while (n < cap) {
    ssize_t got = read(fd, bytes + n, cap - n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      return -1;
    if (got == 0)
      break;
    n += (size_t)got;
  }
  *len = n;
  return 0;
}

int usc_persist_read_file(const char *path, uint8_t **bytes, size_t *len,
                          char *error, size_t error_cap) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    return USC_ERR_NOT_FOUND;
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(error, error_cap, "%s: cannot read it: %s", path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return USC_ERR_IO;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(error, error_cap, "%s: cannot read it: not a regular file", path);
    close(fd);
    return USC_ERR_IO;
  }
  size_t cap = (size_t)st.st_size;
  uint8_t *buf = usc_malloc(cap > 0 ? cap : 1);
  if (buf == NULL) {
    close(fd);
    snprintf(error, error_cap, "%s: no memory for its %zu bytes", path, cap);
    return USC_ERR_NOMEM;
  }
  size_t n = 0;
  if (read_all(fd, buf, cap, &n) != 0) {
    snprintf(error, error_cap, "%s: cannot read it: %s", path, strerror(errno));
    close(fd);
    usc_free(buf);
    return USC_ERR_IO;
  }
  close(fd);
  *bytes = buf;
  *len = n;
  return 0;
}

/* ---- writes on the thread pool ---- */

static void job_free(job_t *job) {
  if (job != NULL)
    usc_free(job->bytes);
  usc_free(job);
}

static int64_t now_ns(const usc_persist_t *p) {
  return p->clock(p->clock_user);
}

/* The engine's calls as they are now, or NULL (logged and counted). */
static job_t *serialize(usc_persist_t *p) {
  uint64_t start = uv_hrtime();
  job_t *job = usc_calloc(1, sizeof *job);
  int rc = job == NULL
               ? USC_ERR_NOMEM
               : usc_state_save(p->state, now_ns(p), &job->bytes, &job->len);
  if (rc != 0) {
    usc_log(USC_LOG_ERROR, "state file not written",
            "path=%s calls=%zu error=\"cannot serialize the calls: %s\"",
            p->path, usc_state_call_count(p->state), usc_strerror(rc));
    p->stats.save_errors++;
    usc_free(job);
    return NULL;
  }
  job->p = p;
  job->calls = usc_state_call_count(p->state);
  job->changes = usc_state_changes(p->state);
  job->serialize_ns = uv_hrtime() - start;
  return job;
}

static void do_write(uv_work_t *work) {
  job_t *job = USC_CONTAINER_OF(work, job_t, work);
  uint64_t start = uv_hrtime();
  job->step = NULL;
  (void)write_atomically(job->p->path, job->bytes, job->len, &job->step,
                         &job->errnum);
  job->write_ns = uv_hrtime() - start;
}

static void after_write(uv_work_t *work, int status);

static void start_write(usc_persist_t *p, job_t *job) {
  p->writing = job;
  if (uv_queue_work(p->loop, &job->work, do_write, after_write) != 0) {
    do_write(&job->work); /* no thread pool: write here */
    after_write(&job->work, 0);
  }
}

static void finish(usc_persist_t *p);

static void note_result(usc_persist_t *p, const job_t *job) {
  bool last = p->state == NULL && p->pending == NULL;
  if (job->step != NULL) {
    p->stats.save_errors++;
    p->failing = true;
    usc_log(USC_LOG_ERROR, "state file not written",
            "path=%s calls=%zu error=\"%s: %s\"%s", p->path, job->calls,
            job->step, strerror(job->errnum),
            last ? " (the last write, at shutdown)" : "; retrying");
    return;
  }
  p->stats.saves++;
  p->stats.last_save_ns = now_ns(p);
  p->stats.last_save_bytes = job->len;
  p->saved_changes = job->changes;
  usc_log(p->failing || last ? USC_LOG_INFO : USC_LOG_DEBUG,
          "state file written",
          "path=%s calls=%zu bytes=%zu serialize_ms=%.1f write_ms=%.1f",
          p->path, job->calls, job->len, (double)job->serialize_ns / NS_PER_MS,
          (double)job->write_ns / NS_PER_MS);
  p->failing = false;
}

static void after_write(uv_work_t *work, int status) {
  job_t *job = USC_CONTAINER_OF(work, job_t, work);
  usc_persist_t *p = job->p;
  (void)status; /* never cancelled */
  p->writing = NULL;
  note_result(p, job);
  job_free(job);
  if (p->pending != NULL) {
    job = p->pending;
    p->pending = NULL;
    start_write(p, job);
  } else if (p->state == NULL) {
    finish(p);
  }
}

static void on_tick(uv_timer_t *timer) {
  usc_persist_t *p = timer->data;
  job_t *job;
  if (p->writing == NULL && usc_state_changes(p->state) != p->saved_changes &&
      (job = serialize(p)) != NULL)
    start_write(p, job);
}

/* ---- start and close ---- */

static void rejected_name(const usc_persist_t *p, char *out, size_t cap) {
  int64_t ns = now_ns(p);
  time_t secs = (time_t)(ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(out, cap, "%s.rejected-%04d%02d%02dT%02d%02d%02d.%03dZ", p->path,
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
           tm.tm_sec, (int)(ns / NS_PER_MS % 1000));
}

/* Moves an unusable file aside, so that it is neither loaded nor
 * overwritten, and the sidecar can start without calls. */
static int reject(usc_persist_t *p, const char *problem, char *error,
                  size_t error_cap) {
  char aside[PATH_MAX + 64];
  rejected_name(p, aside, sizeof aside);
  if (rename(p->path, aside) != 0) {
    snprintf(error, error_cap,
             "%s: unusable (%s), and it cannot be moved aside to %s: %s",
             p->path, problem, aside, strerror(errno));
    return USC_ERR_IO;
  }
  p->stats.rejected++;
  usc_log(USC_LOG_ERROR, "state file rejected",
          "path=%s problem=\"%s\" moved_to=%s; starting without its calls",
          p->path, problem, aside);
  return 0;
}

static int load(usc_persist_t *p, char *error, size_t error_cap) {
  uint8_t *bytes = NULL;
  size_t len = 0, before = usc_state_call_count(p->state);
  int rc = usc_persist_read_file(p->path, &bytes, &len, error, error_cap);
  if (rc == USC_ERR_NOT_FOUND) {
    usc_log(USC_LOG_INFO, "no state file yet", "path=%s", p->path);
    return 0;
  }
  if (rc != 0)
    return rc;
  usc_state_err_t err;
  rc = usc_state_load(p->state, bytes, len, now_ns(p), &err);
  usc_free(bytes);
  if (rc == USC_ERR_NOMEM) {
    snprintf(error, error_cap, "%s: %s", p->path, err.message);
    return rc;
  }
  if (rc != 0)
    return reject(p, err.message, error, error_cap);
  p->stats.loaded = usc_state_call_count(p->state) - before;
  usc_log(USC_LOG_INFO, "state file loaded", "path=%s calls=%zu bytes=%zu",
          p->path, p->stats.loaded, len);
  return 0;
}

static int lock(usc_persist_t *p, char *error, size_t error_cap) {
  char name[PATH_MAX];
  if ((size_t)snprintf(name, sizeof name, "%s.lock", p->path) >= sizeof name) {
    snprintf(error, error_cap, "%.200s...: the path is too long", p->path);
    return USC_ERR_IO;
  }
  p->lock_fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (p->lock_fd < 0) {
    snprintf(error, error_cap, "%s: cannot open it: %s", name, strerror(errno));
    return USC_ERR_IO;
  }
  if (flock(p->lock_fd, LOCK_EX | LOCK_NB) == 0)
    return 0;
  int errnum = errno;
  snprintf(error, error_cap, "%s: %s", name,
           errnum == EWOULDBLOCK ? "another process holds it: two sidecars "
                                   "cannot share one state file"
                                 : strerror(errnum));
  return errnum == EWOULDBLOCK ? USC_ERR_STATE : USC_ERR_IO;
}

/* The first write, at start and on the loop: a directory that cannot be
 * written shows now, not at the first change. */
static int first_write(usc_persist_t *p, char *error, size_t error_cap) {
  job_t *job = serialize(p);
  if (job == NULL) {
    snprintf(error, error_cap, "%s: no memory to serialize the calls", p->path);
    return USC_ERR_NOMEM;
  }
  do_write(&job->work);
  int rc = job->step != NULL ? USC_ERR_IO : 0;
  if (rc != 0)
    snprintf(error, error_cap, "%s: %s: %s", p->path, job->step,
             strerror(job->errnum));
  else
    note_result(p, job);
  job_free(job);
  return rc;
}

static void free_persist(usc_persist_t *p) {
  if (p->lock_fd >= 0)
    close(p->lock_fd);
  job_free(p->pending);
  usc_free(p);
}

int usc_persist_start(const usc_persist_config_t *config, usc_persist_t **out,
                      char *error, size_t error_cap) {
  size_t path_size = strlen(config->path) + 1;
  usc_persist_t *p = usc_calloc(1, sizeof *p + path_size);
  if (p == NULL) {
    snprintf(error, error_cap, "no memory for the state file");
    return USC_ERR_NOMEM;
  }
  memcpy(p->path, config->path, path_size);
  p->loop = config->loop;
  p->state = config->state;
  p->interval_ms = config->interval_ms;
  p->clock = config->clock;
  p->clock_user = config->clock_user;
  p->lock_fd = -1;
  int rc = lock(p, error, error_cap);
  if (rc == 0)
    rc = load(p, error, error_cap);
  if (rc == 0)
    rc = first_write(p, error, error_cap);
  if (rc != 0) {
    free_persist(p);
    return rc;
  }
  uv_timer_init(p->loop, &p->timer);
  p->timer.data = p;
  if (p->interval_ms > 0)
    uv_timer_start(&p->timer, on_tick, p->interval_ms, p->interval_ms);
  uv_unref((uv_handle_t *)&p->timer);
  *out = p;
  return 0;
}

void usc_persist_stats(const usc_persist_t *p, usc_persist_stats_t *out) {
  *out = p->stats;
}

static void on_timer_closed(uv_handle_t *handle) {
  usc_persist_t *p = handle->data;
  void (*on_closed)(void *user) = p->on_closed;
  void *user = p->closed_user;
  free_persist(p);
  if (on_closed != NULL)
    on_closed(user);
}

static void finish(usc_persist_t *p) {
  uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

void usc_persist_close(usc_persist_t *p, void (*on_closed)(void *user),
                       void *user) {
  uint64_t written =
      p->writing != NULL ? p->writing->changes : p->saved_changes;
  job_t *job = NULL;
  p->on_closed = on_closed;
  p->closed_user = user;
  uv_timer_stop(&p->timer);
  if (usc_state_changes(p->state) != written || p->failing)
    job = serialize(p);
  p->state = NULL;
  if (job != NULL && p->writing != NULL)
    p->pending = job;
  else if (job != NULL)
    start_write(p, job);
  else if (p->writing == NULL)
    finish(p);
}
