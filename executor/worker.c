/* executor/worker.c - the scheduler: worker loop, stealing, parking.
 *
 * Design note
 * -----------
 * Glossary: see executor/internal.h (job, task, worker, inject, inbox, LIFO
 * slot, searching).
 *
 * Where work lives:
 *   - each worker's local queue (primitives/deque.h): pushed and popped by its
 *     owner, stolen by half by others;
 *   - each worker's LIFO slot: the task most recently woken or spawned by the
 *     running task, run next for cache locality (a message and its receiver
 *     stay on one core). At most RV_LIFO_RUNS jobs in a row come from the
 *     slot; after that its occupant goes to the back of the local queue, so two
 *     tasks that wake each other cannot starve the rest;
 *   - the inject queue (MPSC with a consumer claim): submissions from plain
 *     threads and local-queue overflow (half the ring at once);
 *   - each worker's inbox (MPSC): jobs that must run on that worker (pinned
 *     tasks woken from elsewhere);
 *   - each worker's private pinned list: pinned tasks woken on their own worker.
 *
 * The loop (rv__worker_main) reads top to bottom:
 *   1. every RV_MAINT_INTERVAL ticks: poll the epoll without blocking and fire
 *      due timers; every RV_INJECT_INTERVAL ticks take from the inbox and the
 *      inject queue first, so they cannot be starved by a busy local queue;
 *   2. next job: LIFO slot (capped), local queue, pinned list (which goes
 *      first on odd ticks), inbox, inject;
 *   3. none: search: steal half of a random victim's queue; take a victim's
 *      LIFO occupant only if that victim has been running one job since our
 *      previous look (it is stuck in a long job, so the slot would strand);
 *      then the inject queue; a searcher that found nothing keeps looking
 *      for up to RV_SEARCH_SPIN_NS (20 us), since work from plain threads and
 *      the blocking pool often arrives within microseconds (search_spin);
 *   4. nothing: park in epoll_wait on our own epoll until a wake, an I/O event
 *      or the next timer.
 *
 * Searching and waking (the thundering-herd guard, after Go and Tokio): at
 * most half the workers search at once. A producer that publishes work wakes
 * a parked worker only if no one is searching (a searcher will find the work).
 * A searcher that finds work and was the last searcher wakes one more parked
 * worker if work remains, so a burst ramps up one worker at a time.
 *
 * Publish-then-check-sleepers (no lost wakeups). The two sides are:
 *   producer:  publish (queue store)      parker:  set my bit in `sleepers`
 *              seq_cst fence                       seq_cst fence
 *              read `searching`, `sleepers`        re-check every queue
 * Sequential consistency of the fences guarantees that at least one side sees
 * the other's write: either the producer sees the parker's bit and wakes it,
 * or the parker sees the work and does not sleep. Likewise, a searcher that
 * stops searching decrements `searching`, fences, and re-checks the queues
 * when it was the last one, because producers skipped waking anybody while it
 * searched. A parked worker woken by a producer has its bit cleared by that
 * producer (CAS), which also counts it as searching; a worker woken by its own
 * timer or I/O clears its own bit. Whoever clears the bit owns the wakeup, so
 * the counts stay consistent.
 *
 * Shutdown (see runtime.c): closing (no new work, tasks cancelled), wait for
 * live tasks to reach zero or the deadline, then `stopping`: every worker is
 * woken, leaves its loop, and the runtime joins the threads and frees what
 * remains in the queues.
 *
 * Rejected alternatives: one shared epoll for all workers (Tokio, Go) would
 * serialise parking on one driver lock and break the per-worker reactor the
 * I/O layer is built on; a mutex-protected global queue (Tokio) was replaced
 * by an MPSC queue with a claim flag so that remote submission never blocks;
 * Chase-Lev deques (see deque.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "executor/alloc.h"
#include "executor/internal.h"

#define RV_LIFO_RUNS 3
#define RV_MAINT_INTERVAL 61
#ifndef RV_SEARCH_SPIN_NS
#define RV_SEARCH_SPIN_NS 20000 /* see search_spin */
#endif
#define RV_INJECT_INTERVAL 31
#define RV_TIMER_CHECK_MASK 7 /* with timers armed, look at the clock every 8 jobs */
#define RV_TRIM_IDLE_MS 50    /* trim pooled stacks after this long without a job */
#define RV_LIFO_WATCH_MS 10   /* an idle worker looks at busy workers' LIFO slots */

