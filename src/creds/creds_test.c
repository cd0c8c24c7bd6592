/* Tests of creds: token files watched for changes (renames and kubelet
 * style symlink swaps), and OAuth client credentials against an HTTP/1.1
 * token endpoint served in this process, on the same loop. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "src/base/base.h"
#include "src/creds/creds.h"
#include "src/upstream/upstream.h"

/* strcasestr is a GNU extension. */
static const char *find_nocase(const char *haystack, const char *needle) {
  size_t n = strlen(needle);
  for (; *haystack != '\0'; haystack++) {
    if (strncasecmp(haystack, needle, n) == 0)
      return haystack;
  }
  return NULL;
}

/* ---- the token endpoint ---- */

typedef struct tsrv tsrv_t;

typedef struct tconn {
  uv_tcp_t tcp;
  tsrv_t *srv;
  struct tconn *next;
  bool held; /* a whole request waits for tsrv_release */
  size_t len;
  char buf[16 * 1024];
} tconn_t;

typedef struct {
  uv_write_t req;
  size_t len;
  char data[];
} twrite_t;

struct tsrv {
  uv_loop_t *loop;
  uv_tcp_t listener;
  bool started;
  int port;
  int handles;
  tconn_t *conns;
  /* How to answer. */
  int status;        /* 200 */
  const char *reply; /* the body; NULL: a fresh token "tok-<n>" */
  int expires_in;    /* in fresh tokens; 0 leaves it out */
  bool hold;
  /* What was seen. */
  int requests;
  char head[4096]; /* of the last request */
  char body[4096];
};

static void on_tconn_closed(uv_handle_t *handle) {
  tconn_t *conn = handle->data;
  conn->srv->handles--;
  free(conn);
}

static void tconn_close(tconn_t *conn) {
  tsrv_t *srv = conn->srv;
  for (tconn_t **p = &srv->conns; *p != NULL; p = &(*p)->next) {
    if (*p == conn) {
      *p = conn->next;
      break;
    }
  }
  uv_close((uv_handle_t *)&conn->tcp, on_tconn_closed);
}

static void on_twritten(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void tconn_answer(tconn_t *conn) {
  tsrv_t *srv = conn->srv;
  char body[512];
  if (srv->reply != NULL)
    snprintf(body, sizeof(body), "%s", srv->reply);
  else if (srv->expires_in > 0)
    snprintf(body, sizeof(body),
             "{\"access_token\":\"tok-%d\",\"token_type\":\"Bearer\","
             "\"expires_in\":%d}",
             srv->requests, srv->expires_in);
  else
    snprintf(body, sizeof(body), "{\"access_token\":\"tok-%d\"}",
             srv->requests);
  twrite_t *w = malloc(sizeof(*w) + 1024);
  assert_non_null(w);
  w->len = (size_t)snprintf(w->data, 1024,
                            "HTTP/1.1 %d X\r\nContent-Type: application/json"
                            "\r\nContent-Length: %zu\r\n\r\n%s",
                            srv->status, strlen(body), body);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
  if (uv_write(&w->req, (uv_stream_t *)&conn->tcp, &buf, 1, on_twritten))
    free(w);
}

/* Takes one whole request out of the buffer; false when incomplete. */
static bool tconn_take(tconn_t *conn) {
  tsrv_t *srv = conn->srv;
  conn->buf[conn->len] = '\0';
  char *end = strstr(conn->buf, "\r\n\r\n");
  if (end == NULL)
    return false;
  size_t head_len = (size_t)(end - conn->buf) + 4;
  const char *cl = find_nocase(conn->buf, "\r\ncontent-length:");
  size_t body_len = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
  if (conn->len < head_len + body_len)
    return false;
  srv->requests++;
  snprintf(srv->head, sizeof(srv->head), "%.*s", (int)head_len, conn->buf);
  snprintf(srv->body, sizeof(srv->body), "%.*s", (int)body_len,
           conn->buf + head_len);
  memmove(conn->buf, conn->buf + head_len + body_len,
          conn->len - head_len - body_len);
  conn->len -= head_len + body_len;
  return true;
}

static void on_talloc(uv_handle_t *handle, size_t size, uv_buf_t *buf) {
  tconn_t *conn = handle->data;
  (void)size;
  *buf = uv_buf_init(conn->buf + conn->len,
                     (unsigned)(sizeof(conn->buf) - 1 - conn->len));
}

static void on_tread(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  tconn_t *conn = stream->data;
  (void)buf;
  if (n < 0) {
    tconn_close(conn);
    return;
  }
  conn->len += (size_t)n;
  while (!conn->held && tconn_take(conn)) {
    if (conn->srv->hold)
      conn->held = true;
    else
      tconn_answer(conn);
  }
}

static void on_tconnection(uv_stream_t *listener, int status) {
  tsrv_t *srv = listener->data;
  assert_int_equal(status, 0);
  tconn_t *conn = calloc(1, sizeof(*conn));
  assert_non_null(conn);
  conn->srv = srv;
  uv_tcp_init(srv->loop, &conn->tcp);
  conn->tcp.data = conn;
  srv->handles++;
  conn->next = srv->conns;
  srv->conns = conn;
  assert_int_equal(uv_accept(listener, (uv_stream_t *)&conn->tcp), 0);
  uv_read_start((uv_stream_t *)&conn->tcp, on_talloc, on_tread);
}

static void on_listener_closed(uv_handle_t *handle) {
  tsrv_t *srv = handle->data;
  srv->handles--;
}

static void tsrv_start(tsrv_t *srv, uv_loop_t *loop) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  srv->loop = loop;
  srv->status = 200;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_init(loop, &srv->listener), 0);
  srv->listener.data = srv;
  srv->handles = 1;
  srv->started = true;
  assert_int_equal(uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 64, on_tconnection),
                   0);
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
  srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* Answers the requests held so far. */
