/* Deadlines on every blocking call (channel send/recv, join, fd wait, mutex, cond, waitgroup,
 * semaphore, sleep) and cancellation (lacuna_cancel): each call's timeout and cancel, the state
 * left behind (a timed-out waiter is gone from its queue), races between a wake-up and a timeout
 * or a cancel on another worker, bad input, and 100,000 cancelled fibers all joined with every
 * stack back in the pool. Deadlines have wide margins; no speed is asserted. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MS 1000000ull

static uint64_t soon(uint64_t ms)
{
    return lacuna_now_ns() + ms * MS;
}

/* ---- deadlines ------------------------------------------------------------------------------ */

static void *sleeper(void *arg)
{
    uint64_t ns = (uint64_t)(uintptr_t)arg;
    uint64_t t0 = lacuna_now_ns();
    CHECK_EQ(lacuna_sleep_ns(ns), 0);
    CHECK(lacuna_now_ns() >= t0 + ns); /* never early */
    uint64_t d = lacuna_now_ns() + ns;
    CHECK_EQ(lacuna_sleep_until(d), 0);
    CHECK(lacuna_now_ns() >= d);
    CHECK_EQ(lacuna_sleep_until(0), 0); /* passed: a yield */
    return NULL;
}

TEST(sleep_ns_and_until)
{
    uint64_t a = lacuna_now_ns(), b = lacuna_now_ns();
    CHECK(b >= a);
    lacuna_fiber *f[3] = {lacuna_go(sleeper, (void *)(uintptr_t)200000),
                          lacuna_go(sleeper, (void *)(uintptr_t)50000),
                          lacuna_go(sleeper, (void *)(uintptr_t)3000000)};
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < 3; i++)
        CHECK(lacuna_join(f[i]) == NULL);
    sleeper((void *)(uintptr_t)100000); /* thread context: the thread sleeps */
}

static lacuna_chan *dc;

static void *chan_deadlines(void *arg)
{
    (void)arg;
    int v = 7;
    uint64_t d = soon(2);
    CHECK_EQ(lacuna_chan_recv_until(dc, &v, d), ETIMEDOUT);
    CHECK(lacuna_now_ns() >= d);
    CHECK_EQ(v, 7);
    CHECK_EQ(lacuna_chan_recv_until(dc, &v, LACUNA_NOWAIT), ETIMEDOUT);
    /* the timed-out receiver left the queue: an unbuffered send finds no one */
    CHECK_EQ(lacuna_chan_try_send(dc, &v), EAGAIN);
    d = soon(2);
    CHECK_EQ(lacuna_chan_send_until(dc, &v, d), ETIMEDOUT);
    CHECK(lacuna_now_ns() >= d);
    CHECK_EQ(lacuna_chan_try_recv(dc, &v), EAGAIN);
    return NULL;
}

TEST(chan_deadlines_fiber_and_thread)
{
    dc = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *f = lacuna_go(chan_deadlines, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(f) == NULL);
    chan_deadlines(NULL); /* thread context: a futex with a deadline */
    CHECK_EQ(lacuna_chan_send_until(NULL, &f, LACUNA_FOREVER), EINVAL);
    CHECK_EQ(lacuna_chan_recv_until(dc, NULL, LACUNA_FOREVER), EINVAL);
    CHECK_EQ(lacuna_chan_free(dc), 0);
}

/* A receive with a deadline against a send with one, on two workers, many times: a value is
 * received exactly when its send succeeded. */
enum { RACES = 4000 };
static lacuna_chan *rc;
static _Atomic long sent_sum, got_sum, sent_n, got_n;

static void *race_recv(void *arg)
{
    (void)arg;
    for (int n = 0; n < RACES; n++) {
        int v = 0;
        int r = lacuna_chan_recv_until(rc, &v, lacuna_now_ns() + 15000 * (uint64_t)(n % 6));
        if (r == 0) {
            atomic_fetch_add(&got_sum, v);
            atomic_fetch_add(&got_n, 1);
        } else {
            CHECK_EQ(r, ETIMEDOUT);
        }
    }
    return NULL;
}

