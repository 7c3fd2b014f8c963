/* The fiber runtime's API surface: spawn/join/detach/yield order, names, every misuse error,
 * EDEADLK, channels (buffered, unbuffered, close, many senders and receivers), sleep order,
 * lacuna_fd_wait on a pipe and on loopback TCP, and two OS threads at once on one stack pool.
 * This is also the binary ctest runs under valgrind. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void *add_one(void *arg)
{
    return (void *)((uintptr_t)arg + 1);
}

static void pool_idle(void)
{
    lacuna_stats st;
    lacuna_pool_stats(lacuna_fiber_pool(), &st);
    CHECK_EQ(st.live, 0); /* every stack went back to the pool */
}

TEST(go_join_from_thread)
{
    CHECK(lacuna_fiber_pool() == NULL);
    CHECK(lacuna_self() == NULL);
    lacuna_fiber *f = lacuna_go(add_one, (void *)41);
    CHECK(f != NULL);
    CHECK(lacuna_fiber_pool() != NULL);
    CHECK_EQ((uintptr_t)lacuna_join(f), 42);
    pool_idle();
    CHECK_EQ(lacuna_run(), 0); /* nothing left */
}

/* Atomic: configured_stacks_go_back_to_the_kernel's yielders run on every worker (the tests
 * about order pin one worker; the index then hands each writer its own slot). */
static int order[16];
static _Atomic int norder;

static void *record(void *arg)
{
    order[norder++] = (int)(uintptr_t)arg;
    return NULL;
}

static void *spawner(void *arg)
{
    (void)arg;
    order[norder++] = 0;
    lacuna_fiber *a = lacuna_go(record, (void *)1); /* runs before lacuna_go returns */
    order[norder++] = 2;
    lacuna_fiber *b = lacuna_go(record, (void *)3);
    order[norder++] = 4;
    lacuna_join(a);
    lacuna_join(b);
    return NULL;
}

