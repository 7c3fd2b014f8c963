/* The context switch keeps what the ABI says a call keeps: callee-saved registers (checked at the
 * register level by tests/arch/regs_*.S, with nothing compiled in between), floating-point
 * control state (rounding mode in MXCSR and the x87 control word, where the CPU's switch saves
 * them), and whatever the compiler keeps live across lacuna_yield. */
#define _GNU_SOURCE
#include "internal.h"
#include "lacuna.h"
#include "test.h"

#include <fenv.h>
#include <stdint.h>

unsigned lt_regs_switch(uint64_t seed, void **save_sp, void *load_sp, uint64_t out[32]);
unsigned lt_fp_control_switched(void);

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LT_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define LT_TSAN 1
#endif

static void *main_sp, *other_sp;
static uint64_t other_out[32];
static _Alignas(16) char other_stack[64 * 1024];
#define OTHER_SEED 0xbbbbbbbb00000002ull /* rounding mode 2 on the other side */

static void other_side(void *arg)
{
    (void)arg;
    for (;;) /* clobber everything with another pattern, then switch back */
        lt_regs_switch(OTHER_SEED, &other_sp, main_sp, other_out);
}

static void check_regs(unsigned shape, uint64_t seed, const uint64_t *out)
{
    unsigned n = shape & 0xff, m = shape >> 8;
    CHECK(n >= 6);
    for (unsigned i = 0; i < n; i++)
        CHECK_EQ(out[i], seed + i);
    for (unsigned i = 0; i < m; i++)
        CHECK_EQ(out[n + i], seed & 3);
}

TEST(raw_switch_preserves_callee_saved_and_fp_control)
{
#ifdef LT_TSAN
    SKIP("raw lac_ctx_switch bypasses TSan's fiber annotations (the runtime tests cover TSan)");
#endif
    other_sp = lac_ctx_init(other_stack + sizeof other_stack, other_side, NULL);
    uint64_t seeds[] = {0xa5a5a5a500000001ull, 0x1234567800000003ull, 0x7777000000000000ull,
                        0xfedcba9800000001ull};
    for (int round = 0; round < 4; round++) {
        uint64_t out[32] = {0};
        unsigned shape = lt_regs_switch(seeds[round], &main_sp, other_sp, out);
        check_regs(shape, seeds[round], out);
        if (round > 0) /* the other side was resumed by this round's switch */
            check_regs(shape, OTHER_SEED, other_out);
    }
}

/* ---- through the scheduler ---------------------------------------------------------------- */

static void *many_locals(void *arg)
{
    uint64_t k = (uintptr_t)arg;
    uint64_t a = k * 3, b = k * 5 + 1, c = k ^ 0x5555, d = k << 7, e = ~k, f = k * k;
    double x = (double)k * 0.5, y = (double)k + 0.25, z = 1.0 / ((double)k + 1.0);
    for (int i = 0; i < 100; i++) {
        lacuna_yield();
        a += 1, b += 2, c += 3, d += 4, e += 5, f += 6;
        x += 1.0, y *= 1.0, z += 0.0;
    }
    CHECK_EQ(a, k * 3 + 100);
    CHECK_EQ(b, k * 5 + 1 + 200);
    CHECK_EQ(c, (k ^ 0x5555) + 300);
    CHECK_EQ(d, (k << 7) + 400);
    CHECK_EQ(e, ~k + 500);
    CHECK_EQ(f, k * k + 600);
    CHECK(x == (double)k * 0.5 + 100.0);
    CHECK(y == (double)k + 0.25);
    CHECK(z == 1.0 / ((double)k + 1.0));
    return NULL;
}

TEST(yield_preserves_live_values)
{
    lacuna_fiber *f[64];
    for (uintptr_t i = 0; i < 64; i++)
        f[i] = lacuna_go(many_locals, (void *)(i * 0x10001 + 7));
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < 64; i++)
        CHECK(lacuna_join(f[i]) == NULL);
}

static const int modes[] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};

/* 1/3 rounded by the current mode: up and down differ in the last bit. */
static double third(void)
{
    volatile double one = 1.0, three = 3.0;
    return one / three;
}

static void *rounding(void *arg)
{
    int mode = modes[(uintptr_t)arg % 4];
    CHECK_EQ(fesetround(mode), 0);
    double want = third();
    for (int i = 0; i < 50; i++) {
        lacuna_yield();
        CHECK_EQ(fegetround(), mode);
        CHECK(third() == want);
    }
    return NULL;
}

TEST(yield_preserves_rounding_mode)
{
    if (!lt_fp_control_switched())
        SKIP("this CPU's switch does not keep FP control per fiber (see src/arch)");
    lacuna_fiber *f[16];
    for (uintptr_t i = 0; i < 16; i++)
        f[i] = lacuna_go(rounding, (void *)i);
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < 16; i++)
        CHECK(lacuna_join(f[i]) == NULL);
    CHECK_EQ(fegetround(), FE_TONEAREST); /* the thread's own mode is untouched */
}

static void *report_mode(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)fegetround();
}

TEST(new_fiber_inherits_rounding_mode)
{
    if (!lt_fp_control_switched())
        SKIP("this CPU's switch does not keep FP control per fiber (see src/arch)");
    CHECK_EQ(fesetround(FE_UPWARD), 0);
    lacuna_fiber *f = lacuna_go(report_mode, NULL);
    CHECK_EQ(fesetround(FE_TONEAREST), 0);
    CHECK_EQ((intptr_t)lacuna_join(f), FE_UPWARD);
}
