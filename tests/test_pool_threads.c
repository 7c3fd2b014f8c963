/* Model-based random test: threads allocate, free (often a region another thread allocated) and
 * trim, checked against a model of live regions: no region is ever handed out twice, every
 * region lies inside the pool, LACUNA_ZERO regions read zero, and the stats add up. Seeded and
 * deterministic per thread; not a benchmark. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define KIB  1024u
#define TICK 256 /* src/internal.h LAC_TICK: warm allocs between two slow-path checks */

typedef struct model {
    lacuna_pool *pool;
    size_t capacity, slots, ops;
    _Atomic(char *) *slot;  /* the shared live set: a region or NULL */
    _Atomic uint8_t *owned; /* per region index: 1 while handed out (the model) */
    _Atomic uint64_t allocs, frees, enomem;
    unsigned flags;
} model;

typedef struct worker {
    model *m;
    uint64_t seed;
} worker;

static uint64_t next(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

static void *work(void *arg)
{
    worker *w = arg;
    model *m = w->m;
    uint64_t x = w->seed;
    for (size_t i = 0; i < m->ops; i++) {
        uint64_t r = next(&x);
        size_t j = (size_t)(r >> 8) % m->slots;
        if ((r & 0xff) == 0) {
            CHECK_EQ(lacuna_trim(m->pool), 0);
            continue;
        }
        if ((r & 3) == 0) { /* free whatever is in slot j, whoever allocated it */
            char *old = atomic_exchange(&m->slot[j], NULL);
            if (old) {
                long idx = lacuna_region_index(m->pool, old);
                CHECK(idx >= 0);
                CHECK_EQ(atomic_exchange(&m->owned[idx], 0), 1);
                CHECK_EQ(lacuna_free(m->pool, old), 0);
                atomic_fetch_add(&m->frees, 1);
            }
            continue;
        }
        char *reg = lacuna_alloc(m->pool);
        if (reg == NULL) {
            CHECK_EQ(errno, ENOMEM);
            atomic_fetch_add(&m->enomem, 1);
            continue;
        }
        atomic_fetch_add(&m->allocs, 1);
        long idx = lacuna_region_index(m->pool, reg);
        CHECK(idx >= 0 && (size_t)idx < m->capacity);
        CHECK(lacuna_region_index(m->pool, reg - 1) == -1); /* reg is a region's start */
        CHECK_EQ(atomic_exchange(&m->owned[idx], 1), 0);    /* never handed out twice */
        if (m->flags & LACUNA_ZERO)
            CHECK(reg[0] == 0 && reg[16 * KIB - 1] == 0 && reg[5000] == 0);
        reg[0] = (char)r;
        reg[16 * KIB - 1] = (char)r;
        reg[5000] = 1;
        char *old = atomic_exchange(&m->slot[j], reg);
        if (old) {
            long oi = lacuna_region_index(m->pool, old);
            CHECK_EQ(atomic_exchange(&m->owned[oi], 0), 1);
            CHECK_EQ(lacuna_free(m->pool, old), 0);
            atomic_fetch_add(&m->frees, 1);
        }
    }
    return NULL;
}

static void run_model(int threads, size_t capacity, size_t slots, size_t ops, size_t cache,
                      unsigned flags)
{
    model m = {.capacity = capacity, .slots = slots, .ops = ops, .flags = flags};
    lacuna_pool_config c = {.region_size = 16 * KIB,
                            .capacity = capacity,
                            .cache = cache,
                            .decay_ms = 5,
                            .flags = flags};
    CHECK_EQ(lacuna_pool_create(&c, &m.pool), 0);
    m.slot = calloc(slots, sizeof *m.slot);
    m.owned = calloc(capacity, sizeof *m.owned);
    pthread_t t[8];
    worker w[8];
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){&m, 0x243F6A8885A308D3ull * (uint64_t)(i + 1)};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);

    lacuna_stats st;
    lacuna_pool_stats(m.pool, &st);
    CHECK_EQ(st.allocs, m.allocs);
    CHECK_EQ(st.frees, m.frees);
    size_t live = 0;
    for (size_t j = 0; j < slots; j++)
        live += m.slot[j] != NULL;
    CHECK_EQ(st.live, live);
    CHECK(st.used <= capacity);
    for (size_t j = 0; j < slots; j++)
        if (m.slot[j])
            CHECK_EQ(lacuna_free(m.pool, m.slot[j]), 0);
    CHECK_EQ(lacuna_trim(m.pool), 0);
    lacuna_pool_stats(m.pool, &st);
    CHECK_EQ(st.live, 0);
    lacuna_pool_destroy(m.pool);
    free(m.slot);
    free((void *)m.owned);
}

TEST(model_one_thread)
{
    run_model(1, 512, 400, 200000, 0, 0);
}

TEST(model_four_threads_cross_frees)
{
    run_model(4, 2048, 1500, 200000, 0, 0);
}

