/* ravel.h - asyncio's programming model on all cores.
 *
 * The only header a ravel user includes. Its comments are the API reference:
 * each statement is something a test checks; the test says so in a comment.
 *
 * Conventions (all calls):
 * - Fallible calls return 0 (or a non-negative count) on success and a negative
 *   errno code on failure; rv_strerror() and rv_err_name() describe any code.
 * - A NULL handle returns -EINVAL; it never crashes.
 * - Times are int64_t nanoseconds; a negative timeout means "no timeout".
 * - Handles are opaque and reference counted where stated.
 * - Option structs start with their own size; set it with sizeof, or use the
 *   *_init() function, so the struct can grow without breaking callers.
 * - "May suspend" means: only from inside a task; the calling task parks and
 *   other tasks run meanwhile. Called from a plain thread these return -EPERM.
 */
#ifndef RAVEL_H
#define RAVEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ravel/errors.h"
#include "ravel/version.h"

#if defined(RAVEL_STATIC_DEFINE)
#define RV_EXTERN
#elif defined(RAVEL_BUILDING)
#define RV_EXTERN __attribute__((visibility("default")))
#else
#define RV_EXTERN
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/* Errors and version                                                         */

/* A sentence describing `code` (negative errno). Never NULL. Known ravel codes
 * come from RV_ERRNO_MAP; other errno values fall back to the C library's text;
 * 0 gives "success"; a positive or unknown value gives "unknown error". */
RV_EXTERN const char *rv_strerror(int code);
/* The symbolic name of `code`, such as "ECANCELED". Never NULL; "UNKNOWN" for
 * values that are not errno codes, "OK" for 0. */
RV_EXTERN const char *rv_err_name(int code);
/* RV_VERSION_STRING of the library actually linked. */
RV_EXTERN const char *rv_version_string(void);

/* Monotonic clock (CLOCK_MONOTONIC) in nanoseconds: the clock of rv_call_at. */
RV_EXTERN int64_t rv_now(void);

/* ------------------------------------------------------------------------- */
/* Runtime                                                                    */

typedef struct rv_runtime rv_runtime;
typedef struct rv_future rv_future;
typedef struct rv_task rv_task;
typedef struct rv_handle rv_handle;

typedef struct rv_config {
    size_t size;                   /* sizeof(rv_config) */
    unsigned workers;              /* 0: number of online CPUs; env RAVEL_WORKERS overrides */
    size_t stack_size;             /* default fiber stack, bytes; 0: 64 KiB (256 KiB under
                                      sanitizers); rounded up to whole pages; min 16 KiB */
    unsigned blocking_threads_max; /* blocking pool cap; 0: 512 */
    int64_t blocking_keepalive_ns; /* idle pool thread lifetime; 0: 10 s */
    bool debug;                    /* debug checks; env RAVEL_DEBUG=1 turns them on */
} rv_config;

/* Fill `cfg` with the defaults (all zero) and set its size. */
RV_EXTERN void rv_config_init(rv_config *cfg);

/* Start a runtime: `workers` threads, each with its own epoll loop, running
 * until rv_runtime_shutdown(). `cfg` may be NULL for the defaults. A config
 * whose size field is 0 or larger than this library knows returns -EINVAL.
 * Returns -ENOMEM (and leaks nothing) when memory runs out, or the errno of
 * a failed thread or epoll creation. */
RV_EXTERN int rv_runtime_new(rv_runtime **out, const rv_config *cfg);

/* Stop accepting work (later spawns and rv_call_* return -ESHUTDOWN), cancel
 * every task (each sees -ECANCELED at its await point) and wait up to
 * `timeout_ns` for all tasks to end (negative: forever). Tasks still running
 * at the deadline are listed on stderr and the call returns -ETIMEDOUT; the
 * workers are stopped either way, except that a worker running a task that
 * never suspends cannot be interrupted: the call then returns only when that
 * task suspends or ends. Returns -EPERM when called from one of this
 * runtime's own worker threads (it would wait for itself), -EALREADY when the
 * runtime is already shut down. */
