/* Review tests for the remote-free lists (pool_cache.c): promises made before them that a region
 * on its way back to the thread that allocated it must not break. Each also holds on main. */
#define _GNU_SOURCE
#include "internal.h" /* LAC_REMOTE_BATCH, LAC_TC_MAX */
#include "lacuna.h"
#ifndef LAC_REMOTE_BATCH
#define LAC_REMOTE_BATCH 16
#endif
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#define KIB 1024u

static lacuna_pool *pool(size_t capacity)
{
    lacuna_pool_config c = {
        .region_size = 16 * KIB, .capacity = capacity, .decay_ms = LACUNA_DECAY_NEVER};
    return lt_pool(c);
}

typedef struct job {
    lacuna_pool *p;
    char **r;
    int n;
} job;

static void *alloc_all(void *arg)
{
    job *j = arg;
    for (int i = 0; i < j->n; i++)
        CHECK((j->r[i] = lacuna_alloc(j->p)) != NULL);
    return NULL;
}

static void run(void *(*fn)(void *), job *j)
{
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, fn, j), 0);
    pthread_join(t, NULL);
}

/* lacuna.h, lacuna_alloc's ENOMEM: "every slot is live or sits in another thread's cache ...
 * the pool keeps working: free one and retry". A full pool whose regions another thread
 * allocated: this thread frees one and allocates again. The freed region must be reachable by the
 * thread that freed it; in an unsent batch (fewer than LAC_REMOTE_BATCH) it is not. The
 * allocating thread has exited here: its cache takes no pushes, and the batch waits for 15 more
 * frees of that thread's regions. */
TEST(free_one_and_retry_works_when_full)
{
    enum { CAP = 2 * LAC_TC_MAX };
    lacuna_pool *p = pool(CAP);
    /* This thread's cache first (else it would take over the exiting thread's), left empty. */
    CHECK_EQ(lacuna_free(p, lacuna_alloc(p)), 0);
    CHECK_EQ(lacuna_trim(p), 0);
    char *r[CAP];
    job j = {p, r, CAP};
    run(alloc_all, &j); /* every slot live, allocated by the other thread */
    errno = 0;
    CHECK(lacuna_alloc(p) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(lacuna_free(p, r[0]), 0);
    char *again = lacuna_alloc(p);
    CHECK(again == r[0]);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, CAP);
    lacuna_pool_destroy(p);
}

/* The same with the allocating thread alive: it is idle (in a barrier), as a producer is while
 * its consumer frees and allocates. */
typedef struct idle_owner {
    lacuna_pool *p;
    char *r[2 * LAC_TC_MAX];
    pthread_barrier_t allocated, done;
} idle_owner;

static void *alloc_then_wait(void *arg)
{
    idle_owner *o = arg;
    for (int i = 0; i < 2 * LAC_TC_MAX; i++)
        CHECK((o->r[i] = lacuna_alloc(o->p)) != NULL);
    pthread_barrier_wait(&o->allocated);
    pthread_barrier_wait(&o->done);
    return NULL;
}

TEST(free_one_and_retry_works_while_the_allocator_idles)
{
    enum { CAP = 2 * LAC_TC_MAX };
    idle_owner o = {.p = pool(CAP)};
    CHECK_EQ(lacuna_free(o.p, lacuna_alloc(o.p)), 0); /* this thread's cache, left empty */
    CHECK_EQ(lacuna_trim(o.p), 0);
    pthread_barrier_init(&o.allocated, NULL, 2);
    pthread_barrier_init(&o.done, NULL, 2);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, alloc_then_wait, &o), 0);
    pthread_barrier_wait(&o.allocated);
    for (int k = 0; k < 3; k++) { /* fewer than a batch */
        CHECK_EQ(lacuna_free(o.p, o.r[k]), 0);
        char *again = lacuna_alloc(o.p);
        CHECK(again == o.r[k]);
    }
    /* A whole batch: the free that fills it must not send it away (to an idle owner that would
     * hold it), so the retry finds them; they all come back to this thread. */
    for (int k = 3; k < 3 + LAC_REMOTE_BATCH; k++)
        CHECK_EQ(lacuna_free(o.p, o.r[k]), 0);
    for (int k = 3; k < 3 + LAC_REMOTE_BATCH; k++) {
        char *again = lacuna_alloc(o.p);
        bool freed = false;
        for (int i = 3; i < 3 + LAC_REMOTE_BATCH; i++)
            freed |= again == o.r[i];
        CHECK(freed);
    }
    pthread_barrier_wait(&o.done);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&o.allocated);
    pthread_barrier_destroy(&o.done);
    lacuna_pool_destroy(o.p);
}

/* docs/reliability.md: lacuna_trim "bumps a trim epoch that every other thread checks on its slow
 * path: a thread that sees it drains and releases its cache then". Thread A allocates, thread B
 * frees (on main: into B's cache and the shared cache; on the branch: onto A's remote list), this
 * thread trims, then both make a call that takes their slow path. Every region freed before the
 * trim must have its pages released by then; none is live but the one A allocates, which is not
 * touched. */
typedef struct trio {
    lacuna_pool *p;
    char *r[3 * LAC_REMOTE_BATCH];
    char *last;
    pthread_barrier_t b;
} trio;

enum { TRIO_N = 3 * LAC_REMOTE_BATCH };

static void *trio_a(void *arg)
{
    trio *t = arg;
    for (int i = 0; i < TRIO_N; i++) { /* refills of half a cache: empty after */
        CHECK((t->r[i] = lacuna_alloc(t->p)) != NULL);
        memset(t->r[i], 1, 16 * KIB);
    }
    pthread_barrier_wait(&t->b);                   /* 1: allocated */
    pthread_barrier_wait(&t->b);                   /* 2: B freed them */
    pthread_barrier_wait(&t->b);                   /* 3: trimmed */
    CHECK((t->last = lacuna_alloc(t->p)) != NULL); /* empty cache: slow path, sees the trim */
    pthread_barrier_wait(&t->b);                   /* 4 */
    pthread_barrier_wait(&t->b);                   /* 5: B sees the trim */
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
    /* On main B's cache is full (32): this free takes its slow path and sees the trim. */
    CHECK_EQ(lacuna_free(t->p, t->last), 0);
    pthread_barrier_wait(&t->b); /* 5 */
    return NULL;
}

TEST(trim_seen_by_other_threads_releases_regions_freed_before_it)
{
    trio t = {.p = pool(256)};
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
        fprintf(stderr, "%zu pages of regions freed before the trim still resident\n", resident);
    CHECK_EQ(resident, 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&t.b);
    lacuna_pool_destroy(t.p);
}
