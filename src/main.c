/* uapi-sidecar: wiring. Parses the configuration, starts the gRPC server
 * on one libuv loop with the native engine (and, with --uapi-url, the
 * upstream client and credentials) behind it, and drains on SIGTERM or
 * SIGINT: report NOT_SERVING to health checks, stop accepting, end open
 * streams, let in-flight calls finish within the grace period, close
 * everything, write the --state-file a last time, exit 0. A second signal
 * exits at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "src/base/base.h"
#include "src/config/config.h"
#include "src/creds/creds.h"
#include "src/dispatch/dispatch.h"
#include "src/filewatch/filewatch.h"
#include "src/h2/h2.h"
#include "src/log/log.h"
#include "src/persist/persist.h"
#include "src/state/state.h"
#include "src/tls/tls.h"

#define DRAIN_POLL_MS 20
#define TOKENS_FILE_MAX (1024 * 1024)
#define TOKENS_POLL_MS 1000

typedef struct {
  uv_loop_t loop;
  usc_config_t config;
  usc_state_t *state;
  usc_persist_t *persist; /* --state-file, or NULL */
  usc_upstream_t *upstream;
  usc_creds_t *creds;
  usc_xlate_status_map_t *status_map;
  usc_dispatch_t *dispatch;
  usc_filewatch_t *tokens; /* --tokens-file, or NULL */
  usc_tls_ctx_t *tls;      /* --tls-cert and --tls-key, or NULL */
  usc_h2_server_t *server;
  usc_admin_server_t *rest;  /* the UAPI REST facade, or NULL */
  usc_admin_server_t *admin; /* /metrics, /healthz, /readyz */
  usc_metrics_t *metrics;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  uv_timer_t drain_timer;
  uint64_t drain_deadline;
  bool draining;
} sidecar_t;

extern char **environ;

static int64_t wall_clock_ns(void *user) {
  (void)user;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_dispatch_closed(void *user) {
  sidecar_t *app = user;
  if (app->creds != NULL)
    usc_creds_close(app->creds, NULL, NULL);
  if (app->upstream != NULL)
    usc_upstream_close(app->upstream, NULL, NULL);
  usc_xlate_status_map_free(app->status_map);
  usc_metrics_free(app->metrics);
  /* Every call is over: the engine's last state goes to the file (the
   * write finishes on the thread pool before the loop ends). */
  if (app->persist != NULL)
    usc_persist_close(app->persist, NULL, NULL);
  app->persist = NULL;
  usc_state_free(app->state);
  app->state = NULL;
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->drain_timer, NULL);
}

static void on_admin_closed(void *user) {
  sidecar_t *app = user;
  usc_filewatch_close(app->tokens, NULL, NULL);
  app->tokens = NULL;
  usc_dispatch_close(app->dispatch, on_dispatch_closed, app);
}

static void on_rest_closed(void *user) {
  sidecar_t *app = user;
  usc_admin_server_close(app->admin, on_admin_closed, app);
}

static void on_server_closed(void *user) {
  sidecar_t *app = user;
  app->server = NULL;
  usc_tls_ctx_free(app->tls);
  app->tls = NULL;
  if (app->rest != NULL)
    usc_admin_server_close(app->rest, on_rest_closed, app);
  else
    on_rest_closed(app);
}

static void on_drain_tick(uv_timer_t *timer) {
  sidecar_t *app = timer->data;
  bool idle = usc_h2_server_connections(app->server) == 0;
  if (!idle && uv_now(&app->loop) < app->drain_deadline)
    return;
  if (!idle)
    usc_log(USC_LOG_WARN, "grace period over", "cancelled_calls=%zu",
            usc_h2_server_active_calls(app->server));
  uv_timer_stop(timer);
  usc_h2_server_close(app->server, on_server_closed, app);
}

