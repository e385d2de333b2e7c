/* ravel-bench.c - the workloads of WORKLOADS.md, run on ravel.
 *
 *   ravel-bench --workers N [--quick] [--runs R] [--verbose] [--counters] [W1 W1r ...]
 *
 * Each workload runs once untimed (warm-up), then R times (5 unless --runs
 * says otherwise), and prints one line on stdout:
 *
 *   RESULT <name> ravel workers=<n> <main>=<median> [<key>=<median> ...]
 *          <main>_min=.. <main>_max=..        (all on one line)
 *
 * Progress and diagnostics go to stderr, so stdout holds only RESULT lines.
 *
 * How every run is built (the same for all workloads, so they compare):
 * - A fresh runtime per run, with cfg.workers = N, shut down and freed after.
 * - The driver (the spawner, or the task that recurses for fib) is itself a
 *   task in that runtime, except in W1r and W8 whose point is submitting from
 *   a plain thread; the main thread blocks on the driver's future.
 * - The clock (CLOCK_MONOTONIC) starts just before the first operation and
 *   stops just after the completion signal: an rv_future that the last task
 *   to finish completes ("finish line" below).
 * - Every wait has a deadline (WAIT_TIMEOUT_NS); a missed one prints the
 *   runtime's counters and aborts, so a hang in the library shows as a crash
 *   with a message rather than a stuck benchmark.
 */
#define _GNU_SOURCE
#include <ravel.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bench-stats.h"

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)

/* How long the completion signal may take; the main thread gives the whole
 * driver twice that, so the driver's more specific message comes first. */
#define WAIT_TIMEOUT_NS (60 * NS_PER_S)
#define DRIVER_TIMEOUT_NS (2 * WAIT_TIMEOUT_NS)
#define SHUTDOWN_TIMEOUT_NS (10 * NS_PER_S)

#define DEFAULT_RUNS 5
#define MAX_RUNS 1000
#define MAX_METRICS 4

typedef struct bench_opts {
    unsigned workers;
    int runs;
    bool quick;
    bool verbose;
} bench_opts;

/* The workload being measured, for error messages. Written by the main thread
 * before each workload starts its runtimes, read by tasks after. */
static const char *current_workload = "ravel-bench";
/* --counters: print each runtime's counters on stderr before freeing it. */
static bool print_counters;

/* ------------------------------------------------------------------------- */
/* Failing loudly                                                             */

static void die_call(const char *expr, int rc, const char *file, int line)
{
    fprintf(stderr, "ravel-bench: %s: %s:%d: %s failed: %s (%s)\n", current_workload, file, line,
            expr, rv_err_name(rc), rv_strerror(rc));
    abort();
}

/* Every ravel call in the bench goes through CHECK: an error is a bug in the
 * library or the bench, never something to measure around. */
#define CHECK(call)                                                                                \
    do {                                                                                           \
        int check_rc_ = (call);                                                                    \
        if (check_rc_ < 0)                                                                         \
            die_call(#call, check_rc_, __FILE__, __LINE__);                                        \
    } while (0)

static void dump_runtime(rv_runtime *rt)
{
    rv_runtime_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    if (rt == NULL || rv_runtime_stats_get(rt, &s) < 0) {
        fprintf(stderr, "  (no runtime counters)\n");
        return;
    }
    fprintf(stderr, "  runtime: workers=%u live_tasks=%llu inject_depth=%llu\n", s.workers,
            (unsigned long long)s.live_tasks, (unsigned long long)s.inject_depth);
    for (unsigned i = 0; i < s.workers; i++) {
        rv_worker_stats w;
        if (rv_worker_stats_get(rt, i, &w) < 0)
            continue;
        fprintf(stderr,
                "  worker %u: polled=%llu steals=%llu stolen=%llu overflows=%llu parks=%llu "
                "unparks=%llu timers=%llu local_queue_depth=%llu\n",
                i, (unsigned long long)w.tasks_polled, (unsigned long long)w.steals,
                (unsigned long long)w.stolen_tasks, (unsigned long long)w.overflows,
                (unsigned long long)w.parks, (unsigned long long)w.unparks,
                (unsigned long long)w.timers_fired, (unsigned long long)w.local_queue_depth);
    }
}

/* Wait for f, from a task or from the main thread, for at most timeout_ns.
 * `rt` is only used for the diagnostics (NULL: the calling task's runtime). */
static void await_or_die(rv_runtime *rt, rv_future *f, int64_t timeout_ns, const char *what)
{
    void *ignored;
    int rc = rv_future_wait(f, timeout_ns, &ignored);
    if (rc == 0)
        return;
    if (rt == NULL)
        rt = rv_runtime_current();
    if (rc == -ETIMEDOUT)
        fprintf(stderr, "ravel-bench: %s: HANG: %s did not complete within %lld s\n",
                current_workload, what, (long long)(timeout_ns / NS_PER_S));
    else
        fprintf(stderr, "ravel-bench: %s: %s failed: %s (%s)%s%s\n", current_workload, what,
                rv_err_name(rc), rv_strerror(rc), rv_future_message(f) ? ": " : "",
                rv_future_message(f) ? rv_future_message(f) : "");
    dump_runtime(rt);
    abort();
}

/* ------------------------------------------------------------------------- */
/* Runtimes and drivers                                                       */

static rv_runtime *runtime_start(unsigned workers)
{
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = workers;
    rv_runtime *rt;
    CHECK(rv_runtime_new(&rt, &cfg));

    rv_runtime_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    if (rv_runtime_stats_get(rt, &s) == 0 && s.workers != workers) {
        fprintf(stderr, "ravel-bench: %s: asked for %u workers, the runtime has %u\n",
                current_workload, workers, s.workers);
        abort();
    }
    return rt;
}

static void runtime_stop(rv_runtime *rt)
{
    if (print_counters) {
        fprintf(stderr, "ravel-bench: %s: counters of the runtime just used:\n", current_workload);
        dump_runtime(rt);
    }
    int rc = rv_runtime_shutdown(rt, SHUTDOWN_TIMEOUT_NS);
    if (rc < 0) {
        fprintf(stderr, "ravel-bench: %s: rv_runtime_shutdown: %s (%s)\n", current_workload,
                rv_err_name(rc), rv_strerror(rc));
        dump_runtime(rt);
        abort();
    }
    CHECK(rv_runtime_free(rt));
}

/* Run driver(arg) as a task of a fresh `workers`-worker runtime and wait for
 * it from this (plain) thread. */
static void run_driver(unsigned workers, rv_task_fn driver, void *arg)
{
    rv_runtime *rt = runtime_start(workers);
    rv_spawn_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.name = "bench-driver";
    rv_task *task;
    CHECK(rv_spawn(rt, driver, arg, &opts, &task));
    await_or_die(rt, rv_task_future(task), DRIVER_TIMEOUT_NS, "the driver task");
    CHECK(rv_task_release(task));
    runtime_stop(rt);
}

/* ------------------------------------------------------------------------- */
/* Finish line: the completion signal                                         */

/* `expected` arrivals; the one that brings `arrived` to `expected` completes
 * `done`. The future has two references: the waiter's, and one that the
 * arrivals share and the last of them drops. */
typedef struct finish_line {
    atomic_uint_fast64_t arrived;
    uint64_t expected;
    rv_future *done;
} finish_line;

static void finish_line_init(finish_line *fl, uint64_t expected, rv_runtime *rt)
{
    atomic_init(&fl->arrived, 0);
    fl->expected = expected;
    CHECK(rv_future_new(rt, &fl->done));
    rv_future_ref(fl->done);
}

static void finish_line_arrive(finish_line *fl)
{
    /* Read everything before completing: once `done` is set the waiter may
     * return and free the structure that holds `fl`. */
    rv_future *done = fl->done;
    uint64_t expected = fl->expected;
    if (atomic_fetch_add_explicit(&fl->arrived, 1, memory_order_acq_rel) + 1 == expected) {
        CHECK(rv_future_set_result(done, NULL));
        CHECK(rv_future_release(done));
    }
}

/* Wait for the finish line, then drop the waiter's reference. */
static void finish_line_wait(rv_runtime *rt, finish_line *fl, const char *what)
{
    await_or_die(rt, fl->done, WAIT_TIMEOUT_NS, what);
    CHECK(rv_future_release(fl->done));
}

/* ------------------------------------------------------------------------- */
/* Repetition                                                                 */

/* One run: fills metrics[0..] (the workload decides their meaning). */
typedef void (*run_fn)(void *params, double *metrics);

/* One warm-up run, discarded, then opts->runs runs; values[m][r] is metric m
 * of run r. */
static void repeat_runs(const bench_opts *o, const char *label, run_fn run, void *params,
                        int metric_count, double values[][MAX_RUNS])
{
    double metrics[MAX_METRICS];
    run(params, metrics);
    for (int r = 0; r < o->runs; r++) {
        memset(metrics, 0, sizeof metrics);
        run(params, metrics);
        for (int m = 0; m < metric_count; m++)
            values[m][r] = metrics[m];
        if (o->verbose) {
            fprintf(stderr, "  %s run %d:", label, r + 1);
            for (int m = 0; m < metric_count; m++)
                fprintf(stderr, " %.3f", metrics[m]);
            fprintf(stderr, "\n");
        }
    }
}

static double elapsed_s(int64_t t0, int64_t t1) { return (double)(t1 - t0) / (double)NS_PER_S; }

/* Run a workload that has one metric and print its RESULT line: the median
 * and the min/max of the runs. */
static void report_one_metric(const bench_opts *o, const char *name, run_fn run, void *params,
                              const char *key, int decimals)
{
    double values[1][MAX_RUNS];
    repeat_runs(o, name, run, params, 1, values);
    bench_summary s = bench_summarize(values[0], (size_t)o->runs);
    bench_line line;
    bench_line_begin(&line, name, o->workers);
    bench_line_add(&line, key, s.median, decimals);
    bench_line_add_range(&line, key, s, decimals);
    bench_line_print(&line);
}

/* ------------------------------------------------------------------------- */
/* W1 spawn_many: a task spawns N tasks, each one atomic increment.           */

typedef struct spawn_many {
    unsigned workers;
    uint64_t tasks;
    finish_line fl;
    int64_t elapsed_ns;
} spawn_many;

static int spawn_many_leaf(void *arg, void **result)
{
    finish_line_arrive(arg);
    return 0;
}

static int spawn_many_driver(void *arg, void **result)
{
    spawn_many *w = arg;
    finish_line_init(&w->fl, w->tasks, NULL);
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < w->tasks; i++)
        CHECK(rv_spawn(NULL, spawn_many_leaf, &w->fl, NULL, NULL));
    finish_line_wait(NULL, &w->fl, "the last spawned task");
    w->elapsed_ns = bench_now_ns() - t0;
    return 0;
}

