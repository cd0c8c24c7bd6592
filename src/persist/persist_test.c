/* The --state-file on a real loop and real files: atomic writes, loads at
 * start, periodic and final writes, files moved aside, the lock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "src/base/base.h"
#include "src/log/log.h"
#include "src/persist/persist.h"
#include "src/state/state.h"

#define SEC INT64_C(1000000000)

/* ---- fixture ---- */

typedef struct {
  char dir[256];
  char path[300];
  uv_loop_t loop;
  usc_state_t *state;
  usc_persist_t *persist;
  FILE *log;
  bool closed;
} fx_t;

static int64_t wall_ns(void *user) {
  (void)user;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static usc_state_t *engine(size_t max_calls) {
  usc_state_config_t config = {.max_calls = max_calls,
                               .seed = (uint64_t)wall_ns(NULL)};
  usc_state_t *s = NULL;
  assert_int_equal(usc_state_new(&config, &s), 0);
  return s;
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(fx->dir, sizeof fx->dir, "%s/persist-XXXXXX", tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(fx->dir));
  snprintf(fx->path, sizeof fx->path, "%s/calls.state", fx->dir);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  fx->log = tmpfile();
  usc_log_init(USC_LOG_TEXT, USC_LOG_DEBUG, fx->log);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  usc_state_free(fx->state);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  usc_log_init(USC_LOG_TEXT, USC_LOG_INFO, NULL);
  fclose(fx->log);
  DIR *d = opendir(fx->dir);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char name[600];
    snprintf(name, sizeof name, "%s/%s", fx->dir, e->d_name);
    if (e->d_name[0] != '.')
      unlink(name);
  }
  closedir(d);
  rmdir(fx->dir);
  free(fx);
  return 0;
}

static usc_persist_config_t config_of(fx_t *fx, uint64_t interval_ms) {
  usc_persist_config_t c = {
      .loop = &fx->loop,
      .state = fx->state,
      .path = fx->path,
      .interval_ms = interval_ms,
      .clock = wall_ns,
  };
  return c;
}

static void start(fx_t *fx, size_t max_calls, uint64_t interval_ms) {
  char error[512] = "";
  fx->state = engine(max_calls);
  usc_persist_config_t c = config_of(fx, interval_ms);
  if (usc_persist_start(&c, &fx->persist, error, sizeof error) != 0)
    fail_msg("start: %s", error);
}

static void on_closed(void *user) {
  fx_t *fx = user;
  fx->closed = true;
}

/* Closes the persister, frees the engine at once (as main does) and runs
 * the loop until the last write is done. */
static void stop(fx_t *fx) {
  fx->closed = false;
  usc_persist_close(fx->persist, on_closed, fx);
  usc_state_free(fx->state);
  fx->state = NULL;
  fx->persist = NULL;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_true(fx->closed);
}

static void create(usc_state_t *s, const char *ext, char *id) {
  static const char *const src[] = {"0003*210"};
  static const char *const dst[] = {"0003*211"};
  usc_state_create_t c = {
      .kind = USC_STATE_CREATE_SIMPLE,
      .address = {.extension = ext},
      .source = src,
      .n_source = 1,
      .destination = dst,
      .n_destination = 1,
      .nonce = "n1",
  };
  const usc_state_call_t *call;
  usc_state_err_t err;
  assert_int_equal(usc_state_create(s, &c, wall_ns(NULL), &call, &err), 0);
  if (id != NULL)
    strcpy(id, call->id);
}

static const usc_state_call_t *get(usc_state_t *s, const char *id) {
  usc_state_address_t a = {.extension = "@self", .phone_call_id = id};
  const usc_state_call_t *call = NULL;
  usc_state_err_t err;
  if (usc_state_get(s, &a, wall_ns(NULL), &call, &err) != 0)
    return NULL;
  return call;
}

/* The calls in the file now, in a new engine. */
static usc_state_t *file_calls(const fx_t *fx) {
  uint8_t *bytes;
  size_t len;
  char error[512];
  assert_int_equal(
      usc_persist_read_file(fx->path, &bytes, &len, error, sizeof error), 0);
  usc_state_t *s = engine(0);
  usc_state_err_t err;
  if (usc_state_load(s, bytes, len, wall_ns(NULL), &err) != 0)
    fail_msg("the file does not load: %s", err.message);
  usc_free(bytes);
  return s;
}

