/* test-sync.c - Lock, Event, Condition, Semaphore, BoundedSemaphore and
 * Barrier (include/ravel/sync.h).
 *
 * 1. Ports of CPython's Lib/test/test_asyncio/test_locks.py (LockTests,
 *    EventTests, ConditionTests, SemaphoreTests, BarrierTests) where they
 *    apply to C. The comment above each test names the CPython test it ports
 *    or the header statement it checks. Where the header leaves open what
 *    CPython's test relies on (the order in which tasks woken together run),
 *    or says more than CPython checks (a barrier's indices stay distinct when
 *    a waiter leaves), the header decides and the comment says so.
 * 2. Header statements CPython has no test for: no barging, a waiter woken
 *    and then cancelled passes what it was given on, -EBUSY from destroy,
 *    -EPERM outside a task, calls from plain threads and callbacks, NULL
 *    handles.
 * 3. Stress on several workers: a Lock guarding a plain counter, a bounded
 *    buffer on two Conditions, a Semaphore under random cancellations, an
 *    Event with many waiters, a Barrier over many rounds. Sizes shrink under
 *    the sanitizers (test-scale.h).
 *
 * Ordering-sensitive tests run a "main" task on a 1-worker runtime: a task it
 * starts runs only once main suspends, and settle() lets every other task run
 * until it blocks. start_waiting() starts a task and settles, so the order of
 * the start_waiting calls is the order in which the tasks reach the
 * primitive.
 *
 * cmocka is not thread-safe: tasks record failed expectations with CHECK()
 * (the first one is kept, with its line); the test thread reports it once the
 * runtime is freed, and asserts on what the tasks left behind.
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

#include "test-util.h"
#include "test-scale.h"

/* Deadline for a scenario's main task, which may wait WAIT_NS for each of
 * its tasks in turn. */
#define MAIN_WAIT_NS (60 * SEC)
/* Deadline for each task of a stress test. */
#define STRESS_WAIT_NS (120 * SEC)

/* ------------------------------------------------------------------------- */
/* Expectations recorded off the test thread                                  */

struct checks {
    atomic_int failed;
    int line; /* of the first failure */
    char msg[200];
};

static void check_fail(struct checks *ck, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check_fail(struct checks *ck, int line, const char *fmt, ...)
{
    if (atomic_fetch_add(&ck->failed, 1) != 0)
        return; /* keep the first */
    ck->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ck->msg, sizeof ck->msg, fmt, ap);
    va_end(ap);
}

/* " (ECANCELED)" after a negative value, nothing after others. */
static const char *errname(char *buf, size_t size, long v)
{
    if (v >= 0)
        return "";
    snprintf(buf, size, " (%s)", rv_err_name((int)v));
    return buf;
}

static bool check_eq_at(struct checks *ck, long got, long want, const char *expr, int line)
{
    char a[32], b[32];
    if (got != want)
        check_fail(ck, line, "%s is %ld%s, want %ld%s", expr, got, errname(a, sizeof a, got), want,
                   errname(b, sizeof b, want));
    return got == want;
}

static bool check_at(struct checks *ck, bool ok, const char *expr, int line)
{
    if (!ok)
        check_fail(ck, line, "%s is false", expr);
    return ok;
}

/* `x` is any struct with a `struct checks ck` member. */
#define CHECK(x, cond) check_at(&(x)->ck, (cond), #cond, __LINE__)
#define CHECK_EQ(x, got, want) check_eq_at(&(x)->ck, (long)(got), (long)(want), #got, __LINE__)

/* Test thread: fail with the first expectation a task recorded as failed. */
static void assert_checks(struct checks *ck)
{
    int n = atomic_load(&ck->failed);
    if (n == 0)
        return;
    fail_msg("test-sync.c:%d: %s (%d failed check%s)", ck->line, ck->msg, n, n == 1 ? "" : "s");
}

/* ------------------------------------------------------------------------- */
/* Scenarios: the objects under test and what the tasks saw                   */

#define TRACE_MAX 32

struct prim;
struct actor;
typedef int (*actor_op)(struct actor *a);

struct sc {
    struct checks ck;
    /* Configuration, set by the test before sc_init. */
    int sem_value;
    bool bounded;
    int parties, parties2; /* 0: 3, and the same as parties */
    const struct prim *prim;
    actor_op op; /* for mains that serve several tests */
    /* The objects under test. The condition has a lock of its own. */
    rv_lock lock;
    rv_cond cond;
    rv_event ev;
    rv_sem sem;
    rv_barrier bar, bar2;
    /* What the tasks did, in order. Written by tasks of a 1-worker runtime
     * only; multi-worker tests use the atomic counters. */
    int trace[TRACE_MAX];
    int ntrace;
    bool pred; /* the condition's predicate */
    int pred_calls, pred_unlocked;
    atomic_int probe;
    atomic_int n1, n2, n3, rewait;
    atomic_int gave, give_rc;
};

static void note(struct sc *s, int v)
{
    if (s->ntrace < TRACE_MAX)
        s->trace[s->ntrace] = v;
    s->ntrace++;
}

static void sc_init(struct sc *s)
{
    atomic_init(&s->ck.failed, 0);
    atomic_init(&s->probe, 0);
    atomic_init(&s->n1, 0);
    atomic_init(&s->n2, 0);
    atomic_init(&s->n3, 0);
    atomic_init(&s->rewait, 0);
    atomic_init(&s->gave, 0);
    atomic_init(&s->give_rc, 1);
    if (s->parties == 0)
        s->parties = 3;
    if (s->parties2 == 0)
        s->parties2 = s->parties;
    assert_int_equal(rv_lock_init(&s->lock), 0);
    assert_int_equal(rv_cond_init(&s->cond, NULL), 0);
    assert_int_equal(rv_event_init(&s->ev), 0);
    if (s->bounded)
        assert_int_equal(rv_sem_init_bounded(&s->sem, s->sem_value), 0);
    else
        assert_int_equal(rv_sem_init(&s->sem, s->sem_value), 0);
    assert_int_equal(rv_barrier_init(&s->bar, s->parties), 0);
    assert_int_equal(rv_barrier_init(&s->bar2, s->parties2), 0);
}

/* Report what the tasks recorded, then tear down: every task has ended, so
 * no object may still have a waiter ("-EBUSY while tasks wait"). */
static void sc_fini(struct sc *s)
{
    assert_checks(&s->ck);
    assert_int_equal(rv_lock_destroy(&s->lock), 0);
    assert_int_equal(rv_cond_destroy(&s->cond), 0);
    assert_int_equal(rv_event_destroy(&s->ev), 0);
    assert_int_equal(rv_sem_destroy(&s->sem), 0);
    assert_int_equal(rv_barrier_destroy(&s->bar), 0);
    assert_int_equal(rv_barrier_destroy(&s->bar2), 0);
}

/* Run main_fn(s) as the main task of a fresh runtime with `workers` workers,
 * then report what it recorded. */
static void sc_run(struct sc *s, unsigned workers, rv_task_fn main_fn)
{
    sc_init(s);
    rv_runtime *rt = new_runtime(workers);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, main_fn, s, NULL, &t), 0);
    int rc = rv_future_wait(rv_task_future(t), MAIN_WAIT_NS, NULL);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt); /* cancels main if it is still running */
    assert_checks(&s->ck);
    assert_int_equal(rc, 0);
    sc_fini(s);
}

static void fmt_ints(char *buf, size_t size, const int *v, int n)
{
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n && i < TRACE_MAX && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ", %d" : "%d", v[i]);
    if (at < size)
        snprintf(buf + at, size - at, "]");
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* The trace equals want[0..n) (in any order when `sorted`). */
static void check_trace_at(struct sc *s, const int *want, int n, bool sorted, int line)
{
    int got[TRACE_MAX], exp[TRACE_MAX];
    int ngot = s->ntrace < TRACE_MAX ? s->ntrace : TRACE_MAX;
    memcpy(got, s->trace, sizeof(int) * (size_t)ngot);
    memcpy(exp, want, sizeof(int) * (size_t)n);
    if (sorted) {
        qsort(got, (size_t)ngot, sizeof(int), cmp_int);
        qsort(exp, (size_t)n, sizeof(int), cmp_int);
    }
    if (s->ntrace == n && memcmp(got, exp, sizeof(int) * (size_t)n) == 0)
        return;
    char a[100], b[100];
    fmt_ints(a, sizeof a, s->trace, s->ntrace);
    fmt_ints(b, sizeof b, want, n);
    check_fail(&s->ck, line, "trace is %s, want %s%s", a, sorted ? "in any order " : "", b);
}

#define INTS(...)                                                                                  \
    (const int[]){__VA_ARGS__}, (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int))
/* The tasks did these steps, in this order. */
#define CHECK_TRACE(s, ...) check_trace_at((s), INTS(__VA_ARGS__), false, __LINE__)
/* The tasks did these steps, in some order. */
#define CHECK_TRACE_SET(s, ...) check_trace_at((s), INTS(__VA_ARGS__), true, __LINE__)

/* ------------------------------------------------------------------------- */
/* Actors: tasks that make one call under test                                */

#define NOT_RETURNED 1 /* rc of an actor whose call has not returned */

struct actor {
    struct sc *s;
    actor_op op;
    int id;             /* noted in the trace when the call succeeds */
    bool release;       /* give back what was taken, once noted */
    rv_future *blocker; /* op_lock: awaited while holding the lock */
    struct actor *peer; /* ops that act on another actor */
    atomic_int entered; /* the task has started its op */
    int rc;             /* what the call under test returned */
    int rc2;            /* ops that make a second call: what it returned */
    bool locked_after;  /* condition waits: the lock was held on return */
    bool cancelled;     /* set by JOIN: the task ended cancelled */
    rv_task *t;
};

static int actor_body(void *arg, void **res)
{
    struct actor *a = arg;
    atomic_store(&a->entered, 1);
    a->rc = a->op(a);
    return a->rc < 0 ? a->rc : 0;
}

static void actor_prepare(struct actor *a, struct sc *s, actor_op op, int id, bool release)
{
    a->s = s;
    a->op = op;
    a->id = id;
    a->release = release;
    a->rc = NOT_RETURNED;
    atomic_init(&a->entered, 0);
    a->t = NULL;
}

/* Inside a 1-worker main: let every other task run until it blocks. The
 * sleep idles main; the yields give a last turn to tasks that were woken
 * while main's timer fired. */
static void settle(void)
{
    rv_sleep(2 * MS);
    for (int i = 0; i < 4; i++)
        rv_yield();
}

/* Inside main: start actor `a` (it runs once main suspends). */
static void start(struct actor *a, struct sc *s, actor_op op, int id, bool release)
{
    actor_prepare(a, s, op, id, release);
    CHECK_EQ(s, rv_spawn(NULL, actor_body, a, NULL, &a->t), 0);
}

/* Start `a` and let it reach its wait: calls made in this order arrive at
 * the primitive in this order. */
static void start_waiting(struct actor *a, struct sc *s, actor_op op, int id, bool release)
{
    start(a, s, op, id, release);
    settle();
}

static bool done(const struct actor *a) { return a->t && rv_future_done(rv_task_future(a->t)); }

/* Wait (WAIT_NS) for the actor's task to end and drop its handle. Returns
 * the task's code: a->rc when negative, -ECANCELED when cancelled. */
static int join_at(struct actor *a, int line)
{
    if (!a->t) {
        check_fail(&a->s->ck, line, "actor %d has no task", a->id);
        return -ESRCH;
    }
    rv_future *f = rv_task_future(a->t);
    int rc = rv_future_wait(f, WAIT_NS, NULL);
    if (rc == -ETIMEDOUT) {
        check_fail(&a->s->ck, line, "actor %d still running after %lld s", a->id,
                   (long long)(WAIT_NS / SEC));
        rv_task_cancel(a->t, "test-sync: timed out");
        rv_future_wait(f, WAIT_NS, NULL);
    }
    a->cancelled = rv_future_cancelled(f);
    rv_task_release(a->t);
    a->t = NULL;
    return rc;
}
#define JOIN(a) join_at((a), __LINE__)

static int cancel(struct actor *a) { return rv_task_cancel(a->t, NULL); }

/* The suspension probe (1-worker main only): a task that can run only once
 * the caller suspends. */
static int probe_body(void *arg, void **res)
{
    atomic_store((atomic_int *)arg, 1);
    return 0;
}

static void probe_arm(struct sc *s)
{
    atomic_store(&s->probe, 0);
    CHECK_EQ(s, rv_spawn(NULL, probe_body, &s->probe, NULL, NULL), 0);
}

static bool probe_fired(struct sc *s) { return atomic_load(&s->probe) != 0; }

/* The calls under test. Each notes a->id on success, then gives back what it
 * took when a->release. */

static int op_lock(struct actor *a)
{
    struct sc *s = a->s;
    int rc = rv_lock_acquire(&s->lock);
    if (rc != 0)
        return rc;
    note(s, a->id);
    if (a->blocker)
        CHECK_EQ(s, rv_await(a->blocker, NULL), 0);
    if (a->release)
        CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    return 0;
}

static int op_sem(struct actor *a)
{
    struct sc *s = a->s;
    int rc = rv_sem_acquire(&s->sem);
    if (rc != 0)
        return rc;
    note(s, a->id);
    if (a->release)
        CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    return 0;
}

static int op_event(struct actor *a)
{
    int rc = rv_event_wait(&a->s->ev);
    if (rc == 0)
        note(a->s, a->id);
    return rc;
}

static bool sc_pred(void *arg)
{
    struct sc *s = arg;
    s->pred_calls++;
    if (!rv_lock_locked(rv_cond_lock(&s->cond)))
        s->pred_unlocked++;
    return s->pred;
}

/* Take the condition's lock, wait (for sc_pred when use_pred), note. The
 * lock is held again whatever the wait returned, so release gives it back
 * either way. */
static int cond_wait_actor(struct actor *a, bool use_pred)
{
    struct sc *s = a->s;
    rv_lock *l = rv_cond_lock(&s->cond);
    if (!CHECK_EQ(s, rv_lock_acquire(l), 0))
        return -EIO;
    int rc = use_pred ? rv_cond_wait_for(&s->cond, sc_pred, s) : rv_cond_wait(&s->cond);
    a->locked_after = rv_lock_locked(l);
    if (rc == 0)
        note(s, a->id);
    if (a->release)
        CHECK_EQ(s, rv_lock_release(l), 0);
    return rc;
}

