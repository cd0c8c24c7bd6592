/* persist: the native engine's calls kept in a file (--state-file), so
 * that a restart loses none.
 *
 * At start the file is read and loaded into the engine (usc_state_load,
 * all or nothing). No file: no calls. A file that cannot be used (torn,
 * damaged, another format version, an invalid call, more calls than
 * --max-calls) is never half-loaded nor overwritten: it is renamed
 * PATH.rejected-<UTC time>, logged at error and counted, and the sidecar
 * starts without calls, so it neither loses the file nor crash-loops on
 * it. What makes the file unusable for any file (it cannot be read or
 * written, another sidecar holds it) stops the start instead.
 *
 * Then the calls are written whenever they changed (usc_state_changes),
 * checked every `interval_ms`, and once more at close, after the drain.
 * A write replaces the whole file atomically: PATH.tmp in the same
 * directory, fsync, rename over PATH, fsync of the directory, so a crash
 * at any moment leaves the last file or the new one. The loop only
 * serializes the calls (usc_state_save); the file work runs on libuv's
 * thread pool, one write at a time. A failed write is logged, counted and
 * retried at the next tick.
 *
 * While running, the sidecar holds an exclusive lock (flock) on
 * PATH.lock, so that two sidecars never share one file. */
#ifndef USC_PERSIST_H
#define USC_PERSIST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "src/state/state.h"

typedef struct usc_persist usc_persist_t;

typedef struct {
  uv_loop_t *loop;
  usc_state_t *state;   /* borrowed, until usc_persist_close returns */
  const char *path;     /* copied */
  uint64_t interval_ms; /* how often to look for changes; 0: only at close */
  /* Wall-clock time in ns since the epoch: the engine's clock. */
  int64_t (*clock)(void *clock_user);
  void *clock_user;
} usc_persist_config_t;

typedef struct {
  size_t loaded;        /* calls loaded at start */
  uint64_t rejected;    /* files moved aside at start: 0 or 1 */
  uint64_t saves;       /* files written */
  uint64_t save_errors; /* writes (or serializations) that failed */
  int64_t last_save_ns; /* clock time of the last write; 0: none */
  size_t last_save_bytes;
} usc_persist_stats_t;

/* Takes the lock, loads the file into the engine (which may already hold
 * calls: they stay), writes it once (so that a directory that cannot be
 * written stops the start, not the first save), and starts the timer.
 * Returns 0 with *out set, or USC_ERR_IO, USC_ERR_STATE (locked by
 * another process) or USC_ERR_NOMEM with `error` saying what and where. A
 * rejected file is not an error (see above). */
int usc_persist_start(const usc_persist_config_t *config, usc_persist_t **out,
                      char *error, size_t error_cap);

void usc_persist_stats(const usc_persist_t *p, usc_persist_stats_t *out);

/* Writes the calls a last time if they changed since the last write
 * (serializing them before returning: the engine may be freed then),
 * waits for the writes in flight, releases the lock and frees the
 * persister; then calls on_closed (may be NULL) from the loop. */
void usc_persist_close(usc_persist_t *p, void (*on_closed)(void *user),
                       void *user);

/* The blocking file work, for start and for tests. */

/* Reads the whole file into *bytes (usc_malloc'd; the caller frees it)
 * and *len. Returns 0, USC_ERR_NOT_FOUND when there is no file,
 * USC_ERR_NOMEM, or USC_ERR_IO with `error` filled. */
int usc_persist_read_file(const char *path, uint8_t **bytes, size_t *len,
                          char *error, size_t error_cap);

/* Replaces `path` with `len` bytes atomically (see above). Returns 0, or
 * USC_ERR_IO with `error` naming the step and the reason; `path` is then
 * as it was and no PATH.tmp is left behind. */
int usc_persist_write_file(const char *path, const uint8_t *bytes, size_t len,
                           char *error, size_t error_cap);

#endif
