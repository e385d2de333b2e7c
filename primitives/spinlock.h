/* primitives/spinlock.h - a one-byte test-and-test-and-set lock for critical
 * sections of a few instructions (a future's waiter list, a worker's task
 * list). It spins with a pause hint, then yields the CPU, so a holder that was
 * preempted costs waiters a few sched_yield calls rather than a busy core.
 * Not for anything that may block or run user code while held. */
#ifndef RAVEL_PRIMITIVES_SPINLOCK_H
#define RAVEL_PRIMITIVES_SPINLOCK_H

#include <sched.h>
#include <stdint.h>

#include "primitives/atomics.h"

typedef _Atomic uint8_t rv__spinlock;

static inline void rv__spin_lock(rv__spinlock *l)
{
    for (unsigned spins = 0;; spins++) {
        /* acquire: pairs with the release in rv__spin_unlock, so the previous
         * holder's writes are visible to us. */
        if (!rv__atomic_load_relaxed(l) && !rv__atomic_exchange_acquire(l, 1))
            return;
        if (spins < 64)
            rv__cpu_relax();
        else
            sched_yield();
    }
}

static inline void rv__spin_unlock(rv__spinlock *l) { rv__atomic_store_release(l, 0); }

#endif
