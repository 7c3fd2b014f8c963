/* The stack a fiber's owner sized is theirs: the runtime's own work (freeing an ended fiber's
 * stack through the pool's slow path) runs on the thread's stack, and each public call needs no
 * more of the calling fiber's stack than include/lacuna/fiber.h says (measured here: the
 * stack below the call is filled with a pattern, and the deepest byte it no longer holds is the
 * depth the call reached). */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <alloca.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- an innocent fiber with little stack left, while another ends ------------------------- */

#define SMALL_STACK 8192
/* Left below the innocent's frames: enough for its yield (fiber.h: lacuna_yield) and memset,
 * not for the pool's slow path plus lazy binding (~4.4 KiB). Sanitizer runtimes need more for
 * their own frames (memset's interceptor, the switch annotations); there the test only checks
 * that nothing else runs on the innocent's stack. */
#define ROOM (LT_SANITIZED ? 4096 : 1536)

static uintptr_t region_top(void)
{
    /* The outermost frames of a fiber are within its top page; regions are page-aligned. */
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    return ((uintptr_t)__builtin_frame_address(0) & ~(pg - 1)) + pg;
}

/* The caller's stack pointer, near enough: this frame is right below the caller's. */
static __attribute__((noinline)) uintptr_t caller_sp(void)
{
    return (uintptr_t)__builtin_frame_address(0);
}

static void *ends_at_once(void *arg)
{
    return arg;
}

static void *innocent(void *arg)
{
    (void)arg;
    uintptr_t bottom = region_top() - SMALL_STACK;
    lacuna_pool *pool = lacuna_fiber_pool();
    CHECK_EQ(lacuna_region_index(pool, (void *)bottom), lacuna_region_index(pool, &bottom));
    size_t use = caller_sp() - bottom - ROOM - 64; /* 64: alloca's alignment and redzones */
    unsigned char *buf = alloca(use);
    memset(buf, 0x5a, use);
    /* The fiber spawned after this one runs now and ends; its stack goes back to a pool with no
     * cache, so the free takes the slow path and releases it: on the thread's stack. */
    lacuna_yield();
    for (size_t i = 0; i < use; i++)
        CHECK_EQ(buf[i], 0x5a);
    return NULL;
}

static void small_stacks_child(void *arg)
{
    (void)arg;
    /* One worker: the neighbour must run and end while the innocent is parked in its yield,
     * on the innocent's worker; with two, another worker may run it before or beside the
     * innocent, and the test would check nothing. */
    CHECK_EQ(lacuna_set_workers(1), 0);
    lacuna_pool_config pc = {.region_size = SMALL_STACK, .cache = LACUNA_CACHE_NONE};
    CHECK_EQ(lacuna_fiber_configure(&pc), 0);
    for (int round = 0; round < 3; round++) {
        lacuna_detach(lacuna_go_named("innocent", innocent, NULL));
        lacuna_detach(lacuna_go_named("ends-at-once", ends_at_once, NULL));
        CHECK_EQ(lacuna_run(), 0);
    }
}

TEST(innocent_fiber_survives_a_neighbour_ending)
{
    char err[4096];
    int status = lt_fork_run(small_stacks_child, NULL, err, sizeof err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child stderr: %s\n", err);
        CHECK(0);
    }
}

/* ---- stack each public call needs ----------------------------------------------------------- */

#define SPAN    (40 * 1024) /* bytes filled below the measuring frame (stacks are 64 KiB) */
#define PATTERN 0xa7

typedef void (*call_fn)(void *);

/* Bytes of stack below this frame that call(arg) touched. */
static __attribute__((noinline)) size_t depth_of(call_fn call, void *arg)
{
    volatile unsigned char *top = (unsigned char *)__builtin_frame_address(0) - 128;
    for (size_t i = 1; i <= SPAN; i++)
        top[-(ptrdiff_t)i] = PATTERN;
    call(arg);
    size_t i = SPAN;
    while (i > 0 && top[-(ptrdiff_t)i] == PATTERN)
        i--;
    return i + 128;
}

static void *idle(void *arg)
{
    return arg;
}

static void *yield_once(void *arg)
{
    lacuna_yield();
    return arg;
}

static void call_yield(void *arg)
{
    (void)arg;
    lacuna_yield();
}

static void call_go(void *arg)
{
    *(lacuna_fiber **)arg = lacuna_go(idle, NULL);
}

