/* primitives/queue.c - asyncio.Queue, LifoQueue and PriorityQueue, safe for
 * tasks on every worker and, for put/get, for plain threads.
 *
 * One spinlock (`guard`) covers the buffer, the counters and three wait
 * lists: getters (waiting for an item), putters (waiting for a slot) and
 * joiners (waiting for unfinished == 0).
 *
 * Handing over without losing anything:
 * - A put that finds getters waiting (the buffer is then empty) hands its
 *   item straight to the first getter: so getters receive items in the order
 *   they queued, whatever order the scheduler runs them in. Until the getter
 *   runs, the item holds a reserved slot (reserved_slots), so the bound stays
 *   exact. A getter cancelled before it ran puts the item back at the front
 *   of the queue (into its reserved slot) or hands it to the next getter: a
 *   cancelled get never loses an item.
 * - A get that frees a slot while putters wait reserves that slot for the
 *   first putter (reserved_slots++) and wakes it; a reserved slot is
 *   invisible to newcomers (no barging). A putter cancelled before it ran
 *   passes the slot on and its item is not put (asyncio).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "executor/alloc.h"
#include "executor/internal.h"
#include "primitives/waitq.h"

struct rv_queue {
    rv__spinlock guard;
    uint8_t kind;
    bool shutdown;
    bool immediate;              /* shut down with immediate = true */
    void (*drop)(void *item);    /* given to that shutdown */
    long maxsize; /* 0: unbounded */
    rv_queue_cmp cmp;
    void **buf; /* FIFO: a ring of `cap` (a power of two) from `head`;
                   LIFO: a stack; PRIORITY: a binary min-heap */
    size_t cap, head, count;
    long reserved_slots; /* for woken putters, and items in getters' hands */
    long unfinished; /* put and not yet task_done */
    rv__waitq getters, putters, joiners;
};

/* ------------------------------------------------------------------------- */
/* The buffer (guard held)                                                    */

static int buf_grow(rv_queue *q)
{
    size_t cap = q->cap ? q->cap * 2 : 16;
    void **fresh = rv__alloc(cap * sizeof *fresh);
    if (!fresh)
        return -ENOMEM;
    for (size_t i = 0; i < q->count; i++)
        fresh[i] = q->kind == RV_QUEUE_FIFO ? q->buf[(q->head + i) & (q->cap - 1)] : q->buf[i];
    if (q->buf)
        rv__free(q->buf, q->cap * sizeof *q->buf);
    q->buf = fresh;
    q->cap = cap;
    q->head = 0;
    return 0;
}

static void heap_swap(void **a, void **b)
{
    void *t = *a;
    *a = *b;
    *b = t;
}

static int buf_push(rv_queue *q, void *item)
{
    if (q->count == q->cap) {
        int rc = buf_grow(q);
        if (rc)
            return rc;
    }
    switch (q->kind) {
    case RV_QUEUE_FIFO:
        q->buf[(q->head + q->count) & (q->cap - 1)] = item;
        break;
    case RV_QUEUE_LIFO:
        q->buf[q->count] = item;
        break;
    default: { /* sift up */
        size_t i = q->count;
        q->buf[i] = item;
        while (i > 0 && q->cmp(q->buf[i], q->buf[(i - 1) / 2]) < 0) {
            heap_swap(&q->buf[i], &q->buf[(i - 1) / 2]);
            i = (i - 1) / 2;
        }
    }
    }
    q->count++;
    return 0;
}

/* Put back an item taken out of order (a cancelled getter's): it goes where
 * the next get finds it first. */
static int buf_push_front(rv_queue *q, void *item)
{
    if (q->kind != RV_QUEUE_FIFO)
        return buf_push(q, item); /* LIFO: the top; PRIORITY: by order */
    if (q->count == q->cap) {
        int rc = buf_grow(q);
        if (rc)
            return rc;
    }
    q->head = (q->head - 1) & (q->cap - 1);
    q->buf[q->head] = item;
    q->count++;
    return 0;
}