TEST(spawned_fiber_runs_next)
{
    lacuna_fiber *f = lacuna_go(spawner, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(norder, 5);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(order[i], i);
    errno = 0;
    CHECK(lacuna_join(f) == NULL && errno == 0); /* ended under lacuna_run: still joinable */
    CHECK(lacuna_join(f) == NULL && errno == EINVAL);
}

static void *yielder(void *arg)
{
    for (int i = 0; i < 3; i++) {
        order[norder++] = (int)(uintptr_t)arg * 10 + i;
        lacuna_yield();
    }
    return NULL;
}

TEST(yield_is_fifo)
{
    lacuna_set_workers(1); /* FIFO is per worker: with two, the other may take some */
    lacuna_fiber *a = lacuna_go(yielder, (void *)1);
    lacuna_fiber *b = lacuna_go(yielder, (void *)2);
    CHECK_EQ(lacuna_detach(a), 0);
    CHECK_EQ(lacuna_detach(b), 0);
    CHECK_EQ(lacuna_run(), 0);
    int want[] = {10, 20, 11, 21, 12, 22};
    CHECK_EQ(norder, 6);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(order[i], want[i]);
    lacuna_set_workers(0);
    pool_idle();
}

static void *self_check(void *arg)
{
    (void)arg;
    lacuna_fiber *me = lacuna_self();
    CHECK(me != NULL);
    CHECK_EQ(lacuna_fiber_set_name(NULL, "worker-with-a-very-long-name-indeed"), 0);
    errno = 0;
    CHECK(lacuna_join(me) == NULL);
    CHECK_EQ(errno, EDEADLK);
    return me;
}

TEST(self_and_names)
{
    lacuna_fiber *f = lacuna_go_named("first", self_check, NULL);
    CHECK(f != NULL);
    CHECK_EQ(lacuna_fiber_set_name(f, "renamed"), 0);
    CHECK_EQ(lacuna_fiber_set_name(f, NULL), 0);
    CHECK_EQ(lacuna_fiber_set_name(NULL, "x"), EINVAL); /* thread context has no fiber */
    CHECK(lacuna_join(f) == f);
    CHECK_EQ(lacuna_fiber_set_name(f, "stale"), EINVAL);
}

static void *nothing(void *arg)
{
    return arg;
}

TEST(misuse)
{
    errno = 0;
    CHECK(lacuna_go(NULL, NULL) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(lacuna_join(NULL) == NULL && errno == EINVAL);
    CHECK_EQ(lacuna_detach(NULL), EINVAL);
    errno = 0;
    CHECK(lacuna_join((lacuna_fiber *)(uintptr_t)0x123456789) == NULL && errno == EINVAL);

    /* join a detached fiber, before and after it ended */
    lacuna_fiber *f = lacuna_go(nothing, NULL);
    CHECK_EQ(lacuna_detach(f), 0);
    CHECK_EQ(lacuna_detach(f), EINVAL);
    errno = 0;
    CHECK(lacuna_join(f) == NULL && errno == EINVAL);
    CHECK_EQ(lacuna_run(), 0);
    errno = 0;
    CHECK(lacuna_join(f) == NULL && errno == EINVAL);

    /* join twice; detach after join; detach an ended fiber */
    f = lacuna_go(nothing, (void *)7);
    CHECK_EQ((uintptr_t)lacuna_join(f), 7);
    errno = 0;
    CHECK(lacuna_join(f) == NULL && errno == EINVAL);
    CHECK_EQ(lacuna_detach(f), EINVAL);
    f = lacuna_go(nothing, NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(lacuna_detach(f), 0); /* ended: reclaimed now */
    errno = 0;
    CHECK(lacuna_join(f) == NULL && errno == EINVAL);

    /* channels */
    errno = 0;
    CHECK(lacuna_chan_make(0, 4) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(lacuna_chan_make(SIZE_MAX / 2, 4) == NULL && errno == EINVAL);
    int v = 1;
    CHECK_EQ(lacuna_chan_send(NULL, &v), EINVAL);
    CHECK_EQ(lacuna_chan_recv(NULL, &v), EINVAL);
    CHECK_EQ(lacuna_chan_close(NULL), EINVAL);
    CHECK_EQ(lacuna_chan_free(NULL), 0);
    lacuna_chan *c = lacuna_chan_make(sizeof(int), 1);
    CHECK(c != NULL);
    CHECK_EQ(lacuna_chan_send(c, NULL), EINVAL);
    CHECK_EQ(lacuna_chan_recv(c, NULL), EINVAL);
    CHECK_EQ(lacuna_chan_send(c, &v), 0); /* fits: no blocking needed */
    /* Would block this thread while its own fibers wait to run: refused. */
    lacuna_fiber *pending = lacuna_go(nothing, NULL);
    CHECK(pending != NULL);
    CHECK_EQ(lacuna_chan_send(c, &v), EPERM);
    CHECK_EQ(lacuna_chan_recv(c, &v), 0);
    CHECK_EQ(lacuna_chan_recv(c, &v), EPERM);
    CHECK(lacuna_join(pending) == NULL);
    CHECK_EQ(lacuna_chan_close(c), 0);
    CHECK_EQ(lacuna_chan_close(c), EALREADY);
    CHECK_EQ(lacuna_chan_send(c, &v), EPIPE);
    CHECK_EQ(lacuna_chan_recv(c, &v), EPIPE);
    CHECK_EQ(lacuna_chan_free(c), 0);

    /* fd waits */
    CHECK_EQ(lacuna_fd_wait(-1, POLLIN, 0), EBADF);
    CHECK_EQ(lacuna_fd_wait(0, 0, 0), EINVAL);
    CHECK_EQ(lacuna_fd_wait(0, POLLPRI, 0), EINVAL);

    /* errors come back as return values; errno is the caller's */
    errno = 1234;
    CHECK_EQ(lacuna_fd_wait(-1, POLLIN, 0), EBADF);
    CHECK_EQ(lacuna_sleep_ms(1), 0);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(errno, 1234);

    /* configuring after the pool exists */
    lacuna_pool_config pc = {.region_size = 32 * 1024};
    CHECK_EQ(lacuna_fiber_configure(&pc), EBUSY);
    CHECK_EQ(lacuna_fiber_configure(NULL), EINVAL);
    pool_idle();
}

static void *touch_stack(void *arg)
{
    volatile char buf[4096];
    memset((char *)buf, 1, sizeof buf);
    /* the frame is on the fiber's own stack even where ASan moves buf to a fake stack */
    *(uintptr_t *)arg = (uintptr_t)__builtin_frame_address(0);
    return NULL;
}

TEST(configured_stacks_go_back_to_the_kernel)
{
    /* 48 KiB: not the default, and roomy enough for sanitizer runtimes on the fiber's stack */
    lacuna_pool_config pc = {.region_size = 48 * 1024, .capacity = 4, .cache = LACUNA_CACHE_NONE};
    CHECK_EQ(lacuna_fiber_configure(&pc), 0);
    CHECK_EQ(lacuna_fiber_configure(&pc), EBUSY);
    lacuna_stats st;
    lacuna_pool_stats(lacuna_fiber_pool(), &st);
    CHECK_EQ(st.region_size, 48 * 1024);
    CHECK_EQ(st.capacity, 4);

    uintptr_t where = 0;
    CHECK(lacuna_join(lacuna_go(touch_stack, &where)) == NULL);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char vec = 1;
    CHECK_EQ(mincore((void *)(where & ~(pg - 1)), pg, &vec), 0);
    CHECK_EQ(vec & 1, 0); /* the ended fiber's stack page went back to the kernel */
    lacuna_pool_stats(lacuna_fiber_pool(), &st);
    CHECK(st.released_regions >= 1);
    CHECK_EQ(st.live, 0);

    /* four stacks: a fifth live fiber gets ENOMEM, and the others are unharmed */
    lacuna_fiber *f[4];
    for (int i = 0; i < 4; i++)
        CHECK((f[i] = lacuna_go(yielder, (void *)(uintptr_t)i)) != NULL);
    errno = 0;
    CHECK(lacuna_go(yielder, NULL) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < 4; i++)
        CHECK(lacuna_join(f[i]) == NULL);
    CHECK_EQ(norder, 12);
}

static void *run_inside(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)lacuna_run();
}

TEST(run_from_fiber_is_eperm)
{
    CHECK_EQ((uintptr_t)lacuna_join(lacuna_go(run_inside, NULL)), EPERM);
}

static void *join_other(void *arg)
{
    lacuna_fiber *target = arg;
    errno = 0;
    void *r = lacuna_join(target);
    return (void *)(uintptr_t)(r == NULL ? errno : 0);
}

static void *block_forever(void *arg)
{
    int v;
    return (void *)(uintptr_t)lacuna_chan_recv(arg, &v);
}

TEST(double_join_by_fibers)
{
    /* One worker: j1 is the first joiner only because it runs before j2 (FIFO); with two, the
     * other worker may steal j2 and run it first (then j1 gets the EINVAL). */
    CHECK_EQ(lacuna_set_workers(1), 0);
    lacuna_chan *c = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *t = lacuna_go(block_forever, c);
    lacuna_fiber *j1 = lacuna_go(join_other, t);
    lacuna_fiber *j2 = lacuna_go(join_other, t);
    CHECK_EQ(lacuna_run(), EDEADLK); /* t waits on c, j1 on t; j2 ended with EINVAL */
    CHECK_EQ((uintptr_t)lacuna_join(j2), EINVAL);
    errno = 0;
    CHECK(lacuna_join(t) == NULL && errno == EINVAL); /* j1 is joining it */
    CHECK_EQ(lacuna_chan_free(c), EBUSY);
    CHECK_EQ(lacuna_chan_close(c), 0); /* from thread context: wakes t with EPIPE */
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ((uintptr_t)lacuna_join(j1), 0);
    CHECK_EQ(lacuna_chan_free(c), 0);
    pool_idle();
}

TEST(deadlock_join_from_thread)
{
    lacuna_chan *c = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *t = lacuna_go(block_forever, c);
    errno = 0;
    CHECK(lacuna_join(t) == NULL);
    CHECK_EQ(errno, EDEADLK);
    int v = 5;
    CHECK_EQ(lacuna_chan_send(c, &v), 0); /* a receiver waits: handed over, no blocking */
    CHECK_EQ((uintptr_t)lacuna_join(t), 0);
    CHECK_EQ(lacuna_chan_free(c), 0);
}

/* ---- channels ---------------------------------------------------------------------------- */

typedef struct {
    lacuna_chan *c;
    int from, n;
} prod_arg;

static void *producer(void *arg)
{
    prod_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        int v = a->from + i;
        CHECK_EQ(lacuna_chan_send(a->c, &v), 0);
    }
    return NULL;
}

static void *consumer_sum(void *arg)
{
    lacuna_chan *c = arg;
    long sum = 0;
    int v;
    int err;
    while ((err = lacuna_chan_recv(c, &v)) == 0)
        sum += v;
    CHECK_EQ(err, EPIPE);
    return (void *)sum;
}

static void *ordered_consumer(void *arg)
{
    prod_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        int v = -1;
        CHECK_EQ(lacuna_chan_recv(a->c, &v), 0);
        CHECK_EQ(v, a->from + i);
    }
    int v;
    CHECK_EQ(lacuna_chan_recv(a->c, &v), EPIPE);
    return NULL;
}

static void *closer(void *arg)
{
    prod_arg *a = arg;
    producer(a);
    CHECK_EQ(lacuna_chan_close(a->c), 0);
    return NULL;
}

static void fifo_case(size_t cap)
{
    lacuna_chan *c = lacuna_chan_make(sizeof(int), cap);
    prod_arg a = {c, 100, 1000};
    lacuna_fiber *r = lacuna_go(ordered_consumer, &a);
    lacuna_fiber *s = lacuna_go(closer, &a);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(r) == NULL && lacuna_join(s) == NULL);
    CHECK_EQ(lacuna_chan_free(c), 0);
}

