/* test-deque.c - the worker-local run queue (primitives/deque.h).
 *
 * Single-threaded semantics first (FIFO pop, overflow of the older half when
 * full, steal of about half), then concurrent stress: one owner thread pushes
 * and pops while thief threads steal into their own deques (and from each
 * other, as workers do). Every item is a unique tagged pointer with a counter;
 * at the end each counter must be exactly 1 (taken exactly once, none lost).
 *
 * Sizes come from RV_LOCAL_QUEUE_SIZE, so the file also runs against the
 * small-queue build (RAVEL_LOCAL_QUEUE_SIZE=4).
 *
 * cmocka is not thread-safe: threads record problems in atomics; only the
 * test thread asserts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primitives/deque.h"

#define Q ((uint32_t)RV_LOCAL_QUEUE_SIZE)
#define HALF (Q / 2)

/* Item i is the pointer (i + 1) * 8: never NULL, 8-aligned, decodable. */
#define ITEM(i) ((void *)(uintptr_t)(((uintptr_t)(i) + 1) * 8))
#define INDEX(p) ((uintptr_t)(p) / 8 - 1)

#include "test-scale.h"

#define STRESS_ITEMS (4000000L / SCALE_DIV)
#define NTHIEVES 3
#define STRESS_TIMEOUT_NS (90LL * 1000000000LL)

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static rv__deque *deque_new(uint32_t start)
{
    rv__deque *q = aligned_alloc(128, (sizeof(rv__deque) + 127) & ~(size_t)127);
    assert_non_null(q);
    rv__deque_init(q, start);
    return q;
}

/* ------------------------------------------------------------------------- */
/* Single-threaded semantics                                                  */

static const uint32_t starts[] = {0, 1, 12345, UINT32_MAX - 2, UINT32_MAX - Q / 2, UINT32_MAX};

/* An empty queue pops NULL and has length 0. */
static void test_deque_empty(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        rv__deque *q = deque_new(starts[s]);
        assert_null(rv__deque_pop(q));
        assert_int_equal(rv__deque_len(q), 0);
        assert_null(rv__deque_pop(q));
        free(q);
    }
}

/* Owner push then pop is FIFO; length tracks the count. */
static void test_deque_push_pop_fifo(void **state)
{
    (void)state;
    void *batch[HALF];
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        rv__deque *q = deque_new(starts[s]);
        uint32_t n = 99;
        for (uint32_t i = 0; i < Q; i++) {
            assert_int_equal(rv__deque_push(q, ITEM(i), batch, &n), 0);
            assert_int_equal(n, 0);
            assert_int_equal(rv__deque_len(q), i + 1);
        }
        for (uint32_t i = 0; i < Q; i++) {
            assert_ptr_equal(rv__deque_pop(q), ITEM(i));
            assert_int_equal(rv__deque_len(q), Q - i - 1);
        }
        assert_null(rv__deque_pop(q));
        free(q);
    }
}

/* Interleaved pushes and pops, many times around the ring (and, from the
 * starts near UINT32_MAX, across the 32-bit index wrap): still FIFO. */
static void test_deque_interleaved_wrap(void **state)
{
    (void)state;
    void *batch[HALF];
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        rv__deque *q = deque_new(starts[s]);
        uint32_t next_push = 0, next_pop = 0, n;
        for (int round = 0; round < 200; round++) {
            uint32_t k = (uint32_t)(round % (int)Q) + 1; /* 1..Q */
            for (uint32_t i = 0; i < k && next_push - next_pop < Q; i++) {
                assert_int_equal(rv__deque_push(q, ITEM(next_push), batch, &n), 0);
                next_push++;
            }
            uint32_t pops = (k + 1) / 2 + (round % 3 == 0 ? Q : 0);
            for (uint32_t i = 0; i < pops; i++) {
                void *p = rv__deque_pop(q);
                if (next_pop == next_push) {
                    assert_null(p);
                    break;
                }
                assert_ptr_equal(p, ITEM(next_pop));
                next_pop++;
            }
            assert_int_equal(rv__deque_len(q), next_push - next_pop);
        }
        free(q);
    }
}

/* rv__deque_push: "When the ring is full it returns 1 after moving the older
 * half into *batch ... without pushing item". */