static int op_cond(struct actor *a) { return cond_wait_actor(a, false); }
static int op_cond_for(struct actor *a) { return cond_wait_actor(a, true); }

/* Take the condition's lock and end holding it. */
static int op_cond_lock_holder(struct actor *a)
{
    return rv_lock_acquire(rv_cond_lock(&a->s->cond));
}

/* rc: the arrival index, or the error. */
static int op_barrier(struct actor *a)
{
    int rc = rv_barrier_wait(&a->s->bar);
    if (rc >= 0)
        note(a->s, a->id);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* One shape, several primitives                                              */

/* What a test needs to make one task wait and then wake it. */
struct prim {
    actor_op wait;                 /* wait, note, give back (release) */
    int (*take)(struct sc *s);     /* main makes the next caller wait: 0 */
    int (*try_take)(struct sc *s); /* the same without waiting, any thread */
    int (*give)(struct sc *s);     /* wake the first waiter: 0 */
    bool (*held)(struct sc *s);    /* a caller would wait now */
    int (*destroy)(struct sc *s);
};

static int nothing(struct sc *s) { return 0; }

static int lock_take(struct sc *s) { return rv_lock_acquire(&s->lock); }
static int lock_try(struct sc *s) { return rv_lock_try_acquire(&s->lock); }
static int lock_give(struct sc *s) { return rv_lock_release(&s->lock); }
static bool lock_held(struct sc *s) { return rv_lock_locked(&s->lock); }
static int lock_destroy(struct sc *s) { return rv_lock_destroy(&s->lock); }

static int sem_take(struct sc *s) { return rv_sem_acquire(&s->sem); }
static int sem_try(struct sc *s) { return rv_sem_try_acquire(&s->sem); }
static int sem_give(struct sc *s) { return rv_sem_release(&s->sem); }
static bool sem_held(struct sc *s) { return rv_sem_locked(&s->sem); }
static int sem_destroy(struct sc *s) { return rv_sem_destroy(&s->sem); }

static int event_give(struct sc *s) { return rv_event_set(&s->ev); }
static int event_destroy(struct sc *s) { return rv_event_destroy(&s->ev); }

/* Notify one waiter with the lock held (suspends: tasks only). */
static int cond_give(struct sc *s)
{
    rv_lock *l = rv_cond_lock(&s->cond);
    int rc = rv_lock_acquire(l);
    if (rc != 0)
        return rc;
    int woken = rv_cond_notify(&s->cond, 1);
    rc = rv_lock_release(l);
    CHECK_EQ(s, woken, 1);
    return rc;
}
static int cond_destroy(struct sc *s) { return rv_cond_destroy(&s->cond); }

static const struct prim LOCK = {op_lock, lock_take, lock_try, lock_give, lock_held, lock_destroy};
/* With sem_value 1: main's take empties it. */
static const struct prim SEM = {op_sem, sem_take, sem_try, sem_give, sem_held, sem_destroy};
static const struct prim COND = {op_cond, nothing, NULL, cond_give, NULL, cond_destroy};
static const struct prim EVENT = {op_event, nothing, NULL, event_give, NULL, event_destroy};

static void run_prim(const struct prim *p, rv_task_fn main_fn)
{
    struct sc s = {.sem_value = 1, .prim = p};
    sc_run(&s, 1, main_fn);
}

/* Two waiters; the first is woken (handed the lock, a unit, a notification)
 * and cancelled before it runs. */
static int woken_then_cancelled_main(void *arg, void **res)
{
    struct sc *s = arg;
    const struct prim *p = s->prim;
    struct actor b = {0}, c = {0};
    CHECK_EQ(s, p->take(s), 0);
    start_waiting(&b, s, p->wait, 2, true);
    start_waiting(&c, s, p->wait, 3, true);
    CHECK_EQ(s, p->give(s), 0); /* to b, which has not run since */
    CHECK_EQ(s, cancel(&b), 0);
    settle();
    CHECK_EQ(s, JOIN(&b), -ECANCELED);
    CHECK_EQ(s, b.rc, -ECANCELED);
    CHECK_EQ(s, JOIN(&c), 0);
    CHECK_TRACE(s, 3);
    if (p->try_take) {
        CHECK_EQ(s, p->try_take(s), 0); /* all given back, nobody waits */
        CHECK_EQ(s, p->give(s), 0);
    }
    return 0;
}

/* A resource handed to a woken waiter that has not run yet is not free. */
static int no_barging_main(void *arg, void **res)
{
    struct sc *s = arg;
    const struct prim *p = s->prim;
    struct actor a[3] = {0};
    CHECK_EQ(s, p->take(s), 0);
    start_waiting(&a[0], s, p->wait, 1, true);
    start_waiting(&a[1], s, p->wait, 2, true);
    CHECK_EQ(s, p->try_take(s), -EAGAIN); /* taken */
    CHECK_EQ(s, p->give(s), 0);           /* handed to a[0], which has not run */
    CHECK(s, p->held(s));
    CHECK_EQ(s, p->try_take(s), -EAGAIN); /* no barging */
    /* A newcomer task: this scheduler runs it before the woken a[0]; it
     * must queue behind a[1]. */
    start(&a[2], s, p->wait, 3, true);
    settle();
    CHECK_TRACE(s, 1, 2, 3);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(s, JOIN(&a[i]), 0);
    CHECK_EQ(s, p->try_take(s), 0); /* free and nobody waits */
    CHECK_EQ(s, p->give(s), 0);
    return 0;
}

/* destroy "returns -EBUSY while tasks wait". */
static int destroy_busy_main(void *arg, void **res)
{
    struct sc *s = arg;
    const struct prim *p = s->prim;
    struct actor a = {0};
    CHECK_EQ(s, p->take(s), 0);
    start_waiting(&a, s, p->wait, 1, true);
    CHECK_EQ(s, p->destroy(s), -EBUSY);
    CHECK_EQ(s, p->give(s), 0);
    CHECK_EQ(s, JOIN(&a), 0);
    CHECK_TRACE(s, 1);
    return 0; /* sc_fini: destroy gives 0 now nobody waits */
}

static void give_cb(void *arg)
{
    struct sc *s = arg;
    atomic_store(&s->give_rc, s->prim->give(s));
    atomic_store(&s->gave, 1);
}

/* A task waits; a plain thread (or a callback) wakes it: "Calls that never
 * suspend ... are safe from any thread, including plain threads and
 * callbacks." */
static void give_from_outside(const struct prim *p, bool from_callback)
{
    struct sc s = {.sem_value = 1, .prim = p};
    sc_init(&s);
    rv_runtime *rt = new_runtime(1);
    if (p->try_take)
        assert_int_equal(p->try_take(&s), 0);
    struct actor a = {0};
    actor_prepare(&a, &s, p->wait, 1, true);
    assert_int_equal(rv_spawn(rt, actor_body, &a, NULL, &a.t), 0);
    assert_true(wait_atomic(&a.entered, 1));
    sleep_ms(20); /* let it park (were it late, it would find it free: same end) */
    if (from_callback) {
        assert_int_equal(rv_call_soon(rt, give_cb, &s, NULL), 0);
        assert_true(wait_atomic(&s.gave, 1));
        assert_int_equal(atomic_load(&s.give_rc), 0);
    } else {
        assert_int_equal(p->give(&s), 0);
    }
    assert_int_equal(rv_future_wait(rv_task_future(a.t), WAIT_NS, NULL), 0);
    assert_int_equal(a.rc, 0);
    assert_int_equal(rv_task_release(a.t), 0);
    free_runtime(rt);
    assert_int_equal(s.ntrace, 1);
    sc_fini(&s);
}

/* ------------------------------------------------------------------------- */
/* Lock                                                                       */

static int lock_acquire_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[3] = {0};
    CHECK_EQ(s, rv_lock_acquire(&s->lock), 0);
    start_waiting(&a[0], s, op_lock, 1, false);
    start_waiting(&a[1], s, op_lock, 2, false);
    CHECK_EQ(s, s->ntrace, 0);
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    settle();
    CHECK_TRACE(s, 1);
    settle();
    CHECK_TRACE(s, 1);
    start_waiting(&a[2], s, op_lock, 3, false);
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    settle();
    CHECK_TRACE(s, 1, 2);
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    settle();
    CHECK_TRACE(s, 1, 2, 3);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(s, JOIN(&a[i]), 0);
    CHECK(s, rv_lock_locked(&s->lock));
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    return 0;
}

/* LockTests.test_acquire: waiters get the lock in the order they asked,
 * one per release ("Waiters are served first come, first served"). */
static void test_lock_acquire(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, lock_acquire_main);
}

static int lock_acquire_cancel_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    CHECK_EQ(s, rv_lock_acquire(&s->lock), 0);
    start_waiting(&a, s, op_lock, 1, true);
    CHECK_EQ(s, cancel(&a), 0);
    CHECK_EQ(s, JOIN(&a), -ECANCELED);
    CHECK_EQ(s, a.rc, -ECANCELED);
    CHECK(s, a.cancelled);
    CHECK(s, rv_lock_locked(&s->lock)); /* still ours */
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    /* No waiter left behind: try_acquire needs "free and nobody waits". */
    CHECK_EQ(s, rv_lock_try_acquire(&s->lock), 0);
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    return 0;
}

/* LockTests.test_acquire_cancel; rv_lock_acquire: "-ECANCELED when the task
 * is cancelled while waiting (the lock is not held)". */
static void test_lock_acquire_cancel(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, lock_acquire_cancel_main);
}

static int lock_cancel_race_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0}, b = {0}, c = {0};
    rv_future *fa = NULL;
    CHECK_EQ(s, rv_future_new(NULL, &fa), 0);
    a.blocker = fa;
    start_waiting(&a, s, op_lock, 1, true); /* takes the lock, awaits fa */
    CHECK(s, rv_lock_locked(&s->lock));
    start_waiting(&b, s, op_lock, 2, true);
    start_waiting(&c, s, op_lock, 3, true);
    /* The race: A is about to release while B, first in line, is cancelled. */
    CHECK_EQ(s, rv_future_set_result(fa, NULL), 0);
    CHECK_EQ(s, cancel(&b), 0);
    settle();
    CHECK(s, !rv_lock_locked(&s->lock));
    CHECK(s, done(&a));
    CHECK_EQ(s, JOIN(&a), 0);
    CHECK_EQ(s, JOIN(&b), -ECANCELED);
    CHECK(s, b.cancelled);
    CHECK_EQ(s, JOIN(&c), 0);
    CHECK_TRACE(s, 1, 3);
    rv_future_release(fa);
    return 0;
}

/* LockTests.test_cancel_race: A holds the lock, B and C wait; A releases
 * while B is cancelled: the lock goes to C, and is free at the end. */
static void test_lock_cancel_race(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, lock_cancel_race_main);
}

static int lock_cancel_release_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor t[3] = {0};
    CHECK_EQ(s, rv_lock_acquire(&s->lock), 0);
    for (int i = 0; i < 3; i++)
        start_waiting(&t[i], s, op_lock, i + 1, false);
    /* trigger(): cancel the first waiter and release, in one step. */
    CHECK_EQ(s, cancel(&t[0]), 0);
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    CHECK_EQ(s, JOIN(&t[0]), -ECANCELED);
    settle();
    CHECK_TRACE(s, 2); /* the lock was taken once */
    CHECK(s, done(&t[1]));
    CHECK_EQ(s, JOIN(&t[1]), 0);
    CHECK(s, !done(&t[2]));
    CHECK_EQ(s, cancel(&t[2]), 0);
    CHECK_EQ(s, JOIN(&t[2]), -ECANCELED);
    CHECK(s, rv_lock_locked(&s->lock)); /* t[1] kept it */
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    return 0;
}

/* LockTests.test_cancel_release_race (bpo-32734): cancelling the first of
 * three waiters and releasing in the same step hands the lock out once. */
static void test_lock_cancel_release_race(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, lock_cancel_release_main);
}

static int lock_finished_waiter_cancelled_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor b = {0}, c = {0};
    CHECK_EQ(s, rv_lock_acquire(&s->lock), 0);
    start_waiting(&b, s, op_lock, 2, false);
    start(&c, s, op_lock, 3, false); /* has not run yet */
    CHECK_EQ(s, cancel(&b), 0);
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    settle();
    CHECK(s, rv_lock_locked(&s->lock));
    CHECK_EQ(s, JOIN(&b), -ECANCELED);
    CHECK(s, b.cancelled);
    CHECK_EQ(s, JOIN(&c), 0);
    CHECK_TRACE(s, 3);
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    return 0;
}

/* LockTests.test_finished_waiter_cancelled: a second waiter arrives, the
 * first is cancelled and the lock released: the second gets it. */
static void test_lock_finished_waiter_cancelled(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, lock_finished_waiter_cancelled_main);
}

/* rv_lock_acquire: "if it had just been handed over, it is passed on"; sync.h:
 * "A waiter that was woken (handed the lock ...) and is cancelled before it
 * runs passes what it was given on to the next waiter, and returns
 * -ECANCELED". */
static void test_lock_woken_then_cancelled(void **state)
{
    run_prim(&LOCK, woken_then_cancelled_main);
}

/* rv_lock_try_acquire: "Take the lock only if it is free and nobody waits";
 * sync.h: "a newcomer never takes what a waiter was promised": after a
 * release to a waiter that has not run yet, try_acquire fails and a newcomer
 * task queues behind the others. (No test_locks.py counterpart.) */
static void test_lock_fifo_nowait(void **state) { run_prim(&LOCK, no_barging_main); }

/* LockTests.test_release_not_acquired: rv_lock_release: "-EPERM when the lock
 * is not held (asyncio's RuntimeError)". */
