/* test-task.c - tasks: ports of CPython's test_tasks.py scenarios.
 *
 * Each test names, in the comment above it, the statement of include/ravel.h
 * ("Tasks" section) it checks, and the CPython test it ports where there is one.
 *
 * cmocka is not thread-safe: tasks, callbacks and helper threads only record
 * what they observe (plain fields published by the task's end, or C11
 * atomics); the test thread asserts after rv_future_wait. Ordering-sensitive
 * tests run a "main" task on a 1-worker runtime, where a spawned task does not
 * run until main suspends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ravel.h>

#include "test-util.h"

#define LONG_SLEEP (10 * SEC)

/* pthread_self is declared const: called through a volatile pointer so that
 * the compiler cannot reuse a value read before a suspension point. */
static pthread_t (*volatile self_thread)(void) = pthread_self;

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */

/* Run fn as the main task of a fresh runtime with `workers` workers. */
static int run_main(unsigned workers, rv_task_fn fn, void *arg, void **res)
{
    rv_runtime *rt = new_runtime(workers);
    int rc = run_task(rt, fn, arg, res);
    free_runtime(rt);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Results and errors                                                         */

static int result_body(void *arg, void **res)
{
    atomic_int *started_null = arg;
    atomic_store(started_null, *res == NULL);
    *res = IP(42);
    return 0;
}

/* rv_task_fn: "*result starts NULL; a task that returns 0 finishes with the
 * value left in *result"; rv_task_future: "that future, completed with the
 * task's end". (test_task_basics) */
static void test_task_result(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    atomic_int started_null;
    atomic_init(&started_null, 0);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, result_body, &started_null, NULL, &t), 0);
    void *r = NULL;
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, &r), 0);
    assert_int_equal(PI(r), 42);
    rv_future *f = rv_task_future(t);
    assert_true(rv_future_done(f));
    assert_false(rv_future_cancelled(f));
    assert_int_equal(rv_future_exception(f), 0);
    assert_int_equal(rv_future_result(f, &r), 0);
    assert_int_equal(PI(r), 42);
    assert_int_equal(atomic_load(&started_null), 1);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

static int error_body(void *arg, void **res) { return rv_task_error(-EIO, "disk gone"); }

/* rv_task_fn: "a negative return finishes it with that error";
 * rv_task_error: "Attach a message (copied) to the error the current task is
 * about to return, and return code". (test_exception_traceback / task raising) */
static void test_task_error(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, error_body, NULL, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), -EIO);
    rv_future *f = rv_task_future(t);
    assert_true(rv_future_done(f));
    assert_false(rv_future_cancelled(f));
    assert_int_equal(rv_future_exception(f), -EIO);
    assert_non_null(rv_future_message(f));
    assert_string_equal(rv_future_message(f), "disk gone");
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

static int error_plain_body(void *arg, void **res) { return -EPIPE; }

/* rv_task_fn: "a negative return finishes it with that error" (no message). */
static void test_task_error_without_message(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, error_plain_body, NULL, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), -EPIPE);
    assert_int_equal(rv_future_exception(rv_task_future(t)), -EPIPE);
    assert_null(rv_future_message(rv_task_future(t)));
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

/* rv_task_error: "Outside a task it just returns code". */
static void test_task_error_outside_task(void **state)
{
    (void)state;
    assert_int_equal(rv_task_error(-EIO, "nobody listens"), -EIO);
    assert_int_equal(rv_task_error(-ETIMEDOUT, NULL), -ETIMEDOUT);
}

static int return_ecanceled_body(void *arg, void **res) { return -ECANCELED; }

/* rv_task_fn: "a return of -ECANCELED finishes it cancelled" (CancelledError
 * escaping the coroutine). */
static void test_task_return_ecanceled(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, return_ecanceled_body, NULL, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), -ECANCELED);
    assert_true(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

struct await_task_ctx {
    int rc_ok, rc_err;
    void *value;
};

static int child_42(void *arg, void **res)
{
    int rc = rv_sleep(1 * MS);
    if (rc < 0)
        return rc;
    *res = IP(42);
    return 0;
}

static int await_task_main(void *arg, void **res)
{
    struct await_task_ctx *c = arg;
    rv_task *ok = NULL, *bad = NULL;
    if (rv_spawn(NULL, child_42, NULL, NULL, &ok) != 0 ||
        rv_spawn(NULL, error_body, NULL, NULL, &bad) != 0)
        return -EINVAL;
    c->rc_ok = rv_await(rv_task_future(ok), &c->value);
    c->rc_err = rv_await(rv_task_future(bad), NULL);
    rv_task_release(ok);
    rv_task_release(bad);
    return 0;
}

/* rv_await: "Wait for f and return what rv_future_result would" on a task's
 * future: its result, or its error. (test_await_task / "await task") */
static void test_task_await_task(void **state)
{
    (void)state;
    struct await_task_ctx c = {0};
    assert_int_equal(run_main(2, await_task_main, &c, NULL), 0);
    assert_int_equal(c.rc_ok, 0);
    assert_int_equal(PI(c.value), 42);
    assert_int_equal(c.rc_err, -EIO);
}

/* ------------------------------------------------------------------------- */
/* Cancellation                                                               */

struct cancel_ctx {
    rv_future *f, *f2;
    rv_task *child;
    atomic_int started;
    atomic_int phase;
    int cancel_rc, cancel_rc2, await_rc, inner_rc, inner_rc2, uncancel_rc;
    int cancelling0, cancelling1, cancelling2, cancelling_after, cancelling_seen;
    int child_cancelled, cancel_after_end, child_done_mid;
    int64_t elapsed;
    void *value;
    char msg[32];
};

static void cancel_ctx_init(struct cancel_ctx *c)
{
    memset(c, 0, sizeof *c);
    atomic_init(&c->started, 0);
    atomic_init(&c->phase, 0);
}

static void copy_msg(struct cancel_ctx *c, const char *m)
{
    if (m != NULL)
        strncpy(c->msg, m, sizeof c->msg - 1);
}

static int mark_started_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    atomic_store(&c->started, 1);
    *res = IP(7);
    return 0;
}

static int cancel_before_start_main(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    if (rv_spawn(NULL, mark_started_body, c, NULL, &c->child) != 0)
        return -EINVAL;
    /* One worker: the child cannot run before this task suspends. */
    c->cancel_rc = rv_task_cancel(c->child, NULL);
    c->await_rc = rv_await(rv_task_future(c->child), NULL);
    c->child_cancelled = rv_future_cancelled(rv_task_future(c->child));
    c->cancel_after_end = rv_task_cancel(c->child, NULL);
    return 0;
}

/* rv_task_cancel: "A task cancelled before it first runs ends cancelled
 * without running"; "-EALREADY when the task is done". (test_cancel) */
