/* The metrics registry and its Prometheus text exporter: see log.h. */
#include "src/log/log.h"

#include "src/base/base.h"
#include "src/grpc/grpc.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS_PER_SEC UINT64_C(1000000000)

/* ---- histograms ---- */

/* Upper bounds in nanoseconds, so that observing compares integers; the
 * "le" texts are the same bounds in seconds, as Go's client writes them. */
#define BUCKETS 16
static const uint64_t bucket_ns[BUCKETS] = {
    100000,     250000,     500000,     1000000,    2500000,   5000000,
    10000000,   25000000,   50000000,   100000000,  250000000, 500000000,
    NS_PER_SEC, 2500000000, 5000000000, 10000000000};
static const char *const bucket_le[BUCKETS + 1] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
    "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
    "1",      "2.5",     "5",      "10",    "+Inf"};

typedef struct {
  uint64_t counts[BUCKETS + 1]; /* per bucket, not cumulative; last +Inf */
  uint64_t sum_ns;
} hist_t;

static uint64_t clamp_ns(int64_t ns) { return ns > 0 ? (uint64_t)ns : 0; }

static void hist_observe(hist_t *h, int64_t duration_ns) {
  uint64_t v = clamp_ns(duration_ns);
  size_t i = 0;
  while (i < BUCKETS && v > bucket_ns[i])
    i++;
  h->counts[i]++;
  h->sum_ns += v;
}

static uint64_t hist_count(const hist_t *h) {
  uint64_t n = 0;
  for (size_t i = 0; i <= BUCKETS; i++)
    n += h->counts[i];
  return n;
}

/* ---- the registry ---- */

#define RPC_TYPES 4
#define GRPC_CODES 17 /* OK .. UNAUTHENTICATED */
static const char *const type_names[RPC_TYPES] = {
    "unary", "client_stream", "server_stream", "bidi_stream"};
static const char other[] = "other";

/* One (grpc_type, grpc_service, grpc_method) series, its names copied
 * into the same allocation. */
typedef struct {
  uint32_t hash;
  usc_metrics_rpc_type_t type;
  const char *service, *method; /* into names */
  uint64_t started;
  uint64_t handled[GRPC_CODES];
  hist_t latency;
  char names[];
} series_t;

/* Services are only interned by series under their own names, so there
 * are at most USC_METRICS_MAX_SERIES of them. Past the cap, each type can
 * add one "other" series per such service and one for service "other":
 * that bounds the whole table. */
#define MAX_SERVICES USC_METRICS_MAX_SERIES
#define MAX_ENTRIES (USC_METRICS_MAX_SERIES + RPC_TYPES * (MAX_SERVICES + 1))
/* Open addressing, linear probing, no deletions: powers of two kept at
 * most about two thirds full so that probes stay short and always end. */
#define SERIES_SLOTS 2048
#define SERVICE_SLOTS 512
_Static_assert(MAX_ENTRIES * 3 / 2 <= SERIES_SLOTS, "series table too small");
_Static_assert(MAX_SERVICES * 2 <= SERVICE_SLOTS, "service table too small");
_Static_assert(MAX_ENTRIES < UINT16_MAX, "slots hold 16-bit indexes");

/* The HTTP methods the upstream client uses, then everything else. */
static const char *const http_methods[] = {"GET",    "HEAD",  "POST",    "PUT",
                                           "DELETE", "PATCH", "OPTIONS", other};
#define HTTP_METHODS USC_ARRAY_LEN(http_methods)
/* Slot 0 counts status="error"; 1..500 count statuses 100..599. */
#define STATUS_MIN 100
#define STATUS_MAX 599
#define STATUS_SLOTS (STATUS_MAX - STATUS_MIN + 2)

/* Everything is inline, so that the registry is one allocation and the
 * upstream and fallback counters never allocate. About 50 KiB. */
struct usc_metrics {
  series_t *series[MAX_ENTRIES]; /* in order of creation, owned */
  size_t n_series;
  size_t n_named;                      /* those under their own names */
  uint16_t series_slots[SERIES_SLOTS]; /* 1 + index into series; 0 free */
  const char *services[SERVICE_SLOTS]; /* borrowed from the series */
  uint64_t upstream[HTTP_METHODS][STATUS_SLOTS];
  hist_t upstream_latency[HTTP_METHODS];
  uint64_t fallback;
};