TEST(chan_fifo_unbuffered)
{
    fifo_case(0);
}

TEST(chan_fifo_buffered)
{
    fifo_case(1);
    fifo_case(7);
    fifo_case(5000);
}

static void *closing_sender(void *arg)
{
    lacuna_chan *c = arg;
    int v = 9;
    return (void *)(uintptr_t)lacuna_chan_send(c, &v); /* unbuffered, no receiver: waits */
}

static void *close_it(void *arg)
{
    return (void *)(uintptr_t)lacuna_chan_close(arg);
}

TEST(chan_close_wakes_waiters)
{
    lacuna_chan *c = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *s1 = lacuna_go(closing_sender, c);
    lacuna_fiber *s2 = lacuna_go(closing_sender, c);
    lacuna_fiber *k = lacuna_go(close_it, c);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ((uintptr_t)lacuna_join(s1), EPIPE);
    CHECK_EQ((uintptr_t)lacuna_join(s2), EPIPE);
    CHECK_EQ((uintptr_t)lacuna_join(k), 0);
    CHECK_EQ(lacuna_chan_free(c), 0);

    /* buffered values survive a close and drain before EPIPE */
    c = lacuna_chan_make(sizeof(int), 4);
    for (int v = 1; v <= 3; v++)
        CHECK_EQ(lacuna_chan_send(c, &v), 0);
    CHECK_EQ(lacuna_chan_close(c), 0);
    lacuna_fiber *r = lacuna_go(consumer_sum, c);
    CHECK_EQ((long)lacuna_join(r), 6);
    CHECK_EQ(lacuna_chan_free(c), 0);
}

