/* Review tests for 774073c (lazy batch push, lacuna_flush pushes the batch) and 3aae657 (a slot
 * names its owner when it enters a cache's lines, not on each warm alloc).
 *
 *  - every_cached_slot_names_its_cache: walks every path a slot enters or leaves a cache by
 *    (refill, tcache_pop, warm alloc/free, free_slow, remote frees and takes, remote_keep on a
 *    closed cache, the "free one and retry" fallback, way eviction, LACUNA_ZERO, deferral, trim,
 *    thread exit, a fork child) and checks at each quiet point that every slot in an owned
 *    cache's lines[] names that cache, and that a live region names the cache that handed it out.
 *  - counts_stay_exact_with_a_full_unsent_batch: stats after a full batch (LAC_REMOTE_BATCH)
 *    waits in a thread that exits, in a fork child, and through a trim.
 *  - flush_after_a_trim_releases_the_batch: lacuna_flush is a push too: it must see a trim
 *    first, as free_remote's push does, or the batch lands on a cache that already trimmed.
 *    Fails on main at 9b04982 (64 pages of the batch's 16 regions stay resident).
 * The first two hold on main.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "lacuna.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define KIB 1024u

static lacuna_pool *pool(size_t capacity, unsigned flags)
{
    lacuna_pool_config c = {.region_size = 16 * KIB,
                            .capacity = capacity,
                            .decay_ms = LACUNA_DECAY_NEVER,
                            .flags = flags};
    return lt_pool(c);
}

/* pool_cache.c's line_owner: the word at +16 of a slot's state line. */
static lac_tcache *owner_of_line(_Atomic uint32_t *line)
{
    return atomic_load_explicit((_Atomic(lac_tcache *) *)(void *)((char *)line + 16),
                                memory_order_relaxed);
}

static lac_tcache *owner_of(lacuna_pool *p, const void *region)
{
    uint32_t s;
    CHECK(lac_slot_of(p, region, &s));
    return owner_of_line(lac_state_at(p, s));
}

/* Every owned cache: each slot in its lines[] names it, and is WARM or CLEAN. Only while no
 * other thread of the pool runs (the lines are owner-only). Returns the slots seen. */
