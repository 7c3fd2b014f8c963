/* <lacuna/sync.h>: try-send/try-recv and channel length, mutex, cond, waitgroup, semaphore,
 * fiber-local storage and the async wake-up handle, each on two workers and on one, from fibers
 * and from plain threads. Outcomes and order are asserted, never speed. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const unsigned worker_counts[] = {2, 1};
#define FOR_WORKERS(w) for (size_t w##_i = 0; w##_i < 2 && (w = worker_counts[w##_i], 1); w##_i++)

/* ---- try-send / try-recv, len, cap ------------------------------------------------------------
 */

TEST(chan_try_ops_thread_context)
{
    lacuna_chan *c = lacuna_chan_make(sizeof(int), 2);
    int v = 1, out = 0;
    CHECK_EQ(lacuna_chan_cap(c), 2);
    CHECK_EQ(lacuna_chan_len(c), 0);
    CHECK_EQ(lacuna_chan_try_recv(c, &out), EAGAIN);
    CHECK_EQ(lacuna_chan_try_send(c, &v), 0);
    v = 2;
    CHECK_EQ(lacuna_chan_try_send(c, &v), 0);
    CHECK_EQ(lacuna_chan_len(c), 2);
    CHECK_EQ(lacuna_chan_try_send(c, &v), EAGAIN);
    CHECK_EQ(lacuna_chan_len(c), 2);
    CHECK_EQ(lacuna_chan_try_recv(c, &out), 0);
    CHECK_EQ(out, 1);
    CHECK_EQ(lacuna_chan_len(c), 1);
    CHECK_EQ(lacuna_chan_close(c), 0);
    CHECK_EQ(lacuna_chan_try_send(c, &v), EPIPE);
    CHECK_EQ(lacuna_chan_try_recv(c, &out), 0); /* drains first */
    CHECK_EQ(out, 2);
    CHECK_EQ(lacuna_chan_try_recv(c, &out), EPIPE);
    CHECK_EQ(lacuna_chan_free(c), 0);

    lacuna_chan *u = lacuna_chan_make(sizeof(int), 0);
    CHECK_EQ(lacuna_chan_cap(u), 0);
    CHECK_EQ(lacuna_chan_try_send(u, &v), EAGAIN); /* no receiver waits */
    CHECK_EQ(lacuna_chan_try_recv(u, &out), EAGAIN);
    CHECK_EQ(lacuna_chan_free(u), 0);

    CHECK_EQ(lacuna_chan_try_send(NULL, &v), EINVAL);
    CHECK_EQ(lacuna_chan_try_recv(NULL, &out), EINVAL);
    CHECK_EQ(lacuna_chan_len(NULL), 0);
    CHECK_EQ(lacuna_chan_cap(NULL), 0);
}

#define TRY_N 20000
static lacuna_chan *try_chan;
static _Atomic long try_sum;

static void *try_producer(void *arg)
{
    (void)arg;
    for (int i = 1; i <= TRY_N; i++) {
        int r;
        while ((r = lacuna_chan_try_send(try_chan, &i)) == EAGAIN)
            lacuna_yield();
        CHECK_EQ(r, 0);
    }
    return NULL;
}

static void *try_consumer(void *arg)
{
    (void)arg;
    long sum = 0;
    for (int got = 0; got < TRY_N;) {
        int v, r = lacuna_chan_try_recv(try_chan, &v);
        if (r == EAGAIN) {
            lacuna_yield();
            continue;
        }
        CHECK_EQ(r, 0);
        CHECK(lacuna_chan_len(try_chan) <= lacuna_chan_cap(try_chan));
        sum += v;
        got++;
    }
    atomic_fetch_add(&try_sum, sum);
    return NULL;
}

static void *unbuffered_waiting_receiver(void *arg)
{
    int v = 0;
    CHECK_EQ(lacuna_chan_recv(arg, &v), 0);
    CHECK_EQ(v, 7);
    return NULL;
}

TEST(chan_try_ops_across_workers)
{
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        try_chan = lacuna_chan_make(sizeof(int), 8);
        atomic_store(&try_sum, 0);
        for (int i = 0; i < 2; i++) {
            CHECK_EQ(lacuna_detach(lacuna_go(try_producer, NULL)), 0);
            CHECK_EQ(lacuna_detach(lacuna_go(try_consumer, NULL)), 0);
        }
        CHECK_EQ(lacuna_run(), 0);
        CHECK_EQ(atomic_load(&try_sum), 2L * TRY_N * (TRY_N + 1) / 2);
        CHECK_EQ(lacuna_chan_len(try_chan), 0);
        CHECK_EQ(lacuna_chan_free(try_chan), 0);
    }
    /* An unbuffered try-send succeeds when a receiver waits. */
    lacuna_chan *u = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *r = lacuna_go(unbuffered_waiting_receiver, u);
    CHECK_EQ(lacuna_set_workers(1), 0);
    int v = 7;
    CHECK_EQ(lacuna_chan_try_send(u, &v), EAGAIN); /* the receiver has not run yet */
    lacuna_yield();                                /* thread context: a no-op */
    CHECK_EQ(lacuna_detach(r), 0);
    /* Run it until it waits: a second fiber sends once the receiver is parked. */
    CHECK_EQ(lacuna_run(), EDEADLK);
    CHECK_EQ(lacuna_chan_try_send(u, &v), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(lacuna_chan_free(u), 0);
}
