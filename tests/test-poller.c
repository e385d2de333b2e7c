/* test-poller.c - a worker's parking primitive (io/poller.h).
 *
 * "A worker with nothing to do parks in rv__poller_wait(); another thread wakes
 * it with rv__poller_wake(), which costs a write(2) only when no wake is
 * already pending." Every lost wakeup in the scheduler above ends here, so the
 * poller gets its own checks: a wake before or during a wait ends it, wakes
 * coalesce, timeouts time out, and - the subtle one - a burst of concurrent
 * wakes never leaves the "wake pending" flag set with nothing to read, which
 * would make every later wake a no-op and park the worker for good.
 *
 * cmocka is not thread-safe: helper threads record what they see in atomics;
 * only the test thread asserts.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/poller.h"

#define MS (1000000LL)

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* A wake issued before the wait makes the wait return at once; the wake is
 * consumed, so the next wait times out. */
static void test_poller_wake_before_wait(void **state)
{
    (void)state;
    rv__poller p;
    assert_int_equal(rv__poller_init(&p), 0);
    rv__poller_wake(&p);
    int64_t t0 = now_ns();
    assert_int_equal(rv__poller_wait(&p, 5000), 0); /* wakes are not I/O events */
    assert_true(now_ns() - t0 < 1000 * MS);
    t0 = now_ns();
    assert_int_equal(rv__poller_wait(&p, 20), 0);
    assert_true(now_ns() - t0 >= 19 * MS);
    rv__poller_fini(&p);
}

/* Wakes coalesce: several wakes before a wait end one wait, and leave
 * nothing behind. */
static void test_poller_wakes_coalesce(void **state)
{
    (void)state;
    rv__poller p;
    assert_int_equal(rv__poller_init(&p), 0);
    for (int i = 0; i < 5; i++)
        rv__poller_wake(&p);
    assert_int_equal(rv__poller_wait(&p, 0), 0);
    int64_t t0 = now_ns();
    assert_int_equal(rv__poller_wait(&p, 20), 0);
    assert_true(now_ns() - t0 >= 19 * MS);
    /* And it still wakes afterwards. */
    rv__poller_wake(&p);
    t0 = now_ns();
    assert_int_equal(rv__poller_wait(&p, 5000), 0);
    assert_true(now_ns() - t0 < 1000 * MS);
    rv__poller_fini(&p);
}

/* A wait with no wake times out after about timeout_ms; 0 just looks. */
static void test_poller_timeout(void **state)
{
    (void)state;
    rv__poller p;
    assert_int_equal(rv__poller_init(&p), 0);
    int64_t t0 = now_ns();
    assert_int_equal(rv__poller_wait(&p, 0), 0);
    assert_true(now_ns() - t0 < 1000 * MS);
    t0 = now_ns();
    assert_int_equal(rv__poller_wait(&p, 30), 0);
    assert_true(now_ns() - t0 >= 29 * MS);
    rv__poller_fini(&p);
}

/* ------------------------------------------------------------------------- */
/* Concurrent wakes                                                           */

struct wake_run {
    rv__poller p;
    atomic_long returns; /* times the waiter came back from rv__poller_wait */
    atomic_int stop, hammer;
};

static void *waiter_main(void *arg)
{
    struct wake_run *r = arg;
    while (!atomic_load(&r->stop)) {
        rv__poller_wait(&r->p, -1);
        atomic_fetch_add(&r->returns, 1);
    }
    return NULL;
}

static void *hammer_main(void *arg)
{
    struct wake_run *r = arg;
    unsigned x = 12345;
    while (!atomic_load(&r->stop)) {
        if (!atomic_load(&r->hammer)) {
            sleep_us(50);
            continue;
        }
        rv__poller_wake(&r->p);
        x = x * 1103515245u + 12345u;
        for (volatile unsigned k = 0; k < (x >> 16) % 500; k++)
            ;
    }
    return NULL;
}

/* Wake a waiter parked with no timeout from another thread, many times: it
 * always comes back. */
static void test_poller_wake_parked_thread(void **state)
{
    (void)state;
    static struct wake_run r;
    memset(&r, 0, sizeof r);
    assert_int_equal(rv__poller_init(&r.p), 0);
    pthread_t w;
    assert_int_equal(pthread_create(&w, NULL, waiter_main, &r), 0);
    int lost = 0;
    for (int i = 0; i < 200 && !lost; i++) {
        sleep_us(200); /* let it park */
        long before = atomic_load(&r.returns);
        rv__poller_wake(&r.p);
        int64_t deadline = now_ns() + 2000 * MS;
        while (atomic_load(&r.returns) == before && now_ns() < deadline)
            sleep_us(50);
        lost = atomic_load(&r.returns) == before;
    }
    atomic_store(&r.stop, 1);
    uint64_t one = 1; /* unblock it whatever the flag says */
    assert_int_equal(write(r.p.wakefd, &one, sizeof one), (ssize_t)sizeof one);
    pthread_join(w, NULL);
    rv__poller_fini(&r.p);
    assert_int_equal(lost, 0);
}

/* After a burst of wakes from another thread (some landing while the waiter
 * is between seeing a wake and draining the eventfd), a single later wake must
 * still end the waiter's next wait. If a drained wake left the pending flag
 * set, rv__poller_wake would skip its write forever: the parked worker would
 * only come back for a timer, and rv_runtime_shutdown would hang joining it. */
static void test_poller_no_lost_wake_after_burst(void **state)
{
    (void)state;
    static struct wake_run r;
    memset(&r, 0, sizeof r);
    assert_int_equal(rv__poller_init(&r.p), 0);
    pthread_t w, h;
    assert_int_equal(pthread_create(&w, NULL, waiter_main, &r), 0);
    assert_int_equal(pthread_create(&h, NULL, hammer_main, &r), 0);
    int lost_round = -1, stuck_flag = 0;
    for (int i = 0; i < 100 && lost_round < 0; i++) {
        atomic_store(&r.hammer, 1);
        sleep_us(300);
        atomic_store(&r.hammer, 0);
        sleep_us(3000); /* the hammer stops; the waiter parks again */
        long before = atomic_load(&r.returns);
        rv__poller_wake(&r.p);
        int64_t deadline = now_ns() + 1000 * MS;
        while (atomic_load(&r.returns) == before && now_ns() < deadline)
            sleep_us(100);
        if (atomic_load(&r.returns) == before) {
            lost_round = i;
            stuck_flag = atomic_load(&r.p.wake_pending);
        }
    }
    atomic_store(&r.stop, 1);
    pthread_join(h, NULL);
    uint64_t one = 1; /* unblock the waiter whatever the flag says */
    assert_int_equal(write(r.p.wakefd, &one, sizeof one), (ssize_t)sizeof one);
    pthread_join(w, NULL);
    rv__poller_fini(&r.p);
    if (lost_round >= 0)
        print_message("round %d: a wake after a burst was lost; wake_pending = %d while the "
                      "waiter sat in epoll_wait with nothing to read\n",
                      lost_round, stuck_flag);
    assert_int_equal(lost_round, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poller_wake_before_wait),
        cmocka_unit_test(test_poller_wakes_coalesce),
        cmocka_unit_test(test_poller_timeout),
        cmocka_unit_test(test_poller_wake_parked_thread),
        cmocka_unit_test(test_poller_no_lost_wake_after_burst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
