/* ravel/stream.h - asyncio streams: buffered connections, clients and
 * servers, and getaddrinfo. Included by ravel.h; do not include it on its
 * own.
 *
 * A stream is one connected socket with a read buffer and a write buffer
 * (asyncio's StreamReader and StreamWriter together). One task reads and one
 * task writes at a time. Calls that wait take a timeout (negative: none) and
 * may suspend: from a task only (-EPERM otherwise).
 */
#ifndef RAVEL_STREAM_H
#define RAVEL_STREAM_H

#ifndef RAVEL_H
#error "include <ravel.h>, not <ravel/stream.h>"
#endif

#include <netdb.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rv_stream rv_stream;
typedef struct rv_server rv_server;

typedef struct rv_stream_opts {
    size_t size;       /* sizeof(rv_stream_opts) */
    size_t limit;      /* read buffer limit (a line or a read_until); 0: 64 KiB */
    size_t high_water; /* write buffer size above which drain waits; 0: 64 KiB */
    size_t low_water;  /* drain returns once the buffer is at or below it; 0: high/4 */
} rv_stream_opts;

/* May suspend. getaddrinfo(3) on the blocking pool (rv_to_thread): 0 and
 * *res (free with freeaddrinfo), or -ENOENT for "no such host", -EAGAIN for a
 * temporary failure, -EINVAL for bad arguments, -ENOMEM; -ECANCELED. */
RV_EXTERN int rv_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                             struct addrinfo **res);

/* May suspend. asyncio.open_connection: resolve host/service (TCP) and
 * connect to the first address that accepts, within `timeout_ns` overall.
 * `opts` may be NULL. 0 and *out; -ETIMEDOUT, -ECONNREFUSED, ... */
RV_EXTERN int rv_open_connection(const char *host, const char *service,
                                 const rv_stream_opts *opts, int64_t timeout_ns,
                                 rv_stream **out);
/* May suspend. asyncio.open_unix_connection. */
RV_EXTERN int rv_open_unix_connection(const char *path, const rv_stream_opts *opts,
                                      int64_t timeout_ns, rv_stream **out);
/* Wrap a connected socket or pipe (the stream owns it from now on). */
RV_EXTERN int rv_stream_from_fd(rv_runtime *rt, int fd, const rv_stream_opts *opts,
                                rv_stream **out);

/* May suspend. Up to `len` bytes (at least 1), or 0 at end of stream. */
RV_EXTERN ssize_t rv_stream_read(rv_stream *s, void *buf, size_t len, int64_t timeout_ns);
/* May suspend. Exactly `len` bytes: 0; or -EPIPE when the stream ended first
 * (asyncio IncompleteReadError), with the bytes read so far in buf and their
 * count in *got (when not NULL; always set). */
RV_EXTERN int rv_stream_read_exactly(rv_stream *s, void *buf, size_t len, int64_t timeout_ns,
                                     size_t *got);
/* May suspend. Read up to and including the delimiter into buf (capacity
 * `cap`); returns the length. -ENOBUFS when no delimiter is found within
 * min(limit, cap) bytes (asyncio LimitOverrunError; the data stays buffered);
 * -EPIPE when the stream ends before a delimiter (the partial data stays
 * buffered: rv_stream_read takes it); 0 at a clean end with nothing left. */
RV_EXTERN ssize_t rv_stream_read_until(rv_stream *s, const void *delim, size_t dlen, void *buf,
                                       size_t cap, int64_t timeout_ns);
/* May suspend. rv_stream_read_until with "\n"; at the end of the stream the
 * last partial line is returned as it is (asyncio readline). */
RV_EXTERN ssize_t rv_stream_readline(rv_stream *s, void *buf, size_t cap, int64_t timeout_ns);
/* True once the peer's end was seen and the read buffer is empty. */
RV_EXTERN bool rv_stream_at_eof(const rv_stream *s);

/* Buffer `len` bytes and send what the socket takes now; never suspends.
 * What is left goes out in later writes, drains and the close: call
 * rv_stream_drain to wait for it. -EPIPE / -ECONNRESET once the connection
 * failed; -ESHUTDOWN after write_eof or close. */
RV_EXTERN int rv_stream_write(rv_stream *s, const void *data, size_t len);
/* May suspend. Flow control (asyncio drain): when more than high_water bytes
 * are buffered, send until at most low_water remain. 0 or the write error. */
RV_EXTERN int rv_stream_drain(rv_stream *s, int64_t timeout_ns);
/* Bytes buffered, not yet sent. */
RV_EXTERN size_t rv_stream_write_buffered(const rv_stream *s);
/* May suspend. Send everything buffered, then shut down the write side. */
RV_EXTERN int rv_stream_write_eof(rv_stream *s, int64_t timeout_ns);
/* May suspend (a plain thread: does not flush). Send what is buffered (up to
 * `timeout_ns`), close the socket and free the stream (asyncio close() and
 * wait_closed()). Returns 0, or the error of the final flush. */
RV_EXTERN int rv_stream_close(rv_stream *s, int64_t timeout_ns);
/* The fd (for getsockopt/getpeername), or -EINVAL. */
RV_EXTERN int rv_stream_fd(const rv_stream *s);

/* May suspend. asyncio.create_datagram_endpoint: a UDP socket bound to
 * local_host/local_service (either may be NULL: any) and, when remote_host
 * is given, connected to remote_host/remote_service. Use it with rv_sendto /
 * rv_recvfrom (or rv_send / rv_recv once connected); rv_io_close closes it.
 * The local address comes first when given, else the remote's family. */
RV_EXTERN int rv_datagram_open(const char *local_host, const char *local_service,
                               const char *remote_host, const char *remote_service,
                               rv_io **out);

/* A connection handler: runs in its own task; the stream is closed when it
 * returns (it must not close it). */
typedef int (*rv_connection_fn)(rv_stream *s, void *arg);

typedef struct rv_server_opts {
    size_t size;      /* sizeof(rv_server_opts) */
    int backlog;      /* listen(2) backlog; 0: 511 */
    bool reuseport;   /* one SO_REUSEPORT listener and accept task per worker */
    rv_stream_opts stream; /* for each connection (size 0: defaults) */
} rv_server_opts;

/* asyncio.start_server: listen on host/service (TCP; host NULL: all
 * interfaces; service "0": any free port, see rv_server_port) and run
 * fn(stream, arg) in a new task for each connection. Any thread. When
 * accept fails for lack of descriptors (EMFILE, ENFILE) the server waits
 * (10 ms, doubling to 1 s) and resumes once descriptors free up. */
RV_EXTERN int rv_start_server(rv_runtime *rt, const char *host, const char *service,
                              rv_connection_fn fn, void *arg, const rv_server_opts *opts,
                              rv_server **out);
RV_EXTERN int rv_start_unix_server(rv_runtime *rt, const char *path, rv_connection_fn fn,
                                   void *arg, const rv_server_opts *opts, rv_server **out);
/* The port the server listens on (TCP), or -EINVAL. */
RV_EXTERN int rv_server_port(const rv_server *srv);
/* Graceful close (any thread; from a task it suspends, from a plain thread it
 * blocks): stop accepting at once, let the connections finish for up to
 * `timeout_ns` (negative: no limit), then cancel those left and wait for them;
 * free the server. Returns 0, or -ETIMEDOUT when connections had to be
 * cancelled. */
RV_EXTERN int rv_server_close(rv_server *srv, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif
