/* The model test at scale: 2 threads run random operations on one pool — alloc, free (half the
 * time a region the OTHER thread allocated), trim, stats — checked against a model, and every
 * disagreement is counted as a divergence:
 *   - a region handed out while the model has it live (handed out twice);
 *   - a region that is not a region start of the pool, or outside it;
 *   - a live region whose stamp changed (someone else wrote into it: shared, or not ours);
 *   - under LACUNA_ZERO, a region handed out with a non-zero byte where a stamp was;
 *   - lacuna_free refusing a live region, or accepting a pointer inside one or in its guard
 *     (double frees are the single-threaded model's and the fuzzer's: with two threads the
 *     region may be live again, rightly, by the time of the second free);
 *   - stats disagreeing with the model when the threads are done.
 * Ops: LACUNA_SOAK_OPS in total (default 200,000: the ctest run); `make soak` runs 10,000,000.
 * Each TEST runs its share of the ops on its own pool configuration; the third injects release
 * and guard failures (fault-injection builds) while both threads run. Seeded; not a benchmark. */
#define _GNU_SOURCE
#include "internal.h" /* lac_fault_inject, a no-op without the fault injector */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define KIB 1024u

typedef struct soak {
    lacuna_pool *pool;
    size_t capacity, slots, region;
    uint64_t ops; /* per thread */
    unsigned flags;
    bool faults;             /* inject release and guard failures as it goes */
    _Atomic(char *) *slot;   /* the shared live set: a region or NULL */
    _Atomic uint8_t *owned;  /* per region index: 1 while handed out */
    _Atomic uint64_t *stamp; /* per region index: what its owner wrote into it */
    _Atomic uint64_t allocs, frees, enomem, divergences;
} soak;

typedef struct worker {
    soak *s;
    uint64_t seed, id;
} worker;

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

static void diverge(soak *s, const char *what, const void *region)
{
    if (atomic_fetch_add(&s->divergences, 1) < 10)
        fprintf(stderr, "divergence: %s (%p)\n", what, region);
}

/* Where a stamp goes: the bottom word, one in the middle page, the top word. */
static uint64_t *word(char *r, size_t region, int k)
{
    size_t off = k == 0 ? 0 : k == 1 ? region / 2 + 8 : region - 8;
    return (uint64_t *)(r + off);
}

static void give_back(soak *s, char *r)
{
    long idx = lacuna_region_index(s->pool, r);
    if (idx < 0) {
        diverge(s, "a held region is no region", r);
        return;
    }
    uint64_t want = atomic_load(&s->stamp[idx]);
    for (int k = 0; k < 3; k++)
        if (*word(r, s->region, k) != want)
            diverge(s, "stamp changed while live", r);
    if (atomic_exchange(&s->owned[idx], 0) != 1)
        diverge(s, "freeing a region not live", r);
    if (lacuna_free(s->pool, r) != 0)
        diverge(s, "lacuna_free refused a live region", r);
    atomic_fetch_add(&s->frees, 1);
}

static void *work(void *arg)
{
    worker *w = arg;
    soak *s = w->s;
    uint64_t x = w->seed;
    for (uint64_t i = 0; i < s->ops; i++) {
        uint64_t r = rnd(&x);
        size_t j = (size_t)(r >> 16) % s->slots;
        unsigned what = (unsigned)(r & 0xffff);
        if (what < 16) { /* ~1 in 4096 */
            int rc = lacuna_trim(s->pool);
            if (rc != 0 && !s->faults)
                diverge(s, "trim failed", NULL);
            continue;
        }
        if (what < 80 && s->faults) { /* the next release or guard call of either thread fails */
            static const int errs[] = {ENOMEM, EAGAIN, EINVAL, EPERM, LAC_FAULT_PARTIAL};
            lac_fault_inject(r >> 40 & 1 ? LAC_OP_GUARD : LAC_OP_RELEASE, 1 + (r >> 41 & 3),
                             errs[(r >> 44) % 5]);
            continue;
        }
        if (what < 32) {
            lacuna_stats st;
            lacuna_pool_stats(s->pool, &st);
            if (st.live > s->capacity || st.used > s->capacity)
                diverge(s, "stats out of range", NULL);
            continue;
        }
        if (what < 100) { /* bad frees of a live region's neighbourhood: refused, harmless */
            char *old = atomic_exchange(&s->slot[j], NULL);
            if (old) {
                if (lacuna_free(s->pool, old + 64) != EINVAL)
                    diverge(s, "inner free accepted", old);
                if (lacuna_free(s->pool, old - 1) != EINVAL)
                    diverge(s, "guard free accepted", old);
                give_back(s, old);
            }
            continue;
        }
        if ((r & 0x30000000) == 0) { /* free slot j, whoever allocated it */
            char *old = atomic_exchange(&s->slot[j], NULL);
            if (old)
                give_back(s, old);
            continue;
        }
        char *reg = lacuna_alloc(s->pool);
        if (reg == NULL) {
            if (errno != ENOMEM)
                diverge(s, "alloc failed, not ENOMEM", NULL);
            atomic_fetch_add(&s->enomem, 1);
            continue;
        }
        atomic_fetch_add(&s->allocs, 1);
        long idx = lacuna_region_index(s->pool, reg);
        if (idx < 0 || (size_t)idx >= s->capacity || lacuna_region_index(s->pool, reg - 1) != -1) {
            diverge(s, "not a region start", reg);
            continue;
        }
        if (atomic_exchange(&s->owned[idx], 1) != 0)
            diverge(s, "handed out twice", reg);
        if (s->flags & LACUNA_ZERO)
            for (int k = 0; k < 3; k++)
                if (*word(reg, s->region, k) != 0)
                    diverge(s, "old data under LACUNA_ZERO", reg);
        uint64_t stamp = (i << 8) | w->id | 1;
        atomic_store(&s->stamp[idx], stamp);
        for (int k = 0; k < 3; k++)
            *word(reg, s->region, k) = stamp;
        char *old = atomic_exchange(&s->slot[j], reg);
        if (old)
            give_back(s, old); /* often a region the other thread allocated */
    }
    return NULL;
}