static void on_signal(uv_signal_t *signal, int signum) {
  sidecar_t *app = signal->data;
  if (app->draining) {
    usc_log(USC_LOG_WARN, "second signal, exiting now", "signal=%d", signum);
    _exit(1);
  }
  app->draining = true;
  usc_log(USC_LOG_INFO, "shutting down", "signal=%d grace_ms=%lld", signum,
          (long long)(app->config.shutdown_grace_ns / 1000000));
  /* Health watchers hear NOT_SERVING before their streams end. */
  usc_dispatch_set_serving(app->dispatch, false);
  usc_h2_server_drain(app->server);
  if (app->rest != NULL)
    usc_admin_server_drain(app->rest);
  usc_dispatch_end_streams(app->dispatch);
  app->drain_deadline =
      uv_now(&app->loop) + (uint64_t)(app->config.shutdown_grace_ns / 1000000);
  uv_timer_start(&app->drain_timer, on_drain_tick, 0, DRAIN_POLL_MS);
}

/* Loads the engine's calls from the --state-file and keeps writing them
 * there; the dispatcher, created next, wakes the engine for what loaded
 * calls still have to come (ringing, parking). */
static int start_persist(sidecar_t *app) {
  usc_persist_config_t persist = {
      .loop = &app->loop,
      .state = app->state,
      .path = app->config.state_file,
      .interval_ms = (uint64_t)(app->config.state_save_interval_ns / 1000000),
      .clock = wall_clock_ns,
  };
  char error[1024];
  if (usc_persist_start(&persist, &app->persist, error, sizeof(error)) != 0) {
    usc_log(USC_LOG_ERROR, "cannot start", "--state-file: %s", error);
    return USC_ERR_IO;
  }
  return 0;
}

static int start_engine(sidecar_t *app) {
  usc_state_config_t engine = {
      .max_calls = app->config.max_calls,
      .ring_ns = app->config.ring_ns,
      .seed = (uint64_t)wall_clock_ns(NULL) ^ ((uint64_t)getpid() << 32),
  };
  const usc_config_t *c = &app->config;
  usc_dispatch_config_t dispatch = {
      .loop = &app->loop,
      .clock = wall_clock_ns,
      .ring_ns = c->ring_ns,
      .backend = c->backend,
      .upstream = app->upstream,
      .creds = app->creds,
      .status_map = app->status_map,
      .upstream_max_body = c->upstream_max_body,
      .breaker_failures = c->breaker_failures,
      .breaker_open_ms = (uint64_t)(c->breaker_open_ns / 1000000),
      .watch_poll_ms = (uint64_t)(c->watch_poll_ns / 1000000),
      .metrics = app->metrics,
  };
  if (usc_state_new(&engine, &app->state) != 0)
    return USC_ERR_NOMEM;
  if (c->state_file[0] != '\0' && start_persist(app) != 0)
    return USC_ERR_IO;
  dispatch.state = app->state;
  return usc_dispatch_new(&dispatch, &app->dispatch);
}

/* ---- access control: the tokens file ---- */

static int take_tokens(void *user, const char *text, size_t len, char *error,
                       size_t error_cap) {
  sidecar_t *app = user;
  size_t tokens = 0;
  int rc = usc_dispatch_load_tokens(app->dispatch, text, len, &tokens, error,
                                    error_cap);
  if (rc == 0)
    usc_log(USC_LOG_INFO,
            app->tokens != NULL ? "tokens file reloaded" : "access control",
            "tokens_file=%s tokens=%zu", app->config.tokens_file, tokens);
  return rc;
}

static void tokens_failed(void *user, const char *why) {
  (void)user;
  usc_log(USC_LOG_ERROR, "tokens file not reloaded",
          "%s; the previous tokens stay in force", why);
}

static int start_tokens(sidecar_t *app) {
  const usc_config_t *c = &app->config;
  if (c->tokens_file[0] == '\0')
    return 0;
  usc_filewatch_config_t watch = {
      .path = c->tokens_file,
      .what = "tokens file",
      .max_size = TOKENS_FILE_MAX,
      .take = take_tokens,
      .failed = tokens_failed,
      .user = app,
  };
  char error[512];
  if (usc_filewatch_new(&app->loop, &watch, &app->tokens, error,
                        sizeof(error)) != 0) {
    usc_log(USC_LOG_ERROR, "cannot start", "--tokens-file: %s", error);
    return USC_ERR_INVALID;
  }
  usc_filewatch_start(app->tokens, TOKENS_POLL_MS);
  if (c->backend != USC_BACKEND_NATIVE && app->creds == NULL)
    usc_log(USC_LOG_WARN, "access control",
            "the clients' tokens are the sidecar's and are not forwarded "
            "upstream; without --uapi-token-file or OAuth credentials, "
            "upstream requests carry no authorization");
  return 0;
}

