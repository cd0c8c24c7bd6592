/* oauth: the client-credentials grant (RFC 6749 §4.4) against the token
 * URL, with the client secret sent in the form body as UAPI's token
 * endpoint expects (/oauth/token.php). */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/base/base.h"
#include "src/creds/internal.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_RETRY_MS 1000
#define MAX_REPLY (64 * 1024)
/* A reply without expires_in: renew every few minutes (a 401 sooner
 * drops it anyway). */
#define DEFAULT_LIFETIME_S 300
/* Longer lifetimes are shortened: renewing daily costs nothing, and a
 * huge value must not overflow the clock arithmetic. */
#define MAX_LIFETIME_S 86400
#define MIN_MARGIN_MS 10000
#define JSON_DEPTH 16

/* ---- the token URL ---- */

static bool has_dot_segment(const char *path) {
  size_t end = strcspn(path, "?");
  for (size_t i = 0; i < end;) {
    size_t len = strcspn(path + i + 1, "/?");
    if (len > end - i - 1)
      len = end - i - 1;
    const char *seg = path + i + 1;
    if ((len == 1 && seg[0] == '.') ||
        (len == 2 && seg[0] == '.' && seg[1] == '.'))
      return true;
    i += len + 1;
  }
  return false;
}

static bool path_acceptable(const char *path) {
  for (const char *p = path; *p != '\0'; p++) {
    if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
      return false;
  }
  return !has_dot_segment(path);
}

static size_t scheme_length(const char *url) {
  if (strncasecmp(url, "https://", 8) == 0)
    return 8;
  if (strncasecmp(url, "http://", 7) == 0)
    return 7;
  return 0;
}

/* Splits "scheme://authority/path?query" into the upstream client's base
 * URL and the request path. The URL is not echoed when it holds user
 * information, which may be a password. */
static int split_url(const char *url, char **base, char **path, char *error,
                     size_t error_cap) {
  size_t scheme_len = scheme_length(url);
  const char *host = url + scheme_len;
  size_t host_len = strcspn(host, "/?#");
  const char *rest = host + host_len;
  const char *problem = NULL;
  if (scheme_len == 0)
    problem = "must start with http:// or https://";
  else if (host_len == 0)
    problem = "has no host";
  else if (memchr(host, '@', host_len) != NULL)
    problem = "must not hold user information";
  else if (strchr(rest, '#') != NULL)
    problem = "must not have a fragment";
  else if (!path_acceptable(rest))
    problem = "has a path that cannot be requested";
  if (problem != NULL) {
    snprintf(error, error_cap, "the OAuth token URL %s", problem);
    return USC_ERR_INVALID;
  }
  *base = usc_strndup(url, scheme_len + host_len);
  *path = usc_malloc(strlen(rest) + 2);
  if (*base == NULL || *path == NULL) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  snprintf(*path, strlen(rest) + 2, "%s%s", rest[0] == '/' ? "" : "/", rest);
  return 0;
}

/* ---- the form ---- */

static bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static size_t encoded_len(const char *s) {
  size_t n = 0;
  for (; *s != '\0'; s++)
    n += unreserved((unsigned char)*s) || *s == ' ' ? 1 : 3;
  return n;
}

/* application/x-www-form-urlencoded: space as '+', the rest of what is
 * not unreserved as %XX. */
static char *encode(char *out, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (unreserved(c)) {
      *out++ = (char)c;
    } else if (c == ' ') {
      *out++ = '+';
    } else {
      *out++ = '%';
      *out++ = hex[c >> 4];
      *out++ = hex[c & 15];
    }
  }
  return out;
}

typedef struct {
  const char *name;
  const char *value; /* NULL: left out */
} field_t;

/* The form body, or NULL without memory. */
static char *build_form(const usc_creds_t *creds, size_t *len) {
  const field_t fields[] = {
      {"grant_type", "client_credentials"},    {"client_id", creds->client_id},
      {"client_secret", creds->client_secret}, {"scope", creds->scope},
      {"redirect_uri", creds->redirect_uri},
  };
  size_t cap = 1;
  for (size_t i = 0; i < USC_ARRAY_LEN(fields); i++) {
    if (fields[i].value != NULL)
      cap += strlen(fields[i].name) + encoded_len(fields[i].value) + 2;
  }
  char *body = usc_malloc(cap);
  if (body == NULL)
    return NULL;
  char *p = body;
  for (size_t i = 0; i < USC_ARRAY_LEN(fields); i++) {
    if (fields[i].value == NULL)
      continue;
    if (p != body)
      *p++ = '&';
    p = encode(p, fields[i].name);
    *p++ = '=';
    p = encode(p, fields[i].value);
  }
  *p = '\0';
  *len = (size_t)(p - body);
  return body;
}

