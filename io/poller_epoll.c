/* io/poller_epoll.c - rv__poller on Linux epoll + eventfd. */
#include "io/poller.h"

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RV_POLLER_WAKE_TAG 0 /* epoll data of the eventfd; fds get tagged records */
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
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = RV_POLLER_WAKE_TAG};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) < 0) {
        int e = -errno;
        close(p->wakefd);
        close(p->epfd);
        return e;
    }
    rv__atomic_store_relaxed(&p->wake_pending, 0);
    p->fds = 0;
    return 0;
}

void rv__poller_fini(rv__poller *p)
{
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
            io++; /* fd readiness dispatch arrives with the I/O issue */
        }
    }
    return io;
}
