/* executor/objcache.c - per-worker caches of fixed-size runtime objects.
 *
 * Tasks, futures and task timers are created and destroyed at a high rate,
 * and often on different workers (a task spawned here ends there; a future
 * made by one task is freed by the other). Through the allocator every such
 * pair is a cross-thread free. Instead, a freed object goes to a cache of the
 * worker that frees it, and an allocation takes from the cache of the worker
 * that allocates. A cache past RV_CACHE_MAX moves a batch to the runtime's
 * depot for that kind (an MPSC queue that any worker may claim), where a
 * worker whose cache ran dry refills. Past RV_DEPOT_MAX objects go back to
 * the allocator. Plain threads always use the allocator.
 *
 * A cached object's first bytes hold the queue link; nothing else of it is
 * meaningful until it is handed out again. Under ASan caching is off, so a
 * use after free stays detectable.
 */
#include "executor/alloc.h"
#include "executor/internal.h"

#ifdef RV_ASAN
#define RV_CACHE_MAX 0
#else
#define RV_CACHE_MAX 1024
#endif
#define RV_DEPOT_BATCH 512
#define RV_DEPOT_MAX (64 * 1024)

static void cache_push(rv__obj_cache *c, void *p)
{
    rv__mpsc_node *n = p;
    rv__atomic_store_relaxed(&n->next, c->head);
    c->head = n;
    c->count++;
}

static void cache_refill(rv__obj_cache *c, rv__mpsc *depot)
{
    if (rv__mpsc_len(depot) <= 0 || !rv__mpsc_try_claim(depot))
        return;
    for (int i = 0; i < RV_DEPOT_BATCH; i++) {
        rv__mpsc_node *n = rv__mpsc_pop(depot);
        if (!n)
            break;
        cache_push(c, n);
    }
    rv__mpsc_unclaim(depot);
}

void *rv__obj_alloc(int kind, size_t size)
{
    rv__worker *w = RV_CACHE_MAX ? rv__tls_worker() : NULL;
    if (w) {
        rv__obj_cache *c = &w->caches[kind];
        if (!c->head)
            cache_refill(c, &w->rt->depots[kind]);
        rv__mpsc_node *n = c->head;
        if (n) {
            c->head = rv__atomic_load_relaxed(&n->next);
            c->count--;
            return n;
        }
    }
    return rv__alloc(size);
}

void rv__obj_free(int kind, void *p, size_t size)
{
    rv__worker *w = RV_CACHE_MAX ? rv__tls_worker() : NULL;
    if (!w || rv__atomic_load_relaxed(&w->rt->closing)) {
        rv__free(p, size);
        return;
    }
    rv__obj_cache *c = &w->caches[kind];
    cache_push(c, p);
    if (c->count <= RV_CACHE_MAX)
        return;
    /* Over the limit: a batch to the depot, or back to the allocator. */
    rv__mpsc_node *first = c->head, *last = first;
    for (int i = 1; i < RV_DEPOT_BATCH; i++)
        last = rv__atomic_load_relaxed(&last->next);
    c->head = rv__atomic_load_relaxed(&last->next);
    c->count -= RV_DEPOT_BATCH;
    rv__mpsc *depot = &w->rt->depots[kind];
    if (rv__mpsc_len(depot) < RV_DEPOT_MAX) {
        rv__mpsc_push_chain(depot, first, last, RV_DEPOT_BATCH);
        return;
    }
    for (rv__mpsc_node *n = first, *next; n; n = next) {
        next = n == last ? NULL : rv__atomic_load_relaxed(&n->next);
        rv__free(n, size);
    }
}

void rv__obj_caches_fini(rv_runtime *rt)
{
    static const size_t sizes[RV_OBJ_KINDS] = {
        [RV_OBJ_TASK] = sizeof(rv_task),
        [RV_OBJ_FUTURE] = sizeof(rv_future),
        [RV_OBJ_TASK_TIMER] = RV_TASK_TIMER_SIZE,
    };
    for (int k = 0; k < RV_OBJ_KINDS; k++) {
        for (unsigned i = 0; i < rt->nworkers; i++) {
            rv__obj_cache *c = &rt->workers[i].caches[k];
            while (c->head) {
                rv__mpsc_node *n = c->head;
                c->head = rv__atomic_load_relaxed(&n->next);
                rv__free(n, sizes[k]);
            }
            c->count = 0;
        }
        rv__mpsc_node *n;
        while ((n = rv__mpsc_pop(&rt->depots[k])))
            rv__free(n, sizes[k]);
    }
}
