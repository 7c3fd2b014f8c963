/* The runtime on several workers (M:N): fibers spread over the workers and move between them,
 * pinned ones do not, channels and joins work across workers, runtimes and plain threads, an idle
 * runtime sleeps, deadlocks are still reported, and a randomized program of spawns, channel
 * operations (plain, with deadlines, selects), closes, joins, detaches, sleeps, yields and cancels
 * computes what a sequential model says. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- fibers spread over the workers, pinned ones stay ---------------------------------------- */

static _Atomic int seen[2];

static void *spin_and_yield(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        int w = lacuna_worker_id();
        CHECK(w == 0 || w == 1);
        atomic_store(&seen[w], 1);
        uint64_t t = now_ns();
        while (now_ns() - t < 20000) /* 20 us of work: worth stealing */
            ;
        lacuna_yield();
    }
    return NULL;
}

TEST(work_spreads_over_two_workers)
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    CHECK_EQ(lacuna_get_workers(), 2);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(lacuna_detach(lacuna_go(spin_and_yield, NULL)), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(atomic_load(&seen[0]) && atomic_load(&seen[1]));
    CHECK_EQ(lacuna_worker_id(), -1); /* the runtime is gone with its last fiber */
}

static void *pinned_body(void *arg)
{
    int home = lacuna_worker_id();
    for (int i = 0; i < 300; i++) {
        lacuna_yield();
        if (i % 50 == 0)
            lacuna_sleep_ms(1);
        CHECK_EQ(lacuna_worker_id(), home);
    }
    return arg;
}

static void *pin_spawner(void *arg)
{
    (void)arg;
    lacuna_fiber_opts o = {.flags = LACUNA_FIBER_PINNED};
    lacuna_fiber *f[4];
    for (int i = 0; i < 4; i++)
        f[i] = lacuna_go_opts(&o, pinned_body, (void *)(uintptr_t)i);
    for (int i = 0; i < 4; i++)
        CHECK_EQ((uintptr_t)lacuna_join(f[i]), (uintptr_t)i);
    return NULL;
}

TEST(pinned_fibers_stay_on_their_worker)
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    for (int i = 0; i < 6; i++) { /* spawners spread; each one's pinned fibers stay put */
        CHECK_EQ(lacuna_detach(lacuna_go(pin_spawner, NULL)), 0);
        CHECK_EQ(lacuna_detach(lacuna_go(spin_and_yield, NULL)), 0);
    }
    CHECK_EQ(lacuna_run(), 0);
}

TEST(set_workers_bad_input)
{
    CHECK_EQ(lacuna_set_workers(LACUNA_WORKERS_MAX + 1), EINVAL);
    CHECK_EQ(lacuna_set_workers(3), 0);
    CHECK_EQ(lacuna_get_workers(), 3);
    CHECK_EQ(lacuna_set_workers(0), 0);
    CHECK(lacuna_get_workers() >= 1);
    setenv("LACUNA_WORKERS", "5", 1);
    CHECK_EQ(lacuna_get_workers(), 5);
    setenv("LACUNA_WORKERS", "banana", 1);
    CHECK(lacuna_get_workers() >= 1); /* ignored: the CPU count */
    unsetenv("LACUNA_WORKERS");
}

/* ---- channels and joins across workers, runtimes and plain threads ------------------------- */

typedef struct {
    lacuna_chan *in, *out;
    int n;
} pp_arg;

static void *ponger(void *arg)
{
    pp_arg *a = arg;
    long v;
    while (lacuna_chan_recv(a->in, &v) == 0)
        CHECK_EQ(lacuna_chan_send(a->out, &(long){v + 1}), 0);
    return NULL;
}

static void *plain_thread_pings(void *arg)
{
    pp_arg *a = arg;
    long v = 0;
    for (int i = 0; i < a->n; i++) {
        CHECK_EQ(lacuna_chan_send(a->in, &v), 0); /* blocks this thread until a fiber takes it */
        CHECK_EQ(lacuna_chan_recv(a->out, &v), 0);
    }
    CHECK_EQ(lacuna_chan_close(a->in), 0);
    return (void *)(intptr_t)v;
}

/* lacuna_run reports EDEADLK when every fiber waits and no thread outside is blocked on a
 * channel or join at that moment: a plain thread that has not reached its channel call yet is
 * not counted (fiber.h). Run again until the fibers are done. */
