/* test-queue.c - rv_queue (include/ravel/sync.h, "Queues").
 *
 * Covers:
 *   - ports of CPython's Lib/test/test_asyncio/test_queues.py (3.13, the
 *     shutdown tests included; the join and shutdown tests run on all three
 *     kinds, as CPython runs them on Queue, LifoQueue and PriorityQueue);
 *   - the header's own statements (argument checks, NULL handles, the
 *     "Common rules" of sync.h: FIFO service, no barging, a woken-then-
 *     cancelled waiter passes on what it was given; -EBUSY, -EDEADLK, -EPERM);
 *   - timeouts, from a task and from a plain thread;
 *   - plain threads blocking in put/get, feeding tasks and fed by them;
 *   - stress across workers with random cancellations of waiting getters and
 *     putters: every item is delivered exactly once.
 * Each test names, in the comment above it, the CPython test it ports or the
 * header statement it checks.
 *
 * Scenario tests: a "main" task runs on a 1-worker runtime, so a task it
 * starts does not run until main suspends; settle() (a few rv_yield rounds)
 * lets every started task run until it waits again. main writes what it sees
 * into a log ("get=1 put_nowait=EAGAIN g1=pending ..."): a return code as
 * rv_err_name gives it (OK for 0), an item as its number, a task still
 * waiting as "pending". The test thread compares the log with the expected
 * one after main has ended.
 *
 * cmocka is not thread-safe: only the test thread asserts. Tasks and helper
 * threads record into atomics and fields the test thread reads after waiting
 * for them, always with a deadline (WAIT_NS).
 */
#define RV_FAULT_INJECTION 1 /* rv__fault_alloc_after, from the static library */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ravel.h>

#define WAIT_NS (20 * SEC)
#include "test-util.h"
#include "test-scale.h"

#include "executor/alloc.h"

#define SETTLE_ROUNDS 4 /* rv_yield rounds in settle() */
#define OP_PENDING 1    /* op.rc until the call returned (no errno is positive) */
#define MAX_OPS 8

/* Return from the enclosing task when a setup call fails. */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int try_rc_ = (expr);                                                                      \
        if (try_rc_ < 0)                                                                           \
            return try_rc_;                                                                        \
    } while (0)

/* ------------------------------------------------------------------------- */
/* Queues                                                                     */

static enum rv_queue_kind KIND_FIFO = RV_QUEUE_FIFO, KIND_LIFO = RV_QUEUE_LIFO,
                          KIND_PRIORITY = RV_QUEUE_PRIORITY;

/* The comparator of the priority queues of integer items. */
static int cmp_int(const void *a, const void *b)
{
    intptr_t x = PI(a), y = PI(b);
    return (x > y) - (x < y);
}

/* The kind a test runs on: its cmocka initial state, FIFO when none. */
static enum rv_queue_kind kind_of(void **state)
{
    return *state ? *(const enum rv_queue_kind *)*state : RV_QUEUE_FIFO;
}

static rv_queue *make_queue(enum rv_queue_kind kind, long maxsize)
{
    rv_queue *q = NULL;
    assert_int_equal(rv_queue_new(kind, maxsize, cmp_int, &q), 0);
    assert_non_null(q);
    return q;
}

static void free_queue(rv_queue *q) { assert_int_equal(rv_queue_free(q), 0); }

/* ------------------------------------------------------------------------- */
/* Ops: one put, get or join call, run by a task or a plain thread            */

struct op {
    rv_task_fn fn; /* put_body, get_body, join_body, ... */
    rv_queue *q;
    intptr_t in;        /* put: the first item (then in+1, ...) */
    int n;              /* put/get: how many calls */
    int64_t timeout_ns; /* of each call */
    void *out;          /* get: the last item taken */
    atomic_int count;   /* calls that succeeded so far */
    atomic_int rc;      /* OP_PENDING until the last call returned */
    rv_task *task;
};

static int put_body(void *arg, void **res)
{
    struct op *o = arg;
    int rc = 0;
    for (int i = 0; i < o->n && rc == 0; i++) {
        rc = rv_queue_put(o->q, IP(o->in + i), o->timeout_ns);
        if (rc == 0)
            atomic_fetch_add(&o->count, 1);
    }
    atomic_store(&o->rc, rc);
    return 0;
}

static int get_body(void *arg, void **res)
{
    struct op *o = arg;
    int rc = 0;
    for (int i = 0; i < o->n && rc == 0; i++) {
        void *item = NULL;
        rc = rv_queue_get(o->q, o->timeout_ns, &item);
        if (rc == 0) {
            o->out = item;
            atomic_fetch_add(&o->count, 1);
        }
    }
    atomic_store(&o->rc, rc); /* publishes o->out */
    return 0;
}

static int join_body(void *arg, void **res)
{
    struct op *o = arg;
    atomic_store(&o->rc, rv_queue_join(o->q));
    return 0;
}

static void op_init(struct op *o, rv_task_fn fn, rv_queue *q, intptr_t in, int n,
                    int64_t timeout_ns)
{
    o->fn = fn;
    o->q = q;
    o->in = in;
    o->n = n;
    o->timeout_ns = timeout_ns;
    o->out = NULL;
    atomic_store(&o->count, 0);
    atomic_store(&o->rc, OP_PENDING);
    o->task = NULL;
}

static int op_rc(struct op *o) { return atomic_load(&o->rc); }

/* In a task: let every started task run until it returns or waits again.
 * More than one round, since a woken waiter may need more than one. */
static int settle(void)
{
    for (int i = 0; i < SETTLE_ROUNDS; i++)
        TRY(rv_yield());
    return 0;
}

/* In a task: start `o` as a task of its own; it does not run yet. */
static int spawn_op(struct op *o, rv_task_fn fn, rv_queue *q, intptr_t in, int n,
                    int64_t timeout_ns)
{
    op_init(o, fn, q, in, n, timeout_ns);
    return rv_spawn(NULL, fn, o, NULL, &o->task);
}

/* In a task: start `o` and let it run until it returns or waits, so that the
 * tasks started one after the other wait in that order. */
static int start_op(struct op *o, rv_task_fn fn, rv_queue *q, intptr_t in, int n,
                    int64_t timeout_ns)
{
    TRY(spawn_op(o, fn, q, in, n, timeout_ns));
    return settle();
}

static int start_put(struct op *o, rv_queue *q, intptr_t item)
{
    return start_op(o, put_body, q, item, 1, -1);
}
static int start_get(struct op *o, rv_queue *q) { return start_op(o, get_body, q, 0, 1, -1); }
static int start_join(struct op *o, rv_queue *q) { return start_op(o, join_body, q, 0, 1, -1); }

/* In a task: wait (WAIT_NS at most) for o's task to end. A task still waiting
 * afterwards shows as "pending" in the log. */
static void finish(struct op *o)
{
    if (o->task)
        rv_future_wait(rv_task_future(o->task), WAIT_NS, NULL);
}

/* ------------------------------------------------------------------------- */
/* Scenarios: a main task on a fresh runtime, and its log                     */

struct later { /* an rv_call_later callback's work */
    rv_queue *q;
    intptr_t item;
    void *out;
    atomic_int rc;
};

struct scen {
    rv_queue *q;
    long param; /* a test's knob: shutdown(immediate), ... */
    struct op op[MAX_OPS];
    struct later cb;
    char log[1024];
    size_t len;
};

static void note(struct scen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct scen *s, const char *fmt, ...)
{
    size_t cap = sizeof s->log;
    if (s->len > 0 && s->len + 1 < cap)
        s->log[s->len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->log + s->len, cap - s->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        s->len = s->len + (size_t)n < cap ? s->len + (size_t)n : cap - 1;
}

static const char *rc_name(int rc) { return rc == OP_PENDING ? "pending" : rv_err_name(rc); }

static void note_rc(struct scen *s, const char *label, int rc)
{
    note(s, "%s=%s", label, rc_name(rc));
}

/* A get's outcome: the item taken, or the error. */
static void note_get(struct scen *s, const char *label, int rc, void *item)
{
    if (rc == 0)
        note(s, "%s=%ld", label, (long)PI(item));
    else
        note_rc(s, label, rc);
}

static void note_op(struct scen *s, const char *label, struct op *o)
{
    if (o->fn == get_body)
        note_get(s, label, op_rc(o), o->out);
    else
        note_rc(s, label, op_rc(o));
}

static void note_size(struct scen *s) { note(s, "size=%ld", rv_queue_size(s->q)); }

/* Calls on s->q whose outcome goes to the log. put and get wait without a
 * limit: one that should not wait and does shows as main's timeout. */
static void do_put(struct scen *s, intptr_t item)
{
    note_rc(s, "put", rv_queue_put(s->q, IP(item), -1));
}
static void do_get_timed(struct scen *s, int64_t timeout_ns)
{
    void *item = NULL;
    int rc = rv_queue_get(s->q, timeout_ns, &item);
    note_get(s, "get", rc, item);
}
static void do_get(struct scen *s) { do_get_timed(s, -1); }
static void do_put_nowait(struct scen *s, intptr_t item)
{
    note_rc(s, "put_nowait", rv_queue_put_nowait(s->q, IP(item)));
}
static void do_get_nowait(struct scen *s)
{
    void *item = NULL;
    int rc = rv_queue_get_nowait(s->q, &item);
    note_get(s, "get_nowait", rc, item);
}
static void do_task_done(struct scen *s) { note_rc(s, "task_done", rv_queue_task_done(s->q)); }
static void do_shutdown(struct scen *s, bool immediate, void (*drop)(void *))
{
    note_rc(s, "shutdown", rv_queue_shutdown(s->q, immediate, drop));
}
/* Free the queue (main owns it then): "free=OK" or the error. */
static void do_free(struct scen *s)
{
    int rc = rv_queue_free(s->q);
    note_rc(s, "free", rc);
    if (rc == 0)
        s->q = NULL;
}

/* Everything a shut-down, empty queue refuses (asyncio's assertRaisesShutdown
 * block after each shutdown test). */
#define REFUSED "put=ESHUTDOWN put_nowait=ESHUTDOWN get=ESHUTDOWN get_nowait=ESHUTDOWN"
static void do_refused(struct scen *s)
{
    do_put(s, 99);
    do_put_nowait(s, 99);
    do_get(s);
    do_get_nowait(s);
}

/* Run main_fn(s) as a task on a fresh runtime of `workers` workers and wait
 * for it; then shut the runtime down, which cancels the tasks still waiting. */
static void run_scenario(struct scen *s, unsigned workers, rv_task_fn main_fn)
{
    rv_runtime *rt = new_runtime(workers);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, main_fn, s, NULL, &t), 0);
    int rc = rv_future_wait(rv_task_future(t), WAIT_NS, NULL);
    if (rc != 0) /* on a timeout main is parked: its log is still readable */
        print_message("main: %s; its log so far: \"%s\"\n", rv_err_name(rc), s->log);
    assert_int_equal(rc, 0);
    assert_int_equal(rv_task_release(t), 0);
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    free_runtime(rt);
}

