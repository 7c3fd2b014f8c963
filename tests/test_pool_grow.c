/* Growth (capacity 0), page tables given back, strict guards.
 *
 * A default pool grows past its first reservation to 100,000 and 1,000,000 live regions in a few
 * VMAs (read from /proc/self/maps); an explicit capacity still ends at exactly that many; guards
 * of a grown chunk fault in a forked child and the overflow handler names the region; regions of
 * every chunk (placed next to the first one or, forced, elsewhere) free and are found; a forked
 * child of a grown pool keeps working. After a burst is freed and trimmed, RSS and VmPTE (from
 * /proc/self/status) drop back near where they started, by lacuna_trim and, unasked, by
 * LACUNA_BACKGROUND, which leaves no more of the side tables resident (mincore) than this
 * thread's cache needs, and gives back a few late frees too. LACUNA_STRICT_GUARD never hands out
 * an unguarded region: with guard installs failing (fault injector) and with the mprotect budget
 * spent for real. */
#define _GNU_SOURCE
#include "internal.h"
#include "test.h"

#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KIB 1024u
#define PG  4096u

static void shuffle(char **r, size_t n)
{
    uint64_t x = 88172645463325252ull;
    for (size_t i = n; i > 1; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t j = (size_t)(x % i);
        char *t = r[j];
        r[j] = r[i - 1];
        r[i - 1] = t;
    }
}

/* Allocate n regions (touching `touch` top pages of each), all distinct and indexed. */
static char **alloc_n(lacuna_pool *p, size_t n, int touch)
{
    char **r = calloc(n, sizeof *r);
    CHECK(r != NULL);
    lacuna_stats st = lt_stats(p);
    for (size_t i = 0; i < n; i++) {
        r[i] = lacuna_alloc(p);
        if (r[i] == NULL) {
            fprintf(stderr, "alloc %zu failed: %s\n", i, strerror(errno));
            CHECK(0);
        }
        for (int t = 1; t <= touch; t++)
            r[i][st.region_size - (size_t)t * PG] = 1;
    }
    return r;
}

/* Every region has its own index, each index once, and frees exactly once. */
static void free_all_checked(lacuna_pool *p, char **r, size_t n)
{
    lacuna_stats st = lt_stats(p);
    unsigned char *seen = calloc(st.capacity, 1);
    CHECK(seen != NULL);
    for (size_t i = 0; i < n; i++) {
        long idx = lacuna_region_index(p, r[i]);
        CHECK(idx >= 0 && (size_t)idx < st.capacity);
        CHECK_EQ(seen[idx], 0);
        seen[idx] = 1;
        CHECK(lacuna_region_index(p, r[i] + st.region_size - 1) == idx);
        CHECK(lacuna_region_index(p, r[i] - 1) == -1); /* its guard */
    }
    free(seen);
    shuffle(r, n);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    CHECK_EQ(lacuna_free(p, r[0]), EINVAL); /* double free, whatever chunk */
}

