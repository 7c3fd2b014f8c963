/* Injected syscall failures (src/os.c's fault injector, built with -DLACUNA_FAULT_INJECTION=ON):
 * for each primitive (reserve, release, guard) and each errno the kernel may give (ENOMEM, EAGAIN,
 * EINVAL, EPERM) the pool stays consistent. A create that fails leaves nothing mapped; a release
 * that fails leaves its regions warm, retried by the next release round, never handed out twice
 * and, under LACUNA_ZERO, never handed out with old data; a guard that cannot be installed makes
 * lacuna_alloc fail with ENOMEM and the slot is retried; a partial process_madvise is completed.
 * Effects are read from the kernel (mincore, /proc/self/maps, write() from a guard page). */
#define _GNU_SOURCE
#include "internal.h"
#include "test.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define KIB 1024u
#define PG  4096u

static const int errnos[] = {ENOMEM, EAGAIN, EINVAL, EPERM};
#define NERRNOS (sizeof errnos / sizeof errnos[0])

/* Skip unless the injector is compiled in: a reserve fault must make create fail. */
static void need_injector(void)
{
    lacuna_pool_config c = {.region_size = 4 * KIB, .capacity = 4};
    lacuna_pool *p = NULL;
    lac_fault_inject(LAC_OP_RESERVE, 1, ENOMEM);
    int rc = lacuna_pool_create(&c, &p);
    lac_fault_inject(LAC_OP_RESERVE, 0, 0);
    if (rc == 0) {
        lacuna_pool_destroy(p);
        SKIP("built without LACUNA_FAULT_INJECTION (the os-layer fault injector is compiled out)");
    }
}

/* Resident pages of all regions of a pool (guards hold none). */
static size_t pool_resident(const lacuna_pool *p, char *any_region)
{
    lacuna_stats st = lt_stats(p);
    long idx = lacuna_region_index(p, any_region);
    CHECK(idx >= 0);
    char *first = any_region - (size_t)idx * st.stride;
    return lt_resident_pages(first, st.capacity * st.stride - st.guard_size);
}

/* ---- create --------------------------------------------------------------------------------- */

TEST(create_failure_maps_nothing)
{
    need_injector();
    lacuna_features f;
    lacuna_features_get(&f);
    (void)lt_vma_count(); /* stdio's buffers exist before the first count */
    for (size_t e = 0; e < NERRNOS; e++) {
        for (unsigned nth = 1; nth <= 2; nth++) { /* the side tables, then the reservation */
            for (unsigned flags = 0; flags <= LACUNA_BACKGROUND; flags += LACUNA_BACKGROUND) {
                long vmas = lt_vma_count();
                lacuna_pool_config c = {.region_size = 64 * KIB, .capacity = 1000, .flags = flags};
                lacuna_pool *p = (lacuna_pool *)&c; /* must stay untouched on failure */
                lac_fault_inject(LAC_OP_RESERVE, nth, errnos[e]);
                int rc = lacuna_pool_create(&c, &p);
                lac_fault_inject(LAC_OP_RESERVE, 0, 0);
                /* mmap's EINVAL after the config passed validation means "too big": ENOMEM. */
                CHECK_EQ(rc, errnos[e] == EINVAL ? ENOMEM : errnos[e]);
                CHECK(p == (lacuna_pool *)&c);
                VMA_CHECK(lt_vma_count() == vmas);
            }
        }
    }
    /* Release and guard faults armed at create change nothing: create makes neither call. */
    for (lac_op op = LAC_OP_RELEASE; op <= LAC_OP_GUARD; op++) {
        lac_fault_inject(op, 1, ENOMEM);
        lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = 8});
        lac_fault_inject(op, 0, 0);
        lacuna_pool_destroy(p);
    }
    /* and a pool made afterwards works */
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = 8});
    char *r = lacuna_alloc(p);
    CHECK(r != NULL);
    r[0] = 1;
    CHECK_EQ(lacuna_free(p, r), 0);
    lacuna_pool_destroy(p);
}

/* ---- release ------------------------------------------------------------------------------- */

#define N 64

/* Allocate n regions, checking each is new (the model: idx -> live). */
static void alloc_all(lacuna_pool *p, char **r, size_t n, unsigned char *live, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL);
        long idx = lacuna_region_index(p, r[i]);
        CHECK(idx >= 0 && (size_t)idx < cap);
        CHECK(lacuna_region_index(p, r[i] - 1) == -1);
        CHECK_EQ(live[idx], 0); /* never handed out twice */
        live[idx] = 1;
    }
}

