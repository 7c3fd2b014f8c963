/* examples/echo.c serving 10,000 concurrent loopback connections from one thread, each a fiber.
 * The client is this process: 10,000 fibers on one thread, each connects, has one message echoed,
 * then waits until ALL of them are connected (so the server holds 10,000 at once), has a second
 * message echoed, and resets its connection. The server reports its peak; it must be 10,000. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef LT_ECHO_SERVER
#error "LT_ECHO_SERVER: path of the echo server binary, set by tests/CMakeLists.txt"
#endif

enum { CLIENTS = 10000 };

static int port;
static _Atomic long connected, verified; /* clients run on every worker */
static lacuna_chan *all_connected;       /* closed by the last client to connect: a barrier */

static void exchange(int fd, int i, const char *what)
{
    char msg[64], back[64];
    int len = snprintf(msg, sizeof msg, "%s from client %d\n", what, i);
    CHECK_EQ(write(fd, msg, (size_t)len), len); /* an empty socket buffer takes 64 bytes */
    int got = 0;
    while (got < len) {
        ssize_t n = read(fd, back + got, sizeof back - (size_t)got);
        if (n < 0 && errno == EAGAIN) {
            CHECK_EQ(lacuna_fd_wait(fd, POLLIN, -1), 0);
            continue;
        }
        CHECK(n > 0);
        got += (int)n;
    }
    CHECK_EQ(got, len);
    CHECK(memcmp(msg, back, (size_t)len) == 0);
}

static void *client(void *arg)
{
    int i = (int)(intptr_t)arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        CHECK_EQ(errno, EINPROGRESS);
        CHECK_EQ(lacuna_fd_wait(fd, POLLOUT, -1), 0);
        int err = -1;
        socklen_t len = sizeof err;
        CHECK_EQ(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
        CHECK_EQ(err, 0);
    }
    exchange(fd, i, "hello");
    if (atomic_fetch_add(&connected, 1) + 1 == CLIENTS) {
        CHECK_EQ(lacuna_chan_close(all_connected), 0);
    } else {
        char unused;
        CHECK_EQ(lacuna_chan_recv(all_connected, &unused), EPIPE); /* wait for the close */
    }
    exchange(fd, i, "goodbye");
    verified++;
    /* Reset instead of FIN: no TIME_WAIT, so repeated runs do not run out of local ports. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
    return NULL;
}

/* Clients connect at most IN_FLIGHT ahead of the server's echoes. Without a limit, 10,000 connects
 * in one burst can overflow the server's accept queue (4096) when the server is slow to run: the
 * kernel drops those SYNs and the client retries after 1, 2, 4 ... s (connect fails with
 * ETIMEDOUT after ~2 min), so the test's time, and at worst its result, would depend on the
 * machine's load. All 10,000 are still held at once: nobody leaves before the barrier. */
enum { IN_FLIGHT = 1024 };

static void *spawn_clients(void *arg)
{
    (void)arg;
    for (int i = 0; i < CLIENTS; i++) {
        while (i - connected > IN_FLIGHT)
            CHECK_EQ(lacuna_sleep_ms(1), 0);
        CHECK_EQ(lacuna_detach(lacuna_go(client, (void *)(intptr_t)i)), 0);
    }
    return NULL;
}

TEST(echo_10000_concurrent_connections)
{
    struct rlimit rl;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < CLIENTS + 64)
        SKIP("RLIMIT_NOFILE hard limit is %llu, the echo test needs %d descriptors per process",
             (unsigned long long)rl.rlim_max, CLIENTS + 64);

    int out[2];
    CHECK_EQ(pipe(out), 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed or timed-out test takes the server along */
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(LT_ECHO_SERVER, LT_ECHO_SERVER, "--port", "0", "--max", "10000", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    FILE *from_server = fdopen(out[0], "r");
    CHECK(from_server != NULL);
    char line[256];
    CHECK(fgets(line, sizeof line, from_server) != NULL);
    CHECK_EQ(sscanf(line, "listening on 127.0.0.1:%d", &port), 1);

    all_connected = lacuna_chan_make(1, 0);
    CHECK(lacuna_join(lacuna_go(spawn_clients, NULL)) == NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(connected, CLIENTS);
    CHECK_EQ(verified, CLIENTS);
    CHECK_EQ(lacuna_chan_free(all_connected), 0);
    lacuna_stats st;
    lacuna_pool_stats(lacuna_fiber_pool(), &st);
    CHECK_EQ(st.live, 0);
    CHECK(st.used >= CLIENTS); /* all 10,000 client fibers were live at once, on their own stacks */

    CHECK(fgets(line, sizeof line, from_server) != NULL);
    long served = 0, peak = 0;
    CHECK_EQ(sscanf(line, "served %ld connections, at most %ld at once", &served, &peak), 2);
    CHECK_EQ(served, CLIENTS);
    CHECK_EQ(peak, CLIENTS);
    fclose(from_server);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
