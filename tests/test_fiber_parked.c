/* Parked fibers give their stack pages back (fiber.h, "Parked stacks give memory back"): pages
 * below a parked fiber's stack pointer leave RSS; every byte at and above it survives, including
 * locals lent to other fibers; the guard stays; a fiber that goes deep again works; a release
 * racing resumes on other workers never zeroes a live frame. */
#define _GNU_SOURCE
#include "internal.h" /* lac_parked_pressure_respond */
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_DEEP   64
#define DEPTH    (40u << 10) /* bytes each fiber recurses once */
#define STACK_SZ (64u << 10)

static atomic_int bad; /* frames that did not read back what they wrote */

/* Recurse `bytes` deep, 1 KiB a frame, each frame checking its pattern after its callee
 * returned (so no tail call, and a zeroed frame is seen). */
static __attribute__((noinline)) unsigned deep(unsigned bytes, unsigned seed)
{
    volatile unsigned char buf[1000];
    for (unsigned i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(seed + i);
    unsigned r = bytes > 1024 ? deep(bytes - 1024, seed * 7 + 1) : 0;
    for (unsigned i = 0; i < sizeof buf; i++)
        if (buf[i] != (unsigned char)(seed + i)) {
            atomic_fetch_add(&bad, 1);
            break;
        }
    return r + buf[7];
}

static uintptr_t region_top(void)
{
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    return ((uintptr_t)__builtin_frame_address(0) & ~(pg - 1)) + pg;
}

/* ---- deep once, then parked ---------------------------------------------------------------- */

typedef struct deep_ctx {
    lacuna_chan *go;   /* each parked fiber waits here (a receive) */
    lacuna_chan *lend; /* half of them park in a send of a pointer into their own frame */
    char *bottom[N_DEEP];
} deep_ctx;

typedef struct lent {
    unsigned char *p;
    unsigned seed;
} lent;

static void *deep_once(void *arg)
{
    deep_ctx *c = arg;
    int me = (int)(lacuna_fiber_id() % 1000003);
    unsigned char mine[512]; /* above the stack pointer while parked: must survive */
    for (unsigned i = 0; i < sizeof mine; i++)
        mine[i] = (unsigned char)(me + i * 3);
    (void)deep(DEPTH, (unsigned)me);
    int slot = -1;
    for (int i = 0; i < N_DEEP && slot < 0; i++) {
        char *expect = NULL;
        if (__atomic_compare_exchange_n(&c->bottom[i], &expect, (char *)region_top() - STACK_SZ,
                                        false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            slot = i;
    }
    if (slot % 2 == 0) {
        lent l = {mine, (unsigned)me};
        CHECK_EQ(lacuna_chan_send(c->lend, &l), 0); /* parks until the controller takes it */
    }
    int v;
    CHECK_EQ(lacuna_chan_recv(c->go, &v), 0);
    for (unsigned i = 0; i < sizeof mine; i++)
        if (mine[i] != (unsigned char)(me + i * 3)) {
            atomic_fetch_add(&bad, 1);
            break;
        }
    (void)deep(DEPTH, (unsigned)me + 1); /* deep again: fresh zero pages fault in */
    lacuna_stack_info info;
    CHECK_EQ(lacuna_fiber_stack_info(NULL, &info), 0);
    CHECK(info.high_water >= DEPTH);
    CHECK_EQ(info.running, 1);
    return NULL;
}

typedef struct census {
    size_t fibers, parked_deep, released;
} census;

static int count_one(lacuna_fiber *f, void *arg)
{
    census *c = arg;
    lacuna_stack_info info;
    if (lacuna_fiber_stack_info(f, &info) != 0)
        return 0;
    c->fibers++;
    if (!info.running && info.high_water >= DEPTH)
        c->parked_deep++;
    c->released += info.released;
    return 0;
}

/* Wait until every deep fiber is parked with its pages below released, by `release` (which
 * returns what it released). Releases are retried: a fiber still on its way to parking (another
 * worker) is not parked yet. */
static void release_all(lacuna_fiber **fs, size_t (*release)(void))
{
    for (int tries = 0; tries < 1000; tries++) {
        (void)release();
        size_t done = 0;
        for (int i = 0; i < N_DEEP; i++) {
            lacuna_stack_info info;
            CHECK_EQ(lacuna_fiber_stack_info(fs[i], &info), 0);
            done += !info.running && info.released > 0;
        }
        if (done == N_DEEP)
            return;
        lacuna_sleep_ms(5);
    }
    CHECK(!"every parked fiber was released within 5 s");
}

static size_t by_call(void)
{
    size_t n = 0;
    CHECK_EQ(lacuna_fiber_release_idle(&n), 0);
    return n;
}

static size_t by_trim(void)
{
    CHECK_EQ(lacuna_trim(lacuna_fiber_pool()), 0);
    return 0;
}

static size_t by_aging(void)
{
    return 0; /* the workers do it, idle while this fiber sleeps */
}

static size_t by_pressure(void)
{
    lac_parked_pressure_respond(); /* what the watcher does when the kernel's trigger fires */
    return 0;
}

static size_t (*releaser)(void);

static void *controller(void *arg)
{
    (void)arg;
    deep_ctx c = {lacuna_chan_make(sizeof(int), 0), lacuna_chan_make(sizeof(lent), 0), {0}};
    lacuna_fiber *fs[N_DEEP];
    for (int i = 0; i < N_DEEP; i++)
        CHECK((fs[i] = lacuna_go_named("deep", deep_once, &c)) != NULL);
    while (1) { /* all recursed */
        int n = 0;
        for (int i = 0; i < N_DEEP; i++)
            n += __atomic_load_n(&c.bottom[i], __ATOMIC_SEQ_CST) != NULL;
        if (n == N_DEEP)
            break;
        lacuna_sleep_ms(1);
    }
    long rss0 = lt_rss_kib();
    release_all(fs, releaser);
    long rss1 = lt_rss_kib();
    census k = {0};
    CHECK_EQ(lacuna_fiber_each(count_one, &k), 0);
    CHECK(k.fibers >= N_DEEP + 1);
    CHECK(k.parked_deep == N_DEEP);
    /* Each fiber had ~40 KiB below its stack pointer; most of it must have left RSS. */
    CHECK(k.released >= (size_t)N_DEEP * (DEPTH - 8192));
    if (releaser != by_aging && !lt_under_valgrind()) /* aging may have begun before rss0 */
        CHECK(rss0 - rss1 >= (long)(N_DEEP * (DEPTH - 8192) / 1024) * 3 / 4);
    /* Every guard is still a guard; every parked stack holds little now. */
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < N_DEEP; i++) {
        CHECK(lt_guarded(c.bottom[i], pg));
        lacuna_stack_info info;
        CHECK_EQ(lacuna_fiber_stack_info(fs[i], &info), 0);
        CHECK(info.resident <= info.used + LACUNA_FIBER_PARK_KEEP + 2 * pg);
    }
    /* Lent locals are above their owners' stack pointers: intact. */
    for (int i = 0; i < N_DEEP / 2; i++) {
        lent l;
        CHECK_EQ(lacuna_chan_recv(c.lend, &l), 0);
        for (unsigned j = 0; j < 512; j++)
            if (l.p[j] != (unsigned char)(l.seed + j * 3)) {
                atomic_fetch_add(&bad, 1);
                break;
            }
    }
    for (int i = 0; i < N_DEEP; i++) {
        int v = i;
        CHECK_EQ(lacuna_chan_send(c.go, &v), 0);
    }
    for (int i = 0; i < N_DEEP; i++)
        CHECK(lacuna_join(fs[i]) == NULL);
    CHECK_EQ(atomic_load(&bad), 0);
    lacuna_chan_free(c.go);
    lacuna_chan_free(c.lend);
    return NULL;
}

/* Several workers without membarrier: nothing but the caller's own worker's fibers may be
 * released (fiber.h), and a fiber runs on any worker. Nothing to test then. */
static bool cannot_release(void)
{
    lacuna_features ft;
    lacuna_features_get(&ft);
    bool forced = strstr(ft.forced, "all") || strstr(ft.forced, "membarrier");
    if (forced && lacuna_get_workers() > 1) {
        printf("SKIP: membarrier forced off with %u workers\n", lacuna_get_workers());
        return true;
    }
    return false;
}

static void run_controller(size_t (*how)(void))
{
    if (cannot_release())
        return;
    releaser = how;
    lacuna_fiber *f = lacuna_go_named("controller", controller, NULL);
    CHECK(f != NULL);
    CHECK_EQ(lacuna_run(), 0);
}

TEST(deep_then_parked_released_on_call)
{
    run_controller(by_call);
}

TEST(deep_then_parked_released_on_trim)
{
    run_controller(by_trim);
}

TEST(deep_then_parked_released_by_aging)
{
    CHECK_EQ(lacuna_fiber_release_after(20), 0);
    run_controller(by_aging);
}

/* ---- releases racing resumes (and signals)
 * ------------------------------------------------------------- */

#define RACERS 32
#define ROUNDS 300

static atomic_int racing;
static atomic_size_t race_released;

typedef struct racer_ctx {
    lacuna_chan *in, *out;
    bool sends_first;
} racer_ctx;

static void *racer(void *arg)
{
    racer_ctx *ch = arg;
    unsigned seed = (unsigned)(lacuna_fiber_id() * 2654435761u);
    for (int r = 0; r < ROUNDS; r++) {
        unsigned char frame[256];
        for (unsigned i = 0; i < sizeof frame; i++)
            frame[i] = (unsigned char)(seed + i);
        (void)deep(1024u + (seed % 24) * 1024u, seed); /* pages below, to release */
        int v;
        if (ch->sends_first) {
            CHECK_EQ(lacuna_chan_send(ch->out, &r), 0);
            CHECK_EQ(lacuna_chan_recv(ch->in, &v), 0);
        } else {
            CHECK_EQ(lacuna_chan_recv(ch->in, &v), 0);
            CHECK_EQ(lacuna_chan_send(ch->out, &r), 0);
        }
        for (unsigned i = 0; i < sizeof frame; i++)
            if (frame[i] != (unsigned char)(seed + i)) {
                atomic_fetch_add(&bad, 1);
                break;
            }
        seed = seed * 1103515245u + 12345u;
    }
    return NULL;
}

/* A signal handler on the alternate stack, and on whatever stack a thread without one runs: its
 * frame reads back what it wrote while releases go on. */
static atomic_int handled;

static __attribute__((noinline)) int check_frame(volatile unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed + i))
            return 1;
    return 0;
}

