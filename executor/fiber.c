/* executor/fiber.c - see fiber.h. */
#define _GNU_SOURCE
#include "executor/fiber.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#ifdef RV_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef RV_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

void rv__switch(void **save_sp, void *load_sp);
void rv__fiber_trampoline(void);

void rv__fiber_init_thread(rv__fiber *f)
{
    memset(f, 0, sizeof *f);
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *addr;
        size_t size;
        if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
            f->stack_lo = addr;
            f->stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
#ifdef RV_TSAN
    f->tsan_fiber = __tsan_get_current_fiber();
#endif
}

void rv__fiber_init(rv__fiber *f, void *lo, size_t size, void (*entry)(void *), void *arg)
{
    memset(f, 0, sizeof *f);
    f->stack_lo = lo;
    f->stack_size = size;
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Leave 16 bytes at the very top, then the frame rv__switch pops: control
     * words, r15, r14, r13 (entry), r12 (arg), rbx, rbp, return address. After
     * the final `ret` the stack pointer is 16-byte aligned, so the trampoline's
     * call gives the entry function the alignment the ABI promises. */
    uint64_t *sp = (uint64_t *)(top - 16 - 64);
    uint32_t mxcsr = 0x1F80; /* all exceptions masked, round to nearest */
    uint16_t fpucw = 0x037F; /* x87 default: extended precision, all masked */
    sp[0] = (uint64_t)mxcsr | (uint64_t)fpucw << 32;
    sp[1] = 0;                          /* r15 */
    sp[2] = 0;                          /* r14 */
    sp[3] = (uint64_t)(uintptr_t)entry; /* r13 */
    sp[4] = (uint64_t)(uintptr_t)arg;   /* r12 */
    sp[5] = 0;                          /* rbx */
    sp[6] = 0;                          /* rbp */
    sp[7] = (uint64_t)(uintptr_t)rv__fiber_trampoline;
    f->sp = sp;
#elif defined(__aarch64__)
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)arg;                   /* x19 */
    sp[1] = (uint64_t)(uintptr_t)entry;                 /* x20 */
    sp[11] = (uint64_t)(uintptr_t)rv__fiber_trampoline; /* x30 */
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    sp[20] = fpcr;
    f->sp = sp;
#else
#error "no fiber support for this architecture"
#endif
#ifdef RV_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
    f->tsan_owned = 1;
#endif
}

void rv__fiber_switch(rv__fiber *from, rv__fiber *to)
{
#ifdef RV_ASAN
    __sanitizer_start_switch_fiber(&from->asan_fake_stack, to->stack_lo, to->stack_size);
#endif
#ifdef RV_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    rv__switch(&from->sp, to->sp);
#ifdef RV_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake_stack, NULL, NULL);
#endif
}

void rv__fiber_exit(rv__fiber *from, rv__fiber *to)
{
#ifdef RV_ASAN
    /* NULL: this stack is done; ASan may drop its fake frames. */
    __sanitizer_start_switch_fiber(NULL, to->stack_lo, to->stack_size);
#endif
#ifdef RV_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    rv__switch(&from->sp, to->sp);
    __builtin_unreachable();
}

void rv__fiber_entered(void)
{
#ifdef RV_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

void rv__fiber_destroy(rv__fiber *f)
{
#ifdef RV_TSAN
    if (f->tsan_owned && f->tsan_fiber) {
        __tsan_destroy_fiber(f->tsan_fiber);
        f->tsan_fiber = NULL;
        f->tsan_owned = 0;
    }
#else
    (void)f;
#endif
}