static void test_task_cancel(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    assert_int_equal(run_main(1, cancel_before_start_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_true(c.child_cancelled);
    assert_int_equal(c.cancel_after_end, -EALREADY);
    assert_int_equal(atomic_load(&c.started), 0);
    assert_true(rv_future_done(rv_task_future(c.child)));
    assert_int_equal(rv_task_release(c.child), 0);
}

static int cancel_msg_before_start_main(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    if (rv_spawn(NULL, mark_started_body, c, NULL, &c->child) != 0)
        return -EINVAL;
    c->cancel_rc = rv_task_cancel(c->child, "first");
    c->cancel_rc2 = rv_task_cancel(c->child, "my message");
    c->await_rc = rv_await(rv_task_future(c->child), NULL);
    copy_msg(c, rv_future_message(rv_task_future(c->child)));
    return 0;
}

/* rv_task_cancel: "The message is copied; the last one given wins".
 * (test_cancel_with_message_before_starting_task) */
static void test_task_cancel_with_message_before_starting_task(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    assert_int_equal(run_main(1, cancel_msg_before_start_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.cancel_rc2, 0);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_string_equal(c.msg, "my message");
    assert_int_equal(atomic_load(&c.started), 0);
    assert_int_equal(rv_task_release(c.child), 0);
}

static int yield_loop_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    atomic_store(&c->started, 1);
    int64_t deadline = rv_now() + WAIT_NS;
    while (rv_now() < deadline) {
        int rc = rv_yield();
        if (rc < 0) {
            c->inner_rc = rc;
            return rc;
        }
    }
    return 0;
}

static int cancel_child_main(void *arg, void **res, rv_task_fn child_fn, const char *msg)
{
    struct cancel_ctx *c = arg;
    if (rv_spawn(NULL, child_fn, c, NULL, &c->child) != 0)
        return -EINVAL;
    int rc = task_wait_atomic(&c->started, 1);
    if (rc < 0)
        return rc;
    c->cancel_rc = rv_task_cancel(c->child, msg);
    c->await_rc = rv_await(rv_task_future(c->child), &c->value);
    c->child_cancelled = rv_future_cancelled(rv_task_future(c->child));
    copy_msg(c, rv_future_message(rv_task_future(c->child)));
    return 0;
}

static int cancel_yield_main(void *arg, void **res)
{
    return cancel_child_main(arg, res, yield_loop_body, NULL);
}

/* rv_yield: "Returns -ECANCELED when a cancellation is delivered here".
 * (test_cancel_yield) */
static void test_task_cancel_yield(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    assert_int_equal(run_main(1, cancel_yield_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_true(c.child_cancelled);
    assert_int_equal(rv_task_release(c.child), 0);
}

static int long_sleep_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    atomic_store(&c->started, 1);
    c->inner_rc = rv_sleep(LONG_SLEEP);
    return c->inner_rc;
}

static int cancel_sleeping_main(void *arg, void **res)
{
    return cancel_child_main(arg, res, long_sleep_body, "wake up");
}

/* rv_sleep: "-ECANCELED when cancelled while sleeping"; rv_task_cancel:
 * "delivered at the task's next suspension point as -ECANCELED".
 * (test_task_cancel_sleeping_task, test_sleep_cancel) */
static void test_task_cancel_sleeping_task(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    assert_int_equal(run_main(1, cancel_sleeping_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_true(c.child_cancelled);
    assert_string_equal(c.msg, "wake up");
    assert_int_equal(rv_task_release(c.child), 0);
}

static int await_f_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    atomic_store(&c->started, 1);
    c->inner_rc = rv_await(c->f, NULL);
    return c->inner_rc;
}

static int cancel_awaiting_main(void *arg, void **res)
{
    return cancel_child_main(arg, res, await_f_body, NULL);
}

/* rv_await: "If the calling task is cancelled while waiting, f is cancelled
 * too (as asyncio) and the await returns -ECANCELED"; rv_task_cancel: "if it
 * is awaiting a future, by cancelling that future".
 * (test_cancel_both_task_and_inner_future) */
static void test_task_cancel_awaiting_future(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    c.f = new_future(rt);
    assert_int_equal(run_task(rt, cancel_awaiting_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_true(c.child_cancelled);
    assert_true(rv_future_cancelled(c.f));
    assert_int_equal(rv_task_release(c.child), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

static int cancel_inner_main(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    if (rv_spawn(NULL, await_f_body, c, NULL, &c->child) != 0)
        return -EINVAL;
    int rc = task_wait_atomic(&c->started, 1);
    if (rc < 0)
        return rc;
    c->cancel_rc = rv_future_cancel(c->f, NULL);
    c->await_rc = rv_await(rv_task_future(c->child), NULL);
    c->child_cancelled = rv_future_cancelled(rv_task_future(c->child));
    return 0;
}

/* rv_await returns "-ECANCELED when cancelled": cancelling the awaited future
 * cancels the task that lets the error through. (test_cancel_inner_future) */
static void test_task_cancel_inner_future(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    c.f = new_future(rt);
    assert_int_equal(run_task(rt, cancel_inner_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_true(c.child_cancelled);
    assert_int_equal(rv_task_release(c.child), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

static int catching_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    atomic_store(&c->started, 1);
    c->inner_rc = rv_sleep(LONG_SLEEP);
    if (c->inner_rc == -ECANCELED) {
        *res = IP(42);
        return 0;
    }
    return c->inner_rc;
}

static int catching_main(void *arg, void **res)
{
    return cancel_child_main(arg, res, catching_body, NULL);
}

/* "a task that handles it may continue": a task that handles -ECANCELED and
 * returns 0 ends with its result, not cancelled. (test_cancel_task_catching) */
static void test_task_cancel_task_catching(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    assert_int_equal(run_main(1, catching_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_int_equal(c.await_rc, 0);
    assert_int_equal(PI(c.value), 42);
    assert_false(c.child_cancelled);
    assert_int_equal(rv_task_release(c.child), 0);
}

static int ignoring_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    atomic_store(&c->started, 1);
    c->inner_rc = rv_await(c->f, NULL);
    atomic_store(&c->phase, 1);
    c->inner_rc2 = rv_await(c->f2, res);
    return c->inner_rc2;
}

static int ignoring_main(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    if (rv_spawn(NULL, ignoring_body, c, NULL, &c->child) != 0)
        return -EINVAL;
    int rc = task_wait_atomic(&c->started, 1);
    if (rc < 0)
        return rc;
    c->cancel_rc = rv_task_cancel(c->child, NULL);
    rc = task_wait_atomic(&c->phase, 1);
    if (rc < 0)
        return rc;
    /* Let the child park on f2, then complete it. */
    rc = rv_sleep(2 * MS);
    if (rc < 0)
        return rc;
    rv_future_set_result(c->f2, IP(42));
    c->await_rc = rv_await(rv_task_future(c->child), &c->value);
    c->child_cancelled = rv_future_cancelled(rv_task_future(c->child));
    return 0;
}

/* "a task that handles it may continue": after handling the cancellation the
 * task awaits another future normally. (test_cancel_task_ignoring) */
static void test_task_cancel_task_ignoring(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    c.f = new_future(rt);
    c.f2 = new_future(rt);
    assert_int_equal(run_task(rt, ignoring_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_true(rv_future_cancelled(c.f));
    assert_int_equal(c.inner_rc2, 0);
    assert_int_equal(c.await_rc, 0);
    assert_int_equal(PI(c.value), 42);
    assert_false(c.child_cancelled);
    assert_int_equal(rv_task_release(c.child), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    assert_int_equal(rv_future_release(c.f2), 0);
    free_runtime(rt);
}

static int cancel_current_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    c->cancel_rc = rv_task_cancel(rv_current_task(), NULL);
    int64_t t0 = rv_now();
    c->inner_rc = rv_sleep(LONG_SLEEP);
    c->elapsed = rv_now() - t0;
    if (c->inner_rc < 0)
        return c->inner_rc;
    *res = IP(12);
    return 0;
}

/* rv_task_cancel: "delivered at the task's next suspension point": a task
 * that cancels itself and then sleeps long gets -ECANCELED at once and ends
 * cancelled; cancelling it afterwards returns -EALREADY.
 * (test_cancel_current_task) */
static void test_task_cancel_current_task(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, cancel_current_body, &c, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), -ECANCELED);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_true(c.elapsed < 1 * SEC);
    assert_true(rv_future_done(rv_task_future(t)));
    assert_true(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(rv_task_cancel(t, NULL), -EALREADY);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

static int delivered_once_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    c->cancel_rc = rv_task_cancel(rv_current_task(), NULL);
    c->inner_rc = rv_sleep(LONG_SLEEP);
    /* Handled: the request was delivered, a later sleep is not cancelled. */
    c->inner_rc2 = rv_sleep(1 * MS);
    *res = IP(5);
    return 0;
}

/* rv_task_cancel: a request is "delivered at the task's next suspension
 * point" - once; after handling it, later suspensions are not cancelled.
 * (test_cancel_current_task: _must_cancel cleared after delivery) */
static void test_task_cancel_delivered_once(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    void *r = NULL;
    assert_int_equal(run_main(1, delivered_once_body, &c, &r), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_int_equal(c.inner_rc2, 0);
    assert_int_equal(PI(r), 5);
}

static int cancel_at_end_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    c->cancel_rc = rv_task_cancel(rv_current_task(), NULL);
    *res = IP(12);
    return 0;
}

/* rv_task_cancel: a request made and not delivered before the task returns
 * still ends it cancelled (asyncio: _must_cancel at StopIteration).
 * (test_cancel_at_end) */
static void test_task_cancel_at_end(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, cancel_at_end_body, &c, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), -ECANCELED);
    assert_int_equal(c.cancel_rc, 0);
    assert_true(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(rv_task_cancel(t, NULL), -EALREADY);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

struct awaited_task_ctx {
    rv_future *fut;
    rv_task *nested;
    int nested_rc, cancel_rc, await_rc, spawn_rc;
};

static int awaited_nested(void *arg, void **res)
{
    struct awaited_task_ctx *c = arg;
    c->nested_rc = rv_await(c->fut, NULL);
    return c->nested_rc;
}

static int awaited_coro(void *arg, void **res)
{
    struct awaited_task_ctx *c = arg;
    /* Create a sub-task and wait for it to run. */
    c->spawn_rc = rv_spawn(NULL, awaited_nested, c, NULL, &c->nested);
    if (c->spawn_rc != 0)
        return c->spawn_rc;
    rv_yield();
    /* Request the current task to be cancelled. */
    c->cancel_rc = rv_task_cancel(rv_current_task(), NULL);
    /* Block on the nested task, which should be immediately cancelled. */
    c->await_rc = rv_await(rv_task_future(c->nested), NULL);
    return c->await_rc;
}

/* rv_task_cancel: a request "delivered at the task's next suspension point
 * ... (or, if it is awaiting a future, by cancelling that future)": a task
 * that cancelled itself and then awaits a nested task cancels that task, and
 * the future it awaits. (test_cancel_awaited_task, bpo-34872) */
static void test_task_cancel_awaited_task(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct awaited_task_ctx c;
    memset(&c, 0, sizeof c);
    c.fut = new_future(rt);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, awaited_coro, &c, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), -ECANCELED);
    assert_int_equal(c.spawn_rc, 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_true(rv_future_cancelled(rv_task_future(t)));
    assert_non_null(c.nested);
    /* The nested task may still be unwinding on the worker: wait for it. */
    assert_int_equal(rv_future_wait(rv_task_future(c.nested), WAIT_NS, NULL), -ECANCELED);
    assert_true(rv_future_cancelled(rv_task_future(c.nested)));
    assert_int_equal(c.nested_rc, -ECANCELED);
    assert_true(rv_future_cancelled(c.fut));
    assert_int_equal(rv_task_release(c.nested), 0);
    assert_int_equal(rv_task_release(t), 0);
    assert_int_equal(rv_future_release(c.fut), 0);
    free_runtime(rt);
}

/* rv_task_cancel: "-EALREADY when the task is done", and the result stays.
 * (test_cancel_done_future / cancel of a finished task returns False) */
static void test_task_cancel_finished(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    atomic_int started_null;
    atomic_init(&started_null, 0);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, result_body, &started_null, NULL, &t), 0);
    void *r = NULL;
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, &r), 0);
    assert_int_equal(rv_task_cancel(t, "too late"), -EALREADY);
    assert_false(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(rv_future_result(rv_task_future(t), &r), 0);
    assert_int_equal(PI(r), 42);
    assert_int_equal(rv_task_cancelling(t), 0);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

static int cancelling_main(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    if (rv_spawn(NULL, long_sleep_body, c, NULL, &c->child) != 0)
        return -EINVAL;
    int rc = task_wait_atomic(&c->started, 1);
    if (rc < 0)
        return rc;
    c->cancelling0 = rv_task_cancelling(c->child);
    c->cancel_rc = rv_task_cancel(c->child, NULL);
    c->cancelling1 = rv_task_cancelling(c->child);
    c->cancel_rc2 = rv_task_cancel(c->child, NULL);
    c->cancelling2 = rv_task_cancelling(c->child);
    c->await_rc = rv_await(rv_task_future(c->child), NULL);
    c->child_cancelled = rv_future_cancelled(rv_task_future(c->child));
    return 0;
}

/* rv_task_cancel: "Returns 0 when requested ... Counts toward
 * rv_task_cancelling"; rv_task_cancelling: "Number of pending cancellation
 * requests (asyncio Task.cancelling())". (test_cancelling: every cancel of a
 * pending task returns True and bumps the count) */
static void test_task_cancelling(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    assert_int_equal(run_main(1, cancelling_main, &c, NULL), 0);
    assert_int_equal(c.cancelling0, 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.cancelling1, 1);
    assert_int_equal(c.cancel_rc2, 0);
    assert_int_equal(c.cancelling2, 2);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_true(c.child_cancelled);
    assert_int_equal(rv_task_release(c.child), 0);
}

static int uncancel_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    atomic_store(&c->started, 1);
    c->inner_rc = rv_sleep(LONG_SLEEP);
    if (c->inner_rc == -ECANCELED) {
        c->cancelling_seen = rv_task_cancelling(rv_current_task());
        c->uncancel_rc = rv_task_uncancel(rv_current_task());
        atomic_store(&c->phase, 1);
        c->inner_rc2 = rv_sleep(LONG_SLEEP);
        return c->inner_rc2;
    }
    return 0;
}

static int uncancel_main(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    if (rv_spawn(NULL, uncancel_body, c, NULL, &c->child) != 0)
        return -EINVAL;
    int rc = task_wait_atomic(&c->started, 1);
    if (rc < 0)
        return rc;
    /* Cancel first sleep. */
    c->cancel_rc = rv_task_cancel(c->child, NULL);
    c->cancelling1 = rv_task_cancelling(c->child);
    /* One worker: when phase is 1 the child is parked in its second sleep. */
    rc = task_wait_atomic(&c->phase, 1);
    if (rc < 0)
        return rc;
    c->cancelling0 = rv_task_cancelling(c->child);
    c->child_done_mid = rv_future_done(rv_task_future(c->child));
    /* Cancel second sleep. */
    c->cancel_rc2 = rv_task_cancel(c->child, NULL);
    c->cancelling2 = rv_task_cancelling(c->child);
    c->await_rc = rv_await(rv_task_future(c->child), NULL);
    c->child_cancelled = rv_future_cancelled(rv_task_future(c->child));
    return 0;
}

/* rv_task_uncancel: "Decrement that count, not below zero, and return the new
 * count"; rv_task_cancelling counts requests the task has seen but not
 * uncancelled (asyncio); a later cancel still works. (test_uncancel_basic) */
static void test_task_uncancel_basic(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    assert_int_equal(run_main(1, uncancel_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.cancelling1, 1);
    assert_int_equal(c.inner_rc, -ECANCELED);
    assert_int_equal(c.cancelling_seen, 1);
    assert_int_equal(c.uncancel_rc, 0);
    assert_int_equal(c.cancelling0, 0);
    assert_false(c.child_done_mid); /* still running after the first cancel */
    assert_int_equal(c.cancel_rc2, 0);
    assert_int_equal(c.cancelling2, 1);
    assert_int_equal(c.inner_rc2, -ECANCELED);
    assert_int_equal(c.await_rc, -ECANCELED);
    assert_true(c.child_cancelled); /* finally cancelled */
    assert_int_equal(rv_task_release(c.child), 0);
}

static int uncancel_zero_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    c->uncancel_rc = rv_task_uncancel(rv_current_task());
    c->cancelling0 = rv_task_cancelling(rv_current_task());
    c->inner_rc = rv_sleep(1 * MS);
    return 0;
}

/* rv_task_uncancel: "not below zero". */
static void test_task_uncancel_not_below_zero(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    c.uncancel_rc = -1;
    c.cancelling0 = -1;
    assert_int_equal(run_main(1, uncancel_zero_body, &c, NULL), 0);
    assert_int_equal(c.uncancel_rc, 0);
    assert_int_equal(c.cancelling0, 0);
    assert_int_equal(c.inner_rc, 0);
}

static int withdraw_body(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    c->cancel_rc = rv_task_cancel(rv_current_task(), NULL);
    c->cancelling1 = rv_task_cancelling(rv_current_task());
    c->uncancel_rc = rv_task_uncancel(rv_current_task());
    c->inner_rc = rv_sleep(2 * MS);
    *res = IP(7);
    return 0;
}

/* rv_task_uncancel: "When it reaches zero an undelivered request is withdrawn
 * (asyncio 3.13)": the task then sleeps normally and ends with its result.
 * (gh-116720) */
static void test_task_uncancel_withdraws_request(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, withdraw_body, &c, NULL, &t), 0);
    void *r = NULL;
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, &r), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.cancelling1, 1);
    assert_int_equal(c.uncancel_rc, 0);
    assert_int_equal(c.inner_rc, 0);
    assert_int_equal(PI(r), 7);
    assert_false(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

static int withdraw_before_start_main(void *arg, void **res)
{
    struct cancel_ctx *c = arg;
    if (rv_spawn(NULL, mark_started_body, c, NULL, &c->child) != 0)
        return -EINVAL;
    c->cancel_rc = rv_task_cancel(c->child, NULL);
    c->uncancel_rc = rv_task_uncancel(c->child);
    c->await_rc = rv_await(rv_task_future(c->child), &c->value);
    c->child_cancelled = rv_future_cancelled(rv_task_future(c->child));
    return 0;
}

/* rv_task_uncancel: "When it reaches zero an undelivered request is
 * withdrawn" - also one made before the task first ran: it then runs. */
static void test_task_uncancel_before_first_step(void **state)
{
    (void)state;
    struct cancel_ctx c;
    cancel_ctx_init(&c);
    assert_int_equal(run_main(1, withdraw_before_start_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.uncancel_rc, 0);
    assert_int_equal(c.await_rc, 0);
    assert_int_equal(PI(c.value), 7);
    assert_false(c.child_cancelled);
    assert_int_equal(atomic_load(&c.started), 1);
    assert_int_equal(rv_task_release(c.child), 0);
}

/* ------------------------------------------------------------------------- */
/* Yield and sleep                                                            */

static void set_flag_cb(void *arg) { atomic_store((atomic_int *)arg, 1); }

struct sleep_zero_ctx {
    atomic_int flag;
    int soon_rc, rc, flag_after;
    int64_t ns;
    bool use_yield;
};

static int sleep_zero_body(void *arg, void **res)
{
    struct sleep_zero_ctx *c = arg;
    c->soon_rc = rv_call_soon(rv_runtime_current(), set_flag_cb, &c->flag, NULL);
    c->rc = c->use_yield ? rv_yield() : rv_sleep(c->ns);
    c->flag_after = atomic_load(&c->flag);
    return 0;
}

/* rv_yield: "Let every other ready task run once (asyncio.sleep(0))": a
 * callback scheduled before the yield has run when it returns.
 * (test_sleep_zero) */
static void test_task_sleep_zero(void **state)
{
    (void)state;
    struct sleep_zero_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.flag, 0);
    c.use_yield = true;
    assert_int_equal(run_main(1, sleep_zero_body, &c, NULL), 0);
    assert_int_equal(c.soon_rc, 0);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.flag_after, 1);
}

/* rv_sleep: "ns <= 0 is rv_yield". */
static void test_task_sleep_nonpositive_is_yield(void **state)
{
    (void)state;
    const int64_t values[2] = {0, -5};
    for (int i = 0; i < 2; i++) {
        struct sleep_zero_ctx c;
        memset(&c, 0, sizeof c);
        atomic_init(&c.flag, 0);
        c.ns = values[i];
        assert_int_equal(run_main(1, sleep_zero_body, &c, NULL), 0);
        assert_int_equal(c.soon_rc, 0);
        assert_int_equal(c.rc, 0);
        assert_int_equal(c.flag_after, 1);
    }
}

struct sleep_ctx {
    int rc;
    int64_t elapsed;
};

static int sleep_body(void *arg, void **res)
{
    struct sleep_ctx *c = arg;
    int64_t t0 = rv_now();
    c->rc = rv_sleep(10 * MS);
    c->elapsed = rv_now() - t0;
    return 0;
}

/* rv_sleep: "Sleep for ns (rounded up to the 1 ms timer tick)": never
 * shorter than asked. (test_sleep) */
static void test_task_sleep(void **state)
{
    (void)state;
    struct sleep_ctx c = {0};
    assert_int_equal(run_main(2, sleep_body, &c, NULL), 0);
    assert_int_equal(c.rc, 0);
    assert_true(c.elapsed >= 10 * MS);
}

static void spin_3ms_cb(void *arg)
{
    int64_t end = rv_now() + 3 * MS;
    while (rv_now() < end)
        ;
}

static int busy_worker_sleep_body(void *arg, void **res)
{
    struct sleep_ctx *c = arg;
    /* One worker: this callback runs as soon as the task parks, and keeps the
     * worker busy past the sleep's deadline. */
    int rc = rv_call_soon(rv_runtime_current(), spin_3ms_cb, NULL, NULL);
    if (rc < 0)
        return rc;
    int64_t t0 = rv_now();
    c->rc = rv_sleep(1 * MS);
    c->elapsed = rv_now() - t0;
    return 0;
}

/* rv_sleep: "Sleep for ns" - and then resume: the task wakes even when its
 * timer falls due while the worker is busy with other work, so that the timer
 * is already due when the worker next goes idle. */
static void test_task_sleep_timer_due_while_worker_busy(void **state)
{
    (void)state;
    struct sleep_ctx c = {0};
    c.rc = 1;
    assert_int_equal(run_main(1, busy_worker_sleep_body, &c, NULL), 0);
    assert_int_equal(c.rc, 0);
    assert_true(c.elapsed >= 1 * MS);
}

#define STEPS 3
struct interleave_ctx {
    rv_task *h[2];
    atomic_int log_n;
    int log[2 * STEPS];
    uint64_t seen_id[2];
    int wrong_current[2];
    int yield_errors;
};

struct interleave_arg {
    struct interleave_ctx *c;
    int index;
};

static int interleave_body(void *arg, void **res)
{
    struct interleave_arg *a = arg;
    struct interleave_ctx *c = a->c;
    a->c->seen_id[a->index] = rv_task_id(rv_current_task());
    for (int i = 0; i < STEPS; i++) {
        if (rv_current_task() != c->h[a->index] ||
            rv_task_id(rv_current_task()) != c->seen_id[a->index])
            c->wrong_current[a->index]++;
        int n = atomic_fetch_add(&c->log_n, 1);
        if (n < 2 * STEPS)
            c->log[n] = a->index;
        if (rv_yield() != 0)
            c->yield_errors++;
    }
    return 0;
}

static int interleave_main(void *arg, void **res)
{
    struct interleave_ctx *c = arg;
    struct interleave_arg args[2] = {{c, 0}, {c, 1}};
    /* One worker: neither child runs before the handles are stored. */
    for (int i = 0; i < 2; i++)
        if (rv_spawn(NULL, interleave_body, &args[i], NULL, &c->h[i]) != 0)
            return -EINVAL;
    for (int i = 0; i < 2; i++)
        rv_await(rv_task_future(c->h[i]), NULL);
    return 0;
}

/* rv_yield: "Let every other ready task run once": two ready tasks that yield
 * alternate; rv_current_task: "The task running on this fiber" keeps each
 * task's identity across the switches. (test_current_task_with_interleaving_
 * tasks, test_sleep_zero) */
static void test_task_current_task_with_interleaving_tasks(void **state)
{
    (void)state;
    struct interleave_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.log_n, 0);
    assert_int_equal(run_main(1, interleave_main, &c, NULL), 0);
    assert_int_equal(atomic_load(&c.log_n), 2 * STEPS);
    for (int i = 0; i + 1 < 2 * STEPS; i++)
        assert_int_not_equal(c.log[i], c.log[i + 1]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c.wrong_current[i], 0);
        assert_true(c.seen_id[i] == rv_task_id(c.h[i]));
        assert_int_equal(rv_task_release(c.h[i]), 0);
    }
    assert_int_equal(c.yield_errors, 0);
}

struct outside_ctx {
    atomic_int ran;
    atomic_int task_was_null;
};

static void current_task_cb(void *arg)
{
    struct outside_ctx *c = arg;
    atomic_store(&c->task_was_null, rv_current_task() == NULL);
    atomic_store(&c->ran, 1);
}

/* rv_current_task: "NULL on a plain thread or in a callback".
 * (test_current_task: None outside a task) */
static void test_task_current_task_outside_task(void **state)
{
    (void)state;
    assert_null(rv_current_task());
    rv_runtime *rt = new_runtime(1);
    struct outside_ctx c;
    atomic_init(&c.ran, 0);
    atomic_init(&c.task_was_null, 0);
    assert_int_equal(rv_call_soon(rt, current_task_cb, &c, NULL), 0);
    assert_true(wait_atomic(&c.ran, 1));
    assert_int_equal(atomic_load(&c.task_was_null), 1);
    assert_null(rv_current_task());
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Names and ids                                                              */

struct name_ctx {
    char seen[64];
    int set_rc;
    const char *new_name;
};

static int name_body(void *arg, void **res)
{
    struct name_ctx *c = arg;
    if (c->new_name != NULL)
        c->set_rc = rv_task_set_name(rv_current_task(), c->new_name);
    const char *n = rv_task_name(rv_current_task());
    if (n != NULL)
        strncpy(c->seen, n, sizeof c->seen - 1);
    return 0;
}

/* rv_spawn_opts.name: "NULL: "Task-<id>""; rv_task_name: "never NULL for a
 * task". (test_task_default_name) */
static void test_task_name_default(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct name_ctx c1, c2;
    memset(&c1, 0, sizeof c1);
    memset(&c2, 0, sizeof c2);
    rv_spawn_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.name = NULL;
    rv_task *t1 = NULL, *t2 = NULL;
    assert_int_equal(rv_spawn(rt, name_body, &c1, NULL, &t1), 0);
    assert_int_equal(rv_spawn(rt, name_body, &c2, &opts, &t2), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t1), WAIT_NS, NULL), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t2), WAIT_NS, NULL), 0);
    char expect[64];
    snprintf(expect, sizeof expect, "Task-%" PRIu64, rv_task_id(t1));
    assert_non_null(rv_task_name(t1));
    assert_string_equal(rv_task_name(t1), expect);
    assert_string_equal(c1.seen, expect);
    snprintf(expect, sizeof expect, "Task-%" PRIu64, rv_task_id(t2));
    assert_string_equal(rv_task_name(t2), expect);
    assert_string_equal(c2.seen, expect);
    assert_int_equal(rv_task_release(t1), 0);
    assert_int_equal(rv_task_release(t2), 0);
    free_runtime(rt);
}

/* rv_spawn_opts.name: "copied". (test_task_repr_name / create_task(name=)) */
static void test_task_name_custom(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct name_ctx c;
    memset(&c, 0, sizeof c);
    char name[32];
    strcpy(name, "worker-1");
    rv_spawn_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.name = name;
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, name_body, &c, &opts, &t), 0);
    memset(name, 'x', sizeof name - 1);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_string_equal(rv_task_name(t), "worker-1");
    assert_string_equal(c.seen, "worker-1");
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