TEST(model_tight_capacity)
{
    /* more live slots wanted than capacity: exhaustion and recovery under contention */
    run_model(4, 300, 600, 100000, 64, 0);
}

TEST(model_no_cache_zero)
{
    run_model(3, 256, 200, 50000, LACUNA_CACHE_NONE, LACUNA_ZERO);
}

TEST(model_zero_cached)
{
    run_model(2, 1024, 800, 100000, 0, LACUNA_ZERO);
}

/* lacuna_trim on one thread reaches another thread's cache: not while that thread is idle, but
 * on its next slow path: its TICK-th warm alloc, or (via_free) a free into its full cache. Only
 * that cache goes: what the shared cache gathered since the trim stays warm. */
enum { TR_CACHED = 32, TR_EXTRA = 16 };

typedef struct trimmed_arg {
    lacuna_pool *p;
    bool via_free;
    char *r[TR_CACHED + TR_EXTRA]; /* freed into the cache; kept live until phase 2 */
    pthread_barrier_t filled, trimmed, done, checked;
} trimmed_arg;

static void *fill_cache_then_work(void *arg)
{
    trimmed_arg *a = arg;
    for (int i = 0; i < TR_CACHED + TR_EXTRA; i++) {
        a->r[i] = lacuna_alloc(a->p);
        memset(a->r[i], 1, 64 * KIB);
    }
    for (int i = 0; i < TR_CACHED; i++)
        lacuna_free(a->p, a->r[i]); /* into this thread's cache (a few spill to the shared one) */
    pthread_barrier_wait(&a->filled);
    pthread_barrier_wait(&a->trimmed);
    if (a->via_free) /* frees only: the cache fills and a free takes the slow path */
        for (int i = TR_CACHED; i < TR_CACHED + TR_EXTRA; i++)
            lacuna_free(a->p, a->r[i]);
    else
        for (int i = 0; i < TICK; i++) /* warm pairs: one of them takes the slow path */
            lacuna_free(a->p, lacuna_alloc(a->p));
    pthread_barrier_wait(&a->done);
    pthread_barrier_wait(&a->checked); /* exiting would give the cache back anyway */
    if (!a->via_free)
        for (int i = TR_CACHED; i < TR_CACHED + TR_EXTRA; i++)
            lacuna_free(a->p, a->r[i]);
    return NULL;
}

static size_t resident_of(char *const *r, int n)
{
    size_t pages = 0;
    for (int i = 0; i < n; i++)
        pages += lt_resident_pages(r[i], 64 * KIB);
    return pages;
}

static void trim_reaches(bool via_free)
{
    lacuna_pool_config c = {
        .region_size = 64 * KIB, .capacity = 256, .decay_ms = LACUNA_DECAY_NEVER};
    trimmed_arg a = {.p = lt_pool(c), .via_free = via_free};
    size_t per = 64 * KIB / (size_t)sysconf(_SC_PAGESIZE);
    pthread_barrier_init(&a.filled, NULL, 2);
    pthread_barrier_init(&a.trimmed, NULL, 2);
    pthread_barrier_init(&a.done, NULL, 2);
    pthread_barrier_init(&a.checked, NULL, 2);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, fill_cache_then_work, &a), 0);
    pthread_barrier_wait(&a.filled);
    CHECK_EQ(resident_of(a.r, TR_CACHED), TR_CACHED * per);
    CHECK_EQ(lacuna_trim(a.p), 0);
    /* What its frees spilled to the shared cache went now; what its own cache holds (most of
     * it) stays until the owner makes a call. */
    size_t cached = resident_of(a.r, TR_CACHED) / per;
    CHECK(cached >= TR_CACHED / 2);
    /* This thread frees 40 touched regions after the trim: they reach the shared cache (its own
     * holds 32) and must stay warm through the other thread's catch-up. Some may be regions the
     * trim released (reused). */
    char *mine[40];
    for (int i = 0; i < 40; i++) {
        mine[i] = lacuna_alloc(a.p);
        memset(mine[i], 2, 64 * KIB);
    }
    for (int i = 0; i < 40; i++)
        lacuna_free(a.p, mine[i]);
    lacuna_stats before;
    lacuna_pool_stats(a.p, &before);
    pthread_barrier_wait(&a.trimmed);
    pthread_barrier_wait(&a.done);
    lacuna_stats after;
    lacuna_pool_stats(a.p, &after);
    uint64_t released = after.released_regions - before.released_regions;
    CHECK(released >= cached && released <= cached + (via_free ? TR_EXTRA : 0));
    CHECK_EQ(resident_of(mine, 40), 40 * per); /* the shared cache was left alone */
    for (int i = 0; i < TR_CACHED; i++) {
        bool reused = false;
        for (int j = 0; j < 40; j++)
            reused |= mine[j] == a.r[i];
        if (!reused)
            CHECK_EQ(lt_resident_pages(a.r[i], 64 * KIB), 0);
    }
    pthread_barrier_wait(&a.checked);
    pthread_join(t, NULL);
    lacuna_pool_destroy(a.p);
}

