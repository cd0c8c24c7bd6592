#include "fuzz/fuzz_util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/base/base.h"
#include "src/log/log.h"

/* Loop turns without a byte from the server before it counts as quiet. */
#define QUIET_TURNS 4
/* A bound on turns per exchange, so that a server that keeps talking
 * (it should not: the client never reads more than it is sent) ends. */
#define MAX_TURNS 100000

void fuzz_fail(const char *file, int line, const char *what) {
  fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  abort();
}

/* ---- arena ---- */

struct fuzz_block {
  fuzz_block_t *next;
  _Alignas(16) unsigned char data[];
};

static void *arena_alloc(void *data, size_t size) {
  fuzz_arena_t *a = data;
  fuzz_block_t *b = usc_malloc(sizeof(*b) + size);
  if (b == NULL)
    return NULL;
  b->next = a->blocks;
  a->blocks = b;
  return b->data;
}

/* Nothing goes back before the reset, as with the sidecar's own arena. */
static void arena_free(void *data, void *p) {
  (void)data;
  (void)p;
}

void fuzz_arena_init(fuzz_arena_t *arena) {
  arena->pb = (ProtobufCAllocator){arena_alloc, arena_free, arena};
  arena->blocks = NULL;
}

void fuzz_arena_reset(fuzz_arena_t *arena) {
  while (arena->blocks != NULL) {
    fuzz_block_t *next = arena->blocks->next;
    usc_free(arena->blocks);
    arena->blocks = next;
  }
}

/* ---- engine ---- */

int64_t fuzz_clock(void *user) {
  (void)user;
  return FUZZ_NOW_NS;
}

usc_state_t *fuzz_engine_new(void) {
  static const char *const here[] = {"0003*210"};
  static const char *const there[] = {"0003*211"};
  usc_state_view_t views[] = {
      {.id = "00",
       .extension = "0003*210",
       .source = here,
       .n_source = 1,
       .destination = there,
       .n_destination = 1,
       .flow = 2,
       .status = 5,
       .answered = FUZZ_NOW_NS,
       .disposition = -1},
      {.id = "01",
       .extension = "0003*211",
       .source = here,
       .n_source = 1,
       .destination = there,
       .n_destination = 1,
       .flow = 2,
       .status = 5,
       .answered = FUZZ_NOW_NS,
       .disposition = -1},
  };
  usc_state_call_t call = {
      .id = FUZZ_CALL_ID,
      .extension = "0003*210",
      .published = FUZZ_NOW_NS,
      .answered = FUZZ_NOW_NS,
      .views = views,
      .n_views = USC_ARRAY_LEN(views),
  };
  usc_state_config_t config = {.max_calls = 64, .seed = 1};
  usc_state_t *state;
  FUZZ_CHECK(usc_state_new(&config, &state) == 0);
  usc_state_address_t owner = {0};
  usc_state_err_t err;
  FUZZ_CHECK(usc_state_put(state, &owner, &call, FUZZ_NOW_NS, &err) == 0);
  return state;
}

/* ---- log ---- */

void fuzz_quiet_log(void) {
  static FILE *devnull;
  if (devnull != NULL)
    return;
  devnull = fopen("/dev/null", "w");
  FUZZ_CHECK(devnull != NULL);
  usc_log_init(USC_LOG_TEXT, USC_LOG_ERROR, devnull);
}

/* ---- input ---- */

uint8_t fuzz_take_byte(fuzz_input_t *in) {
  if (in->len == 0)
    return 0;
  in->len--;
  return *in->data++;
}

const uint8_t *fuzz_take(fuzz_input_t *in, size_t n, size_t *got) {
  const uint8_t *p = in->data;
  *got = n < in->len ? n : in->len;
  in->data += *got;
  in->len -= *got;
  return p;
}

const uint8_t *fuzz_take_until(fuzz_input_t *in, uint8_t stop, size_t *got) {
  const uint8_t *p = in->data;
  const uint8_t *end = memchr(p, stop, in->len);
  if (end == NULL) {
    *got = in->len;
    in->data += in->len;
    in->len = 0;
    return p;
  }
  *got = (size_t)(end - p);
  in->data += *got + 1;
  in->len -= *got + 1;
  return p;
}