static void test_deque_overflow_half(void **state)
{
    (void)state;
    void *batch[HALF];
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        rv__deque *q = deque_new(starts[s]);
        uint32_t n;
        for (uint32_t i = 0; i < Q; i++)
            assert_int_equal(rv__deque_push(q, ITEM(i), batch, &n), 0);
        memset(batch, 0, sizeof batch);
        n = 0;
        assert_int_equal(rv__deque_push(q, ITEM(Q), batch, &n), 1);
        assert_int_equal(n, HALF);
        for (uint32_t i = 0; i < HALF; i++)
            assert_ptr_equal(batch[i], ITEM(i));
        assert_int_equal(rv__deque_len(q), Q - HALF);
        /* The item itself was not pushed: the newer half remains, in order. */
        for (uint32_t i = HALF; i < Q; i++)
            assert_ptr_equal(rv__deque_pop(q), ITEM(i));
        assert_null(rv__deque_pop(q));

        /* After an overflow there is room again for exactly HALF more
         * (plus what remains), and a second overflow hands out the next half. */
        for (uint32_t i = 0; i < Q; i++)
            assert_int_equal(rv__deque_push(q, ITEM(100 + i), batch, &n), 0);
        assert_int_equal(rv__deque_push(q, ITEM(999), batch, &n), 1);
        assert_int_equal(n, HALF);
        for (uint32_t i = 0; i < HALF; i++)
            assert_ptr_equal(batch[i], ITEM(100 + i));
        for (uint32_t i = 0; i < HALF; i++)
            assert_int_equal(rv__deque_push(q, ITEM(200 + i), batch, &n), 0);
        assert_int_equal(rv__deque_len(q), Q);
        assert_int_equal(rv__deque_push(q, ITEM(998), batch, &n), 1);
        assert_int_equal(n, HALF);
        for (uint32_t i = 0; i < HALF; i++)
            assert_ptr_equal(batch[i], ITEM(100 + HALF + i));
        for (uint32_t i = 0; i < HALF; i++)
            assert_ptr_equal(rv__deque_pop(q), ITEM(200 + i));
        assert_null(rv__deque_pop(q));
        free(q);
    }
}

/* rv__deque_push: "When full while a thief is mid-steal it returns 2 with
 * *batch_n = 0". White box: the test plays the thief by writing `head` as a
 * thief's phase 1 would (steal left behind, real advanced). */
static void test_deque_full_mid_steal(void **state)
{
    (void)state;
    void *batch[HALF];
    uint32_t start = UINT32_MAX - 1;
    rv__deque *q = deque_new(start);
    uint32_t n;
    for (uint32_t i = 0; i < Q; i++)
        assert_int_equal(rv__deque_push(q, ITEM(i), batch, &n), 0);
    /* A thief claims the first 2 slots. */
    atomic_store(&q->head, (uint64_t)start << 32 | (uint32_t)(start + 2));
    n = 77;
    assert_int_equal(rv__deque_push(q, ITEM(Q), batch, &n), 2);
    assert_int_equal(n, 0);
    /* The owner pops past the claim; the claimed slots stay protected. */
    assert_ptr_equal(rv__deque_pop(q), ITEM(2));
    assert_int_equal(atomic_load(&q->head) >> 32, start);
    n = 77;
    assert_int_equal(rv__deque_push(q, ITEM(Q + 1), batch, &n), 2);
    assert_int_equal(n, 0);
    /* The thief releases its claim (phase 3): room again. */
    uint32_t real = (uint32_t)atomic_load(&q->head);
    atomic_store(&q->head, (uint64_t)real << 32 | real);
    assert_int_equal(rv__deque_push(q, ITEM(Q + 2), batch, &n), 0);
    for (uint32_t i = 3; i < Q; i++)
        assert_ptr_equal(rv__deque_pop(q), ITEM(i));
    assert_ptr_equal(rv__deque_pop(q), ITEM(Q + 2));
    assert_null(rv__deque_pop(q));
    free(q);
}

/* rv__deque_steal_into: "move about half of victim into dst and return one of
 * the moved items to run now". Checks the exact split: ceil(k/2) oldest items
 * move, the newest of them is returned, the rest are queued in dst in order. */
