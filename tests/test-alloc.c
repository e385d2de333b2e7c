/* test-alloc.c - out of memory everywhere: allocation fault injection.
 *
 * executor/alloc.h: test builds "can make the N-th allocation fail, to walk
 * every allocation site of a scenario and check for -ENOMEM and no leak".
 * For N = 0, 1, 2, ... the test arms rv__fault_alloc_after(N) and runs a
 * scenario touching the runtime's allocating calls (runtime creation, spawns
 * from plain threads and from tasks, awaits, sleeps and timed waits, futures
 * and done callbacks, call_soon/call_later, task-local storage, cancellation
 * and error messages). Every call must return success or -ENOMEM; nothing may
 * crash or hang; after switching injection off the same runtime must still
 * work. The walk ends at the first N the scenario never reaches (the hook
 * returns how many allocations were made since it was last called).
 *
 * Leaks: the CI runs this file under ASan/LeakSanitizer, which reports any
 * allocation a failure path forgot to free.
 *
 * cmocka is not thread-safe: tasks and callbacks record what they see in
 * atomics; only the test thread asserts.
 */
#define RV_FAULT_INJECTION 1

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ravel.h>

#define SEC (1000000000LL)
#define WAIT_NS (20 * SEC)
#include "test-util.h"

#include "executor/alloc.h"

#define MAX_STEPS 2000 /* far more than the scenario's allocation sites */

/* ------------------------------------------------------------------------- */
/* The hook itself                                                            */

/* rv__fault_alloc_after: "Fail the allocation that comes n calls from now (0:
 * the very next one), and only that one; a negative n switches injection off.
 * Returns the number of allocations made since the previous call". An idle
 * 1-worker runtime allocates nothing by itself, so the counts are exact. */
static void test_alloc_hook_semantics(void **state)
{
    (void)state;
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 1;
    rv_runtime *rt = NULL;
    rv__fault_alloc_after(-1);
    assert_int_equal(rv_runtime_new(&rt, &cfg), 0);
    rv_future *f[3] = {NULL, NULL, NULL};

    rv__fault_alloc_after(0);
    assert_int_equal(rv_future_new(rt, &f[0]), -ENOMEM);
    assert_null(f[0]);
    assert_int_equal(rv__fault_alloc_after(-1), 1);
    assert_int_equal(rv_future_new(rt, &f[0]), 0); /* off: succeeds */
    assert_int_equal(rv__fault_alloc_after(-1), 1);

    rv__fault_alloc_after(1); /* the second from now fails, only that one */
    assert_int_equal(rv_future_new(rt, &f[1]), 0);
    assert_int_equal(rv_future_new(rt, &f[2]), -ENOMEM);
    rv_future *g = NULL;
    assert_int_equal(rv_future_new(rt, &g), 0);
    assert_int_equal(rv__fault_alloc_after(-1), 3);
    assert_int_equal(rv_future_new(rt, &f[2]), 0);

    for (int i = 0; i < 3; i++)
        assert_int_equal(rv_future_release(f[i]), 0);
    assert_int_equal(rv_future_release(g), 0);
    assert_int_equal(rv_runtime_free(rt), 0);
}

/* rv_runtime_new: "Returns -ENOMEM (and leaks nothing) when memory runs out" -
 * at every allocation of a 4-worker runtime's creation. */
static void test_alloc_runtime_new(void **state)
{
    (void)state;
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 4;
    int failures = 0;
    for (long n = 0; n < MAX_STEPS; n++) {
        rv_runtime *rt = (rv_runtime *)&failures; /* must be reset */
        rv__fault_alloc_after(n);
        int rc = rv_runtime_new(&rt, &cfg);
        long made = rv__fault_alloc_after(-1);
        if (rc == -ENOMEM) {
            assert_null(rt);
            failures++;
            continue;
        }
        assert_int_equal(rc, 0);
        assert_non_null(rt);
        assert_int_equal(rv_runtime_free(rt), 0);
        if (made <= n) { /* the n-th allocation never came: all sites walked */
            print_message("rv_runtime_new: %d allocation sites failed cleanly\n", failures);
            assert_true(failures >= 1);
            return;
        }
    }
    fail_msg("rv_runtime_new never completed without hitting the fault");
}

