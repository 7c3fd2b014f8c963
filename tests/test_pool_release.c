/* Pages really go back: minor faults, RSS, VMAs and page tables, read from the kernel. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KIB 1024u
#define PG  4096u

static void sleep_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

/* The seed's experiment: touch k pages, free + trim, touch again. */
TEST(seed_experiment_dontneed)
{
    enum { K = 4 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = 8});
    char *r = lacuna_alloc(p);
    for (int k = 0; k < K; k++)
        memset(r + 64 * KIB - (k + 1) * PG, 0x77, PG);
    CHECK_EQ(lacuna_free(p, r), 0);
    CHECK_EQ(lacuna_trim(p), 0);
    char *again = lacuna_alloc(p);
    CHECK(again == r); /* the only used slot comes back */
    long f0 = lt_minflt();
    for (int k = 0; k < K; k++)
        CHECK_EQ(((volatile char *)r)[64 * KIB - (k + 1) * PG + 9], 0); /* refault: a zero page */
    long faults = lt_minflt() - f0;
    CHECK(faults >= K && faults <= K + 2);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.released_regions, 1);
    CHECK_EQ(st.release_calls, 1);
    lacuna_pool_destroy(p);
}

TEST(seed_experiment_free)
{
    enum { K = 4 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){
        .region_size = 64 * KIB, .capacity = 8, .release = LACUNA_RELEASE_FREE});
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    char *r = lacuna_alloc(p);
    for (int k = 0; k < K; k++)
        memset(r + 64 * KIB - (k + 1) * PG, 0x77, PG);
    CHECK_EQ(lacuna_free(p, r), 0);
    CHECK_EQ(lacuna_trim(p), 0);
    CHECK(lacuna_alloc(p) == r);
    long f0 = lt_minflt();
    for (int k = 0; k < K; k++)
        r[64 * KIB - (k + 1) * PG] = 1;
    long faults = lt_minflt() - f0;
    if (st.release == LACUNA_RELEASE_FREE)
        CHECK(faults < K); /* no memory pressure: the lazily freed pages are still there */
    else
        CHECK(faults >= K); /* MADV_FREE unavailable or forced off: DONTNEED semantics */
    lacuna_pool_destroy(p);
}

TEST(rss_rises_and_falls)
{
    enum { N = 1000, TOUCH = 8 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = 2 * N});
    static char *r[N];
    long rss0 = lt_rss_kib();
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL);
        memset(r[i] + 64 * KIB - TOUCH * PG, 1, TOUCH * PG);
    }
    long rss1 = lt_rss_kib();
    CHECK(rss1 - rss0 >= N * TOUCH * 4 * 9 / 10); /* ~31 MiB */
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    CHECK_EQ(lacuna_trim(p), 0);
    long rss2 = lt_rss_kib();
    VMA_CHECK(rss2 - rss0 < 2048); /* back within 2 MiB of the start */
    for (int i = 0; i < N; i++)
        CHECK_EQ(lt_resident_pages(r[i], 64 * KIB), 0);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.warm, 0);
    /* plus slots guarded in a batch and never used; or, their page tables given back, FRESH */
    CHECK(st.released + st.given_back >= N);
    lacuna_pool_destroy(p);
}

TEST(never_keeps_pages)
{
    enum { N = 500 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){
        .region_size = 64 * KIB, .capacity = N, .release = LACUNA_RELEASE_NEVER});
    static char *r[N];
    long rss0 = lt_rss_kib();
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        memset(r[i], 1, 64 * KIB);
    }
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    CHECK_EQ(lacuna_trim(p), 0);
    CHECK(lt_rss_kib() - rss0 >= N * 64 * 9 / 10); /* a plain pool keeps its peak */
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.released_regions, 0);
    CHECK_EQ(st.warm, N);
    lacuna_pool_destroy(p);
}

