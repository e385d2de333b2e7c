/* test-mpsc.c - the intrusive multi-producer queue (primitives/mpsc.h).
 *
 * Single-threaded semantics (FIFO, push_chain, the claim flag, len), then
 * concurrent runs: N producer threads push M nodes each (singly or in chains)
 * while one consumer, or several consumers taking turns through the claim
 * flag, pop. Each node carries its producer and sequence number: per-producer
 * FIFO order and exactly-once delivery are checked, and len returns to 0.
 *
 * cmocka is not thread-safe: threads record problems in atomics; only the
 * test thread asserts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primitives/mpsc.h"

#include "test-scale.h"

#define NPRODUCERS 4
#define PER_PRODUCER (500000L / SCALE_DIV)
#define NCONSUMERS 3
#define TIMEOUT_NS (90LL * 1000000000LL)

/* Intrusive: the queue node comes first, so a node pointer is an item pointer. */
typedef struct item {
    rv__mpsc_node node;
    uint32_t producer;
    uint32_t seq;
    _Atomic uint32_t popped; /* times delivered */
} item;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static rv__mpsc *queue_new(void)
{
    rv__mpsc *q = aligned_alloc(128, (sizeof(rv__mpsc) + 127) & ~(size_t)127);
    assert_non_null(q);
    rv__mpsc_init(q);
    return q;
}

/* ------------------------------------------------------------------------- */
/* Single-threaded semantics                                                  */

/* An empty queue pops NULL with len 0; pushes come out FIFO; len counts. */
static void test_mpsc_fifo_single(void **state)
{
    (void)state;
    rv__mpsc *q = queue_new();
    item items[10];
    memset(items, 0, sizeof items);
    assert_null(rv__mpsc_pop(q));
    assert_int_equal(rv__mpsc_len(q), 0);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 10; i++) {
            items[i].seq = (uint32_t)i;
            rv__mpsc_push(q, &items[i].node);
            assert_int_equal(rv__mpsc_len(q), i + 1);
        }
        for (int i = 0; i < 10; i++) {
            item *it = (item *)rv__mpsc_pop(q);
            assert_non_null(it);
            assert_ptr_equal(it, &items[i]);
            assert_int_equal(rv__mpsc_len(q), 9 - i);
        }
        assert_null(rv__mpsc_pop(q));
        assert_int_equal(rv__mpsc_len(q), 0);
    }
    /* One at a time: push, pop (the last node is handed out via the stub). */
    for (int i = 0; i < 5; i++) {
        rv__mpsc_push(q, &items[i].node);
        assert_ptr_equal(rv__mpsc_pop(q), &items[i].node);
        assert_null(rv__mpsc_pop(q));
        assert_int_equal(rv__mpsc_len(q), 0);
    }
    free(q);
}

/* rv__mpsc_push_chain: "Push a chain first..last (already linked through
 * next) of count nodes with one exchange" - interleaved with single pushes. */
static void test_mpsc_push_chain_single(void **state)
{
    (void)state;
    rv__mpsc *q = queue_new();
    item items[12];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 12; i++)
        items[i].seq = (uint32_t)i;
    rv__mpsc_push(q, &items[0].node);
    for (int i = 1; i < 5; i++)
        atomic_store(&items[i].node.next, &items[i + 1].node);
    rv__mpsc_push_chain(q, &items[1].node, &items[5].node, 5);
    assert_int_equal(rv__mpsc_len(q), 6);
    rv__mpsc_push(q, &items[6].node);
    /* A chain of one. */
    rv__mpsc_push_chain(q, &items[7].node, &items[7].node, 1);
    for (int i = 8; i < 11; i++)
        atomic_store(&items[i].node.next, &items[i + 1].node);
    rv__mpsc_push_chain(q, &items[8].node, &items[11].node, 4);
    assert_int_equal(rv__mpsc_len(q), 12);
    for (int i = 0; i < 12; i++) {
        rv__mpsc_node *n = rv__mpsc_pop(q);
        assert_ptr_equal(n, &items[i].node);
    }
    assert_null(rv__mpsc_pop(q));
    assert_int_equal(rv__mpsc_len(q), 0);
    free(q);
}

/* rv__mpsc_try_claim: "Become the consumer, without waiting. Returns 1 on
 * success" - and 0 while someone else holds the claim. */