RV_EXTERN int rv_runtime_shutdown(rv_runtime *rt, int64_t timeout_ns);

/* Shut down (with no deadline) if not done yet, then free the runtime and
 * everything it owns. Task and future handles the user still holds stay valid
 * until released; they are finished (cancelled if they never ended). After
 * this call such a handle may only be queried and released: completing a
 * future of this runtime that has done callbacks, or adding one, would
 * schedule work on a runtime that no longer exists. Returns -EPERM from a
 * worker thread of `rt`. May be called while another thread's
 * rv_runtime_shutdown is still running; it waits for that call to return. */
RV_EXTERN int rv_runtime_free(rv_runtime *rt);

/* The runtime the calling thread works for (a worker or a task), else NULL. */
RV_EXTERN rv_runtime *rv_runtime_current(void);

/* Task body. `*result` starts NULL; a task that returns 0 finishes with the
 * value left in *result; a negative return finishes it with that error; a
 * return of -ECANCELED finishes it cancelled. */
typedef int (*rv_task_fn)(void *arg, void **result);

/* asyncio.run(): create a runtime from `cfg`, run main_fn(arg) as a task,
 * wait for it, cancel whatever is left, shut down and free. Returns main's
 * code; its result goes to *result when `result` is not NULL. Returns -EPERM
 * when called from a worker thread. */
RV_EXTERN int rv_run(const rv_config *cfg, rv_task_fn main_fn, void *arg, void **result);

/* ------------------------------------------------------------------------- */
/* Futures                                                                    */
/*
 * A future is pending, then finished (with a result or an error) or cancelled,
 * exactly once. Futures are thread-safe: any thread may complete, cancel or
 * wait on them. Reference counted: rv_future_new gives one reference.
 */

/* Create a pending future bound to `rt` (NULL: the calling thread's runtime;
 * -EINVAL when there is none). Its done callbacks run on rt's workers. */
RV_EXTERN int rv_future_new(rv_runtime *rt, rv_future **out);
/* Add a reference. Returns f (NULL when f is NULL). */
RV_EXTERN rv_future *rv_future_ref(rv_future *f);
/* Drop a reference; the last one frees the future. Over-release is caught by
 * the debug build's assertion. */
RV_EXTERN int rv_future_release(rv_future *f);

/* Finish with `result`. -EALREADY if already done (the result is unchanged). */
RV_EXTERN int rv_future_set_result(rv_future *f, void *result);
/* Finish with error `code` (negative; -EINVAL otherwise, and -EINVAL for
 * -ECANCELED: use rv_future_cancel) and an optional message, copied.
 * -EALREADY if already done. */
RV_EXTERN int rv_future_set_exception(rv_future *f, int code, const char *msg);
/* Cancel with an optional message, copied. 0 if this call cancelled it,
 * -EALREADY if it was already done. */
RV_EXTERN int rv_future_cancel(rv_future *f, const char *msg);

/* True once finished or cancelled. False for NULL. */
RV_EXTERN bool rv_future_done(const rv_future *f);
/* True if cancelled. False for NULL. */
RV_EXTERN bool rv_future_cancelled(const rv_future *f);
/* 0 and *result when finished with a result; -EAGAIN while pending;
 * -ECANCELED when cancelled; the error code when finished with an error. */
RV_EXTERN int rv_future_result(rv_future *f, void **result);
/* 0 when finished with a result; the error code when finished with one;
 * -ECANCELED when cancelled; -EAGAIN while pending. */
RV_EXTERN int rv_future_exception(rv_future *f);
/* The message given with the error or the cancellation, or NULL. Valid while
 * the caller holds a reference to f. */
RV_EXTERN const char *rv_future_message(const rv_future *f);

