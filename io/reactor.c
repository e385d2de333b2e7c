/* io/reactor.c - awaiting file descriptors (include/ravel/io.h).
 *
 * Design. An fd is registered once, edge triggered (in, out, rdhup), in the
 * I/O epoll of one worker (io/poller.h); the epoll event's data names the
 * fd's record and carries a generation. Records are never freed while the
 * runtime lives: a closed record goes to the runtime's free list with its
 * generation bumped, so an event fetched before the close (by any worker)
 * finds a generation that no longer matches and is dropped: a closed and
 * reused fd never wakes the wrong waiter.
 *
 * Readiness is latched per direction (edge triggered: an edge is remembered
 * until someone consumes it). A task that gets EAGAIN waits: under the
 * record's lock it consumes a latched edge, or records itself as the
 * direction's waiter and parks. The dispatcher (the worker that polled the
 * event: the owner when it polls its epoll, or an idle worker that polls a
 * busy worker's I/O epoll so that readiness never waits behind a long CPU
 * job) latches the edge and wakes the waiter under the lock, so the waiter
 * cannot leave (and end) in between; the woken task runs on the dispatching
 * worker. Closing an fd wakes its waiters, which return -EBADF; the record
 * is recycled once the last of them has left.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "executor/alloc.h"
#include "executor/internal.h"
#include "executor/task_internal.h"

enum { DIR_READ, DIR_WRITE };

struct rv_io {
    rv__spinlock lock;
    bool closed;
    uint8_t ready;    /* latched edges: 1 << DIR_READ, 1 << DIR_WRITE */
    uint16_t gen;     /* in the epoll data; bumped on close */
    unsigned waiting; /* tasks inside io_wait */
    int fd;
    rv__worker *w; /* whose I/O epoll holds it */
    rv_runtime *rt;
    rv_task *waiter[2];
    rv_io *next_all, *next_free; /* the runtime's lists (rt->io_lock) */
};

#define GEN_SHIFT 48
#define PTR_MASK ((UINT64_C(1) << GEN_SHIFT) - 1)

static uint64_t tag_of(rv_io *io) { return (uint64_t)(uintptr_t)io | ((uint64_t)io->gen << GEN_SHIFT); }

void rv__io_dispatch(uint64_t data, uint32_t events)
{
    rv_io *io = (rv_io *)(uintptr_t)(data & PTR_MASK);
    uint16_t gen = (uint16_t)(data >> GEN_SHIFT);
    uint8_t bits = 0;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        bits |= 1 << DIR_READ;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        bits |= 1 << DIR_WRITE;
    rv__spin_lock(&io->lock);
    if (io->gen == gen && !io->closed) {
        io->ready |= bits;
        /* Woken under the lock: the waiter cannot leave io_wait (and its
         * task end) before it takes the lock to clear its slot. */
        for (int d = DIR_READ; d <= DIR_WRITE; d++)
            if ((bits & (1 << d)) && io->waiter[d])
                rv__task_wake(io->waiter[d]);
    }
    rv__spin_unlock(&io->lock);
}

/* Back to the free list (rt->io_lock), ready for another fd. */
static void io_recycle(rv_io *io)
{
    rv_runtime *rt = io->rt;
    rv__spin_lock(&rt->io_lock);
    io->next_free = rt->io_free;
    rt->io_free = io;
    rv__spin_unlock(&rt->io_lock);
}

static rv_io *io_get(rv_runtime *rt)
{
    rv__spin_lock(&rt->io_lock);
    rv_io *io = rt->io_free;
    if (io)
        rt->io_free = io->next_free;
    rv__spin_unlock(&rt->io_lock);
    if (io)
        return io;
    io = rv__calloc(sizeof *io);
    if (!io)
        return NULL;
    io->rt = rt;
    rv__spin_lock(&rt->io_lock);
    io->next_all = rt->io_all;
    rt->io_all = io;
    rv__spin_unlock(&rt->io_lock);
    return io;
}

void rv__io_free_all(rv_runtime *rt)
{
    rv_io *io = rt->io_all;
    while (io) {
        rv_io *next = io->next_all;
        if (!io->closed)
            close(io->fd); /* never closed by the user: the runtime owns it */
        rv__free(io, sizeof *io);
        io = next;
    }
    rt->io_all = rt->io_free = NULL;
}

