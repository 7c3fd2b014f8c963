/* lacuna_select: bad input, the non-blocking form, fairness among ready cases, selects across
 * workers (receivers and senders, closed channels, disabled cases), a plain thread selecting,
 * and a deadline racing a wake-up on another worker. Outcomes and counts are asserted, never
 * speed; deadlines have wide margins. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MS 1000000ull

static lacuna_select_case recv_case(lacuna_chan *c, void *elem)
{
    lacuna_select_case k = {.chan = c, .elem = elem, .op = LACUNA_SELECT_RECV};
    return k;
}

static lacuna_select_case send_case(lacuna_chan *c, void *elem)
{
    lacuna_select_case k = {.chan = c, .elem = elem, .op = LACUNA_SELECT_SEND};
    return k;
}

TEST(select_bad_input)
{
    lacuna_chan *c = lacuna_chan_make(sizeof(int), 1);
    int v = 0;
    size_t i = 99;
    lacuna_select_case k[2] = {recv_case(c, &v), recv_case(NULL, &v)};
    CHECK_EQ(lacuna_select(NULL, 1, LACUNA_NOWAIT, &i), EINVAL);
    CHECK_EQ(lacuna_select(k, 1, LACUNA_NOWAIT, NULL), EINVAL);
    const int bad_ops[] = {7, 0, 3, -1, INT_MIN, INT_MAX}; /* every side of SEND..RECV */
    for (size_t b = 0; b < sizeof bad_ops / sizeof *bad_ops; b++) {
        k[0].op = bad_ops[b];
        CHECK_EQ(lacuna_select(k, 1, LACUNA_NOWAIT, &i), EINVAL);
        CHECK_EQ(lacuna_select(k, 2, LACUNA_NOWAIT, &i), EINVAL);
    }
    k[0] = recv_case(c, NULL);
    CHECK_EQ(lacuna_select(k, 1, LACUNA_NOWAIT, &i), EINVAL);
    k[0] = recv_case(c, &v);
    /* nothing that could ever end it */
    CHECK_EQ(lacuna_select(NULL, 0, LACUNA_FOREVER, &i), EINVAL);
    CHECK_EQ(lacuna_select(&k[1], 1, LACUNA_FOREVER, &i), EINVAL);
    /* with a deadline an empty select is a sleep */
    CHECK_EQ(lacuna_select(NULL, 0, LACUNA_NOWAIT, &i), ETIMEDOUT);
    uint64_t t0 = lacuna_now_ns();
    CHECK_EQ(lacuna_select(&k[1], 1, t0 + 2 * MS, &i), ETIMEDOUT);
    CHECK(lacuna_now_ns() >= t0 + 2 * MS);
    CHECK_EQ(i, 99);
    /* a disabled case beside a ready one */
    int one = 1;
    CHECK_EQ(lacuna_chan_send(c, &one), 0);
    CHECK_EQ(lacuna_select(k, 2, LACUNA_FOREVER, &i), 0);
    CHECK_EQ(i, 0);
    CHECK_EQ(v, 1);
    CHECK_EQ(lacuna_chan_free(c), 0);
}