static void call_go_named(void *arg)
{
    *(lacuna_fiber **)arg = lacuna_go_named("a-fiber-with-a-name", yield_once, NULL);
}

static void call_join(void *arg)
{
    (void)lacuna_join(*(lacuna_fiber **)arg);
}

static void call_detach(void *arg)
{
    (void)lacuna_detach(*(lacuna_fiber **)arg);
}

static void call_self_and_name(void *arg)
{
    (void)arg;
    (void)lacuna_fiber_set_name(lacuna_self(), "renamed");
}

static void call_sleep(void *arg)
{
    (void)arg;
    CHECK_EQ(lacuna_sleep_ms(1), 0);
}

static void call_fd_wait(void *arg)
{
    CHECK_EQ(lacuna_fd_wait(*(int *)arg, POLLIN, 1), ETIMEDOUT);
}

static void call_chan_make(void *arg)
{
    *(lacuna_chan **)arg = lacuna_chan_make(sizeof(long), 4);
}

static void call_chan_send(void *arg)
{
    long v = 1;
    CHECK_EQ(lacuna_chan_send(*(lacuna_chan **)arg, &v), 0);
}

static void call_chan_recv(void *arg)
{
    long v;
    CHECK_EQ(lacuna_chan_recv(*(lacuna_chan **)arg, &v), 0);
}

static void call_chan_close_free(void *arg)
{
    CHECK_EQ(lacuna_chan_close(*(lacuna_chan **)arg), 0);
    CHECK_EQ(lacuna_chan_free(*(lacuna_chan **)arg), 0);
}

static void *chan_receiver(void *arg)
{
    long v;
    return (void *)(intptr_t)lacuna_chan_recv(arg, &v);
}

static void *chan_sender(void *arg)
{
    long v = 2;
    return (void *)(intptr_t)lacuna_chan_send(arg, &v);
}

static void *chan_later_sender(void *arg)
{
    lacuna_yield(); /* the spawner runs on, into its receive */
    return chan_sender(arg);
}

static void call_select(void *arg)
{
    long v = 0, w = 0;
    lacuna_select_case k[3] = {{*(lacuna_chan **)arg, &v, LACUNA_SELECT_RECV},
                               {NULL, &w, LACUNA_SELECT_RECV},
                               {*(lacuna_chan **)arg, &w, LACUNA_SELECT_RECV}};
    size_t i;
    CHECK_EQ(lacuna_select(k, 3, LACUNA_FOREVER, &i), 0);
}

static void call_recv_until(void *arg)
{
    long v;
    CHECK_EQ(lacuna_chan_recv_until(*(lacuna_chan **)arg, &v, lacuna_now_ns() + 100000), ETIMEDOUT);
}

static void call_cancel(void *arg)
{
    CHECK_EQ(lacuna_cancel(*(lacuna_fiber **)arg), 0);
}

/* The bounds include/lacuna/fiber.h documents, per call, in bytes. */
enum {
    B_YIELD = 512,
    B_JOIN = 512,
    B_DETACH = 512,
    B_SELF = 2048,
    B_CHAN = 2048,
    B_GO = 3072,
    B_SLEEP = 3072,
    B_FD_WAIT = 3072,
    B_SELECT = 3072,
};

typedef struct {
    const char *what;
    size_t used, bound;
} measured;

static measured results[32];
static int nresults;

static void record(const char *what, size_t used, size_t bound)
{
    /* each call is measured twice or more (cold: first use, with lazy binding; warm): the most */
    for (int i = 0; i < nresults; i++)
        if (strcmp(results[i].what, what) == 0) {
            if (used > results[i].used)
                results[i].used = used;
            return;
        }
    results[nresults++] = (measured){what, used, bound};
}