/* ---- the reply ---- */

static json_object *parse_json(const char *body, size_t len) {
  struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
  if (tok == NULL)
    return NULL;
  json_object *obj = json_tokener_parse_ex(tok, body, (int)len);
  if (json_tokener_get_error(tok) != json_tokener_success) {
    json_object_put(obj);
    obj = NULL;
  }
  json_tokener_free(tok);
  if (obj != NULL && !json_object_is_type(obj, json_type_object)) {
    json_object_put(obj);
    obj = NULL;
  }
  return obj;
}

/* An OAuth error code ("invalid_client") is a registered word, safe to
 * repeat; anything else in an error reply is not. */
static const char *oauth_error_code(json_object *obj) {
  json_object *v;
  if (obj == NULL || !json_object_object_get_ex(obj, "error", &v) ||
      !json_object_is_type(v, json_type_string))
    return NULL;
  const char *s = json_object_get_string(v);
  size_t len = strspn(s, "abcdefghijklmnopqrstuvwxyz_");
  return len > 0 && len <= 40 && s[len] == '\0' ? s : NULL;
}

/* expires_in in seconds: a JSON number or, leniently, a string of
 * digits. Returns false when present but not a positive integer. */
static bool read_expires_in(json_object *obj, int64_t *secs) {
  json_object *v;
  *secs = DEFAULT_LIFETIME_S;
  if (!json_object_object_get_ex(obj, "expires_in", &v) || v == NULL)
    return true;
  if (json_object_is_type(v, json_type_int)) {
    *secs = json_object_get_int64(v);
  } else if (json_object_is_type(v, json_type_string)) {
    const char *s = json_object_get_string(v);
    if (s[0] == '\0' || strspn(s, "0123456789") != strlen(s) || strlen(s) > 12)
      return false;
    *secs = strtoll(s, NULL, 10);
  } else {
    return false;
  }
  if (*secs <= 0)
    return false;
  if (*secs > MAX_LIFETIME_S)
    *secs = MAX_LIFETIME_S;
  return true;
}

static const char *read_access_token(json_object *obj) {
  json_object *v;
  if (!json_object_object_get_ex(obj, "access_token", &v) ||
      !json_object_is_type(v, json_type_string))
    return NULL;
  return json_object_get_string(v);
}

static bool token_type_ok(json_object *obj) {
  json_object *v;
  if (!json_object_object_get_ex(obj, "token_type", &v) || v == NULL)
    return true;
  return json_object_is_type(v, json_type_string) &&
         strcasecmp(json_object_get_string(v), "bearer") == 0;
}

static bool token_acceptable(const char *token) {
  size_t len = strlen(token);
  if (len == 0 || len > CREDS_MAX_FILE)
    return false;
  for (size_t i = 0; i < len; i++) {
    if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] > 0x7e)
      return false;
  }
  return true;
}

/* Takes the token out of a 2xx JSON body. Returns 0 with *authorization
 * set, or an error with a reason that quotes nothing of the body. */
static int read_token(json_object *obj, char **authorization, int64_t *secs,
                      char *reason, size_t reason_cap) {
  const char *token = read_access_token(obj);
  const char *problem = NULL;
  if (token == NULL)
    problem = "has no access_token";
  else if (!token_acceptable(token))
    problem = "has an access_token that cannot go in a header";
  else if (!token_type_ok(obj))
    problem = "has a token_type other than Bearer";
  else if (!read_expires_in(obj, secs))
    problem = "has an expires_in that is not a positive integer";
  if (problem != NULL) {
    snprintf(reason, reason_cap, "token endpoint answer %s", problem);
    return USC_ERR_IO;
  }
  *authorization = creds_bearer(token);
  if (*authorization == NULL) {
    snprintf(reason, reason_cap, "out of memory for the token");
    return USC_ERR_NOMEM;
  }
  return 0;
}

static int read_reply(const usc_upstream_result_t *r, char **authorization,
                      int64_t *secs, char *reason, size_t reason_cap) {
  if (r->error != USC_UPSTREAM_OK) {
    snprintf(reason, reason_cap, "token request failed: %s (%s)",
             usc_upstream_error_name(r->error), r->error_text);
    return r->error == USC_UPSTREAM_NOMEM ? USC_ERR_NOMEM : USC_ERR_IO;
  }
  json_object *obj = parse_json(r->body, r->body_len);
  int rc = USC_ERR_IO;
  if (r->status < 200 || r->status > 299) {
    const char *code = oauth_error_code(obj);
    snprintf(reason, reason_cap, "token request failed: HTTP %d%s%s%s",
             r->status, code ? " (" : "", code ? code : "", code ? ")" : "");
  } else if (obj == NULL) {
    snprintf(reason, reason_cap,
             "token endpoint answered HTTP %d with no JSON object", r->status);
  } else {
    rc = read_token(obj, authorization, secs, reason, reason_cap);
  }
  json_object_put(obj);
  return rc;
}

