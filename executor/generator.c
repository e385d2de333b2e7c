/* executor/generator.c - task-backed async generators.
 *
 * The body runs in its own task and meets its consumer at a rendezvous of
 * one value: rv_gen_next asks (want), the body's rv_gen_yield answers
 * (has_value) and parks until the next request. Both sides park on one-node
 * wait lists under the generator's lock. Like an async generator, the body
 * does not start before the first request; rv_gen_close cancels the body's
 * task, so the pending rv_gen_yield returns -ECANCELED and the body's cleanup
 * runs in the task, awaited by the closer.
 *
 * The generator is shared by the consumer's handle and the body's task
 * (refs); whichever lets go last frees it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "executor/alloc.h"
#include "executor/internal.h"

struct rv_gen {
    _Atomic uint32_t refs;
    rv__spinlock lock;
    bool want;      /* the consumer asked and has no value yet */
    bool has_value; /* a value waits for the consumer */
    bool ended;     /* the body returned (or never ran) */
    bool closing;   /* close or free was called */
    int end_rc;
    void *value;
    rv_gen_fn fn;
    void *arg;
    rv_task *task;
    rv__waitq consumer, producer;
};

static void gen_unref(rv_gen *g)
{
    /* acq_rel: the last owner sees everything the other one wrote. */
    if (rv__atomic_fetch_sub_acq_rel(&g->refs, 1) == 1)
        rv__free(g, sizeof *g);
}

static rv_task *current_task(void)
{
    rv__worker *w = rv__tls_worker();
    return w ? w->current : NULL;
}

/* Park `side` until granted; lock held on entry, released on return. The
 * chain (what the caller granted the other side) is woken first. */
static int park(rv_gen *g, rv__waitq *side, rv__wnode *chain)
{
    rv__spin_unlock(&g->lock);
    rv__waitq_wake(chain);
    rv__wnode node;
    rv__wnode_init(&node);
    rv__spin_lock(&g->lock);
    bool ready = side == &g->producer ? g->want || g->closing : g->has_value || g->ended;
    if (ready) {
        rv__spin_unlock(&g->lock);
        return 0;
    }
    rv__waitq_push(side, &node);
    int rc = rv__waitq_wait(&g->lock, side, &node, -1, RV_WQ_CANCELLABLE);
    if (rc == 0 && rv__take_cancel(node.task))
        rc = -ECANCELED;
    return rc;
}

static int gen_body(void *arg, void **result)
{
    rv_gen *g = arg;
    /* Lazy start: wait for the first request (or a close). */
    rv__spin_lock(&g->lock);
    int rc = park(g, &g->producer, NULL);
    if (rc == 0) {
        rv__spin_lock(&g->lock);
        bool closing = g->closing;
        rv__spin_unlock(&g->lock);
        rc = closing ? -ECANCELED : g->fn(g, g->arg);
    }
    rv__wnode *chain = NULL;
    rv__spin_lock(&g->lock);
    g->ended = true;
    g->end_rc = rc;
    rv__waitq_grant_first(&g->consumer, 0, &chain);
    rv__spin_unlock(&g->lock);
    rv__waitq_wake(chain);
    gen_unref(g);
    return rc;
}

int rv_gen_new(rv_runtime *rt, rv_gen_fn fn, void *arg, const rv_spawn_opts *opts, rv_gen **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!fn)
        return -EINVAL;
    rv_gen *g = rv__calloc(sizeof *g);
    if (!g)
        return -ENOMEM;
    g->fn = fn;
    g->arg = arg;
    rv__atomic_store_relaxed(&g->refs, 2); /* the handle's and the body's */
    int rc = rv_spawn(rt, gen_body, g, opts, &g->task);
    if (rc) {
        rv__free(g, sizeof *g);
        return rc;
    }
    *out = g;
    return 0;
}

int rv_gen_yield(rv_gen *g, void *value)
{
    if (!g)
        return -EINVAL;
    if (current_task() != g->task)
        return -EPERM;
    rv__wnode *chain = NULL;
    rv__spin_lock(&g->lock);
    if (g->closing) {
        rv__spin_unlock(&g->lock);
        /* The close's cancellation is delivered here, once, so the body's
         * cleanup can await normally. */
        rv__take_cancel(g->task);
        return -ECANCELED;
    }
    g->value = value;
    g->has_value = true;
    g->want = false;
    rv__waitq_grant_first(&g->consumer, 0, &chain);
    int rc = park(g, &g->producer, chain);
    if (rc == 0) {
        rv__spin_lock(&g->lock);
        if (g->closing)
            rc = -ECANCELED;
        rv__spin_unlock(&g->lock);
        if (rc)
            rv__take_cancel(g->task);
    }
    return rc;
}

/* Mark the generator closing and cancel its body's task, once. */
static void request_close(rv_gen *g)
{
    rv__spin_lock(&g->lock);
    bool first = !g->closing && !g->ended;
    g->closing = true;
    rv__spin_unlock(&g->lock);
    if (first)
        rv_task_cancel(g->task, NULL);
}

/* The consumer's view of a body that ended. */
static int end_code(const rv_gen *g) { return g->closing && g->end_rc == -ECANCELED ? 0 : g->end_rc; }

int rv_gen_next(rv_gen *g, void **value)
{
    if (!g || !value)
        return -EINVAL;
    if (!current_task())
        return -EPERM;
    rv__wnode *chain = NULL;
    rv__spin_lock(&g->lock);
    if (!g->has_value && !g->ended) {
        g->want = true;
        rv__waitq_grant_first(&g->producer, 0, &chain);
        int rc = park(g, &g->consumer, chain);
        if (rc != 0) {
            request_close(g); /* a cancelled consumer closes the generator */
            return rc;
        }
        rv__spin_lock(&g->lock);
    }
    int rc;
    if (g->has_value) {
        *value = g->value;
        g->has_value = false;
        rc = 1;
    } else {
        rc = end_code(g);
    }
    rv__spin_unlock(&g->lock);
    return rc;
}

int rv_gen_close(rv_gen *g)
{
    if (!g)
        return -EINVAL;
    if (!current_task())
        return -EPERM;
    request_close(g);
    rv_await(rv_task_future(g->task), NULL);
    rv__spin_lock(&g->lock);
    int rc = g->ended ? end_code(g) : -ECANCELED;
    rv__spin_unlock(&g->lock);
    return rc == -ECANCELED ? 0 : rc;
}

int rv_gen_free(rv_gen *g)
{
    if (!g)
        return -EINVAL;
    request_close(g);
    rv_task_release(g->task);
    gen_unref(g);
    return 0;
}
