/* tests/cross/fiber-check.c - a self-checking program for architectures this
 * machine cannot run natively (run-aarch64.sh runs it under qemu-user). No
 * cmocka: it prints each check and exits non-zero if any failed.
 *
 * Checks: spawn/await results; tasks resuming on other workers keep their
 * callee-saved registers, floating-point values and errno; a million-ish
 * spawns are counted exactly; fork-join fib; sleep never returns early. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <ravel.h>

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* errno and pthread_self() read out of line: glibc declares their accessors
 * const, so within one function GCC reuses the value from before a
 * suspension, which after a migration belongs to the previous thread (see
 * "Thread-locals and migration" in docs/design.md). */
static __attribute__((noinline)) int *errno_at(void)
{
    __asm__ __volatile__("" ::: "memory");
    return &errno;
}

static __attribute__((noinline)) pthread_t thread_now(void)
{
    __asm__ __volatile__("" ::: "memory");
    return pthread_self();
}

/* Keeps many values live in registers across suspensions. */
static int regs_body(void *arg, void **res)
{
    uint64_t a = (uint64_t)(uintptr_t)arg, b = a * 3 + 1, c = a ^ 0x5555, d = a + 77;
    double x = (double)a * 0.5, y = x + 1.25;
    pthread_t self = thread_now();
    int migrations = 0;
    for (int i = 0; i < 300; i++) {
        *errno_at() = (int)(a % 1000) + i;
        if (rv_yield() != 0)
            return -EIO;
        if (*errno_at() != (int)(a % 1000) + i)
            return -EBADMSG;
        if (!pthread_equal(self, thread_now())) {
            migrations++;
            self = thread_now();
        }
        a += 1;
        b += 3;
        c ^= (uint64_t)i;
        d += a;
        x += 0.5;
        y = x + 1.25;
    }
    uint64_t a0 = (uint64_t)(uintptr_t)arg;
    uint64_t d_expect = a0 + 77;
    for (int i = 0; i < 300; i++)
        d_expect += a0 + (uint64_t)i + 1;
    uint64_t c_expect = a0 ^ 0x5555;
    for (int i = 0; i < 300; i++)
        c_expect ^= (uint64_t)i;
    if (a != a0 + 300 || b != a0 * 3 + 1 + 900 || c != c_expect || d != d_expect)
        return -EFAULT;
    if (x != (double)a0 * 0.5 + 150.0 || y != x + 1.25)
        return -EDOM;
    *res = (void *)(intptr_t)migrations;
    return 0;
}

static atomic_long counted;
static long spawn_n;
static rv_future *all_done;

static int leaf(void *arg, void **res)
{
    if (atomic_fetch_add(&counted, 1) + 1 == spawn_n)
        rv_future_set_result(all_done, NULL);
    return 0;
}

static int spawner(void *arg, void **res)
{
    for (long i = 0; i < spawn_n; i++)
        if (rv_spawn(NULL, leaf, NULL, NULL, NULL) != 0)
            return -EIO;
    return rv_await(all_done, NULL);
}

static int fib_task(void *arg, void **res)
{
    long n = (long)(intptr_t)arg;
    if (n < 2) {
        *res = (void *)(intptr_t)n;
        return 0;
    }
    rv_task *child;
    if (rv_spawn(NULL, fib_task, (void *)(intptr_t)(n - 1), NULL, &child) != 0)
        return -EIO;
    void *x, *y;
    fib_task((void *)(intptr_t)(n - 2), &x);
    int rc = rv_await(rv_task_future(child), &y);
    rv_task_release(child);
    *res = (void *)((intptr_t)x + (intptr_t)y);
    return rc;
}

static int sleeper(void *arg, void **res)
{
    int64_t t0 = rv_now();
    int rc = rv_sleep(5 * 1000 * 1000);
    *res = (void *)(intptr_t)(rv_now() - t0 >= 5 * 1000 * 1000);
    return rc;
}

int main(void)
{
    rv_config cfg;
    rv_config_init(&cfg);
    cfg.workers = 2;
    rv_runtime *rt;
    CHECK(rv_runtime_new(&rt, &cfg) == 0);

    enum { NREGS = 16 };
    rv_task *t[NREGS];
    for (int i = 0; i < NREGS; i++)
        CHECK(rv_spawn(rt, regs_body, (void *)(intptr_t)(1000 + i * 7), NULL, &t[i]) == 0);
    long migrations = 0;
    for (int i = 0; i < NREGS; i++) {
        void *r = NULL;
        int rc = rv_future_wait(rv_task_future(t[i]), 60LL * 1000000000, &r);
        if (rc != 0)
            fprintf(stderr, "task %d: %s\n", i, rv_err_name(rc));
        CHECK(rc == 0);
        migrations += (intptr_t)r;
        rv_task_release(t[i]);
    }
    printf("registers, FP and errno across %d x 300 yields: ok (%ld resumptions on another "
           "thread)\n",
           NREGS, migrations);

    spawn_n = 200000;
    CHECK(rv_future_new(rt, &all_done) == 0);
    rv_task *s;
    CHECK(rv_spawn(rt, spawner, NULL, NULL, &s) == 0);
    CHECK(rv_future_wait(rv_task_future(s), 120LL * 1000000000, NULL) == 0);
    CHECK(atomic_load(&counted) == spawn_n);
    rv_task_release(s);
    rv_future_release(all_done);
    printf("%ld spawns counted: %ld\n", spawn_n, atomic_load(&counted));

    rv_task *f;
    void *fv = NULL;
    CHECK(rv_spawn(rt, fib_task, (void *)(intptr_t)20, NULL, &f) == 0);
    CHECK(rv_future_wait(rv_task_future(f), 120LL * 1000000000, &fv) == 0);
    CHECK((intptr_t)fv == 6765);
    rv_task_release(f);
    printf("fib(20) = %ld\n", (long)(intptr_t)fv);

    rv_task *z;
    void *zv = NULL;
    CHECK(rv_spawn(rt, sleeper, NULL, NULL, &z) == 0);
    CHECK(rv_future_wait(rv_task_future(z), 60LL * 1000000000, &zv) == 0);
    CHECK(zv == (void *)1);
    rv_task_release(z);

    CHECK(rv_runtime_free(rt) == 0);
    printf("fiber-check: %s (%d failed checks)\n", failures ? "FAILED" : "all checks passed",
           failures);
    return failures ? 1 : 0;
}
