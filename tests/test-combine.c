/* test-combine.c - include/ravel/combine.h: gather, wait, wait_for, shield,
 * as_completed, timeout scopes, TaskGroup and generators. Ports of CPython's
 * test_tasks.py (gather, wait, shield, as_completed), test_waitfor.py,
 * test_timeouts.py, test_taskgroups.py and test_asyncgen.py scenarios.
 *
 * Each test names, in the comment above it, the CPython test it ports and the
 * statement of combine.h it checks.
 *
 * cmocka is not thread-safe: tasks only record what they observe (plain fields
 * published by the end of the task that wrote them, or C11 atomics) and the
 * test thread asserts afterwards. Ordering-sensitive scenarios run a "main"
 * task on a 1-worker runtime, where a spawned task does not run until main
 * suspends; settle() lets everything that is ready run (callbacks, woken
 * tasks). Every wait of the test thread, and every wait of a task on
 * something that must end, has a deadline (WAIT_NS).
 *
 * Building blocks:
 * - struct kid: a configurable child task (await a gate, sleep, end with a
 *   code; when cancelled: clean up for a while, then end cancelled, with an
 *   error, or with a value).
 * - struct script: futures completed step by step by the main task while a
 *   second task runs one combinator (gather, wait or as_completed) over them;
 *   records after which step the combinator returned and what it returned.
 */
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

#include <ravel.h>

#include "test-scale.h"
#include "test-util.h"

#define LONG_SLEEP (10 * SEC)
#define UNSET 0x5a5a /* a code no call writes */

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */

/* Run fn as the main task of a fresh runtime with `workers` workers. */
static int run_main(unsigned workers, rv_task_fn fn, void *arg)
{
    rv_runtime *rt = new_runtime(workers);
    int rc = run_task(rt, fn, arg, NULL);
    free_runtime(rt);
    return rc;
}

/* In a task: let everything that is ready run. */
static int settle(void) { return rv_sleep(2 * MS); }

/* In a task: wait (WAIT_NS at most, without cancelling it) until f is done. */
static int finish(rv_future *f) { return rv_future_wait(f, WAIT_NS, NULL); }

/* Complete f: code 0 with result `value`, -ECANCELED by cancelling it, any
 * other code as its error. */
static int complete(rv_future *f, int code, intptr_t value)
{
    if (code == 0)
        return rv_future_set_result(f, IP(value));
    if (code == -ECANCELED)
        return rv_future_cancel(f, NULL);
    return rv_future_set_exception(f, code, NULL);
}

/* Test thread: assert got[i] == want[i], naming the index on a mismatch. */
static void expect_ints(const char *what, const int *got, const int *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i])
            print_message("%s[%zu]: got %d (%s), want %d (%s)\n", what, i, got[i],
                          rv_err_name(got[i]), want[i], rv_err_name(want[i]));
        assert_int_equal(got[i], want[i]);
    }
}

/* ------------------------------------------------------------------------- */
/* Kids: configurable child tasks                                             */

struct kid {
    rv_future *gate;  /* await this first (NULL: no) */
    int64_t sleep_ns; /* then sleep this long (0: no) */
    int rc;           /* then end with this code; 0: with result `value` */
    intptr_t value;
    int64_t cleanup_ns; /* when cancelled: sleep this long before ending */
    int cancel_rc;      /* when cancelled: end with this error (0: -ECANCELED) */
    bool suppress;      /* when cancelled: end with result `value` instead */
    atomic_int started, ended;
    int wait_rc;    /* what the gate or the sleep returned */
    int cleanup_rc; /* what the cleanup sleep returned */
    rv_task *task;
};

static int kid_body(void *arg, void **res)
{
    struct kid *k = arg;
    atomic_store(&k->started, 1);
    int rc = 0;
    if (k->gate != NULL)
        rc = rv_await(k->gate, NULL);
    if (rc == 0 && k->sleep_ns > 0)
        rc = rv_sleep(k->sleep_ns);
    k->wait_rc = rc;
    if (rc == -ECANCELED) {
        if (k->cleanup_ns > 0)
            k->cleanup_rc = rv_sleep(k->cleanup_ns);
        rc = k->suppress ? 0 : k->cancel_rc != 0 ? k->cancel_rc : -ECANCELED;
    } else {
        rc = k->rc;
    }
    if (rc == 0)
        *res = IP(k->value);
    atomic_store(&k->ended, 1);
    return rc;
}

static rv_future *kf(const struct kid *k) { return rv_task_future(k->task); }

/* In a task: spawn kids (in group g, or plain tasks when g is NULL). */
static int spawn_kids(rv_taskgroup *g, struct kid *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = g != NULL ? rv_taskgroup_spawn(g, kid_body, &k[i], NULL, &k[i].task)
                           : rv_spawn(NULL, kid_body, &k[i], NULL, &k[i].task);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* In a task: wait until every spawned kid has ended. */
static void finish_kids(struct kid *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (k[i].task != NULL)
            finish(kf(&k[i]));
}

static int count_done(const struct kid *k, size_t n)
{
    int done = 0;
    for (size_t i = 0; i < n; i++)
        done += k[i].task != NULL && rv_future_done(kf(&k[i]));
    return done;
}

/* Test thread: drop the kids' task handles. */
static void release_kids(struct kid *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (k[i].task != NULL)
            assert_int_equal(rv_task_release(k[i].task), 0);
        k[i].task = NULL;
    }
}

/* ------------------------------------------------------------------------- */
/* Scripts: one combinator over futures completed step by step               */

#define MAXF 8
#define NEVER 99 /* done_at: the combinator never returned */

enum op { OP_GATHER, OP_WAIT, OP_AS_COMPLETED };

enum step_flags {
    ENDS = 1,  /* the combinator must return after this step: wait for it */
    BATCH = 2, /* go on to the next step without letting anything run */
};

struct step {
    int idx;        /* which future */
    int code;       /* see complete() */
    intptr_t value; /* result when code is 0 */
    unsigned flags;
};

/* clang-format off */
#define SET_RESULT(i, v, fl) {.idx = (i), .code = 0, .value = (v), .flags = (fl)}
#define SET_ERROR(i, c, fl) {.idx = (i), .code = (c), .flags = (fl)}
#define CANCEL(i, fl) {.idx = (i), .code = -ECANCELED, .flags = (fl)}
/* clang-format on */

struct script {
    /* input */
    enum op op;
    size_t nfut;        /* futures made */
    int args[MAXF];     /* fs[] passed, as indices into the futures */
    size_t nargs;       /* 0: every future once, in order */
    unsigned flags;     /* gather */
    int64_t timeout_ns; /* wait, as_completed (0 in a script means none) */
    enum rv_return_when when;
    size_t npre; /* the first npre steps happen before the op starts */
    struct step steps[MAXF];
    size_t nsteps;
    /* observed */
    rv_future *f[MAXF];
    int step_rc[MAXF]; /* what completing each step returned */
    int done_at;       /* the step after which the op had returned (-1: before the
                          first; nsteps: on its own after the last; NEVER) */
    int rc;
    int64_t elapsed;
    bool fdone[MAXF], fcancelled[MAXF]; /* each future when the op returned */
    void *results[MAXF];                /* gather */
    int codes[MAXF];
    int done[MAXF], pending[MAXF]; /* wait, as future indices */
    size_t ndone, npending;
    bool partition_ok; /* every done[] future done, every pending[] one not */
    int order[MAXF];   /* as_completed: the futures in the order yielded */
    intptr_t order_val[MAXF];
    size_t norder;
    int rc_again, free_rc;
};

static int index_of(const struct script *s, const rv_future *f)
{
    for (size_t i = 0; i < s->nfut; i++)
        if (s->f[i] == f)
            return (int)i;
    return -1;
}

static void script_wait(struct script *s, rv_future *const fs[])
{
    rv_future *d[MAXF], *p[MAXF];
    int64_t timeout = s->timeout_ns != 0 ? s->timeout_ns : -1;
    s->rc = rv_wait(fs, s->nargs, timeout, s->when, d, &s->ndone, p, &s->npending);
    s->partition_ok = true;
    for (size_t i = 0; s->rc == 0 && i < s->ndone && i < MAXF; i++) {
        s->done[i] = index_of(s, d[i]);
        s->partition_ok &= rv_future_done(d[i]);
    }
    for (size_t i = 0; s->rc == 0 && i < s->npending && i < MAXF; i++) {
        s->pending[i] = index_of(s, p[i]);
        s->partition_ok &= !rv_future_done(p[i]);
    }
}

static void script_as_completed(struct script *s, rv_future *const fs[])
{
    rv_as_completed *it = NULL;
    int64_t timeout = s->timeout_ns != 0 ? s->timeout_ns : -1;
    s->rc = rv_as_completed_new(fs, s->nargs, timeout, &it);
    if (s->rc < 0)
        return;
    rv_future *next = NULL;
    while (s->norder < MAXF && (s->rc = rv_as_completed_next(it, &next)) == 0) {
        void *v = NULL;
        rv_future_result(next, &v);
        s->order[s->norder] = index_of(s, next);
        s->order_val[s->norder++] = PI(v);
    }
    s->rc_again = rv_as_completed_next(it, &next);
    s->free_rc = rv_as_completed_free(it);
}

/* The task running the combinator. */
static int script_op(void *arg, void **res)
{
    struct script *s = arg;
    rv_future *fs[MAXF];
    for (size_t i = 0; i < s->nargs; i++)
        fs[i] = s->f[s->args[i]];
    int64_t t0 = rv_now();
    switch (s->op) {
    case OP_GATHER:
        s->rc = rv_gather(fs, s->nargs, s->flags, s->results, s->codes);
        break;
    case OP_WAIT:
        script_wait(s, fs);
        break;
    case OP_AS_COMPLETED:
        script_as_completed(s, fs);
        break;
    }
    s->elapsed = rv_now() - t0;
    for (size_t i = 0; i < s->nfut; i++) {
        s->fdone[i] = rv_future_done(s->f[i]);
        s->fcancelled[i] = rv_future_cancelled(s->f[i]);
    }
    return 0;
}

static int script_step(struct script *s, size_t k)
{
    const struct step *st = &s->steps[k];
    return s->step_rc[k] = complete(s->f[st->idx], st->code, st->value);
}

static int script_main(void *arg, void **res)
{
    struct script *s = arg;
    for (size_t i = 0; i < s->nfut; i++) {
        int rc = rv_future_new(NULL, &s->f[i]);
        if (rc < 0)
            return rc;
    }
    size_t k = 0;
    for (; k < s->npre; k++)
        script_step(s, k);
    rv_task *t = NULL;
    int rc = rv_spawn(NULL, script_op, s, NULL, &t);
    if (rc < 0)
        return rc;
    rv_future *op = rv_task_future(t);
    settle(); /* the op starts and parks */
    s->done_at = rv_future_done(op) ? -1 : NEVER;
    for (; k < s->nsteps; k++) {
        script_step(s, k);
        if ((s->steps[k].flags & BATCH) || s->done_at != NEVER)
            continue;
        if (s->steps[k].flags & ENDS)
            finish(op);
        else
            settle();
        if (rv_future_done(op))
            s->done_at = (int)k;
    }
    if (s->done_at == NEVER) {
        finish(op); /* a timeout ends it on its own */
        if (rv_future_done(op))
            s->done_at = (int)s->nsteps;
        else
            rv_task_cancel(t, NULL);
        finish(op);
    }
    settle(); /* what an early return left behind runs while the futures live */
    rv_task_release(t);
    for (size_t i = 0; i < s->nfut; i++)
        rv_future_release(s->f[i]);
    return 0;
}

/* Test thread: run the script on a 1-worker runtime. Every step must have
 * completed a pending future: none of these combinators cancels or completes
 * the futures it was given (gather's early return leaves the others running,
 * wait: "Nothing is cancelled"). */
static void run_script(struct script *s)
{
    if (s->nargs == 0) {
        s->nargs = s->nfut;
        for (size_t i = 0; i < s->nfut; i++)
            s->args[i] = (int)i;
    }
    for (size_t i = 0; i < MAXF; i++) {
        s->codes[i] = UNSET;
        s->results[i] = IP(-1);
    }
    assert_int_equal(run_main(1, script_main, s), 0);
    int zeros[MAXF] = {0};
    expect_ints("step_rc", s->step_rc, zeros, s->nsteps);
}

/* Test thread: gather returned `rc` after step `done_at` with these codes,
 * and values[i] for each child that succeeded. */
static void expect_gather(const struct script *s, int done_at, int rc, const int *codes,
                          const intptr_t *values)
{
    assert_int_equal(s->done_at, done_at);
    assert_int_equal(s->rc, rc);
    expect_ints("codes", s->codes, codes, s->nargs);
    for (size_t i = 0; i < s->nargs; i++)
        if (codes[i] == 0)
            assert_int_equal(PI(s->results[i]), values[i]);
}

/* Test thread: wait returned 0 after step `done_at` with this partition. */
static void expect_wait(const struct script *s, int done_at, const int *done, size_t ndone,
                        const int *pending, size_t npending)
{
    assert_int_equal(s->done_at, done_at);
    assert_int_equal(s->rc, 0);
    assert_int_equal(s->ndone, ndone);
    assert_int_equal(s->npending, npending);
    expect_ints("done", s->done, done, ndone);
    expect_ints("pending", s->pending, pending, npending);
    assert_true(s->partition_ok);
    for (size_t i = 0; i < s->nfut; i++)
        if (!s->fdone[i])
            assert_false(s->fcancelled[i]);
}

/* ------------------------------------------------------------------------- */
/* gather                                                                     */

/* GatherTestsBase.test_success (_check_success, both return_exceptions
 * values): "results[i] receives fs[i]'s result": [2, 1, 3] in argument order
 * whatever the completion order; "returns 0 once every child succeeded", not
 * before. */
static void test_gather_success(void **state)
{
    (void)state;
    const unsigned flags[] = {0, RV_RETURN_EXCEPTIONS};
    for (size_t i = 0; i < 2; i++) {
        struct script s = {
            .op = OP_GATHER,
            .nfut = 3,
            .flags = flags[i],
            .nsteps = 3,
            .steps = {SET_RESULT(1, 1, 0), SET_RESULT(0, 2, 0), SET_RESULT(2, 3, ENDS)},
        };
        run_script(&s);
        expect_gather(&s, 2, 0, (int[]){0, 0, 0}, (intptr_t[]){2, 1, 3});
    }
}