/* Releases come in batches: at most one syscall per 32 regions where process_madvise works. */
TEST(release_is_batched)
{
    enum { N = 4000 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){
        .region_size = 16 * KIB, .capacity = N, .cache = 256, .decay_ms = LACUNA_DECAY_NEVER});
    static char *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        r[i][0] = 1;
    }
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK(st.warm <= 256 + 32); /* over the bound, the coldest went back without a trim */
    CHECK(st.released_regions >= N - 256 - 32);
    CHECK_EQ(lacuna_trim(p), 0);
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.released_regions, N);
    lacuna_features f;
    lacuna_features_get(&f);
    if (f.batch_release)
        CHECK(st.release_calls * 32 <= st.released_regions);
    else /* at most one madvise a region (neighbours go as one range, released_neighbours_join),
            plus the few of trim's give-back round (unguard, state lines, side tables: valgrind,
            which has no process_madvise, makes 6) */
        CHECK(st.release_calls <= st.released_regions + 16);
    lacuna_pool_destroy(p);
}

/* Regions of neighbouring slots freed together are released as one range, over the guard markers
 * between them (which survive DONTNEED): one madvise for a run where the kernel cannot batch,
 * one iovec of a process_madvise where it can (the kernel's cost is per range). Every guard stays,
 * the pages go, the VMAs stay as they were. With mprotect guards (a VMA each) nothing is joined. */
static void neighbours_join(void *arg)
{
    (void)arg;
    /* Without batching, release_calls counts ranges: what this test looks at. */
    const char *old = getenv("LACUNA_FORCE_FALLBACK");
    char env[256];
    snprintf(env, sizeof env, "%s%sbatch", old ? old : "", old && *old ? "," : "");
    setenv("LACUNA_FORCE_FALLBACK", env, 1); /* before lacuna's first call in this child */
    enum { N = 400, CACHE = 64 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 16 * KIB,
                                                  .capacity = 2 * N,
                                                  .cache = CACHE,
                                                  .decay_ms = LACUNA_DECAY_NEVER});
    static char *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL);
        r[i][16 * KIB - 1] = 1; /* the top page, as a stack */
        if (i > 0)
            CHECK(r[i] > r[i - 1]); /* handed out in address order: neighbours */
    }
    long vmas = lt_vma_count();
    for (int i = 0; i < N; i++) /* past the cache bound: released in rounds, no trim */
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_stats st = lt_stats(p);
    CHECK(st.released_regions >= N - CACHE - 32);
    CHECK_EQ(st.given_back, 0); /* no give-back round: the guards are all still installed */
    VMA_CHECK(lt_vma_count() == vmas);
    size_t released = 0;
    for (int i = 0; i < N; i++) {
        CHECK(lt_guarded(r[i], st.guard_size));
        if (lt_resident_pages(r[i], 16 * KIB) == 0)
            released++;
    }
    CHECK_EQ(released, st.released_regions);
    if (st.guard == LACUNA_GUARD_MARKER) /* rounds of ~16 neighbours: one call each */
        CHECK(st.release_calls * 8 <= st.released_regions);
    else /* mprotect guards: one range a region */
        CHECK_EQ(st.release_calls, st.released_regions);
    for (int i = 0; i < N; i++) { /* every slot comes back, zeroed where released */
        char *a = lacuna_alloc(p);
        CHECK(a != NULL);
        CHECK(a[16 * KIB - 1] == 0 || a[16 * KIB - 1] == 1);
    }
    lacuna_pool_destroy(p);
}

TEST(released_neighbours_join)
{
    char err[1024];
    int st = lt_fork_run(neighbours_join, NULL, err, sizeof err);
    if (WIFEXITED(st) && WEXITSTATUS(st) == LT_SKIP)
        SKIP("%s", err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "status %#x\n%s", st, err);
        CHECK(0);
    }
}

TEST(no_cache_releases_every_free)
{
    lacuna_pool *p = lt_pool(
        (lacuna_pool_config){.region_size = 64 * KIB, .capacity = 16, .cache = LACUNA_CACHE_NONE});
    for (int i = 0; i < 10; i++) {
        char *r = lacuna_alloc(p);
        memset(r, 1, 64 * KIB);
        CHECK_EQ(lt_resident_pages(r, 64 * KIB), 16);
        CHECK_EQ(lacuna_free(p, r), 0);
        CHECK_EQ(lt_resident_pages(r, 64 * KIB), 0);
    }
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.released_regions, 10);
    CHECK_EQ(st.warm, 0);
    lacuna_pool_destroy(p);
}

