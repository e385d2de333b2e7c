/* io/stream.c - asyncio streams over rv_io: buffered connections, clients,
 * servers, and getaddrinfo on the blocking pool.
 *
 * A stream keeps a read buffer (filled by rv_read, at most `limit` bytes of
 * unconsumed data plus one read's worth) and a write buffer. Writes never
 * suspend: they buffer, then send what the socket takes at once; drain,
 * write_eof and close send the rest, waiting for writability. A server runs
 * one accept task per listening socket (one per worker with SO_REUSEPORT)
 * and one task per connection; the server tracks its connections so that a
 * graceful close can wait for them and cancel the ones left at its deadline.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "executor/alloc.h"
#include "executor/blocking.h"
#include "executor/internal.h"

#define DEFAULT_LIMIT (64 * 1024)
#define READ_CHUNK 16384

struct rv_stream {
    rv_io *io;
    bool is_socket;
    size_t limit, high, low;
    char *rbuf;
    size_t rcap, rstart, rend;
    bool eof;
    char *wbuf;
    size_t wcap, wstart, wend;
    int werr;
    bool wclosed;
};

static int64_t deadline_of(int64_t timeout_ns)
{
    return timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns);
}

/* Time left until `deadline` as a timeout (negative: none; 0: expired). */
static int64_t left_of(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - rv_now();
    return left > 0 ? left : 0;
}

static bool in_task(void)
{
    rv__worker *w = rv__tls_worker();
    return w && w->current;
}

/* ------------------------------------------------------------------------- */
/* Creating and closing                                                       */

int rv_stream_from_fd(rv_runtime *rt, int fd, const rv_stream_opts *opts, rv_stream **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (opts && opts->size > sizeof *opts)
        return -EINVAL;
    rv_stream_opts o = {0};
    if (opts && opts->size)
        memcpy(&o, opts, opts->size);
    rv_stream *s = rv__calloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    s->limit = o.limit ? o.limit : DEFAULT_LIMIT;
    s->high = o.high_water ? o.high_water : DEFAULT_LIMIT;
    s->low = o.low_water ? o.low_water : s->high / 4;
    if (s->low > s->high)
        s->low = s->high;
    int type;
    socklen_t tl = sizeof type;
    s->is_socket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0;
    int rc = rv_io_open(rt, fd, &s->io);
    if (rc) {
        rv__free(s, sizeof *s);
        return rc;
    }
    *out = s;
    return 0;
}

int rv_stream_fd(const rv_stream *s) { return s ? rv_io_fd(s->io) : -EINVAL; }

static int flush_all(rv_stream *s, int64_t deadline);

