/* executor/stack.c - fiber stacks: slabs, guard pages, per-worker pools, and
 * the stack-overflow report.
 *
 * Memory: stacks are carved from slabs, one mmap of RV_STACKS_PER_SLAB stacks
 * (MAP_NORESERVE: only touched pages cost memory; MADV_NOHUGEPAGE: a stack
 * never gets a 2 MiB page behind its first byte). A task takes a stack when it
 * first runs, not when it is spawned, and gives it back to the pool of the
 * worker it ends on, with no system call on that path. Pools keep at most
 * RV_HOT_STACKS stacks resident: a worker that has been idle for a while
 * (worker.c, RV_TRIM_IDLE_MS) returns the pages of the excess to the kernel
 * with MADV_DONTNEED, so a burst of a million tasks does not pin its memory
 * after it ends.
 *
 * Guards: below each stack sits one guard page. Where the kernel has
 * MADV_GUARD_INSTALL (Linux 6.13+), the guard costs no memory and does not
 * split the slab's mapping, so a million stacks need only about
 * 1,000,000 / RV_STACKS_PER_SLAB mappings, well under vm.max_map_count (65530).
 * Elsewhere, at most RV_MAX_MPROTECT_GUARDS stacks get an mprotect guard (two
 * mappings each); the rest rely on the canary alone.
 *
 * Canary: a stack without a guard page gets a word at its bottom, checked when
 * its task suspends and when it ends; a trampled canary aborts with the task's
 * name.
 *
 * Overflow: each worker installs an alternate signal stack and a SIGSEGV
 * handler. A fault inside the running task's guard page prints
 * "ravel: stack overflow in task <id> '<name>'" and aborts; any other fault is
 * passed to the previous handler (or the default action).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "executor/alloc.h"
#include "executor/internal.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define RV_STACKS_PER_SLAB 64
#define RV_HOT_STACKS 256
#define RV_TRIM_CHUNK 64
#define RV_MAX_MPROTECT_GUARDS 8192
#define RV_CANARY 0x5241564c43414e59ULL /* "RAVLCANY" */

struct rv__slab {
    struct rv__slab *next;
    void *base;
    size_t bytes;
    size_t stack_size; /* usable bytes per stack */
    unsigned used;     /* stacks carved so far */
    rv__stack descs[RV_STACKS_PER_SLAB];
};

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

int rv__stacks_init(rv_runtime *rt)
{
    rt->slabs = NULL;
    rt->mprotect_guards = 0;
    /* Probe once whether guard installation works here. */
    size_t ps = page_size();
    void *p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    rt->guard_mode = madvise(p, ps, MADV_GUARD_INSTALL) == 0 ? RV_GUARD_MADVISE : RV_GUARD_MPROTECT;
    munmap(p, 2 * ps);
    return pthread_mutex_init(&rt->slab_lock, NULL) ? -ENOMEM : 0;
}

void rv__stacks_fini(rv_runtime *rt)
{
    struct rv__slab *s = rt->slabs;
    while (s) {
        struct rv__slab *next = s->next;
        munmap(s->base, s->bytes);
        rv__free(s, sizeof *s);
        s = next;
    }
    rt->slabs = NULL;
    pthread_mutex_destroy(&rt->slab_lock);
}