/* The mappings that hold a pool's regions: VMAs of the process, before and after. */
TEST(burst_100k_default_grows_gives_back)
{
    enum { N = 100000 };
    (void)lt_vma_count();
    long vmas0 = lt_vma_count(), rss0 = lt_rss_kib(), pte0 = lt_status_kib("VmPTE:");
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB});
    char **r = alloc_n(p, N, 2);
    lacuna_stats st = lt_stats(p);
    CHECK(st.capacity >= N && st.capacity < 4 * N);
    CHECK_EQ(st.reserved_bytes, st.capacity * st.stride);
    CHECK_EQ(st.live, N);
    long vmas1 = lt_vma_count(), pte1 = lt_status_kib("VmPTE:"), rss1 = lt_rss_kib();
    /* 2048 << 6 slots: 7 reservations, one VMA each at most (fewer where they merged), the side
     * table, and under the fallback the mprotect guards (2 VMAs each, within the budget). */
    if (st.guard == LACUNA_GUARD_MARKER)
        VMA_CHECK(vmas1 - vmas0 <= 10);
    fprintf(stderr, "100k live: +%ld VMAs, RSS +%ld KiB, VmPTE +%ld KiB, capacity %zu\n",
            vmas1 - vmas0, rss1 - rss0, pte1 - pte0, st.capacity);
    free_all_checked(p, r, N);
    CHECK_EQ(lacuna_trim(p), 0);
    long rss2 = lt_rss_kib(), pte2 = lt_status_kib("VmPTE:");
    st = lt_stats(p);
    fprintf(stderr, "freed + trimmed: RSS +%ld KiB, VmPTE +%ld KiB, given back %llu\n", rss2 - rss0,
            pte2 - pte0, (unsigned long long)st.given_back);
    CHECK_EQ(st.live, 0);
    /* With mprotect guards (the fallback) every region is a VMA of its own, too small for the
     * kernel to reclaim page tables on DONTNEED, and their guards stay: not given back. */
    if (st.guard == LACUNA_GUARD_MARKER) {
        VMA_CHECK(rss2 - rss0 <= 2048 + (long)(N * sizeof(char *) / KIB)); /* + the pointers */
        CHECK(st.given_back >= N);
        CHECK_EQ(st.used, 0); /* every slot is as if never used */
        VMA_CHECK(pte2 - pte0 <= 1024);
        CHECK(pte1 - pte2 > 8 * 1024); /* ~13 MiB of page tables went back */
    }
    /* and it all works again: guards re-installed on reuse */
    char *a = lacuna_alloc(p);
    CHECK(a != NULL);
    if (st.guard == LACUNA_GUARD_MARKER) /* (mprotect guards: 100,000 are past the budget) */
        CHECK(lt_guarded(a, st.guard_size));
    CHECK_EQ(lacuna_free(p, a), 0);
    lacuna_pool_destroy(p);
    free(r);
}

TEST(million_live_default)
{
    enum { N = 1000000 };
    if (lt_under_valgrind())
        SKIP("a million guarded slots under valgrind: minutes");
    (void)lt_vma_count();
    long vmas0 = lt_vma_count();
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB});
    char **r = alloc_n(p, N, 0);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, N);
    CHECK(st.capacity >= N);
    long vmas1 = lt_vma_count();
    fprintf(stderr, "1,000,000 live: +%ld VMAs, %zu slots in %.1f GiB\n", vmas1 - vmas0,
            st.capacity, (double)st.reserved_bytes / (1 << 30));
    if (st.guard == LACUNA_GUARD_MARKER)
        VMA_CHECK(vmas1 - vmas0 <= 13); /* 10 reservations + the side table */
    free_all_checked(p, r, N);
    CHECK_EQ(lacuna_trim(p), 0);
    CHECK_EQ(lt_stats(p).live, 0);
    lacuna_pool_destroy(p);
    free(r);
}

TEST(explicit_capacity_is_exact)
{
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 16 * KIB, .capacity = 3000});
    char **r = alloc_n(p, 3000, 0);
    errno = 0;
    CHECK(lacuna_alloc(p) == NULL);
    CHECK_EQ(errno, ENOMEM);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.capacity, 3000);
    CHECK_EQ(st.capacity_max, 3000);
    CHECK_EQ(st.reserved_bytes, 3000 * st.stride);
    CHECK_EQ(lacuna_free(p, r[1234]), 0);
    CHECK(lacuna_alloc(p) == r[1234]);
    lacuna_pool_destroy(p);
    free(r);
}

/* A default pool whose second reservation cannot go next to the first: something is mapped
 * there (a page, MAP_FIXED_NOREPLACE). Returns the pool, its regions, and whether it was forced. */
typedef struct grown {
    lacuna_pool *p;
    char **r;
    size_t n;
    void *blocker;
} grown;