static void spawn_many_run(void *params, double *metrics)
{
    spawn_many *w = params;
    run_driver(w->workers, spawn_many_driver, w);
    metrics[0] = (double)w->tasks / elapsed_s(0, w->elapsed_ns) / 1e6;
}

/* W1r spawn_remote: the same, but the spawner is this plain thread. */
static void spawn_remote_run(void *params, double *metrics)
{
    spawn_many *w = params;
    rv_runtime *rt = runtime_start(w->workers);
    finish_line_init(&w->fl, w->tasks, rt);
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < w->tasks; i++)
        CHECK(rv_spawn(rt, spawn_many_leaf, &w->fl, NULL, NULL));
    finish_line_wait(rt, &w->fl, "the last spawned task");
    w->elapsed_ns = bench_now_ns() - t0;
    runtime_stop(rt);
    metrics[0] = (double)w->tasks / elapsed_s(0, w->elapsed_ns) / 1e6;
}

static void workload_spawn(const bench_opts *o, const char *name, bool remote)
{
    spawn_many w = {.workers = o->workers};
    if (remote)
        w.tasks = o->quick ? 10000 : 100000;
    else
        w.tasks = o->quick ? 100000 : 1000000;
    fprintf(stderr, "ravel-bench: %s: N=%llu tasks spawned from %s\n", name,
            (unsigned long long)w.tasks, remote ? "a plain thread" : "a task");
    report_one_metric(o, name, remote ? spawn_remote_run : spawn_many_run, &w, "mtasks_per_s", 3);
}

static void workload_spawn_many(const bench_opts *o) { workload_spawn(o, "spawn_many", false); }

static void workload_spawn_remote(const bench_opts *o) { workload_spawn(o, "spawn_remote", true); }

/* ------------------------------------------------------------------------- */
/* W2 yield_many: T tasks each yield Y times.                                 */

typedef struct yield_many {
    unsigned workers;
    unsigned tasks;
    unsigned yields;
    finish_line fl;
    int64_t elapsed_ns;
} yield_many;

static int yield_many_task(void *arg, void **result)
{
    yield_many *w = arg;
    for (unsigned i = 0; i < w->yields; i++)
        CHECK(rv_yield());
    finish_line_arrive(&w->fl);
    return 0;
}

static int yield_many_driver(void *arg, void **result)
{
    yield_many *w = arg;
    finish_line_init(&w->fl, w->tasks, NULL);
    int64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < w->tasks; i++)
        CHECK(rv_spawn(NULL, yield_many_task, w, NULL, NULL));
    finish_line_wait(NULL, &w->fl, "the last yielding task");
    w->elapsed_ns = bench_now_ns() - t0;
    return 0;
}

static void yield_many_run(void *params, double *metrics)
{
    yield_many *w = params;
    run_driver(w->workers, yield_many_driver, w);
    metrics[0] = (double)w->elapsed_ns / ((double)w->tasks * w->yields);
}

static void workload_yield_many(const bench_opts *o)
{
    yield_many w = {.workers = o->workers, .tasks = 200, .yields = o->quick ? 100 : 1000};
    fprintf(stderr, "ravel-bench: yield_many: T=%u tasks x %u yields\n", w.tasks, w.yields);
    report_one_metric(o, "yield_many", yield_many_run, &w, "ns_per_yield", 1);
}

/* ------------------------------------------------------------------------- */
/* W3 ping_pong: P pairs, R round trips each, one fresh future per message.   */
/*
 * Each message is a future whose result is the future the answer will come
 * through, as a oneshot channel that carries the next oneshot's sender:
 *
 *   pinger: pong = new; set_result(ping, pong); next_ping = await(pong)
 *   ponger: pong = await(ping); next_ping = new; set_result(pong, next_ping)
 *
 * The ponger answers the last round with NULL. Every future is created with
 * two references, one for the side that completes it and one for the side
 * that awaits it; each side drops its own when done with it.
 */

typedef struct ping_pong {
    unsigned workers;
    unsigned pairs;
    unsigned rounds;
    finish_line fl;
    int64_t elapsed_ns;
} ping_pong;

typedef struct ping_pong_pair {
    ping_pong *w;
    rv_future *first_ping;
} ping_pong_pair;

static rv_future *message_new(void)
{
    rv_future *f;
    CHECK(rv_future_new(NULL, &f));
    rv_future_ref(f);
    return f;
}

static int pinger_task(void *arg, void **result)
{
    ping_pong_pair *pair = arg;
    ping_pong *w = pair->w;
    rv_future *ping = pair->first_ping;
    for (unsigned r = 0; r < w->rounds; r++) {
        rv_future *pong = message_new();
        CHECK(rv_future_set_result(ping, pong));
        CHECK(rv_future_release(ping));
        void *next_ping;
        CHECK(rv_await(pong, &next_ping));
        CHECK(rv_future_release(pong));
        ping = next_ping;
    }
    finish_line_arrive(&w->fl);
    return 0;
}

static int ponger_task(void *arg, void **result)
{
    ping_pong_pair *pair = arg;
    unsigned rounds = pair->w->rounds;
    rv_future *ping = pair->first_ping;
    for (unsigned r = 0; r < rounds; r++) {
        void *pong;
        CHECK(rv_await(ping, &pong));
        CHECK(rv_future_release(ping));
        rv_future *next_ping = r + 1 < rounds ? message_new() : NULL;
        CHECK(rv_future_set_result(pong, next_ping));
        CHECK(rv_future_release(pong));
        ping = next_ping;
    }
    return 0;
}