static void on_usr1(int sig)
{
    volatile unsigned char b[512];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (unsigned char)(sig + i);
    if (check_frame(b, sizeof b, (unsigned)sig))
        atomic_fetch_add(&bad, 1);
    atomic_fetch_add(&handled, 1);
}

static void *release_loop_fiber(void *arg)
{
    (void)arg;
    while (atomic_load(&racing)) {
        size_t n = 0;
        CHECK_EQ(lacuna_fiber_release_idle(&n), 0);
        atomic_fetch_add(&race_released, n);
        raise(SIGUSR1);
        lacuna_yield();
    }
    return NULL;
}

static void *release_loop_thread(void *arg)
{
    (void)arg;
    while (atomic_load(&racing)) {
        size_t n = 0;
        CHECK_EQ(lacuna_fiber_release_idle(&n), 0);
        atomic_fetch_add(&race_released, n);
        /* To any thread: a worker running a fiber, most likely. SIGUSR2's handler has no
         * alternate stack: it runs on the fiber's own (or mid-switch, on a stack being saved). */
        kill(getpid(), (atomic_load(&race_released) & 1) ? SIGUSR1 : SIGUSR2);
    }
    return NULL;
}

static void *race_main(void *arg)
{
    bool thread = arg != NULL;
    lacuna_chan *ring[RACERS];
    for (int i = 0; i < RACERS; i++)
        ring[i] = lacuna_chan_make(sizeof(int), 0);
    racer_ctx pairs[RACERS];
    lacuna_fiber *fs[RACERS];
    atomic_store(&racing, 1);
    pthread_t th;
    lacuna_fiber *rel = NULL;
    if (thread)
        CHECK_EQ(pthread_create(&th, NULL, release_loop_thread, NULL), 0);
    else
        rel = lacuna_go_named("releaser", release_loop_fiber, NULL);
    /* Pairs (2k, 2k+1): one sends first, the other receives first, every round. */
    for (int i = 0; i < RACERS; i++) {
        pairs[i] = (racer_ctx){ring[i], ring[i ^ 1], i % 2 == 0};
        fs[i] = lacuna_go_named("racer", racer, &pairs[i]);
    }
    for (int i = 0; i < RACERS; i++)
        lacuna_join(fs[i]);
    atomic_store(&racing, 0);
    if (thread)
        pthread_join(th, NULL);
    else
        lacuna_join(rel);
    for (int i = 0; i < RACERS; i++)
        lacuna_chan_free(ring[i]);
    return NULL;
}

