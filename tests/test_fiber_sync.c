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

/* lacuna_run, again while it reports EDEADLK: fibers that wait only for a plain thread which is
 * running (not blocked in a lacuna call) look deadlocked to the runtime, as with channels. */
static int run_all(void)
{
    int r;
    while ((r = lacuna_run()) == EDEADLK)
        usleep(100);
    return r;
}

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

/* ---- mutex ------------------------------------------------------------------------------------
 */

static lacuna_mutex tmu;

static void *unlock_from_other_thread(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_mutex_unlock(&tmu), EPERM);
    CHECK_EQ(lacuna_mutex_trylock(&tmu), EBUSY);
    return NULL;
}

static void *unlock_from_other_fiber(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_mutex_unlock(&tmu), EPERM);
    return NULL;
}

TEST(mutex_errors)
{
    lacuna_mutex m = {{0}}; /* zero-filled: ready */
    CHECK_EQ(lacuna_mutex_lock(&m), 0);
    CHECK_EQ(lacuna_mutex_lock(&m), EDEADLK);
    CHECK_EQ(lacuna_mutex_trylock(&m), EBUSY);
    CHECK_EQ(lacuna_mutex_destroy(&m), EBUSY);
    CHECK_EQ(lacuna_mutex_unlock(&m), 0);
    CHECK_EQ(lacuna_mutex_unlock(&m), EPERM); /* not locked */
    CHECK_EQ(lacuna_mutex_trylock(&m), 0);
    CHECK_EQ(lacuna_mutex_unlock(&m), 0);
    CHECK_EQ(lacuna_mutex_destroy(&m), 0);
    CHECK_EQ(lacuna_mutex_destroy(&m), EINVAL);
    CHECK_EQ(lacuna_mutex_lock(&m), EINVAL);
    CHECK_EQ(lacuna_mutex_trylock(&m), EINVAL);
    CHECK_EQ(lacuna_mutex_unlock(&m), EINVAL);
    CHECK_EQ(lacuna_mutex_init(&m), 0);
    CHECK_EQ(lacuna_mutex_lock(&m), 0);
    CHECK_EQ(lacuna_mutex_unlock(&m), 0);
    CHECK_EQ(lacuna_mutex_lock(NULL), EINVAL);
    CHECK_EQ(lacuna_mutex_unlock(NULL), EINVAL);
    CHECK_EQ(lacuna_mutex_trylock(NULL), EINVAL);
    CHECK_EQ(lacuna_mutex_destroy(NULL), EINVAL);
    CHECK_EQ(lacuna_mutex_init(NULL), EINVAL);

    /* Owned by this thread: another thread, and a fiber, are not the owner. */
    CHECK_EQ(lacuna_mutex_lock(&tmu), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, unlock_from_other_thread, NULL), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_EQ(lacuna_set_workers(1), 0);
    CHECK_EQ(lacuna_detach(lacuna_go(unlock_from_other_fiber, NULL)), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(lacuna_mutex_unlock(&tmu), 0);
}

/* Fibers on the workers and plain threads add to one counter under the mutex, some holding it
 * across a yield or a sleep (the owner migrates while it holds it). */
#define MU_FIBERS  6
#define MU_THREADS 2
#define MU_ITERS   3000
static lacuna_mutex cmu;
static long counter;       /* under cmu */
static _Atomic int inside; /* owners inside the critical section now: at most 1 */

static void critical(int i)
{
    CHECK_EQ(lacuna_mutex_lock(&cmu), 0);
    CHECK_EQ(atomic_fetch_add(&inside, 1), 0);
    long c = counter;
    if (i % 97 == 0)
        lacuna_yield();
    if (i % 1001 == 0)
        lacuna_sleep_ms(1);
    counter = c + 1;
    atomic_fetch_sub(&inside, 1);
    CHECK_EQ(lacuna_mutex_unlock(&cmu), 0);
}

static void *mu_fiber(void *arg)
{
    (void)arg;
    for (int i = 0; i < MU_ITERS; i++)
        critical(i);
    return NULL;
}

static void *mu_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < MU_ITERS; i++) {
        CHECK_EQ(lacuna_mutex_lock(&cmu), 0);
        CHECK_EQ(atomic_fetch_add(&inside, 1), 0);
        counter++;
        atomic_fetch_sub(&inside, 1);
        CHECK_EQ(lacuna_mutex_unlock(&cmu), 0);
    }
    return NULL;
}

