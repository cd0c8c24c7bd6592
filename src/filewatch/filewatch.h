/* filewatch: reads a small file (a secret, a table) on the sidecar's libuv
 * loop and reads it again whenever it changes, as a mounted Kubernetes
 * Secret or ConfigMap does: a rename over the file, an in-place write,
 * or the kubelet swapping the volume's `..data` symlink.
 *
 * A timer starts a uv_fs_stat of the path (in libuv's thread pool, so a
 * slow file system never stalls the loop); stat follows symlinks, so a
 * swapped symlink shows up as another inode. The result is compared with
 * the fstat of the last successful read rather than with the previous
 * stat, so that a change between the first read and the first check is
 * not missed (uv_fs_poll would miss it). A changed file is read again
 * synchronously: it is small, and stat has just found it.
 *
 * What the file says is the owner's business: each version read is handed
 * to the owner's `take` callback, which may refuse it. A version that
 * cannot be read or is refused leaves the previous one in force; the owner
 * hears of it through `failed`, once per streak of failures. Contents are
 * wiped from memory once `take` has returned: they may be secrets. */
#ifndef USC_FILEWATCH_H
#define USC_FILEWATCH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct usc_filewatch usc_filewatch_t;

/* A version of the file: `len` bytes (a NUL follows them; NUL bytes inside
 * are refused before this is called), valid during the call only. Returns
 * 0 to take it, or a negative USC_ERR_* with the end of a sentence about
 * the file in `error`, such as "is empty" or "line 3: unknown user": it
 * is said after the file's description and path ("token file /run/t is
 * empty"), so it must not quote the contents. */
typedef int (*usc_filewatch_take_fn)(void *user, const char *contents,
                                     size_t len, char *error, size_t error_cap);

/* A check failed: `why` is a sentence naming the file (never its
 * contents), valid during the call. */
typedef void (*usc_filewatch_failed_fn)(void *user, const char *why);

typedef struct {
  const char *path; /* copied */
  const char *what; /* "token file", for sentences; static */
  size_t max_size;  /* larger files are refused; 0: 16 KiB */
  usc_filewatch_take_fn take;
  usc_filewatch_failed_fn failed; /* may be NULL */
  void *user;
} usc_filewatch_config_t;

/* Reads the file a first time and gives it to `take` before returning.
 * Returns 0 and sets *out (not checking yet: see usc_filewatch_start); or
 * USC_ERR_IO (unreadable, not a regular file), USC_ERR_TOO_LARGE,
 * USC_ERR_INVALID (a NUL byte, or refused by `take`: its error) or
 * USC_ERR_NOMEM, with a sentence in `error`; nothing to close then. */
int usc_filewatch_new(uv_loop_t *loop, const usc_filewatch_config_t *config,
                      usc_filewatch_t **out, char *error, size_t error_cap);

/* Starts checking every `interval_ms` (0: 1 s); once. */
void usc_filewatch_start(usc_filewatch_t *watch, uint32_t interval_ms);

/* Checks now rather than at the next tick, unless a check is under way or
 * checking has not started. */
void usc_filewatch_check_now(usc_filewatch_t *watch);

/* The path watched, owned by the watch. */
const char *usc_filewatch_path(const usc_filewatch_t *watch);

/* Stops checking; no callback runs from then on. The watch is freed once
 * libuv has closed its timer and any stat in flight has come back (the
 * loop must keep running until then), or at once when checking never
 * started; `on_closed` (may be NULL) runs last. Accepts NULL. */
void usc_filewatch_close(usc_filewatch_t *watch, void (*on_closed)(void *),
                         void *closed_user);

#endif
