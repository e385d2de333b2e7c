/* executor/future.c - thread-safe futures, await, and blocking waits.
 *
 * State: PENDING -> RESULT | ERROR | CANCELLED, once. A completer takes the
 * future's bit lock, checks that it is still pending, writes result/error/
 * message, detaches the waiter list and publishes the final state with a
 * release store, all in one critical section: readers that see a final state
 * (acquire) therefore see the fields, and a waiter is either on the list the
 * completer detaches or sees the final state when it takes the lock.
 *
 * Waiters, in registration order:
 * - task waiters (rv_await) live on the awaiting fiber's stack and are woken
 *   through the scheduler (rv__task_wake), so the task runs later, never
 *   inside set_*.
 * - thread waiters (rv_future_wait from a plain thread) live on that thread's
 *   stack and are released through a futex.
 * - callback waiters (add_done_callback) are allocated; on completion they
 *   become one job that runs them in order on a worker.
 * A stack waiter may leave only after the completer is finished with it: the
 * completer sets `fired` (release) after its last access, and a waiter that
 * finds its list detached waits for that flag.
 *
 * The bit lock only guards list surgery (O(1) except remove_done_callback's
 * walk); no wakeup, allocation or callback happens while it is held.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "executor/alloc.h"
#include "executor/internal.h"
#include "executor/task_internal.h"

static inline bool is_final(uint8_t s) { return s >= RV_FUT_RESULT; }

/* How long a plain thread in rv_future_wait spins before it sleeps. */
#ifndef RV_WAIT_SPIN_NS
#define RV_WAIT_SPIN_NS 20000
#endif

void rv__future_init(rv_future *f, rv_runtime *rt, bool is_task)
{
    rv__atomic_store_relaxed(&f->refs, 1);
    rv__atomic_store_relaxed(&f->state, RV_FUT_PENDING);
    rv__atomic_store_relaxed(&f->lock, 0);
    f->is_task = is_task;
    f->error = 0;
    f->result = NULL;
    f->msg = NULL;
    f->head = f->tail = NULL;
    f->rt = rt;
}

void rv__future_lock(rv_future *f) { rv__spin_lock(&f->lock); }

void rv__future_unlock(rv_future *f) { rv__spin_unlock(&f->lock); }

static void list_append(rv_future *f, rv__waiter *w)
{
    w->next = NULL;
    w->prev = f->tail;
    if (f->tail)
        f->tail->next = w;
    else
        f->head = w;
    f->tail = w;
    w->linked = true;
}

static void list_unlink(rv_future *f, rv__waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        f->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        f->tail = w->prev;
    w->next = w->prev = NULL;
    w->linked = false;
}

void rv__futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Wait while *word == 0, up to `deadline` (rv_now clock; negative: forever).
 * Returns false on timeout. */
bool rv__futex_wait_set(_Atomic uint32_t *word, int64_t deadline)
{
    /* acquire: pairs with the release store of `fired` by the completer. */
    while (!rv__atomic_load_acquire(word)) {
        struct timespec ts, *tsp = NULL;
        if (deadline >= 0) {
            int64_t left = deadline - rv_now();
            if (left <= 0)
                return false;
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, 0, tsp, NULL, 0);
    }
    return true;
}

/* Schedule a chain of callback waiters (already in order) as one job. */
static void schedule_callbacks(rv_future *f, rv__waiter *first)
{
    rv_future_ref(f);
    first->u.cb.future = f;
    rv__schedule(f->rt, &first->job);
}

static void dispatch(rv_future *f, uint8_t state, rv__waiter *w)
{
    rv__waiter *cb_first = NULL, *cb_last = NULL;
    while (w) {
        /* Read next first: once `fired` is set a stack waiter may be gone. */
        rv__waiter *next = w->next;
        switch (w->kind) {
        case RV_WAIT_TASK:
            rv__task_wake(w->u.task);
            /* release: our last access to *w is done; pairs with the acquire
             * load in leave_waiter. */
            rv__atomic_store_release(&w->fired, 1);
            break;
        case RV_WAIT_THREAD:
            rv__atomic_store_release(&w->fired, 1);
            rv__futex_wake_all(&w->fired);
            break;
        case RV_WAIT_HOOK:
            w->u.hook.fn(w, f, state);
            /* release: as for RV_WAIT_TASK, pairs with leave_waiter. */
            rv__atomic_store_release(&w->fired, 1);
            break;
        case RV_WAIT_CALLBACK:
            w->next = NULL;
            if (cb_last)
                cb_last->next = w;
            else
                cb_first = w;
            cb_last = w;
            break;
        }
        w = next;
    }
    if (cb_first)
        schedule_callbacks(f, cb_first);
}

