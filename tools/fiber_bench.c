/* lacuna-bench skynet / switch: the fiber runtime measured.
 *
 * skynet — the public benchmark (github.com/atemerev/skynet), by its rules: a root fiber spawns
 * 10 children, each spawns 10, down to 1,000,000 leaves (1,111,111 fibers); leaf i sends i to
 * its parent over a channel; each parent sums its 10 children and sends the sum up. Every fiber
 * gets its own guarded stack from the pool. Channels hold 10 elements (a parent's children never
 * wait to hand in their number; --unbuffered makes them rendezvous). Each run is a fresh child
 * process, so its peak RSS (VmHWM) is its own. --threads T deals the root's 10 subtrees to T
 * threads sharing the stack pool.
 *
 * switch — ns per context switch (two fibers ping-ponging with lacuna_yield) and ns per
 * spawn+join of an empty fiber (from a fiber: the child runs at once, the spawner right after).
 */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- skynet ------------------------------------------------------------------------------- */

typedef struct {
    size_t stack, capacity;
    int runs, unbuffered, threads;
} sky_cfg;

typedef struct {
    double ms;
    long result, start_kib, peak_kib, after_kib, trimmed_kib;
    uint64_t allocs;
    size_t used;
    int guard, err;
} sky_out;

typedef struct {
    lacuna_chan *up;
    long num, size;
} sky_arg;

static int sky_unbuffered;

static void *skynet(void *p)
{
    sky_arg a = *(sky_arg *)p; /* the spawner reuses *p once this fiber first blocks */
    if (a.size == 1) {
        lacuna_chan_send(a.up, &a.num);
        return NULL;
    }
    lacuna_chan *c = lacuna_chan_make(sizeof(long), sky_unbuffered ? 0 : 10);
    if (c == NULL)
        abort();
    sky_arg child = {c, 0, a.size / 10};
    for (long i = 0; i < 10; i++) {
        child.num = a.num + i * child.size;
        lacuna_fiber *f = lacuna_go(skynet, &child);
        if (f == NULL)
            abort();
        lacuna_detach(f);
    }
    long sum = 0, v;
    for (int i = 0; i < 10; i++) {
        lacuna_chan_recv(c, &v);
        sum += v;
    }
    lacuna_chan_free(c);
    lacuna_chan_send(a.up, &sum);
    return NULL;
}

/* --threads T: the root's 10 subtrees are dealt round-robin to T threads; each thread runs a
 * root fiber of its own for its share (fibers and channels never cross threads), and the main
 * thread adds up what the threads return. */
typedef struct {
    int t, threads;
    long sum;
} sky_part;

static void *sky_part_root(void *p)
{
    sky_part *part = p;
    lacuna_chan *c = lacuna_chan_make(sizeof(long), 10);
    if (c == NULL)
        abort();
    sky_arg child = {c, 0, 100000};
    int n = 0;
    for (long i = part->t; i < 10; i += part->threads, n++) {
        child.num = i * child.size;
        lacuna_fiber *f = lacuna_go(skynet, &child);
        if (f == NULL)
            abort();
        lacuna_detach(f);
    }
    long v;
    for (int i = 0; i < n; i++) {
        lacuna_chan_recv(c, &v);
        part->sum += v;
    }
    lacuna_chan_free(c);
    return NULL;
}

static void *sky_thread(void *p)
{
    lacuna_fiber *f = lacuna_go(sky_part_root, p);
    if (f == NULL)
        abort();
    lacuna_join(f);
    return NULL;
}

static void sky_stats(sky_out *o)
{
    lacuna_stats st;
    lacuna_pool_stats(lacuna_fiber_pool(), &st);
    o->allocs = st.allocs;
    o->used = st.used;
    o->guard = st.guard;
    lacuna_trim(lacuna_fiber_pool());
    o->trimmed_kib = bench_rss_kib();
}