static void tsrv_release(tsrv_t *srv) {
  srv->hold = false;
  for (tconn_t *conn = srv->conns; conn != NULL; conn = conn->next) {
    if (!conn->held)
      continue;
    conn->held = false;
    tconn_answer(conn);
  }
}

static void tsrv_close(tsrv_t *srv) {
  if (!srv->started)
    return;
  srv->started = false;
  while (srv->conns != NULL)
    tconn_close(srv->conns);
  uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}

/* ---- fixture ---- */

typedef struct fixture fixture_t;

typedef struct {
  usc_creds_waiter_t w;
  fixture_t *fx;
  int calls;
  int status;
  bool null_value;
  char value[256];
  char reason[256];
  bool invalidate; /* the callback reports the value refused */
  bool close;      /* the callback closes the credentials */
} got_t;

struct fixture {
  uv_loop_t loop;
  uv_timer_t guard;
  bool expired;
  tsrv_t srv;
  usc_creds_t *creds;
  usc_creds_config_t config;
  uint64_t now; /* the fake clock, ms */
  int closed;
  char dir[256];
  char path[512]; /* the token or secret file */
  char url[128];
  char logs[16 * 1024]; /* every line logged, one per line */
  got_t got[32];
};

static uint64_t fake_clock(void *user) { return *(uint64_t *)user; }

static void capture_log(void *user, usc_creds_log_level_t level,
                        const char *message) {
  fixture_t *fx = user;
  size_t len = strlen(fx->logs);
  snprintf(fx->logs + len, sizeof(fx->logs) - len, "%s %s\n",
           level == USC_CREDS_LOG_WARN ? "WARN" : "INFO", message);
}

static void on_guard(uv_timer_t *timer) {
  fixture_t *fx = timer->data;
  fx->expired = true;
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_timer_init(&fx->loop, &fx->guard);
  fx->guard.data = fx;
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(fx->dir, sizeof(fx->dir), "%s/creds.XXXXXX", tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(fx->dir));
  fx->now = 1000000;
  fx->config.log = capture_log;
  fx->config.log_user = fx;
  *state = fx;
  return 0;
}

static void on_closed(void *user) { (*(int *)user)++; }

static void close_creds(fixture_t *fx) {
  if (fx->creds == NULL)
    return;
  int closed = fx->closed;
  usc_creds_close(fx->creds, on_closed, &fx->closed);
  fx->creds = NULL;
  while (fx->closed == closed)
    uv_run(&fx->loop, UV_RUN_ONCE);
}

static int teardown(void **state) {
  fixture_t *fx = *state;
  close_creds(fx);
  tsrv_close(&fx->srv);
  uv_close((uv_handle_t *)&fx->guard, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(fx->srv.handles, 0);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  /* Tokens are "SECRET-..." or "tok-<n>", secrets "s3cr...". */
  assert_null(strstr(fx->logs, "SECRET"));
  assert_null(strstr(fx->logs, "tok-"));
  assert_null(strstr(fx->logs, "s3cr"));
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
  assert_int_equal(system(cmd), 0);
  free(fx);
  return 0;
}

/* Runs the loop until `done` says so; fails after 5 s. */
static void run_until(fixture_t *fx, bool (*done)(fixture_t *)) {
  fx->expired = false;
  uv_timer_start(&fx->guard, on_guard, 5000, 0);
  while (!done(fx) && !fx->expired)
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_timer_stop(&fx->guard);
  assert_false(fx->expired);
}

/* Runs the loop for about `ms` of loop time. */
static void run_for(fixture_t *fx, uint64_t ms) {
  fx->expired = false;
  uv_timer_start(&fx->guard, on_guard, ms, 0);
  while (!fx->expired)
    uv_run(&fx->loop, UV_RUN_ONCE);
}

static void on_got(void *user, const usc_creds_result_t *r) {
  got_t *g = user;
  g->calls++;
  g->status = r->status;
  g->null_value = r->authorization == NULL;
  snprintf(g->value, sizeof(g->value), "%s",
           r->authorization ? r->authorization : "");
  snprintf(g->reason, sizeof(g->reason), "%s", r->reason ? r->reason : "");
  if (r->status == USC_OK) {
    assert_null(r->reason);
  } else {
    assert_null(r->authorization);
    assert_non_null(r->reason);
  }
  if (g->invalidate)
    usc_creds_invalidate(g->fx->creds, r->authorization);
  if (g->close) {
    usc_creds_close(g->fx->creds, on_closed, &g->fx->closed);
    g->fx->creds = NULL;
  }
}

static got_t *get(fixture_t *fx, int i) {
  got_t *g = &fx->got[i];
  memset(g, 0, sizeof(*g));
  g->fx = fx;
  usc_creds_get(fx->creds, &g->w, on_got, g);
  return g;
}

/* A get answered before it returns: its value. */
static const char *get_now(fixture_t *fx) {
  got_t *g = get(fx, 31);
  assert_int_equal(g->calls, 1);
  assert_int_equal(g->status, USC_OK);
  return g->value;
}

static void write_file(const char *path, const char *contents) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(contents, f);
  assert_int_equal(fclose(f), 0);
}