static void run_while_threads_feed(void)
{
    int err;
    while ((err = lacuna_run()) == EDEADLK)
        usleep(1000);
    CHECK_EQ(err, 0);
}

TEST(plain_thread_talks_to_fibers)
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    pp_arg a = {lacuna_chan_make(sizeof(long), 0), lacuna_chan_make(sizeof(long), 0), 20000};
    lacuna_fiber *f = lacuna_go(ponger, &a);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, plain_thread_pings, &a), 0);
    run_while_threads_feed();
    void *r;
    CHECK_EQ(pthread_join(t, &r), 0);
    CHECK_EQ((intptr_t)r, 20000);
    CHECK(lacuna_join(f) == NULL);
    CHECK_EQ(lacuna_chan_free(a.in), 0);
    CHECK_EQ(lacuna_chan_free(a.out), 0);
}

static void *sleeper_result(void *arg)
{
    lacuna_sleep_ms(20);
    return arg;
}

static void *join_from_plain_thread(void *arg)
{
    return lacuna_join(arg); /* blocks this thread until the fiber ends */
}

TEST(plain_thread_joins_a_fiber)
{
    lacuna_fiber *f = lacuna_go(sleeper_result, (void *)77);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, join_from_plain_thread, f), 0);
    CHECK_EQ(lacuna_run(), 0);
    void *r;
    CHECK_EQ(pthread_join(t, &r), 0);
    CHECK_EQ((uintptr_t)r, 77);
    errno = 0;
    CHECK(lacuna_join(f) == NULL && errno == EINVAL); /* reclaimed by the thread's join */
}

/* Two threads, each with a runtime of its own: fibers of one join and feed fibers of the other. */
typedef struct {
    pthread_barrier_t *bar;
    lacuna_fiber *mine;   /* published for the other thread */
    lacuna_fiber *theirs; /* the other thread's receiver, set before the second barrier */
    lacuna_chan *shared;
    long got;
} cross_arg;

static cross_arg cross[2];

static void *cross_joiner(void *arg)
{
    cross_arg *c = arg;
    long sum = 0, v;
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ(lacuna_chan_recv(c->shared, &v), 0);
        sum += v;
    }
    return (void *)(intptr_t)sum;
}

static void *cross_feeder(void *arg)
{
    cross_arg *c = arg;
    for (long i = 0; i < 1000; i++)
        CHECK_EQ(lacuna_chan_send(c->shared, &i), 0);
    /* join the other runtime's receiver from here: a fiber waiting on a foreign fiber */
    return lacuna_join(c->theirs);
}

static void *cross_thread_joins(void *arg)
{
    cross_arg *c = arg;
    c->mine = lacuna_go(cross_joiner, c);
    pthread_barrier_wait(c->bar);
    cross_arg *o = c == &cross[0] ? &cross[1] : &cross[0];
    o->theirs = c->mine; /* the other's feeder joins my receiver */
    pthread_barrier_wait(c->bar);
    lacuna_fiber *feeder = lacuna_go(cross_feeder, o);
    run_while_threads_feed(); /* my receiver waits for the other runtime's feeder */
    c->got = (long)(intptr_t)lacuna_join(feeder);
    return NULL;
}

TEST(fibers_of_two_runtimes_feed_and_join_each_other)
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    for (int i = 0; i < 2; i++)
        cross[i] = (cross_arg){.bar = &bar, .shared = lacuna_chan_make(sizeof(long), 0)};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, cross_thread_joins, &cross[i]), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_join(t[i], NULL), 0);
    /* each feeder joined the other runtime's receiver, whose result is 0 + 1 + ... + 999 */
    CHECK_EQ(cross[0].got, 999L * 1000 / 2);
    CHECK_EQ(cross[1].got, 999L * 1000 / 2);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(lacuna_chan_free(cross[i].shared), 0);
    pthread_barrier_destroy(&bar);
}

/* ---- idle workers sleep; deadlocks are still found ----------------------------------------- */

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *long_sleeper(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_sleep_ms(400), 0);
    return NULL;
}