int rv_stream_close(rv_stream *s, int64_t timeout_ns)
{
    if (!s)
        return -EINVAL;
    int rc = 0;
    if (!s->wclosed && in_task())
        rc = flush_all(s, deadline_of(timeout_ns));
    rv_io_close(s->io);
    if (s->rbuf)
        rv__free(s->rbuf, s->rcap);
    if (s->wbuf)
        rv__free(s->wbuf, s->wcap);
    rv__free(s, sizeof *s);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Reading                                                                    */

static size_t buffered(const rv_stream *s) { return s->rend - s->rstart; }

static void consume(rv_stream *s, void *buf, size_t n)
{
    if (buf)
        memcpy(buf, s->rbuf + s->rstart, n);
    s->rstart += n;
    if (s->rstart == s->rend)
        s->rstart = s->rend = 0;
}

/* Read once more from the socket into the buffer: 0 (data or end of
 * stream: see s->eof), or an error. */
static int fill(rv_stream *s, int64_t deadline)
{
    if (s->rstart > 0 && s->rend == s->rcap) { /* compact */
        memmove(s->rbuf, s->rbuf + s->rstart, buffered(s));
        s->rend -= s->rstart;
        s->rstart = 0;
    }
    if (s->rend == s->rcap) {
        size_t cap = s->rcap ? s->rcap * 2 : READ_CHUNK;
        char *fresh = rv__alloc(cap);
        if (!fresh)
            return -ENOMEM;
        if (s->rbuf) {
            memcpy(fresh, s->rbuf + s->rstart, buffered(s));
            rv__free(s->rbuf, s->rcap);
        }
        s->rend -= s->rstart;
        s->rstart = 0;
        s->rbuf = fresh;
        s->rcap = cap;
    }
    ssize_t n = rv_read(s->io, s->rbuf + s->rend, s->rcap - s->rend, left_of(deadline));
    if (n < 0)
        return (int)n;
    if (n == 0)
        s->eof = true;
    s->rend += (size_t)n;
    return 0;
}

bool rv_stream_at_eof(const rv_stream *s) { return s && s->eof && buffered(s) == 0; }

ssize_t rv_stream_read(rv_stream *s, void *buf, size_t len, int64_t timeout_ns)
{
    if (!s || (!buf && len))
        return -EINVAL;
    if (len == 0)
        return 0;
    int64_t deadline = deadline_of(timeout_ns);
    while (buffered(s) == 0 && !s->eof) {
        int rc = fill(s, deadline);
        if (rc)
            return rc;
    }
    size_t n = buffered(s) < len ? buffered(s) : len;
    consume(s, buf, n);
    return (ssize_t)n;
}

int rv_stream_read_exactly(rv_stream *s, void *buf, size_t len, int64_t timeout_ns, size_t *got)
{
    if (got)
        *got = 0;
    if (!s || (!buf && len))
        return -EINVAL;
    int64_t deadline = deadline_of(timeout_ns);
    size_t done = 0;
    int rc = 0;
    while (done < len) {
        if (buffered(s) == 0) {
            if (s->eof) {
                rc = -EPIPE; /* IncompleteReadError */
                break;
            }
            if ((rc = fill(s, deadline)))
                break;
            continue;
        }
        size_t n = buffered(s) < len - done ? buffered(s) : len - done;
        consume(s, (char *)buf + done, n);
        done += n;
    }
    if (got)
        *got = done;
    return rc;
}

ssize_t rv_stream_read_until(rv_stream *s, const void *delim, size_t dlen, void *buf, size_t cap,
                             int64_t timeout_ns)
{
    if (!s || !delim || dlen == 0 || (!buf && cap))
        return -EINVAL;
    int64_t deadline = deadline_of(timeout_ns);
    size_t max = s->limit < cap ? s->limit : cap;
    size_t searched = 0; /* bytes already known not to start a delimiter */
    for (;;) {
        char *start = s->rbuf + s->rstart;
        char *hit = buffered(s) >= dlen ? memmem(start + searched, buffered(s) - searched, delim, dlen)
                                        : NULL;
        if (hit) {
            size_t n = (size_t)(hit - start) + dlen;
            if (n > max)
                return -ENOBUFS; /* LimitOverrunError; the data stays */
            consume(s, buf, n);
            return (ssize_t)n;
        }
        if (buffered(s) >= max)
            return -ENOBUFS;
        if (s->eof)
            return buffered(s) ? -EPIPE : 0;
        searched = buffered(s) >= dlen ? buffered(s) - dlen + 1 : 0;
        int rc = fill(s, deadline);
        if (rc)
            return rc;
    }
}

ssize_t rv_stream_readline(rv_stream *s, void *buf, size_t cap, int64_t timeout_ns)
{
    ssize_t n = rv_stream_read_until(s, "\n", 1, buf, cap, timeout_ns);
    if (n == -EPIPE) { /* the last line, without its newline */
        n = (ssize_t)buffered(s);
        consume(s, buf, (size_t)n);
    }
    return n;
}

/* ------------------------------------------------------------------------- */
/* Writing                                                                    */

size_t rv_stream_write_buffered(const rv_stream *s) { return s ? s->wend - s->wstart : 0; }

/* Send what the socket takes now. 0, or the connection's error. */
static int try_flush(rv_stream *s)
{
    while (s->wend > s->wstart) {
        size_t n = s->wend - s->wstart;
        ssize_t r = s->is_socket
                        ? send(rv_io_fd(s->io), s->wbuf + s->wstart, n, MSG_NOSIGNAL | MSG_DONTWAIT)
                        : write(rv_io_fd(s->io), s->wbuf + s->wstart, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            s->werr = -errno;
            return s->werr;
        }
        s->wstart += (size_t)r;
    }
    s->wstart = s->wend = 0;
    return 0;
}

/* Send until at most `keep` bytes remain buffered. */
static int flush_to(rv_stream *s, size_t keep, int64_t deadline)
{
    for (;;) {
        if (s->werr)
            return s->werr;
        int rc = try_flush(s);
        if (rc || rv_stream_write_buffered(s) <= keep)
            return rc;
        rc = rv_io_wait_writable(s->io, left_of(deadline));
        if (rc)
            return rc;
    }
}

static int flush_all(rv_stream *s, int64_t deadline) { return flush_to(s, 0, deadline); }

int rv_stream_write(rv_stream *s, const void *data, size_t len)
{
    if (!s || (!data && len))
        return -EINVAL;
    if (s->wclosed)
        return -ESHUTDOWN;
    if (s->werr)
        return s->werr;
    if (s->wend + len > s->wcap) {
        size_t used = s->wend - s->wstart;
        size_t cap = s->wcap ? s->wcap : 4096;
        while (cap < used + len)
            cap *= 2;
        if (cap != s->wcap) {
            char *fresh = rv__alloc(cap);
            if (!fresh)
                return -ENOMEM;
            if (s->wbuf) {
                memcpy(fresh, s->wbuf + s->wstart, used);
                rv__free(s->wbuf, s->wcap);
            }
            s->wbuf = fresh;
            s->wcap = cap;
        } else {
            memmove(s->wbuf, s->wbuf + s->wstart, used);
        }
        s->wstart = 0;
        s->wend = used;
    }
    memcpy(s->wbuf + s->wend, data, len);
    s->wend += len;
    return try_flush(s);
}

int rv_stream_drain(rv_stream *s, int64_t timeout_ns)
{
    if (!s)
        return -EINVAL;
    if (s->werr)
        return s->werr;
    if (rv_stream_write_buffered(s) <= s->high)
        return try_flush(s);
    return flush_to(s, s->low, deadline_of(timeout_ns));
}

int rv_stream_write_eof(rv_stream *s, int64_t timeout_ns)
{
    if (!s)
        return -EINVAL;
    if (s->wclosed)
        return 0;
    int rc = flush_all(s, deadline_of(timeout_ns));
    if (rc)
        return rc;
    s->wclosed = true;
    if (s->is_socket && shutdown(rv_io_fd(s->io), SHUT_WR) < 0)
        return -errno;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* getaddrinfo and clients                                                    */

/* The call's own copy of its arguments: a cancelled caller returns at once
 * while getaddrinfo may still be running on the pool. */
typedef struct gai_call {
    char *host, *service;
    struct addrinfo hints;
    bool has_hints;
} gai_call;

static void gai_call_free(void *arg)
{
    gai_call *c = arg;
    rv__free_str(c->host);
    rv__free_str(c->service);
    rv__free(c, sizeof *c);
}

static int gai_errno(int e)
{
    switch (e) {
    case 0:
        return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
        return -ENOENT;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return errno ? -errno : -EIO;
    case EAI_BADFLAGS:
    case EAI_FAMILY:
    case EAI_SERVICE:
    case EAI_SOCKTYPE:
        return -EINVAL;
    default:
        return -EIO;
    }
}

static int gai_blocking(void *arg, void **result)
{
    gai_call *c = arg;
    struct addrinfo *res = NULL;
    int rc = gai_errno(getaddrinfo(c->host, c->service, c->has_hints ? &c->hints : NULL, &res));
    *result = res;
    return rc;
}

static void gai_release(void *res) { freeaddrinfo(res); }

int rv_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                   struct addrinfo **res)
{
    if (!res || (!host && !service))
        return -EINVAL;
    *res = NULL;
    gai_call *c = rv__calloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    c->host = rv__strdup(host);
    c->service = rv__strdup(service);
    if ((host && !c->host) || (service && !c->service)) {
        gai_call_free(c);
        return -ENOMEM;
    }
    if (hints) {
        c->hints.ai_flags = hints->ai_flags;
        c->hints.ai_family = hints->ai_family;
        c->hints.ai_socktype = hints->ai_socktype;
        c->hints.ai_protocol = hints->ai_protocol;
        c->has_hints = true;
    }
    void *r = NULL;
    int rc = rv__to_thread(gai_blocking, c, gai_call_free, gai_release, &r);
    *res = r;
    return rc;
}

/* Connect a new socket of `ai`'s kind to it and wrap it. */
static int connect_one(int family, int type, int proto, const struct sockaddr *addr,
                       socklen_t len, const rv_stream_opts *opts, int64_t deadline,
                       rv_stream **out)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd < 0)
        return -errno;
    rv_stream *s;
    int rc = rv_stream_from_fd(NULL, fd, opts, &s);
    if (rc) {
        close(fd);
        return rc;
    }
    rc = rv_connect(s->io, addr, len, left_of(deadline));
    if (rc) {
        rv_stream_close(s, 0);
        return rc;
    }
    *out = s;
    return 0;
}

