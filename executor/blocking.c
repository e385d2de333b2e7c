/* executor/blocking.c - the blocking pool behind rv_to_thread.
 *
 * Design. Workers must never block, so a blocking call goes to a pool of
 * plain threads. Submission is one push on an MPSC queue (lock-free); pool
 * threads take turns consuming it through the queue's non-blocking claim.
 * The calling task awaits a future that the pool thread completes, so
 * cancellation is the future's: a cancelled task cancels the future at once;
 * a pool thread skips a call whose future is already cancelled, and a call
 * that was running when it was cancelled runs to completion and its result
 * goes to the caller's `release` function.
 *
 * Threads start on demand and leave after a keep-alive. Every thread is in
 * exactly one state: running a call, searching (between calls, or looking
 * for work) or parked (idle). One searcher at a time spins on the queue for
 * a short while before parking; the others park at once. A submitter wakes
 * a parked thread, or starts one if none is parked and the cap allows, only
 * when nobody is searching; a searcher that takes a call and was the last
 * searcher does the same if calls remain queued. That is the workers'
 * throttling idea, and it keeps a promise: below the cap a call never waits
 * behind a running one (which might be waiting for it). The lost-wakeup argument is a
 * Dekker pair: a thread about to park increments `idle` then re-reads the
 * queue length; a submitter pushes then reads `searching` and `idle`; all
 * four are seq_cst, so at least one side sees the other.
 *
 * The pool outlives the runtime if it must: each thread holds a reference,
 * and the last one frees the pool, so rv_runtime_free never frees memory a
 * pool thread still uses (a thread still inside a call at that point
 * finishes it, and then leaves).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "executor/alloc.h"
#include "executor/blocking.h"
#include "executor/internal.h"

/* How long a pool thread out of work searches before it parks. */
#ifndef SEARCH_NS
#define SEARCH_NS 50000
#endif

typedef struct pool_thread pool_thread;
struct pool_thread {
    pool_thread *next, *prev;
    rv__pool *pool;
    _Atomic(rv_blocking_fn) fn; /* the call it runs now, for reports */
    _Atomic int64_t since;
};

struct rv__pool {
    rv__mpsc queue;
    RV_CACHE_ALIGNED _Atomic uint32_t searching;
    _Atomic uint32_t idle;
    _Atomic uint32_t threads;
    _Atomic uint32_t wake_seq; /* futex word: bumped to wake a parked thread */
    RV_CACHE_ALIGNED _Atomic uint32_t running; /* calls in progress */
    _Atomic uint32_t refs;                     /* the runtime's, one per thread */
    _Atomic int closing;
    unsigned max;
    int64_t keepalive_ns;
    pthread_mutex_t lock; /* the thread list (reports only) */
    pool_thread *list;
};

typedef struct call {
    rv__mpsc_node node;
    rv_blocking_fn fn;
    void *arg;
    void (*release)(void *result);
    void (*arg_free)(void *arg); /* internal callers: the call owns its arg */
    rv_future *fut;          /* the call's reference */
    _Atomic uint32_t refs;   /* the queue's (then the running thread's) and the submitter's */
    _Atomic uint8_t claimed; /* taken by a pool thread to run, or by the submitter to drop */
} call;

/* ------------------------------------------------------------------------- */

static void futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Sleep while *word == seen, up to `ns`; false on timeout. */
static bool futex_wait_ns(_Atomic uint32_t *word, uint32_t seen, int64_t ns)
{
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
    return !(r == -1 && errno == ETIMEDOUT);
}

static void call_unref(call *c)
{
    /* acq_rel: the last holder sees the other's writes before freeing. */
    if (rv__atomic_fetch_sub_acq_rel(&c->refs, 1) != 1)
        return;
    if (c->arg_free)
        c->arg_free(c->arg); /* run or not, the arg goes with the call */
    rv_future_release(c->fut);
    rv__free(c, sizeof *c);
}

/* Claim the call (to run it, or to drop it unrun): exactly one side wins. */
static bool call_claim(call *c) { return !rv__atomic_exchange_acq_rel(&c->claimed, 1); }

