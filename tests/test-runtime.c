/* test-runtime.c - runtime lifecycle, rv_run, callbacks and timers, counters.
 *
 * Each test names, in the comment above it, the statement of include/ravel.h
 * ("Runtime", "Callbacks and timers", "Counters") it checks.
 *
 * cmocka is not thread-safe: tasks, callbacks and helper threads only record
 * what they observe (C11 atomics, or plain fields published by the end of the
 * task that wrote them); the test thread asserts afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ravel.h>

#include "test-util.h"

#define FOREVER (3600 * SEC)

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */

static unsigned workers_of(rv_runtime *rt)
{
    rv_runtime_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    assert_int_equal(rv_runtime_stats_get(rt, &st), 0);
    return st.workers;
}

static int answer_body(void *arg, void **res)
{
    int rc = rv_yield();
    if (rc < 0)
        return rc;
    *res = IP(42);
    return 0;
}

/* Spawn a task that yields and returns 42; check it does. */
static void check_runs_tasks(rv_runtime *rt)
{
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, answer_body, NULL, NULL, &t), 0);
    void *r = NULL;
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, &r), 0);
    assert_int_equal(PI(r), 42);
    assert_int_equal(rv_task_release(t), 0);
}

static void set_flag_cb(void *arg) { atomic_store((atomic_int *)arg, 1); }

/* ------------------------------------------------------------------------- */
/* Configuration and creation                                                 */

/* rv_config_init: "Fill cfg with the defaults (all zero) and set its size". */
static void test_runtime_config_init(void **state)
{
    (void)state;
    rv_config cfg;
    memset(&cfg, 0xab, sizeof cfg);
    rv_config_init(&cfg);
    assert_int_equal(cfg.size, sizeof(rv_config));
    assert_int_equal(cfg.workers, 0);
    assert_int_equal(cfg.stack_size, 0);
    assert_int_equal(cfg.blocking_threads_max, 0);
    assert_true(cfg.blocking_keepalive_ns == 0);
    assert_false(cfg.debug);
}

/* rv_runtime_new: "cfg may be NULL for the defaults"; rv_config.workers:
 * "0: number of online CPUs". */
static void test_runtime_new_default(void **state)
{
    (void)state;
    unsetenv("RAVEL_WORKERS");
    rv_runtime *rt = NULL;
    assert_int_equal(rv_runtime_new(&rt, NULL), 0);
    assert_non_null(rt);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(cpus >= 1);
    assert_int_equal(workers_of(rt), (unsigned)cpus);
    check_runs_tasks(rt);
    free_runtime(rt);
}

/* rv_runtime_new: "Start a runtime: workers threads" - one worker. */
static void test_runtime_new_one_worker(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    assert_int_equal(workers_of(rt), 1);
    check_runs_tasks(rt);
    free_runtime(rt);
}

/* rv_runtime_new: "Start a runtime: workers threads" - two workers. */
static void test_runtime_new_two_workers(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    assert_int_equal(workers_of(rt), 2);
    check_runs_tasks(rt);
    free_runtime(rt);
}

/* rv_runtime_new: "A config whose size field is 0 or larger than this library
 * knows returns -EINVAL"; a NULL out-parameter is invalid input. */
static void test_runtime_new_bad_config_size(void **state)
{
    (void)state;
    rv_config cfg;
    rv_runtime *rt = NULL;
    rv_config_init(&cfg);
    cfg.size = 0;
    assert_int_equal(rv_runtime_new(&rt, &cfg), -EINVAL);
    rv_config_init(&cfg);
    cfg.size = sizeof cfg + 8;
    assert_int_equal(rv_runtime_new(&rt, &cfg), -EINVAL);
    rv_config_init(&cfg);
    cfg.workers = 1;
    assert_int_equal(rv_runtime_new(NULL, &cfg), -EINVAL);
    assert_int_equal(rv_runtime_new(NULL, NULL), -EINVAL);
}

/* Conventions: "Option structs start with their own size ... so the struct
 * can grow without breaking callers": a caller built against an older, shorter
 * rv_config (size covering up to `workers`) still works. */
static void test_runtime_new_older_config_size(void **state)
{
    (void)state;
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 1;
    cfg.size = offsetof(rv_config, workers) + sizeof cfg.workers;
    rv_runtime *rt = NULL;
    assert_int_equal(rv_runtime_new(&rt, &cfg), 0);
    assert_int_equal(workers_of(rt), 1);
    check_runs_tasks(rt);
    free_runtime(rt);
}

static int frame_body(void *arg, void **res)
{
    volatile char buf[2048];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)i;
    int rc = rv_yield();
    if (rc < 0)
        return rc;
    *res = IP(buf[100] + 1);
    return 0;
}

/* rv_config: stack_size "rounded up to whole pages; min 16 KiB"; debug,
 * blocking_threads_max and blocking_keepalive_ns accepted. A tiny stack_size
 * still gives a usable 16 KiB stack. */