static void *race_send(void *arg)
{
    (void)arg;
    for (int n = 1; n <= RACES; n++) {
        int r = lacuna_chan_send_until(rc, &n, lacuna_now_ns() + 15000 * (uint64_t)(n % 4));
        if (r == 0) {
            atomic_fetch_add(&sent_sum, n);
            atomic_fetch_add(&sent_n, 1);
        } else {
            CHECK_EQ(r, ETIMEDOUT);
        }
    }
    return NULL;
}

TEST(chan_timeout_races_wake_two_workers)
{
    lacuna_set_workers(2);
    rc = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *a = lacuna_go(race_recv, NULL), *b = lacuna_go(race_send, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(a) == NULL);
    CHECK(lacuna_join(b) == NULL);
    CHECK_EQ(atomic_load(&sent_n), atomic_load(&got_n));
    CHECK_EQ(atomic_load(&sent_sum), atomic_load(&got_sum));
    CHECK_EQ(lacuna_chan_free(rc), 0);
}

static lacuna_mutex mu;
static lacuna_cond cv;
static lacuna_waitgroup wg;
static lacuna_sem sem;
static _Atomic int stage;

static void *holder(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_mutex_lock(&mu), 0);
    atomic_store(&stage, 1);
    while (atomic_load(&stage) != 2)
        lacuna_sleep_ms(1);
    CHECK_EQ(lacuna_mutex_unlock(&mu), 0);
    return NULL;
}

static void *sync_deadlines_fiber(void *arg)
{
    (void)arg;
    while (atomic_load(&stage) != 1)
        lacuna_sleep_ms(1);
    uint64_t d = soon(2);
    CHECK_EQ(lacuna_mutex_lock_until(&mu, d), ETIMEDOUT);
    CHECK(lacuna_now_ns() >= d);
    CHECK_EQ(lacuna_mutex_lock_until(&mu, LACUNA_NOWAIT), ETIMEDOUT);
    atomic_store(&stage, 2);
    CHECK_EQ(lacuna_mutex_lock_until(&mu, soon(60000)), 0); /* the holder lets go */
    /* cond: times out and still holds the mutex */
    d = soon(2);
    CHECK_EQ(lacuna_cond_wait_until(&cv, &mu, d), ETIMEDOUT);
    CHECK(lacuna_now_ns() >= d);
    CHECK_EQ(lacuna_cond_wait_until(&cv, &mu, LACUNA_NOWAIT), ETIMEDOUT);
    CHECK_EQ(lacuna_mutex_unlock(&mu), 0);
    CHECK_EQ(lacuna_cond_destroy(&cv), 0); /* no waiter left */
    CHECK_EQ(lacuna_cond_init(&cv), 0);
    /* the mutex's fast path works again: no waiter bit left behind */
    CHECK_EQ(lacuna_mutex_trylock(&mu), 0);
    CHECK_EQ(lacuna_mutex_unlock(&mu), 0);
    /* waitgroup */
    CHECK_EQ(lacuna_waitgroup_add(&wg, 1), 0);
    CHECK_EQ(lacuna_waitgroup_wait_until(&wg, soon(2)), ETIMEDOUT);
    CHECK_EQ(lacuna_waitgroup_done(&wg), 0);
    CHECK_EQ(lacuna_waitgroup_wait_until(&wg, LACUNA_NOWAIT), 0); /* 0: no wait needed */
    CHECK_EQ(lacuna_waitgroup_destroy(&wg), 0);
    CHECK_EQ(lacuna_waitgroup_init(&wg), 0);
    /* semaphore: a timed-out waiter takes no unit; the next post goes to the count */
    CHECK_EQ(lacuna_sem_wait_until(&sem, soon(2)), ETIMEDOUT);
    CHECK_EQ(lacuna_sem_post(&sem), 0);
    unsigned long val = 0;
    CHECK_EQ(lacuna_sem_value(&sem, &val), 0);
    CHECK_EQ(val, 1);
    CHECK_EQ(lacuna_sem_wait_until(&sem, LACUNA_NOWAIT), 0);
    return NULL;
}

