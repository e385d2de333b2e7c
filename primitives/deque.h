/* primitives/deque.h - a worker's local run queue: a bounded ring that its
 * owner pushes and pops, and that other workers steal half of.
 *
 * Layout, after Go's runq and Tokio's local queue: a power-of-two ring of
 * RV_LOCAL_QUEUE_SIZE slots; `tail` (written only by the owner) and a 64-bit
 * `head` that packs two 32-bit indices:
 *
 *   head = steal << 32 | real
 *
 * `real` is the next slot to pop. `steal` trails it while a thief is copying
 * slots out: slots in [steal, real) are claimed by that thief and must not be
 * overwritten, so the owner treats them as occupied. When no steal is in
 * progress, steal == real. Only one thief works on a victim at a time.
 *
 * The owner pops FIFO from the head (same end as thieves) with one CAS, and
 * pushes at the tail with no read-modify-write at all. 32-bit indices wrap
 * freely: every distance is computed as an unsigned difference.
 *
 * Why not Chase-Lev: its owner pop needs a full fence on every call, and a
 * growable array needs safe memory reclamation for thieves still reading the
 * old array. A bounded ring plus an overflow to the global queue needs
 * neither.
 */
#ifndef RAVEL_PRIMITIVES_DEQUE_H
#define RAVEL_PRIMITIVES_DEQUE_H

#include <stdint.h>

#include "primitives/atomics.h"

#ifndef RV_LOCAL_QUEUE_SIZE
#define RV_LOCAL_QUEUE_SIZE 256
#endif
#define RV_DEQUE_MASK (RV_LOCAL_QUEUE_SIZE - 1)
_Static_assert((RV_LOCAL_QUEUE_SIZE & RV_DEQUE_MASK) == 0 && RV_LOCAL_QUEUE_SIZE >= 4,
               "RV_LOCAL_QUEUE_SIZE must be a power of two >= 4");

typedef struct rv__deque {
    RV_CACHE_ALIGNED _Atomic uint64_t head; /* steal << 32 | real */
    RV_CACHE_ALIGNED _Atomic uint32_t tail;
    _Atomic(void *) slots[RV_LOCAL_QUEUE_SIZE];
} rv__deque;

/* `start` is the initial index; tests start near UINT32_MAX to cross the wrap. */
void rv__deque_init(rv__deque *q, uint32_t start);

static inline uint32_t rv__deque_real(uint64_t head) { return (uint32_t)head; }
static inline uint32_t rv__deque_steal(uint64_t head) { return (uint32_t)(head >> 32); }

/* The full-ring path of rv__deque_push (deque.c). */
int rv__deque_push_full(rv__deque *q, uint64_t head, void **batch, uint32_t *batch_n);

/* Owner only. Returns 0 when pushed. When the ring is full it returns 1 after
 * moving the older half into *batch (count in *batch_n, at most
 * RV_LOCAL_QUEUE_SIZE/2) without pushing `item`: the caller sends the batch and
 * the item to the global queue. When full while a thief is mid-steal it
 * returns 2 with *batch_n = 0: the caller sends just the item elsewhere.
 * Inline: it is on every spawn, wake and yield. */
static inline int rv__deque_push(rv__deque *q, void *item, void **batch, uint32_t *batch_n)
{
    /* The owner is the only writer of tail. */
    uint32_t tail = rv__atomic_load_relaxed(&q->tail);
    /* acquire: pairs with the release CAS by which a thief hands back the
     * slots it copied out, so that we never overwrite a slot it still reads. */
    uint64_t head = rv__atomic_load_acquire(&q->head);
    if (tail - rv__deque_steal(head) < RV_LOCAL_QUEUE_SIZE) {
        rv__atomic_store_relaxed(&q->slots[tail & RV_DEQUE_MASK], item);
        /* release: publishes the slot to a thief's acquire load of tail. */
        rv__atomic_store_release(&q->tail, tail + 1);
        *batch_n = 0;
        return 0;
    }
    return rv__deque_push_full(q, head, batch, batch_n);
}

/* Owner only. NULL when empty. */
static inline void *rv__deque_pop(rv__deque *q)
{
    /* acquire: pairs with a thief's release CAS on head. */
    uint64_t head = rv__atomic_load_acquire(&q->head);
    for (;;) {
        uint32_t steal = rv__deque_steal(head), real = rv__deque_real(head);
        if (real == rv__atomic_load_relaxed(&q->tail))
            return (void *)0;
        uint32_t next_real = real + 1;
        /* With no thief active, steal follows real; otherwise it stays put so
         * the thief's claimed range remains protected. */
        uint64_t next = (uint64_t)(steal == real ? next_real : steal) << 32 | next_real;
        /* acq_rel: the CAS decides between us and a thief claiming the same
         * slot; acquire keeps the slot read below after the decision. */
        if (rv__atomic_cas_acq_rel(&q->head, &head, next))
            return rv__atomic_load_relaxed(&q->slots[real & RV_DEQUE_MASK]);
    }
}
/* Owner only: the item the next pop would return (NULL if none), for
 * prefetching; it may be stolen before that pop. */
void *rv__deque_peek(rv__deque *q);
/* Thief: move about half of `victim` into `dst` (which the caller owns) and
 * return one of the moved items to run now, or NULL. *moved gets the count. */
void *rv__deque_steal_into(rv__deque *victim, rv__deque *dst, uint32_t *moved);
/* Approximate number of queued items; any thread. */
uint32_t rv__deque_len(rv__deque *q);

#endif
