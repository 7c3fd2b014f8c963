/* lacuna_go_opts: per-fiber stack sizes (a pool per size class, made on first use), names, flags;
 * a fiber's stack really has the size asked for (deep recursion fits; an overflow is reported
 * with the fiber's name), and ended fibers' spare stacks never cross classes. */
#define _GNU_SOURCE
#include "test.h"

#include <stdint.h>
#include <sys/wait.h>

#define KIB 1024u

/* The pool and region the calling fiber's stack is in, by a local's address. */
static size_t my_stack_size(size_t asked)
{
    volatile char here = 0;
    lacuna_pool *p = lacuna_fiber_pool_for(asked);
    CHECK(p != NULL);
    CHECK(lacuna_region_index(p, (const void *)&here) >= 0);
    return lt_stats(p).region_size;
}

static size_t asked_size;
static void *report_size(void *unused)
{
    (void)unused;
    return (void *)(uintptr_t)my_stack_size(asked_size);
}

static size_t run_with(size_t size)
{
    asked_size = size;
    lacuna_fiber_opts o = {.stack_size = size};
    lacuna_fiber *f = lacuna_go_opts(&o, report_size, NULL);
    CHECK(f != NULL);
    return (size_t)(uintptr_t)lacuna_join(f);
}

TEST(stack_sizes_round_up_to_their_class)
{
    CHECK_EQ(run_with(0), 64 * KIB); /* the default pool */
    CHECK_EQ(run_with(64 * KIB), 64 * KIB);
    CHECK_EQ(run_with(1), 16 * KIB);
    CHECK_EQ(run_with(16 * KIB), 16 * KIB);
    CHECK_EQ(run_with(100 * KIB), 128 * KIB);
    CHECK_EQ(run_with(1024 * KIB), 1024 * KIB);
    CHECK_EQ(run_with(LACUNA_FIBER_STACK_MAX), LACUNA_FIBER_STACK_MAX);
    CHECK(lacuna_fiber_pool_for(64 * KIB) == lacuna_fiber_pool());
    CHECK(lacuna_fiber_pool_for(20 * KIB) == lacuna_fiber_pool_for(32 * KIB));
    CHECK(lacuna_fiber_pool_for(20 * KIB) != lacuna_fiber_pool_for(16 * KIB));
}

TEST(bad_options_are_einval)
{
    lacuna_fiber_opts big = {.stack_size = LACUNA_FIBER_STACK_MAX + 1};
    errno = 0;
    CHECK(lacuna_go_opts(&big, report_size, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    lacuna_fiber_opts flags = {.flags = 0x80};
    errno = 0;
    CHECK(lacuna_go_opts(&flags, report_size, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(lacuna_fiber_pool_for(LACUNA_FIBER_STACK_MAX + 1) == NULL);
    CHECK_EQ(errno, EINVAL);
    lacuna_fiber_opts pinned = {.flags = LACUNA_FIBER_PINNED, .name = "pinned"};
    asked_size = 0;
    lacuna_fiber *f = lacuna_go_opts(&pinned, report_size, NULL);
    CHECK(f != NULL);
    CHECK_EQ((size_t)(uintptr_t)lacuna_join(f), 64 * KIB);
    asked_size = 0;
    f = lacuna_go_opts(NULL, report_size, NULL); /* NULL options: lacuna_go */
    CHECK(f != NULL);
    CHECK_EQ((size_t)(uintptr_t)lacuna_join(f), 64 * KIB);
}

/* ~1 MiB of frames: fits a 2 MiB stack, would overflow the default 64 KiB one many times over. */
static int deep(int n)
{
    volatile char pad[1000];
    pad[0] = (char)n;
    return n == 0 ? 0 : deep(n - 1) + pad[0] - (char)n + 1;
}
static void *go_deep(void *n)
{
    return (void *)(uintptr_t)deep((int)(uintptr_t)n);
}

TEST(a_big_stack_holds_deep_recursion)
{
    lacuna_fiber_opts o = {.stack_size = 2048 * KIB, .name = "deep"};
    lacuna_fiber *f = lacuna_go_opts(&o, go_deep, (void *)(uintptr_t)1000);
    CHECK(f != NULL);
    CHECK_EQ((uintptr_t)lacuna_join(f), 1000);
}

static void small_overflows(void *unused)
{
    (void)unused;
    lacuna_fiber_opts o = {.stack_size = 16 * KIB, .name = "small-one"};
    lacuna_fiber *f = lacuna_go_opts(&o, go_deep, (void *)(uintptr_t)100); /* ~100 KiB */
    lacuna_join(f);
}

TEST(an_overflow_in_a_class_stack_names_the_fiber)
{
    if (LT_SANITIZED)
        SKIP("the sanitizers report the overflow themselves");
    char err[1024];
    int st = lt_fork_run(small_overflows, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    if (!strstr(err, "lacuna: stack overflow in fiber \"small-one\"")) {
        fprintf(stderr, "stderr:\n%s", err);
        CHECK(0);
    }
}

/* Ended fibers' stacks are kept for the next spawns: never for a fiber of another class. */
static void *end_now(void *size)
{
    CHECK_EQ(my_stack_size((size_t)(uintptr_t)size), (size_t)(uintptr_t)size);
    return NULL;
}

static void *alternate(void *unused)
{
    (void)unused;
    for (int i = 0; i < 1000; i++) {
        size_t size = i % 3 == 0 ? 16 * KIB : i % 3 == 1 ? 64 * KIB : 256 * KIB;
        lacuna_fiber_opts o = {.stack_size = size};
        CHECK_EQ(lacuna_detach(lacuna_go_opts(&o, end_now, (void *)(uintptr_t)size)), 0);
    }
    return NULL;
}

TEST(spare_stacks_stay_in_their_class)
{
    CHECK(lacuna_join(lacuna_go(alternate, NULL)) == NULL);
    CHECK_EQ(lt_stats(lacuna_fiber_pool_for(16 * KIB)).live, 0);
    CHECK_EQ(lt_stats(lacuna_fiber_pool_for(256 * KIB)).live, 0);
    CHECK_EQ(lt_stats(lacuna_fiber_pool()).live, 0);
}

/* A LACUNA_ZERO stack pool's promise holds for fibers too: an ended fiber's stack is never handed
 * to the next spawn without going through the pool, which zeroes it. */
static void *scribble(void *unused)
{
    (void)unused;
    volatile char secret[6000];
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (char)0xAA;
    return NULL;
}

static void *look_below(void *unused)
{
    (void)unused;
    const volatile char *sp = __builtin_frame_address(0);
    size_t dirty = 0;
    for (const volatile char *q = sp - 9000; q < sp - 1000; q++) /* inside the 16 KiB region */
        dirty += *q == (char)0xAA;
    return (void *)(uintptr_t)dirty;
}

TEST(zeroed_stack_pools_keep_no_spares)
{
    if (LT_SANITIZED)
        SKIP("sanitizers keep their own frames on fiber stacks");
    lacuna_pool_config c = {.region_size = 16 * KIB, .flags = LACUNA_ZERO};
    CHECK_EQ(lacuna_fiber_configure(&c), 0);
    for (int i = 0; i < 20; i++) {
        CHECK(lacuna_join(lacuna_go(scribble, NULL)) == NULL);
        CHECK_EQ((uintptr_t)lacuna_join(lacuna_go(look_below, NULL)), 0);
    }
}