static grown make_grown(bool block)
{
    grown g = {.p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB})};
    lacuna_stats st = lt_stats(g.p);
    size_t first = st.capacity;
    g.r = alloc_n(g.p, first, 0);
    if (block) {
        char *end = g.r[first - 1] + st.region_size; /* the end of the first reservation */
        g.blocker = mmap(end, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | 0x100000, -1, 0);
        if (g.blocker != end) /* taken already: the growth cannot be adjacent either way */
            g.blocker = g.blocker == MAP_FAILED ? NULL : g.blocker;
    }
    char **more = alloc_n(g.p, 3 * first, 1); /* two more reservations */
    g.r = realloc(g.r, 4 * first * sizeof *g.r);
    CHECK(g.r != NULL);
    memcpy(g.r + first, more, 3 * first * sizeof *more);
    free(more);
    g.n = 4 * first;
    CHECK_EQ(lt_stats(g.p).capacity, 4 * first);
    return g;
}

static void drop_grown(grown *g)
{
    lacuna_pool_destroy(g->p);
    free(g->r);
    if (g->blocker)
        munmap(g->blocker, PG);
}

static void check_chunks(bool block)
{
    grown g = make_grown(block);
    lacuna_stats st = lt_stats(g.p);
    size_t first = g.n / 4;
    if (block && g.blocker) { /* the second reservation is elsewhere */
        uintptr_t a = (uintptr_t)g.r[first - 1], b = (uintptr_t)g.r[first];
        CHECK(b != a + st.stride);
    }
    for (size_t i = 0; i < g.n; i++)
        CHECK_EQ(lacuna_region_index(g.p, g.r[i]), (long)i); /* fresh slots are taken in order */
    /* guards of every chunk */
    if (st.guard != LACUNA_GUARD_NONE && st.unguarded == 0) { /* mprotect: within the budget */
        CHECK(lt_guarded(g.r[first], st.guard_size));
        CHECK(lt_guarded(g.r[g.n - 1], st.guard_size));
    }
    free_all_checked(g.p, g.r, g.n);
    CHECK_EQ(lacuna_trim(g.p), 0);
    char **again = alloc_n(g.p, g.n, 1);
    CHECK(lacuna_region_index(g.p, again[g.n - 1]) >= 0);
    free_all_checked(g.p, again, g.n);
    free(again);
    drop_grown(&g);
}

TEST(chunks_adjacent_and_elsewhere)
{
    check_chunks(false);
    check_chunks(true);
}

/* lacuna_punch, lacuna_resident, lacuna_free_top and lacuna_free_deferred on regions of every
 * reservation (the second one forced elsewhere or not); then a give-back round with a punched live
 * region and a deferred one inside a long free run: neither is given back nor handed out again. */
