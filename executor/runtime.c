/* executor/runtime.c - runtime lifecycle: configuration, start, shutdown, free.
 *
 * Shutdown steps (rv_runtime_shutdown):
 *   1. `closing` is set (seq_cst): rv_spawn and rv_call_* now return
 *      -ESHUTDOWN; tasks that have not started end cancelled without running.
 *   2. Every registered task (one that has suspended at least once) is
 *      cancelled; a task that registers later cancels itself (worker.c).
 *   3. Wait until the live task count reaches zero or the deadline passes;
 *      stragglers are listed on stderr.
 *   4. `stopping` is set and every worker is woken; the workers leave their
 *      loops and are joined.
 * rv_runtime_free then finishes whatever is left (stragglers' futures end
 * cancelled, queued callbacks are dropped uncalled), frees the stacks, the
 * queues and the runtime.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "executor/alloc.h"
#include "executor/blocking.h"
#include "executor/internal.h"

#define RV_DEFAULT_STACK (64 * 1024)
#define RV_SANITIZER_STACK (256 * 1024)
#define RV_MIN_STACK (16 * 1024)

int64_t rv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void rv_config_init(rv_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
}

static long env_long(const char *name, long fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end;
    long n = strtol(v, &end, 10);
    return *end ? fallback : n;
}

static size_t default_stack(void)
{
#if defined(RV_ASAN) || defined(RV_TSAN)
    return RV_SANITIZER_STACK;
#else
    return RV_DEFAULT_STACK;
#endif
}

static void free_workers(rv_runtime *rt)
{
    if (!rt->workers)
        return;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        if (w->last_polls)
            rv__free(w->last_polls, sizeof(uint64_t) * rt->nworkers);
        if (w->poller.epfd >= 0)
            rv__poller_fini(&w->poller);
    }
    rv__free_aligned(rt->workers, sizeof(rv__worker) * rt->nworkers, 128);
    rt->workers = NULL;
}

static void free_runtime(rv_runtime *rt)
{
    rv__process_reap_all(rt);
    rv__io_free_all(rt);
    if (rt->pool)
        rv__pool_close(rt->pool);
    free_workers(rt);
    if (rt->sleepers)
        rv__free((void *)rt->sleepers, sizeof(uint64_t) * rt->sleeper_words);
    rv__stacks_fini(rt);
    rv__free_aligned(rt, sizeof *rt, 128);
}

static void stop_workers(rv_runtime *rt)
{
    rv__atomic_store_seq_cst(&rt->stopping, 1);
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rt->workers[i].thread_started)
            rv__worker_unpark(&rt->workers[i]);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        if (rt->workers[i].thread_started) {
            pthread_join(rt->workers[i].thread, NULL);
            rt->workers[i].thread_started = false;
        }
    }
}

int rv_runtime_new(rv_runtime **out, const rv_config *cfg)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (cfg && (cfg->size == 0 || cfg->size > sizeof(rv_config)))
        return -EINVAL;
    rv_config c;
    rv_config_init(&c);
    if (cfg)
        memcpy(&c, cfg, cfg->size);

    long workers = c.workers ? (long)c.workers : env_long("RAVEL_WORKERS", 0);
    if (workers <= 0)
        workers = sysconf(_SC_NPROCESSORS_ONLN);
    if (workers <= 0)
        workers = 1;
    if (workers > 4096)
        return -EINVAL;

    /* The runtime and the workers hold 128-byte-aligned fields. */
    rv_runtime *rt = rv__calloc_aligned(sizeof *rt, 128);
    if (!rt)
        return -ENOMEM;
    rt->nworkers = (unsigned)workers;
    rt->debug = c.debug || env_long("RAVEL_DEBUG", 0) > 0;
    size_t stack = c.stack_size ? c.stack_size : default_stack();
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    stack = (stack + ps - 1) & ~(ps - 1);
    rt->stack_size = stack < RV_MIN_STACK ? RV_MIN_STACK : stack;
    rt->start_ns = rv_now();
    rv__mpsc_init(&rt->inject);
    for (int k = 0; k < RV_OBJ_KINDS; k++)
        rv__mpsc_init(&rt->depots[k]);

    int rc = rv__stacks_init(rt);
    if (rc) {
        rv__free_aligned(rt, sizeof *rt, 128);
        return rc;
    }
    rt->pool = rv__pool_new(c.blocking_threads_max ? c.blocking_threads_max : 512,
                            c.blocking_keepalive_ns > 0 ? c.blocking_keepalive_ns
                                                        : 10 * INT64_C(1000000000));
    if (!rt->pool) {
        free_runtime(rt);
        return -ENOMEM;
    }
    rt->sleeper_words = (rt->nworkers + 63) / 64;
    rt->sleepers = rv__calloc(sizeof(uint64_t) * rt->sleeper_words);
    rt->workers = rt->sleepers ? rv__calloc_aligned(sizeof(rv__worker) * rt->nworkers, 128) : NULL;
    if (!rt->workers) {
        free_runtime(rt);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        w->poller.epfd = w->poller.wakefd = w->poller.iofd = -1;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        w->rt = rt;
        w->index = i;
        w->rng = 0x9E3779B97F4A7C15ULL * (i + 1);
        rv__deque_init(&w->runq, 0);
        rv__mpsc_init(&w->inbox);
        rv__wheel_init(&w->wheel);
        w->last_polls = rv__calloc(sizeof(uint64_t) * rt->nworkers);
        if (!w->last_polls) {
            free_runtime(rt);
            return -ENOMEM;
        }
        rc = rv__poller_init(&w->poller);
        if (rc) {
            free_runtime(rt);
            return rc;
        }
    }

    /* Workers take no asynchronous signals: those belong to the application's
     * threads (and to the signal awaiting of a later issue). */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        rc = -pthread_create(&w->thread, NULL, rv__worker_main, w);
        if (rc)
            break;
        w->thread_started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        stop_workers(rt);
        free_runtime(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

static void report_stragglers(rv_runtime *rt)
{
    uint64_t live = rv__live_tasks(rt);
    fprintf(stderr, "ravel: shutdown deadline passed with %llu task(s) still running:\n",
            (unsigned long long)live);
    uint64_t listed = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        rv__spin_lock(&w->tasks_lock);
        for (rv_task *t = w->tasks; t; t = t->list_next, listed++)
            fprintf(stderr, "  task %llu '%s'\n", (unsigned long long)t->id, rv_task_name(t));
        rv__spin_unlock(&w->tasks_lock);
    }
    if (live > listed)
        fprintf(stderr, "  and %llu that have not suspended yet\n",
                (unsigned long long)(live - listed));
}

