/* curl_lib: libcurl, loaded when the first upstream client is made.
 *
 * The native backend never speaks HTTP to anyone, yet linking libcurl
 * maps its whole dependency tree (OpenSSL, GnuTLS, Kerberos, LDAP, ...)
 * and runs their constructors in every process: several MiB of resident
 * memory. Loading it on first use keeps that cost in the processes that
 * translate. Internal to src/upstream. */
#ifndef USC_UPSTREAM_CURL_LIB_H
#define USC_UPSTREAM_CURL_LIB_H

#include <curl/curl.h>

typedef struct {
  CURLcode (*global_init)(long flags);
  void (*global_cleanup)(void);
  CURL *(*easy_init)(void);
  void (*easy_reset)(CURL *easy);
  void (*easy_cleanup)(CURL *easy);
  CURLcode (*easy_setopt)(CURL *easy, CURLoption option, ...);
  CURLcode (*easy_getinfo)(CURL *easy, CURLINFO info, ...);
  const char *(*easy_strerror)(CURLcode code);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_cleanup)(CURLM *multi);
  CURLMcode (*multi_setopt)(CURLM *multi, CURLMoption option, ...);
  CURLMcode (*multi_add_handle)(CURLM *multi, CURL *easy);
  CURLMcode (*multi_remove_handle)(CURLM *multi, CURL *easy);
  CURLMcode (*multi_assign)(CURLM *multi, curl_socket_t fd, void *data);
  CURLMcode (*multi_socket_action)(CURLM *multi, curl_socket_t fd, int mask,
                                   int *running);
  CURLMsg *(*multi_info_read)(CURLM *multi, int *queued);
  struct curl_slist *(*slist_append)(struct curl_slist *list, const char *text);
  void (*slist_free_all)(struct curl_slist *list);
  CURLU *(*url)(void);
  void (*url_cleanup)(CURLU *url);
  CURLUcode (*url_set)(CURLU *url, CURLUPart part, const char *content,
                       unsigned int flags);
} curl_lib_t;

/* Filled by curl_lib_load; valid until the process exits. */
extern curl_lib_t curl_lib;

/* Loads libcurl once and fills curl_lib. Returns 0, or -1 with a message
 * for the log (libcurl missing, or too old to have a function) in
 * `error`. Later calls return the first call's result. */
int curl_lib_load(char *error, size_t error_cap);

#endif
