/* executor/blocking.h - the blocking pool (rv_to_thread), runtime side. */
#ifndef RAVEL_EXECUTOR_BLOCKING_H
#define RAVEL_EXECUTOR_BLOCKING_H

#include <stdbool.h>
#include <stdint.h>

typedef struct rv__pool rv__pool;

/* A pool with no threads yet; NULL when out of memory. */
rv__pool *rv__pool_new(unsigned max, int64_t keepalive_ns);
/* Wake a parked thread or start one for work just queued. 0, or the error
 * of a thread that could not be started (not counting the cap). */
int rv__pool_kick(rv__pool *p);
/* Wait until no call is running, up to `deadline` (rv_now clock; negative:
 * none). False on timeout. */
bool rv__pool_wait_idle(rv__pool *p, int64_t deadline);
/* List the calls still running on stderr. */
void rv__pool_report(rv__pool *p);
/* The runtime lets go: threads leave when out of work; the last frees it. */
void rv__pool_close(rv__pool *p);
/* rv_to_thread for callers whose arg must outlive a cancelled caller: the
 * call owns `arg` and frees it with arg_free once, whether it ran or not. */
int rv__to_thread(int (*fn)(void *arg, void **result), void *arg, void (*arg_free)(void *arg),
                  void (*release)(void *result), void **result);
void rv__pool_counts(rv__pool *p, uint64_t *threads, uint64_t *idle, uint64_t *queued);

#endif
