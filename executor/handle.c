/* executor/handle.c - plain callbacks: rv_call_soon, rv_call_later, rv_call_at.
 *
 * A handle is one allocation with a job (for call_soon and for arming a timer
 * from a thread that is not a worker) and a timer. Its `state` decides, with
 * one CAS, between running and cancelling: PENDING -> RUNNING -> DONE, or
 * PENDING -> CANCELLED. References: the caller's (when it asked for the
 * handle) and the runtime's, dropped after the callback ran or was dropped.
 */
#include <errno.h>
#include <string.h>

#include "executor/alloc.h"
#include "executor/internal.h"

static rv_handle *handle_of_timer(rv__timer *t)
{
    return (rv_handle *)((char *)t - offsetof(rv_handle, timer));
}

void rv__handle_release_internal(rv_handle *h)
{
    /* acq_rel: the last holder sees every other holder's writes. */
    if (rv__atomic_fetch_sub_acq_rel(&h->refs, 1) == 1)
        rv__free(h, sizeof *h);
}

static void run_once(rv_handle *h)
{
    uint8_t expected = RV_HANDLE_PENDING;
    if (rv__atomic_cas_acq_rel(&h->state, &expected, RV_HANDLE_RUNNING)) {
        h->fn(h->arg);
        rv__atomic_store_release(&h->state, RV_HANDLE_DONE);
    }
    rv__handle_release_internal(h);
}

void rv__handle_run(rv__job *job) { run_once((rv_handle *)job); }

static void timer_fire(rv__timer *t) { run_once(handle_of_timer(t)); }
static void timer_drop(rv__timer *t) { rv__handle_release_internal(handle_of_timer(t)); }

void rv__handle_arm(rv__worker *w, rv__job *job)
{
    rv_handle *h = (rv_handle *)job;
    if (rv__atomic_load_acquire(&h->state) != RV_HANDLE_PENDING) {
        rv__handle_release_internal(h); /* cancelled before it was armed */
        return;
    }
    rv__atomic_store_relaxed(&h->timer.owner, w);
    rv__wheel_insert(&w->wheel, &h->timer);
}

static int make(rv_runtime **rtp, rv_callback_fn fn, rv_handle **out, rv_handle **hp)
{
    if (out)
        *out = NULL;
    if (!*rtp) {
        rv__worker *w = rv__tls_worker();
        *rtp = w ? w->rt : NULL;
    }
    if (!*rtp || !fn)
        return -EINVAL;
    if (rv__atomic_load_acquire(&(*rtp)->closing))
        return -ESHUTDOWN;
    rv_handle *h = rv__calloc(sizeof *h);
    if (!h)
        return -ENOMEM;
    rv__atomic_store_relaxed(&h->refs, out ? 2 : 1);
    rv__atomic_store_relaxed(&h->state, RV_HANDLE_PENDING);
    h->fn = fn;
    h->rt = *rtp;
    if (out)
        *out = h;
    *hp = h;
    return 0;
}

int rv_call_soon(rv_runtime *rt, rv_callback_fn fn, void *arg, rv_handle **out)
{
    rv_handle *h;
    int rc = make(&rt, fn, out, &h);
    if (rc)
        return rc;
    h->arg = arg;
    h->job.kind = RV_JOB_CALLBACK;
    rv__schedule(rt, &h->job);
    return 0;
}

int rv_call_at(rv_runtime *rt, int64_t when_ns, rv_callback_fn fn, void *arg, rv_handle **out)
{
    rv_handle *h;
    int rc = make(&rt, fn, out, &h);
    if (rc)
        return rc;
    h->arg = arg;
    h->timed = true;
    h->timer.when = rv__deadline_tick(rt, when_ns);
    h->timer.fire = timer_fire;
    h->timer.drop = timer_drop;
    rv__atomic_store_relaxed(&h->timer.state, RV_TIMER_PENDING);
    rv__worker *w = rv__tls_worker();
    if (w && w->rt == rt) {
        rv__atomic_store_relaxed(&h->timer.owner, w);
        rv__wheel_insert(&w->wheel, &h->timer);
    } else {
        /* A plain thread cannot touch a wheel: a worker arms it. */
        h->job.kind = RV_JOB_TIMER_ARM;
        rv__schedule(rt, &h->job);
    }
    return 0;
}

int rv_call_later(rv_runtime *rt, int64_t delay_ns, rv_callback_fn fn, void *arg, rv_handle **out)
{
    return rv_call_at(rt, rv__deadline_after(delay_ns > 0 ? delay_ns : 0), fn, arg, out);
}

int rv_handle_cancel(rv_handle *h)
{
    if (!h)
        return -EINVAL;
    uint8_t expected = RV_HANDLE_PENDING;
    if (!rv__atomic_cas_acq_rel(&h->state, &expected, RV_HANDLE_CANCELLED))
        return -EALREADY;
    if (h->timed) {
        uint8_t ts = RV_TIMER_PENDING;
        if (rv__atomic_cas_acq_rel(&h->timer.state, &ts, RV_TIMER_CANCELLED)) {
            rv__worker *w = rv__tls_worker();
            if (w && rv__atomic_load_relaxed(&h->timer.owner) == w && h->timer.linked) {
                rv__wheel_remove(&w->wheel, &h->timer);
                rv__handle_release_internal(h); /* the wheel's reference */
            }
        }
    }
    return 0;
}

int rv_handle_release(rv_handle *h)
{
    if (!h)
        return -EINVAL;
    rv__handle_release_internal(h);
    return 0;
}
