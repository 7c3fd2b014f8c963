/* lacuna_free_deferred, lacuna_flush and lacuna_free_top: freeing the stack you run on, and by
 * its top. The coroutines here are ucontext ones on lacuna regions, as a runtime's would be. */
#define _GNU_SOURCE
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <ucontext.h>

#define REGION (64 * 1024)

#if defined(__SANITIZE_THREAD__)
#define LT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LT_TSAN 1
#endif
#endif

static lacuna_pool *pool(size_t cache)
{
    lacuna_pool_config c = {.region_size = REGION, .capacity = 4096, .cache = cache};
    return lt_pool(c);
}

/* A coroutine that frees its own stack as its last act, then switches back for good. */
typedef struct coro {
    ucontext_t self, back;
    lacuna_pool *pool;
    char *stack;
    int err; /* lacuna_free_deferred's result */
} coro;

static void coro_body(unsigned lo, unsigned hi)
{
    coro *c = (coro *)(((uintptr_t)hi << 32) | lo);
    volatile char canary[512]; /* a frame on the region being freed */
    memset((char *)canary, 0x5a, sizeof canary);
    c->err = lacuna_free_deferred(c->pool, c->stack);
    canary[0] = 0x5b; /* still ours: nothing happened to the region yet */
    swapcontext(&c->self, &c->back);
}

/* Run a coroutine on a fresh region that defers its own stack, and come back. */
static char *run_coro(lacuna_pool *p, int *err)
{
    coro c = {.pool = p};
    c.stack = lacuna_alloc(p);
    CHECK(c.stack != NULL);
    CHECK_EQ(getcontext(&c.self), 0);
    c.self.uc_stack.ss_sp = c.stack;
    c.self.uc_stack.ss_size = REGION;
    c.self.uc_link = NULL;
    uintptr_t a = (uintptr_t)&c;
    makecontext(&c.self, (void (*)(void))coro_body, 2, (unsigned)a, (unsigned)(a >> 32));
    CHECK_EQ(swapcontext(&c.back, &c.self), 0);
    *err = c.err;
    return c.stack;
}

TEST(defer_own_stack_then_flush)
{
#ifdef LT_TSAN
    SKIP("ucontext switches are not annotated for TSan (the threaded test below covers TSan)");
#endif
    lacuna_pool *p = pool(LACUNA_CACHE_NONE); /* a free releases at once: a too-early free shows */
    int err;
    char *r = run_coro(p, &err);
    CHECK_EQ(err, 0);
    CHECK_EQ(lt_stats(p).live, 1); /* deferred: still counted live */
    CHECK_EQ(lt_stats(p).frees, 0);
    CHECK(lt_resident_pages(r, REGION) > 0); /* untouched so far */
    CHECK_EQ(lacuna_free(p, r), EINVAL);     /* no longer live */
    CHECK_EQ(lacuna_free_deferred(p, r), EINVAL);
    CHECK_EQ(lacuna_punch(p, r, r + REGION), EINVAL);
    CHECK_EQ(lacuna_flush(p), 0);
    CHECK_EQ(lt_stats(p).live, 0);
    CHECK_EQ(lt_stats(p).frees, 1);
    CHECK_EQ(lt_resident_pages(r, REGION), 0); /* freed, and released by the CACHE_NONE pool */
    CHECK_EQ(lacuna_flush(p), 0);              /* nothing left: a no-op */
    CHECK_EQ(lacuna_flush(NULL), EINVAL);
    CHECK_EQ(lacuna_free_deferred(NULL, r), EINVAL);
    CHECK_EQ(lacuna_free_deferred(p, NULL), EINVAL);
    lacuna_pool_destroy(p);
}