static size_t check_owners(lacuna_pool *p, const char *where)
{
    size_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (lac_tcache *tc = p->tcaches; tc; tc = tc->next) {
        if (!tc->owned)
            continue;
        uint32_t n = lac_tc_n(tc);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t st = atomic_load_explicit(tc->lines[i], memory_order_relaxed);
            lac_tcache *o = owner_of_line(tc->lines[i]);
            if (o != tc || (st != LAC_S_WARM && st != LAC_S_CLEAN))
                fprintf(stderr, "  %s: cache %p line %u: owner %p state %u\n", where, (void *)tc, i,
                        (void *)o, st);
            CHECK(o == tc);
            CHECK(st == LAC_S_WARM || st == LAC_S_CLEAN);
            seen++;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return seen;
}

/* A peer thread that runs one job at a time (its caches stay between jobs). */
typedef struct peer {
    lacuna_pool *p;
    char **r;
    int n;
    lac_tcache *tc; /* its cache of p after the job */
    void (*job)(struct peer *);
    pthread_mutex_t m;
    pthread_cond_t c;
    bool go, done, quit;
} peer;

static void *peer_main(void *arg)
{
    peer *e = arg;
    pthread_mutex_lock(&e->m);
    for (;;) {
        while (!e->go && !e->quit)
            pthread_cond_wait(&e->c, &e->m);
        if (e->quit)
            break;
        e->go = false;
        pthread_mutex_unlock(&e->m);
        e->job(e);
        e->tc = lac_tcache_peek(e->p);
        pthread_mutex_lock(&e->m);
        e->done = true;
        pthread_cond_broadcast(&e->c);
    }
    pthread_mutex_unlock(&e->m);
    return NULL;
}

static void peer_start(peer *e, pthread_t *t, lacuna_pool *p)
{
    memset(e, 0, sizeof *e);
    e->p = p;
    pthread_mutex_init(&e->m, NULL);
    pthread_cond_init(&e->c, NULL);
    CHECK_EQ(pthread_create(t, NULL, peer_main, e), 0);
}

static void peer_run(peer *e, void (*job)(peer *), char **r, int n)
{
    pthread_mutex_lock(&e->m);
    e->job = job;
    e->r = r;
    e->n = n;
    e->done = false;
    e->go = true;
    pthread_cond_broadcast(&e->c);
    while (!e->done)
        pthread_cond_wait(&e->c, &e->m);
    pthread_mutex_unlock(&e->m);
}

static void peer_stop(peer *e, pthread_t t)
{
    pthread_mutex_lock(&e->m);
    e->quit = true;
    pthread_cond_broadcast(&e->c);
    pthread_mutex_unlock(&e->m);
    pthread_join(t, NULL);
    pthread_mutex_destroy(&e->m);
    pthread_cond_destroy(&e->c);
}

static void job_alloc(peer *e)
{
    for (int i = 0; i < e->n; i++)
        CHECK((e->r[i] = lacuna_alloc(e->p)) != NULL);
}

static void job_free(peer *e)
{
    for (int i = 0; i < e->n; i++)
        CHECK_EQ(lacuna_free(e->p, e->r[i]), 0);
}

static void job_free_flush(peer *e)
{
    job_free(e);
    CHECK_EQ(lacuna_flush(e->p), 0);
}

static void job_cycle(peer *e) /* warm allocs and frees of its own, and a trim seen */
{
    char *x[8];
    for (int k = 0; k < 300; k++) { /* past a tick: alloc_miss and trim_if_asked */
        for (int i = 0; i < 8; i++)
            CHECK((x[i] = lacuna_alloc(e->p)) != NULL);
        for (int i = 0; i < 8; i++)
            CHECK_EQ(lacuna_free(e->p, x[i]), 0);
    }
}

/* Live regions this thread allocated name this thread's cache. */
static void check_mine(lacuna_pool *p, char **r, int n)
{
    lac_tcache *tc = lac_tcache_peek(p);
    for (int i = 0; i < n; i++)
        CHECK(owner_of(p, r[i]) == tc);
}

typedef struct child_arg {
    lacuna_pool *p;
    size_t capacity;
} child_arg;

static void child_walk(void *arg)
{
    child_arg *a = arg;
    check_owners(a->p, "child after the rebuild");
    char **got = calloc(a->capacity, sizeof *got);
    size_t n = 0;
    while (n < a->capacity && (got[n] = lacuna_alloc(a->p)) != NULL)
        n++;
    check_owners(a->p, "child, full");
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(lacuna_free(a->p, got[i]), 0);
    CHECK_EQ(lacuna_flush(a->p), 0);
    check_owners(a->p, "child, all freed");
    for (size_t i = 0; i < n; i++)
        CHECK((got[i] = lacuna_alloc(a->p)) != NULL);
    check_mine(a->p, got, (int)n);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(lacuna_free(a->p, got[i]), 0);
    check_owners(a->p, "child, end");
    free(got);
}

static void owner_walk(unsigned flags)
{
    enum { CAP = 8 * LAC_TC_MAX, N = 3 * LAC_REMOTE_BATCH + 5 };
    lacuna_pool *p = pool(CAP, flags);
    char *mine[CAP], *theirs[CAP];
    peer e;
    pthread_t t;
    peer_start(&e, &t, p);

    /* refills (alloc_slow, tcache_pop) and warm allocs */
    for (int i = 0; i < N; i++)
        CHECK((mine[i] = lacuna_alloc(p)) != NULL);
    check_mine(p, mine, N);
    check_owners(p, "refills");
    /* remote frees: pushed batches, and a full one kept by the peer */
    peer_run(&e, job_free, mine, N);
    check_owners(p, "remote frees");
    /* remote_take and the taken chain, then this thread's warm and slow frees */
    for (int i = 0; i < N; i++)
        CHECK((mine[i] = lacuna_alloc(p)) != NULL);
    check_mine(p, mine, N);
    check_owners(p, "remote takes");
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, mine[i]), 0);
    check_owners(p, "own frees (free_slow)");
    peer_run(&e, job_free_flush, NULL, 0); /* the peer's kept batch comes back */
    check_owners(p, "peer flushed");

    /* the peer allocates; this thread frees them (batches to the peer), the peer takes them */
    peer_run(&e, job_alloc, theirs, N);
    lac_tcache *ptc = e.tc;
    for (int i = 0; i < N; i++)
        CHECK(owner_of(p, theirs[i]) == ptc);
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, theirs[i]), 0);
    check_owners(p, "freed the peer's");
    peer_run(&e, job_alloc, theirs, N);
    for (int i = 0; i < N; i++)
        CHECK(owner_of(p, theirs[i]) == e.tc);
    check_owners(p, "peer took them back");

    /* deferral */
    for (int i = 0; i < 4; i++) {
        CHECK((mine[i] = lacuna_alloc(p)) != NULL);
        CHECK_EQ(lacuna_free_deferred(p, mine[i]), 0);
    }
    CHECK_EQ(lacuna_flush(p), 0);
    check_owners(p, "deferred");

    /* way eviction: five more pools, then back; this thread's live regions named the evicted
     * cache, which may be another's now */
    char *keep[8];
    for (int i = 0; i < 8; i++)
        CHECK((keep[i] = lacuna_alloc(p)) != NULL);
    lacuna_pool *q[LAC_TLS_WAYS + 1];
    for (int i = 0; i <= LAC_TLS_WAYS; i++) {
        q[i] = pool(LAC_TC_MAX * 4, flags);
        CHECK_EQ(lacuna_free(q[i], lacuna_alloc(q[i])), 0);
    }
    check_owners(p, "evicted");
    lac_tcache *evicted = owner_of(p, keep[0]);
    peer_run(&e, job_cycle, NULL, 0);
    /* a new thread takes the evicted cache: this thread's live regions are its now */
    peer e2;
    pthread_t t2;
    peer_start(&e2, &t2, p);
    char *one[1];
    peer_run(&e2, job_alloc, one, 1);
    CHECK(e2.tc == evicted);
    check_owners(p, "evicted cache taken over");
    for (int i = 0; i < 8; i++) /* to e2's cache (a batch), from this thread's new one */
        CHECK_EQ(lacuna_free(p, keep[i]), 0);
    CHECK_EQ(lacuna_flush(p), 0);
    check_owners(p, "freed after eviction");
    char *back[8 + 1];
    peer_run(&e2, job_alloc, back, 8 + 1); /* its one, then the 8 taken from its remote list */
    for (int i = 0; i < 8 + 1; i++)
        CHECK(owner_of(p, back[i]) == evicted);
    check_owners(p, "e2 took them");
    peer_run(&e2, job_free, back, 8 + 1);
    CHECK_EQ(lacuna_free(p, one[0]), 0);
    CHECK_EQ(lacuna_flush(p), 0);
    peer_stop(&e2, t2);
    check_owners(p, "e2 exited");
    for (int i = 0; i < 8; i++)
        CHECK((keep[i] = lacuna_alloc(p)) != NULL);
    check_mine(p, keep, 8);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(lacuna_free(p, keep[i]), 0);

    /* the peer's regions freed here after it exits: its cache is closed, this one keeps them */
    peer_run(&e, job_alloc, theirs, N);
    peer_stop(&e, t);
    check_owners(p, "peer exited");
    for (int i = 0; i < N; i++)
        CHECK_EQ(lacuna_free(p, theirs[i]), 0);
    CHECK_EQ(lacuna_flush(p), 0);
    check_owners(p, "kept from a closed cache");

    /* "free one and retry": the pool full of another thread's regions */
    peer_start(&e, &t, p);
    lacuna_stats st = lt_stats(p);
    int full = (int)(CAP - st.live);
    CHECK_EQ(lacuna_trim(p), 0); /* this thread's cache empty: the peer can take every slot */
    peer_run(&e, job_alloc, theirs, full);
    CHECK(lacuna_alloc(p) == NULL);
    CHECK_EQ(lacuna_free(p, theirs[0]), 0);
    CHECK((theirs[0] = lacuna_alloc(p)) != NULL); /* from the batch */
    check_owners(p, "free one and retry");
    CHECK(owner_of(p, theirs[0]) == lac_tcache_peek(p));
    CHECK_EQ(lacuna_free(p, theirs[0]), 0);
    peer_run(&e, job_free_flush, theirs + 1, full - 1);
    check_owners(p, "all back");

    /* a fork child */
    for (int i = 0; i < N; i++)
        CHECK((mine[i] = lacuna_alloc(p)) != NULL);
    peer_run(&e, job_free, mine, N); /* batches on their way, one unsent */
    char err[512];
    child_arg a = {p, CAP};
    int status = lt_fork_run(child_walk, &a, err, sizeof err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "child: %s", err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* trim, then everything again */
    CHECK_EQ(lacuna_trim(p), 0);
    peer_run(&e, job_cycle, NULL, 0);
    check_owners(p, "trimmed");
    peer_stop(&e, t);
    for (int i = 0; i <= LAC_TLS_WAYS; i++)
        lacuna_pool_destroy(q[i]);
    lacuna_pool_destroy(p);
}