static void *multi_main(void *arg)
{
    size_t cap = (size_t)(uintptr_t)arg;
    enum { P = 17, R = 13, N = 500 };
    lacuna_chan *c = lacuna_chan_make(sizeof(int), cap);
    prod_arg pa[P];
    lacuna_fiber *prod[P], *cons[R];
    for (int i = 0; i < R; i++)
        cons[i] = lacuna_go(consumer_sum, c);
    for (int i = 0; i < P; i++) {
        pa[i] = (prod_arg){c, i * N, N};
        prod[i] = lacuna_go(producer, &pa[i]);
    }
    for (int i = 0; i < P; i++)
        CHECK(lacuna_join(prod[i]) == NULL);
    CHECK_EQ(lacuna_chan_close(c), 0);
    long total = 0;
    for (int i = 0; i < R; i++)
        total += (long)lacuna_join(cons[i]);
    long n = (long)P * N;
    CHECK_EQ(total, n * (n - 1) / 2); /* every value received exactly once */
    CHECK_EQ(lacuna_chan_free(c), 0);
    return NULL;
}

TEST(chan_many_senders_receivers)
{
    size_t caps[] = {0, 1, 3, 64};
    for (size_t i = 0; i < 4; i++)
        CHECK(lacuna_join(lacuna_go(multi_main, (void *)(uintptr_t)caps[i])) == NULL);
    pool_idle();
}

