/* Fibers in bulk: a million spawned and joined, a spawn tree that stays depth-first (few stacks
 * live at once), many OS threads on one stack pool, and a stack overflow in a named fiber,
 * reported by name in a forked child that then dies by SIGSEGV. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>

static lacuna_stats pool_stats(void)
{
    lacuna_stats st;
    lacuna_pool_stats(lacuna_fiber_pool(), &st);
    return st;
}

static void *twice(void *arg)
{
    return (void *)((uintptr_t)arg * 2);
}

static void *twice_after_yield(void *arg)
{
    lacuna_yield();
    return (void *)((uintptr_t)arg * 2);
}

enum { BATCH = 10000, TOTAL = 1000000 };

static void *million(void *arg)
{
    void *(*fn)(void *) = (void *(*)(void *))(uintptr_t)arg;
    static lacuna_fiber *f[BATCH];
    uint64_t sum = 0;
    for (uintptr_t base = 0; base < TOTAL; base += BATCH) {
        for (uintptr_t i = 0; i < BATCH; i++) {
            f[i] = lacuna_go(fn, (void *)(base + i));
            CHECK(f[i] != NULL);
        }
        for (int i = 0; i < BATCH; i++)
            sum += (uintptr_t)lacuna_join(f[i]);
    }
    CHECK_EQ(sum, (uint64_t)TOTAL * (TOTAL - 1)); /* 2 * sum of 0..TOTAL-1 */
    return NULL;
}

TEST(million_fibers_end_at_once)
{
    CHECK(lacuna_join(lacuna_go(million, (void *)(uintptr_t)twice)) == NULL);
    lacuna_stats st = pool_stats();
    /* Each ran to its end at spawn, and its stack went straight to the next spawn: the pool is
     * hardly asked at all. */
    CHECK(st.allocs < 100);
    CHECK_EQ(st.live, 0);
    CHECK(st.used < 100);
}

TEST(million_fibers_ten_thousand_live)
{
    CHECK(lacuna_join(lacuna_go(million, (void *)(uintptr_t)twice_after_yield)) == NULL);
    lacuna_stats st = pool_stats();
    CHECK(st.allocs <= TOTAL + 1); /* fewer: ended fibers' stacks go to the next spawns */
    CHECK_EQ(st.live, 0);
    CHECK(st.used >= BATCH && st.used < BATCH + 100); /* one batch live at a time */
}

/* ---- a spawn tree stays depth-first --------------------------------------------------------- */

typedef struct {
    lacuna_chan *up;
    long num, size;
} node_arg;

static _Atomic size_t max_live;

static void *node(void *p)
{
    node_arg a = *(node_arg *)p; /* copied before the spawner can reuse *p */
    lacuna_stats st = pool_stats();
    size_t seen = atomic_load(&max_live); /* nodes run on every worker: a maximum lost to a
                                             concurrent update would hide a breadth-first walk */
    while (st.live > seen && !atomic_compare_exchange_weak(&max_live, &seen, st.live))
        ;
    long sum = a.num;
    if (a.size > 1) {
        lacuna_chan *c = lacuna_chan_make(sizeof(long), 10);
        node_arg child = {c, 0, a.size / 10};
        for (long i = 0; i < 10; i++) {
            child.num = a.num + i * child.size;
            CHECK_EQ(lacuna_detach(lacuna_go(node, &child)), 0);
        }
        sum = 0;
        for (int i = 0; i < 10; i++) {
            long v;
            CHECK_EQ(lacuna_chan_recv(c, &v), 0);
            sum += v;
        }
        CHECK_EQ(lacuna_chan_free(c), 0);
    }
    CHECK_EQ(lacuna_chan_send(a.up, &sum), 0);
    return NULL;
}

TEST(spawn_tree_is_depth_first)
{
    lacuna_chan *top = lacuna_chan_make(sizeof(long), 1);
    node_arg root = {top, 0, 100000};
    lacuna_fiber *f = lacuna_go(node, &root);
    CHECK_EQ(lacuna_run(), 0);
    long sum = 0;
    CHECK_EQ(lacuna_chan_recv(top, &sum), 0);
    CHECK_EQ(sum, 100000L * 99999 / 2);
    CHECK(lacuna_join(f) == NULL);
    CHECK_EQ(lacuna_chan_free(top), 0);
    lacuna_stats st = pool_stats();
    CHECK(st.allocs <= 111111); /* fewer: ended fibers' stacks go to the next spawns */
    /* One stack per level of the tree, not per node, plus the ended fibers' stacks a scheduler
     * keeps for its next spawns (LAC_SPARE_MAX, 16): per worker. */
    CHECK(max_live <= (6 + 16) * lacuna_get_workers());
    CHECK_EQ(st.live, 0);
}

