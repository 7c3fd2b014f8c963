/* Scheduling order: a fiber made ready by a channel or a join runs next (hand-off), fibers it
 * displaces run before the queue, and no pair of fibers handing off to each other, nor a fiber
 * that keeps yielding, can starve anyone else. Counts scheduling decisions, never wall time. */
#define _GNU_SOURCE
#include "test.h"

#include <stdatomic.h>
#include <stdint.h>

#define RUNNEXT_MAX                                                                                \
    64 /* src/internal.h LAC_RUNNEXT_MAX: hand-offs in a row while the queue waits */

static char order[64];
static size_t norder;

static void mark(char c)
{
    if (norder < sizeof order - 1)
        order[norder++] = c;
}

/* ---- hand-off order ------------------------------------------------------------------------- */

static lacuna_chan *ch;

static void *receiver(void *arg)
{
    int v;
    CHECK_EQ(lacuna_chan_recv(ch, &v), 0);
    mark((char)(uintptr_t)arg);
    return NULL;
}

static void *bystander(void *arg)
{
    mark((char)(uintptr_t)arg);
    return NULL;
}

static void *sender(void *arg)
{
    (void)arg;
    /* Both receivers are parked on ch; the bystander waits in the queue. */
    lacuna_fiber *b = lacuna_go(bystander, (void *)(uintptr_t)'B');
    (void)b;
    int v = 1;
    CHECK_EQ(lacuna_chan_send(ch, &v), 0); /* readies r1: it runs next */
    CHECK_EQ(lacuna_chan_send(ch, &v), 0); /* readies r2: r2 next, r1 right after */
    mark('S');
    return NULL;
}

/* Order is one worker's promise (and the record is plain): with two, the other steals. */
TEST(woken_fibers_run_before_the_queue)
{
    CHECK_EQ(lacuna_set_workers(1), 0);
    ch = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *r1 = lacuna_go(receiver, (void *)(uintptr_t)'1');
    lacuna_fiber *r2 = lacuna_go(receiver, (void *)(uintptr_t)'2');
    lacuna_fiber *s = lacuna_go(sender, NULL);
    CHECK_EQ(lacuna_run(), 0);
    order[norder] = '\0';
    /* The bystander was spawned first and ran at once (spawned fibers run immediately, the
     * spawner right after). Then the sender ends, and the fibers it woke run before anything
     * queued: the last woken first, then the one it displaced. */
    if (strcmp(order, "BS21") != 0) {
        fprintf(stderr, "order %s, want BS21\n", order);
        CHECK(0);
    }
    CHECK(lacuna_join(r1) == NULL && lacuna_join(r2) == NULL && lacuna_join(s) == NULL);
    CHECK_EQ(lacuna_chan_free(ch), 0);
}

/* A fiber joining another runs as soon as the joined one ends. */
static void *quick(void *arg)
{
    (void)arg;
    lacuna_yield();
    mark('q');
    return NULL;
}

static void *joiner(void *arg)
{
    lacuna_fiber *q = arg;
    lacuna_join(q);
    mark('J');
    return NULL;
}

TEST(joiner_runs_when_the_joined_fiber_ends)
{
    CHECK_EQ(lacuna_set_workers(1), 0);
    norder = 0;
    lacuna_fiber *q = lacuna_go(quick, NULL);
    lacuna_fiber *j = lacuna_go(joiner, q);
    lacuna_fiber *b[3];
    for (int i = 0; i < 3; i++)
        b[i] = lacuna_go(bystander, (void *)(uintptr_t)'b');
    CHECK_EQ(lacuna_run(), 0);
    order[norder] = '\0';
    /* q yields behind the queued fibers; when it ends, its joiner runs next. */
    CHECK(strstr(order, "qJ") != NULL);
    CHECK(lacuna_join(j) == NULL);
    for (int i = 0; i < 3; i++)
        CHECK(lacuna_join(b[i]) == NULL);
}

/* ---- fairness ------------------------------------------------------------------------------- */

static lacuna_chan *ping, *pong;
static _Atomic int third_ran; /* read by fibers that may run on another worker */
static _Atomic long exchanges, exchanges_before_third = -1;

static void *ping_side(void *arg)
{
    (void)arg;
    int v = 0;
    while ((!third_ran || exchanges < 1000) && exchanges < 100000) { /* ends even if starving */
        CHECK_EQ(lacuna_chan_send(ping, &v), 0);
        CHECK_EQ(lacuna_chan_recv(pong, &v), 0);
        exchanges++;
    }
    v = -1;
    CHECK_EQ(lacuna_chan_send(ping, &v), 0);
    return NULL;
}

static void *pong_side(void *arg)
{
    (void)arg;
    for (;;) {
        int v;
        CHECK_EQ(lacuna_chan_recv(ping, &v), 0);
        if (v < 0)
            return NULL;
        CHECK_EQ(lacuna_chan_send(pong, &v), 0);
    }
}