static void end_scenario(struct scen *s)
{
    for (int i = 0; i < MAX_OPS; i++)
        if (s->op[i].task)
            assert_int_equal(rv_task_release(s->op[i].task), 0);
    if (s->q)
        free_queue(s->q); /* -EBUSY here: a waiter outlived its task */
}

static void check_log(struct scen *s, const char *expected)
{
    assert_string_equal(s->log, expected);
    end_scenario(s);
}

/* A scenario on a `kind` queue of `maxsize`, main on `workers` workers. */
static void scenario_full(enum rv_queue_kind kind, long maxsize, long param, unsigned workers,
                          rv_task_fn main_fn, const char *expected)
{
    struct scen s = {.q = make_queue(kind, maxsize), .param = param};
    run_scenario(&s, workers, main_fn);
    check_log(&s, expected);
}

static void scenario(enum rv_queue_kind kind, long maxsize, rv_task_fn main_fn,
                     const char *expected)
{
    scenario_full(kind, maxsize, 0, 1, main_fn, expected);
}

/* The same body run directly on the test thread (a plain thread), with no
 * runtime at all: the queue belongs to no runtime. */
static void scenario_on_thread(enum rv_queue_kind kind, long maxsize, rv_task_fn body,
                               const char *expected)
{
    struct scen s = {.q = make_queue(kind, maxsize)};
    assert_int_equal(body(&s, NULL), 0);
    check_log(&s, expected);
}

/* rv_call_later callbacks (no task: only the *_nowait calls). */
static void put_nowait_cb(void *arg)
{
    struct later *l = arg;
    atomic_store(&l->rc, rv_queue_put_nowait(l->q, IP(l->item)));
}
static void get_nowait_cb(void *arg)
{
    struct later *l = arg;
    void *item = NULL;
    int rc = rv_queue_get_nowait(l->q, &item);
    l->out = item;
    atomic_store(&l->rc, rc);
}
static int call_later(struct scen *s, int64_t delay_ns, rv_callback_fn fn, intptr_t item)
{
    s->cb.q = s->q;
    s->cb.item = item;
    atomic_store(&s->cb.rc, OP_PENDING);
    return rv_call_later(rv_runtime_current(), delay_ns, fn, &s->cb, NULL);
}

/* ------------------------------------------------------------------------- */
/* Construction, NULL handles, sizes                                          */

/* rv_queue_new: "-EINVAL for a bad kind, a negative maxsize or a missing
 * cmp"; "cmp is required for RV_QUEUE_PRIORITY and ignored otherwise". */
static void test_new_invalid(void **state)
{
    rv_queue *q = NULL;
    assert_int_equal(rv_queue_new((enum rv_queue_kind)42, 0, cmp_int, &q), -EINVAL);
    assert_int_equal(rv_queue_new(RV_QUEUE_FIFO, -1, NULL, &q), -EINVAL);
    assert_int_equal(rv_queue_new(RV_QUEUE_PRIORITY, 0, NULL, &q), -EINVAL);
    assert_null(q);
    assert_int_equal(rv_queue_new(RV_QUEUE_FIFO, 0, NULL, &q), 0);
    free_queue(q);
    q = NULL;
    assert_int_equal(rv_queue_new(RV_QUEUE_LIFO, 3, NULL, &q), 0);
    assert_int_equal(rv_queue_maxsize(q), 3);
    free_queue(q);
}

/* rv_queue_new: "-ENOMEM" (allocation fault injection), leaving *out NULL. */
static void test_new_enomem(void **state)
{
    rv_queue *q = IP(1);
    rv__fault_alloc_after(0);
    int rc = rv_queue_new(RV_QUEUE_FIFO, 0, NULL, &q);
    rv__fault_alloc_after(-1);
    assert_int_equal(rc, -ENOMEM);
    assert_null(q);
}

/* ravel.h conventions: "A NULL handle returns -EINVAL; it never crashes." */
static void test_null_handle(void **state)
{
    void *item = NULL;
    assert_int_equal(rv_queue_free(NULL), -EINVAL);
    assert_int_equal(rv_queue_put(NULL, IP(1), 0), -EINVAL);
    assert_int_equal(rv_queue_get(NULL, 0, &item), -EINVAL);
    assert_int_equal(rv_queue_put_nowait(NULL, IP(1)), -EINVAL);
    assert_int_equal(rv_queue_get_nowait(NULL, &item), -EINVAL);
    assert_int_equal(rv_queue_task_done(NULL), -EINVAL);
    assert_int_equal(rv_queue_shutdown(NULL, true, NULL), -EINVAL);
    assert_int_equal(rv_queue_size(NULL), -EINVAL);
    assert_int_equal(rv_queue_maxsize(NULL), -EINVAL);
    (void)rv_queue_empty(NULL);
    (void)rv_queue_full(NULL);
}

/* test_empty */
static void test_empty(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 0);
    void *item = NULL;
    assert_true(rv_queue_empty(q));
    assert_int_equal(rv_queue_size(q), 0);
    assert_int_equal(rv_queue_put_nowait(q, IP(1)), 0);
    assert_false(rv_queue_empty(q));
    assert_int_equal(rv_queue_size(q), 1);
    assert_int_equal(rv_queue_get_nowait(q, &item), 0);
    assert_int_equal(PI(item), 1);
    assert_true(rv_queue_empty(q));
    free_queue(q);
}

/* test_full; rv_queue_full: "Always false for an unbounded queue". */
static void test_full(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 0);
    assert_int_equal(rv_queue_maxsize(q), 0);
    assert_false(rv_queue_full(q));
    free_queue(q);

    q = make_queue(RV_QUEUE_FIFO, 1);
    assert_int_equal(rv_queue_maxsize(q), 1);
    assert_false(rv_queue_full(q));
    assert_int_equal(rv_queue_put_nowait(q, IP(1)), 0);
    assert_true(rv_queue_full(q));
    void *item = NULL;
    assert_int_equal(rv_queue_get_nowait(q, &item), 0);
    assert_false(rv_queue_full(q));
    free_queue(q);
}

/* test_float_maxsize, in C: maxsize 0 is unbounded ("maxsize 0: unbounded");
 * such a queue is never full and takes everything put_nowait gives it. */
static void test_unbounded(void **state)
{
    enum { N = 10000 };
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 0);
    for (int i = 1; i <= N; i++) {
        assert_int_equal(rv_queue_put_nowait(q, IP(i)), 0);
        assert_false(rv_queue_full(q));
    }
    assert_int_equal(rv_queue_size(q), N);
    for (int i = 1; i <= N; i++) {
        void *item = NULL;
        assert_int_equal(rv_queue_get_nowait(q, &item), 0);
        assert_int_equal(PI(item), i);
    }
    assert_true(rv_queue_empty(q));
    free_queue(q);
}

/* "A queue of void * items": NULL is an item like any other. */
static void test_null_item(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 1);
    void *item = IP(7);
    assert_int_equal(rv_queue_put_nowait(q, NULL), 0);
    assert_int_equal(rv_queue_size(q), 1);
    assert_true(rv_queue_full(q));
    assert_int_equal(rv_queue_get_nowait(q, &item), 0);
    assert_null(item);
    assert_true(rv_queue_empty(q));
    free_queue(q);
}

/* test_nonblocking_get / test_nonblocking_put */
static void test_nonblocking_get_put(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 0);
    void *item = NULL;
    assert_int_equal(rv_queue_put_nowait(q, IP(1)), 0);
    assert_int_equal(rv_queue_get_nowait(q, &item), 0);
    assert_int_equal(PI(item), 1);
    free_queue(q);
}

/* test_nonblocking_get_exception; rv_queue_get_nowait: "-EAGAIN when empty". */
static void test_nonblocking_get_exception(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 0);
    void *item = IP(7);
    assert_int_equal(rv_queue_get_nowait(q, &item), -EAGAIN);
    free_queue(q);
}

/* test_nonblocking_put_exception; rv_queue_put_nowait: "-EAGAIN when full";
 * the refused item is not in the queue. */
static void test_nonblocking_put_exception(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 1);
    void *item = NULL;
    assert_int_equal(rv_queue_put_nowait(q, IP(1)), 0);
    assert_int_equal(rv_queue_put_nowait(q, IP(2)), -EAGAIN);
    assert_int_equal(rv_queue_size(q), 1);
    assert_int_equal(rv_queue_get_nowait(q, &item), 0);
    assert_int_equal(PI(item), 1);
    assert_int_equal(rv_queue_get_nowait(q, &item), -EAGAIN);
    free_queue(q);
}

/* ------------------------------------------------------------------------- */
/* Order                                                                      */

static int order_main(void *arg, void **res)
{
    struct scen *s = arg;
    do_put(s, 1);
    do_put(s, 3);
    do_put(s, 2);
    for (int i = 0; i < 3; i++)
        do_get(s);
    return 0;
}

#define ORDER_PUTS "put=OK put=OK put=OK "

/* QueueBasicTests.test_order */
static void test_order(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, order_main, ORDER_PUTS "get=1 get=3 get=2");
}

/* LifoQueueTests.test_order */
static void test_lifo_order(void **state)
{
    scenario(RV_QUEUE_LIFO, 0, order_main, ORDER_PUTS "get=2 get=3 get=1");
}

/* PriorityQueueTests.test_order ("smallest first by cmp") */
static void test_priority_order(void **state)
{
    scenario(RV_QUEUE_PRIORITY, 0, order_main, ORDER_PUTS "get=1 get=2 get=3");
}

static uint32_t xorshift(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

struct job {
    int prio;
    int taken;
};

static int cmp_job(const void *a, const void *b)
{
    const struct job *x = a, *y = b;
    return (x->prio > y->prio) - (x->prio < y->prio);
}

/* rv_queue_cmp: "Negative, zero or positive as a orders before, with or after
 * b", called on the items themselves (here pointers to the caller's structs);
 * RV_QUEUE_PRIORITY: "smallest first by cmp; equal items in no set order". */
static void test_priority_comparator_gets_items(void **state)
{
    enum { N = 300 };
    static struct job jobs[N];
    uint32_t rng = 7;
    rv_queue *q = NULL;
    assert_int_equal(rv_queue_new(RV_QUEUE_PRIORITY, 0, cmp_job, &q), 0);
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct job){.prio = (int)(xorshift(&rng) % 40)};
        assert_int_equal(rv_queue_put_nowait(q, &jobs[i]), 0);
    }
    int last = -1;
    for (int i = 0; i < N; i++) {
        void *item = NULL;
        assert_int_equal(rv_queue_get_nowait(q, &item), 0);
        struct job *j = item;
        assert_true(j >= jobs && j < jobs + N);
        assert_true(j->prio >= last);
        last = j->prio;
        j->taken++;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(jobs[i].taken, 1);
    free_queue(q);
}