static void pool_unref(rv__pool *p)
{
    /* acq_rel: the last holder sees every other holder's writes. */
    if (rv__atomic_fetch_sub_acq_rel(&p->refs, 1) != 1)
        return;
    rv__mpsc_node *n;
    while ((n = rv__mpsc_pop(&p->queue)))
        call_unref((call *)n); /* calls cancelled before they ran */
    pthread_mutex_destroy(&p->lock);
    rv__free_aligned(p, sizeof *p, 128);
}

/* One call, or NULL (empty, or another thread is consuming). */
static call *pool_take(rv__pool *p)
{
    if (rv__mpsc_len(&p->queue) <= 0 || !rv__mpsc_try_claim(&p->queue))
        return NULL;
    call *c = (call *)rv__mpsc_pop(&p->queue);
    rv__mpsc_unclaim(&p->queue);
    return c;
}

static bool queue_has_work(rv__pool *p) { return rv__mpsc_len(&p->queue) > 0; }

static void run_call(pool_thread *self, call *c)
{
    rv__pool *p = self->pool;
    /* Counted as running before the call is claimed, so a shutdown that
     * sees no call running cannot miss one about to start. */
    rv__atomic_fetch_add_seq_cst(&p->running, 1);
    if (rv_future_done(c->fut) || !call_claim(c)) {
        /* Cancelled before it started (the awaiting task was cancelled),
         * or dropped by its submitter: it never runs. */
        rv__atomic_fetch_sub_release(&p->running, 1);
        call_unref(c);
        return;
    }
    /* Busy: out of `searching` (running first, so never in neither). The
     * last searcher to leave with calls still queued makes sure another
     * thread looks: below the cap a call never waits behind a running one
     * (it may be the very call this one waits for). */
    if (rv__atomic_fetch_sub_seq_cst(&p->searching, 1) == 1 && queue_has_work(p))
        rv__pool_kick(p);
    rv__atomic_store_relaxed(&self->since, rv_now());
    rv__atomic_store_relaxed(&self->fn, c->fn);
    void *result = NULL;
    int rc = c->fn(c->arg, &result);
    rv__atomic_store_relaxed(&self->fn, NULL);
    rv__atomic_fetch_add_seq_cst(&p->searching, 1);
    int done;
    if (rc == 0)
        done = rv_future_set_result(c->fut, result);
    else if (rc == -ECANCELED)
        done = rv_future_cancel(c->fut, NULL);
    else
        done = rv_future_set_exception(c->fut, rc, NULL);
    if (done != 0 && rc == 0 && c->release)
        c->release(result); /* the caller was cancelled: nobody takes it */
    call_unref(c);
    /* release: pairs with the acquire read in rv__pool_wait_idle, so a
     * shutdown that sees the count drop sees the call's effects. */
    rv__atomic_fetch_sub_release(&p->running, 1);
}

static void *pool_main(void *arg)
{
    pool_thread *self = arg;
    rv__pool *p = self->pool;
    /* We start counted as searching (by pool_grow), and stay so whenever we
     * are neither inside a call nor parked: a submitter that saw no
     * searcher and no idle thread would start another thread. */
    for (;;) {
        call *c = pool_take(p);
        if (c) {
            run_call(self, c);
            continue;
        }
        /* One searcher spins a while (under steady load the next call comes
         * soon, and a park plus a wake costs far more); the others park. */
        if (rv__atomic_load_seq_cst(&p->searching) == 1) {
            int64_t until = rv_now() + SEARCH_NS;
            while (!queue_has_work(p) && !rv__atomic_load_relaxed(&p->closing) &&
                   rv_now() < until)
                for (int i = 0; i < 32; i++)
                    rv__cpu_relax();
        }
        if (queue_has_work(p))
            continue;
        if (rv__atomic_load_acquire(&p->closing))
            break;
        /* Park. seq_cst: idle++ before the re-check pairs with the
         * submitter's push before its read of idle (see the design note);
         * idle goes up before searching goes down, so we are never in
         * neither count. */
        uint32_t seen = rv__atomic_load_seq_cst(&p->wake_seq);
        rv__atomic_fetch_add_seq_cst(&p->idle, 1);
        rv__atomic_fetch_sub_seq_cst(&p->searching, 1);
        bool woken = true;
        if (!queue_has_work(p) && !rv__atomic_load_seq_cst(&p->closing))
            woken = futex_wait_ns(&p->wake_seq, seen, p->keepalive_ns);
        rv__atomic_fetch_add_seq_cst(&p->searching, 1);
        rv__atomic_fetch_sub_seq_cst(&p->idle, 1);
        if (!woken && !queue_has_work(p))
            break; /* idle for the whole keep-alive */
    }
    rv__atomic_fetch_sub_seq_cst(&p->searching, 1);
    pthread_mutex_lock(&p->lock);
    if (self->prev)
        self->prev->next = self->next;
    else
        p->list = self->next;
    if (self->next)
        self->next->prev = self->prev;
    pthread_mutex_unlock(&p->lock);
    rv__atomic_fetch_sub_seq_cst(&p->threads, 1);
    /* A call pushed while we decided to leave saw threads > 0 and did not
     * start one; make sure someone takes it. */
    bool closing = rv__atomic_load_acquire(&p->closing);
    rv__free(self, sizeof *self);
    if (!closing && queue_has_work(p))
        rv__pool_kick(p);
    pool_unref(p);
    return NULL;
}