/* Replaces `path` the way editors and atomic writers do. */
static void replace_file(const char *path, const char *contents) {
  char tmp[600];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  write_file(tmp, contents);
  assert_int_equal(rename(tmp, path), 0);
}

/* ---- NONE ---- */

static void test_none_forwards(void **state) {
  fixture_t *fx = *state;
  char error[256];
  fx->config.mode = USC_CREDS_NONE;
  assert_int_equal(
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error)),
      0);
  assert_int_equal(usc_creds_mode(fx->creds), USC_CREDS_NONE);
  got_t *g = get(fx, 0);
  assert_int_equal(g->calls, 1);
  assert_int_equal(g->status, USC_OK);
  assert_true(g->null_value);
  usc_creds_invalidate(fx->creds, "Bearer x");
  usc_creds_cancel(&g->w); /* answered: nothing happens */
  assert_int_equal(g->calls, 1);
}

/* ---- STATIC ---- */

static void new_static(fixture_t *fx, const char *contents, uint32_t poll) {
  char error[256];
  if (contents != NULL) {
    snprintf(fx->path, sizeof(fx->path), "%s/token", fx->dir);
    write_file(fx->path, contents);
  }
  fx->config.mode = USC_CREDS_STATIC;
  fx->config.token_file = fx->path;
  fx->config.poll_interval_ms = poll;
  int rc =
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error));
  if (rc != 0)
    fail_msg("usc_creds_new: %s", error);
}

static void test_static_reads_trimmed(void **state) {
  fixture_t *fx = *state;
  new_static(fx, "\n  SECRET-abc.DEF_1~+/=  \r\n\n", 1000);
  assert_string_equal(get_now(fx), "Bearer SECRET-abc.DEF_1~+/=");
  assert_string_equal(get_now(fx), "Bearer SECRET-abc.DEF_1~+/=");
}

static void test_static_start_errors(void **state) {
  fixture_t *fx = *state;
  static const struct {
    const char *contents; /* NULL: no such file */
    const char *error;
  } cases[] = {
      {"", "is empty"},
      {" \r\n\t\n", "is empty"},
      {NULL, "cannot read token file"},
      {"SECRET-a SECRET-b\n", "cannot have"},
      {"SECRET-\x01x", "cannot have"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char error[512];
    snprintf(fx->path, sizeof(fx->path), "%s/token%zu", fx->dir, i);
    if (cases[i].contents != NULL)
      write_file(fx->path, cases[i].contents);
    fx->config.mode = USC_CREDS_STATIC;
    fx->config.token_file = fx->path;
    usc_creds_t *creds = NULL;
    int rc =
        usc_creds_new(&fx->loop, &fx->config, &creds, error, sizeof(error));
    assert_int_not_equal(rc, 0);
    assert_null(creds);
    assert_non_null(strstr(error, cases[i].error));
    assert_non_null(strstr(error, fx->path));
    assert_null(strstr(error, "SECRET"));
  }
  char error[512];
  fx->config.token_file = fx->dir; /* a directory */
  assert_int_not_equal(
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error)),
      0);
  assert_non_null(strstr(error, "not a regular file"));
  char *big = malloc(20000);
  assert_non_null(big);
  memset(big, 'A', 19999);
  big[19999] = '\0';
  snprintf(fx->path, sizeof(fx->path), "%s/big", fx->dir);
  write_file(fx->path, big);
  free(big);
  fx->config.token_file = fx->path;
  assert_int_equal(
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error)),
      USC_ERR_TOO_LARGE);
  fx->config.token_file = NULL;
  assert_int_equal(
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error)),
      USC_ERR_INVALID);
  assert_null(fx->creds);
}

static int count(const char *haystack, const char *needle) {
  int n = 0;
  while ((haystack = strstr(haystack, needle)) != NULL) {
    n++;
    haystack++;
  }
  return n;
}

static const char *want_value;

static bool serves_wanted(fixture_t *fx) {
  return strcmp(get_now(fx), want_value) == 0;
}

static void wait_for_value(fixture_t *fx, const char *value) {
  want_value = value;
  run_until(fx, serves_wanted);
}