TEST(select_nowait_thread_context)
{
    lacuna_chan *a = lacuna_chan_make(sizeof(int), 1), *b = lacuna_chan_make(sizeof(int), 1);
    int ra = 0, rb = 0, sv = 5;
    size_t i = 99;
    lacuna_select_case k[2] = {recv_case(a, &ra), recv_case(b, &rb)};
    CHECK_EQ(lacuna_select(k, 2, LACUNA_NOWAIT, &i), ETIMEDOUT);
    CHECK_EQ(i, 99);
    /* a send case is ready while the buffer has room */
    lacuna_select_case s[2] = {send_case(a, &sv), recv_case(b, &rb)};
    CHECK_EQ(lacuna_select(s, 2, LACUNA_NOWAIT, &i), 0);
    CHECK_EQ(i, 0);
    CHECK_EQ(lacuna_chan_len(a), 1);
    CHECK_EQ(lacuna_select(s, 2, LACUNA_NOWAIT, &i), ETIMEDOUT); /* full now, b empty */
    CHECK_EQ(lacuna_select(k, 2, LACUNA_NOWAIT, &i), 0);
    CHECK_EQ(i, 0);
    CHECK_EQ(ra, 5);
    /* closed: a receive from a drained closed channel and a send to it are ready, EPIPE */
    CHECK_EQ(lacuna_chan_close(b), 0);
    CHECK_EQ(lacuna_select(k, 2, LACUNA_NOWAIT, &i), EPIPE);
    CHECK_EQ(i, 1);
    lacuna_select_case sb = send_case(b, &sv);
    CHECK_EQ(lacuna_select(&sb, 1, LACUNA_FOREVER, &i), EPIPE);
    CHECK_EQ(i, 0);
    CHECK_EQ(lacuna_chan_free(a), 0);
    CHECK_EQ(lacuna_chan_free(b), 0);
}

/* Among ready cases each is chosen about as often: none starves. Every channel always has an
 * element, so all cases (or the first two) are ready at every select. */
static void fairness(unsigned ready)
{
    enum { K = 4, N = 4000 };
    lacuna_chan *c[K];
    int v[K];
    lacuna_select_case k[K];
    for (int j = 0; j < K; j++) {
        c[j] = lacuna_chan_make(sizeof(int), 1);
        k[j] = recv_case(c[j], &v[j]);
        if ((unsigned)j < ready)
            CHECK_EQ(lacuna_chan_send(c[j], &j), 0);
    }
    unsigned count[K] = {0};
    for (int n = 0; n < N; n++) {
        size_t i = 99;
        CHECK_EQ(lacuna_select(k, K, LACUNA_NOWAIT, &i), 0);
        CHECK(i < ready);
        CHECK_EQ(v[i], (int)i);
        count[i]++;
        CHECK_EQ(lacuna_chan_send(c[i], &v[i]), 0); /* ready again */
    }
    for (unsigned j = 0; j < ready; j++)
        CHECK(count[j] > N / ready / 2); /* expected N / ready; binomial spread is ~1 % of it */
    for (int j = 0; j < K; j++) {
        CHECK_EQ(lacuna_chan_close(c[j]), 0);
        CHECK_EQ(lacuna_chan_free(c[j]), 0);
    }
}

static void *fairness_fiber(void *arg)
{
    fairness((unsigned)(uintptr_t)arg);
    return NULL;
}

TEST(select_fair_among_ready_cases)
{
    fairness(4);
    fairness(2);
    lacuna_fiber *f = lacuna_go(fairness_fiber, (void *)(uintptr_t)3);
    CHECK(f != NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(f) == NULL);
}

/* Producers on four unbuffered channels, consumers selecting over all four: every value arrives
 * exactly once. A closer closes the channels once every producer is done; a consumer disables a
 * case whose channel is closed (chan = NULL) and stops when all are. */
enum { NCHAN = 4, NCONS = 3, PER = 3000 };
static lacuna_chan *xc[NCHAN];
static _Atomic long xsum, xcount;
static lacuna_waitgroup xprod;

static void *x_producer(void *arg)
{
    int j = (int)(uintptr_t)arg;
    for (int n = 1; n <= PER; n++) {
        int v = j * 100000 + n;
        CHECK_EQ(lacuna_chan_send(xc[j], &v), 0);
    }
    CHECK_EQ(lacuna_waitgroup_done(&xprod), 0);
    return NULL;
}