/* GatherTestsBase.test_one_exception: "returns ... the first error ... as
 * soon as it happens; the other children keep running"; "children still
 * running when gather returns early get -EAGAIN there" (and the later
 * completions write nothing there: the steps after it still succeed). */
static void test_gather_one_exception(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_GATHER,
        .nfut = 5,
        .nsteps = 5,
        .steps = {SET_RESULT(0, 1, 0), SET_ERROR(1, -EIO, ENDS), SET_RESULT(2, 3, 0), CANCEL(3, 0),
                  SET_ERROR(4, -EPIPE, 0)},
    };
    run_script(&s);
    expect_gather(&s, 1, -EIO, (int[]){0, -EIO, -EAGAIN, -EAGAIN, -EAGAIN}, (intptr_t[]){1});
}

struct gather_tasks_ctx {
    struct kid kids[3];
    int rc, codes[3], late_rc;
    void *results[3], *late_value;
    bool slow_done_at_return, slow_cancelled;
};

static int gather_keeps_running_main(void *arg, void **res)
{
    struct gather_tasks_ctx *c = arg;
    int rc = spawn_kids(NULL, c->kids, 3);
    if (rc < 0)
        return rc;
    rv_future *fs[3] = {kf(&c->kids[0]), kf(&c->kids[1]), kf(&c->kids[2])};
    c->rc = rv_gather(fs, 3, 0, c->results, c->codes);
    c->slow_done_at_return = rv_future_done(fs[2]);
    rv_future_set_result(c->kids[2].gate, NULL);
    c->late_rc = finish(fs[2]);
    rv_future_result(fs[2], &c->late_value);
    c->slow_cancelled = rv_future_cancelled(fs[2]);
    finish_kids(c->kids, 3);
    return 0;
}

/* GatherTestsBase.test_one_exception with tasks (CoroutineGatherTests): "the
 * first error ... as soon as it happens; the other children keep running": a
 * child still waiting when a sibling fails is not cancelled and ends with
 * its own result later. */
static void test_gather_one_exception_others_keep_running(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct gather_tasks_ctx c = {
        .kids = {{.sleep_ns = 1 * MS, .value = 1},
                 {.sleep_ns = 20 * MS, .rc = -EIO},
                 {.gate = new_future(rt), .value = 3}},
    };
    assert_int_equal(run_task(rt, gather_keeps_running_main, &c, NULL), 0);
    assert_int_equal(c.rc, -EIO);
    expect_ints("codes", c.codes, (int[]){0, -EIO, -EAGAIN}, 3);
    assert_int_equal(PI(c.results[0]), 1);
    assert_false(c.slow_done_at_return);
    assert_int_equal(c.late_rc, 0);
    assert_int_equal(PI(c.late_value), 3);
    assert_false(c.slow_cancelled);
    assert_int_equal(c.kids[2].wait_rc, 0);
    assert_int_equal(rv_future_release(c.kids[2].gate), 0);
    release_kids(c.kids, 3);
    free_runtime(rt);
}

/* GatherTestsBase.test_return_exceptions: "With RV_RETURN_EXCEPTIONS: returns
 * 0 once every child is done, whatever their outcome", codes[i] holding each
 * child's error in place. */
static void test_gather_return_exceptions(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_GATHER,
        .nfut = 4,
        .flags = RV_RETURN_EXCEPTIONS,
        .nsteps = 4,
        .steps = {SET_RESULT(1, 1, 0), SET_ERROR(2, -EIO, 0), SET_RESULT(0, 3, 0),
                  SET_ERROR(3, -EPIPE, ENDS)},
    };
    run_script(&s);
    expect_gather(&s, 3, 0, (int[]){0, 0, -EIO, -EPIPE}, (intptr_t[]){3, 1});
}

/* FutureGatherTests.test_one_cancellation: "a cancelled child counts as
 * -ECANCELED": gather returns -ECANCELED at once, though nobody cancelled the
 * gathering task (its cancel count stays 0). */
static void test_gather_one_cancellation(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_GATHER,
        .nfut = 5,
        .nsteps = 5,
        .steps = {SET_RESULT(0, 1, 0), CANCEL(1, ENDS), SET_RESULT(2, 3, 0), CANCEL(3, 0),
                  SET_ERROR(4, -EIO, 0)},
    };
    run_script(&s);
    expect_gather(&s, 1, -ECANCELED, (int[]){0, -ECANCELED, -EAGAIN, -EAGAIN, -EAGAIN},
                  (intptr_t[]){1});
}

/* FutureGatherTests.test_result_exception_one_cancellation: with
 * RV_RETURN_EXCEPTIONS a cancelled child's code is -ECANCELED, in place. */
static void test_gather_return_exceptions_one_cancellation(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_GATHER,
        .nfut = 3,
        .flags = RV_RETURN_EXCEPTIONS,
        .nsteps = 3,
        .steps = {SET_RESULT(0, 42, 0), CANCEL(1, 0), SET_ERROR(2, -EIO, ENDS)},
    };
    run_script(&s);
    expect_gather(&s, 2, 0, (int[]){0, -ECANCELED, -EIO}, (intptr_t[]){42});
}

/* CoroutineGatherTests.test_duplicate_coroutines: "the same one may appear
 * twice": each position gets the shared future's result. */
static void test_gather_duplicate_futures(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_GATHER,
        .nfut = 2,
        .args = {0, 0, 1, 0},
        .nargs = 4,
        .nsteps = 2,
        .steps = {SET_RESULT(1, 9, 0), SET_RESULT(0, 7, ENDS)},
    };
    run_script(&s);
    expect_gather(&s, 1, 0, (int[]){0, 0, 0, 0}, (intptr_t[]){7, 7, 9, 7});
}

struct broadcast_ctx {
    struct kid kids[2];
    rv_task *gatherer;
    int rc, codes[2], proof, kids_done_at_return, cancel_rc, cancelling;
    void *results[2];
    bool gatherer_cancelled;
};

static int broadcast_gatherer(void *arg, void **res)
{
    struct broadcast_ctx *c = arg;
    rv_future *fs[2] = {kf(&c->kids[0]), kf(&c->kids[1])};
    c->rc = rv_gather(fs, 2, 0, c->results, c->codes);
    c->kids_done_at_return = count_done(c->kids, 2);
    if (c->rc == 0)
        c->proof += 100;
    return c->rc;
}

static int broadcast_main(void *arg, void **res)
{
    struct broadcast_ctx *c = arg;
    int rc = spawn_kids(NULL, c->kids, 2);
    if (rc == 0)
        rc = rv_spawn(NULL, broadcast_gatherer, c, NULL, &c->gatherer);
    if (rc < 0)
        return rc;
    settle(); /* the kids park, the gatherer waits in gather */
    c->cancel_rc = rv_task_cancel(c->gatherer, NULL);
    finish(rv_task_future(c->gatherer));
    c->gatherer_cancelled = rv_future_cancelled(rv_task_future(c->gatherer));
    finish_kids(c->kids, 2);
    return 0;
}

/* CoroutineGatherTests.test_cancellation_broadcast: "When the calling task is
 * cancelled, every child is cancelled, gather waits until all of them are
 * done, and returns -ECANCELED" - also a child that takes 20 ms to clean up. */
static void test_gather_cancellation_broadcast(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *waiter = new_future(rt);
    struct broadcast_ctx c = {
        .kids = {{.gate = waiter}, {.sleep_ns = LONG_SLEEP, .cleanup_ns = 20 * MS}},
    };
    assert_int_equal(run_task(rt, broadcast_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.rc, -ECANCELED);
    assert_int_equal(c.kids_done_at_return, 2);
    expect_ints("codes", c.codes, (int[]){-ECANCELED, -ECANCELED}, 2);
    assert_true(c.gatherer_cancelled);
    assert_true(rv_future_cancelled(waiter));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c.kids[i].wait_rc, -ECANCELED);
        assert_true(rv_future_cancelled(kf(&c.kids[i])));
    }
    assert_int_equal(c.kids[1].cleanup_rc, 0);
    assert_int_equal(c.proof, 0);
    assert_int_equal(rv_task_release(c.gatherer), 0);
    assert_int_equal(rv_future_release(waiter), 0);
    release_kids(c.kids, 2);
    free_runtime(rt);
}

struct args_ctx {
    rv_future *f, *g;
    int empty_rc, empty_null_rc, null_fs_rc, null_elem_rc, flags_rc;
    int wait_empty_rc, wait_null_elem_rc, wait_bad_when_rc[2], wait_null_arrays_rc;
    int wait_for_null_rc, ac_null_elem_rc, gen_next_null_rc, gen_close_null_rc;
};

static int bad_args_main(void *arg, void **res)
{
    struct args_ctx *c = arg;
    rv_future *fs[2] = {c->f, NULL};
    rv_future *one[1] = {c->f};
    int codes[2];
    void *results[2];
    rv_future *d[2], *p[2];
    size_t nd, np;
    rv_as_completed *it = NULL;
    c->empty_rc = rv_gather(fs, 0, 0, results, codes);
    c->empty_null_rc = rv_gather(NULL, 0, 0, NULL, NULL);
    c->null_fs_rc = rv_gather(NULL, 1, 0, results, codes);
    c->null_elem_rc = rv_gather(fs, 2, 0, results, codes);
    c->flags_rc = rv_gather(one, 1, 2u, results, codes);
    c->wait_empty_rc = rv_wait(one, 0, -1, RV_ALL_COMPLETED, d, &nd, p, &np);
    c->wait_null_elem_rc = rv_wait(fs, 2, -1, RV_ALL_COMPLETED, d, &nd, p, &np);
    c->wait_bad_when_rc[0] = rv_wait(one, 1, -1, (enum rv_return_when)0, d, &nd, p, &np);
    c->wait_bad_when_rc[1] = rv_wait(one, 1, -1, (enum rv_return_when)4, d, &nd, p, &np);
    c->wait_null_arrays_rc = rv_wait(one, 1, -1, RV_ALL_COMPLETED, NULL, NULL, NULL, NULL);
    c->wait_for_null_rc = rv_wait_for(NULL, SEC, NULL);
    c->ac_null_elem_rc = rv_as_completed_new(fs, 2, -1, &it);
    if (c->ac_null_elem_rc == 0)
        rv_as_completed_free(it);
    c->gen_next_null_rc = rv_gen_next(NULL, NULL);
    c->gen_close_null_rc = rv_gen_close(NULL);
    return 0;
}

/* GatherTestsBase.test_constructor_empty_sequence: "n == 0 returns 0 at
 * once"; gather: "-EINVAL for a NULL fs (n > 0), a NULL element or unknown
 * flags"; test_wait ValueError cases: rv_wait "-EINVAL for n == 0, a NULL
 * element or a bad return_when"; "each array ... may be NULL (with its
 * count)"; ravel.h: "A NULL handle returns -EINVAL". All from inside a task. */
static void test_combine_bad_arguments(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct args_ctx c = {.f = new_future(rt)};
    assert_int_equal(rv_future_set_result(c.f, IP(1)), 0);
    assert_int_equal(run_task(rt, bad_args_main, &c, NULL), 0);
    assert_int_equal(c.empty_rc, 0);
    assert_int_equal(c.empty_null_rc, 0);
    assert_int_equal(c.null_fs_rc, -EINVAL);
    assert_int_equal(c.null_elem_rc, -EINVAL);
    assert_int_equal(c.flags_rc, -EINVAL);
    assert_int_equal(c.wait_empty_rc, -EINVAL);
    assert_int_equal(c.wait_null_elem_rc, -EINVAL);
    assert_int_equal(c.wait_bad_when_rc[0], -EINVAL);
    assert_int_equal(c.wait_bad_when_rc[1], -EINVAL);
    assert_int_equal(c.wait_null_arrays_rc, 0);
    assert_int_equal(c.wait_for_null_rc, -EINVAL);
    assert_int_equal(c.ac_null_elem_rc, -EINVAL);
    assert_int_equal(c.gen_next_null_rc, -EINVAL);
    assert_int_equal(c.gen_close_null_rc, -EINVAL);
    assert_int_equal(rv_future_release(c.f), 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* wait                                                                       */

/* test_wait_first_completed: returns once one future is done; done = {b},
 * pending = {a}; "Nothing is cancelled" (a is completed later by the script). */
static void test_wait_first_completed(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_WAIT,
        .when = RV_FIRST_COMPLETED,
        .nfut = 2,
        .args = {1, 0},
        .nargs = 2,
        .nsteps = 2,
        .steps = {SET_RESULT(1, 0, ENDS), SET_RESULT(0, 0, 0)},
    };
    run_script(&s);
    expect_wait(&s, 0, (int[]){1}, 1, (int[]){0}, 1);
}

/* test_wait_first_exception: "an error" already present when wait starts:
 * returns at once with done = {b}, pending = {a}. */
static void test_wait_first_exception(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_WAIT,
        .when = RV_FIRST_EXCEPTION,
        .nfut = 2,
        .args = {1, 0},
        .nargs = 2,
        .npre = 1,
        .nsteps = 2,
        .steps = {SET_ERROR(1, -EIO, 0), SET_RESULT(0, 0, 0)},
    };
    run_script(&s);
    expect_wait(&s, -1, (int[]){1}, 1, (int[]){0}, 1);
}

/* test_wait_first_exception_in_wait: RV_FIRST_EXCEPTION = "an error; a
 * cancelled future does not count" (nor does a result): wait returns only at
 * the error, with the cancelled and the finished futures in done[]. */
static void test_wait_first_exception_in_wait(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_WAIT,
        .when = RV_FIRST_EXCEPTION,
        .nfut = 4,
        .nsteps = 4,
        .steps = {CANCEL(0, 0), SET_RESULT(1, 1, 0), SET_ERROR(2, -EIO, ENDS), SET_RESULT(3, 4, 0)},
    };
    run_script(&s);
    expect_wait(&s, 2, (int[]){0, 1, 2}, 3, (int[]){3}, 1);
}

