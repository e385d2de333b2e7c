/* executor/objcache.c - per-worker caches of fixed-size runtime objects.
 *
 * Tasks, futures and task timers are created and destroyed at a high rate,
 * and often on different workers (a task spawned here ends there; a future
 * made by one task is freed by the other). Through the allocator every such
 * pair is a cross-thread free. Instead, a freed object goes to a cache of the
 * worker that frees it, and an allocation takes from the cache of the worker
 * that allocates. A cache is an array of pointers; when it is full, its older
 * half moves to the runtime's depot for that kind as one magazine (an array
 * block in an MPSC queue that any worker may claim), where a worker whose
 * cache ran dry refills. Past RV_DEPOT_MAX magazines objects go back to the
 * allocator. Plain threads always use the allocator.
 *
 * Arrays, not lists threaded through the objects: moving 512 objects between
 * workers then copies 512 pointers instead of touching 512 objects that the
 * other core wrote last (one cache miss each). Under ASan caching is off, so
 * a use after free stays detectable.
 */
#include <string.h>

#include "executor/alloc.h"
#include "executor/internal.h"

#ifdef RV_ASAN
#define RV_CACHE_ON 0
#else
#define RV_CACHE_ON 1
#endif

/* A batch of spare objects on its way between workers, as one array. */
typedef struct rv__magazine {
    rv__mpsc_node node;
    unsigned count;
    void *items[RV_MAGAZINE];
} rv__magazine;

static const size_t object_size[RV_OBJ_KINDS] = {
    [RV_OBJ_TASK] = sizeof(rv_task),
    [RV_OBJ_FUTURE] = sizeof(rv_future),
    [RV_OBJ_TASK_TIMER] = RV_TASK_TIMER_SIZE,
};

static void cache_refill(rv__obj_cache *c, rv__mpsc *depot)
{
    if (rv__mpsc_len(depot) <= 0 || !rv__mpsc_try_claim(depot))
        return;
    rv__magazine *m = (rv__magazine *)rv__mpsc_pop(depot);
    rv__mpsc_unclaim(depot);
    if (!m)
        return;
    memcpy(c->items + c->count, m->items, m->count * sizeof(void *));
    c->count += m->count;
    rv__free(m, sizeof *m);
}

void *rv__obj_alloc(int kind, size_t size)
{
    rv__worker *w = RV_CACHE_ON ? rv__tls_worker() : NULL;
    if (w) {
        rv__obj_cache *c = &w->caches[kind];
        if (!c->count)
            cache_refill(c, &w->rt->depots[kind]);
        if (c->count)
            return c->items[--c->count];
    }
    return rv__alloc(size);
}

void rv__obj_free(int kind, void *p, size_t size)
{
    rv__worker *w = RV_CACHE_ON ? rv__tls_worker() : NULL;
    if (!w || rv__atomic_load_relaxed(&w->rt->closing)) {
        rv__free(p, size);
        return;
    }
    rv__obj_cache *c = &w->caches[kind];
    if (c->count == RV_CACHE_SLOTS) {
        /* Full: the older half goes to the depot as one magazine, or back
         * to the allocator when the depot is full or no magazine can be had. */
        rv__mpsc *depot = &w->rt->depots[kind];
        rv__magazine *m = rv__mpsc_len(depot) < RV_DEPOT_MAX ? rv__alloc(sizeof *m) : NULL;
        if (m) {
            m->count = RV_MAGAZINE;
            memcpy(m->items, c->items, RV_MAGAZINE * sizeof(void *));
            rv__mpsc_push(depot, &m->node);
        } else {
            for (unsigned i = 0; i < RV_MAGAZINE; i++)
                rv__free(c->items[i], size);
        }
        memmove(c->items, c->items + RV_MAGAZINE, (c->count - RV_MAGAZINE) * sizeof(void *));
        c->count -= RV_MAGAZINE;
    }
    c->items[c->count++] = p;
}

void rv__obj_caches_fini(rv_runtime *rt)
{
    for (int k = 0; k < RV_OBJ_KINDS; k++) {
        for (unsigned i = 0; i < rt->nworkers; i++) {
            rv__obj_cache *c = &rt->workers[i].caches[k];
            while (c->count)
                rv__free(c->items[--c->count], object_size[k]);
        }
        rv__magazine *m;
        while ((m = (rv__magazine *)rv__mpsc_pop(&rt->depots[k]))) {
            for (unsigned j = 0; j < m->count; j++)
                rv__free(m->items[j], object_size[k]);
            rv__free(m, sizeof *m);
        }
    }
}