typedef void (*rv_future_cb)(rv_future *f, void *arg);
/* Call cb(f, arg) once f is done. Callbacks run on a worker, later, in
 * registration order, never inside set_result/set_exception/cancel; one added
 * to a done future is scheduled at once. -ENOMEM when out of memory (cb is then
 * never called). */
RV_EXTERN int rv_future_add_done_callback(rv_future *f, rv_future_cb cb, void *arg);
/* Remove every registration of (cb, arg) that has not been scheduled yet;
 * returns how many were removed. */
RV_EXTERN int rv_future_remove_done_callback(rv_future *f, rv_future_cb cb, void *arg);

/* May suspend. Wait for f and return what rv_future_result would. The caller
 * must hold a reference to f for the duration of the call. If the
 * calling task is cancelled while waiting, f is cancelled too (as asyncio) and
 * the await returns -ECANCELED, unless f finishes anyway. An already done
 * future returns at once without suspending. -EPERM outside a task, and when
 * a task awaits itself. `result` may be NULL. */
RV_EXTERN int rv_await(rv_future *f, void **result);

/* Block the calling plain thread until f is done or `timeout_ns` passes
 * (negative: no limit; 0: just look). Returns what rv_future_result would, or
 * -ETIMEDOUT. On a worker thread outside a task it returns -EDEADLK; inside a
 * task it suspends the task like rv_await (with the timeout, which does not
 * cancel f). */
RV_EXTERN int rv_future_wait(rv_future *f, int64_t timeout_ns, void **result);

/* ------------------------------------------------------------------------- */
/* Tasks                                                                      */
/*
 * A task runs a function on its own fiber (stackful coroutine) and is a
 * future: rv_task_future(t) gives that future, completed with the task's end.
 * The runtime owns a running task; the handle rv_spawn gives back is an extra
 * reference the caller releases with rv_task_release. Fire-and-forget
 * (out == NULL) is safe.
 *
 * Threads: a task that suspends may resume on another worker thread (unless
 * pinned). errno is saved and restored per task, so errno as the task left it
 * is what it finds, but only when read afresh: glibc declares the accessors
 * behind errno and pthread_self() `const`, so within one function the compiler
 * may reuse a value computed before the suspension, which then belongs to the
 * previous thread. The same holds for the address of any __thread variable.
 * After an await, read such values in a function that was not inlined into
 * the one that suspended, use task-local storage (rv_local_get/set), or pin
 * the task.
 */

typedef struct rv_spawn_opts {
    size_t size;       /* sizeof(rv_spawn_opts) */
    const char *name;  /* copied; NULL: "Task-<id>" */
    size_t stack_size; /* 0: the runtime's default */
    bool pinned;       /* never migrates: runs only on the worker it first runs on
                          (the spawning worker, or one chosen round-robin from a
                          plain thread) */
} rv_spawn_opts;

/* Start fn(arg) as a task on `rt` (NULL: the calling thread's runtime). Safe
 * from any thread, including plain threads (thread-safe submission). `opts` may
 * be NULL. A task does not get a stack until it first runs. Returns -ESHUTDOWN
 * after shutdown began, -EINVAL for a NULL fn or no runtime, -ENOMEM. */
RV_EXTERN int rv_spawn(rv_runtime *rt, rv_task_fn fn, void *arg, const rv_spawn_opts *opts,
                       rv_task **out);

RV_EXTERN rv_future *rv_task_future(rv_task *t);
RV_EXTERN rv_task *rv_task_ref(rv_task *t);
RV_EXTERN int rv_task_release(rv_task *t);

/* The task running on this fiber, or NULL on a plain thread or in a callback. */
RV_EXTERN rv_task *rv_current_task(void);
/* Unique, increasing from 1 per process. 0 for NULL. */
RV_EXTERN uint64_t rv_task_id(const rv_task *t);
/* The name (never NULL for a task). Valid while the caller holds a reference. */
RV_EXTERN const char *rv_task_name(const rv_task *t);
/* Rename; the name is copied. Only from the task itself or before it runs:
 * -EPERM otherwise. */
