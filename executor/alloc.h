/* executor/alloc.h - the one allocator layer for runtime-owned memory.
 *
 * Runtime objects (tasks, futures, callback records, timers) are allocated here
 * and freed here with their size, so jemalloc's sized deallocation (sdallocx)
 * skips the size lookup. Memory from this layer never reaches the user's
 * free(), and user memory never reaches rv__free(): with Debian's unprefixed
 * jemalloc linked only into libravel, malloc/free may still resolve to glibc
 * while mallocx/sdallocx resolve to jemalloc.
 *
 * Test builds (RV_FAULT_INJECTION) can make the N-th allocation fail, to walk
 * every allocation site of a scenario and check for -ENOMEM and no leak.
 */
#ifndef RAVEL_EXECUTOR_ALLOC_H
#define RAVEL_EXECUTOR_ALLOC_H

#include <stddef.h>

void *rv__alloc(size_t size);
void *rv__calloc(size_t size);
void rv__free(void *p, size_t size);
/* Zeroed memory aligned to `align` (a power of two); free with the same
 * size and alignment. */
void *rv__calloc_aligned(size_t size, size_t align);
void rv__free_aligned(void *p, size_t size, size_t align);
/* A NUL-terminated copy of s (NULL for NULL); free with rv__free_str. */
char *rv__strdup(const char *s);
void rv__free_str(char *s);

#ifdef RV_FAULT_INJECTION
/* Fail the allocation that comes `n` calls from now (0: the very next one), and
 * only that one; a negative n switches injection off. Returns the number of
 * allocations made since the previous call, so a test can learn how many
 * sites a scenario has (allocations are counted from the first call on). */
long rv__fault_alloc_after(long n);
#endif

#endif