static void test_mpsc_claim_single(void **state)
{
    (void)state;
    rv__mpsc *q = queue_new();
    assert_int_equal(rv__mpsc_try_claim(q), 1);
    assert_int_equal(rv__mpsc_try_claim(q), 0);
    assert_int_equal(rv__mpsc_try_claim(q), 0);
    rv__mpsc_unclaim(q);
    assert_int_equal(rv__mpsc_try_claim(q), 1);
    rv__mpsc_unclaim(q);
    free(q);
}

/* ------------------------------------------------------------------------- */
/* Concurrent runs                                                            */

struct run {
    rv__mpsc *q;
    item *items[NPRODUCERS];
    long per_producer;
    bool chains;
    _Atomic long popped;
    _Atomic long order_errors, dup_errors, bad;
    _Atomic long busy_pops; /* NULL while len > 0: a producer was mid-push */
    _Atomic long claims, claim_losses;
    _Atomic int stop;
    _Atomic int producers_done;
    /* Per producer: the last sequence consumed. Touched only by the holder of
     * the consumer role (one thread, or whoever holds the claim). */
    long last_seq[NPRODUCERS];
    long per_consumer[NCONSUMERS];
};

struct producer_arg {
    struct run *r;
    uint32_t id;
};

static uint32_t xorshift(uint32_t *x)
{
    uint32_t v = *x;
    v ^= v << 13;
    v ^= v >> 17;
    v ^= v << 5;
    return *x = v;
}

static void *producer_main(void *arg)
{
    struct producer_arg *pa = arg;
    struct run *r = pa->r;
    item *its = r->items[pa->id];
    uint32_t rng = 0xC0FFEEu + pa->id * 977u;
    long i = 0;
    while (i < r->per_producer && !atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        long k = 1;
        if (r->chains)
            k = 1 + (long)(xorshift(&rng) % 16);
        if (i + k > r->per_producer)
            k = r->per_producer - i;
        if (k == 1 && (!r->chains || xorshift(&rng) % 2)) {
            rv__mpsc_push(r->q, &its[i].node);
        } else {
            for (long j = i; j < i + k - 1; j++)
                atomic_store_explicit(&its[j].node.next, &its[j + 1].node, memory_order_relaxed);
            rv__mpsc_push_chain(r->q, &its[i].node, &its[i + k - 1].node, k);
        }
        i += k;
        if (xorshift(&rng) % 1024 == 0)
            sched_yield();
    }
    atomic_fetch_add(&r->producers_done, 1);
    return NULL;
}

/* Consume one node: check its identity, order and uniqueness. The caller is
 * the (only) consumer at this moment. */
static void consume(struct run *r, rv__mpsc_node *n)
{
    item *it = (item *)n;
    if (it->producer >= NPRODUCERS || it->seq >= (uint32_t)r->per_producer ||
        it != &r->items[it->producer][it->seq]) {
        atomic_fetch_add(&r->bad, 1);
        atomic_fetch_add(&r->popped, 1);
        return;
    }
    if (atomic_fetch_add_explicit(&it->popped, 1, memory_order_relaxed) != 0)
        atomic_fetch_add(&r->dup_errors, 1);
    if ((long)it->seq != r->last_seq[it->producer] + 1)
        atomic_fetch_add(&r->order_errors, 1);
    r->last_seq[it->producer] = it->seq;
    atomic_fetch_add_explicit(&r->popped, 1, memory_order_relaxed);
}

static long total(struct run *r) { return r->per_producer * NPRODUCERS; }

static bool run_finished(struct run *r)
{
    return atomic_load_explicit(&r->popped, memory_order_relaxed) >= total(r) ||
           atomic_load_explicit(&r->stop, memory_order_relaxed);
}

static void *single_consumer_main(void *arg)
{
    struct run *r = arg;
    unsigned idle = 0;
    while (!run_finished(r)) {
        rv__mpsc_node *n = rv__mpsc_pop(r->q);
        if (n) {
            consume(r, n);
            idle = 0;
            continue;
        }
        if (rv__mpsc_len(r->q) > 0)
            atomic_fetch_add_explicit(&r->busy_pops, 1, memory_order_relaxed);
        if (++idle % 64 == 0)
            sched_yield();
    }
    return NULL;
}

struct consumer_arg {
    struct run *r;
    unsigned id;
};

