/* executor/switch_aarch64.S - fiber context switch for AArch64 (AAPCS64).
 *
 * void rv__switch(void **save_sp, void *load_sp)
 *
 * Saves the callee-saved registers x19-x28, the frame pointer x29, the link
 * register x30 (our return address), the low halves d8-d15 of v8-v15, and
 * FPCR. Frame on the suspended stack (176 bytes, 16-byte aligned):
 *   [sp+0]   x19 x20 x21 x22 x23 x24 x25 x26 x27 x28 x29 x30
 *   [sp+96]  d8 .. d15
 *   [sp+160] fpcr
 * rv__fiber_init() builds the same frame for a new fiber with x30 pointing at
 * rv__fiber_trampoline, x19 the argument and x20 the entry function.
 */
    .text
    .globl rv__switch
    .hidden rv__switch
    .type rv__switch, %function
    .p2align 4
rv__switch:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x9, fpcr
    str x9, [sp, #160]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldr x9, [sp, #160]
    msr fpcr, x9
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    ret
    .size rv__switch, .-rv__switch

    .globl rv__fiber_trampoline
    .hidden rv__fiber_trampoline
    .type rv__fiber_trampoline, %function
    .p2align 4
rv__fiber_trampoline:
    mov x29, #0
    mov x30, #0
    mov x0, x19
    blr x20
    brk #0
    .size rv__fiber_trampoline, .-rv__fiber_trampoline

    .section .note.GNU-stack,"",%progbits
