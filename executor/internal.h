/* executor/internal.h - the runtime's private types, shared by executor/ files.
 *
 * Glossary (the design notes in worker.c and task.c use these words):
 *   job        anything a worker can run: a task step, a plain callback, a
 *              batch of future callbacks, a timer to arm. Jobs are intrusive
 *              nodes, so queues never allocate.
 *   task       a job with a fiber: it runs a user function that can suspend.
 *   worker     one OS thread with a scheduler loop, a local run queue, a LIFO
 *              slot, an inbox, an epoll instance and a timer wheel.
 *   inject     the runtime-wide queue for work submitted from outside a worker
 *              and for local-queue overflow.
 *   inbox      a worker's private MPSC queue: jobs that must run on that worker
 *              (pinned tasks woken elsewhere, timers to arm there).
 *   LIFO slot  one job that runs next on this worker (message-passing locality).
 *   searching  a worker that is out of local work and looking to steal.
 */
#ifndef RAVEL_EXECUTOR_INTERNAL_H
#define RAVEL_EXECUTOR_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "executor/fiber.h"
#include "io/poller.h"
#include "primitives/atomics.h"
#include "primitives/deque.h"
#include "primitives/mpsc.h"
#include "primitives/spinlock.h"
#include "primitives/waitq.h"
#include "ravel.h"

/* ------------------------------------------------------------------------- */
/* Jobs                                                                       */

enum rv__job_kind {
    RV_JOB_TASK,       /* resume (or start) a task */
    RV_JOB_CALLBACK,   /* rv_call_soon handle */
    RV_JOB_FUTURE_CBS, /* a future's done callbacks, run in registration order */
    RV_JOB_TIMER_ARM,  /* insert a timer into the running worker's wheel */
    RV_JOB_BATCH,      /* overflow from a local queue: an array of jobs */
};

typedef struct rv__job {
    rv__mpsc_node node; /* first: queues link jobs through it */
    uint8_t kind;
} rv__job;

/* Half a local queue moved to the inject queue in one node: the consumer
 * copies an array of pointers instead of chasing a list through memory the
 * producer's core just wrote (one cache miss per task). */
typedef struct rv__batch {
    rv__job job;
    uint32_t count;
    rv__job *jobs[RV_LOCAL_QUEUE_SIZE / 2 + 1];
} rv__batch;

/* ------------------------------------------------------------------------- */
/* Timers                                                                     */

enum { RV_TIMER_PENDING, RV_TIMER_FIRED, RV_TIMER_CANCELLED };

typedef struct rv__timer rv__timer;
struct rv__timer {
    rv__timer *next, *prev; /* wheel slot list; owner worker only */
    uint64_t when;          /* deadline in wheel ticks (ms since runtime start) */
    _Atomic uint8_t state;  /* RV_TIMER_*; the only field others touch */
    uint8_t level, slot;
    bool linked;
    _Atomic(struct rv__worker *) owner; /* wheel it sits in, set when armed */
    void (*fire)(rv__timer *t);         /* called by the owner when it expires */
    void (*drop)(rv__timer *t);         /* the wheel's reference goes away */
};

#define RV_WHEEL_LEVELS 6
#define RV_WHEEL_SLOTS 64

typedef struct rv__wheel {
    uint64_t elapsed; /* ticks processed so far */
    uint64_t occupied[RV_WHEEL_LEVELS];
    rv__timer *slots[RV_WHEEL_LEVELS][RV_WHEEL_SLOTS];
    uint64_t count;
} rv__wheel;

void rv__wheel_init(rv__wheel *w);
/* Insert (owner only). A deadline at or before `elapsed` fires at the next advance. */
void rv__wheel_insert(rv__wheel *w, rv__timer *t);
/* Unlink (owner only). */
void rv__wheel_remove(rv__wheel *w, rv__timer *t);
/* Ticks until the next deadline, or UINT64_MAX when empty. */
uint64_t rv__wheel_next_deadline(rv__wheel *w);
/* Fire every timer due at or before `now`; returns how many fired. */
uint64_t rv__wheel_advance(rv__wheel *w, uint64_t now);
/* Drop every timer left (runtime teardown). */
void rv__wheel_clear(rv__wheel *w);

