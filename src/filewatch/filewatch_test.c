/* filewatch: the first read, refusals, and changes seen through every way
 * a file is replaced (in place, renamed over, the kubelet's symlink swap),
 * on a real loop and a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "src/base/base.h"
#include "src/filewatch/filewatch.h"

typedef struct {
  uv_loop_t loop;
  char dir[256];
  char path[512];
  usc_filewatch_t *watch;
  char taken[256]; /* the last version taken */
  int takes;
  int failures;
  char why[512]; /* of the last failure */
  bool refuse;   /* take refuses what it is given */
  bool closed;
} fixture_t;

static int take(void *user, const char *contents, size_t len, char *error,
                size_t error_cap) {
  fixture_t *fx = user;
  assert_int_equal(strlen(contents), len);
  if (fx->refuse || strncmp(contents, "bad", 3) == 0) {
    snprintf(error, error_cap, "line 1: not what was expected");
    return USC_ERR_INVALID;
  }
  snprintf(fx->taken, sizeof(fx->taken), "%s", contents);
  fx->takes++;
  return 0;
}

static void failed(void *user, const char *why) {
  fixture_t *fx = user;
  fx->failures++;
  snprintf(fx->why, sizeof(fx->why), "%s", why);
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  snprintf(fx->dir, sizeof(fx->dir), "/tmp/usc-filewatch.XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  snprintf(fx->path, sizeof(fx->path), "%s/file", fx->dir);
  *state = fx;
  return 0;
}

static void set_flag(void *flag) { *(bool *)flag = true; }

static int teardown(void **state) {
  fixture_t *fx = *state;
  if (fx->watch != NULL) {
    usc_filewatch_close(fx->watch, set_flag, &fx->closed);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_true(fx->closed);
  }
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
  assert_int_equal(system(cmd), 0);
  free(fx);
  return 0;
}

static void write_file(const char *path, const char *contents) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(contents, f);
  assert_int_equal(fclose(f), 0);
}

static void replace_file(const char *path, const char *contents) {
  char tmp[600];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  write_file(tmp, contents);
  assert_int_equal(rename(tmp, path), 0);
}

static int open_watch(fixture_t *fx, size_t max_size, char *error,
                      size_t error_cap) {
  usc_filewatch_config_t config = {
      .path = fx->path,
      .what = "test file",
      .max_size = max_size,
      .take = take,
      .failed = failed,
      .user = fx,
  };
  return usc_filewatch_new(&fx->loop, &config, &fx->watch, error, error_cap);
}

static void start(fixture_t *fx, const char *contents) {
  char error[512];
  if (contents != NULL)
    write_file(fx->path, contents);
  int rc = open_watch(fx, 0, error, sizeof(error));
  if (rc != 0)
    fail_msg("usc_filewatch_new: %s", error);
  usc_filewatch_start(fx->watch, 10);
}

static void on_deadline(uv_timer_t *timer) { *(bool *)timer->data = true; }

/* Runs the loop until `done` holds, for at most five seconds. */
static void run_until(fixture_t *fx, bool (*done)(fixture_t *)) {
  bool late = false;
  uv_timer_t deadline;
  uv_timer_init(&fx->loop, &deadline);
  deadline.data = &late;
  uv_timer_start(&deadline, on_deadline, 5000, 0);
  while (!done(fx) && !late)
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  assert_false(late);
}

