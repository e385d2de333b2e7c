/* executor/alloc.c - see alloc.h. */
#include "executor/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "primitives/atomics.h"

#ifdef RV_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#ifdef RV_FAULT_INJECTION
/* Countdown to the failing allocation; -1 when off. Relaxed: a test arms it
 * from its own thread before starting the scenario, and the thread start or
 * queue hand-off that follows orders it for the workers. */
static _Atomic long fault_countdown = -1;
static _Atomic long alloc_calls;
/* Allocations are counted only in a process that has used the hook, so that
 * the other test binaries (and benchmarks of a test build) do not bounce a
 * shared counter between cores on every allocation. */
static _Atomic int hook_used;

long rv__fault_alloc_after(long n)
{
    rv__atomic_store_relaxed(&hook_used, 1);
    rv__atomic_store_relaxed(&fault_countdown, n < 0 ? -1 : n);
    return rv__atomic_exchange_acq_rel(&alloc_calls, 0);
}

static int should_fail(void)
{
    if (!rv__atomic_load_relaxed(&hook_used))
        return 0;
    rv__atomic_fetch_add_relaxed(&alloc_calls, 1);
    long c = rv__atomic_load_relaxed(&fault_countdown);
    while (c >= 0) {
        if (rv__atomic_cas_relaxed(&fault_countdown, &c, c - 1))
            return c == 0;
    }
    return 0;
}
#else
static inline int should_fail(void) { return 0; }
#endif

void *rv__alloc(size_t size)
{
    if (should_fail())
        return NULL;
#ifdef RV_WITH_JEMALLOC
    return mallocx(size ? size : 1, 0);
#else
    return malloc(size ? size : 1);
#endif
}

void *rv__calloc(size_t size)
{
    if (should_fail())
        return NULL;
#ifdef RV_WITH_JEMALLOC
    return mallocx(size ? size : 1, MALLOCX_ZERO);
#else
    return calloc(1, size ? size : 1);
#endif
}

void rv__free(void *p, size_t size)
{
    if (!p)
        return;
#ifdef RV_WITH_JEMALLOC
    sdallocx(p, size ? size : 1, 0);
#else
    (void)size;
    free(p);
#endif
}

void *rv__calloc_aligned(size_t size, size_t align)
{
    if (should_fail())
        return NULL;
    size = (size + align - 1) & ~(align - 1);
#ifdef RV_WITH_JEMALLOC
    return mallocx(size ? size : align, MALLOCX_ALIGN(align) | MALLOCX_ZERO);
#else
    void *p = aligned_alloc(align, size ? size : align);
    if (p)
        memset(p, 0, size);
    return p;
#endif
}

void rv__free_aligned(void *p, size_t size, size_t align)
{
    if (!p)
        return;
    size = (size + align - 1) & ~(align - 1);
#ifdef RV_WITH_JEMALLOC
    sdallocx(p, size ? size : align, MALLOCX_ALIGN(align));
#else
    (void)size;
    free(p);
#endif
}

char *rv__strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = rv__alloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void rv__free_str(char *s)
{
    if (s)
        rv__free(s, strlen(s) + 1);
}
