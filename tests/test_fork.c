/* fork() in a process with live pools: the child can allocate, free, trim and destroy every pool it
 * inherited, whatever the parent's other threads were doing (holding thread caches, running a
 * background release, being in the middle of a release); regions cached by those threads are
 * the child's to reuse; and the child's releases drop the CHILD's pages, never the parent's.
 * (Fibers across fork are the fiber runtime's tests.) Each case forks its own child; the child
 * runs under alarm() so a hang fails the test instead of stalling it. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB 1024u
#define PG  4096u

/* TSan refuses new threads in the child of a multi-threaded fork (die_after_fork). */
#if defined(__SANITIZE_THREAD__)
#define LT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LT_TSAN 1
#endif
#endif
#ifndef LT_TSAN
#define LT_TSAN 0
#endif

/* Pages resident in all regions of a pool, given region 0's address. */
static size_t pool_resident(const lacuna_pool *p, const char *first)
{
    lacuna_stats st = lt_stats(p);
    return lt_resident_pages(first, st.capacity * st.stride - st.guard_size);
}

/* Wait for a forked child; it must exit 0 (a hang is killed by its alarm). */
static void reap(pid_t pid)
{
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
        fprintf(stderr, "child killed by signal %d%s\n", WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (hung)" : "");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- threads with caches, a background pool ------------------------------------------------ */

enum { THREADS = 3, PER_THREAD = 20, KEPT = 8, CAP = 256 };

typedef struct shared {
    lacuna_pool *a, *bg;
    pthread_barrier_t ready, done;
    char *kept[THREADS][KEPT]; /* live regions the threads hold across the fork */
} shared;

static void *holder(void *arg)
{
    shared *sh = arg;
    static _Atomic int next_id;
    int id = atomic_fetch_add(&next_id, 1);
    char *r[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        CHECK((r[i] = lacuna_alloc(sh->a)) != NULL);
        r[i][16 * KIB - 1] = 1;
    }
    for (int i = KEPT; i < PER_THREAD; i++) /* 12 freed: they sit in this thread's cache */
        CHECK_EQ(lacuna_free(sh->a, r[i]), 0);
    for (int i = 0; i < KEPT; i++)
        sh->kept[id][i] = r[i];
    char *b = lacuna_alloc(sh->bg);
    CHECK(b != NULL);
    CHECK_EQ(lacuna_free(sh->bg, b), 0);
    pthread_barrier_wait(&sh->ready); /* alive, caches owned, while main forks */
    pthread_barrier_wait(&sh->done);
    for (int i = 0; i < KEPT; i++)
        CHECK_EQ(lacuna_free(sh->a, r[i]), 0);
    return NULL;
}

static void *child_thread(void *arg)
{
    lacuna_pool *p = arg;
    for (int i = 0; i < 100; i++) {
        char *r = lacuna_alloc(p);
        CHECK(r != NULL);
        CHECK_EQ(lacuna_free(p, r), 0);
    }
    return NULL;
}

static void child_uses_inherited(shared *sh, size_t live_at_fork)
{
    alarm(20);
    lacuna_stats st = lt_stats(sh->a);
    CHECK_EQ(st.live, live_at_fork);
    CHECK(st.warm >= THREADS * (PER_THREAD - KEPT)); /* the threads' caches came back */
    /* every slot not live at fork can be had, exactly once: the threads' cached ones included */
    static char *got[CAP];
    static unsigned char seen[CAP];
    size_t n = 0;
    char *r;
    while ((r = lacuna_alloc(sh->a)) != NULL) {
        long idx = lacuna_region_index(sh->a, r);
        CHECK(idx >= 0 && idx < CAP);
        CHECK_EQ(seen[idx], 0);
        seen[idx] = 1;
        for (int t = 0; t < THREADS; t++)
            for (int k = 0; k < KEPT; k++)
                CHECK(r != sh->kept[t][k]);
        r[0] = 2;
        got[n++] = r;
    }
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(n, CAP - live_at_fork);
    while (n > 0)
        CHECK_EQ(lacuna_free(sh->a, got[--n]), 0);
    /* the regions the parent's threads held are the child's to free (its copy of them) */
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < KEPT; k++)
            CHECK_EQ(lacuna_free(sh->a, sh->kept[t][k]), 0);
    /* a new thread gets a cache of its own and gives it back at exit */
    if (!LT_TSAN) {
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, child_thread, sh->a), 0);
        CHECK_EQ(pthread_join(t, NULL), 0);
    } else {
        fprintf(stderr, "note: no new thread in the child under TSan (die_after_fork)\n");
        child_thread(sh->a);
    }
    CHECK_EQ(lacuna_trim(sh->a), 0);
    st = lt_stats(sh->a);
    CHECK_EQ(st.live, live_at_fork - THREADS * KEPT);
    CHECK_EQ(st.warm, 0);
    /* the background pool: usable, trimmable, and destroyable (its thread was not copied) */
    char *b = lacuna_alloc(sh->bg);
    CHECK(b != NULL);
    b[0] = 1;
    CHECK_EQ(lacuna_free(sh->bg, b), 0);
    CHECK_EQ(lacuna_trim(sh->bg), 0);
    CHECK_EQ(lt_stats(sh->bg).warm, 0);
    lacuna_pool_destroy(sh->bg);
    lacuna_pool_destroy(sh->a);
    _exit(0);
}