static void test_runtime_new_config_options(void **state)
{
    (void)state;
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 2;
    cfg.stack_size = 1000;
    cfg.blocking_threads_max = 4;
    cfg.blocking_keepalive_ns = 100 * MS;
    cfg.debug = true;
    rv_runtime *rt = NULL;
    assert_int_equal(rv_runtime_new(&rt, &cfg), 0);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, frame_body, NULL, NULL, &t), 0);
    void *r = NULL;
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, &r), 0);
    assert_int_equal(PI(r), 101);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

/* rv_config.workers: "env RAVEL_WORKERS overrides". */
static void test_runtime_workers_env(void **state)
{
    (void)state;
    assert_int_equal(setenv("RAVEL_WORKERS", "3", 1), 0);
    rv_runtime *rt = NULL;
    int rc = rv_runtime_new(&rt, NULL);
    rv_runtime *rt0 = NULL;
    rv_config cfg;
    rv_config_init(&cfg);
    int rc0 = rv_runtime_new(&rt0, &cfg);
    unsetenv("RAVEL_WORKERS");
    assert_int_equal(rc, 0);
    assert_int_equal(rc0, 0);
    assert_int_equal(workers_of(rt), 3);
    assert_int_equal(workers_of(rt0), 3);
    check_runs_tasks(rt);
    free_runtime(rt);
    free_runtime(rt0);
}

struct current_ctx {
    rv_runtime *rt;
    atomic_int ran;
    atomic_int cb_ok;
    int task_ok;
};

static void current_cb(void *arg)
{
    struct current_ctx *c = arg;
    atomic_store(&c->cb_ok, rv_runtime_current() == c->rt);
    atomic_store(&c->ran, 1);
}

static int current_body(void *arg, void **res)
{
    struct current_ctx *c = arg;
    c->task_ok = rv_runtime_current() == c->rt;
    int rc = rv_sleep(1 * MS); /* and after a suspension, on any worker */
    c->task_ok &= rv_runtime_current() == c->rt;
    return rc;
}

/* rv_runtime_current: "The runtime the calling thread works for (a worker or
 * a task), else NULL". */
static void test_runtime_current(void **state)
{
    (void)state;
    assert_null(rv_runtime_current());
    rv_runtime *rt = new_runtime(2);
    struct current_ctx c;
    memset(&c, 0, sizeof c);
    c.rt = rt;
    atomic_init(&c.ran, 0);
    atomic_init(&c.cb_ok, 0);
    assert_int_equal(rv_call_soon(rt, current_cb, &c, NULL), 0);
    assert_true(wait_atomic(&c.ran, 1));
    assert_int_equal(atomic_load(&c.cb_ok), 1);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, current_body, &c, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_int_equal(c.task_ok, 1);
    assert_int_equal(rv_task_release(t), 0);
    assert_null(rv_runtime_current());
    free_runtime(rt);
}

/* rv_now: "Monotonic clock (CLOCK_MONOTONIC) in nanoseconds". */
static void test_runtime_now(void **state)
{
    (void)state;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int64_t n1 = rv_now();
    int64_t n2 = rv_now();
    clock_gettime(CLOCK_MONOTONIC, &b);
    int64_t ta = (int64_t)a.tv_sec * SEC + a.tv_nsec;
    int64_t tb = (int64_t)b.tv_sec * SEC + b.tv_nsec;
    assert_true(ta <= n1);
    assert_true(n1 <= n2);
    assert_true(n2 <= tb);
}

/* ------------------------------------------------------------------------- */
/* rv_run                                                                     */

static int main_seven(void *arg, void **res)
{
    int rc = rv_sleep(1 * MS);
    if (rc < 0)
        return rc;
    *res = IP(7);
    return 0;
}

/* rv_run: "create a runtime from cfg, run main_fn(arg) as a task, wait for
 * it ... Returns main's code; its result goes to *result". (asyncio.run) */
static void test_runtime_run(void **state)
{
    (void)state;
    unsetenv("RAVEL_WORKERS");
    void *r = NULL;
    assert_int_equal(rv_run(NULL, main_seven, NULL, &r), 0);
    assert_int_equal(PI(r), 7);
}

static int main_fails(void *arg, void **res) { return rv_task_error(-EIO, "main failed"); }

/* rv_run: "Returns main's code"; "when result is not NULL" - NULL allowed. */
static void test_runtime_run_error(void **state)
{
    (void)state;
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 1;
    assert_int_equal(rv_run(&cfg, main_fails, NULL, NULL), -EIO);
    void *r = NULL;
    assert_int_equal(rv_run(&cfg, main_fails, NULL, &r), -EIO);
    assert_int_equal(rv_run(&cfg, main_seven, NULL, NULL), 0);
}

struct leftover_ctx {
    atomic_int started;
    atomic_int observed;
};

static int leftover_body(void *arg, void **res)
{
    struct leftover_ctx *c = arg;
    atomic_store(&c->started, 1);
    int rc = rv_sleep(FOREVER);
    atomic_store(&c->observed, rc);
    return rc;
}

static int main_leaves_task(void *arg, void **res)
{
    struct leftover_ctx *c = arg;
    int rc = rv_spawn(NULL, leftover_body, c, NULL, NULL);
    if (rc < 0)
        return rc;
    while (!atomic_load(&c->started)) {
        rc = rv_sleep(1 * MS);
        if (rc < 0)
            return rc;
    }
    *res = IP(5);
    return 0;
}