static void write_text(const char *path, const void *bytes, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(bytes, 1, len, f), len);
  fclose(f);
}

static bool log_has(const fx_t *fx, const char *words) {
  char text[16384];
  fflush(fx->log);
  rewind(fx->log);
  size_t n = fread(text, 1, sizeof text - 1, fx->log);
  text[n] = '\0';
  fseek(fx->log, 0, SEEK_END);
  return strstr(text, words) != NULL;
}

/* The names in the directory that start with `prefix`. */
static int count_files(const fx_t *fx, const char *prefix, char *first,
                       size_t cap) {
  DIR *d = opendir(fx->dir);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
      if (n++ == 0 && first != NULL)
        snprintf(first, cap, "%s/%s", fx->dir, e->d_name);
    }
  closedir(d);
  return n;
}

static void on_wake(uv_timer_t *timer) { (void)timer; }

/* Runs the loop for `ms`: the persister's timer does not keep the loop
 * alive by itself (in the sidecar, the servers do). */
static void run_for_ms(fx_t *fx, uint64_t ms) {
  uv_timer_t wake;
  uv_timer_init(&fx->loop, &wake);
  uv_timer_start(&wake, on_wake, ms, 0);
  while (uv_is_active((uv_handle_t *)&wake))
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&wake, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
}

/* ---- the file work ---- */