static void free_all(lacuna_pool *p, char **r, size_t n, unsigned char *live)
{
    for (size_t i = 0; i < n; i++) {
        live[lacuna_region_index(p, r[i])] = 0;
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    }
}

/* Two pages touched per region: the top (where a stack starts) and the bottom. */
static void touch(char **r, size_t n, size_t region, char v)
{
    for (size_t i = 0; i < n; i++) {
        r[i][region - 1] = v;
        r[i][0] = v;
    }
}

/* A trim whose release fails: the regions stay warm and resident; the next trim releases them. */
static void release_fails_then_retried(size_t cache, int err)
{
    lacuna_pool *p = lt_pool((lacuna_pool_config){
        .region_size = 64 * KIB, .capacity = N, .cache = cache, .decay_ms = LACUNA_DECAY_NEVER});
    char *r[N];
    unsigned char live[N] = {0};
    alloc_all(p, r, N, live, N);
    touch(r, N, 64 * KIB, 7);
    free_all(p, r, N, live);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.warm, N);
    CHECK_EQ(st.released_regions, 0);

    lac_fault_inject(LAC_OP_RELEASE, 1, err);
    CHECK_EQ(lacuna_trim(p), err);
    st = lt_stats(p);
    CHECK_EQ(st.release_errors, 1);
    CHECK_EQ(st.released_regions, 0);
    CHECK_EQ(st.warm, N); /* kept warm */
    CHECK_EQ(st.live, 0);
    CHECK_EQ(pool_resident(p, r[0]), 2 * N); /* and really still resident */

    CHECK_EQ(lacuna_trim(p), 0); /* the fault has cleared: retried, all released */
    st = lt_stats(p);
    CHECK_EQ(st.release_errors, 1);
    CHECK_EQ(st.released_regions, N);
    CHECK_EQ(st.warm, 0);
    CHECK_EQ(pool_resident(p, r[0]), 0);

    /* every slot comes back exactly once, and reads zero (DONTNEED'd) */
    alloc_all(p, r, N, live, N);
    for (size_t i = 0; i < N; i++)
        CHECK(r[i][0] == 0 && r[i][64 * KIB - 1] == 0);
    CHECK(lacuna_alloc(p) == NULL);
    CHECK_EQ(errno, ENOMEM);
    free_all(p, r, N, live);
    lacuna_pool_destroy(p);
}

TEST(release_failure_kept_warm_and_retried)
{
    need_injector();
    for (size_t e = 0; e < NERRNOS; e++) {
        release_fails_then_retried(N, errnos[e]); /* shared cache only (too small for a thread's) */
        release_fails_then_retried(0, errnos[e]); /* with a thread cache */
    }
}

/* No cache: each free releases at once. A failed one is not the caller's error (free returns 0),
 * and the region is released by the next release round. */
TEST(release_failure_on_free_retried_by_next_free)
{
    need_injector();
    for (size_t e = 0; e < NERRNOS; e++) {
        lacuna_pool *p = lt_pool((lacuna_pool_config){
            .region_size = 64 * KIB, .capacity = 8, .cache = LACUNA_CACHE_NONE});
        char *a = lacuna_alloc(p), *b = lacuna_alloc(p);
        CHECK(a && b && a != b);
        touch(&a, 1, 64 * KIB, 1);
        touch(&b, 1, 64 * KIB, 1);
        lac_fault_inject(LAC_OP_RELEASE, 1, errnos[e]);
        CHECK_EQ(lacuna_free(p, a), 0);
        lacuna_stats st = lt_stats(p);
        CHECK_EQ(st.release_errors, 1);
        CHECK_EQ(st.warm, 1);
        CHECK_EQ(lt_resident_pages(a, 64 * KIB), 2);
        CHECK_EQ(lacuna_free(p, b), 0); /* releases b and retries a */
        st = lt_stats(p);
        CHECK_EQ(st.warm, 0);
        CHECK_EQ(st.released_regions, 2);
        CHECK_EQ(lt_resident_pages(a, 64 * KIB), 0);
        CHECK_EQ(lt_resident_pages(b, 64 * KIB), 0);
        lacuna_pool_destroy(p);
    }
}

/* LACUNA_ZERO: a region whose release failed still holds its old bytes; it must be zeroed when it
 * is handed out again, by every path (thread cache, shared cache, no cache). */