int usc_metrics_new(usc_metrics_t **out) {
  usc_metrics_t *m = usc_calloc(1, sizeof *m);
  if (m == NULL)
    return USC_ERR_NOMEM;
  *out = m;
  return USC_OK;
}

void usc_metrics_free(usc_metrics_t *m) {
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->n_series; i++)
    usc_free(m->series[i]);
  usc_free(m);
}

/* FNV-1a, continued from `h`. */
static uint32_t fnv(uint32_t h, const char *s) {
  for (; *s != '\0'; s++) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h;
}

#define FNV_OFFSET 2166136261u

/* The type and a 0 byte between the names keep ("ab", "c") and ("a",
 * "bc") apart. */
static uint32_t series_hash(usc_metrics_rpc_type_t type, const char *service,
                            const char *method) {
  uint32_t h = (FNV_OFFSET ^ (uint32_t)type) * 16777619u;
  h = fnv(h, service) * 16777619u;
  return fnv(h, method);
}

/* The slot holding the series, or the free slot where it would go. */
static size_t series_probe(const usc_metrics_t *m, uint32_t hash,
                           usc_metrics_rpc_type_t type, const char *service,
                           const char *method) {
  size_t i = hash & (SERIES_SLOTS - 1);
  for (;; i = (i + 1) & (SERIES_SLOTS - 1)) {
    const series_t *s;
    if (m->series_slots[i] == 0)
      return i;
    s = m->series[m->series_slots[i] - 1];
    if (s->hash == hash && s->type == type &&
        strcmp(s->service, service) == 0 && strcmp(s->method, method) == 0)
      return i;
  }
}

static size_t service_probe(const usc_metrics_t *m, const char *service) {
  size_t i = fnv(FNV_OFFSET, service) & (SERVICE_SLOTS - 1);
  while (m->services[i] != NULL && strcmp(m->services[i], service) != 0)
    i = (i + 1) & (SERVICE_SLOTS - 1);
  return i;
}

static bool service_known(const usc_metrics_t *m, const char *service) {
  return m->services[service_probe(m, service)] != NULL;
}

/* Makes the series that belongs in the free `slot`. Named series also
 * intern their service, so that past the cap it keeps its label. */
static series_t *series_add(usc_metrics_t *m, size_t slot, uint32_t hash,
                            usc_metrics_rpc_type_t type, const char *service,
                            const char *method, bool named) {
  size_t service_len = strlen(service) + 1, method_len = strlen(method) + 1;
  series_t *s;

  if (m->n_series == MAX_ENTRIES) /* unreachable: see MAX_ENTRIES */
    return NULL;
  s = usc_calloc(1, sizeof *s + service_len + method_len);
  if (s == NULL)
    return NULL;
  memcpy(s->names, service, service_len);
  memcpy(s->names + service_len, method, method_len);
  s->hash = hash;
  s->type = type;
  s->service = s->names;
  s->method = s->names + service_len;
  m->series[m->n_series++] = s;
  m->series_slots[slot] = (uint16_t)m->n_series;
  if (named) {
    size_t at = service_probe(m, s->service);
    if (m->services[at] == NULL)
      m->services[at] = s->service;
    m->n_named++;
  }
  return s;
}

/* Finds or makes the series an observation goes to; see
 * USC_METRICS_MAX_SERIES for where it goes past the cap. */
static int series_get(usc_metrics_t *m, usc_metrics_rpc_type_t type,
                      const char *service, const char *method, series_t **out) {
  uint32_t hash;
  size_t slot;
  bool named = true;

  if ((unsigned)type >= RPC_TYPES || service == NULL || method == NULL)
    return USC_ERR_INVALID;
  hash = series_hash(type, service, method);
  slot = series_probe(m, hash, type, service, method);
  if (m->series_slots[slot] == 0 && m->n_named >= USC_METRICS_MAX_SERIES) {
    if (!service_known(m, service))
      service = other;
    method = other;
    named = false;
    hash = series_hash(type, service, method);
    slot = series_probe(m, hash, type, service, method);
  }
  if (m->series_slots[slot] != 0) {
    *out = m->series[m->series_slots[slot] - 1];
    return USC_OK;
  }
  *out = series_add(m, slot, hash, type, service, method, named);
  return *out != NULL ? USC_OK : USC_ERR_NOMEM;
}

