/* lacuna_punch, lacuna_punch_many and lacuna_resident: holes in live regions. */
#define _GNU_SOURCE
#include "test.h"

#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG     4096
#define REGION (64 * 1024)

static lacuna_pool *pool(unsigned flags)
{
    lacuna_pool_config c = {.region_size = REGION, .capacity = 4096, .flags = flags};
    return lt_pool(c);
}

/* Fill every byte of [m, m + n) with a pattern of its address. */
static void pattern(char *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        m[i] = (char)(((uintptr_t)(m + i) * 2654435761u) >> 13);
}

static int pattern_ok(const char *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (m[i] != (char)(((uintptr_t)(m + i) * 2654435761u) >> 13))
            return 0;
    return 1;
}

/* Bytes at and above keep_from survive, bytes below (page-rounded) read zero, mid-page keep_from
 * keeps its whole page. */
TEST(punch_keeps_top_zeroes_bottom)
{
    lacuna_pool *p = pool(0);
    char *r = lacuna_alloc(p);
    CHECK(r != NULL);
    pattern(r, REGION);
    char *keep = r + 5 * PG + 100; /* mid-page: page 5 is kept whole */
    CHECK_EQ(lacuna_punch(p, r, keep), 0);
    CHECK(lt_all_zero(r, 5 * PG));
    CHECK(pattern_ok(r + 5 * PG, REGION - 5 * PG));
    /* Nothing below keep_from: a no-op. All of it: the whole region reads zero. */
    CHECK_EQ(lacuna_punch(p, r, r), 0);
    CHECK(pattern_ok(r + 5 * PG, REGION - 5 * PG));
    CHECK_EQ(lacuna_punch(p, r, r + REGION), 0);
    CHECK(lt_all_zero(r, REGION));
    CHECK_EQ(lacuna_free(p, r), 0);
    lacuna_pool_destroy(p);
}

/* RSS really drops, and lacuna_resident counts what was touched, before and after. */
TEST(punch_drops_rss_and_resident_counts)
{
    lacuna_pool *p = pool(0);
    enum { N = 200 };
    char *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL);
        size_t depth = (size_t)(i % 16) + 1; /* pages touched from the top, as a stack */
        memset(r[i] + REGION - depth * PG, 1, depth * PG);
    }
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t pages = 99;
        CHECK_EQ(lacuna_resident(p, r[i], &pages), 0);
        CHECK_EQ(pages, (size_t)(i % 16) + 1);
        CHECK_EQ(pages, lt_resident_pages(r[i], REGION));
        total += pages;
    }
    long before = lt_rss_kib();
    /* Keep the top 2 pages of every region. */
    lacuna_punch_req q[N];
    for (int i = 0; i < N; i++)
        q[i] = (lacuna_punch_req){r[i], r[i] + REGION - 2 * PG};
    CHECK_EQ(lacuna_punch_many(p, q, N), 0);
    long after = lt_rss_kib();
    size_t left = 0;
    for (int i = 0; i < N; i++) {
        size_t pages;
        CHECK_EQ(lacuna_resident(p, r[i], &pages), 0);
        CHECK_EQ(pages, i % 16 == 0 ? 1 : 2);
        left += pages;
        CHECK(lt_all_zero(r[i], REGION - 2 * PG));
    }
    /* (total - left) pages of 4 KiB left RSS; allow 10% for the test's own noise. */
    VMA_CHECK(before - after >= (long)((total - left) * 4 * 9 / 10));
    CHECK(lt_stats(p).release_calls > 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_pool_destroy(p);
}

static lacuna_pool *guard_pool;
static char *guard_region;

static void touch_guard(void *arg)
{
    (void)arg;
    guard_region[-1] = 1; /* the last byte of the guard below the region */
}