int rv_io_open(rv_runtime *rt, int fd, rv_io **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    rv__worker *cur = rv__tls_worker();
    if (!rt)
        rt = cur ? cur->rt : NULL;
    if (!rt || fd < 0)
        return -EINVAL;
    if (rv__atomic_load_acquire(&rt->closing))
        return -ESHUTDOWN;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    rv_io *io = io_get(rt);
    if (!io)
        return -ENOMEM;
    rv__worker *w = cur && cur->rt == rt ? cur
                    : &rt->workers[rv__atomic_fetch_add_relaxed(&rt->next_worker, 1) %
                                   rt->nworkers];
    rv__spin_lock(&io->lock);
    io->closed = false;
    io->ready = 0;
    io->waiting = 0;
    io->fd = fd;
    io->w = w;
    io->waiter[0] = io->waiter[1] = NULL;
    uint64_t tag = tag_of(io);
    rv__spin_unlock(&io->lock);
    int rc = rv__poller_add(&w->poller, fd, tag);
    if (rc) {
        rv__spin_lock(&io->lock);
        io->closed = true;
        io->gen++;
        rv__spin_unlock(&io->lock);
        io_recycle(io);
        return rc;
    }
    *out = io;
    return 0;
}

int rv_io_fd(const rv_io *io) { return io ? io->fd : -EINVAL; }

int rv_io_close(rv_io *io)
{
    if (!io)
        return -EINVAL;
    rv__spin_lock(&io->lock);
    if (io->closed) {
        rv__spin_unlock(&io->lock);
        return -EBADF;
    }
    io->closed = true;
    io->gen++; /* events fetched before this point are dropped */
    for (int d = DIR_READ; d <= DIR_WRITE; d++)
        if (io->waiter[d])
            rv__task_wake(io->waiter[d]); /* it sees `closed`: -EBADF */
    int fd = io->fd;
    bool idle = io->waiting == 0;
    rv__spin_unlock(&io->lock);
    rv__poller_del(&io->w->poller, fd);
    close(fd);
    if (idle)
        io_recycle(io); /* else the last waiter to leave recycles it */
    return 0;
}

/* Wait for an edge in direction `d`. deadline: rv_now clock, or -1. */
static int io_wait(rv_io *io, int d, int64_t deadline)
{
    rv__worker *w = rv__tls_worker();
    rv_task *t = w ? w->current : NULL;
    if (!t)
        return -EPERM;
    rv__spin_lock(&io->lock);
    if (io->closed) {
        rv__spin_unlock(&io->lock);
        return -EBADF;
    }
    if (io->ready & (1 << d)) {
        io->ready &= (uint8_t)~(1 << d);
        rv__spin_unlock(&io->lock);
        return 0;
    }
    if (io->waiter[d]) {
        rv__spin_unlock(&io->lock);
        return -EBUSY;
    }
    io->waiter[d] = t;
    io->waiting++;
    rv__spin_unlock(&io->lock);

    rv__task_timer *timer = NULL;
    int rc = 1;
    if (deadline >= 0 && !(timer = rv__task_timer_arm(t, deadline)))
        rc = -ENOMEM;
    for (;;) {
        rv__spin_lock(&io->lock);
        if (rc == 1) {
            if (io->closed)
                rc = -EBADF;
            else if (io->ready & (1 << d)) {
                io->ready &= (uint8_t)~(1 << d);
                rc = 0;
            } else if (rv__take_cancel(t))
                rc = -ECANCELED;
            else if (timer && rv__task_timer_expired(timer))
                rc = -ETIMEDOUT;
        }
        if (rc != 1)
            break; /* leave with the lock held */
        rv__spin_unlock(&io->lock);
        rv__suspend(rv__tls_worker(), t, RV_SWITCH_PARK);
    }
    io->waiter[d] = NULL;
    bool recycle = --io->waiting == 0 && io->closed;
    rv__spin_unlock(&io->lock);
    if (timer)
        rv__task_timer_disarm(timer);
    if (recycle)
        io_recycle(io);
    return rc;
}

static int64_t deadline_of(int64_t timeout_ns)
{
    return timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns);
}

int rv_io_wait_readable(rv_io *io, int64_t timeout_ns)
{
    return io ? io_wait(io, DIR_READ, deadline_of(timeout_ns)) : -EINVAL;
}