/* ---- requests ---- */

static void attempt_failed(usc_creds_t *creds, int status) {
  creds->last_failed = true;
  creds->last_status = status;
  if (strcmp(creds->reason, creds->logged_reason) != 0) {
    creds_logf(creds, USC_CREDS_LOG_WARN, "%s", creds->reason);
    snprintf(creds->logged_reason, sizeof(creds->logged_reason), "%s",
             creds->reason);
  }
  creds_answer_pending(creds, status, creds->reason);
}

/* Renewal starts a tenth of the lifetime (at least 10 s, at most half)
 * before the end, and the token is no longer handed out half-way through
 * that margin, so that it never reaches the upstream expired. The
 * lifetime counts from when the request left, which is early enough. */
static void set_lifetime(usc_creds_t *creds, int64_t secs) {
  uint64_t life = (uint64_t)secs * 1000;
  uint64_t margin = life / 10 > MIN_MARGIN_MS ? life / 10 : MIN_MARGIN_MS;
  if (margin > life / 2)
    margin = life / 2;
  creds->refresh_at = creds->last_attempt + life - margin;
  creds->dead_at = creds->last_attempt + life - margin / 2;
}

static void token_received(usc_creds_t *creds, char *authorization,
                           int64_t secs) {
  creds_free_secret(creds->authorization);
  creds->authorization = authorization;
  creds->last_failed = false;
  set_lifetime(creds, secs);
  if (creds->logged_reason[0] != '\0')
    creds_logf(creds, USC_CREDS_LOG_INFO, "OAuth token obtained again from %s",
               creds->token_url);
  creds->logged_reason[0] = '\0';
  creds_answer_pending(creds, USC_OK, NULL);
}

static void on_reply(void *user, const usc_upstream_result_t *result) {
  usc_creds_t *creds = user;
  creds->req = NULL;
  if (creds->closing)
    return; /* the waiters were answered by usc_creds_close */
  char *authorization = NULL;
  int64_t secs = 0;
  int rc = read_reply(result, &authorization, &secs, creds->reason,
                      sizeof(creds->reason));
  if (rc != 0)
    attempt_failed(creds, rc);
  else
    token_received(creds, authorization, secs);
}

static void start_request(usc_creds_t *creds) {
  const usc_upstream_header_t headers[] = {
      {"content-type", "application/x-www-form-urlencoded"},
      {"accept", "application/json"},
  };
  creds->attempted = true;
  creds->last_attempt = creds_now(creds);
  size_t len = 0;
  char *body = build_form(creds, &len);
  if (body == NULL) {
    snprintf(creds->reason, sizeof(creds->reason),
             "token request could not start: out of memory");
    attempt_failed(creds, USC_ERR_NOMEM);
    return;
  }
  usc_upstream_request_t request = {
      .method = USC_UPSTREAM_POST,
      .path = creds->path,
      .headers = headers,
      .n_headers = USC_ARRAY_LEN(headers),
      .body = body,
      .body_len = len,
      .timeout_ms = creds->request_timeout_ms,
      .done = on_reply,
      .user = creds,
  };
  int rc = usc_upstream_request(creds->client, &request, &creds->req);
  explicit_bzero(body, len);
  usc_free(body);
  if (rc != 0) {
    creds->req = NULL;
    snprintf(creds->reason, sizeof(creds->reason),
             "token request could not start: %s", usc_strerror(rc));
    attempt_failed(creds, rc == USC_ERR_NOMEM ? USC_ERR_NOMEM : USC_ERR_IO);
  }
}

static void on_retry_timer(uv_timer_t *timer) {
  usc_creds_t *creds = timer->data;
  /* Skipped when every waiter has been cancelled meanwhile. */
  if (creds->req == NULL && creds->pending.first != NULL)
    start_request(creds);
}

void oauth_want_token(usc_creds_t *creds, bool background) {
  if (creds->closing || creds->req != NULL ||
      uv_is_active((uv_handle_t *)&creds->retry_timer))
    return;
  uint64_t now = creds_now(creds);
  uint64_t elapsed = now >= creds->last_attempt ? now - creds->last_attempt : 0;
  if (!creds->attempted || elapsed >= creds->retry_interval_ms) {
    start_request(creds);
    return;
  }
  /* Too soon after the last request: never a tight loop against the
   * token endpoint, whatever the callers do. */
  if (background)
    return;
  if (creds->last_failed) {
    creds_answer_pending(creds, creds->last_status, creds->reason);
    return;
  }
  /* The last token was fine but has been refused since: wait for the
   * interval to pass rather than fail a caller for nobody's fault. */
  uv_timer_start(&creds->retry_timer, on_retry_timer,
                 creds->retry_interval_ms - elapsed, 0);
}