int rv__future_complete(rv_future *f, int state, void *result, int error, char *msg)
{
    /* One lock round trip decides the race between completers, publishes
     * the outcome and detaches the waiters. */
    rv__future_lock(f);
    if (rv__atomic_load_relaxed(&f->state) != RV_FUT_PENDING) {
        rv__future_unlock(f);
        rv__free_str(msg);
        return -EALREADY;
    }
    f->result = result;
    f->error = error;
    f->msg = msg;
    rv__waiter *list = f->head;
    f->head = f->tail = NULL;
    for (rv__waiter *w = list; w; w = w->next)
        w->linked = false;
    /* release: publishes result/error/msg to every acquire load of state. */
    rv__atomic_store_release(&f->state, (uint8_t)state);
    rv__future_unlock(f);
    dispatch(f, (uint8_t)state, list);
    return 0;
}

void rv__future_fini(rv_future *f)
{
    rv__free_str(f->msg);
    f->msg = NULL;
    /* Callback registrations that never fired (the future was never done). */
    rv__waiter *w = f->head;
    while (w) {
        rv__waiter *next = w->next;
        if (w->kind == RV_WAIT_CALLBACK)
            rv__free(w, sizeof *w);
        w = next;
    }
    f->head = f->tail = NULL;
}

void rv__future_abandon(rv_future *f)
{
    rv__future_lock(f);
    if (rv__atomic_load_relaxed(&f->state) != RV_FUT_PENDING) {
        rv__future_unlock(f);
        return;
    }
    rv__waiter *w = f->head;
    f->head = f->tail = NULL;
    rv__atomic_store_release(&f->state, RV_FUT_CANCELLED);
    rv__future_unlock(f);
    /* Release plain threads; drop callbacks (the runtime is going away, and a
     * callback that cannot be scheduled is never called); task waiters are
     * being abandoned too. */
    while (w) {
        rv__waiter *next = w->next;
        w->linked = false;
        if (w->kind == RV_WAIT_THREAD) {
            rv__atomic_store_release(&w->fired, 1);
            rv__futex_wake_all(&w->fired);
        } else if (w->kind == RV_WAIT_CALLBACK) {
            rv__free(w, sizeof *w);
        } else {
            rv__atomic_store_release(&w->fired, 1);
        }
        w = next;
    }
}

void rv__future_run_callbacks(rv__job *job)
{
    rv__waiter *w = (rv__waiter *)job;
    rv_future *f = w->u.cb.future;
    while (w) {
        rv__waiter *next = w->next;
        w->u.cb.fn(f, w->u.cb.arg);
        rv__free(w, sizeof *w);
        w = next;
    }
    rv_future_release(f);
}

void rv__future_drop_callbacks(rv__job *job)
{
    rv__waiter *w = (rv__waiter *)job;
    rv_future *f = w->u.cb.future;
    while (w) {
        rv__waiter *next = w->next;
        rv__free(w, sizeof *w);
        w = next;
    }
    rv_future_release(f);
}

/* ------------------------------------------------------------------------- */
/* Public API                                                                 */

int rv_future_new(rv_runtime *rt, rv_future **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!rt) {
        rv__worker *w = rv__tls_worker();
        if (!w)
            return -EINVAL;
        rt = w->rt;
    }
    rv_future *f = rv__obj_alloc(RV_OBJ_FUTURE, sizeof *f);
    if (!f)
        return -ENOMEM;
    rv__future_init(f, rt, false);
    *out = f;
    return 0;
}

rv_future *rv_future_ref(rv_future *f)
{
    if (f)
        rv__atomic_fetch_add_relaxed(&f->refs, 1); /* the caller already holds one */
    return f;
}

int rv_future_release(rv_future *f)
{
    if (!f)
        return -EINVAL;
    /* acq_rel: the last releaser must see every other holder's writes. */
    uint32_t prev = rv__atomic_fetch_sub_acq_rel(&f->refs, 1);
    if (prev == 0)
        __builtin_trap(); /* over-release: use after free in the making */
    if (prev == 1) {
        if (f->is_task) {
            rv__task_free((rv_task *)f);
        } else {
            rv__future_fini(f);
            rv__obj_free(RV_OBJ_FUTURE, f, sizeof *f);
        }
    }
    return 0;
}

int rv_future_set_result(rv_future *f, void *result)
{
    if (!f)
        return -EINVAL;
    if (f->is_task)
        return -EPERM; /* a task's outcome is its function's return */
    return rv__future_complete(f, RV_FUT_RESULT, result, 0, NULL);
}