int usc_metrics_rpc_started(usc_metrics_t *m, usc_metrics_rpc_type_t type,
                            const char *service, const char *method) {
  series_t *s;
  int err;
  if (m == NULL)
    return USC_OK;
  err = series_get(m, type, service, method, &s);
  if (err == USC_OK)
    s->started++;
  return err;
}

int usc_metrics_rpc_handled(usc_metrics_t *m, usc_metrics_rpc_type_t type,
                            const char *service, const char *method,
                            int grpc_code, int64_t duration_ns) {
  series_t *s;
  int err;
  if (m == NULL)
    return USC_OK;
  err = series_get(m, type, service, method, &s);
  if (err != USC_OK)
    return err;
  /* The same rule as usc_grpc_status_name, so name and count agree. */
  if (grpc_code < 0 || grpc_code >= GRPC_CODES)
    grpc_code = USC_GRPC_UNKNOWN;
  s->handled[grpc_code]++;
  hist_observe(&s->latency, duration_ns);
  return USC_OK;
}

static size_t http_method_index(const char *method) {
  size_t i = 0;
  while (i + 1 < HTTP_METHODS &&
         (method == NULL || strcmp(method, http_methods[i]) != 0))
    i++;
  return i;
}

int usc_metrics_upstream(usc_metrics_t *m, const char *http_method, int status,
                         int64_t duration_ns) {
  size_t i = http_method_index(http_method);
  size_t slot = 0;
  if (m == NULL)
    return USC_OK;
  if (status >= STATUS_MIN && status <= STATUS_MAX)
    slot = (size_t)(status - STATUS_MIN + 1);
  m->upstream[i][slot]++;
  hist_observe(&m->upstream_latency[i], duration_ns);
  return USC_OK;
}

int usc_metrics_fallback(usc_metrics_t *m) {
  if (m != NULL)
    m->fallback++;
  return USC_OK;
}

/* ---- text output ---- */

/* A growing NUL-terminated buffer. The first failed allocation makes it
 * stop writing, so that the renderer checks once, at the end. */
typedef struct {
  char *data;
  size_t len, cap;
  bool failed;
} out_t;

static void out_bytes(out_t *o, const char *s, size_t n) {
  if (o->failed)
    return;
  if (o->len + n + 1 > o->cap) {
    char *grown = usc_grow(o->data, &o->cap, o->len + n + 1, 16384);
    if (grown == NULL) {
      o->failed = true;
      return;
    }
    o->data = grown;
  }
  memcpy(o->data + o->len, s, n);
  o->len += n;
  o->data[o->len] = '\0';
}

static void out_str(out_t *o, const char *s) { out_bytes(o, s, strlen(s)); }

static void out_u64(out_t *o, uint64_t v) {
  char text[24];
  int n = snprintf(text, sizeof text, "%" PRIu64, v);
  out_bytes(o, text, (size_t)n);
}

/* Nanoseconds as exact decimal seconds without trailing zeros ("0.0015",
 * "2"): no float rounding, and the same text on every platform. */
static void out_seconds(out_t *o, uint64_t ns) {
  char text[40];
  int n = snprintf(text, sizeof text, "%" PRIu64 ".%09" PRIu64, ns / NS_PER_SEC,
                   ns % NS_PER_SEC);
  while (text[n - 1] == '0')
    n--;
  if (text[n - 1] == '.')
    n--;
  out_bytes(o, text, (size_t)n);
}

/* The length of the well-formed UTF-8 sequence at s (NUL-terminated), or
 * 0: no overlong forms, surrogates or code points past U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s) {
  size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
  uint32_t cp;
  if (s[0] < 0xc2 || s[0] > 0xf4)
    return 0;
  cp = s[0] & (0x7f >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) /* a NUL stops here too */
      return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    return 0;
  return len;
}

/* A label value. The format asks for backslash, quote and newline to be
 * escaped; bytes that are not UTF-8 (a client's method name can hold
 * anything) become U+FFFD, since Prometheus refuses a whole scrape over
 * one invalid label. */