/* What a queue of each kind must hand back, kept as a plain array. */
struct model {
    enum rv_queue_kind kind;
    long items[64];
    int n;
};

static long model_get(struct model *m)
{
    int at = 0; /* FIFO: the oldest */
    if (m->kind == RV_QUEUE_LIFO)
        at = m->n - 1;
    else if (m->kind == RV_QUEUE_PRIORITY)
        for (int i = 1; i < m->n; i++)
            if (m->items[i] < m->items[at])
                at = i;
    long v = m->items[at];
    memmove(&m->items[at], &m->items[at + 1], (size_t)(m->n - at - 1) * sizeof m->items[0]);
    m->n--;
    return v;
}

/* The queue against a reference model over a random mix of put_nowait and
 * get_nowait on a small bounded queue (ring wrap-around, heap order with
 * equal items): -EAGAIN exactly when full or empty, size/empty/full, and the
 * kind's order (for the priority queue, an item equal to the smallest). */
static void test_matches_reference_model(void **state)
{
    enum { MAXSIZE = 8, OPS = 20000 };
    enum rv_queue_kind kind = kind_of(state);
    rv_queue *q = make_queue(kind, MAXSIZE);
    struct model m = {.kind = kind};
    uint32_t rng = 12345;
    long next = 1;
    for (int i = 0; i < OPS; i++) {
        if (xorshift(&rng) % 2) {
            long v = kind == RV_QUEUE_PRIORITY ? (long)(xorshift(&rng) % 16) : next++;
            int rc = rv_queue_put_nowait(q, IP(v));
            assert_int_equal(rc, m.n == MAXSIZE ? -EAGAIN : 0);
            if (rc == 0)
                m.items[m.n++] = v;
        } else {
            void *item = NULL;
            int rc = rv_queue_get_nowait(q, &item);
            assert_int_equal(rc, m.n == 0 ? -EAGAIN : 0);
            if (rc == 0)
                assert_int_equal(PI(item), model_get(&m));
        }
        assert_int_equal(rv_queue_size(q), m.n);
        assert_int_equal(rv_queue_empty(q), m.n == 0);
        assert_int_equal(rv_queue_full(q), m.n == MAXSIZE);
    }
    free_queue(q);
}

/* ------------------------------------------------------------------------- */
/* Blocking get and put (tasks)                                               */

static int maxsize_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *putter = &s->op[0];
    note(s, "maxsize=%ld", rv_queue_maxsize(s->q));
    TRY(start_op(putter, put_body, s->q, 1, 3, -1)); /* puts 1, 2, 3 */
    note(s, "have_been_put=%d", atomic_load(&putter->count));
    do_get(s);
    TRY(settle());
    note(s, "have_been_put=%d", atomic_load(&putter->count));
    do_get(s);
    do_get(s);
    finish(putter);
    note_op(s, "putter", putter);
    return 0;
}

/* QueueBasicTests.test_maxsize: the putter blocks after 2 items and resumes
 * after a get. */
static void test_maxsize(void **state)
{
    scenario(RV_QUEUE_FIFO, 2, maxsize_main,
             "maxsize=2 have_been_put=2 get=1 have_been_put=3 get=2 get=3 putter=OK");
}

static int blocking_get_main(void *arg, void **res)
{
    struct scen *s = arg;
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    do_get(s);
    return 0;
}

/* test_blocking_get */
static void test_blocking_get(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, blocking_get_main, "get=1");
}

static int get_with_putters_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *putter = &s->op[0];
    do_put(s, 1);
    TRY(start_put(putter, s->q, 2));
    note_op(s, "putter", putter);
    do_get(s);
    TRY(settle());
    note_op(s, "putter", putter);
    note_size(s);
    do_get_nowait(s);
    return 0;
}

/* test_get_with_putters: a get from a full queue lets the waiting putter in. */
static void test_get_with_putters(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, get_with_putters_main,
             "put=OK putter=pending get=1 putter=OK size=1 get_nowait=2");
}

static int blocking_get_wait_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *getter = &s->op[0];
    TRY(start_get(getter, s->q));
    note_op(s, "getter", getter);
    TRY(call_later(s, 10 * MS, put_nowait_cb, 1));
    finish(getter);
    note_op(s, "getter", getter);
    note_rc(s, "cb_put_nowait", atomic_load(&s->cb.rc));
    return 0;
}

/* test_blocking_get_wait: a getter waits until a callback put_nowait()s
 * ("Any thread", callbacks included). */
static void test_blocking_get_wait(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, blocking_get_wait_main, "getter=pending getter=1 cb_put_nowait=OK");
}

static int get_cancelled_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *getter = &s->op[0];
    TRY(start_op(getter, get_body, s->q, 0, 1, 1 * SEC));
    TRY(rv_sleep(10 * MS));
    do_put_nowait(s, 1);
    finish(getter);
    note_op(s, "getter", getter);
    return 0;
}

/* test_get_cancelled: a get with a timeout (wait_for) that an item beats. */
static void test_get_cancelled(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, get_cancelled_main, "put_nowait=OK getter=1");
}

static int get_cancelled_race_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *t1 = &s->op[0], *t2 = &s->op[1];
    TRY(start_get(t1, s->q));
    TRY(start_get(t2, s->q));
    TRY(rv_task_cancel(t1->task, NULL));
    TRY(settle());
    note_op(s, "t1", t1);
    do_put(s, 7);
    TRY(settle());
    note_op(s, "t2", t2);
    return 0;
}

/* test_get_cancelled_race: a cancelled getter does not take the item. */
static void test_get_cancelled_race(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, get_cancelled_race_main, "t1=ECANCELED put=OK t2=7");
}

static int get_with_waiting_putters_main(void *arg, void **res)
{
    struct scen *s = arg;
    TRY(start_put(&s->op[0], s->q, 1));
    TRY(start_put(&s->op[1], s->q, 2));
    do_get(s);
    do_get(s);
    finish(&s->op[1]);
    note_op(s, "a", &s->op[0]);
    note_op(s, "b", &s->op[1]);
    return 0;
}

/* test_get_with_waiting_putters */
static void test_get_with_waiting_putters(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, get_with_waiting_putters_main, "get=1 get=2 a=OK b=OK");
}

static int why_are_getters_waiting_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *producer = &s->op[0], *consumer = &s->op[1];
    TRY(spawn_op(producer, put_body, s->q, 1, 5, -1));
    TRY(spawn_op(consumer, get_body, s->q, 0, 5, -1));
    finish(producer);
    finish(consumer);
    note_op(s, "producer", producer);
    note(s, "consumer=%s taken=%d", rc_name(op_rc(consumer)), atomic_load(&consumer->count));
    note_size(s);
    return 0;
}

/* test_why_are_getters_waiting: producer and consumer through a 1-slot queue
 * both finish. */
static void test_why_are_getters_waiting(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, why_are_getters_waiting_main,
             "producer=OK consumer=OK taken=5 size=0");
}

static int getters_not_held_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *g = &s->op[0];
    do_get_timed(s, 100 * MS);
    TRY(start_get(g, s->q));
    TRY(rv_task_cancel(g->task, NULL));
    TRY(settle());
    note_op(s, "g", g);
    do_put_nowait(s, 1);
    do_get_nowait(s);
    do_free(s);
    return 0;
}

/* test_cancelled_getters_not_being_held_in_self_getters: a getter that timed
 * out (wait_for) or was cancelled is no longer a waiter: the next item is not
 * handed to it, and rv_queue_free ("-EBUSY while anyone waits") succeeds. */
static void test_cancelled_getters_not_being_held_in_self_getters(void **state)
{
    scenario(RV_QUEUE_FIFO, 5, getters_not_held_main,
             "get=ETIMEDOUT g=ECANCELED put_nowait=OK get_nowait=1 free=OK");
}

static int get_cancel_drop_one_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *reader = &s->op[0], *retry = &s->op[1];
    TRY(start_get(reader, s->q));
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(rv_queue_put_nowait(s->q, IP(2)));
    TRY(rv_task_cancel(reader->task, NULL));
    finish(reader);
    if (op_rc(reader) == -ECANCELED) { /* try again */
        TRY(spawn_op(retry, get_body, s->q, 0, 1, -1));
        finish(retry);
        reader = retry;
    }
    note_op(s, "result", reader); /* 2 would mean that 1 was dropped */
    do_get_nowait(s);
    return 0;
}

/* test_get_cancel_drop_one_pending_reader: a reader woken with item 1 and
 * cancelled before it runs does not lose item 1. */
static void test_get_cancel_drop_one_pending_reader(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, get_cancel_drop_one_main, "result=1 get_nowait=2");
}

static int get_cancel_drop_many_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *r1 = &s->op[0], *r2 = &s->op[1], *r3 = &s->op[2];
    TRY(start_get(r1, s->q));
    TRY(start_get(r2, s->q));
    TRY(start_get(r3, s->q));
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(rv_queue_put_nowait(s->q, IP(2)));
    TRY(rv_task_cancel(r1->task, NULL));
    finish(r1);
    note_op(s, "r1", r1);
    finish(r3);
    finish(r2);
    if (op_rc(r2) == 0 && op_rc(r3) == 0) { /* in no set order */
        long a = PI(r2->out), b = PI(r3->out);
        note(s, "r2,r3={%ld,%ld}", a < b ? a : b, a < b ? b : a);
    } else {
        note_op(s, "r2", r2);
        note_op(s, "r3", r3);
    }
    return 0;
}

/* test_get_cancel_drop_many_pending_readers; sync.h: "A waiter that was woken
 * ... and is cancelled before it runs passes what it was given on to the next
 * waiter, and returns -ECANCELED". */
static void test_get_cancel_drop_many_pending_readers(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, get_cancel_drop_many_main, "r1=ECANCELED r2,r3={1,2}");
}

static int blocking_put_main(void *arg, void **res)
{
    struct scen *s = arg;
    do_put(s, 1); /* no maxsize: does not wait */
    do_get(s);
    return 0;
}

/* test_blocking_put */
static void test_blocking_put(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, blocking_put_main, "put=OK get=1");
}