static void api_in_chunks(bool block)
{
    grown g = make_grown(block);
    lacuna_stats st = lt_stats(g.p);
    size_t first = g.n / 4, rs = st.region_size;
    size_t pick[] = {0, first - 1, first, 2 * first + 3, g.n - 1};
    enum { NPICK = sizeof pick / sizeof pick[0] };
    lacuna_punch_req reqs[NPICK];
    for (size_t i = 0; i < NPICK; i++) {
        char *r = g.r[pick[i]];
        memset(r, 7, PG);
        r[rs - 1] = 9;
        CHECK_EQ(lacuna_punch(g.p, r, r + rs - PG), 0);
        size_t pages = 99;
        CHECK_EQ(lacuna_resident(g.p, r, &pages), 0);
        CHECK_EQ(pages, 1);
        CHECK_EQ(r[0], 0); /* (a read maps the zero page: resident from here on) */
        CHECK_EQ(r[rs - 1], 9);
        reqs[i] = (lacuna_punch_req){r, r + rs};
    }
    CHECK_EQ(lacuna_punch_many(g.p, reqs, NPICK), 0);
    for (size_t i = 0; i < NPICK; i++) {
        size_t pages = 99;
        CHECK_EQ(lacuna_resident(g.p, g.r[pick[i]], &pages), 0);
        CHECK_EQ(pages, 0);
    }
    /* by top, and deferred, in later reservations */
    CHECK_EQ(lacuna_free_top(g.p, g.r[first] + rs), 0);
    CHECK_EQ(lacuna_free_top(g.p, g.r[first] + rs), EINVAL);
    CHECK_EQ(lacuna_free_deferred(g.p, g.r[g.n - 1]), 0);
    CHECK_EQ(lacuna_free(g.p, g.r[g.n - 1]), EINVAL);
    CHECK_EQ(lacuna_punch(g.p, g.r[g.n - 1], g.r[g.n - 1]), EINVAL);
    CHECK_EQ(lacuna_flush(g.p), 0);
    CHECK_EQ(lacuna_free(g.p, g.r[g.n - 1]), EINVAL); /* freed by the flush */

    /* In the middle of the third reservation: P punched and live, D deferred (trim does not run
     * deferrals); every other region is freed, so both sit inside a long free run. */
    size_t kp = 2 * first + first / 2, kd = kp + 1;
    char *P = g.r[kp], *D = g.r[kd];
    P[rs - 1] = 5;
    CHECK_EQ(lacuna_punch(g.p, P, P + rs - PG), 0);
    memset(D, 3, rs);
    for (size_t i = 0; i < g.n; i++)
        if (i != kp && i != kd && i != first && i != g.n - 1)
            CHECK_EQ(lacuna_free(g.p, g.r[i]), 0);
    CHECK_EQ(lacuna_free_deferred(g.p, D), 0); /* after the frees: they would run it */
    CHECK_EQ(lacuna_trim(g.p), 0);
    st = lt_stats(g.p);
    if (st.guard == LACUNA_GUARD_MARKER)
        CHECK(st.given_back >= g.n - 4 * 64);
    CHECK_EQ(P[rs - 1], 5); /* its pages, and guard, stay */
    for (size_t i = 0; i < rs; i += PG)
        CHECK_EQ(D[i], 3);
    if (st.guard != LACUNA_GUARD_NONE && st.unguarded == 0) {
        CHECK(lt_guarded(P, st.guard_size));
        CHECK(lt_guarded(D, st.guard_size));
    }
    CHECK_EQ(lacuna_region_index(g.p, P), (long)kp);
    CHECK_EQ(st.live, 2); /* P, and D until its thread's next call on the pool */
    /* Take every other slot: P never comes out (the first alloc runs D's deferral: D may). */
    char **again = calloc(g.n, sizeof *again);
    CHECK(again != NULL);
    size_t n = 0;
    for (; n < g.n - 1; n++) {
        again[n] = lacuna_alloc(g.p);
        CHECK(again[n] != NULL);
        CHECK(again[n] != P);
    }
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(lacuna_free(g.p, again[i]), 0);
    CHECK_EQ(P[rs - 1], 5);
    CHECK_EQ(lacuna_free(g.p, P), 0);
    CHECK_EQ(lt_stats(g.p).live, 0);
    free(again);
    drop_grown(&g);
}

TEST(punch_resident_defer_free_top_in_every_chunk)
{
    api_in_chunks(false);
    api_in_chunks(true);
}

/* In a child: a write into the guard of the first region of a grown (non-adjacent) chunk. */
static void fault_in_grown(void *arg)
{
    bool block = arg != NULL;
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    grown g = make_grown(block);
    size_t k = g.n / 2 + 5; /* in the third reservation */
    fprintf(stderr, "pool %p region %zu\n", (void *)g.p, k);
    ((volatile char *)g.r[k])[-100] = 1;
}