static void test_static_rename_over(void **state) {
  fixture_t *fx = *state;
  new_static(fx, "SECRET-one\n", 10);
  assert_string_equal(get_now(fx), "Bearer SECRET-one");
  replace_file(fx->path, "SECRET-two\n");
  wait_for_value(fx, "Bearer SECRET-two");
  assert_non_null(strstr(fx->logs, "changed"));
  /* An in-place write of the same length is seen too. */
  write_file(fx->path, "SECRET-six\n");
  wait_for_value(fx, "Bearer SECRET-six");
  assert_int_equal(count(fx->logs, "token reloaded"), 2);
  /* The same token written again is no news. */
  replace_file(fx->path, " SECRET-six");
  run_for(fx, 50);
  assert_int_equal(count(fx->logs, "token reloaded"), 2);
  assert_string_equal(get_now(fx), "Bearer SECRET-six");
}

/* The kubelet's layout: token -> ..data/token, ..data -> ..<version>, and
 * an update swaps ..data with a rename. */
static void swap_data(fixture_t *fx, const char *version,
                      const char *contents) {
  char dir[600], file[700], link_tmp[600], link[600];
  snprintf(dir, sizeof(dir), "%s/%s", fx->dir, version);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(file, sizeof(file), "%s/token", dir);
  write_file(file, contents);
  snprintf(link_tmp, sizeof(link_tmp), "%s/..data_tmp", fx->dir);
  snprintf(link, sizeof(link), "%s/..data", fx->dir);
  assert_int_equal(symlink(version, link_tmp), 0);
  assert_int_equal(rename(link_tmp, link), 0);
}

static void test_static_symlink_swap(void **state) {
  fixture_t *fx = *state;
  swap_data(fx, "..v1", "SECRET-one");
  snprintf(fx->path, sizeof(fx->path), "%s/token", fx->dir);
  assert_int_equal(symlink("..data/token", fx->path), 0);
  new_static(fx, NULL, 10);
  assert_string_equal(get_now(fx), "Bearer SECRET-one");
  swap_data(fx, "..v2", "SECRET-two");
  wait_for_value(fx, "Bearer SECRET-two");
  swap_data(fx, "..v3", "SECRET-three");
  wait_for_value(fx, "Bearer SECRET-three");
}

static bool logged_keeping(fixture_t *fx) {
  return strstr(fx->logs, "keeping the previous token") != NULL;
}

static void test_static_bad_reread_keeps_old(void **state) {
  fixture_t *fx = *state;
  new_static(fx, "SECRET-one", 10);
  replace_file(fx->path, "\n");
  run_until(fx, logged_keeping);
  assert_non_null(strstr(fx->logs, "is empty"));
  assert_string_equal(get_now(fx), "Bearer SECRET-one");
  assert_int_equal(unlink(fx->path), 0);
  run_for(fx, 50);
  assert_string_equal(get_now(fx), "Bearer SECRET-one");
  /* One warning per streak of failures, not one per check. */
  assert_null(strstr(strstr(fx->logs, "WARN") + 1, "WARN"));
  write_file(fx->path, "SECRET-a b");
  run_for(fx, 50);
  assert_string_equal(get_now(fx), "Bearer SECRET-one");
  replace_file(fx->path, "SECRET-two");
  wait_for_value(fx, "Bearer SECRET-two");
}

static void test_static_invalidate_checks_now(void **state) {
  fixture_t *fx = *state;
  new_static(fx, "SECRET-one", 60000);
  replace_file(fx->path, "SECRET-two");
  run_for(fx, 30);
  assert_string_equal(get_now(fx), "Bearer SECRET-one");
  usc_creds_invalidate(fx->creds, "Bearer SECRET-other"); /* not ours */
  run_for(fx, 30);
  assert_string_equal(get_now(fx), "Bearer SECRET-one");
  usc_creds_invalidate(fx->creds, "Bearer SECRET-one");
  wait_for_value(fx, "Bearer SECRET-two");
}

/* ---- OAUTH ---- */

static void oauth_config(fixture_t *fx) {
  tsrv_start(&fx->srv, &fx->loop);
  fx->srv.expires_in = 3600;
  snprintf(fx->path, sizeof(fx->path), "%s/secret", fx->dir);
  write_file(fx->path, "s3cr\xc3\xa9t&=+ x\n");
  snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/oauth/token.php",
           fx->srv.port);
  fx->config.mode = USC_CREDS_OAUTH;
  fx->config.token_url = fx->url;
  fx->config.client_id = "my client/id";
  fx->config.client_secret_file = fx->path;
  fx->config.clock = fake_clock;
  fx->config.clock_user = &fx->now;
}

static void new_oauth(fixture_t *fx) {
  char error[256];
  int rc =
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error));
  if (rc != 0)
    fail_msg("usc_creds_new: %s", error);
}

static int want_calls;
static int want_first;
static int want_count;

static bool all_called(fixture_t *fx) {
  for (int i = want_first; i < want_first + want_count; i++) {
    if (fx->got[i].calls < want_calls)
      return false;
  }
  return true;
}

/* Waits until gets [first, first + count) have been answered. */
static void wait_answers(fixture_t *fx, int first, int count) {
  want_first = first;
  want_count = count;
  want_calls = 1;
  run_until(fx, all_called);
}

