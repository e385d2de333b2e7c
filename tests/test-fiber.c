/* test-fiber.c - stackful fibers: migration, per-fiber state, stacks.
 *
 * What executor/fiber.h and the scheduler promise about a task's fiber:
 * - a task may resume on another worker thread after any suspension, and
 *   errno is saved and restored per task, so it survives migration;
 * - a switch preserves what the ABI says a callee preserves: callee-saved
 *   registers and the floating-point control state (rounding mode), per fiber;
 * - the stack is the configured size (64 KiB default) and usable almost to the
 *   bottom; a custom rv_spawn_opts.stack_size works for many parked tasks;
 * - running off the bottom hits a guard page and aborts with
 *   "ravel: stack overflow in task <id> '<name>'".
 *
 * Compilers treat pthread_self() and __errno_location() as const functions and
 * may reuse an address computed before a suspension point, which is wrong after
 * a migration; the tests reach them through volatile function pointers.
 *
 * cmocka is not thread-safe: tasks record what they observe in atomics; only
 * the test thread asserts.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <fenv.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ravel.h>

#include "test-scale.h"

#define MS (1000000LL)
#define SEC (1000000000LL)
#define WAIT_NS (30 * SEC)
#define IP(x) ((void *)(intptr_t)(x))
#define PI(p) ((intptr_t)(p))

/* Not cached across a suspension point: see the header comment. */
static pthread_t (*volatile self_thread)(void) = pthread_self;
static int *(*volatile errno_loc)(void) = __errno_location;
#define TASK_ERRNO (*errno_loc())

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */

static rv_runtime *new_runtime(unsigned workers, size_t stack_size)
{
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = workers;
    cfg.stack_size = stack_size;
    rv_runtime *rt = NULL;
    assert_int_equal(rv_runtime_new(&rt, &cfg), 0);
    assert_non_null(rt);
    return rt;
}

static void free_runtime(rv_runtime *rt) { assert_int_equal(rv_runtime_free(rt), 0); }

static rv_task *spawn(rv_runtime *rt, rv_task_fn fn, void *arg, const rv_spawn_opts *opts)
{
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, fn, arg, opts, &t), 0);
    assert_non_null(t);
    return t;
}

/* Wait for t, expect return code `rc`, release it; returns the result. */
static void *join(rv_task *t, int rc)
{
    void *r = NULL;
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, &r), rc);
    assert_int_equal(rv_task_release(t), 0);
    return r;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Like join, but counts a wrong outcome instead of asserting: used while
 * helper tasks still run, so that they can be stopped before the test fails. */
static void *join_soft(rv_task *t, int rc, int *failures)
{
    void *r = NULL;
    int got = rv_future_wait(rv_task_future(t), WAIT_NS, &r);
    if (got != rc) {
        print_message("task %llu ended with %d, expected %d\n", (unsigned long long)rv_task_id(t),
                      got, rc);
        (*failures)++;
    }
    if (got != -ETIMEDOUT) /* a task still running keeps its handle */
        rv_task_release(t);
    return r;
}

/* ------------------------------------------------------------------------- */
/* (a) Migration and errno                                                    */

struct busy_ctx {
    atomic_int stop;
    atomic_long rounds;
    int sleep_every; /* every n-th round sleeps 1 ms instead of yielding */
};

/* Keeps the workers' queues busy; the occasional sleep leaves a worker short
 * of work now and then, so that it steals from the other (a task moves only
 * when stolen: yields requeue locally and timers wake on their own worker). */
static int busy_body(void *arg, void **res)
{
    struct busy_ctx *b = arg;
    volatile uint64_t x = 1;
    long n = 0;
    while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
        for (int i = 0; i < 2000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        atomic_fetch_add_explicit(&b->rounds, 1, memory_order_relaxed);
        n++;
        int rc = (b->sleep_every && n % b->sleep_every == 0) ? rv_sleep(1 * MS) : rv_yield();
        if (rc < 0)
            return rc;
    }
    return 0;
}