static void cancel_for_shutdown(rv_task *t, void *arg)
{
    (void)arg;
    rv_task_cancel(t, "runtime shutdown");
}

int rv_runtime_shutdown(rv_runtime *rt, int64_t timeout_ns)
{
    if (!rt)
        return -EINVAL;
    rv__worker *self = rv__tls_worker();
    if (self && self->rt == rt)
        return -EPERM;
    /* A spawn that read closing before this exchange may still queue a task
     * after the live count below reached zero; that task is abandoned (ends
     * cancelled) by rv_runtime_free's drain, so nothing leaks. */
    if (rv__atomic_exchange_seq_cst(&rt->closing, 1))
        return -EALREADY;
    int64_t deadline = timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns);

    rv_all_tasks(rt, cancel_for_shutdown, NULL);

    int rc = 0;
    while (rv__live_tasks(rt) > 0) {
        /* Bounded waits: the last task's wake of all_done is not a strict
         * handshake with this loop (count_ended's release store and acquire
         * read can miss closing), so a missed wake costs at most 10 ms. */
        int64_t step = rv_now() + 10000000;
        if (deadline >= 0 && deadline < step)
            step = deadline;
        rv__futex_wait_set(&rt->all_done, step);
        if (deadline >= 0 && rv_now() >= deadline && rv__live_tasks(rt) > 0) {
            report_stragglers(rt);
            rc = -ETIMEDOUT;
            break;
        }
    }
    /* Blocking calls still running (their tasks are gone, cancelled): wait
     * for them up to the same deadline. They may keep running past it; the
     * pool outlives the runtime until they return. */
    if (rc == 0 && !rv__pool_wait_idle(rt->pool, deadline)) {
        fprintf(stderr, "ravel: shutdown deadline passed with blocking calls still running:\n");
        rv__pool_report(rt->pool);
        rc = -ETIMEDOUT;
    }
    stop_workers(rt);
    /* release: the last access to rt by this call; a concurrent
     * rv_runtime_free may free it as soon as it sees this. */
    rv__atomic_store_release(&rt->shut_down, 1);
    return rc;
}

/* Dispose of a job left in a queue after the workers stopped. */
static void drop_job(rv__worker *w, rv__job *job)
{
    switch (job->kind) {
    case RV_JOB_TASK: {
        /* Queued and registered at once (woken just before the stop): take
         * it off the list so it is abandoned exactly once. */
        rv_task *t = rv__task_of_job(job);
        if (t->registered)
            rv__registry_remove(t);
        rv__task_abandon(w, t);
        break;
    }
    case RV_JOB_CALLBACK:
    case RV_JOB_TIMER_ARM:
        rv__handle_release_internal((rv_handle *)job);
        break;
    case RV_JOB_FUTURE_CBS:
        rv__future_drop_callbacks(job);
        break;
    case RV_JOB_BATCH: {
        rv__batch *b = (rv__batch *)job;
        for (uint32_t i = 0; i < b->count; i++)
            drop_job(w, b->jobs[i]);
        rv__free(b, sizeof *b);
        break;
    }
    }
}