static void test_oauth_first_get_posts_form(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->config.scope = "phonecalls read";
  fx->config.redirect_uri = "urn:ietf:wg:oauth:2.0:oob";
  new_oauth(fx);
  assert_int_equal(usc_creds_mode(fx->creds), USC_CREDS_OAUTH);
  got_t *g = get(fx, 0);
  assert_int_equal(g->calls, 0);
  wait_answers(fx, 0, 1);
  assert_int_equal(g->status, USC_OK);
  assert_string_equal(g->value, "Bearer tok-1");
  assert_int_equal(fx->srv.requests, 1);
  assert_true(strncmp(fx->srv.head, "POST /oauth/token.php HTTP/1.1\r\n", 32) ==
              0);
  assert_non_null(find_nocase(
      fx->srv.head, "\r\ncontent-type: application/x-www-form-urlencoded\r\n"));
  assert_string_equal(fx->srv.body,
                      "grant_type=client_credentials"
                      "&client_id=my+client%2Fid"
                      "&client_secret=s3cr%C3%A9t%26%3D%2B+x"
                      "&scope=phonecalls+read"
                      "&redirect_uri=urn%3Aietf%3Awg%3Aoauth%3A2.0%3Aoob");
  assert_string_equal(get_now(fx), "Bearer tok-1");
  assert_int_equal(fx->srv.requests, 1);
  /* Plain http is allowed but said. */
  assert_non_null(strstr(fx->logs, "not https"));
}

static void test_oauth_concurrent_gets_share_one_request(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  new_oauth(fx);
  for (int i = 0; i < 20; i++)
    assert_int_equal(get(fx, i)->calls, 0);
  wait_answers(fx, 0, 20);
  assert_int_equal(fx->srv.requests, 1);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(fx->got[i].calls, 1);
    assert_int_equal(fx->got[i].status, USC_OK);
    assert_string_equal(fx->got[i].value, "Bearer tok-1");
  }
}

static int want_requests;

static bool requests_seen(fixture_t *fx) {
  return fx->srv.requests >= want_requests;
}

static void test_oauth_cached_until_near_expiry(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->srv.expires_in = 100; /* margin 10 s: renew at 90 s, stop at 95 s */
  new_oauth(fx);
  get(fx, 0);
  wait_answers(fx, 0, 1);
  assert_string_equal(fx->got[0].value, "Bearer tok-1");
  fx->now += 89999;
  assert_string_equal(get_now(fx), "Bearer tok-1");
  assert_int_equal(fx->srv.requests, 1);
  /* Renewal time: still handed out while one request fetches the next. */
  fx->now += 1001;
  assert_string_equal(get_now(fx), "Bearer tok-1");
  assert_string_equal(get_now(fx), "Bearer tok-1");
  wait_for_value(fx, "Bearer tok-2");
  assert_int_equal(fx->srv.requests, 2);
  /* Past the point where tok-2 is handed out: callers wait for tok-3. */
  fx->now += 95000;
  got_t *g = get(fx, 1);
  assert_int_equal(g->calls, 0);
  get(fx, 2);
  wait_answers(fx, 1, 2);
  assert_string_equal(fx->got[1].value, "Bearer tok-3");
  assert_string_equal(fx->got[2].value, "Bearer tok-3");
  assert_int_equal(fx->srv.requests, 3);
}

/* Without a fake clock: expires_in 1 s is handed out for 0.75 s. */
static void test_oauth_real_clock_expiry(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->config.clock = NULL;
  fx->config.retry_interval_ms = 10;
  fx->srv.expires_in = 1;
  new_oauth(fx);
  get(fx, 0);
  wait_answers(fx, 0, 1);
  assert_string_equal(get_now(fx), "Bearer tok-1");
  run_for(fx, 800);
  got_t *g = get(fx, 1);
  assert_int_equal(g->calls, 0);
  wait_answers(fx, 1, 1);
  assert_string_equal(g->value, "Bearer tok-2");
  assert_int_equal(fx->srv.requests, 2);
}

/* A token without expires_in is kept for 300 s. */
static void test_oauth_default_lifetime(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->srv.expires_in = 0;
  new_oauth(fx);
  get(fx, 0);
  wait_answers(fx, 0, 1);
  fx->now += 269000;
  assert_string_equal(get_now(fx), "Bearer tok-1");
  assert_int_equal(fx->srv.requests, 1);
  fx->now += 2000;
  get_now(fx);
  want_requests = 2;
  run_until(fx, requests_seen);
}

static void test_oauth_invalidate_current(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  new_oauth(fx);
  get(fx, 0);
  wait_answers(fx, 0, 1);
  fx->now += 2000;
  /* Concurrent 401s for the same token. */
  for (int i = 0; i < 5; i++)
    usc_creds_invalidate(fx->creds, "Bearer tok-1");
  for (int i = 1; i <= 10; i++)
    assert_int_equal(get(fx, i)->calls, 0);
  usc_creds_invalidate(fx->creds, "Bearer tok-1");
  wait_answers(fx, 1, 10);
  for (int i = 1; i <= 10; i++)
    assert_string_equal(fx->got[i].value, "Bearer tok-2");
  assert_int_equal(fx->srv.requests, 2);
  /* A late 401 for the old token changes nothing. */
  fx->now += 2000;
  usc_creds_invalidate(fx->creds, "Bearer tok-1");
  usc_creds_invalidate(fx->creds, NULL);
  assert_string_equal(get_now(fx), "Bearer tok-2");
  run_for(fx, 20);
  assert_int_equal(fx->srv.requests, 2);
}