static void zero_after_failed_release(size_t cache, int err, bool trim)
{
    enum { CAP = 160 }; /* > 128: the default cache is big enough for a thread cache */
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB,
                                                  .capacity = CAP,
                                                  .cache = cache,
                                                  .decay_ms = LACUNA_DECAY_NEVER,
                                                  .flags = LACUNA_ZERO});
    char *r[CAP];
    unsigned char live[CAP] = {0};
    alloc_all(p, r, CAP, live, CAP);
    for (size_t i = 0; i < CAP; i++) { /* a secret on three pages of every region */
        memset(r[i], 0x5e, 100);
        memset(r[i] + 20 * KIB, 0x5e, 100);
        memset(r[i] + 64 * KIB - 100, 0x5e, 100);
    }
    lac_fault_inject(LAC_OP_RELEASE, 1, err); /* the first release fails, whichever it is */
    free_all(p, r, CAP, live);
    if (trim)
        CHECK(lacuna_trim(p) == err || lt_stats(p).release_errors == 1);
    lac_fault_inject(LAC_OP_RELEASE, 0, 0);
    CHECK_EQ(lt_stats(p).release_errors, 1);
    alloc_all(p, r, CAP, live, CAP);
    for (size_t i = 0; i < CAP; i++)
        for (size_t b = 0; b < 64 * KIB; b += 8)
            CHECK_EQ(*(uint64_t *)(r[i] + b), 0);
    free_all(p, r, CAP, live);
    lacuna_pool_destroy(p);
}

TEST(zero_never_hands_out_old_data)
{
    need_injector();
    for (size_t e = 0; e < NERRNOS; e++) {
        zero_after_failed_release(LACUNA_CACHE_NONE, errnos[e], false);
        zero_after_failed_release(4, errnos[e], false);
        zero_after_failed_release(4, errnos[e], true);
        zero_after_failed_release(0, errnos[e], true);
    }
}

/* ---- guard ---------------------------------------------------------------------------------- */

static void guard_fails_then_retried(size_t cache, int err)
{
    enum { CAP = 40 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){
        .region_size = 16 * KIB, .capacity = CAP, .cache = cache, .guard = LACUNA_GUARD_MARKER});
    lac_fault_inject(LAC_OP_GUARD, 1, err);
    errno = 0;
    CHECK(lacuna_alloc(p) == NULL);
    /* EINVAL is the kernel refusing markers in this mapping (it is locked): a MARKER-only pool
     * says so; anything else is a shortage, retried. */
    CHECK_EQ(errno, err == EINVAL ? ENOTSUP : ENOMEM);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.allocs, 0);
    /* the fault has cleared: every slot, the failed ones included, is handed out once, guarded */
    char *r[CAP];
    unsigned char live[CAP] = {0};
    alloc_all(p, r, CAP, live, CAP);
    for (size_t i = 0; i < CAP; i++)
        CHECK(lt_guarded(r[i], PG));
    CHECK(lacuna_alloc(p) == NULL);
    CHECK_EQ(errno, ENOMEM);
    st = lt_stats(p);
    CHECK_EQ(st.live, CAP);
    CHECK_EQ(st.unguarded, 0);
    free_all(p, r, CAP, live);
    lacuna_pool_destroy(p);
}

TEST(guard_failure_enomem_then_retried)
{
    need_injector();
    lacuna_features f;
    lacuna_features_get(&f);
    for (size_t e = 0; e < NERRNOS; e++) {
        if (f.guard_marker) {
            guard_fails_then_retried(LACUNA_CACHE_NONE, errnos[e]); /* one slot per guard call */
            guard_fails_then_retried(0, errnos[e]); /* a thread cache: a batch of 16 fails */
            continue;
        }
        /* mprotect guards (older kernels, or forced): a failed guard is counted, never silent */
        lacuna_pool *p = lt_pool((lacuna_pool_config){
            .region_size = 16 * KIB, .capacity = 8, .guard = LACUNA_GUARD_MPROTECT});
        lac_fault_inject(LAC_OP_GUARD, 1, errnos[e]);
        char *r = lacuna_alloc(p);
        CHECK(r != NULL);
        CHECK_EQ(lt_stats(p).unguarded, 1);
        CHECK(!lt_guarded(r, PG));
        char *s = lacuna_alloc(p);
        CHECK(lt_guarded(s, PG));
        CHECK_EQ(lt_stats(p).unguarded, 1);
        lacuna_pool_destroy(p);
    }
}

/* ---- partial process_madvise ---------------------------------------------------------------- */