TEST(child_uses_pools_of_a_threaded_parent)
{
    shared sh = {0};
    sh.a = lt_pool((lacuna_pool_config){.region_size = 16 * KIB, .capacity = CAP});
    sh.bg = lt_pool((lacuna_pool_config){
        .region_size = 16 * KIB, .capacity = 64, .decay_ms = 20, .flags = LACUNA_BACKGROUND});
    pthread_barrier_init(&sh.ready, NULL, THREADS + 1);
    pthread_barrier_init(&sh.done, NULL, THREADS + 1);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, holder, &sh), 0);
    pthread_barrier_wait(&sh.ready);
    char *mine = lacuna_alloc(sh.a); /* and one live region of the forking thread */
    CHECK(mine != NULL);
    size_t live = THREADS * KEPT + 1;
    CHECK_EQ(lt_stats(sh.a).live, live);
    for (int round = 0; round < 3; round++) { /* the background thread is in its wait, or not */
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            child_uses_inherited(&sh, live);
        reap(pid);
    }
    pthread_barrier_wait(&sh.done);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(lacuna_free(sh.a, mine), 0);
    CHECK_EQ(lt_stats(sh.a).live, 0);
    lacuna_pool_destroy(sh.bg);
    lacuna_pool_destroy(sh.a);
}

/* ---- the child's release drops the child's pages ------------------------------------------- */

TEST(child_trim_releases_child_pages_only)
{
    enum { M = 40 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){
        .region_size = 64 * KIB, .capacity = M, .cache = M, .decay_ms = LACUNA_DECAY_NEVER});
    char *r[M];
    for (int i = 0; i < M; i++) {
        CHECK((r[i] = lacuna_alloc(p)) != NULL);
        memset(r[i] + 60 * KIB, 0xa5, 4 * KIB); /* one page each */
    }
    for (int i = 0; i < M; i++)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    char *first = r[0];
    for (int i = 0; i < M; i++)
        if (r[i] < first)
            first = r[i];
    lacuna_stats before = lt_stats(p);
    CHECK_EQ(before.warm, M);
    CHECK_EQ(pool_resident(p, first), M);

    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(20);
        CHECK_EQ(lacuna_trim(p), 0); /* a batched release (process_madvise) where available */
        lacuna_stats st = lt_stats(p);
        CHECK_EQ(st.released_regions, M);
        CHECK_EQ(st.warm, 0);
        CHECK_EQ(pool_resident(p, first), 0);
        lacuna_pool_destroy(p);
        _exit(0);
    }
    reap(pid);
    /* the parent's pages, books and bytes are untouched */
    lacuna_stats after = lt_stats(p);
    CHECK_EQ(after.released_regions, before.released_regions);
    CHECK_EQ(after.warm, M);
    CHECK_EQ(pool_resident(p, first), M);
    for (int i = 0; i < M; i++) /* freed but warm: the test may look (the pages were kept) */
        CHECK_EQ((unsigned char)r[i][60 * KIB + 123], 0xa5);
    CHECK_EQ(lacuna_trim(p), 0); /* and the parent's own trim still works, on its own pages */
    CHECK_EQ(pool_resident(p, first), 0);
    lacuna_pool_destroy(p);
}

/* ---- fork in the middle of another thread's release ---------------------------------------- */

typedef struct churner {
    lacuna_pool *p;
    _Atomic bool stop;
} churner;

static void *churn(void *arg)
{
    churner *c = arg;
    char *r[4];
    while (!atomic_load(&c->stop)) {
        for (int i = 0; i < 4; i++) {
            r[i] = lacuna_alloc(c->p);
            CHECK(r[i] != NULL);
            r[i][16 * KIB - 1] = 1;
        }
        for (int i = 0; i < 4; i++) /* no cache: every free is a release, out of the lock */
            CHECK_EQ(lacuna_free(c->p, r[i]), 0);
    }
    return NULL;
}

TEST(fork_while_another_thread_releases)
{
    enum { C = 64 };
    const int FORKS = lt_under_valgrind() ? 20 : 300; /* a fork costs ~0.3 s under valgrind */
    churner c = {.p = lt_pool((lacuna_pool_config){
                     .region_size = 16 * KIB, .capacity = C, .cache = LACUNA_CACHE_NONE})};
    char *all[C];
    for (int i = 0; i < C; i++) /* every slot guarded and used once: none fresh */
        CHECK((all[i] = lacuna_alloc(c.p)) != NULL);
    for (int i = 0; i < C; i++)
        CHECK_EQ(lacuna_free(c.p, all[i]), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, churn, &c), 0);
    for (int f = 0; f < FORKS; f++) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(10);
            size_t live = lt_stats(c.p).live, n = 0;
            while (lacuna_alloc(c.p) != NULL) /* to exhaustion: must not wait for a release */
                n++;
            CHECK_EQ(errno, ENOMEM);
            /* every slot but the churner's live regions comes back (rebuilt from the state table),
             * also one it had in hand at the fork, which the counters may still call live */
            CHECK(n + live >= C && n + live <= C + 1);
            _exit(0);
        }
        reap(pid);
    }
    atomic_store(&c.stop, true);
    pthread_join(t, NULL);
    lacuna_pool_destroy(c.p);
}