static void *buf_pop(rv_queue *q)
{
    void *item;
    q->count--;
    switch (q->kind) {
    case RV_QUEUE_FIFO:
        item = q->buf[q->head];
        q->head = (q->head + 1) & (q->cap - 1);
        break;
    case RV_QUEUE_LIFO:
        item = q->buf[q->count];
        break;
    default: { /* take the root, sift the last element down */
        item = q->buf[0];
        q->buf[0] = q->buf[q->count];
        size_t i = 0;
        for (;;) {
            size_t l = 2 * i + 1, r = l + 1, m = i;
            if (l < q->count && q->cmp(q->buf[l], q->buf[m]) < 0)
                m = l;
            if (r < q->count && q->cmp(q->buf[r], q->buf[m]) < 0)
                m = r;
            if (m == i)
                break;
            heap_swap(&q->buf[i], &q->buf[m]);
            i = m;
        }
    }
    }
    return item;
}

/* ------------------------------------------------------------------------- */
/* Hand-over (guard held)                                                     */

/* A waiting getter's grant carries this instead of an item after a shutdown. */
static char shut_down_mark;
#define SHUT_DOWN ((intptr_t)&shut_down_mark)

static long slots_free(const rv_queue *q)
{
    return q->maxsize ? q->maxsize - (long)q->count - q->reserved_slots : LONG_MAX;
}

/* Reserve a slot for the first waiting putter, if there is one for it. */
static void offer_slot(rv_queue *q, rv__wnode **chain)
{
    if (!q->shutdown && slots_free(q) > 0 && rv__waitq_grant_first(&q->putters, 0, chain))
        q->reserved_slots++;
}

/* A new item: straight to the first waiting getter, else into the buffer. */
static int put_locked(rv_queue *q, void *item, rv__wnode **chain)
{
    if (rv__waitq_grant_first(&q->getters, (intptr_t)item, chain)) {
        q->reserved_slots++; /* until that getter takes it */
    } else {
        int rc = buf_push(q, item);
        if (rc)
            return rc;
    }
    q->unfinished++;
    return 0;
}

/* A getter that was handed `item` and then cancelled returns it: to the next
 * waiting getter, else to the front of the queue, into the slot the item
 * held. False only when the buffer could not grow. */
static bool give_back(rv_queue *q, void *item, rv__wnode **chain)
{
    if (rv__waitq_grant_first(&q->getters, (intptr_t)item, chain)) {
        q->reserved_slots++;
        return true;
    }
    return buf_push_front(q, item) == 0;
}

static void *get_locked(rv_queue *q, rv__wnode **chain)
{
    void *item = buf_pop(q);
    offer_slot(q, chain);
    return item;
}

/* One item less unfinished; joiners go when none is left. False when
 * nothing was unfinished. */
static bool task_done_locked(rv_queue *q, rv__wnode **chain)
{
    if (q->unfinished <= 0)
        return false;
    if (--q->unfinished == 0)
        while (rv__waitq_grant_first(&q->joiners, 0, chain))
            ;
    return true;
}

/* Unlock, then wake what the operation granted. */
static void unlock_wake(rv_queue *q, rv__wnode *chain)
{
    rv__spin_unlock(&q->guard);
    rv__waitq_wake(chain);
}

/* Who is calling: a task, or a plain thread (which may block); a worker
 * outside a task may not. */
static int caller(rv_task **self)
{
    bool on_worker;
    *self = rv__waitq_self(&on_worker);
    return on_worker && !*self ? -EDEADLK : 0;
}

static int64_t deadline_of(int64_t timeout_ns)
{
    return timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns);
}

/* ------------------------------------------------------------------------- */
/* API                                                                        */

int rv_queue_new(enum rv_queue_kind kind, long maxsize, rv_queue_cmp cmp, rv_queue **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if ((unsigned)kind > RV_QUEUE_PRIORITY || maxsize < 0 || (kind == RV_QUEUE_PRIORITY && !cmp))
        return -EINVAL;
    rv_queue *q = rv__calloc(sizeof *q);
    if (!q)
        return -ENOMEM;
    q->kind = (uint8_t)kind;
    q->maxsize = maxsize;
    q->cmp = cmp;
    *out = q;
    return 0;
}