static void run_for(fixture_t *fx, uint64_t ms) {
  bool over = false;
  uv_timer_t timer;
  uv_timer_init(&fx->loop, &timer);
  timer.data = &over;
  uv_timer_start(&timer, on_deadline, ms, 0);
  while (!over)
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static const char *wanted;

static bool took_wanted(fixture_t *fx) {
  return strcmp(fx->taken, wanted) == 0;
}

static void wait_for(fixture_t *fx, const char *contents) {
  wanted = contents;
  run_until(fx, took_wanted);
}

static bool has_failed(fixture_t *fx) { return fx->failures > 0; }

static bool has_failed_twice(fixture_t *fx) { return fx->failures > 1; }

static void test_first_read(void **state) {
  fixture_t *fx = *state;
  start(fx, "one\n");
  assert_string_equal(fx->taken, "one\n");
  assert_int_equal(fx->takes, 1);
  assert_string_equal(usc_filewatch_path(fx->watch), fx->path);
  run_for(fx, 50);
  assert_int_equal(fx->takes, 1); /* nothing changed: nothing read again */
}

static void test_start_errors(void **state) {
  fixture_t *fx = *state;
  char error[512];
  assert_int_equal(open_watch(fx, 0, error, sizeof(error)), USC_ERR_IO);
  assert_non_null(strstr(error, "cannot read test file"));
  assert_non_null(strstr(error, fx->path));

  write_file(fx->path, "bad contents");
  assert_int_equal(open_watch(fx, 0, error, sizeof(error)), USC_ERR_INVALID);
  char expected[700];
  snprintf(expected, sizeof(expected),
           "test file %s line 1: not what was expected", fx->path);
  assert_string_equal(error, expected);

  FILE *f = fopen(fx->path, "w");
  assert_non_null(f);
  assert_int_equal(fwrite("a\0b", 1, 3, f), 3);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(open_watch(fx, 0, error, sizeof(error)), USC_ERR_INVALID);
  assert_non_null(strstr(error, "holds a NUL byte"));

  write_file(fx->path, "0123456789");
  assert_int_equal(open_watch(fx, 9, error, sizeof(error)), USC_ERR_TOO_LARGE);
  assert_non_null(strstr(error, "is over 9 bytes"));
  assert_int_equal(open_watch(fx, 10, error, sizeof(error)), 0);
  assert_string_equal(fx->taken, "0123456789");
  usc_filewatch_close(fx->watch, NULL, NULL); /* never started: at once */
  fx->watch = NULL;

  snprintf(fx->path, sizeof(fx->path), "%s", fx->dir);
  assert_int_equal(open_watch(fx, 0, error, sizeof(error)), USC_ERR_INVALID);
  assert_non_null(strstr(error, "not a regular file"));
  assert_null(fx->watch);
}

static void test_changes_in_place_and_renamed(void **state) {
  fixture_t *fx = *state;
  start(fx, "one");
  write_file(fx->path, "two"); /* in place, same length */
  wait_for(fx, "two");
  replace_file(fx->path, "three");
  wait_for(fx, "three");
  assert_int_equal(fx->takes, 3);
  assert_int_equal(fx->failures, 0);
}

/* The kubelet's layout: file -> ..data/file, ..data -> ..<version>, and an
 * update swaps ..data with a rename. */
static void swap_data(fixture_t *fx, const char *version,
                      const char *contents) {
  char dir[600], file[700], link_tmp[600], link[600];
  snprintf(dir, sizeof(dir), "%s/%s", fx->dir, version);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(file, sizeof(file), "%s/file", dir);
  write_file(file, contents);
  snprintf(link_tmp, sizeof(link_tmp), "%s/..data_tmp", fx->dir);
  snprintf(link, sizeof(link), "%s/..data", fx->dir);
  assert_int_equal(symlink(version, link_tmp), 0);
  assert_int_equal(rename(link_tmp, link), 0);
}

static void test_symlink_swap(void **state) {
  fixture_t *fx = *state;
  swap_data(fx, "..v1", "one");
  assert_int_equal(symlink("..data/file", fx->path), 0);
  start(fx, NULL);
  assert_string_equal(fx->taken, "one");
  swap_data(fx, "..v2", "two");
  wait_for(fx, "two");
  swap_data(fx, "..v3", "three");
  wait_for(fx, "three");
}

static void test_failures_keep_and_recover(void **state) {
  fixture_t *fx = *state;
  start(fx, "one");
  replace_file(fx->path, "bad two");
  run_until(fx, has_failed);
  assert_non_null(strstr(fx->why, "line 1: not what was expected"));
  assert_non_null(strstr(fx->why, fx->path));
  assert_string_equal(fx->taken, "one");
  assert_int_equal(unlink(fx->path), 0);
  run_for(fx, 50);
  /* Once per streak, not once per check. */
  assert_int_equal(fx->failures, 1);
  write_file(fx->path, "three");
  wait_for(fx, "three");
  /* A new streak is told again. */
  replace_file(fx->path, "bad four");
  run_until(fx, has_failed_twice);
  assert_string_equal(fx->taken, "three");
}

static void test_refused_same_file_is_read_again(void **state) {
  fixture_t *fx = *state;
  start(fx, "one");
  fx->refuse = true;
  replace_file(fx->path, "two");
  run_until(fx, has_failed);
  /* The owner changes its mind (its own state changed): the same version
   * is offered again while the streak lasts. */
  fx->refuse = false;
  wait_for(fx, "two");
}

static void test_check_now(void **state) {
  fixture_t *fx = *state;
  char error[512];
  write_file(fx->path, "one");
  assert_int_equal(open_watch(fx, 0, error, sizeof(error)), 0);
  usc_filewatch_check_now(fx->watch); /* not started: nothing */
  usc_filewatch_start(fx->watch, 60000);
  replace_file(fx->path, "two");
  run_for(fx, 30);
  assert_string_equal(fx->taken, "one");
  usc_filewatch_check_now(fx->watch);
  usc_filewatch_check_now(fx->watch); /* one check at a time */
  wait_for(fx, "two");
}

static void test_close_with_stat_in_flight(void **state) {
  fixture_t *fx = *state;
  start(fx, "one");
  usc_filewatch_check_now(fx->watch);
  replace_file(fx->path, "two");
  usc_filewatch_close(fx->watch, set_flag, &fx->closed);
  fx->watch = NULL;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_true(fx->closed);
  assert_string_equal(fx->taken, "one"); /* no callback after close */
  usc_filewatch_close(NULL, NULL, NULL);
}

static void test_allocation_failures(void **state) {
  fixture_t *fx = *state;
  char error[512];
  write_file(fx->path, "one");
  for (size_t nth = 1;; nth++) {
    usc_alloc_fail_at(nth);
    int rc = open_watch(fx, 0, error, sizeof(error));
    size_t made = usc_alloc_fail_at(0);
    if (rc == 0) {
      assert_true(made < nth);
      break;
    }
    assert_int_equal(rc, USC_ERR_NOMEM);
    assert_null(fx->watch);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_first_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_changes_in_place_and_renamed, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_symlink_swap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failures_keep_and_recover, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_refused_same_file_is_read_again,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_now, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_with_stat_in_flight, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_allocation_failures, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