static int blocking_put_wait_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *putter = &s->op[0];
    TRY(start_op(putter, put_body, s->q, 1, 2, -1)); /* puts 1, 2 */
    note(s, "have_been_put=%d", atomic_load(&putter->count));
    note_op(s, "putter", putter);
    TRY(call_later(s, 10 * MS, get_nowait_cb, 0));
    finish(putter);
    note_op(s, "putter", putter);
    note_get(s, "cb_get_nowait", atomic_load(&s->cb.rc), s->cb.out);
    do_get_nowait(s);
    return 0;
}

/* test_blocking_put_wait: a putter waits until a callback get_nowait()s. */
static void test_blocking_put_wait(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, blocking_put_wait_main,
             "have_been_put=1 putter=pending putter=OK cb_get_nowait=1 get_nowait=2");
}

static int put_cancel_drop_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *writer = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_put(writer, s->q, 2)); /* a second item has to wait */
    do_get_nowait(s);
    TRY(rv_task_cancel(writer->task, NULL));
    finish(writer);
    if (op_rc(writer) == -ECANCELED) { /* try again */
        TRY(spawn_op(&s->op[1], put_body, s->q, 2, 1, -1));
        finish(&s->op[1]);
    }
    do_get_nowait(s);
    note_size(s);
    return 0;
}

/* test_put_cancel_drop */
static void test_put_cancel_drop(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, put_cancel_drop_main, "get_nowait=1 get_nowait=2 size=0");
}

static int put_cancelled_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *putter = &s->op[0];
    TRY(spawn_op(putter, put_body, s->q, 1, 1, -1));
    do_get(s);
    finish(putter);
    note_op(s, "putter", putter);
    return 0;
}

/* test_put_cancelled (a get waiting for a putter that has not run yet) */
static void test_put_cancelled(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, put_cancelled_main, "get=1 putter=OK");
}

static int put_cancelled_race_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *a = &s->op[0], *b = &s->op[1], *c = &s->op[2];
    TRY(start_put(a, s->q, 1));
    TRY(start_put(b, s->q, 2));
    TRY(start_put(c, s->q, 3));
    note_op(s, "a", a);
    note_op(s, "b", b);
    TRY(rv_task_cancel(c->task, NULL));
    TRY(settle());
    note_op(s, "c", c);
    do_get_nowait(s);
    TRY(settle());
    do_get_nowait(s);
    finish(b);
    note_op(s, "b", b);
    note_size(s);
    return 0;
}

/* test_put_cancelled_race: a cancelled putter does not take the slot, and its
 * item is not put. */
static void test_put_cancelled_race(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, put_cancelled_race_main,
             "a=OK b=pending c=ECANCELED get_nowait=1 get_nowait=2 b=OK size=0");
}

static int put_with_waiting_getters_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *g = &s->op[0];
    TRY(start_get(g, s->q));
    do_put(s, 1);
    finish(g);
    note_op(s, "g", g);
    return 0;
}

/* test_put_with_waiting_getters */
static void test_put_with_waiting_getters(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, put_with_waiting_getters_main, "put=OK g=1");
}

/* test_why_are_putters_waiting's getter: yield once, then take what is there
 * with get_nowait. */
static int drain_after_yield_body(void *arg, void **res)
{
    struct op *o = arg;
    int rc = rv_yield();
    long n = rv_queue_size(o->q);
    for (long i = 0; i < n && rc == 0; i++) {
        void *item = NULL;
        rc = rv_queue_get_nowait(o->q, &item);
        if (rc == 0)
            atomic_fetch_add(&o->count, 1);
    }
    atomic_store(&o->rc, rc);
    return 0;
}

static int why_are_putters_waiting_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *getter = &s->op[0];
    TRY(spawn_op(getter, drain_after_yield_body, s->q, 0, 1, -1));
    for (int i = 1; i <= 4; i++)
        TRY(spawn_op(&s->op[i], put_body, s->q, i, 1, -1));
    for (int i = 0; i <= 4; i++)
        finish(&s->op[i]);
    note(s, "getter=%s taken=%d", rc_name(op_rc(getter)), atomic_load(&getter->count));
    for (int i = 1; i <= 4; i++)
        note(s, "p%d=%s", i, rc_name(op_rc(&s->op[i])));
    note_size(s);
    return 0;
}

/* test_why_are_putters_waiting: get_nowait wakes waiting putters. */
static void test_why_are_putters_waiting(void **state)
{
    scenario(RV_QUEUE_FIFO, 2, why_are_putters_waiting_main,
             "getter=OK taken=2 p1=OK p2=OK p3=OK p4=OK size=2");
}

static int puts_not_held_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *putter = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_put(putter, s->q, 2));
    TRY(rv_task_cancel(putter->task, NULL));
    finish(putter);
    note_op(s, "putter", putter);
    do_get_nowait(s);
    do_get_nowait(s);
    do_put_nowait(s, 3);
    do_free(s);
    return 0;
}

/* test_cancelled_puts_not_being_held_in_self_putters: "-ECANCELED (the item
 * was not put)", the free slot is not kept for the cancelled putter, and no
 * waiter is left behind (rv_queue_free succeeds). */
static void test_cancelled_puts_not_being_held_in_self_putters(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, puts_not_held_main,
             "putter=ECANCELED get_nowait=1 get_nowait=EAGAIN put_nowait=OK free=OK");
}

static int put_silence_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *putter = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_put(putter, s->q, 2));
    do_get_nowait(s); /* wakes the putter */
    TRY(rv_task_cancel(putter->task, NULL));
    finish(putter);
    note_op(s, "putter", putter);
    note_size(s);
    return 0;
}

/* test_cancelled_put_silence_value_error_exception: a putter woken by
 * get_nowait and cancelled before it runs returns -ECANCELED (sync.h: "A
 * waiter that was woken ... and is cancelled before it runs ... returns
 * -ECANCELED") and its item is not put ("-ECANCELED (the item was not put)"). */
static void test_cancelled_put_silence_value_error_exception(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, put_silence_main, "get_nowait=1 putter=ECANCELED size=0");
}

/* ------------------------------------------------------------------------- */
/* sync.h "Common rules" on queues                                            */

static int getters_fifo_main(void *arg, void **res)
{
    struct scen *s = arg;
    for (int i = 0; i < 3; i++)
        TRY(start_get(&s->op[i], s->q));
    for (int i = 1; i <= 3; i++)
        TRY(rv_queue_put_nowait(s->q, IP(i)));
    TRY(settle());
    note_op(s, "g1", &s->op[0]);
    note_op(s, "g2", &s->op[1]);
    note_op(s, "g3", &s->op[2]);
    return 0;
}

/* "Waiters are served first come, first served" (getters). */
static void test_getters_served_fifo(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, getters_fifo_main, "g1=1 g2=2 g3=3");
}

static int putters_fifo_main(void *arg, void **res)
{
    struct scen *s = arg;
    TRY(rv_queue_put_nowait(s->q, IP(10)));
    for (int i = 0; i < 3; i++)
        TRY(start_put(&s->op[i], s->q, i + 1));
    for (int i = 0; i < 4; i++) {
        do_get_nowait(s);
        TRY(settle());
    }
    note_op(s, "p1", &s->op[0]);
    note_op(s, "p2", &s->op[1]);
    note_op(s, "p3", &s->op[2]);
    return 0;
}

/* "Waiters are served first come, first served" (putters). */
static void test_putters_served_fifo(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, putters_fifo_main,
             "get_nowait=10 get_nowait=1 get_nowait=2 get_nowait=3 p1=OK p2=OK p3=OK");
}

static int no_barging_get_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *g = &s->op[0];
    TRY(start_get(g, s->q));
    do_put_nowait(s, 1); /* promised to g */
    do_get_nowait(s);
    TRY(settle());
    note_op(s, "g", g);
    return 0;
}

/* "a newcomer never takes what a waiter was promised": an item put while a
 * getter waits is the getter's, not a later get_nowait's. */
static void test_no_barging_get(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, no_barging_get_main, "put_nowait=OK get_nowait=EAGAIN g=1");
}

static int no_barging_get_order_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *g = &s->op[0];
    TRY(start_get(g, s->q));
    TRY(rv_queue_put_nowait(s->q, IP(1))); /* put while g waits: g's */
    TRY(rv_queue_put_nowait(s->q, IP(2)));
    do_get_nowait(s);
    TRY(settle());
    note_op(s, "g", g);
    return 0;
}

/* "a newcomer never takes what a waiter was promised", "served first come,
 * first served": in a FIFO queue, the item put while a getter waits is that
 * getter's; a later get_nowait gets the next one. */
static void test_no_barging_get_keeps_order(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, no_barging_get_order_main, "get_nowait=2 g=1");
}

static int no_barging_put_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *p = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_put(p, s->q, 2));
    do_get_nowait(s);    /* the free slot is promised to p */
    do_put_nowait(s, 3); /* so the newcomer finds the queue full */
    TRY(settle());
    note_op(s, "p", p);
    do_get_nowait(s);
    note_size(s);
    return 0;
}

/* "a newcomer never takes what a waiter was promised": a slot freed while a
 * putter waits is the putter's, not a later put_nowait's. */
static void test_no_barging_put(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, no_barging_put_main,
             "get_nowait=1 put_nowait=EAGAIN p=OK get_nowait=2 size=0");
}

static int putter_passes_slot_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *a = &s->op[0], *b = &s->op[1];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_put(a, s->q, 2));
    TRY(start_put(b, s->q, 3));
    do_get_nowait(s); /* wakes a */
    TRY(rv_task_cancel(a->task, NULL));
    TRY(settle());
    note_op(s, "a", a);
    note_op(s, "b", b);
    do_get_nowait(s);
    note_size(s);
    return 0;
}

/* "A waiter that was woken (handed ... a unit) and is cancelled before it runs
 * passes what it was given on to the next waiter, and returns -ECANCELED"
 * (putters: the slot goes to the next putter; the cancelled item is not put). */
static void test_woken_putter_cancelled_passes_slot_on(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, putter_passes_slot_main,
             "get_nowait=1 a=ECANCELED b=OK get_nowait=3 size=0");
}

static int free_busy_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *g = &s->op[0], *p = &s->op[1];
    TRY(start_get(g, s->q));
    do_free(s); /* a getter waits */
    do_put_nowait(s, 1);
    TRY(settle());
    note_op(s, "g", g);
    do_put_nowait(s, 2);
    TRY(start_put(p, s->q, 3));
    do_free(s); /* a putter waits */
    do_get_nowait(s);
    TRY(settle());
    note_op(s, "p", p);
    do_free(s); /* item 3 is still inside: "not touched" */
    return 0;
}