TEST(guard_faults_in_grown_chunk)
{
    for (int block = 0; block <= 1; block++) {
        char err[2048];
        int st = lt_fork_run(fault_in_grown, block ? (void *)1 : NULL, err, sizeof err);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
        void *pool;
        size_t idx;
        const char *line = strstr(err, "pool 0x"); /* after any warning of the fallback */
        CHECK(line && sscanf(line, "pool %p region %zu", &pool, &idx) == 2);
        char want[200];
        snprintf(want, sizeof want,
                 "lacuna: write past the end of region %zu of pool %p (into the guard of region "
                 "%zu, fault at 0x",
                 idx - 1, pool, idx);
        if (!strstr(err, want)) {
            fprintf(stderr, "child stderr:\n%s\nwanted: %s\n", err, want);
            CHECK(0);
        }
    }
}

static void child_uses_grown(void *arg)
{
    grown *g = arg;
    /* free some of every chunk, take them back, grow further */
    for (size_t i = 0; i < g->n; i += 7)
        CHECK_EQ(lacuna_free(g->p, g->r[i]), 0);
    size_t more = g->n;
    char **r = alloc_n(g->p, more, 1);
    lacuna_stats st = lt_stats(g->p);
    CHECK_EQ(st.live, g->n - (g->n + 6) / 7 + more);
    CHECK(st.capacity >= st.live);
    free_all_checked(g->p, r, more);
    free(r);
}

TEST(fork_after_growth)
{
    for (int block = 0; block <= 1; block++) {
        grown g = make_grown(block);
        char err[2048];
        int st = lt_fork_run(child_uses_grown, &g, err, sizeof err);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            fprintf(stderr, "child: %s\n", err);
            CHECK(0);
        }
        free_all_checked(g.p, g.r, g.n);
        drop_grown(&g);
    }
}

/* Page tables given back: a middle run while regions on both sides stay live. */
TEST(free_run_gives_page_tables_back)
{
    enum { N = 20000 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = N});
    char **r = alloc_n(p, N, 1);
    if (lt_stats(p).guard != LACUNA_GUARD_MARKER)
        SKIP(
            "mprotect guards (the fallback): a region per VMA, its page tables are not given back");
    long pte1 = lt_status_kib("VmPTE:"), rss1 = lt_rss_kib();
    for (size_t i = 100; i < N - 100; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    CHECK_EQ(lacuna_trim(p), 0);
    long pte2 = lt_status_kib("VmPTE:"), rss2 = lt_rss_kib();
    lacuna_stats st = lt_stats(p);
    fprintf(stderr, "VmPTE %ld -> %ld KiB, RSS %ld -> %ld KiB, given back %llu\n", pte1, pte2, rss1,
            rss2, (unsigned long long)st.given_back);
    CHECK(st.given_back >= N - 200 - 2 * 64);
    /* a 4 KiB table per 2 MiB; the pages and the state lines (sanitizers keep shadow pages) */
    VMA_CHECK(pte1 - pte2 >= (N - 1000) * 68 / 2048 * 4 * 3 / 4);
    VMA_CHECK(rss1 - rss2 >= (N - 200) * 4 + (N - 1000) * 64 / KIB);
    CHECK_EQ(lt_resident_pages(r[100], (size_t)(r[N - 101] - r[100])), 0);
    for (size_t i = 0; i < 100; i++) { /* the live ones kept their pages and guards */
        CHECK_EQ(r[i][64 * KIB - PG], 1);
        CHECK(lt_guarded(r[N - 1 - i], PG));
    }
    char **again = alloc_n(p, N - 200, 1);
    for (size_t i = 0; i < N - 200; i++)
        CHECK(lt_guarded(again[i], PG));
    lacuna_pool_destroy(p);
    free(again);
    free(r);
}