TEST(every_cached_slot_names_its_cache)
{
    owner_walk(0);
}

TEST(every_cached_slot_names_its_cache_zero_pool)
{
    owner_walk(LACUNA_ZERO);
}

/* ---- counts with a full unsent batch ---- */

static void check_counts(lacuna_pool *p, size_t live, size_t transit, const char *where)
{
    lacuna_stats st = lt_stats(p);
    size_t t = st.used - st.live - st.warm - st.released;
    if (st.live != live || t != transit)
        fprintf(stderr,
                "  %s: live %zu (want %zu) used %zu warm %zu released %zu transit %zu "
                "(want %zu)\n",
                where, st.live, live, st.used, st.warm, st.released, t, transit);
    CHECK_EQ(st.live, live);
    CHECK_EQ(t, transit);
    CHECK_EQ(st.allocs - st.frees, live);
}

static void fork_counts(void *arg)
{
    child_arg *a = arg;
    /* the peer's full batch came back through the rebuild: nothing in transit, nothing lost */
    check_counts(a->p, 0, 0, "child");
    char **got = calloc(a->capacity, sizeof *got);
    for (size_t i = 0; i < a->capacity; i++)
        CHECK((got[i] = lacuna_alloc(a->p)) != NULL);
    CHECK(lacuna_alloc(a->p) == NULL);
    check_counts(a->p, a->capacity, 0, "child, full");
    free(got);
}