static int ping_pong_driver(void *arg, void **result)
{
    ping_pong *w = arg;
    ping_pong_pair *pairs = calloc(w->pairs, sizeof *pairs);
    if (pairs == NULL)
        CHECK(-ENOMEM);
    finish_line_init(&w->fl, w->pairs, NULL);
    int64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < w->pairs; i++) {
        pairs[i].w = w;
        pairs[i].first_ping = message_new();
        CHECK(rv_spawn(NULL, ponger_task, &pairs[i], NULL, NULL));
        CHECK(rv_spawn(NULL, pinger_task, &pairs[i], NULL, NULL));
    }
    finish_line_wait(NULL, &w->fl, "the last ping-pong pair");
    w->elapsed_ns = bench_now_ns() - t0;
    /* The pongers may still be returning from their last set_result; they no
     * longer touch their pair, so freeing now is safe. */
    free(pairs);
    return 0;
}

static void ping_pong_run(void *params, double *metrics)
{
    ping_pong *w = params;
    run_driver(w->workers, ping_pong_driver, w);
    metrics[0] = (double)w->pairs * w->rounds / elapsed_s(0, w->elapsed_ns);
}

static void workload_ping_pong(const bench_opts *o)
{
    ping_pong w = {.workers = o->workers, .pairs = o->quick ? 100 : 1000, .rounds = 100};
    fprintf(stderr, "ravel-bench: ping_pong: P=%u pairs x R=%u round trips\n", w.pairs, w.rounds);
    report_one_metric(o, "ping_pong", ping_pong_run, &w, "round_trips_per_s", 0);
}

/* ------------------------------------------------------------------------- */
/* W4 chained_spawn: chains of D tasks, each spawning the next; C chains.     */

typedef struct chained_spawn {
    unsigned workers;
    unsigned chains;
    unsigned depth;
    int64_t elapsed_ns;
} chained_spawn;

/* Only one task of a chain touches it at a time: each hop updates it before
 * spawning the next, and the spawn orders the two. */
typedef struct chain {
    unsigned depth;
    unsigned hops;
    rv_future *done;
} chain;

static int chain_hop(void *arg, void **result)
{
    chain *c = arg;
    if (++c->hops < c->depth) {
        CHECK(rv_spawn(NULL, chain_hop, c, NULL, NULL));
        return 0;
    }
    /* The chain lives on the driver's stack: copy before completing. */
    rv_future *done = c->done;
    CHECK(rv_future_set_result(done, NULL));
    CHECK(rv_future_release(done));
    return 0;
}

static int chained_spawn_driver(void *arg, void **result)
{
    chained_spawn *w = arg;
    int64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < w->chains; i++) {
        chain c = {.depth = w->depth, .hops = 0};
        CHECK(rv_future_new(NULL, &c.done));
        rv_future_ref(c.done); /* the last hop's */
        CHECK(rv_spawn(NULL, chain_hop, &c, NULL, NULL));
        await_or_die(NULL, c.done, WAIT_TIMEOUT_NS, "the end of a chain");
        CHECK(rv_future_release(c.done));
    }
    w->elapsed_ns = bench_now_ns() - t0;
    return 0;
}

static void chained_spawn_run(void *params, double *metrics)
{
    chained_spawn *w = params;
    run_driver(w->workers, chained_spawn_driver, w);
    metrics[0] = (double)w->elapsed_ns / ((double)w->chains * w->depth);
}

static void workload_chained_spawn(const bench_opts *o)
{
    chained_spawn w = {.workers = o->workers, .chains = o->quick ? 10 : 100, .depth = 1000};
    fprintf(stderr, "ravel-bench: chained_spawn: %u chains of D=%u tasks\n", w.chains, w.depth);
    report_one_metric(o, "chained_spawn", chained_spawn_run, &w, "ns_per_hop", 1);
}

/* ------------------------------------------------------------------------- */
/* W5 fib: fork-join fib(n) with tasks, against the plain recursion.          */

typedef struct fib_bench {
    unsigned workers;
    int n;
    long expected;
    int64_t elapsed_ns;
} fib_bench;

static long fib_forkjoin(int n);

static int fib_task(void *arg, void **result)
{
    *result = (void *)(intptr_t)fib_forkjoin((int)(intptr_t)arg);
    return 0;
}

/* fib(n) = spawn fib(n-1); x = fib(n-2) inline; await the child; x + child. */
static long fib_forkjoin(int n)
{
    if (n < 2)
        return n;
    rv_task *child;
    CHECK(rv_spawn(NULL, fib_task, (void *)(intptr_t)(n - 1), NULL, &child));
    long x = fib_forkjoin(n - 2);
    void *child_value;
    CHECK(rv_await(rv_task_future(child), &child_value));
    CHECK(rv_task_release(child));
    return x + (long)(intptr_t)child_value;
}

/* The baseline: the same recursion with no tasks. noinline and the volatile
 * argument keep the compiler from folding it into a constant. */
/* The serial baseline has the same shape as the task version: both calls are
 * real recursive calls. The empty asm after them keeps GCC from turning the
 * last one into a loop with an accumulator (which it does at -O2 and makes fib(27) about 4x faster
 * than any recursion, so `overhead` would compare against a different algorithm). */
static __attribute__((noinline)) long fib_serial(int n)
{
    if (n < 2)
        return n;
    long x = fib_serial(n - 2);
    long y = fib_serial(n - 1);
    __asm__ __volatile__("" : "+r"(x), "+r"(y));
    return x + y;
}

static int fib_driver(void *arg, void **result)
{
    fib_bench *w = arg;
    int64_t t0 = bench_now_ns();
    long value = fib_forkjoin(w->n);
    w->elapsed_ns = bench_now_ns() - t0;
    if (value != w->expected) {
        fprintf(stderr, "ravel-bench: fib: fib(%d) gave %ld, expected %ld\n", w->n, value,
                w->expected);
        abort();
    }
    return 0;
}

static void fib_tasks_run(void *params, double *metrics)
{
    fib_bench *w = params;
    run_driver(w->workers, fib_driver, w);
    metrics[0] = (double)w->elapsed_ns / (double)NS_PER_MS;
}

static void fib_serial_run(void *params, double *metrics)
{
    fib_bench *w = params;
    volatile int n = w->n;
    int64_t t0 = bench_now_ns();
    long value = fib_serial(n);
    w->elapsed_ns = bench_now_ns() - t0;
    if (value != w->expected) {
        fprintf(stderr, "ravel-bench: fib: serial fib(%d) gave %ld\n", w->n, value);
        abort();
    }
    metrics[0] = (double)w->elapsed_ns / (double)NS_PER_MS;
}

static void workload_fib(const bench_opts *o)
{
    int n = o->quick ? 22 : 27;
    fib_bench w = {.n = n, .expected = fib_serial(n)};
    fprintf(stderr, "ravel-bench: fib: fib(%d) with %u workers, 1 worker and serially\n", n,
            o->workers);

    double many[1][MAX_RUNS], one[1][MAX_RUNS], serial[1][MAX_RUNS];
    w.workers = o->workers;
    repeat_runs(o, "fib tasks", fib_tasks_run, &w, 1, many);
    if (o->workers != 1) {
        w.workers = 1;
        repeat_runs(o, "fib 1 worker", fib_tasks_run, &w, 1, one);
    }
    repeat_runs(o, "fib serial", fib_serial_run, &w, 1, serial);

    bench_summary s_many = bench_summarize(many[0], (size_t)o->runs);
    double ms_1w = o->workers == 1 ? s_many.median : bench_median(one[0], (size_t)o->runs);
    double ms_serial = bench_median(serial[0], (size_t)o->runs);

    char main_key[32];
    snprintf(main_key, sizeof main_key, "ms_%uw", o->workers);
    bench_line line;
    bench_line_begin(&line, "fib", o->workers);
    bench_line_add(&line, main_key, s_many.median, 3);
    if (o->workers != 1)
        bench_line_add(&line, "ms_1w", ms_1w, 3);
    bench_line_add(&line, "ms_serial", ms_serial, 3);
    bench_line_add(&line, "speedup", ms_1w / s_many.median, 3);
    bench_line_add(&line, "overhead", ms_1w / ms_serial, 3);
    bench_line_add_range(&line, main_key, s_many, 3);
    bench_line_print(&line);
}