/* ---- a client on the loop ---- */

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  bool connected;
  bool written;
  bool ended; /* EOF, an error, or the connect failed */
  bool closed;
  bool trace; /* USC_FUZZ_TRACE: what the server sends goes to stderr */
  size_t received;
  char buf[64 * 1024];
} client_t;

static void on_alloc(uv_handle_t *handle, size_t hint, uv_buf_t *buf) {
  client_t *c = handle->data;
  (void)hint;
  *buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  client_t *c = stream->data;
  if (nread < 0) {
    c->ended = true;
    uv_read_stop(stream);
  } else {
    c->received += (size_t)nread;
    if (c->trace)
      fwrite(buf->base, 1, (size_t)nread, stderr);
  }
}

static void on_written(uv_write_t *req, int status) {
  client_t *c = req->data;
  (void)status;
  c->written = true;
}

static void on_connect(uv_connect_t *req, int status) {
  client_t *c = req->data;
  c->connected = true;
  if (status != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    c->ended = true;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status;
}

static void on_closed(uv_handle_t *handle) {
  client_t *c = handle->data;
  c->closed = true;
}

/* Turns the loop until nothing has moved for QUIET_TURNS turns (no byte
 * from the server, the client's write neither done nor newly done) or the
 * connection ended. */
static void run_until_quiet(uv_loop_t *loop, client_t *c) {
  size_t seen = c->received;
  bool written = c->written;
  int quiet = 0;
  for (int turns = 0; turns < MAX_TURNS && !c->ended && quiet < QUIET_TURNS;
       turns++) {
    uv_run(loop, UV_RUN_NOWAIT);
    if (c->received != seen || c->written != written) {
      seen = c->received;
      written = c->written;
      quiet = 0;
    } else {
      quiet++;
    }
  }
}

static int parse_address(const char *address, struct sockaddr_in *addr) {
  const char *colon = strrchr(address, ':');
  char host[64];
  if (colon == NULL || (size_t)(colon - address) >= sizeof(host))
    return -1;
  memcpy(host, address, (size_t)(colon - address));
  host[colon - address] = '\0';
  return uv_ip4_addr(host, atoi(colon + 1), addr);
}

size_t fuzz_client_exchange(uv_loop_t *loop, const char *address,
                            const uint8_t *data, size_t len) {
  client_t *c = calloc(1, sizeof(*c));
  FUZZ_CHECK(c != NULL);
  struct sockaddr_in addr;
  FUZZ_CHECK(parse_address(address, &addr) == 0);
  FUZZ_CHECK(uv_tcp_init(loop, &c->tcp) == 0);
  c->tcp.data = c->connect_req.data = c->write_req.data = c;
  c->trace = getenv("USC_FUZZ_TRACE") != NULL;
  FUZZ_CHECK(uv_tcp_connect(&c->connect_req, &c->tcp,
                            (const struct sockaddr *)&addr, on_connect) == 0);
  while (!c->connected)
    uv_run(loop, UV_RUN_ONCE);
  if (!c->ended && len > 0) {
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) !=
        0)
      c->ended = true;
  } else {
    c->written = true;
  }
  run_until_quiet(loop, c);
  if (!c->ended && c->written &&
      uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
    run_until_quiet(loop, c);
  /* A write still queued fails with ECANCELED as the handle closes. */
  if (uv_tcp_close_reset(&c->tcp, on_closed) != 0)
    uv_close((uv_handle_t *)&c->tcp, on_closed);
  while (!c->closed)
    uv_run(loop, UV_RUN_NOWAIT);
  size_t received = c->received;
  free(c);
  return received;
}

void fuzz_loop_finish(uv_loop_t *loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  FUZZ_CHECK(uv_loop_close(loop) == 0);
}

bool fuzz_json_valid(const char *text, size_t len) {
  json_tokener *tok = json_tokener_new();
  FUZZ_CHECK(tok != NULL);
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
  json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
  bool ok = obj != NULL &&
            json_tokener_get_error(tok) == json_tokener_success &&
            json_tokener_get_parse_end(tok) == len;
  json_object_put(obj);
  json_tokener_free(tok);
  return ok;
}