static void fork_counts_mine(void *arg)
{
    child_arg *a = arg;
    /* this thread's own full batch was copied with it: still in transit, then kept */
    check_counts(a->p, 0, LAC_REMOTE_BATCH, "child (own batch)");
    char **got = calloc(a->capacity, sizeof *got);
    for (size_t i = 0; i < a->capacity; i++)
        CHECK((got[i] = lacuna_alloc(a->p)) != NULL);
    check_counts(a->p, a->capacity, 0, "child (own batch), full");
    free(got);
}

TEST(counts_stay_exact_with_a_full_unsent_batch)
{
    enum { CAP = 4 * LAC_TC_MAX };
    lacuna_pool *p = pool(CAP, 0);
    char *r[LAC_REMOTE_BATCH];
    peer e;
    pthread_t t;

    /* a full batch, its thread exits with it */
    peer_start(&e, &t, p);
    for (int i = 0; i < LAC_REMOTE_BATCH; i++)
        CHECK((r[i] = lacuna_alloc(p)) != NULL);
    peer_run(&e, job_free, r, LAC_REMOTE_BATCH);
    check_counts(p, 0, LAC_REMOTE_BATCH, "full batch held");
    peer_stop(&e, t);
    check_counts(p, 0, 0, "its thread exited");

    /* a full batch in another thread at fork */
    peer_start(&e, &t, p);
    for (int i = 0; i < LAC_REMOTE_BATCH; i++)
        CHECK((r[i] = lacuna_alloc(p)) != NULL);
    peer_run(&e, job_free, r, LAC_REMOTE_BATCH);
    char err[512];
    child_arg a = {p, CAP};
    int status = lt_fork_run(fork_counts, &a, err, sizeof err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "child: %s", err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    check_counts(p, 0, LAC_REMOTE_BATCH, "parent after fork");

    /* trim: the holder releases its full batch when it sees it */
    CHECK_EQ(lacuna_trim(p), 0);
    peer_run(&e, job_cycle, NULL, 0);
    check_counts(p, 0, 0, "trim seen");
    for (int i = 0; i < LAC_REMOTE_BATCH; i++)
        CHECK_EQ(lt_resident_pages(r[i], 16 * KIB), 0);

    /* this thread's own full batch (the peer's regions) at fork */
    peer_run(&e, job_alloc, r, LAC_REMOTE_BATCH);
    for (int i = 0; i < LAC_REMOTE_BATCH; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    check_counts(p, 0, LAC_REMOTE_BATCH, "own full batch");
    status = lt_fork_run(fork_counts_mine, &a, err, sizeof err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "child: %s", err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(lacuna_flush(p), 0);
    check_counts(p, 0, LAC_REMOTE_BATCH, "flushed: on the peer's remote list");
    peer_stop(&e, t);
    check_counts(p, 0, 0, "the peer exited with them on its list");
    lacuna_pool_destroy(p);
}

/* ---- lacuna_flush and a trim ---- */

/* Thread A allocates and touches 3 batches; B frees them (2 pushed to A, the third full in B);
 * this thread trims; A sees the trim (releases its remote list); then B calls lacuna_flush, and
 * then a call whose slow path sees the trim. Every region freed before the trim must be
 * released by then (docs/reliability.md: a thread that sees a trim releases what it holds;
 * free_remote's push checks for a trim first for this reason). */
typedef struct trio {
    lacuna_pool *p;
    char *r[3 * LAC_REMOTE_BATCH];
    char *last, *b_own;
    pthread_barrier_t b;
} trio;

enum { TRIO_N = 3 * LAC_REMOTE_BATCH };

static void *trio_a(void *arg)
{
    trio *t = arg;
    for (int i = 0; i < TRIO_N; i++) {
        CHECK((t->r[i] = lacuna_alloc(t->p)) != NULL);
        memset(t->r[i], 1, 16 * KIB);
    }
    pthread_barrier_wait(&t->b);                   /* 1: allocated */
    pthread_barrier_wait(&t->b);                   /* 2: B freed them */
    pthread_barrier_wait(&t->b);                   /* 3: trimmed */
    CHECK((t->last = lacuna_alloc(t->p)) != NULL); /* empty cache: slow path, sees the trim */
    pthread_barrier_wait(&t->b);                   /* 4 */
    pthread_barrier_wait(&t->b);                   /* 5: B flushed and saw the trim */
    CHECK_EQ(lacuna_free(t->p, t->last), 0);
    return NULL;
}

static void *trio_b(void *arg)
{
    trio *t = arg;
    pthread_barrier_wait(&t->b); /* 1 */
    for (int i = 0; i < TRIO_N; i++)
        CHECK_EQ(lacuna_free(t->p, t->r[i]), 0);
    pthread_barrier_wait(&t->b); /* 2 */
    pthread_barrier_wait(&t->b); /* 3 */
    pthread_barrier_wait(&t->b); /* 4 */
    CHECK_EQ(lacuna_flush(t->p), 0);
    CHECK((t->b_own = lacuna_alloc(t->p)) != NULL); /* empty cache: slow path, sees the trim */
    CHECK_EQ(lacuna_free(t->p, t->b_own), 0);
    pthread_barrier_wait(&t->b); /* 5 */
    return NULL;
}

TEST(flush_after_a_trim_releases_the_batch)
{
    trio t = {.p = pool(256, 0)};
    pthread_barrier_init(&t.b, NULL, 3);
    pthread_t a, b;
    CHECK_EQ(pthread_create(&a, NULL, trio_a, &t), 0);
    CHECK_EQ(pthread_create(&b, NULL, trio_b, &t), 0);
    pthread_barrier_wait(&t.b); /* 1 */
    pthread_barrier_wait(&t.b); /* 2 */
    CHECK_EQ(lacuna_trim(t.p), 0);
    pthread_barrier_wait(&t.b); /* 3 */
    pthread_barrier_wait(&t.b); /* 4 */
    pthread_barrier_wait(&t.b); /* 5 */
    size_t resident = 0;
    for (int i = 0; i < TRIO_N; i++)
        resident += lt_resident_pages(t.r[i], 16 * KIB);
    if (resident != 0)
        fprintf(stderr, "  %zu pages of regions freed before the trim still resident\n", resident);
    CHECK_EQ(resident, 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&t.b);
    lacuna_pool_destroy(t.p);
}