/* Many would-be consumers take turns through the claim, as workers do with
 * the inject queue: claim, pop a few, unclaim; losers look elsewhere. */
static void *claiming_consumer_main(void *arg)
{
    struct consumer_arg *ca = arg;
    struct run *r = ca->r;
    uint32_t rng = 0xABCDEFu * (ca->id + 3);
    unsigned idle = 0;
    long mine = 0;
    while (!run_finished(r)) {
        if (rv__mpsc_len(r->q) <= 0 || !rv__mpsc_try_claim(r->q)) {
            atomic_fetch_add_explicit(&r->claim_losses, 1, memory_order_relaxed);
            if (++idle % 32 == 0)
                sched_yield();
            continue;
        }
        atomic_fetch_add_explicit(&r->claims, 1, memory_order_relaxed);
        unsigned want = 1 + xorshift(&rng) % 64;
        for (unsigned k = 0; k < want; k++) {
            rv__mpsc_node *n = rv__mpsc_pop(r->q);
            if (!n)
                break;
            consume(r, n);
            mine++;
        }
        rv__mpsc_unclaim(r->q);
        idle = 0;
        if (xorshift(&rng) % 8 == 0)
            sched_yield(); /* let another consumer win the claim */
    }
    r->per_consumer[ca->id] = mine;
    return NULL;
}

static struct run *run_new(long per_producer, bool chains)
{
    struct run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->q = queue_new();
    r->per_producer = per_producer;
    r->chains = chains;
    for (uint32_t p = 0; p < NPRODUCERS; p++) {
        r->items[p] = calloc((size_t)per_producer, sizeof(item));
        assert_non_null(r->items[p]);
        for (long i = 0; i < per_producer; i++) {
            r->items[p][i].producer = p;
            r->items[p][i].seq = (uint32_t)i;
        }
        r->last_seq[p] = -1;
    }
    return r;
}

static void run_free(struct run *r)
{
    for (uint32_t p = 0; p < NPRODUCERS; p++)
        free(r->items[p]);
    free(r->q);
    free(r);
}

