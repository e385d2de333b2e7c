/* ravel/io.h - awaiting file descriptors: the low-level half of asyncio's
 * loop.sock_* calls. Included by ravel.h; do not include it on its own.
 *
 * An fd is registered once (rv_io_open) with the epoll of a worker, edge
 * triggered; a task that would block on it suspends until the fd is ready,
 * its deadline passes, or it is cancelled. Every call that waits takes a
 * timeout (negative: none) and may suspend: from a task only (-EPERM
 * otherwise). Errors are negative errno codes (-ECONNRESET, -EPIPE,
 * -ETIMEDOUT, ...); a write to a closed pipe or socket returns -EPIPE and
 * never raises SIGPIPE. One task at a time may wait for reading and one for
 * writing on an rv_io (-EBUSY for a second).
 */
#ifndef RAVEL_IO_H
#define RAVEL_IO_H

#ifndef RAVEL_H
#error "include <ravel.h>, not <ravel/io.h>"
#endif

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rv_io rv_io;

/* Register `fd` (made non-blocking) with the calling worker's epoll, or a
 * worker chosen round-robin from a plain thread, of `rt` (NULL: the calling
 * thread's runtime). The rv_io owns the fd from now on. -EINVAL for a bad fd
 * or no runtime, -ENOMEM, or epoll_ctl's error (-EPERM for a regular file,
 * which epoll cannot watch). */
RV_EXTERN int rv_io_open(rv_runtime *rt, int fd, rv_io **out);
/* Deregister and close the fd, and free the rv_io. A task waiting on it
 * wakes with -EBADF; its call returns -EBADF. Any thread. */
RV_EXTERN int rv_io_close(rv_io *io);
/* The fd, or -EINVAL. */
RV_EXTERN int rv_io_fd(const rv_io *io);

/* May suspend. Wait until the fd is readable (or writable): 0; -ETIMEDOUT;
 * -ECANCELED; -EBADF when closed meanwhile. Readiness is edge triggered:
 * after a 0, read until -EAGAIN before waiting again (the calls below do). */
RV_EXTERN int rv_io_wait_readable(rv_io *io, int64_t timeout_ns);
RV_EXTERN int rv_io_wait_writable(rv_io *io, int64_t timeout_ns);

/* May suspend. read(2)/write(2) that wait for readiness instead of failing
 * with EAGAIN: the byte count (0 at end of file for read), or an error. A
 * write may be partial, as write(2); rv_write_all loops until all is
 * written (a timeout then reports -ETIMEDOUT after a partial write; the
 * count written so far goes to *written when it is not NULL). */
RV_EXTERN ssize_t rv_read(rv_io *io, void *buf, size_t len, int64_t timeout_ns);
RV_EXTERN ssize_t rv_write(rv_io *io, const void *buf, size_t len, int64_t timeout_ns);
RV_EXTERN int rv_write_all(rv_io *io, const void *buf, size_t len, int64_t timeout_ns,
                           size_t *written);
RV_EXTERN ssize_t rv_readv(rv_io *io, const struct iovec *iov, int iovcnt, int64_t timeout_ns);
RV_EXTERN ssize_t rv_writev(rv_io *io, const struct iovec *iov, int iovcnt, int64_t timeout_ns);

/* May suspend. Sockets: recv/send (flags as recv(2)/send(2); send adds
 * MSG_NOSIGNAL), recvfrom/sendto. */
RV_EXTERN ssize_t rv_recv(rv_io *io, void *buf, size_t len, int flags, int64_t timeout_ns);
RV_EXTERN ssize_t rv_send(rv_io *io, const void *buf, size_t len, int flags, int64_t timeout_ns);
RV_EXTERN ssize_t rv_recvfrom(rv_io *io, void *buf, size_t len, int flags, struct sockaddr *from,
                              socklen_t *fromlen, int64_t timeout_ns);
RV_EXTERN ssize_t rv_sendto(rv_io *io, const void *buf, size_t len, int flags,
                            const struct sockaddr *to, socklen_t tolen, int64_t timeout_ns);

/* May suspend. Accept a connection on a listening socket: the new fd
 * (non-blocking, close-on-exec; not registered: pass it to rv_io_open), the
 * peer's address in *addr when not NULL. */
RV_EXTERN int rv_accept(rv_io *io, struct sockaddr *addr, socklen_t *addrlen, int64_t timeout_ns);
/* May suspend. Connect a socket: 0 once connected, or the connection's
 * error (-ECONNREFUSED, -ETIMEDOUT, ...). */
RV_EXTERN int rv_connect(rv_io *io, const struct sockaddr *addr, socklen_t addrlen,
                         int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif
