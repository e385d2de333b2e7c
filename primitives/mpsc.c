/* primitives/mpsc.c - see mpsc.h. */
#include "primitives/mpsc.h"

void rv__mpsc_init(rv__mpsc *q)
{
    rv__atomic_store_relaxed(&q->stub.next, NULL);
    rv__atomic_store_relaxed(&q->in, &q->stub);
    rv__atomic_store_relaxed(&q->pushed, 0);
    rv__atomic_store_relaxed(&q->popped, 0);
    rv__atomic_store_relaxed(&q->claimed, 0);
    q->out = &q->stub;
}

void rv__mpsc_push_chain(rv__mpsc *q, rv__mpsc_node *first, rv__mpsc_node *last, int64_t count)
{
    rv__atomic_store_relaxed(&last->next, NULL);
    /* Count first: a consumer may pop the node as soon as it is linked, and
     * popped must not overtake pushed. seq_cst: part of the
     * publish-then-check-sleepers handshake; a parking worker's seq_cst read of
     * the length after announcing itself asleep pairs with this. */
    rv__atomic_fetch_add_seq_cst(&q->pushed, count);
    /* acq_rel: acquire so that we see the previous tail's initialisation
     * before writing its next field; release is provided by the store below. */
    rv__mpsc_node *prev = rv__atomic_exchange_acq_rel(&q->in, last);
    /* release: publishes the pushed nodes' contents (and everything the
     * producer wrote before pushing) to the consumer's acquire load of next. */
    rv__atomic_store_release(&prev->next, first);
}

void rv__mpsc_push(rv__mpsc *q, rv__mpsc_node *n) { rv__mpsc_push_chain(q, n, n, 1); }

/* One consumer at a time (the claim's acquire/release hands the count over),
 * so a plain increment suffices; release so a reader that sees the new count
 * also sees the pop. */
static void count_popped(rv__mpsc *q)
{
    rv__atomic_store_release(&q->popped, rv__atomic_load_relaxed(&q->popped) + 1);
}

rv__mpsc_node *rv__mpsc_pop(rv__mpsc *q)
{
    rv__mpsc_node *out = q->out;
    /* acquire: pairs with the release store of next in push_chain. */
    rv__mpsc_node *next = rv__atomic_load_acquire(&out->next);
    if (out == &q->stub) {
        if (!next)
            return NULL;
        q->out = next;
        out = next;
        next = rv__atomic_load_acquire(&next->next);
    }
    if (next) {
        q->out = next;
        count_popped(q);
        return out;
    }
    /* `out` is the last linked node. If a producer already swapped `in`
     * past it, the link is on its way: report busy. */
    if (out != rv__atomic_load_acquire(&q->in))
        return NULL;
    /* Re-insert the stub behind `out` so that `out` can be handed out. */
    rv__mpsc_push_chain(q, &q->stub, &q->stub, 0);
    next = rv__atomic_load_acquire(&out->next);
    if (next) {
        q->out = next;
        count_popped(q);
        return out;
    }
    return NULL;
}

int rv__mpsc_try_claim(rv__mpsc *q)
{
    if (rv__atomic_load_relaxed(&q->claimed))
        return 0;
    /* acquire: pairs with the release in rv__mpsc_unclaim, so the previous
     * consumer's writes to `out` and the stub are visible to us. */
    return rv__atomic_exchange_acquire(&q->claimed, 1) == 0;
}

void rv__mpsc_unclaim(rv__mpsc *q) { rv__atomic_store_release(&q->claimed, 0); }