TEST(mutex_counter_fibers_and_threads)
{
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        counter = 0;
        for (int i = 0; i < MU_FIBERS; i++)
            CHECK_EQ(lacuna_detach(lacuna_go(mu_fiber, NULL)), 0);
        pthread_t t[MU_THREADS];
        for (int i = 0; i < MU_THREADS; i++)
            CHECK_EQ(pthread_create(&t[i], NULL, mu_thread, NULL), 0);
        CHECK_EQ(lacuna_run(), 0); /* a thread owning the mutex counts as one that will wake */
        for (int i = 0; i < MU_THREADS; i++)
            CHECK_EQ(pthread_join(t[i], NULL), 0);
        CHECK_EQ(counter, (long)(MU_FIBERS + MU_THREADS) * MU_ITERS);
    }
    CHECK_EQ(lacuna_mutex_destroy(&cmu), 0);
}

/* Unlock with waiters: K fibers queue on a held mutex in spawn order; the owner unlocks and at
 * once locks again. Every one gets the mutex exactly once; on one worker the owner gets it back
 * first (the woken waiter has not run yet: no convoy), then the waiters have their turns. */
#define FIFO_K 8
static lacuna_mutex fmu;
static int fifo_log[FIFO_K + 1], fifo_n; /* under fmu */

static void *fifo_waiter(void *arg)
{
    CHECK_EQ(lacuna_mutex_lock(&fmu), 0);
    fifo_log[fifo_n++] = (int)(intptr_t)arg;
    CHECK_EQ(lacuna_mutex_unlock(&fmu), 0);
    return NULL;
}

static void *fifo_owner(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_mutex_lock(&fmu), 0);
    lacuna_fiber *f[FIFO_K];
    for (int i = 0; i < FIFO_K; i++) /* each runs at once and queues before this one resumes */
        f[i] = lacuna_go(fifo_waiter, (void *)(intptr_t)i);
    CHECK_EQ(lacuna_mutex_unlock(&fmu), 0);
    CHECK_EQ(lacuna_mutex_lock(&fmu), 0);
    fifo_log[fifo_n++] = FIFO_K;
    CHECK_EQ(lacuna_mutex_unlock(&fmu), 0);
    for (int i = 0; i < FIFO_K; i++)
        lacuna_join(f[i]);
    return NULL;
}

TEST(mutex_unlock_wakes_owner_may_retake)
{
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        fifo_n = 0;
        CHECK_EQ(lacuna_detach(lacuna_go(fifo_owner, NULL)), 0);
        CHECK_EQ(lacuna_run(), 0);
        CHECK_EQ(fifo_n, FIFO_K + 1);
        int seen[FIFO_K + 1] = {0};
        for (int i = 0; i <= FIFO_K; i++)
            seen[fifo_log[i]]++;
        for (int i = 0; i <= FIFO_K; i++)
            CHECK_EQ(seen[i], 1);
        if (w == 1)
            CHECK_EQ(fifo_log[0], FIFO_K);
    }
}

/* No starvation: two fibers take the mutex in a tight loop while a third needs it 300 times; the
 * third finishes (the hogs stop only when it has). */
static lacuna_mutex smu;
static _Atomic int victim_done;
static long hog_rounds;