static uint64_t total_ops(void)
{
    const char *e = getenv("LACUNA_SOAK_OPS");
    uint64_t n = e ? strtoull(e, NULL, 10) : 200000;
    return n ? n : 200000;
}

static void run(lacuna_pool_config c, size_t slots, uint64_t seed, bool faults)
{
    enum { THREADS = 2 };
    soak s = {.capacity = c.capacity,
              .slots = slots,
              .region = c.region_size,
              .flags = c.flags,
              .faults = faults};
    s.ops = total_ops() / 3 / THREADS; /* each TEST runs a third of the total */
    CHECK_EQ(lacuna_pool_create(&c, &s.pool), 0);
    s.slot = calloc(slots, sizeof *s.slot);
    s.owned = calloc(c.capacity, sizeof *s.owned);
    s.stamp = calloc(c.capacity, sizeof *s.stamp);
    CHECK(s.slot && s.owned && s.stamp);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){&s, seed * 0x9E3779B97F4A7C15ull + (uint64_t)i + 1, (uint64_t)i << 1};
        CHECK_EQ(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int op = 0; op < LAC_OP_COUNT; op++)
        lac_fault_inject((lac_op)op, 0, 0);

    lacuna_stats st;
    lacuna_pool_stats(s.pool, &st);
    size_t live = 0;
    for (size_t j = 0; j < slots; j++)
        live += s.slot[j] != NULL;
    if (st.allocs != s.allocs || st.frees != s.frees || st.live != live)
        diverge(&s, "stats disagree with the model", NULL);
    for (size_t j = 0; j < slots; j++)
        if (s.slot[j])
            give_back(&s, s.slot[j]);
    if (lacuna_trim(s.pool) != 0)
        diverge(&s, "final trim failed", NULL);
    lacuna_pool_stats(s.pool, &st);
    if (st.live != 0 || st.warm != 0)
        diverge(&s, "not empty at the end", NULL);
    fprintf(stderr,
            "%llu ops on 2 threads: %llu allocs, %llu frees, %llu ENOMEM, %llu released, "
            "%llu failed releases, %llu divergences\n",
            (unsigned long long)(s.ops * THREADS), (unsigned long long)s.allocs,
            (unsigned long long)s.frees, (unsigned long long)s.enomem,
            (unsigned long long)st.released_regions, (unsigned long long)st.release_errors,
            (unsigned long long)s.divergences);
    CHECK_EQ(s.divergences, 0);
    lacuna_pool_destroy(s.pool);
    free(s.slot);
    free((void *)s.owned);
    free((void *)s.stamp);
}

/* Thread caches, default cache, short decay with a background thread: the warm paths and the
 * spills/refills between threads, releases racing allocations. More slots than capacity:
 * exhaustion and recovery too. */
TEST(soak_thread_caches_background)
{
    run(
        (lacuna_pool_config){
            .region_size = 16 * KIB, .capacity = 2048, .decay_ms = 2, .flags = LACUNA_BACKGROUND},
        2900, 1, false);
}

/* LACUNA_ZERO with a small shared cache (no thread caches): a release on most frees, every
 * region zeroed or refaulted before reuse. */
TEST(soak_zero_small_cache)
{
    run(
        (lacuna_pool_config){
            .region_size = 16 * KIB, .capacity = 1024, .cache = 16, .flags = LACUNA_ZERO},
        1400, 2, false);
}

/* Release and guard failures injected while both threads run (a no-op without the injector):
 * failed releases go back to the warm list as the other thread pops it, guard failures make
 * allocs fail with ENOMEM; LACUNA_ZERO regions still read zero, nothing is handed out twice. */
TEST(soak_zero_with_faults)
{
    run((lacuna_pool_config){.region_size = 16 * KIB,
                             .capacity = 1024,
                             .cache = 64,
                             .decay_ms = 1,
                             .flags = LACUNA_ZERO},
        1400, 3, true);
}
