/* The pool's API surface: configs good and bad, every bad input, exhaustion and recovery,
 * LACUNA_ZERO isolation, stats. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define KIB 1024u

static lacuna_pool *make(size_t region, size_t capacity, unsigned flags)
{
    lacuna_pool_config c = {.region_size = region, .capacity = capacity, .flags = flags};
    lacuna_pool *p = NULL;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    CHECK(p != NULL);
    return p;
}

TEST(create_defaults)
{
    lacuna_pool *p = make(64 * KIB, 0, 0);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    long pg = sysconf(_SC_PAGESIZE);
    /* capacity 0 grows: a first reservation of 2048 slots (256 MiB rounded down to a power of
     * two), up to 2^24 slots */
    CHECK_EQ(st.capacity, 2048);
    CHECK_EQ(st.capacity_max, 1 << 24);
    CHECK_EQ(st.region_size, 64 * KIB);
    CHECK_EQ(st.guard_size, pg);
    CHECK_EQ(st.stride, 64 * KIB + pg);
    CHECK_EQ(st.reserved_bytes, st.stride * st.capacity);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.used, 0);
    CHECK(st.guard == LACUNA_GUARD_MARKER || st.guard == LACUNA_GUARD_MPROTECT);
    CHECK(st.release == LACUNA_RELEASE_DONTNEED);
    CHECK_EQ(st.cache, 1024);
    CHECK_EQ(st.decay_ms, 1000);
    lacuna_features f;
    lacuna_features_get(&f);
    CHECK_EQ(st.guard, f.guard_marker ? LACUNA_GUARD_MARKER : LACUNA_GUARD_MPROTECT);
    lacuna_pool_destroy(p);
    lacuna_pool_destroy(NULL); /* a no-op */
}

TEST(create_rounds_sizes)
{
    lacuna_pool_config c = {
        .region_size = 5000, .capacity = 10, .guard_size = 1, .keep_resident = 1};
    lacuna_pool *p;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    long pg = sysconf(_SC_PAGESIZE);
    CHECK_EQ(st.region_size, 2 * pg);
    CHECK_EQ(st.guard_size, pg);
    CHECK_EQ(st.keep_resident, pg);
    lacuna_pool_destroy(p);
}

TEST(create_bad_configs)
{
    lacuna_pool *p = (lacuna_pool *)0x1;
    long vmas = lt_vma_count();
    lacuna_pool_config c = {.region_size = 64 * KIB};
    CHECK_EQ(lacuna_pool_create(NULL, &p), EINVAL);
    CHECK_EQ(lacuna_pool_create(&c, NULL), EINVAL);
    c.region_size = 0;
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    c.region_size = SIZE_MAX; /* overflows when rounded */
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    c.region_size = 64 * KIB;
    c.capacity = SIZE_MAX / 1024; /* capacity * stride overflows */
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    c.capacity = (size_t)1 << 40; /* absurd */
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    c.capacity = 10;
    c.guard_size = SIZE_MAX;
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    c.guard_size = 0;
    c.keep_resident = 64 * KIB; /* must leave something to release */
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    c.keep_resident = 0;
    c.guard = (lacuna_guard)42;
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    c.guard = LACUNA_GUARD_DEFAULT;
    c.release = (lacuna_release)42;
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    c.release = LACUNA_RELEASE_DEFAULT;
    c.flags = 0x80;
    CHECK_EQ(lacuna_pool_create(&c, &p), EINVAL);
    CHECK(p == (lacuna_pool *)0x1);    /* untouched on failure */
    VMA_CHECK(lt_vma_count() == vmas); /* nothing left mapped */
}

TEST(marker_mode_needs_kernel)
{
    lacuna_features f;
    lacuna_features_get(&f);
    lacuna_pool_config c = {.region_size = 64 * KIB, .capacity = 4, .guard = LACUNA_GUARD_MARKER};
    lacuna_pool *p = NULL;
    int rc = lacuna_pool_create(&c, &p);
    if (f.guard_marker) {
        CHECK_EQ(rc, 0);
        lacuna_pool_destroy(p);
    } else {
        CHECK_EQ(rc, ENOTSUP);
        CHECK(p == NULL);
    }
}