TEST(sync_deadlines)
{
    atomic_store(&stage, 0);
    lacuna_fiber *h = lacuna_go(holder, NULL), *f = lacuna_go(sync_deadlines_fiber, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(h) == NULL);
    CHECK(lacuna_join(f) == NULL);
    /* thread context, nothing left to run: futex deadlines */
    CHECK_EQ(lacuna_sem_wait_until(&sem, soon(2)), ETIMEDOUT);
    CHECK_EQ(lacuna_waitgroup_add(&wg, 1), 0);
    CHECK_EQ(lacuna_waitgroup_wait_until(&wg, soon(2)), ETIMEDOUT);
    CHECK_EQ(lacuna_waitgroup_done(&wg), 0);
    CHECK_EQ(lacuna_mutex_lock(&mu), 0);
    CHECK_EQ(lacuna_cond_wait_until(&cv, &mu, soon(2)), ETIMEDOUT);
    CHECK_EQ(lacuna_mutex_unlock(&mu), 0);
}

/* A mutex waiter that times out while the owner unlocks on another worker: the mutex ends up
 * owned by exactly the lockers that reported success, never lost, never doubly owned. */
static _Atomic int in_cs;
static _Atomic long locked_n;

static void *mutex_racer(void *arg)
{
    (void)arg;
    for (int n = 0; n < 2000; n++) {
        int r = lacuna_mutex_lock_until(&mu, lacuna_now_ns() + 10000 * (uint64_t)(n % 5));
        if (r == ETIMEDOUT)
            continue;
        CHECK_EQ(r, 0);
        CHECK_EQ(atomic_fetch_add(&in_cs, 1), 0);
        atomic_fetch_add(&locked_n, 1);
        if (n % 3 == 0)
            lacuna_yield();
        CHECK_EQ(atomic_fetch_sub(&in_cs, 1), 1);
        CHECK_EQ(lacuna_mutex_unlock(&mu), 0);
    }
    return NULL;
}

TEST(mutex_timeout_races_unlock_two_workers)
{
    lacuna_set_workers(2);
    lacuna_fiber *f[4];
    for (int i = 0; i < 4; i++)
        f[i] = lacuna_go(mutex_racer, NULL);
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < 4; i++)
        CHECK(lacuna_join(f[i]) == NULL);
    CHECK(atomic_load(&locked_n) > 0);
    CHECK_EQ(lacuna_mutex_destroy(&mu), 0); /* unlocked, nobody queued */
}

static lacuna_chan *jc;

static void *waits_for_go(void *arg)
{
    (void)arg;
    int v;
    return lacuna_chan_recv(jc, &v) == 0 ? (void *)7 : NULL; /* NULL: cancelled */
}

static void *join_deadlines_fiber(void *arg)
{
    lacuna_fiber *t = arg;
    void *res = NULL;
    CHECK_EQ(lacuna_join_until(t, soon(1), &res), ETIMEDOUT);
    CHECK_EQ(lacuna_join_until(t, LACUNA_NOWAIT, &res), ETIMEDOUT);
    int go = 1;
    CHECK_EQ(lacuna_chan_send(jc, &go), 0);
    CHECK_EQ(lacuna_join_until(t, LACUNA_FOREVER, &res), 0); /* still joinable */
    CHECK_EQ((long)res, 7);
    CHECK_EQ(lacuna_join_until(t, LACUNA_FOREVER, &res), EINVAL); /* stale now */
    return NULL;
}

static lacuna_fiber *thread_target;

static void *join_from_thread(void *arg)
{
    (void)arg;
    void *res = NULL;
    CHECK_EQ(lacuna_join_until(thread_target, soon(1), &res), ETIMEDOUT);
    int go = 1;
    CHECK_EQ(lacuna_chan_send(jc, &go), 0); /* a plain thread's send: it blocks until taken */
    CHECK_EQ(lacuna_join_until(thread_target, soon(60000), &res), 0);
    CHECK_EQ((long)res, 7);
    return NULL;
}