int rv_future_set_exception(rv_future *f, int code, const char *msg)
{
    if (!f || code >= 0 || code == -ECANCELED)
        return -EINVAL;
    if (f->is_task)
        return -EPERM;
    if (rv_future_done(f))
        return -EALREADY;
    char *copy = NULL;
    if (msg && !(copy = rv__strdup(msg)))
        return -ENOMEM;
    return rv__future_complete(f, RV_FUT_ERROR, NULL, code, copy);
}

int rv_future_cancel(rv_future *f, const char *msg)
{
    if (!f)
        return -EINVAL;
    if (f->is_task)
        return rv_task_cancel((rv_task *)f, msg);
    if (rv_future_done(f))
        return -EALREADY;
    char *copy = NULL;
    if (msg && !(copy = rv__strdup(msg)))
        return -ENOMEM;
    return rv__future_complete(f, RV_FUT_CANCELLED, NULL, 0, copy);
}

bool rv_future_done(const rv_future *f)
{
    /* acquire: pairs with the release store of the final state. */
    return f && is_final(rv__atomic_load_acquire(&((rv_future *)f)->state));
}

bool rv_future_cancelled(const rv_future *f)
{
    return f && rv__atomic_load_acquire(&((rv_future *)f)->state) == RV_FUT_CANCELLED;
}

static int read_result(rv_future *f, void **result)
{
    switch (rv__atomic_load_acquire(&f->state)) {
    case RV_FUT_RESULT:
        if (result)
            *result = f->result;
        return 0;
    case RV_FUT_ERROR:
        return f->error;
    case RV_FUT_CANCELLED:
        return -ECANCELED;
    default:
        return -EAGAIN;
    }
}

int rv_future_result(rv_future *f, void **result)
{
    if (!f)
        return -EINVAL;
    return read_result(f, result);
}

int rv_future_exception(rv_future *f)
{
    if (!f)
        return -EINVAL;
    return read_result(f, NULL);
}

const char *rv_future_message(const rv_future *f)
{
    if (!f || !is_final(rv__atomic_load_acquire(&((rv_future *)f)->state)))
        return NULL;
    return f->msg;
}

int rv_future_add_done_callback(rv_future *f, rv_future_cb cb, void *arg)
{
    if (!f || !cb)
        return -EINVAL;
    rv__waiter *w = rv__calloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    w->job.kind = RV_JOB_FUTURE_CBS;
    w->kind = RV_WAIT_CALLBACK;
    w->u.cb.fn = cb;
    w->u.cb.arg = arg;
    rv__future_lock(f);
    if (!is_final(rv__atomic_load_relaxed(&f->state))) {
        list_append(f, w);
        rv__future_unlock(f);
        return 0;
    }
    rv__future_unlock(f);
    /* Already done: scheduled at once, still never run synchronously. */
    schedule_callbacks(f, w);
    return 0;
}

int rv_future_remove_done_callback(rv_future *f, rv_future_cb cb, void *arg)
{
    if (!f || !cb)
        return -EINVAL;
    rv__waiter *removed = NULL;
    int count = 0;
    rv__future_lock(f);
    for (rv__waiter *w = f->head, *next; w; w = next) {
        next = w->next;
        if (w->kind == RV_WAIT_CALLBACK && w->u.cb.fn == cb && w->u.cb.arg == arg) {
            list_unlink(f, w);
            w->next = removed;
            removed = w;
            count++;
        }
    }
    rv__future_unlock(f);
    while (removed) {
        rv__waiter *next = removed->next;
        rv__free(removed, sizeof *removed);
        removed = next;
    }
    return count;
}

/* ------------------------------------------------------------------------- */
/* Waiting                                                                    */

/* Take a stack waiter off f's list, or, if the completer already detached it,
 * wait until the completer has finished touching it. */
bool rv__future_drop_waiter(rv_future *f, rv__waiter *w)
{
    rv__future_lock(f);
    bool was_linked = w->linked;
    if (was_linked)
        list_unlink(f, w);
    rv__future_unlock(f);
    return was_linked;
}

static void leave_waiter(rv_future *f, rv__waiter *w)
{
    /* The common case: the completer already released us. acquire: pairs
     * with its release store of fired, after its last access to *w. */
    if (rv__atomic_load_acquire(&w->fired))
        return;
    if (rv__future_drop_waiter(f, w))
        return;
    /* acquire: pairs with the completer's release store of fired. The window
     * is a few instructions long unless the completer was preempted. */
    for (unsigned spins = 0; !rv__atomic_load_acquire(&w->fired); spins++) {
        if (spins < 128)
            rv__cpu_relax();
        else
            sched_yield();
    }
}