int rv_open_connection(const char *host, const char *service, const rv_stream_opts *opts,
                       int64_t timeout_ns, rv_stream **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!in_task())
        return -EPERM;
    int64_t deadline = deadline_of(timeout_ns);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = rv_getaddrinfo(host, service, &hints, &res);
    if (rc)
        return rc;
    rc = -ENOENT;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_one(ai->ai_family, ai->ai_socktype, ai->ai_protocol, ai->ai_addr,
                         ai->ai_addrlen, opts, deadline, out);
        if (rc == 0 || rc == -ECANCELED || rc == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
    if (!path || strlen(path) >= sizeof sa->sun_path)
        return -EINVAL;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    strcpy(sa->sun_path, path);
    return 0;
}

int rv_open_unix_connection(const char *path, const rv_stream_opts *opts, int64_t timeout_ns,
                            rv_stream **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct sockaddr_un sa;
    int rc = unix_addr(path, &sa);
    if (rc)
        return rc;
    if (!in_task())
        return -EPERM;
    return connect_one(AF_UNIX, SOCK_STREAM, 0, (struct sockaddr *)&sa, sizeof sa, opts,
                       deadline_of(timeout_ns), out);
}

int rv_datagram_open(const char *local_host, const char *local_service, const char *remote_host,
                     const char *remote_service, rv_io **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    bool local = local_host || local_service, remote = remote_host || remote_service;
    if (!local && !remote)
        return -EINVAL;
    if (!in_task())
        return -EPERM;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *la = NULL, *ra = NULL;
    int rc = 0;
    if (local) {
        hints.ai_flags = AI_PASSIVE;
        rc = rv_getaddrinfo(local_host, local_service ? local_service : "0", &hints, &la);
    }
    if (rc == 0 && remote) {
        hints.ai_flags = 0;
        hints.ai_family = la ? la->ai_family : AF_UNSPEC;
        rc = rv_getaddrinfo(remote_host, remote_service, &hints, &ra);
    }
    struct addrinfo *first = la ? la : ra;
    int fd = -1;
    if (rc == 0) {
        fd = socket(first->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || (la && bind(fd, la->ai_addr, la->ai_addrlen) < 0) ||
            (ra && connect(fd, ra->ai_addr, ra->ai_addrlen) < 0))
            rc = -errno;
    }
    if (la)
        freeaddrinfo(la);
    if (ra)
        freeaddrinfo(ra);
    if (rc == 0)
        rc = rv_io_open(NULL, fd, out);
    if (rc && fd >= 0)
        close(fd);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Servers                                                                    */

typedef struct conn conn;
struct conn {
    conn *next, *prev;
    rv_server *srv;
    rv_stream *s;
    rv_task *task; /* referenced; set under the server's lock */
};

struct rv_server {
    rv_runtime *rt;
    rv_connection_fn fn;
    void *arg;
    rv_stream_opts sopts;
    int port;
    unsigned nlisteners;
    rv_io **listeners;
    rv_task **acceptors;
    struct acceptor *args;
    rv__spinlock lock;
    bool closing;
    bool cancel_all; /* the close's deadline passed */
    size_t live;     /* connection tasks not ended */
    conn *conns;
};

static void conn_unlink(rv_server *srv, conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static int conn_task(void *arg, void **result)
{
    conn *c = arg;
    rv_server *srv = c->srv;
    /* Known to the server from here on, for a cancellation at its close's
     * deadline; the server never touches c->task after we unlink c. */
    rv__spin_lock(&srv->lock);
    c->task = rv_current_task();
    bool cancelled = srv->cancel_all;
    rv__spin_unlock(&srv->lock);
    int rc = cancelled ? -ECANCELED : srv->fn(c->s, srv->arg);
    rv_stream_close(c->s, 5 * INT64_C(1000000000)); /* a last flush, bounded */
    rv__spin_lock(&srv->lock);
    conn_unlink(srv, c);
    srv->live--;
    rv__spin_unlock(&srv->lock);
    rv__free(c, sizeof *c);
    return rc;
}

/* Start a task for an accepted fd. */
static void serve(rv_server *srv, int fd)
{
    conn *c = rv__calloc(sizeof *c);
    rv_stream *s = NULL;
    if (!c || rv_stream_from_fd(srv->rt, fd, &srv->sopts, &s) != 0) {
        if (c)
            rv__free(c, sizeof *c);
        close(fd);
        return;
    }
    c->srv = srv;
    c->s = s;
    rv__spin_lock(&srv->lock);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->live++;
    rv__spin_unlock(&srv->lock);
    if (rv_spawn(srv->rt, conn_task, c, NULL, NULL) != 0) {
        rv__spin_lock(&srv->lock);
        conn_unlink(srv, c);
        srv->live--;
        rv__spin_unlock(&srv->lock);
        rv_stream_close(s, 0);
        rv__free(c, sizeof *c);
    }
}

/* One per listening socket. Ends when the listener is closed. */
typedef struct acceptor {
    rv_server *srv;
    rv_io *l;
} acceptor;

static int accept_task(void *arg, void **result)
{
    acceptor *a = arg;
    int64_t backoff = 0;
    for (;;) {
        int fd = rv_accept(a->l, NULL, NULL, -1);
        if (fd >= 0) {
            backoff = 0;
            serve(a->srv, fd);
            continue;
        }
        if (fd == -EBADF || fd == -ECANCELED || fd == -EPERM)
            return 0; /* closed: the server is closing */
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* Out of descriptors: the pending connection stays in the
             * backlog; wait for some to free up, without spinning. */
            backoff = backoff ? (backoff * 2 > 1000000000 ? 1000000000 : backoff * 2) : 10000000;
            if (rv_sleep(backoff) == -ECANCELED)
                return 0;
        }
        /* Other errors (ECONNABORTED, EPROTO...) concern one connection. */
    }
}

static int listen_socket(int family, const struct sockaddr *addr, socklen_t len, int backlog,
                         bool reuseport)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (bind(fd, addr, len) < 0 || listen(fd, backlog) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static void server_free(rv_server *srv)
{
    if (srv->listeners)
        rv__free(srv->listeners, srv->nlisteners * sizeof *srv->listeners);
    if (srv->acceptors)
        rv__free(srv->acceptors, srv->nlisteners * sizeof *srv->acceptors);
    if (srv->args)
        rv__free(srv->args, srv->nlisteners * sizeof *srv->args);
    rv__free(srv, sizeof *srv);
}

/* Listen on addr with `n` sockets (n > 1: SO_REUSEPORT) and start the
 * accept tasks. */
static int server_start(rv_runtime *rt, int family, struct sockaddr *addr, socklen_t len,
                        rv_connection_fn fn, void *arg, const rv_server_opts *opts,
                        rv_server **out)
{
    rv_server_opts o = {0};
    if (opts && opts->size)
        memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
    rv__worker *w = rv__tls_worker();
    if (!rt)
        rt = w ? w->rt : NULL;
    if (!rt || !fn)
        return -EINVAL;
    rv_server *srv = rv__calloc(sizeof *srv);
    if (!srv)
        return -ENOMEM;
    srv->rt = rt;
    srv->fn = fn;
    srv->arg = arg;
    srv->sopts = o.stream;
    srv->nlisteners = o.reuseport && family != AF_UNIX ? rt->nworkers : 1;
    srv->listeners = rv__calloc(srv->nlisteners * sizeof *srv->listeners);
    srv->acceptors = rv__calloc(srv->nlisteners * sizeof *srv->acceptors);
    srv->args = rv__calloc(srv->nlisteners * sizeof *srv->args);
    if (!srv->listeners || !srv->acceptors || !srv->args) {
        server_free(srv);
        return -ENOMEM;
    }
    int rc = 0;
    for (unsigned i = 0; i < srv->nlisteners && rc == 0; i++) {
        int fd = listen_socket(family, addr, len, o.backlog > 0 ? o.backlog : 511,
                               srv->nlisteners > 1);
        if (fd < 0) {
            rc = fd;
            break;
        }
        if (i == 0 && family != AF_UNIX) { /* port 0: every socket gets the chosen one */
            struct sockaddr_storage bound;
            socklen_t bl = sizeof bound;
            getsockname(fd, (struct sockaddr *)&bound, &bl);
            srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
            ((struct sockaddr_in *)addr)->sin_port = ((struct sockaddr_in *)&bound)->sin_port;
        }
        rc = rv_io_open(rt, fd, &srv->listeners[i]);
        if (rc)
            close(fd);
    }
    for (unsigned i = 0; i < srv->nlisteners && rc == 0; i++) {
        srv->args[i] = (acceptor){srv, srv->listeners[i]};
        rc = rv_spawn(rt, accept_task, &srv->args[i], NULL, &srv->acceptors[i]);
    }
    if (rc) {
        for (unsigned i = 0; i < srv->nlisteners; i++) {
            if (srv->listeners[i])
                rv_io_close(srv->listeners[i]); /* ends its acceptor, if any */
            if (srv->acceptors[i]) {
                rv_future_wait(rv_task_future(srv->acceptors[i]), -1, NULL);
                rv_task_release(srv->acceptors[i]);
            }
        }
        server_free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

int rv_start_server(rv_runtime *rt, const char *host, const char *service, rv_connection_fn fn,
                    void *arg, const rv_server_opts *opts, rv_server **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (opts && (opts->size == 0 || opts->size > sizeof *opts))
        return -EINVAL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    /* Resolution here may block a plain thread; in a task it suspends. */
    int rc = in_task() ? rv_getaddrinfo(host, service ? service : "0", &hints, &res)
                       : gai_errno(getaddrinfo(host, service ? service : "0", &hints, &res));
    if (rc)
        return rc;
    struct sockaddr_storage addr;
    memcpy(&addr, res->ai_addr, res->ai_addrlen);
    socklen_t len = res->ai_addrlen;
    int family = res->ai_family;
    freeaddrinfo(res);
    return server_start(rt, family, (struct sockaddr *)&addr, len, fn, arg, opts, out);
}

int rv_start_unix_server(rv_runtime *rt, const char *path, rv_connection_fn fn, void *arg,
                         const rv_server_opts *opts, rv_server **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (opts && (opts->size == 0 || opts->size > sizeof *opts))
        return -EINVAL;
    struct sockaddr_un sa;
    int rc = unix_addr(path, &sa);
    if (rc)
        return rc;
    return server_start(rt, AF_UNIX, (struct sockaddr *)&sa, sizeof sa, fn, arg, opts, out);
}

int rv_server_port(const rv_server *srv) { return srv ? srv->port : -EINVAL; }

/* Sleep 1 ms: a task suspends, a plain thread blocks. */
static void nap(void)
{
    if (in_task()) {
        rv_sleep(1000000);
    } else {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static size_t live_conns(rv_server *srv)
{
    rv__spin_lock(&srv->lock);
    size_t n = srv->live;
    rv__spin_unlock(&srv->lock);
    return n;
}

int rv_server_close(rv_server *srv, int64_t timeout_ns)
{
    if (!srv)
        return -EINVAL;
    int64_t deadline = deadline_of(timeout_ns);
    rv__spin_lock(&srv->lock);
    srv->closing = true;
    rv__spin_unlock(&srv->lock);
    /* Stop accepting: closing a listener ends its accept task. */
    for (unsigned i = 0; i < srv->nlisteners; i++)
        rv_io_close(srv->listeners[i]);
    for (unsigned i = 0; i < srv->nlisteners; i++) {
        while (!rv_future_done(rv_task_future(srv->acceptors[i])))
            nap();
        rv_task_release(srv->acceptors[i]);
    }
    /* Let the connections finish, up to the deadline. */
    while (live_conns(srv) > 0 && (deadline < 0 || rv_now() < deadline))
        nap();
    int rc = 0;
    if (live_conns(srv) > 0) {
        rc = -ETIMEDOUT;
        rv__spin_lock(&srv->lock);
        srv->cancel_all = true;
        for (conn *c = srv->conns; c; c = c->next)
            if (c->task)
                rv_task_cancel(c->task, "server closing");
        rv__spin_unlock(&srv->lock);
        while (live_conns(srv) > 0)
            nap();
    }
    server_free(srv);
    return rc;
}