/* rv_queue_free: "-EBUSY while anyone waits on it. Items still inside are not
 * touched". */
static void test_free_busy(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, free_busy_main,
             "free=EBUSY put_nowait=OK g=1 put_nowait=OK free=EBUSY get_nowait=2 p=OK free=OK");
}

static int free_woken_getter_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *g = &s->op[0];
    TRY(start_get(g, s->q));
    do_put_nowait(s, 1); /* wakes g, which has not run yet */
    do_free(s);          /* g is still inside rv_queue_get */
    TRY(settle());
    note_op(s, "g", g);
    return 0;
}

/* rv_queue_free: "-EBUSY while anyone waits on it, including a waiter that
 * was woken and has not run yet" (it is still inside rv_queue_get: freeing
 * the queue under it would leave it to touch freed memory when it runs). */
static void test_free_busy_woken_getter(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, free_woken_getter_main, "put_nowait=OK free=EBUSY g=1");
}

/* ------------------------------------------------------------------------- */
/* task_done and join                                                         */

/* test_task_done_underflow; rv_queue_task_done: "-EINVAL when called more
 * often than items were put". */
static void test_task_done_underflow(void **state)
{
    rv_queue *q = make_queue(kind_of(state), 0);
    void *item = NULL;
    assert_int_equal(rv_queue_task_done(q), -EINVAL);
    assert_int_equal(rv_queue_put_nowait(q, IP(1)), 0);
    assert_int_equal(rv_queue_get_nowait(q, &item), 0);
    assert_int_equal(rv_queue_task_done(q), 0);
    assert_int_equal(rv_queue_task_done(q), -EINVAL);
    free_queue(q);
}

#define STOP_ITEM 1000

/* test_task_done's worker: get, add to count, task_done, until STOP_ITEM. */
static int summing_worker_body(void *arg, void **res)
{
    struct op *o = arg;
    int rc;
    for (;;) {
        void *item = NULL;
        rc = rv_queue_get(o->q, -1, &item);
        if (rc < 0)
            break;
        if (PI(item) != STOP_ITEM)
            atomic_fetch_add(&o->count, (int)PI(item));
        rc = rv_queue_task_done(o->q);
        if (rc < 0 || PI(item) == STOP_ITEM)
            break;
    }
    atomic_store(&o->rc, rc);
    return 0;
}

static int task_done_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *w1 = &s->op[0], *w2 = &s->op[1];
    for (int i = 1; i <= 100; i++)
        TRY(rv_queue_put_nowait(s->q, IP(i)));
    TRY(spawn_op(w1, summing_worker_body, s->q, 0, 0, -1));
    TRY(spawn_op(w2, summing_worker_body, s->q, 0, 0, -1));
    note_rc(s, "join", rv_queue_join(s->q));
    note(s, "sum=%d", atomic_load(&w1->count) + atomic_load(&w2->count));
    TRY(rv_queue_put_nowait(s->q, IP(STOP_ITEM)));
    TRY(rv_queue_put_nowait(s->q, IP(STOP_ITEM)));
    finish(w1);
    finish(w2);
    note_op(s, "w1", w1);
    note_op(s, "w2", w2);
    do_task_done(s);
    return 0;
}

/* test_task_done: two workers on two runtime workers take 100 items and mark
 * each done; join returns once all are done (the sum is complete then). */
static void test_task_done(void **state)
{
    scenario_full(kind_of(state), 0, 0, 2, task_done_main,
                  "join=OK sum=5050 w1=OK w2=OK task_done=EINVAL");
}

static int join_empty_main(void *arg, void **res)
{
    struct scen *s = arg;
    note_rc(s, "join", rv_queue_join(s->q));
    note_rc(s, "join", rv_queue_join(s->q));
    return 0;
}

/* test_join_empty_queue: join on an empty queue returns at once (twice). */
static void test_join_empty_queue(void **state)
{
    scenario(kind_of(state), 0, join_empty_main, "join=OK join=OK");
}

static int join_waits_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *j = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_join(j, s->q));
    note_op(s, "j", j);
    do_get(s);
    do_task_done(s);
    TRY(settle());
    note_op(s, "j", j);
    do_get(s); /* taken, not yet done */
    TRY(settle());
    note_op(s, "j", j);
    do_task_done(s);
    TRY(settle());
    note_op(s, "j", j);
    return 0;
}

/* rv_queue_join: "Wait until every item put has been marked done" (taken is
 * not enough). */
static void test_join_waits_for_task_done(void **state)
{
    scenario(kind_of(state), 0, join_waits_main,
             "j=pending get=1 task_done=OK j=pending get=1 j=pending task_done=OK j=OK");
}

static int join_cancelled_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *j = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_join(j, s->q));
    TRY(rv_task_cancel(j->task, NULL));
    TRY(settle());
    note_op(s, "j", j);
    do_free(s); /* the cancelled joiner no longer waits */
    return 0;
}

/* rv_task_cancel: "delivered at the task's next suspension point as
 * -ECANCELED": a cancelled join returns -ECANCELED and leaves no waiter. */
static void test_join_cancelled(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, join_cancelled_main, "j=ECANCELED free=OK");
}

/* rv_queue_join "May suspend"; ravel.h: "Called from a plain thread these
 * return -EPERM". */
static void test_join_plain_thread(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 0);
    assert_int_equal(rv_queue_put_nowait(q, IP(1)), 0);
    assert_int_equal(rv_queue_join(q), -EPERM);
    free_queue(q);
}

/* ------------------------------------------------------------------------- */
/* Shutdown                                                                   */

static int shutdown_empty_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *getter = &s->op[0], *joiner = &s->op[1];
    TRY(start_get(getter, s->q)); /* pending before the shutdown */
    do_shutdown(s, false, NULL);
    note_size(s);
    TRY(start_join(joiner, s->q));
    note_op(s, "join", joiner);
    TRY(settle());
    note_op(s, "getter", getter);
    do_refused(s);
    return 0;
}

/* test_shutdown_empty: the waiting get and every later put and get return
 * -ESHUTDOWN ("later puts ... return -ESHUTDOWN; gets drain what is left, then
 * return -ESHUTDOWN"; asyncio 3.13: put_nowait and get_nowait too); join
 * returns. */
static void test_shutdown_empty(void **state)
{
    scenario(kind_of(state), 0, shutdown_empty_main,
             "shutdown=OK size=0 join=OK getter=ESHUTDOWN " REFUSED);
}

static int shutdown_nonempty_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *joiner = &s->op[0], *putter = &s->op[1];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_join(joiner, s->q));
    TRY(start_put(putter, s->q, 2));
    note_op(s, "putter", putter);
    do_shutdown(s, false, NULL); /* unfinished tasks: 1 -> 1 */
    note_size(s);
    TRY(settle());
    note_op(s, "putter", putter);
    do_get(s); /* the item left is still there */
    TRY(settle());
    note_op(s, "join", joiner);
    do_refused(s);
    do_task_done(s);
    TRY(settle());
    note_op(s, "join", joiner);
    do_task_done(s);
    return 0;
}

/* test_shutdown_nonempty: "the puts waiting now return -ESHUTDOWN; gets drain
 * what is left"; join waits for the last task_done. */
static void test_shutdown_nonempty(void **state)
{
    scenario(kind_of(state), 1, shutdown_nonempty_main,
             "putter=pending shutdown=OK size=1 putter=ESHUTDOWN get=1 join=pending " REFUSED
             " task_done=OK join=OK task_done=EINVAL");
}

static int shutdown_immediate_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *joiner = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_join(joiner, s->q));
    note_op(s, "join", joiner);
    do_shutdown(s, true, NULL); /* unfinished tasks: 1 -> 0 */
    note_size(s);
    TRY(settle());
    note_op(s, "join", joiner);
    do_refused(s);
    do_task_done(s);
    return 0;
}

/* test_shutdown_immediate: "immediate also empties the queue at once (each
 * dropped item counts as done for join)". */
static void test_shutdown_immediate(void **state)
{
    scenario(kind_of(state), 0, shutdown_immediate_main,
             "join=pending shutdown=OK size=0 join=OK " REFUSED " task_done=EINVAL");
}

static int shutdown_immediate_unfinished_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *joiner = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_join(joiner, s->q));
    do_get(s);
    do_shutdown(s, true, NULL); /* unfinished tasks: 2 -> 1 */
    note_size(s);
    TRY(settle());
    note_op(s, "join", joiner);
    do_refused(s);
    do_task_done(s);
    do_task_done(s);
    TRY(settle());
    note_op(s, "join", joiner);
    return 0;
}

/* test_shutdown_immediate_with_unfinished: the item taken before the shutdown
 * still holds join until its task_done. */
static void test_shutdown_immediate_with_unfinished(void **state)
{
    scenario(kind_of(state), 0, shutdown_immediate_unfinished_main,
             "get=1 shutdown=OK size=0 join=pending " REFUSED
             " task_done=OK task_done=EINVAL join=OK");
}

static int shutdown_putters_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *p1 = &s->op[0], *p2 = &s->op[1];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_put(p1, s->q, 2));
    TRY(start_put(p2, s->q, 3));
    do_shutdown(s, false, NULL);
    TRY(settle());
    note_op(s, "p1", p1);
    note_op(s, "p2", p2);
    note_size(s);
    do_get(s);
    do_get(s);
    return 0;
}

/* rv_queue_shutdown: "the puts waiting now return -ESHUTDOWN" (their items
 * are not put); "gets drain what is left, then return -ESHUTDOWN". */
static void test_shutdown_putters(void **state)
{
    scenario(kind_of(state), 1, shutdown_putters_main,
             "shutdown=OK p1=ESHUTDOWN p2=ESHUTDOWN size=1 get=1 get=ESHUTDOWN");
}

static int shutdown_getters_main(void *arg, void **res)
{
    struct scen *s = arg;
    for (int i = 0; i < 3; i++)
        TRY(start_get(&s->op[i], s->q));
    do_shutdown(s, s->param != 0, NULL);
    TRY(settle());
    note_op(s, "g1", &s->op[0]);
    note_op(s, "g2", &s->op[1]);
    note_op(s, "g3", &s->op[2]);
    do_put_nowait(s, 1);
    return 0;
}

#define SHUTDOWN_GETTERS_LOG                                                                       \
    "shutdown=OK g1=ESHUTDOWN g2=ESHUTDOWN g3=ESHUTDOWN put_nowait=ESHUTDOWN"

/* rv_queue_get: "-ESHUTDOWN once the queue is shut down and empty": every
 * waiting getter is released. */