TEST(releases_racing_resumes_never_touch_live_frames)
{
    /* A plain thread may release fibers of a running multi-worker runtime only with membarrier;
     * otherwise a fiber of the (single-worker) runtime does it. */
    if (cannot_release())
        return;
    bool thread = lacuna_get_workers() > 1 && !lt_under_valgrind();
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK | SA_RESTART};
    CHECK_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    sa.sa_flags = SA_RESTART; /* on whatever stack the thread is on */
    CHECK_EQ(sigaction(SIGUSR2, &sa, NULL), 0);
    lacuna_fiber *f = lacuna_go(race_main, thread ? (void *)1 : NULL);
    CHECK(f != NULL);
    CHECK_EQ(lacuna_run(), 0);
    CHECK_EQ(atomic_load(&bad), 0);
    CHECK(atomic_load(&race_released) > 0);
    CHECK(atomic_load(&handled) > 0);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static void *ends(void *arg)
{
    return arg;
}

TEST(stack_info_and_each_bad_input)
{
    lacuna_stack_info info;
    CHECK_EQ(lacuna_fiber_stack_info(NULL, &info), EINVAL); /* not in a fiber */
    lacuna_fiber *f = lacuna_go(ends, NULL);
    CHECK_EQ(lacuna_fiber_stack_info(f, NULL), EINVAL);
    CHECK_EQ(lacuna_fiber_stack_info(f, &info), 0); /* spawned, not run yet */
    CHECK_EQ(info.size, STACK_SZ);
    CHECK_EQ(info.running, 0);
    CHECK(lacuna_join(f) == NULL);
    CHECK_EQ(lacuna_fiber_stack_info(f, &info), EINVAL); /* stale */
    CHECK_EQ(lacuna_fiber_each(NULL, NULL), EINVAL);
    size_t n = 1;
    CHECK_EQ(lacuna_fiber_release_idle(&n), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(lacuna_fiber_release_idle(NULL), 0);
}

TEST(deep_then_parked_released_on_pressure)
{
    run_controller(by_pressure);
    CHECK(lacuna_fiber_pressure_events() > 0 || cannot_release());
}

/* The watcher itself: a trigger the kernel accepts, replaced, stopped. (Firing it needs real
 * memory pressure, which a test cannot make on a shared machine: the response is tested above.) */
TEST(pressure_watcher_starts_and_stops)
{
    CHECK_EQ(lacuna_fiber_pressure(2001), EINVAL);
    int err = lacuna_fiber_pressure(100);
    if (err == ENOTSUP || err == EACCES || err == EPERM) {
        printf("SKIP: no PSI trigger here (%s)\n", strerror(err));
        return;
    }
    CHECK_EQ(err, 0);
    CHECK_EQ(lacuna_fiber_pressure(50), 0); /* replaces */
    CHECK_EQ(lacuna_fiber_pressure(0), 0);  /* stops */
    CHECK_EQ(lacuna_fiber_pressure(0), 0);
}

/* ---- still guarded after a release ------------------------------------------------------------
 */

static volatile unsigned endless_limit = ~0u; /* never reached: the guard stops it first */

static __attribute__((noinline)) unsigned endless(unsigned n)
{
    volatile char frame[512];
    frame[0] = (char)n;
    if (n > endless_limit)
        return 0;
    return endless(n + 1) + frame[0]; /* no tail call: the frame is read after */
}

static void *deep_park_then_overflow(void *arg)
{
    lacuna_chan *go = arg;
    (void)deep(DEPTH, 7);
    int v;
    CHECK_EQ(lacuna_chan_recv(go, &v), 0); /* parked: released meanwhile */
    return (void *)(uintptr_t)endless(0);  /* past the released pages, into the guard */
}

static void *overflow_driver(void *arg)
{
    (void)arg;
    lacuna_chan *go = lacuna_chan_make(sizeof(int), 0);
    lacuna_fiber *f = lacuna_go_named("released-deep", deep_park_then_overflow, go);
    lacuna_stack_info info = {0};
    for (int i = 0; i < 1000 && info.released == 0; i++) {
        CHECK_EQ(lacuna_fiber_release_idle(NULL), 0);
        CHECK_EQ(lacuna_fiber_stack_info(f, &info), 0);
        if (info.released == 0)
            lacuna_sleep_ms(5);
    }
    CHECK(info.released >= DEPTH - 8192);
    int v = 1;
    CHECK_EQ(lacuna_chan_send(go, &v), 0);
    lacuna_join(f);
    return NULL;
}

static void overflow_after_release_child(void *arg)
{
    (void)arg;
    if (cannot_release())
        _exit(77);
    CHECK(lacuna_go(overflow_driver, NULL) != NULL);
    (void)lacuna_run();
    fprintf(stderr, "survived the overflow\n");
}

TEST(released_fiber_still_overflows_into_its_guard)
{
    char err[4096];
    int status = lt_fork_run(overflow_after_release_child, NULL, err, sizeof err);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        return; /* cannot_release() said why */
    fprintf(stderr, "%s", err);
    CHECK(WIFSIGNALED(status));
    CHECK_EQ(WTERMSIG(status), SIGSEGV);
    CHECK(strstr(err, "lacuna: stack overflow in fiber \"released-deep\" (region ") != NULL);
}

/* ---- aging switched off while a scan is due: workers sleep, not spin ----------------------------
 */

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void *sleeps_after_keep_all(void *arg)
{
    double *cpu = arg;
    CHECK_EQ(lacuna_fiber_release_after(10), 0);
    lacuna_sleep_ms(2); /* the worker idles: a scan is scheduled 10 ms out */
    CHECK_EQ(lacuna_fiber_release_after(LACUNA_PARKED_KEEP_ALL), 0);
    double c0 = cpu_seconds();
    lacuna_sleep_ms(300);
    *cpu = cpu_seconds() - c0;
    return NULL;
}

TEST(keep_all_with_a_scan_due_lets_workers_sleep)
{
    double cpu = 0;
    CHECK(lacuna_go(sleeps_after_keep_all, &cpu) != NULL);
    CHECK_EQ(lacuna_run(), 0);
    /* A spinning worker burns ~300 ms here (0.1-0.24 s measured before the fix, 1 worker). */
    CHECK(cpu < 0.05 * (double)lacuna_get_workers() + (lt_under_valgrind() ? 0.5 : 0));
}