static void test_lock_release_not_acquired(void **state)
{
    rv_lock l;
    assert_int_equal(rv_lock_init(&l), 0);
    assert_int_equal(rv_lock_release(&l), -EPERM);
    assert_int_equal(rv_lock_try_acquire(&l), 0);
    assert_int_equal(rv_lock_release(&l), 0);
    assert_int_equal(rv_lock_release(&l), -EPERM);
    assert_false(rv_lock_locked(&l));
    assert_int_equal(rv_lock_destroy(&l), 0);
}

/* LockTests.test_release_no_waiters; rv_lock_try_acquire: "Any thread (the
 * owner is then no task)"; rv_lock_locked: "True while held"; rv_lock_acquire:
 * "-EPERM outside a task". */
static void test_lock_release_no_waiters(void **state)
{
    rv_lock l;
    assert_int_equal(rv_lock_init(&l), 0);
    assert_false(rv_lock_locked(&l));
    assert_int_equal(rv_lock_try_acquire(&l), 0);
    assert_true(rv_lock_locked(&l));
    assert_int_equal(rv_lock_try_acquire(&l), -EAGAIN);
    assert_int_equal(rv_lock_acquire(&l), -EPERM);
    assert_int_equal(rv_lock_release(&l), 0);
    assert_false(rv_lock_locked(&l));
    assert_int_equal(rv_lock_acquire(&l), -EPERM);
    assert_false(rv_lock_locked(&l));
    assert_int_equal(rv_lock_destroy(&l), 0);
}

static int op_lock_twice(struct actor *a)
{
    struct sc *s = a->s;
    if (!CHECK_EQ(s, rv_lock_acquire(&s->lock), 0))
        return -EIO;
    note(s, a->id);
    return rv_lock_acquire(&s->lock);
}

static int lock_not_reentrant_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    start_waiting(&a, s, op_lock_twice, 1, false);
    settle();
    CHECK_TRACE(s, 1);
    CHECK(s, !done(&a));
    CHECK_EQ(s, cancel(&a), 0);
    CHECK_EQ(s, JOIN(&a), -ECANCELED);
    CHECK_EQ(s, a.rc, -ECANCELED);
    CHECK(s, rv_lock_locked(&s->lock)); /* the first acquire still holds it */
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    CHECK_EQ(s, rv_lock_try_acquire(&s->lock), 0);
    CHECK_EQ(s, rv_lock_release(&s->lock), 0);
    return 0;
}

/* rv_lock_acquire: "Not reentrant: a task that already holds it waits
 * forever (as asyncio)" - until cancelled. */
static void test_lock_not_reentrant(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, lock_not_reentrant_main);
}

/* rv_lock_release: "Any thread, as asyncio: it does not have to be the task
 * that acquired it": a plain thread's release hands the lock to a task. */
static void test_lock_release_from_plain_thread(void **state) { give_from_outside(&LOCK, false); }

/* The same from a callback ("including plain threads and callbacks"). */
static void test_lock_release_from_callback(void **state) { give_from_outside(&LOCK, true); }

/* rv_lock_destroy: "-EBUSY while tasks wait on it". */
static void test_lock_destroy_busy(void **state) { run_prim(&LOCK, destroy_busy_main); }

/* rv_lock_destroy: "The lock may be held." */
static void test_lock_destroy_held(void **state)
{
    rv_lock l;
    assert_int_equal(rv_lock_init(&l), 0);
    assert_int_equal(rv_lock_try_acquire(&l), 0);
    assert_int_equal(rv_lock_destroy(&l), 0);
}

/* ------------------------------------------------------------------------- */
/* Event                                                                      */

static int event_wait_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[3] = {0};
    CHECK(s, !rv_event_is_set(&s->ev));
    start_waiting(&a[0], s, op_event, 1, false);
    start_waiting(&a[1], s, op_event, 2, false);
    CHECK_EQ(s, s->ntrace, 0);
    start(&a[2], s, op_event, 3, false); /* waits only after the set */
    CHECK_EQ(s, rv_event_set(&s->ev), 0);
    settle();
    CHECK_TRACE_SET(s, 1, 2, 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(s, JOIN(&a[i]), 0);
        CHECK_EQ(s, a[i].rc, 0);
    }
    return 0;
}

/* EventTests.test_wait: set wakes every waiter, and a wait that starts after
 * the set returns 0. CPython also checks the order [3, 1, 2] (asyncio's
 * call_soon order); the header does not say in which order woken tasks run,
 * so only the set of woken tasks is checked. */
static void test_event_wait(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, event_wait_main);
}

static int event_wait_on_set_main(void *arg, void **res)
{
    struct sc *s = arg;
    CHECK_EQ(s, rv_event_set(&s->ev), 0);
    probe_arm(s);
    CHECK_EQ(s, rv_event_wait(&s->ev), 0);
    CHECK(s, !probe_fired(s));
    settle();
    return 0;
}

/* EventTests.test_wait_on_set; rv_event_wait: "0 at once when it already
 * is" (without suspending). */
static void test_event_wait_on_set(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, event_wait_on_set_main);
}

static int event_wait_cancel_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    start_waiting(&a, s, op_event, 1, false);
    CHECK_EQ(s, cancel(&a), 0);
    CHECK_EQ(s, JOIN(&a), -ECANCELED);
    CHECK_EQ(s, a.rc, -ECANCELED);
    CHECK(s, !rv_event_is_set(&s->ev));
    return 0; /* sc_fini: no waiter left (destroy is not -EBUSY) */
}

/* EventTests.test_wait_cancel; rv_event_wait: "-ECANCELED when cancelled
 * while waiting", and the waiter is gone. */
static void test_event_wait_cancel(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, event_wait_cancel_main);
}

/* EventTests.test_clear; rv_event_set: "Setting a set event does nothing". */
static void test_event_clear(void **state)
{
    rv_event e;
    assert_int_equal(rv_event_init(&e), 0);
    assert_false(rv_event_is_set(&e));
    assert_int_equal(rv_event_set(&e), 0);
    assert_true(rv_event_is_set(&e));
    assert_int_equal(rv_event_set(&e), 0);
    assert_true(rv_event_is_set(&e));
    assert_int_equal(rv_event_clear(&e), 0);
    assert_false(rv_event_is_set(&e));
    assert_int_equal(rv_event_clear(&e), 0);
    assert_false(rv_event_is_set(&e));
    assert_int_equal(rv_event_destroy(&e), 0);
}

static int event_clear_with_waiters_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    start_waiting(&a, s, op_event, 1, false);
    CHECK_EQ(s, s->ntrace, 0);
    CHECK_EQ(s, rv_event_set(&s->ev), 0);
    CHECK_EQ(s, rv_event_clear(&s->ev), 0);
    CHECK(s, !rv_event_is_set(&s->ev));
    CHECK_EQ(s, rv_event_set(&s->ev), 0);
    CHECK_EQ(s, rv_event_set(&s->ev), 0);
    settle();
    CHECK_TRACE(s, 1);
    CHECK_EQ(s, JOIN(&a), 0);
    return 0;
}

/* EventTests.test_clear_with_waiters: set, clear, set, set: the waiter wakes
 * once. */
static void test_event_clear_with_waiters(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, event_clear_with_waiters_main);
}

static int event_set_clear_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[3] = {0};
    start_waiting(&a[0], s, op_event, 1, false);
    start_waiting(&a[1], s, op_event, 2, false);
    CHECK_EQ(s, rv_event_set(&s->ev), 0);
    CHECK_EQ(s, rv_event_clear(&s->ev), 0);
    settle();
    CHECK_TRACE_SET(s, 1, 2);
    CHECK_EQ(s, JOIN(&a[0]), 0);
    CHECK_EQ(s, JOIN(&a[1]), 0);
    /* A wait that starts after the clear waits for the next set. */
    start_waiting(&a[2], s, op_event, 3, false);
    CHECK(s, !done(&a[2]));
    CHECK_EQ(s, rv_event_set(&s->ev), 0);
    CHECK_EQ(s, JOIN(&a[2]), 0);
    return 0;
}

/* rv_event_clear: "Tasks woken by an earlier set still return 0", even when
 * the clear comes before they run. */
static void test_event_set_then_clear_still_wakes(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, event_set_clear_main);
}

/* sync.h: set is "safe from any thread": a plain thread's set wakes a task. */
static void test_event_set_from_plain_thread(void **state) { give_from_outside(&EVENT, false); }

/* The same from a callback. */
static void test_event_set_from_callback(void **state) { give_from_outside(&EVENT, true); }

/* rv_event_destroy: "-EBUSY while tasks wait". */
static void test_event_destroy_busy(void **state) { run_prim(&EVENT, destroy_busy_main); }

/* ------------------------------------------------------------------------- */
/* Condition                                                                  */

static int cond_wait_main(void *arg, void **res)
{
    struct sc *s = arg;
    rv_lock *l = rv_cond_lock(&s->cond);
    struct actor a[3] = {0};
    for (int i = 0; i < 3; i++)
        start_waiting(&a[i], s, op_cond, i + 1, false);
    CHECK_EQ(s, s->ntrace, 0);
    CHECK(s, !rv_lock_locked(l));

    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), 1);
    settle();
    CHECK_EQ(s, s->ntrace, 0); /* woken, but the lock is ours */
    CHECK(s, rv_lock_locked(l));

    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    CHECK_TRACE(s, 1); /* a[0] returned holding the lock */
    CHECK(s, rv_lock_locked(l));

    /* CPython notifies while c1 holds the lock; here main must hold it
     * (-EPERM otherwise), so it releases c1's hold (any task may) and takes
     * it itself. */
    CHECK_EQ(s, rv_lock_release(l), 0);
    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 2), 2);
    settle();
    CHECK_TRACE(s, 1);
    CHECK(s, rv_lock_locked(l));

    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    CHECK_EQ(s, s->ntrace, 2);
    CHECK(s, rv_lock_locked(l));

    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    /* Which of the two notified together takes the lock first is the
     * scheduler's business. */
    CHECK_TRACE_SET(s, 1, 2, 3);
    CHECK_EQ(s, s->trace[0], 1);
    CHECK(s, rv_lock_locked(l));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(s, JOIN(&a[i]), 0);
        CHECK(s, a[i].locked_after);
    }
    CHECK_EQ(s, rv_lock_release(l), 0);
    return 0;
}

/* ConditionTests.test_wait: rv_cond_wait: "Release the lock, wait for a
 * notification, re-acquire the lock and return 0"; rv_cond_notify: "Wake up
 * to n waiters ... Returns how many were woken", first come, first served. */
static void test_condition_wait(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_wait_main);
}

static int cond_wait_cancel_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    start_waiting(&a, s, s->op, 1, false);
    CHECK(s, !rv_lock_locked(rv_cond_lock(&s->cond)));
    CHECK_EQ(s, cancel(&a), 0);
    CHECK_EQ(s, JOIN(&a), -ECANCELED);
    CHECK_EQ(s, a.rc, -ECANCELED);
    CHECK(s, a.locked_after);
    CHECK(s, rv_lock_locked(rv_cond_lock(&s->cond))); /* a ended holding it */
    CHECK_EQ(s, rv_lock_release(rv_cond_lock(&s->cond)), 0);
    return 0; /* sc_fini: no waiter left */
}

/* ConditionTests.test_wait_cancel; rv_cond_wait: "A cancelled wait still
 * re-acquires the lock before it returns -ECANCELED"; rv_cond_wait_for:
 * "else a wait error" (the same through wait_for). */
static void test_condition_wait_cancel(void **state)
{
    struct sc s = {.op = op_cond};
    sc_run(&s, 1, cond_wait_cancel_main);
    struct sc s2 = {.op = op_cond_for};
    sc_run(&s2, 1, cond_wait_cancel_main);
    assert_int_equal(s2.pred_unlocked, 0);
}

static int cond_wait_cancel_contested_main(void *arg, void **res)
{
    struct sc *s = arg;
    rv_lock *l = rv_cond_lock(&s->cond);
    struct actor w = {0};
    start_waiting(&w, s, op_cond, 1, false);
    CHECK(s, !rv_lock_locked(l));
    /* Notify, but contest the lock before cancelling. */
    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), 1);
    CHECK_EQ(s, cancel(&w), 0);
    CHECK_EQ(s, rv_lock_release(l), 0);
    CHECK_EQ(s, JOIN(&w), -ECANCELED);
    CHECK(s, w.locked_after);
    CHECK(s, rv_lock_locked(l)); /* w ended holding it */
    CHECK_EQ(s, rv_lock_release(l), 0);
    return 0;
}

/* ConditionTests.test_wait_cancel_contested: notified, then cancelled while
 * the lock is contested: the wait ends with the lock held. CPython accepts a
 * normal return too; the header is stricter: a waiter woken "and cancelled
 * before it runs ... returns -ECANCELED". */
static void test_condition_wait_cancel_contested(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_wait_cancel_contested_main);
}

static int cond_cancel_after_notify_main(void *arg, void **res)
{
    struct sc *s = arg;
    rv_lock *l = rv_cond_lock(&s->cond);
    struct actor w1 = {0}, w2 = {0};
    start_waiting(&w1, s, op_cond, 1, true);
    start_waiting(&w2, s, op_cond, 2, true);
    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), 1);
    rv_yield(); /* w1 gets to re-acquire, and waits for our lock */
    CHECK_EQ(s, cancel(&w1), 0);
    rv_yield(); /* the cancellation is delivered */
    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    CHECK(s, atomic_load(&w1.entered));
    CHECK_EQ(s, JOIN(&w1), -ECANCELED);
    CHECK(s, w1.cancelled);
    CHECK(s, w1.locked_after);
    CHECK_EQ(s, JOIN(&w2), 0); /* got w1's notification */
    CHECK_TRACE(s, 2);
    CHECK(s, !rv_lock_locked(l));
    return 0;
}

/* ConditionTests.test_wait_cancel_after_notify (bpo-32841), with a second
 * waiter: rv_cond_wait: "a waiter notified and then cancelled passes its
 * notification to the next waiter". */
static void test_condition_wait_cancel_after_notify(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_cancel_after_notify_main);
}

/* sync.h: a waiter woken (notified) "and cancelled before it runs passes
 * what it was given on to the next waiter, and returns -ECANCELED". */
static void test_condition_notified_then_cancelled(void **state)
{
    run_prim(&COND, woken_then_cancelled_main);
}

