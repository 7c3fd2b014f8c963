/* Remote frees: a region freed by a thread other than the one that allocated it goes back to the
 * allocating thread's cache in batches (pool_cache.c), and every guarantee holds on the way: a
 * double free is refused at once wherever the region waits, the owner's trim gives such regions
 * back, a cache whose thread exited takes none (they would be lost to it), and a fork child
 * neither loses one nor hands one out twice. */
#define _GNU_SOURCE
#include "internal.h" /* LAC_REMOTE_BATCH, LAC_TC_MAX */
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB 1024u
#define N   LAC_REMOTE_BATCH /* one batch: handed to the owner by lacuna_flush or the next free */
#define M   (3 * N)          /* more than a cache holds (LAC_TC_MAX), at most LAC_REMOTE_MAX */
_Static_assert(M > LAC_TC_MAX && M <= LAC_REMOTE_MAX, "M batches: some beyond the cache");

static bool in(char *const *set, int n, const char *r)
{
    for (int i = 0; i < n; i++)
        if (set[i] == r)
            return true;
    return false;
}

/* The other thread: one step per barrier round, told what to do by the main thread. */
typedef struct peer {
    lacuna_pool *p;
    pthread_barrier_t go, done;
    void (*step)(struct peer *);
    char *r[2 * LAC_TC_MAX];
    int n, rc[2 * LAC_TC_MAX];
    bool quit;
} peer;

static void *peer_main(void *arg)
{
    peer *e = arg;
    for (;;) {
        pthread_barrier_wait(&e->go);
        if (e->quit)
            return NULL;
        e->step(e);
        pthread_barrier_wait(&e->done);
    }
}

static void peer_run(peer *e, void (*step)(peer *))
{
    e->step = step;
    pthread_barrier_wait(&e->go);
    pthread_barrier_wait(&e->done);
}

static void peer_start(peer *e, pthread_t *t, lacuna_pool *p)
{
    memset(e, 0, sizeof *e);
    e->p = p;
    pthread_barrier_init(&e->go, NULL, 2);
    pthread_barrier_init(&e->done, NULL, 2);
    CHECK_EQ(pthread_create(t, NULL, peer_main, e), 0);
}

static void peer_stop(peer *e, pthread_t t)
{
    e->quit = true;
    pthread_barrier_wait(&e->go);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&e->go);
    pthread_barrier_destroy(&e->done);
}

static void free_them(peer *e) /* frees e->r[0 .. n) */
{
    for (int i = 0; i < e->n; i++)
        e->rc[i] = lacuna_free(e->p, e->r[i]);
}

static void free_and_flush(peer *e) /* and hands the last batch back (lacuna_flush) */
{
    free_them(e);
    CHECK_EQ(lacuna_flush(e->p), 0);
}

static void alloc_them(peer *e) /* allocates e->r[0 .. n) */
{
    for (int i = 0; i < e->n; i++)
        CHECK((e->r[i] = lacuna_alloc(e->p)) != NULL);
}

static lacuna_pool *pool(size_t capacity)
{
    lacuna_pool_config c = {
        .region_size = 16 * KIB, .capacity = capacity, .decay_ms = LACUNA_DECAY_NEVER};
    return lt_pool(c);
}

/* This thread allocates three batches, the peer frees them: the regions come back to this
 * thread's cache (its next allocations are those regions, more than its cache holds at once),
 * not to the peer's (which used to hand them out next: the owner then wrote pages last written
 * on the other CPU, and both threads went through the pool lock as one cache overflowed and the
 * other ran dry). */