/* ---- many OS threads on one pool -------------------------------------------------------- */

static void *pinger(void *arg)
{
    lacuna_chan **c = arg; /* c[0]: in, c[1]: out */
    long v;
    while (lacuna_chan_recv(c[0], &v) == 0)
        CHECK_EQ(lacuna_chan_send(c[1], &(long){v + 1}), 0);
    CHECK_EQ(lacuna_chan_close(c[1]), 0);
    return NULL;
}

static void *pump(void *arg)
{
    lacuna_chan **c = arg;
    long v = 0;
    for (int i = 0; i < 10000; i++) {
        CHECK_EQ(lacuna_chan_send(c[0], &v), 0);
        CHECK_EQ(lacuna_chan_recv(c[1], &v), 0);
    }
    CHECK_EQ(lacuna_chan_close(c[0]), 0);
    return (void *)v;
}

static void *thread_main(void *arg)
{
    (void)arg;
    for (int round = 0; round < 5; round++) {
        lacuna_chan *c[2] = {lacuna_chan_make(sizeof(long), 0), lacuna_chan_make(sizeof(long), 0)};
        lacuna_fiber *p = lacuna_go(pinger, c);
        lacuna_fiber *q = lacuna_go(pump, c);
        for (int i = 0; i < 1000; i++)
            CHECK_EQ(lacuna_detach(lacuna_go(twice_after_yield, NULL)), 0);
        CHECK_EQ(lacuna_run(), 0);
        CHECK(lacuna_join(p) == NULL);
        CHECK_EQ((long)lacuna_join(q), 10000);
        CHECK_EQ(lacuna_chan_free(c[0]), 0);
        CHECK_EQ(lacuna_chan_free(c[1]), 0);
    }
    return NULL;
}

TEST(eight_threads_one_pool)
{
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, thread_main, NULL), 0);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(pthread_join(t[i], NULL), 0);
    lacuna_stats st = pool_stats();
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.allocs, 8 * 5 * 1002);
}

/* ---- overflow ------------------------------------------------------------------------------ */

static volatile long depth_limit = 1L << 40;

static long recurse(long n)
{
    volatile char frame[512];
    frame[0] = (char)n;
    if (n > depth_limit)
        return 0;
    return recurse(n + 1) + frame[0];
}

static void *overflow(void *arg)
{
    (void)arg;
    return (void *)recurse(0);
}

static void overflow_child(void *arg)
{
    (void)arg;
    lacuna_fiber *f = lacuna_go_named("deep-recursion", overflow, NULL);
    CHECK(f != NULL);
    lacuna_join(f);
    fprintf(stderr, "survived the overflow\n");
}

TEST(overflow_names_the_fiber)
{
    char err[4096];
    int status = lt_fork_run(overflow_child, NULL, err, sizeof err);
    fprintf(stderr, "%s", err);
    CHECK(WIFSIGNALED(status));
    CHECK_EQ(WTERMSIG(status), SIGSEGV);
    CHECK(strstr(err, "lacuna: stack overflow in fiber \"deep-recursion\" (region ") != NULL);
    CHECK(strstr(err, ", fault at 0x") != NULL);
}

static void *overflow_unnamed(void *arg)
{
    (void)arg;
    lacuna_yield();
    return (void *)recurse(0);
}

static void *bystander(void *arg)
{
    (void)arg;
    lacuna_yield();
    lacuna_yield();
    return NULL;
}

static void *thread_overflow_body(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(lacuna_detach(lacuna_go(bystander, NULL)), 0);
    CHECK(lacuna_go(overflow_unnamed, NULL) != NULL);
    lacuna_run();
    return NULL;
}

/* On another thread, among other fibers: that thread's own alternate stack reports it. */
static void overflow_thread_child(void *arg)
{
    (void)arg;
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, thread_overflow_body, NULL), 0);
    pthread_join(t, NULL);
    fprintf(stderr, "survived the overflow\n");
}

TEST(overflow_on_another_thread_unnamed)
{
    char err[4096];
    int status = lt_fork_run(overflow_thread_child, NULL, err, sizeof err);
    fprintf(stderr, "%s", err);
    CHECK(WIFSIGNALED(status));
    CHECK_EQ(WTERMSIG(status), SIGSEGV);
    CHECK(strstr(err, "lacuna: stack overflow in fiber \"(unnamed)\" (region ") != NULL);
}