struct migrate_ctx {
    int suspensions;
    int sleep_every; /* every n-th suspension is rv_sleep(1 ms); 0: never */
    atomic_long migrations;
    atomic_long errno_errors;
    atomic_long rc_errors;
    atomic_long thread_errors; /* pinned tasks: moved anyway */
    atomic_long started, done;
};

static int migrate_body(void *arg, void **res)
{
    struct migrate_ctx *c = arg;
    rv_task *me = rv_current_task();
    int base = (int)(rv_task_id(me) % 10000) * 100000;
    long moved = 0;
    for (int i = 0; i < c->suspensions; i++) {
        int mark = base + i + 1; /* unique per task and step, never 0 */
        TASK_ERRNO = mark;
        pthread_t before = self_thread();
        int rc = (c->sleep_every && i % c->sleep_every == c->sleep_every - 1) ? rv_sleep(1 * MS)
                                                                              : rv_yield();
        int after_errno = TASK_ERRNO;
        pthread_t after = self_thread();
        if (rc != 0)
            atomic_fetch_add(&c->rc_errors, 1);
        if (after_errno != mark)
            atomic_fetch_add(&c->errno_errors, 1);
        if (!pthread_equal(before, after))
            moved++;
    }
    atomic_fetch_add(&c->migrations, moved);
    atomic_fetch_add(&c->done, 1);
    *res = IP(moved);
    return 0;
}

/* fiber.h: "a task may suspend on one worker thread and resume on another ...
 * errno is saved and restored per task by the scheduler". Many tasks suspend
 * thousands of times (yields and 1 ms sleeps) on 2 workers kept busy by other
 * tasks; each sets a unique errno before every suspension and finds it
 * unchanged after, whichever thread it resumed on. Migrations are counted. */
static void test_fiber_migration_errno(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2, 0);
    long migrations = 0;
    /* Whether a given run migrates anything depends on timing; every run
     * checks the invariants, and runs repeat (rarely needed) until at least
     * one migration has been seen. */
    for (int attempt = 0; attempt < 5 && migrations == 0; attempt++) {
        static struct busy_ctx busy; /* static: outlives a failed test's tasks */
        memset(&busy, 0, sizeof busy);
        busy.sleep_every = 8;
        static struct migrate_ctx c;
        memset(&c, 0, sizeof c);
        c.suspensions = 3000 / SCALE_DIV;
        c.sleep_every = 16;

        enum { NBUSY = 4, NTRACK = 32 };
        rv_task *busy_tasks[NBUSY], *track[NTRACK];
        for (int i = 0; i < NBUSY; i++)
            busy_tasks[i] = spawn(rt, busy_body, &busy, NULL);
        for (int i = 0; i < NTRACK; i++)
            track[i] = spawn(rt, migrate_body, &c, NULL);
        long tasks_that_moved = 0;
        int failures = 0;
        for (int i = 0; i < NTRACK; i++)
            tasks_that_moved += PI(join_soft(track[i], 0, &failures)) > 0;
        atomic_store(&busy.stop, 1);
        for (int i = 0; i < NBUSY; i++)
            join_soft(busy_tasks[i], 0, &failures);
        assert_int_equal(failures, 0);

        print_message("migration: %ld resumptions on another thread (%d of %d tasks moved), "
                      "%ld busy rounds\n",
                      atomic_load(&c.migrations), (int)tasks_that_moved, NTRACK,
                      atomic_load(&busy.rounds));
        assert_int_equal(atomic_load(&c.done), NTRACK);
        assert_int_equal(atomic_load(&c.rc_errors), 0);
        assert_int_equal(atomic_load(&c.errno_errors), 0);
        migrations += atomic_load(&c.migrations);
    }
    /* Observed: tens to hundreds of migrations per run. */
    assert_true(migrations > 0);
    free_runtime(rt);
}

/* Migration through plain-thread wakeups: a task woken from a plain thread
 * goes to the inject queue, which any worker takes from. Ping-pong with the
 * test thread (each side waits for the other's future), so the task really
 * suspends every round; its errno is its own afterwards. */