TEST(background_gives_back_unasked)
{
    enum { N = 20000 };
    long pte0 = lt_status_kib("VmPTE:");
    lacuna_pool *p = lt_pool(
        (lacuna_pool_config){.region_size = 64 * KIB, .decay_ms = 100, .flags = LACUNA_BACKGROUND});
    char **r = alloc_n(p, N, 2);
    long pte1 = lt_status_kib("VmPTE:"), rss1 = lt_rss_kib();
    shuffle(r, N);
    for (size_t i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_stats st = lt_stats(p);
    for (int i = 0; i < 50 && lt_stats(p).given_back < N / 2; i++) {
        struct timespec t = {0, 20 * 1000000};
        nanosleep(&t, NULL); /* no pool call: only the background thread can do it */
    }
    long pte2 = lt_status_kib("VmPTE:"), rss2 = lt_rss_kib();
    st = lt_stats(p);
    fprintf(stderr, "VmPTE %ld -> %ld KiB (start %ld), RSS %ld -> %ld KiB, given back %llu\n", pte1,
            pte2, pte0, rss1, rss2, (unsigned long long)st.given_back);
    VMA_CHECK(rss1 - rss2 >= N * 2 * 4 * 9 / 10);
    if (st.guard == LACUNA_GUARD_MARKER) {
        CHECK(st.given_back >= N / 2);
        VMA_CHECK(pte2 - pte0 <= 1024);
    }
    lacuna_pool_destroy(p);
    free(r);
}

/* Resident pages of the pool's state lines and of its clean stack (mincore). */
static size_t state_pages(const lacuna_pool *p)
{
    return lt_resident_pages((const void *)p->state, p->capacity_max * LAC_STATE_STRIDE);
}

static size_t clean_pages(const lacuna_pool *p)
{
    uintptr_t lo = (uintptr_t)p->clean & ~(uintptr_t)(PG - 1);
    return lt_resident_pages((const void *)lo, (uintptr_t)p->clean + p->capacity_max * 4 - lo);
}

/* Poll the stats (no pool call that releases) until done(st), at most `tries` times 10 ms apart:
 * only the background thread can get there. */
static lacuna_stats wait_for(const lacuna_pool *p, bool (*done)(const lacuna_stats *), int tries)
{
    lacuna_stats st = lt_stats(p);
    for (int i = 0; i < tries && !done(&st); i++) {
        struct timespec t = {0, 10 * 1000000};
        nanosleep(&t, NULL);
        st = lt_stats(p);
    }
    return st;
}

static size_t short_run; /* give_back_min of the pool under test: a run this long goes back */

/* All but this thread's cache given back, and nothing clean but runs too short between those. */
static bool cache_only_warm(const lacuna_stats *st)
{
    return st->warm <= LAC_TC_MAX && st->used == st->warm + st->released &&
           st->released < (st->warm + 1) * short_run;
}

/* What a burst leaves in the side tables once the background thread has given it back, no call
 * made: the state lines of the slots in this thread's cache (a page each at most) and of the
 * short free runs between them (too short to give back: they share those pages), and a page or
 * two more. Give-back rounds used to leave a page of state lines resident wherever two runs given
 * back together met (all FRESH, never dropped again: ~300 pages after this burst) and a page of
 * the clean stack per round (~20). After a trim, with no cache left, nothing but a page or two. */
TEST(background_leaves_no_side_pages)
{
    enum { N = 100000 };
    lacuna_pool *p = lt_pool(
        (lacuna_pool_config){.region_size = 64 * KIB, .decay_ms = 100, .flags = LACUNA_BACKGROUND});
    if (lt_stats(p).guard != LACUNA_GUARD_MARKER)
        SKIP("mprotect guards (the fallback): free runs are not given back");
    short_run = p->give_back_min;
    long rss0 = lt_rss_kib();
    lacuna_stats st;
    for (int round = 0; round < 3; round++) { /* later rounds reuse given-back slots */
        char **r = alloc_n(p, N, 0); /* the side tables are the point: no region page touched */
        shuffle(r, N);
        for (size_t i = 0; i < N; i++)
            CHECK_EQ(lacuna_free(p, r[i]), 0);
        free(r);
        st = wait_for(p, cache_only_warm, 2500);
    }
    malloc_trim(0); /* the test's arrays of pointers (later ones come from the heap) */
    long rss1 = lt_rss_kib();
    size_t sp = state_pages(p), cp = clean_pages(p);
    fprintf(stderr,
            "after the background's give-back: %zu state pages, %zu clean-stack pages, RSS +%ld "
            "KiB; warm %zu, released %zu, used %zu, given back %llu\n",
            sp, cp, rss1 - rss0, st.warm, st.released, st.used, (unsigned long long)st.given_back);
    CHECK(cache_only_warm(&st));
    CHECK(sp <= st.warm + 4);
    CHECK(cp <= 1);
    /* those pages, and up to 128 KiB of the other side tables and of the test's own */
    VMA_CHECK(rss1 - rss0 <= (long)(sp + cp + 32) * 4);

    CHECK_EQ(lacuna_trim(p), 0);
    sp = state_pages(p), cp = clean_pages(p);
    st = lt_stats(p);
    fprintf(stderr, "after a trim: %zu state pages, %zu clean-stack pages, used %zu\n", sp, cp,
            st.used);
    CHECK_EQ(st.used, 0);
    CHECK(sp <= 4);
    CHECK(cp <= 1);
    lacuna_pool_destroy(p);
}

static bool nothing_warm(const lacuna_stats *st)
{
    return st->warm == 0;
}

static bool nothing_used(const lacuna_stats *st)
{
    return st->used == 0;
}

/* A few regions freed after the rest was given back (fewer than two page tables' worth): the
 * background thread releases them and then gives back their guards, page tables and state lines
 * too. It used to wait for two page tables' worth of releases that an idle process never makes,
 * leaving each such slot a page-table page. (cache 63: no thread caches, every free goes to the
 * shared ring the background thread sweeps.) */
TEST(background_gives_back_a_late_few)
{
    enum { N = 4000, EVERY = 200 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){
        .region_size = 64 * KIB, .cache = 63, .decay_ms = 50, .flags = LACUNA_BACKGROUND});
    if (lt_stats(p).guard != LACUNA_GUARD_MARKER)
        SKIP("mprotect guards (the fallback): free runs are not given back");
    char **r = alloc_n(p, N, 1);
    for (size_t i = 0; i < N; i++)
        if (i % EVERY != 0)
            CHECK_EQ(lacuna_free(p, r[i]), 0);
    CHECK_EQ(lacuna_trim(p), 0); /* the rest given back, nothing counted towards a round */
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.warm, 0);
    CHECK_EQ(st.live, N / EVERY);
    long pte1 = lt_status_kib("VmPTE:");
    CHECK(N / EVERY < 4 * 1024 * KIB / (64 * KIB + PG)); /* fewer than two tables' worth */
    for (size_t i = 0; i < N; i += EVERY)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    st = wait_for(p, nothing_warm, 2500);
    CHECK_EQ(st.warm, 0);
    st = wait_for(p, nothing_used, 500); /* 100 decays: the give-back follows the release */
    long pte2 = lt_status_kib("VmPTE:");
    fprintf(stderr, "the last %d freed: used %zu, released %zu, VmPTE %ld -> %ld KiB\n", N / EVERY,
            st.used, st.released, pte1, pte2);
    CHECK_EQ(st.used, 0);
    CHECK_EQ(st.released, 0);
    CHECK(state_pages(p) <= 2);
    VMA_CHECK(pte1 - pte2 >= N / EVERY * 4 / 2); /* a table each (sanitizers keep shadow ones) */
    lacuna_pool_destroy(p);
    free(r);
}

