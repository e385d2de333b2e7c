/* test-stress.c - the scheduler under load.
 *
 * (a) a million spawns from one task, each counted once;
 * (b) 100,000 tasks that each await ~10 times (futures completed by other
 *     tasks and by callbacks, yields, sleeps of 0-1 ms), checking their own
 *     locals and errno after every await;
 * (c) ping-pong wakeups between tasks on different workers and between tasks
 *     and plain threads, with no lost wakeup: a lost one hangs the final
 *     rv_future_wait(-1) into the ctest timeout;
 * (d) runtime creation and destruction, 1,000 times;
 * (e) rv_worker_stats_get read while a run is going on;
 * (f) spreading and fairness: a burst of work reaches both workers; a pinned
 *     task woken from elsewhere, and an unpinned task next to two pinned
 *     tasks that keep waking each other, are not starved.
 *
 * Sizes are divided by 10 under TSan and by 4 under ASan.
 *
 * cmocka is not thread-safe: tasks, callbacks and plain threads record what
 * they see in atomics; only the test thread asserts.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ravel.h>

#define SEC (1000000000LL)
#define WAIT_NS (60 * SEC)
#include "test-util.h"

#ifndef RV_LOCAL_QUEUE_SIZE
#define RV_LOCAL_QUEUE_SIZE 256
#endif

#include "test-scale.h"

/* Not cached across a suspension point (a task may resume on another thread). */
static int *(*volatile errno_loc)(void) = __errno_location;
#define TASK_ERRNO (*errno_loc())

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 31);
}

/* ------------------------------------------------------------------------- */
/* (a) A million spawns                                                       */

#define SPAWNS (1000000L / SCALE_DIV)
#define SPAWN_WINDOW 65536 /* at most this many spawned and not yet run */

struct spawn_ctx {
    long n;
    atomic_long count;
    atomic_long spawn_errors;
    rv_future *done;
};

static int inc_body(void *arg, void **res)
{
    struct spawn_ctx *c = arg;
    if (atomic_fetch_add(&c->count, 1) + 1 == c->n)
        rv_future_set_result(c->done, NULL);
    return 0;
}

static int spawner_body(void *arg, void **res)
{
    struct spawn_ctx *c = arg;
    for (long i = 0; i < c->n; i++) {
        int rc = rv_spawn(NULL, inc_body, c, NULL, NULL);
        if (rc != 0)
            atomic_fetch_add(&c->spawn_errors, 1);
        /* Back-pressure keeps memory bounded; the spawner yields meanwhile. */
        if ((i & 4095) == 4095)
            while (i + 1 - atomic_load(&c->count) > SPAWN_WINDOW)
                if (rv_yield() != 0)
                    return -ECANCELED;
    }
    return 0;
}

static void sum_stats(rv_runtime *rt, rv_worker_stats *sum)
{
    memset(sum, 0, sizeof *sum);
    rv_runtime_stats rs = {.size = sizeof rs};
    assert_int_equal(rv_runtime_stats_get(rt, &rs), 0);
    for (unsigned w = 0; w < rs.workers; w++) {
        rv_worker_stats s;
        assert_int_equal(rv_worker_stats_get(rt, w, &s), 0);
        sum->tasks_polled += s.tasks_polled;
        sum->steals += s.steals;
        sum->stolen_tasks += s.stolen_tasks;
        sum->steal_attempts += s.steal_attempts;
        sum->overflows += s.overflows;
        sum->parks += s.parks;
        sum->unparks += s.unparks;
        sum->timers_fired += s.timers_fired;
        sum->busy_ns += s.busy_ns;
    }
}

/* 1,000,000 fire-and-forget spawns from one task on 2 workers: every task runs
 * exactly once (the counter is exact) and the local queue overflows to the
 * inject queue along the way. */