static void test_shutdown_getters(void **state)
{
    scenario_full(kind_of(state), 0, false, 1, shutdown_getters_main, SHUTDOWN_GETTERS_LOG);
}

/* rv_queue_shutdown: "`immediate` ... and waiting gets return -ESHUTDOWN". */
static void test_shutdown_immediate_getters(void **state)
{
    scenario_full(kind_of(state), 0, true, 1, shutdown_getters_main, SHUTDOWN_GETTERS_LOG);
}

static int shutdown_join_immediate_main(void *arg, void **res)
{
    struct scen *s = arg;
    for (int i = 1; i <= 3; i++)
        TRY(rv_queue_put_nowait(s->q, IP(i)));
    TRY(start_join(&s->op[0], s->q));
    TRY(start_join(&s->op[1], s->q));
    note_op(s, "j1", &s->op[0]);
    do_shutdown(s, true, NULL);
    TRY(settle());
    note_op(s, "j1", &s->op[0]);
    note_op(s, "j2", &s->op[1]);
    note_rc(s, "join", rv_queue_join(s->q));
    do_task_done(s);
    return 0;
}

/* test_shutdown_immediate, with several joiners: "each dropped item counts as
 * done for join": all joiners are released, a later join returns at once. */
static void test_shutdown_join_immediate(void **state)
{
    scenario(kind_of(state), 0, shutdown_join_immediate_main,
             "j1=pending shutdown=OK j1=OK j2=OK join=OK task_done=EINVAL");
}

static atomic_int dropped[8]; /* times drop_cb saw item i */
static atomic_int drop_calls;

static void drop_cb(void *item)
{
    intptr_t i = PI(item);
    atomic_fetch_add(&drop_calls, 1);
    if (i >= 0 && i < 8)
        atomic_fetch_add(&dropped[i], 1);
}

static void reset_drops(void)
{
    for (int i = 0; i < 8; i++)
        atomic_store(&dropped[i], 0);
    atomic_store(&drop_calls, 0);
}

/* "dropped=1,2,3": the items drop_cb saw, each as many times as it saw it. */
static void note_drops(struct scen *s)
{
    char buf[128] = "";
    size_t len = 0;
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < atomic_load(&dropped[i]) && len + 8 < sizeof buf; k++)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d", len ? "," : "", i);
    note(s, "dropped=%s calls=%d", buf, atomic_load(&drop_calls));
}

static int shutdown_drop_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *putter = &s->op[0];
    for (int i = 1; i <= 3; i++)
        TRY(rv_queue_put_nowait(s->q, IP(i)));
    TRY(start_put(putter, s->q, 4));
    do_shutdown(s, true, drop_cb);
    note_drops(s);
    TRY(settle());
    note_op(s, "putter", putter);
    note_size(s);
    note_rc(s, "join", rv_queue_join(s->q));
    note_drops(s);
    return 0;
}

/* rv_queue_shutdown: "When drop is not NULL it is called on each dropped item"
 * (once each, by the immediate shutdown itself); a waiting putter's item is
 * not put, so it is not dropped (the putter gets -ESHUTDOWN and keeps it). */
static void test_shutdown_drop_callback(void **state)
{
    reset_drops();
    scenario(kind_of(state), 3, shutdown_drop_main,
             "shutdown=OK dropped=1,2,3 calls=3 putter=ESHUTDOWN size=0 join=OK dropped=1,2,3 "
             "calls=3");
}

static int shutdown_no_drop_main(void *arg, void **res)
{
    struct scen *s = arg;
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    do_shutdown(s, false, drop_cb);
    note_drops(s);
    do_get(s);
    do_get(s);
    note_drops(s);
    return 0;
}

/* rv_queue_shutdown without `immediate` drops nothing: the items stay for the
 * gets to drain; drop is not called. */
static void test_shutdown_drop_not_called_without_immediate(void **state)
{
    reset_drops();
    scenario(kind_of(state), 0, shutdown_no_drop_main,
             "shutdown=OK dropped= calls=0 get=1 get=ESHUTDOWN dropped= calls=0");
}

static int shutdown_woken_getter_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *g = &s->op[0];
    TRY(start_get(g, s->q));
    TRY(rv_queue_put_nowait(s->q, IP(1))); /* wakes g, which has not run yet */
    do_shutdown(s, true, drop_cb);
    TRY(settle());
    note_op(s, "g", g);
    note_drops(s);
    TRY(start_join(&s->op[1], s->q));
    note_op(s, "join", &s->op[1]);
    do_task_done(s);
    TRY(settle());
    note_op(s, "join", &s->op[1]);
    return 0;
}

/* rv_queue_shutdown: "`immediate` ... and waiting gets return -ESHUTDOWN,
 * including a getter that was handed an item and has not run yet (the item is
 * dropped too)" (asyncio: the woken getter finds the queue empty and shut
 * down); "each dropped item counts as done for join". */
static void test_shutdown_immediate_woken_getter(void **state)
{
    reset_drops();
    scenario(kind_of(state), 0, shutdown_woken_getter_main,
             "shutdown=OK g=ESHUTDOWN dropped=1 calls=1 join=OK task_done=EINVAL join=OK");
}

static int shutdown_woken_putter_main(void *arg, void **res)
{
    struct scen *s = arg;
    struct op *p = &s->op[0];
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(start_put(p, s->q, 2));
    do_get_nowait(s); /* wakes p, which has not run yet */
    do_shutdown(s, false, NULL);
    TRY(settle());
    note_op(s, "p", p);
    note_size(s);
    return 0;
}

/* rv_queue_shutdown: "the puts waiting now return -ESHUTDOWN", also a putter
 * woken for a slot before the shutdown that has not run yet: its item is not
 * put. */
static void test_shutdown_woken_putter(void **state)
{
    scenario(kind_of(state), 1, shutdown_woken_putter_main,
             "get_nowait=1 shutdown=OK p=ESHUTDOWN size=0");
}

static int leave_waiters_main(void *arg, void **res)
{
    struct scen *s = arg;
    void *item = NULL;
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    TRY(rv_queue_get_nowait(s->q, &item)); /* taken, not done */
    TRY(start_get(&s->op[0], s->q));
    TRY(start_join(&s->op[1], s->q));
    note_op(s, "g", &s->op[0]);
    note_op(s, "j", &s->op[1]);
    return 0; /* and leave them waiting */
}

/* rv_runtime_shutdown: "cancel every task (each sees -ECANCELED at its await
 * point)": a getter and a joiner left waiting get -ECANCELED and leave the
 * queue (end_scenario frees it). */
static void test_runtime_shutdown_releases_waiters(void **state)
{
    struct scen s = {.q = make_queue(RV_QUEUE_FIFO, 0)};
    run_scenario(&s, 1, leave_waiters_main);
    note_op(&s, "g", &s.op[0]);
    note_op(&s, "j", &s.op[1]);
    check_log(&s, "g=pending j=pending g=ECANCELED j=ECANCELED");
}

/* ------------------------------------------------------------------------- */
/* Timeouts                                                                   */

static int get_timeout_body(void *arg, void **res)
{
    struct scen *s = arg;
    int64_t t0 = rv_now();
    do_get_timed(s, 20 * MS);
    note(s, "early=%d", rv_now() - t0 < 20 * MS);
    do_put_nowait(s, 1); /* the timed-out getter does not take it */
    do_get_timed(s, 0);
    do_get_timed(s, 0);
    return 0;
}

#define GET_TIMEOUT_LOG "get=ETIMEDOUT early=0 put_nowait=OK get=1 get=ETIMEDOUT"

/* rv_queue_get: "waiting ... up to timeout_ns ... -ETIMEDOUT" (a task);
 * timeout 0 does not wait. */
static void test_get_timeout_task(void **state)
{
    scenario(RV_QUEUE_FIFO, 0, get_timeout_body, GET_TIMEOUT_LOG);
}

/* The same from a plain thread, which blocks ("block a plain thread"). */
static void test_get_timeout_plain_thread(void **state)
{
    scenario_on_thread(RV_QUEUE_FIFO, 0, get_timeout_body, GET_TIMEOUT_LOG);
}

static int put_timeout_body(void *arg, void **res)
{
    struct scen *s = arg;
    TRY(rv_queue_put_nowait(s->q, IP(1)));
    int64_t t0 = rv_now();
    note_rc(s, "put", rv_queue_put(s->q, IP(2), 20 * MS));
    note(s, "early=%d", rv_now() - t0 < 20 * MS);
    note_size(s); /* item 2 was not put */
    do_get_nowait(s);
    do_get_nowait(s);
    note_rc(s, "put", rv_queue_put(s->q, IP(3), 0));
    note_rc(s, "put", rv_queue_put(s->q, IP(4), 0));
    return 0;
}

#define PUT_TIMEOUT_LOG                                                                            \
    "put=ETIMEDOUT early=0 size=1 get_nowait=1 get_nowait=EAGAIN put=OK put=ETIMEDOUT"

/* rv_queue_put: "waiting while the queue is full, up to timeout_ns ...
 * -ETIMEDOUT" (a task); the item is not put. */
static void test_put_timeout_task(void **state)
{
    scenario(RV_QUEUE_FIFO, 1, put_timeout_body, PUT_TIMEOUT_LOG);
}

/* The same from a plain thread. */
static void test_put_timeout_plain_thread(void **state)
{
    scenario_on_thread(RV_QUEUE_FIFO, 1, put_timeout_body, PUT_TIMEOUT_LOG);
}

/* ------------------------------------------------------------------------- */
/* Plain threads                                                              */

static void *op_thread(void *arg)
{
    struct op *o = arg;
    void *res = NULL;
    o->fn(o, &res);
    return NULL;
}

/* Run a put or get op on a new plain thread (each call bounded by WAIT_NS). */
static void start_thread_op(pthread_t *th, struct op *o, rv_task_fn fn, rv_queue *q, intptr_t in)
{
    op_init(o, fn, q, in, 1, WAIT_NS);
    assert_int_equal(pthread_create(th, NULL, op_thread, o), 0);
}

/* Wait (WAIT_NS) for the thread's call to return, join it, give its rc. */
static int end_thread_op(pthread_t th, struct op *o)
{
    int64_t deadline = rv_now() + WAIT_NS;
    while (op_rc(o) == OP_PENDING && rv_now() < deadline)
        sleep_ms(1);
    int rc = op_rc(o);
    assert_int_not_equal(rc, OP_PENDING);
    assert_int_equal(pthread_join(th, NULL), 0);
    return rc;
}

/* rv_queue_get "block[s] a plain thread" while the queue is empty, with no
 * runtime at all; a put_nowait from another thread releases it. */