RV_EXTERN int rv_task_set_name(rv_task *t, const char *name);

/* Request cancellation, delivered at the task's next suspension point as
 * -ECANCELED (or, if it is awaiting a future, by cancelling that future).
 * A task cancelled before it first runs ends cancelled without running.
 * Returns 0 when requested, -EALREADY when the task is done. Counts toward
 * rv_task_cancelling. The message is copied; the last one given wins. */
RV_EXTERN int rv_task_cancel(rv_task *t, const char *msg);
/* Number of pending cancellation requests (asyncio Task.cancelling()). */
RV_EXTERN int rv_task_cancelling(const rv_task *t);
/* Decrement that count, not below zero, and return the new count. When it
 * reaches zero an undelivered request is withdrawn (asyncio 3.13). */
RV_EXTERN int rv_task_uncancel(rv_task *t);

/* May suspend. Let every other ready task run once (asyncio.sleep(0)).
 * Returns -ECANCELED when a cancellation is delivered here. */
RV_EXTERN int rv_yield(void);
/* May suspend. Sleep for `ns` (rounded up to the 1 ms timer tick; ns <= 0 is
 * rv_yield). -ECANCELED when cancelled while sleeping. */
RV_EXTERN int rv_sleep(int64_t ns);

/* Attach a message (copied) to the error the current task is about to return,
 * and return `code`, so that `return rv_task_error(-EIO, "disk gone");` reads
 * naturally. Outside a task it just returns `code`. */
RV_EXTERN int rv_task_error(int code, const char *msg);

/* Call visit(t, arg) for every task of `rt` that has started and not ended.
 * Visits run on the calling thread; a task may end while visited but its
 * handle stays valid during the call. Returns the number visited. */
RV_EXTERN int rv_all_tasks(rv_runtime *rt, void (*visit)(rv_task *t, void *arg), void *arg);

/* Task-local storage: replaces __thread for code running in tasks (a task may
 * resume on another worker thread after any suspension). RV_TASK_LOCAL_KEYS
 * keys per process. */
#define RV_TASK_LOCAL_KEYS 16
typedef int rv_local_key;
/* Create a key; `dtor` (may be NULL) runs on a non-NULL value when its task
 * ends. -EAGAIN when all keys are taken. */
RV_EXTERN int rv_local_key_create(rv_local_key *key, void (*dtor)(void *value));
/* The calling task's value for key (NULL if unset, outside a task, or a bad key). */
RV_EXTERN void *rv_local_get(rv_local_key key);
/* Set the calling task's value. -EPERM outside a task, -EINVAL bad key, -ENOMEM. */
RV_EXTERN int rv_local_set(rv_local_key key, void *value);

/* ------------------------------------------------------------------------- */
/* Callbacks and timers (no fiber)                                            */

typedef void (*rv_callback_fn)(void *arg);

/* Run fn(arg) on a worker soon. Safe from any thread (this is also
 * call_soon_threadsafe). `out` may be NULL; otherwise it receives a handle
 * the caller releases. -ESHUTDOWN after shutdown began, -ENOMEM. */
RV_EXTERN int rv_call_soon(rv_runtime *rt, rv_callback_fn fn, void *arg, rv_handle **out);
/* Run fn(arg) after `delay_ns` (rounded up to the 1 ms tick). Any thread. */
RV_EXTERN int rv_call_later(rv_runtime *rt, int64_t delay_ns, rv_callback_fn fn, void *arg,
                            rv_handle **out);
/* Run fn(arg) at `when_ns` on the rv_now() clock. Any thread. */
RV_EXTERN int rv_call_at(rv_runtime *rt, int64_t when_ns, rv_callback_fn fn, void *arg,
                         rv_handle **out);
/* Prevent the callback from running. 0 if this call cancelled it, -EALREADY
 * if it already ran, is running, or was cancelled. O(1), any thread. */