TEST(idle_runtime_uses_no_cpu)
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(lacuna_detach(lacuna_go(long_sleeper, NULL)), 0);
    double c0 = cpu_seconds();
    uint64_t t0 = now_ns();
    CHECK_EQ(lacuna_run(), 0);
    double wall = (double)(now_ns() - t0) / 1e9, cpu = cpu_seconds() - c0;
    CHECK(wall >= 0.39);
    /* Both workers asleep in epoll: a spinning one would use ~wall. Thread start/stop and the
     * short spin before sleeping cost milliseconds. */
    printf("   idle run: %.0f ms wall, %.1f ms CPU\n", wall * 1e3, cpu * 1e3);
    CHECK(cpu < 0.1 * wall);
}

static void *recv_one(void *arg)
{
    long v;
    return (void *)(intptr_t)lacuna_chan_recv(arg, &v);
}

TEST(deadlock_is_reported_with_two_workers)
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    lacuna_chan *c = lacuna_chan_make(sizeof(long), 0);
    lacuna_fiber *f[6];
    for (int i = 0; i < 6; i++)
        f[i] = lacuna_go(recv_one, c);
    CHECK_EQ(lacuna_run(), EDEADLK);
    CHECK_EQ(lacuna_run(), EDEADLK);   /* still: nothing changed */
    CHECK_EQ(lacuna_chan_close(c), 0); /* wakes them from thread context */
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < 6; i++)
        CHECK_EQ((intptr_t)lacuna_join(f[i]), EPIPE);
    CHECK_EQ(lacuna_chan_free(c), 0);
}

/* ---- a randomized program against a sequential model -------------------------------------- */

/* Stages of pipelines: each stage receives values, adds its id, and passes them on; some stages
 * sleep or yield between items; the last stage of each pipeline sums what arrives. Producers are
 * spawned, detached or joined at random; pipelines are closed from their producer's end. Each
 * transfer is, at random, a plain send/recv, one with a short deadline (retried on ETIMEDOUT), or
 * a select beside a case that is never ready (a decoy channel), with or without a deadline.
 * Beside each pipeline a bystander fiber blocks (select on the decoy, a sleep for ever, a receive)
 * until the program cancels it. The model: every value v sent into pipeline p arrives as v + sum
 * of p's stage ids, exactly once; every bystander ends with ECANCELED. */
enum { PIPES = 6, STAGES = 4, ITEMS = 300 };

typedef struct {
    lacuna_chan *ch[STAGES + 1];
    long stage_id[STAGES];
    unsigned seed;
} pipe_t;

typedef struct {
    pipe_t *p;
    int k;
} stage_arg;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static lacuna_chan *decoy; /* never sent to: a select case that is never ready */

static uint64_t short_deadline(unsigned *seed)
{
    unsigned r = rnd(seed) % 8;
    return r == 0 ? LACUNA_FOREVER : r == 1 ? LACUNA_NOWAIT : lacuna_now_ns() + r * 20000;
}

/* One transfer on c (send *v, or receive into *v), in a way picked at random; ETIMEDOUT retried.
 * 0 or EPIPE. */
static int transfer(lacuna_chan *c, long *v, bool send, unsigned *seed)
{
    unsigned how = rnd(seed) % 3;
    for (;;) {
        int r;
        if (how == 0) {
            r = send ? lacuna_chan_send(c, v) : lacuna_chan_recv(c, v);
        } else if (how == 1) {
            uint64_t d = short_deadline(seed);
            r = send ? lacuna_chan_send_until(c, v, d) : lacuna_chan_recv_until(c, v, d);
        } else {
            long junk;
            lacuna_select_case k[2] = {
                {c, v, send ? LACUNA_SELECT_SEND : LACUNA_SELECT_RECV},
                {decoy, &junk, LACUNA_SELECT_RECV},
            };
            size_t i = 99;
            r = lacuna_select(k, 2, short_deadline(seed), &i);
            if (r != ETIMEDOUT)
                CHECK_EQ(i, 0);
        }
        if (r != ETIMEDOUT)
            return r;
    }
}

static void *stage(void *arg)
{
    stage_arg *a = arg;
    pipe_t *p = a->p;
    unsigned seed = p->seed + (unsigned)a->k;
    long v;
    while (transfer(p->ch[a->k], &v, false, &seed) == 0) {
        unsigned r = rnd(&seed) % 16;
        if (r == 0)
            lacuna_sleep_ms(1);
        else if (r < 4)
            lacuna_yield();
        v += p->stage_id[a->k];
        CHECK_EQ(transfer(p->ch[a->k + 1], &v, true, &seed), 0);
    }
    CHECK_EQ(lacuna_chan_close(p->ch[a->k + 1]), 0);
    return NULL;
}

