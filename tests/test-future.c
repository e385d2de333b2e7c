/* test-future.c - futures: ports of CPython's test_futures.py scenarios.
 *
 * Each test names, in the comment above it, the statement of include/ravel.h
 * ("Futures" section) it checks.
 *
 * cmocka is not thread-safe: tasks, callbacks and helper threads only record
 * what they observe (plain fields published by the future they complete, or
 * C11 atomics); the test thread asserts afterwards. Ordering-sensitive tests
 * use a 1-worker runtime, where nothing runs while a task runs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ravel.h>

#include "test-util.h"

/* ------------------------------------------------------------------------- */
/* Helpers (test thread only unless noted)                                    */

/* A log the done callbacks append to. */
#define LOG_MAX 32
struct cb_log {
    atomic_int claimed; /* slots taken in order[] */
    atomic_int n;       /* entries written (published after the write) */
    atomic_int order[LOG_MAX];
    atomic_int in_task;    /* callbacks that saw rv_current_task() != NULL */
    atomic_int off_worker; /* callbacks that saw rv_runtime_current() == NULL */
    atomic_int not_done;   /* callbacks that saw their future not done */
    atomic_int cancelled;  /* callbacks that saw their future cancelled */
    atomic_int wrong_f;    /* callbacks given a future other than expected */
    rv_future *expect_f;
};

struct cb_arg {
    struct cb_log *log;
    int value;
};

static void log_cb(rv_future *f, void *arg)
{
    struct cb_arg *a = arg;
    struct cb_log *log = a->log;
    if (rv_current_task() != NULL)
        atomic_fetch_add(&log->in_task, 1);
    if (rv_runtime_current() == NULL)
        atomic_fetch_add(&log->off_worker, 1);
    if (!rv_future_done(f))
        atomic_fetch_add(&log->not_done, 1);
    if (rv_future_cancelled(f))
        atomic_fetch_add(&log->cancelled, 1);
    if (log->expect_f != NULL && f != log->expect_f)
        atomic_fetch_add(&log->wrong_f, 1);
    int i = atomic_fetch_add(&log->claimed, 1);
    if (i < LOG_MAX)
        atomic_store(&log->order[i], a->value);
    /* Publish the entry after writing it. */
    atomic_fetch_add(&log->n, 1);
}

static void log_init(struct cb_log *log, rv_future *f)
{
    memset(log, 0, sizeof *log);
    for (int i = 0; i < LOG_MAX; i++)
        atomic_init(&log->order[i], 0);
    atomic_init(&log->claimed, 0);
    atomic_init(&log->n, 0);
    atomic_init(&log->in_task, 0);
    atomic_init(&log->off_worker, 0);
    atomic_init(&log->not_done, 0);
    atomic_init(&log->cancelled, 0);
    atomic_init(&log->wrong_f, 0);
    log->expect_f = f;
}

/* ------------------------------------------------------------------------- */
/* States                                                                     */

/* "A future is pending, then ..."; rv_future_done: "True once finished or
 * cancelled"; rv_future_message: "or NULL". (test_initial_state) */