static int cond_wait_for_main(void *arg, void **res)
{
    struct sc *s = arg;
    rv_lock *l = rv_cond_lock(&s->cond);
    struct actor a = {0};
    start_waiting(&a, s, op_cond_for, 1, true);
    CHECK_EQ(s, s->ntrace, 0);
    CHECK_EQ(s, s->pred_calls, 1); /* checked first */

    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), 1);
    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    CHECK_EQ(s, s->ntrace, 0);
    CHECK_EQ(s, s->pred_calls, 2);

    s->pred = true;
    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), 1);
    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    CHECK_TRACE(s, 1);
    CHECK_EQ(s, s->pred_calls, 3);
    CHECK_EQ(s, JOIN(&a), 0);
    CHECK_EQ(s, s->pred_unlocked, 0);
    return 0;
}

/* ConditionTests.test_wait_for; rv_cond_wait_for: "Wait until pred(arg) is
 * true (checked first, and after each notification, with the lock held)". */
static void test_condition_wait_for(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_wait_for_main);
}

static int cond_notify_main(void *arg, void **res)
{
    struct sc *s = arg;
    rv_lock *l = rv_cond_lock(&s->cond);
    struct actor a[3] = {0};
    for (int i = 0; i < 3; i++)
        start_waiting(&a[i], s, op_cond, i + 1, true);
    CHECK_EQ(s, s->ntrace, 0);

    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), 1);
    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    CHECK_TRACE(s, 1);

    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), 1);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 2048), 1); /* only one was left */
    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    CHECK_TRACE_SET(s, 1, 2, 3);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(s, JOIN(&a[i]), 0);

    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), 0); /* nobody waits */
    CHECK_EQ(s, rv_cond_notify_all(&s->cond), 0);
    CHECK_EQ(s, rv_cond_notify(&s->cond, 0), -EINVAL);
    CHECK_EQ(s, rv_cond_notify(&s->cond, -1), -EINVAL);
    CHECK_EQ(s, rv_lock_release(l), 0);
    return 0;
}

/* ConditionTests.test_notify; rv_cond_notify: "Wake up to n waiters (n >= 1;
 * -EINVAL otherwise) ... Returns how many were woken". */
static void test_condition_notify(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_notify_main);
}

static int cond_notify_fifo_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[4] = {0};
    for (int i = 0; i < 4; i++)
        start_waiting(&a[i], s, op_cond, i + 1, true);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(s, cond_give(s), 0); /* notify(1) */
        settle();
    }
    CHECK_TRACE(s, 1, 2, 3, 4);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(s, JOIN(&a[i]), 0);
    return 0;
}

/* sync.h: "Waiters are served first come, first served": notify(1) wakes the
 * longest waiting task each time. */
static void test_condition_notify_fifo(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_notify_fifo_main);
}

static int cond_notify_all_main(void *arg, void **res)
{
    struct sc *s = arg;
    rv_lock *l = rv_cond_lock(&s->cond);
    struct actor a[2] = {0};
    for (int i = 0; i < 2; i++)
        start_waiting(&a[i], s, op_cond, i + 1, true);
    CHECK_EQ(s, s->ntrace, 0);
    CHECK_EQ(s, rv_lock_acquire(l), 0);
    CHECK_EQ(s, rv_cond_notify_all(&s->cond), 2);
    CHECK_EQ(s, rv_lock_release(l), 0);
    settle();
    CHECK_TRACE_SET(s, 1, 2);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(s, JOIN(&a[i]), 0);
    return 0;
}

/* ConditionTests.test_notify_all: "Wake every waiter". (CPython checks the
 * order [1, 2]; the order in which tasks woken together run is not the
 * header's.) */
static void test_condition_notify_all(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_notify_all_main);
}

static int cond_notify_unacquired_main(void *arg, void **res)
{
    struct sc *s = arg;
    CHECK_EQ(s, rv_cond_notify(&s->cond, 1), -EPERM);
    CHECK_EQ(s, rv_cond_notify_all(&s->cond), -EPERM);
    return 0;
}

/* ConditionTests.test_notify_unacquired, test_notify_all_unacquired:
 * rv_cond_notify: "The caller must hold the lock (-EPERM)", from a task and
 * from a plain thread. */
static void test_condition_notify_unacquired(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_notify_unacquired_main);
    rv_cond c;
    assert_int_equal(rv_cond_init(&c, NULL), 0);
    assert_int_equal(rv_cond_notify(&c, 1), -EPERM);
    assert_int_equal(rv_cond_notify_all(&c), -EPERM);
    assert_int_equal(rv_cond_destroy(&c), 0);
}

static int cond_wait_unacquired_main(void *arg, void **res)
{
    struct sc *s = arg;
    rv_lock *l = rv_cond_lock(&s->cond);
    CHECK_EQ(s, rv_cond_wait(&s->cond), -EPERM);
    CHECK_EQ(s, rv_cond_wait_for(&s->cond, sc_pred, s), -EPERM);
    CHECK(s, !rv_lock_locked(l));
    /* Held by another task (it ends holding it). */
    struct actor other = {0};
    start(&other, s, op_cond_lock_holder, 1, false);
    CHECK_EQ(s, JOIN(&other), 0);
    CHECK(s, rv_lock_locked(l));
    CHECK_EQ(s, rv_cond_wait(&s->cond), -EPERM);
    CHECK_EQ(s, rv_cond_wait_for(&s->cond, sc_pred, s), -EPERM);
    CHECK(s, rv_lock_locked(l));
    CHECK_EQ(s, rv_lock_release(l), 0);
    return 0;
}

/* ConditionTests.test_wait_unacquired, test_wait_for_unacquired (the false
 * predicate): rv_cond_wait: "The caller must hold the lock (-EPERM
 * otherwise: held by another task, or not at all)". */
static void test_condition_wait_unacquired(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, cond_wait_unacquired_main);
}

/* ConditionTests.test_explicit_lock: rv_cond_init: "over `lock`, or over a
 * lock of its own when lock is NULL (rv_cond_lock gives it)"; a plain thread
 * holding the lock (try_acquire: "the owner is then no task") may notify. */
static void test_condition_explicit_lock(void **state)
{
    rv_lock l;
    rv_cond c, own;
    assert_int_equal(rv_lock_init(&l), 0);
    assert_int_equal(rv_cond_init(&c, &l), 0);
    assert_int_equal(rv_cond_init(&own, NULL), 0);
    assert_ptr_equal(rv_cond_lock(&c), &l);
    assert_non_null(rv_cond_lock(&own));
    assert_ptr_not_equal(rv_cond_lock(&own), &l);
    assert_false(rv_lock_locked(rv_cond_lock(&c)));
    assert_int_equal(rv_lock_try_acquire(&l), 0);
    assert_true(rv_lock_locked(rv_cond_lock(&c)));
    assert_int_equal(rv_cond_notify(&c, 1), 0);
    assert_int_equal(rv_cond_notify_all(&c), 0);
    assert_false(rv_lock_locked(rv_cond_lock(&own)));
    assert_int_equal(rv_cond_notify(&own, 1), -EPERM);
    assert_int_equal(rv_lock_release(&l), 0);
    assert_int_equal(rv_cond_destroy(&c), 0);
    assert_int_equal(rv_cond_destroy(&own), 0);
    assert_int_equal(rv_lock_destroy(&l), 0);
}

struct plain_notify_ctx {
    rv_cond cond;
    atomic_int waiting;
    int rc;
};

static int plain_notify_waiter(void *arg, void **res)
{
    struct plain_notify_ctx *c = arg;
    rv_lock *l = rv_cond_lock(&c->cond);
    int rc = rv_lock_acquire(l);
    if (rc != 0)
        return rc;
    atomic_store(&c->waiting, 1);
    c->rc = rv_cond_wait(&c->cond);
    rv_lock_release(l);
    return c->rc;
}

/* sync.h: notify is "safe from any thread": a plain thread that holds the
 * lock (try_acquire) notifies a waiting task. */
static void test_condition_notify_from_plain_thread(void **state)
{
    struct plain_notify_ctx c = {.rc = NOT_RETURNED};
    atomic_init(&c.waiting, 0);
    assert_int_equal(rv_cond_init(&c.cond, NULL), 0);
    rv_lock *l = rv_cond_lock(&c.cond);
    rv_runtime *rt = new_runtime(1);
    rv_task *t = NULL;
    assert_int_equal(rv_spawn(rt, plain_notify_waiter, &c, NULL, &t), 0);
    assert_true(wait_atomic(&c.waiting, 1));
    /* The lock comes free once the task waits inside rv_cond_wait. */
    int64_t deadline = rv_now() + WAIT_NS;
    while (rv_lock_try_acquire(l) != 0 && rv_now() < deadline)
        sleep_ms(1);
    assert_true(rv_lock_locked(l));
    assert_int_equal(rv_cond_notify(&c.cond, 1), 1);
    assert_int_equal(rv_lock_release(l), 0);
    assert_int_equal(rv_future_wait(rv_task_future(t), WAIT_NS, NULL), 0);
    assert_int_equal(c.rc, 0);
    assert_int_equal(rv_task_release(t), 0);
    free_runtime(rt);
    assert_false(rv_lock_locked(l));
    assert_int_equal(rv_cond_destroy(&c.cond), 0);
}

/* rv_cond_destroy: "-EBUSY while tasks wait". */
static void test_condition_destroy_busy(void **state) { run_prim(&COND, destroy_busy_main); }

/* ------------------------------------------------------------------------- */
/* Semaphore and BoundedSemaphore                                             */

/* SemaphoreTests.test_initial_value_zero; rv_sem_locked: "True when an
 * acquire would wait". */
static void test_semaphore_initial_value_zero(void **state)
{
    rv_sem s;
    assert_int_equal(rv_sem_init(&s, 0), 0);
    assert_true(rv_sem_locked(&s));
    assert_int_equal(rv_sem_value(&s), 0);
    assert_int_equal(rv_sem_try_acquire(&s), -EAGAIN);
    assert_int_equal(rv_sem_destroy(&s), 0);
}

/* SemaphoreTests.test_semaphore: a semaphore of one unit. */
static void test_semaphore(void **state)
{
    rv_sem s;
    assert_int_equal(rv_sem_init(&s, 1), 0);
    assert_int_equal(rv_sem_value(&s), 1);
    assert_false(rv_sem_locked(&s));
    assert_int_equal(rv_sem_destroy(&s), 0);
}

/* SemaphoreTests.test_semaphore_value: rv_sem_init: "value (>= 0; -EINVAL
 * otherwise)", bounded too. */
static void test_semaphore_value(void **state)
{
    rv_sem s;
    assert_int_equal(rv_sem_init(&s, -1), -EINVAL);
    assert_int_equal(rv_sem_init_bounded(&s, -1), -EINVAL);
}

static int sem_acquire_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor c[4] = {0};
    CHECK_EQ(s, rv_sem_acquire(&s->sem), 0);
    CHECK_EQ(s, rv_sem_acquire(&s->sem), 0);
    CHECK(s, !rv_sem_locked(&s->sem));
    for (int i = 0; i < 3; i++)
        start_waiting(&c[i], s, op_sem, i + 1, false);
    CHECK_TRACE(s, 1);
    CHECK(s, rv_sem_locked(&s->sem));
    CHECK_EQ(s, rv_sem_value(&s->sem), 0);

    start(&c[3], s, op_sem, 4, false); /* arrives after the releases */
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    CHECK_EQ(s, rv_sem_value(&s->sem), 0); /* both handed to waiters */
    settle();
    CHECK_EQ(s, rv_sem_value(&s->sem), 0);
    CHECK_TRACE_SET(s, 1, 2, 3);
    CHECK(s, rv_sem_locked(&s->sem));
    CHECK(s, done(&c[0]) && done(&c[1]) && done(&c[2]));
    /* CPython (before FIFO fairness) let either two of c2, c3, c4 win; here
     * the units went to the waiters c2 and c3, and c4 waits. */
    CHECK(s, !done(&c[3]));

    CHECK_EQ(s, rv_sem_release(&s->sem), 0); /* cleanup */
    for (int i = 0; i < 4; i++)
        CHECK_EQ(s, JOIN(&c[i]), 0);
    CHECK_TRACE_SET(s, 1, 2, 3, 4);
    CHECK_EQ(s, rv_sem_value(&s->sem), 0);
    return 0;
}

/* SemaphoreTests.test_acquire: three units, four tasks. */
static void test_semaphore_acquire(void **state)
{
    struct sc s = {.sem_value = 3};
    sc_run(&s, 1, sem_acquire_main);
}

static int sem_acquire_cancel_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    CHECK_EQ(s, rv_sem_acquire(&s->sem), 0);
    start_waiting(&a, s, op_sem, 1, true);
    CHECK_EQ(s, cancel(&a), 0);
    CHECK_EQ(s, JOIN(&a), -ECANCELED);
    CHECK_EQ(s, a.rc, -ECANCELED);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    CHECK_EQ(s, rv_sem_value(&s->sem), 1);
    CHECK_EQ(s, rv_sem_try_acquire(&s->sem), 0); /* nobody waits */
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    return 0;
}

/* SemaphoreTests.test_acquire_cancel; rv_sem_acquire: "-ECANCELED". */
static void test_semaphore_acquire_cancel(void **state)
{
    struct sc s = {.sem_value = 1};
    sc_run(&s, 1, sem_acquire_cancel_main);
}

static int sem_cancel_before_awoken_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor t[4] = {0};
    for (int i = 0; i < 4; i++)
        start_waiting(&t[i], s, op_sem, i + 1, false);
    CHECK_EQ(s, cancel(&t[0]), 0);
    CHECK_EQ(s, cancel(&t[1]), 0);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    settle();
    settle();
    CHECK(s, done(&t[2]));
    CHECK(s, !done(&t[3]));
    CHECK_EQ(s, cancel(&t[3]), 0);
    CHECK_EQ(s, JOIN(&t[0]), -ECANCELED);
    CHECK_EQ(s, JOIN(&t[1]), -ECANCELED);
    CHECK_EQ(s, JOIN(&t[2]), 0);
    CHECK_EQ(s, JOIN(&t[3]), -ECANCELED);
    CHECK_TRACE(s, 3);
    CHECK_EQ(s, rv_sem_value(&s->sem), 0);
    return 0;
}