static struct rv__slab *slab_new(rv_runtime *rt, size_t stack_size)
{
    size_t ps = page_size();
    size_t stride = stack_size + ps;
    struct rv__slab *s = rv__alloc(sizeof *s);
    if (!s)
        return NULL;
    s->bytes = stride * RV_STACKS_PER_SLAB;
    s->base = mmap(NULL, s->bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (s->base == MAP_FAILED) {
        rv__free(s, sizeof *s);
        return NULL;
    }
    madvise(s->base, s->bytes, MADV_NOHUGEPAGE);
    s->stack_size = stack_size;
    s->used = 0;
    pthread_mutex_lock(&rt->slab_lock);
    s->next = rt->slabs;
    rt->slabs = s;
    pthread_mutex_unlock(&rt->slab_lock);
    return s;
}

/* Carve the next stack of the worker's current slab, installing its guard. */
static rv__stack *carve(rv__worker *w, size_t size)
{
    rv_runtime *rt = w->rt;
    size_t ps = page_size();
    pthread_mutex_lock(&rt->slab_lock);
    struct rv__slab *s = rt->slabs;
    while (s && (s->stack_size != size || s->used == RV_STACKS_PER_SLAB))
        s = s->next;
    rv__stack *d = NULL;
    if (s) {
        unsigned i = s->used++;
        d = &s->descs[i];
        char *guard = (char *)s->base + (size + ps) * i;
        d->lo = guard + ps;
        d->size = size;
        d->guard = RV_GUARD_NONE;
        if (rt->guard_mode == RV_GUARD_MADVISE && madvise(guard, ps, MADV_GUARD_INSTALL) == 0)
            d->guard = RV_GUARD_MADVISE;
        else if (rt->mprotect_guards < RV_MAX_MPROTECT_GUARDS &&
                 mprotect(guard, ps, PROT_NONE) == 0) {
            rt->mprotect_guards++;
            d->guard = RV_GUARD_MPROTECT;
        }
    }
    pthread_mutex_unlock(&rt->slab_lock);
    return d;
}

/* Only unguarded stacks carry a canary: writing one would make the bottom
 * page resident, a page per parked task that a guard page makes unnecessary. */
static void set_canary(rv__stack *s)
{
    if (s->guard == RV_GUARD_NONE)
        *(uint64_t *)s->lo = RV_CANARY;
}

static rv__stack *take_from(rv__stack **pp, size_t size)
{
    /* Pools hold stacks of the default size almost always; a custom size is
     * searched for (first fit of equal size). */
    for (rv__stack *s = *pp; s; pp = &s->next, s = s->next) {
        if (s->size == size) {
            *pp = s->next;
            return s;
        }
    }
    return NULL;
}

rv__stack *rv__stack_get(rv__worker *w, size_t size)
{
    rv__stack *s = take_from(&w->free_stacks, size);
    if (s) {
        w->free_hot--;
    } else if (!(s = take_from(&w->cold_stacks, size))) {
        s = carve(w, size);
        if (!s) {
            if (!slab_new(w->rt, size))
                return NULL;
            s = carve(w, size);
            if (!s)
                return NULL;
        }
    }
    set_canary(s);
    return s;
}

void rv__stack_put(rv__worker *w, rv__stack *s)
{
    s->next = w->free_stacks;
    w->free_stacks = s;
    w->free_hot++;
}

bool rv__stack_has_excess(const rv__worker *w) { return w->free_hot > RV_HOT_STACKS; }

bool rv__stack_trim(rv__worker *w)
{
    size_t ps = page_size();
    for (int i = 0; i < RV_TRIM_CHUNK && w->free_hot > RV_HOT_STACKS; i++) {
        rv__stack *s = w->free_stacks;
        w->free_stacks = s->next;
        w->free_hot--;
        /* Keep the top page, where the next task starts. */
        if (s->size > ps)
            madvise(s->lo, s->size - ps, MADV_DONTNEED);
        s->next = w->cold_stacks;
        w->cold_stacks = s;
    }
    return w->free_hot > RV_HOT_STACKS;
}

bool rv__stack_canary_ok(const rv__stack *s)
{
    return s->guard != RV_GUARD_NONE || *(const uint64_t *)s->lo == RV_CANARY;
}

/* ------------------------------------------------------------------------- */
/* Overflow report                                                            */

#if !defined(RV_ASAN) && !defined(RV_TSAN)
static struct sigaction previous_segv;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;

/* Async-signal-safe decimal formatting into buf; returns the length. */
static size_t format_u64(char *buf, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static void write_all(const char *s, size_t n)
{
    while (n) {
        ssize_t k = write(STDERR_FILENO, s, n);
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

static void segv_handler(int sig, siginfo_t *info, void *ctx)
{
    rv__worker *w = rv__tls_worker();
    rv_task *t = w ? w->current : NULL;
    if (t && t->stack) {
        char *addr = info->si_addr;
        char *lo = t->stack->lo;
        size_t ps = page_size();
        /* The guard page, plus the bottom page: a large frame can skip past. */
        if (addr >= lo - ps && addr < lo + ps) {
            char msg[256];
            size_t n = 0;
            const char *a = "ravel: stack overflow in task ";
            memcpy(msg + n, a, strlen(a));
            n += strlen(a);
            n += format_u64(msg + n, t->id);
            msg[n++] = ' ';
            msg[n++] = '\'';
            const char *name = rv__atomic_load_acquire(&t->name);
            size_t len = name ? strlen(name) : 0;
            if (len > 100)
                len = 100;
            if (name)
                memcpy(msg + n, name, len);
            n += len;
            const char *b = "' (stack of ";
            memcpy(msg + n, b, strlen(b));
            n += strlen(b);
            n += format_u64(msg + n, t->stack->size);
            const char *c = " bytes); aborting\n";
            memcpy(msg + n, c, strlen(c));
            n += strlen(c);
            write_all(msg, n);
            signal(SIGABRT, SIG_DFL);
            abort();
        }
    }
    /* Not ours: hand over to whoever was there before, or the default. */
    if (previous_segv.sa_flags & SA_SIGINFO) {
        if (previous_segv.sa_sigaction) {
            previous_segv.sa_sigaction(sig, info, ctx);
            return;
        }
    } else if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN) {
        previous_segv.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL); /* returning re-executes the fault: default action */
}

static void install_segv(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
}
#endif

int rv__overflow_handler_install(rv__worker *w)
{
#if defined(RV_ASAN) || defined(RV_TSAN)
    /* The sanitizers report overflows themselves and own SIGSEGV. */
    (void)w;
    return 0;
#else
    size_t size = 64 * 1024;
    long min = sysconf(_SC_SIGSTKSZ);
    if (min > 0 && (size_t)min * 4 > size)
        size = (size_t)min * 4;
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) < 0) {
        int e = -errno;
        munmap(mem, size);
        return e;
    }
    w->alt_stack = mem;
    pthread_once(&segv_once, install_segv);
    return 0;
#endif
}

void rv__overflow_handler_remove(rv__worker *w)
{
    if (!w->alt_stack)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    size_t size = 64 * 1024;
    long min = sysconf(_SC_SIGSTKSZ);
    if (min > 0 && (size_t)min * 4 > size)
        size = (size_t)min * 4;
    munmap(w->alt_stack, size);
    w->alt_stack = NULL;
}