static void test_future_initial_state(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_false(rv_future_done(f));
    assert_false(rv_future_cancelled(f));
    assert_null(rv_future_message(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_new: "(NULL: the calling thread's runtime; -EINVAL when there is
 * none)"; conventions: a NULL out-parameter is invalid input.
 * (test_constructor_without_loop) */
static void test_future_new_without_runtime(void **state)
{
    (void)state;
    rv_future *f = NULL;
    assert_int_equal(rv_future_new(NULL, &f), -EINVAL);
    rv_runtime *rt = new_runtime(1);
    assert_int_equal(rv_future_new(rt, NULL), -EINVAL);
    free_runtime(rt);
}

struct new_in_task_ctx {
    int new_rc, set_rc, await_rc;
    void *value;
};

static int new_in_task_body(void *arg, void **res)
{
    struct new_in_task_ctx *c = arg;
    rv_future *f = NULL;
    c->new_rc = rv_future_new(NULL, &f);
    if (c->new_rc != 0)
        return 0;
    c->set_rc = rv_future_set_result(f, IP(11));
    c->await_rc = rv_await(f, &c->value);
    rv_future_release(f);
    return 0;
}

/* rv_future_new: "NULL: the calling thread's runtime" from inside a task.
 * (test_constructor_use_running_loop) */
static void test_future_new_in_task(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct new_in_task_ctx c = {0};
    assert_int_equal(run_task(rt, new_in_task_body, &c, NULL), 0);
    assert_int_equal(c.new_rc, 0);
    assert_int_equal(c.set_rc, 0);
    assert_int_equal(c.await_rc, 0);
    assert_int_equal(PI(c.value), 11);
    free_runtime(rt);
}

/* rv_future_result: "-EAGAIN while pending". (test_result: InvalidStateError
 * before done) */
static void test_future_result_before_done(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    void *r = NULL;
    assert_int_equal(rv_future_result(f, &r), -EAGAIN);
    assert_false(rv_future_done(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_exception: "-EAGAIN while pending". (test_exception: exception()
 * of a pending future raises InvalidStateError) */
static void test_future_exception_while_pending(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_int_equal(rv_future_exception(f), -EAGAIN);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_set_result: "Finish with result"; rv_future_result: "0 and
 * *result when finished with a result"; rv_future_exception: "0 when finished
 * with a result". (test_result) */
static void test_future_result(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_int_equal(rv_future_set_result(f, IP(42)), 0);
    assert_true(rv_future_done(f));
    assert_false(rv_future_cancelled(f));
    void *r = NULL;
    assert_int_equal(rv_future_result(f, &r), 0);
    assert_int_equal(PI(r), 42);
    assert_int_equal(rv_future_exception(f), 0);
    assert_null(rv_future_message(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_set_result: "-EALREADY if already done (the result is
 * unchanged)"; set_exception and cancel: "-EALREADY if already done".
 * (test_result: set_result / set_exception after done -> InvalidStateError) */
static void test_future_set_result_twice(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_int_equal(rv_future_set_result(f, IP(42)), 0);
    assert_int_equal(rv_future_set_result(f, IP(7)), -EALREADY);
    assert_int_equal(rv_future_set_exception(f, -EIO, "late"), -EALREADY);
    assert_int_equal(rv_future_cancel(f, "late"), -EALREADY);
    void *r = NULL;
    assert_int_equal(rv_future_result(f, &r), 0);
    assert_int_equal(PI(r), 42);
    assert_false(rv_future_cancelled(f));
    assert_int_equal(rv_future_exception(f), 0);
    assert_null(rv_future_message(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_set_exception: "Finish with error code ... and an optional
 * message, copied"; rv_future_result / rv_future_exception: "the error code
 * when finished with an error"; rv_future_message: "The message given with
 * the error". (test_exception) */
static void test_future_exception(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    char msg[32];
    strcpy(msg, "disk gone");
    assert_int_equal(rv_future_set_exception(f, -EIO, msg), 0);
    memset(msg, 'x', sizeof msg - 1); /* the future kept a copy */
    assert_true(rv_future_done(f));
    assert_false(rv_future_cancelled(f));
    void *r = NULL;
    assert_int_equal(rv_future_result(f, &r), -EIO);
    assert_int_equal(rv_future_exception(f), -EIO);
    assert_non_null(rv_future_message(f));
    assert_string_equal(rv_future_message(f), "disk gone");
    assert_int_equal(rv_future_set_exception(f, -EPIPE, "other"), -EALREADY);
    assert_int_equal(rv_future_set_result(f, IP(1)), -EALREADY);
    assert_int_equal(rv_future_exception(f), -EIO);
    assert_string_equal(rv_future_message(f), "disk gone");
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_set_exception: "an optional message" (NULL);
 * rv_future_message: "or NULL". */
static void test_future_exception_without_message(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_int_equal(rv_future_set_exception(f, -ENOENT, NULL), 0);
    assert_int_equal(rv_future_exception(f), -ENOENT);
    assert_null(rv_future_message(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_set_exception: "code (negative; -EINVAL otherwise, and -EINVAL
 * for -ECANCELED: use rv_future_cancel)"; the future stays pending.
 * (test_set_exception_stop_iteration: a value that cannot be stored is
 * rejected) */
static void test_future_set_exception_invalid_code(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_int_equal(rv_future_set_exception(f, -ECANCELED, "no"), -EINVAL);
    assert_int_equal(rv_future_set_exception(f, 0, "no"), -EINVAL);
    assert_int_equal(rv_future_set_exception(f, 5, "no"), -EINVAL);
    assert_false(rv_future_done(f));
    assert_int_equal(rv_future_exception(f), -EAGAIN);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_cancel: "0 if this call cancelled it, -EALREADY if it was already
 * done"; rv_future_cancelled: "True if cancelled"; result/exception:
 * "-ECANCELED when cancelled". (test_cancel) */
static void test_future_cancel(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_int_equal(rv_future_cancel(f, NULL), 0);
    assert_true(rv_future_cancelled(f));
    assert_true(rv_future_done(f));
    void *r = NULL;
    assert_int_equal(rv_future_result(f, &r), -ECANCELED);
    assert_int_equal(rv_future_exception(f), -ECANCELED);
    assert_null(rv_future_message(f));
    assert_int_equal(rv_future_cancel(f, NULL), -EALREADY);
    assert_int_equal(rv_future_set_result(f, IP(1)), -EALREADY);
    assert_int_equal(rv_future_set_exception(f, -EIO, NULL), -EALREADY);
    assert_true(rv_future_cancelled(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_cancel: "Cancel with an optional message, copied";
 * rv_future_message: "the message given with ... the cancellation".
 * (test_future_cancel_message_getter / _setter) */
static void test_future_cancel_message(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    char msg[32];
    strcpy(msg, "my message");
    assert_int_equal(rv_future_cancel(f, msg), 0);
    memset(msg, 'x', sizeof msg - 1);
    assert_non_null(rv_future_message(f));
    assert_string_equal(rv_future_message(f), "my message");
    assert_int_equal(rv_future_result(f, NULL), -ECANCELED);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* "A future is pending, then finished ... exactly once. Futures are
 * thread-safe: any thread may complete": of racing set_result calls exactly
 * one returns 0 and its value is the result. */
#define RACERS 4
struct race_ctx {
    rv_future *f;
    atomic_int go;
    int index;
    int rc;
};

static void *race_thread(void *arg)
{
    struct race_ctx *c = arg;
    while (!atomic_load(&c->go))
        ;
    c->rc = rv_future_set_result(c->f, IP(c->index + 1));
    return NULL;
}

static void test_future_set_result_race(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct race_ctx c[RACERS];
    pthread_t th[RACERS];
    for (int i = 0; i < RACERS; i++) {
        c[i].f = f;
        atomic_init(&c[i].go, 0);
        c[i].index = i;
        c[i].rc = 1;
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &c[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        atomic_store(&c[i].go, 1);
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    int winners = 0, winner = -1;
    for (int i = 0; i < RACERS; i++) {
        if (c[i].rc == 0) {
            winners++;
            winner = i;
        } else {
            assert_int_equal(c[i].rc, -EALREADY);
        }
    }
    assert_int_equal(winners, 1);
    void *r = NULL;
    assert_int_equal(rv_future_result(f, &r), 0);
    assert_int_equal(PI(r), winner + 1);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_ref: "Add a reference. Returns f (NULL when f is NULL)";
 * rv_future_release: "the last one frees the future". */
static void test_future_ref_release(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_ptr_equal(rv_future_ref(f), f);
    assert_int_equal(rv_future_release(f), 0);
    /* Still alive: one reference left. */
    assert_int_equal(rv_future_set_result(f, IP(3)), 0);
    assert_true(rv_future_done(f));
    assert_int_equal(rv_future_release(f), 0);
    assert_null(rv_future_ref(NULL));
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Done callbacks                                                             */

struct cbs_ctx {
    rv_future *f;
    struct cb_log log;
    struct cb_arg a[3];
    int add_rc[3];
    int set_rc;
    int n_after_set;
    int wait_rc;
};

static void cbs_init(struct cbs_ctx *c, rv_future *f)
{
    memset(c, 0, sizeof *c);
    c->f = f;
    log_init(&c->log, f);
    const int values[3] = {42, 17, 100};
    for (int i = 0; i < 3; i++) {
        c->a[i].log = &c->log;
        c->a[i].value = values[i];
    }
}

static int cbs_set_result_body(void *arg, void **res)
{
    struct cbs_ctx *c = arg;
    for (int i = 0; i < 3; i++)
        c->add_rc[i] = rv_future_add_done_callback(c->f, log_cb, &c->a[i]);
    c->set_rc = rv_future_set_result(c->f, IP(1));
    /* Nothing else runs on the single worker while this task runs: a callback
     * that ran inside set_result would show up here. */
    c->n_after_set = atomic_load(&c->log.n);
    c->wait_rc = task_wait_atomic(&c->log.n, 3);
    return 0;
}

/* rv_future_add_done_callback: "Callbacks run on a worker, later, in
 * registration order, never inside set_result". (test_callbacks_invoked_on_
 * set_result: nothing before run_briefly, then [42, 17, 100]) */
static void test_future_callbacks_invoked_on_set_result(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct cbs_ctx c;
    cbs_init(&c, f);
    assert_int_equal(run_task(rt, cbs_set_result_body, &c, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c.add_rc[i], 0);
    assert_int_equal(c.set_rc, 0);
    assert_int_equal(c.n_after_set, 0);
    assert_int_equal(c.wait_rc, 0);
    assert_int_equal(atomic_load(&c.log.n), 3);
    assert_int_equal(atomic_load(&c.log.order[0]), 42);
    assert_int_equal(atomic_load(&c.log.order[1]), 17);
    assert_int_equal(atomic_load(&c.log.order[2]), 100);
    assert_int_equal(atomic_load(&c.log.in_task), 0);
    assert_int_equal(atomic_load(&c.log.off_worker), 0);
    assert_int_equal(atomic_load(&c.log.not_done), 0);
    assert_int_equal(atomic_load(&c.log.wrong_f), 0);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

static int cbs_set_exception_body(void *arg, void **res)
{
    struct cbs_ctx *c = arg;
    for (int i = 0; i < 3; i++)
        c->add_rc[i] = rv_future_add_done_callback(c->f, log_cb, &c->a[i]);
    c->set_rc = rv_future_set_exception(c->f, -EIO, "boom");
    c->n_after_set = atomic_load(&c->log.n);
    c->wait_rc = task_wait_atomic(&c->log.n, 3);
    return 0;
}

/* Same statement for set_exception: "never inside set_result/set_exception".
 * (test_callbacks_invoked_on_set_exception) */
static void test_future_callbacks_invoked_on_set_exception(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct cbs_ctx c;
    cbs_init(&c, f);
    assert_int_equal(run_task(rt, cbs_set_exception_body, &c, NULL), 0);
    assert_int_equal(c.set_rc, 0);
    assert_int_equal(c.n_after_set, 0);
    assert_int_equal(c.wait_rc, 0);
    assert_int_equal(atomic_load(&c.log.n), 3);
    assert_int_equal(atomic_load(&c.log.order[0]), 42);
    assert_int_equal(atomic_load(&c.log.order[1]), 17);
    assert_int_equal(atomic_load(&c.log.order[2]), 100);
    assert_int_equal(atomic_load(&c.log.not_done), 0);
    assert_int_equal(rv_future_exception(f), -EIO);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

static int cbs_cancel_body(void *arg, void **res)
{
    struct cbs_ctx *c = arg;
    for (int i = 0; i < 3; i++)
        c->add_rc[i] = rv_future_add_done_callback(c->f, log_cb, &c->a[i]);
    c->set_rc = rv_future_cancel(c->f, NULL);
    c->n_after_set = atomic_load(&c->log.n);
    c->wait_rc = task_wait_atomic(&c->log.n, 3);
    return 0;
}

/* Same statement for cancel: "never inside set_result/set_exception/cancel". */
static void test_future_callbacks_invoked_on_cancel(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct cbs_ctx c;
    cbs_init(&c, f);
    assert_int_equal(run_task(rt, cbs_cancel_body, &c, NULL), 0);
    assert_int_equal(c.set_rc, 0);
    assert_int_equal(c.n_after_set, 0);
    assert_int_equal(c.wait_rc, 0);
    assert_int_equal(atomic_load(&c.log.n), 3);
    assert_int_equal(atomic_load(&c.log.order[0]), 42);
    assert_int_equal(atomic_load(&c.log.order[1]), 17);
    assert_int_equal(atomic_load(&c.log.order[2]), 100);
    assert_int_equal(atomic_load(&c.log.cancelled), 3);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* "Futures are thread-safe: any thread may complete"; callbacks "run on a
 * worker": completing from a plain thread runs them on a worker, not on the
 * completing thread. */
static void test_future_callbacks_from_plain_thread(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct cbs_ctx c;
    cbs_init(&c, f);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rv_future_add_done_callback(f, log_cb, &c.a[i]), 0);
    assert_int_equal(rv_future_set_result(f, IP(5)), 0);
    assert_true(wait_atomic(&c.log.n, 3));
    assert_int_equal(atomic_load(&c.log.order[0]), 42);
    assert_int_equal(atomic_load(&c.log.order[1]), 17);
    assert_int_equal(atomic_load(&c.log.order[2]), 100);
    assert_int_equal(atomic_load(&c.log.off_worker), 0);
    assert_int_equal(atomic_load(&c.log.in_task), 0);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

struct add_done_ctx {
    rv_future *f;
    struct cb_log log;
    struct cb_arg a;
    int set_rc, add_rc, n_after_add, wait_rc;
};

static int add_done_body(void *arg, void **res)
{
    struct add_done_ctx *c = arg;
    c->set_rc = rv_future_set_result(c->f, IP(8));
    c->add_rc = rv_future_add_done_callback(c->f, log_cb, &c->a);
    c->n_after_add = atomic_load(&c->log.n);
    c->wait_rc = task_wait_atomic(&c->log.n, 1);
    return 0;
}

/* rv_future_add_done_callback: "one added to a done future is scheduled at
 * once" - scheduled, not run inside the call. (asyncio: add_done_callback on a
 * done future goes through call_soon) */
static void test_future_add_done_callback_when_done(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct add_done_ctx c;
    memset(&c, 0, sizeof c);
    c.f = f;
    log_init(&c.log, f);
    c.a.log = &c.log;
    c.a.value = 9;
    assert_int_equal(run_task(rt, add_done_body, &c, NULL), 0);
    assert_int_equal(c.set_rc, 0);
    assert_int_equal(c.add_rc, 0);
    assert_int_equal(c.n_after_add, 0);
    assert_int_equal(c.wait_rc, 0);
    assert_int_equal(atomic_load(&c.log.n), 1);
    assert_int_equal(atomic_load(&c.log.order[0]), 9);
    assert_int_equal(atomic_load(&c.log.not_done), 0);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* Values: 42 = cb1, 17 = cb2, 100 = cb3; 999 = the sentinel registered last,
 * whose run proves every earlier callback has run (registration order). */
struct bag {
    struct cb_log log;
    struct cb_arg cb1, cb2, cb3, sentinel;
};

static void bag_init(struct bag *b, rv_future *f)
{
    log_init(&b->log, f);
    b->cb1 = (struct cb_arg){&b->log, 42};
    b->cb2 = (struct cb_arg){&b->log, 17};
    b->cb3 = (struct cb_arg){&b->log, 100};
    b->sentinel = (struct cb_arg){&b->log, 999};
}

/* Run the callbacks: add the sentinel, set the result, wait for the sentinel.
 * Returns the number of callbacks that ran before the sentinel. */
static int bag_run(struct bag *b, rv_future *f)
{
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b->sentinel), 0);
    assert_int_equal(atomic_load(&b->log.n), 0);
    assert_int_equal(rv_future_set_result(f, IP(77)), 0);
    int64_t deadline = rv_now() + WAIT_NS;
    for (;;) {
        int n = atomic_load(&b->log.n);
        if (n > 0 && atomic_load(&b->log.order[n - 1]) == 999)
            return n - 1;
        assert_true(rv_now() < deadline);
        sleep_ms(1);
    }
}

/* rv_future_remove_done_callback: "Remove every registration of (cb, arg)
 * that has not been scheduled yet; returns how many were removed".
 * (test_remove_done_callback: counts 1, 0, 6; then bag == [17]) */
static void test_future_remove_done_callback(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct bag b;
    bag_init(&b, f);

    /* Add one cb1 and one cb2. */
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb1), 0);
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb2), 0);
    /* One instance of cb2 removed. Now there's only one cb1. */
    assert_int_equal(rv_future_remove_done_callback(f, log_cb, &b.cb2), 1);
    /* Never had any cb3 in there. */
    assert_int_equal(rv_future_remove_done_callback(f, log_cb, &b.cb3), 0);
    /* After this there will be 6 instances of cb1 and one of cb2. */
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb2), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb1), 0);
    /* Remove all instances of cb1. One cb2 remains. */
    assert_int_equal(rv_future_remove_done_callback(f, log_cb, &b.cb1), 6);

    assert_int_equal(bag_run(&b, f), 1);
    assert_int_equal(atomic_load(&b.log.order[0]), 17);
    void *r = NULL;
    assert_int_equal(rv_future_result(f, &r), 0);
    assert_int_equal(PI(r), 77);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* Registrations are (cb, arg) pairs: removing (cb, arg1) leaves (cb, arg2). */
static void test_future_remove_done_callback_matches_arg(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct bag b;
    bag_init(&b, f);
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb1), 0);
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb2), 0);
    assert_int_equal(rv_future_remove_done_callback(f, log_cb, &b.cb1), 1);
    assert_int_equal(bag_run(&b, f), 1);
    assert_int_equal(atomic_load(&b.log.order[0]), 17);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* Helper for test_callbacks_remove_{first,first_and_second,third}_callback:
 * add cb1, cb2, cb3, remove the ones in `remove` (each twice, as CPython
 * does), run, and compare the bag with `expect`. */
static void remove_case(const int *remove, int n_remove, const int *expect, int n_expect)
{
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct bag b;
    bag_init(&b, f);
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb1), 0);
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb2), 0);
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &b.cb3), 0);
    for (int i = 0; i < n_remove; i++) {
        struct cb_arg *a = remove[i] == 1 ? &b.cb1 : remove[i] == 2 ? &b.cb2 : &b.cb3;
        assert_int_equal(rv_future_remove_done_callback(f, log_cb, a), 1);
        assert_int_equal(rv_future_remove_done_callback(f, log_cb, a), 0);
    }
    assert_int_equal(bag_run(&b, f), n_expect);
    for (int i = 0; i < n_expect; i++)
        assert_int_equal(atomic_load(&b.log.order[i]), expect[i]);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* remove_done_callback + "in registration order".
 * (test_callbacks_remove_first_callback: [17, 100]) */
static void test_future_callbacks_remove_first_callback(void **state)
{
    (void)state;
    const int remove[] = {1};
    const int expect[] = {17, 100};
    remove_case(remove, 1, expect, 2);
}

/* (test_callbacks_remove_first_and_second_callback: [100]) */
static void test_future_callbacks_remove_first_and_second_callback(void **state)
{
    (void)state;
    const int remove[] = {1, 2};
    const int expect[] = {100};
    remove_case(remove, 2, expect, 1);
}

/* (test_callbacks_remove_third_callback: [42, 17]) */
static void test_future_callbacks_remove_third_callback(void **state)
{
    (void)state;
    const int remove[] = {3};
    const int expect[] = {42, 17};
    remove_case(remove, 1, expect, 2);
}

struct sched_remove_ctx {
    rv_future *f;
    struct cb_log log;
    struct cb_arg a;
    int add_rc, set_rc, remove_rc, wait_rc;
};

static int sched_remove_body(void *arg, void **res)
{
    struct sched_remove_ctx *c = arg;
    c->add_rc = rv_future_add_done_callback(c->f, log_cb, &c->a);
    c->set_rc = rv_future_set_result(c->f, NULL);
    c->remove_rc = rv_future_remove_done_callback(c->f, log_cb, &c->a);
    c->wait_rc = task_wait_atomic(&c->log.n, 1);
    return 0;
}

/* rv_future_remove_done_callback: only registrations "that [have] not been
 * scheduled yet" are removed: once set_result scheduled it, remove returns 0
 * and the callback still runs. */
static void test_future_remove_done_callback_after_scheduled(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct sched_remove_ctx c;
    memset(&c, 0, sizeof c);
    c.f = f;
    log_init(&c.log, f);
    c.a = (struct cb_arg){&c.log, 5};
    assert_int_equal(run_task(rt, sched_remove_body, &c, NULL), 0);
    assert_int_equal(c.add_rc, 0);
    assert_int_equal(c.set_rc, 0);
    assert_int_equal(c.remove_rc, 0);
    assert_int_equal(c.wait_rc, 0);
    assert_int_equal(atomic_load(&c.log.n), 1);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* A callback that changes the callback list of its own future while the
 * callbacks are being scheduled and run. */
struct mutate_ctx {
    struct bag b;
    rv_future *f;
    atomic_int add_rc;
    atomic_int remove_rc;
};

static void mutating_cb(rv_future *f, void *arg)
{
    struct mutate_ctx *m = arg;
    /* cb2 is already scheduled: removing it finds nothing. */
    atomic_store(&m->remove_rc, rv_future_remove_done_callback(f, log_cb, &m->b.cb2));
    /* f is done: cb3 is scheduled at once, after the already scheduled ones. */
    atomic_store(&m->add_rc, rv_future_add_done_callback(f, log_cb, &m->b.cb3));
    log_cb(f, &m->b.cb1);
}

/* Callbacks "in registration order"; "one added to a done future is scheduled
 * at once"; remove only finds unscheduled ones. Mutating the list from a
 * callback must not crash or touch freed memory. (bpo-28963, gh-125789:
 * callbacks mutating the callback list) */
static void test_future_callbacks_mutated_during_invocation(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    struct mutate_ctx m;
    memset(&m, 0, sizeof m);
    bag_init(&m.b, f);
    m.f = f;
    atomic_init(&m.add_rc, 1);
    atomic_init(&m.remove_rc, 1);
    assert_int_equal(rv_future_add_done_callback(f, mutating_cb, &m), 0);
    assert_int_equal(rv_future_add_done_callback(f, log_cb, &m.b.cb2), 0);
    assert_int_equal(rv_future_set_result(f, IP(1)), 0);
    assert_true(wait_atomic(&m.b.log.n, 3));
    assert_int_equal(atomic_load(&m.remove_rc), 0);
    assert_int_equal(atomic_load(&m.add_rc), 0);
    assert_int_equal(atomic_load(&m.b.log.order[0]), 42);
    assert_int_equal(atomic_load(&m.b.log.order[1]), 17);
    assert_int_equal(atomic_load(&m.b.log.order[2]), 100);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Awaiting                                                                   */

static void set_flag_cb(void *arg) { atomic_store((atomic_int *)arg, 1); }

struct await_done_ctx {
    rv_runtime *rt;
    rv_future *f;
    atomic_int flag;
    int soon_rc, rc1, rc2, flag_after, yield_rc, flag_after_yield;
    void *r1, *r2;
};

static int await_done_body(void *arg, void **res)
{
    struct await_done_ctx *c = arg;
    c->soon_rc = rv_call_soon(c->rt, set_flag_cb, &c->flag, NULL);
    c->rc1 = rv_await(c->f, &c->r1);
    c->rc2 = rv_await(c->f, &c->r2);
    /* If either await had suspended, the single worker would have run the
     * callback scheduled above. */
    c->flag_after = atomic_load(&c->flag);
    c->yield_rc = task_wait_atomic(&c->flag, 1);
    c->flag_after_yield = atomic_load(&c->flag);
    return 0;
}

/* rv_await: "An already done future returns at once without suspending";
 * awaiting it twice gives the same result. (test_await_future_twice /
 * test_yield_from_twice: the second await does not suspend) */
static void test_future_await_done_future_does_not_suspend(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct await_done_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.flag, 0);
    c.rt = rt;
    c.f = new_future(rt);
    assert_int_equal(rv_future_set_result(c.f, IP(42)), 0);
    assert_int_equal(run_task(rt, await_done_body, &c, NULL), 0);
    assert_int_equal(c.soon_rc, 0);
    assert_int_equal(c.rc1, 0);
    assert_int_equal(c.rc2, 0);
    assert_int_equal(PI(c.r1), 42);
    assert_int_equal(PI(c.r2), 42);
    assert_int_equal(c.flag_after, 0);
    assert_int_equal(c.yield_rc, 0);
    assert_int_equal(c.flag_after_yield, 1);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

struct await_twice_ctx {
    rv_future *f;
    int rc1, rc2;
    void *r1, *r2;
    int set_rc;
};

static int await_twice_waiter(void *arg, void **res)
{
    struct await_twice_ctx *c = arg;
    c->rc1 = rv_await(c->f, &c->r1);
    c->rc2 = rv_await(c->f, &c->r2);
    return 0;
}

static int await_twice_setter(void *arg, void **res)
{
    struct await_twice_ctx *c = arg;
    int rc = rv_sleep(5 * MS);
    if (rc < 0)
        return rc;
    c->set_rc = rv_future_set_result(c->f, IP(42));
    return 0;
}

/* rv_await: "Wait for f and return what rv_future_result would", twice.
 * (test_await_future_twice: a future completed by another task) */
static void test_future_await_twice(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct await_twice_ctx c;
    memset(&c, 0, sizeof c);
    c.f = new_future(rt);
    rv_task *waiter = NULL, *setter = NULL;
    assert_int_equal(rv_spawn(rt, await_twice_waiter, &c, NULL, &waiter), 0);
    assert_int_equal(rv_spawn(rt, await_twice_setter, &c, NULL, &setter), 0);
    assert_int_equal(rv_future_wait(rv_task_future(setter), WAIT_NS, NULL), 0);
    assert_int_equal(rv_future_wait(rv_task_future(waiter), WAIT_NS, NULL), 0);
    assert_int_equal(c.set_rc, 0);
    assert_int_equal(c.rc1, 0);
    assert_int_equal(c.rc2, 0);
    assert_int_equal(PI(c.r1), 42);
    assert_int_equal(PI(c.r2), 42);
    assert_int_equal(rv_task_release(waiter), 0);
    assert_int_equal(rv_task_release(setter), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

struct thread_sets_ctx {
    rv_future *f;
    atomic_int started;
    int rc;
    void *value;
    const char *msg_seen;
    char msg_copy[32];
};

static int await_pending_body(void *arg, void **res)
{
    struct thread_sets_ctx *c = arg;
    atomic_store(&c->started, 1);
    c->rc = rv_await(c->f, &c->value);
    const char *m = rv_future_message(c->f);
    if (m != NULL) {
        strncpy(c->msg_copy, m, sizeof c->msg_copy - 1);
        c->msg_seen = c->msg_copy;
    }
    return 0;
}

/* "Futures are thread-safe: any thread may complete ... them": a plain thread
 * completes a future that a parked task awaits.
 * (run_coroutine_threadsafe / wrap_future direction thread -> task) */
static void test_future_thread_completes_future_task_awaits(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct thread_sets_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.started, 0);
    c.f = new_future(rt);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, await_pending_body, &c, NULL, &t), 0);
    assert_true(wait_atomic(&c.started, 1));
    sleep_ms(5); /* most likely parked in rv_await by now */
    assert_int_equal(rv_future_set_result(c.f, IP(42)), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_int_equal(c.rc, 0);
    assert_int_equal(PI(c.value), 42);
    assert_int_equal(rv_task_release(t), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

/* rv_await: returns "the error code when finished with an error"; the message
 * travels with it. (test_exception via await) */
static void test_future_await_exception(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct thread_sets_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.started, 0);
    c.f = new_future(rt);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, await_pending_body, &c, NULL, &t), 0);
    assert_true(wait_atomic(&c.started, 1));
    assert_int_equal(rv_future_set_exception(c.f, -EIO, "boom"), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_int_equal(c.rc, -EIO);
    assert_non_null(c.msg_seen);
    assert_string_equal(c.msg_seen, "boom");
    assert_int_equal(rv_task_release(t), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

/* rv_await: returns "-ECANCELED when cancelled" - a future cancelled by a
 * plain thread; the awaiting task itself is not cancelled (it returned 0). */
static void test_future_await_cancelled(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct thread_sets_ctx c;
    memset(&c, 0, sizeof c);
    atomic_init(&c.started, 0);
    c.f = new_future(rt);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, await_pending_body, &c, NULL, &t), 0);
    assert_true(wait_atomic(&c.started, 1));
    assert_int_equal(rv_future_cancel(c.f, "stop"), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_int_equal(c.rc, -ECANCELED);
    assert_non_null(c.msg_seen);
    assert_string_equal(c.msg_seen, "stop");
    assert_false(rv_future_cancelled(rv_task_future(t)));
    assert_int_equal(rv_task_release(t), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Blocking waits                                                             */

/* rv_future_wait: "0: just look ... or -ETIMEDOUT"; then "what
 * rv_future_result would" once done. */
static void test_future_wait_timeout_zero(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    void *r = NULL;
    assert_int_equal(rv_future_wait(f, 0, &r), -ETIMEDOUT);
    assert_false(rv_future_done(f));
    assert_int_equal(rv_future_set_result(f, IP(4)), 0);
    assert_int_equal(rv_future_wait(f, 0, &r), 0);
    assert_int_equal(PI(r), 4);
    assert_int_equal(rv_future_wait(f, -1, NULL), 0);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_wait: "Block the calling plain thread until f is done or
 * timeout_ns passes ... -ETIMEDOUT"; not earlier than asked, and the timeout
 * does not finish f. (concurrent.futures result(timeout) -> TimeoutError) */
static void test_future_wait_short_timeout(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    int64_t t0 = rv_now();
    assert_int_equal(rv_future_wait(f, 20 * MS, NULL), -ETIMEDOUT);
    assert_true(rv_now() - t0 >= 20 * MS);
    assert_false(rv_future_done(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* rv_future_wait: returns "what rv_future_result would" for a done future:
 * the error code, -ECANCELED. */
static void test_future_wait_done_future(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *failed = new_future(rt);
    rv_future *cancelled = new_future(rt);
    assert_int_equal(rv_future_set_exception(failed, -EPIPE, NULL), 0);
    assert_int_equal(rv_future_cancel(cancelled, NULL), 0);
    assert_int_equal(rv_future_wait(failed, 0, NULL), -EPIPE);
    assert_int_equal(rv_future_wait(failed, WAIT_NS, NULL), -EPIPE);
    assert_int_equal(rv_future_wait(cancelled, 0, NULL), -ECANCELED);
    assert_int_equal(rv_future_wait(cancelled, -1, NULL), -ECANCELED);
    assert_int_equal(rv_future_release(failed), 0);
    assert_int_equal(rv_future_release(cancelled), 0);
    free_runtime(rt);
}

struct task_sets_ctx {
    rv_future *f;
    int sleep_rc, set_rc;
};

static int task_sets_body(void *arg, void **res)
{
    struct task_sets_ctx *c = arg;
    c->sleep_rc = rv_sleep(10 * MS);
    c->set_rc = rv_future_set_result(c->f, IP(99));
    return 0;
}

/* rv_future_wait: a plain thread blocks (negative timeout: "no limit") on a
 * future that a task completes. (run_coroutine_threadsafe: future.result()) */
static void test_future_task_completes_future_thread_waits(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct task_sets_ctx c = {0};
    c.f = new_future(rt);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, task_sets_body, &c, NULL, &t), 0);
    void *r = NULL;
    assert_int_equal(rv_future_wait(c.f, -1, &r), 0);
    assert_int_equal(PI(r), 99);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_int_equal(c.sleep_rc, 0);
    assert_int_equal(c.set_rc, 0);
    assert_int_equal(rv_task_release(t), 0);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

struct deadlk_ctx {
    rv_future *f;
    atomic_int rc;
    atomic_int ran;
};

static void deadlk_cb(void *arg)
{
    struct deadlk_ctx *c = arg;
    /* A bounded timeout, so that a wrong implementation returns rather than
     * hanging the worker forever. */
    atomic_store(&c->rc, rv_future_wait(c->f, 10 * MS, NULL));
    atomic_store(&c->ran, 1);
}

/* rv_future_wait: "On a worker thread outside a task it returns -EDEADLK". */
static void test_future_wait_on_worker_deadlocks(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct deadlk_ctx c;
    c.f = new_future(rt);
    atomic_init(&c.rc, 1);
    atomic_init(&c.ran, 0);
    assert_int_equal(rv_call_soon(rt, deadlk_cb, &c, NULL), 0);
    assert_true(wait_atomic(&c.ran, 1));
    assert_int_equal(atomic_load(&c.rc), -EDEADLK);
    assert_false(rv_future_done(c.f));
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

struct wait_in_task_ctx {
    rv_future *f;
    int rc, cancelling;
    int64_t elapsed;
};

static int wait_in_task_body(void *arg, void **res)
{
    struct wait_in_task_ctx *c = arg;
    int64_t t0 = rv_now();
    c->rc = rv_future_wait(c->f, 10 * MS, NULL);
    c->elapsed = rv_now() - t0;
    c->cancelling = rv_task_cancelling(rv_current_task());
    return 0;
}

/* rv_future_wait: "inside a task it suspends the task like rv_await (with the
 * timeout, which does not cancel f)". */
static void test_future_wait_in_task_timeout(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct wait_in_task_ctx c = {0};
    c.f = new_future(rt);
    assert_int_equal(run_task(rt, wait_in_task_body, &c, NULL), 0);
    assert_int_equal(c.rc, -ETIMEDOUT);
    assert_true(c.elapsed >= 10 * MS);
    assert_int_equal(c.cancelling, 0);
    assert_false(rv_future_done(c.f));
    assert_false(rv_future_cancelled(c.f));
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Bad input                                                                  */

static void never_cb(rv_future *f, void *arg)
{
    (void)f;
    atomic_store((atomic_int *)arg, 1);
}

/* "A NULL handle returns -EINVAL; it never crashes"; rv_future_done /
 * rv_future_cancelled: "False for NULL"; rv_future_ref: "NULL when f is
 * NULL"; a NULL callback is invalid input. */
static void test_future_null_handles(void **state)
{
    (void)state;
    void *r = NULL;
    atomic_int flag;
    atomic_init(&flag, 0);
    assert_int_equal(rv_future_set_result(NULL, IP(1)), -EINVAL);
    assert_int_equal(rv_future_set_exception(NULL, -EIO, "x"), -EINVAL);
    assert_int_equal(rv_future_cancel(NULL, "x"), -EINVAL);
    assert_false(rv_future_done(NULL));
    assert_false(rv_future_cancelled(NULL));
    assert_int_equal(rv_future_result(NULL, &r), -EINVAL);
    assert_int_equal(rv_future_exception(NULL), -EINVAL);
    assert_null(rv_future_message(NULL));
    assert_int_equal(rv_future_add_done_callback(NULL, never_cb, &flag), -EINVAL);
    assert_int_equal(rv_future_remove_done_callback(NULL, never_cb, &flag), -EINVAL);
    assert_null(rv_future_ref(NULL));
    assert_int_equal(rv_future_release(NULL), -EINVAL);
    assert_int_equal(rv_future_wait(NULL, 0, &r), -EINVAL);
    assert_int_equal(rv_future_wait(NULL, WAIT_NS, &r), -EINVAL);

    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    assert_int_equal(rv_future_add_done_callback(f, NULL, &flag), -EINVAL);
    assert_int_equal(rv_future_set_result(f, NULL), 0);
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
    assert_int_equal(atomic_load(&flag), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_future_initial_state),
        cmocka_unit_test(test_future_new_without_runtime),
        cmocka_unit_test(test_future_new_in_task),
        cmocka_unit_test(test_future_result_before_done),
        cmocka_unit_test(test_future_exception_while_pending),
        cmocka_unit_test(test_future_result),
        cmocka_unit_test(test_future_set_result_twice),
        cmocka_unit_test(test_future_exception),
        cmocka_unit_test(test_future_exception_without_message),
        cmocka_unit_test(test_future_set_exception_invalid_code),
        cmocka_unit_test(test_future_cancel),
        cmocka_unit_test(test_future_cancel_message),
        cmocka_unit_test(test_future_set_result_race),
        cmocka_unit_test(test_future_ref_release),
        cmocka_unit_test(test_future_callbacks_invoked_on_set_result),
        cmocka_unit_test(test_future_callbacks_invoked_on_set_exception),
        cmocka_unit_test(test_future_callbacks_invoked_on_cancel),
        cmocka_unit_test(test_future_callbacks_from_plain_thread),
        cmocka_unit_test(test_future_add_done_callback_when_done),
        cmocka_unit_test(test_future_remove_done_callback),
        cmocka_unit_test(test_future_remove_done_callback_matches_arg),
        cmocka_unit_test(test_future_callbacks_remove_first_callback),
        cmocka_unit_test(test_future_callbacks_remove_first_and_second_callback),
        cmocka_unit_test(test_future_callbacks_remove_third_callback),
        cmocka_unit_test(test_future_remove_done_callback_after_scheduled),
        cmocka_unit_test(test_future_callbacks_mutated_during_invocation),
        cmocka_unit_test(test_future_await_done_future_does_not_suspend),
        cmocka_unit_test(test_future_await_twice),
        cmocka_unit_test(test_future_thread_completes_future_task_awaits),
        cmocka_unit_test(test_future_await_exception),
        cmocka_unit_test(test_future_await_cancelled),
        cmocka_unit_test(test_future_wait_timeout_zero),
        cmocka_unit_test(test_future_wait_short_timeout),
        cmocka_unit_test(test_future_wait_done_future),
        cmocka_unit_test(test_future_task_completes_future_thread_waits),
        cmocka_unit_test(test_future_wait_on_worker_deadlocks),
        cmocka_unit_test(test_future_wait_in_task_timeout),
        cmocka_unit_test(test_future_null_handles),
    };
    /* RV_TEST_FILTER=pattern runs only the matching tests (debugging). */
    const char *filter = getenv("RV_TEST_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