TEST(frees_from_another_thread_go_back_to_the_allocating_thread)
{
    lacuna_pool *p = pool(256);
    peer e;
    pthread_t t;
    peer_start(&e, &t, p);
    char *mine[M];
    for (int i = 0; i < M; i++) /* refills of half a cache: the cache is empty after */
        CHECK((mine[i] = lacuna_alloc(p)) != NULL);
    memcpy(e.r, mine, sizeof mine);
    e.n = M;
    peer_run(&e, free_and_flush);
    for (int i = 0; i < M; i++)
        CHECK_EQ(e.rc[i], 0);
    peer_run(&e, alloc_them); /* the peer's own allocations: none of this thread's regions */
    for (int i = 0; i < M; i++)
        CHECK(!in(mine, M, e.r[i]));
    for (int i = 0; i < M; i++) { /* this thread's: exactly those */
        char *r = lacuna_alloc(p);
        CHECK(in(mine, M, r));
        for (int j = 0; j < M; j++) /* each once */
            mine[j] = mine[j] == r ? NULL : mine[j];
    }
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.allocs, 3 * M);
    CHECK_EQ(st.frees, M);
    CHECK_EQ(st.live, 2 * M);
    peer_stop(&e, t);
    lacuna_pool_destroy(p);
}

/* A double free is refused whether the region waits in the freer's batch or on the owner's
 * remote list, and whoever makes it. */
TEST(double_free_refused_on_the_way_back)
{
    lacuna_pool *p = pool(256);
    peer e;
    pthread_t t;
    peer_start(&e, &t, p);
    char *mine[N];
    for (int i = 0; i < N; i++)
        CHECK((mine[i] = lacuna_alloc(p)) != NULL);
    e.n = 1; /* in the peer's batch */
    e.r[0] = mine[0];
    peer_run(&e, free_them);
    CHECK_EQ(e.rc[0], 0);
    peer_run(&e, free_them);
    CHECK_EQ(e.rc[0], EINVAL);
    CHECK_EQ(lacuna_free(p, mine[0]), EINVAL);
    memcpy(e.r, mine + 1, (N - 1) * sizeof mine[0]); /* completes the batch: on the owner's list */
    e.n = N - 1;
    peer_run(&e, free_and_flush);
    for (int i = 0; i < N - 1; i++)
        CHECK_EQ(e.rc[i], 0);
    peer_run(&e, free_them);
    for (int i = 0; i < N - 1; i++)
        CHECK_EQ(e.rc[i], EINVAL);
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, mine[i]), EINVAL);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.frees, N);
    CHECK_EQ(st.live, 0);
    peer_stop(&e, t);
    lacuna_pool_destroy(p);
}

/* The owner's trim releases what other threads gave back to it, in its cache or taken aside. */
TEST(owners_trim_releases_regions_given_back)
{
    lacuna_pool *p = pool(256);
    peer e;
    pthread_t t;
    peer_start(&e, &t, p);
    char *mine[M];
    for (int i = 0; i < M; i++) {
        CHECK((mine[i] = lacuna_alloc(p)) != NULL);
        memset(mine[i], 1, 16 * KIB);
    }
    memcpy(e.r, mine, sizeof mine);
    e.n = M;
    peer_run(&e, free_and_flush);
    /* One alloc takes the list: a cacheful, and the rest taken aside. */
    CHECK_EQ(lacuna_free(p, lacuna_alloc(p)), 0);
    CHECK_EQ(lacuna_trim(p), 0);
    for (int i = 0; i < M; i++)
        CHECK_EQ(lt_resident_pages(mine[i], 16 * KIB), 0);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.warm, 0);
    peer_stop(&e, t);
    lacuna_pool_destroy(p);
}

/* Regions whose allocating thread has exited stay usable: its cache takes no more of them (no
 * thread would ever take them back), so the freer keeps them. */
static void *alloc_and_exit(void *arg)
{
    peer *e = arg;
    alloc_them(e);
    return NULL;
}

TEST(regions_of_an_exited_thread_are_not_lost)
{
    enum { CAP = 3 * LAC_TC_MAX };
    lacuna_pool *p = pool(CAP);
    peer e = {.p = p, .n = LAC_TC_MAX};
    lacuna_free(p, lacuna_alloc(p)); /* this thread's cache, before the other's is given up */
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, alloc_and_exit, &e), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < e.n; i++)
        CHECK_EQ(lacuna_free(p, e.r[i]), 0);
    char *all[CAP];
    for (int i = 0; i < CAP; i++) /* every slot, those included */
        CHECK((all[i] = lacuna_alloc(p)) != NULL);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, CAP);
    lacuna_pool_destroy(p);
}