/* test_wait / test_wait_with_exception: RV_ALL_COMPLETED returns only when
 * every future is done, whatever the outcome; done[] is "in the order of
 * first appearance" in fs. */
static void test_wait_all_completed(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_WAIT,
        .when = RV_ALL_COMPLETED,
        .nfut = 3,
        .args = {1, 0, 2},
        .nargs = 3,
        .nsteps = 3,
        .steps = {SET_RESULT(1, 1, 0), SET_ERROR(0, -EIO, 0), CANCEL(2, ENDS)},
    };
    run_script(&s);
    expect_wait(&s, 2, (int[]){1, 0, 2}, 3, NULL, 0);
}

/* test_wait_with_timeout: "or timeout_ns passes ... A timeout is not an
 * error": returns 0 after the timeout, with the unfinished future in
 * pending[], not cancelled. */
static void test_wait_with_timeout(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_WAIT,
        .when = RV_ALL_COMPLETED,
        .timeout_ns = 50 * MS,
        .nfut = 2,
        .args = {1, 0},
        .nargs = 2,
        .nsteps = 1,
        .steps = {SET_RESULT(0, 1, 0)},
    };
    run_script(&s);
    expect_wait(&s, 1, (int[]){0}, 1, (int[]){1}, 1);
    assert_true(s.elapsed >= 50 * MS);
    assert_true(s.elapsed < WAIT_NS);
}

/* test_wait_duplicate_coroutines: "Duplicates count once", in done[] and in
 * pending[]. */
static void test_wait_duplicates(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_WAIT,
        .when = RV_FIRST_COMPLETED,
        .nfut = 3,
        .args = {0, 1, 0, 1, 2},
        .nargs = 5,
        .nsteps = 3,
        .steps = {SET_RESULT(1, 1, ENDS), SET_RESULT(0, 0, 0), SET_RESULT(2, 0, 0)},
    };
    run_script(&s);
    expect_wait(&s, 0, (int[]){1}, 1, (int[]){0, 2}, 2);
}

/* test_wait_really_done: "The distinct futures that are done go to done[]":
 * a future that finished after the one that woke wait, but before wait
 * returned, is in done[], not pending[]. */
static void test_wait_really_done(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_WAIT,
        .when = RV_FIRST_COMPLETED,
        .nfut = 2,
        .args = {1, 0},
        .nargs = 2,
        .nsteps = 2,
        .steps = {SET_RESULT(0, 0, BATCH), SET_RESULT(1, 0, ENDS)},
    };
    run_script(&s);
    expect_wait(&s, 1, (int[]){1, 0}, 2, NULL, 0);
}

struct wait_cancel_ctx {
    struct kid inner;
    rv_task *outer;
    int rc, proof, cancel_rc;
    bool inner_done_after_cancel;
};

static int wait_cancel_outer(void *arg, void **res)
{
    struct wait_cancel_ctx *c = arg;
    int rc = spawn_kids(NULL, &c->inner, 1);
    if (rc < 0)
        return rc;
    rv_future *fs[1] = {kf(&c->inner)};
    rv_future *d[1], *p[1];
    size_t nd, np;
    c->rc = rv_wait(fs, 1, -1, RV_ALL_COMPLETED, d, &nd, p, &np);
    if (c->rc == 0)
        c->proof += 100;
    return c->rc;
}

static int wait_cancel_main(void *arg, void **res)
{
    struct wait_cancel_ctx *c = arg;
    int rc = rv_spawn(NULL, wait_cancel_outer, c, NULL, &c->outer);
    if (rc < 0)
        return rc;
    if ((rc = task_wait_atomic(&c->inner.started, 1)) < 0)
        return rc;
    settle();
    c->cancel_rc = rv_task_cancel(c->outer, NULL);
    finish(rv_task_future(c->outer));
    settle();
    c->inner_done_after_cancel = rv_future_done(kf(&c->inner));
    rv_future_set_result(c->inner.gate, NULL);
    finish(kf(&c->inner));
    c->proof += c->inner.wait_rc == 0;
    return 0;
}

/* test_yield_wait_does_not_shield_cancel: rv_wait "-ECANCELED when the
 * calling task is cancelled (the futures are left alone)": the inner task
 * keeps running and finishes normally (proof == 1). */
static void test_wait_cancelled_leaves_futures_alone(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct wait_cancel_ctx c = {.inner = {.gate = new_future(rt)}};
    assert_int_equal(run_task(rt, wait_cancel_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.rc, -ECANCELED);
    assert_true(rv_future_cancelled(rv_task_future(c.outer)));
    assert_false(c.inner_done_after_cancel);
    assert_false(rv_future_cancelled(kf(&c.inner)));
    assert_int_equal(c.proof, 1);
    assert_int_equal(rv_task_release(c.outer), 0);
    assert_int_equal(rv_future_release(c.inner.gate), 0);
    release_kids(&c.inner, 1);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* wait_for                                                                   */

struct wf_ctx {
    /* input */
    struct kid kid; /* the awaited task, unless `plain` */
    bool plain;     /* await a plain future of the calling runtime instead */
    bool preset;    /* ... already finished with 7 */
    bool let_start; /* let the kid start before the call */
    int64_t timeout_ns;
    /* observed */
    rv_future *f;
    rv_task *waiter;
    int rc, cancel_rc;
    void *value;
    int64_t elapsed;
    bool f_done, f_cancelled, waiter_cancelled;
    int kid_ended; /* when wait_for returned */
};

static int wf_body(void *arg, void **res)
{
    struct wf_ctx *c = arg;
    int rc;
    if (c->plain) {
        if ((rc = rv_future_new(NULL, &c->f)) < 0)
            return rc;
        if (c->preset)
            rv_future_set_result(c->f, IP(7));
    } else {
        if ((rc = spawn_kids(NULL, &c->kid, 1)) < 0)
            return rc;
        c->f = kf(&c->kid);
        if (c->let_start)
            settle();
    }
    int64_t t0 = rv_now();
    c->rc = rv_wait_for(c->f, c->timeout_ns, &c->value);
    c->elapsed = rv_now() - t0;
    c->f_done = rv_future_done(c->f);
    c->f_cancelled = rv_future_cancelled(c->f);
    c->kid_ended = atomic_load(&c->kid.ended);
    finish(c->f);
    return c->rc == -ECANCELED ? -ECANCELED : 0;
}

/* The outer-cancellation scenarios: cancel the task sitting in wait_for. */
static int wf_cancel_main(void *arg, void **res)
{
    struct wf_ctx *c = arg;
    int rc = rv_spawn(NULL, wf_body, c, NULL, &c->waiter);
    if (rc < 0)
        return rc;
    if ((rc = task_wait_atomic(&c->kid.started, 1)) < 0)
        return rc;
    settle();
    c->cancel_rc = rv_task_cancel(c->waiter, NULL);
    finish(rv_task_future(c->waiter));
    c->waiter_cancelled = rv_future_cancelled(rv_task_future(c->waiter));
    return 0;
}

/* Test thread: run a wait_for scenario (main: wf_body or wf_cancel_main). */
static void run_wait_for(struct wf_ctx *c, unsigned workers, rv_task_fn main_fn)
{
    rv_runtime *rt = new_runtime(workers);
    if (c->kid.gate == NULL && main_fn == wf_cancel_main)
        c->kid.gate = new_future(rt);
    assert_int_equal(run_task(rt, main_fn, c, NULL), 0);
    if (c->plain)
        assert_int_equal(rv_future_release(c->f), 0);
    if (c->waiter != NULL)
        assert_int_equal(rv_task_release(c->waiter), 0);
    free_runtime(rt);
}

/* Test thread: wait_for timed out and the kid ended cancelled before it
 * returned. */
static void expect_wf_timeout(struct wf_ctx *c)
{
    assert_int_equal(c->rc, -ETIMEDOUT);
    assert_true(c->f_done);
    assert_true(c->f_cancelled);
    assert_int_equal(c->kid_ended, 1);
    assert_int_equal(c->kid.wait_rc, -ECANCELED);
    assert_true(c->elapsed >= c->timeout_ns);
    assert_true(c->elapsed < WAIT_NS);
    release_kids(&c->kid, 1);
}

/* test_wait_for_race_condition (the result path of test_wait_for): "await f
 * for at most timeout_ns": a result in time is returned, nothing cancelled. */
static void test_wait_for_result_in_time(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.sleep_ns = 10 * MS, .value = 42}, .timeout_ns = SEC};
    run_wait_for(&c, 1, wf_body);
    assert_int_equal(c.rc, 0);
    assert_int_equal(PI(c.value), 42);
    assert_false(c.f_cancelled);
    assert_true(c.elapsed < SEC);
    release_kids(&c.kid, 1);
}

/* test_wait_for: "On timeout f is cancelled and the call waits until f has
 * finished cancelling, then returns -ETIMEDOUT" (foo_running is False). */
static void test_wait_for(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.sleep_ns = LONG_SLEEP}, .timeout_ns = 50 * MS};
    run_wait_for(&c, 1, wf_body);
    expect_wf_timeout(&c);
}

/* test_wait_for_with_global_loop: the same on the calling thread's runtime
 * (rv_spawn(NULL, ...)) with 2 workers: the inner task runs on another
 * thread. */
static void test_wait_for_with_global_loop(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.sleep_ns = 200 * MS}, .timeout_ns = 10 * MS};
    run_wait_for(&c, 2, wf_body);
    expect_wf_timeout(&c);
}

/* test_wait_for_waits_for_task_cancellation (bpo-32751): "waits until f has
 * finished cancelling": an inner task that sleeps 30 ms in its cancellation
 * handling has ended (task_done) when -ETIMEDOUT comes back. */
static void test_wait_for_waits_for_task_cancellation(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.sleep_ns = LONG_SLEEP, .cleanup_ns = 30 * MS},
                       .timeout_ns = 10 * MS};
    run_wait_for(&c, 1, wf_body);
    assert_int_equal(c.kid.cleanup_rc, 0);
    assert_true(c.elapsed >= 40 * MS);
    expect_wf_timeout(&c);
}

/* test_wait_for_waits_for_task_cancellation_w_timeout_0: "timeout 0 on a
 * pending f cancels it at once", and still waits for its cleanup. */
static void test_wait_for_waits_for_task_cancellation_w_timeout_0(void **state)
{
    (void)state;
    struct wf_ctx c = {
        .kid = {.sleep_ns = LONG_SLEEP, .cleanup_ns = 20 * MS}, .let_start = true, .timeout_ns = 0};
    run_wait_for(&c, 1, wf_body);
    assert_int_equal(c.kid.cleanup_rc, 0);
    assert_true(c.elapsed >= 20 * MS);
    expect_wf_timeout(&c);
}

/* test_wait_for_timeout_less_then_0_or_0_coroutine_do_not_started: timeout 0
 * on a task that has not run yet: -ETIMEDOUT, the task cancelled without
 * running (foo_started is False). */
static void test_wait_for_timeout_0_task_not_started(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.value = 1}, .timeout_ns = 0};
    run_wait_for(&c, 1, wf_body);
    assert_int_equal(c.rc, -ETIMEDOUT);
    assert_true(c.f_done);
    assert_true(c.f_cancelled);
    assert_int_equal(atomic_load(&c.kid.started), 0);
    assert_true(c.elapsed < SEC);
    release_kids(&c.kid, 1);
}

/* test_wait_for_timeout_less_then_0_or_0_future_done: timeout 0 on a done
 * future returns its result. */
static void test_wait_for_timeout_0_future_done(void **state)
{
    (void)state;
    struct wf_ctx c = {.plain = true, .preset = true, .timeout_ns = 0};
    run_wait_for(&c, 1, wf_body);
    assert_int_equal(c.rc, 0);
    assert_int_equal(PI(c.value), 7);
    assert_false(c.f_cancelled);
}

/* test_wait_for_timeout_less_then_0_or_0 (a plain future): "timeout 0 on a
 * pending f cancels it at once": -ETIMEDOUT, f cancelled. */
static void test_wait_for_timeout_0_pending_future(void **state)
{
    (void)state;
    struct wf_ctx c = {.plain = true, .timeout_ns = 0};
    run_wait_for(&c, 1, wf_body);
    assert_int_equal(c.rc, -ETIMEDOUT);
    assert_true(c.f_cancelled);
    assert_true(c.elapsed < SEC);
}

/* test_wait_for_reraises_exception_during_cancellation: "if f ends with ...
 * an error anyway, that is returned instead". */
static void test_wait_for_reraises_exception_during_cancellation(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.sleep_ns = LONG_SLEEP, .cancel_rc = -EIO}, .timeout_ns = 10 * MS};
    run_wait_for(&c, 1, wf_body);
    assert_int_equal(c.rc, -EIO);
    assert_int_equal(c.kid_ended, 1);
    assert_int_equal(c.kid.wait_rc, -ECANCELED);
    release_kids(&c.kid, 1);
}

/* test_wait_for_cancel_suppressed (gh-86296) and
 * test_wait_for_cancellation_race_condition: "if f ends with a result ...
 * anyway, that is returned instead, as asyncio 3.12". */
static void test_wait_for_cancel_suppressed(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.sleep_ns = LONG_SLEEP, .suppress = true, .value = 42},
                       .timeout_ns = 10 * MS};
    run_wait_for(&c, 1, wf_body);
    assert_int_equal(c.rc, 0);
    assert_int_equal(PI(c.value), 42);
    assert_false(c.f_cancelled);
    assert_int_equal(c.kid.wait_rc, -ECANCELED);
    release_kids(&c.kid, 1);
}

/* Test thread: the waiter was cancelled while in wait_for. */
static void expect_wf_cancelled(struct wf_ctx *c)
{
    assert_int_equal(c->cancel_rc, 0);
    assert_int_equal(c->rc, -ECANCELED);
    assert_true(c->waiter_cancelled);
    assert_true(c->f_done);
    assert_true(c->f_cancelled);
    assert_int_equal(c->kid_ended, 1);
    assert_int_equal(c->kid.cleanup_rc, 0);
    assert_true(rv_future_cancelled(c->kid.gate));
    assert_int_equal(rv_future_release(c->kid.gate), 0);
    release_kids(&c->kid, 1);
}

/* test_cancel_wait_for (Python issue #23219): "When the calling task is
 * cancelled, f is cancelled too and -ECANCELED is returned after f is done"
 * (the inner task takes 10 ms to clean up). */