/* SemaphoreTests.test_acquire_cancel_before_awoken: two cancelled waiters
 * ahead do not eat the unit: the third waiter gets it, the fourth not. */
static void test_semaphore_acquire_cancel_before_awoken(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, sem_cancel_before_awoken_main);
}

static int sem_acquire_hang_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor t[2] = {0};
    for (int i = 0; i < 2; i++)
        start_waiting(&t[i], s, op_sem, i + 1, false);
    CHECK_EQ(s, cancel(&t[0]), 0);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    settle();
    settle();
    CHECK(s, rv_sem_locked(&s->sem));
    CHECK(s, done(&t[1]));
    CHECK_EQ(s, JOIN(&t[0]), -ECANCELED);
    CHECK_EQ(s, JOIN(&t[1]), 0);
    CHECK_TRACE(s, 2);
    return 0;
}

/* SemaphoreTests.test_acquire_hang: a cancelled first waiter and a release:
 * the second waiter is not left hanging. */
static void test_semaphore_acquire_hang(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, sem_acquire_hang_main);
}

/* c1 of test_acquire_no_hang: hold the unit until the peer waits for it,
 * release it (to the peer) and cancel the peer before it runs. */
static int op_sem_pass_and_cancel_peer(struct actor *a)
{
    struct sc *s = a->s;
    int rc = rv_sem_acquire(&s->sem);
    if (rc != 0)
        return rc;
    note(s, a->id);
    CHECK_EQ(s, task_wait_atomic(&a->peer->entered, 1), 0);
    rv_sleep(1 * MS); /* the peer parks in rv_sem_acquire */
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    CHECK_EQ(s, cancel(a->peer), 0);
    return 0;
}

static int sem_acquire_no_hang_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor c1 = {0}, c2 = {0};
    c1.peer = &c2;
    start_waiting(&c1, s, op_sem_pass_and_cancel_peer, 1, false);
    start(&c2, s, op_sem, 2, true);
    CHECK_EQ(s, JOIN(&c1), 0);
    CHECK_EQ(s, JOIN(&c2), -ECANCELED);
    CHECK_TRACE(s, 1); /* c2 never got in */
    CHECK_EQ(s, rv_sem_value(&s->sem), 1);
    CHECK_EQ(s, rv_sem_try_acquire(&s->sem), 0); /* no hang */
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    return 0;
}

/* SemaphoreTests.test_acquire_no_hang: the unit released to c2 comes back
 * when c2 is cancelled before it runs. */
static void test_semaphore_acquire_no_hang(void **state)
{
    struct sc s = {.sem_value = 1};
    sc_run(&s, 1, sem_acquire_no_hang_main);
}

/* sync.h: a waiter "handed ... a unit ... and cancelled before it runs passes
 * what it was given on to the next waiter" (the semaphore's cancel race). */
static void test_semaphore_cancel_race(void **state) { run_prim(&SEM, woken_then_cancelled_main); }

/* rv_sem_try_acquire: "Take a unit only if one is free and nobody waits";
 * no barging past a waiter that was handed a unit and has not run yet. */
static void test_semaphore_fifo_nowait(void **state) { run_prim(&SEM, no_barging_main); }

/* SemaphoreTests.test_release_not_acquired: rv_sem_init_bounded: "releasing
 * beyond the initial value is -EINVAL" (ValueError). */
static void test_semaphore_release_not_acquired(void **state)
{
    rv_sem s;
    assert_int_equal(rv_sem_init_bounded(&s, 1), 0);
    assert_int_equal(rv_sem_release(&s), -EINVAL);
    assert_int_equal(rv_sem_value(&s), 1);
    assert_int_equal(rv_sem_destroy(&s), 0);
}

/* SemaphoreTests.test_release_no_waiters (from a plain thread:
 * try_acquire and release work on any thread; acquire is -EPERM). */
static void test_semaphore_release_no_waiters(void **state)
{
    rv_sem s;
    assert_int_equal(rv_sem_init(&s, 1), 0);
    assert_int_equal(rv_sem_try_acquire(&s), 0);
    assert_true(rv_sem_locked(&s));
    assert_int_equal(rv_sem_acquire(&s), -EPERM);
    assert_int_equal(rv_sem_release(&s), 0);
    assert_false(rv_sem_locked(&s));
    assert_int_equal(rv_sem_value(&s), 1);
    /* An unbounded semaphore grows past its initial value. */
    assert_int_equal(rv_sem_release(&s), 0);
    assert_int_equal(rv_sem_value(&s), 2);
    assert_int_equal(rv_sem_destroy(&s), 0);
}

/* rv_sem_release on a bounded semaphore: -EINVAL only beyond the initial
 * value; the value is unchanged by the refused release. */
static void test_bounded_semaphore_release_over(void **state)
{
    rv_sem s;
    assert_int_equal(rv_sem_init_bounded(&s, 2), 0);
    assert_int_equal(rv_sem_try_acquire(&s), 0);
    assert_int_equal(rv_sem_try_acquire(&s), 0);
    assert_int_equal(rv_sem_try_acquire(&s), -EAGAIN);
    assert_int_equal(rv_sem_release(&s), 0);
    assert_int_equal(rv_sem_release(&s), 0);
    assert_int_equal(rv_sem_release(&s), -EINVAL);
    assert_int_equal(rv_sem_value(&s), 2);
    assert_int_equal(rv_sem_try_acquire(&s), 0);
    assert_int_equal(rv_sem_release(&s), 0);
    assert_int_equal(rv_sem_release(&s), -EINVAL);
    assert_int_equal(rv_sem_destroy(&s), 0);
}

static int bounded_handoff_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    CHECK_EQ(s, rv_sem_acquire(&s->sem), 0);
    start_waiting(&a, s, op_sem, 1, false);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0); /* handed to a: not beyond */
    CHECK_EQ(s, JOIN(&a), 0);
    CHECK_EQ(s, rv_sem_value(&s->sem), 0);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0); /* a's unit, given back by main */
    CHECK_EQ(s, rv_sem_release(&s->sem), -EINVAL);
    CHECK_EQ(s, rv_sem_value(&s->sem), 1);
    return 0;
}

/* rv_sem_init_bounded with a waiter: a release that hands the unit to a
 * waiter does not count against the bound; the one past it is -EINVAL. */
static void test_bounded_semaphore_handoff(void **state)
{
    struct sc s = {.sem_value = 1, .bounded = true};
    sc_run(&s, 1, bounded_handoff_main);
}

static int op_sem_twice(struct actor *a)
{
    struct sc *s = a->s;
    for (int round = 1; round <= 2; round++) {
        int rc = rv_sem_acquire(&s->sem);
        if (rc != 0)
            return rc;
        note(s, a->id * 10 + round);
        rv_sleep(1 * MS);
        CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    }
    return 0;
}

static int sem_fifo_order_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor c[3] = {0};
    CHECK_EQ(s, rv_sem_acquire(&s->sem), 0);
    for (int i = 0; i < 3; i++)
        start_waiting(&c[i], s, op_sem_twice, i + 1, false);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(s, JOIN(&c[i]), 0);
    CHECK_TRACE(s, 11, 21, 31, 12, 22, 32);
    CHECK_EQ(s, rv_sem_value(&s->sem), 1);
    return 0;
}

/* SemaphoreTests.test_acquire_fifo_order: one unit, three tasks taking it
 * twice each: a task that releases and re-acquires queues behind the
 * others. (Here main holds the unit until all three wait, so the order does
 * not hang on sleep lengths.) */
static void test_semaphore_acquire_fifo_order(void **state)
{
    struct sc s = {.sem_value = 1};
    sc_run(&s, 1, sem_fifo_order_main);
}

static int op_sem_release_reacquire(struct actor *a)
{
    struct sc *s = a->s;
    int rc = rv_sem_acquire(&s->sem);
    if (rc != 0)
        return rc;
    note(s, 2);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    rc = rv_sem_acquire(&s->sem);
    if (rc == 0)
        note(s, 4);
    return rc;
}

static int sem_fifo_order_2_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor c[3] = {0};
    start_waiting(&c[0], s, op_sem, 1, false);
    start_waiting(&c[1], s, op_sem_release_reacquire, 2, false);
    start_waiting(&c[2], s, op_sem, 3, false);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(s, JOIN(&c[i]), 0);
    /* CPython wants [1, 2, 3, 4]. Here c3 was handed its unit before c2 gave
     * one back, so c2 takes the free one at once (that is no barging), and
     * c2 and c3 run in the scheduler's order. */
    CHECK_TRACE_SET(s, 1, 2, 3, 4);
    CHECK_EQ(s, s->trace[0], 1);
    CHECK_EQ(s, rv_sem_value(&s->sem), 0);
    return 0;
}

/* SemaphoreTests.test_acquire_fifo_order_2: a waiter that releases and
 * re-acquires does not hang anyone. */
static void test_semaphore_acquire_fifo_order_2(void **state)
{
    struct sc s = {.sem_value = 1};
    sc_run(&s, 1, sem_fifo_order_2_main);
}

static int sem_fifo_order_3_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor c[3] = {0};
    for (int i = 0; i < 3; i++)
        start_waiting(&c[i], s, op_sem, i + 1, false);
    CHECK_EQ(s, cancel(&c[0]), 0);
    settle();
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    settle(); /* one at a time: the trace shows who was served first */
    CHECK_EQ(s, rv_sem_release(&s->sem), 0);
    CHECK_EQ(s, JOIN(&c[0]), -ECANCELED);
    CHECK_EQ(s, JOIN(&c[1]), 0);
    CHECK_EQ(s, JOIN(&c[2]), 0);
    CHECK_TRACE(s, 2, 3);
    return 0;
}

/* SemaphoreTests.test_acquire_fifo_order_3: the cancelled first waiter is
 * skipped, the others are served in order. */
static void test_semaphore_acquire_fifo_order_3(void **state)
{
    struct sc s = {0};
    sc_run(&s, 1, sem_fifo_order_3_main);
}

/* rv_sem_release: "Any thread": from a plain thread and from a callback it
 * hands the unit to a waiting task. */
static void test_semaphore_release_from_plain_thread(void **state)
{
    give_from_outside(&SEM, false);
}

static void test_semaphore_release_from_callback(void **state) { give_from_outside(&SEM, true); }

/* rv_sem_destroy: "-EBUSY while tasks wait". */
static void test_semaphore_destroy_busy(void **state) { run_prim(&SEM, destroy_busy_main); }

/* ------------------------------------------------------------------------- */
/* Barrier                                                                    */

/* Main's own wait on s->bar, made only where it returns at once (main the
 * last to arrive, or the barrier broken): otherwise the check fails and the
 * barrier is aborted so that nobody hangs. */
static int main_barrier_wait_at(struct sc *s, int line)
{
    int waiting = rv_barrier_n_waiting(&s->bar);
    if (rv_barrier_broken(&s->bar) || waiting == s->parties - 1)
        return rv_barrier_wait(&s->bar);
    check_fail(&s->ck, line, "main would wait: %d of %d parties waiting", waiting, s->parties);
    rv_barrier_abort(&s->bar);
    return -EDEADLK;
}
#define MAIN_BARRIER_WAIT(s) main_barrier_wait_at((s), __LINE__)

/* BarrierTests.test_barrier_parties: rv_barrier_init: "parties (>= 1;
 * -EINVAL otherwise)". */
static void test_barrier_parties(void **state)
{
    rv_barrier b;
    assert_int_equal(rv_barrier_init(&b, 0), -EINVAL);
    assert_int_equal(rv_barrier_init(&b, -4), -EINVAL);
    assert_int_equal(rv_barrier_init(&b, 5), 0);
    assert_int_equal(rv_barrier_parties(&b), 5);
    assert_int_equal(rv_barrier_n_waiting(&b), 0);
    assert_false(rv_barrier_broken(&b));
    assert_int_equal(rv_barrier_destroy(&b), 0);
}

static int barrier_task_by_task_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[3] = {0};
    for (int i = 0; i < 3; i++) {
        start_waiting(&a[i], s, op_barrier, i + 1, false);
        CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), i < 2 ? i + 1 : 0);
    }
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(s, JOIN(&a[i]), 0);
        CHECK_EQ(s, a[i].rc, i); /* the arrival index */
    }
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
    CHECK(s, !rv_barrier_broken(&s->bar));
    return 0;
}

/* BarrierTests.test_filling_task_by_task; rv_barrier_wait: "Returns the
 * arrival index, 0 .. parties-1"; rv_barrier_n_waiting: "Tasks waiting in the
 * current round". */
static void test_barrier_filling_task_by_task(void **state)
{
    struct sc s = {.parties = 3};
    sc_run(&s, 1, barrier_task_by_task_main);
}

static int barrier_one_task_main(void *arg, void **res)
{
    struct sc *s = arg;
    for (int i = 0; i < 2; i++) {
        probe_arm(s);
        CHECK_EQ(s, MAIN_BARRIER_WAIT(s), 0);
        CHECK(s, !probe_fired(s));
        CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
        settle();
    }
    CHECK(s, !rv_barrier_broken(&s->bar));
    return 0;
}

/* BarrierTests.test_filling_one_task, test_filling_one_task_twice: a
 * barrier of one party lets its task through at once, each time. */
static void test_barrier_filling_one_task(void **state)
{
    struct sc s = {.parties = 1};
    sc_run(&s, 1, barrier_one_task_main);
}

static int barrier_last_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[2] = {0};
    for (int i = 0; i < 2; i++)
        start_waiting(&a[i], s, op_barrier, i + 1, false);
    probe_arm(s);
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), 2);
    CHECK(s, !probe_fired(s));
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(s, JOIN(&a[i]), 0);
        CHECK_EQ(s, a[i].rc, i);
    }
    return 0;
}

/* rv_barrier_wait: "the last to arrive gets parties-1 and does not
 * suspend". */
static void test_barrier_last_arrival_does_not_suspend(void **state)
{
    struct sc s = {.parties = 3};
    sc_run(&s, 1, barrier_last_main);
}

