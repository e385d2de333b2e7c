/* primitives/mpsc.h - intrusive multi-producer queue (Vyukov's design).
 *
 * Producers never wait: a push is one atomic exchange on `in` and one release
 * store that links the previous node to the new one. Between those two steps
 * the chain is briefly broken; a consumer that meets the gap reports "busy"
 * (rv__mpsc_pop returns NULL while rv__mpsc_len() > 0) and tries again later.
 *
 * There is one consumer at a time. Per-worker inboxes are consumed by their
 * worker only. The runtime's global inject queue has many would-be consumers;
 * they take turns through rv__mpsc_try_claim(), a non-blocking claim flag: a
 * worker that loses the claim simply looks elsewhere, so no one ever blocks
 * on it.
 *
 * The length is `pushed - popped`: producers add to `pushed`, which sits on
 * their own cache line with `in`; the consumer of the moment counts `popped`
 * with a plain store on the consumer's line, so consuming never writes to a
 * line the producers use. Other threads read the length (emptiness checks
 * before parking, the inject_depth counter); the consumer-private `out`
 * pointer is never read by them.
 */
#ifndef RAVEL_PRIMITIVES_MPSC_H
#define RAVEL_PRIMITIVES_MPSC_H

#include <stddef.h>
#include <stdint.h>

#include "primitives/atomics.h"

typedef struct rv__mpsc_node {
    _Atomic(struct rv__mpsc_node *) next;
} rv__mpsc_node;

typedef struct rv__mpsc {
    RV_CACHE_ALIGNED _Atomic(rv__mpsc_node *) in; /* producers' end */
    _Atomic int64_t pushed;
    RV_CACHE_ALIGNED rv__mpsc_node *out; /* consumer's end */
    _Atomic int64_t popped;              /* written by the consumer only */
    _Atomic int claimed;
    rv__mpsc_node stub;
} rv__mpsc;

void rv__mpsc_init(rv__mpsc *q);
/* Any thread. */
void rv__mpsc_push(rv__mpsc *q, rv__mpsc_node *n);
/* Push a chain first..last (already linked through `next`) of `count` nodes
 * with one exchange. Any thread. */
void rv__mpsc_push_chain(rv__mpsc *q, rv__mpsc_node *first, rv__mpsc_node *last, int64_t count);
/* The consumer only. NULL when empty or when a producer is mid-push. */
rv__mpsc_node *rv__mpsc_pop(rv__mpsc *q);
/* Approximate length; seq_cst so that it can take part in the
 * publish-then-check-sleepers handshake (see executor/worker.c). popped is
 * read first: a node is counted as pushed before it can be popped, so the
 * difference never goes below the truth at the first read. */
static inline int64_t rv__mpsc_len(rv__mpsc *q)
{
    int64_t popped = rv__atomic_load_seq_cst(&q->popped);
    return rv__atomic_load_seq_cst(&q->pushed) - popped;
}

/* Become the consumer, without waiting. Returns 1 on success. */
int rv__mpsc_try_claim(rv__mpsc *q);
void rv__mpsc_unclaim(rv__mpsc *q);

#endif