static void *x_consumer(void *arg)
{
    (void)arg;
    int v[NCHAN];
    lacuna_select_case k[NCHAN];
    for (int j = 0; j < NCHAN; j++)
        k[j] = recv_case(xc[j], &v[j]);
    unsigned open = NCHAN;
    while (open > 0) {
        size_t i = 99;
        int r = lacuna_select(k, NCHAN, LACUNA_FOREVER, &i);
        CHECK(i < NCHAN);
        if (r == EPIPE) {
            k[i].chan = NULL; /* closed: disable it */
            open--;
            continue;
        }
        CHECK_EQ(r, 0);
        CHECK_EQ(v[i] / 100000, (int)i);
        atomic_fetch_add(&xsum, v[i]);
        atomic_fetch_add(&xcount, 1);
    }
    return NULL;
}

static void *x_closer(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_waitgroup_wait(&xprod), 0);
    for (int j = 0; j < NCHAN; j++)
        CHECK_EQ(lacuna_chan_close(xc[j]), 0);
    return NULL;
}

TEST(select_across_workers)
{
    for (int j = 0; j < NCHAN; j++)
        xc[j] = lacuna_chan_make(sizeof(int), 0);
    CHECK_EQ(lacuna_waitgroup_add(&xprod, NCHAN), 0);
    lacuna_fiber *f[NCHAN + NCONS + 1];
    int nf = 0;
    for (int j = 0; j < NCONS; j++)
        f[nf++] = lacuna_go(x_consumer, NULL);
    for (int j = 0; j < NCHAN; j++)
        f[nf++] = lacuna_go(x_producer, (void *)(uintptr_t)j);
    f[nf++] = lacuna_go(x_closer, NULL);
    CHECK_EQ(lacuna_run(), 0);
    for (int j = 0; j < nf; j++)
        CHECK(lacuna_join(f[j]) == NULL);
    long want = 0;
    for (int j = 0; j < NCHAN; j++)
        for (int n = 1; n <= PER; n++)
            want += j * 100000 + n;
    CHECK_EQ(atomic_load(&xcount), NCHAN * PER);
    CHECK_EQ(atomic_load(&xsum), want);
    for (int j = 0; j < NCHAN; j++)
        CHECK_EQ(lacuna_chan_free(xc[j]), 0);
}

/* Selects with send cases and receive cases on the same channels, from both ends: a fiber that
 * selects {send a, recv b} against one that selects {recv a, send b}; each round exactly one
 * transfer happens, in one direction or the other, and both agree which. */
static lacuna_chan *pa, *pb;
enum { ROUNDS = 4000 };
static int sides[2][ROUNDS];

static void *mixed_side(void *arg)
{
    int me = (int)(uintptr_t)arg;
    for (int n = 0; n < ROUNDS; n++) {
        int out = me * ROUNDS + n, in = -1;
        lacuna_select_case k[2];
        if (me == 0) {
            k[0] = send_case(pa, &out);
            k[1] = recv_case(pb, &in);
        } else {
            k[0] = recv_case(pa, &in);
            k[1] = send_case(pb, &out);
        }
        size_t i = 99;
        CHECK_EQ(lacuna_select(k, 2, LACUNA_FOREVER, &i), 0);
        /* which channel moved: a (i == 0 on both sides) or b (i == 1 on both) */
        sides[me][n] = (int)i;
        if (k[i].op == LACUNA_SELECT_RECV)
            CHECK_EQ(in, (1 - me) * ROUNDS + n);
    }
    return NULL;
}

TEST(select_send_and_recv_cases_both_ends)
{
    pa = lacuna_chan_make(sizeof(int), 0);
    pb = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *a = lacuna_go(mixed_side, (void *)0), *b = lacuna_go(mixed_side, (void *)1);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(a) == NULL);
    CHECK(lacuna_join(b) == NULL);
    for (int n = 0; n < ROUNDS; n++)
        CHECK_EQ(sides[0][n], sides[1][n]);
    CHECK_EQ(lacuna_chan_free(pa), 0);
    CHECK_EQ(lacuna_chan_free(pb), 0);
}

/* The same channel in two cases, and a select that blocks before its value comes. */
static lacuna_chan *dup_c;