/* Counters shared by the tasks of the multi-worker barrier ports. */
static int op_barrier_wait_twice(struct actor *a)
{
    struct sc *s = a->s;
    int i = rv_barrier_wait(&s->bar);
    if (i < 0)
        return i;
    atomic_fetch_add(&s->n1, 1);
    int j = rv_barrier_wait(&s->bar);
    if (j < 0)
        return j;
    atomic_fetch_add(&s->n2, 1);
    atomic_fetch_or(&s->n3, 1 << j); /* the second round's indices */
    return i;
}

static int barrier_parallel_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[5] = {0};
    int seen = 0;
    for (int i = 0; i < 5; i++)
        start(&a[i], s, op_barrier_wait_twice, i + 1, false);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(s, JOIN(&a[i]), 0);
        if (CHECK(s, a[i].rc >= 0 && a[i].rc < 5))
            seen |= 1 << a[i].rc;
    }
    CHECK_EQ(s, seen, 0x1f);
    CHECK_EQ(s, atomic_load(&s->n3), 0x1f);
    CHECK_EQ(s, atomic_load(&s->n1), 5);
    CHECK_EQ(s, atomic_load(&s->n2), 5);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
    CHECK(s, !rv_barrier_broken(&s->bar));
    return 0;
}

/* BarrierTests.test_filling_tasks_wait_twice, test_filling_tasks_check_
 * return_value, test_context_manager: five tasks on two workers pass twice;
 * each round's indices are 0..4, each once. */
static void test_barrier_wait(void **state)
{
    struct sc s = {.parties = 5};
    sc_run(&s, 2, barrier_parallel_main);
}

static int op_barrier_rewait(struct actor *a)
{
    struct sc *s = a->s;
    int rc = rv_barrier_wait(&s->bar);
    if (rc < 0)
        return rc;
    if (atomic_fetch_sub(&s->rewait, 1) > 0) {
        rc = rv_barrier_wait(&s->bar); /* at once into the next round */
    } else {
        rc = rv_barrier_wait(&s->bar2); /* wait until the others are out */
        if (rc >= 0)
            rc = rv_barrier_wait(&s->bar);
    }
    return rc < 0 ? rc : 0;
}

static int barrier_draining_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[5] = {0};
    atomic_store(&s->rewait, 2);
    for (int i = 0; i < 5; i++)
        start(&a[i], s, op_barrier_rewait, i + 1, false);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(s, JOIN(&a[i]), 0);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
    CHECK(s, !rv_barrier_broken(&s->bar));
    return 0;
}

/* BarrierTests.test_blocking_tasks_while_draining: two tasks go straight
 * back into the barrier while the other three leave it: the next round is
 * filled by all five (reuse across rounds). */
static void test_barrier_blocking_tasks_while_draining(void **state)
{
    struct sc s = {.parties = 5, .parties2 = 3};
    sc_run(&s, 2, barrier_draining_main);
}

/* Start parties-1 waiters, then break the barrier with `breaker`. */
static void barrier_break_waiters(struct sc *s, struct actor *a, int (*breaker)(rv_barrier *))
{
    int n = s->parties - 1;
    for (int i = 0; i < n; i++)
        start_waiting(&a[i], s, op_barrier, i + 1, false);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), n);
    CHECK_EQ(s, breaker(&s->bar), 0);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(s, JOIN(&a[i]), -EPIPE);
        CHECK_EQ(s, a[i].rc, -EPIPE);
    }
    CHECK_EQ(s, s->ntrace, 0);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
}

/* A full round: parties-1 tasks and main; main arrives last. */
static void barrier_full_round(struct sc *s, struct actor *a)
{
    int n = s->parties - 1;
    for (int i = 0; i < n; i++)
        start_waiting(&a[i], s, op_barrier, i + 1, false);
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), n);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(s, JOIN(&a[i]), 0);
        CHECK_EQ(s, a[i].rc, i);
    }
}

static int barrier_reset_waiting_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[8] = {0};
    barrier_break_waiters(s, a, rv_barrier_reset);
    CHECK(s, !rv_barrier_broken(&s->bar));
    barrier_full_round(s, a); /* usable again at once */
    CHECK(s, !rv_barrier_broken(&s->bar));
    return 0;
}

/* BarrierTests.test_reset_barrier_while_tasks_waiting; rv_barrier_reset:
 * "Back to the empty state; tasks waiting now get -EPIPE". */
static void test_barrier_reset_while_tasks_waiting(void **state)
{
    struct sc s = {.parties = 5};
    sc_run(&s, 1, barrier_reset_waiting_main);
}

static int barrier_reset_empty_main(void *arg, void **res)
{
    struct sc *s = arg;
    CHECK_EQ(s, rv_barrier_reset(&s->bar), 0);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
    CHECK(s, !rv_barrier_broken(&s->bar));
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), 0);
    return 0;
}

/* BarrierTests.test_reset_barrier: resetting an idle barrier changes
 * nothing. */
static void test_barrier_reset_barrier(void **state)
{
    struct sc s = {.parties = 1};
    sc_run(&s, 1, barrier_reset_empty_main);
}

/* coro1 of test_reset_barrier_while_tasks_waiting_and_waiting_again. */
static int op_barrier_broken_then_again(struct actor *a)
{
    struct sc *s = a->s;
    int rc = rv_barrier_wait(&s->bar);
    if (rc == -EPIPE)
        atomic_fetch_add(&s->n1, 1);
    rc = rv_barrier_wait(&s->bar);
    if (rc < 0)
        return rc;
    atomic_fetch_add(&s->n2, 1);
    return 0;
}

static int barrier_reset_wait_again_main(void *arg, void **res)
{
    struct sc *s = arg;
    int n = s->parties - 1;
    struct actor a[8] = {0};
    for (int i = 0; i < n; i++)
        start_waiting(&a[i], s, op_barrier_broken_then_again, i + 1, false);
    CHECK_EQ(s, rv_barrier_reset(&s->bar), 0);
    settle();
    CHECK_EQ(s, atomic_load(&s->n1), n);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), n); /* back for the next round */
    CHECK(s, MAIN_BARRIER_WAIT(s) >= 0);           /* coro2 */
    atomic_fetch_add(&s->n2, 1);
    for (int i = 0; i < n; i++)
        CHECK_EQ(s, JOIN(&a[i]), 0);
    CHECK_EQ(s, atomic_load(&s->n2), n + 1);
    CHECK(s, !rv_barrier_broken(&s->bar));
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
    return 0;
}

/* BarrierTests.test_reset_barrier_while_tasks_waiting_and_waiting_again:
 * the tasks a reset broke out come back and fill the next round. */
static void test_barrier_reset_while_tasks_waiting_and_waiting_again(void **state)
{
    struct sc s = {.parties = 5};
    sc_run(&s, 1, barrier_reset_wait_again_main);
}

static int barrier_abort_main(void *arg, void **res)
{
    struct sc *s = arg;
    CHECK_EQ(s, rv_barrier_abort(&s->bar), 0);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
    CHECK(s, rv_barrier_broken(&s->bar));
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), -EPIPE);
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), -EPIPE);
    CHECK_EQ(s, rv_barrier_reset(&s->bar), 0);
    CHECK(s, !rv_barrier_broken(&s->bar));
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), 0);
    return 0;
}

/* BarrierTests.test_abort_barrier; rv_barrier_abort: "waiting and later
 * waits get -EPIPE until reset". */
static void test_barrier_abort_barrier(void **state)
{
    struct sc s = {.parties = 1};
    sc_run(&s, 1, barrier_abort_main);
}

static int barrier_abort_waiting_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[8] = {0};
    barrier_break_waiters(s, a, rv_barrier_abort);
    CHECK(s, rv_barrier_broken(&s->bar));
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), -EPIPE);
    CHECK_EQ(s, rv_barrier_reset(&s->bar), 0);
    CHECK(s, !rv_barrier_broken(&s->bar));
    barrier_full_round(s, a);
    return 0;
}

/* rv_barrier_abort: "Break the barrier: waiting and later waits get -EPIPE
 * until reset"; rv_barrier_broken. */
static void test_barrier_abort_while_waiting(void **state)
{
    struct sc s = {.parties = 4};
    sc_run(&s, 1, barrier_abort_waiting_main);
}

static int barrier_cancel_one_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[3] = {0};
    start_waiting(&a[0], s, op_barrier, 1, false);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 1);
    start_waiting(&a[1], s, op_barrier, 2, false);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 2);
    CHECK_EQ(s, cancel(&a[0]), 0);
    settle();
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 1);
    CHECK_EQ(s, JOIN(&a[0]), -ECANCELED);
    CHECK_EQ(s, a[0].rc, -ECANCELED);
    CHECK(s, !rv_barrier_broken(&s->bar));
    start_waiting(&a[2], s, op_barrier, 3, false);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 2);
    int last = MAIN_BARRIER_WAIT(s); /* the fourth task of CPython's test */
    CHECK_EQ(s, last, 2);
    CHECK_EQ(s, JOIN(&a[1]), 0);
    CHECK_EQ(s, JOIN(&a[2]), 0);
    /* The round's three tasks: indices 0, 1, 2, each once. */
    int seen = 0;
    int idx[3] = {a[1].rc, a[2].rc, last};
    for (int i = 0; i < 3; i++)
        if (CHECK(s, idx[i] >= 0 && idx[i] < 3))
            seen |= 1 << idx[i];
    if (seen != 7)
        check_fail(&s->ck, __LINE__, "indices %d, %d, %d: want 0, 1, 2 in some order", idx[0],
                   idx[1], idx[2]);
    CHECK_TRACE_SET(s, 2, 3);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
    CHECK(s, !rv_barrier_broken(&s->bar));
    return 0;
}

/* BarrierTests.test_filling_tasks_cancel_one; rv_barrier_wait: "-ECANCELED
 * when cancelled while waiting: the task leaves the round, which then needs
 * one more arrival (as asyncio)", and the indices of the round that does
 * complete are still "0 .. parties-1, distinct for each task of one round"
 * (CPython does not look at them). */
static void test_barrier_filling_tasks_cancel_one(void **state)
{
    struct sc s = {.parties = 3};
    sc_run(&s, 1, barrier_cancel_one_main);
}

/* Wait, then suspend once more: rc2 is what that suspension returned. */
static int op_barrier_then_yield(struct actor *a)
{
    int rc = rv_barrier_wait(&a->s->bar);
    a->rc2 = rv_yield();
    return rc;
}

static int barrier_cancel_after_round_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    start_waiting(&a, s, op_barrier_then_yield, 1, false);
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), 1); /* completes the round: a is woken */
    CHECK_EQ(s, cancel(&a), 0);           /* before a runs */
    CHECK_EQ(s, JOIN(&a), 0);             /* it returns its index, 0 */
    CHECK_EQ(s, a.rc, 0);
    CHECK_EQ(s, a.rc2, -ECANCELED); /* delivered at its next suspension */
    CHECK(s, !rv_barrier_broken(&s->bar));
    return 0;
}

/* rv_barrier_wait: "A task whose round completed gets its index even if
 * cancelled just after; the request stays pending" (for its next
 * suspension). */
static void test_barrier_cancel_after_round_completed(void **state)
{
    struct sc s = {.parties = 2};
    sc_run(&s, 1, barrier_cancel_after_round_main);
}

/* One task of test_abort_barrier_when_exception: the one with the middle
 * index aborts instead of waiting again ("raises"); n1 counts passes of the
 * second wait, n2 broken waits. */
static int op_barrier_abort_in_middle(struct actor *a)
{
    struct sc *s = a->s;
    int i = rv_barrier_wait(&s->bar);
    if (i == -EPIPE) {
        atomic_fetch_add(&s->n2, 1);
        return 0;
    }
    if (i < 0)
        return i;
    if (i == s->parties / 2)
        return rv_barrier_abort(&s->bar);
    int rc = rv_barrier_wait(&s->bar);
    if (rc >= 0)
        atomic_fetch_add(&s->n1, 1);
    else if (rc == -EPIPE)
        atomic_fetch_add(&s->n2, 1);
    else
        return rc;
    return 0;
}

/* ... test_abort_barrier_when_exception_then_resetting goes on: all meet on
 * bar2, the middle one resets bar, all meet on bar2 again, then pass bar. */
static int op_barrier_abort_then_reset(struct actor *a)
{
    struct sc *s = a->s;
    int rc = op_barrier_abort_in_middle(a);
    if (rc < 0)
        return rc;
    int i = rv_barrier_wait(&s->bar2);
    if (i < 0)
        return i;
    if (i == s->parties / 2 && (rc = rv_barrier_reset(&s->bar)) != 0)
        return rc;
    if ((rc = rv_barrier_wait(&s->bar2)) < 0)
        return rc;
    if ((rc = rv_barrier_wait(&s->bar)) < 0)
        return rc;
    atomic_fetch_add(&s->n3, 1);
    return 0;
}

static int barrier_abort_exception_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a[5] = {0};
    bool then_reset = s->op == op_barrier_abort_then_reset;
    for (int i = 0; i < 5; i++)
        start(&a[i], s, s->op, i + 1, false);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(s, JOIN(&a[i]), 0);
    CHECK_EQ(s, atomic_load(&s->n1), 0);
    CHECK_EQ(s, atomic_load(&s->n2), 4);
    CHECK_EQ(s, atomic_load(&s->n3), then_reset ? 5 : 0);
    CHECK(s, rv_barrier_broken(&s->bar) == !then_reset);
    CHECK_EQ(s, rv_barrier_n_waiting(&s->bar), 0);
    if (!then_reset)
        CHECK_EQ(s, rv_barrier_reset(&s->bar), 0);
    return 0;
}

/* BarrierTests.test_abort_barrier_when_exception (from threading's
 * lock_tests.test_reset): one of five tasks aborts between two rounds; the
 * other four get -EPIPE. */
static void test_barrier_abort_when_exception(void **state)
{
    struct sc s = {.parties = 5, .op = op_barrier_abort_in_middle};
    sc_run(&s, 2, barrier_abort_exception_main);
}

/* BarrierTests.test_abort_barrier_when_exception_then_resetting (threading's
 * lock_tests.test_abort_and_reset): after the abort, a reset between two
 * meetings on a second barrier makes the first usable by all five again. */