static void out_label_value(out_t *o, const char *value) {
  const unsigned char *s = (const unsigned char *)value;
  while (*s != '\0') {
    size_t run = 0, len;
    while (s[run] >= 0x20 && s[run] < 0x80 && s[run] != '\\' && s[run] != '"')
      run++;
    out_bytes(o, (const char *)s, run);
    s += run;
    if (*s == '\0')
      break;
    if (*s == '\\' || *s == '"' || *s == '\n') {
      out_bytes(o, *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : "\\n", 2);
      s++;
    } else if (*s < 0x80) { /* other control characters are allowed */
      out_bytes(o, (const char *)s, 1);
      s++;
    } else if ((len = utf8_sequence(s)) > 0) {
      out_bytes(o, (const char *)s, len);
      s += len;
    } else {
      out_str(o, "\xef\xbf\xbd");
      s++;
    }
  }
}

static void out_family(out_t *o, const char *name, const char *type,
                       const char *help) {
  out_str(o, "# HELP ");
  out_str(o, name);
  out_str(o, " ");
  out_str(o, help);
  out_str(o, "\n# TYPE ");
  out_str(o, name);
  out_str(o, " ");
  out_str(o, type);
  out_str(o, "\n");
}

/* A sample without labels. */
static void out_sample(out_t *o, const char *name, uint64_t value) {
  out_str(o, name);
  out_str(o, " ");
  out_u64(o, value);
  out_str(o, "\n");
}

/* Writes a sample's labels, without the braces. */
typedef void (*labels_fn)(out_t *o, const void *ctx);

static void out_histogram(out_t *o, const char *name, const hist_t *h,
                          labels_fn labels, const void *ctx) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= BUCKETS; i++) {
    cumulative += h->counts[i];
    out_str(o, name);
    out_str(o, "_bucket{");
    labels(o, ctx);
    out_str(o, ",le=\"");
    out_str(o, bucket_le[i]);
    out_str(o, "\"} ");
    out_u64(o, cumulative);
    out_str(o, "\n");
  }
  out_str(o, name);
  out_str(o, "_sum{");
  labels(o, ctx);
  out_str(o, "} ");
  out_seconds(o, h->sum_ns);
  out_str(o, "\n");
  out_str(o, name);
  out_str(o, "_count{");
  labels(o, ctx);
  out_str(o, "} ");
  out_u64(o, cumulative);
  out_str(o, "\n");
}

static void out_grpc_labels(out_t *o, const void *ctx) {
  const series_t *s = ctx;
  out_str(o, "grpc_type=\"");
  out_str(o, type_names[s->type]);
  out_str(o, "\",grpc_service=\"");
  out_label_value(o, s->service);
  out_str(o, "\",grpc_method=\"");
  out_label_value(o, s->method);
  out_str(o, "\"");
}

static void out_http_method_label(out_t *o, const void *ctx) {
  out_str(o, "method=\"");
  out_str(o, ctx);
  out_str(o, "\"");
}

/* ---- the families ---- */

static void render_started(out_t *o, const usc_metrics_t *m) {
  const char *name = "grpc_server_started_total";
  out_family(o, name, "counter", "Total number of RPCs started on the server.");
  for (size_t i = 0; i < m->n_series; i++) {
    out_str(o, name);
    out_str(o, "{");
    out_grpc_labels(o, m->series[i]);
    out_str(o, "} ");
    out_u64(o, m->series[i]->started);
    out_str(o, "\n");
  }
}

static void render_handled(out_t *o, const usc_metrics_t *m) {
  const char *name = "grpc_server_handled_total";
  out_family(o, name, "counter",
             "Total number of RPCs completed on the server, regardless of "
             "success or failure.");
  for (size_t i = 0; i < m->n_series; i++) {
    for (int code = 0; code < GRPC_CODES; code++) {
      if (m->series[i]->handled[code] == 0)
        continue;
      out_str(o, name);
      out_str(o, "{");
      out_grpc_labels(o, m->series[i]);
      out_str(o, ",grpc_code=\"");
      out_str(o, usc_grpc_status_name((usc_grpc_status_t)code));
      out_str(o, "\"} ");
      out_u64(o, m->series[i]->handled[code]);
      out_str(o, "\n");
    }
  }
}

static void render_handling(out_t *o, const usc_metrics_t *m) {
  const char *name = "grpc_server_handling_seconds";
  out_family(o, name, "histogram",
             "Histogram of response latency (seconds) of gRPC that had been "
             "application-level handled by the server.");
  for (size_t i = 0; i < m->n_series; i++)
    out_histogram(o, name, &m->series[i]->latency, out_grpc_labels,
                  m->series[i]);
}

