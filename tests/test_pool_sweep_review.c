/* Review of lac_remote_sweep (pool_cache.c): any thread, under the pool lock, may now take a
 * cache's remote list, where before only its owner did. These tests race the sweep (decay and
 * lacuna_trim from other threads, and the sweep before ENOMEM) against pushers and owners' takes,
 * and check that no region is handed out twice, none is lost, and the counts stay exact. */
#define _GNU_SOURCE
#include "internal.h" /* LAC_REMOTE_BATCH, LAC_TC_MAX */
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define KIB     1024u
#define THREADS 4
#define CAP     256
#define RING    64 /* per-thread handoff ring */
#define MAGIC   0x5eedfacecafef00dull

/* Thread i allocates and hands its regions to thread i + 1, which frees them: every free is a
 * remote free, so regions flow through every cache's remote list, while a trimmer and the
 * background thread (decay 1 ms) sweep those lists. The first word of a live region holds MAGIC:
 * an alloc that finds it there got a region that is live elsewhere. */
typedef struct {
    lacuna_pool *p;
    _Atomic(char *) ring[THREADS][RING];
    atomic_bool stop;
    atomic_ulong twice, allocs, frees, enomem;
} world;

typedef struct {
    world *w;
    int i;
} arg;

static void *worker(void *a_)
{
    arg *a = a_;
    world *w = a->w;
    unsigned rounds = 0;
    while (!atomic_load(&w->stop) || rounds < 50) {
        rounds++;
        /* allocate a few, pass them on */
        for (int k = 0; k < 8; k++) {
            char *r = lacuna_alloc(w->p);
            if (r == NULL) {
                atomic_fetch_add(&w->enomem, 1);
                break;
            }
            atomic_fetch_add(&w->allocs, 1);
            if (atomic_exchange((_Atomic unsigned long long *)(void *)r, MAGIC) == MAGIC)
                atomic_fetch_add(&w->twice, 1);
            int to = (a->i + 1) % THREADS;
            bool put = false;
            for (int j = 0; j < RING && !put; j++) {
                char *nil = NULL;
                put = atomic_compare_exchange_strong(&w->ring[to][j], &nil, r);
            }
            if (!put) { /* ring full: free it here (a local free) */
                atomic_store((_Atomic unsigned long long *)(void *)r, 0);
                CHECK_EQ(lacuna_free(w->p, r), 0);
                atomic_fetch_add(&w->frees, 1);
            }
        }
        /* free what was passed to me: remote frees */
        for (int j = 0; j < RING; j++) {
            char *r = atomic_exchange(&w->ring[a->i][j], NULL);
            if (r) {
                atomic_store((_Atomic unsigned long long *)(void *)r, 0);
                CHECK_EQ(lacuna_free(w->p, r), 0);
                atomic_fetch_add(&w->frees, 1);
            }
        }
        if ((rounds & 7) == 0)
            CHECK_EQ(lacuna_flush(w->p), 0);
        if ((rounds & 63) == 0)
            usleep(200); /* idle a little: let decay sweep this thread's list */
    }
    /* drain my ring and leave */
    for (int j = 0; j < RING; j++) {
        char *r = atomic_exchange(&w->ring[a->i][j], NULL);
        if (r) {
            atomic_store((_Atomic unsigned long long *)(void *)r, 0);
            CHECK_EQ(lacuna_free(w->p, r), 0);
            atomic_fetch_add(&w->frees, 1);
        }
    }
    return NULL;
}

static void *trimmer(void *a_)
{
    world *w = a_;
    while (!atomic_load(&w->stop)) {
        (void)lacuna_trim(w->p);
        lacuna_stats st = lt_stats(w->p);
        CHECK(st.live <= CAP);
        CHECK(st.warm + st.live <= st.capacity);
        usleep(300);
    }
    return NULL;
}