/* Start one more thread if the cap allows. 0, or the pthread error. */
static int pool_grow(rv__pool *p)
{
    uint32_t n = rv__atomic_load_relaxed(&p->threads);
    do {
        if (n >= p->max)
            return -EAGAIN;
    } while (!rv__atomic_cas_seq_cst(&p->threads, &n, n + 1));
    /* The new thread starts as a searcher, counted now, so that the next
     * submitter does not start yet another. */
    rv__atomic_fetch_add_seq_cst(&p->searching, 1);
    pool_thread *t = rv__calloc(sizeof *t);
    int rc = t ? 0 : -ENOMEM;
    if (t) {
        t->pool = p;
        rv__atomic_fetch_add_relaxed(&p->refs, 1);
        pthread_mutex_lock(&p->lock);
        t->next = p->list;
        if (p->list)
            p->list->prev = t;
        p->list = t;
        pthread_mutex_unlock(&p->lock);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* Pool threads take no asynchronous signals, like the workers. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pthread_t tid;
        rc = -pthread_create(&tid, &attr, pool_main, t);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (rc) {
            pthread_mutex_lock(&p->lock);
            if (t->prev)
                t->prev->next = t->next;
            else
                p->list = t->next;
            if (t->next)
                t->next->prev = t->prev;
            pthread_mutex_unlock(&p->lock);
            rv__free(t, sizeof *t);
            rv__atomic_fetch_sub_relaxed(&p->refs, 1);
        }
    }
    if (rc) {
        rv__atomic_fetch_sub_seq_cst(&p->searching, 1);
        rv__atomic_fetch_sub_seq_cst(&p->threads, 1);
    }
    return rc;
}

int rv__pool_kick(rv__pool *p)
{
    if (rv__atomic_load_seq_cst(&p->searching) > 0)
        return 0; /* a searcher takes it (and, taking it, kicks for the rest) */
    if (rv__atomic_load_seq_cst(&p->idle) > 0) {
        rv__atomic_fetch_add_seq_cst(&p->wake_seq, 1);
        futex_wake(&p->wake_seq, 1);
        return 0;
    }
    int rc = pool_grow(p);
    return rc == -EAGAIN ? 0 : rc; /* at the cap: a thread takes it when done */
}

/* ------------------------------------------------------------------------- */
/* Runtime side                                                               */

rv__pool *rv__pool_new(unsigned max, int64_t keepalive_ns)
{
    rv__pool *p = rv__calloc_aligned(sizeof *p, 128);
    if (!p)
        return NULL;
    rv__mpsc_init(&p->queue);
    pthread_mutex_init(&p->lock, NULL);
    p->max = max;
    p->keepalive_ns = keepalive_ns;
    rv__atomic_store_relaxed(&p->refs, 1);
    return p;
}