static void test_barrier_abort_when_exception_then_resetting(void **state)
{
    struct sc s = {.parties = 5, .op = op_barrier_abort_then_reset};
    sc_run(&s, 2, barrier_abort_exception_main);
}

static int barrier_destroy_busy_main(void *arg, void **res)
{
    struct sc *s = arg;
    struct actor a = {0};
    start_waiting(&a, s, op_barrier, 1, false);
    CHECK_EQ(s, rv_barrier_destroy(&s->bar), -EBUSY);
    CHECK_EQ(s, MAIN_BARRIER_WAIT(s), 1);
    CHECK_EQ(s, JOIN(&a), 0);
    CHECK_EQ(s, a.rc, 0);
    return 0;
}

/* rv_barrier_destroy: "-EBUSY while tasks wait". */
static void test_barrier_destroy_busy(void **state)
{
    struct sc s = {.parties = 2};
    sc_run(&s, 1, barrier_destroy_busy_main);
}

/* ------------------------------------------------------------------------- */
/* Calls outside tasks, NULL handles                                          */

/* Run every call that may suspend, in states where it would have to, and
 * record the codes in `rc`; nothing may change. */
static void suspending_calls(struct sc *s, int rc[6])
{
    rc[0] = rv_lock_acquire(&s->lock);
    rc[1] = rv_event_wait(&s->ev);
    rc[2] = rv_cond_wait(&s->cond);
    rc[3] = rv_cond_wait_for(&s->cond, sc_pred, s);
    rc[4] = rv_sem_acquire(&s->sem);
    rc[5] = rv_barrier_wait(&s->bar);
}

static void suspend_cb(void *arg)
{
    struct sc *s = arg;
    int rc[6];
    suspending_calls(s, rc);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(s, rc[i], -EPERM);
    atomic_store(&s->gave, 1);
}

/* sync.h: "Calls that may suspend do so only in a task; from a plain thread
 * they return -EPERM" - and from a callback (no task either). The lock and
 * the condition's lock are held (try_acquire, owner no task), the event is
 * clear, the semaphore empty, the barrier short of a party. */
static void test_sync_suspending_calls_outside_task(void **state)
{
    struct sc s = {.sem_value = 0, .parties = 2};
    sc_init(&s);
    assert_int_equal(rv_lock_try_acquire(&s.lock), 0);
    assert_int_equal(rv_lock_try_acquire(rv_cond_lock(&s.cond)), 0);
    int rc[6];
    suspending_calls(&s, rc);
    for (int i = 0; i < 6; i++)
        assert_int_equal(rc[i], -EPERM);

    rv_runtime *rt = new_runtime(1);
    assert_int_equal(rv_call_soon(rt, suspend_cb, &s, NULL), 0);
    assert_true(wait_atomic(&s.gave, 1));
    free_runtime(rt);

    assert_true(rv_lock_locked(&s.lock));
    assert_int_equal(rv_barrier_n_waiting(&s.bar), 0);
    assert_int_equal(rv_sem_value(&s.sem), 0);
    assert_int_equal(rv_lock_release(&s.lock), 0);
    assert_int_equal(rv_lock_release(rv_cond_lock(&s.cond)), 0);
    sc_fini(&s);
}

static int null_suspending_main(void *arg, void **res)
{
    struct sc *s = arg;
    CHECK_EQ(s, rv_lock_acquire(NULL), -EINVAL);
    CHECK_EQ(s, rv_event_wait(NULL), -EINVAL);
    CHECK_EQ(s, rv_cond_wait(NULL), -EINVAL);
    CHECK_EQ(s, rv_cond_wait_for(NULL, sc_pred, s), -EINVAL);
    CHECK_EQ(s, rv_sem_acquire(NULL), -EINVAL);
    CHECK_EQ(s, rv_barrier_wait(NULL), -EINVAL);
    return 0;
}

/* ravel.h: "A NULL handle returns -EINVAL; it never crashes." */
static void test_sync_null_handles(void **state)
{
    assert_int_equal(rv_lock_init(NULL), -EINVAL);
    assert_int_equal(rv_lock_destroy(NULL), -EINVAL);
    assert_int_equal(rv_lock_try_acquire(NULL), -EINVAL);
    assert_int_equal(rv_lock_release(NULL), -EINVAL);
    assert_int_equal(rv_event_init(NULL), -EINVAL);
    assert_int_equal(rv_event_destroy(NULL), -EINVAL);
    assert_int_equal(rv_event_set(NULL), -EINVAL);
    assert_int_equal(rv_event_clear(NULL), -EINVAL);
    assert_int_equal(rv_cond_init(NULL, NULL), -EINVAL);
    assert_int_equal(rv_cond_destroy(NULL), -EINVAL);
    assert_int_equal(rv_cond_notify(NULL, 1), -EINVAL);
    assert_int_equal(rv_cond_notify_all(NULL), -EINVAL);
    assert_int_equal(rv_sem_init(NULL, 1), -EINVAL);
    assert_int_equal(rv_sem_init_bounded(NULL, 1), -EINVAL);
    assert_int_equal(rv_sem_destroy(NULL), -EINVAL);
    assert_int_equal(rv_sem_try_acquire(NULL), -EINVAL);
    assert_int_equal(rv_sem_release(NULL), -EINVAL);
    assert_int_equal(rv_sem_value(NULL), -EINVAL);
    assert_int_equal(rv_barrier_init(NULL, 1), -EINVAL);
    assert_int_equal(rv_barrier_destroy(NULL), -EINVAL);
    assert_int_equal(rv_barrier_reset(NULL), -EINVAL);
    assert_int_equal(rv_barrier_abort(NULL), -EINVAL);
    assert_int_equal(rv_barrier_n_waiting(NULL), -EINVAL);
    assert_int_equal(rv_barrier_parties(NULL), -EINVAL);
    /* The predicates have no error value; they must not crash. */
    (void)rv_lock_locked(NULL);
    (void)rv_event_is_set(NULL);
    (void)rv_sem_locked(NULL);
    (void)rv_barrier_broken(NULL);
    struct sc s = {0};
    sc_run(&s, 1, null_suspending_main);
}

/* ------------------------------------------------------------------------- */
/* Stress across workers                                                      */

/* Per-task argument of the stress tests. */
struct slot {
    void *ctx;
    int index;
};

/* Spawn fn(&slots[i]) for i < n on rt; the handles go to tasks[]. */
static void spawn_slots(rv_runtime *rt, rv_task_fn fn, void *ctx, struct slot *slots,
                        rv_task **tasks, int n)
{
    for (int i = 0; i < n; i++) {
        slots[i] = (struct slot){ctx, i};
        assert_int_equal(rv_spawn(rt, fn, &slots[i], NULL, &tasks[i]), 0);
    }
}

/* Wait for each task (STRESS_WAIT_NS) and release it; each must end with
 * `want` (or -ECANCELED too when `or_cancelled`). */
static void join_tasks(rv_task **tasks, int n, int want, bool or_cancelled)
{
    for (int i = 0; i < n; i++) {
        int rc = rv_future_wait(rv_task_future(tasks[i]), STRESS_WAIT_NS, NULL);
        if (!(or_cancelled && rc == -ECANCELED))
            assert_int_equal(rc, want);
        assert_int_equal(rv_task_release(tasks[i]), 0);
    }
}

#define LOCK_TASKS 8
#define LOCK_ITERS (100000 / SCALE_DIV)

struct lock_stress {
    struct checks ck;
    rv_lock lock;
    long counter; /* plain: the lock is all that guards it */
};

static int lock_stress_body(void *arg, void **res)
{
    struct slot *sl = arg;
    struct lock_stress *c = sl->ctx;
    for (long i = 0; i < LOCK_ITERS; i++) {
        if (!CHECK_EQ(c, rv_lock_acquire(&c->lock), 0))
            return -EIO;
        c->counter++;
        if (i % 256 == 0)
            rv_yield(); /* holding it: others queue up behind */
        if (!CHECK_EQ(c, rv_lock_release(&c->lock), 0))
            return -EIO;
        if (i % 64 == 0)
            rv_yield();
    }
    return 0;
}

/* A Lock guarding a plain counter: 8 tasks x 100,000 acquisitions on 2
 * workers count exactly 800,000 (TSan also sees the lock order every access
 * to the counter). */
static void test_lock_stress_counter(void **state)
{
    struct lock_stress c = {.counter = 0};
    atomic_init(&c.ck.failed, 0);
    assert_int_equal(rv_lock_init(&c.lock), 0);
    rv_runtime *rt = new_runtime(2);
    struct slot slots[LOCK_TASKS];
    rv_task *tasks[LOCK_TASKS];
    spawn_slots(rt, lock_stress_body, &c, slots, tasks, LOCK_TASKS);
    join_tasks(tasks, LOCK_TASKS, 0, false);
    free_runtime(rt);
    assert_checks(&c.ck);
    assert_int_equal(c.counter, (long)LOCK_TASKS * LOCK_ITERS);
    assert_false(rv_lock_locked(&c.lock));
    assert_int_equal(rv_lock_destroy(&c.lock), 0);
}

#define PC_PRODUCERS 4
#define PC_CONSUMERS 4
#define PC_PER_PRODUCER (50000 / SCALE_DIV)
#define PC_ITEMS (PC_PRODUCERS * PC_PER_PRODUCER)
#define PC_CAP 8

/* A bounded buffer: two conditions over one lock. */
struct pc {
    struct checks ck;
    rv_lock lock;
    rv_cond not_full, not_empty;
    long buf[PC_CAP];
    int head, count;
    long taken;          /* items consumed so far */
    unsigned char *seen; /* times each item was consumed */
};

static bool pc_has_room(void *arg)
{
    struct pc *c = arg;
    return c->count < PC_CAP;
}

static bool pc_has_item_or_all_taken(void *arg)
{
    struct pc *c = arg;
    return c->count > 0 || c->taken == PC_ITEMS;
}

static int pc_producer(void *arg, void **res)
{
    struct slot *sl = arg;
    struct pc *c = sl->ctx;
    for (long k = 0; k < PC_PER_PRODUCER; k++) {
        if (!CHECK_EQ(c, rv_lock_acquire(&c->lock), 0))
            return -EIO;
        if (!CHECK_EQ(c, rv_cond_wait_for(&c->not_full, pc_has_room, c), 0))
            return -EIO;
        CHECK(c, c->count >= 0 && c->count < PC_CAP);
        c->buf[(c->head + c->count) % PC_CAP] = (long)sl->index * PC_PER_PRODUCER + k;
        c->count++;
        CHECK(c, rv_cond_notify(&c->not_empty, 1) >= 0);
        CHECK_EQ(c, rv_lock_release(&c->lock), 0);
        if (k % 16 == 0)
            rv_yield();
    }
    return 0;
}

static int pc_consumer(void *arg, void **res)
{
    struct slot *sl = arg;
    struct pc *c = sl->ctx;
    for (;;) {
        if (!CHECK_EQ(c, rv_lock_acquire(&c->lock), 0))
            return -EIO;
        if (!CHECK_EQ(c, rv_cond_wait_for(&c->not_empty, pc_has_item_or_all_taken, c), 0))
            return -EIO;
        if (c->count == 0) { /* everything is taken */
            CHECK_EQ(c, rv_lock_release(&c->lock), 0);
            return 0;
        }
        CHECK(c, c->count > 0 && c->count <= PC_CAP);
        long item = c->buf[c->head];
        c->head = (c->head + 1) % PC_CAP;
        c->count--;
        if (CHECK(c, item >= 0 && item < PC_ITEMS))
            c->seen[item]++;
        if (++c->taken == PC_ITEMS)
            CHECK(c, rv_cond_notify_all(&c->not_empty) >= 0); /* the others stop */
        CHECK(c, rv_cond_notify(&c->not_full, 1) >= 0);
        CHECK_EQ(c, rv_lock_release(&c->lock), 0);
    }
}

/* Condition: producers and consumers on a bounded buffer guarded by the
 * conditions' shared lock, on 2 workers; the buffer's bounds hold inside,
 * and every item is consumed exactly once. */
static void test_condition_stress_bounded_buffer(void **state)
{
    struct pc c = {.head = 0};
    atomic_init(&c.ck.failed, 0);
    c.seen = calloc(PC_ITEMS, 1);
    assert_non_null(c.seen);
    assert_int_equal(rv_lock_init(&c.lock), 0);
    assert_int_equal(rv_cond_init(&c.not_full, &c.lock), 0);
    assert_int_equal(rv_cond_init(&c.not_empty, &c.lock), 0);
    rv_runtime *rt = new_runtime(2);
    struct slot slots[PC_PRODUCERS + PC_CONSUMERS];
    rv_task *tasks[PC_PRODUCERS + PC_CONSUMERS];
    spawn_slots(rt, pc_consumer, &c, slots, tasks, PC_CONSUMERS);
    spawn_slots(rt, pc_producer, &c, slots + PC_CONSUMERS, tasks + PC_CONSUMERS, PC_PRODUCERS);
    join_tasks(tasks, PC_PRODUCERS + PC_CONSUMERS, 0, false);
    free_runtime(rt);
    assert_checks(&c.ck);
    assert_int_equal(c.taken, PC_ITEMS);
    assert_int_equal(c.count, 0);
    long wrong = 0;
    for (long i = 0; i < PC_ITEMS; i++)
        wrong += c.seen[i] != 1;
    assert_int_equal(wrong, 0);
    free(c.seen);
    assert_int_equal(rv_cond_destroy(&c.not_full), 0);
    assert_int_equal(rv_cond_destroy(&c.not_empty), 0);
    assert_int_equal(rv_lock_destroy(&c.lock), 0);
}

#define SEM_UNITS 3
#define SEM_TASKS 12
#define SEM_ITERS (20000 / SCALE_DIV)

struct sem_stress {
    struct checks ck;
    rv_sem sem;
    atomic_int started, inside, max_inside, finished;
    atomic_long acquired, cancelled_waits, cancelled_inside, cancels_sent;
    long done_iters[SEM_TASKS];
    rv_task *tasks[SEM_TASKS];
};