/* ------------------------------------------------------------------------- */
/* W6 sleep_many: N tasks sleep 10 ms then count down; wall time and memory. */

typedef struct sleep_many {
    unsigned workers;
    uint64_t tasks;
    int64_t sleep_ns;
    finish_line fl;
    int64_t elapsed_ns;
    int64_t rss_before;
    int64_t rss_peak;
} sleep_many;

static int sleep_many_task(void *arg, void **result)
{
    sleep_many *w = arg;
    CHECK(rv_sleep(w->sleep_ns));
    finish_line_arrive(&w->fl);
    return 0;
}

static bool peak_reset_warned;

static int sleep_many_driver(void *arg, void **result)
{
    sleep_many *w = arg;
    /* The baseline is the running runtime with nothing spawned yet, and none
     * of the previous run's freed memory still cached by the allocator. */
    bench_release_cached_memory();
    int rc = bench_rss_reset_peak();
    if (rc < 0 && !peak_reset_warned) {
        peak_reset_warned = true;
        fprintf(stderr,
                "ravel-bench: sleep_many: cannot reset VmHWM (%s); bytes_per_task "
                "includes earlier peaks\n",
                strerror(-rc));
    }
    w->rss_before = bench_rss_current_bytes();
    finish_line_init(&w->fl, w->tasks, NULL);
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < w->tasks; i++)
        CHECK(rv_spawn(NULL, sleep_many_task, w, NULL, NULL));
    finish_line_wait(NULL, &w->fl, "the last sleeping task");
    w->elapsed_ns = bench_now_ns() - t0;
    w->rss_peak = bench_rss_peak_bytes();
    return 0;
}

static void sleep_many_run(void *params, double *metrics)
{
    sleep_many *w = params;
    run_driver(w->workers, sleep_many_driver, w);
    metrics[0] = (double)w->elapsed_ns / (double)NS_PER_MS;
    metrics[1] = (double)(w->rss_peak - w->rss_before) / (double)w->tasks;
}

static void workload_sleep_many(const bench_opts *o)
{
    sleep_many w = {.workers = o->workers, .sleep_ns = 10 * NS_PER_MS};
    w.tasks = o->quick ? 10000 : 100000;
    uint64_t big = o->quick ? 100000 : 1000000;
    fprintf(stderr, "ravel-bench: sleep_many: N=%llu tasks sleeping 10 ms, then N=%llu once%s\n",
            (unsigned long long)w.tasks, (unsigned long long)big,
            o->quick ? " (--quick: N scaled down 10x; bytes_per_task_1m is for N=100,000)" : "");

    double values[2][MAX_RUNS];
    repeat_runs(o, "sleep_many", sleep_many_run, &w, 2, values);
    bench_summary wall = bench_summarize(values[0], (size_t)o->runs);
    double bytes = bench_median(values[1], (size_t)o->runs);
    fprintf(stderr, "ravel-bench: sleep_many: N=%llu: wall_ms=%.2f bytes_per_task=%.0f\n",
            (unsigned long long)w.tasks, wall.median, bytes);

    /* Memory only, so one run: it is the RSS that matters, and it does not
     * vary from run to run the way time does. */
    double big_metrics[MAX_METRICS];
    w.tasks = big;
    sleep_many_run(&w, big_metrics);
    fprintf(stderr, "ravel-bench: sleep_many: N=%llu: wall_ms=%.2f bytes_per_task=%.0f\n",
            (unsigned long long)big, big_metrics[0], big_metrics[1]);

    bench_line line;
    bench_line_begin(&line, "sleep_many", o->workers);
    bench_line_add(&line, "wall_ms", wall.median, 2);
    bench_line_add(&line, "bytes_per_task", bytes, 0);
    bench_line_add(&line, "bytes_per_task_1m", big_metrics[1], 0);
    bench_line_add_range(&line, "wall_ms", wall, 2);
    bench_line_print(&line);
}

/* ------------------------------------------------------------------------- */
/* parked_memory (not in WORKLOADS.md): what one parked task costs.           */
/*
 * W6's bytes_per_task_1m is the workload's peak over N, and spawning a
 * million tasks outlasts their 10 ms sleep, so early ones end (and their
 * stacks are reused) before the last start. Here N tasks are all asleep at
 * once (60 s sleeps, cancelled by the shutdown that ends the run), and the
 * figure is (RSS with all parked - RSS before spawning) / N: the cost behind
 * the "<= 4.6 KiB per parked task at 1,000,000".
 */

typedef struct parked_memory {
    unsigned workers;
    uint64_t tasks;
    atomic_uint_fast64_t parked;
    int64_t rss_before;
    int64_t rss_parked;
} parked_memory;

static int parked_task(void *arg, void **result)
{
    parked_memory *w = arg;
    atomic_fetch_add(&w->parked, 1);
    int rc = rv_sleep(60 * NS_PER_S); /* ends cancelled, at shutdown */
    return rc == -ECANCELED ? 0 : rc;
}

static int parked_driver(void *arg, void **result)
{
    parked_memory *w = arg;
    bench_release_cached_memory();
    w->rss_before = bench_rss_current_bytes();
    for (uint64_t i = 0; i < w->tasks; i++)
        CHECK(rv_spawn(NULL, parked_task, w, NULL, NULL));
    int64_t deadline = bench_now_ns() + 60 * NS_PER_S;
    while (atomic_load(&w->parked) < w->tasks) {
        if (bench_now_ns() > deadline)
            CHECK(-ETIMEDOUT);
        CHECK(rv_sleep(NS_PER_MS));
    }
    CHECK(rv_sleep(20 * NS_PER_MS)); /* the last counted ones reach their sleep */
    w->rss_parked = bench_rss_current_bytes();
    return 0;
}

static void workload_parked_memory(const bench_opts *o)
{
    parked_memory w = {.workers = o->workers, .tasks = o->quick ? 100000 : 1000000};
    atomic_init(&w.parked, 0);
    fprintf(stderr, "ravel-bench: parked_memory: N=%llu tasks parked at once (one run)\n",
            (unsigned long long)w.tasks);
    run_driver(w.workers, parked_driver, &w);
    double bytes = (double)(w.rss_parked - w.rss_before) / (double)w.tasks;
    bench_summary s = {.median = bytes, .min = bytes, .max = bytes};
    bench_line line;
    bench_line_begin(&line, "parked_memory", o->workers);
    bench_line_add(&line, "bytes_per_parked_task", bytes, 0);
    bench_line_add(&line, "tasks", (double)w.tasks, 0);
    bench_line_add_range(&line, "bytes_per_parked_task", s, 0);
    bench_line_print(&line);
}

/* ------------------------------------------------------------------------- */
/* W7 to_thread: C tasks each offload N calls to the blocking pool in turn.   */
/*
 * The blocking function returns at once, so what is measured is the pool's
 * round trip: the submission, a pool thread taking the call and completing
 * the future, and the task resuming on a worker. Each task times every one
 * of its offloads around rv_to_thread and writes the sample into its own
 * slice of an array allocated (and touched) once before the runs, so nothing
 * is allocated and no shared counter is touched on the measured path. The
 * percentiles are over all C x N samples of a run; the RESULT line has their
 * median over the runs. The function hands its argument back as its result
 * and the task checks it, so a call that did not run cannot pass.
 */

#define TO_THREAD_TASKS 64

typedef struct to_thread_bench to_thread_bench;

typedef struct to_thread_task_arg {
    to_thread_bench *w;
    double *samples; /* this task's `offloads` latencies, ns */
} to_thread_task_arg;

struct to_thread_bench {
    unsigned workers;
    unsigned offloads; /* per task */
    double *samples;   /* TO_THREAD_TASKS * offloads latencies, ns */
    to_thread_task_arg args[TO_THREAD_TASKS];
    finish_line fl;
    int64_t elapsed_ns;
    uint64_t pool_threads; /* blocking pool threads alive at the finish line */
};