static void *hog(void *arg)
{
    (void)arg;
    while (!atomic_load(&victim_done)) {
        CHECK_EQ(lacuna_mutex_lock(&smu), 0);
        hog_rounds++;
        if (hog_rounds % 16 == 0)
            lacuna_yield(); /* let one worker's other fibers run at all */
        CHECK_EQ(lacuna_mutex_unlock(&smu), 0);
    }
    return NULL;
}

static void *victim(void *arg)
{
    (void)arg;
    for (int i = 0; i < 300; i++) {
        CHECK_EQ(lacuna_mutex_lock(&smu), 0);
        CHECK_EQ(lacuna_mutex_unlock(&smu), 0);
        lacuna_yield();
    }
    atomic_store(&victim_done, 1);
    return NULL;
}

TEST(mutex_no_starvation)
{
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        atomic_store(&victim_done, 0);
        CHECK_EQ(lacuna_detach(lacuna_go(hog, NULL)), 0);
        CHECK_EQ(lacuna_detach(lacuna_go(hog, NULL)), 0);
        CHECK_EQ(lacuna_detach(lacuna_go(victim, NULL)), 0);
        CHECK_EQ(lacuna_run(), 0);
        CHECK(atomic_load(&victim_done));
    }
}

/* ---- cond -------------------------------------------------------------------------------------
 */

#define Q_CAP   4
#define Q_ITEMS 4000
static lacuna_mutex qmu;
static lacuna_cond not_empty, not_full;
static int qbuf[Q_CAP], qhead, qlen; /* under qmu */
static long qsum;                    /* under qmu */
static int qtaken;                   /* under qmu */

static void q_put(int v)
{
    CHECK_EQ(lacuna_mutex_lock(&qmu), 0);
    while (qlen == Q_CAP)
        CHECK_EQ(lacuna_cond_wait(&not_full, &qmu), 0);
    qbuf[(qhead + qlen++) % Q_CAP] = v;
    CHECK_EQ(lacuna_cond_signal(&not_empty), 0);
    CHECK_EQ(lacuna_mutex_unlock(&qmu), 0);
}

static void *q_producer(void *arg)
{
    int base = (int)(intptr_t)arg;
    for (int i = 1; i <= Q_ITEMS; i++)
        q_put(base + i);
    return NULL;
}

static void *q_consumer(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_mutex_lock(&qmu), 0);
    for (;;) {
        while (qlen == 0 && qtaken < 3 * Q_ITEMS)
            CHECK_EQ(lacuna_cond_wait(&not_empty, &qmu), 0);
        if (qtaken == 3 * Q_ITEMS)
            break;
        qsum += qbuf[qhead];
        qhead = (qhead + 1) % Q_CAP;
        qlen--;
        if (++qtaken == 3 * Q_ITEMS)
            CHECK_EQ(lacuna_cond_broadcast(&not_empty), 0); /* the other consumers stop too */
        CHECK_EQ(lacuna_cond_signal(&not_full), 0);
    }
    CHECK_EQ(lacuna_mutex_unlock(&qmu), 0);
    return NULL;
}

TEST(cond_bounded_queue_fibers_and_thread)
{
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        qhead = qlen = qtaken = 0;
        qsum = 0;
        for (int i = 0; i < 3; i++)
            CHECK_EQ(lacuna_detach(lacuna_go(q_consumer, NULL)), 0);
        for (int i = 0; i < 2; i++)
            CHECK_EQ(lacuna_detach(lacuna_go(q_producer, (void *)(intptr_t)(i * 100000))), 0);
        pthread_t t; /* a plain thread produces too, blocking itself on not_full */
        CHECK_EQ(pthread_create(&t, NULL, q_producer, (void *)(intptr_t)200000), 0);
        CHECK_EQ(run_all(), 0);
        CHECK_EQ(pthread_join(t, NULL), 0);
        long per = (long)Q_ITEMS * (Q_ITEMS + 1) / 2;
        CHECK_EQ(qsum, 3 * per + (long)Q_ITEMS * (100000 + 200000));
    }
    lacuna_mutex m = {{0}};
    lacuna_cond c = {{0}};
    CHECK_EQ(lacuna_cond_wait(&c, &m), EPERM); /* not the owner */
    CHECK_EQ(lacuna_cond_wait(NULL, &m), EINVAL);
    CHECK_EQ(lacuna_cond_signal(&c), 0); /* nobody waits: nothing */
    CHECK_EQ(lacuna_cond_destroy(&c), 0);
    CHECK_EQ(lacuna_cond_signal(&c), EINVAL);
    CHECK_EQ(lacuna_mutex_lock(&m), 0);
    CHECK_EQ(lacuna_cond_wait(&c, &m), EINVAL); /* destroyed */
    CHECK_EQ(lacuna_mutex_unlock(&m), 0);
    CHECK_EQ(lacuna_cond_destroy(&c), EINVAL);
}

