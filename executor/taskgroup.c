/* executor/taskgroup.c - asyncio.TaskGroup: structured concurrency.
 *
 * The group references every child until it is freed. Each child carries an
 * end hook (rv_task.on_end) that runs on the worker that finished it, after
 * its future is final: it counts the child out, records a failure, and on
 * the first failure cancels the siblings and the parent (once; the parent's
 * request is withdrawn again in wait, by cancel counting, so that a
 * cancellation from outside stays distinguishable).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "executor/alloc.h"
#include "executor/internal.h"

struct rv_taskgroup {
    rv__spinlock lock;
    rv_task *parent;
    bool aborting;         /* the children have been cancelled */
    bool parent_cancelled; /* the group cancelled its parent */
    bool exiting;          /* the parent is in wait */
    bool closed;           /* wait returned */
    size_t running;        /* children not ended */
    rv_task **children;
    size_t nchildren, cap;
    int *errors;
    size_t nerrors, errcap;
    size_t lost_errors; /* errors not recorded for want of memory */
    rv__waitq waiter;   /* the parent, in wait */
};

static int grow(void **arr, size_t *cap, size_t used, size_t elem)
{
    if (used < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *fresh = rv__alloc(ncap * elem);
    if (!fresh)
        return -ENOMEM;
    if (*arr) {
        memcpy(fresh, *arr, used * elem);
        rv__free(*arr, *cap * elem);
    }
    *arr = fresh;
    *cap = ncap;
    return 0;
}

/* Lock held. */
static void record_error(rv_taskgroup *g, int code)
{
    if (grow((void **)&g->errors, &g->errcap, g->nerrors, sizeof *g->errors) == 0)
        g->errors[g->nerrors++] = code;
    else
        g->lost_errors++;
}

/* Cancel every child (lock held: the children stay referenced, and
 * rv_task_cancel never takes the group's lock). */
static void abort_children(rv_taskgroup *g)
{
    g->aborting = true;
    for (size_t i = 0; i < g->nchildren; i++)
        rv_task_cancel(g->children[i], NULL); /* -EALREADY for ended ones */
}

static void child_ended(rv_task *t, void *arg)
{
    rv_taskgroup *g = arg;
    int code = rv_future_exception(&t->fut);
    rv__wnode *chain = NULL;
    rv__spin_lock(&g->lock);
    g->running--;
    if (code < 0 && code != -ECANCELED) {
        record_error(g, code);
        if (!g->aborting && !g->parent_cancelled) {
            abort_children(g);
            g->parent_cancelled = true;
            rv_task_cancel(g->parent, NULL);
        }
    }
    if (g->running == 0)
        rv__waitq_grant_first(&g->waiter, 0, &chain);
    rv__spin_unlock(&g->lock);
    rv__waitq_wake(chain);
}

int rv_taskgroup_new(rv_taskgroup **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    rv__worker *w = rv__tls_worker();
    rv_task *parent = w ? w->current : NULL;
    if (!parent)
        return -EPERM;
    rv_taskgroup *g = rv__calloc(sizeof *g);
    if (!g)
        return -ENOMEM;
    g->parent = parent;
    *out = g;
    return 0;
}

int rv_taskgroup_spawn(rv_taskgroup *g, rv_task_fn fn, void *arg, const rv_spawn_opts *opts,
                       rv_task **out)
{
    if (out)
        *out = NULL;
    if (!g || !fn)
        return -EINVAL;
    rv__spin_lock(&g->lock);
    int rc = g->aborting || g->closed ? -ESHUTDOWN
             : grow((void **)&g->children, &g->cap, g->nchildren, sizeof *g->children);
    if (rc == 0) {
        /* Counted before it can end, under the lock, so the end hook never
         * sees a count that does not include it. */
        g->running++;
    }
    rv__spin_unlock(&g->lock);
    if (rc)
        return rc;
    rv_task *t;
    rc = rv__spawn(g->parent->fut.rt, fn, arg, opts, child_ended, g, &t);
    rv__spin_lock(&g->lock);
    if (rc) {
        g->running--;
        rv__wnode *chain = NULL;
        if (g->running == 0)
            rv__waitq_grant_first(&g->waiter, 0, &chain);
        rv__spin_unlock(&g->lock);
        rv__waitq_wake(chain);
        return rc;
    }
    g->children[g->nchildren++] = t;
    /* A failure between spawn and here cancelled the others but not t. */
    bool late = g->aborting;
    rv__spin_unlock(&g->lock);
    if (late)
        rv_task_cancel(t, NULL);
    if (out)
        *out = rv_task_ref(t);
    return 0;
}

int rv_taskgroup_wait(rv_taskgroup *g, int body_rc)
{
    if (!g)
        return -EINVAL;
    rv__worker *w = rv__tls_worker();
    rv_task *self = w ? w->current : NULL;
    if (self != g->parent || g->closed || g->exiting)
        return -EPERM;
    bool propagate_cancel = body_rc == -ECANCELED;
    rv__spin_lock(&g->lock);
    g->exiting = true;
    if (body_rc < 0 && !g->aborting)
        abort_children(g); /* the body failed or was cancelled */
    while (g->running > 0) {
        rv__wnode node;
        rv__wnode_init(&node);
        rv__waitq_push(&g->waiter, &node);
        int rc = rv__waitq_wait(&g->lock, &g->waiter, &node, -1, RV_WQ_CANCELLABLE);
        if (rc == 0 && rv__take_cancel(self))
            rc = -ECANCELED;
        rv__spin_lock(&g->lock);
        if (rc == -ECANCELED && !g->aborting) {
            /* Our parent is being cancelled from outside while the children
             * run: they are cancelled too, and so is the group's result. */
            propagate_cancel = true;
            abort_children(g);
        }
    }
    rv__spin_unlock(&g->lock);
    if (g->parent_cancelled && rv_task_uncancel(self) == 0)
        propagate_cancel = false; /* only our own request was pending */
    else if (g->parent_cancelled)
        propagate_cancel = true; /* someone else's request is left */
    rv__spin_lock(&g->lock);
    if (body_rc < 0 && body_rc != -ECANCELED)
        record_error(g, body_rc);
    g->closed = true;
    int first = g->nerrors ? g->errors[0] : 0;
    rv__spin_unlock(&g->lock);
    /* Errors take priority over a cancellation (asyncio). */
    if (first)
        return first;
    return propagate_cancel ? -ECANCELED : 0;
}

int rv_taskgroup_errors(const rv_taskgroup *g, int codes[], size_t max)
{
    if (!g || (max && !codes))
        return -EINVAL;
    rv_taskgroup *mg = (rv_taskgroup *)g;
    rv__spin_lock(&mg->lock);
    for (size_t i = 0; i < max && i < mg->nerrors; i++)
        codes[i] = mg->errors[i];
    int n = (int)(mg->nerrors + mg->lost_errors);
    rv__spin_unlock(&mg->lock);
    return n;
}

int rv_taskgroup_free(rv_taskgroup *g)
{
    if (!g)
        return -EINVAL;
    rv__spin_lock(&g->lock);
    bool busy = !g->closed || g->running > 0;
    rv__spin_unlock(&g->lock);
    if (busy)
        return -EBUSY;
    for (size_t i = 0; i < g->nchildren; i++)
        rv_task_release(g->children[i]);
    if (g->children)
        rv__free(g->children, g->cap * sizeof *g->children);
    if (g->errors)
        rv__free(g->errors, g->errcap * sizeof *g->errors);
    rv__free(g, sizeof *g);
    return 0;
}
