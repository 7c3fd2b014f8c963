/* lacuna-bench skynet / switch: the fiber runtime measured.
 *
 * skynet — the public benchmark (github.com/atemerev/skynet) by its standard rules: a root fiber
 * spawns 10 children, each spawns 10, down to 1,000,000 leaves (1,111,111 fibers, every node a
 * fiber of its own); each parent makes an unbuffered channel, leaf i sends i to its parent, each
 * parent sums its 10 children's numbers and sends the sum up; the root's is 499999500000, printed
 * as "Result: N in X ms.". Every fiber gets its own guarded stack from the pool. --buffered is a
 * variant, labelled as such wherever it is printed: 10-slot channels, so children never wait to
 * hand in their number. --depth D sets the leaves to 10^D. Each run is a fresh child process, so
 * its peak RSS (VmHWM) is its own. --threads T deals the root's 10 subtrees to T threads sharing
 * the stack pool.
 *
 * switch — ns per context switch (two fibers ping-ponging with lacuna_yield) and ns per
 * spawn+join of an empty fiber (from a fiber: the child runs at once, the spawner right after).
 */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- skynet ------------------------------------------------------------------------------- */

typedef struct {
    size_t stack, capacity, runs, threads, depth, workers;
    bool go; /* Go's skynet right after each run (tools/go/skynet.go, GOMAXPROCS = workers) */
    bool buffered, csv;
    long leaves, fibers, expect; /* from depth */
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

static size_t sky_chan_cap;       /* 0 by the rules; 10 with --buffered */
static _Atomic int sky_spawn_err; /* the first lacuna_go failure (out of stacks), or 0 */

/* Spawn the 10 children of a node of `size` leaves numbered from `num`, all sending to c.
 * kids lives on the parent's stack, which outlives them (it waits for their 10 numbers), so a
 * child may read its argument whenever it first runs. Returns how many were spawned. */
static void *skynet(void *p);
static int sky_spawn_children(sky_arg kids[10], lacuna_chan *c, long num, long size, int first,
                              int step)
{
    int n = 0;
    for (int i = first; i < 10; i += step) {
        kids[i] = (sky_arg){c, num + i * (size / 10), size / 10};
        lacuna_fiber *f = lacuna_go(skynet, &kids[i]);
        if (f == NULL) {
            int none = 0;
            atomic_compare_exchange_strong(&sky_spawn_err, &none, errno ? errno : ENOMEM);
            break;
        }
        lacuna_detach(f);
        n++;
    }
    return n;
}

static void *skynet(void *p)
{
    sky_arg a = *(sky_arg *)p;
    if (a.size == 1) {
        lacuna_chan_send(a.up, &a.num);
        return NULL;
    }
    lacuna_chan *c = lacuna_chan_make(sizeof(long), sky_chan_cap);
    long sum = 0, v;
    if (c == NULL) {
        int none = 0;
        atomic_compare_exchange_strong(&sky_spawn_err, &none, ENOMEM);
    } else {
        sky_arg kids[10];
        int n = sky_spawn_children(kids, c, a.num, a.size, 0, 1);
        for (int i = 0; i < n; i++) {
            lacuna_chan_recv(c, &v);
            sum += v;
        }
        lacuna_chan_free(c);
    }
    lacuna_chan_send(a.up, &sum);
    return NULL;
}

/* --threads T: the root's 10 subtrees are dealt round-robin to T threads; each thread runs a
 * root fiber of its own for its share (fibers and channels never cross threads), and the main
 * thread adds up what the threads return. */
typedef struct {
    int t, threads;
    long sum, leaves;
} sky_part;

static void *sky_part_root(void *p)
{
    sky_part *part = p;
    lacuna_chan *c = lacuna_chan_make(sizeof(long), sky_chan_cap);
    if (c == NULL)
        abort();
    sky_arg kids[10];
    int n = sky_spawn_children(kids, c, 0, part->leaves, part->t, part->threads);
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
static void sky_finish(const sky_cfg *cfg, sky_out *o, uint64_t t0)
{
    o->ms = (double)(bench_now_ns() - t0) / 1e6;
    if (!cfg->csv && atomic_load(&sky_spawn_err) == 0) /* a partial sum is no result */
        printf("Result: %ld in %.0f ms.\n", o->result, o->ms);
    fflush(stdout);
    o->peak_kib = bench_status_kib("VmHWM:");
    o->after_kib = bench_rss_kib();
    sky_stats(o);
    if (atomic_load(&sky_spawn_err))
        o->err = atomic_load(&sky_spawn_err);
}

static void sky_run(void *arg, void *out)
{
    const sky_cfg *cfg = arg;
    sky_out *o = out;
    sky_chan_cap = cfg->buffered ? 10 : 0;
    o->start_kib = bench_rss_kib();
    lacuna_pool_config pc = {.region_size = cfg->stack, .capacity = cfg->capacity};
    o->err = lacuna_fiber_configure(&pc);
    if (o->err == 0)
        o->err = lacuna_set_workers((unsigned)cfg->workers);
    if (o->err)
        return;
    if (cfg->threads > 1) {
        sky_part parts[10];
        pthread_t tid[10];
        uint64_t t0 = bench_now_ns();
        for (int t = 0; t < (int)cfg->threads; t++) {
            parts[t] = (sky_part){t, (int)cfg->threads, 0, cfg->leaves};
            if (pthread_create(&tid[t], NULL, sky_thread, &parts[t]) != 0)
                abort();
        }
        for (int t = 0; t < (int)cfg->threads; t++) {
            pthread_join(tid[t], NULL);
            o->result += parts[t].sum;
        }
        sky_finish(cfg, o, t0);
        return;
    }
    lacuna_chan *top = lacuna_chan_make(sizeof(long), 1);
    sky_arg root = {top, 0, cfg->leaves};
    uint64_t t0 = bench_now_ns();
    lacuna_fiber *f = lacuna_go(skynet, &root);
    if (f == NULL) {
        o->err = errno;
        return;
    }
    lacuna_detach(f);
    o->err = lacuna_run();
    lacuna_chan_recv(top, &o->result);
    sky_finish(cfg, o, t0);
    lacuna_chan_free(top);
}

static const char *guard_name(int g)
{
    return g == LACUNA_GUARD_MARKER     ? "kernel guard marker"
           : g == LACUNA_GUARD_MPROTECT ? "mprotect"
                                        : "none";
}

static void minmax(const double *v, int n, double *mn, double *mx)
{
    *mn = *mx = v[0];
    for (int i = 1; i < n; i++) {
        *mn = v[i] < *mn ? v[i] : *mn;
        *mx = v[i] > *mx ? v[i] : *mx;
    }
}

/* "Result: N in X ms." from Go's skynet: X into *(double *)ctx. */
static void go_sky_line(const char *text, void *ctx)
{
    long result;
    double ms;
    if (sscanf(text, "Result: %ld in %lf ms.", &result, &ms) == 2)
        *(double *)ctx = ms;
}

/* One run of Go's skynet (the same depth, GOMAXPROCS = workers): its peak RSS in KiB and its time
 * in *ms, or -1. */
static long go_skynet(const char *dir, const sky_cfg *cfg, double *ms)
{
    char depth[16];
    snprintf(depth, sizeof depth, "%zu", cfg->depth);
    const char *args[] = {"--depth", depth, NULL};
    return bench_go_run(dir, "skynet", args, (unsigned)cfg->workers, go_sky_line, ms);
}

static const char sky_more[] =
    "The standard rules (unbuffered channels, every node a fiber) unless --buffered. Stack pool\n"
    "capacity: by default the whole tree, capped so that as many live stacks (a page and page\n"
    "tables each) fit in 90 % of MemAvailable; past it a spawn fails and the run says so.\n";

static int skynet_main(int argc, char **argv)
{
    sky_cfg cfg = {.stack = 64 * KIB, .runs = 5, .threads = 1, .depth = 6, .workers = 1};
    const cli_opt opts[] = {
        {"depth", CLI_COUNT, &cfg.depth, 1, 8, "levels below the root: 10^depth leaves", NULL},
        {"stack", CLI_SIZE, &cfg.stack, 16 * KIB, 8 * MIB, "stack size per fiber", NULL},
        {"runs", CLI_COUNT, &cfg.runs, 1, 100, "runs; the median is reported", NULL},
        {"capacity", CLI_COUNT, &cfg.capacity, 0, 1ul << 32,
         "stack pool capacity (0: the whole tree, capped by memory)", NULL},
        {"workers", CLI_COUNT, &cfg.workers, 1, LACUNA_WORKERS_MAX,
         "worker threads of the one runtime (M:N, work stealing)", NULL},
        {"threads", CLI_COUNT, &cfg.threads, 1, 10,
         "variant: separate runtimes, the root's 10 subtrees dealt to them", NULL},
        {"buffered", CLI_FLAG, &cfg.buffered, 0, 0,
         "variant: 10-slot buffered channels (not the standard rules)", NULL},
        {"go", CLI_FLAG, &cfg.go, 0, 0,
         "also Go's skynet (tools/go/skynet.go, GOMAXPROCS = workers) right after each run", NULL},
        {"csv", CLI_FLAG, &cfg.csv, 0, 0, "CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench skynet",
                     "The skynet benchmark: a tree of fibers summing 0..10^depth-1 over channels.",
                     opts, NULL, sky_more};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    if (cfg.go && (cfg.buffered || cfg.threads > 1))
        return cli_usage_error(&spec, "--go: Go's skynet follows the standard rules on one runtime "
                                      "(no --buffered, no --threads)");
    cfg.leaves = 1;
    for (size_t d = 0; d < cfg.depth; d++)
        cfg.leaves *= 10;
    cfg.fibers = (cfg.leaves * 10 - 1) / 9;
    cfg.expect = cfg.leaves / 2 * (cfg.leaves - 1);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), cap_note = 0;
    if (cfg.capacity == 0) {
        /* Every fiber of the tree may be live at once (a scheduler that runs spawners before
         * woken children does that): one touched stack page, page tables, a control block. */
        double per = (double)page + (double)(cfg.stack + page) / 512 + 256;
        double avail = cli_mem_available(), fit = avail > 0 ? 0.9 * avail / per : 1e12;
        cfg.capacity = (size_t)cfg.fibers + cfg.threads + 64;
        if (fit < (double)cfg.capacity)
            cfg.capacity = cap_note = (size_t)fit;
    }
    const char *rules = cfg.buffered ? "VARIANT --buffered: 10-slot buffered channels"
                                     : "standard rules: unbuffered channels";
    char a[32];
    if (cfg.csv) {
        bench_machine(stdout, "# ");
        printf("# skynet, %s, %ld fibers, %s stacks, %zu worker(s), %zu thread(s), pool capacity "
               "%zu\n",
               rules, cfg.fibers, cli_size_str(cfg.stack, a), cfg.workers, cfg.threads,
               cfg.capacity);
        printf("run,ms,result,start_kib,peak_kib,after_kib,trimmed_kib,stacks,slots_used,guard\n");
    } else {
        printf("lacuna-bench skynet (%s): %ld fibers, %s stacks, %zu worker%s, %zu thread%s, pool "
               "capacity %zu, median of %zu\n",
               rules, cfg.fibers, cli_size_str(cfg.stack, a), cfg.workers,
               cfg.workers > 1 ? "s" : "", cfg.threads, cfg.threads > 1 ? "s" : "", cfg.capacity,
               cfg.runs);
        bench_machine(stdout, "");
        if (cap_note)
            printf("(capacity capped by memory: %zu live stacks fit, the tree has %ld fibers)\n",
                   cap_note, cfg.fibers);
    }
    fflush(stdout);
    char godir[PATH_MAX];
    const char *go =
        cfg.go ? bench_go_build("skynet", godir, sizeof godir, cfg.csv ? "# " : "") : NULL;
    double ms[100], peak[100], gms[100], gpeak[100], rt[100], rm[100];
    size_t gruns = 0;
    int status = 0;
    sky_out o = {0};
    cli_progress pr;
    cli_progress_start(&pr);
    for (size_t r = 0; r < cfg.runs; r++) {
        cli_progress_update(&pr, (double)r / (double)cfg.runs, "skynet: run %zu of %zu", r + 1,
                            cfg.runs);
        /* Go first in odd rounds: the later of the two may find the host's pages warm. */
        double g = -1;
        long gk = go && r % 2 ? go_skynet(go, &cfg, &g) : -1;
        o = (sky_out){0};
        int died = bench_in_child(sky_run, &cfg, &o, sizeof o);
        cli_progress_end(&pr);
        if (died != 0 || o.err) {
            fprintf(stderr, "lacuna-bench skynet: run failed: %s%s\n",
                    o.err ? strerror(o.err) : "the child process died (out of memory?)",
                    o.err == ENOMEM ? " (out of stacks: raise --capacity, or lower --depth)" : "");
            status = CLI_FAILED;
            break;
        }
        if (o.result != cfg.expect) {
            fprintf(stderr, "lacuna-bench skynet: wrong result %ld (expected %ld)\n", o.result,
                    cfg.expect);
            status = CLI_FAILED;
            break;
        }
        ms[r] = o.ms;
        peak[r] = (double)o.peak_kib / 1024;
        if (cfg.csv)
            printf("%zu,%.1f,%ld,%ld,%ld,%ld,%ld,%llu,%zu,%s\n", r + 1, o.ms, o.result, o.start_kib,
                   o.peak_kib, o.after_kib, o.trimmed_kib, (unsigned long long)o.allocs, o.used,
                   guard_name(o.guard));
        else
            printf("  run %zu: %.1f ms, RSS at start %.1f MiB, peak (VmHWM) %.1f MiB, after the "
                   "run %.1f MiB, after lacuna_trim %.1f MiB; %llu stacks handed out, %zu slots "
                   "ever used, guard: %s\n",
                   r + 1, o.ms, o.start_kib / 1024.0, peak[r], o.after_kib / 1024.0,
                   o.trimmed_kib / 1024.0, (unsigned long long)o.allocs, o.used,
                   guard_name(o.guard));
        fflush(stdout);
        if (go && r % 2 == 0)
            gk = go_skynet(go, &cfg, &g);
        if (gk > 0 && g > 0) {
            gms[gruns] = g;
            gpeak[gruns] = (double)gk / 1024;
            rt[gruns] = ms[r] / g; /* this round's ratios, lacuna over Go */
            rm[gruns] = peak[r] / gpeak[gruns];
            if (!cfg.csv)
                printf("  go run %zu: %.0f ms, peak RSS %.1f MiB\n", gruns + 1, g, gpeak[gruns]);
            gruns++;
        }
    }
    if (go) {
        bench_go_clean(go);
        if (status == 0 && gruns < cfg.runs)
            printf("%sgo: %zu of %zu runs gave no figure\n", cfg.csv ? "# " : "", cfg.runs - gruns,
                   cfg.runs);
    }
    if (status)
        return status;
    double mn, mx;
    minmax(ms, (int)cfg.runs, &mn, &mx);
    double med = bench_median(ms, (int)cfg.runs);
    printf("%sskynet%s: median %.1f ms (min %.1f, max %.1f), median peak RSS %.1f MiB\n",
           cfg.csv ? "# " : "", cfg.buffered ? " --buffered (variant)" : "", med, mn, mx,
           bench_median(peak, (int)cfg.runs));
    if (gruns) {
        double gmn, gmx;
        minmax(gms, (int)gruns, &gmn, &gmx);
        printf("%sgo skynet GOMAXPROCS=%zu, one run per round beside lacuna's: median %.1f ms (min "
               "%.1f, max %.1f), median peak RSS %.1f MiB\n",
               cfg.csv ? "# " : "", cfg.workers, bench_median(gms, (int)gruns), gmn, gmx,
               bench_median(gpeak, (int)gruns));
        printf("%slacuna/go, median of per-round ratios: time %.3fx, peak RSS %.4fx\n",
               cfg.csv ? "# " : "", bench_median(rt, (int)gruns), bench_median(rm, (int)gruns));
    }
    return 0;
}

/* ---- switch ------------------------------------------------------------------------------- */

#ifdef LACUNA_BENCH_BOOST
double boost_jump_ns(long n); /* boost_peers.cpp */
#endif

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
    lacuna_set_workers(1); /* the switch itself: both fibers on one thread */
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


static int switch_main(int argc, char **argv)
{
    size_t n = 10000000, runs = 5;
    bool csv = false;
    const cli_opt opts[] = {
        {"n", CLI_COUNT, &n, 1, 100000000000ull, "yields per fiber, and spawn+joins", NULL},
        {"runs", CLI_COUNT, &runs, 1, 100, "runs; the median is reported", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench switch",
                     "ns per fiber switch (lacuna_yield) and per spawn+join of an empty fiber.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    if (csv)
        bench_machine(stdout, "# ");
    else
        printf("lacuna-bench switch: %zu yields per fiber, %zu spawn+join, median of %zu\n", n, n,
               runs);
    if (!csv)
        bench_machine(stdout, "");
    double sw[100], sp[100], mn, mx;
    cli_progress pr;
    cli_progress_start(&pr);
    switch_once((long)(n / 10)); /* warm-up: the pool, the stacks, the scheduler */
    spawn_once((long)(n / 10));
    for (size_t r = 0; r < runs; r++) {
        cli_progress_update(&pr, (double)r / (double)runs, "switch: run %zu of %zu", r + 1, runs);
        sw[r] = switch_once((long)n);
        sp[r] = spawn_once((long)n);
    }
    cli_progress_end(&pr);
    if (csv)
        printf("measure,ns,ns_min,ns_max,n,runs\n");
    minmax(sw, (int)runs, &mn, &mx);
    printf(csv ? "switch,%.2f,%.2f,%.2f,%zu,%zu\n"
               : "switch (lacuna_yield between two fibers): %.2f ns (min %.2f, max %.2f)\n",
           bench_median(sw, (int)runs), mn, mx, n, runs);
#ifdef LACUNA_BENCH_BOOST
    {
        double bj[100];
        for (size_t r = 0; r < runs; r++)
            bj[r] = boost_jump_ns((long)n);
        minmax(bj, (int)runs, &mn, &mx);
        printf(
            csv ? "boost-jump_fcontext-round-trip,%.2f,%.2f,%.2f,%zu,%zu\n"
                : "Boost.Context jump_fcontext round trip (two raw switches, no scheduler), same "
                  "run: %.2f ns (min %.2f, max %.2f)\n",
            bench_median(bj, (int)runs), mn, mx, n, runs);
    }
#else
    if (!csv)
        printf("Boost.Context jump_fcontext: not built (libboost-context-dev missing)\n");
#endif
    minmax(sp, (int)runs, &mn, &mx);
    printf(csv ? "spawn+join,%.1f,%.1f,%.1f,%zu,%zu\n"
               : "spawn+join of an empty fiber: %.1f ns (min %.1f, max %.1f)\n",
           bench_median(sp, (int)runs), mn, mx, n, runs);
    return 0;
}

/* ---- pingpong: a channel round trip between two workers ---------------------------------- */

/* Two fibers pinned to workers 0 and 1 bounce a number over two unbuffered channels: every
 * message wakes a fiber on the other worker (the cross-thread wake-up path: injection, a kick of
 * a sleeping or spinning worker). */
typedef struct {
    lacuna_chan *ping, *pong;
    long n;
    bool server;
    bool pinned;        /* false: both unpinned, where the scheduler puts them (Go's case) */
    _Atomic int *first; /* the worker the first launcher pinned to, or -1 */
    uint64_t t0, t1;
} pp_cfg;

static void *pp_server(void *arg)
{
    pp_cfg *c = arg;
    long v;
    while (lacuna_chan_recv(c->ping, &v) == 0)
        lacuna_chan_send(c->pong, &(long){v + 1});
    return NULL;
}

static void *pp_client(void *arg)
{
    pp_cfg *c = arg;
    long v = 0;
    c->t0 = bench_now_ns();
    for (long i = 0; i < c->n; i++) {
        lacuna_chan_send(c->ping, &v);
        lacuna_chan_recv(c->pong, &v);
    }
    c->t1 = bench_now_ns();
    lacuna_chan_close(c->ping);
    return (void *)(intptr_t)v;
}

/* Run fn pinned to a worker the other launcher has not taken: the first pins where it runs; the
 * second yields until it runs elsewhere (the other worker is idle then, and steals it). Insisting
 * on a given worker each livelocked, 3 runs in 30: two launchers on each other's workers, both
 * yielding, neither worker ever idle to steal the other. */
static void *pp_launch(void *arg)
{
    pp_cfg *c = arg;
    void *(*fn)(void *) = c->server ? pp_server : pp_client;
    if (!c->pinned)
        return fn(c);
    int none = -1;
    if (!atomic_compare_exchange_strong(c->first, &none, lacuna_worker_id()))
        while (lacuna_worker_id() == atomic_load(c->first))
            lacuna_yield();
    lacuna_fiber_opts o = {.flags = LACUNA_FIBER_PINNED};
    return lacuna_join(lacuna_go_opts(&o, fn, c));
}

static double pingpong_once(long n, bool pinned)
{
    lacuna_chan *ping = lacuna_chan_make(sizeof(long), 0),
                *pong = lacuna_chan_make(sizeof(long), 0);
    _Atomic int first = -1;
    pp_cfg client = {ping, pong, n, false, pinned, &first, 0, 0},
           server = {ping, pong, n, true, pinned, &first, 0, 0};
    lacuna_set_workers(2);
    lacuna_fiber *a = lacuna_go(pp_launch, &client), *b = lacuna_go(pp_launch, &server);
    lacuna_run();
    long got = (long)(intptr_t)lacuna_join(a);
    lacuna_join(b);
    lacuna_chan_free(ping);
    lacuna_chan_free(pong);
    if (got != n)
        return -1;
    return (double)(client.t1 - client.t0) / (double)n;
}

/* The floor under any cross-thread round trip here: two plain threads bounce one cache line
 * (a turn flag), spinning, with no runtime, channel or queue: two line transfers between cores
 * per round trip. A runtime's round trip moves several lines each way. */
typedef struct {
    _Atomic int turn; /* 1: the peer's */
    long n;
} floor_cfg;

static void spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void *floor_peer(void *arg)
{
    floor_cfg *c = arg;
    for (long i = 0; i < c->n; i++) {
        while (atomic_load_explicit(&c->turn, memory_order_acquire) != 1)
            spin_pause();
        atomic_store_explicit(&c->turn, 0, memory_order_release);
    }
    return NULL;
}

static double floor_once(long n)
{
    floor_cfg c = {.n = n};
    pthread_t t;
    if (pthread_create(&t, NULL, floor_peer, &c) != 0)
        return -1;
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        atomic_store_explicit(&c.turn, 1, memory_order_release);
        while (atomic_load_explicit(&c.turn, memory_order_acquire) != 0)
            spin_pause();
    }
    uint64_t t1 = bench_now_ns();
    pthread_join(t, NULL);
    return (double)(t1 - t0) / (double)n;
}

static int pingpong_main(int argc, char **argv)
{
    size_t n = 200000, runs = 5;
    bool csv = false;
    const cli_opt opts[] = {
        {"n", CLI_COUNT, &n, 1, 1000000000, "round trips", NULL},
        {"runs", CLI_COUNT, &runs, 1, 100, "runs; the median is reported", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {
        "lacuna-bench pingpong",
        "ns per channel round trip between fibers pinned to two workers (and unpinned), beside the "
        "floor: two plain threads bouncing one cache line.",
        opts, NULL, "Compare: tools/go/pingpong.go with GOMAXPROCS=2 (tools/bench.d/fibers.sh).\n"};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    bench_machine(stdout, csv ? "# " : "");
    if (csv)
        printf("measure,ns,ns_min,ns_max,n,runs\n");
    for (int pinned = 1; pinned >= 0; pinned--) {
        double rt[100], mn, mx;
        for (size_t r = 0; r < runs; r++)
            if ((rt[r] = pingpong_once((long)n, pinned)) < 0) {
                fprintf(stderr, "lacuna-bench pingpong: wrong count\n");
                return 1;
            }
        minmax(rt, (int)runs, &mn, &mx);
        const char *what = pinned ? "pinned to 2 workers" : "unpinned, 2 workers";
        printf(csv ? "pingpong %s,%.1f,%.1f,%.1f,%zu,%zu\n"
                   : "pingpong (channel round trip, %s): %.1f ns (min %.1f, max %.1f), median of "
                     "%zu x %zu\n",
               what, bench_median(rt, (int)runs), mn, mx, runs, n);
    }
    double fl[100], mn, mx;
    for (size_t r = 0; r < runs; r++)
        if ((fl[r] = floor_once((long)n)) < 0) {
            fprintf(stderr, "lacuna-bench pingpong: cannot start a thread\n");
            return 1;
        }
    minmax(fl, (int)runs, &mn, &mx);
    printf(csv ? "pingpong floor,%.1f,%.1f,%.1f,%zu,%zu\n"
               : "pingpong floor (two plain threads bouncing one cache line, no runtime): %.1f ns "
                 "(min %.1f, max %.1f), median of %zu x %zu\n",
           bench_median(fl, (int)runs), mn, mx, runs, n);
    return 0;
}

/* ---- crossfree: stacks of fibers that end on another worker ------------------------------ */

/* A launcher pinned to one worker spawns a fiber, which waits on a channel; a feeder pinned to
 * the other worker (or, for comparison, to the same one) sends to it, so the fiber resumes on the
 * feeder's worker (a hand-off) and ends there; the launcher joins it and spawns the next. The
 * stack came from the launcher's thread and goes back on the feeder's: past the feeder's spare
 * stacks, through the pool's cross-thread free path (its thread cache, then the shared lists the
 * launcher's cache refills from). */
typedef struct {
    lacuna_chan *go;
    long n;
    bool same;          /* feeder on the launcher's worker */
    _Atomic int *first; /* the worker the launcher pinned to, or -1 */
    uint64_t t0, t1;
    long cross; /* fibers that ended on another worker than the launcher's */
} xf_cfg;

static _Atomic int xf_end_worker;

static void *xf_child(void *arg)
{
    lacuna_chan *go = arg;
    long v;
    lacuna_chan_recv(go, &v);
    atomic_store_explicit(&xf_end_worker, lacuna_worker_id(), memory_order_relaxed);
    return NULL;
}

static void *xf_launcher(void *arg)
{
    xf_cfg *c = arg;
    int me = lacuna_worker_id();
    c->t0 = bench_now_ns();
    for (long i = 0; i < c->n; i++) {
        lacuna_fiber *f = lacuna_go(xf_child, c->go); /* runs first, waits on go */
        lacuna_join(f);
        c->cross += atomic_load_explicit(&xf_end_worker, memory_order_relaxed) != me;
    }
    c->t1 = bench_now_ns();
    lacuna_chan_close(c->go);
    return NULL;
}

static void *xf_feeder(void *arg)
{
    xf_cfg *c = arg;
    long v = 0;
    while (lacuna_chan_send(c->go, &v) == 0)
        v++;
    return NULL;
}

/* Pin the launcher where the first of these runs, and the feeder to the other worker (or the
 * same one): as pp_launch. */
static void *xf_launch_launcher(void *arg)
{
    xf_cfg *c = arg;
    int none = -1;
    atomic_compare_exchange_strong(c->first, &none, lacuna_worker_id());
    while (lacuna_worker_id() != atomic_load(c->first))
        lacuna_yield();
    lacuna_fiber_opts o = {.flags = LACUNA_FIBER_PINNED};
    return lacuna_join(lacuna_go_opts(&o, xf_launcher, c));
}

static void *xf_launch_feeder(void *arg)
{
    xf_cfg *c = arg;
    int none = -1;
    atomic_compare_exchange_strong(c->first, &none, lacuna_worker_id());
    while ((lacuna_worker_id() == atomic_load(c->first)) != c->same)
        lacuna_yield();
    lacuna_fiber_opts o = {.flags = LACUNA_FIBER_PINNED};
    return lacuna_join(lacuna_go_opts(&o, xf_feeder, c));
}

/* ns per fiber; *allocs and *frees: the stack pool's per fiber; -1 on a failed run. */
static double crossfree_once(long n, bool same, double *allocs, double *frees, double *cross)
{
    lacuna_pool *pool = lacuna_fiber_pool();
    lacuna_stats a, b;
    if (pool == NULL)
        return -1;
    lacuna_pool_stats(pool, &a);
    _Atomic int first = -1;
    xf_cfg c = {lacuna_chan_make(sizeof(long), 0), n, same, &first, 0, 0, 0};
    lacuna_set_workers(2);
    lacuna_detach(lacuna_go(xf_launch_launcher, &c));
    lacuna_detach(lacuna_go(xf_launch_feeder, &c));
    int err = lacuna_run();
    lacuna_chan_free(c.go);
    if (err)
        return -1;
    lacuna_pool_stats(pool, &b);
    *allocs = (double)(b.allocs - a.allocs) / (double)n;
    *frees = (double)(b.frees - a.frees) / (double)n;
    *cross = (double)c.cross / (double)n;
    return (double)(c.t1 - c.t0) / (double)n;
}

static int crossfree_main(int argc, char **argv)
{
    size_t n = 200000, runs = 5;
    bool csv = false;
    const cli_opt opts[] = {
        {"n", CLI_COUNT, &n, 1, 1000000000, "fibers per run", NULL},
        {"runs", CLI_COUNT, &runs, 1, 100, "runs; the median is reported", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench crossfree",
                     "Fibers spawned on one worker that end on the other (their stacks go back "
                     "through the pool's cross-thread free path), beside the same loop on one "
                     "worker: ns per fiber, and the stack pool's allocs and frees per fiber.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    lacuna_pool_config pc = {.region_size = 64 * KIB}; /* the default stack pool, made now */
    int err = lacuna_fiber_configure(&pc);
    if (err && err != EBUSY) {
        fprintf(stderr, "lacuna-bench crossfree: no stack pool: %s\n", strerror(err));
        return CLI_FAILED;
    }
    bench_machine(stdout, csv ? "# " : "");
    if (csv)
        printf("measure,ns_per_fiber,ns_min,ns_max,pool_allocs_per_fiber,pool_frees_per_fiber,"
               "ended_elsewhere,n,runs\n");
    double dummy[3];
    crossfree_once((long)n / 10, false, &dummy[0], &dummy[1], &dummy[2]); /* warm-up */
    for (int same = 0; same <= 1; same++) {
        double ns[100] = {0}, al[100], fr[100], cr[100], mn, mx;
        for (size_t r = 0; r < runs; r++)
            if ((ns[r] = crossfree_once((long)n, same, &al[r], &fr[r], &cr[r])) < 0) {
                fprintf(stderr, "lacuna-bench crossfree: a run failed\n");
                return CLI_FAILED;
            }
        minmax(ns, (int)runs, &mn, &mx);
        const char *what = same ? "same worker" : "ends on the other worker";
        double a = bench_median(al, (int)runs), f = bench_median(fr, (int)runs),
               c = bench_median(cr, (int)runs);
        if (csv)
            printf("%s,%.1f,%.1f,%.1f,%.3f,%.3f,%.3f,%zu,%zu\n", what, bench_median(ns, (int)runs),
                   mn, mx, a, f, c, n, runs);
        else
            printf("crossfree (spawn, %s): %.1f ns per fiber (min %.1f, max %.1f); stack pool "
                   "allocs %.3f and frees %.3f per fiber; %.0f %% ended on another worker; "
                   "median of %zu x %zu\n",
                   what, bench_median(ns, (int)runs), mn, mx, a, f, 100 * c, runs, n);
    }
    return 0;
}

int bench_crossfree_main(int argc, char **argv)
{
    return crossfree_main(argc, argv);
}

int bench_pingpong_main(int argc, char **argv)
{
    return pingpong_main(argc, argv);
}

int bench_skynet_main(int argc, char **argv)
{
    return skynet_main(argc, argv);
}

int bench_switch_main(int argc, char **argv)
{
    return switch_main(argc, argv);
}