static void test_plain_thread_get_blocks(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 0);
    struct op g;
    pthread_t th;
    start_thread_op(&th, &g, get_body, q, 0);
    sleep_ms(30);
    assert_int_equal(op_rc(&g), OP_PENDING);
    assert_int_equal(rv_queue_free(q), -EBUSY); /* "-EBUSY while anyone waits" */
    assert_int_equal(rv_queue_put_nowait(q, IP(5)), 0);
    assert_int_equal(end_thread_op(th, &g), 0);
    assert_int_equal(PI(g.out), 5);
    free_queue(q);
}

/* rv_queue_put blocks a plain thread while the queue is full. */
static void test_plain_thread_put_blocks(void **state)
{
    rv_queue *q = make_queue(RV_QUEUE_FIFO, 1);
    struct op p;
    pthread_t th;
    void *item = NULL;
    assert_int_equal(rv_queue_put_nowait(q, IP(1)), 0);
    start_thread_op(&th, &p, put_body, q, 2);
    sleep_ms(30);
    assert_int_equal(op_rc(&p), OP_PENDING);
    assert_int_equal(rv_queue_get_nowait(q, &item), 0);
    assert_int_equal(PI(item), 1);
    assert_int_equal(end_thread_op(th, &p), 0);
    assert_int_equal(rv_queue_get_nowait(q, &item), 0);
    assert_int_equal(PI(item), 2);
    free_queue(q);
}

/* rv_queue_shutdown: "Any thread": plain threads blocked in get (empty queue)
 * and in put (full queue) return -ESHUTDOWN; the put's item is not put. */
static void test_shutdown_wakes_plain_threads(void **state)
{
    rv_queue *empty = make_queue(RV_QUEUE_FIFO, 0), *full = make_queue(RV_QUEUE_FIFO, 1);
    struct op g, p;
    pthread_t tg, tp;
    void *item = NULL;
    assert_int_equal(rv_queue_put_nowait(full, IP(1)), 0);
    start_thread_op(&tg, &g, get_body, empty, 0);
    start_thread_op(&tp, &p, put_body, full, 2);
    sleep_ms(30);
    assert_int_equal(op_rc(&g), OP_PENDING);
    assert_int_equal(op_rc(&p), OP_PENDING);
    assert_int_equal(rv_queue_shutdown(empty, false, NULL), 0);
    assert_int_equal(rv_queue_shutdown(full, false, NULL), 0);
    assert_int_equal(end_thread_op(tg, &g), -ESHUTDOWN);
    assert_int_equal(end_thread_op(tp, &p), -ESHUTDOWN);
    assert_int_equal(rv_queue_size(full), 1);
    assert_int_equal(rv_queue_get(full, 0, &item), 0);
    assert_int_equal(PI(item), 1);
    assert_int_equal(rv_queue_get(full, 0, &item), -ESHUTDOWN);
    free_queue(empty);
    free_queue(full);
}

struct callback_probe {
    rv_queue *empty, *full;
    atomic_int get_rc, put_rc, get_rc_untimed, put_rc_untimed, done;
};

static void deadlock_probe_cb(void *arg)
{
    struct callback_probe *p = arg;
    void *item = NULL;
    /* With a limit first, so that a wrong implementation fails rather than
     * blocks this worker for good. */
    atomic_store(&p->get_rc, rv_queue_get(p->empty, 2 * SEC, &item));
    atomic_store(&p->put_rc, rv_queue_put(p->full, IP(2), 2 * SEC));
    if (atomic_load(&p->get_rc) == -EDEADLK)
        atomic_store(&p->get_rc_untimed, rv_queue_get(p->empty, -1, &item));
    if (atomic_load(&p->put_rc) == -EDEADLK)
        atomic_store(&p->put_rc_untimed, rv_queue_put(p->full, IP(2), -1));
    atomic_store(&p->done, 1);
}

/* rv_queue_put/get: "-EDEADLK on a worker thread outside a task" (here an
 * rv_call_soon callback, where waiting would block the worker). */
static void test_edeadlk_in_callback(void **state)
{
    struct callback_probe p = {.empty = make_queue(RV_QUEUE_FIFO, 0),
                               .full = make_queue(RV_QUEUE_FIFO, 1)};
    assert_int_equal(rv_queue_put_nowait(p.full, IP(1)), 0);
    rv_runtime *rt = new_runtime(1);
    assert_int_equal(rv_call_soon(rt, deadlock_probe_cb, &p, NULL), 0);
    assert_true(wait_atomic(&p.done, 1));
    free_runtime(rt);
    assert_int_equal(atomic_load(&p.get_rc), -EDEADLK);
    assert_int_equal(atomic_load(&p.put_rc), -EDEADLK);
    assert_int_equal(atomic_load(&p.get_rc_untimed), -EDEADLK);
    assert_int_equal(atomic_load(&p.put_rc_untimed), -EDEADLK);
    assert_int_equal(rv_queue_size(p.full), 1); /* item 2 was not put */
    free_queue(p.empty);
    free_queue(p.full);
}

/* ------------------------------------------------------------------------- */
/* Pipelines and stress: tasks and plain threads, every item exactly once     */

struct stress_cfg {
    unsigned workers; /* 0: one per CPU */
    int items;
    long maxsize;
    int prod_tasks, cons_tasks, prod_threads, cons_threads;
    bool chaos; /* a task cancels random producer and consumer tasks */
};

struct stress {
    const struct stress_cfg *cfg;
    rv_queue *q;
    atomic_int next_item;      /* producers claim items 1..items from here */
    atomic_int *seen;          /* seen[i - 1]: times item i was taken */
    atomic_int started;        /* producer and consumer tasks that have run */
    atomic_int producers_done; /* tasks and threads */
    atomic_int consumers_done; /* tasks and threads that saw -ESHUTDOWN */
    atomic_int put_cancels, get_cancels, cancel_requests;
    atomic_int errors, first_error;
    atomic_long max_size; /* largest rv_queue_size seen (sampled) */
    atomic_bool stop_chaos;
    rv_task **tasks; /* producer tasks, then consumer tasks */
    int ntasks;
    rv_task *chaos;
    struct op join;
};

static void stress_error(struct stress *s, int rc)
{
    if (atomic_fetch_add(&s->errors, 1) == 0)
        atomic_store(&s->first_error, rc);
}

/* A task whose wait was cancelled carries on (asyncio: catch CancelledError
 * and uncancel). */
static void swallow_cancel(void) { rv_task_uncancel(rv_current_task()); }

static void note_max_size(struct stress *s)
{
    long size = rv_queue_size(s->q), seen = atomic_load(&s->max_size);
    while (size > seen && !atomic_compare_exchange_weak(&s->max_size, &seen, size))
        ;
}

static void stress_producer(struct stress *s, int64_t timeout_ns)
{
    for (;;) {
        int i = atomic_fetch_add(&s->next_item, 1);
        if (i > s->cfg->items)
            break;
        int rc;
        /* A cancelled put did not put the item: put it again. */
        while ((rc = rv_queue_put(s->q, IP(i), timeout_ns)) == -ECANCELED) {
            atomic_fetch_add(&s->put_cancels, 1);
            swallow_cancel();
        }
        if (rc < 0) {
            stress_error(s, rc);
            break;
        }
    }
    atomic_fetch_add(&s->producers_done, 1);
}

static void stress_consumer(struct stress *s, int64_t timeout_ns)
{
    for (;;) {
        void *item = NULL;
        int rc = rv_queue_get(s->q, timeout_ns, &item);
        if (rc == -ECANCELED) { /* nothing was taken */
            atomic_fetch_add(&s->get_cancels, 1);
            swallow_cancel();
            continue;
        }
        if (rc == -ESHUTDOWN) {
            atomic_fetch_add(&s->consumers_done, 1);
            return;
        }
        if (rc == 0 && (PI(item) < 1 || PI(item) > s->cfg->items))
            rc = -ERANGE;
        if (rc == 0)
            rc = rv_queue_task_done(s->q);
        if (rc < 0) {
            stress_error(s, rc);
            return;
        }
        if (atomic_fetch_add(&s->seen[PI(item) - 1], 1) == 0 && PI(item) % 64 == 0)
            note_max_size(s);
    }
}

static int producer_task(void *arg, void **res)
{
    struct stress *s = arg;
    atomic_fetch_add(&s->started, 1);
    stress_producer(s, -1);
    return 0;
}
static int consumer_task(void *arg, void **res)
{
    struct stress *s = arg;
    atomic_fetch_add(&s->started, 1);
    stress_consumer(s, -1);
    return 0;
}
static void *producer_thread(void *arg)
{
    stress_producer(arg, WAIT_NS);
    return NULL;
}
static void *consumer_thread(void *arg)
{
    stress_consumer(arg, WAIT_NS);
    return NULL;
}

/* Cancel a random producer or consumer task, then yield a random number of
 * times, until told to stop. Only once they all run: a task cancelled before
 * it first runs ends without running. */
static int chaos_task(void *arg, void **res)
{
    struct stress *s = arg;
    uint32_t rng = 0x9e3779b9u;
    while (atomic_load(&s->started) < s->ntasks && !atomic_load(&s->stop_chaos))
        TRY(rv_yield());
    while (!atomic_load(&s->stop_chaos)) {
        if (rv_task_cancel(s->tasks[xorshift(&rng) % (uint32_t)s->ntasks], NULL) == 0)
            atomic_fetch_add(&s->cancel_requests, 1);
        note_max_size(s);
        for (uint32_t k = xorshift(&rng) % 8; k > 0; k--)
            TRY(rv_yield());
        if (xorshift(&rng) % 256 == 0)
            TRY(rv_sleep(1 * MS));
    }
    return 0;
}

static int stress_main(void *arg, void **res)
{
    struct stress *s = arg;
    const struct stress_cfg *cfg = s->cfg;
    for (int i = 0; i < s->ntasks; i++)
        TRY(rv_spawn(NULL, i < cfg->prod_tasks ? producer_task : consumer_task, s, NULL,
                     &s->tasks[i]));
    if (cfg->chaos)
        TRY(rv_spawn(NULL, chaos_task, s, NULL, &s->chaos));
    int64_t deadline = rv_now() + WAIT_NS;
    while (atomic_load(&s->producers_done) < cfg->prod_tasks + cfg->prod_threads) {
        if (rv_now() > deadline)
            return -ETIMEDOUT;
        TRY(rv_sleep(1 * MS));
    }
    TRY(spawn_op(&s->join, join_body, s->q, 0, 1, -1));
    finish(&s->join);
    atomic_store(&s->stop_chaos, true);
    if (s->chaos)
        rv_future_wait(rv_task_future(s->chaos), WAIT_NS, NULL);
    TRY(rv_queue_shutdown(s->q, false, NULL)); /* consumers drain, then stop */
    /* A consumer may end cancelled (a request still pending at its return):
     * consumers_done says whether it saw -ESHUTDOWN. */
    for (int i = cfg->prod_tasks; i < s->ntasks; i++)
        rv_future_wait(rv_task_future(s->tasks[i]), WAIT_NS, NULL);
    return 0;
}