TEST(alloc_free_roundtrip)
{
    lacuna_pool *p = make(64 * KIB, 100, 0);
    char *r[100];
    for (int i = 0; i < 100; i++) {
        r[i] = lacuna_alloc(p);
        CHECK(r[i] != NULL);
        CHECK_EQ(lacuna_region_index(p, r[i]), lacuna_region_index(p, r[i] + 64 * KIB - 1));
        memset(r[i], i, 64 * KIB); /* the whole region is usable */
    }
    for (int i = 0; i < 100; i++)
        for (int j = 0; j < i; j++)
            CHECK(r[i] != r[j]);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.live, 100);
    CHECK_EQ(st.used, 100);
    CHECK_EQ(st.allocs, 100);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.frees, 100);
    CHECK_EQ(st.warm + st.released, 100);
    lacuna_pool_destroy(p);
}

/* Frees of p that must be refused while r (p's) and other (another pool's) are live. */
static void refuse_bad_frees(lacuna_pool *p, char *r, char *other)
{
    int local;
    long pg = sysconf(_SC_PAGESIZE);
    CHECK_EQ(lacuna_free(p, NULL), EINVAL);
    CHECK_EQ(lacuna_free(p, &local), EINVAL);            /* outside the pool */
    CHECK_EQ(lacuna_free(p, other), EINVAL);             /* another pool's region */
    CHECK_EQ(lacuna_free(p, r + 1), EINVAL);             /* misaligned */
    CHECK_EQ(lacuna_free(p, r + pg), EINVAL);            /* page-aligned, not a start */
    CHECK_EQ(lacuna_free(p, r - pg), EINVAL);            /* inside the guard */
    CHECK_EQ(lacuna_free(p, r + 64 * KIB + pg), EINVAL); /* the next slot: not live */
    CHECK_EQ(lacuna_free(p, r + 2 * (64 * KIB + pg)), EINVAL);
    CHECK_EQ(lacuna_free(p, r - 64 * KIB), EINVAL); /* before the pool */
}

TEST(bad_frees)
{
    lacuna_pool *p = make(64 * KIB, 256, 0); /* big enough for thread caches: a warm path */
    lacuna_pool *q = make(64 * KIB, 8, 0);
    char *r = lacuna_alloc(p);
    char *other = lacuna_alloc(q);
    CHECK(r != NULL && other != NULL);
    errno = 0;
    CHECK(lacuna_alloc(NULL) == NULL && errno == EINVAL);
    CHECK_EQ(lacuna_free(NULL, r), EINVAL);
    /* This thread used q last: p's frees look their slot up the long way. */
    refuse_bad_frees(p, r, other);
    /* Now p last: the frees take lacuna_free's warm path, whose check is another. */
    CHECK_EQ(lacuna_free(p, lacuna_alloc(p)), 0);
    refuse_bad_frees(p, r, other);
    CHECK_EQ(lacuna_trim(NULL), EINVAL);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.live, 1); /* nothing changed */
    CHECK_EQ(lacuna_free(p, r), 0);
    CHECK_EQ(lacuna_free(p, r), EINVAL); /* double free, region warm */
    CHECK_EQ(lacuna_trim(p), 0);
    CHECK_EQ(lacuna_free(p, r), EINVAL); /* double free, region released */
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.frees, 2);        /* r, and the warm path's region */
    lacuna_pool_stats(NULL, &st); /* no-ops */
    lacuna_pool_stats(p, NULL);
    CHECK_EQ(lacuna_region_index(NULL, r), -1);
    CHECK_EQ(lacuna_region_index(p, r - 1), -1);
    /* The pool still works and hands the region out exactly once. */
    char *a = lacuna_alloc(p), *b = lacuna_alloc(p);
    CHECK(a != NULL && b != NULL && a != b);
    lacuna_pool_destroy(p);
    lacuna_pool_destroy(q);
}