static void *bystander(void *arg)
{
    long v;
    int r;
    switch ((uintptr_t)arg % 3) {
    case 0: {
        lacuna_select_case k[1] = {{decoy, &v, LACUNA_SELECT_RECV}};
        size_t i;
        r = lacuna_select(k, 1, LACUNA_FOREVER, &i);
        break;
    }
    case 1:
        r = lacuna_sleep_until(LACUNA_FOREVER);
        break;
    default:
        r = lacuna_chan_recv(decoy, &v);
        break;
    }
    return (void *)(intptr_t)r;
}

static void *sink(void *arg)
{
    lacuna_chan *c = arg;
    long v, sum = 0;
    while (lacuna_chan_recv(c, &v) == 0)
        sum += v;
    return (void *)(intptr_t)sum;
}

static void *producer(void *arg)
{
    pipe_t *p = arg;
    for (long i = 0; i < ITEMS; i++)
        CHECK_EQ(lacuna_chan_send(p->ch[0], &i), 0);
    CHECK_EQ(lacuna_chan_close(p->ch[0]), 0);
    return NULL;
}

static void *random_program(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    static pipe_t pipes[PIPES];
    static stage_arg sargs[PIPES][STAGES];
    lacuna_fiber *sinks[PIPES], *prods[PIPES], *bys[PIPES];
    decoy = lacuna_chan_make(sizeof(long), 0);
    for (int p = 0; p < PIPES; p++) {
        bys[p] = lacuna_go(bystander, (void *)(uintptr_t)rnd(&seed));
        CHECK(bys[p] != NULL);
        pipe_t *pp = &pipes[p];
        pp->seed = rnd(&seed);
        for (int k = 0; k <= STAGES; k++) /* buffered or not, at random */
            pp->ch[k] = lacuna_chan_make(sizeof(long), rnd(&seed) % 3 == 0 ? 0 : rnd(&seed) % 8);
        for (int k = 0; k < STAGES; k++) {
            pp->stage_id[k] = (long)(rnd(&seed) % 1000);
            sargs[p][k] = (stage_arg){pp, k};
            lacuna_fiber *s = lacuna_go(stage, &sargs[p][k]);
            CHECK(s != NULL);
            CHECK_EQ(lacuna_detach(s), 0);
        }
        sinks[p] = lacuna_go(sink, pp->ch[STAGES]);
        prods[p] = lacuna_go(producer, pp);
        if (rnd(&seed) % 2) {
            CHECK_EQ(lacuna_detach(prods[p]), 0);
            prods[p] = NULL;
        }
    }
    for (int p = 0; p < PIPES; p++) {
        long want = 0, per = 0;
        for (int k = 0; k < STAGES; k++)
            per += pipes[p].stage_id[k];
        for (long i = 0; i < ITEMS; i++)
            want += i + per;
        CHECK_EQ((intptr_t)lacuna_join(sinks[p]), want);
        if (prods[p])
            CHECK(lacuna_join(prods[p]) == NULL);
        CHECK_EQ(lacuna_cancel(bys[p]), 0);
        CHECK_EQ((intptr_t)lacuna_join(bys[p]), ECANCELED);
    }
    CHECK_EQ(lacuna_chan_free(decoy), 0);
    for (int p = 0; p < PIPES; p++)
        for (int k = 0; k <= STAGES; k++)
            CHECK_EQ(lacuna_chan_free(pipes[p].ch[k]), 0);
    return NULL;
}

TEST(randomized_pipelines_match_the_model)
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    for (unsigned round = 0; round < 8; round++) {
        lacuna_fiber *f = lacuna_go(random_program, (void *)(uintptr_t)(round * 7919 + 1));
        CHECK_EQ(lacuna_run(), 0);
        CHECK(lacuna_join(f) == NULL);
    }
}

/* The same with one worker: the single-thread mode stays. */
TEST(randomized_pipelines_one_worker)
{
    CHECK_EQ(lacuna_set_workers(1), 0);
    lacuna_fiber *f = lacuna_go(random_program, (void *)(uintptr_t)4242);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(f) == NULL);
}

/* ---- a hand-off pair cannot starve a fiber woken from another worker ---------------------- */

