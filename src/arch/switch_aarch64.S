/* switch_aarch64.S — the fiber context switch for AArch64 (AAPCS64).
 *
 * A suspended context is just a stack pointer; everything else lives on its own stack, 160 bytes
 * (a multiple of 16, as sp must stay 16-byte aligned):
 *
 *   sp ->  +0   x19 x20   +16 x21 x22   +32 x23 x24   +48 x25 x26   +64 x27 x28
 *          +80  x29 (frame pointer) x30 (link register: where the context resumes)
 *          +96  d8 d9     +112 d10 d11  +128 d12 d13  +144 d14 d15
 *
 * What is saved and why: exactly what AAPCS64 says a callee must preserve, because the switch is
 * an ordinary function call to the compiler — x19-x28, the frame pointer x29, the link register
 * x30 (the resume address), the low 64 bits of v8-v15 (d8-d15), and sp (the context handle
 * itself). x0-x18 and the other vector registers are dead at a call. FPCR (rounding mode) is not
 * switched: reading and writing it can serialise the core, and fibers rarely change it.
 *
 * Landing pads: `bti c` (written as its hint, which assemblers without BTI accept and older CPUs
 * run as a nop) opens lac_ctx_switch and lac_ctx_init, so they stay valid targets of blr or of a
 * linker veneer's br x16/x17 once BTI guards the page; lac_ctx_start needs none, as a new context
 * enters it by ret, which BTI does not check. The notes (gnu_property.h) mark the object BTI, not
 * PAC: no return address is signed here.
 *
 * The gdb script (tools/gdb/lacuna-gdb.py, _CONTEXTS) reads a parked fiber's registers from this
 * layout: change both together.
 *
 * No #if outside this directory: the whole file is empty on other CPUs but for its notes.
 */
#if defined(__aarch64__)

    .text

/* void lac_ctx_switch(void **save_sp, void *load_sp) */
    .globl lac_ctx_switch
    .hidden lac_ctx_switch
    .type lac_ctx_switch, %function
    .p2align 4
lac_ctx_switch:
    .cfi_startproc
    hint #34                      /* bti c */
    sub sp, sp, #160
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
    mov x2, sp
    mov sp, x1                    /* off this stack before its sp is published (parked.c) */
    str x2, [x0]
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
    add sp, sp, #160
    ret
    .cfi_endproc
    .size lac_ctx_switch, .-lac_ctx_switch

/* void *lac_ctx_init(void *stack_top, void (*entry)(void *), void *arg)
 * Build a context on a fresh stack that, when switched to, calls entry(arg) (which must never
 * return). Returns its stack pointer. */
    .globl lac_ctx_init
    .hidden lac_ctx_init
    .type lac_ctx_init, %function
    .p2align 4
lac_ctx_init:
    .cfi_startproc
    hint #34                      /* bti c */
    and x0, x0, #~15
    sub x0, x0, #176              /* 16 bytes of zeros on top, then the 160-byte frame */
    stp xzr, xzr, [x0, #160]
    stp x2, x1, [x0, #0]          /* x19 = arg, x20 = entry */
    stp xzr, xzr, [x0, #16]
    stp xzr, xzr, [x0, #32]
    stp xzr, xzr, [x0, #48]
    stp xzr, xzr, [x0, #64]
    adr x3, lac_ctx_start
    stp xzr, x3, [x0, #80]        /* x29 = 0 ends the frame chain, x30 = lac_ctx_start */
    stp xzr, xzr, [x0, #96]
    stp xzr, xzr, [x0, #112]
    stp xzr, xzr, [x0, #128]
    stp xzr, xzr, [x0, #144]
    ret
    .cfi_endproc
    .size lac_ctx_init, .-lac_ctx_init

/* First code a new context runs, entered by lac_ctx_switch's ret (so no bti). */
    .type lac_ctx_start, %function
    .p2align 4
lac_ctx_start:
    .cfi_startproc
    .cfi_undefined x30            /* the outermost frame */
    mov x0, x19
    blr x20
    brk #0                        /* entry never returns */
    .cfi_endproc
    .size lac_ctx_start, .-lac_ctx_start

#endif

#include "gnu_property.h"