static void out_status(out_t *o, size_t slot) {
  if (slot == 0)
    out_str(o, "error");
  else
    out_u64(o, slot - 1 + STATUS_MIN);
}

static void render_upstream(out_t *o, const usc_metrics_t *m) {
  const char *name = "uapi_sidecar_upstream_requests_total";
  out_family(o, name, "counter",
             "Upstream UAPI requests by HTTP method and status; status "
             "\"error\" when no response came.");
  for (size_t i = 0; i < HTTP_METHODS; i++) {
    for (size_t slot = 1; slot <= STATUS_SLOTS; slot++) {
      size_t at = slot % STATUS_SLOTS; /* "error" after the statuses */
      if (m->upstream[i][at] == 0)
        continue;
      out_str(o, name);
      out_str(o, "{method=\"");
      out_str(o, http_methods[i]);
      out_str(o, "\",status=\"");
      out_status(o, at);
      out_str(o, "\"} ");
      out_u64(o, m->upstream[i][at]);
      out_str(o, "\n");
    }
  }
}

static void render_upstream_latency(out_t *o, const usc_metrics_t *m) {
  const char *name = "uapi_sidecar_upstream_request_seconds";
  out_family(o, name, "histogram",
             "Duration of upstream UAPI requests in seconds, by HTTP method.");
  for (size_t i = 0; i < HTTP_METHODS; i++)
    if (hist_count(&m->upstream_latency[i]) > 0)
      out_histogram(o, name, &m->upstream_latency[i], out_http_method_label,
                    http_methods[i]);
}

static void render_fallback(out_t *o, const usc_metrics_t *m) {
  const char *name = "uapi_sidecar_fallback_answers_total";
  out_family(o, name, "counter",
             "RPCs the native engine answered as the fallback of the "
             "upstream.");
  out_sample(o, name, m->fallback);
}

static void render_gauges(out_t *o, const usc_metrics_gauges_t *g) {
  out_family(o, "uapi_sidecar_breaker_state", "gauge",
             "State of the upstream circuit breaker: 0 closed, 1 open, 2 "
             "half-open.");
  out_sample(o, "uapi_sidecar_breaker_state", (uint64_t)g->breaker_state);
  out_family(o, "uapi_sidecar_engine_calls", "gauge",
             "Calls the native call-state engine holds.");
  out_sample(o, "uapi_sidecar_engine_calls", g->engine_calls);
  out_family(o, "uapi_sidecar_open_connections", "gauge",
             "Open HTTP/2 connections.");
  out_sample(o, "uapi_sidecar_open_connections", g->open_connections);
  out_family(o, "uapi_sidecar_open_streams", "gauge",
             "Open HTTP/2 streams over all connections.");
  out_sample(o, "uapi_sidecar_open_streams", g->open_streams);
  if (!g->tls)
    return;
  out_family(o, "uapi_sidecar_tls_handshake_failures_total", "counter",
             "TLS connections closed before their handshake was done: "
             "refused or timed out.");
  out_sample(o, "uapi_sidecar_tls_handshake_failures_total",
             g->tls_handshake_failures);
}

static void out_saves(out_t *o, const char *result, uint64_t n) {
  out_str(o, "uapi_sidecar_state_saves_total{result=\"");
  out_str(o, result);
  out_str(o, "\"} ");
  out_u64(o, n);
  out_str(o, "\n");
}

static void render_state_file(out_t *o, const usc_metrics_gauges_t *g) {
  const char *last = "uapi_sidecar_state_last_save_timestamp_seconds";
  out_family(o, "uapi_sidecar_state_saves_total", "counter",
             "Writes of the --state-file, by result (ok, error).");
  out_saves(o, "ok", g->state_saves);
  out_saves(o, "error", g->state_save_errors);
  out_family(o, "uapi_sidecar_state_file_rejected_total", "counter",
             "State files found unusable at start and moved aside.");
  out_sample(o, "uapi_sidecar_state_file_rejected_total",
             g->state_file_rejected);
  out_family(o, last, "gauge",
             "When the --state-file was last written, in seconds since the "
             "epoch (0: not yet).");
  out_str(o, last);
  out_str(o, " ");
  out_seconds(o,
              g->state_last_save_ns > 0 ? (uint64_t)g->state_last_save_ns : 0);
  out_str(o, "\n");
}