/* rv_run: "wait for it, cancel whatever is left, shut down and free": a task
 * still sleeping when main returns sees -ECANCELED. (asyncio.run cancels the
 * remaining tasks) */
static void test_runtime_run_cancels_leftovers(void **state)
{
    (void)state;
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 2;
    struct leftover_ctx c;
    atomic_init(&c.started, 0);
    atomic_init(&c.observed, 1);
    void *r = NULL;
    assert_int_equal(rv_run(&cfg, main_leaves_task, &c, &r), 0);
    assert_int_equal(PI(r), 5);
    assert_int_equal(atomic_load(&c.started), 1);
    assert_int_equal(atomic_load(&c.observed), -ECANCELED);
}

struct from_worker_ctx {
    rv_runtime *rt;
    atomic_int ran;
    atomic_int main_ran;
    atomic_int run_rc, shutdown_rc, free_rc;
    int task_run_rc, task_shutdown_rc, task_free_rc;
};

static int flag_main(void *arg, void **res)
{
    atomic_store(&((struct from_worker_ctx *)arg)->main_ran, 1);
    return 0;
}

static void from_worker_cb(void *arg)
{
    struct from_worker_ctx *c = arg;
    atomic_store(&c->run_rc, rv_run(NULL, flag_main, c, NULL));
    atomic_store(&c->shutdown_rc, rv_runtime_shutdown(c->rt, 0));
    atomic_store(&c->free_rc, rv_runtime_free(c->rt));
    atomic_store(&c->ran, 1);
}

static int from_worker_task(void *arg, void **res)
{
    struct from_worker_ctx *c = arg;
    c->task_run_rc = rv_run(NULL, flag_main, c, NULL);
    c->task_shutdown_rc = rv_runtime_shutdown(c->rt, 0);
    c->task_free_rc = rv_runtime_free(c->rt);
    return 0;
}

/* rv_runtime_shutdown: "Returns -EPERM when called from one of this runtime's
 * own worker threads"; rv_runtime_free: "Returns -EPERM from a worker thread
 * of rt"; rv_run: "Returns -EPERM when called from a worker thread" - from a
 * callback and from a task. */
static void test_runtime_shutdown_from_worker(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct from_worker_ctx c;
    memset(&c, 0, sizeof c);
    c.rt = rt;
    atomic_init(&c.ran, 0);
    atomic_init(&c.main_ran, 0);
    atomic_init(&c.run_rc, 1);
    atomic_init(&c.shutdown_rc, 1);
    atomic_init(&c.free_rc, 1);
    assert_int_equal(rv_call_soon(rt, from_worker_cb, &c, NULL), 0);
    assert_true(wait_atomic(&c.ran, 1));
    assert_int_equal(atomic_load(&c.run_rc), -EPERM);
    assert_int_equal(atomic_load(&c.shutdown_rc), -EPERM);
    assert_int_equal(atomic_load(&c.free_rc), -EPERM);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, from_worker_task, &c, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_int_equal(c.task_run_rc, -EPERM);
    assert_int_equal(c.task_shutdown_rc, -EPERM);
    assert_int_equal(c.task_free_rc, -EPERM);
    assert_int_equal(atomic_load(&c.main_ran), 0);
    assert_int_equal(rv_task_release(t), 0);
    /* The runtime still works after the refused calls. */
    check_runs_tasks(rt);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Shutdown                                                                   */

struct sleeper_ctx {
    rv_future *f;
    atomic_int started;
    atomic_int observed;
    atomic_int cancels;
};

static void sleeper_init(struct sleeper_ctx *c)
{
    memset(c, 0, sizeof *c);
    atomic_init(&c->started, 0);
    atomic_init(&c->observed, 1);
    atomic_init(&c->cancels, 0);
}

static int sleep_forever_body(void *arg, void **res)
{
    struct sleeper_ctx *c = arg;
    atomic_fetch_add(&c->started, 1);
    int rc = rv_sleep(FOREVER);
    atomic_store(&c->observed, rc);
    return rc;
}

/* rv_runtime_shutdown: "cancel every task (each sees -ECANCELED at its await
 * point) and wait up to timeout_ns for all tasks to end"; 0 when they did. */
static void test_runtime_shutdown_cancels_sleeping_task(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct sleeper_ctx c;
    sleeper_init(&c);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, sleep_forever_body, &c, NULL, &t), 0);
    assert_true(wait_atomic(&c.started, 1));
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    assert_int_equal(atomic_load(&c.observed), -ECANCELED);
    assert_true(rv_future_done(rv_task_future(t)));
    assert_true(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

static int await_forever_body(void *arg, void **res)
{
    struct sleeper_ctx *c = arg;
    atomic_fetch_add(&c->started, 1);
    int rc = rv_await(c->f, NULL);
    atomic_store(&c->observed, rc);
    return rc;
}

/* rv_runtime_shutdown: "each sees -ECANCELED at its await point" - a task
 * parked in rv_await (fire-and-forget: no handle held). */
static void test_runtime_shutdown_cancels_awaiting_task(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct sleeper_ctx c;
    sleeper_init(&c);
    assert_int_equal(rv_future_new(rt, &c.f), 0);
    assert_int_equal(rv_spawn(rt, await_forever_body, &c, NULL, NULL), 0);
    assert_true(wait_atomic(&c.started, 1));
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    assert_int_equal(atomic_load(&c.observed), -ECANCELED);
    assert_true(rv_future_cancelled(c.f));
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

static int stubborn_body(void *arg, void **res)
{
    struct sleeper_ctx *c = arg;
    atomic_fetch_add(&c->started, 1);
    /* Ignore cancellation and keep sleeping (bounded, so that a wrong
     * implementation cannot keep the test running for long). */
    int64_t deadline = rv_now() + 1 * SEC;
    while (rv_now() < deadline) {
        if (rv_sleep(5 * MS) == -ECANCELED)
            atomic_fetch_add(&c->cancels, 1);
    }
    *res = IP(1);
    return 0;
}

/* rv_runtime_shutdown: "Tasks still running at the deadline are listed on
 * stderr and the call returns -ETIMEDOUT; the workers are stopped either
 * way"; rv_runtime_free: handles "are finished (cancelled if they never
 * ended)". */
static void test_runtime_shutdown_timeout(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct sleeper_ctx c;
    sleeper_init(&c);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, stubborn_body, &c, NULL, &t), 0);
    assert_true(wait_atomic(&c.started, 1));
    int64_t t0 = rv_now();
    assert_int_equal(rv_runtime_shutdown(rt, 50 * MS), -ETIMEDOUT);
    assert_true(rv_now() - t0 >= 50 * MS);
    assert_true(atomic_load(&c.cancels) >= 1);
    free_runtime(rt);
    assert_true(rv_future_done(rv_task_future(t)));
    assert_true(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(rv_task_release(t), 0);
}

/* rv_runtime_shutdown: "-EALREADY when the runtime is already shut down". */
static void test_runtime_shutdown_twice(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    check_runs_tasks(rt);
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), -EALREADY);
    assert_int_equal(rv_runtime_shutdown(rt, -1), -EALREADY);
    free_runtime(rt);
}

