/* lacuna_wipe: every strategy zeroes every residency and pattern, touches no page it need not,
 * releases when it says it does, refuses bad ranges with memory untouched, and works on shared
 * memory (the pages of a shared mapping really go). */
#define _GNU_SOURCE
#include "internal.h"
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGES 8192 /* 32 MiB */

static const lacuna_wipe_strategy all[] = {LACUNA_WIPE_AUTO,     LACUNA_WIPE_MEMSET,
                                           LACUNA_WIPE_DONTNEED, LACUNA_WIPE_REMAP,
                                           LACUNA_WIPE_MINCORE,  LACUNA_WIPE_PAGEMAP};
static const char *names[] = {"auto", "memset", "dontneed", "remap", "mincore", "pagemap"};
#define NSTRAT (sizeof all / sizeof all[0])

static size_t pgsz(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static char *map_private(size_t pages)
{
    char *m =
        mmap(NULL, pages * pgsz(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK_EQ(madvise(m, pages * pgsz(), MADV_NOHUGEPAGE), 0);
    return m;
}

static void dirty_page(char *p)
{
    size_t pg = pgsz();
    p[0] = 1;
    p[pg / 2] = 2;
    p[pg - 1] = 3;
}

/* Write pct % of the pages: scattered at random, or in clustered runs of 1-64 pages. */
static size_t fill(char *m, size_t pages, double pct, int clustered)
{
    size_t want = (size_t)(pages * pct / 100.0 + 0.5), done = 0;
    if (pct >= 100) {
        for (size_t i = 0; i < pages; i++)
            dirty_page(m + i * pgsz());
        return pages;
    }
    while (done < want) {
        size_t at = next_rand() % pages;
        size_t run = clustered ? 1 + next_rand() % 64 : 1;
        for (size_t i = at; i < at + run && i < pages && done < want; i++) {
            if (m[i * pgsz()] == 0)
                done++;
            dirty_page(m + i * pgsz());
        }
    }
    return done;
}

/* Resident pages among the first `pages` pages at m. */
static size_t resident(const char *m, size_t pages)
{
    return lt_resident_pages(m, pages * (size_t)sysconf(_SC_PAGESIZE));
}

TEST(every_strategy_zeroes_every_residency)
{
    static const double pcts[] = {0, 1, 50, 100};
    char *m = map_private(PAGES);
    for (size_t s = 0; s < NSTRAT; s++) {
        for (int clustered = 0; clustered < 2; clustered++) {
            for (size_t k = 0; k < sizeof pcts / sizeof pcts[0]; k++) {
                size_t wrote = fill(m, PAGES, pcts[k], clustered);
                size_t before = resident(m, PAGES);
                CHECK(before >= wrote);
                int rc = lacuna_wipe(m, PAGES * pgsz(), all[s]);
                if (rc != 0)
                    fprintf(stderr, "%s %.0f%% %s: %d\n", names[s], pcts[k],
                            clustered ? "clustered" : "random", rc);
                CHECK_EQ(rc, 0);
                size_t after = resident(m, PAGES);
                switch (all[s]) {
                case LACUNA_WIPE_DONTNEED:
                case LACUNA_WIPE_REMAP:
                    CHECK_EQ(after, 0); /* released */
                    break;
                case LACUNA_WIPE_MEMSET:
                    CHECK_EQ(after, PAGES); /* memset faults everything in */
                    break;
                default:
                    CHECK_EQ(after, before); /* touched the resident pages only */
                    break;
                }
                CHECK(lt_all_zero(m, PAGES * pgsz()));
                /* Start the next round from nothing resident. */
                CHECK_EQ(madvise(m, PAGES * pgsz(), MADV_DONTNEED), 0);
            }
        }
    }
    munmap(m, PAGES * pgsz());
}

TEST(random_residency_and_last_choice)
{
    char *m = map_private(PAGES);
    for (int round = 0; round < 20; round++) {
        double pct = (double)(next_rand() % 1001) / 10.0;
        fill(m, PAGES, pct, (int)(next_rand() & 1));
        size_t before = resident(m, PAGES);
        CHECK_EQ(lacuna_wipe(m, PAGES * pgsz(), LACUNA_WIPE_AUTO), 0);
        CHECK_EQ(resident(m, PAGES), before);
        CHECK(lt_all_zero(m, PAGES * pgsz()));
        lacuna_wipe_strategy used = lacuna_wipe_last();
        CHECK(used == LACUNA_WIPE_PAGEMAP || used == LACUNA_WIPE_MINCORE);
        lacuna_features f;
        lacuna_features_get(&f);
        if (!f.pagemap_scan)
            CHECK(used == LACUNA_WIPE_MINCORE);
    }
    /* PAGEMAP falls back to mincore without PAGEMAP_SCAN, and says so. */
    fill(m, PAGES, 3, 0);
    CHECK_EQ(lacuna_wipe(m, PAGES * pgsz(), LACUNA_WIPE_PAGEMAP), 0);
    lacuna_features f;
    lacuna_features_get(&f);
    CHECK_EQ(lacuna_wipe_last(), f.pagemap_scan ? LACUNA_WIPE_PAGEMAP : LACUNA_WIPE_MINCORE);
    CHECK_EQ(lacuna_wipe(m, PAGES * pgsz(), LACUNA_WIPE_MEMSET), 0);
    CHECK_EQ(lacuna_wipe_last(), LACUNA_WIPE_MEMSET);
    munmap(m, PAGES * pgsz());
}

static bool count_vma(void *ctx, const lac_mapping *m)
{
    (void)m;
    ++*(long *)ctx;
    return true;
}

/* VMAs over [m, m+len) (the sanitizers map memory of their own: count only ours). */
static long vmas_over(const void *m, size_t len)
{
    long n = 0;
    CHECK_EQ(lac_os_maps(m, len, 0, count_vma, &n), 0);
    return n;
}

TEST(remap_splits_at_most_once)
{
    char *m = map_private(PAGES);
    fill(m, PAGES, 10, 1);
    CHECK_EQ(vmas_over(m, PAGES * pgsz()), 1);
    CHECK_EQ(lacuna_wipe(m, PAGES * pgsz(), LACUNA_WIPE_REMAP), 0);
    CHECK_EQ(vmas_over(m, PAGES * pgsz()), 1);
    fill(m, PAGES, 10, 1);
    CHECK_EQ(lacuna_wipe(m + 16 * pgsz(), 64 * pgsz(), LACUNA_WIPE_REMAP), 0);
    /* The fresh mapping lacks MADV_NOHUGEPAGE of its neighbours, so it may split: at most 3. */
    CHECK(vmas_over(m, PAGES * pgsz()) <= 3);
    CHECK(lt_all_zero(m + 16 * pgsz(), 64 * pgsz()));
    munmap(m, PAGES * pgsz());
}

/* ---- bad input: EINVAL, memory untouched ---- */

static void check_untouched(const char *m, size_t pages)
{
    for (size_t i = 0; i < pages; i++) {
        CHECK_EQ(m[i * pgsz()], 1);
        CHECK_EQ(m[i * pgsz() + pgsz() - 1], 3);
    }
}

TEST(bad_input_einval_untouched)
{
    size_t pg = pgsz();
    char *m = map_private(17);
    CHECK_EQ(munmap(m + 16 * pg, pg), 0); /* nothing mapped right after the range */
    for (size_t i = 0; i < 16; i++)
        dirty_page(m + i * pg);
    for (size_t s = 0; s < NSTRAT; s++) {
        CHECK_EQ(lacuna_wipe(NULL, pg, all[s]), EINVAL);
        CHECK_EQ(lacuna_wipe(m, 0, all[s]), EINVAL);
        CHECK_EQ(lacuna_wipe(m + 1, pg, all[s]), EINVAL);
        CHECK_EQ(lacuna_wipe(m, pg + 1, all[s]), EINVAL);
        CHECK_EQ(lacuna_wipe(m, pg / 2, all[s]), EINVAL);
        CHECK_EQ(lacuna_wipe(m, SIZE_MAX - pg + 1, all[s]), EINVAL); /* wraps */
        check_untouched(m, 16);
    }
    CHECK_EQ(lacuna_wipe(m, pg, (lacuna_wipe_strategy)99), EINVAL);
    CHECK_EQ(lacuna_wipe(m, pg, (lacuna_wipe_strategy)-1), EINVAL);
    check_untouched(m, 16);

    /* A hole in the middle; a range running past the end of the mapping. */
    CHECK_EQ(munmap(m + 8 * pg, pg), 0);
    for (size_t s = 0; s < NSTRAT; s++) {
        CHECK_EQ(lacuna_wipe(m, 16 * pg, all[s]), EINVAL);
        CHECK_EQ(lacuna_wipe(m + 9 * pg, 8 * pg, all[s]), EINVAL);
    }
    check_untouched(m, 8);
    check_untouched(m + 9 * pg, 7);

    /* Read-only memory; private file-backed memory (a release would not read as zeros). */
    CHECK_EQ(mprotect(m, 2 * pg, PROT_READ), 0);
    for (size_t s = 0; s < NSTRAT; s++)
        CHECK_EQ(lacuna_wipe(m, 4 * pg, all[s]), EINVAL);
    check_untouched(m, 4);
    int fd = memfd_create("t", 0);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, (off_t)(4 * pg)), 0);
    char *f = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(f != MAP_FAILED);
    for (size_t i = 0; i < 4; i++)
        dirty_page(f + i * pg);
    for (size_t s = 0; s < NSTRAT; s++)
        CHECK_EQ(lacuna_wipe(f, 4 * pg, all[s]), EINVAL);
    check_untouched(f, 4);
    munmap(f, 4 * pg);
    close(fd);

    /* Private and shared memory side by side in one range: refused too. */
    char *two = mmap(NULL, 8 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(two != MAP_FAILED);
    CHECK(mmap(two + 4 * pg, 4 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
               -1, 0) == two + 4 * pg);
    for (size_t i = 0; i < 8; i++)
        dirty_page(two + i * pg);
    for (size_t s = 0; s < NSTRAT; s++)
        CHECK_EQ(lacuna_wipe(two, 8 * pg, all[s]), EINVAL);
    check_untouched(two, 8);
    /* Each half alone is fine. */
    CHECK_EQ(lacuna_wipe(two, 4 * pg, LACUNA_WIPE_AUTO), 0);
    CHECK_EQ(lacuna_wipe(two + 4 * pg, 4 * pg, LACUNA_WIPE_AUTO), 0);
    CHECK(lt_all_zero(two, 8 * pg));
    munmap(two, 8 * pg);
}

TEST(range_over_several_mappings)
{
    /* Adjacent private mappings with different flags (so they stay separate VMAs). */
    size_t pg = pgsz();
    char *m = map_private(64);
    CHECK_EQ(madvise(m + 16 * pg, 16 * pg, MADV_HUGEPAGE), 0); /* splits the VMA */
    for (size_t s = 0; s < NSTRAT; s++) {
        fill(m, 64, 50, 1);
        CHECK_EQ(lacuna_wipe(m, 64 * pg, all[s]), 0);
        CHECK(lt_all_zero(m, 64 * pg));
    }
    munmap(m, 64 * pg);
}

TEST(guard_of_a_pool_region_einval_untouched)
{
    size_t pg = pgsz();
    lacuna_pool_config c = {.region_size = 16 * pg, .capacity = 8};
    lacuna_pool *p;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    char *r = lacuna_alloc(p);
    char *r2 = lacuna_alloc(p);
    CHECK(r != NULL && r2 != NULL);
    for (size_t i = 0; i < 16; i++)
        dirty_page(r + i * pg);
    for (size_t s = 0; s < NSTRAT; s++) {
        /* Starting one page below the region: its guard. */
        CHECK_EQ(lacuna_wipe(r - pg, 17 * pg, all[s]), EINVAL);
        CHECK_EQ(lacuna_wipe(r - pg, pg, all[s]), EINVAL);
        /* Running into the next region's guard. */
        CHECK_EQ(lacuna_wipe(r, 17 * pg, all[s]), EINVAL);
        check_untouched(r, 16);
    }
    /* The region itself is fine. */
    CHECK_EQ(lacuna_wipe(r, 16 * pg, LACUNA_WIPE_AUTO), 0);
    CHECK(lt_all_zero(r, 16 * pg));
    /* The guard is still there: the pool still refuses it. */
    CHECK_EQ(lacuna_wipe(r2 - pg, pg, LACUNA_WIPE_MEMSET), EINVAL);
    lacuna_pool_destroy(p);
}

/* ---- shared memory ---- */

typedef struct shared_job {
    char *m;
    size_t pages;
    lacuna_wipe_strategy s;
} shared_job;

static void child_wipe(void *arg)
{
    shared_job *j = arg;
    if (lacuna_wipe(j->m, j->pages * pgsz(), j->s) != 0)
        _exit(3);
}

static void child_write(void *arg)
{
    shared_job *j = arg;
    fill(j->m, j->pages, 30, 1);
}

TEST(shared_memory_every_strategy)
{
    size_t pages = 4096; /* 16 MiB */
    size_t bytes = pages * pgsz();
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    char err[512];
    for (size_t s = 0; s < NSTRAT; s++) {
        /* A child writes; the parent sees the pages and wipes them. */
        shared_job j = {m, pages, all[s]};
        CHECK_EQ(lt_fork_run(child_write, &j, err, sizeof err), 0);
        CHECK(!lt_all_zero(m, bytes));
        CHECK_EQ(lacuna_wipe(m, bytes, all[s]), 0);
        CHECK(lt_all_zero(m, bytes));
        /* Every page in the parent now, then a child wipes: the release strategies must take the
         * pages away from the parent too (MADV_REMOVE: the shmem pages are gone), where
         * MADV_DONTNEED in the child would have left them. */
        memset(m, 7, bytes);
        long before = lt_status_kib("RssShmem:");
        CHECK(before >= (long)(bytes / 1024));
        CHECK_EQ(lt_fork_run(child_wipe, &j, err, sizeof err), 0);
        long after = lt_status_kib("RssShmem:");
        if (all[s] == LACUNA_WIPE_DONTNEED || all[s] == LACUNA_WIPE_REMAP)
            CHECK(after <= before - (long)(bytes / 1024) + 256);
        else
            CHECK(after >= before - 256); /* memset: the pages stay */
        CHECK(lt_all_zero(m, bytes));
    }
    munmap(m, bytes);
}

TEST(memfd_punch_frees_blocks)
{
    size_t pages = 1024, bytes = pages * pgsz();
    int fd = memfd_create("wipe", 0);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, (off_t)bytes), 0);
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 5, bytes);
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0);
    CHECK(st.st_blocks * 512 >= (long long)bytes);
    CHECK_EQ(lacuna_wipe(m, bytes, LACUNA_WIPE_DONTNEED), 0);
    CHECK_EQ(fstat(fd, &st), 0);
    CHECK_EQ(st.st_blocks, 0);
    CHECK(lt_all_zero(m, bytes));
    munmap(m, bytes);
    close(fd);
}

