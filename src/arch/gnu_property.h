/* gnu_property.h — the notes every assembly file of lacuna carries, for the CPU being built.
 * Included once at the end of each switch_*.S here, outside that file's own #if: assembler only.
 *
 * .note.gnu.property: the linker ANDs each feature bit over all its input objects, so a single
 * object without the note (one of these files, even when it is empty on the other CPU) takes
 * IBT or BTI away from liblacuna.so and from every program linked with it, silently. The note
 * claims only what the code does:
 *   x86-64  GNU_PROPERTY_X86_FEATURE_1_AND = IBT. Not SHSTK: a context switch moves between
 *           stacks with ret and does not switch shadow stacks, so under a shadow stack the first
 *           switch would die by a control-protection fault. A program marked SHSTK that links
 *           lacuna comes out unmarked, and the kernel then runs it without shadow stacks.
 *   AArch64 GNU_PROPERTY_AARCH64_FEATURE_1_AND = BTI. Not PAC: the switch signs no return
 *           address (PAC there is per function anyway; the bit is informational).
 * .note.GNU-stack: no executable stack.
 */
#if defined(__x86_64__) || defined(__aarch64__)
#if defined(__x86_64__)
#define LAC_PROPERTY_TYPE 0xc0000002 /* GNU_PROPERTY_X86_FEATURE_1_AND */
#define LAC_PROPERTY_BITS 1          /* GNU_PROPERTY_X86_FEATURE_1_IBT */
#else
#define LAC_PROPERTY_TYPE 0xc0000000 /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
#define LAC_PROPERTY_BITS 1          /* GNU_PROPERTY_AARCH64_FEATURE_1_BTI */
#endif
    .section .note.gnu.property, "a"
    .p2align 3
    .long 4                       /* n_namesz: "GNU\0" */
    .long 16                      /* n_descsz: one property, padded to 8 bytes */
    .long 5                       /* n_type: NT_GNU_PROPERTY_TYPE_0 */
    .asciz "GNU"
    .long LAC_PROPERTY_TYPE       /* pr_type */
    .long 4                       /* pr_datasz */
    .long LAC_PROPERTY_BITS       /* pr_data */
    .long 0                       /* padding to 8 bytes (ELF64) */
#endif

    .section .note.GNU-stack, "", %progbits
