/* executor/task.c - tasks: spawn, run, suspension points, cancellation.
 *
 * A task is one allocation: its future (first member), its job node, its
 * fiber context and bookkeeping. It gets a stack only when it first runs.
 *
 * Scheduling state (`sched`), the protocol that prevents lost wakeups:
 *
 *   IDLE --wake--> QUEUED --worker pops--> RUNNING --suspends--> IDLE
 *                                            |  ^
 *                                      wake  v  | suspends: requeue
 *                                          NOTIFIED
 *
 * A wake CASes IDLE->QUEUED and enqueues the task (exactly one enqueue per
 * QUEUED), or RUNNING->NOTIFIED if the task is still running; a wake in any
 * other state is absorbed. After a task switches back to the scheduler, the
 * worker CASes RUNNING->IDLE; failing that, it was NOTIFIED and is requeued.
 * So a wake that races with the task going to sleep is never lost, and a task
 * is never in two queues or on two workers at once.
 *
 * Wakes may be spurious: every suspension point re-checks its own condition
 * (future done, timer expired, cancellation requested) in a loop.
 *
 * Cancellation follows asyncio: rv_task_cancel counts the request, records it
 * in `must_cancel` and wakes the task; the suspension point the task is in (or
 * reaches next) consumes it. In rv_await the request is passed on to the
 * awaited future; if that future can still be cancelled, the request is spent
 * and the task goes on waiting for the future to finish. A task cancelled
 * before its first run ends cancelled without running; one that returns with
 * a request pending ends cancelled.
 *
 * Registry: a task is put on the task list of the worker where it first
 * suspends (tasks that finish without suspending never need to be found by a
 * shutdown sweep). Shutdown sets `closing` before sweeping the lists; a task
 * that registers after the sweep sees `closing` and cancels itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor/alloc.h"
#include "executor/internal.h"
#include "executor/task_internal.h"

static _Atomic uint64_t next_task_id = 1;
#define RV_ID_BLOCK 1024

/* Counters are written by their own worker only: a plain load and a release
 * store (the release pairs with rv__live_tasks' acquire loads). */
static void bump(_Atomic uint64_t *c)
{
    rv__atomic_store_release(c, rv__atomic_load_relaxed(c) + 1);
}

uint64_t rv__live_tasks(rv_runtime *rt)
{
    /* Ended counts first: a task counted as ended was counted as spawned
     * before (its spawn happens-before its end through the queues), so reading
     * spawned afterwards never under-counts. */
    uint64_t ended = rv__atomic_load_acquire(&rt->remote_finished);
    for (unsigned i = 0; i < rt->nworkers; i++)
        ended += rv__atomic_load_acquire(&rt->workers[i].finished);
    rv__fence_seq_cst();
    uint64_t spawned = rv__atomic_load_acquire(&rt->remote_spawned);
    for (unsigned i = 0; i < rt->nworkers; i++)
        spawned += rv__atomic_load_acquire(&rt->workers[i].spawned);
    return spawned > ended ? spawned - ended : 0;
}

static void count_ended(rv_runtime *rt, rv__worker *w)
{
    if (w)
        bump(&w->finished);
    else
        rv__atomic_fetch_add_release(&rt->remote_finished, 1);
    if (rv__atomic_load_acquire(&rt->closing) && rv__live_tasks(rt) == 0) {
        rv__atomic_store_seq_cst(&rt->all_done, 1);
        rv__futex_wake_all(&rt->all_done);
    }
}

/* Names are never freed before the task: a reader on another thread may hold
 * the old one. Renames chain the previous block. */
typedef struct rv__name {
    struct rv__name *prev;
    size_t size;
    char text[];
} rv__name;

static rv__name *name_of_text(char *text) { return (rv__name *)(text - offsetof(rv__name, text)); }

static char *name_new(const char *text, rv__name *prev)
{
    size_t len = strlen(text);
    rv__name *n = rv__alloc(sizeof *n + len + 1);
    if (!n)
        return NULL;
    n->prev = prev;
    n->size = sizeof *n + len + 1;
    memcpy(n->text, text, len + 1);
    return n->text;
}

