/* Timeouts are deadlines: a periodic signal, delivered faster than the timeout to a handler
 * installed without SA_RESTART (so every blocking call underneath returns EINTR), must not keep
 * lacuna_fd_wait or lacuna_sleep_ms from ending. Each test is bounded by an alarm of several
 * seconds: a hang check, not a timing assertion. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static _Atomic int ticks; /* lock-free: signal-safe, and the handler runs on any worker */

static void on_tick(int sig)
{
    (void)sig;
    atomic_fetch_add_explicit(&ticks, 1, memory_order_relaxed);
}

/* SIGUSR1 every 2 ms from now on (the process ends with the test). */
static void periodic_signal(void)
{
    struct sigaction sa = {.sa_handler = on_tick}; /* no SA_RESTART: calls return EINTR */
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    timer_t t;
    CHECK_EQ(timer_create(CLOCK_MONOTONIC, &sev, &t), 0);
    struct itimerspec every = {.it_interval = {0, 2000000}, .it_value = {0, 2000000}};
    CHECK_EQ(timer_settime(t, 0, &every, NULL), 0);
    alarm(10);
}

TEST(thread_fd_wait_times_out_under_periodic_signals)
{
    int p[2];
    CHECK_EQ(pipe(p), 0);
    periodic_signal();
    CHECK_EQ(lacuna_fd_wait(p[0], POLLIN, 100), ETIMEDOUT);
    CHECK_EQ(lacuna_fd_wait(p[0], POLLIN, 1), ETIMEDOUT);
    CHECK_EQ(write(p[1], "x", 1), 1);
    CHECK_EQ(lacuna_fd_wait(p[0], POLLIN, -1), 0);
}

TEST(thread_sleep_ends_under_periodic_signals)
{
    periodic_signal();
    CHECK_EQ(lacuna_sleep_ms(100), 0);
}

static void *fiber_waits(void *arg)
{
    int fd = *(int *)arg;
    CHECK_EQ(lacuna_fd_wait(fd, POLLIN, 100), ETIMEDOUT);
    CHECK_EQ(lacuna_sleep_ms(50), 0);
    return NULL;
}

static void *fiber_sleeps(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++)
        CHECK_EQ(lacuna_sleep_ms(20), 0);
    return NULL;
}

TEST(fiber_waits_end_under_periodic_signals)
{
    int p[2];
    CHECK_EQ(pipe(p), 0);
    periodic_signal();
    lacuna_fiber *a = lacuna_go(fiber_waits, &p[0]);
    lacuna_fiber *b = lacuna_go(fiber_sleeps, NULL); /* the thread sleeps: no fd wait pends */
    CHECK_EQ(lacuna_run(), 0);
    CHECK(lacuna_join(a) == NULL);
    CHECK(lacuna_join(b) == NULL);
    CHECK(lacuna_join(lacuna_go(fiber_sleeps, NULL)) == NULL);
}
