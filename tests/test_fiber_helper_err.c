/* A helper worker whose own epoll fails (it cannot make one at the fd limit; its descriptor is
 * closed under it) while it holds sleeping fibers and fd waits: they are not lost. At the limit
 * it naps between its timers and the run completes; if the home cannot make its epoll either,
 * or the helper's epoll_wait fails, lacuna_run reports the error, what the helper held moves to
 * the home, and the next lacuna_run ends it all. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#define NSLEEP 8 /* sleepers the helper holds */

static const lacuna_fiber_opts pinned = {.flags = LACUNA_FIBER_PINNED};

/* ---- two seats: one fiber on the home (worker 0), one on the helper (worker 1) ----------------
 */

static _Atomic int seated;
static void (*home_part)(void), (*helper_part)(void);

static void spin_until(_Atomic int *flag, int value)
{
    uint64_t give_up = lacuna_now_ns() + 20000000000u; /* a hang fails, it does not time */
    while (atomic_load(flag) < value)
        CHECK(lacuna_now_ns() < give_up);
}

/* Spawned twice from thread context. Each spins (never yields) until both run, which they can only
 * do on two workers: the helper steals one from the home's queue before it ever goes idle. */
static void *seat(void *arg)
{
    (void)arg;
    atomic_fetch_add(&seated, 1);
    spin_until(&seated, 2);
    int w = lacuna_worker_id();
    CHECK(w == 0 || w == 1);
    (w == 0 ? home_part : helper_part)();
    return NULL;
}

static void seats(void (*home)(void), void (*helper)(void))
{
    CHECK_EQ(lacuna_set_workers(2), 0);
    alarm(60); /* on the code that lost them, the home sleeps for ever */
    home_part = home;
    helper_part = helper;
    CHECK_EQ(lacuna_detach(lacuna_go(seat, NULL)), 0);
    CHECK_EQ(lacuna_detach(lacuna_go(seat, NULL)), 0);
}

/* No new fd from now on: the soft RLIMIT_NOFILE is the lowest free descriptor. */
static struct rlimit fd_limit_saved;

static void fds_exhaust(void)
{
    int n = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(n >= 0);
    close(n);
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &fd_limit_saved), 0);
    struct rlimit r = fd_limit_saved;
    r.rlim_cur = (rlim_t)n;
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &r), 0);
    CHECK(open("/dev/null", O_RDONLY) < 0 && errno == EMFILE);
}

static void fds_restore(void)
{
    CHECK_EQ(setrlimit(RLIMIT_NOFILE, &fd_limit_saved), 0);
}

/* The epoll instance watching fd (a descriptor of this process whose fdinfo lists fd as a
 * target), or with fd -1 how many epoll instances this process has. */
static int epoll_watching(int fd)
{
    int count = 0;
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int found = -1;
    for (struct dirent *e; found < 0 && (e = readdir(d)) != NULL;) {
        char path[64], link[64], line[256];
        int n = atoi(e->d_name);
        snprintf(path, sizeof path, "/proc/self/fd/%d", n);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len < 0)
            continue;
        link[len] = '\0';
        if (strcmp(link, "anon_inode:[eventpoll]") != 0)
            continue;
        count++;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", n);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        int t;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "tfd: %d", &t) == 1 && t == fd)
                found = n;
        fclose(f);
    }
    closedir(d);
    return fd < 0 ? count : found;
}

/* ---- the fibers the helper holds ------------------------------------------------------------ */

static _Atomic int slept, cancelled, home_ready, helper_ready;
static lacuna_fiber *sleepers[NSLEEP];
static int pipefd[2];
static _Atomic int fd_waited = -1; /* lacuna_fd_wait's result */

/* Sleeps arg ms three times, pinned to the helper; counts itself when all three end on time. */
static void *sleeper(void *arg)
{
    unsigned ms = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < 3; i++) {
        uint64_t due = lacuna_now_ns() + ms * 1000000ull;
        int err = lacuna_sleep_ms(ms);
        if (err == ECANCELED) {
            atomic_fetch_add(&cancelled, 1);
            return NULL;
        }
        CHECK_EQ(err, 0);
        CHECK(lacuna_now_ns() >= due);
    }
    atomic_fetch_add(&slept, 1);
    return NULL;
}

static void sleepers_start(unsigned ms_short, unsigned ms_long)
{
    for (int i = 0; i < NSLEEP; i++) {
        uintptr_t ms = i % 2 ? ms_long : ms_short;
        sleepers[i] = lacuna_go_opts(&pinned, sleeper, (void *)ms); /* runs now, sleeps */
        CHECK(sleepers[i] != NULL);
        CHECK_EQ(lacuna_detach(sleepers[i]), 0);
    }
}

static void *fd_waiter(void *arg)
{
    (void)arg;
    atomic_store(&fd_waited, lacuna_fd_wait(pipefd[0], POLLIN, -1));
    return NULL;
}

/* ---- a helper at the fd limit --------------------------------------------------------------- */