/* rv_task_set_name: "Rename; the name is copied. Only from the task itself".
 * (test_task_set_name) */
static void test_task_set_name(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct name_ctx c;
    memset(&c, 0, sizeof c);
    char name[32];
    strcpy(name, "renamed");
    c.new_name = name;
    c.set_rc = 1;
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, name_body, &c, NULL, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    memset(name, 'x', sizeof name - 1);
    assert_int_equal(c.set_rc, 0);
    assert_string_equal(c.seen, "renamed");
    assert_string_equal(rv_task_name(t), "renamed");
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

struct set_name_ctx {
    struct name_ctx child_ctx;
    rv_task *early, *parked;
    rv_future *f;
    atomic_int parked_started;
    int early_rc, parked_rc;
};

static int parked_body(void *arg, void **res)
{
    struct set_name_ctx *c = arg;
    atomic_store(&c->parked_started, 1);
    return rv_await(c->f, NULL);
}

static int set_name_main(void *arg, void **res)
{
    struct set_name_ctx *c = arg;
    if (rv_spawn(NULL, name_body, &c->child_ctx, NULL, &c->early) != 0 ||
        rv_spawn(NULL, parked_body, c, NULL, &c->parked) != 0)
        return -EINVAL;
    /* Before it runs (one worker: it has not run yet). */
    c->early_rc = rv_task_set_name(c->early, "early");
    int rc = task_wait_atomic(&c->parked_started, 1);
    if (rc < 0)
        return rc;
    /* Another task, started and parked: not allowed. */
    c->parked_rc = rv_task_set_name(c->parked, "nope");
    rv_future_set_result(c->f, NULL);
    rv_await(rv_task_future(c->early), NULL);
    rv_await(rv_task_future(c->parked), NULL);
    return 0;
}

/* rv_task_set_name: "Only from the task itself or before it runs: -EPERM
 * otherwise". */
static void test_task_set_name_permissions(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct set_name_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.parked_started, 0);
    c.f = new_future(rt);
    assert_int_equal(run_task(rt, set_name_main, &c, NULL), 0);
    assert_int_equal(c.early_rc, 0);
    assert_string_equal(c.child_ctx.seen, "early");
    assert_int_equal(c.parked_rc, -EPERM);
    assert_string_not_equal(rv_task_name(c.parked), "nope");
    /* A finished task, from a plain thread. */
    assert_int_equal(rv_task_set_name(c.early, "late"), -EPERM);
    assert_string_equal(rv_task_name(c.early), "early");
    assert_int_equal(rv_task_release(c.early), 0);
    assert_int_equal(rv_task_release(c.parked), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

static int noop_body(void *arg, void **res) { return 0; }

/* rv_task_id: "Unique, increasing from 1 per process. 0 for NULL". (Task-N
 * with monotonic N) */
static void test_task_ids_increasing(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    rv_task *t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(rv_spawn(rt, noop_body, NULL, NULL, &t[i]), 0);
    assert_true(rv_task_id(t[0]) >= 1);
    for (int i = 1; i < 4; i++)
        assert_true(rv_task_id(t[i]) > rv_task_id(t[i - 1]));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rv_future_wait(rv_task_future(t[i]), WAIT_NS, NULL), 0);
        assert_int_equal(rv_task_release(t[i]), 0);
    }
    assert_true(rv_task_id(NULL) == 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Misuse                                                                     */

struct await_self_ctx {
    int rc;
};

static int await_self_body(void *arg, void **res)
{
    struct await_self_ctx *c = arg;
    c->rc = rv_await(rv_task_future(rv_current_task()), NULL);
    return 0;
}

/* rv_await: "-EPERM ... when a task awaits itself". (test_await_itself /
 * "Task cannot await on itself") */
static void test_task_await_itself(void **state)
{
    (void)state;
    struct await_self_ctx c = {0};
    assert_int_equal(run_main(1, await_self_body, &c, NULL), 0);
    assert_int_equal(c.rc, -EPERM);
}

/* "May suspend ... Called from a plain thread these return -EPERM";
 * rv_await: "-EPERM outside a task". */
static void test_task_suspend_outside_task(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_int_equal(rv_await(f, NULL), -EPERM);
    assert_int_equal(rv_yield(), -EPERM);
    assert_int_equal(rv_sleep(1 * MS), -EPERM);
    assert_int_equal(rv_sleep(0), -EPERM);
    assert_false(rv_future_done(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

struct cb_suspend_ctx {
    rv_future *f;
    atomic_int ran;
    atomic_int await_rc, yield_rc, sleep_rc;
};

static void suspend_cb(void *arg)
{
    struct cb_suspend_ctx *c = arg;
    atomic_store(&c->await_rc, rv_await(c->f, NULL));
    atomic_store(&c->yield_rc, rv_yield());
    atomic_store(&c->sleep_rc, rv_sleep(1 * MS));
    atomic_store(&c->ran, 1);
}

/* "May suspend: only from inside a task"; rv_await: "-EPERM outside a task" -
 * a callback runs on a worker but outside any task. */
static void test_task_suspend_in_callback(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct cb_suspend_ctx c;
    c.f = new_future(rt);
    atomic_init(&c.ran, 0);
    atomic_init(&c.await_rc, 1);
    atomic_init(&c.yield_rc, 1);
    atomic_init(&c.sleep_rc, 1);
    assert_int_equal(rv_call_soon(rt, suspend_cb, &c, NULL), 0);
    assert_true(wait_atomic(&c.ran, 1));
    assert_int_equal(atomic_load(&c.await_rc), -EPERM);
    assert_int_equal(atomic_load(&c.yield_rc), -EPERM);
    assert_int_equal(atomic_load(&c.sleep_rc), -EPERM);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Pinning                                                                    */

struct pinned_ctx {
    rv_runtime *rt;
    atomic_int done;
    int moves, steps, on_worker, yield_errors;
    pthread_t first;
    int spawned_here; /* first run on the spawning worker */
    pthread_t spawner;
};

static int pinned_body(void *arg, void **res)
{
    struct pinned_ctx *c = arg;
    c->first = self_thread();
    c->on_worker = rv_runtime_current() == c->rt;
    for (int i = 0; i < 200; i++) {
        int rc = (i % 20 == 19) ? rv_sleep(1 * MS) : rv_yield();
        if (rc != 0)
            c->yield_errors++;
        if (!pthread_equal(self_thread(), c->first))
            c->moves++;
        c->steps++;
    }
    atomic_store(&c->done, 1);
    return 0;
}

static int busy_body(void *arg, void **res)
{
    struct pinned_ctx *c = arg;
    int64_t deadline = rv_now() + 2 * SEC;
    while (!atomic_load(&c->done) && rv_now() < deadline) {
        /* A little work, then let others run. */
        volatile unsigned x = 0;
        for (unsigned i = 0; i < 2000; i++)
            x += i;
        if (rv_yield() != 0)
            break;
    }
    return 0;
}

/* rv_spawn_opts.pinned: "never migrates: runs only on the worker it first
 * runs on" - with 2 workers and busy tasks around, over many yields and
 * sleeps. */
static void test_task_pinned(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct pinned_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.done, 0);
    c.rt = rt;
    rv_task *busy[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(rv_spawn(rt, busy_body, &c, NULL, &busy[i]), 0);
    rv_spawn_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.pinned = true;
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, pinned_body, &c, &opts, &t), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rv_future_wait(rv_task_future(busy[i]), WAIT_NS, NULL), 0);
        assert_int_equal(rv_task_release(busy[i]), 0);
    }
    assert_int_equal(c.steps, 200);
    assert_int_equal(c.yield_errors, 0);
    assert_int_equal(c.on_worker, 1);
    assert_int_equal(c.moves, 0);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

static int pinned_child_body(void *arg, void **res)
{
    struct pinned_ctx *c = arg;
    c->spawned_here = pthread_equal(self_thread(), c->spawner);
    return pinned_body(arg, res);
}

static int pinned_spawner_main(void *arg, void **res)
{
    struct pinned_ctx *c = arg;
    rv_task *busy[2];
    for (int i = 0; i < 2; i++)
        if (rv_spawn(NULL, busy_body, c, NULL, &busy[i]) != 0)
            return -EINVAL;
    rv_spawn_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.pinned = true;
    rv_task *t = NULL;
    /* No suspension between reading the thread and spawning. */
    c->spawner = self_thread();
    if (rv_spawn(NULL, pinned_child_body, c, &opts, &t) != 0)
        return -EINVAL;
    int rc = rv_await(rv_task_future(t), NULL);
    rv_task_release(t);
    for (int i = 0; i < 2; i++) {
        rv_await(rv_task_future(busy[i]), NULL);
        rv_task_release(busy[i]);
    }
    return rc;
}

/* rv_spawn_opts.pinned: "runs only on the worker it first runs on (the
 * spawning worker ...)". */
static void test_task_pinned_spawned_from_worker(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct pinned_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.done, 0);
    c.rt = rt;
    assert_int_equal(run_task(rt, pinned_spawner_main, &c, NULL), 0);
    assert_int_equal(c.spawned_here, 1);
    assert_int_equal(c.steps, 200);
    assert_int_equal(c.moves, 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Task-local storage                                                         */

static int g_keys_created; /* keys this process created, for the last test */
static rv_local_key g_plain_key = -1;
static rv_local_key g_dtor_key = -1;
static atomic_int g_dtor_calls;
static atomic_long g_dtor_sum;

static void count_dtor(void *value)
{
    atomic_fetch_add(&g_dtor_sum, (long)PI(value));
    atomic_fetch_add(&g_dtor_calls, 1);
}

static rv_local_key plain_key(void)
{
    if (g_plain_key < 0) {
        assert_int_equal(rv_local_key_create(&g_plain_key, NULL), 0);
        g_keys_created++;
    }
    return g_plain_key;
}

static rv_local_key dtor_key(void)
{
    if (g_dtor_key < 0) {
        assert_int_equal(rv_local_key_create(&g_dtor_key, count_dtor), 0);
        g_keys_created++;
    }
    return g_dtor_key;
}

#define TLS_TASKS 4
struct tls_ctx {
    rv_local_key key;
    int values[TLS_TASKS];
    int initial_non_null[TLS_TASKS];
    int set_rc[TLS_TASKS];
    int mismatches[TLS_TASKS];
};

struct tls_arg {
    struct tls_ctx *c;
    int i;
};

static int tls_body(void *arg, void **res)
{
    struct tls_arg *a = arg;
    struct tls_ctx *c = a->c;
    c->initial_non_null[a->i] = rv_local_get(c->key) != NULL;
    c->set_rc[a->i] = rv_local_set(c->key, &c->values[a->i]);
    for (int k = 0; k < 30; k++) {
        if (k % 5 == 4)
            rv_sleep(1 * MS);
        else
            rv_yield();
        if (rv_local_get(c->key) != &c->values[a->i])
            c->mismatches[a->i]++;
    }
    return 0;
}

/* rv_local_set / rv_local_get: "The calling task's value for key (NULL if
 * unset ...)": each task sees its own value across suspensions and worker
 * changes. (contextvars test_context_3: tasks isolated) */
static void test_task_local_storage(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct tls_ctx c;
    memset(&c, 0, sizeof c);
    c.key = plain_key();
    struct tls_arg args[TLS_TASKS];
    rv_task *t[TLS_TASKS];
    for (int i = 0; i < TLS_TASKS; i++) {
        args[i] = (struct tls_arg){&c, i};
        assert_int_equal(rv_spawn(rt, tls_body, &args[i], NULL, &t[i]), 0);
    }
    for (int i = 0; i < TLS_TASKS; i++) {
        assert_int_equal(rv_future_wait(rv_task_future(t[i]), WAIT_NS, NULL), 0);
        assert_int_equal(rv_task_release(t[i]), 0);
        assert_int_equal(c.initial_non_null[i], 0);
        assert_int_equal(c.set_rc[i], 0);
        assert_int_equal(c.mismatches[i], 0);
    }
    free_runtime(rt);
}

struct dtor_arg {
    rv_local_key key;
    intptr_t value;  /* 0: never set */
    bool reset_null; /* set, then set back to NULL */
    int rc;
};

static int dtor_body(void *arg, void **res)
{
    struct dtor_arg *a = arg;
    if (a->value != 0) {
        a->rc = rv_local_set(a->key, IP(a->value));
        if (a->reset_null && a->rc == 0)
            a->rc = rv_local_set(a->key, NULL);
    }
    return rv_yield();
}

/* rv_local_key_create: "dtor ... runs on a non-NULL value when its task
 * ends" - once per task holding a non-NULL value, not for NULL values. */
static void test_task_local_destructor(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    rv_local_key key = dtor_key();
    atomic_store(&g_dtor_calls, 0);
    atomic_store(&g_dtor_sum, 0);
    struct dtor_arg args[5] = {
        {key, 1, false, 0},   {key, 10, false, 0},
        {key, 100, false, 0}, {key, 1000, true, 0}, /* reset to NULL: no destructor call */
        {key, 0, false, 0},                         /* never set */
    };
    rv_task *t[5];
    for (int i = 0; i < 5; i++)
        assert_int_equal(rv_spawn(rt, dtor_body, &args[i], NULL, &t[i]), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rv_future_wait(rv_task_future(t[i]), WAIT_NS, NULL), 0);
        assert_int_equal(args[i].rc, 0);
        assert_int_equal(rv_task_release(t[i]), 0);
    }
    assert_true(wait_atomic(&g_dtor_calls, 3));
    free_runtime(rt);
    assert_int_equal(atomic_load(&g_dtor_calls), 3);
    assert_int_equal(atomic_load(&g_dtor_sum), 111);
}

struct bad_key_ctx {
    int set_neg, set_big;
    void *get_neg, *get_big;
};

static int bad_key_body(void *arg, void **res)
{
    struct bad_key_ctx *c = arg;
    static int dummy;
    c->set_neg = rv_local_set(-1, &dummy);
    c->set_big = rv_local_set(RV_TASK_LOCAL_KEYS, &dummy);
    c->get_neg = rv_local_get(-1);
    c->get_big = rv_local_get(RV_TASK_LOCAL_KEYS);
    return 0;
}

/* rv_local_set: "-EINVAL bad key"; rv_local_get: "NULL if ... a bad key". */
static void test_task_local_bad_key(void **state)
{
    (void)state;
    struct bad_key_ctx c;
    memset(&c, 0, sizeof c);
    c.get_neg = c.get_big = IP(1);
    assert_int_equal(run_main(1, bad_key_body, &c, NULL), 0);
    assert_int_equal(c.set_neg, -EINVAL);
    assert_int_equal(c.set_big, -EINVAL);
    assert_null(c.get_neg);
    assert_null(c.get_big);
}

struct tls_cb_ctx {
    rv_local_key key;
    atomic_int ran, set_rc, get_null;
};

static void tls_cb(void *arg)
{
    struct tls_cb_ctx *c = arg;
    static int dummy;
    atomic_store(&c->set_rc, rv_local_set(c->key, &dummy));
    atomic_store(&c->get_null, rv_local_get(c->key) == NULL);
    atomic_store(&c->ran, 1);
}

/* rv_local_set: "-EPERM outside a task"; rv_local_get: "NULL if ... outside
 * a task" - on a plain thread and in a callback. */
static void test_task_local_outside_task(void **state)
{
    (void)state;
    static int dummy;
    rv_local_key key = plain_key();
    assert_int_equal(rv_local_set(key, &dummy), -EPERM);
    assert_null(rv_local_get(key));
    rv_runtime *rt = new_runtime(1);
    struct tls_cb_ctx c;
    c.key = key;
    atomic_init(&c.ran, 0);
    atomic_init(&c.set_rc, 1);
    atomic_init(&c.get_null, 0);
    assert_int_equal(rv_call_soon(rt, tls_cb, &c, NULL), 0);
    assert_true(wait_atomic(&c.ran, 1));
    assert_int_equal(atomic_load(&c.set_rc), -EPERM);
    assert_int_equal(atomic_load(&c.get_null), 1);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Spawning and the task registry                                             */

#define VISIT_MAX 16
struct visit_ctx {
    int n;
    uint64_t ids[VISIT_MAX];
};

static void visit_task(rv_task *t, void *arg)
{
    struct visit_ctx *v = arg;
    if (v->n < VISIT_MAX)
        v->ids[v->n] = rv_task_id(t);
    v->n++;
}

struct all_tasks_ctx {
    rv_future *f;
    atomic_int started;
};

static int all_tasks_body(void *arg, void **res)
{
    struct all_tasks_ctx *c = arg;
    atomic_fetch_add(&c->started, 1);
    return rv_await(c->f, NULL);
}

/* rv_all_tasks: "Call visit(t, arg) for every task of rt that has started and
 * not ended ... Returns the number visited" - parked tasks included.
 * (test_all_tasks: pending tasks only) */
static void test_task_all_tasks(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct all_tasks_ctx c;
    c.f = new_future(rt);
    atomic_init(&c.started, 0);
    rv_task *t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(rv_spawn(rt, all_tasks_body, &c, NULL, &t[i]), 0);
    assert_true(wait_atomic(&c.started, 3));
    struct visit_ctx v;
    memset(&v, 0, sizeof v);
    assert_int_equal(rv_all_tasks(rt, visit_task, &v), 3);
    assert_int_equal(v.n, 3);
    for (int i = 0; i < 3; i++) {
        int found = 0;
        for (int k = 0; k < v.n && k < VISIT_MAX; k++)
            found += v.ids[k] == rv_task_id(t[i]);
        assert_int_equal(found, 1);
    }
    assert_int_equal(rv_future_set_result(c.f, NULL), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rv_future_wait(rv_task_future(t[i]), WAIT_NS, NULL), 0);
        assert_int_equal(rv_task_release(t[i]), 0);
    }
    /* Ended tasks leave the registry (allow the workers a moment). */
    int64_t deadline = rv_now() + WAIT_NS;
    int n;
    while ((n = rv_all_tasks(rt, visit_task, &v)) != 0 && rv_now() < deadline)
        sleep_ms(1);
    assert_int_equal(n, 0);
    assert_int_equal(rv_all_tasks(NULL, visit_task, &v), -EINVAL);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

/* rv_spawn: "Returns -ESHUTDOWN after shutdown began" (and the body never
 * runs). */
static void test_task_spawn_after_shutdown(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    atomic_int started_null;
    atomic_init(&started_null, 5);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, result_body, &started_null, NULL, &t), -ESHUTDOWN);
    assert_int_equal(rv_spawn(rt, result_body, &started_null, NULL, NULL), -ESHUTDOWN);
    free_runtime(rt);
    assert_int_equal(atomic_load(&started_null), 5);
}

/* rv_spawn: "-EINVAL for a NULL fn or no runtime". */
static void test_task_spawn_invalid(void **state)
{
    (void)state;
    rv_task *t = NULL;
    /* A plain thread has no current runtime. */
    assert_int_equal(rv_spawn(NULL, noop_body, NULL, NULL, &t), -EINVAL);
    rv_runtime *rt = new_runtime(1);
    assert_int_equal(rv_spawn(rt, NULL, NULL, NULL, &t), -EINVAL);
    assert_int_equal(rv_spawn(rt, NULL, NULL, NULL, NULL), -EINVAL);
    free_runtime(rt);
}

struct current_rt_ctx {
    rv_runtime *rt;
    int spawn_rc, await_rc, child_rt_ok;
    void *value;
};

static int current_rt_child(void *arg, void **res)
{
    struct current_rt_ctx *c = arg;
    c->child_rt_ok = rv_runtime_current() == c->rt;
    *res = IP(3);
    return 0;
}

static int current_rt_main(void *arg, void **res)
{
    struct current_rt_ctx *c = arg;
    rv_task *t = NULL;
    c->spawn_rc = rv_spawn(NULL, current_rt_child, c, NULL, &t);
    if (c->spawn_rc != 0)
        return 0;
    c->await_rc = rv_await(rv_task_future(t), &c->value);
    rv_task_release(t);
    return 0;
}

/* rv_spawn: "Start fn(arg) as a task on rt (NULL: the calling thread's
 * runtime)". */
static void test_task_spawn_in_current_runtime(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct current_rt_ctx c;
    memset(&c, 0, sizeof c);
    c.rt = rt;
    assert_int_equal(run_task(rt, current_rt_main, &c, NULL), 0);
    assert_int_equal(c.spawn_rc, 0);
    assert_int_equal(c.await_rc, 0);
    assert_int_equal(PI(c.value), 3);
    assert_int_equal(c.child_rt_ok, 1);
    free_runtime(rt);
}

static int stack_body(void *arg, void **res)
{
    volatile char buf[32 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 512)
        buf[i] = (char)i;
    int rc = rv_yield();
    if (rc < 0)
        return rc;
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof buf; i += 512)
        sum += (unsigned char)buf[i];
    *res = IP(sum);
    return 0;
}

/* rv_spawn_opts.stack_size: "0: the runtime's default"; a larger stack holds
 * a larger frame across a suspension. */
static void test_task_stack_size(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_spawn_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.stack_size = 512 * 1024;
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, stack_body, NULL, &opts, &t), 0);
    void *r = NULL;
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, &r), 0);
    unsigned expect = 0;
    for (size_t i = 0; i < 32 * 1024; i += 512)
        expect += (unsigned char)(char)i;
    assert_int_equal(PI(r), expect);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

