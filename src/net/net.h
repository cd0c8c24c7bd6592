/* net: the TCP plumbing the servers (h2, admin) share: a literal host and
 * port into a socket address, bind and listen, addresses as text, a spare
 * handle for refusing connections without memory, and a batch that runs
 * each marked connection once per loop turn (to write its output once). */
#ifndef USC_NET_H
#define USC_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* Room for any text usc_net_format writes, with its NUL: "[" + an IPv6
 * address (INET6_ADDRSTRLEN, 46 with its NUL) + "]:" + 5 digits. */
#define USC_NET_ADDRESS_SIZE 64

/* Fills `addr` from a literal address, IPv6 when it has a ':' (without
 * brackets, e.g. "::1"), else IPv4 (e.g. "127.0.0.1"); no name lookup.
 * `port` is 0..65535 (the caller checks). Returns 0 or USC_ERR_INVALID
 * (not such a literal). */
int usc_net_resolve(const char *host, int port, struct sockaddr_storage *addr);

/* Writes "ip:port" for IPv4, "[ip]:port" for IPv6 and "?:0" for anything
 * else, truncated to `cap` (USC_NET_ADDRESS_SIZE is always enough). */
void usc_net_format(const struct sockaddr *addr, char *out, size_t cap);

/* The handle's own address and its peer's, as usc_net_format writes them;
 * "?:0" when the system cannot tell (e.g. the peer is gone). */
void usc_net_sockname(const uv_tcp_t *tcp, char *out, size_t cap);
void usc_net_peername(const uv_tcp_t *tcp, char *out, size_t cap);

/* Whether bytes have come on `tcp` that nobody has read yet (a peek:
 * they stay there); false for a closed or failed socket. */
bool usc_net_input_waiting(const uv_tcp_t *tcp);

/* Binds `listener` (an initialised handle) to host:port (see
 * usc_net_resolve; port 0 takes any free port) and listens with
 * `backlog`. Returns 0, or USC_ERR_IO with "cannot listen on host:port:
 * why" in `error`. */
int usc_net_listen(uv_tcp_t *listener, const char *host, int port, int backlog,
                   uv_connection_cb on_connection, char *error,
                   size_t error_cap);

/* ---- refusing connections ----
 *
 * A connection callback that returns without uv_accept leaves the
 * connection in the listener, and libuv then polls the listener no more
 * until the next uv_accept: one refusal without an accept (say, because
 * the connection's memory could not be had) stops the port. A spare is a
 * handle kept inside the server that accepts such a connection only to
 * close it: it needs no memory, so a refusal cannot fail.
 *
 * While the spare is closing the last one, a further refusal leaves that
 * connection waiting in the listener; on_free then tells the server to
 * take it (accept it now, or refuse it again). */
typedef struct usc_net_spare usc_net_spare_t;

/* The spare is free again (its handle closed). `waiting`: a connection
 * waits in the listener. */
typedef void (*usc_net_spare_cb)(usc_net_spare_t *spare, bool waiting);

struct usc_net_spare {
  void *data; /* the owner's */
  /* private */
  uv_tcp_t tcp;
  uv_stream_t *listener;
  usc_net_spare_cb on_free;
  bool busy;
  bool waiting;
};

void usc_net_spare_init(usc_net_spare_t *spare, uv_tcp_t *listener,
                        usc_net_spare_cb on_free, void *data);

/* Accepts the listener's connection and closes it. Returns true when the
 * spare's handle was opened for it (on_free follows once it is closed;
 * count it among the server's open handles), false when the spare was
 * busy and the connection waits. */
bool usc_net_spare_refuse(usc_net_spare_t *spare);

/* ---- once per loop turn ----
 *
 * What a connection queues while the loop turns (responses, frames) is
 * written once, when the turn's I/O callbacks are done: a connection that
 * has work marks itself, and the batch runs each marked one in the loop's
 * check phase, in no particular order. An item marked again while it runs
 * (or another one marked then) runs again in the same check phase. An
 * idle handle, active only while something is marked, keeps the loop from
 * blocking in poll before that phase; the check handle itself keeps no
 * loop alive. */
typedef struct usc_net_mark {
  /* private */
  struct usc_net_mark *next;
  bool marked;
} usc_net_mark_t;

typedef struct usc_net_batch usc_net_batch_t;

/* Runs for each marked item, unmarked first. */
typedef void (*usc_net_batch_cb)(usc_net_batch_t *batch, usc_net_mark_t *mark);

struct usc_net_batch {
  void *data; /* the owner's */
  /* private */
  uv_check_t check;
  uv_idle_t waker;
  usc_net_mark_t *marked;
  usc_net_batch_cb run;
};

/* Opens the batch's two handles on `loop`; their `data` is the owner's
 * pointer too, for close callbacks (see usc_net_batch_close). */
void usc_net_batch_init(usc_net_batch_t *batch, uv_loop_t *loop,
                        usc_net_batch_cb run, void *data);
/* Marks an item (a zeroed usc_net_mark_t is unmarked); marked already,
 * nothing changes. */
void usc_net_batch_mark(usc_net_batch_t *batch, usc_net_mark_t *mark);
/* Takes an item out before it runs, e.g. one that is going away. */
void usc_net_batch_unmark(usc_net_batch_t *batch, usc_net_mark_t *mark);
/* Closes the batch's two handles, calling `on_close` for each. */
void usc_net_batch_close(usc_net_batch_t *batch, uv_close_cb on_close);

#endif