static void names_free(char *text)
{
    rv__name *n = text ? name_of_text(text) : NULL;
    while (n) {
        rv__name *prev = n->prev;
        rv__free(n, n->size);
        n = prev;
    }
}

/* ------------------------------------------------------------------------- */
/* Task-local storage keys                                                    */

static _Atomic int next_local_key;
static void (*local_dtors[RV_TASK_LOCAL_KEYS])(void *);

int rv_local_key_create(rv_local_key *key, void (*dtor)(void *value))
{
    if (!key)
        return -EINVAL;
    int k = rv__atomic_fetch_add_relaxed(&next_local_key, 1);
    if (k >= RV_TASK_LOCAL_KEYS) {
        rv__atomic_fetch_sub_relaxed(&next_local_key, 1);
        return -EAGAIN;
    }
    local_dtors[k] = dtor;
    *key = k;
    return 0;
}

static bool key_valid(rv_local_key key)
{
    return key >= 0 && key < rv__atomic_load_relaxed(&next_local_key);
}

void *rv_local_get(rv_local_key key)
{
    rv_task *t = rv_current_task();
    if (!t || !key_valid(key) || !t->locals)
        return NULL;
    return t->locals[key];
}

int rv_local_set(rv_local_key key, void *value)
{
    rv_task *t = rv_current_task();
    if (!t)
        return -EPERM;
    if (!key_valid(key))
        return -EINVAL;
    if (!t->locals) {
        t->locals = rv__calloc(sizeof(void *) * RV_TASK_LOCAL_KEYS);
        if (!t->locals)
            return -ENOMEM;
    }
    t->locals[key] = value;
    return 0;
}

/* Run destructors for values left by the task (in the task, before it ends). */
static void locals_run_dtors(rv_task *t)
{
    if (!t->locals)
        return;
    for (int k = 0; k < RV_TASK_LOCAL_KEYS; k++) {
        void *v = t->locals[k];
        t->locals[k] = NULL;
        if (v && local_dtors[k])
            local_dtors[k](v);
    }
}

/* ------------------------------------------------------------------------- */
/* Spawn                                                                      */

static size_t page_round(size_t n)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    return (n + ps - 1) & ~(ps - 1);
}

int rv_spawn(rv_runtime *rt, rv_task_fn fn, void *arg, const rv_spawn_opts *opts, rv_task **out)
{
    return rv__spawn(rt, fn, arg, opts, NULL, NULL, out);
}

