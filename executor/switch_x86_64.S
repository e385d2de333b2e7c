/* executor/switch_x86_64.S - fiber context switch for the x86-64 System V ABI.
 *
 * void rv__switch(void **save_sp, void *load_sp)
 *
 * Saves only what the ABI says a callee must preserve: rbx, rbp, r12-r15, the
 * stack pointer, and the control bits of MXCSR and the x87 control word. The
 * return address is already on the stack from the call. Everything else is
 * caller-saved, so the C compiler has spilled what it needs before calling.
 *
 * Frame left on the suspended stack, from the saved sp upward:
 *   [sp+0]  MXCSR (4 bytes), x87 control word (2 bytes), padding
 *   [sp+8]  r15, r14, r13, r12, rbx, rbp
 *   [sp+56] return address
 * rv__fiber_init() in fiber.c builds the same frame for a fiber that has not
 * run yet, with the return address pointing at rv__fiber_trampoline.
 */
    .text
    .globl rv__switch
    .hidden rv__switch
    .type rv__switch, @function
    .p2align 4
rv__switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size rv__switch, .-rv__switch

/* First code a new fiber runs: r12 holds the argument and r13 the entry
 * function (placed in the initial frame). The entry never returns. */
    .globl rv__fiber_trampoline
    .hidden rv__fiber_trampoline
    .type rv__fiber_trampoline, @function
    .p2align 4
rv__fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    xorl %ebp, %ebp
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size rv__fiber_trampoline, .-rv__fiber_trampoline

    .section .note.GNU-stack,"",@progbits