static void test_cancel_wait_for(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.cleanup_ns = 10 * MS}, .timeout_ns = 60 * SEC};
    run_wait_for(&c, 1, wf_cancel_main);
    expect_wf_cancelled(&c);
}

/* test_cancel_blocking_wait_for: the same with no timeout. */
static void test_cancel_blocking_wait_for(void **state)
{
    (void)state;
    struct wf_ctx c = {.kid = {.cleanup_ns = 10 * MS}, .timeout_ns = -1};
    run_wait_for(&c, 1, wf_cancel_main);
    expect_wf_cancelled(&c);
}

/* ------------------------------------------------------------------------- */
/* shield                                                                     */

/* test_shield_result / test_shield_exception / test_shield_shortcut: "a new
 * future ... that completes as f does": result, error, or at once when f is
 * already done. */
static void test_shield_result(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    const int codes[] = {0, -EIO, 0};
    for (int i = 0; i < 3; i++) {
        bool shortcut = i == 2;
        rv_future *inner = new_future(rt), *outer = NULL;
        if (shortcut)
            assert_int_equal(rv_future_set_result(inner, IP(42)), 0);
        assert_int_equal(rv_shield(inner, &outer), 0);
        assert_non_null(outer);
        assert_ptr_not_equal(outer, inner);
        if (!shortcut)
            assert_int_equal(complete(inner, codes[i], 42), 0);
        void *v = NULL;
        assert_int_equal(rv_future_wait(outer, WAIT_NS, &v), codes[i]);
        if (codes[i] == 0)
            assert_int_equal(PI(v), 42);
        assert_int_equal(rv_future_release(outer), 0);
        assert_int_equal(rv_future_release(inner), 0);
    }
    free_runtime(rt);
}

/* test_shield_cancel_inner: the shield completes as f does, so cancelling f
 * cancels the shield. */
static void test_shield_cancel_inner(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *inner = new_future(rt), *outer = NULL;
    assert_int_equal(rv_shield(inner, &outer), 0);
    assert_int_equal(rv_future_cancel(inner, NULL), 0);
    assert_int_equal(rv_future_wait(outer, WAIT_NS, NULL), -ECANCELED);
    assert_true(rv_future_cancelled(outer));
    assert_int_equal(rv_future_release(outer), 0);
    assert_int_equal(rv_future_release(inner), 0);
    free_runtime(rt);
}

/* test_shield_cancel_outer: "whose cancellation does not cancel f": f stays
 * pending and later finishes normally; the shield stays cancelled. */
static void test_shield_cancel_outer(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *inner = new_future(rt), *outer = NULL;
    assert_int_equal(rv_shield(inner, &outer), 0);
    assert_int_equal(rv_future_cancel(outer, NULL), 0);
    assert_true(rv_future_cancelled(outer));
    sleep_ms(20); /* whatever callbacks follow run */
    assert_false(rv_future_done(inner));
    assert_int_equal(rv_future_set_result(inner, IP(1)), 0);
    sleep_ms(20);
    assert_true(rv_future_cancelled(outer));
    assert_int_equal(rv_future_release(outer), 0);
    assert_int_equal(rv_future_release(inner), 0);
    free_runtime(rt);
}

struct shield_effect_ctx {
    struct kid inner;
    rv_future *shield;
    rv_task *outer;
    int rc, proof, cancel_rc;
    bool inner_done_after_cancel;
};

static int shield_outer(void *arg, void **res)
{
    struct shield_effect_ctx *c = arg;
    c->rc = rv_await(c->shield, NULL);
    if (c->rc == 0)
        c->proof += 100;
    return c->rc;
}

static int shield_effect_main(void *arg, void **res)
{
    struct shield_effect_ctx *c = arg;
    int rc = spawn_kids(NULL, &c->inner, 1);
    if (rc == 0)
        rc = rv_shield(kf(&c->inner), &c->shield);
    if (rc == 0)
        rc = rv_spawn(NULL, shield_outer, c, NULL, &c->outer);
    if (rc < 0)
        return rc;
    settle();
    c->cancel_rc = rv_task_cancel(c->outer, NULL);
    finish(rv_task_future(c->outer));
    settle();
    c->inner_done_after_cancel = rv_future_done(kf(&c->inner));
    rv_future_set_result(c->inner.gate, NULL);
    finish(kf(&c->inner));
    c->proof += c->inner.wait_rc == 0;
    return 0;
}

/* test_shield_effect: "Awaiting it from a task that gets cancelled cancels
 * only the shield": the outer task ends cancelled, the inner task goes on
 * and finishes (proof == 1). */
static void test_shield_effect(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct shield_effect_ctx c = {.inner = {.gate = new_future(rt), .value = 5}};
    assert_int_equal(run_task(rt, shield_effect_main, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.rc, -ECANCELED);
    assert_true(rv_future_cancelled(c.shield));
    assert_false(c.inner_done_after_cancel);
    assert_false(rv_future_cancelled(kf(&c.inner)));
    assert_int_equal(c.proof, 1);
    assert_int_equal(rv_task_release(c.outer), 0);
    assert_int_equal(rv_future_release(c.shield), 0);
    assert_int_equal(rv_future_release(c.inner.gate), 0);
    release_kids(&c.inner, 1);
    free_runtime(rt);
}

struct gather_shield_ctx {
    rv_future *inner[2], *shield[2];
    rv_task *gatherer;
    int rc, codes[2], set_rc[2];
    bool shield_cancelled[2], inner_done_after_cancel[2];
};

static int gather_shield_gatherer(void *arg, void **res)
{
    struct gather_shield_ctx *c = arg;
    c->rc = rv_gather(c->shield, 2, 0, NULL, c->codes);
    return c->rc;
}

static int gather_shield_main(void *arg, void **res)
{
    struct gather_shield_ctx *c = arg;
    int rc = rv_spawn(NULL, gather_shield_gatherer, c, NULL, &c->gatherer);
    if (rc < 0)
        return rc;
    settle();
    rv_task_cancel(c->gatherer, NULL);
    finish(rv_task_future(c->gatherer));
    settle();
    for (int i = 0; i < 2; i++) {
        c->shield_cancelled[i] = rv_future_cancelled(c->shield[i]);
        c->inner_done_after_cancel[i] = rv_future_done(c->inner[i]);
        c->set_rc[i] = rv_future_set_result(c->inner[i], IP(i));
    }
    return 0;
}

/* test_gather_shield: gather over shields; cancelling the gathering task
 * cancels its children (the shields) and not the futures behind them. */
static void test_gather_shield(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct gather_shield_ctx c = {0};
    for (int i = 0; i < 2; i++) {
        c.inner[i] = new_future(rt);
        assert_int_equal(rv_shield(c.inner[i], &c.shield[i]), 0);
    }
    assert_int_equal(run_task(rt, gather_shield_main, &c, NULL), 0);
    assert_int_equal(c.rc, -ECANCELED);
    expect_ints("codes", c.codes, (int[]){-ECANCELED, -ECANCELED}, 2);
    for (int i = 0; i < 2; i++) {
        assert_true(c.shield_cancelled[i]);
        assert_false(c.inner_done_after_cancel[i]);
        assert_int_equal(c.set_rc[i], 0);
        assert_int_equal(rv_future_release(c.shield[i]), 0);
        assert_int_equal(rv_future_release(c.inner[i]), 0);
    }
    assert_int_equal(rv_task_release(c.gatherer), 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* as_completed                                                               */

/* test_as_completed: "yields fs's futures in the order they complete"
 * (c, a, b), then "-ENOENT when every future was returned" (every later call
 * too). */
static void test_as_completed(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_AS_COMPLETED,
        .nfut = 3,
        .nsteps = 3,
        .steps = {SET_RESULT(2, 'c', 0), SET_RESULT(0, 'a', 0), SET_RESULT(1, 'b', ENDS)},
    };
    run_script(&s);
    assert_int_equal(s.done_at, 2);
    assert_int_equal(s.rc, -ENOENT);
    assert_int_equal(s.rc_again, -ENOENT);
    assert_int_equal(s.norder, 3);
    expect_ints("order", s.order, (int[]){2, 0, 1}, 3);
    assert_int_equal(s.order_val[0], 'c');
    assert_int_equal(s.order_val[1], 'a');
    assert_int_equal(s.order_val[2], 'b');
    assert_int_equal(s.free_rc, 0);
}

/* test_as_completed_with_timeout: "-ETIMEDOUT when the overall timeout passed
 * first (every later call too)", after the future that did complete. */
static void test_as_completed_with_timeout(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_AS_COMPLETED,
        .timeout_ns = 50 * MS,
        .nfut = 2,
        .nsteps = 1,
        .steps = {SET_RESULT(0, 'a', 0)},
    };
    run_script(&s);
    assert_int_equal(s.done_at, 1);
    assert_int_equal(s.norder, 1);
    assert_int_equal(s.order[0], 0);
    assert_int_equal(s.order_val[0], 'a');
    assert_int_equal(s.rc, -ETIMEDOUT);
    assert_int_equal(s.rc_again, -ETIMEDOUT);
    assert_true(s.elapsed >= 50 * MS);
    assert_int_equal(s.free_rc, 0);
}

/* test_as_completed_duplicate_coroutines: "(duplicates count once)". */
static void test_as_completed_duplicates(void **state)
{
    (void)state;
    struct script s = {
        .op = OP_AS_COMPLETED,
        .nfut = 2,
        .args = {0, 0, 1},
        .nargs = 3,
        .nsteps = 2,
        .steps = {SET_RESULT(1, 9, 0), SET_RESULT(0, 7, ENDS)},
    };
    run_script(&s);
    assert_int_equal(s.done_at, 1);
    assert_int_equal(s.norder, 2);
    expect_ints("order", s.order, (int[]){1, 0}, 2);
    assert_int_equal(s.rc, -ENOENT);
}

struct ac_ref_ctx {
    rv_runtime *rt;
    int new_rc, next_rc, result_rc, end_rc, free_rc;
    void *value;
};

static int ac_ref_main(void *arg, void **res)
{
    struct ac_ref_ctx *c = arg;
    rv_future *f = NULL;
    int rc = rv_future_new(NULL, &f);
    if (rc < 0)
        return rc;
    rv_as_completed *it = NULL;
    c->new_rc = rv_as_completed_new(&f, 1, -1, &it);
    rv_future_set_result(f, IP(5));
    rv_future_release(f); /* the iterator's reference keeps it */
    if (c->new_rc < 0)
        return 0;
    rv_future *next = NULL;
    c->next_rc = rv_as_completed_next(it, &next);
    if (c->next_rc == 0)
        c->result_rc = rv_future_result(next, &c->value);
    c->end_rc = rv_as_completed_next(it, &next);
    c->free_rc = rv_as_completed_free(it);
    return 0;
}

/* rv_as_completed_new: "The futures are referenced by the iterator until it
 * is freed"; *next is "borrowed: valid until the iterator is freed". */
static void test_as_completed_holds_references(void **state)
{
    (void)state;
    struct ac_ref_ctx c = {0};
    assert_int_equal(run_main(1, ac_ref_main, &c), 0);
    assert_int_equal(c.new_rc, 0);
    assert_int_equal(c.next_rc, 0);
    assert_int_equal(c.result_rc, 0);
    assert_int_equal(PI(c.value), 5);
    assert_int_equal(c.end_rc, -ENOENT);
    assert_int_equal(c.free_rc, 0);
}

/* ------------------------------------------------------------------------- */
/* Timeout scopes                                                             */

struct scope_ctx {
    /* input */
    bool at;         /* enter with rv_timeout_enter_at(t0 + delay) */
    int64_t delay;   /* the (outer) scope's delay; negative: never */
    int64_t delay2;  /* nested: the inner scope's delay */
    bool same;       /* nested: both at the same deadline */
    int64_t resched; /* reschedule to now + resched (negative: never) */
    int64_t body_ns; /* the body sleeps this long ... */
    int body_err;    /* ... or, when set, ends with this error at once */
    rv_future *gate;
    int noise; /* callbacks queued before the gate opens */
    /* observed */
    rv_timeout s, inner;
    int64_t t0, deadline, when, elapsed;
    int enter_rc, enter2_rc, resched_rc, body_rc, body2_rc, inner_exit_rc, exit_rc;
    int resched_late_rc, resched_closed_rc, self_cancel_rc, uncancel_rc;
    bool expired_early, expired_mid, expired, inner_expired;
    int cancelling, yield_rc, sleep_after_rc, cancel_rc;
    bool child_cancelled;
    atomic_int phase;
    atomic_llong deadline_pub;
};

static int64_t at_or_never(int64_t base, int64_t delay) { return delay < 0 ? -1 : base + delay; }

/* Enter with a delay, or (at, same) at t0 + delay, which may be past. */
static int scope_enter(struct scope_ctx *c, rv_timeout *s, int64_t delay)
{
    if (!c->at && !c->same)
        return rv_timeout_enter(s, delay);
    c->deadline = c->t0 + delay;
    return rv_timeout_enter_at(s, c->deadline);
}

/* In the task, after the last scope closed: how long it took, what is left
 * of the cancel count, and whether a cancellation is still pending. */
static void scope_after(struct scope_ctx *c)
{
    c->elapsed = rv_now() - c->t0;
    c->cancelling = rv_task_cancelling(rv_current_task());
    c->yield_rc = rv_yield();
    c->sleep_after_rc = rv_sleep(1 * MS);
}

static int scope_body(struct scope_ctx *c)
{
    return c->body_err != 0 ? c->body_err : rv_sleep(c->body_ns);
}

/* One scope around scope_body. */
static int single_scope_main(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    c->t0 = rv_now();
    c->enter_rc = scope_enter(c, &c->s, c->delay);
    c->when = rv_timeout_when(&c->s);
    c->expired_early = rv_timeout_expired(&c->s);
    c->body_rc = scope_body(c);
    c->exit_rc = rv_timeout_exit(&c->s, c->body_rc);
    c->expired = rv_timeout_expired(&c->s);
    scope_after(c);
    return 0;
}

/* Test thread: the scope cancelled its body and reported -ETIMEDOUT, and the
 * task is left as if nothing happened (test_outer_task_is_not_cancelled). */
static void expect_scope_timed_out(const struct scope_ctx *c)
{
    assert_int_equal(c->enter_rc, 0);
    assert_int_equal(c->body_rc, -ECANCELED);
    assert_int_equal(c->exit_rc, -ETIMEDOUT);
    assert_true(c->expired);
    assert_int_equal(c->cancelling, 0);
    assert_int_equal(c->yield_rc, 0);
    assert_int_equal(c->sleep_after_rc, 0);
    assert_true(c->elapsed < WAIT_NS);
}

/* Test thread: the scope never fired and passed the body's code through. */
static void expect_scope_passed(const struct scope_ctx *c, int rc)
{
    assert_int_equal(c->enter_rc, 0);
    assert_int_equal(c->body_rc, rc);
    assert_int_equal(c->exit_rc, rc);
    assert_false(c->expired);
    assert_int_equal(c->cancelling, 0);
    assert_int_equal(c->yield_rc, 0);
    assert_int_equal(c->sleep_after_rc, 0);
}

/* test_timeout_basic: "at when_ns ... the task is cancelled, so the await in
 * progress returns -ECANCELED"; rv_timeout_exit "Returns -ETIMEDOUT when the
 * body was cancelled by this scope"; rv_timeout_expired; rv_timeout_when. */
static void test_timeout_basic(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = 10 * MS, .body_ns = LONG_SLEEP};
    assert_int_equal(run_main(1, single_scope_main, &c), 0);
    expect_scope_timed_out(&c);
    assert_false(c.expired_early);
    assert_true(c.when >= c.t0 + 10 * MS);
    assert_true(c.when < c.t0 + SEC);
    assert_true(c.elapsed >= 10 * MS);
}

