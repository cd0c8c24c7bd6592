#include "src/net/net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "src/base/base.h"

int usc_net_resolve(const char *host, int port, struct sockaddr_storage *addr) {
  int rc;
  memset(addr, 0, sizeof(*addr));
  if (strchr(host, ':') != NULL)
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
  else
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)addr);
  return rc == 0 ? 0 : USC_ERR_INVALID;
}

void usc_net_format(const struct sockaddr *addr, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;
    uv_ip6_name(a6, ip, sizeof(ip));
    snprintf(out, cap, "[%s]:%d", ip, ntohs(a6->sin6_port));
  } else if (addr->sa_family == AF_INET) {
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr;
    uv_ip4_name(a4, ip, sizeof(ip));
    snprintf(out, cap, "%s:%d", ip, ntohs(a4->sin_port));
  } else {
    snprintf(out, cap, "?:0");
  }
}

typedef int (*name_fn)(const uv_tcp_t *, struct sockaddr *, int *);

static void format_name(const uv_tcp_t *tcp, name_fn get, char *out,
                        size_t cap) {
  struct sockaddr_storage addr;
  int len = sizeof(addr);
  /* A zeroed address has no family, so a failed call formats as "?:0". */
  if (get(tcp, (struct sockaddr *)&addr, &len) != 0)
    memset(&addr, 0, sizeof(addr));
  usc_net_format((const struct sockaddr *)&addr, out, cap);
}

void usc_net_sockname(const uv_tcp_t *tcp, char *out, size_t cap) {
  format_name(tcp, uv_tcp_getsockname, out, cap);
}

void usc_net_peername(const uv_tcp_t *tcp, char *out, size_t cap) {
  format_name(tcp, uv_tcp_getpeername, out, cap);
}

bool usc_net_input_waiting(const uv_tcp_t *tcp) {
  uv_os_fd_t fd;
  char byte;
  if (uv_fileno((const uv_handle_t *)tcp, &fd) != 0)
    return false;
  return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

int usc_net_listen(uv_tcp_t *listener, const char *host, int port, int backlog,
                   uv_connection_cb on_connection, char *error,
                   size_t error_cap) {
  struct sockaddr_storage addr;
  /* A bad host reads "invalid argument", as libuv's own refusal did. */
  int rc = usc_net_resolve(host, port, &addr) == 0 ? 0 : UV_EINVAL;
  if (rc == 0)
    rc = uv_tcp_bind(listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)listener, backlog, on_connection);
  if (rc != 0) {
    snprintf(error, error_cap, "cannot listen on %s:%d: %s", host, port,
             uv_strerror(rc));
    return USC_ERR_IO;
  }
  return 0;
}

/* ---- the spare ---- */

void usc_net_spare_init(usc_net_spare_t *spare, uv_tcp_t *listener,
                        usc_net_spare_cb on_free, void *data) {
  *spare = (usc_net_spare_t){
      .data = data, .listener = (uv_stream_t *)listener, .on_free = on_free};
}

static void on_spare_closed(uv_handle_t *handle) {
  usc_net_spare_t *spare = handle->data;
  bool waiting = spare->waiting;
  spare->busy = false;
  spare->waiting = false;
  spare->on_free(spare, waiting);
}

bool usc_net_spare_refuse(usc_net_spare_t *spare) {
  if (spare->busy) {
    spare->waiting = true;
    return false;
  }
  spare->busy = true;
  uv_tcp_init(spare->listener->loop, &spare->tcp);
  spare->tcp.data = spare;
  /* Its result does not matter: the connection is to close either way. */
  uv_accept(spare->listener, (uv_stream_t *)&spare->tcp);
  uv_close((uv_handle_t *)&spare->tcp, on_spare_closed);
  return true;
}

/* ---- once per loop turn ---- */

/* Only its being active matters: see usc_net_batch_mark. */
static void on_wake(uv_idle_t *idle) { (void)idle; }

static void on_check(uv_check_t *check) {
  usc_net_batch_t *batch = USC_CONTAINER_OF(check, usc_net_batch_t, check);
  while (batch->marked != NULL) {
    usc_net_mark_t *mark = batch->marked;
    batch->marked = mark->next;
    mark->marked = false;
    batch->run(batch, mark);
  }
  uv_idle_stop(&batch->waker);
}

void usc_net_batch_init(usc_net_batch_t *batch, uv_loop_t *loop,
                        usc_net_batch_cb run, void *data) {
  *batch = (usc_net_batch_t){.data = data, .run = run};
  uv_check_init(loop, &batch->check);
  uv_idle_init(loop, &batch->waker);
  batch->check.data = batch->waker.data = data;
  uv_check_start(&batch->check, on_check);
  uv_unref((uv_handle_t *)&batch->check);
}

void usc_net_batch_mark(usc_net_batch_t *batch, usc_net_mark_t *mark) {
  if (mark->marked)
    return;
  mark->marked = true;
  mark->next = batch->marked;
  batch->marked = mark;
  uv_idle_start(&batch->waker, on_wake);
}

void usc_net_batch_unmark(usc_net_batch_t *batch, usc_net_mark_t *mark) {
  if (!mark->marked)
    return;
  usc_net_mark_t **p = &batch->marked;
  while (*p != mark)
    p = &(*p)->next;
  *p = mark->next;
  mark->marked = false;
}

void usc_net_batch_close(usc_net_batch_t *batch, uv_close_cb on_close) {
  uv_close((uv_handle_t *)&batch->check, on_close);
  uv_close((uv_handle_t *)&batch->waker, on_close);
}