/* ------------------------------------------------------------------------- */
/* Stacks                                                                     */

typedef struct rv__stack {
    struct rv__stack *next; /* free-list link */
    void *lo;               /* lowest usable byte (just above the guard) */
    size_t size;            /* usable bytes */
    uint8_t guard;          /* RV_GUARD_* protecting the page below lo */
} rv__stack;

enum { RV_GUARD_NONE, RV_GUARD_MADVISE, RV_GUARD_MPROTECT };

/* ------------------------------------------------------------------------- */
/* Futures                                                                    */

enum rv__future_state {
    RV_FUT_PENDING,
    RV_FUT_RESULT,
    RV_FUT_ERROR,
    RV_FUT_CANCELLED,
};

enum rv__waiter_kind { RV_WAIT_TASK, RV_WAIT_CALLBACK, RV_WAIT_THREAD, RV_WAIT_HOOK };

typedef struct rv__waiter rv__waiter;
/* RV_WAIT_HOOK: called by the completer, on its thread, once the future is
 * final and before `fired` is set: keep it short, never block, never take a
 * lock that is held around a completion. */
typedef void (*rv__waiter_hook)(rv__waiter *w, rv_future *f, uint8_t state);

/* A registration on a future's done list. Task and thread waiters live on the
 * waiting stack; callback waiters are allocated. `fired` is set (release) by
 * the completer after its last access, so a stack waiter can leave. */
struct rv__waiter {
    rv__job job; /* callback waiters: the first one of a batch is the batch's job */
    rv__waiter *next, *prev;
    uint8_t kind;
    bool linked; /* on the future's list; guarded by the future's lock */
    _Atomic uint32_t fired;
    union {
        rv_task *task;
        struct {
            rv_future_cb fn;
            void *arg;
            rv_future *future;
        } cb;
        struct {
            rv__waiter_hook fn;
            void *arg;
        } hook;
    } u;
};

struct rv_future {
    _Atomic uint32_t refs;
    _Atomic uint8_t state; /* rv__future_state */
    rv__spinlock lock;     /* over the waiter list (O(1) sections) */
    bool is_task;
    int error;
    void *result;
    char *msg;
    rv__waiter *head, *tail;
    rv_runtime *rt;
};

void rv__future_init(rv_future *f, rv_runtime *rt, bool is_task);
/* Finish f (state one of RESULT/ERROR/CANCELLED). -EALREADY when not pending.
 * `msg` is taken over (freed on failure). */
int rv__future_complete(rv_future *f, int state, void *result, int error, char *msg);
/* Free what a future owns (not the future's memory). */
void rv__future_fini(rv_future *f);
/* Take waiter `w` off f's list if it is still there; false if the
 * completer already detached it. Takes f's lock. */
bool rv__future_drop_waiter(rv_future *f, rv__waiter *w);
/* Watch f with a hook waiter `w` (any storage that outlives the watch):
 * false if f is done already (w is then not registered). */
bool rv__future_watch(rv_future *f, rv__waiter *w, rv__waiter_hook fn, void *arg);
/* Stop watching: unlink w, or wait until its completer is done with it. */
void rv__future_unwatch(rv_future *f, rv__waiter *w);
void rv__future_lock(rv_future *f);
void rv__future_unlock(rv_future *f);
/* Run a callback batch job. */
void rv__future_run_callbacks(rv__job *job);
/* Runtime teardown: a task that never ended is finished as cancelled without
 * scheduling anything; plain-thread waiters are still released. */
void rv__future_abandon(rv_future *f);
/* Drop a job found in a queue at teardown (callback batches). */
void rv__future_drop_callbacks(rv__job *job);

/* ------------------------------------------------------------------------- */
/* Tasks                                                                      */

enum rv__sched_state {
    RV_SCHED_IDLE,     /* parked: not queued, not running */
    RV_SCHED_QUEUED,   /* in exactly one queue */
    RV_SCHED_RUNNING,  /* a worker is running it */
    RV_SCHED_NOTIFIED, /* woken while running: requeue when it suspends */
    RV_SCHED_DONE,
};