/* test_timeout_at_basic: rv_timeout_enter_at; "The deadline" is the one
 * given. */
static void test_timeout_at_basic(void **state)
{
    (void)state;
    struct scope_ctx c = {.at = true, .delay = 10 * MS, .body_ns = LONG_SLEEP};
    assert_int_equal(run_main(1, single_scope_main, &c), 0);
    expect_scope_timed_out(&c);
    assert_int_equal(c.when, c.deadline);
    assert_true(c.elapsed >= 10 * MS);
}

/* test_timeout_zero and test_timeout_in_the_past_sleep_zero: a deadline that
 * is now, or already past, cancels the next await. */
static void test_timeout_zero_and_past(void **state)
{
    (void)state;
    struct scope_ctx zero = {.delay = 0, .body_ns = LONG_SLEEP};
    assert_int_equal(run_main(1, single_scope_main, &zero), 0);
    expect_scope_timed_out(&zero);
    struct scope_ctx past = {.at = true, .delay = -SEC / 2, .body_ns = LONG_SLEEP};
    assert_int_equal(run_main(1, single_scope_main, &past), 0);
    expect_scope_timed_out(&past);
    assert_int_equal(past.when, past.deadline);
}

/* test_timeout_not_called: a deadline that is not reached: the body's code
 * passes through, not expired. */
static void test_timeout_not_called(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = 10 * SEC, .body_ns = 10 * MS};
    assert_int_equal(run_main(1, single_scope_main, &c), 0);
    expect_scope_passed(&c, 0);
}

/* test_timeout_disabled: "negative: never": rv_timeout_when gives -1. */
static void test_timeout_disabled(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = -1, .body_ns = 10 * MS};
    assert_int_equal(run_main(1, single_scope_main, &c), 0);
    expect_scope_passed(&c, 0);
    assert_int_equal(c.when, -1);
}

/* test_foreign_exception_passed: "otherwise returns rc unchanged". */
static void test_timeout_foreign_exception_passed(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = 10 * MS, .body_err = -EIO};
    assert_int_equal(run_main(1, single_scope_main, &c), 0);
    expect_scope_passed(&c, -EIO);
}

static int reschedule_main(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    c->t0 = rv_now();
    c->enter_rc = rv_timeout_enter(&c->s, c->delay);
    c->deadline = at_or_never(rv_now(), c->resched);
    c->resched_rc = rv_timeout_reschedule(&c->s, c->deadline);
    c->when = rv_timeout_when(&c->s);
    c->body_rc = rv_sleep(c->body_ns);
    c->expired = rv_timeout_expired(&c->s);
    c->resched_late_rc = rv_timeout_reschedule(&c->s, rv_now() + 10 * SEC);
    c->exit_rc = rv_timeout_exit(&c->s, c->body_rc);
    c->resched_closed_rc = rv_timeout_reschedule(&c->s, -1);
    scope_after(c);
    return 0;
}

/* test_reschedule (to a later deadline): the first deadline passes without
 * effect; "-EPERM once the scope has ... closed". */
static void test_timeout_reschedule_later(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = 10 * MS, .resched = 10 * SEC, .body_ns = 30 * MS};
    assert_int_equal(run_main(1, reschedule_main, &c), 0);
    assert_int_equal(c.resched_rc, 0);
    assert_int_equal(c.when, c.deadline);
    expect_scope_passed(&c, 0);
    assert_int_equal(c.resched_late_rc, 0);
    assert_int_equal(c.resched_closed_rc, -EPERM);
}

/* rv_timeout_reschedule to an earlier deadline: the scope fires then;
 * "-EPERM once the scope has expired". */
static void test_timeout_reschedule_earlier(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = 10 * SEC, .resched = 10 * MS, .body_ns = LONG_SLEEP};
    assert_int_equal(run_main(1, reschedule_main, &c), 0);
    assert_int_equal(c.resched_rc, 0);
    assert_int_equal(c.when, c.deadline);
    expect_scope_timed_out(&c);
    assert_true(c.elapsed < 10 * SEC);
    assert_int_equal(c.resched_late_rc, -EPERM);
    assert_int_equal(c.resched_closed_rc, -EPERM);
}

/* test_reschedule (to None): "Move the deadline (negative: never)". */
static void test_timeout_reschedule_never(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = 10 * MS, .resched = -1, .body_ns = 30 * MS};
    assert_int_equal(run_main(1, reschedule_main, &c), 0);
    assert_int_equal(c.resched_rc, 0);
    assert_int_equal(c.when, -1);
    expect_scope_passed(&c, 0);
}

/* Two nested scopes; if the inner one converted the cancellation, the body
 * goes on with one more await before the outer one closes. */
static int nested_scopes_main(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    c->t0 = rv_now();
    c->enter_rc = scope_enter(c, &c->s, c->delay);
    c->enter2_rc = scope_enter(c, &c->inner, c->same ? c->delay : c->delay2);
    c->body_rc = rv_sleep(LONG_SLEEP);
    c->inner_exit_rc = rv_timeout_exit(&c->inner, c->body_rc);
    c->inner_expired = rv_timeout_expired(&c->inner);
    c->body2_rc = c->inner_exit_rc == -ECANCELED ? -ECANCELED : rv_sleep(1 * MS);
    c->exit_rc = rv_timeout_exit(&c->s, c->body2_rc);
    c->expired = rv_timeout_expired(&c->s);
    scope_after(c);
    return 0;
}

/* test_nested_timeouts: "Of nested scopes with the same deadline only the
 * outermost reports -ETIMEDOUT"; the inner one passes -ECANCELED on. */
static void test_timeout_nested_same_deadline(void **state)
{
    (void)state;
    struct scope_ctx c = {.same = true, .delay = 10 * MS};
    assert_int_equal(run_main(1, nested_scopes_main, &c), 0);
    assert_int_equal(c.enter2_rc, 0);
    assert_int_equal(c.inner_exit_rc, -ECANCELED);
    assert_true(c.inner_expired);
    expect_scope_timed_out(&c);
}

/* "Scopes nest": the inner deadline comes first: the inner scope reports
 * -ETIMEDOUT, nothing is left pending, the body goes on and the outer scope
 * passes its code through. */
static void test_timeout_nested_inner_expires_first(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = 10 * SEC, .delay2 = 10 * MS};
    assert_int_equal(run_main(1, nested_scopes_main, &c), 0);
    assert_int_equal(c.enter2_rc, 0);
    assert_int_equal(c.body_rc, -ECANCELED);
    assert_int_equal(c.inner_exit_rc, -ETIMEDOUT);
    assert_true(c.inner_expired);
    assert_int_equal(c.body2_rc, 0);
    assert_int_equal(c.exit_rc, 0);
    assert_false(c.expired);
    assert_int_equal(c.cancelling, 0);
    assert_int_equal(c.yield_rc, 0);
}

/* "Scopes nest": the outer deadline comes first: the inner scope did not
 * cancel the body and passes -ECANCELED on; the outer one reports it. */
static void test_timeout_nested_outer_expires_first(void **state)
{
    (void)state;
    struct scope_ctx c = {.delay = 10 * MS, .delay2 = 10 * SEC};
    assert_int_equal(run_main(1, nested_scopes_main, &c), 0);
    assert_int_equal(c.enter2_rc, 0);
    assert_int_equal(c.inner_exit_rc, -ECANCELED);
    assert_false(c.inner_expired);
    expect_scope_timed_out(&c);
}

static int foreign_cancel_main(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    c->t0 = rv_now();
    c->enter_rc = rv_timeout_enter(&c->s, 10 * SEC);
    c->self_cancel_rc = rv_task_cancel(rv_current_task(), NULL);
    c->body_rc = rv_sleep(LONG_SLEEP);
    c->exit_rc = rv_timeout_exit(&c->s, c->body_rc);
    c->expired = rv_timeout_expired(&c->s);
    scope_after(c);
    c->uncancel_rc = rv_task_uncancel(rv_current_task());
    return 0;
}

/* test_foreign_cancel_doesnt_timeout_if_not_expired: a cancellation from
 * elsewhere inside an unexpired scope stays -ECANCELED, and its request is
 * still counted afterwards. */
static void test_timeout_foreign_cancel_not_expired(void **state)
{
    (void)state;
    struct scope_ctx c = {0};
    assert_int_equal(run_main(1, foreign_cancel_main, &c), 0);
    assert_int_equal(c.self_cancel_rc, 0);
    assert_int_equal(c.body_rc, -ECANCELED);
    assert_int_equal(c.exit_rc, -ECANCELED);
    assert_false(c.expired);
    assert_int_equal(c.cancelling, 1);
    assert_int_equal(c.uncancel_rc, 0);
    assert_true(c.elapsed < WAIT_NS);
}

static int expired_then_cancelled_child(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    c->t0 = rv_now();
    c->enter_rc = rv_timeout_enter(&c->s, 10 * MS);
    c->body_rc = rv_sleep(LONG_SLEEP); /* the scope cancels this */
    c->expired_mid = rv_timeout_expired(&c->s);
    atomic_store(&c->phase, 1);
    c->body2_rc = rv_await(c->gate, NULL); /* the main task cancels this */
    c->exit_rc = rv_timeout_exit(&c->s, c->body2_rc);
    c->expired = rv_timeout_expired(&c->s);
    c->elapsed = rv_now() - c->t0;
    c->cancelling = rv_task_cancelling(rv_current_task());
    return c->exit_rc;
}

static int expired_then_cancelled_main(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    rv_task *t = NULL;
    int rc = rv_spawn(NULL, expired_then_cancelled_child, c, NULL, &t);
    if (rc < 0)
        return rc;
    if ((rc = task_wait_atomic(&c->phase, 1)) == 0)
        c->cancel_rc = rv_task_cancel(t, NULL);
    finish(rv_task_future(t));
    c->child_cancelled = rv_future_cancelled(rv_task_future(t));
    rv_task_release(t);
    return rc;
}

/* rv_timeout_exit: "-ETIMEDOUT when the body was cancelled by this scope (rc
 * == -ECANCELED and no other cancellation is pending, by cancel counting)":
 * the scope expired, then the task was cancelled from outside; the body ends
 * with -ECANCELED and the scope must not turn that into -ETIMEDOUT; the
 * outside request stays counted. */
static void test_timeout_outer_cancel_not_converted(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct scope_ctx c = {.gate = new_future(rt)};
    assert_int_equal(run_task(rt, expired_then_cancelled_main, &c, NULL), 0);
    assert_int_equal(c.enter_rc, 0);
    assert_int_equal(c.body_rc, -ECANCELED);
    assert_true(c.expired_mid);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.body2_rc, -ECANCELED);
    assert_int_equal(c.exit_rc, -ECANCELED);
    assert_true(c.expired);
    assert_int_equal(c.cancelling, 1);
    assert_true(c.child_cancelled);
    assert_true(rv_future_cancelled(c.gate));
    assert_int_equal(rv_future_release(c.gate), 0);
    free_runtime(rt);
}

static int late_expiry_child(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    c->t0 = rv_now();
    c->deadline = c->t0 + 5 * MS;
    c->enter_rc = rv_timeout_enter_at(&c->s, c->deadline);
    atomic_store(&c->deadline_pub, c->deadline);
    atomic_store(&c->phase, 1);
    c->body_rc = rv_await(c->gate, NULL); /* the last await */
    c->expired_mid = rv_timeout_expired(&c->s);
    c->exit_rc = rv_timeout_exit(&c->s, c->body_rc);
    c->expired = rv_timeout_expired(&c->s);
    scope_after(c);
    return 0;
}

static void noop_cb(void *arg) {}

static int noop_task(void *arg, void **res) { return 0; }

static int late_expiry_main(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    rv_task *t = NULL;
    int rc = rv_spawn(NULL, late_expiry_child, c, NULL, &t);
    if (rc < 0)
        return rc;
    if ((rc = task_wait_atomic(&c->phase, 1)) == 0) {
        /* One worker: keep it busy past the deadline, so that the scope's
         * timer is due when the child becomes ready again. With noise, the
         * woken child is queued behind callbacks (a spawn takes its place
         * as the next job to run), so that the worker looks at its timers
         * before it resumes the child. */
        int64_t until = atomic_load(&c->deadline_pub) + 3 * MS;
        while (rv_now() < until)
            ;
        rv_future_set_result(c->gate, NULL);
        for (int i = 0; i < c->noise; i++)
            rv_call_soon(rv_runtime_current(), noop_cb, NULL, NULL);
        if (c->noise > 0)
            rv_spawn(NULL, noop_task, NULL, NULL, NULL);
    }
    finish(rv_task_future(t));
    rv_task_release(t);
    return rc;
}

