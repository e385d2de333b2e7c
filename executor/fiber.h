/* executor/fiber.h - stackful coroutines: a saved stack pointer and a stack.
 *
 * A fiber switch is a call to rv__switch (switch_<arch>.S), which saves the
 * callee-saved registers on the current stack and resumes another stack. The
 * scheduler runs on the worker thread's own stack (the worker's "scheduler
 * fiber"); tasks switch to it to suspend and it switches to them to resume.
 *
 * Migration and thread-locals: a task may suspend on one worker thread and
 * resume on another. Compilers assume a function stays on one thread, so they
 * may keep the address of a __thread variable, or of errno, in a callee-saved
 * register across the switch call. Runtime code therefore reads its
 * thread-locals only through rv__tls_worker(), which is compiled out of line
 * with an opaque body so no caller can reuse an earlier result, and errno is
 * saved and restored per task by the scheduler (which never migrates).
 *
 * Sanitizers: ASan and TSan are told about every switch
 * (__sanitizer_*_switch_fiber, __tsan_switch_to_fiber) so that stack
 * bookkeeping and happens-before edges follow the fiber, not the thread.
 */
#ifndef RAVEL_EXECUTOR_FIBER_H
#define RAVEL_EXECUTOR_FIBER_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define RV_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define RV_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RV_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define RV_TSAN 1
#endif
#endif

typedef struct rv__fiber {
    void *sp;          /* saved stack pointer while suspended */
    void *stack_lo;    /* lowest usable byte (for the sanitizers) */
    size_t stack_size; /* usable bytes above stack_lo */
#ifdef RV_ASAN
    void *asan_fake_stack;
#endif
#ifdef RV_TSAN
    void *tsan_fiber;
    int tsan_owned; /* created by us, to destroy when the fiber ends */
#endif
} rv__fiber;

/* Describe the calling thread's own stack as a fiber (a worker's scheduler). */
void rv__fiber_init_thread(rv__fiber *f);
/* Prepare `f` to run entry(arg) on [lo, lo + size) at its first resume. */
void rv__fiber_init(rv__fiber *f, void *lo, size_t size, void (*entry)(void *), void *arg);
/* Suspend `from` and resume `to`. Returns when someone switches back to `from`. */
void rv__fiber_switch(rv__fiber *from, rv__fiber *to);
/* Leave `from` for good (it has finished) and resume `to`. Never returns. */
__attribute__((noreturn)) void rv__fiber_exit(rv__fiber *from, rv__fiber *to);
/* First thing a new fiber calls, before any other code. */
void rv__fiber_entered(void);
/* Release sanitizer state of a fiber that has exited (called by the scheduler). */
void rv__fiber_destroy(rv__fiber *f);

#endif