static int read_status_map(sidecar_t *app) {
  const char *path = app->config.status_map_file;
  char text[64 * 1024], error[256];
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    usc_log(USC_LOG_ERROR, "cannot start", "--status-map-file: cannot read %s",
            path);
    return USC_ERR_IO;
  }
  size_t len = fread(text, 1, sizeof(text), f);
  bool whole = feof(f);
  fclose(f);
  if (!whole) {
    usc_log(USC_LOG_ERROR, "cannot start",
            "--status-map-file: %s is larger than 64 KiB", path);
    return USC_ERR_TOO_LARGE;
  }
  if (usc_xlate_status_map_parse(text, len, &app->status_map, error,
                                 sizeof(error)) != 0) {
    usc_log(USC_LOG_ERROR, "cannot start", "--status-map-file: %s: %s", path,
            error);
    return USC_ERR_INVALID;
  }
  return 0;
}

static void log_creds(void *user, usc_creds_log_level_t level,
                      const char *message) {
  (void)user;
  usc_log(level == USC_CREDS_LOG_WARN ? USC_LOG_WARN : USC_LOG_INFO,
          "upstream credentials", "%s", message);
}

static int start_creds(sidecar_t *app) {
  const usc_config_t *c = &app->config;
  usc_creds_config_t creds = {
      .mode = USC_CREDS_NONE,
      .token_file = c->uapi_token_file,
      .token_url = c->oauth_token_url,
      .client_id = c->oauth_client_id,
      .client_secret_file = c->oauth_client_secret_file,
      .ca_file = c->uapi_ca_file[0] ? c->uapi_ca_file : NULL,
      .log = log_creds,
  };
  if (c->uapi_token_file[0] != '\0')
    creds.mode = USC_CREDS_STATIC;
  else if (c->oauth_token_url[0] != '\0')
    creds.mode = USC_CREDS_OAUTH;
  else
    return 0;
  char error[512];
  if (usc_creds_new(&app->loop, &creds, &app->creds, error, sizeof(error))) {
    usc_log(USC_LOG_ERROR, "cannot start", "%s", error);
    return USC_ERR_INVALID;
  }
  return 0;
}

/* The upstream client, its credentials and status map, for the uapi and
 * auto backends. */
static int start_upstream(sidecar_t *app) {
  const usc_config_t *c = &app->config;
  if (c->backend == USC_BACKEND_NATIVE)
    return 0;
  usc_upstream_config_t upstream = {
      .base_url = c->uapi_url,
      .ca_file = c->uapi_ca_file[0] ? c->uapi_ca_file : NULL,
      .timeout_ms = (uint32_t)(c->upstream_timeout_ns / 1000000),
      .max_body = c->upstream_max_body,
      .max_requests = c->upstream_max_requests,
  };
  if (usc_upstream_create(&app->loop, &upstream, &app->upstream) != 0) {
    const char *why = usc_upstream_global_error();
    if (why[0] != '\0')
      usc_log(USC_LOG_ERROR, "cannot start", "upstream client: %s", why);
    else
      usc_log(USC_LOG_ERROR, "cannot start", "--uapi-url: cannot use %s",
              c->uapi_url);
    return USC_ERR_INVALID;
  }
  if (c->status_map_file[0] != '\0' && read_status_map(app) != 0)
    return USC_ERR_INVALID;
  return start_creds(app);
}

/* Smaller responses are not worth the CPU of compressing them. */
#define GZIP_MIN_RESPONSE_SIZE 1024

static uint64_t ms(int64_t ns) { return (uint64_t)(ns / 1000000); }

/* The certificate and key are read once, here: a renewed certificate
 * takes a restart. */
static int start_tls(sidecar_t *app) {
  const usc_config_t *c = &app->config;
  if (c->tls_cert_file[0] == '\0')
    return 0;
  usc_tls_config_t tls = {
      .cert_file = c->tls_cert_file,
      .key_file = c->tls_key_file,
      .client_ca_file = c->tls_client_ca_file,
  };
  char error[512];
  if (usc_tls_ctx_new(&tls, &app->tls, error, sizeof(error)) != 0) {
    usc_log(USC_LOG_ERROR, "cannot start", "TLS: %s", error);
    return USC_ERR_INVALID;
  }
  return 0;
}

