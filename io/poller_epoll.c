/* io/poller_epoll.c - rv__poller on Linux epoll + eventfd. */
#include "io/poller.h"

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RV_POLLER_WAKE_TAG 0 /* epoll data of the eventfd in epfd */
#define RV_POLLER_IO_TAG 1   /* epoll data of iofd in epfd; fds in iofd carry records */
#define RV_POLLER_BATCH 128

int rv__poller_init(rv__poller *p)
{
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
        return -errno;
    p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->wakefd < 0) {
        int e = -errno;
        close(p->epfd);
        return e;
    }
    p->iofd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = RV_POLLER_WAKE_TAG};
    struct epoll_event io = {.events = EPOLLIN, .data.u64 = RV_POLLER_IO_TAG};
    if (p->iofd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) < 0 ||
        epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->iofd, &io) < 0) {
        int e = -errno;
        if (p->iofd >= 0)
            close(p->iofd);
        close(p->wakefd);
        close(p->epfd);
        p->iofd = p->wakefd = p->epfd = -1;
        return e;
    }
    rv__atomic_store_relaxed(&p->wake_pending, 0);
    rv__atomic_store_relaxed(&p->fds, 0);
    return 0;
}

int rv__poller_add(rv__poller *p, int fd, uint64_t data)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = data};
    if (epoll_ctl(p->iofd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    rv__atomic_fetch_add_relaxed(&p->fds, 1);
    return 0;
}

int rv__poller_del(rv__poller *p, int fd)
{
    rv__atomic_fetch_sub_relaxed(&p->fds, 1);
    return epoll_ctl(p->iofd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
}

int rv__poller_poll_io(rv__poller *p)
{
    struct epoll_event evs[RV_POLLER_BATCH];
    int n = epoll_wait(p->iofd, evs, RV_POLLER_BATCH, 0);
    for (int i = 0; i < n; i++)
        rv__io_dispatch(evs[i].data.u64, evs[i].events);
    return n > 0 ? n : 0;
}

void rv__poller_fini(rv__poller *p)
{
    if (p->iofd >= 0)
        close(p->iofd);
    if (p->wakefd >= 0)
        close(p->wakefd);
    if (p->epfd >= 0)
        close(p->epfd);
    p->wakefd = p->epfd = -1;
}

void rv__poller_wake(rv__poller *p)
{
    /* acq_rel: the waker's earlier writes (the work it published) are ordered
     * before the flag; pairs with the exchange in rv__poller_wait. A wake that
     * finds the flag already set is covered by the pending one. */
    if (rv__atomic_exchange_acq_rel(&p->wake_pending, 1))
        return;
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(p->wakefd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
}

int rv__poller_wait(rv__poller *p, int timeout_ms)
{
    struct epoll_event evs[RV_POLLER_BATCH];
    int n = epoll_wait(p->epfd, evs, RV_POLLER_BATCH, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int io = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == RV_POLLER_WAKE_TAG) {
            /* Drain, then clear the flag. The other order loses wakes: a
             * waker landing between the two would set the flag and write,
             * the drain would eat its write, and the flag, left set, would
             * make every later waker skip its write. In this order a waker
             * that still finds the flag set is covered: our exchange below
             * (acquire) pairs with its exchange (release), so the work it
             * published is visible when our caller re-checks its queues,
             * which it does after every return from here. */
            uint64_t v;
            while (read(p->wakefd, &v, sizeof v) < 0 && errno == EINTR)
                ;
            rv__atomic_exchange_acq_rel(&p->wake_pending, 0);
        } else {
            io += rv__poller_poll_io(p); /* iofd has ready descriptors */
        }
    }
    return io;
}