/* rv_runtime_free: "Task and future handles the user still holds stay valid
 * until released; they are finished (cancelled if they never ended)". */
static void test_runtime_free_with_held_handles(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct sleeper_ctx c;
    sleeper_init(&c);
    assert_int_equal(rv_future_new(rt, &c.f), 0);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, await_forever_body, &c, NULL, &t), 0);
    assert_true(wait_atomic(&c.started, 1));
    free_runtime(rt);
    assert_true(rv_future_done(rv_task_future(t)));
    assert_true(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(atomic_load(&c.observed), -ECANCELED);
    /* The awaited future was cancelled with the task (rv_await). */
    assert_true(rv_future_cancelled(c.f));
    assert_int_equal(rv_task_release(t), 0);
    assert_int_equal(rv_future_release(c.f), 0);
}

/* ------------------------------------------------------------------------- */
/* Callbacks and timers                                                       */

struct soon_ctx {
    rv_runtime *rt;
    atomic_int ran;
    atomic_int on_worker;
    atomic_int in_task;
};

static void soon_cb(void *arg)
{
    struct soon_ctx *c = arg;
    atomic_store(&c->on_worker, rv_runtime_current() == c->rt);
    atomic_store(&c->in_task, rv_current_task() != NULL);
    atomic_fetch_add(&c->ran, 1);
}

/* rv_call_soon: "Run fn(arg) on a worker soon. Safe from any thread (this is
 * also call_soon_threadsafe). out may be NULL; otherwise it receives a handle
 * the caller releases". (test_call_soon_threadsafe) */
static void test_runtime_call_soon(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct soon_ctx c;
    c.rt = rt;
    atomic_init(&c.ran, 0);
    atomic_init(&c.on_worker, 0);
    atomic_init(&c.in_task, 1);
    assert_int_equal(rv_call_soon(rt, soon_cb, &c, NULL), 0);
    assert_true(wait_atomic(&c.ran, 1));
    rv_handle *h = NULL;
    assert_int_equal(rv_call_soon(rt, soon_cb, &c, &h), 0);
    assert_non_null(h);
    assert_true(wait_atomic(&c.ran, 2));
    assert_int_equal(atomic_load(&c.on_worker), 1);
    assert_int_equal(atomic_load(&c.in_task), 0);
    assert_int_equal(rv_handle_release(h), 0);
    free_runtime(rt);
}

struct timed_ctx {
    atomic_int n;
    atomic_int order[4];
    atomic_llong at[4];
};

struct timed_arg {
    struct timed_ctx *c;
    int id;
};

static void timed_cb(void *arg)
{
    struct timed_arg *a = arg;
    atomic_store(&a->c->at[a->id], (long long)rv_now());
    int i = atomic_fetch_add(&a->c->n, 1);
    if (i < 4)
        atomic_store(&a->c->order[i], a->id);
}