#define FORGET_TASKS 100
static int forget_body(void *arg, void **res)
{
    int rc = rv_yield();
    atomic_fetch_add((atomic_int *)arg, 1);
    *res = IP(1);
    return rc;
}

/* "The runtime owns a running task ... Fire-and-forget (out == NULL) is
 * safe": the tasks run to the end and nothing leaks (LSan / valgrind).
 * (test_log_destroyed_pending_task: the loop keeps tasks) */
static void test_task_fire_and_forget(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    atomic_int done;
    atomic_init(&done, 0);
    for (int i = 0; i < FORGET_TASKS; i++)
        assert_int_equal(rv_spawn(rt, forget_body, &done, NULL, NULL), 0);
    assert_true(wait_atomic(&done, FORGET_TASKS));
    rv_runtime_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    int64_t deadline = rv_now() + WAIT_NS;
    do {
        assert_int_equal(rv_runtime_stats_get(rt, &st), 0);
        if (st.live_tasks == 0)
            break;
        sleep_ms(1);
    } while (rv_now() < deadline);
    assert_true(st.live_tasks == 0);
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    free_runtime(rt);
    assert_int_equal(atomic_load(&done), FORGET_TASKS);
}

/* "A NULL handle returns -EINVAL; it never crashes" for the task calls;
 * rv_task_id: "0 for NULL". */