typedef struct {
    char bytes[100];
} big;

static void *big_sender(void *arg)
{
    big b;
    for (int i = 0; i < 100; i++) {
        memset(b.bytes, i, sizeof b.bytes);
        CHECK_EQ(lacuna_chan_send(arg, &b), 0);
    }
    return NULL;
}

TEST(chan_large_elements)
{
    lacuna_chan *c = lacuna_chan_make(sizeof(big), 3);
    lacuna_fiber *s = lacuna_go(big_sender, c);
    for (int i = 0; i < 100; i++) {
        big b;
        while (lacuna_chan_recv(c, &b) == EPERM) /* thread context: let the sender fill it */
            CHECK_EQ(lacuna_run(), EDEADLK);
        for (int k = 0; k < 100; k++)
            CHECK_EQ(b.bytes[k], i);
    }
    CHECK(lacuna_join(s) == NULL);
    CHECK_EQ(lacuna_chan_free(c), 0);
}

/* ---- sleep ------------------------------------------------------------------------------- */

/* A sleeper records when it called lacuna_sleep_ms and when it woke (ns), and in which place. */
typedef struct sleep_rec {
    unsigned ms;
    uint64_t called, woke;
    int rank;
} sleep_rec;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *sleeper(void *arg)
{
    sleep_rec *r = arg;
    r->called = now_ns();
    CHECK_EQ(lacuna_sleep_ms(r->ms), 0);
    r->woke = now_ns();
    CHECK(r->woke - r->called >= (uint64_t)r->ms * 1000000u); /* at least, never less */
    r->rank = norder++;
    return NULL;
}

/* Timers fire in deadline order. The test cannot know a deadline exactly (the scheduler reads
 * the clock inside the call), only an interval: fibers start one after another in spawn order,
 * so sleeper i set its deadline between its own call and the next fiber's, plus its ms. Where
 * two intervals do not overlap the scheduler guarantees the order; where a slow or loaded
 * machine made them overlap (a late start), it guarantees nothing and nothing is checked. The
 * 0 ms sleeper is a yield: it runs before any timer that fires after it yielded, but a timer
 * already due may still fire after it (timers fire when the thread polls, not when they fall
 * due), so it is only ever checked as the earlier of a pair. */
TEST(sleep_order)
{
    lacuna_set_workers(1); /* the order of one worker's timers (and the records are plain) */
    unsigned ms[] = {60, 10, 40, 0, 30, 20, 50, 5};
    enum { N = 8 };
    sleep_rec r[N + 1] = {{0}};
    for (int i = 0; i < N; i++) {
        r[i].ms = ms[i];
        CHECK_EQ(lacuna_detach(lacuna_go(sleeper, &r[i])), 0);
    }
    lacuna_fiber *last = lacuna_go(sleeper, &r[N]); /* r[N].called bounds r[N - 1]'s deadline */
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(last) == NULL);
    CHECK_EQ(norder, N + 1);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            uint64_t hi_i = r[i + 1].called + (uint64_t)r[i].ms * 1000000u;
            uint64_t lo_j = r[j].called + (uint64_t)r[j].ms * 1000000u;
            if (hi_i < lo_j && r[j].ms > 0)
                CHECK(r[i].rank < r[j].rank);
        }
    uint64_t t0 = now_ms();
    CHECK_EQ(lacuna_sleep_ms(5), 0); /* thread context: sleeps the thread */
    CHECK(now_ms() - t0 >= 5);
}