static int to_thread_blocking(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int to_thread_task(void *arg, void **result)
{
    to_thread_task_arg *a = arg;
    to_thread_bench *w = a->w;
    double *samples = a->samples;
    for (unsigned i = 0; i < w->offloads; i++) {
        void *back;
        int64_t t0 = bench_now_ns();
        CHECK(rv_to_thread(to_thread_blocking, a, NULL, &back));
        samples[i] = (double)(bench_now_ns() - t0);
        if (back != a) {
            fprintf(stderr, "ravel-bench: to_thread: an offload gave back %p, not %p\n", back,
                    (void *)a);
            abort();
        }
    }
    finish_line_arrive(&w->fl);
    return 0;
}

static int to_thread_driver(void *arg, void **result)
{
    to_thread_bench *w = arg;
    finish_line_init(&w->fl, TO_THREAD_TASKS, NULL);
    int64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < TO_THREAD_TASKS; i++)
        CHECK(rv_spawn(NULL, to_thread_task, &w->args[i], NULL, NULL));
    finish_line_wait(NULL, &w->fl, "the last offloading task");
    w->elapsed_ns = bench_now_ns() - t0;
    rv_runtime_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    w->pool_threads = rv_runtime_stats_get(rv_runtime_current(), &s) == 0 ? s.blocking_threads : 0;
    return 0;
}

static void to_thread_run(void *params, double *metrics)
{
    to_thread_bench *w = params;
    size_t n = (size_t)TO_THREAD_TASKS * w->offloads;
    run_driver(w->workers, to_thread_driver, w);
    metrics[0] = (double)n / elapsed_s(0, w->elapsed_ns);
    metrics[1] = bench_percentile(w->samples, n, 50) / 1e3;
    metrics[2] = bench_percentile(w->samples, n, 99) / 1e3;
    metrics[3] = (double)w->pool_threads;
}

static void workload_to_thread(const bench_opts *o)
{
    to_thread_bench w = {.workers = o->workers, .offloads = o->quick ? 100 : 1000};
    size_t n = (size_t)TO_THREAD_TASKS * w.offloads;
    w.samples = calloc(n, sizeof *w.samples);
    if (w.samples == NULL)
        CHECK(-ENOMEM);
    memset(w.samples, 0, n * sizeof *w.samples); /* fault the pages in now */
    for (unsigned i = 0; i < TO_THREAD_TASKS; i++)
        w.args[i] = (to_thread_task_arg){.w = &w, .samples = w.samples + (size_t)i * w.offloads};
    fprintf(stderr, "ravel-bench: to_thread: C=%u tasks x %u sequential rv_to_thread offloads\n",
            TO_THREAD_TASKS, w.offloads);

    double values[4][MAX_RUNS];
    repeat_runs(o, "to_thread", to_thread_run, &w, 4, values);
    bench_summary rate = bench_summarize(values[0], (size_t)o->runs);
    fprintf(stderr, "ravel-bench: to_thread: %.0f blocking pool threads at the finish line\n",
            bench_median(values[3], (size_t)o->runs));
    bench_line line;
    bench_line_begin(&line, "to_thread", o->workers);
    bench_line_add(&line, "offloads_per_s", rate.median, 0);
    bench_line_add(&line, "p50_us", bench_median(values[1], (size_t)o->runs), 2);
    bench_line_add(&line, "p99_us", bench_median(values[2], (size_t)o->runs), 2);
    bench_line_add_range(&line, "offloads_per_s", rate, 0);
    bench_line_print(&line);
    free(w.samples);
}

/* ------------------------------------------------------------------------- */
/* W8 threadsafe_rtt: a plain thread submits one coroutine at a time.         */
/*
 * The plain thread is this one (the main thread, never a worker): it submits
 * with rv_spawn_threadsafe and blocks in rv_future_wait until the coroutine's
 * result is there, then submits the next. One sample per round trip, from
 * just before the submission to just after the wait returns; the future is
 * released and its value checked outside that interval. Percentiles are over
 * the run's samples, their median over the runs.
 */

typedef struct threadsafe_rtt {
    unsigned workers;
    unsigned trips;
    double *samples; /* trips latencies, ns */
} threadsafe_rtt;

static int threadsafe_rtt_task(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static void threadsafe_rtt_run(void *params, double *metrics)
{
    threadsafe_rtt *w = params;
    rv_runtime *rt = runtime_start(w->workers);
    for (unsigned i = 0; i < w->trips; i++) {
        void *sent = (void *)(uintptr_t)(i + 1);
        rv_future *f;
        int64_t t0 = bench_now_ns();
        CHECK(rv_spawn_threadsafe(rt, threadsafe_rtt_task, sent, NULL, &f));
        await_or_die(rt, f, WAIT_TIMEOUT_NS, "a coroutine submitted with rv_spawn_threadsafe");
        w->samples[i] = (double)(bench_now_ns() - t0);
        void *back;
        CHECK(rv_future_result(f, &back));
        if (back != sent) {
            fprintf(stderr, "ravel-bench: threadsafe_rtt: round trip %u gave back %p, not %p\n", i,
                    back, sent);
            abort();
        }
        CHECK(rv_future_release(f));
    }
    runtime_stop(rt);
    metrics[0] = bench_percentile(w->samples, w->trips, 50) / 1e3;
    metrics[1] = bench_percentile(w->samples, w->trips, 99) / 1e3;
}

static void workload_threadsafe_rtt(const bench_opts *o)
{
    threadsafe_rtt w = {.workers = o->workers, .trips = o->quick ? 2000 : 20000};
    w.samples = calloc(w.trips, sizeof *w.samples);
    if (w.samples == NULL)
        CHECK(-ENOMEM);
    memset(w.samples, 0, w.trips * sizeof *w.samples); /* fault the pages in now */
    fprintf(stderr,
            "ravel-bench: threadsafe_rtt: %u round trips, rv_spawn_threadsafe + rv_future_wait "
            "from the main thread\n",
            w.trips);

    double values[2][MAX_RUNS];
    repeat_runs(o, "threadsafe_rtt", threadsafe_rtt_run, &w, 2, values);
    bench_summary p50 = bench_summarize(values[0], (size_t)o->runs);
    bench_line line;
    bench_line_begin(&line, "threadsafe_rtt", o->workers);
    bench_line_add(&line, "p50_us", p50.median, 2);
    bench_line_add(&line, "p99_us", bench_median(values[1], (size_t)o->runs), 2);
    bench_line_add_range(&line, "p50_us", p50, 2);
    bench_line_print(&line);
    free(w.samples);
}

/* ------------------------------------------------------------------------- */
/* W10 cpu_io_mix: T tasks each loop: sleep 1 ms, then burn ~100 us of CPU.   */
/*
 * The burn is a 64-bit xorshift loop. Its iteration count is calibrated at
 * the start of every run, on this thread before the runtime starts (so
 * before the clock): the rate comes from the fastest of a few bursts of
 * about 2 ms, the count is set from it, and then bursts of that count are
 * timed and the count rescaled until their median is within 2% of 100 us.
 * The ideal wall uses the CPU the burns actually took: each task times its
 * burns (two clock reads around each, ~40 ns against 100 us), so a burn that
 * runs slower inside the runtime than in the calibration (a calibration on a
 * cold core, a timer interrupt) is not charged to the scheduler:
 *
 *   ideal = sum of burn times / cores,  cores = min(workers, online CPUs)
 *   efficiency = ideal / measured wall
 *
 * The ideal leaves out the sleeps: all tasks sleep at once, so with enough
 * tasks the CPU is the bound. Each task folds its final xorshift state into
 * a shared word, so the compiler cannot drop the loop.
 */

typedef struct cpu_io_mix {
    unsigned workers;
    unsigned tasks;
    unsigned rounds;
    int64_t sleep_ns;
    int64_t burn_target_ns;
    uint64_t burn_iters; /* calibrated per run */
    double burn_ns;      /* what burn_iters measured to take */
    atomic_uint_fast64_t sink;
    atomic_int_fast64_t burned_ns; /* the burns' total, as timed in the tasks */
    finish_line fl;
    int64_t elapsed_ns;
} cpu_io_mix;

static __attribute__((noinline)) uint64_t xorshift_burn(uint64_t x, uint64_t iters)
{
    for (uint64_t i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        __asm__ __volatile__("" : "+r"(x)); /* one real iteration per count */
    }
    return x;
}

#define BURN_SEED UINT64_C(0x9E3779B97F4A7C15)
#define BURN_SAMPLES 21

/* How long a burn of `iters` takes, ns. */
static int64_t burn_time_ns(uint64_t iters, uint64_t *sink)
{
    int64_t t0 = bench_now_ns();
    *sink ^= xorshift_burn(BURN_SEED ^ *sink, iters);
    return bench_now_ns() - t0;
}

static void cpu_io_mix_calibrate(cpu_io_mix *w)
{
    uint64_t sink = 0;
    /* A rate from bursts of at least 2 ms: the fastest of 3 at that size. */
    uint64_t iters = 1024;
    int64_t best;
    for (;;) {
        best = INT64_MAX;
        for (int i = 0; i < 3; i++) {
            int64_t t = burn_time_ns(iters, &sink);
            if (t < best)
                best = t;
        }
        if (best >= 2 * NS_PER_MS || iters >= (UINT64_C(1) << 40))
            break;
        iters *= 2;
    }
    double per_iter = (double)best / (double)iters;
    iters = (uint64_t)((double)w->burn_target_ns / per_iter + 0.5);
    /* The count itself, timed as the tasks will run it. */
    double samples[BURN_SAMPLES], median = 0;
    for (int pass = 0; pass < 4; pass++) {
        if (iters == 0)
            iters = 1;
        for (int i = 0; i < BURN_SAMPLES; i++)
            samples[i] = (double)burn_time_ns(iters, &sink);
        median = bench_median(samples, BURN_SAMPLES);
        double ratio = (double)w->burn_target_ns / median;
        if (ratio > 0.98 && ratio < 1.02)
            break;
        iters = (uint64_t)((double)iters * ratio + 0.5);
    }
    w->burn_iters = iters;
    w->burn_ns = median;
    atomic_fetch_xor_explicit(&w->sink, sink, memory_order_relaxed);
}

static int cpu_io_mix_task(void *arg, void **result)
{
    cpu_io_mix *w = arg;
    uint64_t x = BURN_SEED;
    int64_t burned = 0;
    for (unsigned r = 0; r < w->rounds; r++) {
        CHECK(rv_sleep(w->sleep_ns));
        int64_t t0 = bench_now_ns();
        x = xorshift_burn(x, w->burn_iters);
        burned += bench_now_ns() - t0;
    }
    atomic_fetch_xor_explicit(&w->sink, x, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->burned_ns, burned, memory_order_relaxed);
    finish_line_arrive(&w->fl);
    return 0;
}

static int cpu_io_mix_driver(void *arg, void **result)
{
    cpu_io_mix *w = arg;
    finish_line_init(&w->fl, w->tasks, NULL);
    int64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < w->tasks; i++)
        CHECK(rv_spawn(NULL, cpu_io_mix_task, w, NULL, NULL));
    finish_line_wait(NULL, &w->fl, "the last sleep-and-burn task");
    w->elapsed_ns = bench_now_ns() - t0;
    return 0;
}