/* The skynet rules' result line, then the run's memory figures. */
static void sky_finish(sky_out *o, uint64_t t0)
{
    o->ms = (double)(bench_now_ns() - t0) / 1e6;
    printf("Result: %ld in %.0f ms.\n", o->result, o->ms);
    fflush(stdout);
    o->peak_kib = bench_status_kib("VmHWM:");
    o->after_kib = bench_rss_kib();
    sky_stats(o);
}

static void sky_run(void *arg, void *out)
{
    const sky_cfg *cfg = arg;
    sky_out *o = out;
    sky_unbuffered = cfg->unbuffered;
    o->start_kib = bench_rss_kib();
    lacuna_pool_config pc = {.region_size = cfg->stack, .capacity = cfg->capacity};
    o->err = lacuna_fiber_configure(&pc);
    if (o->err)
        return;
    if (cfg->threads > 1) {
        sky_part parts[10];
        pthread_t tid[10];
        uint64_t t0 = bench_now_ns();
        for (int t = 0; t < cfg->threads; t++) {
            parts[t] = (sky_part){t, cfg->threads, 0};
            if (pthread_create(&tid[t], NULL, sky_thread, &parts[t]) != 0)
                abort();
        }
        for (int t = 0; t < cfg->threads; t++) {
            pthread_join(tid[t], NULL);
            o->result += parts[t].sum;
        }
        sky_finish(o, t0);
        return;
    }
    lacuna_chan *top = lacuna_chan_make(sizeof(long), 1);
    sky_arg root = {top, 0, 1000000};
    uint64_t t0 = bench_now_ns();
    lacuna_fiber *f = lacuna_go(skynet, &root);
    if (f == NULL) {
        o->err = errno;
        return;
    }
    lacuna_detach(f);
    o->err = lacuna_run();
    lacuna_chan_recv(top, &o->result);
    sky_finish(o, t0);
    lacuna_chan_free(top);
}

static const char *guard_name(int g)
{
    return g == LACUNA_GUARD_MARKER     ? "kernel guard marker"
           : g == LACUNA_GUARD_MPROTECT ? "mprotect"
                                        : "none";
}