static void timed_init(struct timed_ctx *c)
{
    atomic_init(&c->n, 0);
    for (int i = 0; i < 4; i++) {
        atomic_init(&c->order[i], -1);
        atomic_init(&c->at[i], 0);
    }
}

/* rv_call_later: "Run fn(arg) after delay_ns (rounded up to the 1 ms tick)":
 * a 10 ms timer fires before a 20 ms one scheduled earlier, and neither fires
 * early. (test_call_later ordering) */
static void test_runtime_call_later_order(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct timed_ctx c;
    timed_init(&c);
    struct timed_arg a20 = {&c, 0}, a10 = {&c, 1};
    int64_t t20 = rv_now();
    assert_int_equal(rv_call_later(rt, 20 * MS, timed_cb, &a20, NULL), 0);
    int64_t t10 = rv_now();
    assert_int_equal(rv_call_later(rt, 10 * MS, timed_cb, &a10, NULL), 0);
    assert_true(wait_atomic(&c.n, 2));
    assert_int_equal(atomic_load(&c.order[0]), 1);
    assert_int_equal(atomic_load(&c.order[1]), 0);
    assert_true(atomic_load(&c.at[1]) - t10 >= 10 * MS);
    assert_true(atomic_load(&c.at[0]) - t20 >= 20 * MS);
    free_runtime(rt);
}

/* rv_call_at: "Run fn(arg) at when_ns on the rv_now() clock" - not before. */
static void test_runtime_call_at(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct timed_ctx c;
    timed_init(&c);
    struct timed_arg a = {&c, 0};
    int64_t when = rv_now() + 15 * MS;
    rv_handle *h = NULL;
    assert_int_equal(rv_call_at(rt, when, timed_cb, &a, &h), 0);
    assert_non_null(h);
    assert_true(wait_atomic(&c.n, 1));
    assert_true(atomic_load(&c.at[0]) >= when);
    assert_int_equal(rv_handle_release(h), 0);
    free_runtime(rt);
}

/* rv_call_at: a time already past runs the callback soon. */
static void test_runtime_call_at_past(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    atomic_int flag;
    atomic_init(&flag, 0);
    assert_int_equal(rv_call_at(rt, rv_now() - 1 * SEC, set_flag_cb, &flag, NULL), 0);
    assert_true(wait_atomic(&flag, 1));
    free_runtime(rt);
}

/* rv_handle_cancel: "Prevent the callback from running. 0 if this call
 * cancelled it, -EALREADY if it ... was cancelled". A later timer (the
 * sentinel) proves the cancelled one's time has passed. (test_handle_cancel) */
static void test_runtime_handle_cancel_before_run(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    atomic_int cancelled_ran, sentinel;
    atomic_init(&cancelled_ran, 0);
    atomic_init(&sentinel, 0);
    rv_handle *h = NULL, *hs = NULL;
    /* Margins wide enough that the cancel below comes before the deadline. */
    assert_int_equal(rv_call_later(rt, 100 * MS, set_flag_cb, &cancelled_ran, &h), 0);
    assert_int_equal(rv_call_later(rt, 120 * MS, set_flag_cb, &sentinel, &hs), 0);
    assert_int_equal(rv_handle_cancel(h), 0);
    assert_int_equal(rv_handle_cancel(h), -EALREADY);
    assert_true(wait_atomic(&sentinel, 1));
    assert_int_equal(atomic_load(&cancelled_ran), 0);
    assert_int_equal(rv_handle_release(h), 0);
    assert_int_equal(rv_handle_release(hs), 0);
    free_runtime(rt);
    assert_int_equal(atomic_load(&cancelled_ran), 0);
}

/* rv_handle_cancel: "-EALREADY if it already ran". */
static void test_runtime_handle_cancel_after_run(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    atomic_int flag;
    atomic_init(&flag, 0);
    rv_handle *h = NULL;
    assert_int_equal(rv_call_soon(rt, set_flag_cb, &flag, &h), 0);
    assert_true(wait_atomic(&flag, 1));
    assert_int_equal(rv_handle_cancel(h), -EALREADY);
    assert_int_equal(rv_handle_release(h), 0);
    free_runtime(rt);
}

struct running_ctx {
    atomic_int in;
    atomic_int go;
    atomic_int out;
};

static void running_cb(void *arg)
{
    struct running_ctx *c = arg;
    atomic_store(&c->in, 1);
    int64_t deadline = rv_now() + WAIT_NS;
    while (!atomic_load(&c->go) && rv_now() < deadline)
        sleep_ms(1);
    atomic_store(&c->out, 1);
}

/* rv_handle_cancel on a call_soon handle: "0 if this call cancelled it" -
 * the callback never runs. The single worker is held busy by another callback
 * while the handle is cancelled, and a later callback proves the queue moved
 * on. */
