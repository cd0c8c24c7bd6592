/* Filling usc_xlate_error_t: bounded, and safe for the headers and
 * messages the error ends up in. */
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"
#include "src/xlate/internal.h"

void xl_copy_text(char *dst, size_t cap, const char *src, size_t len) {
  size_t n = src != NULL ? strnlen(src, len) : 0;
  if (n >= cap) {
    n = cap - 1;
    /* Never end on half a UTF-8 sequence: back off its continuation
     * bytes and its lead byte. */
    size_t cut = n;
    while (cut > 0 && ((unsigned char)src[cut] & 0xC0) == 0x80)
      cut--;
    n = cut;
  }
  if (n > 0)
    memcpy(dst, src, n);
  dst[n] = '\0';
}

void xl_copy_code(char *dst, size_t cap, const char *src, size_t len) {
  xl_copy_text(dst, cap, src, len);
  for (char *p = dst; *p != '\0'; p++) {
    if ((unsigned char)*p < '!' || (unsigned char)*p > '~')
      *p = '_';
  }
}

void xl_fail(usc_xlate_error_t *err, usc_grpc_status_t status, const char *code,
             const char *fmt, ...) {
  if (err == NULL)
    return;
  err->status = status;
  xl_copy_code(err->code, sizeof(err->code), code, code ? strlen(code) : 0);
  /* Formatted at full length first, so that the cut to the bound lands on
   * a UTF-8 boundary even inside upstream text. */
  char text[4 * USC_XLATE_MESSAGE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  xl_copy_text(err->message, sizeof(err->message), text, sizeof(text));
}

int xl_nomem(usc_xlate_error_t *err) {
  xl_fail(err, USC_GRPC_RESOURCE_EXHAUSTED, NULL, "out of memory");
  return USC_ERR_NOMEM;
}

void xl_prefix(char *buf, size_t cap, const char *prefix) {
  size_t p = strlen(prefix), n = strlen(buf);
  if (cap == 0)
    return;
  if (p > cap - 1)
    p = cap - 1;
  if (n > cap - 1 - p)
    n = cap - 1 - p;
  memmove(buf + p, buf, n);
  memcpy(buf, prefix, p);
  buf[p + n] = '\0';
}