/* ---- lifecycle ---- */

static void on_secret_changed(usc_creds_t *creds, char *secret) {
  if (strcmp(secret, creds->client_secret) == 0) {
    creds_free_secret(secret); /* rewritten with the same secret */
    return;
  }
  creds_free_secret(creds->client_secret);
  creds->client_secret = secret;
  creds_logf(creds, USC_CREDS_LOG_INFO,
             "client secret file %s changed; secret reloaded",
             creds->watch.path);
}

static int require(const char *value, const char *what, char *error,
                   size_t error_cap) {
  if (value != NULL && value[0] != '\0')
    return 0;
  snprintf(error, error_cap, "OAuth needs %s", what);
  return USC_ERR_INVALID;
}

static int copy_strings(usc_creds_t *creds, const usc_creds_config_t *config,
                        char *error, size_t error_cap) {
  creds->token_url = usc_strdup(config->token_url);
  creds->client_id = usc_strdup(config->client_id);
  creds->scope = config->scope ? usc_strdup(config->scope) : NULL;
  creds->redirect_uri =
      config->redirect_uri ? usc_strdup(config->redirect_uri) : NULL;
  if (creds->token_url == NULL || creds->client_id == NULL ||
      (config->scope && creds->scope == NULL) ||
      (config->redirect_uri && creds->redirect_uri == NULL)) {
    snprintf(error, error_cap, "out of memory");
    return USC_ERR_NOMEM;
  }
  return 0;
}

static int create_client(usc_creds_t *creds, const usc_creds_config_t *config,
                         const char *base, char *error, size_t error_cap) {
  usc_upstream_config_t uc = {
      .base_url = base,
      .ca_file = config->ca_file,
      .timeout_ms = creds->request_timeout_ms,
      .max_body = MAX_REPLY,
      .max_requests = 4,
      .max_connections = 1,
  };
  int rc = usc_upstream_create(creds->loop, &uc, &creds->client);
  if (rc != 0)
    snprintf(error, error_cap, "cannot use the OAuth token URL %s: %s",
             creds->token_url, usc_strerror(rc));
  return rc;
}

int oauth_init(usc_creds_t *creds, const usc_creds_config_t *config,
               char *error, size_t error_cap) {
  int rc = require(config->token_url, "a token URL", error, error_cap);
  if (rc == 0)
    rc = require(config->client_id, "a client id", error, error_cap);
  if (rc == 0)
    rc = require(config->client_secret_file, "a client secret file", error,
                 error_cap);
  char *base = NULL;
  if (rc == 0)
    rc = split_url(config->token_url, &base, &creds->path, error, error_cap);
  if (rc == 0)
    rc = copy_strings(creds, config, error, error_cap);
  creds->request_timeout_ms = config->request_timeout_ms
                                  ? config->request_timeout_ms
                                  : DEFAULT_TIMEOUT_MS;
  creds->retry_interval_ms =
      config->retry_interval_ms ? config->retry_interval_ms : DEFAULT_RETRY_MS;
  if (rc == 0)
    rc = watch_init(creds, &creds->watch, config->client_secret_file,
                    "client secret file", CONTENT_SECRET, on_secret_changed,
                    &creds->client_secret, error, error_cap);
  if (rc == 0)
    rc = create_client(creds, config, base, error, error_cap);
  if (rc == 0 && scheme_length(base) == 7)
    creds_logf(creds, USC_CREDS_LOG_WARN,
               "the OAuth token URL %s is not https: the client secret "
               "crosses the network in clear text",
               creds->token_url);
  usc_free(base);
  return rc;
}

static void on_client_closed(void *user) { creds_part_closed(user); }

void oauth_close(usc_creds_t *creds) {
  if (creds->client == NULL)
    return;
  creds->closing_parts++;
  /* Completes a request in flight with CANCELLED, which on_reply ignores. */
  usc_upstream_close(creds->client, on_client_closed, creds);
  creds->client = NULL;
}

void oauth_free(usc_creds_t *creds) {
  usc_free(creds->token_url);
  usc_free(creds->path);
  usc_free(creds->client_id);
  creds_free_secret(creds->client_secret);
  usc_free(creds->scope);
  usc_free(creds->redirect_uri);
}