/* ---- the os layer failing ---- */

TEST(injected_failures_are_reported)
{
#ifndef LACUNA_FAULT_INJECTION
    SKIP("built without LACUNA_FAULT_INJECTION");
#else
    char *m = map_private(64);
    fill(m, 64, 50, 0);
    lac_fault_inject(LAC_OP_REMAP, 1, ENOMEM);
    CHECK_EQ(lacuna_wipe(m, 64 * pgsz(), LACUNA_WIPE_REMAP), ENOMEM);
    lac_fault_inject(LAC_OP_RELEASE, 1, ENOMEM);
    CHECK_EQ(lacuna_wipe(m, 64 * pgsz(), LACUNA_WIPE_DONTNEED), ENOMEM);
    lac_fault_inject(LAC_OP_SCAN, 1, EIO);
    int rc = lacuna_wipe(m, 64 * pgsz(), LACUNA_WIPE_MINCORE);
    /* The guard check may have taken the injected scan failure instead of mincore. */
    CHECK_EQ(rc, EIO);
    /* Recovered: the next wipe works. */
    CHECK_EQ(lacuna_wipe(m, 64 * pgsz(), LACUNA_WIPE_AUTO), 0);
    CHECK(lt_all_zero(m, 64 * pgsz()));
    munmap(m, 64 * pgsz());
#endif
}

