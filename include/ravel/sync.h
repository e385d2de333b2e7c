/* ravel/sync.h - task-level synchronisation: Lock, Event, Condition,
 * Semaphore, BoundedSemaphore, Barrier, Queue. Included by ravel.h; do not
 * include it on its own.
 *
 * asyncio's meaning, made safe for tasks that run in parallel on different
 * workers: every object here may be used by tasks on any worker at once.
 *
 * Common rules:
 * - Waiters are served first come, first served, and a newcomer never takes
 *   what a waiter was promised ("no barging past live waiters").
 * - A waiter that was woken (handed the lock, a unit, a notification) and is
 *   cancelled before it runs passes what it was given on to the next waiter,
 *   and returns -ECANCELED (asyncio).
 * - Calls that may suspend do so only in a task; from a plain thread they
 *   return -EPERM, except the queue's put/get, which block a plain thread
 *   (and return -EDEADLK on a worker thread outside a task).
 * - Calls that never suspend (release, set, clear, notify, put_nowait,
 *   get_nowait, ...) are safe from any thread, including plain threads and
 *   callbacks.
 * - Lock, Event, Condition, Semaphore and Barrier are embedded in the user's
 *   own structs: their storage is published with its size; initialise with
 *   *_init and tear down with *_destroy, which returns -EBUSY while tasks wait.
 */
#ifndef RAVEL_SYNC_H
#define RAVEL_SYNC_H

#ifndef RAVEL_H
#error "include <ravel.h>, not <ravel/sync.h>"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define RV_LOCK_SIZE 64
#define RV_EVENT_SIZE 64
#define RV_COND_SIZE 128
#define RV_SEM_SIZE 64
#define RV_BARRIER_SIZE 64

typedef struct rv_lock {
    _Alignas(16) unsigned char opaque[RV_LOCK_SIZE];
} rv_lock;
typedef struct rv_event {
    _Alignas(16) unsigned char opaque[RV_EVENT_SIZE];
} rv_event;
typedef struct rv_cond {
    _Alignas(16) unsigned char opaque[RV_COND_SIZE];
} rv_cond;
typedef struct rv_sem {
    _Alignas(16) unsigned char opaque[RV_SEM_SIZE];
} rv_sem;
typedef struct rv_barrier {
    _Alignas(16) unsigned char opaque[RV_BARRIER_SIZE];
} rv_barrier;

/* ------------------------------------------------------------------------- */
/* Lock (asyncio.Lock)                                                        */

/* Initialise an unlocked lock. -EINVAL for NULL. */
RV_EXTERN int rv_lock_init(rv_lock *l);
/* -EBUSY while tasks wait on it, else 0. The lock may be held. */
RV_EXTERN int rv_lock_destroy(rv_lock *l);
/* May suspend. Take the lock, waiting behind earlier waiters. 0 when taken;
 * -ECANCELED when the task is cancelled while waiting (the lock is not held;
 * if it had just been handed over, it is passed on). -EPERM outside a task.
 * Not reentrant: a task that already holds it waits forever (as asyncio). */
RV_EXTERN int rv_lock_acquire(rv_lock *l);
/* Take the lock only if it is free and nobody waits: 0, else -EAGAIN. Any
 * thread (the owner is then no task). */
RV_EXTERN int rv_lock_try_acquire(rv_lock *l);
/* Release: the first waiter, if any, gets the lock. -EPERM when the lock is
 * not held (asyncio's RuntimeError). Any thread, as asyncio: it does not have
 * to be the task that acquired it. */
RV_EXTERN int rv_lock_release(rv_lock *l);
/* True while held. */
RV_EXTERN bool rv_lock_locked(const rv_lock *l);

/* ------------------------------------------------------------------------- */
/* Event (asyncio.Event)                                                      */

RV_EXTERN int rv_event_init(rv_event *e);
RV_EXTERN int rv_event_destroy(rv_event *e);
/* Set the flag and wake every waiter. Setting a set event does nothing. */
RV_EXTERN int rv_event_set(rv_event *e);
/* Clear the flag. Tasks woken by an earlier set still return 0. */
RV_EXTERN int rv_event_clear(rv_event *e);
RV_EXTERN bool rv_event_is_set(const rv_event *e);
/* May suspend. Wait until the flag is set: 0 at once when it already is;
 * -ECANCELED when cancelled while waiting. */
