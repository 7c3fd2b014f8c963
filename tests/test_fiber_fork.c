/* Fibers across fork() (from inside a fiber; while another thread holds the runtime's lock), and
 * overflow never silent: a fiber that recurses off its stack ends in
 * the overflow message and SIGSEGV, and the region below its guard is untouched — checked from the
 * parent, which reads the dying child's memory while it is stopped under ptrace. */
#define _GNU_SOURCE
#include "internal.h"
#include "lacuna.h"
#include "test.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fork from inside a fiber ---- */

static int inherited_pipe[2];
static int inherited_wait = -1; /* lacuna_fd_wait result of the fiber parked at the fork */
static pid_t child_pid = -1;    /* 0 in the child */
static int child_ok;

static void *parked(void *arg)
{
    (void)arg;
    inherited_wait = lacuna_fd_wait(inherited_pipe[0], POLLIN, 300);
    return NULL;
}

static void *adder(void *arg)
{
    long one = 1;
    lacuna_chan_send(arg, &one);
    return NULL;
}

static void *add_one_fiber(void *arg)
{
    return (void *)((uintptr_t)arg + 1);
}

static int wake_fd = -1;
static void *wake_later(void *arg)
{
    (void)arg;
    lacuna_sleep_ms(5);
    return (void *)(intptr_t)write(wake_fd, "x", 1);
}

static void *forker(void *arg)
{
    (void)arg;
    child_pid = fork();
    if (child_pid != 0)
        return NULL;
    /* The child: new fibers, channels, sleeps and fd waits all work on the inherited runtime. */
    lacuna_chan *c = lacuna_chan_make(sizeof(long), 0);
    for (int i = 0; i < 1000; i++)
        lacuna_detach(lacuna_go(adder, c));
    long v, sum = 0;
    for (int i = 0; i < 1000; i++)
        if (lacuna_chan_recv(c, &v) == 0)
            sum += v;
    lacuna_chan_free(c);
    int q[2];
    CHECK_EQ(pipe(q), 0);
    wake_fd = q[1];
    lacuna_fiber *w = lacuna_go(wake_later, NULL);
    int waited = lacuna_fd_wait(q[0], POLLIN, 5000); /* in the child's own epoll */
    lacuna_join(w);
    lacuna_stats st;
    lacuna_pool_stats(lacuna_fiber_pool(), &st);
    child_ok = sum == 1000 && waited == 0 && lacuna_trim(lacuna_fiber_pool()) == 0;
    return NULL;
}

/* The parent keeps waiting on fds of its own while the child runs: with a shared epoll instance
 * one process would take the other's wake-ups and hang. */
static void *parent_io(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++) {
        int q[2];
        CHECK_EQ(pipe(q), 0);
        CHECK_EQ(write(q[1], "y", 1), 1);
        CHECK_EQ(lacuna_fd_wait(q[0], POLLIN, 5000), 0);
        close(q[0]);
        close(q[1]);
        lacuna_sleep_ms(1);
    }
    return NULL;
}

