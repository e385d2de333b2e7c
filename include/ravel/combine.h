/* ravel/combine.h - combinators, timeouts, task groups and generators.
 * Included by ravel.h; do not include it on its own.
 *
 * Every call here that waits may suspend: it runs only inside a task (-EPERM
 * from a plain thread). A future passed in must stay referenced by the caller
 * for the duration of the call.
 */
#ifndef RAVEL_COMBINE_H
#define RAVEL_COMBINE_H

#ifndef RAVEL_H
#error "include <ravel.h>, not <ravel/combine.h>"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/* gather, wait, wait_for, shield, as_completed                               */

/* rv_gather flag: collect each child's code in codes[] and wait for all of
 * them instead of returning the first error. */
#define RV_RETURN_EXCEPTIONS 1u

/* May suspend. asyncio.gather over fs[0..n-1] (futures or task futures; the
 * same one may appear twice). results[i] (may be NULL) receives fs[i]'s result
 * and codes[i] (may be NULL) its code: 0, its error, or -ECANCELED for a
 * cancelled child; children still running when gather returns early get
 * -EAGAIN there.
 * - Without RV_RETURN_EXCEPTIONS: returns 0 once every child succeeded, or the
 *   first error (a cancelled child counts as -ECANCELED) as soon as it
 *   happens; the other children keep running.
 * - With RV_RETURN_EXCEPTIONS: returns 0 once every child is done, whatever
 *   their outcome.
 * - When the calling task is cancelled, every child is cancelled, gather
 *   waits until all of them are done, and returns -ECANCELED.
 * n == 0 returns 0 at once. -EINVAL for a NULL fs (n > 0), a NULL element or
 * unknown flags; -ENOMEM. */
RV_EXTERN int rv_gather(rv_future *const fs[], size_t n, unsigned flags, void *results[],
                        int codes[]);

enum rv_return_when {
    RV_FIRST_COMPLETED = 1,
    RV_FIRST_EXCEPTION = 2, /* an error; a cancelled future does not count */
    RV_ALL_COMPLETED = 3,
};

/* May suspend. asyncio.wait: wait until `return_when` holds for fs, or
 * `timeout_ns` passes (negative: no limit). A timeout is not an error.
 * Duplicates count once. The distinct futures that are done go to done[]
 * (*ndone of them) and the rest to pending[] (*npending), each in the order
 * of first appearance; each array needs room for n and may be NULL (with its
 * count). Nothing is cancelled. Returns 0; -EINVAL for n == 0, a NULL
 * element or a bad return_when; -ECANCELED when the calling task is
 * cancelled (the futures are left alone); -ENOMEM. */
RV_EXTERN int rv_wait(rv_future *const fs[], size_t n, int64_t timeout_ns,
                      enum rv_return_when return_when, rv_future *done[], size_t *ndone,
                      rv_future *pending[], size_t *npending);

/* May suspend. asyncio.wait_for: await f for at most `timeout_ns` (negative:
 * no limit). On timeout f is cancelled and the call waits until f has
 * finished cancelling, then returns -ETIMEDOUT (if f ends with a result or an
 * error anyway, that is returned instead, as asyncio 3.12). When the calling
 * task is cancelled, f is cancelled too and -ECANCELED is returned after f is
 * done. timeout 0 on a pending f cancels it at once. */
RV_EXTERN int rv_wait_for(rv_future *f, int64_t timeout_ns, void **result);

/* asyncio.shield: a new future (the caller releases it) that completes as f
 * does, but whose cancellation does not cancel f. Awaiting it from a task
 * that gets cancelled cancels only the shield. -ENOMEM. */
RV_EXTERN int rv_shield(rv_future *f, rv_future **out);

/* asyncio.as_completed: an iterator that yields fs's futures in the order
 * they complete. The futures are referenced by the iterator until it is
 * freed. */
typedef struct rv_as_completed rv_as_completed;
/* Start iterating over fs[0..n-1] (duplicates count once) with an overall
 * `timeout_ns` from now (negative: none). -EINVAL, -ENOMEM. Any thread; the
 * runtime is that of the first future. */
RV_EXTERN int rv_as_completed_new(rv_future *const fs[], size_t n, int64_t timeout_ns,
                                  rv_as_completed **out);
/* May suspend. The next future to complete, in *next (borrowed: valid until
 * the iterator is freed). 0; -ENOENT when every future was returned;
 * -ETIMEDOUT when the overall timeout passed first (every later call too);
 * -ECANCELED when the calling task is cancelled. */
RV_EXTERN int rv_as_completed_next(rv_as_completed *it, rv_future **next);
RV_EXTERN int rv_as_completed_free(rv_as_completed *it);

/* ------------------------------------------------------------------------- */
/* Timeout scopes (asyncio.timeout / timeout_at)                              */

#define RV_TIMEOUT_SIZE 64
typedef struct rv_timeout {
    _Alignas(16) unsigned char opaque[RV_TIMEOUT_SIZE];
} rv_timeout;

/* Open a scope in the calling task: at `when_ns` (rv_now clock; negative:
 * never, until rescheduled) the task is cancelled, so the await in progress
 * returns -ECANCELED. Scopes nest; close them in reverse order. -EPERM
 * outside a task, -ENOMEM. */