struct rv_task {
    rv_future fut; /* first: a task is a future */
    rv__job job;
    _Atomic uint8_t sched; /* rv__sched_state */
    bool started;
    bool registered; /* on its home worker's task list */
    bool pinned;
    bool check_canary;       /* its stack has no guard page */
    _Atomic int must_cancel; /* undelivered cancellation request */
    _Atomic int cancels;     /* cancelling() count */
    rv_task_fn fn;
    void *arg;
    rv__fiber fiber;
    rv__stack *stack;
    size_t stack_size;
    uint64_t id;
    _Atomic(char *) name; /* NULL until named or first asked */
    int saved_errno;
    int error_code_msg; /* code rv_task_error attached `error_msg` to */
    char *error_msg;
    struct rv__worker *pin;  /* pinned: the only worker that runs it */
    struct rv__worker *home; /* list it is registered on */
    rv_task *list_prev, *list_next;
    void **locals;
    char *cancel_msg;             /* guarded by fut.lock */
    int exit_code;                /* what fn returned */
    void *exit_value;             /* its *result */
    struct rv__task_timer *timer; /* armed timer it holds, for teardown */
    rv_future *awaiting;          /* future it waits on (the caller's reference), for teardown */
    rv__waiter *awaiting_rec;
    /* Called when the task is over and its future final, in scheduler
     * context (task groups). Set before the task is scheduled. */
    void (*on_end)(rv_task *t, void *arg);
    void *on_end_arg;
    /* Wait list it is parked on (sync objects), for teardown. */
    rv__spinlock *wq_lock;
    rv__waitq *wq;
    rv__wnode *wq_node;
};

static inline rv_task *rv__task_of_job(rv__job *j)
{
    return (rv_task *)((char *)j - offsetof(rv_task, job));
}

/* Consume a pending cancellation request: true if there was one. A plain load
 * first: the exchange (a locked instruction) only when a request is there.
 * acquire: pairs with the release store in rv_task_cancel, so the message and
 * count written before the request are visible. */
static inline bool rv__take_cancel(rv_task *t)
{
    return rv__atomic_load_acquire(&t->must_cancel) &&
           rv__atomic_exchange_acq_rel(&t->must_cancel, 0);
}

/* True while a cancellation request waits for delivery (nothing consumed). */
static inline bool rv__peek_cancel(rv_task *t) { return rv__atomic_load_acquire(&t->must_cancel); }

void rv__task_wake(rv_task *t);
/* rv_spawn with an end hook (see rv_task.on_end); hook may be NULL. */
int rv__spawn(rv_runtime *rt, rv_task_fn fn, void *arg, const rv_spawn_opts *opts,
              void (*on_end)(rv_task *t, void *arg), void *on_end_arg, rv_task **out);
void rv__task_run(struct rv__worker *w, rv_task *t);
void rv__task_free(rv_task *t);
/* Runtime teardown: finish a task that never ended, free its stack. */
void rv__task_abandon(struct rv__worker *w, rv_task *t);

/* ------------------------------------------------------------------------- */
/* Handles (rv_call_soon / rv_call_later)                                     */

enum { RV_HANDLE_PENDING, RV_HANDLE_RUNNING, RV_HANDLE_DONE, RV_HANDLE_CANCELLED };

struct rv_handle {
    rv__job job;
    rv__timer timer;
    _Atomic uint32_t refs;
    _Atomic uint8_t state;
    bool timed;
    rv_callback_fn fn;
    void *arg;
    rv_runtime *rt;
};

void rv__handle_run(rv__job *job);
void rv__handle_arm(struct rv__worker *w, rv__job *job);
void rv__handle_release_internal(rv_handle *h);

/* ------------------------------------------------------------------------- */
/* Workers and the runtime                                                    */

enum rv__obj_kind { RV_OBJ_TASK, RV_OBJ_FUTURE, RV_OBJ_TASK_TIMER, RV_OBJ_KINDS };
#define RV_TASK_TIMER_SIZE 72 /* sizeof(rv__task_timer), checked in task.c */