RV_EXTERN int rv_event_wait(rv_event *e);

/* ------------------------------------------------------------------------- */
/* Condition (asyncio.Condition)                                              */

/* Initialise a condition over `lock`, or over a lock of its own when `lock`
 * is NULL (rv_cond_lock gives it). A given lock must outlive the condition. */
RV_EXTERN int rv_cond_init(rv_cond *c, rv_lock *lock);
RV_EXTERN int rv_cond_destroy(rv_cond *c);
/* The condition's lock. */
RV_EXTERN rv_lock *rv_cond_lock(rv_cond *c);
/* May suspend. Release the lock, wait for a notification, re-acquire the lock
 * and return 0. The caller must hold the lock (-EPERM otherwise: held by
 * another task, or not at all). A cancelled wait still re-acquires the lock
 * before it returns -ECANCELED; a waiter notified and then cancelled passes
 * its notification to the next waiter. */
RV_EXTERN int rv_cond_wait(rv_cond *c);
/* May suspend. Wait until pred(arg) is true (checked first, and after each
 * notification, with the lock held). 0 when true, else a wait error. */
RV_EXTERN int rv_cond_wait_for(rv_cond *c, bool (*pred)(void *arg), void *arg);
/* Wake up to n waiters (n >= 1; -EINVAL otherwise). The caller must hold the
 * lock (-EPERM). Returns how many were woken. */
RV_EXTERN int rv_cond_notify(rv_cond *c, int n);
/* Wake every waiter; same rules. */
RV_EXTERN int rv_cond_notify_all(rv_cond *c);

/* ------------------------------------------------------------------------- */
/* Semaphore and BoundedSemaphore                                             */

/* A semaphore with `value` units (>= 0; -EINVAL otherwise). */
RV_EXTERN int rv_sem_init(rv_sem *s, int value);
/* A bounded semaphore: releasing beyond the initial value is -EINVAL. */
RV_EXTERN int rv_sem_init_bounded(rv_sem *s, int value);
RV_EXTERN int rv_sem_destroy(rv_sem *s);
/* May suspend. Take one unit, waiting FIFO. 0, or -ECANCELED (a unit just
 * handed over is passed on). */
RV_EXTERN int rv_sem_acquire(rv_sem *s);
/* Take a unit only if one is free and nobody waits: 0, else -EAGAIN. */
RV_EXTERN int rv_sem_try_acquire(rv_sem *s);
/* Give one unit back (to the first waiter if any). Any thread. -EINVAL when
 * a bounded semaphore would exceed its initial value. */
RV_EXTERN int rv_sem_release(rv_sem *s);
/* True when an acquire would wait (asyncio Semaphore.locked()). */
RV_EXTERN bool rv_sem_locked(const rv_sem *s);
/* Units free now. */
RV_EXTERN int rv_sem_value(const rv_sem *s);

/* ------------------------------------------------------------------------- */
/* Barrier (asyncio.Barrier)                                                  */

/* A barrier for `parties` tasks (>= 1; -EINVAL otherwise). */
RV_EXTERN int rv_barrier_init(rv_barrier *b, int parties);
RV_EXTERN int rv_barrier_destroy(rv_barrier *b);
/* May suspend. Wait until `parties` tasks have arrived. Returns the arrival
 * index, 0 .. parties-1, distinct for each task of one round, by order of
 * arrival among those that stayed (the last to arrive gets parties-1 and does
 * not suspend). -EPIPE when the barrier is
 * broken (abort) or reset while waiting (asyncio BrokenBarrierError);
 * -ECANCELED when cancelled while waiting: the task leaves the round, which
 * then needs one more arrival (as asyncio). A task whose round completed
 * gets its index even if cancelled just after; the request stays pending. */