static int start_server(sidecar_t *app) {
  usc_h2_server_config_t server = {
      .handler = usc_dispatch_handler(),
      .user = app->dispatch,
      .max_recv_message_size = app->config.max_recv_message_size,
      .max_concurrent_streams = app->config.max_concurrent_streams,
      .gzip_min_response_size = GZIP_MIN_RESPONSE_SIZE,
      .max_connections = app->config.max_connections,
      .max_header_list_size = app->config.max_header_list_size,
      .max_connection_idle_ms = ms(app->config.max_connection_idle_ns),
      .max_connection_age_ms = ms(app->config.max_connection_age_ns),
      .max_connection_age_grace_ms =
          ms(app->config.max_connection_age_grace_ns),
      .keepalive_time_ms = ms(app->config.keepalive_time_ns),
      .keepalive_timeout_ms = ms(app->config.keepalive_timeout_ns),
      .keepalive_min_time_ms = ms(app->config.keepalive_min_time_ns),
      .tls = app->tls,
      .tls_handshake_timeout_ms = ms(app->config.tls_handshake_timeout_ns),
      .keepalive_permit_without_calls =
          app->config.keepalive_permit_without_calls,
  };
  char error[512];
  if (usc_h2_server_start(&app->loop, &server, app->config.listen_host,
                          app->config.listen_port, &app->server, error,
                          sizeof(error)) != 0) {
    usc_log(USC_LOG_ERROR, "cannot start", "%s", error);
    return USC_ERR_IO;
  }
  static const char *const backends[] = {"native", "uapi", "auto"};
  usc_log(USC_LOG_INFO, "listening", "address=%s backend=%s tls=%s",
          usc_h2_server_address(app->server), backends[app->config.backend],
          app->tls == NULL                            ? "off"
          : app->config.tls_client_ca_file[0] != '\0' ? "mutual"
                                                      : "on");
  return 0;
}

static int start_rest(sidecar_t *app) {
  if (app->config.rest_port < 0)
    return 0;
  usc_admin_config_t rest = {
      .handler = usc_dispatch_rest_handler(),
      .user = app->dispatch,
      .refusal = usc_dispatch_rest_refusal(),
      /* A request's JSON may be larger than its protobuf: room for the
       * largest gRPC request, written out. */
      .limits.max_body_bytes = 2 * app->config.max_recv_message_size,
  };
  char error[512];
  if (usc_admin_server_start(&app->loop, &rest, app->config.rest_host,
                             app->config.rest_port, &app->rest, error,
                             sizeof(error)) != 0) {
    usc_log(USC_LOG_ERROR, "cannot start", "--rest-listen: %s", error);
    return USC_ERR_IO;
  }
  usc_log(USC_LOG_INFO, "rest-facade serving", "address=%s",
          usc_admin_server_address(app->rest));
  return 0;
}

/* ---- the admin endpoint: metrics and probes ---- */

static void respond_text(usc_admin_req_t *req, int status, const char *text) {
  usc_admin_respond(req, status, "text/plain; charset=utf-8", NULL, 0, text,
                    strlen(text));
}

static void serve_metrics(sidecar_t *app, usc_admin_req_t *req) {
  usc_metrics_gauges_t gauges = {
      .breaker_state = usc_dispatch_breaker_state(app->dispatch),
      .engine_calls = usc_state_call_count(app->state),
      .open_connections = usc_h2_server_connections(app->server),
      .open_streams = usc_h2_server_active_calls(app->server),
      .tls = app->tls != NULL,
      .tls_handshake_failures =
          usc_h2_server_tls_handshake_failures(app->server),
  };
  if (app->persist != NULL) {
    usc_persist_stats_t st;
    usc_persist_stats(app->persist, &st);
    gauges.state_file = true;
    gauges.state_saves = st.saves;
    gauges.state_save_errors = st.save_errors;
    gauges.state_file_rejected = st.rejected;
    gauges.state_last_save_ns = st.last_save_ns;
  }
  char *text;
  size_t len;
  if (usc_metrics_render(app->metrics, &gauges, &text, &len) != 0) {
    respond_text(req, 500, "cannot render the metrics\n");
    return;
  }
  usc_admin_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
                    0, text, len);
  usc_free(text);
}