static void test_stress_million_spawns(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct spawn_ctx c;
    memset(&c, 0, sizeof c);
    c.n = SPAWNS;
    assert_int_equal(rv_future_new(rt, &c.done), 0);
    rv_task *sp = NULL;
    int64_t t0 = rv_now();
    assert_int_equal(rv_spawn(rt, spawner_body, &c, NULL, &sp), 0);
    assert_int_equal(rv_future_wait(rv_task_future(sp), WAIT_NS * 4, NULL), 0);
    int rc = rv_future_wait(c.done, WAIT_NS * 4, NULL);
    if (rc != 0)
        print_message("only %ld of %ld spawned tasks ran\n", atomic_load(&c.count), c.n);
    assert_int_equal(rc, 0);
    int64_t t1 = rv_now();
    assert_int_equal(atomic_load(&c.spawn_errors), 0);
    assert_int_equal(atomic_load(&c.count), c.n);
    rv_worker_stats sum;
    sum_stats(rt, &sum);
    print_message("%ld spawns in %.2f s: %llu polls, %llu overflows, %llu steals of %llu tasks\n",
                  c.n, (double)(t1 - t0) / 1e9, (unsigned long long)sum.tasks_polled,
                  (unsigned long long)sum.overflows, (unsigned long long)sum.steals,
                  (unsigned long long)sum.stolen_tasks);
    assert_true(sum.tasks_polled >= (uint64_t)c.n);
    assert_true(sum.overflows > 0);
    /* No more than the n + spawner ever counted live; all gone now (the count
     * drops just after each task's future completes, so poll briefly). */
    rv_runtime_stats rs = {.size = sizeof rs};
    int64_t deadline = rv_now() + WAIT_NS;
    do {
        assert_int_equal(rv_runtime_stats_get(rt, &rs), 0);
        if (rs.live_tasks == 0)
            break;
        sleep_ms(1);
    } while (rv_now() < deadline);
    assert_int_equal(rs.live_tasks, 0);
    assert_int_equal(rv_task_release(sp), 0);
    assert_int_equal(rv_future_release(c.done), 0);
    assert_int_equal(rv_runtime_free(rt), 0);
}

/* ------------------------------------------------------------------------- */
/* (b) Many tasks, many awaits                                                */

#define MANY (100000L / SCALE_DIV)
#define MANY_WINDOW 10000 /* tasks alive at once */
#define STEPS 10

struct many_ctx {
    long n;
    atomic_long finished;
    atomic_long checksum_errors, errno_errors, rc_errors, result_errors, spawn_errors;
    atomic_long awaits;
    rv_future *done;
};

/* Completes a future from another task after a yield. */
static int completer_body(void *arg, void **res)
{
    rv_future *f = arg;
    rv_yield();
    rv_future_set_result(f, IP(0x5eed));
    rv_future_release(f);
    return 0;
}

/* Completes a future from a plain callback on a worker. */
static void complete_cb(void *arg)
{
    rv_future *f = arg;
    rv_future_set_result(f, IP(0xcb));
    rv_future_release(f);
}

/* What a task's step returns: the expected result of each await. */
static intptr_t step_expect(int kind) { return kind == 0 ? 0x5eed : kind == 3 ? 0xcb : 0; }

static uint64_t checksum_expect(uint64_t seed)
{
    uint64_t acc = seed;
    for (int k = 0; k < STEPS; k++)
        acc = mix(acc, (uint64_t)k * 1000 + (uint64_t)step_expect((int)((seed + (uint64_t)k) % 5)));
    return acc;
}

static int many_body(void *arg, void **res)
{
    struct many_ctx *c = arg;
    uint64_t seed = rv_task_id(rv_current_task());
    volatile uint64_t guard[8];
    for (int i = 0; i < 8; i++)
        guard[i] = mix(seed, (uint64_t)i);
    uint64_t acc = seed;
    for (int k = 0; k < STEPS; k++) {
        int kind = (int)((seed + (uint64_t)k) % 5);
        int mark = (int)(seed % 100000) * 16 + k + 1;
        TASK_ERRNO = mark;
        int rc = 0;
        void *r = NULL;
        switch (kind) {
        case 0: /* a future completed by another task */
        case 3: /* a future completed by a callback */ {
            rv_future *f = NULL;
            rc = rv_future_new(NULL, &f);
            if (rc != 0)
                break;
            rv_future_ref(f); /* the completer's */
            if (kind == 0)
                rc = rv_spawn(NULL, completer_body, f, NULL, NULL);
            else
                rc = rv_call_soon(NULL, complete_cb, f, NULL);
            if (rc != 0) {
                atomic_fetch_add(&c->spawn_errors, 1);
                rv_future_release(f);
                rv_future_release(f);
                break;
            }
            rc = rv_await(f, &r);
            rv_future_release(f);
            break;
        }
        case 1:
            rc = rv_yield();
            break;
        case 2:
            rc = rv_sleep((int64_t)((seed + (uint64_t)k) % 2) * MS); /* 0 or 1 ms */
            break;
        case 4:
            rc = rv_sleep(1 * MS);
            break;
        }
        atomic_fetch_add_explicit(&c->awaits, 1, memory_order_relaxed);
        if (TASK_ERRNO != mark)
            atomic_fetch_add(&c->errno_errors, 1);
        if (rc != 0)
            atomic_fetch_add(&c->rc_errors, 1);
        if (PI(r) != step_expect(kind))
            atomic_fetch_add(&c->result_errors, 1);
        acc = mix(acc, (uint64_t)k * 1000 + (uint64_t)PI(r));
        for (int i = 0; i < 8; i++)
            if (guard[i] != mix(seed, (uint64_t)i)) {
                atomic_fetch_add(&c->checksum_errors, 1);
                break;
            }
    }
    if (acc != checksum_expect(seed))
        atomic_fetch_add(&c->checksum_errors, 1);
    if (atomic_fetch_add(&c->finished, 1) + 1 == c->n)
        rv_future_set_result(c->done, NULL);
    return 0;
}