static void test_task_null_handles(void **state)
{
    (void)state;
    assert_null(rv_task_future(NULL));
    assert_null(rv_task_ref(NULL));
    assert_int_equal(rv_task_release(NULL), -EINVAL);
    assert_int_equal(rv_task_cancel(NULL, "x"), -EINVAL);
    assert_int_equal(rv_task_cancelling(NULL), -EINVAL);
    assert_int_equal(rv_task_uncancel(NULL), -EINVAL);
    assert_int_equal(rv_task_set_name(NULL, "x"), -EINVAL);
    assert_null(rv_task_name(NULL));
    assert_true(rv_task_id(NULL) == 0);
}

/* rv_task_ref: adds a reference; each is dropped by rv_task_release; the
 * handle stays valid after the task ended while a reference is held. */
static void test_task_ref_release(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, noop_body, NULL, NULL, &t), 0);
    assert_ptr_equal(rv_task_ref(t), t);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_int_equal(rv_task_release(t), 0);
    assert_true(rv_future_done(rv_task_future(t)));
    assert_non_null(rv_task_name(t));
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
}

/* rv_local_key_create: "-EAGAIN when all keys are taken"; RV_TASK_LOCAL_KEYS
 * keys per process. Runs last: it uses up the process's keys. */
static void test_task_local_key_exhaustion(void **state)
{
    (void)state;
    rv_local_key keys[RV_TASK_LOCAL_KEYS + 1];
    int made = 0;
    for (int i = 0; i <= RV_TASK_LOCAL_KEYS; i++) {
        int rc = rv_local_key_create(&keys[made], NULL);
        if (rc == -EAGAIN)
            break;
        assert_int_equal(rc, 0);
        for (int k = 0; k < made; k++)
            assert_int_not_equal(keys[k], keys[made]);
        if (g_plain_key >= 0)
            assert_int_not_equal(keys[made], g_plain_key);
        if (g_dtor_key >= 0)
            assert_int_not_equal(keys[made], g_dtor_key);
        made++;
    }
    assert_int_equal(g_keys_created + made, RV_TASK_LOCAL_KEYS);
    rv_local_key extra;
    assert_int_equal(rv_local_key_create(&extra, NULL), -EAGAIN);
}