/* ------------------------------------------------------------------------- */
/* The scenario                                                               */

struct scen {
    rv_local_key key;
    /* outcomes */
    atomic_int ok, enomem, bad; /* every checked call lands in one of these */
    atomic_int parents_ran, children_ran;
    atomic_int cb_runs, soon_runs, later_runs, dtor_runs;
};

static void note(struct scen *s, int rc, int ok_rc)
{
    if (rc == ok_rc)
        atomic_fetch_add(&s->ok, 1);
    else if (rc == -ENOMEM)
        atomic_fetch_add(&s->enomem, 1);
    else {
        atomic_fetch_add(&s->bad, 1);
        fprintf(stderr, "test-alloc: unexpected rc %d (wanted %d or -ENOMEM)\n", rc, ok_rc);
    }
}

static void local_dtor(void *v) { atomic_fetch_add((atomic_int *)v, 1); }

/* Children alternate: a plain result, and an error with a message. */
static int child_body(void *arg, void **res)
{
    struct scen *s = arg;
    atomic_fetch_add(&s->children_ran, 1);
    int rc = rv_yield();
    if (rc != 0)
        atomic_fetch_add(&s->bad, 1);
    uint64_t id = rv_task_id(rv_current_task());
    if (id % 2)
        return rv_task_error(-EIO, "child failed on purpose");
    *res = IP(7);
    return 0;
}

static int parent_body(void *arg, void **res)
{
    struct scen *s = arg;
    atomic_fetch_add(&s->parents_ran, 1);

    /* Task-local storage (allocates the task's table on first set). */
    int rc = rv_local_set(s->key, &s->dtor_runs);
    note(s, rc, 0);

    /* Spawn a child (named: one more allocation) and await it. */
    rv_task *child = NULL;
    rv_spawn_opts opts = {.size = sizeof opts, .name = "alloc-child"};
    rc = rv_spawn(NULL, child_body, s, &opts, &child);
    note(s, rc, 0);
    if (rc == 0) {
        void *r = NULL;
        rc = rv_await(rv_task_future(child), &r);
        if (rc == 0 && PI(r) != 7)
            atomic_fetch_add(&s->bad, 1);
        if (rc == -EIO) {
            /* The message is kept unless copying it ran out of memory. */
            const char *m = rv_future_message(rv_task_future(child));
            if (m && strcmp(m, "child failed on purpose") != 0)
                atomic_fetch_add(&s->bad, 1);
            rc = 0;
        }
        note(s, rc, 0); /* -ENOMEM: the child got no stack */
        const char *name = rv_task_name(child);
        if (!name || (strcmp(name, "alloc-child") != 0 && strcmp(name, "Task-?") != 0))
            atomic_fetch_add(&s->bad, 1);
        rv_task_release(child);
    }

    /* A sleep (timer allocation). */
    note(s, rv_sleep(1 * MS), 0);

    /* A timed wait inside a task on a future nobody completes. */
    rv_future *f = NULL;
    rc = rv_future_new(NULL, &f);
    note(s, rc, 0);
    if (rc == 0) {
        note(s, rv_future_wait(f, 1 * MS, NULL), -ETIMEDOUT);
        rv_future_release(f);
    }

    /* The default name is made on first request ("Task-?" if that fails). */
    const char *me = rv_task_name(rv_current_task());
    if (!me || strncmp(me, "Task-", 5) != 0)
        atomic_fetch_add(&s->bad, 1);
    *res = IP(1);
    return 0;
}

static void done_cb(rv_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add(&((struct scen *)arg)->cb_runs, 1);
}

