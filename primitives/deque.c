/* primitives/deque.c - see deque.h for the layout and the protocol. */
#include "primitives/deque.h"

#include <stddef.h>

static inline uint64_t pack(uint32_t steal, uint32_t real) { return (uint64_t)steal << 32 | real; }
static inline uint32_t steal_of(uint64_t head) { return (uint32_t)(head >> 32); }
static inline uint32_t real_of(uint64_t head) { return (uint32_t)head; }

void rv__deque_init(rv__deque *q, uint32_t start)
{
    rv__atomic_store_relaxed(&q->head, pack(start, start));
    rv__atomic_store_relaxed(&q->tail, start);
    for (uint32_t i = 0; i < RV_LOCAL_QUEUE_SIZE; i++)
        rv__atomic_store_relaxed(&q->slots[i], NULL);
}

int rv__deque_push_full(rv__deque *q, uint64_t head, void **batch, uint32_t *batch_n)
{
    *batch_n = 0;
    uint32_t steal = steal_of(head), real = real_of(head);
    if (steal != real)
        return 2; /* a thief is copying; room appears soon, this item goes elsewhere */

    /* Full: claim the older half by advancing both indices past it. */
    uint32_t half = RV_LOCAL_QUEUE_SIZE / 2;
    uint64_t expected = pack(real, real);
    /* acq_rel: acquire so that a thief's release of slots is seen; release is
     * not needed by anyone but keeps the CAS symmetric with pop's. */
    if (!rv__atomic_cas_acq_rel(&q->head, &expected, pack(real + half, real + half)))
        return 2; /* a thief got in first; treat as "mid-steal" */
    for (uint32_t i = 0; i < half; i++)
        batch[i] = rv__atomic_load_relaxed(&q->slots[(real + i) & RV_DEQUE_MASK]);
    *batch_n = half;
    return 1;
}

void *rv__deque_steal_into(rv__deque *victim, rv__deque *dst, uint32_t *moved)
{
    *moved = 0;
    uint32_t dst_tail = rv__atomic_load_relaxed(&dst->tail); /* we own dst */
    uint64_t dst_head = rv__atomic_load_acquire(&dst->head);
    /* Don't steal into a queue that is more than half full: it has work. */
    if (dst_tail - steal_of(dst_head) > RV_LOCAL_QUEUE_SIZE / 2)
        return NULL;

    /* Phase 1: claim a range [real, real + n) by advancing real, leaving
     * steal behind as the marker of our claim. */
    uint64_t prev = rv__atomic_load_acquire(&victim->head);
    uint32_t n, first;
    for (;;) {
        uint32_t steal = steal_of(prev), real = real_of(prev);
        if (steal != real)
            return NULL; /* another thief is active on this victim */
        /* acquire: pairs with the owner's release store of tail in push, so
         * the slots below tail are initialised for us. */
        uint32_t tail = rv__atomic_load_acquire(&victim->tail);
        n = tail - real;
        n -= n / 2;
        if (n == 0 || n > RV_LOCAL_QUEUE_SIZE / 2 + 1)
            return NULL; /* empty, or a torn read of a fast-moving queue */
        /* acq_rel: acquire orders our slot reads after winning the claim. */
        if (rv__atomic_cas_acq_rel(&victim->head, &prev, pack(steal, real + n))) {
            first = real;
            break;
        }
    }

    /* Phase 2: copy the claimed slots into our own ring (unpublished). */
    for (uint32_t i = 0; i < n; i++) {
        void *item = rv__atomic_load_relaxed(&victim->slots[(first + i) & RV_DEQUE_MASK]);
        rv__atomic_store_relaxed(&dst->slots[(dst_tail + i) & RV_DEQUE_MASK], item);
    }

    /* Phase 3: release the claim by catching steal up with real. The owner may
     * have popped meanwhile, so retry with the fresh value. */
    prev = rv__atomic_load_acquire(&victim->head);
    for (;;) {
        uint32_t real = real_of(prev);
        /* release: our slot reads above happen before the owner, through its
         * acquire load of head in push, reuses those slots. */
        if (rv__atomic_cas_acq_rel(&victim->head, &prev, pack(real, real)))
            break;
    }

    /* Keep the newest stolen item to run now; publish the rest. */
    n -= 1;
    void *ret = rv__atomic_load_relaxed(&dst->slots[(dst_tail + n) & RV_DEQUE_MASK]);
    if (n)
        /* release: pairs with a thief's acquire load of our tail. */
        rv__atomic_store_release(&dst->tail, dst_tail + n);
    *moved = n + 1;
    return ret;
}

void *rv__deque_peek(rv__deque *q)
{
    uint64_t head = rv__atomic_load_relaxed(&q->head);
    uint32_t real = real_of(head);
    if (real == rv__atomic_load_relaxed(&q->tail))
        return NULL;
    return rv__atomic_load_relaxed(&q->slots[real & RV_DEQUE_MASK]);
}

uint32_t rv__deque_len(rv__deque *q)
{
    uint64_t head = rv__atomic_load_acquire(&q->head);
    uint32_t tail = rv__atomic_load_acquire(&q->tail);
    uint32_t len = tail - real_of(head);
    return len > RV_LOCAL_QUEUE_SIZE ? 0 : len;
}