static void limit_home(void)
{
    CHECK_EQ(lacuna_sleep_ms(1), 0); /* the home idles: it makes its epoll and eventfd now */
    atomic_store(&home_ready, 1);
}

/* Pinned to the helper too: once the sleepers are done, fds are freed, and the helper's next
 * idle makes its epoll after all. */
static void *recoverer(void *arg)
{
    (void)arg;
    while (atomic_load(&slept) < NSLEEP)
        CHECK_EQ(lacuna_sleep_ms(1), 0);
    fds_restore();
    CHECK_EQ(epoll_watching(-1), 1); /* the home's: this worker has not been idle since */
    CHECK_EQ(lacuna_sleep_ms(2), 0);
    CHECK_EQ(epoll_watching(-1), 2);
    CHECK_EQ(lacuna_worker_id(), 1);
    return NULL;
}

static void limit_helper(void)
{
    spin_until(&home_ready, 1);
    fds_exhaust();         /* before the helper's first idle: it cannot make its epoll */
    sleepers_start(5, 10); /* they wake on the helper, which must not leave */
    CHECK_EQ(lacuna_detach(lacuna_go_opts(&pinned, recoverer, NULL)), 0);
}

TEST(helper_at_the_fd_limit_keeps_its_sleepers)
{
    seats(limit_home, limit_helper);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(atomic_load(&slept), NSLEEP);
}

/* ---- the home at the fd limit too: the run fails, its second run ends what the helper held ----
 */

static void both_home(void)
{
    spin_until(&helper_ready, 1); /* then the home idles: no epoll, lacuna_run returns EMFILE */
}

static void both_helper(void)
{
    CHECK_EQ(pipe2(pipefd, O_CLOEXEC), 0);
    CHECK_EQ(lacuna_detach(lacuna_go_opts(&pinned, fd_waiter, NULL)), 0); /* its epoll: made */
    fds_exhaust();
    sleepers_start(5, 60000); /* the long ones are cancelled between the runs */
    atomic_store(&helper_ready, 1);
}

TEST(home_and_helper_at_the_fd_limit_a_second_run_ends_the_helpers_waits)
{
    seats(both_home, both_helper);
    CHECK_EQ(lacuna_run(), EMFILE);
    CHECK_EQ(atomic_load(&cancelled), 0);
    /* The fd wait could not follow to the home, which has no epoll: it ended with that errno,
     * and its fiber ran to its end in this run, or runs in the next. Cancelled here, from a plain
     * thread: each long sleep's timer must be found where it went. */
    for (int i = 1; i < NSLEEP; i += 2)
        CHECK_EQ(lacuna_cancel(sleepers[i]), 0);
    fds_restore();
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(atomic_load(&fd_waited), EMFILE);
    CHECK_EQ(atomic_load(&slept), NSLEEP / 2);
    CHECK_EQ(atomic_load(&cancelled), NSLEEP / 2);
}

/* ---- the helper's epoll closed under it ------------------------------------------------------ */

static int stolen_fd = -1; /* the helper's epoll number, now /dev/null's */

static void *first_idle(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_sleep_ms(2), 0); /* the helper idles: its eventfd too */
    return NULL;
}

static void closed_home(void) {}

static void closed_helper(void)
{
    CHECK_EQ(lacuna_join(lacuna_go_opts(&pinned, first_idle, NULL)), NULL);
    CHECK_EQ(pipe2(pipefd, O_CLOEXEC), 0);
    CHECK_EQ(lacuna_detach(lacuna_go_opts(&pinned, fd_waiter, NULL)), 0);
    sleepers_start(5, 60000);
    stolen_fd = epoll_watching(pipefd[0]);
    CHECK(stolen_fd >= 0);
    /* The program closes the helper's epoll, and the number is reused: the helper's next
     * epoll_wait fails (EINVAL), and the number is no longer the runtime's to close. */
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(null >= 0);
    CHECK_EQ(dup2(null, stolen_fd), stolen_fd);
    close(null);
}

TEST(helper_epoll_closed_under_it_its_waits_move_to_the_home)
{
    seats(closed_home, closed_helper);
    CHECK_EQ(lacuna_run(), EINVAL);
    CHECK(fcntl(stolen_fd, F_GETFD) >= 0); /* still /dev/null: not closed as the helper's epoll */
    CHECK_EQ(atomic_load(&cancelled), 0);
    CHECK_EQ(atomic_load(&fd_waited), -1);
    for (int i = 1; i < NSLEEP; i += 2)
        CHECK_EQ(lacuna_cancel(sleepers[i]), 0);
    CHECK_EQ(write(pipefd[1], "x", 1), 1); /* the fd wait, now on the home's epoll, ends */
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(atomic_load(&fd_waited), 0);
    CHECK_EQ(atomic_load(&slept), NSLEEP / 2);
    CHECK_EQ(atomic_load(&cancelled), NSLEEP / 2);
    close(stolen_fd);
    close(pipefd[0]);
    close(pipefd[1]);
}