TEST(join_deadlines)
{
    jc = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *t = lacuna_go(waits_for_go, NULL);
    lacuna_fiber *j = lacuna_go(join_deadlines_fiber, t);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(j) == NULL);
    /* thread context of the fiber's own runtime: no deadline there */
    thread_target = lacuna_go(waits_for_go, NULL);
    CHECK_EQ(lacuna_join_until(thread_target, soon(1), NULL), EINVAL);
    /* another thread joins with deadlines while this one runs the runtime */
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, join_from_thread, NULL), 0);
    int r;
    while ((r = lacuna_run()) == EDEADLK)
        usleep(100);
    CHECK_EQ(r, 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(lacuna_join_until(NULL, LACUNA_FOREVER, NULL), EINVAL);
    CHECK_EQ(lacuna_chan_free(jc), 0);
}

static int pipe_fds[2];

static void *fd_deadline(void *arg)
{
    (void)arg;
    uint64_t d = soon(2);
    CHECK_EQ(lacuna_fd_wait_until(pipe_fds[0], POLLIN, d), ETIMEDOUT);
    CHECK(lacuna_now_ns() >= d);
    CHECK_EQ(lacuna_fd_wait_until(pipe_fds[0], POLLIN, LACUNA_NOWAIT), ETIMEDOUT);
    CHECK_EQ(lacuna_fd_wait_until(pipe_fds[1], POLLOUT, soon(1000)), 0);
    CHECK_EQ(lacuna_fd_wait_until(pipe_fds[0], 0, LACUNA_FOREVER), EINVAL);
    return NULL;
}