/* The next alloc or free on the same pool does the deferred frees; another pool's calls do not. */
TEST(defer_runs_on_next_call_of_that_pool)
{
    lacuna_pool *p = pool(0), *q = pool(0);
    char *a = lacuna_alloc(p), *b = lacuna_alloc(p), *x = lacuna_alloc(q);
    CHECK(a && b && x);
    CHECK_EQ(lacuna_free_deferred(p, a), 0);
    CHECK_EQ(lacuna_free_deferred(p, b), 0);
    CHECK_EQ(lacuna_free_deferred(q, x), 0);
    CHECK_EQ(lt_stats(p).live, 2);
    CHECK_EQ(lacuna_free(q, lacuna_alloc(q)), 0); /* q's call: q's deferral only */
    CHECK_EQ(lt_stats(q).live, 0);
    CHECK_EQ(lt_stats(p).live, 2);
    char *c = lacuna_alloc(p); /* p's call: both of p's are freed first, c may be one of them */
    CHECK(c != NULL);
    CHECK_EQ(lt_stats(p).live, 1);
    CHECK_EQ(lt_stats(p).frees, 2);
    CHECK_EQ(lacuna_free(p, c), 0);
    CHECK_EQ(lt_stats(p).live, 0);
    lacuna_pool_destroy(p);
    lacuna_pool_destroy(q);
}

/* A pool destroyed with a deferral pending: the entry is dropped, never run on a later pool. */
TEST(defer_then_destroy)
{
    lacuna_pool *p = pool(0);
    CHECK_EQ(lacuna_free_deferred(p, lacuna_alloc(p)), 0);
    lacuna_pool_destroy(p);
    lacuna_pool *q = pool(0);
    char *r = lacuna_alloc(q);
    CHECK(r != NULL);
    CHECK_EQ(lt_stats(q).frees, 0);
    CHECK_EQ(lacuna_free(q, r), 0);
    lacuna_pool_destroy(q);
}

static void *exit_with_deferral(void *arg)
{
    lacuna_pool *p = arg;
    char *r = lacuna_alloc(p);
    CHECK(r != NULL);
    CHECK_EQ(lacuna_free_deferred(p, r), 0);
    return r; /* the thread exits with the deferral pending */
}

TEST(defer_pending_at_thread_exit)
{
    lacuna_pool *p = pool(0);
    pthread_t t;
    void *r;
    CHECK_EQ(pthread_create(&t, NULL, exit_with_deferral, p), 0);
    CHECK_EQ(pthread_join(t, &r), 0);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.frees, 1);
    CHECK_EQ(st.allocs, 1);
    CHECK_EQ(lacuna_free(p, r), EINVAL); /* freed by the exit, not live */
    lacuna_pool_destroy(p);
}

/* fork: a thread that was not copied deferred a region (done with it, freed only by its next
 * call, which the child never sees): the child takes it back. The forking thread's own deferral
 * stays deferred in the child, and its next call frees it. */
typedef struct forker {
    lacuna_pool *pool;
    char *region;
    pthread_mutex_t m;
    pthread_cond_t c;
    int stage; /* 1: deferred; 2: the parent forked, exit */
} forker;

/* Set the stage to `to` (0: leave it), then wait until it is `until` (0: do not wait). */
static void stage(forker *f, int to, int until)
{
    pthread_mutex_lock(&f->m);
    if (to) {
        f->stage = to;
        pthread_cond_broadcast(&f->c);
    }
    while (until && f->stage != until)
        pthread_cond_wait(&f->c, &f->m);
    pthread_mutex_unlock(&f->m);
}

static void *defer_and_wait(void *arg)
{
    forker *f = arg;
    f->region = lacuna_alloc(f->pool);
    CHECK(f->region != NULL);
    CHECK_EQ(lacuna_free_deferred(f->pool, f->region), 0);
    stage(f, 1, 2);
    return NULL;
}

typedef struct fork_ctx {
    lacuna_pool *pool;
    char *other, *mine;
} fork_ctx;

static void child_after_deferrals(void *arg)
{
    fork_ctx *x = arg;
    lacuna_stats st = lt_stats(x->pool);
    CHECK_EQ(st.live, 1); /* mine: still deferred; the other thread's: freed by the fork */
    CHECK_EQ(lacuna_free(x->pool, x->other), EINVAL);
    CHECK_EQ(lacuna_free(x->pool, x->mine), EINVAL);
    CHECK_EQ(lacuna_flush(x->pool), 0);
    CHECK_EQ(lt_stats(x->pool).live, 0);
    /* both come out again (the pool had 2 used slots + a cache's refill) */
    int seen_other = 0;
    char *r[64];
    for (int i = 0; i < 64; i++) {
        r[i] = lacuna_alloc(x->pool);
        CHECK(r[i] != NULL);
        seen_other |= r[i] == x->other;
    }
    CHECK(seen_other);
    for (int i = 0; i < 64; i++)
        CHECK_EQ(lacuna_free(x->pool, r[i]), 0);
}

