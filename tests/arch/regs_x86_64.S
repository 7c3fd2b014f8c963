/* Test helper for test_fiber_switch (x86-64): fill every register the context switch must
 * preserve with a pattern, switch away with lac_ctx_switch, and record what they hold once
 * something switches back — no compiled code in between that could save and restore them.
 *
 * unsigned lt_regs_switch(uint64_t seed, void **save_sp, void *load_sp, uint64_t out[32])
 * Sets rbx, rbp, r12-r15 to seed+0..5, MXCSR and the x87 control word to rounding mode seed&3.
 * Returns n | m << 8: out[0..n) must equal seed+i, out[n..n+m) must equal seed&3 (the rounding
 * mode read back from MXCSR and from the x87 control word). Restores the caller's state. */
#if defined(__x86_64__)
    .text
    .globl lt_regs_switch
    .type lt_regs_switch, @function
    .p2align 4
lt_regs_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $24, %rsp                 /* 16-byte aligned again: 8 + 48 + 24 */
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rcx, 8(%rsp)
    movl %edi, %eax
    andl $3, %eax
    shll $13, %eax
    orl $0x1f80, %eax
    movl %eax, 16(%rsp)
    ldmxcsr 16(%rsp)
    movl %edi, %eax
    andl $3, %eax
    shll $10, %eax
    orl $0x037f, %eax
    movw %ax, 20(%rsp)
    fldcw 20(%rsp)
    movq %rdi, %rbx
    leaq 1(%rdi), %rbp
    leaq 2(%rdi), %r12
    leaq 3(%rdi), %r13
    leaq 4(%rdi), %r14
    leaq 5(%rdi), %r15
    movq %rsi, %rdi
    movq %rdx, %rsi
    call lac_ctx_switch
    movq 8(%rsp), %rcx
    movq %rbx, 0(%rcx)
    movq %rbp, 8(%rcx)
    movq %r12, 16(%rcx)
    movq %r13, 24(%rcx)
    movq %r14, 32(%rcx)
    movq %r15, 40(%rcx)
    stmxcsr 16(%rsp)
    movl 16(%rsp), %eax
    shrl $13, %eax
    andl $3, %eax
    movq %rax, 48(%rcx)
    fnstcw 20(%rsp)
    movzwl 20(%rsp), %eax
    shrl $10, %eax
    andl $3, %eax
    movq %rax, 56(%rcx)
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $24, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    movl $(6 | 2 << 8), %eax
    ret
    .cfi_endproc
    .size lt_regs_switch, .-lt_regs_switch
/* unsigned lt_fp_control_switched(void): 1 if the switch keeps FP control (rounding) per context */
    .globl lt_fp_control_switched
    .type lt_fp_control_switched, @function
lt_fp_control_switched:
    movl $1, %eax
    ret
    .size lt_fp_control_switched, .-lt_fp_control_switched
#endif
    .section .note.GNU-stack,"",%progbits