/* 100,000 tasks on 2 workers (at most MANY_WINDOW alive at once), each
 * awaiting 10 times; all complete, each with its locals and errno intact
 * after every await. */
static void test_stress_many_awaits(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct many_ctx c;
    memset(&c, 0, sizeof c);
    c.n = MANY;
    assert_int_equal(rv_future_new(rt, &c.done), 0);
    int64_t t0 = rv_now();
    for (long i = 0; i < c.n; i++) {
        while (i - atomic_load(&c.finished) >= MANY_WINDOW)
            sleep_ms(1);
        assert_int_equal(rv_spawn(rt, many_body, &c, NULL, NULL), 0);
    }
    /* No timeout: a task that is never woken hangs here (ctest timeout). */
    assert_int_equal(rv_future_wait(c.done, -1, NULL), 0);
    int64_t t1 = rv_now();
    print_message("%ld tasks, %ld awaits in %.2f s\n", c.n, atomic_load(&c.awaits),
                  (double)(t1 - t0) / 1e9);
    assert_int_equal(atomic_load(&c.finished), c.n);
    assert_int_equal(atomic_load(&c.awaits), c.n * STEPS);
    assert_int_equal(atomic_load(&c.spawn_errors), 0);
    assert_int_equal(atomic_load(&c.rc_errors), 0);
    assert_int_equal(atomic_load(&c.result_errors), 0);
    assert_int_equal(atomic_load(&c.errno_errors), 0);
    assert_int_equal(atomic_load(&c.checksum_errors), 0);
    assert_int_equal(rv_future_release(c.done), 0);
    assert_int_equal(rv_runtime_free(rt), 0);
}

/* ------------------------------------------------------------------------- */
/* (c) Ping-pong wakeups                                                      */

#define ROUNDS (10000 / SCALE_DIV)
#define NTHREADS 4
#define NPAIRS 2

/* One side of a ping-pong: round i completes mine[i] and waits for theirs[i]. */
struct pp_side {
    rv_future **mine;
    rv_future **theirs;
    int rounds;
    atomic_long errors, errno_errors;
};

static int pp_task_body(void *arg, void **res)
{
    struct pp_side *s = arg;
    for (int i = 0; i < s->rounds; i++) {
        int mark = 900000 + i;
        TASK_ERRNO = mark;
        if (rv_future_set_result(s->mine[i], IP(i + 1)) != 0)
            atomic_fetch_add(&s->errors, 1);
        void *r = NULL;
        if (rv_await(s->theirs[i], &r) != 0 || PI(r) != i + 1)
            atomic_fetch_add(&s->errors, 1);
        if (TASK_ERRNO != mark)
            atomic_fetch_add(&s->errno_errors, 1);
    }
    return 0;
}

static void *pp_thread_main(void *arg)
{
    struct pp_side *s = arg;
    for (int i = 0; i < s->rounds; i++) {
        void *r = NULL;
        /* No timeout: a lost wakeup of this thread hangs the test. */
        if (rv_future_wait(s->theirs[i], -1, &r) != 0 || PI(r) != i + 1)
            atomic_fetch_add(&s->errors, 1);
        if (rv_future_set_result(s->mine[i], IP(i + 1)) != 0)
            atomic_fetch_add(&s->errors, 1);
    }
    return NULL;
}

static rv_future **futures_new(rv_runtime *rt, int n)
{
    rv_future **f = calloc((size_t)n, sizeof *f);
    assert_non_null(f);
    for (int i = 0; i < n; i++)
        assert_int_equal(rv_future_new(rt, &f[i]), 0);
    return f;
}

static void futures_free(rv_future **f, int n)
{
    for (int i = 0; i < n; i++) {
        assert_true(rv_future_done(f[i]));
        assert_int_equal(rv_future_release(f[i]), 0);
    }
    free(f);
}

/* NTHREADS plain threads each ping-pong ROUNDS times with their own task
 * (task -> thread through rv_future_wait's futex, thread -> task through
 * the inject queue), while NPAIRS pairs of tasks ping-pong with each other
 * across the 2 workers. Every wait has no timeout: a lost wakeup anywhere
 * hangs the test into its ctest timeout. */
