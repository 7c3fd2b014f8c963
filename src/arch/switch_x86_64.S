/* switch_x86_64.S — the fiber context switch for x86-64 (System V ABI).
 *
 * A suspended context is just a stack pointer; everything else lives on its own stack:
 *
 *   sp ->  +0   MXCSR (4 bytes), x87 control word (2 bytes), 2 bytes unused
 *          +8   r15
 *          +16  r14
 *          +24  r13
 *          +32  r12
 *          +40  rbx
 *          +48  rbp
 *          +56  return address (where the context resumes)
 *
 * What is saved and why: exactly what the ABI says a callee must preserve, because the switch is
 * an ordinary function call to the compiler — rbx, rbp, r12-r15 and rsp (the stack pointer is the
 * context handle itself), plus the control bits of MXCSR (SSE rounding mode, exception masks,
 * FTZ/DAZ) and of the x87 control word (precision, rounding), which the ABI marks callee-saved.
 * Caller-saved registers (rax, rcx, rdx, rsi, rdi, r8-r11, xmm0-15, x87 stack) are dead at a call,
 * and so are the MXCSR status (exception) flags and the x87 status word.
 *
 * ldmxcsr and fldcw are slow (measured: they were 10 of 23 ns per yield here), so the resumed
 * context's saved FP control is loaded only when it differs from the running one's; with one
 * rounding mode everywhere, as in nearly every program, a switch stores it and never loads it.
 *
 * Landing pads: endbr64 opens lac_ctx_switch and lac_ctx_init, so they stay valid targets of an
 * indirect call once IBT is on, as every non-static C function is; lac_ctx_start needs none, as
 * a new context enters it by ret, which IBT does not check. The notes (gnu_property.h) mark the
 * object IBT, not SHSTK: moving between stacks with ret, without switching shadow stacks, is
 * exactly what a shadow stack forbids.
 *
 * The gdb script (tools/gdb/lacuna-gdb.py, _CONTEXTS) reads a parked fiber's registers from this
 * layout: change both together.
 *
 * No #if outside this directory: the whole file is empty on other CPUs but for its notes.
 */
#if defined(__x86_64__)

    .text

/* void lac_ctx_switch(void **save_sp, void *load_sp)
 * Save the running context on its stack and *save_sp = its stack pointer; resume load_sp. */
    .globl lac_ctx_switch
    .hidden lac_ctx_switch
    .type lac_ctx_switch, @function
    .p2align 4
lac_ctx_switch:
    .cfi_startproc
    endbr64
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movl (%rsp), %eax             /* this context's FP control, to compare with the next one's */
    movzwl 4(%rsp), %ecx
    movq %rsp, %r9                /* published below, once off this stack (parked.c: a */
    movq %rsi, %rsp               /* signal landing between would use what a release frees) */
    movq %r9, (%rdi)
    movl (%rsp), %edx
    xorl %eax, %edx
    testl $0xffc0, %edx           /* MXCSR control bits: DAZ, masks, rounding, FTZ */
    jnz .Lload_fp
    cmpw 4(%rsp), %cx
    jne .Lload_fp
.Lfp_done:
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.Lload_fp:                        /* rare: the contexts run with different FP control */
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    jmp .Lfp_done
    .cfi_endproc
    .size lac_ctx_switch, .-lac_ctx_switch

/* void *lac_ctx_init(void *stack_top, void (*entry)(void *), void *arg)
 * Build a context on a fresh stack that, when switched to, calls entry(arg) (which must never
 * return) with the caller's current MXCSR and x87 control word. Returns its stack pointer. */
    .globl lac_ctx_init
    .hidden lac_ctx_init
    .type lac_ctx_init, @function
    .p2align 4
lac_ctx_init:
    .cfi_startproc
    endbr64
    andq $-16, %rdi
    leaq -80(%rdi), %rax          /* 16 bytes of zeros on top, then the 64-byte frame */
    movq $0, 64(%rax)
    movq $0, 72(%rax)
    leaq lac_ctx_start(%rip), %rcx
    movq %rcx, 56(%rax)           /* return address */
    movq $0, 48(%rax)             /* rbp: end of the frame chain */
    movq $0, 40(%rax)             /* rbx */
    movq %rdx, 32(%rax)           /* r12 = arg */
    movq %rsi, 24(%rax)           /* r13 = entry */
    movq $0, 16(%rax)
    movq $0, 8(%rax)
    movq $0, (%rax)
    stmxcsr (%rax)
    fnstcw 4(%rax)
    ret
    .cfi_endproc
    .size lac_ctx_init, .-lac_ctx_init

/* First code a new context runs, entered by lac_ctx_switch's ret (so no endbr64): rsp is 16-byte
 * aligned here, as a call requires. */
    .type lac_ctx_start, @function
    .p2align 4
lac_ctx_start:
    .cfi_startproc
    .cfi_undefined rip            /* the outermost frame: unwinders and debuggers stop here */
    movq %r12, %rdi
    callq *%r13
    ud2                           /* entry never returns */
    .cfi_endproc
    .size lac_ctx_start, .-lac_ctx_start

#endif

#include "gnu_property.h"
