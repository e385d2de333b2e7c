/* primitives/sync.c - Lock, Event, Condition, Semaphore, Barrier.
 *
 * Each object is a word or two of state, a spinlock (`guard`) and FIFO wait
 * lists (waitq.h). The uncontended paths of Lock, Semaphore and Event are a
 * single atomic operation on the state word and never touch the guard; the
 * guard orders everything that involves a waiter.
 *
 * Invariants that keep newcomers from barging past waiters:
 * - Lock: while anyone waits the state is CONTENDED, never FREE: a release
 *   with waiters hands the lock to the first one (it stays held, by a new
 *   owner), so the free-lock fast path cannot succeed while waiters exist.
 * - Semaphore: while anyone waits the value is 0: a release with waiters
 *   hands its unit to the first one instead of incrementing.
 * A waiter that was handed the lock or a unit and then finds itself
 * cancelled gives it back through the ordinary release, which passes it to
 * the next waiter (asyncio's "woken, then cancelled" rule).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "executor/internal.h"
#include "primitives/waitq.h"

/* The public structs are opaque storage; these are what they hold. */
#define IMPL(type, p) ((type *)(void *)(p)->opaque)
#define CHECK_FITS(type, pub)                                                                      \
    _Static_assert(sizeof(type) <= sizeof(pub), #type " outgrew " #pub);                           \
    _Static_assert(_Alignof(type) <= _Alignof(pub), #type " alignment")

/* Grant every waiter of q `value`, collecting them on *chain. */
static int grant_all(rv__waitq *q, intptr_t value, rv__wnode **chain)
{
    int n = 0;
    while (rv__waitq_grant_first(q, value, chain))
        n++;
    return n;
}

static bool has_waiters(rv__spinlock *guard, const rv__waitq *q)
{
    rv__spin_lock(guard);
    bool busy = !rv__waitq_empty(q);
    rv__spin_unlock(guard);
    return busy;
}

/* The calling task, or NULL from a plain thread or a callback. */
static rv_task *self_task(void)
{
    bool on_worker;
    return rv__waitq_self(&on_worker);
}

/* ------------------------------------------------------------------------- */
/* Lock                                                                       */

enum { LOCK_FREE, LOCK_HELD, LOCK_CONTENDED };

/* How long an acquirer spins on a lock held by a task that is running on
 * another worker, and how many times it yields, before it queues (see
 * lock_acquire). */
#ifndef RV_LOCK_SPIN_NS
#define RV_LOCK_SPIN_NS 50000
#endif
#ifndef RV_LOCK_YIELDS
#define RV_LOCK_YIELDS 16
#endif
#ifndef RV_LOCK_BACKOFF_MAX
#define RV_LOCK_BACKOFF_MAX 2048 /* pause instructions between two looks */
#endif

typedef struct lock_impl {
    _Atomic uint32_t state;
    rv__spinlock guard;
    _Atomic uint8_t handed; /* handed to a waiter that has not run yet */
    /* The holder (for Condition's "caller holds the lock", and for
     * spinners), and the worker it acquired on; NULL for a plain thread.
     * Spinners compare these pointers and never dereference the task,
     * which may be gone (a task may end holding a lock). */
    _Atomic(rv_task *) owner;
    _Atomic(rv__worker *) owner_worker;
    rv__waitq waiters;
} lock_impl;
CHECK_FITS(lock_impl, rv_lock);

/* `self` runs on worker `w` (both NULL on a plain thread). */
static bool lock_try(lock_impl *l, rv_task *self, rv__worker *w)
{
    uint32_t expected = LOCK_FREE;
    /* acquire: pairs with the release that freed it (lock_release), so the
     * previous holder's writes are visible to us. */
    if (!rv__atomic_cas_acquire(&l->state, &expected, LOCK_HELD))
        return false;
    /* relaxed: the holder's identity is a hint for spinners, and for
     * Condition a check its own holder makes. */
    rv__atomic_store_relaxed(&l->owner, self);
    rv__atomic_store_relaxed(&l->owner_worker, w);
    return true;
}

static int lock_release(lock_impl *l)
{
    /* owner_worker may go stale: it is only read along with owner. */
    rv__atomic_store_relaxed(&l->owner, NULL);
    uint32_t expected = LOCK_HELD;
    /* release: publishes the critical section to the next acquirer's CAS. */
    if (rv__atomic_cas_release(&l->state, &expected, LOCK_FREE))
        return 0;
    if (expected == LOCK_FREE)
        return -EPERM;
    rv__wnode *chain = NULL;
    rv__spin_lock(&l->guard);
    rv__wnode *next = l->waiters.head;
    if (next) {
        /* Hand over: the lock stays held. The grant's release store
         * publishes our critical section to the new owner. */
        rv__atomic_store_relaxed(&l->owner, next->task);
        rv__atomic_store_relaxed(&l->handed, 1); /* until it runs */
        rv__waitq_grant_first(&l->waiters, 0, &chain);
        if (rv__waitq_empty(&l->waiters))
            rv__atomic_store_relaxed(&l->state, LOCK_HELD);
    } else {
        /* Every waiter left (cancelled). release: as the fast path. */
        rv__atomic_store_release(&l->state, LOCK_FREE);
    }
    rv__spin_unlock(&l->guard);
    rv__waitq_wake(chain);
    return 0;
}

/* Acquiring a held lock: spin, then yield, then queue (the order of
 * parking_lot's SpinWait). Queueing is what makes a lock slow under
 * contention: with FIFO hand-over every acquisition made while others are
 * queued pays a park and a wake, and a task that queues again right after
 * its turn keeps that convoy alive for as long as the contention lasts.
 * So an acquirer queues only when waiting is long: the holder is parked (it
 * holds the lock across an await), or its yields ran out. Spinners and
 * yielders are not waiters: they never take the lock from a queued waiter,
 * since a lock with waiters is never free (it is handed over), and among
 * themselves whoever finds it free first takes it.
 *
 * lock_wait_hint spins while spinning can work, and says what to do next. */
enum { LOCK_TAKEN, LOCK_YIELD, LOCK_QUEUE };

/* Is the holder running on a CPU right now? A NULL owner is a task between
 * its CAS and its store of owner, or a plain thread: assume it runs. The
 * worker is trusted only if it is one of ours (a lock may outlive the
 * runtime of a task that ended holding it). */
static bool holder_running(lock_impl *l, rv_runtime *rt)
{
    rv_task *owner = rv__atomic_load_relaxed(&l->owner);
    if (!owner)
        return true;
    rv__worker *w = rv__atomic_load_relaxed(&l->owner_worker);
    if (!w || w < rt->workers || w >= rt->workers + rt->nworkers)
        return false;
    return rv__atomic_load_relaxed(&w->running) == owner;
}

static int lock_wait_hint(lock_impl *l, rv_task *self, rv__worker *w)
{
    rv_runtime *rt = w->rt;
    int64_t until = 0;
    unsigned backoff = 1;
    for (unsigned i = 0;; i++) {
        uint32_t s = rv__atomic_load_relaxed(&l->state);
        if (s == LOCK_FREE) {
            if (lock_try(l, self, w))
                return LOCK_TAKEN;
            continue;
        }
        if (i % 32 == 0 || backoff >= 32 || s == LOCK_CONTENDED) {
            if (rv__atomic_load_relaxed(&l->handed))
                return LOCK_YIELD; /* its new holder runs soon, perhaps here */
            if (!holder_running(l, rt))
                return LOCK_QUEUE; /* parked holder: a long wait */
            if (s == LOCK_CONTENDED)
                return LOCK_YIELD; /* it goes to a waiter, never free */
            /* Running on another worker: optimistic spinning, as kernel
             * mutexes do, for at most RV_LOCK_SPIN_NS. */
            int64_t now = rv_now();
            if (!until)
                until = now + RV_LOCK_SPIN_NS;
            else if (now > until)
                return LOCK_YIELD;
        }
        /* Exponential backoff: each look pulls the lock's cache line away
         * from the holder, which then pays a cross-core miss for its next
         * acquisition; looking less often keeps the holder fast. */
        for (unsigned k = 0; k < backoff; k++)
            rv__cpu_relax();
        if (backoff < RV_LOCK_BACKOFF_MAX)
            backoff *= 2;
    }
}

/* A task's acquire; flags: RV_WQ_CANCELLABLE, or 0 for Condition's
 * re-acquire. `w` is the worker `self` runs on now. */
static __attribute__((noinline)) int lock_acquire(lock_impl *l, rv_task *self, rv__worker *w,
                                                 int flags)
{
    for (int yields = 0;; yields++) {
        if (lock_try(l, self, w))
            return 0;
        int hint = lock_wait_hint(l, self, w);
        if (hint == LOCK_TAKEN)
            return 0;
        if (hint == LOCK_QUEUE || yields == RV_LOCK_YIELDS)
            break;
        rv__suspend(w, self, RV_SWITCH_YIELD);
        w = rv__tls_worker(); /* it may resume elsewhere */
        if ((flags & RV_WQ_CANCELLABLE) && rv__take_cancel(self))
            return -ECANCELED;
    }
    rv__wnode node;
    rv__wnode_init(&node);
    rv__spin_lock(&l->guard);
    for (;;) {
        uint32_t s = rv__atomic_load_relaxed(&l->state);
        if (s == LOCK_FREE) {
            if (lock_try(l, self, w)) {
                rv__spin_unlock(&l->guard);
                return 0;
            }
            continue;
        }
        /* relaxed: the guard orders this against the slow release. */
        if (s == LOCK_CONTENDED || rv__atomic_cas_relaxed(&l->state, &s, LOCK_CONTENDED))
            break;
    }
    rv__waitq_push(&l->waiters, &node);
    int rc = rv__waitq_wait(&l->guard, &l->waiters, &node, -1, flags);
    if (rc != 0)
        return rc;
    /* Handed over: we hold it now, and run. */
    rv__atomic_store_relaxed(&l->owner_worker, rv__tls_worker());
    rv__atomic_store_relaxed(&l->handed, 0);
    if ((flags & RV_WQ_CANCELLABLE) && rv__take_cancel(self)) {
        lock_release(l); /* handed over, then cancelled: pass it on */
        return -ECANCELED;
    }
    return 0;
}

int rv_lock_init(rv_lock *l)
{
    if (!l)
        return -EINVAL;
    memset(l, 0, sizeof *l);
    return 0;
}

int rv_lock_destroy(rv_lock *l)
{
    if (!l)
        return -EINVAL;
    lock_impl *li = IMPL(lock_impl, l);
    return has_waiters(&li->guard, &li->waiters) ? -EBUSY : 0;
}

int rv_lock_acquire(rv_lock *l)
{
    if (!l)
        return -EINVAL;
    /* Read before any suspension; the slow path reads it afresh. */
    rv__worker *w = rv__tls_worker_at_entry();
    rv_task *self = w ? w->current : NULL;
    if (!self)
        return -EPERM;
    lock_impl *li = IMPL(lock_impl, l);
    if (__builtin_expect(lock_try(li, self, w), 1))
        return 0; /* the uncontended path, without a call */
    return lock_acquire(li, self, w, RV_WQ_CANCELLABLE);
}

int rv_lock_try_acquire(rv_lock *l)
{
    if (!l)
        return -EINVAL;
    rv__worker *w = rv__tls_worker();
    rv_task *self = w ? w->current : NULL;
    return lock_try(IMPL(lock_impl, l), self, self ? w : NULL) ? 0 : -EAGAIN;
}

int rv_lock_release(rv_lock *l) { return l ? lock_release(IMPL(lock_impl, l)) : -EINVAL; }

bool rv_lock_locked(const rv_lock *l)
{
    return l && rv__atomic_load_acquire(&IMPL(lock_impl, (rv_lock *)l)->state) != LOCK_FREE;
}

/* ------------------------------------------------------------------------- */
/* Event                                                                      */

typedef struct event_impl {
    _Atomic uint32_t flag;
    rv__spinlock guard;
    rv__waitq waiters;
} event_impl;
CHECK_FITS(event_impl, rv_event);

int rv_event_init(rv_event *e)
{
    if (!e)
        return -EINVAL;
    memset(e, 0, sizeof *e);
    return 0;
}

int rv_event_destroy(rv_event *e)
{
    if (!e)
        return -EINVAL;
    event_impl *ei = IMPL(event_impl, e);
    return has_waiters(&ei->guard, &ei->waiters) ? -EBUSY : 0;
}

int rv_event_set(rv_event *e)
{
    if (!e)
        return -EINVAL;
    event_impl *ei = IMPL(event_impl, e);
    /* acquire: pairs with the release store below, made by an earlier set. */
    if (rv__atomic_load_acquire(&ei->flag))
        return 0;
    rv__wnode *chain = NULL;
    rv__spin_lock(&ei->guard);
    /* release: what the setter wrote before set() is visible to a waiter
     * that sees the flag without parking (rv_event_wait's acquire load). */
    rv__atomic_store_release(&ei->flag, 1);
    grant_all(&ei->waiters, 0, &chain);
    rv__spin_unlock(&ei->guard);
    rv__waitq_wake(chain);
    return 0;
}

int rv_event_clear(rv_event *e)
{
    if (!e)
        return -EINVAL;
    rv__atomic_store_relaxed(&IMPL(event_impl, e)->flag, 0);
    return 0;
}

bool rv_event_is_set(const rv_event *e)
{
    return e && rv__atomic_load_acquire(&IMPL(event_impl, (rv_event *)e)->flag);
}

int rv_event_wait(rv_event *e)
{
    if (!e)
        return -EINVAL;
    event_impl *ei = IMPL(event_impl, e);
    /* acquire: pairs with the release store in rv_event_set. */
    if (rv__atomic_load_acquire(&ei->flag))
        return 0;
    rv_task *self = self_task();
    if (!self)
        return -EPERM;
    rv__wnode node;
    rv__wnode_init(&node);
    rv__spin_lock(&ei->guard);
    if (rv__atomic_load_relaxed(&ei->flag)) {
        rv__spin_unlock(&ei->guard);
        return 0;
    }
    rv__waitq_push(&ei->waiters, &node);
    int rc = rv__waitq_wait(&ei->guard, &ei->waiters, &node, -1, RV_WQ_CANCELLABLE);
    if (rc == 0 && rv__take_cancel(self))
        rc = -ECANCELED; /* woken, then cancelled before it ran: asyncio raises */
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Condition                                                                  */

typedef struct cond_impl {
    rv_lock *lock;
    rv__spinlock guard;
    rv__waitq waiters;
    rv_lock own; /* the lock when none was given */
} cond_impl;
CHECK_FITS(cond_impl, rv_cond);

static bool cond_held_by(cond_impl *c, rv_task *self)
{
    lock_impl *l = IMPL(lock_impl, c->lock);
    return rv__atomic_load_relaxed(&l->state) != LOCK_FREE &&
           rv__atomic_load_relaxed(&l->owner) == self;
}

/* Wake up to n waiters; guard not held. */
static int cond_notify(cond_impl *c, int n)
{
    rv__wnode *chain = NULL;
    int woken = 0;
    rv__spin_lock(&c->guard);
    while (woken < n && rv__waitq_grant_first(&c->waiters, 0, &chain))
        woken++;
    rv__spin_unlock(&c->guard);
    rv__waitq_wake(chain);
    return woken;
}

int rv_cond_init(rv_cond *c, rv_lock *lock)
{
    if (!c)
        return -EINVAL;
    memset(c, 0, sizeof *c);
    cond_impl *ci = IMPL(cond_impl, c);
    rv_lock_init(&ci->own);
    ci->lock = lock ? lock : &ci->own;
    return 0;
}

int rv_cond_destroy(rv_cond *c)
{
    if (!c)
        return -EINVAL;
    cond_impl *ci = IMPL(cond_impl, c);
    return has_waiters(&ci->guard, &ci->waiters) ? -EBUSY : 0;
}

rv_lock *rv_cond_lock(rv_cond *c) { return c ? IMPL(cond_impl, c)->lock : NULL; }

int rv_cond_wait(rv_cond *c)
{
    if (!c)
        return -EINVAL;
    cond_impl *ci = IMPL(cond_impl, c);
    rv_task *self = self_task();
    if (!self || !cond_held_by(ci, self))
        return -EPERM;
    lock_impl *l = IMPL(lock_impl, ci->lock);

    /* Queue first, then let the lock go: a notifier needs the lock, so it
     * cannot slip between the two and be missed. */
    rv__wnode node;
    rv__wnode_init(&node);
    rv__spin_lock(&ci->guard);
    rv__waitq_push(&ci->waiters, &node);
    rv__spin_unlock(&ci->guard);
    lock_release(l);

    rv__spin_lock(&ci->guard);
    int rc = rv__waitq_wait(&ci->guard, &ci->waiters, &node, -1, RV_WQ_CANCELLABLE);
    bool notified = rc == 0;
    /* The lock is re-acquired whatever happened; a cancellation that arrives
     * meanwhile stays pending and is reported below. */
    lock_acquire(l, self, rv__tls_worker(), 0);
    if (rc == 0 && rv__take_cancel(self))
        rc = -ECANCELED;
    if (rc == -ECANCELED && notified)
        cond_notify(ci, 1); /* our notification goes to someone else */
    return rc;
}

int rv_cond_wait_for(rv_cond *c, bool (*pred)(void *arg), void *arg)
{
    if (!c || !pred)
        return -EINVAL;
    while (!pred(arg)) {
        int rc = rv_cond_wait(c);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int rv_cond_notify(rv_cond *c, int n)
{
    if (!c || n < 1)
        return -EINVAL;
    cond_impl *ci = IMPL(cond_impl, c);
    if (!cond_held_by(ci, self_task()))
        return -EPERM;
    return cond_notify(ci, n);
}

int rv_cond_notify_all(rv_cond *c) { return rv_cond_notify(c, INT_MAX); }

/* ------------------------------------------------------------------------- */
/* Semaphore                                                                  */

typedef struct sem_impl {
    _Atomic int value;
    rv__spinlock guard;
    bool bounded;
    int bound;
    rv__waitq waiters;
} sem_impl;
CHECK_FITS(sem_impl, rv_sem);

static bool sem_try(sem_impl *s)
{
    int v = rv__atomic_load_relaxed(&s->value);
    /* acquire: pairs with the release increment in sem_release, so what
     * the releaser did before is visible to us. */
    while (v > 0)
        if (rv__atomic_cas_acquire(&s->value, &v, v - 1))
            return true;
    return false;
}

/* `check_bound`: false when passing on a unit that was handed over. */
static int sem_release(sem_impl *s, bool check_bound)
{
    rv__wnode *chain = NULL;
    int rc = 0;
    /* Always under the guard: an acquirer decides to queue only while
     * holding it, so the increment and the queueing cannot cross. */
    rv__spin_lock(&s->guard);
    if (!rv__waitq_grant_first(&s->waiters, 0, &chain)) {
        if (check_bound && s->bounded && rv__atomic_load_relaxed(&s->value) >= s->bound)
            rc = -EINVAL;
        else
            rv__atomic_fetch_add_release(&s->value, 1); /* pairs with sem_try */
    }
    rv__spin_unlock(&s->guard);
    rv__waitq_wake(chain);
    return rc;
}

static int sem_init(rv_sem *s, int value, bool bounded)
{
    if (!s || value < 0)
        return -EINVAL;
    memset(s, 0, sizeof *s);
    sem_impl *si = IMPL(sem_impl, s);
    rv__atomic_store_relaxed(&si->value, value);
    si->bounded = bounded;
    si->bound = value;
    return 0;
}

int rv_sem_init(rv_sem *s, int value) { return sem_init(s, value, false); }

int rv_sem_init_bounded(rv_sem *s, int value) { return sem_init(s, value, true); }

int rv_sem_destroy(rv_sem *s)
{
    if (!s)
        return -EINVAL;
    sem_impl *si = IMPL(sem_impl, s);
    return has_waiters(&si->guard, &si->waiters) ? -EBUSY : 0;
}

int rv_sem_acquire(rv_sem *s)
{
    if (!s)
        return -EINVAL;
    rv_task *self = self_task();
    if (!self)
        return -EPERM;
    sem_impl *si = IMPL(sem_impl, s);
    if (sem_try(si))
        return 0;
    rv__wnode node;
    rv__wnode_init(&node);
    rv__spin_lock(&si->guard);
    if (sem_try(si)) {
        rv__spin_unlock(&si->guard);
        return 0;
    }
    rv__waitq_push(&si->waiters, &node);
    int rc = rv__waitq_wait(&si->guard, &si->waiters, &node, -1, RV_WQ_CANCELLABLE);
    if (rc == 0 && rv__take_cancel(self)) {
        sem_release(si, false); /* handed a unit, then cancelled: pass it on */
        rc = -ECANCELED;
    }
    return rc;
}

int rv_sem_try_acquire(rv_sem *s)
{
    if (!s)
        return -EINVAL;
    return sem_try(IMPL(sem_impl, s)) ? 0 : -EAGAIN;
}

int rv_sem_release(rv_sem *s) { return s ? sem_release(IMPL(sem_impl, s), true) : -EINVAL; }

bool rv_sem_locked(const rv_sem *s) { return s && rv_sem_value(s) == 0; }

int rv_sem_value(const rv_sem *s)
{
    return s ? rv__atomic_load_relaxed(&IMPL(sem_impl, (rv_sem *)s)->value) : -EINVAL;
}

/* ------------------------------------------------------------------------- */
/* Barrier                                                                    */

typedef struct barrier_impl {
    rv__spinlock guard;
    bool broken;
    int parties;
    int count; /* arrived in this round */
    rv__waitq waiters;
} barrier_impl;
CHECK_FITS(barrier_impl, rv_barrier);

int rv_barrier_init(rv_barrier *b, int parties)
{
    if (!b || parties < 1)
        return -EINVAL;
    memset(b, 0, sizeof *b);
    IMPL(barrier_impl, b)->parties = parties;
    return 0;
}

int rv_barrier_destroy(rv_barrier *b)
{
    if (!b)
        return -EINVAL;
    barrier_impl *bi = IMPL(barrier_impl, b);
    return has_waiters(&bi->guard, &bi->waiters) ? -EBUSY : 0;
}

int rv_barrier_wait(rv_barrier *b)
{
    if (!b)
        return -EINVAL;
    rv_task *self = self_task();
    if (!self)
        return -EPERM;
    barrier_impl *bi = IMPL(barrier_impl, b);
    rv__wnode *chain = NULL;
    rv__spin_lock(&bi->guard);
    if (bi->broken) {
        rv__spin_unlock(&bi->guard);
        return -EPIPE;
    }
    if (++bi->count == bi->parties) {
        /* The last to arrive releases the round and does not wait. Indexes
         * go by arrival among those still waiting (one may have left,
         * cancelled), so they are distinct: 0 .. parties-1. */
        bi->count = 0;
        for (intptr_t i = 0; rv__waitq_grant_first(&bi->waiters, i, &chain); i++)
            ;
        rv__spin_unlock(&bi->guard);
        rv__waitq_wake(chain);
        return bi->parties - 1;
    }
    rv__wnode node;
    rv__wnode_init(&node);
    rv__waitq_push(&bi->waiters, &node);
    int rc = rv__waitq_wait(&bi->guard, &bi->waiters, &node, -1, RV_WQ_CANCELLABLE);
    if (rc == -ECANCELED) {
        /* asyncio: a cancelled waiter just leaves the round. */
        rv__spin_lock(&bi->guard);
        bi->count--;
        rv__spin_unlock(&bi->guard);
        return rc;
    }
    if (rc != 0)
        return rc;
    /* The round completed (or broke) for us: a cancellation that came after
     * stays pending for the next suspension point. */
    return (int)node.value; /* our index, or -EPIPE */
}

/* Wake the waiting round with -EPIPE; `broken` is the state left after. */
static int barrier_break(rv_barrier *b, bool broken)
{
    if (!b)
        return -EINVAL;
    barrier_impl *bi = IMPL(barrier_impl, b);
    rv__wnode *chain = NULL;
    rv__spin_lock(&bi->guard);
    grant_all(&bi->waiters, -EPIPE, &chain);
    bi->count = 0;
    bi->broken = broken;
    rv__spin_unlock(&bi->guard);
    rv__waitq_wake(chain);
    return 0;
}

int rv_barrier_reset(rv_barrier *b) { return barrier_break(b, false); }

int rv_barrier_abort(rv_barrier *b) { return barrier_break(b, true); }

/* Read one int field under the guard (the readers are rare). */
static int barrier_read(const rv_barrier *b, size_t offset)
{
    if (!b)
        return -EINVAL;
    barrier_impl *bi = IMPL(barrier_impl, (rv_barrier *)b);
    rv__spin_lock(&bi->guard);
    int v = *(int *)((char *)bi + offset);
    rv__spin_unlock(&bi->guard);
    return v;
}

bool rv_barrier_broken(const rv_barrier *b)
{
    if (!b)
        return false;
    barrier_impl *bi = IMPL(barrier_impl, (rv_barrier *)b);
    rv__spin_lock(&bi->guard);
    bool broken = bi->broken;
    rv__spin_unlock(&bi->guard);
    return broken;
}

int rv_barrier_n_waiting(const rv_barrier *b) { return barrier_read(b, offsetof(barrier_impl, count)); }

int rv_barrier_parties(const rv_barrier *b) { return barrier_read(b, offsetof(barrier_impl, parties)); }
