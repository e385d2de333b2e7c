/* executor/combine.c - gather, wait, wait_for, shield, as_completed and
 * timeout scopes.
 *
 * gather and wait watch many futures at once without a callback allocation
 * per future: the waiting task registers one hook waiter (RV_WAIT_HOOK) per
 * distinct future. A completer calls the hook on its own thread; the hook
 * counts the outcome and wakes the task, which re-checks its condition from
 * the counters (O(1) per wake, not a scan of every future).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "executor/alloc.h"
#include "executor/internal.h"
#include "executor/task_internal.h"

static rv_task *current_task(void)
{
    rv__worker *w = rv__tls_worker();
    return w ? w->current : NULL;
}

/* ------------------------------------------------------------------------- */
/* Watching a set of futures                                                  */

typedef struct watch_entry {
    rv_future *f;
    size_t first; /* index of its first appearance in the caller's array */
    bool registered;
    rv__waiter w;
} watch_entry;

typedef struct watch {
    rv_task *task;
    _Atomic size_t done;   /* distinct futures done */
    _Atomic size_t failed; /* of those, finished with an error or cancelled */
    _Atomic size_t errors; /* of those, finished with an error */
    _Atomic(rv_future *) first_failed;
    size_t n; /* distinct futures */
    watch_entry *e;
} watch;

enum watch_until { UNTIL_ALL, UNTIL_ANY, UNTIL_ERROR_OR_ALL, UNTIL_FAILURE_OR_ALL };

static void watch_note(watch *ws, rv_future *f, uint8_t state)
{
    if (state != RV_FUT_RESULT) {
        rv_future *none = NULL;
        rv__atomic_cas_relaxed(&ws->first_failed, &none, f);
        rv__atomic_fetch_add_relaxed(&ws->failed, 1);
        if (state == RV_FUT_ERROR)
            rv__atomic_fetch_add_relaxed(&ws->errors, 1);
    }
    /* release: the counts above are visible to whoever sees this one
     * (watch_holds' acquire load). */
    rv__atomic_fetch_add_release(&ws->done, 1);
}

static void watch_hook(rv__waiter *w, rv_future *f, uint8_t state)
{
    watch *ws = w->u.hook.arg;
    watch_note(ws, f, state);
    rv__task_wake(ws->task);
}

static int by_future(const void *a, const void *b)
{
    const watch_entry *x = a, *y = b;
    if (x->f != y->f)
        return x->f < y->f ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int by_first(const void *a, const void *b)
{
    const watch_entry *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* Entries for the distinct futures of fs, in order of first appearance.
 * The array has room for n entries (free it with that size). */
static watch_entry *distinct(rv_future *const fs[], size_t n, size_t *m)
{
    watch_entry *e = rv__calloc(n * sizeof *e);
    if (!e)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        e[i].f = fs[i];
        e[i].first = i;
    }
    qsort(e, n, sizeof *e, by_future);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || e[k - 1].f != e[i].f)
            e[k++] = e[i];
    qsort(e, k, sizeof *e, by_first);
    *m = k;
    return e;
}

/* Start watching each distinct future of fs for the calling task (-EPERM
 * outside a task). */
static int watch_begin(watch *ws, rv_future *const fs[], size_t n)
{
    memset(ws, 0, sizeof *ws);
    if (!(ws->task = current_task()))
        return -EPERM;
    if (!(ws->e = distinct(fs, n, &ws->n)))
        return -ENOMEM;
    for (size_t i = 0; i < ws->n; i++) {
        watch_entry *e = &ws->e[i];
        e->registered = rv__future_watch(e->f, &e->w, watch_hook, ws);
        if (!e->registered)
            watch_note(ws, e->f, rv__atomic_load_acquire(&e->f->state));
    }
    return 0;
}

static bool watch_holds(watch *ws, int until)
{
    size_t done = rv__atomic_load_acquire(&ws->done);
    if (done == ws->n)
        return true;
    switch (until) {
    case UNTIL_ANY:
        return done > 0;
    case UNTIL_ERROR_OR_ALL:
        return rv__atomic_load_relaxed(&ws->errors) > 0;
    case UNTIL_FAILURE_OR_ALL:
        return rv__atomic_load_relaxed(&ws->failed) > 0;
    default:
        return false;
    }
}

/* Park until `until` holds (0), the deadline passes (-ETIMEDOUT), or, when
 * `cancellable`, a cancellation arrives (-ECANCELED, consumed). */