static void *third(void *arg)
{
    (void)arg;
    exchanges_before_third = exchanges;
    third_ran = 1;
    return NULL;
}

static void *start_pair_then_third(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_detach(lacuna_go(pong_side, NULL)), 0);
    CHECK_EQ(lacuna_detach(lacuna_go(ping_side, NULL)), 0);
    /* The pair is handing off to each other now; the third only waits in the queue. */
    CHECK_EQ(lacuna_detach(lacuna_go(third, NULL)), 0);
    return NULL;
}

/* The bound is one worker's (RUNNEXT_MAX in a row, counted by that worker): with two, the other
 * may take the queued fiber and then lose its CPU while the pair goes on exchanging. */
TEST(a_handoff_pair_cannot_starve_the_queue)
{
    CHECK_EQ(lacuna_set_workers(1), 0);
    ping = lacuna_chan_make(sizeof(int), 0);
    pong = lacuna_chan_make(sizeof(int), 0);
    /* From a fiber, so the pair is already running when the third is queued behind it. */
    CHECK_EQ(lacuna_detach(lacuna_go(start_pair_then_third, NULL)), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(third_ran);
    fprintf(stderr, "exchanges before the third fiber ran: %ld\n", exchanges_before_third);
    /* Each exchange is two hand-offs: the queue's head runs within RUNNEXT_MAX of them. */
    CHECK(exchanges_before_third >= 0 && exchanges_before_third <= RUNNEXT_MAX);
    CHECK_EQ(lacuna_chan_free(ping), 0);
    CHECK_EQ(lacuna_chan_free(pong), 0);
}

/* A fiber that yields forever does not starve a sleeper: its timer fires and it runs. */
static _Atomic int slept;

static void *sleeper(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_sleep_ms(1), 0);
    slept = 1;
    return NULL;
}

static void *spinner(void *arg)
{
    long *yields = arg;
    while (!slept && *yields < 100000000)
        lacuna_yield(), (*yields)++;
    return NULL;
}

TEST(a_yield_loop_cannot_starve_timers)
{
    long yields = 0;
    CHECK_EQ(lacuna_detach(lacuna_go(sleeper, NULL)), 0);
    CHECK_EQ(lacuna_detach(lacuna_go(spinner, &yields)), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(slept); /* the sleeper woke while the spinner was still yielding */
    CHECK(yields < 100000000);
}

/* A hand-off displaced onto the stack of hand-offs is not starved either: A wakes C, then hands
 * off to B, which displaces C under it; then A and B hand off to each other, and nothing else is
 * queued. */
static lacuna_chan *wake_c, *ab, *ba;
static _Atomic int c_ran;
static _Atomic long handoffs, handoffs_before_c = -1;

static void *side_a(void *arg)
{
    (void)arg;
    int v = 0;
    CHECK_EQ(lacuna_chan_send(wake_c, &v), 0);                 /* C: runnext */
    while ((!c_ran || handoffs < 1000) && handoffs < 100000) { /* ends even if starving */
        CHECK_EQ(lacuna_chan_send(ab, &v), 0);                 /* B: runnext, C under it */
        CHECK_EQ(lacuna_chan_recv(ba, &v), 0);
        handoffs++;
    }
    v = -1;
    CHECK_EQ(lacuna_chan_send(ab, &v), 0);
    return NULL;
}

static void *side_b(void *arg)
{
    (void)arg;
    for (;;) {
        int v;
        CHECK_EQ(lacuna_chan_recv(ab, &v), 0);
        if (v < 0)
            return NULL;
        CHECK_EQ(lacuna_chan_send(ba, &v), 0);
    }
}

static void *side_c(void *arg)
{
    (void)arg;
    int v;
    CHECK_EQ(lacuna_chan_recv(wake_c, &v), 0);
    handoffs_before_c = handoffs;
    c_ran = 1;
    return NULL;
}

/* One worker, as above: the bound counts one worker's hand-offs. */
TEST(a_handoff_pair_cannot_starve_a_displaced_handoff)
{
    CHECK_EQ(lacuna_set_workers(1), 0);
    wake_c = lacuna_chan_make(sizeof(int), 0);
    ab = lacuna_chan_make(sizeof(int), 0);
    ba = lacuna_chan_make(sizeof(int), 0);
    CHECK_EQ(lacuna_detach(lacuna_go(side_b, NULL)), 0); /* parks on ab */
    CHECK_EQ(lacuna_detach(lacuna_go(side_c, NULL)), 0); /* parks on wake_c */
    CHECK_EQ(lacuna_detach(lacuna_go(side_a, NULL)), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(c_ran);
    fprintf(stderr, "hand-offs before the displaced fiber ran: %ld\n", handoffs_before_c);
    CHECK(handoffs_before_c >= 0 && handoffs_before_c <= RUNNEXT_MAX);
    CHECK_EQ(lacuna_chan_free(wake_c), 0);
    CHECK_EQ(lacuna_chan_free(ab), 0);
    CHECK_EQ(lacuna_chan_free(ba), 0);
}