struct pingpong {
    rv_future **to_task, **to_thread;
    int rounds;
    atomic_long errno_errors, rc_errors, migrations;
};

static int awaiter_body(void *arg, void **res)
{
    struct pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        int mark = 7000000 + i;
        TASK_ERRNO = mark;
        pthread_t before = self_thread();
        if (rv_future_set_result(p->to_thread[i], IP(i)) != 0)
            atomic_fetch_add(&p->rc_errors, 1);
        void *r = NULL;
        int rc = rv_await(p->to_task[i], &r);
        if (rc != 0 || PI(r) != i)
            atomic_fetch_add(&p->rc_errors, 1);
        if (TASK_ERRNO != mark)
            atomic_fetch_add(&p->errno_errors, 1);
        if (!pthread_equal(before, self_thread()))
            atomic_fetch_add(&p->migrations, 1);
    }
    return 0;
}

static void test_fiber_errno_plain_thread_wakeups(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2, 0);
    static struct busy_ctx busy;
    memset(&busy, 0, sizeof busy);
    static struct pingpong p;
    memset(&p, 0, sizeof p);
    p.rounds = 2000 / SCALE_DIV;
    p.to_task = calloc((size_t)p.rounds, sizeof *p.to_task);
    p.to_thread = calloc((size_t)p.rounds, sizeof *p.to_thread);
    assert_non_null(p.to_task);
    assert_non_null(p.to_thread);
    for (int i = 0; i < p.rounds; i++) {
        assert_int_equal(rv_future_new(rt, &p.to_task[i]), 0);
        assert_int_equal(rv_future_new(rt, &p.to_thread[i]), 0);
    }
    rv_task *b1 = spawn(rt, busy_body, &busy, NULL);
    rv_task *b2 = spawn(rt, busy_body, &busy, NULL);
    rv_task *t = spawn(rt, awaiter_body, &p, NULL);
    int errors = 0;
    for (int i = 0; i < p.rounds; i++) {
        void *r = NULL;
        if (rv_future_wait(p.to_thread[i], WAIT_NS, &r) != 0 || PI(r) != i)
            errors++;
        if (rv_future_set_result(p.to_task[i], IP(i)) != 0)
            errors++;
    }
    int failures = 0;
    join_soft(t, 0, &failures);
    atomic_store(&busy.stop, 1);
    join_soft(b1, 0, &failures);
    join_soft(b2, 0, &failures);
    assert_int_equal(failures, 0);
    print_message("plain-thread wakeups: %ld of %d resumptions on another thread\n",
                  atomic_load(&p.migrations), p.rounds);
    assert_int_equal(errors, 0);
    assert_int_equal(atomic_load(&p.rc_errors), 0);
    assert_int_equal(atomic_load(&p.errno_errors), 0);
    for (int i = 0; i < p.rounds; i++) {
        rv_future_release(p.to_task[i]);
        rv_future_release(p.to_thread[i]);
    }
    free(p.to_task);
    free(p.to_thread);
    free_runtime(rt);
}

static int pinned_body(void *arg, void **res)
{
    struct migrate_ctx *c = arg;
    pthread_t home = self_thread();
    atomic_fetch_add(&c->started, 1);
    for (int i = 0; i < c->suspensions; i++) {
        int mark = 424242 + i;
        TASK_ERRNO = mark;
        int rc = (i % 8 == 7) ? rv_sleep(1 * MS) : rv_yield();
        if (rc != 0)
            atomic_fetch_add(&c->rc_errors, 1);
        if (TASK_ERRNO != mark)
            atomic_fetch_add(&c->errno_errors, 1);
        if (!pthread_equal(home, self_thread()))
            atomic_fetch_add(&c->thread_errors, 1);
    }
    atomic_fetch_add(&c->done, 1);
    return 0;
}

/* rv_spawn_opts.pinned: "never migrates: runs only on the worker it first runs
 * on" - pinned tasks that yield and sleep among busy unpinned ones (which
 * make idle workers steal) stay on one thread, and errno is still per task.
 * The busy tasks start once every pinned task has started: a pinned task's
 * first run comes through its worker's inbox, which is a separate matter
 * (test-stress: test_stress_pinned_woken_remotely_runs). */