/* fork with regions on the forking thread's remote list, taken aside by it, and in another
 * thread's batch: the child gets every free slot exactly once (the copied list and chain stay
 * this thread's; the batch, whose thread was not copied, comes back through the child's
 * rebuild). */
typedef struct fork_arg {
    lacuna_pool *p;
    size_t capacity, live;
} fork_arg;

static void child_takes_all(void *arg)
{
    fork_arg *a = arg;
    size_t n = a->capacity - a->live;
    char **got = calloc(n, sizeof *got);
    CHECK(got != NULL);
    for (size_t i = 0; i < n; i++) {
        CHECK((got[i] = lacuna_alloc(a->p)) != NULL);
        for (size_t j = 0; j < i; j++)
            CHECK(got[j] != got[i]);
    }
    CHECK(lacuna_alloc(a->p) == NULL);
    lacuna_stats st = lt_stats(a->p);
    CHECK_EQ(st.live, a->capacity);
    free(got);
}

TEST(fork_keeps_regions_on_their_way_back)
{
    enum { CAP = 4 * LAC_TC_MAX };
    lacuna_pool *p = pool(CAP);
    peer e;
    pthread_t t;
    peer_start(&e, &t, p);
    enum { MINE = 2 * LAC_TC_MAX, FREED = M + 5 };
    char *mine[MINE];
    for (int i = 0; i < MINE; i++) /* refills of half a cache: the cache is empty after */
        CHECK((mine[i] = lacuna_alloc(p)) != NULL);
    memcpy(e.r, mine, FREED * sizeof mine[0]); /* M to this thread's list, 5 in the peer's */
    e.n = FREED;
    peer_run(&e, free_them);
    fork_arg a = {.p = p, .capacity = CAP, .live = MINE - FREED};
    char err[512];
    int status = lt_fork_run(child_takes_all, &a, err, sizeof err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "child: %s", err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(lacuna_alloc(p) != NULL); /* takes the list: a cacheful, the rest aside */
    a.live++;
    status = lt_fork_run(child_takes_all, &a, err, sizeof err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "child: %s", err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    peer_stop(&e, t);
    lacuna_pool_destroy(p);
}

/* Regions handed back to a thread that then idles are not held for good: a trim from any thread
 * releases them (without waiting for the idle thread's next call), and so does decay (here the
 * background thread's). */
static void alloc_and_touch(peer *e)
{
    alloc_them(e);
    for (int i = 0; i < e->n; i++)
        memset(e->r[i], 1, 16 * KIB);
}

static size_t resident_of(char *const *r, int n)
{
    size_t pages = 0;
    for (int i = 0; i < n; i++)
        pages += lt_resident_pages(r[i], 16 * KIB);
    return pages;
}

static void handed_back_to_idle_peer_released(lacuna_pool *p, bool by_trim)
{
    peer e;
    pthread_t t;
    peer_start(&e, &t, p);
    e.n = 2 * N;
    peer_run(&e, alloc_and_touch); /* the peer's regions, its cache empty after */
    char *r[2 * N];
    memcpy(r, e.r, sizeof r);
    for (int i = 0; i < 2 * N; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    CHECK_EQ(lacuna_flush(p), 0); /* all on the peer's remote list; the peer idles */
    CHECK_EQ(resident_of(r, 2 * N), 2 * N * 4);
    if (by_trim) {
        CHECK_EQ(lacuna_trim(p), 0);
    } else {
        for (int i = 0; i < 400 && resident_of(r, 2 * N) > 0; i++)
            usleep(5000); /* decay 20 ms: the background thread's sweeps */
    }
    CHECK_EQ(resident_of(r, 2 * N), 0);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, 0);
    peer_stop(&e, t);
    lacuna_pool_destroy(p);
}

TEST(trim_releases_regions_handed_back_to_an_idle_thread)
{
    handed_back_to_idle_peer_released(pool(256), true);
}

TEST(decay_releases_regions_handed_back_to_an_idle_thread)
{
    lacuna_pool_config c = {
        .region_size = 16 * KIB, .capacity = 256, .decay_ms = 20, .flags = LACUNA_BACKGROUND};
    handed_back_to_idle_peer_released(lt_pool(c), false);
}
