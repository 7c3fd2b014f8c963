/* A TCP echo server: one fiber per connection, each blocking only itself in lacuna_fd_wait while
 * the others run, on as many worker threads as the process has CPUs (--workers to change it). Every
 * fiber has its own guarded 64 KiB stack from the pool, and gives it back when its connection ends.
 *
 *   cc echo.c tools/cli.c -Itools $(pkg-config --cflags --libs lacuna) \
 *      -Wl,-rpath,$HOME/.local/lib -o echo          (tools/cli.c: the options parser)
 *   ./echo --port 7000
 *
 * Prints "listening on 127.0.0.1:PORT" (--port 0 picks a free port). With --max N it accepts N
 * connections, serves them until they close, prints "served N connections, at most M at once"
 * and exits (tests/test_fiber_echo.c drives it that way with 10,000 clients).
 */
#define _GNU_SOURCE
#include "cli.h"
#include <lacuna.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connections run on every worker: the counters are atomic. */
static _Atomic long open_now, open_peak, served;

/* Write all of buf, waiting for room when the socket is full. 0 or errno. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EAGAIN) {
            int err = lacuna_fd_wait(fd, POLLOUT, -1);
            if (err)
                return err;
            continue;
        }
        if (n < 0)
            return errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void *connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN) {
            if (lacuna_fd_wait(fd, POLLIN, -1) != 0)
                break;
            continue;
        }
        if (n <= 0 || write_all(fd, buf, (size_t)n) != 0)
            break; /* end of stream, reset, or error: this connection is done */
    }
    close(fd);
    atomic_fetch_sub(&open_now, 1);
    atomic_fetch_add(&served, 1);
    return NULL;
}

typedef struct {
    int listen_fd;
    long max; /* connections to accept, 0 = forever */
} server;

static void *acceptor(void *arg)
{
    server *s = arg;
    for (long accepted = 0; s->max == 0 || accepted < s->max;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == ECONNABORTED || errno == EINTR) {
                lacuna_fd_wait(s->listen_fd, POLLIN, -1);
                continue;
            }
            perror("accept4");
            lacuna_sleep_ms(10); /* EMFILE and friends: let connections close */
            continue;
        }
        char name[LACUNA_FIBER_NAME_MAX];
        snprintf(name, sizeof name, "echo fd %d", fd);
        lacuna_fiber *f = lacuna_go_named(name, connection, (void *)(intptr_t)fd);
        if (f == NULL) {
            perror("lacuna_go");
            close(fd);
            continue;
        }
        lacuna_detach(f);
        accepted++;
        long now = atomic_fetch_add(&open_now, 1) + 1, peak = atomic_load(&open_peak);
        while (now > peak && !atomic_compare_exchange_weak(&open_peak, &peak, now))
            ;
    }
    close(s->listen_fd);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t port = 7000, max = 0, workers = 0;
    const cli_opt opts[] = {
        {"workers", CLI_COUNT, &workers, 0, LACUNA_WORKERS_MAX,
         "worker threads (0: one per CPU the process may use)", NULL},
        {"port", CLI_COUNT, &port, 0, 65535, "TCP port on 127.0.0.1 (0: any free port)", NULL},
        {"max", CLI_COUNT, &max, 0, 1000000000, "connections to serve, then exit (0: forever)",
         NULL},
        {0}};
    cli_spec spec = {"example_echo", "A TCP echo server: one fiber per connection.", opts, NULL,
                     NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    server s = {.max = (long)max};
    lacuna_set_workers((unsigned)workers);
    /* One descriptor per connection: use all the process may have. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    s.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.listen_fd < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(s.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(s.listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s.listen_fd, 4096) != 0 ||
        getsockname(s.listen_fd, (struct sockaddr *)&a, &len) != 0) {
        perror("bind/listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    lacuna_fiber *f = lacuna_go_named("acceptor", acceptor, &s);
    if (f == NULL) {
        perror("lacuna_go");
        return 1;
    }
    lacuna_detach(f);
    int err = lacuna_run(); /* returns once the acceptor and every connection have ended */
    if (err) {
        fprintf(stderr, "lacuna_run: %s\n", strerror(err));
        return 1;
    }
    printf("served %ld connections, at most %ld at once\n", atomic_load(&served),
           atomic_load(&open_peak));
    return 0;
}