bool rv__pool_wait_idle(rv__pool *p, int64_t deadline)
{
    /* acquire: pairs with the release decrement in run_call. */
    while (rv__atomic_load_acquire(&p->running) > 0) {
        if (deadline >= 0 && rv_now() >= deadline)
            return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return true;
}

void rv__pool_report(rv__pool *p)
{
    int64_t now = rv_now();
    pthread_mutex_lock(&p->lock);
    for (pool_thread *t = p->list; t; t = t->next) {
        rv_blocking_fn fn = rv__atomic_load_relaxed(&t->fn);
        if (fn)
            fprintf(stderr, "  blocking call %p running for %lld ms\n", (void *)fn,
                    (long long)((now - rv__atomic_load_relaxed(&t->since)) / 1000000));
    }
    pthread_mutex_unlock(&p->lock);
}

void rv__pool_close(rv__pool *p)
{
    rv__atomic_store_seq_cst(&p->closing, 1);
    rv__atomic_fetch_add_seq_cst(&p->wake_seq, 1);
    futex_wake(&p->wake_seq, INT_MAX);
    pool_unref(p);
}

void rv__pool_counts(rv__pool *p, uint64_t *threads, uint64_t *idle, uint64_t *queued)
{
    *threads = rv__atomic_load_relaxed(&p->threads);
    *idle = rv__atomic_load_relaxed(&p->idle);
    int64_t q = rv__mpsc_len(&p->queue);
    *queued = q > 0 ? (uint64_t)q : 0;
}

/* ------------------------------------------------------------------------- */
/* API                                                                        */

int rv_to_thread(rv_blocking_fn fn, void *arg, void (*release)(void *result), void **result)
{
    return rv__to_thread(fn, arg, NULL, release, result);
}

int rv__to_thread(rv_blocking_fn fn, void *arg, void (*arg_free)(void *arg),
                  void (*release)(void *result), void **result)
{
    if (result)
        *result = NULL;
    if (!fn) {
        if (arg_free)
            arg_free(arg);
        return -EINVAL;
    }
    rv__worker *w = rv__tls_worker();
    int rc = !w ? 1 : !w->current ? -EDEADLK
                    : rv__atomic_load_acquire(&w->rt->closing) ? -ESHUTDOWN : 0;
    if (rc == 1) {
        void *r = NULL;
        rc = fn(arg, &r); /* a plain thread may block: run it here */
        if (arg_free)
            arg_free(arg);
        if (result)
            *result = r;
        else if (rc == 0 && release)
            release(r);
        return rc;
    }
    call *c = rc ? NULL : rv__alloc(sizeof *c);
    if (!rc && !c)
        rc = -ENOMEM;
    if (!rc && (rc = rv_future_new(w->rt, &c->fut)) != 0)
        rv__free(c, sizeof *c);
    if (rc) {
        if (arg_free)
            arg_free(arg);
        return rc;
    }
    rv__pool *p = w->rt->pool;
    c->fn = fn;
    c->arg = arg;
    c->arg_free = arg_free;
    c->release = release;
    rv__atomic_store_relaxed(&c->refs, 2);
    rv__atomic_store_relaxed(&c->claimed, 0);
    rv_future *f = rv_future_ref(c->fut); /* ours, for the await */
    /* seq_cst (the push's exchange and the loads in rv__pool_kick): pairs
     * with the parking thread's idle++ and re-check. */
    rv__mpsc_push(&p->queue, &c->node);
    bool stranded = rv__pool_kick(p) != 0 && rv__atomic_load_seq_cst(&p->threads) == 0 &&
                    call_claim(c);
    call_unref(c);
    if (stranded) {
        /* No thread could be started and none exists, and none has claimed
         * the call: it never runs (it stays queued until a thread or the
         * pool's end drops it). If a thread claimed it, we await it. */
        rv_future_cancel(f, NULL);
        rv_future_release(f);
        return -EAGAIN;
    }
    void *r = NULL;
    rc = rv_await(f, &r); /* a cancellation cancels f, and returns at once */
    rv_future_release(f);
    if (result)
        *result = r;
    else if (rc == 0 && release)
        release(r);
    return rc;
}

int rv_spawn_threadsafe(rv_runtime *rt, rv_task_fn fn, void *arg, const rv_spawn_opts *opts,
                        rv_future **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    rv_task *t;
    int rc = rv_spawn(rt, fn, arg, opts, &t);
    if (rc == 0)
        *out = rv_task_future(t); /* the task's reference becomes the future's */
    return rc;
}