static void soon_cb(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

/* A task that is cancelled with a message while it sleeps; it ends with
 * what rv_sleep returned (-ECANCELED, or -ENOMEM when its timer failed). */
static int sleeper_body(void *arg, void **res)
{
    atomic_store((atomic_int *)arg, 1);
    return rv_sleep(30 * SEC);
}

static void count_visit(rv_task *t, void *arg)
{
    (void)t;
    atomic_fetch_add((atomic_int *)arg, 1);
}

enum { NPARENTS = 10 };

struct outcome {
    int rc_new;
    int failed_calls; /* calls that returned -ENOMEM */
    bool hung;
};

/* Run the scenario with injection armed by the caller; switches injection
 * off when the scenario is over (before the health check and shutdown) and
 * returns the number of allocations it made through *made. */
static struct outcome run_scenario(struct scen *s, long *made)
{
    struct outcome out = {0, 0, false};
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 2;
    rv_runtime *rt = NULL;
    out.rc_new = rv_runtime_new(&rt, &cfg);
    if (out.rc_new != 0) {
        *made = rv__fault_alloc_after(-1);
        note(s, out.rc_new, 0);
        return out;
    }

    /* Spawns from a plain thread. */
    rv_task *parents[NPARENTS];
    for (int i = 0; i < NPARENTS; i++) {
        parents[i] = NULL;
        note(s, rv_spawn(rt, parent_body, s, NULL, &parents[i]), 0);
    }

    /* A future with two done callbacks, finished with an error message. */
    rv_future *f = NULL;
    int cbs = 0;
    int rc = rv_future_new(rt, &f);
    note(s, rc, 0);
    if (rc == 0) {
        for (int i = 0; i < 2; i++) {
            rc = rv_future_add_done_callback(f, done_cb, s);
            note(s, rc, 0);
            cbs += rc == 0;
        }
        rc = rv_future_set_exception(f, -EIO, "scenario error");
        note(s, rc, 0);
        if (rc != 0) /* the message copy failed; the future is still pending */
            assert_int_equal(rv_future_set_result(f, IP(3)), 0);
        assert_true(rv_future_done(f));
        /* One more callback on a done future: scheduled at once. */
        rc = rv_future_add_done_callback(f, done_cb, s);
        note(s, rc, 0);
        cbs += rc == 0;
    }

    /* call_soon and call_later, with handles. */
    rv_handle *h1 = NULL, *h2 = NULL;
    int soon = 0, later = 0;
    rc = rv_call_soon(rt, soon_cb, &s->soon_runs, &h1);
    note(s, rc, 0);
    soon += rc == 0;
    rc = rv_call_later(rt, 1 * MS, soon_cb, &s->later_runs, &h2);
    note(s, rc, 0);
    later += rc == 0;

    /* Cancellation with a message (copied). */
    rv_task *sleeper = NULL;
    atomic_int sleeper_started = 0;
    rc = rv_spawn(rt, sleeper_body, &sleeper_started, NULL, &sleeper);
    note(s, rc, 0);

    /* Wait for everything while injection is still armed: the workers'
     * allocations (stacks, timers, names, locals) are part of the walk. */
    for (int i = 0; i < NPARENTS; i++) {
        if (!parents[i])
            continue;
        void *r = NULL;
        rc = rv_future_wait(rv_task_future(parents[i]), WAIT_NS, &r);
        if (rc == -ETIMEDOUT)
            out.hung = true;
        note(s, rc, 0); /* -ENOMEM: no stack for the parent */
        if (rc == 0 && PI(r) != 1)
            atomic_fetch_add(&s->bad, 1);
    }
    if (sleeper) {
        /* Let it start first (unless it never will: no stack). */
        int64_t deadline = rv_now() + WAIT_NS;
        while (!atomic_load(&sleeper_started) && !rv_future_done(rv_task_future(sleeper)) &&
               rv_now() < deadline)
            sleep_ms(1);
        rc = rv_task_cancel(sleeper, "cancelled by the alloc test");
        if (rc == -EALREADY) /* it ended already: no stack */
            rc = 0;
        note(s, rc, 0);
        if (rc == -ENOMEM) /* the message copy failed: cancel without one */
            assert_int_equal(rv_task_cancel(sleeper, NULL), 0);
        rc = rv_future_wait(rv_task_future(sleeper), WAIT_NS, NULL);
        if (rc == -ETIMEDOUT)
            out.hung = true;
        if (rc == -ECANCELED) {
            /* The message may be missing only if a copy of it failed. */
            const char *m = rv_future_message(rv_task_future(sleeper));
            if (m && strcmp(m, "cancelled by the alloc test") != 0)
                atomic_fetch_add(&s->bad, 1);
            rc = 0;
        }
        note(s, rc, 0);
    }
    if (!wait_atomic(&s->cb_runs, cbs) || !wait_atomic(&s->soon_runs, soon) ||
        !wait_atomic(&s->later_runs, later))
        out.hung = true;

    /* Visiting tasks copies references into an allocated array (there are
     * none left to visit, so no allocation; kept for the error path). */
    atomic_int visited = 0;
    rc = rv_all_tasks(rt, count_visit, &visited);
    if (rc >= 0)
        rc = 0;
    note(s, rc, 0);

    *made = rv__fault_alloc_after(-1);

    /* Health check, injection off: the same runtime still works. */
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, parent_body, s, NULL, &t), 0);
    void *r = NULL;
    int hrc = rv_future_wait(rv_task_future(t), WAIT_NS, &r);
    if (hrc == -ETIMEDOUT)
        out.hung = true;
    assert_int_equal(hrc, 0);
    assert_int_equal(PI(r), 1);
    assert_int_equal(rv_task_release(t), 0);
    atomic_int flag = 0;
    assert_int_equal(rv_call_soon(rt, soon_cb, &flag, NULL), 0);
    assert_true(wait_atomic(&flag, 1));

    for (int i = 0; i < NPARENTS; i++)
        if (parents[i])
            assert_int_equal(rv_task_release(parents[i]), 0);
    if (sleeper)
        assert_int_equal(rv_task_release(sleeper), 0);
    if (f)
        assert_int_equal(rv_future_release(f), 0);
    if (h1)
        assert_int_equal(rv_handle_release(h1), 0);
    if (h2)
        assert_int_equal(rv_handle_release(h2), 0);
    assert_int_equal(rv_runtime_shutdown(rt, 10 * SEC), 0);
    assert_int_equal(rv_runtime_free(rt), 0);
    out.failed_calls = atomic_load(&s->enomem);
    return out;
}