static void test_fiber_pinned_never_migrates(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2, 0);
    static struct busy_ctx busy;
    memset(&busy, 0, sizeof busy);
    busy.sleep_every = 8;
    static struct migrate_ctx c;
    memset(&c, 0, sizeof c);
    c.suspensions = 2000 / SCALE_DIV;
    enum { NBUSY = 4, NPIN = 8 };
    rv_spawn_opts opts = {.size = sizeof opts, .pinned = true};
    rv_task *busy_tasks[NBUSY], *pinned[NPIN];
    for (int i = 0; i < NPIN; i++)
        pinned[i] = spawn(rt, pinned_body, &c, &opts);
    int64_t deadline = rv_now() + WAIT_NS;
    while (atomic_load(&c.started) < NPIN && rv_now() < deadline)
        sleep_ms(1);
    for (int i = 0; i < NBUSY; i++)
        busy_tasks[i] = spawn(rt, busy_body, &busy, NULL);
    int failures = 0;
    for (int i = 0; i < NPIN; i++)
        join_soft(pinned[i], 0, &failures);
    atomic_store(&busy.stop, 1);
    for (int i = 0; i < NBUSY; i++)
        join_soft(busy_tasks[i], 0, &failures);
    assert_int_equal(failures, 0);
    assert_int_equal(atomic_load(&c.done), NPIN);
    assert_int_equal(atomic_load(&c.rc_errors), 0);
    assert_int_equal(atomic_load(&c.errno_errors), 0);
    assert_int_equal(atomic_load(&c.thread_errors), 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* (b) Callee-saved registers and floating-point state                        */

struct regs_arg {
    uint64_t seed;
    bool suspend;
    int steps;
    uint64_t out_int;
    double out_fp;
    int rc;
};

/* Many integer and floating-point values live across every suspension point:
 * the compiler keeps them in callee-saved registers or spills them to the
 * stack; either must survive the switch (and a migration). */
__attribute__((noinline)) static void regs_compute(struct regs_arg *a)
{
    uint64_t r0 = a->seed, r1 = a->seed * 3 + 1, r2 = a->seed ^ 0x5555, r3 = ~a->seed;
    uint64_t r4 = a->seed << 7, r5 = a->seed + 99, r6 = a->seed * a->seed, r7 = 12345;
    double f0 = (double)(a->seed % 1000) * 0.5, f1 = 1.0 / (double)(a->seed % 7 + 1), f2 = 3.25,
           f3 = -2.5, f4 = 1e-3, f5 = (double)a->seed * 1e-6;
    for (int i = 0; i < a->steps; i++) {
        r0 = r0 * 6364136223846793005ULL + 1442695040888963407ULL;
        r1 ^= r0 >> 13;
        r2 += r1 * 31;
        r3 = (r3 << 3) | (r3 >> 61);
        r4 -= r2;
        r5 ^= r4 + r3;
        r6 += r5 >> 7;
        r7 = r7 * 33 + r6;
        f0 = f0 * 1.0000001 + f1;
        f1 = f1 / 1.5 + f2 * 1e-3;
        f2 = f2 * 0.999 - f3 * 1e-4;
        f3 = f3 + f0 * 1e-9;
        f4 = f4 * 1.01 + f5;
        f5 = f5 * 0.5 + (double)(r7 & 0xff) * 1e-3;
        if (a->suspend) {
            int rc = (i % 50 == 49) ? rv_sleep(1 * MS) : rv_yield();
            if (rc != 0)
                a->rc = rc;
        }
    }
    a->out_int = r0 ^ r1 ^ r2 ^ r3 ^ r4 ^ r5 ^ r6 ^ r7;
    a->out_fp = f0 + f1 + f2 + f3 + f4 + f5;
}

static int regs_body(void *arg, void **res)
{
    regs_compute(arg);
    return 0;
}

/* fiber.h: "saves the callee-saved registers on the current stack and resumes
 * another stack" - 16 tasks on 2 workers compute with suspensions in between;
 * results equal the same computation done without suspending. */
static void test_fiber_registers_survive(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2, 0);
    enum { N = 16 };
    struct regs_arg args[N], ref[N];
    rv_task *t[N];
    for (int i = 0; i < N; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].seed = 1000003ULL * (uint64_t)(i + 1);
        args[i].suspend = true;
        args[i].steps = 2000 / SCALE_DIV;
        ref[i] = args[i];
        ref[i].suspend = false;
        regs_compute(&ref[i]);
    }
    for (int i = 0; i < N; i++)
        t[i] = spawn(rt, regs_body, &args[i], NULL);
    for (int i = 0; i < N; i++)
        join(t[i], 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(args[i].rc, 0);
        assert_true(args[i].out_int == ref[i].out_int);
        /* Same code, same inputs, same rounding: bit-identical. */
        assert_memory_equal(&args[i].out_fp, &ref[i].out_fp, sizeof(double));
    }
    free_runtime(rt);
}