/* ------------------------------------------------------------------------- */
/* Regressions found in review                                                */

static void count_done_cb(rv_future *f, void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

static int short_sleep_body(void *arg, void **res) { return rv_sleep(10 * MS); }

/* rv_future_add_done_callback: "Call cb(f, arg) once f is done", also when
 * the caller releases its task handle right after registering (once dropped
 * by the fire-and-forget fast path). */
static void test_task_done_callback_after_handle_released(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    atomic_int called;
    atomic_init(&called, 0);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, short_sleep_body, NULL, NULL, &t), 0);
    assert_int_equal(rv_future_add_done_callback(rv_task_future(t), count_done_cb, &called), 0);
    assert_int_equal(rv_task_release(t), 0);
    assert_true(wait_atomic(&called, 1));
    free_runtime(rt);
    assert_int_equal(atomic_load(&called), 1);
}

struct stranded_ctx {
    atomic_llong child_started_at;
    int64_t spawned_at;
};

static int stranded_child(void *arg, void **res)
{
    struct stranded_ctx *c = arg;
    atomic_store(&c->child_started_at, rv_now());
    return 0;
}

static int stranded_parent(void *arg, void **res)
{
    struct stranded_ctx *c = arg;
    rv_sleep(30 * MS); /* both workers go idle; the other one parks */
    c->spawned_at = rv_now();
    if (rv_spawn(NULL, stranded_child, c, NULL, NULL) != 0) /* our LIFO slot */
        return -EIO;
    while (rv_now() - c->spawned_at < 300 * MS) /* busy, never suspending */
        ;
    return 0;
}