#define RV_CACHE_SLOTS 1024
#define RV_MAGAZINE (RV_CACHE_SLOTS / 2)
#define RV_DEPOT_MAX 128 /* magazines */

typedef struct rv__obj_cache {
    unsigned count;
    void *items[RV_CACHE_SLOTS];
} rv__obj_cache;

enum rv__switch_reason { RV_SWITCH_PARK, RV_SWITCH_YIELD, RV_SWITCH_EXIT };

typedef struct rv__counters {
    _Atomic uint64_t tasks_polled, steals, stolen_tasks, steal_attempts, overflows, parks, unparks,
        io_events, timers_fired, busy_ns;
} rv__counters;

typedef struct rv__worker {
    /* Fields other workers touch, each on its own lines. */
    rv__deque runq;
    RV_CACHE_ALIGNED _Atomic(rv__job *) lifo;
    /* The task this worker is running, for a Lock's spinners to see whether
     * the holder is on a CPU (compared, never dereferenced by others). */
    RV_CACHE_ALIGNED _Atomic(rv_task *) running;
    rv__mpsc inbox;
    rv__poller poller;
    rv__counters stats;
    _Atomic uint64_t spawned, finished; /* tasks counted here (owner writes) */

    /* Owner-only fields. */
    RV_CACHE_ALIGNED rv_runtime *rt;
    unsigned index;
    pthread_t thread;
    bool thread_started;
    rv__fiber sched_fiber;
    rv_task *current;
    int *errno_at; /* this thread's errno (the loop never migrates) */
    uint8_t switch_reason;
    unsigned lifo_runs;
    uint32_t tick;
    uint64_t rng;
    bool searching;
    rv__job *pinned_head, *pinned_tail; /* local runnable pinned tasks, FIFO */
    rv__wheel wheel;
    uint64_t *last_polls; /* per victim: `polls` seen last search */
    void *overflow_batch[RV_LOCAL_QUEUE_SIZE / 2];
    int64_t unparked_at; /* for busy_ns */

    rv__obj_cache caches[RV_OBJ_KINDS]; /* spare objects (objcache.c) */
    uint64_t next_id, id_limit;         /* a block of task ids */

    rv__stack *free_stacks; /* resident stacks ready for reuse */
    unsigned free_hot;      /* how many */
    rv__stack *cold_stacks; /* stacks whose pages went back to the kernel */
    uint64_t trim_due_ms;   /* idle since then + RV_TRIM_IDLE_MS; 0: not idle */
    void *alt_stack;

    /* Task registry: tasks that have suspended at least once and not ended.
     * Locked by its owner when adding, by whoever ends a task when removing,
     * by visitors; never on the spawn, wake, steal or inject paths. */
    rv__spinlock tasks_lock;
    rv_task *tasks;
} rv__worker;

struct rv_runtime {
    rv__mpsc inject;
    RV_CACHE_ALIGNED _Atomic uint32_t searching; /* workers looking for work */
    RV_CACHE_ALIGNED _Atomic uint64_t *sleepers; /* bitmask of parked workers */
    unsigned sleeper_words;
    /* Tasks spawned / ended outside any worker of this runtime; the rest are
     * counted per worker (see rv__live_tasks). */
    RV_CACHE_ALIGNED _Atomic uint64_t remote_spawned;
    _Atomic uint64_t remote_finished;
    _Atomic uint32_t all_done;     /* futex word: no live task while closing */
    rv__mpsc depots[RV_OBJ_KINDS]; /* spare objects shared by the workers */
    _Atomic int closing;           /* no new work; tasks cancelled */
    _Atomic int stopping;          /* workers leave their loops */
    _Atomic int shut_down;         /* rv_runtime_shutdown finished */
    _Atomic unsigned next_worker;
    _Atomic unsigned indefinite_sleepers; /* workers parked with no timeout */
    unsigned nworkers;
    rv__worker *workers;
    struct rv__pool *pool; /* blocking pool (executor/blocking.c) */
    rv__spinlock io_lock;  /* the fd records' lists (io/reactor.c) */
    struct rv_io *io_all, *io_free;
    rv__spinlock proc_lock; /* children not reaped yet (io/process.c) */
    struct rv_process *procs;
    size_t stack_size;
    int64_t start_ns;
    bool debug;