/* ---- waitgroup and semaphore ------------------------------------------------------------------
 */

static lacuna_waitgroup wg;
static _Atomic int wg_finished;

static void *wg_task(void *arg)
{
    lacuna_sleep_ms((unsigned)(intptr_t)arg % 3);
    atomic_fetch_add(&wg_finished, 1);
    CHECK_EQ(lacuna_waitgroup_done(&wg), 0);
    return NULL;
}

static void *wg_waiter(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_waitgroup_wait(&wg), 0);
    CHECK_EQ(atomic_load(&wg_finished), 20);
    return NULL;
}

TEST(waitgroup_fibers_and_thread)
{
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        atomic_store(&wg_finished, 0);
        CHECK_EQ(lacuna_waitgroup_add(&wg, 20), 0);
        pthread_t t; /* a plain thread waits too */
        CHECK_EQ(pthread_create(&t, NULL, wg_waiter, NULL), 0);
        CHECK_EQ(lacuna_detach(lacuna_go(wg_waiter, NULL)), 0);
        for (int i = 0; i < 20; i++)
            CHECK_EQ(lacuna_detach(lacuna_go(wg_task, (void *)(intptr_t)i)), 0);
        CHECK_EQ(lacuna_run(), 0);
        CHECK_EQ(pthread_join(t, NULL), 0);
    }
    CHECK_EQ(lacuna_waitgroup_wait(&wg), 0);      /* 0: at once */
    CHECK_EQ(lacuna_waitgroup_done(&wg), EINVAL); /* would go negative */
    CHECK_EQ(lacuna_waitgroup_add(&wg, -5), EINVAL);
    CHECK_EQ(lacuna_waitgroup_add(&wg, 2), 0);
    CHECK_EQ(lacuna_waitgroup_add(&wg, -3), EINVAL); /* unchanged: 2 */
    CHECK_EQ(lacuna_waitgroup_add(&wg, -2), 0);
    CHECK_EQ(lacuna_waitgroup_add(NULL, 1), EINVAL);
    CHECK_EQ(lacuna_waitgroup_destroy(&wg), 0);
    CHECK_EQ(lacuna_waitgroup_wait(&wg), EINVAL);
}

#define SEM_UNITS 2
static lacuna_sem sem;
static _Atomic int sem_in, sem_max;

static void *sem_user(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(lacuna_sem_wait(&sem), 0);
        int n = atomic_fetch_add(&sem_in, 1) + 1, m = atomic_load(&sem_max);
        while (n > m && !atomic_compare_exchange_weak(&sem_max, &m, n))
            ;
        CHECK(n <= SEM_UNITS);
        if (i % 5 == 0)
            lacuna_sleep_ms(1);
        else
            lacuna_yield();
        atomic_fetch_sub(&sem_in, 1);
        CHECK_EQ(lacuna_sem_post(&sem), 0);
    }
    return NULL;
}

static lacuna_sem ping;
static void *sem_poster_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++)
        CHECK_EQ(lacuna_sem_post(&ping), 0);
    return NULL;
}