TEST(fd_wait_deadlines)
{
    CHECK_EQ(pipe(pipe_fds), 0);
    lacuna_fiber *f = lacuna_go(fd_deadline, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(f) == NULL);
    fd_deadline(NULL); /* thread context: ppoll */
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

/* ---- cancellation --------------------------------------------------------------------------- */

static lacuna_chan *cc, *ca, *cb;
static lacuna_mutex mu9;
static _Atomic int blocked;

/* Every kind of wait, each ended by a cancel from elsewhere (the canceller waits until the victim
 * has announced it is about to block; if the cancel comes first, the wait fails at once: the
 * same ECANCELED either way). */
static void *victim(void *arg)
{
    int kind = (int)(uintptr_t)arg, v = 0, r = -1;
    atomic_fetch_add(&blocked, 1);
    switch (kind) {
    case 0:
        r = lacuna_chan_recv(ca, &v);
        break;
    case 1:
        r = lacuna_chan_send_until(cb, &v, soon(60000));
        break;
    case 2:
        r = lacuna_sleep_ms(60000);
        break;
    case 3:
        r = lacuna_fd_wait(pipe_fds[0], POLLIN, -1);
        break;
    case 4:
        r = lacuna_sem_wait(&sem);
        break;
    case 5:
        r = lacuna_waitgroup_wait(&wg);
        break;
    case 6:
        r = lacuna_mutex_lock(&mu);
        break;
    case 7: {
        lacuna_select_case k[2] = {{ca, &v, LACUNA_SELECT_RECV}, {cb, &v, LACUNA_SELECT_SEND}};
        size_t i;
        r = lacuna_select(k, 2, LACUNA_FOREVER, &i);
        break;
    }
    case 8: {
        lacuna_fiber *t = lacuna_go(waits_for_go, NULL); /* never told to go */
        void *res;
        r = lacuna_join_until(t, LACUNA_FOREVER, &res);
        CHECK_EQ(r, ECANCELED);
        /* cleanup: joining it would wait (and fail): cancel it and let it reclaim itself */
        CHECK_EQ(lacuna_cancel(t), 0);
        CHECK_EQ(lacuna_detach(t), 0);
        break;
    }
    case 9: {
        CHECK_EQ(lacuna_mutex_lock(&mu9), 0); /* free: no wait needed */
        r = lacuna_cond_wait(&cv, &mu9);
        CHECK_EQ(lacuna_mutex_unlock(&mu9), 0); /* held again whatever the result */
        break;
    }
    }
    CHECK_EQ(r, ECANCELED);
    /* every later wait fails at once; what needs no wait still works */
    CHECK_EQ(lacuna_chan_recv(ca, &v), ECANCELED);
    CHECK_EQ(lacuna_sleep_ms(1), ECANCELED);
    CHECK_EQ(lacuna_chan_try_recv(ca, &v), EAGAIN);
    return (void *)(uintptr_t)(kind + 100);
}

static lacuna_fiber *victims[10];

static void *canceller(void *arg)
{
    (void)arg;
    while (atomic_load(&blocked) < 10)
        lacuna_yield();
    lacuna_sleep_ms(5); /* let them block (not required for the outcome) */
    for (int k = 0; k < 10; k++)
        CHECK_EQ(lacuna_cancel(victims[k]), 0);
    return NULL;
}

TEST(cancel_every_kind_of_wait)
{
    ca = lacuna_chan_make(sizeof(int), 0);
    cb = lacuna_chan_make(sizeof(int), 0);
    jc = lacuna_chan_make(sizeof(int), 0);
    CHECK_EQ(pipe(pipe_fds), 0);
    CHECK_EQ(lacuna_waitgroup_add(&wg, 1), 0);
    CHECK_EQ(lacuna_mutex_lock(&mu), 0); /* main owns it: victim 6 waits */
    atomic_store(&blocked, 0);
    for (int k = 0; k < 10; k++)
        victims[k] = lacuna_go(victim, (void *)(uintptr_t)k);
    lacuna_fiber *c = lacuna_go(canceller, NULL);
    int r;
    while ((r = lacuna_run()) == EDEADLK)
        usleep(100);
    CHECK_EQ(r, 0);
    CHECK(lacuna_join(c) == NULL);
    for (int k = 0; k < 10; k++)
        CHECK_EQ((long)lacuna_join(victims[k]), k + 100);
    CHECK_EQ(lacuna_cancel(victims[0]), EINVAL); /* stale */
    CHECK_EQ(lacuna_cancel(NULL), EINVAL);
    CHECK_EQ(lacuna_mutex_unlock(&mu), 0);
    CHECK_EQ(lacuna_waitgroup_done(&wg), 0);
    CHECK_EQ(lacuna_chan_free(ca), 0); /* nobody left queued */
    CHECK_EQ(lacuna_chan_free(cb), 0);
    CHECK_EQ(lacuna_chan_free(jc), 0);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

static void *self_canceller(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_cancel(lacuna_self()), 0);
    CHECK_EQ(lacuna_cancel(lacuna_self()), 0); /* again: nothing more */
    int v = 1;
    CHECK_EQ(lacuna_chan_send(cc, &v), 0); /* buffered, room: no wait */
    CHECK_EQ(lacuna_chan_send(cc, &v), ECANCELED);
    CHECK_EQ(lacuna_chan_recv(cc, &v), 0);
    CHECK_EQ(lacuna_chan_recv(cc, &v), ECANCELED);
    return NULL;
}

static void *quick(void *arg)
{
    return arg;
}

TEST(cancel_self_and_ended_fibers)
{
    cc = lacuna_chan_make(sizeof(int), 1);
    lacuna_fiber *f = lacuna_go(self_canceller, NULL);
    lacuna_fiber *q = lacuna_go(quick, (void *)5);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(lacuna_cancel(q), 0); /* ended, not joined: nothing to do */
    CHECK_EQ((long)lacuna_join(q), 5);
    CHECK(lacuna_join(f) == NULL);
    CHECK_EQ(lacuna_chan_free(cc), 0);
}

/* Cancels from a plain thread while fibers on two workers pass values with deadlines: each value
 * is received exactly when its send succeeded, whatever ended the other waits. */
static lacuna_fiber *race_fibers[2];

static void *cancel_thread(void *arg)
{
    (void)arg;
    usleep(2000);
    CHECK_EQ(lacuna_cancel(race_fibers[0]), 0);
    usleep(2000);
    CHECK_EQ(lacuna_cancel(race_fibers[1]), 0);
    return NULL;
}

static void *cancel_race_recv(void *arg)
{
    (void)arg;
    for (;;) {
        int v = 0;
        int r = lacuna_chan_recv_until(rc, &v, lacuna_now_ns() + 20000);
        if (r == ECANCELED)
            return NULL;
        if (r == 0) {
            atomic_fetch_add(&got_sum, v);
            atomic_fetch_add(&got_n, 1);
        } else {
            CHECK_EQ(r, ETIMEDOUT);
        }
    }
}

static void *cancel_race_send(void *arg)
{
    (void)arg;
    for (int n = 1;; n++) {
        int r = lacuna_chan_send_until(rc, &n, lacuna_now_ns() + 20000);
        if (r == ECANCELED)
            return NULL;
        if (r == 0) {
            atomic_fetch_add(&sent_sum, n);
            atomic_fetch_add(&sent_n, 1);
        } else {
            CHECK_EQ(r, ETIMEDOUT);
        }
    }
}

TEST(cancel_races_wake_and_timeout)
{
    lacuna_set_workers(2);
    rc = lacuna_chan_make(sizeof(int), 0);
    race_fibers[0] = lacuna_go(cancel_race_recv, NULL);
    race_fibers[1] = lacuna_go(cancel_race_send, NULL);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, cancel_thread, NULL), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK(lacuna_join(race_fibers[0]) == NULL);
    CHECK(lacuna_join(race_fibers[1]) == NULL);
    CHECK_EQ(atomic_load(&sent_n), atomic_load(&got_n));
    CHECK_EQ(atomic_load(&sent_sum), atomic_load(&got_sum));
    CHECK_EQ(lacuna_chan_free(rc), 0);
}