/* ---- strict guards -------------------------------------------------------------------------- */

/* The injector is compiled in when the library is (a PUBLIC definition of lacuna_static). */
static void need_injector(void)
{
#ifndef LACUNA_FAULT_INJECTION
    SKIP("built without LACUNA_FAULT_INJECTION");
#endif
}

TEST(strict_refuses_when_guard_install_fails)
{
    need_injector();
    lacuna_pool *bad = NULL;
    lacuna_pool_config c = {
        .region_size = 16 * KIB, .guard = LACUNA_GUARD_NONE, .flags = LACUNA_STRICT_GUARD};
    CHECK_EQ(lacuna_pool_create(&c, &bad), EINVAL);
    lacuna_guard modes[] = {LACUNA_GUARD_DEFAULT, LACUNA_GUARD_MPROTECT, LACUNA_GUARD_MARKER};
    for (size_t m = 0; m < 3; m++) {
        lacuna_features f;
        lacuna_features_get(&f);
        if (modes[m] == LACUNA_GUARD_MARKER && !f.guard_marker)
            continue;
        for (int strict = 0; strict <= 1; strict++) {
            lacuna_pool *p =
                lt_pool((lacuna_pool_config){.region_size = 16 * KIB,
                                             .guard = modes[m],
                                             .flags = strict ? LACUNA_STRICT_GUARD : 0});
            lac_fault_inject(LAC_OP_GUARD, 1, ENOMEM);
            errno = 0;
            char *r = lacuna_alloc(p);
            lac_fault_inject(LAC_OP_GUARD, 0, 0);
            lacuna_stats st = lt_stats(p);
            CHECK_EQ(st.guard_error, ENOMEM);
            CHECK(st.guard_failures >= 1);
            if (strict || st.guard == LACUNA_GUARD_MARKER) {
                /* markers keep a slot whose guard failed back; strict does it in every mode */
                if (r != NULL) /* a batch: the slots after the failed one got their guards */
                    CHECK(lt_guarded(r, st.guard_size));
                else
                    CHECK_EQ(errno, ENOMEM);
                CHECK_EQ(st.unguarded, 0);
            } else {
                CHECK(r != NULL); /* mprotect without strict: handed out, counted */
                CHECK_EQ(st.unguarded, 1);
            }
            /* the failed slot is retried: every later region is guarded */
            for (int i = 0; i < 100; i++) {
                char *q = lacuna_alloc(p);
                CHECK(q != NULL);
                CHECK(lt_guarded(q, st.guard_size));
            }
            lacuna_pool_destroy(p);
        }
    }
}

