/* executor/timer.c - a per-worker hierarchical timer wheel.
 *
 * Six levels of 64 slots; a tick is 1 ms. Level L slot s covers 64^L ticks, so
 * one rotation of the top level spans 64^6 ms (about 2.2 years); a later
 * deadline waits in the top level's last slot and cascades again from there.
 * A timer sits at the lowest level whose slot range separates its deadline
 * from `elapsed`; when `elapsed` reaches a higher-level slot, that slot's
 * timers cascade down or fire. A 64-bit occupancy mask per level finds the next
 * non-empty slot with one count-trailing-zeros.
 *
 * Insert and remove are O(1) and happen only on the owning worker. Another
 * thread cancels a timer by flipping its state to CANCELLED (one CAS); the
 * owner drops it when its slot comes up, or at once if the owner cancels it
 * itself. So no lock is taken on any timer path, at the price of a cancelled
 * remote timer holding its small record until its deadline.
 */
#include <string.h>

#include "executor/internal.h"

#define LEVEL_BITS 6

void rv__wheel_init(rv__wheel *w) { memset(w, 0, sizeof *w); }

static unsigned level_for(uint64_t elapsed, uint64_t when)
{
    uint64_t masked = (elapsed ^ when) | (RV_WHEEL_SLOTS - 1);
    unsigned significant = 63 - (unsigned)__builtin_clzll(masked);
    unsigned level = significant / LEVEL_BITS;
    return level < RV_WHEEL_LEVELS ? level : RV_WHEEL_LEVELS - 1;
}

static void link_timer(rv__wheel *w, rv__timer *t)
{
    unsigned level = level_for(w->elapsed, t->when);
    unsigned shift = level * LEVEL_BITS;
    unsigned slot = (unsigned)(t->when >> shift) & (RV_WHEEL_SLOTS - 1);
    if ((t->when ^ w->elapsed) >> (LEVEL_BITS * RV_WHEEL_LEVELS)) {
        /* Beyond the top level's current rotation: its slot number would
         * alias the current slot. Park it in the rotation's last slot; when
         * that comes up it cascades again, closer each time. */
        unsigned now_slot = (unsigned)(w->elapsed >> shift) & (RV_WHEEL_SLOTS - 1);
        slot = (now_slot + RV_WHEEL_SLOTS - 1) & (RV_WHEEL_SLOTS - 1);
    }
    t->level = (uint8_t)level;
    t->slot = (uint8_t)slot;
    t->prev = NULL;
    t->next = w->slots[level][slot];
    if (t->next)
        t->next->prev = t;
    w->slots[level][slot] = t;
    w->occupied[level] |= 1ULL << slot;
    t->linked = true;
}

void rv__wheel_insert(rv__wheel *w, rv__timer *t)
{
    if (t->when < w->elapsed)
        t->when = w->elapsed; /* already due: fires at the next advance */
    link_timer(w, t);
    w->count++;
}

void rv__wheel_remove(rv__wheel *w, rv__timer *t)
{
    if (!t->linked)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        w->slots[t->level][t->slot] = t->next;
    if (t->next)
        t->next->prev = t->prev;
    if (!w->slots[t->level][t->slot])
        w->occupied[t->level] &= ~(1ULL << t->slot);
    t->next = t->prev = NULL;
    t->linked = false;
    w->count--;
}

/* The deadline of the next non-empty slot, and where it is. */
static bool next_slot(rv__wheel *w, uint64_t *deadline, unsigned *level_out, unsigned *slot_out)
{
    for (unsigned level = 0; level < RV_WHEEL_LEVELS; level++) {
        uint64_t occ = w->occupied[level];
        if (!occ)
            continue;
        unsigned shift = level * LEVEL_BITS;
        unsigned now_slot = (unsigned)(w->elapsed >> shift) & (RV_WHEEL_SLOTS - 1);
        uint64_t rotated = (occ >> now_slot) | (now_slot ? occ << (64 - now_slot) : 0);
        unsigned slot = (now_slot + (unsigned)__builtin_ctzll(rotated)) & (RV_WHEEL_SLOTS - 1);
        uint64_t level_span = 1ULL << (shift + LEVEL_BITS);
        uint64_t level_start = w->elapsed & ~(level_span - 1);
        uint64_t d = level_start + ((uint64_t)slot << shift);
        if (d < (w->elapsed & ~((1ULL << shift) - 1)))
            d += level_span; /* the slot is in the next rotation */
        *deadline = d;
        *level_out = level;
        *slot_out = slot;
        return true;
    }
    return false;
}

uint64_t rv__wheel_next_deadline(rv__wheel *w)
{
    uint64_t d;
    unsigned l, s;
    if (!next_slot(w, &d, &l, &s))
        return UINT64_MAX;
    return d < w->elapsed ? w->elapsed : d;
}

uint64_t rv__wheel_advance(rv__wheel *w, uint64_t now)
{
    uint64_t fired = 0;
    for (;;) {
        uint64_t d;
        unsigned level, slot;
        if (!next_slot(w, &d, &level, &slot) || d > now)
            break;
        if (d > w->elapsed)
            w->elapsed = d;
        rv__timer *list = w->slots[level][slot];
        w->slots[level][slot] = NULL;
        w->occupied[level] &= ~(1ULL << slot);
        /* Unlink the whole detached list before running any callback: a
         * callback that cancels another timer of this list must take the
         * CAS-only path (the loop then drops that timer once), not unlink it
         * from a slot it is no longer in. */
        for (rv__timer *t = list; t; t = t->next)
            t->linked = false;
        while (list) {
            rv__timer *t = list;
            list = t->next;
            t->next = t->prev = NULL;
            w->count--;
            if (rv__atomic_load_acquire(&t->state) == RV_TIMER_CANCELLED) {
                t->drop(t);
            } else if (t->when <= w->elapsed) {
                fired++;
                t->fire(t);
            } else {
                link_timer(w, t); /* cascade to a finer level */
                w->count++;
            }
        }
    }
    if (now > w->elapsed)
        w->elapsed = now;
    return fired;
}

void rv__wheel_clear(rv__wheel *w)
{
    for (unsigned level = 0; level < RV_WHEEL_LEVELS; level++) {
        for (unsigned slot = 0; slot < RV_WHEEL_SLOTS; slot++) {
            rv__timer *t = w->slots[level][slot];
            w->slots[level][slot] = NULL;
            while (t) {
                rv__timer *next = t->next;
                t->linked = false;
                t->drop(t);
                t = next;
            }
        }
        w->occupied[level] = 0;
    }
    w->count = 0;
}