/* ------------------------------------------------------------------------- */
/* The thread-local worker pointer                                            */

__thread rv__worker *rv__tls_worker_var __attribute__((tls_model("initial-exec")));

/* Out of line and opaque: the empty asm with a memory clobber makes the
 * function impure, so no call site may reuse an earlier call's result after a
 * fiber switch (which can move the caller to another thread). */
__attribute__((noinline)) rv__worker *rv__tls_worker(void)
{
    __asm__ __volatile__("" ::: "memory");
    return rv__tls_worker_var;
}

__attribute__((noinline)) void rv__tls_set_worker(rv__worker *w)
{
    __asm__ __volatile__("" ::: "memory");
    rv__tls_worker_var = w;
}

rv_runtime *rv_runtime_current(void)
{
    rv__worker *w = rv__tls_worker();
    return w ? w->rt : NULL;
}

/* ------------------------------------------------------------------------- */
/* Counters: written only by their worker, read by anyone (relaxed).          */

static inline void count(_Atomic uint64_t *c, uint64_t n)
{
    rv__atomic_store_relaxed(c, rv__atomic_load_relaxed(c) + n);
}

/* ------------------------------------------------------------------------- */
/* Clock ticks for the timer wheel                                            */

uint64_t rv__now_tick(rv_runtime *rt)
{
    int64_t d = rv_now() - rt->start_ns;
    return d <= 0 ? 0 : (uint64_t)d / 1000000;
}

uint64_t rv__deadline_tick(rv_runtime *rt, int64_t when_ns)
{
    int64_t d = when_ns - rt->start_ns;
    return d <= 0 ? 0 : ((uint64_t)d + 999999) / 1000000; /* round up: never early */
}

static void fire_timers(rv__worker *w)
{
    if (!w->wheel.count)
        return;
    uint64_t fired = rv__wheel_advance(&w->wheel, rv__now_tick(w->rt));
    if (fired)
        count(&w->stats.timers_fired, fired);
}

/* ------------------------------------------------------------------------- */
/* Waking parked workers                                                      */

static bool sleeper_claim(rv_runtime *rt, unsigned index)
{
    _Atomic uint64_t *word = &rt->sleepers[index / 64];
    uint64_t bit = 1ULL << (index % 64);
    uint64_t m = rv__atomic_load_seq_cst(word);
    while (m & bit) {
        if (rv__atomic_cas_seq_cst(word, &m, m & ~bit))
            return true;
    }
    return false;
}

void rv__worker_unpark(rv__worker *w) { rv__poller_wake(&w->poller); }