int rv_queue_free(rv_queue *q)
{
    if (!q)
        return -EINVAL;
    rv__spin_lock(&q->guard);
    /* reserved_slots > 0: a woken getter or putter has yet to come back for
     * its item or slot. */
    bool busy = !rv__waitq_empty(&q->getters) || !rv__waitq_empty(&q->putters) ||
                !rv__waitq_empty(&q->joiners) || q->reserved_slots > 0;
    rv__spin_unlock(&q->guard);
    if (busy)
        return -EBUSY;
    if (q->buf)
        rv__free(q->buf, q->cap * sizeof *q->buf);
    rv__free(q, sizeof *q);
    return 0;
}

int rv_queue_put(rv_queue *q, void *item, int64_t timeout_ns)
{
    if (!q)
        return -EINVAL;
    rv_task *self;
    int rc = caller(&self);
    if (rc)
        return rc;
    rv__wnode *chain = NULL;
    rv__spin_lock(&q->guard);
    if (q->shutdown) {
        rv__spin_unlock(&q->guard);
        return -ESHUTDOWN;
    }
    if (slots_free(q) > 0) {
        rc = put_locked(q, item, &chain);
        unlock_wake(q, chain);
        return rc;
    }
    if (timeout_ns == 0) {
        rv__spin_unlock(&q->guard);
        return -ETIMEDOUT;
    }
    rv__wnode node;
    rv__wnode_init(&node);
    rv__waitq_push(&q->putters, &node);
    rc = rv__waitq_wait(&q->guard, &q->putters, &node, deadline_of(timeout_ns), RV_WQ_CANCELLABLE);
    if (rc != 0)
        return rc;
    if (node.value < 0)
        return (int)node.value; /* shut down while waiting */
    /* A slot was reserved for us. */
    rv__spin_lock(&q->guard);
    q->reserved_slots--;
    if (self && rv__take_cancel(self)) {
        offer_slot(q, &chain); /* pass the slot on; the item is not put */
        rc = -ECANCELED;
    } else if (q->shutdown) {
        rc = -ESHUTDOWN;
    } else {
        rc = put_locked(q, item, &chain);
    }
    unlock_wake(q, chain);
    return rc;
}

int rv_queue_get(rv_queue *q, int64_t timeout_ns, void **item)
{
    if (!q || !item)
        return -EINVAL;
    rv_task *self;
    int rc = caller(&self);
    if (rc)
        return rc;
    rv__wnode *chain = NULL;
    rv__spin_lock(&q->guard);
    if (q->count > 0) {
        *item = get_locked(q, &chain);
        unlock_wake(q, chain);
        return 0;
    }
    if (q->shutdown || timeout_ns == 0) {
        rv__spin_unlock(&q->guard);
        return q->shutdown ? -ESHUTDOWN : -ETIMEDOUT;
    }
    rv__wnode node;
    rv__wnode_init(&node);
    rv__waitq_push(&q->getters, &node);
    rc = rv__waitq_wait(&q->guard, &q->getters, &node, deadline_of(timeout_ns), RV_WQ_CANCELLABLE);
    if (rc != 0)
        return rc;
    if (node.value == SHUT_DOWN)
        return -ESHUTDOWN;
    /* An item was handed to us; its slot is reserved until now. */
    rv__spin_lock(&q->guard);
    q->reserved_slots--;
    void *got = (void *)node.value;
    if (q->immediate) {
        /* Shut down (immediately) after the item was handed to us: it is
         * dropped with the rest, as asyncio's woken getter finds the queue
         * empty. */
        void (*drop)(void *) = q->drop;
        task_done_locked(q, &chain);
        unlock_wake(q, chain);
        if (drop)
            drop(got);
        return -ESHUTDOWN;
    }
    if (self && rv__peek_cancel(self) && give_back(q, got, &chain)) {
        rv__take_cancel(self);
        rc = -ECANCELED;
    } else {
        /* Also when giving back failed for want of memory: the get then
         * completes, and the cancellation stays pending. */
        *item = got;
        offer_slot(q, &chain);
    }
    unlock_wake(q, chain);
    return rc;
}

int rv_queue_put_nowait(rv_queue *q, void *item)
{
    if (!q)
        return -EINVAL;
    rv__wnode *chain = NULL;
    int rc;
    rv__spin_lock(&q->guard);
    if (q->shutdown)
        rc = -ESHUTDOWN;
    else if (slots_free(q) <= 0)
        rc = -EAGAIN;
    else
        rc = put_locked(q, item, &chain);
    unlock_wake(q, chain);
    return rc;
}