static void test_runtime_handle_cancel_call_soon(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct running_ctx blocker;
    atomic_init(&blocker.in, 0);
    atomic_init(&blocker.go, 0);
    atomic_init(&blocker.out, 0);
    atomic_int cancelled_ran, sentinel;
    atomic_init(&cancelled_ran, 0);
    atomic_init(&sentinel, 0);
    assert_int_equal(rv_call_soon(rt, running_cb, &blocker, NULL), 0);
    assert_true(wait_atomic(&blocker.in, 1));
    rv_handle *h = NULL;
    assert_int_equal(rv_call_soon(rt, set_flag_cb, &cancelled_ran, &h), 0);
    assert_int_equal(rv_handle_cancel(h), 0);
    assert_int_equal(rv_handle_cancel(h), -EALREADY);
    assert_int_equal(rv_call_soon(rt, set_flag_cb, &sentinel, NULL), 0);
    atomic_store(&blocker.go, 1);
    assert_true(wait_atomic(&sentinel, 1));
    assert_int_equal(atomic_load(&cancelled_ran), 0);
    assert_int_equal(rv_handle_release(h), 0);
    free_runtime(rt);
    assert_int_equal(atomic_load(&cancelled_ran), 0);
}

/* rv_handle_cancel: "-EALREADY if it ... is running". */
static void test_runtime_handle_cancel_while_running(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct running_ctx c;
    atomic_init(&c.in, 0);
    atomic_init(&c.go, 0);
    atomic_init(&c.out, 0);
    rv_handle *h = NULL;
    assert_int_equal(rv_call_soon(rt, running_cb, &c, &h), 0);
    assert_true(wait_atomic(&c.in, 1));
    int rc = rv_handle_cancel(h);
    atomic_store(&c.go, 1);
    assert_true(wait_atomic(&c.out, 1));
    assert_int_equal(rc, -EALREADY);
    assert_int_equal(rv_handle_release(h), 0);
    free_runtime(rt);
}

/* rv_call_soon: "-ESHUTDOWN after shutdown began"; rv_call_later / rv_call_at
 * likewise (rv_runtime_shutdown: "later spawns and rv_call_* return
 * -ESHUTDOWN"); the callbacks never run. */
static void test_runtime_call_after_shutdown(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    atomic_int flag;
    atomic_init(&flag, 0);
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    rv_handle *h = NULL;
    assert_int_equal(rv_call_soon(rt, set_flag_cb, &flag, NULL), -ESHUTDOWN);
    assert_int_equal(rv_call_soon(rt, set_flag_cb, &flag, &h), -ESHUTDOWN);
    assert_int_equal(rv_call_later(rt, 1 * MS, set_flag_cb, &flag, NULL), -ESHUTDOWN);
    assert_int_equal(rv_call_at(rt, rv_now(), set_flag_cb, &flag, NULL), -ESHUTDOWN);
    free_runtime(rt);
    assert_int_equal(atomic_load(&flag), 0);
}

/* ------------------------------------------------------------------------- */
/* Counters                                                                   */

static uint64_t sum_polled(rv_runtime *rt, unsigned workers, uint64_t *timers)
{
    uint64_t polled = 0;
    if (timers != NULL)
        *timers = 0;
    for (unsigned i = 0; i < workers; i++) {
        rv_worker_stats ws;
        memset(&ws, 0, sizeof ws);
        assert_int_equal(rv_worker_stats_get(rt, i, &ws), 0);
        assert_true(ws.steals <= ws.steal_attempts);
        assert_true(ws.stolen_tasks >= ws.steals);
        polled += ws.tasks_polled;
        if (timers != NULL)
            *timers += ws.timers_fired;
    }
    return polled;
}

static int stats_body(void *arg, void **res)
{
    for (int i = 0; i < 3; i++) {
        int rc = rv_yield();
        if (rc < 0)
            return rc;
    }
    return rv_sleep(1 * MS);
}

struct parked_ctx {
    rv_future *f;
    atomic_int started;
};

static int parked_body(void *arg, void **res)
{
    struct parked_ctx *c = arg;
    atomic_store(&c->started, 1);
    return rv_await(c->f, NULL);
}

/* rv_runtime_stats_get: "Snapshot of the global counters" (workers,
 * live_tasks: "spawned and not yet ended"); rv_worker_stats_get: tasks_polled
 * "task resumptions and callbacks run", timers_fired. */
static void test_runtime_stats(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    rv_runtime_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    assert_int_equal(rv_runtime_stats_get(rt, &st), 0);
    assert_int_equal(st.workers, 2);
    assert_true(st.live_tasks == 0);
    uint64_t polled0 = sum_polled(rt, 2, NULL);

    /* A parked task is live. */
    struct parked_ctx pc;
    assert_int_equal(rv_future_new(rt, &pc.f), 0);
    atomic_init(&pc.started, 0);
    rv_task *parked = NULL;
    assert_int_equal(rv_spawn(rt, parked_body, &pc, NULL, &parked), 0);
    assert_true(wait_atomic(&pc.started, 1));
    assert_int_equal(rv_runtime_stats_get(rt, &st), 0);
    assert_true(st.live_tasks >= 1);

    rv_task *t[10];
    for (int i = 0; i < 10; i++)
        assert_int_equal(rv_spawn(rt, stats_body, NULL, NULL, &t[i]), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(rv_future_wait(rv_task_future(t[i]), WAIT_NS, NULL), 0);
        assert_int_equal(rv_task_release(t[i]), 0);
    }
    assert_int_equal(rv_future_set_result(pc.f, NULL), 0);
    assert_int_equal(rv_future_wait(rv_task_future(parked), WAIT_NS, NULL), 0);
    assert_int_equal(rv_task_release(parked), 0);

    uint64_t timers = 0;
    uint64_t polled1 = sum_polled(rt, 2, &timers);
    /* Each of the 11 tasks ran at least once. */
    assert_true(polled1 >= polled0 + 11);
    assert_true(timers >= 1);

    int64_t deadline = rv_now() + WAIT_NS;
    do {
        assert_int_equal(rv_runtime_stats_get(rt, &st), 0);
        if (st.live_tasks == 0)
            break;
        sleep_ms(1);
    } while (rv_now() < deadline);
    assert_true(st.live_tasks == 0);
    assert_int_equal(st.workers, 2);
    assert_int_equal(rv_future_release(pc.f), 0);
    free_runtime(rt);
}