static int watch_park(watch *ws, int until, int64_t deadline, bool cancellable)
{
    rv_task *t = ws->task;
    rv__task_timer *timer = NULL;
    int rc = 0;
    while (!watch_holds(ws, until)) {
        if (cancellable && rv__take_cancel(t)) {
            rc = -ECANCELED;
            break;
        }
        if (deadline >= 0 && !timer && !(timer = rv__task_timer_arm(t, deadline))) {
            rc = -ENOMEM;
            break;
        }
        if (timer && rv__task_timer_expired(timer)) {
            rc = -ETIMEDOUT;
            break;
        }
        rv__suspend(rv__tls_worker(), t, RV_SWITCH_PARK);
    }
    if (timer)
        rv__task_timer_disarm(timer);
    return rc;
}

static void watch_end(watch *ws, size_t n)
{
    for (size_t i = 0; i < ws->n; i++)
        if (ws->e[i].registered)
            rv__future_unwatch(ws->e[i].f, &ws->e[i].w);
    rv__free(ws->e, n * sizeof *ws->e);
}

static int check_futures(rv_future *const fs[], size_t n)
{
    if (!fs)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* gather                                                                     */

int rv_gather(rv_future *const fs[], size_t n, unsigned flags, void *results[], int codes[])
{
    if (n == 0)
        return 0;
    if (check_futures(fs, n) || (flags & ~RV_RETURN_EXCEPTIONS))
        return -EINVAL;
    watch ws;
    int rc = watch_begin(&ws, fs, n);
    if (rc)
        return rc;
    bool all = flags & RV_RETURN_EXCEPTIONS;
    rc = watch_park(&ws, all ? UNTIL_ALL : UNTIL_FAILURE_OR_ALL, -1, true);
    if (rc == -ECANCELED) {
        /* Cancelling the gather cancels every child; it ends once they have. */
        for (size_t i = 0; i < ws.n; i++)
            rv_future_cancel(ws.e[i].f, NULL);
        watch_park(&ws, UNTIL_ALL, -1, false);
    }
    rv_future *first_failed = rv__atomic_load_acquire(&ws.first_failed);
    watch_end(&ws, n);
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        int code = rv_future_result(fs[i], &r);
        if (results)
            results[i] = r;
        if (codes)
            codes[i] = code;
    }
    if (rc == -ECANCELED)
        return rc;
    if (!all && first_failed)
        return rv_future_exception(first_failed);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* wait                                                                       */

int rv_wait(rv_future *const fs[], size_t n, int64_t timeout_ns, enum rv_return_when return_when,
            rv_future *done[], size_t *ndone, rv_future *pending[], size_t *npending)
{
    if (ndone)
        *ndone = 0;
    if (npending)
        *npending = 0;
    if (n == 0 || check_futures(fs, n))
        return -EINVAL;
    int until;
    switch (return_when) {
    case RV_FIRST_COMPLETED:
        until = UNTIL_ANY;
        break;
    case RV_FIRST_EXCEPTION:
        until = UNTIL_ERROR_OR_ALL;
        break;
    case RV_ALL_COMPLETED:
        until = UNTIL_ALL;
        break;
    default:
        return -EINVAL;
    }
    watch ws;
    int rc = watch_begin(&ws, fs, n);
    if (rc)
        return rc;
    rc = watch_park(&ws, until, timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns), true);
    if (rc == 0 || rc == -ETIMEDOUT) {
        rc = 0;
        size_t nd = 0, np = 0;
        for (size_t i = 0; i < ws.n; i++) {
            rv_future *f = ws.e[i].f;
            if (rv_future_done(f)) {
                if (done)
                    done[nd] = f;
                nd++;
            } else {
                if (pending)
                    pending[np] = f;
                np++;
            }
        }
        if (ndone)
            *ndone = nd;
        if (npending)
            *npending = np;
    }
    watch_end(&ws, n);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* wait_for                                                                   */

int rv_wait_for(rv_future *f, int64_t timeout_ns, void **result)
{
    if (!f)
        return -EINVAL;
    rv_task *t = current_task();
    if (!t || &t->fut == f)
        return -EPERM;
    if (timeout_ns < 0)
        return rv_await(f, result);
    if (timeout_ns > 0) {
        int rc = rv_future_wait(f, timeout_ns, result);
        if (rc != -ETIMEDOUT || rv_future_done(f))
            return rc;
    } else if (rv_future_done(f)) {
        return rv_future_result(f, result);
    }
    /* Timed out: cancel f and wait until it has finished cancelling. A
     * cancellation of ours that arrives meanwhile is passed on to f by the
     * await; cancel counting tells it apart from the timeout. */
    int base = rv_task_cancelling(t);
    rv_future_cancel(f, NULL);
    int rc = rv_await(f, result);
    if (rv_task_cancelling(t) > base)
        return -ECANCELED;
    return rv_future_cancelled(f) ? -ETIMEDOUT : rc;
}

/* ------------------------------------------------------------------------- */
/* shield                                                                     */

/* Copy f's outcome to the shield (unless the shield was cancelled). */
static void shield_copy(rv_future *f, void *arg)
{
    rv_future *s = arg;
    void *r = NULL;
    int code = rv_future_result(f, &r);
    if (code == 0)
        rv_future_set_result(s, r);
    else if (code == -ECANCELED)
        rv_future_cancel(s, rv_future_message(f));
    else
        rv__future_complete(s, RV_FUT_ERROR, NULL, code, rv__strdup(rv_future_message(f)));
    rv_future_release(s);
    rv_future_release(f);
}

int rv_shield(rv_future *f, rv_future **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!f)
        return -EINVAL;
    rv_future *s;
    int rc = rv_future_new(f->rt, &s);
    if (rc)
        return rc;
    if (rv_future_done(f)) {
        shield_copy(rv_future_ref(f), rv_future_ref(s));
    } else {
        rv_future_ref(f);
        rv_future_ref(s);
        rc = rv_future_add_done_callback(f, shield_copy, s);
        if (rc) {
            rv_future_release(f);
            rv_future_release(s);
            rv_future_release(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* as_completed                                                               */

struct rv_as_completed {
    rv__spinlock lock;
    size_t n, alloc_n;
    watch_entry *e;
    size_t *order;   /* entry indexes in completion order */
    size_t nready;   /* filled by the hooks */
    size_t next;     /* handed out so far */
    rv_task *waiting; /* the task parked in next(), woken by the hooks */
    int64_t deadline;
    bool timed_out;
};

static void ac_hook(rv__waiter *w, rv_future *f, uint8_t state)
{
    rv_as_completed *it = w->u.hook.arg;
    watch_entry *e = (watch_entry *)((char *)w - offsetof(watch_entry, w));
    rv__spin_lock(&it->lock);
    it->order[it->nready++] = (size_t)(e - it->e);
    /* Woken under the lock: the task cannot leave next() (and end) before
     * it has taken the lock to clear `waiting`. */
    if (it->waiting)
        rv__task_wake(it->waiting);
    rv__spin_unlock(&it->lock);
}

int rv_as_completed_new(rv_future *const fs[], size_t n, int64_t timeout_ns,
                        rv_as_completed **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (n == 0 || check_futures(fs, n))
        return -EINVAL;
    rv_as_completed *it = rv__calloc(sizeof *it);
    size_t *order = rv__calloc(n * sizeof *order);
    watch_entry *e = it && order ? distinct(fs, n, &it->n) : NULL;
    if (!e) {
        rv__free(order, n * sizeof *order);
        rv__free(it, sizeof *it);
        return -ENOMEM;
    }
    it->e = e;
    it->order = order;
    it->alloc_n = n;
    it->deadline = timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns);
    for (size_t i = 0; i < it->n; i++) {
        rv_future_ref(e[i].f);
        e[i].registered = rv__future_watch(e[i].f, &e[i].w, ac_hook, it);
        if (!e[i].registered) {
            rv__spin_lock(&it->lock);
            it->order[it->nready++] = i;
            rv__spin_unlock(&it->lock);
        }
    }
    *out = it;
    return 0;
}

int rv_as_completed_next(rv_as_completed *it, rv_future **next)
{
    if (!it || !next)
        return -EINVAL;
    *next = NULL;
    rv_task *t = current_task();
    if (!t)
        return -EPERM;
    rv__task_timer *timer = NULL;
    int rc = 0;
    rv__spin_lock(&it->lock);
    for (;;) {
        if (it->next < it->nready) {
            *next = it->e[it->order[it->next++]].f;
            break;
        }
        if (it->next == it->n) {
            rc = -ENOENT;
            break;
        }
        if (it->timed_out || (timer && rv__task_timer_expired(timer)) ||
            (it->deadline >= 0 && rv_now() >= it->deadline)) {
            it->timed_out = true;
            rc = -ETIMEDOUT;
            break;
        }
        if (rv__take_cancel(t)) {
            rc = -ECANCELED;
            break;
        }
        if (it->deadline >= 0 && !timer) {
            rv__spin_unlock(&it->lock);
            timer = rv__task_timer_arm(t, it->deadline);
            rv__spin_lock(&it->lock);
            if (!timer) {
                rc = -ENOMEM;
                break;
            }
            continue;
        }
        it->waiting = t;
        rv__spin_unlock(&it->lock);
        rv__suspend(rv__tls_worker(), t, RV_SWITCH_PARK);
        rv__spin_lock(&it->lock);
        it->waiting = NULL;
    }
    rv__spin_unlock(&it->lock);
    if (timer)
        rv__task_timer_disarm(timer);
    return rc;
}

int rv_as_completed_free(rv_as_completed *it)
{
    if (!it)
        return -EINVAL;
    for (size_t i = 0; i < it->n; i++) {
        if (it->e[i].registered)
            rv__future_unwatch(it->e[i].f, &it->e[i].w);
        rv_future_release(it->e[i].f);
    }
    rv__free(it->e, it->alloc_n * sizeof *it->e);
    rv__free(it->order, it->alloc_n * sizeof *it->order);
    rv__free(it, sizeof *it);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Timeout scopes                                                             */

typedef struct scope_impl {
    rv_task *task;
    rv_handle *handle; /* the armed deadline, or NULL */
    int64_t when;      /* -1: none */
    int base;          /* the task's cancelling() count at enter */
    bool closed;
    _Atomic uint32_t expired;
} scope_impl;
_Static_assert(sizeof(scope_impl) <= RV_TIMEOUT_SIZE, "scope_impl outgrew rv_timeout");

#define SCOPE(s) ((scope_impl *)(void *)(s)->opaque)

/* The deadline passed: cancel the task (a callback on some worker). */
static void scope_fire(void *arg)
{
    scope_impl *s = arg;
    /* release: pairs with the acquire loads in rv_timeout_expired/exit. */
    rv__atomic_store_release(&s->expired, 1);
    rv_task_cancel(s->task, NULL);
}

static int scope_arm(scope_impl *s, int64_t when)
{
    s->when = when < 0 ? -1 : when;
    s->handle = NULL;
    if (when < 0)
        return 0;
    return rv_call_at(s->task->fut.rt, when, scope_fire, s, &s->handle);
}

/* Stop the deadline; if its callback is already running, wait for it to
 * return (the scope lives on the task's stack). */
static void scope_disarm(scope_impl *s)
{
    rv_handle *h = s->handle;
    if (!h)
        return;
    s->handle = NULL;
    if (rv_handle_cancel(h) != 0) {
        /* acquire: pairs with the release store of DONE after the callback. */
        for (unsigned spins = 0; rv__atomic_load_acquire(&h->state) == RV_HANDLE_RUNNING; spins++)
            spins < 128 ? rv__cpu_relax() : (void)sched_yield();
    }
    rv_handle_release(h);
}

int rv_timeout_enter_at(rv_timeout *scope, int64_t when_ns)
{
    if (!scope)
        return -EINVAL;
    rv_task *t = current_task();
    if (!t)
        return -EPERM;
    memset(scope, 0, sizeof *scope);
    scope_impl *s = SCOPE(scope);
    s->task = t;
    s->base = rv_task_cancelling(t);
    int rc = scope_arm(s, when_ns);
    if (rc)
        s->closed = true;
    return rc;
}

int rv_timeout_enter(rv_timeout *scope, int64_t delay_ns)
{
    return rv_timeout_enter_at(scope, delay_ns < 0 ? -1 : rv__deadline_after(delay_ns));
}

int rv_timeout_reschedule(rv_timeout *scope, int64_t when_ns)
{
    if (!scope)
        return -EINVAL;
    scope_impl *s = SCOPE(scope);
    if (s->closed || rv__atomic_load_acquire(&s->expired))
        return -EPERM;
    scope_disarm(s);
    if (rv__atomic_load_acquire(&s->expired))
        return -EPERM; /* fired while we were disarming */
    return scope_arm(s, when_ns);
}

int64_t rv_timeout_when(const rv_timeout *scope)
{
    return scope ? SCOPE(scope)->when : -1;
}

bool rv_timeout_expired(const rv_timeout *scope)
{
    return scope && rv__atomic_load_acquire(&SCOPE(scope)->expired);
}

int rv_timeout_exit(rv_timeout *scope, int rc)
{
    if (!scope)
        return -EINVAL;
    scope_impl *s = SCOPE(scope);
    if (s->closed)
        return rc;
    scope_disarm(s);
    s->closed = true;
    /* asyncio: only when no cancellation beyond ours (and those before the
     * scope) is left does the scope turn CancelledError into TimeoutError;
     * uncancel also withdraws our request if it was never delivered. */
    if (rv__atomic_load_acquire(&s->expired) && rv_task_uncancel(s->task) <= s->base &&
        rc == -ECANCELED)
        return -ETIMEDOUT;
    return rc;
}