static void test_write_and_read(void **state) {
  fx_t *fx = *state;
  char error[512];
  assert_int_equal(usc_persist_write_file(fx->path, (const uint8_t *)"one", 3,
                                          error, sizeof error),
                   0);
  assert_int_equal(usc_persist_write_file(fx->path, (const uint8_t *)"second",
                                          6, error, sizeof error),
                   0);
  uint8_t *bytes;
  size_t len;
  assert_int_equal(
      usc_persist_read_file(fx->path, &bytes, &len, error, sizeof error), 0);
  assert_int_equal(len, 6);
  assert_memory_equal(bytes, "second", 6);
  usc_free(bytes);
  struct stat st;
  assert_int_equal(stat(fx->path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600); /* phone numbers inside */
  assert_int_equal(count_files(fx, "calls.state.tmp", NULL, 0), 0);
  /* Empty is a file too. */
  assert_int_equal(
      usc_persist_write_file(fx->path, NULL, 0, error, sizeof error), 0);
  assert_int_equal(
      usc_persist_read_file(fx->path, &bytes, &len, error, sizeof error), 0);
  assert_int_equal(len, 0);
  usc_free(bytes);
}

static void test_write_failures(void **state) {
  fx_t *fx = *state;
  char error[512], path[400];
  /* No such directory. */
  snprintf(path, sizeof path, "%s/missing/calls.state", fx->dir);
  assert_int_equal(usc_persist_write_file(path, (const uint8_t *)"x", 1, error,
                                          sizeof error),
                   USC_ERR_IO);
  assert_non_null(strstr(error, "creating the temporary file"));
  assert_non_null(strstr(error, "No such file or directory"));
  /* The rename fails (a directory is in the way): no .tmp is left. */
  assert_int_equal(mkdir(fx->path, 0700), 0);
  assert_int_equal(usc_persist_write_file(fx->path, (const uint8_t *)"x", 1,
                                          error, sizeof error),
                   USC_ERR_IO);
  assert_non_null(strstr(error, "renaming the temporary file"));
  assert_int_equal(count_files(fx, "calls.state.tmp", NULL, 0), 0);
  rmdir(fx->path);
}

static void test_read_failures(void **state) {
  fx_t *fx = *state;
  char error[512];
  uint8_t *bytes;
  size_t len;
  assert_int_equal(
      usc_persist_read_file(fx->path, &bytes, &len, error, sizeof error),
      USC_ERR_NOT_FOUND);
  assert_int_equal(
      usc_persist_read_file(fx->dir, &bytes, &len, error, sizeof error),
      USC_ERR_IO);
  assert_non_null(strstr(error, "not a regular file"));
}

/* ---- start, writes, close ---- */

static void test_first_start(void **state) {
  fx_t *fx = *state;
  start(fx, 0, 0);
  usc_persist_stats_t st;
  usc_persist_stats(fx->persist, &st);
  assert_int_equal(st.loaded, 0);
  assert_int_equal(st.rejected, 0);
  assert_int_equal(st.saves, 1); /* the file exists from the start */
  assert_true(st.last_save_ns > 0);
  assert_true(log_has(fx, "no state file yet"));
  stop(fx);
  usc_state_t *s = file_calls(fx);
  assert_int_equal(usc_state_call_count(s), 0);
  usc_state_free(s);
}

static void test_restart_keeps_calls(void **state) {
  fx_t *fx = *state;
  char a[32], b[32];
  start(fx, 0, 0);
  create(fx->state, "0003*210", a);
  create(fx->state, "0003*211", b);
  usc_state_action_t hold = {
      .kind = USC_STATE_ON_HOLD,
      .address = {.extension = "@self", .phone_call_id = a},
      .phone_call_view_id = "00",
  };
  const usc_state_call_t *call;
  usc_state_err_t err;
  assert_int_equal(usc_state_act(fx->state, &hold, wall_ns(NULL), &call, &err),
                   0);
  int64_t on_hold = call->views[0].on_hold;
  stop(fx); /* the last write */
  assert_true(log_has(fx, "state file written"));

  start(fx, 0, 0);
  usc_persist_stats_t st;
  usc_persist_stats(fx->persist, &st);
  assert_int_equal(st.loaded, 2);
  assert_true(log_has(fx, "state file loaded"));
  call = get(fx->state, a);
  assert_non_null(call);
  assert_int_equal(call->views[0].on_hold, on_hold);
  assert_int_equal(call->views[0].holder, 1);
  assert_string_equal(call->nonce, "n1");
  assert_non_null(get(fx->state, b));
  stop(fx);
}

static void test_periodic_writes(void **state) {
  fx_t *fx = *state;
  usc_persist_stats_t st;
  start(fx, 0, 20);
  run_for_ms(fx, 80); /* nothing changed: nothing written */
  usc_persist_stats(fx->persist, &st);
  assert_int_equal(st.saves, 1);
  char id[32];
  create(fx->state, "0003*210", id);
  for (int i = 0; i < 200 && st.saves < 2; i++) {
    run_for_ms(fx, 10);
    usc_persist_stats(fx->persist, &st);
  }
  assert_int_equal(st.saves, 2);
  /* Written while running, before any close. */
  usc_state_t *s = file_calls(fx);
  assert_non_null(get(s, id));
  usc_state_free(s);
  run_for_ms(fx, 60);
  usc_persist_stats(fx->persist, &st);
  assert_int_equal(st.saves, 2);
  stop(fx);
}

/* Whatever is being written when the sidecar stops, the file ends with
 * the last state. */
static void test_close_during_write(void **state) {
  fx_t *fx = *state;
  for (int round = 0; round < 20; round++) {
    char id[32];
    start(fx, 0, 1);
    create(fx->state, "0003*210", NULL);
    run_for_ms(fx, 2 + round % 3);
    create(fx->state, "0003*211", id);
    stop(fx);
    usc_state_t *s = file_calls(fx);
    assert_non_null(get(s, id));
    assert_int_equal(usc_state_call_count(s), 2 * (size_t)(round + 1));
    usc_state_free(s);
  }
}

/* ---- unusable files ---- */

/* A file that cannot be used is moved aside whole, and the sidecar starts
 * without calls. */
static void assert_rejected(fx_t *fx, const void *bytes, size_t len,
                            size_t max_calls, const char *problem) {
  char aside[600];
  write_text(fx->path, bytes, len);
  start(fx, max_calls, 0);
  usc_persist_stats_t st;
  usc_persist_stats(fx->persist, &st);
  assert_int_equal(st.rejected, 1);
  assert_int_equal(st.loaded, 0);
  assert_int_equal(usc_state_call_count(fx->state), 0);
  assert_true(log_has(fx, "state file rejected"));
  if (!log_has(fx, problem))
    fail_msg("the log does not say '%s'", problem);
  assert_int_equal(
      count_files(fx, "calls.state.rejected-", aside, sizeof aside), 1);
  uint8_t *kept;
  size_t kept_len;
  char error[512];
  assert_int_equal(
      usc_persist_read_file(aside, &kept, &kept_len, error, sizeof error), 0);
  assert_int_equal(kept_len, len);
  if (len > 0)
    assert_memory_equal(kept, bytes, len);
  usc_free(kept);
  unlink(aside);
  stop(fx);
  /* The file now holds what the engine held: no calls. */
  usc_state_t *s = file_calls(fx);
  assert_int_equal(usc_state_call_count(s), 0);
  usc_state_free(s);
}

static void test_damaged_files_moved_aside(void **state) {
  fx_t *fx = *state;
  assert_rejected(fx, "{\"not\": \"ours\"}", 15, 0, "not a uapi-sidecar");
  assert_rejected(fx, "", 0, 0, "truncated: 0 bytes");

  /* A real file, torn, then damaged. */
  start(fx, 0, 0);
  for (int i = 0; i < 3; i++)
    create(fx->state, "0003*210", NULL);
  stop(fx);
  uint8_t *bytes;
  size_t len;
  char error[512];
  assert_int_equal(
      usc_persist_read_file(fx->path, &bytes, &len, error, sizeof error), 0);
  assert_rejected(fx, bytes, len / 2, 0, "truncated");
  bytes[len / 2] ^= 0x10;
  assert_rejected(fx, bytes, len, 0, "damaged: the checksum");
  bytes[len / 2] ^= 0x10;
  assert_rejected(fx, bytes, len, 2, "raise --max-calls");
  usc_free(bytes);
}

/* What no file could fix stops the start, and moves nothing. */
static void test_start_refused(void **state) {
  fx_t *fx = *state;
  char error[512];
  usc_persist_config_t c;
  /* The path is a directory. */
  assert_int_equal(mkdir(fx->path, 0700), 0);
  fx->state = engine(0);
  c = config_of(fx, 0);
  assert_int_equal(usc_persist_start(&c, &fx->persist, error, sizeof error),
                   USC_ERR_IO);
  assert_non_null(strstr(error, "not a regular file"));
  assert_int_equal(count_files(fx, "calls.state.rejected-", NULL, 0), 0);
  rmdir(fx->path);
  /* A directory that does not exist. */
  snprintf(fx->path, sizeof fx->path, "%s/missing/calls.state", fx->dir);
  c = config_of(fx, 0);
  assert_int_equal(usc_persist_start(&c, &fx->persist, error, sizeof error),
                   USC_ERR_IO);
  assert_non_null(strstr(error, "calls.state.lock: cannot open it"));
}

static void test_one_sidecar_per_file(void **state) {
  fx_t *fx = *state;
  char error[512];
  start(fx, 0, 0);
  usc_state_t *other = engine(0);
  usc_persist_t *second = NULL;
  usc_persist_config_t c = config_of(fx, 0);
  c.state = other;
  assert_int_equal(usc_persist_start(&c, &second, error, sizeof error),
                   USC_ERR_STATE);
  assert_non_null(strstr(error, "another process holds it"));
  stop(fx);
  /* Free again once the first has stopped. */
  assert_int_equal(usc_persist_start(&c, &second, error, sizeof error), 0);
  fx->closed = false;
  usc_persist_close(second, on_closed, fx);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_true(fx->closed);
  usc_state_free(other);
}

static void test_alloc_failures_start(void **state) {
  fx_t *fx = *state;
  start(fx, 0, 0);
  create(fx->state, "0003*210", NULL);
  stop(fx);
  for (size_t n = 1;; n++) {
    char error[512];
    fx->state = engine(0);
    usc_persist_config_t c = config_of(fx, 0);
    usc_alloc_fail_at(n);
    int rc = usc_persist_start(&c, &fx->persist, error, sizeof error);
    size_t made = usc_alloc_fail_at(0);
    if (rc == 0) {
      assert_true(made < n);
      assert_int_equal(usc_state_call_count(fx->state), 1);
      stop(fx);
      break;
    }
    assert_int_equal(rc, USC_ERR_NOMEM);
    /* Never taken for a bad file. */
    assert_int_equal(count_files(fx, "calls.state.rejected-", NULL, 0), 0);
    usc_state_free(fx->state);
    fx->state = NULL;
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_write_and_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_write_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_first_start, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart_keeps_calls, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_periodic_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_during_write, setup, teardown),
      cmocka_unit_test_setup_teardown(test_damaged_files_moved_aside, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_start_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_sidecar_per_file, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_alloc_failures_start, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