/* Register a stack waiter; false if f was already done. */
static bool enter_waiter(rv_future *f, rv__waiter *w, uint8_t kind)
{
    w->kind = kind;
    rv__atomic_store_relaxed(&w->fired, 0);
    rv__future_lock(f);
    if (is_final(rv__atomic_load_relaxed(&f->state))) {
        rv__future_unlock(f);
        return false;
    }
    list_append(f, w);
    rv__future_unlock(f);
    return true;
}

bool rv__future_watch(rv_future *f, rv__waiter *w, rv__waiter_hook fn, void *arg)
{
    memset(w, 0, sizeof *w);
    w->u.hook.fn = fn;
    w->u.hook.arg = arg;
    return enter_waiter(f, w, RV_WAIT_HOOK);
}

void rv__future_unwatch(rv_future *f, rv__waiter *w) { leave_waiter(f, w); }

/* Task side of await and of rv_future_wait. deadline < 0: none. Returns
 * -ETIMEDOUT on timeout, else what read_result returns. `cancel_inner`:
 * a delivered cancellation is passed on to f (rv_await semantics). */
static int task_wait(rv_task *t, rv_future *f, int64_t deadline, void **result)
{
    if (rv_future_done(f))
        return read_result(f, result);
    rv__waiter w;
    memset(&w, 0, sizeof w);
    w.u.task = t;
    if (!enter_waiter(f, &w, RV_WAIT_TASK))
        return read_result(f, result);

    rv__task_timer *timer = NULL;
    if (deadline >= 0) {
        timer = rv__task_timer_arm(t, deadline);
        if (!timer) {
            leave_waiter(f, &w);
            return -ENOMEM;
        }
    }
    /* So that a runtime torn down under a straggler can unlink `w`. No
     * reference is taken: the caller of rv_await holds one while it waits. */
    t->awaiting = f;
    t->awaiting_rec = &w;
    bool timed_out = false;
    for (;;) {
        if (rv_future_done(f))
            break;
        if (rv__take_cancel(t)) {
            /* Deliver the request by cancelling what we await (asyncio). If
             * that is already done, the request stays for us to report. */
            rv__future_lock(&t->fut);
            char *msg = rv__strdup(t->cancel_msg);
            rv__future_unlock(&t->fut);
            int rc = rv_future_cancel(f, msg); /* a task future: rv_task_cancel */
            rv__free_str(msg);
            if (rc != 0) {
                rv__atomic_store_release(&t->must_cancel, 1);
                break;
            }
            continue;
        }
        if (timer && rv__task_timer_expired(timer)) {
            timed_out = true;
            break;
        }
        rv__suspend(rv__tls_worker(), t, RV_SWITCH_PARK);
    }
    if (timer)
        rv__task_timer_disarm(timer);
    leave_waiter(f, &w);
    t->awaiting = NULL;
    if (rv__take_cancel(t))
        return -ECANCELED;
    if (timed_out && !rv_future_done(f))
        return -ETIMEDOUT;
    return read_result(f, result);
}

int rv_await(rv_future *f, void **result)
{
    if (!f)
        return -EINVAL;
    rv__worker *w = rv__tls_worker();
    rv_task *t = w ? w->current : NULL;
    if (!t || &t->fut == f)
        return -EPERM;
    return task_wait(t, f, -1, result);
}

int rv_future_wait(rv_future *f, int64_t timeout_ns, void **result)
{
    if (!f)
        return -EINVAL;
    rv__worker *wk = rv__tls_worker();
    if (wk) {
        rv_task *t = wk->current;
        if (!t)
            return -EDEADLK; /* a worker outside a task would stall its queue */
        if (&t->fut == f)
            return -EPERM;
        return task_wait(t, f, timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns), result);
    }
    if (rv_future_done(f))
        return read_result(f, result);
    if (timeout_ns == 0)
        return -ETIMEDOUT;
    rv__waiter w;
    memset(&w, 0, sizeof w);
    if (!enter_waiter(f, &w, RV_WAIT_THREAD))
        return read_result(f, result);
    int64_t deadline = timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns);
    /* Spin briefly first: a task that answers at once (run_coroutine_
     * threadsafe round trips) completes within microseconds, well under
     * the cost of a futex sleep and wake. acquire: as rv__futex_wait_set. */
    int64_t spin_until = rv_now() + RV_WAIT_SPIN_NS;
    while (!rv__atomic_load_acquire(&w.fired) && rv_now() < spin_until)
        for (int i = 0; i < 16; i++)
            rv__cpu_relax();
    if (!rv__futex_wait_set(&w.fired, deadline)) {
        if (rv__future_drop_waiter(f, &w))
            return -ETIMEDOUT;
        rv__futex_wait_set(&w.fired, -1); /* completer is mid-dispatch: brief */
    }
    return read_result(f, result);
}