static unsigned cpu_io_mix_cores(unsigned workers)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 && (unsigned long)online < workers ? (unsigned)online : workers;
}

static void cpu_io_mix_run(void *params, double *metrics)
{
    cpu_io_mix *w = params;
    cpu_io_mix_calibrate(w);
    atomic_store(&w->burned_ns, 0);
    run_driver(w->workers, cpu_io_mix_driver, w);
    double burned = (double)atomic_load(&w->burned_ns);
    double ideal_ns = burned / (double)cpu_io_mix_cores(w->workers);
    metrics[0] = (double)w->elapsed_ns / (double)NS_PER_MS;
    metrics[1] = ideal_ns / (double)w->elapsed_ns;
    metrics[2] = burned / ((double)w->tasks * w->rounds) / 1e3; /* mean burn, us */
    metrics[3] = (double)w->burn_iters;
}

static void workload_cpu_io_mix(const bench_opts *o)
{
    cpu_io_mix w = {.workers = o->workers,
                    .tasks = o->quick ? 200 : 2000,
                    .rounds = 10,
                    .sleep_ns = NS_PER_MS,
                    .burn_target_ns = 100 * 1000};
    atomic_init(&w.sink, 0);
    atomic_init(&w.burned_ns, 0);
    fprintf(stderr,
            "ravel-bench: cpu_io_mix: %u tasks x %u rounds of sleep 1 ms + ~100 us xorshift "
            "burn; ideal wall over %u core%s\n",
            w.tasks, w.rounds, cpu_io_mix_cores(w.workers),
            cpu_io_mix_cores(w.workers) == 1 ? "" : "s");

    double values[4][MAX_RUNS];
    repeat_runs(o, "cpu_io_mix", cpu_io_mix_run, &w, 4, values);
    bench_summary wall = bench_summarize(values[0], (size_t)o->runs);
    fprintf(stderr,
            "ravel-bench: cpu_io_mix: burns of %.0f iterations took %.2f us in the tasks "
            "(mean; median of runs)\n",
            bench_median(values[3], (size_t)o->runs), bench_median(values[2], (size_t)o->runs));
    bench_line line;
    bench_line_begin(&line, "cpu_io_mix", o->workers);
    bench_line_add(&line, "wall_ms", wall.median, 2);
    bench_line_add(&line, "efficiency", bench_median(values[1], (size_t)o->runs), 3);
    bench_line_add_range(&line, "wall_ms", wall, 2);
    bench_line_print(&line);
}

/* ------------------------------------------------------------------------- */
/* W11 queue_mpmc: 4 producers and 4 consumers share one bounded queue.       */
/*
 * The producers split 1..N between them and put each integer once (as
 * (void *)(intptr_t)i, so that NULL is never an item); the last producer to
 * finish shuts the queue down (asyncio 3.13's Queue.shutdown, the analogue of
 * closing a Go channel or dropping Tokio's senders), and the consumers drain
 * what is left and end on -ESHUTDOWN. Each consumer marks every integer it
 * gets in a flag array and counts them. Exactly once is then checked after
 * the clock stops: every flag set, and the counts sum to N (so no integer was
 * taken twice either; a second sighting of a flag already set also aborts at
 * once). The flags are relaxed atomics, plain byte stores on x86-64 and
 * AArch64, so the check adds no read-modify-write to the measured path.
 *
 * The finish line counts the producers as well as the consumers: the last
 * producer may still be inside rv_queue_shutdown when the consumers end, and
 * the driver frees the queue once everyone has arrived.
 */

#define QUEUE_MPMC_PRODUCERS 4
#define QUEUE_MPMC_CONSUMERS 4
#define QUEUE_MPMC_CAPACITY 1024

typedef struct queue_mpmc queue_mpmc;

typedef struct queue_producer {
    queue_mpmc *w;
    uint64_t first; /* puts first+1 .. end */
    uint64_t end;
} queue_producer;

struct queue_mpmc {
    unsigned workers;
    uint64_t items;
    rv_queue *q;
    atomic_uchar *seen; /* seen[i - 1]: integer i was taken */
    atomic_uint_fast64_t taken;
    atomic_uint producers_done;
    queue_producer producers[QUEUE_MPMC_PRODUCERS];
    finish_line fl;
    int64_t elapsed_ns;
};

static int queue_producer_task(void *arg, void **result)
{
    queue_producer *p = arg;
    queue_mpmc *w = p->w;
    for (uint64_t i = p->first; i < p->end; i++)
        CHECK(rv_queue_put(w->q, (void *)(intptr_t)(i + 1), -1));
    if (atomic_fetch_add_explicit(&w->producers_done, 1, memory_order_acq_rel) + 1 ==
        QUEUE_MPMC_PRODUCERS)
        CHECK(rv_queue_shutdown(w->q, false, NULL));
    finish_line_arrive(&w->fl);
    return 0;
}

static int queue_consumer_task(void *arg, void **result)
{
    queue_mpmc *w = arg;
    uint64_t taken = 0;
    for (;;) {
        void *item;
        int rc = rv_queue_get(w->q, -1, &item);
        if (rc == -ESHUTDOWN)
            break;
        CHECK(rc);
        uint64_t value = (uint64_t)(uintptr_t)item;
        if (value == 0 || value > w->items) {
            fprintf(stderr, "ravel-bench: queue_mpmc: got %p, not an item put (1..%llu)\n", item,
                    (unsigned long long)w->items);
            abort();
        }
        if (atomic_load_explicit(&w->seen[value - 1], memory_order_relaxed)) {
            fprintf(stderr, "ravel-bench: queue_mpmc: integer %llu taken twice\n",
                    (unsigned long long)value);
            abort();
        }
        atomic_store_explicit(&w->seen[value - 1], 1, memory_order_relaxed);
        taken++;
    }
    atomic_fetch_add_explicit(&w->taken, taken, memory_order_relaxed);
    finish_line_arrive(&w->fl);
    return 0;
}