/* ---- process metrics, from /proc ---- */

/* Fields of /proc/self/stat, counted from 0 at the state, the field after
 * the command name: see proc(5). */
enum { STAT_UTIME = 11, STAT_STIME = 12, STAT_STARTTIME = 19, STAT_RSS = 21 };

/* Reads the four fields above into values[] by those indexes. The command
 * name is skipped up to its last ')' as it may hold spaces and parens. */
static bool read_stat(uint64_t values[STAT_RSS + 1]) {
  char line[1024];
  const char *p;
  size_t n;
  FILE *f = fopen("/proc/self/stat", "r");
  if (f == NULL)
    return false;
  n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = '\0';
  p = strrchr(line, ')');
  if (p == NULL)
    return false;
  p++;
  for (int field = 0; field <= STAT_RSS; field++) {
    char *end;
    while (*p == ' ')
      p++;
    values[field] = strtoull(p, &end, 10);
    if (field != 0 && end == p) /* the state is a letter */
      return false;
    p += strcspn(p, " ");
  }
  return true;
}

/* The boot time, in seconds since the epoch, from /proc/stat. */
static bool read_boot_time(uint64_t *btime) {
  char *line = NULL;
  size_t cap = 0;
  bool found = false;
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL)
    return false;
  while (!found && getline(&line, &cap, f) > 0)
    found = sscanf(line, "btime %" SCNu64, btime) == 1;
  free(line); /* getline's, from libc's malloc */
  fclose(f);
  return found;
}

/* Entries of /proc/self/fd, less the one open to read it. */
static bool count_fds(uint64_t *fds) {
  struct dirent *e;
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return false;
  *fds = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (atoi(e->d_name) != dirfd(d))
      (*fds)++;
  }
  closedir(d);
  return true;
}

/* Clock ticks to nanoseconds, without overflowing for years of ticks. */
static uint64_t ticks_ns(uint64_t ticks, uint64_t per_sec) {
  return ticks / per_sec * NS_PER_SEC + ticks % per_sec * NS_PER_SEC / per_sec;
}

static void render_process(out_t *o) {
  uint64_t stat[STAT_RSS + 1], btime, fds;
  long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);

  if (ticks > 0 && page > 0 && read_stat(stat)) {
    uint64_t cpu = stat[STAT_UTIME] + stat[STAT_STIME];
    out_family(o, "process_cpu_seconds_total", "counter",
               "Total user and system CPU time spent in seconds.");
    out_str(o, "process_cpu_seconds_total ");
    out_seconds(o, ticks_ns(cpu, (uint64_t)ticks));
    out_str(o, "\n");
    out_family(o, "process_resident_memory_bytes", "gauge",
               "Resident memory size in bytes.");
    out_sample(o, "process_resident_memory_bytes",
               stat[STAT_RSS] * (uint64_t)page);
    if (read_boot_time(&btime)) {
      out_family(o, "process_start_time_seconds", "gauge",
                 "Start time of the process since unix epoch in seconds.");
      out_str(o, "process_start_time_seconds ");
      out_seconds(o, btime * NS_PER_SEC +
                         ticks_ns(stat[STAT_STARTTIME], (uint64_t)ticks));
      out_str(o, "\n");
    }
  }
  if (count_fds(&fds)) {
    out_family(o, "process_open_fds", "gauge",
               "Number of open file descriptors.");
    out_sample(o, "process_open_fds", fds);
  }
}

int usc_metrics_render(const usc_metrics_t *m,
                       const usc_metrics_gauges_t *gauges, char **text,
                       size_t *len) {
  out_t o = {NULL, 0, 0, false};
  if (m == NULL)
    return USC_ERR_INVALID;
  render_started(&o, m);
  render_handled(&o, m);
  render_handling(&o, m);
  render_upstream(&o, m);
  render_upstream_latency(&o, m);
  render_fallback(&o, m);
  if (gauges != NULL)
    render_gauges(&o, gauges);
  if (gauges != NULL && gauges->state_file)
    render_state_file(&o, gauges);
  render_process(&o);
  if (o.failed) {
    usc_free(o.data);
    return USC_ERR_NOMEM;
  }
  *text = o.data;
  *len = o.len;
  return USC_OK;
}