struct round_ctx {
    int steps;
    atomic_long mode_errors, value_errors, rc_errors;
};

static const int round_modes[] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};

/* 1/3 under the current rounding mode, computed at run time. Out of line and
 * through volatiles: without -frounding-math the compiler may otherwise move
 * the division across fesetround(). */
static volatile double one_v = 1.0, three_v = 3.0;
__attribute__((noinline)) static double third(void)
{
    volatile double r = one_v / three_v;
    return r;
}

struct round_arg {
    struct round_ctx *c;
    int mode;
};

static int round_body(void *arg, void **res)
{
    struct round_arg *a = arg;
    struct round_ctx *c = a->c;
    if (fegetround() != FE_TONEAREST) /* a new fiber starts with the default */
        atomic_fetch_add(&c->mode_errors, 1);
    fesetround(a->mode);
    double expect = third();
    for (int i = 0; i < c->steps; i++) {
        int rc = (i % 20 == 19) ? rv_sleep(1 * MS) : rv_yield();
        if (rc != 0)
            atomic_fetch_add(&c->rc_errors, 1);
        if (fegetround() != a->mode)
            atomic_fetch_add(&c->mode_errors, 1);
        double v = third();
        if (memcmp(&v, &expect, sizeof v) != 0)
            atomic_fetch_add(&c->value_errors, 1);
    }
    fesetround(FE_TONEAREST);
    return 0;
}

/* switch_<arch>.S saves "the control bits of MXCSR and the x87 control word"
 * (FPCR on aarch64): the rounding mode is per fiber. Tasks in all four modes
 * interleave on 2 workers; each keeps its own mode and its 1/3 rounds its own
 * way, and a new task starts in round-to-nearest whatever its worker ran. */