/* A cancel from another thread landing anywhere in a cycle of waits: before the first, inside one,
 * in the instant a wake-up or a timeout ends one, between two. One that comes late loses to
 * whoever ended the wait (a fiber's park outlives its waits: wait.c), one that wins ends exactly
 * that wait, and nothing is received that was not sent. A new pair on two workers each round, the
 * cancels after random delays. */
#define CYCLE_ROUNDS 300
static lacuna_chan *cyc[2];
static _Atomic long cyc_sent, cyc_got;
static _Atomic int cyc_round;
static lacuna_fiber *_Atomic cyc_pair[2];

static void *cycle_recv(void *arg)
{
    (void)arg;
    for (unsigned i = 0;; i++) {
        int v = 0, r;
        if (i % 2) {
            lacuna_select_case k[2] = {{cyc[0], &v, LACUNA_SELECT_RECV},
                                       {cyc[1], &v, LACUNA_SELECT_RECV}};
            size_t which = 2;
            r = lacuna_select(k, 2, lacuna_now_ns() + 50000, &which);
            if (r == 0)
                CHECK(which < 2);
        } else {
            r = lacuna_chan_recv(cyc[0], &v); /* untimed: a send or the cancel ends it */
        }
        if (r == ECANCELED)
            return NULL;
        if (r == 0)
            atomic_fetch_add(&cyc_got, v);
        else
            CHECK_EQ(r, ETIMEDOUT);
    }
}

static void *cycle_send(void *arg)
{
    (void)arg;
    for (int n = 1;; n++) {
        int r = lacuna_chan_send_until(cyc[n % 2], &n, lacuna_now_ns() + 50000);
        if (r == ECANCELED)
            return NULL;
        if (r == 0)
            atomic_fetch_add(&cyc_sent, n);
        else
            CHECK_EQ(r, ETIMEDOUT);
    }
}

static void *cycle_driver(void *arg)
{
    (void)arg;
    for (int round = 1; round <= CYCLE_ROUNDS; round++) {
        atomic_store(&cyc_pair[0], lacuna_go(cycle_recv, NULL));
        atomic_store(&cyc_pair[1], lacuna_go(cycle_send, NULL));
        atomic_store(&cyc_round, round); /* the canceller's go */
        CHECK(lacuna_join(atomic_load(&cyc_pair[0])) == NULL);
        CHECK(lacuna_join(atomic_load(&cyc_pair[1])) == NULL);
        CHECK_EQ(atomic_load(&cyc_sent), atomic_load(&cyc_got));
    }
    return NULL;
}

static void spin_ns(uint64_t ns)
{
    uint64_t end = lacuna_now_ns() + ns;
    while (lacuna_now_ns() < end)
        ;
}