/* After the finish line: every integer arrived exactly once. */
static void queue_mpmc_check(queue_mpmc *w)
{
    uint64_t taken = atomic_load(&w->taken);
    uint64_t missing = 0, first_missing = 0;
    for (uint64_t i = 0; i < w->items; i++)
        if (!atomic_load_explicit(&w->seen[i], memory_order_relaxed) && missing++ == 0)
            first_missing = i + 1;
    if (taken != w->items || missing != 0) {
        fprintf(stderr,
                "ravel-bench: queue_mpmc: %llu integers put, %llu taken, %llu never arrived "
                "(the first: %llu)\n",
                (unsigned long long)w->items, (unsigned long long)taken,
                (unsigned long long)missing, (unsigned long long)first_missing);
        abort();
    }
}

static int queue_mpmc_driver(void *arg, void **result)
{
    queue_mpmc *w = arg;
    w->seen = calloc(w->items, sizeof *w->seen);
    if (w->seen == NULL)
        CHECK(-ENOMEM);
    atomic_init(&w->taken, 0);
    atomic_init(&w->producers_done, 0);
    CHECK(rv_queue_new(RV_QUEUE_FIFO, QUEUE_MPMC_CAPACITY, NULL, &w->q));
    for (unsigned p = 0; p < QUEUE_MPMC_PRODUCERS; p++) {
        w->producers[p].w = w;
        w->producers[p].first = w->items * p / QUEUE_MPMC_PRODUCERS;
        w->producers[p].end = w->items * (p + 1) / QUEUE_MPMC_PRODUCERS;
    }
    finish_line_init(&w->fl, QUEUE_MPMC_PRODUCERS + QUEUE_MPMC_CONSUMERS, NULL);

    int64_t t0 = bench_now_ns();
    for (unsigned c = 0; c < QUEUE_MPMC_CONSUMERS; c++)
        CHECK(rv_spawn(NULL, queue_consumer_task, w, NULL, NULL));
    for (unsigned p = 0; p < QUEUE_MPMC_PRODUCERS; p++)
        CHECK(rv_spawn(NULL, queue_producer_task, &w->producers[p], NULL, NULL));
    finish_line_wait(NULL, &w->fl, "the last producer or consumer");
    w->elapsed_ns = bench_now_ns() - t0;

    queue_mpmc_check(w);
    CHECK(rv_queue_free(w->q));
    w->q = NULL;
    free(w->seen);
    w->seen = NULL;
    return 0;
}

static void queue_mpmc_run(void *params, double *metrics)
{
    queue_mpmc *w = params;
    run_driver(w->workers, queue_mpmc_driver, w);
    metrics[0] = (double)w->items / elapsed_s(0, w->elapsed_ns) / 1e6;
}

static void workload_queue_mpmc(const bench_opts *o)
{
    queue_mpmc w = {.workers = o->workers, .items = o->quick ? 100000 : 1000000};
    fprintf(stderr,
            "ravel-bench: queue_mpmc: %u producers, %u consumers, N=%llu integers through a "
            "FIFO queue of %d\n",
            QUEUE_MPMC_PRODUCERS, QUEUE_MPMC_CONSUMERS, (unsigned long long)w.items,
            QUEUE_MPMC_CAPACITY);
    report_one_metric(o, "queue_mpmc", queue_mpmc_run, &w, "mitems_per_s", 3);
}

/* ------------------------------------------------------------------------- */
/* W12 lock_contended: T tasks take one lock I times each.                    */
/*
 * The counter is a plain uint64_t, incremented only with the lock held: the
 * check at the end (T * I) fails if the lock ever let two tasks in at once.
 * It lives in the struct whose address the lock calls receive, so the
 * compiler cannot keep it in a register across them.
 */

typedef struct lock_contended {
    unsigned workers;
    unsigned tasks;
    unsigned iterations;
    rv_lock lock;
    uint64_t counter;
    finish_line fl;
    int64_t elapsed_ns;
} lock_contended;

static int lock_contended_task(void *arg, void **result)
{
    lock_contended *w = arg;
    for (unsigned i = 0; i < w->iterations; i++) {
        CHECK(rv_lock_acquire(&w->lock));
        w->counter++;
        CHECK(rv_lock_release(&w->lock));
    }
    finish_line_arrive(&w->fl);
    return 0;
}

static int lock_contended_driver(void *arg, void **result)
{
    lock_contended *w = arg;
    CHECK(rv_lock_init(&w->lock));
    w->counter = 0;
    finish_line_init(&w->fl, w->tasks, NULL);
    int64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < w->tasks; i++)
        CHECK(rv_spawn(NULL, lock_contended_task, w, NULL, NULL));
    finish_line_wait(NULL, &w->fl, "the last task taking the lock");
    w->elapsed_ns = bench_now_ns() - t0;
    uint64_t expected = (uint64_t)w->tasks * w->iterations;
    if (w->counter != expected) {
        fprintf(stderr, "ravel-bench: lock_contended: counter is %llu, expected %llu\n",
                (unsigned long long)w->counter, (unsigned long long)expected);
        abort();
    }
    if (rv_lock_locked(&w->lock)) {
        fprintf(stderr, "ravel-bench: lock_contended: the lock is still held at the end\n");
        abort();
    }
    CHECK(rv_lock_destroy(&w->lock));
    return 0;
}

static void lock_contended_run(void *params, double *metrics)
{
    lock_contended *w = params;
    run_driver(w->workers, lock_contended_driver, w);
    metrics[0] = (double)w->elapsed_ns / ((double)w->tasks * w->iterations);
}

static void workload_lock_contended(const bench_opts *o)
{
    lock_contended w = {
        .workers = o->workers, .tasks = 8, .iterations = o->quick ? 10000 : 100000};
    fprintf(stderr, "ravel-bench: lock_contended: %u tasks x %u acquire/release pairs\n", w.tasks,
            w.iterations);
    report_one_metric(o, "lock_contended", lock_contended_run, &w, "ns_per_pair", 1);
}

/* ------------------------------------------------------------------------- */
/* lock_uncontended and event_set_wait (not in WORKLOADS.md): the fast paths. */
/*
 * One task (the driver) calls the primitive N times in a row with nobody else
 * using it: the cost of the path that never suspends. The calls are into the
 * library (not inlinable: it is a separate translation unit, linked without
 * LTO) and their results are checked, so the loops cannot be folded away.
 *
 * lock_uncontended: N acquire + release pairs on a free lock; ns_per_op is
 * the time of one call (wall / 2N), ns_per_pair that of a pair (wall / N).
 * event_set_wait: N waits on an event that is already set (ns_per_wait, the
 * main metric), then N sets of that same set event (ns_per_set), each loop
 * timed on its own.
 */

typedef struct sync_fast_path {
    unsigned workers;
    uint64_t ops;
    int64_t lock_ns;
    int64_t wait_ns;
    int64_t set_ns;
} sync_fast_path;

static int lock_uncontended_driver(void *arg, void **result)
{
    sync_fast_path *w = arg;
    rv_lock lock;
    CHECK(rv_lock_init(&lock));
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < w->ops; i++) {
        CHECK(rv_lock_acquire(&lock));
        CHECK(rv_lock_release(&lock));
    }
    w->lock_ns = bench_now_ns() - t0;
    if (rv_lock_locked(&lock)) {
        fprintf(stderr, "ravel-bench: lock_uncontended: the lock is still held at the end\n");
        abort();
    }
    CHECK(rv_lock_destroy(&lock));
    return 0;
}

static void lock_uncontended_run(void *params, double *metrics)
{
    sync_fast_path *w = params;
    run_driver(w->workers, lock_uncontended_driver, w);
    metrics[0] = (double)w->lock_ns / (2.0 * (double)w->ops);
    metrics[1] = (double)w->lock_ns / (double)w->ops;
}