TEST(auto_switches_between_dense_and_sparse_stretches)
{
    /* Dense, sparse, dense, empty, dense: AUTO must switch scanner both ways and miss nothing. */
    char *m = map_private(PAGES);
    size_t q = PAGES / 8;
    fill(m, q, 100, 0);
    fill(m + q * pgsz(), 2 * q, 0.5, 0);
    fill(m + 3 * q * pgsz(), q, 90, 1);
    fill(m + 7 * q * pgsz(), q, 100, 0);
    size_t before = resident(m, PAGES);
    CHECK_EQ(lacuna_wipe(m, PAGES * pgsz(), LACUNA_WIPE_AUTO), 0);
    CHECK_EQ(resident(m, PAGES), before);
    CHECK(lt_all_zero(m, PAGES * pgsz()));
    /* And again with a range that starts and ends mid-chunk. */
    fill(m, PAGES, 60, 1);
    before = resident(m + 3 * pgsz(), PAGES - 10);
    CHECK_EQ(lacuna_wipe(m + 3 * pgsz(), (PAGES - 10) * pgsz(), LACUNA_WIPE_AUTO), 0);
    CHECK_EQ(resident(m + 3 * pgsz(), PAGES - 10), before);
    CHECK(lt_all_zero(m + 3 * pgsz(), (PAGES - 10) * pgsz()));
    munmap(m, PAGES * pgsz());
}