TEST(trim_reaches_other_threads_caches)
{
    trim_reaches(false);
}

TEST(trim_reaches_other_threads_caches_on_free)
{
    trim_reaches(true);
}

static void *exit_with_cache(void *arg)
{
    lacuna_pool *p = arg;
    char *r[10];
    for (int i = 0; i < 10; i++)
        r[i] = lacuna_alloc(p);
    for (int i = 0; i < 10; i++)
        lacuna_free(p, r[i]);
    return NULL; /* its thread cache holds regions: they must come back to the pool */
}

TEST(thread_exit_returns_cache)
{
    lacuna_pool_config c = {.region_size = 16 * KIB, .capacity = 40};
    lacuna_pool *p;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    for (int round = 0; round < 20; round++) { /* 20 threads x 10 regions > capacity 40 */
        pthread_t t;
        pthread_create(&t, NULL, exit_with_cache, p);
        pthread_join(t, NULL);
    }
    char *r[40];
    for (int i = 0; i < 40; i++)
        CHECK((r[i] = lacuna_alloc(p)) != NULL);
    lacuna_pool_destroy(p);
}

static void *use_and_exit(void *arg)
{
    lacuna_pool **ps = arg;
    for (int i = 0; i < 6; i++) /* more pools than thread-cache ways: evictions */
        lacuna_free(ps[i], lacuna_alloc(ps[i]));
    return NULL;
}

TEST(pool_destroyed_before_thread_exit)
{
    lacuna_pool *ps[6];
    lacuna_pool_config c = {.region_size = 16 * KIB, .capacity = 64};
    for (int i = 0; i < 6; i++)
        CHECK_EQ(lacuna_pool_create(&c, &ps[i]), 0);
    use_and_exit(ps);
    for (int i = 0; i < 6; i++) /* this thread's caches now name dead pools */
        lacuna_pool_destroy(ps[i]);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(lacuna_pool_create(&c, &ps[i]), 0);
    pthread_t t;
    pthread_create(&t, NULL, use_and_exit, ps);
    pthread_join(t, NULL);
    use_and_exit(ps);
    for (int i = 0; i < 6; i++)
        lacuna_pool_destroy(ps[i]);
}

/* The warm paths know a thread's last pool by its address: while a thread's cache names a
 * destroyed pool, no new pool may be made at that address, or the thread's next warm call on the
 * new pool would use the dead pool's cache. (Without the pool's reference count, glibc hands the
 * freed struct's memory to the very next pool.) The address checks are what this test rests on:
 * a thread's warm path reading a freed cache may well miss by luck and fall back to the slow
 * path, so the later checks alone would not catch the reuse without ASan. */
typedef struct {
    lacuna_pool *p;
    pthread_barrier_t used, replaced;
    int freed_rc;
    bool in_new;
} named_arg;

static void *name_then_use(void *arg)
{
    named_arg *a = arg;
    lacuna_free(a->p, lacuna_alloc(a->p)); /* its cache's way 0 names the pool now */
    pthread_barrier_wait(&a->used);
    pthread_barrier_wait(&a->replaced); /* a->p is another pool now */
    char *r = lacuna_alloc(a->p);
    lacuna_stats st;
    lacuna_pool_stats(a->p, &st);
    a->in_new = r != NULL && st.live == 1;
    a->freed_rc = lacuna_free(a->p, r);
    return NULL;
}

TEST(a_destroyed_pools_address_waits_for_the_threads_naming_it)
{
    lacuna_pool_config c = {.region_size = 16 * KIB, .capacity = 64};
    named_arg a;
    CHECK_EQ(lacuna_pool_create(&c, &a.p), 0);
    pthread_barrier_init(&a.used, NULL, 2);
    pthread_barrier_init(&a.replaced, NULL, 2);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, name_then_use, &a), 0);
    pthread_barrier_wait(&a.used);
    lacuna_pool *dead = a.p;
    lacuna_pool_destroy(dead);
    for (int i = 0; i < 50; i++) { /* made and destroyed: each could take the freed address */
        lacuna_pool *q;
        CHECK_EQ(lacuna_pool_create(&c, &q), 0);
        CHECK(q != dead);
        lacuna_pool_destroy(q);
    }
    CHECK_EQ(lacuna_pool_create(&c, &a.p), 0);
    CHECK(a.p != dead);
    pthread_barrier_wait(&a.replaced);
    pthread_join(t, NULL);
    CHECK(a.in_new); /* the region came from the new pool, through a cache of its own */
    CHECK_EQ(a.freed_rc, 0);
    lacuna_pool_destroy(a.p);
    pthread_barrier_destroy(&a.used);
    pthread_barrier_destroy(&a.replaced);
}