RV_EXTERN int rv_timeout_enter_at(rv_timeout *s, int64_t when_ns);
/* The same with a delay from now (negative: never). */
RV_EXTERN int rv_timeout_enter(rv_timeout *s, int64_t delay_ns);
/* Move the deadline (negative: never). -EPERM once the scope has expired or
 * closed. */
RV_EXTERN int rv_timeout_reschedule(rv_timeout *s, int64_t when_ns);
/* The deadline, or -1 for none. */
RV_EXTERN int64_t rv_timeout_when(const rv_timeout *s);
/* True once the deadline passed and the scope cancelled its task. */
RV_EXTERN bool rv_timeout_expired(const rv_timeout *s);
/* Close the scope, passing the code the scope's body ends with. Returns
 * -ETIMEDOUT when the body was cancelled by this scope (rc == -ECANCELED and
 * no other cancellation is pending, by cancel counting); otherwise returns
 * rc unchanged. A scope that expired after the body's last await withdraws
 * its request, so nothing is left pending. Of nested scopes with the same
 * deadline only the outermost reports -ETIMEDOUT. */
RV_EXTERN int rv_timeout_exit(rv_timeout *s, int rc);

/* ------------------------------------------------------------------------- */
/* TaskGroup (asyncio.TaskGroup)                                              */

typedef struct rv_taskgroup rv_taskgroup;

/* A group owned by the calling task (its parent). -EPERM outside a task. */
RV_EXTERN int rv_taskgroup_new(rv_taskgroup **out);
/* Start a child task in the group (rv_spawn's options; `out` may be NULL,
 * else a reference the caller releases). -ESHUTDOWN once the group is
 * closing after a failure or has been waited on (asyncio: RuntimeError). */
RV_EXTERN int rv_taskgroup_spawn(rv_taskgroup *g, rv_task_fn fn, void *arg,
                                 const rv_spawn_opts *opts, rv_task **out);
/* May suspend; from the parent task only, once (-EPERM). The end of the
 * `async with` block: `body_rc` is the code the block ended with (0, an
 * error, or -ECANCELED when the block saw a cancellation). Waits until every
 * child has ended. When a child fails (an error other than -ECANCELED), the
 * other children and the parent are cancelled, once; a failed body cancels
 * the children too. Returns:
 * - -ECANCELED when the parent was cancelled from outside the group (cancel
 *   counting tells that apart from the group's own cancellation, which is
 *   withdrawn here);
 * - else the first error recorded, with every error available from
 *   rv_taskgroup_errors (errors take priority over a cancellation);
 * - else 0. */
RV_EXTERN int rv_taskgroup_wait(rv_taskgroup *g, int body_rc);
/* The errors recorded (children in the order they failed, then the body's, as
 * asyncio's ExceptionGroup):
 * up to `max` codes into codes[]; returns how many there are in all. */
RV_EXTERN int rv_taskgroup_errors(const rv_taskgroup *g, int codes[], size_t max);
/* Free the group after wait (-EBUSY before). */
RV_EXTERN int rv_taskgroup_free(rv_taskgroup *g);

/* ------------------------------------------------------------------------- */
/* Generators (async generators, `async for`)                                 */

typedef struct rv_gen rv_gen;
/* Generator body: produce values with rv_gen_yield; return 0 to end the
 * sequence, or an error the consumer receives. */
typedef int (*rv_gen_fn)(rv_gen *g, void *arg);

/* A generator running fn(g, arg) in its own task on `rt` (NULL: the calling
 * thread's runtime). Like an async generator it starts running only when the
 * first value is asked for. -EINVAL, -ENOMEM, -ESHUTDOWN. */
RV_EXTERN int rv_gen_new(rv_runtime *rt, rv_gen_fn fn, void *arg, const rv_spawn_opts *opts,
                         rv_gen **out);
/* From the generator body: hand `value` to the consumer and suspend until the
 * next value is asked for. 0 to go on; -ECANCELED when the consumer closed
 * the generator (run cleanup and return) or its task was cancelled. */
RV_EXTERN int rv_gen_yield(rv_gen *g, void *value);
/* May suspend. Ask for the next value: 1 with *value set; 0 when the body
 * returned 0 (the end, asyncio's StopAsyncIteration); the body's error when
 * it failed (every later call too); -ECANCELED when the caller is cancelled
 * while waiting (the generator is closed then). */
RV_EXTERN int rv_gen_next(rv_gen *g, void **value);
/* May suspend. Early close (aclose): the pending rv_gen_yield returns
 * -ECANCELED, the body runs its cleanup and ends, and the call waits for it.
 * Returns 0, or the body's error other than -ECANCELED. A generator never
 * started is closed without running. */
RV_EXTERN int rv_gen_close(rv_gen *g);
/* Free the generator. Never suspends; any thread. A body that has not ended
 * is cancelled (its pending rv_gen_yield returns -ECANCELED) and finishes on
 * its own; its memory goes when it ends. */
RV_EXTERN int rv_gen_free(rv_gen *g);

#ifdef __cplusplus
}
#endif

#endif