static void *sem_taker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++)
        CHECK_EQ(lacuna_sem_wait(&ping), 0);
    return NULL;
}

TEST(sem_limits_and_wakes_from_thread)
{
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        CHECK_EQ(lacuna_sem_init(&sem, SEM_UNITS), 0);
        for (int i = 0; i < 8; i++)
            CHECK_EQ(lacuna_detach(lacuna_go(sem_user, NULL)), 0);
        CHECK_EQ(lacuna_sem_init(&ping, 0), 0);
        CHECK_EQ(lacuna_detach(lacuna_go(sem_taker, NULL)), 0);
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, sem_poster_thread, NULL), 0);
        CHECK_EQ(run_all(), 0);
        CHECK_EQ(pthread_join(t, NULL), 0);
        CHECK(atomic_load(&sem_max) <= SEM_UNITS);
        unsigned long v = 99;
        CHECK_EQ(lacuna_sem_value(&sem, &v), 0);
        CHECK_EQ(v, SEM_UNITS);
    }
    CHECK_EQ(lacuna_sem_trywait(&ping), EAGAIN);
    CHECK_EQ(lacuna_sem_post(&ping), 0);
    CHECK_EQ(lacuna_sem_trywait(&ping), 0);
    CHECK_EQ(lacuna_sem_destroy(&ping), 0);
    CHECK_EQ(lacuna_sem_post(&ping), EINVAL);
    CHECK_EQ(lacuna_sem_wait(NULL), EINVAL);
}

/* ---- fiber-local storage and the fiber id ------------------------------------------------------
 */

static lacuna_fls_key fkey, fkey2;
static _Atomic int dtor_runs;

static void fls_dtor(void *v)
{
    CHECK(lacuna_fiber_id() != 0); /* on the fiber itself */
    CHECK_EQ(*(uint64_t *)v, lacuna_fiber_id());
    free(v);
    atomic_fetch_add(&dtor_runs, 1);
}

static void fls_dtor_resets(void *v) /* sets a value again once: a second round runs */
{
    if (v == (void *)1)
        CHECK_EQ(lacuna_fls_set(fkey2, (void *)2), 0);
    atomic_fetch_add(&dtor_runs, 1);
}

static void *fls_body(void *arg)
{
    uint64_t id = lacuna_fiber_id();
    CHECK(id != 0);
    CHECK_EQ(id, (uint64_t)(uintptr_t)lacuna_self());
    CHECK(lacuna_fls_get(fkey) == NULL);
    uint64_t *mine = malloc(sizeof *mine);
    *mine = id;
    CHECK_EQ(lacuna_fls_set(fkey, mine), 0);
    for (int i = 0; i < 50; i++) { /* migrates between workers: still its own value and id */
        lacuna_yield();
        CHECK(lacuna_fls_get(fkey) == mine);
        CHECK_EQ(lacuna_fiber_id(), id);
    }
    if (arg)
        CHECK_EQ(lacuna_fls_set(fkey2, (void *)1), 0);
    return NULL;
}

TEST(fls_values_destructors_and_ids)
{
    CHECK_EQ(lacuna_fiber_id(), 0);
    CHECK_EQ(lacuna_fls_key_create(&fkey, fls_dtor), 0);
    CHECK_EQ(lacuna_fls_key_create(&fkey2, fls_dtor_resets), 0);
    CHECK(fkey != 0 && fkey != fkey2);
    CHECK_EQ(lacuna_fls_set(fkey, "x"), EPERM); /* thread context */
    CHECK(lacuna_fls_get(fkey) == NULL);
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        atomic_store(&dtor_runs, 0);
        lacuna_fiber *f[16];
        for (int i = 0; i < 16; i++)
            f[i] = lacuna_go(fls_body, i == 0 ? (void *)1 : NULL);
        CHECK_EQ(lacuna_run(), 0);
        for (int i = 0; i < 16; i++)
            lacuna_join(f[i]);
        CHECK_EQ(atomic_load(&dtor_runs), 16 + 2); /* fkey x 16, fkey2 twice (reset once) */
    }
    /* A deleted key is refused, and a new key in its slot is a different number. */
    lacuna_fls_key old = fkey;
    CHECK_EQ(lacuna_fls_key_delete(fkey), 0);
    CHECK_EQ(lacuna_fls_key_delete(fkey), EINVAL);
    CHECK_EQ(lacuna_fls_key_delete(0), EINVAL);
    CHECK_EQ(lacuna_fls_key_create(&fkey, NULL), 0);
    CHECK(fkey != old);
    CHECK_EQ(lacuna_fls_key_create(NULL, NULL), EINVAL);
}