static void *dup_sender(void *arg)
{
    (void)arg;
    lacuna_sleep_ms(1);
    int v = 42;
    CHECK_EQ(lacuna_chan_send(dup_c, &v), 0);
    return NULL;
}

static void *dup_selector(void *arg)
{
    (void)arg;
    int v1 = 0, v2 = 0;
    lacuna_select_case k[2] = {recv_case(dup_c, &v1), recv_case(dup_c, &v2)};
    size_t i = 99;
    CHECK_EQ(lacuna_select(k, 2, LACUNA_FOREVER, &i), 0);
    CHECK(i < 2);
    CHECK_EQ(i == 0 ? v1 : v2, 42);
    CHECK_EQ(i == 0 ? v2 : v1, 0);
    return NULL;
}

TEST(select_same_channel_twice)
{
    dup_c = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *s = lacuna_go(dup_sender, NULL);
    int v1 = 0, v2 = 0;
    lacuna_select_case k[2] = {recv_case(dup_c, &v1), recv_case(dup_c, &v2)};
    size_t i = 99;
    /* thread context with fibers to run: EPERM, as a channel receive */
    CHECK_EQ(lacuna_select(k, 2, LACUNA_FOREVER, &i), EPERM);
    lacuna_fiber *r = lacuna_go(dup_selector, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(r) == NULL);
    CHECK(lacuna_join(s) == NULL);
    CHECK_EQ(lacuna_chan_free(dup_c), 0); /* the losing case's waiter is gone too */
}

/* A plain thread (no runtime of its own) selects and blocks on a futex; fibers feed it. */
static lacuna_chan *th_c[2];

static void *thread_selector(void *arg)
{
    (void)arg;
    int v[2];
    lacuna_select_case k[2] = {recv_case(th_c[0], &v[0]), recv_case(th_c[1], &v[1])};
    long sum = 0;
    for (int n = 0; n < 200; n++) {
        size_t i = 99;
        CHECK_EQ(lacuna_select(k, 2, LACUNA_FOREVER, &i), 0);
        sum += v[i];
    }
    size_t i = 99;
    uint64_t t0 = lacuna_now_ns();
    CHECK_EQ(lacuna_select(k, 2, t0 + 3 * MS, &i), ETIMEDOUT); /* the futex's deadline */
    CHECK(lacuna_now_ns() >= t0 + 3 * MS);
    return (void *)sum;
}

static void *thread_feeder(void *arg)
{
    int j = (int)(uintptr_t)arg;
    for (int n = 1; n <= 100; n++)
        CHECK_EQ(lacuna_chan_send(th_c[j], &n), 0);
    return NULL;
}

TEST(select_from_plain_thread)
{
    th_c[0] = lacuna_chan_make(sizeof(int), 0);
    th_c[1] = lacuna_chan_make(sizeof(int), 3);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, thread_selector, NULL), 0);
    lacuna_fiber *a = lacuna_go(thread_feeder, (void *)0), *b = lacuna_go(thread_feeder, (void *)1);
    int r;
    while ((r = lacuna_run()) == EDEADLK) /* the thread may not be blocked yet */
        usleep(100);
    CHECK_EQ(r, 0);
    CHECK(lacuna_join(a) == NULL);
    CHECK(lacuna_join(b) == NULL);
    void *sum;
    CHECK_EQ(pthread_join(t, &sum), 0);
    CHECK_EQ((long)sum, 2 * 5050);
    CHECK_EQ(lacuna_chan_free(th_c[0]), 0);
    CHECK_EQ(lacuna_chan_free(th_c[1]), 0);
}

/* A select with a short deadline against a sender with a short deadline, on another worker,
 * many times: each value is either received (both report success) or not (both time out): never
 * lost, never duplicated. */
enum { RACES = 3000 };
static lacuna_chan *race_c, *race_d;
static _Atomic long race_sent, race_got, race_sent_n, race_got_n;