static void drain(rv_runtime *rt)
{
    rv__worker *w0 = &rt->workers[0];
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        rv__job *j = rv__atomic_exchange_acq_rel(&w->lifo, NULL);
        if (j)
            drop_job(w, j);
        while ((j = rv__deque_pop(&w->runq)))
            drop_job(w, j);
        while ((j = w->pinned_head)) {
            w->pinned_head = (rv__job *)rv__atomic_load_relaxed(&j->node.next);
            drop_job(w, j);
        }
        w->pinned_tail = NULL;
        while ((j = (rv__job *)rv__mpsc_pop(&w->inbox)))
            drop_job(w, j);
    }
    rv__job *j;
    while ((j = (rv__job *)rv__mpsc_pop(&rt->inject)))
        drop_job(w0, j);
}

int rv_runtime_free(rv_runtime *rt)
{
    if (!rt)
        return -EINVAL;
    rv__worker *self = rv__tls_worker();
    if (self && self->rt == rt)
        return -EPERM;
    if (rv_runtime_shutdown(rt, -1) == -EALREADY) {
        /* Another thread's shutdown may still be running: it owns the
         * workers until it returns, so wait for it rather than stop them
         * here. acquire: pairs with its final release store. */
        while (!rv__atomic_load_acquire(&rt->shut_down)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }

    /* Whatever the queues hold, then the stragglers still parked. Abandoning
     * wakes nobody (waiters of an abandoned future are abandoned too), so
     * one pass of each suffices. */
    drain(rt);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        while (w->tasks) {
            rv_task *t = w->tasks;
            rv__registry_remove(t);
            rv__task_abandon(w, t);
        }
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *w = &rt->workers[i];
        rv__wheel_clear(&w->wheel);
        w->free_stacks = w->cold_stacks = NULL; /* the memory belongs to the slabs */
    }
    rv__obj_caches_fini(rt);
    free_runtime(rt);
    return 0;
}

int rv_run(const rv_config *cfg, rv_task_fn main_fn, void *arg, void **result)
{
    if (!main_fn)
        return -EINVAL;
    if (rv__tls_worker())
        return -EPERM;
    rv_runtime *rt;
    int rc = rv_runtime_new(&rt, cfg);
    if (rc)
        return rc;
    rv_task *main_task;
    rc = rv_spawn(rt, main_fn, arg, &(rv_spawn_opts){.size = sizeof(rv_spawn_opts), .name = "main"},
                  &main_task);
    if (rc) {
        rv_runtime_free(rt);
        return rc;
    }
    void *value = NULL;
    rc = rv_future_wait(rv_task_future(main_task), -1, &value);
    if (result)
        *result = value;
    rv_task_release(main_task);
    rv_runtime_shutdown(rt, -1);
    rv_runtime_free(rt);
    return rc;
}

int rv_runtime_stats_get(rv_runtime *rt, rv_runtime_stats *out)
{
    if (!rt || !out || out->size == 0 || out->size > sizeof *out)
        return -EINVAL;
    rv_runtime_stats s;
    memset(&s, 0, sizeof s);
    s.size = out->size;
    s.workers = rt->nworkers;
    s.live_tasks = rv__live_tasks(rt);
    int64_t inject = rv__mpsc_len(&rt->inject);
    s.inject_depth = inject > 0 ? (uint64_t)inject : 0;
    rv__pool_counts(rt->pool, &s.blocking_threads, &s.blocking_idle, &s.blocking_queue_depth);
    memcpy(out, &s, out->size);
    return 0;
}

int rv_worker_stats_get(rv_runtime *rt, unsigned index, rv_worker_stats *out)
{
    if (!rt || !out || index >= rt->nworkers)
        return -EINVAL;
    rv__counters *c = &rt->workers[index].stats;
    out->tasks_polled = rv__atomic_load_relaxed(&c->tasks_polled);
    out->steals = rv__atomic_load_relaxed(&c->steals);
    out->stolen_tasks = rv__atomic_load_relaxed(&c->stolen_tasks);
    out->steal_attempts = rv__atomic_load_relaxed(&c->steal_attempts);
    out->overflows = rv__atomic_load_relaxed(&c->overflows);
    out->parks = rv__atomic_load_relaxed(&c->parks);
    out->unparks = rv__atomic_load_relaxed(&c->unparks);
    out->io_events = rv__atomic_load_relaxed(&c->io_events);
    out->timers_fired = rv__atomic_load_relaxed(&c->timers_fired);
    out->busy_ns = rv__atomic_load_relaxed(&c->busy_ns);
    out->local_queue_depth = rv__deque_len(&rt->workers[index].runq);
    return 0;
}