void rv__notify_one(rv_runtime *rt)
{
    /* seq_cst fence: orders the work we just published before our reads of
     * `searching` and `sleepers`; pairs with the fence in park() and in
     * stop_searching(). */
    rv__fence_seq_cst();
    if (rv__atomic_load_seq_cst(&rt->searching) != 0)
        return; /* a searcher will find it */
    for (unsigned i = 0; i < rt->sleeper_words; i++) {
        uint64_t m = rv__atomic_load_seq_cst(&rt->sleepers[i]);
        while (m) {
            unsigned bit = (unsigned)__builtin_ctzll(m);
            if (rv__atomic_cas_seq_cst(&rt->sleepers[i], &m, m & ~(1ULL << bit))) {
                /* We own this wakeup: the woken worker starts as a searcher. */
                rv__atomic_fetch_add_seq_cst(&rt->searching, 1);
                rv__worker_unpark(&rt->workers[i * 64 + bit]);
                return;
            }
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Queue operations                                                           */

static void push_inject(rv_runtime *rt, rv__job *job) { rv__mpsc_push(&rt->inject, &job->node); }

/* Owner: push to the back of the local queue, overflowing half to inject. */
static void push_local(rv__worker *w, rv__job *job)
{
    uint32_t n;
    int rc = rv__deque_push(&w->runq, job, w->overflow_batch, &n);
    if (rc == 0)
        return;
    if (rc == 2) {
        push_inject(w->rt, job);
        return;
    }
    rv__batch *b = rv__alloc(sizeof *b);
    if (b) {
        b->job.kind = RV_JOB_BATCH;
        memcpy(b->jobs, w->overflow_batch, n * sizeof(rv__job *));
        b->jobs[n] = job;
        b->count = n + 1;
        rv__mpsc_push(&w->rt->inject, &b->job.node);
        count(&w->stats.overflows, 1);
        return;
    }
    /* No memory for a batch: link the moved half and the new job into one
     * chain instead (one exchange, slower to consume). */
    rv__job *first = w->overflow_batch[0];
    rv__job *prev = first;
    for (uint32_t i = 1; i < n; i++) {
        rv__job *j = w->overflow_batch[i];
        rv__atomic_store_relaxed(&prev->node.next, &j->node);
        prev = j;
    }
    rv__atomic_store_relaxed(&prev->node.next, &job->node);
    rv__mpsc_push_chain(&w->rt->inject, &first->node, &job->node, (int64_t)n + 1);
    count(&w->stats.overflows, 1);
}

void rv__schedule(rv_runtime *rt, rv__job *job)
{
    rv__worker *w = rv__tls_worker();
    if (w && w->rt == rt) {
        if (job->kind == RV_JOB_TASK) {
            /* exchange: a thief may take the slot concurrently (stuck LIFO). */
            rv__job *prev = rv__atomic_exchange_acq_rel(&w->lifo, job);
            if (!prev)
                return; /* runs next here; nothing for others to take */
            push_local(w, prev);
        } else {
            push_local(w, job);
        }
    } else {
        push_inject(rt, job);
    }
    rv__notify_one(rt);
}

void rv__schedule_yielded(rv__worker *w, rv__job *job) { push_local(w, job); }

void rv__schedule_pinned(rv__worker *target, rv__job *job)
{
    rv__worker *w = rv__tls_worker();
    rv__atomic_store_relaxed(&job->node.next, NULL);
    if (w == target) {
        if (w->pinned_tail)
            rv__atomic_store_relaxed(&w->pinned_tail->node.next, &job->node);
        else
            w->pinned_head = job;
        w->pinned_tail = job;
        return;
    }
    rv__mpsc_push(&target->inbox, &job->node);
    /* seq_cst fence: the push before the read of the target's sleeper bit;
     * pairs with the fence in park(), which re-checks the inbox. */
    rv__fence_seq_cst();
    if (sleeper_claim(target->rt, target->index)) {
        rv__atomic_fetch_add_seq_cst(&target->rt->searching, 1);
        rv__worker_unpark(target);
    }
}

static rv__job *pop_pinned(rv__worker *w)
{
    rv__job *j = w->pinned_head;
    if (j) {
        w->pinned_head = (rv__job *)rv__atomic_load_relaxed(&j->node.next);
        if (!w->pinned_head)
            w->pinned_tail = NULL;
    }
    return j;
}

/* Queue a batch's jobs locally, as many as fit, and return the first to run.
 * What does not fit goes back to the inject queue in the same block: pushing
 * it into a full ring would only overflow it straight back. */
static rv__job *unpack_batch(rv__worker *w, rv__batch *b, bool fill)
{
    rv__job *first = b->jobs[0];
    uint32_t room = fill ? RV_LOCAL_QUEUE_SIZE - rv__deque_len(&w->runq) : 0;
    uint32_t n = b->count - 1 < room ? b->count - 1 : room;
    for (uint32_t i = 1; i <= n; i++)
        push_local(w, b->jobs[i]);
    uint32_t left = b->count - 1 - n;
    if (left) {
        memmove(b->jobs, b->jobs + 1 + n, left * sizeof(rv__job *));
        b->count = left;
        rv__mpsc_push(&w->rt->inject, &b->job.node);
    } else {
        rv__free(b, sizeof *b);
    }
    return first;
}

/* Take from the inject queue. With `fill` (our queue ran dry) take a fair
 * share and queue all but the first locally; without it (the fairness tick,
 * our queue still has work) take just one job, as moving a batch into a busy
 * queue would only push the queue's own work back out. */
static rv__job *take_inject(rv__worker *w, bool fill)
{
    rv_runtime *rt = w->rt;
    int64_t len = rv__mpsc_len(&rt->inject);
    if (len <= 0 || !rv__mpsc_try_claim(&rt->inject))
        return NULL;
    int64_t want = len / rt->nworkers + 1;
    int64_t room = RV_LOCAL_QUEUE_SIZE / 2 - (int64_t)rv__deque_len(&w->runq);
    if (want > room)
        want = room > 1 ? room : 1;
    rv__job *first = (rv__job *)rv__mpsc_pop(&rt->inject);
    if (first && first->kind == RV_JOB_BATCH) {
        rv__mpsc_unclaim(&rt->inject);
        return unpack_batch(w, (rv__batch *)first, fill);
    }
    if (!fill)
        want = 1;
    for (int64_t i = 1; first && i < want; i++) {
        rv__job *j = (rv__job *)rv__mpsc_pop(&rt->inject);
        if (!j)
            break;
        push_local(w, j);
    }
    rv__mpsc_unclaim(&rt->inject);
    return first;
}

static rv__job *next_job(rv__worker *w)
{
    if (w->tick % RV_INJECT_INTERVAL == 0) {
        /* Fairness: the inbox and the inject queue come after the local
         * queue, so a queue kept busy by yielding tasks would starve them. */
        rv__job *j = NULL;
        if (rv__mpsc_len(&w->inbox) > 0)
            j = (rv__job *)rv__mpsc_pop(&w->inbox);
        if (!j)
            j = take_inject(w, false);
        if (j)
            return j;
    }
    /* Pinned tasks woken here wait in a private FIFO beside the ring; the
     * two take turns (odd ticks: pinned first), so pinned tasks that wake
     * each other cannot starve the ring, nor the ring them. */
    rv__job *j = (w->tick & 1) ? pop_pinned(w) : NULL;
    if (j)
        return j;
    if (rv__atomic_load_relaxed(&w->lifo)) {
        j = rv__atomic_exchange_acq_rel(&w->lifo, NULL);
        if (j) {
            if (w->lifo_runs < RV_LIFO_RUNS) {
                w->lifo_runs++;
                return j;
            }
            push_local(w, j); /* its turn is over: back of the queue */
        }
    }
    w->lifo_runs = 0;
    j = rv__deque_pop(&w->runq);
    if (j) {
        /* Start pulling the next task's first lines into our cache while this
         * one runs: a task spawned on another core is a cache miss here. */
        rv__job *next = rv__deque_peek(&w->runq);
        if (next) {
            __builtin_prefetch(next);
            __builtin_prefetch((char *)next - offsetof(rv_task, job), 1);
        }
        return j;
    }
    if ((j = pop_pinned(w)))
        return j;
    if (rv__mpsc_len(&w->inbox) > 0 && (j = (rv__job *)rv__mpsc_pop(&w->inbox)))
        return j;
    return take_inject(w, true);
}

/* ------------------------------------------------------------------------- */
/* Searching                                                                  */

static uint32_t next_random(rv__worker *w)
{
    /* xorshift64* */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return (uint32_t)((w->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static bool start_searching(rv__worker *w)
{
    if (w->searching)
        return true;
    rv_runtime *rt = w->rt;
    uint32_t s = rv__atomic_load_seq_cst(&rt->searching);
    if (2 * s >= rt->nworkers)
        return false;
    rv__atomic_fetch_add_seq_cst(&rt->searching, 1);
    w->searching = true;
    return true;
}

static bool work_visible(rv__worker *w)
{
    rv_runtime *rt = w->rt;
    if (w->pinned_head || rv__atomic_load_relaxed(&w->lifo) || rv__mpsc_len(&rt->inject) > 0 ||
        rv__mpsc_len(&w->inbox) > 0)
        return true;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rv__deque_len(&rt->workers[i].runq) > 0)
            return true;
    return false;
}

/* Leave the searching state. The last searcher re-checks for work that
 * producers left to it; returns true if it should keep looking. */
static bool stop_searching(rv__worker *w)
{
    if (!w->searching)
        return false;
    w->searching = false;
    rv_runtime *rt = w->rt;
    uint32_t prev = rv__atomic_fetch_sub_seq_cst(&rt->searching, 1);
    if (prev != 1)
        return false;
    /* seq_cst fence: pairs with the producer's fence in rv__notify_one. */
    rv__fence_seq_cst();
    return work_visible(w);
}

/* Found work while searching: if we were the last searcher and more work is
 * queued, wake one more worker to share it. */
static void found_work(rv__worker *w)
{
    if (!w->searching)
        return;
    w->searching = false;
    uint32_t prev = rv__atomic_fetch_sub_seq_cst(&w->rt->searching, 1);
    /* Producers skipped waking anyone while we searched: if work is left
     * anywhere (not only in our own queue), pass the baton. */
    if (prev == 1 && work_visible(w))
        rv__notify_one(w->rt);
}

static rv__job *steal(rv__worker *w)
{
    rv_runtime *rt = w->rt;
    unsigned n = rt->nworkers;
    if (n < 2)
        return take_inject(w, true);
    unsigned start = next_random(w) % n;
    for (unsigned i = 0; i < n; i++) {
        unsigned v = (start + i) % n;
        if (v == w->index)
            continue;
        rv__worker *victim = &rt->workers[v];
        count(&w->stats.steal_attempts, 1);
        uint32_t moved;
        rv__job *j = rv__deque_steal_into(&victim->runq, &w->runq, &moved);
        if (j) {
            count(&w->stats.steals, 1);
            count(&w->stats.stolen_tasks, moved);
            return j;
        }
        /* A LIFO occupant is taken only from a worker stuck in one job since
         * our previous look: then it would otherwise wait for that job. */
        if (rv__atomic_load_relaxed(&victim->lifo)) {
            uint64_t polls = rv__atomic_load_relaxed(&victim->stats.tasks_polled);
            if (polls == w->last_polls[v]) {
                j = rv__atomic_exchange_acq_rel(&victim->lifo, NULL);
                if (j) {
                    count(&w->stats.steals, 1);
                    count(&w->stats.stolen_tasks, 1);
                    return j;
                }
            }
            w->last_polls[v] = polls;
        }
    }
    return take_inject(w, true);
}

/* True when another worker has a LIFO occupant: park briefly, then look again
 * (it may be stuck behind a long job). Records what we saw. */
static bool lifo_occupied_elsewhere(rv__worker *w)
{
    rv_runtime *rt = w->rt;
    bool any = false;
    for (unsigned v = 0; v < rt->nworkers; v++) {
        if (v == w->index)
            continue;
        rv__worker *victim = &rt->workers[v];
        if (rv__atomic_load_relaxed(&victim->lifo)) {
            w->last_polls[v] = rv__atomic_load_relaxed(&victim->stats.tasks_polled);
            any = true;
        }
    }
    return any;
}

/* True when some other worker is not parked (it may fill its LIFO slot). */
static bool others_running(rv__worker *w)
{
    rv_runtime *rt = w->rt;
    for (unsigned v = 0; v < rt->nworkers; v++) {
        if (v == w->index)
            continue;
        uint64_t bits = rv__atomic_load_relaxed(&rt->sleepers[v / 64]);
        if (!(bits & (1ULL << (v % 64))))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------- */
/* Parking                                                                    */

static void park(rv__worker *w)
{
    rv_runtime *rt = w->rt;
    if (stop_searching(w)) {
        start_searching(w);
        return;
    }
    /* Long idle: give back the memory of surplus pooled stacks, a chunk at a
     * time, as long as no work shows up. Only after RV_TRIM_IDLE_MS without a
     * job: each madvise interrupts every core running this process with a
     * TLB shootdown, which a busy runtime must not pay (it halved W6). */
    bool trim_pending = false;
    if (rv__stack_has_excess(w)) {
        uint64_t now_ms = rv__now_tick(rt);
        if (!w->trim_due_ms) {
            w->trim_due_ms = now_ms + RV_TRIM_IDLE_MS;
        } else if (now_ms >= w->trim_due_ms) {
            while (rv__stack_trim(w))
                if (work_visible(w))
                    return;
            w->trim_due_ms = 0;
        }
        trim_pending = w->trim_due_ms != 0;
    }
    /* Timers that fell due while we were busy wake their tasks into our own
     * queues, which no one would tell us about: fire them before sleeping. */
    fire_timers(w);
    if (work_visible(w))
        return;

    _Atomic uint64_t *word = &rt->sleepers[w->index / 64];
    uint64_t bit = 1ULL << (w->index % 64);
    rv__atomic_fetch_or_seq_cst(word, bit);
    /* seq_cst fence: our bit is visible before we re-check the queues; pairs
     * with the producer's fence in rv__notify_one / rv__schedule_pinned. */
    rv__fence_seq_cst();
    if (work_visible(w) || rv__atomic_load_seq_cst(&rt->stopping)) {
        if (!sleeper_claim(rt, w->index))
            w->searching = true; /* a producer claimed us: counted as searching */
        return;
    }

    int timeout_ms = -1;
    uint64_t next = rv__wheel_next_deadline(&w->wheel);
    if (next != UINT64_MAX) {
        uint64_t now = rv__now_tick(rt);
        timeout_ms = next <= now ? 0 : (next - now > 3600000 ? 3600000 : (int)(next - now));
    }
    bool stuck_check = lifo_occupied_elsewhere(w);
    if (stuck_check && (timeout_ms < 0 || timeout_ms > 1))
        timeout_ms = 1;
    /* While another worker runs, come back now and then: a task it puts in
     * its LIFO slot and then keeps running past (a spawn followed by a long
     * computation) tells no one, and only a worker that looks can take it.
     * This bounds how long the slot can strand work to about
     * RV_LIFO_WATCH_MS + 1 ms, at the cost of an idle worker waking 100
     * times a second while others are busy. */
    if (others_running(w) && (timeout_ms < 0 || timeout_ms > RV_LIFO_WATCH_MS))
        timeout_ms = RV_LIFO_WATCH_MS;
    if (trim_pending && (timeout_ms < 0 || timeout_ms > RV_TRIM_IDLE_MS))
        timeout_ms = RV_TRIM_IDLE_MS;

    count(&w->stats.parks, 1);
    int64_t t0 = rv_now();
    count(&w->stats.busy_ns, (uint64_t)(t0 - w->unparked_at));
    if (timeout_ms < 0)
        rv__atomic_fetch_add_relaxed(&rt->indefinite_sleepers, 1);
    int io = rv__poller_wait(&w->poller, timeout_ms);
    if (timeout_ms < 0)
        rv__atomic_fetch_sub_relaxed(&rt->indefinite_sleepers, 1);
    w->unparked_at = rv_now();
    count(&w->stats.unparks, 1);
    if (io > 0)
        count(&w->stats.io_events, (uint64_t)io);
    if (!sleeper_claim(rt, w->index)) {
        w->searching = true; /* woken by a producer, who counted us */
    } else {
        /* Woken by our own timer or I/O: we are about to run, and a worker
         * that went to sleep with no timeout (everyone was idle then) would
         * never look at our LIFO slot. Wake one; it will park with the
         * watch timeout while we run. */
        if (rv__atomic_load_relaxed(&rt->indefinite_sleepers) > 0)
            rv__notify_one(rt);
        if (stuck_check)
            start_searching(w);
    }
    fire_timers(w);
}

/* ------------------------------------------------------------------------- */
/* The loop                                                                   */

static void run_job(rv__worker *w, rv__job *job)
{
    w->trim_due_ms = 0; /* not idle */
    /* Also what thieves compare to tell a worker stuck in one job. */
    count(&w->stats.tasks_polled, 1);
    switch (job->kind) {
    case RV_JOB_TASK:
        rv__task_run(w, rv__task_of_job(job));
        break;
    case RV_JOB_CALLBACK:
        rv__handle_run(job);
        break;
    case RV_JOB_FUTURE_CBS:
        rv__future_run_callbacks(job);
        break;
    case RV_JOB_TIMER_ARM:
        rv__handle_arm(w, job);
        break;
    case RV_JOB_BATCH:
        run_job(w, unpack_batch(w, (rv__batch *)job, true));
        break;
    }
}

/* Readiness must not wait behind a worker stuck in a long job: an idle
 * worker polls the other workers' I/O epolls (io/poller.h: they hold only
 * descriptors, never a worker's wake), dispatching what it finds; the woken
 * tasks run here. */
static void poll_others_io(rv__worker *w)
{
    rv_runtime *rt = w->rt;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rv__worker *v = &rt->workers[i];
        if (v != w && rv__poller_has_fds(&v->poller))
            count(&w->stats.io_events, (uint64_t)rv__poller_poll_io(&v->poller));
    }
}

/* Stay a searcher a little longer before parking: work submitted from
 * outside the workers (plain threads, the blocking pool) often comes within
 * microseconds, and a park plus a wake costs two system calls and a context
 * switch on each side. Only searchers spin, at most half the workers search,
 * and producers wake nobody while someone searches, so the spinner is the
 * one that takes such work. */
static rv__job *search_spin(rv__worker *w)
{
    int64_t until = rv_now() + RV_SEARCH_SPIN_NS;
    do {
        for (int i = 0; i < 64; i++)
            rv__cpu_relax();
        poll_others_io(w);
        rv__job *job = next_job(w);
        if (!job)
            job = steal(w);
        if (job)
            return job;
    } while (rv_now() < until && !rv__atomic_load_relaxed(&w->rt->stopping));
    return NULL;
}

static void maintenance(rv__worker *w)
{
    if (rv__poller_has_fds(&w->poller)) {
        int io = rv__poller_wait(&w->poller, 0);
        if (io > 0)
            count(&w->stats.io_events, (uint64_t)io);
    }
    fire_timers(w);
}

void *rv__worker_main(void *arg)
{
    rv__worker *w = arg;
    rv_runtime *rt = w->rt;
    rv__tls_set_worker(w);
    rv__fiber_init_thread(&w->sched_fiber);
    w->errno_at = &errno;
    rv__overflow_handler_install(w);
    w->unparked_at = rv_now();

    while (!rv__atomic_load_acquire(&rt->stopping)) {
        w->tick++;
        if (w->tick % RV_MAINT_INTERVAL == 0)
            maintenance(w);
        else if ((w->tick & RV_TIMER_CHECK_MASK) == 0)
            fire_timers(w);

        rv__job *job = next_job(w);
        if (!job && start_searching(w))
            job = steal(w);
        if (!job && w->searching && RV_SEARCH_SPIN_NS > 0)
            job = search_spin(w);
        if (job) {
            /* A worker woken by a producer counts as searching; it stops
             * searching however it found the work, or producers would keep
             * seeing a searcher and never wake anyone else. */
            if (w->searching)
                found_work(w);
            run_job(w, job);
            continue;
        }
        park(w);
    }

    count(&w->stats.busy_ns, (uint64_t)(rv_now() - w->unparked_at));
    if (w->searching) {
        w->searching = false;
        rv__atomic_fetch_sub_seq_cst(&rt->searching, 1);
    }
    rv__overflow_handler_remove(w);
    rv__tls_set_worker(NULL);
    return NULL;
}

void rv__suspend(rv__worker *w, rv_task *t, uint8_t reason)
{
    if (!t->registered) {
        rv__registry_add(w, t);
        /* A shutdown sweep that ran before we registered did not see us. */
        if (rv__atomic_load_seq_cst(&w->rt->closing)) {
            rv__atomic_fetch_add_relaxed(&t->cancels, 1);
            rv__atomic_store_release(&t->must_cancel, 1);
            if (reason == RV_SWITCH_PARK)
                return; /* the caller's loop delivers it */
        }
    }
    w->switch_reason = reason;
    rv__fiber_switch(&t->fiber, &w->sched_fiber);
}
