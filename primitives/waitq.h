/* primitives/waitq.h - FIFO wait lists for the task-level sync objects.
 *
 * Every sync object (lock, event, condition, semaphore, barrier, queue,
 * task group, generator) is a small state guarded by its own spinlock plus
 * one or more wait lists. A waiter is a node on the waiting task's (or plain
 * thread's) stack. Waking is a *grant*: under the object's spinlock the
 * waker takes the node off the list, sets `granted` and records in the node
 * what was granted (the object decides: the lock itself, a unit, a reserved
 * item, an error code). So whatever a waiter was promised is accounted for
 * in the object's state at once, and a newcomer cannot take it (no barging).
 *
 * After unlocking, the waker wakes the chain it collected, then sets `fired`:
 * its last access to the node. A waiter leaves only once `fired` is set, so
 * its stack frame never goes away under the waker.
 *
 * A waiter that stops waiting (cancellation, timeout) takes the spinlock: if
 * its node is still linked it unlinks it and nothing was granted; otherwise a
 * grant raced with it and it owns what was granted (the object's code passes
 * it on, as asyncio does for a woken and then cancelled waiter).
 */
#ifndef RAVEL_PRIMITIVES_WAITQ_H
#define RAVEL_PRIMITIVES_WAITQ_H

#include <stdbool.h>
#include <stdint.h>

#include "primitives/atomics.h"
#include "primitives/spinlock.h"

struct rv_task;

typedef struct rv__wnode rv__wnode;
struct rv__wnode {
    rv__wnode *next, *prev;
    rv__wnode *wake_next;    /* the waker's chain, after unlinking */
    struct rv_task *task;    /* NULL: a plain thread, parked on the `granted` futex */
    _Atomic uint32_t granted; /* set (release) by the waker under the object's lock */
    _Atomic uint32_t fired;   /* the waker is done with this node */
    bool linked;             /* on a list; guarded by the object's lock */
    intptr_t value;          /* what was granted, or a request (object's choice) */
};

typedef struct rv__waitq {
    rv__wnode *head, *tail;
    size_t len;
} rv__waitq;

static inline bool rv__waitq_empty(const rv__waitq *q) { return q->head == NULL; }

/* Prepare a node for the calling task or plain thread. */
void rv__wnode_init(rv__wnode *n);
/* Append n (lock held). */
void rv__waitq_push(rv__waitq *q, rv__wnode *n);
/* Unlink n (lock held). */
void rv__waitq_unlink(rv__waitq *q, rv__wnode *n);
/* Unlink the first node, mark it granted with `value` and put it on *chain
 * (lock held). Returns the node, NULL when the list is empty. */
rv__wnode *rv__waitq_grant_first(rv__waitq *q, intptr_t value, rv__wnode **chain);
/* Wake every node on a chain (lock released). */
void rv__waitq_wake(rv__wnode *chain);

enum {
    RV_WQ_CANCELLABLE = 1, /* a cancellation request ends the wait */
};

/* Park until n is granted, `deadline` (rv_now clock; negative: none) passes,
 * or, with RV_WQ_CANCELLABLE, the task is cancelled. Called with *lock held
 * and n pushed on q; returns with *lock released.
 *   0           granted; a cancellation may be pending (the caller decides
 *               whether to keep the grant or pass it on)
 *   -ECANCELED  cancelled, n taken off q, nothing granted; the request is
 *               consumed
 *   -ETIMEDOUT  deadline passed, n taken off q, nothing granted
 *   -ENOMEM     no memory for the deadline's timer (n taken off q)
 * A plain thread (n->task == NULL) blocks on a futex and is never cancelled. */
int rv__waitq_wait(rv__spinlock *lock, rv__waitq *q, rv__wnode *n, int64_t deadline, int flags);

/* The calling task, or NULL on a plain thread; -EDEADLK-worthy contexts (a
 * worker thread outside a task) are reported through *on_worker. */
struct rv_task *rv__waitq_self(bool *on_worker);

#endif