/* The guard still faults after a punch (in a forked child), and the region is still usable. */
TEST(guard_survives_punch)
{
    guard_pool = pool(0);
    guard_region = lacuna_alloc(guard_pool);
    CHECK(guard_region != NULL);
    memset(guard_region, 7, REGION);
    CHECK_EQ(lacuna_punch(guard_pool, guard_region, guard_region + REGION), 0);
    lacuna_stats st = lt_stats(guard_pool);
    if (st.guard == LACUNA_GUARD_NONE)
        SKIP("no guard in force on this kernel");
    CHECK(lt_guarded(guard_region, st.guard_size));
    char err[256];
    int status = lt_fork_run(touch_guard, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    memset(guard_region, 3, REGION); /* refaults as fresh zero pages, writable */
    CHECK_EQ(guard_region[0], 3);
    CHECK_EQ(lacuna_free(guard_pool, guard_region), 0);
    lacuna_pool_destroy(guard_pool);
}

/* Bad input is EINVAL, and a batch with one bad request releases nothing. */
TEST(punch_bad_input)
{
    lacuna_pool *p = pool(0);
    char *r = lacuna_alloc(p), *r2 = lacuna_alloc(p);
    CHECK(r != NULL && r2 != NULL);
    memset(r, 5, REGION);
    size_t pages;
    CHECK_EQ(lacuna_punch(NULL, r, r + PG), EINVAL);
    CHECK_EQ(lacuna_punch(p, NULL, NULL), EINVAL);
    CHECK_EQ(lacuna_punch(p, r + PG, r + 2 * PG), EINVAL);   /* not a region start */
    CHECK_EQ(lacuna_punch(p, r, r - 1), EINVAL);             /* below the region */
    CHECK_EQ(lacuna_punch(p, r, r + REGION + 1), EINVAL);    /* above it */
    CHECK_EQ(lacuna_punch(p, r, r2), EINVAL);                /* in another region */
    CHECK_EQ(lacuna_punch(p, (char *)&pages, NULL), EINVAL); /* foreign */
    CHECK_EQ(lacuna_punch_many(p, NULL, 1), EINVAL);
    CHECK_EQ(lacuna_punch_many(p, NULL, 0), 0);
    lacuna_punch_req q[2] = {{r, r + REGION}, {r2, r2 + REGION + PG}};
    CHECK_EQ(lacuna_punch_many(p, q, 2), EINVAL);
    CHECK_EQ(lt_resident_pages(r, REGION), REGION / PG); /* the good one was not punched */
    CHECK_EQ(lacuna_resident(NULL, r, &pages), EINVAL);
    CHECK_EQ(lacuna_resident(p, r, NULL), EINVAL);
    CHECK_EQ(lacuna_resident(p, r + 1, &pages), EINVAL);
    CHECK_EQ(lacuna_free(p, r2), 0);
    CHECK_EQ(lacuna_punch(p, r2, r2 + PG), EINVAL); /* not live */
    CHECK_EQ(lacuna_resident(p, r2, &pages), EINVAL);
    CHECK_EQ(lacuna_resident(p, r, &pages), 0);
    CHECK_EQ(pages, REGION / PG);
    CHECK_EQ(lacuna_free(p, r), 0);
    lacuna_pool_destroy(p);
}

/* More regions than one batch; a LACUNA_ZERO pool gets zeroes after a punch too. */
TEST(punch_many_batches)
{
    lacuna_pool *p = pool(LACUNA_ZERO);
    enum { N = 300 };
    static char *r[N];
    static lacuna_punch_req q[N];
    for (int i = 0; i < N; i++) {
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL);
        memset(r[i], 9, REGION);
        q[i] = (lacuna_punch_req){r[i], r[i] + REGION / 2};
    }
    CHECK_EQ(lacuna_punch_many(p, q, N), 0);
    for (int i = 0; i < N; i++) {
        size_t pages;
        CHECK_EQ(lacuna_resident(p, r[i], &pages), 0);
        CHECK_EQ(pages, REGION / PG / 2);
        CHECK(lt_all_zero(r[i], REGION / 2));
        CHECK_EQ(r[i][REGION / 2], 9);
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    }
    for (int i = 0; i < N; i++) { /* reused: all zero */
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL && lt_all_zero(r[i], REGION));
    }
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_pool_destroy(p);
}

#ifdef LACUNA_FAULT_INJECTION
#include "internal.h"
/* A refused release is reported, and counted. */
TEST(punch_kernel_error)
{
    lacuna_pool *p = pool(0);
    char *r = lacuna_alloc(p);
    CHECK(r != NULL);
    memset(r, 1, REGION);
    lac_fault_inject(LAC_OP_RELEASE, 1, ENOMEM);
    CHECK_EQ(lacuna_punch(p, r, r + REGION), ENOMEM);
    CHECK_EQ(lt_stats(p).release_errors, 1);
    CHECK_EQ(r[0], 1);
    CHECK_EQ(lacuna_punch(p, r, r + REGION), 0);
    CHECK_EQ(r[0], 0);
    CHECK_EQ(lacuna_free(p, r), 0);
    lacuna_pool_destroy(p);
}
#endif