static void test_deque_steal_half(void **state)
{
    (void)state;
    void *batch[HALF];
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        for (uint32_t k = 1; k <= Q; k++) {
            rv__deque *v = deque_new(starts[s]);
            rv__deque *d = deque_new(starts[(s + 1) % (sizeof starts / sizeof starts[0])]);
            uint32_t n;
            for (uint32_t i = 0; i < k; i++)
                assert_int_equal(rv__deque_push(v, ITEM(i), batch, &n), 0);
            uint32_t moved = 999;
            void *got = rv__deque_steal_into(v, d, &moved);
            uint32_t want = k - k / 2;
            assert_int_equal(moved, want);
            assert_ptr_equal(got, ITEM(want - 1));
            assert_int_equal(rv__deque_len(d), want - 1);
            assert_int_equal(rv__deque_len(v), k - want);
            for (uint32_t i = 0; i + 1 < want; i++)
                assert_ptr_equal(rv__deque_pop(d), ITEM(i));
            assert_null(rv__deque_pop(d));
            for (uint32_t i = want; i < k; i++)
                assert_ptr_equal(rv__deque_pop(v), ITEM(i));
            assert_null(rv__deque_pop(v));
            /* The victim stays usable: push/pop/overflow after a steal. */
            for (uint32_t i = 0; i < Q; i++)
                assert_int_equal(rv__deque_push(v, ITEM(500 + i), batch, &n), 0);
            assert_int_equal(rv__deque_push(v, ITEM(900), batch, &n), 1);
            assert_ptr_equal(batch[0], ITEM(500));
            free(v);
            free(d);
        }
    }
}

/* Steal from an empty victim: NULL, moved 0. Steal into a dst that is more
 * than half full: NULL ("it has work"), the victim untouched. */
static void test_deque_steal_refused(void **state)
{
    (void)state;
    void *batch[HALF];
    uint32_t n, moved = 5;
    rv__deque *v = deque_new(7);
    rv__deque *d = deque_new(UINT32_MAX);
    assert_null(rv__deque_steal_into(v, d, &moved));
    assert_int_equal(moved, 0);

    for (uint32_t i = 0; i < Q; i++)
        assert_int_equal(rv__deque_push(v, ITEM(i), batch, &n), 0);
    for (uint32_t i = 0; i < HALF + 1; i++)
        assert_int_equal(rv__deque_push(d, ITEM(1000 + i), batch, &n), 0);
    moved = 5;
    assert_null(rv__deque_steal_into(v, d, &moved));
    assert_int_equal(moved, 0);
    assert_int_equal(rv__deque_len(v), Q);
    assert_int_equal(rv__deque_len(d), HALF + 1);
    /* Exactly half full is allowed. */
    assert_ptr_equal(rv__deque_pop(d), ITEM(1000));
    assert_int_equal(rv__deque_len(d), HALF);
    assert_non_null(rv__deque_steal_into(v, d, &moved));
    assert_int_equal(moved, HALF);
    assert_int_equal(rv__deque_len(d), HALF + HALF - 1);
    free(v);
    free(d);
}