/* Scheduler: the LIFO slot "never strands work when its worker is busy": a
 * child spawned just before a long computation starts on the idle worker
 * well before that computation ends (once not until the parent suspended). */
static void test_task_lifo_not_stranded_behind_long_job(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct stranded_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.child_started_at, 0);
    assert_int_equal(run_task(rt, stranded_parent, &c, NULL), 0);
    long long at = atomic_load(&c.child_started_at);
    free_runtime(rt);
    assert_true(at != 0);
    print_message("child started %.1f ms after the spawn\n", (double)(at - c.spawned_at) / 1e6);
    assert_true(at - c.spawned_at < 150 * MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_done_callback_after_handle_released),
        cmocka_unit_test(test_task_lifo_not_stranded_behind_long_job),
        cmocka_unit_test(test_task_result),
        cmocka_unit_test(test_task_error),
        cmocka_unit_test(test_task_error_without_message),
        cmocka_unit_test(test_task_error_outside_task),
        cmocka_unit_test(test_task_return_ecanceled),
        cmocka_unit_test(test_task_await_task),
        cmocka_unit_test(test_task_cancel),
        cmocka_unit_test(test_task_cancel_with_message_before_starting_task),
        cmocka_unit_test(test_task_cancel_yield),
        cmocka_unit_test(test_task_cancel_sleeping_task),
        cmocka_unit_test(test_task_cancel_awaiting_future),
        cmocka_unit_test(test_task_cancel_inner_future),
        cmocka_unit_test(test_task_cancel_task_catching),
        cmocka_unit_test(test_task_cancel_task_ignoring),
        cmocka_unit_test(test_task_cancel_current_task),
        cmocka_unit_test(test_task_cancel_delivered_once),
        cmocka_unit_test(test_task_cancel_at_end),
        cmocka_unit_test(test_task_cancel_awaited_task),
        cmocka_unit_test(test_task_cancel_finished),
        cmocka_unit_test(test_task_cancelling),
        cmocka_unit_test(test_task_uncancel_basic),
        cmocka_unit_test(test_task_uncancel_not_below_zero),
        cmocka_unit_test(test_task_uncancel_withdraws_request),
        cmocka_unit_test(test_task_uncancel_before_first_step),
        cmocka_unit_test(test_task_sleep_zero),
        cmocka_unit_test(test_task_sleep_nonpositive_is_yield),
        cmocka_unit_test(test_task_sleep),
        cmocka_unit_test(test_task_sleep_timer_due_while_worker_busy),
        cmocka_unit_test(test_task_current_task_with_interleaving_tasks),
        cmocka_unit_test(test_task_current_task_outside_task),
        cmocka_unit_test(test_task_name_default),
        cmocka_unit_test(test_task_name_custom),
        cmocka_unit_test(test_task_set_name),
        cmocka_unit_test(test_task_set_name_permissions),
        cmocka_unit_test(test_task_ids_increasing),
        cmocka_unit_test(test_task_await_itself),
        cmocka_unit_test(test_task_suspend_outside_task),
        cmocka_unit_test(test_task_suspend_in_callback),
        cmocka_unit_test(test_task_pinned),
        cmocka_unit_test(test_task_pinned_spawned_from_worker),
        cmocka_unit_test(test_task_local_storage),
        cmocka_unit_test(test_task_local_destructor),
        cmocka_unit_test(test_task_local_bad_key),
        cmocka_unit_test(test_task_local_outside_task),
        cmocka_unit_test(test_task_all_tasks),
        cmocka_unit_test(test_task_spawn_after_shutdown),
        cmocka_unit_test(test_task_spawn_invalid),
        cmocka_unit_test(test_task_spawn_in_current_runtime),
        cmocka_unit_test(test_task_stack_size),
        cmocka_unit_test(test_task_fire_and_forget),
        cmocka_unit_test(test_task_null_handles),
        cmocka_unit_test(test_task_ref_release),
        /* Last: uses up the process's task-local keys. */
        cmocka_unit_test(test_task_local_key_exhaustion),
    };
    /* RV_TEST_FILTER=pattern runs only the matching tests (debugging). */
    const char *filter = getenv("RV_TEST_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
