/* primitives/waitq.c - parking and granting for the sync objects' wait
 * lists. See waitq.h for the protocol. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "executor/internal.h"
#include "executor/task_internal.h"
#include "primitives/waitq.h"

void rv__wnode_init(rv__wnode *n)
{
    memset(n, 0, sizeof *n);
    rv__worker *w = rv__tls_worker();
    n->task = w ? w->current : NULL;
}

rv_task *rv__waitq_self(bool *on_worker)
{
    rv__worker *w = rv__tls_worker();
    *on_worker = w != NULL;
    return w ? w->current : NULL;
}

void rv__waitq_push(rv__waitq *q, rv__wnode *n)
{
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    n->linked = true;
    q->len++;
}

void rv__waitq_unlink(rv__waitq *q, rv__wnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->next = n->prev = NULL;
    n->linked = false;
    q->len--;
}

rv__wnode *rv__waitq_grant_first(rv__waitq *q, intptr_t value, rv__wnode **chain)
{
    rv__wnode *n = q->head;
    if (!n)
        return NULL;
    rv__waitq_unlink(q, n);
    n->value = value;
    n->wake_next = *chain;
    *chain = n;
    /* release: the value and whatever the object recorded for this waiter
     * are visible to it when it sees the grant (its acquire load). */
    rv__atomic_store_release(&n->granted, 1);
    return n;
}

void rv__waitq_wake(rv__wnode *chain)
{
    /* The chain is in reverse grant order; wake in grant order so that FIFO
     * grants also run in FIFO order where the scheduler allows. */
    rv__wnode *ordered = NULL;
    while (chain) {
        rv__wnode *next = chain->wake_next;
        chain->wake_next = ordered;
        ordered = chain;
        chain = next;
    }
    while (ordered) {
        /* Read everything we need first: once `fired` is set the node's
         * stack frame may be gone. */
        rv__wnode *next = ordered->wake_next;
        if (ordered->task)
            rv__task_wake(ordered->task);
        else
            rv__futex_wake_all(&ordered->granted);
        /* release: our last access to the node; pairs with wait_fired. */
        rv__atomic_store_release(&ordered->fired, 1);
        ordered = next;
    }
}

/* A granted waiter may leave only after its waker's last access. The window
 * is a few instructions unless the waker was preempted. */
static void wait_fired(rv__wnode *n)
{
    /* acquire: pairs with the release store in rv__waitq_wake. */
    for (unsigned spins = 0; !rv__atomic_load_acquire(&n->fired); spins++) {
        if (spins < 128)
            rv__cpu_relax();
        else
            sched_yield();
    }
}

/* After a wait ended without a grant: take n off the list, unless a grant
 * got there first. Returns true when n was unlinked (nothing granted). */
static bool withdraw(rv__spinlock *lock, rv__waitq *q, rv__wnode *n)
{
    rv__spin_lock(lock);
    bool linked = n->linked;
    if (linked)
        rv__waitq_unlink(q, n);
    rv__spin_unlock(lock);
    return linked;
}

static int thread_wait(rv__spinlock *lock, rv__waitq *q, rv__wnode *n, int64_t deadline)
{
    rv__spin_unlock(lock);
    if (!rv__futex_wait_set(&n->granted, deadline) && withdraw(lock, q, n))
        return -ETIMEDOUT;
    wait_fired(n);
    return 0;
}

int rv__waitq_wait(rv__spinlock *lock, rv__waitq *q, rv__wnode *n, int64_t deadline, int flags)
{
    rv_task *t = n->task;
    if (!t)
        return thread_wait(lock, q, n, deadline);

    /* So that a runtime torn down under a straggler can unlink n. */
    t->wq_lock = lock;
    t->wq = q;
    t->wq_node = n;
    rv__spin_unlock(lock);

    int rc = 0;
    rv__task_timer *timer = NULL;
    if (deadline >= 0 && !(timer = rv__task_timer_arm(t, deadline)))
        rc = -ENOMEM;
    while (rc == 0) {
        /* acquire: pairs with the release store in rv__waitq_grant_first. */
        if (rv__atomic_load_acquire(&n->granted))
            break;
        if ((flags & RV_WQ_CANCELLABLE) && rv__atomic_load_acquire(&t->must_cancel))
            rc = -ECANCELED;
        else if (timer && rv__task_timer_expired(timer))
            rc = -ETIMEDOUT;
        else
            rv__suspend(rv__tls_worker(), t, RV_SWITCH_PARK);
    }
    if (timer)
        rv__task_timer_disarm(timer);
    t->wq = NULL;
    if (rc != 0 && withdraw(lock, q, n)) {
        if (rc == -ECANCELED)
            (void)rv__take_cancel(t); /* consumed: reported by this return */
        return rc;
    }
    wait_fired(n);
    return 0;
}
