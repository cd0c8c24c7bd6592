/* Flags and configuration: the command line and UAPI_SIDECAR_* variables
 * (usc_config_parse), and the --status-map-file text
 * (usc_xlate_status_map_parse). A parse either fails with a message or
 * gives a configuration within the documented limits.
 *
 * Input: a byte choosing what to parse; for the status map the rest is the
 * text; for flags, a byte giving the number of arguments, then
 * NUL-separated strings, the arguments first and the environment after. */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "src/base/base.h"
#include "src/config/config.h"
#include "src/xlate/xlate.h"

#define MAX_STRINGS 64

static bool terminated(const char *s, size_t cap) {
  return memchr(s, '\0', cap) != NULL;
}

static void check_config(const usc_config_t *c) {
  FUZZ_CHECK(terminated(c->listen_host, sizeof(c->listen_host)));
  FUZZ_CHECK(terminated(c->admin_host, sizeof(c->admin_host)));
  FUZZ_CHECK(terminated(c->uapi_url, sizeof(c->uapi_url)));
  FUZZ_CHECK(terminated(c->uapi_ca_file, sizeof(c->uapi_ca_file)));
  FUZZ_CHECK(terminated(c->uapi_token_file, sizeof(c->uapi_token_file)));
  FUZZ_CHECK(terminated(c->oauth_token_url, sizeof(c->oauth_token_url)));
  FUZZ_CHECK(terminated(c->oauth_client_id, sizeof(c->oauth_client_id)));
  FUZZ_CHECK(terminated(c->oauth_client_secret_file,
                        sizeof(c->oauth_client_secret_file)));
  FUZZ_CHECK(terminated(c->status_map_file, sizeof(c->status_map_file)));
  FUZZ_CHECK(terminated(c->rest_host, sizeof(c->rest_host)));
  FUZZ_CHECK(c->listen_port >= 0 && c->listen_port <= 65535);
  FUZZ_CHECK(c->admin_port >= 0 && c->admin_port <= 65535);
  FUZZ_CHECK(c->rest_port >= -1 && c->rest_port <= 65535);
  FUZZ_CHECK(c->backend <= USC_BACKEND_AUTO);
  FUZZ_CHECK(c->log_format <= USC_LOG_JSON);
  FUZZ_CHECK(c->log_level <= USC_LOG_ERROR);
  FUZZ_CHECK(c->backend == USC_BACKEND_NATIVE || c->uapi_url[0] != '\0');
  FUZZ_CHECK(c->max_recv_message_size > 0);
  FUZZ_CHECK(c->ring_ns >= 0 && c->shutdown_grace_ns >= 0);
  FUZZ_CHECK(c->max_connection_idle_ns >= 0 && c->max_connection_age_ns >= 0);
  FUZZ_CHECK(c->max_connection_age_grace_ns >= 0);
  FUZZ_CHECK(c->keepalive_time_ns >= 0 && c->keepalive_timeout_ns >= 0);
  FUZZ_CHECK(c->keepalive_min_time_ns >= 0 && c->upstream_timeout_ns >= 0);
  FUZZ_CHECK(c->breaker_open_ns >= 0 && c->watch_poll_ns >= 0);
}

static void flags(fuzz_input_t *in) {
  size_t n_args = fuzz_take_byte(in) % MAX_STRINGS;
  /* Each string a copy of its own, so that reading past one is caught. */
  char *strings[MAX_STRINGS + 2] = {"uapi-sidecar"};
  size_t n = 1;
  while (in->len > 0 && n < MAX_STRINGS) {
    size_t len;
    const uint8_t *s = fuzz_take_until(in, '\0', &len);
    strings[n] = malloc(len + 1);
    FUZZ_CHECK(strings[n] != NULL);
    memcpy(strings[n], s, len);
    strings[n][len] = '\0';
    n++;
  }
  int argc = (int)(1 + n_args < n ? 1 + n_args : n);
  char *argv[MAX_STRINGS + 2];
  char *envp[MAX_STRINGS + 2];
  memcpy(argv, strings, sizeof(char *) * (size_t)argc);
  argv[argc] = NULL;
  size_t n_env = n - (size_t)argc;
  memcpy(envp, strings + argc, sizeof(char *) * n_env);
  envp[n_env] = NULL;

  usc_config_t config;
  char error[512];
  memset(error, 'x', sizeof(error));
  usc_config_result_t r =
      usc_config_parse(argc, argv, envp, &config, error, sizeof(error));
  switch (r) {
  case USC_CONFIG_RUN:
    check_config(&config);
    break;
  case USC_CONFIG_ERROR:
    FUZZ_CHECK(terminated(error, sizeof(error)) && error[0] != '\0');
    break;
  case USC_CONFIG_HELP:
  case USC_CONFIG_VERSION:
    break;
  default:
    FUZZ_CHECK(!"a result");
  }
  for (size_t i = 1; i < n; i++)
    free(strings[i]);
}

static void status_map(fuzz_input_t *in) {
  char *text = malloc(in->len ? in->len : 1);
  FUZZ_CHECK(text != NULL);
  memcpy(text, in->data, in->len);
  usc_xlate_status_map_t *map = NULL;
  char error[256];
  int rc =
      usc_xlate_status_map_parse(text, in->len, &map, error, sizeof(error));
  if (rc == 0) {
    FUZZ_CHECK(map != NULL);
    static const int statuses[] = {200, 300, 400, 404, 429, 500, 503, 599};
    static const char *const codes[] = {NULL, "", "pc_phoncall_invalid",
                                        "PC_PHONCALL_INVALID", "a.b-c_d"};
    for (size_t i = 0; i < USC_ARRAY_LEN(statuses); i++) {
      for (size_t j = 0; j < USC_ARRAY_LEN(codes); j++) {
        usc_grpc_status_t s =
            usc_xlate_status_lookup(map, statuses[i], codes[j]);
        FUZZ_CHECK(s <= USC_GRPC_UNAUTHENTICATED);
        FUZZ_CHECK((s == USC_GRPC_OK) == (statuses[i] < 300));
      }
    }
  } else {
    FUZZ_CHECK(rc == USC_ERR_INVALID);
    FUZZ_CHECK(terminated(error, sizeof(error)) && error[0] != '\0');
  }
  usc_xlate_status_map_free(map);
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_input_t in = {data, size};
  if (fuzz_take_byte(&in) % 2 == 0)
    flags(&in);
  else
    status_map(&in);
  return 0;
}