int rv_io_wait_writable(rv_io *io, int64_t timeout_ns)
{
    return io ? io_wait(io, DIR_WRITE, deadline_of(timeout_ns)) : -EINVAL;
}

/* Run `op` until it does not say EAGAIN, waiting for direction `d` between
 * tries. `op` returns the syscall's result with errno set on failure. */
#define IO_RETRY(io, d, timeout_ns, op)                                                            \
    do {                                                                                           \
        if (!(io))                                                                                 \
            return -EINVAL;                                                                        \
        int64_t deadline_ = deadline_of(timeout_ns);                                               \
        for (;;) {                                                                                 \
            ssize_t r_ = (op);                                                                     \
            if (r_ >= 0)                                                                           \
                return r_;                                                                         \
            if (errno == EINTR)                                                                    \
                continue;                                                                          \
            if (errno != EAGAIN && errno != EWOULDBLOCK)                                           \
                return -errno;                                                                     \
            int w_ = io_wait((io), (d), deadline_);                                                \
            if (w_ < 0)                                                                            \
                return w_;                                                                         \
        }                                                                                          \
    } while (0)

ssize_t rv_read(rv_io *io, void *buf, size_t len, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_READ, timeout_ns, read(io->fd, buf, len));
}

/* Workers block every asynchronous signal, so a write to a closed pipe
 * leaves SIGPIPE pending on the worker (never delivered) and returns EPIPE;
 * sockets use MSG_NOSIGNAL all the same. */
ssize_t rv_write(rv_io *io, const void *buf, size_t len, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_WRITE, timeout_ns, write(io->fd, buf, len));
}

ssize_t rv_readv(rv_io *io, const struct iovec *iov, int iovcnt, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_READ, timeout_ns, readv(io->fd, iov, iovcnt));
}

ssize_t rv_writev(rv_io *io, const struct iovec *iov, int iovcnt, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_WRITE, timeout_ns, writev(io->fd, iov, iovcnt));
}

ssize_t rv_recv(rv_io *io, void *buf, size_t len, int flags, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_READ, timeout_ns, recv(io->fd, buf, len, flags | MSG_DONTWAIT));
}

ssize_t rv_send(rv_io *io, const void *buf, size_t len, int flags, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_WRITE, timeout_ns, send(io->fd, buf, len, flags | MSG_NOSIGNAL | MSG_DONTWAIT));
}

ssize_t rv_recvfrom(rv_io *io, void *buf, size_t len, int flags, struct sockaddr *from,
                    socklen_t *fromlen, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_READ, timeout_ns,
             recvfrom(io->fd, buf, len, flags | MSG_DONTWAIT, from, fromlen));
}

ssize_t rv_sendto(rv_io *io, const void *buf, size_t len, int flags, const struct sockaddr *to,
                  socklen_t tolen, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_WRITE, timeout_ns,
             sendto(io->fd, buf, len, flags | MSG_NOSIGNAL | MSG_DONTWAIT, to, tolen));
}

int rv_write_all(rv_io *io, const void *buf, size_t len, int64_t timeout_ns, size_t *written)
{
    if (written)
        *written = 0;
    if (!io)
        return -EINVAL;
    int64_t deadline = deadline_of(timeout_ns);
    size_t done = 0;
    while (done < len) {
        int64_t left = deadline < 0 ? -1 : deadline - rv_now();
        if (deadline >= 0 && left <= 0)
            left = 0;
        ssize_t n = rv_write(io, (const char *)buf + done, len - done, left);
        if (n < 0) {
            if (written)
                *written = done;
            return (int)n;
        }
        done += (size_t)n;
    }
    if (written)
        *written = done;
    return 0;
}

int rv_accept(rv_io *io, struct sockaddr *addr, socklen_t *addrlen, int64_t timeout_ns)
{
    IO_RETRY(io, DIR_READ, timeout_ns,
             accept4(io->fd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

int rv_connect(rv_io *io, const struct sockaddr *addr, socklen_t addrlen, int64_t timeout_ns)
{
    if (!io || !addr)
        return -EINVAL;
    if (connect(io->fd, addr, addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return -errno;
    int rc = io_wait(io, DIR_WRITE, deadline_of(timeout_ns));
    if (rc < 0)
        return rc;
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        return -errno;
    return err ? -err : 0;
}