static void *cycle_canceller(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int round = 1; round <= CYCLE_ROUNDS; round++) {
        while (atomic_load(&cyc_round) != round)
            sched_yield();
        /* a quarter at once (before the receiver ran, often), the rest within 200 us */
        spin_ns(rand_r(&seed) % 4 ? (uint64_t)(rand_r(&seed) % 200000) : 0);
        CHECK_EQ(lacuna_cancel(atomic_load(&cyc_pair[0])), 0);
        spin_ns((uint64_t)(rand_r(&seed) % 100000));
        CHECK_EQ(lacuna_cancel(atomic_load(&cyc_pair[1])), 0);
    }
    return NULL;
}

TEST(cancel_lands_anywhere_in_a_cycle_of_waits)
{
    lacuna_set_workers(2);
    cyc[0] = lacuna_chan_make(sizeof(int), 0);
    cyc[1] = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *d = lacuna_go(cycle_driver, NULL);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, cycle_canceller, (void *)(uintptr_t)getpid()), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK(lacuna_join(d) == NULL);
    CHECK(atomic_load(&cyc_got) > 0); /* values really passed, not only cancels */
    CHECK_EQ(lacuna_chan_free(cyc[0]), 0);
    CHECK_EQ(lacuna_chan_free(cyc[1]), 0);
}

/* Sleeps and fd waits cancelled around their deadlines: a cancel that wins a local wait leaves its
 * ending to the worker whose heap holds it, which may end it at once for its deadline; the fiber
 * then runs and leaves the heap while the canceller still works on it. The canceller must take
 * that worker before its compare-and-swap (found by a review: it read it after, a NULL when the
 * fiber had left; TSan names the race here, 3 runs in 3, on the code before the fix). */
#define LOCAL_WAITERS 8
#define LOCAL_ROUNDS  600
static lacuna_fiber *_Atomic locals[LOCAL_WAITERS];
static _Atomic int local_round;
static int local_pipe[2];

static void *local_waiter(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    bool sleeps = (uintptr_t)arg % 2;
    for (;;) {
        uint64_t ns = (uint64_t)(rand_r(&seed) % 20000);
        int r = sleeps ? lacuna_sleep_ns(ns)
                       : lacuna_fd_wait_until(local_pipe[0], POLLIN, lacuna_now_ns() + ns);
        if (r == ECANCELED)
            return NULL;
        CHECK(sleeps ? r == 0 : r == ETIMEDOUT); /* the pipe is never written */
    }
}

static void *local_driver(void *arg)
{
    (void)arg;
    for (int round = 1; round <= LOCAL_ROUNDS; round++) {
        for (int i = 0; i < LOCAL_WAITERS; i++)
            atomic_store(&locals[i],
                         lacuna_go(local_waiter, (void *)(uintptr_t)(round * LOCAL_WAITERS + i)));
        atomic_store(&local_round, round);
        for (int i = 0; i < LOCAL_WAITERS; i++)
            CHECK(lacuna_join(atomic_load(&locals[i])) == NULL);
    }
    return NULL;
}

static void *local_canceller(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int round = 1; round <= LOCAL_ROUNDS; round++) {
        while (atomic_load(&local_round) != round)
            sched_yield();
        for (int i = 0; i < LOCAL_WAITERS; i++) {
            spin_ns((uint64_t)(rand_r(&seed) % 30000));
            CHECK_EQ(lacuna_cancel(atomic_load(&locals[i])), 0);
        }
    }
    return NULL;
}

TEST(local_waits_cancelled_around_their_deadlines)
{
    CHECK_EQ(pipe(local_pipe), 0);
    lacuna_set_workers(2);
    lacuna_fiber *d = lacuna_go(local_driver, NULL);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, local_canceller, (void *)(uintptr_t)getpid()), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK(lacuna_join(d) == NULL);
    close(local_pipe[0]);
    close(local_pipe[1]);
}

/* 100,000 fibers blocked on channels (unbuffered receives, sends, selects), cancelled by a fiber:
 * every one is joined with its ECANCELED, and every stack is back in the pool. */
