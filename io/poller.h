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
    int epfd;
    int wakefd;
    _Atomic int wake_pending;
    unsigned fds; /* descriptors registered besides wakefd (owner only) */
} rv__poller;

/* True when a non-blocking poll could find anything: with no descriptor
 * registered, only a wake can arrive, and wakes matter only to a parked
 * worker, so the busy loop skips the system call. */
static inline int rv__poller_has_fds(const rv__poller *p) { return p->fds != 0; }

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