TEST(fork_child_takes_back_other_threads_deferrals)
{
    if (lt_under_valgrind()) /* the child cannot free it: that thread's TLS was not copied */
        SKIP("the other thread's deferral list is a leak in the child (memcheck: definite)");
    lacuna_pool *p = pool(0);
    forker f = {.pool = p, .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, defer_and_wait, &f), 0);
    stage(&f, 0, 1);
    fork_ctx x = {.pool = p, .other = f.region, .mine = lacuna_alloc(p)};
    CHECK(x.mine != NULL);
    CHECK_EQ(lacuna_free_deferred(p, x.mine), 0);
    char err[2048];
    int st = lt_fork_run(child_after_deferrals, &x, err, sizeof err);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "child: %s\n", err);
        CHECK(0);
    }
    stage(&f, 2, 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_EQ(lacuna_flush(p), 0);
    lacuna_stats s = lt_stats(p);
    CHECK_EQ(s.live, 0); /* the thread's exit freed its deferral here */
    lacuna_pool_destroy(p);
}

/* Two threads, each running coroutines that free their own stacks, and many regions in flight:
 * a region must never be handed to two owners, and every one is freed in the end. */
typedef struct worker {
    lacuna_pool *pool;
    int id;
} worker;

static void *defer_worker(void *arg)
{
    worker *w = arg;
    lacuna_pool *p = w->pool;
    char *held[8] = {0};
    for (int i = 0; i < 2000; i++) {
#ifndef LT_TSAN
        if (i % 3 == 0) {
            int err = 0;
            (void)run_coro(p, &err); /* defers its own stack */
            CHECK_EQ(err, 0);
            continue;
        }
#endif
        char *r = lacuna_alloc(p);
        CHECK(r != NULL);
        memset(r + REGION - 64, w->id, 64); /* ownership mark */
        int k = i % 8;
        if (held[k]) {
            for (int j = 0; j < 64; j++)
                CHECK_EQ(held[k][REGION - 64 + j], w->id); /* nobody else got it */
            CHECK_EQ(i % 2 ? lacuna_free_deferred(p, held[k]) : lacuna_free(p, held[k]), 0);
        }
        held[k] = r;
    }
    for (int k = 0; k < 8; k++)
        if (held[k])
            CHECK_EQ(lacuna_free_deferred(p, held[k]), 0);
    if (w->id == 1)
        CHECK_EQ(lacuna_flush(p), 0); /* thread 2 leaves its deferrals to its exit */
    return NULL;
}

TEST(defer_two_threads_60_runs)
{
    for (int run = 0; run < 60; run++) {
        lacuna_pool *p = pool(0);
        worker w[2] = {{p, 1}, {p, 2}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            CHECK_EQ(pthread_create(&t[i], NULL, defer_worker, &w[i]), 0);
        for (int i = 0; i < 2; i++)
            CHECK_EQ(pthread_join(t[i], NULL), 0);
        lacuna_stats st = lt_stats(p);
        CHECK_EQ(st.live, 0);
        CHECK_EQ(st.allocs, st.frees);
        lacuna_pool_destroy(p);
    }
}

TEST(free_top_round_trip)
{
    lacuna_pool *p = pool(0);
    for (int i = 0; i < 100; i++) {
        char *r = lacuna_alloc(p);
        CHECK(r != NULL);
        CHECK_EQ(lacuna_free_top(p, r + REGION - 1), EINVAL); /* interior: refused */
        CHECK_EQ(lacuna_free_top(p, r + REGION / 2), EINVAL);
        CHECK_EQ(lacuna_free_top(p, r), EINVAL); /* r is the top of nothing: the guard's end */
        CHECK_EQ(lacuna_free_top(p, r + REGION), 0);
        CHECK_EQ(lacuna_free_top(p, r + REGION), EINVAL); /* twice */
    }
    CHECK_EQ(lacuna_free_top(NULL, NULL), EINVAL);
    CHECK_EQ(lacuna_free_top(p, NULL), EINVAL);
    CHECK_EQ(lacuna_free_top(p, (void *)(uintptr_t)16), EINVAL);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.frees, 100);
    lacuna_pool_destroy(p);
}
