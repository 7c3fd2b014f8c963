/* Guards really fault, in a forked child; the overflow handler names the region and still dies by
 * SIGSEGV; faults elsewhere pass through to the previous handler unchanged. */
#define _GNU_SOURCE
#include "internal.h" /* lac_overflow_*: the registry the handler reads */
#include "lacuna.h"
#include "test.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define KIB 1024u

static lacuna_pool *make(lacuna_guard g)
{
    lacuna_pool_config c = {.region_size = 64 * KIB, .capacity = 16, .guard = g};
    lacuna_pool *p = NULL;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    return p;
}

static void write_below(void *arg)
{
    lacuna_pool *p = make(*(lacuna_guard *)arg);
    char *a = lacuna_alloc(p);
    char *b = lacuna_alloc(p);
    (void)a;
    ((volatile char *)b)[-1] = 1; /* the last byte of b's guard */
}

static void expect_guard(lacuna_guard g, int dies)
{
    char err[1024];
    int st = lt_fork_run(write_below, &g, err, sizeof err);
    if (dies) {
        CHECK(WIFSIGNALED(st));
        CHECK_EQ(WTERMSIG(st), SIGSEGV);
    } else {
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

TEST(guard_write_dies)
{
    expect_guard(LACUNA_GUARD_DEFAULT, 1);
    expect_guard(LACUNA_GUARD_MPROTECT, 1);
    expect_guard(LACUNA_GUARD_NONE, 0);
    lacuna_features f;
    lacuna_features_get(&f);
    if (f.guard_marker)
        expect_guard(LACUNA_GUARD_MARKER, 1);
}

static void handler_then_overflow(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    lacuna_pool *p = make(LACUNA_GUARD_DEFAULT);
    char *r[3];
    for (int i = 0; i < 3; i++)
        r[i] = lacuna_alloc(p);
    fprintf(stderr, "pool %p region %ld\n", (void *)p, lacuna_region_index(p, r[2]));
    ((volatile char *)r[2])[-100] = 1;
}

/* The main thread's stack is not in the pool: a write into the guard below region 2 is a write
 * past the end of region 1, not an overflow of region 2's stack. */
TEST(handler_names_region)
{
    char err[1024];
    int st = lt_fork_run(handler_then_overflow, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    void *pool;
    long idx;
    CHECK(sscanf(err, "pool %p region %ld", &pool, &idx) == 2);
    char want[200];
    snprintf(want, sizeof want,
             "lacuna: write past the end of region %ld of pool %p (into the guard of region %ld, "
             "fault at 0x",
             idx - 1, pool, idx);
    if (!strstr(err, want)) {
        fprintf(stderr, "child stderr:\n%s\nwanted: %s\n", err, want);
        CHECK(0);
    }
}

/* A real overflow: recursion on a pool region used as a stack. */
static ucontext_t main_ctx, fiber_ctx;
static int depth(int n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    return n == 0 ? 0 : depth(n - 1) + pad[0];
}
static void recurse(void)
{
    depth(1 << 20);
}
static void overflow_on_pool_stack(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    lacuna_pool *p = make(LACUNA_GUARD_DEFAULT);
    char *below = lacuna_alloc(p), *stk = lacuna_alloc(p);
    (void)below;
    getcontext(&fiber_ctx);
    fiber_ctx.uc_stack.ss_sp = stk;
    fiber_ctx.uc_stack.ss_size = 64 * KIB;
    fiber_ctx.uc_link = &main_ctx;
    makecontext(&fiber_ctx, recurse, 0);
    swapcontext(&main_ctx, &fiber_ctx);
    fprintf(stderr, "returned?!\n");
}

TEST(recursion_hits_guard)
{
#if defined(__SANITIZE_ADDRESS__)
    SKIP("ASan does not follow swapcontext onto a pool stack here; fiber tests cover it");
#endif
    char err[1024];
    int st = lt_fork_run(overflow_on_pool_stack, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK(strstr(err, "lacuna: stack overflow in region 1 of pool") != NULL);
}

/* Code running on region 0 as its stack writes upwards past the region's end, into the guard of
 * region 1: the report names region 0 (the faulting stack pointer is there), not an overflow of
 * region 1. */
static char *overrun_target;
static void overrun_up(void)
{
    volatile char *p = (volatile char *)overrun_target;
    for (size_t i = 0;; i += 64) /* walks up from region 0's top into the guard above it */
        p[i] = 1;
}
static void overrun_on_pool_stack(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    lacuna_pool *p = make(LACUNA_GUARD_DEFAULT);
    char *stk = lacuna_alloc(p), *above = lacuna_alloc(p);
    CHECK_EQ(lacuna_region_index(p, stk), 0);
    CHECK_EQ(lacuna_region_index(p, above), 1);
    overrun_target = stk + 64 * KIB - 256;
    getcontext(&fiber_ctx);
    fiber_ctx.uc_stack.ss_sp = stk;
    fiber_ctx.uc_stack.ss_size = 32 * KIB; /* the stack pointer stays well inside region 0 */
    fiber_ctx.uc_link = &main_ctx;
    makecontext(&fiber_ctx, overrun_up, 0);
    swapcontext(&main_ctx, &fiber_ctx);
    fprintf(stderr, "returned?!\n");
}

TEST(overrun_up_names_the_region_below)
{
#if defined(__SANITIZE_ADDRESS__)
    SKIP("ASan does not follow swapcontext onto a pool stack here; fiber tests cover it");
#endif
    char err[1024];
    int st = lt_fork_run(overrun_on_pool_stack, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    if (!strstr(err, "lacuna: write past the end of region 0 of pool") ||
        !strstr(err, "into the guard of region 1")) {
        fprintf(stderr, "child stderr:\n%s\n", err);
        CHECK(0);
    }
}

static volatile uintptr_t bad_address = 16; /* opaque to the compiler */

static void user_handler(int sig)
{
    (void)sig;
    _exit(42);
}

static void foreign_fault(void *arg)
{
    (void)arg;
    signal(SIGSEGV, user_handler); /* installed before lacuna's: must still get its faults */
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    lacuna_pool *p = make(LACUNA_GUARD_DEFAULT);
    (void)lacuna_alloc(p);
    *(volatile int *)bad_address = 1;
}

TEST(other_faults_pass_through)
{
    char err[1024];
    int st = lt_fork_run(foreign_fault, NULL, err, sizeof err);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 42);
    CHECK(strstr(err, "lacuna:") == NULL);
}

static void plain_fault(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    *(volatile int *)bad_address = 1;
}

TEST(other_faults_default_action)
{
    char err[1024];
    int st = lt_fork_run(plain_fault, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK(strstr(err, "lacuna:") == NULL);
}

static void *thread_overflow(void *arg)
{
    lacuna_pool *p = arg;
    CHECK_EQ(lacuna_overflow_handler_install(), 0); /* per thread: its own alternate stack */
    char *r = lacuna_alloc(p);
    ((volatile char *)r)[-1] = 1;
    return NULL;
}

static void overflow_in_thread(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    lacuna_pool *p = make(LACUNA_GUARD_DEFAULT);
    pthread_t t;
    pthread_create(&t, NULL, thread_overflow, p);
    pthread_join(t, NULL);
}

TEST(handler_on_other_thread)
{
    char err[1024];
    int st = lt_fork_run(overflow_in_thread, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK(strstr(err, "lacuna: stack overflow in region 0 of pool") != NULL);
}

/* mprotect guards stop at the budget: the rest are handed out unguarded and counted. */
static void budget(void *arg)
{
    (void)arg;
    lacuna_features f;
    lacuna_features_get(&f);
    size_t n = f.mprotect_guard_budget + 100;
    lacuna_pool_config c = {.region_size = 4 * KIB, .capacity = n, .guard = LACUNA_GUARD_MPROTECT};
    lacuna_pool *p;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    long vmas0 = lt_vma_count();
    for (size_t i = 0; i < n; i++)
        CHECK(lacuna_alloc(p) != NULL);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.unguarded, 100);
    VMA_CHECK(lt_vma_count() - vmas0 <= (long)(2 * f.mprotect_guard_budget + 2));
    VMA_CHECK(lt_vma_count() < (long)f.max_map_count / 2);
    lacuna_pool_destroy(p);
    /* the budget is given back with the pool */
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    CHECK(lacuna_alloc(p) != NULL);
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.unguarded, 0);
    lacuna_pool_destroy(p);
}

TEST(mprotect_budget)
{
    char err[4096];
    int st = lt_fork_run(budget, NULL, err, sizeof err);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "%s", err);
        CHECK(0);
    }
}

/* A report racing one pool's destruction and the next one's creation in the same registry entry
 * names a region of one geometry or of the other, never a mix of the two (the entry's sequence
 * count). Two fake geometries over the same base: a (stride 8 KiB, first index 0) and b (16 KiB,
 * first index 5000); the address is the guard of region 10 of a and of region 5005 of b, so a mix
 * would say 5010 or 5. The registry is only read: nothing is mapped there. */
static _Atomic int swap_stop;
static _Atomic long swaps; /* geometry changes made so far */
static char fake_pool;
#define FAKE_BASE ((uintptr_t)1 << 44)

/* Keep a geometry a moment, as a pool lives: the reports mostly see settled entries. */
static void hold(void)
{
    for (volatile int i = 0; i < 200; i++)
        ;
}

static void *swap_geometry(void *arg)
{
    (void)arg;
    const lacuna_pool *p = (const lacuna_pool *)(void *)&fake_pool;
    while (!atomic_load(&swap_stop)) {
        CHECK_EQ(lac_overflow_register(p, FAKE_BASE, 64 * 8 * KIB, 8 * KIB, 4 * KIB, 0), 0);
        hold();
        lac_overflow_unregister(p);
        CHECK_EQ(lac_overflow_register(p, FAKE_BASE, 64 * 16 * KIB, 16 * KIB, 4 * KIB, 5000), 0);
        hold();
        lac_overflow_unregister(p);
        atomic_fetch_add(&swaps, 1);
    }
    return NULL;
}

TEST(report_never_mixes_two_pools_geometry)
{
    char path[] = "/tmp/lacuna-test-guard-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    CHECK(dup2(fd, STDERR_FILENO) == STDERR_FILENO); /* the reports, to read back */
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, swap_geometry, NULL), 0);
    while (atomic_load(&swaps) == 0)
        sched_yield();
    /* Side by side for 200,000 looks and 50,000 swaps at least (whichever thread is slower). */
    long reported = 0, looks = 0;
    for (long s0 = atomic_load(&swaps); looks < 200000 || atomic_load(&swaps) - s0 < 50000; looks++)
        reported += lac_overflow_report(FAKE_BASE + 5 * 16 * KIB, 0);
    atomic_store(&swap_stop, 1);
    pthread_join(t, NULL);
    CHECK(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    FILE *f = fdopen(fd, "r");
    CHECK(f != NULL);
    rewind(f);
    char line[256];
    long lines = 0, a = 0, b = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        bool of_a = strstr(line, "region 10 of pool") != NULL;
        bool of_b = strstr(line, "region 5005 of pool") != NULL;
        a += of_a;
        b += of_b;
        if (!of_a && !of_b && lines - a - b == 1) /* the first mixed one */
            fprintf(stderr, "a mixed report: %s", line);
    }
    fclose(f);
    CHECK_EQ(lines, reported);
    CHECK_EQ(a + b, lines); /* every report names a region of a or of b */
    CHECK(lines > 0);
}