/* rv_worker_stats_get: "Snapshot of worker index (< workers; -EINVAL
 * otherwise)"; NULL handles and outputs give -EINVAL. */
static void test_runtime_stats_bad_index(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    rv_worker_stats ws;
    rv_runtime_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    assert_int_equal(rv_worker_stats_get(rt, 1, &ws), 0);
    assert_int_equal(rv_worker_stats_get(rt, 2, &ws), -EINVAL);
    assert_int_equal(rv_worker_stats_get(rt, UINT_MAX, &ws), -EINVAL);
    assert_int_equal(rv_worker_stats_get(NULL, 0, &ws), -EINVAL);
    assert_int_equal(rv_worker_stats_get(rt, 0, NULL), -EINVAL);
    assert_int_equal(rv_runtime_stats_get(NULL, &st), -EINVAL);
    assert_int_equal(rv_runtime_stats_get(rt, NULL), -EINVAL);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Bad input                                                                  */

/* "A NULL handle returns -EINVAL; it never crashes"; "If a call that takes a
 * callback fails, the callback is never called" (SPEC 2). */
static void test_runtime_null_handles(void **state)
{
    (void)state;
    atomic_int flag;
    atomic_init(&flag, 0);
    rv_handle *h = NULL;
    assert_int_equal(rv_runtime_shutdown(NULL, 0), -EINVAL);
    assert_int_equal(rv_runtime_free(NULL), -EINVAL);
    assert_int_equal(rv_call_soon(NULL, set_flag_cb, &flag, &h), -EINVAL);
    assert_int_equal(rv_call_later(NULL, 1 * MS, set_flag_cb, &flag, &h), -EINVAL);
    assert_int_equal(rv_call_at(NULL, rv_now(), set_flag_cb, &flag, &h), -EINVAL);
    assert_int_equal(rv_handle_cancel(NULL), -EINVAL);
    assert_int_equal(rv_handle_release(NULL), -EINVAL);
    assert_int_equal(rv_all_tasks(NULL, NULL, NULL), -EINVAL);

    rv_runtime *rt = new_runtime(1);
    assert_int_equal(rv_call_soon(rt, NULL, &flag, &h), -EINVAL);
    assert_int_equal(rv_call_later(rt, 1 * MS, NULL, &flag, &h), -EINVAL);
    assert_int_equal(rv_call_at(rt, rv_now(), NULL, &flag, &h), -EINVAL);
    free_runtime(rt);
    assert_int_equal(atomic_load(&flag), 0);
}

/* ------------------------------------------------------------------------- */
/* Regressions found in review                                                */

static void count_cb(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

static rv_handle *g_same_tick_h2;
static atomic_int g_same_tick_cancel_rc;
static atomic_int g_same_tick_h2_ran;

static void same_tick_h2_cb(void *arg) { atomic_fetch_add(&g_same_tick_h2_ran, 1); }

static void same_tick_h1_cb(void *arg)
{
    atomic_store(&g_same_tick_cancel_rc, rv_handle_cancel(g_same_tick_h2));
}

/* rv_handle_cancel: "Prevent the callback from running ... O(1), any thread",
 * from a callback that fell due in the same tick as the one it cancels; the
 * caller's handle stays valid until released (once a double free). */
static void test_runtime_cancel_from_callback_same_tick(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    atomic_store(&g_same_tick_cancel_rc, 1);
    atomic_store(&g_same_tick_h2_ran, 0);
    rv_handle *h1 = NULL;
    int64_t when = rv_now() + 20 * MS;
    assert_int_equal(rv_call_at(rt, when, same_tick_h2_cb, NULL, &g_same_tick_h2), 0);
    assert_int_equal(rv_call_at(rt, when, same_tick_h1_cb, NULL, &h1), 0);
    /* h1 was linked last, so it runs first and cancels h2. */
    int64_t deadline = rv_now() + WAIT_NS;
    while (atomic_load(&g_same_tick_cancel_rc) == 1 && rv_now() < deadline)
        sleep_ms(1);
    sleep_ms(20);
    assert_int_equal(atomic_load(&g_same_tick_cancel_rc), 0);
    assert_int_equal(atomic_load(&g_same_tick_h2_ran), 0);
    assert_int_equal(rv_handle_release(g_same_tick_h2), 0);
    assert_int_equal(rv_handle_release(h1), 0);
    /* The wheel's count stayed right: a later timer still fires. */
    atomic_int later;
    atomic_init(&later, 0);
    rv_handle *h3 = NULL;
    assert_int_equal(rv_call_later(rt, 5 * MS, count_cb, &later, &h3), 0);
    assert_true(wait_atomic(&later, 1));
    assert_int_equal(rv_handle_release(h3), 0);
    free_runtime(rt);
}

static int far_timer_body(void *arg, void **res)
{
    atomic_int *fired = arg;
    int rc = rv_sleep(5 * MS);
    if (rc)
        return rc;
    /* Three years ahead, beyond one rotation of the wheel's top level. */
    rc = rv_call_later(NULL, 3LL * 365 * 24 * 3600 * SEC, count_cb, fired, NULL);
    if (rc)
        return rc;
    rc = rv_call_later(NULL, INT64_MAX, count_cb, fired, NULL); /* saturates */
    if (rc)
        return rc;
    return rv_sleep(30 * MS); /* the worker must keep running other timers */
}

/* rv_call_later with a delay beyond the wheel's top rotation (once a worker
 * spinning forever) and with INT64_MAX (once an overflow to "now"). */
static void test_runtime_call_later_years_ahead(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    atomic_int fired;
    atomic_init(&fired, 0);
    assert_int_equal(run_task(rt, far_timer_body, &fired, NULL), 0);
    assert_int_equal(atomic_load(&fired), 0);
    free_runtime(rt);
}

static rv_runtime *g_shut_rt;
static atomic_int g_shut_rc;

static void *shutdown_thread(void *arg)
{
    atomic_store(&g_shut_rc, rv_runtime_shutdown(g_shut_rt, -1));
    return NULL;
}

static int sleeps_through_cancel_body(void *arg, void **res)
{
    for (int i = 0; i < 10; i++)
        rv_sleep(10 * MS); /* ignores cancellation, for 100 ms */
    return 0;
}

/* rv_runtime_free: "May be called while another thread's rv_runtime_shutdown
 * is still running; it waits for that call to return" (once a use after free
 * and a double join). */
static void test_runtime_free_during_other_threads_shutdown(void **state)
{
    (void)state;
    g_shut_rt = new_runtime(2);
    atomic_store(&g_shut_rc, 1);
    assert_int_equal(rv_spawn(g_shut_rt, sleeps_through_cancel_body, NULL, NULL, NULL), 0);
    sleep_ms(10);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, shutdown_thread, NULL), 0);
    sleep_ms(20); /* the other thread is waiting for the task */
    assert_int_equal(rv_runtime_free(g_shut_rt), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&g_shut_rc), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime_config_init),
        cmocka_unit_test(test_runtime_new_default),
        cmocka_unit_test(test_runtime_new_one_worker),
        cmocka_unit_test(test_runtime_new_two_workers),
        cmocka_unit_test(test_runtime_new_bad_config_size),
        cmocka_unit_test(test_runtime_new_older_config_size),
        cmocka_unit_test(test_runtime_new_config_options),
        cmocka_unit_test(test_runtime_workers_env),
        cmocka_unit_test(test_runtime_current),
        cmocka_unit_test(test_runtime_now),
        cmocka_unit_test(test_runtime_run),
        cmocka_unit_test(test_runtime_run_error),
        cmocka_unit_test(test_runtime_run_cancels_leftovers),
        cmocka_unit_test(test_runtime_shutdown_from_worker),
        cmocka_unit_test(test_runtime_shutdown_cancels_sleeping_task),
        cmocka_unit_test(test_runtime_shutdown_cancels_awaiting_task),
        cmocka_unit_test(test_runtime_shutdown_timeout),
        cmocka_unit_test(test_runtime_shutdown_twice),
        cmocka_unit_test(test_runtime_free_with_held_handles),
        cmocka_unit_test(test_runtime_call_soon),
        cmocka_unit_test(test_runtime_call_later_order),
        cmocka_unit_test(test_runtime_call_at),
        cmocka_unit_test(test_runtime_call_at_past),
        cmocka_unit_test(test_runtime_handle_cancel_before_run),
        cmocka_unit_test(test_runtime_handle_cancel_call_soon),
        cmocka_unit_test(test_runtime_handle_cancel_after_run),
        cmocka_unit_test(test_runtime_handle_cancel_while_running),
        cmocka_unit_test(test_runtime_call_after_shutdown),
        cmocka_unit_test(test_runtime_stats),
        cmocka_unit_test(test_runtime_stats_bad_index),
        cmocka_unit_test(test_runtime_null_handles),
        cmocka_unit_test(test_runtime_cancel_from_callback_same_tick),
        cmocka_unit_test(test_runtime_call_later_years_ahead),
        cmocka_unit_test(test_runtime_free_during_other_threads_shutdown),
    };
    /* RV_TEST_FILTER=pattern runs only the matching tests (debugging). */
    const char *filter = getenv("RV_TEST_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