/* Walk the N-th allocation of the scenario for every N. Which call a given N
 * hits varies a little from run to run (workers allocate concurrently with the
 * test thread), so the walk is done three times. */
static void fault_walk(rv_local_key key)
{
    int runtime_failures = 0, total_enomem = 0, steps = 0;
    for (long n = 0; n < MAX_STEPS; n++) {
        struct scen s;
        memset(&s, 0, sizeof s);
        s.key = key;
        long made = 0;
        rv__fault_alloc_after(n);
        struct outcome o = run_scenario(&s, &made);
        steps++;
        if (o.hung || atomic_load(&s.bad))
            print_message("fault at allocation %ld: hung %d, %d unexpected results\n", n,
                          (int)o.hung, atomic_load(&s.bad));
        assert_false(o.hung);
        assert_int_equal(atomic_load(&s.bad), 0);
        if (o.rc_new == -ENOMEM) {
            runtime_failures++;
            continue;
        }
        assert_int_equal(o.rc_new, 0);
        total_enomem += o.failed_calls;
        /* Exactly one allocation failed, so at most one call saw -ENOMEM
         * (none if the failure hit something without an error path, like a
         * default name, which falls back to "Task-?"). */
        assert_true(o.failed_calls <= 1);
        if (made <= n) {
            /* The fault never fired: a clean run. */
            assert_int_equal(o.failed_calls, 0);
            assert_int_equal(atomic_load(&s.parents_ran), NPARENTS + 1);
            assert_int_equal(atomic_load(&s.children_ran), NPARENTS + 1);
            assert_int_equal(atomic_load(&s.cb_runs), 3);
            assert_int_equal(atomic_load(&s.soon_runs), 1);
            assert_int_equal(atomic_load(&s.later_runs), 1);
            assert_int_equal(atomic_load(&s.dtor_runs), NPARENTS + 1);
            print_message("fault walk: %d steps, %ld allocations in a clean run, %d runtime "
                          "creation failures, %d calls returned -ENOMEM\n",
                          steps, made, runtime_failures, total_enomem);
            assert_true(runtime_failures >= 1);
            assert_true(total_enomem >= 10);
            return;
        }
    }
    fail_msg("the scenario never completed without hitting the fault");
}

static void test_alloc_fault_walk(void **state)
{
    (void)state;
    rv_local_key key;
    assert_int_equal(rv_local_key_create(&key, local_dtor), 0);
    for (int pass = 0; pass < 3; pass++)
        fault_walk(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_hook_semantics),
        cmocka_unit_test(test_alloc_runtime_new),
        cmocka_unit_test(test_alloc_fault_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