/* A task handling a cancellation and going on (asyncio: catch, uncancel). */
static void sem_stress_handled(atomic_long *counter)
{
    atomic_fetch_add(counter, 1);
    rv_task_uncancel(rv_current_task());
}

static int sem_stress_body(void *arg, void **res)
{
    struct slot *sl = arg;
    struct sem_stress *c = sl->ctx;
    atomic_fetch_add(&c->started, 1);
    for (long i = 0; i < SEM_ITERS; i++, c->done_iters[sl->index]++) {
        int rc = rv_sem_acquire(&c->sem);
        if (rc == -ECANCELED) {
            sem_stress_handled(&c->cancelled_waits);
            continue;
        }
        if (!CHECK_EQ(c, rc, 0))
            break;
        int n = atomic_fetch_add(&c->inside, 1) + 1;
        CHECK(c, n <= SEM_UNITS);
        int max = atomic_load(&c->max_inside);
        while (n > max && !atomic_compare_exchange_weak(&c->max_inside, &max, n))
            ;
        rc = (i % 8 == 0) ? rv_sleep(0) : rv_yield();
        if (rc == -ECANCELED)
            sem_stress_handled(&c->cancelled_inside); /* still holds its unit */
        atomic_fetch_sub(&c->inside, 1);
        CHECK_EQ(c, rv_sem_release(&c->sem), 0);
        atomic_fetch_add(&c->acquired, 1);
    }
    atomic_fetch_add(&c->finished, 1);
    return 0;
}

static int sem_stress_canceller(void *arg, void **res)
{
    struct sem_stress *c = arg;
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    int64_t deadline = rv_now() + STRESS_WAIT_NS;
    /* A task cancelled before it first runs would end without running. */
    CHECK_EQ(c, task_wait_atomic(&c->started, SEM_TASKS), 0);
    while (atomic_load(&c->finished) < SEM_TASKS && rv_now() < deadline) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (rv_task_cancel(c->tasks[x % SEM_TASKS], "stress") == 0)
            atomic_fetch_add(&c->cancels_sent, 1);
        for (int k = (int)(x >> 60); k >= 0; k--)
            rv_yield();
    }
    return 0;
}

/* Semaphore: k units, tasks check that never more than k are inside, while
 * a task cancels random tasks (many of them waiting); every cancelled waiter
 * gives back what it may have been handed, so the value ends at k. */
static void test_semaphore_stress_cancel(void **state)
{
    struct sem_stress *c = calloc(1, sizeof *c);
    assert_non_null(c);
    atomic_init(&c->ck.failed, 0);
    assert_int_equal(rv_sem_init(&c->sem, SEM_UNITS), 0);
    rv_runtime *rt = new_runtime(2);
    struct slot slots[SEM_TASKS];
    spawn_slots(rt, sem_stress_body, c, slots, c->tasks, SEM_TASKS);
    rv_task *canceller = NULL;
    assert_int_equal(rv_spawn(rt, sem_stress_canceller, c, NULL, &canceller), 0);
    /* The canceller first: it uses the task handles until all are done. A
     * request that lands after a task's last suspension ends it cancelled
     * ("a request made and not delivered before the task returns"). */
    join_tasks(&canceller, 1, 0, false);
    join_tasks(c->tasks, SEM_TASKS, 0, true);
    free_runtime(rt);
    assert_checks(&c->ck);
    print_message("sem stress: %ld acquisitions, %ld cancels sent, %ld waits and %ld holders "
                  "cancelled, at most %d inside\n",
                  atomic_load(&c->acquired), atomic_load(&c->cancels_sent),
                  atomic_load(&c->cancelled_waits), atomic_load(&c->cancelled_inside),
                  atomic_load(&c->max_inside));
    for (int i = 0; i < SEM_TASKS; i++)
        assert_int_equal(c->done_iters[i], SEM_ITERS);
    assert_int_equal(atomic_load(&c->acquired) + atomic_load(&c->cancelled_waits),
                     (long)SEM_TASKS * SEM_ITERS);
    assert_true(atomic_load(&c->max_inside) <= SEM_UNITS);
    assert_int_equal(atomic_load(&c->inside), 0);
    assert_int_equal(rv_sem_value(&c->sem), SEM_UNITS);
    assert_int_equal(rv_sem_destroy(&c->sem), 0);
    free(c);
}

#define EV_ROUNDS 50
#define EV_WAITERS 64

struct ev_stress {
    struct checks ck;
    rv_event ev;
    atomic_int entered, woken;
};

static int ev_waiter(void *arg, void **res)
{
    struct ev_stress *c = ((struct slot *)arg)->ctx;
    atomic_fetch_add(&c->entered, 1);
    int rc = rv_event_wait(&c->ev);
    CHECK_EQ(c, rc, 0);
    atomic_fetch_add(&c->woken, 1);
    return rc;
}

static int ev_setter(void *arg, void **res)
{
    struct ev_stress *c = ((struct slot *)arg)->ctx;
    CHECK_EQ(c, task_wait_atomic(&c->entered, EV_WAITERS / 2), 0);
    return rv_event_set(&c->ev);
}

/* Event: many waiters on all workers, the set racing with their arrival,
 * from a plain thread (even rounds) or a task (odd rounds): every waiter
 * returns 0. */
static void test_event_stress_many_waiters(void **state)
{
    struct ev_stress c;
    atomic_init(&c.ck.failed, 0);
    assert_int_equal(rv_event_init(&c.ev), 0);
    rv_runtime *rt = new_runtime(0); /* one worker per CPU */
    struct slot slots[EV_WAITERS + 1];
    rv_task *tasks[EV_WAITERS + 1];
    for (int round = 0; round < EV_ROUNDS; round++) {
        atomic_init(&c.entered, 0);
        atomic_init(&c.woken, 0);
        spawn_slots(rt, ev_waiter, &c, slots, tasks, EV_WAITERS);
        if (round % 2 == 0) {
            assert_true(wait_atomic(&c.entered, EV_WAITERS / 2));
            assert_int_equal(rv_event_set(&c.ev), 0);
            join_tasks(tasks, EV_WAITERS, 0, false);
        } else {
            spawn_slots(rt, ev_setter, &c, slots + EV_WAITERS, tasks + EV_WAITERS, 1);
            join_tasks(tasks, EV_WAITERS + 1, 0, false);
        }
        assert_int_equal(atomic_load(&c.woken), EV_WAITERS);
        assert_true(rv_event_is_set(&c.ev));
        assert_int_equal(rv_event_clear(&c.ev), 0);
    }
    free_runtime(rt);
    assert_checks(&c.ck);
    assert_int_equal(rv_event_destroy(&c.ev), 0);
}

#define BAR_TASKS 4
#define BAR_ROUNDS (5000 / SCALE_DIV)

struct bar_stress {
    struct checks ck;
    rv_barrier bar;
    atomic_long arrivals;
    atomic_int masks[BAR_ROUNDS]; /* indices seen in each round */
};

static int bar_stress_body(void *arg, void **res)
{
    struct bar_stress *c = ((struct slot *)arg)->ctx;
    for (long r = 0; r < BAR_ROUNDS; r++) {
        atomic_fetch_add(&c->arrivals, 1);
        int i = rv_barrier_wait(&c->bar);
        if (!CHECK(c, i >= 0 && i < BAR_TASKS))
            return i < 0 ? i : -EIO;
        /* Everyone arrived for this round; nobody past the next one. */
        long a = atomic_load(&c->arrivals);
        CHECK(c, a >= (r + 1) * BAR_TASKS && a <= (r + 2) * BAR_TASKS - 1);
        atomic_fetch_or(&c->masks[r], 1 << i);
    }
    return 0;
}

/* Barrier: 4 tasks on 2 workers through 5,000 rounds: nobody leaves a round
 * before all arrived, and each round's indices are 0..3, each once. */
static void test_barrier_stress_rounds(void **state)
{
    struct bar_stress *c = calloc(1, sizeof *c);
    assert_non_null(c);
    atomic_init(&c->ck.failed, 0);
    assert_int_equal(rv_barrier_init(&c->bar, BAR_TASKS), 0);
    rv_runtime *rt = new_runtime(2);
    struct slot slots[BAR_TASKS];
    rv_task *tasks[BAR_TASKS];
    spawn_slots(rt, bar_stress_body, c, slots, tasks, BAR_TASKS);
    join_tasks(tasks, BAR_TASKS, 0, false);
    free_runtime(rt);
    assert_checks(&c->ck);
    long bad = 0;
    for (long r = 0; r < BAR_ROUNDS; r++)
        bad += atomic_load(&c->masks[r]) != (1 << BAR_TASKS) - 1;
    assert_int_equal(bad, 0);
    assert_int_equal(rv_barrier_n_waiting(&c->bar), 0);
    assert_false(rv_barrier_broken(&c->bar));
    assert_int_equal(rv_barrier_destroy(&c->bar), 0);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* Lock */
        cmocka_unit_test(test_lock_acquire),
        cmocka_unit_test(test_lock_acquire_cancel),
        cmocka_unit_test(test_lock_cancel_race),
        cmocka_unit_test(test_lock_cancel_release_race),
        cmocka_unit_test(test_lock_finished_waiter_cancelled),
        cmocka_unit_test(test_lock_woken_then_cancelled),
        cmocka_unit_test(test_lock_fifo_nowait),
        cmocka_unit_test(test_lock_release_not_acquired),
        cmocka_unit_test(test_lock_release_no_waiters),
        cmocka_unit_test(test_lock_not_reentrant),
        cmocka_unit_test(test_lock_release_from_plain_thread),
        cmocka_unit_test(test_lock_release_from_callback),
        cmocka_unit_test(test_lock_destroy_busy),
        cmocka_unit_test(test_lock_destroy_held),
        /* Event */
        cmocka_unit_test(test_event_wait),
        cmocka_unit_test(test_event_wait_on_set),
        cmocka_unit_test(test_event_wait_cancel),
        cmocka_unit_test(test_event_clear),
        cmocka_unit_test(test_event_clear_with_waiters),
        cmocka_unit_test(test_event_set_then_clear_still_wakes),
        cmocka_unit_test(test_event_set_from_plain_thread),
        cmocka_unit_test(test_event_set_from_callback),
        cmocka_unit_test(test_event_destroy_busy),
        /* Condition */
        cmocka_unit_test(test_condition_wait),
        cmocka_unit_test(test_condition_wait_cancel),
        cmocka_unit_test(test_condition_wait_cancel_contested),
        cmocka_unit_test(test_condition_wait_cancel_after_notify),
        cmocka_unit_test(test_condition_notified_then_cancelled),
        cmocka_unit_test(test_condition_wait_for),
        cmocka_unit_test(test_condition_notify),
        cmocka_unit_test(test_condition_notify_fifo),
        cmocka_unit_test(test_condition_notify_all),
        cmocka_unit_test(test_condition_notify_unacquired),
        cmocka_unit_test(test_condition_wait_unacquired),
        cmocka_unit_test(test_condition_explicit_lock),
        cmocka_unit_test(test_condition_notify_from_plain_thread),
        cmocka_unit_test(test_condition_destroy_busy),
        /* Semaphore, BoundedSemaphore */
        cmocka_unit_test(test_semaphore_initial_value_zero),
        cmocka_unit_test(test_semaphore),
        cmocka_unit_test(test_semaphore_value),
        cmocka_unit_test(test_semaphore_acquire),
        cmocka_unit_test(test_semaphore_acquire_cancel),
        cmocka_unit_test(test_semaphore_acquire_cancel_before_awoken),
        cmocka_unit_test(test_semaphore_acquire_hang),
        cmocka_unit_test(test_semaphore_acquire_no_hang),
        cmocka_unit_test(test_semaphore_cancel_race),
        cmocka_unit_test(test_semaphore_fifo_nowait),
        cmocka_unit_test(test_semaphore_release_not_acquired),
        cmocka_unit_test(test_semaphore_release_no_waiters),
        cmocka_unit_test(test_bounded_semaphore_release_over),
        cmocka_unit_test(test_bounded_semaphore_handoff),
        cmocka_unit_test(test_semaphore_acquire_fifo_order),
        cmocka_unit_test(test_semaphore_acquire_fifo_order_2),
        cmocka_unit_test(test_semaphore_acquire_fifo_order_3),
        cmocka_unit_test(test_semaphore_release_from_plain_thread),
        cmocka_unit_test(test_semaphore_release_from_callback),
        cmocka_unit_test(test_semaphore_destroy_busy),
        /* Barrier */
        cmocka_unit_test(test_barrier_parties),
        cmocka_unit_test(test_barrier_filling_task_by_task),
        cmocka_unit_test(test_barrier_filling_one_task),
        cmocka_unit_test(test_barrier_last_arrival_does_not_suspend),
        cmocka_unit_test(test_barrier_wait),
        cmocka_unit_test(test_barrier_blocking_tasks_while_draining),
        cmocka_unit_test(test_barrier_reset_while_tasks_waiting),
        cmocka_unit_test(test_barrier_reset_barrier),
        cmocka_unit_test(test_barrier_reset_while_tasks_waiting_and_waiting_again),
        cmocka_unit_test(test_barrier_abort_barrier),
        cmocka_unit_test(test_barrier_abort_while_waiting),
        cmocka_unit_test(test_barrier_filling_tasks_cancel_one),
        cmocka_unit_test(test_barrier_cancel_after_round_completed),
        cmocka_unit_test(test_barrier_abort_when_exception),
        cmocka_unit_test(test_barrier_abort_when_exception_then_resetting),
        cmocka_unit_test(test_barrier_destroy_busy),
        /* Outside tasks */
        cmocka_unit_test(test_sync_suspending_calls_outside_task),
        cmocka_unit_test(test_sync_null_handles),
        /* Stress */
        cmocka_unit_test(test_lock_stress_counter),
        cmocka_unit_test(test_condition_stress_bounded_buffer),
        cmocka_unit_test(test_semaphore_stress_cancel),
        cmocka_unit_test(test_event_stress_many_waiters),
        cmocka_unit_test(test_barrier_stress_rounds),
    };
    /* RV_TEST_FILTER=pattern runs only the matching tests (debugging). */
    const char *filter = getenv("RV_TEST_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