static void partial_completed(void *unused)
{
    (void)unused;
    enum { M = 10 };
    lacuna_features f;
    lacuna_features_get(&f);
    /* spread 0: M neighbouring regions, released as one range over the guard markers between
     * them (one madvise); 1: every other region of 2M, so M ranges; 2: two runs of M/2
     * neighbours with a gap between, so two ranges, the first of which the "kernel" stops in. */
    for (int spread = 0; spread <= 2; spread++) {
        for (int partial = 0; partial <= 1; partial++) {
            lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB,
                                                          .capacity = 2 * M,
                                                          .cache = 2 * M,
                                                          .decay_ms = LACUNA_DECAY_NEVER});
            char *all[2 * M], *r[M];
            unsigned char live[2 * M] = {0};
            alloc_all(p, all, 2 * M, live, 2 * M);
            for (size_t i = 0; i < M; i++) {
                r[i] = all[spread == 1 ? 2 * i : spread == 2 && i >= M / 2 ? i + 1 : i];
                memset(r[i], 1, 64 * KIB); /* every page: both halves of a range must go */
            }
            free_all(p, r, M, live);
            CHECK_EQ(pool_resident(p, r[0]), 16 * M);
            bool joined = spread != 1 && lt_stats(p).guard == LACUNA_GUARD_MARKER;
            if (partial)
                lac_fault_inject(LAC_OP_RELEASE, 1, LAC_FAULT_PARTIAL);
            CHECK_EQ(lacuna_trim(p), 0);
            lac_fault_inject(LAC_OP_RELEASE, 0, 0);
            lacuna_stats st = lt_stats(p);
            CHECK_EQ(st.released_regions, M);
            CHECK_EQ(st.release_errors, 0);
            CHECK_EQ(pool_resident(p, r[0]), 0);
            for (size_t i = 0; i < M; i++)
                CHECK(lt_guarded(r[i], st.guard_size)); /* a joined range keeps its markers */
            if (joined && spread == 0) /* one range: a plain madvise, nothing to be partial */
                CHECK_EQ(st.release_calls, 1);
            else if (joined && !f.batch_release)
                CHECK_EQ(st.release_calls, 2); /* a madvise per run */
            else if (!f.batch_release)
                CHECK_EQ(st.release_calls, M); /* one madvise per region; nothing to be partial */
            else
                /* the half the "kernel" did, the rest of that range, then the vector's remainder */
                CHECK_EQ(st.release_calls, partial ? 3 : 1);
            lacuna_pool_destroy(p);
        }
    }
}

TEST(partial_release_completed)
{
    need_injector();
    partial_completed(NULL);
}

/* The release path may run on a fiber's stack: a batched, partial release (trim of 100 warm
 * regions) must fit in a 16 KiB stack (a pool region with its guard below). It did not when
 * os.c copied the vector into a 1024-entry array (16 KiB) on the stack. */
static ucontext_t main_ctx, small_ctx;
static lacuna_pool *victim;

static void trim_on_small_stack(void)
{
    lac_fault_inject(LAC_OP_RELEASE, 1, LAC_FAULT_PARTIAL);
    CHECK_EQ(lacuna_trim(victim), 0);
}

static void small_stack_child(void *unused)
{
    (void)unused;
    /* sanitizers give every frame redzones: the same code needs a larger stack there */
    size_t stack = LT_SANITIZED ? 64 * KIB : 16 * KIB;
    lacuna_pool *stacks = lt_pool((lacuna_pool_config){.region_size = stack, .capacity = 2});
    victim = lt_pool((lacuna_pool_config){
        .region_size = 16 * KIB, .capacity = 100, .cache = 100, .decay_ms = LACUNA_DECAY_NEVER});
    char *r[100];
    unsigned char live[100] = {0};
    alloc_all(victim, r, 100, live, 100);
    touch(r, 100, 16 * KIB, 3);
    free_all(victim, r, 100, live);
    char *s = lacuna_alloc(stacks);
    CHECK(s != NULL);
    memset(s, 0xcc, stack); /* paint it, to measure how deep the release went */
    CHECK_EQ(getcontext(&small_ctx), 0);
    small_ctx.uc_stack.ss_sp = s;
    small_ctx.uc_stack.ss_size = stack;
    small_ctx.uc_link = &main_ctx;
    makecontext(&small_ctx, trim_on_small_stack, 0);
    CHECK_EQ(swapcontext(&main_ctx, &small_ctx), 0);
    lacuna_stats st = lt_stats(victim);
    CHECK_EQ(st.released_regions, 100);
    CHECK_EQ(pool_resident(victim, r[0]), 0);
    if (lt_under_valgrind()) { /* memcheck calls reading a dead stack an error */
        fprintf(stderr, "released on a %zu KiB stack (use not measured under valgrind)\n",
                stack / KIB);
        return;
    }
    size_t untouched = 0;
    while (untouched < stack && (unsigned char)s[untouched] == 0xcc)
        untouched++;
    fprintf(stderr, "released on a %zu KiB stack, %zu bytes of it used\n", stack / KIB,
            stack - untouched);
}