static void race(int ms, bool with_trimmer)
{
    lacuna_pool_config c = {
        .region_size = 16 * KIB, .capacity = CAP, .decay_ms = 1, .flags = LACUNA_BACKGROUND};
    static world w;
    memset(&w, 0, sizeof w);
    w.p = lt_pool(c);
    pthread_t t[THREADS], tt;
    arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (arg){&w, i};
        CHECK_EQ(pthread_create(&t[i], NULL, worker, &a[i]), 0);
    }
    if (with_trimmer)
        CHECK_EQ(pthread_create(&tt, NULL, trimmer, &w), 0);
    usleep((useconds_t)ms * 1000);
    atomic_store(&w.stop, true);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    if (with_trimmer)
        pthread_join(tt, NULL);
    for (int i = 0; i < THREADS; i++) /* what was passed to a thread that had left */
        for (int j = 0; j < RING; j++) {
            char *r = atomic_exchange(&w.ring[i][j], NULL);
            if (r) {
                atomic_store((_Atomic unsigned long long *)(void *)r, 0);
                CHECK_EQ(lacuna_free(w.p, r), 0);
                atomic_fetch_add(&w.frees, 1);
            }
        }
    CHECK_EQ(atomic_load(&w.twice), 0);
    CHECK_EQ(atomic_load(&w.allocs), atomic_load(&w.frees));
    lacuna_stats st = lt_stats(w.p);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.allocs, atomic_load(&w.allocs));
    CHECK_EQ(st.frees, atomic_load(&w.frees));
    /* every slot can be had again: none was lost on a list no one can reach (the threads exited:
     * their caches, batches and lists went back) */
    char *r[CAP];
    size_t n = 0;
    for (; n < CAP; n++)
        if ((r[n] = lacuna_alloc(w.p)) == NULL)
            break;
    CHECK_EQ(n, CAP);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(lacuna_free(w.p, r[i]), 0);
    lacuna_pool_destroy(w.p);
}

TEST(sweeps_race_pushers_and_owners_takes)
{
    race(1500, false);
}

TEST(sweeps_and_trims_race_pushers_and_owners_takes)
{
    race(1500, true);
}

/* The sweep before ENOMEM: regions another thread freed back to an idle owner are found. */
static lacuna_pool *gp;
static char *gr[64];
static void *alloc_all(void *x)
{
    (void)x;
    for (int i = 0; i < 64; i++)
        CHECK((gr[i] = lacuna_alloc(gp)) != NULL);
    return NULL;
}

static void *idle_owner(void *x)
{
    pthread_barrier_t *b = x;
    alloc_all(NULL);
    pthread_barrier_wait(&b[0]); /* allocated */
    pthread_barrier_wait(&b[1]); /* the main thread is done: exit */
    return NULL;
}

TEST(alloc_takes_regions_handed_back_to_an_idle_thread_before_enomem)
{
    lacuna_pool_config c = {
        .region_size = 16 * KIB, .capacity = 64, .decay_ms = LACUNA_DECAY_NEVER};
    gp = lt_pool(c);
    pthread_barrier_t b[2];
    pthread_barrier_init(&b[0], NULL, 2);
    pthread_barrier_init(&b[1], NULL, 2);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, idle_owner, b), 0);
    pthread_barrier_wait(&b[0]);
    for (int i = 0; i < 64; i++)
        CHECK_EQ(lacuna_free(gp, gr[i]), 0); /* 48 pushed to the owner, 16 in this batch */
    char *mine[64];
    for (int i = 0; i < 64; i++)
        CHECK((mine[i] = lacuna_alloc(gp)) != NULL);
    CHECK(lacuna_alloc(gp) == NULL);
    for (int i = 0; i < 64; i++)
        CHECK_EQ(lacuna_free(gp, mine[i]), 0);
    pthread_barrier_wait(&b[1]);
    pthread_join(t, NULL);
    lacuna_stats st = lt_stats(gp);
    CHECK_EQ(st.live, 0);
    pthread_barrier_destroy(&b[0]);
    pthread_barrier_destroy(&b[1]);
    lacuna_pool_destroy(gp);
}