RV_EXTERN int rv_barrier_wait(rv_barrier *b);
/* Back to the empty state; tasks waiting now get -EPIPE. Any thread. */
RV_EXTERN int rv_barrier_reset(rv_barrier *b);
/* Break the barrier: waiting and later waits get -EPIPE until reset. */
RV_EXTERN int rv_barrier_abort(rv_barrier *b);
RV_EXTERN bool rv_barrier_broken(const rv_barrier *b);
/* Tasks waiting in the current round. */
RV_EXTERN int rv_barrier_n_waiting(const rv_barrier *b);
RV_EXTERN int rv_barrier_parties(const rv_barrier *b);

/* ------------------------------------------------------------------------- */
/* Queues (asyncio.Queue, LifoQueue, PriorityQueue)                           */

typedef struct rv_queue rv_queue;

enum rv_queue_kind {
    RV_QUEUE_FIFO,
    RV_QUEUE_LIFO,
    RV_QUEUE_PRIORITY, /* smallest first by `cmp`; equal items in no set order */
};

/* Negative, zero or positive as a orders before, with or after b. */
typedef int (*rv_queue_cmp)(const void *a, const void *b);

/* A queue of `void *` items. maxsize 0: unbounded. `cmp` is required for
 * RV_QUEUE_PRIORITY and ignored otherwise. -EINVAL for a bad kind, a
 * negative maxsize or a missing cmp; -ENOMEM. */
RV_EXTERN int rv_queue_new(enum rv_queue_kind kind, long maxsize, rv_queue_cmp cmp,
                           rv_queue **out);
/* Free the queue. -EBUSY while anyone waits on it, including a waiter that
 * was woken and has not run yet. Items still inside are not touched (they
 * belong to the caller). */
RV_EXTERN int rv_queue_free(rv_queue *q);

/* May suspend (a task) or block (a plain thread). Put `item`, waiting while
 * the queue is full, up to `timeout_ns` (negative: no limit). 0; -ETIMEDOUT;
 * -ECANCELED (the item was not put); -ESHUTDOWN after rv_queue_shutdown;
 * -EDEADLK on a worker thread outside a task. */
RV_EXTERN int rv_queue_put(rv_queue *q, void *item, int64_t timeout_ns);
/* May suspend or block, like put: take the next item into *item, waiting
 * while the queue is empty. -ESHUTDOWN once the queue is shut down and
 * empty (at once after an immediate shutdown). */
RV_EXTERN int rv_queue_get(rv_queue *q, int64_t timeout_ns, void **item);
/* Put without waiting: -EAGAIN when full (asyncio QueueFull). Any thread. */
RV_EXTERN int rv_queue_put_nowait(rv_queue *q, void *item);
/* Get without waiting: -EAGAIN when empty (QueueEmpty), -ESHUTDOWN when
 * shut down and empty. Any thread. */
RV_EXTERN int rv_queue_get_nowait(rv_queue *q, void **item);
/* Items in the queue now (an instant's view when others are busy). */
RV_EXTERN long rv_queue_size(const rv_queue *q);
RV_EXTERN long rv_queue_maxsize(const rv_queue *q);
RV_EXTERN bool rv_queue_empty(const rv_queue *q);
/* No slot free for a newcomer's put (slots promised to woken putters count
 * as taken). Always false for an unbounded queue. */
RV_EXTERN bool rv_queue_full(const rv_queue *q);
/* One item taken earlier is processed. -EINVAL when called more often than
 * items were put (asyncio ValueError). */
RV_EXTERN int rv_queue_task_done(rv_queue *q);
/* May suspend. Wait until every item put has been marked done. */
RV_EXTERN int rv_queue_join(rv_queue *q);
/* Shut down (asyncio 3.13): later puts and the puts waiting now return
 * -ESHUTDOWN; gets drain what is left, then return -ESHUTDOWN. `immediate`
 * also empties the queue at once (each dropped item counts as done for
 * join), and waiting gets return -ESHUTDOWN, including a getter that was
 * handed an item and has not run yet (the item is dropped too). When `drop`
 * is not NULL it is called on each dropped item. Any thread. */
RV_EXTERN int rv_queue_shutdown(rv_queue *q, bool immediate, void (*drop)(void *item));

#ifdef __cplusplus
}
#endif

#endif
