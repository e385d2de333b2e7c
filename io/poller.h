/* io/poller.h - the per-worker readiness poller (one backend per platform;
 * io/poller_epoll.c on Linux).
 *
 * Each worker owns one poller: an epoll instance plus an eventfd registered in
 * it. A worker with nothing to do parks in rv__poller_wait(); another thread
 * wakes it with rv__poller_wake(), which costs a write(2) only when no wake is
 * already pending. Later issues register sockets and pipes here.
 */
#ifndef RAVEL_IO_POLLER_H
#define RAVEL_IO_POLLER_H

#include <stdint.h>

#include "primitives/atomics.h"

typedef struct rv__poller {
    int epfd;   /* what the owner parks on: wakefd and iofd */
    int wakefd;
    int iofd;   /* an epoll of the registered descriptors only, nested in epfd:
                   another worker may poll it without taking our wakes */
    _Atomic int wake_pending;
    _Atomic unsigned fds; /* descriptors registered in iofd */
} rv__poller;

/* True when a non-blocking poll could find anything: with no descriptor
 * registered, only a wake can arrive, and wakes matter only to a parked
 * worker, so the busy loop skips the system call. */
static inline int rv__poller_has_fds(rv__poller *p) { return rv__atomic_load_relaxed(&p->fds) != 0; }

/* Register / deregister fd in iofd with `data` (edge triggered, in and out).
 * Any thread. 0 or a negative errno. */
int rv__poller_add(rv__poller *p, int fd, uint64_t data);
int rv__poller_del(rv__poller *p, int fd);
/* Collect ready descriptors of p's iofd without waiting and dispatch them
 * (rv__io_dispatch). Any thread: an idle worker polls a busy one's. Returns
 * the number of events. */
int rv__poller_poll_io(rv__poller *p);

/* Readiness of one registered descriptor (io/reactor.c). */
void rv__io_dispatch(uint64_t data, uint32_t events);

int rv__poller_init(rv__poller *p);
void rv__poller_fini(rv__poller *p);
/* Any thread. */
void rv__poller_wake(rv__poller *p);
/* Owner. Wait up to timeout_ms (-1: forever, 0: just look). Returns the number
 * of I/O events handled (wakeups not counted), or a negative errno. The caller
 * must re-check for work after every return: a wake may have been coalesced
 * into one that this call consumed. */
int rv__poller_wait(rv__poller *p, int timeout_ms);

#endif