    /* Stack slabs: one mapping per RV_STACKS_PER_SLAB stacks. */
    pthread_mutex_t slab_lock;
    struct rv__slab *slabs;
    unsigned mprotect_guards; /* fallback guards in use (bounded) */
    int guard_mode;           /* RV_GUARD_MADVISE when the kernel has it */
};

/* The worker the calling thread is, or NULL. Never cached across a switch:
 * see fiber.h. */
rv__worker *rv__tls_worker(void);
void rv__tls_set_worker(rv__worker *w);
/* The same read inlined, for the first look of a hot entry point only (the
 * uncontended Lock): a function may use it only before its first suspension
 * point, since the compiler could keep the thread-local's address across one. */
extern __thread rv__worker *rv__tls_worker_var __attribute__((tls_model("initial-exec")));
static inline rv__worker *rv__tls_worker_at_entry(void) { return rv__tls_worker_var; }

/* Futex helpers (future.c). Wait while *word == 0 up to `deadline` (rv_now
 * clock; negative: forever); false on timeout. */
void rv__futex_wake_all(_Atomic uint32_t *word);
bool rv__futex_wait_set(_Atomic uint32_t *word, int64_t deadline);

/* Scheduling (worker.c). From a worker of `rt`: a task goes to the LIFO slot
 * (the previous occupant to the local queue), other jobs to the local queue;
 * from anywhere else: the inject queue. Wakes an idle worker if needed. */
void rv__schedule(rv_runtime *rt, rv__job *job);
/* Back of the calling worker's local queue, no LIFO (yield, requeue). */
void rv__schedule_yielded(rv__worker *w, rv__job *job);
void rv__schedule_pinned(rv__worker *target, rv__job *job);
void rv__notify_one(rv_runtime *rt);
void rv__worker_unpark(rv__worker *w);
void *rv__worker_main(void *arg);
/* Suspend the current task (in fiber context) with a reason; returns on resume. */
void rv__suspend(rv__worker *w, rv_task *t, uint8_t reason);
uint64_t rv__now_tick(rv_runtime *rt);
/* rv_now() + ns, saturating instead of overflowing for huge timeouts. */
static inline int64_t rv__deadline_after(int64_t ns)
{
    int64_t now = rv_now();
    return ns > INT64_MAX - now ? INT64_MAX : now + ns;
}
uint64_t rv__deadline_tick(rv_runtime *rt, int64_t when_ns);

/* Stacks (stack.c). */
int rv__stacks_init(rv_runtime *rt);
void rv__stacks_fini(rv_runtime *rt);
rv__stack *rv__stack_get(rv__worker *w, size_t size);
void rv__stack_put(rv__worker *w, rv__stack *s);
/* Release the pages of some pooled stacks beyond the resident limit (idle
 * time only). Returns true while more remain to trim. */
bool rv__stack_trim(rv__worker *w);
bool rv__stack_has_excess(const rv__worker *w);
/* Canary below each stack: checked when a task suspends and ends. */
bool rv__stack_canary_ok(const rv__stack *s);
int rv__overflow_handler_install(rv__worker *w);
void rv__overflow_handler_remove(rv__worker *w);

/* Object caches (objcache.c): fixed-size objects recycled per worker. */
void *rv__obj_alloc(int kind, size_t size);
void rv__obj_free(int kind, void *p, size_t size);
void rv__obj_caches_fini(rv_runtime *rt);

/* Live task count: spawned minus ended, summed over the workers. Never less
 * than the true count at the time of the call (ended counters are read first). */
uint64_t rv__live_tasks(rv_runtime *rt);

/* Free every fd record (runtime teardown; io/reactor.c). */
void rv__io_free_all(rv_runtime *rt);
/* Kill and reap every child still running (runtime teardown; io/process.c). */
void rv__process_reap_all(rv_runtime *rt);

/* Task registry (task.c). */
void rv__registry_add(rv__worker *w, rv_task *t);
void rv__registry_remove(rv_task *t);

#endif