/* rv_timeout_exit, cancel counting: the deadline passes while the body's
 * last await is completing, under a few interleavings of the scope's timer
 * and the body's wakeup. Whichever the runtime delivers first, the task
 * leaves the scope with nothing pending (the next rv_yield returns 0) and a
 * cancel count of 0, and exit reports -ETIMEDOUT exactly when the body saw
 * -ECANCELED. */
static void test_timeout_deadline_while_last_await_completes(void **state)
{
    (void)state;
    const int noise[] = {0, 4, 16, 64};
    for (size_t i = 0; i < sizeof noise / sizeof noise[0]; i++) {
        rv_runtime *rt = new_runtime(1);
        struct scope_ctx c = {.gate = new_future(rt), .noise = noise[i]};
        assert_int_equal(run_task(rt, late_expiry_main, &c, NULL), 0);
        print_message("noise %d: last await returned %s; expired before exit: %d, after: %d\n",
                      noise[i], rv_err_name(c.body_rc), c.expired_mid, c.expired);
        assert_int_equal(c.enter_rc, 0);
        assert_true(c.body_rc == 0 || c.body_rc == -ECANCELED);
        assert_int_equal(c.exit_rc, c.body_rc == 0 ? 0 : -ETIMEDOUT);
        if (c.body_rc == -ECANCELED)
            assert_true(c.expired);
        assert_int_equal(c.cancelling, 0);
        assert_int_equal(c.yield_rc, 0);
        assert_int_equal(c.sleep_after_rc, 0);
        assert_int_equal(rv_future_release(c.gate), 0);
        free_runtime(rt);
    }
}

static int busy_scope_child(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    c->t0 = rv_now();
    c->enter_rc = rv_timeout_enter(&c->s, -1); /* armed later, from elsewhere */
    atomic_store(&c->phase, 1);
    int64_t give_up = rv_now() + WAIT_NS;
    while (!rv_timeout_expired(&c->s) && rv_now() < give_up)
        ; /* the body's work after its last await: never suspends */
    c->expired_mid = rv_timeout_expired(&c->s);
    c->exit_rc = rv_timeout_exit(&c->s, 0);
    c->expired = rv_timeout_expired(&c->s);
    scope_after(c);
    return 0;
}

static int rescheduler(void *arg, void **res)
{
    struct scope_ctx *c = arg;
    c->resched_rc = rv_timeout_reschedule(&c->s, rv_now());
    return 0;
}

/* rv_timeout_exit: "A scope that expired after the body's last await
 * withdraws its request, so nothing is left pending" (rescheduled from
 * another task, as in test_reschedule): on 2 workers the body runs without
 * suspending while a task on the other worker moves the deadline to now; the
 * scope fires while the body runs; exit passes the body's 0 through, and the
 * cancel count and the next rv_yield show that nothing is left pending. */
static void test_timeout_expires_without_following_await(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(2);
    struct scope_ctx c = {0};
    rv_task *body = NULL, *helper = NULL;
    assert_int_equal(rv_spawn(rt, busy_scope_child, &c, NULL, &body), 0);
    assert_true(wait_atomic(&c.phase, 1));
    /* The body's worker is busy: the other one runs the helper. */
    assert_int_equal(rv_spawn(rt, rescheduler, &c, NULL, &helper), 0);
    assert_int_equal(rv_future_wait(rv_task_future(helper), WAIT_NS, NULL), 0);
    assert_int_equal(rv_future_wait(rv_task_future(body), 2 * WAIT_NS, NULL), 0);
    assert_int_equal(c.enter_rc, 0);
    assert_int_equal(c.resched_rc, 0);
    assert_true(c.expired_mid);
    assert_int_equal(c.exit_rc, 0);
    assert_true(c.expired);
    assert_int_equal(c.cancelling, 0);
    assert_int_equal(c.yield_rc, 0);
    assert_int_equal(c.sleep_after_rc, 0);
    assert_int_equal(rv_task_release(helper), 0);
    assert_int_equal(rv_task_release(body), 0);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* TaskGroup                                                                  */

struct tg_ctx {
    /* input */
    struct kid kids[6];
    size_t nkids;
    int64_t body_ns;    /* the body sleeps this long; if that fails, it ends with
                           the sleep's code ... */
    int body_rc;        /* ... else with this one */
    bool gated;         /* external cancel: kid 0 awaits a gate the main task
                           opens just before cancelling the parent */
    bool spawn_in_body; /* try a spawn after the body's sleep failed */
    /* observed */
    rv_future *gate;
    struct kid late; /* spawned after a failure and after wait: refused */
    rv_task *parent;
    int sleep_rc, spawn_in_body_rc, free_before_rc, wait_rc, nerr, errs[8];
    int kid_rc[6];
    void *kid_value[6];
    int kids_done_at_wait, cancelling, yield_rc, spawn_after_rc, free_rc, cancel_rc;
    bool parent_cancelled;
    int64_t elapsed;
};

static int tg_parent(void *arg, void **res)
{
    struct tg_ctx *c = arg;
    rv_taskgroup *g = NULL;
    int rc = rv_taskgroup_new(&g);
    if (rc < 0)
        return rc;
    int64_t t0 = rv_now();
    int body = spawn_kids(g, c->kids, c->nkids);
    if (body == 0 && c->body_ns > 0) {
        body = c->sleep_rc = rv_sleep(c->body_ns);
        if (body < 0 && c->spawn_in_body)
            c->spawn_in_body_rc = rv_taskgroup_spawn(g, kid_body, &c->late, NULL, NULL);
    }
    if (body == 0)
        body = c->body_rc;
    c->free_before_rc = rv_taskgroup_free(g);
    c->wait_rc = rv_taskgroup_wait(g, body);
    c->elapsed = rv_now() - t0;
    c->kids_done_at_wait = count_done(c->kids, c->nkids);
    c->cancelling = rv_task_cancelling(rv_current_task());
    c->nerr = rv_taskgroup_errors(g, c->errs, 8);
    for (size_t i = 0; i < c->nkids; i++)
        c->kid_rc[i] = rv_future_result(kf(&c->kids[i]), &c->kid_value[i]);
    c->spawn_after_rc = rv_taskgroup_spawn(g, kid_body, &c->late, NULL, NULL);
    c->yield_rc = rv_yield();
    c->free_rc = rv_taskgroup_free(g);
    return c->wait_rc == -ECANCELED ? -ECANCELED : 0;
}

/* The external-cancellation scenarios: cancel the parent once every child
 * has started (on one worker the parent is then inside rv_taskgroup_wait). */
static int tg_cancel_main(void *arg, void **res)
{
    struct tg_ctx *c = arg;
    int rc = c->gated ? rv_future_new(NULL, &c->gate) : 0;
    c->kids[0].gate = c->gate;
    if (rc == 0)
        rc = rv_spawn(NULL, tg_parent, c, NULL, &c->parent);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->nkids && rc == 0; i++)
        rc = task_wait_atomic(&c->kids[i].started, 1);
    if (c->gate != NULL)
        rv_future_set_result(c->gate, NULL);
    c->cancel_rc = rv_task_cancel(c->parent, NULL);
    finish(rv_task_future(c->parent));
    c->parent_cancelled = rv_future_cancelled(rv_task_future(c->parent));
    return rc;
}

/* Test thread: run a TaskGroup scenario on one worker (main: tg_parent or
 * tg_cancel_main) and check what holds in all of them: "Waits until every
 * child has ended"; "Free the group after wait (-EBUSY before)"; spawn
 * "-ESHUTDOWN once the group ... has been waited on"; nothing left pending. */
static void run_taskgroup(struct tg_ctx *c, rv_task_fn main_fn)
{
    rv_runtime *rt = new_runtime(1);
    assert_int_equal(run_task(rt, main_fn, c, NULL), 0);
    assert_int_equal(c->free_before_rc, -EBUSY);
    assert_int_equal((size_t)c->kids_done_at_wait, c->nkids);
    assert_int_equal(c->spawn_after_rc, -ESHUTDOWN);
    assert_int_equal(atomic_load(&c->late.started), 0);
    assert_int_equal(c->yield_rc, 0);
    assert_int_equal(c->free_rc, 0);
    assert_true(c->elapsed < WAIT_NS);
    release_kids(c->kids, c->nkids);
    if (c->parent != NULL)
        assert_int_equal(rv_task_release(c->parent), 0);
    if (c->gate != NULL)
        assert_int_equal(rv_future_release(c->gate), 0);
    free_runtime(rt);
}

/* Test thread: the kid saw -ECANCELED and ended cancelled. */
static void expect_kid_cancelled(const struct tg_ctx *c, size_t i)
{
    assert_int_equal(c->kids[i].wait_rc, -ECANCELED);
    assert_int_equal(atomic_load(&c->kids[i].ended), 1);
    assert_int_equal(c->kid_rc[i], -ECANCELED);
}

/* test_taskgroup_01: "Waits until every child has ended"; "else 0". */
static void test_taskgroup_01(void **state)
{
    (void)state;
    struct tg_ctx c = {
        .kids = {{.sleep_ns = 10 * MS, .value = 42}, {.sleep_ns = 20 * MS, .value = 11}},
        .nkids = 2,
    };
    run_taskgroup(&c, tg_parent);
    assert_int_equal(c.wait_rc, 0);
    assert_int_equal(c.nerr, 0);
    expect_ints("kid_rc", c.kid_rc, (int[]){0, 0}, 2);
    assert_int_equal(PI(c.kid_value[0]), 42);
    assert_int_equal(PI(c.kid_value[1]), 11);
    assert_int_equal(c.cancelling, 0);
    assert_true(c.elapsed >= 20 * MS);
}

struct tg03_ctx {
    struct kid kids[2];
    int wait_rc, nerr, cancel_rc;
};

static int tg03_parent(void *arg, void **res)
{
    struct tg03_ctx *c = arg;
    rv_taskgroup *g = NULL;
    int rc = rv_taskgroup_new(&g);
    if (rc < 0)
        return rc;
    rc = spawn_kids(g, &c->kids[0], 1);
    settle();
    c->cancel_rc = rv_task_cancel(c->kids[0].task, NULL);
    if (rc == 0)
        rc = spawn_kids(g, &c->kids[1], 1);
    c->wait_rc = rv_taskgroup_wait(g, rc);
    c->nerr = rv_taskgroup_errors(g, NULL, 0);
    rv_taskgroup_free(g);
    return 0;
}

/* test_taskgroup_03: a child cancelled explicitly is not a failure ("an error
 * other than -ECANCELED"): the group goes on, a child spawned afterwards
 * finishes, and wait returns 0. */
static void test_taskgroup_03(void **state)
{
    (void)state;
    struct tg03_ctx c = {
        .kids = {{.sleep_ns = LONG_SLEEP, .value = 42}, {.sleep_ns = 10 * MS, .value = 11}},
    };
    rv_runtime *rt = new_runtime(1);
    assert_int_equal(run_task(rt, tg03_parent, &c, NULL), 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.wait_rc, 0);
    assert_int_equal(c.nerr, 0);
    assert_true(rv_future_cancelled(kf(&c.kids[0])));
    void *v = NULL;
    assert_int_equal(rv_future_result(kf(&c.kids[1]), &v), 0);
    assert_int_equal(PI(v), 11);
    release_kids(c.kids, 2);
    free_runtime(rt);
}

/* test_taskgroup_04: "When a child fails ..., the other children ... are
 * cancelled"; wait returns "the first error"; the group's own cancellation
 * of the parent "is withdrawn here" (cancel count back to 0). */
static void test_taskgroup_04(void **state)
{
    (void)state;
    struct tg_ctx c = {
        .kids = {{.sleep_ns = 10 * MS, .rc = -EIO}, {.sleep_ns = LONG_SLEEP}},
        .nkids = 2,
    };
    run_taskgroup(&c, tg_parent);
    assert_int_equal(c.wait_rc, -EIO);
    assert_int_equal(c.nerr, 1);
    assert_int_equal(c.errs[0], -EIO);
    assert_int_equal(c.kid_rc[0], -EIO);
    expect_kid_cancelled(&c, 1);
    assert_int_equal(c.cancelling, 0);
}

/* test_taskgroup_05: "the other children and the parent are cancelled": the
 * parent's body, awaiting rv_sleep, gets -ECANCELED; passing that to wait
 * still returns the child's error (-ECANCELED is not a body error), every
 * sibling is cancelled (one after a 10 ms cleanup), and the parent's cancel
 * count is back to 0. */
static void test_taskgroup_05(void **state)
{
    (void)state;
    struct tg_ctx c = {
        .kids = {{.sleep_ns = 10 * MS, .rc = -EIO},
                 {.sleep_ns = LONG_SLEEP},
                 {.sleep_ns = LONG_SLEEP, .cleanup_ns = 10 * MS}},
        .nkids = 3,
        .body_ns = LONG_SLEEP,
    };
    run_taskgroup(&c, tg_parent);
    assert_int_equal(c.sleep_rc, -ECANCELED);
    assert_int_equal(c.wait_rc, -EIO);
    assert_int_equal(c.nerr, 1);
    assert_int_equal(c.errs[0], -EIO);
    expect_kid_cancelled(&c, 1);
    expect_kid_cancelled(&c, 2);
    assert_int_equal(c.kids[2].cleanup_rc, 0);
    assert_int_equal(c.cancelling, 0);
}

/* Several children fail (test_taskgroup_05's three failing foo1s, made
 * deterministic): "every error available from rv_taskgroup_errors"; wait
 * returns the first. Each child fails whether or not the group's
 * cancellation reaches it first. */
static void test_taskgroup_two_children_fail(void **state)
{
    (void)state;
    struct tg_ctx c = {
        .kids = {{.sleep_ns = 5 * MS, .rc = -EIO, .cancel_rc = -EIO},
                 {.sleep_ns = 5 * MS, .rc = -EPIPE, .cancel_rc = -EPIPE}},
        .nkids = 2,
    };
    run_taskgroup(&c, tg_parent);
    assert_int_equal(c.nerr, 2);
    assert_true((c.errs[0] == -EIO && c.errs[1] == -EPIPE) ||
                (c.errs[0] == -EPIPE && c.errs[1] == -EIO));
    assert_int_equal(c.wait_rc, c.errs[0]);
    assert_int_equal(c.cancelling, 0);
}