static void *spin_yield(void *arg)
{
    _Atomic int *stop = arg;
    while (!atomic_load(stop))
        lacuna_yield();
    return NULL;
}

static void *stop_after(void *arg)
{
    lacuna_sleep_ms(20);
    atomic_store((_Atomic int *)arg, 1);
    return NULL;
}

TEST(timers_fire_while_fibers_yield)
{
    _Atomic int stop = 0;
    lacuna_fiber *a = lacuna_go(spin_yield, &stop);
    lacuna_fiber *b = lacuna_go(stop_after, &stop);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(a) == NULL && lacuna_join(b) == NULL);
}

/* ---- fd waits ---------------------------------------------------------------------------- */

static void *pipe_reader(void *arg)
{
    int fd = *(int *)arg;
    char buf[64];
    size_t got = 0;
    for (;;) {
        CHECK_EQ(lacuna_fd_wait(fd, POLLIN, -1), 0);
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0) {
            CHECK(errno == EAGAIN);
            continue;
        }
        got += (size_t)n;
    }
    return (void *)got;
}

static void *pipe_writer(void *arg)
{
    int fd = *(int *)arg;
    for (int i = 0; i < 10; i++) {
        lacuna_sleep_ms(1);
        CHECK_EQ(lacuna_fd_wait(fd, POLLOUT, 1000), 0);
        CHECK_EQ(write(fd, "hello", 5), 5);
    }
    close(fd);
    return NULL;
}

static void *timed_out_wait(void *arg)
{
    int fd = *(int *)arg;
    uint64_t t0 = now_ms();
    int rc = lacuna_fd_wait(fd, POLLIN, 30);
    CHECK(now_ms() - t0 >= 30);
    return (void *)(uintptr_t)rc;
}

TEST(fd_wait_pipe)
{
    int p[2];
    CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
    lacuna_fiber *r = lacuna_go(pipe_reader, &p[0]);
    lacuna_fiber *w = lacuna_go(pipe_writer, &p[1]);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ((uintptr_t)lacuna_join(r), 50);
    CHECK(lacuna_join(w) == NULL);
    close(p[0]);

    CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
    lacuna_fiber *t = lacuna_go(timed_out_wait, &p[0]);
    CHECK_EQ((uintptr_t)lacuna_join(t), ETIMEDOUT);
    CHECK_EQ(lacuna_fd_wait(p[0], POLLIN, 10), ETIMEDOUT); /* thread context: poll(2) */
    CHECK_EQ(lacuna_fd_wait(p[1], POLLOUT, 10), 0);
    close(p[0]);
    close(p[1]);
    int devnull = open("/dev/null", O_RDONLY);
    CHECK(devnull >= 0);
    CHECK_EQ(lacuna_fd_wait(devnull, POLLIN, -1), 0);
    close(devnull);
}

typedef struct {
    int listen_fd, port;
} tcp_ctx;

static void *tcp_server(void *arg)
{
    tcp_ctx *t = arg;
    int c;
    while ((c = accept4(t->listen_fd, NULL, NULL, SOCK_NONBLOCK)) < 0) {
        CHECK(errno == EAGAIN);
        CHECK_EQ(lacuna_fd_wait(t->listen_fd, POLLIN, -1), 0);
    }
    char buf[256];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0) {
            CHECK(errno == EAGAIN);
            CHECK_EQ(lacuna_fd_wait(c, POLLIN, -1), 0);
            continue;
        }
        total += (size_t)n;
        CHECK_EQ(lacuna_fd_wait(c, POLLOUT, -1), 0);
        CHECK_EQ(write(c, buf, (size_t)n), n);
    }
    close(c);
    return (void *)total;
}