/* /healthz: the process answers. /readyz: it should get traffic (not
 * draining, and in front of UAPI the upstream is reachable). */
static void on_admin_request(void *user, usc_admin_req_t *req,
                             const usc_admin_request_t *request) {
  sidecar_t *app = user;
  const char *path = request->target;
  size_t path_len = strcspn(path, "?");
  bool get = strcmp(request->method, "GET") == 0 ||
             strcmp(request->method, "HEAD") == 0;
  if (!get)
    respond_text(req, 405, "use GET\n");
  else if (path_len == 8 && strncmp(path, "/metrics", 8) == 0)
    serve_metrics(app, req);
  else if (path_len == 8 && strncmp(path, "/healthz", 8) == 0)
    respond_text(req, 200, "ok\n");
  else if (path_len == 7 && strncmp(path, "/readyz", 7) == 0)
    respond_text(req, usc_dispatch_ready(app->dispatch) ? 200 : 503,
                 usc_dispatch_ready(app->dispatch) ? "ready\n" : "not ready\n");
  else
    respond_text(req, 404, "not found: try /metrics, /healthz or /readyz\n");
}

static void on_admin_cancel(void *user, usc_admin_req_t *req) {
  (void)user;
  (void)req;
}

static const usc_admin_handler_t admin_handler = {
    .on_request = on_admin_request,
    .on_cancel = on_admin_cancel,
};

static int start_admin(sidecar_t *app) {
  usc_admin_config_t admin = {.handler = &admin_handler, .user = app};
  char error[512];
  if (usc_admin_server_start(&app->loop, &admin, app->config.admin_host,
                             app->config.admin_port, &app->admin, error,
                             sizeof(error)) != 0) {
    usc_log(USC_LOG_ERROR, "cannot start", "--admin-listen: %s", error);
    return USC_ERR_IO;
  }
  usc_log(USC_LOG_INFO, "admin serving", "address=%s",
          usc_admin_server_address(app->admin));
  return 0;
}

static void start_signals(sidecar_t *app) {
  uv_signal_init(&app->loop, &app->sigterm);
  uv_signal_init(&app->loop, &app->sigint);
  uv_timer_init(&app->loop, &app->drain_timer);
  app->sigterm.data = app->sigint.data = app->drain_timer.data = app;
  uv_signal_start(&app->sigterm, on_signal, SIGTERM);
  uv_signal_start(&app->sigint, on_signal, SIGINT);
}

static int parse(int argc, char **argv, usc_config_t *config) {
  char error[512];
  switch (usc_config_parse(argc, argv, environ, config, error, sizeof(error))) {
  case USC_CONFIG_HELP:
    fputs(usc_config_usage(), stdout);
    return 0;
  case USC_CONFIG_VERSION:
    printf("%s\n", usc_config_version());
    return 0;
  case USC_CONFIG_ERROR:
    fprintf(stderr, "uapi-sidecar: %s\n", error);
    return 2;
  case USC_CONFIG_RUN:
    break;
  }
  return -1;
}

int main(int argc, char **argv) {
  static sidecar_t app;
  int rc = parse(argc, argv, &app.config);
  if (rc >= 0)
    return rc;
  usc_log_init(app.config.log_format, app.config.log_level, NULL);
  uv_loop_init(&app.loop);
  signal(SIGPIPE, SIG_IGN);
  /* Before anything is served: a SIGTERM that comes as soon as the
   * listening address is logged still drains and writes the state file
   * (it is handled once the loop runs). */
  start_signals(&app);
  if (usc_metrics_new(&app.metrics) != 0 || start_upstream(&app) != 0 ||
      start_engine(&app) != 0)
    return 1;
  /* A tokens file or TLS files that cannot be used are configuration
   * errors. */
  if (start_tokens(&app) != 0 || start_tls(&app) != 0)
    return 2;
  if (start_server(&app) != 0 || start_rest(&app) != 0 ||
      start_admin(&app) != 0)
    return 1;
  uv_run(&app.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&app.loop);
  if (app.config.backend != USC_BACKEND_NATIVE)
    usc_upstream_global_cleanup();
  usc_log(USC_LOG_INFO, "stopped", "clean=%s", rc == 0 ? "yes" : "no");
  return rc == 0 ? 0 : 1;
}