/* test_cancellation (test_taskgroups.py): the parent cancelled from outside
 * while in wait: every child is cancelled (NUM == 5), wait returns
 * -ECANCELED ("cancelled from outside the group") and the outside request
 * stays counted. */
static void test_taskgroup_cancellation(void **state)
{
    (void)state;
    struct tg_ctx c = {.nkids = 5};
    for (size_t i = 0; i < c.nkids; i++) {
        c.kids[i].sleep_ns = LONG_SLEEP;
        c.kids[i].cleanup_ns = 2 * MS;
    }
    run_taskgroup(&c, tg_cancel_main);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.wait_rc, -ECANCELED);
    assert_true(c.parent_cancelled);
    assert_int_equal(c.nerr, 0);
    for (size_t i = 0; i < c.nkids; i++)
        expect_kid_cancelled(&c, i);
    assert_int_equal(c.cancelling, 1);
}

/* test_taskgroup_08-style without the failing cleanup: the parent cancelled
 * from outside while its body awaits: the body passes -ECANCELED to wait,
 * which cancels the children ("a failed body cancels the children too") and
 * returns -ECANCELED; nothing recorded as an error. */
static void test_taskgroup_cancellation_in_body(void **state)
{
    (void)state;
    struct tg_ctx c = {
        .kids = {{.sleep_ns = LONG_SLEEP}, {.sleep_ns = LONG_SLEEP, .cleanup_ns = 5 * MS}},
        .nkids = 2,
        .body_ns = LONG_SLEEP,
    };
    run_taskgroup(&c, tg_cancel_main);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.sleep_rc, -ECANCELED);
    assert_int_equal(c.wait_rc, -ECANCELED);
    assert_true(c.parent_cancelled);
    assert_int_equal(c.nerr, 0);
    expect_kid_cancelled(&c, 0);
    expect_kid_cancelled(&c, 1);
    assert_int_equal(c.cancelling, 1);
}

/* rv_taskgroup_wait: "errors take priority over a cancellation": a child
 * fails (the group cancels the parent) and the parent is also cancelled from
 * outside: the error is returned (asyncio 3.11+ raises the ExceptionGroup),
 * and cancel counting leaves the outside request counted. */
static void test_taskgroup_cancel_counting(void **state)
{
    (void)state;
    struct tg_ctx c = {
        .kids = {{.rc = -EIO, .cancel_rc = -EIO}, {.sleep_ns = LONG_SLEEP}},
        .nkids = 2,
        .gated = true,
    };
    run_taskgroup(&c, tg_cancel_main);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.nerr, 1);
    assert_int_equal(c.errs[0], -EIO);
    expect_kid_cancelled(&c, 1);
    assert_int_equal(c.cancelling, 1);
    assert_int_equal(c.wait_rc, -EIO);
    assert_false(c.parent_cancelled); /* it ended with the error */
}

/* test_taskgroup_09: "a failed body cancels the children too"; the errors
 * list the children's (one failed while being cancelled), then the body's,
 * as asyncio's ExceptionGroup; wait returns the first recorded. */
static void test_taskgroup_09(void **state)
{
    (void)state;
    struct tg_ctx c = {
        .kids = {{.sleep_ns = LONG_SLEEP}, {.sleep_ns = LONG_SLEEP, .cancel_rc = -EPIPE}},
        .nkids = 2,
        .body_ns = 10 * MS,
        .body_rc = -EIO,
    };
    run_taskgroup(&c, tg_parent);
    assert_int_equal(c.sleep_rc, 0);
    expect_kid_cancelled(&c, 0);
    assert_int_equal(c.kid_rc[1], -EPIPE);
    assert_int_equal(c.cancelling, 0);
    assert_int_equal(c.nerr, 2);
    expect_ints("errs", c.errs, (int[]){-EPIPE, -EIO}, 2);
    assert_int_equal(c.wait_rc, -EPIPE);
}

/* rv_taskgroup_spawn: "-ESHUTDOWN once the group is closing after a failure
 * or has been waited on" (TaskGroup.create_task's RuntimeError "is shutting
 * down" / test_coro_closed_when_tg_closed "is finished"); the refused child
 * never runs. */
static void test_taskgroup_spawn_after_failure(void **state)
{
    (void)state;
    struct tg_ctx c = {
        .kids = {{.sleep_ns = 5 * MS, .rc = -EPIPE}},
        .nkids = 1,
        .body_ns = LONG_SLEEP,
        .spawn_in_body = true,
    };
    run_taskgroup(&c, tg_parent);
    assert_int_equal(c.sleep_rc, -ECANCELED);
    assert_int_equal(c.spawn_in_body_rc, -ESHUTDOWN);
    assert_int_equal(c.wait_rc, -EPIPE);
}

struct tg_misuse_ctx {
    int free_before_rc, other_wait_rc, wait_rc, free_rc, errors_rc;
};

static int tg_wait_from_other_task(void *arg, void **res) { return rv_taskgroup_wait(arg, 0); }

static int tg_misuse_main(void *arg, void **res)
{
    struct tg_misuse_ctx *c = arg;
    rv_taskgroup *g = NULL;
    int rc = rv_taskgroup_new(&g);
    if (rc < 0)
        return rc;
    c->free_before_rc = rv_taskgroup_free(g);
    rv_task *t = NULL;
    if ((rc = rv_spawn(NULL, tg_wait_from_other_task, g, NULL, &t)) < 0)
        return rc;
    c->other_wait_rc = finish(rv_task_future(t));
    rv_task_release(t);
    c->wait_rc = rv_taskgroup_wait(g, 0);
    c->errors_rc = rv_taskgroup_errors(g, NULL, 0);
    c->free_rc = rv_taskgroup_free(g);
    return 0;
}

/* rv_taskgroup_free: "Free the group after wait (-EBUSY before)";
 * rv_taskgroup_wait: "from the parent task only (-EPERM)". */
static void test_taskgroup_free_before_wait(void **state)
{
    (void)state;
    struct tg_misuse_ctx c = {0};
    assert_int_equal(run_main(1, tg_misuse_main, &c), 0);
    assert_int_equal(c.free_before_rc, -EBUSY);
    assert_int_equal(c.other_wait_rc, -EPERM);
    assert_int_equal(c.wait_rc, 0);
    assert_int_equal(c.errors_rc, 0);
    assert_int_equal(c.free_rc, 0);
}

/* ------------------------------------------------------------------------- */
/* Generators                                                                 */

struct gen_ctx {
    /* the body */
    int count;          /* yields 10, 20, ... (count values) */
    int end_rc;         /* then ends with this */
    int64_t delay_ns;   /* sleeps this long before each value after the first */
    int64_t cleanup_ns; /* when closed: sleeps this long in its cleanup */
    int close_err;      /* when closed: ends with this error (0: -ECANCELED) */
    atomic_int started, cleaned, ended;
    int yield_rc; /* what the last rv_gen_yield (or delay) returned */
    int cleanup_rc;
    /* the consumer */
    rv_gen *g;
    rv_task *consumer;
    atomic_int phase;
    int rcs[8];
    intptr_t vals[8];
    size_t n;
    int new_rc, close_rc, free_rc, cancel_rc, body_ended;
    int started_before, cleaned_at_close, ended_at_close;
};

static int gen_body(rv_gen *g, void *arg)
{
    struct gen_ctx *c = arg;
    atomic_store(&c->started, 1);
    int rc = 0;
    for (int i = 1; i <= c->count && rc == 0; i++) {
        if (i > 1 && c->delay_ns > 0)
            rc = rv_sleep(c->delay_ns);
        if (rc == 0)
            rc = rv_gen_yield(g, IP(10 * i));
        c->yield_rc = rc;
    }
    if (rc == -ECANCELED) {
        if (c->cleanup_ns > 0)
            c->cleanup_rc = rv_sleep(c->cleanup_ns);
        atomic_store(&c->cleaned, 1);
        rc = c->close_err != 0 ? c->close_err : -ECANCELED;
    } else {
        rc = c->end_rc;
    }
    atomic_store(&c->ended, 1);
    return rc;
}

/* In the consumer: ask for the next value, recording code and value. */
static int gen_pull(struct gen_ctx *c)
{
    void *v = NULL;
    int rc = rv_gen_next(c->g, &v);
    if (c->n < 8) {
        c->rcs[c->n] = rc;
        c->vals[c->n++] = rc == 1 ? PI(v) : 0;
    }
    return rc;
}

/* Consumer: pull until the sequence ends or fails, then once more. */
static int gen_drain_main(void *arg, void **res)
{
    struct gen_ctx *c = arg;
    if ((c->new_rc = rv_gen_new(NULL, gen_body, c, NULL, &c->g)) < 0)
        return 0;
    while (c->n < 6 && gen_pull(c) == 1)
        ;
    gen_pull(c);
    c->free_rc = rv_gen_free(c->g);
    return 0;
}

/* Consumer: check that nothing runs before the first request, take one
 * value, close early. */
static int gen_close_main(void *arg, void **res)
{
    struct gen_ctx *c = arg;
    if ((c->new_rc = rv_gen_new(NULL, gen_body, c, NULL, &c->g)) < 0)
        return 0;
    settle();
    settle();
    c->started_before = atomic_load(&c->started);
    if (c->count > 0)
        gen_pull(c);
    c->close_rc = rv_gen_close(c->g);
    c->cleaned_at_close = atomic_load(&c->cleaned);
    c->ended_at_close = atomic_load(&c->ended);
    c->free_rc = rv_gen_free(c->g);
    return 0;
}

/* test_async_gen_asyncio_01-style (`async for` over 1, 2, 3): values in
 * order; "0 when the body returned 0 (the end, asyncio's
 * StopAsyncIteration)". */
static void test_gen_values_in_order(void **state)
{
    (void)state;
    struct gen_ctx c = {.count = 3};
    assert_int_equal(run_main(1, gen_drain_main, &c), 0);
    assert_int_equal(c.new_rc, 0);
    assert_int_equal(c.n, 5);
    expect_ints("next", c.rcs, (int[]){1, 1, 1, 0, 0}, 5);
    assert_int_equal(c.vals[0], 10);
    assert_int_equal(c.vals[1], 20);
    assert_int_equal(c.vals[2], 30);
    assert_int_equal(c.free_rc, 0);
    assert_int_equal(atomic_load(&c.ended), 1);
}

/* test_async_gen_asyncio_03-style (an exception in the body reaches the
 * consumer): "the body's error when it failed (every later call too)". */
static void test_gen_error(void **state)
{
    (void)state;
    struct gen_ctx c = {.count = 1, .end_rc = -EIO};
    assert_int_equal(run_main(1, gen_drain_main, &c), 0);
    assert_int_equal(c.n, 3);
    expect_ints("next", c.rcs, (int[]){1, -EIO, -EIO}, 3);
    assert_int_equal(c.vals[0], 10);
    assert_int_equal(c.free_rc, 0);
}

/* rv_gen_new: "Like an async generator it starts running only when the first
 * value is asked for". */
static void test_gen_lazy_start(void **state)
{
    (void)state;
    struct gen_ctx c = {.count = 1};
    assert_int_equal(run_main(1, gen_close_main, &c), 0);
    assert_int_equal(c.new_rc, 0);
    assert_int_equal(c.started_before, 0);
    assert_int_equal(c.rcs[0], 1);
    assert_int_equal(c.vals[0], 10);
    assert_int_equal(atomic_load(&c.started), 1);
}

/* test_async_gen_asyncio_aclose_06-style (aclose runs the finally block,
 * which awaits): "the pending rv_gen_yield returns -ECANCELED, the body runs
 * its cleanup and ends, and the call waits for it. Returns 0". */
static void test_gen_aclose(void **state)
{
    (void)state;
    struct gen_ctx c = {.count = 100, .cleanup_ns = 5 * MS};
    assert_int_equal(run_main(1, gen_close_main, &c), 0);
    assert_int_equal(c.rcs[0], 1);
    assert_int_equal(c.close_rc, 0);
    assert_int_equal(c.yield_rc, -ECANCELED);
    assert_int_equal(c.cleaned_at_close, 1);
    assert_int_equal(c.ended_at_close, 1);
    assert_int_equal(c.cleanup_rc, 0);
    assert_int_equal(c.free_rc, 0);
}

/* test_async_gen_asyncio_aclose_07-style (an exception in the cleanup
 * propagates from aclose): "or the body's error other than -ECANCELED". */
static void test_gen_aclose_error(void **state)
{
    (void)state;
    struct gen_ctx c = {.count = 100, .close_err = -EIO};
    assert_int_equal(run_main(1, gen_close_main, &c), 0);
    assert_int_equal(c.close_rc, -EIO);
    assert_int_equal(c.cleaned_at_close, 1);
}

/* test_async_gen_aclose_not_started-style: "A generator never started is
 * closed without running". */
static void test_gen_close_never_started(void **state)
{
    (void)state;
    struct gen_ctx c = {.count = 0};
    assert_int_equal(run_main(1, gen_close_main, &c), 0);
    assert_int_equal(c.new_rc, 0);
    assert_int_equal(c.close_rc, 0);
    assert_int_equal(atomic_load(&c.started), 0);
    assert_int_equal(c.free_rc, 0);
}

static int gen_cancelled_consumer(void *arg, void **res)
{
    struct gen_ctx *c = arg;
    if ((c->new_rc = rv_gen_new(NULL, gen_body, c, NULL, &c->g)) < 0)
        return 0;
    gen_pull(c);
    atomic_store(&c->phase, 1);
    gen_pull(c); /* the body sleeps; the main task cancels us */
    c->free_rc = rv_gen_free(c->g);
    return 0;
}

static int gen_cancel_main(void *arg, void **res)
{
    struct gen_ctx *c = arg;
    int rc = rv_spawn(NULL, gen_cancelled_consumer, c, NULL, &c->consumer);
    if (rc < 0)
        return rc;
    if ((rc = task_wait_atomic(&c->phase, 1)) < 0)
        return rc;
    settle();
    c->cancel_rc = rv_task_cancel(c->consumer, NULL);
    finish(rv_task_future(c->consumer));
    c->body_ended = task_wait_atomic(&c->ended, 1);
    rv_task_release(c->consumer);
    return 0;
}