/* Refused again within the retry interval: callers wait for it to pass
 * instead of failing or hammering the token endpoint. */
static void test_oauth_invalidate_soon_waits(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->config.retry_interval_ms = 60;
  new_oauth(fx);
  get(fx, 0);
  wait_answers(fx, 0, 1);
  uint64_t start = uv_now(&fx->loop);
  usc_creds_invalidate(fx->creds, "Bearer tok-1");
  for (int i = 1; i <= 5; i++)
    get(fx, i);
  run_for(fx, 20);
  assert_int_equal(fx->got[1].calls, 0);
  assert_int_equal(fx->srv.requests, 1);
  wait_answers(fx, 1, 5);
  assert_true(uv_now(&fx->loop) - start >= 50);
  for (int i = 1; i <= 5; i++)
    assert_string_equal(fx->got[i].value, "Bearer tok-2");
  assert_int_equal(fx->srv.requests, 2);
}

/* The first waiter's callback refuses the token being handed out: the
 * others get the next one. */
static void test_oauth_invalidate_in_callback(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->config.retry_interval_ms = 10;
  new_oauth(fx);
  for (int i = 0; i < 3; i++)
    get(fx, i);
  fx->got[0].invalidate = true;
  wait_answers(fx, 0, 3);
  assert_string_equal(fx->got[0].value, "Bearer tok-1");
  assert_string_equal(fx->got[1].value, "Bearer tok-2");
  assert_string_equal(fx->got[2].value, "Bearer tok-2");
  assert_int_equal(fx->srv.requests, 2);
}

/* While the renewal is in flight the old token is refused: callers join
 * that request rather than start another. */
static void test_oauth_invalidate_during_renewal(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->srv.expires_in = 100;
  new_oauth(fx);
  get(fx, 0);
  wait_answers(fx, 0, 1);
  fx->srv.hold = true;
  fx->now += 91000;
  assert_string_equal(get_now(fx), "Bearer tok-1");
  want_requests = 2;
  run_until(fx, requests_seen);
  usc_creds_invalidate(fx->creds, "Bearer tok-1");
  fx->now += 5000;
  for (int i = 1; i <= 5; i++)
    assert_int_equal(get(fx, i)->calls, 0);
  tsrv_release(&fx->srv);
  wait_answers(fx, 1, 5);
  for (int i = 1; i <= 5; i++)
    assert_string_equal(fx->got[i].value, "Bearer tok-2");
  assert_int_equal(fx->srv.requests, 2);
}

static bool closed_once(fixture_t *fx) { return fx->closed > 0; }

static void test_oauth_endpoint_failures(void **state) {
  fixture_t *fx = *state;
  static const struct {
    int status;
    const char *reply;
    const char *reason;
  } cases[] = {
      {500, "{\"error\":\"server_error\"}", "HTTP 500 (server_error)"},
      {401, "{\"error\":\"invalid_client\",\"error_description\":\"SECRET\"}",
       "HTTP 401 (invalid_client)"},
      {400, "{\"error\":\"SECRET-Not A Code\"}", "HTTP 400"},
      {503, "<html>SECRET</html>", "HTTP 503"},
      {200, "SECRET not json", "no JSON object"},
      {200, "[\"SECRET\"]", "no JSON object"},
      {200, "{\"token_type\":\"Bearer\"}", "no access_token"},
      {200, "{\"access_token\":\"\"}", "cannot go in a header"},
      {200, "{\"access_token\":\"SECRET x\"}", "cannot go in a header"},
      {200, "{\"access_token\":\"SECRET\",\"token_type\":\"mac\"}",
       "token_type"},
      {200, "{\"access_token\":\"SECRET\",\"expires_in\":-5}", "expires_in"},
      {200, "{\"access_token\":\"SECRET\",\"expires_in\":\"soon\"}",
       "expires_in"},
  };
  oauth_config(fx);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    fx->srv.status = cases[i].status;
    fx->srv.reply = cases[i].reply;
    fx->srv.requests = 0;
    new_oauth(fx);
    for (int k = 0; k < 3; k++)
      get(fx, k);
    wait_answers(fx, 0, 3);
    for (int k = 0; k < 3; k++) {
      assert_int_equal(fx->got[k].status, USC_ERR_IO);
      if (strstr(fx->got[k].reason, cases[i].reason) == NULL)
        fail_msg("case %zu: reason \"%s\"", i, fx->got[k].reason);
      assert_null(strstr(fx->got[k].reason, "SECRET"));
    }
    assert_int_equal(fx->srv.requests, 1);
    /* Too soon to ask again: answered at once with the same failure. */
    got_t *g = get(fx, 3);
    assert_int_equal(g->calls, 1);
    assert_int_equal(g->status, USC_ERR_IO);
    assert_string_equal(g->reason, fx->got[0].reason);
    assert_int_equal(fx->srv.requests, 1);
    /* After the interval the next get tries again. */
    fx->now += 1000;
    fx->srv.status = 200;
    fx->srv.reply = NULL;
    get(fx, 4);
    wait_answers(fx, 4, 1);
    assert_int_equal(fx->got[4].status, USC_OK);
    assert_int_equal(fx->srv.requests, 2);
    fx->closed = 0;
    close_creds(fx);
    assert_true(closed_once(fx));
  }
  assert_non_null(strstr(fx->logs, "HTTP 500 (server_error)"));
}