static void *race_selector(void *arg)
{
    (void)arg;
    int v = 0, w = 0;
    lacuna_select_case k[2] = {recv_case(race_c, &v), recv_case(race_d, &w)};
    for (int n = 0; n < RACES; n++) {
        size_t i = 99;
        int r = lacuna_select(k, 2, lacuna_now_ns() + 20000 * (uint64_t)(n % 7), &i);
        if (r == 0) {
            CHECK_EQ(i, 0);
            atomic_fetch_add(&race_got, v);
            atomic_fetch_add(&race_got_n, 1);
        } else {
            CHECK_EQ(r, ETIMEDOUT);
        }
        if (n % 64 == 0)
            lacuna_yield();
    }
    return NULL;
}

static void *race_sender(void *arg)
{
    (void)arg;
    for (int n = 1; n <= RACES; n++) {
        int r = lacuna_chan_send_until(race_c, &n, lacuna_now_ns() + 20000 * (uint64_t)(n % 5));
        if (r == 0) {
            atomic_fetch_add(&race_sent, n);
            atomic_fetch_add(&race_sent_n, 1);
        } else {
            CHECK_EQ(r, ETIMEDOUT);
        }
    }
    return NULL;
}

TEST(select_deadline_races_wake_across_workers)
{
    lacuna_set_workers(2);
    race_c = lacuna_chan_make(sizeof(int), 0);
    race_d = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *r = lacuna_go(race_selector, NULL), *s = lacuna_go(race_sender, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(r) == NULL);
    CHECK(lacuna_join(s) == NULL);
    CHECK_EQ(atomic_load(&race_sent_n), atomic_load(&race_got_n));
    CHECK_EQ(atomic_load(&race_sent), atomic_load(&race_got));
    CHECK_EQ(lacuna_chan_free(race_c), 0); /* no waiter left behind */
    CHECK_EQ(lacuna_chan_free(race_d), 0);
}

/* More cases than fit on the stack (the waiters are allocated) and more than the fast path's
 * 64 (a random permutation instead): the ready case is found, and a blocked select is woken by
 * the one case that becomes ready. */
enum { MANY = 100 };
static lacuna_chan *many_c[MANY];

static void *many_sender(void *arg)
{
    int j = (int)(uintptr_t)arg;
    lacuna_sleep_ms(1);
    CHECK_EQ(lacuna_chan_send(many_c[j], &j), 0);
    return NULL;
}

static void *many_selector(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    int v[MANY];
    lacuna_select_case k[MANY];
    for (size_t j = 0; j < n; j++)
        k[j] = recv_case(j % 5 == 4 ? NULL : many_c[j], &v[j]);
    size_t i = 999;
    CHECK_EQ(lacuna_select(k, n, LACUNA_NOWAIT, &i), ETIMEDOUT);
    lacuna_fiber *s = lacuna_go(many_sender, (void *)(uintptr_t)(n - 3));
    CHECK_EQ(lacuna_select(k, n, LACUNA_FOREVER, &i), 0);
    CHECK_EQ(i, n - 3);
    CHECK_EQ(v[i], (int)(n - 3));
    CHECK(lacuna_join(s) == NULL);
    int one = 1;
    CHECK_EQ(lacuna_chan_try_send(many_c[1], &one), 0);
    CHECK_EQ(lacuna_select(k, n, LACUNA_NOWAIT, &i), 0);
    CHECK_EQ(i, 1);
    return NULL;
}

TEST(select_many_cases)
{
    for (int j = 0; j < MANY; j++)
        many_c[j] = lacuna_chan_make(sizeof(int), 1);
    size_t sizes[] = {20, MANY};
    for (int t = 0; t < 2; t++) {
        lacuna_fiber *f = lacuna_go(many_selector, (void *)(uintptr_t)sizes[t]);
        CHECK_EQ(lacuna_run(), 0);
        CHECK(lacuna_join(f) == NULL);
    }
    for (int j = 0; j < MANY; j++)
        CHECK_EQ(lacuna_chan_free(many_c[j]), 0); /* no waiter of either select left */
}