/* AUTO's scanner by density, on 8 judging stretches of 16 MiB: mincore for a range 70 % resident
 * in long runs, PAGEMAP_SCAN for one 3 % resident (src/wipe.c's LAC_AUTO_* constants). */
TEST(auto_chooses_the_scanner_by_density)
{
    lacuna_features f;
    lacuna_features_get(&f);
    if (!f.pagemap_scan)
        SKIP("no PAGEMAP_SCAN here: AUTO always uses mincore");
    size_t pages = 4 * PAGES;
    char *m = map_private(pages);
    fill(m, pages, 70, 1);
    CHECK_EQ(lacuna_wipe(m, pages * pgsz(), LACUNA_WIPE_AUTO), 0);
    CHECK_EQ(lacuna_wipe_last(), LACUNA_WIPE_MINCORE);
    CHECK(lt_all_zero(m, pages * pgsz()));
    CHECK_EQ(madvise(m, pages * pgsz(), MADV_DONTNEED), 0);
    fill(m, pages, 3, 1);
    CHECK_EQ(lacuna_wipe(m, pages * pgsz(), LACUNA_WIPE_AUTO), 0);
    CHECK_EQ(lacuna_wipe_last(), LACUNA_WIPE_PAGEMAP);
    CHECK(lt_all_zero(m, pages * pgsz()));
    munmap(m, pages * pgsz());
}