TEST(fork_inside_a_fiber)
{
#if LT_SANITIZED
    SKIP("fork of a process with fibers under a sanitizer runtime: covered by the plain build");
#endif
    /* One worker: the child of a fork from a fiber has only the forking thread; with several
     * workers the fibers parked on the others stay with them (fiber.h: exec or _exit there).
     * fork_inside_a_fiber_on_two_workers covers that case. */
    CHECK_EQ(lacuna_set_workers(1), 0);
    CHECK_EQ(pipe(inherited_pipe), 0);
    lacuna_detach(lacuna_go_named("parked", parked, NULL));
    lacuna_detach(lacuna_go_named("forker", forker, NULL));
    if (child_pid != 0)
        lacuna_detach(lacuna_go_named("parent-io", parent_io, NULL));
    CHECK_EQ(lacuna_run(), 0);
    if (child_pid == 0) {
        /* the fiber parked at the fork timed out in the child too (nobody wrote) */
        _exit(child_ok && inherited_wait == ETIMEDOUT ? 0 : 3);
    }
    CHECK(child_pid > 0);
    CHECK_EQ(inherited_wait, ETIMEDOUT);
    int status;
    CHECK_EQ(waitpid(child_pid, &status, 0), child_pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
}

/* With two workers the child of a fork from a fiber may _exit (or exec) at once, wherever the
 * fiber ran: the fork neither hangs nor crashes, and the parent's runtime goes on. */
static void *fork_and_exit(void *arg)
{
    (void)arg;
    pid_t pid = fork();
    if (pid == 0)
        _exit(lacuna_worker_id() >= 0 ? 0 : 3);
    int status = -1;
    CHECK_EQ(waitpid(pid, &status, 0), pid); /* blocks this worker: fine for a test */
    return (void *)(intptr_t)(WIFEXITED(status) ? WEXITSTATUS(status) : 99);
}

static void *busy_yielder(void *arg)
{
    for (int i = 0; i < 2000; i++)
        lacuna_yield();
    return arg;
}

TEST(fork_inside_a_fiber_on_two_workers)
{
#if LT_SANITIZED
    SKIP("fork of a process with fibers under a sanitizer runtime: covered by the plain build");
#endif
    CHECK_EQ(lacuna_set_workers(2), 0);
    lacuna_fiber *f[8];
    for (int i = 0; i < 8; i++)
        f[i] = lacuna_go(i % 2 ? busy_yielder : fork_and_exit, NULL);
    CHECK_EQ(lacuna_run(), 0);
    for (int i = 0; i < 8; i++)
        CHECK((intptr_t)lacuna_join(f[i]) == 0);
}

/* ---- fork while another thread holds the fiber runtime's lock ---- */

/* In a forked child: the first spawn and run of the child's runtime must complete (a lock
 * inherited locked would hang it: the alarm ends that). Returns the child's wait status. */
static int spawn_in_child(pid_t pid)
{
    if (pid == 0) {
        alarm(10);
        lacuna_fiber *f = lacuna_go(add_one_fiber, (void *)41);
        _exit(f && lacuna_run() == 0 && (uintptr_t)lacuna_join(f) == 42 ? 0 : 3);
    }
    int status = -1;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    return status;
}

static pthread_mutex_t forked_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t forked_cond = PTHREAD_COND_INITIALIZER;
static int forked;

/* Holds the runtime's lock (as any call that creates the pool or refills control blocks does)
 * until the main thread's fork has returned, or 300 ms: with the fork hooks in place the fork
 * waits for the lock, so it is the timeout that lets go. */
static void *lock_holder(void *arg)
{
    lac_fiber_fork_prepare();
    pthread_barrier_wait(arg);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 300 * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&forked_lock);
    while (!forked && pthread_cond_timedwait(&forked_cond, &forked_lock, &until) == 0)
        ;
    pthread_mutex_unlock(&forked_lock);
    lac_fiber_fork_parent();
    return NULL;
}

TEST(fork_while_another_thread_holds_the_runtime_lock)
{
#if LT_SANITIZED
    SKIP("fork of a threaded process under a sanitizer runtime: covered by the plain build");
#endif
    CHECK_EQ((uintptr_t)lacuna_join(lacuna_go(add_one_fiber, (void *)1)), 2); /* pool exists */
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, lock_holder, &bar), 0);
    pthread_barrier_wait(&bar);
    pid_t pid = fork();
    if (pid != 0) {
        pthread_mutex_lock(&forked_lock);
        forked = 1;
        pthread_cond_signal(&forked_cond);
        pthread_mutex_unlock(&forked_lock);
    }
    int status = spawn_in_child(pid);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
}

/* The same with the lock taken by a public call, over and over, on another thread. */
static void *configure_again_and_again(void *arg)
{
    lacuna_pool_config c = {.region_size = 64 * 1024};
    while (!atomic_load((_Atomic int *)arg))
        CHECK_EQ(lacuna_fiber_configure(&c), EBUSY); /* takes and drops the runtime's lock */
    return NULL;
}