/* In a child (the budget is process-wide): spend the mprotect budget for real. */
static void spend_budget(void *arg)
{
    bool strict = arg != NULL;
    lacuna_features f;
    lacuna_features_get(&f);
    size_t budget = f.mprotect_guard_budget;
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 4 * KIB,
                                                  .capacity = budget + 100,
                                                  .guard = LACUNA_GUARD_MPROTECT,
                                                  .cache = LACUNA_CACHE_NONE,
                                                  .flags = strict ? LACUNA_STRICT_GUARD : 0});
    size_t got = 0;
    char *r;
    while ((r = lacuna_alloc(p)) != NULL) {
        got++;
        if (strict || got <= budget)
            CHECK(lt_guarded(r, PG));
    }
    CHECK_EQ(errno, ENOMEM);
    lacuna_stats st = lt_stats(p);
    if (strict) {
        CHECK_EQ(got, budget);
        CHECK_EQ(st.unguarded, 0);
        CHECK_EQ(st.guard_error, ENOSPC);
        CHECK(st.guard_failures >= 1);
    } else {
        CHECK_EQ(got, budget + 100);
        CHECK_EQ(st.unguarded, 100);
    }
    lacuna_pool_destroy(p);
}

TEST(strict_refuses_past_mprotect_budget)
{
    for (int strict = 0; strict <= 1; strict++) {
        char err[4096];
        int st = lt_fork_run(spend_budget, strict ? (void *)1 : NULL, err, sizeof err);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            fprintf(stderr, "child: %s\n", err);
            CHECK(0);
        }
        CHECK((strstr(err, "budget") != NULL) == !strict); /* strict says it in stats instead */
    }
}