static void *measure_all(void *arg)
{
    (void)arg;
    int p[2];
    CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
    for (int round = 0; round < 2; round++) {
        lacuna_fiber *f = NULL, *g = NULL;
        lacuna_chan *c = NULL;
        lacuna_fiber *other = lacuna_go(yield_once, NULL); /* parks in its yield */
        record("lacuna_yield", depth_of(call_yield, NULL), B_YIELD);
        record("lacuna_go", depth_of(call_go, &f), B_GO);
        record("lacuna_join (ended)", depth_of(call_join, &f), B_JOIN);
        record("lacuna_go_named", depth_of(call_go_named, &g), B_GO);
        record("lacuna_join (blocks)", depth_of(call_join, &g), B_JOIN);
        CHECK(lacuna_join(other) == NULL);
        record("lacuna_go", depth_of(call_go, &f), B_GO);
        record("lacuna_detach", depth_of(call_detach, &f), B_DETACH);
        record("lacuna_self, lacuna_fiber_set_name", depth_of(call_self_and_name, NULL), B_SELF);
        record("lacuna_sleep_ms", depth_of(call_sleep, NULL), B_SLEEP);
        record("lacuna_fd_wait", depth_of(call_fd_wait, &p[0]), B_FD_WAIT);
        record("lacuna_chan_make", depth_of(call_chan_make, &c), B_CHAN);
        record("lacuna_chan_send (buffers)", depth_of(call_chan_send, &c), B_CHAN);
        record("lacuna_chan_recv (buffered)", depth_of(call_chan_recv, &c), B_CHAN);
        lacuna_fiber *r = lacuna_go(chan_receiver, c); /* parks in recv */
        record("lacuna_chan_send (wakes)", depth_of(call_chan_send, &c), B_CHAN);
        CHECK(lacuna_join(r) == NULL);
        lacuna_fiber *s = lacuna_go(chan_sender, c);
        record("lacuna_chan_recv", depth_of(call_chan_recv, &c), B_CHAN);
        CHECK(lacuna_join(s) == NULL);
        lacuna_chan *u = lacuna_chan_make(sizeof(long), 0);
        s = lacuna_go(chan_later_sender, u);
        record("lacuna_chan_recv (blocks)", depth_of(call_chan_recv, &u), B_CHAN);
        CHECK(lacuna_join(s) == NULL);
        s = lacuna_go(chan_later_sender, u);
        record("lacuna_select (blocks)", depth_of(call_select, &u), B_SELECT);
        CHECK(lacuna_join(s) == NULL);
        s = lacuna_go(chan_sender, c);
        record("lacuna_select", depth_of(call_select, &c), B_SELECT);
        CHECK(lacuna_join(s) == NULL);
        record("lacuna_chan_recv_until (times out)", depth_of(call_recv_until, &u), B_SELECT);
        s = lacuna_go(chan_receiver, u); /* parks in recv: cancelled */
        record("lacuna_cancel (wakes)", depth_of(call_cancel, &s), B_SELECT);
        CHECK_EQ((intptr_t)lacuna_join(s), ECANCELED);
        CHECK_EQ(lacuna_chan_free(u), 0);
        record("lacuna_chan_close, lacuna_chan_free", depth_of(call_chan_close_free, &c), B_CHAN);
    }
    close(p[0]);
    close(p[1]);
    return NULL;
}

static void measure_child(void *arg)
{
    /* No cache: every spawn takes the pool's slow path (a fresh or released slot). */
    lacuna_pool_config pc = {.region_size = 64 * 1024, .cache = LACUNA_CACHE_NONE};
    CHECK_EQ(lacuna_fiber_configure(&pc), 0);
    errno = 0;
    CHECK(lacuna_join(lacuna_go(measure_all, NULL)) == NULL);
    CHECK_EQ(errno, 0);
    int fd = *(int *)arg;
    int failed = 0;
    for (int i = 0; i < nresults; i++) {
        char line[160];
        int n = snprintf(line, sizeof line, "  %-40s %6zu bytes (bound %zu)%s\n", results[i].what,
                         results[i].used, results[i].bound,
                         results[i].used > results[i].bound ? "  OVER" : "");
        CHECK(write(fd, line, (size_t)n) == n);
        failed |= results[i].used > results[i].bound || results[i].used == 0;
    }
    _exit(failed);
}

TEST(public_calls_stay_within_their_documented_stack)
{
#if LT_SANITIZED
    SKIP("sanitizer runtimes have frames of their own: the bounds are for plain builds");
#endif
#ifndef __OPTIMIZE__
    SKIP("an unoptimized build keeps every local in its frame: the bounds are for optimized ones");
#endif
    if (lt_under_valgrind())
        SKIP("writes below the stack pointer are memcheck errors");
    int p[2];
    CHECK_EQ(pipe(p), 0);
    char err[4096];
    int status = lt_fork_run(measure_child, &p[1], err, sizeof err);
    close(p[1]);
    char report[4096];
    ssize_t n = read(p[0], report, sizeof report - 1);
    report[n > 0 ? n : 0] = '\0';
    close(p[0]);
    printf("stack each call used on the calling fiber (cold and warm, the larger):\n%s", report);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s%s", report, err);
        CHECK(0);
    }
}