RV_EXTERN int rv_handle_cancel(rv_handle *h);
RV_EXTERN int rv_handle_release(rv_handle *h);

/* ------------------------------------------------------------------------- */
/* Threads: blocking calls and plain threads                                  */

/* A blocking function for the blocking pool: like a task body, 0 with
 * *result (starts NULL), or a negative error code. */
typedef int (*rv_blocking_fn)(void *arg, void **result);

/* May suspend. asyncio.to_thread: run fn(arg) on a thread of the runtime's
 * blocking pool and suspend the calling task until it returns. Returns fn's
 * code, its result in *result (`result` may be NULL: a result is then passed
 * to `release`).
 * - Cancelling the task returns -ECANCELED at once. A call that has not
 *   started never runs; a call already running runs to completion on its
 *   thread, and its result is passed to `release` (may be NULL) there.
 * - The pool starts threads as calls need them, up to the config's
 *   blocking_threads_max (then calls queue); a thread idle for
 *   blocking_keepalive_ns leaves.
 * - From a plain thread fn simply runs inline (that thread may block).
 *   -EDEADLK on a worker thread outside a task (a callback: it must not
 *   block). -ESHUTDOWN once the runtime is shutting down; -ENOMEM; -EAGAIN
 *   when no pool thread exists and none can be started. */
RV_EXTERN int rv_to_thread(rv_blocking_fn fn, void *arg, void (*release)(void *result),
                           void **result);

/* asyncio.run_coroutine_threadsafe: from any thread, start fn(arg) as a task
 * of `rt` and give back its future (thread-safe; the caller releases it with
 * rv_future_release). The task's end completes the future (result, error or
 * cancellation); cancelling the future cancels the task. A plain thread
 * waits with rv_future_wait. Errors as rv_spawn. */
RV_EXTERN int rv_spawn_threadsafe(rv_runtime *rt, rv_task_fn fn, void *arg,
                                  const rv_spawn_opts *opts, rv_future **out);

/* ------------------------------------------------------------------------- */
/* Counters                                                                   */

typedef struct rv_worker_stats {
    uint64_t tasks_polled; /* task resumptions and callbacks run */
    uint64_t steals;       /* successful steal operations */
    uint64_t stolen_tasks; /* tasks taken by those steals */
    uint64_t steal_attempts;
    uint64_t overflows; /* local-queue overflows to the global queue */
    uint64_t parks;
    uint64_t unparks;
    uint64_t io_events;
    uint64_t timers_fired;
    uint64_t busy_ns; /* time spent running tasks and callbacks */
    uint64_t local_queue_depth;
} rv_worker_stats;

typedef struct rv_runtime_stats {
    size_t size; /* sizeof(rv_runtime_stats) */
    unsigned workers;
    uint64_t live_tasks;   /* spawned and not yet ended */
    uint64_t inject_depth; /* tasks waiting in the global queue (approximate) */
    uint64_t blocking_threads;     /* blocking pool threads alive */
    uint64_t blocking_idle;        /* of those, parked waiting for calls */
    uint64_t blocking_queue_depth; /* calls queued, not started */
} rv_runtime_stats;

/* Snapshot of the global counters. Cheap; any thread. */
RV_EXTERN int rv_runtime_stats_get(rv_runtime *rt, rv_runtime_stats *out);
/* Snapshot of worker `index` (< workers; -EINVAL otherwise). */
RV_EXTERN int rv_worker_stats_get(rv_runtime *rt, unsigned index, rv_worker_stats *out);

#ifdef __cplusplus
}
#endif

#include "ravel/sync.h"    /* Lock, Event, Condition, Semaphore, Barrier, Queue */
#include "ravel/combine.h" /* gather, wait, timeouts, TaskGroup, generators */
#include "ravel/io.h"      /* awaiting file descriptors */
#include "ravel/stream.h"  /* streams, clients, servers, getaddrinfo */
#include "ravel/process.h" /* subprocesses and signals */

#endif /* RAVEL_H */