int rv_queue_get_nowait(rv_queue *q, void **item)
{
    if (!q || !item)
        return -EINVAL;
    rv__wnode *chain = NULL;
    int rc = 0;
    rv__spin_lock(&q->guard);
    if (q->count > 0)
        *item = get_locked(q, &chain);
    else
        rc = q->shutdown ? -ESHUTDOWN : -EAGAIN;
    unlock_wake(q, chain);
    return rc;
}

/* Read a field under the guard. */
#define QUEUE_READ(q, expr)                                                                        \
    ({                                                                                             \
        rv_queue *q_ = (rv_queue *)(q);                                                            \
        rv__spin_lock(&q_->guard);                                                                 \
        long v_ = (expr);                                                                          \
        rv__spin_unlock(&q_->guard);                                                               \
        v_;                                                                                        \
    })

long rv_queue_size(const rv_queue *q) { return q ? QUEUE_READ(q, (long)q_->count) : -EINVAL; }

long rv_queue_maxsize(const rv_queue *q) { return q ? q->maxsize : -EINVAL; }

bool rv_queue_empty(const rv_queue *q) { return !q || rv_queue_size(q) == 0; }

bool rv_queue_full(const rv_queue *q)
{
    return q && q->maxsize > 0 && QUEUE_READ(q, slots_free(q_) <= 0);
}

int rv_queue_task_done(rv_queue *q)
{
    if (!q)
        return -EINVAL;
    rv__wnode *chain = NULL;
    rv__spin_lock(&q->guard);
    int rc = task_done_locked(q, &chain) ? 0 : -EINVAL;
    unlock_wake(q, chain);
    return rc;
}

int rv_queue_join(rv_queue *q)
{
    if (!q)
        return -EINVAL;
    bool on_worker;
    rv_task *self = rv__waitq_self(&on_worker);
    if (!self)
        return -EPERM;
    rv__spin_lock(&q->guard);
    if (q->unfinished == 0) {
        rv__spin_unlock(&q->guard);
        return 0;
    }
    rv__wnode node;
    rv__wnode_init(&node);
    rv__waitq_push(&q->joiners, &node);
    int rc = rv__waitq_wait(&q->guard, &q->joiners, &node, -1, RV_WQ_CANCELLABLE);
    if (rc == 0 && rv__take_cancel(self))
        rc = -ECANCELED;
    return rc;
}

int rv_queue_shutdown(rv_queue *q, bool immediate, void (*drop)(void *item))
{
    if (!q)
        return -EINVAL;
    rv__wnode *chain = NULL;
    void **dropped = NULL;
    size_t ndropped = 0, cap = 0, head = 0;
    uint8_t kind = q->kind;
    rv__spin_lock(&q->guard);
    q->shutdown = true;
    if (immediate && !q->immediate) {
        q->immediate = true;
        q->drop = drop;
    }
    if (immediate && q->count) {
        /* Take the whole buffer; the items are handed to `drop` after the
         * guard is released (user code never runs under it). */
        dropped = q->buf;
        ndropped = q->count;
        cap = q->cap;
        head = q->head;
        q->buf = NULL;
        q->cap = q->count = q->head = 0;
        q->unfinished = q->unfinished > (long)ndropped ? q->unfinished - (long)ndropped : 0;
        if (q->unfinished == 0)
            while (rv__waitq_grant_first(&q->joiners, 0, &chain))
                ;
    }
    while (rv__waitq_grant_first(&q->putters, -ESHUTDOWN, &chain))
        ;
    /* Getters wait only when every item left is promised to others; none
     * can come now. */
    while (rv__waitq_grant_first(&q->getters, SHUT_DOWN, &chain))
        ;
    unlock_wake(q, chain);
    if (dropped) {
        for (size_t i = 0; drop && i < ndropped; i++)
            drop(kind == RV_QUEUE_FIFO ? dropped[(head + i) & (cap - 1)] : dropped[i]);
        rv__free(dropped, cap * sizeof *dropped);
    }
    return 0;
}
