/* primitives/atomics.h - the one door to C11 atomics inside ravel.
 *
 * Every operation carries its memory order in its name, so a reader sees the
 * ordering at the call site without looking up an argument. Call sites that use
 * anything stronger than relaxed say, in a comment, what the ordering publishes
 * or observes and which operation on the other side it pairs with.
 *
 * The macros are type-generic over C11 _Atomic objects. Fences are spelled out
 * as rv__fence_seq_cst(): ThreadSanitizer does not model fences, so code that
 * relies on one for a Dekker-style handshake also performs its stores and loads
 * with seq_cst, which TSan does understand (see worker.c).
 */
#ifndef RAVEL_PRIMITIVES_ATOMICS_H
#define RAVEL_PRIMITIVES_ATOMICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define rv__atomic_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define rv__atomic_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define rv__atomic_load_seq_cst(p) atomic_load_explicit((p), memory_order_seq_cst)

#define rv__atomic_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define rv__atomic_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define rv__atomic_store_seq_cst(p, v) atomic_store_explicit((p), (v), memory_order_seq_cst)

#define rv__atomic_exchange_acq_rel(p, v) atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define rv__atomic_exchange_acquire(p, v) atomic_exchange_explicit((p), (v), memory_order_acquire)
#define rv__atomic_exchange_release(p, v) atomic_exchange_explicit((p), (v), memory_order_release)
#define rv__atomic_exchange_seq_cst(p, v) atomic_exchange_explicit((p), (v), memory_order_seq_cst)

#define rv__atomic_fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define rv__atomic_fetch_add_acq_rel(p, v) atomic_fetch_add_explicit((p), (v), memory_order_acq_rel)
#define rv__atomic_fetch_add_release(p, v) atomic_fetch_add_explicit((p), (v), memory_order_release)
#define rv__atomic_fetch_add_seq_cst(p, v) atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define rv__atomic_fetch_sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define rv__atomic_fetch_sub_acq_rel(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_acq_rel)
#define rv__atomic_fetch_sub_release(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_release)
#define rv__atomic_fetch_sub_seq_cst(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)
#define rv__atomic_fetch_or_acq_rel(p, v) atomic_fetch_or_explicit((p), (v), memory_order_acq_rel)
#define rv__atomic_fetch_or_seq_cst(p, v) atomic_fetch_or_explicit((p), (v), memory_order_seq_cst)
#define rv__atomic_fetch_and_acq_rel(p, v) atomic_fetch_and_explicit((p), (v), memory_order_acq_rel)
#define rv__atomic_fetch_and_seq_cst(p, v) atomic_fetch_and_explicit((p), (v), memory_order_seq_cst)

/* Strong CAS; `expected` is a pointer updated on failure. Success order first. */
#define rv__atomic_cas_acq_rel(p, expected, desired)                                               \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_acq_rel,      \
                                            memory_order_acquire)
#define rv__atomic_cas_acquire(p, expected, desired)                                               \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_acquire,      \
                                            memory_order_acquire)
#define rv__atomic_cas_release(p, expected, desired)                                               \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_release,      \
                                            memory_order_relaxed)
#define rv__atomic_cas_relaxed(p, expected, desired)                                               \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_relaxed,      \
                                            memory_order_relaxed)
#define rv__atomic_cas_seq_cst(p, expected, desired)                                               \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_seq_cst,      \
                                            memory_order_seq_cst)

#if defined(__SANITIZE_THREAD__)
#define RV_ATOMICS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RV_ATOMICS_TSAN 1
#endif
#endif

#ifdef RV_ATOMICS_TSAN
/* ThreadSanitizer does not model fences; a seq_cst read-modify-write on a
 * thread-private word is a full barrier on the hardware and an operation TSan
 * understands. */
static inline void rv__fence_seq_cst(void)
{
    static _Thread_local _Atomic int fence_word;
    atomic_fetch_add_explicit(&fence_word, 0, memory_order_seq_cst);
}
#else
#define rv__fence_seq_cst() atomic_thread_fence(memory_order_seq_cst)
#endif

/* Spin-wait hint: lets the sibling hyperthread run and saves power. */
static inline void rv__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#define RV_CACHELINE 64
#define RV_CACHE_ALIGNED _Alignas(128) /* two lines: the adjacent-line prefetcher pulls pairs */

#endif