static void test_stress_pingpong_wakeups(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct pp_side tside[NTHREADS], thside[NTHREADS], a[NPAIRS], b[NPAIRS];
    rv_future **to_thread[NTHREADS], **to_task[NTHREADS], **ab[NPAIRS], **ba[NPAIRS];
    pthread_t threads[NTHREADS];
    rv_task *tasks[NTHREADS + 2 * NPAIRS];
    int ntasks = 0;
    int64_t t0 = rv_now();
    for (int i = 0; i < NPAIRS; i++) {
        ab[i] = futures_new(rt, ROUNDS);
        ba[i] = futures_new(rt, ROUNDS);
        memset(&a[i], 0, sizeof a[i]);
        memset(&b[i], 0, sizeof b[i]);
        a[i].mine = ab[i];
        a[i].theirs = ba[i];
        b[i].mine = ba[i];
        b[i].theirs = ab[i];
        a[i].rounds = b[i].rounds = ROUNDS;
        assert_int_equal(rv_spawn(rt, pp_task_body, &a[i], NULL, &tasks[ntasks++]), 0);
        assert_int_equal(rv_spawn(rt, pp_task_body, &b[i], NULL, &tasks[ntasks++]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        to_thread[i] = futures_new(rt, ROUNDS);
        to_task[i] = futures_new(rt, ROUNDS);
        memset(&tside[i], 0, sizeof tside[i]);
        memset(&thside[i], 0, sizeof thside[i]);
        tside[i].mine = to_thread[i];
        tside[i].theirs = to_task[i];
        thside[i].mine = to_task[i];
        thside[i].theirs = to_thread[i];
        tside[i].rounds = thside[i].rounds = ROUNDS;
        assert_int_equal(rv_spawn(rt, pp_task_body, &tside[i], NULL, &tasks[ntasks++]), 0);
        assert_int_equal(pthread_create(&threads[i], NULL, pp_thread_main, &thside[i]), 0);
    }
    /* Final joins: no timeout. */
    for (int i = 0; i < ntasks; i++) {
        assert_int_equal(rv_future_wait(rv_task_future(tasks[i]), -1, NULL), 0);
        assert_int_equal(rv_task_release(tasks[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(threads[i], NULL);
    int64_t t1 = rv_now();
    print_message("ping-pong: %d thread pairs and %d task pairs x %d rounds in %.2f s\n", NTHREADS,
                  NPAIRS, ROUNDS, (double)(t1 - t0) / 1e9);
    for (int i = 0; i < NPAIRS; i++) {
        assert_int_equal(atomic_load(&a[i].errors) + atomic_load(&b[i].errors), 0);
        assert_int_equal(atomic_load(&a[i].errno_errors) + atomic_load(&b[i].errno_errors), 0);
        futures_free(ab[i], ROUNDS);
        futures_free(ba[i], ROUNDS);
    }
    for (int i = 0; i < NTHREADS; i++) {
        assert_int_equal(atomic_load(&tside[i].errors), 0);
        assert_int_equal(atomic_load(&thside[i].errors), 0);
        assert_int_equal(atomic_load(&tside[i].errno_errors), 0);
        futures_free(to_thread[i], ROUNDS);
        futures_free(to_task[i], ROUNDS);
    }
    assert_int_equal(rv_runtime_free(rt), 0);
}

/* Wakeups of a parked runtime from plain threads: between rounds every
 * worker has gone idle (parked in epoll_wait), so each completion must
 * unpark one. */
static void test_stress_wake_parked_workers(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    int rounds = 300 / (SCALE_DIV > 1 ? 3 : 1);
    rv_future **to_task = futures_new(rt, rounds);
    rv_future **to_thread = futures_new(rt, rounds);
    struct pp_side side;
    memset(&side, 0, sizeof side);
    side.mine = to_thread;
    side.theirs = to_task;
    side.rounds = rounds;
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, pp_task_body, &side, NULL, &t), 0);
    int errors = 0;
    for (int i = 0; i < rounds; i++) {
        void *r = NULL;
        if (rv_future_wait(to_thread[i], -1, &r) != 0 || PI(r) != i + 1)
            errors++;
        if (i % 3 == 0)
            sleep_ms(1); /* let the workers park */
        if (rv_future_set_result(to_task[i], IP(i + 1)) != 0)
            errors++;
    }
    assert_int_equal(rv_future_wait(rv_task_future(t), -1, NULL), 0);
    assert_int_equal(errors, 0);
    assert_int_equal(atomic_load(&side.errors), 0);
    rv_worker_stats sum;
    sum_stats(rt, &sum);
    assert_true(sum.parks > 0);
    assert_int_equal(rv_task_release(t), 0);
    futures_free(to_task, rounds);
    futures_free(to_thread, rounds);
    assert_int_equal(rv_runtime_free(rt), 0);
}

/* ------------------------------------------------------------------------- */
/* (d) Runtime churn                                                          */

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static int tiny_body(void *arg, void **res)
{
    atomic_fetch_add((atomic_long *)arg, 1);
    *res = IP(5);
    return 0;
}

static int long_sleep_body(void *arg, void **res)
{
    atomic_fetch_add((atomic_long *)arg, 1);
    return rv_sleep(60 * SEC);
}

/* rv_runtime_new + a tiny task + rv_runtime_free, 1,000 times. Every other
 * runtime is freed while its task still sleeps (free shuts down and cancels
 * it; the handle stays valid and reads cancelled). No file descriptor or
 * thread outlives its runtime. */
static void test_stress_runtime_churn(void **state)
{
    (void)state;
    int iterations = 1000 / SCALE_DIV;
    int fds0 = count_dir("/proc/self/fd"), threads0 = count_dir("/proc/self/task");
    atomic_long ran = 0, started = 0;
    int cancelled = 0;
    int64_t t0 = rv_now();
    for (int i = 0; i < iterations; i++) {
        rv_runtime *rt = new_runtime(2);
        rv_task *t = NULL;
        if (i % 2 == 0) {
            assert_int_equal(rv_spawn(rt, tiny_body, &ran, NULL, &t), 0);
            void *r = NULL;
            assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, &r), 0);
            assert_int_equal(PI(r), 5);
            assert_int_equal(rv_runtime_free(rt), 0);
        } else {
            atomic_store(&started, 0);
            assert_int_equal(rv_spawn(rt, long_sleep_body, &started, NULL, &t), 0);
            if (i % 4 == 1) /* sometimes let it park first */
                while (atomic_load(&started) == 0)
                    sched_yield();
            assert_int_equal(rv_runtime_free(rt), 0);
            assert_true(rv_future_done(rv_task_future(t)));
            cancelled += rv_future_cancelled(rv_task_future(t));
        }
        assert_int_equal(rv_task_release(t), 0);
    }
    int64_t t1 = rv_now();
    int fds1 = count_dir("/proc/self/fd"), threads1 = count_dir("/proc/self/task");
    print_message("%d runtimes in %.2f s; fds %d -> %d, threads %d -> %d\n", iterations,
                  (double)(t1 - t0) / 1e9, fds0, fds1, threads0, threads1);
    assert_int_equal(cancelled, iterations / 2);
    assert_int_equal(fds1, fds0);
    assert_int_equal(threads1, threads0);
}

/* ------------------------------------------------------------------------- */
/* (e) Counters during a run                                                  */

struct yieldy_ctx {
    int yields;
    atomic_long finished;
    long n;
    rv_future *done;
};

static int yieldy_body(void *arg, void **res)
{
    struct yieldy_ctx *c = arg;
    for (int i = 0; i < c->yields; i++) {
        int rc = (i % 8 == 7) ? rv_sleep(1 * MS) : rv_yield();
        if (rc != 0)
            return rc;
    }
    if (atomic_fetch_add(&c->finished, 1) + 1 == c->n)
        rv_future_set_result(c->done, NULL);
    return 0;
}

static int spawn_yieldy_body(void *arg, void **res)
{
    struct yieldy_ctx *c = arg;
    for (long i = 0; i < c->n; i++)
        if (rv_spawn(NULL, yieldy_body, c, NULL, NULL) != 0)
            return -EIO;
    return 0;
}

/* rv_worker_stats_get: "Snapshot of worker index (< workers; -EINVAL
 * otherwise)". Sampled while 20,000 tasks yield and sleep: every counter only
 * grows, the local queue depth stays within the ring, and at the end (workers
 * stopped) the totals add up: polls cover every task step, stolen >= steals,
 * steals <= attempts, each park was followed by an unpark, timers fired. */
static void test_stress_worker_stats(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    rv_worker_stats s;
    assert_int_equal(rv_worker_stats_get(rt, 2, &s), -EINVAL);
    assert_int_equal(rv_worker_stats_get(rt, 0, NULL), -EINVAL);
    assert_int_equal(rv_worker_stats_get(NULL, 0, &s), -EINVAL);

    struct yieldy_ctx c;
    memset(&c, 0, sizeof c);
    c.n = 20000 / SCALE_DIV;
    c.yields = 16;
    assert_int_equal(rv_future_new(rt, &c.done), 0);
    rv_worker_stats prev[2];
    memset(prev, 0, sizeof prev);
    rv_task *sp = NULL;
    /* Two spawners: one per worker, most likely, so both have local queues. */
    assert_int_equal(rv_spawn(rt, spawn_yieldy_body, &c, NULL, &sp), 0);
    int samples = 0, backwards = 0, too_deep = 0;
    while (!rv_future_done(c.done)) {
        for (unsigned w = 0; w < 2; w++) {
            assert_int_equal(rv_worker_stats_get(rt, w, &s), 0);
            rv_worker_stats *p = &prev[w];
            backwards += s.tasks_polled < p->tasks_polled;
            backwards += s.steals < p->steals;
            backwards += s.stolen_tasks < p->stolen_tasks;
            backwards += s.steal_attempts < p->steal_attempts;
            backwards += s.overflows < p->overflows;
            backwards += s.parks < p->parks;
            backwards += s.unparks < p->unparks;
            backwards += s.timers_fired < p->timers_fired;
            backwards += s.busy_ns < p->busy_ns;
            too_deep += s.local_queue_depth > RV_LOCAL_QUEUE_SIZE;
            *p = s;
        }
        samples++;
        rv_runtime_stats rs = {.size = sizeof rs};
        assert_int_equal(rv_runtime_stats_get(rt, &rs), 0);
        assert_int_equal(rs.workers, 2);
        assert_true(rs.live_tasks <= (uint64_t)c.n + 1);
        sleep_ms(1);
    }
    assert_int_equal(rv_future_wait(rv_task_future(sp), WAIT_NS, NULL), 0);
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    /* Workers stopped: the counters are final. */
    rv_worker_stats sum;
    sum_stats(rt, &sum);
    uint64_t parks = 0, unparks = 0;
    for (unsigned w = 0; w < 2; w++) {
        assert_int_equal(rv_worker_stats_get(rt, w, &s), 0);
        assert_true(s.stolen_tasks >= s.steals);
        assert_true(s.steals <= s.steal_attempts);
        assert_int_equal(s.parks, s.unparks);
        assert_int_equal(s.io_events, 0);
        assert_true(s.tasks_polled >= prev[w].tasks_polled);
        parks += s.parks;
        unparks += s.unparks;
    }
    print_message("stats: %d samples; polls %llu, steals %llu (%llu tasks, %llu attempts), "
                  "overflows %llu, parks %llu, timers %llu, busy %.3f s\n",
                  samples, (unsigned long long)sum.tasks_polled, (unsigned long long)sum.steals,
                  (unsigned long long)sum.stolen_tasks, (unsigned long long)sum.steal_attempts,
                  (unsigned long long)sum.overflows, (unsigned long long)parks,
                  (unsigned long long)sum.timers_fired, (double)sum.busy_ns / 1e9);
    assert_int_equal(backwards, 0);
    assert_int_equal(too_deep, 0);
    assert_true(samples > 0);
    /* Each task is polled at least once per step (16 suspensions + start). */
    assert_true(sum.tasks_polled >= (uint64_t)c.n * 17);
    /* Two sleeps per task, each woken by its timer. */
    assert_true(sum.timers_fired >= (uint64_t)c.n * 2);
    assert_true(sum.busy_ns > 0);
    assert_int_equal(atomic_load(&c.finished), c.n);
    assert_int_equal(rv_task_release(sp), 0);
    assert_int_equal(rv_future_release(c.done), 0);
    assert_int_equal(rv_runtime_free(rt), 0);
}

/* ------------------------------------------------------------------------- */
/* (f) Spreading and fairness                                                 */

#define SPREAD_TASKS (4000 / SCALE_DIV)

struct spread_ctx {
    long n;
    atomic_long finished;
    rv_future *done;
};

static int cpu_body(void *arg, void **res)
{
    struct spread_ctx *c = arg;
    volatile uint64_t x = 1;
    int64_t until = rv_now() + 50000; /* ~50 us of work */
    while (rv_now() < until)
        x = x * 6364136223846793005ULL + 1;
    if (atomic_fetch_add(&c->finished, 1) + 1 == c->n)
        rv_future_set_result(c->done, NULL);
    return 0;
}

/* Work submitted from a plain thread runs on both workers: worker.c, "A
 * producer that publishes work wakes a parked worker only if no one is
 * searching ... A searcher that finds work and was the last searcher wakes one
 * more parked worker if work remains, so a burst ramps up one worker at a
 * time". 4,000 tasks of ~50 us each (0.2 s of work) are submitted to a
 * 2-worker runtime; each worker must run some of them (at least 1%). */
static void test_stress_work_spreads_over_workers(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    sleep_ms(20); /* both workers parked */
    static struct spread_ctx c;
    memset(&c, 0, sizeof c);
    c.n = SPREAD_TASKS;
    assert_int_equal(rv_future_new(rt, &c.done), 0);
    for (long i = 0; i < c.n; i++)
        assert_int_equal(rv_spawn(rt, cpu_body, &c, NULL, NULL), 0);
    assert_int_equal(rv_future_wait(c.done, WAIT_NS, NULL), 0);
    rv_worker_stats s0, s1;
    assert_int_equal(rv_worker_stats_get(rt, 0, &s0), 0);
    assert_int_equal(rv_worker_stats_get(rt, 1, &s1), 0);
    print_message("plain-thread burst of %ld tasks: worker 0 polled %llu, worker 1 polled %llu "
                  "(steals %llu + %llu)\n",
                  c.n, (unsigned long long)s0.tasks_polled, (unsigned long long)s1.tasks_polled,
                  (unsigned long long)s0.steals, (unsigned long long)s1.steals);
    assert_true(s0.tasks_polled >= (uint64_t)c.n / 100);
    assert_true(s1.tasks_polled >= (uint64_t)c.n / 100);
    assert_int_equal(rv_future_release(c.done), 0);
    assert_int_equal(rv_runtime_free(rt), 0);
}

/* The same burst spawned from a task. */
static int burst_body(void *arg, void **res)
{
    struct spread_ctx *c = arg;
    for (long i = 0; i < c->n; i++)
        if (rv_spawn(NULL, cpu_body, c, NULL, NULL) != 0)
            return -EIO;
    return 0;
}

static void test_stress_task_burst_spreads_over_workers(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    sleep_ms(20);
    static struct spread_ctx c;
    memset(&c, 0, sizeof c);
    c.n = SPREAD_TASKS;
    assert_int_equal(rv_future_new(rt, &c.done), 0);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, burst_body, &c, NULL, &t), 0);
    assert_int_equal(rv_future_wait(c.done, WAIT_NS, NULL), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    rv_worker_stats s0, s1;
    assert_int_equal(rv_worker_stats_get(rt, 0, &s0), 0);
    assert_int_equal(rv_worker_stats_get(rt, 1, &s1), 0);
    print_message("task burst of %ld tasks: worker 0 polled %llu, worker 1 polled %llu "
                  "(steals %llu + %llu)\n",
                  c.n, (unsigned long long)s0.tasks_polled, (unsigned long long)s1.tasks_polled,
                  (unsigned long long)s0.steals, (unsigned long long)s1.steals);
    assert_true(s0.tasks_polled >= (uint64_t)c.n / 100);
    assert_true(s1.tasks_polled >= (uint64_t)c.n / 100);
    assert_int_equal(rv_task_release(t), 0);
    assert_int_equal(rv_future_release(c.done), 0);
    assert_int_equal(rv_runtime_free(rt), 0);
}

struct fair_ctx {
    atomic_int stop;
    atomic_long yields;
    rv_future *f;
    atomic_int ran_while_busy;
};

static int yield_until_stop_body(void *arg, void **res)
{
    struct fair_ctx *c = arg;
    while (!atomic_load(&c->stop)) {
        atomic_fetch_add_explicit(&c->yields, 1, memory_order_relaxed);
        if (rv_yield() != 0)
            return -ECANCELED;
    }
    return 0;
}

static int pinned_awaiter_body(void *arg, void **res)
{
    struct fair_ctx *c = arg;
    int rc = rv_await(c->f, NULL);
    if (!atomic_load(&c->stop))
        atomic_store(&c->ran_while_busy, 1);
    return rc;
}

/* rv_yield: "Let every other ready task run once". On a 1-worker runtime a
 * pinned task parks in rv_await; the test thread completes the future (the
 * wake goes to the worker's inbox) while an unpinned task yields in a loop.
 * The pinned task must run while the other keeps yielding. */
static void test_stress_pinned_woken_remotely_runs(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    static struct fair_ctx c;
    memset(&c, 0, sizeof c);
    assert_int_equal(rv_future_new(rt, &c.f), 0);
    rv_spawn_opts pin = {.size = sizeof pin, .pinned = true};
    rv_task *waiter = NULL, *busy = NULL;
    assert_int_equal(rv_spawn(rt, pinned_awaiter_body, &c, &pin, &waiter), 0);
    sleep_ms(20); /* the waiter parks in rv_await */
    assert_int_equal(rv_spawn(rt, yield_until_stop_body, &c, NULL, &busy), 0);
    while (atomic_load(&c.yields) < 1000)
        sleep_ms(1);
    assert_int_equal(rv_future_set_result(c.f, NULL), 0);
    int rc = rv_future_wait(rv_task_future(waiter), 5 * SEC, NULL);
    long yields = atomic_load(&c.yields);
    atomic_store(&c.stop, 1);
    int rc2 = rv_future_wait(rv_task_future(waiter), WAIT_NS, NULL);
    if (rc != 0)
        print_message("the pinned task did not run within 5 s while another task yielded "
                      "%ld times (rc %d); it ran once that task stopped (rc %d)\n",
                      yields, rc, rc2);
    assert_int_equal(rv_future_wait(rv_task_future(busy), WAIT_NS, NULL), 0);
    assert_int_equal(rv_task_release(busy), 0);
    assert_int_equal(rv_task_release(waiter), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    assert_int_equal(rv_runtime_free(rt), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&c.ran_while_busy), 1);
}

#define PP_FAIR_ROUNDS 20000

struct pinned_pp {
    rv_future **a, **b;
    atomic_int round, p1_done;
    atomic_int other_ran_at; /* round when the unpinned task ran; -1: never */
};

static int pp1_body(void *arg, void **res)
{
    struct pinned_pp *p = arg;
    for (int i = 0; i < PP_FAIR_ROUNDS; i++) {
        rv_future_set_result(p->a[i], NULL);
        if (rv_await(p->b[i], NULL) != 0)
            return -EIO;
        atomic_store(&p->round, i + 1);
    }
    atomic_store(&p->p1_done, 1);
    return 0;
}

static int pp2_body(void *arg, void **res)
{
    struct pinned_pp *p = arg;
    for (int i = 0; i < PP_FAIR_ROUNDS; i++) {
        if (rv_await(p->a[i], NULL) != 0)
            return -EIO;
        rv_future_set_result(p->b[i], NULL);
    }
    return 0;
}

static int other_body(void *arg, void **res)
{
    struct pinned_pp *p = arg;
    atomic_store(&p->other_ran_at, atomic_load(&p->round));
    return 0;
}

static int pp_parent_body(void *arg, void **res)
{
    struct pinned_pp *p = arg;
    rv_spawn_opts pin = {.size = sizeof pin, .pinned = true};
    rv_task *t1 = NULL, *t2 = NULL, *t3 = NULL;
    if (rv_spawn(NULL, pp1_body, p, &pin, &t1) || rv_spawn(NULL, pp2_body, p, &pin, &t2) ||
        rv_spawn(NULL, other_body, p, NULL, &t3))
        return -EIO;
    int rc = rv_await(rv_task_future(t1), NULL);
    rc |= rv_await(rv_task_future(t2), NULL);
    rc |= rv_await(rv_task_future(t3), NULL);
    rv_task_release(t1);
    rv_task_release(t2);
    rv_task_release(t3);
    return rc ? -EIO : 0;
}

/* Two pinned tasks that wake each other (future ping-pong) on a 1-worker
 * runtime must not starve an unpinned task that is ready at the same time:
 * it runs long before the 20,000 rounds are over (asyncio's FIFO ready queue
 * would run it in the first round). */
static void test_stress_pinned_pingpong_does_not_starve(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    static struct pinned_pp p;
    memset(&p, 0, sizeof p);
    atomic_store(&p.other_ran_at, -1);
    p.a = futures_new(rt, PP_FAIR_ROUNDS);
    p.b = futures_new(rt, PP_FAIR_ROUNDS);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, pp_parent_body, &p, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    int at = atomic_load(&p.other_ran_at);
    print_message("the unpinned task ran at ping-pong round %d of %d\n", at, PP_FAIR_ROUNDS);
    assert_int_equal(rv_task_release(t), 0);
    futures_free(p.a, PP_FAIR_ROUNDS);
    futures_free(p.b, PP_FAIR_ROUNDS);
    assert_int_equal(rv_runtime_free(rt), 0);
    assert_true(at >= 0);
    assert_true(at < PP_FAIR_ROUNDS / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_million_spawns),
        cmocka_unit_test(test_stress_many_awaits),
        cmocka_unit_test(test_stress_pingpong_wakeups),
        cmocka_unit_test(test_stress_wake_parked_workers),
        cmocka_unit_test(test_stress_runtime_churn),
        cmocka_unit_test(test_stress_worker_stats),
        cmocka_unit_test(test_stress_work_spreads_over_workers),
        cmocka_unit_test(test_stress_task_burst_spreads_over_workers),
        cmocka_unit_test(test_stress_pinned_woken_remotely_runs),
        cmocka_unit_test(test_stress_pinned_pingpong_does_not_starve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