static void test_oauth_failure_logged_once(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->srv.status = 500;
  fx->srv.reply = "{}";
  new_oauth(fx);
  for (int i = 0; i < 3; i++) {
    get(fx, i);
    wait_answers(fx, i, 1);
    assert_int_equal(fx->got[i].status, USC_ERR_IO);
    fx->now += 1000;
  }
  assert_int_equal(fx->srv.requests, 3);
  const char *first = strstr(fx->logs, "HTTP 500");
  assert_non_null(first);
  assert_null(strstr(first + 1, "HTTP 500"));
  fx->srv.status = 200;
  fx->srv.reply = NULL;
  get(fx, 3);
  wait_answers(fx, 3, 1);
  assert_non_null(strstr(fx->logs, "obtained again"));
}

static void test_oauth_connect_refused(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  /* A port nobody listens on: the test server's, once closed. */
  tsrv_close(&fx->srv);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  new_oauth(fx);
  get(fx, 0);
  wait_answers(fx, 0, 1);
  assert_int_equal(fx->got[0].status, USC_ERR_IO);
  assert_non_null(strstr(fx->got[0].reason, "CONNECT_FAILED"));
}

static void test_oauth_cancel(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  new_oauth(fx);
  get(fx, 0);
  get(fx, 1);
  get(fx, 2);
  usc_creds_cancel(&fx->got[1].w);
  usc_creds_cancel(&fx->got[1].w); /* twice: nothing more */
  wait_answers(fx, 2, 1);
  run_for(fx, 20);
  assert_int_equal(fx->got[0].calls, 1);
  assert_int_equal(fx->got[1].calls, 0);
  assert_int_equal(fx->got[2].calls, 1);
  usc_creds_cancel(&fx->got[0].w); /* answered: nothing happens */
  /* Every waiter cancelled: the token still arrives and is kept. */
  usc_creds_invalidate(fx->creds, "Bearer tok-1");
  fx->now += 2000;
  get(fx, 3);
  usc_creds_cancel(&fx->got[3].w);
  want_requests = 2;
  run_until(fx, requests_seen);
  run_for(fx, 20);
  assert_int_equal(fx->got[3].calls, 0);
  assert_string_equal(get_now(fx), "Bearer tok-2");
  assert_int_equal(fx->srv.requests, 2);
}

static void test_oauth_close_answers_waiters(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->srv.hold = true;
  new_oauth(fx);
  for (int i = 0; i < 5; i++)
    get(fx, i);
  want_requests = 1;
  run_until(fx, requests_seen);
  usc_creds_t *creds = fx->creds;
  usc_creds_close(creds, on_closed, &fx->closed);
  fx->creds = NULL;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(fx->got[i].calls, 1);
    assert_int_equal(fx->got[i].status, USC_ERR_STATE);
    assert_non_null(strstr(fx->got[i].reason, "shutting down"));
  }
  /* Until freed, a get is refused at once. */
  got_t *g = &fx->got[5];
  usc_creds_get(creds, &g->w, on_got, g);
  assert_int_equal(g->calls, 1);
  assert_int_equal(g->status, USC_ERR_STATE);
  assert_int_equal(fx->closed, 0);
  run_until(fx, closed_once);
}

/* The first waiter's callback closes: the others hear of it. */
static void test_oauth_close_in_callback(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  new_oauth(fx);
  for (int i = 0; i < 3; i++)
    get(fx, i);
  fx->got[0].close = true;
  wait_answers(fx, 0, 3);
  assert_int_equal(fx->got[0].status, USC_OK);
  assert_int_equal(fx->got[1].status, USC_ERR_STATE);
  assert_int_equal(fx->got[2].status, USC_ERR_STATE);
  run_until(fx, closed_once);
}

static bool logged_keeping_secret(fixture_t *fx) {
  return strstr(fx->logs, "keeping the previous client secret") != NULL;
}

static bool logged_secret_change(fixture_t *fx) {
  return strstr(fx->logs, "secret reloaded") != NULL;
}