TEST(release_fits_small_stack) /* without the injector: the same trim, minus the partial call */
{
    char err[4096];
    int st = lt_fork_run(small_stack_child, NULL, err, sizeof err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "child: status %#x\n%s", st, err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(strstr(err, "released on a") != NULL);
    fprintf(stderr, "%s", err);
}

/* ---- random operations with random faults, against a model ---------------------------------- */

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

static void model_with_faults(unsigned flags, size_t cache, lacuna_guard guard, uint64_t seed)
{
    enum { CAP = 200, OPS = 40000 };
    const size_t region = 16 * KIB;
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = region,
                                                  .capacity = CAP,
                                                  .cache = cache,
                                                  .guard = guard,
                                                  .decay_ms = 1,
                                                  .flags = flags});
    char *held[CAP] = {0};
    size_t nheld = 0;
    unsigned char live[CAP] = {0};
    uint64_t x = seed, faults = 0, enomem = 0;
    for (int i = 0; i < OPS; i++) {
        uint64_t r = rnd(&x);
        unsigned what = (unsigned)(r % 100);
        if (what < 3) { /* arm a fault: release, guard or reserve, a random errno, soon */
            lac_op op = (lac_op)((r >> 8) % 3);
            lac_fault_inject(op, 1 + (unsigned)((r >> 16) % 4), errnos[(r >> 24) % NERRNOS]);
            faults++;
        } else if (what < 5) {
            int rc = lacuna_trim(p);
            CHECK(rc == 0 || rc == ENOMEM || rc == EAGAIN || rc == EINVAL || rc == EPERM);
        } else if (what < 50 && nheld > 0) {
            size_t j = (size_t)(r >> 8) % nheld;
            char *reg = held[j];
            held[j] = held[--nheld];
            long idx = lacuna_region_index(p, reg);
            CHECK_EQ(live[idx], 1);
            live[idx] = 0;
            CHECK_EQ(lacuna_free(p, reg), 0);
            CHECK_EQ(lacuna_free(p, reg), EINVAL); /* a double free changes nothing */
        } else {
            errno = 0;
            char *reg = lacuna_alloc(p);
            if (reg == NULL) {
                /* full, or a guard fault (ENOTSUP: an injected EINVAL, markers refused) */
                CHECK(errno == ENOMEM || (errno == ENOTSUP && guard == LACUNA_GUARD_MARKER));
                enomem++;
                continue;
            }
            long idx = lacuna_region_index(p, reg);
            CHECK(idx >= 0 && idx < CAP);
            CHECK(lacuna_region_index(p, reg - 1) == -1);
            CHECK_EQ(live[idx], 0); /* never handed out twice */
            live[idx] = 1;
            if (flags & LACUNA_ZERO)
                CHECK(reg[0] == 0 && reg[region - 1] == 0 && reg[5000] == 0 && reg[9000] == 0);
            reg[0] = reg[region - 1] = reg[5000] = reg[9000] = (char)(r | 1);
            held[nheld++] = reg;
        }
    }
    for (lac_op op = 0; op < LAC_OP_COUNT; op++)
        lac_fault_inject(op, 0, 0);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, nheld);
    CHECK(faults > 0 && enomem > 0);
    while (nheld > 0) {
        char *reg = held[--nheld];
        live[lacuna_region_index(p, reg)] = 0;
        CHECK_EQ(lacuna_free(p, reg), 0);
    }
    CHECK_EQ(lacuna_trim(p), 0);
    st = lt_stats(p);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.warm, 0);
    /* every slot can still be had, exactly once */
    char *all[CAP];
    alloc_all(p, all, CAP, live, CAP);
    free_all(p, all, CAP, live);
    lacuna_pool_destroy(p);
}

TEST(model_with_random_faults)
{
    need_injector();
    lacuna_features f;
    lacuna_features_get(&f);
    lacuna_guard g = f.guard_marker ? LACUNA_GUARD_MARKER : LACUNA_GUARD_MPROTECT;
    model_with_faults(0, 0, g, 1);
    model_with_faults(LACUNA_ZERO, 0, g, 2);
    model_with_faults(LACUNA_ZERO, LACUNA_CACHE_NONE, g, 3);
    model_with_faults(LACUNA_ZERO, 8, g, 4);
    model_with_faults(0, 8, LACUNA_GUARD_NONE, 5);
}
