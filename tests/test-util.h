/* tests/test-util.h - helpers shared by the cmocka test binaries. They call
 * cmocka asserts, so use them on the test thread only (task_wait_atomic is
 * the exception: it runs inside a task and asserts nothing). */
#ifndef RAVEL_TEST_UTIL_H
#define RAVEL_TEST_UTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <ravel.h>

#define MS (1000000LL)
#ifndef SEC
#define SEC (1000000000LL)
#endif
/* A test file may define a longer WAIT_NS before including this one. */
#ifndef WAIT_NS
#define WAIT_NS (5 * SEC)
#endif
#define IP(x) ((void *)(intptr_t)(x))
#define PI(p) ((intptr_t)(p))

#define RV_TEST_UNUSED __attribute__((unused))

static RV_TEST_UNUSED rv_runtime *new_runtime(unsigned workers)
{
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = workers;
    rv_runtime *rt = NULL;
    assert_int_equal(rv_runtime_new(&rt, &cfg), 0);
    assert_non_null(rt);
    return rt;
}

static RV_TEST_UNUSED void free_runtime(rv_runtime *rt)
{
    assert_int_equal(rv_runtime_free(rt), 0);
}

static RV_TEST_UNUSED rv_future *new_future(rv_runtime *rt)
{
    rv_future *f = NULL;
    assert_int_equal(rv_future_new(rt, &f), 0);
    assert_non_null(f);
    return f;
}

static RV_TEST_UNUSED void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Poll (from a plain thread) until *v >= target; false after WAIT_NS. */
static RV_TEST_UNUSED bool wait_atomic(atomic_int *v, int target)
{
    int64_t deadline = rv_now() + WAIT_NS;
    while (atomic_load(v) < target) {
        if (rv_now() > deadline)
            return false;
        sleep_ms(1);
    }
    return true;
}

/* Inside a task: sleep 1 ms at a time until *v >= target. 0, or -ETIMEDOUT
 * after WAIT_NS, or the rv_sleep error. */
static RV_TEST_UNUSED int task_wait_atomic(atomic_int *v, int target)
{
    int64_t deadline = rv_now() + WAIT_NS;
    while (atomic_load(v) < target) {
        if (rv_now() > deadline)
            return -ETIMEDOUT;
        int rc = rv_sleep(1 * MS);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Spawn fn(arg), wait for it (WAIT_NS), release it. Returns the wait's code. */
static RV_TEST_UNUSED int run_task(rv_runtime *rt, rv_task_fn fn, void *arg, void **res)
{
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, fn, arg, NULL, &t), 0);
    assert_non_null(t);
    int rc = rv_future_wait(rv_task_future(t), WAIT_NS, res);
    assert_int_not_equal(rc, -ETIMEDOUT);
    assert_int_equal(rv_task_release(t), 0);
    return rc;
}

#endif