static int skynet_main(int argc, char **argv)
{
    sky_cfg cfg = {.stack = 64 * KIB, .capacity = 0, .runs = 5};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--stack") == 0 && i + 1 < argc) {
            if (bench_parse_size(argv[++i], &cfg.stack) != 0 || cfg.stack == 0) {
                fprintf(stderr, "skynet: bad --stack %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            cfg.runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--capacity") == 0 && i + 1 < argc) {
            cfg.capacity = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            cfg.threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--unbuffered") == 0) {
            cfg.unbuffered = 1;
        } else {
            fprintf(stderr, "usage: lacuna-bench skynet [--stack 64K] [--runs 5] [--capacity N]"
                            " [--threads 1..10] [--unbuffered]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (cfg.runs < 1 || cfg.runs > 100)
        cfg.runs = 5;
    if (cfg.threads < 1 || cfg.threads > 10)
        cfg.threads = 1;
    printf("lacuna-bench skynet: %s, %zu KiB stacks, %s channels, %d thread%s, "
           "median of %d\n",
           cfg.threads > 1 ? "1,111,110 fibers + a root per thread" : "1,111,111 fibers",
           cfg.stack / KIB, cfg.unbuffered ? "unbuffered" : "10-element", cfg.threads,
           cfg.threads > 1 ? "s" : "", cfg.runs);
    bench_machine(stdout, "");
    double ms[100], peak[100];
    sky_out o = {0};
    for (int r = 0; r < cfg.runs; r++) {
        if (bench_in_child(sky_run, &cfg, &o, sizeof o) != 0 || o.err) {
            fprintf(stderr, "skynet: run failed: %s\n", o.err ? strerror(o.err) : "child died");
            return 1;
        }
        if (o.result != 499999500000L) {
            fprintf(stderr, "skynet: wrong result %ld\n", o.result);
            return 1;
        }
        ms[r] = o.ms;
        peak[r] = (double)o.peak_kib / 1024;
        printf("  run %d: %.1f ms, RSS at start %.1f MiB, peak (VmHWM) %.1f MiB, after the run "
               "%.1f MiB, after lacuna_trim %.1f MiB; %llu stacks handed out, %zu slots ever "
               "used, guard: %s\n",
               r + 1, o.ms, o.start_kib / 1024.0, peak[r], o.after_kib / 1024.0,
               o.trimmed_kib / 1024.0, (unsigned long long)o.allocs, o.used, guard_name(o.guard));
    }
    double mn = ms[0], mx = ms[0];
    for (int r = 1; r < cfg.runs; r++) {
        mn = ms[r] < mn ? ms[r] : mn;
        mx = ms[r] > mx ? ms[r] : mx;
    }
    double med = bench_median(ms, cfg.runs);
    printf("skynet: median %.1f ms (min %.1f, max %.1f), median peak RSS %.1f MiB\n", med, mn, mx,
           bench_median(peak, cfg.runs));
    return 0;
}

/* ---- switch ------------------------------------------------------------------------------- */

static long pingpong_n;

static void *pingpong(void *arg)
{
    (void)arg;
    for (long i = 0; i < pingpong_n; i++)
        lacuna_yield();
    return NULL;
}

static void *empty(void *arg)
{
    return arg;
}

static double switch_once(long n)
{
    pingpong_n = n;
    lacuna_fiber *a = lacuna_go(pingpong, NULL);
    lacuna_fiber *b = lacuna_go(pingpong, NULL);
    uint64_t t0 = bench_now_ns();
    lacuna_run();
    uint64_t t1 = bench_now_ns();
    lacuna_join(a);
    lacuna_join(b);
    return (double)(t1 - t0) / (2.0 * (double)n); /* each yield is one switch */
}

static void *spawn_join_loop(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++)
        lacuna_join(lacuna_go(empty, NULL));
    return NULL;
}

static double spawn_once(long n)
{
    lacuna_fiber *f = lacuna_go(spawn_join_loop, (void *)(intptr_t)n);
    uint64_t t0 = bench_now_ns();
    lacuna_join(f);
    return (double)(bench_now_ns() - t0) / (double)n;
}

static void minmax(const double *v, int n, double *mn, double *mx)
{
    *mn = *mx = v[0];
    for (int i = 1; i < n; i++) {
        *mn = v[i] < *mn ? v[i] : *mn;
        *mx = v[i] > *mx ? v[i] : *mx;
    }
}

static int switch_main(int argc, char **argv)
{
    long n = 10000000;
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            n = atol(argv[++i]);
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: lacuna-bench switch [--n 10000000] [--runs 5]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (runs < 1 || runs > 100)
        runs = 5;
    if (n < 1)
        n = 1;
    printf("lacuna-bench switch: %ld yields per fiber, %ld spawn+join, median of %d\n", n, n, runs);
    bench_machine(stdout, "");
    double sw[100], sp[100], mn, mx;
    switch_once(n / 10); /* warm-up: the pool, the stacks, the scheduler */
    spawn_once(n / 10);
    for (int r = 0; r < runs; r++) {
        sw[r] = switch_once(n);
        sp[r] = spawn_once(n);
    }
    minmax(sw, runs, &mn, &mx);
    printf("switch (lacuna_yield between two fibers): %.2f ns (min %.2f, max %.2f)\n",
           bench_median(sw, runs), mn, mx);
    minmax(sp, runs, &mn, &mx);
    printf("spawn+join of an empty fiber: %.1f ns (min %.1f, max %.1f)\n", bench_median(sp, runs),
           mn, mx);
    return 0;
}

int bench_skynet_main(int argc, char **argv)
{
    return skynet_main(argc, argv);
}

int bench_switch_main(int argc, char **argv)
{
    return switch_main(argc, argv);
}