static lacuna_chan *mass[3];
static _Atomic long mass_blocked;

static void *mass_victim(void *arg)
{
    int kind = (int)((uintptr_t)arg % 3), v = 0, r;
    atomic_fetch_add(&mass_blocked, 1);
    if (kind == 0) {
        r = lacuna_chan_recv(mass[0], &v);
    } else if (kind == 1) {
        r = lacuna_chan_send(mass[1], &v);
    } else {
        lacuna_select_case k[2] = {{mass[0], &v, LACUNA_SELECT_RECV},
                                   {mass[2], &v, LACUNA_SELECT_RECV}};
        size_t i;
        r = lacuna_select(k, 2, LACUNA_FOREVER, &i);
    }
    return (void *)(uintptr_t)(r == ECANCELED);
}

static lacuna_fiber **mass_f;
static long mass_n;

static void *mass_canceller(void *arg)
{
    (void)arg;
    while (atomic_load(&mass_blocked) < mass_n)
        lacuna_sleep_ms(1);
    for (long i = 0; i < mass_n; i++)
        CHECK_EQ(lacuna_cancel(mass_f[i]), 0);
    long ok = 0;
    for (long i = 0; i < mass_n; i++)
        ok += (long)(uintptr_t)lacuna_join(mass_f[i]);
    return (void *)ok;
}

TEST(cancel_100000_blocked_fibers)
{
    mass_n = LT_SANITIZED ? 10000 : 100000;
    for (int j = 0; j < 3; j++)
        mass[j] = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber_opts o = {.stack_size = 16384}; /* small stacks: 100,000 of them */
    lacuna_pool *pool = lacuna_fiber_pool_for(16384);
    CHECK(pool != NULL);
    lacuna_stats st0;
    lacuna_pool_stats(pool, &st0);
    mass_f = calloc((size_t)mass_n, sizeof *mass_f);
    CHECK(mass_f != NULL);
    for (long i = 0; i < mass_n; i++) {
        mass_f[i] = lacuna_go_opts(&o, mass_victim, (void *)(uintptr_t)i);
        CHECK(mass_f[i] != NULL);
    }
    lacuna_fiber *c = lacuna_go(mass_canceller, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ((long)lacuna_join(c), mass_n);
    lacuna_stats st1;
    lacuna_pool_stats(pool, &st1);
    CHECK_EQ(st1.live, st0.live);
    for (int j = 0; j < 3; j++)
        CHECK_EQ(lacuna_chan_free(mass[j]), 0);
    free(mass_f);
}

/* Semaphore posts against waiters with short deadlines on two workers: no unit is lost or
 * created (taken + left == posted). */
static _Atomic long taken;

static void *sem_taker(void *arg)
{
    (void)arg;
    for (int n = 0; n < 3000; n++) {
        int r = lacuna_sem_wait_until(&sem, lacuna_now_ns() + 10000 * (uint64_t)(n % 4));
        if (r == 0)
            atomic_fetch_add(&taken, 1);
        else
            CHECK_EQ(r, ETIMEDOUT);
    }
    return NULL;
}

static void *sem_poster(void *arg)
{
    (void)arg;
    for (int n = 0; n < 2000; n++) {
        CHECK_EQ(lacuna_sem_post(&sem), 0);
        if (n % 8 == 0)
            lacuna_yield();
    }
    return NULL;
}

TEST(sem_timeout_races_post_two_workers)
{
    lacuna_set_workers(2);
    CHECK_EQ(lacuna_sem_init(&sem, 0), 0);
    lacuna_fiber *f[4] = {lacuna_go(sem_taker, NULL), lacuna_go(sem_taker, NULL),
                          lacuna_go(sem_poster, NULL), lacuna_go(sem_poster, NULL)};
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < 4; i++)
        CHECK(lacuna_join(f[i]) == NULL);
    unsigned long left = 0;
    CHECK_EQ(lacuna_sem_value(&sem, &left), 0);
    CHECK_EQ(atomic_load(&taken) + (long)left, 4000);
    CHECK_EQ(lacuna_sem_destroy(&sem), 0); /* nobody queued */
}