/* rv_gen_next: "-ECANCELED when the caller is cancelled while waiting (the
 * generator is closed then)": the body, busy producing the next value, is
 * cancelled and runs its cleanup. */
static void test_gen_consumer_cancelled(void **state)
{
    (void)state;
    struct gen_ctx c = {.count = 3, .delay_ns = LONG_SLEEP};
    assert_int_equal(run_main(1, gen_cancel_main, &c), 0);
    assert_int_equal(c.new_rc, 0);
    assert_int_equal(c.cancel_rc, 0);
    assert_int_equal(c.n, 2);
    expect_ints("next", c.rcs, (int[]){1, -ECANCELED}, 2);
    assert_int_equal(c.body_ended, 0);
    assert_int_equal(c.yield_rc, -ECANCELED);
    assert_int_equal(atomic_load(&c.cleaned), 1);
    assert_int_equal(c.free_rc, 0);
}

static int gen_take_one(void *arg, void **res)
{
    gen_pull(arg);
    return 0;
}

/* rv_gen_free: "Never suspends; any thread. A body that has not ended is
 * cancelled (its pending rv_gen_yield returns -ECANCELED) and finishes on its
 * own". Freed here from the test thread. */
static void test_gen_free_unfinished_from_plain_thread(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    struct gen_ctx c = {.count = 100, .cleanup_ns = 2 * MS};
    assert_int_equal(rv_gen_new(rt, gen_body, &c, NULL, &c.g), 0);
    assert_int_equal(run_task(rt, gen_take_one, &c, NULL), 0);
    assert_int_equal(c.rcs[0], 1);
    assert_int_equal(c.vals[0], 10);
    assert_int_equal(atomic_load(&c.ended), 0);
    assert_int_equal(rv_gen_free(c.g), 0);
    assert_true(wait_atomic(&c.ended, 1));
    assert_int_equal(atomic_load(&c.cleaned), 1);
    assert_int_equal(c.yield_rc, -ECANCELED);
    free_runtime(rt);
}

/* ------------------------------------------------------------------------- */
/* Plain threads and NULL handles                                             */

/* combine.h: "Every call here that waits may suspend: it runs only inside a
 * task (-EPERM from a plain thread)"; rv_as_completed_new and rv_gen_new
 * work from any thread; nothing is touched by the refused calls. */
static void test_combine_outside_task(void **state)
{
    (void)state;
    rv_runtime *rt = new_runtime(1);
    rv_future *f = new_future(rt);
    rv_future *fs[1] = {f};
    int code = 0;
    void *r = NULL;
    rv_future *d[1], *p[1];
    size_t nd = 0, np = 0;
    assert_int_equal(rv_gather(fs, 1, 0, &r, &code), -EPERM);
    assert_int_equal(rv_wait(fs, 1, -1, RV_ALL_COMPLETED, d, &nd, p, &np), -EPERM);
    assert_int_equal(rv_wait_for(f, 0, NULL), -EPERM);
    rv_timeout s;
    assert_int_equal(rv_timeout_enter(&s, SEC), -EPERM);
    assert_int_equal(rv_timeout_enter_at(&s, rv_now() + SEC), -EPERM);
    rv_taskgroup *g = NULL;
    assert_int_equal(rv_taskgroup_new(&g), -EPERM);
    rv_as_completed *it = NULL;
    assert_int_equal(rv_as_completed_new(fs, 1, -1, &it), 0);
    rv_future *next = NULL;
    assert_int_equal(rv_as_completed_next(it, &next), -EPERM);
    assert_int_equal(rv_as_completed_free(it), 0);
    struct gen_ctx gc = {.count = 1};
    rv_gen *gen = NULL;
    assert_int_equal(rv_gen_new(rt, gen_body, &gc, NULL, &gen), 0);
    assert_int_equal(rv_gen_next(gen, &r), -EPERM);
    sleep_ms(10);
    assert_int_equal(atomic_load(&gc.started), 0);
    assert_int_equal(rv_gen_free(gen), 0);
    assert_false(rv_future_done(f));
    assert_int_equal(rv_future_release(f), 0);
    free_runtime(rt);
}

/* ravel.h: "A NULL handle returns -EINVAL; it never crashes" (the calls that
 * do not suspend). */
static void test_combine_null_handles(void **state)
{
    (void)state;
    rv_future *out = NULL;
    int codes[1];
    assert_int_equal(rv_shield(NULL, &out), -EINVAL);
    assert_int_equal(rv_as_completed_free(NULL), -EINVAL);
    assert_int_equal(rv_taskgroup_free(NULL), -EINVAL);
    assert_int_equal(rv_taskgroup_errors(NULL, codes, 1), -EINVAL);
    assert_int_equal(rv_gen_free(NULL), -EINVAL);
    rv_gen *gen = NULL;
    assert_int_equal(rv_gen_new(NULL, gen_body, NULL, NULL, &gen), -EINVAL); /* no runtime */
}

/* ------------------------------------------------------------------------- */
/* Stress                                                                     */

#define GATHER_STRESS_N (10000 / SCALE_DIV)
#define TG_STRESS_N (1000 / SCALE_DIV)

struct gather_stress_ctx {
    size_t n, spawned, bad;
    rv_task **tasks;
    rv_future **fs;
    void **results;
    int *codes;
    int rc;
};

static int stress_child(void *arg, void **res)
{
    int rc = rv_yield();
    if (rc < 0)
        return rc;
    *res = arg;
    return 0;
}

static int gather_stress_main(void *arg, void **res)
{
    struct gather_stress_ctx *c = arg;
    int rc = 0;
    for (; c->spawned < c->n && rc == 0; c->spawned++) {
        size_t i = c->spawned;
        rc = rv_spawn(NULL, stress_child, IP(i), NULL, &c->tasks[i]);
        if (rc == 0)
            c->fs[i] = rv_task_future(c->tasks[i]);
    }
    if (rc == 0) {
        c->rc = rv_gather(c->fs, c->n, 0, c->results, c->codes);
        for (size_t i = 0; i < c->n; i++)
            c->bad += PI(c->results[i]) != (intptr_t)i || c->codes[i] != 0;
    }
    for (size_t i = 0; i < c->spawned; i++)
        if (c->tasks[i] != NULL)
            rv_task_release(c->tasks[i]);
    return rc;
}

/* Stress: gather over 10,000 tasks on 2 workers: every result in its place. */
static void test_gather_stress(void **state)
{
    (void)state;
    struct gather_stress_ctx c = {.n = GATHER_STRESS_N, .rc = UNSET};
    c.tasks = calloc(c.n, sizeof *c.tasks);
    c.fs = calloc(c.n, sizeof *c.fs);
    c.results = calloc(c.n, sizeof *c.results);
    c.codes = calloc(c.n, sizeof *c.codes);
    assert_true(c.tasks && c.fs && c.results && c.codes);
    assert_int_equal(run_main(2, gather_stress_main, &c), 0);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.bad, 0);
    free(c.tasks);
    free(c.fs);
    free(c.results);
    free(c.codes);
}

struct tg_stress_ctx {
    size_t n;
    struct kid *kids;
    int spawn_rc, wait_rc, nerr, err0, cancelled, done;
};

static int tg_stress_main(void *arg, void **res)
{
    struct tg_stress_ctx *c = arg;
    rv_taskgroup *g = NULL;
    int rc = rv_taskgroup_new(&g);
    if (rc < 0)
        return rc;
    c->spawn_rc = spawn_kids(g, c->kids, c->n);
    c->wait_rc = rv_taskgroup_wait(g, c->spawn_rc);
    c->nerr = rv_taskgroup_errors(g, &c->err0, 1);
    for (size_t i = 0; i < c->n; i++)
        if (c->kids[i].task != NULL)
            c->cancelled += rv_future_cancelled(kf(&c->kids[i]));
    c->done = count_done(c->kids, c->n);
    rv_taskgroup_free(g);
    return 0;
}

/* Stress: a TaskGroup of 1,000 children on 2 workers where one fails: every
 * other child is cancelled, one error, wait returns it. */
static void test_taskgroup_stress(void **state)
{
    (void)state;
    struct tg_stress_ctx c = {.n = TG_STRESS_N};
    c.kids = calloc(c.n, sizeof *c.kids);
    assert_non_null(c.kids);
    for (size_t i = 0; i < c.n; i++)
        c.kids[i].sleep_ns = LONG_SLEEP;
    c.kids[c.n / 2] = (struct kid){.sleep_ns = 20 * MS, .rc = -EIO};
    rv_runtime *rt = new_runtime(2);
    assert_int_equal(run_task(rt, tg_stress_main, &c, NULL), 0);
    assert_int_equal(c.spawn_rc, 0);
    assert_int_equal(c.wait_rc, -EIO);
    assert_int_equal(c.nerr, 1);
    assert_int_equal(c.err0, -EIO);
    assert_int_equal((size_t)c.done, c.n);
    assert_int_equal((size_t)c.cancelled, c.n - 1);
    release_kids(c.kids, c.n);
    free_runtime(rt);
    free(c.kids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* gather */
        cmocka_unit_test(test_gather_success),
        cmocka_unit_test(test_gather_one_exception),
        cmocka_unit_test(test_gather_one_exception_others_keep_running),
        cmocka_unit_test(test_gather_return_exceptions),
        cmocka_unit_test(test_gather_one_cancellation),
        cmocka_unit_test(test_gather_return_exceptions_one_cancellation),
        cmocka_unit_test(test_gather_duplicate_futures),
        cmocka_unit_test(test_gather_cancellation_broadcast),
        cmocka_unit_test(test_combine_bad_arguments),
        /* wait */
        cmocka_unit_test(test_wait_first_completed),
        cmocka_unit_test(test_wait_first_exception),
        cmocka_unit_test(test_wait_first_exception_in_wait),
        cmocka_unit_test(test_wait_all_completed),
        cmocka_unit_test(test_wait_with_timeout),
        cmocka_unit_test(test_wait_duplicates),
        cmocka_unit_test(test_wait_really_done),
        cmocka_unit_test(test_wait_cancelled_leaves_futures_alone),
        /* wait_for */
        cmocka_unit_test(test_wait_for_result_in_time),
        cmocka_unit_test(test_wait_for),
        cmocka_unit_test(test_wait_for_with_global_loop),
        cmocka_unit_test(test_wait_for_waits_for_task_cancellation),
        cmocka_unit_test(test_wait_for_waits_for_task_cancellation_w_timeout_0),
        cmocka_unit_test(test_wait_for_timeout_0_task_not_started),
        cmocka_unit_test(test_wait_for_timeout_0_future_done),
        cmocka_unit_test(test_wait_for_timeout_0_pending_future),
        cmocka_unit_test(test_wait_for_reraises_exception_during_cancellation),
        cmocka_unit_test(test_wait_for_cancel_suppressed),
        cmocka_unit_test(test_cancel_wait_for),
        cmocka_unit_test(test_cancel_blocking_wait_for),
        /* shield */
        cmocka_unit_test(test_shield_result),
        cmocka_unit_test(test_shield_cancel_inner),
        cmocka_unit_test(test_shield_cancel_outer),
        cmocka_unit_test(test_shield_effect),
        cmocka_unit_test(test_gather_shield),
        /* as_completed */
        cmocka_unit_test(test_as_completed),
        cmocka_unit_test(test_as_completed_with_timeout),
        cmocka_unit_test(test_as_completed_duplicates),
        cmocka_unit_test(test_as_completed_holds_references),
        /* timeout scopes */
        cmocka_unit_test(test_timeout_basic),
        cmocka_unit_test(test_timeout_at_basic),
        cmocka_unit_test(test_timeout_zero_and_past),
        cmocka_unit_test(test_timeout_not_called),
        cmocka_unit_test(test_timeout_disabled),
        cmocka_unit_test(test_timeout_foreign_exception_passed),
        cmocka_unit_test(test_timeout_reschedule_later),
        cmocka_unit_test(test_timeout_reschedule_earlier),
        cmocka_unit_test(test_timeout_reschedule_never),
        cmocka_unit_test(test_timeout_nested_same_deadline),
        cmocka_unit_test(test_timeout_nested_inner_expires_first),
        cmocka_unit_test(test_timeout_nested_outer_expires_first),
        cmocka_unit_test(test_timeout_foreign_cancel_not_expired),
        cmocka_unit_test(test_timeout_outer_cancel_not_converted),
        cmocka_unit_test(test_timeout_deadline_while_last_await_completes),
        cmocka_unit_test(test_timeout_expires_without_following_await),
        /* TaskGroup */
        cmocka_unit_test(test_taskgroup_01),
        cmocka_unit_test(test_taskgroup_03),
        cmocka_unit_test(test_taskgroup_04),
        cmocka_unit_test(test_taskgroup_05),
        cmocka_unit_test(test_taskgroup_two_children_fail),
        cmocka_unit_test(test_taskgroup_cancellation),
        cmocka_unit_test(test_taskgroup_cancellation_in_body),
        cmocka_unit_test(test_taskgroup_cancel_counting),
        cmocka_unit_test(test_taskgroup_09),
        cmocka_unit_test(test_taskgroup_spawn_after_failure),
        cmocka_unit_test(test_taskgroup_free_before_wait),
        /* generators */
        cmocka_unit_test(test_gen_values_in_order),
        cmocka_unit_test(test_gen_error),
        cmocka_unit_test(test_gen_lazy_start),
        cmocka_unit_test(test_gen_aclose),
        cmocka_unit_test(test_gen_aclose_error),
        cmocka_unit_test(test_gen_close_never_started),
        cmocka_unit_test(test_gen_consumer_cancelled),
        cmocka_unit_test(test_gen_free_unfinished_from_plain_thread),
        /* plain threads, NULL handles */
        cmocka_unit_test(test_combine_outside_task),
        cmocka_unit_test(test_combine_null_handles),
        /* stress */
        cmocka_unit_test(test_gather_stress),
        cmocka_unit_test(test_taskgroup_stress),
    };
    /* RV_TEST_FILTER=pattern runs only the matching tests (debugging). */
    const char *filter = getenv("RV_TEST_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