/* Fibers A and B, pinned to one worker, hand a message to each other until P (pinned there too)
 * has run; a fiber on the other worker wakes P. P arrives through that worker's inbox, and the
 * hand-off bound (64 turns while others wait) must count it as waiting: else A and B keep the
 * worker for ever (a livelock here, since they stop only when P has run). */
static lacuna_chan *hp_ab, *hp_ba, *hp_p;
static _Atomic int hp_setup, hp_p_ran;
static _Atomic long hp_rounds_after_wake;
static _Atomic int hp_woken;
#define HP_ROUNDS_MAX 2000000l /* far more hand-offs than the bound allows */

static void *hp_a(void *arg)
{
    (void)arg;
    int v = 0;
    for (long r = 0; !atomic_load(&hp_p_ran) && r < HP_ROUNDS_MAX; r++) {
        if (atomic_load(&hp_woken))
            atomic_fetch_add(&hp_rounds_after_wake, 1);
        CHECK_EQ(lacuna_chan_send(hp_ab, &v), 0);
        CHECK_EQ(lacuna_chan_recv(hp_ba, &v), 0);
    }
    v = 1; /* the last message tells B to stop */
    CHECK_EQ(lacuna_chan_send(hp_ab, &v), 0);
    return NULL;
}

static void *hp_b(void *arg)
{
    (void)arg;
    for (int v = 0;;) {
        CHECK_EQ(lacuna_chan_recv(hp_ab, &v), 0);
        if (v)
            return NULL;
        CHECK_EQ(lacuna_chan_send(hp_ba, &v), 0);
    }
}

static void *hp_p_fn(void *arg)
{
    (void)arg;
    int v;
    CHECK_EQ(lacuna_chan_recv(hp_p, &v), 0);
    atomic_store(&hp_p_ran, 1);
    return NULL;
}

/* Spawned many times: the first that runs on worker 1 starts P, B and A there, pinned. */
static void *hp_seeker(void *arg)
{
    (void)arg;
    while (lacuna_worker_id() != 1) {
        if (atomic_load(&hp_setup))
            return NULL;
        lacuna_yield();
    }
    int none = 0;
    if (!atomic_compare_exchange_strong(&hp_setup, &none, 1))
        return NULL;
    lacuna_fiber_opts o = {.flags = LACUNA_FIBER_PINNED};
    CHECK_EQ(lacuna_detach(lacuna_go_opts(&o, hp_p_fn, NULL)), 0);
    CHECK_EQ(lacuna_detach(lacuna_go_opts(&o, hp_b, NULL)), 0);
    CHECK_EQ(lacuna_detach(lacuna_go_opts(&o, hp_a, NULL)), 0);
    atomic_store(&hp_setup, 2);
    return NULL;
}

/* On worker 0 (pinned): once the pair runs, wake P across workers. */
static void *hp_waker(void *arg)
{
    (void)arg;
    while (atomic_load(&hp_setup) != 2)
        CHECK_EQ(lacuna_sleep_ms(1), 0);
    CHECK_EQ(lacuna_sleep_ms(5), 0); /* the pair well under way */
    atomic_store(&hp_woken, 1);
    int v = 7;
    CHECK_EQ(lacuna_chan_send(hp_p, &v), 0);
    return NULL;
}

TEST(handoff_pair_cannot_starve_a_fiber_woken_from_another_worker)
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    hp_ab = lacuna_chan_make(sizeof(int), 0);
    hp_ba = lacuna_chan_make(sizeof(int), 0);
    hp_p = lacuna_chan_make(sizeof(int), 1);
    lacuna_fiber_opts o = {.flags = LACUNA_FIBER_PINNED};
    CHECK_EQ(lacuna_detach(lacuna_go_opts(&o, hp_waker, NULL)), 0); /* worker 0: this thread */
    for (int i = 0; i < 8; i++)
        CHECK_EQ(lacuna_detach(lacuna_go(hp_seeker, NULL)), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(atomic_load(&hp_p_ran));
    /* P ran while the pair still had rounds to go, a bounded number of hand-offs after its wake
     * reached the worker (the pair's worker may have been descheduled meanwhile: a wide margin). */
    CHECK(atomic_load(&hp_rounds_after_wake) < HP_ROUNDS_MAX / 2);
    lacuna_chan_free(hp_ab);
    lacuna_chan_free(hp_ba);
    lacuna_chan_free(hp_p);
}