static void test_oauth_secret_file_change(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  fx->config.poll_interval_ms = 10;
  new_oauth(fx);
  get(fx, 0);
  wait_answers(fx, 0, 1);
  assert_non_null(strstr(fx->srv.body, "client_secret=s3cr%C3%A9t"));
  replace_file(fx->path, "s3cr-new\n");
  run_until(fx, logged_secret_change);
  usc_creds_invalidate(fx->creds, "Bearer tok-1");
  fx->now += 2000;
  get(fx, 1);
  wait_answers(fx, 1, 1);
  assert_non_null(strstr(fx->srv.body, "&client_secret=s3cr-new"));
  /* An empty secret file later keeps the secret in use. */
  replace_file(fx->path, "");
  run_until(fx, logged_keeping_secret);
}

static void test_oauth_config_errors(void **state) {
  fixture_t *fx = *state;
  static const struct {
    const char *url;
    const char *error;
  } cases[] = {
      {"ftp://h/t", "http:// or https://"},
      {"http:///t", "no host"},
      {"https://user:SECRET@h/t", "user information"},
      {"https://h/t#x", "fragment"},
      {"https://h/a/../t", "cannot be requested"},
      {"https://h/a b", "cannot be requested"},
  };
  oauth_config(fx);
  char error[512];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    fx->config.token_url = cases[i].url;
    assert_int_equal(
        usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error)),
        USC_ERR_INVALID);
    if (strstr(error, cases[i].error) == NULL)
      fail_msg("%s: \"%s\"", cases[i].url, error);
    assert_null(strstr(error, "SECRET"));
  }
  fx->config.token_url = fx->url;
  fx->config.client_id = "";
  assert_int_equal(
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error)),
      USC_ERR_INVALID);
  assert_non_null(strstr(error, "client id"));
  fx->config.client_id = "id";
  fx->config.client_secret_file = NULL;
  assert_int_equal(
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error)),
      USC_ERR_INVALID);
  assert_non_null(strstr(error, "client secret file"));
  fx->config.client_secret_file = fx->path;
  write_file(fx->path, "\n");
  assert_int_not_equal(
      usc_creds_new(&fx->loop, &fx->config, &fx->creds, error, sizeof(error)),
      0);
  assert_non_null(strstr(error, "is empty"));
  assert_null(fx->creds);
  /* A query and a bare host are fine. */
  write_file(fx->path, "s3cr");
  fx->config.token_url = "https://example.invalid?x=1";
  new_oauth(fx);
}

/* Each allocation of a construction failing in turn: a clean error, and
 * no leak (the ASan run checks). */
static void test_alloc_failures(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  for (int mode = 0; mode < 2; mode++) {
    if (mode == 1) {
      snprintf(fx->path, sizeof(fx->path), "%s/token", fx->dir);
      write_file(fx->path, "SECRET-one");
      fx->config.mode = USC_CREDS_STATIC;
      fx->config.token_file = fx->path;
    }
    for (size_t n = 1;; n++) {
      char error[256];
      usc_alloc_fail_at(n);
      int rc = usc_creds_new(&fx->loop, &fx->config, &fx->creds, error,
                             sizeof(error));
      usc_alloc_fail_at(0);
      if (rc == 0)
        break;
      assert_null(fx->creds);
      assert_true(rc == USC_ERR_NOMEM || rc == USC_ERR_STATE);
      assert_true(n < 100);
    }
    close_creds(fx);
  }
}

/* No memory for the token request: the waiter hears it, and the next try
 * after the interval works. */
static void test_oauth_request_nomem(void **state) {
  fixture_t *fx = *state;
  oauth_config(fx);
  new_oauth(fx);
  usc_alloc_fail_at(1);
  got_t *g = get(fx, 0);
  usc_alloc_fail_at(0);
  assert_int_equal(g->calls, 1);
  assert_int_equal(g->status, USC_ERR_NOMEM);
  g = get(fx, 1);
  assert_int_equal(g->status, USC_ERR_NOMEM);
  fx->now += 1000;
  get(fx, 2);
  wait_answers(fx, 2, 1);
  assert_int_equal(fx->got[2].status, USC_OK);
  assert_int_equal(fx->srv.requests, 1);
}

int main(void) {
  /* The test server may write to a socket the client has closed. */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(test_none_forwards),
      T(test_static_reads_trimmed),
      T(test_static_start_errors),
      T(test_static_rename_over),
      T(test_static_symlink_swap),
      T(test_static_bad_reread_keeps_old),
      T(test_static_invalidate_checks_now),
      T(test_oauth_first_get_posts_form),
      T(test_oauth_concurrent_gets_share_one_request),
      T(test_oauth_cached_until_near_expiry),
      T(test_oauth_real_clock_expiry),
      T(test_oauth_default_lifetime),
      T(test_oauth_invalidate_current),
      T(test_oauth_invalidate_soon_waits),
      T(test_oauth_invalidate_in_callback),
      T(test_oauth_invalidate_during_renewal),
      T(test_oauth_endpoint_failures),
      T(test_oauth_failure_logged_once),
      T(test_oauth_connect_refused),
      T(test_oauth_cancel),
      T(test_oauth_close_answers_waiters),
      T(test_oauth_close_in_callback),
      T(test_oauth_secret_file_change),
      T(test_oauth_config_errors),
      T(test_alloc_failures),
      T(test_oauth_request_nomem),
#undef T
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  usc_upstream_global_cleanup();
  return failed;
}
