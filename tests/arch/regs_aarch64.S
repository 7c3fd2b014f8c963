/* Test helper for test_fiber_switch (AArch64): see regs_x86_64.S for the contract.
 * Sets x19-x28 to seed+0..9, x29 to seed+10 and d8-d15 to the bit patterns seed+11..18.
 * Returns n = 19, m = 0 (FPCR is not switched on AArch64). */
#if defined(__aarch64__)
    .text
    .globl lt_regs_switch
    .type lt_regs_switch, %function
    .p2align 4
lt_regs_switch:
    .cfi_startproc
    stp x29, x30, [sp, #-176]!
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]
    stp x23, x24, [sp, #48]
    stp x25, x26, [sp, #64]
    stp x27, x28, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    str x3, [sp, #160]
    mov x19, x0
    add x20, x0, #1
    add x21, x0, #2
    add x22, x0, #3
    add x23, x0, #4
    add x24, x0, #5
    add x25, x0, #6
    add x26, x0, #7
    add x27, x0, #8
    add x28, x0, #9
    add x29, x0, #10
    add x9, x0, #11
    fmov d8, x9
    add x9, x0, #12
    fmov d9, x9
    add x9, x0, #13
    fmov d10, x9
    add x9, x0, #14
    fmov d11, x9
    add x9, x0, #15
    fmov d12, x9
    add x9, x0, #16
    fmov d13, x9
    add x9, x0, #17
    fmov d14, x9
    add x9, x0, #18
    fmov d15, x9
    mov x0, x1
    mov x1, x2
    bl lac_ctx_switch
    ldr x3, [sp, #160]
    stp x19, x20, [x3, #0]
    stp x21, x22, [x3, #16]
    stp x23, x24, [x3, #32]
    stp x25, x26, [x3, #48]
    stp x27, x28, [x3, #64]
    str x29, [x3, #80]
    fmov x9, d8
    str x9, [x3, #88]
    fmov x9, d9
    str x9, [x3, #96]
    fmov x9, d10
    str x9, [x3, #104]
    fmov x9, d11
    str x9, [x3, #112]
    fmov x9, d12
    str x9, [x3, #120]
    fmov x9, d13
    str x9, [x3, #128]
    fmov x9, d14
    str x9, [x3, #136]
    fmov x9, d15
    str x9, [x3, #144]
    ldp x19, x20, [sp, #16]
    ldp x21, x22, [sp, #32]
    ldp x23, x24, [sp, #48]
    ldp x25, x26, [sp, #64]
    ldp x27, x28, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    ldp x29, x30, [sp], #176
    mov x0, #19
    ret
    .cfi_endproc
    .size lt_regs_switch, .-lt_regs_switch
/* unsigned lt_fp_control_switched(void): 1 if the switch keeps FP control (rounding) per context */
    .globl lt_fp_control_switched
    .type lt_fp_control_switched, %function
lt_fp_control_switched:
    mov x0, #0
    ret
    .size lt_fp_control_switched, .-lt_fp_control_switched
#endif
    .section .note.GNU-stack,"",%progbits