int rv__spawn(rv_runtime *rt, rv_task_fn fn, void *arg, const rv_spawn_opts *opts,
              void (*on_end)(rv_task *t, void *arg), void *on_end_arg, rv_task **out)
{
    if (out)
        *out = NULL;
    rv__worker *w = rv__tls_worker();
    if (!rt)
        rt = w ? w->rt : NULL;
    if (!rt || !fn)
        return -EINVAL;
    if (opts && (opts->size == 0 || opts->size > sizeof(rv_spawn_opts)))
        return -EINVAL;

    /* A spawn racing with the start of shutdown may still get in; its task
     * then ends cancelled without running (first run, or teardown's drain). */
    if (rv__atomic_load_acquire(&rt->closing))
        return -ESHUTDOWN;
    bool local = w && w->rt == rt;
    rv_task *t = rv__obj_alloc(RV_OBJ_TASK, sizeof *t);
    if (!t)
        return -ENOMEM;
    memset((char *)t + sizeof t->fut, 0, sizeof *t - sizeof t->fut);
    rv__future_init(&t->fut, rt, true);
    if (opts && opts->name) {
        char *name = name_new(opts->name, NULL);
        if (!name) {
            rv__obj_free(RV_OBJ_TASK, t, sizeof *t);
            return -ENOMEM;
        }
        rv__atomic_store_relaxed(&t->name, name);
    }
    t->fn = fn;
    t->arg = arg;
    t->on_end = on_end;
    t->on_end_arg = on_end_arg;
    if (local) {
        if (w->next_id == w->id_limit) {
            w->next_id = rv__atomic_fetch_add_relaxed(&next_task_id, RV_ID_BLOCK);
            w->id_limit = w->next_id + RV_ID_BLOCK;
        }
        t->id = w->next_id++;
        bump(&w->spawned);
    } else {
        t->id = rv__atomic_fetch_add_relaxed(&next_task_id, 1);
        /* release: pairs with rv__live_tasks' acquire (see there). */
        rv__atomic_fetch_add_release(&rt->remote_spawned, 1);
    }
    t->job.kind = RV_JOB_TASK;
    t->stack_size = rt->stack_size;
    if (opts && opts->stack_size) {
        size_t s = page_round(opts->stack_size);
        t->stack_size = s < 16384 ? 16384 : s;
    }
    rv__atomic_store_relaxed(&t->sched, RV_SCHED_QUEUED);
    if (out) {
        rv__atomic_store_relaxed(&t->fut.refs, 2); /* the runtime's and the caller's */
        *out = t;
    }
    if (opts && opts->pinned) {
        t->pinned = true;
        if (w && w->rt == rt)
            t->pin = w;
        else
            t->pin = &rt->workers[rv__atomic_fetch_add_relaxed(&rt->next_worker, 1) % rt->nworkers];
        rv__schedule_pinned(t->pin, &t->job);
    } else {
        rv__schedule(rt, &t->job);
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Running                                                                    */

static __attribute__((noreturn)) void task_entry(void *arg)
{
    rv__fiber_entered();
    rv_task *t = arg;
    void *value = NULL;
    int rc = t->fn(t->arg, &value);
    locals_run_dtors(t);
    t->exit_code = rc;
    t->exit_value = value;
    /* Re-read the worker: the task may have migrated since it started. */
    rv__worker *w = rv__tls_worker();
    w->switch_reason = RV_SWITCH_EXIT;
    rv__fiber_exit(&t->fiber, &w->sched_fiber);
}

static void stack_overflowed(rv_task *t)
{
    fprintf(stderr, "ravel: stack of task %llu '%s' overflowed (canary trampled); aborting\n",
            (unsigned long long)t->id, rv_task_name(t));
    abort();
}

static char *take_cancel_msg(rv_task *t)
{
    rv__future_lock(&t->fut);
    char *m = t->cancel_msg;
    t->cancel_msg = NULL;
    rv__future_unlock(&t->fut);
    return m;
}

/* The task is over (ran to the end, or never ran): settle its future and let
 * the runtime's reference go. Scheduler context. */
static void finish(rv__worker *w, rv_task *t, int rc, void *value)
{
    rv_runtime *rt = t->fut.rt;
    if (t->stack) {
        if (t->check_canary && !rv__stack_canary_ok(t->stack))
            stack_overflowed(t);
        rv__fiber_destroy(&t->fiber);
        rv__stack_put(w, t->stack);
        t->stack = NULL;
    }
    if (t->registered)
        rv__registry_remove(t);
    rv__atomic_store_release(&t->sched, RV_SCHED_DONE);

    /* Fire-and-forget: if the runtime holds the only reference, no one can
     * start to wait (that takes a reference), and if no callback was
     * registered while others held one, the outcome has no reader: skip
     * the completion and free. acquire: pairs with the release decrement of
     * the last other holder, so its registrations are visible in `head`. */
    if (rv__atomic_load_acquire(&t->fut.refs) == 1 && !t->fut.head && !t->on_end) {
        count_ended(rt, w);
        rv__task_free(t);
        return;
    }

    /* Stop counting it as live before anyone can see it done, so a joiner
     * that reads the counters next sees it gone. */
    count_ended(rt, w);
    if (rv__take_cancel(t) || rc == -ECANCELED) {
        rv__future_complete(&t->fut, RV_FUT_CANCELLED, NULL, 0, take_cancel_msg(t));
    } else if (rc < 0) {
        char *msg = NULL;
        if (t->error_msg && t->error_code_msg == rc) {
            msg = t->error_msg;
            t->error_msg = NULL;
        }
        rv__future_complete(&t->fut, RV_FUT_ERROR, NULL, rc, msg);
    } else {
        rv__future_complete(&t->fut, RV_FUT_RESULT, value, 0, NULL);
    }
    if (t->on_end)
        t->on_end(t, t->on_end_arg);

    rv_future_release(&t->fut);
}

void rv__task_run(rv__worker *w, rv_task *t)
{
    if (!t->started) {
        if (rv__atomic_load_acquire(&w->rt->closing) || rv__atomic_load_acquire(&t->must_cancel)) {
            /* Cancelled before its first step: the body never runs. */
            rv__atomic_store_relaxed(&t->must_cancel, 1);
            finish(w, t, -ECANCELED, NULL);
            return;
        }
        t->stack = rv__stack_get(w, t->stack_size);
        if (!t->stack) {
            t->error_msg = rv__strdup("no memory for the task's stack");
            t->error_code_msg = -ENOMEM;
            finish(w, t, -ENOMEM, NULL);
            return;
        }
        rv__fiber_init(&t->fiber, t->stack->lo, t->stack->size, task_entry, t);
        t->check_canary = t->stack->guard == RV_GUARD_NONE;
        t->started = true;
    }
    rv__atomic_store_relaxed(&t->sched, RV_SCHED_RUNNING);
    w->current = t;
    /* relaxed: a hint for Lock spinners (primitives/sync.c), nothing more. */
    rv__atomic_store_relaxed(&w->running, t);
    /* The scheduler never migrates, so its own errno address is stable. */
    *w->errno_at = t->saved_errno;
    rv__fiber_switch(&w->sched_fiber, &t->fiber);
    t->saved_errno = *w->errno_at;
    w->current = NULL;
    rv__atomic_store_relaxed(&w->running, NULL);
    if (t->check_canary && !rv__stack_canary_ok(t->stack))
        stack_overflowed(t);

    switch (w->switch_reason) {
    case RV_SWITCH_EXIT:
        finish(w, t, t->exit_code, t->exit_value);
        return;
    case RV_SWITCH_YIELD:
        rv__atomic_store_relaxed(&t->sched, RV_SCHED_QUEUED);
        if (t->pinned)
            rv__schedule_pinned(t->pin, &t->job); /* never the stealable queue */
        else
            rv__schedule_yielded(w, &t->job);
        return;
    case RV_SWITCH_PARK: {
        uint8_t expected = RV_SCHED_RUNNING;
        /* acq_rel: release publishes the fiber's saved context and everything
         * the task wrote to whoever wakes it next (their CAS IDLE->QUEUED is
         * acquire); acquire on failure pairs with the waker's NOTIFIED CAS. */
        if (rv__atomic_cas_acq_rel(&t->sched, &expected, RV_SCHED_IDLE))
            return;
        /* Woken while it was going to sleep: run it again. */
        rv__atomic_store_relaxed(&t->sched, RV_SCHED_QUEUED);
        if (t->pinned)
            rv__schedule_pinned(t->pin, &t->job);
        else
            rv__schedule_yielded(w, &t->job);
        return;
    }
    }
}

void rv__task_wake(rv_task *t)
{
    uint8_t s = rv__atomic_load_acquire(&t->sched);
    for (;;) {
        if (s == RV_SCHED_IDLE) {
            /* acq_rel: acquire pairs with the release CAS RUNNING->IDLE by
             * which the task's worker parked it; release hands our writes
             * (the reason for the wake) to the worker that runs it. */
            if (rv__atomic_cas_acq_rel(&t->sched, &s, RV_SCHED_QUEUED)) {
                if (t->pinned)
                    rv__schedule_pinned(t->pin, &t->job);
                else
                    rv__schedule(t->fut.rt, &t->job);
                return;
            }
        } else if (s == RV_SCHED_RUNNING) {
            if (rv__atomic_cas_acq_rel(&t->sched, &s, RV_SCHED_NOTIFIED))
                return;
        } else {
            return; /* queued, already notified, or done: the wake is absorbed */
        }
    }
}

void rv__task_free(rv_task *t)
{
    rv__future_fini(&t->fut);
    names_free(rv__atomic_load_relaxed(&t->name));
    rv__free_str(t->cancel_msg);
    rv__free_str(t->error_msg);
    if (t->locals)
        rv__free(t->locals, sizeof(void *) * RV_TASK_LOCAL_KEYS);
    rv__obj_free(RV_OBJ_TASK, t, sizeof *t);
}

void rv__task_abandon(rv__worker *w, rv_task *t)
{
    if (t->awaiting) {
        rv__future_drop_waiter(t->awaiting, t->awaiting_rec);
        t->awaiting = NULL;
    }
    if (t->wq) {
        rv__spin_lock(t->wq_lock);
        if (t->wq_node->linked)
            rv__waitq_unlink(t->wq, t->wq_node);
        rv__spin_unlock(t->wq_lock);
        t->wq = NULL;
    }
    if (t->timer)
        rv__task_timer_disarm(t->timer); /* its fiber will never do it */
    if (t->stack) {
        rv__fiber_destroy(&t->fiber);
        rv__stack_put(w, t->stack);
        t->stack = NULL;
    }
    t->registered = false;
    rv__atomic_store_release(&t->sched, RV_SCHED_DONE);
    rv__future_abandon(&t->fut);
    count_ended(t->fut.rt, NULL);
    rv_future_release(&t->fut);
}

/* ------------------------------------------------------------------------- */
/* Registry                                                                   */

void rv__registry_add(rv__worker *w, rv_task *t)
{
    rv__spin_lock(&w->tasks_lock);
    t->home = w;
    t->list_prev = NULL;
    t->list_next = w->tasks;
    if (w->tasks)
        w->tasks->list_prev = t;
    w->tasks = t;
    t->registered = true;
    rv__spin_unlock(&w->tasks_lock);
}

void rv__registry_remove(rv_task *t)
{
    rv__worker *home = t->home;
    rv__spin_lock(&home->tasks_lock);
    if (t->list_prev)
        t->list_prev->list_next = t->list_next;
    else
        home->tasks = t->list_next;
    if (t->list_next)
        t->list_next->list_prev = t->list_prev;
    t->list_prev = t->list_next = NULL;
    t->registered = false;
    rv__spin_unlock(&home->tasks_lock);
}

int rv_all_tasks(rv_runtime *rt, void (*visit)(rv_task *t, void *arg), void *arg)
{
    if (!rt || !visit)
        return -EINVAL;
    int visited = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        /* Take references under the lock, visit outside it, so a visitor may
         * call back into ravel (even end tasks) without deadlocking. The
         * array is allocated outside the lock; if the list grew meanwhile,
         * count again. */
        rv_task **refs = NULL;
        size_t n = 0, k = 0;
        for (;;) {
            rv__spin_lock(&w->tasks_lock);
            size_t now = 0;
            for (rv_task *t = w->tasks; t; t = t->list_next)
                now++;
            if (now <= n) {
                for (rv_task *t = w->tasks; t; t = t->list_next)
                    refs[k++] = rv_task_ref(t);
                rv__spin_unlock(&w->tasks_lock);
                break;
            }
            rv__spin_unlock(&w->tasks_lock);
            rv__free(refs, n * sizeof *refs);
            n = now + now / 4 + 8;
            refs = rv__alloc(n * sizeof *refs);
            if (!refs)
                return -ENOMEM;
        }
        for (size_t j = 0; j < k; j++) {
            visit(refs[j], arg);
            rv_task_release(refs[j]);
            visited++;
        }
        rv__free(refs, n * sizeof *refs);
    }
    return visited;
}

/* ------------------------------------------------------------------------- */
/* Public task API                                                            */

rv_future *rv_task_future(rv_task *t) { return t ? &t->fut : NULL; }

rv_task *rv_task_ref(rv_task *t)
{
    if (t)
        rv_future_ref(&t->fut);
    return t;
}

int rv_task_release(rv_task *t) { return t ? rv_future_release(&t->fut) : -EINVAL; }

rv_task *rv_current_task(void)
{
    rv__worker *w = rv__tls_worker();
    return w ? w->current : NULL;
}

uint64_t rv_task_id(const rv_task *t) { return t ? t->id : 0; }

const char *rv_task_name(const rv_task *t)
{
    if (!t)
        return NULL;
    rv_task *mt = (rv_task *)t;
    /* acquire: pairs with the release CAS that installs a name. */
    char *name = rv__atomic_load_acquire(&mt->name);
    if (name)
        return name;
    char buf[32];
    snprintf(buf, sizeof buf, "Task-%llu", (unsigned long long)t->id);
    char *fresh = name_new(buf, NULL);
    if (!fresh)
        return "Task-?";
    char *expected = NULL;
    if (rv__atomic_cas_acq_rel(&mt->name, &expected, fresh))
        return fresh;
    names_free(fresh);
    return expected;
}

int rv_task_set_name(rv_task *t, const char *name)
{
    if (!t || !name)
        return -EINVAL;
    if (t != rv_current_task() && t->started)
        return -EPERM;
    char *old = rv__atomic_load_acquire(&t->name);
    char *fresh = name_new(name, old ? name_of_text(old) : NULL);
    if (!fresh)
        return -ENOMEM;
    /* release: the text is complete before readers can see the pointer. */
    rv__atomic_store_release(&t->name, fresh);
    return 0;
}

int rv_task_cancel(rv_task *t, const char *msg)
{
    if (!t)
        return -EINVAL;
    if (rv_future_done(&t->fut) || rv__atomic_load_acquire(&t->sched) == RV_SCHED_DONE)
        return -EALREADY;
    char *copy = NULL;
    if (msg && !(copy = rv__strdup(msg)))
        return -ENOMEM;
    rv__future_lock(&t->fut);
    char *old = t->cancel_msg;
    t->cancel_msg = copy;
    rv__future_unlock(&t->fut);
    rv__free_str(old);
    rv__atomic_fetch_add_relaxed(&t->cancels, 1);
    /* release: the message and count are visible to the task when it sees
     * the request (its acquire exchange of must_cancel). */
    rv__atomic_store_release(&t->must_cancel, 1);
    rv__task_wake(t);
    return 0;
}

int rv_task_cancelling(const rv_task *t)
{
    return t ? rv__atomic_load_relaxed(&((rv_task *)t)->cancels) : -EINVAL;
}

int rv_task_uncancel(rv_task *t)
{
    if (!t)
        return -EINVAL;
    int c = rv__atomic_load_relaxed(&t->cancels);
    while (c > 0 && !rv__atomic_cas_relaxed(&t->cancels, &c, c - 1))
        ;
    if (c <= 1) {
        /* Back to zero: withdraw a request not delivered yet (3.13). */
        rv__atomic_store_release(&t->must_cancel, 0);
        return 0;
    }
    return c - 1;
}

int rv_task_error(int code, const char *msg)
{
    rv_task *t = rv_current_task();
    if (!t || code >= 0)
        return code;
    char *copy = msg ? rv__strdup(msg) : NULL;
    rv__free_str(t->error_msg);
    t->error_msg = copy;
    t->error_code_msg = code;
    return code;
}

int rv_yield(void)
{
    rv__worker *w = rv__tls_worker();
    rv_task *t = w ? w->current : NULL;
    if (!t)
        return -EPERM;
    rv__suspend(w, t, RV_SWITCH_YIELD);
    if (rv__take_cancel(t))
        return -ECANCELED;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Task timers                                                                */

struct rv__task_timer {
    rv__timer timer;
    _Atomic uint32_t refs; /* the wheel's and the task's */
    _Atomic uint32_t expired;
    rv_task *task; /* referenced while the timer lives */
};
_Static_assert(sizeof(struct rv__task_timer) <= RV_TASK_TIMER_SIZE, "RV_TASK_TIMER_SIZE");

static void task_timer_unref(rv__task_timer *tt)
{
    /* acq_rel: the last of the wheel and the task frees it. */
    if (rv__atomic_fetch_sub_acq_rel(&tt->refs, 1) == 1) {
        rv_task_release(tt->task);
        rv__obj_free(RV_OBJ_TASK_TIMER, tt, RV_TASK_TIMER_SIZE);
    }
}

static void task_timer_fire(rv__timer *timer)
{
    rv__task_timer *tt = (rv__task_timer *)timer;
    uint8_t expected = RV_TIMER_PENDING;
    /* acq_rel: decides between firing and a concurrent disarm. */
    if (rv__atomic_cas_acq_rel(&timer->state, &expected, RV_TIMER_FIRED)) {
        /* release: the task that sees expired also sees why it was woken. */
        rv__atomic_store_release(&tt->expired, 1);
        rv__task_wake(tt->task);
    }
    task_timer_unref(tt);
}

static void task_timer_drop(rv__timer *timer) { task_timer_unref((rv__task_timer *)timer); }

rv__task_timer *rv__task_timer_arm(rv_task *t, int64_t deadline_ns)
{
    rv__worker *w = rv__tls_worker();
    rv__task_timer *tt = rv__obj_alloc(RV_OBJ_TASK_TIMER, RV_TASK_TIMER_SIZE);
    if (!tt)
        return NULL;
    memset(&tt->timer, 0, sizeof tt->timer);
    tt->timer.when = rv__deadline_tick(w->rt, deadline_ns);
    tt->timer.fire = task_timer_fire;
    tt->timer.drop = task_timer_drop;
    rv__atomic_store_relaxed(&tt->timer.state, RV_TIMER_PENDING);
    rv__atomic_store_relaxed(&tt->timer.owner, w);
    rv__atomic_store_relaxed(&tt->refs, 2);
    rv__atomic_store_relaxed(&tt->expired, 0);
    tt->task = rv_task_ref(t);
    rv__wheel_insert(&w->wheel, &tt->timer);
    t->timer = tt;
    return tt;
}

bool rv__task_timer_expired(rv__task_timer *tt) { return rv__atomic_load_acquire(&tt->expired); }

void rv__task_timer_disarm(rv__task_timer *tt)
{
    tt->task->timer = NULL;
    uint8_t expected = RV_TIMER_PENDING;
    if (rv__atomic_cas_acq_rel(&tt->timer.state, &expected, RV_TIMER_CANCELLED)) {
        rv__worker *w = rv__tls_worker();
        /* On the owning worker, unlink at once; elsewhere the owner drops it
         * when its slot comes up. */
        if (w && rv__atomic_load_relaxed(&tt->timer.owner) == w && tt->timer.linked) {
            rv__wheel_remove(&w->wheel, &tt->timer);
            task_timer_unref(tt); /* the wheel's reference */
        }
    }
    task_timer_unref(tt); /* the task's reference */
}

int rv_sleep(int64_t ns)
{
    rv__worker *w = rv__tls_worker();
    rv_task *t = w ? w->current : NULL;
    if (!t)
        return -EPERM;
    if (ns <= 0)
        return rv_yield();
    rv__task_timer *tt = rv__task_timer_arm(t, rv__deadline_after(ns));
    if (!tt)
        return -ENOMEM;
    int rc = 0;
    for (;;) {
        if (rv__take_cancel(t)) {
            rc = -ECANCELED;
            break;
        }
        if (rv__task_timer_expired(tt))
            break;
        rv__suspend(rv__tls_worker(), t, RV_SWITCH_PARK);
    }
    rv__task_timer_disarm(tt);
    return rc;
}