/* keep_resident: the top pages stay (zeroed under LACUNA_ZERO), the rest goes. */
static void keep_resident(unsigned flags)
{
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB,
                                                  .capacity = 4,
                                                  .cache = LACUNA_CACHE_NONE,
                                                  .keep_resident = 2 * PG,
                                                  .flags = flags});
    char *r = lacuna_alloc(p);
    memset(r, 0x33, 64 * KIB);
    CHECK_EQ(lacuna_free(p, r), 0);
    CHECK_EQ(lt_resident_pages(r, 14 * PG), 0);
    CHECK_EQ(lt_resident_pages(r + 14 * PG, 2 * PG), 2);
    CHECK(lacuna_alloc(p) == r);
    CHECK_EQ(r[64 * KIB - 1], (flags & LACUNA_ZERO) ? 0 : 0x33);
    CHECK_EQ(r[0], 0);
    lacuna_pool_destroy(p);
}

TEST(keep_resident_top)
{
    keep_resident(0);
    keep_resident(LACUNA_ZERO);
}

/* Warm regions idle past decay_ms are released by later pool calls, even fast-path ones. */
TEST(decay_on_later_calls)
{
    enum { N = 300 };
    lacuna_pool *p =
        lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = 1000, .decay_ms = 50});
    static char *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        memset(r[i], 1, 64 * KIB);
    }
    for (int i = 0; i < N; i++)
        lacuna_free(p, r[i]);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.released_regions, 0);
    sleep_ms(200);
    for (int i = 0; i < 1000; i++) /* warm-path traffic only */
        lacuna_free(p, lacuna_alloc(p));
    lacuna_pool_stats(p, &st);
    CHECK(st.released_regions >= N - 64);
    lacuna_pool_destroy(p);
}

TEST(background_release_when_idle)
{
    enum { N = 300 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){
        .region_size = 64 * KIB, .capacity = 1000, .decay_ms = 50, .flags = LACUNA_BACKGROUND});
    static char *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        memset(r[i], 1, 64 * KIB);
    }
    long rss1 = lt_rss_kib();
    for (int i = 0; i < N; i++)
        lacuna_free(p, r[i]);
    lacuna_stats st;
    for (int i = 0; i < 100; i++) { /* no pool call: only the background thread can release */
        sleep_ms(20);
        lacuna_pool_stats(p, &st);
        if (st.released_regions >= N - 64)
            break;
    }
    CHECK(st.released_regions >= N - 64);
    CHECK(rss1 - lt_rss_kib() >= (N - 64) * 64 * 9 / 10);
    lacuna_pool_destroy(p); /* stops and joins the thread */
}

TEST(vmas_flat_with_100k_live)
{
    enum { N = 100000 };
    long vmas0 = lt_vma_count();
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = N});
    static char *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL);
    }
    long vmas1 = lt_vma_count();
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    if (st.guard == LACUNA_GUARD_MARKER) {
        VMA_CHECK(vmas1 - vmas0 <= 3);
        CHECK_EQ(st.unguarded, 0);
    } else { /* mprotect: 2 VMAs a guard, up to the budget, the rest unguarded and counted */
        lacuna_features f;
        lacuna_features_get(&f);
        VMA_CHECK(vmas1 - vmas0 <= (long)(2 * f.mprotect_guard_budget + 3));
        CHECK_EQ(st.unguarded, N - f.mprotect_guard_budget);
    }
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_pool_destroy(p);
    VMA_CHECK(lt_vma_count() == vmas0);
}

/* 1,000,000 guarded 64 KiB slots: creation is O(1), page tables grow with use, not capacity. */
TEST(million_slots_cost_nothing_until_used)
{
    if (lt_under_valgrind())
        SKIP("valgrind cannot reserve the 68 GiB this pool needs");
    long vmas0 = lt_vma_count(), pte0 = lt_status_kib("VmPTE:");
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = 1000000});
    VMA_CHECK(lt_vma_count() - vmas0 <= 3);
    for (int i = 0; i < 10; i++)
        CHECK(lacuna_alloc(p) != NULL);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    if (st.guard == LACUNA_GUARD_MARKER)
        VMA_CHECK(lt_vma_count() - vmas0 <= 3);
    CHECK(lt_status_kib("VmPTE:") - pte0 < 1024); /* all guards at once: 133 MiB */
    CHECK(st.used <= 32); /* guards go in with the first batch of slots, not all 1,000,000 */
    CHECK(st.guard_calls <= 32);
    lacuna_pool_destroy(p);
    VMA_CHECK(lt_vma_count() == vmas0);
}