static void *tcp_client(void *arg)
{
    tcp_ctx *t = arg;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        CHECK(errno == EINPROGRESS);
        CHECK_EQ(lacuna_fd_wait(s, POLLOUT, -1), 0);
        int err = -1;
        socklen_t len = sizeof err;
        CHECK_EQ(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len), 0);
        CHECK_EQ(err, 0);
    }
    for (int i = 0; i < 20; i++) {
        char msg[32], back[32];
        int len = snprintf(msg, sizeof msg, "message %d", i);
        CHECK_EQ(write(s, msg, (size_t)len), len);
        int got = 0;
        while (got < len) {
            CHECK_EQ(lacuna_fd_wait(s, POLLIN, -1), 0);
            ssize_t n = read(s, back + got, sizeof back - (size_t)got);
            if (n < 0 && errno == EAGAIN)
                continue;
            CHECK(n > 0);
            got += (int)n;
        }
        CHECK_EQ(got, len);
        CHECK(memcmp(msg, back, (size_t)len) == 0);
    }
    close(s);
    return NULL;
}

TEST(fd_wait_tcp_loopback)
{
    tcp_ctx t;
    t.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(t.listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(bind(t.listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    CHECK_EQ(getsockname(t.listen_fd, (struct sockaddr *)&a, &len), 0);
    t.port = ntohs(a.sin_port);
    CHECK_EQ(listen(t.listen_fd, 16), 0);
    lacuna_fiber *srv = lacuna_go(tcp_server, &t);
    lacuna_fiber *cli = lacuna_go(tcp_client, &t);
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(cli) == NULL);
    CHECK(lacuna_join(srv) != NULL);
    close(t.listen_fd);
}

static void *busy_waiter(void *arg)
{
    int fd = *(int *)arg;
    return (void *)(uintptr_t)lacuna_fd_wait(fd, POLLIN, 50);
}

/* Two fibers wait for input on one pipe; a third writes: both wake (neither times out). */
static void *pipe_waiter(void *arg)
{
    int fd = *(int *)arg;
    return (void *)(uintptr_t)lacuna_fd_wait(fd, POLLIN, 5000);
}

static void *pipe_feeder(void *arg)
{
    int fd = *(int *)arg;
    CHECK_EQ(write(fd, "x", 1), 1);
    return NULL;
}

TEST(fd_wait_two_waiters_on_one_fd)
{
    int p[2];
    CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
    lacuna_fiber *a = lacuna_go(pipe_waiter, &p[0]);
    lacuna_fiber *b = lacuna_go(pipe_waiter, &p[0]);
    lacuna_fiber *c = lacuna_go(pipe_feeder, &p[1]); /* runs once both are parked */
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ((uintptr_t)lacuna_join(a), 0);
    CHECK_EQ((uintptr_t)lacuna_join(b), 0);
    lacuna_join(c);
    close(p[0]);
    close(p[1]);
}

/* A reader and a writer of one socket, both parked on it at once: the writer because the send
 * buffer is full, the reader because nothing came yet. The peer drains and answers; both wake. */
typedef struct duplex {
    int fd, peer;
    int woke_in, woke_out; /* lacuna_fd_wait's results; -1 = not yet */
} duplex;

static void *duplex_reader(void *arg)
{
    duplex *d = arg;
    d->woke_in = lacuna_fd_wait(d->fd, POLLIN, 5000);
    char c;
    CHECK_EQ(read(d->fd, &c, 1), 1);
    return NULL;
}

static void *duplex_writer(void *arg)
{
    duplex *d = arg;
    d->woke_out = lacuna_fd_wait(d->fd, POLLOUT, 5000);
    return NULL;
}

static void *duplex_peer(void *arg)
{
    duplex *d = arg;
    CHECK(d->woke_in == -1 && d->woke_out == -1); /* both parked on d->fd */
    char buf[4096];                               /* a fiber's stack is 64 KiB */
    while (read(d->peer, buf, sizeof buf) > 0)    /* drain: room to write again */
        ;
    CHECK_EQ(write(d->peer, "x", 1), 1); /* and something to read */
    return NULL;
}

/* Open descriptors of this process. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n; /* counts ".", ".." and the directory's own fd alike every time */
}

TEST(fd_wait_reader_and_writer_of_one_socket)
{
    /* One worker: the peer must run only once reader and writer are both parked, and it counts
     * this worker's descriptors (its epoll, the dups); with two the order is the workers'. */
    lacuna_set_workers(1);
    /* The thread's epoll instance first (a wait that times out), so it is not what changes the
     * descriptor table below. */
    int dummy[2];
    CHECK_EQ(pipe2(dummy, O_NONBLOCK), 0);
    lacuna_fiber *warm = lacuna_go(busy_waiter, &dummy[0]);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ((uintptr_t)lacuna_join(warm), ETIMEDOUT);
    close(dummy[0]);
    close(dummy[1]);
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    char buf[4096] = {0};
    while (write(sv[0], buf, sizeof buf) > 0) /* fill sv[0]'s send buffer */
        ;
    CHECK_EQ(errno, EAGAIN);
    int fds_before = open_fds();
    duplex d = {sv[0], sv[1], -1, -1};
    lacuna_fiber *r = lacuna_go(duplex_reader, &d);
    lacuna_fiber *w = lacuna_go(duplex_writer, &d);
    lacuna_fiber *p = lacuna_go(duplex_peer, &d);
    CHECK_EQ(lacuna_run(), 0);
    lacuna_join(r), lacuna_join(w), lacuna_join(p);
    CHECK_EQ(d.woke_in, 0);
    CHECK_EQ(d.woke_out, 0);
    CHECK_EQ(open_fds(), fds_before); /* the dup of the second wait is closed again */
    close(sv[0]);
    close(sv[1]);
}

/* ---- two OS threads ---------------------------------------------------------------------- */

typedef struct thread_arg {
    lacuna_fiber *handle; /* a fiber of this thread, for the other's cross-thread misuse checks */
    struct thread_arg *other;
    pthread_barrier_t *bar;
    long sum;
} thread_arg;

static void *chain(void *arg)
{
    lacuna_chan *c = arg;
    int v;
    if (lacuna_chan_recv(c, &v) != 0)
        return NULL; /* closed */
    lacuna_yield();
    return (void *)(uintptr_t)(v + 1);
}

static void *thread_fibers(void *arg)
{
    thread_arg *t = arg;
    enum { N = 2000 };
    lacuna_chan *c = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *f[N];
    for (int i = 0; i < N; i++)
        f[i] = lacuna_go(chain, c);
    t->handle = f[0];
    pthread_barrier_wait(t->bar);
    for (int round = 0; round < 20; round++) {
        lacuna_fiber *g[N];
        for (int i = 0; i < N; i++) {
            int v = i;
            while (lacuna_chan_send(c, &v) == EPERM) /* no receiver waits yet: run them */
                CHECK_EQ(lacuna_run(), EDEADLK);
        }
        for (int i = 0; i < N; i++) {
            t->sum += (long)lacuna_join(f[i]);
            g[i] = lacuna_go(chain, c);
        }
        memcpy(f, g, sizeof f);
    }
    pthread_barrier_wait(t->bar);
    CHECK_EQ(lacuna_chan_close(c), 0);
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < N; i++)
        CHECK(lacuna_join(f[i]) == NULL); /* woken by the close */
    CHECK_EQ(lacuna_chan_free(c), 0);
    return NULL;
}

TEST(two_threads_share_the_pool)
{
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    thread_arg a = {.bar = &bar}, b = {.bar = &bar};
    a.other = &b;
    b.other = &a;
    pthread_t ta, tb;
    CHECK_EQ(pthread_create(&ta, NULL, thread_fibers, &a), 0);
    CHECK_EQ(pthread_create(&tb, NULL, thread_fibers, &b), 0);
    CHECK_EQ(pthread_join(ta, NULL), 0);
    CHECK_EQ(pthread_join(tb, NULL), 0);
    long want = 20L * (2000L * 1999 / 2 + 2000);
    CHECK_EQ(a.sum, want);
    CHECK_EQ(b.sum, want);
    pool_idle();
}