static void run_stress(const struct stress_cfg *cfg)
{
    struct stress s = {.cfg = cfg, .q = make_queue(RV_QUEUE_FIFO, cfg->maxsize)};
    atomic_init(&s.next_item, 1);
    s.seen = calloc((size_t)cfg->items, sizeof *s.seen);
    s.ntasks = cfg->prod_tasks + cfg->cons_tasks;
    s.tasks = calloc((size_t)s.ntasks + 1, sizeof *s.tasks);
    pthread_t threads[16];
    int nthreads = cfg->prod_threads + cfg->cons_threads;
    assert_non_null(s.seen);
    assert_non_null(s.tasks);
    assert_true(nthreads <= 16);

    rv_runtime *rt = new_runtime(cfg->workers);
    int64_t t0 = rv_now();
    for (int i = 0; i < nthreads; i++)
        assert_int_equal(pthread_create(&threads[i], NULL,
                                        i < cfg->prod_threads ? producer_thread : consumer_thread,
                                        &s),
                         0);
    rv_task *main_task = NULL;
    assert_int_equal(rv_spawn(rt, stress_main, &s, NULL, &main_task), 0);
    int main_rc = rv_future_wait(rv_task_future(main_task), 2 * WAIT_NS, NULL);
    assert_int_equal(rv_task_release(main_task), 0);
    if (main_rc != 0) /* let the plain threads go */
        rv_queue_shutdown(s.q, true, NULL);
    for (int i = 0; i < nthreads; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    assert_int_equal(rv_runtime_shutdown(rt, WAIT_NS), 0);
    free_runtime(rt);

    int missing = 0, doubled = 0, first_bad = 0;
    for (int i = 0; i < cfg->items; i++) {
        int n = atomic_load(&s.seen[i]);
        missing += n == 0;
        doubled += n > 1;
        if (n != 1 && !first_bad)
            first_bad = i + 1;
    }
    print_message("stress: %d items, %u workers, %.0f ms; cancel requests %d, cancelled puts %d, "
                  "cancelled gets %d; max size %ld\n",
                  cfg->items, cfg->workers, (double)(rv_now() - t0) / 1e6,
                  atomic_load(&s.cancel_requests), atomic_load(&s.put_cancels),
                  atomic_load(&s.get_cancels), atomic_load(&s.max_size));
    if (missing || doubled)
        print_message("stress: %d items never taken, %d taken twice or more; first: item %d\n",
                      missing, doubled, first_bad);
    if (atomic_load(&s.errors))
        print_message("stress: %d unexpected results, first %s\n", atomic_load(&s.errors),
                      rv_err_name(atomic_load(&s.first_error)));
    assert_int_equal(main_rc, 0);
    assert_int_equal(atomic_load(&s.errors), 0);
    assert_int_equal(missing, 0);
    assert_int_equal(doubled, 0);
    assert_int_equal(op_rc(&s.join), 0);
    assert_int_equal(atomic_load(&s.consumers_done), cfg->cons_tasks + cfg->cons_threads);
    assert_true(atomic_load(&s.max_size) <= cfg->maxsize);

    for (int i = 0; i < s.ntasks; i++)
        assert_int_equal(rv_task_release(s.tasks[i]), 0);
    if (s.chaos)
        assert_int_equal(rv_task_release(s.chaos), 0);
    if (s.join.task)
        assert_int_equal(rv_task_release(s.join.task), 0);
    free_queue(s.q);
    free(s.tasks);
    free(s.seen);
}

/* rv_queue_put "block[s] a plain thread": one producer thread feeds three
 * consumer tasks through a 4-slot queue; every item arrives exactly once. */
static void test_thread_producer_to_tasks(void **state)
{
    run_stress(&(struct stress_cfg){.workers = 2,
                                    .items = 50000 / SCALE_DIV,
                                    .maxsize = 4,
                                    .cons_tasks = 3,
                                    .prod_threads = 1});
}

/* rv_queue_get blocks a plain thread: three producer tasks feed one consumer
 * thread through a 4-slot queue. */
static void test_tasks_to_thread_consumer(void **state)
{
    run_stress(&(struct stress_cfg){.workers = 2,
                                    .items = 50000 / SCALE_DIV,
                                    .maxsize = 4,
                                    .prod_tasks = 3,
                                    .cons_threads = 1});
}

/* Stress on 2 workers: 4 producer and 4 consumer tasks through an 8-slot
 * queue while a task cancels them at random: "-ECANCELED (the item was not
 * put)" and a cancelled get takes nothing, so with retries every item is
 * taken exactly once; join returns once all are done. */
static void test_stress_cancel_two_workers(void **state)
{
    run_stress(&(struct stress_cfg){.workers = 2,
                                    .items = 1000000 / SCALE_DIV,
                                    .maxsize = 8,
                                    .prod_tasks = 4,
                                    .cons_tasks = 4,
                                    .chaos = true});
}

/* The same on one worker per CPU, with two producer and two consumer plain
 * threads among the tasks. */
static void test_stress_cancel_all_cpus(void **state)
{
    run_stress(&(struct stress_cfg){.workers = 0,
                                    .items = 1000000 / SCALE_DIV,
                                    .maxsize = 8,
                                    .prod_tasks = 4,
                                    .cons_tasks = 4,
                                    .prod_threads = 2,
                                    .cons_threads = 2,
                                    .chaos = true});
}

/* ------------------------------------------------------------------------- */

/* A test run once per kind, as CPython runs its mixins on Queue, LifoQueue and
 * PriorityQueue. */
#define EACH_KIND(f)                                                                               \
    {.name = #f "(fifo)", .test_func = f, .initial_state = &KIND_FIFO},                            \
        {.name = #f "(lifo)", .test_func = f, .initial_state = &KIND_LIFO},                        \
    {                                                                                              \
        .name = #f "(priority)", .test_func = f, .initial_state = &KIND_PRIORITY                   \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_invalid),
        cmocka_unit_test(test_new_enomem),
        cmocka_unit_test(test_null_handle),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_unbounded),
        cmocka_unit_test(test_null_item),
        cmocka_unit_test(test_nonblocking_get_put),
        cmocka_unit_test(test_nonblocking_get_exception),
        cmocka_unit_test(test_nonblocking_put_exception),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_lifo_order),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_priority_comparator_gets_items),
        EACH_KIND(test_matches_reference_model),
        cmocka_unit_test(test_maxsize),
        cmocka_unit_test(test_blocking_get),
        cmocka_unit_test(test_get_with_putters),
        cmocka_unit_test(test_blocking_get_wait),
        cmocka_unit_test(test_get_cancelled),
        cmocka_unit_test(test_get_cancelled_race),
        cmocka_unit_test(test_get_with_waiting_putters),
        cmocka_unit_test(test_why_are_getters_waiting),
        cmocka_unit_test(test_cancelled_getters_not_being_held_in_self_getters),
        cmocka_unit_test(test_get_cancel_drop_one_pending_reader),
        cmocka_unit_test(test_get_cancel_drop_many_pending_readers),
        cmocka_unit_test(test_blocking_put),
        cmocka_unit_test(test_blocking_put_wait),
        cmocka_unit_test(test_put_cancel_drop),
        cmocka_unit_test(test_put_cancelled),
        cmocka_unit_test(test_put_cancelled_race),
        cmocka_unit_test(test_put_with_waiting_getters),
        cmocka_unit_test(test_why_are_putters_waiting),
        cmocka_unit_test(test_cancelled_puts_not_being_held_in_self_putters),
        cmocka_unit_test(test_cancelled_put_silence_value_error_exception),
        cmocka_unit_test(test_getters_served_fifo),
        cmocka_unit_test(test_putters_served_fifo),
        cmocka_unit_test(test_no_barging_get),
        cmocka_unit_test(test_no_barging_get_keeps_order),
        cmocka_unit_test(test_no_barging_put),
        cmocka_unit_test(test_woken_putter_cancelled_passes_slot_on),
        cmocka_unit_test(test_free_busy),
        cmocka_unit_test(test_free_busy_woken_getter),
        EACH_KIND(test_task_done_underflow),
        EACH_KIND(test_task_done),
        EACH_KIND(test_join_empty_queue),
        EACH_KIND(test_join_waits_for_task_done),
        cmocka_unit_test(test_join_cancelled),
        cmocka_unit_test(test_join_plain_thread),
        EACH_KIND(test_shutdown_empty),
        EACH_KIND(test_shutdown_nonempty),
        EACH_KIND(test_shutdown_immediate),
        EACH_KIND(test_shutdown_immediate_with_unfinished),
        EACH_KIND(test_shutdown_putters),
        EACH_KIND(test_shutdown_getters),
        EACH_KIND(test_shutdown_immediate_getters),
        EACH_KIND(test_shutdown_join_immediate),
        EACH_KIND(test_shutdown_drop_callback),
        EACH_KIND(test_shutdown_drop_not_called_without_immediate),
        EACH_KIND(test_shutdown_immediate_woken_getter),
        EACH_KIND(test_shutdown_woken_putter),
        cmocka_unit_test(test_runtime_shutdown_releases_waiters),
        cmocka_unit_test(test_get_timeout_task),
        cmocka_unit_test(test_get_timeout_plain_thread),
        cmocka_unit_test(test_put_timeout_task),
        cmocka_unit_test(test_put_timeout_plain_thread),
        cmocka_unit_test(test_plain_thread_get_blocks),
        cmocka_unit_test(test_plain_thread_put_blocks),
        cmocka_unit_test(test_shutdown_wakes_plain_threads),
        cmocka_unit_test(test_edeadlk_in_callback),
        cmocka_unit_test(test_thread_producer_to_tasks),
        cmocka_unit_test(test_tasks_to_thread_consumer),
        cmocka_unit_test(test_stress_cancel_two_workers),
        cmocka_unit_test(test_stress_cancel_all_cpus),
    };
    /* RV_TEST_FILTER / RV_TEST_SKIP: cmocka name patterns (with * and ?). */
    const char *filter = getenv("RV_TEST_FILTER"), *skip = getenv("RV_TEST_SKIP");
    if (filter)
        cmocka_set_test_filter(filter);
    if (skip)
        cmocka_set_skip_filter(skip);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