/* Only the last page dirty: the validation walk, which stops at the first present page, must not
 * take the range for empty. */
TEST(only_the_last_page_dirty)
{
    char *m = map_private(PAGES);
    for (size_t s = 0; s < NSTRAT; s++) {
        dirty_page(m + (PAGES - 1) * pgsz());
        CHECK_EQ(lacuna_wipe(m, PAGES * pgsz(), all[s]), 0);
        CHECK(lt_all_zero(m, PAGES * pgsz()));
        CHECK_EQ(madvise(m, PAGES * pgsz(), MADV_DONTNEED), 0);
    }
    munmap(m, PAGES * pgsz());
}

TEST(errno_is_left_alone)
{
    char *m = map_private(64);
    fill(m, 64, 50, 0);
    errno = 12345;
    CHECK_EQ(lacuna_wipe(m + 1, pgsz(), LACUNA_WIPE_AUTO), EINVAL);
    CHECK_EQ(errno, 12345);
    for (size_t s = 0; s < NSTRAT; s++) {
        CHECK_EQ(lacuna_wipe(m, 64 * pgsz(), all[s]), 0);
        CHECK_EQ(errno, 12345);
    }
    lacuna_table *t;
    CHECK_EQ(lacuna_table_create(0, 0, &t), EINVAL);
    CHECK_EQ(lacuna_table_create(1u << 20, LACUNA_TABLE_AUTO, &t), 0);
    ((char *)lacuna_table_base(t))[5] = 1;
    CHECK_EQ(lacuna_table_wipe(t), 0);
    lacuna_table_destroy(t);
    CHECK_EQ(errno, 12345);
    munmap(m, 64 * pgsz());
}

static void *small_stack_work(void *arg)
{
    char *m = arg;
    for (size_t s = 0; s < NSTRAT; s++) {
        fill(m, PAGES, 50, (int)(s & 1));
        if (lacuna_wipe(m, PAGES * pgsz(), all[s]) != 0)
            return (void *)1;
    }
    lacuna_table *t;
    unsigned flags[] = {0, LACUNA_TABLE_AUTO, LACUNA_TABLE_PAGES, LACUNA_TABLE_RELEASE};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (lacuna_table_create(8u << 20, flags[i], &t) != 0)
            return (void *)2;
        char *b = lacuna_table_base(t);
        for (size_t p = 0; p < 2048; p += 3) {
            b[p * pgsz()] = 1;
            lacuna_table_mark(t, b + p * pgsz(), 1);
        }
        if (lacuna_table_wipe(t) != 0)
            return (void *)3;
        lacuna_table_destroy(t);
    }
    return NULL;
}

TEST(runs_on_a_16k_stack)
{
    /* Wipes may be called from fibers with small stacks: everything here fits in 16 KiB. */
    size_t stack = 16384;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    stack = 256 * 1024; /* sanitizers grow every frame */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    stack = 256 * 1024;
#endif
#endif
    char *m = map_private(PAGES);
    pthread_attr_t a;
    pthread_attr_init(&a);
    CHECK_EQ(pthread_attr_setstacksize(&a, stack), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, &a, small_stack_work, m), 0);
    void *rc;
    pthread_join(th, &rc);
    CHECK(rc == NULL);
    CHECK(lt_all_zero(m, PAGES * pgsz()));
    pthread_attr_destroy(&a);
    munmap(m, PAGES * pgsz());
}
