#include "src/upstream/curl_lib.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The soname libcurl4 and libcurl4-openssl-dev's libcurl.so point to. */
#define CURL_SONAME "libcurl.so.4"

curl_lib_t curl_lib;

typedef struct {
  const char *name;
  void **slot;
} symbol_t;

#define SYMBOL(field)                                                          \
  { "curl_" #field, (void **)&curl_lib.field }

static const symbol_t symbols[] = {
    SYMBOL(global_init),
    SYMBOL(global_cleanup),
    SYMBOL(easy_init),
    SYMBOL(easy_reset),
    SYMBOL(easy_cleanup),
    SYMBOL(easy_setopt),
    SYMBOL(easy_getinfo),
    SYMBOL(easy_strerror),
    SYMBOL(multi_init),
    SYMBOL(multi_cleanup),
    SYMBOL(multi_setopt),
    SYMBOL(multi_add_handle),
    SYMBOL(multi_remove_handle),
    SYMBOL(multi_assign),
    SYMBOL(multi_socket_action),
    SYMBOL(multi_info_read),
    SYMBOL(slist_append),
    SYMBOL(slist_free_all),
    SYMBOL(url),
    SYMBOL(url_cleanup),
    SYMBOL(url_set),
};

static bool tried;
static int result;
static char reason[256];

static int load(void) {
  /* Never unloaded: libcurl's global state lives as long as the process. */
  void *handle = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    snprintf(reason, sizeof reason, "cannot load %s (install libcurl4): %s",
             CURL_SONAME, dlerror());
    return -1;
  }
  for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
    *symbols[i].slot = dlsym(handle, symbols[i].name);
    if (*symbols[i].slot == NULL) {
      snprintf(reason, sizeof reason,
               "%s has no %s: libcurl 7.62 or later "
               "is needed",
               CURL_SONAME, symbols[i].name);
      memset(&curl_lib, 0, sizeof curl_lib);
      return -1;
    }
  }
  return 0;
}

int curl_lib_load(char *error, size_t error_cap) {
  if (!tried) {
    tried = true;
    result = load();
  }
  if (result != 0 && error_cap > 0)
    snprintf(error, error_cap, "%s", reason);
  return result;
}