static void test_fiber_fp_rounding_per_fiber(void **state)
{
    (void)state;
    /* The four modes give 1/3 two distinct values at least. */
    fesetround(FE_UPWARD);
    double up = third();
    fesetround(FE_DOWNWARD);
    double down = third();
    fesetround(FE_TONEAREST);
    assert_true(up != down);

    rv_runtime *rt = new_runtime(2, 0);
    struct round_ctx c;
    memset(&c, 0, sizeof c);
    c.steps = 1000 / SCALE_DIV;
    enum { N = 16 };
    struct round_arg args[N];
    rv_task *t[N];
    for (int i = 0; i < N; i++) {
        args[i].c = &c;
        args[i].mode = round_modes[i % 4];
        t[i] = spawn(rt, round_body, &args[i], NULL);
    }
    for (int i = 0; i < N; i++)
        join(t[i], 0);
    assert_int_equal(atomic_load(&c.rc_errors), 0);
    assert_int_equal(atomic_load(&c.mode_errors), 0);
    assert_int_equal(atomic_load(&c.value_errors), 0);
    assert_int_equal(fegetround(), FE_TONEAREST);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* (c) Deep recursion                                                         */

#define FRAME_BYTES 1000

static atomic_long deep_errors;

/* Each frame fills FRAME_BYTES with a depth-specific pattern, recurses, and
 * checks its pattern afterwards; the deepest frame suspends. */
__attribute__((noinline)) static uint64_t deep(int depth, int max, int suspend_at)
{
    volatile unsigned char buf[FRAME_BYTES];
    for (int i = 0; i < FRAME_BYTES; i++)
        buf[i] = (unsigned char)(depth * 31 + i);
    uint64_t sum = (uint64_t)depth;
    if (depth == suspend_at) {
        if (rv_yield() != 0)
            atomic_fetch_add(&deep_errors, 1);
        if (rv_sleep(1 * MS) != 0)
            atomic_fetch_add(&deep_errors, 1);
    }
    if (depth < max)
        sum += deep(depth + 1, max, suspend_at);
    for (int i = 0; i < FRAME_BYTES; i++)
        if (buf[i] != (unsigned char)(depth * 31 + i)) {
            atomic_fetch_add(&deep_errors, 1);
            break;
        }
    return sum + buf[depth % FRAME_BYTES];
}

static uint64_t deep_expect(int max)
{
    uint64_t s = 0;
    for (int d = 1; d <= max; d++)
        s += (uint64_t)d + (unsigned char)(d * 31 + d % FRAME_BYTES);
    return s;
}

struct deep_arg {
    int depth;
    uint64_t sum;
};

static int deep_body(void *arg, void **res)
{
    struct deep_arg *a = arg;
    a->sum = deep(1, a->depth, a->depth);
    if (rv_yield() != 0)
        atomic_fetch_add(&deep_errors, 1);
    /* Again after a suspension, possibly on another thread. */
    if (deep(1, a->depth, a->depth / 2) != a->sum)
        atomic_fetch_add(&deep_errors, 1);
    return 0;
}

/* rv_config.stack_size: "0: 64 KiB" - recursion using about 40 KiB of it
 * works, including suspending (and resuming) at the deepest point. */
static void test_fiber_deep_recursion_default_stack(void **state)
{
    (void)state;
    atomic_store(&deep_errors, 0);
    rv_runtime *rt = new_runtime(2, 0);
    enum { N = 8 };
    struct deep_arg args[N];
    rv_task *t[N];
    for (int i = 0; i < N; i++) {
        args[i].depth = 40; /* 40 frames of > 1000 bytes */
        args[i].sum = 0;
        t[i] = spawn(rt, deep_body, &args[i], NULL);
    }
    for (int i = 0; i < N; i++)
        join(t[i], 0);
    assert_int_equal(atomic_load(&deep_errors), 0);
    for (int i = 0; i < N; i++)
        assert_true(args[i].sum == deep_expect(40));
    free_runtime(rt);
}

/* rv_spawn_opts.stack_size: a task with a 1 MiB stack recurses ~800 KiB deep;
 * the runtime default stays small for the others. */
static void test_fiber_deep_recursion_custom_stack(void **state)
{
    (void)state;
    atomic_store(&deep_errors, 0);
    rv_runtime *rt = new_runtime(2, 0);
    struct deep_arg big = {.depth = 800, .sum = 0};
    struct deep_arg small = {.depth = 30, .sum = 0};
    rv_spawn_opts opts = {.size = sizeof opts, .name = "big-stack", .stack_size = 1024 * 1024};
    rv_task *tb = spawn(rt, deep_body, &big, &opts);
    rv_task *ts = spawn(rt, deep_body, &small, NULL);
    join(tb, 0);
    join(ts, 0);
    assert_int_equal(atomic_load(&deep_errors), 0);
    assert_true(big.sum == deep_expect(800));
    assert_true(small.sum == deep_expect(30));
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* (d) Stack overflow report                                                  */

static volatile int overflow_limit = 1 << 30;

__attribute__((noinline)) static int recurse_forever(int depth)
{
    volatile char buf[512];
    buf[0] = (char)depth;
    buf[511] = (char)depth;
    if (depth >= overflow_limit)
        return buf[0];
    return recurse_forever(depth + 1) + buf[0] + buf[511];
}

static int overflower_body(void *arg, void **res)
{
    *res = IP(recurse_forever(0));
    return 0;
}

/* The child process's whole job (a fresh image: no cmocka signal handlers). */
static int overflow_child(void)
{
    alarm(20); /* never hang the parent: SIGALRM kills us instead */
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 2;
    rv_runtime *rt = NULL;
    if (rv_runtime_new(&rt, &cfg) != 0) {
        fprintf(stderr, "child: rv_runtime_new failed\n");
        return 3;
    }
    rv_task *t = NULL;
    rv_spawn_opts opts = {.size = sizeof opts, .name = "overflower"};
    if (rv_spawn(rt, overflower_body, NULL, &opts, &t) != 0) {
        fprintf(stderr, "child: rv_spawn failed\n");
        return 4;
    }
    rv_future_wait(rv_task_future(t), -1, NULL);
    fprintf(stderr, "child: the overflowing task ended\n");
    return 5;
}

static const char *self_exe;

/* stack.c: "A fault inside the running task's guard page prints 'ravel: stack
 * overflow in task <id> '<name>'' and aborts". A child process (fork, then
 * exec of this binary, so that no cmocka SIGSEGV handler is inherited) runs a
 * task named "overflower" that recurses without end; the parent reads the
 * child's stderr through a pipe and checks it died of SIGABRT with the report.
 * Skipped under ASan/TSan, which own SIGSEGV and report overflows themselves. */
static void test_fiber_stack_overflow_report(void **state)
{
    (void)state;
#if defined(ASAN) || defined(TSAN)
    skip();
#else
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        execl(self_exe, self_exe, "--overflow-child", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char out[8192];
    size_t len = 0;
    for (;;) {
        ssize_t k = read(fds[0], out + len, sizeof out - 1 - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
        if (len == sizeof out - 1)
            break;
    }
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    print_message("child stderr: %s", out);
    if (!WIFSIGNALED(status))
        print_message("child exited with status %d\n", WEXITSTATUS(status));
    else
        print_message("child killed by signal %d\n", WTERMSIG(status));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(out, "stack overflow in task"));
    assert_non_null(strstr(out, "overflower"));
#endif
}

/* ------------------------------------------------------------------------- */
/* (e) Many parked tasks with a custom stack size                             */

#define PARKED 1000
#define PARKED_STACK 20000 /* rounded up to whole pages: 20480 */
#define PARKED_TOUCH 8192

struct parked_ctx {
    int64_t sleep_ns;
    atomic_int started;
    atomic_int slept_ok, cancelled, early, rc_errors, stack_errors;
};

static int parked_body(void *arg, void **res)
{
    struct parked_ctx *c = arg;
    volatile unsigned char buf[PARKED_TOUCH];
    uint64_t id = rv_task_id(rv_current_task());
    for (int i = 0; i < PARKED_TOUCH; i++)
        buf[i] = (unsigned char)(id + (uint64_t)i);
    atomic_fetch_add(&c->started, 1);
    int64_t t0 = rv_now();
    int rc = rv_sleep(c->sleep_ns);
    int64_t t1 = rv_now();
    for (int i = 0; i < PARKED_TOUCH; i++)
        if (buf[i] != (unsigned char)(id + (uint64_t)i)) {
            atomic_fetch_add(&c->stack_errors, 1);
            break;
        }
    if (rc == 0) {
        atomic_fetch_add(&c->slept_ok, 1);
        if (t1 - t0 < c->sleep_ns) /* rv_sleep rounds up: never early */
            atomic_fetch_add(&c->early, 1);
    } else if (rc == -ECANCELED) {
        atomic_fetch_add(&c->cancelled, 1);
    } else {
        atomic_fetch_add(&c->rc_errors, 1);
    }
    return 0;
}

static void count_visit(rv_task *t, void *arg)
{
    (void)t;
    (*(int *)arg)++;
}

/* 1,000 tasks with a 20,000-byte stack (rv_spawn_opts.stack_size, "rounded up
 * to whole pages") park in rv_sleep at once, each with 8 KiB of its stack in
 * use, and all wake on time with their stacks intact. */
static void test_fiber_many_parked_custom_stack(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2, 0);
    struct parked_ctx c;
    memset(&c, 0, sizeof c);
    c.sleep_ns = 200 * MS;
    rv_spawn_opts opts = {.size = sizeof opts, .stack_size = PARKED_STACK};
    rv_task **t = calloc(PARKED, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < PARKED; i++)
        t[i] = spawn(rt, parked_body, &c, &opts);
    for (int i = 0; i < PARKED; i++)
        join(t[i], 0);
    assert_int_equal(atomic_load(&c.started), PARKED);
    assert_int_equal(atomic_load(&c.slept_ok), PARKED);
    assert_int_equal(atomic_load(&c.early), 0);
    assert_int_equal(atomic_load(&c.rc_errors), 0);
    assert_int_equal(atomic_load(&c.stack_errors), 0);
    free(t);
    free_runtime(rt);
}

/* The same 1,000 parked on a long sleep: all are visible to rv_all_tasks and
 * the runtime counts them live while parked; cancelling wakes every one with
 * -ECANCELED, stacks intact. */
static void test_fiber_many_parked_cancelled(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2, 0);
    struct parked_ctx c;
    memset(&c, 0, sizeof c);
    c.sleep_ns = 60 * SEC;
    rv_spawn_opts opts = {.size = sizeof opts, .stack_size = 24 * 1024};
    rv_task **t = calloc(PARKED, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < PARKED; i++)
        t[i] = spawn(rt, parked_body, &c, &opts);
    /* Wait until every task has parked (registered on first suspension). */
    int64_t deadline = rv_now() + WAIT_NS;
    int visible = 0;
    while (rv_now() < deadline) {
        visible = 0;
        assert_true(rv_all_tasks(rt, count_visit, &visible) >= 0);
        if (visible == PARKED)
            break;
        sleep_ms(5);
    }
    assert_int_equal(visible, PARKED);
    rv_runtime_stats st = {.size = sizeof st};
    assert_int_equal(rv_runtime_stats_get(rt, &st), 0);
    assert_int_equal(st.live_tasks, PARKED);
    for (int i = 0; i < PARKED; i++)
        assert_int_equal(rv_task_cancel(t[i], NULL), 0);
    for (int i = 0; i < PARKED; i++)
        join(t[i], 0); /* the body consumed the request and returned 0 */
    assert_int_equal(atomic_load(&c.cancelled), PARKED);
    assert_int_equal(atomic_load(&c.rc_errors), 0);
    assert_int_equal(atomic_load(&c.stack_errors), 0);
    /* Each task's future completes just before the runtime stops counting it
     * live, so the count reaches 0 shortly after the last join. */
    deadline = rv_now() + WAIT_NS;
    do {
        assert_int_equal(rv_runtime_stats_get(rt, &st), 0);
        if (st.live_tasks == 0)
            break;
        sleep_ms(1);
    } while (rv_now() < deadline);
    assert_int_equal(st.live_tasks, 0);
    free(t);
    free_runtime(rt);
}

int main(int argc, char **argv)
{
    self_exe = "/proc/self/exe";
    if (argc > 1 && strcmp(argv[1], "--overflow-child") == 0)
        return overflow_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fiber_migration_errno),
        cmocka_unit_test(test_fiber_errno_plain_thread_wakeups),
        cmocka_unit_test(test_fiber_pinned_never_migrates),
        cmocka_unit_test(test_fiber_registers_survive),
        cmocka_unit_test(test_fiber_fp_rounding_per_fiber),
        cmocka_unit_test(test_fiber_deep_recursion_default_stack),
        cmocka_unit_test(test_fiber_deep_recursion_custom_stack),
        cmocka_unit_test(test_fiber_stack_overflow_report),
        cmocka_unit_test(test_fiber_many_parked_custom_stack),
        cmocka_unit_test(test_fiber_many_parked_cancelled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