/* ---- async: a plain thread and a signal handler wake a fiber ------------------------------------
 */

static lacuna_async *as;
static _Atomic int as_sent, as_stop;

static void *as_sender_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        atomic_fetch_add(&as_sent, 1);
        CHECK_EQ(lacuna_async_send(as), 0);
        if (i % 100 == 0)
            usleep(100);
    }
    atomic_store(&as_stop, 1);
    CHECK_EQ(lacuna_async_send(as), 0); /* the last word */
    return NULL;
}

static void *as_waiter(void *arg)
{
    (void)arg;
    uint64_t total = 0, n = 0;
    for (;;) {
        CHECK_EQ(lacuna_async_wait(as, &n), 0);
        CHECK(n >= 1);
        total += n;
        if (atomic_load(&as_stop)) {
            /* Every send before the stop flag was set is counted once it is seen, at most one
             * more (the last word) may still be pending. */
            if (total >= 1001)
                break;
        }
    }
    CHECK_EQ(total, 1001);
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
    lacuna_async_send(as);
}

static void *signal_waiter(void *arg)
{
    (void)arg;
    uint64_t n = 0;
    CHECK_EQ(lacuna_async_wait(as, &n), 0);
    CHECK(n >= 1);
    return NULL;
}

static void *raiser(void *arg)
{
    (void)arg;
    lacuna_sleep_ms(2); /* the waiter is parked by now (or not: either way it is woken) */
    CHECK_EQ(raise(SIGUSR1), 0);
    return NULL;
}

TEST(async_from_thread_and_signal_handler)
{
    unsigned w;
    FOR_WORKERS(w)
    {
        CHECK_EQ(lacuna_set_workers(w), 0);
        as = lacuna_async_make();
        CHECK(as != NULL);
        atomic_store(&as_sent, 0);
        atomic_store(&as_stop, 0);
        CHECK_EQ(lacuna_detach(lacuna_go(as_waiter, NULL)), 0);
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, as_sender_thread, NULL), 0);
        CHECK_EQ(lacuna_run(), 0); /* the waiter is in an fd wait: never a deadlock verdict */
        CHECK_EQ(pthread_join(t, NULL), 0);

        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        CHECK_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
        CHECK_EQ(lacuna_detach(lacuna_go(signal_waiter, NULL)), 0);
        CHECK_EQ(lacuna_detach(lacuna_go(raiser, NULL)), 0);
        CHECK_EQ(lacuna_run(), 0);
        /* Coalescing: three sends, one wait takes all three. */
        for (int i = 0; i < 3; i++)
            CHECK_EQ(lacuna_async_send(as), 0);
        uint64_t n = 0;
        CHECK_EQ(lacuna_async_wait(as, &n), 0); /* thread context: poll */
        CHECK_EQ(n, 3);
        CHECK_EQ(lacuna_async_free(as), 0);
    }
    CHECK_EQ(lacuna_async_send(NULL), EINVAL);
    CHECK_EQ(lacuna_async_wait(NULL, NULL), EINVAL);
    CHECK_EQ(lacuna_async_free(NULL), 0);
}