static void exhaust(unsigned flags, size_t cache)
{
    lacuna_pool_config c = {
        .region_size = 16 * KIB, .capacity = 300, .cache = cache, .flags = flags};
    lacuna_pool *p;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    char *r[300];
    for (int i = 0; i < 300; i++)
        CHECK((r[i] = lacuna_alloc(p)) != NULL);
    errno = 0;
    CHECK(lacuna_alloc(p) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK(lacuna_alloc(p) == NULL);
    CHECK_EQ(lacuna_free(p, r[17]), 0);
    char *again = lacuna_alloc(p);
    CHECK(again == r[17]);
    CHECK(lacuna_alloc(p) == NULL);
    for (int i = 0; i < 300; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    for (int i = 0; i < 300; i++)
        CHECK((r[i] = lacuna_alloc(p)) != NULL);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK_EQ(st.live, 300);
    CHECK_EQ(st.used, 300);
    lacuna_pool_destroy(p);
}

TEST(exhaustion_and_recovery)
{
    exhaust(0, 0);
    exhaust(0, LACUNA_CACHE_NONE);
    exhaust(LACUNA_ZERO, 7);
}

/* A secret written by one owner is never seen by the next, whether the region comes back from a
 * thread cache, the shared warm cache, or the kernel. */
static void zero_isolation(lacuna_release release, size_t cache, size_t keep)
{
    lacuna_pool_config c = {.region_size = 64 * KIB,
                            .capacity = 64,
                            .release = release,
                            .cache = cache,
                            .keep_resident = keep,
                            .flags = LACUNA_ZERO};
    lacuna_pool *p;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    for (int round = 0; round < 50; round++) {
        char *r[20];
        for (int i = 0; i < 20; i++) {
            r[i] = lacuna_alloc(p);
            CHECK(r[i] != NULL);
            for (size_t j = 0; j < 64 * KIB; j += 512)
                CHECK(r[i][j] == 0 && r[i][64 * KIB - 1] == 0);
            /* dirty a varying set of pages, top ones always (a stack) */
            for (size_t pgi = 0; pgi < 16; pgi += 1 + (size_t)(round + i) % 5)
                memset(r[i] + pgi * 4096, 0xA5, 100);
            memset(r[i] + 64 * KIB - 300, 0x5A, 300);
        }
        for (int i = 0; i < 20; i++)
            CHECK_EQ(lacuna_free(p, r[i]), 0);
        if (round % 7 == 3)
            CHECK_EQ(lacuna_trim(p), 0);
    }
    lacuna_pool_destroy(p);
}

TEST(zero_isolation_all_paths)
{
    zero_isolation(LACUNA_RELEASE_DONTNEED, 0, 0);
    zero_isolation(LACUNA_RELEASE_DONTNEED, LACUNA_CACHE_NONE, 0);
    zero_isolation(LACUNA_RELEASE_DONTNEED, 5, 8 * KIB);
    zero_isolation(LACUNA_RELEASE_FREE, 5, 0);
    zero_isolation(LACUNA_RELEASE_NEVER, 0, 0);
}

TEST(zero_free_downgrades_to_dontneed)
{
    lacuna_pool_config c = {.region_size = 64 * KIB,
                            .capacity = 4,
                            .release = LACUNA_RELEASE_FREE,
                            .flags = LACUNA_ZERO};
    lacuna_pool *p;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    lacuna_stats st;
    lacuna_pool_stats(p, &st);
    CHECK(st.release == LACUNA_RELEASE_DONTNEED);
    lacuna_pool_destroy(p);
}

TEST(many_pools)
{
    /* More pools than the overflow table holds, alive at once: all work. */
    enum { N = 300 };
    static lacuna_pool *ps[N];
    for (int i = 0; i < N; i++) {
        ps[i] = make(16 * KIB, 4, 0);
        char *r = lacuna_alloc(ps[i]);
        CHECK(r != NULL);
        r[0] = 1;
        CHECK_EQ(lacuna_free(ps[i], r), 0);
    }
    for (int i = 0; i < N; i++)
        lacuna_pool_destroy(ps[i]);
}

TEST(features_reported)
{
    lacuna_features f;
    lacuna_features_get(&f);
    CHECK_EQ(f.page_size, (size_t)sysconf(_SC_PAGESIZE));
    CHECK(f.max_map_count > 0);
    CHECK_EQ(f.mprotect_guard_budget, f.max_map_count / 8);
    const char *forced = getenv("LACUNA_FORCE_FALLBACK");
    if (forced && strcmp(forced, "all") == 0) {
        CHECK(!f.guard_marker && !f.batch_release && !f.pagemap_scan && !f.madv_free);
    }
    lacuna_features_get(NULL);
}
