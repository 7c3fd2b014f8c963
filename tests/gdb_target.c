/* gdb_target.c — the program tests/test_gdb.sh runs under gdb: named fibers parked in known
 * places, then lacuna_gdb_target_ready() (the breakpoint) called from one more running fiber.
 *
 *   recv-1, recv-2  parked in lacuna_chan_recv on one channel
 *   sleeper         parked in lacuna_sleep_ms (a timer)
 *   reader          parked in lacuna_fd_wait on a pipe that is never written
 *   deep            parked in lacuna_chan_recv under deep_a -> deep_b -> deep_c
 *   locker          parked in lacuna_mutex_lock on a mutex main holds
 *   group           parked in lacuna_waitgroup_wait
 *   marker          running: calls lacuna_gdb_target_ready
 *
 * One worker, so every fiber runs (and parks) in spawn order before the marker. Built -O0 -g, so
 * the deep chain keeps its frames. Past the marker the program exits 0 at once, or with the
 * argument "crash" aborts (a kernel core dump to read).
 */
#define _POSIX_C_SOURCE 200809L /* pipe */
#include <lacuna.h>

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static lacuna_chan *ch, *deep_ch;
static int pipefd[2];
static int crash; /* argv[1] "crash": abort at the marker, for a kernel core dump */
static lacuna_mutex mutex;
static lacuna_waitgroup group;

__attribute__((noinline)) void lacuna_gdb_target_ready(void);
__attribute__((noinline)) void lacuna_gdb_target_ready(void)
{
    __asm__ __volatile__("" ::: "memory");
}

static void *receiver(void *arg)
{
    int v;
    (void)arg;
    return lacuna_chan_recv(ch, &v) == 0 ? NULL : (void *)1;
}

static void *sleeper(void *arg)
{
    (void)arg;
    lacuna_sleep_ms(3600 * 1000); /* never due while the test looks: it stays parked */
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    return lacuna_fd_wait(pipefd[0], POLLIN, -1) == 0 ? NULL : (void *)1;
}

__attribute__((noinline)) static int deep_c(int depth)
{
    int v = depth;
    if (lacuna_chan_recv(deep_ch, &v) != 0)
        return -1;
    return v;
}

__attribute__((noinline)) static int deep_b(int depth)
{
    return deep_c(depth + 1) + 1;
}

__attribute__((noinline)) static int deep_a(int depth)
{
    return deep_b(depth + 1) + 1;
}

static void *deep(void *arg)
{
    (void)arg;
    return deep_a(1) >= 0 ? NULL : (void *)1;
}

static void *locker(void *arg)
{
    (void)arg;
    return lacuna_mutex_lock(&mutex) == 0 ? NULL : (void *)1;
}

static void *grouper(void *arg)
{
    (void)arg;
    return lacuna_waitgroup_wait(&group) == 0 ? NULL : (void *)1;
}

static void *marker(void *arg)
{
    (void)arg;
    lacuna_gdb_target_ready();
    if (crash)
        abort();
    exit(0); /* no fiber is ever released: they only have to be seen */
}

int main(int argc, char **argv)
{
    crash = argc > 1 && strcmp(argv[1], "crash") == 0;
    /* A small fixed pool: a core dump of this process stays small. */
    lacuna_pool_config pc = {.region_size = 64 << 10, .capacity = 16};
    if (lacuna_fiber_configure(&pc) || lacuna_set_workers(1) || pipe(pipefd) != 0 ||
        lacuna_mutex_init(&mutex) || lacuna_mutex_lock(&mutex) || lacuna_waitgroup_init(&group) ||
        lacuna_waitgroup_add(&group, 1))
        return 2;
    ch = lacuna_chan_make(sizeof(int), 0);
    deep_ch = lacuna_chan_make(sizeof(int), 0);
    if (ch == NULL || deep_ch == NULL)
        return 2;
    lacuna_fiber *f[8];
    f[0] = lacuna_go_named("recv-1", receiver, NULL);
    f[1] = lacuna_go_named("recv-2", receiver, NULL);
    f[2] = lacuna_go_named("sleeper", sleeper, NULL);
    f[3] = lacuna_go_named("reader", reader, NULL);
    f[4] = lacuna_go_named("deep", deep, NULL);
    f[5] = lacuna_go_named("locker", locker, NULL);
    f[6] = lacuna_go_named("group", grouper, NULL);
    f[7] = lacuna_go_named("marker", marker, NULL);
    for (int i = 0; i < 8; i++)
        if (f[i] == NULL)
            return 2;
    (void)lacuna_run(); /* never returns: the marker ends the process */
    return 1;
}