static void workload_lock_uncontended(const bench_opts *o)
{
    sync_fast_path w = {.workers = o->workers, .ops = o->quick ? 1000000 : 10000000};
    fprintf(stderr,
            "ravel-bench: lock_uncontended: N=%llu acquire/release pairs on a free lock, one "
            "task\n",
            (unsigned long long)w.ops);
    double values[2][MAX_RUNS];
    repeat_runs(o, "lock_uncontended", lock_uncontended_run, &w, 2, values);
    bench_summary per_op = bench_summarize(values[0], (size_t)o->runs);
    bench_line line;
    bench_line_begin(&line, "lock_uncontended", o->workers);
    bench_line_add(&line, "ns_per_op", per_op.median, 2);
    bench_line_add(&line, "ns_per_pair", bench_median(values[1], (size_t)o->runs), 2);
    bench_line_add_range(&line, "ns_per_op", per_op, 2);
    bench_line_print(&line);
}

static int event_set_wait_driver(void *arg, void **result)
{
    sync_fast_path *w = arg;
    rv_event event;
    CHECK(rv_event_init(&event));
    CHECK(rv_event_set(&event));
    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < w->ops; i++)
        CHECK(rv_event_wait(&event));
    int64_t t1 = bench_now_ns();
    for (uint64_t i = 0; i < w->ops; i++)
        CHECK(rv_event_set(&event));
    int64_t t2 = bench_now_ns();
    w->wait_ns = t1 - t0;
    w->set_ns = t2 - t1;
    if (!rv_event_is_set(&event)) {
        fprintf(stderr, "ravel-bench: event_set_wait: the event is not set at the end\n");
        abort();
    }
    CHECK(rv_event_destroy(&event));
    return 0;
}

static void event_set_wait_run(void *params, double *metrics)
{
    sync_fast_path *w = params;
    run_driver(w->workers, event_set_wait_driver, w);
    metrics[0] = (double)w->wait_ns / (double)w->ops;
    metrics[1] = (double)w->set_ns / (double)w->ops;
}

static void workload_event_set_wait(const bench_opts *o)
{
    sync_fast_path w = {.workers = o->workers, .ops = o->quick ? 1000000 : 10000000};
    fprintf(stderr,
            "ravel-bench: event_set_wait: N=%llu waits on a set event, then N sets of it, one "
            "task\n",
            (unsigned long long)w.ops);
    double values[2][MAX_RUNS];
    repeat_runs(o, "event_set_wait", event_set_wait_run, &w, 2, values);
    bench_summary per_wait = bench_summarize(values[0], (size_t)o->runs);
    bench_line line;
    bench_line_begin(&line, "event_set_wait", o->workers);
    bench_line_add(&line, "ns_per_wait", per_wait.median, 2);
    bench_line_add(&line, "ns_per_set", bench_median(values[1], (size_t)o->runs), 2);
    bench_line_add_range(&line, "ns_per_wait", per_wait, 2);
    bench_line_print(&line);
}

/* ------------------------------------------------------------------------- */
/* Command line                                                               */

typedef struct workload {
    const char *id;
    const char *name;
    void (*run)(const bench_opts *o);
} workload;

static const workload workloads[] = {
    {"W1", "spawn_many", workload_spawn_many},
    {"W1r", "spawn_remote", workload_spawn_remote},
    {"W2", "yield_many", workload_yield_many},
    {"W3", "ping_pong", workload_ping_pong},
    {"W4", "chained_spawn", workload_chained_spawn},
    {"W5", "fib", workload_fib},
    {"W6", "sleep_many", workload_sleep_many},
    {"W7", "to_thread", workload_to_thread},
    {"W8", "threadsafe_rtt", workload_threadsafe_rtt},
    {"W10", "cpu_io_mix", workload_cpu_io_mix},
    {"W11", "queue_mpmc", workload_queue_mpmc},
    {"W12", "lock_contended", workload_lock_contended},
    {"M1", "parked_memory", workload_parked_memory},
    {"M2", "lock_uncontended", workload_lock_uncontended},
    {"M3", "event_set_wait", workload_event_set_wait},
};
#define WORKLOAD_COUNT (sizeof workloads / sizeof workloads[0])

static void usage(FILE *to)
{
    fprintf(to,
            "usage: ravel-bench --workers N [--quick] [--runs R] [--verbose] [--counters] "
            "[WORKLOAD ...]\n"
            "  --workers N  worker threads per runtime (default 2)\n"
            "  --runs R     timed runs per workload, after one warm-up (default %d)\n"
            "  --quick      1 run and about a tenth of the work: a smoke test, not a result\n"
            "  --verbose    print every run's numbers on stderr\n"
            "  --counters   print every runtime's scheduler counters on stderr\n"
            "workloads (by id or name; none: all):\n",
            DEFAULT_RUNS);
    for (size_t i = 0; i < WORKLOAD_COUNT; i++)
        fprintf(to, "  %-4s %s\n", workloads[i].id, workloads[i].name);
}

static const workload *find_workload(const char *word)
{
    for (size_t i = 0; i < WORKLOAD_COUNT; i++)
        if (strcasecmp(word, workloads[i].id) == 0 || strcasecmp(word, workloads[i].name) == 0)
            return &workloads[i];
    return NULL;
}

static long parse_count(const char *flag, const char *text, long lo, long hi)
{
    char *end;
    long v = text ? strtol(text, &end, 10) : 0;
    if (text == NULL || *text == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "ravel-bench: %s needs a number from %ld to %ld\n", flag, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    bench_opts o = {.workers = 2, .runs = DEFAULT_RUNS};
    bool runs_given = false;
    const workload *chosen[64];
    size_t chosen_count = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--workers") == 0) {
            o.workers = (unsigned)parse_count(a, i + 1 < argc ? argv[++i] : NULL, 1, 1024);
        } else if (strncmp(a, "--workers=", 10) == 0) {
            o.workers = (unsigned)parse_count("--workers", a + 10, 1, 1024);
        } else if (strcmp(a, "--runs") == 0) {
            o.runs = (int)parse_count(a, i + 1 < argc ? argv[++i] : NULL, 1, MAX_RUNS);
            runs_given = true;
        } else if (strncmp(a, "--runs=", 7) == 0) {
            o.runs = (int)parse_count("--runs", a + 7, 1, MAX_RUNS);
            runs_given = true;
        } else if (strcmp(a, "--quick") == 0) {
            o.quick = true;
        } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            o.verbose = true;
        } else if (strcmp(a, "--counters") == 0) {
            print_counters = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "ravel-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else {
            const workload *w = find_workload(a);
            if (w == NULL) {
                fprintf(stderr, "ravel-bench: unknown workload %s\n", a);
                usage(stderr);
                return 2;
            }
            if (chosen_count < sizeof chosen / sizeof chosen[0])
                chosen[chosen_count++] = w;
        }
    }
    if (o.quick && !runs_given)
        o.runs = 1;
    if (chosen_count == 0)
        for (size_t i = 0; i < WORKLOAD_COUNT; i++)
            chosen[chosen_count++] = &workloads[i];

    /* --workers is the experiment's variable: do not let the environment
     * change it behind the RESULT line's back. */
    if (getenv("RAVEL_WORKERS")) {
        fprintf(stderr, "ravel-bench: ignoring RAVEL_WORKERS=%s; --workers decides\n",
                getenv("RAVEL_WORKERS"));
        unsetenv("RAVEL_WORKERS");
    }
    if (getenv("RAVEL_DEBUG"))
        fprintf(stderr, "ravel-bench: warning: RAVEL_DEBUG=%s, debug checks slow the runtime\n",
                getenv("RAVEL_DEBUG"));
    if (o.quick)
        fprintf(stderr, "ravel-bench: --quick: smoke test, the numbers are not results\n");
    fprintf(stderr, "ravel-bench: ravel %s, %u workers, %d run%s after a warm-up\n",
            rv_version_string(), o.workers, o.runs, o.runs == 1 ? "" : "s");

    for (size_t i = 0; i < chosen_count; i++) {
        current_workload = chosen[i]->name;
        chosen[i]->run(&o);
    }
    return 0;
}