/* Repeated steals drain a victim completely; nothing lost or duplicated. */
static void test_deque_steal_until_empty(void **state)
{
    (void)state;
    void *batch[HALF];
    rv__deque *v = deque_new(UINT32_MAX - 3);
    rv__deque *d = deque_new(UINT32_MAX - 1);
    uint32_t n, moved;
    int seen[Q];
    memset(seen, 0, sizeof seen);
    for (uint32_t i = 0; i < Q; i++)
        assert_int_equal(rv__deque_push(v, ITEM(i), batch, &n), 0);
    uint32_t total = 0;
    void *p;
    while ((p = rv__deque_steal_into(v, d, &moved))) {
        assert_true(moved >= 1);
        total += moved;
        seen[INDEX(p)]++;
        while ((p = rv__deque_pop(d)))
            seen[INDEX(p)]++;
    }
    assert_int_equal(total, Q);
    for (uint32_t i = 0; i < Q; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(rv__deque_len(v), 0);
    free(v);
    free(d);
}

/* ------------------------------------------------------------------------- */
/* Concurrent stress                                                          */

struct stress {
    rv__deque *owner_q;
    rv__deque *thief_q[NTHIEVES];
    long n;
    _Atomic uint32_t *seen; /* per item: times taken */
    _Atomic long taken;
    _Atomic long dups, bad, order_errors, size_errors;
    _Atomic long overflows, mid_steals, owner_pops, steals, stolen, cross_steals;
    _Atomic int stop;
};

struct thief_arg {
    struct stress *s;
    unsigned index;
};

static void take(struct stress *s, void *p)
{
    uintptr_t v = (uintptr_t)p;
    if (!p || v % 8 != 0 || INDEX(p) >= (uintptr_t)s->n) {
        atomic_fetch_add_explicit(&s->bad, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->taken, 1, memory_order_relaxed);
        return;
    }
    if (atomic_fetch_add_explicit(&s->seen[INDEX(p)], 1, memory_order_relaxed) != 0)
        atomic_fetch_add_explicit(&s->dups, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->taken, 1, memory_order_relaxed);
}

static bool finished(struct stress *s)
{
    return atomic_load_explicit(&s->taken, memory_order_relaxed) >= s->n ||
           atomic_load_explicit(&s->stop, memory_order_relaxed);
}

static uint32_t xorshift(uint32_t *x)
{
    uint32_t v = *x;
    v ^= v << 13;
    v ^= v >> 17;
    v ^= v << 5;
    return *x = v;
}

static void *owner_main(void *arg)
{
    struct stress *s = arg;
    rv__deque *q = s->owner_q;
    void *batch[HALF];
    uint32_t rng = 0x12345678;
    long last_popped = -1; /* the owner's pops leave from the head: increasing */
    for (long i = 0; i < s->n && !atomic_load_explicit(&s->stop, memory_order_relaxed); i++) {
        uint32_t bn = 12345;
        int rc = rv__deque_push(q, ITEM(i), batch, &bn);
        if (rc == 1) {
            if (bn != HALF)
                atomic_fetch_add(&s->size_errors, 1);
            for (uint32_t k = 0; k < bn && k < HALF; k++) {
                if ((long)INDEX(batch[k]) <= last_popped)
                    atomic_fetch_add(&s->order_errors, 1);
                last_popped = (long)INDEX(batch[k]);
                take(s, batch[k]);
            }
            take(s, ITEM(i)); /* the caller sends the item elsewhere */
            atomic_fetch_add_explicit(&s->overflows, 1, memory_order_relaxed);
        } else if (rc == 2) {
            if (bn != 0)
                atomic_fetch_add(&s->size_errors, 1);
            take(s, ITEM(i));
            atomic_fetch_add_explicit(&s->mid_steals, 1, memory_order_relaxed);
        } else if (rc != 0 || bn != 0) {
            atomic_fetch_add(&s->size_errors, 1);
        }
        /* Phases with different pop rates: 0, 1/4, 1/2, 15/16 of pushes. */
        uint32_t phase = (uint32_t)(i / 4096) % 4;
        uint32_t r = xorshift(&rng) % 16;
        bool do_pop = phase == 1 ? r < 4 : phase == 2 ? r < 8 : phase == 3 ? r < 15 : false;
        if (do_pop) {
            void *p = rv__deque_pop(q);
            if (p) {
                if ((long)INDEX(p) <= last_popped)
                    atomic_fetch_add(&s->order_errors, 1);
                last_popped = (long)INDEX(p);
                take(s, p);
                atomic_fetch_add_explicit(&s->owner_pops, 1, memory_order_relaxed);
            }
        }
    }
    /* Done pushing: keep popping until everything is accounted for. */
    unsigned idle = 0;
    while (!finished(s)) {
        void *p = rv__deque_pop(q);
        if (p) {
            if ((long)INDEX(p) <= last_popped)
                atomic_fetch_add(&s->order_errors, 1);
            last_popped = (long)INDEX(p);
            take(s, p);
        } else if (++idle % 64 == 0) {
            sched_yield();
        }
    }
    return NULL;
}

static void *thief_main(void *arg)
{
    struct thief_arg *ta = arg;
    struct stress *s = ta->s;
    rv__deque *own = s->thief_q[ta->index];
    uint32_t rng = 0x9E3779B9u * (ta->index + 1);
    unsigned idle = 0;
    while (!finished(s)) {
        /* Run a couple of our own, as a worker would. */
        for (int k = 0; k < 2; k++) {
            void *p = rv__deque_pop(own);
            if (!p)
                break;
            take(s, p);
        }
        /* Steal mostly from the owner, sometimes from a fellow thief. */
        rv__deque *victim = s->owner_q;
        bool cross = false;
        if (xorshift(&rng) % 4 == 0) {
            unsigned v = xorshift(&rng) % NTHIEVES;
            if (v != ta->index) {
                victim = s->thief_q[v];
                cross = true;
            }
        }
        uint32_t moved = 12345;
        void *p = rv__deque_steal_into(victim, own, &moved);
        if (p) {
            if (moved < 1 || moved > HALF + 1)
                atomic_fetch_add(&s->size_errors, 1);
            take(s, p);
            atomic_fetch_add_explicit(&s->steals, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&s->stolen, moved, memory_order_relaxed);
            if (cross)
                atomic_fetch_add_explicit(&s->cross_steals, 1, memory_order_relaxed);
            idle = 0;
        } else {
            if (moved != 0)
                atomic_fetch_add(&s->size_errors, 1);
            if (++idle % 64 == 0)
                sched_yield();
        }
    }
    /* Our own leftovers: nothing should remain once all are taken. */
    void *p;
    while ((p = rv__deque_pop(own)))
        take(s, p);
    return NULL;
}

static void run_stress(uint32_t owner_start, uint32_t thief_start)
{
    struct stress *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->n = STRESS_ITEMS;
    s->seen = calloc((size_t)s->n, sizeof *s->seen);
    assert_non_null(s->seen);
    s->owner_q = deque_new(owner_start);
    for (unsigned i = 0; i < NTHIEVES; i++)
        s->thief_q[i] = deque_new(thief_start + i * 7);

    pthread_t owner, thieves[NTHIEVES];
    struct thief_arg args[NTHIEVES];
    for (unsigned i = 0; i < NTHIEVES; i++) {
        args[i].s = s;
        args[i].index = i;
        assert_int_equal(pthread_create(&thieves[i], NULL, thief_main, &args[i]), 0);
    }
    assert_int_equal(pthread_create(&owner, NULL, owner_main, s), 0);

    /* Watchdog: a lost item would spin the threads forever. */
    int64_t deadline = now_ns() + STRESS_TIMEOUT_NS;
    bool timed_out = false;
    while (atomic_load(&s->taken) < s->n) {
        if (now_ns() > deadline) {
            timed_out = true;
            atomic_store(&s->stop, 1);
            break;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    pthread_join(owner, NULL);
    for (unsigned i = 0; i < NTHIEVES; i++)
        pthread_join(thieves[i], NULL);

    long missing = 0, multi = 0;
    for (long i = 0; i < s->n; i++) {
        uint32_t c = atomic_load(&s->seen[i]);
        if (c == 0)
            missing++;
        else if (c > 1)
            multi++;
    }
    print_message("deque stress (start %u/%u, Q=%u): %ld items, %ld overflows, %ld mid-steal "
                  "pushes, %ld owner pops, %ld steals (%ld cross) moving %ld items\n",
                  owner_start, thief_start, Q, s->n, atomic_load(&s->overflows),
                  atomic_load(&s->mid_steals), atomic_load(&s->owner_pops), atomic_load(&s->steals),
                  atomic_load(&s->cross_steals), atomic_load(&s->stolen));
    if (missing || multi || timed_out)
        print_message("deque stress: %ld missing, %ld taken more than once, timed out %d\n",
                      missing, multi, timed_out);
    assert_false(timed_out);
    assert_int_equal(atomic_load(&s->bad), 0);
    assert_int_equal(atomic_load(&s->dups), 0);
    assert_int_equal(missing, 0);
    assert_int_equal(multi, 0);
    assert_int_equal(atomic_load(&s->taken), s->n);
    assert_int_equal(atomic_load(&s->order_errors), 0);
    assert_int_equal(atomic_load(&s->size_errors), 0);
    /* The steal path really ran (the owner alone could have taken all). */
    assert_true(atomic_load(&s->steals) > 0);
    assert_int_equal(rv__deque_len(s->owner_q), 0);
    for (unsigned i = 0; i < NTHIEVES; i++) {
        assert_int_equal(rv__deque_len(s->thief_q[i]), 0);
        free(s->thief_q[i]);
    }
    free(s->owner_q);
    free(s->seen);
    free(s);
}

/* One owner, NTHIEVES thieves, STRESS_ITEMS unique items: each taken once. */
static void test_deque_stress(void **state)
{
    (void)state;
    run_stress(0, 1000);
}

/* The same with every index starting just below UINT32_MAX, so head, steal and
 * tail wrap in the middle of the run. */
static void test_deque_stress_wrap(void **state)
{
    (void)state;
    run_stress(UINT32_MAX - 1000, UINT32_MAX - 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deque_empty),
        cmocka_unit_test(test_deque_push_pop_fifo),
        cmocka_unit_test(test_deque_interleaved_wrap),
        cmocka_unit_test(test_deque_overflow_half),
        cmocka_unit_test(test_deque_full_mid_steal),
        cmocka_unit_test(test_deque_steal_half),
        cmocka_unit_test(test_deque_steal_refused),
        cmocka_unit_test(test_deque_steal_until_empty),
        cmocka_unit_test(test_deque_stress),
        cmocka_unit_test(test_deque_stress_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
