/* primitives/spinlock.h - a one-byte test-and-test-and-set lock for critical
 * sections of a few instructions (a future's waiter list, a worker's task
 * list, a queue). It spins with exponential backoff (each look at a held lock
 * pulls its cache line away from the holder, so contended waiters look less
 * and less often), then yields the CPU, so a holder that was preempted costs
 * waiters a few sched_yield calls rather than a busy core.
 * Not for anything that may block or run user code while held. */
#ifndef RAVEL_PRIMITIVES_SPINLOCK_H
#define RAVEL_PRIMITIVES_SPINLOCK_H

#include <sched.h>
#include <stdint.h>

#include "primitives/atomics.h"

typedef _Atomic uint8_t rv__spinlock;

#ifndef RV_SPIN_BACKOFF_MAX
#define RV_SPIN_BACKOFF_MAX 1024 /* pause instructions between two looks */
#endif

static inline void rv__spin_lock(rv__spinlock *l)
{
    /* acquire: pairs with the release in rv__spin_unlock, so the previous
     * holder's writes are visible to us. */
    if (__builtin_expect(!rv__atomic_load_relaxed(l) && !rv__atomic_exchange_acquire(l, 1), 1))
        return;
    for (unsigned spins = 0, backoff = 1;; spins++) {
        /* Exponential backoff: under contention every look steals the line
         * from the holder and slows it down. */
        if (spins < 16) {
            for (unsigned k = 0; k < backoff; k++)
                rv__cpu_relax();
            backoff *= 2;
        } else {
            sched_yield(); /* the holder was preempted */
        }
        if (!rv__atomic_load_relaxed(l) && !rv__atomic_exchange_acquire(l, 1))
            return;
        if (backoff > RV_SPIN_BACKOFF_MAX)
            backoff = RV_SPIN_BACKOFF_MAX;
    }
}

static inline void rv__spin_unlock(rv__spinlock *l) { rv__atomic_store_release(l, 0); }

#endif