/* Start producers and consumers, wait for all nodes (with a watchdog), check. */
static void run_check(struct run *r, unsigned nconsumers)
{
    pthread_t prod[NPRODUCERS], cons[NCONSUMERS];
    struct producer_arg pa[NPRODUCERS];
    struct consumer_arg ca[NCONSUMERS];
    for (unsigned c = 0; c < nconsumers; c++) {
        ca[c].r = r;
        ca[c].id = c;
        if (nconsumers == 1)
            assert_int_equal(pthread_create(&cons[c], NULL, single_consumer_main, r), 0);
        else
            assert_int_equal(pthread_create(&cons[c], NULL, claiming_consumer_main, &ca[c]), 0);
    }
    for (uint32_t p = 0; p < NPRODUCERS; p++) {
        pa[p].r = r;
        pa[p].id = p;
        assert_int_equal(pthread_create(&prod[p], NULL, producer_main, &pa[p]), 0);
    }
    int64_t deadline = now_ns() + TIMEOUT_NS;
    bool timed_out = false;
    while (atomic_load(&r->popped) < total(r)) {
        if (now_ns() > deadline) {
            timed_out = true;
            atomic_store(&r->stop, 1);
            break;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    for (uint32_t p = 0; p < NPRODUCERS; p++)
        pthread_join(prod[p], NULL);
    for (unsigned c = 0; c < nconsumers; c++)
        pthread_join(cons[c], NULL);

    long missing = 0, multi = 0;
    for (uint32_t p = 0; p < NPRODUCERS; p++)
        for (long i = 0; i < r->per_producer; i++) {
            uint32_t c = atomic_load(&r->items[p][i].popped);
            missing += c == 0;
            multi += c > 1;
        }
    print_message("mpsc: %d producers x %ld (%s), %u consumer(s): %ld busy pops, %ld claims\n",
                  NPRODUCERS, r->per_producer, r->chains ? "chains" : "single", nconsumers,
                  atomic_load(&r->busy_pops), atomic_load(&r->claims));
    if (timed_out || missing || multi)
        print_message("mpsc: timed out %d, %ld missing, %ld duplicated, len %lld\n", timed_out,
                      missing, multi, (long long)rv__mpsc_len(r->q));
    assert_false(timed_out);
    assert_int_equal(atomic_load(&r->bad), 0);
    assert_int_equal(atomic_load(&r->dup_errors), 0);
    assert_int_equal(missing, 0);
    assert_int_equal(multi, 0);
    assert_int_equal(atomic_load(&r->order_errors), 0);
    assert_int_equal(atomic_load(&r->popped), total(r));
    for (uint32_t p = 0; p < NPRODUCERS; p++)
        assert_int_equal(r->last_seq[p], r->per_producer - 1);
    /* Everything consumed: len is back to exactly 0 and the queue is empty. */
    assert_int_equal(rv__mpsc_len(r->q), 0);
    assert_null(rv__mpsc_pop(r->q));
    if (nconsumers > 1) {
        long sum = 0;
        for (unsigned c = 0; c < nconsumers; c++)
            sum += r->per_consumer[c];
        assert_int_equal(sum, total(r));
        /* The claim flag is free at the end. */
        assert_int_equal(rv__mpsc_try_claim(r->q), 1);
        rv__mpsc_unclaim(r->q);
    }
    /* The queue still works after the run. */
    item extra;
    memset(&extra, 0, sizeof extra);
    rv__mpsc_push(r->q, &extra.node);
    assert_int_equal(rv__mpsc_len(r->q), 1);
    assert_ptr_equal(rv__mpsc_pop(r->q), &extra.node);
    assert_int_equal(rv__mpsc_len(r->q), 0);
}

/* N producers, one consumer, single pushes. */
static void test_mpsc_producers_single_consumer(void **state)
{
    (void)state;
    struct run *r = run_new(PER_PRODUCER, false);
    run_check(r, 1);
    run_free(r);
}

/* N producers mixing push_chain (1..16 nodes) and push, one consumer. */
static void test_mpsc_push_chain_concurrent(void **state)
{
    (void)state;
    struct run *r = run_new(PER_PRODUCER, true);
    run_check(r, 1);
    run_free(r);
}

/* N producers, NCONSUMERS consumers taking turns via try_claim/unclaim. */
static void test_mpsc_claiming_consumers(void **state)
{
    (void)state;
    struct run *r = run_new(PER_PRODUCER, false);
    run_check(r, NCONSUMERS);
    run_free(r);
}

/* The same with chains. */
static void test_mpsc_claiming_consumers_chains(void **state)
{
    (void)state;
    struct run *r = run_new(PER_PRODUCER, true);
    run_check(r, NCONSUMERS);
    run_free(r);
}

/* Claim contention alone: threads hammer try_claim/unclaim and count how many
 * hold the claim at once (must never exceed 1). */
struct claim_arg {
    rv__mpsc *q;
    _Atomic int holders;
    _Atomic long overlap, wins;
    long iterations;
};

static void *claim_hammer(void *arg)
{
    struct claim_arg *c = arg;
    for (long i = 0; i < c->iterations; i++) {
        if (!rv__mpsc_try_claim(c->q))
            continue;
        if (atomic_fetch_add(&c->holders, 1) != 0)
            atomic_fetch_add(&c->overlap, 1);
        atomic_fetch_add_explicit(&c->wins, 1, memory_order_relaxed);
        atomic_fetch_sub(&c->holders, 1);
        rv__mpsc_unclaim(c->q);
    }
    return NULL;
}

static void test_mpsc_claim_exclusive(void **state)
{
    (void)state;
    struct claim_arg c;
    memset(&c, 0, sizeof c);
    c.q = queue_new();
    c.iterations = 1000000 / SCALE_DIV;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, claim_hammer, &c), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&c.overlap), 0);
    assert_true(atomic_load(&c.wins) > 0);
    assert_int_equal(rv__mpsc_try_claim(c.q), 1);
    rv__mpsc_unclaim(c.q);
    free(c.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpsc_fifo_single),
        cmocka_unit_test(test_mpsc_push_chain_single),
        cmocka_unit_test(test_mpsc_claim_single),
        cmocka_unit_test(test_mpsc_producers_single_consumer),
        cmocka_unit_test(test_mpsc_push_chain_concurrent),
        cmocka_unit_test(test_mpsc_claiming_consumers),
        cmocka_unit_test(test_mpsc_claiming_consumers_chains),
        cmocka_unit_test(test_mpsc_claim_exclusive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