TEST(fork_while_another_thread_uses_the_runtime)
{
#if LT_SANITIZED
    SKIP("fork of a threaded process under a sanitizer runtime: covered by the plain build");
#endif
    CHECK(lacuna_join(lacuna_go(add_one_fiber, NULL)) != NULL);
    _Atomic int stop = 0;
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, configure_again_and_again, &stop), 0);
    for (int i = 0; i < 100; i++) {
        int status = spawn_in_child(fork());
        CHECK(WIFEXITED(status));
        CHECK_EQ(WEXITSTATUS(status), 0);
    }
    atomic_store(&stop, 1);
    CHECK_EQ(pthread_join(t, NULL), 0);
}

/* ---- overflow into the guard, watched from the parent ---- */

#define CANARY 0xC5

static int depth(int n)
{
    volatile char frame[1024]; /* < one guard page: the recursion cannot jump over the guard */
    for (size_t i = 0; i < sizeof frame; i += 256)
        frame[i] = (char)n;
    return n == 0 ? 0 : depth(n - 1) + frame[0];
}

static void *deep(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)depth(1 << 20);
}

static void overflowing_child(int report_fd)
{
    CHECK_EQ(ptrace(PTRACE_TRACEME, 0, NULL, NULL), 0);
    lacuna_pool_config cfg = {.region_size = 64 * 1024, .capacity = 64};
    CHECK_EQ(lacuna_fiber_configure(&cfg), 0);
    /* Fresh slots go out in address order: the neighbour is the slot just below the fiber's. */
    char *neighbour = lacuna_alloc(lacuna_fiber_pool());
    memset(neighbour, CANARY, 64 * 1024);
    CHECK(write(report_fd, &neighbour, sizeof neighbour) == sizeof neighbour);
    lacuna_fiber *f = lacuna_go_named("deep", deep, NULL);
    lacuna_join(f);
    _exit(0); /* not reached */
}

TEST(overflow_spares_the_neighbour)
{
#if LT_SANITIZED
    SKIP("ptrace and a deliberate overflow under a sanitizer runtime: covered by the plain build");
#endif
    int rep[2], err[2];
    CHECK_EQ(pipe(rep), 0);
    CHECK_EQ(pipe(err), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(err[1], 2);
        overflowing_child(rep[1]);
    }
    close(rep[1]);
    close(err[1]);
    char *neighbour = NULL;
    CHECK(read(rep[0], &neighbour, sizeof neighbour) == sizeof neighbour);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
    int segvs = 0, status;
    static unsigned char seen[64 * 1024];
    for (;;) {
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFSTOPPED(status))
            break;
        int sig = WSTOPSIG(status);
        if (sig == SIGSEGV) { /* the child is stopped at its fault: read the neighbour now */
            segvs++;
            int mem = open(path, O_RDONLY);
            CHECK(mem >= 0);
            CHECK_EQ(pread(mem, seen, sizeof seen, (off_t)(uintptr_t)neighbour), sizeof seen);
            close(mem);
            for (size_t i = 0; i < sizeof seen; i++)
                CHECK_EQ(seen[i], CANARY);
        }
        CHECK_EQ(ptrace(PTRACE_CONT, pid, NULL, (void *)(intptr_t)sig), 0);
    }
    char msg[4096];
    ssize_t n = read(err[0], msg, sizeof msg - 1);
    msg[n > 0 ? n : 0] = '\0';
    CHECK(WIFSIGNALED(status));
    CHECK_EQ(WTERMSIG(status), SIGSEGV);
    CHECK(segvs >= 1); /* the fault in the guard (and the re-fault after the report) */
    if (!strstr(msg, "lacuna: stack overflow in fiber \"deep\" (region ")) {
        fprintf(stderr, "child stderr: %s\n", msg);
        CHECK(0);
    }
}
